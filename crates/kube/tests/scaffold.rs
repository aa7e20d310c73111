//! `wisp kube scaffold`'s objects, read back from the YAML it writes with an independent
//! parser (`serde_norway`) and checked: the Kubernetes ones by deserializing them into the
//! `k8s-openapi` types and serializing them back unchanged (so no field is unknown,
//! misspelt or of the wrong type), SpinKube's and KEDA's against their CRDs' OpenAPI
//! schemas (`tests/fixtures`), and what ties the objects together (labels, ports,
//! volumes, names) by value. No cluster is involved.

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::node::v1::RuntimeClass;
use serde::Deserialize as _;
use serde_json::Value;
use std::collections::BTreeMap;
use wisp_kube::{Autoscaler, Autoscaling, Resources, ScaffoldOptions, Shape, scaffold, to_yaml};

const RUNTIME_CONFIG: &str =
    "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://cache:6379\"\n";

/// Values a careless YAML writer would turn into something else.
const TRICKY_VALUES: [(&str, &str); 7] = [
    ("yes_word", "yes"),
    ("hex", "0x10"),
    ("colon", "a: b # not a comment"),
    ("lines", "one\ntwo \"quoted\"\n"),
    ("empty", ""),
    ("number", "0042"),
    ("dash", "- item"),
];

fn options(shape: Shape) -> ScaffoldOptions {
    ScaffoldOptions {
        image: "localhost:5000/acme/hello_world:v1".into(),
        name: None,
        replicas: 2,
        autoscaling: None,
        resources: Resources::default(),
        variables: TRICKY_VALUES
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        components: Vec::new(),
        image_pull_secrets: Vec::new(),
        runtime_config: None,
        runtime_class: "wisp".into(),
        shape,
    }
}

fn spin_app_shape(with_executor: bool) -> Shape {
    Shape::SpinApp {
        executor: "wisp-shim".into(),
        with_executor,
    }
}

fn autoscaling(kind: Autoscaler, max_replicas: i32, cpu: i32, memory: i32) -> Option<Autoscaling> {
    Some(Autoscaling {
        kind,
        max_replicas,
        target_cpu_percent: cpu,
        target_memory_percent: memory,
    })
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect()
}

/// Writes the objects as YAML and reads them back, one JSON value per document.
fn round_trip(options: &ScaffoldOptions) -> Vec<Value> {
    let objects = scaffold(options).unwrap();
    let yaml = to_yaml(&objects);
    let read: Vec<Value> = serde_norway::Deserializer::from_str(&yaml)
        .map(|document| Value::deserialize(document).unwrap())
        .collect();
    assert_eq!(
        read, objects,
        "the YAML reads back as other values:\n{yaml}"
    );
    read
}

fn by_kind(objects: &[Value]) -> BTreeMap<String, Value> {
    let mut kinds = BTreeMap::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap().to_owned();
        assert!(
            kinds.insert(kind.clone(), object.clone()).is_none(),
            "two {kind}s"
        );
    }
    kinds
}

/// Deserializes `object` into the Kubernetes type `T` and checks that serializing it
/// gives the same JSON: a field `T` does not know would be dropped, a wrong type refused.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let value: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|err| panic!("not a {}: {err}\n{object:#}", object["kind"]));
    let back = serde_json::to_value(&value).unwrap();
    assert_eq!(
        &back, object,
        "{} changed through the Kubernetes types (an unknown or misspelt field?)",
        object["kind"]
    );
    value
}

fn crd_schema(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let crd: Value = serde_norway::from_str(&text).unwrap();
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|version| version["name"] == "v1alpha1")
        .expect("the CRD serves v1alpha1");
    version["schema"]["openAPIV3Schema"].clone()
}

/// Checks `value` against a CRD's structural OpenAPI v3 schema, as the API server's
/// validation would, except that a field the schema does not declare is an error here
/// (the server would silently prune it). CEL rules (`x-kubernetes-validations`) are
/// not evaluated; the tests check what they say by value.
fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema["x-kubernetes-int-or-string"] == true {
        match value {
            Value::Number(n) if n.is_i64() => {}
            Value::String(s) => check_pattern(schema, s, path, errors),
            _ => errors.push(format!("{path}: expected an integer or a string")),
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(map) = value.as_object() else {
                return errors.push(format!("{path}: expected an object"));
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                if !map.contains_key(required) {
                    errors.push(format!("{path}: `{required}` is required"));
                }
            }
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            for (key, item) in map {
                let item_path = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(item_schema), _) => validate(item_schema, item, &item_path, errors),
                    (None, Some(item_schema)) if item_schema.is_object() => {
                        validate(item_schema, item, &item_path, errors)
                    }
                    (None, _) if properties.is_none() => {} // e.g. `metadata: {type: object}`
                    (None, _) if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                    (None, _) => errors.push(format!("{item_path}: not a field of the schema")),
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return errors.push(format!("{path}: expected an array"));
            };
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                errors.push(format!("{path}: fewer than {min} items"));
            }
            for (index, item) in items.iter().enumerate() {
                validate(&schema["items"], item, &format!("{path}[{index}]"), errors);
            }
        }
        Some("string") => match value.as_str() {
            Some(s) => {
                if let Some(min) = schema["minLength"].as_u64()
                    && (s.chars().count() as u64) < min
                {
                    errors.push(format!("{path}: shorter than {min}"));
                }
                check_pattern(schema, s, path, errors);
            }
            None => errors.push(format!("{path}: expected a string, got {value}")),
        },
        Some("integer") => match value.as_i64() {
            Some(n) => {
                if schema["format"] == "int32" && i32::try_from(n).is_err() {
                    errors.push(format!("{path}: {n} is not an int32"));
                }
                if let Some(min) = schema["minimum"].as_i64()
                    && n < min
                {
                    errors.push(format!("{path}: {n} is below {min}"));
                }
            }
            None => errors.push(format!("{path}: expected an integer, got {value}")),
        },
        Some("boolean") if !value.is_boolean() => {
            errors.push(format!("{path}: expected a boolean, got {value}"))
        }
        Some("number") if !value.is_number() => {
            errors.push(format!("{path}: expected a number, got {value}"))
        }
        _ => {}
    }
}

fn check_pattern(schema: &Value, s: &str, path: &str, errors: &mut Vec<String>) {
    if let Some(pattern) = schema["pattern"].as_str()
        && !regex::Regex::new(pattern).unwrap().is_match(s)
    {
        errors.push(format!("{path}: `{s}` does not match {pattern}"));
    }
}

fn assert_valid(schema_file: &str, object: &Value) {
    let mut errors = Vec::new();
    validate(&crd_schema(schema_file), object, "", &mut errors);
    assert!(
        errors.is_empty(),
        "{} does not match {schema_file}:\n{}\n{object:#}",
        object["kind"],
        errors.join("\n")
    );
}

#[test]
fn the_validator_refuses_what_the_crd_refuses() {
    // The checks below mean something only if this validator can fail.
    let bad = serde_json::json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": { "name": "x" },
        "spec": {
            "executor": "wisp",
            "replicas": "two",
            "imagee": "typo",
            "resources": { "limits": { "memory": "lots" } },
            "variables": [{ "value": "no name" }],
        },
    });
    let mut errors = Vec::new();
    validate(
        &crd_schema("spinkube-spinapps-crd.yaml"),
        &bad,
        "",
        &mut errors,
    );
    let errors = errors.join("\n");
    for expected in [
        ".spec: `image` is required",
        ".spec.replicas: expected an integer",
        ".spec.imagee: not a field",
        ".spec.resources.limits.memory: `lots` does not match",
        ".spec.variables[0]: `name` is required",
    ] {
        assert!(
            errors.contains(expected),
            "{expected} missing from:\n{errors}"
        );
    }
}

#[test]
fn spin_app_for_spinkube_matches_the_operator_crds() {
    let mut options = options(spin_app_shape(true));
    options.components = vec!["api".into(), "worker-2".into()];
    options.image_pull_secrets = vec!["registry-creds".into()];
    options.runtime_config = Some(RUNTIME_CONFIG.into());
    options.resources = Resources {
        cpu_limit: Some("500m".into()),
        memory_limit: Some("256Mi".into()),
        cpu_request: Some("100m".into()),
        memory_request: Some("128Mi".into()),
    };
    options.autoscaling = autoscaling(Autoscaler::Hpa, 10, 50, 70);
    let objects = round_trip(&options);
    // Cluster-wide objects first, then what the SpinApp refers to, then the app.
    assert_eq!(
        kinds(&objects),
        [
            "RuntimeClass",
            "SpinAppExecutor",
            "Secret",
            "SpinApp",
            "HorizontalPodAutoscaler"
        ]
    );
    let objects = by_kind(&objects);

    let app = &objects["SpinApp"];
    assert_valid("spinkube-spinapps-crd.yaml", app);
    assert_eq!(app["metadata"]["name"], "hello-world");
    let spec = &app["spec"];
    assert_eq!(spec["image"], "localhost:5000/acme/hello_world:v1");
    assert_eq!(spec["executor"], "wisp-shim");
    // The operator refuses replicas beside enableAutoscaling.
    assert_eq!(spec["enableAutoscaling"], true);
    assert!(spec.get("replicas").is_none());
    let variables: Vec<(String, String)> = spec["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(variables, options.variables);
    assert_eq!(spec["components"], serde_json::json!(["api", "worker-2"]));
    assert_eq!(spec["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(spec["resources"]["requests"]["cpu"], "100m");
    assert_eq!(spec["imagePullSecrets"][0]["name"], "registry-creds");

    let secret: Secret = typed(&objects["Secret"]);
    assert_eq!(
        Some(spec["runtimeConfig"]["loadFromSecret"].as_str().unwrap()),
        secret.metadata.name.as_deref()
    );
    // The operator mounts this key at /runtime-config.toml, where the shim reads it.
    let stored = &secret.data.unwrap()["runtime-config.toml"];
    assert_eq!(stored.0, RUNTIME_CONFIG.as_bytes());
    assert_eq!(
        objects["Secret"]["data"]["runtime-config.toml"],
        base64::engine::general_purpose::STANDARD.encode(RUNTIME_CONFIG)
    );

    let executor = &objects["SpinAppExecutor"];
    assert_valid("spinkube-spinappexecutors-crd.yaml", executor);
    assert_eq!(executor["metadata"]["name"], "wisp-shim");
    let runtime_class: RuntimeClass = typed(&objects["RuntimeClass"]);
    assert_eq!(
        executor["spec"]["deploymentConfig"]["runtimeClassName"],
        runtime_class.metadata.name.unwrap()
    );
    assert_eq!(runtime_class.handler, "wisp");

    // The operator names the Deployment after the SpinApp; the autoscaler scales it.
    let hpa: HorizontalPodAutoscaler = typed(&objects["HorizontalPodAutoscaler"]);
    let hpa = hpa.spec.unwrap();
    assert_eq!(hpa.scale_target_ref.kind, "Deployment");
    assert_eq!(hpa.scale_target_ref.name, "hello-world");
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 10));
    let targets: Vec<_> = hpa
        .metrics
        .unwrap()
        .into_iter()
        .map(|m| {
            let resource = m.resource.unwrap();
            (resource.name, resource.target.average_utilization.unwrap())
        })
        .collect();
    assert_eq!(targets, [("cpu".into(), 50), ("memory".into(), 70)]);
}

#[test]
fn a_minimal_spin_app_names_only_image_executor_and_replicas() {
    let mut options = options(spin_app_shape(false));
    options.variables.clear();
    options.image = "ghcr.io/acme/shop@sha256:".to_owned() + &"ab".repeat(32);
    options.name = Some("shop-eu".into());
    let objects = round_trip(&options);
    assert_eq!(objects.len(), 1);
    assert_valid("spinkube-spinapps-crd.yaml", &objects[0]);
    assert_eq!(
        objects[0]["spec"],
        serde_json::json!({ "image": options.image, "executor": "wisp-shim", "replicas": 2 })
    );
    assert_eq!(objects[0]["metadata"]["name"], "shop-eu");
}

#[test]
fn plain_objects_are_kubernetes_api_objects_that_fit_together() {
    let mut options = options(Shape::Plain);
    options.components = vec!["api".into()];
    options.image_pull_secrets = vec!["registry-creds".into()];
    options.runtime_config = Some(RUNTIME_CONFIG.into());
    options.runtime_class = "wasm".into();
    options.resources = Resources {
        cpu_limit: Some("1".into()),
        memory_limit: Some("512Mi".into()),
        ..Resources::default()
    };
    options.replicas = 0;
    options.autoscaling = autoscaling(Autoscaler::Keda, 5, 60, 60);
    let objects = round_trip(&options);
    assert_eq!(
        kinds(&objects),
        [
            "RuntimeClass",
            "Secret",
            "Deployment",
            "Service",
            "ScaledObject"
        ]
    );
    let objects = by_kind(&objects);

    let runtime_class: RuntimeClass = typed(&objects["RuntimeClass"]);
    let deployment: Deployment = typed(&objects["Deployment"]);
    let service: Service = typed(&objects["Service"]);
    let secret: Secret = typed(&objects["Secret"]);

    let spec = deployment.spec.unwrap();
    // The autoscaler owns the replica count.
    assert_eq!(spec.replicas, None);
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    let selector = spec.selector.match_labels.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.runtime_class_name, runtime_class.metadata.name);
    assert_eq!(runtime_class.handler, "wisp");
    assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry-creds");
    let [container] = pod.containers.as_slice() else {
        panic!("one container")
    };
    assert_eq!(
        container.image.as_deref(),
        Some("localhost:5000/acme/hello_world:v1")
    );
    assert_eq!(container.command.as_deref(), Some(&["/".to_owned()][..]));

    // SpinKube's environment contract, as the operator would set it.
    let env: BTreeMap<_, _> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    for (name, value) in TRICKY_VALUES {
        let key = format!("SPIN_VARIABLE_{}", name.to_uppercase());
        assert_eq!(env[key.as_str()].value.as_deref(), Some(value), "{key}");
    }
    assert_eq!(
        env["SPIN_HTTP_LISTEN_ADDR"].value.as_deref(),
        Some("0.0.0.0:80")
    );
    assert_eq!(
        env["SPIN_COMPONENTS_TO_RETAIN"].value.as_deref(),
        Some("api")
    );
    // Half the memory limit, in MiB, as the instance budget the shim cannot read itself.
    let budget = env["WISP_MEMORY_BUDGET_MB"]
        .value_from
        .as_ref()
        .unwrap()
        .resource_field_ref
        .as_ref()
        .unwrap();
    assert_eq!(budget.resource, "limits.memory");
    assert_eq!(
        budget.container_name.as_deref(),
        Some(container.name.as_str())
    );
    assert_eq!(budget.divisor.as_ref().unwrap().0, "2Mi");

    // The runtime config: mounted from the Secret at the path the shim reads.
    let mount = &container.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.mount_path, "/runtime-config.toml");
    assert_eq!(mount.sub_path.as_deref(), Some("runtime-config.toml"));
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == mount.name)
        .expect("the mount's volume");
    let source = volume.secret.as_ref().unwrap();
    assert_eq!(source.secret_name, secret.metadata.name);
    assert!(
        source.items.as_ref().unwrap()[0].key == "runtime-config.toml"
            && secret.data.unwrap().contains_key("runtime-config.toml")
    );

    // The Service reaches the pods' named port.
    let service = service.spec.unwrap();
    let selector = service.selector.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let port = &service.ports.unwrap()[0];
    let container_port = &container.ports.as_ref().unwrap()[0];
    assert_eq!(
        port.target_port,
        Some(
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                container_port.name.clone().unwrap()
            )
        )
    );
    assert_eq!(container_port.container_port, 80);
    let probe = container.readiness_probe.as_ref().unwrap();
    assert_eq!(
        probe.tcp_socket.as_ref().unwrap().port,
        port.target_port.clone().unwrap()
    );

    let scaled = &objects["ScaledObject"];
    assert_valid("keda-scaledobjects-crd.yaml", scaled);
    let spec = &scaled["spec"];
    assert_eq!(
        spec["scaleTargetRef"]["name"],
        deployment.metadata.name.unwrap()
    );
    // KEDA's CEL rule: minReplicaCount ≤ maxReplicaCount; KEDA may scale to zero.
    assert_eq!(
        (&spec["minReplicaCount"], &spec["maxReplicaCount"]),
        (&0.into(), &5.into())
    );
    assert_eq!(spec["triggers"][1]["type"], "memory");
    assert_eq!(spec["triggers"][1]["metadata"]["value"], "60");
}

#[test]
fn plain_without_autoscaling_sets_replicas_and_no_budget() {
    let mut options = options(Shape::Plain);
    options.replicas = 3;
    let objects = round_trip(&options);
    let objects = by_kind(&objects);
    assert_eq!(objects.len(), 3, "no Secret, no autoscaler");
    let deployment: Deployment = typed(&objects["Deployment"]);
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let container = &spec.template.spec.unwrap().containers[0];
    let names: Vec<_> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(!names.contains(&"WISP_MEMORY_BUDGET_MB"), "{names:?}");
    assert!(container.resources.is_none() && container.volume_mounts.is_none());
}

#[test]
fn bad_options_are_refused_with_the_fix() {
    type Change = Box<dyn Fn(&mut ScaffoldOptions)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|o| o.image = "localhost:5000/Hello:v1".into()),
            "`--from`: invalid registry reference `localhost:5000/Hello:v1`",
        ),
        (
            Box::new(|o| o.image = format!("localhost:5000/a/{}:v1", "b".repeat(64))),
            "give one with `--name`",
        ),
        (
            Box::new(|o| o.name = Some("Hello".into())),
            "`--name` `Hello`",
        ),
        (Box::new(|o| o.replicas = -1), "`--replicas -1` is negative"),
        (
            Box::new(|o| o.variables = vec![("Bad-Name".into(), "x".into())]),
            "not a Spin variable name",
        ),
        (
            Box::new(|o| o.variables = vec![("a".into(), "1".into()), ("a".into(), "2".into())]),
            "given twice",
        ),
        (
            Box::new(|o| o.components = vec!["My_Comp".into()]),
            "ids are kebab-case",
        ),
        (
            Box::new(|o| o.resources.memory_limit = Some("512MB".into())),
            "`--memory-limit 512MB` is not a Kubernetes quantity",
        ),
        (
            Box::new(|o| o.autoscaling = autoscaling(Autoscaler::Hpa, 3, 60, 60)),
            "autoscaling needs `--cpu-limit` and `--memory-limit`",
        ),
        (
            Box::new(|o| {
                o.resources.cpu_limit = Some("1".into());
                o.resources.memory_limit = Some("1Gi".into());
                o.autoscaling = autoscaling(Autoscaler::Keda, 1, 60, 60);
            }),
            "`--max-replicas 1` is below `--replicas 2`",
        ),
        (
            Box::new(|o| {
                o.replicas = 0;
                o.resources.cpu_limit = Some("1".into());
                o.resources.memory_limit = Some("1Gi".into());
                o.autoscaling = autoscaling(Autoscaler::Hpa, 3, 60, 60);
            }),
            "use `--autoscaler keda` to scale to zero",
        ),
        (
            Box::new(|o| {
                o.resources.cpu_limit = Some("1".into());
                o.resources.memory_limit = Some("1Gi".into());
                o.autoscaling = autoscaling(Autoscaler::Hpa, 3, 0, 60);
            }),
            "`--autoscaler-target-cpu-utilization 0` is not a percentage",
        ),
        (
            Box::new(|o| {
                o.shape = Shape::SpinApp {
                    executor: "Wisp Shim".into(),
                    with_executor: false,
                }
            }),
            "`--executor` `Wisp Shim`",
        ),
    ];
    for (change, expected) in cases {
        let mut options = options(spin_app_shape(false));
        change(&mut options);
        let err = scaffold(&options).unwrap_err().to_string();
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
}

//! Kubernetes manifests for a Wisp app packed as an OCI image (`wisp kube scaffold`).
//!
//! Two shapes, both for pods that run on `containerd-shim-wisp-v1`:
//! - a `SpinApp` for SpinKube's `spin-operator`, whose `SpinAppExecutor` sets
//!   `runtimeClassName` to Wisp's RuntimeClass ([`Shape::SpinApp`]);
//! - a `Deployment`, `Service` and `RuntimeClass` that need no operator ([`Shape::Plain`]).
//!
//! Either may come with a `Secret` holding the runtime config (mounted at
//! `/runtime-config.toml`, where the shim reads it) and an autoscaler (a
//! `HorizontalPodAutoscaler` or a KEDA `ScaledObject`) for the Deployment.
//!
//! The objects are built as JSON values and written as YAML by [`to_yaml`]; the tests
//! read them back with an independent YAML parser into the Kubernetes API types and check
//! the SpinKube ones against the operator's CRD schemas.

mod yaml;

pub use yaml::to_yaml;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The container port the shim serves on inside the pod, as SpinKube's operator uses it.
pub const HTTP_PORT: u16 = 80;
/// The name of that port, which the Service targets.
pub const HTTP_PORT_NAME: &str = "http";
/// The RuntimeClass name `--runtime-class` defaults to.
pub const DEFAULT_RUNTIME_CLASS: &str = "wisp";
/// The containerd runtime name the RuntimeClass hands pods to: the name under which
/// `docs/kubernetes.md` registers `io.containerd.wisp.v1` with containerd's CRI plugin.
pub const RUNTIME_HANDLER: &str = "wisp";
/// The `SpinAppExecutor` name `--executor` defaults to.
pub const DEFAULT_EXECUTOR: &str = "wisp";
/// The label that ties a plain Deployment's pods to its Service.
pub const APP_LABEL: &str = "app.kubernetes.io/name";
/// The key of the runtime config in its Secret, and the file name it is mounted as.
const RUNTIME_CONFIG_KEY: &str = "runtime-config.toml";

/// Which objects to write for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A `SpinApp` run by SpinKube's operator through the executor named here; with
    /// `with_executor`, also that `SpinAppExecutor` and the RuntimeClass it names.
    SpinApp {
        /// The `SpinAppExecutor` the app names (`spec.executor`).
        executor: String,
        /// Also write the executor and the RuntimeClass (once per cluster).
        with_executor: bool,
    },
    /// A `Deployment`, a `Service` and the `RuntimeClass`: no operator needed.
    Plain,
}

/// An autoscaler for the app's Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autoscaler {
    /// A Kubernetes `HorizontalPodAutoscaler` (`autoscaling/v2`) on CPU and memory use.
    Hpa,
    /// A KEDA `ScaledObject` (`keda.sh/v1alpha1`) with CPU and memory triggers.
    Keda,
}

/// Autoscaling bounds and targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autoscaling {
    /// Which autoscaler.
    pub kind: Autoscaler,
    /// The most replicas it may run.
    pub max_replicas: i32,
    /// Average CPU use to keep, in percent of the requested CPU (1–100).
    pub target_cpu_percent: i32,
    /// Average memory use to keep, in percent of the requested memory (1–100).
    pub target_memory_percent: i32,
}

/// The CPU and memory a pod requests and may use, as Kubernetes quantities
/// (`500m`, `1`, `128Mi`). With autoscaling both limits are required: the autoscaler's
/// targets are percentages of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `limits.cpu`.
    pub cpu_limit: Option<String>,
    /// `limits.memory`.
    pub memory_limit: Option<String>,
    /// `requests.cpu`.
    pub cpu_request: Option<String>,
    /// `requests.memory`.
    pub memory_request: Option<String>,
}

/// What `wisp kube scaffold` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaffoldOptions {
    /// The app's image (`registry/repository:tag` or `…@sha256:…`).
    pub image: String,
    /// The objects' name; `None` derives it from the image's repository.
    pub name: Option<String>,
    /// Replicas; with autoscaling, the fewest it keeps.
    pub replicas: i32,
    /// Autoscaling, if any.
    pub autoscaling: Option<Autoscaling>,
    /// CPU and memory.
    pub resources: Resources,
    /// App variables, `(name, value)` in the order given.
    pub variables: Vec<(String, String)>,
    /// Component ids to run (selective deployment); empty runs them all.
    pub components: Vec<String>,
    /// Secrets in the app's namespace for pulling the image.
    pub image_pull_secrets: Vec<String>,
    /// The runtime config file's text (already checked by the caller), put in a Secret.
    pub runtime_config: Option<String>,
    /// The RuntimeClass pods run under.
    pub runtime_class: String,
    /// Which objects to write.
    pub shape: Shape,
}

/// Why the manifests could not be written: a bad option, with how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The image reference does not parse.
    #[error("`--from`: {reason}")]
    Image {
        /// The reference as given.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name that Kubernetes would refuse.
    #[error("{what} `{value}` is not a valid Kubernetes name: {fix}")]
    Name {
        /// Which option or derived value.
        what: String,
        /// The value.
        value: String,
        /// How to fix it.
        fix: String,
    },
    /// Any other bad option value.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ScaffoldError {
    ScaffoldError::Invalid(message.into())
}

/// Builds the Kubernetes objects for `options`, in the order to apply them.
pub fn scaffold(options: &ScaffoldOptions) -> Result<Vec<Value>, ScaffoldError> {
    let name = check(options)?;
    let name = name.as_str();
    let mut objects = Vec::new();
    let runtime_config_secret = options
        .runtime_config
        .as_ref()
        .map(|text| (format!("{name}-runtime-config"), text));

    match &options.shape {
        Shape::SpinApp {
            executor,
            with_executor,
        } => {
            if *with_executor {
                objects.push(runtime_class(&options.runtime_class));
                objects.push(spin_app_executor(executor, &options.runtime_class));
            }
            if let Some((secret, text)) = &runtime_config_secret {
                objects.push(runtime_config_secret_object(secret, text));
            }
            objects.push(spin_app(
                name,
                options,
                executor,
                runtime_config_secret.as_ref().map(|(s, _)| s.as_str()),
            ));
        }
        Shape::Plain => {
            objects.push(runtime_class(&options.runtime_class));
            if let Some((secret, text)) = &runtime_config_secret {
                objects.push(runtime_config_secret_object(secret, text));
            }
            objects.push(deployment(
                name,
                options,
                runtime_config_secret.as_ref().map(|(s, _)| s.as_str()),
            ));
            objects.push(service(name));
        }
    }
    if let Some(autoscaling) = &options.autoscaling {
        objects.push(autoscaler(name, options.replicas, autoscaling));
    }
    Ok(objects)
}

/// Checks every option; returns the objects' name.
fn check(options: &ScaffoldOptions) -> Result<String, ScaffoldError> {
    let reference: wisp_oci::Reference =
        options
            .image
            .parse()
            .map_err(|err: wisp_oci::OciError| ScaffoldError::Image {
                image: options.image.clone(),
                reason: err.to_string(),
            })?;
    let name = match &options.name {
        Some(name) => {
            check_dns_label("`--name`", name)?;
            name.clone()
        }
        None => {
            let derived = name_from_repository(reference.repository());
            if !is_dns_label(&derived) {
                return Err(ScaffoldError::Name {
                    what: format!("the name derived from `{}`", options.image),
                    value: derived,
                    fix: "give one with `--name`: lowercase letters, digits and `-`, at most 63 characters".into(),
                });
            }
            derived
        }
    };
    check_dns_label("`--runtime-class`", &options.runtime_class)?;
    if let Shape::SpinApp { executor, .. } = &options.shape {
        check_dns_subdomain("`--executor`", executor)?;
    }
    for secret in &options.image_pull_secrets {
        check_dns_subdomain("`--image-pull-secret`", secret)?;
    }

    if options.replicas < 0 {
        return Err(invalid(format!(
            "`--replicas {}` is negative; give 0 or more",
            options.replicas
        )));
    }
    if let Some(autoscaling) = &options.autoscaling {
        check_autoscaling(options, autoscaling)?;
    }
    let resources = &options.resources;
    for (flag, value, kind) in [
        ("--cpu-limit", &resources.cpu_limit, "cpu"),
        ("--cpu-request", &resources.cpu_request, "cpu"),
        ("--memory-limit", &resources.memory_limit, "memory"),
        ("--memory-request", &resources.memory_request, "memory"),
    ] {
        if let Some(value) = value
            && !is_quantity(value)
        {
            let example = if kind == "cpu" {
                "`500m` or `1`"
            } else {
                "`128Mi` or `1Gi`"
            };
            return Err(invalid(format!(
                "`{flag} {value}` is not a Kubernetes quantity; write it as {example}"
            )));
        }
    }

    let mut seen = std::collections::HashSet::new();
    for (variable, _) in &options.variables {
        if !wisp_manifest::is_variable_name(variable) {
            return Err(invalid(format!(
                "`--variable {variable}=…`: `{variable}` is not a Spin variable name; use lowercase letters, digits and `_`, starting with a letter (as in spin.toml's [variables])"
            )));
        }
        if !seen.insert(variable.as_str()) {
            return Err(invalid(format!(
                "`--variable {variable}` is given twice; give each variable once"
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for component in &options.components {
        if !wisp_manifest::is_kebab_id(component) {
            return Err(invalid(format!(
                "`--component {component}` is not a component id; ids are kebab-case (`my-api`), as in spin.toml's [component.<id>]"
            )));
        }
        if !seen.insert(component.as_str()) {
            return Err(invalid(format!(
                "`--component {component}` is given twice; give each component once"
            )));
        }
    }
    Ok(name)
}

fn check_autoscaling(
    options: &ScaffoldOptions,
    autoscaling: &Autoscaling,
) -> Result<(), ScaffoldError> {
    let min = options.replicas;
    if autoscaling.kind == Autoscaler::Hpa && min < 1 {
        return Err(invalid(
            "`--replicas 0` with `--autoscaler hpa`: a HorizontalPodAutoscaler keeps at least 1 replica; give `--replicas 1` or more, or use `--autoscaler keda` to scale to zero",
        ));
    }
    if autoscaling.max_replicas < 1 || autoscaling.max_replicas < min {
        return Err(invalid(format!(
            "`--max-replicas {}` is below `--replicas {min}` (the fewest the autoscaler keeps); give `--max-replicas` at least {}",
            autoscaling.max_replicas,
            min.max(1)
        )));
    }
    for (flag, percent) in [
        (
            "--autoscaler-target-cpu-utilization",
            autoscaling.target_cpu_percent,
        ),
        (
            "--autoscaler-target-memory-utilization",
            autoscaling.target_memory_percent,
        ),
    ] {
        if !(1..=100).contains(&percent) {
            return Err(invalid(format!(
                "`{flag} {percent}` is not a percentage; give a number from 1 to 100"
            )));
        }
    }
    let resources = &options.resources;
    if resources.cpu_limit.is_none() || resources.memory_limit.is_none() {
        return Err(invalid(
            "autoscaling needs `--cpu-limit` and `--memory-limit`: the autoscaler's targets are percentages of the pod's CPU and memory (e.g. `--cpu-limit 500m --memory-limit 256Mi`)",
        ));
    }
    Ok(())
}

/// The last segment of an image repository as a Kubernetes name
/// (`ghcr.io/acme/hello_world` → `hello-world`).
fn name_from_repository(repository: &str) -> String {
    let last = repository.rsplit('/').next().unwrap_or(repository);
    let name: String = last
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    name.trim_matches('-').to_owned()
}

/// An RFC 1123 label: what Deployments, Services and RuntimeClasses are named by.
fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

fn check_dns_label(what: &str, value: &str) -> Result<(), ScaffoldError> {
    match is_dns_label(value) {
        true => Ok(()),
        false => Err(ScaffoldError::Name {
            what: what.into(),
            value: value.into(),
            fix: "use lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters".into(),
        }),
    }
}

/// An RFC 1123 subdomain: dot-separated labels, at most 253 characters (Secret and
/// custom-resource names).
fn check_dns_subdomain(what: &str, value: &str) -> Result<(), ScaffoldError> {
    match value.len() <= 253 && value.split('.').all(is_dns_label) {
        true => Ok(()),
        false => Err(ScaffoldError::Name {
            what: what.into(),
            value: value.into(),
            fix: "use lowercase letters, digits, `-` and `.`, at most 253 characters".into(),
        }),
    }
}

/// Whether `value` is a Kubernetes resource quantity: a decimal number with an optional
/// binary (`Ki`…`Ei`) or decimal (`n`, `u`, `m`, `k`, `M`…`E`) suffix or exponent.
fn is_quantity(value: &str) -> bool {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    let number_len = digits
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(digits.len());
    let (number, suffix) = digits.split_at(number_len);
    let valid_number = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let valid_suffix = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exponent => exponent
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())),
    };
    valid_number && valid_suffix
}

fn labels(name: &str) -> Value {
    json!({ APP_LABEL: name })
}

fn runtime_class(name: &str) -> Value {
    json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": { "name": name },
        "handler": RUNTIME_HANDLER,
    })
}

fn spin_app_executor(name: &str, runtime_class: &str) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinAppExecutor",
        "metadata": { "name": name },
        "spec": {
            "createDeployment": true,
            "deploymentConfig": {
                "runtimeClassName": runtime_class,
                "installDefaultCACerts": true,
            },
        },
    })
}

fn runtime_config_secret_object(name: &str, text: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name },
        "type": "Opaque",
        "data": {
            RUNTIME_CONFIG_KEY: base64::engine::general_purpose::STANDARD.encode(text),
        },
    })
}

fn resources_value(resources: &Resources) -> Option<Value> {
    let mut out = Map::new();
    for (section, cpu, memory) in [
        ("limits", &resources.cpu_limit, &resources.memory_limit),
        (
            "requests",
            &resources.cpu_request,
            &resources.memory_request,
        ),
    ] {
        let mut entries = Map::new();
        if let Some(cpu) = cpu {
            entries.insert("cpu".into(), cpu.as_str().into());
        }
        if let Some(memory) = memory {
            entries.insert("memory".into(), memory.as_str().into());
        }
        if !entries.is_empty() {
            out.insert(section.into(), entries.into());
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn spin_app(
    name: &str,
    options: &ScaffoldOptions,
    executor: &str,
    runtime_config_secret: Option<&str>,
) -> Value {
    let mut spec = Map::new();
    spec.insert("image".into(), options.image.as_str().into());
    spec.insert("executor".into(), executor.into());
    // The operator refuses `replicas` beside `enableAutoscaling`: the autoscaler owns it.
    match options.autoscaling {
        Some(_) => spec.insert("enableAutoscaling".into(), true.into()),
        None => spec.insert("replicas".into(), options.replicas.into()),
    };
    if !options.variables.is_empty() {
        let variables = options
            .variables
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        spec.insert("variables".into(), Value::Array(variables));
    }
    if !options.components.is_empty() {
        spec.insert("components".into(), json!(options.components));
    }
    if let Some(resources) = resources_value(&options.resources) {
        spec.insert("resources".into(), resources);
    }
    if !options.image_pull_secrets.is_empty() {
        spec.insert(
            "imagePullSecrets".into(),
            image_pull_secrets(&options.image_pull_secrets),
        );
    }
    if let Some(secret) = runtime_config_secret {
        spec.insert("runtimeConfig".into(), json!({ "loadFromSecret": secret }));
    }
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn image_pull_secrets(names: &[String]) -> Value {
    names.iter().map(|name| json!({ "name": name })).collect()
}

/// The environment SpinKube's operator gives a shim container, plus Wisp's memory budget.
fn container_env(name: &str, options: &ScaffoldOptions) -> Vec<Value> {
    let mut env: Vec<Value> = options
        .variables
        .iter()
        .map(|(variable, value)| {
            json!({
                "name": format!("SPIN_VARIABLE_{}", variable.to_ascii_uppercase()),
                "value": value,
            })
        })
        .collect();
    env.push(json!({
        "name": "SPIN_HTTP_LISTEN_ADDR",
        "value": format!("0.0.0.0:{HTTP_PORT}"),
    }));
    if !options.components.is_empty() {
        env.push(json!({
            "name": "SPIN_COMPONENTS_TO_RETAIN",
            "value": options.components.join(","),
        }));
    }
    // The shim cannot see the pod's memory limit on every host (cgroup v1, runwasi's
    // youki), so it is handed over: half of it for instances, in MiB, leaving the rest
    // to the process and compiled code.
    if options.resources.memory_limit.is_some() {
        env.push(json!({
            "name": "WISP_MEMORY_BUDGET_MB",
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": name,
                    "resource": "limits.memory",
                    "divisor": "2Mi",
                },
            },
        }));
    }
    env
}

fn deployment(name: &str, options: &ScaffoldOptions, runtime_config_secret: Option<&str>) -> Value {
    let mut container = Map::new();
    container.insert("name".into(), name.into());
    container.insert("image".into(), options.image.as_str().into());
    // runwasi wants an argument; `/` is not an executable, so the shim serves the app.
    container.insert("command".into(), json!(["/"]));
    container.insert(
        "ports".into(),
        json!([{ "name": HTTP_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP" }]),
    );
    container.insert("env".into(), Value::Array(container_env(name, options)));
    // The shim binds its port only once the app is loaded, so a TCP probe is exact and
    // needs no route the app may not have.
    container.insert(
        "readinessProbe".into(),
        json!({ "tcpSocket": { "port": HTTP_PORT_NAME }, "periodSeconds": 2 }),
    );
    if let Some(resources) = resources_value(&options.resources) {
        container.insert("resources".into(), resources);
    }

    let mut pod = Map::new();
    pod.insert(
        "runtimeClassName".into(),
        options.runtime_class.as_str().into(),
    );
    // Wisp drains for 25 s (WISP_SHUTDOWN_GRACE) inside Kubernetes' default 30 s.
    pod.insert("terminationGracePeriodSeconds".into(), 30.into());
    if !options.image_pull_secrets.is_empty() {
        pod.insert(
            "imagePullSecrets".into(),
            image_pull_secrets(&options.image_pull_secrets),
        );
    }
    if let Some(secret) = runtime_config_secret {
        container.insert(
            "volumeMounts".into(),
            json!([{
                "name": "runtime-config",
                "mountPath": format!("/{RUNTIME_CONFIG_KEY}"),
                "subPath": RUNTIME_CONFIG_KEY,
                "readOnly": true,
            }]),
        );
        pod.insert(
            "volumes".into(),
            json!([{
                "name": "runtime-config",
                "secret": {
                    "secretName": secret,
                    "items": [{ "key": RUNTIME_CONFIG_KEY, "path": RUNTIME_CONFIG_KEY }],
                },
            }]),
        );
    }
    pod.insert("containers".into(), json!([container]));

    let mut spec = Map::new();
    if options.autoscaling.is_none() {
        spec.insert("replicas".into(), options.replicas.into());
    }
    spec.insert("selector".into(), json!({ "matchLabels": labels(name) }));
    spec.insert(
        "template".into(),
        json!({ "metadata": { "labels": labels(name) }, "spec": pod }),
    );
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": labels(name) },
        "spec": spec,
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "labels": labels(name) },
        "spec": {
            "type": "ClusterIP",
            "selector": labels(name),
            "ports": [{
                "name": HTTP_PORT_NAME,
                "port": HTTP_PORT,
                "targetPort": HTTP_PORT_NAME,
                "protocol": "TCP",
            }],
        },
    })
}

fn autoscaler(name: &str, min_replicas: i32, autoscaling: &Autoscaling) -> Value {
    let metadata = json!({ "name": format!("{name}-autoscaler") });
    let target = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": name });
    match autoscaling.kind {
        Autoscaler::Hpa => {
            let metric = |resource: &str, percent: i32| {
                json!({
                    "type": "Resource",
                    "resource": {
                        "name": resource,
                        "target": { "type": "Utilization", "averageUtilization": percent },
                    },
                })
            };
            json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": metadata,
                "spec": {
                    "scaleTargetRef": target,
                    "minReplicas": min_replicas,
                    "maxReplicas": autoscaling.max_replicas,
                    "metrics": [
                        metric("cpu", autoscaling.target_cpu_percent),
                        metric("memory", autoscaling.target_memory_percent),
                    ],
                },
            })
        }
        Autoscaler::Keda => {
            let trigger = |kind: &str, percent: i32| {
                json!({
                    "type": kind,
                    "metricType": "Utilization",
                    "metadata": { "value": percent.to_string() },
                })
            };
            json!({
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": metadata,
                "spec": {
                    "scaleTargetRef": target,
                    "minReplicaCount": min_replicas,
                    "maxReplicaCount": autoscaling.max_replicas,
                    "triggers": [
                        trigger("cpu", autoscaling.target_cpu_percent),
                        trigger("memory", autoscaling.target_memory_percent),
                    ],
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for good in [
            "1", "500m", "0.5", "128Mi", "1Gi", "1e3", "2E+2", ".5", "+1", "100k",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "m", "1.2.3", "128MB", "1gi", "lots", "1e", ".", "1 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn names_from_repositories() {
        assert_eq!(name_from_repository("acme/hello_world"), "hello-world");
        assert_eq!(name_from_repository("hello"), "hello");
        assert_eq!(name_from_repository("a/b/c.d"), "c-d");
        assert!(is_dns_label("hello-1"));
        assert!(!is_dns_label("-hello"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}

//! Tests of whole manifests that parse. Rejected manifests are covered by
//! the snapshot files in `tests/bad/`.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::*;

fn parse(text: &str) -> Manifest {
    match parse_str(text, Path::new("spin.toml")) {
        Ok(manifest) => manifest,
        Err(e) => panic!("manifest should parse:\n{e}"),
    }
}

fn map(entries: &[(&str, &str)]) -> IndexMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const FULL: &str = r#"spin_manifest_version = 2

[application]
name = "full"
version = "0.1.0"
description = "uses every field"
authors = ["Ada <ada@example.com>", "Bob"]

[application.trigger.http]
base = "/"

[application.tool.spin-test]
source = "tests/app.wasm"
nested = { deep = [1, 2] }

[variables]
greeting = { default = "hi" }
api_key = { required = true, secret = true }
token = { default = "x", secret = true }

[[trigger.http]]
id = "hello-trigger"
route = "/hello"
component = "hello"
executor = { type = "spin" }
max_request_body_size = 1024

[[trigger.http]]
route = "/users/:id/..."
component = { source = "inline.wasm", allowed_outbound_hosts = ["https://example.com"] }

[[trigger.http]]
id = "named-inline"
route = "/named"
component = { source = "named.wasm", variables = { v = "{{greeting}}" } }

[[trigger.http]]
route = { private = true }
component = "internal"

[[trigger.http]]
route = "/gone"
static_response = { status_code = 404, headers = { "content-type" = "text/plain", "x-a" = "b" }, body = "nope" }

[[trigger.http]]
route = "/ok/"
static_response = {}

[component.hello]
source = "target/wasm32-wasip2/release/hello.wasm"
description = "says hello"
environment = { KEY = "value", OTHER = "2" }
files = ["static/**/*", { source = "assets", destination = "/assets" }]
exclude_files = ["**/*.bak"]
allowed_outbound_hosts = ["https://example.com", "redis://localhost:6379"]
key_value_stores = ["default", "cache"]
sqlite_databases = ["default"]
ai_models = ["llama2-chat"]
variables = { message = "{{ greeting }} world", key = "{{api_key}}", plain = "text" }
dependencies_inherit_configuration = false
dependencies = {}

[component.hello.build]
command = "cargo build --target wasm32-wasip2 --release"
workdir = "hello"
watch = ["src/**/*.rs", "Cargo.toml"]

[component.hello.tool.spin-test]
source = "tests/hello.wasm"

[component.internal]
source = "internal.wasm"

[component.internal.build]
command = ["make a", "make b"]

[component.unused-2]
source = "/abs/unused.wasm"
"#;

#[test]
fn full_manifest() {
    let m = parse(FULL);

    assert_eq!(
        m.application,
        Application {
            name: "full".to_owned(),
            version: Some("0.1.0".to_owned()),
            description: Some("uses every field".to_owned()),
            authors: strings(&["Ada <ada@example.com>", "Bob"]),
        }
    );

    assert_eq!(
        m.variables.keys().collect::<Vec<_>>(),
        ["greeting", "api_key", "token"]
    );
    assert_eq!(
        m.variables["greeting"],
        Variable {
            default: Some("hi".to_owned()),
            required: false,
            secret: false
        }
    );
    assert_eq!(
        m.variables["api_key"],
        Variable {
            default: None,
            required: true,
            secret: true
        }
    );
    assert_eq!(
        m.variables["token"],
        Variable {
            default: Some("x".to_owned()),
            required: false,
            secret: true
        }
    );

    // Named components in file order, then inline ones in trigger order.
    assert_eq!(
        m.components.keys().collect::<Vec<_>>(),
        [
            "hello",
            "internal",
            "unused-2",
            "inline-component-1",
            "named-inline"
        ]
    );

    let hello = &m.components["hello"];
    assert_eq!(
        *hello,
        Component {
            id: "hello".to_owned(),
            source: ComponentSource::Local(PathBuf::from(
                "target/wasm32-wasip2/release/hello.wasm"
            )),
            description: Some("says hello".to_owned()),
            environment: map(&[("KEY", "value"), ("OTHER", "2")]),
            files: vec![
                FileMount::Pattern("static/**/*".to_owned()),
                FileMount::Placement {
                    source: PathBuf::from("assets"),
                    destination: "/assets".to_owned(),
                },
            ],
            exclude_files: strings(&["**/*.bak"]),
            allowed_outbound_hosts: strings(&["https://example.com", "redis://localhost:6379"]),
            key_value_stores: strings(&["default", "cache"]),
            sqlite_databases: strings(&["default"]),
            ai_models: strings(&["llama2-chat"]),
            variables: map(&[
                ("message", "{{ greeting }} world"),
                ("key", "{{api_key}}"),
                ("plain", "text"),
            ]),
            build: Some(ComponentBuild {
                commands: strings(&["cargo build --target wasm32-wasip2 --release"]),
                workdir: Some("hello".to_owned()),
                watch: strings(&["src/**/*.rs", "Cargo.toml"]),
            }),
            dependencies: IndexMap::new(),
            profiles: Vec::new(),
            copy_of: None,
            middleware: Vec::new(),
        }
    );

    let internal = &m.components["internal"];
    assert_eq!(
        internal.source,
        ComponentSource::Local(PathBuf::from("internal.wasm"))
    );
    assert_eq!(
        internal.build,
        Some(ComponentBuild {
            commands: strings(&["make a", "make b"]),
            workdir: None,
            watch: Vec::new(),
        })
    );
    assert_eq!(internal.description, None);
    assert!(internal.environment.is_empty() && internal.files.is_empty());

    assert_eq!(
        m.components["unused-2"].source,
        ComponentSource::Local(PathBuf::from("/abs/unused.wasm"))
    );

    let inline = &m.components["inline-component-1"];
    assert_eq!(inline.id, "inline-component-1");
    assert_eq!(
        inline.source,
        ComponentSource::Local(PathBuf::from("inline.wasm"))
    );
    assert_eq!(
        inline.allowed_outbound_hosts,
        strings(&["https://example.com"])
    );
    let named_inline = &m.components["named-inline"];
    assert_eq!(
        named_inline.source,
        ComponentSource::Local(PathBuf::from("named.wasm"))
    );
    assert_eq!(named_inline.variables, map(&[("v", "{{greeting}}")]));

    assert_eq!(
        m.http_triggers,
        vec![
            HttpTrigger {
                id: Some("hello-trigger".to_owned()),
                route: HttpRoute::Path("/hello".to_owned()),
                component: Some("hello".to_owned()),
                static_response: None,
                executor: HttpExecutor::Http,
                max_request_body_size: Some(1024),
                line: 23,
            },
            HttpTrigger {
                id: None,
                route: HttpRoute::Path("/users/:id/...".to_owned()),
                component: Some("inline-component-1".to_owned()),
                static_response: None,
                executor: HttpExecutor::Http,
                max_request_body_size: None,
                line: 29,
            },
            HttpTrigger {
                id: Some("named-inline".to_owned()),
                route: HttpRoute::Path("/named".to_owned()),
                component: Some("named-inline".to_owned()),
                static_response: None,
                executor: HttpExecutor::Http,
                max_request_body_size: None,
                line: 34,
            },
            HttpTrigger {
                id: None,
                route: HttpRoute::Private,
                component: Some("internal".to_owned()),
                static_response: None,
                executor: HttpExecutor::Http,
                max_request_body_size: None,
                line: 38,
            },
            HttpTrigger {
                id: None,
                route: HttpRoute::Path("/gone".to_owned()),
                component: None,
                static_response: Some(StaticResponse {
                    status_code: 404,
                    headers: map(&[("content-type", "text/plain"), ("x-a", "b")]),
                    body: Some("nope".to_owned()),
                }),
                executor: HttpExecutor::Http,
                max_request_body_size: None,
                line: 42,
            },
            HttpTrigger {
                id: None,
                route: HttpRoute::Path("/ok/".to_owned()),
                component: None,
                static_response: Some(StaticResponse {
                    status_code: 200,
                    headers: IndexMap::new(),
                    body: None,
                }),
                executor: HttpExecutor::Http,
                max_request_body_size: None,
                line: 46,
            },
        ]
    );

    assert_eq!(
        m.warnings,
        [
            "`application.trigger.http.base` is deprecated and ignored; routes are always relative to `/`"
        ]
    );
}

const MINIMAL: &str = r#"
spin_manifest_version = 2

[application]
name = "minimal"

[[trigger.http]]
route = "/..."
component = "app"

[component.app]
source = "app.wasm"
"#;

#[test]
fn minimal_manifest_has_defaults_and_no_warnings() {
    let m = parse(MINIMAL);
    assert_eq!(m.application.name, "minimal");
    assert_eq!(m.application.version, None);
    assert!(m.application.authors.is_empty());
    assert!(m.variables.is_empty());
    assert!(m.warnings.is_empty());
    assert_eq!(m.http_triggers.len(), 1);
    assert_eq!(m.http_triggers[0].line, 8);
    let app = &m.components["app"];
    assert_eq!(app.build, None);
    assert!(app.variables.is_empty() && app.ai_models.is_empty());
}

#[test]
fn wagi_executors_keep_their_command_line() {
    let m = parse(
        r#"spin_manifest_version = 2
[application]
name = "cgi"
[[trigger.http]]
route = "/default/..."
component = { source = "a.wasm" }
executor = { type = "wagi" }
[[trigger.http]]
route = "/custom"
component = { source = "b.wasm" }
executor = { type = "wagi", argv = "${SCRIPT_NAME} -v ${ARGS}", entrypoint = "_start" }
[[trigger.http]]
route = "/spin"
component = { source = "c.wasm" }
executor = { type = "http" }
"#,
    );
    let executors: Vec<_> = m.http_triggers.iter().map(|t| t.executor.clone()).collect();
    assert_eq!(
        executors,
        vec![
            HttpExecutor::Wagi {
                argv: WAGI_DEFAULT_ARGV.to_owned()
            },
            HttpExecutor::Wagi {
                argv: "${SCRIPT_NAME} -v ${ARGS}".to_owned()
            },
            HttpExecutor::Http,
        ]
    );
}

#[test]
fn inline_components_are_numbered_in_file_order() {
    let m = parse(
        r#"
spin_manifest_version = 2
[application]
name = "inline"
[[trigger.http]]
route = "/a"
component = { source = "a.wasm" }
[[trigger.http]]
id = "b"
route = "/b"
component = { source = "b.wasm" }
[[trigger.http]]
route = "/c"
component = { source = "c.wasm" }
"#,
    );
    let ids: Vec<_> = m
        .http_triggers
        .iter()
        .map(|t| t.component.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["inline-component-1", "b", "inline-component-2"]);
    assert_eq!(
        m.components["inline-component-2"].source.local(),
        Some(Path::new("c.wasm"))
    );
}

#[test]
fn distinct_routes_do_not_collide() {
    let m = parse(
        r#"
spin_manifest_version = 2
[application]
name = "routes"
[[trigger.http]]
route = "/a"
component = "c"
[[trigger.http]]
route = "/a/..."
component = "c"
[[trigger.http]]
route = "/a/:x"
component = "c"
[[trigger.http]]
route = "/"
component = "c"
[[trigger.http]]
route = { private = true }
component = "c"
[[trigger.http]]
route = { private = true }
component = "c"
[component.c]
source = "c.wasm"
"#,
    );
    assert_eq!(m.http_triggers.len(), 6);
    assert_eq!(m.http_triggers[5].route, HttpRoute::Private);
}

#[test]
fn crlf_line_endings_are_accepted() {
    let m = parse(&MINIMAL.replace('\n', "\r\n"));
    assert_eq!(m.http_triggers[0].line, 8);
}

#[test]
fn parse_file_reads_the_file() {
    let dir = std::env::temp_dir().join(format!("wisp-manifest-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spin.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let m = parse_file(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(m, parse(MINIMAL));
}

#[test]
fn parse_file_reports_an_unreadable_file() {
    let path = Path::new("does/not/exist/spin.toml");
    let err = parse_file(path).unwrap_err();
    assert_eq!(err.file, path);
    assert_eq!((err.line, err.column), (0, 0));
    assert!(err.message.starts_with("cannot read manifest: "), "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with("does/not/exist/spin.toml: cannot read manifest: "),
        "{shown}"
    );
    assert!(shown.contains("\n  hint: check the path"), "{shown}");
}

#[test]
fn errors_carry_position_and_hint() {
    let text = MINIMAL.replace("component = \"app\"", "component = \"apq\"");
    let err = parse_str(&text, Path::new("x/spin.toml")).unwrap_err();
    assert_eq!(err.file, Path::new("x/spin.toml"));
    assert_eq!((err.line, err.column), (9, 13));
    assert_eq!(err.message, "component `apq` is not defined");
    assert_eq!(
        err.hint.as_deref(),
        Some("defined components: `app`; fix the name or add a [component.apq] table")
    );
}

#[test]
fn redis_and_cron_triggers() {
    let manifest = parse(
        r#"spin_manifest_version = 2

[application]
name = "events"

[application.trigger.redis]
address = "redis://{{ redis_host }}:6379"

[variables]
redis_host = { default = "127.0.0.1" }

[[trigger.redis]]
channel = "orders"
component = "worker"

[[trigger.redis]]
id = "audit"
address = "redis://audit.internal:6380"
channel = "audit"
component = { source = "audit.wasm" }

[[trigger.cron]]
component = "worker"
cron_expression = "*/10 * * * * *"

[[trigger.cron]]
component = "worker"
cron_expression = "0 0 3 * * Sun 2030"
allow_overlap = true

[[trigger.cron]]
component = "worker"
cron_expression = "0 30 9 * * Mon-Fri"

[component.worker]
source = "worker.wasm"
"#,
    );
    assert!(manifest.http_triggers.is_empty());
    assert_eq!(
        manifest.redis_triggers,
        vec![
            RedisTrigger {
                id: None,
                component: "worker".into(),
                channel: "orders".into(),
                address: "redis://{{ redis_host }}:6379".into(),
                line: 13,
            },
            RedisTrigger {
                id: Some("audit".into()),
                component: "audit".into(),
                channel: "audit".into(),
                address: "redis://audit.internal:6380".into(),
                line: 19,
            },
        ]
    );
    assert_eq!(manifest.cron_triggers.len(), 3);
    assert_eq!(manifest.cron_triggers[0].cron_expression, "*/10 * * * * *");
    assert!(!manifest.cron_triggers[0].allow_overlap);
    assert!(manifest.cron_triggers[1].allow_overlap);
    assert_eq!(manifest.cron_triggers[1].line, 28);
    assert!(manifest.components.contains_key("audit"));
}

#[test]
fn dependencies_in_every_source_form() {
    let m = parse(
        r#"
spin_manifest_version = 2

[application]
name = "deps"

[[trigger.http]]
route = "/..."
component = "main"

[component.main]
source = "main.wasm"

[component.main.dependencies]
"test:calc/adder@0.1.0" = { path = "deps/adder.wasm", inherit_configuration = ["environment", "files"] }
"test:other" = { url = "https://example.com/other.wasm", digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000" }
"my-dep" = { component = "lib", export = "test:lib/api@1.0.0", inherit_configuration = true }
"test:reg" = "1.2"
"test:pkg/x@0.1.0" = { version = "=0.1.0", registry = "127.0.0.1:5000", package = "test:renamed" }

[component.lib]
source = "lib.wasm"

[component.all]
source = "all.wasm"
dependencies_inherit_configuration = true

[component.all.dependencies]
"test:calc" = { path = "adder.wasm" }
"#,
    );
    let deps = &m.components["main"].dependencies;
    assert_eq!(
        deps.keys().collect::<Vec<_>>(),
        [
            "test:calc/adder@0.1.0",
            "test:other",
            "my-dep",
            "test:reg",
            "test:pkg/x@0.1.0"
        ]
    );
    assert_eq!(
        deps["test:reg"].source,
        ComponentSource::Registry {
            registry: None,
            package: "test:reg".to_owned(),
            version: "1.2".to_owned(),
        }
    );
    assert_eq!(
        deps["test:pkg/x@0.1.0"].source,
        ComponentSource::Registry {
            registry: Some("127.0.0.1:5000".to_owned()),
            package: "test:renamed".to_owned(),
            version: "=0.1.0".to_owned(),
        }
    );
    assert_eq!(
        deps["test:calc/adder@0.1.0"],
        Dependency {
            source: ComponentSource::Local(PathBuf::from("deps/adder.wasm")),
            export: None,
            inherit: InheritConfiguration::Some(strings(&["environment", "files"])),
        }
    );
    assert!(matches!(
        &deps["test:other"].source,
        ComponentSource::Remote { url, .. } if url == "https://example.com/other.wasm"
    ));
    assert_eq!(deps["test:other"].inherit, InheritConfiguration::default());
    assert_eq!(
        deps["my-dep"],
        Dependency {
            source: ComponentSource::Local(PathBuf::from("lib.wasm")),
            export: Some("test:lib/api@1.0.0".to_owned()),
            inherit: InheritConfiguration::All,
        }
    );
    assert_eq!(
        m.components["all"].dependencies["test:calc"].inherit,
        InheritConfiguration::All
    );
}

/// A Spin 1.x manifest with the fields its templates wrote.
const VERSION_1: &str = r#"spin_manifest_version = "1"
authors = ["Ada <ada@example.com>"]
description = "a Spin 1.x app"
name = "old-app"
trigger = { type = "http", base = "/" }
version = "1.0.0"

[variables]
token = { required = true, secret = true }

[[component]]
id = "api"
source = "api/target/wasm32-wasi/release/api.wasm"
description = "the API"
allowed_http_hosts = ["api.example.com", "https://other.example.com:8443", "self"]
key_value_stores = ["default"]
environment = { MODE = "prod" }
files = [{ source = "assets", destination = "/" }]
[component.trigger]
route = "/api/..."
[component.config]
token = "{{ token }}"
[component.build]
command = "cargo build --target wasm32-wasi --release"
workdir = "api"

[[component]]
id = "cgi"
source = "cgi.wasm"
allowed_outbound_hosts = ["redis://cache:6379"]
allowed_http_hosts = ["insecure:allow-all"]
[component.trigger]
route = "/cgi"
executor = { type = "wagi", argv = "${SCRIPT_NAME} ${ARGS}" }
"#;

#[test]
fn version_1_manifests_are_read_as_spin_reads_them() {
    let m = parse(VERSION_1);
    assert_eq!(m.application.name, "old-app");
    assert_eq!(m.application.version.as_deref(), Some("1.0.0"));
    assert_eq!(m.application.description.as_deref(), Some("a Spin 1.x app"));
    assert_eq!(m.application.authors, strings(&["Ada <ada@example.com>"]));
    // `base = "/"` is the default: nothing to warn about.
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert!(m.variables["token"].required && m.variables["token"].secret);

    // One trigger per component, named as Spin names them, placed at the version 1
    // `[component.trigger]` lines.
    let triggers: Vec<_> = m
        .http_triggers
        .iter()
        .map(|t| (t.id.as_deref(), t.component.as_deref(), t.line))
        .collect();
    assert_eq!(
        triggers,
        [
            (Some("trigger-api"), Some("api"), 19),
            (Some("trigger-cgi"), Some("cgi"), 32)
        ]
    );
    assert_eq!(
        m.http_triggers[0].route,
        HttpRoute::Path("/api/...".to_owned())
    );
    assert!(matches!(
        m.http_triggers[1].executor,
        HttpExecutor::Wagi { .. }
    ));

    let api = &m.components["api"];
    assert_eq!(api.description.as_deref(), Some("the API"));
    assert_eq!(api.variables, map(&[("token", "{{ token }}")]));
    assert_eq!(api.environment, map(&[("MODE", "prod")]));
    assert_eq!(api.key_value_stores, strings(&["default"]));
    assert_eq!(api.files.len(), 1);
    assert_eq!(
        api.build.as_ref().map(|b| b.workdir.as_deref()),
        Some(Some("api"))
    );
    // No `allowed_outbound_hosts`: every database, as version 1 allowed, then both schemes
    // of each HTTP host.
    assert_eq!(
        api.allowed_outbound_hosts,
        strings(&[
            "redis://*:*",
            "mysql://*:*",
            "postgres://*:*",
            "http://api.example.com",
            "https://api.example.com",
            "http://other.example.com:8443",
            "https://other.example.com:8443",
            "http://self",
        ])
    );
    assert_eq!(
        m.components["cgi"].allowed_outbound_hosts,
        strings(&[
            "redis://cache:6379",
            "http://*:*",
            "https://*:*",
            "http://self"
        ])
    );
}

#[test]
fn spin_version_1_and_redis_apps_are_version_1_too() {
    let m = parse(
        r#"spin_version = "1"
name = "listener"
trigger = { type = "redis", address = "redis://localhost:6379" }

[[component]]
id = "echo"
source = "echo.wasm"
[component.trigger]
channel = "messages"
"#,
    );
    assert_eq!(m.redis_triggers.len(), 1);
    let trigger = &m.redis_triggers[0];
    assert_eq!(
        (
            trigger.channel.as_str(),
            trigger.address.as_str(),
            trigger.line
        ),
        ("messages", "redis://localhost:6379", 8)
    );
}

#[test]
fn version_1_errors_point_into_the_version_1_text() {
    let err = |text: &str| parse_str(text, Path::new("spin.toml")).unwrap_err();
    // Found on the version 1 text itself.
    let unknown = err(
        "spin_manifest_version = \"1\"\nname = \"a\"\ntrigger = { type = \"http\" }\nfrobnicate = 1\n",
    );
    assert_eq!((unknown.line, unknown.column), (4, 1), "{unknown}");
    assert!(
        unknown.message.contains("unknown field `frobnicate`"),
        "{unknown}"
    );
    let host = err(
        "spin_manifest_version = \"1\"\nname = \"a\"\ntrigger = { type = \"http\" }\n\n[[component]]\nid = \"x\"\nsource = \"x.wasm\"\nallowed_http_hosts = [\"https://example.com/path\"]\n[component.trigger]\nroute = \"/\"\n",
    );
    assert_eq!(host.line, 8, "{host}");
    assert!(
        host.message.contains(
            "invalid `allowed_http_hosts` entry `https://example.com/path`: it has a path"
        ),
        "{host}"
    );
    // Found by the version 2 rules on the converted manifest: placed at the component's
    // table, the message naming the component.
    let id = err(
        "spin_manifest_version = \"1\"\nname = \"a\"\ntrigger = { type = \"http\" }\n\n[[component]]\nid = \"Bad_Id\"\nsource = \"x.wasm\"\n[component.trigger]\nroute = \"/\"\n",
    );
    assert_eq!(id.line, 6, "{id}");
    assert!(id.message.contains("invalid component id `Bad_Id`"), "{id}");
    assert!(
        id.hint
            .as_deref()
            .unwrap_or_default()
            .contains("read as version 2"),
        "{id}"
    );
    let route = err(
        "spin_manifest_version = \"1\"\nname = \"a\"\ntrigger = { type = \"http\" }\n\n[[component]]\nid = \"x\"\nsource = \"x.wasm\"\n[component.trigger]\nroute = \"no-slash\"\n",
    );
    assert_eq!(route.line, 8, "{route}");
    let untyped = err("spin_manifest_version = \"1\"\nname = \"a\"\ntrigger = { base = \"/\" }\n");
    assert_eq!(untyped.line, 3, "{untyped}");
    assert!(untyped.message.contains("has no `type`"), "{untyped}");
}

#[test]
fn a_version_1_trigger_setting_error_points_at_the_apps_trigger() {
    let err = parse_str(
        "spin_manifest_version = \"1\"\nname = \"a\"\n\ntrigger = { type = \"redis\", address = 42 }\n",
        Path::new("spin.toml"),
    )
    .unwrap_err();
    assert_eq!(err.line, 4, "{err}");
}

mod spin4;

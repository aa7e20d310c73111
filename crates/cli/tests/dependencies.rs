//! End-to-end tests of component dependencies (Spin SIP 020,
//! `[component.<id>.dependencies]`) served by the real `wisp up`.
//!
//! The importer is the `dep-main` guest (`main.wasm` in each app directory),
//! an HTTP component importing `test:calc/adder@0.1.0`; the dependency is the
//! `dep-adder` guest (`adder.wasm`), which exports that interface and reports
//! what it may do itself: read an environment variable, send an outbound
//! HTTP request, open the key-value store `default` (see
//! `tests/programs/README.md`). Routes are relative to the component's route
//! (`dep-main` reads `spin-path-info`), so one app serves several components
//! on `/<id>/...` and the suite starts few `wisp` processes:
//!
//! - `/sum`: `sum=5` (the dependency's `add(2, 3)`),
//! - `/env/<NAME>`: `main=<value|none> dep=<value|none>`,
//! - `/fetch?<url>`: the dependency's `GET <url>`: `status <code>` or `error: <ErrorCode>`,
//! - `/kv`: the dependency's read of key `k`: `ok: <value|none>` or `error: <Error>`.
//!
//! A dependency gets none of its importer's configuration (environment,
//! outbound hosts, key-value stores, ...) unless the component sets
//! `dependencies_inherit_configuration = true`, or (Spin 4) the entry lists
//! what it inherits in `inherit_configuration`.

mod support;

use std::process::ExitStatus;

use support::{Upstream, Wisp};
use wisp_test_programs as programs;

/// The interface `dep-main` imports and `dep-adder` exports.
const ADDER: &str = "test:calc/adder@0.1.0";

/// The environment every component of these apps gets.
const ENVIRONMENT: &str = r#"environment = { MODE = "prod" }"#;

// ---------------------------------------------------------------------------
// Helpers

/// A `[[trigger.http]]` on `route` for component `id`, which serves `main.wasm`
/// (`dep-main`) with `settings` (lines of its table) and `dependencies` (lines of
/// its `[component.<id>.dependencies]` table).
fn component(id: &str, route: &str, settings: &str, dependencies: &str) -> String {
    format!(
        r#"
[[trigger.http]]
route = "{route}"
component = "{id}"

[component.{id}]
source = "main.wasm"
{settings}

[component.{id}.dependencies]
{dependencies}
"#
    )
}

/// `component` on `/<id>/...`, the layout of the apps serving several components.
fn routed(id: &str, settings: &str, dependencies: &str) -> String {
    component(id, &format!("/{id}/..."), settings, dependencies)
}

/// `component` `main` on `/...`, for the apps with a single component.
fn single(settings: &str, dependencies: &str) -> String {
    component("main", "/...", settings, dependencies)
}

/// An app directory holding `main.wasm` (`dep-main`), `adder.wasm`
/// (`dep-adder`) and a `spin.toml` with `components`, plus its own cache for
/// downloaded sources.
struct App {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
    manifest: String,
}

impl App {
    fn new(components: &[String]) -> App {
        let manifest = format!(
            "spin_manifest_version = 2\n[application]\nname = \"deps\"\n{}",
            components.concat()
        );
        let dir = support::app_dir(&manifest);
        std::fs::copy(programs::DEP_MAIN, dir.path().join("main.wasm")).unwrap();
        std::fs::copy(programs::DEP_ADDER, dir.path().join("adder.wasm")).unwrap();
        App {
            dir,
            cache: tempfile::tempdir().unwrap(),
            manifest,
        }
    }

    /// `wisp up -f <dir>/spin.toml`, with a cache for url sources of its own.
    fn start(&self) -> Result<Wisp, (ExitStatus, String)> {
        self.start_with(&[])
    }

    /// [`App::start`] with more arguments for `wisp up`.
    fn start_with(&self, args: &[&str]) -> Result<Wisp, (ExitStatus, String)> {
        let mut command = support::wisp_command();
        command
            .arg("up")
            .args(args)
            .arg("-f")
            .arg(self.dir.path().join("spin.toml"))
            .arg("--oci-cache-dir")
            .arg(self.cache.path())
            // Key-value state goes beside the manifest, in this temp dir.
            .env_remove("WISP_STATE_DIR");
        Wisp::spawn(command)
    }

    fn up(&self) -> Wisp {
        self.start().unwrap_or_else(|(status, stderr)| {
            panic!(
                "wisp up exited with {status}:\n{stderr}\nspin.toml:\n{}",
                self.manifest
            )
        })
    }

    /// `wisp up` over plain HTTP to registries, which must start.
    fn up_insecure(&self) -> Wisp {
        self.start_with(&["--insecure"])
            .unwrap_or_else(|(status, stderr)| {
                panic!(
                    "wisp up exited with {status}:\n{stderr}\nspin.toml:\n{}",
                    self.manifest
                )
            })
    }

    /// Asserts `wisp up` exits non-zero before serving; returns its stderr.
    fn fails_to_start(&self) -> String {
        match self.start() {
            Ok(wisp) => panic!(
                "wisp up started, but should have refused this app:\n{}\nstderr:\n{}",
                self.manifest,
                wisp.stderr()
            ),
            Err((status, stderr)) => {
                assert!(
                    !status.success(),
                    "wisp up exited with {status} before serving; expected a failure:\n{stderr}"
                );
                stderr
            }
        }
    }
}

/// `GET path`, which must answer `200`; returns the body.
fn body(wisp: &Wisp, path: &str) -> String {
    let response = wisp.get(path);
    assert_eq!(
        response.status,
        200,
        "GET {path} answered {}: {}\nwisp stderr:\n{}",
        response.status,
        response.text(),
        wisp.stderr()
    );
    response.text()
}

/// Asserts `GET path` answers `200` with exactly `expected`.
fn expect(wisp: &Wisp, path: &str, expected: &str) {
    let text = body(wisp, path);
    assert_eq!(
        text,
        expected,
        "GET {path}\nwisp stderr:\n{}",
        wisp.stderr()
    );
}

/// Asserts `GET path` answers `200` with a body containing `needle`.
fn expect_containing(wisp: &Wisp, path: &str, needle: &str) {
    let text = body(wisp, path);
    assert!(
        text.contains(needle),
        "GET {path} answered {text:?}, expected it to contain {needle:?}\nwisp stderr:\n{}",
        wisp.stderr()
    );
}

/// A loopback server for the url dependency and the outbound checks:
/// `/adder.wasm` is the `dep-adder` component, anything else `200` `pong`.
fn upstream() -> Upstream {
    Upstream::start(|path| match path {
        "/adder.wasm" => (
            "200 OK",
            "content-type: application/wasm\r\n".to_owned(),
            std::fs::read(programs::DEP_ADDER).unwrap(),
        ),
        _ => (
            "200 OK",
            "content-type: text/plain\r\n".to_owned(),
            b"pong".to_vec(),
        ),
    })
}

/// `allowed_outbound_hosts` granting `upstream`, and `key_value_stores = ["default"]`.
fn grants(upstream: &Upstream) -> String {
    format!(
        "allowed_outbound_hosts = [\"{}\"]\nkey_value_stores = [\"default\"]",
        upstream.base()
    )
}

/// The dependency entry for `adder.wasm` under `key`, with `extra` fields.
fn adder_entry(key: &str, extra: &str) -> String {
    format!("{key:?} = {{ path = \"adder.wasm\"{extra} }}")
}

// ---------------------------------------------------------------------------
// Linking

/// A dependency keyed by its interface, by its package, through another export
/// (`export = "offset-adder"`), or fetched from a URL (digest checked) satisfies the
/// import: `add(2, 3)` runs in the dependency. The composed code is compiled once: a
/// second start with the same compile cache compiles nothing.
#[test]
fn dependency_by_interface_package_or_url_satisfies_the_import() {
    let server = upstream();
    let wasm = std::fs::read(programs::DEP_ADDER).unwrap();
    let digest = wisp_app::sha256_digest(&wasm);
    let url = format!("{}/adder.wasm", server.base());
    let app = App::new(&[
        routed("iface", "", &adder_entry(ADDER, "")),
        routed("package", "", &adder_entry("test:calc", "")),
        // `offset-adder` has the same functions; its `add` adds 100.
        routed(
            "export",
            "",
            &adder_entry(ADDER, ", export = \"offset-adder\""),
        ),
        routed(
            "url",
            "",
            &format!("{ADDER:?} = {{ url = \"{url}\", digest = \"{digest}\" }}"),
        ),
    ]);
    let compile_cache = tempfile::tempdir().unwrap();
    let cache_arg = ["--cache-dir", compile_cache.path().to_str().unwrap()];
    let up = || {
        app.start_with(&cache_arg)
            .unwrap_or_else(|(status, stderr)| panic!("wisp up exited with {status}:\n{stderr}"))
    };
    let wisp = up();
    expect(&wisp, "/iface/sum", "sum=5");
    expect(&wisp, "/package/sum", "sum=5");
    expect(&wisp, "/export/sum", "sum=105");
    expect(&wisp, "/url/sum", "sum=5");
    assert!(
        server.accepts() >= 1,
        "the url dependency was downloaded from {url}"
    );
    let first = wisp.stderr();
    assert!(
        first.contains("compiling component `iface`"),
        "the first start compiles the composed component:\n{first}"
    );
    wisp.stop_cleanly();

    let wisp = up();
    expect(&wisp, "/export/sum", "sum=105");
    let second = wisp.stderr();
    assert!(
        !second.contains("compiling component"),
        "the second start loads every composed component from the cache:\n{second}"
    );
    wisp.stop_cleanly();
}

/// A dependency given as a registry package and a version requirement is fetched from
/// the registry (the newest matching version) and composed like a local one.
#[test]
fn registry_dependency_is_fetched_by_version_requirement() {
    let mut registry = wisp_test_registry::Registry::start();
    // Publish dep-adder as `test:calc` 0.1.5: an artifact whose first layer is the
    // component, which is what a package resolves to.
    let package = support::app_dir(
        "spin_manifest_version = 2\n[application]\nname = \"calc\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"calc\"\n\
         [component.calc]\nsource = \"adder.wasm\"\n",
    );
    std::fs::copy(programs::DEP_ADDER, package.path().join("adder.wasm")).unwrap();
    let push = support::wisp_command()
        .args(["registry", "push", "--insecure", "-f"])
        .arg(package.path().join("spin.toml"))
        .arg(format!("{}/test/calc:0.1.5", registry.host))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "wisp registry push failed: {}",
        String::from_utf8_lossy(&push.stderr)
    );

    let app = App::new(&[single(
        "",
        &format!(
            "\"test:calc\" = {{ version = \"0.1\", registry = \"{}\" }}",
            registry.host
        ),
    )]);
    let wisp = app.up_insecure();
    expect(&wisp, "/sum", "sum=5");
    wisp.stop_cleanly();

    let missing = App::new(&[single(
        "",
        &format!(
            "\"test:calc\" = {{ version = \"^2\", registry = \"{}\" }}",
            registry.host
        ),
    )]);
    let stderr = match missing.start_with(&["--insecure"]) {
        Ok(wisp) => panic!(
            "wisp up started without a matching version:\n{}",
            wisp.stderr()
        ),
        Err((_, stderr)) => stderr,
    };
    assert_mentions(&stderr, &["test:calc", "^2", "0.1.5"]);

    // A component's own `source = { registry, package, version }` resolves the same way:
    // publish dep-main as `test:main` 1.0.0 and serve it from there.
    std::fs::copy(programs::DEP_MAIN, package.path().join("adder.wasm")).unwrap();
    let push = support::wisp_command()
        .args(["registry", "push", "--insecure", "-f"])
        .arg(package.path().join("spin.toml"))
        .arg(format!("{}/test/main:1.0.0", registry.host))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let registry_source = App::new(&[format!(
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"from-registry\"\n\
         [component.from-registry]\n\
         source = {{ registry = \"{}\", package = \"test:main\", version = \"1.0.0\" }}\n\
         [component.from-registry.dependencies]\n\"test:calc\" = {{ path = \"adder.wasm\" }}\n",
        registry.host
    )]);
    let wisp = registry_source.up_insecure();
    expect(&wisp, "/sum", "sum=5");
    wisp.stop_cleanly();
    registry.stop();
}

// ---------------------------------------------------------------------------
// Configuration: denied by default, inherited on request

/// Three components with the same grants (environment `MODE=prod`, an
/// allowed loopback host of their own, the key-value store `default`):
///
/// - `deny`: no inheritance, so the dependency sees no environment, may send
///   no outbound request (the upstream sees no connection) and may open no
///   store;
/// - `inherit`: `dependencies_inherit_configuration = true`, so the dependency
///   has the component's environment, hosts (and only those) and stores;
/// - `partial`: Spin 4's per-entry `inherit_configuration = ["environment"]`,
///   so the dependency has the environment but still no outbound HTTP.
#[test]
fn dependencies_get_the_importers_configuration_only_when_inherited() {
    let (deny_up, inherit_up, partial_up, unlisted) =
        (upstream(), upstream(), upstream(), upstream());
    let with_env =
        |upstream: &Upstream, more: &str| format!("{ENVIRONMENT}\n{}\n{more}", grants(upstream));
    let app = App::new(&[
        routed("deny", &with_env(&deny_up, ""), &adder_entry(ADDER, "")),
        routed(
            "inherit",
            &with_env(&inherit_up, "dependencies_inherit_configuration = true"),
            &adder_entry(ADDER, ""),
        ),
        routed(
            "partial",
            &with_env(&partial_up, ""),
            &adder_entry(ADDER, ", inherit_configuration = [\"environment\"]"),
        ),
    ]);
    let wisp = app.up();

    // Denied by default; the dependency still runs.
    expect(&wisp, "/deny/sum", "sum=5");
    expect(&wisp, "/deny/env/MODE", "main=prod dep=none");
    let fetch =
        |upstream: &Upstream, component: &str| format!("/{component}/fetch?{}/", upstream.base());
    expect_containing(&wisp, &fetch(&deny_up, "deny"), "is not permitted");
    assert_eq!(
        deny_up.accepts(),
        0,
        "a dependency without inherited configuration must not reach the component's allowed host"
    );
    let kv = body(&wisp, "/deny/kv");
    let lower = kv.to_ascii_lowercase();
    assert!(
        kv.starts_with("error:")
            && (lower.contains("accessdenied") || lower.contains("access-denied")),
        "GET /deny/kv answered {kv:?}, expected `error: AccessDenied`\nwisp stderr:\n{}",
        wisp.stderr()
    );

    // Everything inherited, and no more than the component has.
    expect(&wisp, "/inherit/env/MODE", "main=prod dep=prod");
    expect(&wisp, &fetch(&inherit_up, "inherit"), "status 200");
    assert!(
        inherit_up.accepts() >= 1,
        "the inheriting dependency's request reached the allowed host"
    );
    expect_containing(&wisp, &fetch(&unlisted, "inherit"), "HttpRequestDenied");
    assert_eq!(
        unlisted.accepts(),
        0,
        "a host outside allowed_outbound_hosts saw no connection"
    );
    let kv = body(&wisp, "/inherit/kv");
    assert!(
        kv.starts_with("ok:"),
        "GET /inherit/kv answered {kv:?}, expected `ok: ...`\nwisp stderr:\n{}",
        wisp.stderr()
    );

    // Spin 4: only the environment.
    expect(&wisp, "/partial/env/MODE", "main=prod dep=prod");
    expect_containing(&wisp, &fetch(&partial_up, "partial"), "is not permitted");
    assert_eq!(
        partial_up.accepts(),
        0,
        "inherit_configuration = [\"environment\"] grants no outbound HTTP"
    );

    wisp.stop_cleanly();
}

// ---------------------------------------------------------------------------
// Refused at start

/// Asserts `stderr` contains every one of `needles`.
fn assert_mentions(stderr: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "wisp's stderr does not mention {needle:?}:\n{stderr}"
        );
    }
}

#[test]
fn url_dependency_with_a_wrong_digest_is_refused() {
    let server = upstream();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let app = App::new(&[single(
        "",
        &format!(
            "{ADDER:?} = {{ url = \"{}/adder.wasm\", digest = \"{wrong}\" }}",
            server.base()
        ),
    )]);
    let stderr = app.fails_to_start();
    assert_mentions(&stderr, &["digest", ADDER]);
    // Refused for what it downloaded, not for failing to download it.
    assert!(
        server.accepts() >= 1,
        "wisp never asked the server for the dependency:\n{stderr}"
    );
}

#[test]
fn dependency_matching_no_import_is_refused() {
    let app = App::new(&[single("", &adder_entry("test:other/x@0.1.0", ""))]);
    let stderr = app.fails_to_start();
    assert_mentions(&stderr, &["test:other/x@0.1.0", "matches no import"]);
}

#[test]
fn an_export_the_dependency_lacks_is_refused() {
    let app = App::new(&[single(
        "",
        &adder_entry(ADDER, ", export = \"no-such-export\""),
    )]);
    let stderr = app.fails_to_start();
    assert_mentions(&stderr, &["no-such-export", "offset-adder", ADDER]);
}

/// `wisp doctor` does not report the imports a dependency satisfies as missing.
#[test]
fn doctor_accepts_a_component_with_dependencies() {
    let app = App::new(&[single("", &adder_entry(ADDER, ""))]);
    let output = support::run_wisp(&["doctor", "-f", app.dir.path().to_str().unwrap()], None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("main: has a dependency"), "{text}");
    assert!(text.contains("0 error(s)"), "{text}");
}

#[test]
fn missing_dependency_file_is_refused() {
    let app = App::new(&[single(
        "",
        &format!("{ADDER:?} = {{ path = \"missing.wasm\" }}"),
    )]);
    assert!(!app.dir.path().join("missing.wasm").exists());
    let stderr = app.fails_to_start();
    assert_mentions(&stderr, &["missing.wasm"]);
}

#[test]
fn a_dependency_that_is_not_a_component_is_refused_by_its_name() {
    let app = App::new(&[single(
        "",
        &format!("{ADDER:?} = {{ path = \"adder.txt\" }}"),
    )]);
    std::fs::write(app.dir.path().join("adder.txt"), "not wasm at all").unwrap();
    let stderr = app.fails_to_start();
    assert_mentions(&stderr, &[ADDER, "cannot read it as a component"]);
    // The name Wisp registers the bytes under inside the composition is its own business.
    assert!(!stderr.contains("wisp-dependency"), "{stderr}");
}

#[test]
fn export_on_a_package_wide_dependency_is_refused() {
    let app = App::new(&[single("", &adder_entry("test:calc", ", export = \"x\""))]);
    let stderr = app.fails_to_start();
    assert_mentions(&stderr, &["export"]);
}

#[test]
fn inheriting_configuration_both_ways_is_refused() {
    let app = App::new(&[single(
        "dependencies_inherit_configuration = true",
        &adder_entry(ADDER, ", inherit_configuration = [\"environment\"]"),
    )]);
    let stderr = app.fails_to_start();
    assert_mentions(&stderr, &["inherit_configuration"]);
}

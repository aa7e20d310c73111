//! End-to-end tests of HTTP middleware (Spin's `dependencies.middleware` on a
//! `[[trigger.http]]`) served by the real `wisp up`.
//!
//! The wrapped component is the `spin-sdk-v7` guest (`app.wasm`), which echoes the
//! request's `x-chain` header; the middleware are the `middleware-a` and
//! `middleware-b` guests, which append their names to `x-chain` on the way in and
//! to `x-chain-back` on the way out, and answer a path ending in
//! `/middleware/variable` themselves with what reading the variable `greeting`
//! gave them (see `crates/test-programs/build.rs`).

mod support;

use std::process::ExitStatus;

use support::Wisp;
use wisp_test_programs as programs;

/// An app directory with `app.wasm` (`spin-sdk-v7`), `a.wasm` (`middleware-a`),
/// `b.wasm` (`middleware-b`) and `hello-p2.wasm` (`hello`, WASI 0.2) beside a
/// `spin.toml` of `body` under an `[application]` table.
fn app(body: &str) -> (tempfile::TempDir, String) {
    let manifest = format!("spin_manifest_version = 2\n[application]\nname = \"mw\"\n{body}");
    let dir = support::app_dir(&manifest);
    for (program, name) in [
        (programs::SPIN_SDK_V7, "app.wasm"),
        (programs::MIDDLEWARE_A, "a.wasm"),
        (programs::MIDDLEWARE_B, "b.wasm"),
        (programs::HELLO, "hello-p2.wasm"),
    ] {
        std::fs::copy(program, dir.path().join(name)).unwrap();
    }
    (dir, manifest)
}

fn start(dir: &tempfile::TempDir) -> Result<Wisp, (ExitStatus, String)> {
    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"))
        .env_remove("WISP_STATE_DIR");
    Wisp::spawn(command)
}

/// `wisp up` on `body`, which must refuse it before serving; returns its stderr.
fn refused(body: &str) -> String {
    let (dir, manifest) = app(body);
    match start(&dir) {
        Ok(wisp) => panic!(
            "wisp up served an app it should refuse:\n{manifest}\nstderr:\n{}",
            wisp.stderr()
        ),
        Err((status, stderr)) => {
            assert!(!status.success(), "{status}: {stderr}");
            stderr
        }
    }
}

/// The components every app here has: `hello` (the wrapped component, with a
/// variable the middleware may inherit) and the two middleware as components of the
/// app, without triggers of their own.
const COMPONENTS: &str = r#"
[component.hello]
source = "app.wasm"
variables = { greeting = "hi from hello" }

[component.mw-a]
source = "a.wasm"
"#;

/// A chain runs outermost first on the way in and innermost first on the way out, on
/// the trigger that lists it only; a middleware reaches the wrapped component's
/// variables only when it inherits them.
#[test]
fn middleware_chains_in_order_on_its_trigger_and_inherits_only_what_it_is_given() {
    let (dir, manifest) = app(&format!(
        r#"
[[trigger.http]]
route = "/chain/..."
component = "hello"
dependencies.middleware = [{{ component = "mw-a" }}, {{ path = "b.wasm" }}]

[[trigger.http]]
route = "/inherit/..."
component = "hello"
dependencies.middleware = [{{ path = "b.wasm", inherit_configuration = ["variables"] }}]

[[trigger.http]]
route = "/plain/..."
component = "hello"
{COMPONENTS}"#
    ));
    let wisp = start(&dir).unwrap_or_else(|(status, stderr)| {
        panic!("wisp up exited with {status}:\n{stderr}\n{manifest}")
    });

    let chained = wisp.get("/chain/x");
    assert_eq!(chained.status, 200, "{}\n{}", chained.text(), wisp.stderr());
    assert_eq!(
        chained.text(),
        "Hello from spin-sdk 7 /chain/x\nchain: middleware-a,middleware-b\n"
    );
    assert_eq!(
        chained.header("x-chain-back"),
        Some("middleware-a,middleware-b,middleware-b,middleware-a"),
        "{:?}",
        chained.headers
    );

    // The same component without middleware on another trigger.
    let plain = wisp.get("/plain/y");
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.text(), "Hello from spin-sdk 7 /plain/y\n");
    assert_eq!(plain.header("x-chain-back"), None);

    // Not inherited: the variables import is refused.
    let denied = wisp.get("/chain/middleware/variable");
    assert_eq!(denied.status, 200, "{}", denied.text());
    let text = denied.text();
    assert!(
        text.starts_with("middleware-a variable error:") && text.contains("not permitted"),
        "{text}"
    );
    // Inherited: the wrapped component's variable.
    let inherited = wisp.get("/inherit/middleware/variable");
    assert_eq!(inherited.status, 200, "{}", inherited.text());
    assert_eq!(inherited.text(), "middleware-b variable: hi from hello\n");
    wisp.stop_cleanly();
}

#[test]
fn middleware_around_a_wasi_0_2_component_is_refused() {
    let stderr = refused(&format!(
        r#"
[[trigger.http]]
route = "/..."
component = "p2"
dependencies.middleware = [{{ component = "mw-a" }}]

[component.p2]
source = "hello-p2.wasm"
{COMPONENTS}"#
    ));
    assert!(
        stderr.contains("middleware") && stderr.contains("wasi:http/handler@0.3.0"),
        "{stderr}"
    );
}

#[test]
fn a_middleware_without_the_handler_interface_is_refused_by_its_position() {
    // `hello-p2.wasm` serves WASI 0.2's `incoming-handler`: nothing a chain can call.
    let stderr = refused(&format!(
        r#"
[[trigger.http]]
route = "/..."
component = "hello"
dependencies.middleware = [{{ path = "a.wasm" }}, {{ path = "hello-p2.wasm" }}]
{COMPONENTS}"#
    ));
    assert!(
        stderr.contains("middleware 2")
            && stderr.contains("imports no version of it and exports no version of it"),
        "{stderr}"
    );
    assert!(!stderr.contains("wisp-middleware"), "{stderr}");
}

#[test]
fn trigger_dependencies_other_than_middleware_are_refused_at_their_line() {
    let stderr = refused(&format!(
        r#"
[[trigger.http]]
route = "/..."
component = "hello"
dependencies.filters = [{{ component = "mw-a" }}]
{COMPONENTS}"#
    ));
    assert!(
        stderr.contains("`filters`") && stderr.contains("`middleware` is the only kind"),
        "{stderr}"
    );
    assert!(stderr.contains("spin.toml:8"), "{stderr}");
}

/// Pushed to a real registry, a middleware app keeps its chain: each middleware is a
/// layer of its own (Spin's layout), and `wisp up --from` runs the chain as before.
#[test]
fn a_pushed_middleware_app_pulls_and_runs_its_chain() {
    let mut registry = wisp_test_registry::Registry::start();
    let (dir, manifest) = app(&format!(
        r#"
[[trigger.http]]
route = "/..."
component = "hello"
dependencies.middleware = [{{ component = "mw-a", inherit_configuration = ["variables"] }}, {{ path = "b.wasm" }}]
{COMPONENTS}"#
    ));
    let reference = format!("{}/test/middleware:v1", registry.host);
    let push = support::wisp_command()
        .args(["registry", "push", "--insecure", "-f"])
        .arg(dir.path().join("spin.toml"))
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "wisp registry push failed: {}\n{manifest}",
        String::from_utf8_lossy(&push.stderr)
    );
    // Served from the pulled artifact only: the app directory is gone.
    drop(dir);
    let cache = tempfile::tempdir().unwrap();
    let mut command = support::wisp_command();
    command
        .args(["up", "--insecure", "--from", &reference, "--oci-cache-dir"])
        .arg(cache.path())
        .env_remove("WISP_STATE_DIR");
    let wisp = Wisp::spawn(command).unwrap_or_else(|(status, stderr)| {
        panic!("wisp up --from exited with {status}:\n{stderr}")
    });
    let chained = wisp.get("/x");
    assert_eq!(chained.status, 200, "{}\n{}", chained.text(), wisp.stderr());
    assert_eq!(
        chained.text(),
        "Hello from spin-sdk 7 /x\nchain: middleware-a,middleware-b\n"
    );
    // What the outermost one inherits survives the trip.
    let inherited = wisp.get("/middleware/variable");
    assert_eq!(inherited.text(), "middleware-a variable: hi from hello\n");
    wisp.stop_cleanly();
    registry.stop();
}

/// `wisp watch` reloads when a middleware's own file (a `path` entry, outside any
/// component's build) changes: here `mw.wasm` turns from `middleware-a` into `-b`.
#[test]
fn watch_reloads_when_a_middleware_file_changes() {
    let (dir, manifest) = app(r#"
[[trigger.http]]
route = "/..."
component = "hello"
dependencies.middleware = [{ path = "mw.wasm" }]

[component.hello]
source = "app.wasm"
"#);
    let middleware = dir.path().join("mw.wasm");
    std::fs::copy(programs::MIDDLEWARE_A, &middleware).unwrap();
    let mut command = support::wisp_command();
    command
        .arg("watch")
        .arg("-f")
        .arg(dir.path().join("spin.toml"))
        .args(["--poll-ms", "50"])
        .env_remove("WISP_STATE_DIR");
    let wisp = Wisp::spawn(command).unwrap_or_else(|(status, stderr)| {
        panic!("wisp watch exited with {status}:\n{stderr}\n{manifest}")
    });
    let chain = || wisp.get("/x").header("x-chain-back").map(str::to_owned);
    assert_eq!(chain().as_deref(), Some("middleware-a,middleware-a"));

    // Replaced by rename, as a build writes its output.
    let staged = dir.path().join("mw.wasm.new");
    std::fs::copy(programs::MIDDLEWARE_B, &staged).unwrap();
    std::fs::rename(&staged, &middleware).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while chain().as_deref() != Some("middleware-b,middleware-b") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload to the new middleware within 60 s:\n{}",
            wisp.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    wisp.stop_cleanly();
}

/// A component copied for one trigger's middleware builds once, as itself: `wisp build`
/// runs its command once and does not list the copy.
#[test]
fn a_component_copied_for_middleware_builds_once() {
    let (dir, _) = app(r#"
[[trigger.http]]
route = "/a/..."
component = "hello"
dependencies.middleware = [{ path = "a.wasm" }]

[[trigger.http]]
route = "/b/..."
component = "hello"

[component.hello]
source = "app.wasm"
[component.hello.build]
command = "echo built >> builds.txt"
"#);
    let output = support::run_wisp(&["build", "-f", dir.path().to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("builds.txt")).unwrap(),
        "built\n"
    );
    assert!(!stderr.contains("-for-"), "{stderr}");
}

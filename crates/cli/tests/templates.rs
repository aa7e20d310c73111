//! Every template end to end: `wisp new` → `wisp build` (the template's real build
//! command: cargo for wasm32-wasip2, componentize-py, npm with componentize-js, Go with
//! wasm-tools) → `wisp up` → a request, message or tick with the expected result; and
//! `wisp add` into an existing app.
//!
//! The Rust templates share one cargo target directory (each app's `target` is a link to
//! it) so the Spin SDK is compiled once per run, not once per template.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Wisp, request};

fn wisp(args: &[&str], dir: &Path) -> std::process::Output {
    support::run_wisp(args, Some(dir))
}

fn shared_cargo_target() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("template-builds");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `wisp new <template> <name> <args>` in a fresh directory; returns it and the app dir.
fn new_app(template: &str, name: &str, args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let mut all = vec!["new", template, name, "--accept-defaults"];
    all.extend_from_slice(args);
    let output = wisp(&all, parent.path());
    assert!(
        output.status.success(),
        "wisp new {template} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let app = parent.path().join(name);
    (parent, app)
}

/// Links `app/target` to the shared cargo target directory.
fn share_target(app: &Path) {
    std::os::unix::fs::symlink(shared_cargo_target(), app.join("target")).unwrap();
}

/// `wisp build` in `app` with `path_prefix` prepended to PATH.
fn build(app: &Path, path_prefix: Option<&Path>) {
    let mut command = support::wisp_command();
    command
        .arg("build")
        .current_dir(app)
        .env_remove("WISP_MANIFEST");
    if let Some(prefix) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", prefix.display()));
    }
    let output = command.output().expect("run wisp build");
    assert!(
        output.status.success(),
        "wisp build failed in {}:\nstdout:\n{}\nstderr:\n{}",
        app.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn up(app: &Path) -> Wisp {
    let mut command = support::wisp_command();
    command.arg("up").arg("-f").arg(app.join("spin.toml"));
    Wisp::spawn(command)
        .unwrap_or_else(|(status, stderr)| panic!("wisp up exited with {status}:\n{stderr}"))
}

fn wait_for(wisp: &Wisp, needle: &str, timeout: Duration) {
    assert!(
        wisp.wait_for_output_within(needle, timeout),
        "no {needle:?}
stdout:
{}
stderr:
{}",
        wisp.stdout(),
        wisp.stderr()
    );
}

/// On a terminal (a pty from util-linux `script`) `wisp new` asks for each parameter not
/// given, showing its default; an empty answer takes the default. Piped, it never asks.
#[test]
fn new_prompts_only_on_a_terminal() {
    use std::io::Write;
    use std::process::Stdio;

    let parent = tempfile::tempdir().unwrap();
    let inner = format!(
        "exec {} new http-js asked --value project-description=given",
        env!("CARGO_BIN_EXE_wisp")
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &inner, "/dev/null"])
        .current_dir(parent.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run `script` (util-linux bsdutils)");
    // One parameter is left to ask for: the HTTP path.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/asked/...\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("HTTP path [/...]: "), "{shown}");
    assert!(
        !shown.contains("Description ["),
        "given values are not asked: {shown}"
    );
    let manifest = std::fs::read_to_string(parent.path().join("asked/spin.toml")).unwrap();
    assert!(manifest.contains("route = \"/asked/...\""), "{manifest}");
    assert!(manifest.contains("description = \"given\""), "{manifest}");

    // Piped stdin: defaults, no prompt.
    let piped = support::wisp_command()
        .args(["new", "http-js", "piped"])
        .current_dir(parent.path())
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("HTTP path ["));
    let manifest = std::fs::read_to_string(parent.path().join("piped/spin.toml")).unwrap();
    assert!(manifest.contains("route = \"/...\""), "{manifest}");
}

#[test]
fn http_rust_template() {
    let (_parent, app) = new_app("http-rust", "hello-rust", &[]);
    share_target(&app);
    build(&app, None);
    let wisp = up(&app);
    let response = wisp.get("/anything");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from hello-rust!\n");
    assert_eq!(response.header("content-type"), Some("text/plain"));
}

#[test]
fn http_rust_p3_template() {
    let (_parent, app) = new_app("http-rust-p3", "hello-p3", &["--value", "http-path=/hi"]);
    share_target(&app);
    build(&app, None);
    let wisp = up(&app);
    assert!(
        wisp.stderr().contains("wasi:http/handler@0.3.0"),
        "{}",
        wisp.stderr()
    );
    let response = wisp.get("/hi");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from hello-p3!\n");
    assert_eq!(wisp.get("/other").status, 404);
}

#[test]
fn static_fileserver_template() {
    let (_parent, app) = new_app("static-fileserver", "site", &[]);
    std::fs::write(app.join("assets/data.json"), "{\"ok\":true}").unwrap();
    share_target(&app);
    build(&app, None);
    let wisp = up(&app);
    let index = wisp.get("/static/");
    assert_eq!(index.status, 200, "{}", wisp.stderr());
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(index.text().contains("<h1>site</h1>"), "{}", index.text());
    let css = wisp.get("/static/style.css");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let json = wisp.get("/static/data.json");
    assert_eq!((json.status, json.text().as_str()), (200, "{\"ok\":true}"));
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(wisp.get("/static/missing.txt").status, 404);
    // Traversal is refused, however it is spelled; the manifest is never served.
    for path in [
        "/static/../spin.toml",
        "/static/%2e%2e/spin.toml",
        "/static/..%2Fspin.toml",
        "/static/a/../../spin.toml",
    ] {
        let response = request(wisp.addr, "GET", path, &[], b"");
        assert!(
            response.status == 400 || response.status == 404,
            "{path}: {} {:?}",
            response.status,
            response.text()
        );
        assert!(!response.text().contains("spin_manifest_version"), "{path}");
    }
}

#[test]
fn redis_rust_template() {
    let channel = format!("wisp-template-{}", std::process::id());
    let (_parent, app) = new_app(
        "redis-rust",
        "worker",
        &["--value", &format!("redis-channel={channel}")],
    );
    share_target(&app);
    build(&app, None);
    let wisp = up(&app);
    let start = Instant::now();
    loop {
        // Publish until the trigger has subscribed and the handler ran.
        let published = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                "6379",
                "PUBLISH",
                &channel,
                "hi there",
            ])
            .output()
            .expect("redis-cli (run scripts/test-services.sh)");
        assert!(published.status.success());
        if wisp.stdout().contains("[worker] worker got: hi there") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}\n{}",
            wisp.stdout(),
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cron_rust_template() {
    let (_parent, app) = new_app(
        "cron-rust",
        "nightly",
        &["--value", "cron-expression=* * * * * *"],
    );
    share_target(&app);
    build(&app, None);
    let wisp = up(&app);
    wait_for(
        &wisp,
        "[nightly] nightly ran for the tick at",
        Duration::from_secs(15),
    );
}

#[test]
fn http_py_template() {
    let venv = support::python_sdk_venv();
    let (_parent, app) = new_app("http-py", "hello-py", &[]);
    build(&app, Some(&venv.join("bin")));
    let wisp = up(&app);
    let response = wisp.get("/py");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from hello-py!\n");
}

#[test]
fn http_js_template() {
    let (_parent, app) = new_app("http-js", "hello-js", &[]);
    build(&app, None);
    assert!(app.join("dist/hello-js.wasm").is_file());
    // A fresh compile cache: a 12 MB StarlingMonkey component takes seconds to compile
    // optimised, so it first serves from baseline code (Winch) while the optimised code
    // compiles in the background, and `wisp up` says so instead of sitting silent.
    let cache = tempfile::tempdir().unwrap();
    let start = |cache: &Path| {
        let mut command = support::wisp_command();
        command
            .arg("up")
            .arg("-f")
            .arg(app.join("spin.toml"))
            .env("WISP_CACHE_DIR", cache);
        Wisp::spawn(command)
            .unwrap_or_else(|(status, stderr)| panic!("wisp up exited with {status}:\n{stderr}"))
    };
    let wisp = start(cache.path());
    let stderr = wisp.stderr();
    assert!(
        stderr.contains("component `hello-js` serves from baseline code (compiled in "),
        "{stderr}"
    );
    let response = wisp.get("/js");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from hello-js!\n");
    assert!(wisp.wait_for_output("GET /js"), "the guest's console.log");
    // The optimised code is cached once compiled, and takes over the next requests.
    assert!(
        wisp.wait_for_output_within(
            "component `hello-js` switched to its optimised code",
            Duration::from_secs(180)
        ),
        "{}",
        wisp.stderr()
    );
    let stderr = wisp.stderr();
    assert!(
        stderr.contains("compiled component `hello-js` in ")
            && stderr.contains("cached for later starts"),
        "{stderr}"
    );
    assert_eq!(wisp.get("/js").text(), "Hello from hello-js!\n");
    drop(wisp);

    // The second start loads the cached native code: no compile lines.
    let again = start(cache.path());
    assert!(
        !again.stderr().contains("compiling component"),
        "{}",
        again.stderr()
    );
    assert_eq!(again.get("/").text(), "Hello from hello-js!\n");
}

#[test]
fn http_go_template() {
    let (_parent, app) = new_app("http-go", "hello-go", &[]);
    build(&app, Some(&support::go_tools_bin()));
    let wisp = up(&app);
    let response = wisp.get("/go?x=1");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from hello-go!\n");
    assert!(wisp.wait_for_output("[hello-go] request for /go?x=1"));
}

#[test]
fn http_empty_then_add_components() {
    let (_parent, app) = new_app("http-empty", "shop", &[]);
    let output = wisp(
        &[
            "add",
            "http-rust",
            "api",
            "--value",
            "http-path=/api/...",
            "--accept-defaults",
        ],
        &app,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Adding the same name again, or a component that collides, changes nothing.
    let manifest_before = std::fs::read_to_string(app.join("spin.toml")).unwrap();
    let again = wisp(&["add", "http-rust", "api", "--accept-defaults"], &app);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a component `api`"));
    let clash = wisp(
        &[
            "add",
            "http-rust",
            "web",
            "--value",
            "http-path=/api/...",
            "--accept-defaults",
        ],
        &app,
    );
    assert_eq!(clash.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("collides with route"),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );
    assert!(
        !app.join("web").exists(),
        "nothing written for a refused add"
    );
    assert_eq!(
        std::fs::read_to_string(app.join("spin.toml")).unwrap(),
        manifest_before
    );

    share_target(&app.join("api"));
    build(&app, None);
    let wisp = up(&app);
    let ready = wisp.get("/.well-known/ready");
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    let api = wisp.get("/api/items");
    assert_eq!(api.status, 200, "{}", wisp.stderr());
    assert_eq!(api.text(), "Hello from api!\n");
}

//! End-to-end tests of apps built with the real Spin Rust SDK from the Cargo registry:
//! `spin-sdk` 5.2 (WASI 0.2, `#[http_component]`) and 7.0 (WASI 0.3,
//! `#[http_service]`), served unchanged by `wisp up` from a `spin.toml`; Python apps
//! built with the Spin 4 Python SDKs, which target WASI 0.3 release candidates; and
//! CGI-style programs under Spin's wagi executor.

mod support;

use support::{Wisp, app_dir, manifest_one};
use wisp_test_programs as programs;

/// Serves `source` on `/sdk/...` and checks `GET /sdk/hello` (and a deeper
/// path, to show the body is built from the request) answers `<greeting> <path>\n`.
fn serves_sdk_component(id: &str, source: &str, greeting: &str) {
    let dir = app_dir(&manifest_one("/sdk/...", id, source, ""));
    let manifest = dir.path().join("spin.toml");
    let wisp = Wisp::up(&["-f", manifest.to_str().unwrap()]);

    for path in ["/sdk/hello", "/sdk/a/b"] {
        let response = wisp.get(path);
        assert_eq!(
            response.status,
            200,
            "GET {path}: {}\nstderr:\n{}",
            response.text(),
            wisp.stderr()
        );
        assert_eq!(
            response.text(),
            format!("{greeting} {path}\n"),
            "GET {path}"
        );
        assert_eq!(
            response.header("content-type"),
            Some("text/plain"),
            "GET {path}: {:?}",
            response.headers
        );
    }

    // Outside the component's route nothing answers.
    assert_eq!(wisp.get("/other").status, 404);
    wisp.stop_cleanly();
}

#[test]
fn spin_sdk_5_http_component_is_served() {
    serves_sdk_component("sdk-v5", programs::SPIN_SDK_V5, "Hello from spin-sdk 5");
}

#[test]
fn spin_sdk_7_http_service_is_served() {
    serves_sdk_component("sdk-v7", programs::SPIN_SDK_V7, "Hello from spin-sdk 7");
}

/// Builds `tests/python-sdk-rc` with the Python SDK `sdk` and componentize-py
/// `componentize_py` for `world`, serves it and checks the release-candidate interfaces:
/// the handler export, random, clock, environment and the HTTP client (through
/// `http://self`).
fn python_app_on_wasi_rc_runs(sdk: &str, componentize_py: &str, world: &str) {
    let venv = support::python_venv(
        &format!("python-sdk-{sdk}-venv"),
        &[
            &format!("spin-sdk=={sdk}"),
            &format!("componentize-py=={componentize_py}"),
        ],
    );
    let app = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python-sdk-rc");
    for file in ["app.py", "spin.toml"] {
        std::fs::copy(source.join(file), app.path().join(file)).unwrap();
    }
    support::componentize_python(&venv, world, app.path());
    let manifest = app.path().join("spin.toml");
    let wisp = Wisp::up(&["-f", manifest.to_str().unwrap()]);
    let check = |method: &str, path: &str, body: &[u8], expected: &str| {
        let response = support::request(wisp.addr, method, path, &[("x-test", "t")], body);
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, expected),
            "{method} {path}\nstderr:\n{}",
            wisp.stderr()
        );
        response
    };
    check("GET", "/", b"", "rc random=4 clock=ok GREETING=hi-rc");
    let echo = check(
        "POST",
        "/echo/x?q=1",
        b"hello",
        "method=POST uri=/echo/x?q=1 body=hello",
    );
    assert_eq!(echo.header("x-echo"), Some("t"));
    check(
        "GET",
        "/out",
        b"",
        "outbound status=200 echo=via-self body=method=POST uri=/echo/inner body=ping",
    );
}

#[test]
fn python_sdk_4_app_exporting_the_wasi_0_3_release_candidate_runs() {
    python_app_on_wasi_rc_runs("4.0.0", "0.23.0", "spin:up/http-trigger@4.0.0");
}

#[test]
fn python_sdk_5_app_importing_release_candidate_and_0_3_runs() {
    python_app_on_wasi_rc_runs("5.0.0", "0.25.1", "spin:up/http-trigger@4.1.0");
}

/// Spin's wagi executor: a WASI command (a wasm32-wasip1 core module, and the same
/// program as a wasm32-wasip2 component) run once per request, the request in its
/// environment, arguments and stdin, its stdout a CGI response.
#[test]
fn wagi_programs_answer_through_cgi() {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "cgi-app"

[[trigger.http]]
route = "/cgi/..."
component = "cgi"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/p2/..."
component = "cgi-p2"
executor = {{ type = "wagi", argv = "${{SCRIPT_NAME}} extra ${{ARGS}}" }}

[component.cgi]
source = {module}
environment = {{ GREETING = "hi", SERVER_SOFTWARE = "mine" }}

[component.cgi-p2]
source = {component}
"#,
        module = support::toml_path(programs::WAGI_WASIP1),
        component = support::toml_path(programs::WAGI),
    );
    let dir = app_dir(&manifest);
    let manifest = dir.path().join("spin.toml");
    let wisp = Wisp::up(&["-f", manifest.to_str().unwrap()]);
    let port = wisp.addr.port();

    let hello = wisp.get("/cgi/hello");
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "Hello from wagi\n"),
        "stderr:\n{}",
        wisp.stderr()
    );
    assert_eq!(hello.header("content-type"), Some("text/plain"));

    let env = support::request(
        wisp.addr,
        "GET",
        "/cgi/env?a=1&b=2",
        &[("x-test", "t")],
        b"",
    );
    assert_eq!(env.status, 200, "{}", wisp.stderr());
    let env = env.text();
    for line in [
        "args=/cgi/env|a=1|b=2".to_owned(),
        "REQUEST_METHOD=GET".to_owned(),
        "QUERY_STRING=a=1&b=2".to_owned(),
        "SCRIPT_NAME=/cgi".to_owned(),
        "PATH_INFO=/env".to_owned(),
        "HTTP_X_TEST=t".to_owned(),
        "GREETING=hi".to_owned(),
        "GATEWAY_INTERFACE=CGI/1.1".to_owned(),
        "SERVER_NAME=127.0.0.1".to_owned(),
        format!("SERVER_PORT={port}"),
        "REMOTE_ADDR=127.0.0.1".to_owned(),
        "X_MATCHED_ROUTE=/cgi/...".to_owned(),
        format!("X_FULL_URL=http://127.0.0.1:{port}/cgi/env?a=1&b=2"),
    ] {
        assert!(env.lines().any(|l| l == line), "no `{line}` in:\n{env}");
    }
    // The CGI variable wins over the component's own of the same name, set once.
    let software: Vec<&str> = env
        .lines()
        .filter(|l| l.starts_with("SERVER_SOFTWARE="))
        .collect();
    assert_eq!(software, ["SERVER_SOFTWARE=WAGI/1"], "{env}");

    let echo = support::request(
        wisp.addr,
        "POST",
        "/cgi/echo",
        &[("content-type", "application/json")],
        b"{\"ping\":1}",
    );
    assert_eq!((echo.status, echo.text().as_str()), (200, "{\"ping\":1}"));
    assert_eq!(echo.header("content-type"), Some("application/json"));

    let status = wisp.get("/cgi/status");
    assert_eq!(
        (status.status, status.text().as_str()),
        (418, "short and stout\n")
    );
    assert_eq!(status.header("x-wagi"), Some("yes"));
    let redirect = wisp.get("/cgi/redirect");
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (302, Some("/moved"))
    );

    let logged = wisp.get("/cgi/stderr");
    assert_eq!((logged.status, logged.text().as_str()), (200, "logged\n"));
    assert!(
        wisp.wait_for_output("[cgi] wagi wrote to stderr"),
        "{}",
        wisp.stderr()
    );

    // Failures answer 500 with the reason in the log; the next request is served.
    for (path, reason) in [
        ("/cgi/silent", "wrote nothing to stdout"),
        // WASI 0.2 has no exit codes but success and failure: 3 arrives as 1.
        ("/cgi/exit", "exited with code 1"),
        ("/cgi/panic", "component `cgi` failed"),
    ] {
        assert_eq!(wisp.get(path).status, 500, "GET {path}");
        assert!(
            wisp.wait_for_output(reason),
            "no `{reason}` after {path}:\n{}",
            wisp.stderr()
        );
    }
    assert_eq!(wisp.get("/cgi/hello").status, 200);

    // The component build, with its own command line.
    let p2 = wisp.get("/p2/env?x=1");
    assert_eq!(p2.status, 200, "{}", wisp.stderr());
    assert!(
        p2.text().lines().any(|l| l == "args=/p2/env|extra|x=1"),
        "{}",
        p2.text()
    );
    wisp.stop_cleanly();

    // A wagi route on an HTTP component is refused at start, saying why.
    let dir = app_dir(&manifest_one("/...", "web", programs::HELLO, "").replace(
        "component = \"web\"\n",
        "component = \"web\"\nexecutor = { type = \"wagi\" }\n",
    ));
    let manifest = dir.path().join("spin.toml");
    let (status, stderr) = Wisp::try_up(&["-f", manifest.to_str().unwrap()])
        .err()
        .expect("a wagi route on an HTTP component is refused");
    assert!(!status.success());
    assert!(stderr.contains("is not a WASI command"), "{stderr}");
}

//! End-to-end tests of apps built with the real Spin Rust SDK from the Cargo registry:
//! `spin-sdk` 5.2 (WASI 0.2, `#[http_component]`) and 7.0 (WASI 0.3,
//! `#[http_service]`), served unchanged by `wisp up` from a `spin.toml`; and Python apps
//! built with the Spin 4 Python SDKs, which target WASI 0.3 release candidates.

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

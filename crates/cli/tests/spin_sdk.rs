//! End-to-end tests of apps built with the real Spin Rust SDK from the Cargo registry:
//! `spin-sdk` 5.2 (WASI 0.2, `#[http_component]`) and 7.0 (WASI 0.3,
//! `#[http_service]`), served unchanged by `wisp up` from a `spin.toml`.

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
    assert!(wisp.stop().success(), "wisp exits 0 after SIGTERM");
}

#[test]
fn spin_sdk_5_http_component_is_served() {
    serves_sdk_component("sdk-v5", programs::SPIN_SDK_V5, "Hello from spin-sdk 5");
}

#[test]
fn spin_sdk_7_http_service_is_served() {
    serves_sdk_component("sdk-v7", programs::SPIN_SDK_V7, "Hello from spin-sdk 7");
}

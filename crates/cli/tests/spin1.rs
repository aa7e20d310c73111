//! Spin 1.x components under `wisp up`: the `spin1-http` guest exports the unversioned
//! `fermyon:spin/inbound-http` and imports the unversioned `config`, `http`,
//! `key-value`, `sqlite`, `redis` and `llm` interfaces, as spin-sdk 1.x builds them. Each
//! test runs it twice: as a component (wasm32-wasip2) and as the core module spin-sdk 1.x
//! apps ship (wasm32-wasip1 with wit-bindgen metadata, componentized at load).
//!
//! The Redis test needs a Redis server: `WISP_TEST_REDIS_URL`, or
//! `redis://127.0.0.1:6379/9` by default (`scripts/test-services.sh` starts one).

mod support;

use support::{HttpResponse, Redis, Wisp, app_dir, encode, request, toml_path};
use wisp_test_programs as programs;

/// Both builds of the guest, with a name for messages.
const BUILDS: [(&str, &str); 2] = [
    ("component", programs::SPIN1_HTTP),
    ("core module", programs::SPIN1_HTTP_WASIP1),
];

/// A manifest serving `source` on `/...` with the `default` store and database, the
/// variable `greeting`, and `grants` as its `allowed_outbound_hosts`.
fn manifest(source: &str, grants: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "spin1"

[variables]
greeting = {{ default = "hello from a variable" }}

[[trigger.http]]
route = "/..."
component = "spin1"

[component.spin1]
source = {source}
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = [{grants}]
variables = {{ greeting = "{{{{ greeting }}}}" }}
"#,
        source = toml_path(source)
    )
}

fn up(dir: &tempfile::TempDir) -> Wisp {
    let manifest = dir.path().join("spin.toml");
    Wisp::up(&["-f", manifest.to_str().unwrap()])
}

fn get(wisp: &Wisp, path: &str) -> HttpResponse {
    request(wisp.addr, "GET", path, &[], b"")
}

#[test]
fn spin1_components_serve_http_through_their_own_interfaces() {
    for (build, source) in BUILDS {
        let dir = app_dir(&manifest(source, r#""http://self""#));
        let wisp = up(&dir);
        let port = wisp.addr.port();

        // The request as Spin passes it: method, path and query as `uri`, the Spin
        // headers, no params; the response's own headers.
        let hello = request(wisp.addr, "POST", "/hello?x=1", &[], b"twelve bytes");
        assert_eq!(hello.status, 200, "{build}: {}", wisp.stderr());
        assert_eq!(
            hello.text(),
            format!(
                "hello from spin 1: POST /hello?x=1\npath-info: /hello\nfull-url: http://127.0.0.1:{port}/hello?x=1\nbody: 12 bytes\nparams: 0\n"
            ),
            "{build}"
        );
        assert_eq!(hello.header("x-spin1"), Some("yes"), "{build}");
        assert_eq!(hello.header("content-type"), Some("text/plain"), "{build}");

        let echo = request(
            wisp.addr,
            "PUT",
            "/echo",
            &[("content-type", "application/json")],
            br#"{"a":1}"#,
        );
        assert_eq!(
            (
                echo.status,
                echo.text().as_str(),
                echo.header("content-type")
            ),
            (200, r#"{"a":1}"#, Some("application/json")),
            "{build}"
        );

        // `fermyon:spin/config` reads the component's variables.
        let config = get(&wisp, "/config?key=greeting");
        assert_eq!(
            (config.status, config.text().as_str()),
            (200, "hello from a variable"),
            "{build}"
        );
        let missing = get(&wisp, "/config?key=nope");
        assert_eq!(missing.status, 404, "{build}");
        assert!(
            missing.text().starts_with("Error::Provider(")
                && missing.text().contains("has no variable `nope`"),
            "{build}: {}",
            missing.text()
        );

        // Key-value and SQLite through `u32` handles, with the interface's own errors for
        // a closed or made-up handle and an ungranted label.
        let kv = get(&wisp, "/kv");
        assert_eq!(
            (kv.status, kv.text().as_str()),
            (
                200,
                "set: Ok(())\n\
                 get: Ok(Ok(\"hi\"))\n\
                 exists: Ok(true)\n\
                 keys: Ok([\"greeting\"])\n\
                 delete: Ok(())\n\
                 exists after delete: Ok(false)\n\
                 get missing: Err(Error::NoSuchKey)\n\
                 get on closed: Err(Error::InvalidStore)\n\
                 get on made-up: Err(Error::InvalidStore)\n\
                 open other: Err(Error::AccessDenied)\n"
            ),
            "{build}"
        );
        let sqlite = get(&wisp, "/sqlite");
        assert_eq!(
            (sqlite.status, sqlite.text().as_str()),
            (
                200,
                "create: Ok(0)\n\
                 insert: Ok(0)\n\
                 select: [\"name\", \"age\"] [[Value::Text(\"rex\"), Value::Integer(3)]]\n\
                 bad sql: io error\n\
                 execute on closed: Err(Error::InvalidConnection)\n\
                 open other: Err(Error::AccessDenied)\n"
            ),
            "{build}"
        );

        // `fermyon:spin/http`: a relative URI is the app itself (granted by
        // `http://self`); a host not granted is refused before any connection.
        let own = get(&wisp, &format!("/outbound?url={}", encode("/hello")));
        assert_eq!(own.status, 200, "{build}: {}", wisp.stderr());
        assert!(
            own.text()
                .starts_with("200 hello from spin 1: GET /hello\npath-info: /hello\n"),
            "{build}: {}",
            own.text()
        );
        let denied = get(
            &wisp,
            &format!("/outbound?url={}", encode("http://127.0.0.1:1/")),
        );
        assert_eq!(denied.status, 502, "{build}");
        assert!(
            denied.text().contains("destination-not-allowed"),
            "{build}: {}",
            denied.text()
        );
        assert!(
            wisp.wait_for_output("outbound request to http://127.0.0.1:1/ denied"),
            "{build}: {}",
            wisp.stderr()
        );

        let llm = get(&wisp, "/llm");
        assert_eq!(
            (llm.status, llm.text().as_str()),
            (500, "Error::RuntimeError(\"no LLM backend configured\")"),
            "{build}"
        );

        // What the interface cannot carry: a method (405, as in Spin) and a status code
        // out of range from the guest (500, with the reason in the log).
        let trace = request(wisp.addr, "TRACE", "/hello", &[], b"");
        assert_eq!(trace.status, 405, "{build}");
        let bad = get(&wisp, "/status?code=99");
        assert_eq!(bad.status, 500, "{build}");
        assert!(
            wisp.wait_for_output("99 is not an HTTP status code"),
            "{build}: {}",
            wisp.stderr()
        );
        let teapot = get(&wisp, "/status?code=418");
        assert_eq!(teapot.status, 418, "{build}");
    }
}

#[test]
fn wisp_doctor_accepts_a_spin1_component() {
    let dir = app_dir(&manifest(programs::SPIN1_HTTP_WASIP1, ""));
    let output = support::run_wisp(&["doctor", "-f", dir.path().to_str().unwrap()], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("does not export"), "{stdout}");
}

fn redis_test_url() -> String {
    std::env::var("WISP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/9".to_owned())
}

#[test]
fn spin1_outbound_redis_takes_an_address_per_call() {
    let url = redis_test_url();
    let mut redis = Redis::connect(&url).unwrap_or_else(|e| {
        panic!("this test needs a Redis server at {url} ({e}); run scripts/test-services.sh")
    });
    let host_port = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for (build, source) in BUILDS {
        let dir = app_dir(&manifest(source, &format!(r#""redis://{host_port}""#)));
        let wisp = up(&dir);
        let _ = redis.command(&["DEL", "spin1-key", "spin1-count", "spin1-set"]);
        let response = get(&wisp, &format!("/redis?addr={}", encode(&url)));
        assert_eq!(
            (response.status, response.text().as_str()),
            (
                200,
                "set: Ok(())\n\
                 get: Ok(Ok(\"value\"))\n\
                 get missing: Ok([])\n\
                 del: Ok(1)\n\
                 incr: Ok(1)\n\
                 incr: Ok(2)\n\
                 sadd: Ok(2)\n\
                 smembers: [\"a\", \"b\"]\n\
                 srem: Ok(2)\n\
                 publish: Ok(())\n\
                 execute: Ok([\"5\"])\n\
                 del: Ok(2)\n"
            ),
            "{build}: {}",
            wisp.stderr()
        );
        // Every call's connection is closed by the time the response is written.
        assert_eq!(
            redis.command(&["EXISTS", "spin1-key"]).unwrap(),
            Some(b"0".to_vec()),
            "{build}"
        );

        // An address outside the grants: the interface's one error, the reason logged.
        let refused = get(
            &wisp,
            &format!("/redis?addr={}", encode("redis://127.0.0.1:1")),
        );
        assert!(
            refused
                .text()
                .starts_with("set: Err(Error { code: 1, name: \"error\""),
            "{build}: {}",
            refused.text()
        );
        assert!(
            wisp.wait_for_output("redis address refused"),
            "{build}: {}",
            wisp.stderr()
        );
    }
}

/// A whole Spin 1.x app: a version 1 manifest (read as version 2, as Spin does) serving the
/// Spin 1.x guest, its `config` from the component's `[component.config]`, its grants from
/// `allowed_http_hosts`.
#[test]
fn a_spin1_app_with_a_version_1_manifest_runs() {
    let dir = app_dir(&format!(
        r#"spin_manifest_version = "1"
name = "spin1-app"
trigger = {{ type = "http", base = "/" }}
version = "1.0.0"

[variables]
greeting = {{ default = "hello from version 1" }}

[[component]]
id = "spin1"
source = {source}
allowed_http_hosts = ["self"]
key_value_stores = ["default"]
[component.trigger]
route = "/..."
[component.config]
greeting = "{{{{ greeting }}}}"
"#,
        source = toml_path(programs::SPIN1_HTTP_WASIP1)
    ));
    let wisp = up(&dir);
    let config = get(&wisp, "/config?key=greeting");
    assert_eq!(
        (config.status, config.text().as_str()),
        (200, "hello from version 1"),
        "{}",
        wisp.stderr()
    );
    let own = get(&wisp, &format!("/outbound?url={}", encode("/hello")));
    assert!(
        own.text()
            .starts_with("200 hello from spin 1: GET /hello\n"),
        "{}",
        own.text()
    );
    // Not granted: its database defaults cover Redis, MySQL and PostgreSQL, not SQLite.
    let sqlite = get(&wisp, "/sqlite");
    assert_eq!(sqlite.text(), "open default: Error::AccessDenied\n");
    // Spin's `Available Routes` listing, as for version 2.
    assert!(
        wisp.stdout().contains("  spin1: http://"),
        "{}",
        wisp.stdout()
    );
}

/// A module built for Spin's pre-component ABI (wit-bindgen 0.2, as Spin's TinyGo-based Go
/// SDK builds them): its old interface names are renamed onto the Spin 1.x ones at load,
/// and every value crosses in the guest's own layout.
#[test]
fn modules_of_spins_pre_component_abi_serve_http_through_spin1_interfaces() {
    let dir = app_dir(&manifest(
        programs::SPIN_LEGACY_ABI_WASIP1,
        r#""http://self""#,
    ));
    let doctor = support::run_wisp(&["doctor", "-f", dir.path().to_str().unwrap()], None);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "{report}");
    assert!(!report.contains("does not export"), "{report}");

    let wisp = up(&dir);
    // Method (as its enum index), URI, headers and body in; status, headers and body out;
    // the module's `_start` (a TinyGo command's) ran once before.
    let hello = request(
        wisp.addr,
        "POST",
        "/hello?x=1",
        &[("x-custom", "one")],
        b"twelve bytes",
    );
    assert_eq!(hello.status, 200, "{}", wisp.stderr());
    assert_eq!(
        hello.text(),
        "legacy abi: 1 /hello?x=1\nx-custom: one\nbody: 12 bytes\nstarted: yes\n"
    );
    assert_eq!(hello.header("x-legacy"), Some("yes"));
    assert_eq!(hello.header("content-type"), Some("text/plain"));
    let missing = get(&wisp, "/nothing");
    assert_eq!((missing.status, missing.text().as_str()), (404, ""));

    // `spin-config`: the component's variables, and the error variant with its string.
    let config = get(&wisp, "/config?greeting");
    assert_eq!(
        (config.status, config.text().as_str()),
        (200, "hello from a variable")
    );
    let unknown = get(&wisp, "/config?nope");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.text().starts_with("error 0: ") && unknown.text().contains("`nope`"),
        "{}",
        unknown.text()
    );

    // `wasi-outbound-http`: a relative URI is the app itself; an ungranted host is the
    // enum's `destination-not-allowed` (1).
    let own = get(&wisp, "/outbound?/hello");
    assert!(
        own.text().starts_with("200 legacy abi: 0 /hello\n"),
        "{}",
        own.text()
    );
    let denied = get(&wisp, "/outbound?http://127.0.0.1:1/");
    assert_eq!(denied.text(), "http-error 1");

    // `key-value` through `u32` handles: results, a `list<u8>`, and the error cases
    // `no-such-key` (4) and `access-denied` (2).
    let kv = get(&wisp, "/kv");
    assert_eq!(
        kv.text(),
        "set: ok\nget: ok v1\nget missing: error 4\nopen other: error 2\n"
    );
}

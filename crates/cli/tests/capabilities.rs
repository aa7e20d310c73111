//! End-to-end tests of Spin host capabilities: key-value (Spin and
//! `wasi:keyvalue`, local and Redis-backed), variables (`wasi:config` too),
//! SQLite and outbound HTTP, driven through the `caps-v5` (spin-sdk 5.2,
//! WASI 0.2) and `caps-v7` (spin-sdk 7.0, WASI 0.3) guests served by the real
//! `wisp up`.
//!
//! The guests assert inside themselves (see `tests/programs/README.md`): a
//! check route answers `200` with its documented body, or `500` with
//! `<step>: <reason>`, so each test here only compares status and body.
//!
//! The Redis test needs a Redis server: `WISP_TEST_REDIS_URL`, or
//! `redis://127.0.0.1:6379/9` by default (crates/storage uses databases 1-7).

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{HttpResponse, Redis, Upstream, Wisp, app_dir, encode, request, toml_path, unique};
use wisp_test_programs as programs;

/// The component grants most tests use: the `default` key-value store and
/// SQLite database.
const STORES: &str = r#"key_value_stores = ["default"]
sqlite_databases = ["default"]"#;

/// A manifest serving `source` as component `caps` on `/...`, with the app
/// variable `greeting` (default `hi`) mapped into the component, and
/// `component_lines` (grants) in its table.
fn caps_manifest(source: &str, component_lines: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "caps"

[variables]
greeting = {{ default = "hi" }}

[[trigger.http]]
route = "/..."
component = "caps"

[component.caps]
source = {source}
variables = {{ greeting = "{{{{ greeting }}}}" }}
{component_lines}
"#,
        source = toml_path(source)
    )
}

/// An app directory with its `spin.toml`, started with `wisp up -f`.
struct App {
    dir: tempfile::TempDir,
}

impl App {
    fn new(manifest: &str) -> App {
        App {
            dir: app_dir(manifest),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` (e.g. `.env`, a runtime config) into the app directory.
    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// `wisp up -f <dir>/spin.toml <extra>` with `env` set on the process.
    fn command(&self, extra: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = support::wisp_command();
        command
            .arg("up")
            .arg("-f")
            .arg(self.path("spin.toml"))
            .args(extra)
            // A developer's own settings must not leak into the app.
            .env_remove("SPIN_VARIABLE_GREETING")
            .env_remove("WISP_STATE_DIR");
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    fn up(&self, extra: &[&str]) -> Wisp {
        self.up_with_env(extra, &[])
    }

    fn up_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Wisp {
        Wisp::spawn(self.command(extra, env)).unwrap_or_else(|(status, stderr)| {
            panic!("wisp up {extra:?} exited with {status}:\n{stderr}")
        })
    }
}

/// Sends `what` (`"<METHOD> <path>"`) with `body` and returns the response.
fn call(wisp: &Wisp, what: &str, body: &[u8]) -> HttpResponse {
    let (method, path) = what.split_once(' ').expect("\"<METHOD> <path>\"");
    request(wisp.addr, method, path, &[], body)
}

/// Asserts `what` (`"<METHOD> <path>"`, no body) answers exactly `status` and `body`.
fn expect(wisp: &Wisp, what: &str, status: u16, body: &str) {
    let response = call(wisp, what, b"");
    assert_eq!(
        (response.status, response.text().as_str()),
        (status, body),
        "{what}\nwisp stderr:\n{}",
        wisp.stderr()
    );
}

/// Runs `count` copies of `method path` at once, each on its own connection,
/// and returns the responses.
fn concurrently(
    wisp: &Wisp,
    count: usize,
    method: &str,
    path: impl Fn(usize) -> String + Sync,
) -> Vec<HttpResponse> {
    let addr = wisp.addr;
    std::thread::scope(|scope| {
        let path = &path;
        let handles: Vec<_> = (0..count)
            .map(|i| scope.spawn(move || request(addr, method, &path(i), &[], b"")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Parses every `200` body as an integer, failing on any other answer.
fn integers(wisp: &Wisp, responses: &[HttpResponse]) -> Vec<i64> {
    responses
        .iter()
        .map(|response| {
            assert_eq!(
                response.status,
                200,
                "{}\nwisp stderr:\n{}",
                response.text(),
                wisp.stderr()
            );
            response
                .text()
                .parse()
                .unwrap_or_else(|_| panic!("not an integer: {:?}", response.text()))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Key-value

/// The key-value routes both guests share, against the granted `default`
/// store and the ungranted `other`.
fn key_value_routes(source: &str) {
    let app = App::new(&caps_manifest(source, STORES));
    let wisp = app.up(&[]);
    expect(&wisp, "GET /kv/check?store=default", 200, "ok");
    expect(&wisp, "GET /kv/open?store=default", 200, "opened");
    // Only granted stores open.
    expect(
        &wisp,
        "GET /kv/open?store=other",
        200,
        "error: access-denied",
    );
    expect(
        &wisp,
        "GET /kv/get?store=other&key=k",
        500,
        "error: access-denied",
    );

    // A value goes in and comes back byte for byte; the key is %-decoded.
    let key = encode("a key/with ünïcode");
    let set = call(
        &wisp,
        &format!("PUT /kv/set?store=default&key={key}"),
        b"v\x00\xff",
    );
    assert_eq!(
        (set.status, set.text().as_str()),
        (200, "stored"),
        "{}",
        wisp.stderr()
    );
    let got = call(&wisp, &format!("GET /kv/get?store=default&key={key}"), b"");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"v\x00\xff"[..]));
    expect(
        &wisp,
        "GET /kv/get?store=default&key=never-set",
        404,
        "missing",
    );
}

#[test]
fn key_value_v5_checks_and_grants() {
    key_value_routes(programs::CAPS_V5);
}

#[test]
fn key_value_v7_checks_and_grants() {
    key_value_routes(programs::CAPS_V7);
}

#[test]
fn key_value_survives_a_restart_with_the_same_state_dir() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();

    let wisp = app.up(&["--state-dir", state_dir]);
    let set = call(
        &wisp,
        "PUT /kv/set?store=default&key=durable",
        b"still here",
    );
    assert_eq!(
        (set.status, set.text().as_str()),
        (200, "stored"),
        "{}",
        wisp.stderr()
    );
    wisp.stop_cleanly();

    let wisp = app.up(&["--state-dir", state_dir]);
    expect(
        &wisp,
        "GET /kv/get?store=default&key=durable",
        200,
        "still here",
    );
    wisp.stop_cleanly();

    // The same store through spin:key-value@3.0.0 (spin-sdk 7).
    app.write("spin.toml", &caps_manifest(programs::CAPS_V7, STORES));
    let wisp = app.up(&["--state-dir", state_dir]);
    expect(
        &wisp,
        "GET /kv/get?store=default&key=durable",
        200,
        "still here",
    );
}

#[test]
fn wasi_keyvalue_check_and_atomics_under_concurrency() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let wisp = app.up(&[]);
    expect(&wisp, "GET /wasi-kv/check?store=default", 200, "ok");
    let denied = call(&wisp, "GET /wasi-kv/check?store=other", b"");
    assert_eq!(denied.status, 500, "{}", denied.text());
    assert!(
        denied.text().starts_with("open: ") && denied.text().contains("AccessDenied"),
        "{}",
        denied.text()
    );

    // 100 concurrent increments: every one sees a different value, 1 to 100.
    let responses = concurrently(&wisp, 100, "POST", |_| {
        "/wasi-kv/incr?store=default&key=c&delta=1".to_owned()
    });
    let mut values = integers(&wisp, &responses);
    values.sort_unstable();
    assert_eq!(values, (1..=100).collect::<Vec<i64>>());
    expect(
        &wisp,
        "POST /wasi-kv/incr?store=default&key=c&delta=0",
        200,
        "100",
    );

    // 20 concurrent compare-and-swap appends: none is lost.
    let responses = concurrently(&wisp, 20, "POST", |i| {
        format!("/wasi-kv/cas-append?store=default&key=cas-list&item=item{i}")
    });
    let attempts = integers(&wisp, &responses);
    assert!(attempts.iter().all(|&n| n >= 1), "{attempts:?}");
    let list = call(&wisp, "GET /kv/get?store=default&key=cas-list", b"");
    assert_eq!(list.status, 200, "{}", list.text());
    let text = list.text();
    let mut items: Vec<&str> = text.split(',').filter(|item| !item.is_empty()).collect();
    items.sort_unstable();
    let mut expected: Vec<String> = (0..20).map(|i| format!("item{i}")).collect();
    expected.sort_unstable();
    assert_eq!(items, expected, "stored list {text:?}");
    assert!(text.ends_with(','), "{text:?}");
}

// ---------------------------------------------------------------------------
// Variables

#[test]
fn variables_default_value_and_errors() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let wisp = app.up(&[]);
    expect(&wisp, "GET /var?name=greeting", 200, "hi");
    expect(&wisp, "GET /config?name=greeting", 200, "hi");
    expect(&wisp, "GET /config/all", 200, "greeting=hi\n");

    let undefined = call(&wisp, "GET /var?name=nope", b"");
    assert_eq!(undefined.status, 200);
    assert!(
        undefined.text().starts_with("error: undefined: "),
        "{}",
        undefined.text()
    );
    let invalid = call(&wisp, "GET /var?name=Not-Valid", b"");
    assert_eq!(invalid.status, 200);
    assert!(
        invalid.text().starts_with("error: invalid-name: "),
        "{}",
        invalid.text()
    );
    // wasi:config answers an unknown name with none (as Spin does).
    expect(&wisp, "GET /config?name=nope", 404, "none");
}

#[test]
fn variables_from_the_environment() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let wisp = app.up_with_env(&[], &[("SPIN_VARIABLE_GREETING", "hello")]);
    expect(&wisp, "GET /var?name=greeting", 200, "hello");
    expect(&wisp, "GET /config?name=greeting", 200, "hello");
}

#[test]
fn variable_flags_win_over_every_provider() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let file = app.write("greeting.txt", "from-file");
    let json = app.write("vars.json", r#"{"greeting": "from-json"}"#);
    let up = |args: &[&str]| app.up_with_env(args, &[("SPIN_VARIABLE_GREETING", "from-env")]);
    let wisp = up(&["--variable", "greeting=from-flag"]);
    expect(&wisp, "GET /var?name=greeting", 200, "from-flag");
    drop(wisp);
    let wisp = up(&["--variable", &format!("greeting=@{}", file.display())]);
    expect(&wisp, "GET /config?name=greeting", 200, "from-file");
    drop(wisp);
    // A later one wins.
    let wisp = up(&[
        "--variable",
        "greeting=first",
        "--variable",
        &format!("@{}", json.display()),
    ]);
    expect(&wisp, "GET /var?name=greeting", 200, "from-json");
}

#[test]
fn variables_from_a_dotenv_file_beside_the_manifest() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    app.write(".env", "SPIN_VARIABLE_GREETING=from-dotenv\n");
    // The working directory is the test's, not the app's: the file is found
    // beside the manifest.
    let wisp = app.up(&[]);
    expect(&wisp, "GET /var?name=greeting", 200, "from-dotenv");
}

#[test]
fn variables_from_a_static_provider_in_the_runtime_config() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let config = app.write(
        "runtime-config.toml",
        "[[variables_provider]]\ntype = \"static\"\nvalues = { greeting = \"from-config\" }\n",
    );
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    expect(&wisp, "GET /var?name=greeting", 200, "from-config");
    expect(&wisp, "GET /config?name=greeting", 200, "from-config");
}

#[test]
fn runtime_config_providers_come_before_the_environment() {
    // Spin's order: the runtime config's providers, then the environment.
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let config = app.write(
        "runtime-config.toml",
        "[[variables_provider]]\ntype = \"static\"\nvalues = { greeting = \"from-config\" }\n",
    );
    let wisp = app.up_with_env(
        &["--runtime-config-file", config.to_str().unwrap()],
        &[("SPIN_VARIABLE_GREETING", "from-env")],
    );
    expect(&wisp, "GET /var?name=greeting", 200, "from-config");
    drop(wisp);
    // Without a configured value the environment answers.
    let config = app.write(
        "runtime-config.toml",
        "[[variables_provider]]\ntype = \"static\"\nvalues = { other = \"x\" }\n",
    );
    let wisp = app.up_with_env(
        &["--runtime-config-file", config.to_str().unwrap()],
        &[("SPIN_VARIABLE_GREETING", "from-env")],
    );
    expect(&wisp, "GET /var?name=greeting", 200, "from-env");
}

#[test]
fn variables_v7() {
    let app = App::new(&caps_manifest(programs::CAPS_V7, STORES));
    let wisp = app.up(&[]);
    expect(&wisp, "GET /var?name=greeting", 200, "hi");
    let undefined = call(&wisp, "GET /var?name=nope", b"");
    assert!(
        undefined.text().starts_with("error: undefined: "),
        "{}",
        undefined.text()
    );
    drop(wisp);
    let wisp = app.up_with_env(&[], &[("SPIN_VARIABLE_GREETING", "hello")]);
    expect(&wisp, "GET /var?name=greeting", 200, "hello");
}

#[test]
fn a_required_variable_without_a_value_fails_start_up() {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "needs-secret"

[variables]
api_key = {{ required = true, secret = true }}

[[trigger.http]]
route = "/..."
component = "caps"

[component.caps]
source = {source}
variables = {{ key = "{{{{ api_key }}}}" }}
"#,
        source = toml_path(programs::CAPS_V5)
    );
    let app = App::new(&manifest);
    match Wisp::spawn(app.command(&[], &[])) {
        Ok(wisp) => panic!(
            "wisp up started without the required variable:\n{}",
            wisp.stderr()
        ),
        Err((status, stderr)) => {
            assert!(!status.success(), "{status}: {stderr}");
            assert!(stderr.contains("api_key"), "{stderr}");
        }
    }
    // With a value it starts, and the component sees it; the secret never reaches the
    // logs, even at debug level.
    let wisp = app.up_with_env(
        &[],
        &[("SPIN_VARIABLE_API_KEY", "s3cret"), ("WISP_LOG", "debug")],
    );
    expect(&wisp, "GET /var?name=key", 200, "s3cret");
    expect(&wisp, "GET /config/all", 200, "key=s3cret\n");
    assert!(
        wisp.wait_for_output("GET /config/all 200"),
        "debug request log expected:\n{}",
        wisp.stderr()
    );
    let stderr = wisp.stderr();
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

// ---------------------------------------------------------------------------
// Start-up: checks and the summary

/// `wisp up` with `extra` flags must fail; returns its stderr.
fn start_fails(app: &App, extra: &[&str]) -> String {
    match Wisp::spawn(app.command(extra, &[])) {
        Ok(wisp) => panic!("wisp up {extra:?} started:\n{}", wisp.stderr()),
        Err((status, stderr)) => {
            assert!(!status.success(), "{status}: {stderr}");
            stderr
        }
    }
}

#[test]
fn start_up_refuses_unconfigured_labels_and_bad_runtime_config() {
    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        r#"key_value_stores = ["default", "cache"]"#,
    ));
    let stderr = start_fails(&app, &[]);
    assert!(
        stderr.contains("component `caps` uses key-value store `cache`, which is neither `default` nor configured"),
        "{stderr}"
    );
    assert!(stderr.contains("[key_value_store.cache]"), "{stderr}");

    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        r#"sqlite_databases = ["reports"]"#,
    ));
    let stderr = start_fails(&app, &[]);
    assert!(
        stderr.contains("component `caps` uses SQLite database `reports`"),
        "{stderr}"
    );

    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let config = app.write(
        "runtime-config.toml",
        "[key_value_store.default]\ntype = \"spin\"\npaht = \"kv.db\"\n",
    );
    let stderr = start_fails(&app, &["--runtime-config-file", config.to_str().unwrap()]);
    assert!(stderr.contains("runtime-config.toml: line 3"), "{stderr}");
    assert!(stderr.contains("unknown field `paht`"), "{stderr}");

    let config = app.write(
        "runtime-config.toml",
        "[outbound_networking]\nblock_networks = [\"10.0.0.0/33\"]\n",
    );
    let stderr = start_fails(&app, &["--runtime-config-file", config.to_str().unwrap()]);
    assert!(stderr.contains("10.0.0.0/33"), "{stderr}");

    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        r#"allowed_outbound_hosts = ["https://api.example.com:notaport"]"#,
    ));
    let stderr = start_fails(&app, &[]);
    assert!(stderr.contains("component `caps`"), "{stderr}");
    assert!(
        stderr.contains("https://api.example.com:notaport"),
        "{stderr}"
    );
}

#[test]
fn start_up_summary_names_each_backend() {
    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        r#"key_value_stores = ["default", "cache"]
sqlite_databases = ["default", "scratch"]"#,
    ));
    let config = app.write(
        "runtime-config.toml",
        r#"[key_value_store.cache]
type = "spin"
path = "data/cache.db"

[sqlite_database.scratch]
type = "spin"

[[variables_provider]]
type = "static"
values = { greeting = "from-config" }
"#,
    );
    let state = app.path("state");
    let wisp = app.up(&[
        "--runtime-config-file",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let stderr = wisp.stderr();
    let expected = [
        "variables: static (1 values), then env SPIN_VARIABLE_*".to_owned(),
        format!(
            "key-value store `default`: sqlite file {}",
            state.join("sqlite_key_value.db").display()
        ),
        format!(
            "key-value store `cache`: sqlite file {}",
            app.path("data/cache.db").display()
        ),
        format!(
            "SQLite database `default`: sqlite file {}",
            state.join("sqlite_db.db").display()
        ),
        "SQLite database `scratch`: sqlite in-memory database".to_owned(),
        "outbound networking: blocked link-local".to_owned(),
    ];
    for line in expected {
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }
    // The configured backends serve the guest.
    expect(&wisp, "GET /kv/check?store=cache", 200, "ok");
    expect(&wisp, "GET /sqlite/check?db=scratch", 200, "ok");
    assert!(app.path("data/cache.db").exists());
}

#[test]
fn outbound_interfaces_without_grants_answer_with_their_error_variant() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, ""));
    let wisp = app.up(&[]);
    expect(
        &wisp,
        "GET /unsupported",
        200,
        // Spin's variants and texts (the address as the guest passed it; PostgreSQL's as
        // parsed, with a port only when one was written).
        "redis: Error::InvalidAddress\n\
         mqtt: Error::ConnectionFailed(\"address mqtt://127.0.0.1:1883 is not permitted\")\n\
         postgres: Error::ConnectionFailed(\"address postgres://127.0.0.1 is not permitted\")\n\
         mysql: Error::ConnectionFailed(\"address mysql://127.0.0.1/db is not permitted\")\n\
         llm: Error::RuntimeError(\"no LLM backend configured\")\n",
    );
}

#[test]
fn key_value_and_sqlite_flags_seed_the_stores_before_serving() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let seed = app.write(
        "seed.sql",
        "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);\n\
         INSERT INTO counter(id, n) VALUES (1, 40);\n",
    );
    let seed = seed.to_str().unwrap();
    let wisp = app.up(&[
        "--key-value",
        "greeting=hello",
        "--key-value",
        "pair=a=b",
        "--sqlite",
        &format!("@{seed}"),
        "--sqlite",
        "UPDATE counter SET n = n + 1",
    ]);
    expect(
        &wisp,
        "GET /kv/get?store=default&key=greeting",
        200,
        "hello",
    );
    expect(&wisp, "GET /kv/get?store=default&key=pair", 200, "a=b");
    expect(&wisp, "POST /sqlite/counter?db=default", 200, "42");
    drop(wisp);

    // A failing statement or an unknown database stops the start, saying which.
    for (flag, needle) in [
        ("SELECT * FROM nowhere".to_owned(), "no such table: nowhere"),
        (format!("@{seed}:nope"), "[sqlite_database.nope]"),
    ] {
        let (status, stderr) = Wisp::spawn(app.command(&["--sqlite", &flag], &[]))
            .err()
            .expect("refused");
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("--sqlite {flag}")) && stderr.contains(needle),
            "{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// SQLite

#[test]
fn sqlite_v5_checks_and_grants() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let wisp = app.up(&[]);
    expect(&wisp, "GET /sqlite/check?db=default", 200, "ok");
    expect(&wisp, "GET /sqlite3/check?db=default", 200, "ok");
    expect(&wisp, "GET /sqlite/open?db=default", 200, "opened");
    expect(
        &wisp,
        "GET /sqlite/open?db=nope",
        200,
        "error: access-denied",
    );
}

#[test]
fn sqlite_v7_check() {
    let app = App::new(&caps_manifest(programs::CAPS_V7, STORES));
    let wisp = app.up(&[]);
    expect(&wisp, "GET /sqlite/check?db=default", 200, "ok");
}

#[test]
fn sqlite_counter_under_concurrency() {
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let wisp = app.up(&[]);
    let responses = concurrently(&wisp, 50, "POST", |_| {
        "/sqlite/counter?db=default".to_owned()
    });
    let mut values = integers(&wisp, &responses);
    values.sort_unstable();
    // Every upsert saw its own value: the final n is 50.
    assert_eq!(values, (1..=50).collect::<Vec<i64>>());
    expect(&wisp, "POST /sqlite/counter?db=default", 200, "51");
}

// ---------------------------------------------------------------------------
// Redis-backed key-value

#[test]
fn redis_backed_key_value_store() {
    let url = std::env::var("WISP_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/9".to_owned());
    let mut redis = Redis::connect(&url).unwrap_or_else(|e| {
        panic!(
            "this test needs a Redis server at {url} ({e}). Start one with \
             `redis-server --port 6379 --save '' --daemonize yes` (or `docker run -d -p 6379:6379 \
             redis`), or point WISP_TEST_REDIS_URL at another (redis://host:port/db)."
        )
    });

    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let config = app.write(
        "runtime-config.toml",
        &format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n"),
    );
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    expect(&wisp, "GET /kv/check?store=default", 200, "ok");

    // A value set through the guest is in Redis under the same key.
    let key = unique("wisp-caps");
    let set = call(
        &wisp,
        &format!("PUT /kv/set?store=default&key={key}"),
        b"from wisp",
    );
    assert_eq!(
        (set.status, set.text().as_str()),
        (200, "stored"),
        "{}",
        wisp.stderr()
    );
    let stored = redis.command(&["GET", &key]);
    let _ = redis.command(&["DEL", &key]);
    assert_eq!(
        stored,
        Ok(Some(b"from wisp".to_vec())),
        "GET {key} in Redis"
    );

    // And one set in Redis is read by the guest.
    let key = unique("wisp-caps");
    redis.command(&["SET", &key, "from redis"]).unwrap();
    let got = call(&wisp, &format!("GET /kv/get?store=default&key={key}"), b"");
    let _ = redis.command(&["DEL", &key]);
    assert_eq!((got.status, got.text().as_str()), (200, "from redis"));
}

// ---------------------------------------------------------------------------
// Outbound Redis

fn redis_test_url() -> String {
    std::env::var("WISP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/9".to_owned())
}

/// `host:port` of a `redis://[user:password@]host[:port][/db]` URL.
fn redis_host_port(url: &str) -> String {
    let rest = url.trim_start_matches("redis://");
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    }
}

#[test]
fn outbound_redis_round_trips_with_v2_and_v3() {
    let url = redis_test_url();
    let mut redis = Redis::connect(&url).unwrap_or_else(|e| {
        panic!("this test needs a Redis server at {url} ({e}); run scripts/test-services.sh")
    });
    // The grant names the server without credentials or database, as Spin apps write it.
    let grant = format!(
        r#"allowed_outbound_hosts = ["redis://{}"]"#,
        redis_host_port(&url)
    );
    for (source, name) in [
        (programs::CAPS_V5, "caps-v5"),
        (programs::CAPS_V7, "caps-v7"),
    ] {
        let app = App::new(&caps_manifest(source, &grant));
        let wisp = app.up(&[]);
        let prefix = unique(&format!("wisp-outbound-{name}"));
        // Written by the test, read by the guest...
        redis
            .command(&["SET", &format!("{prefix}:from-test"), "set by the test"])
            .unwrap();
        expect(
            &wisp,
            &format!("GET /redis/check?addr={}&prefix={prefix}", encode(&url)),
            200,
            "ok set by the test",
        );
        // ...and written by the guest, read by the test.
        let from_guest = redis.command(&["GET", &format!("{prefix}:from-guest")]);
        let members = redis.command(&["SCARD", &format!("{prefix}:s")]);
        let counter = redis.command(&["EXISTS", &format!("{prefix}:n")]);
        for suffix in ["from-test", "from-guest", "s"] {
            let _ = redis.command(&["DEL", &format!("{prefix}:{suffix}")]);
        }
        assert_eq!(
            from_guest,
            Ok(Some(format!("written by {name}").into_bytes())),
            "{name}"
        );
        assert_eq!(members, Ok(Some(b"2".to_vec())), "{name}: SCARD after srem");
        assert_eq!(
            counter,
            Ok(Some(b"0".to_vec())),
            "{name}: the guest deleted it"
        );
    }
}

#[test]
fn outbound_redis_needs_a_grant_and_respects_blocked_networks() {
    let url = redis_test_url();
    for source in [programs::CAPS_V5, programs::CAPS_V7] {
        // Granted another port only: refused, with a log line saying what to add.
        let host_port = redis_host_port(&url);
        let app = App::new(&caps_manifest(
            source,
            r#"allowed_outbound_hosts = ["redis://127.0.0.1:1"]"#,
        ));
        let wisp = app.up(&[]);
        expect(
            &wisp,
            &format!("GET /redis/open?addr={}", encode(&url)),
            200,
            "error: Error::InvalidAddress",
        );
        assert!(
            wisp.wait_for_output(&format!(
                "add \"redis://{host_port}\" to the component's allowed_outbound_hosts"
            )),
            "{}",
            wisp.stderr()
        );
        // A malformed address is refused the same way, not a trap.
        expect(
            &wisp,
            "GET /redis/open?addr=not-a-url",
            200,
            "error: Error::InvalidAddress",
        );
        drop(wisp);

        // Granted, but the operator blocks loopback: refused before connecting.
        let app = App::new(&caps_manifest(
            source,
            &format!(r#"allowed_outbound_hosts = ["redis://{host_port}"]"#),
        ));
        let config = app.write(
            "runtime-config.toml",
            "[outbound_networking]\nblock_networks = [\"127.0.0.0/8\"]\n",
        );
        let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
        expect(
            &wisp,
            &format!("GET /redis/open?addr={}", encode(&url)),
            200,
            "error: Error::InvalidAddress",
        );
        assert!(
            wisp.wait_for_output("resolves only to blocked addresses"),
            "{}",
            wisp.stderr()
        );
    }
}

/// Runs `redis-cli` against the test services' TLS-only Redis (`localhost:6380`).
fn redis_tls_cli(args: &[&str]) -> String {
    let ca = support::services_ca();
    let output = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", ca.to_str().unwrap()])
        .args(["-h", "localhost", "-p", "6380", "-n", "9"])
        .args(args)
        .output()
        .expect("run redis-cli (scripts/test-services.sh installs it)");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn outbound_redis_over_tls_checks_the_certificate() {
    let grant =
        r#"allowed_outbound_hosts = ["rediss://localhost:6380", "rediss://127.0.0.1:6380"]"#;
    let trusted = format!(
        "[[client_tls]]\ncomponent_ids = [\"caps\"]\nhosts = [\"localhost\", \"127.0.0.1\"]\nca_roots_file = {:?}\n",
        support::services_ca().to_str().unwrap()
    );
    let url = "rediss://localhost:6380/9";
    for (source, name) in [
        (programs::CAPS_V5, "caps-v5"),
        (programs::CAPS_V7, "caps-v7"),
    ] {
        // The test CA is not trusted: the certificate is refused, saying how to trust it.
        let app = App::new(&caps_manifest(source, grant));
        let wisp = app.up(&[]);
        let refused = call(&wisp, &format!("GET /redis/open?addr={}", encode(url)), b"");
        assert!(
            refused.text().contains("UnknownIssuer") && refused.text().contains("[[client_tls]]"),
            "{name}: {}",
            refused.text()
        );
        // `#insecure` skips the check, as in the redis crate, and says so in the log.
        let insecure = format!("{url}#insecure");
        expect(
            &wisp,
            &format!("GET /redis/open?addr={}", encode(&insecure)),
            200,
            "opened",
        );
        assert!(
            wisp.wait_for_output("does not check the server's certificate"),
            "{}",
            wisp.stderr()
        );
        // A redis:// grant does not cover rediss://.
        let plain_grant = r#"allowed_outbound_hosts = ["redis://localhost:6380"]"#;
        let app = App::new(&caps_manifest(source, plain_grant));
        let wisp = app.up(&[]);
        expect(
            &wisp,
            &format!("GET /redis/open?addr={}", encode(url)),
            200,
            "error: Error::InvalidAddress",
        );
        drop(wisp);

        // Trusted through [[client_tls]]: values go both ways over TLS.
        let app = App::new(&caps_manifest(source, grant));
        let config = app.write("runtime-config.toml", &trusted);
        let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
        let prefix = unique(&format!("wisp-tls-{name}"));
        redis_tls_cli(&["SET", &format!("{prefix}:from-test"), "set by the test"]);
        expect(
            &wisp,
            &format!("GET /redis/check?addr={}&prefix={prefix}", encode(url)),
            200,
            "ok set by the test",
        );
        let from_guest = redis_tls_cli(&["GET", &format!("{prefix}:from-guest")]);
        for suffix in ["from-test", "from-guest", "s"] {
            redis_tls_cli(&["DEL", &format!("{prefix}:{suffix}")]);
        }
        assert_eq!(from_guest, format!("written by {name}"));
        // By address the certificate (for `localhost` only) does not match.
        let by_address = call(
            &wisp,
            &format!(
                "GET /redis/open?addr={}",
                encode("rediss://127.0.0.1:6380/9")
            ),
            b"",
        );
        assert!(
            by_address.text().contains("not valid for name"),
            "{name}: {}",
            by_address.text()
        );
    }
}

#[test]
fn outbound_redis_presents_the_client_certificate_of_client_tls() {
    // The test services' Redis on :6381 requires a client certificate from the test CA.
    let ca = support::services_ca();
    let dir = ca.parent().unwrap();
    let grant = r#"allowed_outbound_hosts = ["rediss://localhost:6381"]"#;
    let url = "rediss://localhost:6381/9";
    let roots_only = format!(
        "[[client_tls]]\ncomponent_ids = [\"caps\"]\nhosts = [\"localhost\"]\nca_roots_file = {:?}\n",
        ca.to_str().unwrap()
    );
    let with_client = format!(
        "{roots_only}cert_chain_file = {:?}\nprivate_key_file = {:?}\n",
        dir.join("client.pem").to_str().unwrap(),
        dir.join("client.key").to_str().unwrap()
    );
    let app = App::new(&caps_manifest(programs::CAPS_V7, grant));
    // Without a client certificate the server ends the handshake.
    let config = app.write("runtime-config.toml", &roots_only);
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    let refused = call(&wisp, &format!("GET /redis/open?addr={}", encode(url)), b"");
    assert!(
        refused.text().starts_with("error: ") && !refused.text().contains("opened"),
        "{}",
        refused.text()
    );
    drop(wisp);
    // With it the connection is made and used.
    let config = app.write("runtime-config.toml", &with_client);
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    expect(
        &wisp,
        &format!("GET /redis/open?addr={}", encode(url)),
        200,
        "opened",
    );
}

#[test]
fn redis_key_value_store_over_tls() {
    // An operator's store: its roots are the machine's (SSL_CERT_FILE here).
    let ca = support::services_ca();
    let app = App::new(&caps_manifest(programs::CAPS_V5, STORES));
    let config = app.write(
        "runtime-config.toml",
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://localhost:6380/9\"\n",
    );
    let wisp = app.up_with_env(
        &["--runtime-config-file", config.to_str().unwrap()],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let key = unique("wisp-kv-tls");
    let set = call(
        &wisp,
        &format!("PUT /kv/set?store=default&key={key}"),
        b"over tls",
    );
    assert_eq!(
        (set.status, set.text().as_str()),
        (200, "stored"),
        "{}",
        wisp.stderr()
    );
    let stored = redis_tls_cli(&["GET", &key]);
    redis_tls_cli(&["DEL", &key]);
    assert_eq!(stored, "over tls");
    drop(wisp);

    // Without the CA the store is refused at start-up, saying why and what to trust.
    let refused = Wisp::spawn(app.command(
        &["--runtime-config-file", config.to_str().unwrap()],
        &[("SSL_CERT_FILE", "/dev/null")],
    ));
    let Err((status, stderr)) = refused else {
        panic!("wisp up served a store whose certificate it cannot check");
    };
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("UnknownIssuer") && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Outbound HTTP

/// A loopback server for the outbound HTTP checks: `/ok` is `200` `pong`, `/redirect`
/// is `302` to `/ok`, anything else `404`.
fn upstream() -> Upstream {
    Upstream::start(|path| match path {
        "/ok" => (
            "200 OK",
            "content-type: text/plain\r\n".to_owned(),
            b"pong".to_vec(),
        ),
        "/redirect" => ("302 Found", "location: /ok\r\n".to_owned(), Vec::new()),
        _ => ("404 Not Found", String::new(), b"not found".to_vec()),
    })
}

/// `GET /http?url=<url>` with the URL %-encoded.
fn get_http(url: &str) -> String {
    format!("GET /http?url={}", encode(url))
}

fn outbound_allowed(source: &str) {
    let upstream = upstream();
    let base = upstream.base();
    let grants = format!("allowed_outbound_hosts = [\"{base}\"]");
    let app = App::new(&caps_manifest(source, &grants));
    let wisp = app.up(&[]);
    expect(
        &wisp,
        &get_http(&format!("{base}/ok")),
        200,
        "status 200\nlocation: -\n\npong",
    );
    // Redirects are answered, not followed.
    expect(
        &wisp,
        &get_http(&format!("{base}/redirect")),
        200,
        "status 302\nlocation: /ok\n\n",
    );
    assert_eq!(upstream.accepts(), 2);
}

#[test]
fn outbound_http_to_a_granted_host_v5() {
    outbound_allowed(programs::CAPS_V5);
}

#[test]
fn outbound_http_to_a_granted_host_v7() {
    outbound_allowed(programs::CAPS_V7);
}

#[test]
fn outbound_http_without_a_grant_is_denied_before_connecting() {
    let upstream = upstream();
    let url = format!("{}/ok", upstream.base());
    for source in [programs::CAPS_V5, programs::CAPS_V7] {
        // Granted some other host only.
        let app = App::new(&caps_manifest(
            source,
            "allowed_outbound_hosts = [\"http://example.com\"]",
        ));
        let wisp = app.up(&[]);
        expect(&wisp, &get_http(&url), 200, "error: HttpRequestDenied");
    }
    assert_eq!(upstream.accepts(), 0, "the upstream saw no connection");
}

#[test]
fn outbound_http_to_a_blocked_network_fails_before_connecting() {
    let upstream = upstream();
    let base = upstream.base();
    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        &format!("allowed_outbound_hosts = [\"{base}\"]"),
    ));
    let config = app.write(
        "runtime-config.toml",
        "[outbound_networking]\nblock_networks = [\"127.0.0.0/8\"]\n",
    );
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    expect(
        &wisp,
        &get_http(&format!("{base}/ok")),
        200,
        "error: DestinationIpProhibited",
    );
    // `private` covers loopback too, and names resolve before the check.
    let config = app.write(
        "runtime-config.toml",
        "[outbound_networking]\nblock_networks = [\"private\"]\n",
    );
    drop(wisp);
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    expect(
        &wisp,
        &get_http(&format!("{base}/ok")),
        200,
        "error: DestinationIpProhibited",
    );
    assert_eq!(upstream.accepts(), 0, "the upstream saw no connection");
    assert!(
        wisp.wait_for_output("blocked by [outbound_networking]"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn link_local_metadata_and_unspecified_addresses_are_blocked_even_under_a_wildcard_grant() {
    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        r#"allowed_outbound_hosts = ["*://*:*"]"#,
    ));
    let wisp = app.up(&[]);
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://0.0.0.0:1/",
    ] {
        expect(&wisp, &get_http(url), 200, "error: DestinationIpProhibited");
    }
}

#[test]
fn outbound_denials_are_logged_without_secrets() {
    let upstream = upstream();
    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        r#"allowed_outbound_hosts = ["http://example.com"]"#,
    ));
    let wisp = app.up(&[]);
    let url = format!(
        "http://user:hunter2@127.0.0.1:{}/ok?token=s3cret-token",
        upstream.addr.port()
    );
    expect(&wisp, &get_http(&url), 200, "error: HttpRequestDenied");
    let port = upstream.addr.port();
    let line = format!(
        "outbound request to http://127.0.0.1:{port}/ok?… denied: not in allowed_outbound_hosts; add \"http://127.0.0.1:{port}\""
    );
    assert!(wisp.wait_for_output(&line), "{}", wisp.stderr());
    let stderr = wisp.stderr();
    assert!(
        stderr.contains("component=caps") || stderr.contains("caps"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("s3cret-token"), "{stderr}");
    assert_eq!(upstream.accepts(), 0);
}

#[test]
fn outbound_http_chains_to_another_component() {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "chain"

[[trigger.http]]
route = "/..."
component = "caps"

[[trigger.http]]
route = {{ private = true }}
component = "callee"

[component.caps]
source = {caps}
allowed_outbound_hosts = ["http://callee.spin.internal"]

[component.callee]
source = {hello}
"#,
        caps = toml_path(programs::CAPS_V5),
        hello = toml_path(programs::HELLO)
    );
    let app = App::new(&manifest);
    let wisp = app.up(&[]);
    expect(
        &wisp,
        &get_http("http://callee.spin.internal/hello"),
        200,
        "status 200\nlocation: -\n\nHello from Wisp\n",
    );
    // Chaining is granted per component: `caps` may not call itself this way.
    expect(
        &wisp,
        &get_http("http://caps.spin.internal/unsupported"),
        200,
        "error: HttpRequestDenied",
    );
    assert!(
        wisp.wait_for_output("add \"http://caps.spin.internal\""),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn outbound_http_to_self() {
    let manifest = |grant: &str| {
        format!(
            r#"spin_manifest_version = 2
[application]
name = "self"

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = "/..."
component = "caps"

[component.caps]
source = {caps}
{grant}

[component.hello]
source = {hello}
"#,
            caps = toml_path(programs::CAPS_V5),
            hello = toml_path(programs::HELLO)
        )
    };
    let app = App::new(&manifest("allowed_outbound_hosts = [\"http://self\"]"));
    let wisp = app.up(&[]);
    expect(
        &wisp,
        &get_http("http://self/hello"),
        200,
        "status 200\nlocation: -\n\nHello from Wisp\n",
    );
    // A relative URL cannot be expressed through wasmtime-wasi-http 48 (it refuses a
    // request with a scheme but no authority before the host sees it): the guest gets
    // an invalid-URI error rather than a silent request elsewhere.
    expect(
        &wisp,
        &get_http("/hello"),
        200,
        "error: HttpRequestUriInvalid",
    );
    drop(wisp);

    // With one instance slot, the caller holds it: the in-process request is refused at
    // once with 503 (the server is at capacity), counted as `refused`, not as a trap.
    let wisp = app.up(&["--max-instances", "1", "--metrics-listen", "127.0.0.1:0"]);
    expect(
        &wisp,
        &get_http("http://self/hello"),
        200,
        "status 503\nlocation: -\n\nService Unavailable\n",
    );
    // The line reaches the test through a pipe: it may come just after the response.
    assert!(
        wisp.wait_for_output("component `hello` found no free instance slot for an in-process request (all 1 (--max-instances) are busy)"),
        "{}",
        wisp.stderr()
    );
    let metrics_addr: std::net::SocketAddr = wisp
        .stderr()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Metrics: http://")?
                .strip_suffix("/metrics")?
                .parse()
                .ok()
        })
        .expect("the metrics address");
    let metrics = request(metrics_addr, "GET", "/metrics", &[], b"").text();
    assert!(
        metrics.lines().any(|l| l
            == r#"wisp_requests_total{app="self",component="hello",trigger="http",status="5xx",outcome="refused"} 1"#),
        "{metrics}"
    );
    drop(wisp);

    // Without the `self` grant the same request is denied.
    app.write("spin.toml", &manifest(""));
    let wisp = app.up(&[]);
    expect(
        &wisp,
        &get_http("http://self/hello"),
        200,
        "error: HttpRequestDenied",
    );
}

#[test]
fn outbound_http_requests_per_invocation_are_capped_at_64() {
    let upstream = upstream();
    let base = upstream.base();
    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        &format!("allowed_outbound_hosts = [\"{base}\"]"),
    ));
    let wisp = app.up(&[]);
    let url = encode(&format!("{base}/ok"));
    expect(
        &wisp,
        &format!("GET /http-many?url={url}&n=64"),
        200,
        "sent 64",
    );
    assert_eq!(upstream.accepts(), 64);

    let response = call(&wisp, &format!("GET /http-many?url={url}&n=70"), b"");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert!(
        response.text().starts_with("failed after 64: "),
        "{}",
        response.text()
    );
    // The 65th request never reached the upstream.
    assert_eq!(upstream.accepts(), 128);
    drop(wisp);

    // The cap is a setting.
    let wisp = app.up(&["--max-outbound-requests", "5"]);
    expect(
        &wisp,
        &format!("GET /http-many?url={url}&n=6"),
        200,
        "failed after 5: ConnectionLimitReached",
    );
    assert!(
        wisp.wait_for_output("may make at most 5 outbound requests"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn in_process_calls_share_the_outbound_request_budget() {
    // The component calls itself through `http://self`: each of its requests makes
    // ten more. Without a shared budget this would fan out to 110 requests; with it,
    // the whole call tree stops at 64 (6 outer + 58 inner, the 6th inner batch cut
    // off after 8).
    let app = App::new(&caps_manifest(
        programs::CAPS_V5,
        r#"allowed_outbound_hosts = ["http://self"]"#,
    ));
    let wisp = app.up(&[]);
    let inner = format!(
        "http://self/http-many?url={}&n=10",
        encode("http://self/unsupported")
    );
    expect(
        &wisp,
        &format!("GET /http-many?url={}&n=10", encode(&inner)),
        200,
        "failed after 6: ConnectionLimitReached",
    );
    assert!(
        wisp.wait_for_output("may make at most 64 outbound requests"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn example_kv_counter_app_runs() {
    let example = support::build_example("kv-counter");
    let state = tempfile::tempdir().unwrap();
    let command = |greeting: &str| {
        let mut command = support::wisp_command();
        command
            .args(["up", "-f"])
            .arg(example.join("spin.toml"))
            .arg("--state-dir")
            .arg(state.path())
            .env("SPIN_VARIABLE_GREETING", greeting);
        command
    };
    let up = |greeting: &str| {
        Wisp::spawn(command(greeting))
            .unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"))
    };
    let wisp = up("hi");
    for n in 1..=3 {
        expect(&wisp, "GET /a", 200, &format!("hi, visitor {n} of /a\n"));
    }
    expect(&wisp, "GET /b", 200, "hi, visitor 1 of /b\n");
    drop(wisp);
    // The count lives in the state directory's default store across restarts.
    let wisp = up("hello");
    expect(&wisp, "GET /a", 200, "hello, visitor 4 of /a\n");
    expect(&wisp, "DELETE /a", 200, "reset /a\n");
    expect(&wisp, "GET /a", 200, "hello, visitor 1 of /a\n");
}

#[test]
fn python_sdk_app_runs_unchanged() {
    let venv = support::python_sdk_venv();
    let app = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python-sdk");
    for file in ["app.py", "spin.toml"] {
        std::fs::copy(source.join(file), app.path().join(file)).unwrap();
    }
    // The build a Python SDK user runs (`spin build` runs the same command).
    support::componentize_python(&venv, "spin-http", app.path());

    let state = tempfile::tempdir().unwrap();
    let mut command = support::wisp_command();
    command
        .args(["up", "-f"])
        .arg(app.path().join("spin.toml"))
        .arg("--state-dir")
        .arg(state.path())
        .env("SPIN_VARIABLE_GREETING", "hi");
    let wisp = Wisp::spawn(command).unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"));
    expect(&wisp, "GET /x", 200, "hi 1\n");
    expect(&wisp, "GET /x", 200, "hi 2\n");
    expect(&wisp, "GET /y", 200, "hi 1\n");
}

// ---------------------------------------------------------------------------
// Client TLS ([[client_tls]])

/// `openssl s_server -www` (a real TLS server answering `GET /` with a status page) on a
/// free loopback port, optionally requiring a client certificate from `client_ca`.
fn tls_server(cert: &Path, key: &Path, client_ca: Option<&Path>) -> (support::KillOnDrop, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new("openssl");
    command
        .args([
            "s_server",
            "-www",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(ca) = client_ca {
        command.args(["-Verify", "1", "-CAfile"]).arg(ca);
    }
    let server = support::KillOnDrop(command.spawn().expect("openssl s_server runs"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

#[test]
fn client_tls_roots_and_client_certificates_per_component_and_host() {
    let certs = tempfile::tempdir().unwrap();
    let ca = support::TestCa::new(certs.path());
    let (server_cert, server_key) = ca.issue("server", "serverAuth");
    let (client_cert, client_key) = ca.issue("client", "clientAuth");
    let (_server, port) = tls_server(&server_cert, &server_key, None);
    let (_mtls_server, mtls_port) =
        tls_server(&server_cert, &server_key, Some(&ca.dir.join("ca.pem")));
    let grants = format!(
        "allowed_outbound_hosts = [\"https://localhost:{port}\", \"https://127.0.0.1:{port}\", \"https://localhost:{mtls_port}\"]"
    );
    let app = App::new(&caps_manifest(programs::CAPS_V5, &grants));
    let ca_file = ca.dir.join("ca.pem");
    let get = |wisp: &Wisp, port: u16| {
        call(
            wisp,
            &format!("GET /http?url=https://localhost:{port}/"),
            b"",
        )
        .text()
    };

    // The webpki roots alone do not know the test CA.
    let wisp = app.up(&[]);
    assert_eq!(get(&wisp, port), "error: TlsCertificateError");
    assert!(
        wisp.wait_for_output(&format!(
            "component `caps`: outbound request to https://localhost:{port}/ failed: the server's certificate was refused"
        )),
        "{}",
        wisp.stderr()
    );
    drop(wisp);

    // Its CA for this component and host: trusted. A server asking for a client
    // certificate is refused without one, and served with one.
    let config = app.write(
        "runtime-config.toml",
        &format!(
            "[[client_tls]]\ncomponent_ids = [\"caps\"]\nhosts = [\"localhost\", \"127.0.0.1\"]\nca_roots_file = \"{}\"\n",
            ca_file.display()
        ),
    );
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    // The right CA but the wrong name: the certificate names only `localhost`.
    let wrong_name = call(
        &wisp,
        &format!("GET /http?url=https://127.0.0.1:{port}/"),
        b"",
    )
    .text();
    assert_eq!(wrong_name, "error: TlsCertificateError");
    assert!(
        get(&wisp, port).starts_with("status 200\n"),
        "{}",
        wisp.stderr()
    );
    let refused = get(&wisp, mtls_port);
    assert!(refused.starts_with("error: TlsAlertReceived"), "{refused}");
    drop(wisp);
    let config = app.write(
        "runtime-config.toml",
        &format!(
            "[[client_tls]]\ncomponent_ids = [\"caps\"]\nhosts = [\"localhost\"]\nca_roots_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_private_key_file = \"{}\"\n",
            ca_file.display(),
            client_cert.display(),
            client_key.display()
        ),
    );
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    assert!(
        get(&wisp, mtls_port).starts_with("status 200\n"),
        "{}",
        wisp.stderr()
    );
    drop(wisp);

    // An entry for another component changes nothing for this one.
    let config = app.write(
        "runtime-config.toml",
        &format!(
            "[[client_tls]]\ncomponent_ids = [\"other\"]\nhosts = [\"localhost\"]\nca_roots_file = \"{}\"\n",
            ca_file.display()
        ),
    );
    let wisp = app.up(&["--runtime-config-file", config.to_str().unwrap()]);
    assert_eq!(get(&wisp, port), "error: TlsCertificateError");
    drop(wisp);

    // A host with a port, or a key without its certificate, is refused at start naming
    // the file and the entry.
    for (entry, needle) in [
        ("hosts = [\"localhost:443\"]", "is not a plain host name"),
        (
            "hosts = [\"localhost\"]\nclient_private_key_file = \"k.pem\"",
            "give both or neither",
        ),
    ] {
        let config = app.write(
            "runtime-config.toml",
            &format!("[[client_tls]]\ncomponent_ids = [\"caps\"]\n{entry}\n"),
        );
        let (_, stderr) =
            Wisp::spawn(app.command(&["--runtime-config-file", config.to_str().unwrap()], &[]))
                .err()
                .expect("refused");
        assert!(
            stderr.contains("runtime-config.toml")
                && stderr.contains("[[client_tls]] entry 1")
                && stderr.contains(needle),
            "{stderr}"
        );
    }
}

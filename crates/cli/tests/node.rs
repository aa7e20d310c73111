//! End-to-end tests of `wisp node`: the real binary on port 0, driven through
//! `wisp node deploy | ls | rm | status` and raw admin API calls.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{HttpResponse, app_dir, manifest_one, request, toml_path, try_request};
use wisp_test_programs as programs;
use wisp_test_registry::Registry;

/// A running `wisp node`, stopped (SIGTERM) on drop.
struct Node {
    child: Option<Child>,
    data: SocketAddr,
    admin: SocketAddr,
    state: PathBuf,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

fn pipe(reader: impl BufRead + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
}

impl Node {
    /// `wisp node` on free ports with its state in `state`, waiting until it serves.
    fn start(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Node {
        Self::try_start(state, args, env)
            .unwrap_or_else(|(status, stderr)| panic!("wisp node exited with {status}:\n{stderr}"))
    }

    #[expect(
        clippy::zombie_processes,
        reason = "the child moves into `Node`, whose Drop kills and waits for it"
    )]
    fn try_start(
        state: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Node, (ExitStatus, String)> {
        let mut command = support::wisp_command();
        command
            .args(["node", "--listen", "127.0.0.1:0"])
            .args(["--state-dir", state.to_str().unwrap()])
            .args(args)
            .env("WISP_CACHE_DIR", support::cache_dir())
            .env_remove("WISP_LOG")
            .env_remove("WISP_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !args.contains(&"--admin-listen") {
            command.args(["--admin-listen", "127.0.0.1:0"]);
        }
        let mut child = command.spawn().expect("spawn wisp node");
        let stdout = Arc::new(Mutex::new(String::new()));
        pipe(BufReader::new(child.stdout.take().unwrap()), stdout.clone());
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut admin = None;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).expect("read wisp stderr") == 0 {
                let status = child.wait().expect("wait for wisp");
                return Err((status, stderr.lock().unwrap().clone()));
            }
            stderr.lock().unwrap().push_str(&line);
            let after = |prefix: &str| {
                let line = line.trim().strip_prefix(prefix)?;
                line.strip_prefix("http://")
                    .or_else(|| line.strip_prefix("https://"))
                    .map(str::to_owned)
            };
            if let Some(rest) = after("Admin API on ") {
                admin = Some(rest.split(' ').next().unwrap().parse().unwrap());
            }
            if let Some(rest) = after("Serving apps on ") {
                let data = rest.split(' ').next().unwrap().parse().unwrap();
                pipe(lines, stderr.clone());
                return Ok(Node {
                    child: Some(child),
                    data,
                    admin: admin.expect("the admin address is printed first"),
                    state: state.to_path_buf(),
                    stderr,
                    stdout,
                });
            }
        }
    }

    /// `wisp node <args> --node <admin> --state-dir <state>`.
    fn cli(&self, args: &[&str]) -> Output {
        let mut command = support::wisp_command();
        command
            .arg("node")
            .args(args)
            .args(["--node", &format!("http://{}", self.admin)])
            .args(["--state-dir", self.state.to_str().unwrap()])
            .env_remove("WISP_ADMIN_TOKEN")
            .env_remove("WISP_NODE");
        command.output().expect("run wisp node")
    }

    /// `cli`, which must succeed.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "wisp node {args:?} failed:\n{}\nnode log:\n{}",
            text(&out.stderr),
            self.stderr()
        );
        out
    }

    fn deploy(&self, name: &str, from: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["deploy", name, "--from", from.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    fn apps(&self) -> Vec<Value> {
        let out = self.ok(&["ls", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn app(&self, name: &str) -> Value {
        self.apps()
            .into_iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no app `{name}` in ls"))
    }

    fn get(&self, host: &str, path: &str) -> HttpResponse {
        request(self.data, "GET", path, &[("host", host)], b"")
    }

    fn call(&self, host: &str, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        request(self.data, method, path, &[("host", host)], body)
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.state.join("admin-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `GET /metrics` on the admin listener, with the token.
    fn metrics(&self) -> HttpResponse {
        let bearer = format!("Bearer {}", self.token());
        request(
            self.admin,
            "GET",
            "/metrics",
            &[("authorization", &bearer)],
            b"",
        )
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends SIGTERM and asserts a clean exit, showing the node's output if not; returns
    /// everything the node wrote to stderr.
    fn stop_cleanly(mut self) -> String {
        let mut child = self.child.take().unwrap();
        support::terminate(&child);
        let status =
            support::wait_timeout(&mut child, Duration::from_secs(20)).expect("wisp node stops");
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            status.success(),
            "wisp node exited with {status} after SIGTERM\n{}",
            self.stderr()
        );
        self.stderr()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An app directory serving `wasm` on `/...`.
fn app(wasm: &str) -> tempfile::TempDir {
    app_dir(&manifest_one("/...", "main", wasm, ""))
}

/// Polls `check` for up to `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

#[test]
fn deploys_route_by_host_and_are_listed_and_removed() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &[], &[]);
    let hello = app(programs::HELLO);
    let out = node.deploy("hello", hello.path(), &[]);
    assert!(
        text(&out.stderr).contains("Deployed `hello` (version 1,"),
        "{}",
        text(&out.stderr)
    );
    // A bare component, with hosts of its own (an exact name and a wildcard).
    node.deploy(
        "echo",
        Path::new(programs::ECHO),
        &["--host", "Echo.Example.com", "--host", "*.echo.test"],
    );

    let response = node.get("hello.localhost", "/");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello from Wisp\n")
    );
    let echoed = node.get("echo.example.com:8080", "/x?y=1");
    assert_eq!(echoed.status, 200, "{}", node.stderr());
    assert!(
        echoed.text().starts_with("GET /x?y=1\n"),
        "{}",
        echoed.text()
    );
    assert!(
        echoed
            .text()
            .contains("spin-full-url: http://echo.example.com:8080/x?y=1\n"),
        "{}",
        echoed.text()
    );
    assert_eq!(node.get("a.b.echo.test", "/").status, 200);
    // Prometheus metrics on the admin listener, behind its token, labelled with the
    // deployed app's name (the manifest calls it `test-app`).
    let metrics = node.metrics();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().lines().any(|l| l
            == r#"wisp_requests_total{app="hello",component="main",trigger="http",status="2xx",outcome="ok"} 1"#),
        "{}",
        metrics.text()
    );
    assert!(!metrics.text().contains(r#"app="test-app""#));
    // The dashboard (its files need no token; its data calls carry the one the URL
    // fragment gives) lists every app with its state.
    let dom = support::chromium(
        &format!("http://{}/dashboard#token={}", node.admin, node.token()),
        3000,
        &["--dump-dom"],
    );
    let hello_row = support::rows_with(&dom, r#"data-app="hello""#);
    assert_eq!(hello_row.len(), 1, "{dom}");
    assert!(hello_row[0].contains("<td>loaded</td>"), "{}", hello_row[0]);
    assert_eq!(
        support::rows_with(&dom, r#"data-app="echo""#).len(),
        1,
        "{dom}"
    );
    // The page names its (empty) icon, so the browser asks for no `/favicon.ico`, which
    // would be refused for want of a token and logged.
    assert!(
        !node.stderr().contains("refused with 401"),
        "{}",
        node.stderr()
    );
    // Unknown hosts run no app code.
    let unknown = node.get("nope.localhost", "/");
    assert_eq!(unknown.status, 404);
    assert!(unknown.text().contains("no app is deployed at this host"));
    assert_eq!(node.get("echo.test", "/").status, 404);

    let apps = node.apps();
    assert_eq!(apps.len(), 2, "{apps:?}");
    let hello_info = node.app("hello");
    assert_eq!(hello_info["hosts"], serde_json::json!(["hello.localhost"]));
    assert_eq!(hello_info["state"], "loaded");
    assert_eq!(hello_info["version"], 1);
    assert_eq!(hello_info["requests"], 1);
    assert!(
        hello_info["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        node.app("echo")["hosts"],
        serde_json::json!(["echo.example.com", "*.echo.test"])
    );
    let table = text(&node.ok(&["ls"]).stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("hello") && l.contains("loaded")),
        "{table}"
    );

    // A host another app has is refused, and changes nothing.
    let taken = node.cli(&[
        "deploy",
        "thief",
        "--from",
        hello.path().to_str().unwrap(),
        "--host",
        "echo.example.com",
    ]);
    assert!(!taken.status.success());
    assert!(
        text(&taken.stderr).contains("host `echo.example.com` already belongs to app `echo`"),
        "{}",
        text(&taken.stderr)
    );
    assert_eq!(node.apps().len(), 2);

    let metrics_text = || node.metrics().text();
    assert!(metrics_text().contains(r#"app="echo""#));
    node.ok(&["rm", "echo"]);
    assert_eq!(node.get("echo.example.com", "/").status, 404);
    // A removed app's series go with it; the others stay.
    let after = metrics_text();
    assert!(!after.contains(r#"app="echo""#), "{after}");
    assert!(after.contains(r#"app="hello""#), "{after}");
    let again = node.cli(&["rm", "echo"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("no app is named `echo`"),
        "{}",
        text(&again.stderr)
    );
    // A new version whose component has another id: the old component's series go.
    node.deploy("hello", Path::new(programs::ECHO), &[]);
    assert_eq!(node.get("hello.localhost", "/").status, 200);
    let replaced = metrics_text();
    assert!(
        !replaced.contains(r#"app="hello",component="main""#),
        "{replaced}"
    );
    assert!(
        replaced
            .lines()
            .any(|l| l.starts_with("wisp_requests_total{app=\"hello\"")
                && l.contains("outcome=\"ok\"} 1")),
        "{replaced}"
    );
    let status: Value = serde_json::from_slice(&node.ok(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["apps"], 1);
    assert_eq!(status["listen"], node.data.to_string());
    node.stop_cleanly();
}

#[test]
fn the_admin_api_needs_its_token_and_stays_on_loopback() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &[], &[]);
    let token = node.token();
    assert_eq!(token.len(), 64);
    let deploy_body = br#"{"source":{"registry":{"reference":"localhost:1/x:y"}}}"#;
    for authorization in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic eDp5"),
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", *a))
            .collect();
        for (method, path, body) in [
            ("GET", "/metrics", &b""[..]),
            ("GET", "/v1/apps", &b""[..]),
            ("PUT", "/v1/apps/sneaky", &deploy_body[..]),
            ("DELETE", "/v1/apps/sneaky", &b""[..]),
            (
                "PUT",
                "/v1/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
                &b"x"[..],
            ),
        ] {
            let response = request(node.admin, method, path, &headers, body);
            assert_eq!(
                response.status, 401,
                "{method} {path} with {authorization:?}"
            );
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        }
    }
    // The refusal is logged as its response goes out: the line may trail the response.
    assert!(
        eventually(Duration::from_secs(10), || node
            .stderr()
            .contains("refused with 401")),
        "{}",
        node.stderr()
    );
    let bearer = format!("Bearer {token}");
    let listed = request(
        node.admin,
        "GET",
        "/v1/apps",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!((listed.status, listed.text().trim()), (200, "[]"));
    let unknown = request(
        node.admin,
        "GET",
        "/v2/apps",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(unknown.status, 404);

    // Every operation the OpenAPI document describes is one the admin API routes.
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/node-api.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut operations = 0;
    for (template, item) in document["paths"].as_object().unwrap() {
        let path = template.replace("{name}", "probe").replace(
            "{digest}",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            let response = request(
                node.admin,
                &method,
                &path,
                &[("authorization", &bearer)],
                b"{}",
            );
            assert!(
                response.status != 405 && !response.text().contains("unknown path"),
                "{method} {path} is described but not routed: {} {}",
                response.status,
                response.text()
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 8, "the document describes every operation");

    // The CLI with a wrong token gets the node's message and changes nothing.
    let mut command = support::wisp_command();
    let out = command
        .args(["node", "ls", "--node", &format!("http://{}", node.admin)])
        .args(["--token", "wrong-token-wrong-token"])
        .env_remove("WISP_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    assert!(node.apps().is_empty());
    drop(node);

    // A token from a file, and a non-loopback admin address only when asked for.
    let token_file = state.path().join("my-token");
    std::fs::write(&token_file, "a-token-from-a-file-0123\n").unwrap();
    let refused = Node::try_start(state.path(), &["--admin-listen", "0.0.0.0:0"], &[])
        .map(|_| ())
        .unwrap_err();
    assert!(
        refused.1.contains("not a loopback address"),
        "{}",
        refused.1
    );
    let node = Node::start(
        state.path(),
        &["--admin-token-file", token_file.to_str().unwrap()],
        &[],
    );
    let listed = request(
        node.admin,
        "GET",
        "/v1/status",
        &[("authorization", "Bearer a-token-from-a-file-0123")],
        b"",
    );
    assert_eq!(listed.status, 200, "{}", listed.text());
}

#[test]
fn a_refused_deploy_leaves_the_old_version_serving() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &["--memory-limit-mb", "64"], &[]);
    let hello = app(programs::HELLO);
    node.deploy("app", hello.path(), &[]);
    let digest = node.app("app")["digest"].clone();

    let not_wasm = tempfile::tempdir().unwrap();
    let bad_source = not_wasm.path().join("bad.wasm");
    std::fs::write(&bad_source, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let bad_config = not_wasm.path().join("runtime-config.toml");
    std::fs::write(&bad_config, "[key_value_store.default]\ntype = \"nope\"\n").unwrap();
    for (args, expected) in [
        (
            vec!["--from", bad_source.to_str().unwrap()],
            "component `bad`",
        ),
        (
            vec![
                "--from",
                hello.path().to_str().unwrap(),
                "--runtime-config-file",
                bad_config.to_str().unwrap(),
            ],
            "key_value_store",
        ),
        (
            vec![
                "--from",
                hello.path().to_str().unwrap(),
                "--memory-limit-mb",
                "128",
            ],
            "engine's per-instance cap (64 MiB",
        ),
        (
            vec![
                "--from",
                hello.path().to_str().unwrap(),
                "--host",
                "bad host",
            ],
            "host `bad host` is invalid",
        ),
    ] {
        let mut full = vec!["deploy", "app"];
        full.extend(args.iter().copied());
        let out = node.cli(&full);
        assert!(!out.status.success(), "{full:?} was accepted");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(expected),
            "{full:?}: expected {expected:?} in:\n{stderr}"
        );
        let response = node.get("app.localhost", "/");
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "Hello from Wisp\n")
        );
        let info = node.app("app");
        assert_eq!(
            (info["version"].clone(), info["digest"].clone()),
            (1.into(), digest.clone())
        );
    }
    let bad_name = node.cli(&[
        "deploy",
        "Bad_Name",
        "--from",
        hello.path().to_str().unwrap(),
    ]);
    assert!(text(&bad_name.stderr).contains("app name `Bad_Name` is invalid"));
}

#[test]
fn replacing_an_app_under_load_fails_no_request() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &[], &[]);
    let hello = app(programs::HELLO);
    let echo = app(programs::ECHO);
    node.deploy("app", hello.path(), &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failures) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, answered, failures) = (stop.clone(), answered.clone(), failures.clone());
            let data = node.data;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match try_request(data, "GET", "/r", &[("host", "app.localhost")], b"") {
                        Ok(r)
                            if r.status == 200
                                && (r.text() == "Hello from Wisp\n"
                                    || r.text().starts_with("GET /r\n")) =>
                        {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{} {}", r.status, r.text()))
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect();
    for round in 0..6 {
        let (dir, is_echo) = match round % 2 {
            0 => (&echo, true),
            _ => (&hello, false),
        };
        node.deploy("app", dir.path(), &[]);
        // The new version answers right after deploy returns.
        let started = Instant::now();
        let switched = eventually(Duration::from_secs(1), || {
            let body = node.get("app.localhost", "/r").text();
            body.starts_with("GET /r\n") == is_echo
        });
        assert!(
            switched,
            "round {round}: the new version did not answer within 1 s"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    println!(
        "replace under load: 6 deploys while 4 clients sent; {} answered, {} failed",
        answered.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        answered.load(Ordering::Relaxed) > 50,
        "too few requests to mean anything"
    );
    assert_eq!(node.app("app")["version"], 7);
}

const CAPS_MANIFEST: &str = r#"spin_manifest_version = 2
[application]
name = "caps"

[variables]
greeting = { default = "hi" }

[[trigger.http]]
route = "/..."
component = "caps"

[component.caps]
source = SOURCE
variables = { greeting = "{{ greeting }}" }
key_value_stores = ["default"]
"#;

#[test]
fn apps_have_their_own_stores_variables_and_instance_caps() {
    let state = tempfile::tempdir().unwrap();
    // The node's own environment is not any app's variables.
    let node = Node::start(state.path(), &[], &[("SPIN_VARIABLE_GREETING", "leaked")]);
    let caps = app_dir(&CAPS_MANIFEST.replace("SOURCE", &toml_path(programs::CAPS_V5)));
    node.deploy("a", caps.path(), &["--var", "greeting=from-a"]);
    node.deploy("b", caps.path(), &[]);

    let set = node.call(
        "a.localhost",
        "PUT",
        "/kv/set?store=default&key=k",
        b"only a",
    );
    assert_eq!(
        (set.status, set.text().as_str()),
        (200, "stored"),
        "{}",
        node.stderr()
    );
    let from_a = node.get("a.localhost", "/kv/get?store=default&key=k");
    assert_eq!((from_a.status, from_a.text().as_str()), (200, "only a"));
    let from_b = node.get("b.localhost", "/kv/get?store=default&key=k");
    assert_eq!(from_b.status, 404, "b sees a's store: {}", from_b.text());
    assert_eq!(
        node.get("a.localhost", "/var?name=greeting").text(),
        "from-a"
    );
    assert_eq!(node.get("b.localhost", "/var?name=greeting").text(), "hi");
    assert_eq!(node.app("a")["variables"], serde_json::json!(["greeting"]));

    // An app capped at one instance queues its own requests; another app does not wait.
    let spin = app(programs::SPIN_LOOP);
    node.deploy(
        "busy",
        spin.path(),
        &["--max-instances", "1", "--request-timeout", "2"],
    );
    node.deploy("calm", app(programs::HELLO).path(), &[]);
    let data = node.data;
    let looping = std::thread::spawn(move || {
        request(data, "GET", "/loop", &[("host", "busy.localhost")], b"").status
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(node.get("calm.localhost", "/").status, 200);
    let calm = started.elapsed();
    let queued = std::thread::spawn(move || {
        let started = Instant::now();
        let status = request(data, "GET", "/", &[("host", "busy.localhost")], b"").status;
        (status, started.elapsed())
    });
    assert_eq!(looping.join().unwrap(), 504);
    let (status, waited) = queued.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        calm < Duration::from_millis(500),
        "the other app waited {calm:?}"
    );
    assert!(
        waited > Duration::from_millis(1000),
        "the capped app's second request did not queue behind its first ({waited:?})"
    );
    assert_eq!(node.app("busy")["limits"]["max_instances"], 1);
}

#[test]
fn idle_apps_unload_and_a_restarted_node_serves_the_same_apps() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &["--idle-unload", "0.5"], &[]);
    let cron = app_dir(&format!(
        r#"spin_manifest_version = 2
[application]
name = "ticker"

[[trigger.cron]]
component = "tick"
cron_expression = "* * * * * *"

[component.tick]
source = {}
"#,
        toml_path(programs::CRON_TICK)
    ));
    node.deploy("hello", app(programs::HELLO).path(), &[]);
    // Loaded by its deploy (asked at once: it unloads after half a second).
    assert_eq!(node.app("hello")["state"], "loaded");
    node.deploy("ticker", cron.path(), &[]);
    assert!(
        eventually(Duration::from_secs(5), || node.app("hello")["state"]
            == "idle"),
        "hello was not unloaded: {}",
        node.stderr()
    );
    assert!(
        node.stderr().contains("unloaded app `hello`"),
        "{}",
        node.stderr()
    );
    // An app with a schedule stays loaded, and its schedule runs.
    assert_eq!(node.app("ticker")["state"], "loaded");
    assert!(
        eventually(Duration::from_secs(5), || node
            .stdout()
            .matches(" start")
            .count()
            >= 2),
        "no ticks: {}",
        node.stdout()
    );
    let response = node.get("hello.localhost", "/");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello from Wisp\n")
    );
    assert_eq!(node.app("hello")["state"], "loaded");
    assert!(
        node.stderr().contains("loaded app `hello` in"),
        "{}",
        node.stderr()
    );
    node.stop_cleanly();

    // Restarted: the same apps, idle until asked, the schedule running again.
    let node = Node::start(state.path(), &[], &[]);
    let apps = node.apps();
    assert_eq!(apps.len(), 2);
    assert_eq!(node.app("hello")["state"], "idle");
    assert_eq!(node.app("hello")["version"], 1);
    assert_eq!(node.app("ticker")["state"], "loaded");
    let response = node.get("hello.localhost", "/");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello from Wisp\n")
    );
    assert!(
        eventually(Duration::from_secs(5), || node.stdout().contains(" start")),
        "no ticks after the restart: {}",
        node.stdout()
    );
    // The source is not needed any more: the node has its own copy.
    node.ok(&["rm", "ticker"]);
    assert!(!state.path().join("apps").join("ticker").exists());
}

#[test]
fn deploys_from_a_registry() {
    let mut registry = Registry::start_with_auth("node", "node-pass-123");
    let auth = tempfile::tempdir().unwrap();
    let auth_file = auth.path().join("auth.json");
    let wisp = |args: &[&str], stdin: &str| {
        let mut command = support::wisp_command();
        let mut child = command
            .args(args)
            .env("WISP_REGISTRY_AUTH_FILE", &auth_file)
            .env("DOCKER_CONFIG", auth.path().join("docker"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "wisp {args:?}: {}", text(&out.stderr));
    };
    wisp(
        &[
            "registry",
            "login",
            &registry.host,
            "-u",
            "node",
            "--password-stdin",
            "--insecure",
        ],
        "node-pass-123",
    );
    let reference = format!("{}/apps/shop:v1", registry.host);
    let echo = app(programs::ECHO);
    let manifest = echo.path().join("spin.toml");
    wisp(
        &[
            "registry",
            "push",
            &reference,
            "-f",
            manifest.to_str().unwrap(),
            "--insecure",
        ],
        "",
    );

    let state = tempfile::tempdir().unwrap();
    let node = Node::start(
        state.path(),
        &[],
        &[
            ("WISP_REGISTRY_AUTH_FILE", auth_file.to_str().unwrap()),
            (
                "DOCKER_CONFIG",
                auth.path().join("docker").to_str().unwrap(),
            ),
        ],
    );
    node.deploy(
        "shop",
        Path::new(&reference),
        &["--insecure", "--host", "shop.example.com"],
    );
    let response = node.get("shop.example.com", "/cart");
    assert_eq!(response.status, 200, "{}", node.stderr());
    assert!(response.text().starts_with("GET /cart\n"));
    let info = node.app("shop");
    assert_eq!(info["origin"], reference);
    assert!(info["digest"].as_str().unwrap().starts_with("sha256:"));

    // The registry going away does not matter to a deployed app, even after a restart.
    registry.stop();
    node.stop_cleanly();
    let node = Node::start(state.path(), &[], &[]);
    assert_eq!(node.get("shop.example.com", "/x").status, 200);
}

#[test]
fn tls_on_the_admin_and_data_listeners() {
    let state = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca = support::TestCa::new(certs.path());
    let (cert, key) = ca.issue("node", "serverAuth");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // With TLS the admin API may listen beyond loopback without --admin-allow-insecure.
    let node = Node::start(
        state.path(),
        &[
            "--admin-listen",
            "0.0.0.0:0",
            "--admin-tls-cert",
            cert,
            "--admin-tls-key",
            key,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
        &[],
    );
    let admin = format!("https://localhost:{}", node.admin.port());
    let ca_file = ca.dir.join("ca.pem");
    let cli = |args: &[&str], trust: bool| {
        let mut command = support::wisp_command();
        command
            .arg("node")
            .args(args)
            .args([
                "--node",
                &admin,
                "--state-dir",
                node.state.to_str().unwrap(),
            ])
            .env_remove("WISP_ADMIN_TOKEN")
            .env_remove("WISP_NODE");
        if trust {
            command.arg("--ca-cert").arg(&ca_file);
        }
        command.output().expect("run wisp node")
    };
    let hello = app(programs::HELLO);
    let from = hello.path().to_str().unwrap();
    // The node's certificate is not one the client trusts by default.
    let untrusted = cli(&["deploy", "hello", "--from", from], false);
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted.stderr).contains("cannot reach the node at https://localhost:"),
        "{}",
        text(&untrusted.stderr)
    );
    let deployed = cli(&["deploy", "hello", "--from", from], true);
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));

    // Apps are served over HTTPS, routed by Host as over HTTP.
    let output = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(&ca_file)
        .args(["-H", "host: hello.localhost"])
        .arg(format!("https://localhost:{}/", node.data.port()))
        .output()
        .expect("curl runs");
    assert_eq!(
        text(&output.stdout),
        "Hello from Wisp\n",
        "{}",
        node.stderr()
    );

    // Without TLS a non-loopback admin address still needs the explicit flag.
    let other = tempfile::tempdir().unwrap();
    let (status, stderr) = Node::try_start(other.path(), &["--admin-listen", "0.0.0.0:0"], &[])
        .err()
        .expect("refused");
    assert!(!status.success());
    assert!(stderr.contains("--admin-tls-cert"), "{stderr}");
}

/// An app whose component has a dependency is packed with it, and the node composes it
/// with the same refusals as `wisp up`: the dependency does not see the component's
/// environment.
#[test]
fn an_app_with_a_component_dependency_is_composed_on_the_node() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &[], &[]);
    let dir = app_dir(
        "spin_manifest_version = 2\n[application]\nname = \"deps\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"main\"\n\
         [component.main]\nsource = \"main.wasm\"\nenvironment = { MODE = \"prod\" }\n\
         [component.main.dependencies]\n\"test:calc/adder@0.1.0\" = { path = \"adder.wasm\" }\n",
    );
    std::fs::copy(programs::DEP_MAIN, dir.path().join("main.wasm")).unwrap();
    std::fs::copy(programs::DEP_ADDER, dir.path().join("adder.wasm")).unwrap();
    node.deploy("deps", dir.path(), &[]);
    // The source directory is not needed once deployed.
    drop(dir);
    let sum = node.get("deps.localhost", "/sum");
    assert_eq!(
        (sum.status, sum.text().as_str()),
        (200, "sum=5"),
        "{}",
        node.stderr()
    );
    let env = node.get("deps.localhost", "/env/MODE");
    assert_eq!(env.text(), "main=prod dep=none", "{}", node.stderr());
    node.stop_cleanly();
}

#[test]
fn a_stopping_node_finishes_the_optimised_code_its_apps_started_without() {
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let env = [
        ("WISP_CACHE_DIR", cache.path().to_str().unwrap()),
        ("WISP_BASELINE_COMPILE", "always"),
    ];
    let node = Node::start(state.path(), &[], &env);
    node.deploy("hello", app(programs::HELLO).path(), &[]);
    // Stopped as soon as the deploy answers, while the optimised code may still compile.
    let stderr = node.stop_cleanly();
    assert!(
        stderr.contains("serves from baseline code"),
        "the deploy did not start on baseline code:\n{stderr}"
    );
    // Whether the compile ended before the signal or the node waited for it, it is cached.
    assert!(
        stderr.contains("cached for later starts"),
        "the optimised code was not cached before the node stopped:\n{stderr}"
    );
    assert!(
        !stderr.contains("stopped before the optimised code was cached"),
        "{stderr}"
    );

    // The next start finds it: no baseline code, the same answer.
    let node = Node::start(state.path(), &[], &env);
    let response = node.get("hello.localhost", "/");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello from Wisp\n")
    );
    let stderr = node.stop_cleanly();
    assert!(
        !stderr.contains("serves from baseline code") && stderr.contains("loaded app `hello` in"),
        "the restarted node compiled `hello` again:\n{stderr}"
    );
}

/// A raw HTTP/1.1 exchange on a connection of the test's own, so the client address the
/// app sees can be checked: returns the local address and the whole response.
fn raw_exchange(data: SocketAddr, head: &str, body: &[u8]) -> (SocketAddr, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(data).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    (stream.local_addr().unwrap(), response)
}

/// Reads one HTTP/1.1 response (chunked, or with a content length) from a keep-alive
/// connection.
fn read_response(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read as _;
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    let mut read_one = |response: &mut Vec<u8>| {
        let n = stream.read(&mut byte).expect("read a response");
        assert!(n > 0, "closed after {:?}", text(response));
        response.push(byte[0]);
    };
    while !response.ends_with(b"\r\n\r\n") {
        read_one(&mut response);
    }
    let head = text(&response).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|length| length.trim().parse::<usize>().unwrap());
    match length {
        Some(length) => {
            let end = response.len() + length;
            while response.len() < end {
                read_one(&mut response);
            }
        }
        None => {
            while !response.ends_with(b"\r\n0\r\n\r\n") {
                read_one(&mut response);
            }
        }
    }
    text(&response)
}

/// More requests in flight than CPUs, each waiting for the rest of its body (`head` must
/// declare more than `sent`): their app is over its share while they are held.
fn hold(data: SocketAddr, head: &str, sent: &[u8]) -> Vec<std::net::TcpStream> {
    hold_n(cpus() + 2, data, head, sent)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `count` requests in flight, each waiting for the rest of its body.
fn hold_n(count: usize, data: SocketAddr, head: &str, sent: &[u8]) -> Vec<std::net::TcpStream> {
    use std::io::Write as _;
    (0..count)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(data).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(sent).unwrap();
            stream
        })
        .collect()
}

/// Sends the rest of each held request's body; returns each response.
fn release(held: Vec<std::net::TcpStream>, rest: &[u8]) -> Vec<String> {
    use std::io::{Read as _, Write as _};
    held.into_iter()
        .map(|mut stream| {
            stream.write_all(rest).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut response = vec![0u8; 4096];
            let n = stream.read(&mut response).unwrap();
            text(&response[..n])
        })
        .collect()
}

fn node_status(node: &Node) -> Value {
    serde_json::from_slice(&node.ok(&["status", "--json"]).stdout).unwrap()
}

fn forwarded(node: &Node) -> u64 {
    node_status(node)["worker"]["forwarded_requests"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_busy_app_runs_in_the_worker_process_while_other_apps_are_served() {
    use std::io::Write as _;
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &[], &[]);
    node.deploy("busy", app(programs::ECHO).path(), &[]);
    node.deploy("calm", app(programs::HELLO).path(), &[]);
    assert_eq!(
        node_status(&node)["worker"]["pid"],
        Value::Null,
        "started early"
    );

    // `busy` has more requests in flight than CPUs while `calm` is being served: it is
    // over its share.
    let held = hold(
        node.data,
        "POST /held HTTP/1.1\r\nhost: busy.localhost\r\ncontent-length: 5\r\n\r\n",
        b"ab",
    );
    std::thread::sleep(Duration::from_millis(300));
    let forwarded_some = eventually(Duration::from_secs(30), || {
        assert_eq!(node.get("calm.localhost", "/").status, 200);
        let (client, response) = raw_exchange(
            node.data,
            // A client cannot ask the worker for its metrics: the header is taken off.
            "POST /probe?q=1 HTTP/1.1\r\nhost: busy.localhost\r\nx-test: yes\r\nwisp-worker-metrics: 1\r\nconnection: close\r\ncontent-length: 4\r\n\r\n",
            b"body",
        );
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{response}\n{}",
            node.stderr()
        );
        // What the app sees is the same wherever it runs: the client, the URL, the body.
        assert!(response.contains("POST /probe?q=1"), "{response}");
        assert!(response.contains("x-test: yes"), "{response}");
        assert!(
            response.contains(&format!("spin-client-addr: {client}")),
            "{response}"
        );
        assert!(
            response.contains("spin-full-url: http://busy.localhost/probe?q=1"),
            "{response}"
        );
        assert!(response.contains("\n\nbody"), "{response}");
        assert!(
            !response.contains("wisp-worker"),
            "forwarding headers leaked: {response}"
        );
        forwarded(&node) > 0
    });
    let worker = node_status(&node)["worker"].clone();
    assert!(
        forwarded_some,
        "nothing was forwarded: {worker}\n{}",
        node.stderr()
    );
    // A keep-alive connection whose request went to the worker is handed over to it: its
    // next requests are answered there directly, to the same client. A request on it for
    // another app (as from a load balancer's pooled connection) brings it back to the
    // node, and the next one for the busy app is answered too.
    let mut kept = None;
    let handed_over_and_back = eventually(Duration::from_secs(30), || {
        assert_eq!(node.get("calm.localhost", "/").status, 200);
        let mut stream = std::net::TcpStream::connect(node.data).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let client = stream.local_addr().unwrap();
        // The last request goes over in the worker: the node hands a connection over once
        // a response ends, or at the latest when the next request arrives.
        for n in 0..4 {
            stream
                .write_all(
                    format!("GET /keep/{n} HTTP/1.1\r\nhost: busy.localhost\r\n\r\n").as_bytes(),
                )
                .unwrap();
            let response = read_response(&mut stream);
            assert!(
                response.starts_with("HTTP/1.1 200"),
                "request {n}: {response}"
            );
            assert!(response.contains(&format!("GET /keep/{n}\n")), "{response}");
            assert!(
                response.contains(&format!("spin-client-addr: {client}")),
                "{response}"
            );
            if n == 1 {
                stream
                    .write_all(b"GET / HTTP/1.1\r\nhost: calm.localhost\r\n\r\n")
                    .unwrap();
                let response = read_response(&mut stream);
                assert!(response.starts_with("HTTP/1.1 200"), "{response}");
                assert!(response.contains("\r\nHello from Wisp\n"), "{response}");
            }
        }
        let worker = &node_status(&node)["worker"];
        kept = Some(stream);
        worker["handed_off_connections"].as_u64() > Some(0)
            && worker["returned_connections"].as_u64() > Some(0)
            && worker["held_connections"].as_u64() > Some(0)
    });
    assert!(
        handed_over_and_back,
        "no connection was handed over and back: {}\n{}",
        node_status(&node)["worker"],
        node.stderr()
    );
    // `ls` counts what the worker served on the connections it holds. While `busy` is
    // busy, the worker keeps holding the kept connection between requests.
    let busy_requests = |node: &Node| {
        let apps = node.apps();
        let busy = apps.iter().find(|app| app["name"] == "busy").unwrap();
        busy["requests"].as_u64().unwrap()
    };
    let still_held = |node: &Node| node_status(node)["worker"]["held_connections"].as_u64();
    let before = busy_requests(&node);
    let stream = kept.as_mut().unwrap();
    let mut sent = 0;
    let held_now = eventually(Duration::from_secs(10), || {
        sent += 1;
        stream
            .write_all(
                format!("GET /keep/{sent} HTTP/1.1\r\nhost: busy.localhost\r\n\r\n").as_bytes(),
            )
            .unwrap();
        assert!(read_response(stream).starts_with("HTTP/1.1 200"));
        sent >= 3 && still_held(&node) > Some(0)
    });
    assert!(held_now, "{}", node_status(&node)["worker"]);
    assert!(
        eventually(Duration::from_secs(10), || busy_requests(&node)
            >= before + sent),
        "{:?}",
        node.apps()
    );
    let pid = worker["pid"].as_u64().expect("the worker runs") as i32;
    assert_eq!(worker["starts"], 1);
    // Every thread of the worker is in the idle scheduling class (policy 5).
    let threads: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| t.unwrap().path())
        .collect();
    assert!(threads.len() > 2, "{threads:?}");
    for thread in threads {
        let sched = std::fs::read_to_string(thread.join("sched")).unwrap_or_default();
        assert!(
            sched.is_empty()
                || sched
                    .lines()
                    .any(|l| l.starts_with("policy") && l.trim().ends_with('5')),
            "{} is not SCHED_IDLE:\n{sched}",
            thread.display()
        );
    }
    for response in release(held, b"cde") {
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // While the worker holds a connection of `busy`, all of busy's requests go there (its
    // instances stay in one process, under its cap), though it is no longer over its
    // share.
    assert!(
        still_held(&node) > Some(0),
        "{}",
        node_status(&node)["worker"]
    );
    let before = forwarded(&node);
    assert_eq!(node.call("busy.localhost", "POST", "/", b"x").status, 200);
    assert!(
        forwarded(&node) > before,
        "{}",
        node_status(&node)["worker"]
    );
    // `busy` is no longer busy in the worker either: a second on, the kept connection's
    // next request goes back to the node, and once it has ended there, busy is served in
    // the node.
    std::thread::sleep(Duration::from_millis(1100));
    let returned = node_status(&node)["worker"]["returned_connections"].as_u64();
    let stream = kept.as_mut().unwrap();
    stream
        .write_all(b"GET /back HTTP/1.1\r\nhost: busy.localhost\r\n\r\n")
        .unwrap();
    assert!(read_response(stream).starts_with("HTTP/1.1 200"));
    assert!(node_status(&node)["worker"]["returned_connections"].as_u64() > returned);
    drop(kept);
    assert!(
        eventually(Duration::from_secs(10), || still_held(&node) == Some(0)),
        "{}",
        node_status(&node)["worker"]
    );
    let before = forwarded(&node);
    assert_eq!(node.call("busy.localhost", "POST", "/", b"x").status, 200);
    assert_eq!(forwarded(&node), before, "{}", node_status(&node)["worker"]);
    // The node's metrics count the requests its worker served, labelled as the worker's.
    let metrics = node.metrics().text();
    let in_worker = |line: &str| {
        line.starts_with(r#"wisp_requests_total{app="busy""#)
            && line.contains(r#"process="worker"} "#)
    };
    let served_there: u64 = metrics
        .lines()
        .filter(|l| in_worker(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(served_there >= 1, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(r#"process_threads{process="worker"} "#)),
        "{metrics}"
    );
    assert_eq!(metrics.matches("# TYPE wisp_requests counter").count(), 1);
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");

    // A worker that dies fails nothing that comes after: the node serves the app itself
    // until it has started another.
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(eventually(
        Duration::from_secs(10),
        || node_status(&node)["worker"]["pid"].as_u64() != Some(pid as u64)
    ));
    for _ in 0..20 {
        assert_eq!(node.call("busy.localhost", "POST", "/", b"x").status, 200);
        assert_eq!(node.get("calm.localhost", "/").status, 200);
    }
    let log = node.stop_cleanly();
    assert!(log.contains("worker process (pid"), "{log}");
    // It does not outlive the node.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn an_apps_instance_cap_holds_across_the_node_and_its_worker() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &[], &[]);
    let cap = cpus() + 2;
    node.deploy(
        "busy",
        app(programs::ECHO).path(),
        &["--max-instances", &cap.to_string()],
    );
    node.deploy("calm", app(programs::HELLO).path(), &[]);
    let held_post = "POST /held HTTP/1.1\r\nhost: busy.localhost\r\ncontent-length: 5\r\n\r\n";
    let probe = |data| {
        raw_exchange(
            data,
            "POST /probe HTTP/1.1\r\nhost: busy.localhost\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            b"x",
        )
        .1
    };

    // One slot short of the cap held in the node: probes are over the app's share and go
    // to the worker once it runs.
    let mut held = hold_n(cap - 1, node.data, held_post, b"ab");
    std::thread::sleep(Duration::from_millis(300));
    let worker_runs = eventually(Duration::from_secs(30), || {
        assert_eq!(node.get("calm.localhost", "/").status, 200);
        let response = probe(node.data);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        forwarded(&node) > 0
    });
    assert!(worker_runs, "nothing was forwarded:\n{}", node.stderr());

    // Every slot held in the node (the last one maybe by a request forwarded to the
    // worker): a request for the worker waits for one of them, as it would in the node,
    // instead of running past the cap there.
    let before = forwarded(&node);
    held.extend(hold_n(1, node.data, held_post, b"ab"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.get("calm.localhost", "/").status, 200);
    let data = node.data;
    let waiting = std::thread::spawn(move || probe(data));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !waiting.is_finished(),
        "a forwarded request ran past the app's cap of {cap} held in the node"
    );
    for response in release(held, b"cde") {
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let response = waiting.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("POST /probe"), "{response}");
    assert!(forwarded(&node) > before, "{}", node.stderr());
    node.stop_cleanly();
}

#[test]
fn the_worker_serves_the_version_just_deployed_and_the_apps_own_store() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::start(state.path(), &[], &[]);
    node.deploy("calm", app(programs::HELLO).path(), &[]);
    let caps = app_dir(&CAPS_MANIFEST.replace("SOURCE", &toml_path(programs::CAPS_V5)));
    let held_put = "PUT /kv/set?store=default&key=held HTTP/1.1\r\nhost: busy.localhost\r\ncontent-length: 5\r\n\r\n";
    for version in ["v1", "v2"] {
        // A replace while the worker already serves the app's previous version.
        node.deploy(
            "busy",
            caps.path(),
            &["--var", &format!("greeting={version}")],
        );
        let before = forwarded(&node);
        let held = hold(node.data, held_put, b"ab");
        std::thread::sleep(Duration::from_millis(300));
        let mut probes = 0;
        let reached = eventually(Duration::from_secs(30), || {
            assert_eq!(node.get("calm.localhost", "/").status, 200);
            // Nothing is answered by the version before.
            let greeting = node.get("busy.localhost", "/var?name=greeting");
            assert_eq!(
                (greeting.status, greeting.text().as_str()),
                (200, version),
                "{}",
                node.stderr()
            );
            // Writes land in the app's one store, wherever they run.
            probes += 1;
            let key = format!("{version}-{probes}");
            let set = node.call(
                "busy.localhost",
                "PUT",
                &format!("/kv/set?store=default&key={key}"),
                key.as_bytes(),
            );
            assert_eq!((set.status, set.text().as_str()), (200, "stored"));
            forwarded(&node) > before + 1
        });
        assert!(
            reached,
            "the worker served nothing of {version}:\n{}",
            node.stderr()
        );
        for response in release(held, b"cde") {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        }
        // Nothing in flight: these reads run in the node, and see what the worker wrote.
        for n in 1..=probes {
            let key = format!("{version}-{n}");
            let got = node.get(
                "busy.localhost",
                &format!("/kv/get?store=default&key={key}"),
            );
            assert_eq!((got.status, got.text()), (200, key));
        }
        assert_eq!(
            node.get("busy.localhost", "/kv/get?store=default&key=held")
                .text(),
            "abcde"
        );
    }
    node.stop_cleanly();
}

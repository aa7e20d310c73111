//! End-to-end tests of `wisp up`: the real binary on 127.0.0.1:0, real guest components.

mod support;

use std::time::{Duration, Instant};
use support::{Wisp, app_dir, manifest_one, request, toml_path};
use wisp_test_programs as programs;

#[test]
fn hello_from_manifest_with_exact_headers() {
    let dir = app_dir(&manifest_one("/hello", "hello", programs::HELLO, ""));
    let wisp = Wisp::up(&["-f", dir.path().join("spin.toml").to_str().unwrap()]);
    let response = wisp.get("/hello");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from Wisp\n");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert!(
        wisp.stderr()
            .contains("hello  (wasi:http/incoming-handler@0.2)"),
        "{}",
        wisp.stderr()
    );
    // Only what the guest set plus HTTP framing: no server, timing or tracing headers.
    let names = response.header_names();
    let framing = if names.contains(&"transfer-encoding") {
        "transfer-encoding"
    } else {
        "content-length"
    };
    // `connection: close` answers the test client's own `connection: close`.
    let mut expected = vec!["connection", "content-type", "date", framing];
    expected.sort_unstable();
    assert_eq!(names, expected, "{:?}", response.headers);
    // Unrouted paths are 404 without touching a guest.
    assert_eq!(wisp.get("/nope").status, 404);
    assert_eq!(wisp.get("/hello/deeper").status, 404);
    // A directory given to -f finds its spin.toml.
    drop(wisp);
    let wisp = Wisp::up(&["-f", dir.path().to_str().unwrap()]);
    assert_eq!(wisp.get("/hello").status, 200);
}

#[test]
fn bare_component_serves_every_path() {
    let wisp = Wisp::up(&["--from", programs::HELLO]);
    for path in ["/", "/x", "/a/b/c?d=e"] {
        let response = wisp.get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.text(), "Hello from Wisp\n");
    }
}

#[test]
fn spin_headers_are_injected_and_spoofs_replaced() {
    let dir = app_dir(&manifest_one("/echo/:name/...", "echo", programs::ECHO, ""));
    let wisp = Wisp::up(&["-f", dir.path().join("spin.toml").to_str().unwrap()]);
    let response = request(
        wisp.addr,
        "POST",
        "/echo/alice/x/y?q=1",
        &[("spin-path-info", "/spoofed"), ("x-custom", "yes")],
        b"the body",
    );
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    let text = response.text();
    let addr = wisp.addr;
    let expected_lines = [
        "POST /echo/alice/x/y?q=1".to_owned(),
        format!("spin-full-url: http://{addr}/echo/alice/x/y?q=1"),
        "spin-path-info: /x/y".to_owned(),
        "spin-matched-route: /echo/:name/...".to_owned(),
        "spin-component-route: /echo/:name".to_owned(),
        "spin-raw-component-route: /echo/:name/...".to_owned(),
        "spin-base-path: /".to_owned(),
        "spin-path-match-name: alice".to_owned(),
        "x-custom: yes".to_owned(),
    ];
    for line in &expected_lines {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("spin-client-addr: 127.0.0.1:")),
        "{text}"
    );
    assert_eq!(text.matches("spin-path-info").count(), 1, "{text}");
    assert!(text.ends_with("\n\nthe body"), "{text}");
}

#[test]
fn routing_static_private_and_well_known() {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "routes"
version = "1.2.3"

[[trigger.http]]
route = "/..."
component = "fallback"

[[trigger.http]]
route = "/users/:id"
component = "echo"

[[trigger.http]]
route = "/segments/:path_segment/:Item2"
component = "echo"

[[trigger.http]]
route = "/gone"
static_response = {{ status_code = 410, headers = {{ "content-type" = "text/plain" }}, body = "gone for good" }}

[[trigger.http]]
route = {{ private = true }}
component = "internal"

[component.fallback]
source = {hello}

[component.echo]
source = {echo}
description = "Echoes the request"

[component.internal]
source = {hello}
"#,
        hello = toml_path(programs::HELLO),
        echo = toml_path(programs::ECHO)
    );
    let dir = app_dir(&manifest);
    let wisp = Wisp::up(&["-f", dir.path().join("spin.toml").to_str().unwrap()]);

    let user = wisp.get("/users/42");
    assert_eq!(user.status, 200);
    assert!(
        user.text().contains("spin-path-match-id: 42"),
        "{}",
        user.text()
    );
    assert_eq!(wisp.get("/users/42/more").text(), "Hello from Wisp\n");
    // Spin's start-up lines on stdout, for harnesses that wait for them; no private route.
    let addr = wisp.addr;
    let expected = format!(
        "\nServing http://{addr}\nAvailable Routes:\n  fallback: http://{addr} (wildcard)\n  echo: http://{addr}/users/:id\n    Echoes the request\n  echo: http://{addr}/segments/:path_segment/:Item2\n    Echoes the request\n"
    );
    assert!(wisp.wait_for_output(&format!(": http://{addr}/gone\n")));
    assert!(wisp.stdout().starts_with(&expected), "{}", wisp.stdout());
    assert!(!wisp.stdout().contains("internal"), "{}", wisp.stdout());
    // Spin's names: lower case, `_` turned into `-`.
    let segments = wisp.get("/segments/a_b/C3").text();
    for line in [
        "spin-path-match-path-segment: a_b",
        "spin-path-match-item2: C3",
    ] {
        assert!(
            segments.lines().any(|l| l == line),
            "missing {line:?} in:\n{segments}"
        );
    }

    let gone = wisp.get("/gone");
    assert_eq!(gone.status, 410);
    assert_eq!(gone.text(), "gone for good");
    assert_eq!(gone.header("content-type"), Some("text/plain"));

    for path in ["/.well-known/wisp/health", "/.well-known/spin/health"] {
        let health = wisp.get(path);
        assert_eq!(
            (health.status, health.text().as_str()),
            (200, "OK\n"),
            "{path}"
        );
    }
    let info = wisp.get("/.well-known/wisp/info");
    assert_eq!(info.status, 200);
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(info["name"], "routes");
    assert_eq!(info["version"], "1.2.3");
    assert_eq!(
        info["components"],
        serde_json::json!(["fallback", "echo", "internal"])
    );
}

#[test]
fn wasi_03_component_is_served() {
    let wisp = Wisp::up(&["--from", programs::P3_HELLO]);
    let response = wisp.get("/p3/path?x=1");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from WASI 0.3 /p3/path?x=1\n");
    // The export is detected once at load and shown in the start-up summary.
    assert!(
        wisp.stderr()
            .contains("p3-hello  (wasi:http/handler@0.3.0)"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn http2_prior_knowledge_is_served() {
    let wisp = Wisp::up(&["--from", programs::HELLO]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, version, body) = runtime.block_on(async {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(wisp.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let request = http::Request::builder()
            .uri(format!("http://{}/h2", wisp.addr))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let version = response.version();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, version, body)
    });
    assert_eq!(status, 200);
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(&body[..], b"Hello from Wisp\n");
}

/// Runs `fault_path` while a healthy request loop runs beside it; the healthy requests
/// must all succeed.
fn with_healthy_neighbour(wisp: &Wisp, fault_path: &str) -> (support::HttpResponse, Vec<Duration>) {
    let addr = wisp.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let neighbour = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut latencies = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || latencies.len() < 5 {
                let started = Instant::now();
                let response = request(addr, "GET", "/hello", &[], b"");
                latencies.push(started.elapsed());
                assert_eq!(response.status, 200);
                assert_eq!(response.text(), "Hello from Wisp\n");
                std::thread::sleep(Duration::from_millis(20));
            }
            latencies
        }
    });
    let faulty = request(addr, "GET", fault_path, &[], b"");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let latencies = neighbour
        .join()
        .expect("healthy requests failed while a guest faulted");
    (faulty, latencies)
}

fn fault_app() -> tempfile::TempDir {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "faults"

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = "/trap"
component = "trap"

[[trigger.http]]
route = "/loop"
component = "spin-loop"

[[trigger.http]]
route = "/memhog"
component = "memhog"

[component.hello]
source = {hello}

[component.trap]
source = {trap}

[component.spin-loop]
source = {spin_loop}

[component.memhog]
source = {memhog}
"#,
        hello = toml_path(programs::HELLO),
        trap = toml_path(programs::TRAP),
        spin_loop = toml_path(programs::SPIN_LOOP),
        memhog = toml_path(programs::MEMHOG),
    );
    app_dir(&manifest)
}

#[test]
fn guest_faults_are_isolated() {
    let dir = fault_app();
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--request-timeout",
        "3",
        "--memory-limit-mb",
        "32",
    ]);

    let (trap, _) = with_healthy_neighbour(&wisp, "/trap");
    assert_eq!(trap.status, 500);
    // The log line says why (the trap, and where), on one line.
    assert!(
        wisp.wait_for_output(
            "component `trap` failed: wasm trap: wasm `unreachable` instruction executed (in "
        ),
        "{}",
        wisp.stderr()
    );
    let line = wisp
        .stderr()
        .lines()
        .find(|line| line.contains("component `trap` failed"))
        .map(str::to_owned)
        .unwrap();
    assert!(line.ends_with("; answered 500"), "{line}");

    let started = Instant::now();
    let (looped, latencies) = with_healthy_neighbour(&wisp, "/loop");
    assert_eq!(looped.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        wisp.wait_for_output("component `spin-loop` exceeded its 3s deadline"),
        "{}",
        wisp.stderr()
    );
    // Neighbours keep being served while the loop spins: a neighbour stuck behind the loop
    // would take the whole 3 s deadline; the bound leaves room for shared CI cores.
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(1500),
        "slowest healthy request {slowest:?}"
    );

    let (hog, _) = with_healthy_neighbour(&wisp, "/memhog");
    assert_eq!(hog.status, 500);
    assert!(
        wisp.wait_for_output("component `memhog` exceeded its memory limit of 33554432 bytes"),
        "{}",
        wisp.stderr()
    );

    // And the server is still healthy afterwards.
    assert_eq!(wisp.get("/hello").status, 200);
}

#[test]
fn guest_stdout_and_stderr_are_prefixed_lines() {
    let wisp = Wisp::up(&["--from", programs::STDIO_LOG]);
    let response = wisp.get("/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "logged\n");
    assert!(
        wisp.wait_for_output("[stdio-log] hello stderr"),
        "{}",
        wisp.stderr()
    );
    // Stdout and stderr are read by separate threads: wait for the stdout line too.
    assert!(wisp.wait_for_output("[stdio-log] hello stdout"));
    assert!(
        wisp.stdout().contains("[stdio-log] hello stdout\n"),
        "{}",
        wisp.stdout()
    );
    assert!(!wisp.stderr().contains("hello stdout"));
}

#[test]
fn sandbox_exposes_only_granted_env_and_files() {
    let manifest = manifest_one(
        "/...",
        "sandbox",
        programs::SANDBOX,
        r#"environment = { GREETING = "hi" }
files = [{ source = "assets", destination = "/static" }]"#,
    );
    let dir = app_dir(&manifest);
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/hello.txt"), "hello file\n").unwrap();
    std::fs::write(dir.path().join("not-mounted.txt"), "secret").unwrap();
    // SAFETY of the check below: the host process has these in its environment.
    let wisp = Wisp::up(&["-f", dir.path().join("spin.toml").to_str().unwrap()]);
    let response = wisp.get("/");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    let text = response.text();
    for line in [
        "env GREETING=hi",
        "env count=1",
        "file /static/hello.txt=hello file",
        "write /static/new.txt=denied",
        "read /etc/passwd=denied",
        "dir /=static",
        "tcp 127.0.0.1:1=denied",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(!dir.path().join("assets/new.txt").exists());
    drop(wisp);

    // `--temp`: the files are staged there instead of the state directory.
    let temp = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--temp",
        temp.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert!(
        wisp.get("/")
            .text()
            .contains("file /static/hello.txt=hello file"),
        "{}",
        wisp.stderr()
    );
    assert!(temp.path().join("sandbox").is_dir());
    assert!(!state.path().join("files").exists());
}

#[test]
fn touching_4mib_per_request_works_repeatedly() {
    let wisp = Wisp::up(&["--from", programs::TOUCH4MIB]);
    let first = wisp.get("/");
    assert_eq!(first.status, 200, "{}", wisp.stderr());
    assert!(
        first.text().starts_with("touched 4194304 bytes sum="),
        "{}",
        first.text()
    );
    // Fresh instance each time: same answer, memory reset between requests.
    for _ in 0..5 {
        assert_eq!(wisp.get("/").text(), first.text());
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let dir = fault_app();
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--request-timeout",
        "2",
    ]);
    let addr = wisp.addr;
    let in_flight = std::thread::spawn(move || request(addr, "GET", "/loop", &[], b""));
    std::thread::sleep(Duration::from_millis(500));
    let status = wisp.stop();
    let response = in_flight.join().unwrap();
    // The in-flight request got its answer (the 504 of its own deadline), not a reset.
    assert_eq!(response.status, 504);
    assert!(status.success(), "{status}");
    // And the port is closed.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn sigterm_as_soon_as_the_address_is_printed_is_a_clean_stop() {
    // The signal handlers must exist before the address is printed: a SIGTERM that comes
    // first would otherwise kill the process with no drain and a failed status.
    for attempt in 0..10 {
        let wisp = Wisp::up(&["--from", programs::HELLO]);
        let status = wisp.stop();
        assert!(status.success(), "attempt {attempt}: {status}");
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(["up", "--from", programs::HELLO, "--listen", &port])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{port} is in use")), "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");
}

fn up_fails(args: &[&str]) -> String {
    match Wisp::try_up(args) {
        Ok(_) => panic!("wisp up {args:?} should have failed"),
        Err((status, stderr)) => {
            assert_eq!(status.code(), Some(1), "{stderr}");
            stderr
        }
    }
}

#[test]
fn bad_manifests_and_components_are_refused_with_reasons() {
    let dir = app_dir("spin_manifest_version = 2\n[application]\nname = \"x\"\nbogus = 1\n");
    let stderr = up_fails(&["-f", dir.path().join("spin.toml").to_str().unwrap()]);
    assert!(stderr.contains("spin.toml:4:1"), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");

    let dir = app_dir(&manifest_one("/", "missing", "nope.wasm", ""));
    let stderr = up_fails(&["-f", dir.path().join("spin.toml").to_str().unwrap()]);
    assert!(
        stderr.contains("component `missing`: cannot read source"),
        "{stderr}"
    );

    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let stderr = up_fails(&["--from", not_wasm.to_str().unwrap()]);
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");

    let no_export = dir.path().join("no-export.wasm");
    std::fs::write(&no_export, wat::parse_str("(component)").unwrap()).unwrap();
    let stderr = up_fails(&["--from", no_export.to_str().unwrap()]);
    assert!(
        stderr.contains("component `no-export` has no HTTP export"),
        "{stderr}"
    );

    // An interface no host provides (Spin's own interfaces are linked now).
    let unknown = dir.path().join("needs-unknown.wasm");
    std::fs::write(
        &unknown,
        wat::parse_str(
            r#"(component
                 (import "example:unknown/api@1.0.0" (instance
                   (export "get" (func (param "key" string)))
                 ))
               )"#,
        )
        .unwrap(),
    )
    .unwrap();
    let stderr = up_fails(&["--from", unknown.to_str().unwrap()]);
    assert!(
        stderr.contains("component `needs-unknown` cannot be linked"),
        "{stderr}"
    );
    assert!(stderr.contains("example:unknown/api@1.0.0"), "{stderr}");

    let truncated = dir.path().join("truncated.wasm");
    let hello = std::fs::read(programs::HELLO).unwrap();
    std::fs::write(&truncated, &hello[..hello.len() / 2]).unwrap();
    let stderr = up_fails(&["--from", truncated.to_str().unwrap()]);
    assert!(
        stderr.contains("component `truncated` is not a valid component"),
        "{stderr}"
    );
}

#[test]
fn compiled_code_is_cached_and_reused() {
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap();
    let wisp = Wisp::up(&["--from", programs::HELLO, "--cache-dir", cache_arg]);
    assert_eq!(wisp.get("/").status, 200);
    drop(wisp);
    let mut entries: Vec<_> = std::fs::read_dir(cache.path().join("components"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    // The compiled code, and its checksum beside it.
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries[0].to_string_lossy().ends_with(".cwasm"),
        "{entries:?}"
    );
    assert_eq!(
        entries[1].to_string_lossy(),
        format!("{}.sum", entries[0].display())
    );
    let written = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();
    let wisp = Wisp::up(&["--from", programs::HELLO, "--cache-dir", cache_arg]);
    assert_eq!(wisp.get("/").status, 200);
    // A hit does not rewrite the entry.
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        written
    );
}

/// A compile cache on a `noexec` mount (as `/tmp` often is) cannot have its code mapped
/// executable: entries are then loaded by copy, not discarded and recompiled at every start.
#[test]
fn a_cache_on_a_noexec_mount_is_still_used() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test mounts a noexec tmpfs and must run as root"
    );
    struct Mounted(tempfile::TempDir);
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }
    let mount = Mounted(tempfile::tempdir().unwrap());
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=64m", "wisp-noexec-cache"])
        .arg(mount.0.path())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mount -t tmpfs -o noexec failed: {status}"
    );
    let cache_arg = mount.0.path().to_str().unwrap();
    let wisp = Wisp::up(&["--from", programs::HELLO, "--cache-dir", cache_arg]);
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    assert!(
        wisp.stderr().contains("compiling component"),
        "{}",
        wisp.stderr()
    );
    drop(wisp);
    let wisp = Wisp::up(&["--from", programs::HELLO, "--cache-dir", cache_arg]);
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    let stderr = wisp.stderr();
    assert!(!stderr.contains("compiling component"), "{stderr}");
    assert!(!stderr.contains("discarding"), "{stderr}");
}

/// `wasm` with a custom section appended so that it is exactly `size` bytes long.
fn padded_to(wasm: &[u8], size: usize) -> Vec<u8> {
    // Section id, the contents' length as a five-byte LEB128 (over-long encodings are
    // valid up to five bytes, so its width is fixed), the name "pad", then the padding.
    let contents = size - wasm.len() - 1 - 5;
    let mut out = wasm.to_vec();
    out.push(0);
    for shift in (0..28).step_by(7) {
        out.push(((contents >> shift) & 0x7f) as u8 | 0x80);
    }
    out.push((contents >> 28) as u8);
    out.extend_from_slice(&[3, b'p', b'a', b'd']);
    out.resize(size, 0);
    out
}

/// A warm start takes a settled source's digest from the cache instead of reading it; a
/// source rewritten in place with other contents of the same size, its modification time
/// put back, is still read again (its change time moved) and its new code served.
#[test]
fn a_rewritten_source_is_served_after_a_warm_start() {
    let hello = std::fs::read(programs::HELLO).unwrap();
    let echo = std::fs::read(programs::ECHO).unwrap();
    let size = hello.len().max(echo.len()) + 64;
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("app.wasm");
    let source_arg = source.to_str().unwrap();
    std::fs::write(&source, padded_to(&hello, size)).unwrap();
    let modified = std::fs::metadata(&source).unwrap().modified().unwrap();
    // Only a file unchanged for two seconds before it is read has its digest kept.
    std::thread::sleep(Duration::from_millis(2100));
    let wisp = Wisp::up(&["--from", source_arg, "--cache-dir", cache_arg]);
    assert_eq!(
        wisp.get("/").text(),
        "Hello from Wisp\n",
        "{}",
        wisp.stderr()
    );
    drop(wisp);
    let records = std::fs::read_dir(cache.path().join("digests"))
        .unwrap()
        .count();
    assert_eq!(records, 1);

    // Served from the remembered digest and the cached code.
    let wisp = Wisp::up(&["--from", source_arg, "--cache-dir", cache_arg]);
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    drop(wisp);

    // Rewritten in place: same size, same modification time, another component.
    std::fs::write(&source, padded_to(&echo, size)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&source)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let metadata = std::fs::metadata(&source).unwrap();
    assert_eq!(
        (metadata.len(), metadata.modified().unwrap()),
        (size as u64, modified)
    );
    let wisp = Wisp::up(&["--from", source_arg, "--cache-dir", cache_arg]);
    let response = wisp.get("/again");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert!(
        response.text().starts_with("GET /again"),
        "{}",
        response.text()
    );
}

#[test]
fn example_hello_app_runs() {
    let example = support::build_example("hello");
    let wisp = Wisp::up(&["-f", example.join("spin.toml").to_str().unwrap()]);
    let response = wisp.get("/hello");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello from Wisp\n");
}

#[test]
fn falls_back_to_on_demand_allocation_when_address_space_is_short() {
    // 64 GiB of address space: far less than the instance pool reserves, plenty for
    // on-demand allocation of a few instances.
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        "ulimit -v 67108864 && exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_wisp"),
        "up",
        "--from",
        programs::HELLO,
    ]);
    let wisp = Wisp::spawn(command).unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"));
    assert!(
        wisp.stderr().contains("pooling allocator unavailable"),
        "{}",
        wisp.stderr()
    );
    assert!(
        wisp.stderr().contains("Engine: on-demand allocator"),
        "{}",
        wisp.stderr()
    );
    for _ in 0..3 {
        assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    }
}

#[test]
fn core_module_is_componentized_at_load() {
    let wasm = std::fs::read(programs::HELLO_WASIP1).unwrap();
    assert_eq!(&wasm[4..8], &[1, 0, 0, 0], "expected a core module");
    let wisp = Wisp::up(&["--from", programs::HELLO_WASIP1]);
    let response = wisp.get("/core");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert_eq!(response.text(), "Hello from Wisp\n");
}

/// `python3 -m http.server` serving `dir` on a free loopback port; killed on drop.
struct FileServer {
    child: std::process::Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &std::path::Path) -> FileServer {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        FileServer { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn url_sources_are_downloaded_once_verified_and_cached() {
    let served = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(programs::HELLO).unwrap();
    std::fs::write(served.path().join("hello.wasm"), &wasm).unwrap();
    let digest = wisp_app::sha256_digest(&wasm);
    let server = FileServer::start(served.path());
    let port = server.port;
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let source = |url: &str, digest: &str| {
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"remote\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n[component.hello]\nsource = {{ url = \"{url}\", digest = \"{digest}\" }}\n"
        )
    };
    let url = format!("http://127.0.0.1:{port}/hello.wasm");
    let good = app_dir(&source(&url, &digest));
    let good_manifest = good.path().join("spin.toml");
    let up = |manifest: &std::path::Path| {
        Wisp::try_up(&[
            "-f",
            manifest.to_str().unwrap(),
            "--oci-cache-dir",
            cache_dir,
        ])
    };

    let wisp = up(&good_manifest).unwrap_or_else(|(_, stderr)| panic!("{stderr}"));
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    drop(wisp);

    // Where the system has no CA certificates (a container image without a CA bundle,
    // here an empty bundle), URL sources still download: the bundled roots stand in.
    let no_roots = tempfile::tempdir().unwrap();
    let empty_bundle = no_roots.path().join("empty.pem");
    std::fs::write(&empty_bundle, "").unwrap();
    let without_system_roots = |command: &mut std::process::Command| {
        command
            .env("SSL_CERT_FILE", &empty_bundle)
            .env("SSL_CERT_DIR", no_roots.path());
    };
    let other_cache = tempfile::tempdir().unwrap();
    let mut command = support::wisp_command();
    command.args([
        "up",
        "-f",
        good_manifest.to_str().unwrap(),
        "--oci-cache-dir",
        other_cache.path().to_str().unwrap(),
    ]);
    without_system_roots(&mut command);
    let wisp = Wisp::spawn(command).unwrap_or_else(|(_, stderr)| panic!("{stderr}"));
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    drop(wisp);
    // Registry access needs the system's roots (a private registry's CA lives there): a
    // clear refusal saying how to fix it, not a panic.
    let mut command = support::wisp_command();
    command.args(["up", "--from", &format!("127.0.0.1:{port}/app:v1")]);
    without_system_roots(&mut command);
    let (status, stderr) = Wisp::spawn(command).err().expect("refused");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot set up a registry client")
            && stderr.contains("install the ca-certificates package, or set SSL_CERT_FILE")
            && !stderr.contains("panicked"),
        "{stderr}"
    );

    // A digest that does not match what the URL serves: refused, nothing cached.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = app_dir(&source(&url, &wrong));
    let (status, stderr) = up(&bad.path().join("spin.toml")).err().expect("refused");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("component `hello`: cannot use its url source")
            && stderr.contains(&format!(
                "hashes to {digest}, not to the manifest's digest {wrong}"
            )),
        "{stderr}"
    );
    let cached = std::fs::read_dir(cache.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(cached, [digest.trim_start_matches("sha256:")], "{cached:?}");

    // A missing file: the server's status is in the error.
    let missing = app_dir(&source(
        &format!("http://127.0.0.1:{port}/nope.wasm"),
        &format!("sha256:{}", "1".repeat(64)),
    ));
    let (_, stderr) = up(&missing.path().join("spin.toml"))
        .err()
        .expect("refused");
    assert!(
        stderr.contains(&format!(
            "cannot download http://127.0.0.1:{port}/nope.wasm: the server answered 404"
        )),
        "{stderr}"
    );

    // Once cached, the server is no longer needed; an uncached source now cannot be fetched.
    drop(server);
    let wisp = up(&good_manifest).unwrap_or_else(|(_, stderr)| panic!("{stderr}"));
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    drop(wisp);
    let (_, stderr) = up(&missing.path().join("spin.toml"))
        .err()
        .expect("refused");
    assert!(
        stderr.contains(&format!(
            "cannot download http://127.0.0.1:{port}/nope.wasm"
        )) && stderr.contains("check the URL and that the server is reachable"),
        "{stderr}"
    );
}

#[test]
fn spin_up_flags_env_component_id_quiet_follow() {
    // Two components: `sandbox` (reports its env) and `log` (writes to stdout and stderr).
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "flags"
[[trigger.http]]
route = "/sandbox"
component = "sandbox"
[[trigger.http]]
route = "/log"
component = "log"
[[trigger.http]]
route = "/gone"
static_response = {{ status_code = 410 }}
[component.sandbox]
source = {sandbox}
environment = {{ GREETING = "hi" }}
[component.log]
source = {log}
"#,
        sandbox = toml_path(programs::SANDBOX),
        log = toml_path(programs::STDIO_LOG)
    );
    let dir = app_dir(&manifest);
    let manifest = dir.path().join("spin.toml");
    let manifest = manifest.to_str().unwrap();

    // `-e` overrides the manifest's value and adds a variable; `-c` keeps one component
    // (and the static route); `-q` drops guest output.
    let wisp = Wisp::up(&[
        "-f",
        manifest,
        "-e",
        "GREETING=hello=there",
        "--env",
        "EXTRA=1",
        "-c",
        "sandbox",
        "-q",
    ]);
    let text = wisp.get("/sandbox").text();
    assert!(text.contains("env GREETING=hello=there\n"), "{text}");
    assert!(text.contains("env count=2\n"), "{text}");
    assert_eq!(wisp.get("/log").status, 404, "log was not retained");
    assert_eq!(wisp.get("/gone").status, 410);
    drop(wisp);

    // `--follow log` shows log's lines; `-q` shows none.
    let wisp = Wisp::up(&["-f", manifest, "--follow", "log"]);
    assert_eq!(wisp.get("/log").text(), "logged\n");
    assert!(wisp.wait_for_output("[log] hello stderr"));
    drop(wisp);
    let wisp = Wisp::up(&["-f", manifest, "--quiet"]);
    assert_eq!(wisp.get("/log").text(), "logged\n");
    // The request's log line comes after the guest's output.
    assert!(wisp.wait_for_output("GET /log 200"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!wisp.stderr().contains("hello stderr"), "{}", wisp.stderr());
    assert!(!wisp.stdout().contains("hello stdout"), "{}", wisp.stdout());
    drop(wisp);

    // Unknown ids are refused, naming the app's components.
    for flag in ["-c", "--follow"] {
        let (status, stderr) = Wisp::try_up(&["-f", manifest, flag, "nope"])
            .err()
            .expect("refused");
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the app has no such component; it has sandbox, log"),
            "{stderr}"
        );
    }
}

#[test]
fn spin_up_f_takes_a_component_and_find_free_port_moves_on() {
    // `-f x.wasm` serves a bare component, as `spin up -f` does.
    let wisp = Wisp::up(&["-f", programs::HELLO]);
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    drop(wisp);

    // With the --listen port taken, `--find-free-port` listens on one of the next ones.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let (wisp, stderr) = spawn_with_stderr(&[
        "-f",
        programs::HELLO,
        "--find-free-port",
        "--listen",
        &listen,
    ]);
    // Keep reading stderr after the address: wisp logs each request there.
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("Listening on http://") {
                let _ = found.send(addr.to_owned());
            }
        }
    });
    let addr: std::net::SocketAddr = address
        .recv_timeout(Duration::from_secs(60))
        .expect("wisp listens")
        .parse()
        .unwrap();
    assert!(
        addr.port() > port && addr.port() <= port + 10,
        "{addr} after {port}"
    );
    let response = support::request(addr, "GET", "/", &[], b"");
    assert_eq!(response.text(), "Hello from Wisp\n");
    drop(wisp);
    drop(taken);
}

#[test]
fn max_instance_memory_is_spins_memory_cap_in_bytes() {
    // 3 MiB (and a byte, rounded up to the next 64 KiB page): the 4 MiB guest cannot grow.
    let wisp = Wisp::up(&[
        "--from",
        programs::TOUCH4MIB,
        "--max-instance-memory",
        "3145729",
    ]);
    assert_eq!(wisp.get("/").status, 500);
    assert!(
        wisp.wait_for_output("exceeded its memory limit of 3211264 bytes"),
        "{}",
        wisp.stderr()
    );
    drop(wisp);
    let wisp = Wisp::up(&[
        "--from",
        programs::TOUCH4MIB,
        "--max-instance-memory",
        "16777216",
    ]);
    assert_eq!(wisp.get("/").status, 200, "{}", wisp.stderr());
}

#[test]
fn a_closed_stderr_does_not_stop_the_server() {
    // A log reader that goes away (a collector restarting, `| head`) leaves wisp writing
    // into a closed pipe: requests keep being served and SIGTERM still exits cleanly.
    let (mut child, mut stderr) =
        spawn_with_stderr(&["--from", programs::HELLO, "--listen", "127.0.0.1:0"]);
    let addr: std::net::SocketAddr = std::io::BufRead::lines(&mut stderr)
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("Listening on http://").map(str::to_owned))
        .expect("wisp listens")
        .parse()
        .unwrap();
    drop(stderr);
    for _ in 0..3 {
        let response = support::request(addr, "GET", "/", &[], b"");
        assert_eq!(response.text(), "Hello from Wisp\n");
    }
    support::terminate(&child);
    let status = support::wait_timeout(&mut child, Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status}");
}

/// `wisp up <args>` with stderr piped and nothing else: the child and its stderr.
fn spawn_with_stderr(
    args: &[&str],
) -> (
    support::KillOnDrop,
    std::io::BufReader<std::process::ChildStderr>,
) {
    spawn_with_stderr_and_env(args, &[])
}

/// [`spawn_with_stderr`] with `env` set (and `WISP_LISTEN` unset).
fn spawn_with_stderr_and_env(
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    support::KillOnDrop,
    std::io::BufReader<std::process::ChildStderr>,
) {
    let mut child = support::wisp_command()
        .arg("up")
        .args(args)
        .env_remove("WISP_LISTEN")
        .envs(env.iter().copied())
        .env("WISP_CACHE_DIR", support::cache_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    (support::KillOnDrop(child), stderr)
}

/// A self-signed certificate for `localhost` and 127.0.0.1 with common name `name`:
/// `<dir>/<name>.pem` and `<dir>/<name>-key.pem`, made by the `openssl` command.
fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-days", "2", "-nodes", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(status.success());
    (cert, key)
}

/// `curl -sv --cacert <ca> <extra> <url>`: (exit status, body, verbose stderr).
fn curl(ca: &std::path::Path, extra: &[&str], url: &str) -> (bool, String, String) {
    let output = std::process::Command::new("curl")
        .args(["-sv", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tls_serves_https_and_http2_and_reloads_on_sighup() {
    let certs = tempfile::tempdir().unwrap();
    let (first, first_key) = self_signed(certs.path(), "first");
    let (second, second_key) = self_signed(certs.path(), "second");
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::copy(&first, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let manifest = format!(
        "spin_manifest_version = 2\n[application]\nname = \"tls\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"echo\"\n[[trigger.http]]\nroute = \"/loop\"\ncomponent = \"spin-loop\"\n[component.echo]\nsource = {}\n[component.spin-loop]\nsource = {}\n",
        toml_path(programs::ECHO),
        toml_path(programs::SPIN_LOOP)
    );
    let dir = app_dir(&manifest);
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--request-timeout",
        "3",
    ]);
    let port = wisp.addr.port();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    assert!(wisp.wait_for_output(&format!("Serving https://{}", wisp.addr)));

    // HTTPS, verified against the certificate; the guest's Spin headers say https.
    let (ok, body, verbose) = curl(&first, &["--http1.1"], &url("/x?y=1"));
    assert!(ok, "{verbose}");
    assert!(
        body.contains(&format!("spin-full-url: https://localhost:{port}/x?y=1")),
        "{body}"
    );
    // A WASI 0.2 guest reads https from incoming-request.scheme too.
    assert!(verbose.contains("< echo-scheme: https"), "{verbose}");
    assert!(verbose.contains("CN=first"), "{verbose}");
    // HTTP/2 by ALPN.
    let (ok, _, verbose) = curl(&first, &["--http2", "-o", "/dev/null"], &url("/x"));
    assert!(
        ok && verbose.contains("ALPN: server accepted h2"),
        "{verbose}"
    );
    // Plain HTTP on the TLS port is refused, not served.
    let (ok, _, _) = curl(&first, &[], &format!("http://127.0.0.1:{port}/x"));
    assert!(!ok);

    // A request in flight (a guest spinning until its 3 s deadline) while SIGHUP
    // swaps in the second certificate: it still gets its answer, and new connections
    // get the new certificate.
    let in_flight = {
        let first = first.clone();
        let url = url("/loop");
        std::thread::spawn(move || curl(&first, &["-o", "/dev/null", "-w", "%{http_code}"], &url))
    };
    std::thread::sleep(Duration::from_millis(500));
    std::fs::copy(&second, &cert).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    support::signal(wisp.pid(), "-HUP");
    assert!(wisp.wait_for_output("SIGHUP: reloaded the TLS certificate"));
    let (ok, _, verbose) = curl(&second, &["-o", "/dev/null"], &url("/x"));
    assert!(ok && verbose.contains("CN=second"), "{verbose}");
    let (ok, status, verbose) = in_flight.join().unwrap();
    assert!(ok, "{verbose}");
    assert_eq!(status, "504");

    // A bad file on reload: the previous certificate keeps serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    support::signal(wisp.pid(), "-HUP");
    assert!(wisp.wait_for_output("still serving the previous one"));
    let (ok, _, verbose) = curl(&second, &["-o", "/dev/null"], &url("/x"));
    assert!(ok, "{verbose}");
}

#[test]
fn log_dir_keeps_each_components_output_in_files() {
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("logs");
    // `-q` keeps the lines off wisp's streams; the files get them anyway, unprefixed.
    let wisp = Wisp::up(&[
        "--from",
        programs::STDIO_LOG,
        "-L",
        dir.to_str().unwrap(),
        "-q",
    ]);
    for _ in 0..2 {
        assert_eq!(wisp.get("/").text(), "logged\n");
    }
    assert!(wisp.wait_for_output("GET / 200"));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while read("stdio-log_stderr.txt").lines().count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read("stdio-log_stdout.txt"), "hello stdout\nhello stdout\n");
    assert_eq!(read("stdio-log_stderr.txt"), "hello stderr\nhello stderr\n");
    assert!(!wisp.stderr().contains("hello stderr"), "{}", wisp.stderr());
}

#[test]
fn spin_http_listen_addr_is_honoured_without_listen() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let (_wisp, stderr) = spawn_with_stderr_and_env(
        &["--from", programs::HELLO],
        &[("SPIN_HTTP_LISTEN_ADDR", &address)],
    );
    let listening = std::io::BufRead::lines(stderr)
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("Listening on http://").map(str::to_owned))
        .expect("wisp listens");
    assert_eq!(listening, address);
}

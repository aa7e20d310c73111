//! End-to-end tests of the developer commands: `wisp build`, `wisp up --build` and
//! `wisp completions`.

mod support;

use std::process::Command;

use support::{Wisp, app_dir, toml_path};
use wisp_test_programs as programs;

fn wisp(args: &[&str]) -> std::process::Output {
    support::run_wisp(args, None)
}

const TWO_COMPONENTS: &str = r#"spin_manifest_version = 2
[application]
name = "built"

[[trigger.http]]
route = "/a"
component = "a"

[[trigger.http]]
route = "/b"
component = "b"

[component.a]
source = "sub/out/a.wasm"
[component.a.build]
command = ["echo one", "mkdir -p out && echo built > out/a.txt", "echo two >&2"]
workdir = "sub"

[component.b]
source = "b.wasm"
"#;

#[test]
fn build_runs_each_command_in_the_workdir_with_prefixed_output() {
    let dir = app_dir(TWO_COMPONENTS);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let output = wisp(&["build", "-f", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("[a] one\n"), "{stdout}");
    assert!(stderr.contains("[a] two\n"), "{stderr}");
    assert!(stderr.contains("b: no build command, skipped"), "{stderr}");
    assert!(stderr.contains("Built 1 component."), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/out/a.txt")).unwrap(),
        "built\n"
    );
}

#[test]
fn build_names_the_component_and_command_that_failed() {
    let dir = app_dir(&TWO_COMPONENTS.replace(
        r#"command = ["echo one", "mkdir -p out && echo built > out/a.txt", "echo two >&2"]"#,
        r#"command = ["echo oops >&2; exit 3", "echo never"]"#,
    ));
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let output = wisp(&["build", "-f", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[a] oops"), "{stderr}");
    assert!(
        stderr.contains(
            "component `a`: build command `echo oops >&2; exit 3` failed with exit code 3"
        ),
        "{stderr}"
    );
    assert!(
        !stdout.contains("never"),
        "stops at the first failure: {stdout}"
    );

    let output = wisp(&["build", "-f", dir.path().to_str().unwrap(), "-c", "nope"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the app has no component `nope`; its components are `a`, `b`"),
        "{stderr}"
    );
    let output = wisp(&["build", "-f", dir.path().to_str().unwrap(), "-c", "b"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("component `b` has no [component.b.build] table"),
        "{stderr}"
    );
}

#[test]
fn up_build_builds_then_serves() {
    // The build produces the component the manifest names; without --build it is missing.
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "up-build"

[[trigger.http]]
route = "/hello"
component = "hello"

[component.hello]
source = "out/hello.wasm"
[component.hello.build]
command = "mkdir -p out && cp {hello} out/hello.wasm"
"#,
        hello = toml_path(programs::HELLO).trim_matches('"')
    );
    let dir = app_dir(&manifest);
    let manifest_path = dir.path().join("spin.toml");
    let mut command = support::wisp_command();
    command.arg("up").arg("-f").arg(&manifest_path);
    let missing = Wisp::spawn(command)
        .err()
        .expect("no component before building");
    assert!(missing.1.contains("out/hello.wasm"), "{}", missing.1);

    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("--build")
        .arg("-f")
        .arg(&manifest_path);
    let wisp = Wisp::spawn(command).unwrap_or_else(|(status, stderr)| {
        panic!("wisp up --build exited with {status}:\n{stderr}")
    });
    let response = wisp.get("/hello");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    assert!(
        wisp.stderr().contains("hello: running `mkdir -p out"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn completions_cover_every_command() {
    let output = wisp(&["completions", "bash"]);
    assert!(output.status.success());
    let script = String::from_utf8_lossy(&output.stdout);
    for word in [
        "up",
        "build",
        "registry",
        "kube",
        "scaffold",
        "completions",
        "--runtime-config-file",
    ] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let output = wisp(&["completions", "fish"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("complete -c wisp"));
    let output = wisp(&["completions", "tcsh"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn kube_scaffold_checks_the_runtime_config_and_writes_a_private_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://cache:6379\"\n",
    )
    .unwrap();
    let out = dir.path().join("shop.yaml");
    let config_arg = config.to_str().unwrap();
    let output = wisp(&[
        "kube",
        "scaffold",
        "--from",
        "localhost:5000/shop:v3",
        "--variable",
        "currency=EUR",
        "--runtime-config-file",
        config_arg,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stdout.is_empty(),
        "the manifests go to the file only"
    );
    // The runtime config may hold credentials: the file is the owner's alone.
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let yaml = std::fs::read_to_string(&out).unwrap();
    for expected in [
        "kind: SpinApp",
        "executor: wisp",
        "loadFromSecret: shop-runtime-config",
        "kind: Secret",
        "- name: currency\n    value: EUR",
    ] {
        assert!(yaml.contains(expected), "{expected} missing from:\n{yaml}");
    }

    // A runtime config `wisp up` would refuse is refused here, by file and line.
    std::fs::write(
        &config,
        "[key_value_store.default]\ntype = \"redis\"\nurll = \"x\"\n",
    )
    .unwrap();
    let output = wisp(&[
        "kube",
        "scaffold",
        "--from",
        "localhost:5000/shop:v3",
        "-c",
        config_arg,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("runtime-config.toml: line 3: unknown field `urll`"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = wisp(&[
        "kube",
        "scaffold",
        "--from",
        "localhost:5000/shop:v3",
        "--plain",
        "--executor",
        "x",
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "--executor is for a SpinApp only"
    );
    let output = wisp(&[
        "kube",
        "scaffold",
        "--from",
        "localhost:5000/shop:v3",
        "-v",
        "currency",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("write it as `--variable name=value`")
    );
}

/// Counts of what a load loop saw.
#[derive(Default)]
struct LoadCounts {
    ok_old: usize,
    ok_new: usize,
    failed: Vec<String>,
}

/// A manifest whose one component `app` is "built" by `build_command`, which reads the
/// watched file `which.txt` (naming the component to copy into `out/app.wasm`).
fn watched_manifest(build_command: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "watched"

[[trigger.http]]
route = "/..."
component = "app"

[component.app]
source = "out/app.wasm"
[component.app.build]
command = {build_command:?}
watch = ["which.txt"]
"#
    )
}

/// The app of [`watched_manifest`] with `which.txt` naming `first`, under `wisp watch`
/// polling every 50 ms (human output).
fn start_watch(build_command: &str, first: &str) -> (tempfile::TempDir, Wisp) {
    let dir = app_dir(&watched_manifest(build_command));
    std::fs::write(dir.path().join("which.txt"), first).unwrap();
    let mut command = support::wisp_command();
    command
        .arg("watch")
        .arg("-f")
        .arg(dir.path().join("spin.toml"))
        .args(["--poll-ms", "50"]);
    let wisp = Wisp::spawn(command)
        .unwrap_or_else(|(status, stderr)| panic!("wisp watch exited with {status}:\n{stderr}"));
    (dir, wisp)
}

/// As `wisp up` and `wisp node` do, a stopping `wisp watch` lets the optimised code its
/// app started without finish, so the next start finds it in the compile cache.
#[test]
fn a_stopping_watch_finishes_the_optimised_code() {
    let cache = tempfile::tempdir().unwrap();
    let dir = app_dir(&watched_manifest(
        "mkdir -p out && cp \"$(cat which.txt)\" out/app.wasm",
    ));
    std::fs::write(dir.path().join("which.txt"), programs::HELLO).unwrap();
    let watch = |baseline: &str| {
        let mut command = support::wisp_command();
        command
            .arg("watch")
            .arg("-f")
            .arg(dir.path().join("spin.toml"))
            .env("WISP_CACHE_DIR", cache.path())
            .env("WISP_BASELINE_COMPILE", baseline);
        Wisp::spawn(command)
            .unwrap_or_else(|(status, stderr)| panic!("wisp watch exited with {status}:\n{stderr}"))
    };
    // Stopped as soon as it listens, while the optimised code may still compile.
    let stderr = watch("always").stop_cleanly();
    assert!(
        stderr.contains("serves from baseline code"),
        "the app did not start on baseline code:\n{stderr}"
    );
    assert!(
        stderr.contains("cached for later starts")
            && !stderr.contains("stopped before the optimised code was cached"),
        "the optimised code was not cached before watch stopped:\n{stderr}"
    );
    // The next start loads it.
    let wisp = watch("always");
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");
    let stderr = wisp.stop_cleanly();
    assert!(
        !stderr.contains("serves from baseline code"),
        "the second start compiled the component again:\n{stderr}"
    );
}

#[test]
fn watch_rebuilds_and_reloads_in_place_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    // The build copies whichever component `which.txt` names; `which.txt` is watched.
    let build = "mkdir -p out && cp \"$(cat which.txt)\" out/app.wasm";
    let manifest = watched_manifest(build);
    let (dir, wisp) = start_watch(build, programs::HELLO);
    let which = dir.path().join("which.txt");
    assert_eq!(wisp.get("/x").text(), "Hello from Wisp\n");

    // Four clients, each opening a new connection per request, for the whole swap.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new(LoadCounts::default()));
    let addr = wisp.addr;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let counts = counts.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let response = support::try_request(addr, "GET", "/load", &[], b"");
                    let mut counts = counts.lock().unwrap();
                    match response {
                        Ok(r) if r.status == 200 && r.text() == "Hello from Wisp\n" => {
                            counts.ok_old += 1
                        }
                        Ok(r)
                            if r.status == 200 && r.text().starts_with("Hello from spin-sdk 5") =>
                        {
                            counts.ok_new += 1
                        }
                        Ok(r) => counts.failed.push(format!("{} {:?}", r.status, r.text())),
                        Err(e) => counts.failed.push(e),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&which, programs::SPIN_SDK_V5).unwrap();
    let start = Instant::now();
    while counts.lock().unwrap().ok_new < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no reload within 60 s\n{}",
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let counts = counts.lock().unwrap();
    println!(
        "watch reload under load: {} answered by the old version, {} by the new, {} failed",
        counts.ok_old,
        counts.ok_new,
        counts.failed.len()
    );
    assert!(counts.ok_old > 0, "served the old version under load first");
    assert!(
        counts.failed.is_empty(),
        "{} failed requests during the reload, e.g. {:?}\n{}",
        counts.failed.len(),
        counts.failed.first(),
        wisp.stderr()
    );
    assert!(
        wisp.stderr().contains("rebuilding app"),
        "{}",
        wisp.stderr()
    );
    assert!(wisp.stderr().contains("Reloaded in"), "{}", wisp.stderr());

    // A broken build keeps the last good version serving.
    std::fs::write(&which, "/nonexistent/component.wasm").unwrap();
    assert!(
        wisp.wait_for_output("Still serving the last good version"),
        "{}",
        wisp.stderr()
    );
    assert!(
        wisp.stderr().contains("the build failed"),
        "{}",
        wisp.stderr()
    );
    assert!(
        wisp.get("/after")
            .text()
            .starts_with("Hello from spin-sdk 5")
    );

    // So does a manifest that no longer parses; fixing it reloads again.
    let manifest_path = dir.path().join("spin.toml");
    std::fs::write(&manifest_path, format!("{manifest}\n[oops\n")).unwrap();
    let start = Instant::now();
    while wisp
        .stderr()
        .matches("Still serving the last good version")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wisp.get("/after")
            .text()
            .starts_with("Hello from spin-sdk 5")
    );
    std::fs::write(&which, programs::HELLO).unwrap();
    std::fs::write(&manifest_path, manifest).unwrap();
    let start = Instant::now();
    while wisp.get("/back").text() != "Hello from Wisp\n" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A save made while a rebuild runs is not lost: the build read the old content, so the
/// watch rebuilds once more and ends up serving what is on disk.
#[test]
fn watch_rebuilds_again_for_a_save_made_during_the_build() {
    use std::time::{Duration, Instant};

    let (dir, wisp) = start_watch(
        "src=\"$(cat which.txt)\" && echo \"building from $src\" && sleep 1 && mkdir -p out && cp \"$src\" out/app.wasm",
        programs::HELLO,
    );
    let which = dir.path().join("which.txt");
    assert_eq!(wisp.get("/").text(), "Hello from Wisp\n");

    std::fs::write(&which, programs::SPIN_SDK_V5).unwrap();
    let reading_v5 = format!("[app] building from {}", programs::SPIN_SDK_V5);
    assert!(wisp.wait_for_output(&reading_v5), "{}", wisp.stderr());
    // The build has read which.txt and is sleeping: change it back now.
    std::fs::write(&which, programs::HELLO).unwrap();
    let start = Instant::now();
    while wisp.stderr().matches("Reloaded in").count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no second round for the save made during the build:\n{}",
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        wisp.get("/").text(),
        "Hello from Wisp\n",
        "{}",
        wisp.stderr()
    );
    // And it settles: no third round without a change.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        wisp.stderr().matches("Reloaded in").count(),
        2,
        "{}",
        wisp.stderr()
    );
}

#[test]
fn doctor_reports_each_problem_with_a_fix() {
    // A healthy app: the component compiles, links and exports what its trigger calls.
    let healthy = app_dir(&support::manifest_one("/...", "web", programs::HELLO, ""));
    let free_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = free_port.local_addr().unwrap().to_string();
    let output = wisp(&[
        "doctor",
        "-f",
        healthy.path().to_str().unwrap(),
        "--listen",
        &busy,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("ok    component web: compiles and links against every interface it imports"),
        "{stderr}"
    );
    // The port is taken (by this test): a warning with the fix, not an error.
    assert!(
        stderr.contains(&format!("warn  port: cannot listen on {busy}")),
        "{stderr}"
    );
    assert!(stderr.contains("fix: stop what uses it, or run wisp up --listen 127.0.0.1:0"));
    drop(free_port);

    // An unknown import, a trigger the component cannot serve, a missing build tool.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("unknown.wasm"),
        wat::parse_str(
            r#"(component (import "example:unknown/api@1.0.0" (instance (export "get" (func)))))"#,
        )
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            r#"spin_manifest_version = 2
[application]
name = "sick"

[[trigger.http]]
route = "/a"
component = "unknown"

[[trigger.cron]]
component = "web"
cron_expression = "0 * * * * *"

[component.unknown]
source = "unknown.wasm"

[component.web]
source = {hello}

[component.tool]
source = "tool.wasm"
[component.tool.build]
command = "no-such-compiler-xyz build"
"#,
            hello = toml_path(programs::HELLO)
        ),
    )
    .unwrap();
    let output = wisp(&["doctor", "-f", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let findings: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let find = |subject: &str, needle: &str| {
        findings
            .iter()
            .find(|f| f["subject"] == subject && f["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no {subject} finding with {needle:?} in {findings:#?}"))
    };
    let unknown = find("component unknown", "example:unknown/api@1.0.0");
    assert_eq!(unknown["level"], "error");
    assert!(
        unknown["fix"]
            .as_str()
            .unwrap()
            .contains("interfaces Wisp provides")
    );
    let cron = find(
        "component web",
        "does not export what its cron trigger calls",
    );
    assert_eq!(cron["level"], "error");
    let tool = find("component tool", "needs `no-such-compiler-xyz`");
    assert_eq!(tool["level"], "error");
    assert!(find("component tool", "cannot read")["fix"] == "run wisp build -c tool");
    assert_eq!(find("manifest", "valid manifest")["level"], "ok");

    // A manifest error stops there, with the file and line.
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\n",
    )
    .unwrap();
    let output = wisp(&["doctor", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error manifest:") && stderr.contains("spin.toml"),
        "{stderr}"
    );
}

/// Spawns wisp with `args` (which ask for `--json`), its stderr lines arriving on the
/// returned channel.
fn spawn_json_lines(
    args: &[&str],
    manifest: &std::path::Path,
) -> (support::KillOnDrop, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = support::KillOnDrop(
        support::wisp_command()
            .args(args)
            .args(["--listen", "127.0.0.1:0", "-f"])
            .arg(manifest)
            .env("WISP_CACHE_DIR", support::cache_dir())
            .env_remove("WISP_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    (child, lines)
}

#[test]
fn up_json_logs_lifecycle_and_requests_as_json_lines() {
    use std::time::{Duration, Instant};

    let dir = app_dir(&support::manifest_one("/hello", "web", programs::HELLO, ""));
    let (mut child, lines) = spawn_json_lines(&["up", "--json"], &dir.path().join("spin.toml"));
    let mut events: Vec<serde_json::Value> = Vec::new();
    let next = |events: &mut Vec<serde_json::Value>| {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("wisp up --json writes lines");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        events.push(event.clone());
        event
    };
    let address = loop {
        let event = next(&mut events);
        if event["event"] == "listening" {
            break event["address"].as_str().unwrap().to_owned();
        }
    };
    assert!(events.iter().any(|e| {
        e["event"] == "component"
            && e["component"] == "web"
            && e["exports"]
                .as_str()
                .unwrap()
                .contains("wasi:http/incoming-handler")
    }));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "route" && e["route"] == "/hello")
    );
    let response = support::request(address.parse().unwrap(), "GET", "/hello", &[], b"");
    assert_eq!(response.status, 200);
    let start = Instant::now();
    let request = loop {
        let event = next(&mut events);
        if event["target"] == "wisp::request" {
            break event;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    };
    assert_eq!(request["method"], "GET");
    assert_eq!(request["path"], "/hello");
    assert_eq!(request["status"], 200);
    assert_eq!(request["component"], "web");
    assert!(request["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        request["message"]
            .as_str()
            .unwrap()
            .starts_with("GET /hello 200 "),
        "{request}"
    );
    support::terminate(&child);
    let stopped = loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
            // Say how it ended: an exit without the event is the failure to explain.
            let status = support::wait_timeout(&mut child, Duration::from_secs(5));
            panic!(
                "wisp up --json ended without a `stopped` event (exit: {status:?}); its events:\n{}",
                events
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        };
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        events.push(event.clone());
        if event["event"] == "stopped" {
            break event;
        }
    };
    assert_eq!(stopped["level"], "INFO");
    let _ = child.wait();
}

/// `wisp watch --json`: every line on stderr is one JSON object, the build's own output
/// included, and each reload (or failed reload) is an event.
#[test]
fn watch_json_reports_builds_and_reloads_as_events() {
    use std::time::Duration;

    let manifest = watched_manifest(
        "echo copying $(cat which.txt) && mkdir -p out && cp \"$(cat which.txt)\" out/app.wasm",
    );
    let dir = app_dir(&manifest);
    let which = dir.path().join("which.txt");
    std::fs::write(&which, programs::HELLO).unwrap();
    let (mut child, lines) = spawn_json_lines(
        &["watch", "--json", "--poll-ms", "50"],
        &dir.path().join("spin.toml"),
    );
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut wait_for = |name: &str| -> serde_json::Value {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {name:?} event; saw {seen:#?}"));
            let event: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            seen.push(event.clone());
            if event["event"] == name {
                return event;
            }
        }
    };
    let output = wait_for("build_output");
    assert_eq!(output["component"], "app");
    assert_eq!(output["stream"], "stdout");
    assert!(
        output["message"].as_str().unwrap().starts_with("copying "),
        "{output}"
    );
    let built = wait_for("built");
    assert_eq!(built["components"], 1);
    let address: std::net::SocketAddr = wait_for("listening")["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_for("watching");
    assert_eq!(
        support::request(address, "GET", "/", &[], b"").text(),
        "Hello from Wisp\n"
    );

    std::fs::write(&which, programs::SPIN_SDK_V5).unwrap();
    let changed = wait_for("changed");
    assert_eq!(changed["rebuild"], "app");
    assert_eq!(changed["files"], "which.txt");
    let reloaded = wait_for("reloaded");
    assert!(reloaded["elapsed_ms"].as_u64().is_some(), "{reloaded}");
    assert!(
        support::request(address, "GET", "/", &[], b"")
            .text()
            .starts_with("Hello from spin-sdk 5")
    );

    std::fs::write(&which, "/nonexistent/component.wasm").unwrap();
    let failed = wait_for("reload_failed");
    assert_eq!(failed["level"], "ERROR");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("build command `echo copying"),
        "{failed}"
    );
    assert!(
        support::request(address, "GET", "/", &[], b"")
            .text()
            .starts_with("Hello from spin-sdk 5"),
        "the last good version still serves"
    );
    support::terminate(&child);
    wait_for("stopped");
    let _ = child.wait();
}

/// On a terminal (a pty from util-linux `script`), `wisp up` shows a spinner while a
/// component not yet in the compile cache is compiled; piped, it never writes one.
#[test]
fn loading_spinner_only_on_a_terminal() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = app_dir(&support::manifest_one(
        "/...",
        "web",
        programs::SPIN_SDK_V5,
        "",
    ));
    let cache = tempfile::tempdir().unwrap();
    let inner = format!(
        "exec {} up --listen 127.0.0.1:0 -f {}",
        env!("CARGO_BIN_EXE_wisp"),
        dir.path().join("spin.toml").display()
    );
    let mut child = support::KillOnDrop(
        Command::new("script")
            .args(["-q", "-e", "-c", &inner, "/dev/null"])
            .env("WISP_CACHE_DIR", cache.path())
            .env("TERM", "xterm")
            .env_remove("WISP_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run `script` (util-linux bsdutils)"),
    );
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let start = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("Listening on") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            String::from_utf8_lossy(&seen)
        );
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(chunk);
        }
    }
    support::terminate(&child);
    let _ = child.wait();
    let shown = String::from_utf8_lossy(&seen);
    assert!(
        shown.contains("loading 1 component (compiling any not in the cache)"),
        "{shown}"
    );
    assert!(shown.contains("compiling component `web`"), "{shown}");
    // Log lines are written around the spinner, never on its line.
    assert!(
        !shown
            .split(['\r', '\n'])
            .any(|segment| segment.contains("loading 1 component")
                && segment.contains("compiling component")),
        "{shown:?}"
    );

    // Piped: the same start from a fresh cache prints the compile lines, no spinner.
    let cache = tempfile::tempdir().unwrap();
    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"))
        .env("WISP_CACHE_DIR", cache.path());
    let wisp = Wisp::spawn(command).unwrap();
    assert!(wisp.stderr().contains("compiling component `web`"));
    assert!(
        !wisp.stderr().contains("loading 1 component"),
        "{}",
        wisp.stderr()
    );
}

/// A component whose build workdir is a Go module needs Go 1.25+ and wasm-tools;
/// doctor says which is missing, and is content once both are on the PATH.
#[test]
fn doctor_checks_the_go_toolchain_of_a_go_component() {
    let manifest = format!(
        "{}[component.web.build]\ncommand = \"bash build.sh\"\n",
        support::manifest_one("/...", "web", programs::HELLO, "")
    );
    let dir = app_dir(&manifest);
    std::fs::write(
        dir.path().join("go.mod"),
        "module wit_component\n\ngo 1.25\n",
    )
    .unwrap();
    let doctor = |path: &str| {
        support::wisp_command()
            .args(["doctor", "--listen", "127.0.0.1:0", "-f"])
            .arg(dir.path())
            .env("PATH", path)
            .output()
            .unwrap()
    };
    // An empty PATH on any machine (a Debian golang-go 1.19 would read "too old").
    let bare = doctor(&dir.path().join("no-tools").display().to_string());
    let report = String::from_utf8_lossy(&bare.stderr);
    assert_eq!(bare.status.code(), Some(1), "{report}");
    assert!(
        report.contains("the component is a Go module, and `go` is not on the PATH"),
        "{report}"
    );
    assert!(report.contains("scripts/install-go.sh"), "{report}");
    assert!(
        report.contains("`wasm-tools`, which is not on the PATH"),
        "{report}"
    );

    let tools = support::go_tools_bin();
    let equipped = doctor(&format!("{}:/usr/bin:/bin", tools.display()));
    let report = String::from_utf8_lossy(&equipped.stderr);
    assert!(equipped.status.success(), "{report}");
    assert!(report.contains("builds wasip1 components"), "{report}");
    assert!(
        report.contains("build tool `wasm-tools` is installed"),
        "{report}"
    );

    // A TinyGo build (Spin's Go SDK) is not held to Go 1.25 and wasm-tools.
    let tinygo = format!(
        "{}[component.web.build]\ncommand = \"tinygo build -target=wasip2 -o main.wasm main.go\"\n",
        support::manifest_one("/...", "web", programs::HELLO, "")
    );
    std::fs::write(dir.path().join("spin.toml"), tinygo).unwrap();
    let output = doctor(&dir.path().join("no-tools").display().to_string());
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(!report.contains("Go module"), "{report}");
    assert!(!report.contains("wasm-tools"), "{report}");
    assert!(report.contains("needs `tinygo`"), "{report}");
    assert!(report.contains("https://tinygo.org"), "{report}");
}

/// `--json` output of the commands whose output is deterministic, compared with
/// `tests/snapshots/json-*.txt` (`WISP_BLESS=1` rewrites them): the template list,
/// `wisp new`, `wisp add` and `wisp doctor` on the result. Temporary paths read `<dir>`.
#[test]
fn json_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = support::wisp_command()
            .args(args)
            .current_dir(dir.path())
            .env_remove("WISP_MANIFEST")
            // No build tools at all, on any machine: doctor's findings stay the same.
            .env("PATH", dir.path().join("no-tools"))
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout)
            .unwrap()
            .replace(&dir.path().display().to_string(), "<dir>");
        // stderr too is JSON lines: a failure is a `failed` event.
        let stderr = String::from_utf8(output.stderr).unwrap();
        for line in text.lines().chain(stderr.lines()) {
            let _: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: not a JSON line ({e}): {line}"));
        }
        if output.status.code() != Some(0) {
            assert!(stderr.contains(r#""event":"failed""#), "{args:?}: {stderr}");
        }
        (output.status.code(), text)
    };
    let cases = [
        ("new-list", run(&["new", "--list", "--json"])),
        ("new", run(&["new", "http-empty", "shop", "--json"])),
        (
            "add",
            run(&[
                "add",
                "http-rust",
                "api",
                "-f",
                "shop",
                "--value",
                "http-path=/api/...",
                "--json",
            ]),
        ),
        (
            "doctor",
            run(&["doctor", "-f", "shop", "--listen", "127.0.0.1:0", "--json"]),
        ),
    ];
    let snapshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let bless = std::env::var_os("WISP_BLESS").is_some();
    let mut mismatches = Vec::new();
    for (name, (status, text)) in cases {
        let expected_status = if name == "doctor" { 1 } else { 0 };
        assert_eq!(status, Some(expected_status), "{name}: {text}");
        let file = snapshots.join(format!("json-{name}.txt"));
        if bless {
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            mismatches.push(format!(
                "{} (run with WISP_BLESS=1 to update):\n{text}",
                file.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "JSON output changed: {mismatches:#?}"
    );
}

/// A reader that goes away (`wisp completions bash | head -1`) ends wisp quietly with
/// success, not with a panic about a broken pipe.
#[test]
fn closed_stdout_is_not_a_panic() {
    use std::process::Stdio;
    for args in [
        &["completions", "bash"][..],
        &["new", "--list", "--json"],
        &["schema"],
    ] {
        let mut child = support::wisp_command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before wisp writes: its first write meets a broken pipe.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn human_request_log_is_one_line_by_default() {
    let dir = app_dir(&support::manifest_one("/hello", "web", programs::HELLO, ""));
    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"));
    let wisp = Wisp::spawn(command).unwrap();
    assert_eq!(wisp.get("/hello").status, 200);
    assert!(wisp.wait_for_output("GET /hello 200 "), "{}", wisp.stderr());
    let line = wisp
        .stderr()
        .lines()
        .find(|l| l.contains("GET /hello 200 "))
        .unwrap()
        .to_owned();
    assert!(line.ends_with("component=web"), "{line}");
}

/// `--help` of every command, compared with `tests/snapshots/help-*.txt`
/// (`WISP_BLESS=1` rewrites them).
#[test]
fn help_snapshots() {
    let commands: &[&[&str]] = &[
        &[],
        &["up"],
        &["build"],
        &["watch"],
        &["new"],
        &["add"],
        &["doctor"],
        &["completions"],
        &["schema"],
        &["registry"],
        &["registry", "push"],
        &["registry", "pull"],
        &["registry", "login"],
        &["kube", "scaffold"],
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let bless = std::env::var_os("WISP_BLESS").is_some();
    let mut mismatches = Vec::new();
    for command in commands {
        let output = support::wisp_command()
            .args(*command)
            .arg("--help")
            // No WISP_* variable may show up as a current value in the help.
            .env_clear()
            .output()
            .unwrap();
        assert!(output.status.success(), "{command:?} --help");
        let text = String::from_utf8(output.stdout).unwrap();
        let name = if command.is_empty() {
            "wisp".to_owned()
        } else {
            command.join("-")
        };
        let file = dir.join(format!("help-{name}.txt"));
        assert!(text.contains("Usage: wisp"), "{name}: {text}");
        if !command.is_empty() && !["registry"].contains(&name.as_str()) {
            assert!(text.contains("Examples:"), "{name} --help has an example");
        }
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            mismatches.push(format!(
                "{} (run with WISP_BLESS=1 to update)",
                file.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "help changed: {mismatches:#?}");
}

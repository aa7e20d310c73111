//! End-to-end tests of the Redis and cron triggers, and of one `wisp up` running
//! HTTP, Redis and cron triggers of one app together.
//!
//! The Redis tests start their own `redis-server` on a free loopback port (so one
//! test can stop and restart it) and talk to it with `redis-cli`, the server's own
//! client: both come with Debian's `redis-server` package, which
//! `scripts/test-services.sh` installs.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{Wisp, app_dir, toml_path};
use wisp_test_programs as programs;

/// A private `redis-server` on 127.0.0.1:`port`, stopped on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    /// Starts the server (again) on the same port and waits until it answers.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs redis-server and redis-cli on the PATH ({e}); run \
                     scripts/test-services.sh (Debian: apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server; its trimmed stdout.
    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Publishes `<prefix>0` … `<prefix><count - 1>` on `channel` in one pipelined
    /// `redis-cli` run (thousands per second).
    fn publish_many(&self, channel: &str, prefix: &str, count: usize) {
        use std::io::Write as _;
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run redis-cli (apt-get install redis-tools)");
        let mut commands = String::new();
        for i in 0..count {
            commands.push_str(&format!("PUBLISH {channel} {prefix}{i}\n"));
        }
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(commands.as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success(), "redis-cli failed");
    }

    /// Publishes until some subscriber receives the message (the trigger may still be
    /// subscribing); panics after 10 s.
    fn publish(&self, channel: &str, message: &str) {
        let start = Instant::now();
        while self.cli(&["PUBLISH", channel, message]) == "0" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nobody subscribed to `{channel}` on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `wisp up -f <dir>/spin.toml`, ready when it listens or reports it is running.
fn up(manifest: &str) -> (tempfile::TempDir, Wisp) {
    let dir = app_dir(manifest);
    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"));
    let wisp = Wisp::spawn(command)
        .unwrap_or_else(|(status, stderr)| panic!("wisp up exited with {status}:\n{stderr}"));
    (dir, wisp)
}

/// Waits up to `timeout` until `check` holds on wisp's combined output.
fn wait_until(wisp: &Wisp, timeout: Duration, what: &str, check: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let output = format!("{}{}", wisp.stdout(), wisp.stderr());
        if check(&output) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}\nstdout:\n{}\nstderr:\n{}",
            wisp.stdout(),
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn redis_manifest(server: &RedisServer) -> String {
    redis_manifest_with(server, programs::REDIS_HANDLER)
}

fn redis_manifest_with(server: &RedisServer, source: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "redis-app"

[application.trigger.redis]
address = "{url}"

[[trigger.redis]]
channel = "events"
component = "handler"

[component.handler]
source = {source}
allowed_outbound_hosts = ["{url}"]
"#,
        url = server.url(),
        source = toml_path(source)
    )
}

#[test]
fn redis_trigger_subscribes_over_tls() {
    // The TLS-only Redis of scripts/test-services.sh, trusted through SSL_CERT_FILE (the
    // trigger's server is the operator's, with the machine's roots).
    let ca = support::services_ca();
    let url = "rediss://localhost:6380/9";
    let channel = format!("tls-events-{}", std::process::id());
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "redis-tls"

[application.trigger.redis]
address = "{url}"

[[trigger.redis]]
channel = "{channel}"
component = "handler"

[component.handler]
source = {source}
"#,
        source = toml_path(programs::REDIS_HANDLER)
    );
    let dir = app_dir(&manifest);
    let mut command = support::wisp_command();
    command
        .args(["up", "-f"])
        .arg(dir.path().join("spin.toml"))
        .env("SSL_CERT_FILE", &ca);
    let wisp = Wisp::spawn(command)
        .unwrap_or_else(|(status, stderr)| panic!("wisp up exited with {status}:\n{stderr}"));
    assert!(
        wisp.stderr()
            .contains(&format!("rediss://localhost:6380/9 channel `{channel}`")),
        "{}",
        wisp.stderr()
    );
    // Published until seen: the subscription may start just after the ready line.
    let start = Instant::now();
    while !wisp.stdout().contains("[handler] got over-tls") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no message over TLS\n{}",
            wisp.stderr()
        );
        let published = Command::new("redis-cli")
            .args(["--tls", "--cacert", ca.to_str().unwrap()])
            .args([
                "-h",
                "localhost",
                "-p",
                "6380",
                "PUBLISH",
                &channel,
                "over-tls",
            ])
            .output()
            .expect("run redis-cli");
        assert!(published.status.success(), "{published:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A component that cannot keep up does not make the trigger queue messages without
/// bound: while it sleeps, the first `MAX_WAITING_MESSAGES` wait (and are handled, in
/// order, afterwards); later ones are dropped and counted in the log.
#[test]
fn redis_trigger_drops_what_a_slow_component_cannot_keep_up_with() {
    let waiting = wisp_trigger_redis::MAX_WAITING_MESSAGES;
    let server = RedisServer::start();
    let (_dir, wisp) = up(&redis_manifest(&server));
    server.publish("events", "sleep 3000");
    wait_until(&wisp, Duration::from_secs(10), "the slow message", |out| {
        out.contains("[handler] got sleep 3000")
    });
    let sent = 3 * waiting;
    let start = Instant::now();
    server.publish_many("events", "m", sent);
    let publishing = start.elapsed();
    wait_until(&wisp, Duration::from_secs(20), "the drop count", |out| {
        out.contains("messages dropped so far")
    });
    // Those that waited are handled once the slow one returns.
    let last_waiting = format!("[handler] got m{}\n", waiting - 1);
    wait_until(
        &wisp,
        Duration::from_secs(60),
        "the waiting messages",
        |out| out.contains(&last_waiting),
    );
    std::thread::sleep(Duration::from_millis(500));
    let output = wisp.stdout();
    let handled = output.matches("[handler] got m").count();
    println!(
        "slow redis component: {sent} messages published in {publishing:?} while it slept, \
         {handled} handled, {} dropped",
        sent - handled
    );
    assert!(
        publishing < Duration::from_millis(1500),
        "publishing took {publishing:?}, longer than the handler sleeps; the test proves nothing"
    );
    assert_eq!(
        handled,
        waiting,
        "exactly the messages that fit waited and were handled\n{}",
        wisp.stderr()
    );
    assert!(output.contains("[handler] got m0\n"));
    assert!(!output.contains(&format!("[handler] got m{}\n", sent - 1)));
    // The trigger still works afterwards.
    server.publish("events", "after");
    wait_until(
        &wisp,
        Duration::from_secs(10),
        "a message after the drops",
        |out| out.contains("[handler] got after"),
    );
}

#[test]
fn redis_trigger_runs_every_message_and_survives_failures() {
    let server = RedisServer::start();
    let (_dir, wisp) = up(&redis_manifest(&server));
    assert!(
        wisp.stderr().contains("channel `events`  ->  handler"),
        "{}",
        wisp.stderr()
    );

    server.publish("events", "hello");
    wait_until(&wisp, Duration::from_secs(10), "the first message", |out| {
        out.contains("[handler] got hello")
    });

    // A handler error and a trap are logged with the channel; later messages still run.
    server.publish("events", "fail");
    wait_until(&wisp, Duration::from_secs(10), "the error log", |out| {
        out.contains("redis message on `events`: component `handler` returned an error")
    });
    server.publish("events", "trap");
    wait_until(&wisp, Duration::from_secs(10), "the trap log", |out| {
        out.contains("redis message on `events`: component `handler` failed")
    });

    // The guest writes through outbound Redis; the test reads it back with redis-cli.
    let key = format!("from-guest-{}", std::process::id());
    server.publish(
        "events",
        &format!("set {} {key} written-by-guest", server.url()),
    );
    let start = Instant::now();
    while server.cli(&["GET", &key]) != "written-by-guest" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the guest did not write {key}\n{}",
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    server.publish("events", "after");
    wait_until(
        &wisp,
        Duration::from_secs(10),
        "a message after the failures",
        |out| out.contains("[handler] got after"),
    );
}

#[test]
fn redis_trigger_calls_spin_sdk_7_async_subscribers() {
    let server = RedisServer::start();
    let (_dir, wisp) = up(&redis_manifest_with(&server, programs::REDIS_SUBSCRIBER_V7));
    assert!(
        wisp.stderr().contains("spin:redis/inbound-redis@3.0.0"),
        "{}",
        wisp.stderr()
    );
    server.publish("events", "hello-v3");
    wait_until(&wisp, Duration::from_secs(10), "the message", |out| {
        out.contains("[handler] got hello-v3")
    });
    server.publish("events", "fail");
    wait_until(&wisp, Duration::from_secs(10), "the error log", |out| {
        out.contains("component `handler` returned an error") && out.contains("asked to fail")
    });
    let key = format!("from-v7-guest-{}", std::process::id());
    server.publish("events", &format!("set {} {key} async-write", server.url()));
    let start = Instant::now();
    while server.cli(&["GET", &key]) != "async-write" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the guest did not write {key}\n{}",
            wisp.stderr()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn redis_trigger_reconnects_when_the_server_comes_back() {
    let mut server = RedisServer::start();
    let (_dir, wisp) = up(&redis_manifest(&server));
    server.publish("events", "before");
    wait_until(&wisp, Duration::from_secs(10), "the first message", |out| {
        out.contains("[handler] got before")
    });

    server.stop();
    wait_until(
        &wisp,
        Duration::from_secs(10),
        "the lost connection",
        |out| out.contains("lost the redis trigger connection"),
    );
    // Let at least one reconnect attempt fail while the server is down.
    wait_until(
        &wisp,
        Duration::from_secs(10),
        "a failed reconnect",
        |out| out.contains("redis trigger cannot subscribe"),
    );
    server.restart();
    wait_until(
        &wisp,
        Duration::from_secs(15),
        "the second subscription",
        |out| out.matches("redis trigger subscribed to `events`").count() >= 2,
    );
    server.publish("events", "after-restart");
    wait_until(
        &wisp,
        Duration::from_secs(10),
        "a message after the restart",
        |out| out.contains("[handler] got after-restart"),
    );
}

/// The Redis handler of a module built for Spin's pre-component ABI (`handle-redis-message`,
/// as Spin's TinyGo-based Go SDK exports it) is called as the Spin 1.x `inbound-redis`.
#[test]
fn redis_trigger_calls_handlers_of_spins_pre_component_abi() {
    let server = RedisServer::start();
    let (_dir, wisp) = up(&redis_manifest_with(
        &server,
        programs::SPIN_LEGACY_ABI_WASIP1,
    ));
    server.publish("events", "hello");
    wait_until(&wisp, Duration::from_secs(10), "the first message", |out| {
        out.contains("[handler] legacy got hello")
    });
    server.publish("events", "fail");
    wait_until(&wisp, Duration::from_secs(10), "the error log", |out| {
        out.contains("redis message on `events`: component `handler` returned an error")
    });
    server.publish("events", "after");
    wait_until(
        &wisp,
        Duration::from_secs(10),
        "a message after the error",
        |out| out.contains("[handler] legacy got after"),
    );
}

#[test]
fn redis_trigger_refuses_a_component_without_a_handler() {
    let server = RedisServer::start();
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "redis-app"

[[trigger.redis]]
address = "{url}"
channel = "events"
component = "web"

[component.web]
source = {source}
"#,
        url = server.url(),
        source = toml_path(programs::HELLO)
    );
    let dir = app_dir(&manifest);
    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"));
    let (status, stderr) = match Wisp::spawn(command) {
        Ok(_) => panic!("wisp up should refuse an HTTP component on a redis trigger"),
        Err(failure) => failure,
    };
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("component `web` has no redis message handler"),
        "{stderr}"
    );
}

fn cron_manifest(expression: &str, environment: &str, extra: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "cron-app"

[[trigger.cron]]
component = "tick"
cron_expression = "{expression}"
{extra}

[component.tick]
source = {source}
environment = {{ {environment} }}
"#,
        source = toml_path(programs::CRON_TICK)
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The timestamps of `tick <t> start` / `tick <t> end` lines, in output order.
fn tick_events(stdout: &str) -> Vec<(u64, &str)> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("[tick] tick ")?;
            let (timestamp, what) = rest.split_once(' ')?;
            Some((timestamp.parse().ok()?, what))
        })
        .collect()
}

#[test]
fn cron_trigger_fires_on_schedule_with_the_tick_timestamp() {
    let (_dir, wisp) = up(&cron_manifest("* * * * * *", "", ""));
    let ready = now_secs();
    wait_until(&wisp, Duration::from_secs(10), "three ticks", |out| {
        out.matches("ran for the tick").count() >= 3
    });
    let stdout = wisp.stdout();
    let ends: Vec<u64> = tick_events(&stdout)
        .into_iter()
        .filter(|(_, what)| *what == "end")
        .map(|(t, _)| t)
        .collect();
    assert!(ends.len() >= 3, "{stdout}");
    // Each run gets its own tick's timestamp, in order (a slow run on a loaded machine
    // may make the next tick be skipped, so gaps of more than a second are allowed),
    // close to the time the trigger started.
    for pair in ends.windows(2) {
        assert!(pair[1] > pair[0], "tick timestamps increase: {ends:?}");
    }
    assert!(
        ends[0] + 2 >= ready && ends[0] <= ready + 5,
        "first tick {} vs ready at {ready}",
        ends[0]
    );
    assert!(
        wisp.stderr().contains("`tick` ran for the tick at"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn cron_trigger_logs_a_failed_run() {
    let (_dir, wisp) = up(&cron_manifest("* * * * * *", r#"TICK_FAIL = "1""#, ""));
    wait_until(&wisp, Duration::from_secs(10), "the error log", |out| {
        out.contains("cron trigger `tick-cron-trigger`: `tick` returned an error")
            && out.contains("asked to fail")
    });
}

#[test]
fn cron_trigger_never_overlaps_unless_allowed() {
    // Each run takes 2.5 s on an every-second schedule.
    let (_dir, wisp) = up(&cron_manifest(
        "* * * * * *",
        r#"TICK_SLEEP_MS = "2500""#,
        "",
    ));
    wait_until(&wisp, Duration::from_secs(15), "two finished runs", |out| {
        out.matches(" end").count() >= 2
    });
    assert!(
        wisp.stderr().contains("skipped the tick"),
        "{}",
        wisp.stderr()
    );
    // Starts and ends strictly alternate: no run began before the previous ended.
    let stdout = wisp.stdout();
    let events = tick_events(&stdout);
    for (index, (_, what)) in events.iter().enumerate() {
        let expected = if index % 2 == 0 { "start" } else { "end" };
        assert_eq!(*what, expected, "runs overlapped: {events:?}");
    }
    drop(wisp);

    let (_dir, wisp) = up(&cron_manifest(
        "* * * * * *",
        r#"TICK_SLEEP_MS = "2500""#,
        "allow_overlap = true",
    ));
    wait_until(&wisp, Duration::from_secs(15), "overlapping runs", |out| {
        let events = tick_events(out);
        let mut running = 0;
        let mut most = 0;
        for (_, what) in events {
            running += if what == "start" { 1 } else { -1 };
            most = most.max(running);
        }
        most >= 2
    });
    assert!(
        !wisp.stderr().contains("skipped the tick"),
        "{}",
        wisp.stderr()
    );
}

#[test]
fn cron_run_stuck_past_its_deadline_is_stopped() {
    // The guest sleeps 60 s (a host call the epoch cannot interrupt) on an every-second
    // schedule with a 1 s deadline: each run must be cut off, so later ticks run again.
    let dir = app_dir(&cron_manifest(
        "* * * * * *",
        r#"TICK_SLEEP_MS = "60000""#,
        "",
    ));
    let mut command = support::wisp_command();
    command
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"))
        .args(["--request-timeout", "1"]);
    let wisp = Wisp::spawn(command)
        .unwrap_or_else(|(status, stderr)| panic!("wisp up exited with {status}:\n{stderr}"));
    wait_until(&wisp, Duration::from_secs(15), "two cut-off runs", |out| {
        out.matches("exceeded its 1s deadline").count() >= 2
    });
    let stdout = wisp.stdout();
    assert!(
        tick_events(&stdout)
            .iter()
            .filter(|(_, what)| *what == "start")
            .count()
            >= 2,
        "{stdout}"
    );
    assert!(
        !stdout.contains(" end"),
        "no run may finish its sleep: {stdout}"
    );
}

#[test]
fn one_process_runs_http_redis_and_cron_triggers() {
    let server = RedisServer::start();
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "everything"

[[trigger.http]]
route = "/hello"
component = "web"

[[trigger.redis]]
address = "{url}"
channel = "jobs"
component = "handler"

[[trigger.cron]]
component = "tick"
cron_expression = "* * * * * *"

[component.web]
source = {hello}

[component.handler]
source = {handler}

[component.tick]
source = {tick}
"#,
        url = server.url(),
        hello = toml_path(programs::HELLO),
        handler = toml_path(programs::REDIS_HANDLER),
        tick = toml_path(programs::CRON_TICK),
    );
    let (_dir, wisp) = up(&manifest);
    let response = wisp.get("/hello");
    assert_eq!(response.status, 200, "{}", wisp.stderr());
    server.publish("jobs", "from-the-queue");
    wait_until(
        &wisp,
        Duration::from_secs(10),
        "all three triggers",
        |out| out.contains("[handler] got from-the-queue") && out.contains("ran for the tick"),
    );
    // Still serving HTTP alongside the other triggers.
    assert_eq!(wisp.get("/hello").status, 200);
}

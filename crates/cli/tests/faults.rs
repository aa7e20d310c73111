//! The guest fault matrix under load: each kind of misbehaving guest runs while a healthy
//! component serves 8 clients on the same server. The healthy clients lose no request,
//! each fault gets its own answer, and the server's memory comes back down afterwards.
//! The healthy component's p99 next to each fault is printed beside its baseline (the
//! ratio is a figure for `docs/security.md`, not an assertion: this is a debug build on a
//! shared machine).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Upstream, Wisp, app_dir, toml_path, try_request};
use wisp_test_programs as programs;

/// Healthy clients, each sending one request after another.
const VICTIMS: usize = 8;
/// Clients sending the fault at once.
const FAULTERS: usize = 2;
/// How long each phase runs.
const PHASE: Duration = Duration::from_millis(2500);

/// What the healthy clients saw in one phase.
struct Victims {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Victims {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    }
}

/// Runs the healthy clients for `PHASE` while `fault` runs in `FAULTERS` threads, each
/// repeating it until the phase ends; returns the victims' figures and each fault's
/// outcomes.
fn phase(addr: SocketAddr, fault: Option<fn(SocketAddr) -> String>) -> (Victims, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let faulters: Vec<_> = fault
        .into_iter()
        .flat_map(|fault| std::iter::repeat_n(fault, FAULTERS))
        .map(|fault| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    outcomes.push(fault(addr));
                }
                outcomes
            })
        })
        .collect();
    let started = Instant::now();
    let victims: Vec<_> = (0..VICTIMS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut failures = Vec::new();
                while started.elapsed() < PHASE {
                    let sent = Instant::now();
                    match try_request(addr, "GET", "/hello", &[], b"") {
                        Ok(r) if r.status == 200 && r.text() == "Hello from Wisp\n" => {
                            latencies.push(sent.elapsed())
                        }
                        Ok(r) => failures.push(format!("{} {:?}", r.status, r.text())),
                        Err(e) => failures.push(e),
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut all = Victims {
        latencies: Vec::new(),
        failures: Vec::new(),
    };
    for victim in victims {
        let (latencies, failures) = victim.join().unwrap();
        all.latencies.extend(latencies);
        all.failures.extend(failures);
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes = faulters
        .into_iter()
        .flat_map(|f| f.join().unwrap())
        .collect();
    (all, outcomes)
}

/// `<status> <first line of the body>`, or the client-side error.
fn outcome(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> String {
    match try_request(addr, method, path, &[], body) {
        Ok(r) => {
            let text = r.text();
            match r.status {
                // Only the size of a huge body matters.
                200 if r.body.len() > 1 << 20 => format!("200 {} MiB", r.body.len() >> 20),
                status => format!("{status} {}", text.lines().next().unwrap_or("")),
            }
        }
        Err(e) => e,
    }
}

/// Sends a request, reads the response head and at most `read` more bytes over `for_at_most`,
/// then closes the connection: a client that goes away mid-response.
fn leave_early(addr: SocketAddr, path: &str, for_at_most: Duration) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .unwrap();
    stream.set_read_timeout(Some(for_at_most)).unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 16 << 10];
    while started.elapsed() < for_at_most {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&received[..received.len().min(12)]).into_owned();
    format!("{head} then left after {} bytes", received.len())
}

/// The resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse::<u64>().unwrap() >> 10)
        .unwrap()
}

fn ok_upstream(_path: &str) -> support::Answer {
    ("200 OK", String::new(), b"ok".to_vec())
}

/// A fault, how to send it, and what each attempt must come back as.
struct Fault {
    name: &'static str,
    send: fn(SocketAddr) -> String,
    expect: fn(&str) -> bool,
}

#[test]
fn misbehaving_guests_fail_alone_under_load() {
    let upstream = Upstream::start(ok_upstream);
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "faults"

[[trigger.http]]
route = "/hello"
component = "victim"

[[trigger.http]]
route = "/fault/..."
component = "faults"

[[trigger.http]]
route = "/caps/..."
component = "caps"

[component.victim]
source = {hello}

[component.faults]
source = {faults}

[component.caps]
source = {caps}
allowed_outbound_hosts = ["{upstream}"]
"#,
        hello = toml_path(programs::HELLO),
        faults = toml_path(programs::FAULTS),
        caps = toml_path(programs::CAPS_V5),
        upstream = upstream.base(),
    );
    let dir = app_dir(&manifest);
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--request-timeout",
        "2",
        "--memory-limit-mb",
        "64",
    ]);
    let addr = wisp.addr;
    let pid = wisp.pid();

    // Warm up every component once, then measure the healthy one alone.
    assert_eq!(wisp.get("/hello").status, 200);
    assert_eq!(wisp.get("/fault/").text(), "Hello from faults\n");
    let (baseline, _) = phase(addr, None);
    assert!(baseline.failures.is_empty(), "{:?}", baseline.failures);
    let base_p99 = baseline.percentile(0.99);
    let base_rss = rss_mib(pid);
    println!(
        "baseline: {} healthy requests, p50 {:.1?}, p99 {base_p99:.1?}; RSS {base_rss} MiB",
        baseline.latencies.len(),
        baseline.percentile(0.5)
    );

    let faults = [
        Fault {
            name: "infinite loop",
            send: |addr| outcome(addr, "GET", "/fault/loop", b""),
            expect: |o| o.starts_with("504"),
        },
        // A guest that runs long moves to the slow lane, which gets the CPU only when the
        // healthy clients leave some: under this load it may meet its deadline (504)
        // before it reaches its memory limit or the end of its stack (500).
        Fault {
            name: "memory bomb",
            send: |addr| outcome(addr, "GET", "/fault/memory", b""),
            expect: |o| o.starts_with("500") || o.starts_with("504"),
        },
        Fault {
            name: "deep recursion",
            send: |addr| outcome(addr, "GET", "/fault/recursion", b""),
            expect: |o| o.starts_with("500") || o.starts_with("504"),
        },
        Fault {
            name: "huge response body (64 MiB)",
            send: |addr| outcome(addr, "GET", "/fault/huge?mib=64", b""),
            // All of it, or (starved in the slow lane, as above) what was sent by the
            // deadline, which then ends the response.
            expect: |o| o.starts_with("200 ") && o.ends_with(" MiB"),
        },
        Fault {
            name: "dribbled response body",
            send: |addr| leave_early(addr, "/fault/dribble", Duration::from_secs(3)),
            // The deadline (2 s) ends the dribble: 200 and some dots, then the close.
            expect: |o| o.starts_with("HTTP/1.1 200"),
        },
        Fault {
            name: "request body never read (4 MiB sent)",
            send: |addr| outcome(addr, "POST", "/fault/no-read", &vec![b'b'; 4 << 20]),
            // Or, rarely, the client is still sending when the server closes the
            // connection after the answer: the lingering close only waits for bytes
            // already arriving, so a client that paused mid-body meets a closed socket.
            expect: |o| o == "200 ignored" || o.starts_with("send to wisp: Broken pipe"),
        },
        Fault {
            name: "outbound calls up to the budget",
            send: |addr| {
                let url = support::encode(&format!("{}/x", upstream_base(addr)));
                outcome(
                    addr,
                    "GET",
                    &format!("/caps/http-many?url={url}&n=100"),
                    b"",
                )
            },
            // Under load it may be starved into its deadline first (see above); alone it
            // reaches the budget, checked before the matrix.
            expect: |o| o.starts_with("200 failed after 64") || o.starts_with("504"),
        },
        Fault {
            name: "writing to a client that left",
            send: |addr| leave_early(addr, "/fault/write-forever", Duration::from_millis(200)),
            expect: |o| o.starts_with("HTTP/1.1 200"),
        },
    ];
    UPSTREAM.set(upstream.base()).unwrap();
    let alone = (faults[6].send)(addr);
    println!("outbound calls alone: {alone}");
    assert!(
        alone.starts_with("200 failed after 64"),
        "{alone}\n{}",
        wisp.stderr()
    );

    let mut report = Vec::new();
    for fault in &faults {
        let (victims, outcomes) = phase(addr, Some(fault.send));
        let p99 = victims.percentile(0.99);
        let ratio = p99.as_secs_f64() / base_p99.as_secs_f64();
        let unexpected: Vec<&String> = outcomes.iter().filter(|o| !(fault.expect)(o)).collect();
        let line = format!(
            "{}: {} faulty requests ({} as expected, e.g. {:?}); healthy: {} requests, {} failed, p99 {p99:.1?} = {ratio:.2}x baseline; RSS {} MiB",
            fault.name,
            outcomes.len(),
            outcomes.len() - unexpected.len(),
            outcomes.first(),
            victims.latencies.len(),
            victims.failures.len(),
            rss_mib(pid),
        );
        println!("{line}");
        assert!(
            victims.failures.is_empty(),
            "{line}\nhealthy requests failed: {:?}\n{}",
            &victims.failures[..victims.failures.len().min(5)],
            wisp.stderr()
        );
        assert!(!outcomes.is_empty(), "{line}");
        assert!(
            unexpected.is_empty(),
            "{line}\nunexpected outcomes, e.g. {:?}\n{}",
            &unexpected[..unexpected.len().min(5)],
            wisp.stderr()
        );
        report.push(line);
    }

    // The memory faults leave nothing behind: after a moment the server is back near its
    // baseline (the pool keeps a little per slot resident by design).
    std::thread::sleep(Duration::from_millis(1000));
    let after = rss_mib(pid);
    println!("RSS after the matrix: {after} MiB (baseline {base_rss} MiB)");
    assert!(
        after <= base_rss + 64,
        "RSS {after} MiB after the faults, baseline {base_rss} MiB"
    );
    assert_eq!(wisp.get("/hello").status, 200);
    wisp.stop_cleanly();
}

/// The upstream's base URL, for the fault functions (plain `fn`s, which cannot capture).
static UPSTREAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn upstream_base(_addr: SocketAddr) -> String {
    UPSTREAM.get().expect("set before the faults run").clone()
}

//! Nothing acknowledged is lost: a write a client was told succeeded is still there after
//! the server is killed (`kill -9`, no drain, no shutdown) and started again on the same
//! state; and a server told to stop (SIGTERM) under load answers every request it took.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Wisp, app_dir, manifest_one, try_request};
use wisp_test_programs as programs;

/// Writers sending at once.
const WRITERS: usize = 4;
/// Rounds, each ending in `kill -9` at a different point.
const ROUNDS: usize = 3;

/// What one writer was told it stored: the key-value keys, and the highest SQLite counter
/// value answered.
struct Acknowledged {
    keys: Vec<String>,
    counter: i64,
}

/// The caps-v5 guest on `/...` with `grants`, keeping its stores in a state directory
/// that outlives restarts: the app directory and the `wisp up` arguments.
fn caps_app(grants: &str) -> (tempfile::TempDir, Vec<String>) {
    let dir = app_dir(&manifest_one("/...", "caps", programs::CAPS_V5, grants));
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let args = vec![
        "-f".to_owned(),
        path("spin.toml"),
        "--state-dir".to_owned(),
        path("state"),
    ];
    (dir, args)
}

/// Writes until a request fails (the server was killed): each step sets a key-value key
/// (its value is the key) and increments the SQLite counter.
fn write_until_killed(
    addr: std::net::SocketAddr,
    name: String,
    acknowledged: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Acknowledged {
    let mut out = Acknowledged {
        keys: Vec::new(),
        counter: 0,
    };
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("{name}-{i}");
        let set = try_request(
            addr,
            "PUT",
            &format!("/kv/set?store=default&key={key}"),
            &[],
            key.as_bytes(),
        );
        match set {
            // Only a whole answer is an acknowledgement: a kill can cut a 200 off mid-body.
            Ok(response) if response.status == 200 && response.complete => out.keys.push(key),
            _ => break,
        }
        acknowledged.fetch_add(1, Ordering::Relaxed);
        match try_request(addr, "POST", "/sqlite/counter?db=default", &[], b"") {
            Ok(response) if response.status == 200 && response.complete => {
                let value: i64 = response.text().trim().parse().unwrap();
                out.counter = out.counter.max(value);
            }
            _ => break,
        }
    }
    out
}

#[test]
fn acknowledged_key_value_and_sqlite_writes_survive_kill_9() {
    let (_dir, args) =
        caps_app("key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut keys: Vec<String> = Vec::new();
    let mut counter = 0;
    for round in 0..ROUNDS {
        let wisp = Wisp::up(&args);
        let addr = wisp.addr;
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
                std::thread::spawn(move || {
                    write_until_killed(addr, format!("r{round}-w{w}"), acknowledged, stop)
                })
            })
            .collect();
        // A different kill point each round, while every writer is mid-stream.
        let kill_after = 300 + 50 * round;
        let start = Instant::now();
        while acknowledged.load(Ordering::Relaxed) < kill_after {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "only {} writes acknowledged in 60 s\n{}",
                acknowledged.load(Ordering::Relaxed),
                wisp.stderr()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // Dropping `Wisp` is SIGKILL: no drain, no shutdown hooks.
        drop(wisp);
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            let done = writer.join().unwrap();
            keys.extend(done.keys);
            counter = counter.max(done.counter);
        }
    }

    let wisp = Wisp::up(&args);
    let mut missing = Vec::new();
    for key in &keys {
        let response = wisp.get(&format!("/kv/get?store=default&key={key}"));
        if response.status != 200 || response.text() != *key {
            missing.push(key.clone());
        }
    }
    let next = support::request(wisp.addr, "POST", "/sqlite/counter?db=default", &[], b"");
    let next: i64 = next.text().trim().parse().unwrap();
    println!(
        "kill -9 durability: {} key-value writes and SQLite increments up to {counter} \
         acknowledged over {ROUNDS} kills; {} keys missing after restart; counter now {next}",
        keys.len(),
        missing.len()
    );
    assert!(
        keys.len() >= 1000,
        "only {} writes acknowledged; the test needs at least 1,000",
        keys.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged keys lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        next > counter,
        "the counter was acknowledged at {counter} but restarts at {next}"
    );
    wisp.stop_cleanly();
}

/// A keep-alive HTTP/1.1 client connection, as load generators use.
struct KeepAlive(BufReader<TcpStream>);

/// What became of one request sent on a keep-alive connection.
enum Outcome {
    /// A complete response: its status and body, and whether the server closes the
    /// connection after it.
    Answered(u16, String, bool),
    /// The connection ended before any byte of a response: the server closed it before
    /// taking the request (or, if the request was taken, lost it).
    ClosedUnanswered(String),
    /// Part of a response, then nothing: always a failure.
    Broken(String),
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive(BufReader::new(stream)))
    }

    fn send(&mut self, method: &str, path: &str) -> Outcome {
        let request =
            format!("{method} {path} HTTP/1.1\r\nhost: wisp\r\ncontent-length: 0\r\n\r\n");
        if let Err(e) = self.0.get_mut().write_all(request.as_bytes()) {
            return Outcome::ClosedUnanswered(format!("send: {e}"));
        }
        let mut status_line = String::new();
        match self.0.read_line(&mut status_line) {
            Ok(0) => return Outcome::ClosedUnanswered("end of stream".into()),
            Err(e) if status_line.is_empty() => {
                return Outcome::ClosedUnanswered(format!("read: {e}"));
            }
            Err(e) => return Outcome::Broken(format!("status line: {e}")),
            Ok(_) => {}
        }
        let Some(status) = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
        else {
            return Outcome::Broken(format!("status line {status_line:?}"));
        };
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            let mut line = String::new();
            match self.0.read_line(&mut line) {
                Ok(0) | Err(_) => return Outcome::Broken(format!("head after {status_line:?}")),
                Ok(_) => {}
            }
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match (name.trim(), value.trim()) {
                    ("content-length", n) => length = n.parse::<usize>().ok(),
                    ("transfer-encoding", v) => chunked = v.contains("chunked"),
                    ("connection", v) => close = v.contains("close"),
                    _ => {}
                }
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let mut size = String::new();
                if !matches!(self.0.read_line(&mut size), Ok(n) if n > 0) {
                    return Outcome::Broken("chunk size".into());
                }
                let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                    return Outcome::Broken(format!("chunk size {size:?}"));
                };
                let mut chunk = vec![0; size + 2];
                if self.0.read_exact(&mut chunk).is_err() {
                    return Outcome::Broken("chunk".into());
                }
                if size == 0 {
                    break body;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let mut body = vec![0; length.unwrap_or(0)];
            if self.0.read_exact(&mut body).is_err() {
                return Outcome::Broken("body".into());
            }
            body
        };
        Outcome::Answered(status, String::from_utf8_lossy(&body).into_owned(), close)
    }
}

/// What one load client saw.
#[derive(Default)]
struct LoadCounts {
    answered: usize,
    /// Requests sent on a connection the server then closed without answering them.
    closed_unanswered: usize,
    /// Connection attempts refused once the server stopped listening.
    refused: usize,
    failures: Vec<String>,
}

/// Increments the counter over keep-alive connections until the server refuses new ones
/// (it stopped), reconnecting whenever the server closes a connection.
fn increment_until_refused(addr: SocketAddr, terminated: &AtomicBool) -> LoadCounts {
    let mut counts = LoadCounts::default();
    let mut conn = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let stopping = terminated.load(Ordering::Acquire);
        let client = match conn.as_mut() {
            Some(client) => client,
            None => match KeepAlive::connect(addr) {
                Ok(client) => conn.insert(client),
                Err(e) if stopping && e.kind() == ErrorKind::ConnectionRefused => {
                    counts.refused += 1;
                    return counts;
                }
                Err(e) => {
                    counts.failures.push(format!("connect: {e}"));
                    return counts;
                }
            },
        };
        match client.send("POST", "/sqlite/counter?db=default") {
            Outcome::Answered(200, body, close) if body.trim().parse::<i64>().is_ok() => {
                counts.answered += 1;
                if close {
                    conn = None;
                }
            }
            Outcome::Answered(status, body, _) => {
                counts.failures.push(format!("{status} {body}"));
                conn = None;
            }
            // Before the signal no connection may close under a client.
            Outcome::ClosedUnanswered(why) if !stopping => {
                counts
                    .failures
                    .push(format!("closed before SIGTERM: {why}"));
                conn = None;
            }
            Outcome::ClosedUnanswered(_) => {
                counts.closed_unanswered += 1;
                conn = None;
            }
            Outcome::Broken(why) => {
                counts.failures.push(why);
                conn = None;
            }
        }
    }
    counts
        .failures
        .push("still being answered after 60 s".into());
    counts
}

#[test]
fn sigterm_under_load_answers_every_request_it_took() {
    const CLIENTS: usize = 64;
    let (_dir, args) = caps_app("sqlite_databases = [\"default\"]");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let wisp = Wisp::up(&args);
    let addr = wisp.addr;
    let terminated = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let terminated = terminated.clone();
            std::thread::spawn(move || increment_until_refused(addr, &terminated))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    terminated.store(true, Ordering::Release);
    support::terminate_pid(wisp.pid());
    let signalled = Instant::now();
    let status = wisp.stop_waiting(Duration::from_secs(30));
    let exited = signalled.elapsed();
    let mut total = LoadCounts::default();
    for client in clients {
        let counts = client.join().unwrap();
        total.answered += counts.answered;
        total.closed_unanswered += counts.closed_unanswered;
        total.refused += counts.refused;
        total.failures.extend(counts.failures);
    }
    assert!(status.success(), "wisp exited with {status} after SIGTERM");

    // The guest counted every request it ran; each must have been answered.
    let wisp = Wisp::up(&args);
    let next = support::request(wisp.addr, "POST", "/sqlite/counter?db=default", &[], b"");
    let ran = next.text().trim().parse::<usize>().unwrap() - 1;
    wisp.stop_cleanly();
    println!(
        "SIGTERM at c={CLIENTS}: {} requests answered, {ran} run by the guest, {} failed; \
         after the signal {} requests met a closed connection before being taken and {} \
         connection attempts were refused; exit {exited:.1?} after the signal",
        total.answered,
        total.failures.len(),
        total.closed_unanswered,
        total.refused,
    );
    assert!(
        total.failures.is_empty(),
        "{} requests failed, e.g. {:?}",
        total.failures.len(),
        &total.failures[..total.failures.len().min(5)]
    );
    assert!(
        total.answered >= 200,
        "too little load to judge: {}",
        total.answered
    );
    assert_eq!(
        ran, total.answered,
        "the guest ran {ran} requests but {} were answered: taken requests were lost",
        total.answered
    );
    assert_eq!(
        total.refused, CLIENTS,
        "every client ends on a refused connection"
    );
}

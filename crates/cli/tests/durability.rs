//! Durability: a write a client was told succeeded is still there after the server is
//! killed (`kill -9`, no drain, no shutdown) and started again on the same state.

mod support;

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
            Ok(response) if response.status == 200 => out.keys.push(key),
            _ => break,
        }
        acknowledged.fetch_add(1, Ordering::Relaxed);
        match try_request(addr, "POST", "/sqlite/counter?db=default", &[], b"") {
            Ok(response) if response.status == 200 => {
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
    let dir = app_dir(&manifest_one(
        "/...",
        "caps",
        programs::CAPS_V5,
        "key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]",
    ));
    let manifest = dir.path().join("spin.toml");
    let state = dir.path().join("state");
    let args = [
        "-f",
        manifest.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
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

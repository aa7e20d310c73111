//! The memory the instance pool keeps resident after a burst goes back to the system once
//! no instance runs, and instances started afterwards, or while it happens, see their
//! component's memory exactly as a fresh instance should.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wisp_engine::{AppLimits, EngineConfig, GuestOutput, LoadedComponent, WispEngine};

const SLOTS: u32 = 8;
const TOUCHED: &str = "touched 4194304 bytes sum=130560\n";

fn new_engine() -> Arc<WispEngine> {
    Arc::new(
        WispEngine::new(EngineConfig {
            max_instances: SLOTS,
            // Each slot keeps up to 16 MiB: the whole 4 MiB the guest touches.
            memory_budget: 8 << 30,
            ..EngineConfig::default()
        })
        .unwrap(),
    )
}

async fn load(engine: &WispEngine, dir: &std::path::Path, program: &str) -> Arc<LoadedComponent> {
    let limits = AppLimits {
        guest_output: GuestOutput::None,
        ..AppLimits::default()
    };
    support::load_program(engine, dir, program, &limits).await
}

async fn get(component: &Arc<LoadedComponent>) -> (u16, String) {
    support::get(component, "/")
        .await
        .unwrap_or_else(|fault| panic!("the guest failed: {fault:?}"))
}

/// `SLOTS` requests at once, `rounds` times: every slot touches 4 MiB.
async fn burst(touch: &Arc<LoadedComponent>, rounds: usize) {
    for _ in 0..rounds {
        let requests: Vec<_> = (0..SLOTS)
            .map(|_| {
                let touch = touch.clone();
                tokio::spawn(async move { get(&touch).await })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap(), (200, TOUCHED.to_owned()));
        }
    }
}

fn anonymous_resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One test, one engine: the pool is found only where its leading guard did not merge
/// into a neighbour's, which two engines made at once in one process may do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bursts_kept_memory_goes_back_when_idle_and_instances_start_clean() {
    let dir = tempfile::tempdir().unwrap();
    let engine = new_engine();
    let touch = load(&engine, dir.path(), wisp_test_programs::TOUCH4MIB).await;
    let hello = load(&engine, dir.path(), wisp_test_programs::HELLO).await;
    let (status, greeting) = get(&hello).await;
    assert_eq!(status, 200);
    released_after_a_burst(&engine, &touch, &hello, &greeting).await;
    instances_starting_during_releases_wait_and_run_correctly(&engine, &touch, &hello, &greeting)
        .await;
}

async fn released_after_a_burst(
    engine: &WispEngine,
    touch: &Arc<LoadedComponent>,
    hello: &Arc<LoadedComponent>,
    greeting: &str,
) {
    burst(touch, 3).await;
    let kept = anonymous_resident_kib();
    // Nothing runs now, but nothing has been idle long either.
    assert_eq!(
        engine.release_idle_instance_memory(Duration::from_secs(3600)),
        None
    );
    let freed = engine
        .release_idle_instance_memory(Duration::ZERO)
        .expect("released with no instance alive");
    let after = anonymous_resident_kib();
    println!(
        "RssAnon {kept} KiB after the burst, {after} KiB after the release ({} KiB freed)",
        freed >> 10
    );
    // Each slot the burst ran in (as many as the runtime's threads, at least) kept the
    // 4 MiB its guest touched.
    assert!(freed >= 4 << 20, "freed only {freed} bytes");
    assert!(after + (4 << 10) <= kept, "{kept} KiB -> {after} KiB");

    // Fresh instances after the release: the guest's data (the greeting) comes back from
    // the component's memory image, and touched memory starts zeroed.
    assert_eq!(get(hello).await, (200, greeting.to_owned()));
    burst(touch, 1).await;

    // While no instance ran for a while, a release needs the idle time asked for; then it
    // is done once for that idle stretch.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        engine
            .release_idle_instance_memory(Duration::from_millis(200))
            .is_some()
    );
    assert_eq!(
        engine.release_idle_instance_memory(Duration::from_millis(200)),
        None,
        "already released in this idle stretch"
    );
    assert_eq!(get(hello).await, (200, greeting.to_owned()));
}

async fn instances_starting_during_releases_wait_and_run_correctly(
    engine: &Arc<WispEngine>,
    touch: &Arc<LoadedComponent>,
    hello: &Arc<LoadedComponent>,
    greeting: &str,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let releases = Arc::new(AtomicUsize::new(0));
    let releaser = std::thread::spawn({
        let (engine, stop, releases) = (engine.clone(), stop.clone(), releases.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                if engine
                    .release_idle_instance_memory(Duration::ZERO)
                    .is_some()
                {
                    releases.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(2);
    let mut served = 0;
    while Instant::now() < until {
        // One at a time, so that the pool is often empty and releases happen between.
        assert_eq!(get(hello).await, (200, greeting.to_owned()));
        assert_eq!(get(touch).await, (200, TOUCHED.to_owned()));
        served += 2;
    }
    stop.store(true, Ordering::Relaxed);
    releaser.join().unwrap();
    let releases = releases.load(Ordering::Relaxed);
    println!("{served} requests served around {releases} releases");
    assert!(releases > 10, "only {releases} releases happened");
}

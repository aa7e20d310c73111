//! Baseline code (Winch) for a component cold from the compiler: it serves at once, keeps
//! every limit (deadline, memory cap, stack overflow), and gives way to the optimised
//! code, which the compile cache keeps for the next load.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::get;
use wisp_engine::{AppLimits, EngineConfig, GuestFault, GuestOutput, LoadedComponent, WispEngine};

const TIMEOUT: Duration = Duration::from_secs(1);

fn new_engine(cache: &std::path::Path, baseline_min: Option<u64>) -> WispEngine {
    WispEngine::new(EngineConfig {
        max_instances: 4,
        request_timeout: TIMEOUT,
        cache_dir: Some(cache.to_path_buf()),
        baseline_compile_min_bytes: baseline_min,
        ..EngineConfig::default()
    })
    .unwrap()
}

/// The `faults` component loaded as an app's only component, in `dir`.
async fn load(engine: &WispEngine, dir: &std::path::Path) -> Arc<LoadedComponent> {
    load_program(engine, dir, wisp_test_programs::FAULTS).await
}

/// `program` loaded as an app's only component, in `dir`.
async fn load_program(
    engine: &WispEngine,
    dir: &std::path::Path,
    program: &str,
) -> Arc<LoadedComponent> {
    let limits = AppLimits {
        memory_limit: Some(16 << 20),
        guest_output: GuestOutput::None,
        ..AppLimits::default()
    };
    support::load_program(engine, dir, program, &limits).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_code_serves_within_limits_then_gives_way_to_cached_optimised_code() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let engine = new_engine(&cache, Some(0));
    let hold = engine.hold_baseline_code();
    let faults = load(&engine, dir.path()).await;
    assert!(
        faults.runs_baseline_code(),
        "a cold load starts on baseline code"
    );

    let hello = get(&faults, "/").await.unwrap();
    assert_eq!(hello, (200, "Hello from faults\n".to_owned()));
    // The limits hold on baseline code too: its engine has no instance pool, and its
    // epoch must tick for the deadline.
    let started = Instant::now();
    let looped = get(&faults, "/loop").await;
    assert!(
        matches!(looped, Err(Some(GuestFault::Deadline(_)))),
        "{looped:?}"
    );
    assert!(
        started.elapsed() < TIMEOUT + Duration::from_secs(2),
        "stopped {:?} after its {TIMEOUT:?} deadline",
        started.elapsed() - TIMEOUT
    );
    let memory = get(&faults, "/memory").await;
    assert!(
        matches!(memory, Err(Some(GuestFault::MemoryLimit(_)))),
        "{memory:?}"
    );
    let recursion = get(&faults, "/recursion").await;
    assert!(matches!(recursion, Err(None)), "a trap: {recursion:?}");
    assert_eq!(
        get(&faults, "/huge?mib=1").await.unwrap().1.len(),
        1 << 20,
        "a streamed body"
    );
    assert!(faults.runs_baseline_code());

    // Released, the optimised code takes over once compiled, and serves the same.
    drop(hold);
    let waited = Instant::now();
    while faults.runs_baseline_code() {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "still on baseline code after {:?}",
            waited.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&faults, "/").await.unwrap(), hello);
    let looped = get(&faults, "/loop").await;
    assert!(
        matches!(looped, Err(Some(GuestFault::Deadline(_)))),
        "{looped:?}"
    );

    // It was cached: another engine on the same cache loads it optimised at once.
    let again = load(&new_engine(&cache, Some(0)), dir.path()).await;
    assert!(!again.runs_baseline_code());
    assert_eq!(get(&again, "/").await.unwrap(), hello);
}

/// A node's apps sharing a component: the second load shares the first one's baseline
/// code, the optimised code is compiled once, and both switch to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_component_share_baseline_code_and_switch_together() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let engine = new_engine(&cache, Some(0));
    let hold = engine.hold_baseline_code();
    let first = load(&engine, &dir.path().join("a")).await;
    let second = load(&engine, &dir.path().join("b")).await;
    assert!(first.runs_baseline_code() && second.runs_baseline_code());
    assert_eq!(engine.optimising(), 1, "one optimising compile for both");
    assert_eq!(get(&second, "/").await.unwrap().0, 200);
    drop(hold);
    tokio::time::timeout(Duration::from_secs(120), engine.optimised_code_done())
        .await
        .expect("optimised within 120 s");
    assert_eq!(engine.optimising(), 0);
    assert!(!first.runs_baseline_code() && !second.runs_baseline_code());
    assert_eq!(get(&first, "/").await.unwrap().0, 200);
    let entries = std::fs::read_dir(cache.join("components"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(entries, 1, "compiled once, cached once");
}

/// Optimised code nobody is left to run is not compiled: a component unloaded (an app
/// replaced or removed) before the worker reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimised_code_for_an_unloaded_component_is_not_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let engine = new_engine(&cache, Some(0));
    let hold = engine.hold_baseline_code();
    let faults = load(&engine, dir.path()).await;
    assert!(faults.runs_baseline_code());
    drop(faults);
    drop(hold);
    tokio::time::timeout(Duration::from_secs(120), engine.optimised_code_done())
        .await
        .expect("optimised within 120 s");
    assert!(
        !cache.join("components").exists()
            || std::fs::read_dir(cache.join("components")).unwrap().count() == 0,
        "nothing compiled into the cache"
    );
}

/// Only components with an HTTP export start on baseline code: an event trigger (or an
/// embedder) keeps the `instance_pre` it took, so it must be the optimised code's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_without_an_http_export_compiles_optimised_code_first() {
    let dir = tempfile::tempdir().unwrap();
    let engine = new_engine(&dir.path().join("cache"), Some(0));
    let cron = load_program(&engine, dir.path(), wisp_test_programs::CRON_TICK).await;
    assert!(cron.http_export().is_none());
    assert!(!cron.runs_baseline_code());
    assert_eq!(engine.optimising(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_components_and_the_off_setting_compile_optimised_code_first() {
    let dir = tempfile::tempdir().unwrap();
    // Below the default threshold (1 MiB): the test components are a few hundred KiB.
    let faults = load(
        &new_engine(
            &dir.path().join("cache-auto"),
            EngineConfig::default().baseline_compile_min_bytes,
        ),
        dir.path(),
    )
    .await;
    assert!(!faults.runs_baseline_code());
    let off = load(&new_engine(&dir.path().join("cache-off"), None), dir.path()).await;
    assert!(!off.runs_baseline_code());
    assert_eq!(get(&off, "/").await.unwrap().0, 200);
}

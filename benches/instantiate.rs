//! In-process cost of one request: route, fresh instance from the pre-linked component,
//! run the handler, collect the body. No sockets. `hello_metrics` is `hello` with metrics
//! on (`--metrics-listen`: counters, histograms and the CPU clock read around each poll):
//! what observability adds to a request, without a load generator sharing the cores.
//!
//! `cargo bench -p wisp-benches --bench instantiate`

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use wisp_engine::{EngineConfig, WispEngine};
use wisp_runtime::{AppSettings, Runtime};
use wisp_trigger_http::HttpTrigger;

fn trigger_for(
    runtime: &tokio::runtime::Runtime,
    wasm: &str,
    key_value_stores: &[&str],
    state_dir: &std::path::Path,
    metrics: wisp_metrics::Metrics,
) -> Arc<HttpTrigger> {
    let engine = WispEngine::new(EngineConfig {
        max_instances: 64,
        ..EngineConfig::default()
    })
    .expect("engine")
    .with_metrics(metrics);
    let mut locked = wisp_app::from_component_file(std::path::Path::new(wasm)).expect("resolve");
    locked.components[0].metadata.key_value_stores =
        key_value_stores.iter().map(|s| s.to_string()).collect();
    let settings = AppSettings {
        runtime_config: wisp_host::RuntimeConfig::default(),
        paths: wisp_host::AppPaths {
            state_dir: state_dir.to_path_buf(),
            app_dir: None,
            files_dir: None,
        },
        limits: Default::default(),
    };
    let generation = runtime
        .block_on(Runtime::new(engine).load(locked, &settings))
        .expect("load");
    generation.http().expect("serves HTTP").clone()
}

fn bench(c: &mut Criterion) {
    // Current-thread, so the measurement is the request path rather than cross-thread
    // wake-ups between criterion's thread and a worker (the server runs on its workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let state = tempfile::tempdir().expect("state dir");
    // `kv_get`: a spin-sdk 5.2 component reading one key from the default store (an
    // SQLite file) per request: instantiation plus a host call that goes to a blocking
    // thread.
    let cases: [(&str, &str, &[&str], &str); 4] = [
        ("hello", wisp_test_programs::HELLO, &[], "/hello"),
        ("hello_metrics", wisp_test_programs::HELLO, &[], "/hello"),
        ("touch4mib", wisp_test_programs::TOUCH4MIB, &[], "/hello"),
        (
            "kv_get",
            wisp_test_programs::CAPS_V5,
            &["default"],
            "/kv/get?store=default&key=bench",
        ),
    ];
    for (name, wasm, stores, path) in cases {
        let metrics = match name {
            "hello_metrics" => wisp_metrics::Metrics::new(),
            _ => wisp_metrics::Metrics::disabled(),
        };
        let trigger = trigger_for(&runtime, wasm, stores, state.path(), metrics);
        if name == "kv_get" {
            runtime.block_on(async {
                let request = http::Request::builder()
                    .method("PUT")
                    .uri("http://localhost/kv/set?store=default&key=bench")
                    .body(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"value"))
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    )
                    .unwrap();
                assert_eq!(trigger.handle(request, client).await.status(), 200);
            });
        }
        let uri = format!("http://localhost{path}");
        c.bench_function(&format!("instantiate_and_handle/{name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = http::Request::builder()
                        .uri(&uri)
                        .header("host", "localhost")
                        .body(
                            http_body_util::Empty::new()
                                .map_err(|never| match never {})
                                .boxed_unsync(),
                        )
                        .unwrap();
                    let response = trigger.handle(request, client).await;
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.unwrap().to_bytes()
                })
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

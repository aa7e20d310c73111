//! In-process cost of one request: route, fresh instance from the pre-linked component,
//! run the handler, collect the body. No sockets.
//!
//! `cargo bench -p wisp-benches --bench instantiate`

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use wisp_engine::{EngineConfig, LoadedApp, WispEngine};
use wisp_trigger_http::HttpTrigger;

fn trigger_for(runtime: &tokio::runtime::Runtime, wasm: &str) -> Arc<HttpTrigger> {
    let engine = WispEngine::new(EngineConfig {
        max_instances: 64,
        ..EngineConfig::default()
    })
    .expect("engine");
    let locked = wisp_app::from_component_file(std::path::Path::new(wasm)).expect("resolve");
    let paths = wisp_host::AppPaths {
        state_dir: std::env::temp_dir(),
        app_dir: None,
    };
    let capabilities = runtime
        .block_on(wisp_host::AppCapabilities::build(
            &locked,
            &wisp_host::RuntimeConfig::default(),
            &paths,
        ))
        .expect("capabilities");
    let app = LoadedApp::load(&engine, locked, &paths.state_dir, &capabilities).expect("load");
    HttpTrigger::new(Arc::new(app)).expect("trigger")
}

fn bench(c: &mut Criterion) {
    // Current-thread, so the measurement is the request path rather than cross-thread
    // wake-ups between criterion's thread and a worker (the server runs on its workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
    for (name, wasm) in [
        ("hello", wisp_test_programs::HELLO),
        ("touch4mib", wisp_test_programs::TOUCH4MIB),
    ] {
        let trigger = trigger_for(&runtime, wasm);
        c.bench_function(&format!("instantiate_and_handle/{name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = http::Request::builder()
                        .uri("http://localhost/hello")
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

//! The runtime as an embedder (the node, the shim) uses it: load an app, run it with or
//! without a listener of its own, call it, reload it in place, shut it down.

use http_body_util::BodyExt;
use std::io::{Read, Write};
use std::sync::Arc;
use wisp_engine::{EngineConfig, WispEngine};
use wisp_host::{AppPaths, RuntimeConfig};
use wisp_runtime::{AppSettings, Generation, RunningApp, Runtime, RuntimeError};
use wisp_trigger_http::ServerConfig;

fn runtime() -> Runtime {
    Runtime::new(
        WispEngine::new(EngineConfig {
            max_instances: 8,
            cache_dir: None,
            ..EngineConfig::default()
        })
        .unwrap(),
    )
}

fn settings(state: &tempfile::TempDir) -> AppSettings {
    AppSettings {
        runtime_config: RuntimeConfig::default(),
        paths: AppPaths {
            state_dir: state.path().to_path_buf(),
            app_dir: None,
            files_dir: None,
        },
        limits: Default::default(),
    }
}

async fn load(runtime: &Runtime, wasm: &str, state: &tempfile::TempDir) -> Arc<Generation> {
    let locked = wisp_app::from_component_file(std::path::Path::new(wasm)).unwrap();
    runtime.load(locked, &settings(state)).await.unwrap()
}

/// One GET through the app's current HTTP trigger, in-process.
async fn get(running: &RunningApp, path: &str) -> (u16, String) {
    let request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap();
    let trigger = running.http().expect("the app serves HTTP").get();
    let response = trigger
        .handle(request, "127.0.0.1:1".parse().unwrap())
        .await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_routes_requests_reloads_and_shuts_down() {
    let runtime = runtime();
    let state = tempfile::tempdir().unwrap();
    let hello = load(&runtime, wisp_test_programs::HELLO, &state).await;
    assert!(!hello.has_event_triggers());
    // No listener: the embedder routes requests itself (as the node does by Host).
    let mut running = RunningApp::start(hello, None, ServerConfig::default());
    assert_eq!(
        get(&running, "/x").await,
        (200, "Hello from Wisp\n".to_owned())
    );

    let echo = load(&runtime, wisp_test_programs::ECHO, &state).await;
    running.reload(echo).await;
    let (status, body) = get(&running, "/after?reload=1").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /after?reload=1\n"), "{body}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_app_serves_its_own_listener() {
    let runtime = runtime();
    let state = tempfile::tempdir().unwrap();
    let generation = load(&runtime, wisp_test_programs::HELLO, &state).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let running = RunningApp::start(generation, Some(listener), ServerConfig::default());
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Hello from Wisp\n"), "{response}");
    running.shutdown().await;
    // The listener is closed once the app is shut down.
    assert!(std::net::TcpStream::connect(address).is_err());
}

#[tokio::test]
async fn an_unknown_trigger_type_is_refused_with_the_ones_it_runs() {
    let runtime = runtime();
    let state = tempfile::tempdir().unwrap();
    let mut locked =
        wisp_app::from_component_file(std::path::Path::new(wisp_test_programs::HELLO)).unwrap();
    locked.triggers[0].trigger_type = "mqtt".to_owned();
    let err = runtime.load(locked, &settings(&state)).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnknownTriggerType { trigger_type, .. } if trigger_type == "mqtt"),
        "{err}"
    );
    assert!(
        err.to_string().contains("it runs http, redis, cron"),
        "{err}"
    );

    // An embedder that leaves a trigger type out refuses apps that use it.
    let http_only = Runtime::with_trigger_types(
        runtime.engine().clone(),
        vec![Arc::new(wisp_trigger_http::HttpTriggerType::default())],
    );
    let mut cron_app =
        wisp_app::from_component_file(std::path::Path::new(wisp_test_programs::HELLO)).unwrap();
    cron_app.triggers[0].trigger_type = "cron".to_owned();
    let err = http_only
        .load(cron_app, &settings(&state))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("it runs http)"), "{err}");
}

//! Shared by the engine's integration tests: a test program loaded as an app, and a GET.

use http_body_util::BodyExt;
use std::sync::Arc;
use wisp_engine::{AppLimits, GuestFault, LoadedApp, LoadedComponent, WispEngine};
use wisp_host::{AppCapabilities, AppPaths, RuntimeConfig};

/// `program` loaded as an app's only component, in `dir`, with `limits`.
pub async fn load_program(
    engine: &WispEngine,
    dir: &std::path::Path,
    program: &str,
    limits: &AppLimits,
) -> Arc<LoadedComponent> {
    let locked = wisp_app::from_component_file(std::path::Path::new(program)).unwrap();
    let id = locked.components[0].id.clone();
    let paths = AppPaths {
        state_dir: dir.join("state"),
        app_dir: None,
        files_dir: Some(dir.join("files")),
    };
    let capabilities = AppCapabilities::build(&locked, &RuntimeConfig::default(), &paths)
        .await
        .unwrap();
    let app =
        LoadedApp::load_with_limits(engine, locked, &paths.files_dir(), &capabilities, limits)
            .unwrap();
    app.component(&id).unwrap().clone()
}

/// `GET path`: the status and body, or the guest's fault.
pub async fn get(
    component: &Arc<LoadedComponent>,
    path: &str,
) -> Result<(u16, String), Option<GuestFault>> {
    let request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap();
    let response = component.handle(request).await.map_err(|err| err.fault)?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

//! `spin-sdk-v5`: an app written with the Spin Rust SDK 5.2 (WASI 0.2).
//!
//! `#[http_component]` exports `wasi:http/incoming-handler`; the handler
//! answers `200`, `content-type: text/plain`, body
//! `Hello from spin-sdk 5 <path>\n` where `<path>` is the request's path.
//! It uses no Spin host interface, so the component imports only WASI.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(format!("Hello from spin-sdk 5 {}\n", request.path()))
        .build())
}

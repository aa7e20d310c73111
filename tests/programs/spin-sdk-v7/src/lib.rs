//! `spin-sdk-v7`: an app written with the Spin Rust SDK 7.0 (WASI 0.3).
//!
//! `#[http_service]` exports `wasi:http/handler@0.3.0`; the handler answers
//! `200`, `content-type: text/plain`, body `Hello from spin-sdk 7 <path>\n`
//! where `<path>` is the request's path. A request with an `x-chain` header
//! (set by the `middleware-a`/`-b` guests in front of it) adds the line
//! `chain: <value>\n` and gets the value back as `x-chain-back`. It uses no
//! Spin host interface, so the component imports only WASI.

use spin_sdk::http::{HeaderMap, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    let mut body = format!("Hello from spin-sdk 7 {}\n", request.uri().path());
    if let Some(chain) = request.headers().get("x-chain") {
        body.push_str(&format!("chain: {}\n", chain.to_str().unwrap_or("?")));
        headers.insert("x-chain-back", chain.clone());
    }
    (StatusCode::OK, headers, body)
}

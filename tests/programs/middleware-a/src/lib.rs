//! `middleware-a` and `middleware-b` (one source, two packages): HTTP middleware written
//! with spin-sdk 7's `http-middleware` feature. Each exports `wasi:http/handler@0.3.0` and
//! imports it to call the next handler of the chain.
//!
//! - Any path: appends its package name to the request's `x-chain` header (comma
//!   separated), calls the next handler, and appends its name to the response's
//!   `x-chain-back` header, so a chain shows the order requests and responses pass.
//! - A path ending in `/middleware/variable`: answers itself (no next handler) with
//!   `<name> variable: <value>` or `<name> variable error: <error>` for the variable
//!   `greeting`, which it reaches only when it inherits the component's variables.

use spin_sdk::http::{Error, HeaderValue, IntoResponse, Request};
use spin_sdk::http_service;
use spin_sdk::wasip3::http::types::Response;

const NAME: &str = env!("CARGO_PKG_NAME");

#[http_service]
async fn handle(mut request: Request) -> Result<Response, Error> {
    if request.uri().path().ends_with("/middleware/variable") {
        let answer = match spin_sdk::variables::get("greeting").await {
            Ok(value) => format!("{NAME} variable: {value}\n"),
            Err(error) => format!("{NAME} variable error: {error:?}\n"),
        };
        return Ok(answer.into_response()?);
    }
    let chain = appended(request.headers().get("x-chain"));
    request.headers_mut().insert("x-chain", chain);
    let mut response = spin_sdk::http::next(request).await?;
    let back = appended(response.headers().get("x-chain-back"));
    response.headers_mut().insert("x-chain-back", back);
    Ok(response.into_response()?)
}

/// `value,NAME`, or `NAME` when there is no value yet.
fn appended(value: Option<&HeaderValue>) -> HeaderValue {
    let text = match value.and_then(|v| v.to_str().ok()) {
        Some(before) => format!("{before},{NAME}"),
        None => NAME.to_owned(),
    };
    HeaderValue::from_str(&text).expect("package names are valid header values")
}

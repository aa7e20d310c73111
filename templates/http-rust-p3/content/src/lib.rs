use spin_sdk::http::{HeaderMap, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

/// Answers every request routed to this component (WASI 0.3: async, streaming bodies).
#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    println!("{} {}", request.method(), request.uri().path());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    (StatusCode::OK, headers, String::from("Hello from {{project-name}}!\n"))
}

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

/// Answers every request routed to this component.
#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    println!("{} {}", request.method(), request.path());
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("Hello from {{project-name}}!\n")
        .build())
}

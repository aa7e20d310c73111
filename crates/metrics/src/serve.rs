//! `GET /metrics` and the live dashboard (`/dashboard`) on a listener of their own
//! (`wisp up --metrics-listen`).

use crate::{CONTENT_TYPE, Metrics};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use std::future::Future;

/// The dashboard's static files: a page, its script and its style, embedded in the
/// binary. They hold no data: the script reads `/metrics` (and on a node `/v1/apps`).
const DASHBOARD: [(&str, &str, &str); 3] = [
    (
        "/dashboard",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/dashboard.js"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/dashboard.css"),
    ),
];

/// The dashboard file at `path`, answered to a `GET` or `HEAD`; `None` for other paths.
/// Served with a policy that lets the page load nothing but itself.
pub fn dashboard_response<B>(request: &Request<B>) -> Option<Response<Bytes>> {
    let (_, content_type, text) = DASHBOARD
        .iter()
        .find(|(path, _, _)| *path == request.uri().path())?;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Some(not_allowed());
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, *content_type)
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'",
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Bytes::from_static(text.as_bytes()))
        .expect("static response parts are valid");
    Some(response)
}

fn not_allowed() -> Response<Bytes> {
    Response::builder()
        .status(StatusCode::METHOD_NOT_ALLOWED)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::ALLOW, "GET, HEAD")
        .body(Bytes::from_static(b"Method Not Allowed: use GET\n"))
        .expect("static response parts are valid")
}

/// The answer to a request for the metrics: `GET`/`HEAD /metrics` gets the registry in
/// the OpenMetrics text format; anything else a 404 or 405.
pub fn metrics_response<B>(metrics: &Metrics, request: &Request<B>) -> Response<Bytes> {
    metrics_response_with(metrics, None, request)
}

/// [`metrics_response`] with a second process's exposition (a node's worker process)
/// merged in: `(its name, its metrics)`, see [`crate::with_other_process`].
pub fn metrics_response_with<B>(
    metrics: &Metrics,
    other: Option<(&str, &str)>,
    request: &Request<B>,
) -> Response<Bytes> {
    let respond = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Bytes::from(body))
            .expect("static response parts are valid")
    };
    if request.uri().path() != "/metrics" {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Not Found: the metrics are at /metrics, the dashboard at /dashboard\n".to_owned(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return not_allowed();
    }
    let own = metrics.encode();
    let text = match other {
        Some((process, text)) => crate::with_other_process(&own, text, process),
        None => own,
    };
    respond(StatusCode::OK, CONTENT_TYPE, text)
}

/// Answers `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("metrics listener: cannot accept a connection: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = dashboard_response(&request)
                    .unwrap_or_else(|| metrics_response(&metrics, &request))
                    .map(Full::new);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A scraper that goes away mid-answer is no error worth a log line.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(io, service)
                .await;
        });
    }
}

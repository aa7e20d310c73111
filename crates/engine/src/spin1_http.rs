//! Spin 1.x's outbound HTTP, `fermyon:spin/http` (unversioned): one call sends a whole
//! request and returns the whole response. It goes through the same hooks as `wasi:http`
//! (the component's `allowed_outbound_hosts`, the blocked networks, the outbound budget,
//! in-process dispatch), so it grants nothing `wasi:http` would not. A relative URI
//! (`/path`) is a request to the app itself, as in Spin: `http://self/path`.

use crate::host::Host;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi_http::{Error as WasiHttpError, WasiHttpHooks};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/spin1",
        world: "wisp:spin1/outbound-http",
        imports: { default: async | trappable },
    });
}

use bindings::fermyon::spin::http as spin_http;
use bindings::fermyon::spin::http_types::{self, HttpError, Method, Request, Response};

/// Largest response body the host buffers for one call; larger ones fail with
/// `runtime-error` (the interface has no streaming form).
pub(crate) const MAX_RESPONSE_BODY: usize = 32 << 20;

/// Links `fermyon:spin/http` and its types.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    http_types::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    spin_http::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)
}

impl http_types::Host for Host {}

impl spin_http::Host for Host {
    async fn send_request(
        &mut self,
        request: Request,
    ) -> wasmtime::Result<Result<Response, HttpError>> {
        let request = match to_http(request) {
            Ok(request) => request,
            Err(error) => return Ok(Err(error)),
        };
        let sent = Box::into_pin(self.outbound_hooks().send_request(
            request,
            None,
            Box::new(async { Ok(()) }),
        ))
        .await;
        let (response, connection) = match sent {
            Ok(sent) => sent,
            Err(error) => return Ok(Err(from_wasi_error(&error))),
        };
        // The connection's driver runs while the body is read, and stops with it.
        let _driver = wasmtime_wasi::runtime::spawn(async move {
            let _ = Box::into_pin(connection).await;
        });
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, MAX_RESPONSE_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                tracing::warn!(
                    "outbound response body not read: {error} (at most {MAX_RESPONSE_BODY} bytes are buffered for fermyon:spin/http)"
                );
                return Ok(Err(HttpError::RuntimeError));
            }
        };
        let headers = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        Ok(Ok(Response {
            status: parts.status.as_u16(),
            headers: Some(headers),
            body: Some(body.to_vec()),
        }))
    }
}

/// The request as the hooks take it, or the interface's error for a malformed one.
fn to_http(request: Request) -> Result<http::Request<wasmtime_wasi_http::WasiBody>, HttpError> {
    let uri = match request.uri.starts_with('/') {
        true => format!("http://self{}", request.uri),
        false => request.uri,
    };
    let uri: http::Uri = uri.parse().map_err(|_| HttpError::InvalidUrl)?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(HttpError::InvalidUrl);
    }
    if !request.params.is_empty() {
        tracing::debug!("fermyon:spin/http request params are ignored (deprecated in Spin)");
    }
    let mut builder = http::Request::builder()
        .method(method(request.method))
        .uri(uri);
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    let body = Full::new(Bytes::from(request.body.unwrap_or_default()))
        .map_err(|never| match never {})
        .boxed_unsync();
    // A header name or value that HTTP cannot carry.
    builder.body(body).map_err(|_| HttpError::RequestError)
}

/// The HTTP method of the interface's enum.
pub(crate) fn method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Patch => http::Method::PATCH,
        Method::Head => http::Method::HEAD,
        Method::Options => http::Method::OPTIONS,
    }
}

/// The interface's error for a failed send; the hooks have logged the reason.
fn from_wasi_error(error: &WasiHttpError) -> HttpError {
    match error {
        WasiHttpError::HttpRequestDenied | WasiHttpError::DestinationIpProhibited => {
            HttpError::DestinationNotAllowed
        }
        WasiHttpError::HttpRequestUriInvalid => HttpError::InvalidUrl,
        WasiHttpError::ConnectionLimitReached => HttpError::TooManyRequests,
        _ => HttpError::RequestError,
    }
}

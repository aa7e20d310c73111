//! Spin 1.x HTTP components: they export `fermyon:spin/inbound-http` (spin-sdk 1.x's
//! `#[http_component]`), which takes the whole request and returns the whole response.
//! The request is what Spin passes: the method, the path and query as `uri`, every header
//! (the Spin headers included), no `params`, and the body read in full.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use std::sync::Arc;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::WasiBody;
use wisp_engine::{EventCall, GuestError, Host, LoadedComponent};

// The generated export accessors use `unsafe` internally (TypedFunc::new_unchecked on
// types bindgen has already checked); the workspace denies `unsafe_code` for our code.
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/spin1",
        world: "wisp:spin1/inbound-http",
        exports: { default: async },
    });
}

use bindings::InboundHttpPre;
use bindings::fermyon::spin::http_types;

/// The most a Spin 1.x component's response body may be: it is returned in one piece,
/// so this bounds what one request holds outside the guest.
pub(crate) const MAX_RESPONSE_BODY: usize = 32 << 20;

/// Whether `pre` exports Spin 1.x's HTTP handler.
pub(crate) fn exports_handler(pre: &InstancePre<Host>) -> bool {
    InboundHttpPre::new(pre.clone()).is_ok()
}

/// Runs `component` for `request` (routed, with the Spin headers set).
pub(crate) async fn handle(
    component: &Arc<LoadedComponent>,
    request: Request<WasiBody>,
) -> Result<Response<WasiBody>, GuestError> {
    let (parts, body) = request.into_parts();
    let Some(method) = method(&parts.method) else {
        // The interface has no case for it; Spin answers the same.
        return Ok(Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(super::full(Bytes::new()))
            .expect("a status and an empty body make a response"));
    };
    let body = super::read_body(body, component.request_timeout()).await?;
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_owned());
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let guest_request = http_types::Request {
        method,
        uri,
        headers,
        params: Vec::new(),
        body: Some(body.to_vec()),
    };
    let response = component
        .run_http_call(
            &parts.extensions,
            |pre| -> EventCall<http_types::Response> {
                Box::new(move |store| {
                    Box::pin(async move {
                        let instance = InboundHttpPre::new(pre)?
                            .instantiate_async(&mut *store)
                            .await?;
                        instance
                            .fermyon_spin_inbound_http()
                            .call_handle_request(&mut *store, &guest_request)
                            .await
                    })
                })
            },
        )
        .await?;
    to_response(response).map_err(|reason| GuestError {
        fault: None,
        message: format!("its fermyon:spin/inbound-http response is not valid: {reason}"),
    })
}

/// The interface's method, or `None` for one it cannot express.
fn method(method: &http::Method) -> Option<http_types::Method> {
    Some(match *method {
        http::Method::GET => http_types::Method::Get,
        http::Method::POST => http_types::Method::Post,
        http::Method::PUT => http_types::Method::Put,
        http::Method::DELETE => http_types::Method::Delete,
        http::Method::PATCH => http_types::Method::Patch,
        http::Method::HEAD => http_types::Method::Head,
        http::Method::OPTIONS => http_types::Method::Options,
        _ => return None,
    })
}

/// The guest's response as HTTP: its status (100–599), headers and body.
fn to_response(response: http_types::Response) -> Result<Response<WasiBody>, String> {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (100..600).contains(&s.as_u16()))
        .ok_or_else(|| format!("{} is not an HTTP status code", response.status))?;
    let body = response.body.unwrap_or_default();
    if body.len() > MAX_RESPONSE_BODY {
        return Err(format!(
            "its body is {} bytes, more than the {MAX_RESPONSE_BODY} a Spin 1.x response may have; stream large responses with wasi:http instead",
            body.len()
        ));
    }
    let mut builder = Response::builder().status(status);
    for (name, value) in response.headers.unwrap_or_default() {
        let header = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
        builder = builder.header(header, value);
    }
    builder
        .body(super::full(body))
        .map_err(|e| format!("cannot build the response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> http_types::Response {
        http_types::Response {
            status,
            headers: Some(
                headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ),
            body: Some(body.to_vec()),
        }
    }

    #[test]
    fn guest_responses_become_http_responses() {
        let ok = to_response(response(201, &[("content-type", "text/plain")], b"made")).unwrap();
        assert_eq!(ok.status(), StatusCode::CREATED);
        assert_eq!(ok.headers()["content-type"], "text/plain");
        let empty = to_response(http_types::Response {
            status: 204,
            headers: None,
            body: None,
        })
        .unwrap();
        assert_eq!(empty.status(), StatusCode::NO_CONTENT);
        assert!(empty.headers().is_empty());
    }

    #[test]
    fn malformed_guest_responses_are_refused_with_the_reason() {
        let status = to_response(response(99, &[], b"")).unwrap_err();
        assert!(status.contains("99 is not an HTTP status code"), "{status}");
        let name = to_response(response(200, &[("bad name", "x")], b"")).unwrap_err();
        assert!(
            name.contains("`bad name` is not a valid header name"),
            "{name}"
        );
        let value = to_response(response(200, &[("x-ok", "line\nbreak")], b"")).unwrap_err();
        assert!(value.contains("value of `x-ok`"), "{value}");
    }

    #[test]
    fn methods_outside_the_interface_have_no_case() {
        assert!(matches!(
            method(&http::Method::GET),
            Some(http_types::Method::Get)
        ));
        assert!(method(&http::Method::TRACE).is_none());
        assert!(method(&http::Method::CONNECT).is_none());
    }
}

//! Helpers shared by the WASI 0.2 test guests.
//!
//! Every guest answers through [`respond`], so each guest's own code is only
//! the behaviour under test.

use std::io::{Read, Write};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Sends a complete response: status, a `content-type` header and `body`.
///
/// A failure to send is ignored: the host has gone away and nobody is left to
/// tell.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    respond_with_headers(
        out,
        status,
        &[("content-type".to_string(), content_type.as_bytes().to_vec())],
        body,
    );
}

/// Sends `status` with these headers and `body`.
pub fn respond_with_headers(
    out: ResponseOutparam,
    status: u16,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) {
    let headers = Fields::from_list(headers).expect("valid response headers");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(status)
        .expect("status code is valid");
    let outgoing = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));

    let mut stream = outgoing.write().expect("body stream is taken once");
    // `blocking_write_and_flush` takes at most 4096 bytes per call; the
    // `io::Write` impl honours `check-write` and splits as needed.
    let sent = stream
        .write_all(body)
        .and_then(|()| Write::flush(&mut stream));
    drop(stream);
    if sent.is_ok() {
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

/// Sends `200 OK` with a `text/plain` body.
pub fn ok_text(out: ResponseOutparam, body: impl AsRef<[u8]>) {
    respond(out, 200, "text/plain", body.as_ref());
}

/// The request method as it appears on the wire (`GET`, `POST`, ...).
pub fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// Reads the whole request body.
pub fn read_body(request: &IncomingRequest) -> std::io::Result<Vec<u8>> {
    let body = request
        .consume()
        .map_err(|()| std::io::Error::other("request body already consumed"))?;
    let mut bytes = Vec::new();
    {
        let mut stream = body
            .stream()
            .map_err(|()| std::io::Error::other("request body stream already taken"))?;
        stream.read_to_end(&mut bytes)?;
    }
    drop(body);
    Ok(bytes)
}

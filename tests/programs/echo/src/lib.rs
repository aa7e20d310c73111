//! `echo`: reflects the request back so tests can see what the guest got.
//!
//! Body of the `200 text/plain` response:
//!
//! ```text
//! <METHOD> <path-with-query>
//! <name>: <value>        one line per request header, sorted by name then value
//!
//! <request body bytes>
//! ```
//!
//! The response header `echo-scheme` is the scheme the request came with (`http`,
//! `https`), as `incoming-request.scheme` tells it.

use std::io::Write;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam, Scheme};

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mut text = Vec::new();
        let scheme = match request.scheme() {
            Some(Scheme::Http) => "http".to_owned(),
            Some(Scheme::Https) => "https".to_owned(),
            Some(Scheme::Other(other)) => other,
            None => "none".to_owned(),
        };
        let method = guest_common::method_name(&request.method());
        let path = request.path_with_query().unwrap_or_default();
        let _ = writeln!(text, "{method} {path}");

        let mut headers = request.headers().entries();
        headers.sort();
        for (name, value) in headers {
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(b": ");
            text.extend_from_slice(&value);
            text.push(b'\n');
        }
        text.push(b'\n');

        match guest_common::read_body(&request) {
            Ok(body) => {
                text.extend_from_slice(&body);
                let headers = [
                    ("content-type".to_owned(), b"text/plain".to_vec()),
                    ("echo-scheme".to_owned(), scheme.into_bytes()),
                ];
                guest_common::respond_with_headers(out, 200, &headers, &text);
            }
            Err(e) => guest_common::respond(
                out,
                500,
                "text/plain",
                format!("reading the request body failed: {e}\n").as_bytes(),
            ),
        }
    }
}

wasip2::http::proxy::export!(Echo);

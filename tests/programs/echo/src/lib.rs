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

use std::io::Write;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mut text = Vec::new();
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
                guest_common::ok_text(out, text);
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

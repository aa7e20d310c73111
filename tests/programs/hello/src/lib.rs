//! `hello`: the smallest WASI 0.2 HTTP component.
//!
//! Answers every request with `200`, `content-type: text/plain` and the body
//! `Hello from Wisp\n`.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        guest_common::ok_text(out, "Hello from Wisp\n");
    }
}

wasip2::http::proxy::export!(Hello);

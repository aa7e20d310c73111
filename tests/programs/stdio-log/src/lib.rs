//! `stdio-log`: writes one line to stdout and one to stderr, then answers
//! `200` with the body `logged\n`.
//!
//! Used to check that the host captures (or forwards) guest output.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct StdioLog;

impl Guest for StdioLog {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        println!("hello stdout");
        eprintln!("hello stderr");
        guest_common::ok_text(out, "logged\n");
    }
}

wasip2::http::proxy::export!(StdioLog);

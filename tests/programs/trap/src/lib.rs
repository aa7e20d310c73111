//! `trap`: the handler panics, which aborts, which is a wasm trap.
//!
//! The host must turn the trap into a 500 and keep serving.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Trap;

impl Guest for Trap {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        panic!("guest asked to trap");
    }
}

wasip2::http::proxy::export!(Trap);

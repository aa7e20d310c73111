//! `spin-loop`: the handler spins forever without any I/O.
//!
//! Only the host's deadline (epoch interruption) can stop it.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct SpinLoop;

impl Guest for SpinLoop {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut counter = 0u64;
        loop {
            // `black_box` keeps the optimizer from proving the loop has no
            // effect and deleting it.
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

wasip2::http::proxy::export!(SpinLoop);

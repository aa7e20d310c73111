//! `spin-loop`: on a path starting with `/loop` the handler spins forever without any
//! I/O; on any other path it answers `200` `Hello from Wisp`.
//!
//! Only the host's deadline (epoch interruption) or a cancellation can stop the loop. The
//! healthy path lets one component serve both sides of a noisy-neighbour benchmark, in
//! Wisp and in `wasmtime serve` alike.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct SpinLoop;

impl Guest for SpinLoop {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if !path.starts_with("/loop") {
            guest_common::ok_text(out, "Hello from Wisp\n");
            return;
        }
        let mut counter = 0u64;
        loop {
            // `black_box` keeps the optimizer from proving the loop has no
            // effect and deleting it.
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

wasip2::http::proxy::export!(SpinLoop);

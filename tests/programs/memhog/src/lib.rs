//! `memhog`: the handler allocates 1 MiB blocks forever, touching every page.
//!
//! It never answers: growing memory eventually fails (the host's per-instance
//! limit), the allocation error aborts, and the abort is a wasm trap.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

const BLOCK: usize = 1 << 20;
const PAGE: usize = 4096;

struct MemHog;

impl Guest for MemHog {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; BLOCK];
            for i in (0..BLOCK).step_by(PAGE) {
                block[i] = 1;
            }
            hoard.push(std::hint::black_box(block));
        }
    }
}

wasip2::http::proxy::export!(MemHog);

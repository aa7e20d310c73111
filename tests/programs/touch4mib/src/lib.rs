//! `touch4mib`: every request allocates 4 MiB and writes one byte per 4 KiB
//! page, so each instance really commits 4 MiB of linear memory.
//!
//! Answers `200` with `touched 4194304 bytes sum=<sum>\n`, where `<sum>` is the
//! sum of the bytes written (page index modulo 256): always `130560`.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

const SIZE: usize = 4 << 20;
const PAGE: usize = 4096;

struct Touch4Mib;

impl Guest for Touch4Mib {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut memory = std::hint::black_box(vec![0u8; SIZE]);
        for i in (0..SIZE).step_by(PAGE) {
            memory[i] = (i / PAGE) as u8;
        }
        let memory = std::hint::black_box(memory);
        let sum: u64 = (0..SIZE).step_by(PAGE).map(|i| u64::from(memory[i])).sum();
        guest_common::ok_text(out, format!("touched {SIZE} bytes sum={sum}\n"));
    }
}

wasip2::http::proxy::export!(Touch4Mib);

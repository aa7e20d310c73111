//! `faults`: one kind of misbehaviour per path, for the guest fault matrix
//! (`crates/cli/tests/faults.rs`). Each runs beside a healthy component, which must not
//! notice.
//!
//! - `/loop`: spins forever without I/O.
//! - `/memory`: allocates and touches 1 MiB blocks until growing memory fails (a trap).
//! - `/recursion`: recurses without bound, 1 KiB of stack per call, until the stack
//!   overflows (a trap).
//! - `/huge?mib=N`: answers `200` with `N` MiB (default 64) of `x`, streamed.
//! - `/dribble`: answers `200`, then writes one byte every 100 ms, forever.
//! - `/no-read`: answers `200` `ignored` without reading the request body.
//! - `/write-forever`: answers `200`, then writes 64 KiB chunks forever, retrying
//!   (without waiting) whenever a write fails: a guest that keeps writing to a client that
//!   has gone away.
//! - anything else: `200` `Hello from faults`.
//!
//! Only the last segment of the path counts, so the component can sit under any route
//! (`/fault/loop`).

use std::io::Write;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const MIB: usize = 1 << 20;

struct Faults;

impl Guest for Faults {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        match route.rsplit('/').next().unwrap_or_default() {
            "loop" => spin(),
            "memory" => hoard(),
            "recursion" => {
                let depth = recurse(0, &mut [0; 1024]);
                guest_common::ok_text(out, format!("returned from depth {depth}\n"));
            }
            "huge" => {
                let mib = query
                    .strip_prefix("mib=")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(64);
                let mut body = start(out);
                let chunk = vec![b'x'; MIB];
                for _ in 0..mib {
                    if body.write_all(&chunk).is_err() {
                        return;
                    }
                }
                let _ = body.flush();
                body.finish();
            }
            "dribble" => {
                let mut body = start(out);
                loop {
                    if body.write_all(b".").and_then(|()| body.flush()).is_err() {
                        return;
                    }
                    wasip2::clocks::monotonic_clock::subscribe_duration(100_000_000).block();
                }
            }
            "no-read" => guest_common::ok_text(out, "ignored\n"),
            "write-forever" => {
                let mut body = start(out);
                let chunk = vec![b'w'; 64 << 10];
                loop {
                    let _ = body.write_all(&chunk);
                }
            }
            _ => guest_common::ok_text(out, "Hello from faults\n"),
        }
    }
}

/// A `200` response whose body the caller writes.
struct Body {
    stream: Option<wasip2::io::streams::OutputStream>,
    outgoing: OutgoingBody,
}

fn start(out: ResponseOutparam) -> Body {
    let response = OutgoingResponse::new(Fields::new());
    let outgoing = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("body stream is taken once");
    Body {
        stream: Some(stream),
        outgoing,
    }
}

impl Body {
    fn finish(mut self) {
        drop(self.stream.take());
        let _ = OutgoingBody::finish(self.outgoing, None);
    }
}

impl Write for Body {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream
            .as_mut()
            .expect("open until finished")
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.as_mut().expect("open until finished").flush()
    }
}

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        // `black_box` keeps the optimizer from deleting a loop without effects.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; MIB];
        for i in (0..MIB).step_by(4096) {
            block[i] = 1;
        }
        hoard.push(std::hint::black_box(block));
    }
}

/// Recurses until the stack overflows; the condition is never true but the optimizer
/// cannot know, so the recursion is neither removed nor turned into a loop.
#[inline(never)]
fn recurse(depth: u64, parent: &mut [u8; 1024]) -> u64 {
    let mut frame = [0u8; 1024];
    frame[0] = parent[0].wrapping_add(1);
    if std::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    let below = recurse(depth + 1, std::hint::black_box(&mut frame));
    below + u64::from(frame[1023])
}

wasip2::http::proxy::export!(Faults);

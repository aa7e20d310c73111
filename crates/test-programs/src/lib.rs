//! Paths of the guest components used by Wisp's tests and benches, and the test-side
//! servers those tests share ([`otlp`]).
//!
//! Guest-visible behaviour is tested with real components. The small guest
//! crates live in `tests/programs` (a separate Cargo workspace); this crate's
//! build script compiles them with `cargo build --release --target
//! wasm32-wasip2` into `target/guest-programs` at the repository root and
//! exposes the absolute path of each `.wasm` component as a constant below.
//! Most are WASI 0.2 `wasi:http/incoming-handler` components importing only
//! WASI; the exceptions ([`P3_HELLO`], the Spin SDK guests and the capability
//! guests [`CAPS_V5`] / [`CAPS_V7`]) say so in their docs.
//!
//! Depend on this crate as a dev-dependency and read the file:
//!
//! ```no_run
//! let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
//! assert_eq!(&wasm[..4], b"\0asm");
//! ```
//!
//! `tests/programs/README.md` lists each guest and the tests that use it.

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

pub mod otlp;

//! `containerd-shim-wisp-v1`: containerd finds it on its `PATH` for the runtime type
//! `io.containerd.wisp.v1`.

use containerd_shim_wasm::shim::Cli as _;

#[allow(unsafe_code)]
fn main() {
    // `RUST_BACKTRACE=1` in containerd's environment (which shims inherit) also makes
    // every error value capture a backtrace, and runwasi makes one on each wasm
    // container's start (its "is this a Linux container?" check fails by design): the
    // unwinder then reads 1.3 MiB of unwind tables in the container's process. Panics keep
    // their backtraces; `RUST_LIB_BACKTRACE=1` turns error backtraces back on.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the first statement of `main`: no other thread exists yet to read the
        // environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    wisp_shim::WispShim::run(None);
}

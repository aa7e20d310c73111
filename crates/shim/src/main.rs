//! `containerd-shim-wisp-v1`: containerd finds it on its `PATH` for the runtime type
//! `io.containerd.wisp.v1`.

use containerd_shim_wasm::shim::Cli as _;

fn main() {
    wisp_shim::WispShim::run(None);
}

//! Links `containerd-shim-wisp-v1` with packed relocations and the symbol order measured
//! for it (see `crates/cli/link_order.rs`).

#[path = "../cli/link_order.rs"]
mod link_order;

fn main() {
    link_order::pack_relative_relocations();
    link_order::link_map();
    link_order::symbol_order();
}

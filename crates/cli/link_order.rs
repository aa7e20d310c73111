//! Link options shared by the build scripts of the `wisp` and `containerd-shim-wisp-v1`
//! binaries (included with `#[path]`): packed relocations, a link map on request, and the
//! symbol order.

use std::path::{Path, PathBuf};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// With `WISP_LINK_MAP=<path>`, the linker writes a map of where every function landed in
/// the binary, with mangled names: `scripts/symbol-order.py` reads it to turn the pages a start
/// touches into a symbol order. It changes nothing in the binary.
pub fn link_map() {
    println!("cargo:rerun-if-env-changed=WISP_LINK_MAP");
    if let Ok(path) = std::env::var("WISP_LINK_MAP") {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={path}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-demangle");
    }
}

/// Links the functions the binary runs to start and to serve first in `.text`, in the order
/// the crate's `symbol-order.txt.gz` lists them (written by `scripts/symbol-order.py` from the
/// pages a real start touched). The kernel maps 64 KiB or more around every page fault on the
/// binary; scattered over 40 MB of code, a start and a few requests kept 16 MiB of it
/// resident, most of it neighbours that never ran. Release builds on x86_64 GNU/Linux only,
/// where rustc links with its bundled lld (the option is lld's); names the linker does not
/// find (a stale order after a `Cargo.lock` change, or a build of several packages at
/// once, which unifies their dependencies' features and so changes the crates' symbol
/// hashes) are skipped, which only loses the packing. The orders are made for `cargo build
/// --release -p wisp-cli` and `-p wisp-shim`, each alone. `WISP_NO_SYMBOL_ORDER=1` turns
/// it off.
pub fn symbol_order() {
    let packed = Path::new(&env("CARGO_MANIFEST_DIR")).join("symbol-order.txt.gz");
    println!("cargo:rerun-if-changed={}", packed.display());
    println!("cargo:rerun-if-env-changed=WISP_NO_SYMBOL_ORDER");
    let wanted = env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && env("WISP_NO_SYMBOL_ORDER") != "1"
        // A linker chosen by the user may not be lld.
        && env("RUSTC_LINKER").is_empty()
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none();
    if !wanted || !packed.exists() {
        return;
    }
    let mut names = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&packed).expect("readable order")),
        &mut names,
    )
    .expect("symbol-order.txt.gz is a gzip of text");
    let order = PathBuf::from(env("OUT_DIR")).join("symbol-order.txt");
    std::fs::write(&order, names).expect("writable OUT_DIR");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Links the binary with `-z pack-relative-relocs` (DT_RELR) on GNU/Linux: its ~100,000
/// relative relocations (a position-independent executable) shrink from 2.4 MB of
/// `.rela.dyn`, which the loader reads at every start, to a few kilobytes. Needs GNU ld
/// 2.38+ to link and glibc 2.36+ to run (Debian 12 and Ubuntu 24.04 have both); build with
/// `WISP_NO_RELR=1` for a binary that must also run on older glibc (Ubuntu 22.04, RHEL 9).
pub fn pack_relative_relocations() {
    println!("cargo:rerun-if-env-changed=WISP_NO_RELR");
    if env("CARGO_CFG_TARGET_OS") == "linux"
        && env("CARGO_CFG_TARGET_ENV") == "gnu"
        && env("WISP_NO_RELR") != "1"
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

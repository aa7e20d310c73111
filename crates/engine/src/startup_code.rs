//! Unmapping the code only a start runs, once started.
//!
//! A release `wisp` (and the shim) is linked with its functions in the order
//! `scripts/symbol-order.py` measured: first those serving requests ran, then the other
//! functions a start ran, between the two markers below (see `crates/cli/link_order.rs`).
//! Once the process serves, the pages of the second group are start-up code that will not
//! run again; [`release_startup_code`] unmaps them, so the idle process keeps only serving
//! code resident. They stay in the page cache: a later call into one of them (a reload,
//! say) faults its page back in.

/// The address of the first function of the start-only group, when linked in that order.
// An unmangled name: the symbol order lists it, and it must not change between builds.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wisp_startup_code_begin() -> u32 {
    // Distinct bodies: identical functions may be merged into one address.
    0x5749_5350
}

/// The address of the last function of the start-only group, when linked in that order.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wisp_startup_code_end() -> u32 {
    0x5053_4957
}

/// The most the start-only group may span; anything larger means the markers were not
/// linked as a pair (no symbol order, another binary), and nothing is unmapped.
const MAX_SPAN: usize = 32 << 20;

/// Unmaps the pages wholly inside the start-only code group (between the two markers);
/// returns how many bytes of code that covered (0 when the binary has no such group).
/// Safe to call at any time and from any thread: code is mapped from the binary file,
/// so a page unmapped here and needed later is read back from the page cache.
/// `WISP_KEEP_STARTUP_CODE=1` keeps it mapped: `scripts/symbol-order.py` must see every
/// page a start ran, and breakpoints or uprobes set in it would be lost.
pub fn release_startup_code() -> usize {
    if std::env::var_os("WISP_KEEP_STARTUP_CODE").is_some_and(|value| value == "1") {
        return 0;
    }
    let page = 4096;
    let begin = (wisp_startup_code_begin as *const () as usize).next_multiple_of(page);
    let end = wisp_startup_code_end as *const () as usize & !(page - 1);
    if end <= begin || end - begin > MAX_SPAN {
        return 0;
    }
    match unmap_code(begin, end - begin) {
        true => end - begin,
        false => 0,
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn unmap_code(start: usize, len: usize) -> bool {
    // SAFETY: the range is page-aligned and lies inside this binary's read-only, private,
    // file-backed code mapping, which is never written: MADV_DONTNEED only drops its page
    // table entries, and the next execution there faults the same bytes back in from the
    // file. No Rust object lives in it.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn unmap_code(_start: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markers_stay_two_functions() {
        assert_ne!(wisp_startup_code_begin(), wisp_startup_code_end());
        assert_ne!(
            wisp_startup_code_begin as *const () as usize,
            wisp_startup_code_end as *const () as usize
        );
    }

    #[test]
    fn without_a_symbol_order_nothing_is_unmapped() {
        // Test binaries are not linked with the order: the markers sit side by side, with
        // no whole page between them, and the code around them must stay mapped.
        assert_eq!(release_startup_code(), 0);
        assert_ne!(wisp_startup_code_begin(), 0);
    }
}

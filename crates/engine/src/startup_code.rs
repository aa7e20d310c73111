//! Unmapping the binary's pages a process no longer runs: the start-up code once it
//! serves, and every read-only page once it waits.
//!
//! A release `wisp` (and the shim) is linked with its functions in the order
//! `scripts/symbol-order.py` measured: first those serving requests ran, then the other
//! functions a start ran, between the two markers below (see `crates/cli/link_order.rs`).
//! Once the process serves, the pages of the second group are start-up code that will not
//! run again; [`release_startup_code`] unmaps them, so the serving process keeps only
//! serving code resident. A process that waits (5 s after its start, then after 30 s
//! idle: [`release_read_only_pages_when_idle`]) unmaps all of the binary's read-only pages
//! ([`release_read_only_pages`]). They stay in the page cache: code that runs later (a
//! reload, the next request) faults its pages back in.

use std::time::Duration;

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
    if keep_code_mapped() {
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

/// Unmaps every page of the segments that are never written (code, read-only data,
/// unwind tables; not the relocated read-only data, which was written at load) of this
/// binary and of the shared libraries it loaded (libc, libm, the loader: 2-3 MiB more of
/// a settled process), and returns how many bytes that covered. For a process that has settled into waiting: the
/// pages its later work needs (the next request's path) fault back in from the page
/// cache, and the rest stop counting towards its resident memory. A busy process keeps
/// them ([`release_read_only_pages_when_idle`] waits for a quiet stretch).
/// `WISP_KEEP_STARTUP_CODE=1` keeps them too.
pub fn release_read_only_pages() -> usize {
    if keep_code_mapped() {
        return 0;
    }
    read_only_segments()
        .into_iter()
        .filter(|&(start, len)| unmap_code(start, len))
        .map(|(_, len)| len)
        .sum()
}

/// `WISP_KEEP_STARTUP_CODE=1`: nothing of the binary is unmapped.
fn keep_code_mapped() -> bool {
    std::env::var_os("WISP_KEEP_STARTUP_CODE").is_some_and(|value| value == "1")
}

/// How long a process must stay idle before [`release_read_only_pages_when_idle`] unmaps
/// its binary's pages again: long enough that a steady trickle of requests never pays for
/// faulting them back in.
pub const IDLE_RELEASE_AFTER: Duration = Duration::from_secs(30);

/// How long a process must stay idle after it started before the first release: what
/// start-up ran (the container's set-up, loading, linking, compiling) beyond the
/// start-only group will not run again, and a pod that has just started is usually idle.
pub const SETTLE_AFTER: Duration = Duration::from_secs(5);

/// How often the idle watcher reads the process's CPU clock.
const IDLE_STEP: Duration = Duration::from_secs(1);

/// Starts a thread that unmaps the binary's read-only pages ([`release_read_only_pages`]),
/// trims the heap ([`crate::release_free_heap`]) and releases the instance pools' kept
/// memory ([`crate::release_idle_instance_memory`]) once the process has been idle for
/// `settle` after its start, and later for `quiet`: under 1% of one core used in each
/// [`IDLE_STEP`] all that time. While it stays idle, it releases again after each further
/// `quiet` if light work faulted [`REFAULTED_ENOUGH`] back in meanwhile.
/// An idle app then keeps little more than its heap resident; the next request faults
/// the code it runs back in from the page cache (about a millisecond once, measured in
/// `docs/performance.md`). The pages stay in the page cache either way; what changes is
/// that an idle process no longer holds them mapped (and in its cgroup's active set).
/// `also` runs at each of those points (after `settle`, then after each `quiet`), whether
/// or not this process releases again: for helper processes the caller looks after.
pub fn release_read_only_pages_when_idle(settle: Duration, quiet: Duration, also: fn()) {
    let spawned = std::thread::Builder::new()
        .name("release-idle-pages".into())
        .spawn(move || {
            let mut watch = IdleWatch::new(settle, quiet);
            let mut last = process_cpu();
            let mut mapped_after_release: Option<usize> = None;
            loop {
                std::thread::sleep(IDLE_STEP);
                let now = process_cpu();
                if let Some(idle_for) = watch.observe(now.saturating_sub(last), IDLE_STEP) {
                    // What the instance pool kept resident after the last burst goes too
                    // (nothing when an instance is still alive, or already released).
                    let pool = crate::release_idle_instance_memory(Duration::ZERO);
                    // Light work while idle (containerd's state and stats calls into the
                    // shim process, a health check) faults pages back in without ending
                    // the idle stretch: release again once that adds up.
                    let refaulted = mapped_after_release
                        .is_none_or(|after| file_pages_mapped() > after + REFAULTED_ENOUGH);
                    if refaulted {
                        let released = release_read_only_pages();
                        // The last burst's heap high-water mark goes back too.
                        let trimmed = crate::release_free_heap();
                        // After this process's release: pages it no longer maps may be
                        // another process's alone now. Then what `also` ran here goes.
                        also();
                        release_read_only_pages();
                        mapped_after_release = Some(file_pages_mapped());
                        tracing::debug!(
                            "idle for {idle_for:?}: unmapped {released} bytes of read-only pages, heap {trimmed} bytes smaller, instance pool {pool} bytes smaller"
                        );
                    } else {
                        also();
                    }
                }
                // The instance pool's kept memory goes once no instance has run for
                // `quiet`, whatever else the process does meanwhile (two atomic loads when
                // there is nothing to do).
                crate::release_idle_instance_memory(quiet);
                // After the releases: their own cost is not activity.
                last = process_cpu();
            }
        });
    if let Err(error) = spawned {
        tracing::debug!("not watching for idleness: {error}");
    }
}

/// How much of the binary (and other files) faulted back in since the last release
/// makes releasing again worth its cost (a walk of the mappings, then faults).
const REFAULTED_ENOUGH: usize = 1 << 20;

/// The process's resident file-backed (and shared) memory, in bytes: `/proc/self/statm`'s
/// third field; 0 where it cannot be read.
fn file_pages_mapped() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(2)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn process_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The idle watcher's state: how long the process has been idle since its last busy step
/// or release, and whether it has released yet (the first needs only `settle`).
#[derive(Debug)]
struct IdleWatch {
    settle: Duration,
    quiet: Duration,
    idle_for: Duration,
    settled: bool,
}

impl IdleWatch {
    fn new(settle: Duration, quiet: Duration) -> Self {
        Self {
            settle,
            quiet,
            idle_for: Duration::ZERO,
            settled: false,
        }
    }

    /// Takes the CPU the process used during the last `step`; says whether to release
    /// now, with how long the process has been idle: after `settle` the first time, then
    /// after every `quiet` without a busy step.
    fn observe(&mut self, used: Duration, step: Duration) -> Option<Duration> {
        // 1%: the shim process of an idle pod uses 0.3–0.5% (runwasi's ttrpc client to
        // containerd polls every 10 ms).
        if used > step / 100 {
            self.idle_for = Duration::ZERO;
            return None;
        }
        self.idle_for += step;
        let needed = match self.settled {
            false => self.settle,
            true => self.quiet,
        };
        if self.idle_for < needed {
            return None;
        }
        self.settled = true;
        Some(std::mem::take(&mut self.idle_for))
    }
}

/// The page-aligned ranges of the loaded segments without write permission, of the main
/// executable and every shared object but the vDSO (the kernel's, not a file's). Segments
/// that are written at load (those holding `PT_GNU_RELRO`) are writable `PT_LOAD`s and
/// left out.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn read_only_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn each_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call,
        // and `data` is the `Vec` passed to `dl_iterate_phdr` below.
        let (info, ranges) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
        // SAFETY: `dlpi_name` is a NUL-terminated string ("" for the executable).
        let name: &[u8] = match info.dlpi_name.is_null() {
            true => b"",
            false => unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes(),
        };
        if name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
            return 0;
        }
        // SAFETY: as above, `dlpi_phdr` points to `dlpi_phnum` program headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        // An object with text relocations had its code written at load: those pages are
        // private copies now, and unmapping them would bring back the unrelocated file.
        // SAFETY: a loaded object's `PT_DYNAMIC` is mapped and ends with `DT_NULL`.
        if unsafe { has_text_relocations(info.dlpi_addr as usize, headers) } {
            return 0;
        }
        let page = 4096;
        for header in headers {
            if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
                continue;
            }
            let start = info.dlpi_addr as usize + header.p_vaddr as usize;
            let begin = start.next_multiple_of(page);
            let end = (start + header.p_memsz as usize) & !(page - 1);
            if end > begin {
                ranges.push((begin, end - begin));
            }
        }
        0
    }
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the headers it is given and writes to `ranges`.
    unsafe { libc::dl_iterate_phdr(Some(each_object), (&raw mut ranges).cast()) };
    ranges
}

/// Whether a loaded object's dynamic section asks for text relocations (`DT_TEXTREL`, or
/// `DF_TEXTREL` in `DT_FLAGS`).
///
/// # Safety
/// `headers` are the object's program headers and `base` its load address, as the loader
/// reports them: its `PT_DYNAMIC` segment is mapped and ends with a `DT_NULL` entry.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe fn has_text_relocations(base: usize, headers: &[libc::Elf64_Phdr]) -> bool {
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
        return false;
    };
    // An `Elf64_Dyn`: a tag and a value.
    let mut entry = (base + dynamic.p_vaddr as usize) as *const [u64; 2];
    loop {
        // SAFETY: the caller's guarantee: entries up to `DT_NULL` are mapped.
        let [tag, value] = unsafe { *entry };
        let tag = tag as i64;
        match tag {
            DT_NULL => return false,
            DT_TEXTREL => return true,
            DT_FLAGS if value & DF_TEXTREL != 0 => return true,
            _ => {}
        }
        // SAFETY: not past `DT_NULL` yet.
        entry = unsafe { entry.add(1) };
    }
}

#[cfg(not(target_os = "linux"))]
fn read_only_segments() -> Vec<(usize, usize)> {
    Vec::new()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn unmap_code(start: usize, len: usize) -> bool {
    // SAFETY: the range is page-aligned and lies inside one of the read-only, private,
    // file-backed mappings of this binary or a library it loaded (code or constant data,
    // of an object without text relocations), which are never written: MADV_DONTNEED
    // only drops their page table entries, and the next access faults the same bytes back
    // in from the file. Nothing mutable lives in them.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn unmap_code(_start: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first release after `settle` of idle steps, later ones after each `quiet`
    /// without a busy step; a busy step starts the count over.
    #[test]
    fn idle_watch_releases_after_settling_then_every_quiet_stretch() {
        let step = Duration::from_secs(5);
        let idle = Duration::from_millis(2);
        let busy = Duration::from_millis(100);
        let mut watch = IdleWatch::new(Duration::from_secs(10), Duration::from_secs(15));
        let steps = [
            busy, idle, idle, idle, idle, busy, idle, idle, idle, idle, idle, idle,
        ];
        let observed: Vec<Option<u64>> = steps
            .into_iter()
            .map(|used| watch.observe(used, step).map(|idle| idle.as_secs()))
            .collect();
        let expected = [
            None,
            None,
            Some(10),
            None,
            None,
            None,
            None,
            None,
            Some(15),
            None,
            None,
            Some(15),
        ];
        assert_eq!(observed, expected);
    }

    #[test]
    fn file_backed_memory_is_read() {
        assert!(file_pages_mapped() > 0, "/proc/self/statm");
    }

    #[test]
    fn the_markers_stay_two_functions() {
        assert_ne!(wisp_startup_code_begin(), wisp_startup_code_end());
        assert_ne!(
            wisp_startup_code_begin as *const () as usize,
            wisp_startup_code_end as *const () as usize
        );
    }

    /// The test binary's own code and constants are unmapped and fault back in: it keeps
    /// running, and its constant data still reads the same.
    #[test]
    fn read_only_pages_are_released_and_fault_back() {
        static TABLE: [u64; 4] = [0x5749_5350, 3, 5, 7];
        let segments = read_only_segments();
        assert!(segments.len() >= 2, "code and read-only data: {segments:?}");
        let code = wisp_startup_code_begin as *const () as usize;
        assert!(
            segments
                .iter()
                .any(|&(start, len)| (start..start + len).contains(&code)),
            "the code segment holds this function: {segments:?}"
        );
        let libc_code = libc::getpid as *const () as usize;
        assert!(
            segments
                .iter()
                .any(|&(start, len)| (start..start + len).contains(&libc_code)),
            "libc's code is released too: {segments:?}"
        );
        let released = release_read_only_pages();
        assert_eq!(
            released,
            segments.iter().map(|&(_, len)| len).sum::<usize>()
        );
        assert!(released > 0);
        assert_eq!(
            std::hint::black_box(&TABLE).iter().sum::<u64>(),
            0x5749_5350 + 15
        );
        assert_ne!(wisp_startup_code_begin(), wisp_startup_code_end());
        // libc still answers once its code faulted back in.
        assert_eq!(
            std::process::id(),
            rustix::process::getpid().as_raw_nonzero().get() as u32
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

//! The calling thread's CPU clock, read cheaply.
//!
//! Linux has no vDSO path for `CLOCK_THREAD_CPUTIME_ID`: each read is a system call
//! (about 0.5 µs here, 2 to 4 reads per metered request, about 5% of a hello request's
//! CPU). But while a thread stays on its CPU, its CPU clock advances exactly as the
//! monotonic clock does, and that one is read from the vDSO in tens of nanoseconds. So a
//! thread keeps an anchor (its CPU clock and the monotonic clock, read together) and
//! later reads add the monotonic time elapsed since, as long as the thread has not been
//! switched out in between.
//!
//! The kernel tells us that through restartable sequences (rseq), which glibc registers
//! for every thread: the kernel sets the thread's `rseq_cs` pointer to null whenever it
//! preempts the thread, or delivers it a signal, outside the critical section that pointer
//! names (the ABI in `linux/rseq.h`). Arming the pointer with a critical section that
//! covers no code makes it a one-word flag that reads "not switched out since armed".
//! When the flag is found cleared, or the anchor is old, the system call is read again.
//!
//! A wrong descriptor makes the kernel kill the thread's process with SIGSEGV, so the
//! whole scheme is first tried once in a child process, in the background; until that
//! child has exited cleanly (and always on other platforms, without glibc's rseq, or
//! when registration failed), every read is the system call.

use std::sync::OnceLock;
use std::time::Duration;

/// How many reads took the system call, for the tests.
#[cfg(test)]
static SYSCALL_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The thread's CPU time in nanoseconds, by the system call.
fn thread_cpu_nanos_by_syscall() -> u64 {
    #[cfg(test)]
    SYSCALL_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    nanos(rustix::time::clock_gettime(
        rustix::time::ClockId::ThreadCPUTime,
    ))
}

fn nanos(time: rustix::time::Timespec) -> u64 {
    (time.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(time.tv_nsec as u64)
}

/// The calling thread's CPU time in nanoseconds: differences between two reads on the
/// same thread are the CPU it used in between.
pub(crate) fn thread_cpu_nanos() -> u64 {
    match fast_clock() {
        Some(clock) => clock.read(),
        None => thread_cpu_nanos_by_syscall(),
    }
}

/// Whether reads use the monotonic clock between context switches; `None` while the
/// check in a child process has not finished.
pub fn fast_thread_clock() -> Option<bool> {
    FAST.get().map(Option::is_some)
}

/// Waits up to `timeout` for the check of the fast path, starting it if needed, and says
/// whether it is used. For tests and benches.
pub fn await_fast_thread_clock(timeout: Duration) -> Option<bool> {
    let start = std::time::Instant::now();
    loop {
        let _ = fast_clock();
        if let Some(usable) = fast_thread_clock() {
            return Some(usable);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

static FAST: OnceLock<Option<rseq::Clock>> = OnceLock::new();
static CHECK_STARTED: std::sync::Once = std::sync::Once::new();

fn fast_clock() -> Option<&'static rseq::Clock> {
    if let Some(clock) = FAST.get() {
        return clock.as_ref();
    }
    CHECK_STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("wisp-cpu-clock".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                let clock = rseq::Clock::checked();
                tracing::debug!(
                    fast = clock.is_some(),
                    checked_in_us = start.elapsed().as_micros() as u64,
                    "thread cpu clock: reads between context switches skip the system call when fast"
                );
                let _ = FAST.set(clock);
            });
        if spawned.is_err() {
            let _ = FAST.set(None);
        }
    });
    None
}

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
#[allow(unsafe_code)]
mod rseq {
    use std::cell::Cell;
    use std::sync::atomic::{Ordering, compiler_fence};

    /// glibc's signature for x86 (`RSEQ_SIG`); the kernel checks that the four bytes
    /// before a critical section's abort address hold the signature the thread
    /// registered with.
    const RSEQ_SIG: u32 = 0x5305_3053;

    /// An anchor older than this is read again. The two clocks do not advance at quite the
    /// same rate (the CPU clock leaves out time the hypervisor took, for one: about 3 µs
    /// in 50 ms here, `CLOCK_MONOTONIC` or `_RAW` alike), so an estimate runs ahead by
    /// up to this age's share of that; one system call per 10 ms of busy thread costs
    /// nothing measurable.
    const MAX_ANCHOR_AGE_NANOS: u64 = 10_000_000;

    /// Tries at anchoring per read. Untraced, a second try is rare (a switch right in the
    /// system call); traced, every try fails, and before this bound the read never
    /// returned: a `strace -p` of a serving process hung every request.
    const ANCHOR_ATTEMPTS: usize = 3;

    /// `struct rseq_cs` of `linux/rseq.h`.
    #[repr(C, align(32))]
    struct CriticalSection {
        version: u32,
        flags: u32,
        start_ip: u64,
        post_commit_offset: u64,
        abort_ip: u64,
    }

    /// The signature word, then the (never jumped to) abort address right after it.
    #[repr(C, align(8))]
    struct Signature([u32; 2]);
    static SIGNATURE: Signature = Signature([RSEQ_SIG, 0]);

    /// The fast path, once checked: where the thread's `rseq_cs` word is, and the
    /// descriptor address that arms it.
    #[derive(Debug)]
    pub(super) struct Clock {
        /// glibc's `__rseq_offset`: the rseq area's offset from the thread pointer.
        area_offset: isize,
        /// The address of a critical section that covers no code.
        armed: u64,
    }

    /// A thread's CPU clock and monotonic clock, read together without a switch between.
    #[derive(Clone, Copy)]
    struct Anchor {
        cpu: u64,
        monotonic: u64,
        /// The last value returned: a fresh anchor can be a few microseconds behind an
        /// estimate (see [`MAX_ANCHOR_AGE_NANOS`]), and a clock must not go back.
        last: u64,
    }

    thread_local! {
        static ANCHOR: Cell<Anchor> = const {
            Cell::new(Anchor { cpu: 0, monotonic: 0, last: 0 })
        };
    }

    fn monotonic_nanos() -> u64 {
        super::nanos(rustix::time::clock_gettime(
            rustix::time::ClockId::Monotonic,
        ))
    }

    impl Clock {
        /// The fast path, if glibc registered rseq for this process with the signature
        /// the descriptor carries, and a child process showed that arming works and a
        /// sleep clears it.
        pub(super) fn checked() -> Option<Self> {
            let (clock, area_size) = Self::from_glibc()?;
            (clock.matches_glibcs_registration(area_size) && clock.works_in_a_child())
                .then_some(clock)
        }

        /// The clock, and the feature size glibc reports for the area (`__rseq_size`).
        fn from_glibc() -> Option<(Self, u32)> {
            // Looked up at run time: the symbols exist from glibc 2.35 on, and the binary
            // must still start on older ones.
            // SAFETY: dlsym with a NUL-terminated name; the results are checked for null.
            let (offset, size) = unsafe {
                (
                    libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
                    libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
                )
            };
            if offset.is_null() || size.is_null() {
                return None;
            }
            // SAFETY: glibc defines these as `const ptrdiff_t __rseq_offset` and
            // `const unsigned int __rseq_size`, set before any user code runs.
            let (area_offset, area_size) =
                unsafe { (*(offset as *const isize), *(size as *const u32)) };
            // 0 when glibc did not register (tunable off, kernel without rseq); the
            // original ABI's 20 bytes (what glibc 2.36 reports) hold `rseq_cs` at 8..16.
            if area_size < 16 {
                return None;
            }
            Some((
                Self {
                    area_offset,
                    armed: empty_section_after(&SIGNATURE),
                },
                area_size,
            ))
        }

        /// The calling thread's `rseq_cs` word.
        fn slot(&self) -> *mut u64 {
            let thread_pointer: usize;
            // SAFETY: on x86-64 glibc, `fs:0` holds the thread pointer itself.
            unsafe {
                std::arch::asm!(
                    "mov {}, qword ptr fs:[0]",
                    out(reg) thread_pointer,
                    options(nostack, readonly, preserves_flags)
                );
            }
            // `struct rseq` starts with two u32 (`cpu_id_start`, `cpu_id`), then `rseq_cs`.
            (thread_pointer as isize + self.area_offset + 8) as *mut u64
        }

        fn is_armed(&self, slot: *mut u64) -> bool {
            compiler_fence(Ordering::SeqCst);
            // SAFETY: the calling thread's own rseq area, registered by glibc for its life.
            let armed = unsafe { slot.read_volatile() } == self.armed;
            compiler_fence(Ordering::SeqCst);
            armed
        }

        fn arm(&self, slot: *mut u64) {
            compiler_fence(Ordering::SeqCst);
            // SAFETY: as in `is_armed`; the kernel reads this word only on this thread's
            // return to user space, and the descriptor it points to lives for ever.
            unsafe { slot.write_volatile(self.armed) };
            compiler_fence(Ordering::SeqCst);
        }

        pub(super) fn read(&self) -> u64 {
            let slot = self.slot();
            let monotonic = monotonic_nanos();
            // Still armed after the monotonic read: the thread ran without a switch from
            // the anchor up to that read, so its CPU time grew by exactly the elapsed time.
            let mut anchor = ANCHOR.get();
            if self.is_armed(slot) {
                let elapsed = monotonic.wrapping_sub(anchor.monotonic);
                if anchor.monotonic != 0 && elapsed < MAX_ANCHOR_AGE_NANOS {
                    anchor.last = anchor.last.max(anchor.cpu + elapsed);
                    ANCHOR.set(anchor);
                    return anchor.last;
                }
            }
            self.reanchor(slot, anchor, super::thread_cpu_nanos_by_syscall)
        }

        /// Reads the CPU clock by `read_cpu` (the system call) and, when no switch came
        /// between arming and the monotonic read, anchors later reads on it.
        ///
        /// A traced thread (`strace`, a debugger catching system calls) stops at every
        /// system call, and each stop clears the flag, so anchoring can keep failing: after
        /// [`ANCHOR_ATTEMPTS`] the value read is returned without an anchor.
        fn reanchor(
            &self,
            slot: *mut u64,
            mut anchor: Anchor,
            mut read_cpu: impl FnMut() -> u64,
        ) -> u64 {
            for _ in 0..ANCHOR_ATTEMPTS {
                self.arm(slot);
                let cpu = read_cpu();
                let monotonic = monotonic_nanos();
                anchor.last = anchor.last.max(cpu);
                // A switch between arming and here would make the pair inconsistent.
                if self.is_armed(slot) {
                    anchor.cpu = cpu;
                    anchor.monotonic = monotonic;
                    ANCHOR.set(anchor);
                    return anchor.last;
                }
            }
            // No anchor: the next read takes the system call again.
            anchor.monotonic = 0;
            ANCHOR.set(anchor);
            anchor.last
        }

        /// Whether glibc registered the calling thread's rseq area where [`Self::slot`]
        /// looks, with the signature the descriptor carries: asking the kernel to
        /// register that same area again answers `EBUSY` only when address, length and
        /// signature all match (`EPERM` for another signature, `EINVAL` for another area
        /// or length), and changes nothing either way.
        fn matches_glibcs_registration(&self, area_size: u32) -> bool {
            let area = (self.slot() as usize - 8) as *mut libc::c_void;
            // glibc registers 32 bytes (the original ABI's size) or, from 2.40 on, the
            // kernel's feature size rounded up to the area's 32-byte alignment.
            let lengths = [32, area_size.next_multiple_of(32)];
            lengths.iter().any(|&length| {
                // SAFETY: a registration request for the calling thread; refused here
                // since the thread is registered, so the kernel writes nothing.
                let answer = unsafe { libc::syscall(libc::SYS_rseq, area, length, 0, RSEQ_SIG) };
                answer == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY)
            })
        }

        /// Arms the flag in a child process, sleeps, and checks that the kernel cleared
        /// it: a child killed by a descriptor the kernel refuses costs nothing here.
        ///
        /// The child shares this process's memory and the calling thread waits for it
        /// (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` does), unlike a `fork`: that copies
        /// every page table while holding the memory-map lock and, through glibc's fork
        /// handlers, every malloc arena's lock, so each other thread that faulted a page
        /// or allocated waited for it (1.2 ms, traced, in the first request of a
        /// `wisp up`, whose first clock read starts this check). A `CLONE_VM` child starts with
        /// no rseq area, so it registers its own, with glibc's signature, which
        /// [`Self::matches_glibcs_registration`] checks separately.
        fn works_in_a_child(&self) -> bool {
            // Before Linux 5.16 a core dump of the child would kill every process sharing
            // its memory, this one too: there the check is not made, and every read is the
            // system call.
            if !kernel_at_least(release_of_running_kernel().as_deref(), (5, 16)) {
                return false;
            }
            let mut probe = ChildProbe {
                area: Area {
                    cpu_id_start: 0,
                    // RSEQ_CPU_ID_UNINITIALIZED, as the ABI asks of a new area.
                    cpu_id: u32::MAX,
                    rseq_cs: 0,
                    flags: 0,
                    padding: [0; 3],
                },
                armed: self.armed,
            };
            let mut stack = vec![0u8; CHILD_STACK_BYTES];
            // SAFETY: `stack` and `probe` outlive the child: with CLONE_VFORK this thread
            // sleeps until the child has exited. The child runs only `probe_in_child`.
            let pid = unsafe {
                let top = stack.as_mut_ptr().add(stack.len()) as usize & !15;
                libc::clone(
                    probe_in_child,
                    top as *mut libc::c_void,
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                    std::ptr::from_mut(&mut probe).cast(),
                )
            };
            if pid < 0 {
                return false;
            }
            let mut status = 0;
            loop {
                // SAFETY: reaps the child made above.
                if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
                    break;
                }
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return false;
                }
            }
            drop(stack);
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }

    /// The address of a new critical-section descriptor (leaked: the kernel may read it
    /// for the rest of the process's life) that covers no code, aborting to just after
    /// `signature`'s first word.
    fn empty_section_after(signature: &'static Signature) -> u64 {
        let abort_ip = std::ptr::from_ref(signature) as u64 + 4;
        let section = Box::leak(Box::new(CriticalSection {
            version: 0,
            flags: 0,
            start_ip: abort_ip,
            // An empty range: no instruction is ever inside it.
            post_commit_offset: 0,
            abort_ip,
        }));
        std::ptr::from_ref(section) as u64
    }

    /// The running kernel's release (`uname -r`).
    fn release_of_running_kernel() -> Option<String> {
        // SAFETY: `uname` fills the zeroed struct; its fields are NUL-terminated.
        unsafe {
            let mut names: libc::utsname = std::mem::zeroed();
            if libc::uname(&mut names) != 0 {
                return None;
            }
            let release = std::ffi::CStr::from_ptr(names.release.as_ptr());
            Some(release.to_string_lossy().into_owned())
        }
    }

    /// Whether a kernel `release` such as `6.1.0-28-amd64` is at least `(major, minor)`;
    /// false when it cannot be read.
    fn kernel_at_least(release: Option<&str>, (major, minor): (u32, u32)) -> bool {
        let mut numbers = release
            .unwrap_or("")
            .split(['.', '-'])
            .map(str::parse::<u32>);
        match (numbers.next(), numbers.next()) {
            (Some(Ok(have_major)), Some(Ok(have_minor))) => {
                (have_major, have_minor) >= (major, minor)
            }
            _ => false,
        }
    }

    /// Stack of the probing child: it makes four system calls.
    const CHILD_STACK_BYTES: usize = 16 << 10;

    /// `struct rseq` of `linux/rseq.h`, in the original ABI's 32 bytes.
    #[repr(C, align(32))]
    struct Area {
        cpu_id_start: u32,
        cpu_id: u32,
        rseq_cs: u64,
        flags: u32,
        padding: [u32; 3],
    }

    /// What the probing child works on: its rseq area, and the descriptor to arm it with.
    #[repr(C)]
    struct ChildProbe {
        area: Area,
        armed: u64,
    }

    /// The child of [`Clock::works_in_a_child`]: exit status 0 when the kernel cleared the
    /// armed flag across a sleep.
    extern "C" fn probe_in_child(probe: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `probe` is the parent's `ChildProbe`, alive while this child runs. Only
        // raw system calls follow (glibc's `sigaction` and `syscall` wrappers touch
        // nothing of the parent thread but `errno`, and only on failure), as a child
        // sharing its parent's memory and thread pointer requires.
        unsafe {
            let probe = probe.cast::<ChildProbe>();
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            // Without CLONE_SIGHAND this is the child's own table: the runtime's SIGSEGV
            // handler would not let the child die of a refused descriptor.
            libc::sigaction(libc::SIGSEGV, &default, std::ptr::null_mut());
            let area = std::ptr::addr_of_mut!((*probe).area);
            if libc::syscall(libc::SYS_rseq, area, 32u32, 0, RSEQ_SIG) != 0 {
                return 2;
            }
            let slot = std::ptr::addr_of_mut!((*area).rseq_cs);
            slot.write_volatile((*probe).armed);
            let nap = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            libc::syscall(
                libc::SYS_nanosleep,
                &nap as *const libc::timespec,
                std::ptr::null_mut::<libc::timespec>(),
            );
            match slot.read_volatile() {
                0 => 0,
                _ => 1,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn kernel_releases_compare_by_major_then_minor() {
            assert!(kernel_at_least(Some("6.18.44-fc-v1272"), (5, 16)));
            assert!(kernel_at_least(Some("5.16.0"), (5, 16)));
            assert!(!kernel_at_least(Some("5.15.0-91-generic"), (5, 16)));
            assert!(!kernel_at_least(Some("4.19.0"), (5, 16)));
            assert!(!kernel_at_least(Some("weird"), (5, 16)));
            assert!(!kernel_at_least(None, (5, 16)));
        }

        /// A thread whose flag is cleared at every system call, as a tracer's stops do,
        /// still gets its clock, after a bounded number of system calls, and its next
        /// read does not trust the failed anchor.
        #[test]
        fn a_thread_stopped_at_every_system_call_still_reads_its_clock() {
            let (clock, _) = Clock::from_glibc().expect("glibc registers rseq here");
            // Only a descriptor the kernel accepts may arm this thread's own area.
            assert!(clock.works_in_a_child());
            let slot = clock.slot();
            let mut reads = 0;
            let stopped_at_every_call = || {
                reads += 1;
                // SAFETY: the calling thread's own rseq area; null is "not armed".
                unsafe { slot.write_volatile(0) };
                super::super::thread_cpu_nanos_by_syscall()
            };
            let before = super::super::thread_cpu_nanos_by_syscall();
            let read = clock.reanchor(slot, ANCHOR.get(), stopped_at_every_call);
            assert_eq!(reads, ANCHOR_ATTEMPTS);
            assert!(
                read >= before,
                "read {read} ns, the clock was at {before} ns"
            );
            assert_eq!(
                ANCHOR.get().monotonic,
                0,
                "a failed anchor must not be kept"
            );
            assert!(clock.read() >= read, "the clock went back");
        }

        /// The check passes for the real descriptor; for one whose abort address lacks
        /// the signature the kernel kills the child, and only the child.
        #[test]
        fn a_refused_descriptor_kills_only_the_child() {
            static WRONG: Signature = Signature([!RSEQ_SIG, 0]);
            let (clock, area_size) = Clock::from_glibc().expect("glibc registers rseq here");
            assert!(clock.matches_glibcs_registration(area_size));
            assert!(clock.works_in_a_child());
            let refused = Clock {
                area_offset: clock.area_offset,
                armed: empty_section_after(&WRONG),
            };
            assert!(!refused.works_in_a_child());
            // The child armed its own area, not this thread's (which this thread must
            // never arm with the refused descriptor: the kernel would kill this process).
            // SAFETY: the calling thread's own rseq area.
            let own = unsafe { clock.slot().read_volatile() };
            assert_ne!(own, refused.armed);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")))]
mod rseq {
    /// No fast path on this platform.
    #[derive(Debug)]
    pub(super) enum Clock {}

    impl Clock {
        pub(super) fn checked() -> Option<Self> {
            None
        }

        pub(super) fn read(&self) -> u64 {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until the thread has run `duration` on a CPU (by the system call's clock):
    /// by wall time, a thread preempted by the test's other threads would run less.
    fn spin(duration: Duration) {
        let start = thread_cpu_nanos_by_syscall();
        while thread_cpu_nanos_by_syscall() - start < duration.as_nanos() as u64 {
            std::hint::spin_loop();
        }
    }

    /// On this platform the check passes (glibc 2.35+ registers rseq), and then reads
    /// track the system call's clock: spinning counts, sleeping does not.
    #[test]
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    fn fast_reads_follow_the_thread_cpu_clock() {
        assert_eq!(
            await_fast_thread_clock(Duration::from_secs(10)),
            Some(true),
            "glibc registers rseq here, so the fast clock should be usable"
        );
        for _ in 0..20 {
            let fast_before = thread_cpu_nanos();
            let slow_before = thread_cpu_nanos_by_syscall();
            spin(Duration::from_millis(2));
            std::thread::sleep(Duration::from_millis(1));
            spin(Duration::from_millis(1));
            let fast = thread_cpu_nanos() - fast_before;
            let slow = thread_cpu_nanos_by_syscall() - slow_before;
            // Both cover the same stretch, up to the few reads between them.
            let difference = fast.abs_diff(slow);
            assert!(
                difference < 100_000 + slow / 50,
                "fast {fast} ns against the system call's {slow} ns"
            );
            assert!(fast >= 2_000_000, "spinning 3 ms counted {fast} ns");
        }
    }

    /// Reads never go back on a thread, and nearly all of them skip the system call.
    #[test]
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    fn fast_reads_are_monotonic_and_rarely_a_system_call() {
        assert_eq!(await_fast_thread_clock(Duration::from_secs(10)), Some(true));
        let syscalls_before = SYSCALL_READS.load(std::sync::atomic::Ordering::Relaxed);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let mut last = thread_cpu_nanos();
                    for round in 0..200_000 {
                        let now = thread_cpu_nanos();
                        assert!(now >= last, "read {round} went back: {last} then {now}");
                        last = now;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("reader thread panicked");
        }
        // Other tests read the clock meanwhile, and every preemption of a reader costs one
        // system call: on two busy cores about 5% of these reads (44,097 once, with two
        // CPU hogs beside the tests), 17 on an idle machine. Without the fast path all of
        // them would be.
        let syscalls = SYSCALL_READS.load(std::sync::atomic::Ordering::Relaxed) - syscalls_before;
        assert!(
            syscalls < 200_000,
            "{syscalls} of 800,000 reads were system calls"
        );
    }
}

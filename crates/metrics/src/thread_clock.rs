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
//! whole scheme is first tried once in a forked child, in the background; until that
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
        /// The fast path, if glibc registered rseq for this process and a forked child
        /// showed that arming works and a sleep clears it.
        pub(super) fn checked() -> Option<Self> {
            let clock = Self::from_glibc()?;
            clock.works_in_a_child().then_some(clock)
        }

        fn from_glibc() -> Option<Self> {
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
            let abort_ip = std::ptr::addr_of!(SIGNATURE) as u64 + 4;
            let section = Box::leak(Box::new(CriticalSection {
                version: 0,
                flags: 0,
                start_ip: abort_ip,
                // An empty range: no instruction is ever inside it.
                post_commit_offset: 0,
                abort_ip,
            }));
            Some(Self {
                area_offset,
                armed: std::ptr::from_ref(section) as u64,
            })
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
            loop {
                self.arm(slot);
                let cpu = super::thread_cpu_nanos_by_syscall();
                let monotonic = monotonic_nanos();
                // A switch between arming and here would make the pair inconsistent.
                if self.is_armed(slot) {
                    let last = anchor.last.max(cpu);
                    ANCHOR.set(Anchor {
                        cpu,
                        monotonic,
                        last,
                    });
                    return last;
                }
            }
        }

        /// Arms the flag in a forked child, sleeps, and checks that the kernel cleared
        /// it: a child killed by a descriptor the kernel refuses costs nothing here.
        fn works_in_a_child(&self) -> bool {
            // SAFETY: the child runs only async-signal-safe calls (sigaction, nanosleep,
            // _exit) and plain loads and stores, as required after fork in a threaded
            // process.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    let mut default: libc::sigaction = std::mem::zeroed();
                    default.sa_sigaction = libc::SIG_DFL;
                    // The runtime's SIGSEGV handler would not let the child die of it.
                    libc::sigaction(libc::SIGSEGV, &default, std::ptr::null_mut());
                    let slot = self.slot();
                    slot.write_volatile(self.armed);
                    let nap = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 1_000_000,
                    };
                    libc::nanosleep(&nap, std::ptr::null_mut());
                    let cleared = slot.read_volatile() == 0;
                    libc::_exit(if cleared { 0 } else { 1 });
                }
                if pid < 0 {
                    return false;
                }
                let mut status = 0;
                loop {
                    if libc::waitpid(pid, &mut status, 0) == pid {
                        break;
                    }
                    if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                        return false;
                    }
                }
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
            }
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

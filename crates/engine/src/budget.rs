//! The process-wide memory budget: what all live instances together may hold.
//!
//! The per-instance cap times the instance count can exceed the machine (256 × 128 MiB is
//! 32 GiB), so a burst of memory-hungry requests could make the host swap or the kernel
//! kill the process. Each instance therefore reserves budget before it is created, and
//! waits for it when the budget is spent: an instance reserves what its component used
//! before (learned per component), and a growth past the reservation takes more budget if
//! there is some, waits briefly (at most a second, never past the deadline) for others to
//! give budget back, and is otherwise refused: the guest sees an ordinary allocation
//! failure and the request is answered 503. The bounded wait means instances that hold
//! budget and all want more cannot deadlock; admission waits without bound, in arrival
//! order, so after the first burst a hungry component runs only as many instances at once
//! as the budget holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Budget accounting unit: one wasm page.
const UNIT: u64 = 64 << 10;
/// What an instance costs besides its linear memory (stack pages it touches, tables,
/// host state), charged on admission.
pub(crate) const INSTANCE_OVERHEAD: u64 = 1 << 20;

/// The default budget: half of the memory this process may use (the machine's, or its
/// cgroup's limit when lower), leaving the rest to compiled code, the host and the system.
pub fn default_memory_budget() -> u64 {
    let available = available_memory().unwrap_or(4 << 30);
    (available / 2).max(256 << 20)
}

/// The memory this process may use: the lower of `MemTotal` and the cgroup's limit.
pub fn available_memory() -> Option<u64> {
    let total = proc_kib_field("/proc/meminfo", "MemTotal:");
    let cgroup = cgroup_memory_limit();
    match (total, cgroup) {
        (Some(total), Some(limit)) => Some(total.min(limit)),
        (total, limit) => total.or(limit),
    }
}

/// The memory limit of this process's cgroup (v2 `memory.max`, v1
/// `memory.limit_in_bytes`), if one is set.
fn cgroup_memory_limit() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limits = Vec::new();
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let (file, at_root) = if controllers.is_empty() {
            (
                format!("/sys/fs/cgroup/{path}/memory.max"),
                "/sys/fs/cgroup/memory.max",
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                format!("/sys/fs/cgroup/memory/{path}/memory.limit_in_bytes"),
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            )
        } else {
            continue;
        };
        // Inside a container the hierarchy is usually mounted from the container's own
        // cgroup, so its path is not found under the mount and its limit is at the root.
        // Outside one the root has no limit, so reading it there changes nothing.
        let read = |file: &str| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
        };
        if let Some(limit) = read(&file)
            .or_else(|| read(at_root))
            // cgroup v1 spells "no limit" as a huge page-rounded number.
            .filter(|limit| *limit < (1 << 60))
        {
            limits.push(limit);
        }
    }
    limits.into_iter().min()
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// The budget shared by every instance of an engine.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    total: u64,
    units: Arc<Semaphore>,
}

impl MemoryBudget {
    pub(crate) fn new(total: u64) -> Self {
        let total = total.max(UNIT);
        Self {
            total,
            units: Arc::new(Semaphore::new(units(total) as usize)),
        }
    }

    /// The budget, in bytes.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Bytes reserved by live instances.
    pub(crate) fn in_use(&self) -> u64 {
        let free = self.units.available_permits() as u64 * UNIT;
        self.total.saturating_sub(free)
    }

    /// Waits until `bytes` (at most the whole budget) can be reserved.
    pub(crate) async fn reserve(&self, bytes: u64) -> Option<Charge> {
        let wanted = units(bytes.min(self.total));
        let permit = self.units.clone().acquire_many_owned(wanted).await.ok()?;
        Some(Charge {
            units: self.units.clone(),
            permit,
            bytes: u64::from(wanted) * UNIT,
        })
    }

    /// Reserves `bytes` if it is free now.
    pub(crate) fn try_reserve(&self, bytes: u64) -> Option<Charge> {
        let wanted = units(bytes.min(self.total));
        let permit = self.units.clone().try_acquire_many_owned(wanted).ok()?;
        Some(Charge {
            units: self.units.clone(),
            permit,
            bytes: u64::from(wanted) * UNIT,
        })
    }
}

/// Budget held by one instance; given back when the instance is dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    units: Arc<Semaphore>,
    permit: OwnedSemaphorePermit,
    bytes: u64,
}

impl Charge {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `more` bytes of budget now, or fails without waiting.
    pub(crate) fn try_grow(&mut self, more: u64) -> bool {
        match self.units.clone().try_acquire_many_owned(units(more)) {
            Ok(extra) => {
                self.add(extra);
                true
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => false,
        }
    }

    /// Takes `more` bytes of budget, waiting up to `wait` for it.
    pub(crate) async fn grow_within(&mut self, more: u64, wait: std::time::Duration) -> bool {
        if self.try_grow(more) {
            return true;
        }
        let acquire = self.units.clone().acquire_many_owned(units(more));
        match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(extra)) => {
                self.add(extra);
                true
            }
            Ok(Err(_)) | Err(_) => false,
        }
    }

    fn add(&mut self, extra: OwnedSemaphorePermit) {
        self.bytes += extra.num_permits() as u64 * UNIT;
        self.permit.merge(extra);
    }
}

/// What instances of one component used at most, recently: the reservation the next
/// one makes. It decays slowly, so one unusual request does not shrink concurrency for
/// good.
#[derive(Debug, Default)]
pub(crate) struct LearnedPeak(AtomicU64);

impl LearnedPeak {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Folds in the peak (bytes of linear memory asked for) of an instance that ended.
    pub(crate) fn observe(&self, peak: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(peak.max(old - old / 64))
            });
    }
}

/// Gives the heap memory the process has freed, but the allocator still holds, back to the
/// system, and returns by how much the resident set shrank (0 where it cannot tell).
///
/// Loading an app (parsing components, linking, deserializing code) frees most of what it
/// allocates, but glibc keeps those pages in its arenas: measured in a shim container
/// serving hello, 4.7 MiB of its 16 MiB of anonymous memory (docs/kubernetes.md). Call it
/// after a load or a compile, not per request: it walks every arena under its lock.
pub fn release_free_heap() -> u64 {
    let before = resident_bytes();
    trim_heap();
    match (before, resident_bytes()) {
        (Some(before), Some(after)) => before.saturating_sub(after),
        _ => 0,
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_heap() {
    // SAFETY: malloc_trim takes no pointers; it walks glibc's own arenas under their
    // locks and only returns wholly free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// This process's resident set (`VmRSS`), if the platform says.
fn resident_bytes() -> Option<u64> {
    proc_kib_field("/proc/self/status", "VmRSS:")
}

/// A `Key:   N kB` line of a `/proc` file, in bytes.
pub(crate) fn proc_kib_field(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let kib = text
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_wait_and_growth_waits_briefly() {
        let budget = MemoryBudget::new(4 << 20);
        let mut first = budget.reserve(3 << 20).await.unwrap();
        assert_eq!(budget.in_use(), 3 << 20);
        // Growth past what is free fails at once.
        assert!(!first.try_grow(2 << 20));
        assert!(
            !first
                .grow_within(2 << 20, std::time::Duration::from_millis(10))
                .await
        );
        assert!(first.try_grow(1 << 20));
        assert_eq!(budget.in_use(), 4 << 20);
        // A new reservation waits until the first instance is gone.
        let waiting = tokio::spawn({
            let units = budget.units.clone();
            async move { units.acquire_many_owned(units_for(1 << 20)).await.is_ok() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert!(waiting.await.unwrap());
        assert!(
            budget.try_reserve(5 << 20).is_some(),
            "clamped to the whole budget"
        );
    }

    fn units_for(bytes: u64) -> u32 {
        units(bytes)
    }

    #[test]
    fn learned_peaks_rise_at_once_and_decay_slowly() {
        let peak = LearnedPeak::default();
        peak.observe(64 << 20);
        assert_eq!(peak.get(), 64 << 20);
        for _ in 0..10 {
            peak.observe(1 << 20);
        }
        let after = peak.get();
        assert!(after < 64 << 20 && after > 50 << 20, "{after}");
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let available = available_memory().expect("/proc/meminfo is readable on Linux");
        assert!(available > 64 << 20);
        assert!(default_memory_budget() <= available);
    }
}

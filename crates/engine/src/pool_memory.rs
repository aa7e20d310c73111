//! Giving back the linear memory the instance pool keeps resident, once no instance runs.
//!
//! Each pool slot keeps up to `keep_resident` bytes of its linear memory between instances,
//! reset in place, so that the next instance does not fault them in again (see
//! `wasmtime_config`). After a burst, every slot the burst used keeps that much for as long
//! as the process lives: a memory bomb or 64 instances of a 4 MiB guest leave 100 MiB and
//! more behind in a process that then sits idle. wasmtime 48 has no call that gives it
//! back. A reset slot holds exactly what its mappings held when they were made (zeros, or
//! its component's memory image mapped privately), so `MADV_DONTNEED` over the pool while
//! no instance is alive returns the pages and leaves every slot as a reset left it: the
//! next instance faults in zeros or the image.
//!
//! wasmtime does not say where the pool is. A probe instance of an empty module gives one
//! slot's base address; the pool's geometry (from the engine's settings, as wasmtime lays
//! out a pool without memory protection keys) and the process's memory map give the pool
//! around it. Whenever that is not certain (no candidate, or more than one), nothing is
//! released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::TickerState;

/// The pools of the live engines, for [`release_idle_instance_memory`].
static POOLS: Mutex<Vec<Weak<PoolMemory>>> = Mutex::new(Vec::new());

/// Releases the kept linear memory of every live engine's pool whose instances have all
/// ended (see [`PoolMemory::release`]); returns how many bytes of anonymous memory the
/// process holds fewer afterwards. For a process that has gone idle: the next instance of
/// each component faults its pages back in.
pub fn release_idle_instance_memory(min_idle: Duration) -> u64 {
    let pools: Vec<Arc<PoolMemory>> = {
        let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|pool| pool.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    };
    pools.iter().filter_map(|pool| pool.release(min_idle)).sum()
}

/// How wasmtime lays out the linear-memory pool (one stripe: no protection keys):
/// a guard, then `slots` slots of `slot_bytes` each (memory reservation and guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slots: usize,
    pub slot_bytes: usize,
    pub pre_guard: usize,
}

impl Geometry {
    /// The pool of an engine made with `max_memory_size` and `slots` memories. `None` for
    /// a layout [`Geometry::locate`] cannot be sure of: no guard before the first slot, or
    /// memories that may fill their whole reservation.
    pub(crate) fn of(engine: &wasmtime::Engine, slots: u32, max_memory_size: u64) -> Option<Self> {
        let page = rustix::param::page_size() as u64;
        let round = |bytes: u64| bytes.checked_next_multiple_of(page);
        let guard = round(engine.get_memory_guard_size())?;
        let reservation = round(engine.get_memory_reservation())?;
        if guard == 0 || !engine.get_guard_before_linear_memory() {
            return None;
        }
        if round(max_memory_size)? >= reservation {
            return None;
        }
        let slot_bytes = reservation.checked_add(guard)?;
        Some(Self {
            slots: usize::try_from(slots).ok()?,
            slot_bytes: usize::try_from(slot_bytes).ok()?,
            pre_guard: usize::try_from(guard).ok()?,
        })
    }

    fn total(&self) -> Option<usize> {
        self.slot_bytes
            .checked_mul(self.slots)?
            .checked_add(self.pre_guard)
    }

    /// Where the pool starts, given the base of one of its slots and the process's
    /// mappings (sorted): the one start, a whole number of slots (and the guard) below the
    /// base, where an inaccessible mapping begins that holds the leading guard and from
    /// which a whole pool is mapped. `None` when there is no such start (the guard merged
    /// into an inaccessible mapping below it), or more than one.
    ///
    /// Other starts cannot pass: inside this pool they fall `reservation` bytes into a
    /// slot, which never becomes accessible (see [`Geometry::of`]), so no mapping begins
    /// there; below it, in a pool of the same layout, they fall on slot starts, where a
    /// mapping begins only if the slot is in use, and then it is accessible.
    pub(crate) fn locate(&self, slot_base: usize, mappings: &[Mapping]) -> Option<usize> {
        let total = self.total()?;
        let runs = contiguous_runs(mappings);
        // The guard before the first slot is never made accessible, and a slot's start
        // inside another pool of the same size, where a used slot's mapping begins, is.
        let starts_guard = |at: usize| {
            mappings
                .binary_search_by_key(&at, |m| m.start)
                .is_ok_and(|i| mappings[i].inaccessible && mappings[i].end - at >= self.pre_guard)
        };
        let covered = |start: usize, end: usize| {
            let i = runs.partition_point(|run| run.1 <= start);
            runs.get(i)
                .is_some_and(|run| run.0 <= start && end <= run.1)
        };
        let mut found = None;
        for slot in 0..self.slots {
            let Some(start) = self
                .slot_bytes
                .checked_mul(slot)
                .and_then(|before| slot_base.checked_sub(before)?.checked_sub(self.pre_guard))
            else {
                break;
            };
            let Some(end) = start.checked_add(total) else {
                continue;
            };
            if starts_guard(start) && covered(start, end) {
                if found.is_some() {
                    return None;
                }
                found = Some(start);
            }
        }
        found
    }
}

/// One line of `/proc/self/maps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    start: usize,
    end: usize,
    /// `---p`: no access at all.
    inaccessible: bool,
}

/// Adjacent mappings joined: `(start, end)` of each stretch of mapped addresses.
fn contiguous_runs(mappings: &[Mapping]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for m in mappings {
        match runs.last_mut() {
            Some(run) if run.1 == m.start => run.1 = m.end,
            _ => runs.push((m.start, m.end)),
        }
    }
    runs
}

/// The lines of `/proc/self/maps`, in its (address) order.
fn parse_maps(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            Some(Mapping {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
                inaccessible: fields.next()?.starts_with("---"),
            })
        })
        .collect()
}

/// An engine's linear-memory pool, and the gate that keeps instances out while it is
/// released.
pub(crate) struct PoolMemory {
    /// Keeps the pool mapped while this lives.
    engine: wasmtime::Engine,
    ticker: Arc<TickerState>,
    geometry: Geometry,
    /// `(start, length)`, found at the first release; `None` inside when not found.
    span: OnceLock<Option<(usize, usize)>>,
    /// The idle stretch (the ticker's park time) last released, so that a process that
    /// stays idle is not released again for nothing.
    released_stretch: AtomicU64,
}

impl PoolMemory {
    /// Registers `engine`'s pool, whose instances `ticker` counts.
    pub(crate) fn register(
        engine: wasmtime::Engine,
        ticker: Arc<TickerState>,
        geometry: Geometry,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            engine,
            ticker,
            geometry,
            span: OnceLock::new(),
            released_stretch: AtomicU64::new(0),
        });
        POOLS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&pool));
        pool
    }

    /// Drops the pool's resident pages if no instance is alive, and none has been for
    /// `min_idle` (when not zero); returns the bytes of anonymous memory the process holds
    /// fewer afterwards. `None` when instances run, the process released already in this
    /// idle stretch, or the pool cannot be found. Instances that start meanwhile wait for
    /// it (milliseconds).
    pub(crate) fn release(&self, min_idle: Duration) -> Option<u64> {
        let parked_at = self.ticker.parked_at.load(Ordering::SeqCst);
        if parked_at != 0 && self.released_stretch.load(Ordering::Relaxed) == parked_at {
            return None;
        }
        if !min_idle.is_zero() && (parked_at == 0 || self.ticker.parked_for(parked_at) < min_idle) {
            return None;
        }
        let (start, len) = (*self.span.get_or_init(|| self.find()))?;
        let before = anonymous_resident_bytes();
        let released = {
            let _gate = self
                .ticker
                .release_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Then look: an instance counted before this flag was up is seen here; one
            // counted after sees the flag and waits for the gate (`EpochTicker::ticking`).
            self.ticker.releasing.store(true, Ordering::SeqCst);
            let idle = self.ticker.live.load(Ordering::SeqCst) == 0;
            let released = idle && drop_pages(start, len);
            self.ticker.releasing.store(false, Ordering::SeqCst);
            released
        };
        if !released {
            return None;
        }
        self.released_stretch.store(parked_at, Ordering::Relaxed);
        let freed = before.saturating_sub(anonymous_resident_bytes());
        tracing::debug!("released {freed} bytes of idle instance memory");
        Some(freed)
    }

    /// The pool's span, around a probe instance's memory.
    fn find(&self) -> Option<(usize, usize)> {
        let found = probe_slot_base(&self.engine).and_then(|base| {
            let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
            let start = self.geometry.locate(base, &parse_maps(&maps))?;
            Some((start, self.geometry.total()?))
        });
        if found.is_none() {
            tracing::debug!("the instance pool was not found: its idle memory stays resident");
        }
        found
    }
}

/// The base address of one pool slot: the memory of an instance of an empty module.
fn probe_slot_base(engine: &wasmtime::Engine) -> Option<usize> {
    // `(module (memory (export "m") 1))`
    const ONE_MEMORY: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x05, 0x03, 0x01, 0x00, 0x01, // one memory, at least one page
        0x07, 0x05, 0x01, 0x01, b'm', 0x02, 0x00, // exported as "m"
    ];
    let module = wasmtime::Module::new(engine, ONE_MEMORY).ok()?;
    let mut store = wasmtime::Store::new(engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).ok()?;
    let memory = instance.get_memory(&mut store, "m")?;
    Some(memory.data_ptr(&store) as usize)
}

/// `RssAnon` of `/proc/self/status`, in bytes (0 where it cannot be read).
fn anonymous_resident_bytes() -> u64 {
    crate::budget::proc_kib_field("/proc/self/status", "RssAnon:").unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn drop_pages(start: usize, len: usize) -> bool {
    // SAFETY: the range is the instance pool's reservation, which the engine kept alive by
    // `PoolMemory` keeps mapped, and no instance is alive (the caller holds the gate that
    // new instances wait at). Every slot then holds what a reset left: zeros, or its
    // memory image in a private file mapping. MADV_DONTNEED returns anonymous pages as
    // zeros and private file pages as the file's bytes on the next access: the same
    // contents. A slot whose reset is still finishing on another thread (the store's data,
    // which holds the instance's count, drops first) ends up the same either way.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn drop_pages(_start: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: usize = 1 << 30;
    const MIB: usize = 1 << 20;

    fn geometry() -> Geometry {
        Geometry {
            slots: 4,
            slot_bytes: 4 * GIB + 32 * MIB,
            pre_guard: 32 * MIB,
        }
    }

    fn mapping(start: usize, end: usize, inaccessible: bool) -> Mapping {
        Mapping {
            start,
            end,
            inaccessible,
        }
    }

    /// A pool at `start` as the maps show it after slot 1 served: its guard and slot 0
    /// inaccessible, slot 1's first MiB read-write, the rest inaccessible.
    fn pool_at(start: usize) -> Vec<Mapping> {
        let g = geometry();
        let slot1 = start + g.pre_guard + g.slot_bytes;
        vec![
            mapping(start, slot1, true),
            mapping(slot1, slot1 + MIB, false),
            mapping(slot1 + MIB, start + g.total().unwrap(), true),
        ]
    }

    #[test]
    fn the_pool_is_found_around_any_of_its_slots() {
        let g = geometry();
        let start = 0x7d00_0000_0000;
        let mut maps = vec![mapping(start - 2 * MIB, start - MIB, false)];
        maps.extend(pool_at(start));
        let end = start + g.total().unwrap();
        maps.push(mapping(end, end + MIB, false));
        for slot in 0..g.slots {
            let base = start + g.pre_guard + slot * g.slot_bytes;
            assert_eq!(g.locate(base, &maps), Some(start), "slot {slot}");
        }
        // The last slot merged into an inaccessible mapping above it.
        let mut merged = pool_at(start);
        merged.last_mut().unwrap().end += GIB;
        assert_eq!(g.locate(start + g.pre_guard, &merged), Some(start));
    }

    #[test]
    fn a_pool_that_is_not_whole_or_not_certain_is_not_found() {
        let g = geometry();
        let start = 0x7d00_0000_0000;
        let base = start + g.pre_guard;
        // A hole in the pool.
        let mut holed = pool_at(start);
        holed.remove(1);
        assert_eq!(g.locate(base, &holed), None);
        // The guard before the pool merged into an inaccessible neighbour below.
        let mut guard_merged = pool_at(start);
        guard_merged[0].start -= MIB;
        assert_eq!(g.locate(base, &guard_merged), None);
        // Another pool of the same size right below, with a used slot (1) at the same
        // place: a whole pool also fits from that slot's start, but it is accessible.
        let lower = start - g.total().unwrap();
        let mut twins = pool_at(lower);
        twins.extend(pool_at(start));
        assert_eq!(g.locate(base, &twins), Some(start));
    }

    #[test]
    fn maps_lines_parse_into_ranges() {
        let maps = "55c00f22a000-55c00fd44000 r--p 00000000 00:2d 123 /bin/wisp\n\
                    7dd156000000-7dd158000000 ---p 00000000 00:00 0 \n";
        assert_eq!(
            parse_maps(maps),
            vec![
                mapping(0x55c0_0f22_a000, 0x55c0_0fd4_4000, false),
                mapping(0x7dd1_5600_0000, 0x7dd1_5800_0000, true)
            ]
        );
        assert_eq!(
            contiguous_runs(&[
                mapping(1, 2, false),
                mapping(2, 5, true),
                mapping(7, 8, false)
            ]),
            vec![(1, 5), (7, 8)]
        );
    }
}

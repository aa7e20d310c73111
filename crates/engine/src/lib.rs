//! Wasmtime policy for Wisp, in one place.
//!
//! Third step of the data path: `LockedApp` → **engine** → triggers. This crate owns the one
//! [`wasmtime::Engine`] of the process (pooling allocator sized from one `max_instances`
//! knob, copy-on-write memory images, epoch interruption), the on-disk cache of compiled
//! code, the conversion of core modules into components, and the per-instance host state
//! (sandboxed `wasi:cli`, `wasi:http`). Triggers get a [`LoadedApp`] whose components are
//! pre-linked (`InstancePre`), so a request only pays for instantiation.

mod app;
mod budget;
mod cache;
mod deny;
mod files;
mod host;
mod lanes;
mod legacy_abi;
mod outbound;
mod pool_memory;
mod sockets;
mod spin1_http;
mod startup_code;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use app::{
    AppLimits, CommandInput, ComponentReport, EventCall, GuestError, GuestOutput, HttpExport,
    InstanceSlot, LoadedApp, LoadedComponent, inspect_component, middleware_only_components,
};
pub use budget::{available_memory, default_memory_budget, release_free_heap};
pub use host::{GuestFault, Host};
pub use lanes::{
    ConnectionLane, FairShare, SLOW_AFTER, lower_this_threads_priority, on_slow_lane,
    send_connection_to_slow_lane, slow_lane_handle,
};
pub use outbound::{DEFAULT_MAX_OUTBOUND_REQUESTS, LocalDispatch, LocalResponse, LocalTarget};
pub use pool_memory::release_idle_instance_memory;
pub use startup_code::{
    IDLE_RELEASE_AFTER, SETTLE_AFTER, release_read_only_pages, release_read_only_pages_when_idle,
    release_startup_code,
};

/// How often the epoch ticker advances; the granularity of CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine settings; every field has a default a user can override from the CLI.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many instances may exist at once; sizes the pooling allocator. Start-up cost
    /// grows with it (the pool sets up a guarded fiber stack per slot): 256 starts in about
    /// 6 ms, 1000 in about 10 ms (see docs/performance.md).
    pub max_instances: u32,
    /// Linear-memory cap per instance, in bytes.
    pub memory_limit: u64,
    /// Wall-clock deadline for one request, CPU included.
    pub request_timeout: Duration,
    /// Where compiled code is cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (falls back to on-demand if the reservation fails).
    pub pooling: bool,
    /// Most outbound requests one incoming request (with everything it calls
    /// in-process) may make; stops fan-out and self-call loops.
    pub max_outbound_requests: u32,
    /// Idle outbound HTTP connections each component keeps for reuse (0: none, every
    /// request dials afresh).
    pub outbound_idle_connections: usize,
    /// Largest component source read, in bytes.
    pub max_component_bytes: u64,
    /// Memory all live instances together may reserve, in bytes; instances wait for it.
    pub memory_budget: u64,
    /// HTTP components at least this many bytes of wasm that are not in the compile cache
    /// first get baseline code (wasmtime's Winch: seconds faster to make, slower to run)
    /// and serve with it while the optimised code compiles in the background; new
    /// instances switch to the optimised code once it is ready (and cached). `None` always
    /// waits for the optimised code.
    pub baseline_compile_min_bytes: Option<u64>,
}

/// The version suffix of WASI 0.2's 2023 release candidates (`-10-18`, `-11-10`), which
/// spin-sdk 2.0 and 2.1 (Spin 2.0 and 2.1) and SDKs of that winter built against.
pub const WASI_2023_RC: &str = "@0.2.0-rc-2023-";

/// What to tell the author of a component using [`WASI_2023_RC`] interfaces.
pub const WASI_2023_RC_HINT: &str = "it was built against a 2023 release candidate of WASI \
    0.2 (spin-sdk 2.0 or 2.1 for Rust, or another SDK of that time), which Wisp does not \
    provide; rebuild it with a current SDK (spin-sdk 2.2 and later target WASI 0.2.0)";

/// Default of [`EngineConfig::baseline_compile_min_bytes`]: below 1 MiB the optimising
/// compiler takes a fraction of a second anyway.
pub const DEFAULT_BASELINE_COMPILE_MIN_BYTES: u64 = 1 << 20;

/// Default of [`EngineConfig::outbound_idle_connections`].
pub const DEFAULT_OUTBOUND_IDLE_CONNECTIONS: usize = wisp_outbound::pool::MAX_IDLE;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            memory_limit: 128 << 20,
            request_timeout: Duration::from_secs(30),
            cache_dir: default_cache_dir(),
            pooling: true,
            max_outbound_requests: DEFAULT_MAX_OUTBOUND_REQUESTS,
            outbound_idle_connections: DEFAULT_OUTBOUND_IDLE_CONNECTIONS,
            max_component_bytes: wisp_app::DEFAULT_MAX_SOURCE_BYTES,
            memory_budget: default_memory_budget(),
            baseline_compile_min_bytes: Some(DEFAULT_BASELINE_COMPILE_MIN_BYTES),
        }
    }
}

/// The default compile cache: `$XDG_CACHE_HOME/wisp` or `~/.cache/wisp`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("wisp"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("wisp"))
}

/// `text` with the characters that could rewrite a terminal or reorder what a reader sees
/// (controls other than newline and tab, bidirectional overrides and isolates) escaped as
/// `\u{..}`. A refusal quotes names from the refused component's own bytes (import and
/// export names), which a hostile component chooses.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(
                c,
                '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| match unsafe_char(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// Errors from building the engine or loading components. Each names the component at fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Wasmtime refused the configuration.
    #[error("cannot configure the wasm engine: {0}")]
    Config(String),
    /// A component's file could not be read, or is not a usable file.
    #[error("component `{component}`: cannot load its source")]
    Read {
        /// Component id.
        component: String,
        /// Why the file was refused.
        #[source]
        source: wisp_app::SourceError,
    },
    /// The file changed after the app was resolved.
    #[error(
        "component `{component}`: {path} changed since the app was resolved (digest {found}, expected {expected}); restart to pick up the new build"
    )]
    DigestMismatch {
        /// Component id.
        component: String,
        /// File at fault.
        path: PathBuf,
        /// Digest found now.
        found: String,
        /// Digest in the LockedApp.
        expected: String,
    },
    /// An app's own limits do not fit the engine's.
    #[error("{0}")]
    Limits(String),
    /// The bytes are not a usable WebAssembly component.
    #[error("component `{component}` {}", printable(.message))]
    Invalid {
        /// Component id.
        component: String,
        /// Why it was refused, and what to do.
        message: String,
    },
    /// Preparing the component's files failed.
    #[error("component `{component}`: cannot prepare files under {path}: {source}")]
    Files {
        /// Component id.
        component: String,
        /// Path at fault.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file listed in the component's `files` is not a usable file.
    #[error("component `{component}`: cannot stage a files entry")]
    FileRefused {
        /// Component id.
        component: String,
        /// Why the file was refused.
        #[source]
        source: wisp_app::SourceError,
    },
}

/// The process-wide engine with Wisp's policy applied.
#[derive(Clone)]
pub struct WispEngine {
    engine: wasmtime::Engine,
    config: Arc<EngineConfig>,
    pooling: bool,
    /// One permit per live instance: requests beyond `max_instances` wait for a slot
    /// instead of failing, and peak memory stays within `max_instances × memory_limit`.
    pub(crate) instance_permits: Arc<tokio::sync::Semaphore>,
    /// Memory all live instances together may hold.
    pub(crate) budget: Arc<budget::MemoryBudget>,
    /// Compiled components in memory, by source digest: apps using the same component
    /// (a node's many copies of one app) share its code.
    pub(crate) code: Arc<cache::SharedCode>,
    /// Which busy apps give way to the others (see [`AppLimits::busy_above`]).
    pub(crate) fair_share: Arc<lanes::FairShare>,
    /// Where components record requests, instances and CPU time (disabled by default).
    pub(crate) metrics: wisp_metrics::Metrics,
    /// Where spans go (off by default).
    pub(crate) tracing: wisp_telemetry::Tracing,
    ticker: Arc<EpochTicker>,
    /// The baseline-compiler engine, made on first use (see
    /// [`EngineConfig::baseline_compile_min_bytes`]); `None` inside when it cannot be.
    baseline: Arc<OnceLock<Option<wasmtime::Engine>>>,
    /// Live [`BaselineHold`]s: while any is, components stay on their baseline code.
    pub(crate) baseline_holds: Arc<std::sync::atomic::AtomicUsize>,
    /// Optimising compiles queued or running in the background.
    pub(crate) optimising: Arc<Optimising>,
    /// The background compiles of optimised code, and who waits for them.
    pub(crate) optimiser: Arc<app::Optimiser>,
    /// Linkers by the capabilities they link, each built once (see
    /// [`WispEngine::release_linkers`]).
    pub(crate) linkers: Arc<app::SharedLinkers>,
    /// The instance pool's kept memory, released when idle (`None` without a pool).
    pool_memory: Option<Arc<pool_memory::PoolMemory>>,
}

impl std::fmt::Debug for WispEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WispEngine")
            .field("config", &self.config)
            .field("pooling", &self.pooling)
            .finish()
    }
}

impl WispEngine {
    /// Builds the engine. Tries the pooling allocator first and falls back to on-demand
    /// allocation when the address-space reservation fails (e.g. under a low `ulimit -v`).
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let (engine, pooling) = if config.pooling {
            match wasmtime::Engine::new(&wasmtime_config(&config, Pool::Serving)) {
                Ok(engine) => (engine, true),
                Err(err) => {
                    tracing::warn!(
                        "pooling allocator unavailable ({err}); using on-demand allocation"
                    );
                    (build(&config, false)?, false)
                }
            }
        } else {
            (build(&config, false)?, false)
        };
        let baseline = Arc::new(OnceLock::new());
        let ticker = Arc::new(EpochTicker::spawn(
            engine.clone(),
            baseline.clone(),
            TICKER_GRACE_TICKS,
        ));
        let permits = usize::try_from(config.max_instances).unwrap_or(usize::MAX);
        let budget = Arc::new(budget::MemoryBudget::new(config.memory_budget));
        let pool_memory = pooling
            .then(|| {
                pool_memory::Geometry::of(&engine, pool_memories(&config), config.memory_limit)
            })
            .flatten()
            .map(|geometry| {
                pool_memory::PoolMemory::register(engine.clone(), ticker.state.clone(), geometry)
            });
        Ok(Self {
            engine,
            config: Arc::new(config),
            pooling,
            instance_permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            budget,
            code: Arc::default(),
            fair_share: Arc::default(),
            metrics: wisp_metrics::Metrics::disabled(),
            tracing: wisp_telemetry::Tracing::disabled(),
            ticker,
            baseline,
            baseline_holds: Arc::default(),
            optimising: Arc::default(),
            optimiser: Arc::default(),
            linkers: Arc::default(),
            pool_memory,
        })
    }

    /// Returns the linear memory the instance pool keeps resident between instances (up
    /// to `keep_resident` per slot a burst used) to the system, if no instance is alive and
    /// none has run for `min_idle` (not checked when zero). Returns how many bytes of
    /// anonymous memory the process holds fewer afterwards, or `None` when nothing was
    /// released (instances alive, already released since the last instance, no pool, or
    /// the pool not found). The next instance of each component faults its pages in again.
    /// Instances that start during the release wait for it.
    pub fn release_idle_instance_memory(&self, min_idle: Duration) -> Option<u64> {
        self.pool_memory.as_ref()?.release(min_idle)
    }

    /// Drops the linkers kept for later app loads (about 250 KiB for the default
    /// capabilities; loaded apps do not need them): a server of one app calls it once the
    /// app is loaded, a node that keeps loading apps does not. A later load links again.
    pub fn release_linkers(&self) {
        self.linkers.clear();
    }

    /// How many components' optimised code is still compiling in the background.
    pub fn optimising(&self) -> usize {
        *self
            .optimising
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once no optimised code is queued or compiling in the background (so the
    /// compile cache has it for the next start). Dropping the future stops the wait only.
    pub async fn optimised_code_done(&self) {
        loop {
            let notified = self.optimising.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a compile ending in between wakes it.
            notified.as_mut().enable();
            if self.optimising() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// While the returned guard lives, components serving baseline code keep it (their
    /// optimised code is not compiled yet): lets a test or a benchmark observe baseline
    /// code however fast the optimising compiler is.
    pub fn hold_baseline_code(&self) -> BaselineHold {
        self.baseline_holds.fetch_add(1, Ordering::AcqRel);
        BaselineHold(self.baseline_holds.clone())
    }

    /// The engine making baseline (Winch) code, built on first use: the same settings and
    /// pool limits (a component the pool refuses is refused on baseline code too), but its
    /// pool keeps nothing resident once an instance ends, since it serves only until
    /// optimised code takes over. `None` when Winch cannot be set up.
    pub(crate) fn baseline_engine(&self) -> Option<&wasmtime::Engine> {
        self.baseline
            .get_or_init(|| {
                let pool = match self.pooling {
                    true => Pool::Transient,
                    false => Pool::None,
                };
                let mut config = wasmtime_config(&self.config, pool);
                config.strategy(wasmtime::Strategy::Winch);
                wasmtime::Engine::new(&config)
                    .inspect_err(|err| {
                        tracing::warn!(
                            "no baseline compiler ({err:#}); compiling with the optimising one only"
                        )
                    })
                    .ok()
            })
            .as_ref()
    }

    /// Keeps the epoch advancing (deadlines enforced) while the guard lives: one per store.
    pub(crate) fn ticking(&self) -> Ticking {
        self.ticker.ticking()
    }

    /// This engine recording into `metrics`: components loaded from now on record their
    /// requests, instances, CPU time and capability use there.
    pub fn with_metrics(mut self, metrics: wisp_metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// This engine sending spans to `tracing`: requests start server spans, and
    /// instantiation, outbound HTTP and key-value and SQLite operations their children.
    pub fn with_tracing(mut self, tracing: wisp_telemetry::Tracing) -> Self {
        self.tracing = tracing;
        self
    }

    /// Where spans go (off unless [`WispEngine::with_tracing`] was called).
    pub fn tracing(&self) -> &wisp_telemetry::Tracing {
        &self.tracing
    }

    /// Where components record (disabled unless [`WispEngine::with_metrics`] was called).
    pub fn metrics(&self) -> &wisp_metrics::Metrics {
        &self.metrics
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The effective configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Bytes of the memory budget live instances hold now.
    pub fn memory_in_use(&self) -> u64 {
        self.budget.in_use()
    }

    /// The memory budget, in bytes.
    pub fn memory_budget(&self) -> u64 {
        self.budget.total()
    }
}

impl WispEngine {
    /// The source of a package [`Precompiler::package`] wrote, with its compiled code put
    /// in this engine's compile cache for that source's digest when the code fits this
    /// engine and passes its checksum ([`PrecompiledCode::Cached`]); then loading the
    /// source does not compile it. Code that does not fit, or is damaged, is dropped and
    /// the source compiles as usual: precompiled code is never trusted blindly. The caller
    /// checks the source against the digest it expects. An error means `package` is not
    /// one (or is cut short).
    pub fn unpack_precompiled<'a>(
        &self,
        package: &'a [u8],
    ) -> Result<(&'a [u8], PrecompiledCode), EngineError> {
        cache::unpackage(&self.engine, self.config.cache_dir.as_deref(), package).map_err(
            |message| EngineError::Invalid {
                component: "(precompiled)".to_owned(),
                message,
            },
        )
    }
}

pub use cache::Unpacked as PrecompiledCode;

/// Compiles components ahead of time, outside any app, into packages a [`WispEngine`] with
/// the same settings takes back ([`WispEngine::unpack_precompiled`]): the containerd shim's
/// precompile hook, whose output containerd keeps in its content store.
pub struct Precompiler {
    engine: wasmtime::Engine,
}

impl std::fmt::Debug for Precompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Precompiler").finish_non_exhaustive()
    }
}

impl Precompiler {
    /// A compiler making code for engines with `config`'s settings. It reserves no instance
    /// pool (the pool does not change the code).
    pub fn new(config: &EngineConfig) -> Result<Self, EngineError> {
        Ok(Self {
            engine: build(config, false)?,
        })
    }

    /// Changes whenever the code this compiler makes would not fit an engine that used
    /// an earlier key (another wasmtime, other settings, another entry layout).
    pub fn cache_key(&self) -> u64 {
        cache::entry_key(&self.engine)
    }

    /// `wasm` (a component, or a core module, componentized as at load) with its compiled
    /// code, packed for [`WispEngine::unpack_precompiled`].
    pub fn package(&self, component_id: &str, wasm: &[u8]) -> Result<Vec<u8>, EngineError> {
        cache::package(&self.engine, component_id, wasm)
    }
}

fn build(config: &EngineConfig, pooling: bool) -> Result<wasmtime::Engine, EngineError> {
    let pool = match pooling {
        true => Pool::Serving,
        false => Pool::None,
    };
    wasmtime::Engine::new(&wasmtime_config(config, pool))
        .map_err(|e| EngineError::Config(format!("{e:#}")))
}

/// Which instance allocator an engine gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// On-demand allocation.
    None,
    /// The serving pool: slots keep memory resident and their module affinity.
    Serving,
    /// The same limits, keeping nothing once an instance ends (baseline code's engine).
    Transient,
}

fn wasmtime_config(config: &EngineConfig, pool: Pool) -> wasmtime::Config {
    let mut c = wasmtime::Config::new();
    c.wasm_component_model(true);
    c.wasm_component_model_async(true);
    c.epoch_interruption(true);
    c.memory_init_cow(true);
    c.parallel_compilation(true);
    if pool != Pool::None {
        let n = config.max_instances.max(1);
        let mut p = wasmtime::PoolingAllocationConfig::new();
        // A component instance holds several core instances (the program, WASI adapter
        // shims, fixups); JS and Python components hold more tables. Memories are usually
        // one per component.
        p.total_component_instances(n)
            .total_core_instances(n.saturating_mul(10))
            .total_memories(pool_memories(config))
            .total_tables(n.saturating_mul(10))
            .total_stacks(n.saturating_mul(2))
            .max_memory_size(usize::try_from(config.memory_limit).unwrap_or(usize::MAX))
            // Reset dirty pages with memset instead of madvise + re-fault: the dominant
            // per-request cost of a fresh instance. With PAGEMAP_SCAN (Linux 6.7+) only the
            // pages a request touched are reset. What stays resident stays after a burst,
            // so it is bounded by the memory budget (see `keep_resident`).
            .linear_memory_keep_resident(keep_resident(config))
            // Keep every warm slot's affinity to the module it last held: a node serving
            // many distinct components reuses a slot already mapped for the same module
            // instead of remapping another's (see docs/performance.md, the node). What a
            // slot keeps resident is still bounded by `keep_resident`, and one app keeps
            // reusing the same slots.
            .max_unused_warm_slots(n)
            .table_keep_resident(1 << 20)
            .async_stack_keep_resident(128 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        if pool == Pool::Transient {
            p.linear_memory_keep_resident(0)
                .table_keep_resident(0)
                .async_stack_keep_resident(0)
                .max_unused_warm_slots(0);
        }
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(p));
    }
    c
}

/// Linear memories in the instance pool: components usually have one, a few have two.
fn pool_memories(config: &EngineConfig) -> u32 {
    config.max_instances.max(1).saturating_mul(2)
}

/// Bytes of each pool slot's linear memory kept resident between instances: an eighth of
/// the memory budget spread over the slots, between 1 and 16 MiB. After a burst every slot
/// it used keeps up to this much, so what a burst leaves behind is at most an eighth of the
/// budget (the default budget on a 24 GiB machine keeps 6 MiB per slot).
fn keep_resident(config: &EngineConfig) -> usize {
    let per_slot = config.memory_budget / 8 / u64::from(config.max_instances.max(1));
    let mib = (per_slot >> 20).clamp(1, 16);
    usize::try_from(mib << 20).unwrap_or(16 << 20)
}

/// Counts the optimising compiles running in the background.
#[derive(Default)]
pub(crate) struct Optimising {
    running: std::sync::Mutex<usize>,
    /// Woken at each compile's end.
    changed: tokio::sync::Notify,
}

impl Optimising {
    /// Counts one compile until the returned guard drops (also on a panic).
    pub(crate) fn start(self: &Arc<Self>) -> OptimisingGuard {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        OptimisingGuard(self.clone())
    }
}

pub(crate) struct OptimisingGuard(Arc<Optimising>);

impl Drop for OptimisingGuard {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.changed.notify_waiters();
    }
}

/// Keeps components on their baseline code while it lives ([`WispEngine::hold_baseline_code`]).
#[derive(Debug)]
pub struct BaselineHold(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BaselineHold {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while an instance is alive, so
/// deadlines can interrupt guests. After [`TICKER_GRACE`] with none alive it parks: an
/// idle process would otherwise wake at every tick (about 3 ms of CPU a second in a shim
/// pod here, at the 10 ms tick). The grace spares a steady trickle of requests (one at a time: every
/// instance the first alive) a wake-up of this thread per request.
struct EpochTicker {
    state: Arc<TickerState>,
    thread: std::thread::Thread,
    join: Option<std::thread::JoinHandle<()>>,
}

/// How long the ticker keeps ticking without an instance alive before it parks.
const TICKER_GRACE: Duration = Duration::from_secs(1);

/// [`TICKER_GRACE`] in ticks.
const TICKER_GRACE_TICKS: u32 = (TICKER_GRACE.as_millis() / EPOCH_TICK.as_millis()) as u32;

struct TickerState {
    stop: AtomicBool,
    /// Instances alive ([`Ticking`] guards).
    live: std::sync::atomic::AtomicUsize,
    /// Whether the ticker is parked, or about to park: only then does a new instance wake it.
    parked: AtomicBool,
    /// Ticks so far (for tests).
    ticks: std::sync::atomic::AtomicU64,
    /// When the ticker last parked (milliseconds after `origin`, at least 1), 0 while it
    /// ticks: how long no instance has run.
    parked_at: std::sync::atomic::AtomicU64,
    origin: std::time::Instant,
    /// Up while the pool's idle memory is being released ([`pool_memory`]): a new instance
    /// that sees it waits for `release_lock`.
    releasing: AtomicBool,
    release_lock: std::sync::Mutex<()>,
}

impl TickerState {
    /// How long ago the ticker parked at `parked_at`.
    fn parked_for(&self, parked_at: u64) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(parked_at - 1))
    }
}

impl EpochTicker {
    /// Ticks `engine`, and the baseline engine once there is one (its stores' deadlines
    /// count the same ticks); parks after `grace_ticks` without an instance.
    fn spawn(
        engine: wasmtime::Engine,
        baseline: Arc<OnceLock<Option<wasmtime::Engine>>>,
        grace_ticks: u32,
    ) -> Self {
        let state = Arc::new(TickerState {
            stop: AtomicBool::new(false),
            live: std::sync::atomic::AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            ticks: std::sync::atomic::AtomicU64::new(0),
            parked_at: std::sync::atomic::AtomicU64::new(0),
            origin: std::time::Instant::now(),
            releasing: AtomicBool::new(false),
            release_lock: std::sync::Mutex::new(()),
        });
        let join = std::thread::Builder::new()
            .name("wisp-epoch".to_owned())
            .spawn({
                let state = state.clone();
                move || {
                    let mut idle_ticks = grace_ticks;
                    while !state.stop.load(Ordering::Acquire) {
                        if state.live.load(Ordering::SeqCst) > 0 {
                            idle_ticks = 0;
                        } else if idle_ticks >= grace_ticks {
                            // Say so before the last look at `live`: an instance counted
                            // after that look sees the flag and wakes the thread (a wake-up
                            // that comes before the park makes it return at once).
                            state.parked.store(true, Ordering::SeqCst);
                            if state.live.load(Ordering::SeqCst) == 0 {
                                let now = state.origin.elapsed().as_millis() as u64;
                                state.parked_at.store(now + 1, Ordering::SeqCst);
                                std::thread::park();
                                state.parked_at.store(0, Ordering::SeqCst);
                            }
                            state.parked.store(false, Ordering::SeqCst);
                            idle_ticks = 0;
                            continue;
                        } else {
                            idle_ticks += 1;
                        }
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                        if let Some(Some(baseline)) = baseline.get() {
                            baseline.increment_epoch();
                        }
                        state.ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self {
            state,
            thread: join.thread().clone(),
            join: Some(join),
        }
    }

    /// Keeps the epoch advancing while the returned guard lives (an instance's store).
    fn ticking(self: &Arc<Self>) -> Ticking {
        self.state.live.fetch_add(1, Ordering::SeqCst);
        if self.state.releasing.load(Ordering::SeqCst) {
            // The pool's idle memory is being released: its instance must not start before
            // that is done (rare, and milliseconds long).
            drop(self.state.release_lock.lock());
        }
        if self.state.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        Ticking(self.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.thread.unpark();
        if let Some(thread) = self.join.take() {
            let _ = thread.join();
        }
    }
}

/// An instance alive: the epoch ticker runs while any exists (see [`EpochTicker`]).
pub(crate) struct Ticking(Arc<EpochTicker>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.state.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod ticker_tests {
    use super::*;

    /// The ticker ticks only while a guard lives (and its grace after), and starts again
    /// for the next one.
    #[test]
    fn the_epoch_ticker_parks_without_instances() {
        let ticker = Arc::new(EpochTicker::spawn(
            wasmtime::Engine::default(),
            Arc::default(),
            3,
        ));
        let ticks = || ticker.state.ticks.load(Ordering::Relaxed);
        std::thread::sleep(EPOCH_TICK * 5);
        assert_eq!(ticks(), 0, "no instance: parked");
        for round in 1..=2 {
            let before = ticks();
            let guard = ticker.ticking();
            std::thread::sleep(EPOCH_TICK * 5);
            assert!(ticks() > before, "round {round}: an instance makes it tick");
            drop(guard);
            // The tick under way when the guard went may still land, late on a loaded
            // machine: wait (up to about a second) until two readings 3 ticks apart agree.
            let mut parked = ticks();
            for _ in 0..30 {
                std::thread::sleep(EPOCH_TICK * 3);
                let now = ticks();
                if now == parked {
                    break;
                }
                parked = now;
            }
            std::thread::sleep(EPOCH_TICK * 5);
            assert_eq!(ticks(), parked, "round {round}: parked again");
            assert!(ticker.state.parked.load(Ordering::SeqCst));
        }
    }

    /// Instances one after the other, each gone before the next (requests at concurrency
    /// 1), find the ticker awake within its grace: none of them has to wake it.
    #[test]
    fn a_trickle_of_instances_keeps_the_ticker_awake() {
        let ticker = Arc::new(EpochTicker::spawn(
            wasmtime::Engine::default(),
            Arc::default(),
            TICKER_GRACE_TICKS,
        ));
        std::thread::sleep(EPOCH_TICK * 3);
        assert!(
            ticker.state.parked.load(Ordering::SeqCst),
            "parked at the start"
        );
        drop(ticker.ticking());
        let first = ticker.state.ticks.load(Ordering::Relaxed);
        for _ in 0..5 {
            std::thread::sleep(EPOCH_TICK * 2);
            assert!(
                !ticker.state.parked.load(Ordering::SeqCst),
                "awake within the grace"
            );
            drop(ticker.ticking());
        }
        assert!(
            ticker.state.ticks.load(Ordering::Relaxed) > first,
            "it kept ticking"
        );
    }
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn terminal_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(printable("plain `name`\n\tok"), "plain `name`\n\tok");
        assert_eq!(printable("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(printable("x\u{202e}y\u{7}"), "x\\u{202e}y\\u{7}");
        assert_eq!(printable("\u{61c}"), "\\u{61c}");
    }
}

#[cfg(test)]
mod precompile_tests {
    use super::*;

    #[test]
    fn a_precompiled_package_fills_a_pooling_engines_cache() {
        // The precompiler builds no pool; its code must still fit the pooling engine.
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig {
            cache_dir: Some(dir.path().to_owned()),
            max_instances: 4,
            ..EngineConfig::default()
        };
        let precompiler = Precompiler::new(&config).unwrap();
        let wasm = std::fs::read(wisp_test_programs::HELLO).unwrap();
        let package = precompiler.package("hello", &wasm).unwrap();
        let engine = WispEngine::new(config).unwrap();
        assert!(engine.pooling());
        let (source, used) = engine.unpack_precompiled(&package).unwrap();
        assert_eq!(source, wasm.as_slice());
        assert_eq!(used, PrecompiledCode::Cached);
        assert_eq!(precompiler.cache_key(), cache::entry_key(engine.engine()));
    }
}

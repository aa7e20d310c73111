//! A component's code tiers: baseline (Winch) code a component cold from the compiler
//! serves with at once, and the optimised (Cranelift) code that replaces it once compiled.
//! One background worker compiles the optimised code, one component at a time (a large
//! component's compile holds hundreds of MiB), and every loaded copy of a component (a
//! node's apps sharing it) shares its baseline code and switches together.

use super::HttpExport;
use crate::{EngineError, Host, WispEngine};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime_wasi_http::handler::ProxyPre;
use wisp_host::AppCapabilities;

/// The code a component's new instances start from; replaced when its optimised code is
/// ready.
#[derive(Clone)]
pub(super) struct TierCell(Arc<RwLock<Arc<Tier>>>);

impl TierCell {
    pub(super) fn new(tier: Tier) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(tier))))
    }

    /// The current tier.
    pub(super) fn current(&self) -> Arc<Tier> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, tier: Tier) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tier);
    }

    fn downgrade(&self) -> Weak<RwLock<Arc<Tier>>> {
        Arc::downgrade(&self.0)
    }
}

/// The app's linker on the baseline engine, made when the first component needs it.
pub(super) struct BaselineLinker<'a> {
    capabilities: &'a AppCapabilities,
    linker: OnceLock<Option<Linker<Host>>>,
}

impl<'a> BaselineLinker<'a> {
    /// Links the interfaces `capabilities` provides, on first use.
    pub(super) fn new(capabilities: &'a AppCapabilities) -> Self {
        Self {
            capabilities,
            linker: OnceLock::new(),
        }
    }

    fn get(&self, engine: &wasmtime::Engine) -> Option<&Linker<Host>> {
        self.linker
            .get_or_init(|| {
                super::linker(engine, |l| self.capabilities.add_to_linker(l))
                    .inspect_err(|err| tracing::warn!("no baseline linker ({err})"))
                    .ok()
            })
            .as_ref()
    }
}

/// One compiled form of a component, linked and ready to instantiate.
pub(super) struct Tier {
    /// The engine the code belongs to: its stores are made there.
    pub(super) engine: wasmtime::Engine,
    /// The component linked against every host interface.
    pub(super) pre: InstancePre<Host>,
    /// The HTTP handler, if the component exports one.
    pub(super) http: Option<(ProxyPre<Host>, HttpExport)>,
    /// The `run` function of its `wasi:cli/run@0.2.x` export, if the component is a
    /// command (what the wagi executor runs).
    pub(super) command: Option<wasmtime::component::ComponentExportIndex>,
    /// Baseline code, served until the optimised code replaces it.
    pub(super) baseline: bool,
    /// Keeps the compiled code (shared with other apps when optimised) alive.
    _code: Arc<wasmtime::component::Component>,
}

impl Tier {
    pub(super) fn link(
        engine: &wasmtime::Engine,
        linker: &Linker<Host>,
        code: Arc<wasmtime::component::Component>,
        id: &str,
        baseline: bool,
    ) -> Result<Self, EngineError> {
        // A dependency's capability imports it does not inherit are answered with
        // refusals, defined for this component only.
        let refusing;
        let linker = if crate::deny::has_denied_imports(&code) {
            let mut with_refusals = linker.clone();
            crate::deny::define_refusals(&mut with_refusals, &code, id)?;
            refusing = with_refusals;
            &refusing
        } else {
            linker
        };
        let pre = linker
            .instantiate_pre(&code)
            .map_err(|e| super::cannot_link(id, e))?;
        Ok(Self {
            engine: engine.clone(),
            http: super::http_export(&pre),
            command: super::command_export(engine, &code),
            pre,
            baseline,
            _code: code,
        })
    }
}

/// Background compiles of optimised code, and the components waiting for them.
#[derive(Default)]
pub(crate) struct Optimiser {
    state: Mutex<OptimiserState>,
}

#[derive(Default)]
struct OptimiserState {
    /// By code digest: the components serving from baseline code until it is optimised.
    pending: HashMap<String, Pending>,
    queue: VecDeque<Job>,
    /// Whether a worker thread is draining `queue`.
    working: bool,
}

impl Waiter {
    fn new(tier: &TierCell, linker: &Arc<Linker<Host>>, id: &str) -> Self {
        Self {
            tier: tier.downgrade(),
            linker: linker.clone(),
            id: id.to_owned(),
        }
    }
}

/// One component's baseline code, and who serves from it (guarded by the optimiser's
/// lock, like the map that holds it).
struct Pending {
    baseline: Arc<Component>,
    waiters: Vec<Waiter>,
}

/// A loaded copy of a component serving from baseline code: switched to the optimised
/// code through its own app's linker.
struct Waiter {
    tier: Weak<RwLock<Arc<Tier>>>,
    linker: Arc<Linker<Host>>,
    id: String,
}

struct Job {
    digest: String,
    id: String,
    wasm: Vec<u8>,
    /// Counted as running until done ([`WispEngine::optimised_code_done`]).
    _counted: crate::OptimisingGuard,
}

/// Baseline code for `wasm`, serving at once, with its optimised code queued for the
/// background worker; `Err(wasm)` (the caller compiles optimised code and waits) when the
/// engine does not make baseline code for a component this size, or Winch cannot compile
/// it (a feature it lacks, such as tail calls).
pub(super) fn start_on_baseline(
    engine: &WispEngine,
    baseline: &BaselineLinker<'_>,
    linker: &Arc<Linker<Host>>,
    id: &str,
    digest: &str,
    wasm: Vec<u8>,
) -> Result<TierCell, Vec<u8>> {
    let Some(min) = engine.config().baseline_compile_min_bytes else {
        return Err(wasm);
    };
    if (wasm.len() as u64) < min {
        return Err(wasm);
    }
    let Some((winch, baseline_linker)) = engine
        .baseline_engine()
        .and_then(|winch| Some((winch, baseline.get(winch)?)))
    else {
        return Err(wasm);
    };
    let started = std::time::Instant::now();
    let compiled = match crate::cache::compile_uncached(winch, id, &wasm) {
        Ok(compiled) => Arc::new(compiled),
        Err(err) => {
            tracing::info!(
                "component `{id}` cannot use baseline code ({err}); compiling optimised code first"
            );
            return Err(wasm);
        }
    };
    let tier = match Tier::link(winch, baseline_linker, compiled.clone(), id, true) {
        // Only a request takes the current code each time: an event trigger or an
        // embedder holding `instance_pre` keeps what it got, so other exports wait for
        // the optimised code.
        Ok(tier) if tier.http.is_some() => tier,
        Ok(_) => return Err(wasm),
        Err(err) => {
            tracing::debug!("component `{id}`: baseline code not linked ({err})");
            return Err(wasm);
        }
    };
    tracing::info!(
        "component `{id}` serves from baseline code (compiled in {:.1?}) while its optimised code compiles",
        started.elapsed()
    );
    let cell = TierCell::new(tier);
    let waiter = Waiter::new(&cell, linker, id);
    let optimiser = &engine.optimiser;
    let mut state = optimiser.lock();
    match state.pending.get_mut(digest) {
        // Another copy got there first while this one compiled: wait with it.
        Some(pending) => pending.waiters.push(waiter),
        None => {
            state.pending.insert(
                digest.to_owned(),
                Pending {
                    baseline: compiled,
                    waiters: vec![waiter],
                },
            );
            state.queue.push_back(Job {
                digest: digest.to_owned(),
                id: id.to_owned(),
                wasm,
                _counted: engine.optimising.start(),
            });
            if !state.working {
                state.working = true;
                drop(state);
                spawn_worker(engine);
            }
        }
    }
    Ok(cell)
}

/// The baseline code another loaded copy of this component serves from while its
/// optimised code compiles, linked for this app; it switches with the others. `None` when
/// there is none.
pub(super) fn join_pending(
    engine: &WispEngine,
    baseline: &BaselineLinker<'_>,
    linker: &Arc<Linker<Host>>,
    id: &str,
    digest: &str,
) -> Option<TierCell> {
    let code = engine
        .optimiser
        .lock()
        .pending
        .get(digest)?
        .baseline
        .clone();
    let winch = engine.baseline_engine()?;
    let tier = Tier::link(winch, baseline.get(winch)?, code.clone(), id, true).ok()?;
    let cell = TierCell::new(tier);
    let mut state = engine.optimiser.lock();
    match state.pending.get_mut(digest) {
        Some(current) if Arc::ptr_eq(&current.baseline, &code) => {
            current.waiters.push(Waiter::new(&cell, linker, id));
            Some(cell)
        }
        // Optimised in the meantime: the caller finds the code the engine now shares.
        _ => None,
    }
}

impl Optimiser {
    fn lock(&self) -> std::sync::MutexGuard<'_, OptimiserState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the thread that compiles queued components' optimised code, one at a time (the
/// compiler itself runs in parallel), and exits when the queue is empty.
fn spawn_worker(engine: &WispEngine) {
    let worker = engine.clone();
    let spawned = std::thread::Builder::new()
        .name("wisp-optimise".to_owned())
        .spawn(move || {
            let engine = worker;
            loop {
                let job = {
                    let mut state = engine.optimiser.lock();
                    match state.queue.pop_front() {
                        Some(job) => job,
                        None => {
                            state.working = false;
                            return;
                        }
                    }
                };
                let digest = job.digest.clone();
                let id = job.id.clone();
                // A compiler panic must not stop the worker, nor leave copies waiting.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optimise(&engine, job)))
                    .is_err()
                {
                    engine.optimiser.lock().pending.remove(&digest);
                    tracing::warn!(
                        "component `{id}` keeps its baseline code: the optimising compiler panicked"
                    );
                }
            }
        });
    if let Err(err) = spawned {
        // Components keep their baseline code; nothing waits on the queue forever.
        tracing::warn!("no thread for optimised code ({err}); components keep their baseline code");
        let mut state = engine.optimiser.lock();
        state.queue.clear();
        state.pending.clear();
        state.working = false;
    }
}

/// Compiles one component's optimised code (into the compile cache, as a cold load would)
/// and switches every copy serving its baseline code.
fn optimise(engine: &WispEngine, job: Job) {
    // The guard counts this compile as running until the switch below is done.
    let Job {
        digest,
        id,
        wasm,
        _counted,
    } = job;
    while engine
        .baseline_holds
        .load(std::sync::atomic::Ordering::Acquire)
        > 0
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let still_served = engine
        .optimiser
        .lock()
        .pending
        .get(&digest)
        .is_some_and(|pending| pending.waiters.iter().any(|w| w.tier.strong_count() > 0));
    if !still_served {
        // Every copy is gone (replaced, unloaded): no compile for nobody.
        engine.optimiser.lock().pending.remove(&digest);
        return;
    }
    let cache_dir = engine.config().cache_dir.clone();
    // Code compiled meanwhile by a load that could not wait (an event trigger's copy).
    let compiled = match engine.code.get(&digest) {
        Some(code) => Ok(code),
        None => crate::cache::compile(engine.engine(), cache_dir.as_deref(), &id, &digest, &wasm)
            .map(|compiled| engine.code.insert(&digest, compiled)),
    };
    // Out of the map first: a copy loaded from now on finds the optimised code itself.
    let Some(pending) = engine.optimiser.lock().pending.remove(&digest) else {
        return;
    };
    let code = match compiled {
        Ok(code) => code,
        Err(err) => {
            tracing::warn!(
                "component `{id}` keeps its baseline code: the optimising compiler failed ({err})"
            );
            return;
        }
    };
    let mut switched = 0;
    for waiter in pending.waiters {
        let Some(cell) = waiter.tier.upgrade().map(TierCell) else {
            continue;
        };
        match Tier::link(
            engine.engine(),
            &waiter.linker,
            code.clone(),
            &waiter.id,
            false,
        ) {
            Ok(tier) => {
                cell.replace(tier);
                switched += 1;
            }
            Err(err) => tracing::warn!(
                "component `{}` keeps its baseline code: its optimised code did not link ({err})",
                waiter.id
            ),
        }
    }
    match switched {
        0 => {}
        1 => tracing::info!("component `{id}` switched to its optimised code"),
        n => tracing::info!("component `{id}` switched to its optimised code ({n} loaded copies)"),
    }
}

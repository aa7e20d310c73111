//! A LockedApp made ready to serve: components compiled, linked and pre-instantiated.

use crate::budget::LearnedPeak;
use crate::outbound::{AppOutbound, ComponentOutbound, LocalDispatch};
use crate::{EngineError, GuestFault, Host, WispEngine};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use wasmtime::component::{InstancePre, Linker};
use wasmtime_wasi_http::handler::ProxyPre;
use wisp_app::{LockedApp, LockedComponent, sha256_digest};
use wisp_host::{AppCapabilities, ComponentCapabilities};
use wisp_outbound::OutboundClient;

mod compose;
mod run;
mod tiers;

pub use compose::middleware_only_components;
use compose::{code_digest, compose_dependencies, read_checked};
pub use run::{CommandInput, EventCall};
pub(crate) use tiers::Optimiser;
use tiers::{BaselineLinker, Tier, TierCell};

/// Which HTTP export a component has; detected once at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpExport {
    /// `wasi:http/incoming-handler@0.2.x` (WASI 0.2).
    IncomingHandler02,
    /// `wasi:http/handler@0.3.0` (WASI 0.3).
    Handler03,
}

impl std::fmt::Display for HttpExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::IncomingHandler02 => "wasi:http/incoming-handler@0.2",
            Self::Handler03 => "wasi:http/handler@0.3.0",
        })
    }
}

/// Limits one app's instances get where they differ from the engine's: the node gives
/// each app its own. `None` takes the engine's setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppLimits {
    /// Linear-memory cap per instance, in bytes; at most the engine's `memory_limit` (the
    /// size of a pool slot).
    pub memory_limit: Option<u64>,
    /// Deadline for one request or event.
    pub request_timeout: Option<Duration>,
    /// Most instances of this app alive at once, across its components: more requests
    /// queue on the app's own cap (in-process requests fail at once), so one flooded app
    /// cannot take every slot of the engine.
    pub max_instances: Option<u32>,
    /// Fair share between apps: while more than this many of the app's instances are in
    /// flight (counted against `max_instances`) and another app is being served, new ones
    /// start in the low-priority lane, so a flooded app cannot delay the other apps'
    /// requests by queueing its own on every worker thread. The node sets it to the
    /// number of CPUs; `None` never demotes.
    pub busy_above: Option<u32>,
    /// Whose stdout and stderr reach the process's streams (`wisp up --quiet`,
    /// `--follow`); the rest is dropped.
    pub guest_output: GuestOutput,
    /// Also append each component's stdout and stderr to `<dir>/<id>_stdout.txt` and
    /// `<dir>/<id>_stderr.txt` (`wisp up --log-dir`, as Spin names them).
    pub guest_log_dir: Option<PathBuf>,
    /// The app's `app` label in metrics: the node's deployed name; `None` takes the
    /// manifest's `application.name`.
    pub name: Option<String>,
}

/// Which components' stdout and stderr are written out, each line prefixed
/// `[component-id] `.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GuestOutput {
    /// Every component's.
    #[default]
    All,
    /// No component's.
    None,
    /// Only these components'.
    Only(std::collections::BTreeSet<String>),
}

impl GuestOutput {
    /// Whether `component`'s output is written out.
    pub fn shows(&self, component: &str) -> bool {
        match self {
            GuestOutput::All => true,
            GuestOutput::None => false,
            GuestOutput::Only(ids) => ids.contains(component),
        }
    }
}

/// An app's limits, resolved against the engine's.
struct ResolvedLimits {
    memory_limit: u64,
    timeout: Duration,
    /// The app's own instance cap and its size, if it has one.
    permits: Option<(Arc<tokio::sync::Semaphore>, u32)>,
    busy_above: Option<u32>,
    fair_share: Arc<crate::lanes::FairShare>,
    guest_output: GuestOutput,
    guest_log_dir: Option<PathBuf>,
    /// The app's `app` label in metrics.
    app_name: String,
}

impl ResolvedLimits {
    /// Whether a new instance (its slot already taken) starts in the low-priority lane:
    /// the app has more instances in flight than its fair share while another app is
    /// being served.
    fn over_share(&self) -> bool {
        let (Some((permits, cap)), Some(above)) = (&self.permits, self.busy_above) else {
            return false;
        };
        let in_flight = (*cap as usize).saturating_sub(permits.available_permits());
        let app = std::ptr::from_ref(self) as usize;
        self.fair_share.starts_slow(app, in_flight > above as usize)
    }

    /// An instance slot: the app's own (if it has a cap), then the engine's, waited for in
    /// turn. A `nested` (in-process) request fails at once instead: its caller holds a
    /// slot while it waits, and queueing could deadlock once every slot belongs to a
    /// waiting caller.
    pub(crate) async fn take_slot(
        &self,
        engine: &WispEngine,
        nested: bool,
    ) -> Result<InstanceSlot, GuestError> {
        let busy = |which: String| {
            let fault = GuestFault::NoInstanceSlot(which);
            GuestError {
                message: fault.to_string(),
                fault: Some(fault),
            }
        };
        let closed = |_| GuestError {
            fault: None,
            message: "the engine is shutting down".to_owned(),
        };
        let app = match &self.permits {
            Some((permits, cap)) if nested => Some(
                permits
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| busy(format!("{cap} of the app's own")))?,
            ),
            Some((permits, _)) => Some(permits.clone().acquire_owned().await.map_err(closed)?),
            None => None,
        };
        let permits = engine.instance_permits.clone();
        let engine = match nested {
            true => permits.try_acquire_owned().map_err(|_| {
                busy(format!(
                    "{} (--max-instances)",
                    engine.config().max_instances
                ))
            })?,
            false => permits.acquire_owned().await.map_err(closed)?,
        };
        Ok(InstanceSlot {
            _app: app,
            _engine: engine,
        })
    }
}

impl AppLimits {
    /// These limits against `engine`'s, for the app the manifest names `manifest_name`.
    fn resolve(
        &self,
        engine: &WispEngine,
        manifest_name: &str,
    ) -> Result<Arc<ResolvedLimits>, EngineError> {
        let config = engine.config();
        let memory_limit = self.memory_limit.unwrap_or(config.memory_limit);
        if memory_limit > config.memory_limit || memory_limit == 0 {
            return Err(EngineError::Limits(format!(
                "the app's memory limit ({} MiB) must be between 1 MiB and the engine's per-instance cap ({} MiB, --memory-limit-mb); lower it or raise the engine's",
                memory_limit >> 20,
                config.memory_limit >> 20
            )));
        }
        let timeout = self.request_timeout.unwrap_or(config.request_timeout);
        if timeout.is_zero() {
            return Err(EngineError::Limits(
                "the app's request timeout must be above zero".to_owned(),
            ));
        }
        let permits = match self.max_instances {
            Some(0) => {
                return Err(EngineError::Limits(
                    "the app's instance cap must be at least 1".to_owned(),
                ));
            }
            Some(cap) => Some((Arc::new(tokio::sync::Semaphore::new(cap as usize)), cap)),
            None => None,
        };
        Ok(Arc::new(ResolvedLimits {
            memory_limit,
            timeout,
            permits,
            busy_above: self.busy_above,
            fair_share: engine.fair_share.clone(),
            guest_output: self.guest_output.clone(),
            guest_log_dir: self.guest_log_dir.clone(),
            app_name: self
                .name
                .clone()
                .unwrap_or_else(|| manifest_name.to_owned()),
        }))
    }
}

/// A serving-ready app: every component compiled and pre-linked.
pub struct LoadedApp {
    locked: LockedApp,
    components: HashMap<String, Arc<LoadedComponent>>,
    outbound: Arc<AppOutbound>,
    limits: Arc<ResolvedLimits>,
    engine: WispEngine,
}

impl std::fmt::Debug for LoadedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedApp")
            .field("name", &self.locked.metadata.name)
            .field("components", &self.components.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LoadedApp {
    /// Compiles (or loads from cache) and links every component of `locked`. Files are
    /// staged under `files_dir/<component>` and mounted read-only at `/`.
    pub fn load(
        engine: &WispEngine,
        locked: LockedApp,
        files_dir: &Path,
        capabilities: &AppCapabilities,
    ) -> Result<Self, EngineError> {
        Self::load_with_limits(
            engine,
            locked,
            files_dir,
            capabilities,
            &AppLimits::default(),
        )
    }

    /// [`LoadedApp::load`], with the app's own `limits`.
    pub fn load_with_limits(
        engine: &WispEngine,
        locked: LockedApp,
        files_dir: &Path,
        capabilities: &AppCapabilities,
        limits: &AppLimits,
    ) -> Result<Self, EngineError> {
        let limits = limits.resolve(engine, &locked.metadata.name)?;
        // Exactly the capabilities `capabilities` was prepared with: one an embedder left
        // out is not linked, so a component importing it is refused below.
        let linker = AppLinker {
            engine,
            capabilities,
            linker: OnceLock::new(),
        };
        // The same interfaces on the baseline engine, linked only if a component uses it.
        let baseline = BaselineLinker::new(capabilities);
        let http_only = http_only_components(&locked);
        let outbound = Arc::new(AppOutbound {
            client: OutboundClient::new(capabilities.blocked_networks().clone())
                .with_idle_connections(engine.config().outbound_idle_connections),
            max_requests: engine.config().max_outbound_requests,
            local: OnceLock::new(),
        });
        let middleware_only = middleware_only_components(&locked);
        let components = locked
            .components
            .iter()
            .filter(|c| !middleware_only.contains(c.id.as_str()))
            .map(|c| {
                let granted = capabilities.component(&c.id).ok_or_else(|| EngineError::Invalid {
                    component: c.id.clone(),
                    message: "has no capabilities set up; build AppCapabilities from the same LockedApp".to_owned(),
                })?;
                let loaded = LoadedComponent::load(
                    engine,
                    &linker,
                    http_only.contains(c.id.as_str()).then_some(&baseline),
                    c,
                    files_dir,
                    granted,
                    &outbound,
                    limits.clone(),
                )?;
                Ok((c.id.clone(), Arc::new(loaded)))
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Self {
            locked,
            components,
            outbound,
            limits,
            engine: engine.clone(),
        })
    }

    /// Registers who serves the app's own routes for `http://self/...` and
    /// `http://<id>.spin.internal/...` requests from guests. Only the first call counts.
    pub fn set_local_dispatch(&self, dispatch: Weak<dyn LocalDispatch>) {
        let _ = self.outbound.local.set(dispatch);
    }

    /// The LockedApp this was loaded from.
    pub fn locked(&self) -> &LockedApp {
        &self.locked
    }

    /// A component by id.
    pub fn component(&self, id: &str) -> Option<&Arc<LoadedComponent>> {
        self.components.get(id)
    }

    /// Waits for one of the app's instance slots (its own cap, then the engine's) and
    /// holds it until dropped, for an instance of this app that runs in another process:
    /// the node's worker serves some of an app's requests, and they count against the
    /// app's cap in the node, so the two processes together keep within it.
    pub async fn reserve_instance_slot(&self) -> Result<InstanceSlot, GuestError> {
        self.limits.take_slot(&self.engine, false).await
    }
}

/// The linkers an engine has built, by the capabilities they link: every app load with
/// the same capabilities (all of them, for `wisp up`, the node and the shim) takes the
/// same linker instead of linking a few hundred host functions again.
#[derive(Default)]
pub(crate) struct SharedLinkers(std::sync::Mutex<HashMap<wisp_host::LinkerKey, Arc<LinkerCell>>>);

/// One linker, or why linking failed (the same for every caller), once linked.
type LinkerCell = OnceLock<Result<Arc<Linker<Host>>, String>>;

impl SharedLinkers {
    /// The linker for `key`, linked with `add_capabilities` by the first caller.
    pub(crate) fn get(
        &self,
        engine: &WispEngine,
        key: &wisp_host::LinkerKey,
        add_capabilities: impl FnOnce(&mut Linker<Host>) -> wasmtime::Result<()>,
    ) -> Result<Arc<Linker<Host>>, EngineError> {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        // Linked outside the map's lock: loads with other capabilities do not wait, and a
        // second load with these waits here for the first one's linker.
        cell.get_or_init(|| {
            linker(engine.engine(), add_capabilities)
                .map(Arc::new)
                .map_err(|e| match e {
                    EngineError::Config(message) => message,
                    other => other.to_string(),
                })
        })
        .clone()
        .map_err(EngineError::Config)
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// An app's linker, taken from the engine's [`SharedLinkers`] when its first component
/// needs it.
struct AppLinker<'a> {
    engine: &'a WispEngine,
    capabilities: &'a AppCapabilities,
    linker: OnceLock<Arc<Linker<Host>>>,
}

impl AppLinker<'_> {
    fn get(&self) -> Result<&Arc<Linker<Host>>, EngineError> {
        if let Some(linker) = self.linker.get() {
            return Ok(linker);
        }
        let linker = self
            .engine
            .linkers
            .get(self.engine, self.capabilities.linker_key(), |l| {
                self.capabilities.add_to_linker(l)
            })?;
        Ok(self.linker.get_or_init(|| linker))
    }
}

/// Every interface the host provides, WASI 0.2 and 0.3 side by side: guests mix them (a
/// spin-sdk 7 component exports the 0.3 handler and still imports 0.2 `wasi:cli`), plus
/// the host capabilities `add_capabilities` links.
fn linker(
    engine: &wasmtime::Engine,
    add_capabilities: impl FnOnce(&mut Linker<Host>) -> wasmtime::Result<()>,
) -> Result<Linker<Host>, EngineError> {
    let config_error = |e: wasmtime::Error| EngineError::Config(format!("{e:#}"));
    let mut linker = Linker::<Host>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(config_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(config_error)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(config_error)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(config_error)?;
    crate::spin1_http::add_to_linker(&mut linker).map_err(config_error)?;
    add_capabilities(&mut linker).map_err(config_error)?;
    Ok(linker)
}

/// Components only HTTP triggers call: they may start on baseline code, since every
/// request takes the component's current code afresh. Other triggers build their export
/// handles once, on the optimised code.
fn http_only_components(locked: &LockedApp) -> std::collections::HashSet<&str> {
    let component_of = |t: &wisp_app::LockedTrigger| {
        t.trigger_config
            .get("component")
            .and_then(|c| c.as_str())
            .map(str::to_owned)
    };
    let others: std::collections::HashSet<String> = locked
        .triggers
        .iter()
        .filter(|t| t.trigger_type != "http")
        .filter_map(component_of)
        .collect();
    locked
        .components
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| !others.contains(*id))
        .collect()
}

/// What [`inspect_component`] found out about a component without running it.
pub struct ComponentReport {
    /// The component, linked against every host interface: trigger types check their
    /// exports on it.
    pub pre: InstancePre<Host>,
    /// The HTTP export, if any.
    pub http: Option<HttpExport>,
    /// Whether it is a WASI command (exports `wasi:cli/run`), as the wagi executor needs.
    pub command: bool,
    /// Its exports, for messages.
    pub exports: String,
}

impl std::fmt::Debug for ComponentReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentReport")
            .field("http", &self.http)
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

/// What a component exports, for summaries and messages: its HTTP handler as the host
/// sees it (`wasi:http/incoming-handler@0.2`, whatever patch version the guest was built
/// against), then every other export by name.
fn export_names(engine: &wasmtime::Engine, pre: &InstancePre<Host>) -> String {
    let component_type = pre.component().component_type();
    let mut names: Vec<String> = http_export(pre)
        .map(|(_, export)| export.to_string())
        .into_iter()
        .collect();
    names.extend(
        component_type
            .exports(engine)
            .map(|(name, _)| name)
            // The handler's own name is in the summary already; a release candidate of
            // 2023 is not a handler the host calls, so it is named as it is.
            .filter(|name| {
                name.contains(crate::WASI_2023_RC)
                    || (!name.starts_with("wasi:http/incoming-handler@")
                        && !name.starts_with("wasi:http/handler@"))
            })
            .map(str::to_owned),
    );
    match names.is_empty() {
        true => "nothing".to_owned(),
        false => names.join(", "),
    }
}

/// Compiles (or loads from the cache) and links one component against every interface
/// the host provides, and detects its exports: the checks `LoadedApp::load` makes, for
/// `wisp doctor`. The error names the missing import or the compile failure.
pub fn inspect_component(
    engine: &WispEngine,
    id: &str,
    bytes: &[u8],
) -> Result<ComponentReport, EngineError> {
    let linker = engine.linkers.get(
        engine,
        &wisp_host::LinkerKey::defaults(),
        wisp_host::add_to_linker,
    )?;
    let digest = sha256_digest(bytes);
    let component = crate::cache::compile(
        engine.engine(),
        engine.config().cache_dir.as_deref(),
        id,
        &digest,
        bytes,
    )?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| cannot_link(id, e))?;
    let http = http_export(&pre);
    Ok(ComponentReport {
        exports: export_names(engine.engine(), &pre),
        command: command_export(engine.engine(), pre.component()).is_some(),
        pre,
        http: http.map(|(_, export)| export),
    })
}

/// The `run` function of the component's `wasi:cli/run@0.2.x` export, if it is a WASI
/// command. Looked up by hand rather than through wasmtime-wasi's generated `Command`
/// bindings: the same lookup, without their code in the binary.
fn command_export(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> Option<wasmtime::component::ComponentExportIndex> {
    let component_type = component.component_type();
    let name = component_type
        .exports(engine)
        .map(|(name, _)| name)
        .find(|name| name.starts_with("wasi:cli/run@0.2."))?;
    let interface = component.get_export_index(None, name)?;
    component.get_export_index(Some(&interface), "run")
}

/// Why component `id` was refused at linking: an import the host does not provide.
fn cannot_link(id: &str, e: wasmtime::Error) -> EngineError {
    let reason = format!("{e:#}");
    let hint = match reason.contains(crate::WASI_2023_RC) {
        true => crate::WASI_2023_RC_HINT,
        false => "the host does not provide that interface (yet)",
    };
    EngineError::Invalid {
        component: id.to_owned(),
        message: format!("cannot be linked: {reason}; {hint}"),
    }
}

/// The component's HTTP handler, if it exports one (WASI 0.3 preferred).
fn http_export(pre: &InstancePre<Host>) -> Option<(ProxyPre<Host>, HttpExport)> {
    match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
        Ok(p3) => Some((ProxyPre::P3(p3), HttpExport::Handler03)),
        Err(_) => wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre.clone())
            .ok()
            .map(|p2| (ProxyPre::P2(p2), HttpExport::IncomingHandler02)),
    }
}

/// A compiled, pre-linked component; each request instantiates it afresh.
pub struct LoadedComponent {
    id: Arc<str>,
    /// Whether the guest's stdout and stderr are written out.
    shows_output: bool,
    /// Its `--log-dir` files: stdout, stderr.
    log_files: Option<(crate::host::LogFile, crate::host::LogFile)>,
    /// Its code: baseline code first when it was compiled cold, replaced by the optimised
    /// code once that is ready. Each instance takes the code current when it starts.
    tier: TierCell,
    /// What it exports, for messages.
    exports: String,
    env: Vec<(String, String)>,
    files_dir: Option<PathBuf>,
    capabilities: Arc<ComponentCapabilities>,
    outbound: Arc<ComponentOutbound>,
    engine: WispEngine,
    /// What this component's instances used at most lately: their budget reservation.
    learned_memory: Arc<LearnedPeak>,
    /// The app's limits (shared by its components).
    limits: Arc<ResolvedLimits>,
    /// Where its requests, instances and capability use are recorded.
    metrics: wisp_metrics::ComponentMetrics,
}

/// An instance's slots (its app's own and the engine's), released together when it is
/// dropped.
pub struct InstanceSlot {
    _app: Option<tokio::sync::OwnedSemaphorePermit>,
    _engine: tokio::sync::OwnedSemaphorePermit,
}

/// Why handling a request in a guest failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct GuestError {
    /// The limit the guest hit, if that is why it failed.
    pub fault: Option<GuestFault>,
    /// What went wrong (trap message, missing response, ...).
    pub message: String,
}

impl GuestError {
    /// The limit that was hit when there is one (`ran past its 30s deadline`), else the
    /// message: what a span's status or a short report says.
    pub fn reason(&self) -> String {
        self.fault
            .as_ref()
            .map_or_else(|| self.message.clone(), ToString::to_string)
    }

    /// How the failure counts in `wisp_requests_total`.
    pub fn outcome(&self) -> wisp_metrics::Outcome {
        match self.fault {
            Some(GuestFault::Deadline(_)) => wisp_metrics::Outcome::Deadline,
            Some(GuestFault::MemoryLimit(_)) => wisp_metrics::Outcome::MemoryLimit,
            // The server was out of budget: the guest never ran, or ran short of what
            // it was due.
            Some(GuestFault::MemoryBudget(_) | GuestFault::NoInstanceSlot(_)) => {
                wisp_metrics::Outcome::Refused
            }
            None => wisp_metrics::Outcome::Trap,
        }
    }
}

impl LoadedComponent {
    #[allow(clippy::too_many_arguments)]
    fn load(
        engine: &WispEngine,
        linker: &AppLinker<'_>,
        baseline: Option<&BaselineLinker<'_>>,
        locked: &LockedComponent,
        files_root: &Path,
        capabilities: Arc<ComponentCapabilities>,
        app_outbound: &Arc<AppOutbound>,
        limits: Arc<ResolvedLimits>,
    ) -> Result<Self, EngineError> {
        let id = locked.id.as_str();
        let metrics = engine.metrics.component(&limits.app_name, id);
        // Code another loaded app already uses needs no read: it was compiled from bytes
        // with exactly this digest (a composed component's covers its dependencies).
        let code_digest = code_digest(locked);
        let tier = match engine.code.get(&code_digest) {
            Some(code) => {
                engine.metrics.compiled(Some("memory"));
                TierCell::new(Tier::link(engine.engine(), linker.get()?, code, id, false)?)
            }
            None => {
                let cache_dir = engine.config().cache_dir.as_deref();
                // Nor does code in the disk cache, for the same reason: a source changed
                // since the app was resolved is not what it runs either way, and a large
                // one (a JavaScript or Python runtime, tens of MB) is not read and hashed
                // again at every start.
                let cached = crate::cache::cached(engine.engine(), cache_dir, &code_digest);
                engine.metrics.compiled(cached.is_some().then_some("disk"));
                match cached {
                    Some(cached) => {
                        let code = engine.code.insert(&code_digest, cached);
                        TierCell::new(Tier::link(engine.engine(), linker.get()?, code, id, false)?)
                    }
                    // Baseline code another app's copy of this component already serves
                    // from, while its optimised code compiles: share both.
                    None => match baseline
                        .map(|b| Ok::<_, EngineError>((b, linker.get()?)))
                        .transpose()?
                        .and_then(|(b, linker)| {
                            tiers::join_pending(engine, b, linker, id, &code_digest)
                        }) {
                        Some(cell) => cell,
                        // Optimised by the background worker since the lookup above.
                        None if let Some(code) = engine.code.get(&code_digest) => TierCell::new(
                            Tier::link(engine.engine(), linker.get()?, code, id, false)?,
                        ),
                        None => {
                            let bytes = read_checked(
                                engine,
                                id,
                                &locked.source.path,
                                &locked.source.digest,
                                None,
                            )?;
                            let wasm = compose_dependencies(engine, locked, bytes)?;
                            let on_baseline = match baseline {
                                Some(baseline) => tiers::start_on_baseline(
                                    engine,
                                    baseline,
                                    linker.get()?,
                                    id,
                                    &code_digest,
                                    wasm,
                                ),
                                None => Err(wasm),
                            };
                            match on_baseline {
                                Ok(cell) => cell,
                                Err(wasm) => {
                                    let compiled = crate::cache::compile(
                                        engine.engine(),
                                        cache_dir,
                                        id,
                                        &code_digest,
                                        &wasm,
                                    )?;
                                    let code = engine.code.insert(&code_digest, compiled);
                                    TierCell::new(Tier::link(
                                        engine.engine(),
                                        linker.get()?,
                                        code,
                                        id,
                                        false,
                                    )?)
                                }
                            }
                        }
                    },
                }
            }
        };
        Self::finish(
            engine,
            tier,
            locked,
            files_root,
            capabilities,
            app_outbound,
            limits,
            metrics,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        engine: &WispEngine,
        tier: TierCell,
        locked: &LockedComponent,
        files_root: &Path,
        capabilities: Arc<ComponentCapabilities>,
        app_outbound: &Arc<AppOutbound>,
        limits: Arc<ResolvedLimits>,
        metrics: wisp_metrics::ComponentMetrics,
    ) -> Result<Self, EngineError> {
        let id = locked.id.as_str();
        let exports = {
            let current = tier.current();
            export_names(&current.engine, &current.pre)
        };
        capabilities.set_metrics(metrics.clone());
        let files_dir = crate::files::stage_files(locked, files_root)?;
        let log_files = match &limits.guest_log_dir {
            Some(dir) => Some(crate::files::open_log_files(dir, id)?),
            None => None,
        };
        Ok(Self {
            log_files,
            shows_output: limits.guest_output.shows(id),
            id: id.into(),
            tier,
            exports,
            env: locked
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            files_dir,
            outbound: Arc::new(ComponentOutbound {
                allowed: capabilities.allowed_outbound_hosts().clone(),
                client: app_outbound
                    .client
                    .for_component(capabilities.allowed_outbound_hosts())
                    .with_host_tls(capabilities.client_tls().clone()),
                app: app_outbound.clone(),
            }),
            capabilities,
            engine: engine.clone(),
            learned_memory: Arc::default(),
            limits,
            metrics,
        })
    }

    /// The code new instances start from.
    fn tier(&self) -> Arc<Tier> {
        self.tier.current()
    }

    /// Whether new instances still start from baseline code (the optimised code is being
    /// compiled in the background).
    pub fn runs_baseline_code(&self) -> bool {
        self.tier().baseline
    }

    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the component is a WASI command (exports `wasi:cli/run`): what the wagi
    /// executor runs.
    pub fn is_command(&self) -> bool {
        self.tier().command.is_some()
    }

    /// The deadline of one request or event.
    pub fn request_timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// The HTTP export detected at load time, if any.
    pub fn http_export(&self) -> Option<HttpExport> {
        self.tier().http.as_ref().map(|(_, export)| *export)
    }

    /// The component linked against every host interface, for a trigger to build its
    /// typed export handle on (`SpinCronPre::new(component.instance_pre())`). A component
    /// a non-HTTP trigger calls always has its optimised code here.
    pub fn instance_pre(&self) -> InstancePre<Host> {
        self.tier().pre.clone()
    }

    /// Where the component's requests and capability use are recorded.
    pub fn metrics(&self) -> &wisp_metrics::ComponentMetrics {
        &self.metrics
    }

    /// The name of the app the component belongs to, as metrics and spans label it (the
    /// node's deployed name, else the manifest's).
    pub fn app_name(&self) -> &str {
        &self.limits.app_name
    }

    /// Where the component's spans go.
    pub fn tracing(&self) -> &wisp_telemetry::Tracing {
        &self.engine.tracing
    }

    /// What the component exports (interface names), for summaries and messages.
    pub fn exports_summary(&self) -> &str {
        &self.exports
    }
}

#[cfg(test)]
mod linker_tests {
    use super::*;
    use crate::EngineConfig;
    use wisp_host::{AppPaths, CapabilitySet, LinkerKey, RuntimeConfig};

    fn hello_app(dir: &Path) -> (LockedApp, AppPaths) {
        let locked = wisp_app::from_component_file(Path::new(wisp_test_programs::HELLO)).unwrap();
        let paths = AppPaths {
            state_dir: dir.join("state"),
            app_dir: None,
            files_dir: Some(dir.join("files")),
        };
        (locked, paths)
    }

    /// Apps with the same capabilities take one linker; other capabilities get their own;
    /// released, the loaded apps keep serving and the next load links again.
    #[tokio::test]
    async fn app_loads_share_the_linker_of_their_capabilities() {
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().unwrap();
        let engine = WispEngine::new(EngineConfig {
            max_instances: 2,
            cache_dir: Some(dir.path().join("cache")),
            ..EngineConfig::default()
        })
        .unwrap();
        let (locked, paths) = hello_app(dir.path());
        let runtime = RuntimeConfig::default();
        let defaults = AppCapabilities::build(&locked, &runtime, &paths)
            .await
            .unwrap();
        let set = CapabilitySet::<Host>::default();
        let same_set = AppCapabilities::build_with(&set, &locked, &runtime, &paths)
            .await
            .unwrap();
        let linkers = |engine: &WispEngine| engine.linkers.0.lock().unwrap().len();
        let default_linker = |engine: &WispEngine| {
            engine
                .linkers
                .get(engine, &LinkerKey::defaults(), |_| {
                    panic!("the loads linked it already")
                })
                .unwrap()
        };

        let first =
            LoadedApp::load(&engine, locked.clone(), &paths.files_dir(), &defaults).unwrap();
        let linked = default_linker(&engine);
        LoadedApp::load(&engine, locked.clone(), &paths.files_dir(), &same_set).unwrap();
        assert_eq!(linkers(&engine), 1, "both loads took the default linker");
        assert!(Arc::ptr_eq(&linked, &default_linker(&engine)));

        // Without key-value: a linker of its own, which still serves hello.
        let without = set.without("key-value");
        let capabilities = AppCapabilities::build_with(&without, &locked, &runtime, &paths)
            .await
            .unwrap();
        LoadedApp::load(&engine, locked.clone(), &paths.files_dir(), &capabilities).unwrap();
        assert_eq!(linkers(&engine), 2);

        engine.release_linkers();
        assert_eq!(linkers(&engine), 0);
        let request = http::Request::builder()
            .uri("http://localhost/")
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let response = first.component("hello").unwrap().handle(request).await;
        assert_eq!(
            response.map(|r| r.status()).ok(),
            Some(http::StatusCode::OK)
        );
        LoadedApp::load(&engine, locked, &paths.files_dir(), &defaults).unwrap();
        assert!(!Arc::ptr_eq(&linked, &default_linker(&engine)));
    }
}

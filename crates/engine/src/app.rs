//! A LockedApp made ready to serve: components compiled, linked and pre-instantiated.

use crate::budget::{Charge, INSTANCE_OVERHEAD, LearnedPeak};
use crate::host::{LogStream, MemoryLimiter, Stream};
use crate::lanes::Laned;
use crate::outbound::{AppOutbound, ComponentOutbound, LocalDispatch, OutboundBudget};
use crate::{EngineError, GuestFault, Host, WispEngine};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{AsContextMut, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{Prepared, Proxy, ProxyPre};
use wisp_app::{LockedApp, LockedComponent, sha256_digest};
use wisp_host::{AppCapabilities, ComponentCapabilities, InstanceState};
use wisp_outbound::OutboundClient;

/// Extra time, past the guest deadline, that the host waits for the epoch interrupt to land
/// before giving up on a guest task that is stuck outside wasm (e.g. awaiting host I/O).
const DEADLINE_SLACK: Duration = Duration::from_millis(250);

/// `call`, cut off at `deadline` plus [`DEADLINE_SLACK`]. The epoch interrupt stops a
/// guest running wasm; this bound also stops one waiting in a host call (a database row
/// it never reads, a silent socket).
async fn within_hard_stop<T>(
    deadline: Instant,
    timeout: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let hard_stop = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
    match tokio::time::timeout_at(hard_stop, call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(GuestFault::Deadline(timeout))),
    }
}

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
}

impl AppLimits {
    fn resolve(&self, engine: &WispEngine) -> Result<Arc<ResolvedLimits>, EngineError> {
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
        }))
    }
}

/// A serving-ready app: every component compiled and pre-linked.
pub struct LoadedApp {
    locked: LockedApp,
    components: HashMap<String, Arc<LoadedComponent>>,
    outbound: Arc<AppOutbound>,
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
        let limits = limits.resolve(engine)?;
        // Exactly the capabilities `capabilities` was prepared with: one an embedder left
        // out is not linked, so a component importing it is refused below.
        let linker = Arc::new(linker(engine, |l| capabilities.add_to_linker(l))?);
        let outbound = Arc::new(AppOutbound {
            client: OutboundClient::new(capabilities.blocked_networks().clone())
                .with_idle_connections(engine.config().outbound_idle_connections),
            max_requests: engine.config().max_outbound_requests,
            local: OnceLock::new(),
        });
        let components = locked
            .components
            .iter()
            .map(|c| {
                let granted = capabilities.component(&c.id).ok_or_else(|| EngineError::Invalid {
                    component: c.id.clone(),
                    message: "has no capabilities set up; build AppCapabilities from the same LockedApp".to_owned(),
                })?;
                let loaded = LoadedComponent::load(
                    engine,
                    &linker,
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
}

/// Every interface the host provides, WASI 0.2 and 0.3 side by side: guests mix them (a
/// spin-sdk 7 component exports the 0.3 handler and still imports 0.2 `wasi:cli`), plus
/// the host capabilities `add_capabilities` links.
fn linker(
    engine: &WispEngine,
    add_capabilities: impl FnOnce(&mut Linker<Host>) -> wasmtime::Result<()>,
) -> Result<Linker<Host>, EngineError> {
    let config_error = |e: wasmtime::Error| EngineError::Config(format!("{e:#}"));
    let mut linker = Linker::<Host>::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(config_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(config_error)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(config_error)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(config_error)?;
    add_capabilities(&mut linker).map_err(config_error)?;
    Ok(linker)
}

/// The key of a component's compiled code: its source digest, or for a component with
/// dependencies a digest over everything composition reads.
fn code_digest(locked: &LockedComponent) -> String {
    if locked.dependencies.is_empty() {
        return locked.source.digest.clone();
    }
    let mut key = format!(
        "{}\n{}\n",
        wisp_compose::COMPOSER_VERSION,
        locked.source.digest
    );
    for (name, dependency) in &locked.dependencies {
        key.push_str(&format!(
            "{name}\n{}\n{:?}\n{:?}\n",
            dependency.source.digest, dependency.export, dependency.inherit
        ));
    }
    sha256_digest(key.as_bytes())
}

/// A source file's bytes, refused unless they have the digest the app was resolved with.
fn read_checked(
    engine: &WispEngine,
    component: &str,
    path: &Path,
    expected: &str,
    dependency: Option<&str>,
) -> Result<Vec<u8>, EngineError> {
    let bytes =
        wisp_app::read_source(path, engine.config().max_component_bytes).map_err(|source| {
            match dependency {
                None => EngineError::Read {
                    component: component.to_owned(),
                    source,
                },
                Some(dependency) => EngineError::Invalid {
                    component: component.to_owned(),
                    message: format!(
                        "cannot read dependency `{dependency}` ({}): {source}",
                        path.display()
                    ),
                },
            }
        })?;
    let digest = sha256_digest(&bytes);
    if digest != expected {
        return Err(match dependency {
            None => EngineError::DigestMismatch {
                component: component.to_owned(),
                path: path.to_path_buf(),
                found: digest,
                expected: expected.to_owned(),
            },
            Some(dependency) => EngineError::Invalid {
                component: component.to_owned(),
                message: format!(
                    "dependency `{dependency}` ({}) has digest {digest}, not the {expected} it was resolved with; resolve the app again",
                    path.display()
                ),
            },
        });
    }
    Ok(bytes)
}

/// The component with its dependencies plugged in (core modules become components first).
fn compose_dependencies(
    engine: &WispEngine,
    locked: &LockedComponent,
    main: Vec<u8>,
) -> Result<Vec<u8>, EngineError> {
    let id = locked.id.as_str();
    let invalid = |message: String| EngineError::Invalid {
        component: id.to_owned(),
        message,
    };
    let as_component = |bytes: Vec<u8>, what: &str| -> Result<Vec<u8>, EngineError> {
        if wasmparser::Parser::is_core_wasm(&bytes) {
            crate::cache::to_component(&bytes)
                .map(|c| c.into_owned())
                .map_err(|reason| invalid(format!("{what} {reason}")))
        } else {
            Ok(bytes)
        }
    };
    let main = as_component(main, "its source")?;
    let mut dependencies = Vec::with_capacity(locked.dependencies.len());
    for (name, dependency) in &locked.dependencies {
        let bytes = read_checked(
            engine,
            id,
            &dependency.source.path,
            &dependency.source.digest,
            Some(name),
        )?;
        dependencies.push(wisp_compose::Dependency {
            name,
            bytes: as_component(bytes, &format!("dependency `{name}`"))?,
            export: dependency.export.as_deref(),
            inherit: &dependency.inherit,
        });
    }
    let started = std::time::Instant::now();
    let composed = wisp_compose::compose(main, dependencies)
        .map_err(|e| invalid(format!("cannot compose its dependencies: {e}")))?;
    tracing::debug!(
        "composed component `{id}` with {} dependencies in {:.1?}",
        locked.dependencies.len(),
        started.elapsed()
    );
    Ok(composed)
}

/// What [`inspect_component`] found out about a component without running it.
pub struct ComponentReport {
    /// The component, linked against every host interface: trigger types check their
    /// exports on it.
    pub pre: InstancePre<Host>,
    /// The HTTP export, if any.
    pub http: Option<HttpExport>,
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
fn export_names(engine: &WispEngine, pre: &InstancePre<Host>) -> String {
    let component_type = pre.component().component_type();
    let mut names: Vec<String> = http_export(pre)
        .map(|(_, export)| export.to_string())
        .into_iter()
        .collect();
    names.extend(
        component_type
            .exports(engine.engine())
            .map(|(name, _)| name)
            .filter(|name| {
                !name.starts_with("wasi:http/incoming-handler@")
                    && !name.starts_with("wasi:http/handler@")
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
    let linker = linker(engine, wisp_host::add_to_linker)?;
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
        .map_err(|e| EngineError::Invalid {
            component: id.to_owned(),
            message: format!(
                "cannot be linked: {e:#}; the host does not provide that interface (yet)"
            ),
        })?;
    let http = http_export(&pre);
    Ok(ComponentReport {
        exports: export_names(engine, &pre),
        pre,
        http: http.map(|(_, export)| export),
    })
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
    /// The HTTP handler, if the component exports one.
    http: Option<(ProxyPre<Host>, HttpExport)>,
    /// The component linked against every host interface: triggers build their typed
    /// export handles on it.
    pre: InstancePre<Host>,
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
    /// Keeps the compiled code shared with other apps while this component exists.
    _code: Arc<wasmtime::component::Component>,
}

/// An instance's slots, released together when the instance is gone.
struct Slot {
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

impl LoadedComponent {
    fn load(
        engine: &WispEngine,
        linker: &Linker<Host>,
        locked: &LockedComponent,
        files_root: &Path,
        capabilities: Arc<ComponentCapabilities>,
        app_outbound: &Arc<AppOutbound>,
        limits: Arc<ResolvedLimits>,
    ) -> Result<Self, EngineError> {
        let id = locked.id.as_str();
        let invalid = |message: String| EngineError::Invalid {
            component: id.to_owned(),
            message,
        };
        // Code another loaded app already uses needs no read: it was compiled from bytes
        // with exactly this digest (a composed component's covers its dependencies).
        let code_digest = code_digest(locked);
        let code = match engine.code.get(&code_digest) {
            Some(code) => code,
            None => {
                let bytes =
                    read_checked(engine, id, &locked.source.path, &locked.source.digest, None)?;
                let cache_dir = engine.config().cache_dir.as_deref();
                let component = if locked.dependencies.is_empty() {
                    crate::cache::compile(engine.engine(), cache_dir, id, &code_digest, &bytes)?
                } else if let Some(cached) =
                    crate::cache::cached(engine.engine(), cache_dir, &code_digest)
                {
                    cached
                } else {
                    let composed = compose_dependencies(engine, locked, bytes)?;
                    crate::cache::compile(engine.engine(), cache_dir, id, &code_digest, &composed)?
                };
                engine.code.insert(&code_digest, component)
            }
        };
        let component: &wasmtime::component::Component = &code;
        // A dependency's capability imports it does not inherit are answered with refusals,
        // defined for this component only.
        let refusing;
        let linker = if crate::deny::has_denied_imports(component) {
            let mut with_refusals = linker.clone();
            crate::deny::define_refusals(&mut with_refusals, component, id)?;
            refusing = with_refusals;
            &refusing
        } else {
            linker
        };
        let pre = linker.instantiate_pre(component).map_err(|e| {
            invalid(format!(
                "cannot be linked: {e:#}; the host does not provide that interface (yet)"
            ))
        })?;
        let http = http_export(&pre);
        let files_dir = crate::files::stage_files(locked, files_root)?;
        let log_files = match &limits.guest_log_dir {
            Some(dir) => Some(crate::files::open_log_files(dir, id)?),
            None => None,
        };
        Ok(Self {
            log_files,
            shows_output: limits.guest_output.shows(id),
            id: id.into(),
            http,
            exports: export_names(engine, &pre),
            pre,
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
            _code: code,
        })
    }

    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The HTTP export detected at load time, if any.
    pub fn http_export(&self) -> Option<HttpExport> {
        self.http.as_ref().map(|(_, export)| *export)
    }

    /// The component linked against every host interface, for a trigger to build its
    /// typed export handle on (`SpinCronPre::new(component.instance_pre().clone())`).
    pub fn instance_pre(&self) -> &InstancePre<Host> {
        &self.pre
    }

    /// What the component exports (interface names), for summaries and messages.
    pub fn exports_summary(&self) -> &str {
        &self.exports
    }

    /// Reserves this instance's share of the memory budget: what the component's
    /// instances used lately. `wait = false` (nested in-process calls, whose callers hold
    /// budget) fails at once instead of waiting.
    async fn reserve_memory(&self, wait: bool) -> Result<Charge, GuestError> {
        let budget = &self.engine.budget;
        // Until an instance of this component has ended, its need is unknown: reserve the
        // cap, so a cold burst cannot take the budget in small pieces and then wait on
        // itself to grow (each instance holding what the others need).
        let need = match self.learned_memory.get() {
            0 => self.limits.memory_limit,
            learned => learned,
        };
        let wanted = INSTANCE_OVERHEAD + need;
        let charge = match wait {
            true => budget.reserve(wanted).await,
            false => budget.try_reserve(wanted),
        };
        charge.ok_or_else(|| GuestError {
            fault: Some(GuestFault::MemoryBudget(budget.total())),
            message: format!(
                "component `{}`: no memory budget free for another instance",
                self.id
            ),
        })
    }

    fn new_store(
        &self,
        deadline: Instant,
        budget: OutboundBudget,
        charge: Charge,
    ) -> Result<Store<Host>, GuestError> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .stdout(LogStream::new(
                self.id.clone(),
                Stream::Stdout,
                self.shows_output,
                self.log_files.as_ref().map(|(out, _)| out.clone()),
            ))
            .stderr(LogStream::new(
                self.id.clone(),
                Stream::Stderr,
                self.shows_output,
                self.log_files.as_ref().map(|(_, err)| err.clone()),
            ));
        match self.capabilities.sockets() {
            Some(sockets) => {
                wasi.allow_ip_name_lookup(true)
                    .allow_tcp(sockets.tcp())
                    .allow_udp(sockets.udp())
                    .socket_addr_check(crate::sockets::addr_check(self.capabilities.clone()));
            }
            // No socket grants (the default): everything off. The builder's default
            // address check already refuses every address, so none is installed.
            None => {
                wasi.allow_ip_name_lookup(false)
                    .allow_tcp(false)
                    .allow_udp(false);
            }
        }
        if let Some(dir) = &self.files_dir {
            wasi.preopened_dir(dir, "/", FsPerms::ReadOnly)
                .map_err(|e| GuestError {
                    fault: None,
                    message: format!("cannot mount files from {}: {e:#}", dir.display()),
                })?;
        }
        let host = Host::new(
            self.id.clone(),
            InstanceState::new(self.capabilities.clone()).with_deadline(deadline),
            self.outbound.clone(),
            budget,
            wasi.build(),
            MemoryLimiter::new(
                self.limits.memory_limit,
                charge,
                self.engine.budget.total(),
                self.learned_memory.clone(),
                deadline,
            ),
            deadline,
        );
        let mut store = Store::new(self.engine.engine(), host);
        store.limiter_async(|host| &mut host.limiter);
        let timeout = self.limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(GuestFault::Deadline(timeout)))
            } else {
                // Yield each tick so a busy guest shares its worker thread with others.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// An instance slot: the app's own (if it has a cap), then the engine's, waited for in
    /// turn. A `nested` (in-process) request fails at once instead: its caller holds a
    /// slot while it waits, and queueing could deadlock once every slot belongs to a
    /// waiting caller.
    async fn take_slot(&self, nested: bool) -> Result<Slot, GuestError> {
        let busy = |which: String| GuestError {
            fault: None,
            message: format!(
                "no free instance slot for an in-process request (all {which} are busy); raise the cap or make fewer nested calls"
            ),
        };
        let closed = |_| GuestError {
            fault: None,
            message: "the engine is shutting down".to_owned(),
        };
        let app = match &self.limits.permits {
            Some((permits, cap)) if nested => Some(
                permits
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| busy(format!("{cap} of the app's own")))?,
            ),
            Some((permits, _)) => Some(permits.clone().acquire_owned().await.map_err(closed)?),
            None => None,
        };
        let permits = self.engine.instance_permits.clone();
        let engine = match nested {
            true => permits.try_acquire_owned().map_err(|_| {
                busy(format!(
                    "{} (--max-instances)",
                    self.engine.config().max_instances
                ))
            })?,
            false => permits.acquire_owned().await.map_err(closed)?,
        };
        Ok(Slot {
            _app: app,
            _engine: engine,
        })
    }

    /// Handles one request in a fresh instance. The response is returned as soon as the
    /// guest produces its head; the body streams while the guest keeps running, and the
    /// instance is dropped when the guest finishes (or hits its deadline).
    pub async fn handle(
        self: &Arc<Self>,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, GuestError> {
        if self.http.is_none() {
            return Err(GuestError {
                fault: None,
                message: format!("component `{}` {NO_HTTP_EXPORT}", self.id),
            });
        }
        let timeout = self.limits.timeout;
        let deadline = Instant::now() + timeout;
        let nested = OutboundBudget::is_nested(&request);
        // The trigger marks a request that came over TLS with the https scheme.
        let https = request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
        let permit = self.take_slot(nested).await?;
        let charge = self.reserve_memory(!nested).await?;
        let mut store = self.new_store(deadline, OutboundBudget::of(&request), charge)?;
        let (tx, rx) = futures::channel::oneshot::channel();
        let this = self.clone();
        let lane = match self.limits.over_share() {
            true => Laned::start_slow,
            false => Laned::new,
        };
        let task = tokio::spawn(lane(async move {
            let result = async {
                let (pre, _) = this.http.as_ref().expect("checked before spawning");
                let proxy = pre.instantiate_async(&mut store).await?;
                if let (Proxy::P2(guest), true) = (&proxy, https) {
                    return run_p2_over_tls(&mut store, guest, request, tx).await;
                }
                let prepared = Prepared::new(
                    store.as_context_mut(),
                    &proxy,
                    request,
                    <Host as wasmtime_wasi_http::WasiHttpView>::http,
                    tx,
                )?;
                store
                    .run_concurrent(async |accessor| {
                        prepared.run(accessor, std::future::pending()).await?;
                        // A WASI 0.3 guest keeps writing the body after returning the
                        // response; keep its tasks running until they are all done.
                        std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                        wasmtime::Result::<bool>::Ok(true)
                    })
                    .await??;
                wasmtime::Result::Ok(())
            };
            // Also after its response head was sent: no instance outlives its deadline
            // holding a slot.
            let result = within_hard_stop(deadline, timeout, result).await;
            let fault = store.data().recorded_fault();
            // The slot frees only once the instance is gone.
            drop(store);
            drop(permit);
            (result, fault)
        }));
        // Until the response is fully sent, a client that goes away cancels the instance.
        let mut client_gone = ClientGone {
            task: Some(task.abort_handle()),
            component: self.id.clone(),
            started: Instant::now(),
        };

        let wait_until = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
        let outcome = match tokio::time::timeout_at(wait_until, rx).await {
            Ok(Ok(Ok(response))) => {
                return Ok(response.map(|body| {
                    CancelOnAbandon {
                        inner: body,
                        client_gone: Some(client_gone),
                    }
                    .boxed_unsync()
                }));
            }
            Ok(Ok(Err(err))) => Some(err),
            Ok(Err(_canceled)) => None,
            Err(_elapsed) => {
                client_gone.task = None;
                task.abort();
                return Err(GuestError {
                    fault: Some(GuestFault::Deadline(timeout)),
                    message: "no response before the deadline".to_owned(),
                });
            }
        };
        // The guest failed before producing a response; collect why from the task.
        client_gone.task = None;
        let mut task = task;
        let (result, recorded) = match tokio::time::timeout_at(wait_until, &mut task).await {
            Ok(Ok(done)) => done,
            Ok(Err(join)) => (
                Err(wasmtime::Error::msg(format!("guest task failed: {join}"))),
                None,
            ),
            Err(_elapsed) => {
                // Stuck outside wasm (a host call the epoch cannot interrupt): drop the
                // instance so its slot frees.
                task.abort();
                (
                    Err(wasmtime::Error::new(GuestFault::Deadline(timeout))),
                    None,
                )
            }
        };
        let err = outcome.or(result.err());
        let fault = err
            .as_ref()
            .and_then(|e| e.downcast_ref::<GuestFault>().cloned())
            .or(recorded)
            .or_else(|| (Instant::now() >= deadline).then_some(GuestFault::Deadline(timeout)));
        let message = match err {
            Some(err) => format!("{err:#}"),
            None => "the guest returned without sending a response".to_owned(),
        };
        Err(GuestError { fault, message })
    }
}

/// The call a trigger makes in a fresh store: instantiate its export and call it.
pub type EventCall<R> = Box<
    dyn for<'a> FnOnce(
            &'a mut Store<Host>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
        + Send,
>;

impl LoadedComponent {
    /// Runs one event (a Redis message, a cron tick, …) in a fresh instance: `call`
    /// gets a fresh store and instantiates the component's export in it. The same limits
    /// as a request apply: an instance slot and memory budget (waited for), the memory
    /// cap, the deadline (from when the slot is taken), the slow lane; faults are
    /// classified as for requests. Dropping the future cancels the instance.
    pub async fn run_event<R: Send + 'static>(
        self: &Arc<Self>,
        call: EventCall<R>,
    ) -> Result<R, GuestError> {
        let timeout = self.limits.timeout;
        let permit = self.take_slot(false).await?;
        let charge = self.reserve_memory(true).await?;
        // The deadline starts once the instance has a slot, as for requests that queue.
        let deadline = Instant::now() + timeout;
        let mut store = self.new_store(deadline, OutboundBudget::default(), charge)?;
        // Aborted when this future is dropped (trigger shutdown) or the deadline passes
        // while the guest waits on a host call the epoch cannot interrupt: either way the
        // instance and its slot go.
        let lane = match self.limits.over_share() {
            true => Laned::start_slow,
            false => Laned::new,
        };
        let mut task = AbortOnDrop(tokio::spawn(lane(async move {
            let result = within_hard_stop(deadline, timeout, call(&mut store)).await;
            let fault = store.data().recorded_fault();
            drop(store);
            drop(permit);
            (result, fault)
        })));
        let wait_until = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
        let (result, recorded) = match tokio::time::timeout_at(wait_until, &mut task.0).await {
            Ok(Ok(done)) => done,
            Ok(Err(join)) => (
                Err(wasmtime::Error::msg(format!("guest task failed: {join}"))),
                None,
            ),
            Err(_elapsed) => (
                Err(wasmtime::Error::new(GuestFault::Deadline(timeout))),
                None,
            ),
        };
        drop(task);
        result.map_err(|err| GuestError {
            fault: err
                .downcast_ref::<GuestFault>()
                .cloned()
                .or(recorded)
                .or_else(|| (Instant::now() >= deadline).then_some(GuestFault::Deadline(timeout))),
            message: format!("{err:#}"),
        })
    }
}

/// Cancels an instance whose client went away before its response was fully sent: the
/// guest would otherwise burn its CPU and its slot until the deadline for nobody.
struct ClientGone {
    /// `None` once there is nothing to cancel (the response was sent, or the instance
    /// already ended).
    task: Option<tokio::task::AbortHandle>,
    component: Arc<str>,
    started: Instant,
}

impl Drop for ClientGone {
    fn drop(&mut self) {
        if let Some(task) = self.task.take()
            && !task.is_finished()
        {
            task.abort();
            tracing::warn!(
                component = %self.component,
                "component `{}`: the client went away after {:.1?}; cancelled its instance",
                self.component,
                self.started.elapsed()
            );
        }
    }
}

/// The guest's response body; dropped before its end (the client went away), it cancels
/// the instance. Once the body has ended the instance may go on (a WASI 0.3 guest can work
/// after responding) until its deadline.
struct CancelOnAbandon {
    inner: WasiBody,
    client_gone: Option<ClientGone>,
}

impl http_body::Body for CancelOnAbandon {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled
            && let Some(mut gone) = self.client_gone.take()
        {
            gone.task = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CancelOnAbandon {
    fn drop(&mut self) {
        // A body that had nothing more to send (hyper does not poll an empty body) is
        // complete, not abandoned.
        if http_body::Body::is_end_stream(&self.inner)
            && let Some(gone) = self.client_gone.as_mut()
        {
            gone.task = None;
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a component cannot serve HTTP.
const NO_HTTP_EXPORT: &str = "has no HTTP export: it must export `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.0` (build it as an HTTP component, e.g. with the Spin SDK)";

/// Runs a WASI 0.2 handler for a request that came over TLS. wasmtime 48's `Prepared`
/// tells every 0.2 guest its request scheme is `http`; this does what it does, with
/// `https`. The outcome reaches the caller through `tx` as with `Prepared`.
async fn run_p2_over_tls(
    store: &mut Store<Host>,
    guest: &wasmtime_wasi_http::p2::bindings::Proxy,
    request: http::Request<WasiBody>,
    tx: futures::channel::oneshot::Sender<wasmtime::Result<http::Response<WasiBody>>>,
) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::WasiHttpView;
    use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
    const NO_RESPONSE: &str = "guest never invoked `response-outparam::set` method";
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Https, request)?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam_from_callback({
            let tx = tx.clone();
            move |value| {
                if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(value.map_err(Into::into));
                }
            }
        })?;
    let handler = guest.wasi_http_incoming_handler().func_handle();
    let result = store
        .run_concurrent(async |accessor| {
            let called = handler.call_concurrent(accessor, (incoming, out)).await;
            // As with `Prepared`: a guest that keeps writing its body after `set` runs on.
            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            called
        })
        .await?;
    if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = tx.send(result.and_then(|()| Err(wasmtime::format_err!("{NO_RESPONSE}"))));
    }
    Ok(())
}

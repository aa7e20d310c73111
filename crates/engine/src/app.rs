//! A LockedApp made ready to serve: components compiled, linked and pre-instantiated.

use crate::host::{LogStream, Stream};
use crate::outbound::{AppOutbound, ComponentOutbound, LocalDispatch, OutboundBudget};
use crate::{EngineError, GuestFault, Host, WispEngine};
use std::collections::HashMap;
use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime::{AsContextMut, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{Prepared, ProxyPre};
use wisp_app::{LockedApp, LockedComponent, sha256_digest};
use wisp_host::{AppCapabilities, ComponentCapabilities, InstanceState};
use wisp_outbound::OutboundClient;

/// Extra time, past the guest deadline, that the host waits for the epoch interrupt to land
/// before giving up on a guest task that is stuck outside wasm (e.g. awaiting host I/O).
const DEADLINE_SLACK: Duration = Duration::from_millis(250);

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
    /// staged under `state_dir/files/<component>` and mounted read-only at `/`.
    pub fn load(
        engine: &WispEngine,
        locked: LockedApp,
        state_dir: &Path,
        capabilities: &AppCapabilities,
    ) -> Result<Self, EngineError> {
        let linker = Arc::new(linker(engine)?);
        let outbound = Arc::new(AppOutbound {
            client: OutboundClient::new(capabilities.blocked_networks().clone()),
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
                let loaded =
                    LoadedComponent::load(engine, &linker, c, state_dir, granted, &outbound)?;
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
/// spin-sdk 7 component exports the 0.3 handler and still imports 0.2 `wasi:cli`).
fn linker(engine: &WispEngine) -> Result<Linker<Host>, EngineError> {
    let config_error = |e: wasmtime::Error| EngineError::Config(format!("{e:#}"));
    let mut linker = Linker::<Host>::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(config_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(config_error)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(config_error)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(config_error)?;
    wisp_host::add_to_linker(&mut linker).map_err(config_error)?;
    Ok(linker)
}

/// A compiled, pre-linked component; each request instantiates it afresh.
pub struct LoadedComponent {
    id: Arc<str>,
    pre: ProxyPre<Host>,
    export: HttpExport,
    env: Vec<(String, String)>,
    files_dir: Option<PathBuf>,
    capabilities: Arc<ComponentCapabilities>,
    outbound: Arc<ComponentOutbound>,
    engine: WispEngine,
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
        state_dir: &Path,
        capabilities: Arc<ComponentCapabilities>,
        app_outbound: &Arc<AppOutbound>,
    ) -> Result<Self, EngineError> {
        let id = locked.id.as_str();
        let invalid = |message: String| EngineError::Invalid {
            component: id.to_owned(),
            message,
        };
        let path = &locked.source.path;
        let bytes = std::fs::read(path).map_err(|source| EngineError::Read {
            component: id.to_owned(),
            path: path.clone(),
            source,
        })?;
        let digest = sha256_digest(&bytes);
        if digest != locked.source.digest {
            return Err(EngineError::DigestMismatch {
                component: id.to_owned(),
                path: path.clone(),
                found: digest,
                expected: locked.source.digest.clone(),
            });
        }
        let component = crate::cache::compile(
            engine.engine(),
            engine.config().cache_dir.as_deref(),
            id,
            &digest,
            &bytes,
        )?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "cannot be linked: {e:#}; the host does not provide that interface (yet)"
            ))
        })?;
        let (pre, export) = match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
            Ok(p3) => (ProxyPre::P3(p3), HttpExport::Handler03),
            Err(_) => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre) {
                Ok(p2) => (ProxyPre::P2(p2), HttpExport::IncomingHandler02),
                Err(_) => {
                    return Err(invalid(
                        "has no HTTP export: it must export `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.0` (build it as an HTTP component, e.g. with the Spin SDK)".to_owned(),
                    ));
                }
            },
        };
        let files_dir = stage_files(locked, state_dir)?;
        Ok(Self {
            id: id.into(),
            pre,
            export,
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
                    .for_component(capabilities.allowed_outbound_hosts()),
                app: app_outbound.clone(),
            }),
            capabilities,
            engine: engine.clone(),
        })
    }

    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The HTTP export detected at load time.
    pub fn export(&self) -> HttpExport {
        self.export
    }

    fn new_store(
        &self,
        deadline: Instant,
        budget: OutboundBudget,
    ) -> Result<Store<Host>, GuestError> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .stdout(LogStream::new(self.id.clone(), Stream::Stdout))
            .stderr(LogStream::new(self.id.clone(), Stream::Stderr));
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
        let config = self.engine.config();
        let host = Host::new(
            self.id.clone(),
            InstanceState::new(self.capabilities.clone()),
            self.outbound.clone(),
            budget,
            wasi.build(),
            config.memory_limit,
            deadline,
        );
        let mut store = Store::new(self.engine.engine(), host);
        store.limiter(|host| &mut host.limiter);
        let timeout = config.request_timeout;
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

    /// Handles one request in a fresh instance. The response is returned as soon as the
    /// guest produces its head; the body streams while the guest keeps running, and the
    /// instance is dropped when the guest finishes (or hits its deadline).
    pub async fn handle(
        self: &Arc<Self>,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, GuestError> {
        let timeout = self.engine.config().request_timeout;
        let deadline = Instant::now() + timeout;
        let permits = self.engine.instance_permits.clone();
        let permit = if OutboundBudget::is_nested(&request) {
            // The caller holds a slot while it waits for this one: queueing could
            // deadlock once every slot belongs to a waiting caller, so fail at once.
            permits.try_acquire_owned().map_err(|_| GuestError {
                fault: None,
                message: format!(
                    "no free instance slot for an in-process request (all {} are busy); raise --max-instances or make fewer nested calls",
                    self.engine.config().max_instances
                ),
            })?
        } else {
            permits.acquire_owned().await.map_err(|_| GuestError {
                fault: None,
                message: "the engine is shutting down".to_owned(),
            })?
        };
        let mut store = self.new_store(deadline, OutboundBudget::of(&request))?;
        let (tx, rx) = futures::channel::oneshot::channel();
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = async {
                let proxy = this.pre.instantiate_async(&mut store).await?;
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
            }
            .await;
            let fault = store.data().recorded_fault();
            // The slot frees only once the instance is gone.
            drop(store);
            drop(permit);
            (result, fault)
        });

        let wait_until = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
        let outcome = match tokio::time::timeout_at(wait_until, rx).await {
            Ok(Ok(Ok(response))) => return Ok(response),
            Ok(Ok(Err(err))) => Some(err),
            Ok(Err(_canceled)) => None,
            Err(_elapsed) => {
                task.abort();
                return Err(GuestError {
                    fault: Some(GuestFault::Deadline(timeout)),
                    message: "no response before the deadline".to_owned(),
                });
            }
        };
        // The guest failed before producing a response; collect why from the task.
        let (result, recorded) = match tokio::time::timeout_at(wait_until, task).await {
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

/// Copies a component's files into its own directory so the guest sees exactly its
/// `files` and nothing else, mounted read-only.
fn stage_files(locked: &LockedComponent, state_dir: &Path) -> Result<Option<PathBuf>, EngineError> {
    if locked.files.is_empty() {
        return Ok(None);
    }
    let files_error = |path: &Path, source: std::io::Error| EngineError::Files {
        component: locked.id.clone(),
        path: path.to_path_buf(),
        source,
    };
    // The id names a directory that is emptied and refilled: it must be one plain path
    // segment (LockedApp::check enforces kebab-case; this guards the filesystem anyway).
    if Path::new(&locked.id).components().count() != 1
        || !matches!(
            Path::new(&locked.id).components().next(),
            Some(PathComponent::Normal(_))
        )
    {
        return Err(files_error(
            Path::new(&locked.id),
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a component id must be a single path segment",
            ),
        ));
    }
    let root = state_dir.join("files").join(&locked.id);
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| files_error(&root, e))?;
    }
    std::fs::create_dir_all(&root).map_err(|e| files_error(&root, e))?;
    for file in &locked.files {
        let rel: PathBuf = Path::new(&file.path)
            .components()
            .filter_map(|c| match c {
                PathComponent::Normal(p) => Some(Ok(p)),
                PathComponent::RootDir | PathComponent::CurDir => None,
                _ => Some(Err(())),
            })
            .collect::<Result<_, ()>>()
            .map_err(|()| {
                files_error(
                    Path::new(&file.path),
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "guest paths may not contain `..`",
                    ),
                )
            })?;
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| files_error(parent, e))?;
        }
        std::fs::copy(&file.source, &dest).map_err(|e| files_error(&file.source, e))?;
    }
    Ok(Some(root))
}

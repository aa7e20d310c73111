//! The multi-app node: many apps in one process.
//!
//! ```text
//! admin API (PUT /v1/apps/{name}) ─▶ blobs in the content store ─▶ Runtime::load (checked,
//!                                     + desired state in node.db     compiled) ─▶ routing table
//! data listener ─▶ Host ─▶ routing table ─▶ app (loaded on first request) ─▶ its routes
//! ```
//!
//! Each app is a LockedApp rebuilt from the node's content store (`<state>/store`, the
//! OCI cache layout: uploaded or pulled blobs by digest) plus what its deploy said (hosts,
//! variables, runtime config, limits), recorded in `<state>/node.db`. An app holds no
//! compiled code in memory until its first request, and drops back to that after
//! `idle_unload` without traffic; compiled code comes from the engine's on-disk cache,
//! shared by digest. A deploy loads and checks the new version while the old one serves,
//! then swaps it in atomically: requests in flight finish on the version they started on.
//! The node embeds [`wisp_runtime`] exactly as `wisp up` does; it adds only routing, the
//! desired state and the admin API.

mod admin;
pub mod api;
mod handoff;
mod routing;
mod serving;
mod store;
mod worker;

use api::{AppInfo, AppLimitsSpec, AppState, DeployRequest, DeploySource, NodeStatus};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use routing::{Table, check_host, check_name};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use store::{AppRecord, Store, StoredApp};
use wisp_host::{AppPaths, RuntimeConfig, VariablesProviderConfig};
use wisp_oci::error_chain as chain;
use wisp_runtime::{AppLimits, AppSettings, RunningApp, Runtime};
use wisp_trigger_http::{HttpTrigger, ServerConfig};

pub use admin::{AdminToken, serve_admin};
pub use handoff::bind_control_socket;
pub use worker::{NodeRole, WORKER_FLAG, WORKER_READY_LINE, WORKER_TOKEN_ENV, WorkerCommand};

/// Largest manifest read from the content store.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Home of the desired state (`node.db`), the content store (`store/`), every app's
    /// state (`apps/<name>/`) and the generated admin token.
    pub state_dir: PathBuf,
    /// Apps deployed without hosts answer `<name>.<domain>`.
    pub domain: String,
    /// An app without traffic for this long is unloaded (apps with event triggers stay).
    pub idle_unload: Duration,
    /// Instance cap of an app that does not set its own.
    pub app_max_instances: u32,
    /// The data listener's front-door limits; its shutdown grace is also the apps'.
    pub server: ServerConfig,
    /// Largest blob accepted by an upload.
    pub max_blob_bytes: u64,
    /// The node itself (with or without a worker process for busy apps), or its worker.
    pub role: NodeRole,
}

/// Why a node operation failed. The admin API answers each with its status and message.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The request is malformed (a bad name, host, limit, source).
    #[error("{0}")]
    BadRequest(String),
    /// The app does not load (the same message `wisp up` prints).
    #[error("{0}")]
    InvalidApp(String),
    /// No app of that name.
    #[error("no app is named `{0}`; `wisp node ls` lists the deployed apps")]
    NotFound(String),
    /// A host belongs to another app.
    #[error(
        "host `{host}` already belongs to app `{owner}`; remove it there first or pick another host"
    )]
    HostTaken {
        /// The host.
        host: String,
        /// The app that has it.
        owner: String,
    },
    /// The registry could not serve the app.
    #[error("{0}")]
    Registry(String),
    /// The desired-state database failed.
    #[error("the node's database {path} failed: {message}")]
    Store {
        /// `node.db`.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A file in the state directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was tried.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("state_dir", &self.inner.config.state_dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    runtime: Runtime,
    config: NodeConfig,
    blobs: wisp_oci::Cache,
    store: Mutex<Store>,
    table: RwLock<Table>,
    /// One deploy or removal at a time.
    changes: tokio::sync::Mutex<()>,
    started: Instant,
    listen: Mutex<Option<SocketAddr>>,
    /// The worker process busy apps' requests go to (the node, when it has one).
    worker: Option<Arc<worker::Worker>>,
    /// The secret forwarded requests carry (a worker).
    worker_token: Option<AdminToken>,
    /// Which app was last served with few requests in flight: a busy app gives way to it.
    fair_share: wisp_engine::FairShare,
    /// Shutting down: a worker serves the connections it holds to the end instead of
    /// handing any back.
    closing: std::sync::atomic::AtomicBool,
    /// Requests in flight above which an app is busy: one per CPU.
    busy_above: u32,
}

/// One deployed version of an app.
struct AppEntry {
    name: String,
    version: u64,
    deployed_at: u64,
    /// Names this deploy exactly (a removed and redeployed app starts again at version
    /// 1): version, time and a digest of the record.
    deploy_id: String,
    record: AppRecord,
    requests: AtomicU64,
    /// Requests in the node for this deploy, until their response head (those forwarded
    /// to the worker included).
    in_flight: AtomicU32,
    /// Milliseconds since the node started at the last request, plus one; 0: none yet.
    last_used: AtomicU64,
    state: Mutex<LoadState>,
}

type LoadFuture = Shared<BoxFuture<'static, Result<Arc<Loaded>, Arc<str>>>>;

enum LoadState {
    Idle,
    Loading(LoadFuture),
    Loaded(Arc<Loaded>),
}

/// An app in memory: its HTTP trigger and its running event triggers.
struct Loaded {
    http: Option<Arc<HttpTrigger>>,
    /// The app as loaded: its instance slots are also taken for requests its worker serves.
    app: Arc<wisp_engine::LoadedApp>,
    running: tokio::sync::Mutex<Option<RunningApp>>,
}

impl Loaded {
    /// The app's HTTP trigger, and its event triggers running unless `http_only` (a
    /// worker serves forwarded requests; the node runs the events).
    fn start(
        generation: Arc<wisp_runtime::Generation>,
        server: ServerConfig,
        http_only: bool,
    ) -> Arc<Self> {
        let http = generation.http().cloned();
        let app = generation.app().clone();
        let running = (!http_only).then(|| RunningApp::start(generation, None, server));
        Arc::new(Self {
            http,
            app,
            running: tokio::sync::Mutex::new(running),
        })
    }

    /// Stops its event triggers (requests in flight keep what they hold).
    async fn stop(&self) {
        if let Some(running) = self.running.lock().await.take() {
            running.shutdown().await;
        }
    }
}

impl AppEntry {
    fn keeps_loaded(&self) -> bool {
        self.record.trigger_types.iter().any(|t| t != "http")
    }

    fn state(&self) -> AppState {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            LoadState::Idle => AppState::Idle,
            LoadState::Loading(_) => AppState::Loading,
            LoadState::Loaded(_) => AppState::Loaded,
        }
    }

    fn loaded(&self) -> Option<Arc<Loaded>> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            LoadState::Loaded(loaded) => Some(loaded.clone()),
            _ => None,
        }
    }

    /// What `ls` shows of the app, counting what the worker served of this deploy on the
    /// connections it holds (`in_worker`).
    fn info(&self, started: Instant, in_worker: Option<&handoff::ServedInWorker>) -> AppInfo {
        let last = self.last_used.load(Ordering::Relaxed);
        let in_worker = in_worker.filter(|served| served.deploy == self.deploy_id);
        let idle_seconds = (last > 0).then(|| {
            let now = started.elapsed().as_millis() as u64 + 1;
            now.saturating_sub(last) as f64 / 1000.0
        });
        let idle_in_worker = in_worker
            .and_then(|served| served.idle_ms)
            .map(|ms| ms as f64 / 1000.0);
        AppInfo {
            name: self.name.clone(),
            version: self.version,
            app_version: self.record.app_version.clone(),
            digest: self.record.digest.clone(),
            origin: self.record.origin.clone(),
            hosts: self.record.hosts.clone(),
            state: self.state(),
            requests: self.requests.load(Ordering::Relaxed)
                + in_worker.map_or(0, |served| served.requests),
            idle_seconds: match (idle_seconds, idle_in_worker) {
                (Some(here), Some(there)) => Some(here.min(there)),
                (here, there) => here.or(there),
            },
            deployed_at: self.deployed_at,
            components: self.record.components.clone(),
            trigger_types: self.record.trigger_types.clone(),
            limits: self.record.limits.clone(),
            variables: self.record.variables.keys().cloned().collect(),
        }
    }
}

impl Node {
    /// Opens the node's state in `config.state_dir` and registers every stored app (none
    /// is loaded yet, except apps with event triggers, which [`Node::start_event_apps`]
    /// loads).
    pub fn open(runtime: Runtime, config: NodeConfig) -> Result<Self, NodeError> {
        let state_dir = &config.state_dir;
        std::fs::create_dir_all(state_dir).map_err(|source| NodeError::Io {
            action: "create directory",
            path: state_dir.clone(),
            source,
        })?;
        let store = Store::open(state_dir)?;
        let started = Instant::now();
        let mut table = Table::default();
        for stored in store.all()? {
            match resolve_limits(&stored.record.limits, config.app_max_instances) {
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(app = %stored.name, "app `{}` is not served: {err}", stored.name);
                    continue;
                }
            };
            table.insert(Arc::new(entry(stored, LoadState::Idle)));
        }
        let (worker, worker_token) = match &config.role {
            NodeRole::Main { worker: None } => (None, None),
            NodeRole::Main {
                worker: Some(command),
            } => match worker::Worker::new(command.clone()) {
                Ok(worker) => (Some(Arc::new(worker)), None),
                Err(err) => {
                    tracing::warn!(
                        "busy apps stay in the node's slow lane: no secret for a worker process ({err})"
                    );
                    (None, None)
                }
            },
            NodeRole::Worker { token } => (None, Some(AdminToken::new(token)?)),
        };
        let inner = Inner {
            worker,
            worker_token,
            fair_share: wisp_engine::FairShare::default(),
            closing: std::sync::atomic::AtomicBool::new(false),
            busy_above: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            blobs: wisp_oci::Cache::new(state_dir.join("store")),
            runtime,
            config,
            store: Mutex::new(store),
            table: RwLock::new(table),
            changes: tokio::sync::Mutex::new(()),
            started,
            listen: Mutex::new(None),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The engine the node's apps run on (a stopping node lets its background compiles
    /// finish through it).
    pub fn engine(&self) -> &wisp_engine::WispEngine {
        self.inner.runtime.engine()
    }

    /// Where the node's apps record their metrics (the runtime's engine's registry).
    pub fn metrics(&self) -> &wisp_metrics::Metrics {
        self.inner.runtime.engine().metrics()
    }

    /// The metrics of the node's worker process (OpenMetrics text), while it runs: what
    /// the apps forwarded there recorded, for the node's `/metrics`.
    pub async fn worker_metrics(&self) -> Option<String> {
        self.inner.worker.as_ref()?.metrics().await
    }

    /// The node's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// How many apps are deployed.
    pub fn app_count(&self) -> usize {
        self.inner.table().apps.len()
    }

    /// Loads every app that has event triggers (Redis, cron): they run while deployed.
    /// A failure is logged; the app stays idle and its HTTP routes load on demand.
    pub async fn start_event_apps(&self) {
        let entries: Vec<_> = self
            .inner
            .table()
            .apps
            .values()
            .filter(|e| e.keeps_loaded())
            .cloned()
            .collect();
        for entry in entries {
            if let Err(err) = self.inner.clone().ensure_loaded(&entry).await {
                tracing::error!(app = %entry.name, "app `{}`: its triggers do not run: {err}", entry.name);
            }
        }
    }

    /// Serves apps on `listener` until `shutdown` resolves (routing by `Host`), while
    /// unloading idle apps; then stops every app within the grace period.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        self.serve_taking_connections(listener, None, shutdown)
            .await;
    }

    /// [`Node::serve`], for a worker: also serves the client connections its node hands
    /// over on `control` (see [`bind_control_socket`]), routing them by `Host` as the node
    /// does and handing each back before a request for another app; and follows the
    /// node's deploys in `node.db`.
    pub async fn serve_taking_connections(
        &self,
        listener: tokio::net::TcpListener,
        control: Option<tokio::net::UnixListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        *self.inner.listen.lock().unwrap_or_else(|e| e.into_inner()) = listener.local_addr().ok();
        let (handed_tx, handed_off) = tokio::sync::mpsc::channel(1024);
        if let Some(worker) = &self.inner.worker {
            // Connections the worker hands back come in on this (serving) runtime.
            worker.take_back_on(handed_tx.clone(), tokio::runtime::Handle::current());
        }
        let receiver = control.map(|control| {
            tokio::spawn(handoff::receive_handed_off(
                control,
                handed_tx,
                Arc::downgrade(&self.inner),
            ))
        });
        let sweeper = tokio::spawn(self.inner.clone().unload_idle_apps());
        let shutdown = {
            let inner = self.inner.clone();
            async move {
                shutdown.await;
                inner.closing.store(true, Ordering::Relaxed);
                // The worker keeps what it holds from now on: the node takes nothing back.
                if let Some(worker) = &inner.worker {
                    worker.closing();
                }
            }
        };
        let follower = self
            .inner
            .worker_token
            .is_some()
            .then(|| tokio::spawn(self.inner.clone().follow_the_store()));
        wisp_trigger_http::serve_with_handed_off(
            Arc::new(serving::Router(self.inner.clone())),
            listener,
            Some(handed_off),
            self.inner.config.server.clone(),
            shutdown,
        )
        .await;
        sweeper.abort();
        for task in follower.into_iter().chain(receiver) {
            task.abort();
        }
        // Everything forwarded has been answered: the worker has nothing left to finish.
        if let Some(worker) = &self.inner.worker {
            worker.stop(self.inner.config.server.shutdown_grace).await;
        }
        let loaded: Vec<_> = {
            let table = self.inner.table();
            table.apps.values().filter_map(|e| e.loaded()).collect()
        };
        futures::future::join_all(loaded.iter().map(|l| l.stop())).await;
    }

    /// Every app, by name.
    pub async fn list(&self) -> Vec<AppInfo> {
        let served = self.served_in_worker().await;
        let table = self.inner.table();
        let mut apps: Vec<_> = table
            .apps
            .values()
            .map(|e| e.info(self.inner.started, served.get(&e.name)))
            .collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        apps
    }

    /// One app.
    pub async fn get(&self, name: &str) -> Result<AppInfo, NodeError> {
        let served = self.served_in_worker().await;
        self.inner
            .table()
            .apps
            .get(name)
            .map(|e| e.info(self.inner.started, served.get(&e.name)))
            .ok_or_else(|| NodeError::NotFound(name.to_owned()))
    }

    /// The node's state.
    pub fn status(&self) -> NodeStatus {
        let table = self.inner.table();
        NodeStatus {
            wisp_version: env!("CARGO_PKG_VERSION").to_owned(),
            apps: table.apps.len(),
            loaded: table
                .apps
                .values()
                .filter(|e| e.state() == AppState::Loaded)
                .count(),
            listen: self
                .inner
                .listen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|a| a.to_string())
                .unwrap_or_default(),
            domain: self.inner.config.domain.clone(),
            uptime_seconds: self.inner.started.elapsed().as_secs_f64(),
            idle_unload_seconds: self.inner.config.idle_unload.as_secs_f64(),
            worker: self.inner.worker.as_ref().map(|worker| {
                let info = worker.info();
                api::WorkerStatus {
                    pid: info.pid,
                    forwarded_requests: info.forwarded,
                    handed_off_connections: info.handed_off,
                    returned_connections: info.returned,
                    held_connections: info.held,
                    starts: info.starts,
                }
            }),
        }
    }

    /// Whether the content store has the blob `digest`.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.inner.blobs.has_blob(digest)
    }

    /// Stores an uploaded blob if it matches `digest`.
    pub async fn put_blob<S, B, E>(&self, digest: &str, body: S) -> Result<(), NodeError>
    where
        S: futures::Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        self.inner
            .blobs
            .insert_stream(digest, body, self.inner.config.max_blob_bytes)
            .await
            .map(drop)
            .map_err(|e| NodeError::BadRequest(chain(&e)))
    }

    /// Deploys `request` as the app `name`, or replaces the app of that name. Returns once
    /// the new version is checked, loaded and serving, with whether the name is new. A
    /// refused deploy changes nothing.
    pub async fn deploy(
        &self,
        name: &str,
        request: DeployRequest,
    ) -> Result<(AppInfo, bool), NodeError> {
        check_name(name)?;
        let inner = &self.inner;
        let hosts = match request.hosts.is_empty() {
            true => vec![format!("{name}.{}", inner.config.domain)],
            false => request
                .hosts
                .iter()
                .map(|h| check_host(h))
                .collect::<Result<Vec<_>, _>>()?,
        };
        resolve_limits(&request.limits, inner.config.app_max_instances)?;
        let label: wisp_oci::Reference = format!("node.wisp.local/apps/{name}")
            .parse()
            .map_err(|e: wisp_oci::OciError| NodeError::BadRequest(chain(&e)))?;
        let (pulled, reference, origin) = match &request.source {
            DeploySource::Uploaded { manifest } => {
                let path = inner
                    .blobs
                    .blob_path(manifest)
                    .map_err(|e| NodeError::BadRequest(chain(&e)))?;
                let body = read_small(&path, MAX_MANIFEST_BYTES).await.map_err(|_| {
                    NodeError::BadRequest(format!(
                        "the node has no manifest {manifest}; upload it with PUT /v1/blobs/{manifest} first (`wisp node deploy` does)"
                    ))
                })?;
                let pulled = inner
                    .blobs
                    .import(&label, &body)
                    .await
                    .map_err(|e| NodeError::BadRequest(chain(&e)))?;
                let origin = request
                    .origin
                    .clone()
                    .unwrap_or_else(|| "upload".to_owned());
                (pulled, label.with_digest(manifest), origin)
            }
            DeploySource::Registry {
                reference,
                insecure,
            } => {
                let parsed: wisp_oci::Reference = reference
                    .parse()
                    .map_err(|e: wisp_oci::OciError| NodeError::BadRequest(chain(&e)))?;
                let client = wisp_oci::RegistryClient::new(wisp_oci::ClientOptions {
                    insecure: *insecure,
                    ..Default::default()
                })
                .map_err(|e| NodeError::Registry(chain(&e)))?;
                let pulled = wisp_oci::pull(&client, &parsed, &inner.blobs)
                    .await
                    .map_err(|e| {
                        NodeError::Registry(format!("cannot pull {reference}: {}", chain(&e)))
                    })?;
                let pinned = parsed.with_digest(&pulled.digest);
                (
                    pulled,
                    pinned,
                    request.origin.clone().unwrap_or_else(|| reference.clone()),
                )
            }
        };
        let locked = pulled.locked;
        let mut trigger_types: Vec<String> = locked
            .triggers
            .iter()
            .map(|t| t.trigger_type.clone())
            .collect();
        trigger_types.sort();
        trigger_types.dedup();
        let record = AppRecord {
            reference: reference.to_string(),
            digest: pulled.digest.clone(),
            origin,
            source: request.source.clone(),
            hosts,
            variables: request.variables,
            runtime_config: request.runtime_config,
            limits: request.limits,
            trigger_types,
            components: locked.components.iter().map(|c| c.id.clone()).collect(),
            app_version: locked.metadata.version.clone().filter(|v| !v.is_empty()),
        };

        let _change = inner.changes.lock().await;
        {
            let table = inner.table();
            for host in &record.hosts {
                if let Some(owner) = table.owner_of(host)
                    && owner != name
                {
                    return Err(NodeError::HostTaken {
                        host: host.clone(),
                        owner: owner.to_owned(),
                    });
                }
            }
        }
        // Load and check the new version while the old one serves.
        let settings = inner.app_settings(name, &record)?;
        let generation = inner
            .runtime
            .load(locked, &settings)
            .await
            .map_err(|e| NodeError::InvalidApp(chain(&e)))?;
        let deployed_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let version = inner.store.lock().unwrap_or_else(|e| e.into_inner()).put(
            name,
            &record,
            deployed_at,
        )?;
        write_runtime_config_copy(&inner.app_dir(name), record.runtime_config.as_deref()).await?;
        let forget_removed = generation.clone();
        let loaded = Loaded::start(generation, inner.config.server.clone(), false);
        let new = Arc::new(entry(
            StoredApp {
                name: name.to_owned(),
                version,
                deployed_at,
                record,
            },
            LoadState::Loaded(loaded),
        ));
        new.touch(inner.started);
        let old = {
            let mut table = inner.table_mut();
            let old = table.apps.get(name).cloned();
            table.insert(new.clone());
            old
        };
        if let Some(old) = old {
            old.retire();
        }
        // A component the new version dropped takes its series with it.
        inner.runtime.forget_removed_components(&forget_removed);
        tracing::info!(app = %name, version, digest = %new.record.digest, "deployed app `{name}` version {version} ({})", new.record.digest);
        Ok((new.info(inner.started, None), version == 1))
    }

    /// Stops and removes the app `name` and its state directory.
    pub async fn remove(&self, name: &str) -> Result<(), NodeError> {
        check_name(name)?;
        let inner = &self.inner;
        let _change = inner.changes.lock().await;
        if !inner
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)?
        {
            return Err(NodeError::NotFound(name.to_owned()));
        }
        let old = inner.table_mut().remove(name);
        if let Some(old) = old {
            if let Some(loaded) = old.loaded() {
                loaded.stop().await;
            }
            *old.state.lock().unwrap_or_else(|e| e.into_inner()) = LoadState::Idle;
        }
        // Its instances are gone: its series go too, so a node whose apps come and go
        // keeps a bounded number of them.
        self.metrics().forget_app(name);
        let dir = inner.app_dir(name);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NodeError::Io {
                    action: "remove",
                    path: dir,
                    source,
                });
            }
        }
        tracing::info!(app = %name, "removed app `{name}`");
        Ok(())
    }
}

fn entry(stored: StoredApp, state: LoadState) -> AppEntry {
    use sha2::Digest as _;
    let record = serde_json::to_vec(&stored.record).unwrap_or_default();
    let digest = hex::encode(&sha2::Sha256::digest(&record)[..8]);
    AppEntry {
        name: stored.name,
        version: stored.version,
        deployed_at: stored.deployed_at,
        deploy_id: format!("{}-{}-{digest}", stored.version, stored.deployed_at),
        record: stored.record,
        requests: AtomicU64::new(0),
        in_flight: AtomicU32::new(0),
        last_used: AtomicU64::new(0),
        state: Mutex::new(state),
    }
}

impl AppEntry {
    fn touch(&self, started: Instant) {
        self.last_used
            .store(started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }

    /// This version was replaced: stop its event triggers once the new version's run,
    /// and let its requests in flight finish on what they hold.
    fn retire(self: Arc<Self>) {
        let loaded = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *state, LoadState::Idle)
        };
        if let LoadState::Loaded(loaded) = loaded {
            tokio::spawn(async move { loaded.stop().await });
        }
    }
}

impl Inner {
    fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    fn app_dir(&self, name: &str) -> PathBuf {
        self.config.state_dir.join("apps").join(name)
    }

    /// The app's settings: its own state directory, its runtime config (relative paths
    /// relative to that directory), its variables ahead of every provider and never the
    /// node's environment, and its limits.
    fn app_settings(&self, name: &str, record: &AppRecord) -> Result<AppSettings, NodeError> {
        let dir = self.app_dir(name);
        let mut runtime_config = match &record.runtime_config {
            Some(text) => RuntimeConfig::from_str(text, &dir.join("runtime-config.toml"))
                .map_err(|e| NodeError::InvalidApp(chain(&e)))?,
            None => RuntimeConfig::default(),
        };
        if !record.variables.is_empty() {
            runtime_config.variables_providers.insert(
                0,
                VariablesProviderConfig::Static {
                    values: record
                        .variables
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                },
            );
        }
        runtime_config.isolated_environment = true;
        Ok(AppSettings {
            runtime_config,
            paths: AppPaths {
                state_dir: dir,
                app_dir: None,
                files_dir: None,
            },
            limits: AppLimits {
                // Metrics name the app as it is deployed, not as its manifest does.
                name: Some(name.to_owned()),
                ..resolve_limits(&record.limits, self.config.app_max_instances)?
            },
        })
    }

    /// The app in memory, loading it (once, however many requests wait) if it is idle.
    async fn ensure_loaded(
        self: Arc<Self>,
        entry: &Arc<AppEntry>,
    ) -> Result<Arc<Loaded>, Arc<str>> {
        let load = {
            let mut state = entry.state.lock().unwrap_or_else(|e| e.into_inner());
            match &*state {
                LoadState::Loaded(loaded) => return Ok(loaded.clone()),
                LoadState::Loading(load) => load.clone(),
                LoadState::Idle => {
                    // A task of its own: a client that goes away does not cancel the load.
                    let task = tokio::spawn(self.clone().load(entry.clone()));
                    let load: LoadFuture = async move {
                        task.await
                            .unwrap_or_else(|e| Err(Arc::from(format!("the load failed: {e}"))))
                    }
                    .boxed()
                    .shared();
                    *state = LoadState::Loading(load.clone());
                    load
                }
            }
        };
        let result = load.await;
        let mut state = entry.state.lock().unwrap_or_else(|e| e.into_inner());
        if let LoadState::Loading(_) = &*state {
            *state = match &result {
                Ok(loaded) => LoadState::Loaded(loaded.clone()),
                Err(_) => LoadState::Idle,
            };
        }
        result
    }

    async fn load(self: Arc<Self>, entry: Arc<AppEntry>) -> Result<Arc<Loaded>, Arc<str>> {
        let started = Instant::now();
        let fail = |message: String| -> Arc<str> {
            tracing::error!(app = %entry.name, "app `{}` cannot be loaded: {message}", entry.name);
            Arc::from(message)
        };
        let reference: wisp_oci::Reference = entry
            .record
            .reference
            .parse()
            .map_err(|e: wisp_oci::OciError| fail(chain(&e)))?;
        let locked = match self.blobs.lookup(&reference).await {
            Ok(Some(pulled)) => pulled.locked,
            Ok(None) => {
                return Err(fail(format!(
                    "its artifact {} is missing from the node's store; deploy it again",
                    entry.record.digest
                )));
            }
            Err(e) => return Err(fail(chain(&e))),
        };
        let settings = self
            .app_settings(&entry.name, &entry.record)
            .map_err(|e| fail(chain(&e)))?;
        let generation = self
            .runtime
            .load(locked, &settings)
            .await
            .map_err(|e| fail(chain(&e)))?;
        tracing::info!(app = %entry.name, "loaded app `{}` in {:.1?}", entry.name, started.elapsed());
        let http_only = matches!(self.config.role, NodeRole::Worker { .. });
        Ok(Loaded::start(
            generation,
            self.config.server.clone(),
            http_only,
        ))
    }

    /// Unloads apps without traffic for `idle_unload` (apps with event triggers stay).
    async fn unload_idle_apps(self: Arc<Self>) {
        let idle = self.config.idle_unload;
        let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = self.started.elapsed().as_millis() as u64 + 1;
            let idle_ms = idle.as_millis() as u64;
            let candidates: Vec<_> = self
                .table()
                .apps
                .values()
                .filter(|e| !e.keeps_loaded())
                .filter(|e| now.saturating_sub(e.last_used.load(Ordering::Relaxed)) >= idle_ms)
                .cloned()
                .collect();
            let mut unloaded_any = false;
            for entry in candidates {
                let unloaded = {
                    let mut state = entry.state.lock().unwrap_or_else(|e| e.into_inner());
                    match &*state {
                        LoadState::Loaded(_) => std::mem::replace(&mut *state, LoadState::Idle),
                        _ => continue,
                    }
                };
                if let LoadState::Loaded(loaded) = unloaded {
                    tracing::info!(app = %entry.name, "unloaded app `{}` after {idle:?} without requests", entry.name);
                    loaded.stop().await;
                    unloaded_any = true;
                }
            }
            if unloaded_any {
                // Idle apps should cost nothing: return the heap their instances and
                // linking freed (it walks every arena, so off the async workers).
                let _ = tokio::task::spawn_blocking(wisp_engine::release_free_heap).await;
            }
            // Nor should a node that has been idle for a while: the instance pool gives
            // back what a burst left resident in it (once per idle stretch; the first time
            // it looks for the pool, with a probe instance).
            // Never less than a second, so that a tiny `--idle-unload` does not release
            // between every two requests.
            let min_idle = wisp_engine::IDLE_RELEASE_AFTER
                .min(idle)
                .max(Duration::from_secs(1));
            let _ = tokio::task::spawn_blocking(move || {
                wisp_engine::release_idle_instance_memory(min_idle)
            })
            .await;
        }
    }
}

/// The engine's form of an app's limits; the default instance cap is `default_cap`.
fn resolve_limits(spec: &AppLimitsSpec, default_cap: u32) -> Result<AppLimits, NodeError> {
    let request_timeout = match spec.request_timeout_secs {
        Some(secs) => Some(
            Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    NodeError::BadRequest(format!(
                        "request timeout {secs} is invalid: give a positive number of seconds"
                    ))
                })?,
        ),
        None => None,
    };
    if spec.memory_limit_mb == Some(0) || spec.max_instances == Some(0) {
        return Err(NodeError::BadRequest(
            "an app's memory limit and instance cap must be at least 1".to_owned(),
        ));
    }
    Ok(AppLimits {
        memory_limit: spec.memory_limit_mb.map(|mb| mb << 20),
        request_timeout,
        max_instances: Some(spec.max_instances.unwrap_or(default_cap).max(1)),
        // An app running more instances than there are CPUs gives way to the others.
        busy_above: Some(std::thread::available_parallelism().map_or(2, |n| n.get() as u32)),
        guest_output: wisp_runtime::GuestOutput::All,
        guest_log_dir: None,
        name: None,
    })
}

/// Keeps `<app dir>/runtime-config.toml` equal to the deployed runtime config, so the
/// file its messages name exists for an operator to read. The node itself reads the
/// text recorded in `node.db`.
async fn write_runtime_config_copy(dir: &Path, text: Option<&str>) -> Result<(), NodeError> {
    let path = dir.join("runtime-config.toml");
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| NodeError::Io {
            action,
            path,
            source,
        }
    };
    match text {
        Some(text) => {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io("create", dir))?;
            tokio::fs::write(&path, text)
                .await
                .map_err(io("write", &path))
        }
        None => match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path)(e)),
            _ => Ok(()),
        },
    }
}

async fn read_small(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let len = tokio::fs::metadata(path).await?.len();
    if len > limit {
        return Err(std::io::Error::other("too large"));
    }
    tokio::fs::read(path).await
}

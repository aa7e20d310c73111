//! Host capabilities: the Spin and WASI interfaces Wisp links into every instance
//! besides WASI itself — key-value, variables, SQLite, outbound Redis, MQTT, PostgreSQL
//! and MySQL, and LLM, which answers with its WIT error variant ("no LLM backend
//! configured"). It also decides each component's `wasi:sockets` grants
//! ([`ComponentCapabilities::sockets`]), which the engine applies to WASI.
//!
//! Place in the data path: `LockedApp` + [`RuntimeConfig`] → [`AppCapabilities`] (one
//! per app: opened stores and databases, resolved variables, checked grants) →
//! [`InstanceState`] (one per instance, cheap) which the engine keeps in its store
//! data and exposes through [`CapabilitiesView`]. User-level failures (a store not
//! granted, a missing key, an SQL error) are WIT error values; only host faults trap.
//!
//! Each capability plugs in through the [`Capability`] trait (its docs say what a
//! capability contributes) and is registered once in [`CapabilitySet::default`]; an
//! embedder can prepare and link a set without some of them.

mod capability;
mod kv;
mod mysql;
mod outbound_mqtt;
mod outbound_redis;
mod postgres;
mod rdbms;
mod runtime_config;
mod sqlite;
mod unsupported;
mod variables;

pub use capability::{
    AppContext, Capability, CapabilitySet, LinkerKey, Prepared, RuntimeConfigTable,
};
pub use kv::{KeyValue, KeyValueStoreConfig};
pub use mysql::Mysql;
pub use outbound_mqtt::OutboundMqtt;
pub use outbound_redis::OutboundRedis;
pub use postgres::Postgres;
pub use runtime_config::{OutboundNetworkingConfig, RuntimeConfig, VariablesProviderConfig};
pub use sqlite::{Sqlite, SqliteDatabaseConfig};
pub use unsupported::Llm;
pub use variables::{Variables, expand_template};

use capability::Grants;
use indexmap::IndexMap;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wisp_app::LockedApp;
use wisp_outbound::{AllowedHosts, BlockedNetworks, ServiceError, ServiceTarget, SocketPolicy};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "wisp:host/capabilities",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::kv::OpenStore,
            "spin:key-value/key-value.store": crate::kv::OpenStore,
            "wasi:keyvalue/store.bucket": crate::kv::OpenStore,
            "wasi:keyvalue/atomics.cas": crate::kv::Cas,
            "fermyon:spin/sqlite.connection": crate::sqlite::OpenConnection,
            "spin:sqlite/sqlite.connection": crate::sqlite::OpenConnection,
            "fermyon:spin/redis.connection": crate::outbound_redis::RedisConnection,
            "spin:redis/redis.connection": crate::outbound_redis::RedisConnection,
            "fermyon:spin/mqtt.connection": crate::outbound_mqtt::MqttConnection,
            "spin:mqtt/mqtt.connection": crate::outbound_mqtt::MqttConnection,
            "fermyon:spin/postgres.connection": crate::postgres::PgConnection,
            "fermyon:spin/mysql.connection": crate::mysql::MysqlConnection,
            "spin:postgres/postgres@3.0.0.connection": crate::postgres::PgConnection,
            "spin:postgres/postgres@4.2.0.connection": crate::postgres::PgConnection,
            "spin:postgres/postgres@4.2.0.connection-builder": crate::postgres::PostgresBuilder,
            "spin:mysql/mysql.connection": crate::mysql::MysqlConnection,
        },
    });
}

/// The Spin 1.x interfaces (the unversioned `fermyon:spin` package), generated apart from
/// [`bindings`] so the unversioned package does not rename the `@2.0.0` bindings. Each
/// capability links its own interface from here, as from [`bindings`].
mod spin1_bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/spin1",
        world: "wisp:spin1/capabilities",
        imports: { default: async | trappable },
        // Identical to 2.0.0's types (same names and cases), so the 2.0.0 conversions
        // serve both.
        with: {
            "fermyon:spin/rdbms-types": crate::bindings::fermyon::spin::rdbms_types,
        },
    });
}

/// Most handles (stores, buckets, connections) one instance may hold open at once;
/// past it `open` answers `store-table-full` instead of growing the table.
pub const MAX_OPEN_HANDLES: usize = 256;

/// Most outbound service connections (Redis, MQTT, PostgreSQL, MySQL) open at once in
/// the whole process, so guests cannot exhaust the host's file descriptors; past it
/// `open` answers the interface's "too many connections" error.
pub const MAX_SERVICE_CONNECTIONS: usize = 1024;

static SERVICE_CONNECTIONS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MAX_SERVICE_CONNECTIONS)));

/// A slot for one outbound service connection; `None` when all are taken.
pub(crate) fn service_connection_permit() -> Option<tokio::sync::OwnedSemaphorePermit> {
    SERVICE_CONNECTIONS.clone().try_acquire_owned().ok()
}

/// Why the app's capabilities could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The runtime config file could not be read.
    #[error("cannot read runtime config {}: {source}", file.display())]
    RuntimeConfigIo {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime config file is malformed.
    #[error("{}: {message}", file.display())]
    RuntimeConfig { file: PathBuf, message: String },
    /// A component was granted a key-value store nobody configured.
    #[error(
        "component `{component}` uses key-value store `{label}`, which is neither `default` nor configured; add a [key_value_store.{label}] table to the runtime config file (--runtime-config-file) or remove the label from its key_value_stores"
    )]
    UnknownKeyValueStore { component: String, label: String },
    /// A component was granted an SQLite database nobody configured.
    #[error(
        "component `{component}` uses SQLite database `{label}`, which is neither `default` nor configured; add a [sqlite_database.{label}] table to the runtime config file (--runtime-config-file) or remove the label from its sqlite_databases"
    )]
    UnknownDatabase { component: String, label: String },
    /// A store's backend could not be opened.
    #[error("cannot open key-value store `{label}`: {message}")]
    KeyValueBackend { label: String, message: String },
    /// A database could not be opened.
    #[error("cannot open SQLite database `{label}`: {message}")]
    Database { label: String, message: String },
    /// A required variable has no value from any provider.
    #[error(
        "variable `{name}` is required but has no value; set {env_name} in the environment or in .env beside the manifest, or give it a value in a [[variables_provider]] of the runtime config"
    )]
    MissingVariable { name: String, env_name: String },
    /// A component's `allowed_outbound_hosts` entry is malformed.
    #[error("component `{component}`: {message}")]
    AllowedOutboundHosts { component: String, message: String },
    /// `[outbound_networking] block_networks` is malformed.
    #[error("runtime config: {0}")]
    BlockNetworks(String),
    /// A `.env` file could not be read.
    #[error("cannot read {}: {message}", file.display())]
    Dotenv { file: PathBuf, message: String },
    /// A capability without a variant of its own could not be set up; the cause says
    /// why.
    #[error("cannot set up the {capability} capability")]
    Capability {
        capability: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where the app lives, for defaults that are relative to it.
#[derive(Debug, Clone)]
pub struct AppPaths {
    /// The app's state directory (`.wisp/` beside the manifest unless `--state-dir`):
    /// home of the `default` key-value store and SQLite database.
    pub state_dir: PathBuf,
    /// The manifest's directory, where `.env` is looked up; `None` for an app without a
    /// manifest directory of its own.
    pub app_dir: Option<PathBuf>,
    /// Where components' files are staged (`wisp up --temp`); `None`: `state_dir/files`.
    pub files_dir: Option<PathBuf>,
}

impl AppPaths {
    /// The directory components' files are staged under.
    pub fn files_dir(&self) -> PathBuf {
        self.files_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("files"))
    }
}

/// Everything one app's components may reach, set up once when the app loads.
pub struct AppCapabilities {
    components: HashMap<String, Arc<ComponentCapabilities>>,
    blocked_networks: BlockedNetworks,
    variables: IndexMap<String, String>,
    summary: Vec<String>,
    /// The `CapabilitySet<T>` these were prepared from, for [`AppCapabilities::add_to_linker`]
    /// to link exactly those; `None` for Wisp's default set. Type-erased so that this
    /// type does not carry the store type.
    linkers: Option<Arc<dyn Any + Send + Sync>>,
    linker_key: LinkerKey,
    names: Vec<&'static str>,
}

impl std::fmt::Debug for AppCapabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCapabilities")
            .field("capabilities", &self.names)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// One component's view: only what its manifest grants.
pub struct ComponentCapabilities {
    id: Arc<str>,
    allowed_outbound_hosts: AllowedHosts,
    /// The app's blocked networks, minus link-local ranges this component names.
    blocked_networks: BlockedNetworks,
    /// Raw TCP/UDP grants; `None` (the default) when no entry grants a socket.
    sockets: Option<Arc<SocketPolicy>>,
    /// Hosts whose HTTPS uses a `[[client_tls]]` entry's settings.
    client_tls: wisp_outbound::HostTls,
    /// What each capability granted, by the grant's type.
    grants: Grants,
    /// Where its key-value, SQL and outbound use is counted; set by the engine when it
    /// loads the component.
    metrics: std::sync::OnceLock<wisp_metrics::ComponentMetrics>,
}

impl AppCapabilities {
    /// Prepares Wisp's default capabilities for `locked`: resolves variables, opens every
    /// store and database a component is granted, and checks that each granted label has
    /// a backend. Fails on the first problem with a message naming the component, label
    /// or variable.
    pub async fn build(
        locked: &LockedApp,
        runtime: &RuntimeConfig,
        paths: &AppPaths,
    ) -> Result<Self, HostError> {
        let capabilities = capability::default_capabilities();
        let key = LinkerKey::defaults();
        Self::prepare(&capabilities, None, key, locked, runtime, paths).await
    }

    /// [`AppCapabilities::build`] for the capabilities of `set` only; then
    /// [`AppCapabilities::add_to_linker`] links exactly those. The runtime config is
    /// checked against `set`: a table only a left-out capability reads is an unknown key.
    pub async fn build_with<T: CapabilitiesView + 'static>(
        set: &CapabilitySet<T>,
        locked: &LockedApp,
        runtime: &RuntimeConfig,
        paths: &AppPaths,
    ) -> Result<Self, HostError> {
        let linkers: Arc<dyn Any + Send + Sync> = Arc::new(set.clone());
        let key = set.linker_key().clone();
        Self::prepare(
            set.capabilities(),
            Some(linkers),
            key,
            locked,
            runtime,
            paths,
        )
        .await
    }

    async fn prepare(
        capabilities: &[Arc<dyn Capability>],
        linkers: Option<Arc<dyn Any + Send + Sync>>,
        linker_key: LinkerKey,
        locked: &LockedApp,
        runtime: &RuntimeConfig,
        paths: &AppPaths,
    ) -> Result<Self, HostError> {
        let runtime = runtime.check(capabilities)?;
        let mut summary = Vec::new();
        let providers = variables::Providers::new(&runtime, paths)?;
        summary.push(format!("variables: {}", providers.describe()));
        let app_variables = variables::resolve_app_variables(locked, &providers)?;
        let blocked_networks = BlockedNetworks::parse(&runtime.outbound_networking.block_networks)
            .map_err(|e| HostError::BlockNetworks(e.to_string()))?;
        summary.push(format!("outbound networking: blocked {blocked_networks}"));
        if !runtime.client_tls.is_empty() {
            summary.push(format!(
                "client TLS: {} [[client_tls]] entries",
                runtime.client_tls.len()
            ));
        }

        let app = AppContext {
            locked,
            runtime_config: &runtime,
            paths,
            variables: &app_variables,
        };
        let mut grants: HashMap<String, Grants> = HashMap::new();
        for capability in capabilities {
            let prepared = capability.prepare(&app).await?;
            summary.extend(prepared.summary);
            for (component, type_id, grant) in prepared.grants {
                grants.entry(component).or_default().insert(type_id, grant);
            }
        }

        let mut components = HashMap::new();
        for component in &locked.components {
            let allowed_outbound_hosts =
                allowed_hosts(&component.metadata.allowed_outbound_hosts, &app_variables).map_err(
                    |message| HostError::AllowedOutboundHosts {
                        component: component.id.clone(),
                        message,
                    },
                )?;
            let component_blocked = blocked_networks.for_component(&allowed_outbound_hosts);
            // The first entry naming this component and a host decides for that host.
            let mut client_tls = HashMap::new();
            for entry in &runtime.client_tls {
                if entry.component_ids.contains(&component.id) {
                    for host in &entry.hosts {
                        client_tls
                            .entry(host.clone())
                            .or_insert_with(|| entry.tls.clone());
                    }
                }
            }
            components.insert(
                component.id.clone(),
                Arc::new(ComponentCapabilities {
                    id: component.id.as_str().into(),
                    sockets: SocketPolicy::new(&allowed_outbound_hosts, &component_blocked)
                        .map(Arc::new),
                    blocked_networks: component_blocked,
                    client_tls: Arc::new(client_tls),
                    allowed_outbound_hosts,
                    grants: grants.remove(&component.id).unwrap_or_default(),
                    metrics: std::sync::OnceLock::new(),
                }),
            );
        }
        Ok(Self {
            components,
            blocked_networks,
            variables: app_variables,
            summary,
            linkers,
            linker_key,
            names: capabilities.iter().map(|c| c.name()).collect(),
        })
    }

    /// Which capabilities [`AppCapabilities::add_to_linker`] links: apps with equal keys
    /// can share one linker.
    pub fn linker_key(&self) -> &LinkerKey {
        &self.linker_key
    }

    /// Links the interfaces of the capabilities these were prepared for (Wisp's default
    /// set after [`AppCapabilities::build`]) into `linker`. Fails when they were prepared
    /// with a [`CapabilitySet`] for another store type.
    pub fn add_to_linker<T: CapabilitiesView + 'static>(
        &self,
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        match &self.linkers {
            None => CapabilitySet::<T>::default().add_to_linker(linker),
            Some(set) => match set.downcast_ref::<CapabilitySet<T>>() {
                Some(set) => set.add_to_linker(linker),
                None => wasmtime::bail!(
                    "the app's capabilities were prepared with a CapabilitySet for another store type than this linker's; build them with a CapabilitySet<{}>",
                    std::any::type_name::<T>()
                ),
            },
        }
    }

    /// The names of the capabilities prepared, in order (`key-value`, `sqlite`, ...).
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// What a component may reach; `None` for an unknown id.
    pub fn component(&self, id: &str) -> Option<Arc<ComponentCapabilities>> {
        self.components.get(id).cloned()
    }

    /// Networks no outbound connection may reach (`[outbound_networking]`, plus the
    /// link-local range).
    pub fn blocked_networks(&self) -> &BlockedNetworks {
        &self.blocked_networks
    }

    /// Expands `{{ variable }}` references to app variables (used for templated
    /// `allowed_outbound_hosts`).
    pub fn expand(&self, template: &str) -> Result<String, String> {
        expand_template(template, &self.variables)
    }

    /// One line per variable source, store and database saying which backend serves
    /// it; printed at start-up. Never contains a variable's value.
    pub fn summary(&self) -> &[String] {
        &self.summary
    }
}

/// What a component counts into before an engine gave it a handle: nothing.
static NO_METRICS: wisp_metrics::ComponentMetrics = wisp_metrics::ComponentMetrics::disabled();

impl ComponentCapabilities {
    /// Counts the component's capability use into `metrics` from now on (the first
    /// call wins: the engine makes it when it loads the component).
    pub fn set_metrics(&self, metrics: wisp_metrics::ComponentMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Where the component's capability use is counted.
    pub fn metrics(&self) -> &wisp_metrics::ComponentMetrics {
        self.metrics.get().unwrap_or(&NO_METRICS)
    }

    /// The component's `allowed_outbound_hosts`, templates expanded.
    pub fn allowed_outbound_hosts(&self) -> &AllowedHosts {
        &self.allowed_outbound_hosts
    }

    /// The networks no connection of this component may reach.
    pub fn blocked_networks(&self) -> &BlockedNetworks {
        &self.blocked_networks
    }

    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The grant of type `G` a capability gave this component when the app was
    /// prepared ([`Prepared::grant`]); `None` when it gave none (nothing granted, or the
    /// capability was not prepared).
    pub fn grant<G: Any>(&self) -> Option<&G> {
        self.grants.get()
    }

    /// The `[[client_tls]]` settings of this component, by host.
    pub fn client_tls(&self) -> &wisp_outbound::HostTls {
        &self.client_tls
    }

    /// A TLS handshake with a service (PostgreSQL, Redis, MySQL, MQTT) at `host` over an
    /// already checked TCP connection, trusting this component's `[[client_tls]]` roots
    /// for that host (the webpki roots otherwise).
    pub async fn connect_tls(
        &self,
        host: &str,
        verify: wisp_outbound::Verify,
        tcp: tokio::net::TcpStream,
    ) -> Result<wisp_outbound::ServiceTlsStream, wisp_outbound::ServiceTlsError> {
        let connected =
            wisp_outbound::connect_service(self.client_tls_for(host), host, verify, tcp).await;
        if let Err(e) = &connected {
            tracing::warn!(component = %self.id, host, "component `{}`: {e}", self.id);
        }
        connected
    }

    /// This component's `[[client_tls]]` entry for `host`, if any.
    pub fn client_tls_for(&self, host: &str) -> Option<&wisp_outbound::ClientTls> {
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.client_tls.get(&name)
    }

    /// The component's `wasi:sockets` grants, `None` when it has none (the default: no
    /// sockets, no name lookup).
    pub fn sockets(&self) -> Option<&Arc<SocketPolicy>> {
        self.sockets.as_ref()
    }

    /// Checks a service connection (`redis`, `mqtt`, `postgres`, `mysql`) against the
    /// grants and blocked networks and resolves it; a refusal is logged naming the
    /// component and what to add.
    pub(crate) async fn service_target(
        &self,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Result<ServiceTarget, ServiceError> {
        let result = wisp_outbound::resolve_service(
            &self.allowed_outbound_hosts,
            &self.blocked_networks,
            scheme,
            host,
            port,
        )
        .await;
        if let Err(e) = &result {
            tracing::warn!(component = %self.id, "component `{}`: outbound {scheme} connection refused: {e}", self.id);
            let outcome = match e {
                ServiceError::NotAllowed { .. } | ServiceError::Blocked { .. } => {
                    wisp_metrics::OutboundOutcome::Denied
                }
                _ => wisp_metrics::OutboundOutcome::Error,
            };
            self.count_service(scheme, outcome);
        }
        result
    }

    /// Counts an outbound service connection (`scheme` as granted: `redis`, `rediss`,
    /// `postgres`, `mysql`, `mqtt`, `mqtts`). [`Self::service_target`] counts its own
    /// refusals; the caller counts whether the connection it then made succeeded.
    pub(crate) fn count_service(&self, scheme: &str, outcome: wisp_metrics::OutboundOutcome) {
        use wisp_metrics::OutboundKind;
        let kind = match scheme {
            "redis" | "rediss" => OutboundKind::Redis,
            "postgres" | "postgresql" => OutboundKind::Postgres,
            "mysql" => OutboundKind::Mysql,
            "mqtt" | "mqtts" => OutboundKind::Mqtt,
            _ => OutboundKind::Tcp,
        };
        self.metrics().outbound(kind, outcome);
    }
}

/// Expands and parses `allowed_outbound_hosts`. An entry is checked alone so an error
/// can quote it as written: its expansion may hold a secret variable's value.
fn allowed_hosts(
    patterns: &[String],
    variables: &IndexMap<String, String>,
) -> Result<AllowedHosts, String> {
    let mut expanded = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        let entry = expand_template(pattern, variables)?;
        if let Err(e) = AllowedHosts::parse(std::slice::from_ref(&entry)) {
            return Err(if entry == *pattern {
                e.to_string()
            } else {
                format!(
                    "allowed_outbound_hosts entry \"{pattern}\" does not expand to a valid pattern; check the variables it uses and the entry's syntax (scheme://host[:port])"
                )
            });
        }
        expanded.push(entry);
    }
    AllowedHosts::parse(&expanded).map_err(|e| e.to_string())
}

/// Per-instance capability state, kept in the engine's store data.
pub struct InstanceState {
    caps: Arc<ComponentCapabilities>,
    open_handles: usize,
    /// When the event this instance serves must be done; bounds host-side waits.
    deadline: Option<std::time::Instant>,
    /// The span of the request this instance serves, when it is traced.
    trace: Option<wisp_telemetry::SpanParent>,
    /// State capabilities keep per instance, by type, made on first use: an instance
    /// that never calls such a capability pays nothing for it.
    extensions: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl InstanceState {
    /// Fresh state for one instance of a component.
    pub fn new(caps: Arc<ComponentCapabilities>) -> Self {
        Self {
            caps,
            open_handles: 0,
            deadline: None,
            trace: None,
            extensions: Vec::new(),
        }
    }

    /// Where the component's capability use is counted.
    pub fn metrics(&self) -> &wisp_metrics::ComponentMetrics {
        self.caps.metrics()
    }

    /// This state with the span of the request it serves (capability calls become its
    /// children).
    pub fn with_trace(mut self, trace: Option<wisp_telemetry::SpanParent>) -> Self {
        self.trace = trace;
        self
    }

    /// The span of the request this instance serves, when it is traced.
    pub fn trace(&self) -> Option<&wisp_telemetry::SpanParent> {
        self.trace.as_ref()
    }

    /// A child span of the request's for a capability call, when the request is traced.
    pub fn span(&self, name: &str) -> Option<wisp_telemetry::Span> {
        self.trace.as_ref().map(|t| t.child(name))
    }

    /// A client span for one call to an outbound database or broker, when the request
    /// is traced: see [`service_span`].
    pub fn service_span(&self, system: &str, operation: &str) -> Option<wisp_telemetry::Span> {
        service_span(self.trace.as_ref(), system, operation)
    }

    /// This instance's state of type `S`, made by `init` (from the component's grants)
    /// the first time a capability asks for it. Dropped with the instance.
    pub fn extension<S: Any + Send>(
        &mut self,
        init: impl FnOnce(&ComponentCapabilities) -> S,
    ) -> &mut S {
        let type_id = TypeId::of::<S>();
        let index = match self.extensions.iter().position(|(id, _)| *id == type_id) {
            Some(index) => index,
            None => {
                self.extensions.push((type_id, Box::new(init(&self.caps))));
                self.extensions.len() - 1
            }
        };
        self.extensions[index]
            .1
            .downcast_mut()
            .expect("extensions are keyed by their type")
    }

    /// Bounds the host's own waits (connects, commands) by the instance's deadline.
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// `limit`, or less if the instance's deadline comes sooner.
    pub(crate) fn bounded(&self, limit: std::time::Duration) -> std::time::Duration {
        match self.deadline {
            Some(deadline) => {
                limit.min(deadline.saturating_duration_since(std::time::Instant::now()))
            }
            None => limit,
        }
    }

    /// Reserves a handle slot; `false` when the instance already holds
    /// [`MAX_OPEN_HANDLES`].
    fn reserve_handle(&mut self) -> bool {
        if self.open_handles >= MAX_OPEN_HANDLES {
            return false;
        }
        self.open_handles += 1;
        true
    }

    fn release_handle(&mut self) {
        self.open_handles = self.open_handles.saturating_sub(1);
    }
}

/// What the host functions borrow from the store data: the instance's capability
/// state and the resource table it shares with WASI.
pub struct CapabilitiesCtx<'a> {
    pub state: &'a mut InstanceState,
    pub table: &'a mut ResourceTable,
}

/// Implemented by the engine's store data to hand out [`CapabilitiesCtx`].
pub trait CapabilitiesView: Send {
    /// Borrows the instance's capability state and resource table.
    fn capabilities(&mut self) -> CapabilitiesCtx<'_>;
}

/// The [`HasData`] marker the generated bindings are linked with.
pub struct Capabilities;

impl HasData for Capabilities {
    type Data<'a> = CapabilitiesCtx<'a>;
}

/// The host getter every capability's bindings are linked with.
fn view<T: CapabilitiesView>(data: &mut T) -> CapabilitiesCtx<'_> {
    data.capabilities()
}

/// Links the interfaces of Wisp's default capabilities (every interface of
/// `wit/host.wit`) into `linker`. To link another set, use
/// [`CapabilitySet::add_to_linker`] or [`AppCapabilities::add_to_linker`].
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    CapabilitySet::<T>::default().add_to_linker(linker)
}

/// A client span (child of `trace`) for one call to an outbound service: named by the
/// operation (`GET`, `query`, `connect`, `publish`), with the semantic-convention
/// system and operation attributes (`db.*` for databases, `messaging.*` for MQTT).
/// A guest chooses some operation names (a Redis command): they are cut to 64 bytes.
pub fn service_span(
    trace: Option<&wisp_telemetry::SpanParent>,
    system: &str,
    operation: &str,
) -> Option<wisp_telemetry::Span> {
    let trace = trace?;
    let mut end = operation.len().min(64);
    while !operation.is_char_boundary(end) {
        end -= 1;
    }
    let operation = &operation[..end];
    let mut span = trace.client_child(operation);
    if system == "mqtt" {
        span.set("messaging.system", system);
        span.set("messaging.operation.name", operation);
    } else {
        span.set("db.system.name", system);
        span.set("db.operation.name", operation);
    }
    Some(span)
}

#[cfg(test)]
mod tests;

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

pub use runtime_config::{
    KeyValueStoreConfig, OutboundNetworkingConfig, RuntimeConfig, SqliteDatabaseConfig,
    VariablesProviderConfig,
};
pub use variables::expand_template;

use indexmap::IndexMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wisp_app::LockedApp;
use wisp_outbound::{AllowedHosts, BlockedNetworks, ServiceError, ServiceTarget, SocketPolicy};
use wisp_storage::{KvStore, SqliteDatabase};

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
}

/// Everything one app's components may reach, set up once when the app loads.
pub struct AppCapabilities {
    components: HashMap<String, Arc<ComponentCapabilities>>,
    blocked_networks: BlockedNetworks,
    variables: IndexMap<String, String>,
    summary: Vec<String>,
}

impl std::fmt::Debug for AppCapabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCapabilities")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// One component's view: only what its manifest grants.
pub struct ComponentCapabilities {
    id: Arc<str>,
    key_value_stores: HashMap<String, KvStore>,
    databases: HashMap<String, SqliteDatabase>,
    /// Component variables (`variables = { key = "{{ app_var }}" }`), expanded; an
    /// expansion that failed keeps its reason for the guest.
    variables: IndexMap<String, Result<String, String>>,
    allowed_outbound_hosts: AllowedHosts,
    /// The app's blocked networks, minus link-local ranges this component names.
    blocked_networks: BlockedNetworks,
    /// Raw TCP/UDP grants; `None` (the default) when no entry grants a socket.
    sockets: Option<Arc<SocketPolicy>>,
    /// The app's idle PostgreSQL and MySQL connections (shared by its components).
    rdbms: Arc<rdbms::RdbmsPools>,
}

impl AppCapabilities {
    /// Resolves variables, opens every store and database a component is granted, and
    /// checks that each granted label has a backend. Fails on the first problem with a
    /// message naming the component, label or variable.
    pub async fn build(
        locked: &LockedApp,
        runtime: &RuntimeConfig,
        paths: &AppPaths,
    ) -> Result<Self, HostError> {
        let mut summary = Vec::new();
        let providers = variables::Providers::new(runtime, paths)?;
        summary.push(format!("variables: {}", providers.describe()));
        let app_variables = variables::resolve_app_variables(locked, &providers)?;
        let blocked_networks = BlockedNetworks::parse(&runtime.outbound_networking.block_networks)
            .map_err(|e| HostError::BlockNetworks(e.to_string()))?;
        summary.push(format!("outbound networking: blocked {blocked_networks}"));

        let mut stores: HashMap<String, KvStore> = HashMap::new();
        let mut databases: HashMap<String, SqliteDatabase> = HashMap::new();
        let mut components = HashMap::new();
        let rdbms_pools = Arc::new(rdbms::RdbmsPools::default());
        for component in &locked.components {
            let mut granted_stores = HashMap::new();
            for label in &component.metadata.key_value_stores {
                if !stores.contains_key(label) {
                    let store = open_store(label, &component.id, runtime, paths).await?;
                    summary.push(format!("key-value store `{label}`: {}", store.describe()));
                    stores.insert(label.clone(), store);
                }
                granted_stores.insert(label.clone(), stores[label].clone());
            }
            let mut granted_databases = HashMap::new();
            for label in &component.metadata.databases {
                if !databases.contains_key(label) {
                    let database = open_database(label, &component.id, runtime, paths)?;
                    summary.push(format!(
                        "SQLite database `{label}`: {}",
                        database.describe()
                    ));
                    databases.insert(label.clone(), database);
                }
                granted_databases.insert(label.clone(), databases[label].clone());
            }
            let component_variables = component
                .config
                .iter()
                .map(|(key, template)| {
                    (
                        key.clone(),
                        expand_template(template, &app_variables).map_err(|e| {
                            format!("variable `{key}` of component `{}`: {e}", component.id)
                        }),
                    )
                })
                .collect();
            let allowed_outbound_hosts =
                allowed_hosts(&component.metadata.allowed_outbound_hosts, &app_variables).map_err(
                    |message| HostError::AllowedOutboundHosts {
                        component: component.id.clone(),
                        message,
                    },
                )?;
            let component_blocked = blocked_networks.for_component(&allowed_outbound_hosts);
            components.insert(
                component.id.clone(),
                Arc::new(ComponentCapabilities {
                    id: component.id.as_str().into(),
                    key_value_stores: granted_stores,
                    databases: granted_databases,
                    variables: component_variables,
                    sockets: SocketPolicy::new(&allowed_outbound_hosts, &component_blocked)
                        .map(Arc::new),
                    blocked_networks: component_blocked,
                    allowed_outbound_hosts,
                    rdbms: rdbms_pools.clone(),
                }),
            );
        }
        Ok(Self {
            components,
            blocked_networks,
            variables: app_variables,
            summary,
        })
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

impl ComponentCapabilities {
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
        }
        result
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

async fn open_store(
    label: &str,
    component: &str,
    runtime: &RuntimeConfig,
    paths: &AppPaths,
) -> Result<KvStore, HostError> {
    let backend_error = |e: wisp_storage::KvError| HostError::KeyValueBackend {
        label: label.to_owned(),
        message: e.to_string(),
    };
    match runtime.key_value_stores.get(label) {
        Some(KeyValueStoreConfig::Sqlite { path }) => {
            KvStore::sqlite(path, label).map_err(backend_error)
        }
        Some(KeyValueStoreConfig::Redis { url }) => {
            KvStore::redis(url).await.map_err(backend_error)
        }
        None if label == "default" => {
            KvStore::sqlite(&paths.state_dir.join("sqlite_key_value.db"), label)
                .map_err(backend_error)
        }
        None => Err(HostError::UnknownKeyValueStore {
            component: component.to_owned(),
            label: label.to_owned(),
        }),
    }
}

fn open_database(
    label: &str,
    component: &str,
    runtime: &RuntimeConfig,
    paths: &AppPaths,
) -> Result<SqliteDatabase, HostError> {
    let backend_error = |e: wisp_storage::SqliteError| HostError::Database {
        label: label.to_owned(),
        message: e.to_string(),
    };
    match runtime.sqlite_databases.get(label) {
        Some(SqliteDatabaseConfig::File { path: Some(path) }) => {
            SqliteDatabase::file(path).map_err(backend_error)
        }
        Some(SqliteDatabaseConfig::File { path: None }) => {
            SqliteDatabase::in_memory().map_err(backend_error)
        }
        None if label == "default" => {
            SqliteDatabase::file(&paths.state_dir.join("sqlite_db.db")).map_err(backend_error)
        }
        None => Err(HostError::UnknownDatabase {
            component: component.to_owned(),
            label: label.to_owned(),
        }),
    }
}

/// Per-instance capability state, kept in the engine's store data.
pub struct InstanceState {
    caps: Arc<ComponentCapabilities>,
    open_handles: usize,
    /// When the event this instance serves must be done; bounds host-side waits.
    deadline: Option<std::time::Instant>,
}

impl InstanceState {
    /// Fresh state for one instance of a component.
    pub fn new(caps: Arc<ComponentCapabilities>) -> Self {
        Self {
            caps,
            open_handles: 0,
            deadline: None,
        }
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

/// Links every interface of `wit/host.wit` into `linker`.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    bindings::Capabilities::add_to_linker::<T, Capabilities>(linker, |t| t.capabilities())
}

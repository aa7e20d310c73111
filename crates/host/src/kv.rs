//! Key-value: `fermyon:spin/key-value@2.0.0`, `spin:key-value@3.0.0` (WASI 0.3 async),
//! `wasi:keyvalue@0.2.0-draft2` (`store`, `atomics`, `batch`) and Spin 1.x's unversioned
//! `fermyon:spin/key-value` (stores as `u32` handles). All of them open
//! stores by label; a label the component's `key_value_stores` does not grant gets
//! `access-denied`. Backend failures become the `other` variant with the reason.

use crate::bindings::fermyon::spin::key_value as v2;
use crate::bindings::spin::key_value::key_value as v3;
use crate::bindings::wasi::keyvalue::{atomics, batch, store as wasi_store};
use crate::capability::{AppContext, Capability, Prepared, RuntimeConfigTable};
use crate::runtime_config::RawStore;
use crate::spin1_bindings::fermyon::spin::key_value as v1;
use crate::{AppPaths, Capabilities, CapabilitiesCtx, CapabilitiesView, HostError, RuntimeConfig};
use futures::future::BoxFuture;
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use wasmtime::component::{Accessor, FutureReader, Linker, Resource, StreamReader};
use wisp_storage::{KvError, KvStore};

/// The key-value capability: `[key_value_store.<label>]` tables, the stores each
/// component's `key_value_stores` names, and the three interfaces above.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyValue;

/// A key-value store's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// `type = "spin"`: an SQLite file (`path`, relative to the runtime config file)
    /// holding at most `max_size` bytes of keys and values (`max_size_mb`).
    Sqlite { path: PathBuf, max_size: u64 },
    /// `type = "redis"`: a Redis server (`url`).
    Redis { url: String },
}

#[derive(Deserialize)]
struct Tables {
    #[serde(default)]
    key_value_store: IndexMap<String, RawStore>,
}

/// A component's grant: the stores its `key_value_stores` names, opened.
struct Stores(HashMap<String, KvStore>);

impl KeyValue {
    /// The `[key_value_store.<label>]` tables of `config`, checked.
    pub fn stores(
        config: &RuntimeConfig,
    ) -> Result<IndexMap<String, KeyValueStoreConfig>, HostError> {
        let tables: Tables = config.section()?;
        let mut stores = IndexMap::new();
        for (label, store) in tables.key_value_store {
            let store = match store {
                RawStore::Spin { path, max_size_mb } => KeyValueStoreConfig::Sqlite {
                    path: config.path(path.ok_or_else(|| {
                        config.invalid(format!(
                            "[key_value_store.{label}] of type \"spin\" needs a `path` to its SQLite file"
                        ))
                    })?),
                    max_size: crate::runtime_config::max_size(
                        config,
                        &format!("key_value_store.{label}"),
                        max_size_mb,
                        wisp_storage::kv::DEFAULT_STORE_QUOTA,
                    )?,
                },
                RawStore::Redis { url } => {
                    if !["redis://", "rediss://", "unix://"]
                        .iter()
                        .any(|scheme| url.starts_with(scheme))
                    {
                        return Err(config.invalid(format!(
                            "[key_value_store.{label}] url must start with redis://, rediss:// (TLS) or unix://"
                        )));
                    }
                    KeyValueStoreConfig::Redis { url }
                }
            };
            stores.insert(label, store);
        }
        Ok(stores)
    }
}

impl KeyValue {
    /// Writes `pairs` into the store `label` as the app's components would open it, before
    /// the app serves (`wisp up --key-value`, as `spin up --key-value`).
    pub async fn seed(
        config: &RuntimeConfig,
        paths: &AppPaths,
        label: &str,
        pairs: &[(String, String)],
    ) -> Result<(), HostError> {
        let configured = Self::stores(config)?;
        let store = open_store(label, "wisp up --key-value", configured.get(label), paths).await?;
        for (key, value) in pairs {
            store
                .set(key, value.as_bytes().to_vec())
                .await
                .map_err(|e| HostError::KeyValueBackend {
                    label: label.to_owned(),
                    message: format!("cannot set `{key}`: {e}"),
                })?;
        }
        Ok(())
    }
}

impl Capability for KeyValue {
    fn name(&self) -> &'static str {
        "key-value"
    }

    fn runtime_config_tables(&self) -> &'static [RuntimeConfigTable] {
        &[RuntimeConfigTable {
            key: "key_value_store",
            syntax: "[key_value_store.<label>]",
        }]
    }

    fn check_runtime_config(&self, config: &RuntimeConfig) -> Result<(), HostError> {
        Self::stores(config).map(drop)
    }

    /// Opens each store some component is granted, once, and checks that every granted
    /// label has a backend.
    fn prepare<'a>(
        &'a self,
        app: &'a AppContext<'a>,
    ) -> BoxFuture<'a, Result<Prepared, HostError>> {
        Box::pin(async move {
            let configured = Self::stores(app.runtime_config)?;
            let mut prepared = Prepared::default();
            let mut stores: HashMap<String, KvStore> = HashMap::new();
            for component in &app.locked.components {
                let mut granted = HashMap::new();
                for label in &component.metadata.key_value_stores {
                    if !stores.contains_key(label) {
                        let store =
                            open_store(label, &component.id, configured.get(label), app.paths)
                                .await?;
                        prepared
                            .summary(format!("key-value store `{label}`: {}", store.describe()));
                        stores.insert(label.clone(), store);
                    }
                    granted.insert(label.clone(), stores[label].clone());
                }
                if !granted.is_empty() {
                    prepared.grant(&component.id, Stores(granted));
                }
            }
            Ok(prepared)
        })
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        v2::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v3::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v1::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        wasi_store::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        atomics::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        batch::add_to_linker::<T, Capabilities>(linker, crate::view)
    }
}

async fn open_store(
    label: &str,
    component: &str,
    config: Option<&KeyValueStoreConfig>,
    paths: &AppPaths,
) -> Result<KvStore, HostError> {
    let backend_error = |e: wisp_storage::KvError| HostError::KeyValueBackend {
        label: label.to_owned(),
        message: e.to_string(),
    };
    match config {
        Some(KeyValueStoreConfig::Sqlite { path, max_size }) => {
            KvStore::sqlite_with_quota(path, label, *max_size).map_err(backend_error)
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

/// An open store (a Spin `store` or a WASI `bucket`).
pub struct OpenStore {
    store: KvStore,
}

/// A WASI compare-and-swap handle: the key and the value read when it was created.
pub struct Cas {
    store: KvStore,
    key: String,
    current: Option<Vec<u8>>,
}

enum OpenError {
    AccessDenied,
    TableFull,
}

impl CapabilitiesCtx<'_> {
    fn open_store(
        &mut self,
        label: &str,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, OpenError>> {
        let granted = self.state.caps.grant::<Stores>();
        let Some(store) = granted.and_then(|stores| stores.0.get(label)).cloned() else {
            tracing::debug!(component = %self.state.caps.id, "key-value store `{label}` is not granted");
            return Ok(Err(OpenError::AccessDenied));
        };
        if !self.state.reserve_handle() {
            return Ok(Err(OpenError::TableFull));
        }
        Ok(Ok(self.table.push(OpenStore { store })?))
    }

    /// The store behind `handle`, for operation `op` (counted in the metrics), with the
    /// operation's span when the request is traced (it ends when dropped).
    fn store_for(
        &self,
        handle: &Resource<OpenStore>,
        op: &'static str,
    ) -> wasmtime::Result<(KvStore, Option<wisp_telemetry::Span>)> {
        let store = self.table.get(handle)?.store.clone();
        self.state.metrics().kv_operation(op);
        let span = self.state.span("key_value").map(|mut span| {
            span.set("db.operation.name", op);
            span
        });
        Ok((store, span))
    }

    fn close_store(&mut self, handle: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.release_handle();
        Ok(())
    }
}

fn message(error: KvError) -> String {
    error.to_string()
}

// ---- fermyon:spin/key-value@2.0.0 -------------------------------------------------

fn v2_open_error(error: OpenError) -> v2::Error {
    match error {
        OpenError::AccessDenied => v2::Error::AccessDenied,
        OpenError::TableFull => v2::Error::StoreTableFull,
    }
}

impl v2::Host for CapabilitiesCtx<'_> {}

impl v2::HostStore for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, v2::Error>> {
        Ok(self.open_store(&label)?.map_err(v2_open_error))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v2::Error>> {
        let (store, _span) = self.store_for(&store, "get")?;
        Ok(store
            .get(&key)
            .await
            .map_err(|e| v2::Error::Other(message(e))))
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let (store, _span) = self.store_for(&store, "set")?;
        Ok(store
            .set(&key, value)
            .await
            .map_err(|e| v2::Error::Other(message(e))))
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let (store, _span) = self.store_for(&store, "delete")?;
        Ok(store
            .delete(&key)
            .await
            .map_err(|e| v2::Error::Other(message(e))))
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, v2::Error>> {
        let (store, _span) = self.store_for(&store, "exists")?;
        Ok(store
            .exists(&key)
            .await
            .map_err(|e| v2::Error::Other(message(e))))
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, v2::Error>> {
        let (store, _span) = self.store_for(&store, "get_keys")?;
        Ok(store
            .get_keys()
            .await
            .map_err(|e| v2::Error::Other(message(e))))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close_store(store)
    }
}

// ---- fermyon:spin/key-value (Spin 1.x) ---------------------------------------------

impl CapabilitiesCtx<'_> {
    /// The store behind a Spin 1.x handle: the same table entry a resource handle names,
    /// checked to be a store (a number naming nothing, or another kind of handle, is
    /// `invalid-store`, not a trap).
    fn v1_store(
        &self,
        handle: v1::Store,
        op: &'static str,
    ) -> wasmtime::Result<Result<(KvStore, Option<wisp_telemetry::Span>), v1::Error>> {
        // `store_for` fails only when the table has no store under that number.
        Ok(self
            .store_for(&Resource::new_borrow(handle), op)
            .map_err(|_| v1::Error::InvalidStore))
    }
}

fn v1_error(error: KvError) -> v1::Error {
    v1::Error::Io(message(error))
}

impl v1::Host for CapabilitiesCtx<'_> {
    async fn open(&mut self, name: String) -> wasmtime::Result<Result<v1::Store, v1::Error>> {
        Ok(match self.open_store(&name)? {
            Ok(handle) => Ok(handle.rep()),
            Err(OpenError::AccessDenied) => Err(v1::Error::AccessDenied),
            Err(OpenError::TableFull) => Err(v1::Error::StoreTableFull),
        })
    }

    async fn get(
        &mut self,
        store: v1::Store,
        key: String,
    ) -> wasmtime::Result<Result<Vec<u8>, v1::Error>> {
        let (store, _span) = match self.v1_store(store, "get")? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match store.get(&key).await {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(v1::Error::NoSuchKey),
            Err(e) => Err(v1_error(e)),
        })
    }

    async fn set(
        &mut self,
        store: v1::Store,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v1::Error>> {
        let (store, _span) = match self.v1_store(store, "set")? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.set(&key, value).await.map_err(v1_error))
    }

    async fn delete(
        &mut self,
        store: v1::Store,
        key: String,
    ) -> wasmtime::Result<Result<(), v1::Error>> {
        let (store, _span) = match self.v1_store(store, "delete")? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.delete(&key).await.map_err(v1_error))
    }

    async fn exists(
        &mut self,
        store: v1::Store,
        key: String,
    ) -> wasmtime::Result<Result<bool, v1::Error>> {
        let (store, _span) = match self.v1_store(store, "exists")? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.exists(&key).await.map_err(v1_error))
    }

    async fn get_keys(
        &mut self,
        store: v1::Store,
    ) -> wasmtime::Result<Result<Vec<String>, v1::Error>> {
        let (store, _span) = match self.v1_store(store, "get_keys")? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.get_keys().await.map_err(v1_error))
    }

    async fn close(&mut self, store: v1::Store) -> wasmtime::Result<()> {
        let handle = Resource::<OpenStore>::new_own(store);
        // Closing a handle that names no store does nothing, as in Spin.
        if self.table.get(&handle).is_ok() {
            self.close_store(handle)?;
        }
        Ok(())
    }
}

// ---- spin:key-value@3.0.0 (async) --------------------------------------------------

fn v3_open_error(error: OpenError) -> v3::Error {
    match error {
        OpenError::AccessDenied => v3::Error::AccessDenied,
        OpenError::TableFull => v3::Error::StoreTableFull,
    }
}

fn v3_store<T>(
    accessor: &Accessor<T, Capabilities>,
    handle: &Resource<OpenStore>,
    op: &'static str,
) -> wasmtime::Result<(KvStore, Option<wisp_telemetry::Span>)> {
    accessor.with(|mut access| access.get().store_for(handle, op))
}

impl v3::Host for CapabilitiesCtx<'_> {}

impl v3::HostStore for CapabilitiesCtx<'_> {
    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close_store(store)
    }
}

impl<T> v3::HostStoreWithStore<T> for Capabilities {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, v3::Error>> {
        Ok(accessor
            .with(|mut access| access.get().open_store(&label))?
            .map_err(v3_open_error))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v3::Error>> {
        let (store, _span) = v3_store(accessor, &store, "get")?;
        Ok(store
            .get(&key)
            .await
            .map_err(|e| v3::Error::Other(message(e))))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (store, _span) = v3_store(accessor, &store, "set")?;
        Ok(store
            .set(&key, value)
            .await
            .map_err(|e| v3::Error::Other(message(e))))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (store, _span) = v3_store(accessor, &store, "delete")?;
        Ok(store
            .delete(&key)
            .await
            .map_err(|e| v3::Error::Other(message(e))))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, v3::Error>> {
        let (store, _span) = v3_store(accessor, &store, "exists")?;
        Ok(store
            .exists(&key)
            .await
            .map_err(|e| v3::Error::Other(message(e))))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), v3::Error>>)> {
        let (store, _span) = v3_store(accessor, &store, "get_keys")?;
        let (keys, result) = match store.get_keys().await {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(v3::Error::Other(message(e)))),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let result =
                FutureReader::new(&mut access, async move { Ok::<_, wasmtime::Error>(result) })?;
            Ok((keys, result))
        })
    }
}

// ---- wasi:keyvalue@0.2.0-draft2 ----------------------------------------------------

fn wasi_error(error: KvError) -> wasi_store::Error {
    wasi_store::Error::Other(message(error))
}

fn table_full() -> wasi_store::Error {
    wasi_store::Error::Other(format!(
        "this instance already holds {} open stores and compare-and-swap handles; drop some first",
        crate::MAX_OPEN_HANDLES
    ))
}

impl wasi_store::Host for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, wasi_store::Error>> {
        Ok(self.open_store(&identifier)?.map_err(|e| match e {
            OpenError::AccessDenied => wasi_store::Error::AccessDenied,
            OpenError::TableFull => table_full(),
        }))
    }
}

impl wasi_store::HostBucket for CapabilitiesCtx<'_> {
    async fn get(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "get")?;
        Ok(store.get(&key).await.map_err(wasi_error))
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "set")?;
        Ok(store.set(&key, value).await.map_err(wasi_error))
    }

    async fn delete(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "delete")?;
        Ok(store.delete(&key).await.map_err(wasi_error))
    }

    async fn exists(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "exists")?;
        Ok(store.exists(&key).await.map_err(wasi_error))
    }

    /// Returns every key in one page (no cursor), as Spin does.
    async fn list_keys(
        &mut self,
        bucket: Resource<OpenStore>,
        _cursor: Option<String>,
    ) -> wasmtime::Result<Result<wasi_store::KeyResponse, wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "get_keys")?;
        Ok(store
            .get_keys()
            .await
            .map(|keys| wasi_store::KeyResponse { keys, cursor: None })
            .map_err(wasi_error))
    }

    async fn drop(&mut self, bucket: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close_store(bucket)
    }
}

impl atomics::Host for CapabilitiesCtx<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "increment")?;
        Ok(store.increment(&key, delta).await.map_err(wasi_error))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas {
            store,
            key,
            current,
        } = self.table.delete(cas)?;
        match store
            .compare_and_swap(&key, current.as_deref(), value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Hand back a fresh handle holding the value that won, so the guest can
                // retry from it.
                let current = match store.get(&key).await {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(wasi_error(e)))),
                };
                if !self.state.reserve_handle() {
                    return Ok(Err(atomics::CasError::StoreError(table_full())));
                }
                let retry = self.table.push(Cas {
                    store,
                    key,
                    current,
                })?;
                Ok(Err(atomics::CasError::CasFailed(retry)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_error(e)))),
        }
    }
}

impl atomics::HostCas for CapabilitiesCtx<'_> {
    async fn new(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "cas")?;
        let current = match store.get(&key).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(wasi_error(e))),
        };
        // Each handle holds a copy of a value, so it counts against the instance's
        // handle limit like an open store.
        if !self.state.reserve_handle() {
            return Ok(Err(table_full()));
        }
        Ok(Ok(self.table.push(Cas {
            store,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_store::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        self.state.release_handle();
        Ok(())
    }
}

impl batch::Host for CapabilitiesCtx<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "get_many")?;
        Ok(store.get_many(keys).await.map_err(wasi_error))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "set_many")?;
        Ok(store.set_many(key_values).await.map_err(wasi_error))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        let (store, _span) = self.store_for(&bucket, "delete_many")?;
        Ok(store.delete_many(keys).await.map_err(wasi_error))
    }
}

//! The capability seam: the [`Capability`] trait, the [`CapabilitySet`] registry, and
//! the types a capability prepares an app with. Wisp's own capabilities are registered
//! in [`register_defaults`].

use crate::{AppPaths, CapabilitiesView, HostError, RuntimeConfig};
use futures::future::BoxFuture;
use indexmap::IndexMap;
use std::any::{Any, TypeId};
use std::sync::Arc;
use wasmtime::component::Linker;
use wisp_app::LockedApp;

/// Registers Wisp's capabilities, in the order they are prepared, summarised and linked.
/// Adding a capability is one line here.
fn register_defaults(set: &mut impl Register) {
    set.register(crate::variables::Variables);
    set.register(crate::kv::KeyValue);
    set.register(crate::sqlite::Sqlite);
    set.register(crate::outbound_redis::OutboundRedis);
    set.register(crate::outbound_mqtt::OutboundMqtt);
    set.register(crate::postgres::Postgres);
    set.register(crate::mysql::Mysql);
    set.register(crate::unsupported::Llm);
}

/// One host capability. Through its one registration in a [`CapabilitySet`] it
/// contributes:
///
/// 1. its `runtime-config.toml` tables ([`Capability::runtime_config_tables`], parsed and
///    checked by [`Capability::check_runtime_config`] with [`RuntimeConfig::section`]);
/// 2. its app-level preparation ([`Capability::prepare`]): checking the app's use of it
///    (a granted label must be configured), opening backends, and giving each component
///    a grant, a value of the capability's own type that its host functions read back
///    with [`ComponentCapabilities::grant`];
/// 3. its per-instance state, if it keeps any: made on first use with
///    [`InstanceState::extension`], so it needs no registration;
/// 4. its linker setup ([`Capability::add_to_linker`]): every version of its WIT
///    interfaces.
///
/// [`CapabilitySet::default`] registers every capability Wisp has; an embedder can leave
/// one out ([`CapabilitySet::without`]) or add its own ([`CapabilitySet::with`]). A
/// left-out capability's interfaces are not linked, so a component importing them is
/// refused when its app loads, and its runtime-config tables are unknown keys.
///
/// What every capability shares stays outside the seam: variable providers (app
/// variables also feed `allowed_outbound_hosts` and trigger settings), the outbound
/// networking policy (HTTP, Redis, MQTT, PostgreSQL, MySQL and sockets all check it), and
/// the per-instance handle limit.
///
/// Implementations are usually unit structs; what they open lives in the grants.
///
/// [`ComponentCapabilities::grant`]: crate::ComponentCapabilities::grant
/// [`InstanceState::extension`]: crate::InstanceState::extension
pub trait Capability: Send + Sync + 'static {
    /// A short name (`key-value`), for [`CapabilitySet::without`] and messages.
    fn name(&self) -> &'static str;

    /// The top-level `runtime-config.toml` keys this capability reads; any other key no
    /// capability (and no core section) claims is an error.
    fn runtime_config_tables(&self) -> &'static [RuntimeConfigTable] {
        &[]
    }

    /// Parses and checks this capability's tables of `config` (see
    /// [`RuntimeConfig::section`]), so a mistake is reported when the file is read.
    fn check_runtime_config(&self, config: &RuntimeConfig) -> Result<(), HostError> {
        let _ = config;
        Ok(())
    }

    /// Checks the app's use of this capability, opens what it needs and returns each
    /// component's grant. Runs once per app load, before any socket is bound; fails on
    /// the first problem with an error naming the component and label.
    fn prepare<'a>(
        &'a self,
        app: &'a AppContext<'a>,
    ) -> BoxFuture<'a, Result<Prepared, HostError>> {
        let _ = app;
        Box::pin(std::future::ready(Ok(Prepared::default())))
    }

    /// Links every version of this capability's interfaces into `linker`.
    fn add_to_linker<T: CapabilitiesView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()>
    where
        Self: Sized;
}

/// A top-level `runtime-config.toml` key a capability owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeConfigTable {
    /// The key (`key_value_store`).
    pub key: &'static str,
    /// How it is written, for messages listing the tables Wisp reads
    /// (`[key_value_store.<label>]`).
    pub syntax: &'static str,
}

/// What a capability sees of the app while preparing it.
#[non_exhaustive]
pub struct AppContext<'a> {
    /// The app.
    pub locked: &'a LockedApp,
    /// The runtime config, already checked against the capability set.
    pub runtime_config: &'a RuntimeConfig,
    /// The app's state and manifest directories.
    pub paths: &'a AppPaths,
    /// The app's `[variables]`, resolved from the providers.
    pub variables: &'a IndexMap<String, String>,
}

/// What a capability prepared for an app: each component's grant and the start-up
/// summary lines (one per backend; never a secret).
#[derive(Default)]
pub struct Prepared {
    pub(crate) grants: Vec<(String, TypeId, Grant)>,
    pub(crate) summary: Vec<String>,
}

/// A grant, type-erased; the type is its key in [`Grants`].
type Grant = Box<dyn Any + Send + Sync>;

impl Prepared {
    /// Grants `grant` to `component`; its host functions read it back with
    /// [`ComponentCapabilities::grant::<G>`](crate::ComponentCapabilities::grant). A
    /// component has at most one grant of each type: a second replaces the first.
    pub fn grant<G: Any + Send + Sync>(&mut self, component: &str, grant: G) {
        self.grants
            .push((component.to_owned(), TypeId::of::<G>(), Box::new(grant)));
    }

    /// Adds a line to the start-up summary.
    pub fn summary(&mut self, line: impl Into<String>) {
        self.summary.push(line.into());
    }
}

/// One component's grants, one per type. A handful at most, so a vector beats a map.
#[derive(Default)]
pub(crate) struct Grants(Vec<(TypeId, Grant)>);

impl Grants {
    pub(crate) fn insert(&mut self, type_id: TypeId, grant: Grant) {
        match self.0.iter_mut().find(|(id, _)| *id == type_id) {
            Some(slot) => slot.1 = grant,
            None => self.0.push((type_id, grant)),
        }
    }

    pub(crate) fn get<G: Any>(&self) -> Option<&G> {
        let type_id = TypeId::of::<G>();
        self.0
            .iter()
            .find(|(id, _)| *id == type_id)
            .and_then(|(_, grant)| grant.downcast_ref())
    }
}

/// Links one capability's interfaces into a `Linker<T>`.
type LinkFn<T> = fn(&mut Linker<T>) -> wasmtime::Result<()>;

/// The capabilities a host provides, for store data of type `T`: each one's object-safe
/// part (config, preparation) paired with its linker function for `T`.
/// [`CapabilitySet::default`] is every capability Wisp has.
pub struct CapabilitySet<T: 'static> {
    capabilities: Vec<Arc<dyn Capability>>,
    /// `linkers[i]` links `capabilities[i]`.
    linkers: Vec<LinkFn<T>>,
    /// What `linkers` link, by capability type.
    key: LinkerKey,
}

/// Which capabilities' interfaces a linker holds, by their types, in linking order. A
/// capability's linking is a function of its type alone, so two apps whose capabilities
/// have equal keys get identical linkers (for one store type): an embedder builds that
/// linker once and shares it ([`AppCapabilities::linker_key`](crate::AppCapabilities::linker_key)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LinkerKey(Vec<TypeId>);

impl LinkerKey {
    /// The key of Wisp's default capabilities ([`CapabilitySet::default`]).
    pub fn defaults() -> Self {
        let mut key = Self::default();
        register_defaults(&mut key);
        key
    }
}

impl<T: CapabilitiesView + 'static> CapabilitySet<T> {
    /// A set with no capabilities: components can import only what the engine links
    /// itself (WASI).
    pub fn new() -> Self {
        Self {
            capabilities: Vec::new(),
            linkers: Vec::new(),
            key: LinkerKey::default(),
        }
    }

    /// Adds `capability`, replacing one of the same name (so an embedder can swap in its
    /// own implementation of an interface).
    pub fn with<C: Capability>(mut self, capability: C) -> Self {
        self.register(capability);
        self
    }

    /// Leaves out the capability named `name` (`key-value`, `sqlite`, ...): its
    /// interfaces are not linked and its runtime-config tables become unknown keys.
    /// Naming none is not an error.
    pub fn without(mut self, name: &str) -> Self {
        if let Some(index) = self.capabilities.iter().position(|c| c.name() == name) {
            self.capabilities.remove(index);
            self.linkers.remove(index);
            self.key.0.remove(index);
        }
        self
    }

    /// The names of the capabilities in the set, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.capabilities.iter().map(|c| c.name())
    }

    /// Links every capability's interfaces into `linker`.
    pub fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        self.linkers.iter().try_for_each(|link| link(linker))
    }

    /// Which capabilities [`CapabilitySet::add_to_linker`] links.
    pub fn linker_key(&self) -> &LinkerKey {
        &self.key
    }

    pub(crate) fn capabilities(&self) -> &[Arc<dyn Capability>] {
        &self.capabilities
    }
}

impl<T: CapabilitiesView + 'static> Default for CapabilitySet<T> {
    fn default() -> Self {
        let mut set = Self::new();
        register_defaults(&mut set);
        set
    }
}

impl<T: 'static> Clone for CapabilitySet<T> {
    fn clone(&self) -> Self {
        Self {
            capabilities: self.capabilities.clone(),
            linkers: self.linkers.clone(),
            key: self.key.clone(),
        }
    }
}

impl<T: 'static> std::fmt::Debug for CapabilitySet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.capabilities.iter().map(|c| c.name()))
            .finish()
    }
}

/// Where [`register_defaults`] puts capabilities: a [`CapabilitySet`] for some store
/// type, or the plain list that reading a runtime config with the default set needs
/// (it has no store type to link for).
trait Register {
    fn register<C: Capability>(&mut self, capability: C);
}

impl<T: CapabilitiesView + 'static> Register for CapabilitySet<T> {
    fn register<C: Capability>(&mut self, capability: C) {
        let link: LinkFn<T> = C::add_to_linker::<T>;
        match self
            .capabilities
            .iter()
            .position(|c| c.name() == capability.name())
        {
            Some(index) => {
                self.capabilities[index] = Arc::new(capability);
                self.linkers[index] = link;
                self.key.0[index] = TypeId::of::<C>();
            }
            None => {
                self.capabilities.push(Arc::new(capability));
                self.linkers.push(link);
                self.key.0.push(TypeId::of::<C>());
            }
        }
    }
}

impl Register for LinkerKey {
    fn register<C: Capability>(&mut self, _: C) {
        self.0.push(TypeId::of::<C>());
    }
}

impl Register for Vec<Arc<dyn Capability>> {
    fn register<C: Capability>(&mut self, capability: C) {
        self.push(Arc::new(capability));
    }
}

/// Wisp's capabilities without their linkers: what [`RuntimeConfig::from_file`] and
/// [`AppCapabilities::build`](crate::AppCapabilities::build) use.
///
/// [`RuntimeConfig::from_file`]: crate::RuntimeConfig::from_file
pub(crate) fn default_capabilities() -> Vec<Arc<dyn Capability>> {
    let mut list = Vec::new();
    register_defaults(&mut list);
    list
}

//! The runtime: one composition root for every host that runs apps.
//!
//! `wisp up` and `wisp watch`, the multi-app node and the containerd shim all run apps the
//! same way, through this crate:
//!
//! ```text
//! LockedApp + AppSettings ─ Runtime::load ─▶ Generation ─ RunningApp::start ─▶ RunningApp
//!   (capabilities, compiled components,        │              (HTTP served, event
//!    every trigger built and checked)          │               triggers running)
//!                                              └─ summary      reload(Generation), shutdown()
//! ```
//!
//! A [`Runtime`] holds the process's engine, the trigger types it runs (HTTP, Redis,
//! cron by default; see [`Runtime::default_trigger_types`]) and the host capabilities it
//! provides (all of Wisp's by default; see [`Runtime::with_capabilities`]).
//! [`Runtime::load`] turns a LockedApp into a [`Generation`]: the app's capabilities (stores, databases, variables,
//! grants), its components compiled and pre-linked, and every trigger built. A
//! [`RunningApp`] runs one generation: its HTTP trigger behind a [`CurrentTrigger`] (served
//! on a listener the embedder gives, or routed to by the embedder itself), its event
//! triggers until shutdown; [`RunningApp::reload`] swaps in a new generation without
//! dropping a request, and [`RunningApp::shutdown`] stops it within the grace period.

use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wisp_app::LockedApp;
use wisp_engine::{EngineError, Host, LoadedApp, WispEngine};

pub use wisp_engine::{AppLimits, GuestOutput};
use wisp_host::{AppCapabilities, AppPaths, CapabilitySet, HostError, RuntimeConfig};
use wisp_trigger::{Trigger, TriggerContext, TriggerError, TriggerType};
use wisp_trigger_http::{CurrentTrigger, HttpTrigger, HttpTriggerType, ServerConfig};

pub use wisp_trigger_cron::CronTriggerType;
pub use wisp_trigger_redis::RedisTriggerType;

/// Why an app could not be loaded. Each names the step; the cause follows in the chain.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The app uses a trigger type this runtime does not run.
    #[error(
        "trigger `{trigger}` has type `{trigger_type}`, which this runtime does not run (it runs {known})"
    )]
    UnknownTriggerType {
        /// Trigger id.
        trigger: String,
        /// Its type.
        trigger_type: String,
        /// The types this runtime runs.
        known: String,
    },
    /// Stores, databases, variables or grants could not be set up.
    #[error("cannot set up the app's stores, databases and variables")]
    Capabilities(#[source] HostError),
    /// A component could not be read, compiled or linked.
    #[error("cannot load the app")]
    Load(#[source] EngineError),
    /// A trigger could not be built (bad configuration, a component without the export
    /// it needs, …).
    #[error("cannot set up the {trigger_type} triggers")]
    Trigger {
        /// The trigger type.
        trigger_type: &'static str,
        /// What is wrong.
        #[source]
        source: TriggerError,
    },
}

/// Where an app keeps its state and which backends serve its capabilities.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// `runtime-config.toml` (stores, databases, variable providers, networking).
    pub runtime_config: RuntimeConfig,
    /// The state directory and the app's own directory.
    pub paths: AppPaths,
    /// The app's own memory cap, deadline and instance cap, where they differ from the
    /// engine's.
    pub limits: AppLimits,
}

/// The process's engine, the trigger types it runs and the capabilities it provides;
/// loads apps.
#[derive(Clone)]
pub struct Runtime {
    engine: WispEngine,
    trigger_types: Vec<Arc<dyn TriggerType>>,
    capabilities: CapabilitySet<Host>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("engine", &self.engine)
            .field("trigger_types", &self.trigger_type_names())
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl Runtime {
    /// A runtime with the default trigger types (HTTP with its default body limit).
    pub fn new(engine: WispEngine) -> Self {
        Self::with_trigger_types(
            engine,
            Self::default_trigger_types(HttpTriggerType::default()),
        )
    }

    /// A runtime running exactly `trigger_types` (an embedder can leave some out).
    pub fn with_trigger_types(
        engine: WispEngine,
        trigger_types: Vec<Arc<dyn TriggerType>>,
    ) -> Self {
        Self {
            engine,
            trigger_types,
            capabilities: CapabilitySet::default(),
        }
    }

    /// This runtime providing exactly `capabilities` to the apps it loads (an embedder
    /// can leave some out: a component importing one is refused when its app loads, and
    /// the capability's runtime-config tables are unknown keys).
    pub fn with_capabilities(mut self, capabilities: CapabilitySet<Host>) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Every trigger type Wisp has: one line per type is all it takes to add one.
    pub fn default_trigger_types(http: HttpTriggerType) -> Vec<Arc<dyn TriggerType>> {
        vec![
            Arc::new(http),
            Arc::new(RedisTriggerType),
            Arc::new(CronTriggerType),
        ]
    }

    /// The engine.
    pub fn engine(&self) -> &WispEngine {
        &self.engine
    }

    /// Drops the metric series of the app's components that `generation` no longer has:
    /// call it once `generation` serves in place of an older version of the same app.
    pub fn forget_removed_components(&self, generation: &Generation) {
        let app = generation.app();
        let locked = app.locked();
        // The first loaded one: a component used only as middleware is not loaded.
        let Some(first) = locked.components.iter().find_map(|c| app.component(&c.id)) else {
            return;
        };
        self.engine.metrics().retain_components(
            first.app_name(),
            locked.components.iter().map(|c| c.id.as_str()),
        );
    }

    /// The trigger type named `name`, if this runtime runs it.
    pub fn trigger_type(&self, name: &str) -> Option<&Arc<dyn TriggerType>> {
        self.trigger_types.iter().find(|t| t.name() == name)
    }

    fn trigger_type_names(&self) -> String {
        self.trigger_types
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Loads `locked`: checks its trigger types, sets up its capabilities, compiles (or
    /// takes from the cache) and links its components, and builds its triggers. Nothing
    /// runs yet. Compiling can take seconds; everything else is quick.
    pub async fn load(
        &self,
        locked: LockedApp,
        settings: &AppSettings,
    ) -> Result<Arc<Generation>, RuntimeError> {
        if let Some(unknown) = locked
            .triggers
            .iter()
            .find(|t| self.trigger_type(&t.trigger_type).is_none())
        {
            return Err(RuntimeError::UnknownTriggerType {
                trigger: unknown.id.clone(),
                trigger_type: unknown.trigger_type.clone(),
                known: self.trigger_type_names(),
            });
        }
        let capabilities = AppCapabilities::build_with(
            &self.capabilities,
            &locked,
            &settings.runtime_config,
            &settings.paths,
        )
        .await
        .map_err(RuntimeError::Capabilities)?;
        let app = LoadedApp::load_with_limits(
            &self.engine,
            locked,
            &settings.paths.files_dir(),
            &capabilities,
            &settings.limits,
        )
        .map_err(RuntimeError::Load)?;
        let app = Arc::new(app);
        let mut triggers = Vec::new();
        let mut http = None;
        for trigger_type in &self.trigger_types {
            let of_type: Vec<_> = app.locked().triggers_of_type(trigger_type.name()).collect();
            if of_type.is_empty() {
                continue;
            }
            let context = TriggerContext {
                app: &app,
                triggers: of_type,
                expand: &|text: &str| capabilities.expand(text),
            };
            let trigger = trigger_type
                .build(&context)
                .map_err(|source| RuntimeError::Trigger {
                    trigger_type: trigger_type.name(),
                    source,
                })?;
            if let Ok(found) = trigger.clone().as_any().downcast::<HttpTrigger>() {
                http = Some(found);
            }
            triggers.push((trigger_type.name(), trigger));
        }
        Ok(Arc::new(Generation {
            app,
            capabilities,
            triggers,
            http,
        }))
    }
}

/// One loaded version of an app: capabilities, compiled components and built triggers.
/// A reload makes a new one; requests in flight keep the one they started on.
pub struct Generation {
    app: Arc<LoadedApp>,
    capabilities: AppCapabilities,
    triggers: Vec<(&'static str, Arc<dyn Trigger>)>,
    http: Option<Arc<HttpTrigger>>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("app", &self.app)
            .field(
                "triggers",
                &self
                    .triggers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Generation {
    /// The loaded app (its LockedApp and components).
    pub fn app(&self) -> &Arc<LoadedApp> {
        &self.app
    }

    /// What the app's components may reach, with the start-up summary lines.
    pub fn capabilities(&self) -> &AppCapabilities {
        &self.capabilities
    }

    /// The HTTP trigger, if the app has HTTP routes.
    pub fn http(&self) -> Option<&Arc<HttpTrigger>> {
        self.http.as_ref()
    }

    /// Every built trigger with its type, in registration order.
    pub fn triggers(&self) -> impl Iterator<Item = (&'static str, &Arc<dyn Trigger>)> {
        self.triggers.iter().map(|(name, trigger)| (*name, trigger))
    }

    /// Whether the app has triggers that run on their own (everything but HTTP).
    pub fn has_event_triggers(&self) -> bool {
        self.triggers.iter().any(|(name, _)| *name != "http")
    }
}

/// A generation's event triggers, running until told to stop.
struct EventTriggers {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl EventTriggers {
    fn start(generation: &Arc<Generation>, grace: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let runs: Vec<_> = generation
            .triggers
            .iter()
            .filter(|(name, _)| *name != "http")
            .map(|(_, trigger)| trigger.clone().run(until(stopped.clone()).boxed(), grace))
            .collect();
        let task = tokio::spawn(async move {
            futures::future::join_all(runs).await;
        });
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Resolves when `stopped` turns true (or its sender is gone).
pub async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// A running app: its HTTP trigger (served on the listener given to
/// [`RunningApp::start`], if any) and its event triggers.
pub struct RunningApp {
    generation: Arc<Generation>,
    current: Option<Arc<CurrentTrigger>>,
    events: EventTriggers,
    server: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    grace: Duration,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("generation", &self.generation)
            .field("serving", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl RunningApp {
    /// Starts `generation`: its event triggers run, and its HTTP trigger is served on
    /// `listener` with `server`'s front-door limits (an embedder that routes requests
    /// itself passes no listener and takes [`RunningApp::http`]). `server.shutdown_grace`
    /// is also the event triggers' grace period.
    pub fn start(
        generation: Arc<Generation>,
        listener: Option<tokio::net::TcpListener>,
        server: ServerConfig,
    ) -> Self {
        let grace = server.shutdown_grace;
        let current = generation.http.clone().map(CurrentTrigger::new);
        let server = match (listener, &current) {
            (Some(listener), Some(current)) => {
                let (stop, stopped) = watch::channel(false);
                let task = tokio::spawn(wisp_trigger_http::serve_current(
                    current.clone(),
                    listener,
                    server,
                    until(stopped),
                ));
                Some((stop, task))
            }
            _ => None,
        };
        let events = EventTriggers::start(&generation, grace);
        Self {
            generation,
            current,
            events,
            server,
            grace,
        }
    }

    /// The generation serving now.
    pub fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }

    /// The HTTP trigger requests go to now (it follows reloads), if the app serves HTTP.
    pub fn http(&self) -> Option<&Arc<CurrentTrigger>> {
        self.current.as_ref()
    }

    /// Serves `generation` from now on: new requests go to it while requests in flight
    /// finish on the old one (dropped with its last request); the old event triggers
    /// stop, giving their work in progress the grace period, after the new ones start.
    /// The listener stays bound throughout. An app that gains or loses HTTP routes keeps
    /// what it was started with: routes appear only when it serves HTTP already.
    pub async fn reload(&mut self, generation: Arc<Generation>) {
        if let (Some(current), Some(http)) = (&self.current, &generation.http) {
            drop(current.replace(http.clone()));
        }
        let old = std::mem::replace(
            &mut self.events,
            EventTriggers::start(&generation, self.grace),
        );
        self.generation = generation;
        old.stop().await;
    }

    /// Stops accepting, lets requests and events in progress finish for up to the grace
    /// period, and returns when everything has stopped.
    pub async fn shutdown(self) {
        let server = async {
            if let Some((stop, task)) = self.server {
                let _ = stop.send(true);
                let _ = task.await;
            }
        };
        tokio::join!(server, self.events.stop());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use wisp_engine::EngineConfig;

    fn engine(cache: &Path) -> WispEngine {
        WispEngine::new(EngineConfig {
            max_instances: 4,
            cache_dir: Some(cache.to_path_buf()),
            ..EngineConfig::default()
        })
        .unwrap()
    }

    fn settings(state: &Path) -> AppSettings {
        AppSettings {
            runtime_config: RuntimeConfig::default(),
            paths: AppPaths {
                state_dir: state.to_path_buf(),
                app_dir: None,
                files_dir: None,
            },
            limits: AppLimits::default(),
        }
    }

    fn app(wasm: &str) -> LockedApp {
        wisp_app::from_component_file(Path::new(wasm)).unwrap()
    }

    #[tokio::test]
    async fn a_capability_left_out_is_not_linked() {
        let (cache, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let settings = settings(state.path());
        let without_kv = Runtime::new(engine(cache.path()))
            .with_capabilities(CapabilitySet::default().without("key-value"));

        // caps-v5 imports key-value: refused when linked, with the engine's message.
        let err = without_kv
            .load(app(wisp_test_programs::CAPS_V5), &settings)
            .await
            .unwrap_err();
        let RuntimeError::Load(load) = &err else {
            panic!("expected a load error, got {err:?}");
        };
        let message = load.to_string();
        assert!(message.contains("cannot be linked"), "{message}");
        assert!(
            message.contains("the host does not provide that interface"),
            "{message}"
        );
        assert!(message.contains("key-value"), "{message}");

        // A component that does not import it loads.
        without_kv
            .load(app(wisp_test_programs::HELLO), &settings)
            .await
            .unwrap();
        // And with every capability, caps-v5 loads too.
        Runtime::new(engine(cache.path()))
            .load(app(wisp_test_programs::CAPS_V5), &settings)
            .await
            .unwrap();
    }

    /// A component built against a 2023 release candidate of WASI 0.2 (spin-sdk 2.0 and
    /// 2.1) is refused with what to rebuild it with.
    #[tokio::test]
    async fn wasi_2023_release_candidates_are_refused_with_what_to_rebuild_with() {
        let (cache, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Refused at linking (the import), or by the HTTP trigger (the export alone).
        let linked = r#"(component
            (import "wasi:http/types@0.2.0-rc-2023-11-10" (instance (export "f" (func))))
        )"#;
        let exported = r#"(component
            (import "wasi:io/error@0.2.0" (instance $i))
            (export "wasi:http/incoming-handler@0.2.0-rc-2023-11-10" (instance $i))
        )"#;
        for (component, interface) in [
            (linked, "wasi:http/types@0.2.0-rc-2023-11-10"),
            (exported, "wasi:http/incoming-handler@0.2.0-rc-2023-11-10"),
        ] {
            refused_as_2023_rc(cache.path(), state.path(), component, interface).await;
        }
    }

    async fn refused_as_2023_rc(cache: &Path, state: &Path, component: &str, interface: &str) {
        let wasm = state.join("rc.wasm");
        std::fs::write(&wasm, wat::parse_str(component).unwrap()).unwrap();
        let err = Runtime::new(engine(cache))
            .load(app(wasm.to_str().unwrap()), &settings(state))
            .await
            .unwrap_err();
        // The whole chain: the trigger's error wraps the engine's.
        let mut err: &dyn std::error::Error = &err;
        let mut chain = err.to_string();
        while let Some(source) = err.source() {
            chain.push_str(&format!(": {source}"));
            err = source;
        }
        let err = chain;
        assert!(
            err.contains(interface)
                && err.contains("2023 release candidate of WASI 0.2")
                && err.contains("spin-sdk 2.2 and later"),
            "{err}"
        );
    }
}

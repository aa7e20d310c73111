//! Tests of the capability seam: linking, preparing an app's capabilities from its
//! LockedApp and runtime config, and the per-instance state.

use super::*;
use serde::Deserialize;
use std::path::Path;
use wisp_app::{ComponentMetadata, LockedComponent, LockedSource};

/// Store data shaped like the engine's, for linking.
struct TestStore {
    state: InstanceState,
    table: ResourceTable,
}

impl CapabilitiesView for TestStore {
    fn capabilities(&mut self) -> CapabilitiesCtx<'_> {
        CapabilitiesCtx {
            state: &mut self.state,
            table: &mut self.table,
        }
    }
}

/// A capability of the tests' own: reads `[greeting]`, grants every component the
/// greeting, links nothing.
struct Greeting;

#[derive(Deserialize)]
struct GreetingTables {
    greeting: Option<GreetingTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GreetingTable {
    text: String,
}

/// What [`Greeting`] grants.
#[derive(Debug, PartialEq)]
struct Greeted(String);

impl Capability for Greeting {
    fn name(&self) -> &'static str {
        "greeting"
    }

    fn runtime_config_tables(&self) -> &'static [RuntimeConfigTable] {
        &[RuntimeConfigTable {
            key: "greeting",
            syntax: "[greeting]",
        }]
    }

    fn check_runtime_config(&self, config: &RuntimeConfig) -> Result<(), HostError> {
        config.section::<GreetingTables>().map(drop)
    }

    fn prepare<'a>(
        &'a self,
        app: &'a AppContext<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Prepared, HostError>> {
        Box::pin(async move {
            let tables: GreetingTables = app.runtime_config.section()?;
            let text = tables.greeting.map_or("hello".to_owned(), |g| g.text);
            let mut prepared = Prepared::default();
            for component in &app.locked.components {
                prepared.grant(&component.id, Greeted(text.clone()));
            }
            prepared.summary(format!("greeting: {text}"));
            Ok(prepared)
        })
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        _linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        Ok(())
    }
}

const FILE: &str = "/cfg/runtime-config.toml";

/// An app whose components (`id`, key-value stores) run nothing.
fn app(components: &[(&str, &[&str])]) -> LockedApp {
    LockedApp {
        spin_lock_version: wisp_app::LOCKED_APP_VERSION,
        must_understand: Vec::new(),
        metadata: Default::default(),
        variables: Default::default(),
        triggers: Vec::new(),
        components: components
            .iter()
            .map(|(id, stores)| LockedComponent {
                id: (*id).to_owned(),
                metadata: ComponentMetadata {
                    key_value_stores: stores.iter().map(|s| (*s).to_owned()).collect(),
                    ..Default::default()
                },
                source: LockedSource {
                    content_type: "application/wasm".to_owned(),
                    path: "/nonexistent.wasm".into(),
                    digest: String::new(),
                },
                env: Default::default(),
                files: Vec::new(),
                config: Default::default(),
                dependencies: Default::default(),
                trigger_dependencies: Default::default(),
                host_requirements: Default::default(),
            })
            .collect(),
        host_requirements: Default::default(),
    }
}

fn paths(state: &tempfile::TempDir) -> AppPaths {
    AppPaths {
        state_dir: state.path().to_path_buf(),
        app_dir: None,
        files_dir: None,
    }
}

fn engine() -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    wasmtime::Engine::new(&config).unwrap()
}

#[test]
fn the_default_set_is_every_capability_and_links_without_clashes() {
    let set = CapabilitySet::<TestStore>::default();
    assert_eq!(
        set.names().collect::<Vec<_>>(),
        [
            "variables",
            "key-value",
            "sqlite",
            "redis",
            "mqtt",
            "postgres",
            "mysql",
            "llm"
        ]
    );
    // PostgreSQL and MySQL both link the shared `rdbms-types`: no clash.
    let engine = engine();
    set.add_to_linker(&mut Linker::new(&engine)).unwrap();
    add_to_linker(&mut Linker::<TestStore>::new(&engine)).unwrap();
    for left_out in ["postgres", "mysql"] {
        CapabilitySet::<TestStore>::default()
            .without(left_out)
            .add_to_linker(&mut Linker::new(&engine))
            .unwrap();
    }
    // Registering a capability again replaces it rather than linking it twice.
    let twice = CapabilitySet::<TestStore>::default().with(KeyValue);
    assert_eq!(twice.names().count(), 8);
    twice.add_to_linker(&mut Linker::new(&engine)).unwrap();
}

#[tokio::test]
async fn linker_keys_tell_which_capabilities_a_linker_holds() {
    let defaults = CapabilitySet::<TestStore>::default();
    assert_eq!(defaults.linker_key(), &LinkerKey::defaults());
    // The same capability registered again links the same: the key stays.
    let again = CapabilitySet::<TestStore>::default().with(KeyValue);
    assert_eq!(again.linker_key(), defaults.linker_key());
    // Left out, or added: another linker.
    let without = CapabilitySet::<TestStore>::default().without("key-value");
    assert_ne!(without.linker_key(), defaults.linker_key());
    let with = CapabilitySet::<TestStore>::default().with(Greeting);
    assert_ne!(with.linker_key(), defaults.linker_key());
    assert_ne!(with.linker_key(), without.linker_key());

    // Prepared apps carry their set's key; the default build has the default set's.
    let locked = app(&[("web", &[])]);
    let state = tempfile::tempdir().unwrap();
    let paths = paths(&state);
    let runtime = RuntimeConfig::default();
    let built = AppCapabilities::build(&locked, &runtime, &paths)
        .await
        .unwrap();
    assert_eq!(built.linker_key(), &LinkerKey::defaults());
    let built_with = AppCapabilities::build_with(&without, &locked, &runtime, &paths)
        .await
        .unwrap();
    assert_eq!(built_with.linker_key(), without.linker_key());
}

#[tokio::test]
async fn a_new_capability_reads_its_own_table_and_grants_each_component() {
    let set = CapabilitySet::<TestStore>::default().with(Greeting);
    let text = "[greeting]\ntext = \"hi\"\n";
    let config = RuntimeConfig::from_str_with(text, Path::new(FILE), &set).unwrap();

    // Without the capability, its table is an unknown key, named with the file.
    let err = RuntimeConfig::from_str(text, Path::new(FILE))
        .unwrap_err()
        .to_string();
    assert!(err.contains(FILE), "{err}");
    assert!(err.contains("line 1: unknown field `greeting`"), "{err}");
    assert!(!err.contains("[greeting]"), "{err}");
    // With it, a mistake inside the table is reported at its line.
    let err = RuntimeConfig::from_str_with("\n[greeting]\ntxt = \"hi\"\n", Path::new(FILE), &set)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3: unknown field `txt`"), "{err}");
    assert!(err.contains("[greeting]"), "{err}");

    let state = tempfile::tempdir().unwrap();
    let caps = AppCapabilities::build_with(
        &set,
        &app(&[("a", &[]), ("b", &[])]),
        &config,
        &paths(&state),
    )
    .await
    .unwrap();
    for id in ["a", "b"] {
        let component = caps.component(id).unwrap();
        assert_eq!(
            component.grant::<Greeted>(),
            Some(&Greeted("hi".to_owned()))
        );
        // Grants are looked up by type: a type nobody granted is absent.
        assert_eq!(component.grant::<String>(), None);
    }
    assert!(caps.summary().contains(&"greeting: hi".to_owned()));
    assert_eq!(caps.names().last(), Some(&"greeting"));
}

#[tokio::test]
async fn a_capability_left_out_claims_no_table_and_is_not_prepared() {
    let set = CapabilitySet::<TestStore>::default().without("key-value");
    assert!(!set.names().any(|name| name == "key-value"));
    let text = "[key_value_store.default]\ntype = \"spin\"\npath = \"kv.db\"\n";
    let err = RuntimeConfig::from_str_with(text, Path::new(FILE), &set)
        .unwrap_err()
        .to_string();
    assert!(err.contains(FILE), "{err}");
    assert!(
        err.contains("line 1: unknown field `key_value_store`"),
        "{err}"
    );
    assert!(!err.contains("[key_value_store.<label>]"), "{err}");

    // A config read for the default set is checked again for the set the app uses.
    let state = tempfile::tempdir().unwrap();
    let config = RuntimeConfig::from_str(text, Path::new(FILE)).unwrap();
    let locked = app(&[("a", &["default"])]);
    let err = AppCapabilities::build_with(&set, &locked, &config, &paths(&state))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `key_value_store`"), "{err}");

    // Without a key-value table, the app prepares; no store is opened for it.
    let caps =
        AppCapabilities::build_with(&set, &locked, &RuntimeConfig::default(), &paths(&state))
            .await
            .unwrap();
    assert!(!caps.names().contains(&"key-value"));
    assert!(
        !caps
            .summary()
            .iter()
            .any(|line| line.starts_with("key-value store")),
        "{:?}",
        caps.summary()
    );
    assert!(!state.path().join("sqlite_key_value.db").exists());
    // The default set opens it.
    let caps = AppCapabilities::build(&locked, &RuntimeConfig::default(), &paths(&state))
        .await
        .unwrap();
    assert!(
        caps.summary()
            .iter()
            .any(|line| line.starts_with("key-value store `default`")),
        "{:?}",
        caps.summary()
    );
}

#[tokio::test]
async fn instance_state_is_made_once_per_type_on_first_use() {
    let state = tempfile::tempdir().unwrap();
    let caps = AppCapabilities::build(
        &app(&[("a", &[])]),
        &RuntimeConfig::default(),
        &paths(&state),
    )
    .await
    .unwrap();
    let mut store = TestStore {
        state: InstanceState::new(caps.component("a").unwrap()),
        table: ResourceTable::new(),
    };
    let ctx = store.capabilities();
    let made = ctx.state.extension(|caps| vec![caps.id().to_owned()]);
    made.push("second".to_owned());
    let again = ctx
        .state
        .extension::<Vec<String>>(|_| unreachable!("made once"));
    assert_eq!(again, &["a", "second"]);
    assert_eq!(*ctx.state.extension(|_| 7u32), 7);
}

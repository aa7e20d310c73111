//! The resolved app: [`LockedApp`].
//!
//! Second step of the data path: `spin.toml` → `Manifest` (crate `wisp-manifest`) →
//! **`LockedApp`** → runtime. A `LockedApp` is what every runtime consumer reads (`wisp up`,
//! later the multi-app node, OCI artifacts and the containerd shim); nothing downstream reads
//! the user's manifest. It is deterministic, versioned JSON with absolute sources and sha256
//! digests. Its shape follows Spin's locked app (`spin_lock_version`, `must_understand`,
//! `triggers[].trigger_config`, `components[].source`) where that costs nothing.

#[cfg(unix)]
mod digest_memo;
mod resolve;
mod source;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use resolve::{
    ResolveError, ResolveOptions, component_id_from_name, from_component_file,
    from_component_file_with, resolve, resolve_with,
};
pub use source::{DEFAULT_MAX_SOURCE_BYTES, SourceError, open_regular_file, read_source};
pub use wisp_manifest::InheritConfiguration;

/// Version of the LockedApp JSON this crate writes and reads.
pub const LOCKED_APP_VERSION: u32 = 1;

/// Features a LockedApp may list in `must_understand` that this runtime honours.
/// A LockedApp naming anything else is refused rather than half-run.
pub const UNDERSTOOD_FEATURES: &[&str] = &["host_requirements", "component_host_requirements"];

/// Host features an app or component may require (`host_requirements`, as Spin writes
/// them) that this runtime has: service chaining (`http://<id>.spin.internal`) and HTTP
/// middleware. An app requiring anything else is refused.
pub const SUPPORTED_HOST_REQUIREMENTS: &[&str] = &["local_service_chaining", MIDDLEWARE];

/// The fully resolved, runtime-ready description of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedApp {
    /// Format version; see [`LOCKED_APP_VERSION`].
    pub spin_lock_version: u32,
    /// Features the runtime must support to run this app correctly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<String>,
    /// Descriptive metadata (name, version, where it came from).
    pub metadata: AppMetadata,
    /// App-level variables, by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub variables: IndexMap<String, LockedVariable>,
    /// Triggers in manifest order.
    pub triggers: Vec<LockedTrigger>,
    /// Components in manifest order.
    pub components: Vec<LockedComponent>,
    /// Host features the app needs (`"local_service_chaining": "required"`), as Spin
    /// writes them when `must_understand` lists `host_requirements`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub host_requirements: IndexMap<String, serde_json::Value>,
}

/// Descriptive app metadata.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AppMetadata {
    /// Application name.
    pub name: String,
    /// Application version, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Authors as written in the manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    /// Absolute path of the manifest (or component) the app was resolved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<PathBuf>,
}

/// An app-level variable declaration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LockedVariable {
    /// Default value; `None` means the variable is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Whether the value must be kept out of logs.
    #[serde(default)]
    pub secret: bool,
}

/// A trigger: its type and type-specific configuration (read by the trigger crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedTrigger {
    /// Unique trigger id.
    pub id: String,
    /// `http`, `redis`, `cron`, …: the trigger type that runs it (a runtime refuses
    /// types it has no trigger for).
    pub trigger_type: String,
    /// Type-specific configuration, read by the trigger type's crate (for example
    /// `wisp_trigger_http::HttpTriggerConfig`). A `component` field names the component
    /// it calls.
    pub trigger_config: serde_json::Value,
}

/// A component with its resolved source, files and grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedComponent {
    /// Component id (kebab-case).
    pub id: String,
    /// Grants and descriptive metadata.
    #[serde(default)]
    pub metadata: ComponentMetadata,
    /// The Wasm binary.
    pub source: LockedSource,
    /// Environment variables visible to the guest (and nothing else).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// Files mounted read-only into the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<LockedFile>,
    /// Component variable templates (`name` → `"{{ app_var }} text"`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub config: IndexMap<String, String>,
    /// Components composed into this one when it loads, keyed by the import name they
    /// satisfy (Spin's `dependencies`: `ns:pkg/iface@1.0.0`, `ns:pkg`, or a plain name).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub dependencies: IndexMap<String, LockedDependency>,
    /// Components its trigger composes around it (Spin's trigger dependencies): only
    /// [`MIDDLEWARE`], HTTP middleware, outermost first.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub trigger_dependencies: IndexMap<String, Vec<LockedDependency>>,
    /// Host features this component needs (`"middleware": "required"`), as Spin writes
    /// them when `must_understand` lists `component_host_requirements`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub host_requirements: IndexMap<String, serde_json::Value>,
}

/// The key of [`LockedComponent::trigger_dependencies`] holding HTTP middleware.
pub const MIDDLEWARE: &str = "middleware";

impl LockedComponent {
    /// The HTTP middleware composed in front of this component, outermost first.
    pub fn middleware(&self) -> &[LockedDependency] {
        self.trigger_dependencies
            .get(MIDDLEWARE)
            .map_or(&[], Vec::as_slice)
    }
}

/// A component dependency, in the shape of Spin's locked dependency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedDependency {
    /// The dependency's Wasm binary.
    pub source: LockedSource,
    /// Its export that satisfies the matched imports, when named differently from them.
    #[serde(default)]
    pub export: Option<String>,
    /// Which of the depending component's grants it shares (none when absent).
    #[serde(default, skip_serializing_if = "InheritConfiguration::is_none")]
    pub inherit: InheritConfiguration,
}

/// What a component is granted, plus its description.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ComponentMetadata {
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Outbound destinations the component may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels the component may open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_value_stores: Vec<String>,
    /// SQLite database labels the component may open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// AI models the component may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ai_models: Vec<String>,
}

/// Where a component's Wasm comes from, with its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedSource {
    /// Always `application/wasm`.
    pub content_type: String,
    /// Absolute path of the `.wasm` file.
    pub path: PathBuf,
    /// `sha256:<hex>` of the file's bytes at resolution time.
    pub digest: String,
}

/// One file mounted into a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedFile {
    /// Absolute path of the file on the host.
    pub source: PathBuf,
    /// Absolute path inside the guest (e.g. `/static/index.html`).
    pub path: String,
}

/// Errors reading or checking a LockedApp.
#[derive(Debug, thiserror::Error)]
pub enum LockedAppError {
    /// The JSON did not parse.
    #[error("invalid locked app JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The format version is not one this runtime reads.
    #[error(
        "locked app version {found} is not supported (this wisp reads version {LOCKED_APP_VERSION}); upgrade wisp"
    )]
    Version {
        /// Version found in the file.
        found: u32,
    },
    /// The app requires features this runtime does not have.
    #[error("the app requires features this wisp does not understand: {0}; upgrade wisp")]
    MustUnderstand(String),
    /// The app breaks a rule every app must follow (ids, references, paths); a locked
    /// app from elsewhere (a registry) is held to the same rules as a local manifest.
    #[error("invalid locked app: {0}")]
    Invalid(String),
}

/// The first set `inherit` names that is not a capability set.
fn unknown_capability_set(inherit: &InheritConfiguration) -> Option<&str> {
    match inherit {
        InheritConfiguration::Some(sets) => sets
            .iter()
            .map(String::as_str)
            .find(|set| !wisp_manifest::CAPABILITY_SETS.contains(set)),
        InheritConfiguration::All => None,
    }
}

/// A component id that is not one of the app's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{id}: the app has no such component; it has {}", known.join(", "))]
pub struct UnknownComponent {
    /// The id asked for.
    pub id: String,
    /// The app's component ids.
    pub known: Vec<String>,
}

impl LockedApp {
    /// Parses and checks a LockedApp from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, LockedAppError> {
        let app: LockedApp = serde_json::from_slice(bytes)?;
        app.check()?;
        Ok(app)
    }

    /// Serializes to pretty JSON (deterministic: maps keep manifest order).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a LockedApp always serializes")
    }

    /// Refuses versions and `must_understand` features this runtime does not honour.
    pub fn check(&self) -> Result<(), LockedAppError> {
        if self.spin_lock_version != LOCKED_APP_VERSION {
            return Err(LockedAppError::Version {
                found: self.spin_lock_version,
            });
        }
        let unknown: Vec<&str> = self
            .must_understand
            .iter()
            .map(String::as_str)
            .filter(|f| !UNDERSTOOD_FEATURES.contains(f))
            .collect();
        if !unknown.is_empty() {
            return Err(LockedAppError::MustUnderstand(unknown.join(", ")));
        }
        let required = (self.host_requirements.iter())
            .chain(self.components.iter().flat_map(|c| &c.host_requirements))
            .filter(|(_, value)| value.as_str() != Some("optional"))
            .map(|(name, _)| name.as_str())
            .find(|name| !SUPPORTED_HOST_REQUIREMENTS.contains(name));
        if let Some(name) = required {
            return Err(LockedAppError::MustUnderstand(format!(
                "the host feature `{name}`"
            )));
        }
        self.check_structure()
    }

    /// The rules the manifest enforces that the runtime relies on: kebab-case, unique
    /// component ids (they name directories), valid variable names, triggers naming
    /// existing components, and guest file paths without `..`.
    fn check_structure(&self) -> Result<(), LockedAppError> {
        let invalid = |message: String| Err(LockedAppError::Invalid(message));
        let mut seen = std::collections::HashSet::new();
        for component in &self.components {
            if !wisp_manifest::is_kebab_id(&component.id) {
                return invalid(format!(
                    "component id {:?} is not kebab-case (lowercase letters and digits joined by single `-`)",
                    component.id
                ));
            }
            if !seen.insert(component.id.as_str()) {
                return invalid(format!("component id `{}` appears twice", component.id));
            }
            for file in &component.files {
                let bad = std::path::Path::new(&file.path).components().any(|c| {
                    matches!(
                        c,
                        std::path::Component::ParentDir | std::path::Component::Prefix(_)
                    )
                });
                if bad {
                    return invalid(format!(
                        "component `{}` mounts a file at {:?}; guest paths may not contain `..`",
                        component.id, file.path
                    ));
                }
            }
            // The manifest's dependency rules, so a foreign locked app meets them too.
            let mut names: Vec<wisp_manifest::DependencyName> = Vec::new();
            for (key, dependency) in &component.dependencies {
                let name = match wisp_manifest::DependencyName::parse(key) {
                    Ok(name) => name,
                    Err(problem) => {
                        return invalid(format!(
                            "component `{}` has dependency {problem}",
                            component.id
                        ));
                    }
                };
                if let Some(other) = names.iter().find(|other| other.conflicts_with(&name)) {
                    return invalid(format!(
                        "component `{}`: dependency `{name}` conflicts with `{other}`",
                        component.id
                    ));
                }
                if dependency.export.is_some() && name.is_package_wide() {
                    return invalid(format!(
                        "component `{}`: dependency `{name}` names a whole package and cannot take an `export`",
                        component.id
                    ));
                }
                if let Some(unknown) = unknown_capability_set(&dependency.inherit) {
                    return invalid(format!(
                        "component `{}`: dependency `{name}` inherits `{unknown}`, which is not a capability set",
                        component.id
                    ));
                }
                names.push(name);
            }
            for (kind, entries) in &component.trigger_dependencies {
                if kind != MIDDLEWARE {
                    return invalid(format!(
                        "component `{}` has trigger dependencies of kind `{kind}`; only `{MIDDLEWARE}` is supported",
                        component.id
                    ));
                }
                for (index, entry) in entries.iter().enumerate() {
                    if entry.export.is_some() {
                        return invalid(format!(
                            "component `{}`: middleware {} has an `export`; middleware is chained through `wasi:http/handler`",
                            component.id,
                            index + 1
                        ));
                    }
                    if let Some(unknown) = unknown_capability_set(&entry.inherit) {
                        return invalid(format!(
                            "component `{}`: middleware {} inherits `{unknown}`, which is not a capability set",
                            component.id,
                            index + 1
                        ));
                    }
                }
            }
        }
        if let Some(name) = self
            .variables
            .keys()
            .find(|name| !wisp_manifest::is_variable_name(name))
        {
            return invalid(format!(
                "variable name {name:?} is not lowercase letters, digits and `_`"
            ));
        }
        // Every trigger type names the component it calls in `component`.
        for trigger in &self.triggers {
            if let Some(component) = trigger
                .trigger_config
                .get("component")
                .and_then(serde_json::Value::as_str)
                && !seen.contains(component)
            {
                return invalid(format!(
                    "trigger `{}` names component `{component}`, which the app does not define",
                    trigger.id
                ));
            }
        }
        Ok(())
    }

    /// Keeps only the components `ids` names and the triggers that run them (a trigger
    /// with a static response and no component stays): `wisp up -c` and SpinKube's
    /// `SPIN_COMPONENTS_TO_RETAIN`. Empty `ids` keeps everything. An unknown id is an
    /// [`UnknownComponent`] error listing the app's components.
    pub fn retain_components(&mut self, ids: &[String]) -> Result<(), UnknownComponent> {
        self.check_component_ids(ids)?;
        if ids.is_empty() {
            return Ok(());
        }
        self.components.retain(|c| ids.contains(&c.id));
        self.triggers.retain(|t| {
            match t.trigger_config.get("component").and_then(|c| c.as_str()) {
                Some(component) => ids.iter().any(|id| id == component),
                None => true,
            }
        });
        Ok(())
    }

    /// Whether every id in `ids` names a component of the app.
    pub fn check_component_ids(&self, ids: &[String]) -> Result<(), UnknownComponent> {
        match ids.iter().find(|id| self.component(id).is_none()) {
            Some(id) => Err(UnknownComponent {
                id: id.clone(),
                known: self.components.iter().map(|c| c.id.clone()).collect(),
            }),
            None => Ok(()),
        }
    }

    /// Looks up a component by id.
    pub fn component(&self, id: &str) -> Option<&LockedComponent> {
        self.components.iter().find(|c| c.id == id)
    }

    /// The triggers of one type (`http`, `redis`, …), in manifest order.
    pub fn triggers_of_type<'a>(
        &'a self,
        trigger_type: &'a str,
    ) -> impl Iterator<Item = &'a LockedTrigger> + 'a {
        self.triggers
            .iter()
            .filter(move |t| t.trigger_type == trigger_type)
    }

    /// The triggers of one type with their configuration decoded as `C`.
    pub fn triggers_of<C: serde::de::DeserializeOwned>(
        &self,
        trigger_type: &str,
    ) -> Result<Vec<(&LockedTrigger, C)>, LockedAppError> {
        self.triggers
            .iter()
            .filter(|t| t.trigger_type == trigger_type)
            .map(|t| Ok((t, serde_json::from_value(t.trigger_config.clone())?)))
            .collect()
    }
}

/// `sha256:<hex>` of some bytes, the digest format used throughout.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Joins `rel` onto `base` unless it is already absolute.
fn absolutize(base: &Path, rel: &Path) -> PathBuf {
    if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        base.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
version = "1.0.0"
[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/api/..."
component = "api"
[[trigger.http]]
route = "/teapot"
static_response = { status_code = 418, body = "short and stout" }
[component.api]
source = "api.wasm"
environment = { MODE = "prod" }
files = ["static/*"]
allowed_outbound_hosts = ["https://example.com"]
variables = { message = "{{ greeting }} there" }
"#;

    fn resolved() -> (tempfile::TempDir, LockedApp) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        std::fs::write(dir.path().join("static/index.html"), "<h1>").unwrap();
        let path = dir.path().join("spin.toml");
        std::fs::write(&path, MANIFEST).unwrap();
        let manifest = wisp_manifest::parse_file(&path).unwrap();
        let locked = resolve(&manifest, &path).unwrap();
        (dir, locked)
    }

    #[test]
    fn check_holds_foreign_apps_to_the_manifest_rules() {
        let (_dir, locked) = resolved();
        assert!(locked.check().is_ok());
        let refused = |edit: &dyn Fn(&mut LockedApp)| {
            let mut app = locked.clone();
            edit(&mut app);
            match app.check() {
                Err(LockedAppError::Invalid(message)) => message,
                other => panic!("expected Invalid, got {other:?}"),
            }
        };
        for id in ["../x", "/abs", "Upper", "a/b", ".."] {
            let message = refused(&|app| app.components[0].id = id.to_owned());
            assert!(message.contains("kebab-case"), "{id}: {message}");
        }
        let message = refused(&|app| {
            let twin = app.components[0].clone();
            app.components.push(twin);
        });
        assert!(message.contains("appears twice"), "{message}");
        let message = refused(&|app| app.components[0].files[0].path = "/../../etc/x".into());
        assert!(message.contains("`..`"), "{message}");
        let message = refused(&|app| {
            app.variables
                .insert("Bad-Name".into(), app.variables["greeting"].clone());
        });
        assert!(message.contains("Bad-Name"), "{message}");
        let message = refused(&|app| app.components[0].id = "other".into());
        assert!(message.contains("names component `api`"), "{message}");
    }

    #[test]
    fn resolution_is_absolute_digested_and_normalised() {
        let (dir, locked) = resolved();
        assert_eq!(locked.spin_lock_version, LOCKED_APP_VERSION);
        assert_eq!(locked.metadata.name, "shop");
        let api = locked.component("api").unwrap();
        assert_eq!(api.source.path, dir.path().join("api.wasm"));
        assert_eq!(api.source.digest, sha256_digest(b"\0asm\x01\0\0\0"));
        assert_eq!(api.files.len(), 1);
        assert_eq!(api.files[0].path, "/static/index.html");
        assert_eq!(api.env["MODE"], "prod");
        assert_eq!(api.config["message"], "{{ greeting }} there");
        assert_eq!(locked.variables["token"].default, None);
        assert!(locked.variables["token"].secret);

        let http: Vec<&LockedTrigger> = locked.triggers_of_type("http").collect();
        assert_eq!(http.len(), 2);
        assert_eq!(
            http[0].trigger_config,
            serde_json::json!({ "route": "/api/...", "component": "api" })
        );
        assert_eq!(
            http[1].trigger_config["static_response"]["status_code"],
            418
        );
    }

    #[test]
    fn json_round_trips_deterministically() {
        let (_dir, locked) = resolved();
        let json = locked.to_json();
        let back = LockedApp::from_json(&json).unwrap();
        assert_eq!(back, locked);
        assert_eq!(back.to_json(), json);
    }

    /// Spin's host requirements (service chaining, middleware) are understood; a required
    /// feature this runtime lacks is refused by name, an optional one is not.
    #[test]
    fn host_requirements_wisp_has_are_accepted_and_others_refused() {
        let (_dir, mut locked) = resolved();
        locked.must_understand = vec![
            "host_requirements".to_owned(),
            "component_host_requirements".to_owned(),
        ];
        locked
            .host_requirements
            .insert("local_service_chaining".to_owned(), "required".into());
        locked.components[0]
            .host_requirements
            .insert(MIDDLEWARE.to_owned(), "required".into());
        let back = LockedApp::from_json(&locked.to_json()).unwrap();
        assert_eq!(back, locked);

        locked.components[0]
            .host_requirements
            .insert("teleport".to_owned(), "optional".into());
        LockedApp::from_json(&locked.to_json()).unwrap();
        locked.components[0]
            .host_requirements
            .insert("teleport".to_owned(), "required".into());
        let err = LockedApp::from_json(&locked.to_json()).unwrap_err();
        assert!(err.to_string().contains("`teleport`"), "{err}");
    }

    #[test]
    fn unknown_versions_and_features_are_refused() {
        let (_dir, mut locked) = resolved();
        locked.must_understand = vec!["time-travel".to_owned()];
        let err = LockedApp::from_json(&locked.to_json()).unwrap_err();
        assert!(err.to_string().contains("time-travel"), "{err}");

        let (_dir, mut locked) = resolved();
        locked.spin_lock_version = 99;
        let err = LockedApp::from_json(&locked.to_json()).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");

        // Unknown fields from a newer writer are tolerated.
        let (_dir, locked) = resolved();
        let mut value: serde_json::Value = serde_json::from_slice(&locked.to_json()).unwrap();
        value["future_field"] = serde_json::json!({ "x": 1 });
        assert_eq!(
            LockedApp::from_json(&serde_json::to_vec(&value).unwrap()).unwrap(),
            locked
        );
    }
}

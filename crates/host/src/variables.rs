//! Variables: app-level `[variables]` resolved from providers, component variable
//! templates, and the interfaces that read them (`fermyon:spin/variables`,
//! `spin:variables`, `wasi:config/store` and Spin 1.x's `fermyon:spin/config`), which all
//! see the same values.

use crate::bindings::fermyon::spin::variables as v2;
use crate::bindings::spin::variables::variables as v3;
use crate::bindings::wasi::config::store as wasi_config;
use crate::capability::{AppContext, Capability, Prepared};
use crate::runtime_config::{RuntimeConfig, VariablesProviderConfig};
use crate::spin1_bindings::fermyon::spin::config as v1;
use crate::{AppPaths, Capabilities, CapabilitiesCtx, CapabilitiesView, HostError};
use futures::future::BoxFuture;
use indexmap::IndexMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Accessor, Linker};
use wisp_app::LockedApp;

/// The variables capability: each component's `variables`, expanded from the app's, and
/// the three interfaces above. The providers and the app's `[variables]` are resolved
/// before any capability is prepared (templated `allowed_outbound_hosts` and trigger
/// settings use them too), from the core `[[variables_provider]]` tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Variables;

/// A component's grant: its variables (`variables = { key = "{{ app_var }}" }`),
/// expanded; an expansion that failed keeps its reason for the guest.
struct ComponentVariables(IndexMap<String, Result<String, String>>);

impl Capability for Variables {
    fn name(&self) -> &'static str {
        "variables"
    }

    fn prepare<'a>(
        &'a self,
        app: &'a AppContext<'a>,
    ) -> BoxFuture<'a, Result<Prepared, HostError>> {
        let mut prepared = Prepared::default();
        for component in &app.locked.components {
            if component.config.is_empty() {
                continue;
            }
            let variables = component
                .config
                .iter()
                .map(|(key, template)| {
                    (
                        key.clone(),
                        expand_template(template, app.variables).map_err(|e| {
                            format!("variable `{key}` of component `{}`: {e}", component.id)
                        }),
                    )
                })
                .collect();
            prepared.grant(&component.id, ComponentVariables(variables));
        }
        Box::pin(std::future::ready(Ok(prepared)))
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        v2::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v3::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v1::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        wasi_config::add_to_linker::<T, Capabilities>(linker, crate::view)
    }
}

impl CapabilitiesCtx<'_> {
    /// The component's expanded variables, in declaration order.
    fn variables(&self) -> impl Iterator<Item = (&String, &Result<String, String>)> {
        self.state
            .caps
            .grant::<ComponentVariables>()
            .into_iter()
            .flat_map(|variables| variables.0.iter())
    }
}

/// Variable sources in lookup order: the runtime config's providers in file order,
/// then the environment (`SPIN_VARIABLE_<NAME>`, then `.env` beside the manifest) —
/// the order Spin uses (its CLI appends the environment provider after the configured
/// ones). An app variable's `default` applies when none has it.
pub(crate) struct Providers {
    providers: Vec<Provider>,
    /// What `Env` providers read instead of the process environment.
    environment: Option<Arc<HashMap<String, String>>>,
}

/// A `.env` file's path and its `KEY=value` pairs.
type Dotenv = (PathBuf, HashMap<String, String>);

enum Provider {
    Env {
        prefix: String,
        dotenv: Option<Dotenv>,
    },
    Static(IndexMap<String, String>),
}

impl Providers {
    pub(crate) fn new(runtime: &RuntimeConfig, paths: &AppPaths) -> Result<Self, HostError> {
        let default_env = Provider::Env {
            prefix: "SPIN_VARIABLE".to_owned(),
            dotenv: match &paths.app_dir {
                Some(dir) => read_dotenv(&dir.join(".env"))?,
                None => None,
            },
        };
        let mut providers = Vec::new();
        for config in &runtime.variables_providers {
            providers.push(match config {
                VariablesProviderConfig::Env {
                    prefix,
                    dotenv_path,
                } => Provider::Env {
                    prefix: prefix.clone(),
                    dotenv: match dotenv_path {
                        Some(path) => read_dotenv(path)?,
                        None => None,
                    },
                },
                VariablesProviderConfig::Static { values } => Provider::Static(values.clone()),
            });
        }
        if !runtime.isolated_environment {
            providers.push(default_env);
        }
        Ok(Self {
            providers,
            environment: runtime.environment.clone(),
        })
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.providers.iter().find_map(|provider| match provider {
            Provider::Env { prefix, dotenv } => {
                let key = env_name(prefix, name);
                let set = match &self.environment {
                    Some(environment) => environment.get(&key).cloned(),
                    None => std::env::var(&key).ok(),
                };
                set.or_else(|| dotenv.as_ref().and_then(|(_, m)| m.get(&key).cloned()))
            }
            Provider::Static(values) => values.get(name).cloned(),
        })
    }

    /// The environment variables that would set `name`, for messages.
    fn env_names(&self, name: &str) -> String {
        self.providers
            .iter()
            .filter_map(|provider| match provider {
                Provider::Env { prefix, .. } => Some(env_name(prefix, name)),
                Provider::Static(_) => None,
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    pub(crate) fn describe(&self) -> String {
        self.providers
            .iter()
            .map(|provider| match provider {
                Provider::Env { prefix, dotenv } => match dotenv {
                    Some((path, _)) => format!("env {prefix}_* and {}", path.display()),
                    None => format!("env {prefix}_*"),
                },
                Provider::Static(values) => format!("static ({} values)", values.len()),
            })
            .collect::<Vec<_>>()
            .join(", then ")
    }
}

fn env_name(prefix: &str, name: &str) -> String {
    format!("{prefix}_{}", name.to_ascii_uppercase())
}

/// Reads a `.env` file (`KEY=value` lines, `#` comments, optional `export ` and
/// quotes); a missing file is not an error.
fn read_dotenv(path: &Path) -> Result<Option<Dotenv>, HostError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(HostError::Dotenv {
                file: path.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let mut values = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(HostError::Dotenv {
                file: path.to_path_buf(),
                message: format!("line {}: expected KEY=value", index + 1),
            });
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        values.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(Some((path.to_path_buf(), values)))
}

/// Values of the app's `[variables]`: a provider's value, else the default. A required
/// variable without a value is an error naming it.
pub(crate) fn resolve_app_variables(
    locked: &LockedApp,
    providers: &Providers,
) -> Result<IndexMap<String, String>, HostError> {
    let mut values = IndexMap::new();
    for (name, variable) in &locked.variables {
        match providers.lookup(name).or_else(|| variable.default.clone()) {
            Some(value) => {
                values.insert(name.clone(), value);
            }
            None => {
                return Err(HostError::MissingVariable {
                    name: name.clone(),
                    env_name: providers.env_names(name),
                });
            }
        }
    }
    Ok(values)
}

/// Expands `{{ name }}` references (spaces optional) with `values`; text around them
/// is kept as is.
pub fn expand_template(
    template: &str,
    values: &IndexMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in template {template:?}"))?;
        let name = after[..end].trim();
        let value = values
            .get(name)
            .ok_or_else(|| format!("template {template:?} uses `{name}`, which has no value"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Spin's rule for names a guest may ask for: lowercase letters, digits and `_`,
/// starting with a letter.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

enum Lookup {
    Found(String),
    InvalidName,
    Undefined,
    Failed(String),
}

fn lookup(ctx: &CapabilitiesCtx<'_>, name: &str) -> Lookup {
    if !valid_name(name) {
        return Lookup::InvalidName;
    }
    let granted = ctx.state.caps.grant::<ComponentVariables>();
    match granted.and_then(|variables| variables.0.get(name)) {
        Some(Ok(value)) => Lookup::Found(value.clone()),
        Some(Err(reason)) => Lookup::Failed(reason.clone()),
        None => Lookup::Undefined,
    }
}

fn invalid_name_message(name: &str) -> String {
    format!(
        "{name:?} is not a valid variable name: use lowercase letters, digits and underscores, starting with a letter"
    )
}

fn undefined_message(ctx: &CapabilitiesCtx<'_>, name: &str) -> String {
    format!(
        "component `{}` has no variable `{name}`; declare it under [component.{}.variables]",
        ctx.state.caps.id, ctx.state.caps.id
    )
}

impl v2::Host for CapabilitiesCtx<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, v2::Error>> {
        Ok(match lookup(self, &name) {
            Lookup::Found(value) => Ok(value),
            Lookup::InvalidName => Err(v2::Error::InvalidName(invalid_name_message(&name))),
            Lookup::Undefined => Err(v2::Error::Undefined(undefined_message(self, &name))),
            Lookup::Failed(reason) => Err(v2::Error::Provider(reason)),
        })
    }
}

impl v3::Host for CapabilitiesCtx<'_> {}

/// Spin 1.x's `get-config`: the same lookup, with that interface's error cases (an
/// undefined variable is a provider error there, as in Spin).
impl v1::Host for CapabilitiesCtx<'_> {
    async fn get_config(&mut self, key: String) -> wasmtime::Result<Result<String, v1::Error>> {
        Ok(match lookup(self, &key) {
            Lookup::Found(value) => Ok(value),
            Lookup::InvalidName => Err(v1::Error::InvalidKey(invalid_name_message(&key))),
            Lookup::Undefined => Err(v1::Error::Provider(undefined_message(self, &key))),
            Lookup::Failed(reason) => Err(v1::Error::Provider(reason)),
        })
    }
}

impl<T> v3::HostWithStore<T> for Capabilities {
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, v3::Error>> {
        Ok(accessor.with(|mut access| {
            let ctx = access.get();
            match lookup(&ctx, &name) {
                Lookup::Found(value) => Ok(value),
                Lookup::InvalidName => Err(v3::Error::InvalidName(invalid_name_message(&name))),
                Lookup::Undefined => Err(v3::Error::Undefined(undefined_message(&ctx, &name))),
                Lookup::Failed(reason) => Err(v3::Error::Provider(reason)),
            }
        }))
    }
}

impl wasi_config::Host for CapabilitiesCtx<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(match lookup(self, &key) {
            Lookup::Found(value) => Ok(Some(value)),
            Lookup::InvalidName | Lookup::Undefined => Ok(None),
            Lookup::Failed(reason) => Err(wasi_config::Error::Upstream(reason)),
        })
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        let mut all = Vec::new();
        for (key, value) in self.variables() {
            match value {
                Ok(value) => all.push((key.clone(), value.clone())),
                Err(reason) => return Ok(Err(wasi_config::Error::Upstream(reason.clone()))),
            }
        }
        Ok(Ok(all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_with_text_around() {
        let values: IndexMap<String, String> = [
            ("host".to_owned(), "api.example.com".to_owned()),
            ("port".to_owned(), "8080".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            expand_template("https://{{ host }}:{{port}}/v1", &values).unwrap(),
            "https://api.example.com:8080/v1"
        );
        assert_eq!(expand_template("plain", &values).unwrap(), "plain");
        assert!(
            expand_template("{{ missing }}", &values)
                .unwrap_err()
                .contains("missing")
        );
        assert!(
            expand_template("{{ host", &values)
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn names_follow_spin_rules() {
        assert!(valid_name("api_key2"));
        assert!(!valid_name("Api"));
        assert!(!valid_name("2x"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn dotenv_parses_comments_export_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nSPIN_VARIABLE_A=1\nexport SPIN_VARIABLE_B=\"two words\"\nSPIN_VARIABLE_C='x=y'\n",
        )
        .unwrap();
        let (_, values) = read_dotenv(&path).unwrap().unwrap();
        assert_eq!(values["SPIN_VARIABLE_A"], "1");
        assert_eq!(values["SPIN_VARIABLE_B"], "two words");
        assert_eq!(values["SPIN_VARIABLE_C"], "x=y");
        assert!(read_dotenv(&dir.path().join("absent")).unwrap().is_none());
        std::fs::write(&path, "no equals sign\n").unwrap();
        assert!(
            read_dotenv(&path)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn static_provider_and_default_order() {
        let mut runtime = RuntimeConfig::default();
        runtime
            .variables_providers
            .push(VariablesProviderConfig::Static {
                values: [("wisp_test_static".to_owned(), "from-static".to_owned())]
                    .into_iter()
                    .collect(),
            });
        let providers = Providers::new(
            &runtime,
            &AppPaths {
                state_dir: PathBuf::from("/nonexistent"),
                app_dir: None,
                files_dir: None,
            },
        )
        .unwrap();
        assert_eq!(
            providers.lookup("wisp_test_static").as_deref(),
            Some("from-static")
        );
        assert_eq!(providers.lookup("wisp_test_absent"), None);
        assert_eq!(
            providers.describe(),
            "static (1 values), then env SPIN_VARIABLE_*"
        );
    }

    #[test]
    fn a_given_environment_replaces_the_process_environment() {
        let mut runtime = RuntimeConfig::default();
        runtime
            .variables_providers
            .push(VariablesProviderConfig::Env {
                prefix: "WISP_TEST_CONTAINER".to_owned(),
                dotenv_path: None,
            });
        runtime.environment = Some(Arc::new(
            [
                ("WISP_TEST_CONTAINER_TOKEN".to_owned(), "custom".to_owned()),
                (
                    "SPIN_VARIABLE_API_KEY".to_owned(),
                    "from-container".to_owned(),
                ),
            ]
            .into_iter()
            .collect(),
        ));
        let paths = AppPaths {
            state_dir: PathBuf::from("/nonexistent"),
            app_dir: None,
            files_dir: None,
        };
        let providers = Providers::new(&runtime, &paths).unwrap();
        assert_eq!(providers.lookup("token").as_deref(), Some("custom"));
        assert_eq!(
            providers.lookup("api_key").as_deref(),
            Some("from-container")
        );
        // cargo sets CARGO_PKG_NAME in every test process; the given environment has none.
        assert!(std::env::var("CARGO_PKG_NAME").is_ok());
        runtime
            .variables_providers
            .push(VariablesProviderConfig::Env {
                prefix: "CARGO_PKG".to_owned(),
                dotenv_path: None,
            });
        let providers = Providers::new(&runtime, &paths).unwrap();
        assert_eq!(
            providers.lookup("name"),
            None,
            "the process's CARGO_PKG_NAME leaked"
        );
        // Without the override the same provider reads the process: the check above bites.
        runtime.environment = None;
        let providers = Providers::new(&runtime, &paths).unwrap();
        assert_eq!(providers.lookup("name").as_deref(), Some("wisp-host"));
    }
}

//! `runtime-config.toml`: which backend serves each store, database and variable
//! provider. The table names are Spin's so one file serves both; unknown or misspelled
//! keys are errors that name the key and the file.

use crate::HostError;
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The parsed runtime config. `RuntimeConfig::default()` is what `wisp up` uses when no
/// file is given: `default` stores and databases in the state directory, variables from
/// the environment.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// The file it came from, for messages.
    pub file: Option<PathBuf>,
    /// `[key_value_store.<label>]`.
    pub key_value_stores: IndexMap<String, KeyValueStoreConfig>,
    /// `[sqlite_database.<label>]`.
    pub sqlite_databases: IndexMap<String, SqliteDatabaseConfig>,
    /// `[[variables_provider]]`, in file order.
    pub variables_providers: Vec<VariablesProviderConfig>,
    /// `[outbound_networking]`.
    pub outbound_networking: OutboundNetworkingConfig,
}

/// A key-value store's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// `type = "spin"`: an SQLite file (`path`, relative to the runtime config file).
    Sqlite { path: PathBuf },
    /// `type = "redis"`: a Redis server (`url`).
    Redis { url: String },
}

/// An SQLite database's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteDatabaseConfig {
    /// `type = "spin"` with `path`: a file; without `path`: an in-memory database that
    /// lives as long as the process.
    File { path: Option<PathBuf> },
}

/// A source of variable values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariablesProviderConfig {
    /// `type = "env"`: `<prefix>_<NAME>` environment variables, then the `dotenv_path`
    /// file (default `.env` beside the manifest).
    Env {
        prefix: String,
        dotenv_path: Option<PathBuf>,
    },
    /// `type = "static"`: fixed `values`.
    Static { values: IndexMap<String, String> },
}

/// `[outbound_networking]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundNetworkingConfig {
    /// `block_networks`: CIDRs or `private`; outbound connections to these addresses are
    /// refused even when a component's `allowed_outbound_hosts` names them.
    pub block_networks: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    key_value_store: IndexMap<String, RawStore>,
    #[serde(default)]
    sqlite_database: IndexMap<String, RawStore>,
    #[serde(default)]
    variables_provider: Vec<RawProvider>,
    #[serde(default)]
    outbound_networking: Option<RawOutbound>,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawStore {
    #[serde(rename = "spin")]
    Spin { path: Option<PathBuf> },
    #[serde(rename = "redis")]
    Redis { url: String },
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawProvider {
    #[serde(rename = "env")]
    Env {
        prefix: Option<String>,
        dotenv_path: Option<PathBuf>,
    },
    #[serde(rename = "static")]
    Static { values: IndexMap<String, String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    #[serde(default)]
    block_networks: Vec<String>,
}

impl RuntimeConfig {
    /// Reads and validates a runtime config file. Relative paths inside it are relative
    /// to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, HostError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostError::RuntimeConfigIo {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_str(&text, path)
    }

    /// Parses runtime config text; `path` names it in errors and anchors relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, HostError> {
        let invalid = |message: String| HostError::RuntimeConfig {
            file: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // Tagged tables are buffered before they are checked, so serde's span points
            // at the table; for an unknown key, point at the key's own line instead.
            let line = unknown_key_line(text, e.message()).or_else(|| {
                e.span()
                    .map(|span| text[..span.start].matches('\n').count() + 1)
            });
            let location = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            invalid(format!(
                "{location}{}; the tables Wisp reads are [key_value_store.<label>], [sqlite_database.<label>], [[variables_provider]] and [outbound_networking]",
                e.message().trim_end()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let mut key_value_stores = IndexMap::new();
        for (label, store) in raw.key_value_store {
            let config = match store {
                RawStore::Spin { path } => KeyValueStoreConfig::Sqlite {
                    path: anchor(path.ok_or_else(|| {
                        invalid(format!(
                            "[key_value_store.{label}] of type \"spin\" needs a `path` to its SQLite file"
                        ))
                    })?),
                },
                RawStore::Redis { url } => {
                    if url.starts_with("rediss://") {
                        return Err(invalid(format!(
                            "[key_value_store.{label}] url: TLS (rediss://) is not supported yet; use redis:// to a server on a trusted network or through a TLS tunnel"
                        )));
                    }
                    if !(url.starts_with("redis://") || url.starts_with("unix://")) {
                        return Err(invalid(format!(
                            "[key_value_store.{label}] url must start with redis:// or unix://"
                        )));
                    }
                    KeyValueStoreConfig::Redis { url }
                }
            };
            key_value_stores.insert(label, config);
        }

        let mut sqlite_databases = IndexMap::new();
        for (label, database) in raw.sqlite_database {
            let config = match database {
                RawStore::Spin { path } => SqliteDatabaseConfig::File {
                    path: path.map(anchor),
                },
                RawStore::Redis { .. } => {
                    return Err(invalid(format!(
                        "[sqlite_database.{label}] cannot be of type \"redis\"; use type = \"spin\" with a `path`"
                    )));
                }
            };
            sqlite_databases.insert(label, config);
        }

        let variables_providers = raw
            .variables_provider
            .into_iter()
            .map(|provider| match provider {
                RawProvider::Env {
                    prefix,
                    dotenv_path,
                } => VariablesProviderConfig::Env {
                    prefix: prefix.unwrap_or_else(|| "SPIN_VARIABLE".to_owned()),
                    dotenv_path: dotenv_path.map(anchor),
                },
                RawProvider::Static { values } => VariablesProviderConfig::Static { values },
            })
            .collect();

        Ok(Self {
            file: Some(path.to_path_buf()),
            key_value_stores,
            sqlite_databases,
            variables_providers,
            outbound_networking: OutboundNetworkingConfig {
                block_networks: raw
                    .outbound_networking
                    .map(|o| o.block_networks)
                    .unwrap_or_default(),
            },
        })
    }
}

/// The line of the key an "unknown field `key`" message names, if it appears once.
fn unknown_key_line(text: &str, message: &str) -> Option<usize> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    let mut lines = text.lines().enumerate().filter(|(_, line)| {
        line.trim_start()
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    let (index, _) = lines.next()?;
    lines.next().is_none().then_some(index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig, String> {
        RuntimeConfig::from_str(text, Path::new("/cfg/runtime-config.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_table() {
        let config = parse(
            r#"
[key_value_store.default]
type = "redis"
url = "redis://127.0.0.1:6379/1"

[key_value_store.cache]
type = "spin"
path = "data/cache.db"

[sqlite_database.default]
type = "spin"
path = "/abs/app.db"

[sqlite_database.scratch]
type = "spin"

[[variables_provider]]
type = "static"
values = { greeting = "hi" }

[[variables_provider]]
type = "env"
prefix = "MYAPP"

[outbound_networking]
block_networks = ["private", "100.64.0.0/10"]
"#,
        )
        .unwrap();
        assert_eq!(
            config.key_value_stores["default"],
            KeyValueStoreConfig::Redis {
                url: "redis://127.0.0.1:6379/1".into()
            }
        );
        assert_eq!(
            config.key_value_stores["cache"],
            KeyValueStoreConfig::Sqlite {
                path: "/cfg/data/cache.db".into()
            }
        );
        assert_eq!(
            config.sqlite_databases["default"],
            SqliteDatabaseConfig::File {
                path: Some("/abs/app.db".into())
            }
        );
        assert_eq!(
            config.sqlite_databases["scratch"],
            SqliteDatabaseConfig::File { path: None }
        );
        assert_eq!(config.variables_providers.len(), 2);
        assert_eq!(
            config.variables_providers[1],
            VariablesProviderConfig::Env {
                prefix: "MYAPP".into(),
                dotenv_path: None
            }
        );
        assert_eq!(
            config.outbound_networking.block_networks,
            ["private", "100.64.0.0/10"]
        );
    }

    #[test]
    fn misspelled_keys_name_the_key_and_file() {
        let err = parse("[key_value_stores.default]\ntype = \"spin\"\n").unwrap_err();
        assert!(err.contains("/cfg/runtime-config.toml"), "{err}");
        assert!(err.contains("key_value_stores"), "{err}");
        assert!(err.contains("line 1"), "{err}");

        let err =
            parse("[key_value_store.default]\ntype = \"spin\"\npaht = \"x.db\"\n").unwrap_err();
        assert!(err.contains("paht"), "{err}");
        assert!(err.contains("line 3"), "{err}");

        let err = parse("[key_value_store.default]\ntype = \"memcached\"\n").unwrap_err();
        assert!(err.contains("memcached"), "{err}");

        let err = parse("[outbound_networking]\nblock_network = []\n").unwrap_err();
        assert!(err.contains("block_network"), "{err}");
    }

    #[test]
    fn sqlite_kv_needs_a_path_and_redis_needs_a_redis_url() {
        let err = parse("[key_value_store.default]\ntype = \"spin\"\n").unwrap_err();
        assert!(err.contains("needs a `path`"), "{err}");
        let err =
            parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"http://x\"\n").unwrap_err();
        assert!(err.contains("redis://"), "{err}");
        let err = parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://x\"\n")
            .unwrap_err();
        assert!(
            err.contains("TLS (rediss://) is not supported yet"),
            "{err}"
        );
    }
}

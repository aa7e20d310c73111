//! `runtime-config.toml`: which backend serves each store, database and variable
//! provider. The table names are Spin's so one file serves both; unknown or misspelled
//! keys are errors that name the key and the file.
//!
//! The file is kept as text plus its top-level keys: each capability deserializes its own
//! tables from the text ([`RuntimeConfig::section`]), so an error inside one points at
//! its line as precisely as a single parse of the whole file would (a parsed
//! `toml::Value` has no positions left). Only what every capability shares is typed
//! here: `[[variables_provider]]` and `[outbound_networking]`.

use crate::HostError;
use crate::capability::{Capability, CapabilitySet, RuntimeConfigTable, default_capabilities};
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tables read outside any capability, after the capabilities' own in messages.
const CORE_TABLES: &[RuntimeConfigTable] = &[
    RuntimeConfigTable {
        key: "variables_provider",
        syntax: "[[variables_provider]]",
    },
    RuntimeConfigTable {
        key: "outbound_networking",
        syntax: "[outbound_networking]",
    },
    RuntimeConfigTable {
        key: "client_tls",
        syntax: "[[client_tls]]",
    },
];

/// The parsed runtime config. `RuntimeConfig::default()` is what `wisp up` uses when no
/// file is given: `default` stores and databases in the state directory, variables from
/// the environment.
#[derive(Clone, Default)]
pub struct RuntimeConfig {
    /// The file it came from, for messages.
    pub file: Option<PathBuf>,
    /// `[[variables_provider]]`, in file order.
    pub variables_providers: Vec<VariablesProviderConfig>,
    /// `[outbound_networking]`.
    pub outbound_networking: OutboundNetworkingConfig,
    /// `[[client_tls]]`, in file order (the first entry naming a component and host wins).
    pub client_tls: Vec<ClientTlsConfig>,
    /// Variables come only from the providers above, never from the process's
    /// environment (`SPIN_VARIABLE_*`) or a `.env` file: a host running many apps sets
    /// this so no app reads what the environment holds for another.
    pub isolated_environment: bool,
    /// The environment `type = "env"` providers (and the default `SPIN_VARIABLE_*` one)
    /// read; `None` reads the process's. The containerd shim sets the container's, which
    /// is not the process environment it runs in.
    pub environment: Option<Arc<std::collections::HashMap<String, String>>>,
    /// The file's text, which capabilities deserialize their tables from.
    text: Arc<str>,
    /// The top-level keys with their line, in file order.
    keys: Vec<(String, usize)>,
    /// The tables of the capability set it was checked against, for messages.
    tables: Arc<str>,
}

impl std::fmt::Debug for RuntimeConfig {
    // Not the text: a static variable provider may hold secrets in it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("file", &self.file)
            .field(
                "tables",
                &self.keys.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
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

/// One `[[client_tls]]` entry: outbound HTTPS from these components to these hosts uses
/// `tls` (its roots and client certificate) instead of the webpki roots alone.
#[derive(Debug, Clone)]
pub struct ClientTlsConfig {
    /// `component_ids`.
    pub component_ids: Vec<String>,
    /// `hosts`: host names without a port, lower case.
    pub hosts: Vec<String>,
    /// The TLS settings built from the entry's files.
    pub tls: wisp_outbound::ClientTls,
}

/// The core tables; other top-level keys are ignored here and checked by name.
#[derive(Deserialize)]
struct CoreTables {
    #[serde(default)]
    variables_provider: Vec<RawProvider>,
    #[serde(default)]
    outbound_networking: Option<RawOutbound>,
    #[serde(default)]
    client_tls: Vec<RawClientTls>,
}

/// `[[client_tls]]` as Spin reads it; `cert_chain_file` and `private_key_file` are the
/// names older Spin documentation gives the client certificate's files.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientTls {
    component_ids: Vec<String>,
    hosts: Vec<String>,
    ca_use_platform_roots: Option<bool>,
    ca_use_webpki_roots: Option<bool>,
    ca_roots_file: Option<PathBuf>,
    #[serde(alias = "cert_chain_file")]
    client_cert_file: Option<PathBuf>,
    #[serde(alias = "private_key_file")]
    client_private_key_file: Option<PathBuf>,
}

/// A `[key_value_store.<label>]` or `[sqlite_database.<label>]` table: Spin gives both
/// the same `type = "spin" | "redis"` shape, so both capabilities read it with this.
#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub(crate) enum RawStore {
    #[serde(rename = "spin")]
    Spin {
        path: Option<PathBuf>,
        /// Wisp's quota on what the store or database holds, in MiB.
        max_size_mb: Option<u64>,
    },
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

/// `max_size_mb` in bytes, `default` when absent; 0 is refused.
pub(crate) fn max_size(
    config: &RuntimeConfig,
    table: &str,
    max_size_mb: Option<u64>,
    default: u64,
) -> Result<u64, HostError> {
    match max_size_mb {
        None => Ok(default),
        Some(0) => Err(config.invalid(format!(
            "[{table}] max_size_mb must be at least 1 (or left out for the default of {} MiB)",
            default >> 20
        ))),
        Some(mb) => Ok(mb.saturating_mul(1 << 20)),
    }
}

impl RuntimeConfig {
    /// Reads and validates a runtime config file for Wisp's default capabilities.
    /// Relative paths inside it are relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, HostError> {
        Self::read(path, &default_capabilities())
    }

    /// [`RuntimeConfig::from_file`] for the capabilities of `set`: the tables they read
    /// are accepted and checked, any other key is an error.
    pub fn from_file_with<T>(path: &Path, set: &CapabilitySet<T>) -> Result<Self, HostError>
    where
        T: crate::CapabilitiesView + 'static,
    {
        Self::read(path, set.capabilities())
    }

    fn read(path: &Path, capabilities: &[Arc<dyn Capability>]) -> Result<Self, HostError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostError::RuntimeConfigIo {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, capabilities)
    }

    /// Parses runtime config text for Wisp's default capabilities; `path` names it in
    /// errors and anchors relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, HostError> {
        Self::parse(text, path, &default_capabilities())
    }

    /// [`RuntimeConfig::from_str`] for the capabilities of `set`.
    pub fn from_str_with<T>(
        text: &str,
        path: &Path,
        set: &CapabilitySet<T>,
    ) -> Result<Self, HostError>
    where
        T: crate::CapabilitiesView + 'static,
    {
        Self::parse(text, path, set.capabilities())
    }

    fn parse(
        text: &str,
        path: &Path,
        capabilities: &[Arc<dyn Capability>],
    ) -> Result<Self, HostError> {
        let mut config = Self {
            file: Some(path.to_path_buf()),
            text: text.into(),
            tables: describe_tables(capabilities).into(),
            ..Self::default()
        };
        let document =
            toml::de::DeTable::parse(text).map_err(|e| config.invalid(config.located(text, &e)))?;
        let mut keys: Vec<(String, usize)> = document
            .get_ref()
            .iter()
            .map(|(key, _)| {
                let line = text[..key.span().start].matches('\n').count() + 1;
                (key.get_ref().to_string(), line)
            })
            .collect();
        keys.sort_by_key(|(_, line)| *line);
        config.keys = keys;
        let mut config = config.check(capabilities)?;

        let core: CoreTables = config.section()?;
        config.variables_providers = core
            .variables_provider
            .into_iter()
            .map(|provider| match provider {
                RawProvider::Env {
                    prefix,
                    dotenv_path,
                } => VariablesProviderConfig::Env {
                    prefix: prefix.unwrap_or_else(|| "SPIN_VARIABLE".to_owned()),
                    dotenv_path: dotenv_path.map(|p| config.path(p)),
                },
                RawProvider::Static { values } => VariablesProviderConfig::Static { values },
            })
            .collect();
        config.outbound_networking = OutboundNetworkingConfig {
            block_networks: core
                .outbound_networking
                .map(|o| o.block_networks)
                .unwrap_or_default(),
        };
        config.client_tls = core
            .client_tls
            .into_iter()
            .enumerate()
            .map(|(index, raw)| config.client_tls_entry(index + 1, raw))
            .collect::<Result<_, _>>()?;
        Ok(config)
    }

    /// The `number`th `[[client_tls]]` entry, with its files read. As in Spin, roots
    /// default to the system's ("platform") unless `ca_roots_file` is given; Wisp has no
    /// platform verifier, so "platform" means the webpki roots here.
    fn client_tls_entry(
        &self,
        number: usize,
        raw: RawClientTls,
    ) -> Result<ClientTlsConfig, HostError> {
        let invalid =
            |message: String| self.invalid(format!("[[client_tls]] entry {number}: {message}"));
        if raw.component_ids.is_empty() || raw.hosts.is_empty() {
            return Err(invalid(
                "`component_ids` and `hosts` must each name at least one; write e.g. component_ids = [\"api\"], hosts = [\"db.internal.example\"]".to_owned(),
            ));
        }
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for host in &raw.hosts {
            match host.parse::<http::uri::Authority>() {
                Ok(authority)
                    if authority.port().is_none() && authority.as_str() == authority.host() =>
                {
                    hosts.push(authority.host().to_ascii_lowercase());
                }
                _ => {
                    return Err(invalid(format!(
                        "host {host:?} is not a plain host name; write the name alone, without scheme, port or path"
                    )));
                }
            }
        }
        let webpki = match (raw.ca_use_platform_roots, raw.ca_use_webpki_roots) {
            (platform, Some(webpki)) => webpki || platform.unwrap_or(false),
            (Some(platform), None) => platform,
            (None, None) => raw.ca_roots_file.is_none(),
        };
        let read = |path: &PathBuf, what: &str| {
            let path = self.path(path.clone());
            std::fs::read(&path)
                .map(|bytes| (path.clone(), bytes))
                .map_err(|e| invalid(format!("cannot read the {what} {}: {e}", path.display())))
        };
        let certificates = |path: &PathBuf, what: &str| {
            use rustls::pki_types::pem::PemObject;
            let (path, bytes) = read(path, what)?;
            let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(invalid(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            Ok(certs)
        };
        let roots = match &raw.ca_roots_file {
            Some(path) => certificates(path, "CA roots file")?,
            None => Vec::new(),
        };
        let client_cert = match (&raw.client_cert_file, &raw.client_private_key_file) {
            (Some(cert), Some(key)) => {
                use rustls::pki_types::pem::PemObject;
                let chain = certificates(cert, "client certificate")?;
                let (key_path, key_bytes) = read(key, "client key")?;
                let key =
                    rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
                        invalid(format!(
                            "{} holds no usable PEM private key: {e}",
                            key_path.display()
                        ))
                    })?;
                Some((chain, key))
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "client_cert_file and client_private_key_file go together; give both or neither".to_owned(),
                ));
            }
        };
        let tls = wisp_outbound::ClientTls::new(roots, webpki, client_cert).map_err(invalid)?;
        Ok(ClientTlsConfig {
            component_ids: raw.component_ids,
            hosts,
            tls,
        })
    }

    /// This config checked against `capabilities`: every top-level key is claimed by one
    /// of them or is a core table, and each capability's tables parse. Messages list the
    /// tables of `capabilities`. The typed core fields are kept as they are (an embedder
    /// may have set them in code).
    pub(crate) fn check(&self, capabilities: &[Arc<dyn Capability>]) -> Result<Self, HostError> {
        let config = Self {
            tables: describe_tables(capabilities).into(),
            ..self.clone()
        };
        let claimed: Vec<&'static str> = claimed_tables(capabilities).map(|t| t.key).collect();
        if let Some((key, line)) = config
            .keys
            .iter()
            .find(|(key, _)| !claimed.contains(&key.as_str()))
        {
            return Err(config.invalid(format!(
                "line {line}: unknown field `{key}`, {}; the tables Wisp reads are {}",
                expected(&claimed),
                config.tables
            )));
        }
        for capability in capabilities {
            capability.check_runtime_config(&config)?;
        }
        Ok(config)
    }

    /// Deserializes the tables `S` declares from the file (`S` ignores the others;
    /// nested types should deny unknown fields). An error names the file and the line.
    pub fn section<S: DeserializeOwned>(&self) -> Result<S, HostError> {
        toml::from_str(&self.text).map_err(|e| self.invalid(self.located(&self.text, &e)))
    }

    /// `path` as written in the file: relative paths are relative to the file's
    /// directory.
    pub fn path(&self, path: PathBuf) -> PathBuf {
        let file = self.file.as_deref().unwrap_or(Path::new(""));
        anchor(file.parent().unwrap_or(Path::new(".")), path)
    }

    /// An error about this file.
    pub fn invalid(&self, message: String) -> HostError {
        HostError::RuntimeConfig {
            file: self.file.clone().unwrap_or_default(),
            message,
        }
    }

    /// A parse error's message, prefixed with its line and followed by the tables Wisp
    /// reads.
    fn located(&self, text: &str, e: &toml::de::Error) -> String {
        // Tagged tables are buffered before they are checked, so serde's span points
        // at the table; for an unknown key, point at the key's own line instead.
        let line = unknown_key_line(text, e.message()).or_else(|| {
            e.span()
                .map(|span| text[..span.start].matches('\n').count() + 1)
        });
        let location = line.map(|l| format!("line {l}: ")).unwrap_or_default();
        format!(
            "{location}{}; the tables Wisp reads are {}",
            e.message().trim_end(),
            self.tables
        )
    }
}

fn anchor(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// The capabilities' tables, then the core ones.
fn claimed_tables(
    capabilities: &[Arc<dyn Capability>],
) -> impl Iterator<Item = &RuntimeConfigTable> {
    capabilities
        .iter()
        .flat_map(|c| c.runtime_config_tables())
        .chain(CORE_TABLES)
}

/// `[a], [b] and [c]`.
fn describe_tables(capabilities: &[Arc<dyn Capability>]) -> String {
    let tables: Vec<&str> = claimed_tables(capabilities).map(|t| t.syntax).collect();
    match tables.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// What serde says after an unknown field: "expected one of `a`, `b`".
fn expected(keys: &[&str]) -> String {
    match keys {
        [] => "there are no fields".to_owned(),
        [one] => format!("expected `{one}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        _ => format!(
            "expected one of {}",
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
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
    use crate::{KeyValue, KeyValueStoreConfig, Sqlite, SqliteDatabaseConfig};

    fn parse(text: &str) -> Result<RuntimeConfig, String> {
        RuntimeConfig::from_str(text, Path::new("/cfg/runtime-config.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn max_size_mb_must_be_positive() {
        for table in ["key_value_store", "sqlite_database"] {
            let err = parse(&format!(
                "[{table}.x]\ntype = \"spin\"\npath = \"x.db\"\nmax_size_mb = 0\n"
            ))
            .unwrap_err();
            assert!(
                err.contains(&format!("[{table}.x] max_size_mb must be at least 1")),
                "{err}"
            );
        }
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
max_size_mb = 5

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
        let key_value_stores = KeyValue::stores(&config).unwrap();
        let sqlite_databases = Sqlite::databases(&config).unwrap();
        assert_eq!(
            key_value_stores["default"],
            KeyValueStoreConfig::Redis {
                url: "redis://127.0.0.1:6379/1".into()
            }
        );
        assert_eq!(
            key_value_stores["cache"],
            KeyValueStoreConfig::Sqlite {
                path: "/cfg/data/cache.db".into(),
                max_size: 5 << 20,
            }
        );
        assert_eq!(
            sqlite_databases["default"],
            SqliteDatabaseConfig::File {
                path: Some("/abs/app.db".into()),
                max_size: wisp_storage::sqlite::DEFAULT_MAX_SIZE,
            }
        );
        assert_eq!(
            sqlite_databases["scratch"],
            SqliteDatabaseConfig::File {
                path: None,
                max_size: wisp_storage::sqlite::DEFAULT_MAX_SIZE,
            }
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
        assert!(
            parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://x\"\n").is_ok()
        );
    }
}

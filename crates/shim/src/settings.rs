//! What a container's environment asks of the shim: SpinKube's contract (the variables its
//! `spin-operator` sets and its shim reads), and Wisp's own `WISP_*` settings.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wisp_engine::EngineConfig;

/// Where the HTTP trigger listens (`host:port`).
pub const LISTEN_ADDR_ENV: &str = "SPIN_HTTP_LISTEN_ADDR";
/// SpinKube's default listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:80";
/// Comma-separated component ids to keep (SpinKube's selective deployment).
pub const COMPONENTS_TO_RETAIN_ENV: &str = "SPIN_COMPONENTS_TO_RETAIN";
/// Linear-memory cap of one instance, in bytes.
pub const MAX_INSTANCE_MEMORY_ENV: &str = "SPIN_MAX_INSTANCE_MEMORY";
/// Prefix of the variables that set app variables (`SPIN_VARIABLE_API_KEY` sets `api_key`).
pub const VARIABLE_PREFIX: &str = "SPIN_VARIABLE";
/// The runtime config, when the image or a mounted volume puts one there.
pub const RUNTIME_CONFIG_PATH: &str = "/runtime-config.toml";
/// Where a plain image keeps its manifest.
pub const MANIFEST_PATH: &str = "/spin.toml";
/// Where the shim keeps the app's state, unpacked layers and compiled code, unless
/// `WISP_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/.wisp";

/// Why the container's environment cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A variable holds a value the shim cannot use.
    #[error("{variable}={value:?}: {message}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong, and what it should be.
        message: String,
    },
}

/// The container's environment (`process.env` of its OCI spec), which is not the
/// environment of the process the shim runs it in.
#[derive(Debug, Clone, Default)]
pub struct ContainerEnv(HashMap<String, String>);

impl ContainerEnv {
    /// Parses `KEY=value` entries; a later entry for the same key wins, as in `execve`.
    pub fn from_entries<S: AsRef<str>>(entries: &[S]) -> Self {
        Self(
            entries
                .iter()
                .map(|entry| {
                    let (key, value) = entry
                        .as_ref()
                        .split_once('=')
                        .unwrap_or((entry.as_ref(), ""));
                    (key.to_owned(), value.to_owned())
                })
                .collect(),
        )
    }

    /// The value of `key`, if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// What app variables' providers read: the container's variables, plus, as SpinKube's
    /// shim does, `SPIN_VARIABLE_<NAME>` from a plain `<NAME>` for each of `app_variables`
    /// that has no prefixed value of its own.
    pub fn for_variables<'a>(
        &self,
        app_variables: impl IntoIterator<Item = &'a str>,
    ) -> Arc<HashMap<String, String>> {
        let mut environment = self.0.clone();
        for name in app_variables {
            let plain = name.to_ascii_uppercase();
            let prefixed = format!("{VARIABLE_PREFIX}_{plain}");
            if !environment.contains_key(&prefixed)
                && let Some(value) = self.0.get(&plain)
            {
                environment.insert(prefixed, value.clone());
            }
        }
        Arc::new(environment)
    }
}

/// Everything the shim takes from the container's environment.
#[derive(Debug, Clone)]
pub struct ShimSettings {
    /// `SPIN_HTTP_LISTEN_ADDR`.
    pub listen: SocketAddr,
    /// `SPIN_COMPONENTS_TO_RETAIN`: the components to keep; empty keeps them all.
    pub retain_components: Vec<String>,
    /// The engine: `SPIN_MAX_INSTANCE_MEMORY`, `WISP_MAX_INSTANCES`, `WISP_MEMORY_LIMIT_MB`,
    /// `WISP_MEMORY_BUDGET_MB` (default: half the container's memory limit),
    /// `WISP_REQUEST_TIMEOUT`, `WISP_CACHE_DIR`.
    pub engine: EngineConfig,
    /// `WISP_SHUTDOWN_GRACE`: how long in-flight requests may finish after SIGTERM
    /// (default 25 s, inside Kubernetes' default 30 s grace before SIGKILL).
    pub shutdown_grace: Duration,
    /// `WISP_STATE_DIR`: the app's stores, unpacked layers and compiled code.
    pub state_dir: PathBuf,
    /// `WISP_LOG` (or `RUST_LOG`): the log filter, default `info`.
    pub log_filter: String,
    /// `WISP_LOG_FORMAT=json`: one JSON object per log line.
    pub json_log: bool,
}

impl ShimSettings {
    /// The settings `env` gives, checked.
    pub fn from_env(env: &ContainerEnv) -> Result<Self, SettingsError> {
        let invalid =
            |variable: &'static str, value: &str, message: String| SettingsError::Invalid {
                variable,
                value: value.to_owned(),
                message,
            };
        let listen_text = env.get(LISTEN_ADDR_ENV).unwrap_or(DEFAULT_LISTEN_ADDR);
        let listen = listen_text
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| {
                invalid(
                    LISTEN_ADDR_ENV,
                    listen_text,
                    "not a listen address; use host:port, e.g. 0.0.0.0:80".to_owned(),
                )
            })?;
        let retain_components = env
            .get(COMPONENTS_TO_RETAIN_ENV)
            .map(|ids| {
                ids.split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let state_dir = PathBuf::from(env.get("WISP_STATE_DIR").unwrap_or(DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(invalid(
                "WISP_STATE_DIR",
                &state_dir.display().to_string(),
                "must be an absolute path".to_owned(),
            ));
        }

        let number = |variable: &'static str| -> Result<Option<u64>, SettingsError> {
            env.get(variable)
                .map(|text| {
                    text.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            invalid(
                                variable,
                                text,
                                "must be a whole number of at least 1".to_owned(),
                            )
                        })
                })
                .transpose()
        };
        let seconds = |variable: &'static str, default: f64| -> Result<Duration, SettingsError> {
            let Some(text) = env.get(variable) else {
                return Ok(Duration::from_secs_f64(default));
            };
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    invalid(
                        variable,
                        text,
                        "must be a number of seconds above 0".to_owned(),
                    )
                })
        };

        let mut engine = EngineConfig {
            cache_dir: Some(
                env.get("WISP_CACHE_DIR")
                    .map_or_else(|| state_dir.join("cache"), PathBuf::from),
            ),
            request_timeout: seconds("WISP_REQUEST_TIMEOUT", 30.0)?,
            ..EngineConfig::default()
        };
        if let Some(instances) = number("WISP_MAX_INSTANCES")? {
            engine.max_instances = u32::try_from(instances).unwrap_or(u32::MAX);
        }
        if let Some(mb) = number("WISP_MEMORY_BUDGET_MB")? {
            engine.memory_budget = mb.saturating_mul(1 << 20);
        }
        if let Some(mb) = number("WISP_MEMORY_LIMIT_MB")? {
            engine.memory_limit = mb.saturating_mul(1 << 20);
        }
        // SpinKube's own knob wins over Wisp's: the operator sets it from the SpinApp.
        // Linear memory grows in 64 KiB pages.
        const PAGE: u64 = 64 * 1024;
        if let Some(bytes) = number(MAX_INSTANCE_MEMORY_ENV)? {
            engine.memory_limit = bytes.div_ceil(PAGE).saturating_mul(PAGE);
        }
        if engine.memory_limit > engine.memory_budget {
            let variable = [MAX_INSTANCE_MEMORY_ENV, "WISP_MEMORY_LIMIT_MB"]
                .into_iter()
                .find(|variable| env.get(variable).is_some());
            match variable {
                // A small pod (say 128 MiB, so a 64 MiB budget) gets instances that fit it,
                // not a container that cannot start over a cap nobody set.
                None => engine.memory_limit = engine.memory_budget / PAGE * PAGE,
                Some(variable) => {
                    let budget = match env.get("WISP_MEMORY_BUDGET_MB") {
                        Some(_) => "WISP_MEMORY_BUDGET_MB",
                        None => "half the memory the container may use",
                    };
                    return Err(invalid(
                        variable,
                        env.get(variable).unwrap_or_default(),
                        format!(
                            "one instance may not use more than the memory all instances share ({} MiB, {budget}); lower it, or raise the budget or the pod's memory limit",
                            engine.memory_budget >> 20
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            listen,
            retain_components,
            engine,
            shutdown_grace: seconds("WISP_SHUTDOWN_GRACE", 25.0)?,
            state_dir,
            log_filter: env
                .get("WISP_LOG")
                .or_else(|| env.get("RUST_LOG"))
                .unwrap_or("info")
                .to_owned(),
            json_log: match env.get("WISP_LOG_FORMAT") {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => {
                    return Err(invalid(
                        "WISP_LOG_FORMAT",
                        other,
                        "must be `json` or `text`".to_owned(),
                    ));
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(entries: &[&str]) -> ContainerEnv {
        ContainerEnv::from_entries(entries)
    }

    #[test]
    fn defaults_follow_spinkube() {
        let settings = ShimSettings::from_env(&env(&["PATH=/usr/bin"])).unwrap();
        assert_eq!(settings.listen, "0.0.0.0:80".parse().unwrap());
        assert!(settings.retain_components.is_empty());
        assert_eq!(settings.state_dir, PathBuf::from("/.wisp"));
        assert_eq!(
            settings.engine.cache_dir,
            Some(PathBuf::from("/.wisp/cache"))
        );
        assert_eq!(settings.engine.memory_limit, 128 << 20);
        assert_eq!(settings.shutdown_grace, Duration::from_secs(25));
        assert_eq!(settings.log_filter, "info");
    }

    #[test]
    fn the_contract_variables_are_read() {
        let settings = ShimSettings::from_env(&env(&[
            "SPIN_HTTP_LISTEN_ADDR=127.0.0.1:8080",
            "SPIN_COMPONENTS_TO_RETAIN=hello, goodbye,,",
            "SPIN_MAX_INSTANCE_MEMORY=1000000",
            "WISP_MAX_INSTANCES=8",
            "WISP_MEMORY_BUDGET_MB=512",
            "WISP_SHUTDOWN_GRACE=2.5",
            "WISP_STATE_DIR=/data",
            "RUST_LOG=debug",
        ]))
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings.retain_components, ["hello", "goodbye"]);
        // Rounded up to whole 64 KiB pages.
        assert_eq!(settings.engine.memory_limit, 16 * 65536);
        assert_eq!(settings.engine.max_instances, 8);
        assert_eq!(settings.engine.memory_budget, 512 << 20);
        assert_eq!(settings.shutdown_grace, Duration::from_millis(2500));
        assert_eq!(
            settings.engine.cache_dir,
            Some(PathBuf::from("/data/cache"))
        );
        assert_eq!(settings.log_filter, "debug");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_fix() {
        for (entry, needle) in [
            ("SPIN_HTTP_LISTEN_ADDR=eighty", "use host:port"),
            ("SPIN_MAX_INSTANCE_MEMORY=lots", "whole number"),
            ("WISP_MAX_INSTANCES=0", "at least 1"),
            ("WISP_SHUTDOWN_GRACE=-1", "seconds above 0"),
            ("WISP_STATE_DIR=relative", "absolute"),
            ("WISP_LOG_FORMAT=xml", "`json` or `text`"),
            (
                "SPIN_MAX_INSTANCE_MEMORY=99999999999999999",
                "pod's memory limit",
            ),
        ] {
            let message = ShimSettings::from_env(&env(&[entry]))
                .unwrap_err()
                .to_string();
            let variable = entry.split('=').next().unwrap();
            assert!(message.starts_with(variable), "{message}");
            assert!(message.contains(needle), "{entry}: {message}");
        }
    }

    #[test]
    fn a_small_budget_lowers_the_default_instance_cap_but_refuses_a_set_one() {
        // What `wisp kube scaffold --plain --memory-limit 128Mi` hands the shim.
        let settings = ShimSettings::from_env(&env(&["WISP_MEMORY_BUDGET_MB=64"])).unwrap();
        assert_eq!(settings.engine.memory_budget, 64 << 20);
        assert_eq!(settings.engine.memory_limit, 64 << 20);
        let message = ShimSettings::from_env(&env(&[
            "WISP_MEMORY_BUDGET_MB=64",
            "WISP_MEMORY_LIMIT_MB=100",
        ]))
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("WISP_MEMORY_LIMIT_MB"), "{message}");
        assert!(
            message.contains("(64 MiB, WISP_MEMORY_BUDGET_MB)"),
            "{message}"
        );
    }

    #[test]
    fn plain_names_feed_app_variables_unless_prefixed() {
        let env = env(&[
            "API_KEY=plain",
            "REGION=eu",
            "SPIN_VARIABLE_REGION=prefixed",
            "UNRELATED=x",
        ]);
        let environment = env.for_variables(["api_key", "region", "missing"]);
        assert_eq!(environment["SPIN_VARIABLE_API_KEY"], "plain");
        assert_eq!(environment["SPIN_VARIABLE_REGION"], "prefixed");
        assert!(!environment.contains_key("SPIN_VARIABLE_MISSING"));
        assert!(!environment.contains_key("SPIN_VARIABLE_UNRELATED"));
        assert_eq!(environment["UNRELATED"], "x");
    }

    #[test]
    fn later_entries_win_and_empty_values_are_unset() {
        let env = env(&["A=1", "A=2", "B=", "C"]);
        assert_eq!(env.get("A"), Some("2"));
        assert_eq!(env.get("B"), None);
        assert_eq!(env.get("C"), None);
    }
}

//! Which app a request's host names, and the rules for app names and hosts.

use crate::{AppEntry, NodeError};
use std::collections::HashMap;
use std::sync::Arc;

/// Apps by name and by host.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) apps: HashMap<String, Arc<AppEntry>>,
    hosts: HashMap<String, Arc<AppEntry>>,
    /// `(".suffix", app)`, longest suffix first.
    wildcards: Vec<(String, Arc<AppEntry>)>,
}

impl Table {
    pub(crate) fn route(&self, host: &str) -> Option<&Arc<AppEntry>> {
        self.hosts.get(host).or_else(|| {
            self.wildcards
                .iter()
                .find(|(suffix, _)| host.ends_with(suffix.as_str()) && host.len() > suffix.len())
                .map(|(_, app)| app)
        })
    }

    pub(crate) fn owner_of(&self, host: &str) -> Option<&str> {
        match host.strip_prefix('*') {
            Some(suffix) => self
                .wildcards
                .iter()
                .find(|(s, _)| s == suffix)
                .map(|(_, app)| app.name.as_str()),
            None => self.hosts.get(host).map(|app| app.name.as_str()),
        }
    }

    /// Adds `entry`, replacing (and returning) the app of its name.
    pub(crate) fn insert(&mut self, entry: Arc<AppEntry>) -> Option<Arc<AppEntry>> {
        let old = self.apps.insert(entry.name.clone(), entry.clone());
        if let Some(old) = &old {
            self.unroute(old);
        }
        for host in &entry.record.hosts {
            match host.strip_prefix('*') {
                Some(suffix) => self.wildcards.push((suffix.to_owned(), entry.clone())),
                None => {
                    self.hosts.insert(host.clone(), entry.clone());
                }
            }
        }
        self.wildcards
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        old
    }

    fn unroute(&mut self, old: &Arc<AppEntry>) {
        for host in &old.record.hosts {
            if host.starts_with('*') {
                self.wildcards.retain(|(_, app)| !Arc::ptr_eq(app, old));
            } else if self
                .hosts
                .get(host)
                .is_some_and(|app| Arc::ptr_eq(app, old))
            {
                self.hosts.remove(host);
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<AppEntry>> {
        let old = self.apps.remove(name)?;
        self.unroute(&old);
        Some(old)
    }
}

/// `Example.com.:8080` → `example.com`.
pub(crate) fn host_name(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// App names are DNS labels: they become host names.
pub(crate) fn check_name(name: &str) -> Result<(), NodeError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    match ok {
        true => Ok(()),
        false => Err(NodeError::BadRequest(format!(
            "app name `{name}` is invalid: use 1 to 63 lowercase letters, digits and `-`, not starting with `-`"
        ))),
    }
}

/// A host name (`shop.example.com`) or wildcard (`*.example.com`), lowercased.
pub(crate) fn check_host(host: &str) -> Result<String, NodeError> {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    match labels_ok {
        true => Ok(lower),
        false => Err(NodeError::BadRequest(format!(
            "host `{host}` is invalid: give a host name (shop.example.com) or a wildcard (*.example.com), without a port"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DeploySource;
    use crate::store::{AppRecord, StoredApp};
    use crate::{LoadState, entry};

    #[test]
    fn hosts_route_exactly_then_by_the_longest_wildcard() {
        let app = |name: &str, hosts: &[&str]| {
            Arc::new(entry(
                StoredApp {
                    name: name.to_owned(),
                    version: 1,
                    deployed_at: 0,
                    record: AppRecord {
                        reference: String::new(),
                        digest: String::new(),
                        origin: String::new(),
                        source: DeploySource::Uploaded {
                            manifest: String::new(),
                        },
                        hosts: hosts.iter().map(|h| h.to_string()).collect(),
                        variables: Default::default(),
                        runtime_config: None,
                        limits: Default::default(),
                        trigger_types: vec![],
                        components: vec![],
                        app_version: None,
                    },
                },
                LoadState::Idle,
            ))
        };
        let mut table = Table::default();
        table.insert(app("shop", &["shop.example.com"]));
        table.insert(app("any", &["*.example.com"]));
        table.insert(app("eu", &["*.eu.example.com"]));
        fn routed(table: &Table, host: &str) -> Option<String> {
            table.route(host).map(|e| e.name.clone())
        }
        assert_eq!(routed(&table, "shop.example.com").as_deref(), Some("shop"));
        assert_eq!(routed(&table, "blog.example.com").as_deref(), Some("any"));
        assert_eq!(routed(&table, "a.eu.example.com").as_deref(), Some("eu"));
        assert_eq!(routed(&table, "example.com"), None);
        assert_eq!(routed(&table, "other.org"), None);
        assert_eq!(table.owner_of("*.example.com"), Some("any"));

        // A replacement takes over the hosts; the old version's vanish.
        table.insert(app("shop", &["store.example.com"]));
        assert_eq!(routed(&table, "shop.example.com").as_deref(), Some("any"));
        assert_eq!(routed(&table, "store.example.com").as_deref(), Some("shop"));
        assert!(table.remove("eu").is_some());
        assert_eq!(routed(&table, "a.eu.example.com").as_deref(), Some("any"));
    }

    #[test]
    fn names_and_hosts_are_checked() {
        assert!(check_name("hello-2").is_ok());
        for bad in ["", "-x", "Hello", "a.b", "a_b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(check_host("Shop.Example.com.").unwrap(), "shop.example.com");
        assert_eq!(check_host("*.example.com").unwrap(), "*.example.com");
        for bad in [
            "",
            "a..b",
            "shop.example.com:80",
            "*",
            "a.*.b",
            "-a.com",
            "a b",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert_eq!(host_name("Example.COM.:8080"), "example.com");
        assert_eq!(host_name("[::1]:3000"), "::1");
        assert_eq!(host_name("hello.localhost"), "hello.localhost");
    }
}

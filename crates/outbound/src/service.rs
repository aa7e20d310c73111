//! Destinations of non-HTTP outbound connections: Redis, MQTT, PostgreSQL, MySQL and raw
//! TCP. The same two checks as HTTP apply: the component's `allowed_outbound_hosts` on
//! the name as written (`redis://cache.internal:6379`), then the blocked networks on
//! every address it resolves to. The caller dials exactly the addresses returned, so a
//! second DNS answer cannot lead anywhere else.

use crate::{AllowedHosts, BlockedNetworks, allowed::well_known_port};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long a name lookup for a service connection may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A checked destination: dial only [`ServiceTarget::addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    /// `redis`, `mqtt`, `postgres`, `mysql`, ...
    pub scheme: String,
    /// The host as written (name or IP literal, without brackets).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// Resolved addresses outside the blocked networks, in resolver order.
    pub addresses: Vec<SocketAddr>,
}

impl ServiceTarget {
    /// `scheme://host:port`, for messages (never carries credentials).
    pub fn describe(&self) -> String {
        describe(&self.scheme, &self.host, self.port)
    }
}

/// Why a service connection may not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The address could not be parsed.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// `allowed_outbound_hosts` does not grant the destination.
    #[error(
        "{destination} is not allowed; add \"{destination}\" to the component's allowed_outbound_hosts"
    )]
    NotAllowed {
        /// `scheme://host:port`.
        destination: String,
    },
    /// Every address of the host lies in a blocked network.
    #[error(
        "{destination} resolves only to blocked addresses ({addresses}); see [outbound_networking] in the runtime config"
    )]
    Blocked {
        /// `scheme://host:port`.
        destination: String,
        /// The refused addresses.
        addresses: String,
    },
    /// The name did not resolve.
    #[error("cannot resolve {host:?}: {reason}")]
    Lookup {
        /// The host name.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
}

/// The scheme, host and port of a URL-style address (`redis://user:pw@host:6380/0`,
/// `mqtt://[::1]`), with the scheme's default port when none is written.
pub fn parse_service_url(address: &str) -> Result<(String, String, u16), ServiceError> {
    let invalid = |why: &str| {
        ServiceError::InvalidAddress(format!("{why} (expected scheme://host[:port]...)"))
    };
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| invalid("no scheme"))?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(invalid("bad scheme"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials may contain '@'; the host follows the last one.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("unclosed ["))?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        Some(port) => port.parse::<u16>().map_err(|_| invalid("bad port"))?,
        None => well_known_port(&scheme).ok_or_else(|| invalid("no port"))?,
    };
    Ok((scheme, host.to_owned(), port))
}

/// Checks `scheme://host:port` against the grants and the blocked networks and resolves
/// it. Both an IP literal and a name are checked against `allowed` as written.
pub async fn resolve_service(
    allowed: &AllowedHosts,
    blocked: &BlockedNetworks,
    scheme: &str,
    host: &str,
    port: u16,
) -> Result<ServiceTarget, ServiceError> {
    let destination = describe(scheme, host, port);
    if !allowed.allows(scheme, host, port) {
        return Err(ServiceError::NotAllowed { destination });
    }
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, port));
            let lookup_error = |reason: String| ServiceError::Lookup {
                host: host.to_owned(),
                reason,
            };
            tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
                .await
                .map_err(|_| lookup_error("timed out".to_owned()))?
                .map_err(|e| lookup_error(e.to_string()))?
                .collect()
        }
    };
    let (refused, permitted): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .into_iter()
        .partition(|addr| blocked.is_blocked(addr.ip()));
    if permitted.is_empty() {
        if refused.is_empty() {
            return Err(ServiceError::Lookup {
                host: host.to_owned(),
                reason: "no addresses".to_owned(),
            });
        }
        return Err(ServiceError::Blocked {
            destination,
            addresses: refused
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(ServiceTarget {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        port,
        addresses: permitted,
    })
}

fn describe(scheme: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("valid entries")
    }

    #[test]
    fn parses_service_urls() {
        let parse = |s| parse_service_url(s).expect(s);
        assert_eq!(
            parse("redis://127.0.0.1"),
            ("redis".into(), "127.0.0.1".into(), 6379)
        );
        assert_eq!(
            parse("redis://user:p@ss@cache:6380/2"),
            ("redis".into(), "cache".into(), 6380)
        );
        assert_eq!(parse("mqtt://[::1]"), ("mqtt".into(), "::1".into(), 1883));
        assert_eq!(
            parse("postgres://u:p@db.example.com/app?sslmode=disable"),
            ("postgres".into(), "db.example.com".into(), 5432)
        );
        assert!(parse_service_url("cache:6379").is_err());
        assert!(parse_service_url("redis://:6379").is_err());
        assert!(parse_service_url("redis://host:99999").is_err());
        assert!(
            parse_service_url("tcp://host").is_err(),
            "no default port for tcp"
        );
    }

    #[tokio::test]
    async fn checks_grants_then_blocked_networks() {
        let none = BlockedNetworks::parse(&[]).expect("empty block list");
        let target = resolve_service(
            &allowed(&["redis://127.0.0.1:6379"]),
            &none,
            "redis",
            "127.0.0.1",
            6379,
        )
        .await
        .expect("granted");
        assert_eq!(target.addresses, vec!["127.0.0.1:6379".parse().unwrap()]);

        let denied = resolve_service(
            &allowed(&["redis://127.0.0.1:6380"]),
            &none,
            "redis",
            "127.0.0.1",
            6379,
        )
        .await;
        assert_eq!(
            denied,
            Err(ServiceError::NotAllowed {
                destination: "redis://127.0.0.1:6379".into()
            })
        );

        let private = BlockedNetworks::parse(&["private".to_owned()]).expect("private");
        let blocked = resolve_service(
            &allowed(&["redis://localhost:6379"]),
            &private,
            "redis",
            "localhost",
            6379,
        )
        .await;
        assert!(
            matches!(blocked, Err(ServiceError::Blocked { .. })),
            "{blocked:?}"
        );
    }
}

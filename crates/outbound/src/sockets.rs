//! Raw sockets (`wasi:sockets`): which TCP and UDP peers a component may reach.
//!
//! A component gets outbound TCP (and name lookup) only when an `allowed_outbound_hosts`
//! entry has the scheme `tcp` or `*`, and UDP only for `udp` or `*`, as in Spin, which
//! checks a socket's peer as `tcp://ip:port` / `udp://ip:port`. Each connect (or datagram)
//! is then checked on the peer address the guest asked for:
//!
//! 1. the address must not be in the component's blocked networks;
//! 2. an entry with a matching scheme and port must cover it: host `*`, an IP literal or
//!    CIDR containing it, or an exact name that resolves to it *now*. Names are looked up
//!    at check time (bounded by [`LOOKUP_TIMEOUT`](crate::service::LOOKUP_TIMEOUT)) and
//!    never cached, so the grant follows DNS the way the guest's own lookup does, and a
//!    stale answer cannot keep an address open. `*.suffix` entries cannot be checked
//!    against an address (there is no name to look up) and grant no socket.
//!
//! Spin itself does not match name entries against socket addresses; accepting them is
//! a superset of Spin's behaviour, so a manifest Spin accepts means the same here.
//!
//! Local binds are limited to the wildcard address with port 0, which is what the OS
//! does implicitly on connect: a guest can never pick a port to listen on, and
//! listening or accepting is refused by the caller altogether.

use std::net::SocketAddr;

use crate::service::LOOKUP_TIMEOUT;
use crate::{AllowedHosts, BlockedNetworks};

/// The transport of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Stream sockets; granted by `tcp://` and `*://` entries.
    Tcp,
    /// Datagram sockets; granted by `udp://` and `*://` entries.
    Udp,
}

impl Protocol {
    /// The `allowed_outbound_hosts` scheme that grants this protocol.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Why a socket peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketDenied {
    /// No entry covers the peer.
    #[error(
        "{scheme}://{addr} is not allowed; add \"{scheme}://{addr}\" (or a name resolving to it, with its port) to the component's allowed_outbound_hosts"
    )]
    NotAllowed {
        /// `tcp` or `udp`.
        scheme: &'static str,
        /// The peer.
        addr: SocketAddr,
    },
    /// The peer lies in a blocked network.
    #[error(
        "{scheme}://{addr} is in a blocked network; see [outbound_networking] in the runtime config"
    )]
    Blocked {
        /// `tcp` or `udp`.
        scheme: &'static str,
        /// The peer.
        addr: SocketAddr,
    },
    /// The protocol is not granted at all.
    #[error(
        "{scheme} sockets are not granted; add a \"{scheme}://host:port\" entry to the component's allowed_outbound_hosts"
    )]
    ProtocolNotGranted {
        /// `tcp` or `udp`.
        scheme: &'static str,
    },
}

/// One component's socket grants, built once per component.
#[derive(Debug, Clone)]
pub struct SocketPolicy {
    tcp: bool,
    udp: bool,
    allowed: AllowedHosts,
    blocked: BlockedNetworks,
    /// Peers that a granted name resolved to on a recent outbound check. Incoming
    /// datagrams are matched against these (and IP entries) only, never by a lookup:
    /// any remote host can send datagrams, and must not be able to make the host resolve
    /// names once per packet.
    resolved_peers: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<SocketAddr>>>,
}

/// How many name-resolved peers [`SocketPolicy`] remembers for incoming datagrams.
const RESOLVED_PEERS: usize = 64;

impl SocketPolicy {
    /// The policy for a component with these grants and blocked networks; `None` when
    /// no entry grants TCP or UDP (the default), so callers can leave sockets off
    /// without any per-instance work.
    pub fn new(allowed: &AllowedHosts, blocked: &BlockedNetworks) -> Option<SocketPolicy> {
        let tcp = allowed.grants_scheme(Protocol::Tcp.scheme());
        let udp = allowed.grants_scheme(Protocol::Udp.scheme());
        (tcp || udp).then(|| SocketPolicy {
            tcp,
            udp,
            allowed: allowed.clone(),
            blocked: blocked.clone(),
            resolved_peers: Default::default(),
        })
    }

    /// Whether outbound TCP is granted at all.
    pub fn tcp(&self) -> bool {
        self.tcp
    }

    /// Whether UDP is granted at all.
    pub fn udp(&self) -> bool {
        self.udp
    }

    /// Whether a local bind to `addr` is allowed: only the wildcard address with port 0
    /// (an ephemeral port, as the OS picks on connect), and only for a granted protocol.
    pub fn allows_local_bind(&self, protocol: Protocol, addr: SocketAddr) -> bool {
        self.granted(protocol) && addr.ip().is_unspecified() && addr.port() == 0
    }

    /// Checks a peer: not blocked, and covered by an entry (see the module docs).
    pub async fn check_peer(
        &self,
        protocol: Protocol,
        addr: SocketAddr,
    ) -> Result<(), SocketDenied> {
        let scheme = protocol.scheme();
        if !self.granted(protocol) {
            return Err(SocketDenied::ProtocolNotGranted { scheme });
        }
        if self.blocked.is_blocked(addr.ip()) {
            return Err(SocketDenied::Blocked { scheme, addr });
        }
        if self.allowed.allows_ip(scheme, addr.ip(), addr.port()) {
            return Ok(());
        }
        let wanted = addr.ip().to_canonical();
        for name in self.allowed.names_for(scheme, addr.port()) {
            let lookup = tokio::net::lookup_host((name, addr.port()));
            let Ok(Ok(mut resolved)) = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await else {
                continue;
            };
            if resolved.any(|a| a.ip().to_canonical() == wanted) {
                let mut peers = self
                    .resolved_peers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !peers.contains(&addr) {
                    if peers.len() == RESOLVED_PEERS {
                        peers.pop_front();
                    }
                    peers.push_back(addr);
                }
                return Ok(());
            }
        }
        Err(SocketDenied::NotAllowed { scheme, addr })
    }

    /// Checks the sender of an incoming datagram without any name lookup: allowed if not
    /// blocked and covered by an IP, CIDR or `*` entry, or a peer a granted name resolved
    /// to when the guest sent to it.
    pub fn allows_received_from(&self, protocol: Protocol, addr: SocketAddr) -> bool {
        let scheme = protocol.scheme();
        if !self.granted(protocol) || self.blocked.is_blocked(addr.ip()) {
            return false;
        }
        self.allowed.allows_ip(scheme, addr.ip(), addr.port())
            || self
                .resolved_peers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&addr)
    }

    fn granted(&self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::Tcp => self.tcp,
            Protocol::Udp => self.udp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str], blocked: &[&str]) -> Option<SocketPolicy> {
        let allowed =
            AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("valid entries");
        let blocked =
            BlockedNetworks::parse(&blocked.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("valid block list");
        SocketPolicy::new(&allowed, &blocked)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn sockets_need_a_tcp_udp_or_wildcard_scheme() {
        assert!(policy(&[], &[]).is_none());
        assert!(policy(&["https://example.com", "redis://cache"], &[]).is_none());
        let tcp = policy(&["tcp://10.0.0.1:5000"], &[]).expect("tcp granted");
        assert!(tcp.tcp() && !tcp.udp());
        let udp = policy(&["udp://10.0.0.1:53"], &[]).expect("udp granted");
        assert!(!udp.tcp() && udp.udp());
        let any = policy(&["*://example.com:443"], &[]).expect("any scheme");
        assert!(any.tcp() && any.udp());
    }

    #[tokio::test]
    async fn peers_are_checked_by_address_port_and_block_list() {
        let p = policy(&["tcp://127.0.0.1:5000", "tcp://10.0.0.0/8:*"], &[]).unwrap();
        assert_eq!(
            p.check_peer(Protocol::Tcp, addr("127.0.0.1:5000")).await,
            Ok(())
        );
        assert_eq!(
            p.check_peer(Protocol::Tcp, addr("10.9.8.7:1")).await,
            Ok(())
        );
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert_eq!(
            p.check_peer(Protocol::Tcp, addr("[::ffff:127.0.0.1]:5000"))
                .await,
            Ok(())
        );
        assert!(matches!(
            p.check_peer(Protocol::Tcp, addr("127.0.0.1:5001")).await,
            Err(SocketDenied::NotAllowed { .. })
        ));
        assert!(matches!(
            p.check_peer(Protocol::Udp, addr("127.0.0.1:5000")).await,
            Err(SocketDenied::ProtocolNotGranted { scheme: "udp" })
        ));

        let blocked = policy(&["tcp://127.0.0.1:5000"], &["127.0.0.0/8"]).unwrap();
        assert!(matches!(
            blocked
                .check_peer(Protocol::Tcp, addr("127.0.0.1:5000"))
                .await,
            Err(SocketDenied::Blocked { .. })
        ));
        // Unspecified and link-local peers are blocked whatever the grant.
        let everything = policy(&["*://*:*"], &[]).unwrap();
        assert!(
            everything
                .check_peer(Protocol::Tcp, addr("0.0.0.0:80"))
                .await
                .is_err()
        );
        assert!(
            everything
                .check_peer(Protocol::Tcp, addr("169.254.169.254:80"))
                .await
                .is_err()
        );
        assert_eq!(
            everything
                .check_peer(Protocol::Udp, addr("192.0.2.1:53"))
                .await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_name_grants_the_addresses_it_resolves_to() {
        let p = policy(&["tcp://localhost:7000"], &[]).unwrap();
        assert_eq!(
            p.check_peer(Protocol::Tcp, addr("127.0.0.1:7000")).await,
            Ok(())
        );
        assert!(
            p.check_peer(Protocol::Tcp, addr("127.0.0.1:7001"))
                .await
                .is_err(),
            "the port must match too"
        );
        assert!(
            p.check_peer(Protocol::Tcp, addr("192.0.2.1:7000"))
                .await
                .is_err(),
            "an address the name does not resolve to"
        );
        // Subdomain wildcards and service-chaining names grant no socket.
        let p = policy(
            &["tcp://*.localhost:7000", "tcp://x.spin.internal:7000"],
            &[],
        )
        .unwrap();
        assert!(
            p.check_peer(Protocol::Tcp, addr("127.0.0.1:7000"))
                .await
                .is_err()
        );
    }

    #[test]
    fn only_ephemeral_wildcard_binds() {
        let p = policy(&["tcp://127.0.0.1:5000"], &[]).unwrap();
        assert!(p.allows_local_bind(Protocol::Tcp, addr("0.0.0.0:0")));
        assert!(p.allows_local_bind(Protocol::Tcp, addr("[::]:0")));
        assert!(!p.allows_local_bind(Protocol::Tcp, addr("0.0.0.0:8080")));
        assert!(!p.allows_local_bind(Protocol::Tcp, addr("127.0.0.1:0")));
        assert!(!p.allows_local_bind(Protocol::Udp, addr("0.0.0.0:0")));
    }

    #[tokio::test]
    async fn received_datagrams_are_checked_without_lookups() {
        let policy = policy(&["udp://10.0.0.53:53", "udp://localhost:5353"], &[]).unwrap();
        assert!(policy.allows_received_from(Protocol::Udp, addr("10.0.0.53:53")));
        assert!(!policy.allows_received_from(Protocol::Udp, addr("10.0.0.54:53")));
        // A name entry covers a sender only once the guest sent to it by that name.
        assert!(!policy.allows_received_from(Protocol::Udp, addr("127.0.0.1:5353")));
        policy
            .check_peer(Protocol::Udp, addr("127.0.0.1:5353"))
            .await
            .expect("localhost resolves to 127.0.0.1");
        assert!(policy.allows_received_from(Protocol::Udp, addr("127.0.0.1:5353")));
        assert!(!policy.allows_received_from(Protocol::Tcp, addr("10.0.0.53:53")));
    }
}

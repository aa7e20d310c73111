//! `[outbound_networking] block_networks`: IP networks no component may connect to.
//!
//! ```toml
//! [outbound_networking]
//! block_networks = ["10.0.0.0/8", "private"]
//! ```
//!
//! Each entry is a CIDR block (a bare address means just that address) or the keyword
//! `private`. As in Spin (`spin-factor-outbound-networking`, which blocks every address
//! for which `ip_network`'s `is_global()` is false), `private` blocks every address the
//! IANA IPv4 and IPv6 special-purpose address registries mark as not globally
//! reachable:
//!
//! - IPv4: `0.0.0.0/8`, `10.0.0.0/8`, `100.64.0.0/10`, `127.0.0.0/8`, `169.254.0.0/16`,
//!   `172.16.0.0/12`, `192.0.0.0/24` (except `192.0.0.9` and `192.0.0.10`),
//!   `192.0.2.0/24`, `192.168.0.0/16`, `198.18.0.0/15`, `198.51.100.0/24`,
//!   `203.0.113.0/24`, `240.0.0.0/4` (which includes `255.255.255.255`);
//! - IPv6: `::/128`, `::1/128`, `64:ff9b:1::/48`, `100::/64`, `2001::/23` (except the
//!   globally reachable `2001:1::1`, `2001:1::2`, `2001:3::/32`, `2001:4:112::/48`,
//!   `2001:20::/28`, `2001:30::/28`), `2001:db8::/32`, `3fff::/20`, `5f00::/16`,
//!   `fc00::/7`, `fe80::/10`.
//!
//! Independently of the configuration, the link-local networks `169.254.0.0/16` (where
//! cloud metadata services listen) and `fe80::/10` are always blocked, unless a
//! component's `allowed_outbound_hosts` names an address or CIDR inside them
//! ([`BlockedNetworks::for_component`]). An operator's explicit entry or `private`
//! still wins over such a component.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) and the deprecated IPv4-compatible
//! form (`::10.0.0.1`) are checked as the IPv4 address they carry, so an IPv6 spelling
//! cannot slip past an IPv4 rule.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::OutboundError;
use crate::allowed::AllowedHosts;

/// The link-local networks blocked unless a component names them.
pub const LINK_LOCAL: [IpNet; 2] = [
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16)),
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
    )),
];

/// The networks outbound connections may not reach. Cheap to clone.
///
/// [`BlockedNetworks::default`] blocks only the always-on link-local networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockedNetworks {
    inner: Arc<Inner>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Inner {
    /// Explicit entries, truncated to their network address.
    networks: Vec<IpNet>,
    /// Whether `private` was given.
    private: bool,
    /// Parts of [`LINK_LOCAL`] a component named explicitly.
    link_local_allowed: Vec<IpNet>,
}

impl BlockedNetworks {
    /// Parses `block_networks` from the runtime config.
    pub fn parse(entries: &[String]) -> Result<BlockedNetworks, OutboundError> {
        let mut inner = Inner::default();
        for entry in entries {
            let text = entry.trim();
            if text == "private" {
                inner.private = true;
                continue;
            }
            let net = text
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| OutboundError::InvalidBlockedNetwork {
                    entry: entry.clone(),
                    reason: "expected a cidr block such as \"10.0.0.0/8\" or \"fd00::/8\", an ip address, or the keyword \"private\"".into(),
                })?;
            inner.networks.push(net);
        }
        Ok(BlockedNetworks {
            inner: Arc::new(inner),
        })
    }

    /// The blocked networks as seen by one component: the link-local networks are
    /// opened exactly as far as its `allowed_outbound_hosts` names addresses inside them
    /// (an entry like `http://169.254.169.254`); everything else is unchanged.
    pub fn for_component(&self, allowed: &AllowedHosts) -> BlockedNetworks {
        let link_local_allowed: Vec<IpNet> = LINK_LOCAL
            .iter()
            .flat_map(|net| allowed.ip_entries_in(*net))
            .collect();
        if link_local_allowed == self.inner.link_local_allowed {
            return self.clone();
        }
        BlockedNetworks {
            inner: Arc::new(Inner {
                networks: self.inner.networks.clone(),
                private: self.inner.private,
                link_local_allowed,
            }),
        }
    }

    /// Whether `private` was configured.
    pub fn blocks_private(&self) -> bool {
        self.inner.private
    }

    /// The explicitly configured networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.inner.networks
    }

    /// Whether connecting to `ip` is forbidden.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        // Dialling 0.0.0.0 or :: reaches this host's own loopback services on Linux;
        // no grant can mean that.
        if ip.is_unspecified() || matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 0) {
            return true;
        }
        if self.blocks_exactly(ip) {
            return true;
        }
        // `::a.b.c.d` (deprecated IPv4-compatible) carries an IPv4 address too; `::` and
        // `::1` are excluded because they are the IPv6 unspecified and loopback addresses.
        if let IpAddr::V6(v6) = ip {
            let bits = u128::from(v6);
            if bits >> 32 == 0 && bits > 1 {
                return self.blocks_exactly(IpAddr::V4(Ipv4Addr::from(bits as u32)));
            }
        }
        false
    }

    fn blocks_exactly(&self, ip: IpAddr) -> bool {
        let inner = &self.inner;
        if inner.networks.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if inner.private && !is_global(ip) {
            return true;
        }
        LINK_LOCAL.iter().any(|net| net.contains(&ip))
            && !inner.link_local_allowed.iter().any(|net| net.contains(&ip))
    }
}

impl fmt::Display for BlockedNetworks {
    /// A one-line summary for the start-up banner.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.inner.private {
            parts.push("private".into());
        }
        parts.extend(self.inner.networks.iter().map(ToString::to_string));
        parts.push("link-local".into());
        f.write_str(&parts.join(", "))
    }
}

/// Whether the IANA special-purpose registries call `ip` globally reachable.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, d] = ip.octets();
    let not_global = a == 0 // "this network"
        || a == 10 // private
        || (a == 100 && b & 0xc0 == 64) // shared address space
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local
        || (a == 172 && b & 0xf0 == 16) // private
        || (a == 192 && b == 0 && c == 0 && d != 9 && d != 10) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 168) // private
        || (a == 198 && b & 0xfe == 18) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 240; // reserved, and the limited broadcast address
    !not_global
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let ietf_assignment = s[0] == 0x2001 && s[1] < 0x200;
    // Inside 2001::/23, these are marked globally reachable.
    let ietf_global = ip == Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1)
        || ip == Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2)
        || s[1] == 3 // AMT
        || (s[1] == 4 && s[2] == 0x112) // AS112-v6
        || (0x20..=0x3f).contains(&s[1]); // ORCHIDv2, drone remote ID
    let not_global = ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use IPv4/IPv6 translation
        || (s[0] == 0x100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || (ietf_assignment && !ietf_global)
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || s[0] & 0xfff0 == 0x3ff0 // documentation
        || s[0] == 0x5f00 // segment routing
        || s[0] & 0xfe00 == 0xfc00 // unique local
        || s[0] & 0xffc0 == 0xfe80; // link-local
    !not_global
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(entries: &[&str]) -> BlockedNetworks {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        BlockedNetworks::parse(&entries).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unspecified_addresses_are_always_blocked() {
        // Dialling them reaches loopback on Linux, whatever the configuration says.
        let none = blocked(&[]);
        for addr in ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0"] {
            assert!(none.is_blocked(ip(addr)), "{addr}");
        }
        assert!(!none.is_blocked(ip("127.0.0.1")));
    }

    #[test]
    fn private_blocks_non_global_addresses() {
        let b = blocked(&["private"]);
        assert!(b.blocks_private());
        for addr in [
            "0.0.0.0",
            "10.10.10.10",
            "100.64.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.10.10.10",
            "::ffff:127.0.0.1",
            "64:ff9b:1::1",
            "100::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "fc00::f00d",
            "fd12:3456::1",
            "fe80::1",
        ] {
            assert!(b.is_blocked(ip(addr)), "{addr} should be blocked");
        }
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.0.9",
            "192.0.0.10",
            "192.169.0.1",
            "123.123.123.123",
            "2600::beef",
            "2001:4860:4860::8888",
            "2001:3::1",
            "2001:20::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!b.is_blocked(ip(addr)), "{addr} should not be blocked");
        }
    }

    #[test]
    fn explicit_networks() {
        let b = blocked(&[
            "10.0.0.0/8",
            "1.2.3.4",
            "2001:db8:1::/48",
            " 192.168.7.9/16 ",
        ]);
        assert!(!b.blocks_private());
        assert!(b.is_blocked(ip("10.255.0.1")));
        assert!(b.is_blocked(ip("1.2.3.4")));
        assert!(!b.is_blocked(ip("1.2.3.5")));
        assert!(b.is_blocked(ip("2001:db8:1::42")));
        assert!(!b.is_blocked(ip("2001:db8:2::42")));
        // Host bits are dropped, as Spin does.
        assert!(b.is_blocked(ip("192.168.200.1")));
        assert!(!b.is_blocked(ip("127.0.0.1")));
        assert!(!b.is_blocked(ip("8.8.8.8")));
        assert_eq!(b.networks().len(), 4);
    }

    #[test]
    fn ipv4_mapped_and_compatible_ipv6_are_checked_as_ipv4() {
        let b = blocked(&["127.0.0.0/8"]);
        assert!(b.is_blocked(ip("::ffff:127.0.0.1")));
        assert!(b.is_blocked(ip("::127.0.0.1")));
        assert!(!b.is_blocked(ip("::ffff:8.8.8.8")));
        // The IPv6 loopback is its own address, not 0.0.0.1.
        assert!(!blocked(&["0.0.0.0/8"]).is_blocked(ip("::1")));
    }

    #[test]
    fn link_local_is_always_blocked() {
        for b in [
            BlockedNetworks::default(),
            blocked(&[]),
            blocked(&["10.0.0.0/8"]),
        ] {
            assert!(b.is_blocked(ip("169.254.169.254")));
            assert!(b.is_blocked(ip("::ffff:169.254.169.254")));
            assert!(b.is_blocked(ip("fe80::1")));
            assert!(!b.is_blocked(ip("127.0.0.1")));
            assert!(!b.is_blocked(ip("192.168.1.1")));
        }
    }

    #[test]
    fn link_local_opens_only_where_a_component_names_it() {
        let allowed = AllowedHosts::parse(&["http://169.254.169.254".to_owned()]).unwrap();
        let b = BlockedNetworks::default().for_component(&allowed);
        assert!(!b.is_blocked(ip("169.254.169.254")));
        assert!(!b.is_blocked(ip("::ffff:169.254.169.254")));
        assert!(b.is_blocked(ip("169.254.169.253")));
        assert!(b.is_blocked(ip("fe80::1")));

        let v6 = AllowedHosts::parse(&["http://[fe80::]/64".to_owned()]).unwrap();
        let b = BlockedNetworks::default().for_component(&v6);
        assert!(!b.is_blocked(ip("fe80::1")));
        assert!(b.is_blocked(ip("fe80:1::1")));

        // Broad grants do not count as naming the metadata range.
        for broad in ["*://*:*", "*://0.0.0.0/0:*", "http://metadata.internal"] {
            let allowed = AllowedHosts::parse(&[broad.to_owned()]).unwrap();
            let b = BlockedNetworks::default().for_component(&allowed);
            assert!(b.is_blocked(ip("169.254.169.254")), "{broad}");
        }

        // The operator's configuration wins over the component.
        let b = blocked(&["private"]).for_component(&allowed);
        assert!(b.is_blocked(ip("169.254.169.254")));
        let b = blocked(&["169.254.169.254/32"]).for_component(&allowed);
        assert!(b.is_blocked(ip("169.254.169.254")));
    }

    #[test]
    fn bad_entries_are_reported() {
        for entry in ["10.0.0.0/33", "privat", "", "example.com", "10.0.0/8"] {
            let err = BlockedNetworks::parse(&[entry.to_owned()]).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid [outbound_networking] block_networks entry {entry:?}: expected a cidr block"
                )),
                "{message}"
            );
            assert!(message.contains("\"private\""), "{message}");
        }
    }

    #[test]
    fn display_summarizes() {
        assert_eq!(
            blocked(&["private", "10.0.0.0/8"]).to_string(),
            "private, 10.0.0.0/8, link-local"
        );
        assert_eq!(BlockedNetworks::default().to_string(), "link-local");
    }
}

//! `allowed_outbound_hosts`: which destinations a component declared it talks to.
//!
//! The grammar follows Spin's (`spin-factor-outbound-networking`), so a `spin.toml`
//! that Spin accepts means the same here:
//!
//! ```text
//! entry  = scheme "://" host [ ":" port ] [ "/" ]
//! scheme = "*" | a name such as http, https, redis, mqtt, postgres, mysql
//! host   = "*"                      any host (names and IP addresses)
//!        | "*." name                any subdomain of name, not name itself
//!        | name                     exactly this name (case-insensitive)
//!        | ipv4 | "[" ipv6 "]"      exactly this address
//!        | ipv4 "/" len | ipv6 "/" len | "[" ipv6 "]/" len    a CIDR block
//!        | "self" | "self.alt"      the app itself (requests by route)
//! port   = number | "*" | start ".." end     (end exclusive, as in Spin)
//! ```
//!
//! Without a port, the scheme's well-known port applies (http 80, https 443, redis 6379,
//! mqtt 1883, postgres 5432, mysql 3306); the scheme `*` or any other scheme needs an
//! explicit port. Hosts ending in `.spin.internal` name components of the same app
//! (service chaining) and are never looked up in DNS.
//!
//! Port ranges: Spin parses `8000..8010` into a Rust `Range`, whose end is exclusive,
//! so it allows 8000 through 8009. We keep that meaning so the same manifest grants the
//! same ports; write `8000..8011` to include 8010.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::OutboundError;

/// The domain under which components of the same app are addressed for service chaining.
pub const SERVICE_CHAINING_DOMAIN: &str = "spin.internal";

/// The parsed `allowed_outbound_hosts` of one component.
///
/// Empty (the default) allows nothing: outbound access is deny by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    original: String,
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemePattern {
    Any,
    /// Lowercase.
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    SelfApp,
    /// Lowercase, without a trailing dot.
    Name(String),
    /// The suffix including its leading dot (`.example.com`), lowercase.
    Subdomain(String),
    /// An address (as a host-length prefix) or a CIDR block, truncated to its network.
    Ip(IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    Exact(u16),
    /// `start..end`, end exclusive.
    Range(u16, u16),
}

impl AllowedHosts {
    /// Parses a component's `allowed_outbound_hosts`.
    ///
    /// Templates (`{{ var }}`) must already be expanded by the caller. The first bad
    /// entry is reported with what is wrong and how to write it instead.
    pub fn parse(patterns: &[String]) -> Result<AllowedHosts, OutboundError> {
        let patterns = patterns
            .iter()
            .map(|p| {
                parse_pattern(p).map_err(|reason| OutboundError::InvalidAllowedHost {
                    pattern: p.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts { patterns })
    }

    /// True when no entry is present, so every outbound request is denied.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The entries as written, for messages and start-up summaries.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.original.as_str())
    }

    /// Whether a request to `scheme://host:port` is allowed.
    ///
    /// `host` may be a name or an IP literal (IPv6 with or without brackets); an IP
    /// literal is checked with [`AllowedHosts::allows_ip`]. `self` and `.spin.internal`
    /// hosts are not network destinations: use [`Destination::classify`] and
    /// [`AllowedHosts::allows_destination`] for request URIs.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if let Some(ip) = parse_ip_literal(host) {
            return self.allows_ip(scheme, ip, port);
        }
        let name = normalize_name(host);
        self.matching(scheme, port).any(|p| match &p.host {
            HostPattern::Any => true,
            HostPattern::Name(n) => *n == name,
            // A non-empty label must precede the suffix: `*.example.com` is not the apex.
            HostPattern::Subdomain(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
            HostPattern::SelfApp | HostPattern::Ip(_) => false,
        })
    }

    /// Whether a connection to `ip:port` over `scheme` is allowed.
    ///
    /// Only `*`, IP and CIDR entries match an address: a name entry never does, because
    /// the name is what the app author vouched for, not whichever address it resolves to.
    /// An IPv4-mapped IPv6 address also matches entries for its IPv4 address.
    pub fn allows_ip(&self, scheme: &str, ip: IpAddr, port: u16) -> bool {
        let canonical = ip.to_canonical();
        self.matching(scheme, port).any(|p| match &p.host {
            HostPattern::Any => true,
            HostPattern::Ip(net) => net.contains(&ip) || net.contains(&canonical),
            _ => false,
        })
    }

    /// Whether the component may send requests to its own app (a relative URI, or the
    /// host `self` / `self.alt`).
    ///
    /// Granted by an `http`/`https` (or `*`) entry for `self`, `self.alt` or `*`, as in
    /// Spin, where a wildcard host also covers the app itself.
    pub fn allows_self(&self) -> bool {
        self.patterns.iter().any(|p| {
            matches!(p.host, HostPattern::SelfApp | HostPattern::Any)
                && (p.scheme.matches("http") || p.scheme.matches("https"))
        })
    }

    /// Whether the component may chain to component `id` via `http://<id>.spin.internal`.
    pub fn allows_component(&self, id: &str) -> bool {
        !id.is_empty() && self.allows("http", &format!("{id}.{SERVICE_CHAINING_DOMAIN}"), 80)
    }

    /// Whether a classified request destination is allowed.
    pub fn allows_destination(&self, destination: &Destination) -> bool {
        match destination {
            Destination::SelfApp => self.allows_self(),
            Destination::Component(id) => self.allows_component(id),
            Destination::Network { scheme, host, port } => self.allows(scheme, host, *port),
        }
    }

    /// Whether an entry names an IP address or CIDR block lying entirely inside `net`.
    ///
    /// Used to lift the always-on link-local block for a component that explicitly asked
    /// for, say, `http://169.254.169.254`; a broad `*` or `0.0.0.0/0` does not count.
    pub fn names_ip_in(&self, net: IpNet) -> bool {
        self.ip_entries_in(net).next().is_some()
    }

    /// The IP/CIDR entries lying entirely inside `net`.
    pub(crate) fn ip_entries_in(&self, net: IpNet) -> impl Iterator<Item = IpNet> + '_ {
        self.patterns.iter().filter_map(move |p| match p.host {
            HostPattern::Ip(entry) if net.contains(&entry) => Some(entry),
            _ => None,
        })
    }

    /// Whether any entry's scheme covers `scheme` (the entry names it or is `*`),
    /// whatever its host and port: decides whether a kind of raw socket is enabled at all.
    pub fn grants_scheme(&self, scheme: &str) -> bool {
        self.patterns.iter().any(|p| p.scheme.matches(scheme))
    }

    /// The exact host names of the entries that cover `scheme` and `port`, for checking
    /// an address against what those names resolve to. Service-chaining names
    /// (`*.spin.internal`) are left out: they are never looked up in DNS.
    pub fn names_for(&self, scheme: &str, port: u16) -> impl Iterator<Item = &str> {
        self.matching(scheme, port).filter_map(|p| match &p.host {
            HostPattern::Name(name)
                if !name
                    .strip_suffix(SERVICE_CHAINING_DOMAIN)
                    .is_some_and(|rest| rest.is_empty() || rest.ends_with('.')) =>
            {
                Some(name.as_str())
            }
            _ => None,
        })
    }

    fn matching(&self, scheme: &str, port: u16) -> impl Iterator<Item = &Pattern> {
        self.patterns
            .iter()
            .filter(move |p| p.scheme.matches(scheme) && p.port.matches(port))
    }
}

impl SchemePattern {
    fn matches(&self, scheme: &str) -> bool {
        match self {
            SchemePattern::Any => true,
            SchemePattern::Exact(s) => s.eq_ignore_ascii_case(scheme),
        }
    }
}

impl PortPattern {
    fn matches(&self, port: u16) -> bool {
        match *self {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == port,
            PortPattern::Range(start, end) => (start..end).contains(&port),
        }
    }
}

/// Where an outgoing request goes, decided from its URI before any policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The app itself: a relative URI (`/api`) or the host `self` / `self.alt`.
    SelfApp,
    /// Another component of the app, `<id>.spin.internal` (service chaining); never
    /// resolved in DNS. The id is the host without the `.spin.internal` suffix.
    Component(String),
    /// A host on the network.
    Network {
        /// Lowercase; `http` when the URI has none.
        scheme: String,
        /// Lowercase, IPv6 without brackets, no trailing dot.
        host: String,
        /// The explicit port, else the scheme's well-known port, else 0 (which no
        /// entry but a `*` port allows, and which cannot be dialled).
        port: u16,
    },
}

impl Destination {
    /// Classifies a request URI.
    pub fn classify(uri: &http::Uri) -> Destination {
        let Some(authority) = uri.authority() else {
            return Destination::SelfApp;
        };
        let host = normalize_name(authority.host());
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map(str::to_owned)
            .unwrap_or(host);
        if host == "self" || host == "self.alt" {
            return Destination::SelfApp;
        }
        if host == SERVICE_CHAINING_DOMAIN {
            return Destination::Component(String::new());
        }
        if let Some(id) = host
            .strip_suffix(SERVICE_CHAINING_DOMAIN)
            .and_then(|h| h.strip_suffix('.'))
        {
            return Destination::Component(id.to_owned());
        }
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let port = authority
            .port_u16()
            .or_else(|| well_known_port(&scheme))
            .unwrap_or(0);
        Destination::Network { scheme, host, port }
    }
}

/// The port a scheme uses when none is written, as in Spin.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        _ => None,
    }
}

fn normalize_name(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// An IP literal as it may appear in a URI host: `1.2.3.4`, `::1` or `[::1]`.
fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

fn parse_pattern(original: &str) -> Result<Pattern, String> {
    let entry = original.trim();
    if entry.is_empty() {
        return Err(
            "the entry is empty; write a destination such as \"https://example.com\"".into(),
        );
    }
    if entry == "insecure:allow-all" {
        return Err(
            "\"insecure:allow-all\" is not supported; use \"*://*:*\" if you really mean to allow every destination"
                .into(),
        );
    }
    if entry.starts_with('/') {
        return Err(
            "relative entries are not supported; use \"http://self\" or \"https://self\" to allow requests to this app"
                .into(),
        );
    }
    if entry.contains("{{") {
        return Err(
            "the entry still contains a template; variables must be resolved before the entry is checked"
                .into(),
        );
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err(format!(
            "the entry has no scheme; write it as \"https://{entry}\", or \"*://{entry}\" for any scheme"
        ));
    };
    let scheme = parse_scheme(scheme)?;
    let (host_text, port_text) = split_authority(rest)?;
    let host = parse_host(host_text)?;
    let port = parse_port(port_text, &scheme, host_text)?;
    Ok(Pattern {
        original: original.to_owned(),
        scheme,
        host,
        port,
    })
}

fn parse_scheme(scheme: &str) -> Result<SchemePattern, String> {
    if scheme == "*" {
        return Ok(SchemePattern::Any);
    }
    if scheme.starts_with('{') {
        return Err("scheme lists are not supported; write one entry per scheme".into());
    }
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return Err(format!(
            "scheme {scheme:?} is not valid; use a name such as \"https\" or \"*\" for any scheme"
        ));
    }
    Ok(SchemePattern::Exact(scheme.to_ascii_lowercase()))
}

const PATH_ERROR: &str = "entries cannot contain a path; write only scheme://host[:port], for example \"https://example.com:443\"";

/// Splits `host[:port][/]` into the host text and the port text.
fn split_authority(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.is_empty() || rest == "/" {
        return Err("the entry has no host; write it as \"https://example.com\"".into());
    }
    if rest.starts_with('[') {
        let close = rest
            .find(']')
            .ok_or("the ipv6 address has no closing \"]\"; write it as \"[::1]\"")?;
        // An IPv6 CIDR may put its prefix length after the bracket: `[fd00::]/8`.
        let mut host_end = close + 1;
        if let Some(len) = rest[host_end..].strip_prefix('/') {
            let digits = len.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                host_end += 1 + digits;
            }
        }
        let (host, after) = rest.split_at(host_end);
        return match after {
            "" | "/" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port_without_slash(port)?))),
                None => Err(PATH_ERROR.into()),
            },
        };
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    // A bare IP or CIDR (which may contain ':' and '/') has no port.
    if rest.parse::<IpAddr>().is_ok() || rest.parse::<IpNet>().is_ok() {
        return Ok((rest, None));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(port_without_slash(port)?))),
        None => Ok((rest, None)),
    }
}

fn port_without_slash(port: &str) -> Result<&str, String> {
    match port.split_once('/') {
        Some((port, "")) => Ok(port),
        Some(_) => Err(PATH_ERROR.into()),
        None => Ok(port),
    }
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Err("the entry has no host; write it as \"https://example.com\"".into());
    }
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    let lower = host.to_ascii_lowercase();
    if lower == "self" || lower == "self.alt" {
        return Ok(HostPattern::SelfApp);
    }
    if host.starts_with('{') {
        return Err("host lists are not supported; write one entry per host".into());
    }
    if let Some(inner) = host.strip_prefix('[') {
        // `[::1]`, `[fd00::]/8` or `[fd00::/8]`.
        let unbracketed = inner.replacen(']', "", 1);
        return match (
            unbracketed.parse::<std::net::Ipv6Addr>(),
            unbracketed.parse::<IpNet>(),
        ) {
            (Ok(ip), _) => Ok(HostPattern::Ip(IpNet::from(IpAddr::V6(ip)))),
            (_, Ok(net @ IpNet::V6(_))) => Ok(HostPattern::Ip(net.trunc())),
            _ => Err(format!(
                "{host:?} is not a valid ipv6 address or cidr block; write it as \"[::1]\" or \"[fd00::]/8\""
            )),
        };
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(IpNet::from(ip)));
    }
    if let Ok(net) = host.parse::<IpNet>() {
        return Ok(HostPattern::Ip(net.trunc()));
    }
    if host.contains('/') {
        // Either a path or a CIDR block that did not parse.
        return Err(format!(
            "{host:?} is neither a host nor a valid cidr block; write a cidr as \"10.0.0.0/8\" and leave paths out"
        ));
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(format!(
                "{host:?} has more than one wildcard; only a single leading \"*.\" is allowed, as in \"*.example.com\""
            ));
        }
        let domain = validate_name(domain)?;
        return Ok(HostPattern::Subdomain(format!(".{domain}")));
    }
    if host.contains('*') {
        return Err(format!(
            "{host:?} has a wildcard in the wrong place; use \"*\" for any host or a leading \"*.\" as in \"*.example.com\""
        ));
    }
    Ok(HostPattern::Name(validate_name(host)?))
}

/// Checks a DNS name and returns it lowercase without a trailing dot.
fn validate_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let valid = !trimmed.is_empty()
        && trimmed.len() <= 253
        && trimmed.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid {
        return Err(format!(
            "{name:?} is not a valid host name; use letters, digits, '-' and '.' as in \"api.example.com\""
        ));
    }
    Ok(trimmed.to_ascii_lowercase())
}

fn parse_port(
    port: Option<&str>,
    scheme: &SchemePattern,
    host: &str,
) -> Result<PortPattern, String> {
    let Some(port) = port else {
        return match scheme {
            SchemePattern::Exact(s) => well_known_port(s).map(PortPattern::Exact).ok_or_else(|| {
                format!(
                    "no port given and scheme {s:?} has no well-known port; add one, as in \"{s}://{host}:8080\", or \"{s}://{host}:*\" for any port"
                )
            }),
            SchemePattern::Any => Err(format!(
                "no port given and the scheme is \"*\"; add a port, as in \"*://{host}:443\", or \"*://{host}:*\" for any port"
            )),
        };
    };
    if port == "*" {
        return Ok(PortPattern::Any);
    }
    if port.starts_with('{') {
        return Err("port lists are not supported; write one entry per port or a range such as \"8000..8010\"".into());
    }
    if let Some((start, end)) = port.split_once("..") {
        let range_error = || {
            format!(
                "port range {port:?} is not valid; write \"start..end\" with numbers up to 65535, the end excluded, as in \"8000..8011\" for 8000 through 8010"
            )
        };
        let start: u16 = start.parse().map_err(|_| range_error())?;
        let end: u16 = end.parse().map_err(|_| range_error())?;
        if start >= end {
            return Err(format!(
                "port range {port:?} is empty because the end is excluded; write \"{start}..{}\" to allow port {start}",
                u32::from(start) + 1
            ));
        }
        return Ok(PortPattern::Range(start, end));
    }
    if port.is_empty() {
        return Err(
            "the port after ':' is empty; write a number, a range such as \"8000..8010\", or \"*\""
                .into(),
        );
    }
    port.parse().map(PortPattern::Exact).map_err(|_| {
        format!("port {port:?} is not a number from 0 to 65535, a range such as \"8000..8010\", or \"*\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries).unwrap_or_else(|e| panic!("{entries:?}: {e}"))
    }

    fn parse_err(entry: &str) -> String {
        match AllowedHosts::parse(&[entry.to_owned()]) {
            Ok(h) => panic!("{entry:?} should not parse, got {h:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// (entries, scheme, host, port, expected)
    fn check_table(table: &[(&[&str], &str, &str, u16, bool)]) {
        for (entries, scheme, host, port, expected) in table {
            let allowed = hosts(entries);
            assert_eq!(
                allowed.allows(scheme, host, *port),
                *expected,
                "{entries:?} allows {scheme}://{host}:{port}"
            );
        }
    }

    #[test]
    fn exact_names_match_case_insensitively_with_default_ports() {
        check_table(&[
            (&["https://example.com"], "https", "example.com", 443, true),
            (&["https://example.com"], "HTTPS", "EXAMPLE.com", 443, true),
            (&["https://Example.COM"], "https", "example.com", 443, true),
            (&["https://example.com"], "https", "example.com.", 443, true),
            (&["https://example.com/"], "https", "example.com", 443, true),
            (
                &["https://example.com"],
                "https",
                "example.com",
                8443,
                false,
            ),
            (&["https://example.com"], "http", "example.com", 443, false),
            (
                &["https://example.com"],
                "https",
                "api.example.com",
                443,
                false,
            ),
            (&["https://example.com"], "https", "example.org", 443, false),
            (
                &["https://example.com"],
                "https",
                "notexample.com",
                443,
                false,
            ),
            (&["http://example.com"], "http", "example.com", 80, true),
            (&["redis://cache"], "redis", "cache", 6379, true),
            (&["mqtt://broker"], "mqtt", "broker", 1883, true),
            (&["postgres://db"], "postgres", "db", 5432, true),
            (&["mysql://db"], "mysql", "db", 3306, true),
            (&["mysql://db"], "mysql", "db", 5432, false),
            (&[], "https", "example.com", 443, false),
        ]);
    }

    #[test]
    fn wildcards() {
        check_table(&[
            (
                &["https://*.example.com"],
                "https",
                "api.example.com",
                443,
                true,
            ),
            (
                &["https://*.example.com"],
                "https",
                "a.b.example.com",
                443,
                true,
            ),
            (
                &["https://*.example.com"],
                "https",
                "API.Example.Com",
                443,
                true,
            ),
            // The apex is not a subdomain of itself.
            (
                &["https://*.example.com"],
                "https",
                "example.com",
                443,
                false,
            ),
            (
                &["https://*.example.com"],
                "https",
                "badexample.com",
                443,
                false,
            ),
            (
                &["https://*.example.com"],
                "https",
                ".example.com",
                443,
                false,
            ),
            (&["https://*"], "https", "anything.test", 443, true),
            (&["https://*"], "https", "anything.test", 80, false),
            (&["https://*"], "https", "10.1.2.3", 443, true),
            (&["*://example.com:443"], "https", "example.com", 443, true),
            (&["*://example.com:443"], "wss", "example.com", 443, true),
            (&["*://*:*"], "ftp", "anything", 21, true),
            (&["https://example.com:*"], "https", "example.com", 1, true),
            (&["https://example.com:*"], "http", "example.com", 1, false),
        ]);
    }

    #[test]
    fn ports_and_ranges() {
        check_table(&[
            (&["http://localhost:3000"], "http", "localhost", 3000, true),
            (&["http://localhost:3000"], "http", "localhost", 80, false),
            (&["http://localhost:3000/"], "http", "localhost", 3000, true),
            // Spin's ranges exclude their end.
            (
                &["http://localhost:8000..8010"],
                "http",
                "localhost",
                8000,
                true,
            ),
            (
                &["http://localhost:8000..8010"],
                "http",
                "localhost",
                8009,
                true,
            ),
            (
                &["http://localhost:8000..8010"],
                "http",
                "localhost",
                8010,
                false,
            ),
            (
                &["http://localhost:8000..8010"],
                "http",
                "localhost",
                7999,
                false,
            ),
            (
                &["http://localhost:0..65535"],
                "http",
                "localhost",
                65534,
                true,
            ),
        ]);
    }

    #[test]
    fn ip_and_cidr_entries() {
        check_table(&[
            (&["http://127.0.0.1:8080"], "http", "127.0.0.1", 8080, true),
            (&["http://127.0.0.1:8080"], "http", "127.0.0.2", 8080, false),
            // A name entry does not match an address, nor an address entry a name.
            (&["http://127.0.0.1:8080"], "http", "localhost", 8080, false),
            (&["http://localhost:8080"], "http", "127.0.0.1", 8080, false),
            (&["http://[::1]:8080"], "http", "[::1]", 8080, true),
            (&["http://[::1]:8080"], "http", "::1", 8080, true),
            (&["http://[::1]:8080"], "http", "::2", 8080, false),
            (&["http://[::1]"], "http", "[::1]", 80, true),
            (&["*://10.0.0.0/8:*"], "postgres", "10.200.3.4", 5432, true),
            (&["*://10.0.0.0/8:*"], "postgres", "11.0.0.1", 5432, false),
            (&["http://10.0.0.0/8"], "http", "10.0.0.1", 80, true),
            (&["http://127.0.0.1/32"], "http", "127.0.0.1", 80, true),
            (&["http://127.0.0.1/32"], "http", "127.0.0.2", 80, false),
            // Host bits of a CIDR are ignored, as Spin truncates.
            (&["http://10.1.2.3/8"], "http", "10.9.9.9", 80, true),
            (&["http://[fd00::]/8:*"], "http", "fd12::1", 1, true),
            (&["http://[fd00::/8]:*"], "http", "[fd12::1]", 1, true),
            (&["http://fd00::/8:*"], "http", "fd12::1", 1, true),
            (&["http://[fd00::]/8:*"], "http", "fe80::1", 1, false),
        ]);
        let allowed = hosts(&["http://10.0.0.0/8:80"]);
        let mapped: IpAddr = "::ffff:10.1.1.1".parse().unwrap();
        assert!(allowed.allows_ip("http", mapped, 80));
        assert!(!allowed.allows_ip("http", "::ffff:11.1.1.1".parse().unwrap(), 80));
    }

    #[test]
    fn self_and_service_chaining() {
        assert!(hosts(&["http://self"]).allows_self());
        assert!(hosts(&["https://self"]).allows_self());
        assert!(hosts(&["http://self.alt"]).allows_self());
        assert!(hosts(&["https://*:*"]).allows_self());
        assert!(!hosts(&["https://example.com"]).allows_self());
        assert!(!hosts(&["redis://self"]).allows_self());
        assert!(!hosts(&[]).allows_self());
        // `self` is not a name on the network.
        assert!(!hosts(&["http://self"]).allows("http", "self", 80));

        let one = hosts(&["http://backend.spin.internal"]);
        assert!(one.allows_component("backend"));
        assert!(!one.allows_component("other"));
        let all = hosts(&["http://*.spin.internal"]);
        assert!(all.allows_component("backend"));
        assert!(all.allows_component("other"));
        assert!(!all.allows_component(""));
        assert!(!hosts(&["https://backend.spin.internal"]).allows_component("backend"));
        assert!(!hosts(&["http://self"]).allows_component("backend"));
    }

    #[test]
    fn classify_destinations() {
        let classify = |s: &str| Destination::classify(&s.parse::<http::Uri>().unwrap());
        assert_eq!(classify("/api/x?y=1"), Destination::SelfApp);
        assert_eq!(classify("http://self/api"), Destination::SelfApp);
        assert_eq!(classify("https://self.alt/api"), Destination::SelfApp);
        assert_eq!(
            classify("http://Backend.spin.internal/x"),
            Destination::Component("backend".into())
        );
        assert_eq!(
            classify("http://spin.internal/"),
            Destination::Component(String::new())
        );
        assert_eq!(
            classify("https://API.example.com./x"),
            Destination::Network {
                scheme: "https".into(),
                host: "api.example.com".into(),
                port: 443
            }
        );
        assert_eq!(
            classify("http://[::1]:8080/"),
            Destination::Network {
                scheme: "http".into(),
                host: "::1".into(),
                port: 8080
            }
        );
        assert_eq!(
            classify("ftp://files.test/"),
            Destination::Network {
                scheme: "ftp".into(),
                host: "files.test".into(),
                port: 0
            }
        );

        let allowed = hosts(&["http://self", "http://db.spin.internal", "https://api.test"]);
        assert!(allowed.allows_destination(&classify("/x")));
        assert!(allowed.allows_destination(&classify("http://db.spin.internal/")));
        assert!(!allowed.allows_destination(&classify("http://web.spin.internal/")));
        assert!(allowed.allows_destination(&classify("https://api.test/v1")));
        assert!(!allowed.allows_destination(&classify("http://api.test/v1")));
    }

    #[test]
    fn names_ip_in_needs_an_entry_inside_the_network() {
        let link_local: IpNet = "169.254.0.0/16".parse().unwrap();
        assert!(hosts(&["http://169.254.169.254"]).names_ip_in(link_local));
        assert!(hosts(&["http://169.254.0.0/16"]).names_ip_in(link_local));
        assert!(!hosts(&["*://0.0.0.0/0:*"]).names_ip_in(link_local));
        assert!(!hosts(&["*://*:*"]).names_ip_in(link_local));
        assert!(!hosts(&["http://metadata.google.internal"]).names_ip_in(link_local));
    }

    #[test]
    fn bad_entries_say_how_to_fix_them() {
        let cases: &[(&str, &str)] = &[
            ("", "the entry is empty"),
            (
                "example.com",
                "has no scheme; write it as \"https://example.com\"",
            ),
            ("example.com:443", "has no scheme"),
            (
                "*://example.com",
                "add a port, as in \"*://example.com:443\"",
            ),
            (
                "ftp://example.com",
                "scheme \"ftp\" has no well-known port; add one",
            ),
            ("https://example.com:http", "is not a number"),
            (
                "https://example.com:70000",
                "is not a number from 0 to 65535",
            ),
            ("https://example.com:", "the port after ':' is empty"),
            (
                "https://example.com:8010..8000",
                "is empty because the end is excluded",
            ),
            (
                "https://example.com:80..80",
                "write \"80..81\" to allow port 80",
            ),
            (
                "https://example.com:80..=90",
                "port range \"80..=90\" is not valid",
            ),
            (
                "https://example.com/api",
                "neither a host nor a valid cidr block",
            ),
            (
                "https://example.com:443/api",
                "entries cannot contain a path",
            ),
            ("https://api.*.example.com", "wildcard in the wrong place"),
            ("https://*.*.example.com", "more than one wildcard"),
            ("https://exa mple.com", "is not a valid host name"),
            ("https://", "has no host"),
            ("https://[::1", "no closing \"]\""),
            ("https://[not-ip]", "not a valid ipv6 address"),
            (
                "https://10.0.0.0/33",
                "neither a host nor a valid cidr block",
            ),
            ("ht tp://example.com", "scheme \"ht tp\" is not valid"),
            ("insecure:allow-all", "use \"*://*:*\""),
            ("/", "use \"http://self\""),
            ("https://{{ host }}", "template"),
            ("https://{a,b}.com", "host lists are not supported"),
        ];
        for (entry, expected) in cases {
            let message = parse_err(entry);
            assert!(
                message.contains(expected),
                "{entry:?}: {message:?} should contain {expected:?}"
            );
            assert!(
                message.starts_with("invalid allowed_outbound_hosts entry"),
                "{message}"
            );
            assert_eq!(
                message,
                message.to_lowercase(),
                "messages are lowercase: {message}"
            );
        }
    }

    #[test]
    fn one_bad_entry_fails_the_whole_list() {
        let entries = vec!["https://ok.test".to_owned(), "nope".to_owned()];
        let err = AllowedHosts::parse(&entries).unwrap_err();
        assert!(matches!(
            err,
            OutboundError::InvalidAllowedHost { ref pattern, .. } if pattern == "nope"
        ));
    }

    #[test]
    fn entries_keep_their_spelling() {
        let allowed = hosts(&["https://Example.com", "http://self"]);
        assert_eq!(
            allowed.entries().collect::<Vec<_>>(),
            ["https://Example.com", "http://self"]
        );
        assert!(!allowed.is_empty());
        assert!(AllowedHosts::default().is_empty());
    }
}

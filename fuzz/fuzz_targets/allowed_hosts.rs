//! `allowed_outbound_hosts`: lines are entries, the last line a request URI checked
//! against them. An empty list allows nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_outbound::{AllowedHosts, Destination};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let target = lines.pop().unwrap_or_default();
    let Ok(allowed) = AllowedHosts::parse(&lines) else {
        return;
    };
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    let destination = Destination::classify(&uri);
    let allows = allowed.allows_destination(&destination);
    if allowed.is_empty() {
        assert!(!allows, "an empty list allowed {destination:?}");
    }
    if let Destination::Network { scheme, host, port } = &destination {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            let _ = allowed.allows_ip(scheme, ip, *port);
        }
        let _ = allowed.names_for(scheme, *port).count();
    }
});

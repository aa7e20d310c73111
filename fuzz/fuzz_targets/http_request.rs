//! A request from the network as a guest sees it: authority checks, the `https` URI over
//! TLS, routing and Spin's headers. Clients cannot set Spin's headers, and the full URL
//! a guest is given is a URL.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wisp_trigger_http::{Peer, RouteTarget, Router};

#[path = "shared/guest_request.rs"]
mod shared;

#[derive(Arbitrary, Debug)]
struct Input {
    method: String,
    uri: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    routes: Vec<String>,
    secure: bool,
}

fuzz_target!(|input: Input| {
    let version = match input.version % 3 {
        0 => http::Version::HTTP_10,
        1 => http::Version::HTTP_11,
        _ => http::Version::HTTP_2,
    };
    let mut builder = http::Request::builder()
        .method(input.method.as_str())
        .uri(input.uri.as_str())
        .version(version);
    for (name, value) in &input.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let mut router = Router::default();
    for route in input.routes.iter().filter(|r| r.starts_with('/')) {
        router.add(route, RouteTarget::Component("c".to_owned()));
    }
    let peer = Peer {
        client: "192.0.2.7:40000".parse().unwrap(),
        local: "127.0.0.1:3000".parse().unwrap(),
        secure: input.secure,
    };
    let Some(guest) = wisp_trigger_http::fuzzing::guest_request(request, &router, peer) else {
        return;
    };
    shared::check_guest_request(&guest);
    if input.secure {
        assert_eq!(guest.uri().scheme_str(), Some("https"));
    }
});

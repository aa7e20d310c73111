//! `dep-main`: a WASI 0.2 HTTP component that imports the component dependency
//! `test:calc/adder@0.1.0` (world `main` of `../wit-calc/calc.wit`; the
//! `dep-adder` guest implements it).
//!
//! Routes match the path after the component's route (the `spin-path-info`
//! request header, else the request path), so the guest can serve several
//! components of one app on different route prefixes. Every answer is
//! `200 text/plain`:
//!
//! - `/sum`: `sum=<add(2, 3)>`, i.e. `sum=5`.
//! - `/env/<NAME>`: `main=<value|none> dep=<value|none>`: this component's own
//!   `std::env::var(NAME)`, then the dependency's `env(NAME)`.
//! - `/fetch?<url>`: the dependency's `fetch(url)` (the whole raw query is the URL).
//! - `/kv`: the dependency's `kv()`.
//!
//! Anything else is `404` `no route <path>`.

wit_bindgen::generate!({
    path: "../wit-calc",
    world: "main",
});

use test::calc::adder;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct DepMain;

impl Guest for DepMain {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (raw_path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        let path_info = request
            .headers()
            .get("spin-path-info")
            .into_iter()
            .next()
            .map(|value| String::from_utf8_lossy(&value).into_owned());
        let path = path_info.as_deref().unwrap_or(raw_path);

        let body = if path == "/sum" {
            format!("sum={}", adder::add(2, 3))
        } else if let Some(name) = path.strip_prefix("/env/") {
            let or_none = |value: Option<String>| value.unwrap_or_else(|| "none".to_owned());
            format!(
                "main={} dep={}",
                or_none(std::env::var(name).ok()),
                or_none(adder::env(name))
            )
        } else if path == "/fetch" {
            adder::fetch(query)
        } else if path == "/kv" {
            adder::kv()
        } else {
            guest_common::respond(
                out,
                404,
                "text/plain",
                format!("no route {path}").as_bytes(),
            );
            return;
        };
        guest_common::ok_text(out, body);
    }
}

wasip2::http::proxy::export!(DepMain);

//! `dep-adder`: a component dependency (Spin SIP 020) for the `dep-main` guest.
//!
//! Exports `test:calc/adder@0.1.0` (world `dep` of `../wit-calc/calc.wit`) and the
//! same functions as the plain-named `offset-adder`, whose `add` is `a + b + 100` (for
//! a dependency entry's `export = "offset-adder"`). Its functions tell the importing component what the
//! dependency itself may do, so a test can check which of the importer's
//! configuration the host let through:
//!
//! - `add(a, b)`: `a + b` (wrapping).
//! - `env(name)`: `std::env::var(name)` as the dependency sees it, `none` if unset.
//! - `fetch(url)`: one `GET url` through `wasi:http/outgoing-handler`:
//!   `status <code>` or `error: <ErrorCode as Debug>` (also for a URL it cannot
//!   parse: `error: bad url <url>`).
//! - `kv()`: opens the Spin key-value store `default`
//!   (`fermyon:spin/key-value@2.0.0`) and reads key `k`:
//!   `ok: <value or none>` or `error: <Error as Debug>`.

wit_bindgen::generate!({
    path: "../wit-calc",
    world: "dep",
});

use exports::test::calc::adder::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingRequest, Scheme};

struct Adder;

impl Guest for Adder {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    fn env(name: String) -> Option<String> {
        std::env::var(name).ok()
    }

    fn fetch(url: String) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return format!("error: bad url {url}");
        };
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_owned()),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };

        let request = OutgoingRequest::new(Fields::new());
        if request.set_scheme(Some(&scheme)).is_err()
            || request.set_authority(Some(authority)).is_err()
            || request.set_path_with_query(Some(&path)).is_err()
        {
            return format!("error: bad url {url}");
        }
        let future = match outgoing_handler::handle(request, None) {
            Ok(future) => future,
            Err(code) => return format!("error: {code:?}"),
        };
        future.subscribe().block();
        match future.get() {
            Some(Ok(Ok(response))) => format!("status {}", response.status()),
            Some(Ok(Err(code))) => format!("error: {code:?}"),
            Some(Err(())) => "error: response already taken".to_owned(),
            None => "error: response not ready after its pollable was ready".to_owned(),
        }
    }

    fn kv() -> String {
        let result = spin_sdk::key_value::Store::open_default().and_then(|store| store.get("k"));
        match result {
            Ok(Some(value)) => format!("ok: {}", String::from_utf8_lossy(&value)),
            Ok(None) => "ok: none".to_owned(),
            Err(error) => format!("error: {error:?}"),
        }
    }
}

impl exports::offset_adder::Guest for Adder {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b).wrapping_add(100)
    }

    fn env(name: String) -> Option<String> {
        <Adder as Guest>::env(name)
    }

    fn fetch(url: String) -> String {
        <Adder as Guest>::fetch(url)
    }

    fn kv() -> String {
        <Adder as Guest>::kv()
    }
}

export!(Adder);

//! What every request a guest sees must satisfy, whatever the client sent: shared by the
//! targets that build guest requests (`http_request` from parts, `http_wire` from bytes).

/// Headers Wisp sets on every routed request.
const SPIN_HEADERS: [&str; 7] = [
    "spin-full-url",
    "spin-path-info",
    "spin-matched-route",
    "spin-component-route",
    "spin-raw-component-route",
    "spin-base-path",
    "spin-client-addr",
];

/// Clients cannot set Spin's headers, and the full URL a guest is given is a URL whose
/// path is the request's.
pub fn check_guest_request<B>(guest: &http::Request<B>) {
    for name in guest.headers().keys() {
        let name = name.as_str();
        if name.starts_with("spin-") {
            assert!(
                SPIN_HEADERS.contains(&name) || name.starts_with("spin-path-match-"),
                "a client-sent {name} reached the guest"
            );
        }
    }
    let full_url = guest
        .headers()
        .get("spin-full-url")
        .expect("every routed request carries spin-full-url");
    // Bytes, not text: a request target may carry bytes above 0x7f, as Spin passes them.
    let parsed = http::Uri::try_from(full_url.as_bytes())
        .unwrap_or_else(|e| panic!("spin-full-url {full_url:?} is not a URL: {e}"));
    // An authority-form target (`GET host:port`) has an empty path and the asterisk form
    // (`OPTIONS *`) the path `*`: the URL gives them `/` and `/*`.
    let path = guest.uri().path();
    let path = match path.starts_with('/') {
        true => path.to_owned(),
        false => format!("/{path}"),
    };
    assert_eq!(parsed.path(), path, "{full_url:?}");
}

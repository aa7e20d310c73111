//! Raw bytes from a client, parsed by hyper's HTTP/1 server with `wisp up`'s limits, then
//! turned into the requests a guest sees: hyper must not panic or hang on them, and each
//! request it accepts must satisfy what `http_request` checks (no client-set Spin headers,
//! a full URL that is a URL). Pipelined requests and bodies come from the bytes.
#![no_main]

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use std::convert::Infallible;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wisp_trigger_http::{Peer, RouteTarget, Router};

#[path = "shared/guest_request.rs"]
mod shared;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    static ROUTER: Router = {
        let mut router = Router::default();
        for route in ["/...", "/api/:id", "/static/...", "/exact"] {
            router.add(route, RouteTarget::Component("c".to_owned()));
        }
        router
    };
}

fuzz_target!(|bytes: &[u8]| {
    let bytes = bytes.to_vec();
    RUNTIME.with(|runtime| runtime.block_on(serve(bytes)));
});

async fn serve(bytes: Vec<u8>) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let peer = Peer {
        client: "192.0.2.7:40000".parse().unwrap(),
        local: "127.0.0.1:3000".parse().unwrap(),
        secure: false,
    };
    let service = service_fn(
        move |request: hyper::Request<hyper::body::Incoming>| async move {
            let (parts, _body) = request.into_parts();
            let request = hyper::Request::from_parts(parts, ());
            if let Some(guest) = ROUTER
                .with(|router| wisp_trigger_http::fuzzing::guest_request(request, router, peer))
            {
                shared::check_guest_request(&guest);
            }
            Ok::<_, Infallible>(hyper::Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
        },
    );
    // The HTTP/1 settings `wisp up` uses by default: its limits, no upgrades, and no
    // hyper timer (its timeouts are its connection task's).
    let connection = hyper::server::conn::http1::Builder::new()
        .max_headers(wisp_trigger_http::DEFAULT_MAX_HEADER_COUNT)
        .max_buf_size(wisp_trigger_http::DEFAULT_MAX_HEADER_BYTES)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(server), service);
    let client_side = async move {
        // Written whole, then half-closed, while the responses are read and dropped so a
        // long pipeline never blocks the server on a full buffer.
        let (mut read, mut write) = tokio::io::split(&mut client);
        let writer = async {
            let _ = write.write_all(&bytes).await;
            let _ = write.shutdown().await;
        };
        let reader = async {
            let mut sink = [0u8; 4096];
            while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        tokio::join!(writer, reader);
    };
    // A connection that neither ends nor errors within the bound would be a hang.
    // (Hyper's own error for bad bytes is a fine outcome: the connection ends with it.)
    let both = async {
        let (_served, ()) = tokio::join!(connection, client_side);
    };
    tokio::time::timeout(Duration::from_secs(5), both)
        .await
        .expect("the connection ended (hyper stops at the end of the bytes)");
}

//! The outbound client against servers started here on 127.0.0.1:0. Nothing leaves loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wisp_outbound::{BlockedNetworks, OutboundClient, SendError, Timeouts};

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A hyper server on 127.0.0.1:0 that records requests and counts accepted connections.
struct TestServer {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (accepts2, seen2) = (accepts.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepts2.fetch_add(1, Ordering::SeqCst);
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, seen.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer {
            addr,
            accepts,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let response = match parts.uri.path() {
        "/redirect" => Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "/elsewhere")
            .body(Full::new(Bytes::new())),
        _ => Response::builder()
            .status(StatusCode::OK)
            .header("x-served-by", "test")
            .body(Full::new(Bytes::from(format!(
                "{} {} {}",
                parts.method,
                parts.uri,
                String::from_utf8_lossy(&body)
            )))),
    };
    Ok(response.unwrap())
}

fn client() -> OutboundClient {
    OutboundClient::new(BlockedNetworks::default())
}

fn blocking(entries: &[&str]) -> OutboundClient {
    let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
    OutboundClient::new(BlockedNetworks::parse(&entries).unwrap())
}

fn get(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

/// Sends, drives the connection, and collects the whole response.
async fn fetch<B>(
    client: &OutboundClient,
    request: Request<B>,
    timeouts: Timeouts,
) -> Result<(http::response::Parts, Bytes), SendError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (response, driver) = client.send(request, timeouts).await?;
    let driver = tokio::spawn(driver);
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    driver.await.unwrap()?;
    Ok((parts, body))
}

#[tokio::test]
async fn get_round_trips_with_path_only_request_line() {
    let server = TestServer::start().await;
    let (parts, body) = fetch(
        &client(),
        get(&server.url("/hello?name=wisp")),
        Timeouts::default(),
    )
    .await
    .unwrap();

    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["x-served-by"], "test");
    assert_eq!(body, "GET /hello?name=wisp ");

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::GET);
    // Origin form on the request line, Host derived from the authority.
    assert_eq!(seen[0].uri, "/hello?name=wisp");
    assert_eq!(seen[0].headers["host"], server.addr.to_string());
}

#[derive(Debug, thiserror::Error)]
#[error("guest body failed")]
struct GuestBodyError;

#[tokio::test]
async fn post_sends_body_and_keeps_the_guests_host_header() {
    let server = TestServer::start().await;
    // A boxed body with a custom error type, like the one the host hands over.
    let body: BoxBody<Bytes, GuestBodyError> = Full::new(Bytes::from_static(b"payload-123"))
        .map_err(|never| match never {})
        .boxed();
    let request = Request::post(server.url("/submit"))
        .header("host", "api.example.test")
        .header("content-type", "text/plain")
        .header("content-length", "11")
        .body(body)
        .unwrap();

    let (parts, body) = fetch(&client(), request, Timeouts::default())
        .await
        .unwrap();

    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, "POST /submit payload-123");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].body, "payload-123");
    // The Host header names the host actually dialled, whatever the request carried.
    let authority = server.url("/");
    let authority = authority
        .trim_start_matches("http://")
        .trim_end_matches('/');
    assert_eq!(seen[0].headers["host"], authority);
    assert_eq!(seen[0].headers["content-type"], "text/plain");
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let server = TestServer::start().await;
    let (parts, _) = fetch(
        &client(),
        get(&server.url("/redirect")),
        Timeouts::default(),
    )
    .await
    .unwrap();

    assert_eq!(parts.status, StatusCode::FOUND);
    assert_eq!(parts.headers["location"], "/elsewhere");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "only the original request: {seen:?}");
    assert_eq!(seen[0].uri, "/redirect");
}

#[tokio::test]
async fn blocked_destination_is_never_dialled() {
    let server = TestServer::start().await;
    let err = client_send_err(&blocking(&["127.0.0.0/8"]), &server.url("/")).await;

    match &err {
        SendError::DestinationBlocked { host, addresses } => {
            assert_eq!(host, "127.0.0.1");
            assert_eq!(addresses, &[server.addr.ip()]);
        }
        other => panic!("expected DestinationBlocked, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("requests to 127.0.0.1 are blocked")
    );
    // Give a stray connection time to show up before asserting there was none.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.accepts.load(Ordering::SeqCst), 0);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn ipv4_mapped_literal_is_blocked_like_ipv4() {
    let server = TestServer::start().await;
    let url = format!("http://[::ffff:127.0.0.1]:{}/", server.addr.port());
    let err = client_send_err(&blocking(&["127.0.0.0/8"]), &url).await;
    assert!(
        matches!(err, SendError::DestinationBlocked { .. }),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.accepts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn localhost_is_resolved_and_each_address_checked() {
    let server = TestServer::start().await;
    let url = format!("http://localhost:{}/", server.addr.port());

    let err = client_send_err(&blocking(&["127.0.0.0/8", "::1/128"]), &url).await;
    match &err {
        SendError::DestinationBlocked { host, addresses } => {
            assert_eq!(host, "localhost");
            assert!(!addresses.is_empty());
            assert!(addresses.iter().all(|ip| ip.is_loopback()), "{addresses:?}");
        }
        other => panic!("expected DestinationBlocked, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.accepts.load(Ordering::SeqCst), 0);

    // Unblocked, the same name reaches the server (over whichever loopback answers).
    let (parts, _) = fetch(&client(), get(&url), Timeouts::default())
        .await
        .unwrap();
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        server.seen()[0].headers["host"],
        format!("localhost:{}", server.addr.port())
    );
}

#[tokio::test]
async fn connection_refused_on_a_closed_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let err = client_send_err(&client(), &format!("http://{addr}/")).await;
    assert!(matches!(err, SendError::ConnectionRefused(_)), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn first_byte_timeout_when_the_server_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Keep the socket open and say nothing.
            held2.lock().unwrap().push(stream);
        }
    });

    let timeouts = Timeouts {
        first_byte: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let started = std::time::Instant::now();
    let result = client()
        .send(get(&format!("http://{addr}/")), timeouts)
        .await;
    let err = result.expect_err("the request should time out");
    assert!(matches!(err, SendError::FirstByteTimeout), "{err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(held.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn between_bytes_timeout_when_the_body_stalls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_request_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst")
            .await
            .unwrap();
        // Promise 100 bytes, send 5, then go quiet while holding the connection.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });

    let timeouts = Timeouts {
        between_bytes: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let (response, driver) = client()
        .send(get(&format!("http://{addr}/")), timeouts)
        .await
        .unwrap();
    tokio::spawn(driver);
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first");
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(matches!(err, SendError::BetweenBytesTimeout), "{err:?}");
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let server = TestServer::start().await;
    let url = format!("https://{}/", server.addr);
    let err = client_send_err(&client(), &url).await;
    assert!(matches!(err, SendError::TlsError(_)), "{err:?}");
}

#[tokio::test]
async fn app_internal_and_relative_uris_are_refused() {
    for url in [
        "/relative",
        "http://self/x",
        "http://backend.spin.internal/",
    ] {
        let err = client_send_err(&client(), url).await;
        assert!(matches!(err, SendError::InvalidUri(_)), "{url}: {err:?}");
    }
    let err = client_send_err(&client(), "ftp://127.0.0.1:1/").await;
    assert!(matches!(err, SendError::InvalidUri(_)), "{err:?}");
}

async fn client_send_err(client: &OutboundClient, url: &str) -> SendError {
    match client.send(get(url), Timeouts::default()).await {
        Ok((response, _)) => panic!("{url}: expected an error, got {}", response.status()),
        Err(e) => e,
    }
}

/// Reads until the blank line that ends a request head.
async fn read_request_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before sending a request");
        head.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn blocking_other_addresses_leaves_localhost_reachable() {
    let server = TestServer::start().await;
    let url = format!("http://localhost:{}/", server.addr.port());
    // Whatever else localhost resolves to, 127.0.0.1 (where the server listens) is
    // still dialled once the IPv6 loopback is blocked. (Mixed answers are covered by the
    // unit test of the address filter.)
    let (parts, _) = fetch(&blocking(&["::1/128"]), get(&url), Timeouts::default())
        .await
        .unwrap();
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
}

/// Waits (up to 2 s) until `done` holds: a connection goes back to its pool from a task.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test]
async fn connections_are_reused_once_the_body_is_read() {
    let server = TestServer::start().await;
    let client = client();
    for round in 0..5 {
        let (parts, body) = fetch(&client, get(&server.url("/a")), Timeouts::default())
            .await
            .unwrap();
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body, Bytes::from("GET /a "));
        // Give the connection its moment to return to the pool.
        assert!(
            eventually(|| server.accepts.load(Ordering::SeqCst) == 1).await,
            "round {round}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.accepts.load(Ordering::SeqCst),
        1,
        "one connection for five requests"
    );
    // A POST body goes over the reused connection too.
    let post = Request::post(server.url("/p"))
        .body(Full::new(Bytes::from("hello")))
        .unwrap();
    let (_, body) = fetch(&client, post, Timeouts::default()).await.unwrap();
    assert_eq!(body, Bytes::from("POST /p hello"));
    assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_unread_closes_its_connection() {
    let server = TestServer::start().await;
    let client = client();
    let (response, driver) = client
        .send(get(&server.url("/x")), Timeouts::default())
        .await
        .unwrap();
    tokio::spawn(driver);
    drop(response);
    tokio::time::sleep(Duration::from_millis(50)).await;
    fetch(&client, get(&server.url("/y")), Timeouts::default())
        .await
        .unwrap();
    assert_eq!(server.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn components_never_share_connections() {
    let server = TestServer::start().await;
    let app = client();
    let allowed = wisp_outbound::AllowedHosts::parse(&["http://127.0.0.1:*".to_owned()]).unwrap();
    let (first, second) = (app.for_component(&allowed), app.for_component(&allowed));
    for client in [&first, &second, &first, &second] {
        fetch(client, get(&server.url("/c")), Timeouts::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // One connection each, reused by each.
    assert_eq!(server.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    // A server that answers one request per connection and closes it, without saying so
    // in a header: the next request must not fail on the dead connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            read_request_head(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let client = client();
    for _ in 0..3 {
        let (_, body) = fetch(
            &client,
            get(&format!("http://{addr}/")),
            Timeouts::default(),
        )
        .await
        .unwrap();
        assert_eq!(body, Bytes::from("ok"));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn no_idle_connections_means_a_new_connection_per_request() {
    let server = TestServer::start().await;
    let client = client().with_idle_connections(0);
    for _ in 0..3 {
        fetch(&client, get(&server.url("/n")), Timeouts::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(server.accepts.load(Ordering::SeqCst), 3);
}

/// A certificate for `localhost` from a CA made here with the `openssl` command.
struct TestCert {
    _dir: tempfile::TempDir,
    ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn test_cert() -> TestCert {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl (Debian: apt-get install openssl)");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &path("key.pem"),
        "-out",
        &path("csr.pem"),
    ]);
    std::fs::write(path("ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("csr.pem"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path("ext"),
        "-out",
        &path("cert.pem"),
    ]);
    let certs = |name: &str| {
        rustls::pki_types::CertificateDer::pem_file_iter(path(name))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    TestCert {
        ca: certs("ca.pem"),
        chain: certs("cert.pem"),
        key: rustls::pki_types::PrivateKeyDer::from_pem_file(path("key.pem")).unwrap(),
        _dir: dir,
    }
}

/// An HTTPS server offering HTTP/2 and HTTP/1.1 that answers with the protocol version
/// and counts connections.
async fn https_server(cert: &TestCert) -> (SocketAddr, Arc<AtomicUsize>) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(cert.chain.clone(), cert.key.clone_key())
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|req: Request<Incoming>| async move {
                    let answer = format!("{:?} {}", req.version(), req.uri().path());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn https_upstreams_that_offer_http2_share_one_connection() {
    let cert = test_cert();
    let (addr, accepts) = https_server(&cert).await;
    let tls = wisp_outbound::ClientTls::new(cert.ca.clone(), false, None).unwrap();
    let hosts = Arc::new(std::collections::HashMap::from([(
        "localhost".to_owned(),
        tls,
    )]));
    let client = client().with_host_tls(hosts);
    let url = format!("https://localhost:{}/h2", addr.port());
    let (_, body) = fetch(&client, get(&url), Timeouts::default())
        .await
        .unwrap();
    assert_eq!(body, Bytes::from("HTTP/2.0 /h2"));
    // Then eight at once: all over that one connection.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            fetch(&client, get(&url), Timeouts::default()).await
        }));
    }
    for task in tasks {
        let (parts, body) = task.await.unwrap().unwrap();
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body, Bytes::from("HTTP/2.0 /h2"));
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    // Turned off, every request dials (and still speaks HTTP/2).
    let hosts = Arc::new(std::collections::HashMap::from([(
        "localhost".to_owned(),
        wisp_outbound::ClientTls::new(cert.ca.clone(), false, None).unwrap(),
    )]));
    let fresh = client.with_idle_connections(0).with_host_tls(hosts);
    for _ in 0..2 {
        let (_, body) = fetch(&fresh, get(&url), Timeouts::default()).await.unwrap();
        assert_eq!(body, Bytes::from("HTTP/2.0 /h2"));
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 3);
}

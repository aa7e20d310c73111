//! The outbound HTTP client behind `wasi:http` outgoing requests.
//!
//! One [`OutboundClient`] is built per app; it holds the rustls configuration (webpki
//! roots, ALPN `http/1.1`) so TLS setup costs nothing per request, and the
//! [`BlockedNetworks`] to enforce. Each [`OutboundClient::send`]:
//!
//! 1. resolves the host itself, within the connect timeout (IP literals skip DNS);
//! 2. drops every address in a blocked network, and fails with
//!    [`SendError::DestinationBlocked`] without opening any socket if none is left;
//! 3. dials the remaining addresses in order until one answers, so the policy is
//!    applied to the address actually dialled and DNS rebinding cannot bypass it;
//! 4. speaks TLS for `https` (SNI = the host), then HTTP/1.1 with only the path and query
//!    on the request line, keeping the guest's `Host` header (or deriving it);
//! 5. returns the response as is: redirects are the guest's business, never followed.
//!
//! Connections are kept for reuse per component and destination ([`crate::pool`]): a
//! request to a destination with an idle connection skips steps 1 to 4.

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;

use crate::allowed::{AllowedHosts, SERVICE_CHAINING_DOMAIN};
use crate::blocked::BlockedNetworks;
use crate::pool::{Key, Loan, Pool, PoolBody};
use http_body_util::BodyExt;

/// Time limits for one outgoing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// DNS resolution, TCP connect and TLS handshake together.
    pub connect: Duration,
    /// From sending the request until the response head has arrived.
    pub first_byte: Duration,
    /// Longest silence while reading the response body.
    pub between_bytes: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(30),
            between_bytes: Duration::from_secs(30),
        }
    }
}

/// Why an outgoing request failed. The host maps these to `wasi:http`'s `error-code`.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The URI cannot be sent: no host, an unsupported scheme, or an app-internal host.
    #[error("invalid request uri: {0}")]
    InvalidUri(String),
    /// The host name could not be resolved.
    #[error("dns lookup failed: {0}")]
    DnsError(String),
    /// Every address of the host lies in a blocked network; nothing was dialled.
    #[error(
        "requests to {host} are blocked: its addresses ({}) are in networks blocked by [outbound_networking] in the runtime config",
        display_ips(addresses)
    )]
    DestinationBlocked {
        /// The host as written in the request.
        host: String,
        /// The addresses it resolved to, all blocked.
        addresses: Vec<IpAddr>,
    },
    /// The server refused the connection.
    #[error("connection refused by {0}")]
    ConnectionRefused(String),
    /// The connection could not be set up within the connect timeout.
    #[error("connection timed out")]
    ConnectionTimeout,
    /// The destination could not be reached (no route, network down, ...).
    #[error("destination unreachable: {0}")]
    DestinationUnreachable(String),
    /// The server reset the connection.
    #[error("connection reset by the server")]
    ConnectionReset,
    /// The server closed the connection before the response was complete.
    #[error("the server closed the connection before the response was complete")]
    ConnectionTerminated,
    /// The TLS handshake failed (wrong protocol, ...).
    #[error("tls handshake failed: {0}")]
    TlsError(String),
    /// The server's certificate was not trusted (unknown issuer, wrong name, expired).
    #[error("the server's certificate was refused: {0}")]
    TlsCertificate(String),
    /// The server ended the handshake with an alert (it refused our client certificate).
    #[error("the server refused the tls handshake: {0}")]
    TlsAlert(String),
    /// The server's response was not valid HTTP/1.1.
    #[error("http protocol error: {0}")]
    ProtocolError(String),
    /// The response head exceeded hyper's limits (100 headers, about 400 KiB).
    #[error("the response headers are too large")]
    ResponseHeadersTooLarge,
    /// Reading the request body from the guest failed.
    #[error("the request body failed: {0}")]
    RequestBodyError(String),
    /// No response head arrived within the first-byte timeout.
    #[error("timed out waiting for the response to start")]
    FirstByteTimeout,
    /// The response body stalled for longer than the between-bytes timeout.
    #[error("timed out waiting for more of the response body")]
    BetweenBytesTimeout,
}

fn display_ips(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// TLS settings for connections to some hosts (Spin's `[[client_tls]]`): the roots that
/// server certificates must chain to, and a client certificate to present.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    /// The same roots and client certificate for services ([`crate::tls`]).
    pub(crate) service: crate::tls::ServiceConfigs,
    source: Arc<ClientTlsSource>,
}

/// What a [`ClientTls`] was made from, for a client that builds its own TLS settings
/// (the MySQL driver).
#[derive(Debug)]
pub struct ClientTlsSource {
    /// Extra CA certificates to trust.
    pub roots: Vec<CertificateDer<'static>>,
    /// Whether the webpki roots are trusted too.
    pub webpki_roots: bool,
    /// The client certificate chain and key to present.
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts `roots` (plus the webpki roots with `webpki_roots`) and presents
    /// `client_cert` (chain and key) when the server asks for one. Fails, saying why,
    /// when nothing would be trusted or rustls refuses a certificate or the key.
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        webpki_roots: bool,
        client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<ClientTls, String> {
        if roots.is_empty() && !webpki_roots {
            return Err(
                "no certificate would be trusted: give ca_roots_file, or set ca_use_webpki_roots = true"
                    .to_owned(),
            );
        }
        let mut store = rustls::RootCertStore::empty();
        if webpki_roots {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let store_roots = roots.clone();
        for root in roots {
            store
                .add(root)
                .map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
        }
        let service = crate::tls::ServiceConfigs::new(
            store.clone(),
            client_cert
                .as_ref()
                .map(|(chain, key)| (chain.clone(), key.clone_key())),
        )?;
        let source = Arc::new(ClientTlsSource {
            roots: store_roots,
            webpki_roots,
            client_cert: client_cert
                .as_ref()
                .map(|(chain, key)| (chain.clone(), key.clone_key())),
        });
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(store);
        let mut config = match client_cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key cannot be used: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            service,
            source,
        })
    }

    /// What this was made from.
    pub fn source(&self) -> &ClientTlsSource {
        &self.source
    }
}

/// The protocols offered to HTTPS upstreams: HTTP/2 first (one connection carries every
/// concurrent request), then HTTP/1.1.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// A component's [`ClientTls`] by host name (lower case, no port).
pub type HostTls = Arc<std::collections::HashMap<String, ClientTls>>;

/// The client for a guest's outgoing HTTP requests. Cheap to clone.
#[derive(Clone)]
pub struct OutboundClient {
    tls: TlsConnector,
    /// Hosts with their own TLS settings, for the component this client serves.
    host_tls: Option<HostTls>,
    blocked: BlockedNetworks,
    /// Idle connections of this client (and its clones), never of another component.
    pool: Arc<Pool>,
    max_idle: usize,
}

impl fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundClient")
            .field("blocked", &self.blocked)
            .finish_non_exhaustive()
    }
}

/// The transport under hyper: a TCP stream, with or without TLS.
trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// The parts of a request URI needed to reach its server.
struct Target {
    tls: bool,
    /// Without IPv6 brackets, as used for DNS and SNI.
    host: String,
    port: u16,
    /// `host[:port]` as written, for a missing `Host` header.
    authority: String,
}

impl OutboundClient {
    /// Builds the client for one app; TLS trusts the webpki (Mozilla) roots.
    pub fn new(blocked: BlockedNetworks) -> OutboundClient {
        // The provider is chosen explicitly rather than from the process default so that
        // another crate enabling a different rustls backend cannot make this panic.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        // We only speak HTTP/1.1, so only offer it.
        config.alpn_protocols = alpn();
        OutboundClient {
            tls: TlsConnector::from(Arc::new(config)),
            host_tls: None,
            blocked,
            pool: Arc::new(Pool::new(crate::pool::MAX_IDLE)),
            max_idle: crate::pool::MAX_IDLE,
        }
    }

    /// The same client keeping at most `idle` idle connections per component (0: none,
    /// every request dials afresh).
    pub fn with_idle_connections(mut self, idle: usize) -> OutboundClient {
        self.max_idle = idle;
        self.pool = Arc::new(Pool::new(idle));
        self
    }

    /// The same client with TLS settings of its own for the hosts in `host_tls` (the
    /// others keep the webpki roots).
    pub fn with_host_tls(mut self, host_tls: HostTls) -> OutboundClient {
        self.host_tls = (!host_tls.is_empty()).then_some(host_tls);
        self
    }

    /// The same client with the blocked networks as seen by one component (see
    /// [`BlockedNetworks::for_component`]); shares the TLS configuration.
    pub fn for_component(&self, allowed: &AllowedHosts) -> OutboundClient {
        OutboundClient {
            tls: self.tls.clone(),
            host_tls: self.host_tls.clone(),
            blocked: self.blocked.for_component(allowed),
            // Its own pool: connections are never shared between components.
            pool: Arc::new(Pool::new(self.max_idle)),
            max_idle: self.max_idle,
        }
    }

    /// The networks this client refuses to dial.
    pub fn blocked(&self) -> &BlockedNetworks {
        &self.blocked
    }

    /// Sends one request, over an idle connection to the same destination when this
    /// client has one, else over a new one.
    ///
    /// The caller has already checked the destination against the component's
    /// `allowed_outbound_hosts`; this enforces the blocked networks and the timeouts.
    /// The URI must be absolute (`http` or `https`).
    ///
    /// Returns the response and a future kept for callers that drive a connection: the
    /// connection runs in a task of its own, so it resolves at once. Failures after the
    /// response head arrive through the response body.
    pub async fn send<B>(
        &self,
        mut request: Request<B>,
        timeouts: Timeouts,
    ) -> Result<
        (
            Response<ResponseBody>,
            std::future::Ready<Result<(), SendError>>,
        ),
        SendError,
    >
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let target = Target::from_uri(request.uri())?;
        // The Host header always names the host actually dialled, without any userinfo
        // (wasmtime copies the raw authority, credentials included).
        let value = HeaderValue::from_str(&target.authority)
            .map_err(|_| SendError::InvalidUri("the host is not a valid header value".into()))?;
        request.headers_mut().insert(HOST, value);
        // Only the path and query go on the request line; the absolute form is for proxies.
        let path_and_query = match request.uri().path_and_query().map(|pq| pq.as_str()) {
            None | Some("") => "/",
            Some(pq) => pq,
        };
        *request.uri_mut() = Uri::builder()
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| SendError::InvalidUri(e.to_string()))?;

        let mut request: Request<PoolBody> =
            request.map(|body| body.map_err(Into::into).boxed_unsync());
        let key = Key {
            tls: target.tls,
            host: target.host.trim_end_matches('.').to_ascii_lowercase(),
            port: target.port,
        };
        if let Some(sender) = self.pool.shared(&key) {
            return self.send_h2(sender, request, &target, timeouts).await;
        }
        if let Some(mut sender) = self.pool.checkout(&key) {
            match tokio::time::timeout(timeouts.first_byte, sender.try_send_request(request)).await
            {
                Err(_) => return Err(SendError::FirstByteTimeout),
                Ok(Ok(response)) => return Ok(self.lend(response, sender, key, timeouts)),
                // The idle connection closed before the request went out: dial afresh.
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(from_hyper(e.into_error())),
                },
            }
        }

        let deadline = Instant::now() + timeouts.connect;
        let (stream, h2) = self.connect(&target, deadline).await?;
        if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .handshake::<_, PoolBody>(TokioIo::new(stream))
                    .await
                    .map_err(from_hyper)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("outbound HTTP/2 connection ended: {e}");
                }
            });
            self.pool.share(key, sender.clone());
            return self.send_h2(sender, request, &target, timeouts).await;
        }
        // The HTTP/1 handshake does no I/O; the defaults bound the response head
        // (100 headers, ~400 KiB buffer).
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake::<_, PoolBody>(TokioIo::new(stream))
            .await
            .map_err(from_hyper)?;

        let mut conn = Some(conn);
        let response = {
            let mut response = pin!(tokio::time::timeout(
                timeouts.first_byte,
                sender.send_request(request)
            ));
            let mut poll_response = |cx: &mut Context<'_>| {
                response.as_mut().poll(cx).map(|r| match r {
                    Ok(result) => result.map_err(from_hyper),
                    Err(_) => Err(SendError::FirstByteTimeout),
                })
            };
            // The connection must be polled for the request to be written and the
            // response read; drive both until the response head is here.
            poll_fn(|cx| {
                if let Poll::Ready(result) = poll_response(cx) {
                    return Poll::Ready(result);
                }
                let Some(c) = conn.as_mut() else {
                    return Poll::Pending;
                };
                let closed = ready!(Pin::new(c).poll(cx));
                conn = None;
                match closed {
                    Err(e) => Poll::Ready(Err(from_hyper(e))),
                    // The connection ended cleanly; the response future now resolves too.
                    Ok(()) => poll_response(cx),
                }
            })
            .await?
        };
        // The connection outlives this response when it is pooled: it gets its own task,
        // which ends when the server closes it or its sender is dropped.
        if let Some(conn) = conn {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("outbound connection ended: {e}");
                }
            });
        }
        Ok(self.lend(response, sender, key, timeouts))
    }

    /// Sends over an HTTP/2 connection, which needs the absolute URI (its `:authority`
    /// replaces the `Host` header).
    async fn send_h2(
        &self,
        mut sender: hyper::client::conn::http2::SendRequest<PoolBody>,
        mut request: Request<PoolBody>,
        target: &Target,
        timeouts: Timeouts,
    ) -> Result<
        (
            Response<ResponseBody>,
            std::future::Ready<Result<(), SendError>>,
        ),
        SendError,
    > {
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        *request.uri_mut() = Uri::builder()
            .scheme("https")
            .authority(target.authority.as_str())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| SendError::InvalidUri(e.to_string()))?;
        request.headers_mut().remove(HOST);
        // Connection-specific headers are not allowed in HTTP/2.
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            request.headers_mut().remove(name);
        }
        *request.version_mut() = http::Version::HTTP_2;
        let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request))
            .await
            .map_err(|_| SendError::FirstByteTimeout)?
            .map_err(from_hyper)?;
        let response = response.map(|body| ResponseBody::new(body, timeouts.between_bytes, None));
        Ok((response, std::future::ready(Ok(()))))
    }

    /// The response, with its connection to give back to the pool when the body is done.
    fn lend(
        &self,
        response: Response<Incoming>,
        sender: hyper::client::conn::http1::SendRequest<PoolBody>,
        key: Key,
        timeouts: Timeouts,
    ) -> (
        Response<ResponseBody>,
        std::future::Ready<Result<(), SendError>>,
    ) {
        let loan = Loan {
            pool: Arc::downgrade(&self.pool),
            key,
            sender,
        };
        let response =
            response.map(|body| ResponseBody::new(body, timeouts.between_bytes, Some(loan)));
        (response, std::future::ready(Ok(())))
    }

    /// Resolves, filters and dials, then adds TLS when needed.
    /// `true` with the stream when the server chose HTTP/2 by ALPN.
    async fn connect(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<(Box<dyn Transport>, bool), SendError> {
        let addresses = self.resolve(target, deadline).await?;
        let permitted = permitted_addresses(&self.blocked, &target.host, addresses)?;

        let tcp = tokio::time::timeout_at(deadline, dial(&target.host, &permitted))
            .await
            .map_err(|_| SendError::ConnectionTimeout)??;
        // Requests are written in few large writes; do not let Nagle delay them.
        let _ = tcp.set_nodelay(true);
        if !target.tls {
            return Ok((Box::new(tcp), false));
        }

        let server_name = match target.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => {
                ServerName::try_from(target.host.trim_end_matches('.').to_owned()).map_err(|e| {
                    SendError::TlsError(format!(
                        "{:?} is not a valid tls server name: {e}",
                        target.host
                    ))
                })?
            }
        };
        let connector = self
            .host_tls
            .as_ref()
            .and_then(|hosts| hosts.get(&target.host.trim_end_matches('.').to_ascii_lowercase()))
            .map_or(&self.tls, |host| &host.connector);
        let tls = tokio::time::timeout_at(deadline, connector.connect(server_name, tcp))
            .await
            .map_err(|_| SendError::ConnectionTimeout)?
            .map_err(|e| {
                let message = format!("with {}: {e}", target.host);
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(rustls::Error::InvalidCertificate(_)) => {
                        SendError::TlsCertificate(message)
                    }
                    Some(rustls::Error::AlertReceived(_)) => SendError::TlsAlert(message),
                    _ => match e.kind() {
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                            SendError::ConnectionReset
                        }
                        _ => SendError::TlsError(message),
                    },
                }
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((Box::new(tls), h2))
    }

    async fn resolve(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<Vec<SocketAddr>, SendError> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let host = target.host.as_str();
        let lookup = tokio::net::lookup_host((host, target.port));
        let addresses: Vec<SocketAddr> = tokio::time::timeout_at(deadline, lookup)
            .await
            .map_err(|_| SendError::DnsError(format!("resolving {host:?} timed out")))?
            .map_err(|e| SendError::DnsError(format!("could not resolve {host:?}: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(SendError::DnsError(format!("{host:?} has no addresses")));
        }
        Ok(addresses)
    }
}

/// Keeps the addresses outside blocked networks, in order; fails if none is left.
fn permitted_addresses(
    blocked: &BlockedNetworks,
    host: &str,
    addresses: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, SendError> {
    let (refused, permitted): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .into_iter()
        .partition(|addr| blocked.is_blocked(addr.ip()));
    let refused: Vec<IpAddr> = refused.iter().map(SocketAddr::ip).collect();
    if permitted.is_empty() {
        return Err(SendError::DestinationBlocked {
            host: host.to_owned(),
            addresses: refused,
        });
    }
    if !refused.is_empty() {
        tracing::debug!(%host, skipped = %display_ips(&refused), "skipping blocked addresses");
    }
    Ok(permitted)
}

/// Dials each address in order; the first to accept wins.
async fn dial(host: &str, addresses: &[SocketAddr]) -> Result<TcpStream, SendError> {
    let mut last_error = None;
    for addr in addresses {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                tracing::debug!(%host, %addr, error = %e, "outbound connect failed");
                last_error = Some((addr, e));
            }
        }
    }
    Err(match last_error {
        Some((addr, e)) => match e.kind() {
            io::ErrorKind::ConnectionRefused => {
                SendError::ConnectionRefused(format!("{host} ({addr})"))
            }
            io::ErrorKind::TimedOut => SendError::ConnectionTimeout,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                SendError::ConnectionReset
            }
            _ => SendError::DestinationUnreachable(format!("{host} ({addr}): {e}")),
        },
        None => SendError::DestinationUnreachable(format!("{host} has no addresses to dial")),
    })
}

impl Target {
    fn from_uri(uri: &Uri) -> Result<Target, SendError> {
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            None => false,
            Some(other) => {
                return Err(SendError::InvalidUri(format!(
                    "scheme {other:?} is not supported; use http or https"
                )));
            }
        };
        let authority = uri.authority().ok_or_else(|| {
            SendError::InvalidUri(format!(
                "{uri} has no host; requests to the app itself are routed by the host, not sent here"
            ))
        })?;
        let raw_host = authority.host();
        let host = raw_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw_host)
            .to_owned();
        if host.is_empty() {
            return Err(SendError::InvalidUri(format!("{uri} has an empty host")));
        }
        // These hosts name parts of the app; they must never reach DNS.
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "self"
            || lower == "self.alt"
            || lower == SERVICE_CHAINING_DOMAIN
            || lower.ends_with(&format!(".{SERVICE_CHAINING_DOMAIN}"))
        {
            return Err(SendError::InvalidUri(format!(
                "{host:?} is a host inside the app; it is routed by the host, not sent over the network"
            )));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // Userinfo never goes into the Host header.
        let authority = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, hostport)| hostport)
            .to_owned();
        Ok(Target {
            tls,
            host,
            port,
            authority,
        })
    }
}

/// Maps a hyper error to the closest [`SendError`].
fn from_hyper(e: hyper::Error) -> SendError {
    // An I/O error anywhere in the chain says more than hyper's wrapper.
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            // TLS 1.3 servers refuse a client certificate after the handshake: the alert
            // arrives with the first read.
            if let Some(rustls::Error::AlertReceived(alert)) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return SendError::TlsAlert(format!("{alert:?}"));
            }
            match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => return SendError::ConnectionReset,
                io::ErrorKind::UnexpectedEof => return SendError::ConnectionTerminated,
                _ => {}
            }
        }
        source = err.source();
    }
    if e.is_parse_too_large() {
        SendError::ResponseHeadersTooLarge
    } else if e.is_parse() || e.is_parse_status() {
        SendError::ProtocolError(error_chain(&e))
    } else if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        SendError::ConnectionTerminated
    } else if e.is_user() || e.is_body_write_aborted() {
        SendError::RequestBodyError(error_chain(&e))
    } else {
        SendError::ProtocolError(error_chain(&e))
    }
}

/// `error: cause: cause`, since a library's own message often hides the useful part.
pub fn error_chain(e: &dyn StdError) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        // Errors that already print their cause would say it twice.
        let cause = err.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
        source = err.source();
    }
    message
}

/// A response body that fails with [`SendError::BetweenBytesTimeout`] when the server
/// goes quiet for too long.
///
/// The silence is measured only while the body is being polled, so a slow reader (a
/// guest that pauses between reads) is not mistaken for a slow server.
pub struct ResponseBody {
    incoming: Incoming,
    between_bytes: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether the timer is armed, i.e. the last poll found no data.
    waiting: bool,
    /// After an error the body is over.
    done: bool,
    /// The connection, returned to its pool once the body has been read to the end.
    loan: Option<Loan>,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("between_bytes", &self.between_bytes)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    fn new(incoming: Incoming, between_bytes: Duration, loan: Option<Loan>) -> ResponseBody {
        let mut body = ResponseBody {
            incoming,
            between_bytes,
            timer: Box::pin(tokio::time::sleep(between_bytes)),
            waiting: false,
            done: false,
            loan,
        };
        // A response without a body frees its connection now: the guest may never read it.
        if body.incoming.is_end_stream() {
            body.give_back();
        }
        body
    }

    fn give_back(&mut self) {
        if let Some(loan) = self.loan.take() {
            loan.give_back();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = SendError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SendError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                let frame = frame.map(|r| r.map_err(from_hyper));
                match &frame {
                    Some(Err(_)) => {
                        this.done = true;
                        // A failed connection is not reused.
                        this.loan = None;
                    }
                    None => this.give_back(),
                    Some(Ok(_)) if this.incoming.is_end_stream() => this.give_back(),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.between_bytes;
                    this.timer.as_mut().reset(deadline);
                }
                ready!(this.timer.as_mut().poll(cx));
                this.done = true;
                this.loan = None;
                Poll::Ready(Some(Err(SendError::BetweenBytesTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn blocked_addresses_are_dropped_and_order_kept() {
        let blocked = BlockedNetworks::parse(&["10.0.0.0/8".to_owned()]).unwrap();
        // A rebinding-style answer mixing a public, a blocked and a metadata address.
        let resolved = addrs(&[
            "10.0.0.5:80",
            "93.184.216.34:80",
            "[::ffff:10.1.1.1]:80",
            "169.254.169.254:80",
            "[2606:2800::1]:80",
        ]);
        let permitted = permitted_addresses(&blocked, "example.test", resolved).unwrap();
        assert_eq!(permitted, addrs(&["93.184.216.34:80", "[2606:2800::1]:80"]));

        let all_blocked = addrs(&["10.0.0.5:80", "169.254.169.254:80"]);
        match permitted_addresses(&blocked, "example.test", all_blocked) {
            Err(SendError::DestinationBlocked { host, addresses }) => {
                assert_eq!(host, "example.test");
                assert_eq!(
                    addresses,
                    [
                        "10.0.0.5".parse::<IpAddr>().unwrap(),
                        "169.254.169.254".parse().unwrap()
                    ]
                );
            }
            other => panic!("expected DestinationBlocked, got {other:?}"),
        }
    }

    #[test]
    fn target_keeps_the_authority_for_the_host_header() {
        let target =
            Target::from_uri(&"https://user:pw@Example.com:8443/x".parse().unwrap()).unwrap();
        assert!(target.tls);
        assert_eq!(target.host, "Example.com");
        assert_eq!(target.port, 8443);
        assert_eq!(target.authority, "Example.com:8443");

        let target = Target::from_uri(&"http://[::1]/".parse().unwrap()).unwrap();
        assert!(!target.tls);
        assert_eq!(target.host, "::1");
        assert_eq!(target.port, 80);
        assert_eq!(target.authority, "[::1]");
    }
}

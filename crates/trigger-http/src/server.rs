//! The front door: accepting connections and bounding what one client can hold.
//!
//! Every limit a hostile or broken client could otherwise stretch has a default here:
//! how long request headers may take, how long an idle keep-alive connection stays open,
//! how many headers and header bytes a request may carry, how many connections are open
//! at once, and HTTP/2's stream and reset limits. A connection task watches each
//! connection's state (request in flight, head partly received, idle) and closes it when
//! its time is up; on shutdown it answers what was already received, announces the close
//! (`Connection: close`, GOAWAY) and closes idle and half-open connections at once.

use crate::{CurrentTrigger, RefusalLog};
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wasmtime_wasi_http::WasiBody;
use wisp_trigger::BoxFuture;

/// Limits of the HTTP front door. Every field has a safe default; see `docs/security.md`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time a client has to send a complete request head, from the connection's start (or
    /// from its first byte after a response). Slow-header ("slowloris") clients are closed.
    pub header_read_timeout: Duration,
    /// Time an idle keep-alive connection (no request in flight) stays open.
    pub idle_timeout: Duration,
    /// Most header fields in one HTTP/1 request; more get `431`.
    pub max_header_count: usize,
    /// Most bytes of request line and headers (HTTP/1) or of the header list (HTTP/2);
    /// more get `431` (HTTP/1; at least 8 KiB) or a stream reset (HTTP/2).
    pub max_header_bytes: usize,
    /// Most connections open at once. Further clients wait in the listen backlog; while
    /// the server is full, idle connections are closed after [`PRESSURE_IDLE_TIMEOUT`].
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Most HTTP/2 streams a client may open and reset before the server has accepted them
    /// (the CVE-2023-44487 "rapid reset" bound); past it the connection gets GOAWAY.
    pub h2_max_pending_accept_reset_streams: usize,
    /// Most HTTP/2 streams the server resets because of client protocol errors before it
    /// closes the connection (CVE-2024-XXXX-class "MadeYouReset" bound).
    pub h2_max_local_error_reset_streams: usize,
    /// How long in-flight requests may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with this certificate (`None`: plain HTTP). The handshake must finish
    /// within [`ServerConfig::header_read_timeout`].
    pub tls: Option<crate::TlsConfig>,
}

/// Default [`ServerConfig::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerConfig::max_header_count`].
pub const DEFAULT_MAX_HEADER_COUNT: usize = 100;
/// Default [`ServerConfig::max_header_bytes`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;
/// Default [`ServerConfig::max_connections`] when the descriptor limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// How long idle and half-open connections may stay while every connection slot is taken.
pub const PRESSURE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            h2_max_concurrent_streams: 100,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 1024,
            shutdown_grace: Duration::from_secs(10),
            tls: None,
        }
    }
}

impl ServerConfig {
    /// The connection cap that fits the process's descriptor limit `nofile`: a quarter of
    /// the descriptors (at least 64) stay free for outbound connections, files and the
    /// runtime, so accepting never runs the process out of descriptors.
    pub fn connections_for_descriptor_limit(nofile: u64) -> usize {
        let reserve = (nofile / 4).max(64);
        let usable = nofile.saturating_sub(reserve).max(1);
        usize::try_from(usable)
            .unwrap_or(usize::MAX)
            .min(DEFAULT_MAX_CONNECTIONS)
    }

    fn builder(&self) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .max_headers(self.max_header_count)
            // The head must fit the read buffer: this is the header size cap (431 past it).
            .max_buf_size(self.max_header_bytes.max(8192))
            // Timeouts are enforced by the connection task (see `supervise`), which also
            // covers HTTP/2 and the idle period; hyper's own timer stays off.
            .header_read_timeout(None);
        builder
            .http2()
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams(self.h2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams(self.h2_max_local_error_reset_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }
}

/// Who answers the requests a front door accepts: one app ([`CurrentTrigger`], what
/// `wisp up` serves) or an embedder's own dispatch (the node routes by `Host` to many
/// apps). The front door has already enforced its connection, header and timeout limits;
/// the handler answers every request, faults included.
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers `request`, which arrived from `peer`.
    fn handle_request(
        self: Arc<Self>,
        request: Request<hyper::body::Incoming>,
        peer: Peer,
    ) -> BoxFuture<'static, http::Response<WasiBody>>;
}

impl RequestHandler for CurrentTrigger {
    fn handle_request(
        self: Arc<Self>,
        request: Request<hyper::body::Incoming>,
        peer: Peer,
    ) -> BoxFuture<'static, http::Response<WasiBody>> {
        let trigger = self.get();
        Box::pin(async move { trigger.handle_incoming(request, peer).await })
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, each request going to the
/// trigger `current` holds when it arrives; then stops accepting, answers what was already
/// received and lets in-flight requests finish for up to the grace period.
pub async fn serve_current(
    current: Arc<CurrentTrigger>,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    serve(current, listener, config, shutdown).await;
}

/// [`serve_current`] for any [`RequestHandler`].
pub async fn serve(
    handler: Arc<dyn RequestHandler>,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let config = Arc::new(config);
    let builder = Arc::new(config.builder());
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let max_connections = config.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let (force_close, force_close_rx) = watch::channel(false);
    let (pressure, pressure_rx) = watch::channel(false);
    let shared = Shared {
        handler,
        builder,
        config: config.clone(),
        local,
        closing: closing_rx,
        force_close: force_close_rx,
        pressure: pressure_rx,
    };
    let mut accept_backoff = Duration::ZERO;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: past the cap, clients wait in the listen backlog, and the idle
        // connections holding slots are closed sooner.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                pressure.send_replace(true);
                RefusalLog::ConnectionsFull.log(format_args!(
                    "all {max_connections} connection slots are in use; new clients wait in the backlog while idle connections are closed after {PRESSURE_IDLE_TIMEOUT:?} (raise --max-connections or the descriptor limit)"
                ));
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        if *pressure.borrow() && slots.available_permits() > max_connections / 10 {
            pressure.send_replace(false);
        }
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_backoff = Duration::ZERO;
                    accepted
                }
                Err(err) => {
                    // Typically EMFILE/ENFILE: back off (up to a second) instead of spinning,
                    // and log at a bounded rate.
                    accept_backoff = (accept_backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    RefusalLog::AcceptFailed.log(format_args!(
                        "accept failed: {err}; retrying in {accept_backoff:?} (raise the descriptor limit or lower --max-connections)"
                    ));
                    drop(slot);
                    tokio::select! {
                        () = tokio::time::sleep(accept_backoff) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        // A connection whose requests go to an app over its share moves to the slow lane.
        tokio::spawn(wisp_engine::ConnectionLane::new(connection(
            stream,
            client,
            slot,
            shared.clone(),
            false,
        )));
    }
    closing.send_replace(true);
    // Clients that connected (and maybe sent a request) just before shutdown are still in
    // the backlog: take them and treat them like every other connection.
    while let Some(Ok((stream, client))) = futures_now(listener.accept()) {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            break;
        };
        tokio::spawn(connection(stream, client, slot, shared.clone(), true));
    }
    drop(listener);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => {}
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!(
                "shutdown grace period of {:?} elapsed; closing remaining connections",
                config.shutdown_grace
            );
            force_close.send_replace(true);
            // Let the connection tasks drop their connections.
            let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
        }
    }
}

/// Polls `future` once: its output if it is ready now.
fn futures_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    match future.as_mut().poll(&mut Context::from_waker(waker)) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    handler: Arc<dyn RequestHandler>,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    config: Arc<ServerConfig>,
    local: SocketAddr,
    closing: watch::Receiver<bool>,
    force_close: watch::Receiver<bool>,
    pressure: watch::Receiver<bool>,
}

/// Where a request came from and arrived, for Spin's headers and a missing `Host`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub client: SocketAddr,
    /// The address the server accepted the connection on.
    pub local: SocketAddr,
    /// Whether the connection is TLS (the request's scheme is `https`).
    pub secure: bool,
}

impl Peer {
    /// The request's scheme as the connection carries it.
    pub fn scheme(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }
}

/// "No time recorded" for [`ConnState`]'s millisecond fields.
const NEVER: u64 = u64::MAX;

/// One connection's state, shared by its IO, its requests and its task.
struct ConnState {
    born: Instant,
    /// Requests handed to the trigger whose response has not been fully sent.
    in_flight: AtomicU32,
    /// When (ms since `born`) the first byte of a request head arrived on an idle
    /// connection; [`NEVER`] once a request is in flight or the connection is idle.
    head_started_ms: AtomicU64,
    /// When (ms since `born`) the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Set once an HTTP/2 request was seen: stream heads are then h2's business.
    http2: AtomicBool,
    /// Wakes the connection task when a request ends, only when the idle deadline that
    /// follows can come before the head deadline it sleeps on (a header timeout longer
    /// than the idle timeout); otherwise it wakes early enough by itself and requests pay
    /// nothing for it.
    request_ended: Option<tokio::sync::Notify>,
    /// Whether the latest request came with a body that may not have been read to the
    /// end: a guest may answer without reading it all, and hyper then closes the
    /// connection while the client may still be sending (or paused between writes).
    /// Cleared by [`ConnState::closing_while_idle`].
    body_sent: AtomicBool,
}

impl ConnState {
    fn new(config: &ServerConfig) -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicU32::new(0),
            // A new connection owes its first request head.
            head_started_ms: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            request_ended: (config.header_read_timeout > config.idle_timeout)
                .then(tokio::sync::Notify::new),
            body_sent: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn at(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.born + Duration::from_millis(ms))
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Acquire) == NEVER
        {
            let _ = self.head_started_ms.compare_exchange(
                NEVER,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// The server is closing the connection with no request in flight (idle timeout,
    /// pressure, shutdown, a slow next head): the last request's body was read, or hyper
    /// would have closed the connection already, so the close need not linger for it.
    fn closing_while_idle(&self) {
        self.body_sent.store(false, Ordering::Release);
    }

    fn request_started(self: &Arc<Self>, http2: bool, has_body: bool) -> InFlight {
        if http2 {
            self.http2.store(true, Ordering::Release);
        }
        self.body_sent.store(has_body, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(NEVER, Ordering::Release);
        InFlight(self.clone())
    }
}

/// A request in flight; dropped when its response is fully sent (or abandoned).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        state.idle_since_ms.store(state.now_ms(), Ordering::Release);
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(ended) = &state.request_ended {
            ended.notify_one();
        }
    }
}

/// A response body holding `guard` until its last frame has been polled, or until it is
/// dropped (the client went away): a request's [`InFlight`] here, an instance slot in the
/// node while its worker process streams the body.
pub struct HoldingBody<B, G> {
    inner: B,
    guard: Option<G>,
}

impl<B, G> HoldingBody<B, G> {
    /// `inner`, holding `guard` until it ends.
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: hyper::body::Body + Unpin, G: Unpin> hyper::body::Body for HoldingBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's byte stream: the socket, or TLS over it.
enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connection's socket, noting when request bytes arrive on an idle connection.
struct ConnIo {
    /// Always `Some` until dropped (taken by the lingering close).
    stream: Option<Stream>,
    /// Whether the socket is registered with the slow lane's runtime (or the one it was
    /// accepted on).
    on_slow_lane: bool,
    state: Arc<ConnState>,
    /// The connection's slot, held until the socket is closed, lingering included, so
    /// lingering sockets count against the connection limit.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ConnIo {
    fn stream(&mut self) -> Pin<&mut Stream> {
        let here = wisp_engine::on_slow_lane();
        if here != self.on_slow_lane {
            self.on_slow_lane = here;
            self.register_here();
        }
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }
}

impl ConnIo {
    /// The connection moved to another runtime (a flooded app's connection to the slow
    /// lane): registers its socket with this runtime's reactor, so its readiness events
    /// are handled by this runtime's threads, not by the serving threads it left. A
    /// duplicate of the descriptor is registered first, so a failure keeps the socket
    /// where it was. (A TLS connection stays registered where it was accepted.)
    fn register_here(&mut self) {
        use std::os::fd::AsFd as _;
        let Some(Stream::Plain(socket)) = &self.stream else {
            return;
        };
        let moved = socket
            .as_fd()
            .try_clone_to_owned()
            .and_then(|fd| tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd)));
        match moved {
            // Dropping the old one deregisters and closes only its descriptor.
            Ok(moved) => self.stream = Some(Stream::Plain(moved)),
            Err(err) => {
                tracing::debug!("a connection stays registered where it was accepted: {err}")
            }
        }
    }
}

/// How long, at most, a closed connection keeps reading what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How long a lingering connection waits for more bytes before closing.
const LINGER_QUIET: Duration = Duration::from_millis(500);

impl Drop for ConnIo {
    /// A connection closed while its client is still sending (the body of a request
    /// refused with 413 or answered without being read, the rest of a head refused with
    /// 431) would answer those bytes with a reset, and the client could lose the response
    /// just written. Such a connection first reads and discards what keeps coming, for a
    /// moment ("lingering close", as other servers do). That is the case when bytes are
    /// waiting, or when the last request had a body (its client may be paused between
    /// writes); any other connection closes at once.
    fn drop(&mut self) {
        // A TLS connection closes with the TLS session; bytes still arriving on it could
        // not be read without it.
        let Some(Stream::Plain(stream)) = self.stream.take() else {
            return;
        };
        let mut probe = [0u8; 512];
        let waiting = match stream.try_read(&mut probe) {
            // Closed by the client, or failed: nothing more will arrive.
            Ok(0) => return,
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
            Ok(_) => true,
            Err(_) => false,
        };
        if !waiting && !self.state.body_sent.load(Ordering::Acquire) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, self.slot.take()));
        }
    }
}

async fn linger(
    mut stream: tokio::net::TcpStream,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let until = tokio::time::Instant::now() + LINGER;
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(Ok(read)) = tokio::time::timeout_at(
        until.min(tokio::time::Instant::now() + LINGER_QUIET),
        stream.read(&mut buf),
    )
    .await
    {
        if read == 0 {
            break;
        }
    }
}

impl tokio::io::AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.stream().poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(tokio::io::AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

/// How long a connection told to close (idle, nothing in flight) may take to do so
/// before it is dropped: an HTTP/2 client gets this long to acknowledge GOAWAY.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// How long an idle connection keeps reading once shutdown starts, for a request already
/// sent but not yet seen.
const SHUTDOWN_READ_WINDOW: Duration = Duration::from_millis(50);

/// Serves one connection and enforces its timeouts; the slot frees when its socket closes.
/// `drained`: accepted from the backlog after shutdown began.
async fn connection(
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    slot: tokio::sync::OwnedSemaphorePermit,
    shared: Shared,
    drained: bool,
) {
    // Accepted during shutdown: serve it only if the client already sent something.
    if drained
        && tokio::time::timeout(Duration::from_millis(50), stream.readable())
            .await
            .is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let stream = match &shared.config.tls {
        None => Stream::Plain(stream),
        // The handshake counts as the start of the first request head: a client that
        // stalls in it is closed like a slow-header one.
        Some(tls) => match tokio::time::timeout(
            shared.config.header_read_timeout,
            tls.acceptor().accept(stream),
        )
        .await
        {
            Ok(Ok(stream)) => Stream::Tls(Box::new(stream)),
            Ok(Err(err)) => {
                RefusalLog::Malformed
                    .log(format_args!("TLS handshake with {client} failed: {err}"));
                return;
            }
            Err(_) => {
                RefusalLog::SlowHeaders.log(format_args!(
                    "closed the connection from {client}: no TLS handshake within {:?}",
                    shared.config.header_read_timeout
                ));
                return;
            }
        },
    };
    let secure = matches!(stream, Stream::Tls(_));
    let state = Arc::new(ConnState::new(&shared.config));
    let io = TokioIo::new(ConnIo {
        stream: Some(stream),
        on_slow_lane: wisp_engine::on_slow_lane(),
        state: state.clone(),
        slot: Some(slot),
    });
    let peer = Peer {
        client,
        local: shared.local,
        secure,
    };
    let service = {
        let handler = shared.handler.clone();
        let state = state.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let in_flight = state.request_started(
                request.version() == http::Version::HTTP_2,
                !hyper::body::Body::is_end_stream(request.body()),
            );
            let response = handler.clone().handle_request(request, peer);
            async move {
                let response = response.await;
                Ok::<_, Infallible>(response.map(|inner| HoldingBody::new(inner, in_flight)))
            }
        })
    };
    let conn = shared.builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let Shared {
        config,
        mut closing,
        mut force_close,
        mut pressure,
        ..
    } = shared;
    let mut shutting_down = false;
    let mut pressure_open = true;
    // When the connection was told to close (graceful shutdown: GOAWAY, or close once idle).
    let mut told_to_close: Option<tokio::time::Instant> = None;
    loop {
        let in_flight = state.in_flight.load(Ordering::Acquire) > 0;
        let wake = match told_to_close {
            Some(at) if !in_flight => at + CLOSE_LINGER,
            // In flight after being told to close: the grace period bounds it.
            Some(_) => tokio::time::Instant::now() + Duration::from_secs(3600),
            None => next_deadline(&state, &config, *pressure.borrow(), shutting_down).at,
        };
        tokio::select! {
            // The connection first: bytes already received are read (and a complete head
            // dispatched) before a timeout or shutdown is judged.
            biased;
            result = conn.as_mut() => {
                log_connection_end(client, result);
                break;
            }
            _ = force_close.changed() => break,
            _ = closing.changed(), if !shutting_down => {
                shutting_down = true;
                // A request the client sent just before the signal may sit in the socket
                // with its readiness not yet seen by the reactor (a loaded machine): let
                // the connection read for a moment, so the request is answered (with
                // `Connection: close`) rather than dropped with an "idle" connection.
                if state.in_flight.load(Ordering::Acquire) == 0 {
                    let window = tokio::time::sleep(SHUTDOWN_READ_WINDOW);
                    tokio::select! {
                        biased;
                        result = conn.as_mut() => {
                            log_connection_end(client, result);
                            break;
                        }
                        () = window => {}
                    }
                }
            }
            changed = pressure.changed(), if pressure_open => pressure_open = changed.is_ok(),
            () = request_ended(&state) => {}
            () = tokio::time::sleep_until(wake) => {
                if told_to_close.is_some() {
                    if state.in_flight.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    continue;
                }
                let deadline = next_deadline(&state, &config, *pressure.borrow(), shutting_down);
                if deadline.at <= tokio::time::Instant::now() {
                    match deadline.reason {
                        Expired::Head => {
                            state.closing_while_idle();
                            RefusalLog::SlowHeaders.log(format_args!(
                                "closed the connection from {client}: no complete request head within {:?}",
                                deadline.limit
                            ));
                            break;
                        }
                        Expired::Idle => {
                            state.closing_while_idle();
                            conn.as_mut().graceful_shutdown();
                            told_to_close = Some(tokio::time::Instant::now());
                        }
                    }
                }
            }
        }
        if shutting_down && told_to_close.is_none() {
            let head_pending = state.head_started_ms.load(Ordering::Acquire) != NEVER;
            if state.in_flight.load(Ordering::Acquire) == 0
                && head_pending
                && !state.http2.load(Ordering::Acquire)
            {
                // At most part of a request head and nothing to answer: close at once
                // rather than hold the exit for the grace period.
                break;
            }
            // Idle HTTP/1 connections close now; busy ones answer with
            // `Connection: close` and then close; HTTP/2 gets GOAWAY.
            if state.in_flight.load(Ordering::Acquire) == 0 {
                state.closing_while_idle();
            }
            conn.as_mut().graceful_shutdown();
            told_to_close = Some(tokio::time::Instant::now());
        }
    }
    // The slot is released with the socket (see `ConnIo`), after any lingering close.
}

/// Resolves when a request of this connection ends, if the connection listens for that.
async fn request_ended(state: &ConnState) {
    match &state.request_ended {
        Some(ended) => ended.notified().await,
        None => std::future::pending().await,
    }
}

/// Why a connection's deadline ends it.
enum Expired {
    /// No complete request head in time.
    Head,
    /// Idle too long.
    Idle,
}

/// When a connection's time is up if nothing changes, and what happens then.
struct Deadline {
    at: tokio::time::Instant,
    limit: Duration,
    reason: Expired,
}

/// The next deadline of a connection with nothing in flight (a request in flight is
/// bounded by its guest's deadline: the deadline is then just a time to look again).
fn next_deadline(
    state: &ConnState,
    config: &ServerConfig,
    pressure: bool,
    shutting_down: bool,
) -> Deadline {
    let now = state.now_ms();
    let squeeze = |limit: Duration| match pressure || shutting_down {
        true => limit.min(PRESSURE_IDLE_TIMEOUT),
        false => limit,
    };
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NEVER / 2);
    if state.in_flight.load(Ordering::Acquire) > 0 {
        let limit = config.idle_timeout.max(Duration::from_secs(1));
        return Deadline {
            at: state.at(now.saturating_add(millis(limit))),
            limit,
            // Never taken: a busy connection's deadline is recomputed before it acts.
            reason: Expired::Idle,
        };
    }
    let head_started = state.head_started_ms.load(Ordering::Acquire);
    if head_started != NEVER && !state.http2.load(Ordering::Acquire) {
        let limit = squeeze(config.header_read_timeout);
        return Deadline {
            at: state.at(head_started.saturating_add(millis(limit))),
            limit,
            reason: Expired::Head,
        };
    }
    let limit = squeeze(config.idle_timeout);
    let since = state.idle_since_ms.load(Ordering::Acquire);
    Deadline {
        at: state.at(since.saturating_add(millis(limit))),
        limit,
        reason: Expired::Idle,
    }
}

/// Logs why a connection ended, when that says something about the client.
fn log_connection_end(
    client: SocketAddr,
    result: Result<(), Box<dyn std::error::Error + Send + Sync>>,
) {
    let Err(err) = result else { return };
    match err.downcast_ref::<hyper::Error>() {
        Some(err) if err.is_parse_too_large() => RefusalLog::HeadersTooLarge.log(format_args!(
            "refused a request from {client} with 431: too many header fields or header bytes (raise --max-request-headers or --max-request-header-bytes if genuine)"
        )),
        Some(err) if err.is_parse() => RefusalLog::Malformed.log(format_args!(
            "refused a malformed request from {client} with 400: {err}"
        )),
        _ => tracing::debug!("connection from {client} ended with an error: {err}"),
    }
}

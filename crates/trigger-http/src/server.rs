//! The front door: accepting connections and bounding what one client can hold.
//!
//! Every limit a hostile or broken client could otherwise stretch has a default here:
//! how long request headers may take, how long an idle keep-alive connection stays open,
//! how many headers and header bytes a request may carry, how many connections are open
//! at once, and HTTP/2's stream and reset limits. A connection task watches each
//! connection's state (request in flight, head partly received, idle) and closes it when
//! its time is up; on shutdown it answers what was already received, announces the close
//! (`Connection: close`, GOAWAY) and closes idle and half-open connections at once.

use crate::handoff::{HAND_OFF, HandOffCell, HandedConnection, Redirect};
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

mod io;
use io::{ConnIo, Stream};

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
    serve_with_handed_off(handler, listener, None, config, shutdown).await;
}

/// [`serve`], also serving the client connections another server hands over on
/// `handed_off` (see [`hand_off_connection`]) as if they had been accepted here, with
/// their own listening address as [`Peer::local`].
pub async fn serve_with_handed_off(
    handler: Arc<dyn RequestHandler>,
    listener: tokio::net::TcpListener,
    mut handed_off: Option<tokio::sync::mpsc::Receiver<HandedConnection>>,
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
        let (stream, client, handed) = tokio::select! {
            Some(handed) = async {
                match &mut handed_off {
                    Some(handed) => handed.recv().await,
                    None => std::future::pending().await,
                }
            } => match (handed.stream.peer_addr(), handed.stream.local_addr()) {
                (Ok(client), Ok(local)) => (handed.stream, client, Some((local, handed.redirect))),
                _ => continue,
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    accept_backoff = Duration::ZERO;
                    (stream, client, None)
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
        let hand_off = Arc::new(HandOffCell::default());
        tokio::spawn(wisp_engine::ConnectionLane::new(HAND_OFF.scope(
            hand_off.clone(),
            connection(
                stream,
                client,
                handed,
                slot,
                shared.clone(),
                false,
                hand_off,
            ),
        )));
    }
    closing.send_replace(true);
    // Connections handed over just before shutdown: served like the backlog's below.
    if let Some(handed_off) = &mut handed_off {
        while let Ok(handed) = handed_off.try_recv() {
            let (Ok(slot), Ok(client), Ok(local)) = (
                slots.clone().try_acquire_owned(),
                handed.stream.peer_addr(),
                handed.stream.local_addr(),
            ) else {
                continue;
            };
            let hand_off = Arc::new(HandOffCell::default());
            tokio::spawn(connection(
                handed.stream,
                client,
                Some((local, handed.redirect)),
                slot,
                shared.clone(),
                true,
                hand_off,
            ));
        }
    }
    // Clients that connected (and maybe sent a request) just before shutdown are still in
    // the backlog: take them and treat them like every other connection.
    while let Some(Ok((stream, client))) = futures_now(listener.accept()) {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            break;
        };
        let hand_off = Arc::new(HandOffCell::default());
        tokio::spawn(connection(
            stream,
            client,
            None,
            slot,
            shared.clone(),
            true,
            hand_off,
        ));
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
    /// A read parked until the request in flight ends ([`ConnIo::poll_read`] of a
    /// connection that may go elsewhere between requests).
    parked_read: std::sync::Mutex<Option<std::task::Waker>>,
    read_parked: AtomicBool,
    /// Bytes arrived while a request was in flight, and none between requests since (a
    /// pipelining client): hyper may hold part of a next request, so the connection
    /// cannot go elsewhere.
    read_ahead: AtomicBool,
    /// The latest read between requests went past the end of a request head (a body, or
    /// a pipelined request), or stopped inside one: what hyper holds is not known.
    past_head: AtomicBool,
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
            parked_read: std::sync::Mutex::new(None),
            read_parked: AtomicBool::new(false),
            read_ahead: AtomicBool::new(false),
            past_head: AtomicBool::new(false),
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
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(ended) = &state.request_ended {
            ended.notify_one();
        }
        if state.read_parked.swap(false, Ordering::SeqCst) {
            let reader = state
                .parked_read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(reader) = reader {
                reader.wake();
            }
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
    handed: Option<(SocketAddr, Option<Redirect>)>,
    slot: tokio::sync::OwnedSemaphorePermit,
    shared: Shared,
    drained: bool,
    hand_off: Arc<HandOffCell>,
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
    let (local, redirect) = handed.unzip();
    let stream = match &shared.config.tls {
        // Only plain connections are handed over.
        _ if local.is_some() => Stream::Plain(stream),
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
    let state = ConnState::new(&shared.config);
    if local.is_some() {
        // Handed over between requests: idle, not owing a head since it started.
        state.head_started_ms.store(NEVER, Ordering::Release);
    }
    let state = Arc::new(state);
    let io = TokioIo::new(ConnIo {
        stream: Some(stream),
        on_slow_lane: wisp_engine::on_slow_lane(),
        hand_off: hand_off.clone(),
        handing_off: false,
        handed_cleanly: false,
        unflushed: false,
        waits_for_flush: false,
        redirect: redirect.flatten(),
        state: state.clone(),
        slot: Some(slot),
    });
    let peer = Peer {
        client,
        local: local.unwrap_or(shared.local),
        secure,
    };
    let service = {
        let handler = shared.handler.clone();
        let state = state.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            hand_off.clear();
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

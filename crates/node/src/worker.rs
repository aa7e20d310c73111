//! The node's worker process: where an app over its share runs while other apps are
//! being served.
//!
//! In one process, a flooded app's instances share the memory map with every other app's:
//! resetting, growing and faulting in their linear memories takes the process's
//! memory-map lock, and the quiet apps' requests wait on it, whatever thread priority the
//! flood runs at (`docs/performance.md`, "Noisy neighbours"). A second process has a
//! memory map of its own. So the node starts, on first need, a copy of itself in the
//! kernel's idle scheduling class (`wisp node --internal-worker`): same state directory,
//! same apps, no admin API and no event triggers. While an app has more requests in
//! flight than there are CPUs (up to its instance cap) and another app has been served
//! within the last 10 seconds, the node forwards its new requests there over loopback
//! HTTP/1.1, with a per-start secret so that nothing else can speak for a client. The
//! connection they came on moves to the node's own slow lane, so proxying the flood does
//! not take the serving threads either. Alone, a busy app stays in the node at full speed.
//!
//! The worker serves exactly the version the node routed to: every forwarded request
//! names the app and its deploy count, and a worker that has an older one re-reads the
//! app's record from `node.db` (written before the node switches versions). A worker
//! that is not running yet, exited or cannot be reached leaves requests in the node
//! (its slow lane), and is started again after [`RESTART_AFTER`].

use crate::handoff::{
    HeldConnections, Message, ServedInWorker, receive_messages, send_socket, serve_locally,
};
use crate::{Inner, NodeError};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use wasmtime_wasi_http::WasiBody;
use wisp_trigger_http::{HandedConnection, Peer};

/// How a node starts its worker process: the program and arguments of a `wisp node`
/// that serves the same state directory (the node adds `--internal-worker` and the
/// worker's secret, in its environment).
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The `wisp` binary.
    pub program: PathBuf,
    /// Its arguments, `node` and the serving flags.
    pub args: Vec<OsString>,
}

/// Which part of a node this process is.
#[derive(Debug, Clone)]
pub enum NodeRole {
    /// The node itself: admin API, event triggers, routing by `Host`; it starts a worker
    /// process with `worker` for apps over their share (`None`: it keeps them in its own
    /// slow lane).
    Main {
        /// How to start the worker.
        worker: Option<WorkerCommand>,
    },
    /// A node's worker: serves only requests the node forwards with `token`.
    Worker {
        /// The secret the node's forwarded requests carry.
        token: String,
    },
}

/// The flag that makes `wisp node` a worker.
pub const WORKER_FLAG: &str = "--internal-worker";
/// The environment variable that carries the worker's secret.
pub const WORKER_TOKEN_ENV: &str = "WISP_NODE_WORKER_TOKEN";
/// What a worker prints on stdout once it serves, before its address and the path of the
/// Unix socket it takes handed-off connections on (if it has one).
pub const WORKER_READY_LINE: &str = "wisp-worker listening on ";

/// How long after a worker exited (or failed to start) the node tries again.
const RESTART_AFTER: Duration = Duration::from_secs(1);
/// How long a starting worker has to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept to the worker.
const MAX_IDLE_CONNECTIONS: usize = 1024;

const TOKEN_HEADER: HeaderName = HeaderName::from_static("wisp-worker-token");
const APP_HEADER: HeaderName = HeaderName::from_static("wisp-worker-app");
const DEPLOY_HEADER: HeaderName = HeaderName::from_static("wisp-worker-deploy");
const CLIENT_HEADER: HeaderName = HeaderName::from_static("wisp-worker-client");
const LOCAL_HEADER: HeaderName = HeaderName::from_static("wisp-worker-local");
const SECURE_HEADER: HeaderName = HeaderName::from_static("wisp-worker-secure");
/// Asks the worker for its metrics instead of an app's answer.
const METRICS_HEADER: HeaderName = HeaderName::from_static("wisp-worker-metrics");
/// Asks the worker what it served on the connections it holds, per app, instead of an
/// app's answer.
const SERVED_HEADER: HeaderName = HeaderName::from_static("wisp-worker-served");
/// How long a scrape of the node waits for its worker's metrics.
const METRICS_TIMEOUT: Duration = Duration::from_secs(2);
/// The most bytes of metrics taken from the worker.
const MAX_METRICS_BYTES: usize = 256 << 20;
/// Removed from every client request: only the node sets them.
const FORWARD_HEADERS: [HeaderName; 8] = [
    TOKEN_HEADER,
    APP_HEADER,
    DEPLOY_HEADER,
    CLIENT_HEADER,
    LOCAL_HEADER,
    SECURE_HEADER,
    METRICS_HEADER,
    SERVED_HEADER,
];

/// The node's side of its worker process.
pub(crate) struct Worker {
    command: WorkerCommand,
    token: String,
    state: Mutex<State>,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
    forwarded: AtomicU64,
    handed_off: AtomicU64,
    returned: AtomicU64,
    starts: AtomicU64,
    /// Where connections the worker hands back go: the node's server, and the runtime
    /// that receives them (the serving one: a returned connection carries a request of
    /// an app within its share).
    take_back: Mutex<
        Option<(
            tokio::sync::mpsc::Sender<HandedConnection>,
            tokio::runtime::Handle,
        )>,
    >,
    /// Client connections the running worker holds, per app.
    held: Mutex<HeldConnections>,
    /// Whether `held` may count any connection: every request of the node asks, and
    /// most find none without taking the locks.
    any_held: std::sync::atomic::AtomicBool,
    /// Starts attempted: each worker process's generation.
    generations: AtomicU64,
}

enum State {
    NotStarted,
    Starting,
    Ready(Running),
    Down { retry_at: Instant },
    Stopped,
}

struct Running {
    address: SocketAddr,
    /// Which start of the worker this is (the `starts` count after it).
    generation: u64,
    /// Where client connections are handed over (`SCM_RIGHTS`).
    control: Option<Arc<std::os::unix::net::UnixStream>>,
    pid: u32,
    /// Closing it (dropping) tells the worker to finish and exit.
    stdin: Option<tokio::process::ChildStdin>,
    exited: tokio::sync::watch::Receiver<bool>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What `status` shows of the worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerInfo {
    pub pid: Option<u32>,
    pub forwarded: u64,
    pub handed_off: u64,
    pub returned: u64,
    pub held: u64,
    pub starts: u64,
}

impl Worker {
    /// A worker to start with `command` when first needed; fails without randomness for
    /// its secret.
    pub(crate) fn new(command: WorkerCommand) -> std::io::Result<Self> {
        Ok(Self {
            command,
            token: crate::admin::random_hex()?,
            state: Mutex::new(State::NotStarted),
            idle: Mutex::new(Vec::new()),
            forwarded: AtomicU64::new(0),
            handed_off: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            starts: AtomicU64::new(0),
            take_back: Mutex::new(None),
            held: Mutex::new(HeldConnections::default()),
            any_held: std::sync::atomic::AtomicBool::new(false),
            generations: AtomicU64::new(0),
        })
    }

    pub(crate) fn info(&self) -> WorkerInfo {
        let pid = match &*self.lock() {
            State::Ready(running) => Some(running.pid),
            _ => None,
        };
        WorkerInfo {
            pid,
            forwarded: self.forwarded.load(Ordering::Relaxed),
            handed_off: self.handed_off.load(Ordering::Relaxed),
            returned: self.returned.load(Ordering::Relaxed),
            held: self.held_count(),
            starts: self.starts.load(Ordering::Relaxed),
        }
    }

    /// Connections the worker hands back are served by `server`, received on `runtime`.
    pub(crate) fn take_back_on(
        &self,
        server: tokio::sync::mpsc::Sender<HandedConnection>,
        runtime: tokio::runtime::Handle,
    ) {
        *self.take_back.lock().unwrap_or_else(|e| e.into_inner()) = Some((server, runtime));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker's address if it is serving; otherwise starts it (in the background)
    /// when it is due and returns `None`: the request stays in the node.
    pub(crate) fn address(self: &Arc<Self>) -> Option<SocketAddr> {
        let mut state = self.lock();
        match &*state {
            State::Ready(running) => return Some(running.address),
            State::Starting | State::Stopped => return None,
            State::Down { retry_at } if Instant::now() < *retry_at => return None,
            State::NotStarted | State::Down { .. } => {}
        }
        *state = State::Starting;
        drop(state);
        let worker = self.clone();
        tokio::spawn(async move {
            let result = worker.clone().start().await;
            let mut state = worker.lock();
            match result {
                Ok(running) if matches!(*state, State::Starting) => *state = State::Ready(running),
                Ok(_) => {} // stopped meanwhile: dropping `running` ends it
                Err(err) => {
                    tracing::warn!(
                        "cannot start the node's worker process: {err}; apps over their share run in the node's slow lane"
                    );
                    if matches!(*state, State::Starting) {
                        *state = State::Down {
                            retry_at: Instant::now() + RESTART_AFTER,
                        };
                    }
                }
            }
        });
        None
    }

    async fn start(self: Arc<Self>) -> Result<Running, String> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let mut command = tokio::process::Command::new(&self.command.program);
        command
            .args(&self.command.args)
            .arg(WORKER_FLAG)
            .env(WORKER_TOKEN_ENV, &self.token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            // Its own process group: a terminal's Ctrl-C reaches the node, which then
            // lets the worker finish what it was forwarded.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.command.program.to_string_lossy()))?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("the worker has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (address, control) = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
                if let Some(ready) = line.strip_prefix(WORKER_READY_LINE) {
                    let (address, control) = match ready.trim().split_once(' ') {
                        Some((address, path)) => (address, Some(path)),
                        None => (ready.trim(), None),
                    };
                    let address = address
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("the worker printed a bad address `{address}`: {e}"))?;
                    let control = control.and_then(|path| {
                        let connected = std::os::unix::net::UnixStream::connect(path)
                            .and_then(|c| c.set_nonblocking(true).map(|()| c));
                        match connected {
                            Ok(control) => {
                                self.take_back_from(&control, generation);
                                Some(Arc::new(control))
                            }
                            Err(err) => {
                                tracing::warn!("cannot reach the worker's socket {path}: {err}; its connections will be proxied");
                                None
                            }
                        }
                    });
                    return Ok((address, control));
                }
            }
            Err("the worker exited before it served".to_owned())
        })
        .await
        .map_err(|_| format!("the worker did not serve within {START_TIMEOUT:?}"))??;
        let (exited_tx, exited) = tokio::sync::watch::channel(false);
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let worker = Arc::downgrade(&self);
        tokio::spawn(async move {
            // Keep reading stdout so the worker never blocks on a full pipe.
            let drain = async { while let Ok(Some(_)) = lines.next_line().await {} };
            let status = tokio::select! {
                status = child.wait() => status,
                _ = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
                () = async { drain.await; std::future::pending::<()>().await } => unreachable!(),
            };
            let _ = exited_tx.send(true);
            let Some(worker) = worker.upgrade() else {
                return;
            };
            worker
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            let mut state = worker.lock();
            if let State::Ready(running) = &*state
                && running.pid == pid
            {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(
                    "the node's worker process (pid {pid}) exited ({status}); apps over their share run in the node's slow lane until it is started again"
                );
                *state = State::Down {
                    retry_at: Instant::now() + RESTART_AFTER,
                };
            }
        });
        self.starts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "started the node's worker process (pid {pid}) on {address} for apps over their share"
        );
        Ok(Running {
            address,
            generation,
            control,
            pid,
            stdin,
            exited,
            kill: Some(kill),
        })
    }

    /// Stops the worker: it finishes what it was forwarded within `grace`, then is
    /// killed. No new worker starts afterwards.
    pub(crate) async fn stop(&self, grace: Duration) {
        let previous = std::mem::replace(&mut *self.lock(), State::Stopped);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let State::Ready(mut running) = previous else {
            return;
        };
        drop(running.stdin.take());
        let mut exited = running.exited.clone();
        let finished = tokio::time::timeout(grace + Duration::from_secs(1), async {
            while !*exited.borrow_and_update() {
                if exited.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                "the node's worker process (pid {}) did not stop within {grace:?}; killed it",
                running.pid
            );
            if let Some(kill) = running.kill.take() {
                let _ = kill.send(());
            }
        }
    }

    /// Asks for the current request's client connection (on which a request for `app`
    /// was forwarded) to be handed to the worker once its response is sent, so the node
    /// does nothing more for it while its requests are for that app.
    pub(crate) fn hand_off_after_this_request(self: &Arc<Self>, app: &str) {
        let worker = Arc::downgrade(self);
        let app = app.to_owned();
        wisp_trigger_http::hand_off_connection(Arc::new(move |socket| {
            if let Some(worker) = worker.upgrade() {
                worker.hand_off(socket, &app);
            }
        }));
    }

    /// Whether the running worker holds a client connection of `app`: then the app's
    /// requests all go there, so that its instances are in one process, under its cap.
    pub(crate) fn holds_connections_of(&self, app: &str) -> bool {
        if !self.any_held.load(Ordering::Relaxed) {
            return false;
        }
        let Some(generation) = self.running_generation() else {
            return false;
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let calm = held.calm.contains(app);
        held.of(generation)
            .is_some_and(|apps| !calm && apps.get(app).is_some_and(|&n| n > 0))
    }

    /// How many connections the running worker holds.
    fn held_count(&self) -> u64 {
        let Some(generation) = self.running_generation() else {
            return 0;
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.of(generation)
            .map_or(0, |apps| apps.values().map(|&n| n as u64).sum())
    }

    fn running_generation(&self) -> Option<u64> {
        match &*self.lock() {
            State::Ready(running) => Some(running.generation),
            _ => None,
        }
    }

    /// Tells the running worker that the node is shutting down: it serves what it holds
    /// to the end instead of handing connections back.
    pub(crate) fn closing(&self) {
        let control = match &*self.lock() {
            State::Ready(running) => running.control.clone(),
            _ => None,
        };
        if let Some(control) = control
            && let Err(err) = send_socket(&control, None, &Message::Closing)
        {
            tracing::debug!("cannot tell the worker the node is closing: {err}");
        }
    }

    /// Sends a client connection's socket to the worker. If it cannot be sent, the node
    /// serves it on: it is between requests, and its next request is unread.
    fn hand_off(&self, socket: std::net::TcpStream, app: &str) {
        let (control, generation) = match &*self.lock() {
            State::Ready(running) => (running.control.clone(), running.generation),
            _ => (None, 0),
        };
        let sent = match control {
            Some(control) => {
                // Counted first: the worker's word that the connection ended may come
                // before `send_socket` returns.
                self.held_changed(generation, app, 1);
                self.held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .calm
                    .remove(app);
                let sent = send_socket(&control, Some(&socket), &Message::Take(app.to_owned()));
                if sent.is_err() {
                    self.held_changed(generation, app, -1);
                }
                sent
            }
            None => Err(std::io::Error::other("the worker is not running")),
        };
        match sent {
            Ok(()) => {
                self.handed_off.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::debug!(
                    "cannot hand a connection to the worker ({err}); the node serves it on"
                );
                let take_back = self
                    .take_back
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some((server, _)) = take_back {
                    serve_locally(&server, socket);
                }
            }
        }
    }

    /// The worker of start `generation` holds `change` more (or fewer) of `app`'s
    /// connections.
    fn held_changed(&self, generation: u64, app: &str, change: isize) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let Some(apps) = held.of(generation) else {
            return;
        };
        let count = apps.entry(app.to_owned()).or_default();
        *count = count.saturating_add_signed(change);
        if *count == 0 {
            apps.remove(app);
        }
        self.any_held.store(!apps.is_empty(), Ordering::Relaxed);
    }

    /// Receives what the worker of start `generation` sends back over `control`
    /// (connections for other apps, and word of the connections it no longer holds), on
    /// the node's serving runtime.
    fn take_back_from(self: &Arc<Self>, control: &std::os::unix::net::UnixStream, generation: u64) {
        let take_back = self
            .take_back
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some((server, runtime)) = take_back else {
            return;
        };
        let control = match control.try_clone() {
            Ok(control) => control,
            Err(err) => {
                tracing::warn!("the node cannot take connections back from its worker: {err}");
                return;
            }
        };
        let worker = Arc::downgrade(self);
        let worker_for_end = worker.clone();
        runtime.spawn(async move {
            let control = match tokio::net::UnixStream::from_std(control) {
                Ok(control) => control,
                Err(err) => {
                    tracing::warn!("the node cannot take connections back from its worker: {err}");
                    return;
                }
            };
            receive_messages(control, server, move |message, socket| {
                let worker = worker.upgrade()?;
                match message {
                    Message::Back => {
                        worker.returned.fetch_add(1, Ordering::Relaxed);
                        Some(HandedConnection {
                            stream: socket?,
                            redirect: None,
                        })
                    }
                    Message::Calm(app) => {
                        // Marked before the connection's request is routed here.
                        let mut held = worker.held.lock().unwrap_or_else(|e| e.into_inner());
                        if held.of(generation).is_some() {
                            held.calm.insert(app);
                        }
                        drop(held);
                        worker.returned.fetch_add(1, Ordering::Relaxed);
                        Some(HandedConnection {
                            stream: socket?,
                            redirect: None,
                        })
                    }
                    Message::Gone(app) => {
                        worker.held_changed(generation, &app, -1);
                        None
                    }
                    Message::Take(_) | Message::Closing => None,
                }
            })
            .await;
            // The worker is gone, or the socket broke: it holds nothing the node hears of.
            if let Some(worker) = worker_for_end.upgrade() {
                let mut held = worker.held.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(apps) = held.of(generation) {
                    apps.clear();
                    worker.any_held.store(false, Ordering::Relaxed);
                }
            }
        });
    }

    /// Sends `request` (for the deploy `deploy` of app `app`, without forwarding headers)
    /// to the worker at `address`.
    /// Gives the request back if none of it was sent (the worker cannot be reached), so
    /// the node can serve it itself.
    pub(crate) async fn forward(
        &self,
        address: SocketAddr,
        request: Request<Incoming>,
        peer: &Peer,
        authority: &str,
        app: &str,
        deploy: &str,
    ) -> Result<Response<WasiBody>, Request<Incoming>> {
        let (mut parts, body) = request.into_parts();
        let (version, uri) = (parts.version, parts.uri.clone());
        // Served in the node after all: as it came, less what was added for the worker
        // (the hop-by-hop headers hyper has already acted on, and `Host` names the same
        // authority the request was routed by).
        let restore = |mut parts: http::request::Parts, body: Incoming| {
            parts.version = version;
            parts.uri = uri.clone();
            remove_forwarding_headers(&mut parts.headers);
            Request::from_parts(parts, body)
        };
        parts.version = http::Version::HTTP_11;
        if let Some(path) = parts.uri.path_and_query() {
            parts.uri = http::Uri::from(path.clone());
        }
        // The router took the forwarding headers off already (`remove_forwarding_headers`).
        strip_hop_by_hop(&mut parts.headers);
        let (Ok(host), Ok(app), Ok(token), Ok(deploy)) = (
            HeaderValue::from_str(authority),
            HeaderValue::from_str(app),
            HeaderValue::from_str(&self.token),
            HeaderValue::from_str(deploy),
        ) else {
            return Err(restore(parts, body));
        };
        let headers = &mut parts.headers;
        headers.insert(header::HOST, host);
        headers.insert(TOKEN_HEADER, token);
        headers.insert(APP_HEADER, app);
        headers.insert(DEPLOY_HEADER, deploy);
        headers.insert(CLIENT_HEADER, address_value(peer.client));
        headers.insert(LOCAL_HEADER, address_value(peer.local));
        headers.insert(
            SECURE_HEADER,
            HeaderValue::from_static(if peer.secure { "1" } else { "0" }),
        );
        let mut request = Request::from_parts(parts, body);
        // A pooled connection can have been closed by the worker meanwhile; the request
        // then comes back unsent and goes on the next one.
        for _ in 0..3 {
            let mut sender = match self.connection(address).await {
                Some(sender) => sender,
                None => break,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.forwarded.fetch_add(1, Ordering::Relaxed);
                    self.put_back(sender);
                    return Ok(from_worker(response));
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => {
                        tracing::warn!(
                            "the node's worker failed a forwarded request: {}",
                            failed.error()
                        );
                        return Ok(wisp_trigger_http::text_response(
                            StatusCode::BAD_GATEWAY,
                            "Bad Gateway\n",
                        ));
                    }
                },
            }
        }
        let (parts, body) = request.into_parts();
        Err(restore(parts, body))
    }

    /// The worker's metrics (OpenMetrics text), if it is running and answers in time.
    pub(crate) async fn metrics(&self) -> Option<String> {
        let metrics = self.ask(METRICS_HEADER, "/metrics").await;
        if metrics.is_none() {
            tracing::debug!("the node's worker sent no metrics");
        }
        metrics
    }

    /// What the worker served on the client connections it holds, per app (empty if it
    /// is not running, was never handed one, or does not answer in time).
    pub(crate) async fn served(&self) -> HashMap<String, ServedInWorker> {
        if self.handed_off.load(Ordering::Relaxed) == 0 {
            return HashMap::new();
        }
        match self.ask(SERVED_HEADER, "/served").await {
            Some(served) => serde_json::from_str(&served).unwrap_or_default(),
            None => HashMap::new(),
        }
    }

    /// Asks the running worker for what `header` names (a request of the node's own,
    /// with its secret): the answer's text, if it answers 200 in time.
    async fn ask(&self, header: HeaderName, path: &str) -> Option<String> {
        let address = match &*self.lock() {
            State::Ready(running) => running.address,
            _ => return None,
        };
        let request = Request::get(path)
            .header(header::HOST, address.to_string())
            .header(TOKEN_HEADER, &self.token)
            .header(header, "1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let fetch = async move {
            let stream = tokio::net::TcpStream::connect(address).await.ok()?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .ok()?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await.ok()?;
            if response.status() != StatusCode::OK {
                return None;
            }
            let body = http_body_util::Limited::new(response.into_body(), MAX_METRICS_BYTES)
                .collect()
                .await
                .ok()?;
            String::from_utf8(body.to_bytes().to_vec()).ok()
        };
        tokio::time::timeout(METRICS_TIMEOUT, fetch)
            .await
            .ok()
            .flatten()
    }

    /// An idle connection to the worker, or a new one.
    async fn connection(&self, address: SocketAddr) -> Option<SendRequest<Incoming>> {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|s| !s.is_closed());
            if let Some(at) = idle.iter().position(SendRequest::is_ready) {
                return Some(idle.swap_remove(at));
            }
        }
        let connect = async move {
            let stream = tokio::net::TcpStream::connect(address).await.ok()?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .ok()?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!("a connection to the node's worker ended: {err}");
                }
            });
            Some(sender)
        };
        // Made in the slow lane, so that the socket's events and the connection's task
        // stay off the serving threads, like the busy app's own connections.
        match wisp_engine::slow_lane_handle() {
            Some(slow) => slow.spawn(connect).await.ok().flatten(),
            None => connect.await,
        }
    }

    fn put_back(&self, sender: SendRequest<Incoming>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(sender);
        }
    }
}

fn address_value(address: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&address.to_string()).unwrap_or(HeaderValue::from_static("0.0.0.0:0"))
}

/// The worker's response as the node's: its own framing headers go.
fn from_worker(response: Response<Incoming>) -> Response<WasiBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync(),
    )
}

/// Removes the headers that describe one connection rather than the message.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TRANSFER_ENCODING,
        header::TE,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// What a forwarded request says about itself, checked by the worker.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub app: String,
    pub deploy: String,
    pub peer: Peer,
}

/// Why the worker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It does not carry the node's secret.
    NotFromTheNode,
    /// It lacks a forwarding header.
    Incomplete,
}

impl Refusal {
    pub(crate) fn response(self) -> Response<WasiBody> {
        match self {
            Refusal::NotFromTheNode => wisp_trigger_http::text_response(
                StatusCode::FORBIDDEN,
                "Forbidden: this is a node's worker; send requests to the node\n",
            ),
            Refusal::Incomplete => wisp_trigger_http::text_response(
                StatusCode::BAD_REQUEST,
                "Bad Request: incomplete forwarding headers\n",
            ),
        }
    }
}

/// Takes the headers only the node may set off a client's request, so that an app sees
/// the same request whether the node or its worker serves it.
pub(crate) fn remove_forwarding_headers(headers: &mut HeaderMap) {
    for name in FORWARD_HEADERS {
        headers.remove(name);
    }
}

/// Whether `request` is the node asking its worker for its metrics (it carries the
/// node's secret).
pub(crate) fn asks_for_metrics<B>(token: &crate::AdminToken, request: &Request<B>) -> bool {
    asks_for(METRICS_HEADER, token, request)
}

/// Whether `request` is the node asking its worker what it served on the connections it
/// holds (it carries the node's secret).
pub(crate) fn asks_for_served<B>(token: &crate::AdminToken, request: &Request<B>) -> bool {
    asks_for(SERVED_HEADER, token, request)
}

fn asks_for<B>(header: HeaderName, token: &crate::AdminToken, request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(header)
        && headers
            .get(TOKEN_HEADER)
            .is_some_and(|given| token.matches(given.as_bytes()))
}

/// The worker's check of a request: it must carry the node's secret; its forwarding
/// headers are taken off.
pub(crate) fn accept_forwarded<B>(
    token: &crate::AdminToken,
    request: &mut Request<B>,
) -> Result<Forwarded, Refusal> {
    let headers = request.headers_mut();
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if !text(&TOKEN_HEADER).is_some_and(|given| token.matches(given.as_bytes())) {
        return Err(Refusal::NotFromTheNode);
    }
    let app = text(&APP_HEADER);
    let deploy = text(&DEPLOY_HEADER);
    let client = text(&CLIENT_HEADER).and_then(|v| v.parse().ok());
    let local = text(&LOCAL_HEADER).and_then(|v| v.parse().ok());
    let secure = text(&SECURE_HEADER).is_some_and(|v| v == "1");
    for name in FORWARD_HEADERS {
        headers.remove(name);
    }
    match (app, deploy, client, local) {
        (Some(app), Some(deploy), Some(client), Some(local)) => Ok(Forwarded {
            app,
            deploy,
            peer: Peer {
                client,
                local,
                secure,
            },
        }),
        _ => Err(Refusal::Incomplete),
    }
}

impl Inner {
    /// In a worker: the entry of the deploy `deploy` of app `name`, reading the app's
    /// record again from `node.db` when the node has deployed one this process does not
    /// know (the node records a deploy before it routes to it).
    pub(crate) fn worker_entry(
        &self,
        name: &str,
        deploy: &str,
    ) -> Result<Arc<crate::AppEntry>, NodeError> {
        let current = self.table().apps.get(name).cloned();
        if let Some(entry) = &current
            && entry.deploy_id == deploy
        {
            return Ok(entry.clone());
        }
        let stored = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)?
            .ok_or_else(|| NodeError::NotFound(name.to_owned()))?;
        let new = Arc::new(crate::entry(stored, crate::LoadState::Idle));
        if let Some(entry) = &current
            && entry.deploy_id == new.deploy_id
        {
            // The node routed by a deploy it has replaced since: the stored one serves.
            return Ok(entry.clone());
        }
        let old = self.table_mut().insert(new.clone());
        if let Some(old) = old {
            old.retire();
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_they_name_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-end-to-end"], "kept");
    }

    fn forwarded(token: &str) -> Request<()> {
        Request::builder()
            .uri("/path")
            .header(TOKEN_HEADER, token)
            .header(APP_HEADER, "shop")
            .header(DEPLOY_HEADER, "3-abc")
            .header(CLIENT_HEADER, "203.0.113.7:4242")
            .header(LOCAL_HEADER, "127.0.0.1:3000")
            .header(SECURE_HEADER, "1")
            .header("x-app", "kept")
            .body(())
            .unwrap()
    }

    #[test]
    fn the_worker_takes_only_requests_with_the_nodes_secret() {
        let secret = crate::admin::random_hex().unwrap();
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, crate::admin::random_hex().unwrap());
        let token = crate::AdminToken::new(&secret).unwrap();

        let mut request = forwarded(&secret);
        let accepted = accept_forwarded(&token, &mut request).unwrap();
        assert_eq!(
            (accepted.app.as_str(), accepted.deploy.as_str()),
            ("shop", "3-abc")
        );
        assert_eq!(accepted.peer.client, "203.0.113.7:4242".parse().unwrap());
        assert_eq!(accepted.peer.local, "127.0.0.1:3000".parse().unwrap());
        assert!(accepted.peer.secure);
        // The app sees none of the forwarding headers, only its own.
        assert_eq!(request.headers().len(), 1, "{:?}", request.headers());

        for wrong in ["", "0123456789abcdef0123456789abcdef"] {
            let mut request = forwarded(wrong);
            let refused = accept_forwarded(&token, &mut request).unwrap_err();
            assert_eq!(refused, Refusal::NotFromTheNode);
            assert_eq!(refused.response().status(), StatusCode::FORBIDDEN);
        }
        let mut request = forwarded(&secret);
        request.headers_mut().remove(CLIENT_HEADER);
        let refused = accept_forwarded(&token, &mut request).unwrap_err();
        assert_eq!(refused.response().status(), StatusCode::BAD_REQUEST);
    }
}

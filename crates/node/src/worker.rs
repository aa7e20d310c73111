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

use crate::{Inner, NodeError};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use wasmtime_wasi_http::WasiBody;
use wisp_trigger_http::{HandOff, HandedConnection, Peer};

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
    /// Starts attempted: each worker process's generation.
    generations: AtomicU64,
}

/// The client connections a worker process holds, per app: while it holds one of an
/// app's, every request for that app goes to the worker, so all its instances are in one
/// process, under its cap.
#[derive(Default)]
struct HeldConnections {
    /// The start of the worker process they are in (its `starts` count).
    generation: u64,
    apps: HashMap<String, usize>,
    /// Apps whose connections the worker has begun to give back because they are no
    /// longer busy there: their requests are no longer all sent to it.
    calm: std::collections::HashSet<String>,
}

impl HeldConnections {
    /// The counts for the worker of start `generation` (a newer worker holds nothing yet);
    /// `None` for an older one's.
    fn of(&mut self, generation: u64) -> Option<&mut HashMap<String, usize>> {
        if generation > self.generation {
            self.generation = generation;
            self.apps.clear();
            self.calm.clear();
        }
        (generation == self.generation).then_some(&mut self.apps)
    }
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

/// What a worker served of one app on the client connections it holds (the node counts
/// the requests it forwards itself).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ServedInWorker {
    /// The deploy the counts are for.
    pub deploy: String,
    pub requests: u64,
    /// Milliseconds since the last of them started.
    pub idle_ms: Option<u64>,
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

/// What the node and its worker send each other over the worker's Unix socket, one
/// line each; a socket (`SCM_RIGHTS`) travels with the messages that carry one.
#[derive(Debug, PartialEq)]
enum Message {
    /// Node to worker, with a client socket: serve it while its requests are for this app.
    Take(String),
    /// Worker to node, with a client socket: its next request is for another app.
    Back,
    /// Worker to node, with a client socket: this app is no longer busy in the worker.
    Calm(String),
    /// Worker to node: a connection of this app it was given has ended (or gone back).
    Gone(String),
    /// Node to worker: the node is shutting down; hand nothing back.
    Closing,
}

impl Message {
    fn line(&self) -> String {
        match self {
            Message::Take(app) => format!("take {app}\n"),
            Message::Back => "back\n".to_owned(),
            Message::Calm(app) => format!("calm {app}\n"),
            Message::Gone(app) => format!("gone {app}\n"),
            Message::Closing => "closing\n".to_owned(),
        }
    }

    fn parse(line: &[u8]) -> Option<Message> {
        let line = std::str::from_utf8(line).ok()?;
        match line.split_once(' ') {
            Some(("take", app)) => Some(Message::Take(app.to_owned())),
            Some(("gone", app)) => Some(Message::Gone(app.to_owned())),
            Some(("calm", app)) => Some(Message::Calm(app.to_owned())),
            None if line == "back" => Some(Message::Back),
            None if line == "closing" => Some(Message::Closing),
            _ => None,
        }
    }

    fn carries_socket(&self) -> bool {
        matches!(self, Message::Take(_) | Message::Back | Message::Calm(_))
    }
}

/// Sends `message` over the Unix socket `control`, with `socket` (`SCM_RIGHTS`) if given.
fn send_socket(
    control: &impl std::os::fd::AsFd,
    socket: Option<&std::net::TcpStream>,
    message: &Message,
) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let line = message.line();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    let fds = socket.map(|socket| [socket.as_fd()]);
    if let Some(fds) = &fds {
        ancillary.push(SendAncillaryMessage::ScmRights(fds));
    }
    let sent = rustix::net::sendmsg(
        control.as_fd(),
        &[std::io::IoSlice::new(line.as_bytes())],
        &mut ancillary,
        SendFlags::NOSIGNAL,
    )?;
    if sent < line.len() {
        // The socket went with the first byte; the rest of the line is lost, and the
        // other side closes the channel at the broken line.
        tracing::warn!("a message to the node's worker was cut short");
    }
    Ok(())
}

/// Serves a connection that could not be handed on where it is (its next request
/// unread); it is closed if the server is gone or full.
fn serve_locally(
    server: &tokio::sync::mpsc::Sender<HandedConnection>,
    socket: std::net::TcpStream,
) {
    let stream = socket
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(socket));
    match stream {
        Ok(stream) => {
            let _ = server.try_send(HandedConnection {
                stream,
                redirect: None,
            });
        }
        Err(err) => tracing::debug!("closed a connection that could not be handed on: {err}"),
    }
}

/// The worker's Unix socket for connections its node hands over, readable and writable
/// by its user only, at `path` (in the state directory); `None` (logged) if it cannot be
/// made, e.g. a state directory whose path is too long for a socket address. Without it,
/// the node proxies every request it forwards.
pub fn bind_control_socket(path: &std::path::Path) -> Option<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    // A socket left by a worker that died; nothing else lives at this name.
    let _ = std::fs::remove_file(path);
    let bound = tokio::net::UnixListener::bind(path).and_then(|listener| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map(|()| listener)
    });
    match bound {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(
                "the node's worker cannot take over connections at {}: {err}; they are proxied instead",
                path.display()
            );
            None
        }
    }
}

/// The worker's side of hand-offs: takes the node's connection on `listener` (only from
/// a process of the same user) and serves every socket it receives (through
/// `handed_off`) while its requests are for the app the node named; before a request
/// for any other app, the socket goes back to the node with the request unread.
pub(crate) async fn receive_handed_off(
    listener: tokio::net::UnixListener,
    handed_off: tokio::sync::mpsc::Sender<HandedConnection>,
    inner: std::sync::Weak<Inner>,
) {
    loop {
        let Ok((control, _)) = listener.accept().await else {
            return;
        };
        let same_user = control
            .peer_cred()
            .is_ok_and(|cred| cred.uid() == rustix::process::getuid().as_raw());
        if !same_user {
            tracing::warn!("refused a connection to the worker's socket from another user");
            continue;
        }
        let back = match control.as_fd().try_clone_to_owned() {
            Ok(back) => Arc::new(back),
            Err(err) => {
                tracing::warn!("the worker cannot hand connections back: {err}");
                continue;
            }
        };
        let inner = inner.clone();
        let local = handed_off.clone();
        tokio::spawn(receive_messages(
            control,
            handed_off.clone(),
            move |message, socket| {
                let app = match message {
                    Message::Take(app) => app,
                    Message::Closing => {
                        if let Some(inner) = inner.upgrade() {
                            inner.closing.store(true, Ordering::Relaxed);
                        }
                        return None;
                    }
                    _ => return None,
                };
                // Made first, so that the node hears of the connection's end even if its
                // socket did not come through.
                let redirect = held_connection(inner.clone(), app, back.clone(), local.clone());
                Some(HandedConnection {
                    stream: socket?,
                    redirect: Some(redirect),
                })
            },
        ));
    }
}

/// The worker's rule for a connection of `app` the node handed over: it stays while its
/// requests are for `app` and `app` is busy here (more requests in flight than CPUs, or
/// so at one of the connection's requests in the last [`STAYS_AFTER_BUSY`]: a flood's
/// short lulls do not send its connections back and forth), and goes back over `control`
/// before any other request, so that the node serves it (a
/// socket that cannot be sent back is served on here, through `local`). When it ends
/// (here, or by going back), the node is told.
fn held_connection(
    inner: std::sync::Weak<Inner>,
    app: String,
    control: Arc<std::os::fd::OwnedFd>,
    local: tokio::sync::mpsc::Sender<HandedConnection>,
) -> wisp_trigger_http::Redirect {
    /// Tells the node when the connection's rule is dropped with the connection.
    struct Held {
        app: String,
        control: Arc<std::os::fd::OwnedFd>,
    }
    impl Drop for Held {
        fn drop(&mut self) {
            if let Err(err) = send_socket(&*self.control, None, &Message::Gone(self.app.clone())) {
                tracing::debug!("cannot tell the node a connection ended: {err}");
            }
        }
    }
    // Back for another app's request, or because this app is calm here.
    let back = |message: Message| -> HandOff {
        let control = control.clone();
        let local = local.clone();
        Arc::new(move |socket| {
            if let Err(err) = send_socket(&*control, Some(&socket), &message) {
                tracing::debug!(
                    "cannot hand a connection back to the node ({err}); served on here"
                );
                serve_locally(&local, socket);
            }
        })
    };
    let (elsewhere, calm) = (back(Message::Back), back(Message::Calm(app.clone())));
    let held = Held { app, control };
    // Milliseconds since the worker started until which the connection stays: the node
    // has just found its app busy.
    let handed_at = inner
        .upgrade()
        .map_or(0, |inner| inner.started.elapsed().as_millis() as u64);
    let stays_until = AtomicU64::new(handed_at + STAYS_AFTER_BUSY.as_millis() as u64);
    Arc::new(move |host| {
        let inner = inner.upgrade()?;
        if inner.closing.load(Ordering::Relaxed) {
            // Shutting down: the node takes nothing back.
            return None;
        }
        let table = inner.table();
        let Some(entry) = table
            .route(&crate::routing::host_name(host))
            .filter(|entry| entry.name == held.app)
        else {
            return Some(elsewhere.clone());
        };
        let now = inner.started.elapsed().as_millis() as u64;
        // The node's test for busy, on what runs here.
        let cap = (entry.record.limits.max_instances).unwrap_or(inner.config.app_max_instances);
        if entry.in_flight.load(Ordering::Relaxed).min(cap) > inner.busy_above {
            let until = now + STAYS_AFTER_BUSY.as_millis() as u64;
            stays_until.store(until, Ordering::Relaxed);
        }
        (now >= stays_until.load(Ordering::Relaxed)).then(|| calm.clone())
    })
}

/// How long a connection the worker holds stays after its app was last seen busy there.
const STAYS_AFTER_BUSY: Duration = Duration::from_secs(1);

/// Reads the messages sent over `control` and passes `receive` each one with its socket
/// (if it carries one); the connections `receive` makes go to `server`.
async fn receive_messages(
    control: tokio::net::UnixStream,
    server: tokio::sync::mpsc::Sender<HandedConnection>,
    receive: impl Fn(Message, Option<tokio::net::TcpStream>) -> Option<HandedConnection>,
) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    // A stream socket keeps no message boundaries: lines are read across reads, and the
    // sockets, which arrive no later than the bytes of the line they came with, queue
    // until their line is complete.
    let mut pending = Vec::new();
    let mut sockets = std::collections::VecDeque::new();
    loop {
        if control.readable().await.is_err() {
            return;
        }
        let received = control.try_io(tokio::io::Interest::READABLE, || {
            let mut bytes = [0u8; 4096];
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut ancillary = RecvAncillaryBuffer::new(&mut space);
            let received = rustix::net::recvmsg(
                control.as_fd(),
                &mut [std::io::IoSliceMut::new(&mut bytes)],
                &mut ancillary,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            for part in ancillary.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = part {
                    sockets.extend(fds.map(std::net::TcpStream::from));
                }
            }
            pending.extend_from_slice(&bytes[..received.bytes]);
            if received.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
                // A socket was dropped: the ones queued can no longer be matched.
                return Err(std::io::Error::other("a socket did not fit the message"));
            }
            Ok(received.bytes)
        });
        match received {
            Ok(0) => return, // the other side closed it
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(err) => {
                tracing::warn!("the node's hand-off socket failed: {err}; closed it");
                let _ = rustix::net::shutdown(control.as_fd(), rustix::net::Shutdown::Both);
                return;
            }
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Some(message) = Message::parse(&line[..end]) else {
                tracing::warn!("the hand-off socket carried an unknown message; closed it");
                let _ = rustix::net::shutdown(control.as_fd(), rustix::net::Shutdown::Both);
                return;
            };
            let socket = match message.carries_socket() {
                true => sockets.pop_front().and_then(|socket| {
                    socket
                        .set_nonblocking(true)
                        .and_then(|()| tokio::net::TcpStream::from_std(socket))
                        .inspect_err(|err| {
                            tracing::debug!("cannot serve a handed-over connection: {err}")
                        })
                        .ok()
                }),
                false => None,
            };
            if let Some(connection) = receive(message, socket)
                && server.send(connection).await.is_err()
            {
                return;
            }
        }
    }
}

impl Inner {
    /// In a worker: what it served of each app on the connections its node handed over
    /// (the node counted the requests it forwarded).
    pub(crate) fn served_on_held_connections(&self) -> HashMap<String, ServedInWorker> {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        self.table()
            .apps
            .values()
            .filter_map(|entry| {
                let requests = entry.requests.load(Ordering::Relaxed);
                let last = entry.last_used.load(Ordering::Relaxed);
                (requests > 0).then(|| {
                    let served = ServedInWorker {
                        deploy: entry.deploy_id.clone(),
                        requests,
                        idle_ms: (last > 0).then(|| now.saturating_sub(last)),
                    };
                    (entry.name.clone(), served)
                })
            })
            .collect()
    }

    /// In a worker: keeps its apps equal to the node's (a deploy, a replace or a
    /// removal in `node.db`) within a quarter of a second, for the connections the node
    /// handed over, which are routed here by `Host`.
    pub(crate) async fn follow_the_store(self: Arc<Self>) {
        let mut seen = None;
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        loop {
            ticks.tick().await;
            let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            let version = match store.data_version() {
                Ok(version) => version,
                Err(err) => {
                    tracing::warn!("the worker cannot read the node's apps: {err}");
                    continue;
                }
            };
            if seen == Some(version) {
                continue;
            }
            seen = Some(version);
            let stored = match store.all() {
                Ok(stored) => stored,
                Err(err) => {
                    tracing::warn!("the worker cannot read the node's apps: {err}");
                    continue;
                }
            };
            drop(store);
            let mut retired = Vec::new();
            {
                let mut table = self.table_mut();
                let names: std::collections::HashSet<_> =
                    stored.iter().map(|app| app.name.clone()).collect();
                let gone: Vec<_> = table
                    .apps
                    .keys()
                    .filter(|name| !names.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    retired.extend(table.remove(&name));
                }
                for app in stored {
                    let new = crate::entry(app, crate::LoadState::Idle);
                    // Not over the same deploy, nor over a newer one a forwarded request
                    // made this process read since.
                    if table.apps.get(&new.name).is_some_and(|current| {
                        (current.deployed_at, current.version) >= (new.deployed_at, new.version)
                    }) {
                        continue;
                    }
                    retired.extend(table.insert(Arc::new(new)));
                }
            }
            for old in retired {
                old.retire();
            }
        }
    }

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

    #[tokio::test]
    async fn messages_and_their_sockets_are_read_in_order() {
        let (node_side, worker_side) = std::os::unix::net::UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let second = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let third = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let sent = [
            (Message::Gone("one".into()), None),
            (Message::Back, Some(&first)),
            (Message::Gone("two".into()), None),
            (Message::Closing, None),
            (Message::Take("app".into()), Some(&second)),
            (Message::Calm("app".into()), Some(&third)),
        ];
        for (message, socket) in &sent {
            send_socket(&worker_side, *socket, message).unwrap();
        }
        drop(worker_side);
        node_side.set_nonblocking(true).unwrap();
        let control = tokio::net::UnixStream::from_std(node_side).unwrap();
        let (server, mut served) = tokio::sync::mpsc::channel(8);
        let seen = Mutex::new(Vec::new());
        // Returns once the other side has closed and everything was read.
        receive_messages(control, server, |message, socket| {
            let client = socket.as_ref().map(|s| s.local_addr().unwrap());
            seen.lock().unwrap().push((message, client));
            socket.map(|stream| HandedConnection {
                stream,
                redirect: None,
            })
        })
        .await;
        let expected: Vec<_> = sent
            .into_iter()
            .map(|(message, socket)| (message, socket.map(|s| s.local_addr().unwrap())))
            .collect();
        assert_eq!(*seen.lock().unwrap(), expected);
        let mut clients = Vec::new();
        while let Ok(connection) = served.try_recv() {
            clients.push(connection.stream.local_addr().unwrap());
        }
        assert_eq!(
            clients,
            [&first, &second, &third].map(|s| s.local_addr().unwrap())
        );
        assert_eq!(Message::parse(b"take"), None);
        assert_eq!(Message::parse(b"what app"), None);
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

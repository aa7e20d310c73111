//! The channel between a node and its worker process over which client connections go
//! (`<state-dir>/worker.sock`): the messages, the worker's rule for the connections it
//! holds, and how the worker keeps its routing table equal to the node's for them. The
//! node's side of the count of held connections is in [`crate::worker`].

use crate::Inner;
use std::collections::HashMap;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wisp_trigger_http::{HandOff, HandedConnection};

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
/// The client connections a worker process holds, per app: while it holds one of an
/// app's, every request for that app goes to the worker, so all its instances are in one
/// process, under its cap.
#[derive(Default)]
pub(crate) struct HeldConnections {
    /// The start of the worker process they are in (its `starts` count).
    generation: u64,
    pub(crate) apps: HashMap<String, usize>,
    /// Apps whose connections the worker has begun to give back because they are no
    /// longer busy there: their requests are no longer all sent to it.
    pub(crate) calm: std::collections::HashSet<String>,
}

impl HeldConnections {
    /// The counts for the worker of start `generation` (a newer worker holds nothing yet);
    /// `None` for an older one's.
    pub(crate) fn of(&mut self, generation: u64) -> Option<&mut HashMap<String, usize>> {
        if generation > self.generation {
            self.generation = generation;
            self.apps.clear();
            self.calm.clear();
        }
        (generation == self.generation).then_some(&mut self.apps)
    }
}

/// What the node and its worker send each other over the worker's Unix socket, one
/// line each; a socket (`SCM_RIGHTS`) travels with the messages that carry one.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
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
pub(crate) fn send_socket(
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
pub(crate) fn serve_locally(
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
pub(crate) async fn receive_messages(
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
}

impl crate::Node {
    /// What the worker served on the client connections it holds, per app.
    pub(crate) async fn served_in_worker(&self) -> HashMap<String, ServedInWorker> {
        match &self.inner.worker {
            Some(worker) => worker.served().await,
            None => HashMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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
}

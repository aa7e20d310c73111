//! What outbound PostgreSQL and MySQL share: the time bounds, the per-app pool of idle
//! connections, the failures before they become a WIT `error`, the session a guest's
//! handle holds (opened under the handle and connection limits, returned to the pool
//! when the handle is dropped), and the producer that feeds a query's rows to a WASI 0.3
//! `stream<row>`.
//!
//! The pool is keyed by the connection string exactly as the guest wrote it, and every
//! idle connection remembers the address it was dialed to: a connection is handed out
//! again only after the new `open` has passed the grant check and that address is among
//! the ones the check returned, so reuse never widens what a component may reach.

use crate::capability::{AppContext, Prepared};
use crate::{Capabilities, CapabilitiesCtx, CapabilitiesView, ComponentCapabilities};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, ComponentType, Destination, FutureReader, Lift, Linker, Lower, Resource,
    StreamProducer, StreamReader, StreamResult, VecBuffer,
};

/// Bound on dialing and authenticating a new connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each statement (for a streamed query: on each wait for the server).
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the session reset that precedes returning a connection to the pool.
pub(crate) const RESET_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of row data one non-streamed query may return; past it the query fails
/// instead of the host buffering without limit.
pub(crate) const MAX_RESULT_BYTES: usize = 64 << 20;
/// Rows buffered between the database and a guest reading a `stream<row>`.
pub(crate) const STREAM_BUFFER_ROWS: usize = 64;

/// Idle connections kept per connection string.
const MAX_IDLE_PER_KEY: usize = 16;
/// Idle connections kept per app across all connection strings.
const MAX_IDLE_TOTAL: usize = 128;
/// An idle connection unused this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the sweeper looks for expired idle connections.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// What the PostgreSQL and MySQL capabilities prepare: one pool of idle connections for
/// the app, granted to each of its components (the pool is the grant).
pub(crate) fn prepare_pool<C: Reusable>(app: &AppContext<'_>) -> Prepared {
    let pool = Pool::<C>::default();
    let mut prepared = Prepared::default();
    for component in &app.locked.components {
        prepared.grant(&component.id, pool.clone());
    }
    prepared
}

/// Links `fermyon:spin/rdbms-types@2.0.0`, which `fermyon:spin/postgres` and `mysql`
/// both use. It declares only types, so when both capabilities link it the second call
/// re-opens the same empty instance instead of clashing.
pub(crate) fn add_types_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    crate::bindings::fermyon::spin::rdbms_types::add_to_linker::<T, Capabilities>(
        linker,
        crate::view,
    )
}

struct Idle<C> {
    conn: C,
    peer: SocketAddr,
    since: Instant,
}

struct PoolState<C> {
    idle: HashMap<String, Vec<Idle<C>>>,
    total: usize,
    sweeper: bool,
}

/// Idle connections keyed by connection string, bounded per key and in total; the
/// newest is reused first so the oldest age out. Clones share the connections.
pub(crate) struct Pool<C> {
    state: Arc<Mutex<PoolState<C>>>,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            state: self.state.clone(),
        }
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool {
            state: Arc::new(Mutex::new(PoolState {
                idle: HashMap::new(),
                total: 0,
                sweeper: false,
            })),
        }
    }
}

impl<C: Send + 'static> Pool<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState<C>> {
        // A panic while holding the lock cannot leave the map inconsistent in a way
        // that matters: at worst `total` is off, and it only bounds the pool's size.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection for `key` whose address is among `allowed`, if any. Expired
    /// ones met on the way are dropped (closing them) outside the lock.
    pub(crate) fn take(&self, key: &str, allowed: &[SocketAddr]) -> Option<(C, SocketAddr)> {
        let mut expired = Vec::new();
        let found = {
            let mut state = self.lock();
            let mut found = None;
            let mut removed = 0;
            if let Some(list) = state.idle.get_mut(key) {
                while let Some(idle) = list.pop() {
                    removed += 1;
                    if idle.since.elapsed() >= IDLE_TIMEOUT {
                        expired.push(idle.conn);
                    } else if allowed.contains(&idle.peer) {
                        found = Some((idle.conn, idle.peer));
                        break;
                    } else {
                        // Not reachable under the current grant check; it will not be
                        // for this key later either unless DNS changes back.
                        expired.push(idle.conn);
                    }
                }
                if list.is_empty() {
                    state.idle.remove(key);
                }
            }
            state.total = state.total.saturating_sub(removed);
            found
        };
        drop(expired);
        found
    }

    /// Keeps `conn` (dialed to `peer`) for a later `open` of `key`; when the pool is
    /// full the connection is closed instead.
    pub(crate) fn put(&self, key: String, peer: SocketAddr, conn: C) {
        let mut state = self.lock();
        let full = state.total >= MAX_IDLE_TOTAL
            || state
                .idle
                .get(&key)
                .is_some_and(|list| list.len() >= MAX_IDLE_PER_KEY);
        if full {
            drop(state);
            drop(conn);
            return;
        }
        state.idle.entry(key).or_default().push(Idle {
            conn,
            peer,
            since: Instant::now(),
        });
        state.total += 1;
        if !state.sweeper {
            state.sweeper = true;
            drop(state);
            self.start_sweeper();
        }
    }

    /// Closes idle connections past [`IDLE_TIMEOUT`] every [`SWEEP_INTERVAL`]; the task
    /// ends with the pool (it holds only a weak reference).
    fn start_sweeper(&self) {
        let weak: Weak<Mutex<PoolState<C>>> = Arc::downgrade(&self.state);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_INTERVAL).await;
                let Some(state) = weak.upgrade() else { return };
                let expired: Vec<C> = {
                    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                    let mut expired = Vec::new();
                    for list in state.idle.values_mut() {
                        let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(list)
                            .into_iter()
                            .partition(|idle| idle.since.elapsed() >= IDLE_TIMEOUT);
                        *list = fresh;
                        expired.extend(old.into_iter().map(|idle| idle.conn));
                    }
                    state.idle.retain(|_, list| !list.is_empty());
                    state.total = state.total.saturating_sub(expired.len());
                    expired
                };
                drop(expired);
            }
        });
    }

    /// How many idle connections the pool holds (for tests).
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().total
    }
}

/// `fermyon:spin/rdbms-types` only declares types, shared by its postgres and mysql.
impl crate::bindings::fermyon::spin::rdbms_types::Host for CapabilitiesCtx<'_> {}

// ---------------------------------------------------------------------------
// Failures

/// A boxed error: the cause behind a [`Message`].
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A message for the guest (every WIT error case carries a string), and the error that
/// caused it when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub(crate) struct Message {
    text: String,
    #[source]
    cause: Option<BoxError>,
}

impl Message {
    /// A message with no underlying error.
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Message {
            text: text.into(),
            cause: None,
        }
    }

    /// A message (which already says what `cause` says) keeping `cause` as its source.
    pub(crate) fn caused(text: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Message {
            text: text.into(),
            cause: Some(cause.into()),
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::new(text)
    }
}

/// A failed database call, before it is expressed in one interface version's WIT
/// `error`, whose cases these are. `Q` is what a failed statement carries: a message,
/// or for PostgreSQL also the server's error fields.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure<Q = Message> {
    /// `connection-failed`: the connection could not be made, or was lost.
    #[error(transparent)]
    Connection(Message),
    /// `bad-parameter`: the parameters do not fit the statement.
    #[error(transparent)]
    BadParameter(Message),
    /// `query-failed`.
    #[error(transparent)]
    Query(Q),
    /// `value-conversion-failed`: a result value has no WIT form.
    #[error(transparent)]
    Conversion(Message),
}

/// Expresses a [`Failure`] in a WIT `error` whose four cases carry strings (a
/// statement's failure as its one-line text).
macro_rules! text_error {
    ($error:ty) => {
        impl<Q: std::fmt::Display> From<Failure<Q>> for $error {
            fn from(failure: Failure<Q>) -> Self {
                match failure {
                    Failure::Connection(m) => Self::ConnectionFailed(m.to_string()),
                    Failure::BadParameter(m) => Self::BadParameter(m.to_string()),
                    Failure::Query(q) => Self::QueryFailed(q.to_string()),
                    Failure::Conversion(m) => Self::ValueConversionFailed(m.to_string()),
                }
            }
        }
    };
}

text_error!(crate::bindings::fermyon::spin::rdbms_types::Error);
text_error!(crate::bindings::spin::postgres3_0_0::postgres::Error);
text_error!(crate::bindings::spin::mysql::mysql::Error);

// ---------------------------------------------------------------------------
// Sessions

/// A database connection as a [`Session`] holds it and the [`Pool`] keeps it.
pub(crate) trait Reusable: Sized + Send + Sync + 'static {
    /// The address scheme: what grants and messages call the database.
    const SCHEME: &'static str;

    /// The database as OpenTelemetry names it (`db.system.name`).
    const SYSTEM: &'static str;

    /// Whether the connection is known to be gone.
    fn is_closed(&mut self) -> bool;

    /// Clears what a guest may have changed in the server session, for the next `open`;
    /// `false` when the connection must not be reused (a transaction is still open, or
    /// the session could not be cleared).
    fn reset(&mut self) -> impl Future<Output = bool> + Send;
}

/// One checked-out connection, shared by the guest's handle and a streaming query still
/// reading from it.
pub(crate) struct Session<C> {
    /// Statements run on it.
    pub(crate) conn: C,
    /// The connection string as the guest wrote it: the pool key.
    key: String,
    /// The checked address the connection was dialed to.
    pub(crate) peer: SocketAddr,
    caps: Arc<ComponentCapabilities>,
    /// Set when a statement timed out or the connection failed: never pooled again.
    broken: AtomicBool,
    /// Counts against the process-wide service connection limit while checked out.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The span of the request that opened it, when traced: statements are its children.
    trace: Option<wisp_telemetry::SpanParent>,
}

impl<C: Reusable> Session<C> {
    /// The span of one statement (`operation`: `query`, `execute`), when the request that
    /// opened the session is traced.
    pub(crate) fn span(&self, operation: &str) -> Option<wisp_telemetry::Span> {
        let mut span = crate::service_span(self.trace.as_ref(), C::SYSTEM, operation)?;
        span.set("server.address", self.peer.ip().to_string());
        span.set("server.port", self.peer.port());
        Some(span)
    }

    /// Keeps the connection from going back to the pool: its protocol state is unknown
    /// or it is gone.
    pub(crate) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Marks the session broken after a statement ran past [`QUERY_TIMEOUT`] and says so.
    pub(crate) fn abandon(&self) -> Message {
        self.mark_broken();
        Message::new(timed_out())
    }

    /// Returns the connection to the pool when nothing else uses it, it is not broken and
    /// [`Reusable::reset`] cleared it within [`RESET_TIMEOUT`]; otherwise closes it.
    async fn release(self: Arc<Self>) {
        let Ok(mut session) = Arc::try_unwrap(self) else {
            // A streaming query still reads from it; the connection closes after it.
            return;
        };
        if session.broken.load(Ordering::Relaxed) || session.conn.is_closed() {
            return;
        }
        // No pool when the capability was linked without being prepared: close it.
        let Some(pool) = session.caps.grant::<Pool<C>>().cloned() else {
            return;
        };
        if let Ok(true) = tokio::time::timeout(RESET_TIMEOUT, session.conn.reset()).await {
            pool.put(session.key, session.peer, session.conn);
        }
    }
}

/// Why dialing one checked address failed.
pub(crate) enum DialError {
    /// The server answered (bad password, unknown database): another address of the
    /// same server would say the same, so no other is tried.
    Answered(BoxError),
    /// Nothing usable answered there; the next address is tried.
    Unreachable(BoxError),
}

/// Opens a session for `address` (the pool key), whose `host` and `port` the caller
/// parsed: checks them against the component's grants, then reuses an idle pooled
/// connection to one of the checked addresses, or dials those addresses in turn with
/// `dial` (never a second DNS answer) within [`CONNECT_TIMEOUT`]. A destination outside
/// the grants gets `not_permitted` as its text (Spin's, which guests may compare).
pub(crate) async fn connect<C: Reusable, F: Future<Output = Result<C, DialError>>>(
    caps: Arc<ComponentCapabilities>,
    address: &str,
    (host, port): (&str, u16),
    not_permitted: impl FnOnce() -> String,
    mut dial: impl FnMut(SocketAddr) -> F,
) -> Result<Session<C>, Message> {
    let target = caps
        .service_target(C::SCHEME, host, port)
        .await
        .map_err(|e| match e {
            wisp_outbound::ServiceError::NotAllowed { .. } => Message::caused(not_permitted(), e),
            other => Message::caused(other.to_string(), other),
        })?;
    let session = |conn, peer, caps| Session {
        conn,
        key: address.to_owned(),
        peer,
        caps,
        broken: AtomicBool::new(false),
        permit: None,
        trace: None,
    };
    use wisp_metrics::OutboundOutcome;
    if let Some(pool) = caps.grant::<Pool<C>>().cloned() {
        while let Some((mut conn, peer)) = pool.take(address, &target.addresses) {
            if !conn.is_closed() {
                caps.count_service(C::SCHEME, OutboundOutcome::Ok);
                return Ok(session(conn, peer, caps));
            }
        }
    }
    let attempt = async {
        let mut last_error = None;
        for &peer in &target.addresses {
            match dial(peer).await {
                Ok(conn) => return Ok((conn, peer)),
                Err(DialError::Answered(e)) => return Err(Some(e)),
                Err(DialError::Unreachable(e)) => last_error = Some(e),
            }
        }
        Err(last_error)
    };
    let target = target.describe();
    let attempted = tokio::time::timeout(CONNECT_TIMEOUT, attempt).await;
    let outcome = match &attempted {
        Ok(Ok(_)) => OutboundOutcome::Ok,
        _ => OutboundOutcome::Error,
    };
    caps.count_service(C::SCHEME, outcome);
    match attempted {
        Ok(Ok((conn, peer))) => Ok(session(conn, peer, caps)),
        Ok(Err(Some(e))) => Err(Message::caused(
            format!("cannot connect to {target}: {e}"),
            e,
        )),
        Ok(Err(None)) => Err(Message::new(format!(
            "cannot connect to {target}: no address"
        ))),
        Err(_) => Err(Message::new(format!(
            "cannot connect to {target}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// An open connection resource. Dropping it (by the guest, or with the instance)
/// returns the connection to the app's pool when it is healthy and idle.
pub struct Connection<C: Reusable> {
    session: Option<Arc<Session<C>>>,
}

impl<C: Reusable> Drop for Connection<C> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(session.release());
        }
    }
}

/// A guest's handle on a connection.
pub(crate) type Handle<C> = Resource<Connection<C>>;

impl CapabilitiesCtx<'_> {
    /// The component's capabilities, for work done outside the store borrow.
    fn rdbms_caps(&self) -> Arc<ComponentCapabilities> {
        self.state.caps.clone()
    }

    /// Takes a handle slot and a process-wide connection permit before dialling, so a
    /// guest at either limit opens no socket; the message says which limit was hit.
    fn reserve_rdbms(&mut self) -> Result<Reserved, String> {
        if !self.state.reserve_handle() {
            return Err(too_many_handles());
        }
        match crate::service_connection_permit() {
            Some(permit) => Ok(Reserved { permit }),
            None => {
                self.state.release_handle();
                Err(format!(
                    "this host already has {} outbound service connections open; try again later",
                    crate::MAX_SERVICE_CONNECTIONS
                ))
            }
        }
    }

    /// Opens a session with `connect` under a handle slot and a connection permit, and
    /// stores it as the guest's handle.
    pub(crate) async fn open_session<C: Reusable, Q: std::fmt::Display, F>(
        &mut self,
        connect: impl FnOnce(Arc<ComponentCapabilities>) -> F,
    ) -> wasmtime::Result<Result<Handle<C>, Failure<Q>>>
    where
        F: Future<Output = Result<Session<C>, Failure<Q>>>,
    {
        let span = self.state.service_span(C::SYSTEM, "connect");
        let reserved = match self.reserve_rdbms() {
            Ok(reserved) => reserved,
            Err(message) => {
                let failure = Err(Failure::Connection(message.into()));
                wisp_telemetry::end_with(span, &failure);
                return Ok(failure);
            }
        };
        let session = connect(self.rdbms_caps()).await;
        wisp_telemetry::end_with(span, &session);
        self.push_session(session, reserved)
    }

    /// Stores a session made under `reserved` (its handle slot is already taken) as the
    /// guest's handle, or gives the slot back when the connect (or the table) failed.
    fn push_session<C: Reusable, Q>(
        &mut self,
        session: Result<Session<C>, Failure<Q>>,
        reserved: Reserved,
    ) -> wasmtime::Result<Result<Handle<C>, Failure<Q>>> {
        let mut session = match session {
            Ok(session) => session,
            Err(e) => {
                self.state.release_handle();
                return Ok(Err(e));
            }
        };
        session.permit = Some(reserved.permit);
        session.trace = self.state.trace().cloned();
        let connection = Connection {
            session: Some(Arc::new(session)),
        };
        match self.table.push(connection) {
            Ok(handle) => Ok(Ok(handle)),
            Err(e) => {
                self.state.release_handle();
                Err(e.into())
            }
        }
    }

    /// The session behind a guest's handle.
    pub(crate) fn session<C: Reusable>(
        &self,
        handle: &Handle<C>,
    ) -> wasmtime::Result<Arc<Session<C>>> {
        match &self.table.get(handle)?.session {
            Some(session) => Ok(session.clone()),
            None => wasmtime::bail!("{} connection used after it was closed", C::SCHEME),
        }
    }

    /// Drops the guest's handle and returns its connection to the pool (awaited, so the
    /// next `open` in the same request can reuse it).
    pub(crate) async fn close_session<C: Reusable>(
        &mut self,
        handle: Handle<C>,
    ) -> wasmtime::Result<()> {
        let mut connection = self.table.delete(handle)?;
        self.state.release_handle();
        if let Some(session) = connection.session.take() {
            session.release().await;
        }
        Ok(())
    }
}

/// [`CapabilitiesCtx::open_session`] for the WASI 0.3 forms, which borrow the store
/// only between awaits.
pub(crate) async fn open_session<T, C: Reusable, Q: std::fmt::Display, F>(
    accessor: &Accessor<T, Capabilities>,
    connect: impl FnOnce(Arc<ComponentCapabilities>) -> F,
) -> wasmtime::Result<Result<Handle<C>, Failure<Q>>>
where
    F: Future<Output = Result<Session<C>, Failure<Q>>>,
{
    let (span, reserved) = accessor.with(|mut access| {
        let mut ctx = access.get();
        let span = ctx.state.service_span(C::SYSTEM, "connect");
        let reserved = ctx
            .reserve_rdbms()
            .map(|reserved| (ctx.rdbms_caps(), reserved));
        (span, reserved)
    });
    let (caps, reserved) = match reserved {
        Ok(reserved) => reserved,
        Err(message) => {
            let failure = Err(Failure::Connection(message.into()));
            wisp_telemetry::end_with(span, &failure);
            return Ok(failure);
        }
    };
    let session = connect(caps).await;
    wisp_telemetry::end_with(span, &session);
    accessor.with(|mut access| access.get().push_session(session, reserved))
}

/// [`CapabilitiesCtx::session`] for the WASI 0.3 forms.
pub(crate) fn session<T, C: Reusable>(
    accessor: &Accessor<T, Capabilities>,
    handle: &Handle<C>,
) -> wasmtime::Result<Arc<Session<C>>> {
    accessor.with(|mut access| access.get().session(handle))
}

/// What [`CapabilitiesCtx::reserve_rdbms`] took; the permit stays with the connection
/// while the guest holds it.
struct Reserved {
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// Most row bytes one stream holds between the database and the guest (besides the
/// row being sent): a guest that does not read its rows cannot make the host buffer more.
pub(crate) const STREAM_BUFFER_BYTES: usize = 16 << 20;

/// A row on its way to the guest, holding its share of the stream's byte budget until
/// the guest takes it.
pub(crate) struct Budgeted<T> {
    row: T,
    _bytes: tokio::sync::OwnedSemaphorePermit,
}

/// The database side of a row stream: at most [`STREAM_BUFFER_ROWS`] rows and
/// [`STREAM_BUFFER_BYTES`] bytes are in flight.
pub(crate) struct RowSender<T> {
    rows: mpsc::Sender<Budgeted<T>>,
    budget: Arc<tokio::sync::Semaphore>,
}

impl<T> RowSender<T> {
    /// Sends one row of about `bytes`, waiting while the budget is spent; `Err` once the
    /// guest dropped the stream.
    pub(crate) async fn send(&self, row: T, bytes: usize) -> Result<(), ()> {
        // A row larger than the whole budget goes alone.
        let wanted = u32::try_from(bytes.clamp(1, STREAM_BUFFER_BYTES)).unwrap_or(u32::MAX);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| ())?;
        self.rows
            .send(Budgeted {
                row,
                _bytes: permit,
            })
            .await
            .map_err(|_| ())
    }
}

/// A bounded row stream: the sender for the database task, the receiver for
/// [`ChannelProducer`]. Dropping the receiver drops the rows it holds, which returns
/// their budget, so a blocked sender wakes and sees the stream is gone.
pub(crate) fn row_channel<T>() -> (RowSender<T>, mpsc::Receiver<Budgeted<T>>) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER_ROWS);
    let budget = Arc::new(tokio::sync::Semaphore::new(STREAM_BUFFER_BYTES));
    (RowSender { rows: tx, budget }, rx)
}

/// Feeds rows received on a channel to a guest's `stream<T>`; the stream ends when the
/// sender (the task reading from the database) is dropped.
pub(crate) struct ChannelProducer<T> {
    rows: mpsc::Receiver<Budgeted<T>>,
}

impl<T> ChannelProducer<T> {
    pub(crate) fn new(rows: mpsc::Receiver<Budgeted<T>>) -> Self {
        ChannelProducer { rows }
    }
}

impl<T: Send + Sync + Unpin + 'static, D> StreamProducer<D> for ChannelProducer<T> {
    type Item = T;
    type Buffer = VecBuffer<T>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let this = self.get_mut();
        match this.rows.poll_recv(cx) {
            Poll::Ready(Some(first)) => {
                // Handing the rows to the guest's buffer returns their byte budget.
                let mut batch = vec![first.row];
                while batch.len() < STREAM_BUFFER_ROWS {
                    match this.rows.try_recv() {
                        Ok(next) => batch.push(next.row),
                        Err(_) => break,
                    }
                }
                destination.set_buffer(batch.into());
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A query's rows as the guest reads them, and its outcome once they are all read.
pub(crate) type GuestRows<R, E> = (StreamReader<R>, FutureReader<Result<(), E>>);

/// Hands a started query to the guest: its rows as a `stream`, and its outcome as a
/// `future` (`stopped` when the reading task ended without reporting one).
pub(crate) fn rows_and_outcome<T, R, F, E>(
    accessor: &Accessor<T, crate::Capabilities>,
    rows: mpsc::Receiver<Budgeted<R>>,
    done: oneshot::Receiver<Result<(), F>>,
    error: fn(F) -> E,
    stopped: fn(String) -> E,
) -> wasmtime::Result<GuestRows<R, E>>
where
    R: ComponentType + Lift + Lower + Send + Sync + Unpin + 'static,
    F: Send + 'static,
    E: ComponentType + Lift + Lower + Send + Sync + 'static,
{
    accessor.with(|mut access| {
        let rows = StreamReader::new(&mut access, ChannelProducer::new(rows))?;
        let done = FutureReader::new(&mut access, async move {
            Ok::<_, wasmtime::Error>(match done.await {
                Ok(outcome) => outcome.map_err(error),
                Err(_) => Err(stopped(
                    "the query stopped before reporting its outcome".to_owned(),
                )),
            })
        })?;
        Ok((rows, done))
    })
}

/// Spin 1.x's unversioned `fermyon:spin/postgres` or `mysql` (`$v1`): an address per
/// call. Each call opens a 2.0.0 connection (`$v2`; a pooled one when the app has it
/// idle), runs the statement on it and gives it back, so grants, TLS and the pool work as
/// for 2.0.0. The types are 2.0.0's `rdbms-types`; only the error type (`$error`) differs,
/// and `execute` returns `$executed`.
macro_rules! address_per_call {
    ($v1:ident, $v2:ident, $error:ident, $connection:ty, $executed:ty) => {
        fn v1_error(error: $crate::bindings::fermyon::spin::rdbms_types::Error) -> $v1::$error {
            use $crate::bindings::fermyon::spin::rdbms_types::Error as E;
            match error {
                E::ConnectionFailed(m) => $v1::$error::ConnectionFailed(m),
                E::BadParameter(m) => $v1::$error::BadParameter(m),
                E::QueryFailed(m) => $v1::$error::QueryFailed(m),
                E::ValueConversionFailed(m) => $v1::$error::ValueConversionFailed(m),
                E::Other(m) => $v1::$error::OtherError(m),
            }
        }

        impl $v1::Host for $crate::CapabilitiesCtx<'_> {
            async fn query(
                &mut self,
                address: String,
                statement: String,
                params: Vec<$crate::bindings::fermyon::spin::rdbms_types::ParameterValue>,
            ) -> wasmtime::Result<
                Result<$crate::bindings::fermyon::spin::rdbms_types::RowSet, $v1::$error>,
            > {
                let connection: wasmtime::component::Resource<$connection> =
                    match $v2::HostConnection::open(self, address).await? {
                        Ok(connection) => connection,
                        Err(e) => return Ok(Err(v1_error(e))),
                    };
                let borrowed = wasmtime::component::Resource::new_borrow(connection.rep());
                let result = $v2::HostConnection::query(self, borrowed, statement, params).await;
                $v2::HostConnection::drop(self, connection).await?;
                Ok(result?.map_err(v1_error))
            }

            async fn execute(
                &mut self,
                address: String,
                statement: String,
                params: Vec<$crate::bindings::fermyon::spin::rdbms_types::ParameterValue>,
            ) -> wasmtime::Result<Result<$executed, $v1::$error>> {
                let connection: wasmtime::component::Resource<$connection> =
                    match $v2::HostConnection::open(self, address).await? {
                        Ok(connection) => connection,
                        Err(e) => return Ok(Err(v1_error(e))),
                    };
                let borrowed = wasmtime::component::Resource::new_borrow(connection.rep());
                let result = $v2::HostConnection::execute(self, borrowed, statement, params).await;
                $v2::HostConnection::drop(self, connection).await?;
                Ok(result?.map_err(v1_error))
            }
        }
    };
}
pub(crate) use address_per_call;

/// Runs `future` with [`QUERY_TIMEOUT`]; `None` when it did not finish in time.
pub(crate) async fn bounded<F: std::future::Future>(future: F) -> Option<F::Output> {
    tokio::time::timeout(QUERY_TIMEOUT, future).await.ok()
}

/// The message for a statement that ran past [`QUERY_TIMEOUT`].
pub(crate) fn timed_out() -> String {
    format!(
        "the statement did not finish within {}s and was abandoned (the connection is closed); make it cheaper or split it",
        QUERY_TIMEOUT.as_secs()
    )
}

/// The message for a result set past [`MAX_RESULT_BYTES`].
pub(crate) fn too_large() -> String {
    format!(
        "the result set exceeds {} MiB; select fewer rows or columns (LIMIT/OFFSET), or read it through the streaming query",
        MAX_RESULT_BYTES >> 20
    )
}

/// The message when an instance holds [`crate::MAX_OPEN_HANDLES`] already.
pub(crate) fn too_many_handles() -> String {
    format!(
        "this instance already holds {} open connections and handles; drop some first",
        crate::MAX_OPEN_HANDLES
    )
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn row_streams_hold_at_most_their_byte_budget() {
        let (sender, receiver) = row_channel::<Vec<u8>>();
        let quarter = STREAM_BUFFER_BYTES / 4;
        for _ in 0..4 {
            sender
                .send(vec![0; 8], quarter)
                .await
                .expect("within budget");
        }
        // The budget is spent: the next row waits until the guest takes some...
        let blocked =
            tokio::time::timeout(Duration::from_millis(100), sender.send(vec![0; 8], quarter))
                .await;
        assert!(blocked.is_err(), "a fifth quarter must wait");
        // ...and once the guest is gone the sender learns it instead of waiting forever.
        drop(receiver);
        let gone = tokio::time::timeout(Duration::from_secs(1), sender.send(vec![0; 8], quarter))
            .await
            .expect("no wait after the receiver is dropped");
        assert!(gone.is_err());
        // A row larger than the whole budget still goes, alone.
        let (sender, mut receiver) = row_channel::<Vec<u8>>();
        sender
            .send(vec![1], STREAM_BUFFER_BYTES * 4)
            .await
            .expect("a huge row goes alone");
        assert_eq!(receiver.recv().await.expect("the row").row, vec![1]);
    }

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn pool_reuses_only_matching_addresses_and_bounds_keys() {
        let pool: Pool<u32> = Pool::default();
        pool.put("a".into(), addr(1), 1);
        pool.put("a".into(), addr(2), 2);
        // The newest connection whose address is allowed comes back first.
        assert_eq!(pool.take("a", &[addr(1), addr(2)]), Some((2, addr(2))));
        // One dialed to an address the grant check did not return is closed, not reused.
        assert_eq!(pool.take("a", &[addr(3)]), None);
        assert_eq!(pool.idle_count(), 0);
        for i in 0..40 {
            pool.put("b".into(), addr(1), i);
        }
        assert_eq!(pool.idle_count(), MAX_IDLE_PER_KEY);
        assert_eq!(pool.take("c", &[addr(1)]), None);
    }
}

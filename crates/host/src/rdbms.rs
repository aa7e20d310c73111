//! What outbound PostgreSQL and MySQL share: the time bounds, the per-app pool of idle
//! connections, and the producer that feeds a query's rows to a WASI 0.3 `stream<row>`.
//!
//! The pool is keyed by the connection string exactly as the guest wrote it, and every
//! idle connection remembers the address it was dialed to: a connection is handed out
//! again only after the new `open` has passed the grant check and that address is among
//! the ones the check returned, so reuse never widens what a component may reach.

use crate::CapabilitiesCtx;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, ComponentType, Destination, FutureReader, Lift, Lower, StreamProducer, StreamReader,
    StreamResult, VecBuffer,
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

/// The app's pools, one per database kind; shared by all its components.
#[derive(Default)]
pub struct RdbmsPools {
    pub(crate) postgres: Pool<crate::postgres::PgClient>,
    pub(crate) mysql: Pool<mysql_async::Conn>,
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
/// newest is reused first so the oldest age out.
pub(crate) struct Pool<C> {
    state: Arc<Mutex<PoolState<C>>>,
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

impl CapabilitiesCtx<'_> {
    /// The component's capabilities, for work done outside the store borrow.
    pub(crate) fn rdbms_caps(&self) -> Arc<crate::ComponentCapabilities> {
        self.state.caps.clone()
    }

    /// Takes a handle slot and a process-wide connection permit before dialling, so a
    /// guest at either limit opens no socket; the message says which limit was hit.
    pub(crate) fn reserve_rdbms(&mut self) -> Result<Reserved, String> {
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

    /// Gives back a slot taken by [`Self::reserve_rdbms`] whose connect failed.
    pub(crate) fn unreserve_rdbms(&mut self) {
        self.state.release_handle();
    }

    /// Stores a connection made under `reserved` (its handle slot is already taken) as
    /// the resource `into_resource` builds from it and the permit, or gives the slot back
    /// when the connect (or the table) failed.
    pub(crate) fn push_reserved<S, R: Send + 'static, F>(
        &mut self,
        connected: Result<S, F>,
        reserved: Reserved,
        into_resource: impl FnOnce(S, tokio::sync::OwnedSemaphorePermit) -> R,
    ) -> wasmtime::Result<Result<wasmtime::component::Resource<R>, F>> {
        let connected = match connected {
            Ok(connected) => connected,
            Err(e) => {
                self.unreserve_rdbms();
                return Ok(Err(e));
            }
        };
        match self.table.push(into_resource(connected, reserved.permit)) {
            Ok(handle) => Ok(Ok(handle)),
            Err(e) => {
                self.unreserve_rdbms();
                Err(e.into())
            }
        }
    }
}

/// What [`CapabilitiesCtx::reserve_rdbms`] took; the permit stays with the connection
/// while the guest holds it.
pub(crate) struct Reserved {
    pub(crate) permit: tokio::sync::OwnedSemaphorePermit,
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

//! Outbound HTTP connections kept for reuse, one pool per component's client (so never
//! shared across components or apps), keyed by scheme, host and port: the TLS settings
//! are the component's for that host, so the key covers them too.
//!
//! An HTTP/1.1 connection goes back to the pool only after its response body was read to
//! the end and hyper says it can take another request; a body dropped early closes it.
//! Idle connections are bounded per key and per pool and closed after [`IDLE_TIMEOUT`].
//! An HTTP/2 connection (TLS upstreams that offer `h2`) carries every concurrent request
//! to its destination; it is kept while in use and closed after [`IDLE_TIMEOUT`] unused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::{http1::SendRequest, http2};
use tokio::time::Instant;

/// The request body type every pooled connection takes.
pub(crate) type PoolBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// How long a connection may sit idle before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per destination.
pub const MAX_IDLE_PER_DESTINATION: usize = 64;
/// Idle connections kept per pool (one component) by default.
pub const MAX_IDLE: usize = 64;

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

struct Idle {
    sender: SendRequest<PoolBody>,
    since: Instant,
}

/// An HTTP/2 connection and when a request last started on it.
struct Shared {
    sender: http2::SendRequest<PoolBody>,
    used: Instant,
}

#[derive(Default)]
struct State {
    idle: HashMap<Key, Vec<Idle>>,
    count: usize,
    shared: HashMap<Key, Shared>,
    sweeping: bool,
}

/// A component's idle connections.
pub(crate) struct Pool {
    state: Mutex<State>,
    max_idle: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.lock().count)
            .finish()
    }
}

impl Pool {
    /// A pool keeping at most `max_idle` connections (0 keeps none).
    pub(crate) fn new(max_idle: usize) -> Pool {
        Pool {
            state: Mutex::default(),
            max_idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The HTTP/2 connection to `key`, if one is open.
    pub(crate) fn shared(&self, key: &Key) -> Option<http2::SendRequest<PoolBody>> {
        let mut state = self.lock();
        let shared = state.shared.get_mut(key)?;
        if shared.sender.is_ready() && shared.used.elapsed() < IDLE_TIMEOUT {
            shared.used = Instant::now();
            return Some(shared.sender.clone());
        }
        state.shared.remove(key);
        None
    }

    /// Keeps an HTTP/2 connection for every request to `key` (unless reuse is off).
    pub(crate) fn share(self: &Arc<Self>, key: Key, sender: http2::SendRequest<PoolBody>) {
        if self.max_idle == 0 {
            return;
        }
        let mut state = self.lock();
        state.shared.insert(
            key,
            Shared {
                sender,
                used: Instant::now(),
            },
        );
        self.start_sweeping(&mut state);
    }

    fn start_sweeping(self: &Arc<Self>, state: &mut State) {
        if !state.sweeping {
            state.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// The most recently used idle connection to `key` that can take a request.
    pub(crate) fn checkout(&self, key: &Key) -> Option<SendRequest<PoolBody>> {
        let mut state = self.lock();
        let state = &mut *state;
        let list = state.idle.get_mut(key)?;
        let mut found = None;
        while let Some(idle) = list.pop() {
            state.count -= 1;
            if idle.since.elapsed() < IDLE_TIMEOUT && idle.sender.is_ready() {
                found = Some(idle.sender);
                break;
            }
        }
        if list.is_empty() {
            state.idle.remove(key);
        }
        found
    }

    /// Keeps `sender` for the next request to `key`, unless the pool is full.
    fn checkin(self: &Arc<Self>, key: Key, sender: SendRequest<PoolBody>) {
        let mut state = self.lock();
        if state.count >= self.max_idle {
            return;
        }
        let list = state.idle.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_DESTINATION {
            return;
        }
        list.push(Idle {
            sender,
            since: Instant::now(),
        });
        state.count += 1;
        self.start_sweeping(&mut state);
    }

    /// Drops connections idle too long or closed; `false` when none is left.
    fn sweep_once(&self) -> bool {
        let mut state = self.lock();
        let state = &mut *state;
        let mut dropped = 0;
        state.idle.retain(|_, list| {
            let before = list.len();
            list.retain(|idle| idle.since.elapsed() < IDLE_TIMEOUT && !idle.sender.is_closed());
            dropped += before - list.len();
            !list.is_empty()
        });
        state.count -= dropped;
        state
            .shared
            .retain(|_, shared| shared.used.elapsed() < IDLE_TIMEOUT && !shared.sender.is_closed());
        let left = state.count > 0 || !state.shared.is_empty();
        if !left {
            state.sweeping = false;
        }
        left
    }
}

/// Closes expired connections while the pool holds any (dropping a sender ends its
/// connection task).
async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 4).await;
        match pool.upgrade() {
            Some(pool) if pool.sweep_once() => {}
            _ => return,
        }
    }
}

/// A connection on loan to one response, returned when its body is done.
pub(crate) struct Loan {
    pub pool: Weak<Pool>,
    pub key: Key,
    pub sender: SendRequest<PoolBody>,
}

impl Loan {
    /// Returns the connection once hyper has finished the exchange (the request body
    /// written, the response read) and can send again.
    pub(crate) fn give_back(self) {
        let Loan {
            pool,
            key,
            mut sender,
        } = self;
        tokio::spawn(async move {
            let ready = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await;
            if let (Ok(Ok(())), Some(pool)) = (ready, pool.upgrade()) {
                pool.checkin(key, sender);
            }
        });
    }
}

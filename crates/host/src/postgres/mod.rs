//! Outbound PostgreSQL: `fermyon:spin/postgres@2.0.0`, `spin:postgres/postgres@3.0.0` and
//! `@4.2.0` (which also serves `@4.0`/`@4.1` imports; its `*-async` functions and
//! `query-async` row stream are the WASI 0.3 forms).
//!
//! `open` takes a `postgres://`/`postgresql://` URL or a `host=... port=...` key-value
//! string. The host must be granted by `allowed_outbound_hosts` (`postgres://host:port`,
//! whichever scheme the guest wrote) and resolve outside the blocked networks; only the
//! checked addresses are dialed. Connections are plain TCP (`tokio-postgres` with
//! `NoTls`): `sslmode=require` is refused with a message saying so. Values travel in
//! PostgreSQL's binary format, decoded and encoded here so that every WIT value type
//! maps to its column types (see `docs/capabilities.md`); a column of any other type
//! comes back as `other`/`unsupported` instead of failing the query.
//!
//! This module holds the session plumbing: connecting, returning connections to the
//! pool, failures, and running statements. Values and their binary format are in
//! [`codec`]; each interface version's conversions and host traits are in [`v2`],
//! [`v3`] and [`v4`].

mod codec;
mod v2;
mod v3;
mod v4;

pub use v4::PostgresBuilder;

use crate::rdbms::{self, CONNECT_TIMEOUT, MAX_RESULT_BYTES, QUERY_TIMEOUT, RESET_TIMEOUT};
use crate::{Capabilities, CapabilitiesCtx, ComponentCapabilities};
use codec::{PgType, PgValue, columns, decode_row, encode_params};
use futures::TryStreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls, Statement};
use wasmtime::component::{Accessor, Resource};

/// What the pool keeps: a client whose connection task runs on its own.
pub(crate) type PgClient = Client;

/// One checked-out connection, shared with a streaming query still reading from it.
struct Session {
    client: Client,
    /// The connection string, the pool key.
    key: String,
    peer: SocketAddr,
    caps: Arc<ComponentCapabilities>,
    /// Set when a statement timed out or the connection failed: never pooled again.
    broken: AtomicBool,
    /// Counts against the process-wide service connection limit while checked out.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// An open connection resource. Dropping it (by the guest, or with the instance)
/// returns the connection to the app's pool when it is healthy and idle.
pub struct PgConnection {
    session: Option<Arc<Session>>,
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(release(session));
        }
    }
}

/// Returns the session's connection to the pool when nothing else uses it, no
/// transaction is open and the session state could be reset; otherwise closes it.
async fn release(session: Arc<Session>) {
    let Ok(session) = Arc::try_unwrap(session) else {
        // A streaming query still reads from it; the connection closes after it.
        return;
    };
    if session.broken.load(Ordering::Relaxed) || session.client.is_closed() {
        return;
    }
    // In an explicit transaction block `transaction_timestamp()` is the time of
    // BEGIN, earlier than this statement's; outside one the two are equal. The
    // rest resets what a guest may have changed in the session (everything
    // `DISCARD ALL` does except dropping prepared statements, which would break the
    // client's cached type-lookup statements).
    const RESET: &str = "SELECT statement_timestamp() = transaction_timestamp(); \
        SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; \
        SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";
    let idle = match tokio::time::timeout(RESET_TIMEOUT, session.client.simple_query(RESET)).await
    {
        Ok(Ok(messages)) => messages.iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
        }),
        _ => false,
    };
    if idle {
        session
            .caps
            .rdbms
            .postgres
            .put(session.key, session.peer, session.client);
    }
}

// ---------------------------------------------------------------------------
// Failures

/// A failure, before it is expressed in one version's WIT error type.
#[derive(Debug)]
enum Failure {
    Connection(String),
    BadParameter(String),
    Query(QueryFailure),
    Conversion(String),
}

#[derive(Debug)]
enum QueryFailure {
    Text(String),
    Db(Box<DbErrorInfo>),
}

/// The fields of a server error, as `spin:postgres@4.x` reports them.
#[derive(Debug)]
struct DbErrorInfo {
    as_text: String,
    severity: String,
    code: String,
    message: String,
    detail: Option<String>,
    extras: Vec<(String, String)>,
}

impl Failure {
    /// The one-line message the v2/v3 `query-failed(string)` carries.
    fn query_text(failure: QueryFailure) -> String {
        match failure {
            QueryFailure::Text(text) => text,
            QueryFailure::Db(db) => db.as_text,
        }
    }
}

/// Maps a client error: a server error keeps all its fields; a closed or broken
/// connection marks the session so it is not pooled.
fn query_error(session: &Session, error: tokio_postgres::Error) -> Failure {
    if let Some(db) = error.as_db_error() {
        let mut extras = Vec::new();
        let mut extra = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                extras.push((name.to_owned(), value.to_owned()));
            }
        };
        extra("hint", db.hint());
        extra("where", db.where_());
        extra("schema", db.schema());
        extra("table", db.table());
        extra("column", db.column());
        extra("datatype", db.datatype());
        extra("constraint", db.constraint());
        extra("routine", db.routine());
        if let Some(tokio_postgres::error::ErrorPosition::Original(position)) = db.position() {
            extras.push(("position".to_owned(), position.to_string()));
        }
        return Failure::Query(QueryFailure::Db(Box::new(DbErrorInfo {
            as_text: db.to_string(),
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras,
        })));
    }
    if error.is_closed() || session.client.is_closed() {
        session.broken.store(true, Ordering::Relaxed);
        return Failure::Connection(format!(
            "the connection to {} was lost ({error}); open a new one",
            describe_peer(session.peer)
        ));
    }
    Failure::Query(QueryFailure::Text(error.to_string()))
}

fn describe_peer(peer: SocketAddr) -> String {
    format!("postgres://{peer}")
}

// ---------------------------------------------------------------------------
// Connecting

/// The single TCP host and port of a connection string, checked against what the
/// guest may not ask for (several hosts, `hostaddr`, Unix sockets, TLS).
fn parse_address(address: &str) -> Result<(tokio_postgres::Config, String, u16), Failure> {
    let bad = |why: String| {
        Failure::Connection(format!(
            "invalid PostgreSQL address: {why}; expected postgres://user:password@host:port/database or \"host=... port=... user=... password=... dbname=...\""
        ))
    };
    let config: tokio_postgres::Config = address.parse().map_err(|e| bad(format!("{e}")))?;
    let host = match config.get_hosts() {
        [Host::Tcp(host)] => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        [] => return Err(bad("no host".to_owned())),
        [_] => {
            return Err(bad(
                "Unix sockets are not reachable from a component".to_owned()
            ));
        }
        _ => return Err(bad("only one host may be given".to_owned())),
    };
    if !config.get_hostaddrs().is_empty() {
        return Err(bad(
            "hostaddr is not supported; name the host and grant it in allowed_outbound_hosts"
                .to_owned(),
        ));
    }
    let port = match config.get_ports() {
        [] => 5432,
        [port] => *port,
        _ => return Err(bad("only one port may be given".to_owned())),
    };
    if config.get_ssl_mode() == SslMode::Require {
        return Err(Failure::Connection(
            "TLS to PostgreSQL is not supported by this host yet; connect with sslmode=disable or sslmode=prefer (plain TCP) on a trusted network".to_owned(),
        ));
    }
    Ok((config, host, port))
}

/// Checks the address against the component's grants, then reuses an idle pooled
/// connection to one of the checked addresses or dials a new one (never a second DNS
/// answer).
async fn connect(caps: Arc<ComponentCapabilities>, address: &str) -> Result<Session, Failure> {
    let (config, host, port) = parse_address(address)?;
    let target = caps
        .service_target("postgres", &host, port)
        .await
        .map_err(|e| Failure::Connection(e.to_string()))?;
    while let Some((client, peer)) = caps.rdbms.postgres.take(address, &target.addresses) {
        if !client.is_closed() {
            return Ok(Session {
                client,
                key: address.to_owned(),
                peer,
                caps,
                broken: AtomicBool::new(false),
                _permit: None,
            });
        }
    }
    let attempt = async {
        let mut last_error = None;
        for &peer in &target.addresses {
            let stream = match TcpStream::connect(peer).await {
                Ok(stream) => stream,
                Err(e) => {
                    last_error = Some(e.to_string());
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match config.connect_raw(stream, NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("postgres connection to {peer} ended: {e}");
                        }
                    });
                    return Ok((client, peer));
                }
                // Authentication and database errors are the server's answer; trying
                // another address of the same server would repeat it.
                Err(e) if e.as_db_error().is_some() => {
                    return Err(e.as_db_error().map(|db| db.to_string()).unwrap_or_default());
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        Err(last_error.unwrap_or_else(|| "no address".to_owned()))
    };
    let (client, peer) = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => {
            return Err(Failure::Connection(format!(
                "cannot connect to {}: {e}",
                target.describe()
            )));
        }
        Err(_) => {
            return Err(Failure::Connection(format!(
                "cannot connect to {}: no answer within {}s",
                target.describe(),
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    Ok(Session {
        client,
        key: address.to_owned(),
        peer,
        caps,
        broken: AtomicBool::new(false),
        _permit: None,
    })
}

// ---------------------------------------------------------------------------
// Statements

/// Marks the session broken after a timeout and asks the server to cancel the
/// statement (on a fresh connection to the same, already checked, address).
fn abandon(session: &Session) -> Failure {
    session.broken.store(true, Ordering::Relaxed);
    let token = session.client.cancel_token();
    let peer = session.peer;
    tokio::spawn(async move {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await
        {
            let _ =
                tokio::time::timeout(CONNECT_TIMEOUT, token.cancel_query_raw(stream, NoTls)).await;
        }
    });
    Failure::Query(QueryFailure::Text(rdbms::timed_out()))
}

async fn prepare(session: &Session, statement: &str) -> Result<Statement, Failure> {
    session
        .client
        .prepare(statement)
        .await
        .map_err(|e| query_error(session, e))
}

type RowSet = (Vec<(String, PgType)>, Vec<Vec<PgValue>>);

async fn query(session: &Session, statement: &str, params: &[PgValue]) -> Result<RowSet, Failure> {
    let work = async {
        let prepared = prepare(session, statement).await?;
        let encoded = encode_params(&prepared, params)?;
        let types = columns(&prepared);
        let stream = session
            .client
            .query_raw(&prepared, encoded)
            .await
            .map_err(|e| query_error(session, e))?;
        futures::pin_mut!(stream);
        let mut rows = Vec::new();
        let mut size = 0;
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| query_error(session, e))?
        {
            let values = decode_row(&row, &types)?;
            size += values.iter().map(PgValue::size).sum::<usize>();
            if size > MAX_RESULT_BYTES {
                return Err(Failure::Query(QueryFailure::Text(rdbms::too_large())));
            }
            rows.push(values);
        }
        Ok((types, rows))
    };
    rdbms::bounded(work)
        .await
        .unwrap_or_else(|| Err(abandon(session)))
}

async fn execute(session: &Session, statement: &str, params: &[PgValue]) -> Result<u64, Failure> {
    let work = async {
        let prepared = prepare(session, statement).await?;
        let encoded = encode_params(&prepared, params)?;
        session
            .client
            .execute_raw(&prepared, encoded)
            .await
            .map_err(|e| query_error(session, e))
    };
    rdbms::bounded(work)
        .await
        .unwrap_or_else(|| Err(abandon(session)))
}

/// Sends the rows of a started query into `rows` until it ends, the guest drops the
/// stream, or the server stays silent past the query timeout.
async fn send_rows<R>(
    session: &Session,
    stream: tokio_postgres::RowStream,
    types: &[(String, PgType)],
    rows: rdbms::RowSender<R>,
    convert: fn(Vec<PgValue>) -> R,
) -> Result<(), Failure> {
    futures::pin_mut!(stream);
    loop {
        let next = match tokio::time::timeout(QUERY_TIMEOUT, stream.try_next()).await {
            Ok(next) => next.map_err(|e| query_error(session, e))?,
            Err(_) => return Err(abandon(session)),
        };
        let Some(row) = next else { return Ok(()) };
        let values = decode_row(&row, types)?;
        let bytes = values.iter().map(PgValue::size).sum();
        if rows.send(convert(values), bytes).await.is_err() {
            // The guest dropped the stream; the rest is not wanted.
            return Ok(());
        }
    }
}

/// Starts a query whose rows a task sends, converted by `convert`, into a bounded
/// channel; the returned receiver yields the final outcome once the rows are sent.
async fn query_stream<R: Send + 'static>(
    session: Arc<Session>,
    statement: String,
    params: Vec<PgValue>,
    convert: fn(Vec<PgValue>) -> R,
) -> Result<
    (
        Vec<(String, PgType)>,
        mpsc::Receiver<rdbms::Budgeted<R>>,
        oneshot::Receiver<Result<(), Failure>>,
    ),
    Failure,
> {
    let start = async {
        let prepared = prepare(&session, &statement).await?;
        let encoded = encode_params(&prepared, &params)?;
        let stream = session
            .client
            .query_raw(&prepared, encoded)
            .await
            .map_err(|e| query_error(&session, e))?;
        Ok((columns(&prepared), stream))
    };
    let (types, stream) = rdbms::bounded(start)
        .await
        .unwrap_or_else(|| Err(abandon(&session)))?;
    let (rows_tx, rows_rx) = rdbms::row_channel();
    let (done_tx, done_rx) = oneshot::channel();
    let row_types = types.clone();
    tokio::spawn(async move {
        let outcome = send_rows(&session, stream, &row_types, rows_tx, convert).await;
        // Let go of the session before reporting the outcome, so a guest that drops
        // the connection right after reading it returns the connection to the pool.
        drop(session);
        let _ = done_tx.send(outcome);
    });
    Ok((types, rows_rx, done_rx))
}

// ---------------------------------------------------------------------------
// Handles

impl CapabilitiesCtx<'_> {
    /// Stores a connection made under `reserved` (the handle slot is already taken), or
    /// gives the slot back when the connect failed.
    fn push_pg(
        &mut self,
        session: Result<Session, Failure>,
        reserved: rdbms::Reserved,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, Failure>> {
        self.push_reserved(session, reserved, |mut session, permit| {
            session._permit = Some(permit);
            PgConnection {
                session: Some(Arc::new(session)),
            }
        })
    }

    fn pg_session(&self, handle: &Resource<PgConnection>) -> wasmtime::Result<Arc<Session>> {
        match &self.table.get(handle)?.session {
            Some(session) => Ok(session.clone()),
            None => wasmtime::bail!("postgres connection used after it was closed"),
        }
    }

    async fn open_pg(
        &mut self,
        address: &str,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, Failure>> {
        let reserved = match self.reserve_rdbms() {
            Ok(reserved) => reserved,
            Err(message) => return Ok(Err(Failure::Connection(message))),
        };
        let session = connect(self.rdbms_caps(), address).await;
        self.push_pg(session, reserved)
    }

    /// Drops the handle and returns its connection to the pool (awaited, so the next
    /// `open` in the same request can reuse it).
    async fn close_pg(&mut self, handle: Resource<PgConnection>) -> wasmtime::Result<()> {
        let mut connection = self.table.delete(handle)?;
        self.state.release_handle();
        if let Some(session) = connection.session.take() {
            release(session).await;
        }
        Ok(())
    }
}

async fn open_pg_async<T>(
    accessor: &Accessor<T, Capabilities>,
    address: String,
) -> wasmtime::Result<Result<Resource<PgConnection>, Failure>> {
    let reserved = accessor.with(|mut access| {
        let mut ctx = access.get();
        ctx.reserve_rdbms()
            .map(|reserved| (ctx.rdbms_caps(), reserved))
    });
    let (caps, reserved) = match reserved {
        Ok(reserved) => reserved,
        Err(message) => return Ok(Err(Failure::Connection(message))),
    };
    let session = connect(caps, &address).await;
    accessor.with(|mut access| access.get().push_pg(session, reserved))
}

fn pg_session_of<T>(
    accessor: &Accessor<T, Capabilities>,
    handle: &Resource<PgConnection>,
) -> wasmtime::Result<Arc<Session>> {
    accessor.with(|mut access| access.get().pg_session(handle))
}

/// The blocking-style `HostConnection` of one interface version (2.0 with
/// `rdbms-types`, 3.0, 4.x): the same four calls, with that version's types.
macro_rules! sync_connection {
    ($connection:path, $types:ident, $convert:ident) => {
        impl $connection for CapabilitiesCtx<'_> {
            async fn open(
                &mut self,
                address: String,
            ) -> wasmtime::Result<Result<Resource<PgConnection>, $types::Error>> {
                Ok(self.open_pg(&address).await?.map_err($convert::error))
            }

            async fn query(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                params: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<$types::RowSet, $types::Error>> {
                let session = self.pg_session(&connection)?;
                let params: Vec<PgValue> = params.into_iter().map($convert::param).collect();
                Ok(query(&session, &statement, &params)
                    .await
                    .map($convert::row_set)
                    .map_err($convert::error))
            }

            async fn execute(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                params: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<u64, $types::Error>> {
                let session = self.pg_session(&connection)?;
                let params: Vec<PgValue> = params.into_iter().map($convert::param).collect();
                Ok(execute(&session, &statement, &params)
                    .await
                    .map_err($convert::error))
            }

            async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
                self.close_pg(connection).await
            }
        }
    };
}
use sync_connection;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_and_checked() {
        let (_, host, port) = parse_address("postgres://u:p@db.example:6543/app").unwrap();
        assert_eq!((host.as_str(), port), ("db.example", 6543));
        let (_, host, port) = parse_address("host=127.0.0.1 user=u dbname=d").unwrap();
        assert_eq!((host.as_str(), port), ("127.0.0.1", 5432));
        let refused = |address: &str| match parse_address(address) {
            Err(Failure::Connection(message)) => message,
            other => panic!("{address}: {other:?}"),
        };
        assert!(refused("postgres://u@h/d?sslmode=require").contains("TLS"));
        assert!(refused("host=a,b user=u").contains("one host"));
        assert!(refused("host=/var/run/postgresql user=u").contains("Unix"));
        assert!(refused("host=h hostaddr=10.0.0.1 user=u").contains("hostaddr"));
    }
}

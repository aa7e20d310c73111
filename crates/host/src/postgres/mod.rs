//! Outbound PostgreSQL: `fermyon:spin/postgres@2.0.0`, `spin:postgres/postgres@3.0.0` and
//! `@4.2.0` (which also serves `@4.0`/`@4.1` imports; its `*-async` functions and
//! `query-async` row stream are the WASI 0.3 forms), and Spin 1.x's unversioned
//! `fermyon:spin/postgres` ([`v1`], an address per call).
//!
//! `open` takes a `postgres://`/`postgresql://` URL or a `host=... port=...` key-value
//! string. The host must be granted by `allowed_outbound_hosts` (`postgres://host:port`,
//! whichever scheme the guest wrote) and resolve outside the blocked networks; only the
//! checked addresses are dialed. TLS follows libpq's `sslmode` (default `prefer`) with
//! the server's certificate always checked ([`tls`]). Values travel in
//! PostgreSQL's binary format ([`codec`]) so that every WIT value type maps to its column
//! types (see `docs/capabilities.md`); a column of any other type comes back as
//! `other`/`unsupported` instead of failing the query.
//!
//! This module holds the session plumbing: connecting, the pool's reset, failures, and
//! running statements. Each interface version's types and host traits are in [`v1`],
//! [`v2`], [`v3`] and [`v4`].

mod codec;
mod tls;
mod v1;
mod v2;
mod v3;
mod v4;

pub use v4::PostgresBuilder;

use crate::capability::{AppContext, Capability, Prepared};
use crate::rdbms::{self, CONNECT_TIMEOUT, DialError, MAX_RESULT_BYTES, Message, QUERY_TIMEOUT};
use crate::{Capabilities, CapabilitiesView, ComponentCapabilities, HostError};
use codec::{PgType, PgValue, columns, decode_row, encode_params};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use tls::{PgTls, TlsOptions};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::Host;
use tokio_postgres::error::DbError;
use tokio_postgres::{Client, Statement};
use wasmtime::component::Linker;

/// The outbound PostgreSQL capability: the app's pool of idle connections, and the
/// interfaces above. What a component may reach is the shared outbound networking policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

impl Capability for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn prepare<'a>(
        &'a self,
        app: &'a AppContext<'a>,
    ) -> BoxFuture<'a, Result<Prepared, HostError>> {
        Box::pin(std::future::ready(Ok(rdbms::prepare_pool::<PgClient>(app))))
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        use crate::bindings::fermyon::spin::postgres as v2;
        use crate::bindings::spin::postgres3_0_0::postgres as v3;
        use crate::bindings::spin::postgres4_2_0::postgres as v4;
        use crate::spin1_bindings::fermyon::spin::postgres as v1;
        rdbms::add_types_to_linker(linker)?;
        v1::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v2::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v3::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v4::add_to_linker::<T, Capabilities>(linker, crate::view)
    }
}

/// One checked-out connection, shared with a streaming query still reading from it.
type Session = rdbms::Session<PgClient>;

/// An open `connection` resource (every version's).
pub type PgConnection = rdbms::Connection<PgClient>;

/// A connection, with the TLS settings it was made with (a cancel request, sent on a
/// connection of its own, needs them too).
pub struct PgClient {
    client: Client,
    tls: PgTls,
}

impl std::ops::Deref for PgClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl rdbms::Reusable for PgClient {
    const SCHEME: &'static str = "postgres";
    const SYSTEM: &'static str = "postgresql";

    fn is_closed(&mut self) -> bool {
        self.client.is_closed()
    }

    /// Refuses a connection left in a transaction, then resets the session state.
    async fn reset(&mut self) -> bool {
        // In an explicit transaction block `transaction_timestamp()` is the time of
        // BEGIN, earlier than this statement's; outside one the two are equal. The
        // rest resets what a guest may have changed in the session (everything
        // `DISCARD ALL` does except dropping prepared statements, which would break the
        // client's cached type-lookup statements).
        const RESET: &str = "SELECT statement_timestamp() = transaction_timestamp(); \
            SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; \
            SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";
        self.simple_query(RESET).await.is_ok_and(|messages| {
            messages.iter().any(|message| {
                matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
            })
        })
    }
}

// ---------------------------------------------------------------------------
// Failures

/// A failure, before it is expressed in one version's WIT error type.
type Failure = rdbms::Failure<QueryFailure>;

/// Why a statement failed: `spin:postgres@4.x` reports a server error field by field,
/// the older versions as its text.
#[derive(Debug, thiserror::Error)]
enum QueryFailure {
    #[error(transparent)]
    Text(Message),
    #[error(transparent)]
    Db(Box<DbError>),
}

/// Maps a client error: a server error keeps all its fields; a closed or broken
/// connection marks the session so it is not pooled.
fn query_error(session: &Session, error: tokio_postgres::Error) -> Failure {
    if let Some(db) = error.as_db_error() {
        return Failure::Query(QueryFailure::Db(Box::new(db.clone())));
    }
    if error.is_closed() || session.conn.is_closed() {
        session.mark_broken();
        return Failure::Connection(Message::caused(
            format!(
                "the connection to {} was lost ({error}); open a new one",
                describe_peer(session.peer)
            ),
            error,
        ));
    }
    Failure::Query(QueryFailure::Text(Message::caused(
        error.to_string(),
        error,
    )))
}

fn describe_peer(peer: std::net::SocketAddr) -> String {
    format!("postgres://{peer}")
}

// ---------------------------------------------------------------------------
// Connecting

/// The single TCP host and port of a connection string, checked against what the
/// guest may not ask for (several hosts, `hostaddr`, Unix sockets, files on the host),
/// and its TLS options.
fn parse_address(
    address: &str,
) -> Result<(tokio_postgres::Config, String, u16, TlsOptions), Failure> {
    let bad = |why: &dyn std::fmt::Display| {
        format!(
            "invalid PostgreSQL address: {why}; expected postgres://user:password@host:port/database or \"host=... port=... user=... password=... dbname=...\""
        )
    };
    let refuse = |why: &str| Err(Failure::Connection(bad(&why).into()));
    let (rest, tls) =
        tls::take_tls_options(address).map_err(|why| Failure::Connection(bad(&why).into()))?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| Failure::Connection(Message::caused(bad(&e), e)))?;
    config.ssl_mode(tls.mode);
    let host = match config.get_hosts() {
        [Host::Tcp(host)] => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        [] => return refuse("no host"),
        [_] => return refuse("Unix sockets are not reachable from a component"),
        _ => return refuse("only one host may be given"),
    };
    if !config.get_hostaddrs().is_empty() {
        return refuse(
            "hostaddr is not supported; name the host and grant it in allowed_outbound_hosts",
        );
    }
    let port = match config.get_ports() {
        [] => 5432,
        [port] => *port,
        _ => return refuse("only one port may be given"),
    };
    Ok((config, host, port, tls))
}

/// Checks the address against the component's grants, then reuses an idle pooled
/// connection to one of the checked addresses or dials a new one. `ca_root` is what
/// the guest gave `set-ca-root` (PEM), trusted beside the webpki roots.
async fn connect(
    caps: Arc<ComponentCapabilities>,
    address: &str,
    ca_root: Option<&str>,
) -> Result<Session, Failure> {
    let (config, host, port, options) = parse_address(address)?;
    let roots = match ca_root {
        Some(pem) => Some(ca_root_tls(pem).map_err(|e| Failure::Connection(Message::new(e)))?),
        None => None,
    };
    let tls = PgTls {
        caps: caps.clone(),
        host: host.clone(),
        verify: options.verify,
        roots,
    };
    let (config, tls) = (&config, &tls);
    let dial = |peer| async move {
        let stream = TcpStream::connect(peer)
            .await
            .map_err(|e| DialError::Unreachable(e.into()))?;
        let _ = stream.set_nodelay(true);
        match config.connect_raw(stream, tls.clone()).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("postgres connection to {peer} ended: {e}");
                    }
                });
                Ok(PgClient {
                    client,
                    tls: tls.clone(),
                })
            }
            // Authentication and database errors are the server's answer.
            Err(e) => Err(match e.as_db_error() {
                Some(db) => DialError::Answered(Box::new(db.clone())),
                // tokio-postgres says "error performing TLS handshake" and keeps why in
                // its source; the guest needs the why (an unknown CA, a wrong name).
                None => DialError::Unreachable(wisp_outbound::error_chain(&e).into()),
            }),
        }
    };
    // Spin names the host it parsed, and a port only when one was written.
    let not_permitted = || match config.get_ports() {
        [] => format!("address postgres://{host} is not permitted"),
        _ => format!("address postgres://{host}:{port} is not permitted"),
    };
    // Connections made with other roots are not the same connection.
    let pool_key = match ca_root {
        Some(pem) => format!("{address}\0{pem}"),
        None => address.to_owned(),
    };
    rdbms::connect(caps, &pool_key, (&host, port), not_permitted, dial)
        .await
        .map_err(Failure::Connection)
}

/// The webpki roots plus the PEM certificates a guest gave `set-ca-root`.
fn ca_root_tls(pem: &str) -> Result<wisp_outbound::ClientTls, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid root certificate: {e}"))?;
    if roots.is_empty() {
        return Err("invalid root certificate: no PEM CERTIFICATE block".to_owned());
    }
    wisp_outbound::ClientTls::new(roots, true, None)
        .map_err(|e| format!("invalid root certificate: {e}"))
}

// ---------------------------------------------------------------------------
// Statements

/// Marks the session broken after a timeout and asks the server to cancel the
/// statement (on a fresh connection to the same, already checked, address).
fn abandon(session: &Session) -> Failure {
    let timed_out = session.abandon();
    let token = session.conn.cancel_token();
    let tls = session.conn.tls.clone();
    let peer = session.peer;
    tokio::spawn(async move {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await
        {
            let _ =
                tokio::time::timeout(CONNECT_TIMEOUT, token.cancel_query_raw(stream, tls)).await;
        }
    });
    Failure::Query(QueryFailure::Text(timed_out))
}

async fn prepare(session: &Session, statement: &str) -> Result<Statement, Failure> {
    session
        .conn
        .prepare(statement)
        .await
        .map_err(|e| query_error(session, e))
}

type RowSet = (Vec<(String, PgType)>, Vec<Vec<PgValue>>);

async fn query(session: &Session, statement: &str, params: &[PgValue]) -> Result<RowSet, Failure> {
    let span = session.span("query");
    let work = async {
        let prepared = prepare(session, statement).await?;
        let encoded = encode_params(&prepared, params)?;
        let types = columns(&prepared);
        let stream = session
            .conn
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
                return Err(Failure::Query(QueryFailure::Text(
                    rdbms::too_large().into(),
                )));
            }
            rows.push(values);
        }
        Ok((types, rows))
    };
    let result = rdbms::bounded(work)
        .await
        .unwrap_or_else(|| Err(abandon(session)));
    wisp_telemetry::end_with(span, &result);
    result
}

async fn execute(session: &Session, statement: &str, params: &[PgValue]) -> Result<u64, Failure> {
    let span = session.span("execute");
    let work = async {
        let prepared = prepare(session, statement).await?;
        let encoded = encode_params(&prepared, params)?;
        session
            .conn
            .execute_raw(&prepared, encoded)
            .await
            .map_err(|e| query_error(session, e))
    };
    let result = rdbms::bounded(work)
        .await
        .unwrap_or_else(|| Err(abandon(session)));
    wisp_telemetry::end_with(span, &result);
    result
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
    let span = session.span("query");
    let start = async {
        let prepared = prepare(&session, &statement).await?;
        let encoded = encode_params(&prepared, &params)?;
        let stream = session
            .conn
            .query_raw(&prepared, encoded)
            .await
            .map_err(|e| query_error(&session, e))?;
        Ok((columns(&prepared), stream))
    };
    let started = rdbms::bounded(start)
        .await
        .unwrap_or_else(|| Err(abandon(&session)));
    let (types, stream) = match started {
        Ok(started) => started,
        Err(failure) => {
            let failed = Err(failure);
            wisp_telemetry::end_with(span, &failed);
            return failed;
        }
    };
    let (rows_tx, rows_rx) = rdbms::row_channel();
    let (done_tx, done_rx) = oneshot::channel();
    let row_types = types.clone();
    tokio::spawn(async move {
        let outcome = send_rows(&session, stream, &row_types, rows_tx, convert).await;
        // The span covers the rows too: it ends when the last one is sent.
        wisp_telemetry::end_with(span, &outcome);
        // Let go of the session before reporting the outcome, so a guest that drops
        // the connection right after reading it returns the connection to the pool.
        drop(session);
        let _ = done_tx.send(outcome);
    });
    Ok((types, rows_rx, done_rx))
}

/// The blocking-style `HostConnection` of one interface version (2.0 with
/// `rdbms-types`, 3.0, 4.x): the same four calls, with that version's types (`$types`,
/// whose `Error` converts `From` a [`Failure`]) and value conversions (`$convert`).
macro_rules! sync_connection {
    ($connection:path, $types:ident, $convert:ident) => {
        impl $connection for $crate::CapabilitiesCtx<'_> {
            async fn open(
                &mut self,
                address: String,
            ) -> wasmtime::Result<Result<Resource<PgConnection>, $types::Error>> {
                let opened = self
                    .open_session(|caps| $crate::postgres::connect(caps, &address, None))
                    .await?;
                Ok(opened.map_err($types::Error::from))
            }

            async fn query(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                params: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<$types::RowSet, $types::Error>> {
                let session = self.session(&connection)?;
                let params: Vec<_> = params.into_iter().map($convert::param).collect();
                Ok($crate::postgres::query(&session, &statement, &params)
                    .await
                    .map($convert::row_set)
                    .map_err($types::Error::from))
            }

            async fn execute(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                params: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<u64, $types::Error>> {
                let session = self.session(&connection)?;
                let params: Vec<_> = params.into_iter().map($convert::param).collect();
                Ok($crate::postgres::execute(&session, &statement, &params)
                    .await
                    .map_err($types::Error::from))
            }

            async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
                self.close_session(connection).await
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
        let (config, host, port, tls) =
            parse_address("postgres://u:p@db.example:6543/app?sslmode=verify-ca").unwrap();
        assert_eq!((host.as_str(), port), ("db.example", 6543));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(tls.verify, wisp_outbound::Verify::ChainOnly);
        let (config, host, port, _) = parse_address("host=127.0.0.1 user=u dbname=d").unwrap();
        assert_eq!((host.as_str(), port), ("127.0.0.1", 5432));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        let refused = |address: &str| match parse_address(address) {
            Err(Failure::Connection(message)) => message.to_string(),
            other => panic!("{address}: {other:?}"),
        };
        assert!(refused("postgres://u@h/d?sslrootcert=/etc/ssl/ca.pem").contains("set-ca-root"));
        assert!(refused("host=a,b user=u").contains("one host"));
        assert!(refused("host=/var/run/postgresql user=u").contains("Unix"));
        assert!(refused("host=h hostaddr=10.0.0.1 user=u").contains("hostaddr"));
    }
}

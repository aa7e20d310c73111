//! Outbound MySQL (and MariaDB): `fermyon:spin/mysql@2.0.0`, `spin:mysql/mysql@3.0.0`
//! (WASI 0.3: every function is async and `query` streams its rows) and Spin 1.x's
//! unversioned `fermyon:spin/mysql` ([`v1`], an address per call).
//!
//! `open` takes `mysql://user:password@host:port/database`. The host must be granted by
//! `allowed_outbound_hosts` (`mysql://host:port`) and resolve outside the blocked
//! networks; only the checked addresses are dialed, never a Unix socket (`mysql_async`'s
//! switch to the server's socket is turned off). TLS follows the driver's options and
//! MySQL's `ssl-mode` ([`tls`]). Statements run as prepared statements (binary
//! protocol), so values keep their types; see `docs/capabilities.md` for the mapping.

use crate::bindings::fermyon::spin::{mysql as v2, rdbms_types as v2t};
use crate::bindings::spin::mysql::mysql as v3;
use crate::capability::{AppContext, Capability, Prepared};
use crate::rdbms::{self, DialError, Failure, MAX_RESULT_BYTES, Message, QUERY_TIMEOUT};
use crate::{Capabilities, CapabilitiesCtx, CapabilitiesView, ComponentCapabilities, HostError};
use futures::future::BoxFuture;
use mysql_async::consts::{ColumnFlags, ColumnType, StatusFlags};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Value};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};
use wasmtime::component::{Accessor, FutureReader, Linker, Resource, StreamReader};

mod tls;
mod v1;
use tls::MyTls;

/// The outbound MySQL capability: the app's pool of idle connections, and the
/// interfaces above. What a component may reach is the shared outbound networking policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mysql;

impl Capability for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn prepare<'a>(
        &'a self,
        app: &'a AppContext<'a>,
    ) -> BoxFuture<'a, Result<Prepared, HostError>> {
        Box::pin(std::future::ready(Ok(rdbms::prepare_pool::<Client>(app))))
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        rdbms::add_types_to_linker(linker)?;
        crate::spin1_bindings::fermyon::spin::mysql::add_to_linker::<T, Capabilities>(
            linker,
            crate::view,
        )?;
        v2::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v3::add_to_linker::<T, Capabilities>(linker, crate::view)
    }
}

/// A MySQL connection; its statements take turns on the lock.
type Client = Mutex<Conn>;

/// One checked-out connection.
type Session = rdbms::Session<Client>;

/// An open `connection` resource.
pub type MysqlConnection = rdbms::Connection<Client>;

impl rdbms::Reusable for Client {
    const SCHEME: &'static str = "mysql";
    const SYSTEM: &'static str = "mysql";

    fn is_closed(&mut self) -> bool {
        self.get_mut().is_disconnected()
    }

    /// Refuses a connection left in a transaction, then clears the session with
    /// `COM_RESET_CONNECTION`.
    async fn reset(&mut self) -> bool {
        let conn = self.get_mut();
        let in_transaction = conn.last_ok_packet().is_some_and(|ok| {
            ok.status_flags()
                .contains(StatusFlags::SERVER_STATUS_IN_TRANS)
        });
        // `reset` answers `false` on servers without COM_RESET_CONNECTION (MySQL < 5.7.3,
        // MariaDB < 10.2.4): their sessions cannot be cleared, so they are not reused.
        !in_transaction && matches!(conn.reset().await, Ok(true))
    }
}

// ---------------------------------------------------------------------------
// Failures

fn query_error(session: &Session, error: mysql_async::Error) -> Failure {
    match error {
        mysql_async::Error::Server(e) => Failure::Query(Message::caused(
            format!("{} (error {}, sqlstate {})", e.message, e.code, e.state),
            e,
        )),
        mysql_async::Error::Driver(mysql_async::DriverError::StmtParamsMismatch {
            required,
            supplied,
        }) => Failure::BadParameter(Message::caused(
            format!(
                "the statement has {required} placeholders but {supplied} parameters were given"
            ),
            error,
        )),
        other => {
            session.mark_broken();
            Failure::Query(Message::caused(
                format!(
                    "{other}; the connection to mysql://{} is closed, open a new one",
                    session.peer
                ),
                other,
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// Connecting

fn parse_address(address: &str) -> Result<(Opts, String, u16, MyTls), Failure> {
    let bad = |why: &dyn std::fmt::Display| {
        format!("invalid MySQL address: {why}; expected mysql://user:password@host:port/database")
    };
    if !address.starts_with("mysql://") {
        return Err(Failure::Connection(
            bad(&"the scheme must be mysql://").into(),
        ));
    }
    let (rest, ssl_mode) =
        tls::take_ssl_mode(address).map_err(|why| Failure::Connection(bad(&why).into()))?;
    let opts =
        Opts::from_url(&rest).map_err(|e| Failure::Connection(Message::caused(bad(&e), e)))?;
    let tls = tls::choose(&opts, ssl_mode).map_err(|why| Failure::Connection(bad(&why).into()))?;
    if opts.socket().is_some() {
        return Err(Failure::Connection(
            bad(&"Unix sockets are not reachable from a component").into(),
        ));
    }
    let host = opts
        .ip_or_hostname()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = opts.tcp_port();
    Ok((opts, host, port, tls))
}

/// Checks the address against the component's grants, then reuses an idle pooled
/// connection to one of the checked addresses or dials a new one.
async fn connect(caps: Arc<ComponentCapabilities>, address: &str) -> Result<Session, Failure> {
    let (opts, host, port, tls) = parse_address(address)?;
    let ssl = match tls {
        MyTls::Off => None,
        MyTls::Prefer(verify) | MyTls::Require(verify) => {
            Some(tls::ssl_opts(&caps, &host, verify, opts.ssl_opts()))
        }
    };
    // For the log line of a failed TLS connection.
    let who = (caps.id().to_string(), host.clone());
    let dial = |peer: std::net::SocketAddr| {
        let (id, host) = who.clone();
        let opts = OptsBuilder::from_opts(opts.clone())
            .ip_or_hostname(peer.ip().to_string())
            .tcp_port(peer.port())
            // Otherwise the driver asks the server for its socket path and reconnects
            // there, bypassing the checked address.
            .prefer_socket(false)
            .socket(None::<String>);
        let secure = opts.clone().ssl_opts(ssl.clone());
        async move {
            let mut attempt = Conn::new(secure).await;
            // PREFERRED: a server without TLS gets a plain connection.
            if matches!(tls, MyTls::Prefer(_))
                && matches!(
                    attempt,
                    Err(mysql_async::Error::Driver(
                        mysql_async::DriverError::NoClientSslFlagFromServer
                    ))
                )
            {
                attempt = Conn::new(opts.ssl_opts(None)).await;
            }
            match attempt {
                Ok(conn) => Ok(Mutex::new(conn)),
                Err(mysql_async::Error::Server(e)) => Err(DialError::Answered(e.into())),
                Err(e) => {
                    let e = wisp_outbound::error_chain(&e);
                    if !matches!(tls, MyTls::Off) {
                        tracing::warn!(component = %id, host = %host, "component `{id}`: TLS connection to mysql://{host}:{port} failed: {e}");
                    }
                    Err(DialError::Unreachable(e.into()))
                }
            }
        }
    };
    // Spin's text repeats the address as the guest passed it (it is never logged).
    let not_permitted = || format!("address {address} is not permitted");
    rdbms::connect(caps, address, (&host, port), not_permitted, dial)
        .await
        .map_err(Failure::Connection)
}

// ---------------------------------------------------------------------------
// Values

/// The values both versions share (their WIT types have the same cases).
#[derive(Debug, Clone, PartialEq)]
enum MyValue {
    Null,
    Bool(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UInt8(u8),
    UInt16(u16),
    UInt32(u32),
    UInt64(u64),
    Float32(f32),
    Float64(f64),
    Str(String),
    Binary(Vec<u8>),
    Unsupported,
}

impl MyValue {
    fn size(&self) -> usize {
        match self {
            MyValue::Str(s) => s.len(),
            MyValue::Binary(b) => b.len(),
            _ => 16,
        }
    }
}

/// The WIT data type of a column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MyType {
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Floating32,
    Floating64,
    Str,
    Binary,
    /// A `DATE` column: text without a time of day (`str` in the WIT).
    Date,
    Other,
}

/// MySQL's character set number for binary data (`binary` collation).
const BINARY_CHARSET: u16 = 63;

fn column_type(column: &mysql_async::Column) -> MyType {
    let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let pick = |signed, unsigned_type| if unsigned { unsigned_type } else { signed };
    match column.column_type() {
        ColumnType::MYSQL_TYPE_BIT if column.column_length() == 1 => MyType::Boolean,
        ColumnType::MYSQL_TYPE_BIT => MyType::Binary,
        ColumnType::MYSQL_TYPE_TINY => pick(MyType::Int8, MyType::UInt8),
        ColumnType::MYSQL_TYPE_SHORT => pick(MyType::Int16, MyType::UInt16),
        ColumnType::MYSQL_TYPE_INT24 | ColumnType::MYSQL_TYPE_LONG => {
            pick(MyType::Int32, MyType::UInt32)
        }
        ColumnType::MYSQL_TYPE_LONGLONG => pick(MyType::Int64, MyType::UInt64),
        ColumnType::MYSQL_TYPE_YEAR => MyType::UInt16,
        ColumnType::MYSQL_TYPE_FLOAT => MyType::Floating32,
        ColumnType::MYSQL_TYPE_DOUBLE => MyType::Floating64,
        // No decimal, date or JSON value in the WIT: they come as their text.
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => MyType::Date,
        ColumnType::MYSQL_TYPE_DECIMAL
        | ColumnType::MYSQL_TYPE_NEWDECIMAL
        | ColumnType::MYSQL_TYPE_TIME
        | ColumnType::MYSQL_TYPE_TIME2
        | ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2
        | ColumnType::MYSQL_TYPE_JSON
        | ColumnType::MYSQL_TYPE_ENUM
        | ColumnType::MYSQL_TYPE_SET => MyType::Str,
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if column.character_set() == BINARY_CHARSET {
                MyType::Binary
            } else {
                MyType::Str
            }
        }
        _ => MyType::Other,
    }
}

fn decode(ty: MyType, value: Value) -> Result<MyValue, String> {
    // The driver sends integers as `Int` or `UInt` depending on the value, not the
    // column; the column's type decides the WIT case.
    let integer = match &value {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    };
    if let (Some(n), false) = (integer, matches!(ty, MyType::Other)) {
        let out_of_range = || format!("{n} does not fit the column's type");
        return Ok(match ty {
            MyType::Boolean => MyValue::Bool(n != 0),
            MyType::Int8 => MyValue::Int8(i8::try_from(n).map_err(|_| out_of_range())?),
            MyType::Int16 => MyValue::Int16(i16::try_from(n).map_err(|_| out_of_range())?),
            MyType::Int32 => MyValue::Int32(i32::try_from(n).map_err(|_| out_of_range())?),
            MyType::UInt8 => MyValue::UInt8(u8::try_from(n).map_err(|_| out_of_range())?),
            MyType::UInt16 => MyValue::UInt16(u16::try_from(n).map_err(|_| out_of_range())?),
            MyType::UInt32 => MyValue::UInt32(u32::try_from(n).map_err(|_| out_of_range())?),
            MyType::UInt64 => MyValue::UInt64(u64::try_from(n).map_err(|_| out_of_range())?),
            _ => match i64::try_from(n) {
                Ok(i) => MyValue::Int64(i),
                Err(_) => MyValue::UInt64(u64::try_from(n).map_err(|_| out_of_range())?),
            },
        });
    }
    Ok(match (ty, value) {
        (_, Value::NULL) => MyValue::Null,
        (MyType::Other, _) => MyValue::Unsupported,
        (MyType::Boolean, Value::Bytes(b)) => MyValue::Bool(b.iter().any(|byte| *byte != 0)),
        // Handled above for every type but `Other`.
        (_, Value::Int(i)) => MyValue::Int64(i),
        (_, Value::UInt(u)) => MyValue::UInt64(u),
        (_, Value::Float(f)) => MyValue::Float32(f),
        (_, Value::Double(d)) => MyValue::Float64(d),
        (MyType::Binary, Value::Bytes(b)) => MyValue::Binary(b),
        (_, Value::Bytes(b)) => match String::from_utf8(b) {
            Ok(s) => MyValue::Str(s),
            Err(e) => MyValue::Binary(e.into_bytes()),
        },
        (ty, Value::Date(year, month, day, hour, minute, second, micros)) => {
            let date = format!("{year:04}-{month:02}-{day:02}");
            MyValue::Str(if ty == MyType::Date {
                date
            } else if micros == 0 {
                format!("{date} {hour:02}:{minute:02}:{second:02}")
            } else {
                format!("{date} {hour:02}:{minute:02}:{second:02}.{micros:06}")
            })
        }
        (_, Value::Time(negative, days, hours, minutes, seconds, micros)) => {
            let sign = if negative { "-" } else { "" };
            let hours = u64::from(days) * 24 + u64::from(hours);
            MyValue::Str(if micros == 0 {
                format!("{sign}{hours:02}:{minutes:02}:{seconds:02}")
            } else {
                format!("{sign}{hours:02}:{minutes:02}:{seconds:02}.{micros:06}")
            })
        }
    })
}

fn param(value: MyValue) -> Value {
    match value {
        MyValue::Null | MyValue::Unsupported => Value::NULL,
        MyValue::Bool(b) => Value::Int(i64::from(b)),
        MyValue::Int8(i) => Value::Int(i64::from(i)),
        MyValue::Int16(i) => Value::Int(i64::from(i)),
        MyValue::Int32(i) => Value::Int(i64::from(i)),
        MyValue::Int64(i) => Value::Int(i),
        MyValue::UInt8(u) => Value::UInt(u64::from(u)),
        MyValue::UInt16(u) => Value::UInt(u64::from(u)),
        MyValue::UInt32(u) => Value::UInt(u64::from(u)),
        MyValue::UInt64(u) => Value::UInt(u),
        MyValue::Float32(f) => Value::Float(f),
        MyValue::Float64(f) => Value::Double(f),
        MyValue::Str(s) => Value::Bytes(s.into_bytes()),
        MyValue::Binary(b) => Value::Bytes(b),
    }
}

fn params(values: Vec<MyValue>) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values.into_iter().map(param).collect())
    }
}

fn decode_row(row: mysql_async::Row, types: &[(String, MyType)]) -> Result<Vec<MyValue>, Failure> {
    // `Row::unwrap` hands over the values; it panics only for values already taken
    // out of the row, and none are.
    row.unwrap()
        .into_iter()
        .zip(types)
        .enumerate()
        .map(|(index, (value, (name, ty)))| {
            decode(*ty, value).map_err(|e| {
                Failure::Conversion(format!("column {} ({name}): {e}", index + 1).into())
            })
        })
        .collect()
}

fn columns_of(columns: &[mysql_async::Column]) -> Vec<(String, MyType)> {
    columns
        .iter()
        .map(|c| (c.name_str().into_owned(), column_type(c)))
        .collect()
}

// ---------------------------------------------------------------------------
// Statements

type RowSet = (Vec<(String, MyType)>, Vec<Vec<MyValue>>);

/// Marks the session broken after a timeout: the protocol state is unknown.
fn abandon(session: &Session) -> Failure {
    Failure::Query(session.abandon())
}

async fn query(
    session: &Session,
    statement: &str,
    values: Vec<MyValue>,
) -> Result<RowSet, Failure> {
    // After the lock: a streamed query before this one holds it until its last row.
    let mut conn = session.conn.lock().await;
    let span = session.span("query");
    let work = async {
        let mut result = conn
            .exec_iter(statement, params(values))
            .await
            .map_err(|e| query_error(session, e))?;
        let types = columns_of(result.columns_ref());
        let mut rows = Vec::new();
        let mut size = 0;
        while let Some(row) = result.next().await.map_err(|e| query_error(session, e))? {
            let values = decode_row(row, &types)?;
            size += values.iter().map(MyValue::size).sum::<usize>();
            if size > MAX_RESULT_BYTES {
                // The rest of the result is still on the wire; the connection is not reused.
                session.mark_broken();
                return Err(Failure::Query(rdbms::too_large().into()));
            }
            rows.push(values);
        }
        result
            .drop_result()
            .await
            .map_err(|e| query_error(session, e))?;
        Ok((types, rows))
    };
    let result = rdbms::bounded(work)
        .await
        .unwrap_or_else(|| Err(abandon(session)));
    wisp_telemetry::end_with(span, &result);
    result
}

async fn execute(session: &Session, statement: &str, values: Vec<MyValue>) -> Result<(), Failure> {
    let mut conn = session.conn.lock().await;
    let span = session.span("execute");
    let work = conn.exec_drop(statement, params(values));
    let result = match rdbms::bounded(work).await {
        Some(result) => result.map_err(|e| query_error(session, e)),
        None => Err(abandon(session)),
    };
    wisp_telemetry::end_with(span, &result);
    result
}

/// Runs a statement, answers its columns on `columns` (or the failure to start it),
/// then sends its rows into `rows` until the result ends or the guest drops the stream;
/// what is left of the result is drained so the connection stays usable.
async fn send_rows<R>(
    session: &Session,
    statement: String,
    values: Vec<MyValue>,
    columns: oneshot::Sender<Result<Vec<(String, MyType)>, Failure>>,
    rows: rdbms::RowSender<R>,
    convert: fn(Vec<MyValue>) -> R,
) -> Result<(), Failure> {
    let mut conn = session.conn.lock().await;
    let started =
        tokio::time::timeout(QUERY_TIMEOUT, conn.exec_iter(statement, params(values))).await;
    let mut result = match started {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => {
            let _ = columns.send(Err(query_error(session, e)));
            return Err(Failure::Query(Message::new("the statement failed")));
        }
        Err(_) => {
            let _ = columns.send(Err(abandon(session)));
            return Err(Failure::Query(rdbms::timed_out().into()));
        }
    };
    let types = columns_of(result.columns_ref());
    let _ = columns.send(Ok(types.clone()));
    loop {
        let next = match tokio::time::timeout(QUERY_TIMEOUT, result.next()).await {
            Ok(next) => next.map_err(|e| query_error(session, e))?,
            Err(_) => return Err(abandon(session)),
        };
        let Some(row) = next else { break };
        let values = decode_row(row, &types)?;
        let bytes = values.iter().map(MyValue::size).sum();
        if rows.send(convert(values), bytes).await.is_err() {
            // The guest dropped the stream; the rest is drained below.
            break;
        }
    }
    match tokio::time::timeout(QUERY_TIMEOUT, result.drop_result()).await {
        Ok(drained) => drained.map_err(|e| query_error(session, e)),
        Err(_) => Err(abandon(session)),
    }
}

/// Starts a query in a task that sends its rows, converted by `convert`, into a
/// bounded channel; answers the columns once the server has described the result.
async fn query_stream<R: Send + 'static>(
    session: Arc<Session>,
    statement: String,
    values: Vec<MyValue>,
    convert: fn(Vec<MyValue>) -> R,
) -> Result<
    (
        Vec<(String, MyType)>,
        mpsc::Receiver<rdbms::Budgeted<R>>,
        oneshot::Receiver<Result<(), Failure>>,
    ),
    Failure,
> {
    let (columns_tx, columns_rx) = oneshot::channel();
    let (rows_tx, rows_rx) = rdbms::row_channel();
    let (done_tx, done_rx) = oneshot::channel();
    let span = session.span("query");
    tokio::spawn(async move {
        let outcome = send_rows(&session, statement, values, columns_tx, rows_tx, convert).await;
        // The span covers the rows too: it ends when the last one is sent.
        wisp_telemetry::end_with(span, &outcome);
        // Let go of the session before reporting the outcome, so a guest that drops
        // the connection right after reading it returns the connection to the pool.
        drop(session);
        let _ = done_tx.send(outcome);
    });
    match columns_rx.await {
        Ok(Ok(types)) => Ok((types, rows_rx, done_rx)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Failure::Query(Message::new(
            "the query stopped before describing its result",
        ))),
    }
}

/// The conversions between [`MyValue`]/[`MyType`] and one version's generated types
/// (`fermyon:spin/rdbms-types` and `spin:mysql` declare identical but distinct types).
macro_rules! conversions {
    ($wit:ident) => {
        pub(super) fn param(value: $wit::ParameterValue) -> MyValue {
            use $wit::ParameterValue as P;
            match value {
                P::Boolean(b) => MyValue::Bool(b),
                P::Int8(i) => MyValue::Int8(i),
                P::Int16(i) => MyValue::Int16(i),
                P::Int32(i) => MyValue::Int32(i),
                P::Int64(i) => MyValue::Int64(i),
                P::Uint8(u) => MyValue::UInt8(u),
                P::Uint16(u) => MyValue::UInt16(u),
                P::Uint32(u) => MyValue::UInt32(u),
                P::Uint64(u) => MyValue::UInt64(u),
                P::Floating32(f) => MyValue::Float32(f),
                P::Floating64(f) => MyValue::Float64(f),
                P::Str(s) => MyValue::Str(s),
                P::Binary(b) => MyValue::Binary(b),
                P::DbNull => MyValue::Null,
            }
        }

        pub(super) fn params(values: Vec<$wit::ParameterValue>) -> Vec<MyValue> {
            values.into_iter().map(param).collect()
        }

        fn data_type(ty: MyType) -> $wit::DbDataType {
            use $wit::DbDataType as D;
            match ty {
                MyType::Boolean => D::Boolean,
                MyType::Int8 => D::Int8,
                MyType::Int16 => D::Int16,
                MyType::Int32 => D::Int32,
                MyType::Int64 => D::Int64,
                MyType::UInt8 => D::Uint8,
                MyType::UInt16 => D::Uint16,
                MyType::UInt32 => D::Uint32,
                MyType::UInt64 => D::Uint64,
                MyType::Floating32 => D::Floating32,
                MyType::Floating64 => D::Floating64,
                MyType::Str | MyType::Date => D::Str,
                MyType::Binary => D::Binary,
                MyType::Other => D::Other,
            }
        }

        fn value(value: MyValue) -> $wit::DbValue {
            use $wit::DbValue as D;
            match value {
                MyValue::Null => D::DbNull,
                MyValue::Bool(b) => D::Boolean(b),
                MyValue::Int8(i) => D::Int8(i),
                MyValue::Int16(i) => D::Int16(i),
                MyValue::Int32(i) => D::Int32(i),
                MyValue::Int64(i) => D::Int64(i),
                MyValue::UInt8(u) => D::Uint8(u),
                MyValue::UInt16(u) => D::Uint16(u),
                MyValue::UInt32(u) => D::Uint32(u),
                MyValue::UInt64(u) => D::Uint64(u),
                MyValue::Float32(f) => D::Floating32(f),
                MyValue::Float64(f) => D::Floating64(f),
                MyValue::Str(s) => D::Str(s),
                MyValue::Binary(b) => D::Binary(b),
                MyValue::Unsupported => D::Unsupported,
            }
        }

        pub(super) fn columns(columns: Vec<(String, MyType)>) -> Vec<$wit::Column> {
            columns
                .into_iter()
                .map(|(name, ty)| $wit::Column {
                    name,
                    data_type: data_type(ty),
                })
                .collect()
        }

        pub(super) fn row(row: Vec<MyValue>) -> Vec<$wit::DbValue> {
            row.into_iter().map(value).collect()
        }
    };
}

mod convert_v2 {
    use super::*;
    conversions!(v2t);

    pub(super) fn row_set((columns, rows): RowSet) -> v2t::RowSet {
        v2t::RowSet {
            columns: self::columns(columns),
            rows: rows.into_iter().map(row).collect(),
        }
    }
}

mod convert_v3 {
    use super::*;
    conversions!(v3);
}

// ---------------------------------------------------------------------------
// fermyon:spin/mysql@2.0.0

impl v2::Host for CapabilitiesCtx<'_> {}

impl v2::HostConnection for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<MysqlConnection>, v2t::Error>> {
        let opened = self.open_session(|caps| connect(caps, &address)).await?;
        Ok(opened.map_err(v2t::Error::from))
    }

    async fn query(
        &mut self,
        connection: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<v2t::RowSet, v2t::Error>> {
        let session = self.session(&connection)?;
        Ok(query(&session, &statement, convert_v2::params(params))
            .await
            .map(convert_v2::row_set)
            .map_err(v2t::Error::from))
    }

    async fn execute(
        &mut self,
        connection: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<(), v2t::Error>> {
        let session = self.session(&connection)?;
        Ok(execute(&session, &statement, convert_v2::params(params))
            .await
            .map_err(v2t::Error::from))
    }

    async fn drop(&mut self, connection: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        self.close_session(connection).await
    }
}

// ---------------------------------------------------------------------------
// spin:mysql/mysql@3.0.0

impl v3::Host for CapabilitiesCtx<'_> {}

impl v3::HostConnection for CapabilitiesCtx<'_> {
    async fn drop(&mut self, connection: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        self.close_session(connection).await
    }
}

impl<T> v3::HostConnectionWithStore<T> for Capabilities {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<MysqlConnection>, v3::Error>> {
        let opened = rdbms::open_session(accessor, |caps| connect(caps, &address)).await?;
        Ok(opened.map_err(v3::Error::from))
    }

    async fn query(
        accessor: &Accessor<T, Self>,
        connection: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v3::Column>,
                StreamReader<v3::Row>,
                FutureReader<Result<(), v3::Error>>,
            ),
            v3::Error,
        >,
    > {
        let session = rdbms::session(accessor, &connection)?;
        let (columns, rows, done) = match query_stream(
            session,
            statement,
            convert_v3::params(params),
            convert_v3::row,
        )
        .await
        {
            Ok(started) => started,
            Err(e) => return Ok(Err(e.into())),
        };
        let (rows, done) =
            rdbms::rows_and_outcome(accessor, rows, done, v3::Error::from, v3::Error::Other)?;
        Ok(Ok((convert_v3::columns(columns), rows, done)))
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        connection: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let session = rdbms::session(accessor, &connection)?;
        Ok(execute(&session, &statement, convert_v3::params(params))
            .await
            .map_err(v3::Error::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_and_checked() {
        let (_, host, port, tls) =
            parse_address("mysql://u:p@db.example:3307/app?ssl-mode=REQUIRED").unwrap();
        assert_eq!((host.as_str(), port), ("db.example", 3307));
        assert_eq!(tls, MyTls::Require(wisp_outbound::Verify::Full));
        let (_, host, port, tls) = parse_address("mysql://u@127.0.0.1/app").unwrap();
        assert_eq!((host.as_str(), port, tls), ("127.0.0.1", 3306, MyTls::Off));
        let refused = |address: &str| match parse_address(address) {
            Err(Failure::Connection(message)) => message.to_string(),
            other => panic!("{address}: {:?}", other.map(|(_, h, p, _)| (h, p))),
        };
        assert!(refused("postgres://u@h/d").contains("mysql://"));
        assert!(refused("mysql://u@h/d?ssl-mode=sometimes").contains("ssl-mode"));
        assert!(refused("mysql://u@h/d?socket=/tmp/mysql.sock").contains("Unix"));
    }

    #[test]
    fn values_decode_by_column_type() {
        assert_eq!(decode(MyType::Int8, Value::Int(-5)), Ok(MyValue::Int8(-5)));
        assert!(decode(MyType::Int8, Value::Int(300)).is_err());
        assert_eq!(
            decode(MyType::UInt8, Value::Int(255)),
            Ok(MyValue::UInt8(255))
        );
        assert_eq!(decode(MyType::Int64, Value::UInt(7)), Ok(MyValue::Int64(7)));
        assert_eq!(
            decode(MyType::Date, Value::Date(2024, 2, 29, 0, 0, 0, 0)),
            Ok(MyValue::Str("2024-02-29".to_owned()))
        );
        assert_eq!(
            decode(MyType::Str, Value::Date(2024, 2, 29, 0, 0, 0, 0)),
            Ok(MyValue::Str("2024-02-29 00:00:00".to_owned()))
        );
        assert_eq!(
            decode(MyType::UInt64, Value::UInt(u64::MAX)),
            Ok(MyValue::UInt64(u64::MAX))
        );
        assert_eq!(
            decode(MyType::Boolean, Value::Bytes(vec![1])),
            Ok(MyValue::Bool(true))
        );
        assert_eq!(
            decode(MyType::Str, Value::Date(2024, 2, 29, 13, 5, 9, 120)),
            Ok(MyValue::Str("2024-02-29 13:05:09.000120".to_owned()))
        );
        assert_eq!(
            decode(MyType::Str, Value::Time(true, 1, 2, 3, 4, 0)),
            Ok(MyValue::Str("-26:03:04".to_owned()))
        );
        assert_eq!(
            decode(MyType::Other, Value::Int(1)),
            Ok(MyValue::Unsupported)
        );
        assert_eq!(decode(MyType::Str, Value::NULL), Ok(MyValue::Null));
    }
}

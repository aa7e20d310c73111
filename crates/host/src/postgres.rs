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

use crate::bindings::fermyon::spin::{postgres as v2, rdbms_types as v2t};
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use crate::bindings::spin::postgres4_2_0::postgres as v4;
use crate::rdbms::{self, CONNECT_TIMEOUT, MAX_RESULT_BYTES, QUERY_TIMEOUT, RESET_TIMEOUT};
use crate::{Capabilities, CapabilitiesCtx, ComponentCapabilities};
use bytes::BytesMut;
use futures::TryStreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

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

/// `spin:postgres@4.x` `connection-builder`: an address waiting for `build`.
pub struct PostgresBuilder {
    address: String,
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
// Values

/// `(year, month, day, hour, minute, second, nanosecond)`, as the WIT writes it.
type Datetime = (i32, u8, u8, u8, u8, u8, u32);

/// A bound of a range: the value and whether it is inclusive; `None` is unbounded.
type Bound<T> = Option<(T, bool)>;

/// The values of every version, a superset of each WIT `db-value`/`parameter-value`.
#[derive(Debug, Clone, PartialEq)]
enum PgValue {
    Null,
    Bool(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    /// Only `fermyon:spin/rdbms-types` parameters carry unsigned integers.
    UInt(u64),
    Float32(f32),
    Float64(f64),
    Str(String),
    Binary(Vec<u8>),
    Date((i32, u8, u8)),
    Time((u8, u8, u8, u32)),
    Datetime(Datetime),
    /// Seconds since the Unix epoch (a parameter only; results carry datetimes).
    Timestamp(i64),
    Uuid(String),
    Jsonb(Vec<u8>),
    Decimal(String),
    RangeInt32((Bound<i32>, Bound<i32>)),
    RangeInt64((Bound<i64>, Bound<i64>)),
    RangeDecimal((Bound<String>, Bound<String>)),
    ArrayInt32(Vec<Option<i32>>),
    ArrayInt64(Vec<Option<i64>>),
    ArrayDecimal(Vec<Option<String>>),
    ArrayStr(Vec<Option<String>>),
    Interval {
        micros: i64,
        days: i32,
        months: i32,
    },
    /// A column of a type no WIT value has: its raw binary encoding.
    Unsupported(Vec<u8>),
}

impl PgValue {
    /// Roughly the bytes this value occupies, for the result-size bound.
    fn size(&self) -> usize {
        match self {
            PgValue::Str(s) | PgValue::Uuid(s) | PgValue::Decimal(s) => s.len(),
            PgValue::Binary(b) | PgValue::Jsonb(b) | PgValue::Unsupported(b) => b.len(),
            PgValue::ArrayStr(a) | PgValue::ArrayDecimal(a) => a
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len) + 8)
                .sum(),
            PgValue::ArrayInt32(a) => a.len() * 8,
            PgValue::ArrayInt64(a) => a.len() * 16,
            _ => 16,
        }
    }

    /// The WIT case name, for messages.
    fn kind(&self) -> &'static str {
        match self {
            PgValue::Null => "db-null",
            PgValue::Bool(_) => "boolean",
            PgValue::Int8(_) => "int8",
            PgValue::Int16(_) => "int16",
            PgValue::Int32(_) => "int32",
            PgValue::Int64(_) => "int64",
            PgValue::UInt(_) => "unsigned integer",
            PgValue::Float32(_) => "floating32",
            PgValue::Float64(_) => "floating64",
            PgValue::Str(_) => "str",
            PgValue::Binary(_) => "binary",
            PgValue::Date(_) => "date",
            PgValue::Time(_) => "time",
            PgValue::Datetime(_) => "datetime",
            PgValue::Timestamp(_) => "timestamp",
            PgValue::Uuid(_) => "uuid",
            PgValue::Jsonb(_) => "jsonb",
            PgValue::Decimal(_) => "decimal",
            PgValue::RangeInt32(_) => "range-int32",
            PgValue::RangeInt64(_) => "range-int64",
            PgValue::RangeDecimal(_) => "range-decimal",
            PgValue::ArrayInt32(_) => "array-int32",
            PgValue::ArrayInt64(_) => "array-int64",
            PgValue::ArrayDecimal(_) => "array-decimal",
            PgValue::ArrayStr(_) => "array-str",
            PgValue::Interval { .. } => "interval",
            PgValue::Unsupported(_) => "unsupported",
        }
    }
}

/// The WIT data type of a column, a superset of each version's `db-data-type`.
#[derive(Debug, Clone, PartialEq)]
enum PgType {
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Floating32,
    Floating64,
    Str,
    Binary,
    Date,
    Time,
    Datetime,
    Timestamp,
    Uuid,
    Jsonb,
    Decimal,
    RangeInt32,
    RangeInt64,
    RangeDecimal,
    ArrayInt32,
    ArrayInt64,
    ArrayDecimal,
    ArrayStr,
    Interval,
    Other(String),
}

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
        || matches!(ty.kind(), Kind::Enum(_))
}

fn column_type(ty: &Type) -> PgType {
    match *ty {
        Type::BOOL => PgType::Boolean,
        Type::CHAR => PgType::Int8,
        Type::INT2 => PgType::Int16,
        Type::INT4 => PgType::Int32,
        Type::INT8 => PgType::Int64,
        Type::FLOAT4 => PgType::Floating32,
        Type::FLOAT8 => PgType::Floating64,
        Type::BYTEA => PgType::Binary,
        Type::DATE => PgType::Date,
        Type::TIME => PgType::Time,
        Type::TIMESTAMP => PgType::Datetime,
        Type::TIMESTAMPTZ => PgType::Timestamp,
        Type::UUID => PgType::Uuid,
        Type::JSON | Type::JSONB => PgType::Jsonb,
        Type::NUMERIC => PgType::Decimal,
        Type::INT4_RANGE => PgType::RangeInt32,
        Type::INT8_RANGE => PgType::RangeInt64,
        Type::NUM_RANGE => PgType::RangeDecimal,
        Type::INT4_ARRAY => PgType::ArrayInt32,
        Type::INT8_ARRAY => PgType::ArrayInt64,
        Type::NUMERIC_ARRAY => PgType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY | Type::NAME_ARRAY => {
            PgType::ArrayStr
        }
        Type::INTERVAL => PgType::Interval,
        _ if is_text(ty) => PgType::Str,
        _ => PgType::Other(ty.name().to_owned()),
    }
}

/// A column value as the server sent it (binary format), for any type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

type CodecError = Box<dyn std::error::Error + Sync + Send>;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since PostgreSQL's epoch of a date, checked (so 2023-02-30 is an error).
fn pg_days(date: (i32, u8, u8)) -> Result<i32, String> {
    let (year, month, day) = date;
    let days = days_from_civil(i64::from(year), u32::from(month), u32::from(day));
    if !(1..=12).contains(&month) || civil_from_days(days) != (i64::from(year), month, day) {
        return Err(format!("{year:04}-{month:02}-{day:02} is not a date"));
    }
    i32::try_from(days - PG_EPOCH_DAYS).map_err(|_| format!("year {year} is out of range"))
}

fn pg_time_micros(time: (u8, u8, u8, u32)) -> Result<i64, String> {
    let (hour, minute, second, nanos) = time;
    if hour > 23 || minute > 59 || second > 59 || nanos > 999_999_999 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02}.{nanos:09} is not a time of day"
        ));
    }
    Ok(
        ((i64::from(hour) * 60 + i64::from(minute)) * 60 + i64::from(second)) * 1_000_000
            + i64::from(nanos / 1000),
    )
}

fn time_from_micros(micros: i64) -> (u8, u8, u8, u32) {
    let seconds = micros.div_euclid(1_000_000);
    let nanos = (micros.rem_euclid(1_000_000) * 1000) as u32;
    (
        (seconds / 3600 % 24) as u8,
        (seconds / 60 % 60) as u8,
        (seconds % 60) as u8,
        nanos,
    )
}

/// A timestamp (microseconds since 2000-01-01 00:00) as a datetime tuple.
fn datetime_from_micros(micros: i64) -> Result<Datetime, CodecError> {
    if micros == i64::MAX || micros == i64::MIN {
        return Err("infinite timestamps have no datetime value".into());
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days + PG_EPOCH_DAYS);
    let (hour, minute, second, nanos) = time_from_micros(micros.rem_euclid(MICROS_PER_DAY));
    Ok((
        i32::try_from(year)?,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    ))
}

fn datetime_micros(datetime: Datetime) -> Result<i64, String> {
    let (year, month, day, hour, minute, second, nanos) = datetime;
    let days = pg_days((year, month, day))?;
    let time = pg_time_micros((hour, minute, second, nanos))?;
    i64::from(days)
        .checked_mul(MICROS_PER_DAY)
        .and_then(|d| d.checked_add(time))
        .ok_or_else(|| format!("year {year} is out of range"))
}

/// `NUMERIC` in binary format (base-10000 digits) as a decimal string.
fn numeric_to_string(mut buf: &[u8]) -> Result<String, CodecError> {
    use std::fmt::Write as _;
    let mut read_u16 = || -> Result<u16, CodecError> {
        let (head, tail) = buf.split_at_checked(2).ok_or("truncated numeric")?;
        buf = tail;
        Ok(u16::from_be_bytes([head[0], head[1]]))
    };
    let ndigits = read_u16()?;
    let weight = read_u16()? as i16;
    let sign = read_u16()?;
    let dscale = read_u16()?;
    let digits = (0..ndigits)
        .map(|_| read_u16())
        .collect::<Result<Vec<u16>, _>>()?;
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        0x0000 | 0x4000 => {}
        _ => return Err("invalid numeric sign".into()),
    }
    let digit = |index: i32| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    let weight = i32::from(weight);
    if weight < 0 {
        out.push('0');
    } else {
        for index in 0..=weight {
            if index == 0 {
                write!(out, "{}", digit(index))?;
            } else {
                write!(out, "{:04}", digit(index))?;
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut index = weight + 1;
        while fraction.len() < usize::from(dscale) {
            write!(fraction, "{:04}", digit(index))?;
            index += 1;
        }
        fraction.truncate(usize::from(dscale));
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

/// A decimal string (`-12.340`, `NaN`, `Infinity`) in `NUMERIC` binary format.
fn numeric_to_sql(text: &str, out: &mut BytesMut) -> Result<(), String> {
    let bad = || format!("{text:?} is not a decimal number");
    let trimmed = text.trim();
    let special = match trimmed.to_ascii_lowercase().as_str() {
        "nan" => Some(0xC000u16),
        "infinity" | "+infinity" | "inf" => Some(0xD000),
        "-infinity" | "-inf" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        for word in [0u16, 0, sign, 0] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        return Ok(());
    }
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || frac_part.len() > 0x3FFF
        || int_part.len() > 131_072
    {
        return Err(bad());
    }
    let int_part = int_part.trim_start_matches('0');
    let dscale = frac_part.len() as u16;
    // Align both parts on base-10000 groups around the decimal point.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let int_digits: String = "0".repeat(int_pad) + int_part;
    let frac_digits: String = frac_part.to_owned() + &"0".repeat(frac_pad);
    let group = |chunk: &[u8]| -> u16 {
        chunk
            .iter()
            .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'))
    };
    let mut groups: Vec<u16> = int_digits
        .as_bytes()
        .chunks(4)
        .chain(frac_digits.as_bytes().chunks(4))
        .map(group)
        .collect();
    let mut weight = (int_digits.len() / 4) as i32 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = u16::try_from(groups.len()).map_err(|_| bad())?;
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    for word in [ndigits, weight as u16, sign, dscale] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

fn format_uuid(bytes: [u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn parse_uuid(text: &str) -> Result<[u8; 16], String> {
    let hex: String = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not a UUID"));
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The elements of a one-dimensional array in binary format.
fn array_elements(mut buf: &[u8]) -> Result<Vec<Option<&[u8]>>, CodecError> {
    let read_i32 = |buf: &mut &[u8]| -> Result<i32, CodecError> {
        let (head, tail) = buf.split_at_checked(4).ok_or("truncated array")?;
        *buf = tail;
        Ok(i32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    };
    let dimensions = read_i32(&mut buf)?;
    let _has_nulls = read_i32(&mut buf)?;
    let _element_type = read_i32(&mut buf)?;
    let count = match dimensions {
        0 => 0,
        1 => {
            let len = read_i32(&mut buf)?;
            let _lower_bound = read_i32(&mut buf)?;
            usize::try_from(len).map_err(|_| "invalid array length")?
        }
        _ => return Err("only one-dimensional arrays have a WIT value".into()),
    };
    let mut elements = Vec::with_capacity(count.min(buf.len() / 4));
    for _ in 0..count {
        let len = read_i32(&mut buf)?;
        if len < 0 {
            elements.push(None);
        } else {
            let (value, tail) = buf
                .split_at_checked(len as usize)
                .ok_or("truncated array element")?;
            buf = tail;
            elements.push(Some(value));
        }
    }
    Ok(elements)
}

fn range_bounds<T>(
    raw: &[u8],
    element: impl Fn(&[u8]) -> Result<T, CodecError>,
    empty: impl Fn() -> T,
) -> Result<(Bound<T>, Bound<T>), CodecError> {
    use postgres_protocol::types::{Range, RangeBound};
    let bound = |bound: RangeBound<Option<&[u8]>>| -> Result<Bound<T>, CodecError> {
        Ok(match bound {
            RangeBound::Inclusive(Some(v)) => Some((element(v)?, true)),
            RangeBound::Exclusive(Some(v)) => Some((element(v)?, false)),
            RangeBound::Inclusive(None) | RangeBound::Exclusive(None) | RangeBound::Unbounded => {
                None
            }
        })
    };
    match postgres_protocol::types::range_from_sql(raw)? {
        // No WIT form for "empty"; `(x, x)` exclusive is the empty range in PostgreSQL.
        Range::Empty => Ok((Some((empty(), false)), Some((empty(), false)))),
        Range::Nonempty(lower, upper) => Ok((bound(lower)?, bound(upper)?)),
    }
}

/// Decodes one column value of a row.
fn decode(ty: &Type, pg_type: &PgType, raw: Option<&[u8]>) -> Result<PgValue, CodecError> {
    use postgres_protocol::types as t;
    let Some(raw) = raw else {
        return Ok(PgValue::Null);
    };
    let text = |raw: &[u8]| -> Result<String, CodecError> { Ok(t::text_from_sql(raw)?.to_owned()) };
    Ok(match pg_type {
        PgType::Boolean => PgValue::Bool(t::bool_from_sql(raw)?),
        PgType::Int8 => PgValue::Int8(t::char_from_sql(raw)?),
        PgType::Int16 => PgValue::Int16(t::int2_from_sql(raw)?),
        PgType::Int32 => PgValue::Int32(t::int4_from_sql(raw)?),
        PgType::Int64 => PgValue::Int64(t::int8_from_sql(raw)?),
        PgType::Floating32 => PgValue::Float32(t::float4_from_sql(raw)?),
        PgType::Floating64 => PgValue::Float64(t::float8_from_sql(raw)?),
        PgType::Str => PgValue::Str(text(raw)?),
        PgType::Binary => PgValue::Binary(t::bytea_from_sql(raw).to_vec()),
        PgType::Date => {
            let days = t::date_from_sql(raw)?;
            if days == i32::MAX || days == i32::MIN {
                return Err("infinite dates have no date value".into());
            }
            let (year, month, day) = civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
            PgValue::Date((i32::try_from(year)?, month, day))
        }
        PgType::Time => PgValue::Time(time_from_micros(t::time_from_sql(raw)?)),
        PgType::Datetime | PgType::Timestamp => {
            PgValue::Datetime(datetime_from_micros(t::timestamp_from_sql(raw)?)?)
        }
        PgType::Uuid => PgValue::Uuid(format_uuid(t::uuid_from_sql(raw)?)),
        PgType::Jsonb if *ty == Type::JSONB => match raw.split_first() {
            Some((1, json)) => PgValue::Jsonb(json.to_vec()),
            _ => return Err("unknown jsonb format version".into()),
        },
        PgType::Jsonb => PgValue::Jsonb(raw.to_vec()),
        PgType::Decimal => PgValue::Decimal(numeric_to_string(raw)?),
        PgType::RangeInt32 => PgValue::RangeInt32(range_bounds(raw, t::int4_from_sql, || 0)?),
        PgType::RangeInt64 => PgValue::RangeInt64(range_bounds(raw, t::int8_from_sql, || 0)?),
        PgType::RangeDecimal => {
            PgValue::RangeDecimal(range_bounds(raw, numeric_to_string, || "0".to_owned())?)
        }
        PgType::ArrayInt32 => PgValue::ArrayInt32(
            array_elements(raw)?
                .into_iter()
                .map(|e| e.map(t::int4_from_sql).transpose())
                .collect::<Result<_, _>>()?,
        ),
        PgType::ArrayInt64 => PgValue::ArrayInt64(
            array_elements(raw)?
                .into_iter()
                .map(|e| e.map(t::int8_from_sql).transpose())
                .collect::<Result<_, _>>()?,
        ),
        PgType::ArrayDecimal => PgValue::ArrayDecimal(
            array_elements(raw)?
                .into_iter()
                .map(|e| e.map(numeric_to_string).transpose())
                .collect::<Result<_, _>>()?,
        ),
        PgType::ArrayStr => PgValue::ArrayStr(
            array_elements(raw)?
                .into_iter()
                .map(|e| e.map(text).transpose())
                .collect::<Result<_, _>>()?,
        ),
        PgType::Interval => {
            let bytes: [u8; 16] = raw.try_into().map_err(|_| "invalid interval")?;
            PgValue::Interval {
                micros: i64::from_be_bytes(bytes[0..8].try_into()?),
                days: i32::from_be_bytes(bytes[8..12].try_into()?),
                months: i32::from_be_bytes(bytes[12..16].try_into()?),
            }
        }
        PgType::Other(_) => PgValue::Unsupported(raw.to_vec()),
    })
}

fn int_for(value: i64, ty: &Type, out: &mut BytesMut) -> Result<(), String> {
    use postgres_protocol::types as t;
    let range = |what: &str| format!("{value} does not fit a {what} column");
    match *ty {
        Type::CHAR => t::char_to_sql(i8::try_from(value).map_err(|_| range("\"char\""))?, out),
        Type::INT2 => t::int2_to_sql(i16::try_from(value).map_err(|_| range("smallint"))?, out),
        Type::INT4 => t::int4_to_sql(i32::try_from(value).map_err(|_| range("integer"))?, out),
        Type::INT8 => t::int8_to_sql(value, out),
        Type::NUMERIC => numeric_to_sql(&value.to_string(), out)?,
        Type::FLOAT8 if value.unsigned_abs() <= 1 << 53 => t::float8_to_sql(value as f64, out),
        _ => return Err(String::new()),
    }
    Ok(())
}

fn bound_to_sql<T>(
    bound: &Bound<T>,
    write: &impl Fn(&T, &mut BytesMut) -> Result<(), String>,
    out: &mut BytesMut,
) -> Result<postgres_protocol::types::RangeBound<postgres_protocol::IsNull>, CodecError> {
    use postgres_protocol::IsNull;
    use postgres_protocol::types::RangeBound;
    Ok(match bound {
        None => RangeBound::Unbounded,
        Some((value, inclusive)) => {
            write(value, out)?;
            if *inclusive {
                RangeBound::Inclusive(IsNull::No)
            } else {
                RangeBound::Exclusive(IsNull::No)
            }
        }
    })
}

fn range_to_sql<T>(
    range: &(Bound<T>, Bound<T>),
    write: impl Fn(&T, &mut BytesMut) -> Result<(), String>,
    out: &mut BytesMut,
) -> Result<(), String> {
    postgres_protocol::types::range_to_sql(
        |buf| bound_to_sql(&range.0, &write, buf),
        |buf| bound_to_sql(&range.1, &write, buf),
        out,
    )
    .map_err(|e| e.to_string())
}

fn array_to_sql<T>(
    items: &[Option<T>],
    element: &Type,
    write: impl Fn(&T, &mut BytesMut) -> Result<(), String>,
    out: &mut BytesMut,
) -> Result<(), String> {
    use postgres_protocol::IsNull;
    let len = i32::try_from(items.len()).map_err(|_| "the array is too long".to_owned())?;
    postgres_protocol::types::array_to_sql(
        [postgres_protocol::types::ArrayDimension {
            len,
            lower_bound: 1,
        }],
        element.oid(),
        items,
        |item, buf| match item {
            Some(value) => {
                write(value, buf)?;
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        },
        out,
    )
    .map_err(|e| e.to_string())
}

/// Encodes a parameter for a placeholder the server typed `ty`. Integers and floats
/// widen (and narrow when the value fits); strings also bind to JSON, UUID, numeric
/// and enum placeholders. `Err("")` means the combination is not supported.
fn encode(value: &PgValue, ty: &Type, out: &mut BytesMut) -> Result<IsNull, String> {
    use postgres_protocol::types as t;
    match (value, ty) {
        (PgValue::Null, _) => return Ok(IsNull::Yes),
        (PgValue::Bool(b), &Type::BOOL) => t::bool_to_sql(*b, out),
        (PgValue::Int8(i), _) => int_for(i64::from(*i), ty, out)?,
        (PgValue::Int16(i), _) => int_for(i64::from(*i), ty, out)?,
        (PgValue::Int32(i), _) => int_for(i64::from(*i), ty, out)?,
        (PgValue::Int64(i), _) => int_for(*i, ty, out)?,
        (PgValue::UInt(u), _) => match i64::try_from(*u) {
            Ok(i) => int_for(i, ty, out)?,
            Err(_) if *ty == Type::NUMERIC => numeric_to_sql(&u.to_string(), out)?,
            Err(_) => return Err(format!("{u} does not fit a {} column", ty.name())),
        },
        (PgValue::Float32(f), &Type::FLOAT4) => t::float4_to_sql(*f, out),
        (PgValue::Float32(f), &Type::FLOAT8) => t::float8_to_sql(f64::from(*f), out),
        (PgValue::Float64(f), &Type::FLOAT8) => t::float8_to_sql(*f, out),
        (PgValue::Str(s), _) if is_text(ty) || *ty == Type::JSON => t::text_to_sql(s, out),
        (PgValue::Str(s), &Type::JSONB) => {
            out.extend_from_slice(&[1]);
            t::text_to_sql(s, out);
        }
        (PgValue::Str(s) | PgValue::Uuid(s), &Type::UUID) => t::uuid_to_sql(parse_uuid(s)?, out),
        (PgValue::Str(s) | PgValue::Decimal(s), &Type::NUMERIC) => numeric_to_sql(s, out)?,
        (PgValue::Uuid(s) | PgValue::Decimal(s), _) if is_text(ty) => t::text_to_sql(s, out),
        (PgValue::Binary(b), &Type::BYTEA) => t::bytea_to_sql(b, out),
        (PgValue::Date(d), &Type::DATE) => t::date_to_sql(pg_days(*d)?, out),
        (PgValue::Time(time), &Type::TIME) => t::time_to_sql(pg_time_micros(*time)?, out),
        (PgValue::Datetime(dt), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
            t::timestamp_to_sql(datetime_micros(*dt)?, out)
        }
        (PgValue::Timestamp(seconds), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
            let micros = seconds
                .checked_sub(PG_EPOCH_DAYS * 86_400)
                .and_then(|s| s.checked_mul(1_000_000))
                .ok_or_else(|| format!("timestamp {seconds} is out of range"))?;
            t::timestamp_to_sql(micros, out)
        }
        (PgValue::Timestamp(seconds), &Type::INT8) => t::int8_to_sql(*seconds, out),
        (PgValue::Jsonb(json), &Type::JSONB | &Type::JSON) => {
            std::str::from_utf8(json).map_err(|_| "the JSON is not UTF-8".to_owned())?;
            if *ty == Type::JSONB {
                out.extend_from_slice(&[1]);
            }
            out.extend_from_slice(json);
        }
        (PgValue::RangeInt32(r), &Type::INT4_RANGE) => range_to_sql(
            r,
            |v, buf| {
                t::int4_to_sql(*v, buf);
                Ok(())
            },
            out,
        )?,
        (PgValue::RangeInt64(r), &Type::INT8_RANGE) => range_to_sql(
            r,
            |v, buf| {
                t::int8_to_sql(*v, buf);
                Ok(())
            },
            out,
        )?,
        (PgValue::RangeDecimal(r), &Type::NUM_RANGE) => {
            range_to_sql(r, |v, buf| numeric_to_sql(v, buf), out)?
        }
        (PgValue::ArrayInt32(a), &Type::INT4_ARRAY) => array_to_sql(
            a,
            &Type::INT4,
            |v, buf| {
                t::int4_to_sql(*v, buf);
                Ok(())
            },
            out,
        )?,
        (PgValue::ArrayInt32(a), &Type::INT8_ARRAY) => array_to_sql(
            a,
            &Type::INT8,
            |v, buf| {
                t::int8_to_sql(i64::from(*v), buf);
                Ok(())
            },
            out,
        )?,
        (PgValue::ArrayInt64(a), &Type::INT8_ARRAY) => array_to_sql(
            a,
            &Type::INT8,
            |v, buf| {
                t::int8_to_sql(*v, buf);
                Ok(())
            },
            out,
        )?,
        (PgValue::ArrayDecimal(a), &Type::NUMERIC_ARRAY) => {
            array_to_sql(a, &Type::NUMERIC, |v, buf| numeric_to_sql(v, buf), out)?
        }
        (
            PgValue::ArrayStr(a),
            &Type::TEXT_ARRAY | &Type::VARCHAR_ARRAY | &Type::BPCHAR_ARRAY | &Type::NAME_ARRAY,
        ) => {
            let element = match ty.kind() {
                Kind::Array(element) => element.clone(),
                _ => Type::TEXT,
            };
            array_to_sql(
                a,
                &element,
                |v, buf| {
                    t::text_to_sql(v, buf);
                    Ok(())
                },
                out,
            )?
        }
        (
            PgValue::Interval {
                micros,
                days,
                months,
            },
            &Type::INTERVAL,
        ) => {
            out.extend_from_slice(&micros.to_be_bytes());
            out.extend_from_slice(&days.to_be_bytes());
            out.extend_from_slice(&months.to_be_bytes());
        }
        _ => return Err(String::new()),
    }
    Ok(IsNull::No)
}

/// A parameter already encoded for its placeholder's type.
#[derive(Debug)]
struct Encoded(Option<BytesMut>);

impl ToSql for Encoded {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, CodecError> {
        match &self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Encodes every parameter for the statement's placeholder types; a mismatch is a
/// `bad-parameter` naming the parameter, its WIT type and the column type.
fn encode_params(statement: &Statement, params: &[PgValue]) -> Result<Vec<Encoded>, Failure> {
    let types = statement.params();
    if types.len() != params.len() {
        return Err(Failure::BadParameter(format!(
            "the statement has {} placeholders but {} parameters were given",
            types.len(),
            params.len()
        )));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(index, (value, ty))| {
            let mut out = BytesMut::new();
            match encode(value, ty, &mut out) {
                Ok(IsNull::Yes) => Ok(Encoded(None)),
                Ok(IsNull::No) => Ok(Encoded(Some(out))),
                Err(why) if why.is_empty() => Err(Failure::BadParameter(format!(
                    "parameter ${} is {} but the placeholder is {}; pass a matching value or cast the placeholder (${}::type)",
                    index + 1,
                    value.kind(),
                    ty.name(),
                    index + 1
                ))),
                Err(why) => Err(Failure::BadParameter(format!(
                    "parameter ${}: {why}",
                    index + 1
                ))),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Statements

/// Column names and WIT types of a prepared statement.
fn columns(statement: &Statement) -> Vec<(String, PgType)> {
    statement
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), column_type(c.type_())))
        .collect()
}

fn decode_row(
    row: &tokio_postgres::Row,
    types: &[(String, PgType)],
) -> Result<Vec<PgValue>, Failure> {
    let conversion = |index: usize, e: CodecError| {
        Failure::Conversion(format!(
            "column {} ({}): {e}",
            index + 1,
            row.columns()[index].type_().name()
        ))
    };
    types
        .iter()
        .enumerate()
        .map(|(index, (_, pg_type))| {
            let raw: Raw<'_> = row
                .try_get(index)
                .map_err(|e| conversion(index, e.into()))?;
            decode(row.columns()[index].type_(), pg_type, raw.0).map_err(|e| conversion(index, e))
        })
        .collect()
}

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

// ---------------------------------------------------------------------------
// fermyon:spin/postgres@2.0.0 (rdbms-types)

mod convert_v2 {
    use super::*;

    pub(super) fn error(failure: Failure) -> v2t::Error {
        match failure {
            Failure::Connection(m) => v2t::Error::ConnectionFailed(m),
            Failure::BadParameter(m) => v2t::Error::BadParameter(m),
            Failure::Query(q) => v2t::Error::QueryFailed(Failure::query_text(q)),
            Failure::Conversion(m) => v2t::Error::ValueConversionFailed(m),
        }
    }

    pub(super) fn param(value: v2t::ParameterValue) -> PgValue {
        use v2t::ParameterValue as P;
        match value {
            P::Boolean(b) => PgValue::Bool(b),
            P::Int8(i) => PgValue::Int8(i),
            P::Int16(i) => PgValue::Int16(i),
            P::Int32(i) => PgValue::Int32(i),
            P::Int64(i) => PgValue::Int64(i),
            P::Uint8(u) => PgValue::UInt(u64::from(u)),
            P::Uint16(u) => PgValue::UInt(u64::from(u)),
            P::Uint32(u) => PgValue::UInt(u64::from(u)),
            P::Uint64(u) => PgValue::UInt(u),
            P::Floating32(f) => PgValue::Float32(f),
            P::Floating64(f) => PgValue::Float64(f),
            P::Str(s) => PgValue::Str(s),
            P::Binary(b) => PgValue::Binary(b),
            P::DbNull => PgValue::Null,
        }
    }

    fn data_type(ty: PgType) -> v2t::DbDataType {
        use v2t::DbDataType as D;
        match ty {
            PgType::Boolean => D::Boolean,
            PgType::Int8 => D::Int8,
            PgType::Int16 => D::Int16,
            PgType::Int32 => D::Int32,
            PgType::Int64 => D::Int64,
            PgType::Floating32 => D::Floating32,
            PgType::Floating64 => D::Floating64,
            PgType::Str => D::Str,
            PgType::Binary => D::Binary,
            _ => D::Other,
        }
    }

    fn value(value: PgValue) -> v2t::DbValue {
        use v2t::DbValue as D;
        match value {
            PgValue::Null => D::DbNull,
            PgValue::Bool(b) => D::Boolean(b),
            PgValue::Int8(i) => D::Int8(i),
            PgValue::Int16(i) => D::Int16(i),
            PgValue::Int32(i) => D::Int32(i),
            PgValue::Int64(i) => D::Int64(i),
            PgValue::Float32(f) => D::Floating32(f),
            PgValue::Float64(f) => D::Floating64(f),
            PgValue::Str(s) => D::Str(s),
            PgValue::Binary(b) => D::Binary(b),
            _ => D::Unsupported,
        }
    }

    pub(super) fn row_set((columns, rows): RowSet) -> v2t::RowSet {
        v2t::RowSet {
            columns: columns
                .into_iter()
                .map(|(name, ty)| v2t::Column {
                    name,
                    data_type: data_type(ty),
                })
                .collect(),
            rows: rows
                .into_iter()
                .map(|row| row.into_iter().map(value).collect())
                .collect(),
        }
    }
}

impl v2::Host for CapabilitiesCtx<'_> {}

sync_connection!(v2::HostConnection, v2t, convert_v2);

// ---------------------------------------------------------------------------
// spin:postgres/postgres@3.0.0

mod convert_v3 {
    use super::*;

    pub(super) fn error(failure: Failure) -> v3::Error {
        match failure {
            Failure::Connection(m) => v3::Error::ConnectionFailed(m),
            Failure::BadParameter(m) => v3::Error::BadParameter(m),
            Failure::Query(q) => v3::Error::QueryFailed(Failure::query_text(q)),
            Failure::Conversion(m) => v3::Error::ValueConversionFailed(m),
        }
    }

    pub(super) fn param(value: v3::ParameterValue) -> PgValue {
        use v3::ParameterValue as P;
        match value {
            P::Boolean(b) => PgValue::Bool(b),
            P::Int8(i) => PgValue::Int8(i),
            P::Int16(i) => PgValue::Int16(i),
            P::Int32(i) => PgValue::Int32(i),
            P::Int64(i) => PgValue::Int64(i),
            P::Floating32(f) => PgValue::Float32(f),
            P::Floating64(f) => PgValue::Float64(f),
            P::Str(s) => PgValue::Str(s),
            P::Binary(b) => PgValue::Binary(b),
            P::Date(d) => PgValue::Date(d),
            P::Time(t) => PgValue::Time(t),
            P::Datetime(dt) => PgValue::Datetime(dt),
            P::Timestamp(s) => PgValue::Timestamp(s),
            P::DbNull => PgValue::Null,
        }
    }

    fn data_type(ty: PgType) -> v3::DbDataType {
        use v3::DbDataType as D;
        match ty {
            PgType::Boolean => D::Boolean,
            PgType::Int8 => D::Int8,
            PgType::Int16 => D::Int16,
            PgType::Int32 => D::Int32,
            PgType::Int64 => D::Int64,
            PgType::Floating32 => D::Floating32,
            PgType::Floating64 => D::Floating64,
            PgType::Str => D::Str,
            PgType::Binary => D::Binary,
            PgType::Date => D::Date,
            PgType::Time => D::Time,
            PgType::Datetime => D::Datetime,
            PgType::Timestamp => D::Timestamp,
            _ => D::Other,
        }
    }

    fn value(value: PgValue) -> v3::DbValue {
        use v3::DbValue as D;
        match value {
            PgValue::Null => D::DbNull,
            PgValue::Bool(b) => D::Boolean(b),
            PgValue::Int8(i) => D::Int8(i),
            PgValue::Int16(i) => D::Int16(i),
            PgValue::Int32(i) => D::Int32(i),
            PgValue::Int64(i) => D::Int64(i),
            PgValue::Float32(f) => D::Floating32(f),
            PgValue::Float64(f) => D::Floating64(f),
            PgValue::Str(s) => D::Str(s),
            PgValue::Binary(b) => D::Binary(b),
            PgValue::Date(d) => D::Date(d),
            PgValue::Time(t) => D::Time(t),
            PgValue::Datetime(dt) => D::Datetime(dt),
            PgValue::Timestamp(s) => D::Timestamp(s),
            _ => D::Unsupported,
        }
    }

    pub(super) fn row_set((columns, rows): RowSet) -> v3::RowSet {
        v3::RowSet {
            columns: columns
                .into_iter()
                .map(|(name, ty)| v3::Column {
                    name,
                    data_type: data_type(ty),
                })
                .collect(),
            rows: rows
                .into_iter()
                .map(|row| row.into_iter().map(value).collect())
                .collect(),
        }
    }
}

impl v3::Host for CapabilitiesCtx<'_> {}

sync_connection!(v3::HostConnection, v3, convert_v3);

// ---------------------------------------------------------------------------
// spin:postgres/postgres@4.2.0

mod convert_v4 {
    use super::*;

    fn kind(inclusive: bool) -> v4::RangeBoundKind {
        if inclusive {
            v4::RangeBoundKind::Inclusive
        } else {
            v4::RangeBoundKind::Exclusive
        }
    }

    fn inclusive(kind: v4::RangeBoundKind) -> bool {
        matches!(kind, v4::RangeBoundKind::Inclusive)
    }

    fn bound_from<T>(bound: Option<(T, v4::RangeBoundKind)>) -> Bound<T> {
        bound.map(|(value, k)| (value, inclusive(k)))
    }

    fn bound_to<T>(bound: Bound<T>) -> Option<(T, v4::RangeBoundKind)> {
        bound.map(|(value, i)| (value, kind(i)))
    }

    pub(super) fn error(failure: Failure) -> v4::Error {
        match failure {
            Failure::Connection(m) => v4::Error::ConnectionFailed(m),
            Failure::BadParameter(m) => v4::Error::BadParameter(m),
            Failure::Query(QueryFailure::Text(m)) => {
                v4::Error::QueryFailed(v4::QueryError::Text(m))
            }
            Failure::Query(QueryFailure::Db(db)) => {
                v4::Error::QueryFailed(v4::QueryError::DbError(v4::DbError {
                    as_text: db.as_text,
                    severity: db.severity,
                    code: db.code,
                    message: db.message,
                    detail: db.detail,
                    extras: db.extras,
                }))
            }
            Failure::Conversion(m) => v4::Error::ValueConversionFailed(m),
        }
    }

    pub(super) fn param(value: v4::ParameterValue) -> PgValue {
        use v4::ParameterValue as P;
        match value {
            P::Boolean(b) => PgValue::Bool(b),
            P::Int8(i) => PgValue::Int8(i),
            P::Int16(i) => PgValue::Int16(i),
            P::Int32(i) => PgValue::Int32(i),
            P::Int64(i) => PgValue::Int64(i),
            P::Floating32(f) => PgValue::Float32(f),
            P::Floating64(f) => PgValue::Float64(f),
            P::Str(s) => PgValue::Str(s),
            P::Binary(b) => PgValue::Binary(b),
            P::Date(d) => PgValue::Date(d),
            P::Time(t) => PgValue::Time(t),
            P::Datetime(dt) => PgValue::Datetime(dt),
            P::Timestamp(s) => PgValue::Timestamp(s),
            P::Uuid(s) => PgValue::Uuid(s),
            P::Jsonb(j) => PgValue::Jsonb(j),
            P::Decimal(s) => PgValue::Decimal(s),
            P::RangeInt32((l, u)) => PgValue::RangeInt32((bound_from(l), bound_from(u))),
            P::RangeInt64((l, u)) => PgValue::RangeInt64((bound_from(l), bound_from(u))),
            P::RangeDecimal((l, u)) => PgValue::RangeDecimal((bound_from(l), bound_from(u))),
            P::ArrayInt32(a) => PgValue::ArrayInt32(a),
            P::ArrayInt64(a) => PgValue::ArrayInt64(a),
            P::ArrayDecimal(a) => PgValue::ArrayDecimal(a),
            P::ArrayStr(a) => PgValue::ArrayStr(a),
            P::Interval(i) => PgValue::Interval {
                micros: i.micros,
                days: i.days,
                months: i.months,
            },
            P::DbNull => PgValue::Null,
        }
    }

    fn data_type(ty: PgType) -> v4::DbDataType {
        use v4::DbDataType as D;
        match ty {
            PgType::Boolean => D::Boolean,
            PgType::Int8 => D::Int8,
            PgType::Int16 => D::Int16,
            PgType::Int32 => D::Int32,
            PgType::Int64 => D::Int64,
            PgType::Floating32 => D::Floating32,
            PgType::Floating64 => D::Floating64,
            PgType::Str => D::Str,
            PgType::Binary => D::Binary,
            PgType::Date => D::Date,
            PgType::Time => D::Time,
            PgType::Datetime => D::Datetime,
            PgType::Timestamp => D::Timestamp,
            PgType::Uuid => D::Uuid,
            PgType::Jsonb => D::Jsonb,
            PgType::Decimal => D::Decimal,
            PgType::RangeInt32 => D::RangeInt32,
            PgType::RangeInt64 => D::RangeInt64,
            PgType::RangeDecimal => D::RangeDecimal,
            PgType::ArrayInt32 => D::ArrayInt32,
            PgType::ArrayInt64 => D::ArrayInt64,
            PgType::ArrayDecimal => D::ArrayDecimal,
            PgType::ArrayStr => D::ArrayStr,
            PgType::Interval => D::Interval,
            PgType::Other(name) => D::Other(name),
        }
    }

    fn value(value: PgValue) -> v4::DbValue {
        use v4::DbValue as D;
        match value {
            PgValue::Null => D::DbNull,
            PgValue::Bool(b) => D::Boolean(b),
            PgValue::Int8(i) => D::Int8(i),
            PgValue::Int16(i) => D::Int16(i),
            PgValue::Int32(i) => D::Int32(i),
            PgValue::Int64(i) => D::Int64(i),
            PgValue::Float32(f) => D::Floating32(f),
            PgValue::Float64(f) => D::Floating64(f),
            PgValue::Str(s) => D::Str(s),
            PgValue::Binary(b) => D::Binary(b),
            PgValue::Date(d) => D::Date(d),
            PgValue::Time(t) => D::Time(t),
            PgValue::Datetime(dt) => D::Datetime(dt),
            PgValue::Timestamp(s) => D::Timestamp(s),
            PgValue::Uuid(s) => D::Uuid(s),
            PgValue::Jsonb(j) => D::Jsonb(j),
            PgValue::Decimal(s) => D::Decimal(s),
            PgValue::RangeInt32((l, u)) => D::RangeInt32((bound_to(l), bound_to(u))),
            PgValue::RangeInt64((l, u)) => D::RangeInt64((bound_to(l), bound_to(u))),
            PgValue::RangeDecimal((l, u)) => D::RangeDecimal((bound_to(l), bound_to(u))),
            PgValue::ArrayInt32(a) => D::ArrayInt32(a),
            PgValue::ArrayInt64(a) => D::ArrayInt64(a),
            PgValue::ArrayDecimal(a) => D::ArrayDecimal(a),
            PgValue::ArrayStr(a) => D::ArrayStr(a),
            PgValue::Interval {
                micros,
                days,
                months,
            } => D::Interval(v4::Interval {
                micros,
                days,
                months,
            }),
            PgValue::Unsupported(raw) => D::Unsupported(raw),
            PgValue::UInt(_) => D::Unsupported(Vec::new()),
        }
    }

    pub(super) fn columns(columns: Vec<(String, PgType)>) -> Vec<v4::Column> {
        columns
            .into_iter()
            .map(|(name, ty)| v4::Column {
                name,
                data_type: data_type(ty),
            })
            .collect()
    }

    pub(super) fn row(row: Vec<PgValue>) -> v4::Row {
        row.into_iter().map(value).collect()
    }

    pub(super) fn row_set((columns, rows): RowSet) -> v4::RowSet {
        v4::RowSet {
            columns: self::columns(columns),
            rows: rows.into_iter().map(row).collect(),
        }
    }
}

impl v4::Host for CapabilitiesCtx<'_> {}

sync_connection!(v4::HostConnection, v4, convert_v4);

impl<T> v4::HostConnectionWithStore<T> for Capabilities {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        Ok(open_pg_async(accessor, address)
            .await?
            .map_err(convert_v4::error))
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v4::Column>,
                StreamReader<v4::Row>,
                FutureReader<Result<(), v4::Error>>,
            ),
            v4::Error,
        >,
    > {
        let session = pg_session_of(accessor, &connection)?;
        let params: Vec<PgValue> = params.into_iter().map(convert_v4::param).collect();
        let (columns, rows, done) =
            match query_stream(session, statement, params, convert_v4::row).await {
                Ok(started) => started,
                Err(e) => return Ok(Err(convert_v4::error(e))),
            };
        let (rows, done) =
            rdbms::rows_and_outcome(accessor, rows, done, convert_v4::error, v4::Error::Other)?;
        Ok(Ok((convert_v4::columns(columns), rows, done)))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        let session = pg_session_of(accessor, &connection)?;
        let params: Vec<PgValue> = params.into_iter().map(convert_v4::param).collect();
        Ok(execute(&session, &statement, &params)
            .await
            .map_err(convert_v4::error))
    }
}

impl v4::HostConnectionBuilder for CapabilitiesCtx<'_> {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<PostgresBuilder>> {
        // The constructor cannot return an error; past the handle bound the instance
        // traps, as it would for any other unbounded resource growth.
        if !self.state.reserve_handle() {
            wasmtime::bail!("{}", rdbms::too_many_handles());
        }
        Ok(self.table.push(PostgresBuilder { address })?)
    }

    async fn set_ca_root(
        &mut self,
        _builder: Resource<PostgresBuilder>,
        _certificate: String,
    ) -> wasmtime::Result<Result<(), v4::Error>> {
        Ok(Err(v4::Error::ConnectionFailed(
            "TLS to PostgreSQL is not supported by this host yet, so a CA root cannot be used; connect without set-ca-root over plain TCP on a trusted network".to_owned(),
        )))
    }

    async fn build(
        &mut self,
        builder: Resource<PostgresBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        let address = self.table.get(&builder)?.address.clone();
        Ok(self.open_pg(&address).await?.map_err(convert_v4::error))
    }

    async fn drop(&mut self, builder: Resource<PostgresBuilder>) -> wasmtime::Result<()> {
        self.table.delete(builder)?;
        self.state.release_handle();
        Ok(())
    }
}

impl<T> v4::HostConnectionBuilderWithStore<T> for Capabilities {
    async fn build_async(
        accessor: &Accessor<T, Self>,
        builder: Resource<PostgresBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        let address = accessor.with(|mut access| -> wasmtime::Result<String> {
            Ok(access.get().table.get(&builder)?.address.clone())
        })?;
        Ok(open_pg_async(accessor, address)
            .await?
            .map_err(convert_v4::error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for (date, days) in [
            ((2000, 1, 1), 0),
            ((1970, 1, 1), -10_957),
            ((2024, 2, 29), 8_825),
            ((1, 1, 1), -730_119),
        ] {
            assert_eq!(pg_days(date), Ok(days), "{date:?}");
            let (y, m, d) = civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
            assert_eq!((y as i32, m, d), date);
        }
        assert!(pg_days((2023, 2, 29)).is_err());
        assert!(pg_days((2023, 13, 1)).is_err());
    }

    #[test]
    fn datetimes_and_times_round_trip() {
        let dt = (2024, 7, 15, 13, 45, 30, 123_456_000);
        assert_eq!(
            datetime_from_micros(datetime_micros(dt).unwrap()).unwrap(),
            dt
        );
        let before_epoch = (1969, 12, 31, 23, 59, 59, 999_999_000);
        assert_eq!(
            datetime_from_micros(datetime_micros(before_epoch).unwrap()).unwrap(),
            before_epoch
        );
        assert_eq!(
            time_from_micros(pg_time_micros((23, 59, 58, 1000)).unwrap()),
            (23, 59, 58, 1000)
        );
        assert!(pg_time_micros((24, 0, 0, 0)).is_err());
    }

    #[test]
    fn numerics_round_trip_through_binary() {
        for text in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "-0.00012300",
            "100000000",
            "9999.9999",
            "123456789012345678901234567890.123456789",
            "NaN",
            "Infinity",
            "-Infinity",
            "0.10",
        ] {
            let mut buf = BytesMut::new();
            numeric_to_sql(text, &mut buf).unwrap();
            assert_eq!(numeric_to_string(&buf).unwrap(), text, "{text}");
        }
        let mut buf = BytesMut::new();
        numeric_to_sql("+007.50", &mut buf).unwrap();
        assert_eq!(numeric_to_string(&buf).unwrap(), "7.50");
        for bad in ["", "-", "1e5", "1.2.3", "abc", "1 2"] {
            assert!(numeric_to_sql(bad, &mut BytesMut::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuids_parse_and_format() {
        let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        assert_eq!(format_uuid(parse_uuid(text).unwrap()), text);
        assert_eq!(
            format_uuid(parse_uuid("A0EEBC999C0B4EF8BB6D6BB9BD380A11").unwrap()),
            text
        );
        assert!(parse_uuid("not-a-uuid").is_err());
    }

    #[test]
    fn parameters_bind_by_placeholder_type() {
        let mut out = BytesMut::new();
        assert!(encode(&PgValue::Int32(7), &Type::INT8, &mut out).is_ok());
        assert_eq!(&out[..], &7i64.to_be_bytes());
        assert!(
            encode(&PgValue::Int64(1 << 40), &Type::INT4, &mut BytesMut::new())
                .err()
                .is_some_and(|e| e.contains("does not fit"))
        );
        assert_eq!(
            encode(&PgValue::Bool(true), &Type::UUID, &mut BytesMut::new()).err(),
            Some(String::new())
        );
        assert!(matches!(
            encode(&PgValue::Null, &Type::UUID, &mut BytesMut::new()),
            Ok(IsNull::Yes)
        ));
        let mut out = BytesMut::new();
        encode(&PgValue::Jsonb(b"{}".to_vec()), &Type::JSONB, &mut out).unwrap();
        assert_eq!(&out[..], b"\x01{}");
    }

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

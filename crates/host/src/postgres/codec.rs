//! PostgreSQL values in the binary format and the WIT values they map to: the WIT type
//! of a column, decoding a row, and encoding each parameter for its placeholder's type.
//!
//! postgres-types' `FromSql`/`ToSql` impls do the work wherever they give the values
//! guests have always got: booleans, integers, floats, text, `bytea`, `uuid` and
//! one-dimensional arrays. The rest is written here, each piece saying why: types with
//! no impl (ranges, `interval`), and impls that cover less than PostgreSQL does (chrono's
//! calendar, rust_decimal's 28 digits, serde_json's re-serialized JSON).

use super::Failure;
use crate::rdbms::Message;
use bytes::BytesMut;
use postgres_protocol::types as t;
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::Statement;
use uuid::Uuid;

mod calendar;
mod numeric;

use calendar::{
    PG_EPOCH_DAYS, date_from_days, datetime_from_micros, datetime_micros, pg_days, pg_time_micros,
    time_from_micros,
};
use numeric::{Numeric, numeric_to_sql, numeric_to_string};

/// `(year, month, day, hour, minute, second, nanosecond)`, as the WIT writes it.
pub(super) type Datetime = (i32, u8, u8, u8, u8, u8, u32);

/// A bound of a range: the value and whether it is inclusive; `None` is unbounded.
pub(super) type Bound<T> = Option<(T, bool)>;

/// The values of every version, a superset of each WIT `db-value`/`parameter-value`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PgValue {
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
    pub(super) fn size(&self) -> usize {
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
pub(super) enum PgType {
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
///
/// tokio-postgres hands out values only through `FromSql`; this one accepts every type,
/// so the column's WIT type (not a Rust type) picks the decoding below, and a type no
/// WIT value has still reaches the guest as `unsupported`.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, CodecError> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

type CodecError = Box<dyn std::error::Error + Sync + Send>;

/// A UUID parameter's text as its value. Read by hand before uuid's parser takes the 32
/// digits, so it keeps taking what it always has: surrounding spaces, braces around
/// any form, and hyphens anywhere (PostgreSQL itself takes braces and hyphens between
/// any groups of four digits), all of which `Uuid::parse_str` refuses.
fn parse_uuid(text: &str) -> Result<Uuid, String> {
    let digits: String = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    match digits.len() {
        32 => Uuid::try_parse(&digits).map_err(|_| format!("{text:?} is not a UUID")),
        _ => Err(format!("{text:?} is not a UUID")),
    }
}

/// The elements of a one-dimensional array, through postgres-types' `Vec` impl.
fn array_from_sql<'a, T: FromSql<'a>>(
    ty: &Type,
    raw: &'a [u8],
) -> Result<Vec<Option<T>>, CodecError> {
    // Checked first (the header's first word) so the message keeps saying why in WIT
    // terms; postgres-types would say "array contains too many dimensions".
    if raw.get(..4).map_or(Ok(0), t::int4_from_sql)? > 1 {
        return Err("only one-dimensional arrays have a WIT value".into());
    }
    Vec::from_sql(ty, raw)
}

// Ranges: postgres-types has no range type (only `Kind::Range`), so the bounds go
// through postgres-protocol's range codec here.

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
    match t::range_from_sql(raw)? {
        // No WIT form for "empty"; `(x, x)` exclusive is the empty range in PostgreSQL.
        Range::Empty => Ok((Some((empty(), false)), Some((empty(), false)))),
        Range::Nonempty(lower, upper) => Ok((bound(lower)?, bound(upper)?)),
    }
}

fn bound_to_sql<T>(
    bound: &Bound<T>,
    write: &impl Fn(&T, &mut BytesMut) -> Result<(), String>,
    out: &mut BytesMut,
) -> Result<t::RangeBound<postgres_protocol::IsNull>, CodecError> {
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
    t::range_to_sql(
        |buf| bound_to_sql(&range.0, &write, buf),
        |buf| bound_to_sql(&range.1, &write, buf),
        out,
    )
    .map_err(|e| e.to_string())
}

/// Decodes one column value of a row.
fn decode(ty: &Type, pg_type: &PgType, raw: Option<&[u8]>) -> Result<PgValue, CodecError> {
    let Some(raw) = raw else {
        return Ok(PgValue::Null);
    };
    Ok(match pg_type {
        PgType::Boolean => PgValue::Bool(bool::from_sql(ty, raw)?),
        PgType::Int8 => PgValue::Int8(i8::from_sql(ty, raw)?),
        PgType::Int16 => PgValue::Int16(i16::from_sql(ty, raw)?),
        PgType::Int32 => PgValue::Int32(i32::from_sql(ty, raw)?),
        PgType::Int64 => PgValue::Int64(i64::from_sql(ty, raw)?),
        PgType::Floating32 => PgValue::Float32(f32::from_sql(ty, raw)?),
        PgType::Floating64 => PgValue::Float64(f64::from_sql(ty, raw)?),
        PgType::Str => PgValue::Str(String::from_sql(ty, raw)?),
        PgType::Binary => PgValue::Binary(Vec::from_sql(ty, raw)?),
        PgType::Date => PgValue::Date(date_from_days(t::date_from_sql(raw)?)?),
        PgType::Time => PgValue::Time(time_from_micros(t::time_from_sql(raw)?)),
        PgType::Datetime | PgType::Timestamp => {
            PgValue::Datetime(datetime_from_micros(t::timestamp_from_sql(raw)?)?)
        }
        PgType::Uuid => PgValue::Uuid(Uuid::from_sql(ty, raw)?.to_string()),
        // JSON goes to the guest as the server's text rather than through serde_json's
        // impls (`with-serde_json-1`): those re-serialize the document (`{"a": [1]}`
        // would read as `{"a":[1]}`, keys sorted, numbers past f64 rounded) and refuse
        // nesting deeper than 128, which PostgreSQL takes.
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
        PgType::ArrayInt32 => PgValue::ArrayInt32(array_from_sql(ty, raw)?),
        PgType::ArrayInt64 => PgValue::ArrayInt64(array_from_sql(ty, raw)?),
        PgType::ArrayDecimal => PgValue::ArrayDecimal(
            array_from_sql(ty, raw)?
                .into_iter()
                .map(|n| n.map(|Numeric(text)| text))
                .collect(),
        ),
        PgType::ArrayStr => PgValue::ArrayStr(array_from_sql(ty, raw)?),
        // postgres-types has no `interval` impl: its three fields are read here.
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

/// Writes `value` through its postgres-types impl.
fn put<T: ToSql>(value: T, ty: &Type, out: &mut BytesMut) -> Result<(), String> {
    value.to_sql(ty, out).map(drop).map_err(|e| e.to_string())
}

fn int_for(value: i64, ty: &Type, out: &mut BytesMut) -> Result<(), String> {
    let range = |what: &str| format!("{value} does not fit a {what} column");
    match *ty {
        Type::CHAR => put(i8::try_from(value).map_err(|_| range("\"char\""))?, ty, out),
        Type::INT2 => put(
            i16::try_from(value).map_err(|_| range("smallint"))?,
            ty,
            out,
        ),
        Type::INT4 => put(i32::try_from(value).map_err(|_| range("integer"))?, ty, out),
        Type::INT8 => put(value, ty, out),
        Type::NUMERIC => numeric_to_sql(&value.to_string(), out),
        Type::FLOAT8 if value.unsigned_abs() <= 1 << 53 => put(value as f64, ty, out),
        _ => Err(String::new()),
    }
}

/// Encodes a parameter for a placeholder the server typed `ty`. Integers and floats
/// widen (and narrow when the value fits); strings also bind to JSON, UUID, numeric
/// and enum placeholders. `Err("")` means the combination is not supported.
fn encode(value: &PgValue, ty: &Type, out: &mut BytesMut) -> Result<IsNull, String> {
    match (value, ty) {
        (PgValue::Null, _) => return Ok(IsNull::Yes),
        (PgValue::Bool(b), &Type::BOOL) => put(b, ty, out)?,
        (PgValue::Int8(i), _) => int_for(i64::from(*i), ty, out)?,
        (PgValue::Int16(i), _) => int_for(i64::from(*i), ty, out)?,
        (PgValue::Int32(i), _) => int_for(i64::from(*i), ty, out)?,
        (PgValue::Int64(i), _) => int_for(*i, ty, out)?,
        (PgValue::UInt(u), _) => match i64::try_from(*u) {
            Ok(i) => int_for(i, ty, out)?,
            Err(_) if *ty == Type::NUMERIC => numeric_to_sql(&u.to_string(), out)?,
            Err(_) => return Err(format!("{u} does not fit a {} column", ty.name())),
        },
        (PgValue::Float32(f), &Type::FLOAT4) => put(f, ty, out)?,
        (PgValue::Float32(f), &Type::FLOAT8) => put(f64::from(*f), ty, out)?,
        (PgValue::Float64(f), &Type::FLOAT8) => put(f, ty, out)?,
        (PgValue::Str(s), _) if is_text(ty) || *ty == Type::JSON => put(s, ty, out)?,
        // The JSONB version byte, then the text as the guest wrote it (see `decode` for
        // why not serde_json).
        (PgValue::Str(s), &Type::JSONB) => {
            out.extend_from_slice(&[1]);
            t::text_to_sql(s, out);
        }
        (PgValue::Str(s) | PgValue::Uuid(s), &Type::UUID) => put(parse_uuid(s)?, ty, out)?,
        (PgValue::Str(s) | PgValue::Decimal(s), &Type::NUMERIC) => numeric_to_sql(s, out)?,
        (PgValue::Uuid(s) | PgValue::Decimal(s), _) if is_text(ty) => put(s, ty, out)?,
        (PgValue::Binary(b), &Type::BYTEA) => put(b.as_slice(), ty, out)?,
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
        (PgValue::Timestamp(seconds), &Type::INT8) => put(seconds, ty, out)?,
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
        (PgValue::ArrayInt32(a), &Type::INT4_ARRAY) => put(a, ty, out)?,
        (PgValue::ArrayInt32(a), &Type::INT8_ARRAY) => {
            let widened: Vec<Option<i64>> = a.iter().map(|v| v.map(i64::from)).collect();
            put(widened, ty, out)?
        }
        (PgValue::ArrayInt64(a), &Type::INT8_ARRAY) => put(a, ty, out)?,
        (PgValue::ArrayDecimal(a), &Type::NUMERIC_ARRAY) => {
            let numerics: Vec<_> = a.iter().map(|v| v.as_deref().map(Numeric)).collect();
            put(numerics, ty, out)?
        }
        (
            PgValue::ArrayStr(a),
            &Type::TEXT_ARRAY | &Type::VARCHAR_ARRAY | &Type::BPCHAR_ARRAY | &Type::NAME_ARRAY,
        ) => put(a, ty, out)?,
        // postgres-types has no `interval` impl: its three fields are written here.
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
///
/// tokio-postgres checks each `ToSql` value against its placeholder's type, but one WIT
/// value binds to several types (see [`encode`]), so the bytes are made first and this
/// hands them over for any type.
#[derive(Debug)]
pub(super) struct Encoded(Option<BytesMut>);

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

    postgres_types::to_sql_checked!();
}

/// Encodes every parameter for the statement's placeholder types; a mismatch is a
/// `bad-parameter` naming the parameter, its WIT type and the column type.
pub(super) fn encode_params(
    statement: &Statement,
    params: &[PgValue],
) -> Result<Vec<Encoded>, Failure> {
    let types = statement.params();
    if types.len() != params.len() {
        return Err(Failure::BadParameter(Message::new(format!(
            "the statement has {} placeholders but {} parameters were given",
            types.len(),
            params.len()
        ))));
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
                Err(why) if why.is_empty() => Err(Failure::BadParameter(Message::new(format!(
                    "parameter ${} is {} but the placeholder is {}; pass a matching value or cast the placeholder (${}::type)",
                    index + 1,
                    value.kind(),
                    ty.name(),
                    index + 1
                )))),
                Err(why) => Err(Failure::BadParameter(Message::new(format!(
                    "parameter ${}: {why}",
                    index + 1
                )))),
            }
        })
        .collect()
}

/// Column names and WIT types of a prepared statement.
pub(super) fn columns(statement: &Statement) -> Vec<(String, PgType)> {
    statement
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), column_type(c.type_())))
        .collect()
}

pub(super) fn decode_row(
    row: &tokio_postgres::Row,
    types: &[(String, PgType)],
) -> Result<Vec<PgValue>, Failure> {
    let conversion = |index: usize, e: CodecError| {
        Failure::Conversion(Message::caused(
            format!(
                "column {} ({}): {e}",
                index + 1,
                row.columns()[index].type_().name()
            ),
            e,
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

#[cfg(test)]
mod tests {
    use super::calendar::civil_from_days;
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
        assert_eq!(parse_uuid(text).unwrap().to_string(), text);
        assert_eq!(
            parse_uuid("A0EEBC999C0B4EF8BB6D6BB9BD380A11")
                .unwrap()
                .to_string(),
            text
        );
        assert!(parse_uuid("not-a-uuid").is_err());
    }

    /// Big-endian 32-bit words, as the binary format writes array headers.
    fn words(words: &[i32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn arrays_round_trip_through_postgres_types() {
        // The bytes PostgreSQL's `array_send` gives for '{1,NULL,3}'::int4[].
        let value = PgValue::ArrayInt32(vec![Some(1), None, Some(3)]);
        let mut out = BytesMut::new();
        encode(&value, &Type::INT4_ARRAY, &mut out).unwrap();
        assert_eq!(&out[..], words(&[1, 1, 23, 3, 1, 4, 1, -1, 4, 3]));
        let decoded = decode(&Type::INT4_ARRAY, &PgType::ArrayInt32, Some(&out));
        assert_eq!(decoded.unwrap(), value);
        for (value, ty, pg_type) in [
            (
                PgValue::ArrayStr(vec![Some("a".into()), Some("b c".into()), None]),
                Type::TEXT_ARRAY,
                PgType::ArrayStr,
            ),
            (
                PgValue::ArrayDecimal(vec![Some("1.50".into()), None, Some("NaN".into())]),
                Type::NUMERIC_ARRAY,
                PgType::ArrayDecimal,
            ),
            (
                PgValue::ArrayInt64(vec![Some(i64::MAX), None]),
                Type::INT8_ARRAY,
                PgType::ArrayInt64,
            ),
            (
                PgValue::ArrayInt32(vec![]),
                Type::INT4_ARRAY,
                PgType::ArrayInt32,
            ),
        ] {
            let mut out = BytesMut::new();
            encode(&value, &ty, &mut out).unwrap();
            assert_eq!(decode(&ty, &pg_type, Some(&out)).unwrap(), value, "{ty}");
        }
        // `array-int32` widens into `int8[]`.
        let mut out = BytesMut::new();
        encode(
            &PgValue::ArrayInt32(vec![Some(-1)]),
            &Type::INT8_ARRAY,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            decode(&Type::INT8_ARRAY, &PgType::ArrayInt64, Some(&out)).unwrap(),
            PgValue::ArrayInt64(vec![Some(-1)])
        );
        // An element's error is the parameter's message, as before.
        let bad = PgValue::ArrayDecimal(vec![Some("x".into())]);
        assert_eq!(
            encode(&bad, &Type::NUMERIC_ARRAY, &mut BytesMut::new()).err(),
            Some("\"x\" is not a decimal number".to_owned())
        );
        // '{{1,2},{3,4}}'::int4[] has no WIT value.
        let two_dimensions = words(&[2, 0, 23, 2, 1, 2, 1, 4, 1, 4, 2, 4, 3, 4, 4]);
        let refused = decode(
            &Type::INT4_ARRAY,
            &PgType::ArrayInt32,
            Some(&two_dimensions),
        );
        assert_eq!(
            refused.unwrap_err().to_string(),
            "only one-dimensional arrays have a WIT value"
        );
    }

    /// The values for which the kept hand-written code differs from the postgres-types
    /// impls it was measured against (chrono 0.4, serde_json 1, rust_decimal 1.43, uuid 1).
    #[test]
    fn values_the_library_impls_would_change_still_convert() {
        // Years PostgreSQL and the WIT tuples hold, past chrono's 262142-12-31.
        for date in [(270_000, 1, 1), (5_874_897, 12, 31)] {
            assert_eq!(date_from_days(pg_days(date).unwrap()).unwrap(), date);
        }
        let datetime = (294_276, 12, 31, 23, 59, 59, 999_999_000);
        let micros = datetime_micros(datetime).unwrap();
        assert_eq!(datetime_from_micros(micros).unwrap(), datetime);
        // Digits rust_decimal rounds away (34 fractional ones; a numeric(40,30) zero).
        for text in [
            "0.1234567890123456789012345678901234",
            "0.000000000000000000000000000000",
        ] {
            let mut buf = BytesMut::new();
            numeric_to_sql(text, &mut buf).unwrap();
            assert_eq!(numeric_to_string(&buf).unwrap(), text);
        }
        // JSON as the server wrote it, not re-serialized.
        let jsonb = b"\x01{\"b\": 1, \"a\": [1, true, null]}";
        assert_eq!(
            decode(&Type::JSONB, &PgType::Jsonb, Some(jsonb)).unwrap(),
            PgValue::Jsonb(jsonb[1..].to_vec())
        );
        // UUID spellings `Uuid::parse_str` refuses, and one it takes that is refused here.
        let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for text in [
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
            "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert_eq!(parse_uuid(text).unwrap().to_string(), uuid, "{text}");
        }
        assert!(parse_uuid(&format!("urn:uuid:{uuid}")).is_err());
        let raw = parse_uuid(uuid).unwrap().into_bytes();
        assert_eq!(
            decode(&Type::UUID, &PgType::Uuid, Some(&raw)).unwrap(),
            PgValue::Uuid(uuid.to_owned())
        );
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
}

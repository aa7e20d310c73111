//! `rdbms-v5`: outbound PostgreSQL and MySQL through the Spin Rust SDK 5.2 (WASI 0.2,
//! `#[http_component]`): `spin_sdk::pg` (`fermyon:spin/postgres@2.0.0`), `pg3`
//! (`spin:postgres/postgres@3.0.0`), `pg4` (`spin:postgres/postgres@4.0.0`) and `mysql`
//! (`fermyon:spin/mysql@2.0.0`).
//!
//! Same conventions as the `caps-*` guests: `200` with the body below, or `500` with
//! `<step>: <reason>` at the first failed check; query values are `%XX`-decoded.
//! `iface` is one of `pg2`, `pg3`, `pg4`, `mysql`; `address` is the connection string.
//!
//! - `GET /open?iface=I&address=A`: `opened`, or `error: <Debug of the WIT error>`
//!   (`200`).
//! - `POST /write?iface=I&address=A&table=T`: inserts row `id = 1` of the documented
//!   values (see `tests/programs/README.md`, "The rdbms guests") into the columns the
//!   interface can write, through a parameterised INSERT. `written`.
//! - `GET /read?iface=I&address=A&table=T`: selects `id`, the interface's columns and
//!   the column `d` (a type no WIT value has) ordered by `id`, and checks the column
//!   types and both rows exactly: row 1 as `/write` wrote it with `d` null, row 2 as
//!   the test inserted it with `d` `unsupported`. `ok`.
//! - `GET /error?iface=I&address=A`: `SELECT * FROM wisp_no_such_table`;
//!   `error: <Debug of the WIT error>` (`200`), or `500` if it succeeded.
//! - `GET /reuse?iface=I&address=A`: opens, reads the server's connection id
//!   (`pg_backend_pid()` / `CONNECTION_ID()`), drops the connection, opens again and
//!   reads it again: `same <id>` or `different <id1> <id2>`.
//! - `GET /tx?iface=I&address=A`: like `/reuse`, but the first connection is dropped
//!   with a transaction open (`BEGIN` without `COMMIT`), so it must not be reused:
//!   `different <id1> <id2>` (or `same <id>`).

use caps_common::{Check, Query, Reply, ensure, expect_eq, failed};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

/// The text value every guest and the test use (non-ASCII and a quote on purpose).
const TEXT: &str = "héllo ✓ \"q\"";
/// 2024-02-29 13:45:30 UTC in Unix seconds.
const SECONDS: i64 = 1_709_214_330;

#[http_component]
fn handle(request: Request) -> Response {
    let method = request.method().to_string();
    let path = request
        .header("spin-path-info")
        .and_then(|value| value.as_str())
        .unwrap_or(request.path())
        .to_owned();
    let query = Query::parse(request.query());
    let reply = route(&method, &path, &query).unwrap_or_else(|failure| Reply::new(500, failure));
    Response::builder()
        .status(reply.status)
        .header("content-type", "text/plain")
        .body(reply.body)
        .build()
}

fn route(method: &str, path: &str, query: &Query) -> Check {
    let iface = query.get("iface")?;
    let address = query.get("address")?;
    match (method, path, iface) {
        ("GET", "/open", "pg2") => Ok(pg2::open(address)),
        ("GET", "/open", "pg3") => Ok(pg3::open(address)),
        ("GET", "/open", "pg4") => Ok(pg4::open(address)),
        ("GET", "/open", "mysql") => Ok(mysql::open(address)),
        ("POST", "/write", "pg2") => pg2::write(address, query.get("table")?),
        ("POST", "/write", "pg3") => pg3::write(address, query.get("table")?),
        ("POST", "/write", "pg4") => pg4::write(address, query.get("table")?),
        ("POST", "/write", "mysql") => mysql::write(address, query.get("table")?),
        ("GET", "/read", "pg2") => pg2::read(address, query.get("table")?),
        ("GET", "/read", "pg3") => pg3::read(address, query.get("table")?),
        ("GET", "/read", "pg4") => pg4::read(address, query.get("table")?),
        ("GET", "/read", "mysql") => mysql::read(address, query.get("table")?),
        ("GET", "/error", "pg2") => pg2::error(address),
        ("GET", "/error", "pg3") => pg3::error(address),
        ("GET", "/error", "pg4") => pg4::error(address),
        ("GET", "/error", "mysql") => mysql::error(address),
        ("GET", "/reuse", "pg2") => pg2::reuse(address),
        ("GET", "/reuse", "pg3") => pg3::reuse(address),
        ("GET", "/reuse", "pg4") => pg4::reuse(address),
        ("GET", "/reuse", "mysql") => mysql::reuse(address),
        ("GET", "/tx", "pg2") => pg2::open_transaction(address),
        ("GET", "/tx", "pg3") => pg3::open_transaction(address),
        ("GET", "/tx", "pg4") => pg4::open_transaction(address),
        ("GET", "/tx", "mysql") => mysql::open_transaction(address),
        _ => Ok(Reply::new(
            404,
            format!("no route {method} {path} for {iface}"),
        )),
    }
}

/// `INSERT INTO table (id, columns) VALUES ($1, ...)` (or `?` placeholders).
fn insert_sql(table: &str, columns: &[&str], dollar: bool) -> String {
    let placeholders: Vec<String> = (1..=columns.len() + 1)
        .map(|i| {
            if dollar {
                format!("${i}")
            } else {
                "?".to_owned()
            }
        })
        .collect();
    format!(
        "INSERT INTO {table} (id, {}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    )
}

fn select_sql(table: &str, columns: &[&str]) -> String {
    format!(
        "SELECT id, {}, d FROM {table} ORDER BY id",
        columns.join(", ")
    )
}

/// Compares by `Debug`: the generated WIT types implement it but not `PartialEq`, and
/// `Debug` of floats is exact.
fn same<T: std::fmt::Debug>(step: &str, got: &T, want: &T) -> Check<()> {
    let (got, want) = (format!("{got:?}"), format!("{want:?}"));
    ensure(step, got == want, || format!("got {got}, want {want}"))
}

/// The body of `/reuse` given the two connection ids.
fn reuse_reply(first: String, second: String) -> Reply {
    if first == second {
        Reply::ok(format!("same {first}"))
    } else {
        Reply::ok(format!("different {first} {second}"))
    }
}

/// The PostgreSQL interfaces share the table layout; each reads and writes the subset
/// of columns its WIT can express. `$columns`, `$params` (values to write), `$types`
/// and `$values` (what reading a row gives) are in the same order.
macro_rules! postgres_iface {
    ($module:ident, $sdk:path, $columns:expr, $params:expr, $types:expr, $values:expr, $other_type:expr, $other_value:expr) => {
        mod $module {
            use super::*;
            #[allow(unused_imports)]
            use db::{DbDataType as T, DbValue as D, ParameterValue as P};
            use $sdk as db;

            fn columns() -> Vec<&'static str> {
                $columns
            }

            pub fn open(address: &str) -> Reply {
                match db::Connection::open(address) {
                    Ok(_) => Reply::ok("opened"),
                    Err(e) => Reply::ok(format!("error: {e:?}")),
                }
            }

            pub fn write(address: &str, table: &str) -> Check {
                let conn = db::Connection::open(address).map_err(failed("open"))?;
                let mut params = vec![P::Int32(1)];
                params.extend($params);
                let changed = conn
                    .execute(&insert_sql(table, &columns(), true), &params)
                    .map_err(failed("insert"))?;
                expect_eq("rows inserted", changed, 1)?;
                Ok(Reply::ok("written"))
            }

            pub fn read(address: &str, table: &str) -> Check {
                let conn = db::Connection::open(address).map_err(failed("open"))?;
                let result = conn
                    .query(&select_sql(table, &columns()), &[])
                    .map_err(failed("select"))?;
                let mut names = vec!["id"];
                names.extend(columns());
                names.push("d");
                let got_names: Vec<&str> = result.columns.iter().map(|c| c.name.as_str()).collect();
                expect_eq("column names", got_names, names)?;
                let mut types = vec![T::Int32];
                types.extend($types);
                types.push($other_type);
                let got_types: Vec<_> =
                    result.columns.iter().map(|c| c.data_type.clone()).collect();
                same("column types", &got_types, &types)?;
                expect_eq("row count", result.rows.len(), 2)?;
                for (index, row) in result.rows.iter().enumerate() {
                    let id = index as i32 + 1;
                    let mut want = vec![D::Int32(id)];
                    want.extend($values);
                    want.push(if id == 1 { D::DbNull } else { $other_value });
                    same(&format!("row {id}"), row, &want)?;
                }
                Ok(Reply::ok("ok"))
            }

            pub fn error(address: &str) -> Check {
                let conn = db::Connection::open(address).map_err(failed("open"))?;
                match conn.query("SELECT * FROM wisp_no_such_table", &[]) {
                    Ok(_) => Err("query: unexpectedly succeeded".to_owned()),
                    Err(e) => Ok(Reply::ok(format!("error: {e:?}"))),
                }
            }

            fn backend_id(address: &str) -> Check<String> {
                let conn = db::Connection::open(address).map_err(failed("open"))?;
                let result = conn
                    .query("SELECT pg_backend_pid()", &[])
                    .map_err(failed("pg_backend_pid"))?;
                match result.rows.first().and_then(|row| row.first()) {
                    Some(D::Int32(pid)) => Ok(pid.to_string()),
                    other => Err(format!("pg_backend_pid: got {other:?}")),
                }
            }

            pub fn open_transaction(address: &str) -> Check {
                let first = {
                    let conn = db::Connection::open(address).map_err(failed("open"))?;
                    conn.execute("BEGIN", &[]).map_err(failed("begin"))?;
                    let result = conn
                        .query("SELECT pg_backend_pid()", &[])
                        .map_err(failed("pg_backend_pid"))?;
                    match result.rows.first().and_then(|row| row.first()) {
                        Some(D::Int32(pid)) => pid.to_string(),
                        other => return Err(format!("pg_backend_pid: got {other:?}")),
                    }
                };
                Ok(reuse_reply(first, backend_id(address)?))
            }

            pub fn reuse(address: &str) -> Check {
                let first = backend_id(address)?;
                let second = backend_id(address)?;
                Ok(reuse_reply(first, second))
            }
        }
    };
}

postgres_iface!(
    pg2,
    spin_sdk::pg,
    vec!["b", "c", "i16", "i32", "i64", "f32", "f64", "s", "bin", "n"],
    vec![
        P::Boolean(true),
        P::Int8(120),
        P::Int16(i16::MIN),
        P::Int32(i32::MAX),
        P::Int64(i64::MIN),
        P::Floating32(1.5),
        P::Floating64(-0.25),
        P::Str(TEXT.to_owned()),
        P::Binary(vec![0, 255, 16]),
        P::DbNull,
    ],
    vec![
        T::Boolean,
        T::Int8,
        T::Int16,
        T::Int32,
        T::Int64,
        T::Floating32,
        T::Floating64,
        T::Str,
        T::Binary,
        T::Int32,
    ],
    vec![
        D::Boolean(true),
        D::Int8(120),
        D::Int16(i16::MIN),
        D::Int32(i32::MAX),
        D::Int64(i64::MIN),
        D::Floating32(1.5),
        D::Floating64(-0.25),
        D::Str(TEXT.to_owned()),
        D::Binary(vec![0, 255, 16]),
        D::DbNull,
    ],
    T::Other,
    D::Unsupported
);

postgres_iface!(
    pg3,
    spin_sdk::pg3,
    vec![
        "b", "c", "i16", "i32", "i64", "f32", "f64", "s", "bin", "n", "dt", "tm", "ts", "tz",
        "secs",
    ],
    vec![
        P::Boolean(true),
        P::Int8(120),
        P::Int16(i16::MIN),
        P::Int32(i32::MAX),
        P::Int64(i64::MIN),
        P::Floating32(1.5),
        P::Floating64(-0.25),
        P::Str(TEXT.to_owned()),
        P::Binary(vec![0, 255, 16]),
        P::DbNull,
        P::Date((2024, 2, 29)),
        P::Time((13, 45, 30, 123_456_000)),
        P::Datetime((2024, 2, 29, 13, 45, 30, 123_456_000)),
        P::Timestamp(SECONDS),
        P::Timestamp(SECONDS),
    ],
    vec![
        T::Boolean,
        T::Int8,
        T::Int16,
        T::Int32,
        T::Int64,
        T::Floating32,
        T::Floating64,
        T::Str,
        T::Binary,
        T::Int32,
        T::Date,
        T::Time,
        T::Datetime,
        T::Timestamp,
        T::Int64,
    ],
    vec![
        D::Boolean(true),
        D::Int8(120),
        D::Int16(i16::MIN),
        D::Int32(i32::MAX),
        D::Int64(i64::MIN),
        D::Floating32(1.5),
        D::Floating64(-0.25),
        D::Str(TEXT.to_owned()),
        D::Binary(vec![0, 255, 16]),
        D::DbNull,
        D::Date((2024, 2, 29)),
        D::Time((13, 45, 30, 123_456_000)),
        D::Datetime((2024, 2, 29, 13, 45, 30, 123_456_000)),
        D::Datetime((2024, 2, 29, 13, 45, 30, 0)),
        D::Int64(SECONDS),
    ],
    T::Other,
    D::Unsupported
);

postgres_iface!(
    pg4,
    spin_sdk::pg4,
    vec![
        "b", "c", "i16", "i32", "i64", "f32", "f64", "s", "bin", "n", "dt", "tm", "ts", "tz",
        "secs", "u", "j", "dec", "r4", "r8", "rn", "a4", "a8", "ad", "ast", "iv",
    ],
    vec![
        P::Boolean(true),
        P::Int8(120),
        P::Int16(i16::MIN),
        P::Int32(i32::MAX),
        P::Int64(i64::MIN),
        P::Floating32(1.5),
        P::Floating64(-0.25),
        P::Str(TEXT.to_owned()),
        P::Binary(vec![0, 255, 16]),
        P::DbNull,
        P::Date((2024, 2, 29)),
        P::Time((13, 45, 30, 123_456_000)),
        P::Datetime((2024, 2, 29, 13, 45, 30, 123_456_000)),
        P::Timestamp(SECONDS),
        P::Timestamp(SECONDS),
        P::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_owned()),
        P::Jsonb(br#"{"a":[1,true,null]}"#.to_vec()),
        P::Decimal("-12345.678900".to_owned()),
        P::RangeInt32((
            Some((1, db::RangeBoundKind::Inclusive)),
            Some((10, db::RangeBoundKind::Exclusive)),
        )),
        P::RangeInt64((Some((-5, db::RangeBoundKind::Inclusive)), None)),
        P::RangeDecimal((
            Some(("0.5".to_owned(), db::RangeBoundKind::Exclusive)),
            Some(("2.25".to_owned(), db::RangeBoundKind::Inclusive)),
        )),
        P::ArrayInt32(vec![Some(1), None, Some(3)]),
        P::ArrayInt64(vec![Some(i64::MAX)]),
        P::ArrayDecimal(vec![Some("1.50".to_owned()), None]),
        P::ArrayStr(vec![Some("a".to_owned()), Some("b c".to_owned()), None]),
        P::Interval(db::Interval {
            micros: 14_706_000_007,
            days: 3,
            months: 14,
        }),
    ],
    vec![
        T::Boolean,
        T::Int8,
        T::Int16,
        T::Int32,
        T::Int64,
        T::Floating32,
        T::Floating64,
        T::Str,
        T::Binary,
        T::Int32,
        T::Date,
        T::Time,
        T::Datetime,
        T::Timestamp,
        T::Int64,
        T::Uuid,
        T::Jsonb,
        T::Decimal,
        T::RangeInt32,
        T::RangeInt64,
        T::RangeDecimal,
        T::ArrayInt32,
        T::ArrayInt64,
        T::ArrayDecimal,
        T::ArrayStr,
        T::Interval,
    ],
    vec![
        D::Boolean(true),
        D::Int8(120),
        D::Int16(i16::MIN),
        D::Int32(i32::MAX),
        D::Int64(i64::MIN),
        D::Floating32(1.5),
        D::Floating64(-0.25),
        D::Str(TEXT.to_owned()),
        D::Binary(vec![0, 255, 16]),
        D::DbNull,
        D::Date((2024, 2, 29)),
        D::Time((13, 45, 30, 123_456_000)),
        D::Datetime((2024, 2, 29, 13, 45, 30, 123_456_000)),
        D::Datetime((2024, 2, 29, 13, 45, 30, 0)),
        D::Int64(SECONDS),
        D::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_owned()),
        D::Jsonb(br#"{"a": [1, true, null]}"#.to_vec()),
        D::Decimal("-12345.678900".to_owned()),
        D::RangeInt32((
            Some((1, db::RangeBoundKind::Inclusive)),
            Some((10, db::RangeBoundKind::Exclusive)),
        )),
        D::RangeInt64((Some((-5, db::RangeBoundKind::Inclusive)), None)),
        D::RangeDecimal((
            Some(("0.5".to_owned(), db::RangeBoundKind::Exclusive)),
            Some(("2.25".to_owned(), db::RangeBoundKind::Inclusive)),
        )),
        D::ArrayInt32(vec![Some(1), None, Some(3)]),
        D::ArrayInt64(vec![Some(i64::MAX)]),
        D::ArrayDecimal(vec![Some("1.50".to_owned()), None]),
        D::ArrayStr(vec![Some("a".to_owned()), Some("b c".to_owned()), None]),
        D::Interval(db::Interval {
            micros: 14_706_000_007,
            days: 3,
            months: 14,
        }),
    ],
    T::Other("inet".to_owned()),
    // inet 10.0.0.1 in binary format: family, bits, is_cidr, length, address.
    D::Unsupported(vec![2, 32, 0, 4, 10, 0, 0, 1])
);

/// `fermyon:spin/mysql@2.0.0`.
mod mysql {
    use super::*;
    use spin_sdk::mysql::{self as db, DbDataType as T, DbValue as D, ParameterValue as P};

    const COLUMNS: &[&str] = &[
        "b", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64", "s", "bin", "n",
        "dm", "dt",
    ];

    pub fn open(address: &str) -> Reply {
        match db::Connection::open(address) {
            Ok(_) => Reply::ok("opened"),
            Err(e) => Reply::ok(format!("error: {e:?}")),
        }
    }

    pub fn write(address: &str, table: &str) -> Check {
        let conn = db::Connection::open(address).map_err(failed("open"))?;
        let params = [
            P::Int32(1),
            P::Boolean(true),
            P::Int8(i8::MIN),
            P::Uint8(u8::MAX),
            P::Int16(i16::MIN),
            P::Uint16(u16::MAX),
            P::Int32(i32::MIN),
            P::Uint32(u32::MAX),
            P::Int64(i64::MAX),
            P::Uint64(u64::MAX),
            P::Floating32(1.5),
            P::Floating64(-0.25),
            P::Str(TEXT.to_owned()),
            P::Binary(vec![0, 255, 16]),
            P::DbNull,
            P::Str("-12.345".to_owned()),
            P::Str("2024-02-29 13:45:30.123456".to_owned()),
        ];
        conn.execute(&insert_sql(table, COLUMNS, false), &params)
            .map_err(failed("insert"))?;
        Ok(Reply::ok("written"))
    }

    pub fn read(address: &str, table: &str) -> Check {
        let conn = db::Connection::open(address).map_err(failed("open"))?;
        let result = conn
            .query(&select_sql(table, COLUMNS), &[])
            .map_err(failed("select"))?;
        let got_types: Vec<_> = result.columns.iter().map(|c| c.data_type).collect();
        same(
            "column types",
            &got_types,
            &vec![
                T::Int32,
                T::Boolean,
                T::Int8,
                T::Uint8,
                T::Int16,
                T::Uint16,
                T::Int32,
                T::Uint32,
                T::Int64,
                T::Uint64,
                T::Floating32,
                T::Floating64,
                T::Str,
                T::Binary,
                T::Int32,
                T::Str,
                T::Str,
                T::Other,
            ],
        )?;
        expect_eq("row count", result.rows.len(), 2)?;
        for (index, row) in result.rows.iter().enumerate() {
            let id = index as i32 + 1;
            let want = vec![
                D::Int32(id),
                D::Boolean(true),
                D::Int8(i8::MIN),
                D::Uint8(u8::MAX),
                D::Int16(i16::MIN),
                D::Uint16(u16::MAX),
                D::Int32(i32::MIN),
                D::Uint32(u32::MAX),
                D::Int64(i64::MAX),
                D::Uint64(u64::MAX),
                D::Floating32(1.5),
                D::Floating64(-0.25),
                D::Str(TEXT.to_owned()),
                D::Binary(vec![0, 255, 16]),
                D::DbNull,
                D::Str("-12.345".to_owned()),
                D::Str("2024-02-29 13:45:30.123456".to_owned()),
                if id == 1 { D::DbNull } else { D::Unsupported },
            ];
            same(&format!("row {id}"), row, &want)?;
        }
        Ok(Reply::ok("ok"))
    }

    pub fn error(address: &str) -> Check {
        let conn = db::Connection::open(address).map_err(failed("open"))?;
        match conn.query("SELECT * FROM wisp_no_such_table", &[]) {
            Ok(_) => Err("query: unexpectedly succeeded".to_owned()),
            Err(e) => Ok(Reply::ok(format!("error: {e:?}"))),
        }
    }

    fn connection_id(address: &str) -> Check<String> {
        let conn = db::Connection::open(address).map_err(failed("open"))?;
        let result = conn
            .query("SELECT CONNECTION_ID()", &[])
            .map_err(failed("CONNECTION_ID"))?;
        match result.rows.first().and_then(|row| row.first()) {
            Some(D::Uint64(id)) => Ok(id.to_string()),
            Some(D::Uint32(id)) => Ok(id.to_string()),
            Some(D::Int64(id)) => Ok(id.to_string()),
            other => Err(format!("CONNECTION_ID: got {other:?}")),
        }
    }

    pub fn open_transaction(address: &str) -> Check {
        let first = {
            let conn = db::Connection::open(address).map_err(failed("open"))?;
            conn.execute("START TRANSACTION", &[])
                .map_err(failed("start transaction"))?;
            let result = conn
                .query("SELECT CONNECTION_ID()", &[])
                .map_err(failed("CONNECTION_ID"))?;
            match result.rows.first().and_then(|row| row.first()) {
                Some(D::Uint64(id)) => id.to_string(),
                Some(D::Uint32(id)) => id.to_string(),
                other => return Err(format!("CONNECTION_ID: got {other:?}")),
            }
        };
        Ok(reuse_reply(first, connection_id(address)?))
    }

    pub fn reuse(address: &str) -> Check {
        let first = connection_id(address)?;
        let second = connection_id(address)?;
        Ok(reuse_reply(first, second))
    }
}

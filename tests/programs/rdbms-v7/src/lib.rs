//! `rdbms-v7`: outbound PostgreSQL and MySQL through the Spin Rust SDK 7.0 (WASI 0.3,
//! `#[http_service]`): `spin_sdk::pg` (`spin:postgres/postgres@4.2.0`: `open-async`,
//! `query-async` with its row stream and result future, `execute-async`) and
//! `spin_sdk::mysql` (`spin:mysql/mysql@3.0.0`, async, `query` streams its rows).
//!
//! The routes, table layout and values are those of `rdbms-v5` (see its `//!` header
//! and `tests/programs/README.md`), with `iface` `pg` (the `pg4` column set) or
//! `mysql`. Rows are read one at a time from the stream, then the result future is
//! awaited.
//!
//! - `GET /stream?iface=I&address=A&n=N`: streams the integers 1..=N (`generate_series`
//!   / a recursive CTE) and checks their count and sum, then reads only 3 rows of a
//!   second such query and drops it unread, then runs `SELECT 1` on the same
//!   connection: `rows N sum S, partial read ok`.
//! - `POST /ca-root?iface=pg&address=A` with a PEM CA certificate as the body: opens the
//!   connection with it as `OpenOptions::ca_root` (`set-ca-root`) and answers
//!   `ssl true` when `pg_stat_ssl` says the session is encrypted, else
//!   `error: <Debug of the error>`.
//! - `GET /cipher?iface=mysql&address=A`: the session's TLS cipher (`Ssl_cipher`, empty
//!   on plain TCP) as `cipher <name>`, or `error: <Debug of the error>` when `open` fails.

use bytes::Bytes;
use caps_common::{Check, Query, Reply, ensure, expect_eq, failed};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, HeaderMap, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

/// The text value every guest and the test use (non-ASCII and a quote on purpose).
const TEXT: &str = "héllo ✓ \"q\"";
/// 2024-02-29 13:45:30 UTC in Unix seconds.
const SECONDS: i64 = 1_709_214_330;

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let method = request.method().as_str().to_owned();
    let path = request
        .headers()
        .get("spin-path-info")
        .and_then(|value| value.to_str().ok())
        .unwrap_or(request.uri().path())
        .to_owned();
    let query = Query::parse(request.uri().query().unwrap_or_default());
    let reply = match request.into_body().bytes().await {
        Ok(body) if path == "/ca-root" => match String::from_utf8(body.to_vec()) {
            Ok(pem) => pg::ca_root(query.get("address").unwrap_or_default(), pem).await,
            Err(_) => Err("the body is not a PEM certificate".to_owned()),
        },
        Ok(_) => route(&method, &path, &query).await,
        Err(e) => Err(format!("read request body: {e:?}")),
    };
    let reply = reply.unwrap_or_else(|failure| Reply::new(500, failure));
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, FullBody::new(Bytes::from(reply.body)))
}

async fn route(method: &str, path: &str, query: &Query) -> Check {
    let iface = query.get("iface")?;
    let address = query.get("address")?;
    match (method, path, iface) {
        ("GET", "/open", "pg") => Ok(pg::open(address).await),
        ("GET", "/open", "mysql") => Ok(mysql::open(address).await),
        ("POST", "/write", "pg") => pg::write(address, query.get("table")?).await,
        ("POST", "/write", "mysql") => mysql::write(address, query.get("table")?).await,
        ("GET", "/read", "pg") => pg::read(address, query.get("table")?).await,
        ("GET", "/read", "mysql") => mysql::read(address, query.get("table")?).await,
        ("GET", "/error", "pg") => pg::error(address).await,
        ("GET", "/error", "mysql") => mysql::error(address).await,
        ("GET", "/reuse", "pg") => pg::reuse(address).await,
        ("GET", "/cipher", "mysql") => mysql::cipher(address).await,
        ("GET", "/reuse", "mysql") => mysql::reuse(address).await,
        ("GET", "/stream", iface) => {
            let n = query.get("n")?;
            let n: i64 = n
                .parse()
                .map_err(|_| format!("query: n={n:?} is not a count"))?;
            match iface {
                "pg" => pg::stream(address, n).await,
                "mysql" => mysql::stream(address, n).await,
                _ => Ok(Reply::new(404, format!("no /stream for {iface}"))),
            }
        }
        _ => Ok(Reply::new(
            404,
            format!("no route {method} {path} for {iface}"),
        )),
    }
}

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

/// Compares by `Debug` (the generated types do not implement `PartialEq`).
fn same<T: std::fmt::Debug>(step: &str, got: &T, want: &T) -> Check<()> {
    let (got, want) = (format!("{got:?}"), format!("{want:?}"));
    ensure(step, got == want, || format!("got {got}, want {want}"))
}

fn reuse_reply(first: String, second: String) -> Reply {
    if first == second {
        Reply::ok(format!("same {first}"))
    } else {
        Reply::ok(format!("different {first} {second}"))
    }
}

/// `spin:postgres/postgres@4.2.0` through its async functions.
mod pg {
    use super::*;
    use spin_sdk::pg::{
        self as db, DbDataType as T, DbValue as D, Interval, ParameterValue as P,
        RangeBoundKind as K,
    };

    const COLUMNS: &[&str] = &[
        "b", "c", "i16", "i32", "i64", "f32", "f64", "s", "bin", "n", "dt", "tm", "ts", "tz",
        "secs", "u", "j", "dec", "r4", "r8", "rn", "a4", "a8", "ad", "ast", "iv",
    ];

    fn params() -> Vec<P> {
        vec![
            P::Int32(1),
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
            P::RangeInt32((Some((1, K::Inclusive)), Some((10, K::Exclusive)))),
            P::RangeInt64((Some((-5, K::Inclusive)), None)),
            P::RangeDecimal((
                Some(("0.5".to_owned(), K::Exclusive)),
                Some(("2.25".to_owned(), K::Inclusive)),
            )),
            P::ArrayInt32(vec![Some(1), None, Some(3)]),
            P::ArrayInt64(vec![Some(i64::MAX)]),
            P::ArrayDecimal(vec![Some("1.50".to_owned()), None]),
            P::ArrayStr(vec![Some("a".to_owned()), Some("b c".to_owned()), None]),
            P::Interval(Interval {
                micros: 14_706_000_007,
                days: 3,
                months: 14,
            }),
        ]
    }

    fn types() -> Vec<T> {
        vec![
            T::Int32,
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
            T::Other("inet".to_owned()),
        ]
    }

    fn row(id: i32) -> Vec<D> {
        vec![
            D::Int32(id),
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
            D::RangeInt32((Some((1, K::Inclusive)), Some((10, K::Exclusive)))),
            D::RangeInt64((Some((-5, K::Inclusive)), None)),
            D::RangeDecimal((
                Some(("0.5".to_owned(), K::Exclusive)),
                Some(("2.25".to_owned(), K::Inclusive)),
            )),
            D::ArrayInt32(vec![Some(1), None, Some(3)]),
            D::ArrayInt64(vec![Some(i64::MAX)]),
            D::ArrayDecimal(vec![Some("1.50".to_owned()), None]),
            D::ArrayStr(vec![Some("a".to_owned()), Some("b c".to_owned()), None]),
            D::Interval(Interval {
                micros: 14_706_000_007,
                days: 3,
                months: 14,
            }),
            if id == 1 {
                D::DbNull
            } else {
                // inet 10.0.0.1 in binary format: family, bits, is_cidr, length, address.
                D::Unsupported(vec![2, 32, 0, 4, 10, 0, 0, 1])
            },
        ]
    }

    pub async fn open(address: &str) -> Reply {
        match db::Connection::open(address).await {
            Ok(_) => Reply::ok("opened"),
            Err(e) => Reply::ok(format!("error: {e:?}")),
        }
    }

    pub async fn write(address: &str, table: &str) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let changed = conn
            .execute(insert_sql(table, COLUMNS, true), params())
            .await
            .map_err(failed("insert"))?;
        expect_eq("rows inserted", changed, 1)?;
        Ok(Reply::ok("written"))
    }

    /// Runs `statement`, reading the rows one by one from the stream, then the
    /// result future: the column types and every row's values.
    async fn rows(conn: &db::Connection, statement: String) -> Check<(Vec<T>, Vec<Vec<D>>)> {
        let mut result = conn
            .query(statement, Vec::new())
            .await
            .map_err(failed("query"))?;
        let types: Vec<T> = result
            .columns()
            .iter()
            .map(|c| c.data_type.clone())
            .collect();
        let mut rows = Vec::new();
        while let Some(row) = result.next().await {
            rows.push((0..types.len()).map(|i| row[i].clone()).collect());
        }
        result.result().await.map_err(failed("query result"))?;
        Ok((types, rows))
    }

    pub async fn read(address: &str, table: &str) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let (got_types, got_rows) = rows(&conn, select_sql(table, COLUMNS)).await?;
        same("column types", &got_types, &types())?;
        expect_eq("row count", got_rows.len(), 2)?;
        for (index, got) in got_rows.iter().enumerate() {
            let id = index as i32 + 1;
            same(&format!("row {id}"), got, &row(id))?;
        }
        Ok(Reply::ok("ok"))
    }

    pub async fn error(address: &str) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        match conn
            .query("SELECT * FROM wisp_no_such_table", Vec::new())
            .await
        {
            Ok(_) => Err("query: unexpectedly succeeded".to_owned()),
            Err(e) => Ok(Reply::ok(format!("error: {e:?}"))),
        }
    }

    pub async fn ca_root(address: &str, pem: String) -> Check {
        let options = db::OpenOptions {
            ca_root: Some(db::Certificate::Text(pem)),
        };
        let conn = match db::Connection::open_with_options(address, options).await {
            Ok(conn) => conn,
            Err(e) => return Ok(Reply::ok(format!("error: {e:?}"))),
        };
        let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()".to_owned();
        let (_, got) = rows(&conn, sql).await?;
        match got.first().and_then(|row| row.first()) {
            Some(D::Boolean(ssl)) => Ok(Reply::ok(format!("ssl {ssl}"))),
            other => Err(format!("pg_stat_ssl: got {other:?}")),
        }
    }

    async fn backend_id(address: &str) -> Check<String> {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let (_, got) = rows(&conn, "SELECT pg_backend_pid()".to_owned()).await?;
        match got.first().and_then(|row| row.first()) {
            Some(D::Int32(pid)) => Ok(pid.to_string()),
            other => Err(format!("pg_backend_pid: got {other:?}")),
        }
    }

    pub async fn stream(address: &str, n: i64) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let series = format!("SELECT n::int8 FROM generate_series(1, {n}) AS n");
        let mut result = conn
            .query(series.clone(), Vec::new())
            .await
            .map_err(failed("series"))?;
        let (mut count, mut sum) = (0i64, 0i64);
        while let Some(row) = result.next().await {
            match &row[0] {
                D::Int64(v) => sum += v,
                other => return Err(format!("series row: got {other:?}")),
            }
            count += 1;
        }
        result.result().await.map_err(failed("series result"))?;
        expect_eq("series count", count, n)?;
        expect_eq("series sum", sum, n * (n + 1) / 2)?;
        let mut partial = conn
            .query(series, Vec::new())
            .await
            .map_err(failed("partial"))?;
        for _ in 0..3 {
            ensure("partial read", partial.next().await.is_some(), || {
                "the stream ended early".to_owned()
            })?;
        }
        drop(partial);
        let (_, after) = rows(&conn, "SELECT 1::int4".to_owned()).await?;
        same("after partial read", &after, &vec![vec![D::Int32(1)]])?;
        Ok(Reply::ok(format!(
            "rows {count} sum {sum}, partial read ok"
        )))
    }

    pub async fn reuse(address: &str) -> Check {
        let first = backend_id(address).await?;
        let second = backend_id(address).await?;
        Ok(reuse_reply(first, second))
    }
}

/// `spin:mysql/mysql@3.0.0`.
mod mysql {
    use super::*;
    use spin_sdk::mysql::{self as db, DbDataType as T, DbValue as D, ParameterValue as P};

    const COLUMNS: &[&str] = &[
        "b", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64", "s", "bin", "n",
        "dm", "dt",
    ];

    fn row(id: i32) -> Vec<D> {
        vec![
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
        ]
    }

    pub async fn open(address: &str) -> Reply {
        match db::Connection::open(address).await {
            Ok(_) => Reply::ok("opened"),
            Err(e) => Reply::ok(format!("error: {e:?}")),
        }
    }

    pub async fn write(address: &str, table: &str) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let params = vec![
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
        conn.execute(insert_sql(table, COLUMNS, false), params)
            .await
            .map_err(failed("insert"))?;
        Ok(Reply::ok("written"))
    }

    async fn rows(conn: &db::Connection, statement: String) -> Check<(Vec<T>, Vec<Vec<D>>)> {
        let mut result = conn
            .query(statement, Vec::new())
            .await
            .map_err(failed("query"))?;
        let types: Vec<T> = result.columns().iter().map(|c| c.data_type).collect();
        let mut rows = Vec::new();
        while let Some(row) = result.next().await {
            rows.push((0..types.len()).map(|i| row[i].clone()).collect());
        }
        result.result().await.map_err(failed("query result"))?;
        Ok((types, rows))
    }

    pub async fn read(address: &str, table: &str) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let (got_types, got_rows) = rows(&conn, select_sql(table, COLUMNS)).await?;
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
        expect_eq("row count", got_rows.len(), 2)?;
        for (index, got) in got_rows.iter().enumerate() {
            let id = index as i32 + 1;
            same(&format!("row {id}"), got, &row(id))?;
        }
        Ok(Reply::ok("ok"))
    }

    pub async fn error(address: &str) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        match conn
            .query("SELECT * FROM wisp_no_such_table", Vec::new())
            .await
        {
            Ok(_) => Err("query: unexpectedly succeeded".to_owned()),
            Err(e) => Ok(Reply::ok(format!("error: {e:?}"))),
        }
    }

    pub async fn cipher(address: &str) -> Check {
        let conn = match db::Connection::open(address).await {
            Ok(conn) => conn,
            Err(e) => return Ok(Reply::ok(format!("error: {e:?}"))),
        };
        let sql = "SHOW SESSION STATUS LIKE 'Ssl_cipher'".to_owned();
        let (_, got) = rows(&conn, sql).await?;
        match got.first().and_then(|row| row.get(1)) {
            Some(D::Str(cipher)) => Ok(Reply::ok(format!("cipher {cipher}"))),
            Some(D::Binary(cipher)) => Ok(Reply::ok(format!(
                "cipher {}",
                String::from_utf8_lossy(cipher)
            ))),
            other => Err(format!("Ssl_cipher: got {other:?}")),
        }
    }

    async fn connection_id(address: &str) -> Check<String> {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let (_, got) = rows(&conn, "SELECT CONNECTION_ID()".to_owned()).await?;
        match got.first().and_then(|row| row.first()) {
            Some(D::Uint64(id)) => Ok(id.to_string()),
            Some(D::Uint32(id)) => Ok(id.to_string()),
            Some(D::Int64(id)) => Ok(id.to_string()),
            other => Err(format!("CONNECTION_ID: got {other:?}")),
        }
    }

    pub async fn stream(address: &str, n: i64) -> Check {
        let conn = db::Connection::open(address)
            .await
            .map_err(failed("open"))?;
        let series = "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) SELECT CAST(n AS SIGNED) FROM s";
        let mut result = conn
            .query(series, vec![P::Int64(n)])
            .await
            .map_err(failed("series"))?;
        let (mut count, mut sum) = (0i64, 0i64);
        while let Some(row) = result.next().await {
            match &row[0] {
                D::Int64(v) => sum += v,
                other => return Err(format!("series row: got {other:?}")),
            }
            count += 1;
        }
        result.result().await.map_err(failed("series result"))?;
        expect_eq("series count", count, n)?;
        expect_eq("series sum", sum, n * (n + 1) / 2)?;
        let mut partial = conn
            .query(series, vec![P::Int64(n)])
            .await
            .map_err(failed("partial"))?;
        for _ in 0..3 {
            ensure("partial read", partial.next().await.is_some(), || {
                "the stream ended early".to_owned()
            })?;
        }
        drop(partial);
        let (_, after) = rows(&conn, "SELECT 1".to_owned()).await?;
        same("after partial read", &after, &vec![vec![D::Int32(1)]])?;
        Ok(Reply::ok(format!(
            "rows {count} sum {sum}, partial read ok"
        )))
    }

    pub async fn reuse(address: &str) -> Check {
        let first = connection_id(address).await?;
        let second = connection_id(address).await?;
        Ok(reuse_reply(first, second))
    }
}

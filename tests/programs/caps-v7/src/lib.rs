//! `caps-v7`: Spin host capabilities used through the Spin Rust SDK 7.0
//! (WASI 0.3, `#[http_service]`), the way Spin apps use them.
//!
//! Same conventions as `caps-v5`: a check route answers `200` with the body
//! given below when every check passes, or `500` with `<step>: <reason>` at the
//! first failed one. Routes match the path relative to the component's route
//! (the `spin-path-info` header, else the request path). Query strings are
//! `k=v&k2=v2`, values `%XX`-decoded; a missing parameter is a `500`
//! `query: missing <name>`.
//!
//! - `GET /kv/check?store=L`: `spin:key-value/key-value@3.0.0` (async) on store
//!   `L`: set, get, exists, get/exists/delete of a missing key, `get-keys`
//!   read through its stream and result future, delete. `ok`.
//! - `GET /kv/open?store=L`: `opened`, or `error: <kind>` (`access-denied`,
//!   `no-such-store`, `store-table-full`, `other: <message>`), all `200`.
//! - `GET /kv/get?store=L&key=K`: `200` with the raw value, `404` `missing`,
//!   `500` `error: <kind>`.
//! - `PUT /kv/set?store=L&key=K`: stores the request body; `200` `stored`, or
//!   `500` `error: <kind>`.
//! - `GET /var?name=N`: `spin:variables/variables@3.0.0` (async); the value, or
//!   `error: <kind>: <message>` (`invalid-name`, `undefined`, `provider`,
//!   `other`), all `200`.
//! - `GET /sqlite/check?db=L`: `spin:sqlite/sqlite@3.1.0` through its async
//!   functions (`open-async`, `execute-async` with a row stream and result
//!   future, `last-insert-rowid-async`, `changes-async`, which is what
//!   spin-sdk 7's `sqlite` module calls): on a fresh table every value type
//!   round-trips exactly through a parameterised INSERT and SELECT; each
//!   INSERT has `changes` 1 and `last-insert-rowid` = the row's id; `SELEC 1`
//!   fails with `io` containing `syntax error`; a duplicate UNIQUE value fails
//!   with `io` containing `UNIQUE constraint failed`; the table is dropped.
//!   `ok`.
//! - `GET /redis/check?addr=A&prefix=P`: `spin:redis/redis@3.0.0` (async), the
//!   same checks as `caps-v5`'s route, writing `P:from-guest` =
//!   `written by caps-v7`. `ok <value of P:from-test>`.
//! - `GET /redis/open?addr=A`: `opened`, or `error: <Debug of the error>`.
//! - `GET /http?url=U[&method=M]`: one request through the WASI 0.3 client
//!   (`spin_sdk::http::send`, redirects not followed);
//!   `status <code>\nlocation: <value or ->\n\n<response body>`, or `200`
//!   `error: <wasi:http error-code>` such as `error: HttpRequestDenied`.

use bytes::Bytes;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{
    EmptyBody, FullBody, HeaderMap, HeaderValue, IntoResponse, Method, Request, StatusCode,
};
use spin_sdk::http_service;
use spin_sdk::key_value::{self, Store};
use spin_sdk::sqlite::{self, Connection, Value};
use spin_sdk::variables;
use spin_sdk::wasip3::http::types::ErrorCode;

use caps_common::{Check, Query, Reply, ensure, expect_eq, failed, unique_suffix};

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
        Ok(body) => route(&method, &path, &query, &body).await,
        Err(e) => Err(format!("read request body: {e:?}")),
    };
    let reply = reply.unwrap_or_else(|failure| Reply::new(500, failure));
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, FullBody::new(Bytes::from(reply.body)))
}

async fn route(method: &str, path: &str, query: &Query, body: &[u8]) -> Check {
    match (method, path) {
        ("GET", "/kv/check") => kv_check(query.get("store")?).await,
        ("GET", "/kv/open") => Ok(kv_open(query.get("store")?).await),
        ("GET", "/kv/get") => Ok(kv_get(query.get("store")?, query.get("key")?).await),
        ("PUT", "/kv/set") => Ok(kv_set(query.get("store")?, query.get("key")?, body).await),
        ("GET", "/var") => Ok(variable(query.get("name")?).await),
        ("GET", "/sqlite/check") => sqlite_check(query.get("db")?).await,
        ("GET", "/redis/check") => redis_check(query.get("addr")?, query.get("prefix")?).await,
        ("GET", "/redis/open") => Ok(
            match spin_sdk::redis::Connection::open(query.get("addr")?).await {
                Ok(_) => Reply::ok("opened"),
                Err(e) => Reply::ok(format!("error: {e:?}")),
            },
        ),
        ("GET", "/http") => {
            let method = query.get("method").unwrap_or("GET");
            http_once(query.get("url")?, method).await
        }
        _ => Ok(Reply::new(404, format!("no route {method} {path}"))),
    }
}

// ---------------------------------------------------------------------------
// spin:key-value/key-value@3.0.0

async fn kv_check(label: &str) -> Check {
    let store = Store::open(label)
        .await
        .map_err(|e| format!("open {label}: {}", kv_error(&e)))?;

    store.set("a", b"1").await.map_err(failed("set a"))?;
    let value = store.get("a").await.map_err(failed("get a"))?;
    expect_eq("get a", value, Some(b"1".to_vec()))?;
    expect_eq(
        "exists a",
        store.exists("a").await.map_err(failed("exists a"))?,
        true,
    )?;

    let missing = store
        .get("missing-key")
        .await
        .map_err(failed("get missing-key"))?;
    expect_eq("get missing-key", missing, None)?;
    let exists = store
        .exists("missing-key")
        .await
        .map_err(failed("exists missing-key"))?;
    expect_eq("exists missing-key", exists, false)?;
    store
        .delete("missing-key")
        .await
        .map_err(failed("delete missing-key"))?;

    store.set("b", b"2").await.map_err(failed("set b"))?;
    // `get-keys` returns a stream of keys and a future of the final result.
    let keys = store
        .get_keys()
        .await
        .collect()
        .await
        .map_err(failed("get-keys"))?;
    for key in ["a", "b"] {
        ensure("get-keys", keys.iter().any(|k| k == key), || {
            format!("{key:?} missing from {keys:?}")
        })?;
    }

    store.delete("a").await.map_err(failed("delete a"))?;
    let value = store.get("a").await.map_err(failed("get a"))?;
    expect_eq("get a after delete", value, None)?;
    store.delete("b").await.map_err(failed("delete b"))?;
    Ok(Reply::ok("ok"))
}

async fn kv_open(label: &str) -> Reply {
    match Store::open(label).await {
        Ok(_) => Reply::ok("opened"),
        Err(e) => Reply::ok(format!("error: {}", kv_error(&e))),
    }
}

async fn kv_get(label: &str, key: &str) -> Reply {
    let value = match Store::open(label).await {
        Ok(store) => store.get(key).await,
        Err(e) => Err(e),
    };
    match value {
        Ok(Some(value)) => Reply::ok(value),
        Ok(None) => Reply::new(404, "missing"),
        Err(e) => Reply::new(500, format!("error: {}", kv_error(&e))),
    }
}

async fn kv_set(label: &str, key: &str, value: &[u8]) -> Reply {
    let stored = match Store::open(label).await {
        Ok(store) => store.set(key, value).await,
        Err(e) => Err(e),
    };
    match stored {
        Ok(()) => Reply::ok("stored"),
        Err(e) => Reply::new(500, format!("error: {}", kv_error(&e))),
    }
}

/// The WIT case name of a key-value error.
fn kv_error(error: &key_value::Error) -> String {
    match error {
        key_value::Error::StoreTableFull => "store-table-full".to_owned(),
        key_value::Error::NoSuchStore => "no-such-store".to_owned(),
        key_value::Error::AccessDenied => "access-denied".to_owned(),
        key_value::Error::Other(message) => format!("other: {message}"),
    }
}

// ---------------------------------------------------------------------------
// spin:variables/variables@3.0.0

async fn variable(name: &str) -> Reply {
    match variables::get(name).await {
        Ok(value) => Reply::ok(value),
        Err(e) => Reply::ok(format!("error: {}", variables_error(&e))),
    }
}

/// `<kind>: <message>` of a variables error.
fn variables_error(error: &variables::Error) -> String {
    match error {
        variables::Error::InvalidName(message) => format!("invalid-name: {message}"),
        variables::Error::Undefined(message) => format!("undefined: {message}"),
        variables::Error::Provider(message) => format!("provider: {message}"),
        variables::Error::Other(message) => format!("other: {message}"),
    }
}

// ---------------------------------------------------------------------------
// spin:sqlite/sqlite@3.1.0 (async functions)

/// The columns `/sqlite/check` inserts and selects, in order.
const COLUMNS: [&str; 6] = ["name", "i", "r", "t", "b", "n"];

/// The rows `/sqlite/check` inserts: every value type, with the extremes.
fn sample_rows() -> Vec<Vec<Value>> {
    vec![
        vec![
            Value::Text("min".to_owned()),
            Value::Integer(i64::MIN),
            Value::Real(3.5),
            Value::Text("héllo wörld ✓ 日本 🦀".to_owned()),
            Value::Blob(vec![0x00, 0xff, 0x00, 0x7f, 0x80]),
            Value::Null,
        ],
        vec![
            Value::Text("max".to_owned()),
            Value::Integer(i64::MAX),
            Value::Real(-1.25e-300),
            Value::Text("ünïcödé".to_owned()),
            Value::Blob(vec![0xff, 0x00]),
            Value::Null,
        ],
    ]
}

/// Runs a statement to the end: its columns and every row, or the error from
/// either the call itself or the result future after the row stream.
async fn run(
    conn: &Connection,
    statement: &str,
    parameters: &[Value],
) -> Result<(Vec<String>, Vec<Vec<Value>>), sqlite::Error> {
    let result = conn.execute(statement, parameters.to_vec()).await?;
    let columns = result.columns().to_vec();
    let rows = result.collect().await?;
    Ok((columns, rows.into_iter().map(|row| row.values).collect()))
}

async fn sqlite_check(db: &str) -> Check {
    let conn = Connection::open(db)
        .await
        .map_err(|e| format!("open {db}: {}", sqlite_error(&e)))?;
    let table = format!("caps7_{}", unique_suffix());
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {table} \
         (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, i INTEGER, r REAL, t TEXT, b BLOB, n)"
    );
    run(&conn, &create, &[])
        .await
        .map_err(sqlite_failed("create table"))?;
    // Drop the table even when a check fails, then report the first failure.
    let checked = sqlite_checks(&conn, &table).await;
    let dropped = run(&conn, &format!("DROP TABLE {table}"), &[]).await;
    checked?;
    dropped.map_err(sqlite_failed("drop table"))?;
    Ok(Reply::ok("ok"))
}

async fn sqlite_checks(conn: &Connection, table: &str) -> Check<()> {
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES (?, ?, ?, ?, ?, ?)",
        COLUMNS.join(", ")
    );
    let select_id = format!("SELECT id FROM {table} WHERE name = ?");
    for row in sample_rows() {
        run(conn, &insert, &row)
            .await
            .map_err(sqlite_failed("insert"))?;
        let rowid = conn.last_insert_rowid().await;
        expect_eq("changes after insert", conn.changes().await, 1)?;
        let (_, ids) = run(conn, &select_id, &row[..1])
            .await
            .map_err(sqlite_failed("select id"))?;
        let id = ids.first().and_then(|values| values.first());
        ensure(
            "last-insert-rowid",
            id == Some(&Value::Integer(rowid)),
            || format!("got {rowid}, the row's id is {id:?}"),
        )?;
    }

    let select = format!("SELECT {} FROM {table} WHERE name = ?", COLUMNS.join(", "));
    for row in sample_rows() {
        let (columns, rows) = run(conn, &select, &row[..1])
            .await
            .map_err(sqlite_failed("select"))?;
        expect_eq(
            "select columns",
            columns,
            COLUMNS.map(String::from).to_vec(),
        )?;
        ensure("select rows", rows.len() == 1, || {
            format!("got {} rows, want 1", rows.len())
        })?;
        let got = &rows[0];
        ensure("select values", got.len() == row.len(), || {
            format!("got {} values, want {}", got.len(), row.len())
        })?;
        for ((column, got), want) in COLUMNS.iter().zip(got).zip(&row) {
            ensure("select value", same_value(got, want), || {
                format!("column {column}: got {got:?}, want {want:?}")
            })?;
        }
    }

    match run(conn, "SELEC 1", &[]).await {
        Err(sqlite::Error::Io(message)) if message.contains("syntax error") => {}
        other => {
            return Err(format!(
                "syntax error: got {other:?}, want io(\"…syntax error…\")"
            ));
        }
    }
    match run(conn, &insert, &sample_rows()[0]).await {
        Err(sqlite::Error::Io(message)) if message.contains("UNIQUE constraint failed") => {}
        other => {
            return Err(format!(
                "duplicate insert: got {other:?}, want io(\"…UNIQUE constraint failed…\")"
            ));
        }
    }
    Ok(())
}

/// Exact equality of two values: same type, and for reals the same bits.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(a), Value::Integer(b)) => a == b,
        (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
        (Value::Text(a), Value::Text(b)) => a == b,
        (Value::Blob(a), Value::Blob(b)) => a == b,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// The WIT case name of a sqlite error (`io: <message>` for `io`).
fn sqlite_error(error: &sqlite::Error) -> String {
    match error {
        sqlite::Error::NoSuchDatabase => "no-such-database".to_owned(),
        sqlite::Error::AccessDenied => "access-denied".to_owned(),
        sqlite::Error::InvalidConnection => "invalid-connection".to_owned(),
        sqlite::Error::DatabaseFull => "database-full".to_owned(),
        sqlite::Error::Io(message) => format!("io: {message}"),
    }
}

fn sqlite_failed(step: &str) -> impl FnOnce(sqlite::Error) -> String + '_ {
    move |e| format!("{step}: {}", sqlite_error(&e))
}

// ---------------------------------------------------------------------------
// wasi:http@0.3.0 client

async fn http_once(url: &str, method: &str) -> Check {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("query: bad method {method:?}"))?;
    let request = Request::<()>::builder()
        .method(method)
        .uri(url)
        .body(EmptyBody::new())
        .map_err(|e| format!("query: bad url {url:?}: {e}"))?;
    let response = match spin_sdk::http::send(request).await {
        Ok(response) => response,
        Err(e) => return Ok(Reply::ok(format!("error: {}", error_code(&e)))),
    };
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_else(|| "-".to_owned());
    let body = response
        .into_body()
        .bytes()
        .await
        .map_err(|e| format!("read response body: {}", error_code(&e)))?;
    let mut answer = format!("status {status}\nlocation: {location}\n\n").into_bytes();
    answer.extend_from_slice(&body);
    Ok(Reply::ok(answer))
}

/// The `Debug` form of an error code without the `ErrorCode::` prefix.
fn error_code(code: &ErrorCode) -> String {
    let debug = format!("{code:?}");
    debug
        .strip_prefix("ErrorCode::")
        .unwrap_or(&debug)
        .to_owned()
}

// ---------------------------------------------------------------------------
// Helpers

async fn redis_check(addr: &str, prefix: &str) -> Check {
    use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};
    let conn = Connection::open(addr).await.map_err(failed("open"))?;
    let key = format!("{prefix}:k");
    let counter = format!("{prefix}:n");
    let set = format!("{prefix}:s");
    conn.set(&key, b"v1").await.map_err(failed("set"))?;
    expect_eq(
        "get",
        conn.get(&key).await.map_err(failed("get"))?,
        Some(b"v1".to_vec()),
    )?;
    expect_eq(
        "get missing",
        conn.get(format!("{prefix}:missing"))
            .await
            .map_err(failed("get missing"))?,
        None,
    )?;
    expect_eq(
        "incr 1",
        conn.incr(&counter).await.map_err(failed("incr"))?,
        1,
    )?;
    expect_eq(
        "incr 2",
        conn.incr(&counter).await.map_err(failed("incr"))?,
        2,
    )?;
    expect_eq(
        "sadd",
        conn.sadd(&set, ["c", "a", "b"])
            .await
            .map_err(failed("sadd"))?,
        3,
    )?;
    let mut got = conn.smembers(&set).await.map_err(failed("smembers"))?;
    got.sort();
    expect_eq("smembers", got, vec!["a".into(), "b".into(), "c".into()])?;
    expect_eq(
        "srem",
        conn.srem(&set, ["b", "zz"]).await.map_err(failed("srem"))?,
        1,
    )?;
    expect_eq(
        "execute APPEND",
        conn.execute(
            "APPEND",
            [
                RedisParameter::Binary(key.clone().into_bytes()),
                RedisParameter::Binary(b"x".to_vec()),
            ],
        )
        .await
        .map_err(failed("execute APPEND"))?,
        vec![RedisResult::Int64(3)],
    )?;
    expect_eq(
        "execute GET",
        conn.execute("GET", [RedisParameter::Binary(key.clone().into_bytes())])
            .await
            .map_err(failed("execute GET"))?,
        vec![RedisResult::Binary(b"v1x".to_vec())],
    )?;
    expect_eq(
        "execute PING",
        conn.execute("PING", [])
            .await
            .map_err(failed("execute PING"))?,
        vec![RedisResult::Status("PONG".into())],
    )?;
    match conn.incr(&set).await {
        Err(Error::TypeError) => {}
        other => return Err(format!("incr on a set: expected TypeError, got {other:?}")),
    }
    expect_eq(
        "del",
        conn.del([key.clone(), counter.clone(), format!("{prefix}:missing")])
            .await
            .map_err(failed("del"))?,
        2,
    )?;
    conn.publish(format!("{prefix}:chan"), b"hello")
        .await
        .map_err(failed("publish"))?;
    let from_test = conn
        .get(format!("{prefix}:from-test"))
        .await
        .map_err(failed("get from-test"))?
        .ok_or("get from-test: missing")?;
    conn.set(format!("{prefix}:from-guest"), b"written by caps-v7")
        .await
        .map_err(failed("set from-guest"))?;
    Ok(Reply::ok(format!(
        "ok {}",
        String::from_utf8_lossy(&from_test)
    )))
}

//! `caps-v5`: Spin host capabilities used through the Spin Rust SDK 5.2
//! (WASI 0.2, `#[http_component]`), the way Spin apps use them.
//!
//! The guest asserts inside itself: a check route answers `200` with the body
//! given below when every check passes, or `500` with `<step>: <reason>` at the
//! first failed one. Routes match the path relative to the component's route
//! (the `spin-path-info` header, else the request path). Query strings are
//! `k=v&k2=v2`, values `%XX`-decoded; a missing parameter is a `500`
//! `query: missing <name>`.
//!
//! - `GET /kv/check?store=L`: `fermyon:spin/key-value@2.0.0` on store `L`
//!   (set, get, exists, get/exists/delete of a missing key, get-keys, delete).
//!   `ok`.
//! - `GET /kv/open?store=L`: `opened`, or `error: <kind>` (`access-denied`,
//!   `no-such-store`, `store-table-full`, `other: <message>`), all `200`.
//! - `GET /kv/get?store=L&key=K`: `200` with the raw value, `404` `missing`,
//!   `500` `error: <kind>`.
//! - `PUT /kv/set?store=L&key=K`: stores the request body; `200` `stored`, or
//!   `500` `error: <kind>`.
//! - `GET /wasi-kv/check?store=L`: `wasi:keyvalue/{store,batch,atomics}@0.2.0-draft2`:
//!   bucket get/set/exists/delete, `list-keys` over every cursor page, batch
//!   set/get/delete-many, increment (5 then -2 gives 3), a compare-and-swap
//!   that succeeds and a stale one that fails with `cas-failed`. `ok`.
//! - `POST /wasi-kv/incr?store=L&key=K&delta=N`: atomic increment; the new value
//!   in decimal.
//! - `POST /wasi-kv/cas-append?store=L&key=K&item=X`: appends `X,` to the value
//!   with a compare-and-swap loop, retrying on `cas-failed`; the number of
//!   attempts.
//! - `GET /var?name=N`: `fermyon:spin/variables@2.0.0`; the value, or
//!   `error: <kind>: <message>` (`invalid-name`, `undefined`, `provider`,
//!   `other`), all `200`.
//! - `GET /config?name=N`: `wasi:config/store@0.2.0-draft-2024-09-27` `get`; the
//!   value, `404` `none` when absent, or `200` `error: <kind>: <message>`
//!   (`upstream`, `io`).
//! - `GET /config/all`: `get-all`, one `key=value` line per entry sorted by key.
//! - `GET /sqlite/check?db=L`: `fermyon:spin/sqlite@2.0.0` on a fresh table:
//!   every value type round-trips exactly through a parameterised INSERT and
//!   SELECT; `SELEC 1` fails with `io` containing `syntax error`; a duplicate
//!   UNIQUE value fails with `io` containing `UNIQUE constraint failed`; the
//!   table is dropped. `ok`.
//! - `GET /sqlite/open?db=L`: `opened`, or `error: <kind>` (`no-such-database`,
//!   `access-denied`, `invalid-connection`, `database-full`, `io: <message>`),
//!   all `200`.
//! - `GET /sqlite3/check?db=L`: `spin:sqlite/sqlite@3.0.0`: `last-insert-rowid`
//!   is the inserted row's id and `changes` is 1 after each INSERT, 3 after an
//!   UPDATE of three rows. `ok`.
//! - `POST /sqlite/counter?db=L`: upserts row 1 of table `counter`
//!   (`n = n + 1`); the new `n`.
//! - `GET /http?url=U[&method=M]`: one request through
//!   `wasi:http/outgoing-handler` (redirects are not followed; a URL starting
//!   with `/` is sent without scheme and authority, as Spin self-requests are).
//!   `status <code>\nlocation: <value or ->\n\n<response body>`, or `200`
//!   `error: <wasi:http error-code>` such as `error: HttpRequestDenied`.
//! - `GET /unsupported`: opens outbound Redis, MQTT, PostgreSQL and MySQL
//!   connections and runs an LLM inference through `fermyon:spin@2.0.0`; one
//!   `<interface>: <Debug of the error>` line each (`200`), or
//!   `<interface>: unexpectedly succeeded`.
//! - `GET /redis/check?addr=A&prefix=P`: `fermyon:spin/redis@2.0.0` against the
//!   server at `A`, on keys starting with `P`: set/get, get of a missing key,
//!   incr twice, sadd/smembers/srem, `execute` (APPEND gives `int64(3)`, GET
//!   gives the bytes, PING gives `status("PONG")`), INCR on a set fails with
//!   `type-error`, del counts, publish on `P:chan`. Then reads `P:from-test`
//!   (written by the test) and answers with its value, and writes
//!   `P:from-guest` = `written by caps-v5`. `ok <value of P:from-test>`.
//! - `GET /redis/open?addr=A`: `opened`, or `error: <Debug of the error>`
//!   (`200`).
//! - `GET /http-many?url=U&n=N`: N sequential GETs, each body read in full;
//!   `sent N`, or `failed after K: <error-code>` at the first failure (`200`).

use std::fmt::Debug;

use spin_sdk::http::{
    ErrorCode, Headers, IncomingResponse, Method, OutgoingRequest, Request, Response, Scheme,
    SendError,
};
use spin_sdk::http_component;
use spin_sdk::key_value::{self, Store};
use spin_sdk::sqlite::{self, Connection, Value};
use spin_sdk::sqlite3;
use spin_sdk::variables;
use spin_sdk::wit::wasi::config::store as config;
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wasi_kv};

use caps_common::{Check, Query, Reply, ensure, expect_eq, failed, unique_suffix};

/// Retries of one `/wasi-kv/cas-append` before it gives up.
const MAX_CAS_ATTEMPTS: u32 = 10_000;

#[http_component]
async fn handle(request: Request) -> Response {
    let method = request.method().to_string();
    let path = request
        .header("spin-path-info")
        .and_then(|value| value.as_str())
        .unwrap_or(request.path())
        .to_owned();
    let query = Query::parse(request.query());
    let body = request.into_body();
    let reply = route(&method, &path, &query, body)
        .await
        .unwrap_or_else(|failure| Reply::new(500, failure));
    Response::builder()
        .status(reply.status)
        .header("content-type", "text/plain")
        .body(reply.body)
        .build()
}

async fn route(method: &str, path: &str, query: &Query, body: Vec<u8>) -> Check {
    match (method, path) {
        ("GET", "/kv/check") => kv_check(query.get("store")?),
        ("GET", "/kv/open") => Ok(kv_open(query.get("store")?)),
        ("GET", "/kv/get") => Ok(kv_get(query.get("store")?, query.get("key")?)),
        ("PUT", "/kv/set") => Ok(kv_set(query.get("store")?, query.get("key")?, &body)),
        ("GET", "/wasi-kv/check") => wasi_kv_check(query.get("store")?),
        ("POST", "/wasi-kv/incr") => {
            wasi_kv_incr(query.get("store")?, query.get("key")?, query.get("delta")?)
        }
        ("POST", "/wasi-kv/cas-append") => {
            wasi_kv_cas_append(query.get("store")?, query.get("key")?, query.get("item")?)
        }
        ("GET", "/var") => Ok(variable(query.get("name")?)),
        ("GET", "/config") => Ok(config_get(query.get("name")?)),
        ("GET", "/config/all") => config_all(),
        ("GET", "/sqlite/check") => sqlite_check(query.get("db")?),
        ("GET", "/sqlite/open") => Ok(sqlite_open(query.get("db")?)),
        ("GET", "/sqlite3/check") => sqlite3_check(query.get("db")?),
        ("POST", "/sqlite/counter") => sqlite_counter(query.get("db")?),
        ("GET", "/http") => {
            let method = query.get("method").unwrap_or("GET");
            http_once(query.get("url")?, method).await
        }
        ("GET", "/http-many") => {
            let n = query.get("n")?;
            let n = n
                .parse()
                .map_err(|_| format!("query: n={n:?} is not a count"))?;
            http_many(query.get("url")?, n).await
        }
        ("GET", "/redis/check") => redis_check(query.get("addr")?, query.get("prefix")?),
        ("GET", "/redis/open") => Ok(
            match spin_sdk::redis::Connection::open(query.get("addr")?) {
                Ok(_) => Reply::ok("opened"),
                Err(e) => Reply::ok(format!("error: {e:?}")),
            },
        ),
        ("GET", "/unsupported") => Ok(unsupported()),
        _ => Ok(Reply::new(404, format!("no route {method} {path}"))),
    }
}

// ---------------------------------------------------------------------------
// fermyon:spin/key-value@2.0.0

fn kv_check(label: &str) -> Check {
    let store = Store::open(label).map_err(|e| format!("open {label}: {}", kv_error(&e)))?;

    store.set("a", b"1").map_err(failed("set a"))?;
    expect_eq(
        "get a",
        store.get("a").map_err(failed("get a"))?,
        Some(b"1".to_vec()),
    )?;
    expect_eq(
        "exists a",
        store.exists("a").map_err(failed("exists a"))?,
        true,
    )?;

    let missing = store
        .get("missing-key")
        .map_err(failed("get missing-key"))?;
    expect_eq("get missing-key", missing, None)?;
    let exists = store
        .exists("missing-key")
        .map_err(failed("exists missing-key"))?;
    expect_eq("exists missing-key", exists, false)?;
    store
        .delete("missing-key")
        .map_err(failed("delete missing-key"))?;

    store.set("b", b"2").map_err(failed("set b"))?;
    let keys = store.get_keys().map_err(failed("get-keys"))?;
    for key in ["a", "b"] {
        ensure("get-keys", keys.iter().any(|k| k == key), || {
            format!("{key:?} missing from {keys:?}")
        })?;
    }

    store.delete("a").map_err(failed("delete a"))?;
    expect_eq(
        "get a after delete",
        store.get("a").map_err(failed("get a"))?,
        None,
    )?;
    store.delete("b").map_err(failed("delete b"))?;
    Ok(Reply::ok("ok"))
}

fn kv_open(label: &str) -> Reply {
    match Store::open(label) {
        Ok(_) => Reply::ok("opened"),
        Err(e) => Reply::ok(format!("error: {}", kv_error(&e))),
    }
}

fn kv_get(label: &str, key: &str) -> Reply {
    match Store::open(label).and_then(|store| store.get(key)) {
        Ok(Some(value)) => Reply::ok(value),
        Ok(None) => Reply::new(404, "missing"),
        Err(e) => Reply::new(500, format!("error: {}", kv_error(&e))),
    }
}

fn kv_set(label: &str, key: &str, value: &[u8]) -> Reply {
    match Store::open(label).and_then(|store| store.set(key, value)) {
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
// wasi:keyvalue/{store,batch,atomics}@0.2.0-draft2

fn wasi_kv_check(label: &str) -> Check {
    let bucket = wasi_kv::open(label).map_err(failed("open"))?;
    // Fresh keys, so earlier runs against a durable store cannot interfere.
    let suffix = unique_suffix();
    let key = |name: &str| format!("caps-v5-{suffix}-{name}");

    // store: get, set, exists, delete.
    let single = key("single");
    bucket.set(&single, b"v1").map_err(failed("set"))?;
    expect_eq(
        "get",
        bucket.get(&single).map_err(failed("get"))?,
        Some(b"v1".to_vec()),
    )?;
    expect_eq(
        "exists",
        bucket.exists(&single).map_err(failed("exists"))?,
        true,
    )?;
    let missing = key("missing");
    expect_eq(
        "get missing",
        bucket.get(&missing).map_err(failed("get missing"))?,
        None,
    )?;
    let exists = bucket.exists(&missing).map_err(failed("exists missing"))?;
    expect_eq("exists missing", exists, false)?;
    bucket.delete(&missing).map_err(failed("delete missing"))?;

    // list-keys, following the cursor to the end.
    let listed = [key("list-1"), key("list-2"), key("list-3")];
    for name in &listed {
        bucket
            .set(name, b"x")
            .map_err(failed("set for list-keys"))?;
    }
    let all = list_all_keys(&bucket)?;
    for name in listed.iter().chain([&single]) {
        ensure("list-keys", all.contains(name), || {
            format!("{name:?} missing from {} keys", all.len())
        })?;
    }
    for name in &listed {
        bucket.delete(name).map_err(failed("delete listed key"))?;
    }
    bucket.delete(&single).map_err(failed("delete"))?;
    expect_eq(
        "get after delete",
        bucket.get(&single).map_err(failed("get"))?,
        None,
    )?;
    let exists = bucket.exists(&single).map_err(failed("exists"))?;
    expect_eq("exists after delete", exists, false)?;

    // batch: set-many, get-many, delete-many.
    let (one, two) = (key("batch-1"), key("batch-2"));
    let pairs = [
        (one.clone(), b"one".to_vec()),
        (two.clone(), b"two".to_vec()),
    ];
    batch::set_many(&bucket, &pairs).map_err(failed("set-many"))?;
    let got = batch::get_many(&bucket, &[one.clone(), two.clone(), missing.clone()])
        .map_err(failed("get-many"))?;
    let value_of = |name: &String| -> Option<Vec<u8>> {
        got.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    expect_eq("get-many first", value_of(&one), Some(b"one".to_vec()))?;
    expect_eq("get-many second", value_of(&two), Some(b"two".to_vec()))?;
    // A missing key is either left out or answered with `none`.
    expect_eq("get-many missing", value_of(&missing), None)?;
    batch::delete_many(&bucket, &[one.clone(), two.clone()]).map_err(failed("delete-many"))?;
    for name in [&one, &two] {
        let value = bucket.get(name).map_err(failed("get after delete-many"))?;
        expect_eq("get after delete-many", value, None)?;
    }

    // atomics: increment.
    let counter = key("counter");
    let value = atomics::increment(&bucket, &counter, 5).map_err(failed("increment by 5"))?;
    expect_eq("increment by 5", value, 5)?;
    let value = atomics::increment(&bucket, &counter, -2).map_err(failed("increment by -2"))?;
    expect_eq("increment by -2", value, 3)?;
    bucket.delete(&counter).map_err(failed("delete counter"))?;

    // atomics: compare-and-swap that succeeds, then a stale one that fails.
    let swapped = key("cas");
    bucket
        .set(&swapped, b"before")
        .map_err(failed("set for cas"))?;
    let cas = atomics::Cas::new(&bucket, &swapped).map_err(failed("cas new"))?;
    let current = cas.current().map_err(failed("cas current"))?;
    expect_eq("cas current", current, Some(b"before".to_vec()))?;
    atomics::swap(cas, b"after").map_err(failed("swap"))?;
    let value = bucket.get(&swapped).map_err(failed("get after swap"))?;
    expect_eq("get after swap", value, Some(b"after".to_vec()))?;

    let stale = atomics::Cas::new(&bucket, &swapped).map_err(failed("second cas new"))?;
    bucket
        .set(&swapped, b"concurrent")
        .map_err(failed("concurrent set"))?;
    match atomics::swap(stale, b"lost") {
        Err(atomics::CasError::CasFailed(_)) => {}
        other => return Err(format!("stale swap: got {other:?}, want cas-failed")),
    }
    let value = bucket
        .get(&swapped)
        .map_err(failed("get after stale swap"))?;
    expect_eq("get after stale swap", value, Some(b"concurrent".to_vec()))?;
    bucket.delete(&swapped).map_err(failed("delete cas key"))?;
    Ok(Reply::ok("ok"))
}

/// Every key of the bucket: `list-keys` pages until the cursor runs out.
fn list_all_keys(bucket: &wasi_kv::Bucket) -> Check<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    for _page in 0..100_000 {
        let page = bucket
            .list_keys(cursor.as_deref())
            .map_err(failed("list-keys"))?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
    Err("list-keys: the cursor never ran out".to_owned())
}

fn wasi_kv_incr(label: &str, key: &str, delta: &str) -> Check {
    let delta: i64 = delta
        .parse()
        .map_err(|_| format!("query: delta={delta:?} is not an integer"))?;
    let bucket = wasi_kv::open(label).map_err(failed("open"))?;
    let value = atomics::increment(&bucket, key, delta).map_err(failed("increment"))?;
    Ok(Reply::ok(value.to_string()))
}

fn wasi_kv_cas_append(label: &str, key: &str, item: &str) -> Check {
    let bucket = wasi_kv::open(label).map_err(failed("open"))?;
    for attempt in 1..=MAX_CAS_ATTEMPTS {
        let cas = atomics::Cas::new(&bucket, key).map_err(failed("cas new"))?;
        let mut value = cas
            .current()
            .map_err(failed("cas current"))?
            .unwrap_or_default();
        value.extend_from_slice(item.as_bytes());
        value.push(b',');
        match atomics::swap(cas, &value) {
            Ok(()) => return Ok(Reply::ok(attempt.to_string())),
            Err(atomics::CasError::CasFailed(_)) => continue,
            Err(atomics::CasError::StoreError(e)) => return Err(format!("swap: {e:?}")),
        }
    }
    Err(format!(
        "swap: still cas-failed after {MAX_CAS_ATTEMPTS} attempts"
    ))
}

// ---------------------------------------------------------------------------
// fermyon:spin/variables@2.0.0 and wasi:config/store@0.2.0-draft-2024-09-27

fn variable(name: &str) -> Reply {
    match variables::get(name) {
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

fn config_get(name: &str) -> Reply {
    match config::get(name) {
        Ok(Some(value)) => Reply::ok(value),
        Ok(None) => Reply::new(404, "none"),
        Err(e) => Reply::ok(format!("error: {}", config_error(&e))),
    }
}

fn config_all() -> Check {
    let mut all = config::get_all().map_err(|e| format!("get-all: {}", config_error(&e)))?;
    all.sort();
    let lines: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    Ok(Reply::ok(lines))
}

/// `<kind>: <message>` of a wasi:config error.
fn config_error(error: &config::Error) -> String {
    match error {
        config::Error::Upstream(message) => format!("upstream: {message}"),
        config::Error::Io(message) => format!("io: {message}"),
    }
}

// ---------------------------------------------------------------------------
// fermyon:spin/sqlite@2.0.0 and spin:sqlite/sqlite@3.0.0

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

fn sqlite_check(db: &str) -> Check {
    let conn = Connection::open(db).map_err(|e| format!("open {db}: {}", sqlite_error(&e)))?;
    let table = format!("caps_{}", unique_suffix());
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {table} \
         (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, i INTEGER, r REAL, t TEXT, b BLOB, n)"
    );
    conn.execute(&create, &[])
        .map_err(sqlite_failed("create table"))?;
    // Drop the table even when a check fails, then report the first failure.
    let checked = sqlite_checks(&conn, &table);
    let dropped = conn.execute(&format!("DROP TABLE {table}"), &[]);
    checked?;
    dropped.map_err(sqlite_failed("drop table"))?;
    Ok(Reply::ok("ok"))
}

fn sqlite_checks(conn: &Connection, table: &str) -> Check<()> {
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES (?, ?, ?, ?, ?, ?)",
        COLUMNS.join(", ")
    );
    for row in sample_rows() {
        conn.execute(&insert, &row)
            .map_err(sqlite_failed("insert"))?;
    }

    let select = format!("SELECT {} FROM {table} WHERE name = ?", COLUMNS.join(", "));
    for row in sample_rows() {
        let result = conn
            .execute(&select, &row[..1])
            .map_err(sqlite_failed("select"))?;
        expect_eq(
            "select columns",
            result.columns.clone(),
            COLUMNS.map(String::from).to_vec(),
        )?;
        ensure("select rows", result.rows.len() == 1, || {
            format!("got {} rows, want 1", result.rows.len())
        })?;
        let got = &result.rows[0].values;
        ensure("select values", got.len() == row.len(), || {
            format!("got {} values, want {}", got.len(), row.len())
        })?;
        for ((column, got), want) in COLUMNS.iter().zip(got).zip(&row) {
            ensure("select value", same_value(got, want), || {
                format!("column {column}: got {got:?}, want {want:?}")
            })?;
        }
    }

    match conn.execute("SELEC 1", &[]) {
        Err(sqlite::Error::Io(message)) if message.contains("syntax error") => {}
        other => {
            return Err(format!(
                "syntax error: got {other:?}, want io(\"…syntax error…\")"
            ));
        }
    }
    match conn.execute(&insert, &sample_rows()[0]) {
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

fn sqlite_open(db: &str) -> Reply {
    match Connection::open(db) {
        Ok(_) => Reply::ok("opened"),
        Err(e) => Reply::ok(format!("error: {}", sqlite_error(&e))),
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

fn sqlite3_check(db: &str) -> Check {
    let conn = sqlite3::Connection::open(db).map_err(failed("open"))?;
    let table = format!("caps3_{}", unique_suffix());
    let create = format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    conn.execute(&create, &[]).map_err(failed("create table"))?;
    let checked = sqlite3_checks(&conn, &table);
    let dropped = conn.execute(&format!("DROP TABLE {table}"), &[]);
    checked?;
    dropped.map_err(failed("drop table"))?;
    Ok(Reply::ok("ok"))
}

fn sqlite3_checks(conn: &sqlite3::Connection, table: &str) -> Check<()> {
    let insert = format!("INSERT INTO {table} (v) VALUES (?)");
    let select = format!("SELECT id FROM {table} WHERE v = ?");
    for v in ["x", "y", "z"] {
        let value = [sqlite3::Value::Text(v.to_owned())];
        conn.execute(&insert, &value).map_err(failed("insert"))?;
        let rowid = conn.last_insert_rowid();
        expect_eq(&format!("changes after insert {v}"), conn.changes(), 1)?;
        let result = conn.execute(&select, &value).map_err(failed("select id"))?;
        let id = result.rows.first().and_then(|row| row.get::<i64>(0));
        expect_eq(
            &format!("last-insert-rowid after insert {v}"),
            Some(rowid),
            id,
        )?;
    }
    let update = format!("UPDATE {table} SET v = v || '!'");
    conn.execute(&update, &[]).map_err(failed("update"))?;
    expect_eq("changes after update", conn.changes(), 3)
}

fn sqlite_counter(db: &str) -> Check {
    let conn = Connection::open(db).map_err(sqlite_failed("open"))?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
        &[],
    )
    .map_err(sqlite_failed("create table"))?;
    let result = conn
        .execute(
            "INSERT INTO counter(id, n) VALUES (1, 1) \
             ON CONFLICT(id) DO UPDATE SET n = n + 1 RETURNING n",
            &[],
        )
        .map_err(sqlite_failed("upsert"))?;
    match result.rows.first().and_then(|row| row.values.first()) {
        Some(Value::Integer(n)) => Ok(Reply::ok(n.to_string())),
        other => Err(format!("upsert: RETURNING gave {other:?}, want an integer")),
    }
}

// ---------------------------------------------------------------------------
// wasi:http/outgoing-handler@0.2

async fn http_once(url: &str, method: &str) -> Check {
    let request = outgoing_request(url, method)?;
    let response = match spin_sdk::http::send::<_, IncomingResponse>(request).await {
        Ok(response) => response,
        Err(e) => return Ok(Reply::ok(format!("error: {}", send_error(&e)))),
    };
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_else(|| "-".to_owned());
    let body = response
        .into_body()
        .await
        .map_err(failed("read response body"))?;
    let mut answer = format!("status {status}\nlocation: {location}\n\n").into_bytes();
    answer.extend_from_slice(&body);
    Ok(Reply::ok(answer))
}

async fn http_many(url: &str, n: u32) -> Check {
    for sent in 0..n {
        let request = outgoing_request(url, "GET")?;
        match spin_sdk::http::send::<_, IncomingResponse>(request).await {
            // Read the body to the end, so the exchange is over before the next.
            Ok(response) => {
                if let Err(e) = response.into_body().await {
                    return Ok(Reply::ok(format!("failed after {sent}: body: {e:?}")));
                }
            }
            Err(e) => {
                return Ok(Reply::ok(format!(
                    "failed after {sent}: {}",
                    send_error(&e)
                )));
            }
        }
    }
    Ok(Reply::ok(format!("sent {n}")))
}

/// An outgoing request without body for `url`: `scheme://authority/path?query`,
/// or a bare `/path?query` sent with neither scheme nor authority.
fn outgoing_request(url: &str, method: &str) -> Check<OutgoingRequest> {
    let request = OutgoingRequest::new(Headers::new());
    let method_value = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    };
    request
        .set_method(&method_value)
        .map_err(|()| format!("query: bad method {method:?}"))?;
    let path_with_query = if url.starts_with('/') {
        url
    } else {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("query: url {url:?} is neither absolute nor a path"))?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_owned()),
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| format!("query: bad scheme in {url:?}"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| format!("query: bad authority {authority:?}"))?;
        if path.is_empty() { "/" } else { path }
    };
    request
        .set_path_with_query(Some(path_with_query))
        .map_err(|()| format!("query: bad path {path_with_query:?}"))?;
    Ok(request)
}

/// The raw `wasi:http` error code of a failed send (`HttpRequestDenied`, …).
fn send_error(error: &SendError) -> String {
    match error {
        SendError::Http(code) => error_code(code),
        other => other.to_string(),
    }
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

/// The Spin 2 interfaces a host may not serve must still load and answer with
/// their error variant.
fn redis_check(addr: &str, prefix: &str) -> Check {
    use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};
    let conn = Connection::open(addr).map_err(failed("open"))?;
    let key = format!("{prefix}:k");
    let counter = format!("{prefix}:n");
    let set = format!("{prefix}:s");
    conn.set(&key, &b"v1".to_vec()).map_err(failed("set"))?;
    expect_eq(
        "get",
        conn.get(&key).map_err(failed("get"))?,
        Some(b"v1".to_vec()),
    )?;
    expect_eq(
        "get missing",
        conn.get(&format!("{prefix}:missing"))
            .map_err(failed("get missing"))?,
        None,
    )?;
    expect_eq("incr 1", conn.incr(&counter).map_err(failed("incr"))?, 1)?;
    expect_eq("incr 2", conn.incr(&counter).map_err(failed("incr"))?, 2)?;
    let members = ["c".to_owned(), "a".to_owned(), "b".to_owned()];
    expect_eq(
        "sadd",
        conn.sadd(&set, &members).map_err(failed("sadd"))?,
        3,
    )?;
    let mut got = conn.smembers(&set).map_err(failed("smembers"))?;
    got.sort();
    expect_eq("smembers", got, vec!["a".into(), "b".into(), "c".into()])?;
    expect_eq(
        "srem",
        conn.srem(&set, &["b".to_owned(), "zz".to_owned()])
            .map_err(failed("srem"))?,
        1,
    )?;
    expect_eq(
        "execute APPEND",
        conn.execute(
            "APPEND",
            &[
                RedisParameter::Binary(key.clone().into_bytes()),
                RedisParameter::Binary(b"x".to_vec()),
            ],
        )
        .map_err(failed("execute APPEND"))?,
        vec![RedisResult::Int64(3)],
    )?;
    expect_eq(
        "execute GET",
        conn.execute("GET", &[RedisParameter::Binary(key.clone().into_bytes())])
            .map_err(failed("execute GET"))?,
        vec![RedisResult::Binary(b"v1x".to_vec())],
    )?;
    expect_eq(
        "execute PING",
        conn.execute("PING", &[]).map_err(failed("execute PING"))?,
        vec![RedisResult::Status("PONG".into())],
    )?;
    match conn.incr(&set) {
        Err(Error::TypeError) => {}
        other => return Err(format!("incr on a set: expected TypeError, got {other:?}")),
    }
    expect_eq(
        "del",
        conn.del(&[key.clone(), counter.clone(), format!("{prefix}:missing")])
            .map_err(failed("del"))?,
        2,
    )?;
    conn.publish(&format!("{prefix}:chan"), &b"hello".to_vec())
        .map_err(failed("publish"))?;
    let from_test = conn
        .get(&format!("{prefix}:from-test"))
        .map_err(failed("get from-test"))?
        .ok_or("get from-test: missing")?;
    conn.set(
        &format!("{prefix}:from-guest"),
        &b"written by caps-v5".to_vec(),
    )
    .map_err(failed("set from-guest"))?;
    Ok(Reply::ok(format!(
        "ok {}",
        String::from_utf8_lossy(&from_test)
    )))
}

fn unsupported() -> Reply {
    use spin_sdk::wit::v2::{llm, mqtt, mysql, postgres, redis};
    fn line<T>(name: &str, result: Result<T, impl Debug>) -> String {
        match result {
            Ok(_) => format!("{name}: unexpectedly succeeded\n"),
            Err(e) => format!("{name}: {e:?}\n"),
        }
    }
    let mut body = String::new();
    body += &line("redis", redis::Connection::open("redis://127.0.0.1:6379"));
    body += &line(
        "mqtt",
        mqtt::Connection::open("mqtt://127.0.0.1:1883", "", "", 30),
    );
    body += &line(
        "postgres",
        postgres::Connection::open("host=127.0.0.1 user=postgres"),
    );
    body += &line("mysql", mysql::Connection::open("mysql://127.0.0.1/db"));
    body += &line("llm", llm::infer("llama2-chat", "hi", None));
    Reply::ok(body)
}

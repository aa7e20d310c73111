//! `spin1-http`: a Spin 1.x HTTP component, built as spin-sdk 1.x builds one: it exports
//! the unversioned `fermyon:spin/inbound-http` and imports the unversioned `config`,
//! `http`, `key-value`, `sqlite`, `redis`, `postgres`, `mysql` and `llm` interfaces (`wit/spin1`,
//! world `http-component`). Built for wasm32-wasip2 (a component) and for
//! wasm32-wasip1 (a core module with wit-bindgen metadata, as spin-sdk 1.x apps are).
//!
//! Routes (the path of the request's `uri`; query values are `%XX`-decoded):
//! - `/hello`: `hello from spin 1: <method> <uri>`, the `spin-path-info` and
//!   `spin-full-url` headers it got, and its body's length;
//! - `/echo`: the request body, with the request's `content-type`;
//! - `/config?key=K`: `get-config(K)`, 404 with the error otherwise;
//! - `/kv`, `/sqlite`: a fixed sequence of calls on the `default` store or database,
//!   one line per call, then the same against a closed handle and an ungranted label;
//! - `/outbound?url=U`: GET U through `fermyon:spin/http`, `<status> <body>`;
//! - `/redis?addr=A`: each command of `fermyon:spin/redis` against A, one line each;
//! - `/pg?address=A&table=T`, `/mysql?address=A&table=T`: creates table T, inserts a
//!   row with parameters, reads it back, runs a failing query and drops T, one line
//!   each;
//! - `/llm`: the `infer` error;
//! - `/status?code=N`: an empty response with status N.

wit_bindgen::generate!({
    path: "../../../wit/spin1",
    world: "wisp:spin1/http-component",
    generate_all,
});

use exports::fermyon::spin::inbound_http::Guest;
use fermyon::spin::http_types::{Method, Request, Response};
use fermyon::spin::{
    config, http, key_value, llm, mysql, postgres, rdbms_types, redis, redis_types, sqlite,
};

struct Spin1;

impl Guest for Spin1 {
    fn handle_request(req: Request) -> Response {
        let (path, query) = req.uri.split_once('?').unwrap_or((&req.uri, ""));
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| decode(value))
                .unwrap_or_default()
        };
        match path {
            "/hello" => text(200, hello(&req)),
            "/echo" => {
                let content_type = header(&req, "content-type").unwrap_or_default();
                Response {
                    status: 200,
                    headers: Some(vec![("content-type".to_owned(), content_type)]),
                    body: req.body,
                }
            }
            "/config" => match config::get_config(&param("key")) {
                Ok(value) => text(200, value),
                Err(e) => text(404, format!("{e:?}")),
            },
            "/kv" => text(200, kv()),
            "/sqlite" => text(200, sqlite()),
            "/outbound" => outbound(&param("url")),
            "/redis" => text(200, redis(&param("addr"))),
            "/pg" => text(200, pg(&param("address"), &param("table"))),
            "/mysql" => text(200, mysql(&param("address"), &param("table"))),
            "/llm" => text(
                500,
                format!("{:?}", llm::infer("llama2-chat", "hi", None).unwrap_err()),
            ),
            "/status" => Response {
                status: param("code").parse().unwrap_or(500),
                headers: None,
                body: None,
            },
            _ => text(404, format!("no route {path}")),
        }
    }
}

/// A query value with its `%XX` escapes decoded.
fn decode(value: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        let hex = |b: Option<u8>| (b? as char).to_digit(16);
        match b {
            b'%' => match (hex(bytes.next()), hex(bytes.next())) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => out.push(b'?'),
            },
            other => out.push(other),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: u16, body: String) -> Response {
    Response {
        status,
        headers: Some(vec![
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("x-spin1".to_owned(), "yes".to_owned()),
        ]),
        body: Some(body.into_bytes()),
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn hello(req: &Request) -> String {
    let method = match req.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
    };
    format!(
        "hello from spin 1: {method} {}\npath-info: {}\nfull-url: {}\nbody: {} bytes\nparams: {}\n",
        req.uri,
        header(req, "spin-path-info").unwrap_or_default(),
        header(req, "spin-full-url").unwrap_or_default(),
        req.body.as_ref().map_or(0, Vec::len),
        req.params.len(),
    )
}

fn kv() -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let store = match key_value::open("default") {
        Ok(store) => store,
        Err(e) => return format!("open default: {e:?}\n"),
    };
    line(format!(
        "set: {:?}",
        key_value::set(store, "greeting", b"hi")
    ));
    line(format!(
        "get: {:?}",
        key_value::get(store, "greeting").map(String::from_utf8)
    ));
    line(format!(
        "exists: {:?}",
        key_value::exists(store, "greeting")
    ));
    line(format!("keys: {:?}", key_value::get_keys(store)));
    line(format!(
        "delete: {:?}",
        key_value::delete(store, "greeting")
    ));
    line(format!(
        "exists after delete: {:?}",
        key_value::exists(store, "greeting")
    ));
    line(format!(
        "get missing: {:?}",
        key_value::get(store, "greeting")
    ));
    key_value::close(store);
    line(format!(
        "get on closed: {:?}",
        key_value::get(store, "greeting")
    ));
    line(format!(
        "get on made-up: {:?}",
        key_value::get(9999, "greeting")
    ));
    line(format!("open other: {:?}", key_value::open("other")));
    out
}

fn sqlite() -> String {
    use sqlite::Value;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let conn = match sqlite::open("default") {
        Ok(conn) => conn,
        Err(e) => return format!("open default: {e:?}\n"),
    };
    let run = |statement: &str, params: &[Value]| sqlite::execute(conn, statement, params);
    line(format!(
        "create: {:?}",
        run(
            "CREATE TABLE IF NOT EXISTS pets (name TEXT, age INTEGER)",
            &[]
        )
        .map(|r| r.rows.len())
    ));
    line(format!(
        "insert: {:?}",
        run(
            "INSERT INTO pets VALUES (?, ?)",
            &[Value::Text("rex".to_owned()), Value::Integer(3)]
        )
        .map(|r| r.rows.len())
    ));
    match run("SELECT name, age FROM pets ORDER BY name LIMIT 1", &[]) {
        Ok(result) => line(format!(
            "select: {:?} {:?}",
            result.columns,
            result.rows.iter().map(|r| &r.values).collect::<Vec<_>>()
        )),
        Err(e) => line(format!("select: {e:?}")),
    }
    line(format!(
        "bad sql: {}",
        match run("SELEKT", &[]) {
            Ok(_) => "ran".to_owned(),
            Err(sqlite::Error::Io(_)) => "io error".to_owned(),
            Err(e) => format!("{e:?}"),
        }
    ));
    sqlite::close(conn);
    line(format!(
        "execute on closed: {:?}",
        sqlite::execute(conn, "SELECT 1", &[]).map(|r| r.rows.len())
    ));
    line(format!("open other: {:?}", sqlite::open("other")));
    out
}

fn outbound(url: &str) -> Response {
    let request = Request {
        method: Method::Get,
        uri: url.to_owned(),
        headers: vec![("x-from".to_owned(), "spin1".to_owned())],
        params: Vec::new(),
        body: None,
    };
    match http::send_request(&request) {
        Ok(response) => text(
            200,
            format!(
                "{} {}",
                response.status,
                String::from_utf8_lossy(&response.body.unwrap_or_default())
            ),
        ),
        Err(e) => text(502, format!("{e:?}")),
    }
}

fn redis(addr: &str) -> String {
    use redis_types::{RedisParameter, RedisResult};
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "set: {:?}",
        redis::set(addr, "spin1-key", b"value")
    ));
    line(format!(
        "get: {:?}",
        redis::get(addr, "spin1-key").map(String::from_utf8)
    ));
    line(format!(
        "get missing: {:?}",
        redis::get(addr, "spin1-missing")
    ));
    line(format!(
        "del: {:?}",
        redis::del(addr, &["spin1-key".to_owned(), "spin1-count".to_owned()])
    ));
    line(format!("incr: {:?}", redis::incr(addr, "spin1-count")));
    line(format!("incr: {:?}", redis::incr(addr, "spin1-count")));
    let members = ["a".to_owned(), "b".to_owned()];
    line(format!(
        "sadd: {:?}",
        redis::sadd(addr, "spin1-set", &members)
    ));
    let mut listed = redis::smembers(addr, "spin1-set").unwrap_or_default();
    listed.sort();
    line(format!("smembers: {listed:?}"));
    line(format!(
        "srem: {:?}",
        redis::srem(addr, "spin1-set", &members)
    ));
    line(format!(
        "publish: {:?}",
        redis::publish(addr, "spin1-channel", b"msg")
    ));
    let appended = redis::execute(
        addr,
        "APPEND",
        &[
            RedisParameter::Binary(b"spin1-key".to_vec()),
            RedisParameter::Binary(b"-more".to_vec()),
        ],
    );
    line(format!(
        "execute: {:?}",
        appended.map(|results| results
            .into_iter()
            .map(|r| match r {
                RedisResult::Int64(i) => i.to_string(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>())
    ));
    line(format!(
        "del: {:?}",
        redis::del(addr, &["spin1-key".to_owned(), "spin1-count".to_owned()])
    ));
    out
}

/// One line for a row set: `name:type` per column, then the rows.
fn rows(set: &rdbms_types::RowSet) -> String {
    let columns: Vec<String> = set
        .columns
        .iter()
        .map(|c| format!("{}:{:?}", c.name, c.data_type))
        .collect();
    format!("{columns:?} {:?}", set.rows)
}

/// The same steps against either database interface (`$db`, with its error type and the
/// SQL of its dialect): create, insert with parameters, select it back, a failing query,
/// drop; one line each.
macro_rules! rdbms_steps {
    ($db:ident, $error:ident, $address:expr, $table:expr, $create:expr, $insert:expr, $select:expr) => {{
        use rdbms_types::ParameterValue as P;
        let (address, table) = ($address, $table);
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "create: {:?}",
            $db::execute(address, &format!($create, table), &[])
        ));
        line(format!(
            "insert: {:?}",
            $db::execute(
                address,
                &format!($insert, table),
                &[P::Int32(1), P::Str("one".to_owned())]
            )
        ));
        line(format!(
            "select: {}",
            match $db::query(address, &format!($select, table), &[P::Int32(1)]) {
                Ok(set) => rows(&set),
                Err(e) => format!("{e:?}"),
            }
        ));
        line(format!(
            "error: {}",
            match $db::query(address, "SELECT * FROM wisp_no_such_table", &[]) {
                Err($db::$error::QueryFailed(_)) => "query-failed".to_owned(),
                other => format!("{other:?}"),
            }
        ));
        line(format!(
            "drop: {:?}",
            $db::execute(address, &format!("DROP TABLE {}", table), &[])
        ));
        out
    }};
}

fn pg(address: &str, table: &str) -> String {
    rdbms_steps!(
        postgres,
        PgError,
        address,
        table,
        "CREATE TABLE {} (id INTEGER, name TEXT)",
        "INSERT INTO {} VALUES ($1, $2)",
        "SELECT id, name FROM {} WHERE id = $1"
    )
}

fn mysql(address: &str, table: &str) -> String {
    rdbms_steps!(
        mysql,
        MysqlError,
        address,
        table,
        "CREATE TABLE {} (id INT, name VARCHAR(20))",
        "INSERT INTO {} VALUES (?, ?)",
        "SELECT id, name FROM {} WHERE id = ?"
    )
}

export!(Spin1);

//! `net-v5`: outbound networking through the Spin Rust SDK 5.2 (WASI 0.2,
//! `#[http_component]`): `fermyon:spin/mqtt@2.0.0` and raw TCP through Rust's
//! `std::net`, which wasm32-wasip2 implements with `wasi:sockets@0.2`.
//!
//! Routes match the path relative to the component's route (the
//! `spin-path-info` header, else the request path); query values are
//! `%XX`-decoded, and a missing parameter is a `500` `query: missing <name>`.
//!
//! - `POST /mqtt/publish?address=A&username=U&password=P&topic=T&qos=Q[&count=N][&keep_alive=K]`:
//!   opens a connection (keep-alive `K` seconds, default 30) and publishes the
//!   request body `N` times (default 1) to `T` with QoS `Q` (0, 1 or 2), then
//!   drops the connection. `200` `published N`, or `200` `error: <Debug of
//!   the error>` at the first failure (`error: Error::InvalidAddress`,
//!   `error: Error::ConnectionFailed("...")`, ...).
//! - `GET /tcp/echo?addr=HOST:PORT&message=M`: connects with
//!   `std::net::TcpStream` (a name is looked up through
//!   `wasi:sockets/ip-name-lookup`), writes `M`, shuts down its write side and
//!   reads until the peer closes. `200` `echo <what came back>`, `200` `denied`
//!   when the connect (or lookup) fails with permission denied, or `200`
//!   `error: <ErrorKind>: <message>`.
//! - `GET /tcp/listen?addr=IP:PORT`: `std::net::TcpListener::bind` (bind and
//!   listen). `200` `listening`, `denied`, or `error: <ErrorKind>: <message>`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::mqtt::{Connection, Qos};

use caps_common::{Check, Query, Reply};

#[http_component]
fn handle(request: Request) -> Response {
    let method = request.method().to_string();
    let path = request
        .header("spin-path-info")
        .and_then(|value| value.as_str())
        .unwrap_or(request.path())
        .to_owned();
    let query = Query::parse(request.query());
    let body = request.into_body();
    let reply =
        route(&method, &path, &query, &body).unwrap_or_else(|failure| Reply::new(500, failure));
    Response::builder()
        .status(reply.status)
        .header("content-type", "text/plain")
        .body(reply.body)
        .build()
}

fn route(method: &str, path: &str, query: &Query, body: &[u8]) -> Check {
    match (method, path) {
        ("POST", "/mqtt/publish") => mqtt_publish(query, body),
        ("GET", "/tcp/echo") => Ok(tcp_echo(query.get("addr")?, query.get("message")?)),
        ("GET", "/tcp/listen") => Ok(tcp_listen(query.get("addr")?)),
        _ => Ok(Reply::new(404, format!("no route {method} {path}"))),
    }
}

fn number<T: std::str::FromStr>(query: &Query, name: &str, default: T) -> Check<T> {
    match query.get(name) {
        Ok(text) => text
            .parse()
            .map_err(|_| format!("query: {name}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn mqtt_publish(query: &Query, payload: &[u8]) -> Check {
    let qos = match query.get("qos")? {
        "0" => Qos::AtMostOnce,
        "1" => Qos::AtLeastOnce,
        "2" => Qos::ExactlyOnce,
        other => return Err(format!("query: qos={other:?} is not 0, 1 or 2")),
    };
    let count: u32 = number(query, "count", 1)?;
    let keep_alive: u64 = number(query, "keep_alive", 30)?;
    let connection = match Connection::open(
        query.get("address")?,
        query.get("username")?,
        query.get("password")?,
        keep_alive,
    ) {
        Ok(connection) => connection,
        Err(e) => return Ok(Reply::ok(format!("error: {e:?}"))),
    };
    let topic = query.get("topic")?;
    for _ in 0..count {
        if let Err(e) = connection.publish(topic, &payload.to_vec(), qos) {
            return Ok(Reply::ok(format!("error: {e:?}")));
        }
    }
    Ok(Reply::ok(format!("published {count}")))
}

fn tcp_echo(addr: &str, message: &str) -> Reply {
    let result = (|| {
        let mut stream = TcpStream::connect(addr)?;
        stream.write_all(message.as_bytes())?;
        stream.shutdown(Shutdown::Write)?;
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed)?;
        Ok::<_, std::io::Error>(echoed)
    })();
    match result {
        Ok(echoed) => Reply::ok([b"echo ".as_slice(), &echoed].concat()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Reply::ok("denied"),
        Err(e) => Reply::ok(format!("error: {:?}: {e}", e.kind())),
    }
}

fn tcp_listen(addr: &str) -> Reply {
    match TcpListener::bind(addr) {
        Ok(_) => Reply::ok("listening"),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Reply::ok("denied"),
        Err(e) => Reply::ok(format!("error: {:?}: {e}", e.kind())),
    }
}

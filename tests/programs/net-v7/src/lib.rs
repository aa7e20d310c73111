//! `net-v7`: outbound networking through the Spin Rust SDK 7.0 (WASI 0.3,
//! `#[http_service]`): `spin:mqtt/mqtt@3.0.0` (async) and raw TCP through
//! `wasi:sockets/types@0.3.0` (the `wasip3` bindings the SDK re-exports).
//!
//! Same conventions as `net-v5`:
//!
//! - `POST /mqtt/publish?address=A&username=U&password=P&topic=T&qos=Q[&count=N][&keep_alive=K]`:
//!   as in `net-v5`, through `spin:mqtt@3.0.0`. `published N` or
//!   `error: <Debug of the error>`.
//! - `GET /tcp/echo?addr=IP:PORT&message=M`: a WASI 0.3 `tcp-socket`
//!   connects to the IP address (no name lookup), sends `M` and closes its
//!   send stream, then receives until the peer closes. `echo <what came
//!   back>`, `denied` when creating or connecting the socket fails with
//!   `access-denied`, or
//!   `error: <step>: <error-code>`.

use std::net::SocketAddr;

use bytes::Bytes;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, HeaderMap, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::mqtt::{Connection, Qos};
use spin_sdk::wasip3::sockets::types::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, TcpSocket,
};
use spin_sdk::wasip3::wit_stream;

use caps_common::{Check, Query, Reply};

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
        ("POST", "/mqtt/publish") => mqtt_publish(query, body).await,
        ("GET", "/tcp/echo") => tcp_echo(query.get("addr")?, query.get("message")?).await,
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

async fn mqtt_publish(query: &Query, payload: &[u8]) -> Check {
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
    )
    .await
    {
        Ok(connection) => connection,
        Err(e) => return Ok(Reply::ok(format!("error: {e:?}"))),
    };
    let topic = query.get("topic")?;
    for _ in 0..count {
        if let Err(e) = connection.publish(topic, payload.to_vec(), qos).await {
            return Ok(Reply::ok(format!("error: {e:?}")));
        }
    }
    Ok(Reply::ok(format!("published {count}")))
}

async fn tcp_echo(addr: &str, message: &str) -> Check {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("query: addr={addr:?} is not IP:PORT"))?;
    let (family, remote) = match addr {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port: v4.port(),
                    address: (a, b, c, d),
                }),
            )
        }
        SocketAddr::V6(v6) => {
            let s = v6.ip().segments();
            (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port: v6.port(),
                    flow_info: 0,
                    address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                    scope_id: 0,
                }),
            )
        }
    };
    let error = |step: &str, e: ErrorCode| Ok(Reply::ok(format!("error: {step}: {e:?}")));
    // Without a TCP grant the host refuses the socket itself.
    let socket = match TcpSocket::create(family) {
        Ok(socket) => socket,
        Err(ErrorCode::AccessDenied) => return Ok(Reply::ok("denied")),
        Err(e) => return error("create", e),
    };
    match socket.connect(remote).await {
        Ok(()) => {}
        Err(ErrorCode::AccessDenied) => return Ok(Reply::ok("denied")),
        Err(e) => return error("connect", e),
    }
    let (mut writer, reader) = wit_stream::new::<u8>();
    let sent = socket.send(reader);
    let unwritten = writer.write_all(message.as_bytes().to_vec()).await;
    if !unwritten.is_empty() {
        return Err(format!("send: {} bytes not written", unwritten.len()));
    }
    // Closing the stream ends the send, which shuts down the write side.
    drop(writer);
    if let Err(e) = sent.await {
        return error("send", e);
    }
    let (data, done) = socket.receive();
    let echoed = data.collect().await;
    if let Err(e) = done.await {
        return error("receive", e);
    }
    Ok(Reply::ok([b"echo ".as_slice(), &echoed].concat()))
}

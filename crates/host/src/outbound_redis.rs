//! Outbound Redis: `fermyon:spin/redis@2.0.0`, `spin:redis/redis@3.0.0` (its WASI 0.3
//! async form) and Spin 1.x's unversioned `fermyon:spin/redis` (an address per call, a
//! connection for the call's length). `open` takes a `redis://` URL, or `rediss://` for TLS (the certificate
//! checked as for every service, see [`wisp_outbound::tls`]); the host must be granted
//! by `allowed_outbound_hosts` (`redis://host:port`, `rediss://host:port`) and resolve
//! outside the blocked networks, otherwise the guest gets `invalid-address` and the
//! log says what to add.
//! Each open handle is one multiplexed connection to the checked address.

use crate::bindings::fermyon::spin::redis as v2;
use crate::bindings::spin::redis::redis as v3;
use crate::capability::Capability;
use crate::spin1_bindings::fermyon::spin::redis as v1;
use crate::spin1_bindings::fermyon::spin::redis_types as v1_types;
use crate::{Capabilities, CapabilitiesCtx, CapabilitiesView, ComponentCapabilities};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, Value};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Accessor, Linker, Resource};
use wisp_telemetry::Span;

/// The outbound Redis capability. It needs no preparation: what a component may reach is
/// the shared outbound networking policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundRedis;

impl Capability for OutboundRedis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        v2::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v3::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v1_types::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v1::add_to_linker::<T, Capabilities>(linker, crate::view)
    }
}

/// Bound on resolving and connecting (all addresses together), and on each command's
/// answer; both are cut short by the instance's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest reply the host buffers for a guest (a `GET` of a huge value, `KEYS *`, ...);
/// larger ones are refused with `other`.
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// An open outbound Redis connection.
pub struct RedisConnection {
    conn: MultiplexedConnection,
    /// Counts against [`crate::MAX_SERVICE_CONNECTIONS`] while the guest holds it.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A failure, before it is expressed in one version's WIT error type.
#[derive(Debug)]
enum Failure {
    InvalidAddress,
    TooManyConnections,
    TypeError,
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::InvalidAddress => f.write_str("invalid address"),
            Failure::TooManyConnections => f.write_str("too many connections"),
            Failure::TypeError => f.write_str("type error"),
            Failure::Other(message) => f.write_str(message),
        }
    }
}

impl From<redis::RedisError> for Failure {
    fn from(error: redis::RedisError) -> Self {
        match error.kind() {
            ErrorKind::UnexpectedReturnType => Failure::TypeError,
            _ if error.code() == Some("WRONGTYPE") => Failure::TypeError,
            _ => Failure::Other(error.to_string()),
        }
    }
}

/// Checks the address against the component's grants and connects to the checked
/// address (never to a second DNS answer), within `limit`.
async fn connect(
    caps: &ComponentCapabilities,
    address: &str,
    limit: Duration,
) -> Result<RedisConnection, Failure> {
    let Some(permit) = crate::service_connection_permit() else {
        return Err(Failure::TooManyConnections);
    };
    match tokio::time::timeout(limit, connect_checked(caps, address, limit)).await {
        Ok(Ok(conn)) => Ok(RedisConnection {
            conn,
            _permit: permit,
        }),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(Failure::Other(format!(
            "no connection within {limit:?}; check that the server is reachable"
        ))),
    }
}

async fn connect_checked(
    caps: &ComponentCapabilities,
    address: &str,
    limit: Duration,
) -> Result<MultiplexedConnection, Failure> {
    let invalid = |why: String| {
        tracing::warn!(component = %caps.id(), "component `{}`: redis address refused: {why}", caps.id());
        Failure::InvalidAddress
    };
    let (scheme, plain, verify) = split_tls(address);
    let client = redis::Client::open(plain.as_str()).map_err(|e| {
        invalid(format!(
            "{e}; expected redis://[user:password@]host[:port][/db] (rediss:// for TLS)"
        ))
    })?;
    let info = client.get_connection_info().clone();
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        other => return Err(invalid(format!("{other:?} is not a TCP address"))),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let target = caps
        .service_target(scheme, &host, port)
        .await
        .map_err(|e| match e {
            wisp_outbound::ServiceError::Lookup { .. } => Failure::Other(e.to_string()),
            // Spin's redis interface has no variant that carries the reason; the log does.
            _ => invalid(e.to_string()),
        })?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut last_error = None;
    for addr in &target.addresses {
        let attempt = async {
            let Some(verify) = verify else {
                let info = info
                    .clone()
                    .set_addr(ConnectionAddr::Tcp(addr.ip().to_string(), addr.port()));
                return redis::Client::open(info)
                    .map_err(|e| e.to_string())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| e.to_string());
            };
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let tls = caps
                .connect_tls(&host, verify, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (conn, driver) =
                MultiplexedConnection::new_with_config(info.redis_settings(), tls, config.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(driver);
            Ok(conn)
        };
        match attempt.await {
            Ok(conn) => {
                caps.count_service(scheme, wisp_metrics::OutboundOutcome::Ok);
                return Ok(conn);
            }
            Err(e) => last_error = Some(e),
        }
    }
    caps.count_service(scheme, wisp_metrics::OutboundOutcome::Error);
    Err(Failure::Other(format!(
        "cannot connect to {}: {}",
        target.describe(),
        last_error.unwrap_or_else(|| "no address".to_owned())
    )))
}

/// The grant scheme, the address as plain `redis://` for the parser, and for
/// `rediss://` how the certificate is checked: fully, or not at all with the redis
/// crate's `#insecure` fragment.
fn split_tls(address: &str) -> (&'static str, String, Option<wisp_outbound::Verify>) {
    let tls = address
        .get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if !tls {
        return ("redis", address.to_owned(), None);
    }
    let (rest, verify) = match address[9..].strip_suffix("#insecure") {
        Some(rest) => (rest, wisp_outbound::Verify::Nothing),
        None => (&address[9..], wisp_outbound::Verify::Full),
    };
    ("rediss", format!("redis://{rest}"), Some(verify))
}

/// The commands, shared by both versions.
mod ops {
    use super::*;

    async fn query<T: redis::FromRedisValue>(
        conn: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Result<T, Failure> {
        let value: Value = cmd.query_async(conn).await?;
        let size = reply_size(&value);
        if size > MAX_REPLY_BYTES {
            return Err(Failure::Other(format!(
                "the reply is {size} bytes, more than the {MAX_REPLY_BYTES} a guest may receive at once; ask for less (e.g. SCAN instead of KEYS)"
            )));
        }
        T::from_redis_value(value).map_err(|e| Failure::from(redis::RedisError::from(e)))
    }

    /// Bytes of payload in a reply, nested values included.
    fn reply_size(value: &Value) -> usize {
        match value {
            Value::BulkString(b) | Value::BigNumber(b) => b.len(),
            Value::SimpleString(s) => s.len(),
            Value::VerbatimString { text, .. } => text.len(),
            Value::Array(items) | Value::Set(items) => items.iter().map(reply_size).sum(),
            Value::Push { data, .. } => data.iter().map(reply_size).sum(),
            Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| reply_size(k) + reply_size(v))
                .sum(),
            Value::Attribute { data, .. } => reply_size(data),
            _ => 8,
        }
    }

    pub(super) async fn publish(
        mut conn: MultiplexedConnection,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), Failure> {
        query::<i64>(&mut conn, redis::cmd("PUBLISH").arg(channel).arg(payload)).await?;
        Ok(())
    }

    pub(super) async fn get(
        mut conn: MultiplexedConnection,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure> {
        query(&mut conn, redis::cmd("GET").arg(key)).await
    }

    pub(super) async fn set(
        mut conn: MultiplexedConnection,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure> {
        query::<()>(&mut conn, redis::cmd("SET").arg(key).arg(value)).await
    }

    pub(super) async fn incr(mut conn: MultiplexedConnection, key: String) -> Result<i64, Failure> {
        query(&mut conn, redis::cmd("INCR").arg(key)).await
    }

    pub(super) async fn del(
        mut conn: MultiplexedConnection,
        keys: Vec<String>,
    ) -> Result<u32, Failure> {
        if keys.is_empty() {
            return Ok(0);
        }
        query(&mut conn, redis::cmd("DEL").arg(keys)).await
    }

    pub(super) async fn sadd(
        mut conn: MultiplexedConnection,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, Failure> {
        query(&mut conn, redis::cmd("SADD").arg(key).arg(values)).await
    }

    pub(super) async fn smembers(
        mut conn: MultiplexedConnection,
        key: String,
    ) -> Result<Vec<String>, Failure> {
        query(&mut conn, redis::cmd("SMEMBERS").arg(key)).await
    }

    pub(super) async fn srem(
        mut conn: MultiplexedConnection,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, Failure> {
        query(&mut conn, redis::cmd("SREM").arg(key).arg(values)).await
    }

    /// Any command; the reply is flattened into a list, as Spin does.
    pub(super) async fn execute(
        mut conn: MultiplexedConnection,
        command: String,
        arguments: Vec<Argument>,
    ) -> Result<Vec<Reply>, Failure> {
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                Argument::Int(i) => cmd.arg(i),
                Argument::Binary(b) => cmd.arg(b),
            };
        }
        let value: Value = query(&mut conn, &cmd).await?;
        let mut replies = Vec::new();
        flatten(value, &mut replies)?;
        Ok(replies)
    }

    fn flatten(value: Value, out: &mut Vec<Reply>) -> Result<(), Failure> {
        match value {
            Value::Nil => out.push(Reply::Nil),
            Value::Int(i) => out.push(Reply::Int(i)),
            Value::BulkString(bytes) => out.push(Reply::Binary(bytes)),
            Value::SimpleString(s) => out.push(Reply::Status(s)),
            Value::Okay => out.push(Reply::Status("OK".to_owned())),
            Value::Boolean(b) => out.push(Reply::Int(i64::from(b))),
            Value::Double(d) => out.push(Reply::Binary(d.to_string().into_bytes())),
            Value::VerbatimString { text, .. } => out.push(Reply::Binary(text.into_bytes())),
            Value::BigNumber(n) => out.push(Reply::Binary(n)),
            Value::Array(items) | Value::Set(items) => {
                for item in items {
                    flatten(item, out)?;
                }
            }
            Value::Map(pairs) => {
                for (key, value) in pairs {
                    flatten(key, out)?;
                    flatten(value, out)?;
                }
            }
            Value::Attribute { data, .. } => flatten(*data, out)?,
            Value::Push { data, .. } => {
                for item in data {
                    flatten(item, out)?;
                }
            }
            Value::ServerError(e) => return Err(Failure::Other(format!("{e:?}"))),
            // `Value` is non-exhaustive; a future reply kind is not silently dropped.
            other => return Err(Failure::Other(format!("unsupported redis reply {other:?}"))),
        }
        Ok(())
    }

    pub(super) enum Argument {
        Int(i64),
        Binary(Vec<u8>),
    }

    pub(super) enum Reply {
        Nil,
        Status(String),
        Int(i64),
        Binary(Vec<u8>),
    }
}

impl CapabilitiesCtx<'_> {
    /// Takes a handle slot before connecting, so a guest at its limit opens no socket.
    fn reserve_redis(&mut self) -> Result<Duration, Failure> {
        if !self.state.reserve_handle() {
            return Err(Failure::TooManyConnections);
        }
        Ok(self.state.bounded(CONNECT_TIMEOUT))
    }

    /// Stores the connection in the reserved slot, or gives the slot back.
    fn push_redis(
        &mut self,
        connection: Result<RedisConnection, Failure>,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, Failure>> {
        let connection = match connection {
            Ok(connection) => connection,
            Err(failure) => {
                self.state.release_handle();
                return Ok(Err(failure));
            }
        };
        match self.table.push(connection) {
            Ok(handle) => Ok(Ok(handle)),
            Err(e) => {
                self.state.release_handle();
                Err(e.into())
            }
        }
    }

    /// The connection, how long its next command (`operation`) may take, and its span
    /// when the request is traced.
    fn redis_call(
        &self,
        handle: &Resource<RedisConnection>,
        operation: &str,
    ) -> wasmtime::Result<(MultiplexedConnection, Duration, Option<Span>)> {
        Ok((
            self.table.get(handle)?.conn.clone(),
            self.state.bounded(RESPONSE_TIMEOUT),
            self.redis_command_span(operation),
        ))
    }

    /// The span of one command, named as Redis spells commands; the name is only built
    /// for a traced request.
    fn redis_command_span(&self, operation: &str) -> Option<Span> {
        self.state.trace().and_then(|_| {
            self.state
                .service_span("redis", &operation.to_ascii_uppercase())
        })
    }

    fn redis_connect_span(&self) -> Option<Span> {
        self.state.service_span("redis", "connect")
    }

    fn close_redis(&mut self, handle: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.release_handle();
        Ok(())
    }

    fn caps(&self) -> Arc<ComponentCapabilities> {
        self.state.caps.clone()
    }
}

/// The per-version glue: error, argument and reply conversions.
macro_rules! redis_conversions {
    ($wit:ident) => {
        pub(super) fn error(failure: super::Failure) -> $wit::Error {
            match failure {
                super::Failure::InvalidAddress => $wit::Error::InvalidAddress,
                super::Failure::TooManyConnections => $wit::Error::TooManyConnections,
                super::Failure::TypeError => $wit::Error::TypeError,
                super::Failure::Other(message) => $wit::Error::Other(message),
            }
        }

        pub(super) fn arguments(arguments: Vec<$wit::RedisParameter>) -> Vec<super::ops::Argument> {
            arguments
                .into_iter()
                .map(|a| match a {
                    $wit::RedisParameter::Int64(i) => super::ops::Argument::Int(i),
                    $wit::RedisParameter::Binary(b) => super::ops::Argument::Binary(b),
                })
                .collect()
        }

        pub(super) fn replies(replies: Vec<super::ops::Reply>) -> Vec<$wit::RedisResult> {
            replies
                .into_iter()
                .map(|r| match r {
                    super::ops::Reply::Nil => $wit::RedisResult::Nil,
                    super::ops::Reply::Status(s) => $wit::RedisResult::Status(s),
                    super::ops::Reply::Int(i) => $wit::RedisResult::Int64(i),
                    super::ops::Reply::Binary(b) => $wit::RedisResult::Binary(b),
                })
                .collect()
        }
    };
}

mod convert_v2 {
    use super::*;
    redis_conversions!(v2);
}

mod convert_v3 {
    use super::*;
    redis_conversions!(v3);
}

/// Spin 1.x's parameters and replies (its error type has no cases to convert).
mod convert_v1 {
    use super::*;

    pub(super) fn arguments(arguments: Vec<v1_types::RedisParameter>) -> Vec<super::ops::Argument> {
        arguments
            .into_iter()
            .map(|a| match a {
                v1_types::RedisParameter::Int64(i) => super::ops::Argument::Int(i),
                v1_types::RedisParameter::Binary(b) => super::ops::Argument::Binary(b),
            })
            .collect()
    }

    pub(super) fn replies(replies: Vec<super::ops::Reply>) -> Vec<v1_types::RedisResult> {
        replies
            .into_iter()
            .map(|r| match r {
                super::ops::Reply::Nil => v1_types::RedisResult::Nil,
                super::ops::Reply::Status(s) => v1_types::RedisResult::Status(s),
                super::ops::Reply::Int(i) => v1_types::RedisResult::Int64(i),
                super::ops::Reply::Binary(b) => v1_types::RedisResult::Binary(b),
            })
            .collect()
    }
}

impl v2::Host for CapabilitiesCtx<'_> {}

/// The commands with the same shape in both versions: `(connection, args) -> result`.
/// Each macro below expands this list for one version.
macro_rules! simple_commands {
    ($expand:ident) => {
        $expand! {
            publish(channel: String, payload: Vec<u8>) -> ();
            get(key: String) -> Option<Vec<u8>>;
            set(key: String, value: Vec<u8>) -> ();
            incr(key: String) -> i64;
            del(keys: Vec<String>) -> u32;
            sadd(key: String, values: Vec<String>) -> u32;
            smembers(key: String) -> Vec<String>;
            srem(key: String, values: Vec<String>) -> u32;
        }
    };
}

macro_rules! v2_commands {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            async fn $name(
                &mut self,
                c: Resource<RedisConnection>,
                $($arg: $ty),*
            ) -> wasmtime::Result<Result<$ret, v2::Error>> {
                let (conn, limit, span) = self.redis_call(&c, stringify!($name))?;
                let result = within(limit, ops::$name(conn, $($arg),*)).await;
                wisp_telemetry::end_with(span, &result);
                Ok(result.map_err(convert_v2::error))
            }
        )*
    };
}

macro_rules! v3_commands {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            async fn $name(
                accessor: &Accessor<T, Self>,
                c: Resource<RedisConnection>,
                $($arg: $ty),*
            ) -> wasmtime::Result<Result<$ret, v3::Error>> {
                let (conn, limit, span) = v3_call(accessor, &c, stringify!($name))?;
                let result = within(limit, ops::$name(conn, $($arg),*)).await;
                wisp_telemetry::end_with(span, &result);
                Ok(result.map_err(convert_v3::error))
            }
        )*
    };
}

impl v2::HostConnection for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, v2::Error>> {
        let span = self.redis_connect_span();
        let limit = match self.reserve_redis() {
            Ok(limit) => limit,
            Err(e) => {
                wisp_telemetry::end_with(span, &Err::<(), _>(&e));
                return Ok(Err(convert_v2::error(e)));
            }
        };
        let connection = connect(&self.caps(), &address, limit).await;
        wisp_telemetry::end_with(span, &connection);
        Ok(self.push_redis(connection)?.map_err(convert_v2::error))
    }

    simple_commands!(v2_commands);

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v2::RedisResult>, v2::Error>> {
        let (conn, limit, span) = self.redis_call(&c, &command)?;
        let result = within(
            limit,
            ops::execute(conn, command, convert_v2::arguments(arguments)),
        )
        .await;
        wisp_telemetry::end_with(span, &result);
        Ok(result.map(convert_v2::replies).map_err(convert_v2::error))
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.close_redis(c)
    }
}

// ---- fermyon:spin/redis (Spin 1.x) -----------------------------------------------

impl CapabilitiesCtx<'_> {
    /// One Spin 1.x call: connects to `address` (checked as `open` checks it, holding a
    /// handle slot), runs `op`, and closes the connection. The interface's one error case
    /// carries no reason, so the log says what failed.
    async fn v1_redis<R>(
        &mut self,
        address: &str,
        operation: &str,
        op: impl AsyncFnOnce(MultiplexedConnection) -> Result<R, Failure>,
    ) -> wasmtime::Result<Result<R, v1_types::Error>> {
        let span = self.redis_connect_span();
        let result = match self.reserve_redis() {
            Ok(limit) => {
                let connection = connect(&self.caps(), address, limit).await;
                wisp_telemetry::end_with(span, &connection);
                let result = match connection {
                    Ok(connection) => {
                        let span = self.redis_command_span(operation);
                        let limit = self.state.bounded(RESPONSE_TIMEOUT);
                        let result = within(limit, op(connection.conn.clone())).await;
                        wisp_telemetry::end_with(span, &result);
                        result
                    }
                    Err(failure) => Err(failure),
                };
                self.state.release_handle();
                result
            }
            Err(failure) => {
                wisp_telemetry::end_with(span, &Err::<(), _>(&failure));
                Err(failure)
            }
        };
        Ok(result.map_err(|failure| {
            let id = self.state.caps.id();
            tracing::warn!(component = %id, "component `{id}`: redis {operation} failed: {failure}");
            v1_types::Error::Error
        }))
    }
}

impl v1_types::Host for CapabilitiesCtx<'_> {}

impl v1::Host for CapabilitiesCtx<'_> {
    async fn publish(
        &mut self,
        address: String,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v1_types::Error>> {
        self.v1_redis(&address, "publish", async |c| {
            ops::publish(c, channel, payload).await
        })
        .await
    }

    async fn get(
        &mut self,
        address: String,
        key: String,
    ) -> wasmtime::Result<Result<Vec<u8>, v1_types::Error>> {
        // Spin 1.x answers a missing key with an empty payload.
        self.v1_redis(&address, "get", async |c| {
            ops::get(c, key).await.map(Option::unwrap_or_default)
        })
        .await
    }

    async fn set(
        &mut self,
        address: String,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v1_types::Error>> {
        self.v1_redis(&address, "set", async |c| ops::set(c, key, value).await)
            .await
    }

    async fn incr(
        &mut self,
        address: String,
        key: String,
    ) -> wasmtime::Result<Result<i64, v1_types::Error>> {
        self.v1_redis(&address, "incr", async |c| ops::incr(c, key).await)
            .await
    }

    async fn del(
        &mut self,
        address: String,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<i64, v1_types::Error>> {
        self.v1_redis(&address, "del", async |c| {
            ops::del(c, keys).await.map(i64::from)
        })
        .await
    }

    async fn sadd(
        &mut self,
        address: String,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<i64, v1_types::Error>> {
        self.v1_redis(&address, "sadd", async |c| {
            ops::sadd(c, key, values).await.map(i64::from)
        })
        .await
    }

    async fn smembers(
        &mut self,
        address: String,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v1_types::Error>> {
        self.v1_redis(&address, "smembers", async |c| ops::smembers(c, key).await)
            .await
    }

    async fn srem(
        &mut self,
        address: String,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<i64, v1_types::Error>> {
        self.v1_redis(&address, "srem", async |c| {
            ops::srem(c, key, values).await.map(i64::from)
        })
        .await
    }

    async fn execute(
        &mut self,
        address: String,
        command: String,
        arguments: Vec<v1_types::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v1_types::RedisResult>, v1_types::Error>> {
        let arguments = convert_v1::arguments(arguments);
        let operation = command.clone();
        self.v1_redis(&address, &operation, async |c| {
            ops::execute(c, command, arguments).await
        })
        .await
        .map(|result| result.map(convert_v1::replies))
    }
}

fn v3_call<T>(
    accessor: &Accessor<T, Capabilities>,
    handle: &Resource<RedisConnection>,
    operation: &str,
) -> wasmtime::Result<(MultiplexedConnection, Duration, Option<Span>)> {
    accessor.with(|mut access| access.get().redis_call(handle, operation))
}

/// Runs one command, bounded by `limit`.
async fn within<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
        Err(Failure::Other(format!(
            "no answer from redis within {limit:?}"
        )))
    })
}

impl v3::Host for CapabilitiesCtx<'_> {}

impl v3::HostConnection for CapabilitiesCtx<'_> {
    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.close_redis(c)
    }
}

impl<T> v3::HostConnectionWithStore<T> for Capabilities {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, v3::Error>> {
        let (span, reserved) = accessor.with(|mut access| {
            let mut ctx = access.get();
            let span = ctx.redis_connect_span();
            (span, ctx.reserve_redis().map(|limit| (ctx.caps(), limit)))
        });
        let (caps, limit) = match reserved {
            Ok(reserved) => reserved,
            Err(e) => {
                wisp_telemetry::end_with(span, &Err::<(), _>(&e));
                return Ok(Err(convert_v3::error(e)));
            }
        };
        let connection = connect(&caps, &address, limit).await;
        wisp_telemetry::end_with(span, &connection);
        Ok(accessor
            .with(|mut access| access.get().push_redis(connection))?
            .map_err(convert_v3::error))
    }

    simple_commands!(v3_commands);

    async fn execute(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v3::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v3::RedisResult>, v3::Error>> {
        let (conn, limit, span) = v3_call(accessor, &c, &command)?;
        let result = within(
            limit,
            ops::execute(conn, command, convert_v3::arguments(arguments)),
        )
        .await;
        wisp_telemetry::end_with(span, &result);
        Ok(result.map(convert_v3::replies).map_err(convert_v3::error))
    }
}

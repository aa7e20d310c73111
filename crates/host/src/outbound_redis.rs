//! Outbound Redis: `fermyon:spin/redis@2.0.0` and `spin:redis/redis@3.0.0` (its WASI 0.3
//! async form). `open` takes a `redis://` URL; the host must be granted by
//! `allowed_outbound_hosts` (`redis://host:port`) and resolve outside the blocked
//! networks, otherwise the guest gets `invalid-address` and the log says what to add.
//! Each open handle is one multiplexed connection to the checked address.

use crate::bindings::fermyon::spin::redis as v2;
use crate::bindings::spin::redis::redis as v3;
use crate::{Capabilities, CapabilitiesCtx, ComponentCapabilities};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, Value};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Accessor, Resource};

/// Bound on connecting, and on each command's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// An open outbound Redis connection.
pub struct RedisConnection {
    conn: MultiplexedConnection,
}

/// A failure, before it is expressed in one version's WIT error type.
#[derive(Debug)]
enum Failure {
    InvalidAddress,
    TooManyConnections,
    TypeError,
    Other(String),
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
/// address (never to a second DNS answer).
async fn connect(caps: &ComponentCapabilities, address: &str) -> Result<RedisConnection, Failure> {
    let invalid = |why: String| {
        tracing::warn!(component = %caps.id(), "component `{}`: redis address refused: {why}", caps.id());
        Failure::InvalidAddress
    };
    let client = redis::Client::open(address).map_err(|e| {
        invalid(format!(
            "{e}; expected redis://[user:password@]host[:port][/db]"
        ))
    })?;
    let info = client.get_connection_info().clone();
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        ConnectionAddr::TcpTls { .. } => {
            return Err(invalid(
                "rediss:// (TLS) is not supported yet; use redis:// on a trusted network".into(),
            ));
        }
        other => return Err(invalid(format!("{other:?} is not a TCP address"))),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let target = caps
        .service_target("redis", &host, port)
        .await
        .map_err(|_| Failure::InvalidAddress)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut last_error = None;
    for addr in &target.addresses {
        let info = info
            .clone()
            .set_addr(ConnectionAddr::Tcp(addr.ip().to_string(), addr.port()));
        let attempt = async {
            redis::Client::open(info)?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => return Ok(RedisConnection { conn }),
            Ok(Err(e)) => last_error = Some(e.to_string()),
            Err(_) => last_error = Some(format!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    Err(Failure::Other(format!(
        "cannot connect to {}: {}",
        target.describe(),
        last_error.unwrap_or_else(|| "no address".to_owned())
    )))
}

/// The commands, shared by both versions.
mod ops {
    use super::*;

    async fn query<T: redis::FromRedisValue>(
        conn: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Result<T, Failure> {
        Ok(cmd.query_async(conn).await?)
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
    fn redis_conn(
        &self,
        handle: &Resource<RedisConnection>,
    ) -> wasmtime::Result<MultiplexedConnection> {
        Ok(self.table.get(handle)?.conn.clone())
    }

    fn push_redis(
        &mut self,
        connection: RedisConnection,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, Failure>> {
        if !self.state.reserve_handle() {
            return Ok(Err(Failure::TooManyConnections));
        }
        Ok(Ok(self.table.push(connection)?))
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

impl v2::Host for CapabilitiesCtx<'_> {}

impl v2::HostConnection for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, v2::Error>> {
        let connection = match connect(&self.caps(), &address).await {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(convert_v2::error(e))),
        };
        Ok(self.push_redis(connection)?.map_err(convert_v2::error))
    }

    async fn publish(
        &mut self,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::publish(conn, channel, payload)
            .await
            .map_err(convert_v2::error))
    }

    async fn get(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::get(conn, key).await.map_err(convert_v2::error))
    }

    async fn set(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::set(conn, key, value).await.map_err(convert_v2::error))
    }

    async fn incr(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::incr(conn, key).await.map_err(convert_v2::error))
    }

    async fn del(
        &mut self,
        c: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::del(conn, keys).await.map_err(convert_v2::error))
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::sadd(conn, key, values)
            .await
            .map_err(convert_v2::error))
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::smembers(conn, key).await.map_err(convert_v2::error))
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(ops::srem(conn, key, values)
            .await
            .map_err(convert_v2::error))
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v2::RedisResult>, v2::Error>> {
        let conn = self.redis_conn(&c)?;
        Ok(
            ops::execute(conn, command, convert_v2::arguments(arguments))
                .await
                .map(convert_v2::replies)
                .map_err(convert_v2::error),
        )
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.close_redis(c)
    }
}

fn v3_conn<T>(
    accessor: &Accessor<T, Capabilities>,
    handle: &Resource<RedisConnection>,
) -> wasmtime::Result<MultiplexedConnection> {
    accessor.with(|mut access| access.get().redis_conn(handle))
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
        let caps = accessor.with(|mut access| access.get().caps());
        let connection = match connect(&caps, &address).await {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(convert_v3::error(e))),
        };
        Ok(accessor
            .with(|mut access| access.get().push_redis(connection))?
            .map_err(convert_v3::error))
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::publish(conn, channel, payload)
            .await
            .map_err(convert_v3::error))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::get(conn, key).await.map_err(convert_v3::error))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::set(conn, key, value).await.map_err(convert_v3::error))
    }

    async fn incr(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::incr(conn, key).await.map_err(convert_v3::error))
    }

    async fn del(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::del(conn, keys).await.map_err(convert_v3::error))
    }

    async fn sadd(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::sadd(conn, key, values)
            .await
            .map_err(convert_v3::error))
    }

    async fn smembers(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::smembers(conn, key).await.map_err(convert_v3::error))
    }

    async fn srem(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(ops::srem(conn, key, values)
            .await
            .map_err(convert_v3::error))
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v3::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v3::RedisResult>, v3::Error>> {
        let conn = v3_conn(accessor, &c)?;
        Ok(
            ops::execute(conn, command, convert_v3::arguments(arguments))
                .await
                .map(convert_v3::replies)
                .map_err(convert_v3::error),
        )
    }
}

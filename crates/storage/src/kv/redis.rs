//! Key-value store in a Redis database: the whole database of the URL.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, RedisError};

use super::{KvBackend, KvError, Value};

/// Bound on every round trip (and on connecting), so a stuck server turns into
/// an error instead of a hung guest.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Keys asked per SCAN round trip.
const SCAN_COUNT: usize = 1000;

/// Compare-and-swap as one server-side step. ARGV[1] is "1" when a value is
/// expected (ARGV[2]) and "0" when the key must be absent; ARGV[3] is the new
/// value. Lua strings are byte strings, so binary values compare exactly.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '1' then
  matches = current == ARGV[2]
else
  matches = current == false
end
if matches then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0
";

pub(super) struct RedisKv {
    conn: ConnectionManager,
    /// The URL without its password, for messages.
    shown: String,
    cas: redis::Script,
}

impl RedisKv {
    pub(super) async fn open(url: &str) -> Result<Self, KvError> {
        let client = redis::Client::open(url).map_err(|err| {
            KvError::Other(format!(
                "invalid redis url {}: {err}; expected redis://[user:password@]host[:port][/db] (rediss:// for TLS)",
                redact_url(url)
            ))
        })?;
        let shown = display_url(client.get_connection_info());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            // Few quick retries: the first connect should fail fast when the
            // server is down, and later requests trigger a reconnect anyway.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let unreachable = |detail: String| {
            let hint = match detail.contains("certificate") {
                true => {
                    "for rediss://, the server's certificate must chain to a root this machine trusts (its certificate store, or the file SSL_CERT_FILE names)"
                }
                false => "check that the server is running and reachable at that address",
            };
            KvError::Other(format!(
                "cannot connect to redis key-value store {shown}: {detail}; {hint}"
            ))
        };
        let conn =
            match tokio::time::timeout(TIMEOUT, ConnectionManager::new_with_config(client, config))
                .await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(err)) => return Err(unreachable(err.to_string())),
                Err(_) => return Err(unreachable(format!("no answer within {TIMEOUT:?}"))),
            };
        Ok(Self {
            conn,
            shown,
            cas: redis::Script::new(CAS_SCRIPT),
        })
    }

    /// Runs one round trip with the timeout, naming the server and the
    /// operation in errors.
    async fn call<T>(
        &self,
        what: impl FnOnce() -> String,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, KvError> {
        match tokio::time::timeout(TIMEOUT, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let hint = if err.is_io_error()
                    || err.is_timeout()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                {
                    "; check that the server is running and reachable"
                } else {
                    ""
                };
                Err(KvError::Other(format!(
                    "{} in redis key-value store {} failed: {err}{hint}",
                    what(),
                    self.shown
                )))
            }
            Err(_) => Err(KvError::Other(format!(
                "{} in redis key-value store {} got no answer within {TIMEOUT:?}; check that the server is running and not overloaded",
                what(),
                self.shown
            ))),
        }
    }
}

impl KvBackend for RedisKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>> {
        let mut conn = self.conn.clone();
        let fut = async move { redis::cmd("GET").arg(key).query_async(&mut conn).await };
        self.call(move || format!("get of key {key:?}"), fut)
            .boxed()
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<(), KvError>> {
        let mut conn = self.conn.clone();
        let fut = async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async::<()>(&mut conn)
                .await
        };
        self.call(move || format!("set of key {key:?}"), fut)
            .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        let mut conn = self.conn.clone();
        let fut = async move {
            redis::cmd("DEL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .map(drop)
        };
        self.call(move || format!("delete of key {key:?}"), fut)
            .boxed()
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, KvError>> {
        let mut conn = self.conn.clone();
        let fut = async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .map(|count| count > 0)
        };
        self.call(move || format!("exists of key {key:?}"), fut)
            .boxed()
    }

    fn get_keys(&self) -> BoxFuture<'_, Result<Vec<String>, KvError>> {
        async move {
            // SCAN, unlike KEYS, never blocks the server for long; it may
            // return a key more than once, hence the set.
            let mut seen = HashSet::new();
            let mut cursor: u64 = 0;
            loop {
                let mut conn = self.conn.clone();
                let fut = async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async::<(u64, Vec<Vec<u8>>)>(&mut conn)
                        .await
                };
                let (next, batch) = self.call(|| "listing keys".to_owned(), fut).await?;
                // Keys written through this API are UTF-8; others (written by
                // other clients) are shown lossily rather than failing the list.
                seen.extend(
                    batch
                        .into_iter()
                        .map(|key| String::from_utf8_lossy(&key).into_owned()),
                );
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok(seen.into_iter().collect())
        }
        .boxed()
    }

    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, KvError>> {
        let mut conn = self.conn.clone();
        let fut = async move {
            redis::cmd("INCRBY")
                .arg(key)
                .arg(delta)
                .query_async::<i64>(&mut conn)
                .await
        };
        self.call(move || format!("increment of key {key:?}"), fut)
            .boxed()
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, KvError>> {
        let mut conn = self.conn.clone();
        let fut = async move {
            let mut invocation = self.cas.key(key);
            match expected {
                Some(value) => invocation.arg("1").arg(value),
                None => invocation.arg("0").arg(""),
            };
            invocation
                .arg(new)
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|written| written == 1)
        };
        self.call(move || format!("compare-and-swap of key {key:?}"), fut)
            .boxed()
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<(String, Value)>, KvError>> {
        async move {
            if keys.is_empty() {
                // MGET without keys is a syntax error.
                return Ok(Vec::new());
            }
            let mut conn = self.conn.clone();
            let count = keys.len();
            let fut = async {
                redis::cmd("MGET")
                    .arg(&keys)
                    .query_async::<Vec<Value>>(&mut conn)
                    .await
            };
            let values = self
                .call(move || format!("get of {count} keys"), fut)
                .await?;
            Ok(keys.into_iter().zip(values).collect())
        }
        .boxed()
    }

    fn set_many(&self, items: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<(), KvError>> {
        async move {
            if items.is_empty() {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            let count = items.len();
            let fut = async move {
                let mut cmd = redis::cmd("MSET");
                for (key, value) in items {
                    cmd.arg(key).arg(value);
                }
                cmd.query_async::<()>(&mut conn).await
            };
            self.call(move || format!("set of {count} keys"), fut).await
        }
        .boxed()
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), KvError>> {
        async move {
            if keys.is_empty() {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            let count = keys.len();
            let fut = async move {
                redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map(drop)
            };
            self.call(move || format!("delete of {count} keys"), fut)
                .await
        }
        .boxed()
    }

    fn describe(&self) -> String {
        format!("redis {}", self.shown)
    }
}

/// The effective address of a connection, with the password masked.
fn display_url(info: &ConnectionInfo) -> String {
    let settings = info.redis_settings();
    let user = match (settings.username(), settings.password()) {
        (Some(user), Some(_)) => format!("{user}:***@"),
        (Some(user), None) => format!("{user}@"),
        (None, Some(_)) => ":***@".to_owned(),
        (None, None) => String::new(),
    };
    let db = settings.db();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{user}{host}:{port}/{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{user}{host}:{port}/{db}"),
        ConnectionAddr::Unix(path) => format!("unix://{}?db={db}", path.display()),
        other => format!("redis {other} db {db}"),
    }
}

/// Masks the password of a URL that may not even parse, for error messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_password_only() {
        assert_eq!(
            redact_url("redis://alice:s3cret@db.example:6380/2"),
            "redis://alice:***@db.example:6380/2"
        );
        assert_eq!(
            redact_url("redis://:s3cret@localhost"),
            "redis://:***@localhost"
        );
        assert_eq!(
            redact_url("redis://localhost:6379/0"),
            "redis://localhost:6379/0"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn display_url_never_shows_password() {
        let client = redis::Client::open("redis://alice:s3cret@127.0.0.1:6390/3").unwrap();
        let shown = display_url(client.get_connection_info());
        assert_eq!(shown, "redis://alice:***@127.0.0.1:6390/3");
        let client = redis::Client::open("redis://127.0.0.1").unwrap();
        assert_eq!(
            display_url(client.get_connection_info()),
            "redis://127.0.0.1:6379/0"
        );
    }
}

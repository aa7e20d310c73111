//! `redis-subscriber-v7`: a Redis-triggered component built with the Spin Rust SDK 7
//! (`#[redis_subscriber]`, WASI 0.3 async export `spin:redis/inbound-redis@3.0.0`).
//!
//! Each message is printed as `got <payload>`; `fail` returns an error; `set <address>
//! <key> <value>` writes through outbound Redis (`spin:redis/redis@3.0.0`).

use anyhow::{Context, bail};
use bytes::Bytes;
use spin_sdk::redis_subscriber;

#[redis_subscriber]
async fn on_message(message: Bytes) -> anyhow::Result<()> {
    let text = std::str::from_utf8(&message).context("payload is not UTF-8")?;
    println!("got {text}");
    if text == "fail" {
        bail!("asked to fail");
    }
    if let Some(rest) = text.strip_prefix("set ") {
        let mut parts = rest.splitn(3, ' ');
        let (Some(address), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("usage: set <address> <key> <value>");
        };
        let connection = spin_sdk::redis::Connection::open(address)
            .await
            .map_err(|e| anyhow::anyhow!("open {address}: {e:?}"))?;
        connection
            .set(key, value)
            .await
            .map_err(|e| anyhow::anyhow!("set {key}: {e:?}"))?;
    }
    Ok(())
}

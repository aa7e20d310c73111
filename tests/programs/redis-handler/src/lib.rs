//! `redis-handler`: a Redis-triggered component built with the Spin Rust SDK 5.2
//! (`#[redis_component]`, WASI 0.2), as Spin apps write them.
//!
//! Each message is printed as `got <payload>` (the test reads Wisp's log), then:
//! - `fail` returns an error (the host logs it with the channel);
//! - `trap` panics (the instance traps; the next message still runs);
//! - `set <address> <key> <value>` writes `key = value` through outbound Redis
//!   (`fermyon:spin/redis@2.0.0`), so the test can read the effect from the server;
//! - `sleep <ms>` sleeps that long (a slow handler, for the trigger's buffer bound).

use anyhow::{Context, bail};
use bytes::Bytes;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    let text = std::str::from_utf8(&message).context("payload is not UTF-8")?;
    println!("got {text}");
    if text == "fail" {
        bail!("asked to fail");
    }
    if text == "trap" {
        panic!("asked to trap");
    }
    if let Some(ms) = text.strip_prefix("sleep ") {
        let ms: u64 = ms.parse().context("usage: sleep <ms>")?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if let Some(rest) = text.strip_prefix("set ") {
        let mut parts = rest.splitn(3, ' ');
        let (Some(address), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("usage: set <address> <key> <value>");
        };
        let connection = spin_sdk::redis::Connection::open(address)
            .map_err(|e| anyhow::anyhow!("open {address}: {e:?}"))?;
        connection
            .set(key, &value.as_bytes().to_vec())
            .map_err(|e| anyhow::anyhow!("set {key}: {e:?}"))?;
    }
    Ok(())
}

use bytes::Bytes;
use spin_sdk::redis_component;

/// Runs once per message published on the channel, in a fresh instance.
#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    println!("{{project-name}} got: {}", String::from_utf8_lossy(&message));
    Ok(())
}

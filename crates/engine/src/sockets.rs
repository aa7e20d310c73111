//! The `wasi:sockets` address check for a component with socket grants: WASI calls it
//! before every bind, listen, connect, accept and datagram, and the component's
//! [`SocketPolicy`](wisp_outbound::SocketPolicy) decides. Listening and accepting are
//! always refused: a guest serves requests through its trigger, never on a port of its
//! own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime_wasi::sockets::SocketAddrUse;
use wisp_host::ComponentCapabilities;
use wisp_metrics::{OutboundKind, OutboundOutcome};
use wisp_outbound::Protocol;

type Check = Pin<Box<dyn Future<Output = bool> + Send + Sync>>;

/// The check for `caps`, whose `sockets()` is set.
pub(crate) fn addr_check(
    caps: Arc<ComponentCapabilities>,
) -> impl Fn(SocketAddr, SocketAddrUse) -> Check + Send + Sync + 'static {
    move |addr, use_| {
        let caps = caps.clone();
        Box::pin(async move { allowed(&caps, addr, use_).await })
    }
}

async fn allowed(caps: &ComponentCapabilities, addr: SocketAddr, use_: SocketAddrUse) -> bool {
    let Some(policy) = caps.sockets() else {
        return false;
    };
    let protocol = match use_ {
        SocketAddrUse::TcpBind => return policy.allows_local_bind(Protocol::Tcp, addr),
        SocketAddrUse::UdpBind => return policy.allows_local_bind(Protocol::Udp, addr),
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => {
            tracing::warn!(component = %caps.id(), "component `{}`: listening for tcp connections is not allowed", caps.id());
            return false;
        }
        SocketAddrUse::TcpConnect => Protocol::Tcp,
        SocketAddrUse::UdpSend => Protocol::Udp,
        // A datagram from a peer the guest may not reach is dropped without a log line
        // and without a name lookup: anyone can send them.
        SocketAddrUse::UdpReceive => {
            return policy.allows_received_from(Protocol::Udp, addr);
        }
    };
    let checked = policy.check_peer(protocol, addr).await;
    // TCP connections are counted when they are let through (their own outcome is
    // WASI's); datagrams are too many to count one by one.
    if protocol == Protocol::Tcp {
        let outcome = match &checked {
            Ok(()) => OutboundOutcome::Ok,
            Err(_) => OutboundOutcome::Denied,
        };
        caps.metrics().outbound(OutboundKind::Tcp, outcome);
    }
    match checked {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(component = %caps.id(), "component `{}`: socket refused: {e}", caps.id());
            false
        }
    }
}

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
use wisp_telemetry::SpanParent;

type Check = Pin<Box<dyn Future<Output = bool> + Send + Sync>>;

/// The check for `caps`, whose `sockets()` is set, in an instance serving the request
/// `trace` (when traced: each TCP connect gets a client span).
pub(crate) fn addr_check(
    caps: Arc<ComponentCapabilities>,
    trace: Option<SpanParent>,
) -> impl Fn(SocketAddr, SocketAddrUse) -> Check + Send + Sync + 'static {
    move |addr, use_| {
        let caps = caps.clone();
        let trace = trace.clone();
        Box::pin(async move { allowed(&caps, trace.as_ref(), addr, use_).await })
    }
}

async fn allowed(
    caps: &ComponentCapabilities,
    trace: Option<&SpanParent>,
    addr: SocketAddr,
    use_: SocketAddrUse,
) -> bool {
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
    // The span covers the grant check (and the name lookup it may need); the connect
    // itself is WASI's and is not timed here.
    let span = match (protocol, trace) {
        (Protocol::Tcp, Some(trace)) => {
            let mut span = trace.client_child("connect");
            span.set("network.transport", "tcp");
            span.set("network.peer.address", addr.ip().to_string());
            span.set("network.peer.port", addr.port());
            Some(span)
        }
        _ => None,
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
    wisp_telemetry::end_with(span, &checked);
    match checked {
        Ok(()) => true,
        Err(e) => {
            let trace_id = trace.map(|t| t.context().trace_id_hex());
            tracing::warn!(
                component = %caps.id(),
                trace_id = trace_id.as_deref(),
                "component `{}`: socket refused: {e}{}",
                caps.id(),
                wisp_telemetry::trace_suffix(trace_id.as_deref())
            );
            false
        }
    }
}

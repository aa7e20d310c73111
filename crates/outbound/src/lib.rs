//! Outbound networking for Wisp: who a guest may talk to, and the client that talks.
//!
//! Sits beside the host capabilities in the data path (`LockedApp` → engine/host →
//! triggers): when a guest sends a `wasi:http` outgoing request, or a capability such as
//! Redis or Postgres opens a connection, the host consults this crate.
//!
//! - [`allowed`]: the component's `allowed_outbound_hosts` from `spin.toml`, parsed once
//!   per component into [`AllowedHosts`], and [`Destination`], which tells a request to
//!   the app itself (`self`), a service-chaining request (`<id>.spin.internal`) and a
//!   real network request apart.
//! - [`blocked`]: the operator's `[outbound_networking] block_networks` from
//!   `runtime-config.toml`, parsed into [`BlockedNetworks`]. Link-local networks (cloud
//!   metadata endpoints) are always blocked unless a component names them explicitly.
//! - [`client`]: [`OutboundClient`], the HTTP/1.1 client that resolves the host itself,
//!   drops blocked addresses *before* dialling, speaks TLS with the webpki roots, never
//!   follows redirects, and enforces connect, first-byte and between-bytes timeouts.
//! - [`service`] and [`sockets`]: the same two checks for Redis/MQTT/database
//!   connections and for the guest's own `wasi:sockets` TCP/UDP sockets.
//! - [`tls`]: TLS to those services, checked against the webpki roots or the
//!   component's `[[client_tls]]` roots.
//!
//! The allowed-hosts check (is this *name* allowed?) and the blocked-networks check (is
//! this *address* allowed?) are separate on purpose: the first is the app author's
//! declaration, the second the operator's policy, applied to the IP address actually
//! dialled so a DNS answer cannot smuggle a request into a blocked network.
//!
//! This crate does not depend on wasmtime; the host maps [`SendError`] to
//! `wasi:http`'s `error-code`.

pub mod allowed;
pub mod blocked;
pub mod client;
pub mod pool;
pub mod service;
pub mod sockets;
pub mod tls;

pub use allowed::{AllowedHosts, Destination};
pub use blocked::BlockedNetworks;
pub use client::{
    ClientTls, ClientTlsSource, HostTls, OutboundClient, ResponseBody, SendError, Timeouts,
    error_chain,
};
pub use service::{ServiceError, ServiceTarget, parse_service_url, resolve_service};
pub use sockets::{Protocol, SocketDenied, SocketPolicy};
pub use tls::{ServiceTlsError, ServiceTlsStream, Verify, config_for_name, connect_service};

/// A configuration entry that could not be parsed.
///
/// Raised when a component's `allowed_outbound_hosts` or the runtime config's
/// `block_networks` is read; the caller adds which component or file it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// An `allowed_outbound_hosts` entry is malformed.
    #[error("invalid allowed_outbound_hosts entry {pattern:?}: {reason}")]
    InvalidAllowedHost {
        /// The entry as written.
        pattern: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A `[outbound_networking] block_networks` entry is malformed.
    #[error("invalid [outbound_networking] block_networks entry {entry:?}: {reason}")]
    InvalidBlockedNetwork {
        /// The entry as written.
        entry: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

//! Outbound MQTT: `fermyon:spin/mqtt@2.0.0` and `spin:mqtt/mqtt@3.0.0` (its WASI 0.3
//! async form), publishing to an MQTT 3.1.1 broker with `rumqttc`.
//!
//! `open` takes `mqtt://host[:port][?client_id=id]` (`mqtts://host:port` for TLS, with
//! the certificate checked for the host, see [`wisp_outbound::config_for_name`]); the
//! host must be granted by `allowed_outbound_hosts` (`mqtt://host:port`,
//! `mqtts://host:port`) and resolve outside the blocked
//! networks, otherwise the guest gets `invalid-address` and the log says what to add.
//! The host connects to the checked address and waits for the broker's CONNACK, so bad
//! credentials fail `open` with `connection-failed`.
//!
//! Each open connection owns one tokio task driving rumqttc's event loop. A publish is
//! handed to that loop and answered once the broker has it: QoS 0 once written, QoS 1
//! on PUBACK, QoS 2 on PUBCOMP, each bounded by [`PUBLISH_TIMEOUT`]. Dropping the
//! guest's handle sends DISCONNECT and ends the task. The connection is not re-opened
//! after a network failure: later publishes fail with the reason, and the guest may
//! `open` again.

use crate::bindings::fermyon::spin::mqtt as v2;
use crate::bindings::spin::mqtt::mqtt as v3;
use crate::capability::Capability;
use crate::{Capabilities, CapabilitiesCtx, CapabilitiesView, ComponentCapabilities};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS,
};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use wasmtime::component::{Accessor, Linker, Resource};
use wisp_telemetry::Span;

/// The outbound MQTT capability. It needs no preparation: what a component may reach is
/// the shared outbound networking policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundMqtt;

impl Capability for OutboundMqtt {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        v2::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v3::add_to_linker::<T, Capabilities>(linker, crate::view)
    }
}

/// Bound on connecting to the broker and receiving its CONNACK, over all its addresses.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a publish being written (QoS 0) or acknowledged (QoS 1 and 2).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a dropped connection may take to send DISCONNECT before its socket closes.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
/// Largest payload one publish may carry (mosquitto accepts up to 256 MiB by default).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// Payload bytes of all publishes in flight in the process at once (queued, being written,
/// or waiting for their acknowledgement): a publish waits for room, up to
/// [`PUBLISH_TIMEOUT`], so many guests each queueing large messages cannot exhaust memory.
pub const MAX_IN_FLIGHT_PAYLOAD: usize = 256 * 1024 * 1024;

/// The process-wide budget of in-flight payload bytes, in KiB.
static IN_FLIGHT: std::sync::LazyLock<PayloadBudget> =
    std::sync::LazyLock::new(|| PayloadBudget::new(MAX_IN_FLIGHT_PAYLOAD));

/// A byte budget for payloads in flight, counted in KiB.
struct PayloadBudget {
    units: Arc<tokio::sync::Semaphore>,
    total: usize,
}

impl PayloadBudget {
    fn new(total: usize) -> Self {
        Self {
            units: Arc::new(tokio::sync::Semaphore::new(total.div_ceil(1024))),
            total,
        }
    }

    /// Room for `bytes`, waiting up to `wait` for publishes in flight to finish.
    async fn reserve(
        &self,
        bytes: usize,
        wait: Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        let units = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let acquire = self.units.clone().acquire_many_owned(units);
        match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Failure::Other(format!(
                "the {} MiB of MQTT payloads the host keeps in flight are in use by other \
                 publishes; retry later or send smaller messages",
                self.total >> 20
            ))),
        }
    }
}

/// MQTT's limit on a topic, username or password (a u16-length-prefixed string).
const MAX_TOPIC: usize = u16::MAX as usize;
/// Publishes one connection may have queued for the event loop at once.
const MAX_QUEUED: usize = 64;
/// Longest `client_id` accepted from the address.
const MAX_CLIENT_ID: usize = 256;

/// An open outbound MQTT connection.
pub struct MqttConnection {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    /// Dropped with the connection, which tells the event-loop task to finish.
    _stop: oneshot::Sender<()>,
    /// Counts against [`crate::MAX_SERVICE_CONNECTIONS`] while the guest holds it.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for MqttConnection {
    fn drop(&mut self) {
        // Best effort: a full request queue means the task closes the socket without
        // DISCONNECT after the grace period, which brokers also accept.
        let _ = self.client.try_disconnect();
    }
}

/// Publishes between the guest and the broker's acknowledgement. The lock is never held
/// across an `.await`.
#[derive(Default)]
struct Pending {
    /// Handed to rumqttc, in queue order, not yet written (no packet id yet).
    unsent: VecDeque<Waiter>,
    /// QoS 1 and 2 publishes written, waiting for PUBACK / PUBCOMP, by packet id.
    unacked: HashMap<u16, Waiter>,
    /// A publish held back because its packet id was still in flight (only when a broker
    /// acknowledges out of order); rumqttc writes it once that id is acknowledged.
    collided: Option<(u16, Waiter)>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

struct Waiter {
    qos: QoS,
    done: oneshot::Sender<Result<(), String>>,
}

impl Pending {
    fn written(&mut self, pkid: u16) {
        let waiter = match self.collided.take() {
            Some((id, waiter)) if id == pkid => waiter,
            other => {
                self.collided = other;
                match self.unsent.pop_front() {
                    Some(waiter) => waiter,
                    None => return,
                }
            }
        };
        if waiter.qos == QoS::AtMostOnce {
            let _ = waiter.done.send(Ok(()));
        } else {
            self.unacked.insert(pkid, waiter);
        }
    }

    fn held_back(&mut self, pkid: u16) {
        if let Some(waiter) = self.unsent.pop_front() {
            self.collided = Some((pkid, waiter));
        }
    }

    fn acknowledged(&mut self, pkid: u16) {
        if let Some(waiter) = self.unacked.remove(&pkid) {
            let _ = waiter.done.send(Ok(()));
        }
    }

    fn close(&mut self, reason: String) {
        let waiters = self
            .unsent
            .drain(..)
            .chain(self.unacked.drain().map(|(_, w)| w))
            .chain(self.collided.take().map(|(_, w)| w));
        for waiter in waiters {
            let _ = waiter.done.send(Err(reason.clone()));
        }
        self.closed = Some(reason);
    }
}

/// A failure, before it is expressed in one version's WIT error type.
#[derive(Debug)]
enum Failure {
    InvalidAddress,
    TooManyConnections,
    ConnectionFailed(String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::InvalidAddress => f.write_str("invalid address"),
            Failure::TooManyConnections => f.write_str("too many connections"),
            Failure::ConnectionFailed(message) | Failure::Other(message) => f.write_str(message),
        }
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic elsewhere cannot leave `Pending` inconsistent in a way that matters here.
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The guest's connection settings.
struct Settings {
    username: String,
    password: String,
    keep_alive_secs: u64,
}

/// Checks the address against the component's grants, connects to the checked address
/// and waits for the broker to accept the session.
async fn connect(
    caps: &ComponentCapabilities,
    address: &str,
    settings: Settings,
) -> Result<MqttConnection, Failure> {
    let invalid = |why: String| {
        tracing::warn!(component = %caps.id(), "component `{}`: mqtt address refused: {why}", caps.id());
        Failure::InvalidAddress
    };
    let (scheme, host, port) =
        wisp_outbound::parse_service_url(address).map_err(|e| invalid(e.to_string()))?;
    let tls = match scheme.as_str() {
        "mqtt" => None,
        "mqtts" | "ssl" => Some(
            wisp_outbound::config_for_name(caps.client_tls_for(&host), &host)
                .map_err(|e| invalid(e.to_string()))?,
        ),
        "ws" | "wss" => {
            return Err(invalid(format!(
                "{scheme}:// (MQTT over WebSocket) is not supported; use mqtt:// or mqtts://"
            )));
        }
        other => {
            return Err(invalid(format!(
                "unsupported scheme {other:?}; expected mqtt://host[:port] or mqtts://host:port"
            )));
        }
    };
    let client_id = match query_value(address, "client_id") {
        Some(id) if id.is_empty() || id.len() > MAX_CLIENT_ID => {
            return Err(invalid(format!(
                "client_id must be 1 to {MAX_CLIENT_ID} bytes"
            )));
        }
        Some(id) => id.to_owned(),
        None => generated_client_id(),
    };
    // MQTT strings are length-prefixed with a u16.
    if settings.username.len() > MAX_TOPIC || settings.password.len() > MAX_TOPIC {
        return Err(Failure::ConnectionFailed(format!(
            "the username and password must be at most {MAX_TOPIC} bytes each"
        )));
    }
    // Spin's variant and text for a refused destination, with the address as the guest
    // passed it.
    let target = caps
        .service_target(&scheme, &host, port)
        .await
        .map_err(|e| match e {
            wisp_outbound::ServiceError::InvalidAddress(_) => Failure::InvalidAddress,
            wisp_outbound::ServiceError::NotAllowed { .. } => {
                Failure::ConnectionFailed(format!("address {address} is not permitted"))
            }
            other => Failure::ConnectionFailed(other.to_string()),
        })?;

    let attempts = async {
        let mut last_error = String::from("no address");
        for addr in &target.addresses {
            match connect_one(*addr, &client_id, &settings, tls.clone()).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    if tls.is_some() {
                        tracing::warn!(component = %caps.id(), host = %host, "component `{}`: TLS connection to mqtts://{host}:{port} failed: {e}", caps.id());
                    }
                    last_error = e
                }
            }
        }
        Err(last_error)
    };
    let Some(permit) = crate::service_connection_permit() else {
        return Err(Failure::TooManyConnections);
    };
    let attempted = tokio::time::timeout(CONNECT_TIMEOUT, attempts).await;
    let outcome = match &attempted {
        Ok(Ok(_)) => wisp_metrics::OutboundOutcome::Ok,
        _ => wisp_metrics::OutboundOutcome::Error,
    };
    caps.count_service(&scheme, outcome);
    let error = match attempted {
        Ok(Ok(mut connection)) => {
            connection._permit = Some(permit);
            return Ok(connection);
        }
        Ok(Err(e)) => e,
        Err(_) => format!("no CONNACK within {CONNECT_TIMEOUT:?}"),
    };
    Err(Failure::ConnectionFailed(format!(
        "cannot connect to {}: {error}",
        target.describe()
    )))
}

async fn connect_one(
    addr: SocketAddr,
    client_id: &str,
    settings: &Settings,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<MqttConnection, String> {
    // rumqttc joins host and port with ':' before resolving: IPv6 needs its brackets.
    let host = match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let mut options = MqttOptions::new(client_id, host, addr.port());
    if let Some(config) = tls {
        // The handshake names the address; `config` checks the certificate for the host.
        options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            config,
        )));
    }
    // MQTT carries the keep-alive as u16 seconds; 0 turns it off.
    options.set_keep_alive(Duration::from_secs(
        settings.keep_alive_secs.min(u64::from(u16::MAX)),
    ));
    if !settings.username.is_empty() || !settings.password.is_empty() {
        options.set_credentials(settings.username.clone(), settings.password.clone());
    }
    // Room for the largest payload plus a maximal topic and the fixed header.
    options.set_max_packet_size(64 * 1024, MAX_PAYLOAD + MAX_TOPIC + 16);
    let (client, mut eventloop) = AsyncClient::new(options, MAX_QUEUED);
    eventloop
        .network_options
        .set_connection_timeout(CONNECT_TIMEOUT.as_secs());
    match eventloop.poll().await {
        Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {}
        Ok(other) => return Err(format!("expected CONNACK, got {other:?}")),
        Err(ConnectionError::ConnectionRefused(code)) => {
            return Err(format!(
                "the broker refused the connection ({code:?}); check the username, password and client id"
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let pending = Arc::new(Mutex::new(Pending::default()));
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(drive(eventloop, pending.clone(), stopped));
    Ok(MqttConnection {
        client,
        pending,
        _stop: stop,
        _permit: None,
    })
}

/// Runs the event loop until the broker connection ends or the guest drops the handle.
async fn drive(
    mut eventloop: EventLoop,
    pending: Arc<Mutex<Pending>>,
    stopped: oneshot::Receiver<()>,
) {
    let run = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => lock(&pending).written(pkid),
                Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => lock(&pending).held_back(pkid),
                Ok(Event::Incoming(Packet::PubAck(ack))) => lock(&pending).acknowledged(ack.pkid),
                Ok(Event::Incoming(Packet::PubComp(comp))) => {
                    lock(&pending).acknowledged(comp.pkid)
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    return "the connection was closed".to_owned();
                }
                Ok(_) => {}
                Err(e) => return format!("the connection to the broker was lost: {e}"),
            }
        }
    };
    tokio::pin!(run);
    let reason = tokio::select! {
        reason = &mut run => reason,
        _ = stopped => tokio::time::timeout(DISCONNECT_GRACE, &mut run)
            .await
            .unwrap_or_else(|_| "the connection was closed".to_owned()),
    };
    lock(&pending).close(reason);
    // Dropping the event loop here closes the socket.
}

/// The value of `key` in the address's query string, as written.
fn query_value<'a>(address: &'a str, key: &str) -> Option<&'a str> {
    let query = address.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A client id no other connection of this process uses: brokers disconnect the older
/// of two sessions with the same id. 21 characters, within MQTT 3.1.1's 23.
fn generated_client_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("wisp-{:016x}", hasher.finish())
}

fn qos_level(qos: QoS) -> u8 {
    qos as u8
}

/// Queues one publish and waits until the broker has it (see the module docs).
async fn publish(
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
) -> Result<(), Failure> {
    publish_within(
        (&IN_FLIGHT, PUBLISH_TIMEOUT),
        client,
        pending,
        topic,
        payload,
        qos,
    )
    .await
}

/// [`publish`] counting the payload against `budget` until it is written or acknowledged,
/// waiting up to `wait` for room in it.
async fn publish_within(
    (budget, wait): (&PayloadBudget, Duration),
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
) -> Result<(), Failure> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Failure::Other(format!(
            "payload of {} bytes is over the {MAX_PAYLOAD}-byte limit; send smaller messages",
            payload.len()
        )));
    }
    if topic.is_empty() || topic.len() > MAX_TOPIC {
        return Err(Failure::Other(format!(
            "topic must be 1 to {MAX_TOPIC} bytes"
        )));
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(Failure::Other(format!(
            "topic {topic:?} contains a wildcard ('+' or '#') or NUL; publish to a concrete topic"
        )));
    }
    let _in_flight = budget.reserve(payload.len(), wait).await?;
    let (done, answer) = oneshot::channel();
    {
        let mut state = lock(&pending);
        if let Some(reason) = &state.closed {
            return Err(Failure::Other(format!("{reason}; open a new connection")));
        }
        // Queue order is the order rumqttc writes in, which is how the waiter finds its
        // packet: both happen under this lock.
        state.unsent.push_back(Waiter { qos, done });
        if let Err(e) = client.try_publish(topic, qos, false, payload) {
            state.unsent.pop_back();
            return Err(Failure::Other(match e {
                rumqttc::ClientError::TryRequest(_) => format!(
                    "{MAX_QUEUED} publishes are already queued on this connection; wait for them to finish"
                ),
                other => other.to_string(),
            }));
        }
    }
    match tokio::time::timeout(PUBLISH_TIMEOUT, answer).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(reason))) => Err(Failure::Other(reason)),
        Ok(Err(_)) => Err(Failure::Other(
            "the connection closed before the broker acknowledged the message".to_owned(),
        )),
        Err(_) => Err(Failure::Other(format!(
            "the broker did not acknowledge the QoS {} message within {PUBLISH_TIMEOUT:?}",
            qos_level(qos)
        ))),
    }
}

impl CapabilitiesCtx<'_> {
    /// The connection's client and in-flight state, and the span of a publish to
    /// `topic` when the request is traced.
    fn mqtt_conn(
        &self,
        handle: &Resource<MqttConnection>,
        topic: &str,
    ) -> wasmtime::Result<(AsyncClient, Arc<Mutex<Pending>>, Option<Span>)> {
        let conn = self.table.get(handle)?;
        let span = self.state.service_span("mqtt", "publish").map(|mut span| {
            span.set("messaging.destination.name", topic);
            span
        });
        Ok((conn.client.clone(), conn.pending.clone(), span))
    }

    fn push_mqtt(
        &mut self,
        connection: MqttConnection,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, Failure>> {
        if !self.state.reserve_handle() {
            return Ok(Err(Failure::TooManyConnections));
        }
        Ok(Ok(self.table.push(connection)?))
    }

    fn close_mqtt(&mut self, handle: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.release_handle();
        Ok(())
    }
}

/// The per-version glue: error and QoS conversions.
macro_rules! mqtt_conversions {
    ($wit:ident) => {
        pub(super) fn error(failure: super::Failure) -> $wit::Error {
            match failure {
                super::Failure::InvalidAddress => $wit::Error::InvalidAddress,
                super::Failure::TooManyConnections => $wit::Error::TooManyConnections,
                super::Failure::ConnectionFailed(message) => $wit::Error::ConnectionFailed(message),
                super::Failure::Other(message) => $wit::Error::Other(message),
            }
        }

        pub(super) fn qos(qos: $wit::Qos) -> rumqttc::QoS {
            match qos {
                $wit::Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
                $wit::Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
                $wit::Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
            }
        }
    };
}

mod convert_v2 {
    use super::*;
    mqtt_conversions!(v2);
}

mod convert_v3 {
    use super::*;
    mqtt_conversions!(v3);
}

impl v2::Host for CapabilitiesCtx<'_> {}

impl v2::HostConnection for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, v2::Error>> {
        let settings = Settings {
            username,
            password,
            keep_alive_secs: keep_alive_interval_in_secs,
        };
        let span = self.state.service_span("mqtt", "connect");
        // The span ends on what the guest gets: a connection over its handle limit fails.
        let opened = match connect(&self.state.caps, &address, settings).await {
            Ok(connection) => self.push_mqtt(connection)?,
            Err(e) => Err(e),
        };
        wisp_telemetry::end_with(span, &opened);
        Ok(opened.map_err(convert_v2::error))
    }

    async fn publish(
        &mut self,
        c: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: v2::Qos,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let (client, pending, span) = self.mqtt_conn(&c, &topic)?;
        let result = publish(client, pending, topic, payload, convert_v2::qos(qos)).await;
        wisp_telemetry::end_with(span, &result);
        Ok(result.map_err(convert_v2::error))
    }

    async fn drop(&mut self, c: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.close_mqtt(c)
    }
}

impl v3::Host for CapabilitiesCtx<'_> {}

impl v3::HostConnection for CapabilitiesCtx<'_> {
    async fn drop(&mut self, c: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.close_mqtt(c)
    }
}

impl<T> v3::HostConnectionWithStore<T> for Capabilities {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, v3::Error>> {
        let (caps, span) = accessor.with(|mut access| {
            let state = &access.get().state;
            (state.caps.clone(), state.service_span("mqtt", "connect"))
        });
        let settings = Settings {
            username,
            password,
            keep_alive_secs: keep_alive_interval_in_secs,
        };
        let opened = match connect(&caps, &address, settings).await {
            Ok(connection) => accessor.with(|mut access| access.get().push_mqtt(connection))?,
            Err(e) => Err(e),
        };
        wisp_telemetry::end_with(span, &opened);
        Ok(opened.map_err(convert_v3::error))
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        c: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: v3::Qos,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (client, pending, span) =
            accessor.with(|mut access| access.get().mqtt_conn(&c, &topic))?;
        let result = publish(client, pending, topic, payload, convert_v3::qos(qos)).await;
        wisp_telemetry::end_with(span, &result);
        Ok(result.map_err(convert_v3::error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_client_id_from_the_query() {
        assert_eq!(
            query_value("mqtt://h:1883?client_id=abc&x=1", "client_id"),
            Some("abc")
        );
        assert_eq!(query_value("mqtt://h:1883?x=1", "client_id"), None);
        assert_eq!(query_value("mqtt://h:1883", "client_id"), None);
    }

    #[test]
    fn generated_client_ids_differ_and_fit_mqtt_3_1_1() {
        let a = generated_client_id();
        let b = generated_client_id();
        assert_ne!(a, b);
        assert!(a.len() <= 23, "{a}");
    }

    /// Tests against the real broker (mosquitto on 127.0.0.1:1883 from
    /// `scripts/test-services.sh`): the full tier only (`cargo test-fast` skips
    /// `with_server::`).
    mod with_server {
        use super::*;

        const START_BROKER: &str = "run scripts/test-services.sh to start mosquitto on 127.0.0.1:1883 with user wisp / password wisp";

        fn settings(password: &str) -> Settings {
            Settings {
                username: "wisp".to_owned(),
                password: password.to_owned(),
                keep_alive_secs: 5,
            }
        }

        fn broker() -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 1883))
        }

        #[tokio::test]
        async fn publishes_and_a_dropped_connection_ends_its_task() {
            let metrics = tokio::runtime::Handle::current().metrics();
            let before = metrics.num_alive_tasks();
            let conn = connect_one(broker(), &generated_client_id(), &settings("wisp"), None)
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot connect to the test broker: {e}; {START_BROKER}")
                });
            assert_eq!(metrics.num_alive_tasks(), before + 1, "one event-loop task");
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                publish(
                    conn.client.clone(),
                    conn.pending.clone(),
                    "wisp/test/unit".to_owned(),
                    b"x".to_vec(),
                    qos,
                )
                .await
                .unwrap_or_else(|e| panic!("{qos:?}: {e:?}"));
            }
            let pending = conn.pending.clone();
            drop(conn);
            let deadline = tokio::time::Instant::now() + DISCONNECT_GRACE + Duration::from_secs(1);
            while metrics.num_alive_tasks() > before {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the event-loop task outlived its connection"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                lock(&pending).closed.as_deref(),
                Some("the connection was closed"),
                "it ended by sending DISCONNECT"
            );
        }

        #[tokio::test]
        async fn bad_credentials_fail_at_connect() {
            let error = match connect_one(broker(), &generated_client_id(), &settings("nope"), None)
                .await
            {
                Ok(_) => panic!("a wrong password was accepted"),
                Err(e) => e,
            };
            assert!(
                error.contains("refused") && !error.contains("Connection refused"),
                "{error}; {START_BROKER}"
            );
        }
    }

    #[tokio::test]
    async fn publishes_wait_for_room_in_the_in_flight_payload_budget() {
        assert_eq!(MAX_IN_FLIGHT_PAYLOAD, 256 << 20);
        let budget = PayloadBudget::new(1 << 20);
        let held = budget.reserve(700 << 10, Duration::ZERO).await.unwrap();
        // 700 KiB of the 1 MiB are in flight: 400 KiB more wait, then give up.
        let refused = budget.reserve(400 << 10, Duration::from_millis(20)).await;
        assert!(
            matches!(&refused, Err(Failure::Other(m)) if m.contains("1 MiB of MQTT payloads")),
            "{:?}",
            refused.err().map(|f| format!("{f:?}"))
        );
        // Room given back lets a waiting publish through.
        let waiting = budget.reserve(400 << 10, Duration::from_secs(5));
        drop(held);
        assert!(waiting.await.is_ok());
        // A publish whose payload does not fit is refused before it is queued.
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("unused", "127.0.0.1", 1), 1);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let small = PayloadBudget::new(1 << 10);
        let _taken = small.reserve(1, Duration::ZERO).await.unwrap();
        let queued = publish_within(
            (&small, Duration::from_millis(20)),
            client,
            pending.clone(),
            "t".to_owned(),
            vec![0; 10],
            QoS::AtMostOnce,
        )
        .await;
        assert!(matches!(queued, Err(Failure::Other(m)) if m.contains("in flight")));
        assert!(lock(&pending).unsent.is_empty());
    }

    #[tokio::test]
    async fn oversized_payloads_and_wildcard_topics_are_refused() {
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("unused", "127.0.0.1", 1), 1);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let big = publish(
            client.clone(),
            pending.clone(),
            "t".to_owned(),
            vec![0; MAX_PAYLOAD + 1],
            QoS::AtMostOnce,
        )
        .await;
        assert!(matches!(big, Err(Failure::Other(m)) if m.contains("limit")));
        for topic in ["", "a/+/b", "a/#"] {
            let refused = publish(
                client.clone(),
                pending.clone(),
                topic.to_owned(),
                Vec::new(),
                QoS::AtMostOnce,
            )
            .await;
            assert!(matches!(refused, Err(Failure::Other(_))), "{topic:?}");
        }
        assert!(lock(&pending).unsent.is_empty());
    }

    #[test]
    fn waiters_follow_write_order_and_acknowledgements() {
        let mut pending = Pending::default();
        let mut answers = Vec::new();
        for qos in [
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
            QoS::ExactlyOnce,
            QoS::AtLeastOnce,
        ] {
            let (done, answer) = oneshot::channel();
            pending.unsent.push_back(Waiter { qos, done });
            answers.push(answer);
        }
        pending.written(0);
        assert_eq!(
            answers[0].try_recv(),
            Ok(Ok(())),
            "QoS 0 is done once written"
        );
        pending.written(1);
        pending.written(2);
        assert!(answers[1].try_recv().is_err(), "QoS 1 waits for PUBACK");
        // The fourth publish reuses an id still in flight and is held back.
        pending.held_back(1);
        pending.acknowledged(2);
        assert_eq!(answers[2].try_recv(), Ok(Ok(())));
        pending.acknowledged(1);
        assert_eq!(answers[1].try_recv(), Ok(Ok(())));
        pending.written(1);
        assert!(answers[3].try_recv().is_err());
        pending.close("gone".to_owned());
        assert_eq!(answers[3].try_recv(), Ok(Err("gone".to_owned())));
        assert_eq!(pending.closed.as_deref(), Some("gone"));
    }
}

//! The Redis trigger.
//!
//! A trigger step of the data path beside the HTTP trigger: for each Redis server named
//! by the app's `[[trigger.redis]]` tables, one pub/sub connection subscribes to every
//! channel of that server. Messages of one server are handled one at a time, in arrival
//! order, as Spin does; each runs every component subscribed to its channel, each in a
//! fresh instance, side by side. When the server goes away (the connection closes, or a
//! PING every 30 s goes unanswered for 10 s) the connection is re-made with exponential
//! backoff (100 ms doubling up to 5 s) and the subscriptions renewed; messages published
//! while disconnected are lost, as with any Redis pub/sub client.

mod exports;

use exports::RedisHandler;
use futures::StreamExt;
use futures::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use wasmtime::component::InstancePre;
use wisp_engine::{Host, LoadedApp};
use wisp_telemetry::{EventKind, Span};
use wisp_trigger::{Summary, Trigger, TriggerContext, TriggerError, TriggerType};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bound on connecting and subscribing, so a black-holed server is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle subscription checks that the server still answers, and how long
/// the answer may take: a silent network partition otherwise goes unnoticed.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages of one server received but not yet handled, at most: past this (or
/// [`MAX_WAITING_BYTES`] of payload) new messages are dropped and counted in the log,
/// instead of queueing without bound behind slow components.
pub const MAX_WAITING_MESSAGES: usize = 1024;
/// Payload bytes of one server's waiting messages, at most.
pub const MAX_WAITING_BYTES: u64 = 16 << 20;
/// How often a server's count of dropped messages is logged, at most.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Configuration of a `redis` trigger, as stored in a LockedApp's `trigger_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisTriggerConfig {
    /// Component that handles each message.
    pub component: String,
    /// Pub/sub channel to subscribe to.
    pub channel: String,
    /// Server address (`redis://...`), the app-level default already applied; may hold
    /// `{{ variable }}` references, expanded when the trigger starts.
    pub address: String,
}

/// The `redis` trigger type, for the runtime's registry.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedisTriggerType;

const TYPE: &str = "redis";

impl TriggerType for RedisTriggerType {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn check_component(&self, component: &InstancePre<Host>) -> Result<(), String> {
        match RedisHandler::detect(component) {
            Some(_) => Ok(()),
            None => Err(
                "a redis trigger needs `fermyon:spin/inbound-redis` or `spin:redis/inbound-redis@3.0.0`; build it with `#[redis_component]` (spin-sdk 5) or `#[redis_subscriber]` (spin-sdk 7)"
                    .to_owned(),
            ),
        }
    }

    fn build(&self, context: &TriggerContext<'_>) -> Result<Arc<dyn Trigger>, TriggerError> {
        Ok(Arc::new(RedisTrigger::new(context)?))
    }
}

/// One channel → component subscription, for summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The server, without credentials.
    pub server: String,
    /// The channel.
    pub channel: String,
    /// The component that handles its messages.
    pub component: String,
}

struct Server {
    url: String,
    shown: String,
    /// Channel → components (with their handlers), in manifest order.
    channels: BTreeMap<String, Vec<(String, RedisHandler)>>,
}

/// An app's Redis triggers, ready to run.
pub struct RedisTrigger {
    app: Arc<LoadedApp>,
    servers: Vec<Server>,
}

impl RedisTrigger {
    /// Reads the app's redis triggers, expanding `{{ variable }}` references in addresses
    /// and channels. Every component must export a Redis handler.
    pub fn new(context: &TriggerContext<'_>) -> Result<Self, TriggerError> {
        let app = context.app.clone();
        let mut servers: Vec<Server> = Vec::new();
        for (trigger, config) in context.configs::<RedisTriggerConfig>(TYPE)? {
            let invalid = |message: String| TriggerError::Invalid {
                trigger_type: TYPE,
                trigger: trigger.id.clone(),
                message,
            };
            let Some(component) = app.component(&config.component) else {
                return Err(invalid(format!(
                    "component `{}` is not defined by the app",
                    config.component
                )));
            };
            let Some(handler) = RedisHandler::detect(&component.instance_pre()) else {
                return Err(invalid(format!(
                    "component `{}` has no redis message handler (it exports {}); build it with `#[redis_component]` (spin-sdk 5) or `#[redis_subscriber]` (spin-sdk 7) so that it exports `fermyon:spin/inbound-redis` or `spin:redis/inbound-redis@3.0.0`",
                    config.component,
                    component.exports_summary()
                )));
            };
            let address_error = invalid;
            let url = (context.expand)(&config.address).map_err(&address_error)?;
            let channel = (context.expand)(&config.channel)
                .map_err(|e| address_error(format!("channel: {e}")))?;
            let client = redis::Client::open(url.as_str()).map_err(|e| {
                address_error(format!(
                    "invalid address: {e}; write it as redis://[user:password@]host[:port][/db] (rediss:// for TLS)"
                ))
            })?;
            let shown = show_address(client.get_connection_info());
            let server = match servers.iter_mut().position(|s| s.url == url) {
                Some(index) => &mut servers[index],
                None => {
                    servers.push(Server {
                        url,
                        shown,
                        channels: BTreeMap::new(),
                    });
                    servers.last_mut().expect("just pushed")
                }
            };
            server
                .channels
                .entry(channel)
                .or_default()
                .push((config.component.clone(), handler));
        }
        Ok(Self { app, servers })
    }

    /// Whether the app has any redis triggers.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Every subscription, for the start-up summary.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.servers
            .iter()
            .flat_map(|server| {
                server
                    .channels
                    .iter()
                    .flat_map(move |(channel, components)| {
                        components.iter().map(move |(component, _)| Subscription {
                            server: server.shown.clone(),
                            channel: channel.clone(),
                            component: component.clone(),
                        })
                    })
            })
            .collect()
    }

    /// Subscribes and handles messages until `shutdown` resolves; then lets the message
    /// being handled finish for up to `grace`.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>, grace: Duration) {
        let (stop, stopped) = watch::channel(false);
        let mut listeners = JoinSet::new();
        for index in 0..self.servers.len() {
            let this = self.clone();
            let stopped = stopped.clone();
            listeners.spawn(async move { this.listen(index, stopped).await });
        }
        shutdown.await;
        let _ = stop.send(true);
        let drain = async { while listeners.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                "shutdown grace period of {grace:?} elapsed; abandoning redis messages still being handled"
            );
            // Dropping the set aborts the listeners, and with them their instances.
        }
    }

    /// One server: connect, subscribe, handle messages in order, and start over when the
    /// connection ends. Returns once `stopped` turns true (between messages).
    async fn listen(&self, index: usize, mut stopped: watch::Receiver<bool>) {
        let server = &self.servers[index];
        let channels: Vec<&String> = server.channels.keys().collect();
        let mut backoff = MIN_BACKOFF;
        loop {
            let subscribed = tokio::select! {
                subscribed = tokio::time::timeout(CONNECT_TIMEOUT, subscribe(&server.url, &channels)) => subscribed,
                () = until_stopped(&mut stopped) => return,
            };
            match subscribed {
                Ok(Ok(pubsub)) => {
                    tracing::info!(
                        "redis trigger subscribed to {} on {}",
                        join_channels(&channels),
                        server.shown
                    );
                    backoff = MIN_BACKOFF;
                    let (mut sink, messages) = pubsub.split();
                    let mut inbox = Inbox::start(messages, server.shown.clone());
                    let mut ping = tokio::time::interval(PING_INTERVAL);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            message = inbox.next() => {
                                let Some((channel, payload)) = message else {
                                    tracing::warn!(
                                        "lost the redis trigger connection to {}; reconnecting",
                                        server.shown
                                    );
                                    break;
                                };
                                if let Some(components) = server.channels.get(&channel) {
                                    join_all(components.iter().map(|(component, handler)| {
                                        handle_message(&self.app, component, handler, &channel, payload.clone())
                                    }))
                                    .await;
                                }
                            }
                            _ = ping.tick() => {
                                let answered = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                                if !matches!(answered, Ok(Ok(_))) {
                                    tracing::warn!(
                                        "redis server {} did not answer PING within {PING_TIMEOUT:?}; reconnecting",
                                        server.shown
                                    );
                                    break;
                                }
                            }
                            () = until_stopped(&mut stopped) => return,
                        }
                    }
                }
                Ok(Err(e)) => tracing::warn!(
                    "redis trigger cannot subscribe on {}: {e}; retrying in {backoff:?}",
                    server.shown
                ),
                Err(_) => tracing::warn!(
                    "redis trigger: no answer from {} within {CONNECT_TIMEOUT:?}; retrying in {backoff:?}",
                    server.shown
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = until_stopped(&mut stopped) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// One server's received messages waiting for their components, bounded: a task keeps
/// reading the connection (so the client library's own buffer stays small) and drops what
/// does not fit, counting it in the log.
struct Inbox {
    waiting: tokio::sync::mpsc::Receiver<(String, Vec<u8>)>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Inbox {
    fn start(
        messages: impl futures::Stream<Item = redis::Msg> + Send + 'static,
        shown: String,
    ) -> Inbox {
        use std::sync::atomic::Ordering;
        use tokio::sync::mpsc::error::TrySendError;
        let (sender, waiting) = tokio::sync::mpsc::channel(MAX_WAITING_MESSAGES);
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let held = bytes.clone();
        let reader = tokio::spawn(async move {
            let mut messages = std::pin::pin!(messages);
            let mut dropped: u64 = 0;
            let mut reported: Option<Instant> = None;
            while let Some(message) = messages.next().await {
                let size = message.get_payload_bytes().len() as u64;
                // Only this task adds, so the check cannot be overtaken.
                if held.load(Ordering::Acquire) + size <= MAX_WAITING_BYTES {
                    let entry = (
                        message.get_channel_name().to_owned(),
                        message.get_payload_bytes().to_vec(),
                    );
                    match sender.try_send(entry) {
                        Ok(()) => {
                            held.fetch_add(size, Ordering::AcqRel);
                            continue;
                        }
                        Err(TrySendError::Closed(_)) => return,
                        Err(TrySendError::Full(_)) => {}
                    }
                }
                dropped += 1;
                if reported.is_none_or(|at| at.elapsed() >= DROP_REPORT_INTERVAL) {
                    tracing::warn!(
                        "redis trigger on {shown}: {dropped} messages dropped so far: the \
                         components are not keeping up ({MAX_WAITING_MESSAGES} messages or \
                         {} MiB may wait)",
                        MAX_WAITING_BYTES >> 20
                    );
                    reported = Some(Instant::now());
                }
            }
        });
        Inbox {
            waiting,
            bytes,
            reader,
        }
    }

    /// The next waiting message; `None` once the connection is gone and all were taken.
    async fn next(&mut self) -> Option<(String, Vec<u8>)> {
        let message = self.waiting.recv().await?;
        self.bytes
            .fetch_sub(message.1.len() as u64, std::sync::atomic::Ordering::AcqRel);
        Some(message)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Resolves once the trigger is told to stop.
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn subscribe(url: &str, channels: &[&String]) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    for channel in channels {
        pubsub.subscribe(channel.as_str()).await?;
    }
    Ok(pubsub)
}

/// Runs one message through one component and logs the outcome.
async fn handle_message(
    app: &LoadedApp,
    component_id: &str,
    handler: &RedisHandler,
    channel: &str,
    payload: Vec<u8>,
) {
    let Some(component) = app.component(component_id) else {
        return;
    };
    let started = Instant::now();
    let size = payload.len();
    let handler = handler.clone();
    // A consumer span per message, as OpenTelemetry's messaging conventions name it.
    let span = component
        .tracing()
        .event_span(EventKind::Message, || format!("process {channel}"))
        .map(|mut span| {
            span.set("messaging.system", "redis");
            span.set("messaging.operation.type", "process");
            span.set("messaging.destination.name", channel);
            span.set(
                "messaging.message.body.size",
                i64::try_from(size).unwrap_or(i64::MAX),
            );
            span.set("wisp.app", component.app_name());
            span.set("wisp.component", component_id);
            span
        });
    let trace_id = wisp_telemetry::trace_id(span.as_ref());
    let trace_suffix = wisp_telemetry::trace_suffix(trace_id.as_deref());
    let call = component
        .run_event(
            "redis",
            span.as_ref().map(Span::parent),
            Box::new(move |store| Box::pin(async move { handler.call(store, payload).await })),
        )
        .await;
    if let Some(mut span) = span {
        match &call {
            Ok(Ok(())) => {}
            Ok(Err(error)) => span.fail(error.to_string()),
            Err(err) => span.fail(err.reason()),
        }
    }
    match call {
        Ok(Ok(())) => tracing::debug!(
            trace_id = trace_id.as_deref(),
            "redis message on `{channel}` ({size} bytes) handled by `{component_id}` in {:.1?}{trace_suffix}",
            started.elapsed()
        ),
        Ok(Err(error)) => tracing::error!(
            component = %component_id,
            trace_id = trace_id.as_deref(),
            "redis message on `{channel}`: component `{component_id}` returned an error: {error}{trace_suffix}"
        ),
        Err(err) => match err.fault {
            Some(fault) => {
                tracing::error!(
                    component = %component_id,
                    trace_id = trace_id.as_deref(),
                    "redis message on `{channel}`: component `{component_id}` {fault}{trace_suffix}"
                )
            }
            None => tracing::error!(
                component = %component_id,
                trace_id = trace_id.as_deref(),
                "redis message on `{channel}`: component `{component_id}` failed: {}{trace_suffix}",
                err.message
            ),
        },
    }
}

fn join_channels(channels: &[&String]) -> String {
    channels
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `redis://host:port/db`, without credentials.
fn show_address(info: &redis::ConnectionInfo) -> String {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => {
            format!("redis://{host}:{port}/{}", info.redis_settings().db())
        }
        redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{host}:{port}/{}", info.redis_settings().db())
        }
        other => format!("{other:?}"),
    }
}

impl Trigger for RedisTrigger {
    fn summary(&self) -> Summary {
        Summary {
            heading: "Redis subscriptions:".to_owned(),
            lines: self
                .subscriptions()
                .into_iter()
                .map(|s| format!("{} channel `{}`  ->  {}", s.server, s.channel, s.component))
                .collect(),
        }
    }

    fn log_summary(&self) {
        for subscription in self.subscriptions() {
            tracing::info!(
                event = "redis_subscription",
                server = %subscription.server,
                channel = %subscription.channel,
                component = %subscription.component,
                "redis subscription"
            );
        }
    }

    fn run(
        self: Arc<Self>,
        shutdown: BoxFuture<'static, ()>,
        grace: Duration,
    ) -> BoxFuture<'static, ()> {
        Box::pin(RedisTrigger::run(self, shutdown, grace))
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

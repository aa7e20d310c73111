//! Prometheus metrics of apps, components and the process.
//!
//! One [`Metrics`] per process holds the registry. The engine asks it for a
//! [`ComponentMetrics`] per loaded component (its `app` and `component` labels resolved
//! once, so recording a request costs a few atomic adds, not a label lookup), and the
//! triggers, host capabilities and outbound clients record through that handle. A
//! disabled [`Metrics`] (the default) hands out disabled handles that record nothing.
//!
//! [`Metrics::encode`] renders everything in the OpenMetrics text format, which
//! Prometheus scrapes; [`serve`] answers `GET /metrics` on a listener of its own.
//! Labels are only the app, component, trigger type and fixed enumerations: nothing a
//! request chooses (path, host, key) becomes a label, so the series stay bounded by the
//! apps and components deployed.

mod cpu;
mod merge;
mod process;
mod serve;
mod thread_clock;

pub use cpu::{CpuMeter, CpuMetered};
pub use merge::with_other_process;
pub use serve::{dashboard_response, metrics_response, metrics_response_with, serve};
pub use thread_clock::{await_fast_thread_clock, fast_thread_clock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The media type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a request or event ended, as `wisp_requests_total`'s `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest answered (whatever status it chose).
    Ok,
    /// The guest trapped or failed without an answer.
    Trap,
    /// The guest ran past its deadline (504).
    Deadline,
    /// The guest passed its memory cap.
    MemoryLimit,
    /// Refused before or instead of running the guest: a body over the route's limit,
    /// no memory budget or instance slot free.
    Refused,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap => "trap",
            Outcome::Deadline => "deadline",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Refused => "refused",
        }
    }
}

/// What an outbound call talks to (`wisp_outbound_requests_total`'s `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundKind {
    /// Outbound HTTP (`wasi:http/outgoing-handler`, Spin's `http`).
    Http,
    /// Outbound Redis.
    Redis,
    /// Outbound PostgreSQL.
    Postgres,
    /// Outbound MySQL.
    Mysql,
    /// Outbound MQTT.
    Mqtt,
    /// A `wasi:sockets` TCP connection.
    Tcp,
}

impl OutboundKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundKind::Http => "http",
            OutboundKind::Redis => "redis",
            OutboundKind::Postgres => "pg",
            OutboundKind::Mysql => "mysql",
            OutboundKind::Mqtt => "mqtt",
            OutboundKind::Tcp => "tcp",
        }
    }
}

/// How an outbound call ended (`wisp_outbound_requests_total`'s `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundOutcome {
    /// It got an answer (any HTTP status) or a connection.
    Ok,
    /// It was attempted and failed (refused connection, DNS, TLS, timeout, …).
    Error,
    /// The component's grants or the blocked networks refused it before any traffic.
    Denied,
}

impl OutboundOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundOutcome::Ok => "ok",
            OutboundOutcome::Error => "error",
            OutboundOutcome::Denied => "denied",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    app: String,
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    app: String,
    component: String,
    trigger: &'static str,
    /// `2xx`…`5xx` for HTTP; empty for events.
    status: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    app: String,
    component: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    app: String,
    component: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    /// `disk` (the on-disk compile cache) or `memory` (code another app already loaded).
    tier: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

fn instantiate_histogram() -> Histogram {
    Histogram::new([
        0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
        0.005, 0.01, 0.025, 0.1,
    ])
}

fn memory_histogram() -> Histogram {
    // 64 KiB (one wasm page) to 4 GiB.
    Histogram::new(exponential_buckets(65_536.0, 2.0, 17))
}

struct Shared {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<ComponentLabels>,
    instantiate_duration: HistogramFamily<ComponentLabels>,
    memory_peak: HistogramFamily<ComponentLabels>,
    instances_active: Family<ComponentLabels, Gauge>,
    slots_waiting: Family<ComponentLabels, Gauge>,
    cpu_seconds: Family<ComponentLabels, Counter<f64, AtomicU64>>,
    outbound: Family<OutboundLabels, Counter>,
    kv: Family<OperationLabels, Counter>,
    sqlite: Family<ComponentLabels, Counter>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Counter,
    /// Every app's components and every trigger type seen, so an app's series can be
    /// dropped when it is removed.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    components: HashMap<String, BTreeSet<String>>,
    triggers: BTreeSet<&'static str>,
}

/// Every `status` label value, for dropping an app's series.
const STATUSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", ""];
const OUTCOMES: [Outcome; 5] = [
    Outcome::Ok,
    Outcome::Trap,
    Outcome::Deadline,
    Outcome::MemoryLimit,
    Outcome::Refused,
];
const OUTBOUND_KINDS: [OutboundKind; 6] = [
    OutboundKind::Http,
    OutboundKind::Redis,
    OutboundKind::Postgres,
    OutboundKind::Mysql,
    OutboundKind::Mqtt,
    OutboundKind::Tcp,
];
const OUTBOUND_OUTCOMES: [OutboundOutcome; 3] = [
    OutboundOutcome::Ok,
    OutboundOutcome::Error,
    OutboundOutcome::Denied,
];
/// Every `op` label value of `wisp_kv_operations_total`.
const KV_OPERATIONS: [&str; 10] = [
    "get",
    "set",
    "delete",
    "exists",
    "get_keys",
    "get_many",
    "set_many",
    "delete_many",
    "increment",
    "cas",
];

/// The process's metrics; cheap to clone. [`Metrics::default`] is disabled.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Shared>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Metrics {
    /// An enabled registry with every Wisp metric and the process metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register(
            "wisp_requests",
            "Requests and events handled, by trigger type, HTTP status class and outcome",
            requests.clone(),
        );
        let request_duration: HistogramFamily<_> = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "wisp_request_duration",
            "Time from a request's arrival to its response head (events: to the end of the call)",
            Unit::Seconds,
            request_duration.clone(),
        );
        let instantiate_duration: HistogramFamily<_> =
            Family::new_with_constructor(instantiate_histogram);
        registry.register_with_unit(
            "wisp_instantiate_duration",
            "Time to instantiate a component for one HTTP request",
            Unit::Seconds,
            instantiate_duration.clone(),
        );
        let memory_peak: HistogramFamily<_> = Family::new_with_constructor(memory_histogram);
        registry.register_with_unit(
            "wisp_instance_memory_peak",
            "Most linear memory each instance asked for (capped at its limit)",
            Unit::Bytes,
            memory_peak.clone(),
        );
        let instances_active = Family::default();
        registry.register(
            "wisp_instances_active",
            "Instances alive now",
            instances_active.clone(),
        );
        let slots_waiting = Family::default();
        registry.register(
            "wisp_instance_slots_waiting",
            "Requests and events waiting for an instance slot",
            slots_waiting.clone(),
        );
        let cpu_seconds = Family::default();
        registry.register_with_unit(
            "wisp_cpu",
            "CPU time spent running the component's instances (wasm and host code on the instance's own thread)",
            Unit::Seconds,
            cpu_seconds.clone(),
        );
        let outbound = Family::default();
        registry.register(
            "wisp_outbound_requests",
            "Outbound calls by kind and outcome (denied: refused by the component's grants or the blocked networks)",
            outbound.clone(),
        );
        let kv = Family::default();
        registry.register(
            "wisp_kv_operations",
            "Key-value store operations",
            kv.clone(),
        );
        let sqlite = Family::default();
        registry.register(
            "wisp_sqlite_statements",
            "SQLite statements executed",
            sqlite.clone(),
        );
        let cache_hits = Family::default();
        registry.register(
            "wisp_compile_cache_hits",
            "Components whose compiled code came from the disk cache or from another loaded app",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "wisp_compile_cache_misses",
            "Components compiled with Cranelift",
            cache_misses.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        Self(Some(Arc::new(Shared {
            registry,
            requests,
            request_duration,
            instantiate_duration,
            memory_peak,
            instances_active,
            slots_waiting,
            cpu_seconds,
            outbound,
            kv,
            sqlite,
            cache_hits,
            cache_misses,
            seen: Mutex::default(),
        })))
    }

    /// A registry that records nothing.
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Whether this records anything.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The handle a component records through, labelled `app` and `component`.
    pub fn component(&self, app: &str, component: &str) -> ComponentMetrics {
        let Some(shared) = &self.0 else {
            return ComponentMetrics(None);
        };
        let labels = ComponentLabels {
            app: app.to_owned(),
            component: component.to_owned(),
        };
        let mut seen = shared.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.components
            .entry(app.to_owned())
            .or_default()
            .insert(component.to_owned());
        seen.triggers.insert("http");
        drop(seen);
        ComponentMetrics(Some(Arc::new(ComponentHandles {
            http_ok: shared.requests.get_or_create_owned(&request_labels(
                &labels,
                "http",
                Some(200),
                Outcome::Ok,
            )),
            request_duration: shared.request_duration.get_or_create_owned(&labels),
            instantiate_duration: shared.instantiate_duration.get_or_create_owned(&labels),
            memory_peak: shared.memory_peak.get_or_create_owned(&labels),
            instances_active: shared.instances_active.get_or_create_owned(&labels),
            slots_waiting: shared.slots_waiting.get_or_create_owned(&labels),
            cpu_seconds: shared.cpu_seconds.get_or_create_owned(&labels),
            sqlite: shared.sqlite.get_or_create_owned(&labels),
            shared: shared.clone(),
            labels,
        })))
    }

    /// Records where a component's compiled code came from: `Some("disk")` or
    /// `Some("memory")` for a hit, `None` for a Cranelift compile.
    pub fn compiled(&self, hit: Option<&'static str>) {
        let Some(shared) = &self.0 else { return };
        match hit {
            Some(tier) => {
                shared.cache_hits.get_or_create(&CacheLabels { tier }).inc();
            }
            None => {
                shared.cache_misses.inc();
            }
        }
    }

    /// Drops every series of `app` (a node calls it when the app is removed): a node
    /// whose apps come and go keeps a bounded number of series.
    pub fn forget_app(&self, app: &str) {
        let Some(shared) = &self.0 else { return };
        let (components, triggers) = {
            let mut seen = shared.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let components = seen.components.remove(app).unwrap_or_default();
            (components, seen.triggers.clone())
        };
        shared.remove_series(app, components, &triggers);
    }

    /// Drops the series of `app`'s components that are not in `keep`: called once a new
    /// version of the app, with these components, has replaced the old one. The dropped
    /// ids stay known: requests the old version is still finishing may record again, and
    /// the next call (or [`Metrics::forget_app`]) removes what they recreate.
    pub fn retain_components<'a>(&self, app: &str, keep: impl IntoIterator<Item = &'a str>) {
        let Some(shared) = &self.0 else { return };
        let keep: BTreeSet<&str> = keep.into_iter().collect();
        let (gone, triggers) = {
            let seen = shared.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(components) = seen.components.get(app) else {
                return;
            };
            let gone: BTreeSet<String> = components
                .iter()
                .filter(|c| !keep.contains(c.as_str()))
                .cloned()
                .collect();
            (gone, seen.triggers.clone())
        };
        shared.remove_series(app, gone, &triggers);
    }
}

impl Shared {
    /// Removes every series of `app`'s `components`, under each trigger type in `triggers`.
    fn remove_series(
        &self,
        app: &str,
        components: BTreeSet<String>,
        triggers: &BTreeSet<&'static str>,
    ) {
        for component in components {
            let labels = ComponentLabels {
                app: app.to_owned(),
                component,
            };
            self.request_duration.remove(&labels);
            self.instantiate_duration.remove(&labels);
            self.memory_peak.remove(&labels);
            self.instances_active.remove(&labels);
            self.slots_waiting.remove(&labels);
            self.cpu_seconds.remove(&labels);
            self.sqlite.remove(&labels);
            for trigger in triggers {
                for status in STATUSES {
                    for outcome in OUTCOMES {
                        self.requests.remove(&RequestLabels {
                            app: labels.app.clone(),
                            component: labels.component.clone(),
                            trigger,
                            status,
                            outcome: outcome.as_str(),
                        });
                    }
                }
            }
            for kind in OUTBOUND_KINDS {
                for outcome in OUTBOUND_OUTCOMES {
                    self.outbound.remove(&OutboundLabels {
                        app: labels.app.clone(),
                        component: labels.component.clone(),
                        kind: kind.as_str(),
                        outcome: outcome.as_str(),
                    });
                }
            }
            for op in KV_OPERATIONS {
                self.kv.remove(&OperationLabels {
                    app: labels.app.clone(),
                    component: labels.component.clone(),
                    op,
                });
            }
        }
    }
}

impl Metrics {
    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]); empty when disabled.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Some(shared) = &self.0 {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut text, &shared.registry);
        }
        text
    }
}

fn request_labels(
    labels: &ComponentLabels,
    trigger: &'static str,
    status: Option<u16>,
    outcome: Outcome,
) -> RequestLabels {
    RequestLabels {
        app: labels.app.clone(),
        component: labels.component.clone(),
        trigger,
        status: match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "",
        },
        outcome: outcome.as_str(),
    }
}

impl Shared {
    /// Remembers a trigger type, for [`Metrics::forget_app`].
    fn note_trigger(&self, trigger: &'static str) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .triggers
            .insert(trigger);
    }
}

struct ComponentHandles {
    shared: Arc<Shared>,
    labels: ComponentLabels,
    /// The common case, resolved once.
    http_ok: Counter,
    request_duration: Histogram,
    instantiate_duration: Histogram,
    memory_peak: Histogram,
    instances_active: Gauge,
    slots_waiting: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    sqlite: Counter,
}

/// One component's metrics; cheap to clone. The default records nothing.
#[derive(Clone, Default)]
pub struct ComponentMetrics(Option<Arc<ComponentHandles>>);

impl std::fmt::Debug for ComponentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(handles) => write!(
                f,
                "ComponentMetrics({}/{})",
                handles.labels.app, handles.labels.component
            ),
            None => f.write_str("ComponentMetrics(disabled)"),
        }
    }
}

impl ComponentMetrics {
    /// A handle that records nothing.
    pub const fn disabled() -> Self {
        Self(None)
    }

    /// Whether this records anything.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Records a request or event handled by `trigger` (`http`, `redis`, `cron`, …):
    /// `status` is the HTTP status answered (`None` for events), `duration` the time to
    /// the response head or the end of the event.
    pub fn request(
        &self,
        trigger: &'static str,
        status: Option<u16>,
        outcome: Outcome,
        duration: Duration,
    ) {
        let Some(handles) = &self.0 else { return };
        match (trigger, status, outcome) {
            ("http", Some(200..=299), Outcome::Ok) => {
                handles.http_ok.inc();
            }
            _ => {
                handles.shared.note_trigger(trigger);
                handles
                    .shared
                    .requests
                    .get_or_create(&request_labels(&handles.labels, trigger, status, outcome))
                    .inc();
            }
        }
        handles.request_duration.observe(duration.as_secs_f64());
    }

    /// Records one instantiation's time.
    pub fn instantiated(&self, took: Duration) {
        if let Some(handles) = &self.0 {
            handles.instantiate_duration.observe(took.as_secs_f64());
        }
    }

    /// Records an instance's end: the CPU time it used and its linear-memory peak (not
    /// known for an instance cancelled midway).
    pub fn instance_ended(&self, memory_peak: Option<u64>, cpu: Duration) {
        if let Some(handles) = &self.0 {
            if let Some(peak) = memory_peak {
                handles.memory_peak.observe(peak as f64);
            }
            handles.cpu_seconds.inc_by(cpu.as_secs_f64());
        }
    }

    /// Counts an instance as alive until the guard drops.
    pub fn instance_alive(&self) -> GaugeGuard {
        GaugeGuard::raise(self.0.as_ref().map(|h| &h.instances_active))
    }

    /// Counts a request or event as waiting for a slot until the guard drops.
    pub fn waiting_for_slot(&self) -> GaugeGuard {
        GaugeGuard::raise(self.0.as_ref().map(|h| &h.slots_waiting))
    }

    /// Records an outbound call.
    pub fn outbound(&self, kind: OutboundKind, outcome: OutboundOutcome) {
        let Some(handles) = &self.0 else { return };
        handles
            .shared
            .outbound
            .get_or_create(&OutboundLabels {
                app: handles.labels.app.clone(),
                component: handles.labels.component.clone(),
                kind: kind.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Records a key-value operation (`get`, `set`, `delete`, `exists`, `get_keys`, …).
    pub fn kv_operation(&self, op: &'static str) {
        let Some(handles) = &self.0 else { return };
        handles
            .shared
            .kv
            .get_or_create(&OperationLabels {
                app: handles.labels.app.clone(),
                component: handles.labels.component.clone(),
                op,
            })
            .inc();
    }

    /// Records an executed SQLite statement.
    pub fn sqlite_statement(&self) {
        if let Some(handles) = &self.0 {
            handles.sqlite.inc();
        }
    }
}

/// Lowers a gauge it raised when dropped.
#[must_use = "the gauge goes back down when this guard drops"]
pub struct GaugeGuard(Option<Gauge>);

impl GaugeGuard {
    fn raise(gauge: Option<&Gauge>) -> Self {
        Self(gauge.map(|gauge| {
            gauge.inc();
            gauge.clone()
        }))
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

impl std::fmt::Debug for GaugeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GaugeGuard")
    }
}

#[cfg(test)]
mod tests;

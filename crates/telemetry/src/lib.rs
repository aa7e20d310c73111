//! OpenTelemetry traces: one server span per request and one root span per trigger
//! event (a Redis message, a cron tick), child spans for instantiation, outbound calls
//! (HTTP, Redis, PostgreSQL, MySQL, MQTT, TCP) and key-value and SQL operations,
//! exported over OTLP/HTTP (protobuf).
//!
//! Configured as Spin and SpinKube are, by the standard variables:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (`/v1/traces` is appended), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`. Without an endpoint
//! tracing is off: [`Tracing::disabled`] makes no span and reads no clock.
//!
//! A span's context travels with the request as a [`SpanParent`] (in the request's
//! extensions, then in the instance's state), so the engine and the host capabilities
//! start children of the request's span without knowing about each other. Ended spans go
//! through a bounded channel to one exporter task, which sends them in batches; when the
//! collector is slow or away, spans are dropped (and counted in a warning), never queued
//! without bound and never waited for by a request.

mod context;
mod export;

pub use context::SpanContext;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1 as proto;
use std::sync::Arc;
use std::time::SystemTime;

/// Why the tracing configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A variable has a value Wisp cannot use.
    #[error("{variable}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The HTTP client for the exporter could not be built.
    #[error("cannot build the OTLP exporter's HTTP client: {0}")]
    Client(String),
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Every trace (`always_on`).
    AlwaysOn,
    /// None (`always_off`).
    AlwaysOff,
    /// This fraction of traces, by trace id (`traceidratio`).
    Ratio(f64),
    /// The caller's decision when the request carries a `traceparent`, else the inner
    /// sampler (`parentbased_always_on`, the default, `parentbased_always_off`,
    /// `parentbased_traceidratio`).
    ParentBased(ParentBasedRoot),
}

/// The root sampler of [`Sampler::ParentBased`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParentBasedRoot {
    /// Every new trace.
    AlwaysOn,
    /// No new trace.
    AlwaysOff,
    /// This fraction of new traces.
    Ratio(f64),
}

impl Sampler {
    /// Whether a new span of trace `trace_id` is recorded, given its parent's decision.
    fn samples(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        let by_ratio = |ratio: f64| {
            // The low 8 bytes of the id, as a fraction of their range (W3C random bits).
            let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
            ratio > 0.0 && ((low >> 11) as f64 / (1u64 << 53) as f64) < ratio
        };
        match *self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio(ratio) => by_ratio(ratio),
            Sampler::ParentBased(root) => match (parent_sampled, root) {
                (Some(sampled), _) => sampled,
                (None, ParentBasedRoot::AlwaysOn) => true,
                (None, ParentBasedRoot::AlwaysOff) => false,
                (None, ParentBasedRoot::Ratio(ratio)) => by_ratio(ratio),
            },
        }
    }
}

/// Where spans go and which are kept.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Which traces are recorded.
    pub sampler: Sampler,
    /// Extra headers on each export (authentication).
    pub headers: Vec<(String, String)>,
}

impl TraceConfig {
    /// The configuration the `OTEL_*` variables give through `var`; `None` when no
    /// endpoint is set (tracing off).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, TelemetryError> {
        let non_empty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let (variable, endpoint) = match (
            non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            non_empty("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            ),
            (None, None) => return Ok(None),
        };
        let usable = endpoint.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !usable {
            return Err(TelemetryError::Invalid {
                variable,
                value: endpoint,
                reason: "Wisp exports OTLP over HTTP: write an http:// or https:// URL such as http://127.0.0.1:4318".to_owned(),
            });
        }
        if let Some(protocol) = non_empty("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| non_empty("OTEL_EXPORTER_OTLP_PROTOCOL"))
            && protocol != "http/protobuf"
        {
            return Err(TelemetryError::Invalid {
                variable: "OTEL_EXPORTER_OTLP_PROTOCOL",
                value: protocol,
                reason: "Wisp exports OTLP as http/protobuf only; unset it or set http/protobuf (collectors listen for it on port 4318)".to_owned(),
            });
        }
        let sampler = sampler(
            non_empty("OTEL_TRACES_SAMPLER"),
            non_empty("OTEL_TRACES_SAMPLER_ARG"),
        )?;
        let headers = non_empty("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| non_empty("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|text| headers(&text))
            .transpose()?
            .unwrap_or_default();
        Ok(Some(TraceConfig {
            endpoint,
            service_name: non_empty("OTEL_SERVICE_NAME").unwrap_or_else(|| "wisp".to_owned()),
            sampler,
            headers,
        }))
    }
}

fn sampler(name: Option<String>, arg: Option<String>) -> Result<Sampler, TelemetryError> {
    let ratio = || -> Result<f64, TelemetryError> {
        match &arg {
            None => Ok(1.0),
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| TelemetryError::Invalid {
                    variable: "OTEL_TRACES_SAMPLER_ARG",
                    value: text.clone(),
                    reason: "write a fraction between 0 and 1, e.g. 0.01".to_owned(),
                }),
        }
    };
    Ok(match name.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => Sampler::ParentBased(ParentBasedRoot::AlwaysOn),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::Ratio(ratio()?),
        Some("parentbased_always_off") => Sampler::ParentBased(ParentBasedRoot::AlwaysOff),
        Some("parentbased_traceidratio") => Sampler::ParentBased(ParentBasedRoot::Ratio(ratio()?)),
        Some(other) => {
            return Err(TelemetryError::Invalid {
                variable: "OTEL_TRACES_SAMPLER",
                value: other.to_owned(),
                reason: "use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio".to_owned(),
            });
        }
    })
}

/// `key1=value1,key2=value2` (values percent-decoded, as the OTLP exporter spec says).
fn headers(text: &str) -> Result<Vec<(String, String)>, TelemetryError> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| TelemetryError::Invalid {
                    variable: "OTEL_EXPORTER_OTLP_HEADERS",
                    value: text.to_owned(),
                    reason: "write key=value pairs separated by commas".to_owned(),
                })?;
            Ok((key.trim().to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Inner {
    /// Where spans are exported, for the start-up summary.
    endpoint: String,
    sampler: Sampler,
    spans: tokio::sync::mpsc::Sender<proto::Span>,
}

/// The process's tracer; cheap to clone. [`Tracing::disabled`] records nothing.
#[derive(Clone, Default)]
pub struct Tracing(Option<Arc<Inner>>);

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("enabled", &self.0.is_some())
            .finish()
    }
}

impl Tracing {
    /// Tracing off.
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Tracing as the process's `OTEL_*` variables configure it (off without an
    /// endpoint). Starts the exporter task: call it inside a Tokio runtime.
    pub fn from_env() -> Result<Self, TelemetryError> {
        match TraceConfig::from_vars(|name| std::env::var(name).ok())? {
            Some(config) => Self::start(config),
            None => Ok(Self::disabled()),
        }
    }

    /// Tracing to `config`'s collector. Starts the exporter task: call it inside a Tokio
    /// runtime.
    pub fn start(config: TraceConfig) -> Result<Self, TelemetryError> {
        let (sampler, endpoint) = (config.sampler, config.endpoint.clone());
        let spans = export::spawn(config)?;
        Ok(Self(Some(Arc::new(Inner {
            endpoint,
            sampler,
            spans,
        }))))
    }

    /// The OTLP traces URL spans go to; `None` when tracing is off.
    pub fn endpoint(&self) -> Option<&str> {
        self.0.as_ref().map(|inner| inner.endpoint.as_str())
    }

    /// Whether spans are recorded at all.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Starts the server span of a request that carried `traceparent` (if any): a child
    /// of the caller's span, in its trace. `None` when tracing is off or the sampler
    /// drops the trace; `name` is only called for a span that is kept, so a dropped
    /// trace costs no allocation.
    pub fn server_span(
        &self,
        traceparent: Option<&str>,
        name: impl FnOnce() -> String,
    ) -> Option<Span> {
        if !self.is_enabled() {
            return None;
        }
        let caller = traceparent.and_then(SpanContext::parse);
        self.sampled_span(caller, name, proto::span::SpanKind::Server)
    }

    /// A span of `kind` continuing `caller`'s trace (or starting one), when the sampler
    /// keeps it.
    fn sampled_span(
        &self,
        caller: Option<SpanContext>,
        name: impl FnOnce() -> String,
        kind: proto::span::SpanKind,
    ) -> Option<Span> {
        let inner = self.0.as_ref()?;
        let trace_id = caller.map_or_else(context::new_trace_id, |c| c.trace_id);
        if !inner.sampler.samples(&trace_id, caller.map(|c| c.sampled)) {
            return None;
        }
        Some(Span::start(
            inner.clone(),
            SpanContext {
                trace_id,
                span_id: context::new_span_id(),
                sampled: true,
            },
            caller.map(|c| c.span_id),
            name(),
            kind,
        ))
    }
}

/// What starts an event's root span: its kind in the exported span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A message taken from a broker (a Redis channel): a `CONSUMER` span.
    Message,
    /// A run the host schedules itself (a cron tick): an `INTERNAL` span.
    Scheduled,
}

impl Tracing {
    /// Starts the root span of an event (a message, a tick): a new trace, kept or
    /// dropped by the sampler. `None` when tracing is off or the trace is dropped;
    /// `name` is only called for a span that is kept.
    pub fn event_span(&self, kind: EventKind, name: impl FnOnce() -> String) -> Option<Span> {
        let kind = match kind {
            EventKind::Message => proto::span::SpanKind::Consumer,
            EventKind::Scheduled => proto::span::SpanKind::Internal,
        };
        self.sampled_span(None, name, kind)
    }
}

/// A recorded span's handle for starting children; cheap to clone. Kept in the request's
/// extensions and the instance's state.
#[derive(Clone)]
pub struct SpanParent {
    inner: Arc<Inner>,
    context: SpanContext,
}

impl std::fmt::Debug for SpanParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpanParent({})", self.context.traceparent())
    }
}

impl SpanParent {
    /// The parent span's context (its `traceparent`, its trace id for logs).
    pub fn context(&self) -> SpanContext {
        self.context
    }

    /// Starts an internal child span.
    pub fn child(&self, name: impl Into<String>) -> Span {
        self.child_of_kind(name.into(), proto::span::SpanKind::Internal)
    }

    /// Starts a client child span (an outbound call): its context goes into the call's
    /// `traceparent`.
    pub fn client_child(&self, name: impl Into<String>) -> Span {
        self.child_of_kind(name.into(), proto::span::SpanKind::Client)
    }

    fn child_of_kind(&self, name: String, kind: proto::span::SpanKind) -> Span {
        Span::start(
            self.inner.clone(),
            SpanContext {
                trace_id: self.context.trace_id,
                span_id: context::new_span_id(),
                sampled: true,
            },
            Some(self.context.span_id),
            name,
            kind,
        )
    }
}

/// A span in progress; sent to the collector when it ends (or is dropped).
pub struct Span {
    inner: Arc<Inner>,
    context: SpanContext,
    parent: Option<[u8; 8]>,
    name: String,
    kind: proto::span::SpanKind,
    start: u64,
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A value of a span attribute.
#[derive(Debug, Clone)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Str(value.to_owned())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Str(value)
    }
}
impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}
impl From<u16> for Value {
    fn from(value: u16) -> Self {
        Value::Int(value.into())
    }
}
impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

pub(crate) fn key_value(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(match value {
                Value::Str(s) => any_value::Value::StringValue(s),
                Value::Int(i) => any_value::Value::IntValue(i),
                Value::Bool(b) => any_value::Value::BoolValue(b),
            }),
        }),
        ..Default::default()
    }
}

impl Span {
    fn start(
        inner: Arc<Inner>,
        context: SpanContext,
        parent: Option<[u8; 8]>,
        name: String,
        kind: proto::span::SpanKind,
    ) -> Self {
        Span {
            inner,
            context,
            parent,
            name,
            kind,
            start: unix_nanos(),
            attributes: Vec::new(),
            error: None,
        }
    }

    /// This span's context.
    pub fn context(&self) -> SpanContext {
        self.context
    }

    /// A handle to start children of this span.
    pub fn parent(&self) -> SpanParent {
        SpanParent {
            inner: self.inner.clone(),
            context: self.context,
        }
    }

    /// Sets attribute `key` (semantic-convention names: `http.request.method`, …).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.attributes.push(key_value(key, value.into()));
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }

    /// Ends the span now (dropping it does the same).
    pub fn end(self) {}

    /// Ends the span, marked failed with the error's text when `result` is an error.
    pub fn end_with<T, E: std::fmt::Display>(mut self, result: &Result<T, E>) {
        if let Err(error) = result {
            self.fail(error.to_string());
        }
    }
}

/// The trace id of a span that may not be recorded, for log lines' `trace_id` field.
pub fn trace_id(span: Option<&Span>) -> Option<String> {
    span.map(|span| span.context().trace_id_hex())
}

/// ` trace_id=<hex>` for a log line's text, empty without a trace id.
pub fn trace_suffix(trace_id: Option<&str>) -> String {
    trace_id.map_or_else(String::new, |id| format!(" trace_id={id}"))
}

/// [`Span::end_with`] for a span that may not be recorded.
pub fn end_with<T, E: std::fmt::Display>(span: Option<Span>, result: &Result<T, E>) {
    if let Some(span) = span {
        span.end_with(result);
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let status = self.error.take().map(|message| proto::Status {
            message,
            code: proto::status::StatusCode::Error as i32,
        });
        let span = proto::Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.context.span_id.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 1,
            name: std::mem::take(&mut self.name),
            kind: self.kind as i32,
            start_time_unix_nano: self.start,
            end_time_unix_nano: unix_nanos(),
            attributes: std::mem::take(&mut self.attributes),
            status,
            ..Default::default()
        };
        export::send(&self.inner.spans, span);
    }
}

#[cfg(test)]
mod tests;

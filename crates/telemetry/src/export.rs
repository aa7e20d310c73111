//! The exporter: ended spans through a bounded channel to one task that sends them to the
//! collector in batches (OTLP/HTTP, protobuf).

use crate::{TelemetryError, TraceConfig, key_value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Spans waiting for export at most; more are dropped.
const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
/// Longest a span waits before its batch is sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// One export's time limit.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Queues `span` for export, or drops it (and counts it) when the queue is full.
pub(crate) fn send(queue: &mpsc::Sender<Span>, span: Span) {
    if queue.try_send(span).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts the export task; returns its queue.
pub(crate) fn spawn(config: TraceConfig) -> Result<mpsc::Sender<Span>, TelemetryError> {
    // The process-wide rustls provider for an https endpoint (the registry client
    // installs the same one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = http_client()?;
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(client, config, rx));
    Ok(tx)
}

/// The exporter's client, trusting the system's certificate authorities; where the system
/// has none (a container image without a CA bundle, such as a plain Spin image under the
/// shim), the bundled Mozilla roots instead, so that exporting does not stop the app.
fn http_client() -> Result<reqwest::Client, TelemetryError> {
    let builder = || {
        reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .user_agent(concat!("wisp/", env!("CARGO_PKG_VERSION")))
    };
    let system = match builder().build() {
        Ok(client) => return Ok(client),
        Err(error) => error_chain(&error),
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = builder()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|error| {
            TelemetryError::Client(format!(
                "{system}; with the bundled roots: {}",
                error_chain(&error)
            ))
        })?;
    tracing::debug!(
        "the system's certificate authorities are unusable ({system}): the OTLP exporter trusts the bundled Mozilla roots"
    );
    Ok(client)
}

/// An error and its sources, joined with `: ` (reqwest's own text is only "builder error").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn resource(config: &TraceConfig) -> Resource {
    Resource {
        attributes: vec![
            key_value("service.name", config.service_name.clone().into()),
            key_value("telemetry.sdk.name", "wisp".into()),
            key_value("telemetry.sdk.language", "rust".into()),
            key_value("service.version", env!("CARGO_PKG_VERSION").into()),
        ],
        ..Default::default()
    }
}

async fn run(client: reqwest::Client, config: TraceConfig, mut rx: mpsc::Receiver<Span>) {
    let resource = resource(&config);
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        // Wait for a first span, then gather more for up to FLUSH_EVERY.
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "wisp".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    spans: std::mem::take(&mut batch),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut post = client
            .post(&config.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(request.encode_to_vec());
        for (name, value) in &config.headers {
            post = post.header(name, value);
        }
        let sent = post
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match (sent, failing) {
            (Ok(_), true) => {
                failing = false;
                tracing::info!("exporting traces to {} again", config.endpoint);
            }
            (Ok(_), false) => {}
            // Once per outage, not once per batch.
            (Err(err), false) => {
                failing = true;
                tracing::warn!(
                    "cannot export traces to {}: {err}; their spans are dropped until it answers (check OTEL_EXPORTER_OTLP_ENDPOINT)",
                    config.endpoint
                );
            }
            (Err(_), true) => {}
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                "dropped {dropped} spans: the export queue was full (the collector is slower than the traffic)"
            );
        }
    }
}

//! Outbound HTTP from guests (`wasi:http` 0.2 outgoing-handler and the 0.3 client):
//! every request is checked against the component's `allowed_outbound_hosts`, then sent
//! by [`OutboundClient`] (which refuses blocked networks on the resolved addresses), or
//! dispatched in-process for `http://self/...` and `http://<component>.spin.internal/...`.

use http::{Request, Response};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};
use wisp_metrics::{OutboundKind, OutboundOutcome};
use wisp_outbound::{AllowedHosts, Destination, OutboundClient, SendError, Timeouts};

/// Default of [`crate::EngineConfig::max_outbound_requests`]: most outbound requests one
/// incoming request may make; stops a component from fanning out without bound or
/// calling itself in a loop.
pub const DEFAULT_MAX_OUTBOUND_REQUESTS: u32 = 64;

/// Where an in-process request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalTarget {
    /// The app's own routes (`http://self/...`).
    SelfApp,
    /// One component, by id (`http://<id>.spin.internal/...`).
    Component(String),
}

/// The boxed future an in-process dispatch returns.
pub type LocalResponse =
    Pin<Box<dyn Future<Output = Result<Response<WasiBody>, HttpError>> + Send>>;

/// Handles requests a guest sends to its own app, without a socket. Implemented by the
/// HTTP trigger, which owns the routes.
pub trait LocalDispatch: Send + Sync {
    /// Runs `request` against `target` and returns its response.
    fn dispatch(&self, target: LocalTarget, request: Request<WasiBody>) -> LocalResponse;
}

/// Per-app outbound state shared by every component.
pub(crate) struct AppOutbound {
    pub(crate) client: OutboundClient,
    pub(crate) max_requests: u32,
    pub(crate) local: OnceLock<Weak<dyn LocalDispatch>>,
}

/// One component's outbound policy, built once at load.
pub(crate) struct ComponentOutbound {
    pub(crate) allowed: AllowedHosts,
    pub(crate) client: OutboundClient,
    pub(crate) app: Arc<AppOutbound>,
}

/// How many outbound requests one incoming request and everything it calls in-process
/// have made. In-process requests carry it in their extensions, so a chain of
/// components (or a component calling itself) shares one budget. Allocated on the first
/// outbound request: most requests make none.
#[derive(Clone, Default)]
pub(crate) struct OutboundBudget(Option<Arc<AtomicU32>>);

impl OutboundBudget {
    /// The budget an incoming request brings, or a fresh one.
    pub(crate) fn of<B>(request: &Request<B>) -> Self {
        Self::of_extensions(request.extensions())
    }

    /// [`Self::of`], from the request's extensions.
    pub(crate) fn of_extensions(extensions: &http::Extensions) -> Self {
        extensions.get::<Self>().cloned().unwrap_or_default()
    }

    /// Whether `request` was dispatched in-process by another instance.
    pub(crate) fn is_nested<B>(request: &Request<B>) -> bool {
        request.extensions().get::<Self>().is_some()
    }

    fn counter(&mut self) -> &Arc<AtomicU32> {
        self.0.get_or_insert_with(Default::default)
    }

    /// Counts one request; `false` once `limit` requests were made.
    fn spend(&mut self, limit: u32) -> bool {
        self.counter()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sent| {
                (sent < limit).then_some(sent + 1)
            })
            .is_ok()
    }

    /// The budget to hand to an in-process callee: the same counter.
    fn share(&mut self) -> Self {
        Self(Some(self.counter().clone()))
    }
}

/// The per-instance `wasi:http` hooks: the policy plus the request budget.
pub(crate) struct OutboundHooks {
    pub(crate) component: Arc<str>,
    /// Counts each outbound request by outcome.
    pub(crate) metrics: wisp_metrics::ComponentMetrics,
    /// The span of the request the instance serves: each outbound request gets a client
    /// child span, whose context it carries as `traceparent`.
    pub(crate) trace: Option<wisp_telemetry::SpanParent>,
    pub(crate) policy: Arc<ComponentOutbound>,
    pub(crate) budget: OutboundBudget,
    /// The instance's deadline: no outbound timeout may outlast it.
    pub(crate) deadline: Instant,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl OutboundHooks {
    /// A client span for `request` when the instance's request is traced, its context
    /// set as the request's `traceparent` (replacing one the guest set).
    fn client_span(
        &self,
        request: &mut Request<WasiBody>,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Option<wisp_telemetry::Span> {
        let mut span = self.trace.as_ref()?.client_child(request.method().as_str());
        span.set("http.request.method", request.method().as_str());
        span.set("url.scheme", scheme);
        span.set("server.address", host);
        if port != 0 {
            span.set("server.port", port);
        }
        span.set("url.path", request.uri().path());
        if let Ok(value) = http::HeaderValue::from_str(&span.context().traceparent()) {
            request.headers_mut().insert("traceparent", value);
        }
        Some(span)
    }

    /// The trace id of the request this instance serves, when traced (for log lines).
    fn trace_id(&self) -> Option<String> {
        self.trace.as_ref().map(|t| t.context().trace_id_hex())
    }

    /// A refused call is in the trace too, as a failed client span, so a trace shows what
    /// was refused and why.
    fn denied_span(&self, method: &http::Method, why: &str) {
        if let Some(trace) = &self.trace {
            let mut span = trace.client_child(method.as_str());
            span.set("http.request.method", method.as_str());
            span.set("wisp.outcome", "denied");
            span.fail(why);
        }
    }

    fn deny(&self, method: &http::Method, uri: &http::Uri, why: String) -> SendFuture {
        self.metrics
            .outbound(OutboundKind::Http, OutboundOutcome::Denied);
        self.denied_span(method, &format!("denied: {why}"));
        let trace_id = self.trace_id();
        tracing::warn!(
            component = %self.component,
            trace_id = trace_id.as_deref(),
            "outbound request to {} denied: {why}{}",
            Redacted(uri),
            wisp_telemetry::trace_suffix(trace_id.as_deref())
        );
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri().clone();
        let limit = self.policy.app.max_requests;
        if !self.budget.spend(limit) {
            self.metrics
                .outbound(OutboundKind::Http, OutboundOutcome::Denied);
            self.denied_span(
                request.method(),
                &format!("refused: at most {limit} outbound requests per incoming request"),
            );
            let trace_id = self.trace_id();
            tracing::warn!(
                component = %self.component,
                trace_id = trace_id.as_deref(),
                "outbound request to {} refused: one incoming request (with everything it calls in-process) may make at most {limit} outbound requests (--max-outbound-requests){}",
                Redacted(&uri),
                wisp_telemetry::trace_suffix(trace_id.as_deref())
            );
            return Box::new(async { Err(HttpError::ConnectionLimitReached) });
        }
        let allowed = &self.policy.allowed;
        let local = match Destination::classify(&uri) {
            Destination::SelfApp if allowed.allows_self() => LocalTarget::SelfApp,
            Destination::SelfApp => {
                return self.deny(
                    request.method(),
                    &uri,
                    "the app itself is not in allowed_outbound_hosts; add \"http://self\""
                        .to_owned(),
                );
            }
            Destination::Component(id) if allowed.allows_component(&id) => {
                LocalTarget::Component(id)
            }
            Destination::Component(id) => {
                return self.deny(
                    request.method(),
                    &uri,
                    format!("not in allowed_outbound_hosts; add \"http://{id}.spin.internal\""),
                );
            }
            Destination::Network { scheme, host, port } => {
                let granted = match host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                {
                    Ok(ip) => allowed.allows_ip(&scheme, ip, port),
                    Err(_) => allowed.allows(&scheme, &host, port),
                };
                if !granted {
                    let host = if host.contains(':') && !host.starts_with('[') {
                        format!("[{host}]")
                    } else {
                        host
                    };
                    return self.deny(
                        request.method(),
                        &uri,
                        format!("not in allowed_outbound_hosts; add \"{scheme}://{host}:{port}\" to grant it"),
                    );
                }
                let client = self.policy.client.clone();
                let timeouts = timeouts(options, self.deadline);
                let component = self.component.clone();
                let metrics = self.metrics.clone();
                let trace_id = self.trace_id();
                let mut span = self.client_span(&mut request, &scheme, &host, port);
                return Box::new(async move {
                    let sent = client.send(request, timeouts).await;
                    if let Some(span) = &mut span {
                        match &sent {
                            Ok((response, _)) => {
                                span.set("http.response.status_code", response.status().as_u16());
                                if response.status().is_server_error() {
                                    span.fail(response.status().to_string());
                                }
                            }
                            Err(e) => span.fail(e.to_string()),
                        }
                    }
                    drop(span);
                    metrics.outbound(
                        OutboundKind::Http,
                        match &sent {
                            Ok(_) => OutboundOutcome::Ok,
                            // The resolved address is in a blocked network: refused by
                            // policy before any connection.
                            Err(SendError::DestinationBlocked { .. }) => OutboundOutcome::Denied,
                            Err(_) => OutboundOutcome::Error,
                        },
                    );
                    let (response, connection) = sent.map_err(|e| {
                        tracing::warn!(
                            component = %component,
                            trace_id = trace_id.as_deref(),
                            "component `{component}`: outbound request to {} failed: {e}{}",
                            Redacted(&uri),
                            wisp_telemetry::trace_suffix(trace_id.as_deref())
                        );
                        to_http_error(e)
                    })?;
                    let response = response.map(|body| body.map_err(to_http_error).boxed_unsync());
                    let connection: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                        Box::new(async move { connection.await.map_err(to_http_error) });
                    Ok((response, connection))
                });
            }
        };
        let dispatcher = self.policy.app.local.get().and_then(Weak::upgrade);
        let Some(dispatcher) = dispatcher else {
            return self.deny(
                request.method(),
                &uri,
                "no trigger serves this app's routes in-process".to_owned(),
            );
        };
        let shared = self.budget.share();
        request.extensions_mut().insert(shared);
        // An in-process request's server span becomes this span's child.
        let span = self.client_span(&mut request, "http", "self", 0);
        let metrics = self.metrics.clone();
        Box::new(async move {
            let response = dispatcher.dispatch(local, request).await;
            drop(span);
            metrics.outbound(
                OutboundKind::Http,
                match &response {
                    Ok(_) => OutboundOutcome::Ok,
                    Err(_) => OutboundOutcome::Error,
                },
            );
            let response = response?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// The guest's request options over the defaults, each capped at the time left before
/// the instance's deadline (a guest cannot keep a slot longer by asking to wait).
fn timeouts(options: Option<RequestOptions>, deadline: Instant) -> Timeouts {
    let mut timeouts = Timeouts::default();
    if let Some(options) = options {
        if let Some(t) = options.connect_timeout {
            timeouts.connect = t;
        }
        if let Some(t) = options.first_byte_timeout {
            timeouts.first_byte = t;
        }
        if let Some(t) = options.between_bytes_timeout {
            timeouts.between_bytes = t;
        }
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    timeouts.connect = timeouts.connect.min(left);
    timeouts.first_byte = timeouts.first_byte.min(left);
    timeouts.between_bytes = timeouts.between_bytes.min(left);
    timeouts
}

/// A URI for logs: scheme, host, port and path, without userinfo or query (either may
/// carry a secret).
struct Redacted<'a>(&'a http::Uri);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uri = self.0;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(authority) = uri.authority() {
            let host_port = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, rest)| rest);
            f.write_str(host_port)?;
        }
        f.write_str(uri.path())?;
        if uri.query().is_some() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

/// The WASI error code closest to each client failure.
fn to_http_error(error: SendError) -> HttpError {
    match error {
        SendError::InvalidUri(_) => HttpError::HttpRequestUriInvalid,
        SendError::DnsError(message) => HttpError::DnsError {
            rcode: Some(message),
            info_code: None,
        },
        SendError::DestinationBlocked { .. } => HttpError::DestinationIpProhibited,
        SendError::ConnectionRefused(_) => HttpError::ConnectionRefused,
        SendError::ConnectionTimeout => HttpError::ConnectionTimeout,
        SendError::DestinationUnreachable(_) => HttpError::DestinationUnavailable,
        SendError::ConnectionReset | SendError::ConnectionTerminated => {
            HttpError::ConnectionTerminated
        }
        SendError::TlsError(_) => HttpError::TlsProtocolError,
        SendError::TlsCertificate(_) => HttpError::TlsCertificateError,
        SendError::TlsAlert(_) => HttpError::TlsAlertReceived {
            alert_id: None,
            alert_message: None,
        },
        SendError::ProtocolError(_) => HttpError::HttpProtocolError,
        SendError::ResponseHeadersTooLarge => HttpError::HttpResponseHeaderSectionSize(None),
        SendError::RequestBodyError(message) => HttpError::InternalError(Some(message)),
        SendError::FirstByteTimeout => HttpError::ConnectionReadTimeout,
        SendError::BetweenBytesTimeout => HttpError::ConnectionReadTimeout,
    }
}

//! The HTTP trigger.
//!
//! Fourth step of the data path: a [`LoadedApp`] (crate `wisp-engine`) is put behind a
//! hyper 1 server speaking HTTP/1.1 and HTTP/2 (h2c). Each request is routed once against
//! the table built at startup, gets Spin's request headers, and runs in a fresh instance of
//! its component. Guest faults become 500/504 responses with a log line; the server keeps
//! serving.

mod config;
mod handoff;
mod limits;
mod routes;
mod server;
mod spin1;
mod tls;
mod wagi;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;
use wasmtime_wasi_http::WasiBody;
use wisp_engine::{GuestFault, LoadedApp, LocalDispatch, LocalResponse, LocalTarget};
use wisp_metrics::{CpuMeter, Outcome};
use wisp_trigger::{BoxFuture, Summary, TriggerError};

use config::static_response;
pub use config::{HttpExecutor, HttpTriggerConfig, StaticResponse, WAGI_DEFAULT_ARGV, WagiConfig};
pub use handoff::{HandOff, HandedConnection, Redirect, hand_off_connection};
pub use limits::DEFAULT_MAX_REQUEST_BODY;
pub(crate) use limits::RefusalLog;
pub use routes::{RouteMatch, RouteTarget, Router};
pub use server::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_COUNT, HoldingBody, PRESSURE_IDLE_TIMEOUT, Peer,
    RequestHandler, ServerConfig, serve, serve_current, serve_with_handed_off,
};
pub use tls::{TlsConfig, TlsError};

/// The request's checked authority (`host[:port]`) as the front door sees it: the URI's,
/// else the one `Host` header, else (HTTP/1.0, HTTP/2) `local`. An error names what is
/// wrong (a second `Host`, user info, an HTTP/1.1 request without one).
pub fn request_authority<B>(
    request: &Request<B>,
    local: SocketAddr,
) -> Result<String, &'static str> {
    limits::authority(request, Some(local))
}

/// A plain-text response, for embedders answering before any app runs.
pub fn text_response(status: StatusCode, body: &'static str) -> Response<WasiBody> {
    text(status, body)
}

const TYPE: &str = "http";

/// What a component must export to serve HTTP.
const NO_HTTP_EXPORT: &str = "it must export `wasi:http/incoming-handler@0.2.x`, `wasi:http/handler@0.3.0` or Spin 1.x's `fermyon:spin/inbound-http`";

/// The `http` trigger type, for the runtime's registry. The trigger it builds is served
/// by a front door ([`serve_current`], or an embedder's own): its `run` only waits.
#[derive(Debug, Clone, Copy)]
pub struct HttpTriggerType {
    /// Request body cap of routes without their own `max_request_body_size`.
    pub default_body_limit: u64,
}

impl Default for HttpTriggerType {
    fn default() -> Self {
        Self {
            default_body_limit: DEFAULT_MAX_REQUEST_BODY,
        }
    }
}

impl wisp_trigger::TriggerType for HttpTriggerType {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn check_component(
        &self,
        component: &wasmtime::component::InstancePre<wisp_engine::Host>,
    ) -> Result<(), String> {
        let p3 = wasmtime_wasi_http::p3::bindings::ServicePre::new(component.clone()).is_ok();
        let p2 = wasmtime_wasi_http::p2::bindings::ProxyPre::new(component.clone()).is_ok();
        match p3 || p2 || spin1::exports_handler(component) {
            true => Ok(()),
            false => Err(format!(
                "an HTTP trigger needs an HTTP handler: {NO_HTTP_EXPORT}; build it as an HTTP component (e.g. spin-sdk `#[http_component]`)"
            )),
        }
    }

    fn build(
        &self,
        context: &wisp_trigger::TriggerContext<'_>,
    ) -> Result<Arc<dyn wisp_trigger::Trigger>, TriggerError> {
        let configs = context.configs::<HttpTriggerConfig>(TYPE)?;
        Ok(HttpTrigger::from_configs(
            context.app.clone(),
            configs,
            self.default_body_limit,
        )?)
    }
}

/// One routable entry, for the startup summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    /// The trigger's id.
    pub trigger: String,
    /// Route as written.
    pub route: String,
    /// Component id, or `None` for a static response.
    pub component: Option<String>,
}

/// An app behind HTTP: route table, static responses and the loaded components.
pub struct HttpTrigger {
    /// Lets in-process dispatch hand an owned trigger to its `'static` future.
    me: Weak<HttpTrigger>,
    app: Arc<LoadedApp>,
    router: Router,
    statics: Vec<StaticResponse>,
    summary: Vec<RouteSummary>,
    info: Bytes,
    /// Request body cap for routes without their own `max_request_body_size`.
    default_body_limit: u64,
    /// Routes (as written) with their own body cap.
    body_limits: HashMap<String, u64>,
    /// Components the wagi executor runs, with their command-line template.
    wagi: HashMap<String, String>,
    /// Components called through Spin 1.x's `fermyon:spin/inbound-http` (they have no
    /// `wasi:http` export).
    spin1: std::collections::HashSet<String>,
}

impl std::fmt::Debug for HttpTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTrigger")
            .field("routes", &self.summary)
            .finish()
    }
}

const WELL_KNOWN_WISP: &str = "/.well-known/wisp/";
const WELL_KNOWN_SPIN: &str = "/.well-known/spin/";

impl HttpTrigger {
    /// Builds the route table from the app's `http` triggers and registers the trigger
    /// as the app's in-process dispatcher (for `http://self/...` and
    /// `http://<id>.spin.internal/...` requests from guests).
    pub fn new(app: Arc<LoadedApp>) -> Result<Arc<Self>, TriggerError> {
        Self::with_body_limit(app, DEFAULT_MAX_REQUEST_BODY)
    }

    /// [`HttpTrigger::new`], with `default_body_limit` bytes as the request body cap of
    /// routes that do not set their own `max_request_body_size`.
    pub fn with_body_limit(
        app: Arc<LoadedApp>,
        default_body_limit: u64,
    ) -> Result<Arc<Self>, TriggerError> {
        let locked = app.locked().clone();
        let context = wisp_trigger::TriggerContext {
            app: &app,
            triggers: locked
                .triggers
                .iter()
                .filter(|t| t.trigger_type == TYPE)
                .collect(),
            expand: &|text: &str| Ok(text.to_owned()),
        };
        let configs = context.configs::<HttpTriggerConfig>(TYPE)?;
        Self::from_configs(app.clone(), configs, default_body_limit)
    }

    fn from_configs(
        app: Arc<LoadedApp>,
        configs: Vec<(&wisp_app::LockedTrigger, HttpTriggerConfig)>,
        default_body_limit: u64,
    ) -> Result<Arc<Self>, TriggerError> {
        let mut router = Router::default();
        let mut body_limits = HashMap::new();
        // How the first trigger calling each component calls it (its wagi command line,
        // or `None` for the HTTP export) and that trigger's id: one component is called
        // one way.
        let mut executor_of: HashMap<String, (Option<String>, String)> = HashMap::new();
        let mut statics = Vec::new();
        let mut summary = Vec::new();
        let mut spin1 = std::collections::HashSet::new();
        for (trigger, config) in configs {
            let invalid = |message: String| TriggerError::Invalid {
                trigger_type: TYPE,
                trigger: trigger.id.clone(),
                message,
            };
            let wagi_argv = match &config.executor {
                Some(HttpExecutor::Wagi(wagi)) => {
                    if let Some(entrypoint) = wagi.entrypoint.as_deref().filter(|e| *e != "_start")
                    {
                        return Err(invalid(format!(
                            "a wagi component is started at `_start`, not `{entrypoint}`; remove `entrypoint`"
                        )));
                    }
                    Some(wagi.argv.clone())
                }
                Some(HttpExecutor::Http) | None => None,
            };
            if let Some(component) = &config.component {
                match executor_of.entry(component.clone()) {
                    std::collections::hash_map::Entry::Occupied(first)
                        if first.get().0 != wagi_argv =>
                    {
                        return Err(invalid(format!(
                            "component `{component}` is called differently here than by trigger `{}` (the wagi executor or its `argv` against the HTTP export); give each way of calling it its own component",
                            first.get().1
                        )));
                    }
                    std::collections::hash_map::Entry::Occupied(_) => {}
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        entry.insert((wagi_argv.clone(), trigger.id.clone()));
                    }
                }
                match app.component(component) {
                    None => {
                        return Err(invalid(format!(
                            "component `{component}` is not defined by the app"
                        )));
                    }
                    Some(loaded) if wagi_argv.is_some() && !loaded.is_command() => {
                        return Err(invalid(format!(
                            "component `{component}` runs under the wagi executor but is not a WASI command (it exports {}): build it as a program with `main` (e.g. for wasm32-wasip1), or remove `executor` if it is an HTTP component",
                            loaded.exports_summary()
                        )));
                    }
                    Some(_) if wagi_argv.is_some() => {}
                    Some(loaded)
                        if loaded.http_export().is_none()
                            && spin1::exports_handler(&loaded.instance_pre()) =>
                    {
                        spin1.insert(component.clone());
                    }
                    Some(loaded) if loaded.http_export().is_none() => {
                        let cgi = match loaded.is_command() {
                            true => {
                                "; a CGI-style program runs with `executor = { type = \"wagi\" }` on its trigger"
                            }
                            false => "",
                        };
                        let exports = loaded.exports_summary();
                        if exports.contains(wisp_engine::WASI_2023_RC) {
                            return Err(invalid(format!(
                                "component `{component}` has no HTTP export Wisp can call (it exports {exports}): {}",
                                wisp_engine::WASI_2023_RC_HINT
                            )));
                        }
                        return Err(invalid(format!(
                            "component `{component}` has no HTTP export (it exports {exports}): {NO_HTTP_EXPORT}{cgi}"
                        )));
                    }
                    Some(_) => {}
                }
            }
            // A route-less trigger is a private component: reachable only from inside.
            let Some(route) = &config.route else { continue };
            let target = match (&config.component, &config.static_response) {
                (_, Some(response)) => {
                    statics.push(response.clone());
                    RouteTarget::Static(statics.len() - 1)
                }
                (Some(component), None) => RouteTarget::Component(component.clone()),
                (None, None) => {
                    return Err(invalid(
                        "has neither a component nor a static response".to_owned(),
                    ));
                }
            };
            router.add(route, target);
            if let Some(limit) = config.max_request_body_size {
                body_limits.insert(route.clone(), limit);
            }
            summary.push(RouteSummary {
                trigger: trigger.id.clone(),
                route: route.clone(),
                component: config.component.clone(),
            });
        }
        let wagi = executor_of
            .into_iter()
            .filter_map(|(component, (argv, _))| argv.map(|argv| (component, argv)))
            .collect();
        let locked = app.locked();
        let info = serde_json::json!({
            "name": locked.metadata.name,
            "version": locked.metadata.version,
            "runtime": "wisp",
            "runtime_version": env!("CARGO_PKG_VERSION"),
            "components": locked.components.iter().map(|c| &c.id).collect::<Vec<_>>(),
        });
        let trigger = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            app,
            router,
            statics,
            summary,
            info: Bytes::from(serde_json::to_vec(&info).expect("info serializes")),
            default_body_limit,
            body_limits,
            wagi,
            spin1,
        });
        let dispatch: Weak<dyn LocalDispatch> = Arc::downgrade(&trigger) as Weak<dyn LocalDispatch>;
        trigger.app.set_local_dispatch(dispatch);
        Ok(trigger)
    }

    /// The routable entries, in manifest order.
    pub fn routes(&self) -> &[RouteSummary] {
        &self.summary
    }

    /// The route `path` takes and the component it runs, or the answer when no component
    /// runs (a well-known path, no route, a static response).
    fn route(&self, path: &str) -> Routed<'_> {
        if let Some(response) = self.well_known(path) {
            return Routed::Answer(response);
        }
        let Some(matched) = self.router.route(path) else {
            return Routed::Answer(text(StatusCode::NOT_FOUND, "Not Found\n"));
        };
        match matched.target {
            RouteTarget::Static(index) => Routed::Answer(static_response(&self.statics[*index])),
            RouteTarget::Component(id) => {
                let id = id.clone();
                Routed::Component(matched, id)
            }
        }
    }

    /// Handles one request end to end (an in-process one, or one a test makes). Never
    /// fails: faults become 4xx/5xx responses. Requests from the network go through the
    /// front door's checks first ([`serve_current`]).
    pub async fn handle(
        &self,
        mut request: Request<WasiBody>,
        client: SocketAddr,
    ) -> Response<WasiBody> {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let (matched, component_id) = match self.route(&path) {
            Routed::Component(matched, id) => (matched, id),
            Routed::Answer(response) => return response,
        };
        let authority =
            limits::authority(&request, None).unwrap_or_else(|_| "localhost".to_owned());
        set_spin_headers(&mut request, &matched, client, &authority, "http");
        self.run(component_id, request, path, started).await
    }

    /// Handles a request from the network: the `Host` is checked (400), a missing one on
    /// HTTP/1.0 becomes the listen address, and the body is capped (413) before and
    /// while the guest reads it. Refusals never reach a guest and are logged.
    pub async fn handle_incoming(
        &self,
        request: Request<hyper::body::Incoming>,
        peer: Peer,
    ) -> Response<WasiBody> {
        let started = Instant::now();
        let (parts, body, authority) = match from_network(request, &peer) {
            Ok(split) => split,
            Err(reason) => {
                RefusalLog::BadRequest.log(format_args!(
                    "refused a request from {} with 400: {reason}",
                    peer.client
                ));
                return text(StatusCode::BAD_REQUEST, "Bad Request\n");
            }
        };
        let path = parts.uri.path().to_owned();
        let (matched, component_id) = match self.route(&path) {
            Routed::Component(matched, id) => (matched, id),
            Routed::Answer(response) => return response,
        };
        let limit = self
            .body_limits
            .get(matched.raw_route)
            .copied()
            .unwrap_or(self.default_body_limit);
        let too_large = |declared: &dyn std::fmt::Display| {
            RefusalLog::BodyTooLarge.log(format_args!(
                "refused {} {path} from {} with 413: the body ({declared}) is larger than the route's {limit}-byte limit (max_request_body_size / --max-request-body-mb)",
                parts.method, peer.client
            ));
            text(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n")
        };
        let body = match limits::cap_body(body, &parts.headers, limit) {
            Ok(capped) => capped,
            Err(declared) => {
                if let Some(component) = self.app.component(&component_id) {
                    component.metrics().request(
                        "http",
                        Some(StatusCode::PAYLOAD_TOO_LARGE.as_u16()),
                        wisp_metrics::Outcome::Refused,
                        started.elapsed(),
                    );
                }
                return too_large(&format_args!("{declared} bytes declared"));
            }
        };
        let tripped = body.tripped();
        let mut request = Request::from_parts(parts, body.boxed_unsync());
        set_spin_headers(
            &mut request,
            &matched,
            peer.client,
            &authority,
            peer.scheme(),
        );
        let streamed_too_large = tripped.map(|tripped| {
            let (method, path, client) = (request.method().clone(), path.clone(), peer.client);
            move || {
                tripped
                    .load(std::sync::atomic::Ordering::Acquire)
                    .then(|| {
                        RefusalLog::BodyTooLarge.log(format_args!(
                            "refused {method} {path} from {client} with 413: the streamed body passed the route's {limit}-byte limit (max_request_body_size / --max-request-body-mb)",
                        ));
                        text(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n")
                    })
            }
        });
        self.run_checked(component_id, request, path, started, streamed_too_large)
            .await
    }

    /// Runs a routed request in a fresh instance of `component_id`; faults become
    /// 500/504 responses with a log line.
    async fn run(
        &self,
        component_id: String,
        request: Request<WasiBody>,
        path: String,
        started: Instant,
    ) -> Response<WasiBody> {
        self.run_checked(
            component_id,
            request,
            path,
            started,
            None::<fn() -> Option<Response<WasiBody>>>,
        )
        .await
    }

    /// [`Self::run`], with a last check once the guest has answered (`refusal`: the
    /// 413 of a streamed body over the limit) that replaces its response. The request is
    /// logged and counted once, with the status the client gets.
    async fn run_checked(
        &self,
        component_id: String,
        mut request: Request<WasiBody>,
        path: String,
        started: Instant,
        refusal: Option<impl FnOnce() -> Option<Response<WasiBody>>>,
    ) -> Response<WasiBody> {
        let Some(component) = self.app.component(&component_id) else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
        };
        let method = request.method().clone();
        let metrics = component.metrics();
        // CPU metering costs two clock reads per poll: only when someone reads it.
        let meter = (metrics.is_enabled()
            || tracing::enabled!(target: "wisp::request", tracing::Level::INFO))
        .then(CpuMeter::new);
        if let Some(meter) = &meter {
            request.extensions_mut().insert(meter.clone());
        }
        let mut span = server_span(component.tracing(), &mut request, &path);
        if let Some(span) = &mut span {
            span.set("wisp.app", component.app_name());
            span.set("wisp.component", component_id.as_str());
        }
        // `None` records no field, so untraced log lines stay as they were.
        let trace_id = wisp_telemetry::trace_id(span.as_ref());
        let trace_suffix = wisp_telemetry::trace_suffix(trace_id.as_deref());
        let handled = match self.wagi.get(&component_id) {
            Some(argv) => wagi::handle(component, argv, request).await,
            None if self.spin1.contains(&component_id) => spin1::handle(component, request).await,
            None => component.handle(request).await,
        };
        let (response, outcome) = match handled {
            Ok(response) => (response, Outcome::Ok),
            Err(err) => {
                let (status, body) = match err.fault {
                    Some(GuestFault::Deadline(_)) => {
                        (StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n")
                    }
                    // The server is out of memory budget or instance slots, not the
                    // guest at fault.
                    Some(GuestFault::MemoryBudget(_) | GuestFault::NoInstanceSlot(_)) => {
                        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
                    }
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"),
                };
                match &err.fault {
                    Some(fault) => tracing::error!(
                        component = %component_id,
                        trace_id = trace_id.as_deref(),
                        "{method} {path}: component `{component_id}` {fault}; answered {}{trace_suffix}",
                        status.as_u16()
                    ),
                    None => tracing::error!(
                        component = %component_id,
                        trace_id = trace_id.as_deref(),
                        "{method} {path}: component `{component_id}` failed: {}; answered {}{trace_suffix}",
                        err.message,
                        status.as_u16()
                    ),
                }
                (text(status, body), err.outcome())
            }
        };
        let (response, outcome) = match refusal.and_then(|check| check()) {
            Some(refused) => (refused, Outcome::Refused),
            None => (response, outcome),
        };
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        metrics.request("http", Some(status), outcome, elapsed);
        if let Some(mut span) = span {
            span.set("http.response.status_code", status);
            span.set("wisp.outcome", outcome.as_str());
            if status >= 500 {
                span.fail(format!("{} ({})", status, outcome.as_str()));
            }
        }
        // The request log: one line per request (target `wisp::request`, so
        // `WISP_LOG=info,wisp::request=off` silences it). The CPU time is what the
        // instance used until its response head, as the wall time is.
        let cpu_ms = meter.map_or(0.0, |meter| meter.used().as_secs_f64() * 1000.0);
        tracing::info!(
            target: "wisp::request",
            method = %method,
            path = %path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            cpu_ms,
            component = %component_id,
            trace_id = trace_id.as_deref(),
            "{method} {path} {status} {elapsed:.1?} cpu={cpu_ms:.2}ms component={component_id}{trace_suffix}",
        );
        response
    }

    fn well_known(&self, path: &str) -> Option<Response<WasiBody>> {
        let rest = path
            .strip_prefix(WELL_KNOWN_WISP)
            .or_else(|| path.strip_prefix(WELL_KNOWN_SPIN))?;
        Some(match rest {
            "health" => text(StatusCode::OK, "OK\n"),
            "info" => Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(full(self.info.clone()))
                .expect("static response parts are valid"),
            _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
        })
    }

    /// Accepts connections on `listener` until `shutdown` resolves, then stops accepting
    /// and lets in-flight requests finish for up to the configured grace period.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        config: ServerConfig,
        shutdown: impl Future<Output = ()>,
    ) {
        serve_current(CurrentTrigger::new(self), listener, config, shutdown).await;
    }
}

/// The trigger that serves new requests. `wisp watch` replaces it on reload: each
/// request takes the trigger current when it arrives and keeps it (and its app) alive
/// until it is answered, so in-flight requests finish on the old version while the
/// listener, and every open connection, stays up.
pub struct CurrentTrigger(std::sync::RwLock<Arc<HttpTrigger>>);

impl CurrentTrigger {
    /// Starts with `trigger`.
    pub fn new(trigger: Arc<HttpTrigger>) -> Arc<Self> {
        Arc::new(Self(std::sync::RwLock::new(trigger)))
    }

    /// The trigger for a request arriving now.
    pub fn get(&self) -> Arc<HttpTrigger> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `trigger` serve every request from now on; returns the previous one.
    pub fn replace(&self, trigger: Arc<HttpTrigger>) -> Arc<HttpTrigger> {
        let mut current = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *current, trigger)
    }
}

/// Where a request goes: a component (with its route match), or an answer right away.
enum Routed<'a> {
    Component(RouteMatch<'a>, String),
    Answer(Response<WasiBody>),
}

impl wisp_trigger::Trigger for HttpTrigger {
    fn summary(&self) -> Summary {
        Summary {
            heading: "Routes:".to_owned(),
            lines: self
                .summary
                .iter()
                .map(|route| {
                    let target = route.component.as_deref().unwrap_or("(static response)");
                    format!("{}  ->  {target}", route.route)
                })
                .collect(),
        }
    }

    fn log_summary(&self) {
        for route in &self.summary {
            tracing::info!(
                event = "route",
                route = %route.route,
                component = route.component.as_deref().unwrap_or("(static response)"),
                "route"
            );
        }
    }

    /// Requests come through a front door; there is nothing to drive here.
    fn run(
        self: Arc<Self>,
        shutdown: BoxFuture<'static, ()>,
        _grace: std::time::Duration,
    ) -> BoxFuture<'static, ()> {
        shutdown
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl LocalDispatch for HttpTrigger {
    fn dispatch(&self, target: LocalTarget, mut request: Request<WasiBody>) -> LocalResponse {
        // In-process requests come from the app itself; report loopback as the client.
        let client = SocketAddr::from(([127, 0, 0, 1], 0));
        let Some(this) = self.me.upgrade() else {
            return Box::pin(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        Box::pin(async move {
            match target {
                LocalTarget::SelfApp => Ok(this.handle(request, client).await),
                LocalTarget::Component(id) => {
                    if this.app.component(&id).is_none() {
                        return Err(wasmtime_wasi_http::Error::DestinationNotFound);
                    }
                    let started = Instant::now();
                    let path = request.uri().path().to_owned();
                    // Use the component's own route when the path matches it, so the
                    // Spin headers are what a direct request would get; otherwise treat
                    // the whole path as path info under a wildcard.
                    let wildcard = RouteTarget::Component(id.clone());
                    let matched = match this.router.route(&path) {
                        Some(m) if m.target == &wildcard => m,
                        _ => RouteMatch {
                            target: &wildcard,
                            raw_route: "/...",
                            component_route: String::new(),
                            path_info: path.clone(),
                            params: Vec::new(),
                        },
                    };
                    let authority = limits::authority(&request, None)
                        .unwrap_or_else(|_| "localhost".to_owned());
                    set_spin_headers(&mut request, &matched, client, &authority, "http");
                    Ok(this.run(id, request, path, started).await)
                }
            }
        })
    }
}

/// The server span of a request, when tracing is on and the trace is sampled: a child of
/// the caller's `traceparent`, named by method and route (Spin's raw route header, set
/// before this), and carried in the request's extensions to the instance.
fn server_span(
    tracing: &wisp_telemetry::Tracing,
    request: &mut Request<WasiBody>,
    path: &str,
) -> Option<wisp_telemetry::Span> {
    if !tracing.is_enabled() {
        return None;
    }
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let method = request.method().as_str();
    let route = header("spin-raw-component-route");
    let mut span = tracing.server_span(header("traceparent"), || match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    })?;
    span.set("http.request.method", method);
    span.set("url.path", path);
    if let Some(route) = route {
        span.set("http.route", route);
    }
    request.extensions_mut().insert(span.parent());
    Some(span)
}

/// A request from the network as a guest sees it: its checked authority (or why it is
/// refused with 400), `Host` filled in for HTTP/1.0 without one, an `https` URI over TLS.
fn from_network<B>(
    request: Request<B>,
    peer: &Peer,
) -> Result<(http::request::Parts, B, String), &'static str> {
    let authority = limits::authority(&request, Some(peer.local))?;
    let (mut parts, body) = request.into_parts();
    if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
        // HTTP/1.0 without Host: the guest sees the address it was reached on.
        if let Ok(value) = HeaderValue::from_str(&authority) {
            parts.headers.insert(http::header::HOST, value);
        }
    }
    if peer.secure {
        // Over TLS the guest sees an `https` URI (WASI 0.3 reads the scheme from it).
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTPS);
        if uri.authority.is_none() {
            uri.authority = authority.parse().ok();
        }
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    }
    Ok((parts, body, authority))
}

/// Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// The request a guest would see for `request` from `peer`, routed by `router`;
    /// `None` when it is refused with 400 or no route takes it.
    pub fn guest_request(request: Request<()>, router: &Router, peer: Peer) -> Option<Request<()>> {
        let (parts, body, authority) = from_network(request, &peer).ok()?;
        let matched = router.route(parts.uri.path())?;
        let mut request = Request::from_parts(parts, body);
        set_spin_headers(
            &mut request,
            &matched,
            peer.client,
            &authority,
            peer.scheme(),
        );
        Some(request)
    }
}

/// Sets Spin's request headers, replacing any a client sent under the same names;
/// `authority` is the request's checked authority, `scheme` the connection's.
fn set_spin_headers<B>(
    request: &mut Request<B>,
    matched: &RouteMatch<'_>,
    client: SocketAddr,
    authority: &str,
    scheme: &str,
) {
    let host = authority;
    let path_and_query = match request.uri().path_and_query().map(|p| p.as_str()) {
        Some(p) if p.starts_with('/') => p.to_owned(),
        // `OPTIONS *` (asterisk form): without the `/` the `*` would join the authority
        // (`http://host:80*`). Found by fuzz/fuzz_targets/http_request.rs.
        Some(p) => format!("/{p}"),
        None => "/".to_owned(),
    };
    let full_url = format!("{scheme}://{host}{path_and_query}");

    let headers = request.headers_mut();
    // Clients may not forge what the host vouches for.
    if headers
        .keys()
        .any(|name| name.as_str().starts_with("spin-"))
    {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("spin-"))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("spin-full-url", &full_url);
    set("spin-path-info", &matched.path_info);
    // Spin's "based" route: the route with one trailing slash removed (`/` gives ``).
    set(
        "spin-matched-route",
        matched
            .raw_route
            .strip_suffix('/')
            .unwrap_or(matched.raw_route),
    );
    set("spin-component-route", &matched.component_route);
    set("spin-raw-component-route", matched.raw_route);
    set("spin-base-path", "/");
    set("spin-client-addr", &client.to_string());
    for (name, value) in &matched.params {
        let name = path_match_header(name);
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
}

/// The header carrying a route parameter's value. Spin derives it from an upper-case
/// `SPIN_PATH_MATCH_<NAME>` form, so `_` in the parameter's name becomes `-`.
fn path_match_header(param: &str) -> String {
    format!(
        "spin-path-match-{}",
        param.to_ascii_lowercase().replace('_', "-")
    )
}

/// The whole request body, for executors that hand it to the guest in one piece (wagi,
/// Spin 1.x); one that has not arrived by `timeout` fails as a deadline.
async fn read_body(
    body: WasiBody,
    timeout: std::time::Duration,
) -> Result<Bytes, wisp_engine::GuestError> {
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(wisp_engine::GuestError {
            fault: None,
            message: format!("could not read the request body: {e}"),
        }),
        Err(_) => Err(wisp_engine::GuestError {
            fault: Some(GuestFault::Deadline(timeout)),
            message: "the request body did not arrive before the deadline".to_owned(),
        }),
    }
}

fn full(bytes: impl Into<Bytes>) -> WasiBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn text(status: StatusCode, body: &'static str) -> Response<WasiBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `spin-full-url` a guest gets for a request target from the network.
    fn full_url(target: &str) -> String {
        let request = Request::builder()
            .method("OPTIONS")
            .uri(target)
            .header("host", "example.com:8080")
            .body(())
            .unwrap();
        let peer = Peer {
            client: "192.0.2.7:40000".parse().unwrap(),
            local: "127.0.0.1:3000".parse().unwrap(),
            secure: false,
        };
        let (parts, body, authority) = from_network(request, &peer).unwrap();
        let mut router = Router::default();
        router.add("/...", RouteTarget::Component("c".to_owned()));
        let matched = router.route(parts.uri.path()).unwrap();
        let mut request = Request::from_parts(parts, body);
        set_spin_headers(&mut request, &matched, peer.client, &authority, "http");
        request.headers()["spin-full-url"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_request_gets_every_spin_header_and_loses_forged_ones() {
        let mut router = Router::default();
        router.add(
            "/users/:user_id/...",
            RouteTarget::Component("c".to_owned()),
        );
        let matched = router.route("/users/7/posts/").unwrap();
        let mut request = Request::builder()
            .uri("/users/7/posts/?x=1")
            .header("spin-client-addr", "192.0.2.1:1")
            .header("spin-forged", "yes")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        let client = "[2001:db8::1]:40000".parse().unwrap();
        set_spin_headers(&mut request, &matched, client, "example.com", "https");
        let headers = request.headers();
        let got = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(
            got("spin-full-url"),
            ["https://example.com/users/7/posts/?x=1"]
        );
        assert_eq!(got("spin-client-addr"), ["[2001:db8::1]:40000"]);
        assert_eq!(got("spin-path-info"), ["/posts/"]);
        assert_eq!(got("spin-matched-route"), ["/users/:user_id/..."]);
        assert_eq!(got("spin-component-route"), ["/users/:user_id"]);
        assert_eq!(got("spin-raw-component-route"), ["/users/:user_id/..."]);
        assert_eq!(got("spin-base-path"), ["/"]);
        assert_eq!(got("spin-path-match-user-id"), ["7"]);
        assert!(got("spin-forged").is_empty());
        assert_eq!(got("accept"), ["*/*"]);
        // Seven Spin headers, the parameter's and `accept`.
        assert_eq!(headers.len(), 9);
    }

    #[test]
    fn every_request_target_form_gives_a_full_url_with_a_path() {
        assert_eq!(full_url("/a?b=1"), "http://example.com:8080/a?b=1");
        // Asterisk form: the fuzzer found `http://example.com:8080*`.
        assert_eq!(full_url("*"), "http://example.com:8080/*");
        assert_eq!(full_url("http://other.example/x"), "http://other.example/x");
        assert_eq!(full_url("other.example:81"), "http://other.example:81/");
    }
}

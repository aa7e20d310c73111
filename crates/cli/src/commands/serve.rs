//! What `wisp up` and `wisp watch` share to serve an app: the settings from their flags,
//! loading through the runtime (with a spinner on a terminal while components compile),
//! and the start-up summary.

use super::shared::seconds;
use super::up::UpArgs;
use anyhow::{Context as _, Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wisp_app::LockedApp;
use wisp_engine::EngineConfig;
use wisp_host::{AppPaths, RuntimeConfig};
use wisp_runtime::{AppSettings, Generation, Runtime};
use wisp_trigger_http::ServerConfig;

/// The engine, instance and front-door flags every serving command takes (`up`, `watch`,
/// `node`).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Directory for compiled code; default `$XDG_CACHE_HOME/wisp` or `~/.cache/wisp`.
    #[arg(long, env = "WISP_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,

    /// Do not read or write the compiled-code cache.
    #[arg(long, visible_alias = "disable-cache", env = "WISP_NO_CACHE")]
    pub(crate) no_cache: bool,

    /// Serve an HTTP component that is not in the compile cache from quickly made
    /// baseline code while its optimised code compiles in the background: `auto` for
    /// components of 1 MiB and more (a JavaScript or Python runtime), `always`, or `off`.
    #[arg(long, env = "WISP_BASELINE_COMPILE", value_enum, default_value_t = BaselineCompile::Auto)]
    pub(crate) baseline_compile: BaselineCompile,

    /// Maximum number of instances alive at once (sizes the instance pool).
    #[arg(long, env = "WISP_MAX_INSTANCES", default_value_t = 256)]
    pub(crate) max_instances: u32,

    /// Linear-memory cap per instance, in MiB.
    #[arg(long, env = "WISP_MEMORY_LIMIT_MB", default_value_t = 128)]
    pub(crate) memory_limit_mb: u64,

    /// Deadline for one request, in seconds (CPU and waiting).
    #[arg(long, env = "WISP_REQUEST_TIMEOUT", default_value_t = 30.0)]
    pub(crate) request_timeout: f64,

    /// How long in-flight requests may take to finish after SIGINT/SIGTERM, in seconds.
    #[arg(long, env = "WISP_SHUTDOWN_GRACE", default_value_t = 10.0)]
    pub(crate) shutdown_grace: f64,

    /// Most outbound HTTP requests one incoming request (with everything it calls
    /// in-process) may make.
    #[arg(long, env = "WISP_MAX_OUTBOUND_REQUESTS", default_value_t = wisp_engine::DEFAULT_MAX_OUTBOUND_REQUESTS)]
    pub(crate) max_outbound_requests: u32,

    /// Idle outbound HTTP connections each component keeps for reuse (0 turns reuse off).
    #[arg(long, env = "WISP_OUTBOUND_IDLE_CONNECTIONS", default_value_t = wisp_engine::DEFAULT_OUTBOUND_IDLE_CONNECTIONS)]
    pub(crate) outbound_idle_connections: usize,

    /// Use on-demand instance allocation instead of the pooling allocator.
    #[arg(long, visible_alias = "disable-pooling", env = "WISP_NO_POOLING")]
    pub(crate) no_pooling: bool,

    /// Memory all instances together may use, in MiB; instances wait for it instead of
    /// the host swapping. Default: half of the machine's or the cgroup's memory.
    #[arg(long, env = "WISP_MEMORY_BUDGET_MB")]
    pub(crate) memory_budget_mb: Option<u64>,

    /// Largest component source (.wasm) read, in MiB.
    #[arg(long, env = "WISP_MAX_COMPONENT_SIZE_MB", default_value_t = wisp_app::DEFAULT_MAX_SOURCE_BYTES >> 20)]
    pub(crate) max_component_size_mb: u64,

    /// Most connections open at once; more clients wait in the listen backlog. Default:
    /// three quarters of the descriptor limit, at most 16384.
    #[arg(long, env = "WISP_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,

    /// Seconds a client has to send a complete request head (slow clients are closed).
    #[arg(long, env = "WISP_HEADER_READ_TIMEOUT", default_value_t = wisp_trigger_http::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64())]
    pub(crate) header_read_timeout: f64,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "WISP_IDLE_TIMEOUT", default_value_t = wisp_trigger_http::DEFAULT_IDLE_TIMEOUT.as_secs_f64())]
    pub(crate) idle_timeout: f64,

    /// Most header fields in one request (more get 431).
    #[arg(long, env = "WISP_MAX_REQUEST_HEADERS", default_value_t = wisp_trigger_http::DEFAULT_MAX_HEADER_COUNT)]
    pub(crate) max_request_headers: usize,

    /// Most bytes of request line and headers (more get 431; at least 8192).
    #[arg(long, env = "WISP_MAX_REQUEST_HEADER_BYTES", default_value_t = wisp_trigger_http::DEFAULT_MAX_HEADER_BYTES)]
    pub(crate) max_request_header_bytes: usize,

    /// Largest request body, in MiB (more get 413); a route's `max_request_body_size`
    /// overrides it.
    #[arg(long, env = "WISP_MAX_REQUEST_BODY_MB", default_value_t = wisp_trigger_http::DEFAULT_MAX_REQUEST_BODY >> 20)]
    pub(crate) max_request_body_mb: u64,

    /// Most concurrent HTTP/2 streams per connection.
    #[arg(long, env = "WISP_HTTP2_MAX_STREAMS", default_value_t = ServerConfig::default().h2_max_concurrent_streams)]
    pub(crate) http2_max_streams: u32,

    /// Most HTTP/2 streams a client may reset before they are accepted ("rapid reset"
    /// bound; past it the connection gets GOAWAY).
    #[arg(long, env = "WISP_HTTP2_MAX_PENDING_RESETS", default_value_t = ServerConfig::default().h2_max_pending_accept_reset_streams)]
    pub(crate) http2_max_pending_resets: usize,

    /// Most HTTP/2 streams the server resets for client protocol errors before closing
    /// the connection.
    #[arg(long, env = "WISP_HTTP2_MAX_ERROR_RESETS", default_value_t = ServerConfig::default().h2_max_local_error_reset_streams)]
    pub(crate) http2_max_error_resets: usize,
}

/// When a component cold from the compiler starts on baseline code (`--baseline-compile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BaselineCompile {
    /// For components of 1 MiB and more.
    Auto,
    /// For every HTTP component.
    Always,
    /// Never: wait for the optimised code.
    Off,
}

impl BaselineCompile {
    fn min_bytes(self) -> Option<u64> {
        match self {
            BaselineCompile::Auto => Some(wisp_engine::DEFAULT_BASELINE_COMPILE_MIN_BYTES),
            BaselineCompile::Always => Some(0),
            BaselineCompile::Off => None,
        }
    }
}

/// The engine, runtime-config, front-door and shutdown settings `up` and `watch` share.
pub(crate) struct Settings {
    pub(crate) engine: EngineConfig,
    pub(crate) runtime_config: RuntimeConfig,
    pub(crate) server: ServerConfig,
    pub(crate) resolve: wisp_app::ResolveOptions,
    pub(crate) max_request_body: u64,
    /// Whose stdout and stderr are written out (`--quiet`, `--follow`).
    pub(crate) guest_output: wisp_runtime::GuestOutput,
    /// Where components' stdout and stderr are also appended (`--log-dir`).
    pub(crate) guest_log_dir: Option<PathBuf>,
    /// Where the engine records (`--metrics-listen`; disabled without it).
    pub(crate) metrics: wisp_metrics::Metrics,
}

impl Settings {
    pub(crate) fn from_args(args: &UpArgs) -> Result<Settings> {
        let runtime_config = match &args.runtime_config_file {
            Some(path) => RuntimeConfig::from_file(path)?,
            None => RuntimeConfig::default(),
        };
        let mut settings = Self::from_limits(&args.limits, runtime_config)?;
        super::up::apply_settings_flags(&mut settings, args)?;
        Ok(settings)
    }

    /// The settings of `args`, with `runtime_config`.
    pub(crate) fn from_limits(args: &LimitArgs, runtime_config: RuntimeConfig) -> Result<Settings> {
        let request_timeout = seconds("--request-timeout", args.request_timeout)?;
        let shutdown_grace = seconds("--shutdown-grace", args.shutdown_grace)?;
        if args.memory_limit_mb == 0 || args.max_instances == 0 {
            bail!("--memory-limit-mb and --max-instances must be at least 1");
        }
        for (flag, value) in [
            ("--max-component-size-mb", args.max_component_size_mb),
            ("--max-request-body-mb", args.max_request_body_mb),
            ("--memory-budget-mb", args.memory_budget_mb.unwrap_or(1)),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if args.max_request_headers == 0 || args.max_connections == Some(0) {
            bail!("--max-request-headers and --max-connections must be at least 1");
        }
        if args.max_request_header_bytes < 8192 {
            bail!(
                "--max-request-header-bytes must be at least 8192 (the smallest request head hyper can buffer), got {}",
                args.max_request_header_bytes
            );
        }
        let memory_budget = match args.memory_budget_mb {
            Some(mb) => mb << 20,
            None => wisp_engine::default_memory_budget(),
        };
        // A budget below one instance's cap would let no memory-hungry instance run.
        if memory_budget < args.memory_limit_mb << 20 {
            bail!(
                "--memory-budget-mb ({} MiB) is below --memory-limit-mb ({} MiB): no instance could reach its cap; raise the budget or lower the per-instance limit",
                memory_budget >> 20,
                args.memory_limit_mb
            );
        }
        let descriptors = super::shared::descriptor_limit();
        let server = ServerConfig {
            header_read_timeout: seconds("--header-read-timeout", args.header_read_timeout)?,
            idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
            max_header_count: args.max_request_headers,
            max_header_bytes: args.max_request_header_bytes,
            max_connections: args
                .max_connections
                .unwrap_or_else(|| ServerConfig::connections_for_descriptor_limit(descriptors)),
            h2_max_concurrent_streams: args.http2_max_streams.max(1),
            h2_max_pending_accept_reset_streams: args.http2_max_pending_resets,
            h2_max_local_error_reset_streams: args.http2_max_error_resets,
            shutdown_grace,
            tls: None,
        };
        let engine = EngineConfig {
            max_instances: args.max_instances,
            memory_limit: args.memory_limit_mb << 20,
            request_timeout,
            cache_dir: if args.no_cache {
                None
            } else {
                args.cache_dir
                    .clone()
                    .or_else(wisp_engine::default_cache_dir)
            },
            pooling: !args.no_pooling,
            max_outbound_requests: args.max_outbound_requests,
            outbound_idle_connections: args.outbound_idle_connections,
            max_component_bytes: args.max_component_size_mb << 20,
            memory_budget,
            baseline_compile_min_bytes: args.baseline_compile.min_bytes(),
        };
        // Source digests are remembered beside the compiled code, while that cache is on.
        let digest_memo = engine.cache_dir.as_ref().map(|dir| dir.join("digests"));
        Ok(Settings {
            engine,
            runtime_config,
            server,
            resolve: wisp_app::ResolveOptions {
                max_source_bytes: args.max_component_size_mb << 20,
                digest_memo,
                profile: None,
            },
            max_request_body: args.max_request_body_mb << 20,
            guest_output: wisp_runtime::GuestOutput::All,
            guest_log_dir: None,
            metrics: wisp_metrics::Metrics::disabled(),
        })
    }
}

impl Settings {
    /// Sets the per-instance memory cap to `bytes` (rounded up to whole 64 KiB wasm
    /// pages), checked as `--memory-limit-mb` is; `flag` names it in messages.
    pub(crate) fn set_memory_limit(&mut self, bytes: u64, flag: &str) -> Result<()> {
        const PAGE: u64 = 64 * 1024;
        let limit = bytes.div_ceil(PAGE) * PAGE;
        if limit == 0 {
            bail!("{flag} must be at least 1");
        }
        if self.engine.memory_budget < limit {
            bail!(
                "{flag} ({limit} bytes) is above the memory budget ({} MiB, --memory-budget-mb); lower it or raise the budget",
                self.engine.memory_budget >> 20
            );
        }
        self.engine.memory_limit = limit;
        Ok(())
    }

    /// The runtime these settings describe: the engine and every trigger type, with
    /// tracing as the `OTEL_*` variables configure it (call it inside the async runtime:
    /// the span exporter is a task).
    pub(crate) fn runtime(&self) -> Result<Runtime> {
        self.runtime_with(self.start_engine())
    }

    /// Starts creating the engine these settings describe on a thread of its own: that
    /// sets up its instance pools (a guarded fiber stack per slot: about 1.5 ms at the
    /// default 256 slots here), which needs nothing else, so it runs while the caller
    /// resolves the app and binds its listener. [`Settings::runtime_with`] takes it.
    pub(crate) fn start_engine(&self) -> EngineStart {
        let config = self.engine.clone();
        let creating = std::thread::Builder::new()
            .name("wisp-engine-setup".to_owned())
            .spawn({
                let config = config.clone();
                move || wisp_engine::WispEngine::new(config)
            });
        match creating {
            Ok(thread) => EngineStart::Creating(thread),
            // No thread to spare: create it when it is needed, on the caller's.
            Err(_) => EngineStart::Later(config),
        }
    }

    /// [`Settings::runtime`] with an engine from [`Settings::start_engine`].
    pub(crate) fn runtime_with(&self, engine: EngineStart) -> Result<Runtime> {
        let tracing = wisp_telemetry::Tracing::from_env()
            .context("OpenTelemetry tracing is misconfigured; fix or unset the variable")?;
        let engine = engine
            .finish()
            .map_err(|e| {
                super::RuntimeFailure::wrap(
                    anyhow::Error::new(e).context("cannot create the wasm engine"),
                )
            })?
            .with_metrics(self.metrics.clone())
            .with_tracing(tracing);
        Ok(Runtime::with_trigger_types(
            engine,
            Runtime::default_trigger_types(wisp_trigger_http::HttpTriggerType {
                default_body_limit: self.max_request_body,
            }),
        ))
    }
}

/// An engine being created (see [`Settings::start_engine`]).
pub(crate) enum EngineStart {
    Creating(std::thread::JoinHandle<Result<wisp_engine::WispEngine, wisp_engine::EngineError>>),
    Later(EngineConfig),
}

impl EngineStart {
    /// The engine, once created.
    fn finish(self) -> Result<wisp_engine::WispEngine, wisp_engine::EngineError> {
        match self {
            Self::Creating(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Self::Later(config) => wisp_engine::WispEngine::new(config),
        }
    }
}

/// Loads `locked` through `runtime`, with a spinner on a terminal while it runs
/// (compiling components not in the cache can take seconds).
pub(crate) async fn load(
    runtime: &Runtime,
    locked: LockedApp,
    settings: &Settings,
    paths: AppPaths,
) -> Result<Arc<Generation>> {
    let spinner = loading_spinner(locked.components.len());
    let app_settings = AppSettings {
        runtime_config: settings.runtime_config.clone(),
        paths,
        limits: wisp_runtime::AppLimits {
            guest_output: settings.guest_output.clone(),
            guest_log_dir: settings.guest_log_dir.clone(),
            ..Default::default()
        },
    };
    let loaded = runtime.load(locked, &app_settings).await;
    if let Some(spinner) = spinner {
        SPINNER_SHOWN.store(false, std::sync::atomic::Ordering::Release);
        SPINNER.lock().unwrap_or_else(|e| e.into_inner()).take();
        spinner.finish_and_clear();
    }
    let loaded = loaded?;
    // Parsing, linking and compiling freed most of what they allocated; give it back
    // before serving, so an idle server holds only what it uses. A reload links again.
    runtime.engine().release_linkers();
    wisp_engine::release_free_heap();
    Ok(loaded)
}

/// The spinner on screen, if any: log lines go around it (see [`StderrAroundSpinner`]).
static SPINNER: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);
/// Whether [`SPINNER`] holds one: lets every other log line (the request log) skip the lock.
static SPINNER_SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// stderr for the human log: while a spinner is drawn, each line is written with the
/// spinner cleared and redrawn after it, so the two never share a line.
pub(crate) struct StderrAroundSpinner;

impl std::io::Write for StderrAroundSpinner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !SPINNER_SHOWN.load(std::sync::atomic::Ordering::Acquire) {
            return std::io::stderr().write(buf);
        }
        let spinner = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match spinner {
            Some(spinner) => spinner
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A spinner on stderr while components load, only when stderr is a terminal.
fn loading_spinner(components: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    // The elapsed time shows that a long compile (seconds for a 12 MB JS component) moves.
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        spinner.set_style(style);
    }
    spinner.set_message(format!(
        "loading {components} component{} (compiling any not in the cache)",
        if components == 1 { "" } else { "s" }
    ));
    spinner.enable_steady_tick(Duration::from_millis(100));
    *SPINNER.lock().unwrap_or_else(|e| e.into_inner()) = Some(spinner.clone());
    SPINNER_SHOWN.store(true, std::sync::atomic::Ordering::Release);
    Some(spinner)
}

/// The start-up summary; `address` is where HTTP listens, if it does. With `json`, one
/// structured event per item instead.
pub(crate) fn print_summary(
    runtime: &Runtime,
    generation: &Generation,
    settings: &Settings,
    address: Option<SocketAddr>,
    json: bool,
) {
    if json {
        log_summary(runtime, generation, &settings.server, address);
        return;
    }
    let engine = runtime.engine();
    let config = engine.config();
    eprintln!(
        "Engine: {} allocator, {} instances max, {} MiB memory cap, {} MiB memory budget, {:?} request deadline, compile cache {}",
        if engine.pooling() {
            "pooling"
        } else {
            "on-demand"
        },
        config.max_instances,
        config.memory_limit >> 20,
        engine.memory_budget() >> 20,
        config.request_timeout,
        config
            .cache_dir
            .as_ref()
            .map_or_else(|| "off".to_owned(), |d| d.display().to_string()),
    );
    if let Some(endpoint) = engine.tracing().endpoint() {
        eprintln!("Tracing: OTLP spans to {endpoint}");
    }
    let app = generation.app();
    eprintln!("Components:");
    for component in &app.locked().components {
        if let Some(loaded) = app.component(&component.id) {
            let middleware = match component.middleware().len() {
                0 => String::new(),
                1 => ", behind 1 middleware".to_owned(),
                n => format!(", behind {n} middleware"),
            };
            eprintln!(
                "  {}  ({}{middleware})",
                component.id,
                loaded.exports_summary()
            );
        }
    }
    eprintln!("Capabilities:");
    for line in generation.capabilities().summary() {
        eprintln!("  {line}");
    }
    // Triggers that run on their own, in registration order; HTTP last, with the address.
    for (name, trigger) in generation.triggers() {
        if name == "http" {
            continue;
        }
        let summary = trigger.summary();
        if summary.lines.is_empty() {
            continue;
        }
        eprintln!("{}", summary.heading);
        for line in summary.lines {
            eprintln!("  {line}");
        }
    }
    match (generation.http(), address) {
        (Some(trigger), Some(address)) => {
            let server = &settings.server;
            eprintln!(
                "HTTP: {} connections max, request head within {:?} ({} fields, {} KiB max), keep-alive idle {:?}, body {} MiB max",
                server.max_connections,
                server.header_read_timeout,
                server.max_header_count,
                server.max_header_bytes >> 10,
                server.idle_timeout,
                settings.max_request_body >> 20,
            );
            let scheme = scheme(server);
            if let Some(tls) = &server.tls {
                let (cert, key) = tls.files();
                eprintln!(
                    "TLS: certificate {}, key {} (SIGHUP reloads them)",
                    cert.display(),
                    key.display()
                );
            }
            eprintln!("Routes:");
            for route in trigger.routes() {
                let target = route.component.as_deref().unwrap_or("(static response)");
                eprintln!("  {scheme}://{address}{}  ->  {target}", route.route);
            }
            print_spin_routes(app.locked(), trigger.routes(), scheme, address);
            // Tests and scripts read this line to find the bound address.
            eprintln!("Listening on {scheme}://{address}");
        }
        // Tests and scripts read this line to know the triggers are running.
        _ => eprintln!("Running (no HTTP triggers)."),
    }
}

/// The lines `spin up` prints on stdout, which scripts and harnesses written for Spin wait
/// for: `Serving <url>`, then `Available Routes:` with one `  <id>: <url>` line per public
/// route (a wildcard as its prefix plus ` (wildcard)`) and the component's description.
fn print_spin_routes(
    locked: &wisp_app::LockedApp,
    routes: &[wisp_trigger_http::RouteSummary],
    scheme: &str,
    address: SocketAddr,
) {
    use std::io::Write as _;
    let base = format!("{scheme}://{address}");
    let mut out = format!("\nServing {base}\nAvailable Routes:\n");
    for route in routes {
        let key = route.component.as_deref().unwrap_or(&route.trigger);
        let (path, wildcard) = match route.route.strip_suffix("/...") {
            Some(prefix) => (prefix, " (wildcard)"),
            None => (route.route.strip_suffix('/').unwrap_or(&route.route), ""),
        };
        out.push_str(&format!("  {key}: {base}{path}{wildcard}\n"));
        let description = route.component.as_ref().and_then(|id| {
            locked
                .components
                .iter()
                .find(|c| &c.id == id)
                .and_then(|c| c.metadata.description.as_deref())
        });
        if let Some(description) = description {
            out.push_str(&format!("    {description}\n"));
        }
    }
    // One write, flushed: stdout is a pipe under a harness, and it waits for these lines.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
}

/// `https` when the front door serves TLS.
pub(crate) fn scheme(server: &ServerConfig) -> &'static str {
    match server.tls {
        Some(_) => "https",
        None => "http",
    }
}

/// [`print_summary`] as structured events (`--json`).
fn log_summary(
    runtime: &Runtime,
    generation: &Generation,
    server: &ServerConfig,
    address: Option<SocketAddr>,
) {
    let engine = runtime.engine();
    let config = engine.config();
    tracing::info!(
        event = "engine",
        pooling = engine.pooling(),
        max_instances = config.max_instances,
        memory_limit_mib = config.memory_limit >> 20,
        memory_budget_mib = engine.memory_budget() >> 20,
        request_timeout_ms = config.request_timeout.as_millis() as u64,
        "engine ready"
    );
    let app = generation.app();
    for component in &app.locked().components {
        if let Some(loaded) = app.component(&component.id) {
            tracing::info!(
                event = "component",
                component = %component.id,
                exports = %loaded.exports_summary(),
                "component loaded"
            );
        }
    }
    for line in generation.capabilities().summary() {
        tracing::info!(event = "capability", "{line}");
    }
    for (name, trigger) in generation.triggers() {
        if name != "http" {
            trigger.log_summary();
        }
    }
    match (generation.http(), address) {
        (Some(trigger), Some(address)) => {
            tracing::info!(
                event = "front_door",
                max_connections = server.max_connections,
                header_read_timeout_ms = server.header_read_timeout.as_millis() as u64,
                idle_timeout_ms = server.idle_timeout.as_millis() as u64,
                max_request_headers = server.max_header_count,
                max_request_header_bytes = server.max_header_bytes,
                "front door limits"
            );
            wisp_trigger::Trigger::log_summary(&**trigger);
            let scheme = scheme(server);
            tracing::info!(event = "listening", address = %address, scheme, "Listening on {scheme}://{address}");
        }
        _ => tracing::info!(event = "running", "Running (no HTTP triggers)."),
    }
}

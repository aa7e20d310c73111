//! `wisp up`: resolve the app, load it, serve it until SIGINT/SIGTERM.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wisp_app::LockedApp;
use wisp_engine::{EngineConfig, LoadedApp, WispEngine};
use wisp_host::{AppCapabilities, AppPaths, RuntimeConfig};
use wisp_trigger_cron::CronTrigger;
use wisp_trigger_http::{HttpTrigger, ServerConfig};
use wisp_trigger_redis::RedisTrigger;

/// Arguments of `wisp up`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp up -f examples/hello/spin.toml\n  wisp up --from target/wasm32-wasip2/release/handler.wasm --listen 127.0.0.1:8080"
)]
pub struct UpArgs {
    /// The app manifest (spin.toml), or a directory containing one.
    #[arg(
        short = 'f',
        long = "file",
        env = "WISP_MANIFEST",
        conflicts_with = "from"
    )]
    pub(crate) manifest: Option<PathBuf>,

    /// Serve a bare wasi:http component (.wasm) on `/...`, or an app from a registry
    /// (`registry/repository:tag` or `…@sha256:<digest>`), instead of a manifest.
    #[arg(long, env = "WISP_FROM")]
    pub(crate) from: Option<PathBuf>,

    /// Run the components' build commands first (like `wisp build`).
    #[arg(long, conflicts_with = "from")]
    build: bool,

    /// Talk plain HTTP to the registry named by --from (local registries only).
    #[arg(long, env = "WISP_REGISTRY_INSECURE")]
    insecure: bool,

    /// Content cache for apps pulled by --from; default `$XDG_CACHE_HOME/wisp/oci`.
    #[arg(long, env = "WISP_OCI_CACHE_DIR")]
    oci_cache_dir: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "WISP_LISTEN", default_value = "127.0.0.1:3000")]
    pub(crate) listen: SocketAddr,

    /// Backends for key-value stores, SQLite databases, variable providers and outbound
    /// networking (Spin's runtime-config.toml format).
    #[arg(long, env = "WISP_RUNTIME_CONFIG_FILE")]
    runtime_config_file: Option<PathBuf>,

    /// Directory for app state (the `default` key-value store and SQLite database,
    /// staged files); default `.wisp` beside the manifest.
    #[arg(long, env = "WISP_STATE_DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// Directory for compiled code; default `$XDG_CACHE_HOME/wisp` or `~/.cache/wisp`.
    #[arg(long, env = "WISP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not read or write the compiled-code cache.
    #[arg(long, env = "WISP_NO_CACHE")]
    no_cache: bool,

    /// Maximum number of instances alive at once (sizes the instance pool).
    #[arg(long, env = "WISP_MAX_INSTANCES", default_value_t = 256)]
    max_instances: u32,

    /// Linear-memory cap per instance, in MiB.
    #[arg(long, env = "WISP_MEMORY_LIMIT_MB", default_value_t = 128)]
    memory_limit_mb: u64,

    /// Deadline for one request, in seconds (CPU and waiting).
    #[arg(long, env = "WISP_REQUEST_TIMEOUT", default_value_t = 30.0)]
    request_timeout: f64,

    /// How long in-flight requests may take to finish after SIGINT/SIGTERM, in seconds.
    #[arg(long, env = "WISP_SHUTDOWN_GRACE", default_value_t = 10.0)]
    shutdown_grace: f64,

    /// Most outbound HTTP requests one incoming request (with everything it calls
    /// in-process) may make.
    #[arg(long, env = "WISP_MAX_OUTBOUND_REQUESTS", default_value_t = wisp_engine::DEFAULT_MAX_OUTBOUND_REQUESTS)]
    max_outbound_requests: u32,

    /// Use on-demand instance allocation instead of the pooling allocator.
    #[arg(long, env = "WISP_NO_POOLING")]
    no_pooling: bool,

    /// Memory all instances together may use, in MiB; instances wait for it instead of
    /// the host swapping. Default: half of the machine's or the cgroup's memory.
    #[arg(long, env = "WISP_MEMORY_BUDGET_MB")]
    memory_budget_mb: Option<u64>,

    /// Largest component source (.wasm) read, in MiB.
    #[arg(long, env = "WISP_MAX_COMPONENT_SIZE_MB", default_value_t = wisp_app::DEFAULT_MAX_SOURCE_BYTES >> 20)]
    max_component_size_mb: u64,

    /// Most connections open at once; more clients wait in the listen backlog. Default:
    /// three quarters of the descriptor limit, at most 16384.
    #[arg(long, env = "WISP_MAX_CONNECTIONS")]
    max_connections: Option<usize>,

    /// Seconds a client has to send a complete request head (slow clients are closed).
    #[arg(long, env = "WISP_HEADER_READ_TIMEOUT", default_value_t = wisp_trigger_http::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64())]
    header_read_timeout: f64,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "WISP_IDLE_TIMEOUT", default_value_t = wisp_trigger_http::DEFAULT_IDLE_TIMEOUT.as_secs_f64())]
    idle_timeout: f64,

    /// Most header fields in one request (more get 431).
    #[arg(long, env = "WISP_MAX_REQUEST_HEADERS", default_value_t = wisp_trigger_http::DEFAULT_MAX_HEADER_COUNT)]
    max_request_headers: usize,

    /// Most bytes of request line and headers (more get 431; at least 8192).
    #[arg(long, env = "WISP_MAX_REQUEST_HEADER_BYTES", default_value_t = wisp_trigger_http::DEFAULT_MAX_HEADER_BYTES)]
    max_request_header_bytes: usize,

    /// Largest request body, in MiB (more get 413); a route's `max_request_body_size`
    /// overrides it.
    #[arg(long, env = "WISP_MAX_REQUEST_BODY_MB", default_value_t = wisp_trigger_http::DEFAULT_MAX_REQUEST_BODY >> 20)]
    max_request_body_mb: u64,

    /// Most concurrent HTTP/2 streams per connection.
    #[arg(long, env = "WISP_HTTP2_MAX_STREAMS", default_value_t = ServerConfig::default().h2_max_concurrent_streams)]
    http2_max_streams: u32,

    /// Most HTTP/2 streams a client may reset before they are accepted ("rapid reset"
    /// bound; past it the connection gets GOAWAY).
    #[arg(long, env = "WISP_HTTP2_MAX_PENDING_RESETS", default_value_t = ServerConfig::default().h2_max_pending_accept_reset_streams)]
    http2_max_pending_resets: usize,

    /// Most HTTP/2 streams the server resets for client protocol errors before closing
    /// the connection.
    #[arg(long, env = "WISP_HTTP2_MAX_ERROR_RESETS", default_value_t = ServerConfig::default().h2_max_local_error_reset_streams)]
    http2_max_error_resets: usize,

    /// Log as JSON lines on stderr: one object per request, lifecycle event and message.
    #[arg(long, env = "WISP_JSON")]
    json: bool,
}

impl UpArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `wisp up`.
pub fn run(args: UpArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.build {
        super::build::build(
            &super::build::manifest_path(args.manifest.as_deref()),
            &[],
            args.json,
        )?;
    }
    let settings = Settings::from_args(&args)?;
    let (locked, app_dir) = runtime.block_on(resolve(&args, &settings.resolve))?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| app_dir.join(".wisp"));
    let paths = AppPaths {
        state_dir,
        app_dir: args.from.is_none().then(|| app_dir.clone()),
    };

    runtime.block_on(async move {
        let serves_http = !locked
            .http_triggers()
            .context("cannot read the app's http triggers")?
            .is_empty();
        // Bind first so a taken port is reported before any compile work.
        let listener = match serves_http {
            true => Some(bind(args.listen).await?),
            false => None,
        };
        let engine =
            WispEngine::new(settings.engine.clone()).context("cannot create the wasm engine")?;
        let generation = Generation::load(&engine, locked, &settings, &paths, serves_http).await?;
        let address = match &listener {
            Some(listener) => Some(
                listener
                    .local_addr()
                    .context("cannot read the listening address")?,
            ),
            None => None,
        };
        generation.print_summary(&engine, &settings, address, args.json);

        // One signal stops every trigger.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let serve_http = async {
            if let (Some(listener), Some(trigger)) = (listener, generation.http.clone()) {
                trigger
                    .serve(listener, settings.server.clone(), until(stopped.clone()))
                    .await;
            }
        };
        tokio::join!(
            serve_http,
            generation.run_event_triggers(stopped.clone(), settings.shutdown_grace)
        );
        if args.json {
            tracing::info!(event = "stopped", "Stopped.");
        } else {
            eprintln!("Stopped.");
        }
        Ok(())
    })
}

impl Generation {
    fn log_summary(&self, engine: &WispEngine, server: &ServerConfig, address: Option<SocketAddr>) {
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
        if self.http.is_some() {
            tracing::info!(
                event = "front_door",
                max_connections = server.max_connections,
                header_read_timeout_ms = server.header_read_timeout.as_millis() as u64,
                idle_timeout_ms = server.idle_timeout.as_millis() as u64,
                max_request_headers = server.max_header_count,
                max_request_header_bytes = server.max_header_bytes,
                "front door limits"
            );
        }
        for component in &self.app.locked().components {
            if let Some(loaded) = self.app.component(&component.id) {
                tracing::info!(
                    event = "component",
                    component = %component.id,
                    exports = %loaded.exports_summary(),
                    "component loaded"
                );
            }
        }
        for line in self.capabilities.summary() {
            tracing::info!(event = "capability", "{line}");
        }
        for subscription in self.redis.subscriptions() {
            tracing::info!(
                event = "redis_subscription",
                server = %subscription.server,
                channel = %subscription.channel,
                component = %subscription.component,
                "redis subscription"
            );
        }
        for schedule in self.cron.schedules() {
            tracing::info!(
                event = "cron_schedule",
                cron_expression = %schedule.cron_expression,
                component = %schedule.component,
                "cron schedule"
            );
        }
        match (self.http.as_deref(), address) {
            (Some(trigger), Some(address)) => {
                for route in trigger.routes() {
                    tracing::info!(
                        event = "route",
                        route = %route.route,
                        component = route.component.as_deref().unwrap_or("(static response)"),
                        "route"
                    );
                }
                tracing::info!(event = "listening", address = %address, "Listening on http://{address}");
            }
            _ => tracing::info!(event = "running", "Running (no HTTP triggers)."),
        }
    }
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

/// Resolves when `stopped` turns true (or its sender is gone).
pub(crate) async fn until(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The engine, runtime-config, front-door and shutdown settings `up` and `watch` share.
pub(crate) struct Settings {
    pub(crate) engine: EngineConfig,
    pub(crate) runtime_config: RuntimeConfig,
    pub(crate) shutdown_grace: Duration,
    pub(crate) server: ServerConfig,
    pub(crate) resolve: wisp_app::ResolveOptions,
    pub(crate) max_request_body: u64,
}

impl Settings {
    pub(crate) fn from_args(args: &UpArgs) -> Result<Settings> {
        let runtime_config = match &args.runtime_config_file {
            Some(path) => RuntimeConfig::from_file(path)?,
            None => RuntimeConfig::default(),
        };
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
        let descriptors = super::process::descriptor_limit();
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
            max_component_bytes: args.max_component_size_mb << 20,
            memory_budget,
        };
        Ok(Settings {
            engine,
            runtime_config,
            shutdown_grace,
            server,
            resolve: wisp_app::ResolveOptions {
                max_source_bytes: args.max_component_size_mb << 20,
            },
            max_request_body: args.max_request_body_mb << 20,
        })
    }
}

/// One loaded version of an app with its triggers; `wisp watch` makes a new one per
/// reload.
pub(crate) struct Generation {
    pub(crate) app: Arc<LoadedApp>,
    capabilities: AppCapabilities,
    pub(crate) http: Option<Arc<HttpTrigger>>,
    redis: Arc<RedisTrigger>,
    cron: Arc<CronTrigger>,
}

impl Generation {
    /// Sets up capabilities, compiles and links the components, and builds every
    /// trigger (`with_http`: the HTTP route table too).
    pub(crate) async fn load(
        engine: &WispEngine,
        locked: LockedApp,
        settings: &Settings,
        paths: &AppPaths,
        with_http: bool,
    ) -> Result<Generation> {
        let capabilities = AppCapabilities::build(&locked, &settings.runtime_config, paths)
            .await
            .context("cannot set up the app's stores, databases and variables")?;
        // Compiling components not in the cache can take seconds: show it on a terminal.
        let spinner = loading_spinner(locked.components.len());
        let app = LoadedApp::load(engine, locked, &paths.state_dir, &capabilities);
        if let Some(spinner) = spinner {
            SPINNER_SHOWN.store(false, std::sync::atomic::Ordering::Release);
            SPINNER.lock().unwrap_or_else(|e| e.into_inner()).take();
            spinner.finish_and_clear();
        }
        let app = app.context("cannot load the app")?;
        let app = Arc::new(app);
        let http = match with_http {
            true => Some(
                HttpTrigger::with_body_limit(app.clone(), settings.max_request_body)
                    .context("cannot set up HTTP routes")?,
            ),
            false => None,
        };
        let redis = Arc::new(
            RedisTrigger::new(app.clone(), |text| capabilities.expand(text))
                .context("cannot set up the redis triggers")?,
        );
        let cron =
            Arc::new(CronTrigger::new(app.clone()).context("cannot set up the cron triggers")?);
        Ok(Generation {
            app,
            capabilities,
            http,
            redis,
            cron,
        })
    }

    /// Runs the Redis and cron triggers until `stopped` turns true.
    pub(crate) async fn run_event_triggers(
        &self,
        stopped: tokio::sync::watch::Receiver<bool>,
        grace: Duration,
    ) {
        let run_redis = async {
            if !self.redis.is_empty() {
                self.redis.clone().run(until(stopped.clone()), grace).await;
            }
        };
        let run_cron = async {
            if !self.cron.is_empty() {
                self.cron.clone().run(until(stopped.clone()), grace).await;
            }
        };
        tokio::join!(run_redis, run_cron);
    }

    /// The start-up summary; `address` is where HTTP listens, if it does. With `json`, one
    /// structured event per item instead.
    pub(crate) fn print_summary(
        &self,
        engine: &WispEngine,
        settings: &Settings,
        address: Option<SocketAddr>,
        json: bool,
    ) {
        if json {
            self.log_summary(engine, &settings.server, address);
            return;
        }
        print_summary(
            engine,
            settings,
            &self.app,
            &self.capabilities,
            self.http.as_deref().zip(address),
            &self.redis,
            &self.cron,
        );
    }
}

/// The app to serve and the directory its relative defaults (state dir, `.env`) hang off.
async fn resolve(
    args: &UpArgs,
    options: &wisp_app::ResolveOptions,
) -> Result<(LockedApp, PathBuf)> {
    if let Some(from) = &args.from {
        if !from.exists()
            && let Some(text) = from.to_str()
            && looks_like_reference(text)
        {
            let reference = text.parse::<wisp_oci::Reference>().with_context(|| {
                format!("--from {text}: not a file, and not a valid registry reference (registry/repository:tag or …@sha256:<digest>)")
            })?;
            let cache = wisp_oci::Cache::new(
                args.oci_cache_dir
                    .clone()
                    .unwrap_or_else(wisp_oci::Cache::default_root),
            );
            let client = super::registry::client(args.insecure)?;
            let pulled = wisp_oci::pull(&client, &reference, &cache)
                .await
                .with_context(|| format!("cannot get {text} from its registry"))?;
            eprintln!("Pulled {text} ({}).", pulled.digest);
            let dir = std::env::current_dir().context("cannot read the current directory")?;
            return Ok((pulled.locked, dir));
        }
        let locked = wisp_app::from_component_file_with(from, options)?;
        let dir = std::path::absolute(from)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        return Ok((locked, dir));
    }
    resolve_manifest_with(args.manifest.as_deref(), options)
}

/// Whether `--from` text names a registry: its first segment is a host (has a `.` or a
/// `:` port, or is `localhost`) and it is not a `.wasm` path. A missing local file then
/// stays a "no such file" error instead of becoming a Docker Hub lookup.
fn looks_like_reference(text: &str) -> bool {
    let Some((first, _)) = text.split_once('/') else {
        return false;
    };
    !text.ends_with(".wasm")
        && first != "."
        && first != ".."
        && (first.contains('.') || first.contains(':') || first == "localhost")
}

/// Parses and resolves the manifest at `path` (default `spin.toml`; a directory means
/// its `spin.toml`); returns the app and the manifest's directory.
pub(crate) fn resolve_manifest(path: Option<&Path>) -> Result<(LockedApp, PathBuf)> {
    resolve_manifest_with(path, &wisp_app::ResolveOptions::default())
}

/// [`resolve_manifest`] with explicit limits.
pub(crate) fn resolve_manifest_with(
    path: Option<&Path>,
    options: &wisp_app::ResolveOptions,
) -> Result<(LockedApp, PathBuf)> {
    let mut path = path.map_or_else(|| PathBuf::from("spin.toml"), Path::to_path_buf);
    if path.is_dir() {
        path = path.join("spin.toml");
    }
    if !path.exists() {
        bail!(
            "no manifest at {}; pass -f path/to/spin.toml, or --from component.wasm",
            path.display()
        );
    }
    let manifest = wisp_manifest::parse_file(&path)?;
    for warning in &manifest.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    let locked = wisp_app::resolve_with(&manifest, &path, options)?;
    let dir = std::path::absolute(&path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    Ok((locked, dir))
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, got {value}"))
}

pub(crate) async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|err| {
        if err.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "{address} is in use; stop the other server or pass --listen with another port (127.0.0.1:0 picks a free one)"
            )
        } else {
            anyhow::Error::new(err).context(format!("cannot listen on {address}"))
        }
    })
}

fn print_summary(
    engine: &WispEngine,
    settings: &Settings,
    app: &LoadedApp,
    capabilities: &AppCapabilities,
    http: Option<(&HttpTrigger, SocketAddr)>,
    redis: &RedisTrigger,
    cron: &CronTrigger,
) {
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
    eprintln!("Components:");
    for component in &app.locked().components {
        if let Some(loaded) = app.component(&component.id) {
            eprintln!("  {}  ({})", component.id, loaded.exports_summary());
        }
    }
    eprintln!("Capabilities:");
    for line in capabilities.summary() {
        eprintln!("  {line}");
    }
    if !redis.is_empty() {
        eprintln!("Redis subscriptions:");
        for subscription in redis.subscriptions() {
            eprintln!(
                "  {} channel `{}`  ->  {}",
                subscription.server, subscription.channel, subscription.component
            );
        }
    }
    if !cron.is_empty() {
        eprintln!("Cron schedules (UTC):");
        for schedule in cron.schedules() {
            let next = schedule
                .next
                .map_or_else(|| "no further ticks".to_owned(), |t| format!("next {t}"));
            eprintln!(
                "  `{}`  ->  {}  ({next})",
                schedule.cron_expression, schedule.component
            );
        }
    }
    match http {
        Some((trigger, address)) => {
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
            eprintln!("Routes:");
            for route in trigger.routes() {
                let target = route.component.as_deref().unwrap_or("(static response)");
                eprintln!("  http://{address}{}  ->  {target}", route.route);
            }
            // Tests and scripts read this line to find the bound address.
            eprintln!("Listening on http://{address}");
        }
        // Tests and scripts read this line to know the triggers are running.
        None => eprintln!("Running (no HTTP triggers)."),
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!(
        event = "stopping",
        "Shutting down: no new connections; waiting for in-flight requests."
    );
}

#[cfg(test)]
mod tests {
    use super::looks_like_reference;

    #[test]
    fn from_names_a_registry_only_with_an_explicit_host() {
        for reference in [
            "localhost:5000/hello:v1",
            "localhost/hello",
            "ghcr.io/me/app:1.0",
            "127.0.0.1:5000/apps/hello@sha256:0123",
        ] {
            assert!(looks_like_reference(reference), "{reference}");
        }
        for path in [
            "target/wasm32-wasip2/release/handler.wasm",
            "app/handler",
            "./dist/app",
            "../x.y/app",
            "/abs/path",
            "handler",
            "registry.example.com/app.wasm",
        ] {
            assert!(!looks_like_reference(path), "{path}");
        }
    }
}

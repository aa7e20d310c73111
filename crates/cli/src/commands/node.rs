//! `wisp node`: run a multi-app node, and `wisp node deploy | ls | rm | status`, which
//! drive one through its admin API.

use super::serve::{LimitArgs, Settings};
use super::shared::{ShutdownSignal, bind, resolve_manifest_with};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wisp_host::RuntimeConfig;
use wisp_node::api::{AppInfo, AppLimitsSpec, DeployRequest, DeploySource, NodeStatus};
use wisp_node::{AdminToken, Node, NodeConfig};

/// Arguments of `wisp node`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  wisp node --listen 127.0.0.1:3000 --admin-listen 127.0.0.1:3001 --state-dir /var/lib/wisp\n  wisp node deploy hello --from ./hello\n  wisp node deploy shop --from localhost:5000/shop:v3 --host shop.example.com --insecure\n  wisp node ls\n  curl -H 'Host: hello.localhost' http://127.0.0.1:3000/\n  wisp node rm shop"
)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    #[command(flatten)]
    serve: ServeNodeArgs,
}

impl NodeArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        match &self.command {
            None => self.serve.json,
            Some(NodeCommand::Deploy(args)) => args.client.json,
            Some(NodeCommand::Ls(args) | NodeCommand::Status(args)) => args.json,
            Some(NodeCommand::Rm(args)) => args.client.json,
        }
    }
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Deploy an app to a node, or replace the app of that name (atomically: requests
    /// in flight finish on the old version).
    Deploy(DeployArgs),
    /// List a node's apps: version, digest, hosts, state (idle/loaded), requests.
    Ls(ClientArgs),
    /// Remove an app (and its state) from a node.
    Rm(RmArgs),
    /// Show a node's state.
    Status(ClientArgs),
}

#[derive(Debug, Args)]
struct ServeNodeArgs {
    /// Address apps are served on; requests are routed by their `Host`.
    #[arg(long, env = "WISP_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// Address of the admin API (keep it on loopback or a private network).
    #[arg(long, env = "WISP_ADMIN_LISTEN", default_value = "127.0.0.1:3001")]
    admin_listen: SocketAddr,

    /// Serve the admin API on a non-loopback address without TLS (its token then crosses
    /// the network in clear text).
    #[arg(long, env = "WISP_ADMIN_ALLOW_INSECURE")]
    admin_allow_insecure: bool,

    /// Serve apps over HTTPS with this certificate chain (PEM); needs --tls-key. SIGHUP
    /// reloads it.
    #[arg(long, env = "WISP_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "WISP_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Serve the admin API over HTTPS with this certificate chain (PEM); needs
    /// --admin-tls-key. SIGHUP reloads it.
    #[arg(
        long,
        env = "WISP_ADMIN_TLS_CERT",
        requires = "admin_tls_key",
        value_name = "FILE"
    )]
    admin_tls_cert: Option<PathBuf>,

    /// The private key of --admin-tls-cert (PEM).
    #[arg(
        long,
        env = "WISP_ADMIN_TLS_KEY",
        requires = "admin_tls_cert",
        value_name = "FILE"
    )]
    admin_tls_key: Option<PathBuf>,

    /// The admin API's bearer token, from a file. Default: `WISP_ADMIN_TOKEN`, else the
    /// token generated at first start in `<state-dir>/admin-token`.
    #[arg(long, env = "WISP_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,

    /// The node's state: deployed apps (node.db), their content and their data.
    /// Default `$XDG_STATE_HOME/wisp/node` or `~/.local/state/wisp/node`.
    #[arg(long, env = "WISP_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// Apps deployed without --host answer `<name>.<domain>`.
    #[arg(long, env = "WISP_DOMAIN", default_value = "localhost")]
    domain: String,

    /// Seconds without requests after which an app's code leaves memory (apps with Redis
    /// or cron triggers stay loaded).
    #[arg(long, env = "WISP_IDLE_UNLOAD", default_value_t = 300.0)]
    idle_unload: f64,

    /// Instances one app may have alive at once unless its deploy sets its own cap.
    /// Default: a quarter of --max-instances (at least 1).
    #[arg(long, env = "WISP_APP_MAX_INSTANCES")]
    app_max_instances: Option<u32>,

    /// Engine, instance and front-door limits (per-instance ones are each app's ceiling).
    #[command(flatten)]
    limits: LimitArgs,

    /// Keep an app with more requests in flight than CPUs in the node's own low-priority
    /// threads, instead of a worker process started for such apps (which keeps their
    /// memory traffic away from the other apps').
    #[arg(long, env = "WISP_NO_WORKER")]
    no_worker: bool,

    /// Serve as a node's worker process (the node starts it).
    #[arg(long = "internal-worker", hide = true)]
    internal_worker: bool,

    /// Log as JSON lines on stderr.
    #[arg(long, env = "WISP_JSON")]
    json: bool,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The node's admin API.
    #[arg(
        long = "node",
        env = "WISP_NODE",
        default_value = "http://127.0.0.1:3001"
    )]
    node: String,

    /// The admin token. Default: `WISP_ADMIN_TOKEN`, else `<state-dir>/admin-token`.
    #[arg(long, env = "WISP_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Where to find the generated token (the node's --state-dir).
    #[arg(long, env = "WISP_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// Also trust this CA certificate (PEM) for an `https://` --node, e.g. the node's own
    /// self-signed --admin-tls-cert.
    #[arg(long, env = "WISP_NODE_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,

    /// Print the node's JSON answer.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp node deploy hello --from ./hello\n  wisp node deploy shop --from localhost:5000/shop:v3 --insecure --host shop.example.com --host '*.shop.example.com'\n  wisp node deploy api --from app.wasm --var db_url=postgres://… --max-instances 8"
)]
struct DeployArgs {
    /// The app's name (lowercase letters, digits, `-`): its default host is
    /// `<name>.<the node's --domain>`.
    name: String,

    /// An app directory or spin.toml, a `.wasm` component (served on `/...`), or a
    /// registry reference (`registry/repository:tag`, pulled by the node).
    #[arg(long)]
    from: PathBuf,

    /// A host the app answers (repeatable; `*.example.com` for every name under it).
    #[arg(long = "host")]
    hosts: Vec<String>,

    /// A variable's value, `NAME=VALUE` (repeatable).
    #[arg(long = "var", value_parser = parse_variable)]
    variables: Vec<(String, String)>,

    /// The app's runtime-config.toml (stores, databases, variable providers).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,

    /// Linear-memory cap per instance, in MiB (at most the node's --memory-limit-mb).
    #[arg(long)]
    memory_limit_mb: Option<u64>,

    /// Deadline for one request, in seconds.
    #[arg(long)]
    request_timeout: Option<f64>,

    /// Most instances of this app alive at once.
    #[arg(long)]
    max_instances: Option<u32>,

    /// The node talks plain HTTP to the registry named by --from (local registries only).
    #[arg(long)]
    insecure: bool,

    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// The app to remove.
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// `$XDG_STATE_HOME/wisp/node`, else `~/.local/state/wisp/node`.
fn default_state_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("wisp").join("node"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_STATE_HOME nor HOME is set; pass --state-dir")?;
    Ok(PathBuf::from(home).join(".local/state/wisp/node"))
}

/// Runs `wisp node` or one of its subcommands.
pub fn run(args: NodeArgs) -> Result<()> {
    if args.command.is_none() && args.serve.internal_worker {
        // Before any thread starts: they all inherit the idle scheduling class.
        wisp_engine::lower_this_threads_priority();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(super::RuntimeFailure::wrap)?;
    match args.command {
        None => runtime.block_on(serve(args.serve)),
        Some(NodeCommand::Deploy(args)) => runtime.block_on(deploy(args)),
        Some(NodeCommand::Ls(args)) => runtime.block_on(list(args)),
        Some(NodeCommand::Rm(args)) => runtime.block_on(remove(args)),
        Some(NodeCommand::Status(args)) => runtime.block_on(status(args)),
    }
}

async fn serve(args: ServeNodeArgs) -> Result<()> {
    if args.internal_worker {
        return serve_worker(args).await;
    }
    let tls = |cert: &Option<PathBuf>, key: &Option<PathBuf>, flags: &str| match (cert, key) {
        (Some(cert), Some(key)) => wisp_trigger_http::TlsConfig::load(cert, key)
            .map(Some)
            .with_context(|| flags.to_owned()),
        _ => Ok(None),
    };
    let admin_tls = tls(
        &args.admin_tls_cert,
        &args.admin_tls_key,
        "--admin-tls-cert/--admin-tls-key",
    )?;
    if !args.admin_listen.ip().is_loopback() && admin_tls.is_none() && !args.admin_allow_insecure {
        bail!(
            "--admin-listen {} is not a loopback address and the admin API has no TLS: its token would cross the network in clear text; give it a certificate (--admin-tls-cert, --admin-tls-key), keep it on 127.0.0.1, or pass --admin-allow-insecure on a network you trust",
            args.admin_listen
        );
    }
    let idle_unload = super::shared::seconds("--idle-unload", args.idle_unload)?;
    let mut settings = Settings::from_limits(&args.limits, RuntimeConfig::default())?;
    settings.server.tls = tls(&args.tls_cert, &args.tls_key, "--tls-cert/--tls-key")?;
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir()?,
    };
    let (token, token_source) = match (&args.admin_token_file, std::env::var("WISP_ADMIN_TOKEN")) {
        (Some(file), _) => (AdminToken::from_file(file)?, file.display().to_string()),
        (None, Ok(token)) if !token.is_empty() => {
            (AdminToken::new(&token)?, "WISP_ADMIN_TOKEN".to_owned())
        }
        _ => {
            let (token, path) = AdminToken::load_or_generate(&state_dir)?;
            (token, path.display().to_string())
        }
    };
    let data = bind(args.listen).await?;
    let admin = bind(args.admin_listen)
        .await
        .map_err(|e| e.context("the admin listener (--admin-listen) could not be bound"))?;
    // The node always records: its metrics are on the admin listener, behind the token.
    settings.metrics = wisp_metrics::Metrics::new();
    let wisp = settings.runtime()?;
    let app_max_instances = args
        .app_max_instances
        .unwrap_or((args.limits.max_instances / 4).max(1));
    let node = Node::open(
        wisp,
        NodeConfig {
            state_dir: state_dir.clone(),
            domain: args.domain.trim_matches('.').to_ascii_lowercase(),
            idle_unload,
            app_max_instances,
            server: settings.server.clone(),
            max_blob_bytes: args.limits.max_component_size_mb << 20,
            role: wisp_node::NodeRole::Main {
                worker: worker_command(&args)?,
            },
        },
    )?;
    let data_address = data
        .local_addr()
        .context("cannot read the listening address")?;
    let admin_address = admin
        .local_addr()
        .context("cannot read the admin address")?;
    node.start_event_apps().await;
    let mut shutdown = ShutdownSignal::install()?;
    super::shared::reload_tls_on_sighup(
        [settings.server.tls.clone(), admin_tls.clone()]
            .into_iter()
            .flatten()
            .collect(),
    )?;
    let data_scheme = super::serve::scheme(&settings.server);
    let admin_scheme = if admin_tls.is_some() { "https" } else { "http" };
    if args.json {
        tracing::info!(
            event = "serving",
            listen = %data_address,
            admin = %admin_address,
            apps = node.app_count(),
            state_dir = %state_dir.display(),
            "serving"
        );
    } else {
        eprintln!(
            "Wisp node: {} apps deployed, state in {}",
            node.app_count(),
            state_dir.display()
        );
        eprintln!("Admin API on {admin_scheme}://{admin_address} (token: {token_source})");
        eprintln!(
            "Metrics on {admin_scheme}://{admin_address}/metrics (with the token); dashboard: {admin_scheme}://{admin_address}/dashboard#token=<token>"
        );
        eprintln!(
            "Serving apps on {data_scheme}://{data_address} (by Host; default hosts <name>.{})",
            node.config().domain
        );
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serve_data = node.serve(data, wisp_runtime::until(stopped.clone()));
    let serve_admin = wisp_node::serve_admin(
        node.clone(),
        token,
        admin,
        admin_tls,
        wisp_runtime::until(stopped),
    );
    tokio::select! {
        _ = async { tokio::join!(serve_data, serve_admin) } => {}
        () = async {
            shutdown.recv().await;
            let _ = stop.send(true);
            std::future::pending::<()>().await
        } => {}
    }
    // The apps are still deployed (the node lives to the end), so their compiles go on.
    super::shared::finish_optimising(node.engine(), &mut shutdown).await;
    if args.json {
        tracing::info!(event = "stopped", "Stopped.");
    } else {
        eprintln!("Stopped.");
    }
    Ok(())
}

/// How the node starts its worker: this binary with this process's own arguments.
fn worker_command(args: &ServeNodeArgs) -> Result<Option<wisp_node::WorkerCommand>> {
    if args.no_worker {
        return Ok(None);
    }
    let program = std::env::current_exe()
        .context("cannot find the wisp binary to start the node's worker; pass --no-worker")?;
    Ok(Some(wisp_node::WorkerCommand {
        program,
        args: std::env::args_os().skip(1).collect(),
    }))
}

/// `wisp node --internal-worker`: serves the requests its node forwards, on a loopback
/// port it prints on stdout, until SIGTERM or until the node closes its stdin.
async fn serve_worker(args: ServeNodeArgs) -> Result<()> {
    let token = std::env::var(wisp_node::WORKER_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!(
                "{} is set only by `wisp node` for its worker process; run `wisp node` instead",
                wisp_node::WORKER_FLAG
            )
        })?;
    let idle_unload = super::shared::seconds("--idle-unload", args.idle_unload)?;
    let mut settings = Settings::from_limits(&args.limits, RuntimeConfig::default())?;
    settings.server.tls = None;
    // Recorded as in the node, which serves them on its `/metrics` beside its own.
    settings.metrics = wisp_metrics::Metrics::new();
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir()?,
    };
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = listener
        .local_addr()
        .context("cannot read the worker's address")?;
    // Where the node hands over client connections; without it, they are proxied.
    let control_path = state_dir.join("worker.sock");
    let control = wisp_node::bind_control_socket(&control_path);
    let app_max_instances = args
        .app_max_instances
        .unwrap_or((args.limits.max_instances / 4).max(1));
    let node = Node::open(
        settings.runtime()?,
        NodeConfig {
            state_dir,
            domain: args.domain.trim_matches('.').to_ascii_lowercase(),
            idle_unload,
            app_max_instances,
            server: settings.server.clone(),
            max_blob_bytes: args.limits.max_component_size_mb << 20,
            role: wisp_node::NodeRole::Worker { token },
        },
    )?;
    let mut shutdown = ShutdownSignal::install()?;
    let ready = match &control {
        Some(_) => format!("{address} {}", control_path.display()),
        None => address.to_string(),
    };
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}{ready}", wisp_node::WORKER_READY_LINE)
            .and_then(|()| stdout.flush())
            .context("cannot tell the node where the worker listens")?;
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let node_gone = async {
        // The node holds our stdin: end of file means it stopped or died.
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 64];
        while tokio::io::AsyncReadExt::read(&mut stdin, &mut buffer)
            .await
            .is_ok_and(|n| n > 0)
        {}
    };
    tokio::select! {
        () = node.serve_taking_connections(listener, control, wisp_runtime::until(stopped)) => {}
        () = async {
            tokio::select! {
                () = shutdown.recv() => {}
                () = node_gone => {}
            }
            let _ = stop.send(true);
            std::future::pending::<()>().await
        } => {}
    }
    Ok(())
}

/// Talks to a node's admin API.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(args: &ClientArgs) -> Result<Self> {
        let token = match &args.token {
            Some(token) => token.trim().to_owned(),
            None => {
                let dir = match &args.state_dir {
                    Some(dir) => dir.clone(),
                    None => default_state_dir()?,
                };
                let path = dir.join("admin-token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no admin token: pass --token or set WISP_ADMIN_TOKEN, or --state-dir of a node on this machine (cannot read {})",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &args.ca_cert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read --ca-cert {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("--ca-cert {} is not a PEM certificate", ca.display()))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            base: args.node.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        content_type: &str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the node at {}: {e}; is `wisp node` running there? (--node, WISP_NODE)",
                self.base
            )
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("cannot read the node's answer to {method} {path}"))?;
        Ok((status, bytes.to_vec()))
    }

    /// `method path` with a JSON body; the answer's body on success, its message otherwise.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>)> {
        let (status, bytes) = self
            .send(
                method,
                path,
                body.map(reqwest::Body::from),
                "application/json",
            )
            .await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<wisp_node::api::ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
            bail!("the node answered {status}: {message}");
        }
        Ok((status, bytes))
    }
}

async fn deploy(args: DeployArgs) -> Result<()> {
    let client = Client::new(&args.client)?;
    let from_text = args.from.to_string_lossy().into_owned();
    let source = if !args.from.exists() && super::up::looks_like_reference(&from_text) {
        DeploySource::Registry {
            reference: from_text.clone(),
            insecure: args.insecure,
        }
    } else if !args.from.exists() {
        bail!(
            "--from {}: no such file or directory, and not a registry reference (registry/repository:tag); give an app directory, a spin.toml, a .wasm component or a reference",
            args.from.display()
        );
    } else {
        let manifest = upload(&client, &args.from).await?;
        DeploySource::Uploaded { manifest }
    };
    let runtime_config = match &args.runtime_config_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let origin = match &source {
        DeploySource::Registry { .. } => from_text,
        DeploySource::Uploaded { .. } => std::path::absolute(&args.from)
            .unwrap_or_else(|_| args.from.clone())
            .display()
            .to_string(),
    };
    let request = DeployRequest {
        source,
        hosts: args.hosts,
        variables: args.variables.into_iter().collect::<BTreeMap<_, _>>(),
        runtime_config,
        limits: AppLimitsSpec {
            memory_limit_mb: args.memory_limit_mb,
            request_timeout_secs: args.request_timeout,
            max_instances: args.max_instances,
        },
        origin: Some(origin),
    };
    let (status, body) = client
        .call(
            reqwest::Method::PUT,
            &format!("/v1/apps/{}", args.name),
            Some(serde_json::to_vec(&request).expect("deploy requests serialize")),
        )
        .await
        .with_context(|| format!("cannot deploy `{}`", args.name))?;
    if args.client.json {
        println!("{}", String::from_utf8_lossy(&body).trim_end());
        return Ok(());
    }
    let info: AppInfo = serde_json::from_slice(&body).context("the node's answer is not an app")?;
    let verb = match status {
        reqwest::StatusCode::CREATED => "Deployed",
        _ => "Replaced",
    };
    eprintln!(
        "{verb} `{}` (version {}, {}); it answers {}",
        info.name,
        info.version,
        short_digest(&info.digest),
        info.hosts.join(", ")
    );
    Ok(())
}

/// Packs the app at `from` and uploads every blob the node lacks, then the manifest (as a
/// blob); returns the manifest's digest.
async fn upload(client: &Client, from: &Path) -> Result<String> {
    let options = wisp_app::ResolveOptions::default();
    let locked = if from.extension().is_some_and(|e| e == "wasm") {
        wisp_app::from_component_file_with(from, &options)?
    } else {
        resolve_manifest_with(Some(from), &options, None, false)?.0
    };
    let packed = wisp_oci::pack(&locked)
        .await
        .with_context(|| format!("cannot pack the app at {}", from.display()))?;
    let manifest_digest = packed.digest().to_owned();
    let blobs: Vec<(String, Option<Vec<u8>>)> = packed
        .blobs()
        .map(|b| (b.digest.to_owned(), None))
        .chain([(manifest_digest.clone(), Some(packed.manifest().to_vec()))])
        .collect();
    for (digest, bytes) in blobs {
        let path = format!("/v1/blobs/{digest}");
        let (status, _) = client.send(reqwest::Method::HEAD, &path, None, "").await?;
        if status.is_success() {
            continue;
        }
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => packed.read_blob(&digest).await?,
        };
        let (status, body) = client
            .send(
                reqwest::Method::PUT,
                &path,
                Some(reqwest::Body::from(bytes)),
                "application/octet-stream",
            )
            .await?;
        if !status.is_success() {
            bail!(
                "the node refused blob {digest} ({status}): {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
    }
    Ok(manifest_digest)
}

fn short_digest(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

async fn list(args: ClientArgs) -> Result<()> {
    let client = Client::new(&args)?;
    let (_, body) = client.call(reqwest::Method::GET, "/v1/apps", None).await?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body).trim_end());
        return Ok(());
    }
    let apps: Vec<AppInfo> =
        serde_json::from_slice(&body).context("the node's answer is not a list of apps")?;
    let rows: Vec<[String; 6]> = apps
        .iter()
        .map(|app| {
            [
                app.name.clone(),
                app.version.to_string(),
                short_digest(&app.digest).to_owned(),
                app.hosts.join(","),
                format!("{:?}", app.state).to_lowercase(),
                app.requests.to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "DIGEST", "HOSTS", "STATE", "REQUESTS"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

async fn remove(args: RmArgs) -> Result<()> {
    let client = Client::new(&args.client)?;
    client
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/apps/{}", args.name),
            None,
        )
        .await
        .with_context(|| format!("cannot remove `{}`", args.name))?;
    if !args.client.json {
        eprintln!("Removed `{}`.", args.name);
    }
    Ok(())
}

async fn status(args: ClientArgs) -> Result<()> {
    let client = Client::new(&args)?;
    let (_, body) = client
        .call(reqwest::Method::GET, "/v1/status", None)
        .await?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body).trim_end());
        return Ok(());
    }
    let status: NodeStatus =
        serde_json::from_slice(&body).context("the node's answer is not a status")?;
    println!("wisp {}", status.wisp_version);
    println!("apps: {} deployed, {} loaded", status.apps, status.loaded);
    println!(
        "serving on: http://{} (default hosts <name>.{})",
        status.listen, status.domain
    );
    println!(
        "uptime: {:.0} s; idle apps unload after {:.0} s",
        status.uptime_seconds, status.idle_unload_seconds
    );
    match &status.worker {
        None => println!("worker process: none (busy apps stay in the node's slow lane)"),
        Some(worker) => println!(
            "worker process: {}; {} requests forwarded, started {} times",
            worker
                .pid
                .map_or_else(|| "not running".to_owned(), |pid| format!("pid {pid}")),
            worker.forwarded_requests,
            worker.starts
        ),
    }
    Ok(())
}

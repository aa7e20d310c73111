//! `wisp up`: resolve the app, load it through the runtime, serve it until SIGINT/SIGTERM.

use super::serve::{self, Settings};
use super::shared::{ShutdownSignal, bind, resolve_manifest_with};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use wisp_app::LockedApp;
use wisp_host::AppPaths;
use wisp_runtime::{GuestOutput, RunningApp};

/// Arguments of `wisp up`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp up -f examples/hello/spin.toml\n  wisp up --from target/wasm32-wasip2/release/handler.wasm --listen 127.0.0.1:8080"
)]
pub struct UpArgs {
    /// The app manifest (spin.toml) or a directory containing one; as in `spin up -f`, also
    /// a component (.wasm) or a registry reference.
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
    pub(crate) build: bool,

    /// Put this profile in place where a component defines one of that name
    /// (`[component.<id>.profile.<name>]`: its source, environment, dependencies and build
    /// commands), as `spin up --profile` does.
    #[arg(long, value_name = "NAME", conflicts_with = "from")]
    pub(crate) profile: Option<String>,

    /// Talk plain HTTP to the registry named by --from (local registries only).
    #[arg(short = 'k', long, env = "WISP_REGISTRY_INSECURE")]
    pub(crate) insecure: bool,

    /// Content cache for apps pulled by --from; default `$XDG_CACHE_HOME/wisp/oci`.
    #[arg(long, env = "WISP_OCI_CACHE_DIR")]
    pub(crate) oci_cache_dir: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port. Without it (and WISP_LISTEN), Spin's
    /// SPIN_HTTP_LISTEN_ADDR is honoured, then 127.0.0.1:3000.
    #[arg(long, env = "WISP_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,

    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first);
    /// needs --tls-key. SIGHUP reloads both files.
    #[arg(long, env = "WISP_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "WISP_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,

    /// If the --listen port is taken, try the next ones (up to 10 more), as Spin does.
    #[arg(long)]
    pub(crate) find_free_port: bool,

    /// Set an environment variable (`KEY=VALUE`) in every component, over the manifest's
    /// (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = super::registry::key_value)]
    pub(crate) env: Vec<(String, String)>,

    /// Serve only these components and the triggers that use them (repeatable), as
    /// SpinKube's selective deployment does.
    #[arg(short = 'c', long = "component-id", value_name = "ID")]
    pub(crate) component_ids: Vec<String>,

    /// Set `KEY` to `VALUE` in the `default` key-value store before serving (repeatable).
    #[arg(long = "key-value", value_name = "KEY=VALUE", value_parser = super::registry::key_value)]
    pub(crate) key_values: Vec<(String, String)>,

    /// Run a statement against the `default` SQLite database before serving; `@FILE` runs
    /// the file's statements, `@FILE:LABEL` against database LABEL (repeatable).
    #[arg(long = "sqlite", value_name = "STATEMENT|@FILE[:LABEL]")]
    pub(crate) sqlite: Vec<String>,

    /// Give an app variable a value, over every provider (repeatable): `NAME=VALUE`,
    /// `NAME=@FILE` (the file's text), or `@FILE.json` / `@FILE.toml` (a table of them).
    #[arg(long = "variable", value_name = "NAME=VALUE|@FILE")]
    pub(crate) variables: Vec<String>,

    /// Linear-memory cap per instance, in bytes (Spin's spelling of --memory-limit-mb).
    #[arg(long, env = "SPIN_MAX_INSTANCE_MEMORY", value_name = "BYTES")]
    pub(crate) max_instance_memory: Option<u64>,

    /// Also append each component's stdout and stderr to `<DIR>/<id>_stdout.txt` and
    /// `<DIR>/<id>_stderr.txt`, as `spin up -L` does.
    #[arg(short = 'L', long, env = "WISP_LOG_DIR", value_name = "DIR")]
    pub(crate) log_dir: Option<PathBuf>,

    /// Drop the components' stdout and stderr.
    #[arg(short = 'q', long, conflicts_with = "follow")]
    pub(crate) quiet: bool,

    /// Write out only these components' stdout and stderr (repeatable).
    #[arg(long, value_name = "ID")]
    pub(crate) follow: Vec<String>,

    /// Backends for key-value stores, SQLite databases, variable providers and outbound
    /// networking (Spin's runtime-config.toml format).
    #[arg(long, env = "WISP_RUNTIME_CONFIG_FILE")]
    pub(crate) runtime_config_file: Option<PathBuf>,

    /// Directory for app state (the `default` key-value store and SQLite database,
    /// staged files); default `.wisp` beside the manifest.
    #[arg(long, env = "WISP_STATE_DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// Directory the components' files are staged in (Spin's `--temp`, alias `--tmp`);
    /// default `files` in the state directory.
    #[arg(long, visible_alias = "tmp", env = "WISP_TEMP_DIR", value_name = "DIR")]
    pub(crate) temp: Option<PathBuf>,

    /// Engine, instance and front-door limits.
    #[command(flatten)]
    pub(crate) limits: super::serve::LimitArgs,

    /// Log as JSON lines on stderr: one object per request, lifecycle event and message.
    #[arg(long, env = "WISP_JSON")]
    pub(crate) json: bool,

    /// Serve Prometheus metrics (per app and component: requests, latency, CPU time,
    /// memory, instances, outbound calls) at http://ADDR/metrics, e.g. 127.0.0.1:9090.
    #[arg(long, env = "WISP_METRICS_LISTEN", value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,
}

impl UpArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        self.json
    }

    /// `--listen` (or `WISP_LISTEN`), else Spin's `SPIN_HTTP_LISTEN_ADDR`, else
    /// `127.0.0.1:3000`.
    pub(crate) fn listen_address(&self) -> Result<SocketAddr> {
        if let Some(address) = self.listen {
            return Ok(address);
        }
        match std::env::var("SPIN_HTTP_LISTEN_ADDR") {
            Ok(text) if !text.is_empty() => text.parse().with_context(|| {
                format!("SPIN_HTTP_LISTEN_ADDR={text} is not an address; write it as 0.0.0.0:80 or [::]:80")
            }),
            _ => Ok(SocketAddr::from(([127, 0, 0, 1], 3000))),
        }
    }
}

/// Runs `wisp up`.
pub fn run(args: UpArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(super::RuntimeFailure::wrap)?;
    if args.build {
        super::build::build_manifest(args.manifest.as_deref(), args.json, args.profile.as_deref())?;
    }
    let mut settings = Settings::from_args(&args)?;
    let engine = settings.start_engine();
    let (mut locked, app_dir, from_file) = runtime.block_on(resolve(&args, &settings.resolve))?;
    settings.guest_output = apply_app_flags(&mut locked, &args)?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| app_dir.join(".wisp"));
    let paths = AppPaths {
        state_dir,
        app_dir: from_file.then(|| app_dir.clone()),
        files_dir: args.temp.clone(),
    };

    runtime.block_on(async move {
        let serves_http = locked.triggers_of_type("http").next().is_some();
        // Bind first so a taken port is reported before any compile work.
        let listener = match serves_http {
            true => Some(bind_listen(args.listen_address()?, args.find_free_port).await?),
            false => None,
        };
        let metrics = super::shared::bind_metrics(args.metrics_listen).await?;
        if let Some((_, registry)) = &metrics {
            settings.metrics = registry.clone();
        }
        seed_stores(&args, &settings, &paths).await?;
        let wisp = settings.runtime_with(engine)?;
        let generation = serve::load(&wisp, locked, &settings, paths).await?;
        let address = match &listener {
            Some(listener) => Some(
                listener
                    .local_addr()
                    .context("cannot read the listening address")?,
            ),
            None => None,
        };
        let mut shutdown = ShutdownSignal::install()?;
        reload_tls_on_sighup(&settings)?;
        serve::print_summary(&wisp, &generation, &settings, address, args.json);
        if let Some((listener, registry)) = metrics {
            super::shared::serve_metrics(listener, registry, args.json)?;
        }
        // Parsing, resolving and linking code will not run again. Unmapped before the first
        // connection is accepted: a first request served before this point would find the
        // start-up code still resident (2.7 MiB more in a reading right after it).
        wisp_engine::release_startup_code();
        // Kept until the end: optimised code still compiling for it is only compiled while
        // some loaded copy of its component lives.
        let loaded = generation.clone();
        let running = RunningApp::start(generation, listener, settings.server.clone());
        wisp_engine::release_read_only_pages_when_idle(
            wisp_engine::SETTLE_AFTER,
            wisp_engine::IDLE_RELEASE_AFTER,
            || {},
        );
        shutdown.recv().await;
        running.shutdown().await;
        super::shared::finish_optimising(wisp.engine(), &mut shutdown).await;
        drop(loaded);
        if args.json {
            tracing::info!(event = "stopped", "Stopped.");
        } else {
            // Not `eprintln!`: stderr may be gone by now, and that is no failure.
            let _ = writeln!(std::io::stderr(), "Stopped.");
        }
        Ok(())
    })
}

/// The settings-level flags Spin users type, over `settings` (`up` and `watch`):
/// `--variable`, `--max-instance-memory`, `--tls-cert`/`--tls-key`.
pub(crate) fn apply_settings_flags(settings: &mut Settings, args: &UpArgs) -> Result<()> {
    settings.resolve.profile = args.profile.clone();
    if !args.variables.is_empty() {
        // First provider: a value given here wins over the runtime config and environment.
        let values = variable_values(&args.variables)?;
        settings
            .runtime_config
            .variables_providers
            .insert(0, wisp_host::VariablesProviderConfig::Static { values });
    }
    if let Some(bytes) = args.max_instance_memory {
        settings.set_memory_limit(bytes, "--max-instance-memory")?;
    }
    settings.guest_log_dir = args.log_dir.clone();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        settings.server.tls =
            Some(wisp_trigger_http::TlsConfig::load(cert, key).context("--tls-cert/--tls-key")?);
    }
    Ok(())
}

/// The app-level flags over a resolved app (`up`, and `watch` on every load): `-c` keeps
/// components, `-e` sets variables; returns whose output `-q`/`--follow` show.
pub(crate) fn apply_app_flags(locked: &mut LockedApp, args: &UpArgs) -> Result<GuestOutput> {
    retain_components(locked, &args.component_ids)?;
    for component in &mut locked.components {
        component.env.extend(args.env.iter().cloned());
    }
    guest_output(locked, args.quiet, &args.follow)
}

/// With TLS, reloads the certificate and key on every SIGHUP from now on (see
/// [`super::shared::reload_tls_on_sighup`]).
pub(crate) fn reload_tls_on_sighup(settings: &Settings) -> Result<()> {
    super::shared::reload_tls_on_sighup(settings.server.tls.iter().cloned().collect())
}

/// The values `--variable` gives, in order (a later one wins).
fn variable_values(args: &[String]) -> Result<indexmap::IndexMap<String, String>> {
    let mut values = indexmap::IndexMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some((name, value)) if !name.is_empty() && !name.starts_with('@') => {
                let value = match value.strip_prefix('@') {
                    Some(file) => std::fs::read_to_string(file)
                        .with_context(|| format!("--variable {arg}: cannot read {file}"))?,
                    None => value.to_owned(),
                };
                values.insert(name.to_owned(), value);
            }
            _ => {
                let Some(file) = arg.strip_prefix('@') else {
                    anyhow::bail!(
                        "--variable {arg}: write NAME=VALUE, NAME=@FILE, or @FILE.json / @FILE.toml"
                    );
                };
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("--variable {arg}: cannot read {file}"))?;
                let table: indexmap::IndexMap<String, String> = if file.ends_with(".json") {
                    serde_json::from_str(&text).with_context(|| {
                        format!("--variable {arg}: {file} is not a JSON object of strings")
                    })?
                } else if file.ends_with(".toml") {
                    toml::from_str(&text).with_context(|| {
                        format!("--variable {arg}: {file} is not a TOML table of strings")
                    })?
                } else {
                    anyhow::bail!(
                        "--variable {arg}: a file of variables must end in .json or .toml"
                    );
                };
                values.extend(table);
            }
        }
    }
    Ok(values)
}

/// `--listen`, or with `--find-free-port` the first of it and the next 10 ports that is
/// free.
pub(crate) async fn bind_listen(
    address: SocketAddr,
    find_free_port: bool,
) -> Result<tokio::net::TcpListener> {
    if find_free_port && address.port() != 0 {
        for offset in 0..=10u16 {
            let Some(port) = address.port().checked_add(offset) else {
                break;
            };
            if let Ok(listener) = tokio::net::TcpListener::bind((address.ip(), port)).await {
                return Ok(listener);
            }
        }
    }
    bind(address).await
}

/// Keeps only `ids` (`--component-id`) and the triggers that run them; an unknown id is an
/// error naming the app's components.
fn retain_components(locked: &mut LockedApp, ids: &[String]) -> Result<()> {
    locked
        .retain_components(ids)
        .map_err(|e| anyhow::anyhow!("--component-id {e}"))
}

/// Every id `flag` names is a component of the app; the error lists the app's.
fn check_component_ids(locked: &LockedApp, flag: &str, ids: &[String]) -> Result<()> {
    locked
        .check_component_ids(ids)
        .map_err(|e| anyhow::anyhow!("{flag} {e}"))
}

/// Whose output `--quiet` / `--follow` let through; a followed id must be a component.
fn guest_output(locked: &LockedApp, quiet: bool, follow: &[String]) -> Result<GuestOutput> {
    if quiet {
        return Ok(GuestOutput::None);
    }
    if follow.is_empty() {
        return Ok(GuestOutput::All);
    }
    check_component_ids(locked, "--follow", follow)?;
    Ok(GuestOutput::Only(follow.iter().cloned().collect()))
}

/// `--key-value` and `--sqlite`, written into the stores the app will open, in order.
pub(crate) async fn seed_stores(
    args: &UpArgs,
    settings: &Settings,
    paths: &AppPaths,
) -> Result<()> {
    let config = &settings.runtime_config;
    if !args.key_values.is_empty() {
        wisp_host::KeyValue::seed(config, paths, "default", &args.key_values)
            .await
            .context("--key-value: cannot seed the key-value store")?;
    }
    for arg in &args.sqlite {
        let (label, sql, batch) = match arg.strip_prefix('@') {
            Some(file) => {
                let (file, label) = file.split_once(':').unwrap_or((file, "default"));
                let sql = std::fs::read_to_string(file)
                    .with_context(|| format!("--sqlite {arg}: cannot read {file}"))?;
                (label, sql, true)
            }
            None => ("default", arg.clone(), false),
        };
        wisp_host::Sqlite::seed(config, paths, label, &sql, batch)
            .await
            .with_context(|| format!("--sqlite {arg}"))?;
    }
    Ok(())
}

/// The app to serve, the directory its relative defaults (state dir, `.env`) hang off, and
/// whether it came from local files (not a registry).
async fn resolve(
    args: &UpArgs,
    options: &wisp_app::ResolveOptions,
) -> Result<(LockedApp, PathBuf, bool)> {
    // `-f` also takes what `--from` takes, as `spin up -f` does: a .wasm or a reference.
    let from = args.from.as_ref().or(args.manifest.as_ref().filter(|path| {
        let is_component = path.extension().is_some_and(|e| e == "wasm" || e == "wat");
        let is_reference = !path.exists() && path.to_str().is_some_and(looks_like_reference);
        (is_component && path.is_file()) || is_reference
    }));
    if let Some(from) = from {
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
            let client = super::shared::registry_client(args.insecure)?;
            let pulled = wisp_oci::pull(&client, &reference, &cache)
                .await
                .with_context(|| format!("cannot get {text} from its registry"))?;
            eprintln!("Pulled {text} ({}).", pulled.digest);
            let dir = std::env::current_dir().context("cannot read the current directory")?;
            return Ok((pulled.locked, dir, false));
        }
        let locked = wisp_app::from_component_file_with(from, options)?;
        let dir = std::path::absolute(from)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        return Ok((locked, dir, false));
    }
    let (locked, dir) = resolve_manifest_with(
        args.manifest.as_deref(),
        options,
        args.oci_cache_dir.as_deref(),
        args.insecure,
    )?;
    Ok((locked, dir, true))
}

/// Whether `--from` text names a registry: its first segment is a host (has a `.` or a
/// `:` port, or is `localhost`) and it is not a `.wasm` path. A missing local file then
/// stays a "no such file" error instead of becoming a Docker Hub lookup.
pub(crate) fn looks_like_reference(text: &str) -> bool {
    let Some((first, _)) = text.split_once('/') else {
        return false;
    };
    !text.ends_with(".wasm")
        && first != "."
        && first != ".."
        && (first.contains('.') || first.contains(':') || first == "localhost")
}

#[cfg(test)]
mod tests {
    use super::looks_like_reference;

    #[test]
    fn from_names_a_registry_only_with_an_explicit_host() {
        for reference in [
            "localhost:5000/hello:v1",
            "localhost/hello",
            "registry.example.com/me/app:1.0",
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

//! `wisp up`: resolve the app, load it through the runtime, serve it until SIGINT/SIGTERM.

use super::serve::{self, Settings};
use super::shared::{bind, resolve_manifest_with, shutdown_signal};
use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use wisp_app::LockedApp;
use wisp_host::AppPaths;
use wisp_runtime::RunningApp;

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
    pub(crate) build: bool,

    /// Talk plain HTTP to the registry named by --from (local registries only).
    #[arg(long, env = "WISP_REGISTRY_INSECURE")]
    pub(crate) insecure: bool,

    /// Content cache for apps pulled by --from; default `$XDG_CACHE_HOME/wisp/oci`.
    #[arg(long, env = "WISP_OCI_CACHE_DIR")]
    pub(crate) oci_cache_dir: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "WISP_LISTEN", default_value = "127.0.0.1:3000")]
    pub(crate) listen: SocketAddr,

    /// Backends for key-value stores, SQLite databases, variable providers and outbound
    /// networking (Spin's runtime-config.toml format).
    #[arg(long, env = "WISP_RUNTIME_CONFIG_FILE")]
    pub(crate) runtime_config_file: Option<PathBuf>,

    /// Directory for app state (the `default` key-value store and SQLite database,
    /// staged files); default `.wisp` beside the manifest.
    #[arg(long, env = "WISP_STATE_DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// Engine, instance and front-door limits.
    #[command(flatten)]
    pub(crate) limits: super::serve::LimitArgs,

    /// Log as JSON lines on stderr: one object per request, lifecycle event and message.
    #[arg(long, env = "WISP_JSON")]
    pub(crate) json: bool,
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
        .context("cannot start the async runtime")
        .map_err(super::RuntimeFailure::wrap)?;
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
        let serves_http = locked.triggers_of_type("http").next().is_some();
        // Bind first so a taken port is reported before any compile work.
        let listener = match serves_http {
            true => Some(bind(args.listen).await?),
            false => None,
        };
        let wisp = settings.runtime()?;
        let generation = serve::load(&wisp, locked, &settings, paths).await?;
        let address = match &listener {
            Some(listener) => Some(
                listener
                    .local_addr()
                    .context("cannot read the listening address")?,
            ),
            None => None,
        };
        serve::print_summary(&wisp, &generation, &settings, address, args.json);
        let running = RunningApp::start(generation, listener, settings.server.clone());
        shutdown_signal().await;
        running.shutdown().await;
        if args.json {
            tracing::info!(event = "stopped", "Stopped.");
        } else {
            eprintln!("Stopped.");
        }
        Ok(())
    })
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
            let client = super::shared::registry_client(args.insecure)?;
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

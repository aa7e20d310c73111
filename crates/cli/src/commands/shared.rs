//! Helpers more than one command uses: finding and resolving the manifest, the registry
//! client, binding the listener, the shutdown signal, the descriptor limit.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wisp_app::LockedApp;
use wisp_oci::{ClientOptions, RegistryClient};

/// Parses and resolves the manifest at `path` (default `spin.toml`; a directory means
/// its `spin.toml`) with `options` (limits, profile); returns the app and the manifest's
/// directory. Url and registry sources (of components, dependencies and middleware) are
/// downloaded into `content_cache` (default [`wisp_oci::Cache::default_root`]) first, from
/// registries over plain HTTP if `insecure`.
pub(crate) fn resolve_manifest_with(
    path: Option<&Path>,
    options: &wisp_app::ResolveOptions,
    content_cache: Option<&Path>,
    insecure: bool,
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
    let mut manifest = parse_manifest(&path, options.profile.as_deref())?;
    for warning in &manifest.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    fetch_remote_sources(&mut manifest, options, content_cache, insecure)?;
    let locked = wisp_app::resolve_with(&manifest, &path, options)?;
    let dir = std::path::absolute(&path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    Ok((locked, dir))
}

/// Parses and validates the manifest at `path`, with `profile` (`--profile`) in place.
pub(crate) fn parse_manifest(
    path: &Path,
    profile: Option<&str>,
) -> Result<wisp_manifest::Manifest> {
    Ok(wisp_manifest::parse_file_with_profile(path, profile)?)
}

/// Downloads every `source = { url, digest }` and registry source (of components and of
/// their dependencies) not yet in the content cache and points it at its verified cached
/// copy, so resolving sees only local files. `insecure` lets registries speak plain HTTP.
fn fetch_remote_sources(
    manifest: &mut wisp_manifest::Manifest,
    options: &wisp_app::ResolveOptions,
    content_cache: Option<&Path>,
    insecure: bool,
) -> Result<()> {
    use wisp_manifest::ComponentSource;
    // (component, which of its sources, source)
    let mut remote: Vec<(String, Slot, ComponentSource)> = Vec::new();
    for c in manifest.components.values() {
        if !matches!(c.source, ComponentSource::Local(_)) {
            remote.push((c.id.clone(), Slot::Own, c.source.clone()));
        }
        for (name, dependency) in &c.dependencies {
            if !matches!(dependency.source, ComponentSource::Local(_)) {
                let slot = Slot::Dependency(name.clone());
                remote.push((c.id.clone(), slot, dependency.source.clone()));
            }
        }
        for (index, middleware) in c.middleware.iter().enumerate() {
            if !matches!(middleware.source, ComponentSource::Local(_)) {
                let slot = Slot::Middleware(index);
                remote.push((c.id.clone(), slot, middleware.source.clone()));
            }
        }
    }
    if remote.is_empty() {
        return Ok(());
    }
    let cache = wisp_oci::Cache::new(
        content_cache.map_or_else(wisp_oci::Cache::default_root, Path::to_path_buf),
    );
    let limit = options.max_source_bytes;
    let needs_registry = remote
        .iter()
        .any(|(_, _, source)| matches!(source, ComponentSource::Registry { .. }));
    let client = match needs_registry {
        true => Some(registry_client(insecure)?),
        false => None,
    };
    // Its own thread and runtime: callers resolve both inside and outside an async runtime.
    let fetched = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<Vec<PathBuf>> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                runtime.block_on(async {
                    let mut fetched = Vec::with_capacity(remote.len());
                    for (id, dependency, source) in &remote {
                        let kind = match source {
                            ComponentSource::Registry { .. } => "registry",
                            _ => "url",
                        };
                        let what = match dependency {
                            Slot::Own => format!("component `{id}`: cannot use its {kind} source"),
                            Slot::Dependency(name) => format!(
                                "component `{id}`: cannot use the {kind} source of its dependency `{name}`"
                            ),
                            Slot::Middleware(index) => format!(
                                "component `{id}`: cannot use the {kind} source of its middleware {}",
                                index + 1
                            ),
                        };
                        let path = match source {
                            ComponentSource::Remote { url, digest } => {
                                wisp_oci::fetch_url_source(&cache, url, digest, limit)
                                    .await
                                    .context(what)?
                            }
                            ComponentSource::Registry {
                                registry,
                                package,
                                version,
                            } => {
                                let request = wisp_oci::PackageRequest {
                                    package,
                                    version,
                                    registry: registry.as_deref(),
                                };
                                let client = client.as_ref().expect("made for registry sources");
                                wisp_oci::fetch_package(client, &cache, &request, limit)
                                    .await
                                    .context(what)?
                            }
                            ComponentSource::Local(path) => path.clone(),
                        };
                        fetched.push(path);
                    }
                    Ok(fetched)
                })
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    for ((id, dependency, _), path) in remote.into_iter().zip(fetched) {
        let Some(component) = manifest.components.get_mut(&id) else {
            continue;
        };
        let source = match dependency {
            Slot::Own => &mut component.source,
            Slot::Dependency(name) => match component.dependencies.get_mut(&name) {
                Some(dependency) => &mut dependency.source,
                None => continue,
            },
            Slot::Middleware(index) => match component.middleware.get_mut(index) {
                Some(middleware) => &mut middleware.source,
                None => continue,
            },
        };
        *source = ComponentSource::Local(path);
    }
    Ok(())
}

/// Which source of a component a download is for.
enum Slot {
    Own,
    Dependency(String),
    Middleware(usize),
}

/// A registry client with the stored credentials (wisp's own, then Docker's).
pub(crate) fn registry_client(insecure: bool) -> Result<RegistryClient> {
    if insecure {
        eprintln!(
            "warning: --insecure: talking plain HTTP to the registry; content and credentials are not protected in transit"
        );
    }
    Ok(RegistryClient::new(ClientOptions {
        insecure,
        ..ClientOptions::default()
    })?)
}

/// A flag's value in seconds, which must be positive.
pub(crate) fn seconds(flag: &str, value: f64) -> Result<Duration> {
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

/// `--metrics-listen`'s listener (bound before any compile work, so a taken port is
/// reported first) and the registry the engine will record into.
pub(crate) async fn bind_metrics(
    address: Option<SocketAddr>,
) -> Result<Option<(tokio::net::TcpListener, wisp_metrics::Metrics)>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "--metrics-listen {address} is in use; pass another port (127.0.0.1:0 picks a free one)"
            ),
            _ => anyhow::Error::new(err).context(format!("--metrics-listen: cannot listen on {address}")),
        })?;
    Ok(Some((listener, wisp_metrics::Metrics::new())))
}

/// Answers `GET /metrics` and the dashboard on `listener` for the rest of the process,
/// and says where.
pub(crate) fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: wisp_metrics::Metrics,
    json: bool,
) -> Result<()> {
    let address = listener
        .local_addr()
        .context("cannot read the metrics listener's address")?;
    if json {
        tracing::info!(event = "metrics", address = %address, "metrics at http://{address}/metrics");
    } else {
        eprintln!("Metrics: http://{address}/metrics");
        eprintln!("Dashboard: http://{address}/dashboard");
    }
    tokio::spawn(wisp_metrics::serve(
        listener,
        metrics,
        std::future::pending(),
    ));
    Ok(())
}

/// SIGINT and SIGTERM, listened for from the moment this is made. Installed before the
/// server says it is listening: a signal that arrives before the handler exists takes its
/// default action and kills the process with no drain and a failed exit status.
pub(crate) struct ShutdownSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Starts listening for SIGINT and SIGTERM (inside the async runtime).
    pub(crate) fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())
                .context("cannot listen for SIGINT (which stops the server)")?,
            terminate: signal(SignalKind::terminate())
                .context("cannot listen for SIGTERM (which stops the server)")?,
        })
    }

    /// Waits for the first SIGINT or SIGTERM and logs that the drain begins.
    pub(crate) async fn recv(&mut self) {
        self.next().await;
        tracing::info!(
            event = "stopping",
            "Shutting down: no new connections; waiting for in-flight requests."
        );
    }
}

impl ShutdownSignal {
    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Longest a stopping `wisp up` or `wisp node` waits for optimised code still compiling.
/// Bounded so a supervisor's stop timeout (Kubernetes waits 30 s by default) still sees a
/// clean exit; a JavaScript or Python runtime compiles in well under it here.
const FINISH_OPTIMISING_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Once the server has stopped: lets optimised code still compiling in the background (a
/// component that started on baseline code) finish, so the compile cache has it at the
/// next start. Another SIGINT or SIGTERM skips the wait.
pub(crate) async fn finish_optimising(
    engine: &wisp_engine::WispEngine,
    shutdown: &mut ShutdownSignal,
) {
    let pending = engine.optimising();
    if pending == 0 {
        return;
    }
    tracing::info!(
        "finishing the optimised code of {pending} component(s) for the compile cache (up to {}s; stop again to skip)",
        FINISH_OPTIMISING_WITHIN.as_secs()
    );
    // Waited for without a blocking thread: the runtime's end would wait for one.
    let finished = tokio::select! {
        done = tokio::time::timeout(FINISH_OPTIMISING_WITHIN, engine.optimised_code_done()) => done.is_ok(),
        () = shutdown.next() => false,
    };
    if !finished {
        tracing::info!(
            "stopped before the optimised code was cached; the next start compiles it again"
        );
    }
}

/// Raises the soft open-file limit to the hard limit (a server needs a descriptor per
/// connection; the soft limit is often 1024) and returns the limit now in force.
pub(crate) fn descriptor_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), maximum) = (limit.current, limit.maximum) else {
        // Unlimited: the connection cap's own default applies.
        return u64::MAX;
    };
    let Some(maximum) = maximum else {
        return current;
    };
    if current < maximum {
        let raised = rustix::process::Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return maximum,
            Err(err) => tracing::debug!("cannot raise the open-file limit to {maximum}: {err}"),
        }
    }
    current
}

/// Reloads each certificate on every SIGHUP from now on: new connections get the new
/// ones, open connections keep theirs, and a file that does not load leaves the running
/// one in place. Called before the addresses are printed, so a SIGHUP after them reloads
/// instead of ending the process.
pub(crate) fn reload_tls_on_sighup(configs: Vec<wisp_trigger_http::TlsConfig>) -> Result<()> {
    if configs.is_empty() {
        return Ok(());
    }
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP (which reloads the TLS certificates)")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            for tls in &configs {
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        event = "tls_reloaded",
                        "SIGHUP: reloaded the TLS certificate from {}",
                        tls.files().0.display()
                    ),
                    Err(e) => tracing::error!(
                        event = "tls_reload_failed",
                        "SIGHUP: cannot reload the TLS certificate, still serving the previous one: {e}"
                    ),
                }
            }
        }
    });
    Ok(())
}

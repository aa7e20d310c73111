//! The shim itself: runwasi's [`Shim`] and [`Sandbox`] around Wisp's runtime. containerd
//! starts `containerd-shim-wisp-v1` per container; runwasi sets the container up (youki's
//! libcontainer: namespaces, cgroups, its root filesystem, stdio to the container's log)
//! and calls [`Sandbox::run_wasi`] in the container's process, which loads the app and
//! serves it as `wisp up` does until SIGTERM.

use crate::settings::{ContainerEnv, MANIFEST_PATH, RUNTIME_CONFIG_PATH, ShimSettings};
use crate::source::{self, LAYER_MEDIA_TYPES, Layer};
use anyhow::{Context as _, Result};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source, WasmLayer};
use containerd_shim_wasm::shim::{Compiler, Shim, Version, version};
use std::hash::Hash;
use std::path::Path;
use wisp_engine::{PrecompiledCode, Precompiler};
use wisp_host::{AppPaths, RuntimeConfig};
use wisp_runtime::{AppSettings, RunningApp, Runtime};
use wisp_trigger_http::ServerConfig;

/// `containerd-shim-wisp-v1`: runtime type `io.containerd.wisp.v1`.
pub struct WispShim;

/// One container's app.
#[derive(Default, Clone, Copy)]
pub struct WispSandbox;

/// In the shim process (not the container's, which serves): once per process, from its
/// first container's creation, unmaps every read-only page of the binary
/// (`wisp_engine::release_read_only_pages`) and trims the heap once the process has been
/// idle for 7 s (after precompiling, if it did), and again after each further 30 s idle
/// if containerd's calls (state, stats, a `delete`) faulted enough of its code back in
/// from the page cache meanwhile. runwasi's zygotes are released at the same points
/// ([`crate::zygotes`]).
fn release_pages_when_settled() {
    // The container's process settles [`wisp_engine::SETTLE_AFTER`] after its start, a
    // little after this process's first container creation: a container's zygote is paged
    // out after that, once the pages it shared with the container are its own.
    const SHIM_SETTLE_AFTER: std::time::Duration =
        wisp_engine::SETTLE_AFTER.saturating_add(std::time::Duration::from_secs(2));
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        wisp_engine::release_read_only_pages_when_idle(
            SHIM_SETTLE_AFTER,
            wisp_engine::IDLE_RELEASE_AFTER,
            crate::zygotes::release_zygote_pages,
        );
    });
}

impl Shim for WispShim {
    type Sandbox = WispSandbox;

    fn name() -> &'static str {
        "wisp"
    }

    fn version() -> Version {
        version!()
    }

    fn supported_layers_types() -> &'static [&'static str] {
        LAYER_MEDIA_TYPES
    }

    #[expect(refining_impl_trait, reason = "the shim's own compiler type")]
    async fn compiler() -> Option<WispCompiler> {
        // Runwasi asks for the compiler once per shim process, at its first container's
        // creation: from here on the process sets that container up and then waits on it.
        release_pages_when_settled();
        let config = wisp_engine::EngineConfig::default();
        match Precompiler::new(&config) {
            Ok(compiler) => Some(WispCompiler {
                cache_key: compiler.cache_key(),
                config,
            }),
            Err(error) => {
                // Containers still run; they compile when they start.
                log::warn!("cannot create the precompiler: {error}");
                None
            }
        }
    }
}

/// runwasi's precompile hook: when a container is created, containerd hands each of its
/// image's wasm layers over once, and keeps what this returns in its content store, keyed
/// by [`Compiler::cache_key`]; later containers of the image get it instead of the layer,
/// and do not run Cranelift (see [`container_layer`]).
///
/// Runwasi keeps the compiler for the shim process's life, which is the pod's: it holds
/// only the engine's settings, and an engine exists only while layers compile, so what
/// Cranelift and the engine allocated is freed whole (kept, the engine pinned about
/// 2.5 MiB of fragmented heap in the shim process of the pod that compiled).
pub struct WispCompiler {
    config: wisp_engine::EngineConfig,
    cache_key: u64,
}

impl Compiler for WispCompiler {
    fn cache_key(&self) -> impl Hash {
        self.cache_key
    }

    async fn compile(&self, layers: &[WasmLayer]) -> Result<Vec<Option<Vec<u8>>>> {
        let compiler = Precompiler::new(&self.config)?;
        if compiler.cache_key() != self.cache_key {
            // Cannot happen with the same settings in one process; the packages would be
            // stored under a key that does not describe them.
            anyhow::bail!("the engine's compatibility key changed while the shim ran");
        }
        // One answer per layer, in order; `None` keeps a layer as it is (the locked app,
        // data and archives).
        let packages = layers
            .iter()
            .map(|layer| {
                if !source::is_component_media_type(layer.config.media_type().as_ref()) {
                    return None;
                }
                let digest = layer.config.digest().to_string();
                if layer.precompiled {
                    // Shared with an image precompiled before: already a package.
                    return Some(layer.layer.clone());
                }
                log::info!("precompiling layer {digest}");
                match compiler.package(&digest, &layer.layer) {
                    Ok(package) => Some(package),
                    // The container gets the layer as it is; its start reports the reason
                    // in the container's log.
                    Err(error) => {
                        log::warn!("cannot precompile layer {digest}: {error}");
                        None
                    }
                }
            })
            .collect();
        drop(compiler);
        // The shim process outlives the compile by the container's lifetime; what
        // Cranelift and the engine freed goes back to the system.
        wisp_engine::release_free_heap();
        Ok(packages)
    }
}

impl Sandbox for WispSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        let env = ContainerEnv::from_entries(ctx.envs());
        let settings = ShimSettings::from_env(&env);
        match &settings {
            Ok(settings) => init_logging(&settings.log_filter, settings.json_log),
            Err(_) => init_logging("info", false),
        }
        let served = match settings {
            Ok(settings) => serve(ctx, &env, &settings).await,
            Err(error) => Err(error.into()),
        };
        match served {
            Ok(()) => Ok(0),
            Err(error) => {
                // The container's log is where a user looks (runwasi logs an error only to
                // containerd's), and status 1 says "failed" where runwasi's 137 would say
                // "killed".
                tracing::error!("{error:#}");
                Ok(1)
            }
        }
    }

    /// Any image: the app is checked when it starts, with messages that say what is wrong.
    /// (runwasi's default wants arg0 to be a wasm file, which a Spin image does not have.)
    async fn can_handle(&self, _ctx: &impl RuntimeContext) -> Result<()> {
        Ok(())
    }
}

/// The app's log on the container's stderr: human lines (the message, as `wisp up` prints
/// them, with a timestamp `ctr run` would not add), or with `json` one JSON object per
/// event, as `wisp up --json` writes them.
fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second container in the same process keeps the first subscriber (`try_init`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed log pipe must not take the app down.
        .log_internal_errors(false)
        .with_ansi(false);
    if json {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init();
    } else {
        let _ = builder
            .with_target(false)
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(
                |writer, field, value| match field.name() {
                    "message" => write!(writer, "{value:?}"),
                    _ => Ok(()),
                },
            ))
            .try_init();
    }
}

/// One layer as containerd handed it over; a precompiled one (see [`WispCompiler`]) gives
/// back its source, checked against the layer's digest, its code now in `engine`'s cache.
fn container_layer<'a>(
    engine: &wisp_engine::WispEngine,
    layer: &'a WasmLayer,
) -> Result<Layer<'a>> {
    let digest = layer.config.digest().to_string();
    let bytes = match layer.precompiled {
        false => layer.layer.as_slice(),
        true => {
            let (source, code) = engine
                .unpack_precompiled(&layer.layer)
                .with_context(|| format!("layer {digest} came precompiled from containerd"))?;
            let found = wisp_app::sha256_digest(source);
            if found != digest {
                anyhow::bail!(
                    "the precompiled code containerd holds for layer {digest} was made from {found}; remove the image (`ctr images rm`) and pull it again"
                );
            }
            match code {
                PrecompiledCode::Cached => {
                    tracing::info!("layer {digest}: using the code containerd precompiled")
                }
                PrecompiledCode::Foreign => tracing::warn!(
                    "layer {digest}: the precompiled code was made by another build or settings of the engine; compiling"
                ),
                PrecompiledCode::Damaged => tracing::warn!(
                    "layer {digest}: the precompiled code failed its checksum; compiling"
                ),
                PrecompiledCode::NoCache => {}
            }
            source
        }
    };
    Ok(Layer {
        media_type: layer.config.media_type().to_string(),
        digest,
        bytes,
    })
}

/// Loads the container's app and serves it until SIGTERM or SIGINT, then drains.
async fn serve(
    ctx: &impl RuntimeContext,
    env: &ContainerEnv,
    settings: &ShimSettings,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen for the stop signal before anything slow: kubelet may stop a pod at once.
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;

    let state_dir = &settings.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let tracing_config =
        wisp_telemetry::TraceConfig::from_vars(|name| env.get(name).map(str::to_owned))
            .context("OpenTelemetry tracing is misconfigured; fix or unset the OTEL_* variable")?;
    let tracing = match tracing_config {
        Some(config) => wisp_telemetry::Tracing::start(config)?,
        None => wisp_telemetry::Tracing::disabled(),
    };
    // First: precompiled layers put their code into its compile cache.
    let engine = wisp_engine::WispEngine::new(settings.engine.clone())
        .context("cannot create the wasm engine")?
        .with_tracing(tracing);

    let layers = match ctx.entrypoint().source {
        Source::Oci(layers) => layers
            .iter()
            .map(|layer| container_layer(&engine, layer))
            .collect::<Result<Vec<_>>>()?,
        Source::File(_) => Vec::new(),
    };
    let resolve = wisp_app::ResolveOptions {
        max_source_bytes: settings.engine.max_component_bytes,
        ..Default::default()
    };
    let cache = wisp_oci::Cache::new(state_dir.join("layers"));
    let mut locked = source::locked_app(&layers, Path::new(MANIFEST_PATH), &cache, &resolve)
        .await
        .context("cannot read the container's app")?;
    locked
        .retain_components(&settings.retain_components)
        .context(crate::settings::COMPONENTS_TO_RETAIN_ENV)?;

    let mut runtime_config = match Path::new(RUNTIME_CONFIG_PATH).is_file() {
        true => RuntimeConfig::from_file(Path::new(RUNTIME_CONFIG_PATH))?,
        false => RuntimeConfig::default(),
    };
    runtime_config.environment =
        Some(env.for_variables(locked.variables.keys().map(String::as_str)));
    let from_manifest = layers.is_empty();
    let paths = AppPaths {
        state_dir: state_dir.join("state"),
        // A plain image's `.env` sits beside its `/spin.toml`.
        app_dir: from_manifest.then(|| Path::new("/").to_path_buf()),
        files_dir: None,
    };
    let runtime = Runtime::with_trigger_types(
        engine,
        Runtime::default_trigger_types(wisp_trigger_http::HttpTriggerType {
            default_body_limit: wisp_trigger_http::DEFAULT_MAX_REQUEST_BODY,
        }),
    );
    let serves_http = locked.triggers_of_type("http").next().is_some();
    let listener = match serves_http {
        true => Some(
            tokio::net::TcpListener::bind(settings.listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} ({}); set SPIN_HTTP_LISTEN_ADDR to a free address",
                        settings.listen,
                        crate::settings::LISTEN_ADDR_ENV
                    )
                })?,
        ),
        false => None,
    };
    let app_name = locked.metadata.name.clone();
    let app_settings = AppSettings {
        runtime_config,
        paths,
        limits: Default::default(),
    };
    let generation = runtime
        .load(locked, &app_settings)
        .await
        .context("cannot load the app")?;
    let components: Vec<String> = generation
        .app()
        .locked()
        .components
        .iter()
        .map(|c| c.id.clone())
        .collect();
    // What loading freed goes back to the system before the pod settles; the pod loads
    // no other app, so the linker goes too.
    runtime.engine().release_linkers();
    let released = wisp_engine::release_free_heap();
    tracing::debug!(
        "returned {} KiB of freed heap after loading",
        released >> 10
    );
    let engine = runtime.engine();
    tracing::info!(
        "Engine: {} instances max, {} MiB memory cap per instance, {} MiB memory budget for all (WISP_MEMORY_BUDGET_MB), {:?} request deadline",
        engine.config().max_instances,
        engine.config().memory_limit >> 20,
        engine.memory_budget() >> 20,
        engine.config().request_timeout,
    );
    tracing::info!(
        app = %app_name,
        components = %components.join(","),
        "loaded {} component(s)",
        components.len()
    );
    let server = ServerConfig {
        shutdown_grace: settings.shutdown_grace,
        ..ServerConfig::default()
    };
    // The code that set the container up and loaded the app will not run again: unmapped
    // before the first connection is accepted, so no request is served beside it.
    wisp_engine::release_startup_code();
    let running = RunningApp::start(generation, listener, server);
    if serves_http {
        // Tests and operators read this line to know the pod serves.
        tracing::info!("Listening on http://{}", settings.listen);
    }
    wisp_engine::release_read_only_pages_when_idle(
        wisp_engine::SETTLE_AFTER,
        wisp_engine::IDLE_RELEASE_AFTER,
        || {},
    );
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!(
        "Shutting down: no new connections; waiting up to {:?} for in-flight requests.",
        settings.shutdown_grace
    );
    running.shutdown().await;
    tracing::info!("Stopped.");
    Ok(())
}

//! `wisp watch`: build, serve, and on every change rebuild and reload in place.
//!
//! The listener stays bound for the whole session. A reload loads the new version next
//! to the running one and then swaps which version new requests go to
//! ([`RunningApp::reload`]); requests already running finish on the old version, which is
//! dropped when the last of them is answered. A failed build or load leaves the running
//! version serving and prints why.
//!
//! Changes are found by polling (every `--poll-ms`) the files the app depends on, walked
//! with `.gitignore` rules applied: each component's `build.watch` globs (relative to
//! its `workdir`), the `source` and `files` of components without a build, the local
//! files of dependencies and middleware, and the manifest. A change is acted on once the
//! files have been still for `--poll-ms`.

use super::build;
use super::serve::{self, Settings};
use super::shared::{ShutdownSignal, resolve_manifest_with};
use super::up::UpArgs;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use wisp_host::AppPaths;
use wisp_manifest::{FileMount, Manifest};
use wisp_runtime::{Generation, RunningApp, Runtime, until};

/// Arguments of `wisp watch`: those of `wisp up`, plus the polling interval.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp watch\n  wisp watch -f examples/kv-counter/spin.toml --listen 127.0.0.1:3001"
)]
pub struct WatchArgs {
    #[command(flatten)]
    up: UpArgs,

    /// How often to look for changes, and how long files must be still before a
    /// rebuild, in milliseconds.
    #[arg(long, env = "WISP_WATCH_POLL_MS", default_value_t = 250)]
    poll_ms: u64,
}

impl WatchArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        self.up.json()
    }
}

/// Directories never walked: build outputs and dependencies, whatever `.gitignore` says.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", ".wisp", ".git", "__pycache__"];

/// Runs `wisp watch`.
pub fn run(args: WatchArgs) -> Result<()> {
    if args.up.from.is_some() {
        bail!(
            "wisp watch works on a manifest; use wisp up --from to serve a component or a registry app"
        );
    }
    let manifest_path = std::path::absolute(build::manifest_path(args.up.manifest.as_deref()))
        .context("cannot resolve the manifest path")?;
    let mut settings = Settings::from_args(&args.up)?;
    let poll = Duration::from_millis(args.poll_ms.max(10));
    let json = args.up.json();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(super::RuntimeFailure::wrap)?;
    runtime.block_on(async move {
        // The first version must build and load; later failures keep it serving. The
        // files are read before the build, so a save during the build or the load (or as
        // soon as "watching" shows) is seen.
        let profile = args.up.profile.as_deref();
        let mut spec = WatchSpec::read(&manifest_path, profile)?;
        let before_build = spec.snapshot();
        build::build(&manifest_path, &[], json, profile)?;
        let mut follow_up = false;
        let mut baseline = next_baseline(before_build, spec.snapshot(), &mut follow_up);
        let (mut locked, app_dir) =
            resolve_manifest_with(Some(&manifest_path), &settings.resolve, None, false)?;
        settings.guest_output = super::up::apply_app_flags(&mut locked, &args.up)?;
        let paths = AppPaths {
            state_dir: args
                .up
                .state_dir
                .clone()
                .unwrap_or_else(|| app_dir.join(".wisp")),
            app_dir: Some(app_dir.clone()),
            files_dir: args.up.temp.clone(),
        };
        let listener =
            super::up::bind_listen(args.up.listen_address()?, args.up.find_free_port).await?;
        let address = listener
            .local_addr()
            .context("cannot read the listening address")?;
        super::up::seed_stores(&args.up, &settings, &paths).await?;
        let metrics = super::shared::bind_metrics(args.up.metrics_listen).await?;
        if let Some((_, registry)) = &metrics {
            settings.metrics = registry.clone();
        }
        let wisp = settings.runtime()?;
        let generation = serve::load(&wisp, locked, &settings, paths).await?;
        let mut shutdown = ShutdownSignal::install()?;
        super::up::reload_tls_on_sighup(&settings)?;
        serve::print_summary(&wisp, &generation, &settings, Some(address), json);
        if let Some((listener, registry)) = metrics {
            super::shared::serve_metrics(listener, registry, json)?;
        }
        if json {
            tracing::info!(event = "watching", "watching for changes");
        } else {
            eprintln!("Watching for changes (Ctrl+C to stop).");
        }

        let (stop, stopped) = watch::channel(false);
        // Handed back once it fired: a second signal skips the wait for optimised code.
        let signals = tokio::spawn(async move {
            shutdown.recv().await;
            let _ = stop.send(true);
            shutdown
        });
        // The version serving: optimised code still compiling for it is only compiled
        // while some loaded copy of its component lives.
        let mut loaded = generation.clone();
        let mut running = RunningApp::start(generation, Some(listener), settings.server.clone());

        loop {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = until(stopped.clone()) => break,
            }
            let mut now = spec.snapshot();
            if now == baseline {
                continue;
            }
            // Debounce: act once the files have been still for one interval.
            loop {
                tokio::time::sleep(poll).await;
                let again = spec.snapshot();
                if again == now {
                    break;
                }
                now = again;
            }
            let changed = changed_files(&baseline, &now);
            let rebuild = spec.components_to_build(&changed);
            if json {
                // Every file, not the first few that the human line shows.
                let files: Vec<String> = changed
                    .iter()
                    .map(|p| {
                        p.strip_prefix(&spec.root)
                            .unwrap_or(p)
                            .display()
                            .to_string()
                    })
                    .collect();
                tracing::info!(
                    event = "changed",
                    files = %files.join(", "),
                    rebuild = %rebuild.join(","),
                    "files changed"
                );
            } else {
                eprintln!(
                    "Changed: {}{}",
                    shown(&changed, &spec.root),
                    if rebuild.is_empty() {
                        String::new()
                    } else {
                        format!("; rebuilding {}", rebuild.join(", "))
                    }
                );
            }
            let started = Instant::now();
            let reloaded = reload(&manifest_path, &rebuild, &wisp, &settings, &args.up).await;
            match reloaded {
                Ok((generation, new_spec)) => {
                    // From here new requests go to the new version; running ones finish
                    // on the old, which is dropped with its last request.
                    wisp.forget_removed_components(&generation);
                    loaded = generation.clone();
                    running.reload(generation).await;
                    if json {
                        tracing::info!(
                            event = "reloaded",
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            address = %address,
                            "reloaded"
                        );
                    } else {
                        eprintln!(
                            "Reloaded in {:.0?}; serving {}://{address}",
                            started.elapsed(),
                            serve::scheme(&settings.server)
                        );
                    }
                    spec = new_spec;
                }
                Err(err) if json => {
                    tracing::error!(
                        event = "reload_failed",
                        error = %format!("{err:#}"),
                        "still serving the last good version; fix the problem and save again"
                    );
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    for cause in err.chain().skip(1) {
                        eprintln!("  caused by: {cause}");
                    }
                    eprintln!(
                        "Still serving the last good version; fix the problem and save again."
                    );
                }
            }
            baseline = next_baseline(now, spec.snapshot(), &mut follow_up);
        }
        running.shutdown().await;
        if let Ok(mut shutdown) = signals.await {
            super::shared::finish_optimising(wisp.engine(), &mut shutdown).await;
        }
        drop(loaded);
        if json {
            tracing::info!(event = "stopped", "Stopped.");
        } else {
            eprintln!("Stopped.");
        }
        Ok(())
    })
}

/// The baseline after a round that started from the files as they were in `before`. A
/// difference in `after` is a save made during the build or load, or a file the build
/// itself wrote: it gets one more round. A difference after that follow-up round is
/// taken as the build's own output, so a build that rewrites its watched inputs cannot
/// make the watch loop.
fn next_baseline(before: Snapshot, after: Snapshot, follow_up: &mut bool) -> Snapshot {
    if after != before && !*follow_up {
        *follow_up = true;
        before
    } else {
        *follow_up = false;
        after
    }
}

/// Rebuilds `rebuild` (component ids), then loads the app again.
async fn reload(
    manifest_path: &Path,
    rebuild: &[String],
    wisp: &Runtime,
    settings: &Settings,
    args: &UpArgs,
) -> Result<(Arc<Generation>, WatchSpec)> {
    if !rebuild.is_empty() {
        let manifest_path = manifest_path.to_path_buf();
        let rebuild = rebuild.to_vec();
        let json = args.json();
        let profile = args.profile.clone();
        tokio::task::spawn_blocking(move || {
            build::build(&manifest_path, &rebuild, json, profile.as_deref())
        })
        .await
        .context("the build task failed")?
        .context("the build failed")?;
    }
    let spec = WatchSpec::read(manifest_path, args.profile.as_deref())?;
    let (mut locked, app_dir) =
        resolve_manifest_with(Some(manifest_path), &settings.resolve, None, false)?;
    super::up::apply_app_flags(&mut locked, args)?;
    let paths = AppPaths {
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| app_dir.join(".wisp")),
        app_dir: Some(app_dir),
        files_dir: args.temp.clone(),
    };
    let generation = serve::load(wisp, locked, settings, paths)
        .await
        .context("the new version did not load")?;
    Ok((generation, spec))
}

/// What to watch, read from the manifest.
struct WatchSpec {
    root: PathBuf,
    /// Files watched by path: the manifest, the sources of components without a build,
    /// and the local files of dependencies and middleware (they may live outside the app
    /// directory).
    direct: Vec<PathBuf>,
    components: Vec<ComponentWatch>,
}

struct ComponentWatch {
    id: String,
    /// Whether a change runs the build (else it only reloads).
    builds: bool,
    /// Directory the globs are relative to.
    base: PathBuf,
    patterns: Vec<glob::Pattern>,
}

/// Path → (modified time, length) of every watched file.
type Snapshot = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

impl WatchSpec {
    fn read(manifest_path: &Path, profile: Option<&str>) -> Result<WatchSpec> {
        let manifest = super::shared::parse_manifest(manifest_path, profile)?;
        let root = manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let components = component_watches(&manifest, &root)?;
        let mut direct = vec![manifest_path.to_path_buf()];
        direct.extend(
            manifest
                .components
                .values()
                .filter(|c| c.build.is_none())
                .filter_map(|c| c.source.local().map(|source| root.join(source))),
        );
        let composed = (manifest.components.values())
            .flat_map(|c| c.dependencies.values().chain(&c.middleware))
            .filter_map(|d| d.source.local().map(|source| root.join(source)));
        for path in composed {
            if !direct.contains(&path) {
                direct.push(path);
            }
        }
        Ok(WatchSpec {
            root,
            direct,
            components,
        })
    }

    fn snapshot(&self) -> Snapshot {
        let mut files = Snapshot::new();
        let stat = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        for path in &self.direct {
            if let Some(meta) = stat(path) {
                files.insert(path.clone(), meta);
            }
        }
        let walker = ignore::WalkBuilder::new(&self.root)
            .hidden(true)
            .git_ignore(true)
            .require_git(false)
            .filter_entry(|entry| {
                !(entry.file_type().is_some_and(|t| t.is_dir())
                    && SKIPPED_DIRS.contains(&entry.file_name().to_string_lossy().as_ref()))
            })
            .build();
        for entry in walker.flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            if self.components.iter().any(|c| c.matches(path))
                && let Some(meta) = stat(path)
            {
                files.insert(path.to_path_buf(), meta);
            }
        }
        files
    }

    /// The components to rebuild for `changed` files: those with a build whose globs
    /// match one of them.
    fn components_to_build(&self, changed: &[PathBuf]) -> Vec<String> {
        self.components
            .iter()
            .filter(|c| c.builds && changed.iter().any(|path| c.matches(path)))
            .map(|c| c.id.clone())
            .collect()
    }
}

impl ComponentWatch {
    fn matches(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.base) else {
            return false;
        };
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        self.patterns
            .iter()
            .any(|p| p.matches_path_with(relative, options))
    }
}

fn component_watches(manifest: &Manifest, root: &Path) -> Result<Vec<ComponentWatch>> {
    let mut watches = Vec::new();
    // A component copied for a trigger's middleware is built and watched as the one it copies.
    let own = manifest
        .components
        .iter()
        .filter(|(_, c)| c.copy_of.is_none());
    for (id, component) in own {
        let (builds, base, globs) = match &component.build {
            Some(build) => (
                true,
                build
                    .workdir
                    .as_ref()
                    .map_or_else(|| root.to_path_buf(), |dir| root.join(dir)),
                build.watch.clone(),
            ),
            // Without a build, the component's own inputs trigger a reload.
            None => {
                // A url source never changes: its digest pins it.
                let mut globs: Vec<String> = component
                    .source
                    .local()
                    .map(|source| source.to_string_lossy().into_owned())
                    .into_iter()
                    .collect();
                for file in &component.files {
                    match file {
                        FileMount::Pattern(pattern) => globs.push(pattern.clone()),
                        FileMount::Placement { source, .. } => {
                            let source = source.to_string_lossy();
                            globs.push(source.to_string());
                            globs.push(format!("{}/**/*", source.trim_end_matches('/')));
                        }
                    }
                }
                (false, root.to_path_buf(), globs)
            }
        };
        let patterns = globs
            .iter()
            .map(|g| {
                glob::Pattern::new(g.trim_start_matches("./")).with_context(|| {
                    format!("component `{id}`: watch pattern {g:?} is not a valid glob")
                })
            })
            .collect::<Result<_>>()?;
        watches.push(ComponentWatch {
            id: id.clone(),
            builds,
            base,
            patterns,
        });
    }
    Ok(watches)
}

fn changed_files(before: &Snapshot, after: &Snapshot) -> Vec<PathBuf> {
    let mut changed: Vec<PathBuf> = after
        .iter()
        .filter(|(path, meta)| before.get(*path) != Some(meta))
        .map(|(path, _)| path.clone())
        .collect();
    changed.extend(before.keys().filter(|p| !after.contains_key(*p)).cloned());
    changed
}

fn shown(paths: &[PathBuf], root: &Path) -> String {
    const MAX_SHOWN: usize = 5;
    let mut names: Vec<String> = paths
        .iter()
        .take(MAX_SHOWN)
        .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
        .collect();
    if paths.len() > MAX_SHOWN {
        names.push(format!("and {} more", paths.len() - MAX_SHOWN));
    }
    names.join(", ")
}

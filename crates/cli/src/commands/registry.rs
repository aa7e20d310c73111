//! `wisp registry login | push | pull`: apps as Spin-compatible OCI artifacts.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use wisp_oci::{Cache, ProgressEvent, Reference};

/// Arguments of `wisp registry`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  echo \"$TOKEN\" | wisp registry login localhost:5000 -u me --password-stdin --insecure\n  wisp registry push localhost:5000/hello:v1 -f examples/hello/spin.toml --insecure\n  wisp registry pull localhost:5000/hello:v1 --insecure\n  wisp up --from localhost:5000/hello:v1 --insecure"
)]
pub struct RegistryArgs {
    #[command(subcommand)]
    command: RegistryCommand,
}

impl RegistryArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        match &self.command {
            RegistryCommand::Login(_) => false,
            RegistryCommand::Push(args) => args.json,
            RegistryCommand::Pull(args) => args.json,
        }
    }
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Check credentials against a registry and store them for push and pull.
    Login(LoginArgs),
    /// Push an app (its spin.toml) to a registry; prints the manifest digest.
    Push(PushArgs),
    /// Pull an app into the local content cache; prints the manifest digest.
    Pull(PullArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  echo \"$TOKEN\" | wisp registry login registry.example.com -u me --password-stdin\n  wisp registry login localhost:5000 -u me --password-stdin --insecure < password.txt"
)]
struct LoginArgs {
    /// Registry host (and port), e.g. `localhost:5000` or `registry.example.com`.
    registry: String,
    /// User name.
    #[arg(short = 'u', long)]
    username: String,
    /// Read the password from stdin (keeps it out of shell history and `ps`).
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
    /// Password (prefer --password-stdin).
    #[arg(
        short = 'p',
        long,
        env = "WISP_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Talk plain HTTP to the registry (local registries only).
    #[arg(short = 'k', long, env = "WISP_REGISTRY_INSECURE")]
    insecure: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp registry push registry.example.com/me/hello:v1\n  wisp registry push localhost:5000/hello:v1 -f examples/hello/spin.toml --insecure --json"
)]
struct PushArgs {
    /// Where to push: `registry/repository:tag`.
    reference: String,
    /// The app manifest (spin.toml), or a directory containing one.
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "from",
        env = "WISP_MANIFEST"
    )]
    manifest: Option<PathBuf>,
    /// Run the components' build commands first (like `wisp build`).
    #[arg(long)]
    build: bool,

    /// Push (and with --build, build) with this profile in place where a component
    /// defines it (`[component.<id>.profile.<name>]`).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Add an annotation to the pushed manifest (`KEY=VALUE`, repeatable); it wins over the
    /// ones taken from the app (title, version, description, authors).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = key_value)]
    annotations: Vec<(String, String)>,
    /// Talk plain HTTP to the registry (local registries only).
    #[arg(short = 'k', long, env = "WISP_REGISTRY_INSECURE")]
    insecure: bool,
    /// Print one JSON object (reference, digest, blob counts) on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp registry pull registry.example.com/me/hello:v1\n  wisp registry pull localhost:5000/hello@sha256:<digest> --insecure --json"
)]
struct PullArgs {
    /// What to pull: `registry/repository:tag` or `registry/repository@sha256:…`.
    reference: String,
    /// Talk plain HTTP to the registry (local registries only).
    #[arg(short = 'k', long, env = "WISP_REGISTRY_INSECURE")]
    insecure: bool,
    /// Content cache directory; default `$XDG_CACHE_HOME/wisp/oci`.
    #[arg(long, env = "WISP_OCI_CACHE_DIR")]
    oci_cache_dir: Option<PathBuf>,
    /// Print one JSON object (reference, digest, components) on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `wisp registry …`.
pub fn run(args: RegistryArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            RegistryCommand::Login(args) => login(args).await,
            RegistryCommand::Push(args) => push(args).await,
            RegistryCommand::Pull(args) => pull(args).await,
        }
    })
}

async fn login(args: LoginArgs) -> Result<()> {
    let password = match (args.password_stdin, args.password) {
        (true, _) => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from stdin")?;
            password.trim_end_matches(['\r', '\n']).to_owned()
        }
        (false, Some(password)) => password,
        (false, None) => {
            bail!("give the password with --password-stdin (or -p / WISP_REGISTRY_PASSWORD)")
        }
    };
    if args.insecure {
        eprintln!(
            "warning: --insecure: sending the credentials to {} over plain HTTP",
            args.registry
        );
    }
    wisp_oci::login(&args.registry, &args.username, &password, args.insecure).await?;
    eprintln!("Logged in to {} as {}.", args.registry, args.username);
    Ok(())
}

/// `KEY=VALUE`, split at the first `=`.
pub(crate) fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

fn reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>().with_context(|| {
        format!("{text:?} is not a registry reference; write registry/repository:tag")
    })
}

async fn push(args: PushArgs) -> Result<()> {
    let reference = reference(&args.reference)?;
    if args.build {
        super::build::build_manifest(args.manifest.as_deref(), args.json, args.profile.as_deref())?;
    }
    let options = wisp_app::ResolveOptions {
        profile: args.profile.clone(),
        ..Default::default()
    };
    let (locked, _) =
        super::shared::resolve_manifest_with(args.manifest.as_deref(), &options, None, false)?;
    let client = super::shared::registry_client(args.insecure)?;
    let progress = Progress::new();
    let progress = |event: ProgressEvent| progress.show(event);
    let annotations = args.annotations.into_iter().collect();
    let result =
        wisp_oci::push_annotated(&client, &locked, &reference, &annotations, &progress).await?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "reference": args.reference,
                "digest": result.digest,
                "uploaded_blobs": result.uploaded_blobs,
                "skipped_blobs": result.skipped_blobs,
            })
        );
    } else {
        eprintln!(
            "Pushed {} ({} blobs uploaded, {} already there).",
            args.reference, result.uploaded_blobs, result.skipped_blobs
        );
        outln!("{}", result.digest);
    }
    Ok(())
}

async fn pull(args: PullArgs) -> Result<()> {
    let reference = reference(&args.reference)?;
    let cache = Cache::new(args.oci_cache_dir.unwrap_or_else(Cache::default_root));
    let pulled = wisp_oci::pull(
        &super::shared::registry_client(args.insecure)?,
        &reference,
        &cache,
    )
    .await?;
    let components: Vec<&str> = pulled
        .locked
        .components
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "reference": args.reference,
                "digest": pulled.digest,
                "components": components,
                "cache": cache.root(),
            })
        );
    } else {
        eprintln!(
            "Pulled {} into {} (components: {}).",
            args.reference,
            cache.root().display(),
            components.join(", ")
        );
        outln!("{}", pulled.digest);
    }
    Ok(())
}

/// Blob transfer progress on stderr: a bar per upload on a terminal, one line per blob
/// otherwise (logs, CI).
struct Progress {
    bars: Option<MultiProgress>,
    uploads: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    fn new() -> Self {
        Self {
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn show(&self, event: ProgressEvent) {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match (event, &self.bars) {
            (ProgressEvent::Skipped { digest, size }, _) => {
                self.line(format!(
                    "  exists    {}  {}",
                    short(&digest),
                    human_size(size)
                ));
            }
            (ProgressEvent::Started { digest, size, .. }, Some(bars)) => {
                let bar = bars.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "  uploading {msg} [{bar:30}] {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(short(&digest).to_owned());
                uploads.insert(digest, bar);
            }
            (ProgressEvent::Started { digest, size, .. }, None) => {
                self.line(format!(
                    "  uploading {}  {}",
                    short(&digest),
                    human_size(size)
                ));
            }
            (ProgressEvent::Progress { digest, sent, .. }, _) => {
                if let Some(bar) = uploads.get(&digest) {
                    bar.set_position(sent);
                }
            }
            (ProgressEvent::Finished { digest, size }, _) => match uploads.remove(&digest) {
                Some(bar) => bar.finish_with_message(format!("{} done", short(&digest))),
                None => self.line(format!(
                    "  uploaded  {}  {}",
                    short(&digest),
                    human_size(size)
                )),
            },
        }
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

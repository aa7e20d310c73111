//! `wisp build`: runs each component's `[component.<id>.build] command`s.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wisp_manifest::Manifest;

/// Arguments of `wisp build`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp build\n  wisp build -f examples/kv-counter/spin.toml -c kv-counter"
)]
pub struct BuildArgs {
    /// The app manifest (spin.toml), or a directory containing one.
    #[arg(short = 'f', long = "file", env = "WISP_MANIFEST")]
    manifest: Option<PathBuf>,

    /// Build only this component (repeat for several); default every component with a
    /// `build` table.
    #[arg(short = 'c', long = "component")]
    components: Vec<String>,

    /// Report as JSON lines on stderr (one per step and per line of build output).
    #[arg(long)]
    json: bool,

    /// Build with this profile's commands (`[component.<id>.profile.<name>]`) where a
    /// component defines it.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
}

impl BuildArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `wisp build`.
pub fn run(args: BuildArgs) -> Result<()> {
    let path = manifest_path(args.manifest.as_deref());
    build(&path, &args.components, args.json, args.profile.as_deref())
}

/// The manifest file an `-f` argument names: a file, or `spin.toml` in a directory.
pub(crate) fn manifest_path(arg: Option<&Path>) -> PathBuf {
    let path = arg.map_or_else(|| PathBuf::from("spin.toml"), Path::to_path_buf);
    if path.is_dir() {
        path.join("spin.toml")
    } else {
        path
    }
}

/// Builds every component of the app an `-f` argument names (`--build` of `up` and
/// `registry push`).
pub(crate) fn build_manifest(arg: Option<&Path>, json: bool, profile: Option<&str>) -> Result<()> {
    build(&manifest_path(arg), &[], json, profile)
}

/// Builds the selected components of the app at `manifest_path` (all when `only` is
/// empty), in manifest order; stops at the first failing command. With `json`, progress
/// and the commands' output are structured events rather than prefixed lines.
pub(crate) fn build(
    manifest_path: &Path,
    only: &[String],
    json: bool,
    profile: Option<&str>,
) -> Result<()> {
    if !manifest_path.exists() {
        bail!(
            "no manifest at {}; pass -f path/to/spin.toml",
            manifest_path.display()
        );
    }
    let manifest = super::shared::parse_manifest(manifest_path, profile)?;
    let app_dir = std::path::absolute(manifest_path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    for id in only {
        if manifest
            .components
            .get(id)
            .is_none_or(|c| c.copy_of.is_some())
        {
            bail!(
                "-c {id}: the app has no component `{id}`; its components are {}",
                component_list(&manifest)
            );
        }
    }
    let mut built = 0;
    // A component copied for a trigger's middleware builds as the component it copies.
    let own = manifest
        .components
        .iter()
        .filter(|(_, c)| c.copy_of.is_none());
    for (id, component) in own {
        if !only.is_empty() && !only.contains(id) {
            continue;
        }
        let Some(build) = &component.build else {
            if only.contains(id) {
                bail!(
                    "component `{id}` has no [component.{id}.build] table; add `command = \"...\"` there"
                );
            }
            if json {
                tracing::info!(event = "build_skipped", component = %id, "no build command");
            } else {
                eprintln!("{id}: no build command, skipped");
            }
            continue;
        };
        let workdir = match &build.workdir {
            Some(dir) => app_dir.join(dir),
            None => app_dir.clone(),
        };
        for command in &build.commands {
            if json {
                tracing::info!(
                    event = "build_command",
                    component = %id,
                    command = %command,
                    workdir = %workdir.display(),
                    "running `{command}`"
                );
            } else {
                eprintln!("{id}: running `{command}` in {}", workdir.display());
            }
            run_command(id, command, &workdir, json)?;
        }
        built += 1;
    }
    if json {
        tracing::info!(
            event = "built",
            components = built,
            "built {built} components"
        );
    } else {
        eprintln!(
            "Built {built} component{}.",
            if built == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

fn component_list(manifest: &Manifest) -> String {
    manifest
        .components
        .values()
        .filter(|c| c.copy_of.is_none())
        .map(|c| format!("`{}`", c.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs one command through `sh -c` (as Spin does on Unix), streaming both output
/// streams line by line with `[id] ` in front (or as `build_output` events with `json`).
fn run_command(id: &str, command: &str, workdir: &Path, json: bool) -> Result<()> {
    if !workdir.is_dir() {
        bail!(
            "component `{id}`: build workdir {} does not exist; fix `workdir` in its build table",
            workdir.display()
        );
    }
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("component `{id}`: cannot start `sh -c {command:?}`"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (out, err) = if json {
        let out_id = id.to_owned();
        let err_id = id.to_owned();
        (
            std::thread::spawn(move || relay_events(stdout, &out_id, "stdout")),
            std::thread::spawn(move || relay_events(stderr, &err_id, "stderr")),
        )
    } else {
        let prefix = format!("[{id}] ");
        let out_prefix = prefix.clone();
        (
            std::thread::spawn(move || relay(stdout, &out_prefix, std::io::stdout())),
            std::thread::spawn(move || relay(stderr, &prefix, std::io::stderr())),
        )
    };
    let status = child
        .wait()
        .with_context(|| format!("component `{id}`: waiting for `{command}`"))?;
    let _ = out.join();
    let _ = err.join();
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exit code {code}"),
            None => "a signal".to_owned(),
        };
        bail!(
            "component `{id}`: build command `{command}` failed with {how}; fix the error above, then run `wisp build -c {id}`"
        );
    }
    Ok(())
}

fn relay(reader: impl Read, prefix: &str, mut sink: impl Write) {
    for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
        let mut out = Vec::with_capacity(prefix.len() + line.len() + 1);
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(&line);
        out.push(b'\n');
        let _ = sink.write_all(&out);
    }
}

/// One `build_output` event per line, so `--json` output stays one object per line.
fn relay_events(reader: impl Read, id: &str, stream: &str) {
    for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        tracing::info!(
            target: "wisp::build",
            event = "build_output",
            component = %id,
            stream,
            "{}",
            line.trim_end_matches('\r')
        );
    }
}

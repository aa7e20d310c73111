//! `wisp doctor`: checks an app and this machine, and says how to fix what is wrong.

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use wisp_engine::{EngineConfig, WispEngine};
use wisp_manifest::Manifest;
use wisp_runtime::Runtime;

/// Arguments of `wisp doctor`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp doctor\n  wisp doctor -f app/spin.toml --json\n\nExit code 1 when any finding is an error."
)]
pub struct DoctorArgs {
    /// The app manifest (spin.toml), or a directory containing one.
    #[arg(short = 'f', long = "file", env = "WISP_MANIFEST")]
    manifest: Option<PathBuf>,

    /// The address `wisp up` would listen on, checked for availability.
    #[arg(long, env = "WISP_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// One JSON object per finding, one per line, on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warning,
    Error,
}

/// One check's outcome.
#[derive(Debug, Serialize)]
struct Finding {
    level: Level,
    /// What was checked: `manifest`, `component <id>`, `toolchain`, `port`.
    subject: String,
    message: String,
    /// How to fix it; absent for `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl Finding {
    fn ok(subject: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            subject: subject.into(),
            message: message.into(),
            fix: None,
        }
    }

    fn problem(
        level: Level,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            level,
            subject: subject.into(),
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

impl DoctorArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `wisp doctor`; fails (exit 1) when any finding is an error.
pub fn run(args: DoctorArgs) -> Result<()> {
    let manifest_path = super::build::manifest_path(args.manifest.as_deref());
    let findings = check(&manifest_path, args.listen);
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings
        .iter()
        .filter(|f| f.level == Level::Warning)
        .count();
    for finding in &findings {
        if args.json {
            outln!(
                "{}",
                serde_json::to_string(finding).expect("findings serialize")
            );
        } else {
            let mark = match finding.level {
                Level::Ok => "ok   ",
                Level::Warning => "warn ",
                Level::Error => "error",
            };
            eprintln!("{mark} {}: {}", finding.subject, finding.message);
            if let Some(fix) = &finding.fix {
                eprintln!("      fix: {fix}");
            }
        }
    }
    if !args.json {
        eprintln!("{errors} error(s), {warnings} warning(s).");
    }
    if errors > 0 {
        anyhow::bail!("wisp doctor found {errors} error(s)");
    }
    Ok(())
}

fn check(manifest_path: &Path, listen: SocketAddr) -> Vec<Finding> {
    let mut findings = Vec::new();
    let manifest = match wisp_manifest::parse_file(manifest_path) {
        Ok(manifest) => {
            findings.push(Finding::ok(
                "manifest",
                format!("{} is a valid manifest", manifest_path.display()),
            ));
            manifest
        }
        Err(e) => {
            findings.push(Finding::problem(
                Level::Error,
                "manifest",
                e.to_string(),
                "fix the manifest as the hint says, then run wisp doctor again",
            ));
            return findings;
        }
    };
    let app_dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let runtime = WispEngine::new(EngineConfig {
        max_instances: 1,
        pooling: false,
        cache_dir: wisp_engine::default_cache_dir(),
        ..EngineConfig::default()
    })
    .map(Runtime::new);
    let called: std::collections::HashSet<&str> = (manifest.http_triggers.iter())
        .filter_map(|t| t.component.as_deref())
        .chain(manifest.redis_triggers.iter().map(|t| t.component.as_str()))
        .chain(manifest.cron_triggers.iter().map(|t| t.component.as_str()))
        .collect();
    for (id, component) in &manifest.components {
        if component.copy_of.is_none() {
            findings.extend(check_build(id, component, &app_dir));
        }
        // A middleware imports the next handler of its chain, which only the chain
        // provides: linked alone it would fail.
        let wraps: Vec<&str> = (manifest.components.values())
            .filter(|other| {
                other
                    .middleware
                    .iter()
                    .any(|m| m.source == component.source)
            })
            .map(|other| other.id.as_str())
            .collect();
        if !called.contains(id.as_str()) && !wraps.is_empty() {
            findings.push(Finding::ok(
                id,
                format!(
                    "is middleware of {}; it is chained in and linked when the app starts (wisp up checks it)",
                    wraps.join(", ")
                ),
            ));
            continue;
        }
        // Its imports are partly satisfied by its dependencies: linking it alone would
        // report them missing.
        if !component.middleware.is_empty() {
            findings.push(Finding::ok(
                id,
                format!(
                    "has {} middleware in front of it; they are chained in and linked when the app starts (wisp up checks them)",
                    component.middleware.len()
                ),
            ));
            continue;
        }
        if !component.dependencies.is_empty() {
            findings.push(Finding::ok(
                id,
                match component.dependencies.len() {
                    1 => "has a dependency; it is composed in and linked when the app starts (wisp up checks it)".to_owned(),
                    n => format!("has {n} dependencies; they are composed in and linked when the app starts (wisp up checks them)"),
                },
            ));
            continue;
        }
        let source = match &component.source {
            wisp_manifest::ComponentSource::Local(path) => app_dir.join(path),
            wisp_manifest::ComponentSource::Remote { url, digest } => {
                match wisp_oci::Cache::new(wisp_oci::Cache::default_root())
                    .blob_path(digest)
                    .ok()
                    .filter(|path| path.is_file())
                {
                    Some(cached) => cached,
                    None => {
                        findings.push(Finding::ok(
                            id,
                            format!("source {url} is downloaded and checked when the app starts"),
                        ));
                        continue;
                    }
                }
            }
            wisp_manifest::ComponentSource::Registry {
                package, version, ..
            } => {
                findings.push(Finding::ok(
                    id,
                    format!("source package {package} {version} is downloaded when the app starts"),
                ));
                continue;
            }
        };
        findings.extend(check_component(
            &manifest,
            id,
            &source,
            component.build.is_some(),
            runtime.as_ref().ok(),
        ));
    }
    if manifest.http_triggers.is_empty() {
        findings.push(Finding::ok(
            "port",
            "the app has no HTTP triggers; no port needed",
        ));
    } else {
        findings.push(match std::net::TcpListener::bind(listen) {
            Ok(_) => Finding::ok("port", format!("{listen} is free")),
            Err(e) => Finding::problem(
                Level::Warning,
                "port",
                format!("cannot listen on {listen}: {e}"),
                "stop what uses it, or run wisp up --listen 127.0.0.1:0 (a free port)",
            ),
        });
    }
    findings
}

/// The build command's program is installed, and the Rust target it needs too; for a Go
/// module (a `go.mod` in the build's workdir), Go 1.25+ and wasm-tools.
fn check_build(id: &str, component: &wisp_manifest::Component, app_dir: &Path) -> Vec<Finding> {
    let subject = format!("component {id}");
    let Some(build) = &component.build else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    let workdir = build
        .workdir
        .as_ref()
        .map_or_else(|| app_dir.to_path_buf(), |dir| app_dir.join(dir));
    // TinyGo builds (Spin's Go SDK) need neither Go 1.25 nor wasm-tools.
    let tinygo = build.commands.iter().any(|c| c.contains("tinygo"));
    if workdir.join("go.mod").is_file() && !tinygo {
        findings.extend(check_go(&subject, &workdir));
    }
    if workdir.join("package.json").is_file() {
        findings.extend(check_node(&subject));
    }
    let mut checked = Vec::new();
    for command in &build.commands {
        let Some(program) = command.split_whitespace().next() else {
            continue;
        };
        // Shell syntax (`cd x && ...`) is not a program we can look up; a program used by
        // several commands (`npm install`, `npm run build`) is reported once.
        if program.contains('=')
            || ["cd", "mkdir", "cp", "(", "sh", "bash"].contains(&program)
            || checked.contains(&program)
        {
            continue;
        }
        checked.push(program);
        if on_path(program) {
            findings.push(Finding::ok(
                subject.clone(),
                format!("build tool `{program}` is installed"),
            ));
        } else {
            findings.push(Finding::problem(
                Level::Error,
                subject.clone(),
                format!("build command `{command}` needs `{program}`, which is not on the PATH"),
                install_hint(program),
            ));
        }
        if program == "cargo" && on_path("cargo") && command.contains("wasm32-wasip2") {
            let installed = Command::new("rustup")
                .args(["target", "list", "--installed"])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"));
            findings.push(match installed {
                Some(true) => {
                    Finding::ok(subject.clone(), "Rust target wasm32-wasip2 is installed")
                }
                Some(false) => Finding::problem(
                    Level::Error,
                    subject.clone(),
                    "the Rust target wasm32-wasip2 is not installed",
                    "rustup target add wasm32-wasip2",
                ),
                None => Finding::problem(
                    Level::Warning,
                    subject.clone(),
                    "cannot ask rustup which targets are installed",
                    "install rustup (https://rustup.rs), then rustup target add wasm32-wasip2",
                ),
            });
        }
    }
    findings
}

/// Go components are built by Go 1.25+ (`GOOS=wasip1` with `//go:wasmexport`) and
/// wrapped into components by wasm-tools.
fn check_go(subject: &str, workdir: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    // In the module's directory, and never fetching the toolchain its go.mod might name.
    let version = Command::new("go")
        .args(["env", "GOVERSION"])
        .current_dir(workdir)
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let minor = version.as_deref().and_then(|v| {
        v.strip_prefix("go1.")?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<u32>()
            .ok()
    });
    findings.push(match (&version, minor) {
        (Some(version), Some(minor)) if minor >= 25 => {
            Finding::ok(subject, format!("{version} builds wasip1 components"))
        }
        (Some(version), _) => Finding::problem(
            Level::Error,
            subject,
            format!("{version} is too old for Go components (needs 1.25 or newer)"),
            install_hint("go"),
        ),
        (None, _) => Finding::problem(
            Level::Error,
            subject,
            "the component is a Go module, and `go` is not on the PATH",
            install_hint("go"),
        ),
    });
    findings.push(if on_path("wasm-tools") {
        Finding::ok(subject, "build tool `wasm-tools` is installed")
    } else {
        Finding::problem(
            Level::Error,
            subject,
            "Go components are wrapped by `wasm-tools`, which is not on the PATH",
            install_hint("wasm-tools"),
        )
    });
    findings
}

/// JavaScript components build with componentize-js, whose dependencies need Node 20+.
fn check_node(subject: &str) -> Option<Finding> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())?;
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    Some(match major {
        Some(major) if major >= 20 => Finding::ok(
            subject,
            format!("Node.js {version} builds JavaScript components"),
        ),
        _ => Finding::problem(
            Level::Error,
            subject,
            format!("Node.js {version} is too old for componentize-js (needs 20 or newer)"),
            install_hint("node"),
        ),
    })
}

fn install_hint(program: &str) -> String {
    match program {
        "cargo" => "install Rust with rustup (https://rustup.rs), then rustup target add wasm32-wasip2".to_owned(),
        "componentize-py" => "python3 -m venv .venv && .venv/bin/pip install componentize-py spin-sdk, then activate .venv".to_owned(),
        "npm" | "node" | "npx" => "install Node.js 20 or newer (it brings npm)".to_owned(),
        "go" => "install Go 1.25 or newer: https://go.dev/dl, or run scripts/install-go.sh from the wisp repository (Debian's packages) and put ~/.cache/wisp/tools/bin on the PATH".to_owned(),
        "wasm-tools" => "cargo install --locked wasm-tools".to_owned(),
        "tinygo" => "install TinyGo (https://tinygo.org/getting-started/install/)".to_owned(),
        other => format!("install `{other}` or change the component's build command"),
    }
}

fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The component's source exists, compiles, links against the host, and exports what
/// its triggers call.
fn check_component(
    manifest: &Manifest,
    id: &str,
    source: &Path,
    has_build: bool,
    runtime: Option<&Runtime>,
) -> Vec<Finding> {
    let subject = format!("component {id}");
    let bytes = match std::fs::read(source) {
        Ok(bytes) => bytes,
        Err(e) => {
            let (level, fix) = if has_build {
                (Level::Warning, format!("run wisp build -c {id}"))
            } else {
                (
                    Level::Error,
                    "fix `source` in its [component] table or build the component".to_owned(),
                )
            };
            return vec![Finding::problem(
                level,
                subject,
                format!("cannot read {}: {e}", source.display()),
                fix,
            )];
        }
    };
    let Some(runtime) = runtime else {
        return vec![Finding::problem(
            Level::Warning,
            subject,
            "the wasm engine could not start, so the component was not checked",
            "run wisp up to see the engine error",
        )];
    };
    let report = match wisp_engine::inspect_component(runtime.engine(), id, &bytes) {
        Ok(report) => report,
        Err(e) => {
            return vec![Finding::problem(
                Level::Error,
                subject,
                e.to_string(),
                "rebuild it against interfaces Wisp provides (docs/capabilities.md lists them), or drop the import",
            )];
        }
    };
    let mut findings = vec![Finding::ok(
        subject.clone(),
        "compiles and links against every interface it imports",
    )];
    // Each trigger type says whether the component exports what it calls.
    let mut checked = Vec::new();
    for (trigger_type, component) in manifest.trigger_components() {
        if component != id || checked.contains(&trigger_type) {
            continue;
        }
        checked.push(trigger_type);
        // The wagi executor runs a WASI command, not the HTTP export.
        let wagi = trigger_type == "http"
            && manifest.http_triggers.iter().any(|t| {
                t.component.as_deref() == Some(id)
                    && matches!(t.executor, wisp_manifest::HttpExecutor::Wagi { .. })
            });
        let checked_export = match wagi {
            true => match report.command {
                true => Ok(()),
                false => Err("the wagi executor needs a WASI command (`wasi:cli/run`, a program with `main`)".to_owned()),
            },
            false => match runtime.trigger_type(trigger_type) {
                Some(kind) => kind.check_component(&report.pre),
                None => continue,
            },
        };
        if let Err(what) = checked_export {
            findings.push(Finding::problem(
                Level::Error,
                subject.clone(),
                format!(
                    "does not export what its {trigger_type} trigger calls: {what} (it exports {})",
                    report.exports
                ),
                "rebuild it to export what the trigger calls (wisp new --list shows a template per trigger)",
            ));
        }
    }
    findings
}

//! `wisp new` and `wisp add`: apps and components from the templates built into the
//! binary (`templates/` in the repository; see `docs/cli/new.md`).

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// One template as embedded by `build.rs`.
pub(crate) struct EmbeddedTemplate {
    id: &'static str,
    metadata: &'static str,
    /// The manifest snippet `wisp add` appends (paths under `{{dir}}`).
    component: Option<&'static str>,
    /// `(path relative to the app, contents)`; paths and contents may hold placeholders.
    files: &'static [(&'static str, &'static [u8])],
}

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    description: String,
    #[serde(default, rename(deserialize = "parameter"))]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Parameter {
    name: String,
    prompt: String,
    default: Option<String>,
}

/// Arguments of `wisp new`.
#[derive(Debug, Args)]
#[command(
    after_help = "Templates: http-rust, http-rust-p3, http-js, http-py, http-go, http-empty, static-fileserver, redis-rust, cron-rust (`wisp new --list` describes them).\n\nExamples:\n  wisp new http-rust hello && cd hello && wisp up --build\n  wisp new redis-rust worker --value redis-channel=jobs --accept-defaults\n  wisp new --list --json"
)]
pub struct NewArgs {
    /// The template.
    #[arg(required_unless_present = "list")]
    template: Option<String>,

    /// The app name (kebab-case); also the directory and the component id.
    #[arg(required_unless_present = "list")]
    name: Option<String>,

    /// Set a template parameter without being asked (repeatable).
    #[arg(long = "value", value_name = "NAME=VALUE")]
    values: Vec<String>,

    /// Use every parameter's default instead of asking (the default when stdin is not a
    /// terminal).
    #[arg(long)]
    accept_defaults: bool,

    /// Directory to create; default `./<name>`.
    #[arg(short, long)]
    output: Option<PathBuf>,

    /// List the templates and exit.
    #[arg(long, conflicts_with_all = ["template", "name"])]
    list: bool,

    /// Report as JSON on stdout: what was created, or with --list one object per template.
    #[arg(long)]
    json: bool,
}

/// Arguments of `wisp add`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp add http-rust api\n  wisp add cron-rust nightly --value cron-expression='0 0 3 * * *' -f app/spin.toml"
)]
pub struct AddArgs {
    /// The template.
    template: String,

    /// The component name (kebab-case); also its directory beside the manifest.
    name: String,

    /// The app manifest to add to, or a directory containing one.
    #[arg(short = 'f', long = "file", env = "WISP_MANIFEST")]
    manifest: Option<PathBuf>,

    /// Set a template parameter without being asked (repeatable).
    #[arg(long = "value", value_name = "NAME=VALUE")]
    values: Vec<String>,

    /// Use every parameter's default instead of asking.
    #[arg(long)]
    accept_defaults: bool,

    /// Report what was added as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

impl NewArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        self.json
    }
}

impl AddArgs {
    /// Whether `--json` output was asked for.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `wisp new`.
pub fn run_new(args: NewArgs) -> Result<()> {
    if args.list {
        for template in TEMPLATES {
            let metadata = metadata(template)?;
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "id": template.id,
                        "description": metadata.description,
                        "parameters": metadata.parameters,
                        "addable": template.component.is_some(),
                    })
                );
            } else {
                outln!("{:<18} {}", template.id, metadata.description);
            }
        }
        return Ok(());
    }
    let (Some(template_id), Some(name)) = (args.template, args.name) else {
        bail!("usage: wisp new <template> <name>");
    };
    let template = find(&template_id)?;
    check_name(&name)?;
    let output = args.output.unwrap_or_else(|| PathBuf::from(&name));
    if output.exists() && std::fs::read_dir(&output).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "{} already exists and is not empty; choose another name or pass -o <empty directory>",
            output.display()
        );
    }
    let values = values(template, &name, &args.values, args.accept_defaults, None)?;
    let mut written = Vec::new();
    for (path, contents) in template.files {
        written.push(write_file(&output, path, contents, &values)?);
    }
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "created": output,
                "template": template.id,
                "name": name,
                "files": written,
            })
        );
        return Ok(());
    }
    eprintln!(
        "Created {} from template {}. Next:\n  cd {} && wisp build && wisp up",
        output.display(),
        template.id,
        output.display()
    );
    Ok(())
}

/// Runs `wisp add`.
pub fn run_add(args: AddArgs) -> Result<()> {
    let template = find(&args.template)?;
    let Some(snippet) = template.component else {
        bail!(
            "template {} makes whole apps only; use `wisp new {} <name>`",
            template.id,
            template.id
        );
    };
    check_name(&args.name)?;
    let manifest_path = super::build::manifest_path(args.manifest.as_deref());
    let manifest = wisp_manifest::parse_file(&manifest_path)?;
    if manifest.components.contains_key(&args.name) {
        bail!(
            "the app already has a component `{}`; choose another name",
            args.name
        );
    }
    let app_dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let app_dir = if app_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        app_dir
    };
    let component_dir = app_dir.join(&args.name);
    if component_dir.exists() {
        bail!(
            "{} already exists; choose another name",
            component_dir.display()
        );
    }
    let values = values(
        template,
        &args.name,
        &args.values,
        args.accept_defaults,
        Some(&args.name),
    )?;
    // Check the result before touching anything: the app must still be valid.
    let original = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let updated = format!(
        "{}\n{}",
        original.trim_end(),
        render(snippet, &values).trim_end()
    ) + "\n";
    wisp_manifest::parse_str(&updated, &manifest_path).context(
        "the template's component does not fit this app (see above); nothing was changed",
    )?;
    let mut written = Vec::new();
    for (path, contents) in template.files {
        // The app already has its manifest.
        if *path == "spin.toml" {
            continue;
        }
        written.push(write_file(&component_dir, path, contents, &values)?);
    }
    std::fs::write(&manifest_path, updated)
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "added": args.name,
                "template": template.id,
                "directory": component_dir,
                "manifest": manifest_path,
                "files": written,
            })
        );
        return Ok(());
    }
    eprintln!(
        "Added component `{}` ({}) in {}, and its tables to {}.",
        args.name,
        template.id,
        component_dir.display(),
        manifest_path.display()
    );
    Ok(())
}

fn find(id: &str) -> Result<&'static EmbeddedTemplate> {
    TEMPLATES.iter().find(|t| t.id == id).with_context(|| {
        let ids: Vec<&str> = TEMPLATES.iter().map(|t| t.id).collect();
        format!(
            "no template `{id}`; the templates are {} (`wisp new --list` describes them)",
            ids.join(", ")
        )
    })
}

fn metadata(template: &EmbeddedTemplate) -> Result<Metadata> {
    toml::from_str(template.metadata)
        .with_context(|| format!("template {} has a malformed template.toml", template.id))
}

fn check_name(name: &str) -> Result<()> {
    if !wisp_manifest::is_kebab_id(name) {
        bail!(
            "`{name}` is not a valid name; use kebab-case: lowercase letters and digits in words joined by single `-`, starting with a letter (e.g. `my-app`)"
        );
    }
    Ok(())
}

/// The placeholder values: the name in its forms, then each parameter from `--value`,
/// a prompt (on a terminal, unless `--accept-defaults`), or its default.
fn values(
    template: &EmbeddedTemplate,
    name: &str,
    given: &[String],
    accept_defaults: bool,
    dir: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let metadata = metadata(template)?;
    let mut values = vec![
        ("project-name".to_owned(), name.to_owned()),
        ("project-name-snake".to_owned(), name.replace('-', "_")),
    ];
    if let Some(dir) = dir {
        values.push(("dir".to_owned(), dir.to_owned()));
    }
    let mut given_values = Vec::new();
    for entry in given {
        let Some((key, value)) = entry.split_once('=') else {
            bail!("--value {entry}: write it as NAME=VALUE");
        };
        if !metadata.parameters.iter().any(|p| p.name == key) {
            let names: Vec<&str> = metadata
                .parameters
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            bail!(
                "--value {key}: template {} has no parameter `{key}`; its parameters are {}",
                template.id,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        given_values.push((key.to_owned(), value.to_owned()));
    }
    let interactive = !accept_defaults && std::io::stdin().is_terminal();
    for parameter in &metadata.parameters {
        let value = match given_values.iter().find(|(k, _)| *k == parameter.name) {
            Some((_, value)) => value.clone(),
            None if interactive => prompt(parameter)?,
            None => parameter.default.clone().with_context(|| {
                format!(
                    "template {} needs `{}` ({}); pass --value {}=...",
                    template.id, parameter.name, parameter.prompt, parameter.name
                )
            })?,
        };
        if value.contains('"') || value.contains('\n') {
            bail!(
                "{}: the value may not contain `\"` or a line break",
                parameter.name
            );
        }
        values.push((parameter.name.clone(), value));
    }
    Ok(values)
}

fn prompt(parameter: &Parameter) -> Result<String> {
    let mut stderr = std::io::stderr();
    match &parameter.default {
        Some(default) => write!(stderr, "{} [{default}]: ", parameter.prompt),
        None => write!(stderr, "{}: ", parameter.prompt),
    }
    .and_then(|()| stderr.flush())
    .context("cannot write the prompt")?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    let answer = line.trim();
    match (answer.is_empty(), &parameter.default) {
        (false, _) => Ok(answer.to_owned()),
        (true, Some(default)) => Ok(default.clone()),
        (true, None) => bail!("{} needs a value", parameter.prompt),
    }
}

/// Replaces each `{{key}}` whose key has a value; anything else is left as written.
fn render(text: &str, values: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// Writes one template file under `root`; returns its rendered path relative to `root`.
fn write_file(
    root: &Path,
    path: &str,
    contents: &[u8],
    values: &[(String, String)],
) -> Result<String> {
    let relative = render(path, values);
    let target = root.join(&relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let contents = match std::str::from_utf8(contents) {
        Ok(text) => render(text, values).into_bytes(),
        Err(_) => contents.to_vec(),
    };
    std::fs::write(&target, contents)
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok(relative)
}

//! `wisp schema`: the JSON schema of `spin.toml`, for editors and CI checks.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `wisp schema`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp schema > spin-manifest.schema.json\n  wisp schema -o .vscode/spin-manifest.schema.json"
)]
pub struct SchemaArgs {
    /// Write the schema to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Runs `wisp schema`.
pub fn run(args: SchemaArgs) -> Result<()> {
    let schema = wisp_manifest::json_schema();
    match args.output {
        Some(path) => std::fs::write(&path, schema)
            .with_context(|| format!("cannot write {}", path.display())),
        None => {
            crate::write_stdout(schema.as_bytes());
            Ok(())
        }
    }
}

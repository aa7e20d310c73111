//! `wisp completions <shell>`: a completion script on stdout.

use anyhow::Result;
use clap::Args;
use clap_complete::Shell;

/// Arguments of `wisp completions`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wisp completions bash > ~/.local/share/bash-completion/completions/wisp\n  wisp completions zsh > \"${fpath[1]}/_wisp\""
)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Writes the completion script for `command` (the whole CLI) to stdout.
pub fn run(args: CompletionsArgs, command: &mut clap::Command) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, command, "wisp", &mut script);
    crate::write_stdout(&script);
    Ok(())
}

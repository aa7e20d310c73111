//! `wisp`: the command line. Thin: argument parsing and output; all work is delegated to
//! the library crates (manifest → app → engine → trigger-http).

/// `println!` for results on stdout: when the reader has gone (`wisp new --list | head -1`)
/// the program ends quietly, as Unix tools do, instead of panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

mod commands;

/// Writes `bytes` to stdout; see [`outln!`].
pub(crate) fn write_stdout(bytes: &[u8]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(i32::from(EXIT_USER_ERROR));
        }
    }
}

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Exit code for a manifest, app, flag-value or environment error (the user can fix it:
/// a bad manifest, a missing file, a port in use). Unknown flags and arguments exit with
/// clap's usage code, 2.
const EXIT_USER_ERROR: u8 = 1;
/// Exit code for a failure of the server itself (the async runtime or the wasm engine
/// could not start), not of its input.
pub(crate) const EXIT_RUNTIME_FAILURE: u8 = 3;

/// The exit code for an error: a runtime failure anywhere in its chain, else a user error.
fn exit_code(err: &anyhow::Error) -> u8 {
    match err
        .chain()
        .any(|cause| cause.downcast_ref::<commands::RuntimeFailure>().is_some())
    {
        true => EXIT_RUNTIME_FAILURE,
        false => EXIT_USER_ERROR,
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "wisp",
    version,
    about = "Run serverless WebAssembly apps (Spin manifest v2) with a fresh instance per request."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an app from a template.
    New(commands::new::NewArgs),
    /// Add a component from a template to an existing app.
    Add(commands::new::AddArgs),
    /// Serve an app: its HTTP routes, Redis subscriptions and cron schedules.
    Up(commands::up::UpArgs),
    /// Run the components' build commands.
    Build(commands::build::BuildArgs),
    /// Build and serve an app, rebuilding and reloading it in place on every change.
    Watch(commands::watch::WatchArgs),
    /// Run a node serving many apps (routed by Host), and deploy to, list and remove
    /// apps from one.
    Node(Box<commands::node::NodeArgs>),
    /// Push apps to and pull them from OCI registries (Spin's artifact format).
    Registry(commands::registry::RegistryArgs),
    /// Kubernetes manifests for an app image (SpinKube's SpinApp, or plain objects for
    /// Wisp's containerd shim).
    Kube(commands::kube::KubeArgs),
    /// Check an app and this machine, and say how to fix what is wrong.
    Doctor(commands::doctor::DoctorArgs),
    /// Print the JSON schema of spin.toml.
    Schema(commands::schema::SchemaArgs),
    /// Print a shell completion script.
    Completions(commands::completions::CompletionsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WISP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match &cli.command {
        Command::Up(args) => args.json(),
        Command::Watch(args) => args.json(),
        Command::Build(args) => args.json(),
        Command::New(args) => args.json(),
        Command::Add(args) => args.json(),
        Command::Doctor(args) => args.json(),
        Command::Registry(args) => args.json(),
        Command::Node(args) => args.json(),
        _ => false,
    };
    if json {
        // One JSON object per line: every log event, request and lifecycle event.
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // A closed stderr (a log collector gone) must not take the server down: the
            // default reports a failed write with `eprintln!`, which panics.
            .log_internal_errors(false)
            .init();
    } else {
        // Human lines: the message only (its text already names what matters; the
        // structured fields are for --json), coloured only on a terminal without NO_COLOR.
        let colour = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| commands::serve::StderrAroundSpinner)
            .log_internal_errors(false)
            .with_target(false)
            .without_time()
            .with_ansi(colour)
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(
                |writer, field, value| {
                    if field.name() == "message" {
                        write!(writer, "{value:?}")
                    } else {
                        Ok(())
                    }
                },
            ))
            .init();
    }
    let result = match cli.command {
        Command::Up(args) => commands::up::run(args),
        Command::New(args) => commands::new::run_new(args),
        Command::Add(args) => commands::new::run_add(args),
        Command::Registry(args) => commands::registry::run(args),
        Command::Kube(args) => commands::kube::run(args),
        Command::Build(args) => commands::build::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Schema(args) => commands::schema::run(args),
        Command::Watch(args) => commands::watch::run(args),
        Command::Node(args) => commands::node::run(*args),
        Command::Completions(args) => {
            commands::completions::run(args, &mut <Cli as clap::CommandFactory>::command())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if json => {
            tracing::error!(event = "failed", error = %format!("{err:#}"), "{err}");
            ExitCode::from(exit_code(&err))
        }
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

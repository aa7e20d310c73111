//! `wisp kube scaffold`: Kubernetes manifests for an app image, for SpinKube's operator or
//! for plain Kubernetes with Wisp's containerd shim.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::PathBuf;
use wisp_kube::{Autoscaler, Autoscaling, Resources, ScaffoldOptions, Shape};

/// Arguments of `wisp kube`.
#[derive(Debug, Args)]
pub struct KubeArgs {
    #[command(subcommand)]
    command: KubeCommand,
}

#[derive(Debug, Subcommand)]
enum KubeCommand {
    /// Write Kubernetes manifests for an app image: a SpinApp for SpinKube's operator,
    /// or with --plain a Deployment, Service and RuntimeClass for Wisp's containerd shim.
    Scaffold(Box<ScaffoldArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AutoscalerArg {
    /// A HorizontalPodAutoscaler (autoscaling/v2).
    Hpa,
    /// A KEDA ScaledObject.
    Keda,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    wisp registry push localhost:5000/hello:v1 -f spin.toml\n  \
    wisp kube scaffold --from localhost:5000/hello:v1 | kubectl apply -f -\n  \
    wisp kube scaffold --from localhost:5000/hello:v1 --plain -o hello.yaml\n  \
    wisp kube scaffold --from localhost:5000/shop:v3 --variable currency=EUR \\\n      \
    --runtime-config-file runtime-config.toml --autoscaler hpa --cpu-limit 500m --memory-limit 256Mi\n\n\
    The SpinApp runs through a SpinAppExecutor (--executor, default `wisp`) whose \
    runtimeClassName is Wisp's RuntimeClass; --with-executor writes both. \
    See docs/kubernetes.md.")]
struct ScaffoldArgs {
    /// The app's image, as pushed by `wisp registry push` (or a plain image holding
    /// /spin.toml).
    #[arg(short = 'f', long, value_name = "IMAGE")]
    from: String,
    /// The name of the objects [default: the image repository's last segment].
    #[arg(long)]
    name: Option<String>,
    /// Replicas; with --autoscaler, the fewest it keeps.
    #[arg(short = 'r', long, default_value_t = 2)]
    replicas: i32,
    /// Scale the Deployment with this autoscaler (needs --cpu-limit and --memory-limit).
    #[arg(long)]
    autoscaler: Option<AutoscalerArg>,
    /// The most replicas the autoscaler may run.
    #[arg(long, default_value_t = 3, requires = "autoscaler")]
    max_replicas: i32,
    /// Average CPU use the autoscaler keeps, in percent of the pods' CPU.
    #[arg(
        long,
        default_value_t = 60,
        value_name = "PERCENT",
        requires = "autoscaler"
    )]
    autoscaler_target_cpu_utilization: i32,
    /// Average memory use the autoscaler keeps, in percent of the pods' memory.
    #[arg(
        long,
        default_value_t = 60,
        value_name = "PERCENT",
        requires = "autoscaler"
    )]
    autoscaler_target_memory_utilization: i32,
    /// CPU a pod may use (a Kubernetes quantity: 500m, 1).
    #[arg(long, value_name = "QUANTITY")]
    cpu_limit: Option<String>,
    /// Memory a pod may use (128Mi, 1Gi). With --plain, half of it becomes Wisp's
    /// instance memory budget.
    #[arg(long, value_name = "QUANTITY")]
    memory_limit: Option<String>,
    /// CPU a pod requests when it is scheduled.
    #[arg(long, value_name = "QUANTITY")]
    cpu_request: Option<String>,
    /// Memory a pod requests when it is scheduled.
    #[arg(long, value_name = "QUANTITY")]
    memory_request: Option<String>,
    /// An app variable, `name=value` (repeatable).
    #[arg(short = 'v', long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// Run only this component (repeatable); the default runs them all.
    #[arg(long = "component", value_name = "ID")]
    components: Vec<String>,
    /// A Secret in the app's namespace for pulling the image (repeatable).
    #[arg(short = 's', long = "image-pull-secret", value_name = "NAME")]
    image_pull_secrets: Vec<String>,
    /// A runtime config file, checked as `wisp up` checks it, and put in a Secret that
    /// the pods mount at /runtime-config.toml.
    #[arg(short = 'c', long, value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// The SpinAppExecutor that runs the SpinApp.
    #[arg(long, default_value = wisp_kube::DEFAULT_EXECUTOR, conflicts_with = "plain")]
    executor: String,
    /// Also write that SpinAppExecutor and the RuntimeClass it uses (once per cluster).
    #[arg(long, conflicts_with = "plain")]
    with_executor: bool,
    /// Write a Deployment, Service and RuntimeClass instead of a SpinApp: no operator
    /// needed.
    #[arg(long)]
    plain: bool,
    /// The RuntimeClass the pods run under.
    #[arg(long, default_value = wisp_kube::DEFAULT_RUNTIME_CLASS, value_name = "NAME")]
    runtime_class: String,
    /// Write the manifests to this file (mode 0600: a runtime config may hold secrets)
    /// instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `wisp kube`.
pub fn run(args: KubeArgs) -> Result<()> {
    match args.command {
        KubeCommand::Scaffold(args) => scaffold(*args),
    }
}

fn scaffold(args: ScaffoldArgs) -> Result<()> {
    let variables = args
        .variables
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
            None => bail!("`--variable {pair}` has no value; write it as `--variable name=value`"),
        })
        .collect::<Result<Vec<_>>>()?;
    let runtime_config = match &args.runtime_config_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            // The same check `wisp up --runtime-config-file` makes, so a typo fails here
            // and not in a crash-looping pod.
            wisp_host::RuntimeConfig::from_str(&text, path)?;
            Some(text)
        }
    };
    let options = ScaffoldOptions {
        image: args.from,
        name: args.name,
        replicas: args.replicas,
        autoscaling: args.autoscaler.map(|kind| Autoscaling {
            kind: match kind {
                AutoscalerArg::Hpa => Autoscaler::Hpa,
                AutoscalerArg::Keda => Autoscaler::Keda,
            },
            max_replicas: args.max_replicas,
            target_cpu_percent: args.autoscaler_target_cpu_utilization,
            target_memory_percent: args.autoscaler_target_memory_utilization,
        }),
        resources: Resources {
            cpu_limit: args.cpu_limit,
            memory_limit: args.memory_limit,
            cpu_request: args.cpu_request,
            memory_request: args.memory_request,
        },
        variables,
        components: args.components,
        image_pull_secrets: args.image_pull_secrets,
        runtime_config,
        runtime_class: args.runtime_class,
        shape: match args.plain {
            true => Shape::Plain,
            false => Shape::SpinApp {
                executor: args.executor,
                with_executor: args.with_executor,
            },
        },
    };
    let yaml = wisp_kube::to_yaml(&wisp_kube::scaffold(&options)?);
    match args.out {
        None => crate::write_stdout(yaml.as_bytes()),
        Some(path) => {
            write_private(&path, yaml.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("Wrote {}", path.display());
        }
    }
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

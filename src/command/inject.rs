//! `sidelog inject`: reads Kubernetes YAML, adds sidelog to every Pod in it, prints the result
//! (`sidelog inject -f app.yaml | kubectl apply -f -`). Notes go to stderr; on any error
//! nothing is printed and the exit code is 2.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sidelog_inject::{Options, inject};

/// `sidelog inject`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// Manifest file, or `-` for standard input.
    #[arg(short = 'f', long = "filename", default_value = "-")]
    file: PathBuf,
    /// Directory the app writes its logs into (`*.log` there is shipped); shared through an
    /// emptyDir, the app's own when it mounts one there.
    #[arg(long, default_value = "/var/log/app")]
    logs: String,
    /// The app container that writes the logs (needed when a Pod has several).
    #[arg(long)]
    container: Option<String>,
    /// Secret with the Datadog API key.
    #[arg(long, default_value = "datadog-api-key")]
    secret: String,
    /// Key of the API key in that Secret.
    #[arg(long, default_value = "api-key")]
    secret_key: String,
    /// ConfigMap with `sidelog.toml`; without it one is generated and printed first.
    #[arg(long)]
    config_map: Option<String>,
    /// A classic sidecar (a second container), for clusters before Kubernetes 1.29.
    #[arg(long)]
    classic: bool,
    /// The sidelog image.
    #[arg(long, default_value = concat!("sidelog:", env!("CARGO_PKG_VERSION")))]
    image: String,
}

pub fn inject_command(args: InjectArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidelog inject: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: InjectArgs) -> anyhow::Result<()> {
    let input = read_input(&args.file)?;
    let opts = Options {
        logs: args.logs,
        container: args.container,
        secret: args.secret,
        secret_key: args.secret_key,
        config_map: args.config_map,
        classic: args.classic,
        image: args.image,
    };
    let injected = inject(&input, &opts)?;
    for note in &injected.notes {
        eprintln!("{note}");
    }
    print!("{}", injected.yaml);
    Ok(())
}

fn read_input(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

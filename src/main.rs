//! The `sidelog` command: parses the arguments and runs one command. The work is in the
//! library; the commands are in `command`.

mod command;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sidelog",
    version,
    about = "Tails log files and ships them to Datadog, at least once, in a few megabytes",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Config file (TOML or YAML); runs the shipper. Without it (and without
    /// --agent-config), the Datadog Agent's files in /etc/datadog-agent are read.
    #[arg(short, long, env = "SIDELOG_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    agent: AgentConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the Datadog Agent's configuration is, when sidelog takes the Agent's place.
#[derive(clap::Args, Clone)]
struct AgentConfig {
    /// A directory with the Datadog Agent's datadog.yaml and/or conf.d/, read instead of a
    /// sidelog config file (the DD_* variables apply as they do to the Agent).
    #[arg(
        long,
        env = "SIDELOG_AGENT_CONFIG",
        value_name = "DIR",
        conflicts_with = "config"
    )]
    agent_config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shipper (the same as `sidelog --config FILE`).
    Run {
        #[arg(short, long, env = "SIDELOG_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        agent: AgentConfig,
    },
    /// Validate a config and print the effective configuration (API key redacted); with
    /// --agent-config, the configuration derived from the Datadog Agent's files.
    Check {
        #[arg(short, long, env = "SIDELOG_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        agent: AgentConfig,
        /// Print the reference of every key (default, meaning, allowed values) in Markdown,
        /// as docs/configuration.md shows it, and check nothing.
        #[arg(long)]
        reference: bool,
    },
    /// Print the files, positions and delivery state of a running sidelog (from its
    /// `metrics_listen` endpoint).
    Status {
        /// Base URL of the admin endpoint (default: from --config's metrics_listen, else
        /// http://127.0.0.1:9500).
        #[arg(long)]
        url: Option<String>,
        /// Config of the running instance, to find its metrics_listen.
        #[arg(short, long, env = "SIDELOG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write sample log lines (access-log and JSON) to a file, like an application would.
    Generate(command::generate::GenerateOptions),
    /// Add sidelog to the Pods of Kubernetes manifests and print them (`-f app.yaml | kubectl
    /// apply -f -`).
    #[cfg(feature = "inject")]
    Inject(command::inject::InjectArgs),
    /// Run a local Datadog-compatible logs intake.
    #[cfg(feature = "devtools")]
    Intake(sidelog_devtools::intake::IntakeArgs),
    /// Measure throughput, idle cost, latency or a Pod's bad moments with the real binary
    /// (see docs/performance.md).
    #[cfg(feature = "devtools")]
    Bench {
        #[command(subcommand)]
        mode: sidelog_devtools::bench::BenchCommand,
    },
    /// Run intake, a sample log writer and the shipper together, printing live progress.
    #[cfg(feature = "devtools")]
    Demo(sidelog_devtools::demo::DemoOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run {
        config: cli.config,
        agent: cli.agent,
    });
    match command {
        Command::Run { config, agent } => match command::run::source(config, agent.agent_config) {
            Ok(source) => command::run::run(source),
            Err(code) => code,
        },
        Command::Check {
            reference: true, ..
        } => {
            print!("{}", sidelog_shipper::config::reference::markdown());
            ExitCode::SUCCESS
        }
        Command::Check { config, agent, .. } => {
            match command::run::source(config, agent.agent_config) {
                Ok(source) => command::run::check(source),
                Err(code) => code,
            }
        }
        Command::Status { url, config } => command::run::status(url, config),
        Command::Generate(options) => command::generate::generate(options),
        #[cfg(feature = "inject")]
        Command::Inject(args) => command::inject::inject_command(args),
        #[cfg(feature = "devtools")]
        Command::Intake(args) => command::dev::intake(args),
        #[cfg(feature = "devtools")]
        Command::Bench { mode } => command::dev::bench(mode),
        #[cfg(feature = "devtools")]
        Command::Demo(options) => command::dev::demo(options),
    }
}

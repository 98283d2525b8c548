//! Another shipper in sidelog's place for `bench steady` and `bench idle`: Fluent Bit or Vector
//! at their defaults, tailing the same files from their start and sending to the same intake,
//! so that one run compares them on the same writer, machine and minute.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::ChildGuard;

/// `--fluent-bit PATH` or `--vector PATH`: measure that binary instead of sidelog.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PeerArgs {
    /// Measure this Fluent Bit binary instead, at its defaults (tail input with a database,
    /// datadog output with gzip).
    #[arg(long, conflicts_with = "vector")]
    pub fluent_bit: Option<PathBuf>,
    /// Measure this Vector binary instead, at its defaults (file source, datadog_logs sink).
    #[arg(long)]
    pub vector: Option<PathBuf>,
}

impl PeerArgs {
    /// Who is measured, for the report.
    pub(super) fn name(&self) -> &'static str {
        match (&self.fluent_bit, &self.vector) {
            (Some(_), _) => "Fluent Bit",
            (None, Some(_)) => "Vector",
            (None, None) => "sidelog",
        }
    }

    /// Starts the peer on `logs/*.log` against the intake at `url`, with its state in `dir`
    /// and its own log in `log`; `None` when sidelog is measured.
    pub(super) fn start(
        &self,
        dir: &Path,
        logs: &Path,
        url: &str,
        log: &Path,
    ) -> Option<anyhow::Result<ChildGuard>> {
        let glob = format!("{}/*.log", logs.display());
        let (exe, args) = match (&self.fluent_bit, &self.vector) {
            (Some(exe), _) => (exe, fluent_bit_config(dir, &glob, url)),
            (None, Some(exe)) => (exe, vector_config(dir, &glob, url)),
            (None, None) => return None,
        };
        Some(args.and_then(|args| spawn(exe, &args, log)))
    }
}

/// Fluent Bit's command line: `dd_message_key` puts the line where the intake looks for it
/// (in_tail keeps it in `log`).
fn fluent_bit_config(dir: &Path, glob: &str, url: &str) -> anyhow::Result<Vec<String>> {
    let port = url.rsplit(':').next().unwrap_or_default();
    let conf = dir.join("fluent-bit.conf");
    let text = format!(
        "[SERVICE]\n    Log_Level warn\n\n\
         [INPUT]\n    Name tail\n    Path {glob}\n    DB {}/fb.db\n    Read_from_Head On\n    Refresh_Interval 1\n\n\
         [OUTPUT]\n    Name datadog\n    Match *\n    Host 127.0.0.1\n    Port {port}\n    TLS Off\n    apikey bench-key\n    compress gzip\n    dd_message_key log\n",
        dir.display()
    );
    fs::write(&conf, text)?;
    Ok(vec!["-c".into(), conf.display().to_string()])
}

/// Vector's command line: a file source read from the beginning and the datadog_logs sink,
/// everything else at its defaults.
fn vector_config(dir: &Path, glob: &str, url: &str) -> anyhow::Result<Vec<String>> {
    let data = dir.join("vector-data");
    fs::create_dir_all(&data)?;
    let conf = dir.join("vector.toml");
    let text = format!(
        "data_dir = \"{}\"\n\n\
         [sources.app]\ntype = \"file\"\ninclude = [\"{glob}\"]\nread_from = \"beginning\"\n\n\
         [sinks.dd]\ntype = \"datadog_logs\"\ninputs = [\"app\"]\ndefault_api_key = \"bench-key\"\nendpoint = \"{url}\"\n",
        data.display()
    );
    fs::write(&conf, text)?;
    Ok(vec![
        "--quiet".into(),
        "--config".into(),
        conf.display().to_string(),
    ])
}

fn spawn(exe: &Path, args: &[String], log: &Path) -> anyhow::Result<ChildGuard> {
    let child = Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(File::create(log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(ChildGuard(child))
}

//! `sidelog intake`: its options (faults included) and the command's loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Faults, Intake, IntakeOptions, Redirect, TlsFiles};

/// `sidelog intake`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct IntakeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Require this API key (the file is re-read for every request).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Append every accepted event to this file, one JSON object per line.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Benchmark sink: check benchmark lines for loss, duplicates and latency (see
    /// `GET /stats`) without parsing the JSON; events are not written to --out.
    #[arg(long)]
    verify: bool,
    /// As --verify, but answer at once and check each body later, on a thread that runs only
    /// when a core is free (benchmarks on the shipper's machine; see `GET /arrivals`).
    #[arg(long)]
    verify_later: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Faults the built-in intake injects, to see how a shipper copes.
#[derive(Debug, Clone, clap::Args)]
struct FaultArgs {
    /// Answer every request with this status (e.g. 503).
    #[arg(long, value_name = "STATUS")]
    fail_status: Option<u16>,
    /// Send `Retry-After: SECONDS` with 429 and 503 answers.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<u64>,
    /// Answer this fraction of requests (0 to 1) with 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Drop this fraction of connections (0 to 1) without an answer.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Wait this long before every answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Answer 400 to a batch holding an event that contains this text.
    #[arg(long, value_name = "TEXT")]
    poison: Option<String>,
    /// Answer 413 to bodies above this many uncompressed bytes.
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Answer 415 to zstd bodies, as a receiver that cannot decode zstd does.
    #[arg(long)]
    refuse_zstd: bool,
    /// Answer every request with a redirect to this URL (see --redirect-status).
    #[arg(long, value_name = "URL")]
    redirect_to: Option<String>,
    /// The status of --redirect-to's answers: 301, 302, 303, 307 or 308.
    #[arg(long, default_value_t = 302, value_name = "STATUS")]
    redirect_status: u16,
    /// Error answers carry a body of this many bytes, as a broken gateway's error page.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    error_body_bytes: usize,
}

impl IntakeArgs {
    pub fn into_options(self) -> IntakeOptions {
        let f = self.faults;
        IntakeOptions {
            listen: Some(self.listen),
            api_key_file: self.api_key_file,
            out: self.out,
            keep_events: false,
            verify: self.verify,
            verify_later: self.verify_later,
            faults: Faults {
                status: f.fail_status,
                retry_after_secs: f.retry_after,
                error_rate: f.error_rate.clamp(0.0, 1.0),
                reset_rate: f.reset_rate.clamp(0.0, 1.0),
                latency: Duration::from_millis(f.latency_ms),
                poison: f.poison,
                max_body_bytes: f.max_body_bytes,
                refuse_zstd: f.refuse_zstd,
                redirect: f.redirect_to.map(|location| Redirect {
                    status: f.redirect_status,
                    location,
                }),
                error_body_bytes: f.error_body_bytes,
                ..Faults::default()
            },
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
        }
    }
}

/// Runs the intake as a command: prints a running count each second until Ctrl-C / SIGTERM.
pub async fn run_cli(opts: IntakeOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let intake = Intake::start(opts.clone()).await?;
    // On stdout, so scripts (and `sidelog bench`) can read the address of port 0.
    println!("listening on http://{}", intake.addr);
    eprintln!(
        "sidelog intake listening on http://{} (POST /api/v2/logs, GET /stats, PUT /faults){}",
        intake.addr,
        if opts.api_key_file.is_some() {
            ", checking DD-API-KEY"
        } else {
            ""
        }
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let s = &intake.state;
        let now = (
            s.events.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
        );
        if now != last {
            eprintln!(
                "intake: {} events, {:.1} MB received (+{} events/s), {} requests refused",
                now.0,
                now.1 as f64 / 1e6,
                now.0 - last.0,
                s.rejected.load(Ordering::Relaxed)
            );
            last = now;
        }
    }
    intake.stop();
    Ok(())
}

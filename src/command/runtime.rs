//! The async runtime the commands run on, and the signals that stop them.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// Two async workers at most: the work that needs cores (reading, compressing) has threads of
/// its own, and a sidecar on a 64-core node should not start 64 workers.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(sidelog_shipper::config::usable_cores().min(2))
        .enable_all()
        .thread_name("sidelog-rt")
        .build()
}

/// The shipper's runtime: one thread. Its async work (requests, dispatch, checkpoints, the
/// admin endpoint) is small next to reading and compressing, which have threads of their
/// own; a second worker only added wake-ups, the two parking and stealing from each other.
pub fn shipper_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("sidelog-rt")
        .build()
}

/// Runs `f` on a Tokio runtime with a token cancelled by SIGTERM or SIGINT.
pub fn block_on<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sidelog: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        let signals = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; stopping");
            signals.cancel();
        });
        f(stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sidelog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can still be killed; never return early.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

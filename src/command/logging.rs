//! sidelog's own logs: text on a terminal or JSON lines, the level from `log_level` or
//! `RUST_LOG`, changed on a reload.

use sidelog::config::{LogFormat, LogLevel};
use tracing_subscriber::EnvFilter;

/// Changes sidelog's own log level after a reload (unless `RUST_LOG` rules).
pub struct LogHandle(
    Option<tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>>,
);

impl LogHandle {
    pub fn set(&self, level: LogLevel) {
        if let Some(handle) = &self.0
            && std::env::var_os("RUST_LOG").is_none()
            && let Err(e) =
                handle.reload(EnvFilter::new(format!("warn,sidelog={}", level.as_str())))
        {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}

pub fn init(level: LogLevel, format: LogFormat) -> LogHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,sidelog={}", level.as_str())));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    LogHandle(result.ok().map(|()| handle))
}

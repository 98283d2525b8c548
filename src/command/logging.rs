//! sidelog's own logs: text on a terminal or JSON lines, the level from `log_level` or
//! `RUST_LOG`, changed on a reload.

use sidelog_shipper::config::{LogFormat, LogLevel};
use tracing_subscriber::filter::Targets;

/// Changes sidelog's own log level after a reload (unless `RUST_LOG` rules).
pub struct LogHandle(
    Option<tracing_subscriber::reload::Handle<Targets, tracing_subscriber::Registry>>,
);

impl LogHandle {
    pub fn set(&self, level: LogLevel) {
        if let Some(handle) = &self.0
            && std::env::var_os("RUST_LOG").is_none()
            && let Err(e) = handle.reload(own_level(level))
        {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}

/// sidelog's logs at `level`, its libraries' at warn.
fn own_level(level: LogLevel) -> Targets {
    let own = format!("warn,sidelog={}", level.as_str());
    own.parse().unwrap_or_default()
}

/// `RUST_LOG` as a list of targets and levels (`warn,sidelog=debug`), when it is set and
/// valid. Targets cover what sidelog's users ask of `RUST_LOG` without the weight of a
/// regex-based filter in every Pod.
fn from_environment() -> Option<Targets> {
    let spec = std::env::var("RUST_LOG").ok()?;
    match spec.parse() {
        Ok(targets) => Some(targets),
        Err(e) => {
            eprintln!("sidelog: RUST_LOG={spec:?} is not a list of target=level: {e}");
            None
        }
    }
}

pub fn init(level: LogLevel, format: LogFormat) -> LogHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = from_environment().unwrap_or_else(|| own_level(level));
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn sidelog_logs_at_its_level_and_libraries_at_warn() {
        let targets = own_level(LogLevel::Debug);
        assert!(targets.would_enable("sidelog_shipper::tail", &Level::DEBUG));
        assert!(!targets.would_enable("hyper", &Level::INFO));
        assert!(targets.would_enable("hyper", &Level::WARN));
    }
}

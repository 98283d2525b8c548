//! Faults the end-to-end tests inject into a running shipper, to see what sidelog makes of a
//! stage that stops turning (its liveness). Only in builds with the `failpoints` feature, which
//! the development build has and the image's binary has not: there every point is an empty
//! function.
//!
//! `SIDELOG_FAILPOINT=reader` (or `sender`) arms a point at start; SIGUSR2 fires it: the reader
//! thread, or the dispatcher that takes the reader's batches, then stops turning for good.

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    static FIRED: AtomicBool = AtomicBool::new(false);

    fn armed(point: &str) -> bool {
        ARMED
            .get_or_init(|| std::env::var("SIDELOG_FAILPOINT").ok())
            .as_deref()
            == Some(point)
    }

    /// Fires the armed point at SIGUSR2. Call from within the runtime.
    pub fn install() {
        if !armed("reader") && !armed("sender") {
            return;
        }
        let Ok(mut usr2) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
        else {
            return;
        };
        tokio::spawn(async move {
            usr2.recv().await;
            tracing::warn!("failpoint fired (SIGUSR2)");
            FIRED.store(true, Ordering::SeqCst);
        });
    }

    fn fired(point: &str) -> bool {
        FIRED.load(Ordering::Relaxed) && armed(point)
    }

    /// The reader thread stops here for good once its point fired.
    pub fn reader_turn() {
        while fired("reader") {
            std::thread::park();
        }
    }

    /// The dispatcher stops here for good once its point fired.
    pub async fn sender_turn() {
        if fired("sender") {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{install, reader_turn, sender_turn};

#[cfg(not(feature = "failpoints"))]
mod off {
    #[inline(always)]
    pub fn install() {}
    #[inline(always)]
    pub fn reader_turn() {}
    #[inline(always)]
    pub async fn sender_turn() {}
}

#[cfg(not(feature = "failpoints"))]
pub use off::{install, reader_turn, sender_turn};

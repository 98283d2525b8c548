//! The reader's doorbell: file-event callbacks, rescan requests and the shutdown phases ring
//! it; the reader thread sleeps on it (a condition variable) until something is due.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Pending file-event paths kept before falling back to a full rescan.
const MAX_PENDING_PATHS: usize = 4096;

/// What woke the reader: file events, a rescan request, or a shutdown phase.
#[derive(Default)]
pub(crate) struct WakeState {
    pub paths: HashSet<PathBuf>,
    pub rescan: bool,
    pub stop: bool,
    pub drain: bool,
    pub abandon: bool,
}

/// The reader's doorbell. File-event callbacks and shutdown ring it; the reader sleeps on it.
#[derive(Default)]
pub struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

impl Wake {
    fn lock(&self) -> std::sync::MutexGuard<'_, WakeState> {
        crate::lock(&self.state)
    }

    /// Asks the reader to read nothing more, hand over its open batch and end. A last line
    /// without newline and a pending multi-line event stay unsent: the checkpoint stays
    /// before them and the next start reads them whole.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }

    /// Asks the reader to read every file to its end until all are quiet (a last line
    /// without newline and pending multi-line events included), hand over what it read, and
    /// end: at SIGTERM, and at `exit_when_file`.
    pub fn drain(&self) {
        self.lock().drain = true;
        self.cv.notify_all();
    }

    /// Asks the reader to end at once, handing over nothing more.
    pub fn abandon(&self) {
        self.lock().abandon = true;
        self.cv.notify_all();
    }

    pub(crate) fn path(&self, path: PathBuf) {
        let mut s = self.lock();
        if s.paths.len() >= MAX_PENDING_PATHS {
            s.paths.clear();
            s.rescan = true;
        } else {
            s.paths.insert(path);
        }
        drop(s);
        self.cv.notify_all();
    }

    pub(crate) fn rescan(&self) {
        self.lock().rescan = true;
        self.cv.notify_all();
    }

    /// Takes what is pending, waiting up to `timeout` for something when nothing is.
    pub(crate) fn take(&self, timeout: Option<Duration>) -> WakeState {
        let mut s = self.lock();
        if let Some(timeout) = timeout
            && s.paths.is_empty()
            && !s.rescan
            && !s.stop
            && !s.drain
            && !s.abandon
        {
            s = match self.cv.wait_timeout(s, timeout) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        WakeState {
            paths: std::mem::take(&mut s.paths),
            rescan: std::mem::take(&mut s.rescan),
            stop: s.stop,
            drain: s.drain,
            abandon: s.abandon,
        }
    }
}

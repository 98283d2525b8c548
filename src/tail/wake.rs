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
    /// Paths whose name may lead elsewhere now (created, renamed, removed, attributes).
    pub paths: HashSet<PathBuf>,
    /// Paths written to: if one is a file tailed under that name, it only has to be read.
    pub grown: HashSet<PathBuf>,
    pub rescan: bool,
    /// Something other than a file changed (a request was answered): look again.
    pub poke: bool,
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
        self.add(path, false);
    }

    /// A write to `path`.
    pub(crate) fn grown(&self, path: PathBuf) {
        self.add(path, true);
    }

    fn add(&self, path: PathBuf, grown: bool) {
        let mut s = self.lock();
        let new = if s.paths.len() + s.grown.len() >= MAX_PENDING_PATHS {
            s.paths.clear();
            s.grown.clear();
            s.rescan = true;
            true
        } else if grown {
            s.grown.insert(path)
        } else {
            s.paths.insert(path)
        };
        drop(s);
        // A path already pending has rung already: a burst of appends is one wake-up.
        if new {
            self.cv.notify_all();
        }
    }

    /// Asks the reader to look again (a request was answered: a lingering batch may go).
    pub fn poke(&self) {
        self.lock().poke = true;
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
            && s.grown.is_empty()
            && !s.poke
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
            grown: std::mem::take(&mut s.grown),
            rescan: std::mem::take(&mut s.rescan),
            poke: std::mem::take(&mut s.poke),
            stop: s.stop,
            drain: s.drain,
            abandon: s.abandon,
        }
    }
}

impl WakeState {
    /// Adds what was rung meanwhile (the shutdown phases are sticky and read again).
    pub(crate) fn merge(&mut self, later: WakeState) {
        self.paths.extend(later.paths);
        self.grown.extend(later.grown);
        self.rescan |= later.rescan;
        self.poke |= later.poke;
        self.stop = later.stop;
        self.drain = later.drain;
        self.abandon = later.abandon;
    }

    /// Only file writes: reading them can wait a moment for more.
    pub(crate) fn only_writes(&self) -> bool {
        self.paths.is_empty()
            && !self.grown.is_empty()
            && !self.rescan
            && !self.stop
            && !self.drain
            && !self.abandon
    }
}

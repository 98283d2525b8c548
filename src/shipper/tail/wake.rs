//! What wakes the reader: the directory watches on the globs' roots, and its doorbell.
//!
//! The reader sleeps in one `poll` on its own inotify descriptor (file
//! events, read on the reader's thread: no thread in between) and on an eventfd that other
//! threads ring for the shutdown phases and for answered requests; a timeout wakes it for
//! what is due.
//!
//! A file event costs the reader one wake-up and no other thread's: at 50 lines/s the thread
//! that used to receive inotify's events and pass them on cost as much as the reader itself.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};

use super::globs::Root;

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

/// The reader's doorbell: other threads ring it; the reader waits on it and on its file
/// events.
pub struct Wake {
    state: Mutex<WakeState>,
    /// Rung (written to) after the state changed; `None` if no eventfd could be made, and
    /// then the reader wakes at its timeouts and at file events only.
    bell: Option<OwnedFd>,
    /// Set by the reader while it holds a batch back until the requests in flight end, so
    /// that the last one to end rings (and no other does).
    held_for_sending: AtomicBool,
}

impl Default for Wake {
    fn default() -> Self {
        let bell = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC);
        if let Err(e) = &bell {
            tracing::warn!(error = %e, "no eventfd; the reader wakes at its timeouts and file events only");
        }
        Wake {
            state: Mutex::new(WakeState::default()),
            bell: bell.ok(),
            held_for_sending: AtomicBool::new(false),
        }
    }
}

impl Wake {
    fn lock(&self) -> std::sync::MutexGuard<'_, WakeState> {
        crate::lock(&self.state)
    }

    fn ring(&self) {
        if let Some(bell) = &self.bell {
            // A full counter (never in practice) or a closed descriptor: the reader is
            // awake or gone either way.
            let _ = rustix::io::write(bell, &1u64.to_ne_bytes());
        }
    }

    /// Asks the reader to read nothing more, hand over its open batch and end. A last line
    /// without newline and a pending multi-line event stay unsent: the checkpoint stays
    /// before them and the next start reads them whole.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.ring();
    }

    /// Asks the reader to read every file to its end until all are quiet (a last line
    /// without newline and pending multi-line events included), hand over what it read, and
    /// end: at SIGTERM, and at `exit_when_file`.
    pub fn drain(&self) {
        self.lock().drain = true;
        self.ring();
    }

    /// Asks the reader to end at once, handing over nothing more.
    pub fn abandon(&self) {
        self.lock().abandon = true;
        self.ring();
    }

    /// The last request in flight ended: if the reader holds a batch back for it, it may go.
    pub fn requests_ended(&self) {
        if self.held_for_sending.load(Ordering::SeqCst) {
            self.lock().poke = true;
            self.ring();
        }
    }

    /// The reader says whether it holds a batch back until the requests in flight end. It
    /// sets this before it looks at the count of requests in flight, so a request that ends
    /// in between rings.
    pub(crate) fn hold_for_sending(&self, held: bool) {
        self.held_for_sending.store(held, Ordering::SeqCst);
    }

    /// Takes what is pending, first waiting up to `timeout` for something (a ring or a file
    /// event) when nothing is; file events are read from `watches` either way.
    pub(crate) fn take(&self, timeout: Option<Duration>, watches: &mut Watches) -> WakeState {
        let mut events = WakeState::default();
        watches.read_events(&mut events);
        let idle = self.lock().is_empty() && events.is_empty();
        if let Some(timeout) = timeout.filter(|_| idle) {
            self.wait(timeout, watches);
            watches.read_events(&mut events);
        }
        let mut s = self.lock();
        events.merge(WakeState {
            paths: std::mem::take(&mut s.paths),
            grown: std::mem::take(&mut s.grown),
            rescan: std::mem::take(&mut s.rescan),
            poke: std::mem::take(&mut s.poke),
            stop: s.stop,
            drain: s.drain,
            abandon: s.abandon,
        });
        events
    }

    /// Lets file events gather for `time` (they wait on their descriptor), waking early only
    /// when the bell rings (a shutdown phase, an answered request).
    pub(crate) fn gather(&self, time: Duration) {
        let Some(bell) = &self.bell else {
            std::thread::sleep(time);
            return;
        };
        let mut fds = [PollFd::new(bell, PollFlags::IN)];
        let rung = matches!(poll(&mut fds, Some(&timespec(time))), Ok(n) if n > 0);
        if rung {
            // Read now, or every gathering after it would end at once.
            silence(bell);
        }
    }

    /// Sleeps until the bell rings, a file event comes, or `timeout` passes.
    fn wait(&self, timeout: Duration, watches: &Watches) {
        let mut fds = Vec::with_capacity(2);
        if let Some(bell) = &self.bell {
            fds.push(PollFd::new(bell, PollFlags::IN));
        }
        if let Some(inotify) = watches.fd() {
            fds.push(PollFd::from_borrowed_fd(inotify, PollFlags::IN));
        }
        // An interrupted or failed poll only wakes the reader early: it looks and sleeps again.
        let _ = poll(&mut fds, Some(&timespec(timeout)));
        drop(fds);
        if let Some(bell) = &self.bell {
            silence(bell);
        }
    }
}

/// Resets the bell's count, so that the next poll waits again (nonblocking: a bell that was
/// not rung reads nothing).
fn silence(bell: &OwnedFd) {
    let mut count = [0u8; 8];
    let _ = rustix::io::read(bell.as_fd(), &mut count);
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

impl WakeState {
    /// Nothing to act on. A drain already under way is no reason to look again: the phases
    /// are sticky, and the reader saw this one when it was rung (waiting for nothing here
    /// while draining kept the reader spinning until every file was quiet).
    fn is_empty(&self) -> bool {
        self.paths.is_empty()
            && self.grown.is_empty()
            && !self.poke
            && !self.rescan
            && !self.stop
            && !self.abandon
    }

    /// A file event naming `path`: `grown` for a write. Past [`MAX_PENDING_PATHS`] they are
    /// given up for a rescan.
    pub(crate) fn add(&mut self, path: PathBuf, grown: bool) {
        if self.paths.len() + self.grown.len() >= MAX_PENDING_PATHS {
            self.paths.clear();
            self.grown.clear();
            self.rescan = true;
        } else if grown {
            self.grown.insert(path);
        } else {
            self.paths.insert(path);
        }
    }

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

/// What a directory watch reports: writes (to read), names that came, went or changed
/// (to look at), and the directory itself going. Not reads, opens or closes: sidelog's own
/// reads would wake it.
const WATCHED: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// The directory watches of every input's roots (and of their subdirectories, for globs
/// that reach below), on one inotify descriptor the reader reads itself.
pub(crate) struct Watches {
    inotify: Option<Inotify>,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    watched: HashSet<PathBuf>,
    buffer: Vec<u8>,
}

impl Watches {
    /// Opens the inotify descriptor when `file_events`; without one, the reader polls its
    /// open files (see [`Watches::watching`]).
    pub(crate) fn start(file_events: bool) -> Watches {
        let inotify = if file_events {
            match Inotify::init() {
                Ok(i) => Some(i),
                Err(e) => {
                    // EMFILE here is the node's per-user inotify limit
                    // (fs.inotify.max_user_instances, often 128), shared by every container
                    // running as the same user: a node with many Pods reaches it.
                    tracing::warn!(
                        error = %e,
                        "cannot watch files (is fs.inotify.max_user_instances reached on this node?); open files are polled every second and new files found by rescans"
                    );
                    None
                }
            }
        } else {
            tracing::info!(
                "file events off (tail.file_events); open files are polled every second"
            );
            None
        };
        Watches {
            inotify,
            dirs: HashMap::new(),
            watched: HashSet::new(),
            buffer: vec![0; 16 * 1024],
        }
    }

    /// Whether file events come; if not, open files must be polled.
    pub(crate) fn watching(&self) -> bool {
        self.inotify.is_some()
    }

    /// The descriptor to wait on for file events.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inotify.as_ref().map(|i| i.as_fd())
    }

    /// Watches every root that exists and is not watched yet (a root may appear later), and,
    /// for a root whose globs reach below it, its subdirectories to that depth.
    pub(crate) fn ensure<'a>(&mut self, roots: impl Iterator<Item = &'a Root>) {
        if self.inotify.is_none() {
            return;
        }
        for root in roots {
            if root.dir.is_dir() {
                self.watch_tree(&root.dir, root.depth);
            }
        }
    }

    fn watch_tree(&mut self, dir: &Path, depth: usize) {
        self.watch(dir);
        if depth <= 1 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.watch_tree(&path, depth - 1);
            }
        }
    }

    fn watch(&mut self, dir: &Path) {
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        if self.watched.contains(dir) {
            return;
        }
        match inotify.watches().add(dir, WATCHED) {
            Ok(wd) => {
                tracing::debug!(dir = %dir.display(), "watching");
                self.dirs.insert(wd, dir.to_path_buf());
                self.watched.insert(dir.to_path_buf());
            }
            Err(e) => {
                crate::warn_limited!(dir = %dir.display(), error = %e, "cannot watch directory; new lines there are found by rescans")
            }
        }
    }

    /// Reads the file events waiting on the descriptor into `into`, without waiting.
    pub(crate) fn read_events(&mut self, into: &mut WakeState) {
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        loop {
            let events = match inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    crate::warn_limited!(error = %e, "file watch error; rescanning");
                    into.rescan = true;
                    return;
                }
            };
            let mut any = false;
            for event in events {
                any = true;
                on_event(&mut self.dirs, &mut self.watched, event, into);
            }
            if !any {
                return;
            }
        }
    }
}

/// What one inotify event asks of the reader.
fn on_event(
    dirs: &mut HashMap<WatchDescriptor, PathBuf>,
    watched: &mut HashSet<PathBuf>,
    event: inotify::Event<&std::ffi::OsStr>,
    into: &mut WakeState,
) {
    let mask = event.mask;
    if mask.contains(EventMask::Q_OVERFLOW) {
        into.rescan = true;
        return;
    }
    if mask.intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
        // The directory went: watch it again if it comes back (at a rescan).
        if let Some(dir) = dirs.remove(&event.wd) {
            watched.remove(&dir);
        }
        into.rescan = true;
        return;
    }
    let (Some(dir), Some(name)) = (dirs.get(&event.wd), event.name) else {
        return;
    };
    let path = dir.join(name);
    if mask.contains(EventMask::ISDIR) {
        if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            into.rescan = true;
        }
        return;
    }
    // A write: the file only has to be read, its name still leads to it.
    into.add(path, mask == EventMask::MODIFY);
}

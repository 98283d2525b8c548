//! Files renamed away (rotated), read to their end and closed, kept in mind for a while: an
//! app that reopens its log late (after logrotate's `create`, or after being signalled) may
//! still write through the descriptor it holds, and a file event under the rotated name then
//! brings the file back to be read from where it was closed. Without this, lines an app wrote
//! after the reader had closed its rotated file were lost.
//!
//! Bounded: at most [`MAX_RETIRED`] files, each for [`RETIRED_FOR`]; a deleted file is never
//! kept (nothing can name it again).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::reader::EndMark;
use crate::encode::EventTemplate;
use crate::position::{DevIno, Fingerprint};

/// How long a closed rotated file is watched for late lines.
pub(super) const RETIRED_FOR: Duration = Duration::from_secs(600);
/// The most closed rotated files kept in mind (the oldest go first).
const MAX_RETIRED: usize = 64;

/// A rotated file read to its end and closed: what tells it from another file that gets its
/// inode once it is deleted (its first bytes, and those it was read to).
pub(super) struct Retired {
    pub id: DevIno,
    pub fingerprint: Fingerprint,
    /// Where it was read to.
    pub pos: u64,
    pub end_mark: EndMark,
    pub input: usize,
    /// Its events' fields (tagged with the name it was written under).
    pub template: EventTemplate,
    /// When it was closed.
    pub at: Instant,
}

#[derive(Default)]
pub(super) struct Retirees {
    files: VecDeque<Retired>,
}

impl Retirees {
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Keeps `file` in mind from `now`, forgetting the oldest beyond the bound. A file with
    /// nothing to know it by (empty, or read from a checkpoint without a byte read since) is
    /// not kept: another file that got its inode would be taken for it.
    pub(super) fn retire(&mut self, file: Retired) {
        if file.fingerprint.len == 0 || (file.pos > 0 && file.end_mark.is_empty()) {
            return;
        }
        self.files.retain(|r| r.id != file.id);
        if self.files.len() >= MAX_RETIRED {
            self.files.pop_front();
        }
        self.files.push_back(file);
    }

    /// The closed file `id`, if it is kept in mind; it is forgotten here.
    pub(super) fn take(&mut self, id: DevIno) -> Option<Retired> {
        let i = self.files.iter().position(|r| r.id == id)?;
        self.files.remove(i)
    }

    /// Forgets what was closed longer than [`RETIRED_FOR`] before `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while self
            .files
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.at) >= RETIRED_FOR)
        {
            self.files.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::EventFields;

    fn template() -> EventTemplate {
        EventTemplate::new(&EventFields {
            status: "info",
            hostname: "h",
            service: "s",
            source: "x",
            tags: "",
        })
    }

    #[test]
    fn bounded_in_number_and_time() {
        let mut r = Retirees::default();
        let t0 = Instant::now();
        let fp = Fingerprint { len: 4, hash: 1 };
        let file = |ino, fingerprint, end_mark| Retired {
            id: DevIno { dev: 1, ino },
            fingerprint,
            pos: 10,
            end_mark,
            input: 0,
            template: template(),
            at: t0,
        };
        let mark = EndMark::of(b"the end\n");
        for ino in 0..(MAX_RETIRED as u64 + 5) {
            r.retire(file(ino, fp, mark));
        }
        // Nothing to know these by.
        r.retire(file(500, Fingerprint { len: 0, hash: 0 }, mark));
        r.retire(file(501, fp, EndMark::default()));
        assert!(r.take(DevIno { dev: 1, ino: 500 }).is_none());
        assert!(r.take(DevIno { dev: 1, ino: 501 }).is_none());
        assert!(
            r.take(DevIno { dev: 1, ino: 0 }).is_none(),
            "the oldest went"
        );
        let kept = r.take(DevIno { dev: 1, ino: 7 }).expect("kept");
        assert_eq!(kept.pos, 10);
        assert!(r.take(DevIno { dev: 1, ino: 7 }).is_none(), "taken once");
        r.expire(t0 + RETIRED_FOR);
        assert!(r.is_empty());
    }
}

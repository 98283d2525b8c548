//! The rest of a file's life after it was found: descriptors taken back and given again under
//! `tail.max_open_files`, files without a name closed once read to their end and quiet (or
//! given up at `tail.rotate_wait_ms`, counted), multi-line events sent when they time out,
//! and rotated files deleted once every line of them was accepted (`delete_after_ship`).

use std::path::Path;
use std::time::Instant;

use super::super::batcher::Batcher;
use super::super::emit::Sink;
use super::super::reader::{FileReader, find_in_dir};
use super::super::retired::Retired;
use super::super::table::{FileKey, Tailed, Waiting};
use super::{FileSet, PendingDelete};

/// Why a file without a name is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Read to its end and quiet for `tail.rotated_linger_ms`.
    ReadToEnd,
    /// Held for `tail.rotate_wait_ms`.
    GivenUp,
}

impl FileSet {
    /// Makes sure file `key` has a descriptor before a read. False when it has none now
    /// (it waits for one, or it is gone); at shutdown no descriptor is taken.
    pub(crate) fn has_descriptor(&mut self, key: FileKey, stopping: bool) -> bool {
        let Some(t) = self.table.get(key) else {
            return false;
        };
        if t.reader.is_open() {
            return true;
        }
        if stopping {
            return false;
        }
        if !self.table.has_room() && !self.evict(Some(key)) {
            if let Some(t) = self.table.get_mut(key) {
                t.active = false;
            }
            self.table.wait_reopen(key);
            return false;
        }
        if self.table.reopen(key) {
            self.metrics.files_open.up();
            return true;
        }
        self.forget_gone(key);
        false
    }

    /// Closes the least recently read file that may give its descriptor back.
    pub(crate) fn evict(&mut self, except: Option<FileKey>) -> bool {
        let Some(path) = self.table.evict_one(except) else {
            return false;
        };
        tracing::debug!(path = %path.display(), "closed to stay under tail.max_open_files");
        self.metrics.files_evicted.inc();
        self.metrics.files_open.down();
        true
    }

    /// Opens what waits for a descriptor, as far as descriptors allow.
    pub(crate) fn serve_waiting(&mut self, out: &mut Batcher) {
        while let Some(w) = self.table.next_waiting() {
            let reopen = matches!(w, Waiting::Reopen(_));
            if !reopen && !self.table.has_room() && !self.evict(None) {
                return;
            }
            match self.table.take_waiting() {
                Some(Waiting::New {
                    path,
                    input,
                    startup,
                }) => {
                    if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                        self.open_new(&path, input, startup);
                    }
                }
                Some(Waiting::Reopen(key)) => {
                    if let Some(t) = self.table.get_mut(key) {
                        t.active = true;
                    }
                    self.read_file(key, false, out);
                    if self.table.get(key).is_some_and(|t| !t.reader.is_open()) {
                        // Still no descriptor (the read queued it again).
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// A file event named `path`, which the globs do not match and no file is tailed under:
    /// perhaps a rotated file under its new name, still written to by an app that has not
    /// reopened its log. One being drained is read now; one already closed (kept in mind a
    /// while) is opened again from where it was closed. Costs a stat only while there are such
    /// files.
    pub(crate) fn renamed_written(&mut self, path: &Path) {
        let orphans = self.table.files().any(|t| t.reader.is_orphan());
        if !orphans && self.retired.is_empty() {
            return;
        }
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let id = crate::position::DevIno::of(&meta);
        if let Some(key) = self.table.by_id(id)
            && let Some(t) = self.table.get_mut(key)
        {
            t.active = true;
            return;
        }
        let Some(r) = self.retired.take(id) else {
            return;
        };
        if meta.len() <= r.pos {
            self.retired.retire(r);
            return;
        }
        let Some(file) =
            super::super::reader::open_if(path, r.id, r.fingerprint, &self.confinement)
                .filter(|f| r.pos == 0 || r.end_mark.found_in(f, r.pos))
        else {
            return;
        };
        let Ok(mut reader) = FileReader::of(path, file, &self.confinement) else {
            return;
        };
        reader.start_at(r.pos);
        reader.leave_name();
        let stream = self.new_stream();
        self.tracker
            .register(stream, r.id, reader.fingerprint(), path, r.pos);
        tracing::info!(path = %path.display(), at = r.pos, "a rotated file closed after it was read to its end was written to again (its app had not reopened its log yet); reading the rest");
        self.metrics.files_opened.inc();
        self.metrics.files_open.up();
        let grouping = self.inputs[r.input]
            .processor
            .as_ref()
            .and_then(|p| p.multiline.as_ref())
            .map(|_| crate::process::Grouping::default());
        self.table.insert(Tailed {
            reader,
            stream,
            input: r.input,
            template: r.template,
            covered: r.pos,
            active: true,
            grouping,
        });
    }

    /// A closed file could not be found again: whatever was written to it after its last
    /// read is out of reach.
    fn forget_gone(&mut self, key: FileKey) {
        let Some(mut t) = self.table.remove(key) else {
            return;
        };
        let path = t.reader.path().to_path_buf();
        let copy = t
            .reader
            .copy_of_truncated()
            .and_then(|(copy, file)| t.reader.continued_in(copy, file).ok());
        if let Some(reader) = copy {
            // Truncated in place (copytruncate) while closed: the rest is in the copy.
            tracing::info!(path = %path.display(), copy = %reader.path().display(), "a file closed under tail.max_open_files was truncated; reading the rest of it from its copy");
            self.tracker
                .moved(t.stream, reader.id(), reader.fingerprint(), reader.path());
            t.reader = reader;
            t.active = true;
            self.metrics.files_open.up();
            self.table.insert(t);
        } else {
            tracing::warn!(
                path = %path.display(),
                read_to = t.reader.pos(),
                "file renamed away or deleted while closed under tail.max_open_files; lines written after its last read cannot be read (raise tail.max_open_files)"
            );
            self.metrics.files_gone_while_closed.inc();
            self.tracker.close(t.stream, t.covered);
        }
        // The name may lead to a new file now.
        if let Some(i) = self.inputs.iter().position(|i| i.matcher.matches(&path)) {
            self.consider(&path, i, false);
        }
    }

    /// Closes files that left their name once they are read to their end and quiet, or once
    /// `tail.rotate_wait_ms` has passed (counting what is given up).
    pub(crate) fn close_orphans(&mut self, out: &mut Batcher) {
        let done: Vec<(FileKey, Closing)> = self
            .table
            .iter()
            .filter_map(|(k, t)| self.orphan_done(t).map(|c| (k, c)))
            .collect();
        let now = Instant::now();
        self.retired.expire(now);
        for (key, closing) in done {
            if closing == Closing::ReadToEnd
                && let Some(t) = self.table.get_mut(key)
                && !t.reader.unchanged_since_read()
                && t.reader.is_linked()
            {
                // Written since its last read without an event that named it (it is under
                // another name now): read that first.
                t.active = true;
                continue;
            }
            self.flush_group(key, out);
            let Some(t) = self.table.remove(key) else {
                continue;
            };
            if t.reader.is_open() {
                self.metrics.files_open.down();
            }
            self.metrics.files_closed.inc();
            self.tracker.close(t.stream, t.covered);
            if closing == Closing::ReadToEnd && t.reader.is_linked() {
                self.retired.retire(Retired {
                    id: t.reader.id(),
                    fingerprint: t.reader.fingerprint(),
                    pos: t.reader.pos(),
                    end_mark: t.reader.end_mark(),
                    input: t.input,
                    template: t.template.clone(),
                    at: now,
                });
            }
            if closing == Closing::ReadToEnd && self.inputs[t.input].delete_after_ship {
                self.pending_deletes.push(PendingDelete {
                    stream: t.stream,
                    id: t.reader.id(),
                    fingerprint: t.reader.fingerprint(),
                    path: t.reader.path().to_path_buf(),
                });
            }
        }
    }

    /// Whether a file without a name can be closed now: read to its end and quiet, or held
    /// for `tail.rotate_wait_ms` (what is left unread is given up, logged and counted).
    fn orphan_done(&self, t: &Tailed) -> Option<Closing> {
        let orphaned_at = t.reader.orphaned_at()?;
        // A file without a descriptor is judged once it has one again: its size is the one
        // seen before it was closed, and what came since (or its copy, if it was truncated)
        // is only found by opening it.
        let drained = t.reader.is_open() && !t.active && t.reader.pos() >= t.reader.size();
        if drained && t.reader.quiet_for(self.timing.linger) {
            tracing::info!(path = %t.reader.path().display(), "closing file read to its end");
            return Some(Closing::ReadToEnd);
        }
        let wait = self.timing.rotate_wait?;
        if orphaned_at.elapsed() < wait {
            return None;
        }
        let unread = t.reader.size().saturating_sub(t.reader.pos());
        if unread > 0 {
            tracing::warn!(
                path = %t.reader.path().display(),
                unread_bytes = unread,
                "giving up the unread end of a rotated or deleted file (tail.rotate_wait_ms)"
            );
            self.metrics.rotated_bytes_given_up.add(unread);
        }
        Some(Closing::GivenUp)
    }

    /// When the earliest multi-line event waiting for more lines is due.
    pub(crate) fn next_group_deadline(&self) -> Option<Instant> {
        self.table
            .files()
            .filter_map(|t| {
                let last = t.grouping.as_ref()?.last?;
                let ml = self.inputs[t.input]
                    .processor
                    .as_ref()?
                    .multiline
                    .as_ref()?;
                Some(last + ml.timeout)
            })
            .min()
    }

    /// Sends multi-line events that waited `timeout_ms` without a new line (all of them with
    /// `force`, at shutdown).
    pub(crate) fn flush_groups(&mut self, force: bool, out: &mut Batcher) {
        let now = Instant::now();
        let due: Vec<FileKey> = self
            .table
            .iter()
            .filter(|(_, t)| {
                let Some(last) = t.grouping.as_ref().and_then(|g| g.last) else {
                    return false;
                };
                force
                    || self.inputs[t.input]
                        .processor
                        .as_ref()
                        .and_then(|p| p.multiline.as_ref())
                        .is_some_and(|ml| now >= last + ml.timeout)
            })
            .map(|(k, _)| k)
            .collect();
        for key in due {
            self.flush_group(key, out);
            // One full batch at a time (see `read_turn`); a sender gone ends the turn.
            if out.has_ready() && !out.send_ready() {
                return;
            }
        }
    }

    /// Keeps the memory of the multi-line events being assembled, all files together, under
    /// `tail.multiline_pending_bytes`: above it, buffers of files with no event pending are
    /// given back, then the oldest events are sent as they are (counted, said once a minute).
    /// `recount`: add it up first (at a turn's end; between, reads keep the sum up to date).
    pub(crate) fn bound_pending_groups(&mut self, recount: bool, out: &mut Batcher) {
        if recount {
            self.pending_groups = self
                .table
                .files()
                .filter_map(|t| t.grouping.as_ref())
                .map(|g| g.text.capacity())
                .sum();
        }
        if self.pending_groups <= self.pending_groups_max {
            return;
        }
        let mut held: Vec<(bool, u64, FileKey)> = self
            .table
            .iter()
            .filter_map(|(k, t)| {
                let g = t.grouping.as_ref()?;
                (g.text.capacity() > 0).then_some((!g.is_empty(), g.timestamp_ms, k))
            })
            .collect();
        // Idle buffers first, then the oldest events.
        held.sort();
        for (pending, _, key) in held {
            if self.pending_groups <= self.pending_groups_max {
                break;
            }
            if pending {
                self.flush_group(key, out);
                if out.has_ready() && !out.send_ready() {
                    return;
                }
                self.metrics.multiline_flushed_for_memory.inc();
                crate::warn_limited!(
                    limit = self.pending_groups_max,
                    "multi-line events being assembled hold more than tail.multiline_pending_bytes; sending the oldest as they are"
                );
            }
            if let Some(g) = self.table.get_mut(key).and_then(|t| t.grouping.as_mut()) {
                self.pending_groups = self.pending_groups.saturating_sub(g.text.capacity());
                g.text = Vec::new();
            }
        }
    }

    /// Sends the multi-line event a file is assembling, if any.
    pub(crate) fn flush_group(&mut self, key: FileKey, out: &mut Batcher) {
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        let Tailed {
            grouping: Some(g),
            template,
            stream,
            covered,
            input,
            ..
        } = t
        else {
            return;
        };
        let mut sink = Sink {
            events: out.events(),
            template,
            stream: *stream,
            processor: self.inputs[*input].processor.as_ref(),
            trim: self.inputs[*input].trim,
        };
        sink.flush(g, covered);
    }

    /// Deletes rotated files (`delete_after_ship`) once the intake accepted every line of
    /// them, so the volume stays under its size limit. A file with any byte not accepted yet
    /// stays; a file given up at `rotate_wait_ms` is never queued here.
    pub(crate) fn delete_shipped(&mut self) {
        if self.pending_deletes.is_empty() {
            return;
        }
        let tracker = &self.tracker;
        let (settled, waiting): (Vec<_>, Vec<_>) = self
            .pending_deletes
            .drain(..)
            .partition(|p| tracker.is_settled(p.stream));
        self.pending_deletes = waiting;
        for p in settled {
            self.delete_rotated(p);
        }
    }

    fn delete_rotated(&self, p: PendingDelete) {
        // Deleted by someone else already: nothing to do. Renamed: find it by identity.
        let Some((found, file)) = find_in_dir(&p.path, p.id, p.fingerprint, &self.confinement)
        else {
            return;
        };
        drop(file);
        if self.inputs.iter().any(|i| i.matcher.matches(&found)) {
            // Renamed to a name the globs match: it is tailed again, not rotated away.
            return;
        }
        match std::fs::remove_file(&found) {
            Ok(()) => {
                tracing::info!(path = %found.display(), "deleted rotated file: every line of it was accepted");
                self.metrics.files_deleted.inc();
            }
            Err(e) => {
                tracing::warn!(path = %found.display(), error = %e, "cannot delete rotated file (delete_after_ship needs the volume mounted read-write)")
            }
        }
    }
}

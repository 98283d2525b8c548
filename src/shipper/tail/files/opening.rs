//! Files found: rescans of the globs and file events, deciding for each path whether it is a
//! file already tailed (perhaps under a new name), a new one to open (from its checkpoint or
//! by `read_from`), one to leave alone (`ignore_older_secs`, unreadable), or one that must
//! wait for a descriptor.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::super::reader::{self, FileReader, resume_position};
use super::super::table::{FileKey, Tailed};
use super::FileSet;
use crate::checkpoint::Entry;
use crate::config::ReadFrom;
use crate::encode::{EventFields, EventTemplate};
use crate::position::DevIno;
use crate::process::Grouping;

impl FileSet {
    /// Finds new files, notices files whose name no longer leads to them, and checks the
    /// sizes of known files in case a file event was lost.
    pub(crate) fn rescan(&mut self, startup: bool) {
        let found = self.discovery.scan(&self.inputs, &self.metrics);
        let seen: HashSet<DevIno> = found.iter().map(|f| DevIno::of(&f.meta)).collect();
        // Files that left their name first: they keep their descriptors (a new file must
        // not take one from a file that still has lines to give).
        for (_, t) in self.table.iter_mut() {
            if !t.reader.is_orphan() && !seen.contains(&t.reader.id()) {
                // Renamed out of the globs, or deleted: read what is left, then close. A closed
                // file is looked for under its new name when it is reopened.
                t.reader.leave_name();
                tracing::debug!(path = %t.reader.path().display(), "file left its name; draining");
            }
            if t.reader.is_open() || t.reader.is_orphan() {
                t.active = true;
            }
        }
        for f in found {
            self.consider_found(&f.path, f.input, startup, &f.meta);
        }
        if startup {
            self.recover_rotated(&seen);
        }
        self.tracker.forget_carried_except(&seen);
        tracing::debug!(files = seen.len(), "globs rescanned");
    }

    /// At start, a checkpointed file the globs no longer find may have been rotated to a
    /// name they do not match (`app.log.1`) while sidelog was stopped or reloading, with
    /// lines not yet accepted: it is looked for by identity (and first bytes) in its
    /// directory and, found, read from its checkpoint to its end like any rotated file.
    fn recover_rotated(&mut self, seen: &HashSet<DevIno>) {
        for entry in self.tracker.carried_except(seen) {
            let was = Path::new(&entry.path);
            let Some(input) = self.inputs.iter().position(|i| i.matcher.matches(was)) else {
                continue;
            };
            let id = DevIno {
                dev: entry.dev,
                ino: entry.inode,
            };
            let found = reader::find_in_dir(was, id, entry.fingerprint, &self.confinement);
            let Some((path, file)) = found else {
                // Not renamed: copytruncated and then deleted, its content only in the copy?
                if let Some((copy, file)) = self.copy_made_while_down(was, &entry) {
                    self.read_rest_from_copy(was, copy, file, input, &entry);
                }
                continue;
            };
            let owed = file.metadata().is_ok_and(|m| m.len() > entry.offset);
            drop(file);
            if !owed || (!self.table.has_room() && !self.evict(None)) {
                continue;
            }
            self.open_new(&path, input, true);
            let template = self.template(input, was);
            if let Some(key) = self.table.by_id(id)
                && let Some(t) = self.table.get_mut(key)
            {
                // Tagged with the name it was written under, read to its end, then closed.
                t.template = template;
                t.reader.leave_name();
                t.active = true;
                self.table.unname(&path, key);
                tracing::info!(was = %entry.path, path = %path.display(), "a file was rotated while sidelog was stopped; reading the rest of it from its checkpoint");
            }
        }
    }

    /// A file event named `path`.
    pub(crate) fn on_path(&mut self, path: &Path) {
        if let Some(key) = self.table.by_path(path)
            && let Some(t) = self.table.get_mut(key)
        {
            t.active = true;
            if !t.reader.is_orphan() && !t.reader.named_by(path) {
                t.reader.leave_name();
                self.table.unname(path, key);
                tracing::debug!(path = %path.display(), "file left its name; draining");
            }
        }
        match self.inputs.iter().position(|i| i.matcher.matches(path)) {
            Some(i) => {
                self.consider(path, i, false);
            }
            None if self.table.by_path(path).is_none() => self.renamed_written(path),
            None => {}
        }
    }

    /// A write to `path`: a file tailed under that name only has to be read (no stat: its
    /// name still leads to it, or the rename would have been an event of its own).
    pub(crate) fn on_write(&mut self, path: &Path) {
        if let Some(key) = self.table.by_path(path)
            && let Some(t) = self.table.get_mut(key)
            && !t.reader.is_orphan()
        {
            t.active = true;
            return;
        }
        self.on_path(path);
    }

    /// Starts tailing `path` unless its file is already tailed; returns the file's identity
    /// when it exists (tailed, waiting for a descriptor, ignored or unreadable).
    pub(crate) fn consider(&mut self, path: &Path, input: usize, startup: bool) -> Option<DevIno> {
        let meta = self.discovery.stat(path, &self.metrics)?;
        self.consider_found(path, input, startup, &meta);
        Some(DevIno::of(&meta))
    }

    /// [`Self::consider`] for a file already looked at.
    fn consider_found(
        &mut self,
        path: &Path,
        input: usize,
        startup: bool,
        meta: &std::fs::Metadata,
    ) {
        let id = DevIno::of(meta);
        if let Some(key) = self.table.by_id(id) {
            self.found_again(key, path, meta.len());
            return;
        }
        if let Some(old) = self.table.by_path(path)
            && let Some(t) = self.table.get_mut(old)
            && !t.reader.is_orphan()
        {
            // The name now leads to another file: the old one was rotated away.
            t.reader.leave_name();
            t.active = true;
        }
        let ignore_older = self.inputs[input].ignore_older;
        if self
            .discovery
            .leaves_alone(path, ignore_older, meta, &self.metrics)
            || self.table.waiting_for(path)
        {
            return;
        }
        if !self.table.has_room() && !self.evict(None) {
            tracing::debug!(path = %path.display(), "waiting for a descriptor (tail.max_open_files)");
            self.table.wait_new(path, input, startup);
            return;
        }
        self.open_new(path, input, startup);
    }

    /// A tailed file was found (again) under `path`, `size` bytes long.
    fn found_again(&mut self, key: FileKey, path: &Path, size: u64) {
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        let old = t.reader.path().to_path_buf();
        if old != path && !t.reader.named_by(&old) {
            // Renamed to another name the globs match: follow it.
            t.reader.renamed(path.to_path_buf(), false);
            self.tracker.update_path(t.stream, path);
            self.table.unname(&old, key);
        }
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        if t.reader.path() == path {
            t.reader.named();
            self.table.name(path, key);
        }
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        // A closed file is reopened only when it changed; an open one costs one fstat.
        if t.reader.is_open() || size != t.reader.size() {
            t.active = true;
        }
    }

    /// Opens a file not tailed yet, from its checkpoint or by the start policy.
    pub(crate) fn open_new(&mut self, path: &Path, input: usize, startup: bool) {
        let mut reader = match FileReader::open(path, &self.confinement) {
            Ok(r) => r,
            Err(e) => return self.discovery.refused(path, e, &self.metrics),
        };
        let id = reader.id();
        if self.table.by_id(id).is_some() {
            return;
        }
        self.discovery.opened(path);
        let (start, unfit) = self.start_position(&reader, input, startup);
        reader.start_at(start);
        let stream = self.new_stream();
        self.tracker
            .register(stream, id, reader.fingerprint(), path, start);
        self.metrics.files_opened.inc();
        self.metrics.files_open.up();
        tracing::info!(path = %path.display(), offset = start, "tailing file");
        let grouping = self.inputs[input]
            .processor
            .as_ref()
            .and_then(|p| p.multiline.as_ref())
            .map(|_| Grouping::default());
        let template = self.template(input, path);
        self.table.insert(Tailed {
            reader,
            stream,
            input,
            template,
            covered: start,
            active: true,
            grouping,
        });
        if let Some(entry) = unfit {
            self.recover_copy(path, input, &entry);
        }
    }

    /// Where reading starts: the checkpoint of this file, what was skipped of it under
    /// `ignore_older_secs`, or `read_from`; with the checkpoint that did not fit the file
    /// (truncated, or its inode taken by another file, while sidelog was down).
    fn start_position(
        &mut self,
        reader: &FileReader,
        input: usize,
        startup: bool,
    ) -> (u64, Option<Entry>) {
        let id = reader.id();
        let size = reader.size();
        let ignored_at = self.discovery.no_longer_left_alone(id);
        if let Some(entry) = self.tracker.claim(id) {
            let Some(file) = reader.file() else {
                return (0, None);
            };
            let (at, why, fits) = resume_position(entry.fingerprint, entry.offset, file, size);
            if fits {
                tracing::debug!(path = %reader.path().display(), offset = at, "{why}");
                return (at, None);
            }
            tracing::info!(path = %reader.path().display(), "{why}");
            return (at, Some(entry));
        }
        let at = match ignored_at {
            Some(at) if at <= size => at,
            _ if startup
                && self.inputs[input].read_from == ReadFrom::End
                && !self.positions_unknown =>
            {
                size
            }
            _ => 0,
        };
        (at, None)
    }

    /// A file truncated by copytruncate while sidelog was down: the rest of the content its
    /// checkpoint was of is read from the copy (the newest file in its directory that starts
    /// with the same bytes and is long enough), from the checkpoint to its end.
    fn recover_copy(&mut self, path: &Path, input: usize, entry: &Entry) {
        if let Some((copy, file)) = self.copy_made_while_down(path, entry) {
            self.read_rest_from_copy(path, copy, file, input, entry);
        }
    }

    /// Reads what the checkpoint `entry` of the file at `was` did not cover from `copy` (the
    /// copy copytruncate made while sidelog was down), to its end: tagged with the name it was
    /// written under, then closed.
    fn read_rest_from_copy(
        &mut self,
        was: &Path,
        copy: PathBuf,
        file: File,
        input: usize,
        entry: &Entry,
    ) {
        let path = was;
        let mut reader = match FileReader::of(&copy, file, &self.confinement) {
            Ok(r) => r,
            Err(_) => return,
        };
        if self.table.by_id(reader.id()).is_some() {
            // Tailed already (the globs match the copy's name).
            return;
        }
        reader.start_at(entry.offset);
        reader.leave_name();
        let stream = self.new_stream();
        self.tracker.register(
            stream,
            reader.id(),
            reader.fingerprint(),
            &copy,
            entry.offset,
        );
        tracing::info!(path = %path.display(), copy = %copy.display(), offset = entry.offset, "the file was truncated (copytruncate) while sidelog was stopped; reading the rest of it from its copy");
        self.metrics.files_opened.inc();
        self.metrics.files_open.up();
        let template = self.template(input, path);
        let grouping = self.inputs[input]
            .processor
            .as_ref()
            .and_then(|p| p.multiline.as_ref())
            .map(|_| Grouping::default());
        self.table.insert(Tailed {
            reader,
            stream,
            input,
            template,
            covered: entry.offset,
            active: true,
            grouping,
        });
    }

    /// copytruncate's copy of the content a checkpoint was of, made while sidelog was down:
    /// newer than the checkpoints, starting with the same bytes, at least as long.
    fn copy_made_while_down(&self, path: &Path, entry: &Entry) -> Option<(PathBuf, File)> {
        let of = reader::CopyOf {
            id: DevIno {
                dev: entry.dev,
                ino: entry.inode,
            },
            fingerprint: entry.fingerprint,
            pos: entry.offset,
            mark: None,
            made_since: Some(self.resumed_from?),
        };
        reader::find_copy(path, &of, &self.confinement)
    }

    /// The constant part of a file's events: the input's fields, the Pod's tags (and its
    /// service where the input names none), and the file's name.
    pub(crate) fn template(&self, input: usize, path: &Path) -> EventTemplate {
        let i = &self.inputs[input];
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pod = self.pod_tags.as_ref().map(|(source, _)| source.current());
        let pod_tags = pod.as_ref().map_or("", |p| p.tags.as_str());
        let tags: Vec<&str> = [i.tags.as_str(), pod_tags]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect();
        let tags = match tags.as_slice() {
            [] => format!("filename:{name}"),
            some => format!("{},filename:{name}", some.join(",")),
        };
        let service = match pod.as_ref().and_then(|p| p.service.as_deref()) {
            Some(from_labels) if i.service.is_empty() => from_labels,
            _ => i.service.as_str(),
        };
        EventTemplate::new(&EventFields {
            status: &i.status,
            hostname: &self.hostname,
            service,
            source: &i.source,
            tags: &tags,
        })
    }

    /// After the Pod's labels or annotations changed: lines read from now on carry the new
    /// tags (events already in a batch keep theirs).
    pub(crate) fn apply_pod_tags(&mut self) {
        let Some((source, seen)) = &mut self.pod_tags else {
            return;
        };
        let now = source.generation();
        if now == *seen {
            return;
        }
        *seen = now;
        let rebuilt: Vec<(FileKey, EventTemplate)> = self
            .table
            .iter()
            .map(|(key, t)| (key, self.template(t.input, t.reader.path())))
            .collect();
        for (key, template) in rebuilt {
            if let Some(t) = self.table.get_mut(key) {
                t.template = template;
            }
        }
    }
}

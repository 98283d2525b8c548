//! A model check of the reader and the file table: random sequences of what apps and
//! logrotate do to a directory of logs (append, a partial line, rename-rotate, create,
//! copytruncate, truncate, delete, a new file that reuses an inode, a restart from the
//! checkpoints with changes made while sidelog was down, more files than descriptors), run
//! against the real `Tailer` on real files, and its events checked against a model of what
//! was written: every complete line is emitted exactly once and in order, except the lines
//! the documented exceptions excuse, which the model counts:
//!
//! - **a write racing copytruncate**: a line written between the copy and the truncation is
//!   in neither (the method's own loss); every other line of a copytruncated file arrives,
//!   what the reader had not read yet from the copy;
//! - **a plain truncation**: lines written after the reader's last look are gone with it;
//! - **a file without a descriptor** (more files than `tail.max_open_files`, or sidelog down)
//!   that is renamed out of the globs or deleted: what was written to it after the last read
//!   is out of reach;
//! - **a line left without its newline** when its file is rotated, deleted or truncated: it
//!   may be emitted as it is (once), or not at all.
//!
//! The reader looks at the files as a wake-up has it (the file events, then a rescan) at each
//! `Read`, however many changes came before; a truncated file may have grown past the read
//! position by then, which only its first bytes tell.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::checkpoint::Resume;
use reader::{Reader, Sidelog, config};

mod reader;

/// Names the globs match (`f0.log` ...); rotated files are `fN.log.1`, which they do not.
const FILES: usize = 5;
/// Fewer descriptors than files, so that the table closes and reopens files.
const MAX_OPEN: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// Complete lines (first completing a partial line, if the file has one).
    Append {
        file: usize,
        lines: usize,
    },
    /// The start of a line, without its newline.
    Partial {
        file: usize,
    },
    /// An empty file under the name, if there is none.
    Create {
        file: usize,
    },
    /// logrotate's default: rename to `.1` (replacing the last one), create the name anew.
    Rotate {
        file: usize,
    },
    /// logrotate's `copytruncate` once the app paused: the reader has had the wake-up the
    /// writes gave it (one turn: one read of each file that grew, not necessarily to its
    /// end), then the file is copied to `.1` and truncated in place. Every line arrives.
    PauseCopyTruncate {
        file: usize,
    },
    /// `copytruncate` racing the app: a line is written between the copy and the truncation.
    CopyTruncate {
        file: usize,
    },
    Truncate {
        file: usize,
    },
    Delete {
        file: usize,
    },
    /// Delete and create at once: the new file often gets the old one's inode.
    Recreate {
        file: usize,
    },
    /// The reader looks until nothing is new; every batch is accepted.
    Read,
    /// Stop (after reading everything), apply `meanwhile` while sidelog is down, start again
    /// from the checkpoints.
    Restart {
        meanwhile: Vec<Op>,
    },
}

fn file_op() -> impl Strategy<Value = Op> {
    let file = 0..FILES;
    prop_oneof![
        8 => (file.clone(), 1..4usize).prop_map(|(file, lines)| Op::Append { file, lines }),
        2 => file.clone().prop_map(|file| Op::Partial { file }),
        1 => file.clone().prop_map(|file| Op::Create { file }),
        2 => file.clone().prop_map(|file| Op::Rotate { file }),
        1 => file.clone().prop_map(|file| Op::PauseCopyTruncate { file }),
        1 => file.clone().prop_map(|file| Op::CopyTruncate { file }),
        1 => file.clone().prop_map(|file| Op::Truncate { file }),
        1 => file.clone().prop_map(|file| Op::Delete { file }),
        1 => file.prop_map(|file| Op::Recreate { file }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => file_op(),
        4 => Just(Op::Read),
        1 => proptest::collection::vec(file_op(), 0..4)
            .prop_map(|meanwhile| Op::Restart { meanwhile }),
    ]
}

/// One file's content from its creation to its deletion or truncation: the lines of one
/// generation start with its number, so an event tells where it came from.
#[derive(Debug, Default)]
struct Generation {
    /// Complete lines written, in order.
    lines: Vec<String>,
    /// The start of the next line, written without its newline.
    partial: Option<String>,
    /// Lines written before the reader's last look (all emitted, unless excused).
    looked: usize,
    /// Lines that may be missing, with the exception that excuses them.
    excused: BTreeSet<usize>,
    /// The line left without newline when the generation ended: it may be emitted as is.
    ended_partial: Option<String>,
    /// Line numbers emitted, in the order they were.
    emitted: Vec<usize>,
}

/// What the exceptions excused, over a case.
#[derive(Debug, Default)]
struct Excused {
    /// Lines written between copytruncate's copy and its truncation.
    racing: usize,
    /// Lines written after the last look and before a plain truncation.
    window: usize,
    /// Lines not read yet that only a copytruncate copy held, replaced before the reader
    /// looked again (logrotate rotating once more, at once).
    copy_gone: usize,
    no_descriptor: usize,
    partial_as_is: usize,
}

struct Model {
    dir: tempfile::TempDir,
    generations: Vec<Generation>,
    /// The generation each name holds now.
    names: [Option<usize>; FILES],
    /// Per name, the generation its `.1` copy holds and how many of its lines, until the
    /// reader looks (and takes the copy up).
    copies: [Option<(usize, usize)>; FILES],
    excused: Excused,
}

impl Model {
    fn path(&self, file: usize) -> PathBuf {
        self.dir.path().join(format!("f{file}.log"))
    }

    fn rotated(&self, file: usize) -> PathBuf {
        self.dir.path().join(format!("f{file}.log.1"))
    }

    fn create(&mut self, file: usize) -> usize {
        File::create(self.path(file)).expect("create");
        let g = self.generations.len();
        self.generations.push(Generation::default());
        self.names[file] = Some(g);
        g
    }

    fn live(&mut self, file: usize) -> usize {
        match self.names[file] {
            Some(g) => g,
            None => self.create(file),
        }
    }

    fn write(&self, file: usize, text: &str) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.path(file))
            .expect("open for append");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn append(&mut self, file: usize, lines: usize) {
        let g = self.live(file);
        let mut text = String::new();
        if let Some(start) = self.generations[g].partial.take() {
            text.push_str(" end\n");
            self.generations[g].lines.push(format!("{start} end"));
        }
        for _ in 0..lines {
            let n = self.generations[g].lines.len();
            // Lines of several lengths, so that reads end anywhere.
            let line = format!("g{g:03}-{n:04}:{}", "x".repeat(n * 7 % 23));
            text.push_str(&line);
            text.push('\n');
            self.generations[g].lines.push(line);
        }
        self.write(file, &text);
    }

    fn partial(&mut self, file: usize) {
        let g = self.live(file);
        if self.generations[g].partial.is_some() {
            return;
        }
        let n = self.generations[g].lines.len();
        let start = format!("g{g:03}-{n:04} start");
        self.write(file, &start);
        self.generations[g].partial = Some(start);
    }

    /// The generation under `file` ends (renamed away, deleted, truncated). Without a
    /// descriptor on it, what was written after the reader's last look is out of reach.
    fn end(&mut self, file: usize, reachable: bool) -> Option<usize> {
        let g = self.names[file].take()?;
        let generation = &mut self.generations[g];
        generation.ended_partial = generation.partial.take();
        if !reachable {
            let unread = generation.looked..generation.lines.len();
            self.excused.no_descriptor += unread.len();
            generation.excused.extend(unread);
        }
        Some(g)
    }

    /// The `.1` of `file` is replaced or removed: a copy the reader has not looked at since it
    /// was made takes what it held with it.
    fn copy_gone(&mut self, file: usize) {
        if let Some((g, copied)) = self.copies[file].take() {
            let generation = &mut self.generations[g];
            let unread = generation.looked..copied.max(generation.looked);
            self.excused.copy_gone += unread.len();
            generation.excused.extend(unread);
        }
    }

    /// The name holds a new, empty generation (after a truncation).
    fn new_generation(&mut self, file: usize) {
        let g = self.generations.len();
        self.generations.push(Generation::default());
        self.names[file] = Some(g);
    }

    /// copytruncate of content sidelog never saw: what it had not read is in the copy, which
    /// nothing tells from another file (the descriptor exception).
    fn unknown_truncated(&mut self, file: usize) {
        let Some(g) = self.end(file, true) else {
            return;
        };
        let generation = &mut self.generations[g];
        let unread = generation.looked..generation.lines.len();
        self.excused.no_descriptor += unread.len();
        generation.excused.extend(unread);
    }

    /// A plain truncation: lines written after the reader's last look are gone with it.
    fn truncated(&mut self, file: usize) {
        let Some(g) = self.end(file, true) else {
            return;
        };
        let generation = &mut self.generations[g];
        let unread = generation.looked..generation.lines.len();
        self.excused.window += unread.len();
        generation.excused.extend(unread);
    }

    /// copytruncate: every line is in the copy, except those written since `copied` (the
    /// number of lines the copy holds).
    fn copy_truncated(&mut self, file: usize, copied: usize) {
        let Some(g) = self.end(file, true) else {
            return;
        };
        let generation = &mut self.generations[g];
        let racing = copied..generation.lines.len();
        self.excused.racing += racing.len();
        generation.excused.extend(racing);
    }

    /// Records an event's message, checking it is a line that was written.
    fn record(&mut self, message: &str) -> Result<(), TestCaseError> {
        let parsed = message.strip_prefix('g').and_then(|m| {
            Some((
                m.get(..3)?.parse::<usize>().ok()?,
                m.get(4..8)?.parse::<usize>().ok()?,
            ))
        });
        let Some((g, n)) = parsed else {
            return Err(TestCaseError::fail(format!(
                "an event no one wrote: {message:?}"
            )));
        };
        let generation: &mut Generation = self
            .generations
            .get_mut(g)
            .ok_or_else(|| TestCaseError::fail(format!("unknown generation: {message:?}")))?;
        let expected = generation.lines.get(n).map(String::as_str);
        let as_is = generation.ended_partial.as_deref() == Some(message);
        prop_assert!(
            expected == Some(message) || as_is,
            "event {message:?} is not line {n} as written ({expected:?})"
        );
        if let Some(&last) = generation.emitted.last() {
            prop_assert!(
                n > last,
                "line {n} of generation {g} after line {last}: repeated or out of order"
            );
        }
        if as_is {
            self.excused.partial_as_is += 1;
        }
        generation.emitted.push(n);
        Ok(())
    }

    /// After a look: every line written before it was emitted, unless excused.
    fn check_complete(&mut self) -> Result<(), TestCaseError> {
        for (g, generation) in self.generations.iter_mut().enumerate() {
            let emitted: BTreeSet<usize> = generation.emitted.iter().copied().collect();
            for n in 0..generation.lines.len() {
                prop_assert!(
                    emitted.contains(&n) || generation.excused.contains(&n),
                    "line {n} of generation {g} ({:?}) was never emitted",
                    generation.lines[n]
                );
            }
            generation.looked = generation.lines.len();
        }
        // The reader has taken up every copy it will need.
        self.copies = [None; FILES];
        Ok(())
    }
}

/// Applies a change to the files.
fn apply(model: &mut Model, mut sidelog: Sidelog<'_>, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Append { file, lines } => model.append(file, lines),
        Op::Partial { file } => model.partial(file),
        Op::Create { file } => {
            if model.names[file].is_none() {
                model.create(file);
            }
        }
        Op::Rotate { file } | Op::Delete { file } | Op::Recreate { file } => {
            if model.names[file].is_none() {
                return Ok(());
            }
            let path = model.path(file);
            let reachable = sidelog.reader().is_some_and(|r| r.has_descriptor(&path));
            if let Op::Rotate { .. } = op {
                model.copy_gone(file);
                fs::rename(&path, model.rotated(file)).expect("rotate");
            } else {
                fs::remove_file(&path).expect("delete");
            }
            model.end(file, reachable);
            if !matches!(op, Op::Delete { .. }) {
                model.create(file);
            }
        }
        Op::PauseCopyTruncate { file } | Op::CopyTruncate { file } => {
            if model.names[file].is_none() {
                return Ok(());
            }
            if let (Op::PauseCopyTruncate { .. }, Sidelog::Up(reader)) = (op, &mut sidelog) {
                // The app paused: the reader had its wake-up for what was written.
                reader.turn(model, false)?;
            }
            let path = model.path(file);
            // Without the first bytes of the content, no copy can be told for it: a file sidelog
            // never got to look at (no descriptor for it, or written and rotated while it was
            // down before it had read it) loses what it was not read of.
            let known = sidelog.knows_content(&path);
            // A new copy, as logrotate makes it (copying into the last one would rewrite a
            // file the reader may still be reading).
            let rotated = model.rotated(file);
            model.copy_gone(file);
            let _ = fs::remove_file(&rotated);
            fs::copy(&path, rotated).expect("copy");
            let g = model.live(file);
            let copied = model.generations[g].lines.len();
            let copied_partial = model.generations[g].partial.clone();
            if let Op::CopyTruncate { .. } = op {
                // The app writes between the copy and the truncation.
                model.append(file, 1);
            }
            truncate(&path);
            if known {
                model.copy_truncated(file, copied);
                model.copies[file] = Some((g, copied));
                // The copy's last line without newline may go out as it is, once.
                model.generations[g].ended_partial = copied_partial;
            } else {
                model.unknown_truncated(file);
            }
            model.new_generation(file);
        }
        Op::Truncate { file } => {
            if model.names[file].is_none() {
                return Ok(());
            }
            truncate(&model.path(file));
            model.truncated(file);
            model.new_generation(file);
        }
        Op::Read | Op::Restart { .. } => unreachable!("not a change to the files"),
    }
    Ok(())
}

fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
}

fn run(ops: &[Op]) -> Result<Excused, TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let mut model = Model {
        dir,
        generations: Vec::new(),
        names: [None; FILES],
        copies: [None; FILES],
        excused: Excused::default(),
    };
    let mut reader = Reader::start(&config, Resume::default());
    for op in ops {
        match op {
            Op::Read => {
                reader.look(&mut model)?;
                model.check_complete()?;
            }
            Op::Restart { meanwhile } => {
                reader.look(&mut model)?;
                model.check_complete()?;
                let resume = reader.tracker.snapshot();
                drop(reader);
                // The checkpoints' time as the file system counts it (what a copy made while
                // down is compared with).
                let stamp = model.dir.path().join("checkpoints-written");
                fs::write(&stamp, b"").expect("stamp");
                let written_at = fs::metadata(&stamp).and_then(|m| m.modified()).ok();
                for op in meanwhile {
                    apply(&mut model, Sidelog::Down(&resume), op)?;
                }
                let resume = Resume {
                    entries: resume,
                    written_at,
                    unknown: false,
                };
                reader = Reader::start(&config, resume);
                reader.look(&mut model)?;
                model.check_complete()?;
            }
            change => apply(&mut model, Sidelog::Up(&mut reader), change)?,
        }
    }
    reader.look(&mut model)?;
    model.check_complete()?;
    Ok(model.excused)
}

proptest! {
    // proptest's 256 cases by default (a few seconds: each is tens of operations on real
    // files); PROPTEST_CASES=10000 for a longer hunt.
    #[test]
    fn every_complete_line_once_in_order(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}

/// A file deleted while sidelog was down, its inode taken by a copytruncate's copy of
/// another file: the copy is not read as the rest of the deleted file (found by the model
/// check, once rotated files were looked for at start).
#[test]
fn an_inode_reused_while_down_is_not_taken_for_a_rotated_file() {
    run(&[
        Op::Append { file: 2, lines: 1 },
        Op::CopyTruncate { file: 2 },
        Op::Append { file: 0, lines: 1 },
        Op::Restart {
            meanwhile: vec![Op::Delete { file: 2 }, Op::CopyTruncate { file: 0 }],
        },
    ])
    .expect("the model holds");
}

/// The exceptions are reachable: a case built to hit each one excuses what it should, and
/// nothing else.
#[test]
fn the_exceptions_excuse_what_they_say() {
    let excused = run(&[
        Op::Append { file: 0, lines: 2 },
        Op::Read,
        Op::Append { file: 0, lines: 3 },
        // The three lines not read yet come from the copy; the racing one is lost.
        Op::CopyTruncate { file: 0 },
        Op::Append { file: 0, lines: 1 },
        Op::Read,
        Op::Append { file: 3, lines: 2 },
        Op::Read,
        Op::Append { file: 3, lines: 4 },
        Op::Truncate { file: 3 },
        Op::Partial { file: 1 },
        Op::Read,
        Op::Rotate { file: 1 },
        Op::Restart {
            meanwhile: vec![Op::Append { file: 2, lines: 2 }, Op::Delete { file: 2 }],
        },
    ])
    .expect("the model holds");
    assert_eq!(excused.racing, 1);
    assert_eq!(excused.window, 4);
    assert_eq!(excused.no_descriptor, 2);
    assert_eq!(excused.partial_as_is, 1);
}

/// copytruncate after a pause loses nothing, whether the reader was behind (it reads the
/// rest from the copy), closed (more files than descriptors), or stopped.
#[test]
fn copytruncate_after_a_pause_loses_nothing() {
    let excused = run(&[
        Op::Append { file: 0, lines: 30 },
        Op::PauseCopyTruncate { file: 0 },
        Op::Append { file: 0, lines: 2 },
        Op::Read,
        Op::Append { file: 1, lines: 3 },
        Op::Append { file: 2, lines: 3 },
        Op::Append { file: 3, lines: 3 },
        Op::Append { file: 4, lines: 3 },
        Op::Read,
        Op::Append { file: 1, lines: 20 },
        Op::PauseCopyTruncate { file: 1 },
        Op::Read,
        Op::Append { file: 2, lines: 5 },
        Op::Restart {
            meanwhile: vec![
                Op::Append { file: 2, lines: 5 },
                Op::PauseCopyTruncate { file: 2 },
                Op::Append { file: 2, lines: 1 },
            ],
        },
    ])
    .expect("the model holds");
    assert_eq!(
        excused.racing + excused.window + excused.no_descriptor + excused.copy_gone,
        0
    );
}

/// Found by the model check: a file closed under the descriptor budget, copytruncated and then
/// deleted, was closed as read to its end on the size it had when it was closed; it is now
/// opened first, and its rest read from the copy.
#[test]
fn a_closed_file_copytruncated_then_deleted_is_read_from_its_copy() {
    run(&[
        Op::Append { file: 4, lines: 1 },
        Op::Append { file: 1, lines: 1 },
        Op::Restart { meanwhile: vec![] },
        Op::Append { file: 0, lines: 1 },
        Op::Partial { file: 3 },
        Op::Read,
        Op::Append { file: 4, lines: 1 },
        Op::CopyTruncate { file: 4 },
        Op::Append { file: 0, lines: 1 },
        Op::Append { file: 0, lines: 1 },
        Op::Append { file: 0, lines: 1 },
        Op::Delete { file: 4 },
        Op::Append { file: 0, lines: 1 },
        Op::CopyTruncate { file: 3 },
    ])
    .expect("the model holds");
}

/// Found by the model check: an empty rotated file, closed and kept in mind for late lines,
/// was deleted and its inode taken by a copytruncate's copy; the copy was read as its late
/// lines. A file with nothing to know it by is not kept in mind.
#[test]
fn a_reused_inode_is_not_taken_for_a_closed_rotated_file() {
    run(&[
        Op::Restart {
            meanwhile: vec![Op::Create { file: 1 }],
        },
        Op::Rotate { file: 1 },
        Op::Append { file: 1, lines: 1 },
        Op::PauseCopyTruncate { file: 1 },
    ])
    .expect("the model holds");
}

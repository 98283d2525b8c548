//! From a read to events: frames the bytes of one read into lines, passes them through the
//! input's processing (multi-line grouping, rules, JSON lines) when it has any, and appends
//! the events to the open batch with the file range each one covers. Skipped and dropped
//! lines are covered by the next event's range, so a checkpoint never stops short of them
//! for good and never passes a line still waiting in a multi-line event.

use std::borrow::Cow;

use super::InputRuntime;
use super::frame::{self, Framed};
use super::table::Tailed;
use crate::config::Encoding;
use crate::encode::{Batch, BatchBuilder, EventRange, EventTemplate, LinePiece, TRUNCATED_MARKER};
use crate::position::StreamId;
use crate::process::{Grouping, LineAction, Processor};

/// The open batch, and the batches full or due that wait to be handed over.
pub(crate) struct Events {
    pub builder: BatchBuilder,
    pub ready: Vec<Batch>,
}

/// What one read amounted to, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadCounts {
    /// Bytes framed (the rest is a partial last line).
    pub consumed: usize,
    pub lines: u64,
    pub skipped_empty: u64,
    pub joined: u64,
}

/// Frames `data`, the file's bytes from `base`, and turns its lines into events of file `t`.
/// With `finish`, a last line without newline is framed as it is.
pub(crate) fn frame_and_emit(
    events: &mut Events,
    input: &InputRuntime,
    t: &mut Tailed,
    data: &[u8],
    base: u64,
    finish: bool,
) -> ReadCounts {
    let Tailed {
        reader,
        stream,
        template,
        covered,
        grouping,
        ..
    } = t;
    let file = FileEvents {
        template,
        stream: *stream,
        covered,
        grouping: grouping.as_mut(),
        continued: reader.continued(),
    };
    emit_read(events, &LineRules::of(input), file, data, base, finish)
}

/// How an input turns lines into events.
#[derive(Clone, Copy)]
pub(crate) struct LineRules<'a> {
    pub max_line: usize,
    pub skip_empty: bool,
    pub trim: bool,
    pub encoding: Encoding,
    pub processor: Option<&'a Processor>,
}

impl LineRules<'_> {
    fn of(input: &InputRuntime) -> LineRules<'_> {
        LineRules {
            max_line: input.max_line,
            skip_empty: input.skip_empty,
            trim: input.trim,
            encoding: input.encoding,
            processor: input.processor.as_ref(),
        }
    }
}

/// One file's side of a read: its events' constant part, what they cover so far, the
/// multi-line event being assembled, and whether the read starts inside a cut line.
pub(crate) struct FileEvents<'a> {
    pub template: &'a EventTemplate,
    pub stream: StreamId,
    pub covered: &'a mut u64,
    pub grouping: Option<&'a mut Grouping>,
    pub continued: &'a mut bool,
}

/// Frames `data` (the file's bytes from `base`) and turns its lines into events.
pub(super) fn emit_read(
    events: &mut Events,
    rules: &LineRules<'_>,
    file: FileEvents<'_>,
    data: &[u8],
    base: u64,
    finish: bool,
) -> ReadCounts {
    let timestamp = crate::clock::now_ms();
    let mut counts = ReadCounts::default();
    let FileEvents {
        template,
        stream,
        covered,
        mut grouping,
        continued,
    } = file;
    // Lines grouped into multi-line events keep their indentation: the event is trimmed
    // as a whole when it is sent, as the Agent does.
    let trim_lines = rules.trim && grouping.is_none();
    let mut sink = Sink {
        events,
        template,
        stream,
        processor: rules.processor,
        trim: rules.trim,
    };
    let mut on_line = |line: Line<'_>| {
        counts.lines += 1;
        let line = if trim_lines { line.trimmed() } else { line };
        if line.text.is_empty() && line.whole() && rules.skip_empty {
            counts.skipped_empty += 1;
            return;
        }
        if sink.line(line, covered, grouping.as_deref_mut()) {
            counts.joined += 1;
        }
    };
    let read = Read {
        data,
        base,
        max_line: rules.max_line,
        finish,
        timestamp,
    };
    let consumed = match rules.encoding {
        Encoding::Utf8 => read.utf8_lines(continued, &mut on_line),
        Encoding::Utf16Le => read.utf16_lines(continued, false, &mut on_line),
        Encoding::Utf16Be => read.utf16_lines(continued, true, &mut on_line),
    };
    counts.consumed = consumed;
    counts
}

/// One read's bytes and what framing them needs.
struct Read<'a> {
    data: &'a [u8],
    /// Where `data` starts in the file.
    base: u64,
    max_line: usize,
    finish: bool,
    timestamp: u64,
}

impl Read<'_> {
    /// Frames UTF-8 text; returns the bytes consumed.
    fn utf8_lines(&self, continued: &mut bool, on_line: &mut impl FnMut(Line<'_>)) -> usize {
        let data = self.data;
        // One UTF-8 check for all complete lines of the read, instead of one per line.
        let valid = match memchr::memrchr(b'\n', data) {
            Some(last) => simdutf8::basic::from_utf8(&data[..=last]).is_ok(),
            None => false,
        };
        frame::frame(data, self.max_line, continued, self.finish, |f| {
            on_line(Line::of(&f, data, self.base, valid, self.timestamp))
        })
    }

    /// Frames UTF-16 text, each line turned into UTF-8 (a byte order mark at the start of
    /// the file dropped); returns the bytes consumed.
    fn utf16_lines(
        &self,
        continued: &mut bool,
        big_endian: bool,
        on_line: &mut impl FnMut(Line<'_>),
    ) -> usize {
        let data = self.data;
        let mut text = Vec::new();
        frame::frame_utf16(
            data,
            self.max_line,
            continued,
            self.finish,
            big_endian,
            |f| {
                let mut raw = &data[f.text_start..f.text_start + f.text_len];
                let at_file_start = self.base + f.text_start as u64 == 0;
                if at_file_start && matches!(raw, [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..]) {
                    raw = &raw[2..];
                }
                frame::utf16_to_utf8(raw, big_endian, &mut text);
                on_line(Line {
                    text: &text,
                    valid: true,
                    cut_before: f.cut_before,
                    cut_after: f.cut_after,
                    text_offset: self.base + f.text_start as u64,
                    end: self.base + f.end as u64,
                    timestamp_ms: self.timestamp,
                })
            },
        )
    }
}

/// A framed line with its place in the file.
#[derive(Clone, Copy)]
struct Line<'a> {
    text: &'a [u8],
    valid: bool,
    cut_before: bool,
    cut_after: bool,
    /// Where `text` begins in the file, and where the line (its newline included) ends.
    text_offset: u64,
    end: u64,
    timestamp_ms: u64,
}

impl<'a> Line<'a> {
    fn of(f: &Framed, data: &'a [u8], base: u64, valid: bool, timestamp_ms: u64) -> Line<'a> {
        Line {
            text: &data[f.text_start..f.text_start + f.text_len],
            valid,
            cut_before: f.cut_before,
            cut_after: f.cut_after,
            text_offset: base + f.text_start as u64,
            end: base + f.end as u64,
            timestamp_ms,
        }
    }

    fn whole(&self) -> bool {
        !self.cut_before && !self.cut_after
    }

    /// The line without the white space around its text.
    fn trimmed(self) -> Line<'a> {
        let keep = crate::process::trim_space(self.text);
        Line {
            text: &self.text[keep.clone()],
            text_offset: self.text_offset + keep.start as u64,
            ..self
        }
    }
}

/// Where a file's events go: the open batch, through the input's [`Processor`] if it has one.
pub(crate) struct Sink<'a> {
    pub events: &'a mut Events,
    pub template: &'a EventTemplate,
    pub stream: StreamId,
    pub processor: Option<&'a Processor>,
    /// Trim white space around each message (the input's `trim_whitespace`).
    pub trim: bool,
}

impl Sink<'_> {
    /// A line that goes out on its own while grouping is on, trimmed if the input trims
    /// (without grouping, lines are trimmed as they are framed).
    fn trimmed<'l>(&self, line: Line<'l>) -> Line<'l> {
        if self.trim { line.trimmed() } else { line }
    }

    /// One line: an event of its own, or part of the multi-line event being assembled.
    /// True when it was appended to a pending event.
    fn line(&mut self, line: Line<'_>, covered: &mut u64, grouping: Option<&mut Grouping>) -> bool {
        let multiline = self.processor.and_then(|p| p.multiline.as_ref());
        let Some((ml, g)) = multiline.zip(grouping) else {
            self.single(line, covered);
            return false;
        };
        if !line.whole() {
            // A piece of a line too long for one event goes out on its own, in order,
            // trimmed as a line on its own is.
            self.flush(g, covered);
            self.single(self.trimmed(line), covered);
            return false;
        }
        let action = ml.classify(line.text, g);
        let fits = g.text.len() + 1 + line.text.len() <= ml.max_bytes;
        match action {
            LineAction::Append if !g.is_empty() && fits => {
                g.append(line.text, line.end, line.valid);
                true
            }
            LineAction::Alone => {
                self.flush(g, covered);
                self.single(self.trimmed(line), covered);
                false
            }
            _ => {
                self.flush(g, covered);
                g.begin(
                    line.text,
                    *covered,
                    line.text_offset,
                    line.end,
                    line.valid,
                    line.timestamp_ms,
                );
                ml.note_begin(g, action);
                false
            }
        }
    }

    /// A line as an event of its own; its range starts where the last event ended.
    fn single(&mut self, line: Line<'_>, covered: &mut u64) {
        let range = EventRange {
            stream: self.stream,
            start: *covered,
            text_offset: line.text_offset,
            end: line.end,
        };
        let piece = LinePiece {
            text: line.text,
            valid_utf8: line.valid,
            cut_before: line.cut_before,
            cut_after: line.cut_after,
            status: None,
        };
        if self.event(range, piece, line.timestamp_ms) {
            *covered = line.end;
        }
    }

    /// One event; false when a rule dropped it (its bytes are then covered by the next
    /// event's range).
    fn event(&mut self, range: EventRange, piece: LinePiece<'_>, timestamp_ms: u64) -> bool {
        let Events { builder, ready } = &mut *self.events;
        let mut emit = |b: Batch| ready.push(b);
        let Some(processor) = self.processor else {
            builder.append_line(self.template, timestamp_ms, range, piece, &mut emit);
            return true;
        };
        let Some(out) = processor.finish(marked_text(&piece), piece.cut_before || piece.cut_after)
        else {
            return false;
        };
        // A masked copy is checked again (a placeholder could meet an invalid neighbour).
        let valid = piece.valid_utf8 && matches!(out.text, std::borrow::Cow::Borrowed(_));
        // The marks of a cut line are in the text already.
        let piece = LinePiece {
            text: &out.text,
            valid_utf8: valid,
            status: out.status.as_deref(),
            cut_before: false,
            cut_after: false,
        };
        builder.append_line(
            self.template,
            out.timestamp_ms.unwrap_or(timestamp_ms),
            range,
            piece,
            &mut emit,
        );
        true
    }

    /// Sends the multi-line event being assembled, if any.
    pub(crate) fn flush(&mut self, g: &mut Grouping, covered: &mut u64) {
        if g.is_empty() {
            return;
        }
        let text = std::mem::take(&mut g.text);
        let keep = if self.trim {
            crate::process::trim_space(&text)
        } else {
            0..text.len()
        };
        let range = EventRange {
            stream: self.stream,
            start: g.start,
            text_offset: g.text_offset + keep.start as u64,
            end: g.end,
        };
        let piece = LinePiece {
            text: &text[keep],
            valid_utf8: g.valid_utf8,
            cut_before: false,
            cut_after: false,
            status: None,
        };
        if self.event(range, piece, g.timestamp_ms) {
            *covered = g.end;
        }
        g.text = text;
        g.clear();
    }
}

/// What the rules see of an event, as the Agent's rules see it: a piece of a cut line with
/// its `...TRUNCATED...` marks, and text that is not UTF-8 with U+FFFD in its place (so that
/// `.` matches there as it does in Go).
fn marked_text<'a>(piece: &LinePiece<'a>) -> Cow<'a, [u8]> {
    let text: Cow<'a, [u8]> = if piece.cut_before || piece.cut_after {
        let mut marked = Vec::with_capacity(piece.text.len() + 2 * TRUNCATED_MARKER.len());
        if piece.cut_before {
            marked.extend_from_slice(TRUNCATED_MARKER);
        }
        marked.extend_from_slice(piece.text);
        if piece.cut_after {
            marked.extend_from_slice(TRUNCATED_MARKER);
        }
        Cow::Owned(marked)
    } else {
        Cow::Borrowed(piece.text)
    };
    if piece.valid_utf8 {
        return text;
    }
    match String::from_utf8_lossy(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(valid) => Cow::Owned(valid.into_bytes()),
    }
}

//! From a read to events: frames the bytes of one read into lines, passes them through the
//! input's processing (multi-line grouping, rules, JSON lines) when it has any, and appends
//! the events to the open batch with the file range each one covers. Skipped and dropped
//! lines are covered by the next event's range, so a checkpoint never stops short of them
//! for good and never passes a line still waiting in a multi-line event.

use super::InputRuntime;
use super::frame::{self, Framed};
use super::table::Tailed;
use crate::encode::{Batch, BatchBuilder, EventRange, EventTemplate, LinePiece, StreamId};
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
    // One UTF-8 check for all complete lines of the read, instead of one per line.
    let valid = match memchr::memrchr(b'\n', data) {
        Some(last) => simdutf8::basic::from_utf8(&data[..=last]).is_ok(),
        None => false,
    };
    let timestamp = crate::clock::now_ms();
    let mut counts = ReadCounts::default();
    let Tailed {
        reader,
        stream,
        template,
        covered,
        grouping,
        ..
    } = t;
    let mut sink = Sink {
        events,
        template,
        stream: *stream,
        processor: input.processor.as_ref(),
    };
    let consumed = frame::frame(data, input.max_line, reader.continued(), finish, |f| {
        counts.lines += 1;
        if f.text_len == 0 && !f.cut_before && !f.cut_after && input.skip_empty {
            counts.skipped_empty += 1;
            return;
        }
        let line = Line::of(&f, data, base, valid, timestamp);
        if sink.line(line, covered, grouping.as_mut()) {
            counts.joined += 1;
        }
    });
    counts.consumed = consumed;
    counts
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
}

/// Where a file's events go: the open batch, through the input's [`Processor`] if it has one.
pub(crate) struct Sink<'a> {
    pub events: &'a mut Events,
    pub template: &'a EventTemplate,
    pub stream: StreamId,
    pub processor: Option<&'a Processor>,
}

impl Sink<'_> {
    /// One line: an event of its own, or part of the multi-line event being assembled.
    /// True when it was appended to a pending event.
    fn line(&mut self, line: Line<'_>, covered: &mut u64, grouping: Option<&mut Grouping>) -> bool {
        let multiline = self.processor.and_then(|p| p.multiline.as_ref());
        let Some((ml, g)) = multiline.zip(grouping) else {
            self.single(line, covered);
            return false;
        };
        if !line.whole() {
            // A piece of a line too long for one event goes out on its own, in order.
            self.flush(g, covered);
            self.single(line, covered);
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
                self.single(line, covered);
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
        let Some(out) = processor.finish(piece.text) else {
            return false;
        };
        // A masked copy is checked again (a placeholder could meet an invalid neighbour).
        let valid = piece.valid_utf8 && matches!(out.text, std::borrow::Cow::Borrowed(_));
        let piece = LinePiece {
            text: &out.text,
            valid_utf8: valid,
            status: out.status.as_deref(),
            ..piece
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
        let range = EventRange {
            stream: self.stream,
            start: g.start,
            text_offset: g.text_offset,
            end: g.end,
        };
        let piece = LinePiece {
            text: &text,
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

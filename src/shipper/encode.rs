//! Encoding: lines become Datadog events written straight into a batch's JSON buffer.
//!
//! This module owns the event shape (exactly the seven fields the Datadog Agent sends), JSON
//! string escaping, the split of lines too long for one event, and the batch limits. Nothing
//! here allocates per line: the per-file constant part of an event is encoded once into an
//! [`EventTemplate`], the message is escaped into the batch buffer in place, and an event that
//! does not fit is rolled back by truncating the buffer.

use std::time::Instant;

use crate::config::INTAKE_MAX_EVENT_BYTES;
use crate::position::{Mark, StreamId};

/// Marker the Datadog Agent puts where it cut a long line.
pub const TRUNCATED_MARKER: &[u8] = b"...TRUNCATED...";

const EVENT_PREFIX: &[u8] = br#"{"message":""#;

/// The bytes of an event other than the message and timestamp, encoded once per file.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    /// `","status":"info","timestamp":`
    after_message: Vec<u8>,
    /// `,"hostname":...,"ddtags":"..."}`
    after_timestamp: Vec<u8>,
}

/// The per-event metadata fields.
pub struct EventFields<'a> {
    pub status: &'a str,
    pub hostname: &'a str,
    pub service: &'a str,
    pub source: &'a str,
    /// Already comma-joined.
    pub tags: &'a str,
}

impl EventTemplate {
    pub fn new(fields: &EventFields<'_>) -> EventTemplate {
        let mut after_message = Vec::new();
        after_message.extend_from_slice(br#"","status":""#);
        escape_str(&mut after_message, fields.status.as_bytes());
        after_message.extend_from_slice(br#"","timestamp":"#);
        let mut after_timestamp = Vec::new();
        for (name, value) in [
            ("hostname", fields.hostname),
            ("service", fields.service),
            ("ddsource", fields.source),
            ("ddtags", fields.tags),
        ] {
            after_timestamp.extend_from_slice(b",\"");
            after_timestamp.extend_from_slice(name.as_bytes());
            after_timestamp.extend_from_slice(b"\":\"");
            escape_str(&mut after_timestamp, value.as_bytes());
            after_timestamp.push(b'"');
        }
        after_timestamp.push(b'}');
        EventTemplate {
            after_message,
            after_timestamp,
        }
    }
}

/// 0: copy as is; `u`: write `\u00XX`; otherwise the letter after the backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Escapes valid UTF-8 `s` as the inside of a JSON string.
#[inline]
pub fn escape_str(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    // Scan eight bytes at a time for anything below 0x20, a quote or a backslash; most log
    // bytes need no escape, so the common case is one check per word.
    while i + 8 <= s.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&s[i..i + 8]);
        let w = u64::from_le_bytes(word);
        if !needs_escape_word(w) {
            i += 8;
            continue;
        }
        for _ in 0..8 {
            let b = s[i];
            let e = ESCAPE[b as usize];
            if e != 0 {
                out.extend_from_slice(&s[start..i]);
                write_escape(out, b, e);
                start = i + 1;
            }
            i += 1;
        }
    }
    while i < s.len() {
        let b = s[i];
        let e = ESCAPE[b as usize];
        if e != 0 {
            out.extend_from_slice(&s[start..i]);
            write_escape(out, b, e);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&s[start..]);
}

#[inline]
fn needs_escape_word(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below 0x20, or equal to '"' (0x22) or '\\' (0x5c). Bytes >= 0x80 can give false
    // positives, which only send the word through the exact per-byte path.
    let below = w.wrapping_sub(ONES * 0x20);
    let quote = (w ^ (ONES * 0x22)).wrapping_sub(ONES);
    let backslash = (w ^ (ONES * 0x5c)).wrapping_sub(ONES);
    (below | quote | backslash) & !w & HIGH != 0
}

#[inline]
fn write_escape(out: &mut Vec<u8>, b: u8, e: u8) {
    if e == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xf) as usize],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', e]);
    }
}

/// Escapes arbitrary bytes, replacing each invalid UTF-8 sequence with U+FFFD. Returns whether
/// any replacement was made.
pub fn escape_lossy(out: &mut Vec<u8>, s: &[u8], known_valid: bool) -> bool {
    if known_valid || simdutf8::basic::from_utf8(s).is_ok() {
        escape_str(out, s);
        return false;
    }
    for chunk in s.utf8_chunks() {
        escape_str(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
    true
}

/// Where an event's bytes are in its file: `[start, end)` of `stream` are covered by it (skipped
/// lines before it included), and its text begins at `text_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRange {
    pub stream: StreamId,
    pub start: u64,
    pub text_offset: u64,
    pub end: u64,
}

/// A JSON array of events and the file ranges it covers.
#[derive(Debug, Default)]
pub struct Batch {
    /// `[event,event,...]`, complete once sealed.
    pub body: Vec<u8>,
    pub events: usize,
    /// Per stream, the contiguous ranges in the order they were read.
    pub marks: Vec<Mark>,
    /// Raw line bytes (messages before escaping), for throughput accounting.
    pub line_bytes: u64,
}

impl Batch {
    fn add_mark(&mut self, m: Mark) {
        if let Some(last) = self.marks.last_mut()
            && last.stream == m.stream
            && last.end == m.start
        {
            last.end = m.end;
            return;
        }
        self.marks.push(m);
    }
}

/// One line (or piece of a line) handed to the encoder.
#[derive(Debug, Clone, Copy)]
pub struct LinePiece<'a> {
    /// The message bytes, line ending removed.
    pub text: &'a [u8],
    /// Whether `text` is known to be valid UTF-8 (checked once for the whole read).
    pub valid_utf8: bool,
    /// This piece continues a line that was cut before it.
    pub cut_before: bool,
    /// The line continues after this piece.
    pub cut_after: bool,
    /// `status` for this event instead of the input's (from a JSON line's level).
    pub status: Option<&'a str>,
}

/// Counts of encoder decisions, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncodeStats {
    pub events: u64,
    pub invalid_utf8: u64,
    pub split_pieces: u64,
}

/// Builds batches within the intake's limits.
pub struct BatchBuilder {
    max_events: usize,
    max_bytes: usize,
    max_event_bytes: usize,
    current: Batch,
    opened: Option<Instant>,
    spare: Vec<Vec<u8>>,
    pub stats: EncodeStats,
}

impl BatchBuilder {
    pub fn new(max_events: usize, max_bytes: usize) -> BatchBuilder {
        BatchBuilder {
            max_events: max_events.max(1),
            max_bytes,
            max_event_bytes: INTAKE_MAX_EVENT_BYTES.min(max_bytes.saturating_sub(2)),
            current: Batch::default(),
            opened: None,
            spare: Vec::new(),
            stats: EncodeStats::default(),
        }
    }

    /// When the open batch was started, if it holds any event.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened
    }

    /// Counts the open batch from `at` if it was started later (its lines were there since
    /// then, waiting to be read).
    pub fn backdate(&mut self, at: Instant) {
        if let Some(opened) = self.opened.as_mut() {
            *opened = (*opened).min(at);
        }
    }

    /// Hands back a body buffer for reuse, so steady state allocates no batch memory.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        // One spare: the next batch starts in it while this one is being sent; more would
        // only sit in memory (each is up to batch.max_bytes).
        if self.spare.is_empty() && buf.capacity() <= self.max_bytes + 64 * 1024 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Seals and returns the open batch, if it holds any event.
    pub fn take(&mut self) -> Option<Batch> {
        if self.current.events == 0 {
            return None;
        }
        let body = self.spare.pop().unwrap_or_default();
        let mut batch = std::mem::replace(
            &mut self.current,
            Batch {
                body,
                ..Batch::default()
            },
        );
        batch.body.push(b']');
        self.opened = None;
        Some(batch)
    }

    /// Appends one line as one or more events covering `range`. Full batches are passed to
    /// `emit`.
    pub fn append_line(
        &mut self,
        template: &EventTemplate,
        timestamp_ms: u64,
        range: EventRange,
        piece: LinePiece<'_>,
        emit: &mut dyn FnMut(Batch),
    ) {
        loop {
            match self.try_append(template, timestamp_ms, range, &piece) {
                Appended::Yes => {
                    if self.current.events >= self.max_events
                        && let Some(full) = self.take()
                    {
                        emit(full);
                    }
                    return;
                }
                Appended::BatchFull => {
                    // It fits an empty batch: send this one and start the next.
                    if let Some(full) = self.take() {
                        emit(full);
                    }
                }
                Appended::TooLarge => {
                    return self.append_in_pieces(template, timestamp_ms, range, piece, emit);
                }
            }
        }
    }

    /// Writes one event into the open batch, or leaves the batch as it was when it does not
    /// fit there.
    fn try_append(
        &mut self,
        template: &EventTemplate,
        timestamp_ms: u64,
        range: EventRange,
        piece: &LinePiece<'_>,
    ) -> Appended {
        let b = &mut self.current;
        if b.body.is_empty() {
            b.body.reserve(self.max_bytes.min(1 << 20));
            b.body.push(b'[');
        }
        let rollback = b.body.len();
        if b.events > 0 {
            b.body.push(b',');
        }
        let event_start = b.body.len();
        b.body.extend_from_slice(EVENT_PREFIX);
        if piece.cut_before {
            b.body.extend_from_slice(TRUNCATED_MARKER);
        }
        if escape_lossy(&mut b.body, piece.text, piece.valid_utf8) {
            self.stats.invalid_utf8 += 1;
        }
        if piece.cut_after {
            b.body.extend_from_slice(TRUNCATED_MARKER);
        }
        match piece.status {
            None => b.body.extend_from_slice(&template.after_message),
            Some(status) => {
                b.body.extend_from_slice(br#"","status":""#);
                escape_str(&mut b.body, status.as_bytes());
                b.body.extend_from_slice(br#"","timestamp":"#);
            }
        }
        b.body
            .extend_from_slice(itoa::Buffer::new().format(timestamp_ms).as_bytes());
        b.body.extend_from_slice(&template.after_timestamp);
        let event_len = b.body.len() - event_start;
        // +1 for the closing bracket added when the batch is sealed.
        let fits_batch = b.body.len() < self.max_bytes;
        let fits_event = event_len <= self.max_event_bytes;
        if fits_batch && fits_event {
            b.events += 1;
            b.line_bytes += piece.text.len() as u64;
            b.add_mark(Mark {
                stream: range.stream,
                start: range.start,
                end: range.end,
            });
            self.stats.events += 1;
            self.opened.get_or_insert_with(Instant::now);
            return Appended::Yes;
        }
        b.body.truncate(rollback);
        if b.events > 0 && fits_event {
            Appended::BatchFull
        } else {
            Appended::TooLarge
        }
    }

    /// A line too large for any event (escaping can grow a line up to six times) is cut in
    /// two at a character boundary, each piece marked where it was cut.
    fn append_in_pieces(
        &mut self,
        template: &EventTemplate,
        timestamp_ms: u64,
        range: EventRange,
        piece: LinePiece<'_>,
        emit: &mut dyn FnMut(Batch),
    ) {
        let cut = split_point(piece.text, piece.text.len() / 2);
        if cut == 0 || cut == piece.text.len() {
            // Cannot happen for max_event_bytes >= 64 KiB; never loop forever regardless.
            tracing::error!(
                bytes = piece.text.len(),
                "event cannot fit any batch; dropped"
            );
            return;
        }
        self.stats.split_pieces += 1;
        let (head, tail) = piece.text.split_at(cut);
        // Within the line's range whatever the text's encoding in the file (a UTF-16 line's
        // UTF-8 text is longer or shorter than its bytes there).
        let mid = (range.text_offset + cut as u64).clamp(range.start, range.end);
        let first = EventRange { end: mid, ..range };
        let second = EventRange {
            start: mid,
            text_offset: mid,
            ..range
        };
        let head = LinePiece {
            text: head,
            cut_after: true,
            ..piece
        };
        let tail = LinePiece {
            text: tail,
            cut_before: true,
            ..piece
        };
        self.append_line(template, timestamp_ms, first, head, emit);
        self.append_line(template, timestamp_ms, second, tail, emit);
    }
}

/// What became of an attempt to write an event into the open batch.
enum Appended {
    Yes,
    /// Not in this batch, but it fits an empty one.
    BatchFull,
    /// Too large for any batch as one event.
    TooLarge,
}

/// The byte ranges of the events in a batch body this module encoded. Each event starts with
/// `{"message":"`, which cannot occur unescaped inside a JSON string, so no parsing is needed.
pub fn event_ranges(body: &[u8]) -> Vec<std::ops::Range<usize>> {
    let starts: Vec<usize> = memchr::memmem::find_iter(body, EVENT_PREFIX).collect();
    // The body is `[e,e,...,e]`: an event ends before the comma or the closing bracket.
    let end = body.len().saturating_sub(1);
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| start..starts.get(i + 1).map_or(end, |next| next - 1))
        .collect()
}

/// A batch body holding the given events of `body`.
pub fn join_events(body: &[u8], events: &[std::ops::Range<usize>]) -> Vec<u8> {
    let len: usize = events.iter().map(|r| r.len() + 1).sum();
    let mut out = Vec::with_capacity(len + 2);
    out.push(b'[');
    for (i, r) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&body[r.clone()]);
    }
    out.push(b']');
    out
}

/// The `filename:` tag of an encoded event, for logs about it.
pub fn event_file_name(event: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(event)
        .ok()
        .and_then(|v| {
            v["ddtags"]
                .as_str()?
                .split(',')
                .find_map(|t| t.strip_prefix("filename:"))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The largest index `<= at` that does not split a UTF-8 character (at most 3 bytes back).
pub fn split_point(text: &[u8], at: usize) -> usize {
    let at = at.min(text.len());
    let mut i = at;
    while i > 0 && at - i < 4 && i < text.len() && (text[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    if at - i >= 4 || i == 0 { at } else { i }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> EventTemplate {
        EventTemplate::new(&EventFields {
            status: "info",
            hostname: "host-1",
            service: "svc",
            source: "go",
            tags: "env:test,filename:a.log",
        })
    }

    fn encode_all(lines: &[&[u8]], max_events: usize, max_bytes: usize) -> Vec<Batch> {
        let t = template();
        let mut b = BatchBuilder::new(max_events, max_bytes);
        let mut out = Vec::new();
        let mut pos = 0u64;
        for line in lines {
            let end = pos + line.len() as u64 + 1;
            b.append_line(
                &t,
                1_700_000_000_000,
                EventRange {
                    stream: StreamId(7),
                    start: pos,
                    text_offset: pos,
                    end,
                },
                LinePiece {
                    text: line,
                    valid_utf8: false,
                    cut_before: false,
                    cut_after: false,
                    status: None,
                },
                &mut |batch| out.push(batch),
            );
            pos = end;
        }
        if let Some(batch) = b.take() {
            out.push(batch);
        }
        out
    }

    fn messages(batch: &Batch) -> Vec<String> {
        let v: Vec<serde_json::Value> = serde_json::from_slice(&batch.body).expect("valid JSON");
        v.iter()
            .map(|e| e["message"].as_str().expect("message").to_string())
            .collect()
    }

    #[test]
    fn event_has_exactly_the_agent_fields() {
        let batches = encode_all(&[b"hello \"world\"\t\\ \x01"], 10, 100_000);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&batches[0].body).expect("json");
        let obj = v[0].as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "ddsource",
                "ddtags",
                "hostname",
                "message",
                "service",
                "status",
                "timestamp"
            ]
        );
        assert_eq!(obj["message"], "hello \"world\"\t\\ \u{1}");
        assert_eq!(obj["timestamp"], 1_700_000_000_000u64);
        assert_eq!(obj["ddtags"], "env:test,filename:a.log");
        assert_eq!(obj["status"], "info");
    }

    #[test]
    fn escaping_matches_serde_for_every_byte() {
        let all: Vec<u8> = (0u8..0x80).collect();
        for chunk in all.chunks(13) {
            let mut out = Vec::new();
            escape_str(&mut out, chunk);
            let text = std::str::from_utf8(chunk).expect("ascii");
            let quoted = format!("\"{}\"", String::from_utf8(out).expect("utf8"));
            let back: String = serde_json::from_str(&quoted).expect("valid JSON string");
            assert_eq!(back, text);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let batches = encode_all(&[b"ok \xff\xfe end", "caf\u{e9}".as_bytes()], 10, 100_000);
        assert_eq!(
            messages(&batches[0]),
            vec!["ok \u{FFFD}\u{FFFD} end", "café"]
        );
    }

    #[test]
    fn batches_respect_event_and_byte_limits() {
        let line = [b'x'; 100];
        let lines: Vec<&[u8]> = (0..2500).map(|_| &line[..]).collect();
        let batches = encode_all(&lines, 1000, 5_000_000);
        assert_eq!(
            batches.iter().map(|b| b.events).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        let batches = encode_all(&lines, 1000, 64 * 1024);
        assert!(batches.iter().all(|b| b.body.len() <= 64 * 1024));
        assert_eq!(batches.iter().map(|b| b.events).sum::<usize>(), 2500);
        // Marks of one stream merge into one contiguous range per batch.
        assert!(batches.iter().all(|b| b.marks.len() == 1));
        for pair in batches.windows(2) {
            assert_eq!(pair[0].marks[0].end, pair[1].marks[0].start);
        }
    }

    #[test]
    fn event_too_large_for_a_batch_is_split_with_markers() {
        // Control bytes escape to six bytes each: 30 KB of them is ~180 KB of JSON.
        let line = vec![1u8; 30_000];
        let batches = encode_all(&[&line], 1000, 64 * 1024);
        let all: Vec<String> = batches.iter().flat_map(messages).collect();
        assert!(all.len() > 2);
        let mut joined = String::new();
        for (i, m) in all.iter().enumerate() {
            let mut m = m.as_str();
            if i > 0 {
                m = m.strip_prefix("...TRUNCATED...").expect("leading marker");
            }
            if i + 1 < all.len() {
                m = m.strip_suffix("...TRUNCATED...").expect("trailing marker");
            }
            joined.push_str(m);
        }
        assert_eq!(joined, "\u{1}".repeat(30_000));
        assert!(batches.iter().all(|b| b.body.len() <= 64 * 1024));
        let covered: u64 = batches
            .iter()
            .flat_map(|b| &b.marks)
            .map(|m| m.end - m.start)
            .sum();
        assert_eq!(covered, 30_001);
    }

    #[test]
    fn event_ranges_split_and_rejoin_a_batch() {
        // A message quoting an event start stays inside its event.
        let lines: [&[u8]; 3] = [b"one", br#"{"message":"not an event"#, b"three"];
        let batches = encode_all(&lines, 10, 100_000);
        let body = &batches[0].body;
        let ranges = event_ranges(body);
        assert_eq!(ranges.len(), 3);
        assert_eq!(&join_events(body, &ranges), body);
        let second = join_events(body, &ranges[1..2]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&second).expect("json");
        assert_eq!(v[0]["message"], r#"{"message":"not an event"#);
        assert_eq!(event_file_name(&body[ranges[2].clone()]), "a.log");
    }

    #[test]
    fn split_point_respects_utf8() {
        let s = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(split_point(s, 2), 1);
        assert_eq!(split_point(s, 3), 3);
        assert_eq!(split_point(s, 4), 3);
        assert_eq!(split_point(s, 6), 6);
    }
}

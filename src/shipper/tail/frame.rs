//! Line framing: cuts a read buffer into lines with `memchr`, without copying.
//!
//! A line ends at `\n`; a `\r` before it is removed too. A line longer than `max_line` is cut
//! into pieces of at most `max_line` bytes (on a UTF-8 character boundary), each marked as
//! continuing or continued, so memory stays bounded whatever the input. An unterminated last
//! line is left unconsumed, to be read again once it is complete, unless the caller says the
//! file is finished. [`frame_utf16`] does the same for files in UTF-16 (two-byte units, pieces
//! never splitting a surrogate pair).

use crate::encode::split_point;

/// One line, or one piece of a long line, inside the framed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// Offset of the text in the buffer.
    pub text_start: usize,
    /// Length of the text (line ending removed).
    pub text_len: usize,
    /// Offset just past this piece (past its line ending, if it has one).
    pub end: usize,
    /// This piece continues a line cut before it.
    pub cut_before: bool,
    /// The line goes on after this piece.
    pub cut_after: bool,
}

/// Frames `buf`, calling `on_line` for each complete line or piece. `continued` carries
/// across calls whether the next bytes continue a line that was cut. With `finish`, an
/// unterminated last line is emitted as complete. Returns how many bytes were consumed.
pub fn frame(
    buf: &[u8],
    max_line: usize,
    continued: &mut bool,
    finish: bool,
    mut on_line: impl FnMut(Framed),
) -> usize {
    let max_line = max_line.max(4);
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        match memchr::memchr(b'\n', rest) {
            Some(nl) => {
                let mut len = nl;
                if len > 0 && rest[len - 1] == b'\r' {
                    len -= 1;
                }
                let span = Span {
                    base: pos,
                    len,
                    end: pos + nl + 1,
                };
                pieces(rest, span, max_line, continued, &mut on_line, split_point);
                pos += nl + 1;
            }
            None => {
                if finish {
                    let span = Span {
                        base: pos,
                        len: rest.len(),
                        end: buf.len(),
                    };
                    pieces(rest, span, max_line, continued, &mut on_line, split_point);
                    pos = buf.len();
                    break;
                }
                // Cut what is certainly too long for one event; keep the rest for later.
                let too_long = |rest: &[u8]| must_cut(rest, max_line);
                pos = cut_unterminated(
                    buf,
                    pos,
                    max_line,
                    continued,
                    &mut on_line,
                    too_long,
                    split_point,
                );
                break;
            }
        }
    }
    pos
}

/// Whether an unterminated line is already longer than `max_line` whatever follows: one more
/// byte might be the `\r` of a `\r\n`, which would not count.
fn must_cut(rest: &[u8], max_line: usize) -> bool {
    rest.len() > max_line + 1 || (rest.len() == max_line + 1 && rest[max_line] != b'\r')
}

/// The smallest buffer that always lets [`frame`] and [`frame_utf16`] make progress.
pub fn min_buffer(max_line: usize) -> usize {
    max_line.max(4) + 4
}

/// Where a line's text is in the buffer: from `base`, `len` bytes, the line (its ending
/// included) ending at `end`.
#[derive(Clone, Copy)]
struct Span {
    base: usize,
    len: usize,
    end: usize,
}

/// Emits a complete line as one piece, or as pieces of at most `max_line` bytes ending
/// where `split` allows.
fn pieces(
    rest: &[u8],
    span: Span,
    max_line: usize,
    continued: &mut bool,
    on_line: &mut impl FnMut(Framed),
    split: fn(&[u8], usize) -> usize,
) {
    let Span { base, len, end } = span;
    let mut off = 0;
    while len - off > max_line {
        let cut = split(&rest[off..len], max_line);
        on_line(Framed {
            text_start: base + off,
            text_len: cut,
            end: base + off + cut,
            cut_before: *continued,
            cut_after: true,
        });
        *continued = true;
        off += cut;
    }
    on_line(Framed {
        text_start: base + off,
        text_len: len - off,
        end,
        cut_before: *continued,
        cut_after: false,
    });
    *continued = false;
}

/// UTF-16 in the given byte order: the code unit at `i`.
fn unit(buf: &[u8], i: usize, big_endian: bool) -> u16 {
    let pair = [buf[i], buf[i + 1]];
    if big_endian {
        u16::from_be_bytes(pair)
    } else {
        u16::from_le_bytes(pair)
    }
}

/// Where a UTF-16 piece of at most `at` bytes may end: on a unit, and not between the two
/// halves of a surrogate pair (the unit before the cut is then no high surrogate).
fn split_point_utf16_le(text: &[u8], at: usize) -> usize {
    split_point_utf16(text, at, false)
}

fn split_point_utf16_be(text: &[u8], at: usize) -> usize {
    split_point_utf16(text, at, true)
}

fn split_point_utf16(text: &[u8], at: usize, big_endian: bool) -> usize {
    let at = at.min(text.len()) & !1;
    if at >= 2 && at < text.len() && (0xD800..0xDC00).contains(&unit(text, at - 2, big_endian)) {
        at - 2
    } else {
        at
    }
}

/// [`frame`] for UTF-16 text: a line ends at the unit `\n` (a `\r` unit before it is
/// removed), on units counted from the start of `buf`, which starts on a unit of the file.
pub fn frame_utf16(
    buf: &[u8],
    max_line: usize,
    continued: &mut bool,
    finish: bool,
    big_endian: bool,
    mut on_line: impl FnMut(Framed),
) -> usize {
    let max_line = max_line.max(4) & !1;
    let split = if big_endian {
        split_point_utf16_be
    } else {
        split_point_utf16_le
    };
    let whole_units = buf.len() & !1;
    let mut pos = 0;
    let mut i = 0;
    while i < whole_units {
        if unit(buf, i, big_endian) == u16::from(b'\n') {
            let mut len = i - pos;
            if len >= 2 && unit(buf, i - 2, big_endian) == u16::from(b'\r') {
                len -= 2;
            }
            let span = Span {
                base: pos,
                len,
                end: i + 2,
            };
            pieces(&buf[pos..], span, max_line, continued, &mut on_line, split);
            pos = i + 2;
        }
        i += 2;
    }
    if finish && pos < buf.len() {
        let span = Span {
            base: pos,
            len: buf.len() - pos,
            end: buf.len(),
        };
        pieces(&buf[pos..], span, max_line, continued, &mut on_line, split);
        return buf.len();
    }
    // Cut what is certainly too long for one event (a `\r` unit may still come); keep the
    // rest for later.
    let too_long = |rest: &[u8]| rest.len() > max_line + 2;
    cut_unterminated(buf, pos, max_line, continued, &mut on_line, too_long, split)
}

/// Emits pieces of the unterminated line at `pos` while `too_long` says it cannot fit one
/// event whatever follows; returns where the rest, kept for the next read, starts.
fn cut_unterminated(
    buf: &[u8],
    mut pos: usize,
    max_line: usize,
    continued: &mut bool,
    on_line: &mut impl FnMut(Framed),
    too_long: impl Fn(&[u8]) -> bool,
    split: fn(&[u8], usize) -> usize,
) -> usize {
    while too_long(&buf[pos..]) {
        let cut = split(&buf[pos..], max_line);
        on_line(Framed {
            text_start: pos,
            text_len: cut,
            end: pos + cut,
            cut_before: *continued,
            cut_after: true,
        });
        *continued = true;
        pos += cut;
    }
    pos
}

/// UTF-16 text as UTF-8 into `out` (cleared first); an unpaired surrogate or a lone last
/// byte becomes U+FFFD.
pub fn utf16_to_utf8(raw: &[u8], big_endian: bool, out: &mut Vec<u8>) {
    out.clear();
    let units = raw.chunks_exact(2).map(|p| {
        if big_endian {
            u16::from_be_bytes([p[0], p[1]])
        } else {
            u16::from_le_bytes([p[0], p[1]])
        }
    });
    let mut utf8 = [0u8; 4];
    for c in char::decode_utf16(units) {
        let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
    if raw.len() % 2 == 1 {
        out.extend_from_slice("\u{FFFD}".as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` to `framer` in reads cut at `cuts`, re-reading unconsumed bytes like
    /// the tailer; the framer gets a read, the `continued` state and whether it is the last
    /// read, and returns the bytes it consumed. Returns the bytes consumed in all.
    fn in_reads(
        input: &[u8],
        cuts: &[usize],
        mut framer: impl FnMut(&[u8], &mut bool, bool) -> usize,
    ) -> usize {
        let mut continued = false;
        let mut pos = 0;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c <= input.len()).collect();
        bounds.push(input.len());
        bounds.sort_unstable();
        for (i, &limit) in bounds.iter().enumerate() {
            if limit < pos {
                continue;
            }
            pos += framer(&input[pos..limit], &mut continued, i + 1 == bounds.len());
        }
        pos
    }

    /// Frames `input` fed in reads cut at `cuts`: the lines with their marks.
    fn frame_in_reads(
        input: &[u8],
        cuts: &[usize],
        max_line: usize,
        finish: bool,
    ) -> Vec<(Vec<u8>, bool, bool)> {
        let mut out = Vec::new();
        in_reads(input, cuts, |buf, continued, last| {
            frame(buf, max_line, continued, finish && last, |f| {
                let text = &buf[f.text_start..f.text_start + f.text_len];
                out.push((text.to_vec(), f.cut_before, f.cut_after));
            })
        });
        out
    }

    #[test]
    fn lf_crlf_and_partial_last_line() {
        let got = frame_in_reads(b"a\r\nb\n\nc", &[], 100, false);
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), false, false),
                (b"b".to_vec(), false, false),
                (b"".to_vec(), false, false)
            ]
        );
        let got = frame_in_reads(b"a\nc", &[], 100, true);
        assert_eq!(got[1], (b"c".to_vec(), false, false));
    }

    #[test]
    fn long_line_is_cut_into_marked_pieces() {
        let got = frame_in_reads(b"0123456789\nab\n", &[], 4, false);
        let texts: Vec<&[u8]> = got.iter().map(|g| g.0.as_slice()).collect();
        assert_eq!(texts, vec![&b"0123"[..], b"4567", b"89", b"ab"]);
        assert_eq!(got[0].1..=got[0].2, false..=true);
        assert!(got[1].1 && got[1].2);
        assert!(got[2].1 && !got[2].2);
        assert!(!got[3].1 && !got[3].2);
    }

    proptest! {
        /// Whatever the read boundaries, the framed lines are the same and rejoin to the input.
        #[test]
        fn chunk_boundaries_do_not_change_lines(
            lines in proptest::collection::vec("[a-z\r]{0,12}", 0..12),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            max_line in 4usize..16,
        ) {
            let mut input = Vec::new();
            for l in &lines {
                input.extend_from_slice(l.as_bytes());
                input.push(b'\n');
            }
            let whole = frame_in_reads(&input, &[], max_line, true);
            let split = frame_in_reads(&input, &cuts, max_line, true);
            prop_assert_eq!(&whole, &split);
            let mut rejoined = Vec::new();
            for (text, _, cut_after) in &whole {
                rejoined.extend_from_slice(text);
                if !cut_after {
                    rejoined.push(b'\n');
                }
            }
            let expected: Vec<u8> = lines
                .iter()
                .flat_map(|l| {
                    let t = l.strip_suffix('\r').unwrap_or(l);
                    t.bytes().chain(std::iter::once(b'\n'))
                })
                .collect();
            prop_assert_eq!(rejoined, expected);
        }
    }

    #[test]
    fn every_chunk_boundary_for_a_fixed_input() {
        let input = b"first line\r\nsecond\n\nthird line that is long\nlast";
        let whole = frame_in_reads(input, &[], 8, true);
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(
                    frame_in_reads(input, &[a, b], 8, true),
                    whole,
                    "cuts {a},{b}"
                );
            }
        }
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| {
                if big_endian {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    }

    /// Frames UTF-16 `input` in reads cut at `cuts`: the lines as UTF-8 with their marks,
    /// and the bytes consumed.
    fn frame_utf16_in_reads(
        input: &[u8],
        cuts: &[usize],
        max_line: usize,
        big_endian: bool,
    ) -> (Vec<(String, bool, bool)>, usize) {
        let mut out = Vec::new();
        let consumed = in_reads(input, cuts, |buf, continued, _| {
            frame_utf16(buf, max_line, continued, false, big_endian, |f| {
                let mut text = Vec::new();
                let raw = &buf[f.text_start..f.text_start + f.text_len];
                utf16_to_utf8(raw, big_endian, &mut text);
                let text = String::from_utf8(text).expect("UTF-8");
                out.push((text, f.cut_before, f.cut_after));
            })
        });
        (out, consumed)
    }

    #[test]
    fn utf16_lines_in_both_byte_orders() {
        for be in [false, true] {
            let input = utf16("hello\r\nwörld\n\npart", be);
            let (lines, consumed) = frame_utf16_in_reads(&input, &[3, 7], 100, be);
            let texts: Vec<&str> = lines.iter().map(|(t, _, _)| t.as_str()).collect();
            assert_eq!(texts, ["hello", "wörld", ""], "big endian: {be}");
            assert_eq!(consumed, utf16("hello\r\nwörld\n\n", be).len());
        }
    }

    #[test]
    fn utf16_pieces_never_split_a_surrogate_pair() {
        let input = utf16("😀😀😀😀x\n", false);
        // 6 bytes fit one pair and a half: every piece ends before the half.
        let (lines, _) = frame_utf16_in_reads(&input, &[], 6, false);
        let texts: Vec<&str> = lines.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(texts, ["😀", "😀", "😀", "😀x"]);
        assert!(lines[0].2 && lines[1].1 && !lines[3].2);
    }

    proptest! {
        /// Whatever the reads, UTF-16 framing gives the lines UTF-8 framing gives.
        #[test]
        fn utf16_framing_agrees_with_utf8_framing(
            lines in proptest::collection::vec("[a-zé😀 \r]{0,12}", 1..8),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            be in any::<bool>(),
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let expected: Vec<(String, bool, bool)> = frame_in_reads(text.as_bytes(), &[], 1000, false)
                .into_iter()
                .map(|(t, b, a)| (String::from_utf8(t).expect("UTF-8"), b, a))
                .collect();
            let (got, consumed) = frame_utf16_in_reads(&utf16(&text, be), &cuts, 1000, be);
            prop_assert_eq!(got, expected);
            prop_assert_eq!(consumed, utf16(&text, be).len());
        }
    }
}

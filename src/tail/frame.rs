//! Line framing: cuts a read buffer into lines with `memchr`, without copying.
//!
//! A line ends at `\n`; a `\r` before it is removed too. A line longer than `max_line` is cut
//! into pieces of at most `max_line` bytes (on a UTF-8 character boundary), each marked as
//! continuing or continued, so memory stays bounded whatever the input. An unterminated last
//! line is left unconsumed, to be read again once it is complete, unless the caller says the
//! file is finished.

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
                pieces(
                    rest,
                    pos,
                    len,
                    pos + nl + 1,
                    max_line,
                    continued,
                    &mut on_line,
                );
                pos += nl + 1;
            }
            None => {
                if finish {
                    let len = rest.len();
                    pieces(rest, pos, len, buf.len(), max_line, continued, &mut on_line);
                    pos = buf.len();
                    break;
                }
                // Cut what is certainly too long for one event; keep the rest for later.
                while must_cut(&buf[pos..], max_line) {
                    let cut = split_point(&buf[pos..], max_line);
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

/// The smallest buffer that always lets [`frame`] make progress.
pub fn min_buffer(max_line: usize) -> usize {
    max_line.max(4) + 2
}

fn pieces(
    rest: &[u8],
    base: usize,
    len: usize,
    end: usize,
    max_line: usize,
    continued: &mut bool,
    on_line: &mut impl FnMut(Framed),
) {
    let mut off = 0;
    while len - off > max_line {
        let cut = split_point(&rest[off..len], max_line);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Frames `input` fed in reads cut at `cuts`, re-reading unconsumed bytes like the tailer.
    fn frame_in_reads(
        input: &[u8],
        cuts: &[usize],
        max_line: usize,
        finish: bool,
    ) -> Vec<(Vec<u8>, bool, bool)> {
        let mut out = Vec::new();
        let mut continued = false;
        let mut pos = 0;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c <= input.len()).collect();
        bounds.push(input.len());
        bounds.sort_unstable();
        for (i, &limit) in bounds.iter().enumerate() {
            if limit < pos {
                continue;
            }
            let last = i + 1 == bounds.len();
            let buf = &input[pos..limit];
            let used = frame(buf, max_line, &mut continued, finish && last, |f| {
                out.push((
                    buf[f.text_start..f.text_start + f.text_len].to_vec(),
                    f.cut_before,
                    f.cut_after,
                ));
            });
            pos += used;
        }
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
}

//! Whitespace around a message, trimmed as the Datadog Agent trims it (Go's
//! `bytes.TrimSpace`): Unicode's white space (`\t`, `\n`, `\v`, `\f`, `\r`, space, U+0085,
//! U+00A0, U+1680, U+2000 to U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) at both ends;
//! bytes that are not valid UTF-8 are not white space.

/// The range of `text` left once white space is trimmed from both ends.
#[inline]
pub fn trim_space(text: &[u8]) -> std::ops::Range<usize> {
    let mut start = 0;
    let mut end = text.len();
    // Most lines start and end with a printable ASCII byte: two comparisons.
    while start < end {
        match leading_space(&text[start..end]) {
            0 => break,
            n => start += n,
        }
    }
    while end > start {
        match trailing_space(&text[start..end]) {
            0 => break,
            n => end -= n,
        }
    }
    start..end
}

/// The length of the white space character `text` starts with, or 0.
fn leading_space(text: &[u8]) -> usize {
    match text.first() {
        Some(b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') => 1,
        Some(&b) if b >= 0x80 => {
            let len = text.len().min(utf8_len(b));
            first_char(&text[..len]).map_or(0, |c| if c.is_whitespace() { len } else { 0 })
        }
        _ => 0,
    }
}

/// The length of the white space character `text` ends with, or 0.
fn trailing_space(text: &[u8]) -> usize {
    match text.last() {
        Some(b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') => 1,
        Some(&b) if b >= 0x80 => {
            // The character's first byte is at most three bytes before its last.
            let from = text.len().saturating_sub(4);
            (from..text.len())
                .rev()
                .find(|&i| text[i] & 0xC0 != 0x80)
                .and_then(|i| {
                    let len = text.len() - i;
                    first_char(&text[i..])
                        .filter(|c| c.len_utf8() == len && c.is_whitespace())
                        .map(|_| len)
                })
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// How long a UTF-8 character starting with `b` is (1 for a byte that starts none).
fn utf8_len(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

fn first_char(bytes: &[u8]) -> Option<char> {
    std::str::from_utf8(bytes).ok()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trimmed(text: &str) -> &str {
        &text[trim_space(text.as_bytes())]
    }

    /// The Agent's own list of white space (its line handler tests).
    const WHITESPACE: &str = "\t\n\u{0B}\u{0C}\r\u{85}\u{A0} ";

    #[test]
    fn unicode_white_space_is_trimmed_at_both_ends_only() {
        let line = format!("{WHITESPACE}foo{WHITESPACE}bar{WHITESPACE}");
        assert_eq!(trimmed(&line), format!("foo{WHITESPACE}bar"));
        assert_eq!(trimmed("\u{3000}\u{2028}x\u{200A}\u{205F}"), "x");
        assert_eq!(trimmed("plain"), "plain");
        assert_eq!(trimmed("   "), "");
        assert_eq!(trimmed(""), "");
        assert_eq!(trimmed("é "), "é");
        assert_eq!(
            trimmed(" \u{FEFF}x"),
            "\u{FEFF}x",
            "a BOM is not white space to Go"
        );
    }

    #[test]
    fn invalid_utf8_is_not_white_space() {
        assert_eq!(trim_space(b"\xC2 x \xC2"), 0..5);
        assert_eq!(trim_space(b" \xA0x"), 1..3);
        assert_eq!(trim_space(b"x\xC2\xA0"), 0..1, "U+00A0 at the end");
        assert_eq!(trim_space(b"x\xE3\x80"), 0..3, "a cut character stays");
    }
}

//! The cases of the Agent's `pkg/logs/internal/decoder/line_handler_test.go` and
//! `decoder_test.go`.

use super::*;

/// The Agent's list of white space without `\n`, which ends a line in a file.
const WS: &str = "\t\u{0B}\u{0C}\r\u{85}\u{A0} ";

/// line_handler_test.go: TestSingleLineHandler, TestTrimSingleLine,
/// TestSingleLineHandlerSendsRawInvalidMessages.
#[test]
fn single_lines_become_messages_as_the_agent_makes_them() {
    let a = |n: usize| "a".repeat(n);
    check(vec![
        case(
            "TestSingleLineHandler/0",
            vec![],
            "hello world\n",
            &["hello world"],
        ),
        // A line the limit + 10 long: `line...TRUNCATED...` and `...TRUNCATED...line`.
        case(
            "TestSingleLineHandler/1",
            vec![],
            &format!("{}\n", a(110)),
            &[&format!("{}{M}", a(100)), &format!("{M}{}", a(10))],
        )
        .max_line(100),
        // Twice the limit + 10: the middle piece is marked at both ends.
        case(
            "TestSingleLineHandler/2-3",
            vec![],
            &format!("{}\n", a(210)),
            &[
                &format!("{}{M}", a(100)),
                &format!("{M}{}{M}", a(100)),
                &format!("{M}{}", a(10)),
            ],
        )
        .max_line(100),
        case(
            "TestTrimSingleLine",
            vec![],
            &format!("{WS}foo{WS}bar{WS}\n"),
            &[&format!("foo{WS}bar")],
        ),
        case(
            "TestSingleLineHandlerSendsRawInvalidMessages",
            vec![],
            "one message\n",
            &["one message"],
        ),
    ]);
}

/// line_handler_test.go: TestMultiLineHandler, TestTrimMultiLine, and the multi-line
/// handler's empty and raw messages.
#[test]
fn multi_line_events_as_the_agent_makes_them() {
    let numbered = || vec![multi_line(r"[0-9]+\.")];
    check(vec![
        // Joined with a newline (see the module's header).
        case(
            "TestMultiLineHandler/0",
            numbered(),
            "1.first\nsecond\n2. first line\n",
            &["1.first\nsecond", "2. first line"],
        ),
        case(
            "TestMultiLineHandler/3",
            numbered(),
            "3. stringssssssize20con\n",
            &[&format!("3. stringssssssize20{M}"), &format!("{M}con")],
        )
        .max_line(20),
        // The marks do not count toward the limit here (the Agent's multi-line handler cuts
        // `...TRUNCATED...continue` again, the mark making it longer than 20 bytes).
        case(
            "TestMultiLineHandler/4",
            numbered(),
            "4. stringssssssize20continue\n",
            &[&format!("4. stringssssssize20{M}"), &format!("{M}continue")],
        )
        .max_line(20),
        // The middle piece is trimmed as the Agent's single-line handler trims it (its
        // multi-line handler keeps `continu             `).
        case(
            "TestMultiLineHandler/5",
            numbered(),
            "5. stringssssssize20continu             end\n6. next line      \n",
            &[
                &format!("5. stringssssssize20{M}"),
                &format!("{M}continu{M}"),
                &format!("{M}end"),
                "6. next line",
            ],
        )
        .max_line(20),
        case(
            "TestTrimMultiLine/0",
            numbered(),
            &format!("{WS}foo{WS}bar{WS}\n"),
            &[&format!("foo{WS}bar")],
        ),
        case(
            "TestTrimMultiLine/1",
            numbered(),
            &format!("{WS}foo{WS}\nbar{WS}\n"),
            &[&format!("foo{WS}\nbar")],
        ),
        case(
            "TestMultiLineHandlerDropsEmptyMessages",
            numbered(),
            "\n1.third line\nfourth line\n",
            &["1.third line\nfourth line"],
        ),
        case(
            "TestMultiLineHandlerSendsRawInvalidMessages",
            numbered(),
            "1.third line\nfourth line\n",
            &["1.third line\nfourth line"],
        ),
    ]);
}

/// decoder_test.go: a multi_line rule over plain lines (the tests' lines without their
/// container runtime's framing), and UTF-16 files with and without a byte order mark.
#[test]
fn decoders_as_the_agents() {
    let utf16 = |from: &'static str, encoding: Encoding, input: Vec<u8>, expected: &[&str]| Case {
        encoding,
        input,
        ..case(from, vec![], "", expected)
    };
    check(vec![
        case(
            "TestDecoderWithMultilineKubernetes",
            vec![multi_line("1234")],
            "1234 hello\nworld\n1234 bye\n",
            &["1234 hello\nworld", "1234 bye"],
        ),
        case(
            "TestDecoderWithSinglelineKubernetes/1",
            vec![],
            "wrong message\n",
            &["wrong message"],
        ),
        utf16(
            "TestDecoderWithDecodingParser/0",
            Encoding::Utf16Le,
            vec![b'h', 0, b'e', 0, b'l', 0, b'l', 0, b'o', 0, b'\n', 0],
            &["hello"],
        ),
        utf16(
            "TestDecoderWithDecodingParser/1",
            Encoding::Utf16Le,
            vec![
                0xFF, 0xFE, b'h', 0, b'e', 0, b'l', 0, b'l', 0, b'o', 0, b'\n', 0,
            ],
            &["hello"],
        ),
        utf16(
            "TestDecoderWithDecodingParser, big endian with CRLF",
            Encoding::Utf16Be,
            vec![
                0xFE, 0xFF, 0, b'h', 0, b'i', 0, b'\r', 0, b'\n', 0, b' ', 0x20, 0xAC, 0, b'\n',
            ],
            &["hi", "€"],
        ),
    ]);
}

//! Sample log lines, like an application's: for `sidelog generate` (a stand-in app in a
//! Pod), the demo, the benchmarks and the tests, one generator for all of them.
//!
//! Every line starts with `FFFF:SSSSSSSSSS:UUUUUUUUUUUUUUUU ` (file, sequence number, write time
//! in Unix microseconds), so a verifying intake can check each one arrived once and how long
//! it took; the rest looks like access-log and JSON lines with realistic variety, so
//! compression works as hard as on real logs.

use std::io::Write;

/// Length of the line prefix.
pub const PREFIX_LEN: usize = 33;
/// Files a prefix tells apart (`bench fleet` gives each Pod one, `bench idle` thousands).
pub const FILES: usize = 10_000;

const WORDS: &[&str] = &[
    "user",
    "order",
    "payment",
    "session",
    "cache",
    "miss",
    "hit",
    "retry",
    "upstream",
    "timeout",
    "connection",
    "pool",
    "request",
    "handled",
    "completed",
    "started",
    "queue",
    "worker",
    "shard",
    "replica",
    "token",
    "refresh",
    "account",
    "profile",
    "search",
    "index",
    "inventory",
    "checkout",
    "cart",
    "invoice",
    "shipping",
    "latency",
    "region",
    "eu-west-1",
    "us-east-1",
    "debug",
    "trace_id",
    "span_id",
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "ok",
    "error",
];

/// What a line looks like after its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Access-log and JSON lines at random, padded with words to the target size.
    Mixed,
    /// Access-log lines only, as long as they come (the target is ignored).
    Access,
    /// JSON lines only, as long as they come (the target is ignored).
    Json,
}

/// Appends one line of about `target` bytes (newline included): the prefix, then an access-log
/// or a JSON line with realistic variety.
pub fn line(
    out: &mut Vec<u8>,
    rng: &mut fastrand::Rng,
    file: usize,
    seq: u64,
    target: usize,
    write_us: u64,
) {
    line_shaped(out, rng, Shape::Mixed, file, seq, target, write_us);
}

/// [`line`] of a given [`Shape`].
pub fn line_shaped(
    out: &mut Vec<u8>,
    rng: &mut fastrand::Rng,
    shape: Shape,
    file: usize,
    seq: u64,
    target: usize,
    write_us: u64,
) {
    let start = out.len();
    let _ = write!(out, "{:04}:{:010}:{:016} ", file % FILES, seq, write_us);
    let access = match shape {
        Shape::Mixed => rng.bool(),
        Shape::Access => true,
        Shape::Json => false,
    };
    if access {
        let _ = write!(
            out,
            r#"10.{}.{}.{} - - [25/Nov/2026:10:{:02}:{:02} +0000] "{} /api/v1/{}/{} HTTP/1.1" {} {} "-" "Mozilla/5.0 (X11; Linux x86_64) rv:{}" rt={}.{:03}"#,
            rng.u8(..),
            rng.u8(..),
            rng.u8(..),
            rng.u8(..60),
            rng.u8(..60),
            WORDS[38 + rng.usize(..4)],
            WORDS[rng.usize(..WORDS.len())],
            rng.u32(..1_000_000),
            [200, 200, 200, 201, 204, 301, 404, 500][rng.usize(..8)],
            rng.u32(..100_000),
            100 + rng.u8(..30),
            rng.u8(..5),
            rng.u16(..1000),
        );
    } else {
        let _ = write!(
            out,
            r#"{{"level":"{}","ts":"2026-11-25T10:{:02}:{:02}.{:06}Z","msg":"{} {} {}","trace_id":"{:016x}","user_id":{},"duration_ms":{}}}"#,
            ["info", "info", "info", "warn", "error", "debug"][rng.usize(..6)],
            rng.u8(..60),
            rng.u8(..60),
            rng.u32(..1_000_000),
            WORDS[rng.usize(..WORDS.len())],
            WORDS[rng.usize(..WORDS.len())],
            WORDS[rng.usize(..WORDS.len())],
            rng.u64(..),
            rng.u32(..10_000_000),
            rng.u16(..5000),
        );
    }
    if shape != Shape::Mixed {
        out.push(b'\n');
        return;
    }
    // Pad with words up to the target size, as real lines carry more fields.
    while out.len() - start + 1 < target {
        out.push(b' ');
        out.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
    }
    out.truncate(start + target.max(PREFIX_LEN + 1) - 1);
    out.push(b'\n');
}

/// At least `bytes` of sample lines (about 256 bytes each), for benchmarks of the hot path.
pub fn corpus(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 512);
    let mut rng = fastrand::Rng::with_seed(42);
    let mut seq = 0;
    while out.len() < bytes {
        line(&mut out, &mut rng, 0, seq, 256, 0);
        seq += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_prefix_and_size() {
        let mut rng = fastrand::Rng::with_seed(1);
        for target in [64, 256, 1000] {
            let mut out = Vec::new();
            line(&mut out, &mut rng, 3, 12345, target, 99);
            assert_eq!(out.len(), target, "{}", String::from_utf8_lossy(&out));
            assert!(out.starts_with(b"0003:0000012345:0000000000000099 "));
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}

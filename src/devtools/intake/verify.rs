//! The benchmark sink (`--verify`): exactly-once and latency accounting for sample lines,
//! finding events by how they start instead of parsing the JSON; and its deferred form
//! (`--verify-later`), which answers at once and checks the bodies on a thread that only runs
//! when the machine has nothing else to do.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use bytes::Bytes;

use super::IntakeState;
use crate::lock;
use sidelog_shipper::compress;
use sidelog_shipper::config::INTAKE_MAX_BODY_BYTES;

/// Exactly-once and latency accounting for benchmark lines, which start with
/// `FF:SSSSSSSSSS:UUUUUUUUUUUUUUUU ` (file, sequence number, write time in Unix microseconds).
#[derive(Default)]
pub struct Verifier {
    seen: Vec<Vec<u64>>,
    pub distinct: u64,
    pub duplicates: u64,
    pub unrecognised: u64,
    /// Write-to-intake latency histogram in milliseconds (last bucket: 60 s and more).
    latency_ms: Vec<u64>,
    /// (received, distinct lines so far) for every body that brought new lines, in the
    /// order received: the arrival curve the throughput benchmark reads its rates from.
    pub arrivals: Vec<(u64, u64)>,
}

/// Length of the benchmark line prefix.
const VERIFY_PREFIX_LEN: usize = sidelog_sample::PREFIX_LEN;

/// The key every event holds once: sidelog writes it first, other shippers (Fluent Bit's
/// datadog output) after other fields. A JSON string cannot hold an unescaped `"`, so this
/// sequence marks an event's message exactly, without parsing the JSON.
const EVENT_START: &[u8] = br#""message":""#;

impl Verifier {
    /// Records every event of a body sidelog encoded; returns how many events it holds.
    /// `now_us` is when the body was received.
    pub(super) fn record_body(&mut self, body: &[u8], now_us: u64) -> usize {
        let (mut events, before) = (0, self.distinct);
        for at in memchr::memmem::find_iter(body, EVENT_START) {
            events += 1;
            self.record(&body[at + EVENT_START.len()..], now_us);
        }
        if self.distinct > before {
            self.arrivals.push((now_us, self.distinct));
        }
        events
    }

    fn record(&mut self, msg: &[u8], now_us: u64) {
        let Some((file, seq, written_us)) = parse_prefix(msg) else {
            self.unrecognised += 1;
            return;
        };
        if self.seen.len() <= file {
            self.seen.resize_with(file + 1, Vec::new);
        }
        let bits = &mut self.seen[file];
        let word = (seq / 64) as usize;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let mask = 1u64 << (seq % 64);
        if bits[word] & mask != 0 {
            self.duplicates += 1;
        } else {
            bits[word] |= mask;
            self.distinct += 1;
        }
        if written_us > 0 {
            if self.latency_ms.is_empty() {
                self.latency_ms = vec![0; 60_001];
            }
            let ms = (now_us.saturating_sub(written_us) / 1000).min(60_000) as usize;
            self.latency_ms[ms] += 1;
        }
    }

    /// Lines missing below the highest of their file that arrived: up to `limit` of them,
    /// as `"file:seq"`, and how many there are in all. What a benchmark that lost lines
    /// prints, so that the loss can be looked for in the files.
    pub fn gaps(&self, limit: usize) -> (Vec<String>, u64) {
        let mut first = Vec::new();
        let mut total = 0u64;
        for (file, bits) in self.seen.iter().enumerate() {
            let Some(top) = bits.iter().rposition(|&w| w != 0) else {
                continue;
            };
            let highest = top as u64 * 64 + 63 - u64::from(bits[top].leading_zeros());
            for seq in 0..highest {
                if bits[(seq / 64) as usize] & (1u64 << (seq % 64)) == 0 {
                    total += 1;
                    if first.len() < limit {
                        first.push(format!("{file}:{seq}"));
                    }
                }
            }
        }
        (first, total)
    }

    /// When the body that brought the newest distinct line was received (Unix microseconds;
    /// 0 before the first).
    pub fn last_new_us(&self) -> u64 {
        self.arrivals.last().map_or(0, |&(at, _)| at)
    }

    /// The latency below which `q` (0..1) of the lines arrived, in milliseconds.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency_ms.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (ms, n) in self.latency_ms.iter().enumerate() {
            acc += n;
            if acc >= target {
                return Some(ms as u64);
            }
        }
        None
    }
}

fn parse_prefix(msg: &[u8]) -> Option<(usize, u64, u64)> {
    if msg.len() < VERIFY_PREFIX_LEN || msg[4] != b':' || msg[15] != b':' {
        return None;
    }
    let num = |b: &[u8]| -> Option<u64> {
        b.iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u64)
        })
    };
    Some((
        num(&msg[..4])? as usize,
        num(&msg[5..15])?,
        num(&msg[16..32])?,
    ))
}

/// A body accepted unchecked, waiting for the deferred verifier.
pub(super) struct Received {
    pub encoding: String,
    pub body: Bytes,
    pub at_us: u64,
}

/// Starts the deferred verifier: a thread at the idle scheduling class that decompresses and
/// checks bodies in the order received. A benchmark's intake shares the cores with the
/// shipper it measures; checking later keeps its decompression off the clock without
/// checking less. The thread ends when the intake's state is dropped.
pub(super) fn spawn_deferred(
    state: Weak<IntakeState>,
    bodies: mpsc::Receiver<Received>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("intake-verify".into())
        .spawn(move || {
            lower_to_idle_class();
            while let Ok(received) = bodies.recv() {
                let Some(state) = state.upgrade() else { return };
                check_deferred(&state, &received);
                state.pending_bodies.fetch_sub(1, Ordering::Relaxed);
            }
        })
        .map(drop)
}

fn check_deferred(state: &IntakeState, received: &Received) {
    let Some(verifier) = &state.verify else {
        return;
    };
    match compress::decompress(&received.encoding, &received.body, INTAKE_MAX_BODY_BYTES) {
        Ok(raw) => {
            let events = lock(verifier).record_body(&raw, received.at_us);
            state.events.fetch_add(events as u64, Ordering::Relaxed);
            state.bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
        }
        // Counted where the benchmark looks: it fails on anything it cannot check.
        Err(_) => lock(verifier).unrecognised += 1,
    }
}

/// SCHED_IDLE: runs only on a core nothing else wants (Linux; elsewhere a normal thread).
fn lower_to_idle_class() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            tracing::debug!("intake verifier keeps the normal scheduling class");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_wherever_their_message_key_stands() {
        let mut v = Verifier::default();
        // sidelog's order, Fluent Bit's (timestamp first), a repeat, and a line of another
        // shape whose text holds the key escaped, which is not an event.
        let body = concat!(
            r#"[{"message":"0000:0000000000:0000000000000000 a","status":"info"},"#,
            r#"{"timestamp":1796297800786,"message":"0000:0000000001:0000000000000000 b"},"#,
            r#"{"timestamp":1796297800787,"message":"0000:0000000001:0000000000000000 b"},"#,
            r#"{"message":"0000:0000000002:0000000000000000 say \"message\":\"x\""}]"#
        );
        assert_eq!(v.record_body(body.as_bytes(), 1), 4);
        assert_eq!((v.distinct, v.duplicates, v.unrecognised), (3, 1, 0));
    }
}

//! The benchmark sink (`--verify`): exactly-once and latency accounting for sample lines,
//! finding events by how they start instead of parsing the JSON.

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
}

/// Length of the benchmark line prefix.
const VERIFY_PREFIX_LEN: usize = crate::sample::PREFIX_LEN;

/// How every event sidelog encodes begins. A JSON string cannot hold an unescaped `"`, so
/// this sequence marks event starts exactly, without parsing the JSON.
const EVENT_START: &[u8] = br#"{"message":""#;

impl Verifier {
    /// Records every event of a body sidelog encoded; returns how many events it holds.
    pub(super) fn record_body(&mut self, body: &[u8], now_us: u64) -> usize {
        let mut events = 0;
        for at in memchr::memmem::find_iter(body, EVENT_START) {
            events += 1;
            self.record(&body[at + EVENT_START.len()..], now_us);
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
    if msg.len() < VERIFY_PREFIX_LEN || msg[2] != b':' || msg[13] != b':' {
        return None;
    }
    let num = |b: &[u8]| -> Option<u64> {
        b.iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u64)
        })
    };
    Some((
        num(&msg[..2])? as usize,
        num(&msg[3..13])?,
        num(&msg[14..30])?,
    ))
}

//! JSON lines (`parse_json`): a JSON object line's level and time become the event's
//! `status` and `timestamp`; the message is sent as it is.

/// The attributes of a JSON line Datadog reserves for status and date. Only these fields
/// are kept; the others are skipped without being built.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct JsonAttributes {
    status: Option<serde_json::Value>,
    level: Option<serde_json::Value>,
    severity: Option<serde_json::Value>,
    lvl: Option<serde_json::Value>,
    timestamp: Option<serde_json::Value>,
    #[serde(rename = "@timestamp")]
    at_timestamp: Option<serde_json::Value>,
    #[serde(rename = "_timestamp")]
    underscore_timestamp: Option<serde_json::Value>,
    #[serde(rename = "Timestamp")]
    capital_timestamp: Option<serde_json::Value>,
    #[serde(rename = "eventTime")]
    event_time: Option<serde_json::Value>,
    date: Option<serde_json::Value>,
    time: Option<serde_json::Value>,
    ts: Option<serde_json::Value>,
}

/// Status and time of a JSON object line; nothing for anything else.
pub fn json_attributes(text: &[u8]) -> (Option<String>, Option<u64>) {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return (None, None);
    }
    let Ok(attrs) = serde_json::from_slice::<JsonAttributes>(text) else {
        return (None, None);
    };
    let status = [attrs.status, attrs.level, attrs.severity, attrs.lvl]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            serde_json::Value::String(s) if !s.trim().is_empty() && s.len() <= 32 => {
                Some(s.trim().to_ascii_lowercase())
            }
            _ => None,
        });
    let timestamp = [
        attrs.timestamp,
        attrs.at_timestamp,
        attrs.underscore_timestamp,
        attrs.capital_timestamp,
        attrs.event_time,
        attrs.date,
        attrs.time,
        attrs.ts,
    ]
    .into_iter()
    .flatten()
    .find_map(|v| match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(epoch_ms),
        serde_json::Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(epoch_ms)
            .or_else(|| rfc3339_ms(s.trim())),
        _ => None,
    });
    (status, timestamp)
}

/// Seconds, milliseconds, microseconds or nanoseconds since the epoch, told apart by size.
fn epoch_ms(v: f64) -> Option<u64> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    let ms = if v >= 1e17 {
        v / 1e6
    } else if v >= 1e14 {
        v / 1e3
    } else if v >= 1e11 {
        v
    } else {
        v * 1e3
    };
    Some(ms as u64)
}

/// `2026-11-26T10:00:00.123Z`, `2026-11-26 10:00:00+01:00` and the like, to Unix
/// milliseconds: RFC 3339, also with a space or a lower-case `t` between date and time, a
/// comma before the fraction, `+HHMM` offsets, and no offset at all (read as UTC). A leap
/// second reads as :59, as `jiff` and most parsers have it. Held to `jiff` by a differential
/// test; hand-written because a date crate would add to every Pod's binary to read one format.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(b, 0..4)?, digits(b, 5..7)?, digits(b, 8..10)?);
    let (hour, minute, second) = (digits(b, 11..13)?, digits(b, 14..16)?, digits(b, 17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let (millis, i) = fraction_ms(b, 19)?;
    let offset_secs = offset_secs(b, i)?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

/// The number written in `b[r]`, all of whose bytes must be ASCII digits.
fn digits(b: &[u8], r: std::ops::Range<usize>) -> Option<i64> {
    let part = b.get(r)?;
    if part.is_empty() {
        return None;
    }
    part.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// The optional fraction of a second at `b[i..]` (`.123`, `,5`, up to nanoseconds), as whole
/// milliseconds, and where it ends.
fn fraction_ms(b: &[u8], mut i: usize) -> Option<(i64, usize)> {
    if !matches!(b.get(i), Some(b'.' | b',')) {
        return Some((0, i));
    }
    i += 1;
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let n = i - start;
    if !(1..=9).contains(&n) {
        return None;
    }
    let ms = (0..3).fold(0, |ms, k| {
        ms * 10
            + if k < n {
                i64::from(b[start + k] - b'0')
            } else {
                0
            }
    });
    Some((ms, i))
}

/// The offset from UTC at `b[i..]`, the rest of the text: nothing (UTC), `Z`, or `±HH:MM` /
/// `±HHMM` within a day.
fn offset_secs(b: &[u8], i: usize) -> Option<i64> {
    let sign = match b.get(i) {
        None => return Some(0),
        Some(b'Z' | b'z') if i + 1 == b.len() => return Some(0),
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let minute_at = match b.len() - i {
        6 if b[i + 3] == b':' => i + 4,
        5 => i + 3,
        _ => return None,
    };
    let (h, m) = (digits(b, i + 1..i + 3)?, digits(b, minute_at..b.len())?);
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

/// Days in a month of the proleptic Gregorian calendar.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_lift_status_and_timestamp() {
        let (s, t) =
            json_attributes(br#"{"level":"WARN","time":"2026-11-26T10:00:00.123Z","msg":"x"}"#);
        assert_eq!(s.as_deref(), Some("warn"));
        assert_eq!(t, Some(1_795_687_200_123));
        let (s, t) = json_attributes(
            br#"{"severity":"error","ts":1795687200.5,"nested":{"level":"debug"}}"#,
        );
        assert_eq!(s.as_deref(), Some("error"));
        assert_eq!(t, Some(1_795_687_200_500));
        let (s, t) =
            json_attributes(br#"{"status":"info","@timestamp":"2026-11-26 11:00:00+01:00"}"#);
        assert_eq!((s.as_deref(), t), (Some("info"), Some(1_795_687_200_000)));
        assert_eq!(json_attributes(b"not json {"), (None, None));
        assert_eq!(
            json_attributes(br#"{"level": 3, "msg": "no string level"}"#),
            (None, None)
        );
        assert_eq!(json_attributes(br#"{"broken": "#), (None, None));
        assert_eq!(json_attributes(br#"["an","array"]"#), (None, None));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2000-02-29T12:34:56.789-02:30"),
            Some(951_836_696_789)
        );
        assert_eq!(rfc3339_ms("2026-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("yesterday"), None);
        // Days that do not exist, offsets beyond a day, fractions past nanoseconds.
        assert_eq!(rfc3339_ms("2026-02-31T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("2026-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("2100-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("2026-04-31T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("2026-11-26T10:00:00+99:00"), None);
        assert_eq!(rfc3339_ms("2026-11-26T10:00:00+01:60"), None);
        assert_eq!(rfc3339_ms("2026-11-26T10:00:00+1:00"), None);
        assert_eq!(rfc3339_ms("2026-11-26T10:00:00+01:00:00"), None);
        assert_eq!(rfc3339_ms("2026-11-26T10:00:00.1234567890Z"), None);
        assert_eq!(rfc3339_ms("2026-11-26T10:00:00.Z"), None);
        assert_eq!(rfc3339_ms("2026-11-26T10:00:00Zjunk"), None);
        assert_eq!(rfc3339_ms("2026-11-26T1a:00:00Z"), None);
        // What it reads beyond strict RFC 3339.
        assert_eq!(
            rfc3339_ms("2000-02-29 00:00:00,5+0000"),
            Some(951_782_400_500)
        );
        assert_eq!(rfc3339_ms("2000-02-29t00:00:00"), Some(951_782_400_000));
        assert_eq!(
            rfc3339_ms("2016-12-31T23:59:60Z"),
            rfc3339_ms("2016-12-31T23:59:59Z")
        );
    }

    /// The components of an RFC 3339 timestamp, written in its canonical form.
    fn timestamp_text() -> impl Strategy<Value = String> {
        (
            // Up to 9998: jiff's instants end on 9999-12-30, ours with the year.
            (0..=9998u32, 1..=12u32, 1..=31u32),
            (0..=23u32, 0..=59u32, 0..=60u32),
            proptest::option::of("[0-9]{1,9}"),
            proptest::option::of((any::<bool>(), 0..=23u32, 0..=59u32)),
        )
            .prop_map(|((y, mo, d), (h, mi, s), frac, offset)| {
                let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
                let offset = match offset {
                    None => "Z".to_string(),
                    Some((plus, oh, om)) => {
                        format!("{}{oh:02}:{om:02}", if plus { '+' } else { '-' })
                    }
                };
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{offset}")
            })
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Every RFC 3339 text, valid or not (31 February, a leap second), reads as `jiff`
        /// reads it: the same instant to the millisecond, or refused by both (instants before
        /// 1970 cannot be an event's timestamp).
        #[test]
        fn rfc3339_reads_as_jiff_does(text in timestamp_text()) {
            let theirs = text
                .parse::<jiff::Timestamp>()
                .ok()
                .and_then(|t| u64::try_from(t.as_millisecond()).ok());
            prop_assert_eq!(rfc3339_ms(&text), theirs, "{}", text);
        }
    }
}

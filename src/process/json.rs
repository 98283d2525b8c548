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
/// milliseconds.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let padded: String = frac.chars().chain("000".chars()).take(3).collect();
        millis = padded.parse().ok()?;
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let rest = &s[i + 1..];
            let (h, m) = rest
                .split_once(':')
                .unwrap_or((rest.get(..2)?, rest.get(2..)?));
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
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
    }
}

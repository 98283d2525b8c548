//! Checks of what arrived against what was written.

/// Compares arrived lines with written ones; on a mismatch reports counts and the first
/// difference instead of both lists.
#[track_caller]
pub fn assert_lines(actual: &[String], expected: &[String], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let unique: std::collections::HashSet<&String> = actual.iter().collect();
    panic!(
        "{what}: {} lines arrived ({} distinct), {} expected; first difference at {first}: got {:?}, expected {:?}",
        actual.len(),
        unique.len(),
        expected.len(),
        actual.get(first),
        expected.get(first)
    );
}

/// Checks that the messages starting with `prefix` carry each sequence number `0..n` exactly
/// once (numbers as written by [`PacedWriter`]); reports what is missing or repeated.
#[track_caller]
pub fn assert_each_once(messages: &[String], prefix: &str, n: u64) {
    let mut count = vec![0u32; n as usize];
    let mut foreign = 0;
    for m in messages {
        let Some(rest) = m.strip_prefix(prefix) else {
            continue;
        };
        match rest.trim().parse::<u64>() {
            Ok(seq) if seq < n => count[seq as usize] += 1,
            _ => foreign += 1,
        }
    }
    let missing: Vec<usize> = (0..n as usize).filter(|&i| count[i] == 0).collect();
    let repeated: Vec<usize> = (0..n as usize).filter(|&i| count[i] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && foreign == 0,
        "{prefix}: {} of {n} missing (first {:?}), {} repeated (first {:?}), {foreign} unexpected",
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
    );
}

/// For the messages starting with `prefix` and numbered `0..n` (as [`PacedWriter`] writes
/// them): how many numbers never arrived, and how many arrivals were repeats.
pub fn count_missing_and_repeated(messages: &[String], prefix: &str, n: u64) -> (usize, usize) {
    let mut count = vec![0u32; n as usize];
    for m in messages {
        if let Some(seq) = m
            .strip_prefix(prefix)
            .and_then(|rest| rest.trim().parse::<u64>().ok())
            && seq < n
        {
            count[seq as usize] += 1;
        }
    }
    let missing = count.iter().filter(|&&c| c == 0).count();
    let repeated = count.iter().map(|&c| c.saturating_sub(1) as usize).sum();
    (missing, repeated)
}

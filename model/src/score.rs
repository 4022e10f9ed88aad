//! The scoring maths shared by run summaries, rollups and the pages.

use crate::record::Score;

/// The arithmetic mean, or `None` for no values.
pub fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u64), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Weighted mean of the scores that have a value; `None` when none has. With all weights zero,
/// the plain mean.
pub fn weighted_mean(scores: &[Score]) -> Option<f64> {
    let (sum, w) = scores
        .iter()
        .filter_map(|s| s.value.map(|v| (v * s.weight, s.weight)))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    if w > 0.0 {
        Some(sum / w)
    } else {
        mean(scores.iter().filter_map(|s| s.value))
    }
}

/// Whether every scorer passed (`None` without scorers; a scorer that failed did not pass).
pub fn all_passed(scores: &[Score]) -> Option<bool> {
    if scores.is_empty() {
        return None;
    }
    Some(scores.iter().all(|s| s.passed == Some(true)))
}

//! Percentiles and medians of measurements.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `q`-quantile (`0.0..=1.0`) of `sorted` (ascending) by the nearest-rank
/// method: the smallest sample such that at least `q` of all samples are at
/// most it. `None` when there are no samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Nearest rank is ceil(q * n), 1-based; q = 0 means the minimum.
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when empty. Reorders `values`.
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => values.get(n / 2).copied(),
        _ => Some((values.get(n / 2 - 1)? + values.get(n / 2)?) / 2.0),
    }
}

/// A duration in milliseconds, for printing.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Wall-clock nanoseconds since the Unix epoch: a timestamp one process
/// puts into a request and another part of the pipeline compares with.
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentile_nearest_rank() {
        let samples = ms(1..=100);
        assert_eq!(percentile(&samples, 0.50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&samples, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&samples, 0.0), Some(Duration::from_millis(1)));
        // 99.5 % of 100 samples needs the 100th.
        assert_eq!(
            percentile(&samples, 0.995),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn percentile_small_and_empty() {
        assert_eq!(percentile(&[], 0.5), None);
        let one = ms([7]);
        assert_eq!(percentile(&one, 0.5), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&one, 0.99), Some(Duration::from_millis(7)));
        let four = ms([10, 20, 30, 40]);
        assert_eq!(percentile(&four, 0.5), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&four, 0.51), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&four, 0.99), Some(Duration::from_millis(40)));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}

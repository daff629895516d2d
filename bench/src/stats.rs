//! Latency summaries.

use serde::Serialize;

/// The nearest-rank percentile (the smallest value with at least `p` % of
/// the samples at or below it) of an ascending slice. Nearest-rank never
/// invents a value between two samples, so a p99 is a latency some message
/// really had.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Count, mean and tail of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    pub count: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Summary {
    pub(crate) fn from_micros(mut samples: Vec<u64>) -> Summary {
        samples.sort_unstable();
        let ms = |us: Option<u64>| us.map(|v| v as f64 / 1000.0);
        let mean = (!samples.is_empty()).then(|| {
            samples.iter().map(|&v| v as f64).sum::<f64>() / samples.len() as f64 / 1000.0
        });
        Summary {
            count: samples.len() as u64,
            mean_ms: mean,
            p50_ms: ms(percentile(&samples, 50.0)),
            p95_ms: ms(percentile(&samples, 95.0)),
            p99_ms: ms(percentile(&samples, 99.0)),
            max_ms: ms(samples.last().copied()),
        }
    }
}

/// Latencies, each with the interval its message was sent in (counted
/// from the warm-up's start, as the RSS peaks are), so a long run can tell
/// when it was slow as well as how slow.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Latencies {
    us: Vec<u64>,
    interval: Vec<u16>,
}

impl Latencies {
    pub(crate) fn push(&mut self, interval: u16, us: u64) {
        self.us.push(us);
        self.interval.push(interval);
    }

    pub(crate) fn extend(&mut self, other: &Latencies) {
        self.us.extend_from_slice(&other.us);
        self.interval.extend_from_slice(&other.interval);
    }

    pub(crate) fn summary(&self) -> Summary {
        Summary::from_micros(self.us.clone())
    }

    /// One summary per interval, from the first to the last that holds a
    /// sample; an interval without one (the warm-up's) has count 0.
    pub(crate) fn per_interval(&self) -> Vec<Summary> {
        let n = self
            .interval
            .iter()
            .max()
            .map_or(0, |&i| usize::from(i) + 1);
        let mut buckets = vec![Vec::new(); n];
        for (&us, &i) in self.us.iter().zip(&self.interval) {
            buckets[usize::from(i)].push(us);
        }
        buckets.into_iter().map(Summary::from_micros).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let one_to_hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&one_to_hundred, 50.0), Some(50));
        assert_eq!(percentile(&one_to_hundred, 95.0), Some(95));
        assert_eq!(percentile(&one_to_hundred, 99.0), Some(99));
        assert_eq!(percentile(&one_to_hundred, 100.0), Some(100));
        assert_eq!(percentile(&one_to_hundred, 0.0), Some(1));

        let ten: Vec<u64> = (1..=10).map(|v| v * 10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(50));
        assert_eq!(percentile(&ten, 95.0), Some(100));
        assert_eq!(percentile(&ten, 99.0), Some(100));

        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_and_converts_to_milliseconds() {
        let samples = vec![3_000, 1_000, 2_000, 10_000];
        let s = Summary::from_micros(samples);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, Some(2.0));
        assert_eq!(s.p95_ms, Some(10.0));
        assert_eq!(s.max_ms, Some(10.0));
        assert_eq!(s.mean_ms, Some(4.0));

        let empty = Summary::from_micros(vec![]);
        assert_eq!(empty.count, 0);
        assert_eq!(empty.p99_ms, None);
        assert_eq!(empty.mean_ms, None);
    }

    #[test]
    fn latencies_are_summed_up_whole_and_by_interval() {
        let mut a = Latencies::default();
        a.push(1, 2_000);
        a.push(3, 9_000);
        let mut b = Latencies::default();
        b.push(1, 4_000);
        b.push(1, 1_000);
        a.extend(&b);
        assert_eq!((a.summary().count, a.summary().max_ms), (4, Some(9.0)));
        let by = a.per_interval();
        assert_eq!(by.len(), 4);
        assert_eq!(by[0].count, 0, "the warm-up's interval");
        assert_eq!(
            (by[1].count, by[1].p50_ms, by[1].max_ms),
            (3, Some(2.0), Some(4.0))
        );
        assert_eq!(by[2].count, 0);
        assert_eq!((by[3].count, by[3].max_ms), (1, Some(9.0)));
        assert!(Latencies::default().per_interval().is_empty());
    }
}

//! Open loop: whether latency from the intended send grew through the run. A server sent more
//! than it can serve queues what it cannot take yet, so each request waits longer than the one
//! before: the client keeps its schedule (it has not fallen behind) while the latencies climb
//! for as long as the run lasts. Percentiles over the whole run hide that shape; the mean of the
//! last fifth of the sends over that of the first shows it.

use std::collections::BTreeMap;

/// Bins at most; past this, bins double in width (two merged into one).
const MAX_BINS: usize = 1024;

/// A fifth of the sends with fewer requests than this gives no growth figure (a mean of a few
/// requests is one slow answer away from doubling).
const MIN_PER_FIFTH: u64 = 20;

/// Latency from the intended send, summed by intended send time: bins of `width_ms` keyed by
/// Unix ms ÷ width, so records may come in any order. Bounded to [`MAX_BINS`] bins (16 bytes
/// each) however long the run.
pub(super) struct Trend {
    width_ms: i64,
    bins: BTreeMap<i64, (u64, f64)>,
}

impl Trend {
    pub(super) fn new() -> Trend {
        Trend {
            width_ms: 10,
            bins: BTreeMap::new(),
        }
    }

    /// One request, meant to be sent at `intended_ms` (Unix ms), `latency_ms` from then to its
    /// answer.
    pub(super) fn add(&mut self, intended_ms: i64, latency_ms: f64) {
        let bin = self
            .bins
            .entry(intended_ms.div_euclid(self.width_ms))
            .or_default();
        bin.0 += 1;
        bin.1 += latency_ms;
        if self.bins.len() > MAX_BINS {
            self.width_ms *= 2;
            let old = std::mem::take(&mut self.bins);
            for (k, (n, sum)) in old {
                let b = self.bins.entry(k.div_euclid(2)).or_default();
                b.0 += n;
                b.1 += sum;
            }
        }
    }

    /// The mean latency of the requests meant for the last fifth of the span of intended send
    /// times over that of the first fifth; `None` while either fifth holds fewer than
    /// [`MIN_PER_FIFTH`] requests.
    pub(super) fn growth(&self) -> Option<f64> {
        let (&first, _) = self.bins.first_key_value()?;
        let (&last, _) = self.bins.last_key_value()?;
        let fifth = (last - first) / 5;
        let mean = |range: std::ops::RangeInclusive<i64>| {
            let (n, sum) = self
                .bins
                .range(range)
                .fold((0u64, 0.0), |(n, s), (_, (bn, bs))| (n + bn, s + bs));
            (n >= MIN_PER_FIFTH && sum > 0.0).then(|| sum / n as f64)
        };
        Some(mean(last - fifth..=last)? / mean(first..=first + fifth)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue at a server taking 50 requests/s sent 100/s: the wait grows by 1 s a second,
    /// so over 1.5 s the last fifth waits ~1.35 s and the first ~0.15 s (about 9×); a server
    /// that keeps up shows the same latency throughout (1×). A count-weighted or unordered
    /// figure (the mean of all, or of the first and last bins alone) fails one of the two.
    #[test]
    fn a_growing_queue_shows_and_a_steady_server_does_not() {
        let t0 = 1_764_000_000_000i64;
        let (mut queue, mut steady) = (Trend::new(), Trend::new());
        // Added newest first: the bins, not the order, say when a request was meant.
        for i in (0..150).rev() {
            let at = i * 10;
            queue.add(t0 + at, 20.0 + at as f64);
            steady.add(t0 + at, 20.0 + (i % 7) as f64);
        }
        let g = queue.growth().unwrap();
        assert!((6.0..=12.0).contains(&g), "growth {g}");
        let s = steady.growth().unwrap();
        assert!((0.8..=1.25).contains(&s), "steady {s}");
    }

    /// Past 1,024 bins the bins widen and the figure holds: an hour of sends, ten a second.
    #[test]
    fn bins_stay_bounded_and_the_figure_survives_widening() {
        let mut t = Trend::new();
        for i in 0..36_000i64 {
            t.add(i * 100, if i < 7_200 { 10.0 } else { 40.0 });
        }
        assert!(t.bins.len() <= MAX_BINS, "{} bins", t.bins.len());
        let g = t.growth().unwrap();
        assert!((3.8..=4.2).contains(&g), "growth {g}");
    }

    /// Too few requests in a fifth give no figure rather than a ratio of two anecdotes.
    #[test]
    fn too_few_requests_give_no_figure() {
        let mut t = Trend::new();
        for i in 0..50i64 {
            t.add(i * 100, 10.0);
        }
        assert_eq!(t.growth(), None, "ten requests a fifth");
        assert_eq!(Trend::new().growth(), None);
    }
}

//! Hourly rollups: per hour and per (job, endpoint, model, provider), the counts, token sums and
//! a mergeable latency histogram of the request records. They are written in the same
//! transaction as the records, so analytics over any window read a few hundred small rows
//! instead of scanning millions of records, and always agree with the records.
//!
//! Latency statistics count successful requests (no error) that have a response time: a
//! refused connection's 0 ms would otherwise flatter an endpoint that is down. Percentiles come
//! from log-linear buckets, so they are within 0.8 % of the exact nearest-rank value.

use std::collections::BTreeMap;

use evald_web::model::{Record, Stats, StatsGroup, TokenStats};
use serde::{Deserialize, Serialize};

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the hour containing `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

/// Latency histogram buckets: values in µs; below 128 µs one bucket per µs, above that 64
/// buckets per power of two (log-linear, at most 1/64 = 1.6 % wide, so a bucket's midpoint is
/// within 0.8 % of any value in it). Stored sparse: an hour of one target has a few dozen
/// non-empty buckets, so merging a week of rollups adds a few thousand numbers.
pub mod buckets {
    /// Buckets up to 2^40 µs (12 days): more than any timeout.
    pub const COUNT: usize = 40 * 64 + 128;

    /// The bucket of a value in µs.
    pub fn index(us: u64) -> u16 {
        if us < 128 {
            return us as u16;
        }
        let exp = 63 - us.leading_zeros() as u64 - 6;
        let mant = us >> exp;
        ((exp * 64 + mant) as usize).min(COUNT - 1) as u16
    }

    /// The value (µs) a bucket stands for: its midpoint.
    pub fn value(idx: u16) -> f64 {
        let idx = idx as u64;
        if idx < 128 {
            return idx as f64;
        }
        let exp = idx / 64 - 1;
        let mant = idx % 64 + 64;
        let low = mant << exp;
        let high = ((mant + 1) << exp) - 1;
        (low + high) as f64 / 2.0
    }
}

/// A mergeable latency histogram, sparse: (bucket, count) sorted by bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies(Vec<(u16, u64)>);

impl Latencies {
    /// Counts a latency in.
    pub fn record(&mut self, ms: f64) {
        let us = (ms * 1000.0).round().max(0.0) as u64;
        let b = buckets::index(us);
        match self.0.binary_search_by_key(&b, |e| e.0) {
            Ok(i) => self.0[i].1 += 1,
            Err(i) => self.0.insert(i, (b, 1)),
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &Latencies) {
        for &(b, c) in &o.0 {
            match self.0.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => self.0[i].1 += c,
                Err(i) => self.0.insert(i, (b, c)),
            }
        }
    }

    /// Samples counted.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|e| e.1).sum()
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A dense accumulator for merging many sparse histograms quickly.
pub struct Dense(Vec<u64>);

impl Default for Dense {
    fn default() -> Self {
        Dense(vec![0; buckets::COUNT])
    }
}

impl Dense {
    /// Adds a sparse histogram.
    pub fn add(&mut self, l: &Latencies) {
        for &(b, c) in &l.0 {
            self.0[b as usize] += c;
        }
    }

    /// Nearest-rank quantile (the smallest value with at least `q` of the samples at or below
    /// it), in ms; 0 without samples.
    pub fn quantile(&self, q: f64) -> f64 {
        let n: u64 = self.0.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return buckets::value(i as u16) / 1000.0;
            }
        }
        0.0
    }
}

/// What one rollup row groups by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey {
    /// Hour start, Unix ms.
    pub hour_ms: i64,
    /// Job name.
    pub job: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Model name.
    pub model: String,
    /// Provider label.
    pub provider: String,
}

const SEP: char = '\u{1f}';

impl RollupKey {
    /// The group of a record.
    pub fn of(r: &Record) -> RollupKey {
        RollupKey {
            hour_ms: hour_of(r.timestamp_ms),
            job: r.job.clone(),
            endpoint: r.endpoint.clone(),
            model: r.model.clone(),
            provider: r.provider.clone(),
        }
    }

    /// The string half of the table key.
    pub fn group(&self) -> String {
        [
            self.job.as_str(),
            &self.endpoint,
            &self.model,
            &self.provider,
        ]
        .join(&SEP.to_string())
    }

    /// Back from a table key.
    pub fn parse(hour_ms: i64, group: &str) -> Option<RollupKey> {
        let mut it = group.split(SEP);
        Some(RollupKey {
            hour_ms,
            job: it.next()?.to_string(),
            endpoint: it.next()?.to_string(),
            model: it.next()?.to_string(),
            provider: it.next()?.to_string(),
        })
    }
}

/// Aggregates of one group in one hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// Requests.
    pub requests: u64,
    /// Requests with an error.
    pub errors: u64,
    /// Sum of response times of successful requests, ms.
    pub latency_sum_ms: f64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Response times of successful requests.
    pub latency: Latencies,
}

impl Rollup {
    /// Counts one record in.
    pub fn add(&mut self, r: &Record) {
        self.requests += 1;
        if r.error.is_some() {
            self.errors += 1;
        } else if let Some(ms) = r.response_time_ms {
            self.latency_sum_ms += ms;
            self.latency.record(ms);
        }
        self.prompt_tokens += r.prompt_tokens.unwrap_or(0) as u64;
        self.completion_tokens += r.completion_tokens.unwrap_or(0) as u64;
        self.total_tokens += r.total_tokens.unwrap_or(0) as u64;
    }

    /// Adds another rollup's counts to this one.
    pub fn merge(&mut self, o: &Rollup) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.latency_sum_ms += o.latency_sum_ms;
        self.latency.merge(&o.latency);
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
    }

    /// The stored form (postcard).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Back from the stored form.
    pub fn decode(b: &[u8]) -> Option<Rollup> {
        postcard::from_bytes(b).ok()
    }
}

/// Counts and a dense latency accumulator: what a stats group sums rollups into.
#[derive(Default)]
struct Group {
    requests: u64,
    errors: u64,
    latency_sum_ms: f64,
    latency_n: u64,
    latency: Option<Dense>,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Group {
    fn add(&mut self, r: &Rollup) {
        self.requests += r.requests;
        self.errors += r.errors;
        self.latency_sum_ms += r.latency_sum_ms;
        self.latency_n += r.latency.len();
        if !r.latency.is_empty() {
            self.latency
                .get_or_insert_with(Dense::default)
                .add(&r.latency);
        }
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.total_tokens += r.total_tokens;
    }

    fn finish(self, name: String) -> StatsGroup {
        let q = |p: f64| self.latency.as_ref().map(|d| d.quantile(p)).unwrap_or(0.0);
        let per = |x: u64| {
            if self.requests == 0 {
                0.0
            } else {
                x as f64 / self.requests as f64
            }
        };
        StatsGroup {
            name,
            total_requests: self.requests,
            avg_response_time_ms: if self.latency_n == 0 {
                0.0
            } else {
                self.latency_sum_ms / self.latency_n as f64
            },
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            error_rate: per(self.errors),
            tokens: TokenStats {
                prompt: self.prompt_tokens,
                completion: self.completion_tokens,
                total: self.total_tokens,
                avg_per_request: per(self.total_tokens),
            },
        }
    }
}

/// Rollups accumulated over one write batch, merged into the table before commit. Groups are
/// found by a hash of their fields, so a record costs no key allocation.
#[derive(Default)]
pub struct Pending {
    groups: Vec<(RollupKey, Rollup)>,
    index: std::collections::HashMap<u64, Vec<usize>>,
}

impl Pending {
    /// Counts a record in.
    pub fn add(&mut self, r: &Record) {
        use std::hash::{Hash, Hasher};
        let hour = hour_of(r.timestamp_ms);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (hour, &r.job, &r.endpoint, &r.model, &r.provider).hash(&mut h);
        let slot = self.index.entry(h.finish()).or_default();
        let found = slot.iter().copied().find(|&i| {
            let k = &self.groups[i].0;
            k.hour_ms == hour
                && k.job == r.job
                && k.endpoint == r.endpoint
                && k.model == r.model
                && k.provider == r.provider
        });
        match found {
            Some(i) => self.groups[i].1.add(r),
            None => {
                let mut roll = Rollup::default();
                roll.add(r);
                slot.push(self.groups.len());
                self.groups.push((RollupKey::of(r), roll));
            }
        }
    }

    /// Merges into the rollups table (read, add, write back).
    pub fn merge_into(
        self,
        table: &mut redb::Table<(u64, &str), &[u8]>,
    ) -> Result<(), redb::StorageError> {
        use redb::ReadableTable;
        for (k, r) in self.groups {
            let group = k.group();
            let key = (k.hour_ms.max(0) as u64, group.as_str());
            let mut cur = table
                .get(key)?
                .and_then(|v| Rollup::decode(v.value()))
                .unwrap_or_default();
            cur.merge(&r);
            table.insert(key, cur.encode().as_slice())?;
        }
        Ok(())
    }
}

/// The analytics summary of rollups within a window: overall, by model, provider and job.
pub fn stats(days: u32, rows: &[(RollupKey, Rollup)]) -> Stats {
    let mut all = Group::default();
    let mut by_model: BTreeMap<&str, Group> = BTreeMap::new();
    let mut by_provider: BTreeMap<&str, Group> = BTreeMap::new();
    let mut by_job: BTreeMap<&str, Group> = BTreeMap::new();
    for (k, r) in rows {
        all.add(r);
        by_model.entry(&k.model).or_default().add(r);
        by_provider.entry(&k.provider).or_default().add(r);
        by_job.entry(&k.job).or_default().add(r);
    }
    let groups = |m: BTreeMap<&str, Group>| -> Vec<StatsGroup> {
        let mut v: Vec<StatsGroup> = m
            .into_iter()
            .map(|(k, g)| g.finish(k.to_string()))
            .collect();
        v.sort_by(|a, b| {
            b.total_requests
                .cmp(&a.total_requests)
                .then(a.name.cmp(&b.name))
        });
        v
    };
    Stats {
        days,
        overall: all.finish(String::new()),
        by_model: groups(by_model),
        by_provider: groups(by_provider),
        by_job: groups(by_job),
    }
}

#[cfg(test)]
mod tests {
    use super::buckets::{index, value};

    #[test]
    fn buckets_are_continuous_and_within_0_8_percent() {
        let mut last = 0;
        for us in [
            1u64,
            2,
            127,
            128,
            129,
            255,
            256,
            1000,
            12_345,
            999_999,
            3_600_000_000,
        ] {
            let b = index(us);
            assert!(b >= last, "{us}");
            last = b;
            let v = value(b);
            assert!(
                (v - us as f64).abs() <= us as f64 * 0.008 + 0.5,
                "{us} → {v}"
            );
        }
        for b in 128..200u16 {
            assert_eq!(index(value(b) as u64), b, "bucket {b} round-trips");
        }
    }
}

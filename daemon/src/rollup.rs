//! Hourly rollups: per hour and per (job, endpoint, model, provider), the counts, token sums and
//! a mergeable latency histogram of the request records. They are written in the same
//! transaction as the records, so analytics over any window read a few hundred small rows
//! instead of scanning millions of records, and always agree with the records.
//!
//! Latency statistics count successful requests (no error) that have a response time: a
//! refused connection's 0 ms would otherwise flatter an endpoint that is down.

use std::collections::BTreeMap;

use evald_web::model::{Record, Stats, StatsGroup, TokenStats};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// Histogram precision: 3 significant digits (0.1 %) in microseconds, up to an hour.
const SIGFIG: u8 = 3;
const MAX_US: u64 = 3_600_000_000;

/// The start of the hour containing `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
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
        [self.job.as_str(), &self.endpoint, &self.model, &self.provider].join(&SEP.to_string())
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
#[derive(Debug, Clone)]
pub struct Rollup {
    /// Requests.
    pub requests: u64,
    /// Requests with an error.
    pub errors: u64,
    /// Sum of response times of successful requests, ms.
    pub latency_sum_ms: f64,
    /// Response times of successful requests, µs.
    pub latency: Histogram<u64>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
}

#[derive(Serialize, Deserialize)]
struct RollupBytes {
    requests: u64,
    errors: u64,
    latency_sum_ms: f64,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    hist: Vec<u8>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, SIGFIG)
        .unwrap_or_else(|_| Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable_hist()))
}

#[allow(clippy::expect_used)]
fn unreachable_hist() -> Histogram<u64> {
    // 3 significant figures is always a valid precision.
    Histogram::new(3).expect("a 3-digit histogram is valid")
}

impl Default for Rollup {
    fn default() -> Self {
        Rollup {
            requests: 0,
            errors: 0,
            latency_sum_ms: 0.0,
            latency: new_hist(),
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
        }
    }
}

impl Rollup {
    /// Counts one record in.
    pub fn add(&mut self, r: &Record) {
        self.requests += 1;
        if r.error.is_some() {
            self.errors += 1;
        } else if let Some(ms) = r.response_time_ms {
            self.latency_sum_ms += ms;
            let _ = self.latency.record(((ms * 1000.0).round() as u64).clamp(1, MAX_US));
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
        let _ = self.latency.add(&o.latency);
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut hist = Vec::new();
        let _ = V2Serializer::new().serialize(&self.latency, &mut hist);
        postcard::to_stdvec(&RollupBytes {
            requests: self.requests,
            errors: self.errors,
            latency_sum_ms: self.latency_sum_ms,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            hist,
        })
        .unwrap_or_default()
    }

    /// Back from the stored form.
    pub fn decode(b: &[u8]) -> Option<Rollup> {
        let r: RollupBytes = postcard::from_bytes(b).ok()?;
        let latency: Histogram<u64> = Deserializer::new().deserialize(&mut &r.hist[..]).ok()?;
        Some(Rollup {
            requests: r.requests,
            errors: r.errors,
            latency_sum_ms: r.latency_sum_ms,
            latency,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens: r.total_tokens,
        })
    }

    /// The figures of this aggregate as a stats group named `name`.
    pub fn to_group(&self, name: String) -> StatsGroup {
        let n = self.latency.len();
        let q = |p: f64| {
            if n == 0 {
                0.0
            } else {
                self.latency.value_at_quantile(p) as f64 / 1000.0
            }
        };
        StatsGroup {
            name,
            total_requests: self.requests,
            avg_response_time_ms: if n == 0 { 0.0 } else { self.latency_sum_ms / n as f64 },
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            error_rate: if self.requests == 0 {
                0.0
            } else {
                self.errors as f64 / self.requests as f64
            },
            tokens: TokenStats {
                prompt: self.prompt_tokens,
                completion: self.completion_tokens,
                total: self.total_tokens,
                avg_per_request: if self.requests == 0 {
                    0.0
                } else {
                    self.total_tokens as f64 / self.requests as f64
                },
            },
        }
    }
}

/// Rollups accumulated over one write batch, merged into the table before commit.
#[derive(Default)]
pub struct Pending(BTreeMap<RollupKey, Rollup>);

impl Pending {
    /// Counts a record in.
    pub fn add(&mut self, r: &Record) {
        self.0.entry(RollupKey::of(r)).or_default().add(r);
    }

    /// Merges into the rollups table (read, add, write back).
    pub fn merge_into(
        self,
        table: &mut redb::Table<(u64, &str), &[u8]>,
    ) -> Result<(), redb::StorageError> {
        use redb::ReadableTable;
        for (k, r) in self.0 {
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
    let mut all = Rollup::default();
    let mut by_model: BTreeMap<String, Rollup> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, Rollup> = BTreeMap::new();
    let mut by_job: BTreeMap<String, Rollup> = BTreeMap::new();
    for (k, r) in rows {
        all.merge(r);
        by_model.entry(k.model.clone()).or_default().merge(r);
        by_provider.entry(k.provider.clone()).or_default().merge(r);
        by_job.entry(k.job.clone()).or_default().merge(r);
    }
    let groups = |m: BTreeMap<String, Rollup>| -> Vec<StatsGroup> {
        let mut v: Vec<StatsGroup> = m.into_iter().map(|(k, r)| r.to_group(k)).collect();
        v.sort_by(|a, b| b.total_requests.cmp(&a.total_requests).then(a.name.cmp(&b.name)));
        v
    };
    Stats {
        days,
        overall: all.to_group(String::new()),
        by_model: groups(by_model),
        by_provider: groups(by_provider),
        by_job: groups(by_job),
    }
}

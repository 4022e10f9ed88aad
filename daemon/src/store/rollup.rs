//! Rollups: per group — (job, endpoint, model, provider) — per hour and per day, the counts,
//! token sums and a mergeable latency histogram of the request records. They are written in
//! the same transaction as the records, so they always agree with them, and analytics over any
//! window read a few hundred small rows instead of scanning millions of records: a week is
//! seven daily rows per group plus the hourly rows of the partial days at its edges.
//!
//! Latency statistics count successful requests (no error) that have a response time: a
//! refused connection's 0 ms would otherwise flatter an endpoint that is down. Percentiles come
//! from log-linear buckets, so they are within 0.8 % of the exact nearest-rank value.
//!
//! Rows are stored in a compact form of our own ([`Rollup::encode`]): varints, the histogram's
//! buckets delta-coded, so a week of rows is summed ([`Totals::add_row`]) without allocating.

use std::collections::BTreeMap;

use evald_model::{Stats, StatsGroup, TokenStats};

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in ms.
pub const DAY_MS: i64 = 86_400_000;

/// The start of the hour containing `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

/// The start of the (UTC) day containing `ms`.
pub fn day_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// Latency histogram buckets: values in µs; below 128 µs one bucket per µs, above that 64
/// buckets per power of two (log-linear, at most 1/64 = 1.6 % wide, so a bucket's midpoint is
/// within 0.8 % of any value in it). Stored sparse: an hour of one target has a few dozen
/// non-empty buckets.
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latencies(Vec<(u16, u64)>);

impl Latencies {
    /// Counts a latency in.
    pub fn record(&mut self, ms: f64) {
        self.add(bucket_of_ms(ms), 1);
    }

    fn add(&mut self, b: u16, c: u64) {
        match self.0.binary_search_by_key(&b, |e| e.0) {
            Ok(i) => self.0[i].1 += c,
            Err(i) => self.0.insert(i, (b, c)),
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &Latencies) {
        for &(b, c) in &o.0 {
            self.add(b, c);
        }
    }
}

fn bucket_of_ms(ms: f64) -> u16 {
    buckets::index((ms * 1000.0).round().max(0.0) as u64)
}

/// A dense accumulator for summing many sparse histograms quickly; it remembers the range of
/// buckets it touched so merging and quantiles skip the empty rest.
pub struct Dense {
    counts: Vec<u64>,
    lo: usize,
    hi: usize,
}

impl Default for Dense {
    fn default() -> Self {
        Dense {
            counts: vec![0; buckets::COUNT],
            lo: buckets::COUNT,
            hi: 0,
        }
    }
}

impl Dense {
    fn add(&mut self, b: usize, c: u64) {
        let b = b.min(buckets::COUNT - 1);
        self.counts[b] += c;
        self.lo = self.lo.min(b);
        self.hi = self.hi.max(b + 1);
    }

    fn merge(&mut self, o: &Dense) {
        if o.lo >= o.hi {
            return;
        }
        for (a, b) in self.counts[o.lo..o.hi]
            .iter_mut()
            .zip(&o.counts[o.lo..o.hi])
        {
            *a += b;
        }
        self.lo = self.lo.min(o.lo);
        self.hi = self.hi.max(o.hi);
    }

    /// Nearest-rank quantile (the smallest value with at least `q` of the samples at or below
    /// it), in ms; 0 without samples.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.lo >= self.hi {
            return 0.0;
        }
        let span = &self.counts[self.lo..self.hi];
        let n: u64 = span.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in span.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return buckets::value((self.lo + i) as u16) / 1000.0;
            }
        }
        0.0
    }
}

/// What one rollup group stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupName {
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

impl GroupName {
    /// Back from the stored form.
    pub fn parse(key: &str) -> Option<GroupName> {
        let mut it = key.split(SEP);
        Some(GroupName {
            job: it.next()?.to_string(),
            endpoint: it.next()?.to_string(),
            model: it.next()?.to_string(),
            provider: it.next()?.to_string(),
        })
    }
}

/// Writes the stored group key of four names into `s` (cleared first).
pub fn key_into(s: &mut String, job: &str, endpoint: &str, model: &str, provider: &str) {
    s.clear();
    for (i, part) in [job, endpoint, model, provider].into_iter().enumerate() {
        if i > 0 {
            s.push(SEP);
        }
        s.push_str(part);
    }
}

pub use super::sample::Sample;

/// Aggregates of one group over one hour or one day.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Sum of the known costs, USD.
    pub cost_usd: f64,
    /// Requests with a known cost.
    pub costed: u64,
    /// Response times of successful requests.
    pub latency: Latencies,
}

/// The first byte of a stored rollup: the format of what follows. Version 3 adds the cost
/// (an f64 sum and a varint count) before the histogram; version 2 rows read with none.
const ROLLUP_V2: u8 = 2;
const ROLLUP_V3: u8 = 3;

impl Rollup {
    /// Counts one record in.
    pub fn add(&mut self, s: &Sample) {
        if let Some(c) = s.cost_usd {
            self.cost_usd += c;
            self.costed += 1;
        }
        if !s.counted {
            return;
        }
        self.requests += 1;
        if s.error {
            self.errors += 1;
        } else if let Some(ms) = s.latency_ms {
            self.latency_sum_ms += ms;
            self.latency.record(ms);
        }
        self.prompt_tokens += s.prompt_tokens;
        self.completion_tokens += s.completion_tokens;
        self.total_tokens += s.total_tokens;
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
        self.cost_usd += o.cost_usd;
        self.costed += o.costed;
    }

    /// The stored form: a format byte, varints, the latency sum as f64, then the histogram's
    /// non-empty buckets as (gap from the previous bucket, count) varint pairs.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(ROLLUP_V3);
        for v in [self.requests, self.errors] {
            put_varint(out, v);
        }
        out.extend_from_slice(&self.latency_sum_ms.to_le_bytes());
        for v in [
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
        ] {
            put_varint(out, v);
        }
        out.extend_from_slice(&self.cost_usd.to_le_bytes());
        put_varint(out, self.costed);
        put_varint(out, self.latency.0.len() as u64);
        let mut prev = 0u64;
        for &(b, c) in &self.latency.0 {
            put_varint(out, b as u64 - prev);
            put_varint(out, c);
            prev = b as u64;
        }
    }

    /// Back from the stored form; `None` for a form this binary does not know.
    pub fn decode(b: &[u8]) -> Option<Rollup> {
        let (mut r, buckets) = read(b)?;
        r.latency.0.reserve(buckets.left as usize);
        for e in buckets {
            r.latency.0.push(e?);
        }
        Some(r)
    }
}

/// Reads a schema 1 rollup (postcard of the same fields, the histogram as (bucket, count)
/// pairs); for the migration to schema 2.
pub fn decode_v1(b: &[u8]) -> Option<Rollup> {
    #[derive(serde::Deserialize)]
    struct V1 {
        requests: u64,
        errors: u64,
        latency_sum_ms: f64,
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
        latency: Vec<(u16, u64)>,
    }
    let v: V1 = postcard::from_bytes(b).ok()?;
    let mut latency = v.latency;
    latency.sort_unstable();
    latency.dedup_by(|b, a| {
        let same = a.0 == b.0;
        if same {
            a.1 += b.1;
        }
        same
    });
    Some(Rollup {
        requests: v.requests,
        errors: v.errors,
        latency_sum_ms: v.latency_sum_ms,
        prompt_tokens: v.prompt_tokens,
        completion_tokens: v.completion_tokens,
        total_tokens: v.total_tokens,
        latency: Latencies(latency),
        ..Rollup::default()
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Reads a stored rollup's counts, and returns them with an iterator over its histogram's
/// buckets: nothing is allocated.
fn read(mut b: &[u8]) -> Option<(Rollup, Buckets<'_>)> {
    let (&format, rest) = b.split_first()?;
    if format != ROLLUP_V2 && format != ROLLUP_V3 {
        return None;
    }
    b = rest;
    let requests = get_varint(&mut b)?;
    let errors = get_varint(&mut b)?;
    let (sum, rest) = b.split_first_chunk::<8>()?;
    b = rest;
    let mut head = Rollup {
        requests,
        errors,
        latency_sum_ms: f64::from_le_bytes(*sum),
        prompt_tokens: get_varint(&mut b)?,
        completion_tokens: get_varint(&mut b)?,
        total_tokens: get_varint(&mut b)?,
        ..Rollup::default()
    };
    if format == ROLLUP_V3 {
        let (cost, rest) = b.split_first_chunk::<8>()?;
        b = rest;
        head.cost_usd = f64::from_le_bytes(*cost);
        head.costed = get_varint(&mut b)?;
    }
    let left = get_varint(&mut b)?;
    Some((head, Buckets { b, left, prev: 0 }))
}

/// The (bucket, count) pairs of a stored histogram; an item is `None` where the bytes end
/// early.
struct Buckets<'a> {
    b: &'a [u8],
    left: u64,
    prev: u64,
}

impl Iterator for Buckets<'_> {
    type Item = Option<(u16, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pair = (|| {
            self.prev += get_varint(&mut self.b)?;
            let c = get_varint(&mut self.b)?;
            Some((self.prev.min(buckets::COUNT as u64 - 1) as u16, c))
        })();
        if pair.is_none() {
            self.left = 0;
        }
        Some(pair)
    }
}

/// Counts and a dense latency accumulator: what a group's rows, and then a stats group, sum
/// into.
#[derive(Default)]
struct Acc {
    requests: u64,
    errors: u64,
    latency_sum_ms: f64,
    latency_n: u64,
    latency: Option<Box<Dense>>,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cost_usd: f64,
    costed: u64,
}

impl Acc {
    fn add_counts(&mut self, r: &Rollup) {
        self.cost_usd += r.cost_usd;
        self.costed += r.costed;
        self.requests += r.requests;
        self.errors += r.errors;
        self.latency_sum_ms += r.latency_sum_ms;
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.total_tokens += r.total_tokens;
    }

    fn merge(&mut self, o: &Acc) {
        self.cost_usd += o.cost_usd;
        self.costed += o.costed;
        self.requests += o.requests;
        self.errors += o.errors;
        self.latency_sum_ms += o.latency_sum_ms;
        self.latency_n += o.latency_n;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
        if let Some(d) = &o.latency {
            self.latency.get_or_insert_with(Box::default).merge(d);
        }
    }

    fn finish(&self, name: String) -> StatsGroup {
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
            latency_samples: self.latency_n,
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
            cost_usd: (self.costed > 0).then_some(self.cost_usd),
            // Errors carry no cost as a rule, so the answered requests are the ones to price.
            cost_unpriced: if self.costed > 0 {
                self.requests
                    .saturating_sub(self.errors)
                    .saturating_sub(self.costed)
            } else {
                0
            },
        }
    }
}

/// Group ids above this are taken for damage, not data (ids are handed out from 0 up).
const MAX_GROUP_ID: u32 = 1 << 20;

/// Stored rollup rows summed per group as a window's rows are read, without materialising
/// them.
#[derive(Default)]
pub struct Totals {
    groups: Vec<Acc>,
}

impl Totals {
    /// Adds one stored row of group `gid`; false for a row this binary cannot read.
    pub fn add_row(&mut self, gid: u32, bytes: &[u8]) -> bool {
        let Some((head, buckets)) = read(bytes) else {
            return false;
        };
        if gid > MAX_GROUP_ID {
            return false;
        }
        let i = gid as usize;
        if self.groups.len() <= i {
            self.groups.resize_with(i + 1, Acc::default);
        }
        let acc = &mut self.groups[i];
        acc.add_counts(&head);
        if buckets.left > 0 {
            let dense = acc.latency.get_or_insert_with(Box::default);
            for e in buckets {
                let Some((b, c)) = e else {
                    return false;
                };
                dense.add(b as usize, c);
                acc.latency_n += c;
            }
        }
        true
    }
}

/// Rollups accumulated over one write batch, by (hour, group id), merged into the tables before
/// commit.
///
/// A batch's records mostly share one hour and group, so they are counted into `current` and
/// that goes into the map only when the key changes: one hash per change, not per record.
#[derive(Default)]
pub struct Pending {
    hours: std::collections::HashMap<(i64, u32), Rollup>,
    current: super::coalesce::Coalesce<(i64, u32), Rollup>,
}

impl Pending {
    /// Counts a record in.
    pub fn add(&mut self, timestamp_ms: i64, gid: u32, s: &Sample) {
        let (r, done) = self
            .current
            .at((hour_of(timestamp_ms), gid), Rollup::default);
        r.add(s);
        if let Some((k, old)) = done {
            self.hours.entry(k).or_default().merge(&old);
        }
    }

    /// Counts a whole hour's rollup in.
    pub fn add_rollup(&mut self, hour_ms: i64, gid: u32, r: &Rollup) {
        self.hours
            .entry((hour_of(hour_ms), gid))
            .or_default()
            .merge(r);
    }

    /// What was counted, by (hour, group id).
    fn by_hour(mut self) -> std::collections::HashMap<(i64, u32), Rollup> {
        if let Some((k, r)) = self.current.finish() {
            self.hours.entry(k).or_default().merge(&r);
        }
        self.hours
    }

    /// Merges into the hourly and daily tables (read, add, write back).
    pub fn merge_into(
        self,
        hours: &mut redb::Table<(u64, u32), &[u8]>,
        days: &mut redb::Table<(u64, u32), &[u8]>,
    ) -> Result<(), redb::StorageError> {
        let hourly = self.by_hour();
        let mut daily: std::collections::HashMap<(i64, u32), Rollup> = Default::default();
        for (&(h, g), r) in &hourly {
            daily.entry((day_of(h), g)).or_default().merge(r);
        }
        let mut buf = Vec::with_capacity(512);
        for ((h, g), r) in hourly {
            add_to(hours, (h.max(0) as u64, g), &r, &mut buf)?;
        }
        for ((d, g), r) in daily {
            add_to(days, (d.max(0) as u64, g), &r, &mut buf)?;
        }
        Ok(())
    }
}

/// Adds `r` to the stored row at `key`.
pub fn add_to(
    table: &mut redb::Table<(u64, u32), &[u8]>,
    key: (u64, u32),
    r: &Rollup,
    buf: &mut Vec<u8>,
) -> Result<(), redb::StorageError> {
    use redb::ReadableTable;
    let mut cur = table
        .get(key)?
        .and_then(|v| Rollup::decode(v.value()))
        .unwrap_or_default();
    cur.merge(r);
    cur.encode(buf);
    table.insert(key, buf.as_slice())?;
    Ok(())
}

/// The analytics summary of a window's totals: overall, by model, provider and job. `names`
/// maps group ids to what they stand for.
pub fn stats(
    days: u32,
    names: &std::collections::HashMap<u32, GroupName>,
    totals: &Totals,
) -> Stats {
    let mut all = Acc::default();
    let mut by_model: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut by_provider: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut by_job: BTreeMap<&str, Acc> = BTreeMap::new();
    for (gid, acc) in totals.groups.iter().enumerate() {
        if acc.requests == 0 {
            continue;
        }
        let Some(name) = names.get(&(gid as u32)) else {
            continue;
        };
        all.merge(acc);
        by_model.entry(&name.model).or_default().merge(acc);
        by_provider.entry(&name.provider).or_default().merge(acc);
        by_job.entry(&name.job).or_default().merge(acc);
    }
    let groups = |m: BTreeMap<&str, Acc>| -> Vec<StatsGroup> {
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

/// The hour and day ranges whose rows make up the window `[from_ms, to_ms)`: whole days from
/// the daily rows, the partial days at either edge from the hourly rows. `from_ms` is the top
/// of an hour.
pub fn plan(from_ms: i64, to_ms: i64) -> WindowPlan {
    let first_day = day_of(from_ms + DAY_MS - 1);
    let last_day = day_of(to_ms);
    if first_day < last_day {
        WindowPlan {
            hours: vec![(from_ms, first_day), (last_day, to_ms)],
            days: Some((first_day, last_day)),
        }
    } else {
        WindowPlan {
            hours: vec![(from_ms, to_ms)],
            days: None,
        }
    }
}

/// Which rollup rows a window reads: hourly rows with an hour in each `[start, end)` of
/// `hours`, daily rows with a day in `[start, end)` of `days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Ranges of hours.
    pub hours: Vec<(i64, i64)>,
    /// A range of whole days.
    pub days: Option<(i64, i64)>,
}

#[cfg(test)]
#[path = "rollup_tests.rs"]
mod tests;

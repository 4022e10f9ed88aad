//! Tests of `rollup.rs`.

use super::buckets::{index, value};
use super::*;

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

#[test]
fn rollups_round_trip_and_bad_bytes_are_refused() {
    let mut r = Rollup::default();
    for (i, ms) in [0.5, 3.0, 3.0, 250.0, 99_999.0, 1e12]
        .into_iter()
        .enumerate()
    {
        r.add(&Sample {
            counted: true,
            error: i == 2,
            latency_ms: Some(ms),
            prompt_tokens: 300 + i as u64,
            completion_tokens: u64::MAX / 8,
            total_tokens: 7,
            cost_usd: (i % 2 == 0).then_some(0.0054),
        });
    }
    let mut buf = Vec::new();
    r.encode(&mut buf);
    assert_eq!(
        (r.costed, (r.cost_usd - 3.0 * 0.0054).abs() < 1e-12),
        (3, true)
    );
    assert_eq!(Rollup::decode(&buf), Some(r.clone()));
    for cut in 0..buf.len() {
        assert_eq!(Rollup::decode(&buf[..cut]), None, "cut at {cut}");
        let mut t = Totals::default();
        assert!(!t.add_row(0, &buf[..cut]), "cut at {cut}");
    }
    let mut other = buf.clone();
    other[0] = 9;
    assert_eq!(Rollup::decode(&other), None, "unknown format");
}

#[test]
fn a_window_is_whole_days_between_partial_ones() {
    let day = 20_000 * DAY_MS;
    // Three hours into a day, to ten hours into the day after the next.
    let p = plan(day + 3 * HOUR_MS, day + 2 * DAY_MS + 10 * HOUR_MS);
    assert_eq!(p.days, Some((day + DAY_MS, day + 2 * DAY_MS)));
    assert_eq!(
        p.hours,
        vec![
            (day + 3 * HOUR_MS, day + DAY_MS),
            (day + 2 * DAY_MS, day + 2 * DAY_MS + 10 * HOUR_MS)
        ]
    );
    // A window from midnight takes that day whole.
    let p = plan(day, day + DAY_MS + 1);
    assert_eq!(p.days, Some((day, day + DAY_MS)));
    // Within one day: hours only.
    let p = plan(day + HOUR_MS, day + 5 * HOUR_MS);
    assert_eq!(
        (p.days, p.hours),
        (None, vec![(day + HOUR_MS, day + 5 * HOUR_MS)])
    );
}

/// A warm-up request is not in the figures (DESIGN), but its cost was spent: it counts in the
/// cost, so in stats and monthly budgets. Without a known cost it adds nothing.
#[test]
fn a_warm_up_request_costs_but_is_not_counted() {
    let mut rec = evald_model::Record {
        cost_usd: Some(0.01),
        response_time_ms: Some(5.0),
        prompt_tokens: Some(10),
        ..Default::default()
    };
    rec.metadata.warmup = true;
    let mut r = Rollup::default();
    r.add(&Sample::of(&rec).unwrap());
    assert_eq!((r.requests, r.prompt_tokens, r.costed), (0, 0, 1));
    assert!((r.cost_usd - 0.01).abs() < 1e-12);
    rec.cost_usd = None;
    assert_eq!(Sample::of(&rec), None);
}

/// Records of several hours and groups, interleaved as a batch can bring them, are counted as
/// each one alone would be: the running rollup goes into the map whenever the key changes.
#[test]
fn pending_counts_interleaved_keys_as_each_alone() {
    const H: i64 = 3_600_000;
    let sample = |ms: f64| Sample {
        counted: true,
        latency_ms: Some(ms),
        completion_tokens: 1,
        ..Sample::default()
    };
    let adds = [
        (0, 1, 10.0),
        (1, 1, 20.0),
        (H, 1, 30.0),
        (2, 1, 40.0),
        (3, 2, 50.0),
        (H + 5, 1, 60.0),
        (4, 1, 70.0),
    ];
    let mut pending = Pending::default();
    let mut want: std::collections::HashMap<(i64, u32), Rollup> = Default::default();
    for (ms, gid, latency) in adds {
        pending.add(ms, gid, &sample(latency));
        want.entry((hour_of(ms), gid))
            .or_default()
            .add(&sample(latency));
    }
    let got = pending.by_hour();
    assert_eq!(got, want);
    assert_eq!(got[&(0, 1)].requests, 4);
}

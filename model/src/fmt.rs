//! How figures and texts are shortened for people, the same on the page and in the terminal.

/// A latency for people: `—` when absent, `12.3 ms` below 100 ms, `123 ms` below 10 s, then
/// `12.3 s`.
pub fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(ms) if ms >= 10_000.0 => format!("{:.1} s", ms / 1000.0),
        Some(ms) if ms >= 100.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{ms:.1} ms"),
    }
}

/// USD with the precision small costs need; `—` when unknown.
pub fn fmt_usd(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(c) if c < 0.01 => format!("${c:.6}"),
        Some(c) => format!("${c:.2}"),
    }
}

/// A cost total that may leave requests out: `$0.012300`, or `$0.012300 + 3 unpriced` when
/// that many answered requests had no known cost (the total is of the priced ones only).
pub fn fmt_cost(v: Option<f64>, unpriced: u64) -> String {
    match (v, unpriced) {
        (Some(_), n) if n > 0 => format!("{} + {n} unpriced", fmt_usd(v)),
        _ => fmt_usd(v),
    }
}

/// What "too few" after a percentile means, the same on the page and in the terminal (the
/// thresholds are those of `rank_interval`, tested there).
pub const TOO_FEW: &str = "the sample is too small to bound that percentile (a p99 needs at least 368 samples, a p99.9 3,688); its value is a rough guide only";

/// A latency percentile with its 95 % confidence interval: `12.3 ms (11.9–12.8)`, or
/// `12.3 ms (too few)` when the sample is too small to bound it.
pub fn fmt_quantile(v: f64, ci: Option<[f64; 2]>) -> String {
    let short = |ms: f64| {
        let s = fmt_ms(Some(ms));
        s.strip_suffix(" ms").map(String::from).unwrap_or(s)
    };
    match ci {
        Some([lo, hi]) => format!("{} ({}–{})", fmt_ms(Some(v)), short(lo), short(hi)),
        None => format!("{} (too few)", fmt_ms(Some(v))),
    }
}

/// At most `n` characters of `s` (trimmed), with `…` when cut; never splits a character.
pub fn clip(s: &str, n: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(n) {
        None => s.to_string(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

/// [`clip`] of an owned string: `s` itself when it needs no cut or trim (no copy).
pub fn clip_owned(s: String, n: usize) -> String {
    if s.len() <= n && s.trim().len() == s.len() {
        s
    } else {
        clip(&s, n)
    }
}

/// `s` on one line: runs of whitespace (newlines too) become one space.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_in_their_scale() {
        assert_eq!(fmt_ms(None), "—");
        assert_eq!(fmt_ms(Some(7.25)), "7.2 ms");
        assert_eq!(fmt_ms(Some(99.94)), "99.9 ms");
        assert_eq!(fmt_ms(Some(100.4)), "100 ms");
        assert_eq!(fmt_ms(Some(9_999.0)), "9999 ms");
        assert_eq!(fmt_ms(Some(12_345.0)), "12.3 s");
        assert_eq!(
            fmt_quantile(12.34, Some([11.9, 12.81])),
            "12.3 ms (11.9–12.8)"
        );
        assert_eq!(fmt_quantile(250.0, None), "250 ms (too few)");
    }

    #[test]
    fn clipping_counts_characters_not_bytes() {
        assert_eq!(clip("  short  ", 10), "short");
        assert_eq!(clip("ünïcödé", 3), "ünï…");
        assert_eq!(clip("exactly", 7), "exactly");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        // The owned form says the same of every input.
        for (s, n) in [
            ("  short  ", 10),
            ("ünïcödé", 3),
            ("ünïcödé", 7),
            ("exactly", 7),
        ] {
            assert_eq!(clip_owned(s.to_string(), n), clip(s, n), "{s:?} {n}");
        }
    }
}

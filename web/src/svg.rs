//! Inline SVG charts drawn on the server: a sparkline, a line chart over runs and a histogram.
//! They contain numbers only — no text from jobs, models or plugins — so they can be inserted
//! unescaped; labels are formatted numbers.

use std::fmt::Write;

/// A small trend line of up to `values.len()` points (`None` = a gap), `w`×`h` px.
pub fn sparkline(values: &[Option<f64>], w: f64, h: f64) -> String {
    let pts: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|x| x.is_finite()).map(|x| (i, x)))
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    let (lo, hi) = bounds(pts.iter().map(|p| p.1));
    let n = values.len().max(2) - 1;
    let mut path = String::new();
    for (k, (i, v)) in pts.iter().enumerate() {
        let x = 1.0 + (w - 2.0) * *i as f64 / n as f64;
        let y = 1.0 + (h - 2.0) * (1.0 - (v - lo) / (hi - lo));
        let _ = write!(path, "{}{x:.1},{y:.1}", if k == 0 { "M" } else { " L" });
    }
    let (lx, ly) = pts
        .last()
        .map(|(i, v)| {
            (
                1.0 + (w - 2.0) * *i as f64 / n as f64,
                1.0 + (h - 2.0) * (1.0 - (v - lo) / (hi - lo)),
            )
        })
        .unwrap_or_default();
    format!(
        r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="trend"><path d="{path}" fill="none" stroke="currentColor" stroke-width="1.5"/><circle cx="{lx:.1}" cy="{ly:.1}" r="2" fill="currentColor"/></svg>"#
    )
}

fn bounds(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

/// A line chart over runs with a y-axis of `unit`; `series` = (css class, values), and a
/// dashed vertical mark at each run index in `marks` (events).
pub fn line_chart_marked(
    series: &[(&str, Vec<Option<f64>>)],
    unit: &str,
    fixed: Option<(f64, f64)>,
    marks: &[usize],
) -> String {
    let (w, h, left, bottom) = (640.0, 180.0, 48.0, 18.0);
    let all = series.iter().flat_map(|s| s.1.iter().flatten().copied());
    let (lo, hi) = fixed.unwrap_or_else(|| {
        let (lo, hi) = bounds(all);
        (lo.min(0.0_f64.max(lo)), hi)
    });
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    // No run, or runs without this figure (every request failed, nothing scored): words, not
    // empty axes, and not "no runs" when the runs table below lists some.
    if series.iter().all(|s| s.1.iter().all(Option::is_none)) {
        return "<p class=\"muted\">No run has this figure yet.</p>".into();
    }
    let x = |i: usize| {
        left + (w - left - 8.0)
            * if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.5
            }
    };
    let y = |v: f64| 6.0 + (h - bottom - 6.0) * (1.0 - (v - lo) / (hi - lo));
    let mut s =
        format!(r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="chart">"#);
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" class="grid"/><text x="{}" y="{:.1}" class="axis" text-anchor="end">{}{unit}</text>"#,
            w - 8.0,
            left - 4.0,
            yy + 3.0,
            short(v)
        );
    }
    for &i in marks.iter().filter(|&&i| i < n) {
        let _ = write!(
            s,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="4" y2="{1:.1}" class="mark"/>"#,
            x(i),
            h - bottom
        );
    }
    for (class, vals) in series {
        let mut path = String::new();
        let mut pen = false;
        for (i, v) in vals.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        x(i),
                        y(*v)
                    );
                    pen = true;
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" class="{class}"/>"#,
                        x(i),
                        y(*v)
                    );
                }
                _ => pen = false,
            }
        }
        let _ = write!(s, r#"<path d="{path}" class="{class}" fill="none"/>"#);
    }
    s.push_str("</svg>");
    s
}

/// A histogram of (upper bound, count) buckets.
pub fn histogram(buckets: &[(f64, u64)], unit: &str) -> String {
    if buckets.is_empty() {
        return "<p class=\"muted\">No samples.</p>".into();
    }
    let (w, h, bottom) = (640.0, 160.0, 18.0);
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
    let bw = w / buckets.len() as f64;
    let mut s =
        format!(r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="histogram">"#);
    for (i, (_, c)) in buckets.iter().enumerate() {
        let bh = (h - bottom - 4.0) * *c as f64 / max;
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" class="bar"><title>{c}</title></rect>"#,
            i as f64 * bw + 1.0,
            h - bottom - bh,
            (bw - 2.0).max(1.0)
        );
    }
    let first = buckets.first().map(|b| b.0).unwrap_or(0.0);
    let last = buckets.last().map(|b| b.0).unwrap_or(0.0);
    let _ = write!(
        s,
        r#"<text x="2" y="{}" class="axis">≤{}{unit}</text><text x="{}" y="{}" class="axis" text-anchor="end">≤{}{unit}</text></svg>"#,
        h - 4.0,
        short(first),
        w - 2.0,
        h - 4.0,
        short(last)
    );
    s
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_without_values_says_so() {
        let none = "No run has this figure yet.";
        assert!(line_chart_marked(&[], "", None, &[]).contains(none));
        // Runs whose every value is missing (every request failed): the same words.
        let empty = [("s-t0", vec![None, None])];
        assert!(line_chart_marked(&empty, " ms", None, &[]).contains(none));
        let some = [("s-t0", vec![None, Some(12.0)])];
        assert!(line_chart_marked(&some, " ms", None, &[]).starts_with("<svg"));
    }
}

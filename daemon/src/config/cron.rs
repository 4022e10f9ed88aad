//! Cron expressions, as the scheduler reads them (jobs and maintenance windows).

use croner::Cron;

/// Parses a cron expression: 5 fields (minute first), 6 fields (seconds first), or a nickname
/// (`@hourly`, `@daily`, …). The same parser settings as tokio-cron-scheduler's, so `evald
/// check` accepts exactly what the scheduler runs.
///
/// An expression that never fires (`0 0 31 2 *`: February has no 31st) is refused too: a job
/// that silently never runs is a mistake (croner decides it in ~50 ms, only for such ones).
pub fn parse_schedule(expr: &str) -> Result<Cron, String> {
    const HOW: &str = "write 5 fields (`*/30 * * * *`), 6 with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly";
    let t = expr.trim();
    let fields = t.split_whitespace().count();
    // The parser sees the expression with seconds added, so its own count would be off by one.
    if !t.starts_with('@') && !(5..=7).contains(&fields) {
        return Err(format!(
            "`{expr}` is not a cron expression: it has {fields} field(s); {HOW}"
        ));
    }
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&with_seconds(expr))
        .map_err(|e| match t.starts_with('@') {
            // The parser's own text speaks of field counts, which a nickname has none of.
            true => format!("`{expr}` is not a schedule nickname; {HOW}"),
            false => format!("`{expr}` is not a cron expression ({e}); {HOW}"),
        })?;
    if cron
        .find_next_occurrence(&chrono::Utc::now(), false)
        .is_err()
    {
        return Err(format!(
            "`{expr}` never fires: no date matches it (a day of the month that month lacks?)"
        ));
    }
    Ok(cron)
}

/// The expression with a seconds field: five fields get `0` in front (minute-level cron fires
/// at second 0); six fields and `@nicknames` stay as they are.
pub fn with_seconds(expr: &str) -> String {
    let t = expr.trim();
    if !t.starts_with('@') && t.split_whitespace().count() == 5 {
        format!("0 {t}")
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_schedule_is_refused_in_its_own_terms() {
        assert!(parse_schedule("*/30 * * * *").is_ok());
        assert!(parse_schedule("*/5 * * * * *").is_ok());
        assert!(parse_schedule("@daily").is_ok());
        let e = parse_schedule("hello").unwrap_err();
        assert!(e.contains("it has 1 field(s); write 5 fields"), "{e}");
        assert!(!e.contains("6 or 7 fields"), "{e}");
        let e = parse_schedule("0 0 31 2 *").unwrap_err();
        assert!(e.contains("never fires"), "{e}");
        let e = parse_schedule("61 * * * *").unwrap_err();
        assert!(e.contains("not a cron expression"), "{e}");
        assert!(parse_schedule("@yearly").is_ok());
        let e = parse_schedule("@midnight").unwrap_err();
        assert!(
            e.starts_with("`@midnight` is not a schedule nickname; write 5 fields"),
            "{e}"
        );
        assert!(!e.contains("fields when seconds"), "{e}");
    }
}

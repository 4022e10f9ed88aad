//! Cron expressions, as the scheduler reads them (jobs and maintenance windows).

use croner::Cron;

/// Parses a cron expression: 5 fields (minute first), 6 fields (seconds first), or a nickname
/// (`@hourly`, `@daily`, …). The same parser settings as tokio-cron-scheduler's, so `evald
/// check` accepts exactly what the scheduler runs.
pub fn parse_schedule(expr: &str) -> Result<Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&with_seconds(expr))
        .map_err(|e| format!("`{expr}` is not a cron expression ({e}); write 5 fields (`*/30 * * * *`), 6 with seconds first, or @hourly/@daily/@weekly/@monthly"))
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

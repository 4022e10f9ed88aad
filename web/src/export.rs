//! Exports of request records: the filter (`since`, `until`, `job`, `model`, `limit`) parsed
//! once for the HTTP routes and `evald export`, and the CSV / JSON / JSONL writers, with the
//! columns and keys of DESIGN.md in that order. Writers take one record at a time, so an export
//! streams with flat memory however many rows it has.

use std::io::Write;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;

use crate::model::{Message, Metadata, Record, RecordFilter, Score};

/// The CSV columns, in order.
pub const COLUMNS: [&str; 22] = [
    "id",
    "timestamp",
    "model",
    "provider",
    "messages",
    "temperature",
    "max_tokens",
    "top_p",
    "response",
    "response_time_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "finish_reason",
    "error",
    "metadata",
    "job",
    "run_id",
    "case_id",
    "endpoint",
    "ttft_ms",
    "scores",
];

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// `csv`, `json` or `jsonl`.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            other => Err(format!("format: `{other}` is not csv, json or jsonl")),
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Jsonl => "application/x-ndjson",
        }
    }
}

/// Parses a time bound: RFC 3339, or `YYYY-MM-DD` (UTC midnight; for `until`, the end of that
/// day, so `until=2026-11-28` includes the 28th).
pub fn parse_time(key: &str, s: &str, end_of_day: bool) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        let d = if end_of_day {
            d.succ_opt().unwrap_or(d)
        } else {
            d
        };
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "{key}: `{s}` is not a time; write RFC 3339 (2026-11-28T09:00:00Z) or YYYY-MM-DD"
    ))
}

/// Builds a filter from the query values; each bad value is named with why.
pub fn parse_filter(
    since: Option<&str>,
    until: Option<&str>,
    job: Option<&str>,
    model: Option<&str>,
    limit: Option<&str>,
) -> Result<RecordFilter, String> {
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|s| !s.is_empty())
    }
    let mut f = RecordFilter {
        since_ms: nonempty(since)
            .map(|s| parse_time("since", s, false))
            .transpose()?,
        until_ms: nonempty(until)
            .map(|s| parse_time("until", s, true))
            .transpose()?,
        job: nonempty(job).map(String::from),
        model: nonempty(model).map(String::from),
        ..RecordFilter::default()
    };
    if let Some(l) = nonempty(limit) {
        f.limit = Some(
            l.parse::<u64>()
                .map_err(|_| format!("limit: `{l}` is not a whole number ≥ 0"))?,
        );
    }
    if let (Some(s), Some(u)) = (f.since_ms, f.until_ms)
        && s >= u
    {
        return Err("since: must be before until".into());
    }
    Ok(f)
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A record in the export's shape (JSON keys = CSV columns).
#[derive(Serialize)]
struct Row<'a> {
    id: u64,
    timestamp: String,
    model: &'a str,
    provider: &'a str,
    messages: &'a [Message],
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    top_p: Option<f64>,
    response: Option<&'a str>,
    response_time_ms: Option<f64>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    total_tokens: Option<u32>,
    finish_reason: Option<&'a str>,
    error: Option<&'a str>,
    metadata: &'a Metadata,
    job: &'a str,
    run_id: &'a str,
    case_id: &'a str,
    endpoint: &'a str,
    ttft_ms: Option<f64>,
    scores: &'a [Score],
}

impl<'a> Row<'a> {
    fn of(r: &'a Record) -> Row<'a> {
        Row {
            id: r.id,
            timestamp: timestamp(r.timestamp_ms),
            model: &r.model,
            provider: &r.provider,
            messages: &r.messages,
            temperature: r.temperature,
            max_tokens: r.max_tokens,
            top_p: r.top_p,
            response: r.response.as_deref(),
            response_time_ms: r.response_time_ms,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens: r.total_tokens,
            finish_reason: r.finish_reason.as_deref(),
            error: r.error.as_deref(),
            metadata: &r.metadata,
            job: &r.job,
            run_id: &r.run_id,
            case_id: &r.case_id,
            endpoint: &r.endpoint,
            ttft_ms: r.ttft_ms,
            scores: &r.scores,
        }
    }
}

/// Writes records one at a time in a format; `finish` closes the document.
pub struct ExportWriter<W: Write> {
    format: Format,
    csv: Option<csv::Writer<W>>,
    out: Option<W>,
    rows: u64,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl<W: Write> ExportWriter<W> {
    /// Starts a document (the CSV header is written now).
    pub fn new(format: Format, out: W) -> std::io::Result<ExportWriter<W>> {
        let mut w = ExportWriter {
            format,
            csv: None,
            out: None,
            rows: 0,
        };
        match format {
            Format::Csv => {
                let mut c = csv::WriterBuilder::new().from_writer(out);
                c.write_record(COLUMNS).map_err(io_err)?;
                w.csv = Some(c);
            }
            Format::Json => {
                let mut out = out;
                out.write_all(b"[")?;
                w.out = Some(out);
            }
            Format::Jsonl => w.out = Some(out),
        }
        Ok(w)
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes one record.
    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        let first = self.rows == 0;
        self.rows += 1;
        match (self.format, &mut self.csv, &mut self.out) {
            (Format::Csv, Some(c), _) => {
                let opt = |v: Option<String>| v.unwrap_or_default();
                let num = |v: Option<f64>| opt(v.map(|x| x.to_string()));
                let int = |v: Option<u32>| opt(v.map(|x| x.to_string()));
                let json = |v: &dyn erased::Json| v.json();
                c.write_record([
                    r.id.to_string(),
                    timestamp(r.timestamp_ms),
                    r.model.clone(),
                    r.provider.clone(),
                    json(&r.messages),
                    num(r.temperature),
                    int(r.max_tokens),
                    num(r.top_p),
                    opt(r.response.clone()),
                    num(r.response_time_ms),
                    int(r.prompt_tokens),
                    int(r.completion_tokens),
                    int(r.total_tokens),
                    opt(r.finish_reason.clone()),
                    opt(r.error.clone()),
                    json(&r.metadata),
                    r.job.clone(),
                    r.run_id.clone(),
                    r.case_id.clone(),
                    r.endpoint.clone(),
                    num(r.ttft_ms),
                    json(&r.scores),
                ])
                .map_err(io_err)
            }
            (Format::Json, _, Some(o)) => {
                if !first {
                    o.write_all(b",\n")?;
                } else {
                    o.write_all(b"\n")?;
                }
                serde_json::to_writer(&mut *o, &Row::of(r)).map_err(io_err)
            }
            (Format::Jsonl, _, Some(o)) => {
                serde_json::to_writer(&mut *o, &Row::of(r)).map_err(io_err)?;
                o.write_all(b"\n")
            }
            _ => Err(io_err("export writer in a bad state")),
        }
    }

    /// Closes the document and returns the sink.
    pub fn finish(self) -> std::io::Result<W> {
        match (self.format, self.csv, self.out) {
            (Format::Csv, Some(c), _) => c.into_inner().map_err(io_err),
            (Format::Json, _, Some(mut o)) => {
                o.write_all(if self.rows == 0 { b"]\n" } else { b"\n]\n" })?;
                Ok(o)
            }
            (Format::Jsonl, _, Some(o)) => Ok(o),
            _ => Err(io_err("export writer in a bad state")),
        }
    }
}

mod erased {
    /// JSON text of a value, for the CSV cells that hold JSON.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_name_bad_values() {
        let f = parse_filter(
            Some("2026-11-01"),
            Some("2026-11-02"),
            Some("j"),
            None,
            Some("5"),
        )
        .unwrap();
        assert_eq!(f.since_ms, Some(1_793_491_200_000));
        assert_eq!(f.until_ms, Some(1_793_491_200_000 + 2 * 86_400_000));
        assert_eq!(f.limit, Some(5));
        assert_eq!(f.job.as_deref(), Some("j"));
        let e = parse_filter(Some("not-a-date"), None, None, None, None).unwrap_err();
        assert!(e.starts_with("since: `not-a-date`"), "{e}");
        let e = parse_filter(None, None, None, None, Some("-1")).unwrap_err();
        assert!(e.starts_with("limit:"), "{e}");
        let e = parse_filter(Some("2026-11-03"), Some("2026-11-01"), None, None, None).unwrap_err();
        assert!(e.contains("before"), "{e}");
        assert!(parse_filter(Some("2026-11-01T10:00:00+02:00"), None, None, None, None).is_ok());
    }

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

//! Exports of request records: the filter (`since`, `until`, `job`, `model`, `limit`) parsed
//! once for the HTTP routes and `evald export`, and the CSV / JSON / JSONL writers, with the
//! columns and keys of DESIGN.md in that order (the fields of [`RowRef`], written by serde:
//! see `row`). Writers take one record at a time, so an export
//! streams with flat memory however many rows it has.

mod row;

use std::io::Write;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use evald_model::{Record, RecordFilter, RecordJson, RowRef};
use serde::Serialize;

pub use row::{COLUMNS, CSV_COLUMNS};

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

    /// The name [`Format::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
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
    run: Option<&str>,
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
        run_id: nonempty(run).map(String::from),
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

/// RFC 3339 timestamps of consecutive rows, formatted by chrono once per second.
#[derive(Default)]
struct Timestamps {
    second: Option<i64>,
    prefix: String,
    out: String,
}

impl Timestamps {
    fn format(&mut self, ms: i64) -> &str {
        use std::fmt::Write as _;
        let second = ms.div_euclid(1000);
        if self.second != Some(second) {
            let full = timestamp(second * 1000);
            // `….000Z`: keep what comes before the milliseconds.
            self.prefix = full.strip_suffix(".000Z").unwrap_or(&full).to_string();
            self.second = Some(second);
        }
        self.out.clear();
        self.out.push_str(&self.prefix);
        let _ = write!(self.out, ".{:03}Z", ms.rem_euclid(1000));
        &self.out
    }
}

/// Writes records one at a time in a format; `finish` closes the document.
pub struct ExportWriter<W: Write> {
    format: Format,
    csv: Option<csv::Writer<W>>,
    out: Option<W>,
    rows: u64,
    times: Timestamps,
    num: String,
    json: RecordJson,
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
            times: Timestamps::default(),
            num: String::new(),
            json: RecordJson::default(),
        };
        match format {
            Format::Csv => {
                let mut c = csv::WriterBuilder::new()
                    .buffer_capacity(64 * 1024)
                    .from_writer(out);
                c.write_record(CSV_COLUMNS.iter()).map_err(io_err)?;
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
        let mut json = std::mem::take(&mut self.json);
        let res = self.write_row(&json.row(r));
        self.json = json;
        res
    }

    /// Writes one stored row; its JSON parts go out as they are stored.
    pub fn write_row(&mut self, r: &RowRef<'_>) -> std::io::Result<()> {
        let first = self.rows == 0;
        self.rows += 1;
        let times = &mut self.times;
        match (self.format, &mut self.csv, &mut self.out) {
            (Format::Csv, Some(out), _) => Ok(r.serialize(row::CsvRow {
                out,
                num: &mut self.num,
                times,
            })?),
            (Format::Json, _, Some(out)) => {
                out.write_all(if first { b"\n" } else { b",\n" })?;
                Ok(r.serialize(row::JsonRow {
                    out,
                    times,
                    first: true,
                })?)
            }
            (Format::Jsonl, _, Some(out)) => {
                r.serialize(row::JsonRow {
                    out: &mut *out,
                    times,
                    first: true,
                })?;
                out.write_all(b"\n")
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
            Some(" 019ac8f1a2b00012 "),
            Some("5"),
        )
        .unwrap();
        assert_eq!(f.run_id.as_deref(), Some("019ac8f1a2b00012"));
        assert_eq!(f.since_ms, Some(1_793_491_200_000));
        assert_eq!(f.until_ms, Some(1_793_491_200_000 + 2 * 86_400_000));
        assert_eq!(f.limit, Some(5));
        assert_eq!(f.job.as_deref(), Some("j"));
        let e = parse_filter(Some("not-a-date"), None, None, None, None, None).unwrap_err();
        assert!(e.starts_with("since: `not-a-date`"), "{e}");
        let e = parse_filter(None, None, None, None, None, Some("-1")).unwrap_err();
        assert!(e.starts_with("limit:"), "{e}");
        let e = parse_filter(
            Some("2026-11-03"),
            Some("2026-11-01"),
            None,
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(e.contains("before"), "{e}");
        assert!(
            parse_filter(
                Some("2026-11-01T10:00:00+02:00"),
                None,
                None,
                None,
                None,
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

#[cfg(test)]
mod columns {
    use super::*;

    /// DESIGN.md "Stored request record and export columns", in its order: the contract the
    /// derived names must keep.
    #[test]
    fn the_columns_are_designs() {
        assert_eq!(
            COLUMNS.as_slice(),
            [
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
                "served_model",
                "system_fingerprint",
                "cost_usd",
                "cost_source",
            ]
        );
        assert_eq!(CSV_COLUMNS.len(), COLUMNS.len() - 1);
        assert_eq!(CSV_COLUMNS.last(), Some(&"cost_usd"));
    }

    /// Every format writes every column, numbers as they always were (CSV `Display`, JSON
    /// serde_json), stored JSON copied in, absent values empty or null.
    #[test]
    fn a_row_writes_the_same_in_each_format() {
        let r = RowRef {
            id: 3,
            timestamp_ms: 1_700_000_000_123,
            model: "m,\"1\"",
            provider: "p",
            messages_json: "[{\"role\":\"user\",\"content\":\"hi\"}]",
            temperature: Some(1.0),
            max_tokens: Some(16),
            top_p: None,
            response: Some("line\nbreak"),
            response_time_ms: Some(12.5),
            prompt_tokens: Some(1),
            completion_tokens: None,
            total_tokens: Some(1),
            finish_reason: None,
            error: None,
            metadata_json: "{\"attempts\":1}",
            job: "j",
            run_id: "r",
            case_id: "c",
            endpoint: "e",
            ttft_ms: None,
            scores_json: "",
            served_model: Some("m-2024"),
            system_fingerprint: None,
            cost_usd: Some(0.0054),
            cost_source: Some("price"),
        };
        let mut w = ExportWriter::new(Format::Csv, Vec::new()).unwrap();
        w.write_row(&r).unwrap();
        let csv = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            csv,
            format!(
                "{}\n3,2023-11-14T22:13:20.123Z,\"m,\"\"1\"\"\",p,\"[{{\"\"role\"\":\"\"user\"\",\"\"content\"\":\"\"hi\"\"}}]\",1,16,,\"line\nbreak\",12.5,1,,1,,,\"{{\"\"attempts\"\":1}}\",j,r,c,e,,,m-2024,,0.0054\n",
                CSV_COLUMNS.join(",")
            )
        );
        let mut w = ExportWriter::new(Format::Jsonl, Vec::new()).unwrap();
        w.write_row(&r).unwrap();
        let line = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            line,
            "{\"id\":3,\"timestamp\":\"2023-11-14T22:13:20.123Z\",\"model\":\"m,\\\"1\\\"\",\"provider\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":1.0,\"max_tokens\":16,\"top_p\":null,\"response\":\"line\\nbreak\",\"response_time_ms\":12.5,\"prompt_tokens\":1,\"completion_tokens\":null,\"total_tokens\":1,\"finish_reason\":null,\"error\":null,\"metadata\":{\"attempts\":1},\"job\":\"j\",\"run_id\":\"r\",\"case_id\":\"c\",\"endpoint\":\"e\",\"ttft_ms\":null,\"scores\":null,\"served_model\":\"m-2024\",\"system_fingerprint\":null,\"cost_usd\":0.0054,\"cost_source\":\"price\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), COLUMNS.len());
    }
}

//! Exports of request records: the filter (`since`, `until`, `job`, `model`, `limit`) parsed
//! once for the HTTP routes and `evald export`, and the CSV / JSON / JSONL writers, with the
//! columns and keys of DESIGN.md in that order. Writers take one record at a time, so an export
//! streams with flat memory however many rows it has.

use std::io::Write;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;

use crate::model::{Record, RecordFilter, RecordJson, RowRef};

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
        let mut json = std::mem::take(&mut self.json);
        let res = self.write_row(&json.row(r));
        self.json = json;
        res
    }

    /// Writes one stored row; its JSON parts go out as they are stored.
    pub fn write_row(&mut self, r: &RowRef<'_>) -> std::io::Result<()> {
        let first = self.rows == 0;
        self.rows += 1;
        let ts = self.times.format(r.timestamp_ms);
        match (self.format, &mut self.csv, &mut self.out) {
            (Format::Csv, Some(c), _) => write_csv(c, &mut self.num, ts, r).map_err(io_err),
            (Format::Json, _, Some(o)) => {
                o.write_all(if first { b"\n" } else { b",\n" })?;
                write_json(o, ts, r)
            }
            (Format::Jsonl, _, Some(o)) => {
                write_json(o, ts, r)?;
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

/// A number's CSV cell (empty when absent), formatted into `buf`.
fn cell(buf: &mut String, v: Option<impl std::fmt::Display>) -> &str {
    use std::fmt::Write as _;
    buf.clear();
    if let Some(v) = v {
        let _ = write!(buf, "{v}");
    }
    buf
}

/// One CSV row, the cells in [`COLUMNS`] order.
fn write_csv<W: Write>(
    c: &mut csv::Writer<W>,
    num: &mut String,
    ts: &str,
    r: &RowRef<'_>,
) -> csv::Result<()> {
    c.write_field(cell(num, Some(r.id)))?;
    c.write_field(ts)?;
    c.write_field(r.model)?;
    c.write_field(r.provider)?;
    c.write_field(r.messages_json)?;
    c.write_field(cell(num, r.temperature))?;
    c.write_field(cell(num, r.max_tokens))?;
    c.write_field(cell(num, r.top_p))?;
    c.write_field(r.response.unwrap_or(""))?;
    c.write_field(cell(num, r.response_time_ms))?;
    c.write_field(cell(num, r.prompt_tokens))?;
    c.write_field(cell(num, r.completion_tokens))?;
    c.write_field(cell(num, r.total_tokens))?;
    c.write_field(r.finish_reason.unwrap_or(""))?;
    c.write_field(r.error.unwrap_or(""))?;
    c.write_field(r.metadata_json)?;
    c.write_field(r.job)?;
    c.write_field(r.run_id)?;
    c.write_field(r.case_id)?;
    c.write_field(r.endpoint)?;
    c.write_field(cell(num, r.ttft_ms))?;
    c.write_field(r.scores_json)?;
    c.write_record(None::<&[u8]>)
}

/// One JSON object, the keys in [`COLUMNS`] order; the stored JSON parts are copied in.
fn write_json<W: Write>(o: &mut W, ts: &str, r: &RowRef<'_>) -> std::io::Result<()> {
    fn val<W: Write, T: Serialize + ?Sized>(o: &mut W, key: &str, v: &T) -> std::io::Result<()> {
        o.write_all(key.as_bytes())?;
        serde_json::to_writer(&mut *o, v).map_err(io_err)
    }
    fn raw<W: Write>(o: &mut W, key: &str, json: &str) -> std::io::Result<()> {
        o.write_all(key.as_bytes())?;
        o.write_all(if json.is_empty() {
            b"null"
        } else {
            json.as_bytes()
        })
    }
    val(o, "{\"id\":", &r.id)?;
    val(o, ",\"timestamp\":", ts)?;
    val(o, ",\"model\":", r.model)?;
    val(o, ",\"provider\":", r.provider)?;
    raw(o, ",\"messages\":", r.messages_json)?;
    val(o, ",\"temperature\":", &r.temperature)?;
    val(o, ",\"max_tokens\":", &r.max_tokens)?;
    val(o, ",\"top_p\":", &r.top_p)?;
    val(o, ",\"response\":", &r.response)?;
    val(o, ",\"response_time_ms\":", &r.response_time_ms)?;
    val(o, ",\"prompt_tokens\":", &r.prompt_tokens)?;
    val(o, ",\"completion_tokens\":", &r.completion_tokens)?;
    val(o, ",\"total_tokens\":", &r.total_tokens)?;
    val(o, ",\"finish_reason\":", &r.finish_reason)?;
    val(o, ",\"error\":", &r.error)?;
    raw(o, ",\"metadata\":", r.metadata_json)?;
    val(o, ",\"job\":", r.job)?;
    val(o, ",\"run_id\":", r.run_id)?;
    val(o, ",\"case_id\":", r.case_id)?;
    val(o, ",\"endpoint\":", r.endpoint)?;
    val(o, ",\"ttft_ms\":", &r.ttft_ms)?;
    raw(o, ",\"scores\":", r.scores_json)?;
    o.write_all(b"}")
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

//! How a request record is stored: [`Stored`] (postcard, prompts by hash, scores as
//! [`ScoreRef`]s) and back to a [`RowRef`], without parsing anything an export does not need.

use evald_model::Score;

use super::tables::*;
use super::*;

/// A request record as stored: the record minus its key (timestamp, id), with the messages
/// replaced by the hash of their payload, the metadata as JSON (open-ended: it can grow without
/// a migration) and the scores in postcard ([`ScoreRef`]s; schema 1's records hold them as JSON
/// text, which postcard frames the same way). Text is borrowed both ways: encoding copies
/// nothing out of the record, and reading decodes nothing into owned strings.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Stored<'a> {
    pub(super) model: &'a str,
    pub(super) provider: &'a str,
    pub(super) messages: u128,
    pub(super) temperature: Option<f64>,
    pub(super) max_tokens: Option<u32>,
    pub(super) top_p: Option<f64>,
    pub(super) response: Option<&'a str>,
    pub(super) response_time_ms: Option<f64>,
    pub(super) prompt_tokens: Option<u32>,
    pub(super) completion_tokens: Option<u32>,
    pub(super) total_tokens: Option<u32>,
    pub(super) finish_reason: Option<&'a str>,
    pub(super) error: Option<&'a str>,
    pub(super) metadata: &'a str,
    pub(super) job: &'a str,
    pub(super) run_id: &'a str,
    pub(super) case_id: &'a str,
    pub(super) endpoint: &'a str,
    pub(super) ttft_ms: Option<f64>,
    pub(super) scores: &'a [u8],
    /// [`RECORD_V3`] on: written after the fields above, as [`Tail`].
    #[serde(skip)]
    pub(super) tail: Tail<'a>,
}

/// What [`RECORD_V3`] added after [`Stored`]'s fields: the served model's identity and the
/// request's cost.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(super) struct Tail<'a> {
    pub(super) served_model: Option<&'a str>,
    pub(super) system_fingerprint: Option<&'a str>,
    pub(super) cost_usd: Option<f64>,
    pub(super) cost_source: Option<&'a str>,
}

impl<'a> Stored<'a> {
    /// Reads a stored value and its version; `None` for a version this binary cannot read.
    pub(super) fn decode(bytes: &'a [u8]) -> Option<(u8, Stored<'a>)> {
        let (&version, body) = bytes.split_first()?;
        match version {
            RECORD_V1 | RECORD_V2 => Some((version, postcard::from_bytes(body).ok()?)),
            RECORD_V3 => {
                let (mut s, rest): (Stored<'a>, _) = postcard::take_from_bytes(body).ok()?;
                s.tail = postcard::from_bytes(rest).ok()?;
                Some((version, s))
            }
            _ => None,
        }
    }

    /// The row, with the messages and scores JSON found by the caller.
    pub(super) fn row(
        &self,
        key: (u64, u64),
        messages_json: &'a str,
        scores_json: &'a str,
    ) -> RowRef<'a> {
        RowRef {
            id: key.1,
            timestamp_ms: key.0 as i64,
            model: self.model,
            provider: self.provider,
            messages_json,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            top_p: self.top_p,
            response: self.response,
            response_time_ms: self.response_time_ms,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            finish_reason: self.finish_reason,
            error: self.error,
            metadata_json: self.metadata,
            job: self.job,
            run_id: self.run_id,
            case_id: self.case_id,
            endpoint: self.endpoint,
            ttft_ms: self.ttft_ms,
            scores_json,
            served_model: self.tail.served_model,
            system_fingerprint: self.tail.system_fingerprint,
            cost_usd: self.tail.cost_usd,
            cost_source: self.tail.cost_source,
        }
    }
}

/// The scores of a stored record as JSON text: [`RECORD_V1`] holds the text, later versions
/// postcard, written out as JSON into `buf`. Damaged scores read as `[]`.
pub(super) fn scores_json<'b>(version: u8, bytes: &'b [u8], buf: &'b mut Vec<u8>) -> &'b str {
    if version == RECORD_V1 {
        return std::str::from_utf8(bytes).unwrap_or("[]");
    }
    buf.clear();
    let written = postcard::from_bytes::<Vec<ScoreRef>>(bytes)
        .ok()
        .and_then(|v| serde_json::to_writer(&mut *buf, &v).ok());
    match written {
        Some(()) => std::str::from_utf8(buf).unwrap_or("[]"),
        None => "[]",
    }
}

/// Encoded records as the writer takes them: their stored values one after another in `bytes`.
/// Taken from a [`RecordBatch`] ([`RecordBatch::take`]) and handed over with [`Writer::send`].
///
/// [`Writer::send`]: super::Writer::send
#[derive(Default)]
pub struct Records {
    pub(super) list: Vec<Encoded>,
    pub(super) bytes: Vec<u8>,
}

impl Records {
    /// The first `n` records, these keeping the rest.
    pub(super) fn split_front(&mut self, n: usize) -> Records {
        if n >= self.list.len() {
            return std::mem::take(self);
        }
        let rest = self.list.split_off(n);
        let cut = rest[0].value.start;
        let rest_bytes = self.bytes.split_off(cut);
        let front = Records {
            list: std::mem::replace(&mut self.list, rest),
            bytes: std::mem::replace(&mut self.bytes, rest_bytes),
        };
        for e in &mut self.list {
            e.value = e.value.start - cut..e.value.end - cut;
        }
        front
    }

    /// The stored value of `e`, one of these records.
    pub(super) fn value(&self, e: &Encoded) -> &[u8] {
        &self.bytes[e.value.clone()]
    }
}

/// Appends what postcard writes to a buffer it borrows (`postcard::to_extend` takes its
/// buffer by value, and would drop a batch's on an error).
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

/// A record ready for the writer: encoded by the task that made it, so the one writer thread
/// only inserts bytes.
pub(super) struct Encoded {
    pub(super) timestamp_ms: u64,
    /// Where its stored value is in its batch's [`Records::bytes`].
    pub(super) value: std::ops::Range<usize>,
    pub(super) payload: Payload,
    /// Shared with the batch's other records of the group (see [`RecordBatch`]).
    pub(super) group: Arc<str>,
    pub(super) sample: Option<Sample>,
    /// Shared with the batch's other records of the run.
    pub(super) run_id: Arc<str>,
}

/// Request records encoded for the writer and handed over together ([`Writer::records`]): one
/// queue send, and one wake-up of the writer, per batch rather than per record. A benchmark's
/// recorder hands over what it recorded from one take of its queue (up to a few hundred): the
/// hand-over one by one cost ~2 µs per request at 45k requests/s against a local nginx, about
/// as much as the writer's inserts (docs/benchmark.md). The run id and rollup group that
/// consecutive records share are one allocation, the stored values are written one after
/// another into one buffer, and the metadata through another.
#[derive(Default)]
pub struct RecordBatch {
    records: Records,
    last_run: Option<Arc<str>>,
    last_group: Option<Arc<str>>,
    group_buf: String,
    metadata: Vec<u8>,
}

impl RecordBatch {
    /// Encodes `r` into the batch (its `id` is assigned by the writer), with its messages'
    /// payload made by the caller if given (else from `r.messages`, which a benchmark leaves
    /// empty). A record that cannot be encoded is logged and left out.
    pub fn push(&mut self, r: &Record, payload: Option<&Payload>) {
        let start = self.records.bytes.len();
        match Encoded::new(r, payload, self) {
            Ok(e) => self.records.list.push(e),
            Err(e) => {
                self.records.bytes.truncate(start);
                tracing::error!(error = %e, run = %r.run_id, "a request record was not stored")
            }
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.list.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.list.is_empty()
    }

    /// The records, leaving the batch empty with room for as many (its shared names and
    /// metadata buffer kept for the next ones): a batch that is filled and taken again and again
    /// (a benchmark lane's) does not grow its buffers from nothing each time.
    pub fn take(&mut self) -> Records {
        let room = Records {
            list: Vec::with_capacity(self.records.list.len()),
            bytes: Vec::with_capacity(self.records.bytes.len()),
        };
        std::mem::replace(&mut self.records, room)
    }

    /// `text` as the batch's shared copy: the last one if equal, else a new one kept as last.
    fn shared(last: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
        match last {
            Some(l) if **l == *text => l.clone(),
            _ => last.insert(Arc::from(text)).clone(),
        }
    }
}

/// The most bytes a stored value takes besides its text and scores: the version, the payload
/// hash and the numbers as postcard varints, and a length prefix per text field.
const MAX_FIXED: usize = 1 + 19 + 6 * 9 + 4 * 6 + 16 * 3;

impl Encoded {
    /// Encodes a record (its `id` is assigned by the writer), with its messages' payload made
    /// by the caller if given (else from `r.messages`), sharing names and buffers with `batch`.
    fn new(
        r: &Record,
        payload: Option<&Payload>,
        batch: &mut RecordBatch,
    ) -> Result<Encoded, StoreError> {
        let payload = match payload {
            Some(p) => p.clone(),
            None => Payload::of(&r.messages),
        };
        batch.metadata.clear();
        serde_json::to_writer(&mut batch.metadata, &r.metadata)?;
        // serde_json writes UTF-8 only.
        let metadata = std::str::from_utf8(&batch.metadata).unwrap_or("{}");
        // No scores (every benchmark record) is postcard's empty sequence: no allocation.
        let encoded;
        let scores: &[u8] = match r.scores.as_slice() {
            [] => &[0],
            some => {
                let refs: Vec<ScoreRef> = some.iter().map(ScoreRef::from).collect();
                encoded = postcard::to_allocvec(&refs)?;
                &encoded
            }
        };
        let s = Stored {
            model: &r.model,
            provider: &r.provider,
            messages: payload.hash,
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
            metadata,
            job: &r.job,
            run_id: &r.run_id,
            case_id: &r.case_id,
            endpoint: &r.endpoint,
            ttft_ms: r.ttft_ms,
            scores,
            tail: Tail::default(),
        };
        let tail = Tail {
            served_model: r.served_model.as_deref(),
            system_fingerprint: r.system_fingerprint.as_deref(),
            cost_usd: r.cost_usd,
            cost_source: r.cost_source.as_deref(),
        };
        // Sized for the whole value, so it is written without growing (a grow copied it,
        // ~1 % of a benchmark's samples): the text, plus the numbers and length prefixes.
        let text: usize = [
            Some(s.model),
            Some(s.provider),
            Some(s.metadata),
            Some(s.job),
            Some(s.run_id),
            Some(s.case_id),
            Some(s.endpoint),
            s.response,
            s.finish_reason,
            s.error,
            tail.served_model,
            tail.system_fingerprint,
            tail.cost_source,
        ]
        .into_iter()
        .flatten()
        .map(str::len)
        .sum();
        let bound = MAX_FIXED + text + scores.len();
        let value = &mut batch.records.bytes;
        let start = value.len();
        value.reserve(bound);
        value.push(RECORD_V3);
        postcard::to_extend(&s, Append(value))?;
        postcard::to_extend(&tail, Append(value))?;
        let end = value.len();
        debug_assert!(end - start <= bound, "MAX_FIXED is too small");
        rollup::key_into(
            &mut batch.group_buf,
            &r.job,
            &r.endpoint,
            &r.model,
            &r.provider,
        );
        Ok(Encoded {
            timestamp_ms: r.timestamp_ms.max(0) as u64,
            value: start..end,
            payload,
            group: RecordBatch::shared(&mut batch.last_group, &batch.group_buf),
            sample: Sample::of(r),
            run_id: RecordBatch::shared(&mut batch.last_run, &r.run_id),
        })
    }
}

/// A record's messages as stored: their JSON, once per distinct payload, under its hash. Made
/// once per case by a benchmark, whose every record of a case has the same messages.
#[derive(Clone)]
pub struct Payload {
    pub(super) hash: u128,
    pub(super) json: Arc<[u8]>,
}

impl Payload {
    /// The payload of `messages`. (Serializing strings cannot fail; if it did, `[]`.)
    pub fn of(messages: &[evald_model::Message]) -> Payload {
        let json = serde_json::to_vec(messages).unwrap_or_else(|_| b"[]".to_vec());
        Payload {
            hash: xxhash_rust::xxh3::xxh3_128(&json),
            json: json.into(),
        }
    }
}

/// Reads prompt payloads within one read transaction, each distinct one once: an export of a
/// million records of a few hundred prompts reads a few hundred payloads.
pub(super) struct PayloadReader<'a> {
    pub(super) table: &'a redb::ReadOnlyTable<u128, (u64, &'static [u8])>,
    pub(super) texts: HashMap<u128, Box<str>>,
}

impl<'a> PayloadReader<'a> {
    /// Payloads kept at most; more are read again.
    const SIZE: usize = 4096;

    pub(super) fn new(table: &'a redb::ReadOnlyTable<u128, (u64, &'static [u8])>) -> Self {
        PayloadReader {
            table,
            texts: HashMap::new(),
        }
    }

    /// The messages JSON of a payload (`[]` if it is missing or damaged).
    pub(super) fn get(&mut self, hash: u128) -> &str {
        if !self.texts.contains_key(&hash) {
            let text: Box<str> = self
                .table
                .get(hash)
                .ok()
                .flatten()
                .and_then(|v| std::str::from_utf8(v.value().1).ok().map(Box::from))
                .unwrap_or_else(|| "[]".into());
            if self.texts.len() >= Self::SIZE {
                self.texts.clear();
            }
            self.texts.insert(hash, text);
        }
        self.texts.get(&hash).map_or("[]", |t| t)
    }
}

/// A [`Score`] borrowed: what the store keeps of each verdict, in postcard. In a
/// human-readable format (JSON) it serialises exactly as [`Score`] does, absent fields left out;
/// in a binary one every field is written, in order, as postcard needs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ScoreRef<'a> {
    /// [`Score::name`].
    pub name: &'a str,
    /// [`Score::value`].
    pub value: Option<f64>,
    /// [`Score::passed`].
    pub passed: Option<bool>,
    /// [`Score::weight`].
    pub weight: f64,
    /// [`Score::error`].
    #[serde(borrow)]
    pub error: Option<&'a str>,
    /// [`Score::note`].
    #[serde(borrow)]
    pub note: Option<&'a str>,
}

impl<'a> From<&'a Score> for ScoreRef<'a> {
    fn from(s: &'a Score) -> Self {
        ScoreRef {
            name: &s.name,
            value: s.value,
            passed: s.passed,
            weight: s.weight,
            error: s.error.as_deref(),
            note: s.note.as_deref(),
        }
    }
}

impl Serialize for ScoreRef<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// An optional field: always written in a binary format, only when set in JSON.
        fn opt<S: SerializeStruct, T: Serialize>(
            st: &mut S,
            all: bool,
            key: &'static str,
            v: &Option<T>,
        ) -> Result<(), S::Error> {
            if all || v.is_some() {
                st.serialize_field(key, v)
            } else {
                st.skip_field(key)
            }
        }
        let all = !ser.is_human_readable();
        let mut st = ser.serialize_struct("Score", 6)?;
        st.serialize_field("name", self.name)?;
        opt(&mut st, all, "value", &self.value)?;
        opt(&mut st, all, "passed", &self.passed)?;
        st.serialize_field("weight", &self.weight)?;
        opt(&mut st, all, "error", &self.error)?;
        opt(&mut st, all, "note", &self.note)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_ref_writes_json_as_a_score_does() {
        let full = Score {
            name: "judge \"q\"".into(),
            value: Some(0.25),
            passed: Some(false),
            weight: 2.0,
            error: Some("trap: unreachable".into()),
            note: Some("ünïcödé\nline".into()),
        };
        let bare = Score {
            name: "contains".into(),
            value: None,
            passed: None,
            weight: 1.0,
            error: None,
            note: None,
        };
        for s in [&full, &bare] {
            assert_eq!(
                serde_json::to_string(&ScoreRef::from(s)).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        let both = [&full, &bare];
        let refs: Vec<ScoreRef> = both.iter().map(|s| ScoreRef::from(*s)).collect();
        assert_eq!(
            serde_json::to_string(&refs).unwrap(),
            serde_json::to_string(&both).unwrap()
        );
    }
}

//! The export row, written by serde: [`RowRef`]'s derived `Serialize` is the one definition of
//! the columns, their names and their order. These serializers turn it into one CSV record or
//! one JSON object without building anything in between. Two fields carry a mark
//! ([`RAW_JSON`]: stored JSON, copied as it is; [`TIMESTAMP_MS`]: formatted as RFC 3339), and
//! numbers keep the formats the exports have always had (CSV: `Display`, JSON: serde_json).

use std::io::Write;
use std::sync::LazyLock;

use evald_model::RowRef;
use evald_model::record::{JSON_ONLY_COLUMNS, RAW_JSON, TIMESTAMP_MS};
use serde::ser::{self, Impossible, Serialize, SerializeStruct};

use super::Timestamps;

/// The columns (CSV header) and keys (JSON), in order: the field names of [`RowRef`].
pub static COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names = Vec::new();
    // Serialising the names of a struct cannot fail; an empty header would show at once.
    let _ = RowRef::default().serialize(Names(&mut names));
    names
});

/// The CSV header: [`COLUMNS`] without the JSON-only ones.
pub static CSV_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    COLUMNS
        .iter()
        .copied()
        .filter(|c| !JSON_ONLY_COLUMNS.contains(c))
        .collect()
});

/// Why a row could not be written: the sink failed, or the row holds a type the export
/// formats do not know (a programming error, caught by the tests).
#[derive(Debug)]
pub(super) struct RowError(String);

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowError {}

impl ser::Error for RowError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        RowError(msg.to_string())
    }
}

impl From<RowError> for std::io::Error {
    fn from(e: RowError) -> Self {
        std::io::Error::other(e.0)
    }
}

fn sink(e: impl std::fmt::Display) -> RowError {
    RowError(e.to_string())
}

/// The `Serializer` methods a row's values never use.
macro_rules! unsupported {
    ($($name:ident($($t:ty),*)),* $(,)?) => {$(
        fn $name(self, $(_: $t),*) -> Result<Self::Ok, Self::Error> {
            Err(RowError(concat!("an export cell cannot be written by ", stringify!($name)).into()))
        }
    )*};
}

/// The compound parts of `Serializer` a row's values never use.
macro_rules! no_compounds {
    () => {
        type SerializeSeq = Impossible<(), RowError>;
        type SerializeTuple = Impossible<(), RowError>;
        type SerializeTupleStruct = Impossible<(), RowError>;
        type SerializeTupleVariant = Impossible<(), RowError>;
        type SerializeMap = Impossible<(), RowError>;
        type SerializeStructVariant = Impossible<(), RowError>;
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RowError> {
            Err(RowError("an export row has no sequences".into()))
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RowError> {
            Err(RowError("an export row has no tuples".into()))
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, RowError> {
            Err(RowError("an export row has no tuples".into()))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, RowError> {
            Err(RowError("an export row has no enums".into()))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RowError> {
            Err(RowError("an export row has no maps".into()))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, RowError> {
            Err(RowError("an export row has no enums".into()))
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<(), RowError> {
            Err(RowError("an export row has no enums".into()))
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), RowError> {
            Err(RowError("an export row has no enums".into()))
        }
        unsupported!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_f32(f32),
            serialize_char(char),
            serialize_bytes(&[u8]),
            serialize_unit(),
            serialize_unit_struct(&'static str),
        );
    };
}

/// A serializer that takes only a struct (the row), not a value.
macro_rules! struct_only {
    () => {
        no_compounds!();
        unsupported!(
            serialize_i64(i64),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_f64(f64),
            serialize_str(&str),
            serialize_none(),
        );
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), RowError> {
            Err(RowError("a row is a struct".into()))
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<(), RowError> {
            Err(RowError("a row is a struct".into()))
        }
    };
}

/// Collects the field names of a struct.
struct Names<'n>(&'n mut Vec<&'static str>);

impl<'n> ser::Serializer for Names<'n> {
    type Ok = ();
    type Error = RowError;
    type SerializeStruct = Names<'n>;
    struct_only!();
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Names<'n>, RowError> {
        Ok(self)
    }
}

impl SerializeStruct for Names<'_> {
    type Ok = ();
    type Error = RowError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        _: &T,
    ) -> Result<(), RowError> {
        self.0.push(key);
        Ok(())
    }
    fn end(self) -> Result<(), RowError> {
        Ok(())
    }
}

/// How a cell writes the value it is given: plainly, as stored JSON, or as a timestamp.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Plain,
    RawJson,
    Timestamp,
}

impl Mark {
    fn of(name: &str) -> Mark {
        match name {
            RAW_JSON => Mark::RawJson,
            TIMESTAMP_MS => Mark::Timestamp,
            _ => Mark::Plain,
        }
    }
}

/// Writes a row as one CSV record.
pub(super) struct CsvRow<'w, W: Write> {
    pub(super) out: &'w mut csv::Writer<W>,
    pub(super) num: &'w mut String,
    pub(super) times: &'w mut Timestamps,
}

impl<'w, W: Write> ser::Serializer for CsvRow<'w, W> {
    type Ok = ();
    type Error = RowError;
    type SerializeStruct = CsvRow<'w, W>;
    struct_only!();
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, RowError> {
        Ok(self)
    }
}

impl<W: Write> SerializeStruct for CsvRow<'_, W> {
    type Ok = ();
    type Error = RowError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), RowError> {
        if JSON_ONLY_COLUMNS.contains(&key) {
            return Ok(());
        }
        value.serialize(CsvCell {
            out: &mut *self.out,
            num: &mut *self.num,
            times: &mut *self.times,
            mark: Mark::Plain,
        })
    }
    fn end(self) -> Result<(), RowError> {
        self.out.write_record(None::<&[u8]>).map_err(sink)
    }
}

/// Writes one CSV cell: text as it is, numbers by `Display`, absent values empty.
struct CsvCell<'c, W: Write> {
    out: &'c mut csv::Writer<W>,
    num: &'c mut String,
    times: &'c mut Timestamps,
    mark: Mark,
}

impl<W: Write> CsvCell<'_, W> {
    fn number(self, v: impl std::fmt::Display) -> Result<(), RowError> {
        use std::fmt::Write as _;
        self.num.clear();
        let _ = write!(self.num, "{v}");
        self.out.write_field(&*self.num).map_err(sink)
    }
}

impl<W: Write> ser::Serializer for CsvCell<'_, W> {
    type Ok = ();
    type Error = RowError;
    type SerializeStruct = Impossible<(), RowError>;
    no_compounds!();
    fn serialize_i64(self, v: i64) -> Result<(), RowError> {
        if self.mark == Mark::Timestamp {
            let ts = self.times.format(v);
            return self.out.write_field(ts).map_err(sink);
        }
        self.number(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), RowError> {
        self.number(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), RowError> {
        self.number(v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), RowError> {
        self.number(v)
    }
    fn serialize_str(self, v: &str) -> Result<(), RowError> {
        self.out.write_field(v).map_err(sink)
    }
    fn serialize_none(self) -> Result<(), RowError> {
        self.out.write_field("").map_err(sink)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), RowError> {
        v.serialize(self)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<(), RowError> {
        v.serialize(CsvCell {
            mark: Mark::of(name),
            ..self
        })
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RowError> {
        Err(RowError("an export cell is not a struct".into()))
    }
}

/// Writes a row as one JSON object.
pub(super) struct JsonRow<'w, W: Write> {
    pub(super) out: &'w mut W,
    pub(super) times: &'w mut Timestamps,
    pub(super) first: bool,
}

impl<'w, W: Write> ser::Serializer for JsonRow<'w, W> {
    type Ok = ();
    type Error = RowError;
    type SerializeStruct = JsonRow<'w, W>;
    struct_only!();
    fn serialize_struct(mut self, _: &'static str, _: usize) -> Result<Self, RowError> {
        self.first = true;
        Ok(self)
    }
}

impl<W: Write> SerializeStruct for JsonRow<'_, W> {
    type Ok = ();
    type Error = RowError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), RowError> {
        // Keys are Rust field names: plain ASCII, nothing to escape.
        let lead: &[u8] = if std::mem::take(&mut self.first) {
            b"{\""
        } else {
            b",\""
        };
        self.out.write_all(lead).map_err(sink)?;
        self.out.write_all(key.as_bytes()).map_err(sink)?;
        self.out.write_all(b"\":").map_err(sink)?;
        value.serialize(JsonValue {
            out: &mut *self.out,
            times: &mut *self.times,
            mark: Mark::Plain,
        })
    }
    fn end(self) -> Result<(), RowError> {
        self.out.write_all(b"}").map_err(sink)
    }
}

/// Writes one JSON value: scalars by serde_json, stored JSON copied in (`null` when empty).
struct JsonValue<'c, W: Write> {
    out: &'c mut W,
    times: &'c mut Timestamps,
    mark: Mark,
}

impl<W: Write> JsonValue<'_, W> {
    fn json<T: Serialize + ?Sized>(self, v: &T) -> Result<(), RowError> {
        serde_json::to_writer(&mut *self.out, v).map_err(sink)
    }
}

impl<W: Write> ser::Serializer for JsonValue<'_, W> {
    type Ok = ();
    type Error = RowError;
    type SerializeStruct = Impossible<(), RowError>;
    no_compounds!();
    fn serialize_i64(self, v: i64) -> Result<(), RowError> {
        if self.mark == Mark::Timestamp {
            let ts = self.times.format(v);
            return serde_json::to_writer(&mut *self.out, ts).map_err(sink);
        }
        self.json(&v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), RowError> {
        self.json(&v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), RowError> {
        self.json(&v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), RowError> {
        self.json(&v)
    }
    fn serialize_str(self, v: &str) -> Result<(), RowError> {
        if self.mark == Mark::RawJson {
            let raw: &[u8] = if v.is_empty() { b"null" } else { v.as_bytes() };
            return self.out.write_all(raw).map_err(sink);
        }
        self.json(v)
    }
    fn serialize_none(self) -> Result<(), RowError> {
        self.out.write_all(b"null").map_err(sink)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), RowError> {
        v.serialize(self)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<(), RowError> {
        v.serialize(JsonValue {
            mark: Mark::of(name),
            ..self
        })
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RowError> {
        Err(RowError("an export value is not a struct".into()))
    }
}

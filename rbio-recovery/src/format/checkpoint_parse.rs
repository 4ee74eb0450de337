//! Parsing a checkpoint payload: one pass of serde_json with visitors that never give up early.
//!
//! Every value the format reads is taken through a visitor that accepts any JSON type, so a
//! wrong type becomes a typed [`CheckpointError`] (whole document) or an [`EntryProblem`] (one
//! entry) instead of a serde error, and only broken JSON syntax fails the parse as such.
//! `entries` is read member by member with `MapAccess`, which keeps duplicate keys in order and
//! borrows keys from the payload. Nesting is bounded: the visitors go at most four objects or
//! arrays deep under serde_json's recursion limit of 128, and deeper values (tensor metadata,
//! unknown fields) are skipped or captured by serde_json's iterative, stack-free scanner.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use super::checkpoint::{Checkpoint, CheckpointEntry, CheckpointHead, EntryFields, TensorMeta};
use super::checkpoint_error::{CheckpointError, EntryProblem, IntegerProblem, JsonKind};

impl<'a> Checkpoint<'a> {
    /// Parses a checkpoint payload (the CRC-checked bytes, without padding).
    ///
    /// Unknown fields (`free_slots`, `lru_keys`, ...) are ignored. A malformed entry does not
    /// fail the parse: it is kept with an [`EntryProblem`] so that it can be reported.
    ///
    /// # Errors
    ///
    /// A [`CheckpointError`] when the payload is not UTF-8 JSON, not an object, not version 1,
    /// or a top-level field has the wrong type.
    pub fn parse(payload: &'a [u8]) -> Result<Checkpoint<'a>, CheckpointError> {
        let mut entries = Vec::new();
        let head = Checkpoint::parse_streaming(payload, &mut |event| match event {
            EntryEvent::EntriesStart(_) => {}
            EntryEvent::Entry(entry) => entries.push(entry),
            EntryEvent::Restart => entries.clear(),
        })?;
        Ok(Checkpoint { head, entries })
    }

    /// Parses a checkpoint payload, handing each entry to `sink` as soon as it is read, so
    /// that work on early entries can start while later ones are still being parsed.
    ///
    /// Entries arrive in payload order. A second top-level `entries` field replaces the first
    /// (as in Python's `json.loads`): `sink` then gets [`EntryEvent::Restart`] and should
    /// forget the entries it had. The head's fields are checked at the end, so entries handed
    /// over before an error belong to no valid checkpoint: on `Err` the caller discards them.
    ///
    /// # Errors
    ///
    /// As [`Checkpoint::parse`].
    pub fn parse_streaming(
        payload: &'a [u8],
        sink: &mut dyn FnMut(EntryEvent<'a>),
    ) -> Result<CheckpointHead<'a>, CheckpointError> {
        Checkpoint::parse_root(
            payload,
            RootSeed {
                sink,
                skip_entries: false,
            },
        )
    }

    /// Parses only the head of a checkpoint payload: `entries` is scanned for its syntax but
    /// neither read nor type-checked (for the layout a device records, without building its
    /// entries).
    ///
    /// # Errors
    ///
    /// As [`Checkpoint::parse`].
    pub fn parse_head(payload: &'a [u8]) -> Result<CheckpointHead<'a>, CheckpointError> {
        let sink = &mut |_: EntryEvent<'a>| {};
        Checkpoint::parse_root(
            payload,
            RootSeed {
                sink,
                skip_entries: true,
            },
        )
    }

    /// Parses a checkpoint payload streamed from `reader` (which must yield UTF-8: the caller
    /// checks it, as [`Checkpoint::parse`] does first), handing each entry to `sink` as
    /// [`Checkpoint::parse_streaming`] does. Nothing borrows from the payload, so the reader
    /// may free each piece it has handed over.
    ///
    /// # Errors
    ///
    /// As [`Checkpoint::parse`], except [`CheckpointError::NotUtf8`].
    pub fn parse_reader(
        reader: impl std::io::Read,
        sink: &mut dyn FnMut(EntryEvent<'static>),
    ) -> Result<CheckpointHead<'static>, CheckpointError> {
        let seed = RootSeed {
            sink,
            skip_entries: false,
        };
        // serde_json reads a byte at a time: a `BufReader` makes that a buffer lookup.
        let reader = std::io::BufReader::with_capacity(READ_BUFFER_BYTES, reader);
        parse_json(serde_json::Deserializer::from_reader(reader), seed)
    }

    fn parse_root(
        payload: &'a [u8],
        seed: RootSeed<'_, 'a>,
    ) -> Result<CheckpointHead<'a>, CheckpointError> {
        let text = std::str::from_utf8(payload).map_err(CheckpointError::NotUtf8)?;
        parse_json(serde_json::Deserializer::from_str(text), seed)
    }
}

/// Reads the root object through `seed`, then checks that nothing but whitespace follows.
fn parse_json<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
    seed: RootSeed<'_, 'de>,
) -> Result<CheckpointHead<'de>, CheckpointError> {
    let root = seed
        .deserialize(&mut deserializer)
        .map_err(CheckpointError::Json)?;
    deserializer.end().map_err(CheckpointError::Json)?;
    match root {
        Root::Object(top) => top.into_head(),
        Root::Other(found) => Err(CheckpointError::NotAnObject { found }),
    }
}

/// Bytes [`Checkpoint::parse_reader`] takes from its reader at a time.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// What [`Checkpoint::parse_streaming`] hands its sink.
#[derive(Debug)]
pub enum EntryEvent<'a> {
    /// The first top-level `entries` field starts; the head as read so far (fields that come
    /// after `entries` are absent from it, and a later duplicate of a field may still replace
    /// one). LMCache writes every head field before `entries`, so this head is normally the
    /// final one, and whole-checkpoint rules can be applied before any entry arrives.
    EntriesStart(Result<CheckpointHead<'a>, CheckpointError>),
    /// The next entry, in payload order.
    Entry(CheckpointEntry<'a>),
    /// Another top-level `entries` field starts: forget the entries received so far.
    Restart,
}

/// The payload's root value: only an object is read.
enum Root<'de> {
    Object(Box<Top<'de>>),
    Other(JsonKind),
}

type Integer = Result<u64, IntegerProblem>;
type Text<'de> = Result<Cow<'de, str>, JsonKind>;

/// The top-level fields as found, each still possibly of the wrong type.
#[derive(Clone, Default)]
struct Top<'de> {
    version: Option<Integer>,
    device_path: Option<Text<'de>>,
    capacity_bytes: Option<Integer>,
    block_align: Option<Integer>,
    header_bytes: Option<Integer>,
    slot_bytes: Option<Integer>,
    meta_total_bytes: Option<Integer>,
    meta_magic: Option<Text<'de>>,
    meta_version: Option<Integer>,
    data_base_offset: Option<Integer>,
    next_slot: Option<Integer>,
    /// Whether `entries` was present and an object (its members went to the sink).
    entries: Option<Result<(), JsonKind>>,
}

impl<'de> Top<'de> {
    /// Records a scalar field; `entries` and unknown fields are read by the caller.
    fn set(&mut self, field: TopField, value: Scalar<'de>) {
        match field {
            TopField::Version => self.version = Some(value.integer()),
            TopField::DevicePath => self.device_path = Some(value.text()),
            TopField::CapacityBytes => self.capacity_bytes = Some(value.integer()),
            TopField::BlockAlign => self.block_align = Some(value.integer()),
            TopField::HeaderBytes => self.header_bytes = Some(value.integer()),
            TopField::SlotBytes => self.slot_bytes = Some(value.integer()),
            TopField::MetaTotalBytes => self.meta_total_bytes = Some(value.integer()),
            TopField::MetaMagic => self.meta_magic = Some(value.text()),
            TopField::MetaVersion => self.meta_version = Some(value.integer()),
            TopField::DataBaseOffset => self.data_base_offset = Some(value.integer()),
            TopField::NextSlot => self.next_slot = Some(value.integer()),
            TopField::Entries | TopField::Other => {}
        }
    }

    fn into_head(self) -> Result<CheckpointHead<'de>, CheckpointError> {
        match integer("version", self.version)? {
            Some(1) => {}
            Some(version) => return Err(CheckpointError::UnsupportedVersion { version }),
            None => {
                let problem = IntegerProblem::Missing;
                return Err(CheckpointError::FieldInteger {
                    field: "version",
                    problem,
                });
            }
        }
        let head = CheckpointHead {
            device_path: text("device_path", self.device_path, true)?,
            capacity_bytes: integer("capacity_bytes", self.capacity_bytes)?,
            block_align: integer("block_align", self.block_align)?,
            header_bytes: integer("header_bytes", self.header_bytes)?,
            slot_bytes: integer("slot_bytes", self.slot_bytes)?,
            meta_total_bytes: integer("meta_total_bytes", self.meta_total_bytes)?,
            meta_magic: text("meta_magic", self.meta_magic, false)?,
            meta_version: integer("meta_version", self.meta_version)?,
            data_base_offset: integer("data_base_offset", self.data_base_offset)?,
            next_slot: integer("next_slot", self.next_slot)?,
        };
        match self.entries {
            None | Some(Ok(())) => Ok(head),
            Some(Err(found)) => Err(CheckpointError::FieldType {
                field: "entries",
                expected: JsonKind::Object,
                found,
            }),
        }
    }
}

fn integer(field: &'static str, value: Option<Integer>) -> Result<Option<u64>, CheckpointError> {
    value
        .transpose()
        .map_err(|problem| CheckpointError::FieldInteger { field, problem })
}

/// A string field; `null` reads as absent where `null_is_absent` (LMCache tests truthiness).
fn text<'de>(
    field: &'static str,
    value: Option<Text<'de>>,
    null_is_absent: bool,
) -> Result<Option<Cow<'de, str>>, CheckpointError> {
    match value {
        Some(Err(JsonKind::Null)) if null_is_absent => Ok(None),
        Some(Err(found)) => Err(CheckpointError::FieldType {
            field,
            expected: JsonKind::String,
            found,
        }),
        Some(Ok(text)) => Ok(Some(text)),
        None => Ok(None),
    }
}

/// Methods for every JSON type but objects, which `$wrap` turns into the visitor's value.
macro_rules! visit_non_objects {
    ($wrap:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($wrap(JsonKind::Bool))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($wrap(JsonKind::Number))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($wrap(JsonKind::Number))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($wrap(JsonKind::Number))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($wrap(JsonKind::String))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($wrap(JsonKind::Null))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            skip_seq(seq)?;
            Ok($wrap(JsonKind::Array))
        }
    };
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads the root value, handing each entry of `entries` to the sink (or skipping them).
struct RootSeed<'s, 'de> {
    sink: &'s mut dyn FnMut(EntryEvent<'de>),
    skip_entries: bool,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_, 'de> {
    type Value = Root<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_, 'de> {
    type Value = Root<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a checkpoint object")
    }

    visit_non_objects!(Root::Other);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut top = Top::default();
        while let Some(field) = map.next_key::<TopField>()? {
            match field {
                TopField::Entries if self.skip_entries => {
                    map.next_value::<IgnoredAny>()?;
                    top.entries = Some(Ok(()));
                }
                TopField::Entries => {
                    if top.entries.is_some() {
                        (self.sink)(EntryEvent::Restart);
                    } else {
                        (self.sink)(EntryEvent::EntriesStart(top.clone().into_head()));
                    }
                    let seed = EntriesSeed {
                        sink: &mut *self.sink,
                    };
                    top.entries = Some(map.next_value_seed(seed)?);
                }
                TopField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
                field => top.set(field, map.next_value::<Scalar>()?),
            }
        }
        Ok(Root::Object(Box::new(top)))
    }
}

/// Defines a field-name enum read from the raw key bytes, so that a key with a lone surrogate
/// escape is just an unknown field, as it is for Python.
macro_rules! field_names {
    ($name:ident { $($variant:ident = $text:literal,)* }) => {
        enum $name {
            $($variant,)*
            Other,
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct NameVisitor;
                impl Visitor<'_> for NameVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a field name")
                    }
                    fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<$name, E> {
                        Ok(match name {
                            $($text => $name::$variant,)*
                            _ => $name::Other,
                        })
                    }
                    fn visit_str<E: de::Error>(self, name: &str) -> Result<$name, E> {
                        self.visit_bytes(name.as_bytes())
                    }
                }
                deserializer.deserialize_bytes(NameVisitor)
            }
        }
    };
}

field_names!(TopField {
    Version = b"version",
    DevicePath = b"device_path",
    CapacityBytes = b"capacity_bytes",
    BlockAlign = b"block_align",
    HeaderBytes = b"header_bytes",
    SlotBytes = b"slot_bytes",
    MetaTotalBytes = b"meta_total_bytes",
    MetaMagic = b"meta_magic",
    MetaVersion = b"meta_version",
    DataBaseOffset = b"data_base_offset",
    NextSlot = b"next_slot",
    Entries = b"entries",
});

field_names!(EntryField {
    Offset = b"offset",
    Size = b"size",
    Shape = b"shape",
    Dtype = b"dtype",
    Fmt = b"fmt",
    CachedPositions = b"cached_positions",
});

/// Any JSON value, kept only as far as a scalar field needs it.
enum Scalar<'de> {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(Cow<'de, str>),
    Other(JsonKind),
}

impl<'de> Scalar<'de> {
    fn integer(self) -> Integer {
        match self {
            Scalar::Unsigned(value) => Ok(value),
            Scalar::Signed(value) => u64::try_from(value).map_err(|_| IntegerProblem::Negative),
            Scalar::Float(value) if value < 0.0 => Err(IntegerProblem::Negative),
            // serde_json reads an integer too long for u64 as a float.
            Scalar::Float(value)
                if value >= 18_446_744_073_709_551_616.0 && value.fract() == 0.0 =>
            {
                Err(IntegerProblem::TooLarge)
            }
            Scalar::Float(_) => Err(IntegerProblem::NotAnInteger),
            Scalar::Str(_) => Err(IntegerProblem::WrongType {
                found: JsonKind::String,
            }),
            Scalar::Other(found) => Err(IntegerProblem::WrongType { found }),
        }
    }

    fn text(self) -> Text<'de> {
        match self {
            Scalar::Str(text) => Ok(text),
            Scalar::Unsigned(_) | Scalar::Signed(_) | Scalar::Float(_) => Err(JsonKind::Number),
            Scalar::Other(found) => Err(found),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other(JsonKind::Bool))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Signed(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Unsigned(value))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(value))
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(text)))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(text.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other(JsonKind::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq)?;
        Ok(Scalar::Other(JsonKind::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other(JsonKind::Object))
    }
}

/// Reads the `entries` value member by member into the sink; the result is `Err` with the
/// type it has instead when it is not an object.
struct EntriesSeed<'s, 'de> {
    sink: &'s mut dyn FnMut(EntryEvent<'de>),
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_, 'de> {
    type Value = Result<(), JsonKind>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_, 'de> {
    type Value = Result<(), JsonKind>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entries object")
    }

    visit_non_objects!(Err);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(EntryKey { key, is_unicode }) = map.next_key()? {
            let EntryValue(fields) = map.next_value()?;
            let fields = if is_unicode {
                fields
            } else {
                Err(EntryProblem::KeyNotUnicode)
            };
            (self.sink)(EntryEvent::Entry(CheckpointEntry { key, fields }));
        }
        Ok(Ok(()))
    }
}

/// An entry's key, read as raw bytes: serde_json hands over a lone surrogate escape as WTF-8
/// there instead of failing the whole document; the key then holds U+FFFD in its place.
struct EntryKey<'de> {
    key: Cow<'de, str>,
    is_unicode: bool,
}

impl<'de> Deserialize<'de> for EntryKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(EntryKeyVisitor)
    }
}

struct EntryKeyVisitor;

impl<'de> Visitor<'de> for EntryKeyVisitor {
    type Value = EntryKey<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry key")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<Self::Value, E> {
        Ok(match std::str::from_utf8(bytes) {
            Ok(key) => EntryKey {
                key: Cow::Borrowed(key),
                is_unicode: true,
            },
            Err(_) => self.visit_bytes::<E>(bytes)?,
        })
    }
    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        Ok(match std::str::from_utf8(bytes) {
            Ok(key) => EntryKey {
                key: Cow::Owned(key.to_owned()),
                is_unicode: true,
            },
            Err(_) => EntryKey {
                key: Cow::Owned(wtf8_lossy(bytes)),
                is_unicode: false,
            },
        })
    }
    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(EntryKey {
            key: Cow::Borrowed(key),
            is_unicode: true,
        })
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(EntryKey {
            key: Cow::Owned(key.to_owned()),
            is_unicode: true,
        })
    }
}

/// `bytes` with each invalid sequence as one U+FFFD; a surrogate in WTF-8 (`ED A0..BF xx`),
/// which `Utf8Error` reports byte by byte, also counts as one.
fn wtf8_lossy(mut bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    loop {
        let error = match std::str::from_utf8(bytes) {
            Ok(valid) => return text + valid,
            Err(error) => error,
        };
        let (valid, invalid) = bytes.split_at(error.valid_up_to());
        text.push_str(std::str::from_utf8(valid).unwrap_or_default());
        text.push(char::REPLACEMENT_CHARACTER);
        let is_surrogate = matches!(invalid, [0xED, 0xA0..=0xBF, 0x80..=0xBF, ..]);
        let invalid_len = if is_surrogate {
            3
        } else {
            error.error_len().unwrap_or(invalid.len())
        };
        bytes = &invalid[invalid_len..];
    }
}

/// One entry's value: its fields, or why they cannot be read.
struct EntryValue<'de>(Result<EntryFields<'de>, EntryProblem>);

impl<'de> Deserialize<'de> for EntryValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = EntryValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry object")
    }

    visit_non_objects!(|found| EntryValue(Err(EntryProblem::NotAnObject { found })));

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut offset = Err(IntegerProblem::Missing);
        let mut size = Err(IntegerProblem::Missing);
        let mut tensor = TensorMeta::default();
        while let Some(field) = map.next_key::<EntryField>()? {
            let raw = |map: &mut A| {
                // Owned, so that the same visitor reads a payload streamed from a reader.
                map.next_value::<Box<RawValue>>()
                    .map(|r| Some(Cow::Owned(r)))
            };
            match field {
                EntryField::Offset => offset = map.next_value::<Scalar>()?.integer(),
                EntryField::Size => size = map.next_value::<Scalar>()?.integer(),
                EntryField::Shape => tensor.shape = raw(&mut map)?,
                EntryField::Dtype => tensor.dtype = raw(&mut map)?,
                EntryField::Fmt => tensor.fmt = raw(&mut map)?,
                EntryField::CachedPositions => tensor.cached_positions = raw(&mut map)?,
                EntryField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(EntryValue(match (offset, size) {
            (Err(problem), _) => Err(EntryProblem::Offset(problem)),
            (_, Err(problem)) => Err(EntryProblem::Size(problem)),
            (Ok(offset_bytes), Ok(size_bytes)) => Ok(EntryFields {
                offset_bytes,
                size_bytes,
                tensor,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries as `key: offset size shape dtype fmt cached_positions` (`-` = absent), or
    /// `key: problem`, joined by `; `; errors as their message.
    fn check(payload: &str, expected: Result<&str, &str>) {
        check_bytes(payload.as_bytes(), expected);
    }

    fn check_bytes(payload: &[u8], expected: Result<&str, &str>) {
        let actual = Checkpoint::parse(payload)
            .map(|c| render(&c))
            .map_err(|e| e.to_string());
        let expected = expected.map(str::to_owned).map_err(str::to_owned);
        assert_eq!(actual, expected, "{}", String::from_utf8_lossy(payload));
    }

    fn render(checkpoint: &Checkpoint<'_>) -> String {
        let entry = |e: &CheckpointEntry<'_>| match &e.fields {
            Ok(f) => {
                let tensor = f.tensor.texts().map(|t| t.unwrap_or("-")).join(" ");
                format!("{}: {} {} {tensor}", e.key, f.offset_bytes, f.size_bytes)
            }
            Err(problem) => format!("{}: {problem}", e.key),
        };
        checkpoint
            .entries
            .iter()
            .map(entry)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `{"version":1,"entries":{...}}` around `members`.
    fn entries(members: &str) -> String {
        format!(r#"{{"version":1,"entries":{{{members}}}}}"#)
    }

    #[test]
    #[rustfmt::skip]
    fn entry_cases() {
        let e = |members: &str, expected| check(&entries(members), Ok(expected));
        e("", "");
        e(r#""k":{"offset":4194304,"size":64,"shape":[64],"dtype":"uint8","fmt":"BINARY","cached_positions":null}"#, "k: 4194304 64 [64] \"uint8\" \"BINARY\" null");
        e(r#""k":{"size":2,"offset":1}"#, "k: 1 2 - - - -");
        e(r#""k":{"offset":1,"size":2,"shape":[2, 2, 1 ,64],"cached_positions":[0,1],"extra":{"a":[1]}}"#, "k: 1 2 [2, 2, 1 ,64] - - [0,1]");
        e(r#""a":{"offset":1,"size":2},"a":{"offset":3,"size":4},"b":{"offset":5,"size":6}"#, "a: 1 2 - - - -; a: 3 4 - - - -; b: 5 6 - - - -");
        e(r#""k":{"offset":1,"offset":7,"size":2}"#, "k: 7 2 - - - -");
        e(r#""k":{"offset":18446744073709551615,"size":0}"#, "k: 18446744073709551615 0 - - - -");
        e(r#""a\"b\\c\u00e9\ud83d\ude00":{"offset":1,"size":2}"#, "a\"b\\cé😀: 1 2 - - - -");
        e(r#""k":{"offset":1,"size":2,"dtype":"\ud800"}"#, "k: 1 2 - \"\\ud800\" - -");
        e(r#""k":{"offset":1,"size":2,"\ud800":"\udc00"}"#, "k: 1 2 - - - -");
    }

    #[test]
    #[rustfmt::skip]
    fn entry_problems_keep_the_rest() {
        let e = |members: &str, expected| check(&entries(members), Ok(expected));
        e(r#""k":5,"ok":{"offset":1,"size":2}"#, "k: entry is a number, not an object; ok: 1 2 - - - -");
        e(r#""k":"x""#, "k: entry is a string, not an object");
        e(r#""k":[{"offset":1,"size":2}]"#, "k: entry is an array, not an object");
        e(r#""k":null"#, "k: entry is null, not an object");
        e(r#""k":true"#, "k: entry is a boolean, not an object");
        e(r#""k":{}"#, "k: offset is missing");
        e(r#""k":{"offset":1}"#, "k: size is missing");
        e(r#""k":{"size":1}"#, "k: offset is missing");
        e(r#""k":{"offset":-1,"size":2}"#, "k: offset is negative");
        e(r#""k":{"offset":-99999999999999999999,"size":2}"#, "k: offset is negative");
        e(r#""k":{"offset":1.5,"size":2}"#, "k: offset is a floating-point number, not an integer");
        e(r#""k":{"offset":1.0,"size":2}"#, "k: offset is a floating-point number, not an integer");
        e(r#""k":{"offset":1e3,"size":2}"#, "k: offset is a floating-point number, not an integer");
        e(r#""k":{"offset":18446744073709551616,"size":2}"#, "k: offset is larger than 2^64 - 1");
        e(r#""k":{"offset":"4194304","size":2}"#, "k: offset is a string, not an integer");
        e(r#""k":{"offset":null,"size":2}"#, "k: offset is null, not an integer");
        e(r#""k":{"offset":[1],"size":2}"#, "k: offset is an array, not an integer");
        e(r#""k":{"offset":{"a":1},"size":2}"#, "k: offset is an object, not an integer");
        e(r#""k":{"offset":1,"size":-2}"#, "k: size is negative");
        e(r#""k":{"offset":-1,"size":-2}"#, "k: offset is negative");
        e(r#""\ud800":{"offset":1,"size":2}"#, "\u{fffd}: key has a lone surrogate escape");
        e(r#""a\udc00b\ud83d":{"offset":1,"size":2}"#, "a\u{fffd}b\u{fffd}: key has a lone surrogate escape");
        e(r#""\ud83d\ud83d\ude00\n":{"offset":1,"size":2}"#, "\u{fffd}😀\n: key has a lone surrogate escape");
    }

    #[test]
    #[rustfmt::skip]
    fn document_errors() {
        check("", Err("checkpoint payload is not JSON at line 1 column 0"));
        check("{\"version\":1", Err("checkpoint payload is not JSON at line 1 column 12"));
        check("{\"version\":1} x", Err("checkpoint payload is not JSON at line 1 column 15"));
        check("{\"version\":1,}", Err("checkpoint payload is not JSON at line 1 column 14"));
        check("{\"version\":NaN}", Err("checkpoint payload is not JSON at line 1 column 12"));
        check("\u{feff}{\"version\":1}", Err("checkpoint payload is not JSON at line 1 column 1"));
        check_bytes(b"{\"version\":1,\"device_path\":\"\xff\"}", Err("checkpoint payload is not UTF-8 after byte 28"));
        check("[]", Err("checkpoint payload is an array, not an object"));
        check("1", Err("checkpoint payload is a number, not an object"));
        check("null", Err("checkpoint payload is null, not an object"));
        check("\"{}\"", Err("checkpoint payload is a string, not an object"));
        check("{}", Err("version is missing"));
        check(r#"{"entries":{}}"#, Err("version is missing"));
        check(r#"{"version":2}"#, Err("checkpoint version 2, only version 1 is known"));
        check(r#"{"version":0,"entries":[]}"#, Err("checkpoint version 0, only version 1 is known"));
        check(r#"{"version":"1"}"#, Err("version is a string, not an integer"));
        check(r#"{"version":1.0}"#, Err("version is a floating-point number, not an integer"));
        check(r#"{"version":1,"entries":[]}"#, Err("entries is an array, expected an object"));
        check(r#"{"version":1,"entries":null}"#, Err("entries is null, expected an object"));
        check(r#"{"version":1,"next_slot":-1}"#, Err("next_slot is negative"));
        check(r#"{"version":1,"next_slot":"3"}"#, Err("next_slot is a string, not an integer"));
        check(r#"{"version":1,"next_slot":2.5}"#, Err("next_slot is a floating-point number, not an integer"));
        check(r#"{"version":1,"block_align":true}"#, Err("block_align is a boolean, not an integer"));
        check(r#"{"version":1,"capacity_bytes":null}"#, Err("capacity_bytes is null, not an integer"));
        check(r#"{"version":1,"device_path":5}"#, Err("device_path is a number, expected a string"));
        check(r#"{"version":1,"device_path":["/dev/x"]}"#, Err("device_path is an array, expected a string"));
        check(r#"{"version":1,"meta_magic":null}"#, Err("meta_magic is null, expected a string"));
    }

    #[test]
    #[rustfmt::skip]
    fn document_cases() {
        check(r#"{"version":1}"#, Ok(""));
        check(" {\"version\" : 1 ,\n\"entries\" : { } } \n", Ok(""));
        check(r#"{"version":2,"version":1}"#, Ok(""));
        check(r#"{"version":1,"device_path":null}"#, Ok(""));
        check(r#"{"version":1,"free_slots":[1,2,3],"lru_keys":["a"],"future":{"x":[{}]}}"#, Ok(""));
        check(r#"{"\ud800":1,"version":1}"#, Ok(""));
        check(r#"{"entries":{"k":{"offset":1,"size":2}},"version":1}"#, Ok("k: 1 2 - - - -"));
        check(r#"{"version":1,"entries":{"k":{"offset":1,"size":2}},"entries":{}}"#, Ok(""));
    }

    #[test]
    fn head_fields_are_read() {
        let payload = br#"{"version":1,"device_path":"/srv/\u00e9.img","capacity_bytes":75497472,"block_align":4096,"header_bytes":4096,"slot_bytes":65536,"meta_total_bytes":4194304,"meta_magic":"LMCIDX01","meta_version":1,"data_base_offset":4194304,"next_slot":1000,"entries":{}}"#;
        let head = Checkpoint::parse(payload).unwrap().head;
        let expected = CheckpointHead {
            device_path: Some(Cow::Borrowed("/srv/é.img")),
            capacity_bytes: Some(75_497_472),
            block_align: Some(4096),
            header_bytes: Some(4096),
            slot_bytes: Some(65536),
            meta_total_bytes: Some(4_194_304),
            meta_magic: Some(Cow::Borrowed("LMCIDX01")),
            meta_version: Some(1),
            data_base_offset: Some(4_194_304),
            next_slot: Some(1000),
        };
        assert_eq!(head, expected);
        assert!(matches!(head.meta_magic, Some(Cow::Borrowed(_))));
        assert!(matches!(head.device_path, Some(Cow::Owned(_))));
    }

    #[test]
    fn keys_borrow_unless_escaped() {
        let payload = entries(r#""plain":{"offset":1,"size":2},"esc\/aped":{"offset":1,"size":2}"#);
        let checkpoint = Checkpoint::parse(payload.as_bytes()).unwrap();
        assert!(matches!(checkpoint.entries[0].key, Cow::Borrowed("plain")));
        assert!(matches!(&checkpoint.entries[1].key, Cow::Owned(k) if k == "esc/aped"));
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_fails_balanced_values() {
        let depth = 100_000;
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let member = format!(r#""k":{{"offset":1,"size":2,"cached_positions":{deep},"x":{deep}}}"#);
        let payload = entries(&member);
        let checkpoint = Checkpoint::parse(payload.as_bytes()).unwrap();
        let tensor = &checkpoint.entries[0].fields.as_ref().unwrap().tensor;
        assert_eq!(tensor.texts()[3].map(str::len), Some(2 * depth));
        for value in [deep.as_str(), &deep[..depth]] {
            for payload in [
                value.to_owned(),
                format!(r#"{{"version":1,"x":{value}}}"#),
                format!(r#"{{"version":{value}}}"#),
                entries(&format!(r#""k":{value}"#)),
                entries(&format!(r#""k":{{"offset":{value}}}"#)),
            ] {
                let _ = Checkpoint::parse(payload.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod streaming_tests {
    use super::*;

    fn events(payload: &str) -> (Vec<String>, Result<Option<u64>, String>) {
        let mut seen = Vec::new();
        let head = Checkpoint::parse_streaming(payload.as_bytes(), &mut |event| match event {
            EntryEvent::EntriesStart(head) => {
                let next_slot = head.map(|head| head.next_slot);
                seen.push(format!("<start {next_slot:?}>"));
            }
            EntryEvent::Entry(entry) => seen.push(entry.key.to_string()),
            EntryEvent::Restart => seen.push("<restart>".to_string()),
        });
        (
            seen,
            head.map(|head| head.next_slot).map_err(|e| e.to_string()),
        )
    }

    #[test]
    fn entries_arrive_in_order_before_the_head_is_checked() {
        let (seen, head) = events(r#"{"entries":{"a":{},"b":{}},"version":1,"next_slot":2}"#);
        let missing = "<start Err(FieldInteger { field: \"version\", problem: Missing })>";
        assert_eq!(seen, [missing, "a", "b"]);
        assert_eq!(head, Ok(Some(2)));
    }

    #[test]
    fn a_repeated_entries_field_restarts_the_stream() {
        let (seen, head) = events(r#"{"version":1,"entries":{"a":{}},"entries":{"b":{}}}"#);
        assert_eq!(seen, ["<start Ok(None)>", "a", "<restart>", "b"]);
        assert!(head.is_ok());
    }

    #[test]
    fn entries_before_an_invalid_head_come_with_an_error() {
        let (seen, head) = events(r#"{"entries":{"a":{}},"version":2}"#);
        assert_eq!(seen[1..], ["a"]);
        assert!(head.is_err());
    }

    #[test]
    fn the_head_alone_skips_the_entries() {
        let payload =
            r#"{"version":1,"slot_bytes":8192,"entries":{"a":{},"b":[1,{"c":2}]},"next_slot":4}"#;
        let head = Checkpoint::parse_head(payload.as_bytes()).unwrap();
        assert_eq!((head.slot_bytes, head.next_slot), (Some(8192), Some(4)));
        assert!(Checkpoint::parse_head(br#"{"version":1,"entries":{"a":}"#).is_err());
        assert!(Checkpoint::parse_head(br#"{"version":2,"entries":{}}"#).is_err());
    }

    #[test]
    fn the_head_before_entries_holds_the_fields_read_so_far() {
        let payload = r#"{"version":1,"next_slot":7,"entries":{"a":{}},"next_slot":9}"#;
        let (seen, head) = events(payload);
        assert_eq!(seen, ["<start Ok(Some(7))>", "a"]);
        assert_eq!(head, Ok(Some(9)), "a later duplicate still wins at the end");
        let (seen, _) = events(r#"{"version":3,"entries":{}}"#);
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].starts_with("<start Err(UnsupportedVersion"),
            "{seen:?}"
        );
    }
}

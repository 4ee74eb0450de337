//! Writing a checkpoint payload byte for byte as LMCache does.
//!
//! LMCache writes `json.dumps(snapshot, separators=(",", ":"), ensure_ascii=True)`: no spaces,
//! fields in a fixed order, and every character outside printable ASCII escaped as `\uXXXX`
//! (lowercase hex, astral characters as surrogate pairs). serde_json escapes differently, so the
//! payload is written by hand here; the fixture tests check it against LMCache's own bytes.

use super::checkpoint::{Checkpoint, CheckpointHead, EntryFields};

/// Builds a checkpoint payload entry by entry, without holding the entries.
///
/// ```
/// # use rbio_recovery::{CheckpointHead, CheckpointWriter, EntryFields, TensorMeta};
/// let head = CheckpointHead { next_slot: Some(1), ..CheckpointHead::default() };
/// let mut writer = CheckpointWriter::new(&head);
/// let fields = EntryFields { offset_bytes: 8192, size_bytes: 10, tensor: TensorMeta::default() };
/// writer.push("k\u{e9}y", &fields);
/// assert_eq!(
///     writer.finish(),
///     br#"{"version":1,"next_slot":1,"entries":{"k\u00e9y":{"offset":8192,"size":10,"shape":null,"dtype":null,"fmt":null,"cached_positions":null}}}"#
/// );
/// ```
#[derive(Clone, Debug)]
pub struct CheckpointWriter {
    out: Vec<u8>,
    entry_count: usize,
}

impl CheckpointWriter {
    /// Starts a payload with `head`'s present fields, in LMCache's order, after `"version":1`.
    pub fn new(head: &CheckpointHead<'_>) -> CheckpointWriter {
        let mut out = b"{\"version\":1".to_vec();
        let text_field = |out: &mut Vec<u8>, name: &str, value: Option<&str>| {
            if let Some(value) = value {
                write_name(out, name);
                write_json_string(out, value);
            }
        };
        let integer_field = |out: &mut Vec<u8>, name: &str, value: Option<u64>| {
            if let Some(value) = value {
                write_name(out, name);
                write_decimal(out, value);
            }
        };
        text_field(&mut out, "device_path", head.device_path.as_deref());
        integer_field(&mut out, "capacity_bytes", head.capacity_bytes);
        integer_field(&mut out, "block_align", head.block_align);
        integer_field(&mut out, "header_bytes", head.header_bytes);
        integer_field(&mut out, "slot_bytes", head.slot_bytes);
        integer_field(&mut out, "meta_total_bytes", head.meta_total_bytes);
        text_field(&mut out, "meta_magic", head.meta_magic.as_deref());
        integer_field(&mut out, "meta_version", head.meta_version);
        integer_field(&mut out, "data_base_offset", head.data_base_offset);
        integer_field(&mut out, "next_slot", head.next_slot);
        out.extend_from_slice(b",\"entries\":{");
        CheckpointWriter {
            out,
            entry_count: 0,
        }
    }

    /// Appends one entry. Keys are written as given: the writer does not look for duplicates.
    /// Absent tensor metadata is written as `null`, as LMCache writes a missing value.
    pub fn push(&mut self, key: &str, fields: &EntryFields<'_>) {
        let texts = fields.tensor.texts();
        self.push_texts(key, fields.offset_bytes, fields.size_bytes, texts);
    }

    /// Appends one entry from its parts: `tensor_texts` are the JSON texts of `shape`,
    /// `dtype`, `fmt` and `cached_positions` (`None` writes `null`), as
    /// [`crate::TensorMeta::texts`] gives them.
    pub fn push_texts(
        &mut self,
        key: &str,
        offset_bytes: u64,
        size_bytes: u64,
        tensor_texts: [Option<&str>; 4],
    ) {
        let out = &mut self.out;
        if self.entry_count > 0 {
            out.push(b',');
        }
        write_json_string(out, key);
        out.extend_from_slice(b":{\"offset\":");
        write_decimal(out, offset_bytes);
        out.extend_from_slice(b",\"size\":");
        write_decimal(out, size_bytes);
        let names = ["shape", "dtype", "fmt", "cached_positions"];
        for (name, text) in names.into_iter().zip(tensor_texts) {
            write_name(out, name);
            write_raw_json(out, text.unwrap_or("null"));
        }
        out.push(b'}');
        self.entry_count += 1;
    }

    /// Entries pushed so far.
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// Bytes written so far; the finished payload is 2 bytes longer.
    pub fn len_bytes(&self) -> usize {
        self.out.len()
    }

    /// Closes the payload and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"}}");
        self.out
    }
}

/// Writes `checkpoint` as LMCache would; entries with an [`EntryProblem`](super::EntryProblem)
/// cannot be written and are left out.
pub fn encode_checkpoint(checkpoint: &Checkpoint<'_>) -> Vec<u8> {
    let mut writer = CheckpointWriter::new(&checkpoint.head);
    for entry in &checkpoint.entries {
        if let Ok(fields) = &entry.fields {
            writer.push(&entry.key, fields);
        }
    }
    writer.finish()
}

/// `,"name":` — every field but `version` follows another.
fn write_name(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    write_json_string(out, name);
    out.push(b':');
}

fn write_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Python's `json.dumps(text, ensure_ascii=True)`: bytes `0x20..=0x7e` other than `"` and `\`
/// pass through; `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f` get short escapes; every other char
/// is `\uXXXX` in lowercase hex, astral chars as a UTF-16 surrogate pair.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut plain_start = 0;
    for (index, ch) in text.char_indices() {
        if matches!(ch, ' '..='~') && ch != '"' && ch != '\\' {
            continue;
        }
        out.extend_from_slice(&text.as_bytes()[plain_start..index]);
        plain_start = index + ch.len_utf8();
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            _ => {
                for unit in ch.encode_utf16(&mut [0u16; 2]) {
                    write_unicode_escape(out, *unit);
                }
            }
        }
    }
    out.extend_from_slice(&text.as_bytes()[plain_start..]);
    out.push(b'"');
}

/// Carried-through JSON text, verbatim when ASCII (as LMCache wrote it). Otherwise its
/// non-ASCII chars, which JSON allows only inside strings, become `\uXXXX` escapes so the
/// payload stays ASCII as `ensure_ascii` makes it.
fn write_raw_json(out: &mut Vec<u8>, text: &str) {
    if text.is_ascii() {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for ch in text.chars() {
        if ch.is_ascii() {
            out.push(ch as u8);
        } else {
            for unit in ch.encode_utf16(&mut [0u16; 2]) {
                write_unicode_escape(out, *unit);
            }
        }
    }
}

fn write_unicode_escape(out: &mut Vec<u8>, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((unit >> shift) & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::format::TensorMeta;

    fn check(text: &str, expected: &str) {
        let mut out = Vec::new();
        write_json_string(&mut out, text);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{text:?}");
    }

    #[test]
    #[rustfmt::skip]
    fn escapes_like_python_ensure_ascii() {
        check("", r#""""#);
        check("plain key@0x00000001@2a", r#""plain key@0x00000001@2a""#);
        check("a\"b\\c/d", r#""a\"b\\c/d""#);
        check("\n\r\t\u{8}\u{c}", r#""\n\r\t\b\f""#);
        check("\u{0}\u{1}\u{1f}", r#""\u0000\u0001\u001f""#);
        check("\u{7f}", r#""\u007f""#);
        check("é", r#""\u00e9""#);
        check("modèle ü", r#""mod\u00e8le \u00fc""#);
        check("\u{ABCD}", r#""\uabcd""#);
        check("😀", r#""\ud83d\ude00""#);
        check("\u{10FFFF}", r#""\udbff\udfff""#);
        check("x😀y\"", r#""x\ud83d\ude00y\"""#);
    }

    #[test]
    fn raw_json_stays_ascii() {
        let raw = serde_json::value::RawValue::from_string("[\"é😀\", 1]".to_owned()).unwrap();
        let tensor = TensorMeta {
            dtype: Some(Cow::Owned(raw)),
            ..TensorMeta::default()
        };
        let mut writer = CheckpointWriter::new(&CheckpointHead::default());
        writer.push(
            "k",
            &EntryFields {
                offset_bytes: 1,
                size_bytes: 2,
                tensor,
            },
        );
        let payload = writer.finish();
        let expected = r#"{"version":1,"entries":{"k":{"offset":1,"size":2,"shape":null,"dtype":["\u00e9\ud83d\ude00", 1],"fmt":null,"cached_positions":null}}}"#;
        assert_eq!(String::from_utf8(payload).unwrap(), expected);
    }

    #[test]
    fn decimal_edges() {
        for value in [0, 9, 10, 4_194_304, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    #[test]
    fn empty_head_and_no_entries() {
        let payload = CheckpointWriter::new(&CheckpointHead::default()).finish();
        assert_eq!(payload, br#"{"version":1,"entries":{}}"#);
    }

    #[test]
    fn written_payload_parses_back() {
        let head = CheckpointHead {
            device_path: Some("/dev/é".into()),
            next_slot: Some(2),
            ..CheckpointHead::default()
        };
        let mut writer = CheckpointWriter::new(&head);
        let fields = EntryFields {
            offset_bytes: 1,
            size_bytes: 2,
            tensor: Default::default(),
        };
        writer.push("a", &fields);
        writer.push("a", &fields);
        assert_eq!(
            (writer.entry_count(), writer.len_bytes() + 2),
            (2, writer.clone().finish().len())
        );
        let payload = writer.finish();
        assert!(payload.is_ascii());
        let parsed = Checkpoint::parse(&payload).unwrap();
        assert_eq!(parsed.head, head);
        assert_eq!(parsed.entries.len(), 2);
        assert_eq!(encode_checkpoint(&parsed), payload);
    }
}

//! The recovered index, compact: every key in one byte arena, the fixed fields packed in one
//! record per entry, and each distinct tensor metadata text stored once (LMCache's entries
//! mostly share their `shape`, `dtype`, `fmt` and `cached_positions`).
//!
//! Bringup fills one [`Index`] with every entry as it arrives and, once each entry's fate is
//! known, keeps the indexed ones in place: there is no second copy.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::format::CheckpointEntry;

/// The id of an absent tensor metadata field.
const ABSENT_TEXT: u32 = u32::MAX;

/// One entry's fixed fields; its key ends at `key_end` in the arena and starts where the
/// previous entry's ends.
#[derive(Clone, Copy, Debug)]
struct Record {
    key_end: u64,
    offset_bytes: u64,
    size_bytes: u64,
    /// Ids in the text table of `shape`, `dtype`, `fmt`, `cached_positions`.
    tensor: [u32; 4],
}

/// The recovered index, in checkpoint order.
#[derive(Clone, Default)]
pub struct Index {
    keys: String,
    records: Vec<Record>,
    texts: Vec<Arc<str>>,
    text_ids: HashMap<Arc<str>, u32>,
    /// Per tensor field, the id of the text the last entry had: LMCache writes the same
    /// metadata for entry after entry, and comparing with it costs far less than hashing.
    last_text_ids: [u32; 4],
}

/// One entry of the recovered index, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry<'a> {
    /// The encoded key.
    pub key: &'a str,
    /// Device offset of the slot (its header), as in the checkpoint.
    pub offset_bytes: u64,
    /// Logical payload length, as in the checkpoint.
    pub size_bytes: u64,
    /// The tensor metadata as JSON text, exactly as in the checkpoint, in writing order:
    /// `shape`, `dtype`, `fmt`, `cached_positions` (`None`: the field was absent).
    pub tensor_texts: [Option<&'a str>; 4],
}

impl Index {
    /// Entries in the index.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The entry at `position` (checkpoint order), if there is one.
    pub fn get(&self, position: usize) -> Option<IndexEntry<'_>> {
        let record = self.records.get(position)?;
        let text = |id: u32| (id != ABSENT_TEXT).then(|| &*self.texts[id as usize]);
        Some(IndexEntry {
            key: self.key(position),
            offset_bytes: record.offset_bytes,
            size_bytes: record.size_bytes,
            tensor_texts: record.tensor.map(text),
        })
    }

    /// Every entry, in checkpoint order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = IndexEntry<'_>> + '_ {
        (0..self.len()).map(|position| self.get(position).expect("position below len"))
    }

    /// The key of the entry at `position` (which must exist).
    pub(crate) fn key(&self, position: usize) -> &str {
        let start = match position {
            0 => 0,
            _ => self.records[position - 1].key_end as usize,
        };
        &self.keys[start..self.records[position].key_end as usize]
    }

    /// Appends `entry`; a malformed entry is stored with its key only (offset and size 0).
    pub(crate) fn push(&mut self, entry: &CheckpointEntry<'_>) {
        self.keys.push_str(&entry.key);
        let (offset_bytes, size_bytes, texts) = match &entry.fields {
            Ok(fields) => (
                fields.offset_bytes,
                fields.size_bytes,
                fields.tensor.texts(),
            ),
            Err(_) => (0, 0, [None; 4]),
        };
        let mut tensor = [ABSENT_TEXT; 4];
        for (field, text) in texts.into_iter().enumerate() {
            if let Some(text) = text {
                tensor[field] = self.text_id_after(self.last_text_ids[field], text);
                self.last_text_ids[field] = tensor[field];
            }
        }
        self.records.push(Record {
            key_end: self.keys.len() as u64,
            offset_bytes,
            size_bytes,
            tensor,
        });
    }

    /// The id of `text` in the table, adding it if new; `last_id` (a previous entry's text
    /// for the same field, if any) is tried first.
    fn text_id_after(&mut self, last_id: u32, text: &str) -> u32 {
        let same = self
            .texts
            .get(last_id as usize)
            .is_some_and(|last| **last == *text);
        if same {
            return last_id;
        }
        self.text_id(text)
    }

    /// The id of `text` in the table, adding it if new.
    fn text_id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.text_ids.get(text) {
            return id;
        }
        // 2^32 distinct texts would take a payload of over 16 GiB, which bringup has already
        // held whole in memory by now.
        let id = u32::try_from(self.texts.len())
            .ok()
            .filter(|&id| id != ABSENT_TEXT)
            .expect("fewer than 2^32 - 1 distinct tensor texts");
        let text: Arc<str> = Arc::from(text);
        self.texts.push(Arc::clone(&text));
        self.text_ids.insert(text, id);
        id
    }

    /// Keeps the entries for which `keep` holds, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&IndexEntry<'_>) -> bool) {
        let kept: Vec<bool> = self.iter().map(|entry| keep(&entry)).collect();
        self.retain_positions(|position| kept[position]);
    }

    /// Keeps the entries at positions for which `keep` holds, in order, moving them down in
    /// place; then drops the lookup table the index no longer needs.
    pub(crate) fn retain_positions(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut keys = std::mem::take(&mut self.keys).into_bytes();
        let (mut kept, mut kept_key_end, mut start) = (0, 0usize, 0usize);
        for position in 0..self.records.len() {
            let record = self.records[position];
            let end = record.key_end as usize;
            if keep(position) {
                keys.copy_within(start..end, kept_key_end);
                kept_key_end += end - start;
                self.records[kept] = Record {
                    key_end: kept_key_end as u64,
                    ..record
                };
                kept += 1;
            }
            start = end;
        }
        self.records.truncate(kept);
        keys.truncate(kept_key_end);
        // Whole keys moved: the bytes are still UTF-8.
        self.keys = String::from_utf8(keys).expect("whole keys stay UTF-8");
        self.text_ids = HashMap::new();
    }
}

impl<'a> IntoIterator for &'a Index {
    type Item = IndexEntry<'a>;
    type IntoIter = Box<dyn ExactSizeIterator<Item = IndexEntry<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Equal when the entries are equal, in order.
impl PartialEq for Index {
    fn eq(&self, other: &Index) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Index {}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::format::{Checkpoint, EntryProblem};

    fn index_of(payload: &str) -> Index {
        let checkpoint = Checkpoint::parse(payload.as_bytes()).unwrap();
        let mut index = Index::default();
        for entry in &checkpoint.entries {
            index.push(entry);
        }
        index
    }

    const PAYLOAD: &str = r#"{"version":1,"entries":{
        "a":{"offset":1,"size":2,"shape":[1],"dtype":"uint8","fmt":null},
        "bé":{"offset":3,"size":4,"shape":[1],"dtype":"uint8","cached_positions":[5]},
        "c":{"offset":5,"size":6,"shape":[2],"dtype":"uint8","fmt":"BINARY"}}}"#;

    #[test]
    fn entries_come_back_as_pushed_with_shared_texts_stored_once() {
        let index = index_of(PAYLOAD);
        assert_eq!(index.len(), 3);
        let second = index.get(1).unwrap();
        assert_eq!(
            second,
            IndexEntry {
                key: "bé",
                offset_bytes: 3,
                size_bytes: 4,
                tensor_texts: [Some("[1]"), Some("\"uint8\""), None, Some("[5]")],
            }
        );
        assert_eq!(index.get(0).unwrap().tensor_texts[2], Some("null"));
        assert_eq!(index.get(3), None);
        // [1], "uint8", null, [5], [2], "BINARY": six distinct texts for eleven fields.
        assert_eq!(index.texts.len(), 6);
    }

    #[test]
    fn a_text_seen_before_the_last_entry_is_still_stored_once() {
        // shape [1], [2], [1]: the third is not the last entry's text, so the table finds it.
        let index = index_of(
            r#"{"version":1,"entries":{
            "a":{"offset":1,"size":2,"shape":[1]},
            "b":{"offset":3,"size":4,"shape":[2]},
            "c":{"offset":5,"size":6,"shape":[1]}}}"#,
        );
        assert_eq!(index.texts.len(), 2);
        let shapes: Vec<_> = index.iter().map(|entry| entry.tensor_texts[0]).collect();
        assert_eq!(shapes, [Some("[1]"), Some("[2]"), Some("[1]")]);
    }

    #[test]
    fn retain_keeps_the_chosen_entries_in_order() {
        let mut index = index_of(PAYLOAD);
        index.retain_positions(|position| position != 0);
        let keys: Vec<&str> = index.iter().map(|entry| entry.key).collect();
        assert_eq!(keys, ["bé", "c"]);
        assert_eq!(index.get(1).unwrap().offset_bytes, 5);
        assert_eq!(index, {
            let mut expected = index_of(PAYLOAD);
            expected.retain(|entry| entry.key != "a");
            expected
        });
        index.retain_positions(|_| false);
        assert!(index.is_empty());
    }

    #[test]
    fn a_malformed_entry_keeps_its_key_only() {
        let mut index = Index::default();
        index.push(&CheckpointEntry {
            key: Cow::Borrowed("k"),
            fields: Err(EntryProblem::KeyNotUnicode),
        });
        let entry = index.get(0).unwrap();
        assert_eq!(
            (entry.key, entry.offset_bytes, entry.tensor_texts),
            ("k", 0, [None; 4])
        );
    }
}

//! The checkpoint payload as parsed, and the spec's apply rules for the whole and for each entry.
//!
//! [`Checkpoint::parse`] (checkpoint_parse.rs) builds these types and
//! [`encode_checkpoint`](super::encode_checkpoint) (checkpoint_write.rs) writes them back. The
//! rules here are pure: bringup decides what to do with a rejection.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::checkpoint_error::{ApplyRejection, EntryProblem, EntryRejection};
use super::layout::{Geometry, Layout};

/// A parsed checkpoint payload (always `"version":1`; other versions are refused by parsing).
///
/// Strings borrow from the payload where it has no escapes; [`Checkpoint::into_owned`] detaches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    /// The top-level fields other than `version` and `entries`.
    pub head: CheckpointHead<'a>,
    /// Every member of `entries`, in payload order, duplicates and malformed ones included.
    pub entries: Vec<CheckpointEntry<'a>>,
}

/// The top-level fields of a checkpoint; each is `None` when absent.
///
/// LMCache writes them all. Readers compare the layout fields with the configuration
/// ([`Checkpoint::check_against`]); `capacity_bytes` and `data_base_offset` are informational.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointHead<'a> {
    /// Path of the device that wrote the checkpoint (`null` parses as `None`).
    pub device_path: Option<Cow<'a, str>>,
    /// Effective capacity of the writer.
    pub capacity_bytes: Option<u64>,
    /// The writer's `block_align`.
    pub block_align: Option<u64>,
    /// The writer's `header_bytes`.
    pub header_bytes: Option<u64>,
    /// The writer's `slot_bytes`.
    pub slot_bytes: Option<u64>,
    /// The writer's `meta_total_bytes`.
    pub meta_total_bytes: Option<u64>,
    /// The writer's `meta_magic`, as text.
    pub meta_magic: Option<Cow<'a, str>>,
    /// The writer's `meta_version`.
    pub meta_version: Option<u64>,
    /// The writer's data base offset.
    pub data_base_offset: Option<u64>,
    /// The first slot never allocated; absent means 0, as LMCache reads it.
    pub next_slot: Option<u64>,
}

impl<'a> CheckpointHead<'a> {
    /// The head LMCache writes for a device with `layout` and `geometry`: every field present.
    pub fn for_layout(
        layout: &Layout,
        geometry: &Geometry,
        device_path: &'a str,
        next_slot: u64,
    ) -> CheckpointHead<'a> {
        CheckpointHead {
            device_path: Some(Cow::Borrowed(device_path)),
            capacity_bytes: Some(geometry.capacity_bytes()),
            block_align: Some(layout.block_align),
            header_bytes: Some(layout.header_bytes),
            slot_bytes: Some(layout.slot_bytes),
            meta_total_bytes: Some(layout.meta_total_bytes),
            meta_magic: Some(Cow::Owned(
                layout.meta_magic.iter().map(|&b| char::from(b)).collect(),
            )),
            meta_version: Some(u64::from(layout.meta_version)),
            data_base_offset: Some(geometry.data_base_bytes()),
            next_slot: Some(next_slot),
        }
    }

    /// Whether every field a whole-checkpoint rule reads is present, as LMCache writes them
    /// (`device_path` empty rather than `null`): the rules' verdict on this head can then
    /// not be changed by a field that is merely absent so far.
    pub fn has_rule_fields(&self) -> bool {
        self.device_path.is_some()
            && self.block_align.is_some()
            && self.header_bytes.is_some()
            && self.slot_bytes.is_some()
            && self.meta_total_bytes.is_some()
            && self.meta_magic.is_some()
            && self.meta_version.is_some()
            && self.next_slot.is_some()
    }

    /// Applies the spec's whole-checkpoint rules, in LMCache's order: device path, the layout
    /// fields (absent = matches), then `next_slot` in `[0, max_slots]` (absent = 0).
    ///
    /// `configured_device_path` of `None` is an empty configured path: under
    /// [`DevicePathPolicy::Strict`] any non-empty recorded path then mismatches.
    ///
    /// # Errors
    ///
    /// The first [`ApplyRejection`]; the caller then ignores the whole checkpoint.
    pub fn check_against(
        &self,
        layout: &Layout,
        geometry: &Geometry,
        configured_device_path: Option<&str>,
        policy: DevicePathPolicy,
    ) -> Result<(), ApplyRejection> {
        let head = self;
        let configured = configured_device_path.unwrap_or_default();
        let recorded = head.device_path.as_deref().unwrap_or_default();
        let strict = policy != DevicePathPolicy::Ignore;
        if strict && !recorded.is_empty() && recorded != configured {
            return Err(ApplyRejection::DevicePathMismatch {
                checkpoint: recorded.to_owned(),
                configured: configured.to_owned(),
            });
        }
        let layout_fields = [
            ("block_align", head.block_align, layout.block_align),
            ("header_bytes", head.header_bytes, layout.header_bytes),
            ("slot_bytes", head.slot_bytes, layout.slot_bytes),
            (
                "meta_total_bytes",
                head.meta_total_bytes,
                layout.meta_total_bytes,
            ),
        ];
        for (field, recorded, configured) in layout_fields {
            check_layout_field(field, recorded, configured)?;
        }
        if let Some(recorded) = head.meta_magic.as_deref() {
            if recorded.as_bytes() != layout.meta_magic {
                return Err(ApplyRejection::MetaMagicMismatch {
                    checkpoint: recorded.to_owned(),
                    configured: layout.meta_magic,
                });
            }
        }
        check_layout_field(
            "meta_version",
            head.meta_version,
            u64::from(layout.meta_version),
        )?;
        let (next_slot, max_slots) = (self.next_slot.unwrap_or(0), geometry.max_slots());
        if next_slot > max_slots {
            return Err(ApplyRejection::NextSlotOutOfRange {
                next_slot,
                max_slots,
            });
        }
        Ok(())
    }

    /// The same head, owning its strings.
    pub fn into_owned(self) -> CheckpointHead<'static> {
        CheckpointHead {
            device_path: self.device_path.map(|p| Cow::Owned(p.into_owned())),
            capacity_bytes: self.capacity_bytes,
            block_align: self.block_align,
            header_bytes: self.header_bytes,
            slot_bytes: self.slot_bytes,
            meta_total_bytes: self.meta_total_bytes,
            meta_magic: self.meta_magic.map(|m| Cow::Owned(m.into_owned())),
            meta_version: self.meta_version,
            data_base_offset: self.data_base_offset,
            next_slot: self.next_slot,
        }
    }
}

/// Whether the checkpoint's `device_path` must name the configured device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DevicePathPolicy {
    /// As LMCache: a non-empty recorded path that differs as a string rejects the whole
    /// checkpoint.
    Strict,
    /// A non-empty recorded path must name the same device or file as the configured one
    /// (symlinks followed, a relative path taken against the working directory, an NVMe
    /// namespace's block and generic devices alike); one that no longer resolves is compared
    /// as a string. Bringup and `inspect` resolve the paths, then apply the rules with the
    /// recorded path as the configured one when they name the same device: to
    /// [`CheckpointHead::check_against`] itself this policy is [`DevicePathPolicy::Strict`].
    #[default]
    SameDevice,
    /// Accept any recorded path (an image copied or attached elsewhere).
    Ignore,
}

impl Checkpoint<'_> {
    /// `next_slot`, with absent read as 0 as LMCache does.
    pub fn next_slot(&self) -> u64 {
        self.head.next_slot.unwrap_or(0)
    }

    /// Applies the spec's whole-checkpoint rules to the head: see
    /// [`CheckpointHead::check_against`].
    ///
    /// # Errors
    ///
    /// The first [`ApplyRejection`]; the caller then ignores the whole checkpoint.
    pub fn check_against(
        &self,
        layout: &Layout,
        geometry: &Geometry,
        configured_device_path: Option<&str>,
        policy: DevicePathPolicy,
    ) -> Result<(), ApplyRejection> {
        self.head
            .check_against(layout, geometry, configured_device_path, policy)
    }

    /// The same checkpoint, owning all its strings and tensor metadata.
    pub fn into_owned(self) -> Checkpoint<'static> {
        Checkpoint {
            head: self.head.into_owned(),
            entries: self
                .entries
                .into_iter()
                .map(CheckpointEntry::into_owned)
                .collect(),
        }
    }
}

fn check_layout_field(
    field: &'static str,
    recorded: Option<u64>,
    configured: u64,
) -> Result<(), ApplyRejection> {
    match recorded {
        Some(checkpoint) if checkpoint != configured => Err(ApplyRejection::LayoutMismatch {
            field,
            checkpoint,
            configured,
        }),
        _ => Ok(()),
    }
}

/// One member of the checkpoint's `entries` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointEntry<'a> {
    /// The encoded key (see `ObjectKey`); borrowed when the payload has no escapes in it.
    pub key: Cow<'a, str>,
    /// The entry's fields, or why they could not be read (the entry is then rejected at apply).
    pub fields: Result<EntryFields<'a>, EntryProblem>,
}

impl CheckpointEntry<'_> {
    /// Applies the spec's per-entry rules and returns the slot the entry claims.
    ///
    /// # Errors
    ///
    /// An [`EntryRejection`]: the entry was malformed, its offset names no slot, or its size is
    /// 0 or larger than a slot's payload capacity. The caller skips the entry and keeps the rest.
    pub fn slot_index(&self, geometry: &Geometry) -> Result<u64, EntryRejection> {
        let fields = self
            .fields
            .as_ref()
            .map_err(|p| EntryRejection::Malformed(*p))?;
        let slot_index = geometry
            .slot_index_of(fields.offset_bytes)
            .map_err(EntryRejection::Offset)?;
        let payload_capacity_bytes = geometry.payload_capacity_bytes();
        match fields.size_bytes {
            0 => Err(EntryRejection::SizeZero),
            size_bytes if size_bytes > payload_capacity_bytes => {
                Err(EntryRejection::SizeTooLarge {
                    size_bytes,
                    payload_capacity_bytes,
                })
            }
            _ => Ok(slot_index),
        }
    }

    /// The same entry, owning its key and tensor metadata.
    pub fn into_owned(self) -> CheckpointEntry<'static> {
        CheckpointEntry {
            key: Cow::Owned(self.key.into_owned()),
            fields: self.fields.map(EntryFields::into_owned),
        }
    }
}

/// The fields of a well-formed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFields<'a> {
    /// Device offset of the slot (its header), from `"offset"`.
    pub offset_bytes: u64,
    /// Logical payload length, from `"size"`.
    pub size_bytes: u64,
    /// The cache's tensor metadata, carried through unchanged.
    pub tensor: TensorMeta<'a>,
}

impl EntryFields<'_> {
    /// The same fields, owning their tensor metadata.
    pub fn into_owned(self) -> EntryFields<'static> {
        EntryFields {
            offset_bytes: self.offset_bytes,
            size_bytes: self.size_bytes,
            tensor: self.tensor.into_owned(),
        }
    }
}

/// An entry's tensor metadata as JSON text, exactly as in the payload (`null` stays `null`).
///
/// `None` means the field was absent; the writer then emits `null`, as LMCache would.
#[derive(Clone, Debug, Default)]
pub struct TensorMeta<'a> {
    /// `"shape"`: normally a list of integers.
    pub shape: Option<Cow<'a, RawValue>>,
    /// `"dtype"`: normally a dtype name such as `"bfloat16"`.
    pub dtype: Option<Cow<'a, RawValue>>,
    /// `"fmt"`: normally a memory format name such as `"KV_2LTD"`.
    pub fmt: Option<Cow<'a, RawValue>>,
    /// `"cached_positions"`: normally a list of integers or `null`.
    pub cached_positions: Option<Cow<'a, RawValue>>,
}

impl TensorMeta<'_> {
    /// The four fields in writing order, each as its JSON text.
    pub fn texts(&self) -> [Option<&str>; 4] {
        [&self.shape, &self.dtype, &self.fmt, &self.cached_positions]
            .map(|field| field.as_deref().map(RawValue::get))
    }

    /// The same metadata, owning its JSON text.
    pub fn into_owned(self) -> TensorMeta<'static> {
        let own = |field: Option<Cow<'_, RawValue>>| field.map(|raw| Cow::Owned(raw.into_owned()));
        TensorMeta {
            shape: own(self.shape),
            dtype: own(self.dtype),
            fmt: own(self.fmt),
            cached_positions: own(self.cached_positions),
        }
    }
}

/// Equal when the JSON texts are equal (`RawValue` itself has no equality).
impl PartialEq for TensorMeta<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.texts() == other.texts()
    }
}

impl Eq for TensorMeta<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::format::test_fixture::{c1000_geometry as geometry, c1000_layout as layout};

    const MIB: u64 = 1 << 20;

    /// Applies the whole-checkpoint rules to `{"version":1,<fields>}` configured at `/dev/x`.
    fn check(fields: &str, policy: DevicePathPolicy, expected: Result<(), &str>) {
        let payload = format!(r#"{{"version":1{fields}}}"#);
        let checkpoint = Checkpoint::parse(payload.as_bytes()).unwrap();
        let actual = checkpoint
            .check_against(&layout(), &geometry(), Some("/dev/x"), policy)
            .map_err(|e| e.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "{payload}");
    }

    #[test]
    #[rustfmt::skip]
    fn whole_checkpoint_rules() {
        use DevicePathPolicy::{Ignore, Strict};
        check("", Strict, Ok(()));
        check(r#","device_path":"/dev/x","block_align":4096,"header_bytes":4096,"slot_bytes":65536,"meta_total_bytes":4194304,"meta_magic":"LMCIDX01","meta_version":1,"next_slot":1088"#, Strict, Ok(()));
        check(r#","device_path":"""#, Strict, Ok(()));
        check(r#","device_path":null"#, Strict, Ok(()));
        check(r#","device_path":"/srv/raw_block/c1000.img""#, Strict, Err("device_path \"/srv/raw_block/c1000.img\" in checkpoint, \"/dev/x\" configured"));
        check(r#","device_path":"/srv/raw_block/c1000.img""#, Ignore, Ok(()));
        check(r#","block_align":512"#, Strict, Err("block_align 512 in checkpoint, 4096 configured"));
        check(r#","header_bytes":8192"#, Strict, Err("header_bytes 8192 in checkpoint, 4096 configured"));
        check(r#","slot_bytes":1048576"#, Strict, Err("slot_bytes 1048576 in checkpoint, 65536 configured"));
        check(r#","meta_total_bytes":268435456"#, Strict, Err("meta_total_bytes 268435456 in checkpoint, 4194304 configured"));
        check(r#","meta_magic":"LMCIDX02""#, Strict, Err("meta_magic \"LMCIDX02\" in checkpoint, \"LMCIDX01\" configured"));
        check(r#","meta_magic":"""#, Strict, Err("meta_magic \"\" in checkpoint, \"LMCIDX01\" configured"));
        check(r#","meta_version":2"#, Strict, Err("meta_version 2 in checkpoint, 1 configured"));
        check(r#","meta_version":4294967297"#, Strict, Err("meta_version 4294967297 in checkpoint, 1 configured"));
        check(r#","next_slot":0"#, Strict, Ok(()));
        check(r#","next_slot":1089"#, Strict, Err("next_slot 1089 in checkpoint exceeds max_slots 1088"));
        check(r#","capacity_bytes":1,"data_base_offset":2"#, Strict, Ok(()));
        check(r#","slot_bytes":1,"device_path":"/y""#, Strict, Err("device_path \"/y\" in checkpoint, \"/dev/x\" configured"));
    }

    #[test]
    fn unconfigured_device_path_is_empty() {
        let payload = br#"{"version":1,"device_path":"/y"}"#;
        let checkpoint = Checkpoint::parse(payload).unwrap();
        let (l, g) = (layout(), geometry());
        let rejection = checkpoint.check_against(&l, &g, None, DevicePathPolicy::Strict);
        assert_eq!(
            rejection.unwrap_err().to_string(),
            "device_path \"/y\" in checkpoint, \"\" configured"
        );
        assert_eq!(
            checkpoint.check_against(&l, &g, None, DevicePathPolicy::Ignore),
            Ok(())
        );
        assert_eq!(checkpoint.next_slot(), 0);
    }

    /// The slot of `{"offset":..,"size":..}` under the c1000 geometry, or why it is rejected.
    fn check_entry(entry: &str, expected: Result<u64, &str>) {
        let payload = format!(r#"{{"version":1,"entries":{{"k":{entry}}}}}"#);
        let checkpoint = Checkpoint::parse(payload.as_bytes()).unwrap();
        let actual = checkpoint.entries[0]
            .slot_index(&geometry())
            .map_err(|e| e.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "{entry}");
    }

    #[test]
    #[rustfmt::skip]
    fn per_entry_rules() {
        check_entry(r#"{"offset":4194304,"size":1}"#, Ok(0));
        check_entry(r#"{"offset":4259840,"size":61440}"#, Ok(1));
        check_entry(r#"{"offset":75431936,"size":64}"#, Ok(1087));
        check_entry(r#"{"offset":75497472,"size":64}"#, Err("offset 75497472 is slot 1088, past max_slots 1088"));
        check_entry(r#"{"offset":0,"size":64}"#, Err("offset 0 is before the data region at 4194304"));
        check_entry(r#"{"offset":4198400,"size":64}"#, Err("offset 4198400 is not a slot boundary (data at 4194304, slot_bytes 65536)"));
        check_entry(r#"{"offset":4194304,"size":0}"#, Err("size is 0"));
        check_entry(r#"{"offset":4194304,"size":61441}"#, Err("size 61441 exceeds the slot payload capacity 61440"));
        check_entry(r#"{"offset":4194304,"size":18446744073709551615}"#, Err("size 18446744073709551615 exceeds the slot payload capacity 61440"));
        check_entry(r#"{"offset":4194304}"#, Err("malformed entry: size is missing"));
        check_entry(r#"[]"#, Err("malformed entry: entry is an array, not an object"));
        check_entry(r#"{"offset":-4194304,"size":1}"#, Err("malformed entry: offset is negative"));
    }

    #[test]
    fn rejections_name_their_source() {
        use std::error::Error;
        let entry = CheckpointEntry {
            key: "k".into(),
            fields: Err(EntryProblem::KeyNotUnicode),
        };
        let rejection = entry.slot_index(&geometry()).unwrap_err();
        assert_eq!(
            rejection.source().unwrap().to_string(),
            "key has a lone surrogate escape"
        );
    }

    #[test]
    fn for_layout_fills_every_field() {
        let (l, g) = (layout(), geometry());
        let head = CheckpointHead::for_layout(&l, &g, "/srv/raw_block/c1000.img", 1000);
        assert_eq!(head.capacity_bytes, Some(72 * MIB));
        assert_eq!(head.data_base_offset, Some(4 * MIB));
        assert_eq!(head.meta_magic.as_deref(), Some("LMCIDX01"));
        let checkpoint = Checkpoint {
            head,
            entries: Vec::new(),
        };
        let configured = Some("/srv/raw_block/c1000.img");
        assert_eq!(
            checkpoint.check_against(&l, &g, configured, DevicePathPolicy::Strict),
            Ok(())
        );
    }

    #[test]
    fn into_owned_keeps_everything() {
        let payload = br#"{"version":1,"device_path":"/d","meta_magic":"M","next_slot":3,"entries":{"k":{"offset":1,"size":2,"shape":[1],"dtype":"uint8","fmt":null},"bad":7}}"#;
        let borrowed = Checkpoint::parse(payload).unwrap();
        let owned: Checkpoint<'static> = borrowed.clone().into_owned();
        assert_eq!(owned, borrowed);
        let tensor = &owned.entries[0].fields.as_ref().unwrap().tensor;
        assert_eq!(
            tensor.texts(),
            [Some("[1]"), Some("\"uint8\""), Some("null"), None]
        );
        assert!(matches!(owned.entries[0].key, Cow::Owned(_)));
        assert!(matches!(tensor.shape, Some(Cow::Owned(_))));
    }
}

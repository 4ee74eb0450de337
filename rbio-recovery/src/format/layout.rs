//! The layout parameters of a raw_block device, their rules, and the geometry they give a device.
//!
//! A [`Layout`] is configuration: what the operator asked for. [`Layout::validate`] applies every
//! rule of the spec's "Configuration" and "Geometry" sections against the device size and returns
//! a [`Geometry`], the only way to get one, so code holding a `Geometry` knows the rules held.

use std::fmt;

use super::checkpoint_header::CHECKPOINT_HEADER_BYTES;
use super::identity::KeyNamespace;
use super::slot_header::SLOT_HEADER_INFO_BYTES;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Number of checkpoint mirrors at the start of the metadata region.
pub const MIRROR_COUNT: usize = 2;

/// Layout parameters of a raw_block device (spec "Configuration"), as configured.
///
/// `Default` gives LMCache 0.5.6's defaults. Field names are the spec's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// I/O alignment in bytes: a power of two.
    pub block_align: u64,
    /// Bytes reserved for the header at the start of every slot.
    pub header_bytes: u64,
    /// Bytes per slot, header included.
    pub slot_bytes: u64,
    /// Bytes of the metadata region at the start of the device (holds both mirrors).
    pub meta_total_bytes: u64,
    /// Magic at the start of a checkpoint mirror header: 8 ASCII bytes.
    pub meta_magic: [u8; 8],
    /// Version in a checkpoint mirror header: at least 1.
    pub meta_version: u32,
    /// Requested capacity in bytes; 0 means the whole device.
    pub capacity_bytes: u64,
    /// How identities are derived from keys.
    pub namespace: KeyNamespace,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            block_align: 4 * KIB,
            header_bytes: 4 * KIB,
            slot_bytes: MIB,
            meta_total_bytes: 256 * MIB,
            meta_magic: *b"LMCIDX01",
            meta_version: 1,
            capacity_bytes: 0,
            namespace: KeyNamespace::Object,
        }
    }
}

impl Layout {
    /// Applies every layout rule for a device of `device_size_bytes` and returns its geometry.
    ///
    /// # Errors
    ///
    /// A [`FormatError`] naming the first rule that fails, in the order LMCache checks them.
    pub fn validate(&self, device_size_bytes: u64) -> Result<Geometry, FormatError> {
        self.check_parameters()?;
        let mirror_bytes =
            (self.meta_total_bytes / MIRROR_COUNT as u64) / self.block_align * self.block_align;
        if mirror_bytes <= self.block_align {
            return Err(FormatError::MirrorTooSmall {
                mirror_bytes,
                meta_total_bytes: self.meta_total_bytes,
                block_align: self.block_align,
            });
        }
        let capacity_bytes = match self.capacity_bytes {
            0 => device_size_bytes,
            requested => requested.min(device_size_bytes),
        };
        if self.meta_total_bytes >= capacity_bytes {
            return Err(FormatError::MetadataExceedsCapacity {
                meta_total_bytes: self.meta_total_bytes,
                capacity_bytes,
                device_size_bytes,
            });
        }
        let max_slots = (capacity_bytes - self.meta_total_bytes) / self.slot_bytes;
        if max_slots == 0 {
            return Err(FormatError::NoSlots {
                capacity_bytes,
                meta_total_bytes: self.meta_total_bytes,
                slot_bytes: self.slot_bytes,
            });
        }
        Ok(Geometry {
            block_align: self.block_align,
            header_bytes: self.header_bytes,
            slot_bytes: self.slot_bytes,
            meta_total_bytes: self.meta_total_bytes,
            mirror_bytes,
            capacity_bytes,
            max_slots,
        })
    }

    /// The rules on the parameters alone, before the device size matters.
    fn check_parameters(&self) -> Result<(), FormatError> {
        let (block_align, header_bytes) = (self.block_align, self.header_bytes);
        let (slot_bytes, meta_total_bytes) = (self.slot_bytes, self.meta_total_bytes);
        if !block_align.is_power_of_two() {
            return Err(FormatError::BlockAlignNotPowerOfTwo { block_align });
        }
        if block_align < CHECKPOINT_HEADER_BYTES as u64 {
            return Err(FormatError::BlockAlignTooSmall { block_align });
        }
        if header_bytes < SLOT_HEADER_INFO_BYTES as u64 {
            return Err(FormatError::HeaderBytesTooSmall { header_bytes });
        }
        if header_bytes % block_align != 0 {
            return Err(FormatError::HeaderBytesUnaligned {
                header_bytes,
                block_align,
            });
        }
        if slot_bytes <= header_bytes {
            return Err(FormatError::SlotBytesTooSmall {
                slot_bytes,
                header_bytes,
            });
        }
        if slot_bytes % block_align != 0 {
            return Err(FormatError::SlotBytesUnaligned {
                slot_bytes,
                block_align,
            });
        }
        if meta_total_bytes <= block_align {
            return Err(FormatError::MetaTotalBytesTooSmall {
                meta_total_bytes,
                block_align,
            });
        }
        if meta_total_bytes % block_align != 0 {
            return Err(FormatError::MetaTotalBytesUnaligned {
                meta_total_bytes,
                block_align,
            });
        }
        if !self.meta_magic.is_ascii() {
            return Err(FormatError::MetaMagicNotAscii {
                meta_magic: self.meta_magic,
            });
        }
        if self.meta_version == 0 {
            return Err(FormatError::MetaVersionZero);
        }
        Ok(())
    }
}

/// Where things are on a device whose [`Layout`] passed [`Layout::validate`].
///
/// Fields are private so that a `Geometry` always satisfies the layout rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    block_align: u64,
    header_bytes: u64,
    slot_bytes: u64,
    meta_total_bytes: u64,
    mirror_bytes: u64,
    capacity_bytes: u64,
    max_slots: u64,
}

impl Geometry {
    /// I/O alignment in bytes (a power of two).
    pub fn block_align(&self) -> u64 {
        self.block_align
    }

    /// Bytes reserved for each slot's header.
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// Bytes per slot, header included.
    pub fn slot_bytes(&self) -> u64 {
        self.slot_bytes
    }

    /// Bytes of one checkpoint mirror: half the metadata region, rounded down to `block_align`.
    pub fn mirror_bytes(&self) -> u64 {
        self.mirror_bytes
    }

    /// Device offset of slot 0: `meta_total_bytes` (not `2 * mirror_bytes`).
    pub fn data_base_bytes(&self) -> u64 {
        self.meta_total_bytes
    }

    /// Effective capacity: the requested capacity capped at the device size (0 = device size).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Number of slots that fit between `data_base_bytes` and `capacity_bytes` (at least 1).
    pub fn max_slots(&self) -> u64 {
        self.max_slots
    }

    /// Largest payload one slot holds: `slot_bytes - header_bytes`.
    pub fn payload_capacity_bytes(&self) -> u64 {
        self.slot_bytes - self.header_bytes
    }

    /// Device offset of slot `slot_index` (where its header starts).
    ///
    /// # Panics
    ///
    /// If `slot_index >= max_slots`: slot indices come from rbio, not from the device.
    pub fn slot_offset_bytes(&self, slot_index: u64) -> u64 {
        assert!(
            slot_index < self.max_slots,
            "slot {slot_index} out of range: max_slots is {}",
            self.max_slots
        );
        self.data_base_bytes() + slot_index * self.slot_bytes
    }

    /// Device offset of the payload of slot `slot_index`, just past its header.
    ///
    /// # Panics
    ///
    /// If `slot_index >= max_slots`, as [`Geometry::slot_offset_bytes`].
    pub fn slot_payload_offset_bytes(&self, slot_index: u64) -> u64 {
        self.slot_offset_bytes(slot_index) + self.header_bytes
    }

    /// The slot that starts at device offset `offset_bytes` (which may come from a checkpoint).
    ///
    /// # Errors
    ///
    /// A [`SlotOffsetError`] when the offset is before the data region, is not at a slot
    /// boundary, or names a slot at or past `max_slots`.
    pub fn slot_index_of(&self, offset_bytes: u64) -> Result<u64, SlotOffsetError> {
        let data_base_bytes = self.data_base_bytes();
        let Some(relative_bytes) = offset_bytes.checked_sub(data_base_bytes) else {
            return Err(SlotOffsetError::BeforeDataBase {
                offset_bytes,
                data_base_bytes,
            });
        };
        if relative_bytes % self.slot_bytes != 0 {
            return Err(SlotOffsetError::Unaligned {
                offset_bytes,
                data_base_bytes,
                slot_bytes: self.slot_bytes,
            });
        }
        let slot_index = relative_bytes / self.slot_bytes;
        if slot_index >= self.max_slots {
            return Err(SlotOffsetError::SlotOutOfRange {
                offset_bytes,
                slot_index,
                max_slots: self.max_slots,
            });
        }
        Ok(slot_index)
    }

    /// Device offset of checkpoint mirror `mirror_index` (where its header block starts).
    ///
    /// # Panics
    ///
    /// If `mirror_index >= MIRROR_COUNT`.
    pub fn mirror_offset_bytes(&self, mirror_index: usize) -> u64 {
        assert!(
            mirror_index < MIRROR_COUNT,
            "mirror {mirror_index} out of range: there are {MIRROR_COUNT}"
        );
        mirror_index as u64 * self.mirror_bytes
    }

    /// Device offset of the payload of mirror `mirror_index`, one block past its header.
    ///
    /// # Panics
    ///
    /// If `mirror_index >= MIRROR_COUNT`.
    pub fn mirror_payload_offset_bytes(&self, mirror_index: usize) -> u64 {
        self.mirror_offset_bytes(mirror_index) + self.block_align
    }

    /// Largest checkpoint payload a mirror holds: `mirror_bytes - block_align`.
    pub fn mirror_payload_capacity_bytes(&self) -> u64 {
        self.mirror_bytes - self.block_align
    }

    /// `len_bytes` rounded up to a multiple of `block_align`, or `u64::MAX` where that overflows.
    pub fn round_up_bytes(&self, len_bytes: u64) -> u64 {
        len_bytes
            .div_ceil(self.block_align)
            .saturating_mul(self.block_align)
    }
}

/// A layout parameter that breaks a spec rule, or a device too small for the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// `block_align` is 0 or not a power of two.
    BlockAlignNotPowerOfTwo {
        /// The configured value.
        block_align: u64,
    },
    /// `block_align` is below the 32 bytes of a checkpoint mirror header, which must fit in
    /// the mirror's first block (the payload starts at the next one).
    BlockAlignTooSmall {
        /// The configured value.
        block_align: u64,
    },
    /// `header_bytes` is below the 24 bytes a slot header carries.
    HeaderBytesTooSmall {
        /// The configured value.
        header_bytes: u64,
    },
    /// `header_bytes` is not a multiple of `block_align`.
    HeaderBytesUnaligned {
        /// The configured value.
        header_bytes: u64,
        /// The configured alignment.
        block_align: u64,
    },
    /// `slot_bytes` leaves no room for a payload after the header.
    SlotBytesTooSmall {
        /// The configured value.
        slot_bytes: u64,
        /// The configured header size.
        header_bytes: u64,
    },
    /// `slot_bytes` is not a multiple of `block_align`.
    SlotBytesUnaligned {
        /// The configured value.
        slot_bytes: u64,
        /// The configured alignment.
        block_align: u64,
    },
    /// `meta_total_bytes` is not larger than `block_align`.
    MetaTotalBytesTooSmall {
        /// The configured value.
        meta_total_bytes: u64,
        /// The configured alignment.
        block_align: u64,
    },
    /// `meta_total_bytes` is not a multiple of `block_align`.
    MetaTotalBytesUnaligned {
        /// The configured value.
        meta_total_bytes: u64,
        /// The configured alignment.
        block_align: u64,
    },
    /// `meta_magic` has a byte outside ASCII.
    MetaMagicNotAscii {
        /// The configured value.
        meta_magic: [u8; 8],
    },
    /// `meta_version` is 0.
    MetaVersionZero,
    /// A mirror (half the metadata region, rounded down) is not larger than one block.
    MirrorTooSmall {
        /// The computed mirror size.
        mirror_bytes: u64,
        /// The configured metadata region size.
        meta_total_bytes: u64,
        /// The configured alignment.
        block_align: u64,
    },
    /// The metadata region does not fit below the effective capacity.
    MetadataExceedsCapacity {
        /// The configured metadata region size.
        meta_total_bytes: u64,
        /// The effective capacity.
        capacity_bytes: u64,
        /// The device size.
        device_size_bytes: u64,
    },
    /// Not one slot fits between the metadata region and the capacity.
    NoSlots {
        /// The effective capacity.
        capacity_bytes: u64,
        /// The configured metadata region size.
        meta_total_bytes: u64,
        /// The configured slot size.
        slot_bytes: u64,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FormatError::*;
        match *self {
            BlockAlignNotPowerOfTwo { block_align } => {
                write!(f, "block_align {block_align} is not a power of two")
            }
            BlockAlignTooSmall { block_align } => write!(
                f,
                "block_align {block_align} is less than the {CHECKPOINT_HEADER_BYTES} bytes of a checkpoint header"
            ),
            HeaderBytesTooSmall { header_bytes } => write!(
                f,
                "header_bytes {header_bytes} is less than the {SLOT_HEADER_INFO_BYTES} bytes of a slot header"
            ),
            HeaderBytesUnaligned { header_bytes, block_align } => write!(
                f,
                "header_bytes {header_bytes} is not a multiple of block_align {block_align}"
            ),
            SlotBytesTooSmall { slot_bytes, header_bytes } => write!(
                f,
                "slot_bytes {slot_bytes} leaves no payload room after header_bytes {header_bytes}"
            ),
            SlotBytesUnaligned { slot_bytes, block_align } => write!(
                f,
                "slot_bytes {slot_bytes} is not a multiple of block_align {block_align}"
            ),
            MetaTotalBytesTooSmall { meta_total_bytes, block_align } => write!(
                f,
                "meta_total_bytes {meta_total_bytes} is not larger than block_align {block_align}"
            ),
            MetaTotalBytesUnaligned { meta_total_bytes, block_align } => write!(
                f,
                "meta_total_bytes {meta_total_bytes} is not a multiple of block_align {block_align}"
            ),
            MetaMagicNotAscii { meta_magic } => {
                write!(f, "meta_magic \"{}\" is not ASCII", meta_magic.escape_ascii())
            }
            MetaVersionZero => write!(f, "meta_version is 0, must be at least 1"),
            MirrorTooSmall { mirror_bytes, meta_total_bytes, block_align } => write!(
                f,
                "mirror of {mirror_bytes} bytes (half of meta_total_bytes {meta_total_bytes}, \
                 rounded down to block_align {block_align}) has no room after its header block"
            ),
            MetadataExceedsCapacity { meta_total_bytes, capacity_bytes, device_size_bytes } => {
                write!(
                    f,
                    "meta_total_bytes {meta_total_bytes} does not fit below capacity \
                     {capacity_bytes} (device {device_size_bytes} bytes)"
                )
            }
            NoSlots { capacity_bytes, meta_total_bytes, slot_bytes } => write!(
                f,
                "no slot fits: capacity {capacity_bytes} less meta_total_bytes \
                 {meta_total_bytes} is less than slot_bytes {slot_bytes}"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

/// A device offset that does not name a slot of the [`Geometry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotOffsetError {
    /// The offset lies in the metadata region.
    BeforeDataBase {
        /// The offset asked about.
        offset_bytes: u64,
        /// Where slot 0 starts.
        data_base_bytes: u64,
    },
    /// The offset is not at a slot boundary.
    Unaligned {
        /// The offset asked about.
        offset_bytes: u64,
        /// Where slot 0 starts.
        data_base_bytes: u64,
        /// Bytes per slot.
        slot_bytes: u64,
    },
    /// The offset names a slot at or past `max_slots`.
    SlotOutOfRange {
        /// The offset asked about.
        offset_bytes: u64,
        /// The slot it names.
        slot_index: u64,
        /// Number of slots on the device.
        max_slots: u64,
    },
}

impl fmt::Display for SlotOffsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SlotOffsetError::BeforeDataBase {
                offset_bytes,
                data_base_bytes,
            } => write!(
                f,
                "offset {offset_bytes} is before the data region at {data_base_bytes}"
            ),
            SlotOffsetError::Unaligned {
                offset_bytes,
                data_base_bytes,
                slot_bytes,
            } => write!(
                f,
                "offset {offset_bytes} is not a slot boundary (data at {data_base_bytes}, \
                 slot_bytes {slot_bytes})"
            ),
            SlotOffsetError::SlotOutOfRange {
                offset_bytes,
                slot_index,
                max_slots,
            } => write!(
                f,
                "offset {offset_bytes} is slot {slot_index}, past max_slots {max_slots}"
            ),
        }
    }
}

impl std::error::Error for SlotOffsetError {}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::format::test_fixture::c1000_layout as c1000;

    fn check_err(layout: Layout, device_size_bytes: u64, expected: &str) {
        let err = layout.validate(device_size_bytes).unwrap_err();
        assert_eq!(err.to_string(), expected, "{err:?}");
    }

    #[test]
    fn default_is_lmcache() {
        let layout = Layout::default();
        assert_eq!(
            (layout.block_align, layout.header_bytes, layout.slot_bytes),
            (4096, 4096, MIB)
        );
        assert_eq!(
            (layout.meta_total_bytes, &layout.meta_magic),
            (256 * MIB, b"LMCIDX01")
        );
        assert_eq!((layout.meta_version, layout.capacity_bytes), (1, 0));
        assert_eq!(layout.namespace, KeyNamespace::Object);
    }

    #[test]
    fn fixture_geometry_matches_manifest() {
        let geometry = c1000().validate(72 * MIB).unwrap();
        assert_eq!(geometry.mirror_bytes(), 2 * MIB);
        assert_eq!(geometry.data_base_bytes(), 4 * MIB);
        assert_eq!(geometry.max_slots(), 1088);
        assert_eq!(geometry.slot_offset_bytes(1), 4_259_840);
        assert_eq!(geometry.slot_payload_offset_bytes(0), 4 * MIB + 4096);
        assert_eq!(geometry.mirror_offset_bytes(1), 2 * MIB);
        assert_eq!(geometry.mirror_payload_offset_bytes(0), 4096);
        assert_eq!(geometry.mirror_payload_capacity_bytes(), 2 * MIB - 4096);
        assert_eq!(geometry.payload_capacity_bytes(), 60 * KIB);
        assert_eq!(geometry.round_up_bytes(1), 4096);
        assert_eq!(geometry.round_up_bytes(8192), 8192);
        assert_eq!(geometry.round_up_bytes(u64::MAX - 8192), u64::MAX - 8191);
        assert_eq!(geometry.round_up_bytes(u64::MAX), u64::MAX);
    }

    #[test]
    fn capacity_is_min_of_requested_and_device() {
        let whole = c1000().validate(72 * MIB).unwrap();
        assert_eq!(whole.capacity_bytes(), 72 * MIB);
        let layout = Layout {
            capacity_bytes: 8 * MIB,
            ..c1000()
        };
        assert_eq!(layout.validate(72 * MIB).unwrap().capacity_bytes(), 8 * MIB);
        let layout = Layout {
            capacity_bytes: 100 * MIB,
            ..c1000()
        };
        assert_eq!(
            layout.validate(72 * MIB).unwrap().capacity_bytes(),
            72 * MIB
        );
    }

    /// `c1000()` with one change.
    fn with(change: impl FnOnce(&mut Layout)) -> Layout {
        let mut layout = c1000();
        change(&mut layout);
        layout
    }

    #[test]
    #[rustfmt::skip]
    fn every_rule_has_its_error() {
        let dev = 72 * MIB;
        check_err(with(|l| l.block_align = 0), dev, "block_align 0 is not a power of two");
        check_err(with(|l| l.block_align = 3000), dev, "block_align 3000 is not a power of two");
        check_err(with(|l| l.block_align = 16), dev, "block_align 16 is less than the 32 bytes of a checkpoint header");
        check_err(with(|l| (l.header_bytes, l.block_align) = (16, 32)), dev, "header_bytes 16 is less than the 24 bytes of a slot header");
        check_err(with(|l| l.header_bytes = 6144), dev, "header_bytes 6144 is not a multiple of block_align 4096");
        check_err(with(|l| l.slot_bytes = 4096), dev, "slot_bytes 4096 leaves no payload room after header_bytes 4096");
        check_err(with(|l| l.slot_bytes = 10000), dev, "slot_bytes 10000 is not a multiple of block_align 4096");
        check_err(with(|l| l.meta_total_bytes = 4096), dev, "meta_total_bytes 4096 is not larger than block_align 4096");
        check_err(with(|l| l.meta_total_bytes = 10000), dev, "meta_total_bytes 10000 is not a multiple of block_align 4096");
        check_err(with(|l| l.meta_magic = *b"LMC\xffDX01"), dev, "meta_magic \"LMC\\xffDX01\" is not ASCII");
        check_err(with(|l| l.meta_version = 0), dev, "meta_version is 0, must be at least 1");
        check_err(with(|l| l.meta_total_bytes = 8192), dev, "mirror of 4096 bytes (half of meta_total_bytes 8192, rounded down to block_align 4096) has no room after its header block");
        check_err(c1000(), 4 * MIB, "meta_total_bytes 4194304 does not fit below capacity 4194304 (device 4194304 bytes)");
        check_err(with(|l| l.capacity_bytes = 4096), dev, "meta_total_bytes 4194304 does not fit below capacity 4096 (device 75497472 bytes)");
        check_err(c1000(), 4 * MIB + 65535, "no slot fits: capacity 4259839 less meta_total_bytes 4194304 is less than slot_bytes 65536");
        check_err(c1000(), 0, "meta_total_bytes 4194304 does not fit below capacity 0 (device 0 bytes)");
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let layout = Layout {
            header_bytes: u64::MAX,
            ..c1000()
        };
        assert!(layout.validate(u64::MAX).is_err());
        let layout = Layout {
            block_align: 1 << 63,
            ..c1000()
        };
        assert!(layout.validate(u64::MAX).is_err());
        let geometry = c1000().validate(u64::MAX).unwrap();
        assert_eq!(geometry.max_slots(), (u64::MAX - 4 * MIB) / (64 * KIB));
        let last = geometry.max_slots() - 1;
        assert_eq!(
            geometry.slot_index_of(geometry.slot_offset_bytes(last)),
            Ok(last)
        );
    }

    #[test]
    #[rustfmt::skip]
    fn slot_index_of_checks_each_rule() {
        let g = c1000().validate(72 * MIB).unwrap();
        let check = |offset_bytes: u64, expected: Result<u64, &str>| {
            let actual = g.slot_index_of(offset_bytes).map_err(|e| e.to_string());
            assert_eq!(actual, expected.map_err(str::to_owned), "offset {offset_bytes}");
        };
        check(4 * MIB, Ok(0));
        check(4_259_840, Ok(1));
        check(4 * MIB + 1087 * 65536, Ok(1087));
        check(0, Err("offset 0 is before the data region at 4194304"));
        check(4 * MIB - 1, Err("offset 4194303 is before the data region at 4194304"));
        check(4 * MIB + 4096, Err("offset 4198400 is not a slot boundary (data at 4194304, slot_bytes 65536)"));
        check(4 * MIB + 1088 * 65536, Err("offset 75497472 is slot 1088, past max_slots 1088"));
        check(u64::MAX, Err("offset 18446744073709551615 is not a slot boundary (data at 4194304, slot_bytes 65536)"));
    }

    #[test]
    fn slot_offset_round_trips() {
        let g = c1000().validate(72 * MIB).unwrap();
        for slot_index in 0..g.max_slots() {
            assert_eq!(
                g.slot_index_of(g.slot_offset_bytes(slot_index)),
                Ok(slot_index)
            );
        }
    }
}

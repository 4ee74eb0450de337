//! Reading the layout a device was written with from the device itself: mirror 0 starts at
//! offset 0 whatever the layout, and every checkpoint LMCache writes records `block_align`,
//! `header_bytes`, `slot_bytes`, `meta_total_bytes` and its capacity. Failing mirror 0, mirror
//! 1 is looked for where LMCache's default metadata size puts it.

use std::fmt;
use std::sync::Arc;

use rbio_core::{BufferPool, Device, Engine, OpError, PAGE_BYTES};

use super::read::{read_range, RangeError};
use super::BringupError;
use crate::format::{
    Checkpoint, CheckpointError, CheckpointHeader, CheckpointHeaderError, CheckpointRejection,
    FormatError, Layout, CHECKPOINT_HEADER_BYTES,
};

/// A layout read from a checkpoint on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLayout {
    /// The layout: the geometry fields and capacity as the checkpoint recorded them, the
    /// magic, version and key namespace as given.
    pub layout: Layout,
    /// The mirror whose checkpoint recorded it.
    pub mirror_index: usize,
}

/// Why one mirror did not give the layout.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum LayoutMiss {
    /// The device did not deliver the mirror's header or payload.
    Unreadable(OpError),
    /// The header block could not be decoded.
    Undecodable(CheckpointHeaderError),
    /// The header breaks a rule (blank mirrors land here as bad magic).
    Rejected(CheckpointRejection),
    /// No header block size (`block_align`) puts a payload with the header's CRC after it.
    NoPayload,
    /// The payload is not a checkpoint.
    Payload(Arc<CheckpointError>),
    /// The checkpoint does not record this layout field.
    FieldMissing(&'static str),
    /// The recorded layout breaks a rule or does not fit the device.
    Layout(FormatError),
    /// The device ends before the mirror's header or payload.
    PastEnd {
        /// The device's size.
        size_bytes: u64,
    },
    /// The recorded layout puts this mirror elsewhere.
    MirrorElsewhere {
        /// Where the recorded layout puts it.
        offset_bytes: u64,
    },
}

impl fmt::Display for LayoutMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutMiss::Unreadable(error) => write!(f, "unreadable: {error}"),
            LayoutMiss::Undecodable(error) => write!(f, "undecodable: {error}"),
            LayoutMiss::Rejected(rejection) => write!(f, "{rejection}"),
            LayoutMiss::NoPayload => write!(f, "no payload matches the header's crc"),
            LayoutMiss::Payload(error) => write!(f, "payload unreadable: {error}"),
            LayoutMiss::FieldMissing(field) => write!(f, "checkpoint does not record {field}"),
            LayoutMiss::Layout(error) => write!(f, "recorded layout: {error}"),
            LayoutMiss::PastEnd { size_bytes } => {
                write!(f, "past the end of the device ({size_bytes} bytes)")
            }
            LayoutMiss::MirrorElsewhere { offset_bytes } => {
                write!(f, "its recorded layout puts this mirror at {offset_bytes}")
            }
        }
    }
}

/// One mirror tried, and why it did not give the layout.
#[derive(Clone, Debug)]
pub struct LayoutAttempt {
    /// Mirror 0 or 1.
    pub mirror_index: usize,
    /// Where its header was looked for.
    pub offset_bytes: u64,
    /// Why it gave no layout.
    pub miss: LayoutMiss,
}

/// The smallest header block tried: a sector.
const BLOCK_ALIGN_MIN: u64 = 512;
/// The largest header block tried.
const BLOCK_ALIGN_MAX: u64 = 1 << 20;
/// Bytes per read.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Reads in flight at once.
const READ_WINDOW_OPS: usize = 8;

/// Reads the layout of `device` through `engine` (which must not need its buffers
/// registered): mirror 0's checkpoint at offset 0, else mirror 1's where LMCache's default
/// metadata size puts it. `base` gives the magic, version and key namespace to expect.
///
/// Costs a read of the chosen payload (checked against its CRC) besides the one bringup then
/// makes.
///
/// # Errors
/// [`BringupError::LayoutNotRecorded`] when neither mirror gives a layout that fits the
/// device, [`BringupError::Configuration`] when a read is refused for how it was made,
/// [`BringupError::Engine`] and [`BringupError::Pool`] as for bringup.
pub fn read_layout(
    device: &Device,
    engine: &mut dyn Engine,
    base: &Layout,
) -> Result<FoundLayout, BringupError> {
    let pool = BufferPool::new(READ_CHUNK_BYTES, READ_WINDOW_OPS, PAGE_BYTES)
        .map_err(BringupError::Pool)?;
    let reader = Reader {
        device,
        engine,
        pool: &pool,
    };
    reader.find(base)
}

struct Reader<'r> {
    device: &'r Device,
    engine: &'r mut dyn Engine,
    pool: &'r BufferPool,
}

impl Reader<'_> {
    fn find(mut self, base: &Layout) -> Result<FoundLayout, BringupError> {
        let default_mirror_bytes = Layout::default().meta_total_bytes / 2;
        let mut attempts = Vec::new();
        for (mirror_index, offset_bytes) in [(0, 0), (1, default_mirror_bytes)] {
            match self.mirror(base, mirror_index, offset_bytes)? {
                Ok(layout) => {
                    return Ok(FoundLayout {
                        layout,
                        mirror_index,
                    })
                }
                Err(miss) => attempts.push(LayoutAttempt {
                    mirror_index,
                    offset_bytes,
                    miss,
                }),
            }
        }
        Err(BringupError::LayoutNotRecorded { attempts })
    }

    /// The layout mirror `mirror_index` at `offset_bytes` records, or why it gives none.
    fn mirror(
        &mut self,
        base: &Layout,
        mirror_index: usize,
        offset_bytes: u64,
    ) -> Result<Result<Layout, LayoutMiss>, BringupError> {
        let block = match self.read(offset_bytes, CHECKPOINT_HEADER_BYTES as u64)? {
            Ok(block) => block,
            Err(miss) => return Ok(Err(miss)),
        };
        let header = match CheckpointHeader::decode(&block) {
            Ok(header) => header,
            Err(error) => return Ok(Err(LayoutMiss::Undecodable(error))),
        };
        if let Err(rejection) = check_header(&header, base) {
            return Ok(Err(LayoutMiss::Rejected(rejection)));
        }
        let Some(payload) = self.payload(&header, offset_bytes)? else {
            return Ok(Err(LayoutMiss::NoPayload));
        };
        let head = match Checkpoint::parse_head(&payload) {
            Ok(head) => head,
            Err(error) => return Ok(Err(LayoutMiss::Payload(Arc::new(error)))),
        };
        let field = |name, value: Option<u64>| value.ok_or(LayoutMiss::FieldMissing(name));
        let recorded = (|| {
            Ok::<_, LayoutMiss>(Layout {
                block_align: field("block_align", head.block_align)?,
                header_bytes: field("header_bytes", head.header_bytes)?,
                slot_bytes: field("slot_bytes", head.slot_bytes)?,
                meta_total_bytes: field("meta_total_bytes", head.meta_total_bytes)?,
                capacity_bytes: head.capacity_bytes.unwrap_or(0),
                ..base.clone()
            })
        })();
        let layout = match recorded {
            Ok(layout) => layout,
            Err(miss) => return Ok(Err(miss)),
        };
        let geometry = match layout.validate(self.device.size_bytes()) {
            Ok(geometry) => geometry,
            Err(error) => return Ok(Err(LayoutMiss::Layout(error))),
        };
        let recorded_offset_bytes = geometry.mirror_offset_bytes(mirror_index);
        if recorded_offset_bytes != offset_bytes {
            let offset_bytes = recorded_offset_bytes;
            return Ok(Err(LayoutMiss::MirrorElsewhere { offset_bytes }));
        }
        Ok(Ok(layout))
    }

    /// The payload after the header block, trying each power-of-two block size from the
    /// device's alignment up: the first that starts with `{` and matches the header's CRC.
    fn payload(
        &mut self,
        header: &CheckpointHeader,
        offset_bytes: u64,
    ) -> Result<Option<Vec<u8>>, BringupError> {
        let smallest = BLOCK_ALIGN_MIN.max(self.device.align_bytes() as u64);
        let candidates = std::iter::successors(Some(smallest), |&bytes| Some(bytes * 2))
            .take_while(|&bytes| bytes <= BLOCK_ALIGN_MAX);
        for block_align in candidates {
            let payload_offset_bytes = offset_bytes + block_align;
            let starts_like_json = match self.read(payload_offset_bytes, 1)? {
                Ok(start) => start.first() == Some(&b'{'),
                Err(_) => false,
            };
            if !starts_like_json {
                continue;
            }
            let Ok(payload) = self.read(payload_offset_bytes, header.payload_len_bytes)? else {
                continue;
            };
            if let Ok(payload) = header.check_payload(&payload) {
                return Ok(Some(payload.to_vec()));
            }
        }
        Ok(None)
    }

    /// Reads at least `len_bytes` at `offset_bytes`, rounded up to the device's alignment.
    fn read(
        &mut self,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Result<Vec<u8>, LayoutMiss>, BringupError> {
        let unit_bytes = (self.device.align_bytes() as u64).max(PAGE_BYTES as u64);
        let read_bytes = len_bytes.next_multiple_of(unit_bytes);
        let end_bytes = offset_bytes.saturating_add(read_bytes);
        let size_bytes = self.device.size_bytes();
        if size_bytes != 0 && end_bytes > size_bytes {
            return Ok(Err(LayoutMiss::PastEnd { size_bytes }));
        }
        match read_range(self.engine, self.pool, offset_bytes, read_bytes) {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(RangeError::Stream(error)) => Err(BringupError::Engine(error)),
            Err(RangeError::Op(error)) if error.error.class().is_configuration() => {
                Err(BringupError::Configuration(error))
            }
            Err(RangeError::Op(error)) => Ok(Err(LayoutMiss::Unreadable(error))),
        }
    }
}

/// The header rules that do not need the layout: magic, version, a payload.
fn check_header(header: &CheckpointHeader, base: &Layout) -> Result<(), CheckpointRejection> {
    if header.magic != base.meta_magic {
        return Err(CheckpointRejection::BadMagic {
            found: header.magic,
            expected: base.meta_magic,
        });
    }
    if header.version != base.meta_version {
        return Err(CheckpointRejection::BadVersion {
            found: header.version,
            expected: base.meta_version,
        });
    }
    if header.payload_len_bytes == 0 {
        return Err(CheckpointRejection::EmptyPayload);
    }
    Ok(())
}

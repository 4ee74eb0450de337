//! The device writer: lays out slots and checkpoints in the raw_block format over any engine.
//!
//! Every write goes through [`rbio_core::Stream`] with one bounded [`BufferPool`], so memory is
//! window × buffer size whatever the number of slots. A slot header is its own `header_bytes`
//! write (as LMCache does it); a payload is written in chunks after it, zero-padded to
//! `block_align`. A checkpoint is written payload first and header block last.

mod plan;

use std::cell::RefCell;
use std::fmt;

use rbio_core::{
    BufferPool, Device, Engine, OpError, OpInfo, OpSpec, PoolError, Stream, StreamError,
};

use self::plan::{Planner, Unit};
use crate::format::{
    encode_mirror, CheckpointRejection, FormatError, Geometry, Layout, SlotHeader,
};

/// Default for [`WriterOptions::window_ops_max`].
pub const WRITE_WINDOW_OPS_DEFAULT: usize = 32;
/// Default for [`WriterOptions::chunk_bytes_max`].
pub const WRITE_CHUNK_BYTES_DEFAULT: usize = 256 << 10;

/// How a [`DeviceWriter`] sizes its I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Writes in flight at once; also the number of pool buffers.
    pub window_ops_max: usize,
    /// Largest single write of payload bytes; raised to `header_bytes` when smaller.
    pub chunk_bytes_max: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            window_ops_max: WRITE_WINDOW_OPS_DEFAULT,
            chunk_bytes_max: WRITE_CHUNK_BYTES_DEFAULT,
        }
    }
}

/// The bytes of a slot's payload, produced while streaming (never held whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadPattern {
    /// All zero.
    Zeroes,
    /// The rule of the LMCache fixtures (see [`payload_byte`]) for entry `entry_index`.
    Entry {
        /// The entry number the bytes are derived from.
        entry_index: u64,
    },
}

impl PayloadPattern {
    /// Writes the pattern's bytes `[start_bytes, start_bytes + out.len())` into `out`.
    pub fn fill(self, start_bytes: u64, out: &mut [u8]) {
        match self {
            PayloadPattern::Zeroes => out.fill(0),
            PayloadPattern::Entry { entry_index } => {
                for (position, byte) in (start_bytes..).zip(out.iter_mut()) {
                    *byte = payload_byte(entry_index, position);
                }
            }
        }
    }
}

/// Byte `position` of entry `entry_index`'s payload, the rule of the LMCache fixtures' manifests:
/// bytes 0..8 are `entry_index` as little-endian u64, byte `j >= 8` is
/// `(entry_index * 131 + j * 7 + 1) & 0xff`.
pub fn payload_byte(entry_index: u64, position: u64) -> u8 {
    match position {
        0..8 => entry_index.to_le_bytes()[position as usize],
        _ => {
            (entry_index
                .wrapping_mul(131)
                .wrapping_add(position.wrapping_mul(7))
                .wrapping_add(1)
                & 0xff) as u8
        }
    }
}

/// A slot payload to write after the header: `len_bytes` of `pattern`, then zeroes to the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PayloadSpec {
    /// Logical payload length (at most `slot_bytes - header_bytes`).
    pub len_bytes: u64,
    /// Where the bytes come from.
    pub pattern: PayloadPattern,
}

/// One slot to write: its header, and optionally its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotWrite {
    /// The slot, below `max_slots`.
    pub slot_index: u64,
    /// The header written as the slot's first `header_bytes` (24 info bytes, then zeroes).
    pub header: SlotHeader,
    /// The payload written just past the header, if any.
    pub payload: Option<PayloadSpec>,
}

/// Raw bytes to place at a block-aligned offset (checkpoint blocks, damage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockWrite {
    /// Device offset, a multiple of `block_align`.
    pub offset_bytes: u64,
    /// The bytes; the length is a positive multiple of `block_align`.
    pub bytes: Vec<u8>,
}

/// What one call of a [`DeviceWriter`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Slot headers written.
    pub slot_count: u64,
    /// Write operations completed.
    pub op_count: u64,
    /// Bytes written.
    pub written_bytes: u64,
}

/// Why a write did not happen or did not complete.
#[non_exhaustive]
#[derive(Debug)]
pub enum WriteError {
    /// The layout breaks a rule or does not fit the device.
    Layout {
        /// The device size the layout was validated against.
        device_size_bytes: u64,
        /// The rule that failed.
        source: FormatError,
    },
    /// The writer's buffer pool could not be made.
    Pool(PoolError),
    /// A slot index at or past `max_slots`.
    SlotOutOfRange {
        /// The slot asked for.
        slot_index: u64,
        /// Slots the device has.
        max_slots: u64,
    },
    /// A payload larger than a slot holds after its header.
    PayloadTooLarge {
        /// The slot.
        slot_index: u64,
        /// The payload length asked for.
        len_bytes: u64,
        /// `slot_bytes - header_bytes`.
        capacity_bytes: u64,
    },
    /// A checkpoint payload a reader would reject: empty, or larger than a mirror holds.
    Checkpoint {
        /// The checkpoint's sequence number.
        seq: u64,
        /// Why a reader would reject it.
        source: CheckpointRejection,
    },
    /// A raw block write that is not block-aligned.
    Unaligned {
        /// Where it was to go.
        offset_bytes: u64,
        /// How long it was.
        len_bytes: u64,
        /// The layout's `block_align`.
        block_align: u64,
    },
    /// A more-entries-than-slots or similar problem in a [`PrepareSpec`](crate::PrepareSpec).
    Spec {
        /// What is wrong, in a few words with the values.
        problem: String,
    },
    /// A write or flush failed (a read-only device is refused here, by the engine).
    Io(OpError),
    /// The engine stopped answering or an operation did not fit a buffer.
    Stream(StreamError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Layout {
                device_size_bytes, ..
            } => write!(f, "layout does not fit a {device_size_bytes}-byte device"),
            WriteError::Pool(_) => write!(f, "cannot allocate the writer's buffers"),
            WriteError::SlotOutOfRange {
                slot_index,
                max_slots,
            } => write!(f, "slot {slot_index} is past max_slots {max_slots}"),
            WriteError::PayloadTooLarge {
                slot_index,
                len_bytes,
                capacity_bytes,
            } => write!(
                f,
                "slot {slot_index}: payload of {len_bytes} bytes, a slot holds {capacity_bytes}"
            ),
            WriteError::Checkpoint { seq, .. } => write!(f, "checkpoint {seq} cannot be written"),
            WriteError::Unaligned {
                offset_bytes,
                len_bytes,
                block_align,
            } => write!(
                f,
                "write of {len_bytes} bytes at offset {offset_bytes} is not aligned to \
                 block_align {block_align}"
            ),
            WriteError::Spec { problem } => write!(f, "bad prepare spec: {problem}"),
            WriteError::Io(op_error) => write!(f, "{} failed", op_error.info),
            WriteError::Stream(_) => write!(f, "write stream stopped"),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Layout { source, .. } => Some(source),
            WriteError::Pool(source) => Some(source),
            WriteError::Checkpoint { source, .. } => Some(source),
            WriteError::Io(op_error) => Some(&op_error.error),
            WriteError::Stream(source) => Some(source),
            _ => None,
        }
    }
}

/// Writes slots, raw blocks and checkpoints of one raw_block device through any engine.
///
/// The engine must be working on `device` (opened for writing: a read-only device makes the
/// first write fail with [`WriteError::Io`]).
pub struct DeviceWriter<'e> {
    engine: &'e mut dyn Engine,
    layout: Layout,
    geometry: Geometry,
    pool: BufferPool,
    next_tag: u64,
}

impl<'e> DeviceWriter<'e> {
    /// A writer with the default [`WriterOptions`].
    ///
    /// # Errors
    /// [`WriteError::Layout`] when `layout` does not validate against the device size, and
    /// [`WriteError::Pool`] when the buffers cannot be allocated.
    pub fn new(
        device: &Device,
        engine: &'e mut dyn Engine,
        layout: &Layout,
    ) -> Result<Self, WriteError> {
        DeviceWriter::with_options(device, engine, layout, WriterOptions::default())
    }

    /// A writer with explicit window and chunk sizes.
    ///
    /// # Errors
    /// As [`DeviceWriter::new`].
    pub fn with_options(
        device: &Device,
        engine: &'e mut dyn Engine,
        layout: &Layout,
        options: WriterOptions,
    ) -> Result<Self, WriteError> {
        let device_size_bytes = device.size_bytes();
        let geometry = layout
            .validate(device_size_bytes)
            .map_err(|source| WriteError::Layout {
                device_size_bytes,
                source,
            })?;
        let align_bytes = device.align_bytes().max(layout.block_align as usize);
        let payload_bytes = geometry.round_up_bytes(geometry.payload_capacity_bytes());
        let chunk_bytes = options
            .chunk_bytes_max
            .min(usize::try_from(payload_bytes).unwrap_or(usize::MAX))
            .max(layout.header_bytes as usize);
        let buffer_bytes = chunk_bytes.div_ceil(align_bytes) * align_bytes;
        let pool = BufferPool::new(buffer_bytes, options.window_ops_max.max(1), align_bytes)
            .map_err(WriteError::Pool)?;
        Ok(DeviceWriter {
            engine,
            layout: layout.clone(),
            geometry,
            pool,
            next_tag: 0,
        })
    }

    /// The geometry the layout gives this device.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Writes in flight at most (the pool's buffer count).
    pub fn window_ops_max(&self) -> usize {
        self.pool.buffer_count()
    }

    /// The most pool buffers ever taken at once: never more than [`DeviceWriter::window_ops_max`].
    pub fn buffers_taken_max(&self) -> usize {
        self.pool.taken_max()
    }

    /// Writes each slot's header (its own `header_bytes` write) and payload, streaming.
    ///
    /// # Errors
    /// [`WriteError::SlotOutOfRange`] or [`WriteError::PayloadTooLarge`] for a bad slot (slots
    /// before it are written), [`WriteError::Io`] for the first failed write (no further slots
    /// are started), [`WriteError::Stream`] when the engine stalls.
    pub fn write_slots(
        &mut self,
        slots: impl IntoIterator<Item = SlotWrite>,
    ) -> Result<WriteStats, WriteError> {
        self.write_slots_with_progress(slots, &mut |_| {})
    }

    /// [`DeviceWriter::write_slots`], calling `progress` with the count of slot headers written
    /// so far, every 1024 headers and at the end.
    ///
    /// # Errors
    /// As [`DeviceWriter::write_slots`].
    pub fn write_slots_with_progress(
        &mut self,
        slots: impl IntoIterator<Item = SlotWrite>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<WriteStats, WriteError> {
        let units = slots.into_iter().map(Unit::Slot);
        self.stream(units, true, progress)
    }

    /// Writes raw block-aligned bytes, in order (used for checkpoints and damage).
    ///
    /// # Errors
    /// [`WriteError::Unaligned`] for a misplaced block, else as [`DeviceWriter::write_slots`].
    pub fn write_blocks(
        &mut self,
        blocks: impl IntoIterator<Item = BlockWrite>,
    ) -> Result<WriteStats, WriteError> {
        self.stream(blocks.into_iter().map(Unit::Block), false, &mut |_| {})
    }

    /// Writes `payload_json` as checkpoint `seq` into mirror `(seq - 1) % 2`: the payload
    /// blocks first, then, once they completed, the header block.
    ///
    /// # Errors
    /// [`WriteError::Checkpoint`] for an empty payload or one larger than a mirror holds (nothing
    /// is written), else as [`DeviceWriter::write_slots`].
    pub fn write_checkpoint(
        &mut self,
        seq: u64,
        payload_json: &[u8],
    ) -> Result<WriteStats, WriteError> {
        let mirror = encode_mirror(&self.layout, &self.geometry, seq, payload_json)
            .map_err(|source| WriteError::Checkpoint { seq, source })?;
        let mut stats = self.write_blocks([BlockWrite {
            offset_bytes: mirror.payload_offset_bytes,
            bytes: mirror.payload_blocks,
        }])?;
        let header = self.write_blocks([BlockWrite {
            offset_bytes: mirror.header_offset_bytes,
            bytes: mirror.header_block,
        }])?;
        stats.op_count += header.op_count;
        stats.written_bytes += header.written_bytes;
        Ok(stats)
    }

    /// Makes the writes so far durable (`fdatasync`, NVMe flush).
    ///
    /// # Errors
    /// [`WriteError::Io`] when the flush fails.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        let tag = self.take_tag();
        let mut failure = None;
        Stream::new(&mut *self.engine, &self.pool)
            .run(
                [OpSpec::flush(tag)],
                |_, _| {},
                |completion| {
                    failure = completion.check().err();
                },
            )
            .map_err(WriteError::Stream)?;
        failure.map_or(Ok(()), |error| Err(WriteError::Io(error)))
    }

    fn take_tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Runs `units` through one stream; the planner turns them into operations lazily.
    fn stream(
        &mut self,
        units: impl Iterator<Item = Unit>,
        count_slots: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<WriteStats, WriteError> {
        let chunk_bytes = self.pool.buffer_bytes() as u64;
        let planner = RefCell::new(Planner::new(
            units,
            self.geometry,
            chunk_bytes,
            self.pool.buffer_count(),
            count_slots,
            self.next_tag,
        ));
        let specs = std::iter::from_fn(|| planner.borrow_mut().next_spec());
        let fill = |info: &OpInfo, out: &mut [u8]| planner.borrow_mut().fill(info, out);
        let visit = |completion: &rbio_core::Completion| {
            let mut planner = planner.borrow_mut();
            match completion.check() {
                Ok(done_bytes) => planner.stats.written_bytes += done_bytes as u64,
                Err(error) => {
                    planner.failure.get_or_insert(WriteError::Io(error));
                }
            }
            planner.stats.op_count += 1;
            if planner.is_header(&completion.info()) {
                planner.stats.slot_count += 1;
                if planner.stats.slot_count % 1024 == 0 {
                    progress(planner.stats.slot_count);
                }
            }
        };
        let result = Stream::new(&mut *self.engine, &self.pool).run(specs, fill, visit);
        let planner = planner.into_inner();
        self.next_tag = planner.next_tag;
        result.map_err(WriteError::Stream)?;
        if let Some(failure) = planner.failure {
            return Err(failure);
        }
        if planner.stats.slot_count % 1024 != 0 {
            progress(planner.stats.slot_count);
        }
        Ok(planner.stats)
    }
}

impl fmt::Debug for DeviceWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceWriter")
            .field("engine", &self.engine.capabilities().name)
            .field("geometry", &self.geometry)
            .field("pool", &self.pool)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(entry_index: u64, start_bytes: u64, len_bytes: usize) -> Vec<u8> {
        let mut out = vec![0xaa; len_bytes];
        PayloadPattern::Entry { entry_index }.fill(start_bytes, &mut out);
        out
    }

    #[test]
    fn payload_rule_matches_the_c1000_fixture() {
        // Bytes 0..12 of entries 0 and 1 as LMCache wrote them in c1000.img.
        assert_eq!(
            pattern(0, 0, 12),
            [0, 0, 0, 0, 0, 0, 0, 0, 0x39, 0x40, 0x47, 0x4e]
        );
        assert_eq!(
            pattern(1, 0, 12),
            [1, 0, 0, 0, 0, 0, 0, 0, 0xbc, 0xc3, 0xca, 0xd1]
        );
        assert_eq!(pattern(137, 0, 12)[8..], [0x54, 0x5b, 0x62, 0x69]);
    }

    #[test]
    fn pattern_chunks_join_up() {
        let whole = pattern(9, 0, 10_000);
        let joined = [
            pattern(9, 0, 5),
            pattern(9, 5, 4096),
            pattern(9, 4101, 5899),
        ]
        .concat();
        assert_eq!(whole, joined);
        assert_eq!(pattern(0, 0, 0), Vec::<u8>::new());
        let mut zeroes = vec![1u8; 7];
        PayloadPattern::Zeroes.fill(3, &mut zeroes);
        assert_eq!(zeroes, [0; 7]);
    }
}

//! The write planner: turns slots and raw blocks into stream operations as the stream pulls
//! them, and fills each operation's buffer from the unit it belongs to.

use std::collections::VecDeque;

use rbio_core::{OpInfo, OpSpec};

use super::{BlockWrite, SlotWrite, WriteError, WriteStats};
use crate::format::Geometry;

/// What the planner writes: a slot (header then payload) or raw blocks.
pub(super) enum Unit {
    Slot(SlotWrite),
    Block(BlockWrite),
}

/// The unit being turned into operations, and where it is in them.
struct Current {
    first_tag: u64,
    unit: Unit,
    /// The next operation's device offset and where the unit's operations end.
    next_offset_bytes: u64,
    end_bytes: u64,
    /// Where the unit's chunked data (payload or block bytes) starts on the device.
    data_offset_bytes: u64,
}

/// Turns units into operations as the stream pulls them and fills their buffers.
///
/// The stream fills an operation's buffer before it submits it, so the unit an operation belongs
/// to is the current one or one of the last `recent_max` (the window): `recent` holds those.
pub(super) struct Planner<I> {
    units: I,
    recent_max: usize,
    count_slots: bool,
    geometry: Geometry,
    chunk_bytes: u64,
    /// The tag of the last operation planned; tags are unique across a writer's streams.
    pub(super) next_tag: u64,
    current: Option<Current>,
    recent: VecDeque<Current>,
    /// The first bad unit or failed write; no unit is started after it.
    pub(super) failure: Option<WriteError>,
    /// What completed so far.
    pub(super) stats: WriteStats,
}

impl<I: Iterator<Item = Unit>> Planner<I> {
    /// A planner for `units` whose operations are at most `chunk_bytes`, for a stream of at
    /// most `window_ops_max` operations in flight, numbering operations after `last_tag`.
    pub(super) fn new(
        units: I,
        geometry: Geometry,
        chunk_bytes: u64,
        window_ops_max: usize,
        count_slots: bool,
        last_tag: u64,
    ) -> Self {
        Planner {
            units,
            recent_max: window_ops_max,
            count_slots,
            geometry,
            chunk_bytes,
            next_tag: last_tag,
            current: None,
            recent: VecDeque::new(),
            failure: None,
            stats: WriteStats::default(),
        }
    }

    /// The next operation: a unit's header, then its chunks; `None` when done or failed.
    pub(super) fn next_spec(&mut self) -> Option<OpSpec> {
        if self.failure.is_some() {
            return None;
        }
        if self
            .current
            .as_ref()
            .is_none_or(|c| c.next_offset_bytes == c.end_bytes)
        {
            let unit = self.units.next()?;
            match self.start(unit) {
                Ok(current) => {
                    if let Some(done) = self.current.replace(current) {
                        self.recent.push_back(done);
                        if self.recent.len() > self.recent_max {
                            self.recent.pop_front();
                        }
                    }
                }
                Err(error) => {
                    self.failure = Some(error);
                    return None;
                }
            }
        }
        self.next_tag += 1;
        let tag = self.next_tag;
        let chunk_bytes = self.chunk_bytes;
        let current = self.current.as_mut().expect("a unit was just started");
        let offset_bytes = current.next_offset_bytes;
        let len_bytes = match current.unit {
            Unit::Slot(_) if offset_bytes < current.data_offset_bytes => {
                current.data_offset_bytes - offset_bytes
            }
            _ => chunk_bytes.min(current.end_bytes - offset_bytes),
        };
        current.next_offset_bytes += len_bytes;
        Some(OpSpec::write(tag, offset_bytes, len_bytes as usize))
    }

    /// Checks a unit and works out its extent.
    fn start(&self, unit: Unit) -> Result<Current, WriteError> {
        let geometry = &self.geometry;
        let (offset_bytes, data_offset_bytes, end_bytes) = match &unit {
            Unit::Slot(slot) => {
                let slot_index = slot.slot_index;
                if slot_index >= geometry.max_slots() {
                    return Err(WriteError::SlotOutOfRange {
                        slot_index,
                        max_slots: geometry.max_slots(),
                    });
                }
                let payload_len_bytes = slot.payload.map_or(0, |p| p.len_bytes);
                let capacity_bytes = geometry.payload_capacity_bytes();
                if payload_len_bytes > capacity_bytes {
                    return Err(WriteError::PayloadTooLarge {
                        slot_index,
                        len_bytes: payload_len_bytes,
                        capacity_bytes,
                    });
                }
                let payload_offset_bytes = geometry.slot_payload_offset_bytes(slot_index);
                let end_bytes = payload_offset_bytes + geometry.round_up_bytes(payload_len_bytes);
                let slot_offset_bytes = geometry.slot_offset_bytes(slot_index);
                (slot_offset_bytes, payload_offset_bytes, end_bytes)
            }
            Unit::Block(block) => {
                let (offset_bytes, len_bytes) = (block.offset_bytes, block.bytes.len() as u64);
                let block_align = geometry.block_align();
                if offset_bytes % block_align != 0 || len_bytes % block_align != 0 || len_bytes == 0
                {
                    return Err(WriteError::Unaligned {
                        offset_bytes,
                        len_bytes,
                        block_align,
                    });
                }
                (offset_bytes, offset_bytes, offset_bytes + len_bytes)
            }
        };
        Ok(Current {
            first_tag: self.next_tag + 1,
            unit,
            next_offset_bytes: offset_bytes,
            end_bytes,
            data_offset_bytes,
        })
    }

    /// Writes the bytes of operation `info` into its buffer.
    pub(super) fn fill(&mut self, info: &OpInfo, out: &mut [u8]) {
        let owner = self
            .current
            .iter()
            .chain(self.recent.iter().rev())
            .find(|unit| unit.first_tag <= info.tag)
            .expect("every operation belongs to a unit the planner started");
        match &owner.unit {
            Unit::Slot(slot) if info.offset_bytes < owner.data_offset_bytes => {
                slot.header.encode_into(out);
            }
            Unit::Slot(slot) => {
                let start_bytes = info.offset_bytes - owner.data_offset_bytes;
                out.fill(0);
                if let Some(payload) = slot.payload {
                    let len_bytes = payload.len_bytes.saturating_sub(start_bytes);
                    let data_bytes = out.len().min(len_bytes as usize);
                    payload.pattern.fill(start_bytes, &mut out[..data_bytes]);
                }
            }
            Unit::Block(block) => {
                let start = (info.offset_bytes - block.offset_bytes) as usize;
                out.copy_from_slice(&block.bytes[start..start + out.len()]);
            }
        }
    }

    /// Whether a completed operation was a slot header write (for progress and counts).
    pub(super) fn is_header(&self, info: &OpInfo) -> bool {
        if !self.count_slots {
            return false;
        }
        let base_bytes = self.geometry.data_base_bytes();
        info.len_bytes as u64 == self.geometry.header_bytes()
            && info.offset_bytes >= base_bytes
            && (info.offset_bytes - base_bytes) % self.geometry.slot_bytes() == 0
    }
}

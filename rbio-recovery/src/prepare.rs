//! The synthetic image generator: a deterministic raw_block device from a seed, with its
//! expected bringup result, for tests, `rbio prepare`/`rbio demo` and the bringup benchmark.
//!
//! Everything about entry `k` is a pure function of the [`PrepareSpec`] ([`PrepareSpec::entry`]),
//! so [`prepare`] streams the slots and [`Prepared::entries`] recomputes the expectation instead
//! of holding it. The rules:
//!
//! - key (object namespace): [`ObjectKey`](crate::ObjectKey) with the spec's `model_name`, `kv_rank = k % 4`,
//!   `object_group_id = k % 3` and a 16-byte chunk hash from `seed` and `k` (distinct for
//!   distinct `k`); legacy namespace: `model@4@{k % 4}@{chunk hash hex}@bfloat16`;
//! - slot: [`SlotPlacement`]; size: [`EntrySizes`]; tensor metadata: `shape [size]`, `"uint8"`,
//!   `"BINARY"`, `cached_positions null` (as in the c1000 fixture);
//! - payload bytes (when written): [`payload_byte`](crate::payload_byte), the fixtures' rule;
//! - checkpoints: with 2, seq 1 lists entries `k < entry_count / 2` and seq 2 lists all; with 1,
//!   seq 1 lists all. Entries appear in order of `k`. Damage comes after the last checkpoint.

mod damage;
mod spec;

use std::borrow::Cow;

use rbio_core::{Device, Engine};
use serde_json::value::RawValue;

pub use damage::{CheckpointDamage, Damage, DamagePlan};
pub use spec::{EntrySizes, PrepareSpec, SlotPlacement};

use self::spec::random;

use crate::format::{
    mirror_index_for_seq, CheckpointHead, CheckpointWriter, EntryFields, Geometry, SlotHeader,
    TensorMeta,
};
use crate::report::StaleReason;
use crate::writer::{
    BlockWrite, DeviceWriter, PayloadPattern, PayloadSpec, SlotWrite, WriteError, WriteStats,
};

/// Everything [`prepare`] writes about one entry, and what bringup must find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedEntry {
    /// The entry's number `k`.
    pub entry_index: u64,
    /// The encoded key.
    pub key: String,
    /// The identity in its (undamaged) slot header.
    pub identity: u64,
    /// Its slot.
    pub slot_index: u64,
    /// Device offset of the slot (the checkpoint's `offset`).
    pub offset_bytes: u64,
    /// Payload length (the checkpoint's `size`).
    pub size_bytes: u64,
    /// The damage done to it, if any.
    pub damage: Option<Damage>,
    /// What a bringup with validation must report.
    pub state: ExpectedState,
}

impl ExpectedEntry {
    /// The header written for it before any damage.
    pub fn header(&self) -> SlotHeader {
        SlotHeader {
            identity: self.identity,
            payload_len_bytes: self.size_bytes,
        }
    }

    /// Its tensor metadata as written in the checkpoint.
    pub fn tensor(&self) -> TensorMeta<'static> {
        let raw = |text: String| RawValue::from_string(text).ok().map(Cow::Owned);
        TensorMeta {
            shape: raw(format!("[{}]", self.size_bytes)),
            dtype: raw("\"uint8\"".to_owned()),
            fmt: raw("\"BINARY\"".to_owned()),
            cached_positions: raw("null".to_owned()),
        }
    }
}

/// What a bringup with header validation must find for an entry (the fixtures' `expected`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedState {
    /// In the recovered index with this offset and size.
    Present,
    /// In the winning checkpoint, but its header no longer matches: dropped for this reason.
    Dropped(StaleReason),
    /// Not in the winning checkpoint (or no checkpoint is valid): must not appear.
    Absent,
}

/// A prepared image: the spec it came from and what bringup must find on it.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The spec.
    pub spec: PrepareSpec,
    /// The device's geometry.
    pub geometry: Geometry,
    /// Sequence number of the checkpoint a bringup must select; `None`: an empty device.
    pub winning_seq: Option<u64>,
    /// `next_slot` of the winning checkpoint (0 when none).
    pub next_slot: u64,
    /// What the writes did.
    pub stats: WriteStats,
    /// The writer's window (pool buffers).
    pub window_ops_max: usize,
    /// The most pool buffers taken at once; never above `window_ops_max`.
    pub buffers_taken_max: usize,
}

impl Prepared {
    /// Every entry written, in order of `k`, with its expected state.
    pub fn entries(&self) -> impl Iterator<Item = ExpectedEntry> + '_ {
        (0..self.spec.entry_count).map(|k| self.entry(k))
    }

    /// Entry `k` with its expected state.
    pub fn entry(&self, entry_index: u64) -> ExpectedEntry {
        let mut entry = self.spec.entry(entry_index);
        let listed = self
            .winning_seq
            .is_some_and(|seq| self.spec.listed_in(seq, entry_index));
        entry.state = match entry.damage {
            _ if !listed => ExpectedState::Absent,
            Some(damage) => damage
                .stale_reason(entry.header(), self.spec.other_identity(entry_index))
                .map_or(ExpectedState::Present, ExpectedState::Dropped),
            None => ExpectedState::Present,
        };
        entry
    }

    /// How many entries the recovered index must hold.
    pub fn expected_index_len(&self) -> u64 {
        let present = self.entries().filter(|e| e.state == ExpectedState::Present);
        present.count() as u64
    }

    /// The free list a bringup with validation must report: every slot below `next_slot` that
    /// no present entry holds (dropped entries' slots included), ascending.
    pub fn expected_free_slots(&self) -> Vec<u64> {
        let mut used = vec![false; self.next_slot as usize];
        for entry in self.entries() {
            if entry.state == ExpectedState::Present {
                used[entry.slot_index as usize] = true;
            }
        }
        (0..self.next_slot).filter(|&s| !used[s as usize]).collect()
    }
}

/// Slots written between flushes: bounds the dirty page cache (and the file system's
/// reservations for it) while a large image is prepared, instead of one flush of gigabytes
/// of scattered pages at the end.
const FLUSH_EVERY_SLOTS: u64 = 1 << 16;

/// Writes the image `spec` describes on `device` through `engine`, then damages it.
///
/// `progress` sees `(slots written, entry_count)` as slot headers complete.
///
/// # Errors
/// [`WriteError::Spec`] for a spec the device cannot hold (nothing is written), else the first
/// [`WriteError`] of the writes.
pub fn prepare(
    device: &Device,
    engine: &mut dyn Engine,
    spec: &PrepareSpec,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Prepared, WriteError> {
    let mut writer = DeviceWriter::new(device, engine, &spec.layout)?;
    let geometry = *writer.geometry();
    spec.check(&geometry)?;
    let total = spec.entry_count;
    let slot_write = |k: u64| {
        let entry = spec.entry(k);
        SlotWrite {
            slot_index: entry.slot_index,
            header: entry.header(),
            payload: spec.with_payloads.then_some(PayloadSpec {
                len_bytes: entry.size_bytes,
                pattern: PayloadPattern::Entry { entry_index: k },
            }),
        }
    };
    let mut stats = WriteStats::default();
    for chunk_start in (0..total).step_by(FLUSH_EVERY_SLOTS as usize) {
        let chunk_end = (chunk_start + FLUSH_EVERY_SLOTS).min(total);
        let slots = (chunk_start..chunk_end).map(slot_write);
        let written = writer
            .write_slots_with_progress(slots, &mut |done| progress(chunk_start + done, total))?;
        add(&mut stats, written);
        writer.flush()?;
    }
    let mut first_blocks = Vec::new();
    for seq in 1..=u64::from(spec.checkpoints) {
        let payload = checkpoint_payload(spec, &geometry, seq);
        first_blocks.push((seq, first_block(&geometry, &payload)));
        add(&mut stats, writer.write_checkpoint(seq, &payload)?);
    }
    let damaged = (0..total).filter_map(|k| damage_block(spec, &geometry, k));
    add(&mut stats, writer.write_blocks(damaged)?);
    let newest_seq = u64::from(spec.checkpoints);
    let survivors: Vec<u64> = spec.checkpoint_damage.survivors(newest_seq).collect();
    let broken = first_blocks
        .into_iter()
        .filter(|(seq, _)| !survivors.contains(seq));
    let mirror_blocks = broken.map(|(seq, mut block)| {
        let mirror_index = mirror_index_for_seq(seq);
        if spec.checkpoint_damage == CheckpointDamage::ZeroedNewestHeader {
            block.fill(0);
            return BlockWrite {
                offset_bytes: geometry.mirror_offset_bytes(mirror_index),
                bytes: block,
            };
        }
        block[0] ^= 0xff;
        BlockWrite {
            offset_bytes: geometry.mirror_payload_offset_bytes(mirror_index),
            bytes: block,
        }
    });
    add(
        &mut stats,
        writer.write_blocks(mirror_blocks.collect::<Vec<_>>())?,
    );
    writer.flush()?;
    let winning_seq = survivors.first().copied();
    Ok(Prepared {
        next_slot: winning_seq.map_or(0, |seq| next_slot(spec, seq)),
        spec: spec.clone(),
        geometry,
        winning_seq,
        stats,
        window_ops_max: writer.window_ops_max(),
        buffers_taken_max: writer.buffers_taken_max(),
    })
}

/// The JSON of checkpoint `seq`, byte for byte as LMCache writes it.
fn checkpoint_payload(spec: &PrepareSpec, geometry: &Geometry, seq: u64) -> Vec<u8> {
    let next_slot = next_slot(spec, seq);
    let head = CheckpointHead::for_layout(&spec.layout, geometry, &spec.device_path, next_slot);
    let mut writer = CheckpointWriter::new(&head);
    for k in 0..spec.listed_count(seq) {
        let entry = spec.entry(k);
        let fields = EntryFields {
            offset_bytes: entry.offset_bytes,
            size_bytes: entry.size_bytes,
            tensor: entry.tensor(),
        };
        writer.push(&entry.key, &fields);
    }
    writer.finish()
}

/// `next_slot` of checkpoint `seq`: one past the highest slot it lists.
fn next_slot(spec: &PrepareSpec, seq: u64) -> u64 {
    let listed = spec.listed_count(seq);
    if listed == spec.entry_count {
        return spec.slots_used();
    }
    (0..listed).map(|k| spec.slot_of(k) + 1).max().unwrap_or(0)
}

/// The first `block_align` bytes of a checkpoint payload, zero-padded.
fn first_block(geometry: &Geometry, payload: &[u8]) -> Vec<u8> {
    let mut block = vec![0u8; geometry.block_align() as usize];
    let len = block.len().min(payload.len());
    block[..len].copy_from_slice(&payload[..len]);
    block
}

/// The block that damages entry `k`'s slot, if the plan damages it.
fn damage_block(spec: &PrepareSpec, geometry: &Geometry, k: u64) -> Option<BlockWrite> {
    let damage = spec.damage.damage_of(k)?;
    let entry = spec.entry(k);
    let Some(info) = damage.damaged_header(entry.header(), spec.other_identity(k)) else {
        let mut block = vec![0u8; geometry.block_align() as usize];
        if spec.with_payloads {
            let len = block.len().min(entry.size_bytes as usize);
            PayloadPattern::Entry { entry_index: k }.fill(0, &mut block[..len]);
        }
        block[0] ^= 0xff;
        let offset_bytes = geometry.slot_payload_offset_bytes(entry.slot_index);
        return Some(BlockWrite {
            offset_bytes,
            bytes: block,
        });
    };
    let mut block = vec![0u8; geometry.header_bytes() as usize];
    block[..info.len()].copy_from_slice(&info);
    Some(BlockWrite {
        offset_bytes: entry.offset_bytes,
        bytes: block,
    })
}

fn add(total: &mut WriteStats, more: WriteStats) {
    total.slot_count += more.slot_count;
    total.op_count += more.op_count;
    total.written_bytes += more.written_bytes;
}

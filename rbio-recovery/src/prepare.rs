//! The synthetic image generator: a deterministic raw_block device from a seed, with its
//! expected bringup result, for tests, `rbio prepare`/`rbio demo` and the bringup benchmark.
//!
//! Everything about entry `k` is a pure function of the [`PrepareSpec`] ([`PrepareSpec::entry`]),
//! so [`prepare`] streams the slots and [`Prepared::entries`] recomputes the expectation instead
//! of holding it. The rules:
//!
//! - key (object namespace): [`ObjectKey`] with the spec's `model_name`, `kv_rank = k % 4`,
//!   `object_group_id = k % 3` and a 16-byte chunk hash from `seed` and `k` (distinct for
//!   distinct `k`); legacy namespace: `model@4@{k % 4}@{chunk hash hex}@bfloat16`;
//! - slot: [`SlotPlacement`]; size: [`EntrySizes`]; tensor metadata: `shape [size]`, `"uint8"`,
//!   `"BINARY"`, `cached_positions null` (as in the c1000 fixture);
//! - payload bytes (when written): [`payload_byte`](crate::payload_byte), the fixtures' rule;
//! - checkpoints: with 2, seq 1 lists entries `k < entry_count / 2` and seq 2 lists all; with 1,
//!   seq 1 lists all. Entries appear in order of `k`. Damage comes after the last checkpoint.

mod damage;

use std::borrow::Cow;
use std::sync::Arc;

use rbio_core::{Device, Engine};
use serde_json::value::RawValue;

pub use damage::{CheckpointDamage, Damage, DamagePlan};

use crate::format::{
    mirror_index_for_seq, CheckpointHead, CheckpointWriter, EntryFields, Geometry, KeyNamespace,
    Layout, ObjectKey, SlotHeader, TensorMeta,
};
use crate::report::StaleReason;
use crate::writer::{
    BlockWrite, DeviceWriter, PayloadPattern, PayloadSpec, SlotWrite, WriteError, WriteStats,
};

/// How entries are assigned to slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SlotPlacement {
    /// Entry `k` in slot `k`.
    #[default]
    Sequential,
    /// A permutation of `0..entry_count` from the seed (`slot = (a * k + b) % entry_count`).
    Shuffled,
    /// Entry `k` in slot `k * stride`, leaving free slots between entries.
    Strided {
        /// Slots from one entry to the next (at least 1).
        stride: u64,
    },
}

/// How large each entry's payload is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EntrySizes {
    /// Every entry this many bytes (1 to the slot's payload capacity).
    Fixed(u64),
    /// Uniform in `min_bytes..=max_bytes`, from the seed.
    Uniform {
        /// Smallest size, at least 1.
        min_bytes: u64,
        /// Largest size, at most the slot's payload capacity.
        max_bytes: u64,
    },
    /// Uniform in `1..=` the slot's payload capacity, from the seed.
    #[default]
    Random,
}

/// What [`prepare`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepareSpec {
    /// The device layout.
    pub layout: Layout,
    /// Entries to write (each gets a slot).
    pub entry_count: u64,
    /// Whether payloads are written (else only headers; payload regions stay as they were).
    pub with_payloads: bool,
    /// The `device_path` recorded in the checkpoints (empty matches any configured path).
    pub device_path: String,
    /// Model name in every key.
    pub model_name: String,
    /// Seed of keys, sizes and shuffling.
    pub seed: u64,
    /// Payload sizes.
    pub sizes: EntrySizes,
    /// Slot assignment.
    pub placement: SlotPlacement,
    /// Slot damage applied after the last checkpoint.
    pub damage: DamagePlan,
    /// Checkpoints written: 0, 1, or 2 (both mirrors hold one; the older lists a subset).
    pub checkpoints: u32,
    /// Checkpoint damage applied after the slot damage.
    pub checkpoint_damage: CheckpointDamage,
}

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
}

impl PrepareSpec {
    /// A spec with defaults: headers only, empty device path, model `rbio-demo/model`, seed 0,
    /// random sizes, sequential slots, no damage, two checkpoints.
    pub fn new(layout: Layout, entry_count: u64) -> PrepareSpec {
        PrepareSpec {
            layout,
            entry_count,
            with_payloads: false,
            device_path: String::new(),
            model_name: "rbio-demo/model".to_owned(),
            seed: 0,
            sizes: EntrySizes::Random,
            placement: SlotPlacement::Sequential,
            damage: DamagePlan::None,
            checkpoints: 2,
            checkpoint_damage: CheckpointDamage::None,
        }
    }

    /// Slots from 0 to past the last one used: the newest checkpoint's `next_slot`.
    pub fn slots_used(&self) -> u64 {
        match (self.placement, self.entry_count) {
            (_, 0) => 0,
            (SlotPlacement::Strided { stride }, n) => (n - 1).saturating_mul(stride) + 1,
            (_, n) => n,
        }
    }

    /// The smallest device that holds the image: `meta_total_bytes + slots_used * slot_bytes`
    /// (create a sparse file of this size with `File::set_len`).
    pub fn required_device_bytes(&self) -> u64 {
        let slots_bytes = self.slots_used().saturating_mul(self.layout.slot_bytes);
        self.layout
            .meta_total_bytes
            .saturating_add(slots_bytes.max(self.layout.slot_bytes))
    }

    /// Entry `k` as written (its `state` is [`ExpectedState::Present`]; [`Prepared::entry`]
    /// knows the real one).
    pub fn entry(&self, entry_index: u64) -> ExpectedEntry {
        let key = self.key(entry_index);
        let identity = self.layout.namespace.identity(&key).unwrap_or_default();
        let slot_index = self.slot_of(entry_index);
        ExpectedEntry {
            entry_index,
            identity,
            slot_index,
            offset_bytes: self.layout.meta_total_bytes + slot_index * self.layout.slot_bytes,
            size_bytes: self.size_of(entry_index),
            key,
            damage: self.damage.damage_of(entry_index),
            state: ExpectedState::Present,
        }
    }

    /// The encoded key of entry `k`.
    pub fn key(&self, entry_index: u64) -> String {
        let chunk_hash = chunk_hash(self.seed, entry_index);
        match self.layout.namespace {
            KeyNamespace::Legacy => {
                let hex: String = chunk_hash.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}@4@{}@{hex}@bfloat16", self.model_name, entry_index % 4)
            }
            _ => ObjectKey {
                model_name: &self.model_name,
                kv_rank: (entry_index % 4) as u32,
                object_group_id: entry_index % 3,
                chunk_hash: &chunk_hash,
                cache_salt: None,
            }
            .encode(),
        }
    }

    /// The identity [`Damage::OtherKeysIdentity`] writes for entry `k`: that of a key not in the
    /// image (entry number `u64::MAX - k`).
    pub fn other_identity(&self, entry_index: u64) -> u64 {
        let ghost = self.key(u64::MAX - entry_index);
        self.layout.namespace.identity(&ghost).unwrap_or_default()
    }

    fn payload_capacity_bytes(&self) -> u64 {
        self.layout
            .slot_bytes
            .saturating_sub(self.layout.header_bytes)
    }

    fn size_of(&self, entry_index: u64) -> u64 {
        let (min_bytes, max_bytes) = match self.sizes {
            EntrySizes::Fixed(size_bytes) => return size_bytes,
            EntrySizes::Uniform {
                min_bytes,
                max_bytes,
            } => (min_bytes, max_bytes),
            EntrySizes::Random => (1, self.payload_capacity_bytes()),
        };
        let span = max_bytes.saturating_sub(min_bytes).saturating_add(1);
        min_bytes + random(self.seed, 3, entry_index) % span
    }

    fn slot_of(&self, entry_index: u64) -> u64 {
        match self.placement {
            SlotPlacement::Sequential => entry_index,
            SlotPlacement::Strided { stride } => entry_index * stride,
            SlotPlacement::Shuffled => {
                let n = u128::from(self.entry_count.max(1));
                let (a, b) = self.shuffle_factors();
                ((u128::from(a) * u128::from(entry_index) + u128::from(b)) % n) as u64
            }
        }
    }

    /// `(a, b)` with `a` coprime to `entry_count`, so `k -> (a k + b) mod n` is a permutation.
    fn shuffle_factors(&self) -> (u64, u64) {
        let n = self.entry_count.max(1);
        let mut a = random(self.seed, 4, 0) % n;
        while gcd(a, n) != 1 {
            a = (a + 1) % n;
        }
        (a, random(self.seed, 5, 0) % n)
    }

    /// Whether checkpoint `seq` lists entry `k`.
    fn listed_in(&self, seq: u64, entry_index: u64) -> bool {
        entry_index < self.listed_count(seq)
    }

    /// Entries `0..listed_count(seq)` are in checkpoint `seq`.
    fn listed_count(&self, seq: u64) -> u64 {
        if seq < u64::from(self.checkpoints) {
            self.entry_count / 2
        } else {
            self.entry_count
        }
    }

    fn check(&self, geometry: &Geometry) -> Result<(), WriteError> {
        let problem = |problem: String| Err(WriteError::Spec { problem });
        let capacity_bytes = geometry.payload_capacity_bytes();
        if self.slots_used() > geometry.max_slots() {
            let (used, max) = (self.slots_used(), geometry.max_slots());
            return problem(format!("{used} slots needed, the device has {max}"));
        }
        let (min_bytes, max_bytes) = match self.sizes {
            EntrySizes::Fixed(size_bytes) => (size_bytes, size_bytes),
            EntrySizes::Uniform {
                min_bytes,
                max_bytes,
            } => (min_bytes, max_bytes),
            EntrySizes::Random => (1, capacity_bytes),
        };
        if min_bytes == 0 || min_bytes > max_bytes || max_bytes > capacity_bytes {
            return problem(format!(
                "entry sizes {min_bytes}..={max_bytes} outside 1..={capacity_bytes}"
            ));
        }
        if self.checkpoints > 2 {
            return problem(format!("{} checkpoints, at most 2", self.checkpoints));
        }
        if let SlotPlacement::Strided { stride: 0 } = self.placement {
            return problem("slot stride 0".to_owned());
        }
        match &self.damage {
            DamagePlan::Random { per_million, .. } if *per_million > 1_000_000 => {
                problem(format!("{per_million} damaged per million"))
            }
            DamagePlan::Explicit(map) => match map.keys().find(|&&k| k >= self.entry_count) {
                Some(k) => problem(format!("damage for entry {k} of {}", self.entry_count)),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// Writes the image `spec` describes on `device` through `engine`, then damages it.
///
/// `progress` sees `(slots written, entry_count)` as slot headers complete.
///
/// # Errors
/// [`WriteError::Spec`] for a spec the device cannot hold (nothing is written), else the first
/// [`WriteError`] of the writes.
pub fn prepare(
    device: &Arc<Device>,
    engine: &mut dyn Engine,
    spec: &PrepareSpec,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Prepared, WriteError> {
    let mut writer = DeviceWriter::new(device, engine, &spec.layout)?;
    let geometry = *writer.geometry();
    spec.check(&geometry)?;
    let total = spec.entry_count;
    let slots = (0..total).map(|k| {
        let entry = spec.entry(k);
        SlotWrite {
            slot_index: entry.slot_index,
            header: entry.header(),
            payload: spec.with_payloads.then_some(PayloadSpec {
                len_bytes: entry.size_bytes,
                pattern: PayloadPattern::Entry { entry_index: k },
            }),
        }
    });
    let mut stats = writer.write_slots_with_progress(slots, &mut |done| progress(done, total))?;
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

/// 16 bytes, distinct for distinct `k`: the first 8 are a bijective mix of `k` and the seed.
fn chunk_hash(seed: u64, entry_index: u64) -> [u8; 16] {
    let low = mix(entry_index.wrapping_add(mix(seed ^ 0x6a09_e667_f3bc_c908)));
    let high = mix(low ^ 0xbb67_ae85_84ca_a73b);
    let mut hash = [0u8; 16];
    hash[..8].copy_from_slice(&low.to_le_bytes());
    hash[8..].copy_from_slice(&high.to_le_bytes());
    hash
}

/// A pseudo-random u64 for `(seed, stream, index)`: splitmix64 finalizers.
fn random(seed: u64, stream: u64, index: u64) -> u64 {
    let base = mix(seed.wrapping_add(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    mix(base ^ mix(index.wrapping_add(0x3c6e_f372_fe94_f82b)))
}

/// The splitmix64 finalizer: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entry_count: u64) -> PrepareSpec {
        let layout = Layout {
            slot_bytes: 64 << 10,
            meta_total_bytes: 4 << 20,
            ..Layout::default()
        };
        PrepareSpec::new(layout, entry_count)
    }

    #[test]
    fn shuffled_slots_are_a_permutation() {
        for n in [1, 2, 6, 97, 1000] {
            let spec = PrepareSpec {
                placement: SlotPlacement::Shuffled,
                seed: n,
                ..spec(n)
            };
            let mut slots: Vec<u64> = (0..n).map(|k| spec.slot_of(k)).collect();
            slots.sort_unstable();
            assert_eq!(slots, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn keys_are_distinct_and_sizes_in_range() {
        let spec = spec(2000);
        let keys: std::collections::HashSet<_> = (0..2000).map(|k| spec.key(k)).collect();
        assert_eq!(keys.len(), 2000);
        assert!((0..2000).all(|k| (1..=61440).contains(&spec.size_of(k))));
        assert!(spec.key(0).starts_with("rbio-demo%2Fmodel@0x00000000@0@"));
    }

    #[test]
    fn required_bytes_cover_the_used_slots() {
        let strided = PrepareSpec {
            placement: SlotPlacement::Strided { stride: 3 },
            ..spec(10)
        };
        assert_eq!(strided.slots_used(), 28);
        assert_eq!(strided.required_device_bytes(), (4 << 20) + 28 * (64 << 10));
        assert_eq!(spec(0).required_device_bytes(), (4 << 20) + (64 << 10));
    }
}

//! The prepare spec: what image to make, and every entry's key, slot and size as a pure
//! function of it.

use super::damage::DamagePlan;
use super::{CheckpointDamage, ExpectedEntry, ExpectedState};
use crate::format::{Geometry, KeyNamespace, Layout, ObjectKey};
use crate::writer::WriteError;

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

/// What [`prepare`](crate::prepare()) makes.
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

    /// Entry `k` as written (its `state` is [`ExpectedState::Present`]; [`Prepared::entry`](crate::Prepared::entry)
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

    /// The identity [`Damage::OtherKeysIdentity`](crate::Damage::OtherKeysIdentity) writes for entry `k`: that of a key not in the
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

    pub(super) fn slot_of(&self, entry_index: u64) -> u64 {
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
    pub(super) fn listed_in(&self, seq: u64, entry_index: u64) -> bool {
        entry_index < self.listed_count(seq)
    }

    /// Entries `0..listed_count(seq)` are in checkpoint `seq`.
    pub(super) fn listed_count(&self, seq: u64) -> u64 {
        if seq < u64::from(self.checkpoints) {
            self.entry_count / 2
        } else {
            self.entry_count
        }
    }

    /// Checks the spec against the device's geometry, as [`prepare`](crate::prepare()) does
    /// before its first write: call it first to refuse a bad spec before touching a device.
    ///
    /// # Errors
    /// [`WriteError::Spec`] saying what is wrong (too many slots, sizes, checkpoints, damage).
    pub fn check(&self, geometry: &Geometry) -> Result<(), WriteError> {
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
pub(super) fn random(seed: u64, stream: u64, index: u64) -> u64 {
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

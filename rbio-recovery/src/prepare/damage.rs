//! Damage a prepared image can carry: slot headers changed after the last checkpoint, the way
//! the LMCache fixtures were damaged, and damaged checkpoint mirrors.

use std::collections::BTreeMap;

use crate::format::{SlotHeader, SLOT_HEADER_INFO_BYTES};
use crate::report::StaleReason;

/// One way to damage an entry's slot after the checkpoint; each matches a fixture `corruption`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Damage {
    /// The magic's last byte becomes `0` (`LMCBLK00`); identity and length stay.
    BadMagic,
    /// The whole header block is zero.
    Zeroed,
    /// The identity has its lowest bit flipped.
    WrongIdentity,
    /// The identity is that of another key, one not in the index (the fixtures' "ghost key").
    OtherKeysIdentity,
    /// The payload length is one more than the entry's size.
    WrongLength,
    /// Payload byte 0 is flipped (`^ 0xff`); the header is intact, so validation cannot see it.
    PayloadFlip,
}

impl Damage {
    /// Every kind, in the order [`DamagePlan::Random`] picks from.
    pub const ALL: [Damage; 6] = [
        Damage::BadMagic,
        Damage::Zeroed,
        Damage::WrongIdentity,
        Damage::OtherKeysIdentity,
        Damage::WrongLength,
        Damage::PayloadFlip,
    ];

    /// The name the LMCache fixture manifests give it in `corruption.type`.
    pub fn name(self) -> &'static str {
        match self {
            Damage::BadMagic => "bad_magic",
            Damage::Zeroed => "zeroed",
            Damage::WrongIdentity => "wrong_identity",
            Damage::OtherKeysIdentity => "foreign_identity",
            Damage::WrongLength => "wrong_length",
            Damage::PayloadFlip => "payload_flip",
        }
    }

    /// The kind a fixture manifest's `corruption.type` names.
    pub fn from_name(name: &str) -> Option<Damage> {
        Damage::ALL.into_iter().find(|damage| damage.name() == name)
    }

    /// The 24 information bytes of `header` after this damage, or `None` when the header stays
    /// intact ([`Damage::PayloadFlip`]). `other_identity` is used by
    /// [`Damage::OtherKeysIdentity`].
    pub fn damaged_header(
        self,
        header: SlotHeader,
        other_identity: u64,
    ) -> Option<[u8; SLOT_HEADER_INFO_BYTES]> {
        let mut info = header.to_bytes();
        match self {
            Damage::BadMagic => info[7] = b'0',
            Damage::Zeroed => info = [0; SLOT_HEADER_INFO_BYTES],
            Damage::WrongIdentity | Damage::OtherKeysIdentity | Damage::WrongLength => {
                info = self.changed_header(header, other_identity).to_bytes();
            }
            Damage::PayloadFlip => return None,
        }
        Some(info)
    }

    /// What header validation reports for an entry whose header was `header` before this
    /// damage, or `None` when the entry stays valid.
    pub fn stale_reason(self, header: SlotHeader, other_identity: u64) -> Option<StaleReason> {
        let changed = self.changed_header(header, other_identity);
        match self {
            Damage::BadMagic | Damage::Zeroed => Some(StaleReason::BadMagic),
            Damage::WrongIdentity | Damage::OtherKeysIdentity => {
                Some(StaleReason::IdentityMismatch {
                    header: changed.identity,
                    expected: header.identity,
                })
            }
            Damage::WrongLength => Some(StaleReason::LengthMismatch {
                header: changed.payload_len_bytes,
                checkpoint: header.payload_len_bytes,
            }),
            Damage::PayloadFlip => None,
        }
    }

    /// The header with the identity or length change applied (others: unchanged).
    fn changed_header(self, header: SlotHeader, other_identity: u64) -> SlotHeader {
        match self {
            Damage::WrongIdentity => SlotHeader {
                identity: header.identity ^ 1,
                ..header
            },
            Damage::OtherKeysIdentity => SlotHeader {
                identity: other_identity,
                ..header
            },
            Damage::WrongLength => SlotHeader {
                payload_len_bytes: header.payload_len_bytes.wrapping_add(1),
                ..header
            },
            _ => header,
        }
    }
}

/// Which entries are damaged, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DamagePlan {
    /// No damage.
    #[default]
    None,
    /// Each entry is damaged with probability `per_million / 1e6`, its kind drawn uniformly
    /// from [`Damage::ALL`]; both from `seed`.
    Random {
        /// Damaged entries per million (at most 1 000 000).
        per_million: u32,
        /// Seed of the draw, independent of the image's seed.
        seed: u64,
    },
    /// Exactly these entries, by entry index.
    Explicit(BTreeMap<u64, Damage>),
}

impl DamagePlan {
    /// An explicit plan from `(entry_index, damage)` pairs (a later pair for the same entry wins).
    pub fn explicit(pairs: impl IntoIterator<Item = (u64, Damage)>) -> DamagePlan {
        DamagePlan::Explicit(pairs.into_iter().collect())
    }

    /// The damage of entry `entry_index`, if any.
    pub fn damage_of(&self, entry_index: u64) -> Option<Damage> {
        match self {
            DamagePlan::None => None,
            DamagePlan::Random { per_million, seed } => {
                let roll = super::random(*seed, 1, entry_index);
                ((roll % 1_000_000) < u64::from(*per_million)).then(|| {
                    let pick = super::random(*seed, 2, entry_index) % Damage::ALL.len() as u64;
                    Damage::ALL[pick as usize]
                })
            }
            DamagePlan::Explicit(map) => map.get(&entry_index).copied(),
        }
    }
}

/// Damage done to the checkpoint mirrors after they were written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CheckpointDamage {
    /// Both mirrors as written.
    #[default]
    None,
    /// The newest mirror's payload byte 0 is flipped: its CRC fails, the older mirror wins.
    BadCrcNewest,
    /// The newest mirror's header block is zero (a checkpoint whose header write never
    /// landed): the older mirror wins.
    ZeroedNewestHeader,
    /// Both mirrors' payloads have byte 0 flipped: no checkpoint is valid, the device is empty.
    BothMirrorsBad,
}

impl CheckpointDamage {
    /// Which of the written checkpoints (by seq, newest first) a reader still accepts.
    pub(super) fn survivors(self, newest_seq: u64) -> impl Iterator<Item = u64> {
        let skip = match self {
            CheckpointDamage::None => 0,
            CheckpointDamage::BadCrcNewest | CheckpointDamage::ZeroedNewestHeader => 1,
            CheckpointDamage::BothMirrorsBad => 2,
        };
        (1..=newest_seq).rev().skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: SlotHeader = SlotHeader {
        identity: 0x35ce_63b6_6cc4_d418,
        payload_len_bytes: 3765,
    };

    #[test]
    fn damaged_headers_match_the_fixtures() {
        let hex = |damage: Damage| {
            damage
                .damaged_header(HEADER, 7)
                .map(|b| b.escape_ascii().to_string())
        };
        assert_eq!(
            Damage::BadMagic.damaged_header(HEADER, 7).unwrap()[..8],
            *b"LMCBLK00"
        );
        assert_eq!(Damage::Zeroed.damaged_header(HEADER, 7), Some([0; 24]));
        let wrong = Damage::WrongIdentity.damaged_header(HEADER, 7).unwrap();
        assert_eq!(wrong[8], 0x19);
        let length = SlotHeader::decode(&Damage::WrongLength.damaged_header(HEADER, 7).unwrap());
        assert_eq!(length.unwrap().payload_len_bytes, 3766);
        let other =
            SlotHeader::decode(&Damage::OtherKeysIdentity.damaged_header(HEADER, 7).unwrap());
        assert_eq!(other.unwrap().identity, 7);
        assert_eq!(hex(Damage::PayloadFlip), None);
    }

    #[test]
    fn names_round_trip() {
        for damage in Damage::ALL {
            assert_eq!(Damage::from_name(damage.name()), Some(damage));
        }
        assert_eq!(Damage::from_name("nonsense"), None);
    }

    #[test]
    fn random_plan_is_deterministic_and_near_its_rate() {
        let plan = DamagePlan::Random {
            per_million: 100_000,
            seed: 9,
        };
        let damaged: Vec<_> = (0..10_000).filter_map(|k| plan.damage_of(k)).collect();
        assert!((800..1200).contains(&damaged.len()), "{}", damaged.len());
        let again: Vec<_> = (0..10_000).filter_map(|k| plan.damage_of(k)).collect();
        assert_eq!(damaged, again);
        assert!(Damage::ALL.iter().all(|d| damaged.contains(d)));
    }
}

//! Apply: the spec's per-entry rules entry by entry as they arrive, then, once every entry is
//! known, duplicate keys (the last one counts, as in LMCache's dict) and duplicate slots.

use std::collections::{HashMap, HashSet};

use rbio_core::IoError;

use super::compact::Index;
use crate::format::{CheckpointEntry, Geometry};
use crate::report::{EntryState, RejectReason, StaleReason};

/// What the slot header said about one entry, before duplicates are resolved. The rare
/// verdicts are boxed: one is held per entry until resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The header names this entry (or headers were not checked).
    Matches,
    /// The header names something else.
    Stale(Box<StaleReason>),
    /// The header could not be read.
    Unreadable(Box<IoError>),
}

/// Per-entry progress through apply and validation (32 bytes: one per entry is held).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Broke a per-entry rule.
    Rejected(Box<RejectReason>),
    /// Claims a slot; awaiting its header.
    Claims(u64),
    /// Claims a slot and the header has been judged.
    Judged(u64, Verdict),
}

/// Slots below this are tracked in a bitmap (at most 32 MiB, grown as claims arrive); the
/// rare layouts with more slots track the rest in a set, so memory follows the claims, not
/// the device.
const BITMAP_SLOTS_MAX: u64 = 1 << 28;

/// Slot claims as entries arrive: which slots have more than one claimant.
pub(crate) struct Claims {
    claimed_low: Vec<u64>,
    claimed_high: HashSet<u64>,
    shared: Vec<u64>,
}

impl Claims {
    /// No slot claimed yet.
    pub(crate) fn new() -> Claims {
        Claims {
            claimed_low: Vec::new(),
            claimed_high: HashSet::new(),
            shared: Vec::new(),
        }
    }

    /// Records a claim on `slot_index`; returns whether it was claimed before.
    fn claim(&mut self, slot_index: u64) -> bool {
        if slot_index >= BITMAP_SLOTS_MAX {
            return !self.claimed_high.insert(slot_index);
        }
        let (word, bit) = ((slot_index / 64) as usize, 1u64 << (slot_index % 64));
        if word >= self.claimed_low.len() {
            self.claimed_low.resize(word + 1, 0);
        }
        let before = self.claimed_low[word] & bit != 0;
        self.claimed_low[word] |= bit;
        before
    }

    /// Applies the per-entry rules to `entry` and records its claim.
    pub(crate) fn admit(&mut self, entry: &CheckpointEntry<'_>, geometry: &Geometry) -> Pending {
        match entry.slot_index(geometry) {
            Err(rejection) => Pending::Rejected(Box::new(RejectReason::Rule(rejection))),
            Ok(slot_index) => {
                if self.claim(slot_index) {
                    self.shared.push(slot_index);
                }
                Pending::Claims(slot_index)
            }
        }
    }
}

/// Decides every entry's final state once all have arrived and been judged.
pub(crate) fn resolve(
    entries: &Index,
    pending: Vec<Pending>,
    mut claims: Claims,
    keep_unreadable: bool,
) -> Vec<EntryState> {
    let mut last_of_key: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
    for entry_index in 0..entries.len() {
        last_of_key.insert(entries.key(entry_index), entry_index);
    }
    let superseded = |entry_index: usize| last_of_key[entries.key(entry_index)] != entry_index;
    claims.shared.sort_unstable();
    claims.shared.dedup();
    let mut states: Vec<Option<EntryState>> = vec![None; entries.len()];
    let mut contested: Vec<(u64, usize, Verdict)> = Vec::new();
    for (entry_index, pending) in pending.into_iter().enumerate() {
        states[entry_index] = Some(match pending {
            _ if superseded(entry_index) => EntryState::Rejected(RejectReason::DuplicateKey),
            Pending::Rejected(reason) => EntryState::Rejected(*reason),
            Pending::Claims(_) => unreachable!("every claim is judged before resolution"),
            Pending::Judged(slot_index, verdict)
                if claims.shared.binary_search(&slot_index).is_ok() =>
            {
                contested.push((slot_index, entry_index, verdict));
                continue;
            }
            Pending::Judged(_, verdict) => settle(verdict, keep_unreadable),
        });
    }
    contested.sort_by_key(|&(slot_index, entry_index, _)| (slot_index, entry_index));
    for group in contested.chunk_by(|a, b| a.0 == b.0) {
        settle_contested(entries, group, keep_unreadable, &mut states);
    }
    states
        .into_iter()
        .map(|state| state.expect("every entry resolved"))
        .collect()
}

fn settle(verdict: Verdict, keep_unreadable: bool) -> EntryState {
    match verdict {
        Verdict::Matches => EntryState::Kept,
        Verdict::Stale(reason) => EntryState::Stale(*reason),
        Verdict::Unreadable(error) => EntryState::Unreadable {
            error: *error,
            kept: keep_unreadable,
        },
    }
}

/// Entries naming one slot: the first the header names keeps it; failing that, the first
/// unreadable one stands for the slot; the others yield to the owner or keep their verdict.
fn settle_contested(
    entries: &Index,
    group: &[(u64, usize, Verdict)],
    keep_unreadable: bool,
    states: &mut [Option<EntryState>],
) {
    let slot_index = group[0].0;
    let owner = group
        .iter()
        .find(|(_, _, verdict)| *verdict == Verdict::Matches)
        .or_else(|| {
            group
                .iter()
                .find(|(_, _, verdict)| matches!(verdict, Verdict::Unreadable(_)))
        })
        .filter(|(_, _, verdict)| *verdict == Verdict::Matches || keep_unreadable)
        .map(|&(_, owner_index, _)| owner_index);
    for (_, entry_index, verdict) in group {
        let state = match owner {
            Some(owner_index) if owner_index == *entry_index => {
                settle(verdict.clone(), keep_unreadable)
            }
            Some(owner_index) => EntryState::Rejected(RejectReason::DuplicateSlot {
                slot_index,
                owner: entries.key(owner_index).to_string(),
            }),
            None => settle(verdict.clone(), keep_unreadable),
        };
        states[*entry_index] = Some(state);
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::format::{EntryFields, Layout, TensorMeta};

    const SLOT_BYTES: u64 = 1 << 20;

    fn geometry() -> Geometry {
        Layout {
            meta_total_bytes: 8 << 20,
            ..Layout::default()
        }
        .validate(64 << 20)
        .unwrap()
    }

    fn entry(key: &str, slot_index: u64) -> CheckpointEntry<'static> {
        let fields = EntryFields {
            offset_bytes: (8 << 20) + slot_index * SLOT_BYTES,
            size_bytes: 100,
            tensor: TensorMeta::default(),
        };
        CheckpointEntry {
            key: Cow::Owned(key.to_string()),
            fields: Ok(fields),
        }
    }

    /// Admits `entries` in order, gives each claim its verdict, and resolves.
    fn run(
        entries: &[CheckpointEntry<'static>],
        verdicts: &[Verdict],
        keep_unreadable: bool,
    ) -> Vec<EntryState> {
        let geometry = geometry();
        let mut claims = Claims::new();
        let pending = entries
            .iter()
            .zip(verdicts)
            .map(|(entry, verdict)| match claims.admit(entry, &geometry) {
                Pending::Claims(slot_index) => Pending::Judged(slot_index, verdict.clone()),
                other => other,
            })
            .collect();
        let mut index = Index::default();
        for entry in entries {
            index.push(entry);
        }
        resolve(&index, pending, claims, keep_unreadable)
    }

    fn stale() -> Verdict {
        Verdict::Stale(Box::new(StaleReason::BadMagic))
    }

    fn eio() -> Verdict {
        Verdict::Unreadable(Box::new(IoError::Os(rbio_core::Errno::EIO)))
    }

    fn owned_by(slot_index: u64, owner: &str) -> EntryState {
        EntryState::Rejected(RejectReason::DuplicateSlot {
            slot_index,
            owner: owner.into(),
        })
    }

    #[test]
    fn the_entry_the_header_names_keeps_a_shared_slot() {
        let entries = [entry("a", 3), entry("b", 3)];
        let states = run(&entries, &[stale(), Verdict::Matches], true);
        assert_eq!(states, vec![owned_by(3, "b"), EntryState::Kept]);
    }

    #[test]
    fn a_shared_slot_no_header_names_leaves_every_claimant_stale() {
        let entries = [entry("a", 3), entry("b", 3)];
        let states = run(&entries, &[stale(), stale()], true);
        assert!(
            states.iter().all(|s| matches!(s, EntryState::Stale(_))),
            "{states:?}"
        );
    }

    #[test]
    fn an_unreadable_shared_slot_stays_owned_by_its_first_claimant_when_kept() {
        let entries = [entry("a", 3), entry("b", 3)];
        let states = run(&entries, &[eio(), eio()], true);
        let error = IoError::Os(rbio_core::Errno::EIO);
        assert_eq!(
            states,
            vec![
                EntryState::Unreadable { error, kept: true },
                owned_by(3, "a")
            ]
        );
        let dropped = run(&entries, &[eio(), eio()], false);
        assert!(dropped
            .iter()
            .all(|s| matches!(s, EntryState::Unreadable { kept: false, .. })));
    }

    #[test]
    fn the_last_entry_with_a_key_counts_and_does_not_contest_with_its_predecessor() {
        let entries = [entry("a", 3), entry("a", 3), entry("a", 5)];
        let states = run(
            &entries,
            &[Verdict::Matches, Verdict::Matches, Verdict::Matches],
            true,
        );
        let superseded = EntryState::Rejected(RejectReason::DuplicateKey);
        assert_eq!(
            states,
            vec![superseded.clone(), superseded, EntryState::Kept]
        );
    }

    #[test]
    fn rule_breakers_are_rejected_and_claim_nothing() {
        let mut outside = entry("x", 0);
        outside.fields.as_mut().unwrap().offset_bytes = 4096;
        let entries = [outside, entry("y", 0)];
        let states = run(&entries, &[Verdict::Matches, Verdict::Matches], true);
        assert!(
            matches!(states[0], EntryState::Rejected(RejectReason::Rule(_))),
            "{:?}",
            states[0]
        );
        assert_eq!(states[1], EntryState::Kept);
    }

    #[test]
    fn per_entry_progress_stays_small() {
        assert!(std::mem::size_of::<Pending>() <= 32);
    }
}

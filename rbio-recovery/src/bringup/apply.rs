//! Apply: the spec's per-entry rules, duplicate keys (the last one counts, as in LMCache's
//! dict), and the slot claims left for validation, sorted by slot so reads go in device order.

use std::collections::HashMap;

use crate::format::{CheckpointEntry, Geometry};
use crate::report::{EntryState, RejectReason};

/// Entries after apply.
pub(crate) struct Applied {
    /// Per checkpoint entry: its state if apply decided it, `None` if it awaits validation.
    pub(crate) states: Vec<Option<EntryState>>,
    /// `(slot_index, entry_index)` of every entry that passed apply, sorted: entries naming the
    /// same slot are adjacent, in checkpoint order.
    pub(crate) claims: Vec<(u64, u32)>,
}

/// Applies the per-entry rules to `entries`.
pub(crate) fn apply(entries: &[CheckpointEntry<'_>], geometry: &Geometry) -> Applied {
    let mut last_of_key: HashMap<&str, u32> = HashMap::with_capacity(entries.len());
    for (entry_index, entry) in entries.iter().enumerate() {
        last_of_key.insert(entry.key.as_ref(), entry_index as u32);
    }
    let mut states = Vec::with_capacity(entries.len());
    let mut claims = Vec::with_capacity(entries.len());
    for (entry_index, entry) in entries.iter().enumerate() {
        let superseded = last_of_key[entry.key.as_ref()] != entry_index as u32;
        let state = if superseded {
            Some(EntryState::Rejected(RejectReason::DuplicateKey))
        } else {
            match entry.slot_index(geometry) {
                Ok(slot_index) => {
                    claims.push((slot_index, entry_index as u32));
                    None
                }
                Err(rejection) => Some(EntryState::Rejected(RejectReason::Rule(rejection))),
            }
        };
        states.push(state);
    }
    claims.sort_unstable();
    Applied { states, claims }
}

/// Without validation: the first entry naming a slot keeps it.
pub(crate) fn keep_first_claims(applied: &mut Applied, entries: &[CheckpointEntry<'_>]) {
    let Applied { states, claims } = applied;
    for group in claims.chunk_by(|a, b| a.0 == b.0) {
        let (slot_index, owner_index) = group[0];
        states[owner_index as usize] = Some(EntryState::Kept);
        for &(_, entry_index) in &group[1..] {
            let owner = entries[owner_index as usize].key.to_string();
            let reason = RejectReason::DuplicateSlot { slot_index, owner };
            states[entry_index as usize] = Some(EntryState::Rejected(reason));
        }
    }
}

//! The recovered index: every entry's final state becomes the index, the free list and the
//! report's counts and entries; `next_slot` is raised past any slot a kept entry owns.
//!
//! A slot whose header was not validated never goes on the free list: an unreadable entry
//! dropped from the index (`--drop-unreadable`) still holds its slot (the report's
//! `unreadable_dropped` counts them).

use super::compact::Index;
use super::{BringupError, Recovered};
use crate::format::Geometry;
use crate::report::{EntryOutcome, EntryState, Report, Warning};

/// What building the index needs besides the entries.
pub(super) struct Inputs<'g> {
    /// Where slots are.
    pub(super) geometry: &'g Geometry,
    /// The checkpoint's `next_slot`.
    pub(super) next_slot: u64,
    /// List every entry in the report, not only those not simply kept.
    pub(super) report_all_entries: bool,
}

/// Builds the index, free list and report from every entry's final state, keeping the
/// indexed entries of `entries` in place. `malformed` lists (ascending) the entries that had
/// no fields: the report gives them no offset or size.
pub(super) fn build(
    inputs: &Inputs<'_>,
    mut entries: Index,
    malformed: &[usize],
    states: Vec<EntryState>,
    mut report: Report,
) -> Result<Recovered, BringupError> {
    let mut owned_slots = Vec::new();
    report.counts.in_checkpoint = entries.len() as u64;
    for (entry_index, state) in states.iter().enumerate() {
        report.counts.add(state);
        let entry = entries.get(entry_index).expect("one state per entry");
        let has_fields = malformed.binary_search(&entry_index).is_err();
        if inputs.report_all_entries || *state != EntryState::Kept {
            report.entries.push(EntryOutcome {
                key: entry.key.to_string(),
                offset_bytes: has_fields.then_some(entry.offset_bytes),
                size_bytes: has_fields.then_some(entry.size_bytes),
                state: state.clone(),
            });
        }
        let unread_dropped = matches!(state, EntryState::Unreadable { kept: false, .. });
        if !state.is_in_index() && !unread_dropped {
            continue;
        }
        let slot_index = inputs
            .geometry
            .slot_index_of(entry.offset_bytes)
            .expect("entries in the index or unread passed apply");
        owned_slots.push(slot_index);
    }
    entries.retain_positions(|entry_index| states[entry_index].is_in_index());
    owned_slots.sort_unstable();
    owned_slots.dedup();
    let next_slot = next_slot_past(inputs.next_slot, &owned_slots, &mut report);
    let free_slots = free_slots(next_slot, &owned_slots)?;
    Ok(Recovered {
        index: entries,
        free_slots,
        next_slot,
        report,
    })
}

/// `next_slot`, raised past any slot an indexed entry owns: LMCache hands out slots from
/// `next_slot` on, and must never hand out one that a kept entry still holds.
fn next_slot_past(next_slot: u64, owned_slots: &[u64], report: &mut Report) -> u64 {
    match owned_slots.last() {
        Some(&highest) if highest >= next_slot => {
            report.warnings.push(Warning::NextSlotRaised {
                next_slot,
                highest_owned: highest,
            });
            highest + 1
        }
        _ => next_slot,
    }
}

/// The most slots a free list may hold (2 GiB of slot numbers): a checkpoint whose
/// `next_slot` needs more is refused rather than exhausting memory.
pub const FREE_SLOTS_MAX: u64 = 1 << 28;

/// Every slot below `next_slot` that `owned_slots` (sorted) does not hold, ascending.
fn free_slots(next_slot: u64, owned_slots: &[u64]) -> Result<Vec<u64>, BringupError> {
    free_slots_at_most(next_slot, owned_slots, FREE_SLOTS_MAX)
}

/// [`free_slots`] with the bound on its length as a parameter.
fn free_slots_at_most(
    next_slot: u64,
    owned_slots: &[u64],
    limit: u64,
) -> Result<Vec<u64>, BringupError> {
    let owned_below = owned_slots.partition_point(|&slot| slot < next_slot) as u64;
    let free_count = next_slot - owned_below.min(next_slot);
    if free_count > limit {
        return Err(BringupError::TooManySlots { next_slot, limit });
    }
    let mut owned = owned_slots.iter().peekable();
    let mut free = Vec::with_capacity(free_count as usize);
    for slot in 0..next_slot {
        while owned.next_if(|&&owned_slot| owned_slot < slot).is_some() {}
        if owned.peek() != Some(&&slot) {
            free.push(slot);
        }
    }
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_are_the_unowned_slots_below_next_slot() {
        assert_eq!(free_slots(5, &[1, 3]).unwrap(), vec![0, 2, 4]);
        assert_eq!(free_slots(3, &[0, 1, 2, 7]).unwrap(), Vec::<u64>::new());
        assert_eq!(free_slots(0, &[]).unwrap(), Vec::<u64>::new());
        assert_eq!(free_slots(4, &[]).unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_free_list_too_large_to_hold_is_a_typed_error() {
        let error = free_slots_at_most(12, &[0], 10).unwrap_err();
        assert!(
            matches!(
                error,
                BringupError::TooManySlots {
                    next_slot: 12,
                    limit: 10
                }
            ),
            "{error}"
        );
        assert_eq!(free_slots_at_most(11, &[0], 10).unwrap().len(), 10);
        let error = free_slots(FREE_SLOTS_MAX + 2, &[0]).unwrap_err();
        assert!(
            matches!(error, BringupError::TooManySlots { .. }),
            "{error}"
        );
    }
}

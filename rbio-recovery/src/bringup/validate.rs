//! Validation: one header read per claimed slot, streamed through the caller's engine with
//! bounded memory; each claimant is judged against the header it names.

use rbio_core::{BufferPool, Completion, Engine, IoError, OpSpec, Stream, StreamError};

use super::apply::Applied;
use super::{Phase, Progress};
use crate::format::{CheckpointEntry, Geometry, KeyNamespace, SlotHeader, SlotHeaderError};
use crate::report::{EntryState, RejectReason, StaleReason};

/// What validation needs besides the engine.
pub(crate) struct Validation<'a> {
    pub(crate) geometry: &'a Geometry,
    pub(crate) namespace: KeyNamespace,
    pub(crate) entries: &'a [CheckpointEntry<'a>],
    pub(crate) header_read_bytes: usize,
    pub(crate) window_ops_max: usize,
    pub(crate) keep_unreadable: bool,
}

/// How often validation reports progress, in slots.
const PROGRESS_EVERY_SLOTS: u64 = 1 << 14;

impl Validation<'_> {
    /// Reads every claimed slot's header and decides each claimant's state.
    pub(crate) fn run(
        &self,
        engine: &mut dyn Engine,
        pool: &BufferPool,
        applied: &mut Applied,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), StreamError> {
        let Applied { states, claims } = applied;
        let claims: &[(u64, u32)] = claims;
        let groups: Vec<(usize, usize)> = group_bounds(claims);
        let total = groups.len() as u64;
        let specs = groups.iter().enumerate().map(|(group_index, &(start, _))| {
            let slot_offset = self.geometry.slot_offset_bytes(claims[start].0);
            OpSpec::read(group_index as u64, slot_offset, self.header_read_bytes)
        });
        let mut done = 0u64;
        Stream::new(engine, pool)
            .window(self.window_ops_max)
            .run_reads(specs, |completion| {
                let (start, end) = groups[completion.tag() as usize];
                self.judge_group(&claims[start..end], completion, states);
                done += 1;
                if done % PROGRESS_EVERY_SLOTS == 0 || done == total {
                    progress(Progress {
                        phase: Phase::Validate,
                        done,
                        total,
                    });
                }
            })
            .map(|_| ())
    }

    /// Decides the state of every entry claiming one slot, from that slot's header.
    fn judge_group(
        &self,
        group: &[(u64, u32)],
        completion: &Completion,
        states: &mut [Option<EntryState>],
    ) {
        let header = completion
            .check()
            .map(|_| SlotHeader::decode(completion.data()))
            .map_err(|failure| failure.error);
        let slot_index = group[0].0;
        match header {
            Err(error) => self.judge_unreadable(group, error, states),
            Ok(header) => {
                let verdicts: Vec<Result<(), StaleReason>> = group
                    .iter()
                    .map(|&(_, entry_index)| self.judge(entry_index, &header))
                    .collect();
                let owner_index = group
                    .iter()
                    .zip(&verdicts)
                    .find(|(_, verdict)| verdict.is_ok())
                    .map(|(&(_, entry_index), _)| entry_index);
                for (&(_, entry_index), verdict) in group.iter().zip(verdicts) {
                    states[entry_index as usize] = Some(match (owner_index, verdict) {
                        (Some(owner_index), _) if owner_index == entry_index => EntryState::Kept,
                        (Some(owner_index), _) => {
                            EntryState::Rejected(RejectReason::DuplicateSlot {
                                slot_index,
                                owner: self.key_of(owner_index),
                            })
                        }
                        (None, Err(reason)) => EntryState::Stale(reason),
                        (None, Ok(())) => unreachable!("a matching entry is the owner"),
                    });
                }
            }
        }
    }

    /// The first claimant keeps the slot (if unreadable entries are kept); the others yield.
    fn judge_unreadable(
        &self,
        group: &[(u64, u32)],
        error: IoError,
        states: &mut [Option<EntryState>],
    ) {
        let (slot_index, first_index) = group[0];
        states[first_index as usize] = Some(EntryState::Unreadable {
            error: error.clone(),
            kept: self.keep_unreadable,
        });
        for &(_, entry_index) in &group[1..] {
            states[entry_index as usize] = Some(if self.keep_unreadable {
                EntryState::Rejected(RejectReason::DuplicateSlot {
                    slot_index,
                    owner: self.key_of(first_index),
                })
            } else {
                EntryState::Unreadable {
                    error: error.clone(),
                    kept: false,
                }
            });
        }
    }

    /// Whether `header` vouches for entry `entry_index`.
    fn judge(
        &self,
        entry_index: u32,
        header: &Result<SlotHeader, SlotHeaderError>,
    ) -> Result<(), StaleReason> {
        let entry = &self.entries[entry_index as usize];
        let header = header.as_ref().map_err(|_| StaleReason::BadMagic)?;
        let expected = self
            .namespace
            .identity(&entry.key)
            .map_err(StaleReason::IdentityNotDerivable)?;
        if header.identity != expected {
            return Err(StaleReason::IdentityMismatch {
                header: header.identity,
                expected,
            });
        }
        let size_bytes = entry.fields.as_ref().map_or(0, |fields| fields.size_bytes);
        if header.payload_len_bytes != size_bytes {
            return Err(StaleReason::LengthMismatch {
                header: header.payload_len_bytes,
                checkpoint: size_bytes,
            });
        }
        Ok(())
    }

    fn key_of(&self, entry_index: u32) -> String {
        self.entries[entry_index as usize].key.to_string()
    }
}

/// `(start, end)` of each run of equal slots in the sorted claims.
fn group_bounds(claims: &[(u64, u32)]) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let mut start = 0;
    for group in claims.chunk_by(|a, b| a.0 == b.0) {
        bounds.push((start, start + group.len()));
        start += group.len();
    }
    bounds
}

//! The parser thread: parses the checkpoint payload and hands entries to validation in
//! batches as they are read, so header reads start before parsing ends.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::format::{Checkpoint, CheckpointEntry, CheckpointError, CheckpointHead, EntryEvent};

/// Entries per batch the parser hands to validation.
const PARSE_BATCH_ENTRIES: usize = 4096;
/// Batches the parser may run ahead of validation.
pub(super) const PARSE_BATCHES_QUEUED: usize = 16;

/// What the parser thread found besides the entries it sent.
pub(super) struct ParsedHead<'a> {
    pub(super) head: Result<CheckpointHead<'a>, CheckpointError>,
    /// A second top-level `entries` field replaced the first: the entries sent are void.
    pub(super) restarted: bool,
}

/// Parses `payload`, sending entries in batches as they are read; returns the head (or why the
/// payload is not a checkpoint) and the time spent parsing, not counting the time spent
/// waiting for validation to take a batch (the channel is bounded, so a parser that runs
/// ahead waits).
pub(super) fn parse_in_batches<'a>(
    payload: &'a [u8],
    sender: mpsc::SyncSender<Vec<CheckpointEntry<'a>>>,
) -> (ParsedHead<'a>, Duration) {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    let mut batch = Vec::with_capacity(PARSE_BATCH_ENTRIES);
    let mut receiver_gone = false;
    let mut restarted = false;
    let head = Checkpoint::parse_streaming(payload, &mut |event| match event {
        EntryEvent::Restart => restarted = true,
        EntryEvent::Entry(_) if restarted || receiver_gone => {}
        EntryEvent::Entry(entry) => {
            batch.push(entry);
            if batch.len() == PARSE_BATCH_ENTRIES {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(PARSE_BATCH_ENTRIES));
                let send_started = Instant::now();
                receiver_gone = sender.send(full).is_err();
                waited += send_started.elapsed();
            }
        }
    });
    if !receiver_gone && !restarted && !batch.is_empty() {
        // The receiver may have stopped early (engine failure); then there is no one to tell.
        let send_started = Instant::now();
        let _ = sender.send(batch);
        waited += send_started.elapsed();
    }
    let parsed = ParsedHead { head, restarted };
    (parsed, started.elapsed().saturating_sub(waited))
}

//! The parser thread: parses the checkpoint payload and hands entries to validation in
//! batches as they are read, so header reads start before parsing ends.
//!
//! The whole-checkpoint rules run before the first entry is handed over: LMCache writes every
//! field they read before `entries`, so the parser decides when it reaches `entries`, and a
//! checkpoint the rules ignore costs no header read. A payload whose fields come later (not
//! written by LMCache) is held until the parse has finished and the rules have its final head.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::format::{
    ApplyRejection, Checkpoint, CheckpointEntry, CheckpointError, CheckpointHead, EntryEvent,
};

/// Entries per batch the parser hands to validation.
const PARSE_BATCH_ENTRIES: usize = 4096;
/// Batches the parser may run ahead of validation.
pub(super) const PARSE_BATCHES_QUEUED: usize = 16;

/// The whole-checkpoint rules, as bringup configured them.
pub(super) type Rules<'r> = dyn Fn(&CheckpointHead<'_>) -> Result<(), ApplyRejection> + Sync + 'r;

/// What the parser thread found besides the entries it sent.
pub(super) struct ParsedHead<'a> {
    pub(super) head: Result<CheckpointHead<'a>, CheckpointError>,
    /// The entries sent are not the checkpoint's: a second top-level `entries` field replaced
    /// the first, or the head read before `entries` was refused and a later field changed
    /// the verdict. Validate again from a sequential parse if the checkpoint is accepted.
    pub(super) revalidate: bool,
}

/// What the parser does with entries, decided when it reaches `entries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// The rules accept the head: entries go to validation as they are read.
    Send,
    /// The rules ignore the checkpoint: entries are dropped, no header is read.
    Drop,
    /// The head lacks fields the rules read (or `entries` is not reached yet): entries wait
    /// for the end of the parse.
    Hold,
}

/// The parser thread's state while the payload streams through.
struct Batcher<'a, 's> {
    sender: &'s mpsc::SyncSender<Vec<CheckpointEntry<'a>>>,
    batch: Vec<CheckpointEntry<'a>>,
    held: Vec<CheckpointEntry<'a>>,
    flow: Flow,
    receiver_gone: bool,
    restarted: bool,
    waited: Duration,
}

impl<'a> Batcher<'a, '_> {
    fn entry(&mut self, entry: CheckpointEntry<'a>) {
        match self.flow {
            _ if self.restarted || self.receiver_gone => {}
            Flow::Send => {
                self.batch.push(entry);
                if self.batch.len() == PARSE_BATCH_ENTRIES {
                    self.flush();
                }
            }
            Flow::Hold => self.held.push(entry),
            Flow::Drop => {}
        }
    }

    /// Sends the batch; a receiver that stopped early (engine failure) gets nothing more.
    fn flush(&mut self) {
        if self.receiver_gone || self.batch.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(PARSE_BATCH_ENTRIES));
        let send_started = Instant::now();
        self.receiver_gone = self.sender.send(full).is_err();
        self.waited += send_started.elapsed();
    }
}

/// Parses `payload`, deciding `rules` at `entries` and sending entries in batches as they are
/// read if the rules accept; returns the head (or why the payload is not a checkpoint) and the
/// time spent parsing, not counting the time spent waiting for validation to take a batch
/// (the channel is bounded, so a parser that runs ahead waits).
pub(super) fn parse_in_batches<'a>(
    payload: &'a [u8],
    rules: &Rules<'_>,
    sender: mpsc::SyncSender<Vec<CheckpointEntry<'a>>>,
) -> (ParsedHead<'a>, Duration) {
    let started = Instant::now();
    let mut batcher = Batcher {
        sender: &sender,
        batch: Vec::with_capacity(PARSE_BATCH_ENTRIES),
        held: Vec::new(),
        flow: Flow::Hold,
        receiver_gone: false,
        restarted: false,
        waited: Duration::ZERO,
    };
    let head = Checkpoint::parse_streaming(payload, &mut |event| match event {
        EntryEvent::EntriesStart(head) => {
            batcher.flow = match head {
                Ok(head) if head.has_rule_fields() => match rules(&head) {
                    Ok(()) => Flow::Send,
                    Err(_) => Flow::Drop,
                },
                Ok(_) => Flow::Hold,
                Err(_) => Flow::Drop,
            };
        }
        EntryEvent::Restart => batcher.restarted = true,
        EntryEvent::Entry(entry) => batcher.entry(entry),
    });
    let accepted = head.as_ref().is_ok_and(|head| rules(head).is_ok());
    if batcher.flow == Flow::Hold && accepted {
        batcher.flow = Flow::Send;
        for entry in std::mem::take(&mut batcher.held) {
            batcher.entry(entry);
        }
    }
    if !batcher.restarted {
        batcher.flush();
    }
    let refused_early = batcher.flow == Flow::Drop;
    let parsed = ParsedHead {
        head,
        revalidate: batcher.restarted || (refused_early && accepted),
    };
    (parsed, started.elapsed().saturating_sub(batcher.waited))
}

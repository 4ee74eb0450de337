//! The parser thread: parses the checkpoint payload and hands entries to validation in
//! batches as they are read, so header reads start before parsing ends.
//!
//! The whole-checkpoint rules run before the first entry is handed over: LMCache writes every
//! field they read before `entries`, so the parser decides when it reaches `entries`, and a
//! checkpoint the rules ignore costs no header read. A payload whose fields come later (not
//! written by LMCache) is held until the parse has finished and the rules have its final head.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Progress;
use crate::format::{
    ApplyRejection, Checkpoint, CheckpointEntry, CheckpointError, CheckpointHead, EntryEvent,
};

/// Entries per batch the parser hands to validation.
const PARSE_BATCH_ENTRIES: usize = 4096;
/// Batches the parser may run ahead of validation: 16k entries, a quarter second of header
/// reads at this machine's pace, and about 2 MiB of parsed entries held in the channel.
pub(super) const PARSE_BATCHES_QUEUED: usize = 4;

/// The whole-checkpoint rules, as bringup configured them.
pub(super) type Rules<'r> = dyn Fn(&CheckpointHead<'_>) -> Result<(), ApplyRejection> + Sync + 'r;

/// What the parser thread found besides the entries it sent.
pub(super) struct ParsedHead {
    pub(super) head: Result<CheckpointHead<'static>, CheckpointError>,
    /// The entries sent are not the checkpoint's: a second top-level `entries` field replaced
    /// the first, or the head read before `entries` was refused and a later field changed
    /// the verdict. Validate again from a sequential parse if the checkpoint is accepted.
    pub(super) revalidate: bool,
}

/// How far the parser has come, shared with the thread reporting validation's progress.
#[derive(Debug, Default)]
pub(super) struct ParseProgress {
    /// Entries handed to validation (some may still wait in the channel).
    sent_entries: AtomicU64,
    /// Payload bytes parsed up to the last entry handed to validation.
    parsed_bytes: AtomicUsize,
    /// Whether the parse has ended (every entry is known).
    done: AtomicBool,
}

impl ParseProgress {
    /// `progress` as validation reported it (its total: the entries it has received), with
    /// the total estimated from the entries sent against the payload bytes they took, while
    /// the parse goes on.
    pub(super) fn estimated(&self, progress: Progress, payload_bytes: usize) -> Progress {
        let sent_entries = self.sent_entries.load(Ordering::Relaxed);
        if self.done.load(Ordering::Relaxed) {
            // Every entry is sent: the total is a count.
            return Progress {
                total: sent_entries.max(progress.total),
                ..progress
            };
        }
        let parsed_bytes = self.parsed_bytes.load(Ordering::Relaxed);
        let estimate = estimate_total(sent_entries, parsed_bytes, payload_bytes);
        Progress {
            total: estimate.max(progress.total),
            total_is_estimate: true,
            ..progress
        }
    }
}

/// The entries a payload of `payload_bytes` holds if the rest is like the `parsed_bytes`
/// that held `entries_so_far`: never fewer than those.
fn estimate_total(entries_so_far: u64, parsed_bytes: usize, payload_bytes: usize) -> u64 {
    if parsed_bytes == 0 {
        return entries_so_far;
    }
    let estimate = u128::from(entries_so_far) * payload_bytes as u128 / parsed_bytes as u128;
    u64::try_from(estimate)
        .unwrap_or(u64::MAX)
        .max(entries_so_far)
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

/// The payload's pieces, read in order, each freed as soon as the parser has read past it:
/// the payload is never held whole while the entries built from it grow.
pub(super) struct PayloadReader<'c> {
    chunks: VecDeque<Vec<u8>>,
    /// How far into the front piece the parser has read.
    position: usize,
    /// Bytes read so far, for progress.
    read_bytes: &'c Cell<usize>,
}

impl<'c> PayloadReader<'c> {
    /// Reads `chunks` in order, counting the bytes read in `read_bytes`.
    pub(super) fn new(chunks: Vec<Vec<u8>>, read_bytes: &'c Cell<usize>) -> PayloadReader<'c> {
        PayloadReader {
            chunks: chunks.into(),
            position: 0,
            read_bytes,
        }
    }
}

impl io::Read for PayloadReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(front) = self.chunks.front() {
            let rest = &front[self.position..];
            if !rest.is_empty() {
                let len = buf.len().min(rest.len());
                buf[..len].copy_from_slice(&rest[..len]);
                self.position += len;
                self.read_bytes.set(self.read_bytes.get() + len);
                return Ok(len);
            }
            self.chunks.pop_front();
            self.position = 0;
        }
        Ok(0)
    }
}

/// Whether the payload read as `chunks` is UTF-8, as [`Checkpoint::parse`] requires before
/// parsing; the error is the one a parse of the whole payload gives.
pub(super) fn check_utf8(chunks: &[Vec<u8>]) -> Result<(), CheckpointError> {
    // A character may straddle two pieces: `carry` holds the start of one.
    let mut carry: Vec<u8> = Vec::new();
    let mut valid = true;
    for chunk in chunks {
        carry.extend_from_slice(chunk);
        match std::str::from_utf8(&carry) {
            Ok(_) => carry.clear(),
            Err(error) if error.error_len().is_none() => {
                carry.drain(..error.valid_up_to());
            }
            Err(_) => {
                valid = false;
                break;
            }
        }
    }
    if valid && carry.is_empty() {
        return Ok(());
    }
    // Rare: the whole payload, once, for the error's exact place.
    match std::str::from_utf8(&chunks.concat()) {
        Ok(_) => Ok(()),
        Err(error) => Err(CheckpointError::NotUtf8(error)),
    }
}

/// The parser thread's state while the payload streams through.
struct Batcher<'s> {
    read_bytes: &'s Cell<usize>,
    progress: &'s ParseProgress,
    sender: &'s mpsc::SyncSender<Vec<CheckpointEntry<'static>>>,
    batch: Vec<CheckpointEntry<'static>>,
    held: Vec<CheckpointEntry<'static>>,
    flow: Flow,
    receiver_gone: bool,
    restarted: bool,
    waited: Duration,
    /// Entries sent so far.
    sent_count: u64,
}

impl Batcher<'_> {
    fn entry(&mut self, entry: CheckpointEntry<'static>) {
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
        self.sent_count += full.len() as u64;
        self.progress
            .parsed_bytes
            .store(self.read_bytes.get(), Ordering::Relaxed);
        self.progress
            .sent_entries
            .store(self.sent_count, Ordering::Relaxed);
        let send_started = Instant::now();
        self.receiver_gone = self.sender.send(full).is_err();
        self.waited += send_started.elapsed();
    }
}

/// Parses `payload` (UTF-8, in pieces freed as they are read), deciding `rules` at `entries`
/// and sending entries in batches as they are read if the rules accept; returns the head (or
/// why the payload is not a checkpoint) and the time spent parsing, not counting the time
/// spent waiting for validation to take a batch (the channel is bounded, so a parser that
/// runs ahead waits).
pub(super) fn parse_in_batches(
    payload: Vec<Vec<u8>>,
    rules: &Rules<'_>,
    progress: &ParseProgress,
    sender: mpsc::SyncSender<Vec<CheckpointEntry<'static>>>,
) -> (ParsedHead, Duration) {
    let started = Instant::now();
    let read_bytes = Cell::new(0);
    let mut batcher = Batcher {
        read_bytes: &read_bytes,
        progress,
        sender: &sender,
        batch: Vec::with_capacity(PARSE_BATCH_ENTRIES),
        held: Vec::new(),
        flow: Flow::Hold,
        receiver_gone: false,
        restarted: false,
        waited: Duration::ZERO,
        sent_count: 0,
    };
    let reader = PayloadReader::new(payload, &read_bytes);
    let head = Checkpoint::parse_reader(reader, &mut |event| match event {
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
    progress.done.store(true, Ordering::Relaxed);
    let refused_early = batcher.flow == Flow::Drop;
    let parsed = ParsedHead {
        head,
        revalidate: batcher.restarted || (refused_early && accepted),
    };
    (parsed, started.elapsed().saturating_sub(batcher.waited))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bringup::Phase;

    #[test]
    fn the_total_grows_with_the_share_of_the_payload_still_unparsed() {
        assert_eq!(estimate_total(1000, 250, 1000), 4000);
        assert_eq!(estimate_total(1000, 1000, 1000), 1000);
        assert_eq!(
            estimate_total(7, 0, 1000),
            7,
            "nothing parsed: nothing to scale"
        );
        assert_eq!(
            estimate_total(10, 2000, 1000),
            10,
            "never below what is known"
        );
        assert_eq!(estimate_total(u64::MAX, 1, usize::MAX), u64::MAX);
    }

    #[test]
    fn the_estimate_stops_when_the_parse_ends() {
        let progress = ParseProgress::default();
        progress.parsed_bytes.store(100, Ordering::Relaxed);
        progress.sent_entries.store(20, Ordering::Relaxed);
        // Validation has received 10 of the 20 sent, which took 100 of 300 bytes.
        let reported = Progress {
            phase: Phase::Validate,
            done: 5,
            total: 10,
            total_is_estimate: false,
        };
        let estimated = progress.estimated(reported, 300);
        assert_eq!((estimated.total, estimated.total_is_estimate), (60, true));
        progress.done.store(true, Ordering::Relaxed);
        let counted = progress.estimated(reported, 300);
        assert_eq!((counted.total, counted.total_is_estimate), (20, false));
    }

    #[test]
    fn the_reader_frees_each_piece_once_read_past() {
        use std::io::Read;
        let read_bytes = Cell::new(0);
        let chunks = vec![b"ab".to_vec(), Vec::new(), b"cde".to_vec()];
        let mut reader = PayloadReader::new(chunks, &read_bytes);
        let mut buf = [0u8; 4];
        assert_eq!(reader.read(&mut buf).unwrap(), 2);
        assert_eq!(
            reader.chunks.len(),
            3,
            "the first piece is not yet read past"
        );
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"cde");
        assert_eq!(reader.chunks.len(), 1, "the first two pieces are freed");
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
        assert!(reader.chunks.is_empty());
        assert_eq!(read_bytes.get(), 5);
    }

    #[test]
    fn utf8_is_checked_across_pieces_with_the_whole_payload_s_error() {
        let text = "{\"k\":\"é€\"}".as_bytes();
        for cut in 0..=text.len() {
            let chunks = vec![text[..cut].to_vec(), text[cut..].to_vec()];
            assert!(check_utf8(&chunks).is_ok(), "cut at {cut}");
        }
        let mut broken = text.to_vec();
        broken.truncate(broken.len() - 3);
        broken.extend_from_slice(b"\"}");
        let whole = std::str::from_utf8(&broken).unwrap_err();
        for cut in 0..=broken.len() {
            let chunks = vec![broken[..cut].to_vec(), broken[cut..].to_vec()];
            let Err(CheckpointError::NotUtf8(error)) = check_utf8(&chunks) else {
                panic!("cut at {cut}: not refused");
            };
            assert_eq!(error, whole, "cut at {cut}");
        }
    }
}

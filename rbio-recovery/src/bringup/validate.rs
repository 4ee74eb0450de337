//! Validation: entries stream in (from the parser), pass apply's per-entry rules, and each
//! claimed slot's header is read through the caller's engine with bounded memory, while later
//! entries are still arriving.

use std::cell::RefCell;

use std::time::Duration;

use rbio_core::{BufferPool, Completion, Engine, IoError, OpError, OpSpec, Stream, StreamError};

use super::apply::{Claims, Pending, Verdict};
use super::compact::Index;
use super::{Phase, Progress};
use crate::format::{CheckpointEntry, Geometry, KeyNamespace, SlotHeader};
use crate::report::StaleReason;

/// What validation needs besides the engine and the entries.
pub(crate) struct Validation<'g> {
    pub(crate) geometry: &'g Geometry,
    pub(crate) namespace: KeyNamespace,
    pub(crate) header_read_bytes: usize,
    pub(crate) window_ops_max: usize,
    pub(crate) verify: bool,
}

/// Entries seen so far and their progress, shared by the op source and the visitor.
pub(crate) struct Ledger {
    /// Every entry taken, in order (a malformed one with its key only).
    pub(crate) entries: Index,
    /// Positions of the malformed entries, ascending.
    pub(crate) malformed: Vec<usize>,
    pub(crate) pending: Vec<Pending>,
    pub(crate) claims: Claims,
    /// The first read refused as a configuration error: no further reads are issued and
    /// bringup stops.
    pub(crate) configuration: Option<OpError>,
    /// The device stalled: how long validation waited, and how many entries it never read.
    pub(crate) stalled: Option<(Duration, u64)>,
}

impl Ledger {
    /// Judges every claim still awaiting its header as unreadable: the device stalled before
    /// answering it (or before it was read at all).
    fn mark_stalled(&mut self, waited: Duration) {
        let mut unread_count = 0;
        for pending in &mut self.pending {
            if let Pending::Claims(slot_index) = *pending {
                let error = IoError::DeviceStalled { waited };
                *pending = Pending::Judged(slot_index, Verdict::Unreadable(Box::new(error)));
                unread_count += 1;
            }
        }
        self.stalled = Some((waited, unread_count));
    }
}

/// How often validation reports progress, in entries.
const PROGRESS_EVERY_ENTRIES: u64 = 1 << 14;

impl Validation<'_> {
    /// Takes every entry from `source`, applies the per-entry rules and, with `verify`, reads
    /// and judges each claimed slot's header. Returns the ledger for resolution.
    ///
    /// Buffers come from `pool`, and from `reserve` while the engine holds buffers of reads
    /// that timed out. If the device stalls (nothing comes back for the stream's stall
    /// timeout) every entry is still taken from `source`, and each claim not yet answered is
    /// judged unreadable ([`IoError::DeviceStalled`]).
    ///
    /// # Errors
    /// [`StreamError::OpTooLarge`] (a header read larger than a pool buffer: a bug).
    pub(crate) fn run<'a>(
        &self,
        engine: &mut dyn Engine,
        pools: (&BufferPool, &BufferPool),
        source: impl Iterator<Item = CheckpointEntry<'a>>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Ledger, StreamError> {
        let (pool, reserve) = pools;
        let ledger = RefCell::new(Ledger {
            entries: Index::default(),
            malformed: Vec::new(),
            pending: Vec::new(),
            claims: Claims::new(),
            configuration: None,
            stalled: None,
        });
        let unrefused = |_: &CheckpointEntry<'a>| ledger.borrow().configuration.is_none();
        let specs = source.take_while(unrefused).filter_map(|entry| {
            let mut ledger = ledger.borrow_mut();
            let entry_index = ledger.entries.len() as u64;
            let mut pending = ledger.claims.admit(&entry, self.geometry);
            let spec = match pending {
                Pending::Claims(slot_index) if self.verify => {
                    let offset_bytes = self.geometry.slot_offset_bytes(slot_index);
                    Some(OpSpec::read(
                        entry_index,
                        offset_bytes,
                        self.header_read_bytes,
                    ))
                }
                Pending::Claims(slot_index) => {
                    pending = Pending::Judged(slot_index, Verdict::Matches);
                    None
                }
                _ => None,
            };
            if entry.fields.is_err() {
                ledger.malformed.push(entry_index as usize);
            }
            ledger.entries.push(&entry);
            ledger.pending.push(pending);
            spec
        });
        let mut judged = 0u64;
        let streamed = Stream::new(engine, pool)
            .window(self.window_ops_max)
            .reserve(reserve)
            .run_reads(specs, |completion| {
                let mut ledger = ledger.borrow_mut();
                let entry_index = completion.tag() as usize;
                if let Err(failure) = completion.check() {
                    if failure.error.class().is_configuration() && ledger.configuration.is_none() {
                        ledger.configuration = Some(failure);
                    }
                }
                let verdict = self.judge(&ledger.entries, entry_index, completion);
                let Pending::Claims(slot_index) = ledger.pending[entry_index] else {
                    unreachable!("a header read is issued only for a claim")
                };
                ledger.pending[entry_index] = Pending::Judged(slot_index, verdict);
                judged += 1;
                if judged % PROGRESS_EVERY_ENTRIES == 0 {
                    progress(Progress {
                        phase: Phase::Validate,
                        done: judged,
                        total: ledger.entries.len() as u64,
                        total_is_estimate: false,
                    });
                }
            });
        let mut ledger = ledger.into_inner();
        match streamed {
            Ok(_) => {}
            // The stream drained `specs`, so every entry is in the ledger.
            Err(StreamError::Stalled { waited, .. }) => ledger.mark_stalled(waited),
            Err(error) => return Err(error),
        }
        Ok(ledger)
    }

    /// What the header read for the entry at `entry_index` says about it.
    fn judge(&self, entries: &Index, entry_index: usize, completion: &Completion) -> Verdict {
        if let Err(failure) = completion.check() {
            return Verdict::Unreadable(Box::new(failure.error));
        }
        let stale = |reason| Verdict::Stale(Box::new(reason));
        let Ok(header) = SlotHeader::decode(completion.data()) else {
            return stale(StaleReason::BadMagic);
        };
        let entry = entries
            .get(entry_index)
            .expect("a read is issued for a taken entry");
        let expected = match self.namespace.identity(entry.key) {
            Ok(identity) => identity,
            Err(error) => return stale(StaleReason::IdentityNotDerivable(error)),
        };
        if header.identity != expected {
            return stale(StaleReason::IdentityMismatch {
                header: header.identity,
                expected,
            });
        }
        // Only well-formed entries claim a slot, so the size is the entry's.
        let size_bytes = entry.size_bytes;
        if header.payload_len_bytes != size_bytes {
            return stale(StaleReason::LengthMismatch {
                header: header.payload_len_bytes,
                checkpoint: size_bytes,
            });
        }
        Verdict::Matches
    }
}

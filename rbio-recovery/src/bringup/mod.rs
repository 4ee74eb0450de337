//! Bringup: open, select the checkpoint, parse, apply, validate, report, in that order and
//! each timed. Reads only; it never writes to the device.
//!
//! The validation loop is written once and fed by whatever engine the caller chose.

mod apply;
mod compact;
mod device_path;
mod index;
mod layout_read;
mod parse;
mod read;
mod select;
mod validate;

use std::fmt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{
    BufferPool, Device, Engine, ErrorClass, OpError, PoolError, StreamError, PAGE_BYTES,
};

pub use compact::{Index, IndexEntry};
pub(crate) use device_path::compared_path;
pub use index::FREE_SLOTS_MAX;
pub use layout_read::{read_layout, FoundLayout, LayoutAttempt, LayoutMiss};
pub use select::{MirrorStatus, MirrorVerdict};
// For `inspect`, which verifies both mirrors with the same selection code.
pub(crate) use select::select;

use crate::format::{
    ApplyRejection, Checkpoint, CheckpointEntry, CheckpointHead, CheckpointHeader,
    CheckpointWriter, DevicePathPolicy, EntryEvent, FormatError, Geometry, Layout,
    SLOT_HEADER_INFO_BYTES,
};
use crate::report::{
    CheckpointIgnored, ChosenCheckpoint, Counts, LayoutSource, PhaseTimes, Report, Settings,
    Warning,
};

/// How to bring a device up.
#[derive(Clone, Debug)]
pub struct BringupOptions {
    /// The layout the device was written with (LMCache's configuration).
    pub layout: Layout,
    /// The path the checkpoint's `device_path` must equal; `None`: the path the device was
    /// opened under.
    pub configured_device_path: Option<String>,
    /// Whether a recorded `device_path` naming another device ignores the checkpoint (the
    /// default, comparing devices; LMCache compares strings) or only warns (an image copied
    /// elsewhere).
    pub device_path_policy: DevicePathPolicy,
    /// Read and check every kept entry's slot header (LMCache's `meta_verify_on_load`).
    pub verify: bool,
    /// Keep entries whose header could not be read or was never answered (default), or drop
    /// them as LMCache does. Either way their slots stay off the free list.
    pub keep_unreadable: bool,
    /// Header reads in flight at once.
    pub window_ops_max: usize,
    /// The per-operation timeout to build the engine with (`rbio bringup --op-timeout`);
    /// `None`: the engine's default. Validation gives up on a stalled device after twice the
    /// engine's timeout ([`rbio_core::stall_timeout_for`]); the serial engine has none.
    pub op_timeout: Option<Duration>,
    /// List every entry in the report, not only those that were not simply kept.
    pub report_all_entries: bool,
    /// Where `layout` came from, for the report.
    pub layout_source: LayoutSource,
}

impl Default for BringupOptions {
    fn default() -> Self {
        BringupOptions {
            layout: Layout::default(),
            configured_device_path: None,
            device_path_policy: DevicePathPolicy::SameDevice,
            verify: true,
            keep_unreadable: true,
            window_ops_max: 256,
            op_timeout: None,
            report_all_entries: false,
            layout_source: LayoutSource::Configured,
        }
    }
}

/// A bringup phase, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Selecting the checkpoint.
    Select,
    /// Parsing its payload.
    Parse,
    /// Applying it.
    Apply,
    /// Validating slot headers.
    Validate,
}

/// How far a phase has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Units done (slots, for validation).
    pub done: u64,
    /// Units in all; while the checkpoint is still being parsed, an estimate.
    pub total: u64,
    /// Whether `total` is an estimate (validation's, from the share of the payload parsed so
    /// far) rather than a count.
    pub total_is_estimate: bool,
}

/// Why bringup could not produce an index.
#[non_exhaustive]
#[derive(Debug)]
pub enum BringupError {
    /// The layout does not fit the device.
    Layout(FormatError),
    /// The buffer pools could not be allocated.
    Pool(PoolError),
    /// The engine stopped answering.
    Engine(StreamError),
    /// A read was refused for how it was made, not for what the device holds (see
    /// [`rbio_core::ErrorClass::Configuration`]): every read would fail alike, so bringup
    /// stops and recovers nothing.
    Configuration(OpError),
    /// The checkpoint's `next_slot` would make a free list larger than [`FREE_SLOTS_MAX`].
    TooManySlots {
        /// `next_slot` as recovered.
        next_slot: u64,
        /// The most slots a free list may hold.
        limit: u64,
    },
    /// No layout flag was given and no checkpoint on the device records a layout.
    LayoutNotRecorded {
        /// Each mirror tried, and why it gave none.
        attempts: Vec<LayoutAttempt>,
    },
    /// No checkpoint could be accepted and at least one mirror could not be read: starting
    /// empty would discard entries the device never answered about.
    CheckpointUnreadable {
        /// Both mirrors as found.
        mirrors: Vec<MirrorStatus>,
    },
}

impl fmt::Display for BringupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BringupError::Layout(error) => write!(f, "layout does not fit the device: {error}"),
            BringupError::Pool(error) => write!(f, "buffer pool: {error}"),
            BringupError::Engine(error) => write!(f, "{error}"),
            BringupError::Configuration(error) => {
                write!(f, "configuration error, nothing recovered: {error}")?;
                if let ErrorClass::Configuration { fix } = error.error.class() {
                    write!(f, " ({fix})")?;
                }
                Ok(())
            }
            BringupError::TooManySlots { next_slot, limit } => write!(
                f,
                "next_slot {next_slot} leaves more than {limit} free slots to list"
            ),
            BringupError::LayoutNotRecorded { attempts } => {
                write!(f, "no checkpoint on the device records its layout (")?;
                for (i, attempt) in attempts.iter().enumerate() {
                    let separator = if i == 0 { "" } else { "; " };
                    write!(
                        f,
                        "{separator}mirror {} at {}: {}",
                        attempt.mirror_index, attempt.offset_bytes, attempt.miss
                    )?;
                }
                write!(
                    f,
                    "): give the layout flags (--block-align, --header-bytes, --slot-bytes, \
                     --meta-total-bytes)"
                )
            }
            BringupError::CheckpointUnreadable { mirrors } => {
                write!(f, "no checkpoint could be read:")?;
                for mirror in mirrors {
                    write!(f, " mirror {} {};", mirror.mirror_index, mirror.verdict)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for BringupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BringupError::Layout(error) => Some(error),
            BringupError::Pool(error) => Some(error),
            BringupError::Engine(error) => Some(error),
            BringupError::Configuration(error) => Some(error),
            BringupError::TooManySlots { .. }
            | BringupError::LayoutNotRecorded { .. }
            | BringupError::CheckpointUnreadable { .. } => None,
        }
    }
}

/// What bringup recovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The index, in checkpoint order.
    pub index: Index,
    /// Slots below `next_slot` that no index entry owns, ascending.
    pub free_slots: Vec<u64>,
    /// The first slot never allocated.
    pub next_slot: u64,
    /// What happened.
    pub report: Report,
}

impl Recovered {
    /// The whole bringup as one JSON object (what `rbio bringup --json` prints): the report's
    /// own keys, then `device`, `index_len`, `free_slot_count`, `next_slot` and the process's
    /// `peak_rss_bytes` (`null` where the kernel does not say).
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = self.report.to_json();
        if let serde_json::Value::Object(object) = &mut value {
            object.insert("index_len".into(), self.index.len().into());
            object.insert("free_slot_count".into(), self.free_slots.len().into());
            object.insert("next_slot".into(), self.next_slot.into());
            object.insert("peak_rss_bytes".into(), peak_rss_bytes().into());
        }
        value
    }

    /// A checkpoint payload holding the recovered state, for an explicit checkpoint write
    /// (bringup itself never writes).
    pub fn checkpoint_payload(
        &self,
        layout: &Layout,
        geometry: &Geometry,
        device_path: &str,
    ) -> Vec<u8> {
        let head = CheckpointHead::for_layout(layout, geometry, device_path, self.next_slot);
        let mut writer = CheckpointWriter::new(&head);
        for entry in &self.index {
            writer.push_texts(
                entry.key,
                entry.offset_bytes,
                entry.size_bytes,
                entry.tensor_texts,
            );
        }
        writer.finish()
    }
}

/// A device ready to be brought up, with the buffers its validation will use.
pub struct Bringup {
    device: Arc<Device>,
    options: BringupOptions,
    geometry: Geometry,
    header_pool: BufferPool,
    /// As many buffers again, used only while the engine holds header buffers of reads that
    /// timed out, so that the device keeps reading other headers meanwhile.
    header_reserve: BufferPool,
    payload_pool: BufferPool,
}

/// Bytes per payload read while selecting the checkpoint.
const PAYLOAD_CHUNK_BYTES: usize = 1 << 20;
/// Payload reads in flight at once.
const PAYLOAD_WINDOW_OPS: usize = 8;

impl Bringup {
    /// Prepares bringup of `device` with `options`: checks the layout against the device.
    ///
    /// # Errors
    /// [`BringupError::Layout`] when the layout breaks a rule or does not fit,
    /// [`BringupError::Pool`] when buffers cannot be allocated.
    pub fn new(device: Arc<Device>, options: BringupOptions) -> Result<Bringup, BringupError> {
        let geometry = options
            .layout
            .validate(device.size_bytes())
            .map_err(BringupError::Layout)?;
        let header_bytes = header_read_bytes(&device, &options.layout);
        let window = options.window_ops_max.max(1);
        let header_buffer_bytes = header_bytes.next_multiple_of(PAGE_BYTES);
        // Twice the window: the stream sends the next reads before it judges the headers
        // just read, whose buffers it still holds.
        let header_pool = BufferPool::new(header_buffer_bytes, 2 * window, PAGE_BYTES)
            .map_err(BringupError::Pool)?;
        let header_reserve =
            BufferPool::new(header_buffer_bytes, window, PAGE_BYTES).map_err(BringupError::Pool)?;
        let chunk_bytes = PAYLOAD_CHUNK_BYTES.max(options.layout.block_align as usize);
        let payload_pool = BufferPool::new(chunk_bytes, PAYLOAD_WINDOW_OPS, PAGE_BYTES)
            .map_err(BringupError::Pool)?;
        Ok(Bringup {
            device,
            options,
            geometry,
            header_pool,
            header_reserve,
            payload_pool,
        })
    }

    /// The pool validation takes header buffers from: register it with engines that use
    /// fixed buffers.
    pub fn header_pool(&self) -> &BufferPool {
        &self.header_pool
    }

    /// The device's geometry under the layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Bytes validation reads per slot header on this device (its I/O unit, at most
    /// `header_bytes`): what a benchmark replays to compare with another tool.
    pub fn header_read_bytes(&self) -> usize {
        header_read_bytes(&self.device, &self.options.layout)
    }

    /// Runs bringup through `engine`, calling `progress` as validation advances.
    ///
    /// # Errors
    /// [`BringupError::Engine`] if the engine stops answering, and
    /// [`BringupError::CheckpointUnreadable`] if no checkpoint was valid and a mirror could
    /// not be read. A checkpoint that is invalid or contradicts the layout is not an error:
    /// the index starts empty and the report says why.
    pub fn run(
        &self,
        engine: &mut dyn Engine,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Recovered, BringupError> {
        let started = Instant::now();
        let mut report = self.empty_report(engine);
        let selection = select::select(
            engine,
            &self.payload_pool,
            &self.options.layout,
            &self.geometry,
            false,
        )?;
        report.mirrors = selection.mirrors.clone();
        report.phases.select = started.elapsed();
        progress(Progress {
            phase: Phase::Select,
            done: 1,
            total: 1,
            total_is_estimate: false,
        });
        let Some((mirror_index, header, payload)) = selection.chosen else {
            let unreadable = |m: &MirrorStatus| matches!(m.verdict, MirrorVerdict::Unreadable(_));
            if selection.mirrors.iter().any(unreadable) {
                return Err(BringupError::CheckpointUnreadable {
                    mirrors: selection.mirrors,
                });
            }
            return Ok(self.finish_empty(report, started));
        };
        self.warn_unreadable_mirrors(&mut report);
        report.checkpoint = Some(ChosenCheckpoint {
            mirror_index,
            seq: header.seq,
            payload_len_bytes: header.payload_len_bytes,
        });

        self.recover(
            engine,
            (mirror_index, header),
            payload,
            report,
            started,
            progress,
        )
    }

    /// Parses `payload` (the chosen mirror's, in pieces) on a second thread, freeing each
    /// piece once parsed, while this one applies and validates the entries already parsed;
    /// then applies the whole-checkpoint rules and resolves every entry.
    fn recover(
        &self,
        engine: &mut dyn Engine,
        chosen: (usize, CheckpointHeader),
        payload: Vec<Vec<u8>>,
        mut report: Report,
        started: Instant,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Recovered, BringupError> {
        if let Err(error) = parse::check_utf8(&payload) {
            report.ignored = Some(CheckpointIgnored::Parse(Arc::new(error)));
            return Ok(self.finish_empty(report, started));
        }
        let payload_bytes: usize = payload.iter().map(Vec::len).sum();
        let validation = validate::Validation {
            geometry: &self.geometry,
            namespace: self.options.layout.namespace,
            header_read_bytes: header_read_bytes(&self.device, &self.options.layout),
            window_ops_max: self.options.window_ops_max.max(1),
            verify: self.options.verify,
        };
        let validate_started = Instant::now();
        let rules = |head: &CheckpointHead<'_>| self.whole_checkpoint_rules(head);
        let parse_progress = parse::ParseProgress::default();
        let (parsed, ledger) = std::thread::scope(|scope| {
            let (sender, receiver) =
                mpsc::sync_channel::<Vec<CheckpointEntry<'_>>>(parse::PARSE_BATCHES_QUEUED);
            let (rules, parse_progress) = (&rules, &parse_progress);
            let parser = scope
                .spawn(move || parse::parse_in_batches(payload, rules, parse_progress, sender));
            let ledger = validation.run(
                engine,
                (&self.header_pool, &self.header_reserve),
                receiver.into_iter().flatten(),
                &mut |reported| progress(parse_progress.estimated(reported, payload_bytes)),
            );
            let parsed = parser
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (parsed, ledger)
        });
        let mut ledger = ledger.map_err(BringupError::Engine)?;
        let (parse::ParsedHead { head, revalidate }, parse_time) = parsed;
        let head = match head {
            Ok(head) => head,
            Err(error) => {
                report.phases.parse = parse_time;
                report.ignored = Some(CheckpointIgnored::Parse(Arc::new(error)));
                return Ok(self.finish_empty(report, started));
            }
        };
        if let Err(rejection) = self.whole_checkpoint_rules(&head) {
            report.phases.parse = parse_time;
            report.ignored = Some(CheckpointIgnored::Apply(rejection));
            return Ok(self.finish_empty(report, started));
        }
        if revalidate {
            // Rare: the payload repeats `entries` (only the last counts), or a field after
            // `entries` overturned the verdict on the head before it: validate again from a
            // sequential parse of the whole payload, read again.
            let entries = self.reparse(engine, chosen, &report)?;
            ledger = validation
                .run(
                    engine,
                    (&self.header_pool, &self.header_reserve),
                    entries.into_iter(),
                    progress,
                )
                .map_err(BringupError::Engine)?;
        }
        if let Some(error) = ledger.configuration.take() {
            return Err(BringupError::Configuration(error));
        }
        report.phases.validate = validate_started.elapsed();
        report.header_buffer_bytes_max = ((self.header_pool.taken_max()
            + self.header_reserve.taken_max())
            * self.header_pool.buffer_bytes()) as u64;
        if let Some((waited, unread_count)) = ledger.stalled {
            report.warnings.push(Warning::DeviceStalled {
                waited,
                unread_count,
            });
        }
        report.phases.parse = parse_time;
        progress(Progress {
            phase: Phase::Parse,
            done: 1,
            total: 1,
            total_is_estimate: false,
        });

        let apply_started = Instant::now();
        let checkpoint = Checkpoint {
            head,
            entries: Vec::new(),
        };
        self.warn_device_path(&checkpoint, &mut report);
        let states = apply::resolve(
            &ledger.entries,
            ledger.pending,
            ledger.claims,
            self.options.keep_unreadable,
        );
        report.phases.apply = apply_started.elapsed();
        progress(Progress {
            phase: Phase::Apply,
            done: 1,
            total: 1,
            total_is_estimate: false,
        });
        let inputs = index::Inputs {
            geometry: &self.geometry,
            next_slot: checkpoint.next_slot(),
            report_all_entries: self.options.report_all_entries,
        };
        let mut recovered =
            index::build(&inputs, ledger.entries, &ledger.malformed, states, report)?;
        recovered.report.phases.total = started.elapsed();
        Ok(recovered)
    }

    /// Reads the chosen mirror's payload again and parses it whole, for the rare checkpoint
    /// whose streamed entries are not its own (see [`parse::ParsedHead::revalidate`]).
    ///
    /// # Errors
    /// [`BringupError::CheckpointUnreadable`] if the mirror no longer reads back as it did.
    fn reparse(
        &self,
        engine: &mut dyn Engine,
        (mirror_index, header): (usize, CheckpointHeader),
        report: &Report,
    ) -> Result<Vec<CheckpointEntry<'static>>, BringupError> {
        let offset_bytes = self.geometry.mirror_payload_offset_bytes(mirror_index);
        let read_bytes = header.payload_read_bytes(&self.geometry);
        let verdict =
            match read::read_range_chunks(engine, &self.payload_pool, offset_bytes, read_bytes) {
                Err(read::RangeError::Stream(error)) => return Err(BringupError::Engine(error)),
                Err(read::RangeError::Op(error)) => MirrorVerdict::Unreadable(error),
                Ok(mut payload) => match header.check_payload_chunks(&mut payload) {
                    Err(rejection) => MirrorVerdict::Rejected(rejection),
                    Ok(()) => {
                        let mut entries = Vec::new();
                        let read_bytes = std::cell::Cell::new(0);
                        let reader = parse::PayloadReader::new(payload, &read_bytes);
                        let parsed = Checkpoint::parse_reader(reader, &mut |event| match event {
                            EntryEvent::EntriesStart(_) => {}
                            EntryEvent::Entry(entry) => entries.push(entry),
                            EntryEvent::Restart => entries.clear(),
                        });
                        // The same bytes as the first parse (same CRC), which succeeded.
                        if parsed.is_err() {
                            entries.clear();
                        }
                        return Ok(entries);
                    }
                },
            };
        let mut mirrors = report.mirrors.clone();
        mirrors[mirror_index].verdict = verdict;
        Err(BringupError::CheckpointUnreadable { mirrors })
    }

    fn empty_report(&self, engine: &dyn Engine) -> Report {
        Report {
            device: self.device.path().display().to_string(),
            engine: engine.capabilities().name.to_string(),
            engine_features: None,
            settings: Settings {
                window_ops_max: self.options.window_ops_max.max(1),
                engine_in_flight_max: engine.capabilities().in_flight_max,
                direct: self.device.is_direct(),
                direct_refused: self.device.direct_refused(),
                op_timeout: engine.op_timeout(),
                layout_source: self.options.layout_source,
            },
            mirrors: Vec::new(),
            checkpoint: None,
            ignored: None,
            verified: self.options.verify,
            counts: Counts::default(),
            entries: Vec::new(),
            phases: PhaseTimes::default(),
            header_buffer_bytes_max: 0,
            warnings: Vec::new(),
        }
    }

    fn finish_empty(&self, mut report: Report, started: Instant) -> Recovered {
        report.phases.total = started.elapsed();
        Recovered {
            index: Index::default(),
            free_slots: Vec::new(),
            next_slot: 0,
            report,
        }
    }

    /// The whole-checkpoint rules under this bringup's layout and device path policy.
    fn whole_checkpoint_rules(&self, head: &CheckpointHead<'_>) -> Result<(), ApplyRejection> {
        let recorded = head.device_path.as_deref().unwrap_or_default();
        let configured = device_path::compared_path(
            recorded,
            self.configured_device_path(),
            self.options.device_path_policy,
        );
        let policy = self.options.device_path_policy;
        head.check_against(
            &self.options.layout,
            &self.geometry,
            Some(&configured),
            policy,
        )
    }

    fn configured_device_path(&self) -> String {
        self.options
            .configured_device_path
            .clone()
            .unwrap_or_else(|| self.device.path().to_string_lossy().into_owned())
    }

    /// Says when the checkpoint was accepted although it names the device otherwise: under
    /// another name for it, or another device with the check turned off.
    fn warn_device_path(&self, checkpoint: &Checkpoint<'_>, report: &mut Report) {
        let recorded = checkpoint.head.device_path.as_deref().unwrap_or_default();
        let configured = self.configured_device_path();
        if recorded.is_empty() || recorded == configured {
            return;
        }
        let (recorded, configured) = (recorded.to_owned(), configured);
        report.warnings.push(match self.options.device_path_policy {
            DevicePathPolicy::Ignore => Warning::DevicePathIgnored {
                recorded,
                configured,
            },
            _ => Warning::DevicePathAlias {
                recorded,
                configured,
            },
        });
    }

    fn warn_unreadable_mirrors(&self, report: &mut Report) {
        for mirror in &report.mirrors {
            if let MirrorVerdict::Unreadable(error) = &mirror.verdict {
                report.warnings.push(Warning::MirrorUnreadable {
                    mirror_index: mirror.mirror_index,
                    error: error.clone(),
                });
            }
        }
    }
}

/// The process's peak resident memory (`VmHWM`) in bytes, where `/proc` says.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes read per slot header: the device's I/O unit (logical block, or direct-I/O
/// alignment), never more than `header_bytes`, never less than the header's 24 bytes.
fn header_read_bytes(device: &Device, layout: &Layout) -> usize {
    let unit = device
        .align_bytes()
        .max(device.logical_block_bytes() as usize);
    unit.max(SLOT_HEADER_INFO_BYTES)
        .min(layout.header_bytes as usize)
}

/// Opens `path` read-only for bringup: with `direct`, through O_DIRECT where the file or
/// device takes it and through the page cache where it refuses it
/// ([`rbio_core::DeviceOptions::direct_if_supported`]; [`Device::direct_refused`] says which);
/// without, through the page cache.
///
/// # Errors
/// As [`rbio_core::DeviceOptions::open`].
pub fn open_device(path: &Path, direct: bool) -> Result<Arc<Device>, rbio_core::OpenError> {
    let options = Device::options();
    let options = if direct {
        options.direct_if_supported()
    } else {
        options
    };
    options.open(path).map(Arc::new)
}

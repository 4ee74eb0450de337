//! What bringup found: the state of every checkpoint entry, counts per state and reason, the
//! chosen checkpoint, each phase's time; rendered for people (`Display`) or as JSON.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rbio_core::{IoError, OpError};
use serde_json::{json, Value};

use crate::bringup::{MirrorStatus, MirrorVerdict};
use crate::format::{ApplyRejection, CheckpointError, EntryRejection, IdentityError};

/// Why a slot header does not vouch for its entry.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// The header does not start with `LMCBLK01` (never written, zeroed, or overwritten).
    BadMagic,
    /// The header names another identity.
    IdentityMismatch {
        /// Identity in the header.
        header: u64,
        /// Identity derived from the entry's key.
        expected: u64,
    },
    /// The header's payload length differs from the entry's size.
    LengthMismatch {
        /// Length in the header.
        header: u64,
        /// Size in the checkpoint.
        checkpoint: u64,
    },
    /// No identity can be derived from the key.
    IdentityNotDerivable(IdentityError),
}

impl StaleReason {
    /// A stable short name for JSON and tables.
    pub fn code(&self) -> &'static str {
        match self {
            StaleReason::BadMagic => "bad_magic",
            StaleReason::IdentityMismatch { .. } => "identity_mismatch",
            StaleReason::LengthMismatch { .. } => "length_mismatch",
            StaleReason::IdentityNotDerivable(_) => "identity_not_derivable",
        }
    }
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::BadMagic => write!(f, "slot header has no LMCBLK01 magic"),
            StaleReason::IdentityMismatch { header, expected } => write!(
                f,
                "identity {header:#018x} in header, {expected:#018x} derived from key"
            ),
            StaleReason::LengthMismatch { header, checkpoint } => write!(
                f,
                "payload length {header} in header, {checkpoint} in checkpoint"
            ),
            StaleReason::IdentityNotDerivable(error) => write!(f, "{error}"),
        }
    }
}

/// Why apply skipped an entry.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The entry breaks one of the spec's per-entry rules.
    Rule(EntryRejection),
    /// A later entry has the same key (as in LMCache, which loads the JSON into a dict, the
    /// last one counts).
    DuplicateKey,
    /// Another entry owns the same slot: the one the slot header names, or with validation
    /// off, the first in the checkpoint.
    DuplicateSlot {
        /// The slot both entries name.
        slot_index: u64,
        /// The key of the entry that keeps the slot.
        owner: String,
    },
}

impl RejectReason {
    /// A stable short name for JSON and tables.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Rule(_) => "rule",
            RejectReason::DuplicateKey => "duplicate_key",
            RejectReason::DuplicateSlot { .. } => "duplicate_slot",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Rule(rejection) => write!(f, "{rejection}"),
            RejectReason::DuplicateKey => {
                write!(f, "superseded by a later entry with the same key")
            }
            RejectReason::DuplicateSlot { slot_index, owner } => {
                write!(f, "slot {slot_index} belongs to entry {owner:?}")
            }
        }
    }
}

/// The one state each checkpoint entry ends in.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// In the recovered index.
    Kept,
    /// Its slot header no longer matches: dropped, its slot freed.
    Stale(StaleReason),
    /// Its header could not be read. `kept` says whether it stayed in the index (the default:
    /// never recycle what the device did not answer about) or was dropped as LMCache does.
    Unreadable {
        /// What the read returned.
        error: IoError,
        /// Whether the entry stayed in the index (and its slot stayed in use).
        kept: bool,
    },
    /// Skipped at apply.
    Rejected(RejectReason),
}

impl EntryState {
    /// "kept", "stale", "unreadable" or "rejected".
    pub fn name(&self) -> &'static str {
        match self {
            EntryState::Kept => "kept",
            EntryState::Stale(_) => "stale",
            EntryState::Unreadable { .. } => "unreadable",
            EntryState::Rejected(_) => "rejected",
        }
    }

    /// Whether the entry is in the recovered index.
    pub fn is_in_index(&self) -> bool {
        matches!(
            self,
            EntryState::Kept | EntryState::Unreadable { kept: true, .. }
        )
    }

    /// Why the entry is not simply kept, as one line; `None` when kept.
    pub fn reason(&self) -> Option<String> {
        match self {
            EntryState::Kept => None,
            EntryState::Stale(reason) => Some(reason.to_string()),
            EntryState::Unreadable { error, kept } => Some(format!(
                "{error}; {}",
                if *kept { "kept" } else { "dropped" }
            )),
            EntryState::Rejected(reason) => Some(reason.to_string()),
        }
    }
}

/// One checkpoint entry and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryOutcome {
    /// The encoded key.
    pub key: String,
    /// The offset in the checkpoint, if it could be read.
    pub offset_bytes: Option<u64>,
    /// The size in the checkpoint, if it could be read.
    pub size_bytes: Option<u64>,
    /// What became of it.
    pub state: EntryState,
}

/// How many entries ended in each state, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries in the chosen checkpoint.
    pub in_checkpoint: u64,
    /// Kept with a matching header (or unverified).
    pub kept: u64,
    /// Dropped: header magic missing.
    pub stale_bad_magic: u64,
    /// Dropped: header names another identity.
    pub stale_identity_mismatch: u64,
    /// Dropped: header gives another payload length.
    pub stale_length_mismatch: u64,
    /// Dropped: no identity derivable from the key.
    pub stale_identity_not_derivable: u64,
    /// Header unreadable, entry kept.
    pub unreadable_kept: u64,
    /// Header unreadable, entry dropped.
    pub unreadable_dropped: u64,
    /// Of the unreadable entries, those whose header was never read or never answered
    /// because the device stalled ([`IoError::DeviceStalled`]).
    pub unreadable_device_stalled: u64,
    /// Skipped at apply for a per-entry rule.
    pub rejected_rule: u64,
    /// Skipped at apply: a later entry has the same key.
    pub rejected_duplicate_key: u64,
    /// Skipped: another entry owns the slot.
    pub rejected_duplicate_slot: u64,
}

impl Counts {
    /// Adds one entry's state.
    pub fn add(&mut self, state: &EntryState) {
        let counter = match state {
            EntryState::Kept => &mut self.kept,
            EntryState::Stale(StaleReason::BadMagic) => &mut self.stale_bad_magic,
            EntryState::Stale(StaleReason::IdentityMismatch { .. }) => {
                &mut self.stale_identity_mismatch
            }
            EntryState::Stale(StaleReason::LengthMismatch { .. }) => {
                &mut self.stale_length_mismatch
            }
            EntryState::Stale(StaleReason::IdentityNotDerivable(_)) => {
                &mut self.stale_identity_not_derivable
            }
            EntryState::Unreadable { kept: true, .. } => &mut self.unreadable_kept,
            EntryState::Unreadable { kept: false, .. } => &mut self.unreadable_dropped,
            EntryState::Rejected(RejectReason::Rule(_)) => &mut self.rejected_rule,
            EntryState::Rejected(RejectReason::DuplicateKey) => &mut self.rejected_duplicate_key,
            EntryState::Rejected(RejectReason::DuplicateSlot { .. }) => {
                &mut self.rejected_duplicate_slot
            }
        };
        *counter += 1;
        if let EntryState::Unreadable {
            error: IoError::DeviceStalled { .. },
            ..
        } = state
        {
            self.unreadable_device_stalled += 1;
        }
    }

    /// All stale entries.
    pub fn stale(&self) -> u64 {
        self.stale_bad_magic
            + self.stale_identity_mismatch
            + self.stale_length_mismatch
            + self.stale_identity_not_derivable
    }

    /// All unreadable entries, kept or dropped.
    pub fn unreadable(&self) -> u64 {
        self.unreadable_kept + self.unreadable_dropped
    }

    /// All rejected entries.
    pub fn rejected(&self) -> u64 {
        self.rejected_rule + self.rejected_duplicate_key + self.rejected_duplicate_slot
    }

    /// Entries in the recovered index.
    pub fn in_index(&self) -> u64 {
        self.kept + self.unreadable_kept
    }
}

/// Time spent in each phase. Parse and validation may overlap, so `total` can be less than
/// the sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Reading mirror headers and the chosen payload, checking CRCs.
    pub select: Duration,
    /// Parsing the JSON payload: the parser thread's busy time, without the time it waited
    /// for validation to take its batches.
    pub parse: Duration,
    /// Applying the checkpoint and per-entry rules.
    pub apply: Duration,
    /// Reading and checking slot headers.
    pub validate: Duration,
    /// From opening to the recovered index.
    pub total: Duration,
}

/// Why the chosen checkpoint was ignored as a whole (the index then starts empty).
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum CheckpointIgnored {
    /// The payload is not a checkpoint this reader understands.
    Parse(Arc<CheckpointError>),
    /// The payload contradicts the configuration.
    Apply(ApplyRejection),
}

/// Equal when they say the same thing (a JSON error has no equality of its own).
impl PartialEq for CheckpointIgnored {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for CheckpointIgnored {}

impl fmt::Display for CheckpointIgnored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointIgnored::Parse(error) => write!(f, "payload unreadable: {error}"),
            CheckpointIgnored::Apply(rejection) => write!(f, "{rejection}"),
        }
    }
}

/// Something a person should know about a bringup that did not stop it.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The checkpoint names another device; the path check was turned off, so it was used.
    DevicePathIgnored {
        /// The path in the checkpoint.
        recorded: String,
        /// The path configured (or opened).
        configured: String,
    },
    /// The checkpoint names the device under another name that resolves to it.
    DevicePathAlias {
        /// The path in the checkpoint.
        recorded: String,
        /// The path configured (or opened).
        configured: String,
    },
    /// A mirror could not be read: a newer checkpoint may have been there.
    MirrorUnreadable {
        /// Mirror 0 or 1.
        mirror_index: usize,
        /// What the read returned.
        error: OpError,
    },
    /// Kept entries own slots at or past the checkpoint's `next_slot`, which was raised past
    /// them so that LMCache never hands those slots out again.
    NextSlotRaised {
        /// `next_slot` in the checkpoint.
        next_slot: u64,
        /// The highest slot a kept entry owns.
        highest_owned: u64,
    },
    /// The device stopped answering: the slot headers it never read or never answered are
    /// unreadable ("device stalled").
    DeviceStalled {
        /// How long validation waited with nothing coming back.
        waited: std::time::Duration,
        /// Entries whose header was never read or never answered.
        unread_count: u64,
    },
}

impl Warning {
    /// A stable short name for JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::DevicePathIgnored { .. } => "device_path_ignored",
            Warning::DevicePathAlias { .. } => "device_path_alias",
            Warning::MirrorUnreadable { .. } => "mirror_unreadable",
            Warning::NextSlotRaised { .. } => "next_slot_raised",
            Warning::DeviceStalled { .. } => "device_stalled",
        }
    }

    /// `{"kind": ..., "message": ...}`.
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind(), "message": self.to_string() })
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::DevicePathIgnored {
                recorded,
                configured,
            } => write!(
                f,
                "checkpoint was written for {recorded}, device is {configured}: path check \
                 ignored as asked"
            ),
            Warning::DevicePathAlias {
                recorded,
                configured,
            } => write!(
                f,
                "checkpoint was written for {recorded}, the same device as {configured}"
            ),
            Warning::MirrorUnreadable {
                mirror_index,
                error,
            } => write!(
                f,
                "mirror {mirror_index} unreadable ({error}): a newer checkpoint may have been there"
            ),
            Warning::NextSlotRaised {
                next_slot,
                highest_owned,
            } => write!(
                f,
                "kept entries own slots up to {highest_owned}, at or past the checkpoint's \
                 next_slot {next_slot}: next_slot raised to {}",
                highest_owned + 1
            ),
            Warning::DeviceStalled {
                waited,
                unread_count,
            } => write!(
                f,
                "device stalled: nothing came back for {waited:?}; {unread_count} slot headers \
                 never read or never answered are unreadable"
            ),
        }
    }
}

/// Where bringup's layout came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayoutSource {
    /// Given by the caller (layout flags, or LMCache's defaults).
    #[default]
    Configured,
    /// Read from the checkpoint in this mirror on the device.
    Device {
        /// The mirror whose checkpoint recorded it.
        mirror_index: usize,
    },
}

/// The options a bringup ran with, as its report states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Header reads in flight at once.
    pub window_ops_max: usize,
    /// The most operations the engine has with the device at once (the posix pool's
    /// workers, the ring's window, 1 for the serial engine).
    pub engine_in_flight_max: usize,
    /// Whether the device was read with O_DIRECT, bypassing the page cache.
    pub direct: bool,
    /// Whether O_DIRECT was asked for and refused by the file or device, so reads went
    /// through the page cache.
    pub direct_refused: bool,
    /// The engine's per-operation timeout, retries included (`None`: the engine has none, as
    /// the serial engine).
    pub op_timeout: Option<Duration>,
    /// Where the layout came from.
    pub layout_source: LayoutSource,
}

impl LayoutSource {
    /// "configured" or "device".
    pub fn name(self) -> &'static str {
        match self {
            LayoutSource::Configured => "configured",
            LayoutSource::Device { .. } => "device",
        }
    }
}

impl Settings {
    /// The settings as JSON, with the engine's name.
    fn to_json(self, engine: &str) -> Value {
        let layout_mirror = match self.layout_source {
            LayoutSource::Configured => None,
            LayoutSource::Device { mirror_index } => Some(mirror_index),
        };
        json!({
            "engine": engine,
            "window": self.window_ops_max,
            "engine_in_flight_max": self.engine_in_flight_max,
            "direct": self.direct,
            "direct_refused": self.direct_refused,
            "op_timeout_secs": self.op_timeout.map(|timeout| timeout.as_secs_f64()),
            "layout_source": self.layout_source.name(),
            "layout_mirror": layout_mirror,
        })
    }
}

/// The checkpoint bringup used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChosenCheckpoint {
    /// Mirror 0 or 1.
    pub mirror_index: usize,
    /// Its sequence number.
    pub seq: u64,
    /// Its payload length.
    pub payload_len_bytes: u64,
}

/// Everything bringup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The device's path, as it was opened.
    pub device: String,
    /// The engine that read the device.
    pub engine: String,
    /// The io_uring features the engine ran with, by name; `None` for an engine without a
    /// ring. Filled in by whoever built the engine (this crate names no engine).
    pub engine_features: Option<Vec<String>>,
    /// The options in force.
    pub settings: Settings,
    /// Both mirrors as found.
    pub mirrors: Vec<MirrorStatus>,
    /// The checkpoint used, `None` on an empty device.
    pub checkpoint: Option<ChosenCheckpoint>,
    /// Why the chosen checkpoint was ignored, if it was.
    pub ignored: Option<CheckpointIgnored>,
    /// Whether slot headers were validated.
    pub verified: bool,
    /// Counts per state and reason.
    pub counts: Counts,
    /// Entries not simply kept, in checkpoint order; every entry if asked for.
    pub entries: Vec<EntryOutcome>,
    /// Time per phase.
    pub phases: PhaseTimes,
    /// Peak bytes of header buffers in use during validation.
    pub header_buffer_bytes_max: u64,
    /// Warnings a person should see (for example an ignored device path).
    pub warnings: Vec<Warning>,
}

impl Report {
    /// The report as one JSON object: `device`, `engine`, `counts`, `checkpoint`, `mirrors`,
    /// `phases` (seconds) and `entries`.
    pub fn to_json(&self) -> Value {
        let c = &self.counts;
        json!({
            "device": self.device,
            "engine": self.engine,
            "engine_features": self.engine_features,
            "settings": self.settings.to_json(&self.engine),
            "verified": self.verified,
            "checkpoint": self.checkpoint.map(|chosen| json!({
                "mirror": chosen.mirror_index,
                "seq": chosen.seq,
                "payload_len_bytes": chosen.payload_len_bytes,
            })),
            "ignored": self.ignored.as_ref().map(ToString::to_string),
            "mirrors": self.mirrors.iter().map(mirror_json).collect::<Vec<_>>(),
            "counts": {
                "in_checkpoint": c.in_checkpoint,
                "kept": c.kept,
                "stale": c.stale(),
                "unreadable": c.unreadable(),
                "rejected": c.rejected(),
                "in_index": c.in_index(),
                "stale_by_reason": {
                    "bad_magic": c.stale_bad_magic,
                    "identity_mismatch": c.stale_identity_mismatch,
                    "length_mismatch": c.stale_length_mismatch,
                    "identity_not_derivable": c.stale_identity_not_derivable,
                },
                "unreadable_kept": c.unreadable_kept,
                "unreadable_dropped": c.unreadable_dropped,
                "unreadable_device_stalled": c.unreadable_device_stalled,
                "rejected_by_reason": {
                    "rule": c.rejected_rule,
                    "duplicate_key": c.rejected_duplicate_key,
                    "duplicate_slot": c.rejected_duplicate_slot,
                },
            },
            "phases": {
                "select": self.phases.select.as_secs_f64(),
                "parse": self.phases.parse.as_secs_f64(),
                "apply": self.phases.apply.as_secs_f64(),
                "validate": self.phases.validate.as_secs_f64(),
                "total": self.phases.total.as_secs_f64(),
            },
            "header_buffer_bytes_max": self.header_buffer_bytes_max,
            "warnings": self.warnings.iter().map(Warning::to_json).collect::<Vec<_>>(),
            "entries": self.entries.iter().map(entry_json).collect::<Vec<_>>(),
        })
    }
}

/// One mirror as JSON: index, offset, seq, payload length, whether it is valid, its verdict.
pub(crate) fn mirror_json(mirror: &MirrorStatus) -> Value {
    json!({
        "mirror": mirror.mirror_index,
        "offset_bytes": mirror.offset_bytes,
        "seq": mirror.header.map(|h| h.seq),
        "payload_len_bytes": mirror.header.map(|h| h.payload_len_bytes),
        "valid": mirror.verdict == MirrorVerdict::Valid,
        "verdict": mirror.verdict.to_string(),
    })
}

fn entry_json(entry: &EntryOutcome) -> Value {
    let reason_code = match &entry.state {
        EntryState::Stale(reason) => Some(reason.code()),
        EntryState::Rejected(reason) => Some(reason.code()),
        EntryState::Unreadable { kept: true, .. } => Some("unreadable_kept"),
        EntryState::Unreadable { kept: false, .. } => Some("unreadable_dropped"),
        EntryState::Kept => None,
    };
    json!({
        "key": entry.key,
        "offset": entry.offset_bytes,
        "size": entry.size_bytes,
        "state": entry.state.name(),
        "reason_code": reason_code,
        "reason": entry.state.reason(),
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        match self.checkpoint {
            Some(chosen) => writeln!(
                f,
                "checkpoint: seq {} from mirror {} ({} bytes)",
                chosen.seq, chosen.mirror_index, chosen.payload_len_bytes
            )?,
            None => writeln!(f, "checkpoint: none valid (empty device)")?,
        }
        if let Some(ignored) = &self.ignored {
            writeln!(f, "checkpoint ignored: {ignored}")?;
        }
        if let LayoutSource::Device { mirror_index } = self.settings.layout_source {
            writeln!(
                f,
                "layout: read from the checkpoint in mirror {mirror_index}"
            )?;
        }
        if self.settings.direct_refused {
            writeln!(
                f,
                "reads: O_DIRECT refused by the file system, through the page cache"
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        writeln!(
            f,
            "entries: {} in checkpoint, {} kept, {} stale, {} unreadable ({} kept), {} rejected",
            c.in_checkpoint,
            c.kept,
            c.stale(),
            c.unreadable(),
            c.unreadable_kept,
            c.rejected()
        )?;
        if !self.verified {
            writeln!(f, "slot headers not validated (--no-verify)")?;
        }
        let p = &self.phases;
        write!(
            f,
            "time: select {:.3}s, parse {:.3}s, apply {:.3}s, validate {:.3}s, total {:.3}s ({})",
            p.select.as_secs_f64(),
            p.parse.as_secs_f64(),
            p.apply.as_secs_f64(),
            p.validate.as_secs_f64(),
            p.total.as_secs_f64(),
            self.engine
        )
    }
}

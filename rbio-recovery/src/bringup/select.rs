//! Checkpoint selection: read both mirrors' headers, then payloads newest first, and keep the
//! first whose CRC holds (the strictly greatest valid `seq`; a tie keeps mirror 0).

use std::fmt;

use rbio_core::{BufferPool, Engine, OpError};

use super::read::{read_range, read_range_chunks, RangeError};
use super::BringupError;
use crate::format::{
    CheckpointHeader, CheckpointHeaderError, CheckpointRejection, Geometry, Layout, MIRROR_COUNT,
};

/// What bringup found in one checkpoint mirror.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorStatus {
    /// Mirror 0 or 1.
    pub mirror_index: usize,
    /// Where its header block starts.
    pub offset_bytes: u64,
    /// The header, if its block could be read and decoded (even when a rule rejects it).
    pub header: Option<CheckpointHeader>,
    /// The verdict on this mirror.
    pub verdict: MirrorVerdict,
}

/// The verdict on one mirror.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorVerdict {
    /// Header and payload CRC are valid.
    Valid,
    /// The header is valid; its payload was not read because a newer mirror won first.
    NotChecked,
    /// The header or payload breaks a selection rule (blank mirrors land here as bad magic).
    Rejected(CheckpointRejection),
    /// The header block could not be decoded.
    Undecodable(CheckpointHeaderError),
    /// The device did not deliver the header or payload.
    Unreadable(OpError),
}

impl fmt::Display for MirrorVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorVerdict::Valid => write!(f, "valid"),
            MirrorVerdict::NotChecked => write!(f, "header valid, payload not read (older)"),
            MirrorVerdict::Rejected(rejection) => write!(f, "rejected: {rejection}"),
            MirrorVerdict::Undecodable(error) => write!(f, "undecodable: {error}"),
            MirrorVerdict::Unreadable(error) => write!(f, "unreadable: {error}"),
        }
    }
}

/// The outcome of selection.
pub(crate) struct Selection {
    pub(crate) mirrors: Vec<MirrorStatus>,
    /// The winning mirror's index, header and payload (exactly `payload_len` bytes, in
    /// pieces of the pool's buffer size).
    pub(crate) chosen: Option<(usize, CheckpointHeader, Vec<Vec<u8>>)>,
}

/// Selects the newest valid checkpoint; with `check_all`, also verifies the older payload.
pub(crate) fn select(
    engine: &mut dyn Engine,
    pool: &BufferPool,
    layout: &Layout,
    geometry: &Geometry,
    check_all: bool,
) -> Result<Selection, BringupError> {
    let mut mirrors: Vec<MirrorStatus> = Vec::with_capacity(MIRROR_COUNT);
    for mirror_index in 0..MIRROR_COUNT {
        mirrors.push(read_mirror_header(
            engine,
            pool,
            layout,
            geometry,
            mirror_index,
        )?);
    }
    let selectable = |status: &MirrorStatus| status.verdict == MirrorVerdict::NotChecked;
    let mut order: Vec<usize> = (0..MIRROR_COUNT)
        .filter(|&i| selectable(&mirrors[i]))
        .collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(mirrors[i].header.map_or(0, |h| h.seq)), i));
    let mut chosen = None;
    for mirror_index in order {
        if chosen.is_some() && !check_all {
            break;
        }
        let header = mirrors[mirror_index]
            .header
            .expect("ordered mirrors have headers");
        let offset_bytes = geometry.mirror_payload_offset_bytes(mirror_index);
        let read_bytes = header.payload_read_bytes(geometry);
        let verdict = match read_range_chunks(engine, pool, offset_bytes, read_bytes) {
            Err(RangeError::Stream(error)) => return Err(BringupError::Engine(error)),
            Err(RangeError::Op(error)) => unreadable(error)?,
            Ok(mut payload) => match header.check_payload_chunks(&mut payload) {
                Err(rejection) => MirrorVerdict::Rejected(rejection),
                Ok(()) => {
                    if chosen.is_none() {
                        chosen = Some((mirror_index, header, payload));
                    }
                    MirrorVerdict::Valid
                }
            },
        };
        mirrors[mirror_index].verdict = verdict;
    }
    Ok(Selection { mirrors, chosen })
}

/// A mirror the device did not deliver, or a configuration error that stops bringup.
fn unreadable(error: OpError) -> Result<MirrorVerdict, BringupError> {
    if error.error.class().is_configuration() {
        return Err(BringupError::Configuration(error));
    }
    Ok(MirrorVerdict::Unreadable(error))
}

fn read_mirror_header(
    engine: &mut dyn Engine,
    pool: &BufferPool,
    layout: &Layout,
    geometry: &Geometry,
    mirror_index: usize,
) -> Result<MirrorStatus, BringupError> {
    let offset_bytes = geometry.mirror_offset_bytes(mirror_index);
    let mut status = MirrorStatus {
        mirror_index,
        offset_bytes,
        header: None,
        verdict: MirrorVerdict::NotChecked,
    };
    let block = match read_range(engine, pool, offset_bytes, geometry.block_align()) {
        Err(RangeError::Stream(error)) => return Err(BringupError::Engine(error)),
        Err(RangeError::Op(error)) => {
            status.verdict = unreadable(error)?;
            return Ok(status);
        }
        Ok(block) => block,
    };
    match CheckpointHeader::decode(&block) {
        Err(error) => status.verdict = MirrorVerdict::Undecodable(error),
        Ok(header) => {
            status.header = Some(header);
            if let Err(rejection) = header.check(layout, geometry) {
                status.verdict = MirrorVerdict::Rejected(rejection);
            }
        }
    }
    Ok(status)
}

//! Operations: a read, write or flush at a device offset, tagged by the caller.

use std::fmt;

use crate::buffer::Buffer;
use crate::completion::Completion;
use crate::error::IoError;

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Read `len_bytes` at `offset_bytes` into the buffer.
    Read,
    /// Write the buffer's `len_bytes` at `offset_bytes`.
    Write,
    /// Make earlier writes durable (`fdatasync`, NVMe flush). Has no buffer.
    Flush,
}

impl OpKind {
    /// The lowercase name used in messages: "read", "write", "flush".
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Flush => "flush",
        }
    }
}

/// Everything about an operation except its buffer: small, `Copy`, and kept in its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpInfo {
    /// What the operation does.
    pub kind: OpKind,
    /// The caller's tag, returned unchanged in the completion.
    pub tag: u64,
    /// Where on the device the transfer starts (0 for a flush).
    pub offset_bytes: u64,
    /// How many bytes the operation transfers (0 for a flush).
    pub len_bytes: usize,
    /// The NVMe Flexible Data Placement placement identifier a write asks for (`None` for
    /// reads, flushes and writes without one). Only the NVMe passthrough engine sends it (as
    /// the data placement directive); every other engine ignores it, as a block device gives
    /// no way to pass it on.
    pub placement_id: Option<u16>,
}

impl OpInfo {
    /// The first device byte past the transfer.
    pub fn end_bytes(&self) -> u64 {
        self.offset_bytes + self.len_bytes as u64
    }
}

impl fmt::Display for OpInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            OpKind::Flush => write!(f, "flush")?,
            kind => write!(
                f,
                "{} of {} bytes at offset {}",
                kind.name(),
                self.len_bytes,
                self.offset_bytes
            )?,
        }
        match self.placement_id {
            Some(placement_id) => write!(f, " with placement id {placement_id}"),
            None => Ok(()),
        }
    }
}

/// One operation, owning its buffer until an engine completes it.
///
/// Submitting an operation moves it, buffer and all, into the engine; the buffer comes back in
/// the [`Completion`]. That is what keeps memory the kernel may write into out of the caller's
/// reach.
#[derive(Debug)]
pub struct Op {
    info: OpInfo,
    buffer: Option<Buffer>,
}

impl Op {
    /// Reads `buffer.len_bytes()` bytes at `offset_bytes` into `buffer`.
    pub fn read(tag: u64, offset_bytes: u64, buffer: Buffer) -> Op {
        Op::with_buffer(OpKind::Read, tag, offset_bytes, buffer)
    }

    /// Writes the `buffer.len_bytes()` bytes of `buffer` at `offset_bytes`.
    pub fn write(tag: u64, offset_bytes: u64, buffer: Buffer) -> Op {
        Op::with_buffer(OpKind::Write, tag, offset_bytes, buffer)
    }

    /// Makes earlier writes durable.
    pub fn flush(tag: u64) -> Op {
        Op {
            info: OpInfo {
                kind: OpKind::Flush,
                tag,
                offset_bytes: 0,
                len_bytes: 0,
                placement_id: None,
            },
            buffer: None,
        }
    }

    fn with_buffer(kind: OpKind, tag: u64, offset_bytes: u64, buffer: Buffer) -> Op {
        Op {
            info: OpInfo {
                kind,
                tag,
                offset_bytes,
                len_bytes: buffer.len_bytes(),
                placement_id: None,
            },
            buffer: Some(buffer),
        }
    }

    /// The same write with the FDP placement identifier `placement_id` (`None` for none):
    /// the NVMe passthrough engine sends it as the data placement directive (DTYPE 2, DSPEC
    /// the identifier); other engines ignore it.
    ///
    /// # Panics
    ///
    /// If the operation is a read or a flush and `placement_id` is `Some`: only writes are
    /// placed.
    pub fn with_placement_id(mut self, placement_id: Option<u16>) -> Op {
        assert!(
            placement_id.is_none() || self.info.kind == OpKind::Write,
            "placement id {placement_id:?} on a {}",
            self.info.kind.name()
        );
        self.info.placement_id = placement_id;
        self
    }

    /// The operation without its buffer.
    pub fn info(&self) -> OpInfo {
        self.info
    }

    /// The caller's tag.
    pub fn tag(&self) -> u64 {
        self.info.tag
    }

    /// The same operation under another tag (wrappers use this to track their own state).
    pub fn with_tag(mut self, tag: u64) -> Op {
        self.info.tag = tag;
        self
    }

    /// The buffer, if the operation has one.
    pub fn buffer(&self) -> Option<&Buffer> {
        self.buffer.as_ref()
    }

    /// The buffer, for an engine that transfers into or out of it.
    pub fn buffer_mut(&mut self) -> Option<&mut Buffer> {
        self.buffer.as_mut()
    }

    /// Splits the operation into its description and its buffer.
    pub fn into_parts(self) -> (OpInfo, Option<Buffer>) {
        (self.info, self.buffer)
    }

    /// Finishes the operation with `result`, handing its buffer back in the completion.
    pub fn complete(self, result: Result<usize, IoError>) -> Completion {
        Completion::new(self.info, result, self.buffer)
    }

    pub(crate) fn from_parts(info: OpInfo, buffer: Option<Buffer>) -> Op {
        Op { info, buffer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_display_reads_as_a_sentence() {
        let buffer = Buffer::new_aligned(4096, 4096).unwrap();
        assert_eq!(
            Op::read(1, 8192, buffer).info().to_string(),
            "read of 4096 bytes at offset 8192"
        );
        assert_eq!(Op::flush(2).info().to_string(), "flush");
    }

    #[test]
    fn length_comes_from_the_buffer() {
        let mut buffer = Buffer::new_aligned(4096, 4096).unwrap();
        buffer.set_len(512);
        let op = Op::write(9, 0, buffer);
        assert_eq!(op.info().len_bytes, 512);
        assert_eq!(op.info().end_bytes(), 512);
        assert_eq!(op.with_tag(5).tag(), 5);
    }

    #[test]
    fn a_write_carries_its_placement_id_into_its_info_and_message() {
        let buffer = Buffer::new_aligned(4096, 4096).unwrap();
        let op = Op::write(1, 0, buffer);
        assert_eq!(op.info().placement_id, None);
        let placed = op.with_placement_id(Some(7));
        assert_eq!(placed.info().placement_id, Some(7));
        assert_eq!(
            placed.info().to_string(),
            "write of 4096 bytes at offset 0 with placement id 7"
        );
        let completion = placed.complete(Ok(4096));
        assert_eq!(
            completion.into_op().unwrap().info().placement_id,
            Some(7),
            "a resubmitted write keeps its placement"
        );
    }

    #[test]
    fn only_writes_take_a_placement_id() {
        let read = Op::read(1, 0, Buffer::new_aligned(512, 4096).unwrap());
        let read = read.with_placement_id(None);
        assert_eq!(read.info().placement_id, None);
        let placed = std::panic::catch_unwind(|| Op::flush(2).with_placement_id(Some(1)));
        assert!(placed.is_err(), "a flush took a placement id");
    }
}

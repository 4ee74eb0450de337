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
            OpKind::Flush => write!(f, "flush"),
            kind => write!(
                f,
                "{} of {} bytes at offset {}",
                kind.name(),
                self.len_bytes,
                self.offset_bytes
            ),
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
            },
            buffer: Some(buffer),
        }
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
}

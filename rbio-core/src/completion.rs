//! Completions: the typed result of one operation, with its buffer handed back.

use std::fmt;

use crate::buffer::Buffer;
use crate::error::IoError;
use crate::op::{Op, OpInfo, OpKind};

/// The outcome of one operation. Every submitted operation yields exactly one.
#[must_use = "a completion carries the operation's result, which may be an error"]
#[derive(Debug)]
pub struct Completion {
    info: OpInfo,
    result: Result<usize, IoError>,
    buffer: Option<Buffer>,
}

impl Completion {
    /// A completion for the operation `info`, with the bytes transferred or the error.
    ///
    /// `buffer` is the operation's buffer when the engine can give it back; it is `None` for a
    /// flush and for an operation the device never answered while the kernel may still hold
    /// its buffer (the engine then keeps the buffer until the kernel lets go of it).
    pub fn new(info: OpInfo, result: Result<usize, IoError>, buffer: Option<Buffer>) -> Self {
        Completion {
            info,
            result,
            buffer,
        }
    }

    /// The caller's tag.
    pub fn tag(&self) -> u64 {
        self.info.tag
    }

    /// The operation this completes.
    pub fn info(&self) -> OpInfo {
        self.info
    }

    /// Bytes transferred, or why not all were.
    pub fn result(&self) -> &Result<usize, IoError> {
        &self.result
    }

    /// Bytes transferred, or the error with the operation it belongs to.
    ///
    /// # Errors
    /// An [`OpError`] whose `Display` names the operation: "read of 4096 bytes at offset 8192
    /// failed: Input/output error (os error 5)".
    pub fn check(&self) -> Result<usize, OpError> {
        self.result.clone().map_err(|error| OpError {
            info: self.info,
            error,
        })
    }

    /// The bytes that arrived: all of a successful read, the valid prefix of a short one, and
    /// nothing otherwise.
    pub fn data(&self) -> &[u8] {
        let done_bytes = match self.result {
            Ok(done_bytes) => done_bytes,
            Err(IoError::ShortTransfer { done_bytes, .. }) => done_bytes,
            Err(_) => 0,
        };
        match &self.buffer {
            Some(buffer) => &buffer.as_slice()[..done_bytes.min(buffer.len_bytes())],
            None => &[],
        }
    }

    /// The operation's buffer, if the engine handed it back.
    pub fn buffer(&self) -> Option<&Buffer> {
        self.buffer.as_ref()
    }

    /// Takes the buffer back, for reuse.
    pub fn into_buffer(self) -> Option<Buffer> {
        self.buffer
    }

    /// The same completion under another tag (wrappers use this to restore the caller's tag).
    pub fn with_tag(mut self, tag: u64) -> Completion {
        self.info.tag = tag;
        self
    }

    /// The same completion with another result (fault injection uses this).
    pub fn with_result(mut self, result: Result<usize, IoError>) -> Completion {
        self.result = result;
        self
    }

    /// Whether [`Completion::into_op`] can rebuild the operation: its buffer came back, or it
    /// needs none.
    pub fn can_resubmit(&self) -> bool {
        self.buffer.is_some() || self.info.kind == OpKind::Flush
    }

    /// Rebuilds the operation to submit it again, if [`Completion::can_resubmit`].
    pub fn into_op(self) -> Option<Op> {
        self.can_resubmit()
            .then(|| Op::from_parts(self.info, self.buffer))
    }
}

/// A failed operation: what was asked and why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    /// The operation.
    pub info: OpInfo,
    /// Why it failed.
    pub error: IoError,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.info, self.error)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Errno;

    fn read_op(len_bytes: usize) -> Op {
        let mut buffer = Buffer::new_aligned(len_bytes, 4096).unwrap();
        buffer.as_mut_slice().fill(0xab);
        Op::read(7, 8192, buffer)
    }

    #[test]
    fn error_message_names_the_operation() {
        let completion = read_op(4096).complete(Err(IoError::Os(Errno::EIO)));
        assert_eq!(
            completion.check().unwrap_err().to_string(),
            "read of 4096 bytes at offset 8192 failed: Input/output error (os error 5)"
        );
    }

    #[test]
    fn data_is_the_transferred_prefix() {
        assert_eq!(read_op(4096).complete(Ok(4096)).data().len(), 4096);
        let short = read_op(4096).complete(Err(IoError::ShortTransfer {
            done_bytes: 100,
            len_bytes: 4096,
        }));
        assert_eq!(short.data(), &[0xab; 100][..]);
        assert!(read_op(4096)
            .complete(Err(IoError::Canceled))
            .data()
            .is_empty());
    }

    #[test]
    fn into_op_rebuilds_the_same_operation() {
        let completion = read_op(512).complete(Err(IoError::Os(Errno::EAGAIN)));
        let info = completion.info();
        assert_eq!(completion.into_op().unwrap().info(), info);
        let bufferless = Completion::new(info, Err(IoError::Canceled), None);
        assert!(bufferless.into_op().is_none());
    }
}

//! Typed errors: what went wrong with one operation (`IoError`) and with opening a device (`OpenError`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// An operating-system error number, kept exactly as the kernel returned it.
///
/// A newtype rather than an enum so that every code, known or not, is reported exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Input/output error: the device answered and said no.
    pub const EIO: Errno = Errno(libc::EIO);
    /// Interrupted system call: the call should simply be made again.
    pub const EINTR: Errno = Errno(libc::EINTR);
    /// Resource temporarily unavailable: retry later.
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    /// Device or resource busy: retry later.
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    /// No space left on device.
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    /// Invalid argument (for O_DIRECT, usually misalignment).
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// Operation canceled.
    pub const ECANCELED: Errno = Errno(libc::ECANCELED);
    /// Operation not supported by this file or device.
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    /// Function not implemented (by this kernel or driver).
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    /// Bad file descriptor (for example not open for this kind of access).
    pub const EBADF: Errno = Errno(libc::EBADF);
    /// Bad address: the kernel could not reach the buffer.
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    /// No data available (some drivers' answer for an unreadable sector).
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    /// Illegal byte sequence (some drivers' answer for a checksum failure).
    pub const EILSEQ: Errno = Errno(libc::EILSEQ);
    /// Timer expired (the driver gave up on the device).
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);

    /// The errno left by the last failed libc call on this thread.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// Whether making the same call again may succeed (`EINTR`, `EAGAIN`, `EBUSY`).
    pub fn is_transient(self) -> bool {
        self == Errno::EINTR || self == Errno::EAGAIN || self == Errno::EBUSY
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({})", self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// An NVMe completion status: status code type, status code and the do-not-retry bit.
///
/// Codes a device can extend stay open: any `(sct, sc)` pair is representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NvmeStatus {
    /// Status code type (0 generic, 1 command specific, 2 media and data integrity, 3 path).
    pub sct: u8,
    /// Status code within its type.
    pub sc: u8,
    /// Do not retry: the controller says the same command will fail again.
    pub dnr: bool,
}

impl NvmeStatus {
    /// Generic status: invalid field in command.
    pub const INVALID_FIELD: (u8, u8) = (0, 0x02);
    /// Generic status: data transfer error.
    pub const DATA_TRANSFER_ERROR: (u8, u8) = (0, 0x04);
    /// Generic status: internal error.
    pub const INTERNAL_ERROR: (u8, u8) = (0, 0x06);
    /// Generic status: LBA out of range.
    pub const LBA_OUT_OF_RANGE: (u8, u8) = (0, 0x80);
    /// Media error: unrecovered read error.
    pub const UNRECOVERED_READ_ERROR: (u8, u8) = (2, 0x81);

    /// A short name for well-known codes, `None` for the rest.
    pub fn name(self) -> Option<&'static str> {
        match (self.sct, self.sc) {
            Self::INVALID_FIELD => Some("invalid field in command"),
            Self::DATA_TRANSFER_ERROR => Some("data transfer error"),
            Self::INTERNAL_ERROR => Some("internal error"),
            Self::LBA_OUT_OF_RANGE => Some("LBA out of range"),
            Self::UNRECOVERED_READ_ERROR => Some("unrecovered read error"),
            _ => None,
        }
    }
}

impl fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NVMe status sct {:#x} sc {:#04x}", self.sct, self.sc)?;
        if let Some(name) = self.name() {
            write!(f, " ({name})")?;
        }
        if self.dnr {
            write!(f, ", do not retry")?;
        }
        Ok(())
    }
}

/// Why one operation did not transfer all its bytes.
///
/// The variants separate a device that said no (`Os`, `Nvme`, `ShortTransfer`) from a request
/// refused before it reached the device (`Misaligned`, `OutOfRange`, `Unsupported`) and from a
/// device that did not answer (`TimedOut`, `Canceled`): see [`IoError::is_device_answer`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The kernel returned this error number.
    Os(Errno),
    /// The NVMe controller completed the command with this status.
    Nvme(NvmeStatus),
    /// The device transferred fewer bytes than asked and could not continue.
    ShortTransfer {
        /// Bytes transferred before the transfer stopped.
        done_bytes: usize,
        /// Bytes the operation asked for.
        len_bytes: usize,
    },
    /// Offset, length or buffer address is not a multiple of the alignment the device needs.
    Misaligned {
        /// The alignment the device needs, in bytes.
        align_bytes: usize,
    },
    /// The operation reaches past the end of the device.
    OutOfRange {
        /// The device's size.
        size_bytes: u64,
    },
    /// The operation's buffer does not match it: a read or write without a buffer, or with a
    /// buffer whose length was changed after the operation was built. Refused before the device
    /// sees it, since the kernel would transfer the operation's length into the buffer.
    BufferLength {
        /// Bytes the buffer holds (0 when there is none).
        buffer_bytes: usize,
        /// Bytes the operation transfers.
        len_bytes: usize,
    },
    /// The operation was canceled before it completed (for example when its engine was dropped).
    ///
    /// No answer, like [`IoError::TimedOut`]: the operation may have been performed anyway. A
    /// canceled write may or may not have reached the device, so its range is unknown until
    /// it is written again or read back.
    Canceled,
    /// The device did not answer within the operation's timeout.
    TimedOut {
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Never performed: the engine still held every buffer of earlier operations the device
    /// had not answered, and none came back within the stream's stall timeout. No answer,
    /// like [`IoError::TimedOut`].
    DeviceStalled {
        /// How long the stream waited for a buffer.
        waited: Duration,
    },
    /// The engine or device cannot perform this kind of operation.
    Unsupported {
        /// What is unsupported, in a few words.
        what: &'static str,
    },
}

/// What a failed operation says about the device, for a reader deciding what to do next.
///
/// Errors are sorted once, here: [`IoError::class`] is the only place that knows which codes
/// are which.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was refused for how it was made (alignment, operation, descriptor, buffer,
    /// NVMe field or range), not for what the device holds: every similar request will fail
    /// the same way, so a reader stops and says how to fix the configuration.
    Configuration {
        /// The usual fix, in a few words.
        fix: &'static str,
    },
    /// The device answered about this range: its data cannot be had (EIO, a media error, a
    /// short transfer). Other ranges may still read.
    DeviceAnswer,
    /// The device did not answer (timeout, cancellation): nothing is known about the data.
    NoAnswer,
}

/// The fix for a request refused for its alignment.
const FIX_ALIGNMENT: &str = "the device refuses this alignment: check --block-align and \
     --header-bytes against its logical block size, or read with --buffered";
/// The fix for an operation the engine or device does not support.
const FIX_ENGINE: &str = "the engine or device does not support this operation: choose \
     another --engine";
/// The fix for a descriptor opened the wrong way.
const FIX_DESCRIPTOR: &str =
    "the device is not open for this kind of access: open it again or choose another --engine";
/// The fix for a buffer the kernel refused: rbio's own fault.
const FIX_BUFFER: &str = "the kernel refused rbio's buffer: a bug in rbio, please report it";
/// The fix for an NVMe command that names blocks or fields the namespace does not have.
const FIX_NVME_FORMAT: &str = "the namespace does not have the blocks or format the layout \
     names: check the layout flags against the namespace's size and LBA format";

impl ErrorClass {
    /// Whether the error is a configuration error.
    pub fn is_configuration(self) -> bool {
        matches!(self, ErrorClass::Configuration { .. })
    }
}

impl IoError {
    /// Sorts the error: a configuration error (EINVAL, EOPNOTSUPP, ENOSYS, EBADF, EFAULT, a
    /// misaligned request or a buffer mismatch caught by rbio, an unsupported operation, NVMe
    /// "invalid field" or "LBA out of range"), no answer (a timeout, a cancellation, a stalled
    /// device), or else
    /// a device answer (EIO, ENODATA, EILSEQ, ETIMEDOUT, EAGAIN after its retries, NVMe media
    /// and data-integrity statuses, a short transfer, a range past the device's end, any code
    /// not named here).
    pub fn class(&self) -> ErrorClass {
        let fix = match self {
            IoError::TimedOut { .. } | IoError::Canceled | IoError::DeviceStalled { .. } => {
                return ErrorClass::NoAnswer
            }
            IoError::Os(errno) => match *errno {
                Errno::EINVAL => FIX_ALIGNMENT,
                Errno::EOPNOTSUPP | Errno::ENOSYS => FIX_ENGINE,
                Errno::EBADF => FIX_DESCRIPTOR,
                Errno::EFAULT => FIX_BUFFER,
                _ => return ErrorClass::DeviceAnswer,
            },
            IoError::Nvme(status) => match (status.sct, status.sc) {
                NvmeStatus::INVALID_FIELD | NvmeStatus::LBA_OUT_OF_RANGE => FIX_NVME_FORMAT,
                _ => return ErrorClass::DeviceAnswer,
            },
            IoError::Misaligned { .. } => FIX_ALIGNMENT,
            IoError::BufferLength { .. } => FIX_BUFFER,
            IoError::Unsupported { .. } => FIX_ENGINE,
            IoError::ShortTransfer { .. } | IoError::OutOfRange { .. } => {
                return ErrorClass::DeviceAnswer
            }
        };
        ErrorClass::Configuration { fix }
    }

    /// Whether the same operation, submitted again, may succeed: `EINTR`, `EAGAIN`, `EBUSY`.
    pub fn is_transient(&self) -> bool {
        matches!(self, IoError::Os(errno) if errno.is_transient())
    }

    /// Whether the device answered (with an error) rather than staying silent.
    ///
    /// `false` for timeouts and cancellations: nothing is known about the data.
    pub fn is_device_answer(&self) -> bool {
        self.class() != ErrorClass::NoAnswer
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Os(errno) => write!(f, "{errno}"),
            IoError::Nvme(status) => write!(f, "{status}"),
            IoError::ShortTransfer {
                done_bytes,
                len_bytes,
            } => write!(f, "short transfer: {done_bytes} of {len_bytes} bytes"),
            IoError::Misaligned { align_bytes } => {
                write!(f, "misaligned: offset, length and buffer must be multiples of {align_bytes} bytes")
            }
            IoError::OutOfRange { size_bytes } => {
                write!(f, "out of range: the device ends at {size_bytes} bytes")
            }
            IoError::BufferLength {
                buffer_bytes,
                len_bytes,
            } => write!(
                f,
                "buffer of {buffer_bytes} bytes for a transfer of {len_bytes} bytes"
            ),
            IoError::Canceled => write!(f, "canceled"),
            IoError::TimedOut { timeout } => write!(f, "timed out after {timeout:?}"),
            IoError::DeviceStalled { waited } => {
                write!(
                    f,
                    "device stalled: not read, no buffer came back for {waited:?}"
                )
            }
            IoError::Unsupported { what } => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for IoError {}

impl From<Errno> for IoError {
    fn from(errno: Errno) -> Self {
        IoError::Os(errno)
    }
}

/// Why a device could not be opened.
#[non_exhaustive]
#[derive(Debug)]
pub enum OpenError {
    /// The path does not exist.
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// The path is a directory.
    IsDirectory {
        /// The path asked for.
        path: PathBuf,
    },
    /// The path is neither a regular file, a block device nor a character device.
    UnsupportedKind {
        /// The path asked for.
        path: PathBuf,
    },
    /// O_DIRECT was asked for and the file system or device refused it.
    DirectUnsupported {
        /// The path asked for.
        path: PathBuf,
    },
    /// Any other failure of a system call while opening or probing.
    Io {
        /// The path asked for.
        path: PathBuf,
        /// What was being done, in a few words ("open", "BLKGETSIZE64").
        step: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotFound { path } => write!(f, "{}: no such file or device", path.display()),
            OpenError::IsDirectory { path } => {
                write!(
                    f,
                    "{}: is a directory, not a device or image file",
                    path.display()
                )
            }
            OpenError::UnsupportedKind { path } => write!(
                f,
                "{}: not a regular file, block device or character device",
                path.display()
            ),
            OpenError::DirectUnsupported { path } => write!(
                f,
                "{}: O_DIRECT refused by the file system (try without direct I/O)",
                path.display()
            ),
            OpenError::Io { path, step, source } => {
                write!(f, "{}: {step} failed: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_display_names_the_error() {
        assert_eq!(Errno::EIO.to_string(), "Input/output error (os error 5)");
    }

    #[test]
    fn transient_errors_are_exactly_eintr_eagain_ebusy() {
        assert!(IoError::Os(Errno::EINTR).is_transient());
        assert!(IoError::Os(Errno::EAGAIN).is_transient());
        assert!(IoError::Os(Errno::EBUSY).is_transient());
        assert!(!IoError::Os(Errno::EIO).is_transient());
        assert!(!IoError::Canceled.is_transient());
    }

    #[test]
    fn errors_sort_into_configuration_answer_and_silence() {
        let nvme = |(sct, sc): (u8, u8)| IoError::Nvme(NvmeStatus { sct, sc, dnr: true });
        let configuration = [
            IoError::Os(Errno::EINVAL),
            IoError::Os(Errno::EOPNOTSUPP),
            IoError::Os(Errno::ENOSYS),
            IoError::Os(Errno::EBADF),
            IoError::Os(Errno::EFAULT),
            IoError::Misaligned { align_bytes: 4096 },
            IoError::BufferLength {
                buffer_bytes: 0,
                len_bytes: 4096,
            },
            IoError::Unsupported { what: "flush" },
            nvme(NvmeStatus::INVALID_FIELD),
            nvme(NvmeStatus::LBA_OUT_OF_RANGE),
        ];
        for error in configuration {
            assert!(error.class().is_configuration(), "{error:?}");
        }
        let answers = [
            IoError::Os(Errno::EIO),
            IoError::Os(Errno::ENODATA),
            IoError::Os(Errno::EILSEQ),
            IoError::Os(Errno::ETIMEDOUT),
            IoError::Os(Errno::EAGAIN),
            IoError::Os(Errno(9999)),
            nvme(NvmeStatus::UNRECOVERED_READ_ERROR),
            nvme(NvmeStatus::DATA_TRANSFER_ERROR),
            nvme((2, 0x85)),
            IoError::ShortTransfer {
                done_bytes: 512,
                len_bytes: 4096,
            },
            IoError::OutOfRange {
                size_bytes: 1 << 20,
            },
        ];
        for error in answers {
            assert_eq!(error.class(), ErrorClass::DeviceAnswer, "{error:?}");
        }
        let timeout = Duration::from_millis(500);
        for error in [IoError::TimedOut { timeout }, IoError::Canceled] {
            assert_eq!(error.class(), ErrorClass::NoAnswer, "{error:?}");
        }
    }

    #[test]
    fn silence_is_not_an_answer() {
        assert!(!IoError::TimedOut {
            timeout: Duration::from_secs(1)
        }
        .is_device_answer());
        assert!(!IoError::Canceled.is_device_answer());
        assert!(!IoError::DeviceStalled {
            waited: Duration::from_secs(1)
        }
        .is_device_answer());
        assert!(IoError::Os(Errno::EIO).is_device_answer());
    }

    #[test]
    fn nvme_status_display_names_known_codes_and_keeps_unknown_ones() {
        let out_of_range = NvmeStatus {
            sct: 0,
            sc: 0x80,
            dnr: true,
        };
        assert_eq!(
            out_of_range.to_string(),
            "NVMe status sct 0x0 sc 0x80 (LBA out of range), do not retry"
        );
        let vendor = NvmeStatus {
            sct: 7,
            sc: 0xc1,
            dnr: false,
        };
        assert_eq!(vendor.to_string(), "NVMe status sct 0x7 sc 0xc1");
    }
}

//! Devices: a regular file, block device or character device, opened for rbio engines.

mod probe;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::buffer::Buffer;
use crate::completion::Completion;
use crate::error::{IoError, OpenError};
use crate::op::{Op, OpInfo, OpKind};

/// What kind of file a device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A regular file (an image).
    File,
    /// A block device (`/dev/nvme0n1`, `/dev/loop0`).
    Block,
    /// A character device (`/dev/ng0n1`, the NVMe generic device).
    Char,
}

/// An open device with the geometry engines need.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
    kind: DeviceKind,
    size_bytes: u64,
    logical_block_bytes: u32,
    dio_mem_align_bytes: u32,
    dio_offset_align_bytes: u32,
    direct: bool,
    direct_refused: bool,
    writable: bool,
}

/// How to open a device: read-only and buffered unless asked otherwise.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    write: bool,
    direct: bool,
    direct_fallback: bool,
}

impl DeviceOptions {
    /// Opens for writing as well as reading.
    pub fn write(mut self, write: bool) -> Self {
        self.write = write;
        self
    }

    /// Opens with `O_DIRECT`: transfers bypass the page cache and must be aligned.
    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Opens with `O_DIRECT` where the file or device takes it, else through the page cache.
    ///
    /// The probe opens with `O_DIRECT` and reads the first block: where either is refused
    /// with `EINVAL` (some FUSE and network file systems, tmpfs before Linux 6.6), the device
    /// is opened again without it and [`Device::direct_refused`] says so. A character device
    /// (the NVMe generic device) has no page cache to bypass and opens without it.
    pub fn direct_if_supported(mut self) -> Self {
        self.direct = true;
        self.direct_fallback = true;
        self
    }

    /// Opens `path`.
    ///
    /// # Errors
    /// An [`OpenError`] naming the path and the step that failed.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Device, OpenError> {
        let path = path.as_ref();
        if !self.direct_fallback {
            return self.open_as_asked(path);
        }
        let buffered = DeviceOptions {
            direct: false,
            direct_fallback: false,
            ..self.clone()
        };
        if kind_of(path)? == DeviceKind::Char {
            // No page cache stands between a character device and its reader.
            return buffered.open_as_asked(path);
        }
        let refused = |device: Device| Device {
            direct_refused: true,
            ..device
        };
        match self.open_as_asked(path) {
            Err(OpenError::DirectUnsupported { .. }) => buffered.open_as_asked(path).map(refused),
            Ok(device) if !device.direct_read_works() => {
                drop(device);
                buffered.open_as_asked(path).map(refused)
            }
            other => other,
        }
    }

    fn open_as_asked(&self, path: &Path) -> Result<Device, OpenError> {
        let kind = kind_of(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(self.write)
            .custom_flags(if self.direct { libc::O_DIRECT } else { 0 })
            .open(path)
            .map_err(|source| open_error(path, self.direct, source))?;
        let io_error = |step| {
            move |source| OpenError::Io {
                path: path.to_path_buf(),
                step,
                source,
            }
        };
        let (size_bytes, logical_block_bytes) = match kind {
            DeviceKind::File => (file.metadata().map_err(io_error("stat"))?.len(), 512),
            DeviceKind::Block => (
                probe::block_size_bytes(&file).map_err(io_error("BLKGETSIZE64"))?,
                probe::block_logical_bytes(&file).map_err(io_error("BLKSSZGET"))?,
            ),
            DeviceKind::Char => (0, 512),
        };
        let (dio_mem_align_bytes, dio_offset_align_bytes) =
            probe::dio_align_bytes(&file).unwrap_or((logical_block_bytes, logical_block_bytes));
        Ok(Device {
            file,
            path: path.to_path_buf(),
            kind,
            size_bytes,
            logical_block_bytes,
            dio_mem_align_bytes,
            dio_offset_align_bytes,
            direct: self.direct,
            direct_refused: false,
            writable: self.write,
        })
    }
}

fn kind_of(path: &Path) -> Result<DeviceKind, OpenError> {
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => OpenError::NotFound {
            path: path.to_path_buf(),
        },
        _ => OpenError::Io {
            path: path.to_path_buf(),
            step: "stat",
            source,
        },
    })?;
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        Err(OpenError::IsDirectory {
            path: path.to_path_buf(),
        })
    } else if file_type.is_file() {
        Ok(DeviceKind::File)
    } else if file_type.is_block_device() {
        Ok(DeviceKind::Block)
    } else if file_type.is_char_device() {
        Ok(DeviceKind::Char)
    } else {
        Err(OpenError::UnsupportedKind {
            path: path.to_path_buf(),
        })
    }
}

fn open_error(path: &Path, direct: bool, source: io::Error) -> OpenError {
    if direct && source.raw_os_error() == Some(libc::EINVAL) {
        return OpenError::DirectUnsupported {
            path: path.to_path_buf(),
        };
    }
    OpenError::Io {
        path: path.to_path_buf(),
        step: "open",
        source,
    }
}

impl Device {
    /// Options for opening a device (read-only, buffered by default).
    pub fn options() -> DeviceOptions {
        DeviceOptions::default()
    }

    /// Opens `path` read-only without O_DIRECT.
    ///
    /// # Errors
    /// As [`DeviceOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Device, OpenError> {
        DeviceOptions::default().open(path)
    }

    /// The same device with its size and logical block set from another source (NVMe
    /// Identify for a generic character device, whose size the kernel does not report).
    pub fn with_geometry(mut self, size_bytes: u64, logical_block_bytes: u32) -> Device {
        self.size_bytes = size_bytes;
        self.logical_block_bytes = logical_block_bytes;
        self.dio_mem_align_bytes = self.dio_mem_align_bytes.max(4096);
        self.dio_offset_align_bytes = logical_block_bytes;
        self
    }

    /// The path it was opened under.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Regular file, block device or character device.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// The size in bytes (`st_size`, `BLKGETSIZE64`, or as set by [`Device::with_geometry`]).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The logical block size (`BLKSSZGET`; 512 for files).
    pub fn logical_block_bytes(&self) -> u32 {
        self.logical_block_bytes
    }

    /// Direct-I/O alignment as (buffer address, file offset and length), from `statx`
    /// `STATX_DIOALIGN` where the kernel reports it, else the logical block size.
    pub fn dio_align_bytes(&self) -> (u32, u32) {
        (self.dio_mem_align_bytes, self.dio_offset_align_bytes)
    }

    /// Whether it was opened with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Whether O_DIRECT was asked for with [`DeviceOptions::direct_if_supported`] and refused,
    /// so the device reads through the page cache.
    pub fn direct_refused(&self) -> bool {
        self.direct_refused
    }

    /// Whether a direct read of the first block goes through: `false` only when it is refused
    /// with `EINVAL` (a device error or an empty device says nothing against O_DIRECT).
    fn direct_read_works(&self) -> bool {
        let (mem_align_bytes, offset_align_bytes) = self.dio_align_bytes();
        let len_bytes = (offset_align_bytes.max(self.logical_block_bytes) as usize).max(512);
        if self.size_bytes < len_bytes as u64 {
            return true;
        }
        let align_bytes = (mem_align_bytes as usize).max(len_bytes);
        let Ok(mut buffer) = Buffer::new_aligned(len_bytes, align_bytes) else {
            return true;
        };
        let info = OpInfo {
            kind: OpKind::Read,
            tag: 0,
            offset_bytes: 0,
            len_bytes,
            placement_id: None,
        };
        !matches!(
            crate::blocking::transfer(self, &info, Some(&mut buffer)),
            Err(IoError::Os(errno)) if errno == crate::error::Errno::EINVAL
        )
    }

    /// Whether it was opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The alignment every offset, length and buffer address must have: the direct-I/O
    /// alignment with O_DIRECT, else 1.
    pub fn align_bytes(&self) -> usize {
        if self.direct {
            self.dio_mem_align_bytes.max(self.dio_offset_align_bytes) as usize
        } else {
            1
        }
    }

    /// The open file, for engines.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Refuses, before it reaches the kernel, an operation this device cannot do: a write on a
    /// read-only device, a transfer past the end, or a misaligned one under O_DIRECT.
    ///
    /// # Errors
    /// [`IoError::BufferLength`] for a read or write whose buffer is missing or of another
    /// length than the operation's, [`IoError::Unsupported`], [`IoError::OutOfRange`] or
    /// [`IoError::Misaligned`].
    pub fn check(&self, info: &OpInfo, buffer: Option<&Buffer>) -> Result<(), IoError> {
        if info.kind == OpKind::Flush {
            return Ok(());
        }
        let buffer_bytes = buffer.map_or(0, Buffer::len_bytes);
        if buffer.is_none() || buffer_bytes != info.len_bytes {
            let len_bytes = info.len_bytes;
            return Err(IoError::BufferLength {
                buffer_bytes,
                len_bytes,
            });
        }
        if info.kind == OpKind::Write && !self.writable {
            return Err(IoError::Unsupported {
                what: "write to a device opened read-only",
            });
        }
        let size_known = self.kind != DeviceKind::Char || self.size_bytes > 0;
        let end_bytes = info.offset_bytes.checked_add(info.len_bytes as u64);
        if size_known && end_bytes.is_none_or(|end_bytes| end_bytes > self.size_bytes) {
            return Err(IoError::OutOfRange {
                size_bytes: self.size_bytes,
            });
        }
        if self.direct {
            let (mem_align, offset_align) = (
                self.dio_mem_align_bytes as u64,
                self.dio_offset_align_bytes as u64,
            );
            let address = buffer.map_or(0, |buffer| buffer.as_slice().as_ptr() as u64);
            let misaligned = !aligned_to(info.offset_bytes, offset_align)
                || !aligned_to(info.len_bytes as u64, offset_align)
                || !aligned_to(address, mem_align);
            if misaligned {
                return Err(IoError::Misaligned {
                    align_bytes: self.align_bytes(),
                });
            }
        }
        Ok(())
    }

    /// Passes `op` on if [`Device::check`] accepts it, or completes it with the refusal.
    ///
    /// # Errors
    /// The refused operation's completion, for the engine to hand out at its next reap.
    pub fn admit(&self, op: Op) -> Result<Op, Completion> {
        match self.check(&op.info(), op.buffer()) {
            Ok(()) => Ok(op),
            Err(error) => Err(op.complete(Err(error))),
        }
    }
}

/// Whether `value` is a multiple of `align`: a mask for the powers of two every device
/// reports (this runs for every operation), a division otherwise.
#[inline]
fn aligned_to(value: u64, align: u64) -> bool {
    if align.is_power_of_two() {
        value & (align - 1) == 0
    } else {
        value % align == 0
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(len_bytes: u64) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(len_bytes).unwrap();
        file
    }

    #[test]
    fn regular_file_reports_its_size_and_opens_read_only() {
        let file = image(1 << 20);
        let device = Device::open(file.path()).unwrap();
        assert_eq!(device.kind(), DeviceKind::File);
        assert_eq!(device.size_bytes(), 1 << 20);
        assert!(!device.is_writable());
        assert!(!device.is_direct());
        assert_eq!(device.align_bytes(), 1);
    }

    #[test]
    fn direct_where_supported_is_direct_on_a_disk_file() {
        let file = image(1 << 20);
        let device = Device::options()
            .direct_if_supported()
            .open(file.path())
            .unwrap();
        // Whether this file system takes O_DIRECT decides which of the two holds.
        let strict = Device::options().direct(true).open(file.path());
        match strict {
            Ok(_) => assert!(device.is_direct() && !device.direct_refused()),
            Err(OpenError::DirectUnsupported { .. }) => {
                assert!(!device.is_direct() && device.direct_refused())
            }
            Err(error) => panic!("{error}"),
        }
        assert!(!Device::open(file.path()).unwrap().direct_refused());
    }

    #[test]
    fn direct_refused_at_open_falls_back_to_the_page_cache() {
        // procfs refuses O_DIRECT at open with EINVAL, like some FUSE and network file systems.
        let path = Path::new("/proc/version");
        let strict = Device::options().direct(true).open(path).unwrap_err();
        assert!(
            matches!(strict, OpenError::DirectUnsupported { .. }),
            "{strict}"
        );
        let device = Device::options().direct_if_supported().open(path).unwrap();
        assert!(!device.is_direct());
        assert!(device.direct_refused());

        let null = Device::options().direct_if_supported().open("/dev/null");
        let null = null.unwrap();
        assert!(
            !null.is_direct() && !null.direct_refused(),
            "no page cache there"
        );
    }

    #[test]
    fn missing_path_and_directory_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Device::open(dir.path().join("absent")).unwrap_err();
        assert!(matches!(missing, OpenError::NotFound { .. }), "{missing}");
        let directory = Device::open(dir.path()).unwrap_err();
        assert!(
            matches!(directory, OpenError::IsDirectory { .. }),
            "{directory}"
        );
        assert!(directory
            .to_string()
            .ends_with("is a directory, not a device or image file"));
    }

    #[test]
    fn character_device_opens_with_unknown_size() {
        let device = Device::open("/dev/null").unwrap();
        assert_eq!(device.kind(), DeviceKind::Char);
        assert_eq!(device.size_bytes(), 0);
    }

    #[test]
    fn check_refuses_writes_past_end_and_misalignment() {
        let file = image(8192);
        let read_only = Device::open(file.path()).unwrap();
        let write = Op::write(0, 0, Buffer::new_aligned(512, 4096).unwrap());
        assert!(matches!(
            read_only.check(&write.info(), write.buffer()),
            Err(IoError::Unsupported { .. })
        ));
        assert_eq!(
            read_only.check(&write.info(), None),
            Err(IoError::BufferLength {
                buffer_bytes: 0,
                len_bytes: 512
            })
        );

        let past_end = Op::read(0, 8192 - 100, Buffer::new_aligned(512, 4096).unwrap());
        assert_eq!(
            read_only.check(&past_end.info(), past_end.buffer()),
            Err(IoError::OutOfRange { size_bytes: 8192 })
        );

        let direct = Device::options().direct(true).open(file.path()).unwrap();
        let odd = Op::read(0, 100, Buffer::new_aligned(512, 4096).unwrap());
        assert!(matches!(
            direct.check(&odd.info(), odd.buffer()),
            Err(IoError::Misaligned { .. })
        ));
        let op = Op::read(0, 4096, Buffer::new_aligned(4096, 4096).unwrap());
        let info = op.info();
        assert_eq!(direct.check(&info, op.buffer()), Ok(()));
        assert!(direct.admit(op).is_ok());
    }
}

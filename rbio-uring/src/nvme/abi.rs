//! The Linux NVMe passthrough ABI (`include/uapi/linux/nvme_ioctl.h`): command structs and ioctl numbers.
//!
//! Field names follow the kernel header so a reader can hold the two side by side; every
//! layout is pinned by compile-time size and offset checks below the definitions. Nothing
//! here touches a file descriptor: the ioctl calls live in `ioctl.rs`.

use core::mem::{offset_of, size_of};

/// `struct nvme_uring_cmd`: the 72-byte command carried in a 128-byte SQE's command area for
/// `IORING_OP_URING_CMD` with [`NVME_URING_CMD_IO`] or [`NVME_URING_CMD_ADMIN`].
///
/// `addr` and `metadata` are user-space addresses the kernel maps for the transfer; whoever
/// submits the command must keep that memory alive and untouched until its completion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NvmeUringCmd {
    /// NVMe opcode (command dword 0 bits 7:0).
    pub opcode: u8,
    /// Command flags; the kernel refuses any it does not know, so keep zero.
    pub flags: u8,
    /// Reserved, zero.
    pub rsvd1: u16,
    /// Namespace identifier.
    pub nsid: u32,
    /// Command dword 2.
    pub cdw2: u32,
    /// Command dword 3.
    pub cdw3: u32,
    /// User address of the metadata buffer, 0 for none.
    pub metadata: u64,
    /// User address of the data buffer, 0 for none.
    pub addr: u64,
    /// Length of the metadata buffer in bytes.
    pub metadata_len: u32,
    /// Length of the data buffer in bytes.
    pub data_len: u32,
    /// Command dword 10 (command specific; SLBA low for reads and writes).
    pub cdw10: u32,
    /// Command dword 11 (command specific; SLBA high for reads and writes).
    pub cdw11: u32,
    /// Command dword 12 (command specific; zero-based block count for reads and writes).
    pub cdw12: u32,
    /// Command dword 13.
    pub cdw13: u32,
    /// Command dword 14.
    pub cdw14: u32,
    /// Command dword 15.
    pub cdw15: u32,
    /// Timeout in milliseconds; 0 means the kernel's default (`nvme_core.io_timeout`).
    pub timeout_ms: u32,
    /// Reserved, zero.
    pub rsvd2: u32,
}

/// `struct nvme_passthru_cmd`, also spelled `struct nvme_admin_cmd`: the 72-byte argument of
/// [`NVME_IOCTL_ADMIN_CMD`] and [`NVME_IOCTL_IO_CMD`]. The kernel writes the completion's
/// command-specific dword 0 into `result`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NvmePassthruCmd {
    /// NVMe opcode.
    pub opcode: u8,
    /// Command flags; keep zero.
    pub flags: u8,
    /// Reserved, zero.
    pub rsvd1: u16,
    /// Namespace identifier.
    pub nsid: u32,
    /// Command dword 2.
    pub cdw2: u32,
    /// Command dword 3.
    pub cdw3: u32,
    /// User address of the metadata buffer, 0 for none.
    pub metadata: u64,
    /// User address of the data buffer, 0 for none.
    pub addr: u64,
    /// Length of the metadata buffer in bytes.
    pub metadata_len: u32,
    /// Length of the data buffer in bytes.
    pub data_len: u32,
    /// Command dword 10.
    pub cdw10: u32,
    /// Command dword 11.
    pub cdw11: u32,
    /// Command dword 12.
    pub cdw12: u32,
    /// Command dword 13.
    pub cdw13: u32,
    /// Command dword 14.
    pub cdw14: u32,
    /// Command dword 15.
    pub cdw15: u32,
    /// Timeout in milliseconds; 0 means the kernel's default.
    pub timeout_ms: u32,
    /// Written by the kernel: completion queue entry dword 0.
    pub result: u32,
}

/// `struct nvme_admin_cmd` is the same struct as `struct nvme_passthru_cmd` in the kernel.
pub type NvmeAdminCmd = NvmePassthruCmd;

/// Byte length of both command structs.
pub const NVME_CMD_BYTES: usize = 72;

const _: () = assert!(size_of::<NvmeUringCmd>() == NVME_CMD_BYTES);
const _: () = assert!(size_of::<NvmePassthruCmd>() == NVME_CMD_BYTES);
const _: () = assert!(offset_of!(NvmeUringCmd, opcode) == 0);
const _: () = assert!(offset_of!(NvmeUringCmd, flags) == 1);
const _: () = assert!(offset_of!(NvmeUringCmd, rsvd1) == 2);
const _: () = assert!(offset_of!(NvmeUringCmd, nsid) == 4);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw2) == 8);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw3) == 12);
const _: () = assert!(offset_of!(NvmeUringCmd, metadata) == 16);
const _: () = assert!(offset_of!(NvmeUringCmd, addr) == 24);
const _: () = assert!(offset_of!(NvmeUringCmd, metadata_len) == 32);
const _: () = assert!(offset_of!(NvmeUringCmd, data_len) == 36);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw10) == 40);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw11) == 44);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw12) == 48);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw13) == 52);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw14) == 56);
const _: () = assert!(offset_of!(NvmeUringCmd, cdw15) == 60);
const _: () = assert!(offset_of!(NvmeUringCmd, timeout_ms) == 64);
const _: () = assert!(offset_of!(NvmeUringCmd, rsvd2) == 68);
const _: () = assert!(offset_of!(NvmePassthruCmd, nsid) == 4);
const _: () = assert!(offset_of!(NvmePassthruCmd, addr) == 24);
const _: () = assert!(offset_of!(NvmePassthruCmd, data_len) == 36);
const _: () = assert!(offset_of!(NvmePassthruCmd, cdw10) == 40);
const _: () = assert!(offset_of!(NvmePassthruCmd, timeout_ms) == 64);
const _: () = assert!(offset_of!(NvmePassthruCmd, result) == 68);

impl NvmeUringCmd {
    /// The command as the kernel reads it on a little-endian machine, written field by field
    /// (no transmute), so tests can check the layout byte by byte.
    pub fn to_bytes(&self) -> [u8; NVME_CMD_BYTES] {
        let mut bytes = [0u8; NVME_CMD_BYTES];
        bytes[0] = self.opcode;
        bytes[1] = self.flags;
        bytes[2..4].copy_from_slice(&self.rsvd1.to_le_bytes());
        let dwords_at_4 = [self.nsid, self.cdw2, self.cdw3];
        for (index, dword) in dwords_at_4.iter().enumerate() {
            let at = 4 + 4 * index;
            bytes[at..at + 4].copy_from_slice(&dword.to_le_bytes());
        }
        bytes[16..24].copy_from_slice(&self.metadata.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.addr.to_le_bytes());
        let dwords_at_32 = [
            self.metadata_len,
            self.data_len,
            self.cdw10,
            self.cdw11,
            self.cdw12,
            self.cdw13,
            self.cdw14,
            self.cdw15,
            self.timeout_ms,
            self.rsvd2,
        ];
        for (index, dword) in dwords_at_32.iter().enumerate() {
            let at = 32 + 4 * index;
            bytes[at..at + 4].copy_from_slice(&dword.to_le_bytes());
        }
        bytes
    }
}

impl NvmePassthruCmd {
    /// The command as the kernel reads it on a little-endian machine, written field by field.
    ///
    /// The wire image is the uring command's with `result` in place of `rsvd2`.
    pub fn to_bytes(&self) -> [u8; NVME_CMD_BYTES] {
        let same_layout = NvmeUringCmd {
            opcode: self.opcode,
            flags: self.flags,
            rsvd1: self.rsvd1,
            nsid: self.nsid,
            cdw2: self.cdw2,
            cdw3: self.cdw3,
            metadata: self.metadata,
            addr: self.addr,
            metadata_len: self.metadata_len,
            data_len: self.data_len,
            cdw10: self.cdw10,
            cdw11: self.cdw11,
            cdw12: self.cdw12,
            cdw13: self.cdw13,
            cdw14: self.cdw14,
            cdw15: self.cdw15,
            timeout_ms: self.timeout_ms,
            rsvd2: self.result,
        };
        same_layout.to_bytes()
    }
}

impl From<NvmeUringCmd> for NvmePassthruCmd {
    /// The same command for the synchronous ioctl path (`rsvd2` becomes the zeroed `result`).
    fn from(cmd: NvmeUringCmd) -> Self {
        NvmePassthruCmd {
            opcode: cmd.opcode,
            flags: cmd.flags,
            rsvd1: cmd.rsvd1,
            nsid: cmd.nsid,
            cdw2: cmd.cdw2,
            cdw3: cmd.cdw3,
            metadata: cmd.metadata,
            addr: cmd.addr,
            metadata_len: cmd.metadata_len,
            data_len: cmd.data_len,
            cdw10: cmd.cdw10,
            cdw11: cmd.cdw11,
            cdw12: cmd.cdw12,
            cdw13: cmd.cdw13,
            cdw14: cmd.cdw14,
            cdw15: cmd.cdw15,
            timeout_ms: cmd.timeout_ms,
            result: 0,
        }
    }
}

// ioctl number encoding (`include/uapi/asm-generic/ioctl.h`): nr in bits 0..8, type in 8..16,
// size in 16..16+SIZEBITS, direction in the top bits. powerpc, mips and sparc use 13 size bits
// and a 3-bit direction with different values; every other Linux architecture uses the generic one.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
mod ioc_arch {
    pub const SIZE_BITS: u32 = 13;
    pub const NONE: u32 = 1;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 4;
}
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
mod ioc_arch {
    pub const SIZE_BITS: u32 = 14;
    pub const NONE: u32 = 0;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 1;
}

/// `_IOC_NONE`: the ioctl moves no argument.
pub const IOC_NONE: u32 = ioc_arch::NONE;
/// `_IOC_READ`: the kernel writes the argument (user space reads it).
pub const IOC_READ: u32 = ioc_arch::READ;
/// `_IOC_WRITE`: the kernel reads the argument (user space writes it).
pub const IOC_WRITE: u32 = ioc_arch::WRITE;

/// `_IOC(dir, type, nr, size)`: the ioctl request number for this direction, type letter,
/// number and argument size.
///
/// # Panics
///
/// At compile time (all uses are consts) if `size` does not fit the size field.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    const NR_SHIFT: u32 = 0;
    const TYPE_SHIFT: u32 = 8;
    const SIZE_SHIFT: u32 = 16;
    const DIR_SHIFT: u32 = SIZE_SHIFT + ioc_arch::SIZE_BITS;
    assert!(
        size < (1 << ioc_arch::SIZE_BITS),
        "ioctl argument too large"
    );
    (dir << DIR_SHIFT)
        | ((size as u32) << SIZE_SHIFT)
        | ((ty as u32) << TYPE_SHIFT)
        | ((nr as u32) << NR_SHIFT)
}

/// The ioctl type letter of the NVMe driver.
const NVME_IOCTL_TYPE: u8 = b'N';

/// `NVME_IOCTL_ID = _IO('N', 0x40)`: returns the namespace id of a namespace device.
pub const NVME_IOCTL_ID: u32 = ioc(IOC_NONE, NVME_IOCTL_TYPE, 0x40, 0);
/// `NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd)`: synchronous admin command.
pub const NVME_IOCTL_ADMIN_CMD: u32 = ioc(
    IOC_READ | IOC_WRITE,
    NVME_IOCTL_TYPE,
    0x41,
    size_of::<NvmeAdminCmd>(),
);
/// `NVME_IOCTL_IO_CMD = _IOWR('N', 0x43, struct nvme_passthru_cmd)`: synchronous I/O command.
pub const NVME_IOCTL_IO_CMD: u32 = ioc(
    IOC_READ | IOC_WRITE,
    NVME_IOCTL_TYPE,
    0x43,
    size_of::<NvmePassthruCmd>(),
);
/// `NVME_URING_CMD_IO = _IOWR('N', 0x80, struct nvme_uring_cmd)`: the `cmd_op` of an
/// `IORING_OP_URING_CMD` SQE carrying an I/O command.
pub const NVME_URING_CMD_IO: u32 = ioc(
    IOC_READ | IOC_WRITE,
    NVME_IOCTL_TYPE,
    0x80,
    size_of::<NvmeUringCmd>(),
);
/// `NVME_URING_CMD_ADMIN = _IOWR('N', 0x82, struct nvme_uring_cmd)`: the `cmd_op` for an admin
/// command through io_uring (accepted on the controller device `/dev/nvmeX`).
pub const NVME_URING_CMD_ADMIN: u32 = ioc(
    IOC_READ | IOC_WRITE,
    NVME_IOCTL_TYPE,
    0x82,
    size_of::<NvmeUringCmd>(),
);

// The values the kernel headers give on x86-64 and aarch64 (generic ioctl encoding).
#[cfg(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64"))]
const _: () = {
    assert!(NVME_IOCTL_ID == 0x4e40);
    assert!(NVME_IOCTL_ADMIN_CMD == 0xc048_4e41);
    assert!(NVME_IOCTL_IO_CMD == 0xc048_4e43);
    assert!(NVME_URING_CMD_IO == 0xc048_4e80);
    assert!(NVME_URING_CMD_ADMIN == 0xc048_4e82);
};

#[cfg(test)]
mod tests {
    use super::*;

    fn dword_at(bytes: &[u8; NVME_CMD_BYTES], at: usize) -> u32 {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    #[test]
    fn uring_cmd_bytes_put_every_field_at_its_kernel_offset() {
        let cmd = NvmeUringCmd {
            opcode: 0xa1,
            flags: 0xb2,
            rsvd1: 0xc3d4,
            nsid: 0x0102_0304,
            cdw2: 0x1111_1111,
            cdw3: 0x2222_2222,
            metadata: 0x3333_3333_4444_4444,
            addr: 0x5555_5555_6666_6666,
            metadata_len: 0x7777_7777,
            data_len: 0x8888_8888,
            cdw10: 10,
            cdw11: 11,
            cdw12: 12,
            cdw13: 13,
            cdw14: 14,
            cdw15: 15,
            timeout_ms: 0x9999_9999,
            rsvd2: 0xaaaa_aaaa,
        };
        let bytes = cmd.to_bytes();
        assert_eq!(&bytes[0..4], &[0xa1, 0xb2, 0xd4, 0xc3]);
        assert_eq!(&bytes[4..8], &[0x04, 0x03, 0x02, 0x01]);
        assert_eq!(dword_at(&bytes, 8), 0x1111_1111);
        assert_eq!(dword_at(&bytes, 12), 0x2222_2222);
        assert_eq!(
            &bytes[16..24],
            &[0x44, 0x44, 0x44, 0x44, 0x33, 0x33, 0x33, 0x33]
        );
        assert_eq!(
            &bytes[24..32],
            &[0x66, 0x66, 0x66, 0x66, 0x55, 0x55, 0x55, 0x55]
        );
        assert_eq!(dword_at(&bytes, 32), 0x7777_7777);
        assert_eq!(dword_at(&bytes, 36), 0x8888_8888);
        for (index, expected) in (10u32..=15).enumerate() {
            assert_eq!(dword_at(&bytes, 40 + 4 * index), expected, "cdw{expected}");
        }
        assert_eq!(dword_at(&bytes, 64), 0x9999_9999);
        assert_eq!(dword_at(&bytes, 68), 0xaaaa_aaaa);
    }

    #[test]
    fn passthru_cmd_keeps_result_in_the_last_dword() {
        let cmd = NvmePassthruCmd {
            opcode: 0x06,
            nsid: 1,
            cdw10: 1,
            result: 0xdead_beef,
            ..NvmePassthruCmd::default()
        };
        let bytes = cmd.to_bytes();
        assert_eq!(bytes[0], 0x06);
        assert_eq!(dword_at(&bytes, 4), 1);
        assert_eq!(dword_at(&bytes, 40), 1);
        assert_eq!(dword_at(&bytes, 68), 0xdead_beef);
    }

    #[test]
    fn passthru_from_uring_cmd_copies_fields_and_zeroes_result() {
        let uring = NvmeUringCmd {
            opcode: 0x02,
            nsid: 2,
            addr: 0x1000,
            data_len: 4096,
            cdw10: 7,
            cdw12: 7,
            rsvd2: 0,
            ..NvmeUringCmd::default()
        };
        let passthru = NvmePassthruCmd::from(uring);
        assert_eq!(passthru.to_bytes(), uring.to_bytes());
    }

    #[test]
    fn ioc_encodes_direction_size_type_and_number() {
        assert_eq!(ioc(IOC_NONE, b'N', 0x40, 0), 0x4e40);
        assert_eq!(ioc(IOC_READ | IOC_WRITE, b'N', 0x80, 72), NVME_URING_CMD_IO);
        if IOC_WRITE == 1 {
            assert_eq!(ioc(IOC_WRITE, b'N', 0x42, 44), 0x402c_4e42);
            assert_eq!(ioc(IOC_READ, 0x12, 114, 8), 0x8008_1272); // BLKGETSIZE64
        }
    }
}

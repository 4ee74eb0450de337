//! NVMe passthrough: the kernel ABI, the typed command encoder, Identify, transfer limits,
//! status decoding, Flexible Data Placement status, and the engine built on them.
//!
//! Only `ioctl.rs` contains `unsafe` (the synchronous ioctls; `codec.rs` has one more, in a
//! test, to look at an SQE's bytes); everything else is plain data and arithmetic, tested on
//! hand-checked bytes. The io_uring passthrough engine, [`NvmeEngine`], runs on the ring core
//! with its own codec (`codec.rs`): it builds its SQEs from [`NvmeIo::encode`], splits by
//! [`NvmeNamespaceInfo::max_transfer_bytes_at`] and decodes `cqe.res` with
//! [`nvme_res_to_result`]. [`NvmeNamespace`] is the synchronous path: an open namespace with
//! its Identify answer from the same descriptor, which sizes every command it reads with.

mod abi;
mod cmd;
mod codec;
mod engine;
mod fdp;
mod identify;
mod ioctl;
mod limits;
mod namespace;
mod open;
mod status;

pub use abi::{
    ioc, NvmeAdminCmd, NvmePassthruCmd, NvmeUringCmd, IOC_NONE, IOC_READ, IOC_WRITE,
    NVME_CMD_BYTES, NVME_IOCTL_ADMIN_CMD, NVME_IOCTL_ID, NVME_IOCTL_IO_CMD, NVME_URING_CMD_ADMIN,
    NVME_URING_CMD_IO,
};
pub use cmd::{
    LbaError, LbaFormat, LbaPiece, LbaRange, LbaSplit, NvmeEncodeError, NvmeIo, NvmeIoOpcode,
    NVME_BLOCK_COUNT_MAX,
};
pub use engine::{NvmeBuilder, NvmeEngine, NvmeSetupError};
pub use fdp::{
    parse_ruh_status, ruh_status_len_bytes, FdpStatusError, RuhStatusDescriptor,
    RUH_STATUS_BYTES_MAX, RUH_STATUS_DESCRIPTOR_BYTES, RUH_STATUS_HEADER_BYTES,
};
pub use identify::{
    parse_identify_controller_mdts, parse_identify_namespace, IdentifyError, IdentifyNamespace,
    NvmeNamespaceInfo,
};
pub use limits::{
    max_transfer_bytes_from_mdts, parse_max_hw_sectors_kb, parse_max_segments, sysfs_queue_dirs,
    transfer_limit_bytes, KernelQueueLimits, NVME_MPSMIN_BYTES_ASSUMED, NVME_SEGMENTS_ASSUMED,
    NVME_TRANSFER_BYTES_UNLIMITED_CAP,
};
pub use namespace::NvmeNamespace;
pub use open::{check_nvme_char_device, NvmeOpenError};
pub use status::{
    decode_nvme_status, nvme_res_to_result, NVME_SCT_COMMAND_SPECIFIC, NVME_SCT_GENERIC,
    NVME_SCT_MEDIA, NVME_SCT_PATH, NVME_SCT_VENDOR, NVME_SC_ABORT_REQUESTED,
    NVME_SC_CAPACITY_EXCEEDED, NVME_SC_HOST_ABORTED_COMMAND, NVME_SC_HOST_PATH_ERROR,
    NVME_SC_INVALID_NAMESPACE_OR_FORMAT, NVME_SC_INVALID_OPCODE, NVME_SC_NAMESPACE_NOT_READY,
    NVME_SC_WRITE_FAULT,
};

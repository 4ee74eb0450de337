//! The suite's device image: a known byte pattern, set up once and restored after writes.

use std::sync::Arc;

use crate::blocking;
use crate::buffer::Buffer;
use crate::device::Device;
use crate::op::{OpInfo, OpKind};

/// The byte the suite expects at `offset_bytes` of an untouched image.
pub fn pattern_byte(offset_bytes: u64) -> u8 {
    let block = offset_bytes >> 9;
    (offset_bytes as u8).wrapping_mul(31) ^ (block as u8).wrapping_mul(7) ^ (block >> 8) as u8
}

/// Writes the pattern over `offset_bytes .. offset_bytes + len_bytes` of `device`, in
/// aligned chunks through the reference transfer routine.
///
/// # Panics
/// If the device refuses the write: the suite cannot run without a writable target.
pub fn write_pattern(device: &Arc<Device>, offset_bytes: u64, len_bytes: u64) {
    const CHUNK_BYTES: u64 = 1 << 20;
    let align = device.align_bytes().max(512) as u64;
    let start = offset_bytes / align * align;
    let end = (offset_bytes + len_bytes)
        .next_multiple_of(align)
        .min(device.size_bytes());
    let mut chunk = Buffer::new_aligned(CHUNK_BYTES as usize, 4096).expect("chunk buffer");
    let mut cursor = start;
    while cursor < end {
        let chunk_bytes = (end - cursor).min(CHUNK_BYTES) as usize;
        chunk.set_len(chunk_bytes);
        for (index, byte) in chunk.as_mut_slice().iter_mut().enumerate() {
            *byte = pattern_byte(cursor + index as u64);
        }
        let info = OpInfo {
            kind: OpKind::Write,
            tag: 0,
            offset_bytes: cursor,
            len_bytes: chunk_bytes,
            placement_id: None,
        };
        let written = blocking::transfer(device, &info, Some(&mut chunk));
        assert_eq!(
            written,
            Ok(chunk_bytes),
            "conformance: restoring the pattern at {cursor}"
        );
        cursor += chunk_bytes as u64;
    }
}

/// Reads `len_bytes` at `offset_bytes` through the reference routine, for checking writes.
///
/// # Panics
/// If the read fails: the bytes were just written.
pub fn read_back(device: &Arc<Device>, offset_bytes: u64, len_bytes: usize) -> Vec<u8> {
    let align = device.align_bytes().max(512) as u64;
    let start = offset_bytes / align * align;
    let end = (offset_bytes + len_bytes as u64).next_multiple_of(align);
    let mut buffer = Buffer::new_aligned((end - start) as usize, 4096).expect("read-back buffer");
    let info = OpInfo {
        kind: OpKind::Read,
        tag: 0,
        offset_bytes: start,
        len_bytes: (end - start) as usize,
        placement_id: None,
    };
    let read = blocking::transfer(device, &info, Some(&mut buffer));
    assert_eq!(read, Ok(info.len_bytes), "conformance: reading back {info}");
    let skip = (offset_bytes - start) as usize;
    buffer.as_slice()[skip..skip + len_bytes].to_vec()
}

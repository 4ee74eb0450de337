//! The checkpoint mirror: its 32-byte header, the rules that accept it, and how a write is laid out.
//!
//! A mirror is one `block_align` header block followed by the JSON payload, zero-padded to
//! `block_align`. Checkpoint `seq = n` goes to mirror `(n - 1) % 2`; the payload is written
//! first and the header block after it, so a torn write leaves the old header (and its CRC) in
//! charge.

use super::array_at;
use std::fmt;

use super::layout::{Geometry, Layout, MIRROR_COUNT};

const CHECKPOINT_MAGIC_OFFSET: usize = 0;
const CHECKPOINT_MAGIC_BYTES: usize = 8;
const CHECKPOINT_VERSION_OFFSET: usize = CHECKPOINT_MAGIC_OFFSET + CHECKPOINT_MAGIC_BYTES;
const CHECKPOINT_VERSION_BYTES: usize = 4;
const CHECKPOINT_SEQ_OFFSET: usize = CHECKPOINT_VERSION_OFFSET + CHECKPOINT_VERSION_BYTES;
const CHECKPOINT_SEQ_BYTES: usize = 8;
const CHECKPOINT_PAYLOAD_LEN_OFFSET: usize = CHECKPOINT_SEQ_OFFSET + CHECKPOINT_SEQ_BYTES;
const CHECKPOINT_PAYLOAD_LEN_BYTES: usize = 8;
const CHECKPOINT_CRC_OFFSET: usize = CHECKPOINT_PAYLOAD_LEN_OFFSET + CHECKPOINT_PAYLOAD_LEN_BYTES;
const CHECKPOINT_CRC_BYTES: usize = 4;

/// Bytes of a checkpoint mirror header; the rest of its block is zero.
pub const CHECKPOINT_HEADER_BYTES: usize = CHECKPOINT_CRC_OFFSET + CHECKPOINT_CRC_BYTES;

const _: () = assert!(CHECKPOINT_HEADER_BYTES == 32);

/// CRC-32 (zlib / IEEE 802.3, reflected polynomial 0xEDB88320) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The mirror that checkpoint `seq` is written to: `(seq - 1) % 2` (seq 0 gives 1, as in Python).
pub fn mirror_index_for_seq(seq: u64) -> usize {
    (seq.wrapping_sub(1) % MIRROR_COUNT as u64) as usize
}

/// The header at the start of a checkpoint mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CheckpointHeader {
    /// Must equal the layout's `meta_magic`.
    pub magic: [u8; 8],
    /// Must equal the layout's `meta_version`.
    pub version: u32,
    /// Sequence number: one more per checkpoint written; the greatest valid one wins.
    pub seq: u64,
    /// Bytes of JSON payload after the header block, not padded.
    pub payload_len_bytes: u64,
    /// CRC-32 of those payload bytes.
    pub crc32: u32,
}

impl CheckpointHeader {
    /// The header describing `payload` as checkpoint `seq` of a device with `layout`.
    pub fn for_payload(layout: &Layout, seq: u64, payload: &[u8]) -> CheckpointHeader {
        CheckpointHeader {
            magic: layout.meta_magic,
            version: layout.meta_version,
            seq,
            payload_len_bytes: payload.len() as u64,
            crc32: crc32(payload),
        }
    }

    /// The header's [`CHECKPOINT_HEADER_BYTES`] bytes.
    pub fn to_bytes(&self) -> [u8; CHECKPOINT_HEADER_BYTES] {
        let mut bytes = [0u8; CHECKPOINT_HEADER_BYTES];
        bytes[CHECKPOINT_MAGIC_OFFSET..CHECKPOINT_VERSION_OFFSET].copy_from_slice(&self.magic);
        bytes[CHECKPOINT_VERSION_OFFSET..CHECKPOINT_SEQ_OFFSET]
            .copy_from_slice(&self.version.to_le_bytes());
        bytes[CHECKPOINT_SEQ_OFFSET..CHECKPOINT_PAYLOAD_LEN_OFFSET]
            .copy_from_slice(&self.seq.to_le_bytes());
        bytes[CHECKPOINT_PAYLOAD_LEN_OFFSET..CHECKPOINT_CRC_OFFSET]
            .copy_from_slice(&self.payload_len_bytes.to_le_bytes());
        bytes[CHECKPOINT_CRC_OFFSET..].copy_from_slice(&self.crc32.to_le_bytes());
        bytes
    }

    /// Writes the header into `header_block` (normally `block_align` long) and zeroes the rest.
    ///
    /// # Panics
    ///
    /// If `header_block` is shorter than [`CHECKPOINT_HEADER_BYTES`]: the caller sizes it.
    pub fn encode_into(&self, header_block: &mut [u8]) {
        assert!(
            header_block.len() >= CHECKPOINT_HEADER_BYTES,
            "checkpoint header block of {} bytes, need at least {CHECKPOINT_HEADER_BYTES}",
            header_block.len()
        );
        let (header, padding) = header_block.split_at_mut(CHECKPOINT_HEADER_BYTES);
        header.copy_from_slice(&self.to_bytes());
        padding.fill(0);
    }

    /// Reads the header fields from the start of `bytes`; [`CheckpointHeader::check`] judges them.
    ///
    /// # Errors
    ///
    /// [`CheckpointHeaderError::TooShort`] when fewer than 32 bytes are given.
    pub fn decode(bytes: &[u8]) -> Result<CheckpointHeader, CheckpointHeaderError> {
        let Some(header) = bytes.first_chunk::<CHECKPOINT_HEADER_BYTES>() else {
            return Err(CheckpointHeaderError::TooShort {
                len_bytes: bytes.len(),
            });
        };
        Ok(CheckpointHeader {
            magic: array_at(header, CHECKPOINT_MAGIC_OFFSET),
            version: u32::from_le_bytes(array_at(header, CHECKPOINT_VERSION_OFFSET)),
            seq: u64::from_le_bytes(array_at(header, CHECKPOINT_SEQ_OFFSET)),
            payload_len_bytes: u64::from_le_bytes(array_at(header, CHECKPOINT_PAYLOAD_LEN_OFFSET)),
            crc32: u32::from_le_bytes(array_at(header, CHECKPOINT_CRC_OFFSET)),
        })
    }

    /// Applies the spec's header rules ("Selecting the checkpoint"), before the payload is read.
    ///
    /// # Errors
    ///
    /// The first rule that fails: magic, version, empty payload, payload larger than a mirror.
    pub fn check(&self, layout: &Layout, geometry: &Geometry) -> Result<(), CheckpointRejection> {
        if self.magic != layout.meta_magic {
            return Err(CheckpointRejection::BadMagic {
                found: self.magic,
                expected: layout.meta_magic,
            });
        }
        if self.version != layout.meta_version {
            return Err(CheckpointRejection::BadVersion {
                found: self.version,
                expected: layout.meta_version,
            });
        }
        if self.payload_len_bytes == 0 {
            return Err(CheckpointRejection::EmptyPayload);
        }
        let capacity_bytes = geometry.mirror_payload_capacity_bytes();
        if self.payload_len_bytes > capacity_bytes {
            return Err(CheckpointRejection::PayloadTooLarge {
                payload_len_bytes: self.payload_len_bytes,
                capacity_bytes,
            });
        }
        Ok(())
    }

    /// Bytes to read after the header block: the payload length rounded up to `block_align`.
    pub fn payload_read_bytes(&self, geometry: &Geometry) -> u64 {
        geometry.round_up_bytes(self.payload_len_bytes)
    }

    /// Checks the CRC of the payload as read (padding past the length allowed) and returns the
    /// payload itself, ready for `Checkpoint::parse`.
    ///
    /// # Errors
    ///
    /// [`CheckpointRejection::PayloadTruncated`] when fewer bytes than the length were read,
    /// [`CheckpointRejection::CrcMismatch`] when the CRC differs.
    pub fn check_payload<'p>(
        &self,
        payload_read: &'p [u8],
    ) -> Result<&'p [u8], CheckpointRejection> {
        self.check_pieces(&[payload_read])?;
        Ok(&payload_read[..self.payload_len_bytes as usize])
    }

    /// As [`CheckpointHeader::check_payload`], for a payload read in pieces (in order): on
    /// success the pieces are cut to the payload's length (pieces past it removed).
    pub(crate) fn check_payload_chunks(
        &self,
        chunks: &mut Vec<Vec<u8>>,
    ) -> Result<(), CheckpointRejection> {
        self.check_pieces(chunks)?;
        let mut left_bytes = self.payload_len_bytes as usize;
        for chunk in chunks.iter_mut() {
            chunk.truncate(left_bytes);
            left_bytes -= chunk.len();
        }
        chunks.retain(|chunk| !chunk.is_empty());
        Ok(())
    }

    /// The length and CRC rules over the payload read as `pieces`, in order.
    fn check_pieces<P: AsRef<[u8]>>(&self, pieces: &[P]) -> Result<(), CheckpointRejection> {
        let read_bytes: u64 = pieces.iter().map(|p| p.as_ref().len() as u64).sum();
        if read_bytes < self.payload_len_bytes || usize::try_from(self.payload_len_bytes).is_err() {
            return Err(CheckpointRejection::PayloadTruncated {
                payload_len_bytes: self.payload_len_bytes,
                read_bytes,
            });
        }
        let mut hasher = crc32fast::Hasher::new();
        let mut left_bytes = self.payload_len_bytes as usize;
        for piece in pieces {
            let piece = piece.as_ref();
            let taken = &piece[..left_bytes.min(piece.len())];
            hasher.update(taken);
            left_bytes -= taken.len();
        }
        let computed = hasher.finalize();
        if computed != self.crc32 {
            return Err(CheckpointRejection::CrcMismatch {
                stored: self.crc32,
                computed,
            });
        }
        Ok(())
    }
}

/// One checkpoint laid out for writing: the payload blocks first, then the header block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorWrite {
    /// The mirror written: [`mirror_index_for_seq`] of the sequence number.
    pub mirror_index: usize,
    /// Where `payload_blocks` go.
    pub payload_offset_bytes: u64,
    /// The payload, zero-padded to a multiple of `block_align`. Write these first.
    pub payload_blocks: Vec<u8>,
    /// Where `header_block` goes.
    pub header_offset_bytes: u64,
    /// One `block_align` block: the header, then zeroes. Write it after the payload.
    pub header_block: Vec<u8>,
}

/// Lays out `payload` as checkpoint `seq` of a device with `layout` and `geometry`.
///
/// # Errors
///
/// The [`CheckpointRejection`] a reader would give the header: an empty payload, or one larger
/// than a mirror holds (LMCache skips such a checkpoint).
pub fn encode_mirror(
    layout: &Layout,
    geometry: &Geometry,
    seq: u64,
    payload: &[u8],
) -> Result<MirrorWrite, CheckpointRejection> {
    let header = CheckpointHeader::for_payload(layout, seq, payload);
    header.check(layout, geometry)?;
    let block_bytes = geometry.block_align() as usize;
    let mut header_block = vec![0u8; block_bytes];
    header.encode_into(&mut header_block);
    let mut payload_blocks = Vec::with_capacity(header.payload_read_bytes(geometry) as usize);
    payload_blocks.extend_from_slice(payload);
    payload_blocks.resize(header.payload_read_bytes(geometry) as usize, 0);
    let mirror_index = mirror_index_for_seq(seq);
    debug_assert_eq!(CheckpointHeader::decode(&header_block), Ok(header));
    Ok(MirrorWrite {
        mirror_index,
        payload_offset_bytes: geometry.mirror_payload_offset_bytes(mirror_index),
        payload_blocks,
        header_offset_bytes: geometry.mirror_offset_bytes(mirror_index),
        header_block,
    })
}

/// Why bytes read from a mirror header are not a header at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointHeaderError {
    /// Fewer bytes than a header.
    TooShort {
        /// Bytes given.
        len_bytes: usize,
    },
}

impl fmt::Display for CheckpointHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointHeaderError::TooShort { len_bytes } => write!(
                f,
                "checkpoint header of {len_bytes} bytes, need at least {CHECKPOINT_HEADER_BYTES}"
            ),
        }
    }
}

impl std::error::Error for CheckpointHeaderError {}

/// Why a mirror's checkpoint is not a candidate (spec: "Selecting the checkpoint").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointRejection {
    /// The magic is not the layout's `meta_magic` (a blank mirror reads as zeroes).
    BadMagic {
        /// Magic in the header.
        found: [u8; 8],
        /// The layout's `meta_magic`.
        expected: [u8; 8],
    },
    /// The version is not the layout's `meta_version`.
    BadVersion {
        /// Version in the header.
        found: u32,
        /// The layout's `meta_version`.
        expected: u32,
    },
    /// The payload length is 0.
    EmptyPayload,
    /// The payload length exceeds what a mirror holds after its header block.
    PayloadTooLarge {
        /// Length in the header.
        payload_len_bytes: u64,
        /// `mirror_bytes - block_align`.
        capacity_bytes: u64,
    },
    /// Fewer payload bytes were read than the header's length.
    PayloadTruncated {
        /// Length in the header.
        payload_len_bytes: u64,
        /// Bytes handed to [`CheckpointHeader::check_payload`].
        read_bytes: u64,
    },
    /// The payload's CRC-32 differs from the header's.
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the payload read.
        computed: u32,
    },
}

impl fmt::Display for CheckpointRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointRejection::*;
        match *self {
            BadMagic { found, expected } => write!(
                f,
                "checkpoint magic \"{}\" in header, \"{}\" configured",
                found.escape_ascii(),
                expected.escape_ascii()
            ),
            BadVersion { found, expected } => {
                write!(
                    f,
                    "checkpoint version {found} in header, {expected} configured"
                )
            }
            EmptyPayload => write!(f, "checkpoint payload length is 0"),
            PayloadTooLarge {
                payload_len_bytes,
                capacity_bytes,
            } => write!(
                f,
                "checkpoint payload length {payload_len_bytes} exceeds the mirror's capacity \
                 {capacity_bytes}"
            ),
            PayloadTruncated {
                payload_len_bytes,
                read_bytes,
            } => write!(
                f,
                "checkpoint payload length {payload_len_bytes} in header, {read_bytes} bytes read"
            ),
            CrcMismatch { stored, computed } => write!(
                f,
                "checkpoint crc32 {stored:#010x} in header, {computed:#010x} over the payload"
            ),
        }
    }
}

impl std::error::Error for CheckpointRejection {}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::format::test_fixture::{c1000_geometry as geometry, c1000_layout as layout};

    const MIB: u64 = 1 << 20;

    /// Builds a header from its fields in on-disk order.
    fn header(magic: &[u8; 8], version: u32, seq: u64, payload_len_bytes: u64) -> Vec<u8> {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(&payload_len_bytes.to_le_bytes());
        bytes.extend_from_slice(&0xcbf4_3926_u32.to_le_bytes());
        bytes
    }

    fn check(bytes: &[u8], expected: Result<(u64, u64), &str>) {
        let actual = CheckpointHeader::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|h| {
                h.check(&layout(), &geometry()).map_err(|e| e.to_string())?;
                Ok((h.seq, h.payload_len_bytes))
            });
        assert_eq!(actual, expected.map_err(str::to_owned), "{bytes:x?}");
    }

    #[test]
    fn crc32_test_vector() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn mirror_for_seq_alternates() {
        let cases = [(1, 0), (2, 1), (3, 0), (4, 1), (0, 1), (u64::MAX, 0)];
        for (seq, mirror_index) in cases {
            assert_eq!(mirror_index_for_seq(seq), mirror_index, "seq {seq}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn decode_and_check_cases() {
        let capacity = 2 * MIB - 4096;
        check(&header(b"LMCIDX01", 1, 2, 206_969), Ok((2, 206_969)));
        check(&header(b"LMCIDX01", 1, u64::MAX, capacity), Ok((u64::MAX, capacity)));
        check(&[header(b"LMCIDX01", 1, 7, 1), vec![0xAA; 4064]].concat(), Ok((7, 1)));
        check(&header(b"LMCIDX01", 1, 1, 1)[..31], Err("checkpoint header of 31 bytes, need at least 32"));
        check(&[], Err("checkpoint header of 0 bytes, need at least 32"));
        check(&[0; 4096], Err("checkpoint magic \"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\" in header, \"LMCIDX01\" configured"));
        check(&header(b"LMCIDX02", 1, 1, 1), Err("checkpoint magic \"LMCIDX02\" in header, \"LMCIDX01\" configured"));
        check(&header(b"LMCIDX01", 2, 1, 1), Err("checkpoint version 2 in header, 1 configured"));
        check(&header(b"LMCIDX01", 0, 1, 1), Err("checkpoint version 0 in header, 1 configured"));
        check(&header(b"LMCIDX01", 1, 1, 0), Err("checkpoint payload length is 0"));
        check(&header(b"LMCIDX01", 1, 1, capacity + 1), Err("checkpoint payload length 2093057 exceeds the mirror's capacity 2093056"));
        check(&header(b"LMCIDX01", 1, 1, u64::MAX), Err("checkpoint payload length 18446744073709551615 exceeds the mirror's capacity 2093056"));
    }

    #[test]
    fn header_round_trips_and_zeroes_block() {
        let h = CheckpointHeader {
            magic: *b"LMCIDX01",
            version: 1,
            seq: 2,
            payload_len_bytes: 9,
            crc32: 0xcbf4_3926,
        };
        assert_eq!(h.to_bytes().as_slice(), header(b"LMCIDX01", 1, 2, 9));
        let mut block = vec![0xAA; 4096];
        h.encode_into(&mut block);
        assert_eq!(CheckpointHeader::decode(&block), Ok(h));
        assert!(block[32..].iter().all(|&b| b == 0));
    }

    #[test]
    fn check_payload_uses_length_and_crc() {
        let h = CheckpointHeader::for_payload(&layout(), 1, b"123456789");
        assert_eq!(h.crc32, 0xcbf4_3926);
        let mut read = b"123456789".to_vec();
        read.resize(4096, 0);
        assert_eq!(h.check_payload(&read), Ok(&b"123456789"[..]));
        assert_eq!(
            h.check_payload(b"12345678").unwrap_err().to_string(),
            "checkpoint payload length 9 in header, 8 bytes read"
        );
        assert_eq!(
            h.check_payload(b"123456780").unwrap_err().to_string(),
            format!(
                "checkpoint crc32 0xcbf43926 in header, {:#010x} over the payload",
                crc32(b"123456780")
            )
        );
    }

    #[test]
    fn encode_mirror_lays_out_payload_then_header() {
        let (l, g) = (layout(), geometry());
        let write = encode_mirror(&l, &g, 2, b"{\"version\":1}").unwrap();
        assert_eq!(write.mirror_index, 1);
        assert_eq!(
            (write.header_offset_bytes, write.payload_offset_bytes),
            (2 * MIB, 2 * MIB + 4096)
        );
        assert_eq!(write.payload_blocks.len(), 4096);
        assert_eq!(&write.payload_blocks[..13], b"{\"version\":1}");
        assert!(write.payload_blocks[13..].iter().all(|&b| b == 0));
        let h = CheckpointHeader::decode(&write.header_block).unwrap();
        assert_eq!(write.header_block.len(), 4096);
        assert_eq!((h.seq, h.payload_len_bytes), (2, 13));
        assert_eq!(h.check(&l, &g), Ok(()));
        assert_eq!(
            h.check_payload(&write.payload_blocks).map(<[u8]>::len),
            Ok(13)
        );
        let first = encode_mirror(&l, &g, 1, &[b'x'; 4096]).unwrap();
        assert_eq!(
            (
                first.mirror_index,
                first.header_offset_bytes,
                first.payload_blocks.len()
            ),
            (0, 0, 4096)
        );
    }

    #[test]
    fn encode_mirror_refuses_what_a_reader_rejects() {
        let (l, g) = (layout(), geometry());
        assert_eq!(
            encode_mirror(&l, &g, 1, b""),
            Err(CheckpointRejection::EmptyPayload)
        );
        let too_big = vec![b' '; (2 * MIB - 4096 + 1) as usize];
        assert!(matches!(
            encode_mirror(&l, &g, 1, &too_big),
            Err(CheckpointRejection::PayloadTooLarge {
                capacity_bytes: 2_093_056,
                ..
            })
        ));
    }
}

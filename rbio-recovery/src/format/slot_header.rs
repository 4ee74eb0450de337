//! The slot header: magic, identity and payload length at the start of every data slot.
//!
//! Only the first [`SLOT_HEADER_INFO_BYTES`] bytes carry information; the rest of the
//! `header_bytes` is zero when written and ignored when read. There is no checksum, slot index or
//! generation: the header is checked against the checkpoint entry that claims the slot.

use super::array_at;
use std::fmt;

/// Magic at the start of every written slot header.
pub const SLOT_MAGIC: [u8; 8] = *b"LMCBLK01";

const SLOT_MAGIC_OFFSET: usize = 0;
const SLOT_MAGIC_BYTES: usize = 8;
const SLOT_IDENTITY_OFFSET: usize = SLOT_MAGIC_OFFSET + SLOT_MAGIC_BYTES;
const SLOT_IDENTITY_BYTES: usize = 8;
const SLOT_PAYLOAD_LEN_OFFSET: usize = SLOT_IDENTITY_OFFSET + SLOT_IDENTITY_BYTES;
const SLOT_PAYLOAD_LEN_BYTES: usize = 8;

/// Bytes of a slot header that carry information: magic, identity and payload length.
pub const SLOT_HEADER_INFO_BYTES: usize = SLOT_PAYLOAD_LEN_OFFSET + SLOT_PAYLOAD_LEN_BYTES;

const _: () = assert!(SLOT_HEADER_INFO_BYTES == 24);

/// The information in a slot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotHeader {
    /// Identity of the key whose payload the slot holds (see `KeyNamespace::identity`).
    pub identity: u64,
    /// Logical payload length in bytes, not padded.
    pub payload_len_bytes: u64,
}

impl SlotHeader {
    /// The first [`SLOT_HEADER_INFO_BYTES`] bytes of the header.
    pub fn to_bytes(&self) -> [u8; SLOT_HEADER_INFO_BYTES] {
        let mut info = [0u8; SLOT_HEADER_INFO_BYTES];
        info[SLOT_MAGIC_OFFSET..SLOT_IDENTITY_OFFSET].copy_from_slice(&SLOT_MAGIC);
        info[SLOT_IDENTITY_OFFSET..SLOT_PAYLOAD_LEN_OFFSET]
            .copy_from_slice(&self.identity.to_le_bytes());
        info[SLOT_PAYLOAD_LEN_OFFSET..].copy_from_slice(&self.payload_len_bytes.to_le_bytes());
        info
    }

    /// Writes the header into `header_block` (normally `header_bytes` long) and zeroes the rest.
    ///
    /// # Panics
    ///
    /// If `header_block` is shorter than [`SLOT_HEADER_INFO_BYTES`]: the caller sizes it.
    pub fn encode_into(&self, header_block: &mut [u8]) {
        assert!(
            header_block.len() >= SLOT_HEADER_INFO_BYTES,
            "slot header block of {} bytes, need at least {SLOT_HEADER_INFO_BYTES}",
            header_block.len()
        );
        let (info, padding) = header_block.split_at_mut(SLOT_HEADER_INFO_BYTES);
        info.copy_from_slice(&self.to_bytes());
        padding.fill(0);
        debug_assert_eq!(SlotHeader::decode(header_block), Ok(*self));
    }

    /// Reads a header from the start of `bytes` (bytes past the first 24 are ignored).
    ///
    /// # Errors
    ///
    /// [`SlotHeaderError::TooShort`] when fewer than 24 bytes are given, and
    /// [`SlotHeaderError::BadMagic`] when the magic is not [`SLOT_MAGIC`] (a blank or stale slot).
    pub fn decode(bytes: &[u8]) -> Result<SlotHeader, SlotHeaderError> {
        let Some(info) = bytes.first_chunk::<SLOT_HEADER_INFO_BYTES>() else {
            return Err(SlotHeaderError::TooShort {
                len_bytes: bytes.len(),
            });
        };
        let magic = array_at::<SLOT_MAGIC_BYTES>(info, SLOT_MAGIC_OFFSET);
        if magic != SLOT_MAGIC {
            return Err(SlotHeaderError::BadMagic { found: magic });
        }
        Ok(SlotHeader {
            identity: u64::from_le_bytes(array_at(info, SLOT_IDENTITY_OFFSET)),
            payload_len_bytes: u64::from_le_bytes(array_at(info, SLOT_PAYLOAD_LEN_OFFSET)),
        })
    }
}

/// Why bytes read from a slot are not a slot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotHeaderError {
    /// Fewer bytes than a header carries.
    TooShort {
        /// Bytes given.
        len_bytes: usize,
    },
    /// The magic is not `LMCBLK01`: the slot was never written, was zeroed, or was damaged.
    BadMagic {
        /// The first 8 bytes found.
        found: [u8; 8],
    },
}

impl fmt::Display for SlotHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotHeaderError::TooShort { len_bytes } => write!(
                f,
                "slot header of {len_bytes} bytes, need at least {SLOT_HEADER_INFO_BYTES}"
            ),
            SlotHeaderError::BadMagic { found } => write!(
                f,
                "slot header magic \"{}\", expected \"{}\"",
                found.escape_ascii(),
                SLOT_MAGIC.escape_ascii()
            ),
        }
    }
}

impl std::error::Error for SlotHeaderError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], expected: Result<(u64, u64), &str>) {
        let actual = SlotHeader::decode(bytes)
            .map(|h| (h.identity, h.payload_len_bytes))
            .map_err(|e| e.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "{bytes:x?}");
    }

    const ID_1: &[u8] = b"LMCBLK01\x01\0\0\0\0\0\0\0\x40\0\0\0\0\0\0\0";

    #[test]
    #[rustfmt::skip]
    fn decode_cases() {
        check(ID_1, Ok((1, 64)));
        check(&[ID_1, &[0xAA; 4072]].concat(), Ok((1, 64)));
        check(b"LMCBLK01\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xff\xff\xff\xff\xff\xff\xff\xff", Ok((0xf0f1_f2f3_f4f5_f6f7, u64::MAX)));
        check(b"", Err("slot header of 0 bytes, need at least 24"));
        check(&ID_1[..23], Err("slot header of 23 bytes, need at least 24"));
        check(&[0; 4096], Err("slot header magic \"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\", expected \"LMCBLK01\""));
        check(b"LMCBLK02\x01\0\0\0\0\0\0\0\x40\0\0\0\0\0\0\0", Err("slot header magic \"LMCBLK02\", expected \"LMCBLK01\""));
        check(b"lmcblk01\x01\0\0\0\0\0\0\0\x40\0\0\0\0\0\0\0", Err("slot header magic \"lmcblk01\", expected \"LMCBLK01\""));
    }

    #[test]
    fn encode_writes_info_and_zeroes_padding() {
        let header = SlotHeader {
            identity: 1,
            payload_len_bytes: 64,
        };
        assert_eq!(header.to_bytes(), ID_1);
        let mut block = vec![0xAA; 4096];
        header.encode_into(&mut block);
        assert_eq!(&block[..24], ID_1);
        assert!(block[24..].iter().all(|&b| b == 0));
        let mut exact = [0xAA; 24];
        header.encode_into(&mut exact);
        assert_eq!(exact, ID_1);
    }

    #[test]
    fn encode_decode_round_trip() {
        for (identity, payload_len_bytes) in [(0, 0), (u64::MAX, 1), (0x5dee3588eb85f2bf, 4096)] {
            let header = SlotHeader {
                identity,
                payload_len_bytes,
            };
            assert_eq!(SlotHeader::decode(&header.to_bytes()), Ok(header));
        }
    }
}

//! Fuzzes the slot-header decoder: any bytes decode to a header or a typed error, never a
//! panic; a decoded header re-encodes to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbio_recovery::{SlotHeader, SlotHeaderError, SLOT_HEADER_INFO_BYTES, SLOT_MAGIC};

fuzz_target!(|data: &[u8]| {
    match SlotHeader::decode(data) {
        Ok(header) => {
            assert!(data.len() >= SLOT_HEADER_INFO_BYTES);
            assert_eq!(header.to_bytes()[..], data[..SLOT_HEADER_INFO_BYTES]);
            let mut block = vec![0xa5; data.len()];
            header.encode_into(&mut block);
            assert_eq!(SlotHeader::decode(&block), Ok(header));
            assert!(block[SLOT_HEADER_INFO_BYTES..].iter().all(|&b| b == 0));
        }
        Err(SlotHeaderError::TooShort { len_bytes }) => {
            assert_eq!(len_bytes, data.len());
            assert!(len_bytes < SLOT_HEADER_INFO_BYTES);
        }
        Err(SlotHeaderError::BadMagic { found }) => {
            assert_ne!(found, SLOT_MAGIC);
            assert_eq!(found[..], data[..8]);
        }
        Err(error) => panic!("unexpected slot header error {error:?}"),
    }
    if let Err(error) = SlotHeader::decode(data) {
        assert!(!error.to_string().is_empty());
    }
});

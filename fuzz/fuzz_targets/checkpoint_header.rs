//! Fuzzes the checkpoint mirror header: the decoder, the selection rules (`check`) and the
//! payload CRC check, over the bytes of a header block followed by a payload. Nothing panics;
//! a decoded header re-encodes to its bytes; an accepted payload has the header's length and
//! CRC; `encode_mirror` of any payload it accepts decodes and checks back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbio_recovery::{
    crc32, encode_mirror, CheckpointHeader, CheckpointHeaderError, Layout, CHECKPOINT_HEADER_BYTES,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks one of a few layouts, so length limits are reached from both sides.
    let (choice, data) = data.split_first().map_or((0, data), |(c, rest)| (*c, rest));
    let meta_total_bytes = [16384u64, 64 << 10, 4 << 20][usize::from(choice % 3)];
    let layout = Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes,
        ..Layout::default()
    };
    let geometry = layout
        .validate(meta_total_bytes + (1 << 20))
        .expect("a valid layout");
    let header = match CheckpointHeader::decode(data) {
        Ok(header) => header,
        Err(CheckpointHeaderError::TooShort { len_bytes }) => {
            assert!(len_bytes < CHECKPOINT_HEADER_BYTES && len_bytes == data.len());
            return;
        }
        Err(error) => panic!("unexpected checkpoint header error {error:?}"),
    };
    assert_eq!(header.to_bytes()[..], data[..CHECKPOINT_HEADER_BYTES]);
    let accepted = header.check(&layout, &geometry);
    if accepted.is_ok() {
        assert!(header.payload_len_bytes > 0);
        assert!(header.payload_len_bytes <= geometry.mirror_payload_capacity_bytes());
        assert!(header.payload_read_bytes(&geometry) >= header.payload_len_bytes);
    }
    let _ = header.payload_read_bytes(&geometry);
    let payload_read = &data[CHECKPOINT_HEADER_BYTES..];
    match header.check_payload(payload_read) {
        Ok(payload) => {
            assert_eq!(payload.len() as u64, header.payload_len_bytes);
            assert_eq!(crc32(payload), header.crc32);
        }
        Err(rejection) => assert!(!rejection.to_string().is_empty()),
    }
    let seq = header.seq;
    if let Ok(write) = encode_mirror(&layout, &geometry, seq, payload_read) {
        let written = CheckpointHeader::decode(&write.header_block).expect("a full block");
        assert_eq!(written.check(&layout, &geometry), Ok(()));
        let payload = written
            .check_payload(&write.payload_blocks)
            .expect("its own payload");
        assert_eq!(payload, payload_read);
        assert_eq!(
            write.payload_blocks.len() as u64 % geometry.block_align(),
            0
        );
    }
});

//! (d) Refusals: a read-only device, payloads a reader would reject, misplaced blocks.

use super::*;

#[test]
fn read_only_device_is_a_typed_error() {
    let spec = PrepareSpec::new(small_layout(), 10);
    let writable = blank(spec.required_device_bytes());
    let device = Arc::new(Device::open(&writable.path).expect("open read-only"));
    let mut engine = SerialEngine::new(device.clone()).unwrap();
    let error = prepare(&device, &mut engine, &spec, &mut |_, _| {}).unwrap_err();
    let WriteError::Io(op_error) = &error else {
        panic!("expected an I/O error, got {error}");
    };
    assert!(
        matches!(op_error.error, IoError::Unsupported { .. }),
        "{op_error}"
    );
    assert_eq!(
        error.to_string(),
        "write of 4096 bytes at offset 4194304 failed"
    );
    let source = std::error::Error::source(&error).expect("source");
    assert_eq!(source.to_string(), op_error.error.to_string());
    let mut writer = DeviceWriter::new(&device, &mut engine, &small_layout()).unwrap();
    assert!(matches!(
        writer.write_checkpoint(1, b"{}"),
        Err(WriteError::Io(_))
    ));
}

#[test]
fn writer_refuses_what_a_reader_would_reject() {
    let layout = small_layout();
    let mut blank = blank(layout.meta_total_bytes + 4 * layout.slot_bytes);
    let mut writer = DeviceWriter::new(&blank.device, &mut blank.engine, &layout).unwrap();
    let too_large = vec![b' '; (2 * MIB - 4096 + 1) as usize];
    let error = writer.write_checkpoint(1, &too_large).unwrap_err();
    assert!(matches!(
        error,
        WriteError::Checkpoint {
            seq: 1,
            source: CheckpointRejection::PayloadTooLarge { .. }
        }
    ));
    assert!(matches!(
        writer.write_checkpoint(2, b""),
        Err(WriteError::Checkpoint { .. })
    ));
    let header = SlotHeader {
        identity: 1,
        payload_len_bytes: 1,
    };
    let slot = |slot_index, len_bytes| SlotWrite {
        slot_index,
        header,
        payload: Some(PayloadSpec {
            len_bytes,
            pattern: PayloadPattern::Zeroes,
        }),
    };
    let error = writer.write_slots([slot(0, 1), slot(4, 1)]).unwrap_err();
    assert_eq!(error.to_string(), "slot 4 is past max_slots 4");
    let error = writer.write_slots([slot(1, 61441)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "slot 1: payload of 61441 bytes, a slot holds 61440"
    );
    let error = writer
        .write_blocks([BlockWrite {
            offset_bytes: 512,
            bytes: vec![0; 4096],
        }])
        .unwrap_err();
    assert!(matches!(error, WriteError::Unaligned { .. }), "{error}");
    let file = File::open(&blank.path).unwrap();
    let slot0 = SlotHeader::decode(&read_at(&file, layout.meta_total_bytes, 4096));
    assert_eq!(slot0, Ok(header), "slots before the bad one are written");
}

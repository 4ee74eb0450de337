//! (b) `prepare` read back with `std::fs` and the format decoders; (c) 200 000 header-only
//! entries through a bounded pool.

use super::*;

fn prepare_image(spec: &PrepareSpec) -> (Blank, Prepared) {
    let mut blank = blank(spec.required_device_bytes());
    let mut calls = 0;
    let prepared = prepare(
        &blank.device,
        &mut blank.engine,
        spec,
        &mut |done, total| {
            assert!(done <= total);
            calls += 1;
        },
    )
    .expect("prepare");
    assert!(calls > 0 || spec.entry_count == 0);
    (blank, prepared)
}

/// Checks every slot of a prepared image against its spec, damage included.
fn check_slots(file: &File, prepared: &Prepared) {
    let (spec, geometry) = (&prepared.spec, &prepared.geometry);
    for entry in prepared.entries() {
        let header_block = read_at(file, entry.offset_bytes, geometry.header_bytes());
        let expected_info = match entry.damage {
            Some(damage) => {
                damage.damaged_header(entry.header(), spec.other_identity(entry.entry_index))
            }
            None => None,
        }
        .unwrap_or_else(|| entry.header().to_bytes());
        assert_eq!(
            header_block[..24],
            expected_info,
            "header of entry {}",
            entry.entry_index
        );
        assert!(header_block[24..].iter().all(|&b| b == 0));
        let expected_header = SlotHeader::decode(&header_block);
        match entry.damage {
            None | Some(Damage::PayloadFlip) => assert_eq!(expected_header, Ok(entry.header())),
            Some(_) => assert_ne!(expected_header, Ok(entry.header())),
        }
        if !spec.with_payloads {
            continue;
        }
        let padded = geometry.round_up_bytes(entry.size_bytes);
        let payload = read_at(file, entry.offset_bytes + geometry.header_bytes(), padded);
        let mut expected: Vec<u8> = (0..padded)
            .map(|j| match j < entry.size_bytes {
                true => payload_byte(entry.entry_index, j),
                false => 0,
            })
            .collect();
        if entry.damage == Some(Damage::PayloadFlip) {
            expected[0] ^= 0xff;
        }
        assert!(
            payload == expected,
            "payload of entry {}",
            entry.entry_index
        );
    }
}

/// Checks both mirrors and returns the seq a reader selects.
fn check_checkpoints(file: &File, prepared: &Prepared) -> Option<u64> {
    let (spec, geometry) = (&prepared.spec, &prepared.geometry);
    let mut best: Option<u64> = None;
    for mirror_index in 0..2 {
        let Ok((seq, payload)) = mirror_payload(file, &spec.layout, geometry, mirror_index) else {
            continue;
        };
        let checkpoint = Checkpoint::parse(&payload).expect("checkpoint parses");
        checkpoint
            .check_against(
                &spec.layout,
                geometry,
                Some(&spec.device_path),
                DevicePathPolicy::Strict,
            )
            .expect("checkpoint applies");
        let listed = if seq < u64::from(spec.checkpoints) {
            spec.entry_count / 2
        } else {
            spec.entry_count
        };
        assert_eq!(checkpoint.entries.len() as u64, listed, "seq {seq}");
        for (k, parsed) in checkpoint.entries.iter().enumerate() {
            let entry = spec.entry(k as u64);
            let fields = parsed.fields.as_ref().expect("well-formed");
            assert_eq!(parsed.key, entry.key);
            assert_eq!(
                (fields.offset_bytes, fields.size_bytes),
                (entry.offset_bytes, entry.size_bytes)
            );
            assert_eq!(fields.tensor, entry.tensor());
            assert_eq!(parsed.slot_index(geometry), Ok(entry.slot_index));
        }
        best = best.max(Some(seq));
        if Some(seq) == prepared.winning_seq {
            assert_eq!(checkpoint.next_slot(), prepared.next_slot);
        }
    }
    best
}

fn damaged_spec() -> PrepareSpec {
    PrepareSpec {
        with_payloads: true,
        device_path: "/srv/raw_block/test.img".to_owned(),
        seed: 42,
        placement: SlotPlacement::Shuffled,
        damage: DamagePlan::explicit(
            Damage::ALL
                .into_iter()
                .enumerate()
                .map(|(i, d)| (3 + 40 * i as u64, d)),
        ),
        ..PrepareSpec::new(small_layout(), 300)
    }
}

#[test]
fn prepared_image_reads_back_as_specified() {
    let spec = damaged_spec();
    let (blank, prepared) = prepare_image(&spec);
    let file = File::open(&blank.path).unwrap();
    check_slots(&file, &prepared);
    assert_eq!(check_checkpoints(&file, &prepared), Some(2));
    assert_eq!(prepared.winning_seq, Some(2));
    assert_eq!(prepared.next_slot, 300);
    assert_eq!(prepared.expected_index_len(), 300 - 5);
    let states: Vec<_> = prepared
        .entries()
        .filter(|e| e.damage.is_some())
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ExpectedState::Present)
            .count(),
        1
    );
    assert!(prepared.buffers_taken_max <= prepared.window_ops_max);
    let dropped_slots: Vec<u64> = {
        let mut slots: Vec<u64> = prepared
            .entries()
            .filter(|e| matches!(e.state, ExpectedState::Dropped(_)))
            .map(|e| e.slot_index)
            .collect();
        slots.sort_unstable();
        slots
    };
    assert_eq!(prepared.expected_free_slots(), dropped_slots);
}

#[test]
fn same_seed_same_bytes_other_seed_other_keys() {
    let spec = PrepareSpec {
        damage: DamagePlan::Random {
            per_million: 50_000,
            seed: 7,
        },
        ..damaged_spec()
    };
    let (first, _) = prepare_image(&spec);
    let (second, prepared) = prepare_image(&spec);
    assert!(std::fs::read(&first.path).unwrap() == std::fs::read(&second.path).unwrap());
    check_slots(&File::open(&second.path).unwrap(), &prepared);
    let other = PrepareSpec {
        seed: 43,
        ..spec.clone()
    };
    assert_ne!(other.key(0), spec.key(0));
}

#[test]
fn checkpoint_damage_leaves_the_right_mirror_in_charge() {
    let cases = [
        (2, CheckpointDamage::None, Some(2)),
        (2, CheckpointDamage::BadCrcNewest, Some(1)),
        (2, CheckpointDamage::ZeroedNewestHeader, Some(1)),
        (2, CheckpointDamage::BothMirrorsBad, None),
        (1, CheckpointDamage::None, Some(1)),
        (1, CheckpointDamage::BadCrcNewest, None),
        (0, CheckpointDamage::None, None),
    ];
    for (checkpoints, checkpoint_damage, winner) in cases {
        let spec = PrepareSpec {
            checkpoints,
            checkpoint_damage,
            sizes: EntrySizes::Fixed(100),
            placement: SlotPlacement::Strided { stride: 2 },
            ..PrepareSpec::new(small_layout(), 41)
        };
        let (blank, prepared) = prepare_image(&spec);
        let file = File::open(&blank.path).unwrap();
        let case = format!("{checkpoints} checkpoints, {checkpoint_damage:?}");
        assert_eq!(prepared.winning_seq, winner, "{case}");
        assert_eq!(check_checkpoints(&file, &prepared), winner, "{case}");
        let present = prepared
            .entries()
            .filter(|e| e.state == ExpectedState::Present)
            .count();
        let expected_present = match (winner, checkpoints) {
            (None, _) => 0,
            (Some(1), 2) => 20,
            _ => 41,
        };
        assert_eq!(present, expected_present, "{case}");
        let expected_next_slot = match expected_present {
            0 => 0,
            n => 2 * (n as u64 - 1) + 1,
        };
        assert_eq!(prepared.next_slot, expected_next_slot, "{case}");
        let free_count = prepared.expected_free_slots().len() as u64;
        assert_eq!(free_count, expected_next_slot - present as u64, "{case}");
        check_slots(&file, &prepared);
    }
}

#[test]
fn bad_specs_are_refused_before_writing() {
    let layout = small_layout();
    let cases = [
        PrepareSpec {
            sizes: EntrySizes::Fixed(0),
            ..PrepareSpec::new(layout.clone(), 4)
        },
        PrepareSpec {
            sizes: EntrySizes::Fixed(61441),
            ..PrepareSpec::new(layout.clone(), 4)
        },
        PrepareSpec {
            checkpoints: 3,
            ..PrepareSpec::new(layout.clone(), 4)
        },
        PrepareSpec {
            damage: DamagePlan::explicit([(4, Damage::Zeroed)]),
            ..PrepareSpec::new(layout.clone(), 4)
        },
    ];
    for spec in cases {
        let mut blank = blank(spec.required_device_bytes());
        let error = prepare(&blank.device, &mut blank.engine, &spec, &mut |_, _| {}).unwrap_err();
        assert!(matches!(error, WriteError::Spec { .. }), "{error}");
    }
    let spec = PrepareSpec::new(layout, 100);
    let mut small = blank(spec.required_device_bytes() - (64 << 10));
    let error = prepare(&small.device, &mut small.engine, &spec, &mut |_, _| {}).unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad prepare spec: 100 slots needed, the device has 99"
    );
}

#[test]
fn two_hundred_thousand_headers_stream_through_a_bounded_pool() {
    let layout = Layout {
        block_align: 512,
        header_bytes: 512,
        slot_bytes: 1024,
        meta_total_bytes: 96 * MIB,
        ..Layout::default()
    };
    let spec = PrepareSpec {
        checkpoints: 1,
        ..PrepareSpec::new(layout, 200_000)
    };
    let (blank, prepared) = prepare_image(&spec);
    assert_eq!(prepared.stats.slot_count, 200_000);
    assert!(
        prepared.buffers_taken_max <= prepared.window_ops_max,
        "{} buffers taken, window {}",
        prepared.buffers_taken_max,
        prepared.window_ops_max
    );
    let file = File::open(&blank.path).unwrap();
    for k in [0, 1, 99_999, 199_999] {
        let entry = prepared.entry(k);
        let header = SlotHeader::decode(&read_at(&file, entry.offset_bytes, 512));
        assert_eq!(header, Ok(entry.header()), "entry {k}");
    }
    assert_eq!(check_checkpoints(&file, &prepared), Some(1));
}

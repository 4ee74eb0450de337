//! Measures checkpoint payload throughput: writes a synthetic payload of 1M LMCache-style
//! entries (KV tensor metadata, every fifth with cached positions), then parses it.
//!
//! Run with `cargo run --release -p rbio-recovery --example parse_speed [entry_count]`.

use std::borrow::Cow;
use std::time::Instant;

use rbio_recovery::{
    Checkpoint, CheckpointHead, CheckpointWriter, EntryFields, Layout, ObjectKey, TensorMeta,
};
use serde_json::value::RawValue;

const ENTRY_COUNT_DEFAULT: u64 = 1_000_000;

fn main() {
    let entry_count = match std::env::args().nth(1) {
        Some(text) => text.parse().expect("entry count is an integer"),
        None => ENTRY_COUNT_DEFAULT,
    };
    let started = Instant::now();
    let payload = build_payload(entry_count);
    let write_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let checkpoint = Checkpoint::parse(&payload).expect("synthetic payload parses");
    let parse_seconds = started.elapsed().as_secs_f64();
    assert_eq!(checkpoint.entries.len() as u64, entry_count);
    assert!(checkpoint.entries.iter().all(|entry| entry.fields.is_ok()));

    let megabytes = payload.len() as f64 / 1e6;
    println!("payload: {entry_count} entries, {megabytes:.1} MB");
    println!(
        "build:   {write_seconds:.3} s, {:.0} MB/s (keys, metadata and writer)",
        megabytes / write_seconds
    );
    println!(
        "parse:   {parse_seconds:.3} s, {:.0} MB/s, {:.2} M entries/s",
        megabytes / parse_seconds,
        entry_count as f64 / parse_seconds / 1e6
    );
}

/// A payload as LMCache writes it for a 16 MiB-slot device holding `entry_count` entries.
fn build_payload(entry_count: u64) -> Vec<u8> {
    let layout = Layout {
        slot_bytes: 16 << 20,
        ..Layout::default()
    };
    let device_size_bytes = layout.meta_total_bytes + (entry_count + 1) * layout.slot_bytes;
    let geometry = layout.validate(device_size_bytes).expect("valid layout");
    let head = CheckpointHead::for_layout(&layout, &geometry, "/dev/nvme0n1", entry_count);
    let mut writer = CheckpointWriter::new(&head);
    let json = |text: String| Some(Cow::Owned(RawValue::from_string(text).expect("JSON")));
    for index in 0..entry_count {
        let chunk_hash = index
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes()
            .repeat(4);
        let key = ObjectKey {
            model_name: "meta-llama/Llama-3.1-8B-Instruct",
            kv_rank: (index % 4) as u32,
            object_group_id: index % 2,
            chunk_hash: &chunk_hash,
            cache_salt: (index % 3 == 0).then_some("tenant0"),
        };
        let tokens = 1 + index % 8;
        let positions = (index % 5 == 0).then(|| {
            let list: Vec<String> = (0..tokens).map(|t| (index * 8 + t).to_string()).collect();
            format!("[{}]", list.join(","))
        });
        let fields = EntryFields {
            offset_bytes: geometry.slot_offset_bytes(index),
            size_bytes: tokens * 512,
            tensor: TensorMeta {
                shape: json(format!("[2,2,{tokens},64]")),
                dtype: json("\"bfloat16\"".to_owned()),
                fmt: json("\"KV_2LTD\"".to_owned()),
                cached_positions: json(positions.unwrap_or_else(|| "null".to_owned())),
            },
        };
        writer.push(&key.encode(), &fields);
    }
    writer.finish()
}

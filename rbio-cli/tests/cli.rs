//! The `rbio` command as a user meets it: the built binary run as a child process. The demo
//! works and lists the engines; bringup of the LMCache c1000 fixture reports what its manifest
//! says, as JSON; bad input of every kind gives one readable line on stderr, a documented exit
//! code and no panic; `bench --baseline` flags a regression.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Unpacks LMCache fixture `name`; the directory must outlive the test.
fn unpack_fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf, Value) {
    let fixture = rbio_recovery::testing::unpack_fixture(name)
        .unwrap_or_else(|error| panic!("fixture {name}: {error}"));
    (fixture.dir, fixture.image, fixture.manifest)
}

fn rbio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbio"))
        .args(args)
        .output()
        .expect("run the rbio binary")
}

/// `rbio ARGS` with its temporary directory (TMPDIR) in `tmp`.
fn rbio_with_tmpdir(tmp: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbio"))
        .args(args)
        .env("TMPDIR", tmp)
        .output()
        .expect("run the rbio binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The fixture's layout flags (64 KiB slots, 4 MiB metadata) and the image, copied elsewhere.
const FIXTURE_LAYOUT: [&str; 4] = ["--slot-bytes", "65536", "--meta-total-bytes", "4194304"];

/// The benchmark as CI runs it (through `cargo test`): the README says so in these words.
const QUICK_BENCH: [&str; 5] = ["bench", "--quick", "--no-fio", "--entries", "300"];

/// Asserts a failure with `code` and exactly one non-empty stderr line holding `needle`, and
/// no sign of a panic.
fn assert_one_line_failure(output: &Output, code: i32, needle: &str) {
    let err = stderr(output);
    let lines: Vec<&str> = err.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(lines[0].starts_with("rbio: "), "{err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn demo_brings_up_with_every_engine_and_finds_the_damage() {
    let output = rbio(&["demo", "--entries", "3000"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    for engine in ["serial", "posix", "uring q=128", "uring q=128 fixed"] {
        assert!(
            out.lines().any(|line| line.starts_with(engine)),
            "{engine} missing:\n{out}"
        );
    }
    assert!(
        out.contains("every engine found exactly those 5 stale"),
        "{out}"
    );
    assert!(out.contains("io_uring features: "), "{out}");
}

#[test]
fn demo_reads_cold_with_o_direct_and_leaves_the_page_cache_alone() {
    // On a disk's file system the demo reads with O_DIRECT: cold, with nothing dropped. (The
    // buffered fallback has no case here: even tmpfs takes O_DIRECT on current kernels.)
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = rbio_with_tmpdir(disk.path(), &["demo", "--entries", "2000", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let demo: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(
        demo["direct"],
        true,
        "{} (CARGO_TARGET_TMPDIR) must take O_DIRECT for this test; stderr: {}",
        disk.path().display(),
        stderr(&output)
    );
    assert_eq!(demo["page_cache"], "untouched");
    assert!(stderr(&output).trim().is_empty(), "{}", stderr(&output));
}

#[test]
fn bringup_without_layout_flags_reads_the_layout_from_the_device() {
    // 64 KiB and 8 KiB slots, 4 MiB of metadata: neither is LMCache's default layout.
    for name in ["c1000", "c2000kv"] {
        let (_dir, image, manifest) = unpack_fixture(name);
        let image = image.to_str().unwrap();
        let output = rbio(&["bringup", image, "--json", "--ignore-device-path"]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
        let expected = &manifest["expected_entries_after_recovery"];
        assert_eq!(&report["counts"]["kept"], expected, "{name}");
        assert_eq!(&report["index_len"], expected, "{name}");
        let settings = &report["settings"];
        assert_eq!(settings["layout_source"], "device", "{name}");
        assert_eq!(settings["layout_mirror"], 0, "{name}");
        assert_eq!(settings["direct"], true, "{name}: O_DIRECT is the default");
        assert_eq!(settings["window"], 256, "{name}");

        let output = rbio(&[
            "inspect",
            image,
            "--json",
            "--ignore-device-path",
            "--buffered",
        ]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let inspection: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
        assert_eq!(inspection["layout_source"], "device", "{name}");
    }
    let (_dir, image, _) = unpack_fixture("c1000");
    let image = image.to_str().unwrap();
    let mut args = vec![
        "bringup",
        image,
        "--json",
        "--ignore-device-path",
        "--buffered",
    ];
    args.extend(FIXTURE_LAYOUT);
    let output = rbio(&args);
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["settings"]["layout_source"], "configured");
    assert_eq!(report["settings"]["direct"], false, "--buffered");
    // A geometry flag wins, and a checkpoint contradicting it is ignored as before.
    let mut args = vec![
        "bringup",
        image,
        "--ignore-device-path",
        "--slot-bytes",
        "1MiB",
    ];
    args.extend(["--meta-total-bytes", "4MiB"]);
    let output = rbio(&args);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stdout(&output).contains("slot_bytes 65536 in checkpoint, 1048576 configured"));
}

#[test]
fn a_misconfigured_read_stops_bringup_with_exit_2_and_one_line() {
    // A 256-byte block_align is a valid layout, but O_DIRECT needs at least 512: rbio refuses
    // the first read itself, a configuration error rather than an unreadable mirror.
    let (_dir, image, _) = unpack_fixture("c1000");
    let image = image.to_str().unwrap();
    let mut args = vec![
        "bringup",
        image,
        "--ignore-device-path",
        "--block-align",
        "256",
    ];
    args.extend(["--header-bytes", "256"]);
    args.extend(FIXTURE_LAYOUT);
    let output = rbio(&args);
    if stderr(&output).contains("O_DIRECT refused") {
        return; // this file system reads through the page cache: nothing is misaligned
    }
    assert_one_line_failure(&output, 2, "configuration error, nothing recovered");
    assert!(
        stderr(&output).contains("--buffered"),
        "{}",
        stderr(&output)
    );
    args.push("--buffered");
    let output = rbio(&args);
    assert_ne!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn a_device_without_a_checkpoint_asks_for_the_layout_flags() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let output = rbio(&["bringup", blank.to_str().unwrap()]);
    assert_one_line_failure(&output, 2, "give the layout flags");
}

#[test]
fn bringup_of_the_lmcache_fixture_reports_its_manifest_as_json() {
    let (_dir, image, manifest) = unpack_fixture("c1000");
    let image = image.to_str().unwrap();
    let mut args = vec![
        "bringup",
        image,
        "--json",
        "--entries",
        "--ignore-device-path",
    ];
    args.extend(FIXTURE_LAYOUT);
    let output = rbio(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let counts = &report["counts"];
    assert_eq!(counts["kept"], 985);
    assert_eq!(counts["stale"], 10);
    assert_eq!(counts["unreadable"], 0);
    assert_eq!(counts["rejected"], 0);
    assert_eq!(report["checkpoint"]["mirror"], 1);
    assert_eq!(report["checkpoint"]["seq"], 2);
    assert!(report["phases"]["validate"].is_f64());
    let entries = report["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 995);
    for key in manifest["keys"].as_array().unwrap() {
        let encoded = key["encoded"].as_str().unwrap();
        let entry = entries.iter().find(|entry| entry["key"] == encoded);
        match key["expected"].as_str().unwrap() {
            "present" => {
                let entry = entry.unwrap_or_else(|| panic!("{encoded} missing"));
                assert_eq!(entry["state"], "kept", "{encoded}");
                assert_eq!(entry["offset"], key["offset"], "{encoded}");
                assert_eq!(entry["size"], key["payload_len"], "{encoded}");
                assert!(entry["reason"].is_null(), "{encoded}");
            }
            "dropped" => {
                let entry = entry.unwrap_or_else(|| panic!("{encoded} missing"));
                assert_eq!(entry["state"], "stale", "{encoded}");
                assert!(entry["reason"].as_str().is_some_and(|r| !r.is_empty()));
            }
            _ => assert!(entry.is_none(), "deleted {encoded} listed"),
        }
    }
}

#[test]
fn bringup_text_and_inspect_describe_the_fixture() {
    let (_dir, image, _manifest) = unpack_fixture("c1000");
    let image = image.to_str().unwrap();
    let mut args = vec![
        "bringup",
        image,
        "--ignore-device-path",
        "--engine",
        "serial",
    ];
    args.extend(FIXTURE_LAYOUT);
    let output = rbio(&args);
    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.contains("985 kept, 10 stale"), "{out}");

    let mut args = vec!["inspect", image, "--json", "--ignore-device-path"];
    args.extend(FIXTURE_LAYOUT);
    let output = rbio(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let inspection: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["checkpoint"]["seq"], 2);
    assert_eq!(inspection["mirrors"][1]["crc_ok"], true);
    assert_eq!(inspection["counts"]["in_checkpoint"], 995);
}

#[test]
fn a_checkpoint_for_another_device_path_exits_4() {
    let (_dir, image, _manifest) = unpack_fixture("c1000");
    let mut args = vec!["bringup", image.to_str().unwrap()];
    args.extend(FIXTURE_LAYOUT);
    let output = rbio(&args);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stdout(&output).contains("checkpoint ignored"));

    // inspect exits as bringup would.
    args[0] = "inspect";
    let output = rbio(&args);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stdout(&output).contains("bringup would ignore it"));
}

#[test]
fn bad_devices_give_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_str().unwrap();
    let output = rbio(&["bringup", dir_path]);
    assert_one_line_failure(&output, 2, "is a directory");

    let missing = dir.path().join("absent.img");
    let output = rbio(&["bringup", missing.to_str().unwrap()]);
    assert_one_line_failure(&output, 2, "no such file");

    // Without layout flags the layout is read from the device, which records none here.
    let output = rbio(&["bringup", "/dev/null"]);
    assert_one_line_failure(&output, 2, "no checkpoint on the device records its layout");
    let output = rbio(&["bringup", "/dev/null", "--slot-bytes", "1MiB"]);
    assert_one_line_failure(&output, 2, "layout does not fit");

    let small = dir.path().join("small.img");
    std::fs::write(&small, vec![0u8; 1 << 20]).unwrap();
    let output = rbio(&["bringup", small.to_str().unwrap()]);
    assert_one_line_failure(&output, 2, "past the end of the device (1048576 bytes)");
    let output = rbio(&["bringup", small.to_str().unwrap(), "--slot-bytes", "1MiB"]);
    assert_one_line_failure(&output, 2, "layout does not fit");

    let output = rbio(&["inspect", small.to_str().unwrap(), "--block-align", "3000"]);
    assert_one_line_failure(&output, 2, "3000");
}

#[test]
fn bad_flags_give_one_line_and_exit_1() {
    let output = rbio(&["bringup", "/dev/null", "--window", "many"]);
    assert_one_line_failure(&output, 1, "--window");
    let output = rbio(&["bringup", "/dev/null", "--no-such-flag"]);
    assert_one_line_failure(&output, 1, "--no-such-flag");
    let output = rbio(&["prepare", "/tmp/x.img"]);
    assert_one_line_failure(&output, 1, "--entries");
    let output = rbio(&["bringup", "/dev/null", "--meta-magic", "SHORT"]);
    assert_one_line_failure(&output, 1, "8");
    let output = rbio(&["prepare", "/dev/null", "--entries", "10"]);
    assert_one_line_failure(&output, 1, "--force");
    let output = rbio(&["frobnicate"]);
    assert_one_line_failure(&output, 1, "frobnicate");
}

#[test]
fn counts_out_of_range_are_usage_errors() {
    // A huge --window once made bringup allocate a pool that size and abort.
    let cases: [(&[&str], &str); 8] = [
        (&["bringup", "/dev/null", "--window", "40000"], "1..=32768"),
        (&["bringup", "/dev/null", "--window", "0"], "--window"),
        (
            &["inspect", "/dev/null", "--window", "99999999999"],
            "--window",
        ),
        (&["bringup", "/dev/null", "--workers", "0"], "--workers"),
        (&["bringup", "/dev/null", "--workers", "257"], "1..=256"),
        (&["demo", "--entries", "100000000000"], "--entries"),
        (
            &["prepare", "/dev/null", "--entries", "100000000001"],
            "--entries",
        ),
        (&["bench", "--entries", "300,100000000000"], "--entries"),
    ];
    for (args, needle) in cases {
        assert_one_line_failure(&rbio(args), 1, needle);
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let output = rbio(&["--help"]);
    assert!(output.status.success());
    let out = stdout(&output);
    for code in [
        "0  success",
        "2  device",
        "2  device, layout or engine error: nothing was recovered (inspect: a mirror",
        "3  bringup recovered the index, but some slot headers or a checkpoint mirror",
        "4  bringup",
        "inspect: bringup would ignore",
        "5  bench",
        "141  stdout's reader left",
    ] {
        assert!(out.contains(code), "{code:?} missing from --help:\n{out}");
    }
    let output = rbio(&["bringup", "--help"]);
    assert!(stdout(&output).contains("--meta-total-bytes <BYTES>"));
}

#[test]
fn prepare_then_bringup_finds_the_damage_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("p.img");
    let image = image.to_str().unwrap();
    let layout = ["--slot-bytes", "64K", "--meta-total-bytes", "4M"];
    let mut args = vec![
        "prepare",
        image,
        "--entries",
        "500",
        "--damage",
        "7:bad_magic",
    ];
    args.extend(layout);
    let output = rbio(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("damaged entry 7"),
        "{}",
        stdout(&output)
    );
    let mut args = vec!["bringup", image, "--json"];
    args.extend(layout);
    let report: Value = serde_json::from_slice(&rbio(&args).stdout).unwrap();
    assert_eq!(report["counts"]["kept"], 499);
    assert_eq!(report["counts"]["stale"], 1);
    assert_eq!(report["entries"][0]["reason_code"], "bad_magic");
    // Issue 12: the JSON says which io_uring features the engine ran with (none for posix).
    let ran_with = report["engine_features"]
        .as_array()
        .expect("a list of names");
    let offered = rbio_engines::uring_features().expect("io_uring here");
    for name in offered.names() {
        assert!(ran_with.contains(&Value::from(name)), "{name}: {report}");
    }
    let mut args = vec!["bringup", image, "--json", "--engine", "posix"];
    args.extend(layout);
    let report: Value = serde_json::from_slice(&rbio(&args).stdout).unwrap();
    assert_eq!(report["engine_features"], Value::Null);
}

#[test]
fn prepare_refuses_a_bad_spec_before_touching_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("precious.img");
    let contents = b"an image someone still needs ".repeat(100);
    std::fs::write(&image, &contents).unwrap();
    let image_str = image.to_str().unwrap();
    // 64 KiB slots after 4 MiB of metadata: --capacity-bytes 5M leaves room for 16 slots.
    let cases: [(&[&str], i32, &str); 5] = [
        (&["--checkpoints", "5"], 1, "5 checkpoints"),
        (&["--damage", "50:bad_magic"], 1, "entry 50"),
        (&["--capacity-bytes", "5M"], 1, "20 slots needed"),
        (&["--block-align", "3000"], 2, "3000"),
        (&["--capacity-bytes", "4M"], 2, "layout"),
    ];
    for (flags, code, needle) in cases {
        let mut args = vec![
            "prepare",
            image_str,
            "--entries",
            "20",
            "--slot-bytes",
            "64K",
            "--meta-total-bytes",
            "4M",
        ];
        args.extend(flags);
        let output = rbio(&args);
        assert_one_line_failure(&output, code, needle);
        assert_eq!(
            std::fs::read(&image).unwrap(),
            contents,
            "prepare {flags:?} changed the image before refusing it"
        );
    }
}

#[test]
fn bench_baseline_flags_a_regression_and_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (images, result) = (path("images"), path("result.json"));
    let mut quick = QUICK_BENCH.to_vec();
    quick.extend(["--dir", &images]);
    let mut args = quick.to_vec();
    args.extend(["--json", &result]);
    let output = rbio(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("× serial"), "{}", stdout(&output));

    // A baseline where every engine was a hundred times faster than serial: now each row
    // has fallen far below it.
    let mut doctored: Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    for row in doctored["rows"].as_array_mut().unwrap() {
        row["speedup_vs_serial"] = 100.0.into();
    }
    let baseline = path("baseline.json");
    std::fs::write(&baseline, doctored.to_string()).unwrap();
    let mut args = quick.to_vec();
    args.extend(["--baseline", &baseline]);
    let output = rbio(&args);
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(stdout(&output).contains("REGRESSED"), "{}", stdout(&output));

    // The run compared with its own saved result passes, with a margin for noise.
    let mut args = quick.to_vec();
    args.extend(["--baseline", &result, "--margin", "95"]);
    let output = rbio(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(Path::new(&result).exists());
}

#[test]
fn bench_default_settings_measures_what_bringup_runs_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (images, result) = (path("images"), path("result.json"));
    let output = rbio(&[
        "bench",
        "--default-settings",
        "--no-fio",
        "--entries",
        "300",
        "--repeat",
        "1",
        "--dir",
        &images,
        "--json",
        &result,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stdout(&output).contains("several devices at once"),
        "{}",
        stdout(&output)
    );
    let value: Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    let rows: Vec<(String, u64)> = value["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let engine = row["engine"].as_str().unwrap().to_owned();
            (engine, row["depth"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(rows[0], ("serial".to_owned(), 1), "{rows:?}");
    assert_eq!(rows[1].0, "posix", "{rows:?}");
    if rows.len() > 2 {
        // io_uring is usable here: its default settings at the two depths the issue names.
        let uring: Vec<&(String, u64)> = rows[2..].iter().collect();
        assert_eq!(
            uring,
            [
                &("uring q=64 fixed".to_owned(), 64),
                &("uring q=256 fixed".to_owned(), 256)
            ],
            "{rows:?}"
        );
    }
}

#[test]
fn the_readme_says_which_bench_ci_runs() {
    let readme = include_str!("../../README.md");
    let command = format!("rbio {}", QUICK_BENCH.join(" "));
    assert!(
        readme.contains(&command),
        "README.md never names `{command}`"
    );
    assert!(
        !readme.contains("what CI can afford"),
        "README.md still claims CI runs plain `rbio bench --quick`"
    );
}

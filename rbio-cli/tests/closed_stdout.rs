//! Output nobody can take never makes `rbio` panic. The built binary runs as a child process:
//!
//! - with stdout a pipe whose reader is gone (`rbio bringup IMG --entries | head -1`), every
//!   subcommand stops quietly with exit 141 (128 + SIGPIPE) and no word on stderr. Large
//!   reports go into a real pipe whose read end is dropped at once, or after one line: a
//!   prepared image of 5,000 entries makes them far larger than a pipe's buffer, so rbio is
//!   bound to write once no one reads. Small outputs go into a socket whose peer is closed
//!   before rbio starts, which answers a write with `EPIPE` just as such a pipe does;
//! - with stdout `/dev/full` (`ENOSPC`), one line on stderr says so and the exit is 2;
//! - with stderr gone, a failed bringup still exits with its own code, 2.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The layout of the prepared image: 64 KiB slots keep its (sparse) file small.
const LAYOUT: [&str; 4] = ["--slot-bytes", "64K", "--meta-total-bytes", "4M"];

/// Text a pipe can hold while no one reads it is at most this (Linux's default pipe buffer;
/// only a program that asks gets a larger one).
const PIPE_BUFFER_BYTES: usize = 64 << 10;

/// The exit when stdout's reader left.
const EXIT_READER_GONE: i32 = 141;

/// An image of 5,000 undamaged entries, prepared by `rbio prepare`.
struct Image {
    dir: TempDir,
    path: String,
}

impl Image {
    fn new() -> Image {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.img").to_str().unwrap().to_owned();
        let mut args = vec!["prepare", &path, "--entries", "5000"];
        args.extend(LAYOUT);
        let output = rbio(&args).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        Image { dir, path }
    }

    /// `rbio bringup` of this image (`copies` times over) with `flags`.
    fn bringup(&self, copies: usize, flags: &[&'static str]) -> Vec<&str> {
        let mut args = vec!["bringup"];
        args.extend(std::iter::repeat_n(self.path.as_str(), copies));
        args.extend(LAYOUT);
        args.extend(flags);
        args
    }
}

fn rbio(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rbio"));
    command.args(args).stdin(Stdio::null());
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `rbio ARGS` with stdout a pipe whose read end is dropped as soon as the program starts.
fn into_a_dropped_pipe(args: &[&str]) -> Output {
    let mut child = rbio(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// One end of a socket whose other end is closed: a write to it fails with `EPIPE`.
fn closed_socket() -> OwnedFd {
    let (ours, theirs) = UnixStream::pair().unwrap();
    drop(ours);
    theirs.into()
}

/// `rbio ARGS` with stdout a socket whose peer is closed before the program starts.
fn into_a_closed_socket(args: &[&str]) -> Output {
    rbio(args)
        .stdout(closed_socket())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Asserts that `output` is of a command that stopped quietly because its reader left.
fn assert_quiet_stop(output: &Output, what: &str) {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(EXIT_READER_GONE),
        "{what}: stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(!err.contains("rbio: error"), "{what}: {err}");
}

/// The outputs of `args` in full, checked to overflow a pipe nobody reads.
fn assert_larger_than_a_pipe(args: &[&str]) {
    let output = rbio(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    assert!(
        output.stdout.len() > 4 * PIPE_BUFFER_BYTES,
        "{args:?}: {} bytes fit in a pipe's buffer",
        output.stdout.len()
    );
}

#[test]
fn bringup_into_a_pipe_whose_reader_left_stops_quietly() {
    let image = Image::new();
    for args in [
        image.bringup(1, &["--entries"]),
        image.bringup(1, &["--entries", "--json"]),
        image.bringup(2, &["--entries"]),
        image.bringup(2, &["--entries", "--json"]),
    ] {
        assert_larger_than_a_pipe(&args);
        assert_quiet_stop(&into_a_dropped_pipe(&args), &args.join(" "));
    }
}

#[test]
fn a_reader_that_takes_one_line_and_leaves_gets_that_line() {
    let image = Image::new();
    let args = image.bringup(1, &["--entries"]);
    assert_larger_than_a_pipe(&args);
    let mut child = rbio(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(first_line.starts_with("checkpoint: seq 2"), "{first_line}");
    assert_quiet_stop(&output, "bringup | head -1");
}

#[test]
fn every_subcommand_stops_quietly_when_its_reader_left() {
    let image = Image::new();
    let copy = image.dir.path().join("copy.img");
    let copy = copy.to_str().unwrap();
    let bench_dir = image.dir.path().join("bench");
    let bench_dir = bench_dir.to_str().unwrap();
    let results = image.dir.path().join("results.json");
    let mut inspect = vec!["inspect", image.path.as_str(), "--json"];
    inspect.extend(LAYOUT);
    let mut prepare = vec!["prepare", copy, "--entries", "10"];
    prepare.extend(LAYOUT);
    let bench = [
        "bench",
        "--quick",
        "--no-fio",
        "--entries",
        "300",
        "--dir",
        bench_dir,
        "--json",
        results.to_str().unwrap(),
    ];
    let cases: [&[&str]; 6] = [
        &inspect,
        &prepare,
        &["demo", "--entries", "1000"],
        &bench,
        &["--help"],
        &image.bringup(1, &[]),
    ];
    for args in cases {
        assert_quiet_stop(&into_a_closed_socket(args), &args.join(" "));
    }
    // The measurements are kept though no one read the table.
    let saved = std::fs::read(&results).expect("bench wrote its results");
    serde_json::from_slice::<serde_json::Value>(&saved).unwrap();
}

#[test]
fn a_full_stdout_is_one_line_and_exit_2() {
    let image = Image::new();
    let cases = [image.bringup(1, &["--entries"]), vec!["--help"]];
    for args in cases {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full, a device that answers every write with ENOSPC");
        let output = rbio(&args).stdout(full).output().unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err,
            "rbio: error: cannot write the output to stdout: No space left on device \
             (os error 28)\n",
            "{args:?}"
        );
    }
}

#[test]
fn a_failed_bringup_keeps_its_exit_code_when_stderr_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.img");
    let output = rbio(&["bringup", missing.to_str().unwrap()])
        .stderr(closed_socket())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
}

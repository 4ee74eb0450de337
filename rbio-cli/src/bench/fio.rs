//! fio as the yardstick: it replays exactly the header reads bringup makes (an I/O log of the
//! same offsets and lengths, `--read_iolog`) on the same image, at the same depth, so each
//! row can say what fraction of the device's rate for that very work rbio reaches.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::exit::Failure;

/// A usable fio.
pub struct Fio {
    /// Its version line.
    pub version: String,
}

impl Fio {
    /// Finds fio, installing it with `apt-get install -y fio` when `install` allows and it is
    /// missing; what the install did is said in one line on stderr. `Err` says why there is
    /// none.
    pub fn find(install: bool) -> Result<Fio, String> {
        if let Some(version) = version() {
            return Ok(Fio { version });
        }
        if !install {
            return Err("fio is not installed (apt-get install -y fio)".to_owned());
        }
        eprintln!("rbio bench: fio is missing; installing it with apt-get install -y fio");
        let installed = install_with("apt-get").and_then(|()| {
            version().ok_or_else(|| "apt-get succeeded, but fio --version fails".to_owned())
        });
        match installed {
            Ok(version) => {
                eprintln!("rbio bench: installed {version}");
                Ok(Fio { version })
            }
            Err(why) => {
                eprintln!(
                    "rbio bench: could not install fio: {why}; fio is left out (no % of fio)"
                );
                Err(format!("could not install fio: {why}"))
            }
        }
    }

    /// Replays `iolog` with io_uring at `depth` and returns the reads per second.
    ///
    /// # Errors
    /// When fio fails or prints no result.
    pub fn replay(&self, iolog: &Path, depth: usize, direct: bool) -> Result<f64, Failure> {
        let output = Command::new("fio")
            .arg("--name=rbio-header-replay")
            .arg(format!("--read_iolog={}", iolog.display()))
            .arg("--ioengine=io_uring")
            .arg(format!("--iodepth={depth}"))
            .arg(format!("--direct={}", u8::from(direct)))
            .arg("--replay_no_stall=1")
            .arg("--output-format=json")
            .output()
            .map_err(|error| format!("cannot run fio: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "fio failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        let report: Value = serde_json::from_slice(&output.stdout)
            .map_err(|error| format!("fio printed no JSON result: {error}"))?;
        let read = &report["jobs"][0]["read"];
        let total_ios = read["total_ios"].as_f64().unwrap_or(0.0);
        let runtime_ms = read["runtime"].as_f64().unwrap_or(0.0);
        if total_ios == 0.0 || runtime_ms == 0.0 {
            return Err("fio reported no reads".into());
        }
        Ok(total_ios / (runtime_ms / 1e3))
    }
}

/// Installs fio with `apt_get install -y fio`, and when that fails runs `apt_get update` and
/// the install again. `Err` says why the last step failed.
fn install_with(apt_get: &str) -> Result<(), String> {
    let install = ["install", "-y", "fio"];
    match run(apt_get, &install) {
        Ok(()) => return Ok(()),
        Err(Step::NotRun(why)) => return Err(why),
        Err(Step::Failed(_)) => {}
    }
    run(apt_get, &["update"])
        .and_then(|()| run(apt_get, &install))
        .map_err(|step| match step {
            Step::NotRun(why) | Step::Failed(why) => why,
        })
}

/// Why a step of the install did not work.
enum Step {
    /// The program could not be started.
    NotRun(String),
    /// It ran and failed: its command, exit status and last line of stderr.
    Failed(String),
}

/// Runs `program args` non-interactively, output captured.
fn run(program: &str, args: &[&str]) -> Result<(), Step> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Step::NotRun(format!("cannot run {command}: {error}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_line = stderr.lines().map(str::trim).rfind(|line| !line.is_empty());
    Err(Step::Failed(format!(
        "{command} failed ({}): {}",
        output.status,
        last_line.unwrap_or("no message")
    )))
}

fn version() -> Option<String> {
    let output = Command::new("fio").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Writes fio's I/O log (version 2) of `read_bytes` reads at `offsets` of `image` to `path`.
pub fn write_iolog(
    path: &Path,
    image: &Path,
    offsets: &[u64],
    read_bytes: usize,
) -> Result<PathBuf, Failure> {
    let image = image.display();
    let mut text = format!("fio version 2 iolog\n{image} add\n{image} open\n");
    for offset in offsets {
        let _ = writeln!(text, "{image} read {offset} {read_bytes}");
    }
    let _ = writeln!(text, "{image} close");
    std::fs::write(path, text)
        .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_install_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-apt-get");
        let why = install_with(missing.to_str().unwrap()).unwrap_err();
        assert!(why.starts_with("cannot run ") && why.contains("no-apt-get install -y fio"));

        // An apt-get that knows no fio, before and after an update.
        let apt_get = dir.path().join("apt-get");
        std::fs::write(
            &apt_get,
            "#!/bin/sh\necho \"$@\" >> \"$0.log\"\n\
             echo 'E: Unable to locate package fio' >&2\nexit 100\n",
        )
        .unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&apt_get, mode).unwrap();
        let why = install_with(apt_get.to_str().unwrap()).unwrap_err();
        assert!(why.contains("update failed (exit status: 100)"), "{why}");
        assert!(why.ends_with("E: Unable to locate package fio"), "{why}");
        let log = std::fs::read_to_string(dir.path().join("apt-get.log")).unwrap();
        assert_eq!(log, "install -y fio\nupdate\n");
    }

    #[test]
    fn the_iolog_lists_every_read_between_open_and_close() {
        let dir = std::env::temp_dir().join(format!("rbio-iolog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("t.iolog");
        write_iolog(&log, Path::new("/img"), &[4096, 8192], 512).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text,
            "fio version 2 iolog\n/img add\n/img open\n/img read 4096 512\n/img read 8192 512\n/img close\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

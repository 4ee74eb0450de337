//! fio as the yardstick: its own strided read of exactly the slot headers bringup reads (one
//! header-sized read at the start of every slot, in slot order) on the same image, at the same
//! depth, so each row can say what fraction of the device's rate for that work rbio reaches.
//! A strided read is fio's fastest way to make those reads, so it is the fair ceiling.

use std::process::Command;

use serde_json::Value;

use crate::exit::Failure;

/// A usable fio.
pub struct Fio {
    /// Its version line.
    pub version: String,
}

/// The header reads of one image, as fio's strided job describes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StridedHeaders {
    /// The image.
    pub path: std::path::PathBuf,
    /// Offset of the first header read.
    pub first_offset_bytes: u64,
    /// Bytes from one header to the next (the slot size).
    pub stride_bytes: u64,
    /// Bytes read per header.
    pub read_bytes: usize,
    /// Headers read.
    pub count: u64,
}

impl Fio {
    /// Finds fio on the `PATH`; `Err` says why there is none and how to install it (the
    /// command installs nothing itself).
    pub fn find() -> Result<Fio, String> {
        version()
            .map(|version| Fio { version })
            .ok_or_else(|| "fio is not installed (apt-get install fio adds it)".to_owned())
    }

    /// Reads the headers with io_uring at `depth` and returns the reads per second.
    ///
    /// # Errors
    /// When fio fails or prints no result.
    pub fn read_headers(
        &self,
        headers: &StridedHeaders,
        depth: usize,
        direct: bool,
    ) -> Result<f64, Failure> {
        let output = Command::new("fio")
            .arg("--name=rbio-headers")
            .arg(format!("--filename={}", headers.path.display()))
            .args(strided_args(headers))
            .arg("--ioengine=io_uring")
            .arg(format!("--iodepth={depth}"))
            .arg(format!("--direct={}", u8::from(direct)))
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

fn version() -> Option<String> {
    let output = Command::new("fio").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// fio's job options for `headers`: a sequential read of `read_bytes` at the start of every
/// `stride_bytes` zone, from the first header for `count` zones.
fn strided_args(headers: &StridedHeaders) -> Vec<String> {
    let read_bytes = headers.read_bytes;
    vec![
        "--rw=read".to_owned(),
        format!("--bs={read_bytes}"),
        "--zonemode=strided".to_owned(),
        format!("--zonesize={read_bytes}"),
        format!("--zonerange={}", headers.stride_bytes),
        format!("--offset={}", headers.first_offset_bytes),
        format!("--size={}", headers.count * headers.stride_bytes),
        format!("--io_size={}", headers.count * read_bytes as u64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strided_job_reads_one_header_per_slot_from_the_first() {
        let headers = StridedHeaders {
            path: "/img".into(),
            first_offset_bytes: 4 << 20,
            stride_bytes: 65536,
            read_bytes: 4096,
            count: 3,
        };
        assert_eq!(
            strided_args(&headers),
            [
                "--rw=read",
                "--bs=4096",
                "--zonemode=strided",
                "--zonesize=4096",
                "--zonerange=65536",
                "--offset=4194304",
                "--size=196608",
                "--io_size=12288",
            ]
        );
    }
}

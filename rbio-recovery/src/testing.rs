//! The repository's LMCache fixtures (feature `testing`): devices written by real LMCache
//! 0.5.6, with the manifests saying what a correct bringup finds.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Names the directory holding the fixture archives: `RBIO_FIXTURES_DIR` when set (a QEMU
/// guest, where the build's paths do not exist), else the repository's
/// `fixtures/lmcache-0.5.6`.
pub const FIXTURES_DIR_VAR: &str = "RBIO_FIXTURES_DIR";

/// The directory holding the LMCache fixture archives (see [`FIXTURES_DIR_VAR`]).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os(FIXTURES_DIR_VAR) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lmcache-0.5.6"),
    }
}

/// One fixture unpacked into a private temporary directory, removed on drop.
#[derive(Debug)]
pub struct UnpackedFixture {
    /// The directory; dropping it removes the image.
    pub dir: tempfile::TempDir,
    /// The device image (sparse).
    pub image: PathBuf,
    /// The manifest: what a correct bringup must find.
    pub manifest: serde_json::Value,
}

/// Unpacks fixture `name` (`c1000` or `c2000kv`) with `tar`, keeping the image sparse.
///
/// # Errors
/// The archive is missing, `tar` failed, or the manifest is not JSON.
pub fn unpack_fixture(name: &str) -> io::Result<UnpackedFixture> {
    let archive = fixtures_dir().join(format!("{name}.tar.gz"));
    if !archive.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("fixture {} not found", archive.display()),
        ));
    }
    let dir = tempfile::tempdir()?;
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "tar xzf {} failed: {status}",
            archive.display()
        )));
    }
    let image = dir.path().join(format!("{name}.img"));
    let manifest_bytes = std::fs::read(dir.path().join(format!("{name}.img.manifest.json")))?;
    let manifest = serde_json::from_slice(&manifest_bytes).map_err(io::Error::other)?;
    Ok(UnpackedFixture {
        dir,
        image,
        manifest,
    })
}

//! Whether the path a checkpoint recorded names the device being brought up: the same string,
//! or another name for the same device (a symlink, a relative path, a `/dev/disk/by-id/`
//! link, the NVMe namespace's block and generic devices).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::format::DevicePathPolicy;

/// How a recorded path relates to the configured one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathMatch {
    /// The same string.
    Equal,
    /// Another name that resolves to the same device or file.
    SameDevice,
    /// Another device, or a recorded path that no longer resolves (compared as a string).
    Different,
}

/// What a path resolves to, symlinks followed, a relative path taken against the working
/// directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    /// A block or character device other than an NVMe namespace: its device number.
    Device(u64),
    /// An NVMe namespace, by controller and namespace number, whether reached through its
    /// block device (`nvme0n1`) or its generic character device (`ng0n1`).
    NvmeNamespace(u32, u32),
    /// A regular file: its file system and inode.
    File(u64, u64),
}

/// The path the whole-checkpoint rules should take as configured: under
/// [`DevicePathPolicy::SameDevice`], `recorded` itself when it names the same device as
/// `configured`; else `configured`.
pub(crate) fn compared_path(
    recorded: &str,
    configured: String,
    policy: DevicePathPolicy,
) -> String {
    let same_device = policy == DevicePathPolicy::SameDevice
        && !recorded.is_empty()
        && compare(recorded, &configured) == PathMatch::SameDevice;
    if same_device {
        recorded.to_owned()
    } else {
        configured
    }
}

/// Compares `recorded` with `configured`.
pub(crate) fn compare(recorded: &str, configured: &str) -> PathMatch {
    if recorded == configured {
        return PathMatch::Equal;
    }
    match (
        identity(Path::new(recorded)),
        identity(Path::new(configured)),
    ) {
        (Some(a), Some(b)) if a == b => PathMatch::SameDevice,
        _ => PathMatch::Different,
    }
}

fn identity(path: &Path) -> Option<Identity> {
    let metadata = std::fs::metadata(path).ok()?;
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return Some(Identity::File(metadata.dev(), metadata.ino()));
    }
    if !file_type.is_block_device() && !file_type.is_char_device() {
        return None;
    }
    let name = std::fs::canonicalize(path).ok()?;
    let name = name.file_name()?.to_str()?;
    Some(match nvme_namespace(name) {
        Some((controller, namespace)) => Identity::NvmeNamespace(controller, namespace),
        None => Identity::Device(metadata.rdev()),
    })
}

/// `(controller, namespace)` from `nvme<C>n<N>` or `ng<C>n<N>`; `None` for other names and
/// for partitions (`nvme0n1p1`). Without native NVMe multipath the block device is numbered
/// by controller like the generic one; with it, the block device takes the subsystem's
/// number, which may differ, and the two names then compare as different devices.
fn nvme_namespace(name: &str) -> Option<(u32, u32)> {
    let numbers = name
        .strip_prefix("nvme")
        .or_else(|| name.strip_prefix("ng"))?;
    let (controller, namespace) = numbers.split_once('n')?;
    Some((controller.parse().ok()?, namespace.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvme_block_and_generic_names_give_the_same_namespace() {
        assert_eq!(nvme_namespace("nvme0n1"), Some((0, 1)));
        assert_eq!(nvme_namespace("ng0n1"), Some((0, 1)));
        assert_eq!(nvme_namespace("ng1n2"), Some((1, 2)));
        assert_eq!(nvme_namespace("nvme0n1p1"), None);
        assert_eq!(nvme_namespace("nvme0"), None);
        assert_eq!(nvme_namespace("sda"), None);
    }

    #[test]
    fn a_symlink_and_a_relative_path_name_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("c1000.img");
        std::fs::write(&image, b"image").unwrap();
        let link = dir.path().join("by-id-link");
        std::os::unix::fs::symlink(&image, &link).unwrap();
        let image_text = image.to_str().unwrap();
        assert_eq!(compare(image_text, image_text), PathMatch::Equal);
        assert_eq!(
            compare(link.to_str().unwrap(), image_text),
            PathMatch::SameDevice
        );
        // Relative to the working directory: the test's is the crate root, so go up from it.
        let cwd = std::env::current_dir().unwrap();
        let depth = cwd.components().count() - 1;
        let relative = format!(
            "{}{}",
            "../".repeat(depth),
            image_text.trim_start_matches('/')
        );
        assert_eq!(compare(&relative, image_text), PathMatch::SameDevice);

        let other = dir.path().join("other.img");
        std::fs::write(&other, b"image").unwrap();
        assert_eq!(
            compare(other.to_str().unwrap(), image_text),
            PathMatch::Different
        );
        let gone = dir.path().join("gone.img");
        assert_eq!(
            compare(gone.to_str().unwrap(), image_text),
            PathMatch::Different,
            "a recorded path that does not resolve is compared as a string"
        );
    }

    #[test]
    fn a_hard_link_is_the_same_file_and_a_char_device_is_itself() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.img");
        std::fs::write(&image, b"image").unwrap();
        let hard = dir.path().join("b.img");
        std::fs::hard_link(&image, &hard).unwrap();
        let (a, b) = (image.to_str().unwrap(), hard.to_str().unwrap());
        assert_eq!(compare(a, b), PathMatch::SameDevice);
        assert_eq!(compare("/dev/null", "/dev/zero"), PathMatch::Different);
        assert_eq!(
            compare("/dev/null", "/dev/../dev/null"),
            PathMatch::SameDevice
        );
        assert_eq!(compare("/dev/null", a), PathMatch::Different);
    }
}

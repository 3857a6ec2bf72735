//! Taking the root tree out of an image file. (Placeholder: being written.)

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::manifest::Arch;

/// What kind of file an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A qcow2 disk image.
    Qcow2,
    /// A raw disk with a partition table.
    RawDisk,
    /// A raw filesystem image.
    RawFilesystem,
    /// A tarball, compressed or not.
    Tar,
    /// A squashfs filesystem.
    Squashfs,
}

/// What [`extract`] did.
#[derive(Debug)]
pub struct Extracted {
    /// The image's format.
    pub format: ImageFormat,
    /// Where the root filesystem was found, for the log and the report
    /// (such as `ext4 on partition 1 (label cloudimg-rootfs)`).
    pub root_filesystem: String,
    /// How long each step took, for `--timings`.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Why an image's tree could not be taken out.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The file is none of the formats kiln reads.
    #[error("{path} is not an image kiln can read")]
    NotAnImage {
        /// The file.
        path: String,
    },
}

/// The format of the file at `path`, by its first bytes.
pub fn detect(path: &Path) -> Result<ImageFormat, ExtractError> {
    Err(ExtractError::NotAnImage {
        path: path.display().to_string(),
    })
}

/// Copies the root tree of `image` into `root` (an empty directory).
pub fn extract(
    image: &Path,
    _root: &Path,
    _work: &Path,
    _arch: Arch,
    _log: &mut dyn Write,
) -> Result<Extracted, ExtractError> {
    Err(ExtractError::NotAnImage {
        path: image.display().to_string(),
    })
}

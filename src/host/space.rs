//! Disk space: how much a filesystem has free, and whether a failure was
//! a full disk.
//!
//! A build writes in two places, the output directory (the tree, the
//! image, the outputs) and the cache (downloads). When either fills up,
//! the user needs to know which one, how large it is and, where kiln can
//! know it, how much the step needed, rather than an `os error 28` from
//! deep inside a tool. A full disk shows up two ways: an [`io::Error`] of
//! kind `StorageFull` from kiln's own writes, and the words "No space left
//! on device" in an external tool's stderr (dpkg, mke2fs, qemu-img, tar),
//! which kiln's errors quote. [`is_out_of_space`] recognises both.

use std::io;
use std::path::Path;

/// `ENOSPC`: no space left on device.
const ENOSPC: i32 = 28;
/// `EDQUOT`: the user's disk quota is used up, which the user meets as a
/// full disk.
const EDQUOT: i32 = 122;

/// What the C library prints for [`ENOSPC`] and [`EDQUOT`], as external
/// tools' messages (and `io::Error`'s `Display`) carry it.
const OUT_OF_SPACE_TEXTS: [&str; 2] = ["No space left on device", "Disk quota exceeded"];

/// The size of a filesystem and what is free on it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes a user other than root may still write (`f_bavail`).
    pub free_bytes: u64,
    /// The filesystem's size (`f_blocks`).
    pub total_bytes: u64,
}

/// The space of the filesystem holding `path`, or of its nearest existing
/// ancestor when `path` is not made yet.
pub fn space_of(path: &Path) -> io::Result<Space> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let stats = nix::sys::statvfs::statvfs(existing).map_err(io::Error::from)?;
    // All three are 64 bits wide on the 64-bit Linux kiln builds on.
    let fragment = stats.fragment_size();
    Ok(Space {
        free_bytes: stats.blocks_available().saturating_mul(fragment),
        total_bytes: stats.blocks().saturating_mul(fragment),
    })
}

/// Whether `error`, or any error it was caused by, is a full disk (or a
/// used-up quota), by its kind or by the words a tool printed for it.
pub fn is_out_of_space(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && (io.kind() == io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT)))
        {
            return true;
        }
        if mentions_out_of_space(&error.to_string()) {
            return true;
        }
        next = error.source();
    }
    false
}

/// Whether a message (kiln's, or a tool's stderr it quotes) says the disk
/// was full.
pub fn mentions_out_of_space(text: &str) -> bool {
    OUT_OF_SPACE_TEXTS.iter().any(|words| text.contains(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write the blob")]
    struct Outer {
        #[source]
        source: io::Error,
    }

    #[test]
    fn a_full_disk_is_recognised_by_kind_code_or_a_tools_words() {
        let by_kind = Outer {
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert!(is_out_of_space(&by_kind));
        let by_code = Outer {
            source: io::Error::from_raw_os_error(ENOSPC),
        };
        assert!(is_out_of_space(&by_code));
        let quota = io::Error::from_raw_os_error(EDQUOT);
        assert!(is_out_of_space(&quota));
        let quoted = io::Error::other(
            "mke2fs failed (exit status 1): ext2fs_write_inode: No space left on device",
        );
        assert!(is_out_of_space(&quoted));
        let other = Outer {
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(!is_out_of_space(&other));
        assert!(!mentions_out_of_space("dpkg: error processing package"));
    }

    #[test]
    fn space_of_a_path_not_made_yet_is_that_of_its_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let here = space_of(dir.path()).expect("statvfs");
        let below = space_of(&dir.path().join("not/made/yet")).expect("statvfs");
        assert_eq!(here.total_bytes, below.total_bytes);
        assert!(here.total_bytes > 0);
        assert!(here.free_bytes <= here.total_bytes);
    }
}

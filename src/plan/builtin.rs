//! kiln's built-in elements travel inside the binary (embedded by
//! `build.rs` from the repository's `elements/`), so an installed kiln
//! works from any directory. On first use they are unpacked into the cache
//! under a directory named for a hash of their contents, and that
//! directory is what the element search path ends with.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/builtin_elements.rs"));

/// Why the built-in elements could not be unpacked.
#[derive(Debug, thiserror::Error)]
#[error("cannot unpack kiln's built-in elements into {}: {source}", path.display())]
pub struct BuiltinError {
    /// The file or directory being written.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: std::io::Error,
}

/// A hash of the embedded entries, which names their directory.
fn digest() -> String {
    let mut hasher = Sha256::new();
    for (path, mode, contents) in BUILTIN_ENTRIES {
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update(mode.to_le_bytes());
        match contents {
            None => hasher.update([0u8]),
            Some(bytes) => {
                hasher.update([1u8]);
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
        }
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

/// The directory holding the built-in elements, unpacked below `base`
/// (the cache directory) if they are not there yet.
pub fn unpack_builtin_elements(base: &Path) -> Result<PathBuf, BuiltinError> {
    let parent = base.join("builtin-elements");
    let dir = parent.join(digest());
    if dir.is_dir() {
        return Ok(dir);
    }
    let error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuiltinError { path, source }
    };
    std::fs::create_dir_all(&parent).map_err(error(&parent))?;
    // Unpacked beside, then renamed: a concurrent kiln, or one killed
    // half-way, never leaves a partial directory under the final name.
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(&parent)
        .map_err(error(&parent))?;
    for (relative, mode, contents) in BUILTIN_ENTRIES {
        let path = staging.path().join(relative);
        match contents {
            None => std::fs::create_dir(&path).map_err(error(&path))?,
            Some(bytes) => {
                let mut file = std::fs::File::create(&path).map_err(error(&path))?;
                file.write_all(bytes).map_err(error(&path))?;
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
            .map_err(error(&path))?;
    }
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(error(staging.path()))?;
    let staged = staging.keep();
    match std::fs::rename(&staged, &dir) {
        Ok(()) => Ok(dir),
        // Another kiln unpacked the same contents first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            Err(error(&dir)(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unpacked_elements_hash_like_the_checkout() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = unpack_builtin_elements(base.path()).expect("unpack");
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
        let names: Vec<_> = std::fs::read_dir(&checkout)
            .expect("elements/")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name())
            .collect();
        assert!(names.len() >= 7, "{names:?}");
        for name in names {
            assert_eq!(
                crate::plan::tree_hash(&dir.join(&name)).expect("unpacked"),
                crate::plan::tree_hash(&checkout.join(&name)).expect("checkout"),
                "{name:?}"
            );
        }
        // A second call reuses the directory.
        assert_eq!(unpack_builtin_elements(base.path()).expect("again"), dir);
    }
}

//! A content hash of an element's directory tree, which the lock pins so a
//! build can tell that an element changed.
//!
//! The hash covers what changes an element's behaviour — relative paths,
//! entry types, permission bits (the executable bit decides whether a hook
//! runs), file contents and symlink targets — and nothing a checkout or a
//! copy changes on its own: mtimes, owners, inode numbers, the directory's
//! own location. Entries are visited in byte order of their relative paths
//! and each field is length-prefixed, so no two different trees encode to
//! the same byte stream.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::host::walk;

/// Why a tree could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum TreeHashError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The tree holds something other than files, directories and
    /// symlinks (a device, socket or FIFO), which an element never needs and
    /// whose "content" cannot be hashed.
    #[error("{} is not a file, directory or symlink", path.display())]
    UnsupportedType {
        /// The offending entry.
        path: PathBuf,
    },
}

/// Tags that keep entry kinds apart in the hashed stream.
const TAG_DIR: u8 = b'd';
const TAG_FILE: u8 = b'f';
const TAG_LINK: u8 = b'l';

/// Hashes the tree under `dir` as `sha256:<hex>`. A symlink at `dir`
/// itself is followed (an element directory may be a link on the search
/// path); symlinks inside are hashed as links, never followed.
pub fn tree_hash(dir: &Path) -> Result<String, TreeHashError> {
    tree_hash_without(dir, &[])
}

/// [`tree_hash`] of the tree without the top-level entries named in
/// `left_out` (and what is below them): an element without the phase
/// directories of phases that have not run yet (see
/// [`crate::snapshot`]). With nothing left out, the same hash.
pub fn tree_hash_without(dir: &Path, left_out: &[&str]) -> Result<String, TreeHashError> {
    let mut hasher = Sha256::new();
    hasher.update(b"kiln-tree-v1\0");
    let mut entries = Vec::new();
    let walker = walk::tree(dir)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() != 1 || !left_out.iter().any(|name| entry.file_name() == *name)
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let (path, source) = walk::failure(e, dir);
            io(&path, source)
        })?;
        entries.push(walk::relative(&entry, dir).to_path_buf());
    }
    // Byte order of the whole relative path, so the order does not depend
    // on the filesystem's directory order or on locale.
    entries.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    for relative in entries {
        let path = dir.join(&relative);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        let kind = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        let tag = if kind.is_dir() {
            TAG_DIR
        } else if kind.is_file() {
            TAG_FILE
        } else if kind.is_symlink() {
            TAG_LINK
        } else {
            return Err(TreeHashError::UnsupportedType { path });
        };
        hasher.update([tag]);
        field(&mut hasher, relative.as_os_str().as_bytes());
        // A symlink's own mode is meaningless on Linux (always 0777), but
        // it is hashed all the same: it is stable and keeps one format.
        hasher.update(mode.to_be_bytes());
        match tag {
            TAG_FILE => {
                let mut file = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
                hasher.update(meta.len().to_be_bytes());
                let mut buffer = vec![0u8; 64 * 1024];
                let mut seen = 0u64;
                loop {
                    let n = file.read(&mut buffer).map_err(|e| io(&path, e))?;
                    if n == 0 {
                        break;
                    }
                    seen += n as u64;
                    hasher.update(&buffer[..n]);
                }
                // The length was written first; a file that changed while
                // being read would otherwise make an ambiguous stream.
                if seen != meta.len() {
                    return Err(io(
                        &path,
                        std::io::Error::other("file changed size while being hashed"),
                    ));
                }
            }
            TAG_LINK => {
                let target = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
                field(&mut hasher, target.as_os_str().as_bytes());
            }
            _ => {}
        }
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn io(path: &Path, source: std::io::Error) -> TreeHashError {
    TreeHashError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn sample() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("install.d")).expect("mkdir");
        fs::write(root.join("install.d/10-a"), "#!/bin/sh\necho a\n").expect("write");
        fs::set_permissions(
            root.join("install.d/10-a"),
            fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        fs::write(root.join("element-deps"), "base\n").expect("write");
        fs::write(root.join("README"), "notes\n").expect("write");
        symlink("element-deps", root.join("link")).expect("symlink");
        dir
    }

    fn hash(dir: &tempfile::TempDir) -> String {
        tree_hash(dir.path()).expect("hash")
    }

    #[test]
    fn format_and_stability() {
        let a = sample();
        let b = sample();
        let h = hash(&a);
        assert!(h.starts_with("sha256:") && h.len() == 7 + 64, "{h}");
        // Two trees made separately, at different times and places, agree.
        assert_eq!(h, hash(&b));
    }

    #[test]
    fn renaming_changes_it() {
        let dir = sample();
        let before = hash(&dir);
        fs::rename(dir.path().join("README"), dir.path().join("README.md")).expect("rename");
        assert_ne!(before, hash(&dir));
    }

    #[test]
    fn chmod_changes_it() {
        let dir = sample();
        let before = hash(&dir);
        fs::set_permissions(dir.path().join("README"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        assert_ne!(before, hash(&dir));
    }

    #[test]
    fn content_edit_changes_it() {
        let dir = sample();
        let before = hash(&dir);
        fs::write(dir.path().join("README"), "notez\n").expect("write");
        assert_ne!(before, hash(&dir));
    }

    #[test]
    fn retargeting_a_symlink_changes_it() {
        let dir = sample();
        let before = hash(&dir);
        fs::remove_file(dir.path().join("link")).expect("rm");
        symlink("README", dir.path().join("link")).expect("symlink");
        assert_ne!(before, hash(&dir));
    }

    #[test]
    fn moving_content_between_files_changes_it() {
        let dir = sample();
        let before = hash(&dir);
        fs::write(dir.path().join("README"), "").expect("write");
        fs::write(dir.path().join("element-deps"), "base\nnotes\n").expect("write");
        assert_ne!(before, hash(&dir));
    }

    #[test]
    fn empty_directory_counts() {
        let dir = sample();
        let before = hash(&dir);
        fs::create_dir(dir.path().join("post-install.d")).expect("mkdir");
        assert_ne!(before, hash(&dir));
    }

    #[test]
    fn touching_mtime_does_not_change_it() {
        let dir = sample();
        let before = hash(&dir);
        let file = fs::File::options()
            .write(true)
            .open(dir.path().join("README"))
            .expect("open");
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("set mtime");
        let dir_handle = fs::File::open(dir.path().join("install.d")).expect("open dir");
        dir_handle
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("set dir mtime");
        assert_eq!(before, hash(&dir));
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = tree_hash(Path::new("/no/such/element")).expect_err("missing");
        assert!(err.to_string().contains("/no/such/element"));
    }
}

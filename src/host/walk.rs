//! Walking a directory tree: the one way kiln visits everything below a
//! directory (an element's tree hash, normalising the root tree, sizing
//! and filling filesystems, the tar writer, `build --check`'s comparison).
//!
//! A thin layer over `walkdir`, which walks without recursion (a tree may
//! be deeper than a thread's stack allows) and keeps few directories open.
//! Symbolic links below the root are never followed: a link in an image
//! points into the image, not into the host. A symbolic link at the root
//! itself is followed unless the caller adds `.follow_root_links(false)`.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use walkdir::{DirEntry, Error, WalkDir};

/// Every entry of the tree at `root`, `root` first and each directory
/// before its contents, in the order the directories list their names:
/// for walks whose result does not depend on the order.
pub fn tree(root: &Path) -> WalkDir {
    WalkDir::new(root)
}

/// Every entry of the tree at `root`, each directory before its contents
/// and its names in byte order (as `tar --sort=name` and `LC_ALL=C ls`):
/// for walks whose output bytes depend on the order.
pub fn tree_sorted(root: &Path) -> WalkDir {
    WalkDir::new(root).sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
}

/// `entry`'s path below `root` (empty for `root` itself).
pub fn relative<'a>(entry: &'a DirEntry, root: &Path) -> &'a Path {
    entry.path().strip_prefix(root).unwrap_or(entry.path())
}

/// Where a walk of `root` failed, and the operating system's answer: the
/// entry or directory walkdir names, else `root` (a directory whose
/// listing broke off midway, which walkdir does not name).
pub fn failure(error: Error, root: &Path) -> (PathBuf, io::Error) {
    let path = error.path().unwrap_or(root).to_path_buf();
    let message = error.to_string();
    // walkdir reports loops only when it follows links, which kiln never
    // asks it to.
    let source = error
        .into_io_error()
        .unwrap_or_else(|| io::Error::other(message));
    (path, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn names(walk: WalkDir, root: &Path) -> Vec<String> {
        walk.into_iter()
            .map(|entry| relative(&entry.unwrap(), root).display().to_string())
            .collect()
    }

    #[test]
    fn sorted_walks_list_each_directory_in_byte_order_before_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in ["a/b", "a-c", "B", "é"] {
            fs::create_dir_all(root.join(path)).unwrap();
        }
        symlink(root.join("a"), root.join("link")).unwrap();
        assert_eq!(
            names(tree_sorted(root), root),
            ["", "B", "a", "a/b", "a-c", "link", "é"]
        );
        // The link is listed, not followed.
        let mut all = names(tree(root), root);
        all.sort();
        assert_eq!(all, ["", "B", "a", "a-c", "a/b", "link", "é"]);
    }

    #[test]
    fn a_failure_names_where_it_happened() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = tree(&missing).into_iter().next().unwrap().unwrap_err();
        let (path, source) = failure(error, dir.path());
        assert_eq!(path, missing);
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }
}

//! Walking a directory tree: the one way kiln visits everything below a
//! directory (an element's tree hash, normalising the root tree, sizing
//! and filling filesystems, the tar writer, `build --check`'s comparison),
//! and the one way it follows a path inside a tree as the tree sees it.
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

/// `relative` inside `root`, following symlinks as the tree would see
/// them (an absolute target is taken from `root`, never the host's `/`;
/// `..` stops at `root`). `None` when a component is missing or the links
/// loop.
pub fn resolve_in_tree(root: &Path, relative: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = relative
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let mut path = root.to_path_buf();
        path.extend(&resolved);
        path.push(&component);
        let metadata = std::fs::symlink_metadata(&path).ok()?;
        if metadata.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&path).ok()?;
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                resolved.clear();
            }
            pending.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                    .map(str::to_string),
            );
        } else {
            resolved.push(component);
        }
    }
    let mut path = root.to_path_buf();
    path.extend(&resolved);
    Some(path)
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
    fn a_path_in_a_tree_follows_the_tree_s_links_never_the_host_s() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/modules/6.1")).unwrap();
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::write(root.join("boot/vmlinuz-6.1"), b"kernel").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/boot/vmlinuz-6.1", root.join("vmlinuz")).unwrap();
        symlink("../../../../boot", root.join("usr/lib/up")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        assert_eq!(
            resolve_in_tree(root, "lib/modules/6.1"),
            Some(root.join("usr/lib/modules/6.1"))
        );
        // An absolute target starts at the tree's root, not the host's.
        assert_eq!(
            resolve_in_tree(root, "vmlinuz"),
            Some(root.join("boot/vmlinuz-6.1"))
        );
        // `..` stops at the tree's root.
        assert_eq!(
            resolve_in_tree(root, "usr/lib/up/vmlinuz-6.1"),
            Some(root.join("boot/vmlinuz-6.1"))
        );
        assert_eq!(resolve_in_tree(root, "lib/modules/6.2"), None);
        assert_eq!(resolve_in_tree(root, "loop-a"), None);
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

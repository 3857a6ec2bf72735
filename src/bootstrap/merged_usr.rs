//! The merged-/usr layout: `/bin`, `/sbin` and `/lib*` as symlinks into
//! `/usr`, made before any package is unpacked.
//!
//! Debian bookworm packages still ship files under `/bin`, `/lib` and so on;
//! a bookworm system is merged-/usr because the bootstrap tool makes those
//! directories symlinks into `/usr` (the `usrmerge` package converts older
//! systems, and `usr-is-merged` records that the conversion is done).
//! debootstrap 1.0.128 (bookworm) extracts the required set and then moves
//! each of `bin lib lib32 lib64 libo32 libx32 sbin` that exists into `usr/`
//! and links it (`merge_usr` in `/usr/share/debootstrap/functions`); its
//! older `setup_merged_usr`, which mmdebstrap's `hooks/merged-usr/setup00.sh`
//! calls, instead creates the links *before* extraction from a list per
//! architecture. kiln does the latter: creating the links first means
//! unpacking writes through them and nothing has to be moved afterwards.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Every top-level directory that merged /usr may turn into a link, on any
/// architecture (debootstrap's `merge_usr` list).
pub const MERGED_USR_DIRS: [&str; 7] = ["bin", "lib", "lib32", "lib64", "libo32", "libx32", "sbin"];

/// Why the merged-/usr links could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MergedUsrError {
    /// Something other than the expected link already stands at the path.
    #[error("cannot make {path} a merged-/usr link: something else is already there")]
    Occupied {
        /// The path in the tree.
        path: PathBuf,
    },
    /// A directory or link could not be created; fs-err's message names
    /// the operation and the path.
    #[error(transparent)]
    Create(#[from] io::Error),
}

/// The top-level directories linked into `/usr` on `arch`, as debootstrap's
/// `setup_merged_usr` lists them: `bin sbin lib` plus the multilib
/// directories of that architecture.
pub fn merged_usr_dirs(arch: &str) -> Vec<&'static str> {
    let extra: &[&'static str] = match arch {
        "amd64" | "x32" => &["lib32", "lib64", "libx32"],
        "i386" => &["lib64", "libx32"],
        "mips" | "mipsel" | "loong64" | "ppc64" | "sparc64" => &["lib32", "lib64"],
        a if a.starts_with("mips64") || a.starts_with("mipsn32") => &["lib32", "lib64", "libo32"],
        "powerpc" | "ppc64el" | "sparc" => &["lib64"],
        "s390x" => &["lib32"],
        _ => &[],
    };
    let mut dirs = vec!["bin", "sbin", "lib"];
    dirs.extend_from_slice(extra);
    dirs
}

/// Creates `usr/<dir>` and the link `<dir> -> usr/<dir>` for every
/// directory of [`merged_usr_dirs`] in `root`, returning the links' names.
/// A link that is already exactly right is kept, so this can run twice.
pub fn create_merged_usr(root: &Path, arch: &str) -> Result<Vec<String>, MergedUsrError> {
    let usr = root.join("usr");
    create_dir_0755(&usr)?;
    let mut made = Vec::new();
    for dir in merged_usr_dirs(arch) {
        let target = Path::new("usr").join(dir);
        create_dir_0755(&root.join(&target))?;
        let link = root.join(dir);
        match fs::read_link(&link) {
            Ok(existing) if existing == target => {}
            Ok(_) => return Err(MergedUsrError::Occupied { path: link }),
            Err(_) if fs::symlink_metadata(&link).is_ok() => {
                return Err(MergedUsrError::Occupied { path: link });
            }
            Err(_) => fs_err::os::unix::fs::symlink(&target, &link)?,
        }
        made.push(dir.to_string());
    }
    Ok(made)
}

/// Creates a real directory (never through a symlink) with mode 0755.
fn create_dir_0755(path: &Path) -> Result<(), MergedUsrError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(MergedUsrError::Occupied {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    fs_err::create_dir(path)?;
    Ok(fs_err::set_permissions(
        path,
        fs::Permissions::from_mode(0o755),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amd64_links_bin_sbin_lib_and_multilib_dirs() {
        let root = tempfile::tempdir().unwrap();
        let made = create_merged_usr(root.path(), "amd64").unwrap();
        assert_eq!(made, ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]);
        for dir in &made {
            assert_eq!(
                fs::read_link(root.path().join(dir)).unwrap(),
                Path::new("usr").join(dir)
            );
            assert!(root.path().join("usr").join(dir).is_dir());
        }
        // Running again keeps what is there.
        create_merged_usr(root.path(), "amd64").unwrap();
    }

    #[test]
    fn arm64_has_no_multilib_links() {
        assert_eq!(merged_usr_dirs("arm64"), ["bin", "sbin", "lib"]);
    }

    #[test]
    fn an_existing_directory_is_not_replaced() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("bin")).unwrap();
        let err = create_merged_usr(root.path(), "arm64").unwrap_err();
        assert!(matches!(err, MergedUsrError::Occupied { .. }), "{err}");
    }
}

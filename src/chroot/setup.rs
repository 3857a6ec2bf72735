//! What the tree needs for the length of the build and must not keep: the
//! host's resolv.conf, and a `policy-rc.d` that stops package scripts from
//! starting services.
//!
//! As DIB does, the image's own files are moved aside *inside the tree*
//! (a rename, so a symlink stays a symlink and a file keeps its inode,
//! owner, mode and times) and moved back at the end. Because the original
//! is never read through, an absolute symlink such as
//! `/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf` is never
//! followed to the host's file. The [`TreeSetup`] guard restores both on
//! [`TreeSetup::finish`] or on drop.

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ChrootError;

/// The host's resolver configuration, copied into the tree.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The policy-rc.d kiln installs: exit status 101 means "action forbidden"
/// to `invoke-rc.d`, so no service starts during the build.
pub const POLICY_RC_D: &[u8] = b"#!/bin/sh\nexit 101\n";

const POLICY_RC_D_MODE: u32 = 0o755;
const RESOLV_CONF_MODE: u32 = 0o644;
const SAVED_SUFFIX: &str = ".kiln-orig";

/// One file replaced for the build.
#[derive(Debug)]
struct Replaced {
    /// The file in the tree.
    path: PathBuf,
    /// Where the image's own file (or symlink) waits, if it had one.
    saved: Option<PathBuf>,
    /// Directories created to hold the file, outermost first.
    created_dirs: Vec<PathBuf>,
}

impl Replaced {
    fn install(
        root: &Path,
        relative: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<Replaced, ChrootError> {
        let path = root.join(relative);
        let created_dirs = create_parent_in_tree(root, &path)?;
        let saved_path = PathBuf::from(format!("{}{SAVED_SUFFIX}", path.display()));
        if fs::symlink_metadata(&saved_path).is_ok() {
            // Left by a build that was killed; the tree is not trustworthy.
            return Err(ChrootError::Io {
                action: "set aside the image's file as",
                path: saved_path,
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        let saved = match fs::symlink_metadata(&path) {
            Ok(_) => {
                fs::rename(&path, &saved_path)?;
                Some(saved_path)
            }
            Err(_) => None,
        };
        let mut replaced = Replaced {
            path,
            saved,
            created_dirs,
        };
        if let Err(error) = write_new(&replaced.path, contents, mode) {
            let _ = replaced.restore();
            return Err(error);
        }
        Ok(replaced)
    }

    fn restore(&mut self) -> Result<(), ChrootError> {
        if fs::symlink_metadata(&self.path).is_ok() {
            fs::remove_file(&self.path)?;
        }
        if let Some(saved) = self.saved.take() {
            fs::rename(&saved, &self.path)?;
        }
        for dir in std::mem::take(&mut self.created_dirs).iter().rev() {
            // Only if still empty: a script may have put files there.
            let _ = fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// Writes a new file at `path`; `create_new` never follows a symlink a
/// racing script might have planted.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), ChrootError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Creates the parent directories of `path` that are missing and checks
/// that the parent resolves inside `root`. Returns what it created.
fn create_parent_in_tree(root: &Path, path: &Path) -> Result<Vec<PathBuf>, ChrootError> {
    let Some(parent) = path.parent() else {
        return Ok(Vec::new());
    };
    let mut created = Vec::new();
    let mut missing = parent;
    let mut to_create = Vec::new();
    while fs::symlink_metadata(missing).is_err() {
        to_create.push(missing.to_path_buf());
        match missing.parent() {
            Some(up) => missing = up,
            None => break,
        }
    }
    for dir in to_create.into_iter().rev() {
        fs::create_dir(&dir)?;
        created.push(dir);
    }
    let resolved = fs::canonicalize(parent)?;
    if !resolved.starts_with(fs::canonicalize(root)?) {
        return Err(ChrootError::OutsideTree {
            path: parent.to_path_buf(),
            resolved,
        });
    }
    Ok(created)
}

/// The tree's temporary build-time files. Restores the image's own on
/// [`TreeSetup::finish`] or, failing that, on drop.
#[derive(Debug)]
pub struct TreeSetup {
    replaced: Vec<Replaced>,
}

impl TreeSetup {
    /// Restores the image's resolv.conf and policy-rc.d (or their absence)
    /// exactly, and reports the first failure.
    pub fn finish(mut self) -> Result<(), ChrootError> {
        self.restore()
    }

    fn restore(&mut self) -> Result<(), ChrootError> {
        let mut first_error = None;
        while let Some(mut replaced) = self.replaced.pop() {
            if let Err(error) = replaced.restore() {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for TreeSetup {
    fn drop(&mut self) {
        if let Err(error) = self.restore() {
            eprintln!("kiln: warning: {error}");
        }
    }
}

/// Puts the host's resolv.conf at `root/etc/resolv.conf` and a
/// `policy-rc.d` forbidding service starts at `root/usr/sbin/policy-rc.d`,
/// setting the image's own aside. A host without resolv.conf gives the
/// tree an empty one.
pub fn prepare_tree(root: &Path) -> Result<TreeSetup, ChrootError> {
    let host_resolv = match fs::read(HOST_RESOLV_CONF) {
        Ok(contents) => contents,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(source.into()),
    };
    let mut setup = TreeSetup {
        replaced: Vec::new(),
    };
    setup.replaced.push(Replaced::install(
        root,
        "etc/resolv.conf",
        &host_resolv,
        RESOLV_CONF_MODE,
    )?);
    setup.replaced.push(Replaced::install(
        root,
        "usr/sbin/policy-rc.d",
        POLICY_RC_D,
        POLICY_RC_D_MODE,
    )?);
    Ok(setup)
}

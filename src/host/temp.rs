//! kiln's temporary files (a test machine's overlay, key, seed and serial
//! log; mke2fs's and debugfs's scratch files), in one directory per kiln
//! process, so that what a kiln killed with SIGKILL (no `Drop` runs) left
//! in `$TMPDIR` lasts only until the next kiln starts.
//!
//! A command that makes temporary files opens a [`Session`] first: it
//! removes the directories of kilns that are gone, then makes its own,
//! `$TMPDIR/kiln-run-XXXXXX/`, holding a lock on its `owner.lock` for as
//! long as it lives, and removes it when dropped. A directory whose lock
//! nobody holds belongs to a dead kiln (the kernel releases a `flock` with
//! its last holder). [`dir`] is where temporary files go: the session's
//! directory, or `$TMPDIR` outside a session (unit tests, commands that
//! make none).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The prefix of a kiln process's temporary directory.
const RUN_DIR_PREFIX: &str = "kiln-run-";

/// The file its kiln holds locked.
const OWNER_FILE: &str = "owner.lock";

/// The directory of the session open now.
static CURRENT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Where temporary files go: the open [`Session`]'s directory, else the
/// system's temporary directory.
pub fn dir() -> PathBuf {
    CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(std::env::temp_dir)
}

/// This kiln's temporary directory, removed when dropped.
#[derive(Debug)]
pub struct Session {
    dir: tempfile::TempDir,
    _owner: File,
}

impl Session {
    /// Removes what killed kilns left in `$TMPDIR` and makes this kiln's
    /// directory there, which [`dir`] then returns.
    pub fn start() -> io::Result<Session> {
        let session = Session::start_in(&std::env::temp_dir())?;
        *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(session.path().to_path_buf());
        Ok(session)
    }

    fn start_in(temp: &Path) -> io::Result<Session> {
        remove_abandoned(temp);
        let dir = tempfile::Builder::new()
            .prefix(RUN_DIR_PREFIX)
            .tempdir_in(temp)?;
        let owner = own(dir.path())?;
        Ok(Session { dir, _owner: owner })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_deref() == Some(self.dir.path()) {
            *current = None;
        }
    }
}

/// Locks the owner file of a new directory. It is locked under another
/// name and renamed into place, so another kiln never sees it unlocked.
fn own(dir: &Path) -> io::Result<File> {
    let staged = dir.join(format!("{OWNER_FILE}.new"));
    let file = File::create(&staged)?;
    file.lock()?;
    std::fs::rename(&staged, dir.join(OWNER_FILE))?;
    Ok(file)
}

/// Removes the directories in `temp` that killed kilns left: those whose
/// owner file nobody holds. Best effort: what cannot be removed is only
/// wasted space. Returns how many were removed.
pub fn remove_abandoned(temp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_run_dir = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(RUN_DIR_PREFIX));
        if !is_run_dir {
            continue;
        }
        let Ok(owner) = File::open(entry.path().join(OWNER_FILE)) else {
            continue;
        };
        if owner.try_lock().is_ok() && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_of_dead_kilns_are_removed_and_a_session_cleans_up() {
        let temp = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let path = temp.path().join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("overlay.qcow2"), b"x").unwrap();
            path
        };
        // A killed kiln's: its owner file is there, unlocked.
        let abandoned = dir("kiln-run-abandoned");
        drop(own(&abandoned).unwrap());
        // A live kiln's.
        let live = dir("kiln-run-live");
        let _owner = own(&live).unwrap();
        // One being made (no owner file yet), and someone else's.
        let starting = dir("kiln-run-starting");
        let other = dir("other");

        let session = Session::start_in(temp.path()).unwrap();
        assert!(!abandoned.exists());
        assert!(live.join("overlay.qcow2").exists());
        assert!(starting.exists() && other.exists());
        std::fs::write(session.path().join("seed.img"), b"x").unwrap();
        let path = session.path().to_path_buf();
        drop(session);
        assert!(!path.exists());
        assert_eq!(remove_abandoned(temp.path()), 0);
    }
}

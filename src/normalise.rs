//! The normalise stage: the finished tree made the same on every build of
//! one lock, before it is assembled.
//!
//! Package scripts and hooks leave behind what differs from run to run:
//! logs, caches, the machine id, random seeds, bytecode, timestamps. This
//! stage removes or resets each of them *at its kind*, naming what it
//! does, so that a difference `kiln build --check` still finds points at a
//! cause nobody knew of yet. What it does to an image is what a first boot
//! redoes anyway: systemd makes a machine id and a random seed, sshd's
//! keys are made on first boot, Python recompiles bytecode on demand.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::time::TimeVal;

use crate::distro::Volatile;
use crate::host::walk;

/// Why the tree could not be normalised.
#[derive(Debug, thiserror::Error)]
pub enum NormaliseError {
    /// A file operation failed; fs-err's message names the operation and
    /// the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Walking the tree or setting a time failed, which fs-err does not
    /// wrap.
    #[error("cannot {action} {}: {source}", path.display())]
    Tree {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
}

/// What the stage changed, for the build log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Normalised {
    /// Files removed.
    pub removed: usize,
    /// Entries whose mtime was later than `SOURCE_DATE_EPOCH` and was set
    /// to it.
    pub clamped: usize,
}

/// Directories whose files are removed (the directories stay, as packages
/// expect them): logs, and caches that are rebuilt on demand.
const EMPTIED_DIRS: &[&str] = &[
    "var/log",
    "var/cache/man",
    "var/cache/fontconfig",
    "var/tmp",
    "tmp",
    // A tmpfs at boot: whatever the build left there (libblkid's device
    // cache /run/blkid/blkid.tab, systemd's state) is hidden then, and
    // differs from host to host.
    "run",
];

/// Single files removed: caches with timestamps and identities the image
/// must not share. (The package manager's own files are the base
/// family's [`Volatile`].)
const REMOVED_FILES: &[&str] = &[
    "var/cache/ldconfig/aux-cache",
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "etc/machine-id.old",
    "root/.bash_history",
    "etc/.pwd.lock",
    // libblkid's device cache where older releases keep it: the devices of
    // whatever machine built the image.
    "etc/blkid.tab",
    "etc/blkid.tab.old",
];

/// Makes `root` the same on every build: see the module documentation.
/// `volatile` is what the base's package manager leaves besides.
/// Changes are listed in `log`.
pub fn normalise(
    root: &Path,
    source_date_epoch: u64,
    volatile: &Volatile,
    log: &mut dyn Write,
) -> Result<Normalised, NormaliseError> {
    let mut done = Normalised::default();
    for dir in EMPTIED_DIRS.iter().chain(volatile.emptied_dirs) {
        empty_dir(&root.join(dir), &mut done)?;
    }
    for file in REMOVED_FILES.iter().chain(volatile.removed_files) {
        remove_file(&root.join(file), &mut done)?;
    }
    // sshd's host keys are made on first boot; an image must never carry
    // them (every machine from it would share them).
    remove_matching(
        &root.join("etc/ssh"),
        |name| name.starts_with("ssh_host_"),
        &mut done,
    )?;
    // systemd makes the machine id on first boot when the file is empty.
    let machine_id = root.join("etc/machine-id");
    if machine_id.exists() {
        write(&machine_id, b"")?;
    }
    remove_bytecode(&root.join("usr/lib"), &mut done)?;
    set_shadow_dates(&root.join("etc/shadow"), source_date_epoch)?;
    set_shadow_dates(&root.join("etc/shadow-"), source_date_epoch)?;
    clamp_mtimes(
        root,
        i64::try_from(source_date_epoch).unwrap_or(i64::MAX),
        &mut done,
    )?;
    let _ = writeln!(
        log,
        "kiln: normalised the tree: {} files removed, {} mtimes set to SOURCE_DATE_EPOCH ({source_date_epoch})",
        done.removed, done.clamped
    );
    Ok(done)
}

fn walk_failure(error: walk::Error, root: &Path) -> NormaliseError {
    let (path, source) = walk::failure(error, root);
    NormaliseError::Tree {
        action: "read",
        path,
        source,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), NormaliseError> {
    Ok(fs_err::write(path, bytes)?)
}

fn remove_file(path: &Path, done: &mut Normalised) -> Result<(), NormaliseError> {
    match fs_err::remove_file(path) {
        Ok(()) => {
            done.removed += 1;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes every non-directory below `dir`, keeping the directories.
/// Symlinks are removed, never followed.
fn empty_dir(dir: &Path, done: &mut Normalised) -> Result<(), NormaliseError> {
    let meta = match fs_err::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in walk::tree(dir).min_depth(1) {
        let entry = entry.map_err(|e| walk_failure(e, dir))?;
        if !entry.file_type().is_dir() {
            remove_file(entry.path(), done)?;
        }
    }
    Ok(())
}

fn remove_matching(
    dir: &Path,
    matches: impl Fn(&str) -> bool,
    done: &mut Normalised,
) -> Result<(), NormaliseError> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(&matches) {
            remove_file(&entry.path(), done)?;
        }
    }
    Ok(())
}

/// Python bytecode records how and when it was compiled and is not
/// byte-for-byte stable; Python rebuilds it on first use. A missing `dir`
/// has none.
fn remove_bytecode(dir: &Path, done: &mut Normalised) -> Result<(), NormaliseError> {
    if !dir.exists() {
        return Ok(());
    }
    let mut entries = walk::tree(dir).min_depth(1).into_iter();
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| walk_failure(e, dir))?;
        let path = entry.path();
        let kind = entry.file_type();
        if kind.is_dir() {
            if entry.file_name() == "__pycache__" {
                entries.skip_current_dir();
                empty_dir(path, done)?;
                fs_err::remove_dir(path)?;
            }
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|ext| ext == "pyc" || ext == "pyo")
        {
            remove_file(path, done)?;
        }
    }
    Ok(())
}

/// Sets the "last password change" field (days since 1970) of every
/// account that has one to the day of `source_date_epoch`: `useradd` and
/// `passwd` write today's date.
fn set_shadow_dates(path: &Path, source_date_epoch: u64) -> Result<(), NormaliseError> {
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let day = (source_date_epoch / 86_400).to_string();
    let fixed = shadow_with_day(&text, &day);
    if fixed != text {
        let mode = fs_err::metadata(path)?.mode();
        write(path, fixed.as_bytes())?;
        fs_err::set_permissions(
            path,
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )?;
    }
    Ok(())
}

fn shadow_with_day(text: &str, day: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let mut fields: Vec<&str> = body.split(':').collect();
        if fields.len() >= 3 && !fields[2].is_empty() {
            fields[2] = day;
        }
        out.push_str(&fields.join(":"));
        out.push_str(end);
    }
    out
}

/// Sets every mtime later than `epoch` to it (atime too), never following
/// a symlink: what the image holds is never newer than its inputs.
/// A directory's contents come before it.
fn clamp_mtimes(root: &Path, epoch: i64, done: &mut Normalised) -> Result<(), NormaliseError> {
    let entries = walk::tree(root)
        .follow_root_links(false)
        .contents_first(true);
    for entry in entries {
        let entry = entry.map_err(|e| walk_failure(e, root))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| walk_failure(e, root))?;
        if meta.mtime() > epoch || (meta.mtime() == epoch && meta.mtime_nsec() != 0) {
            let time = TimeVal::new(epoch, 0);
            nix::sys::stat::lutimes(path, &time, &time).map_err(|e| NormaliseError::Tree {
                action: "set the time of",
                path: path.to_path_buf(),
                source: std::io::Error::from(e),
            })?;
            done.clamped += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn shadow_dates_become_the_epoch_day() {
        let text =
            "root:*:20000:0:99999:7:::\nnobody:*::0:99999:7:::\ndebian:$6$x:20001:0:99999:7:::";
        assert_eq!(
            shadow_with_day(text, "19000"),
            "root:*:19000:0:99999:7:::\nnobody:*::0:99999:7:::\ndebian:$6$x:19000:0:99999:7:::"
        );
    }

    #[test]
    fn the_tree_loses_logs_keys_ids_and_bytecode_and_no_time_is_later_than_the_epoch() {
        let temp = tempfile::tempdir().expect("tempdir");
        let root = temp.path();
        let file = |relative: &str, text: &str| {
            let path = root.join(relative);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
        };
        file("var/log/apt/history.log", "x");
        file("var/log/dpkg.log", "x");
        file("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        file("var/lib/dbus/machine-id", "x");
        file("etc/ssh/ssh_host_ed25519_key", "secret");
        file("etc/ssh/sshd_config", "kept");
        file(
            "usr/lib/python3/dist-packages/m/__pycache__/a.cpython-311.pyc",
            "x",
        );
        file("usr/lib/python3/dist-packages/m/a.py", "kept");
        file("var/cache/ldconfig/aux-cache", "x");
        file("var/lib/dpkg/status-old", "x");
        file("var/lib/apt/lists/deb.example_dists_x_InRelease", "x");
        file("etc/shadow", "root:*:20000:0:99999:7:::\n");
        // A link pointing out of the tree is not followed.
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("victim"), "x").expect("write");
        symlink(outside.path().join("victim"), root.join("var/log/link")).expect("symlink");

        let epoch = 1_700_000_000;
        let apt = crate::distro::Family::volatile(&crate::distro::debian::Apt);
        let done = normalise(root, epoch, apt, &mut Vec::new()).expect("normalise");
        assert!(done.removed >= 9, "{done:?}");
        assert!(
            !root.join("var/lib/dpkg/status-old").exists(),
            "dpkg's copy"
        );
        assert!(root.join("var/lib/apt/lists").is_dir());
        assert!(
            !root
                .join("var/lib/apt/lists/deb.example_dists_x_InRelease")
                .exists()
        );
        assert!(root.join("var/log/apt").is_dir(), "directories stay");
        assert!(!root.join("var/log/apt/history.log").exists());
        assert!(!root.join("var/log/link").exists());
        assert!(outside.path().join("victim").exists(), "links not followed");
        assert_eq!(std::fs::read(root.join("etc/machine-id")).expect("id"), b"");
        assert!(!root.join("var/lib/dbus/machine-id").exists());
        assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(root.join("etc/ssh/sshd_config").exists());
        assert!(
            !root
                .join("usr/lib/python3/dist-packages/m/__pycache__")
                .exists()
        );
        assert!(root.join("usr/lib/python3/dist-packages/m/a.py").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/shadow")).expect("shadow"),
            format!("root:*:{}:0:99999:7:::\n", epoch / 86_400)
        );
        for entry in walk::tree(root) {
            let entry = entry.expect("walk");
            let meta = entry.metadata().expect("lstat");
            assert!(meta.mtime() <= epoch as i64, "{}", entry.path().display());
        }
    }
}

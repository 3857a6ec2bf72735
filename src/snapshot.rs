//! Snapshots of the build tree, for incremental builds that cannot go
//! stale.
//!
//! A build makes its tree (bootstrap, then `root.d` to `post-root.d`) and
//! then finishes the image (`/etc/fstab`, `block-device.d` to `cleanup.d`,
//! normalise, assemble, outputs). Between the two, with the package
//! staging taken out, kiln copies the tree into the cache under a [`Key`]:
//! a hash of *everything* that can make that tree what it is — kiln's own
//! executable, the lock (without the element hashes and the imagefile's
//! hash, which change with parts that come later), the imagefile's base,
//! packages, repositories and environment, every variable the hooks see,
//! and each element's files without the directories of the phases that
//! finish the image. The next build with the same key copies the tree back
//! instead of making it, and runs only what follows; a build whose key
//! differs makes the tree and snapshots it anew. Both paths run the same
//! steps on the same tree from the snapshot point on, so their outputs are
//! byte for byte the same (a test builds both ways and compares).
//!
//! The copy is `cp -a --reflink=auto`: a reflink where the filesystem has
//! them (btrfs, XFS), a full copy elsewhere (ext4: about 2 s for the
//! 800 MB tree of `manifests/debian-cloud.yaml`). A copy keeps each
//! directory's entries in the order the filesystem gives them, which on
//! ext4 (hash order) and tmpfs (creation order) is the order `mke2fs -d`
//! reads in a clean build. Snapshots are kept up to a size limit
//! ([`DEFAULT_LIMIT`], `KILN_SNAPSHOT_LIMIT`), the least recently used
//! removed first; `kiln cache` lists and prunes them.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use crate::host::file;
use crate::host::walk;

/// The size the snapshots of a cache are kept within unless
/// `KILN_SNAPSHOT_LIMIT` says otherwise: 8 GiB, about ten trees of a cloud
/// image.
pub const DEFAULT_LIMIT: u64 = 8 << 30;

/// The environment variable that sets the limit, in bytes (with an
/// optional `K`, `M`, `G` or `T` suffix, powers of 1024); `0` turns
/// snapshots off (the test suite's default: each test builds what it
/// tests).
pub const LIMIT_VARIABLE: &str = "KILN_SNAPSHOT_LIMIT";

/// Why a snapshot could not be taken, restored, listed or pruned.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed; fs-err's message names it and the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `cp` failed or could not run.
    #[error("cannot copy {} to {}: {detail}", from.display(), to.display())]
    Copy {
        /// What was copied.
        from: PathBuf,
        /// Where to.
        to: PathBuf,
        /// cp's own words.
        detail: String,
    },
    /// An element could not be hashed.
    #[error(transparent)]
    Element(#[from] crate::plan::TreeHashError),
    /// `KILN_SNAPSHOT_LIMIT` is not a size.
    #[error("{LIMIT_VARIABLE}={value} is not a size (bytes, or a number with K, M, G or T)")]
    Limit {
        /// The value given.
        value: String,
    },
}

/// What a snapshot is keyed by: the SHA-256 of its inputs, in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key as a directory name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything the tree at the snapshot point depends on.
pub struct KeyInputs<'a> {
    /// The SHA-256 of kiln's own executable: another kiln may make
    /// another tree, even under the same version number.
    pub kiln: &'a str,
    /// The lock.
    pub lock: &'a crate::lock::Lock,
    /// The imagefile.
    pub manifest: &'a crate::manifest::Manifest,
    /// The planned elements, in the plan's order: each name and
    /// directory.
    pub elements: &'a [(&'a str, &'a Path)],
    /// What the hooks see ([`crate::phases::hook_environment`]).
    pub environment: &'a [(String, String)],
}

/// The key of the tree `inputs` make. Each part is length-prefixed, so
/// two different sets of inputs never hash the same stream.
pub fn key(inputs: &KeyInputs<'_>) -> Result<Key, SnapshotError> {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(b"kiln-snapshot-v1");
    part(inputs.kiln.as_bytes());
    // The element hashes and the imagefile's hash change with what the
    // finishing phases and the outputs do: they are keyed below, by part.
    let mut lock = inputs.lock.clone();
    lock.elements.clear();
    lock.manifest.clear();
    part(crate::lock::to_text(&lock).as_bytes());
    let manifest = inputs.manifest;
    part(json(&manifest.base).as_bytes());
    part(json(&manifest.packages).as_bytes());
    part(json(&manifest.repositories).as_bytes());
    part(json(&manifest.environment).as_bytes());
    for (name, value) in inputs.environment {
        part(name.as_bytes());
        part(value.as_bytes());
    }
    let left_out: Vec<&str> = crate::plan::PhaseName::ALL
        .iter()
        .filter(|phase| phase.finishes_image())
        .map(|phase| phase.dir_name())
        .collect();
    for (name, dir) in inputs.elements {
        part(name.as_bytes());
        part(crate::plan::tree_hash_without(dir, &left_out)?.as_bytes());
    }
    Ok(Key(hex::encode(hasher.finalize())))
}

/// serde_json text of a part of the imagefile: its values, not where in
/// the file they are.
fn json<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain data to a string cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// The SHA-256 of the running kiln executable, in hex.
pub fn kiln_digest() -> Result<String, SnapshotError> {
    let exe = fs_err::File::open("/proc/self/exe")?;
    Ok(crate::cache::Digest::of_reader(exe)?.sha256)
}

/// One kept snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its key.
    pub key: String,
    /// The image it was taken for.
    pub image: String,
    /// Bytes it takes on disk.
    pub bytes: u64,
    /// When a build last took it or made it.
    pub used: SystemTime,
}

/// The snapshots of one cache: `<cache>/snapshots/<key>/` holding `tree/`
/// and `image` (the image's name); the directory's mtime is when it was
/// last used.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    limit: u64,
}

impl Snapshots {
    /// The snapshots kept in the cache directory `cache`, within `limit`
    /// bytes ([`limit_from_environment`]).
    pub fn in_cache(cache: &Path, limit: u64) -> Snapshots {
        Snapshots {
            dir: cache.join("snapshots"),
            limit,
        }
    }

    /// The size they are kept within.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Where they are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tree of the snapshot under `key`, when there is a whole one
    /// (a snapshot is renamed into place only once it is complete).
    pub fn find(&self, key: &Key) -> Option<PathBuf> {
        let tree = self.dir.join(key.as_str()).join("tree");
        tree.is_dir().then_some(tree)
    }

    /// Copies the snapshot under `key` to `root` (which must not exist),
    /// and marks it used.
    pub fn restore(&self, key: &Key, root: &Path) -> Result<(), SnapshotError> {
        let entry = self.dir.join(key.as_str());
        copy_tree(&entry.join("tree"), root)?;
        touch(&entry)
    }

    /// Copies `root` into the snapshots under `key` for `image`, then
    /// removes the least recently used snapshots beyond the limit (the new
    /// one included, when it alone is beyond it). Returns whether the
    /// snapshot was kept.
    pub fn save(
        &self,
        key: &Key,
        image: &str,
        root: &Path,
        log: &mut dyn Write,
    ) -> Result<bool, SnapshotError> {
        let limit = self.limit;
        fs_err::create_dir_all(&self.dir)?;
        self.remove_abandoned()?;
        let entry = self.dir.join(key.as_str());
        let partial = self
            .dir
            .join(format!(".partial-{}-{}", key.as_str(), std::process::id()));
        if partial.exists() {
            fs_err::remove_dir_all(&partial)?;
        }
        fs_err::create_dir(&partial)?;
        let made = copy_tree(root, &partial.join("tree"))
            .and_then(|()| Ok(fs_err::write(partial.join("image"), image)?));
        if let Err(error) = made {
            let _ = fs_err::remove_dir_all(&partial);
            return Err(error);
        }
        if entry.exists() {
            // Another build of the same inputs took it meanwhile.
            fs_err::remove_dir_all(&partial)?;
        } else if let Err(error) = fs_err::rename(&partial, &entry) {
            // Or it did between the check and the rename (two builds of
            // the same inputs at once): the rename onto its whole snapshot
            // fails, and this copy is not needed. Either way this copy
            // must not be left behind.
            let _ = fs_err::remove_dir_all(&partial);
            if !entry.is_dir() {
                return Err(error.into());
            }
        }
        touch(&entry)?;
        let removed = self.prune(limit)?;
        for snapshot in &removed {
            let _ = writeln!(
                log,
                "kiln: removed snapshot {} ({}, {}) to stay within {}",
                snapshot.key,
                snapshot.image,
                crate::terminal::human_bytes(snapshot.bytes),
                crate::terminal::human_bytes(limit)
            );
        }
        Ok(!removed.iter().any(|s| s.key == key.as_str()))
    }

    /// Removes the partial snapshots of builds that are gone (killed while
    /// copying): `.partial-<key>-<pid>` whose process no longer runs.
    fn remove_abandoned(&self) -> Result<(), SnapshotError> {
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".partial-") else {
                continue;
            };
            let pid = rest.rsplit('-').next().unwrap_or_default();
            if !Path::new("/proc").join(pid).exists() {
                fs_err::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }

    /// Every kept snapshot, the most recently used first.
    pub fn list(&self) -> Result<Vec<Snapshot>, SnapshotError> {
        let mut snapshots = Vec::new();
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(snapshots),
            Err(error) => return Err(error.into()),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().join("tree").is_dir() {
                continue;
            }
            let image = fs_err::read_to_string(entry.path().join("image")).unwrap_or_default();
            snapshots.push(Snapshot {
                key: name,
                image,
                bytes: disk_usage(&entry.path())?,
                used: fs_err::metadata(entry.path())?.modified()?,
            });
        }
        snapshots.sort_by(|a, b| b.used.cmp(&a.used).then_with(|| a.key.cmp(&b.key)));
        Ok(snapshots)
    }

    /// Removes the least recently used snapshots until the rest take at
    /// most `limit` bytes; returns those removed.
    pub fn prune(&self, limit: u64) -> Result<Vec<Snapshot>, SnapshotError> {
        let mut total = 0u64;
        let mut removed = Vec::new();
        for snapshot in self.list()? {
            total += snapshot.bytes;
            if total > limit {
                fs_err::remove_dir_all(self.dir.join(&snapshot.key))?;
                removed.push(snapshot);
            }
        }
        Ok(removed)
    }
}

/// The snapshot limit: `KILN_SNAPSHOT_LIMIT` when set, else
/// [`DEFAULT_LIMIT`].
pub fn limit_from_environment() -> Result<u64, SnapshotError> {
    match std::env::var(LIMIT_VARIABLE) {
        Ok(value) => parse_size(&value).ok_or(SnapshotError::Limit { value }),
        Err(_) => Ok(DEFAULT_LIMIT),
    }
}

/// `123`, `512M`, `8G`, `1T` (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 10),
        'M' | 'm' => (&text[..text.len() - 1], 20),
        'G' | 'g' => (&text[..text.len() - 1], 30),
        'T' | 't' => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// [`file::copy_tree`], its failure as a [`SnapshotError`].
fn copy_tree(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    file::copy_tree(from, to).map_err(|detail| SnapshotError::Copy {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        detail,
    })
}

/// Marks a snapshot used now.
fn touch(entry: &Path) -> Result<(), SnapshotError> {
    let dir = fs_err::File::open(entry)?;
    dir.file().set_modified(SystemTime::now())?;
    Ok(())
}

/// Bytes the files under `dir` take on disk (hard links once).
fn disk_usage(dir: &Path) -> Result<u64, SnapshotError> {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    for entry in walk::tree(dir) {
        let entry = entry.map_err(|e| walk::failure(e, dir).1)?;
        let meta = entry.metadata().map_err(|e| walk::failure(e, dir).1)?;
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        bytes += meta.blocks() * 512;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;

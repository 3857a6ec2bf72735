//! The content-addressed cache that `kiln fetch` fills and `kiln build` reads.
//!
//! Every downloaded input (a `.deb`, an index, a base image) is stored once,
//! under its SHA-256, in `blobs/sha256/<first two hex digits>/<hex>`. A blob
//! is written to a temporary file in `tmp/` (the same filesystem) and renamed
//! into place only after its size and hash match what the lock expects, so a
//! crash never leaves a half-written blob under its final name. Every read
//! hashes the blob again, because a cache that outlives disks, bugs and users
//! with `rm` is only trusted as far as it is checked; a blob that no longer
//! matches is removed and reported, so the caller fetches it again. Two kiln
//! processes may share the cache: each blob has a lock file in `locks/`, held
//! while one process fetches it so the other waits and then finds it present.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tempfile::TempPath;

/// Length of a SHA-256 in hexadecimal digits.
const SHA256_HEX_CHARS: usize = 64;

/// Buffer for hashing files and for batching writes into a blob.
const HASH_BUFFER_BYTES: usize = 1024 * 1024;

/// Mode of every blob: readable by all, because a build run as another user
/// (or inside the image's chroot) reads the cache it did not write.
const BLOB_MODE: u32 = 0o644;

/// Mode of every directory the cache creates.
const DIR_MODE: u32 = 0o755;

/// Mode of the lock files in `locks/`.
const LOCK_MODE: u32 = 0o644;

/// How old an unlocked temporary file must be before [`Cache::open`] deletes
/// it. A live writer holds a lock on its temporary file, so the age only has
/// to cover the instant between creating the file and locking it.
const STALE_TEMP_AGE_SECS: u64 = 600;

/// The size and SHA-256 that identify one blob.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "UncheckedDigest")]
pub struct Digest {
    /// SHA-256 of the content, as 64 lowercase hexadecimal digits.
    pub sha256: String,
    /// Size of the content in bytes.
    pub size: u64,
}

/// A digest as read from a file, before its hash is checked.
#[derive(Deserialize)]
struct UncheckedDigest {
    sha256: String,
    size: u64,
}

impl TryFrom<UncheckedDigest> for Digest {
    type Error = DigestError;

    fn try_from(unchecked: UncheckedDigest) -> Result<Self, Self::Error> {
        Digest::new(&unchecked.sha256, unchecked.size)
    }
}

/// Why a string is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a SHA-256: expected 64 lowercase hexadecimal digits")]
pub struct DigestError {
    /// The rejected text.
    pub value: String,
}

impl Digest {
    /// A digest from a hash in lowercase hexadecimal and a size in bytes.
    ///
    /// Uppercase is refused rather than folded so that a digest has exactly
    /// one spelling in locks and cache paths.
    pub fn new(sha256: &str, size: u64) -> Result<Digest, DigestError> {
        let digest = Digest {
            sha256: sha256.to_owned(),
            size,
        };
        digest.check()?;
        Ok(digest)
    }

    /// Checks that the hash is 64 lowercase hexadecimal digits. The fields
    /// are public, so a digest built by hand from a mirror's index has not
    /// necessarily been through [`Digest::new`]; the cache checks again
    /// before a hash becomes part of a path.
    pub fn check(&self) -> Result<(), DigestError> {
        let valid = self.sha256.len() == SHA256_HEX_CHARS
            && self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(())
        } else {
            Err(DigestError {
                value: self.sha256.clone(),
            })
        }
    }

    /// The digest of some bytes.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest {
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }

    /// The digest of everything `reader` yields, read in 1 MiB pieces.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Digest> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; HASH_BUFFER_BYTES];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        Ok(Digest {
            sha256: hex::encode(hasher.finalize()),
            size,
        })
    }

    /// The digest of a file's content.
    pub fn of_file(path: &Path) -> io::Result<Digest> {
        Digest::of_reader(File::open(path)?)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{} ({} bytes)", self.sha256, self.size)
    }
}

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Neither the environment nor the user names a cache directory.
    #[error(
        "no cache directory: not running as root and neither XDG_CACHE_HOME nor HOME is set; \
         pass --cache-dir"
    )]
    NoDefaultDir,
    /// A digest that is not a SHA-256 was used as a cache key.
    #[error("cannot use {0} as a cache key")]
    InvalidDigest(#[from] DigestError),
    /// A directory of the cache could not be created.
    #[error("cannot create cache directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A blob or temporary file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A blob or temporary file could not be written or moved into place.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A corrupt blob could not be removed.
    #[error("cannot remove corrupt blob {path}: {source}")]
    Remove {
        /// The blob.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A blob's lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// Why a [`BlobWriter`] did not become a blob.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The bytes written are not the bytes expected; nothing was kept.
    #[error("expected {expected}, but the data written is {actual}")]
    Mismatch {
        /// What the caller expected.
        expected: Digest,
        /// What was written.
        actual: Digest,
    },
    /// The cache itself failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What [`Cache::get`] found for a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Lookup {
    /// A blob with exactly the expected size and hash.
    Present(PathBuf),
    /// No blob.
    Missing,
    /// A blob was there but its content did not match; it has been removed,
    /// so the caller should fetch it again (and say so).
    Corrupt {
        /// Where the blob was.
        path: PathBuf,
        /// Its size in bytes.
        actual_size: u64,
        /// Its SHA-256, when the size already matched and it was hashed.
        actual_sha256: Option<String>,
    },
}

impl Lookup {
    /// The path of a verified blob, if there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Lookup::Present(path) => Some(path),
            Lookup::Missing | Lookup::Corrupt { .. } => None,
        }
    }
}

/// A content-addressed blob store in one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache directory kiln uses when none is given: `/var/cache/kiln`
    /// for root, else `$XDG_CACHE_HOME/kiln`, else `$HOME/.cache/kiln`.
    pub fn default_dir() -> Result<PathBuf, CacheError> {
        default_dir_from(
            effective_uid_is_root(),
            std::env::var_os("XDG_CACHE_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
        .ok_or(CacheError::NoDefaultDir)
    }

    /// Opens (creating if needed) the cache in `dir`, and deletes temporary
    /// files that crashed writers left behind.
    pub fn open(dir: &Path) -> Result<Cache, CacheError> {
        let cache = Cache {
            dir: dir.to_path_buf(),
        };
        for sub in [cache.blobs_dir(), cache.tmp_dir(), cache.locks_dir()] {
            create_dir(&sub)?;
        }
        cache.remove_stale_temp_files();
        Ok(cache)
    }

    /// The directory this cache lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob for `digest` is stored, whether or not it is present.
    ///
    /// A digest that fails [`Digest::check`] gets a path in `invalid/`,
    /// where nothing is ever stored, so that no hash can name a path
    /// outside the cache.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let mut path = self.blobs_dir();
        if digest.check().is_ok() {
            path.push(&digest.sha256[..2]);
            path.push(&digest.sha256);
        } else {
            path.push("invalid");
            path.push(hex::encode(digest.sha256.as_bytes()));
        }
        path
    }

    /// Looks a blob up, hashing it again to be sure it is what it claims.
    ///
    /// Reads take no lock: a blob under its final name is never rewritten in
    /// place, only replaced whole by a rename.
    pub fn get(&self, digest: &Digest) -> Result<Lookup, CacheError> {
        digest.check()?;
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Missing),
            Err(source) => return Err(CacheError::Read { path, source }),
        };
        let read_error = |source| CacheError::Read {
            path: path.clone(),
            source,
        };
        let metadata = file.metadata().map_err(read_error)?;
        let actual_sha256 = if metadata.len() == digest.size {
            let actual = Digest::of_reader(&file).map_err(read_error)?;
            if actual == *digest {
                return Ok(Lookup::Present(path));
            }
            Some(actual.sha256)
        } else {
            None
        };
        self.remove_corrupt(&path, &metadata)?;
        Ok(Lookup::Corrupt {
            path,
            actual_size: metadata.len(),
            actual_sha256,
        })
    }

    /// Stores `bytes`, which must have `digest`, and returns the blob's path.
    pub fn insert_bytes(&self, bytes: &[u8], digest: &Digest) -> Result<PathBuf, CommitError> {
        let mut writer = self.writer()?;
        writer
            .write_all(bytes)
            .map_err(|source| CacheError::Write {
                path: writer.temp_path.to_path_buf(),
                source,
            })?;
        writer.commit(digest)
    }

    /// A temporary file in the cache that hashes what is written to it;
    /// [`BlobWriter::commit`] turns it into a blob.
    pub fn writer(&self) -> Result<BlobWriter, CacheError> {
        let tmp = self.tmp_dir();
        let (file, temp_path) = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp)
            .map_err(|source| CacheError::Write {
                path: tmp.clone(),
                source,
            })?
            .into_parts();
        // The lock marks the file as in use, so that another process's
        // `open` does not sweep it away as a crashed writer's leftover.
        match file.try_lock() {
            Ok(()) | Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(source)) => {
                return Err(CacheError::Lock {
                    path: temp_path.to_path_buf(),
                    source,
                });
            }
        }
        Ok(BlobWriter {
            file: BufWriter::with_capacity(HASH_BUFFER_BYTES, file),
            temp_path,
            hasher: Sha256::new(),
            size: 0,
            cache: self.clone(),
        })
    }

    /// Takes the exclusive lock for one blob, waiting while another process
    /// (or another [`Cache`] in this one) holds it.
    pub fn lock_blob(&self, digest: &Digest) -> Result<BlobLock, CacheError> {
        let (file, path) = self.open_lock_file(digest)?;
        file.lock().map_err(|source| CacheError::Lock {
            path: path.clone(),
            source,
        })?;
        Ok(BlobLock { _file: file, path })
    }

    /// Takes the lock for one blob if nobody holds it; `None` if somebody
    /// does, so the caller can say it is waiting before calling
    /// [`Cache::lock_blob`].
    pub fn try_lock_blob(&self, digest: &Digest) -> Result<Option<BlobLock>, CacheError> {
        let (file, path) = self.open_lock_file(digest)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(BlobLock { _file: file, path })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(source)) => Err(CacheError::Lock { path, source }),
        }
    }

    fn open_lock_file(&self, digest: &Digest) -> Result<(File, PathBuf), CacheError> {
        digest.check()?;
        // Lock files are never deleted: unlinking a lock file another
        // process is waiting on would let a third process lock a new file
        // of the same name, and both would think they hold the lock.
        let path = self.locks_dir().join(format!("{}.lock", digest.sha256));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LOCK_MODE)
            .open(&path)
            .map_err(|source| CacheError::Lock {
                path: path.clone(),
                source,
            })?;
        Ok((file, path))
    }

    fn remove_corrupt(&self, path: &Path, opened: &fs::Metadata) -> Result<(), CacheError> {
        // Another process may have replaced the corrupt blob with a good one
        // since we opened it; only remove the file we actually checked.
        match fs::symlink_metadata(path) {
            Ok(now) if now.dev() == opened.dev() && now.ino() == opened.ino() => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(CacheError::Remove {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::Remove {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Deletes temporary files no live writer holds. Best effort: a file
    /// that cannot be inspected or removed is only wasted space, and must
    /// not stop a build.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        let stale_age = Duration::from_secs(STALE_TEMP_AGE_SECS);
        for entry in entries.flatten() {
            let path = entry.path();
            let old_enough = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .is_some_and(|age| age >= stale_age);
            if !old_enough {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                let _ = fs::remove_file(&path);
            }
        }
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn locks_dir(&self) -> PathBuf {
        self.dir.join("locks")
    }
}

/// A blob being written: a temporary file in the cache plus the running
/// hash of what went into it. Dropping it without committing deletes the
/// temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    file: BufWriter<File>,
    temp_path: TempPath,
    hasher: Sha256,
    size: u64,
    cache: Cache,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> Digest {
        Digest {
            sha256: hex::encode(self.hasher.clone().finalize()),
            size: self.size,
        }
    }

    /// The temporary file, for error messages.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Checks what was written against `expected` and, if it matches, moves
    /// it into place as the blob and returns the blob's path. On a mismatch
    /// the temporary file is deleted and nothing is stored.
    pub fn commit(self, expected: &Digest) -> Result<PathBuf, CommitError> {
        let BlobWriter {
            file,
            temp_path,
            hasher,
            size,
            cache,
        } = self;
        expected.check().map_err(CacheError::from)?;
        let actual = Digest {
            sha256: hex::encode(hasher.finalize()),
            size,
        };
        if actual != *expected {
            // Dropping `temp_path` deletes the temporary file.
            return Err(CommitError::Mismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let write_error = |source| CacheError::Write {
            path: temp_path.to_path_buf(),
            source,
        };
        let file = file.into_inner().map_err(|e| write_error(e.into_error()))?;
        file.set_permissions(Permissions::from_mode(BLOB_MODE))
            .map_err(write_error)?;
        // The data must be on disk before the rename makes it a blob, or a
        // power cut could leave a blob of the right name with wrong bytes.
        file.sync_all().map_err(write_error)?;
        drop(file);

        let final_path = cache.blob_path(expected);
        let parent = final_path.parent().unwrap_or(cache.dir());
        create_dir(parent)?;
        temp_path
            .persist(&final_path)
            .map_err(|e| CacheError::Write {
                path: final_path.clone(),
                source: e.error,
            })?;
        // Make the rename itself durable; a failure here loses nothing but
        // durability, which the next `get` re-checks anyway.
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(final_path)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The exclusive lock on one blob; released when dropped (or when the
/// process dies, since the kernel drops the lock with the file).
#[derive(Debug)]
pub struct BlobLock {
    _file: File,
    path: PathBuf,
}

impl BlobLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_dir(path: &Path) -> Result<(), CacheError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|source| CacheError::CreateDir {
            path: path.to_path_buf(),
            source,
        })
}

/// The default cache directory for the given identity and environment.
/// Relative or empty XDG values are ignored, as the XDG spec asks.
fn default_dir_from(
    is_root: bool,
    xdg_cache_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Option<PathBuf> {
    if is_root {
        return Some(PathBuf::from("/var/cache/kiln"));
    }
    if let Some(xdg) = absolute(xdg_cache_home) {
        return Some(xdg.join("kiln"));
    }
    absolute(home).map(|home| home.join(".cache").join("kiln"))
}

fn absolute(value: Option<&OsStr>) -> Option<&Path> {
    value.map(Path::new).filter(|path| path.is_absolute())
}

/// Whether this process runs with effective uid 0, read from
/// `/proc/self/status` since kiln has no libc binding. Without `/proc` the
/// answer is no: the per-user cache is the safe choice.
fn effective_uid_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
        == Some(0)
}

/// The effective uid from a `/proc/<pid>/status` text, whose `Uid:` line
/// lists the real, effective, saved and filesystem uids.
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

/// Every file below `dir` (none when `dir` is missing), for tests that
/// check what the cache left on disk.
#[cfg(test)]
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    crate::host::walk::tree(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter(|entry| !entry.file_type().is_dir())
        .map(crate::host::walk::DirEntry::into_path)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn digest_accepts_only_lowercase_hex_of_the_right_length() {
        let good = "a".repeat(64);
        assert!(Digest::new(&good, 1).is_ok());
        assert!(Digest::new(&"A".repeat(64), 1).is_err());
        assert!(Digest::new(&"a".repeat(63), 1).is_err());
        assert!(Digest::new(&"g".repeat(64), 1).is_err());
        assert!(Digest::new("", 1).is_err());
    }

    #[test]
    fn digest_of_bytes_reader_and_file_agree_with_known_value() {
        // sha256("abc") from FIPS 180-2.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let expected = Digest::new(abc, 3).unwrap();
        assert_eq!(Digest::of_bytes(b"abc"), expected);
        assert_eq!(Digest::of_reader(&b"abc"[..]).unwrap(), expected);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(Digest::of_file(&path).unwrap(), expected);
    }

    #[test]
    fn digest_deserialisation_validates_the_hash() {
        let ok: Digest =
            serde_json::from_str(&format!(r#"{{"sha256":"{}","size":5}}"#, "0".repeat(64)))
                .unwrap();
        assert_eq!(ok.size, 5);
        let bad = serde_json::from_str::<Digest>(r#"{"sha256":"xyz","size":5}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn hand_built_digests_that_escape_the_cache_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let evil = Digest {
            sha256: "../../../victim".to_owned(),
            size: 1,
        };
        assert!(
            cache
                .blob_path(&evil)
                .starts_with(dir.path().join("blobs/sha256/invalid"))
        );
        assert!(matches!(
            cache.get(&evil),
            Err(CacheError::InvalidDigest(_))
        ));
        assert!(matches!(
            cache.lock_blob(&evil),
            Err(CacheError::InvalidDigest(_))
        ));
        assert!(matches!(
            cache.insert_bytes(b"x", &evil),
            Err(CommitError::Cache(CacheError::InvalidDigest(_)))
        ));
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn open_creates_the_layout_with_directory_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        Cache::open(&root).unwrap();
        for sub in ["blobs/sha256", "tmp", "locks"] {
            let meta = fs::metadata(root.join(sub)).unwrap();
            assert!(meta.is_dir(), "{sub}");
            // The umask can only remove bits.
            assert_eq!(meta.permissions().mode() & 0o7000, 0, "{sub}");
            assert_eq!(meta.permissions().mode() & !0o755 & 0o777, 0, "{sub}");
        }
    }

    #[test]
    fn round_trip_stores_under_the_hash_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Digest::of_bytes(b"hello");
        assert_eq!(cache.get(&digest).unwrap(), Lookup::Missing);

        let path = cache.insert_bytes(b"hello", &digest).unwrap();
        let expected_path = dir
            .path()
            .join("blobs/sha256")
            .join(&digest.sha256[..2])
            .join(&digest.sha256);
        assert_eq!(path, expected_path);
        assert_eq!(cache.blob_path(&digest), expected_path);
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(cache.get(&digest).unwrap(), Lookup::Present(path));
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn streaming_writer_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..3 * HASH_BUFFER_BYTES + 7).map(|i| i as u8).collect();
        let digest = Digest::of_bytes(&data);
        let mut writer = cache.writer().unwrap();
        for chunk in data.chunks(10_000) {
            writer.write_all(chunk).unwrap();
        }
        assert_eq!(writer.written(), data.len() as u64);
        let path = writer.commit(&digest).unwrap();
        assert_eq!(fs::read(path).unwrap(), data);
    }

    #[test]
    fn corrupt_blob_with_same_size_is_detected_removed_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Digest::of_bytes(b"hello");
        let path = cache.insert_bytes(b"hello", &digest).unwrap();
        fs::write(&path, b"jello").unwrap();

        let lookup = cache.get(&digest).unwrap();
        assert_eq!(
            lookup,
            Lookup::Corrupt {
                path: path.clone(),
                actual_size: 5,
                actual_sha256: Some(Digest::of_bytes(b"jello").sha256),
            }
        );
        assert_eq!(lookup.path(), None);
        assert!(!path.exists());
        assert_eq!(cache.get(&digest).unwrap(), Lookup::Missing);
    }

    #[test]
    fn truncated_blob_is_detected_without_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Digest::of_bytes(b"hello");
        let path = cache.insert_bytes(b"hello", &digest).unwrap();
        fs::write(&path, b"hel").unwrap();
        assert_eq!(
            cache.get(&digest).unwrap(),
            Lookup::Corrupt {
                path: path.clone(),
                actual_size: 3,
                actual_sha256: None,
            }
        );
        assert!(!path.exists());
    }

    #[test]
    fn wrong_digest_is_refused_on_commit_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let claimed = Digest::of_bytes(b"expected");
        let err = cache.insert_bytes(b"something else", &claimed).unwrap_err();
        match err {
            CommitError::Mismatch { expected, actual } => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, Digest::of_bytes(b"something else"));
            }
            other => panic!("unexpected error {other}"),
        }
        assert_eq!(files_under(dir.path()), Vec::<PathBuf>::new());
        assert_eq!(cache.get(&claimed).unwrap(), Lookup::Missing);
    }

    #[test]
    fn dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut writer = cache.writer().unwrap();
        writer.write_all(b"half a blob").unwrap();
        drop(writer);
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn open_sweeps_old_unlocked_temp_files_but_not_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut live = cache.writer().unwrap();
        live.write_all(b"in progress").unwrap();
        live.flush().unwrap();
        let crashed = dir.path().join("tmp/blob-crashed");
        fs::write(&crashed, b"left by kill -9").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(2 * STALE_TEMP_AGE_SECS);
        for path in files_under(&dir.path().join("tmp")) {
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }

        Cache::open(dir.path()).unwrap();
        assert!(!crashed.exists());
        assert_eq!(files_under(&dir.path().join("tmp")).len(), 1);
        let digest = Digest::of_bytes(b"in progress");
        live.commit(&digest).unwrap();
    }

    #[test]
    fn concurrent_inserts_of_the_same_blob_end_with_one_valid_blob() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let digest = Digest::of_bytes(&data);
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (root, data, digest) = (dir.path().to_path_buf(), data.clone(), digest.clone());
                let (barrier, writes) = (barrier.clone(), writes.clone());
                std::thread::spawn(move || {
                    let cache = Cache::open(&root).unwrap();
                    barrier.wait();
                    let _lock = cache.lock_blob(&digest).unwrap();
                    if let Lookup::Present(path) = cache.get(&digest).unwrap() {
                        return path;
                    }
                    writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut writer = cache.writer().unwrap();
                    writer.write_all(&data).unwrap();
                    writer.commit(&digest).unwrap()
                })
            })
            .collect();
        let paths: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(paths.iter().all(|p| *p == paths[0]));
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(Digest::of_file(&paths[0]).unwrap(), digest);
        assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn concurrent_unlocked_inserts_still_leave_a_valid_blob() {
        // insert_bytes takes no lock; the rename makes racing writers safe.
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 1_000_000];
        let digest = Digest::of_bytes(&data);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (root, data, digest) = (dir.path().to_path_buf(), data.clone(), digest.clone());
                std::thread::spawn(move || {
                    let cache = Cache::open(&root).unwrap();
                    cache.insert_bytes(&data, &digest).unwrap()
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let cache = Cache::open(dir.path()).unwrap();
        assert!(matches!(cache.get(&digest).unwrap(), Lookup::Present(_)));
        assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
    }

    #[test]
    fn try_lock_blob_reports_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = Cache::open(dir.path()).unwrap();
        let second = Cache::open(dir.path()).unwrap();
        let digest = Digest::of_bytes(b"x");
        let held = first.lock_blob(&digest).unwrap();
        assert!(second.try_lock_blob(&digest).unwrap().is_none());
        drop(held);
        assert!(second.try_lock_blob(&digest).unwrap().is_some());
    }

    #[test]
    fn default_dir_for_root_users_and_fallbacks() {
        fn os(s: &str) -> Option<&OsStr> {
            Some(OsStr::new(s))
        }
        assert_eq!(
            default_dir_from(true, os("/x"), os("/home/u")),
            Some(PathBuf::from("/var/cache/kiln"))
        );
        assert_eq!(
            default_dir_from(false, os("/xdg"), os("/home/u")),
            Some(PathBuf::from("/xdg/kiln"))
        );
        assert_eq!(
            default_dir_from(false, None, os("/home/u")),
            Some(PathBuf::from("/home/u/.cache/kiln"))
        );
        // The XDG spec says to ignore relative paths.
        assert_eq!(
            default_dir_from(false, os("relative"), os("/home/u")),
            Some(PathBuf::from("/home/u/.cache/kiln"))
        );
        assert_eq!(
            default_dir_from(false, os(""), os("/home/u")),
            Some(PathBuf::from("/home/u/.cache/kiln"))
        );
        assert_eq!(default_dir_from(false, None, None), None);
        assert_eq!(default_dir_from(false, None, os("")), None);
    }

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status = "Name:\tkiln\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t5\t6\t7\t8\n"), Some(6));
        assert_eq!(effective_uid("Name:\tx\n"), None);
        assert_eq!(effective_uid("Uid:\t5\n"), None);
    }
}

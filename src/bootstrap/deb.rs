//! Reading a `.deb` without any host tool: its `control` file, and its
//! `data.tar` unpacked into an image's root tree.
//!
//! A `.deb` is an `ar` archive of `debian-binary` (`2.0\n`), then
//! `control.tar[.gz|.xz|.zst]`, then `data.tar[.gz|.xz|.zst]` (deb(5)).
//! Bootstrap unpacks the essential set this way because the host may not run
//! Debian at all, and because a tree built from untrusted archive bytes must
//! never be written outside its root: every path is resolved component by
//! component inside the root, and no symlink found in the tree is followed,
//! except the merged-/usr top-level links (`bin -> usr/bin`, …) that
//! [`super::merged_usr::create_merged_usr`] makes. Archive entries are
//! applied the way dpkg and GNU tar apply them: numeric owners, full modes
//! (setuid, setgid, sticky), symlinks stored verbatim, hard links relative
//! to the root, and mtimes (directories last, since writing their children
//! changes them). Device nodes and FIFOs are refused: Debian Policy §10.6
//! forbids them in a package's file tree (devices come from udev or
//! `MAKEDEV` at run time, never from data.tar), and none of the 462 packages
//! in kiln's test cache has one. So is an entry declaring more than
//! [`MAX_ENTRY_BYTES`], or more bytes than the archive holds.
//!
//! The tree is assumed to have no other writer while it is unpacked (it is
//! kiln's own build directory); the checks are made with `lstat` before
//! each write and every create refuses to replace or follow what it finds.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::merged_usr::MERGED_USR_DIRS;

/// The only `debian-binary` content this reader accepts.
const DEB_FORMAT: &[u8] = b"2.0\n";

/// The largest regular file an archive entry may declare. The essential
/// set's files are far smaller (the largest of the 462 packages in kiln's
/// test cache, the images' whole bootstrap sets, is cpp-12's `cc1` at
/// 32 MiB); an entry declaring more is a broken or hostile archive, and
/// refusing it before writing keeps a decompression bomb from filling the
/// build disk.
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// Why a `.deb` could not be read or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The file (or a member inside it) could not be read.
    #[error("cannot read {deb}: {source}")]
    Read {
        /// The `.deb`.
        deb: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The file is not a `.deb` this reader understands.
    #[error("{deb} is not a Debian binary package: {reason}")]
    Format {
        /// The `.deb`.
        deb: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry of `data.tar` names a path that is absolute, climbs out of
    /// the root, or passes through a symlink in the tree.
    #[error("{deb}: refusing archive entry `{entry}`: {reason}")]
    UnsafePath {
        /// The `.deb`.
        deb: PathBuf,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An entry could not be written into the tree.
    #[error("{deb}: cannot write {path}: {source}")]
    Write {
        /// The `.deb`.
        deb: PathBuf,
        /// The path in the tree.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// What [`unpack_data`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Every path the archive holds, as dpkg lists it (`/usr/bin/foo`,
    /// without the leading `.`, in archive order; `/.` for the root).
    pub paths: Vec<String>,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub directories: u64,
    /// Symbolic links written.
    pub symlinks: u64,
    /// Hard links written.
    pub hardlinks: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// The text of the package's `control` file.
pub fn read_control(deb: &Path) -> Result<String, DebError> {
    read_control_file(deb, "control")?
        .ok_or_else(|| format_error(deb, "control.tar has no `control` file"))
}

/// The text of the file `name` of the package's `control.tar` (`control`,
/// `md5sums`, a maintainer script), if it has one.
pub fn read_control_file(deb: &Path, name: &str) -> Result<Option<String>, DebError> {
    let wanted = name.as_bytes();
    let mut package = Package::open(deb)?;
    let member = package.control.clone();
    let mut tar = package.tar(deb, member)?;
    let entries = tar.entries().map_err(|e| read_error(deb, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(deb, e))?;
        let path = entry.path_bytes();
        if path.strip_prefix(b"./").unwrap_or(&path) == wanted {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| read_error(deb, e))?;
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// Unpacks the package's `data.tar` into `root`, which must exist.
///
/// Top-level merged-/usr links (`bin -> usr/bin` and the like, exactly as
/// [`super::merged_usr::create_merged_usr`] writes them) are followed, so
/// `./bin/sh` lands in `usr/bin/sh`; any other symlink met on the way to an
/// entry is an error, and the entry is not written.
pub fn unpack_data(deb: &Path, root: &Path) -> Result<UnpackReport, DebError> {
    let mut package = Package::open(deb)?;
    let member = package.data.clone();
    let mut tar = package.tar(deb, member)?;
    let mut unpacker = Unpacker {
        deb,
        root,
        report: UnpackReport::default(),
        directory_times: Vec::new(),
    };
    let entries = tar.entries().map_err(|e| read_error(deb, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| read_error(deb, e))?;
        unpacker.apply(entry)?;
    }
    // Deepest first, so that setting a child's time does not disturb its
    // parent's afterwards.
    let mut directory_times = std::mem::take(&mut unpacker.directory_times);
    directory_times.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
    for (path, mtime) in directory_times {
        set_mtime_nofollow(&path, mtime).map_err(|e| unpacker.write_error(&path, e))?;
    }
    Ok(unpacker.report)
}

/// One regular file of a package's `data.tar`, as the archive gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagedFile {
    /// Its path, relative (`usr/bin/sed`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its mtime, which dpkg gives the unpacked file.
    pub mtime: u64,
}

/// The regular files of the package's `data.tar`, in archive order.
pub fn list_files(deb: &Path) -> Result<Vec<PackagedFile>, DebError> {
    let mut package = Package::open(deb)?;
    let member = package.data.clone();
    let mut tar = package.tar(deb, member)?;
    let mut files = Vec::new();
    for entry in tar.entries().map_err(|e| read_error(deb, e))? {
        let entry = entry.map_err(|e| read_error(deb, e))?;
        let header = entry.header();
        if !header.entry_type().is_file() {
            continue;
        }
        let raw = entry.path_bytes();
        let path = String::from_utf8_lossy(raw.strip_prefix(b"./").unwrap_or(&raw)).into_owned();
        files.push(PackagedFile {
            path,
            size: header.size().map_err(|e| read_error(deb, e))?,
            mtime: header.mtime().map_err(|e| read_error(deb, e))?,
        });
    }
    Ok(files)
}

fn read_error(deb: &Path, source: io::Error) -> DebError {
    DebError::Read {
        deb: deb.to_path_buf(),
        source,
    }
}

fn format_error(deb: &Path, reason: impl Into<String>) -> DebError {
    DebError::Format {
        deb: deb.to_path_buf(),
        reason: reason.into(),
    }
}

/// An opened `.deb` whose member layout has been checked.
struct Package {
    archive: ar::Archive<File>,
    /// Index and name of the `control.tar*` member.
    control: (usize, String),
    /// Index and name of the `data.tar*` member.
    data: (usize, String),
}

impl Package {
    /// The tar archive of `member` (index and name: [`Package::control`]
    /// or [`Package::data`]), decompressed as it is read.
    fn tar(
        &mut self,
        deb: &Path,
        (index, name): (usize, String),
    ) -> Result<tar::Archive<Box<dyn Read + '_>>, DebError> {
        let member = self
            .archive
            .jump_to_entry(index)
            .map_err(|e| read_error(deb, e))?;
        Ok(tar::Archive::new(decompress(deb, &name, member)?))
    }

    /// Opens the archive, checks `debian-binary` and finds the control and
    /// data members in the order deb(5) requires. Members whose names start
    /// with `_` are skipped, as dpkg skips them.
    fn open(deb: &Path) -> Result<Package, DebError> {
        let file = File::open(deb).map_err(|e| read_error(deb, e))?;
        let mut archive = ar::Archive::new(file);
        let mut names = Vec::new();
        while let Some(entry) = archive.next_entry() {
            let mut entry = entry.map_err(|e| read_error(deb, e))?;
            let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
            if names.is_empty() {
                if name != "debian-binary" {
                    return Err(format_error(
                        deb,
                        format!("the first member is `{name}`, not `debian-binary`"),
                    ));
                }
                let mut version = Vec::new();
                // A few bytes decide it; more than that is not format 2.0.
                (&mut entry)
                    .take(16)
                    .read_to_end(&mut version)
                    .map_err(|e| read_error(deb, e))?;
                if version != DEB_FORMAT {
                    return Err(format_error(
                        deb,
                        format!(
                            "debian-binary is {:?}, not \"2.0\\n\"",
                            String::from_utf8_lossy(&version)
                        ),
                    ));
                }
            }
            names.push(name);
        }
        if names.is_empty() {
            return Err(format_error(deb, "empty ar archive"));
        }
        let mut wanted = ["control.tar", "data.tar"].into_iter();
        let mut found = Vec::new();
        for (index, name) in names.iter().enumerate().skip(1) {
            if name.starts_with('_') {
                continue;
            }
            let Some(stem) = wanted.next() else {
                // dpkg ignores members after data.tar.
                break;
            };
            if !is_tar_member(name, stem) {
                return Err(format_error(
                    deb,
                    format!(
                        "member {} is `{name}`, expected `{stem}[.gz|.xz|.zst]`",
                        index + 1
                    ),
                ));
            }
            found.push((index, name.clone()));
        }
        let mut found = found.into_iter();
        match (found.next(), found.next()) {
            (Some(control), Some(data)) => Ok(Package {
                archive,
                control,
                data,
            }),
            _ => Err(format_error(deb, "missing control.tar or data.tar member")),
        }
    }
}

/// Whether `name` is `stem` with no or one supported compression suffix.
fn is_tar_member(name: &str, stem: &str) -> bool {
    matches!(name.strip_prefix(stem), Some("" | ".gz" | ".xz" | ".zst"))
}

/// The member's tar stream, decompressed by the member name's suffix.
fn decompress<'a>(
    deb: &Path,
    name: &str,
    member: ar::Entry<'a, File>,
) -> Result<Box<dyn Read + 'a>, DebError> {
    Ok(match name.rsplit_once('.') {
        Some((_, "gz")) => Box::new(flate2::read::GzDecoder::new(member)),
        Some((_, "xz")) => Box::new(liblzma::read::XzDecoder::new(member)),
        Some((_, "zst")) => {
            Box::new(zstd::stream::read::Decoder::new(member).map_err(|e| read_error(deb, e))?)
        }
        _ => Box::new(member),
    })
}

/// Applies archive entries to one root.
struct Unpacker<'p> {
    deb: &'p Path,
    root: &'p Path,
    report: UnpackReport,
    /// Directories and their archive mtimes, set once everything is written.
    directory_times: Vec<(PathBuf, u64)>,
}

impl Unpacker<'_> {
    fn write_error(&self, path: &Path, source: io::Error) -> DebError {
        DebError::Write {
            deb: self.deb.to_path_buf(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn unsafe_path(&self, entry: &[u8], reason: &'static str) -> DebError {
        DebError::UnsafePath {
            deb: self.deb.to_path_buf(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason,
        }
    }

    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), DebError> {
        let raw_path = entry.path_bytes().into_owned();
        let header = entry.header();
        let kind = header.entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            return Ok(());
        }
        let mode = header.mode().map_err(|e| read_error(self.deb, e))? & 0o7777;
        let uid = header.uid().map_err(|e| read_error(self.deb, e))?;
        let gid = header.gid().map_err(|e| read_error(self.deb, e))?;
        let mtime = header.mtime().map_err(|e| read_error(self.deb, e))?;
        let uid = u32::try_from(uid).map_err(|_| format_error(self.deb, "uid out of range"))?;
        let gid = u32::try_from(gid).map_err(|_| format_error(self.deb, "gid out of range"))?;

        let components =
            split_entry_path(&raw_path).map_err(|reason| self.unsafe_path(&raw_path, reason))?;
        self.report.paths.push(list_name(&components));
        let Some((last, parents)) = components.split_last() else {
            // `./` itself: the root belongs to the caller, not the package.
            return Ok(());
        };
        let parent = self.resolve_parent(&raw_path, parents)?;
        let path = parent.join(OsStr::from_bytes(last));
        let existing = fs::symlink_metadata(&path).ok();
        let io = |e| self.write_error(&path, e);

        match kind {
            tar::EntryType::Directory => {
                match &existing {
                    Some(meta) if meta.is_dir() => {}
                    // A merged-/usr link keeps standing, as with
                    // `tar --keep-directory-symlink`: `./bin/` must not
                    // replace `bin -> usr/bin`.
                    Some(meta)
                        if meta.file_type().is_symlink()
                            && parents.is_empty()
                            && is_merged_usr_link(&path, last) =>
                    {
                        self.report.directories += 1;
                        return Ok(());
                    }
                    Some(_) => {
                        fs::remove_file(&path).map_err(io)?;
                        fs::create_dir(&path).map_err(io)?;
                    }
                    None => fs::create_dir(&path).map_err(io)?,
                }
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io)?;
                self.directory_times.push((path.clone(), mtime));
                self.report.directories += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let declared = entry.size();
                if declared > MAX_ENTRY_BYTES {
                    return Err(self.unsafe_path(
                        &raw_path,
                        "the entry declares more than the 1 GiB a packaged file may have",
                    ));
                }
                self.clear_for_non_directory(&path, existing.as_ref(), &raw_path)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                let written = io::copy(&mut entry, &mut file).map_err(io)?;
                if written != declared {
                    // The tar reader stops at the end of the stream without
                    // an error; the file is cut short and must not stand.
                    drop(file);
                    fs::remove_file(&path).map_err(io)?;
                    return Err(self.unsafe_path(
                        &raw_path,
                        "the entry declares more bytes than the archive holds (a truncated or forged size)",
                    ));
                }
                // chown before chmod: chown clears setuid and setgid.
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io)?;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io)?;
                file.set_modified(time_of(mtime)).map_err(io)?;
                self.report.files += 1;
                self.report.bytes += written;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| format_error(self.deb, "symlink without a target"))?
                    .into_owned();
                self.clear_for_non_directory(&path, existing.as_ref(), &raw_path)?;
                // The target is stored as written and never followed here;
                // it is resolved later, inside the chroot.
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(io)?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io)?;
                set_mtime_nofollow(&path, mtime).map_err(io)?;
                self.report.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| format_error(self.deb, "hard link without a target"))?
                    .into_owned();
                let target_components = split_entry_path(&target)
                    .map_err(|reason| self.unsafe_path(&target, reason))?;
                let Some((target_last, target_parents)) = target_components.split_last() else {
                    return Err(self.unsafe_path(&target, "hard link to the root"));
                };
                let target_path = self
                    .resolve_parent(&target, target_parents)?
                    .join(OsStr::from_bytes(target_last));
                match fs::symlink_metadata(&target_path) {
                    Ok(meta) if meta.is_file() => {}
                    _ => {
                        return Err(self.unsafe_path(
                            &raw_path,
                            "hard link target is not a regular file unpacked earlier",
                        ));
                    }
                }
                self.clear_for_non_directory(&path, existing.as_ref(), &raw_path)?;
                // link(2) does not follow a symlink in its last component.
                fs::hard_link(&target_path, &path).map_err(io)?;
                self.report.hardlinks += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(self.unsafe_path(
                    &raw_path,
                    "a device node or FIFO, which Debian packages never ship (Policy 10.6)",
                ));
            }
            other => {
                return Err(format_error(
                    self.deb,
                    format!(
                        "unsupported tar entry type {other:?} for `{}`",
                        String::from_utf8_lossy(&raw_path)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Removes a non-directory already at `path` so a new entry can take
    /// its place, as dpkg replaces files. A directory there is an error.
    fn clear_for_non_directory(
        &self,
        path: &Path,
        existing: Option<&fs::Metadata>,
        raw_path: &[u8],
    ) -> Result<(), DebError> {
        match existing {
            None => Ok(()),
            Some(meta) if meta.is_dir() => Err(self.unsafe_path(
                raw_path,
                "a directory already stands where the archive puts a non-directory",
            )),
            Some(_) => fs::remove_file(path).map_err(|e| self.write_error(path, e)),
        }
    }

    /// The directory in the tree that `parents` names, with missing
    /// directories created (0755, root-owned, as GNU tar does). No symlink
    /// is followed except a top-level merged-/usr link.
    fn resolve_parent(&self, raw_path: &[u8], parents: &[&[u8]]) -> Result<PathBuf, DebError> {
        let mut dir = self.root.to_path_buf();
        for (depth, component) in parents.iter().enumerate() {
            let next = dir.join(OsStr::from_bytes(component));
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.is_dir() => dir = next,
                Ok(meta) if meta.file_type().is_symlink() => {
                    if depth == 0 && is_merged_usr_link(&next, component) {
                        let target = dir.join("usr").join(OsStr::from_bytes(component));
                        match fs::symlink_metadata(&target) {
                            Ok(meta) if meta.is_dir() => dir = target,
                            _ => {
                                return Err(self.unsafe_path(
                                    raw_path,
                                    "merged-/usr link points at a missing directory",
                                ));
                            }
                        }
                    } else {
                        return Err(self
                            .unsafe_path(raw_path, "a parent directory is a symlink in the tree"));
                    }
                }
                Ok(_) => {
                    return Err(self.unsafe_path(raw_path, "a parent directory is not a directory"));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&next).map_err(|e| self.write_error(&next, e))?;
                    fs::set_permissions(&next, fs::Permissions::from_mode(0o755))
                        .map_err(|e| self.write_error(&next, e))?;
                    dir = next;
                }
                Err(e) => return Err(self.write_error(&next, e)),
            }
        }
        Ok(dir)
    }
}

/// Whether `path` (a top-level entry of the root called `name`) is one of
/// the merged-/usr links bootstrap creates: a symlink whose target is
/// exactly `usr/<name>`, for a name in [`MERGED_USR_DIRS`].
fn is_merged_usr_link(path: &Path, name: &[u8]) -> bool {
    let known = MERGED_USR_DIRS.iter().any(|dir| dir.as_bytes() == name);
    if !known {
        return false;
    }
    match fs::read_link(path) {
        Ok(target) => {
            let mut expected = b"usr/".to_vec();
            expected.extend_from_slice(name);
            target.as_os_str().as_bytes() == expected.as_slice()
        }
        Err(_) => false,
    }
}

/// The components of an archive path below the root: `./` and `.`
/// dropped, absolute paths and `..` refused.
fn split_entry_path(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.is_empty() {
        return Err("empty path");
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL byte in path");
    }
    let mut components = Vec::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            other => components.push(other),
        }
    }
    Ok(components)
}

/// The path as dpkg lists it in `info/<package>.list`.
fn list_name(components: &[&[u8]]) -> String {
    if components.is_empty() {
        return "/.".to_string();
    }
    let mut name = String::new();
    for component in components {
        name.push('/');
        name.push_str(&String::from_utf8_lossy(component));
    }
    name
}

fn time_of(mtime: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)
}

/// Sets the mtime (and atime, to the same value) of `path` itself, never of
/// what a symlink there points to.
fn set_mtime_nofollow(path: &Path, mtime: u64) -> io::Result<()> {
    let seconds = i64::try_from(mtime).unwrap_or(i64::MAX);
    let time = nix::sys::time::TimeVal::new(seconds, 0);
    nix::sys::stat::lutimes(path, &time, &time).map_err(io::Error::from)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    use crate::bootstrap::merged_usr::create_merged_usr;

    const MTIME: u64 = 1_000_000_000;

    /// Builds a `.deb` with the host's `dpkg-deb` from a staging tree that
    /// exercises every entry kind, compressed with `compression`.
    fn build_with_dpkg_deb(dir: &Path, compression: &str) -> PathBuf {
        let stage = dir.join(format!("stage-{compression}"));
        let p = |rel: &str| stage.join(rel);
        fs::create_dir_all(p("DEBIAN")).unwrap();
        fs::write(
            p("DEBIAN/control"),
            "Package: kiln-test\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln <kiln@invalid>\nDescription: test\n",
        )
        .unwrap();
        for d in ["bin", "usr/bin", "var/spool/shared", "var/spool/group"] {
            fs::create_dir_all(p(d)).unwrap();
        }
        fs::write(p("bin/x"), "#!/bin/sh\n").unwrap();
        fs::write(p("usr/bin/tool"), "tool\n").unwrap();
        fs::set_permissions(p("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(p("usr/bin/tool"), p("usr/bin/tool-again")).unwrap();
        std::os::unix::fs::symlink("tool", p("usr/bin/link")).unwrap();
        std::os::unix::fs::symlink("/etc/absolute-target", p("usr/bin/abs-link")).unwrap();
        fs::write(p("usr/bin/owned"), "owned\n").unwrap();
        std::os::unix::fs::chown(p("usr/bin/owned"), Some(1234), Some(5678)).unwrap();
        fs::set_permissions(p("usr/bin/owned"), fs::Permissions::from_mode(0o2640)).unwrap();
        fs::set_permissions(p("var/spool/shared"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(p("var/spool/group"), fs::Permissions::from_mode(0o2775)).unwrap();
        let status = Command::new("find")
            .arg(&stage)
            .args(["-exec", "touch", "-h", "-d", "@1000000000", "{}", "+"])
            .status()
            .unwrap();
        assert!(status.success());
        let deb = dir.join(format!("kiln-test-{compression}.deb"));
        let output = Command::new("dpkg-deb")
            .arg(format!("-Z{compression}"))
            .arg("--build")
            .arg(&stage)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        deb
    }

    fn meta(path: &Path) -> fs::Metadata {
        fs::symlink_metadata(path).unwrap()
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn every_compression_unpacks_modes_owners_links_and_times() {
        let dir = tempfile::tempdir().unwrap();
        for compression in ["none", "gzip", "xz", "zstd"] {
            let deb = build_with_dpkg_deb(dir.path(), compression);
            let control = read_control(&deb).unwrap();
            assert!(control.starts_with("Package: kiln-test\n"), "{control}");

            let root = dir.path().join(format!("root-{compression}"));
            fs::create_dir(&root).unwrap();
            create_merged_usr(&root, "amd64").unwrap();
            let report = unpack_data(&deb, &root).unwrap();
            let r = |rel: &str| root.join(rel);

            // Merged /usr: ./bin/x went through the link, which still stands.
            assert!(meta(&r("bin")).file_type().is_symlink());
            assert!(meta(&r("usr/bin/x")).is_file());
            // setuid survives the chown.
            assert_eq!(meta(&r("usr/bin/tool")).mode() & 0o7777, 0o4755);
            assert_eq!(meta(&r("usr/bin/owned")).mode() & 0o7777, 0o2640);
            assert_eq!(meta(&r("usr/bin/owned")).uid(), 1234);
            assert_eq!(meta(&r("usr/bin/owned")).gid(), 5678);
            assert_eq!(meta(&r("var/spool/shared")).mode() & 0o7777, 0o1777);
            assert_eq!(meta(&r("var/spool/group")).mode() & 0o7777, 0o2775);
            assert_eq!(
                meta(&r("usr/bin/tool")).ino(),
                meta(&r("usr/bin/tool-again")).ino()
            );
            assert_eq!(fs::read_link(r("usr/bin/link")).unwrap(), Path::new("tool"));
            assert_eq!(
                fs::read_link(r("usr/bin/abs-link")).unwrap(),
                Path::new("/etc/absolute-target")
            );
            for rel in [
                "usr/bin/tool",
                "usr/bin/link",
                "var/spool/shared",
                "usr/bin",
            ] {
                assert_eq!(meta(&r(rel)).mtime() as u64, MTIME, "{rel}");
            }
            assert_eq!(report.files, 3);
            assert_eq!(report.hardlinks, 1);
            assert_eq!(report.symlinks, 2);
            assert!(report.paths.contains(&"/usr/bin/tool".to_string()));
        }
    }

    /// A tar header for `path` written byte for byte, so that tests can
    /// make the entries a hostile archive would hold.
    pub(crate) fn raw_header(
        path: &[u8],
        kind: tar::EntryType,
        link: &[u8],
        size: u64,
    ) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        let old = header.as_old_mut();
        old.name[..path.len()].copy_from_slice(path);
        old.linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header.set_size(size);
        header.set_cksum();
        header
    }

    /// Writes a `.deb` whose data.tar holds `entries` (header, content)
    /// exactly as given, with a `debian-binary` of `version`.
    pub(crate) fn craft_deb(path: &Path, version: &[u8], entries: &[(tar::Header, &[u8])]) {
        write_deb(path, version, b"Package: crafted\nVersion: 1\n", entries);
    }

    /// Writes a well-formed `.deb` with the control file `control` and a
    /// data.tar of `entries`.
    pub(crate) fn craft_deb_with_control(
        path: &Path,
        control: &[u8],
        entries: &[(tar::Header, &[u8])],
    ) {
        write_deb(path, b"2.0\n", control, entries);
    }

    fn write_deb(path: &Path, version: &[u8], text: &[u8], entries: &[(tar::Header, &[u8])]) {
        let mut data = tar::Builder::new(Vec::new());
        for (header, content) in entries {
            data.append(header, *content).unwrap();
        }
        let data = data.into_inner().unwrap();
        let mut control = tar::Builder::new(Vec::new());
        let mut header = raw_header(
            b"./control",
            tar::EntryType::Regular,
            b"",
            text.len() as u64,
        );
        header.set_cksum();
        control.append(&header, text).unwrap();
        let control = control.into_inner().unwrap();
        let mut ar = ar::Builder::new(File::create(path).unwrap());
        for (name, bytes) in [
            (&b"debian-binary"[..], version),
            (b"control.tar", &control),
            (b"data.tar", &data),
        ] {
            let header = ar::Header::new(name.to_vec(), bytes.len() as u64);
            ar.append(&header, bytes).unwrap();
        }
    }

    fn dir_header(path: &[u8]) -> (tar::Header, &'static [u8]) {
        let mut header = raw_header(path, tar::EntryType::Directory, b"", 0);
        header.set_mode(0o755);
        header.set_cksum();
        (header, b"")
    }

    fn file_header(path: &[u8], content: &'static [u8]) -> (tar::Header, &'static [u8]) {
        (
            raw_header(path, tar::EntryType::Regular, b"", content.len() as u64),
            content,
        )
    }

    /// Everything below `dir`, for checking that nothing changed there.
    fn listing(dir: &Path) -> BTreeMap<PathBuf, (u32, u64)> {
        let mut out = BTreeMap::new();
        for entry in crate::host::walk::tree(dir).min_depth(1) {
            let path = entry.unwrap().into_path();
            let m = meta(&path);
            out.insert(path, (m.mode(), m.len()));
        }
        out
    }

    /// A data.tar's entries, as [`craft_deb`] takes them.
    type Entries = Vec<(tar::Header, &'static [u8])>;

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn hostile_archives_write_nothing_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("passwd"), "host\n").unwrap();
        let outside_bytes = outside.as_os_str().as_bytes().to_vec();
        let symlink_to_outside = {
            let mut header = raw_header(b"./a", tar::EntryType::Symlink, &outside_bytes, 0);
            header.set_cksum();
            (header, &b""[..])
        };
        let hardlink_outside = (
            raw_header(b"./h", tar::EntryType::Link, b"../outside/passwd", 0),
            &b""[..],
        );
        let symlink_to_root = {
            let mut header = raw_header(b"./r", tar::EntryType::Symlink, b"/", 0);
            header.set_cksum();
            (header, &b""[..])
        };
        let device = |kind, path: &[u8]| {
            let mut header = raw_header(path, kind, b"", 0);
            header.set_device_major(8).unwrap();
            header.set_device_minor(0).unwrap();
            header.set_mode(0o666);
            header.set_cksum();
            (header, &b""[..])
        };
        let mut huge = raw_header(b"./huge", tar::EntryType::Regular, b"", 0);
        huge.set_size(MAX_ENTRY_BYTES + 1);
        huge.set_cksum();
        // Declares 5000 bytes; the archive holds 10, its padding and its
        // end-of-archive blocks.
        let truncated = raw_header(b"./usr/short", tar::EntryType::Regular, b"", 5000);
        let cases: Vec<(&str, Entries)> = vec![
            (
                "dotdot",
                vec![file_header(b"./../outside/passwd", b"pwned\n")],
            ),
            (
                "file-through-symlink-to-root",
                vec![
                    symlink_to_root.clone(),
                    file_header(b"./r/tmp/kiln-through-root", b"pwned\n"),
                ],
            ),
            (
                "dir-through-symlink-to-root",
                vec![
                    symlink_to_root,
                    dir_header(b"./r/tmp/kiln-dir-through-root/"),
                ],
            ),
            (
                "char-device",
                vec![device(tar::EntryType::Char, b"./dev/sda")],
            ),
            (
                "block-device",
                vec![device(tar::EntryType::Block, b"./sda")],
            ),
            ("fifo", vec![device(tar::EntryType::Fifo, b"./var/fifo")]),
            ("huge", vec![(huge, &b""[..])]),
            ("truncated", vec![(truncated, &b"0123456789"[..])]),
            (
                "deep-dotdot",
                vec![
                    dir_header(b"./x/"),
                    file_header(b"./x/../../outside/y", b"pwned\n"),
                ],
            ),
            (
                "absolute",
                vec![file_header(b"/tmp/kiln-absolute-escape", b"pwned\n")],
            ),
            (
                "through-symlink",
                vec![
                    symlink_to_outside.clone(),
                    file_header(b"./a/passwd", b"pwned\n"),
                ],
            ),
            (
                "dir-through-symlink",
                vec![symlink_to_outside, dir_header(b"./a/sub/")],
            ),
            ("hardlink-out", vec![hardlink_outside]),
        ];
        for (name, entries) in &cases {
            let deb = dir.path().join(format!("{name}.deb"));
            craft_deb(&deb, b"2.0\n", entries);
            let root = dir.path().join(format!("root-{name}"));
            fs::create_dir(&root).unwrap();
            let before = listing(&outside);
            let err = unpack_data(&deb, &root).unwrap_err();
            assert!(matches!(err, DebError::UnsafePath { .. }), "{name}: {err}");
            // The message names the archive and the entry it refused.
            // (A hard link is refused by its target.)
            let last = &entries.last().unwrap().0;
            let refused = match last.link_name_bytes() {
                Some(target) if last.entry_type() == tar::EntryType::Link => target.into_owned(),
                _ => last.path_bytes().into_owned(),
            };
            let message = err.to_string();
            assert!(message.contains(&*deb.to_string_lossy()), "{message}");
            assert!(
                message.contains(&*String::from_utf8_lossy(&refused)),
                "{name}: {message}"
            );
            assert_eq!(listing(&outside), before, "{name}");
            assert_eq!(
                fs::read_to_string(outside.join("passwd")).unwrap(),
                "host\n"
            );
        }
        for escaped in [
            "/tmp/kiln-absolute-escape",
            "/tmp/kiln-through-root",
            "/tmp/kiln-dir-through-root",
        ] {
            assert!(!Path::new(escaped).exists(), "{escaped}");
        }
        // Nothing of a refused regular file is left in the tree.
        assert!(!dir.path().join("root-truncated/usr/short").exists());
        assert!(!dir.path().join("root-huge/huge").exists());
    }

    #[test]
    fn a_merged_usr_link_the_archive_did_not_get_from_us_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        // `bin` pointing somewhere other than `usr/bin` is not ours.
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        let deb = dir.path().join("x.deb");
        craft_deb(&deb, b"2.0\n", &[file_header(b"./bin/x", b"x\n")]);
        let err = unpack_data(&deb, &root).unwrap_err();
        assert!(matches!(err, DebError::UnsafePath { .. }), "{err}");
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn a_later_entry_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("twice.deb");
        craft_deb(
            &deb,
            b"2.0\n",
            &[
                file_header(b"./f", b"first\n"),
                file_header(b"./f", b"second\n"),
            ],
        );
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let report = unpack_data(&deb, &root).unwrap();
        assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "second\n");
        assert_eq!(report.files, 2);
    }

    #[test]
    fn other_format_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("v3.deb");
        craft_deb(&deb, b"3.0\n", &[]);
        let err = read_control(&deb).unwrap_err();
        assert!(matches!(err, DebError::Format { .. }), "{err}");
        fs::write(dir.path().join("junk.deb"), b"!<arch>\n").unwrap();
        assert!(read_control(&dir.path().join("junk.deb")).is_err());
    }

    /// Path, kind, mode, owner, size, mtime and link target of everything
    /// below `root`.
    fn tree_facts(root: &Path) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        for (path, _) in listing(root) {
            let m = meta(&path);
            let link = fs::read_link(&path).ok();
            let size = if m.is_file() { m.len() } else { 0 };
            // dpkg-deb -x (GNU tar) leaves some directories at the time of
            // extraction; kiln sets every one to the archive's mtime.
            let mtime = if m.is_dir() { 0 } else { m.mtime() };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                format!(
                    "{:o} {}:{} {} {} {:?}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    size,
                    mtime,
                    link
                ),
            );
        }
        out
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn real_packages_unpack_like_dpkg_deb() {
        // Real archive packages, downloaded with the host's apt into a
        // scratch directory. Without network or apt the test fails.
        let dir = tempfile::tempdir().unwrap();
        let packages = ["base-files", "hostname", "zlib1g", "libzstd1"];
        let status = Command::new("apt-get")
            .arg("download")
            .args(packages)
            .current_dir(dir.path())
            .output();
        let downloaded: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        assert_eq!(
            downloaded.len(),
            packages.len(),
            "apt-get download {packages:?} failed (needs the mirror and apt lists): {status:?}"
        );
        for deb in downloaded {
            let ours = dir.path().join("ours");
            let theirs = dir.path().join("theirs");
            for d in [&ours, &theirs] {
                let _ = fs::remove_dir_all(d);
                fs::create_dir(d).unwrap();
            }
            unpack_data(&deb, &ours).unwrap();
            let output = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&theirs)
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            let (ours, theirs) = (tree_facts(&ours), tree_facts(&theirs));
            assert!(!ours.is_empty());
            assert_eq!(ours, theirs, "{}", deb.display());
            assert!(read_control(&deb).unwrap().contains("Package: "));
        }
    }
}

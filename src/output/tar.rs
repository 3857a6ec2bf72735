//! The `tar` output: the finished root tree as a POSIX (pax) archive,
//! written by kiln itself so that the same tree always gives the same bytes.
//!
//! GNU tar can be made reproducible only with a long list of options, and
//! its PAX headers name the writing process unless told otherwise; the
//! `tar` crate's own "deterministic" mode rewrites modes and owners. So this
//! module walks the tree itself and writes each header from `lstat`:
//!
//! - Entries come in the order of `tar --sort=name`: each directory's names
//!   in byte order, a directory immediately before its contents. Paths are
//!   relative and start with `./` (the root is `./`), as
//!   `tar -C tree -cf out.tar .` writes them, so `tar -C dir -xf` extracts
//!   them below `dir` (and with `-p` gives `dir` the root's mode).
//! - Owners are numeric only (`uname`/`gname` empty): the image's
//!   `/etc/passwd`, not the host's, gives them names.
//! - Modes are kept whole, setuid, setgid and sticky bits included.
//! - Modification times are clamped to `SOURCE_DATE_EPOCH`: a later time
//!   becomes the epoch, an earlier one is kept.
//! - The second and later paths of an inode become hard-link entries to
//!   the first path written.
//! - Extended attributes (file capabilities, `user.*`, ACLs) become PAX
//!   `SCHILY.xattr.<name>` records, which GNU tar restores with
//!   `--xattrs --xattrs-include='*'`. Paths and link targets longer than
//!   100 bytes become PAX `path` and `linkpath` records.
//! - Sockets are skipped (no archive format holds one) and listed in the
//!   [`TarSummary`].
//!
//! File contents are written in full: holes of sparse files are not
//! recorded, which is exact but makes the archive as large as the data.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ::tar::{Builder, EntryType, Header};

use super::{OutputError, Staged};
use crate::host::walk;

/// The size of the name and link-name fields of a ustar header.
const USTAR_NAME_BYTES: usize = 100;

/// The largest number a 7-digit octal ustar uid or gid field holds.
const USTAR_ID_MAX: u64 = 0o7_777_777;

/// Buffer between the archive and the output file.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// What [`write_tar`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries in the archive (PAX extended headers not counted).
    pub entries: u64,
    /// How many of them are hard links to an earlier entry.
    pub hardlinks: u64,
    /// How many entries had a modification time after the epoch, and were
    /// given the epoch instead.
    pub clamped_mtimes: u64,
    /// Sockets left out, by their path in the archive.
    pub skipped_sockets: Vec<PathBuf>,
    /// The archive's size in bytes.
    pub bytes: u64,
}

/// Writes the tree at `tree` as a tar archive to `out`, replacing `out` only
/// once the archive is complete. See the module documentation for what the
/// archive holds.
pub fn write_tar(
    tree: &Path,
    source_date_epoch: u64,
    out: &Path,
) -> Result<TarSummary, OutputError> {
    let staged = Staged::beside(out)?;
    let write_error = |source| OutputError::Write {
        path: out.to_path_buf(),
        source,
    };
    let file = File::create(staged.path()).map_err(write_error)?;
    let mut archive = Archive {
        builder: Builder::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
        epoch: source_date_epoch,
        out: out.to_path_buf(),
        first_paths: HashMap::new(),
        summary: TarSummary::default(),
    };
    archive.walk(tree)?;
    let mut summary = std::mem::take(&mut archive.summary);
    let file = archive
        .builder
        .into_inner()
        .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(write_error)?;
    summary.bytes = file.metadata().map_err(write_error)?.len();
    drop(file);
    staged.commit()?;
    Ok(summary)
}

/// An archive being written.
struct Archive {
    builder: Builder<BufWriter<File>>,
    epoch: u64,
    out: PathBuf,
    /// The archive path of the first entry of each multiply linked inode,
    /// by device and inode number.
    first_paths: HashMap<(u64, u64), Vec<u8>>,
    summary: TarSummary,
}

impl Archive {
    /// Appends `root` and everything below it, depth first, each
    /// directory's names in byte order.
    fn walk(&mut self, root: &Path) -> Result<(), OutputError> {
        let read_error = |error| {
            let (path, source) = walk::failure(error, root);
            OutputError::Read { path, source }
        };
        for entry in walk::tree_sorted(root).follow_root_links(false) {
            let entry = entry.map_err(read_error)?;
            let meta = entry.metadata().map_err(read_error)?;
            let mut name = b"./".to_vec();
            name.extend_from_slice(walk::relative(&entry, root).as_os_str().as_bytes());
            self.append(entry.path(), &name, &meta)?;
        }
        Ok(())
    }

    /// Appends one entry. `name` is its path in the archive, without the
    /// trailing slash of a directory.
    fn append(&mut self, path: &Path, name: &[u8], meta: &fs::Metadata) -> Result<(), OutputError> {
        let file_type = meta.file_type();
        if file_type.is_socket() {
            self.summary
                .skipped_sockets
                .push(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
            return Ok(());
        }
        let mut name = name.to_vec();
        if file_type.is_dir() && !name.ends_with(b"/") {
            name.push(b'/');
        }

        let mut header = Header::new_ustar();
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        header.set_mode(meta.mode() & 0o7777);
        let (uid, gid) = (u64::from(meta.uid()), u64::from(meta.gid()));
        header.set_uid(uid);
        header.set_gid(gid);
        if uid > USTAR_ID_MAX {
            records.push((b"uid".to_vec(), uid.to_string().into_bytes()));
        }
        if gid > USTAR_ID_MAX {
            records.push((b"gid".to_vec(), gid.to_string().into_bytes()));
        }
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        if mtime > self.epoch {
            self.summary.clamped_mtimes += 1;
        }
        header.set_mtime(mtime.min(self.epoch));
        header.set_size(0);

        let key = (meta.dev(), meta.ino());
        let earlier = if !file_type.is_dir() && meta.nlink() > 1 {
            self.first_paths.get(&key).cloned()
        } else {
            None
        };
        let mut content: Option<File> = None;
        let mut link_target: Option<Vec<u8>> = None;
        if let Some(first) = earlier {
            header.set_entry_type(EntryType::Link);
            link_target = Some(first);
            self.summary.hardlinks += 1;
        } else {
            if !file_type.is_dir() && meta.nlink() > 1 {
                self.first_paths.insert(key, name.clone());
            }
            if file_type.is_file() {
                header.set_entry_type(EntryType::Regular);
                header.set_size(meta.len());
                content = Some(File::open(path).map_err(|source| OutputError::Read {
                    path: path.to_path_buf(),
                    source,
                })?);
            } else if file_type.is_dir() {
                header.set_entry_type(EntryType::Directory);
            } else if file_type.is_symlink() {
                header.set_entry_type(EntryType::Symlink);
                let target = fs::read_link(path).map_err(|source| OutputError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                link_target = Some(target.as_os_str().as_bytes().to_vec());
            } else if file_type.is_char_device() || file_type.is_block_device() {
                header.set_entry_type(if file_type.is_char_device() {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                self.set_device(&mut header, meta.rdev())?;
            } else if file_type.is_fifo() {
                header.set_entry_type(EntryType::Fifo);
            } else {
                return Err(OutputError::Read {
                    path: path.to_path_buf(),
                    source: io::Error::other("a file of unknown type"),
                });
            }
            // Attributes belong to the inode: a hard link's come with the
            // first entry.
            for (attr, value) in read_xattrs(path)? {
                let attr_bytes = attr.as_bytes();
                if attr_bytes.contains(&b'=') || attr_bytes.contains(&0) {
                    return Err(OutputError::XattrName {
                        path: path.to_path_buf(),
                        name: attr.to_string_lossy().into_owned(),
                    });
                }
                let mut record_key = b"SCHILY.xattr.".to_vec();
                record_key.extend_from_slice(attr_bytes);
                records.push((record_key, value));
            }
        }

        let mut long: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        set_name_field(&mut header.as_old_mut().name, &name);
        if name.len() > USTAR_NAME_BYTES {
            long.push((b"path".to_vec(), name.clone()));
        }
        if let Some(target) = &link_target {
            set_name_field(&mut header.as_old_mut().linkname, target);
            if target.len() > USTAR_NAME_BYTES {
                long.push((b"linkpath".to_vec(), target.clone()));
            }
        }
        if long
            .iter()
            .any(|(_, value)| std::str::from_utf8(value).is_err())
        {
            long.insert(0, (b"hdrcharset".to_vec(), b"BINARY".to_vec()));
        }
        long.extend(records);
        if !long.is_empty() {
            self.append_pax(&name, header.mtime().unwrap_or(0), &long)?;
        }

        header.set_cksum();
        let write_error = |source| OutputError::Write {
            path: self.out.clone(),
            source,
        };
        match content {
            Some(file) => {
                let expected = meta.len();
                let mut counted = Counted {
                    inner: file.take(expected),
                    count: 0,
                };
                self.builder
                    .append(&header, &mut counted)
                    .map_err(write_error)?;
                let grew = counted
                    .inner
                    .into_inner()
                    .read(&mut [0u8; 1])
                    .is_ok_and(|n| n > 0);
                if counted.count != expected || grew {
                    return Err(OutputError::Changed {
                        path: path.to_path_buf(),
                    });
                }
            }
            None => self
                .builder
                .append(&header, io::empty())
                .map_err(write_error)?,
        }
        self.summary.entries += 1;
        Ok(())
    }

    fn set_device(&self, header: &mut Header, rdev: u64) -> Result<(), OutputError> {
        let major = u32::try_from(nix::sys::stat::major(rdev)).unwrap_or(u32::MAX);
        let minor = u32::try_from(nix::sys::stat::minor(rdev)).unwrap_or(u32::MAX);
        header
            .set_device_major(major)
            .and_then(|()| header.set_device_minor(minor))
            .map_err(|source| OutputError::Write {
                path: self.out.clone(),
                source,
            })
    }

    /// Appends a PAX extended header with `records`, applying to the entry
    /// that follows. Its own name is fixed (`PaxHeaders/` and the entry's
    /// last component) rather than GNU tar's, which holds a process id.
    fn append_pax(
        &mut self,
        entry: &[u8],
        mtime: u64,
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), OutputError> {
        let mut data = Vec::new();
        for (key, value) in records {
            data.extend_from_slice(&pax_record(key, value));
        }
        let trimmed = entry.strip_suffix(b"/").unwrap_or(entry);
        let last = trimmed.rsplit(|&b| b == b'/').next().unwrap_or(trimmed);
        let mut name = b"PaxHeaders/".to_vec();
        name.extend_from_slice(last);
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_size(data.len() as u64);
        set_name_field(&mut header.as_old_mut().name, &name);
        header.set_cksum();
        self.builder
            .append(&header, data.as_slice())
            .map_err(|source| OutputError::Write {
                path: self.out.clone(),
                source,
            })
    }
}

/// One PAX record: `<length> <key>=<value>\n`, where the length counts the
/// whole record, its own digits included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut length = rest + 1;
    while length != rest + length.to_string().len() {
        length = rest + length.to_string().len();
    }
    let mut record = format!("{length} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Fills a NUL-padded header field with as much of `value` as fits; a
/// longer value is carried by a PAX record.
fn set_name_field(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// A file's extended attributes (not following a symlink), sorted by name.
/// A filesystem without extended attributes has none.
pub(super) fn read_xattrs(path: &Path) -> Result<Vec<(std::ffi::OsString, Vec<u8>)>, OutputError> {
    let read_error = |source| OutputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut names: Vec<_> = names.collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut attrs = Vec::with_capacity(names.len());
    for name in names {
        // An attribute removed since the listing is simply not there.
        if let Some(value) = xattr::get(path, &name).map_err(read_error)? {
            attrs.push((name, value));
        }
    }
    Ok(attrs)
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::output::test_fixture::{self, Fixture, run_tool, sha256_of};

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        // 97 bytes without the length's digits: the length takes two more.
        let record = pax_record(b"k", &[b'x'; 93]);
        assert_eq!(record.len(), 99);
        assert!(record.starts_with(b"99 k="));
        // One more byte of value needs a third digit, so 100 is skipped.
        let record = pax_record(b"k", &[b'x'; 94]);
        assert_eq!(record.len(), 101);
        assert!(record.starts_with(b"101 k="));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_archive_restores_the_tree_exactly() {
        let fixture = Fixture::build();
        let out = fixture.dir.path().join("image.tar");
        let summary = write_tar(&fixture.tree, test_fixture::EPOCH, &out).expect("tar");

        assert_eq!(summary.hardlinks, 1);
        assert_eq!(summary.clamped_mtimes, 1);
        assert_eq!(summary.skipped_sockets, [PathBuf::from("./run/kiln.sock")]);
        assert_eq!(summary.bytes, fs::metadata(&out).expect("stat").len());

        let extracted = fixture.dir.path().join("extracted");
        fs::create_dir(&extracted).expect("mkdir");
        run_tool(
            "tar",
            &[
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-xpf",
                &out.to_string_lossy(),
                "-C",
                &extracted.to_string_lossy(),
            ],
        );

        let mut expected = test_fixture::describe_tree(&fixture.tree);
        // The socket is not archived; every later time is clamped.
        expected.remove("run/kiln.sock");
        for entry in expected.values_mut() {
            entry.mtime = entry.mtime.min(test_fixture::EPOCH as i64);
        }
        let found = test_fixture::describe_tree(&extracted);
        assert_trees_equal(&expected, &found);
        assert_eq!(summary.entries as usize, expected.len());

        // The pair of hard links is one inode again.
        let ino = |p: &str| fs::symlink_metadata(extracted.join(p)).expect("stat").ino();
        assert_eq!(ino("srv/hard-a"), ino("srv/hard-b"));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_archive_lists_paths_in_order_with_numeric_owners() {
        let fixture = Fixture::build();
        let out = fixture.dir.path().join("image.tar");
        write_tar(&fixture.tree, test_fixture::EPOCH, &out).expect("tar");
        let listing = run_tool(
            "tar",
            &[
                "--numeric-owner",
                "--full-time",
                "-tvf",
                &out.to_string_lossy(),
            ],
        );
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.split(' ').filter(|f| !f.is_empty()).nth(5).unwrap_or(""))
            .collect();
        assert_eq!(names.first(), Some(&"./"));
        assert!(names.iter().all(|n| n.starts_with("./")), "{listing}");
        // Directories come right before their contents.
        let position = |n: &str| names.iter().position(|x| *x == n).unwrap_or(usize::MAX);
        assert!(position("./etc/") < position("./etc/motd"));
        assert!(position("./etc/motd") < position("./srv/"));
        let owned = listing
            .lines()
            .find(|l| l.contains("./srv/owned"))
            .unwrap_or_default();
        assert!(owned.contains(" 1234/5678 "), "{owned}");

        // Owner names are never written: the raw headers hold none.
        let mut archive = ::tar::Archive::new(File::open(&out).expect("open"));
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            assert_eq!(entry.header().username_bytes(), Some(&b""[..]));
            assert_eq!(entry.header().groupname_bytes(), Some(&b""[..]));
        }
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_same_tree_gives_the_same_bytes() {
        let fixture = Fixture::build();
        let first = fixture.dir.path().join("first.tar");
        let second = fixture.dir.path().join("second.tar");
        write_tar(&fixture.tree, test_fixture::EPOCH, &first).expect("tar");
        write_tar(&fixture.tree, test_fixture::EPOCH, &second).expect("tar");
        assert_eq!(sha256_of(&first), sha256_of(&second));
    }

    #[test]
    fn a_failed_write_keeps_the_old_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("image.tar");
        fs::write(&out, b"previous").expect("write");
        let error = write_tar(&dir.path().join("missing"), 0, &out).expect_err("no tree");
        assert!(matches!(error, OutputError::Read { .. }), "{error}");
        assert_eq!(fs::read(&out).expect("read"), b"previous");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    fn assert_trees_equal(
        expected: &BTreeMap<String, test_fixture::Described>,
        found: &BTreeMap<String, test_fixture::Described>,
    ) {
        for (path, want) in expected {
            let got = found.get(path);
            assert_eq!(got, Some(want), "entry {path}");
        }
        for path in found.keys() {
            assert!(expected.contains_key(path), "unexpected entry {path}");
        }
    }
}

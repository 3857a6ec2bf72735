//! Native twins: the host's builds of an emulated tree's
//! architecture-neutral programs, run in their place.
//!
//! An arm64 build on an amd64 host spends most of its time starting
//! emulated programs (QEMU takes 50 to 90 ms to start one, the host 1 ms),
//! and build scripts start tens of thousands: `mkinitramfs` alone runs
//! `readlink` and `realpath` 12,000 times. Most of them are coreutils,
//! sed, grep, find, kmod: programs that do the same on every architecture.
//! The lock pins their amd64 builds at the image's exact versions
//! ([`crate::lock::Lock::native_twins`]); the build unpacks them into
//! `native/` of the emulation directory ([`super::emulation`]), never into
//! the tree, and writes there the files of the image's own packages that
//! they stand in for, with the MD5 sums those packages ship
//! ([`TWINS_MANIFEST`]).
//!
//! Before each command, [`write_table`] lists the tree's files that have a
//! twin: a file whose content is still what the image's package shipped
//! (its MD5, whether or not dpkg has registered the package yet: the
//! essential set is configured from files kiln unpacked) and whose twin is
//! a native program of the same path. The binfmt_misc handler
//! (`binfmt_dispatch.c`) runs the twin when the file being executed is a
//! listed one: the same canonical path, size and mtime (which dpkg sets
//! from the package, so a file dpkg unpacks again, as `dpkg --install` of
//! the essential set does, keeps its twin), and QEMU otherwise. The tree's files are never replaced, so anything that copies
//! them (an initramfs hook) copies the image's own.
//!
//! A few programs of those packages answer for the architecture and stay
//! emulated ([`ALWAYS_EMULATED`]); of dpkg, only the archive tools are
//! twinned ([`ONLY_PROGRAMS`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fs_err as fs;
use md5::Digest as _;

use super::ChrootError;

/// The file in the emulation directory that names the files the twins in
/// `native/` stand in for: `<package> <md5> <path>` lines, from the image's
/// own package (of the same version) ([`manifest_lines`]).
pub const TWINS_MANIFEST: &str = "native-twins";

/// The table the handler reads: `<path> <size> <mtime> <twin> <check>`
/// lines, `<path>` the file's canonical path in the tree, `<twin>` relative
/// to the emulation directory. The handler matches on the first three;
/// `<check>` (device, inode and change time, which nothing can set) tells
/// kiln whether a file it checked is still the one it checked.
pub const TWINS_TABLE: &str = "twins";

/// Programs of twinned packages that tell the architecture, so must be the
/// image's own: `uname` and `arch` print it, and `stdbuf` preloads a
/// library of the image's into the program it starts.
pub const ALWAYS_EMULATED: &[&str] = &[
    "bin/uname",
    "usr/bin/uname",
    "bin/arch",
    "usr/bin/arch",
    "usr/bin/stdbuf",
];

/// Packages of which only some programs are twinned. dpkg itself knows
/// the tree's architecture (it was built for it) and so does dpkg-query;
/// `dpkg-deb` and `dpkg-split` only read and write archives, and `dpkg
/// --install` starts them for every package, to decompress it (with xz,
/// the costliest thing an emulated bootstrap does).
pub const ONLY_PROGRAMS: &[(&str, &[&str])] =
    &[("dpkg", &["usr/bin/dpkg-deb", "usr/bin/dpkg-split"])];

/// Whether `package`'s file `path` may have a twin.
fn may_twin(package: &str, path: &str) -> bool {
    if ALWAYS_EMULATED.contains(&path) {
        return false;
    }
    match ONLY_PROGRAMS.iter().find(|(name, _)| *name == package) {
        Some((_, programs)) => programs.contains(&path),
        None => true,
    }
}

/// ELF identities (class, byte order, machine) of the tree's and the
/// host's programs that kiln pairs: aarch64 with x86-64.
const AARCH64: (u8, u8, u16) = (2, 1, 183);
const X86_64: (u8, u8, u16) = (2, 1, 62);

/// The [`TWINS_MANIFEST`] lines for `package`, whose image build ships
/// `md5sums` (its `control.tar` file), for the programs it may have twins
/// of.
pub fn manifest_lines(package: &str, md5sums: &str) -> String {
    let mut lines = String::new();
    for (md5, path) in md5sums
        .lines()
        .filter_map(|line| line.split_once("  "))
        .filter(|(_, path)| may_twin(package, path))
    {
        let _ = writeln!(lines, "{package} {md5} {path}");
    }
    lines
}

/// Writes the table of `root`'s files that have a native twin in
/// `emulation` (see the module documentation); returns how many. No
/// manifest (no twins unpacked) gives an empty table. Files listed in the
/// table already written keep their entry without being read again while
/// their identity is the same.
pub fn write_table(root: &Path, emulation: &Path) -> Result<usize, ChrootError> {
    let table_path = emulation.join(TWINS_TABLE);
    let manifest = match fs::read_to_string(emulation.join(TWINS_MANIFEST)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            fs::write(&table_path, "")?;
            return Ok(0);
        }
        Err(error) => return Err(error.into()),
    };
    let known: BTreeSet<String> = fs::read_to_string(&table_path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let root = fs::canonicalize(root)?;
    let mut lines = Vec::new();
    for (package, md5, path) in manifest.lines().filter_map(|line| {
        let (package, rest) = line.split_once(' ')?;
        let (md5, path) = rest.split_once(' ')?;
        Some((package, md5, path))
    }) {
        if !may_twin(package, path) {
            continue;
        }
        let twin = format!("native/{path}");
        if let Some(line) = twin_line(&root, emulation, path, md5, &twin, &known)? {
            lines.push(line);
        }
    }
    let count = lines.len();
    let mut text = lines.join("\n");
    if count > 0 {
        text.push('\n');
    }
    fs::write(&table_path, text)?;
    Ok(count)
}

/// The table line for the tree's `path` (relative; `root` canonical), if
/// it is a program of the tree's architecture whose content has `md5` and
/// whose `twin` (relative to `emulation`) is a native program. A line of
/// `known` (the table before) is taken again without reading the file.
fn twin_line(
    root: &Path,
    emulation: &Path,
    path: &str,
    md5: &str,
    twin: &str,
    known: &BTreeSet<String>,
) -> Result<Option<String>, ChrootError> {
    let file = root.join(path);
    let Ok(meta) = std::fs::symlink_metadata(&file) else {
        return Ok(None);
    };
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Ok(None);
    }
    // Where the handler finds it: through the tree's merged-/usr links,
    // and never out of the tree.
    let Some(in_tree) = std::fs::canonicalize(&file)
        .ok()
        .and_then(|real| Some(Path::new("/").join(real.strip_prefix(root).ok()?)))
    else {
        return Ok(None);
    };
    let in_tree = in_tree.to_string_lossy();
    if in_tree.contains(char::is_whitespace) || twin.contains(char::is_whitespace) {
        return Ok(None);
    }
    let line = format!(
        "{in_tree} {} {} {twin} {}:{}:{}.{:09}",
        meta.size(),
        meta.mtime(),
        meta.dev(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    if known.contains(&line) {
        return Ok(Some(line));
    }
    let native = emulation.join(twin);
    if crate::host::file::elf_identity(&file) != Some(AARCH64)
        || crate::host::file::elf_identity(&native) != Some(X86_64)
        || !std::fs::symlink_metadata(&native).is_ok_and(|m| m.is_file())
    {
        return Ok(None);
    }
    Ok((md5_hex(&file)? == md5).then_some(line))
}

fn md5_hex(path: &Path) -> Result<String, ChrootError> {
    let mut file = fs::File::open(path)?;
    let mut hasher = md5::Md5::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn elf(machine: u16) -> Vec<u8> {
        let mut header =
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00".to_vec();
        header.extend_from_slice(&machine.to_le_bytes());
        header.extend_from_slice(&[0u8; 44]);
        header
    }

    fn put(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
        fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn md5_of(bytes: &[u8]) -> String {
        hex::encode(md5::Md5::digest(bytes))
    }

    /// A tree holding the image's `usr/bin/sed` and `bin/uname`, and a
    /// `usr/bin/cat` an element replaced; twins of all three.
    fn fixture() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let emulation = dir.path().join("emulation");
        let sed = elf(183);
        let uname = [elf(183), b"uname".to_vec()].concat();
        let cat = [elf(183), b"cat".to_vec()].concat();
        put(&root.join("usr/bin/sed"), &sed);
        put(&root.join("bin/uname"), &uname);
        put(&root.join("usr/bin/cat"), b"#!/bin/sh\necho replaced\n");
        put(&emulation.join("native/usr/bin/sed"), &elf(62));
        put(&emulation.join("native/bin/uname"), &elf(62));
        put(&emulation.join("native/usr/bin/cat"), &elf(62));
        let manifest = [
            manifest_lines("sed", &format!("{}  usr/bin/sed\n", md5_of(&sed))),
            manifest_lines(
                "coreutils",
                &format!(
                    "{}  bin/uname\n{}  usr/bin/cat\n",
                    md5_of(&uname),
                    md5_of(&cat)
                ),
            ),
        ]
        .concat();
        assert!(!manifest.contains("uname"), "{manifest}");
        fs::write(emulation.join(TWINS_MANIFEST), manifest).expect("write");
        (dir, root, emulation)
    }

    #[test]
    fn of_dpkg_only_the_archive_tools_are_twinned() {
        let lines = manifest_lines(
            "dpkg",
            "aa  usr/bin/dpkg\nbb  usr/bin/dpkg-deb\ncc  usr/bin/dpkg-query\ndd  usr/bin/dpkg-split\n",
        );
        assert_eq!(
            lines,
            "dpkg bb usr/bin/dpkg-deb\ndpkg dd usr/bin/dpkg-split\n"
        );
    }

    #[test]
    fn only_unchanged_programs_are_listed_and_uname_stays_emulated() {
        let (_dir, root, emulation) = fixture();
        assert_eq!(write_table(&root, &emulation).expect("table"), 1);
        let table = fs::read_to_string(emulation.join(TWINS_TABLE)).expect("read");
        let meta = fs::metadata(root.join("usr/bin/sed")).expect("stat");
        assert_eq!(
            table,
            format!(
                "/usr/bin/sed {} {} native/usr/bin/sed {}:{}:{}.{:09}\n",
                meta.size(),
                meta.mtime(),
                meta.dev(),
                meta.ino(),
                meta.ctime(),
                meta.ctime_nsec()
            )
        );
    }

    #[test]
    fn a_program_changed_after_the_table_is_dropped_from_it() {
        let (_dir, root, emulation) = fixture();
        assert_eq!(write_table(&root, &emulation).expect("table"), 1);
        // Replaced (a new inode), same content length: no longer the
        // package's, so no longer twinned.
        fs::remove_file(root.join("usr/bin/sed")).expect("rm");
        let mut other = elf(183);
        if let Some(last) = other.last_mut() {
            *last = 1;
        }
        put(&root.join("usr/bin/sed"), &other);
        assert_eq!(write_table(&root, &emulation).expect("table"), 0);
        assert_eq!(
            fs::read_to_string(emulation.join(TWINS_TABLE)).expect("read"),
            ""
        );
    }

    #[test]
    fn without_twins_the_table_is_empty() {
        let (_dir, root, emulation) = fixture();
        fs::remove_file(emulation.join(TWINS_MANIFEST)).expect("rm");
        assert_eq!(write_table(&root, &emulation).expect("table"), 0);
        assert_eq!(
            fs::read_to_string(emulation.join(TWINS_TABLE)).expect("read"),
            ""
        );
    }
}

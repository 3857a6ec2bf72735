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
//! twinned ([`ONLY_PROGRAMS`]). A Python interpreter is twinned only for
//! the byte-compiling that configuring Debian's Python packages does
//! ([`argument_rules`], written to [`TWINS_ARGUMENTS`]): Python code in
//! general asks the platform what it runs on (pip picks its wheels so), and
//! would be told amd64.

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

/// The file in the emulation directory with the arguments some twins run
/// with, and only with: `<twin>\t<argument>\t<argument>…` lines. The
/// handler runs such a twin only when the program's arguments begin with
/// those of one of its lines ([`argument_rules`]). A line
/// `+<twin>\t<argument>…` gives arguments the handler puts before the
/// program's own ([`inserted_arguments`]).
pub const TWINS_ARGUMENTS: &str = "twin-arguments";

/// The Perl module the twin of `perl` loads first ([`PERL_SUPPORT`]), and
/// its directory in the emulation directory.
const PERL_SUPPORT_MODULE: &str = "KilnNativeTwin";
const PERL_SUPPORT_DIR: &str = "perl";

/// The twin of `perl` (the host's build) has its own architecture's
/// directories in `@INC`, which the tree has not got. This module, loaded
/// before the script is compiled, points those at the twins' own (perl-base
/// of the same version) in the same order, and sets `$^X` to the image's
/// perl, as the emulated perl would have it: so the script finds the same
/// modules as under QEMU, and a perl it starts is the image's.
const PERL_SUPPORT: &str = r#"# Written by kiln (src/chroot/twins.rs) for the native twin of perl: makes
# the host's perl, running a script of the image, find the modules the
# image's perl would, in the same order (its own architecture's from the
# twins), and start the image's perl for $^X.
package KilnNativeTwin;
BEGIN {
    my $native = '@DIR@/native';
    @INC = map { m{^/usr/(?:local/)?lib/x86_64-linux-gnu/} ? $native . $_ : $_ }
        grep { $_ ne '@DIR@/perl' } @INC;
    $^X = '/usr/bin/perl';
}
delete $INC{'KilnNativeTwin.pm'};
1;
"#;

/// The argument lists (leading arguments, after `argv[0]`) the twin of the
/// image's program `path` may run with, or none for a twin that runs with
/// any:
///
/// - A Python interpreter (`usr/bin/python3.N`) byte-compiles: with
///   `py3compile`, the `py_compile` workers it starts, the `imp` queries it
///   makes, and `py_compile.py` run directly (python3.N-minimal's
///   postinst). The bytecode is the same on every architecture; the
///   interpreter finds the tree's own standard library (the same version),
///   and none of this needs an extension module of `lib-dynload` (which are
///   the tree's architecture's).
/// - `perl` runs `deb-systemd-helper` and `update-rc.d` (which every
///   package with a service runs when it is configured): they make links
///   and state files from the units and scripts they are given, with
///   perl-base's modules only ([`PERL_SUPPORT`]).
///
/// Python and Perl code in general asks what platform it runs on (pip
/// picks its wheels so, `$Config{archname}`), and would be told amd64.
pub fn argument_rules(path: &str) -> Vec<Vec<String>> {
    if path == "usr/bin/perl" {
        vec![
            vec!["/usr/bin/deb-systemd-helper".into()],
            vec!["/usr/sbin/update-rc.d".into()],
        ]
    } else if let Some(minor) = path
        .strip_prefix("usr/bin/")
        .and_then(|name| crate::lock::make::python_minor(name, ""))
    {
        let py_compile = format!("/usr/lib/python3.{minor}/py_compile.py");
        let rules: [&[&str]; 7] = [
            &["/usr/bin/py3compile"],
            &["-m", "py_compile", "-"],
            &["-O", "-m", "py_compile", "-"],
            &["-E", "-S", &py_compile],
            &["-E", "-S", "-O", &py_compile],
            &["-c", "import imp; print(imp.get_magic())"],
            &["-c", "import imp; print(imp.get_tag())"],
        ];
        rules
            .iter()
            .map(|rule| rule.iter().map(|word| word.to_string()).collect())
            .collect()
    } else {
        Vec::new()
    }
}

/// The arguments the handler puts before the program's own when it runs
/// the twin of `path`: for `perl`, [`PERL_SUPPORT`].
pub fn inserted_arguments(path: &str) -> Vec<String> {
    if path != "usr/bin/perl" {
        return Vec::new();
    }
    vec![
        format!("-I{}/{PERL_SUPPORT_DIR}", super::emulation::DIR_IN_CHROOT),
        format!("-M{PERL_SUPPORT_MODULE}"),
    ]
}

/// What the twin of an interpreter's `package` is run for, to tell the
/// user; `None` for a package whose programs are twinned for any use.
pub fn purpose(package: &str) -> Option<&'static str> {
    if package == "perl-base" {
        Some("perl for deb-systemd-helper and update-rc.d")
    } else if crate::lock::make::python_minor(package, "-minimal").is_some() {
        Some("to byte-compile")
    } else {
        None
    }
}

/// Whether only the programs of `package` that have [`argument_rules`] may
/// be twinned: an interpreter, which runs anything.
fn restricted_package(package: &str) -> bool {
    purpose(package).is_some()
}

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

/// Whether `package`'s file `path` may have a twin: of an interpreter's
/// package, only the interpreter, which has [`argument_rules`].
fn may_twin(package: &str, path: &str) -> bool {
    if ALWAYS_EMULATED.contains(&path) {
        return false;
    }
    if restricted_package(package) {
        return !argument_rules(path).is_empty();
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

/// The [`TWINS_MANIFEST`] lines for the image's `package`, whose `.deb`
/// ships `md5sums` (its `control.tar` file) and the regular `files`
/// (path, size, mtime) of its `data.tar`, for the programs it may have twins
/// of: `<package> <md5> <size> <mtime> <path>`.
pub fn manifest_lines(package: &str, md5sums: &str, files: &[(String, u64, u64)]) -> String {
    let mut lines = String::new();
    for (md5, path) in md5sums
        .lines()
        .filter_map(|line| line.split_once("  "))
        .filter(|(_, path)| may_twin(package, path))
    {
        if let Some((_, size, mtime)) = files.iter().find(|(p, _, _)| p == path) {
            let _ = writeln!(lines, "{package} {md5} {size} {mtime} {path}");
        }
    }
    lines
}

/// One line of the manifest.
struct Packaged<'m> {
    package: &'m str,
    md5: &'m str,
    size: u64,
    mtime: i64,
    path: &'m str,
}

fn parse_manifest_line(line: &str) -> Option<Packaged<'_>> {
    let mut words = line.splitn(5, ' ');
    Some(Packaged {
        package: words.next()?,
        md5: words.next()?,
        size: words.next()?.parse().ok()?,
        mtime: words.next()?.parse().ok()?,
        path: words.next()?,
    })
}

/// Writes the table of the files of `root` that have a native twin in
/// `emulation` (see the module documentation); returns how many. Each
/// program of the manifest is listed where the tree has it, or will have
/// it once dpkg unpacks it (a package the command installs), unless the
/// tree holds a file there with the package's size and mtime but other
/// content. No manifest (no twins unpacked) gives an empty table. A file
/// already checked keeps its line without being read again while it is
/// the same file (device, inode, change time).
pub fn write_table(root: &Path, emulation: &Path) -> Result<usize, ChrootError> {
    let table_path = emulation.join(TWINS_TABLE);
    let manifest = match fs::read_to_string(emulation.join(TWINS_MANIFEST)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            fs::write(&table_path, "")?;
            fs::write(emulation.join(TWINS_ARGUMENTS), "")?;
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
    let mut arguments = String::new();
    for packaged in manifest.lines().filter_map(parse_manifest_line) {
        if !may_twin(packaged.package, packaged.path) {
            continue;
        }
        if let Some(line) = twin_line(&root, emulation, &packaged, &known)? {
            for rule in argument_rules(packaged.path) {
                let _ = writeln!(arguments, "native/{}\t{}", packaged.path, rule.join("\t"));
            }
            let inserted = inserted_arguments(packaged.path);
            if !inserted.is_empty() {
                let _ = writeln!(
                    arguments,
                    "+native/{}\t{}",
                    packaged.path,
                    inserted.join("\t")
                );
            }
            lines.push(line);
        }
    }
    let count = lines.len();
    let mut text = lines.join("\n");
    if count > 0 {
        text.push('\n');
    }
    let perl_dir = emulation.join(PERL_SUPPORT_DIR);
    fs::create_dir_all(&perl_dir)?;
    super::emulation::write_if_differs(
        PERL_SUPPORT
            .replace("@DIR@", super::emulation::DIR_IN_CHROOT)
            .as_bytes(),
        &perl_dir.join(format!("{PERL_SUPPORT_MODULE}.pm")),
    )?;
    // The arguments first: the handler reads the table, then them.
    fs::write(emulation.join(TWINS_ARGUMENTS), arguments)?;
    fs::write(&table_path, text)?;
    Ok(count)
}

/// Where the handler finds the tree's `path` (relative; `root` canonical):
/// its canonical path in the tree, through the tree's merged-/usr links,
/// for a file that is not there yet that of its nearest existing
/// directory; `None` when it resolves out of the tree.
fn path_in_tree(root: &Path, path: &str) -> Option<String> {
    let mut existing = root.join(path);
    let mut rest = Vec::new();
    let real = loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            break real;
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?.to_path_buf();
    };
    let mut in_tree = Path::new("/").join(real.strip_prefix(root).ok()?);
    in_tree.extend(rest.iter().rev());
    Some(in_tree.to_string_lossy().into_owned())
}

/// The table line for `packaged`, if its twin is a native program and the
/// tree has not got other content at its place with its size and mtime.
/// A line of `known` (the table before) is taken again without reading the
/// file.
fn twin_line(
    root: &Path,
    emulation: &Path,
    packaged: &Packaged<'_>,
    known: &BTreeSet<String>,
) -> Result<Option<String>, ChrootError> {
    let twin = format!("native/{}", packaged.path);
    let Some(in_tree) = path_in_tree(root, packaged.path) else {
        return Ok(None);
    };
    if in_tree.contains(char::is_whitespace) || twin.contains(char::is_whitespace) {
        return Ok(None);
    }
    let native = emulation.join(&twin);
    if crate::host::file::elf_identity(&native) != Some(X86_64)
        || !std::fs::symlink_metadata(&native).is_ok_and(|m| m.is_file())
    {
        return Ok(None);
    }
    let entry = format!("{in_tree} {} {} {twin}", packaged.size, packaged.mtime);
    let file = root.join(in_tree.trim_start_matches('/'));
    let meta = match std::fs::symlink_metadata(&file) {
        Ok(meta)
            if meta.is_file() && meta.size() == packaged.size && meta.mtime() == packaged.mtime =>
        {
            meta
        }
        // Not there (yet), or not the package's: the handler will not
        // match it until dpkg puts the package's file there.
        _ => return Ok(Some(format!("{entry} -"))),
    };
    let line = format!(
        "{entry} {}:{}:{}.{:09}",
        meta.dev(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    if known.contains(&line) {
        return Ok(Some(line));
    }
    Ok(
        (crate::host::file::elf_identity(&file) == Some(AARCH64)
            && md5_hex(&file)? == packaged.md5)
            .then_some(line),
    )
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

    /// The mtime the packages' files have.
    const MTIME: u64 = 1_700_000_000;

    fn elf(machine: u16) -> Vec<u8> {
        let mut header =
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00".to_vec();
        header.extend_from_slice(&machine.to_le_bytes());
        header.extend_from_slice(&[0u8; 44]);
        header
    }

    /// Writes an executable file with `bytes` and the packages' mtime.
    fn put(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
        fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(MTIME))
            .expect("mtime");
    }

    fn md5_of(bytes: &[u8]) -> String {
        hex::encode(md5::Md5::digest(bytes))
    }

    fn manifest_for(package: &str, files: &[(&str, &[u8])]) -> String {
        let md5sums: String = files
            .iter()
            .map(|(path, bytes)| format!("{}  {path}\n", md5_of(bytes)))
            .collect();
        let listed: Vec<(String, u64, u64)> = files
            .iter()
            .map(|(path, bytes)| (path.to_string(), bytes.len() as u64, MTIME))
            .collect();
        manifest_lines(package, &md5sums, &listed)
    }

    /// A merged-/usr tree holding the image's `usr/bin/sed` and
    /// `bin/uname`, and a `usr/bin/cat` an element replaced with a script
    /// of the packaged file's size; twins of those and of `usr/bin/grep`,
    /// which the tree has not got yet.
    fn fixture() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let emulation = dir.path().join("emulation");
        fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("symlink");
        let sed = elf(183);
        let uname = [elf(183), b"uname".to_vec()].concat();
        let cat = [elf(183), b"cat".to_vec()].concat();
        let grep = [elf(183), b"grep".to_vec()].concat();
        put(&root.join("usr/bin/sed"), &sed);
        put(&root.join("usr/bin/uname"), &uname);
        let mut script = b"#!/bin/sh\n".to_vec();
        script.resize(cat.len(), b'#');
        put(&root.join("usr/bin/cat"), &script);
        for path in ["usr/bin/sed", "bin/uname", "usr/bin/cat", "bin/grep"] {
            put(&emulation.join("native").join(path), &elf(62));
        }
        let manifest = [
            manifest_for("sed", &[("usr/bin/sed", &sed)]),
            manifest_for("coreutils", &[("bin/uname", &uname), ("usr/bin/cat", &cat)]),
            manifest_for("grep", &[("bin/grep", &grep)]),
        ]
        .concat();
        assert!(!manifest.contains("uname"), "{manifest}");
        fs::write(emulation.join(TWINS_MANIFEST), manifest).expect("write");
        (dir, root, emulation)
    }

    fn table(emulation: &Path) -> Vec<String> {
        fs::read_to_string(emulation.join(TWINS_TABLE))
            .expect("read")
            .lines()
            .map(|line| line.rsplit_once(' ').expect("a check").0.to_string())
            .collect()
    }

    #[test]
    fn of_dpkg_only_the_archive_tools_are_twinned() {
        let files: Vec<(String, u64, u64)> = [
            "usr/bin/dpkg",
            "usr/bin/dpkg-deb",
            "usr/bin/dpkg-query",
            "usr/bin/dpkg-split",
        ]
        .iter()
        .map(|path| (path.to_string(), 10, MTIME))
        .collect();
        let lines = manifest_lines(
            "dpkg",
            "aa  usr/bin/dpkg\nbb  usr/bin/dpkg-deb\ncc  usr/bin/dpkg-query\ndd  usr/bin/dpkg-split\n",
            &files,
        );
        assert_eq!(
            lines,
            "dpkg bb 10 1700000000 usr/bin/dpkg-deb\ndpkg dd 10 1700000000 usr/bin/dpkg-split\n"
        );
    }

    #[test]
    fn unchanged_and_coming_programs_are_listed_replaced_ones_and_uname_are_not() {
        let (_dir, root, emulation) = fixture();
        assert_eq!(write_table(&root, &emulation).expect("table"), 2);
        // grep is not in the tree yet: listed at its canonical place, for
        // when the command's dpkg unpacks it.
        assert_eq!(
            table(&emulation),
            vec![
                "/usr/bin/sed 64 1700000000 native/usr/bin/sed",
                "/usr/bin/grep 68 1700000000 native/bin/grep",
            ]
        );
    }

    #[test]
    fn a_program_changed_after_the_table_is_dropped_from_it() {
        let (_dir, root, emulation) = fixture();
        assert_eq!(write_table(&root, &emulation).expect("table"), 2);
        // Replaced by other content of the same size and mtime: no longer
        // the package's, so no longer twinned.
        fs::remove_file(root.join("usr/bin/sed")).expect("rm");
        let mut other = elf(183);
        if let Some(last) = other.last_mut() {
            *last = 1;
        }
        put(&root.join("usr/bin/sed"), &other);
        assert_eq!(write_table(&root, &emulation).expect("table"), 1);
        assert_eq!(
            table(&emulation),
            vec!["/usr/bin/grep 68 1700000000 native/bin/grep"]
        );
    }

    #[test]
    fn a_python_interpreter_is_twinned_only_to_byte_compile() {
        let (_dir, root, emulation) = fixture();
        let python = [elf(183), b"python".to_vec()].concat();
        put(&root.join("usr/bin/python3.11"), &python);
        put(&emulation.join("native/usr/bin/python3.11"), &elf(62));
        put(&emulation.join("native/usr/bin/pydoc3.11"), &elf(62));
        let mut manifest = fs::read_to_string(emulation.join(TWINS_MANIFEST)).expect("read");
        manifest.push_str(&manifest_for(
            "python3.11-minimal",
            &[
                ("usr/bin/python3.11", &python),
                ("usr/bin/pydoc3.11", b"#!"),
            ],
        ));
        assert!(!manifest.contains("pydoc"), "{manifest}");
        fs::write(emulation.join(TWINS_MANIFEST), manifest).expect("write");
        assert_eq!(write_table(&root, &emulation).expect("table"), 3);
        let arguments = fs::read_to_string(emulation.join(TWINS_ARGUMENTS)).expect("read");
        let lines: Vec<&str> = arguments.lines().collect();
        assert!(
            lines.contains(&"native/usr/bin/python3.11\t/usr/bin/py3compile"),
            "{arguments}"
        );
        assert!(
            lines.contains(&"native/usr/bin/python3.11\t-E\t-S\t/usr/lib/python3.11/py_compile.py"),
            "{arguments}"
        );
        assert!(
            lines
                .iter()
                .all(|line| line.starts_with("native/usr/bin/python3.11\t")),
            "only the interpreter is restricted: {arguments}"
        );
        assert_eq!(argument_rules("usr/bin/sed"), Vec::<Vec<String>>::new());
        assert_eq!(
            argument_rules("usr/bin/python3.11-config"),
            Vec::<Vec<String>>::new()
        );
    }

    #[test]
    fn perl_is_twinned_only_for_the_service_helpers_with_its_support_module() {
        let (_dir, root, emulation) = fixture();
        let perl = [elf(183), b"perl".to_vec()].concat();
        put(&root.join("usr/bin/perl"), &perl);
        put(&emulation.join("native/usr/bin/perl"), &elf(62));
        let mut manifest = fs::read_to_string(emulation.join(TWINS_MANIFEST)).expect("read");
        manifest.push_str(&manifest_for("perl-base", &[("usr/bin/perl", &perl)]));
        fs::write(emulation.join(TWINS_MANIFEST), manifest).expect("write");
        assert_eq!(write_table(&root, &emulation).expect("table"), 3);
        let arguments = fs::read_to_string(emulation.join(TWINS_ARGUMENTS)).expect("read");
        assert_eq!(
            arguments,
            "native/usr/bin/perl\t/usr/bin/deb-systemd-helper\n\
             native/usr/bin/perl\t/usr/sbin/update-rc.d\n\
             +native/usr/bin/perl\t-I/dev/.kiln-emulation/perl\t-MKilnNativeTwin\n"
        );
        let module =
            fs::read_to_string(emulation.join("perl/KilnNativeTwin.pm")).expect("the module");
        assert!(
            module.contains("my $native = '/dev/.kiln-emulation/native';"),
            "{module}"
        );
        assert!(module.contains("$^X = '/usr/bin/perl';"), "{module}");
        assert!(!module.contains("@DIR@"), "{module}");
        assert_eq!(
            purpose("perl-base"),
            Some("perl for deb-systemd-helper and update-rc.d")
        );
        assert_eq!(purpose("python3.11-minimal"), Some("to byte-compile"));
        assert_eq!(purpose("sed"), None);
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

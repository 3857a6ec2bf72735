//! Test helpers of the output stage: a root tree holding every kind of file
//! and metadata an image can hold, a description of a tree to compare two
//! of them entry by entry, and a way to run host tools that fails the test
//! (never skips it) when the tool is missing.
//!
//! The tests that use it must run as root: they create devices and files
//! owned by other users.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, lutimes, makedev, mknod};
use nix::sys::time::TimeVal;

use crate::host::command::{self, CommandError};
use crate::host::walk;

/// The size of the test disk: 64 MiB.
pub(crate) const DISK_BYTES: u64 = 64 * 1024 * 1024;

/// The `SOURCE_DATE_EPOCH` of the tests: 2023-11-14.
pub(crate) const EPOCH: u64 = 1_700_000_000;

/// The modification time of every fixture entry but one.
const PAST: i64 = 1_600_000_000;

/// The modification time of the one entry that must be clamped.
const FUTURE: i64 = EPOCH as i64 + 365 * 86_400;

/// A version 2 `security.capability` granting `cap_net_raw` (bit 13) in
/// the permitted set, effective: what `setcap cap_net_raw+ep` writes.
const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The path of the fixture's long file: 150 bytes below the root.
pub(crate) fn long_path() -> String {
    format!("deep/{}/{}/file", "a".repeat(60), "b".repeat(79))
}

/// A fixture tree in a temporary directory.
pub(crate) struct Fixture {
    /// The temporary directory; outputs of the test go here too.
    pub(crate) dir: tempfile::TempDir,
    /// The tree: `dir/tree`.
    pub(crate) tree: PathBuf,
}

/// The kernel versions of [`Fixture::bootable`]: the older, the newer.
pub(crate) const KERNELS: [&str; 2] = ["6.1.0-1-amd64", "6.1.0-2-amd64"];

impl Fixture {
    /// Builds the tree. Panics (fails the test) when not root.
    pub(crate) fn build() -> Fixture {
        Fixture::build_with(false)
    }

    /// The tree of [`Fixture::build`] with what a ramdisk is made from: two
    /// kernels in `/boot` ([`KERNELS`]) with their modules in
    /// `/usr/lib/modules` (a merged `/usr`: `/lib` links to `usr/lib`), the
    /// image's own initramfs, an `/etc/fstab` mounting a root filesystem,
    /// and translations in `/usr/share/locale`.
    pub(crate) fn bootable() -> Fixture {
        Fixture::build_with(true)
    }

    fn build_with(bootable: bool) -> Fixture {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the output tests create devices and foreign owners: run them as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        let t = |p: &str| tree.join(p);
        for d in ["etc", "usr/bin", "srv", "var/mail", "tmp", "dev", "run"] {
            fs::create_dir_all(t(d)).expect("mkdir");
        }
        fs::create_dir_all(t(&long_path()).parent().expect("parent")).expect("mkdir");
        fs::write(t("etc/motd"), b"built by kiln\n").expect("write");
        fs::write(t(&long_path()), b"far down\n").expect("write");
        fs::write(t("usr/bin/su"), b"#!/bin/sh\n").expect("write");
        fs::write(t("usr/bin/ping"), b"\x7fELF not really").expect("write");
        fs::write(t("srv/owned"), b"theirs").expect("write");
        fs::write(t("srv/hard-a"), b"one inode, two names").expect("write");
        fs::hard_link(t("srv/hard-a"), t("srv/hard-b")).expect("link");
        fs::write(t("srv/future"), b"from the future").expect("write");
        fs::write(t("srv/user-attr"), b"tagged").expect("write");
        fs::write(t("srv/empty"), b"").expect("write");
        std::os::unix::fs::symlink("../usr/share/zoneinfo/UTC", t("etc/localtime"))
            .expect("symlink");
        let long_target = format!("../{}", "x".repeat(120));
        std::os::unix::fs::symlink(&long_target, t("srv/long-link")).expect("symlink");
        mknod(
            &t("dev/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .expect("mknod c 1 3");
        mknod(
            &t("dev/loop9"),
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o660),
            makedev(7, 9),
        )
        .expect("mknod b 7 9");
        nix::unistd::mkfifo(&t("dev/initctl"), Mode::from_bits_truncate(0o600)).expect("mkfifo");
        drop(std::os::unix::net::UnixListener::bind(t("run/kiln.sock")).expect("socket"));
        if bootable {
            add_boot_files(&tree);
        }

        std::os::unix::fs::chown(t("srv/owned"), Some(1234), Some(5678)).expect("chown");
        std::os::unix::fs::lchown(t("srv/long-link"), Some(42), Some(43)).expect("lchown");
        std::os::unix::fs::chown(t("dev/loop9"), Some(0), Some(6)).expect("chown");
        std::os::unix::fs::chown(t("var/mail"), Some(0), Some(8)).expect("chown");
        let modes = [
            ("", 0o755),
            ("usr/bin/su", 0o4755),
            ("usr/bin/ping", 0o755),
            ("var/mail", 0o2775),
            ("tmp", 0o1777),
            ("srv/owned", 0o640),
            ("dev/null", 0o666),
            ("dev/loop9", 0o660),
        ];
        for (path, mode) in modes {
            fs::set_permissions(t(path), fs::Permissions::from_mode(mode)).expect("chmod");
        }

        xattr::set(t("srv/user-attr"), "user.kiln", b"element=demo").expect("user xattr");
        set_capability(&t("usr/bin/ping"));

        // Times last: creating entries changes their directories' times.
        for (path, _) in describe_tree(&tree) {
            let path = if path == "." { tree.clone() } else { t(&path) };
            set_mtime(&path, PAST);
        }
        set_mtime(&t("srv/future"), FUTURE);
        Fixture { dir, tree }
    }
}

/// The files of [`Fixture::bootable`].
fn add_boot_files(tree: &Path) {
    let t = |p: &str| tree.join(p);
    for version in KERNELS {
        let modules = format!("usr/lib/modules/{version}");
        for dir in ["kernel/sound", "kernel/drivers/net"] {
            fs::create_dir_all(t(&format!("{modules}/{dir}"))).expect("mkdir");
        }
        fs::write(t(&format!("{modules}/modules.dep")), b"").expect("write");
        fs::write(
            t(&format!("{modules}/kernel/sound/snd.ko")),
            format!("sound driver of {version}").repeat(100),
        )
        .expect("write");
        fs::write(
            t(&format!("{modules}/kernel/drivers/net/e1000.ko")),
            format!("network driver of {version}").repeat(100),
        )
        .expect("write");
        fs::create_dir_all(t("boot")).expect("mkdir");
        fs::write(
            t(&format!("boot/vmlinuz-{version}")),
            format!("kernel {version}"),
        )
        .expect("write");
        fs::write(
            t(&format!("boot/initrd.img-{version}")),
            format!("disk initramfs of {version}").repeat(1000),
        )
        .expect("write");
    }
    std::os::unix::fs::symlink("usr/lib", t("lib")).expect("symlink");
    fs::create_dir_all(t("usr/share/locale/de/LC_MESSAGES")).expect("mkdir");
    fs::write(t("usr/share/locale/de/LC_MESSAGES/kiln.mo"), b"Abbild").expect("write");
    fs::write(
        t("etc/fstab"),
        b"UUID=0b7e6bd0-5e02-4b0b-9a4c-1d0e8d9e3f11 / ext4 errors=remount-ro 0 1\n",
    )
    .expect("write");
}

/// Makes `dir/disk.raw`: a 64 MiB sparse raw file holding an ext4
/// filesystem with one file, as `mke2fs -F -t ext4 file 64M` makes it.
pub(crate) fn raw_ext4(dir: &Path) -> PathBuf {
    let raw = dir.join("disk.raw");
    let content = dir.join("content");
    fs::create_dir(&content).expect("mkdir");
    fs::write(content.join("hello"), b"hello from kiln\n".repeat(1000)).expect("write");
    let content_arg = content.to_string_lossy().into_owned();
    let raw_arg = raw.to_string_lossy().into_owned();
    run_tool(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            &content_arg,
            &raw_arg,
            "64M",
        ],
    );
    assert_eq!(fs::metadata(&raw).expect("stat").len(), DISK_BYTES);
    raw
}

/// Gives `path` (not following a symlink) the modification time `mtime`.
fn set_mtime(path: &Path, mtime: i64) {
    let time = TimeVal::new(mtime, 0);
    lutimes(path, &time, &time).expect("lutimes");
}

/// Gives `path` `cap_net_raw+ep`: with `setcap` when it is installed, else
/// by writing the attribute's bytes.
fn set_capability(path: &Path) {
    match command::run(
        "setcap",
        &["cap_net_raw+ep", &path.to_string_lossy()],
        "libcap2-bin",
    ) {
        Ok(finished) => assert!(finished.success(), "setcap: {}", finished.stderr),
        Err(CommandError::NotFound { .. }) => {
            xattr::set(path, "security.capability", &CAP_NET_RAW_EP).expect("capability");
        }
        Err(e) => panic!("{e}"),
    }
}

/// What a comparison of two trees looks at, for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo` or `socket`.
    pub(crate) kind: &'static str,
    /// Permission bits with setuid, setgid and sticky.
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Size of a file or symlink (0 for a directory).
    pub(crate) size: u64,
    /// SHA-256 of a file's content.
    pub(crate) content: Option<String>,
    /// A symlink's target.
    pub(crate) target: Option<String>,
    /// A device's number.
    pub(crate) rdev: u64,
    /// How many names the inode has.
    pub(crate) nlink: u64,
    /// Extended attributes, sorted.
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
    pub(crate) mtime: i64,
}

/// Describes every entry below `root` (the root itself as `.`), by path.
pub(crate) fn describe_tree(root: &Path) -> BTreeMap<String, Described> {
    let mut out = BTreeMap::new();
    for entry in walk::tree(root).follow_root_links(false) {
        let entry = entry.expect("walk");
        let path = entry.path();
        let name = match walk::relative(&entry, root) {
            relative if relative.as_os_str().is_empty() => ".".to_string(),
            relative => relative.to_string_lossy().into_owned(),
        };
        let meta = entry.metadata().expect("stat");
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let mut xattrs: Vec<(String, Vec<u8>)> = xattr::list(path)
            .expect("list xattrs")
            .map(|n| {
                let value = xattr::get(path, &n).expect("xattr").unwrap_or_default();
                (n.to_string_lossy().into_owned(), value)
            })
            .collect();
        xattrs.sort();
        out.insert(
            name,
            Described {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: if ft.is_dir() { 0 } else { meta.len() },
                content: ft.is_file().then(|| sha256_of(path)),
                target: ft.is_symlink().then(|| {
                    fs::read_link(path)
                        .expect("readlink")
                        .to_string_lossy()
                        .into_owned()
                }),
                rdev: meta.rdev(),
                nlink: if ft.is_dir() { 0 } else { meta.nlink() },
                xattrs,
                mtime: meta.mtime(),
            },
        );
    }
    out
}

/// The SHA-256 of a file, in hexadecimal.
pub(crate) fn sha256_of(path: &Path) -> String {
    crate::cache::Digest::of_reader(fs::File::open(path).expect("open"))
        .expect("hash")
        .sha256
}

/// The Debian package of each tool the tests run.
fn package_of(program: &str) -> &'static str {
    match program {
        "qemu-img" => "qemu-utils",
        "mke2fs" => "e2fsprogs",
        "tar" => "tar",
        "unsquashfs" | "mksquashfs" => "squashfs-tools",
        "cpio" => "cpio",
        "bsdtar" => "libarchive-tools",
        "zstd" => "zstd",
        "gzip" => "gzip",
        _ => "unknown",
    }
}

/// Runs a host tool and returns its stdout; fails the test when the tool
/// is missing or fails.
pub(crate) fn run_tool(program: &str, args: &[&str]) -> String {
    let finished = match command::run(program, args, package_of(program)) {
        Ok(finished) => finished,
        Err(e) => panic!("{e}"),
    };
    assert!(
        finished.success(),
        "{program} {args:?} failed ({:?}): {}",
        finished.code,
        finished.stderr
    );
    String::from_utf8_lossy(&finished.stdout).into_owned()
}

/// Runs `qemu-img` with arguments that make it print JSON, and parses it.
pub(crate) fn qemu_img_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run_tool("qemu-img", args)).expect("qemu-img JSON")
}

//! Taking a root tree out of an image (`kiln::distro::image::extract`), as
//! root with the real tools, from fixture images of every format kiln
//! reads: a raw ext4, GPT and MBR disks, a qcow2, xfs, a btrfs disk laid
//! out as Fedora's (subvolumes `root` and `home`, a separate `/boot`),
//! tarballs and a squashfs. Each extracted tree must equal the fixture
//! tree entry for entry (owners, modes, xattrs with SELinux labels and
//! capabilities, ACLs, hardlinks, device nodes, timestamps), keep its
//! holes, and leave no mount or loop device behind. Bad inputs (a web
//! page, a disk with no root, another architecture) fail clearly.
//!
//! Each test runs in a private mount namespace of its own thread, as
//! `kiln build` runs extraction in the build's.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln::distro::image::extract::{self, ExtractError, Extracted, ImageFormat};
use kiln::manifest::Arch;

use crate::common::{loop_devices_under, mounts_under, tool, tree_inventory};

const SELINUX_LABEL: &[u8] = b"system_u:object_r:etc_t:s0";
const SPARSE_BYTES: u64 = 64 * 1024 * 1024;

/// Root, and a private mount namespace for this test's thread.
fn isolated() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "extracting an image needs root: run the suite as root (scripts/test)"
    );
    kiln::chroot::namespace::enter_build_namespace().expect("a private mount namespace");
}

/// A small tree with everything a copy can lose, in `dir/tree`.
fn fixture_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let at = |relative: &str| tree.join(relative);
    for sub in [
        "bin",
        "usr/bin",
        "usr/share/doc",
        "etc",
        "dev",
        "srv",
        "var",
        "boot",
        "home",
    ] {
        std::fs::create_dir_all(at(sub)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", at("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", at("bin/sh")).expect("symlink");
    // Absolute: it must be followed inside the tree, not on the host.
    std::os::unix::fs::symlink("/bin/busybox", at("usr/bin/env")).expect("symlink");
    std::fs::write(at("etc/os-release"), "ID=kilntest\nVERSION_ID=1\n").expect("write");
    std::fs::write(at("usr/share/doc/one"), "the same file twice\n").expect("write");
    std::fs::hard_link(at("usr/share/doc/one"), at("usr/share/doc/two")).expect("link");
    std::fs::copy("/bin/busybox", at("usr/bin/ping")).expect("copy");
    tool(
        "setcap",
        &["cap_net_raw+ep", at("usr/bin/ping").to_str().unwrap()],
    );
    std::fs::write(at("etc/labelled"), "selinux\n").expect("write");
    xattr::set(at("etc/labelled"), "security.selinux", SELINUX_LABEL).expect("setfattr");
    xattr::set(at("etc/labelled"), "user.kiln", b"kept").expect("setfattr");
    tool(
        "mknod",
        &[
            "-m",
            "600",
            at("dev/console").to_str().unwrap(),
            "c",
            "5",
            "1",
        ],
    );
    std::fs::write(at("srv/owned"), "1234:5678\n").expect("write");
    tool("chown", &["1234:5678", at("srv/owned").to_str().unwrap()]);
    tool("chmod", &["0640", at("srv/owned").to_str().unwrap()]);
    tool(
        "setfacl",
        &["-m", "u:4321:r", at("srv/owned").to_str().unwrap()],
    );
    let sparse = at("var/sparse");
    tool(
        "truncate",
        &["-s", &SPARSE_BYTES.to_string(), sparse.to_str().unwrap()],
    );
    tool(
        "dd",
        &[
            "if=/etc/hostname",
            &format!("of={}", sparse.display()),
            "bs=4096",
            "seek=4000",
            "conv=notrunc",
            "status=none",
        ],
    );
    // Fixed timestamps on everything, directories last.
    tool(
        "find",
        &[
            tree.to_str().unwrap(),
            "-depth",
            "-exec",
            "touch",
            "-h",
            "-d",
            "@1000000000",
            "{}",
            "+",
        ],
    );
    tree
}

/// Asserts that `root` holds what `tree` holds, exactly.
fn assert_same_tree(tree: &Path, root: &Path, acls: bool) {
    let normalise = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            // The top directory is the caller's, and a filesystem's
            // lost+found is not part of the tree.
            .filter(|line| !line.starts_with(" mode=") && !line.starts_with("lost+found"))
            .map(|line| {
                if acls {
                    line
                } else {
                    line.replace(&acl_xattr(tree), "")
                }
            })
            .collect()
    };
    let want = normalise(tree_inventory(tree, i64::MAX));
    let got = normalise(tree_inventory(root, i64::MAX));
    assert_eq!(got, want, "the extracted tree differs from the fixture");

    let one = std::fs::metadata(root.join("usr/share/doc/one")).unwrap();
    let two = std::fs::metadata(root.join("usr/share/doc/two")).unwrap();
    assert_eq!(one.ino(), two.ino(), "the hardlink pair is still one inode");
    assert_eq!(one.nlink(), 2);
    let capability = xattr::get(root.join("usr/bin/ping"), "security.capability")
        .unwrap()
        .expect("ping keeps its file capability");
    assert_eq!(
        Some(capability),
        xattr::get(tree.join("usr/bin/ping"), "security.capability").unwrap()
    );
    assert_eq!(
        xattr::get(root.join("etc/labelled"), "security.selinux")
            .unwrap()
            .as_deref(),
        Some(SELINUX_LABEL),
        "the SELinux label is kept"
    );
    let console = std::fs::symlink_metadata(root.join("dev/console")).unwrap();
    assert!(
        console.file_type().is_char_device(),
        "dev/console is a device"
    );
    assert_eq!(console.rdev(), nix::sys::stat::makedev(5, 1));
    let owned = std::fs::metadata(root.join("srv/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    assert_eq!(owned.mode() & 0o7777, 0o640);
    assert_eq!(owned.mtime(), 1_000_000_000, "timestamps are kept");
    if acls {
        let acl = tool(
            "getfacl",
            &["-cn", root.join("srv/owned").to_str().unwrap()],
        );
        assert!(acl.contains("user:4321:r--"), "the ACL is kept: {acl}");
    }
    let sparse = std::fs::metadata(root.join("var/sparse")).unwrap();
    assert_eq!(sparse.len(), SPARSE_BYTES);
    assert!(
        sparse.blocks() * 512 < 1024 * 1024,
        "var/sparse keeps its holes ({} blocks)",
        sparse.blocks()
    );
}

/// The hex form of srv/owned's ACL xattr as tree_inventory shows it.
fn acl_xattr(tree: &Path) -> String {
    let value = xattr::get(tree.join("srv/owned"), "system.posix_acl_access")
        .unwrap()
        .unwrap_or_default();
    format!("system.posix_acl_access={}", hex::encode(value))
}

/// Nothing mounted under `dir` (in this namespace or the host's), no loop
/// device backed by a file under it.
fn assert_nothing_left(dir: &Path) {
    assert_eq!(
        kiln::chroot::mounts::mounts_under(dir).unwrap(),
        Vec::<PathBuf>::new(),
        "nothing stays mounted in the build's namespace"
    );
    assert_eq!(mounts_under(dir), Vec::<String>::new(), "nor on the host");
    assert_eq!(
        loop_devices_under(dir),
        Vec::<String>::new(),
        "no loop device stays"
    );
}

/// Extracts `image` for amd64 into a fresh root under `dir`.
fn extract_into(dir: &Path, image: &Path) -> (PathBuf, Result<Extracted, ExtractError>) {
    let root = dir.join("root");
    let work = dir.join("work");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let mut log = Vec::new();
    let result = extract::extract(image, &root, &work, Arch::Amd64, &mut log);
    eprintln!("{}", String::from_utf8_lossy(&log));
    assert_nothing_left(dir);
    kiln::chroot::remove_dir_all_checked(&work).expect("work is removable");
    (root, result)
}

fn extract_ok(dir: &Path, image: &Path, format: ImageFormat, acls: bool) -> Extracted {
    assert_eq!(extract::detect(image).unwrap(), format);
    let (root, result) = extract_into(dir, image);
    let extracted = result.unwrap_or_else(|e| panic!("extract {}: {e}", image.display()));
    assert_eq!(extracted.format, format);
    assert_same_tree(&dir.join("tree"), &root, acls);
    extracted
}

/// An ext4 filesystem image of `tree`, labelled `label`.
fn ext4_image(tree: &Path, path: &Path, label: &str) {
    let mut args = vec!["-q", "-F", "-t", "ext4", "-d", tree.to_str().unwrap()];
    if !label.is_empty() {
        args.extend(["-L", label]);
    }
    args.extend([path.to_str().unwrap(), "64M"]);
    tool("mke2fs", &args);
}

/// A disk of `partitions` (sfdisk type, filesystem image file or none,
/// size in MiB), with the table `label` (`gpt` or `dos`).
fn disk(path: &Path, label: &str, partitions: &[(&str, Option<&Path>, u64)]) {
    let total: u64 = partitions.iter().map(|(_, _, mib)| mib).sum::<u64>() + 2;
    tool(
        "truncate",
        &["-s", &format!("{total}M"), path.to_str().unwrap()],
    );
    let mut script = format!("label: {label}\n");
    for (kind, _, mib) in partitions {
        script.push_str(&format!("size={mib}MiB, type={kind}\n"));
    }
    let mut child = std::process::Command::new("sfdisk")
        .args(["-q", path.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk {script}");
    let table: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", path.to_str().unwrap()])).unwrap();
    for (index, (_, content, _)) in partitions.iter().enumerate() {
        let Some(content) = content else { continue };
        let start = table["partitiontable"]["partitions"][index]["start"]
            .as_u64()
            .unwrap();
        tool(
            "dd",
            &[
                &format!("if={}", content.display()),
                &format!("of={}", path.display()),
                "bs=512",
                &format!("seek={start}"),
                "conv=notrunc,sparse",
                "status=none",
            ],
        );
    }
}

const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

fn vfat_image(path: &Path) {
    tool("truncate", &["-s", "8M", path.to_str().unwrap()]);
    tool("mkfs.vfat", &["-n", "ESP", path.to_str().unwrap()]);
}

fn gpt_disk(dir: &Path) -> PathBuf {
    let tree = fixture_tree(dir);
    let rootfs = dir.join("rootfs.ext4");
    ext4_image(&tree, &rootfs, "");
    let esp = dir.join("esp.vfat");
    vfat_image(&esp);
    let image = dir.join("disk.raw");
    disk(
        &image,
        "gpt",
        &[(ESP, Some(&esp), 8), (ROOT_X86_64, Some(&rootfs), 64)],
    );
    std::fs::remove_file(rootfs).unwrap();
    image
}

#[test]
fn a_raw_ext4_filesystem_is_copied_whole() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let tree = fixture_tree(temp.path());
    let image = temp.path().join("rootfs.img");
    ext4_image(&tree, &image, "cloudimg-rootfs");
    let extracted = extract_ok(temp.path(), &image, ImageFormat::RawFilesystem, true);
    assert_eq!(
        extracted.root_filesystem,
        "ext4 on the whole image (label cloudimg-rootfs)"
    );
    assert!(extracted.timings.iter().any(|(step, _)| *step == "copy"));
}

#[test]
fn a_gpt_disk_gives_its_root_partition_by_type() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let image = gpt_disk(temp.path());
    let extracted = extract_ok(temp.path(), &image, ImageFormat::RawDisk, true);
    assert_eq!(extracted.root_filesystem, "ext4 on partition 2");
}

#[test]
fn an_mbr_disk_gives_its_largest_linux_filesystem() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let tree = fixture_tree(temp.path());
    let rootfs = temp.path().join("rootfs.ext4");
    ext4_image(&tree, &rootfs, "");
    let small = temp.path().join("small.ext4");
    let empty = temp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    ext4_image(&empty, &small, "");
    let swap = temp.path().join("swap");
    tool("truncate", &["-s", "8M", swap.to_str().unwrap()]);
    tool("mkswap", &[swap.to_str().unwrap()]);
    let image = temp.path().join("disk.raw");
    disk(
        &image,
        "dos",
        &[
            ("83", Some(&small), 64),
            ("82", Some(&swap), 8),
            ("83", Some(&rootfs), 80),
        ],
    );
    let extracted = extract_ok(temp.path(), &image, ImageFormat::RawDisk, true);
    assert_eq!(extracted.root_filesystem, "ext4 on partition 3");
}

#[test]
fn a_qcow2_disk_is_converted_then_read() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let raw = gpt_disk(temp.path());
    let image = temp.path().join("disk.qcow2");
    tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            raw.to_str().unwrap(),
            image.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&raw).unwrap();
    let extracted = extract_ok(temp.path(), &image, ImageFormat::Qcow2, true);
    assert_eq!(extracted.root_filesystem, "ext4 on partition 2");
    let steps: Vec<&str> = extracted.timings.iter().map(|(step, _)| *step).collect();
    for step in ["convert", "probe", "mount", "copy", "check-arch"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }
    assert!(
        !temp.path().join("work/image.raw").exists(),
        "the converted disk is not left in work"
    );
}

/// Makes a filesystem on `path` with `mkfs`, mounts it and runs `fill`
/// on the mount point.
fn filesystem_filled(dir: &Path, path: &Path, mkfs: &[&str], fill: impl FnOnce(&Path)) {
    tool("truncate", &["-s", "320M", path.to_str().unwrap()]);
    let mut args = mkfs[1..].to_vec();
    args.push(path.to_str().unwrap());
    tool(mkfs[0], &args);
    let mnt = dir.join("fill");
    std::fs::create_dir_all(&mnt).unwrap();
    tool(
        "mount",
        &["-o", "loop", path.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    fill(&mnt);
    tool("umount", &[mnt.to_str().unwrap()]);
    std::fs::remove_dir(&mnt).unwrap();
}

fn copy_tree(tree: &Path, to: &Path) {
    tool(
        "cp",
        &["-a", &format!("{}/.", tree.display()), to.to_str().unwrap()],
    );
}

#[test]
fn an_xfs_filesystem_is_read_without_recovery() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let tree = fixture_tree(temp.path());
    let image = temp.path().join("rootfs.xfs");
    filesystem_filled(
        temp.path(),
        &image,
        &["mkfs.xfs", "-q", "-L", "root"],
        |mnt| {
            copy_tree(&tree, mnt);
        },
    );
    let extracted = extract_ok(temp.path(), &image, ImageFormat::RawFilesystem, true);
    assert_eq!(
        extracted.root_filesystem,
        "xfs on the whole image (label root)"
    );
}

/// A disk laid out as Fedora's cloud image: `/boot` as ext4 on partition
/// 1, a btrfs on partition 2 with subvolumes `root` and `home`, an fstab
/// naming both by label.
#[test]
fn a_btrfs_root_subvolume_gets_home_and_boot_from_fstab() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let tree = fixture_tree(dir);
    std::fs::write(
        tree.join("etc/fstab"),
        "LABEL=fedora / btrfs subvol=root,compress=zstd:1 0 0\n\
         LABEL=boot /boot ext4 defaults 1 2\n\
         LABEL=fedora /home btrfs subvol=home,compress=zstd:1 0 0\n",
    )
    .unwrap();
    tool(
        "touch",
        &[
            "-d",
            "@1000000000",
            tree.join("etc/fstab").to_str().unwrap(),
            tree.join("etc").to_str().unwrap(),
        ],
    );

    let boot_tree = dir.join("boot-tree");
    std::fs::create_dir(&boot_tree).unwrap();
    std::fs::write(boot_tree.join("vmlinuz"), "a kernel\n").unwrap();
    let boot = dir.join("boot.ext4");
    ext4_image(&boot_tree, &boot, "boot");

    let btrfs = dir.join("root.btrfs");
    filesystem_filled(dir, &btrfs, &["mkfs.btrfs", "-q", "-L", "fedora"], |mnt| {
        for subvolume in ["root", "home"] {
            tool(
                "btrfs",
                &[
                    "-q",
                    "subvolume",
                    "create",
                    mnt.join(subvolume).to_str().unwrap(),
                ],
            );
        }
        copy_tree(&tree, &mnt.join("root"));
        std::fs::create_dir(mnt.join("home/user")).unwrap();
        std::fs::write(mnt.join("home/user/notes"), "in the home subvolume\n").unwrap();
        tool(
            "chown",
            &["-R", "1000:1000", mnt.join("home/user").to_str().unwrap()],
        );
    });
    let image = dir.join("disk.raw");
    disk(
        &image,
        "gpt",
        &[(LINUX, Some(&boot), 64), (LINUX, Some(&btrfs), 320)],
    );
    std::fs::remove_file(&btrfs).unwrap();

    assert_eq!(extract::detect(&image).unwrap(), ImageFormat::RawDisk);
    let (root, result) = extract_into(dir, &image);
    let extracted = result.unwrap();
    assert_eq!(
        extracted.root_filesystem,
        "btrfs on partition 2 (label fedora) (subvolume root)"
    );
    assert_eq!(
        extracted.grafted,
        [
            "/boot: ext4 on partition 1 (label boot)",
            "/home: btrfs subvolume home"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("boot/vmlinuz")).unwrap(),
        "a kernel\n"
    );
    let notes = std::fs::metadata(root.join("home/user/notes")).unwrap();
    assert_eq!((notes.uid(), notes.gid()), (1000, 1000));
    assert!(!root.join("boot/lost+found").exists());
    // Apart from what was grafted in, the root subvolume's tree exactly.
    std::fs::remove_file(root.join("boot/vmlinuz")).unwrap();
    std::fs::remove_dir_all(root.join("home/user")).unwrap();
    for dir in ["boot", "home"] {
        tool(
            "touch",
            &["-d", "@1000000000", root.join(dir).to_str().unwrap()],
        );
        tool("chmod", &["755", root.join(dir).to_str().unwrap()]);
    }
    assert_same_tree(&tree, &root, true);
}

fn tarball(dir: &Path, tree: &Path, name: &str, compression: &str) -> PathBuf {
    let image = dir.join(name);
    let mut args = vec![
        "--create",
        "--xattrs",
        "--xattrs-include=*",
        "--acls",
        "--numeric-owner",
        "--sparse",
        "-C",
        tree.to_str().unwrap(),
        "-f",
        image.to_str().unwrap(),
    ];
    if !compression.is_empty() {
        args.push(compression);
    }
    args.push(".");
    tool("tar", &args);
    image
}

#[test]
fn tarballs_plain_gzip_xz_and_zstd_are_unpacked_whole() {
    isolated();
    for (name, compression) in [
        ("root.tar", ""),
        ("root.tar.gz", "--gzip"),
        ("root.tar.xz", "--xz"),
        ("root.tar.zst", "--zstd"),
    ] {
        let temp = tempfile::tempdir().unwrap();
        let tree = fixture_tree(temp.path());
        let image = tarball(temp.path(), &tree, name, compression);
        let extracted = extract_ok(temp.path(), &image, ImageFormat::Tar, true);
        assert!(
            extracted.timings.iter().any(|(step, _)| *step == "unpack"),
            "{name}"
        );
    }
}

#[test]
fn a_squashfs_is_unpacked_with_its_xattrs() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let tree = fixture_tree(temp.path());
    let image = temp.path().join("root.squashfs");
    tool(
        "mksquashfs",
        &[
            tree.to_str().unwrap(),
            image.to_str().unwrap(),
            "-noappend",
            "-quiet",
        ],
    );
    // squashfs keeps user., trusted. and security. xattrs, not ACLs.
    extract_ok(temp.path(), &image, ImageFormat::Squashfs, false);
}

#[test]
fn a_web_page_is_not_an_image() {
    let temp = tempfile::tempdir().unwrap();
    let page = temp.path().join("Fedora-Cloud-Base.qcow2");
    std::fs::write(
        &page,
        "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n",
    )
    .unwrap();
    let error = extract::detect(&page).unwrap_err();
    assert!(
        matches!(error, ExtractError::NotAnImage { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("Fedora-Cloud-Base.qcow2"), "{message}");
    assert!(message.contains("an HTML page"), "{message}");
}

#[test]
fn a_disk_with_no_root_lists_its_partitions() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let esp = temp.path().join("esp.vfat");
    vfat_image(&esp);
    let swap = temp.path().join("swap");
    tool("truncate", &["-s", "8M", swap.to_str().unwrap()]);
    tool("mkswap", &["-L", "swappy", swap.to_str().unwrap()]);
    // An ext4 with no os-release: mounted, looked at, refused.
    let empty = temp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let data = temp.path().join("data.ext4");
    ext4_image(&empty, &data, "data");
    let image = temp.path().join("disk.raw");
    disk(
        &image,
        "gpt",
        &[
            (ESP, Some(&esp), 8),
            ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", Some(&swap), 8),
            (LINUX, Some(&data), 64),
        ],
    );
    let (_, result) = extract_into(temp.path(), &image);
    let error = result.unwrap_err();
    assert!(matches!(error, ExtractError::NoRoot { .. }), "{error:?}");
    let message = error.to_string();
    for expected in [
        "has no root filesystem",
        "partition 1: EFI system, 8 MiB: vfat labelled ESP",
        "partition 2: Linux swap, 8 MiB: swap labelled swappy",
        "partition 3: Linux filesystem, 64 MiB: ext4 labelled data",
    ] {
        assert!(message.contains(expected), "{expected} in {message}");
    }
}

#[test]
fn an_arm64_tree_is_refused_for_amd64() {
    isolated();
    let temp = tempfile::tempdir().unwrap();
    let tree = temp.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "ID=kilntest\n").unwrap();
    // An aarch64 ELF header: 64-bit, little-endian, e_machine 0xb7.
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.extend([0; 8]);
    elf.extend([2, 0, 0xb7, 0]);
    elf.resize(64, 0);
    std::fs::write(tree.join("usr/bin/env"), elf).unwrap();
    let image = tarball(temp.path(), &tree, "arm64.tar.gz", "--gzip");
    let (_, result) = extract_into(temp.path(), &image);
    let error = result.unwrap_err();
    assert!(matches!(error, ExtractError::WrongArch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("arm64 (aarch64)"), "{message}");
    assert!(message.contains("amd64 (x86-64)"), "{message}");
}

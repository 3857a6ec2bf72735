//! arm64 images on this amd64 host (issue 22): the tree's programs run
//! through QEMU's user-mode emulation, registered only in each chroot
//! command's own namespaces. A small arm64 tree (Debian's essential and
//! required packages, written as a tarball) is locked and built against
//! the real mirror; its programs are aarch64, `kiln validate` calls the
//! architecture experimental, and the host's binfmt_misc is as it was.

use std::path::Path;

use crate::common::{kiln, mounts_under, processes_rooted_in, shared_cache};

const IMAGEFILE: &str = "\
name: arm-min
base:
  distro: debian
  release: bookworm
  arch: arm64
outputs: [tar]
";

/// The handlers of the host's binfmt_misc (nothing when it is not
/// mounted), sorted.
fn binfmt_misc() -> Vec<String> {
    let mut entries: Vec<String> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// The ELF machine of the file at `member` in the tarball.
fn elf_machine(tar: &Path, member: &str) -> u16 {
    #[allow(clippy::disallowed_methods)]
    let output = std::process::Command::new("tar")
        .args(["-xOf", tar.to_str().expect("UTF-8"), "--wildcards", member])
        .output()
        .expect("tar runs");
    assert!(output.status.success(), "{output:?}");
    let header = &output.stdout;
    assert_eq!(&header[..4], b"\x7fELF", "{member} is an ELF file");
    u16::from_le_bytes([header[18], header[19]])
}

#[test]
fn an_arm64_tree_builds_on_this_host_and_leaves_binfmt_misc_as_it_was() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let before = binfmt_misc();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("imagefile.yaml"), IMAGEFILE).expect("write");
    let cache = shared_cache();

    let validate = kiln()
        .current_dir(dir.path())
        .args(["validate", "imagefile.yaml"])
        .output()
        .expect("kiln runs");
    let said = String::from_utf8_lossy(&validate.stderr);
    assert!(validate.status.success(), "{said}");
    assert!(said.contains("`arch: arm64` is experimental"), "{said}");

    let build = kiln()
        .current_dir(dir.path())
        .args([
            "build",
            "imagefile.yaml",
            "-o",
            "out",
            "--timings",
            "--cache-dir",
        ])
        .arg(&cache)
        .output()
        .expect("kiln runs");
    let said = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{said}");
    eprintln!("{said}");

    let tar = dir.path().join("out/arm-min.tar");
    const EM_AARCH64: u16 = 0xb7;
    assert_eq!(elf_machine(&tar, "*usr/bin/env"), EM_AARCH64);
    assert_eq!(elf_machine(&tar, "*usr/bin/dpkg"), EM_AARCH64);
    // The emulator was registered only inside the build's commands.
    assert_eq!(binfmt_misc(), before);
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
    assert_eq!(processes_rooted_in(dir.path()), Vec::<String>::new());
}

//! arm64 images on this amd64 host (issue 22): the tree's programs run
//! through QEMU's user-mode emulation, registered only in each chroot
//! command's own namespaces. A small arm64 tree (Debian's essential and
//! required packages, written as a tarball) is locked and built against
//! the real mirror; its programs are aarch64, `kiln validate` calls the
//! architecture experimental, and the host's binfmt_misc is as it was.
//! And `manifests/debian-cloud.yaml` with only `arch` changed, built once
//! per change of its inputs (as the amd64 boot fixtures are: the build
//! takes about ten minutes here) and kept beside the shared cache, passes
//! `kiln test` under `qemu-system-aarch64 -machine virt` with AAVMF.

use std::path::Path;
use std::sync::{LazyLock, OnceLock};

use crate::boot::{Fixture, assert_no_qemu_left, built_as, overlay_in};
use crate::common::{
    BUILT_IN_CHECKS_PASSED, kiln, mounts_under, one_boot_at_a_time, processes_rooted_in,
    shared_cache,
};

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

/// The example cloud image, as committed, for arm64.
static CLOUD_ARM64: LazyLock<String> = LazyLock::new(|| {
    let committed = include_str!("../../manifests/debian-cloud.yaml");
    assert!(committed.contains("  arch: amd64\n"), "{committed}");
    committed
        .replace("  arch: amd64\n", "  arch: arm64\n")
        .replace("name: debian-cloud\n", "name: debian-cloud-arm64\n")
});

#[test]
fn debian_cloud_for_arm64_boots_under_qemu_system_aarch64_and_passes_kiln_test() {
    static CELL: OnceLock<std::path::PathBuf> = OnceLock::new();
    let before = binfmt_misc();
    let dir = built_as(CLOUD_ARM64.as_str(), &CELL, &Fixture::default());
    assert_eq!(binfmt_misc(), before);
    let _one = one_boot_at_a_time();
    let output = kiln()
        .current_dir(&dir)
        .args(["test", "--timeout", "1200"])
        .output()
        .expect("kiln runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    // Booted as arm64, by UEFI (the only firmware of the virt board).
    assert!(
        stderr.contains("debian-cloud-arm64.qcow2 (arm64, UEFI, tcg)"),
        "{stderr}"
    );
    for check in BUILT_IN_CHECKS_PASSED {
        assert!(stdout.contains(check), "no `{check}`:\n{stdout}");
    }
    assert!(stderr.contains("all 7 checks passed"), "{stderr}");
    eprintln!(
        "{}",
        stderr
            .lines()
            .find(|l| l.starts_with("ssh login after "))
            .unwrap_or("no login time")
    );
    assert_no_qemu_left(&overlay_in(&stderr));
}

//! arm64 images on this amd64 host (issue 22): the tree's programs run
//! through QEMU's user-mode emulation, registered only in each chroot
//! command's own namespaces. A small arm64 tree (Debian's essential and
//! required packages, written as a tarball) is locked and built against
//! the real mirror; its programs are aarch64, `kiln validate` calls the
//! architecture experimental, and the host's binfmt_misc is as it was.
//! Built with the lock's native twins and again with `--emulate-all`, it
//! is the same tarball, byte for byte. And `manifests/debian-cloud.yaml`
//! with only `arch` changed, built once per change of its inputs (as the
//! amd64 boot fixtures are: the build takes about five minutes here) and
//! kept beside the shared cache, passes
//! `kiln test` under `qemu-system-aarch64 -machine virt` with AAVMF.

use std::path::Path;
use std::sync::{LazyLock, OnceLock};

use crate::boot::{Fixture, assert_no_qemu_left, built_as, overlay_in};
use crate::common::{
    BUILT_IN_CHECKS_PASSED, kiln, mounts_under, one_boot_at_a_time, processes_rooted_in, repo_path,
    shared_cache,
};

const IMAGEFILE: &str = "\
name: arm-min
base:
  distro: debian
  release: bookworm
  arch: arm64
elements: [fixture-service-links]
outputs: [tar]
";

/// The entries of the host's binfmt_misc: the initial user namespace's
/// instance, mounted for the look in a mount namespace of its own (so
/// the host's mounts stay as they are, whether or not it has it mounted),
/// sorted.
fn binfmt_misc() -> Vec<String> {
    #[allow(clippy::disallowed_methods)]
    let output = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mountpoint -q /proc/sys/fs/binfmt_misc || \
             mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && \
             ls /proc/sys/fs/binfmt_misc",
        ])
        .output()
        .expect("unshare runs");
    assert!(output.status.success(), "{output:?}");
    let mut entries: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    entries.sort();
    assert!(
        entries.contains(&"register".to_string()),
        "binfmt_misc is read: {entries:?}"
    );
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

/// The names of the tarball's entries.
fn tar_entries(tar: &Path) -> Vec<String> {
    #[allow(clippy::disallowed_methods)]
    let output = std::process::Command::new("tar")
        .args(["-tf", tar.to_str().expect("UTF-8")])
        .output()
        .expect("tar runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
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
        .args(["validate", "imagefile.yaml", "--elements-path"])
        .arg(repo_path("tests/fixtures/elements/arm64"))
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
            "--elements-path",
        ])
        .arg(repo_path("tests/fixtures/elements/arm64"))
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("kiln runs");
    let said = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{said}");
    eprintln!("{said}");

    // coreutils, sed, dpkg-deb… ran as their amd64 builds, which the lock
    // pins beside the image's packages.
    assert!(
        said.contains("running the programs of coreutils,"),
        "{said}"
    );
    assert!(said.contains("unpack the native twins"), "{said}");
    // perl runs natively only for the service helpers, which the
    // fixture's element runs.
    assert!(
        said.contains("perl-base (perl for deb-systemd-helper and update-rc.d)"),
        "{said}"
    );
    let lock = std::fs::read_to_string(dir.path().join("imagefile.lock")).expect("the lock");
    assert!(
        lock.contains("\nnative_twins:\n  - {name: \"coreutils\", version: "),
        "{lock}"
    );

    let tar = dir.path().join("out/arm-min.tar");
    const EM_AARCH64: u16 = 0xb7;
    assert_eq!(elf_machine(&tar, "*usr/bin/env"), EM_AARCH64);
    assert_eq!(elf_machine(&tar, "*usr/bin/dpkg"), EM_AARCH64);
    assert_eq!(elf_machine(&tar, "*usr/bin/sed"), EM_AARCH64);
    assert_eq!(elf_machine(&tar, "*usr/bin/perl"), EM_AARCH64);
    let entries = tar_entries(&tar);
    for link in [
        "etc/systemd/system/multi-user.target.wants/kiln-twin-probe.service",
        "var/lib/systemd/deb-systemd-helper-enabled/kiln-twin-probe.service.dsh-also",
    ] {
        assert!(
            entries.iter().any(|entry| entry.ends_with(link)),
            "deb-systemd-helper did not make {link}: {entries:?}"
        );
    }

    // The same image with every program emulated: the twins changed no
    // byte of it.
    let emulated = kiln()
        .current_dir(dir.path())
        .args([
            "build",
            "imagefile.yaml",
            "-o",
            "out-emulated",
            "--emulate-all",
            "--no-cache",
            "--timings",
            "--elements-path",
        ])
        .arg(repo_path("tests/fixtures/elements/arm64"))
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("kiln runs");
    let said = String::from_utf8_lossy(&emulated.stderr);
    assert!(emulated.status.success(), "{said}");
    eprintln!("{said}");
    assert!(!said.contains("natively"), "{said}");
    let bytes = |path: &str| std::fs::read(dir.path().join(path)).expect("the tarball");
    assert!(
        bytes("out/arm-min.tar") == bytes("out-emulated/arm-min.tar"),
        "the tarball built with native twins differs from the one built with --emulate-all"
    );
    // The emulator was registered only inside the build's commands.
    assert_eq!(binfmt_misc(), before);
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
    assert_eq!(processes_rooted_in(dir.path()), Vec::<String>::new());
}

/// The command lines of the processes rooted inside `path` that run
/// through kiln's binfmt_misc handler: QEMU's user-mode emulator, or a
/// native twin's loader, both in the emulation directory.
fn emulated_under(path: &Path) -> Vec<String> {
    processes_rooted_in(path)
        .into_iter()
        .filter_map(|process| {
            let pid = process.split(' ').next()?.to_string();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .starts_with("/dev/.kiln-emulation/")
                .then_some(cmdline)
        })
        .collect()
}

#[test]
fn a_killed_arm64_build_leaves_binfmt_misc_mounts_and_processes_as_they_were() {
    let before = binfmt_misc();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("imagefile.yaml"), IMAGEFILE).expect("write");
    let out = dir.path().join("out");
    #[allow(clippy::disallowed_methods)]
    let mut build = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .args(["build", "imagefile.yaml", "-o", "out", "--elements-path"])
        .arg(repo_path("tests/fixtures/elements/arm64"))
        .arg("--cache-dir")
        .arg(shared_cache())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kiln starts");
    // Killed while an emulated program of the tree runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let running = loop {
        let running = emulated_under(&out);
        if !running.is_empty() {
            break running;
        }
        assert!(
            build.try_wait().expect("wait").is_none(),
            "the build ended before running an emulated program"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no emulated program in 600 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    build.kill().expect("SIGKILL");
    build.wait().expect("wait");
    eprintln!("killed while running {running:?}");
    crate::common::assert_clean_after_kill(&out, &out, dir.path(), "arm-min");
    assert_eq!(emulated_under(&out), Vec::<String>::new());
    assert_eq!(binfmt_misc(), before, "the host's binfmt_misc changed");
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

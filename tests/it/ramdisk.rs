//! The deploy ramdisk of `manifests/debian-ramdisk.yaml`, as committed:
//! built with `--check` (two builds, the same bytes) whenever kiln or its
//! inputs change, its initramfs listed with real `zstd` and `cpio` (systemd
//! as `/init`, the Mellanox drivers in, the disk boot's initramfs and the
//! excluded paths out), then booted from RAM under TCG and checked by
//! `kiln test`: ssh login, systemd running, `/` in RAM, the imagefile's
//! own checks (Mellanox drivers loaded, RDMA userspace, DHCP).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::boot::{Fixture, built_as};
use crate::common::{kiln, one_boot_at_a_time};

const EXAMPLE: &str = include_str!("../../manifests/debian-ramdisk.yaml");

fn ramdisk() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    built_as(
        EXAMPLE,
        &CELL,
        &Fixture {
            product: Some("debian-ramdisk.initramfs"),
            args: &["--check", "--timings"],
            per_kiln: true,
        },
    )
}

/// The names in the initramfs, as `cpio -t` lists them.
fn listing(initramfs: &Path) -> Vec<String> {
    let mut zstd = Command::new("zstd")
        .args(["-dc"])
        .arg(initramfs)
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd runs");
    let output = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(zstd.stdout.take().expect("zstd's stdout"))
        .output()
        .expect("cpio runs");
    assert!(zstd.wait().expect("zstd ends").success(), "zstd -dc failed");
    assert!(
        output.status.success(),
        "cpio -t: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_example_ramdisk_holds_the_system_with_the_mellanox_drivers() {
    let dir = ramdisk();
    let out = dir.join("out");
    let kernel = out.join("debian-ramdisk.kernel");
    let initramfs = out.join("debian-ramdisk.initramfs");
    assert!(kernel.is_file() && initramfs.is_file());
    // Nothing else looks like an image.
    for absent in ["debian-ramdisk.qcow2", "debian-ramdisk.raw"] {
        assert!(!out.join(absent).exists(), "{absent} was written");
    }
    let kernel_head = std::fs::read(&kernel).expect("read the kernel");
    // A bzImage carries the "HdrS" signature at offset 0x202.
    assert_eq!(&kernel_head[0x202..0x206], b"HdrS", "not a Linux kernel");

    let names = listing(&initramfs);
    let has = |suffix: &str| names.iter().any(|n| n.ends_with(suffix));
    assert!(names.iter().any(|n| n == "init"), "no /init");
    for module in [
        "/mlx5_core.ko",
        "/mlx4_core.ko",
        "/mlx5_ib.ko",
        "/mlx4_ib.ko",
    ] {
        assert!(has(module), "no {module} in the initramfs");
    }
    assert!(has("/libmlx5.so.1"), "no RDMA userspace");
    assert!(has("usr/lib/systemd/systemd"), "no systemd");
    for gone in ["boot/initrd.img-", "boot/vmlinuz-"] {
        assert!(
            !names.iter().any(|n| n.starts_with(gone)),
            "{gone}* is in the ramdisk"
        );
    }
    for excluded in ["usr/share/doc/", "usr/share/man/", "/kernel/sound/"] {
        assert!(
            !names.iter().any(|n| n.contains(excluded)),
            "{excluded} was to be left out"
        );
    }

    // The report lists both files, with the initramfs's sizes in its notes.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("debian-ramdisk.report.json")).expect("the report"),
    )
    .expect("JSON");
    let files: Vec<&str> = report["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| o["file"].as_str().expect("file"))
        .collect();
    assert_eq!(
        files,
        ["debian-ramdisk.kernel", "debian-ramdisk.initramfs"],
        "{report}"
    );
}

#[test]
fn the_example_ramdisk_boots_from_ram_and_passes_kiln_test() {
    let dir = ramdisk();
    let _one = one_boot_at_a_time();
    let output = kiln()
        .current_dir(&dir)
        .arg("test")
        .output()
        .expect("kiln runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for check in [
        "✓ boots, and `debian` logs in over ssh with the key from the seed (",
        "✓ systemd reaches `running` with no failed unit (",
        "✓ ssh refuses password logins (",
        "✓ sshd's host keys were made on this machine, not taken from the image (",
        "✓ the Mellanox drivers mlx4_core and mlx5_core are loaded (",
        "✓ the RDMA userspace is there (",
        "✓ networkd configured the port by DHCP (",
    ] {
        assert!(stdout.contains(check), "no `{check}`:\n{stdout}");
    }
    // The root filesystem checks of a disk image do not apply.
    assert!(!stdout.contains("fills the disk"), "{stdout}");
    let login = stderr
        .lines()
        .find(|l| l.starts_with("ssh login after "))
        .expect("the login time is printed");
    eprintln!("ramdisk: {login}");
}

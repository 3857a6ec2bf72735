//! `kiln boot` on a ramdisk under QEMU's TCG, by BIOS and by UEFI: a real
//! kernel (Debian's, which `scripts/install-test-deps` unpacks into the
//! test cache) with a tiny initramfs made here, whose `/init` (busybox)
//! prints what the machine sees on the serial console and powers off.
//! Proves the QEMU side of a ramdisk boot: the kernel and initramfs are
//! loaded, the kernel command line carries the imagefile's `cmdline`, `/`
//! is in RAM, the memory is what kiln says, the NoCloud seed is the only
//! disk, and QEMU ends with the machine. About 6 s by BIOS and 13 s by
//! UEFI on an idle machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{one_boot_at_a_time, test_cache};

/// What `/init` prints, then the facts it reads.
const MARKER: &str = "KILN-RAMDISK-UP";

/// Longest a boot may take before the test gives up on it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// `/init`: mounts /proc and /sys, prints the root filesystem's type, the
/// memory, the kernel command line and the virtio disks (PCI device
/// 0x1001), and powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
disks=0
for d in /sys/bus/pci/devices/*; do
    [ "$(/bin/busybox cat $d/vendor)$(/bin/busybox cat $d/device)" = 0x1af40x1001 ] && disks=$((disks + 1))
done
/bin/busybox echo "KILN-RAMDISK-UP root=$(/bin/busybox stat -f -c %T /) memkib=$(/bin/busybox awk '/MemTotal/ {print $2}' /proc/meminfo) disks=$disks cmdline=$(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
"#;

/// `/init` that prints the marker and then waits, as a machine does until
/// its user quits `kiln boot`.
const INIT_THEN_WAIT: &str = r#"#!/bin/busybox sh
/bin/busybox echo "KILN-RAMDISK-UP"
exec /bin/busybox sleep 3600
"#;

/// The kernel `scripts/install-test-deps` unpacked into the test cache.
fn kernel() -> PathBuf {
    let dir = test_cache().join("kernel");
    let found = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        });
    found.unwrap_or_else(|| {
        panic!(
            "no vmlinuz-* in {}: scripts/install-test-deps downloads one",
            dir.display()
        )
    })
}

/// A newc cpio archive of `entries` (path, mode, contents), directories
/// with an empty body, and its trailer.
fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut archive = Vec::new();
    let trailer: (&str, u32, &[u8]) = ("TRAILER!!!", 0, b"");
    for (ino, (name, mode, data)) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [
            ino + 1,
            *mode as usize,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0,
        ];
        archive.extend_from_slice(b"070701");
        for value in fields {
            archive.extend_from_slice(format!("{value:08X}").as_bytes());
        }
        archive.extend_from_slice(name.as_bytes());
        archive.push(0);
        archive.resize(archive.len().next_multiple_of(4), 0);
        archive.extend_from_slice(data);
        archive.resize(archive.len().next_multiple_of(4), 0);
    }
    archive
}

/// Writes `dir/out/tiny.kernel` and `dir/out/tiny.initramfs` (zstd or
/// gzip), and an imagefile whose outputs are a disk and the ramdisk.
fn tiny_ramdisk(dir: &Path, gzip: bool, init: &str) {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (busybox-static; scripts/install-test-deps installs it)");
    let archive = newc(&[
        ("bin", 0o040_755, b""),
        ("bin/busybox", 0o100_755, &busybox),
        ("proc", 0o040_755, b""),
        ("sys", 0o040_755, b""),
        ("dev", 0o040_755, b""),
        ("init", 0o100_755, init.as_bytes()),
    ]);
    let compressed = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&archive).expect("gzip");
        encoder.finish().expect("gzip")
    } else {
        zstd::encode_all(archive.as_slice(), 3).expect("zstd")
    };
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::copy(kernel(), out.join("tiny.kernel")).expect("copy the kernel");
    std::fs::write(out.join("tiny.initramfs"), compressed).expect("write");
    std::fs::write(
        dir.join("imagefile.yaml"),
        "name: tiny\nbase: {distro: debian, release: bookworm}\n\
         outputs: [qcow2, ramdisk]\nramdisk: {cmdline: kiln.test=ramdisk quiet}\n",
    )
    .expect("write");
}

/// Runs `kiln boot args` in `dir` until it ends (the machine powers off),
/// with the serial console in `serial`; returns its stderr and the
/// marker's line from the console.
fn kiln_boot(dir: &Path, serial: &Path, args: &[&str]) -> (String, String) {
    let _one = one_boot_at_a_time();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .arg("boot")
        .arg("--serial-log")
        .arg(serial)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln boot starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > BOOT_TIMEOUT {
            // SIGTERM: kiln stops QEMU on its way out.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            panic!(
                "the machine did not power off within {BOOT_TIMEOUT:?}; console:\n{}",
                std::fs::read_to_string(serial).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    let console =
        String::from_utf8_lossy(&std::fs::read(serial).expect("the serial log")).into_owned();
    assert!(
        status.success(),
        "kiln boot ended with {status}:\n{stderr}\nconsole:\n{console}"
    );
    eprintln!(
        "{args:?}: powered off after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let line = console
        .lines()
        .find_map(|l| l.find(MARKER).map(|at| l[at..].trim_end().to_string()))
        .unwrap_or_else(|| panic!("no {MARKER} on the console:\n{console}"));
    (stderr, line)
}

/// The value of `key=` in the marker's line (up to the next space; the
/// command line is last and taken whole).
fn fact<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 2;
    let rest = &line[start..];
    if key == "cmdline" {
        rest
    } else {
        rest.split(' ').next().unwrap_or_default()
    }
}

#[test]
fn kiln_boot_runs_an_imagefiles_ramdisk_from_ram_by_bios() {
    let temp = tempfile::tempdir().expect("tempdir");
    tiny_ramdisk(temp.path(), false, INIT);
    let serial = temp.path().join("serial.log");
    let (stderr, line) = kiln_boot(temp.path(), &serial, &["--ramdisk", "imagefile.yaml"]);
    let initramfs = temp.path().join("out/tiny.initramfs");
    let kernel = temp.path().join("out/tiny.kernel");
    for said in [
        format!("booting the ramdisk {} (zstd, ", initramfs.display()),
        format!(
            " MiB) with the kernel {} (BIOS, tcg, memory 1280 MiB); it runs from RAM",
            kernel.display()
        ),
        "kernel command line: console=ttyS0 kiln.test=ramdisk quiet\n".to_string(),
    ] {
        assert!(stderr.contains(&said), "no `{said}` in:\n{stderr}");
    }
    assert_eq!(fact(&line, "root"), "tmpfs", "{line}");
    assert_eq!(
        fact(&line, "cmdline"),
        "console=ttyS0 kiln.test=ramdisk quiet"
    );
    // The seed, and no overlay.
    assert_eq!(fact(&line, "disks"), "1", "{line}");
    // 1280 MiB less what the firmware and kernel keep.
    let memory: u64 = fact(&line, "memkib").parse().expect("a number");
    assert!((1100 << 10..=1280 << 10).contains(&memory), "{line}");
}

#[test]
fn kiln_boot_runs_a_gzip_ramdisk_given_by_its_kernel_by_uefi() {
    let temp = tempfile::tempdir().expect("tempdir");
    tiny_ramdisk(temp.path(), true, INIT);
    let serial = temp.path().join("serial.log");
    let (stderr, line) = kiln_boot(temp.path(), &serial, &["--uefi", "out/tiny.kernel"]);
    assert!(stderr.contains("(gzip, "), "{stderr}");
    assert!(stderr.contains("(UEFI, tcg, memory 1280 MiB)"), "{stderr}");
    assert_eq!(fact(&line, "root"), "tmpfs", "{line}");
    // No imagefile: the console alone (OVMF adds the initrd's name).
    assert_eq!(
        fact(&line, "cmdline").replace(" initrd=initrd", ""),
        "console=ttyS0",
        "{line}"
    );
    assert_eq!(fact(&line, "disks"), "1", "{line}");
}

/// Ctrl-C is how `kiln boot` is quit (the guide says so): SIGINT stops the
/// machine, kiln says so and exits 0 with no error, and no QEMU is left.
/// (SIGTERM, a supervisor's stop, stays an interruption: exit 2, as
/// `boot::growroot_grows_the_root_on_every_first_boot` checks.)
#[test]
fn ctrl_c_quits_kiln_boot_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny_ramdisk(dir.path(), false, INIT_THEN_WAIT);
    let serial = dir.path().join("serial.log");
    let _one = one_boot_at_a_time();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .arg("boot")
        .arg("--serial-log")
        .arg(&serial)
        .args(["--ramdisk", "imagefile.yaml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln boot starts");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let started = Instant::now();
    while !std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .contains(MARKER)
    {
        if started.elapsed() > BOOT_TIMEOUT || child.try_wait().expect("wait").is_some() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(
                &mut child.stderr.take().expect("stderr"),
                &mut stderr,
            );
            panic!(
                "the machine did not come up:\n{stderr}\nconsole:\n{}",
                std::fs::read_to_string(&serial).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let quit = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            quit.elapsed() < Duration::from_secs(30),
            "kiln boot still runs 30 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(0), "Ctrl-C is a normal quit:\n{stderr}");
    assert!(
        stderr.contains("Ctrl-C: the machine was stopped; nothing was written back"),
        "kiln says the machine was stopped:\n{stderr}"
    );
    assert!(
        !stderr.contains('×') && !stderr.contains("interrupted"),
        "no error after Ctrl-C:\n{stderr}"
    );
    let qemu_left: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("qemu-system") && c.contains(&*dir.path().to_string_lossy()))
        .collect();
    assert!(
        qemu_left.is_empty(),
        "QEMU left after Ctrl-C: {qemu_left:?}"
    );
}

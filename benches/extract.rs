//! How long `extract` takes to take the root tree out of a qcow2, against
//! the least a person could do by hand: `qemu-img convert -O raw` of the
//! same qcow2 and a plain `cp -a` of the same tree from a mounted copy.
//! The target is extract ≤ 2× that baseline. It also times the three ways
//! of copying a tree kiln chose between (`cp -a`, `tar | tar`,
//! `rsync -aHAX`), from the same mounted filesystem.
//!
//! The image: a GPT disk of 2 GiB virtual size (an ESP and an ext4 root)
//! holding a copy of the host's `/usr/share` and `/usr/bin` (about 1 GiB),
//! as qcow2. Page caches are dropped before every timed run, so each
//! reads the image from disk as a build would.
//!
//! Needs root, about 6 GiB free in the temporary directory and `rsync`
//! for the copy comparison:
//!
//! ```text
//! sudo -E cargo bench --bench extract
//! KILN_BENCH_ROUNDS=3 sudo -E cargo bench --bench extract   # more rounds
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::chroot::mounts::Mount;
use kiln::distro::image::extract;
use kiln::host::command::Program;
use kiln::manifest::Arch;
use nix::mount::MsFlags;

const DISK_BYTES: u64 = 2 * 1024 * 1024 * 1024;
const ESP_MIB: u64 = 16;
const SECTOR: u64 = 512;

fn sh(script: &str) -> String {
    let finished = Program::new("sh", "dash")
        .args(["-ec", script])
        .run()
        .expect("sh runs");
    assert!(
        finished.success(),
        "{script}\n{}",
        finished.stderr.trim_end()
    );
    String::from_utf8_lossy(&finished.stdout).into_owned()
}

fn q(path: &Path) -> String {
    format!("'{}'", path.display())
}

fn drop_caches() {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop the page cache");
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// The qcow2 under `dir`, and the byte offset of its root partition.
fn make_image(dir: &Path) -> (PathBuf, u64) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("usr")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    eprintln!("bench extract: copying the host's /usr/share and /usr/bin into a tree");
    sh(&format!(
        "cp -a /usr/share /usr/bin {usr}/ && ln -s usr/bin {bin} && cp /etc/os-release {etc}/",
        usr = q(&tree.join("usr")),
        bin = q(&tree.join("bin")),
        etc = q(&tree.join("etc")),
    ));
    let raw = dir.join("disk.raw");
    sh(&format!("truncate -s {DISK_BYTES} {}", q(&raw)));
    sh(&format!(
        "printf 'label: gpt\\nsize={ESP_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\\n\
         type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\\n' | sfdisk -q {}",
        q(&raw)
    ));
    let table: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk --json {}", q(&raw)))).unwrap();
    let root = &table["partitiontable"]["partitions"][1];
    let offset = root["start"].as_u64().unwrap() * SECTOR;
    let blocks = root["size"].as_u64().unwrap() * SECTOR / 4096;
    eprintln!("bench extract: mke2fs -d into the root partition");
    sh(&format!(
        "mke2fs -q -t ext4 -b 4096 -E offset={offset} -d {} {} {blocks}",
        q(&tree),
        q(&raw)
    ));
    sh(&format!("rm -rf {}", q(&tree)));
    let qcow2 = dir.join("disk.qcow2");
    sh(&format!(
        "qemu-img convert -f raw -O qcow2 {} {} && rm {}",
        q(&raw),
        q(&qcow2),
        q(&raw)
    ));
    (qcow2, offset)
}

/// (a): kiln's extract.
fn run_extract(dir: &Path, qcow2: &Path) -> (Duration, Vec<(&'static str, Duration)>) {
    let root = dir.join("a-root");
    let work = dir.join("a-work");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    drop_caches();
    let started = Instant::now();
    let extracted =
        extract::extract(qcow2, &root, &work, Arch::Amd64, &mut std::io::sink()).expect("extract");
    nix::unistd::sync();
    let took = started.elapsed();
    assert!(root.join("usr/bin/env").exists());
    sh(&format!("rm -rf {} {}", q(&root), q(&work)));
    (took, extracted.timings)
}

/// The root partition of `raw` mounted read-only on `target`; the loop
/// device goes with the mount.
fn mount_root(raw: &Path, offset: u64, target: &Path) -> Mount {
    std::fs::create_dir_all(target).unwrap();
    let device = sh(&format!(
        "losetup --find --show --read-only --offset {offset} {}",
        q(raw)
    ));
    let device = device.trim();
    let mount = Mount::new(
        "the root partition",
        Some(Path::new(device)),
        target,
        Some("ext4"),
        MsFlags::MS_RDONLY,
        Some("noload"),
    )
    .expect("mount");
    sh(&format!("losetup --detach {device}"));
    mount
}

/// (b): `qemu-img convert -O raw`, then `cp -a` from the mounted root.
fn run_baseline(dir: &Path, qcow2: &Path, offset: u64) -> (Duration, Duration) {
    let raw = dir.join("b.raw");
    let root = dir.join("b-root");
    std::fs::create_dir_all(&root).unwrap();
    drop_caches();
    let started = Instant::now();
    sh(&format!("qemu-img convert -O raw {} {}", q(qcow2), q(&raw)));
    let convert = started.elapsed();
    let mount = mount_root(&raw, offset, &dir.join("b-mnt"));
    let started = Instant::now();
    sh(&format!("cp -a {}/. {}", q(mount.target()), q(&root)));
    nix::unistd::sync();
    let copy = started.elapsed();
    mount.unmount().expect("unmount");
    sh(&format!("rm -rf {} {}", q(&root), q(&raw)));
    (convert, copy)
}

/// The three copy methods, from the same mounted root.
fn compare_copies(dir: &Path, qcow2: &Path, offset: u64) {
    let raw = dir.join("c.raw");
    sh(&format!("qemu-img convert -O raw {} {}", q(qcow2), q(&raw)));
    let mount = mount_root(&raw, offset, &dir.join("c-mnt"));
    let from = q(mount.target());
    let to = q(&dir.join("c-root"));
    let methods = [
        (
            "cp -a --sparse=always",
            format!("cp -a --sparse=always {from}/. {to}"),
        ),
        (
            "tar | tar (xattrs, acls)",
            format!(
                "tar -C {from} --xattrs --xattrs-include='*' --acls --numeric-owner -cf - . \
                 | tar -C {to} --xattrs --xattrs-include='*' --acls --numeric-owner -xpf -"
            ),
        ),
        (
            "rsync -aHAX",
            format!("rsync -aHAX --numeric-ids --sparse {from}/ {to}/"),
        ),
    ];
    for (name, script) in methods {
        if name.starts_with("rsync") && sh("command -v rsync || true").trim().is_empty() {
            eprintln!("bench extract: copy with {name}: skipped (rsync is not installed)");
            continue;
        }
        sh(&format!("rm -rf {to} && mkdir {to}"));
        drop_caches();
        let started = Instant::now();
        sh(&script);
        nix::unistd::sync();
        println!("copy with {name:<26} {:6.2} s", secs(started.elapsed()));
    }
    sh(&format!("rm -rf {to}"));
    mount.unmount().expect("unmount");
    sh(&format!("rm {}", q(&raw)));
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench extract: skipped, it needs root (sudo -E cargo bench --bench extract)");
        return;
    }
    kiln::chroot::namespace::enter_build_namespace().expect("a private mount namespace");
    let rounds: usize = std::env::var("KILN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, offset) = make_image(dir.path());
    let qcow2_bytes = std::fs::metadata(&qcow2).unwrap().len();
    println!(
        "image: qcow2 of {} GiB virtual, {:.0} MiB on disk",
        DISK_BYTES >> 30,
        qcow2_bytes as f64 / 1048576.0
    );
    let mut best_a = Duration::MAX;
    let mut best_b = Duration::MAX;
    for round in 1..=rounds {
        let (a, steps) = run_extract(dir.path(), &qcow2);
        let shown: Vec<String> = steps
            .iter()
            .map(|(step, took)| format!("{step} {:.2}", secs(*took)))
            .collect();
        println!(
            "round {round}: (a) extract        {:6.2} s  ({})",
            secs(a),
            shown.join(", ")
        );
        let (convert, copy) = run_baseline(dir.path(), &qcow2, offset);
        let b = convert + copy;
        println!(
            "round {round}: (b) convert + cp -a {:6.2} s  (convert {:.2}, cp {:.2})",
            secs(b),
            secs(convert),
            secs(copy)
        );
        best_a = best_a.min(a);
        best_b = best_b.min(b);
    }
    let ratio = secs(best_a) / secs(best_b);
    println!(
        "best: (a) {:.2} s, (b) {:.2} s, ratio a/b {ratio:.2} (target ≤ 2.00)",
        secs(best_a),
        secs(best_b)
    );
    compare_copies(dir.path(), &qcow2, offset);
}

//! How long writing a ramdisk's initramfs takes: walking the tree, the
//! newc archive and its compression, with zstd and with gzip. The target
//! is under 10 s for a tree of 300 MB on a machine of two cores.
//!
//! With `KILN_BENCH_TREE=<a finished root tree>` (such as the tree of
//! `kiln build --keep-tree`, or a tar output unpacked as root) it measures
//! that tree, and first prints one timed run of each compression with the
//! tree's size and the initramfs's; otherwise a synthetic tree of 64 MiB
//! in 4,000 files, so the bench always runs. The tree is read from the
//! page cache, as a build reads it right after making it.
//!
//! ```text
//! sudo -E KILN_BENCH_TREE=/tmp/tree cargo bench --bench initramfs
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::manifest::{Ramdisk, RamdiskCompression, Spanned};
use kiln::output::ramdisk::{self, RamdiskRequest};

/// Files of the synthetic tree, and their total size.
const SYNTHETIC_FILES: usize = 4_000;
const SYNTHETIC_BYTES: usize = 64 << 20;

/// A tree shaped like an image's: many small files in a few hundred
/// directories, a kernel and its modules, contents about as compressible
/// as binaries and text (roughly 3:1).
fn synthetic_tree(root: &Path) {
    let version = "6.1.0-1-amd64";
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join(format!("boot/vmlinuz-{version}")), b"kernel").unwrap();
    let mut x: u32 = 7;
    let per_file = SYNTHETIC_BYTES / SYNTHETIC_FILES;
    for i in 0..SYNTHETIC_FILES {
        let dir = root.join(format!("usr/lib/modules/{version}/kernel/d{}", i % 300));
        std::fs::create_dir_all(&dir).unwrap();
        let mut content = Vec::with_capacity(per_file);
        while content.len() < per_file {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            content.extend_from_slice(&x.to_le_bytes()[..2]);
            content.extend_from_slice(format!("symbol_{} ", x >> 22).as_bytes());
        }
        std::fs::write(dir.join(format!("m{i}.ko")), content).unwrap();
    }
}

fn request(tree: &Path, out: PathBuf, compression: RamdiskCompression) -> RamdiskRequest<'_> {
    let settings = Ramdisk {
        compression: Some(Spanned::unplaced(compression)),
        ..Ramdisk::default()
    };
    RamdiskRequest::for_image(tree, out, 1_700_000_000, &settings)
}

fn initramfs(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let tree = match std::env::var_os("KILN_BENCH_TREE") {
        Some(tree) => PathBuf::from(tree),
        None => {
            let tree = scratch.path().join("tree");
            synthetic_tree(&tree);
            tree
        }
    };
    let kernel = ramdisk::find_kernel(&tree).expect("the tree has a kernel");
    let mut group = c.benchmark_group("initramfs");
    group.sample_size(10);
    for (label, compression) in [
        ("zstd", RamdiskCompression::Zstd),
        ("gzip", RamdiskCompression::Gzip),
    ] {
        let out = scratch.path().join(format!("bench.{label}.initramfs"));
        let request = request(&tree, out, compression);
        let started = Instant::now();
        let summary = ramdisk::write_initramfs(&request, &kernel).unwrap();
        eprintln!(
            "initramfs {label}: {} entries, {:.1} MiB of files -> {:.1} MiB in {:.2} s",
            summary.entries,
            summary.unpacked_bytes as f64 / f64::from(1 << 20),
            summary.compressed_bytes as f64 / f64::from(1 << 20),
            started.elapsed().as_secs_f64()
        );
        group.bench_function(label, |b| {
            b.iter(|| ramdisk::write_initramfs(&request, &kernel).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, initramfs);
criterion_main!(benches);

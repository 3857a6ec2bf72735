//! How long the CPU side of `kiln lock` takes: reading a whole `Packages`
//! index and resolving minbase plus openssh-server and cloud-init.
//!
//! With `KILN_PACKAGES=<uncompressed Packages file>` (such as the blob
//! `kiln lock` keeps in its cache) it measures the real archive; otherwise
//! a synthetic index of the same shape (63,000 packages), so the bench
//! always runs.
#![allow(clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::apt::index::PackageIndex;
use kiln::apt::resolve::{self, SeedRequest};

/// A Packages text of `count` packages: a small essential core whose
/// members depend on each other, and many leaves depending on the core.
fn synthetic_index(count: usize) -> String {
    let mut text = String::new();
    let core = [
        "base-files",
        "bash",
        "coreutils",
        "dpkg",
        "libc6",
        "apt",
        "tar",
        "gzip",
    ];
    for (i, name) in core.iter().enumerate() {
        let depends = core[..i]
            .iter()
            .map(|d| format!("{d} (>= 1.0)"))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "Package: {name}\nVersion: 1.{i}-1\nArchitecture: amd64\nEssential: yes\nPriority: required\n\
             Depends: {depends}\nFilename: pool/main/{name}_1.{i}-1_amd64.deb\nSize: 1000\n\
             SHA256: {:064x}\nDescription: core {i}\n\n",
            i
        ));
    }
    for i in 0..count {
        text.push_str(&format!(
            "Package: leaf{i}\nVersion: 2.{i}-3\nArchitecture: amd64\nPriority: optional\n\
             Depends: libc6 (>= 1.0), leaf{} | bash\nProvides: virtual{}\nFilename: pool/main/leaf{i}.deb\n\
             Size: 2000\nSHA256: {:064x}\nDescription: leaf {i}\n\n",
            i / 2,
            i % 100,
            i + 100
        ));
    }
    text
}

fn lock_cpu(c: &mut Criterion) {
    let text = match std::env::var("KILN_PACKAGES") {
        Ok(path) => std::fs::read_to_string(path).expect("read KILN_PACKAGES"),
        Err(_) => synthetic_index(63_000),
    };
    c.bench_function("read Packages index", |b| {
        b.iter(|| PackageIndex::from_packages("amd64", "bench", &text).expect("index"))
    });
    let index = PackageIndex::from_packages("amd64", "bench", &text).expect("index");
    let mut seeds = resolve::minbase_seeds(&index);
    for extra in ["openssh-server", "cloud-init", "leaf62999"] {
        if index.newest(extra).is_some() {
            seeds.push(SeedRequest::new(extra));
        }
    }
    c.bench_function("resolve minbase + extras", |b| {
        b.iter(|| resolve::resolve(&index, &seeds, "amd64").expect("resolves"))
    });
}

criterion_group!(benches, lock_cpu);
criterion_main!(benches);

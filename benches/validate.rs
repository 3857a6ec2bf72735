//! How long `kiln validate` takes on a large (1,000-line) manifest:
//! parsing plus every semantic check. Target: well under 50 ms.
#![allow(clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::manifest;

/// A valid manifest of about `lines` lines: many packages, elements,
/// environment entries and partitions.
fn large_manifest(lines: usize) -> String {
    let mut text = String::from(
        "name: big\nbase:\n  distro: debian\n  release: bookworm\n  arch: amd64\ndisk:\n  table: gpt\n  size: 64GiB\n  partitions:\n",
    );
    for i in 0..40 {
        text.push_str(&format!(
            "    - name: part{i}\n      size: 1GiB\n      label: label{i}\n      mountpoint: /srv/p{i}\n      options: defaults,noatime\n"
        ));
    }
    text.push_str(
        "    - name: root\n      size: rest\n      mountpoint: /\n      label: cloudimg-rootfs\n",
    );
    text.push_str("environment:\n");
    for i in 0..200 {
        text.push_str(&format!("  VAR_{i}: \"value {i}\"\n"));
    }
    text.push_str("elements:\n");
    for i in 0..150 {
        text.push_str(&format!(
            "  - name: element-{i}\n    with:\n      PARAM: {i}\n"
        ));
    }
    text.push_str("packages:\n");
    while text.lines().count() < lines - 1 {
        let n = text.lines().count();
        text.push_str(&format!("  - package-{n}\n"));
    }
    text.push_str("outputs: [raw, qcow2, tar]\n");
    text
}

fn validate(c: &mut Criterion) {
    let text = large_manifest(1_000);
    assert!(text.lines().count() >= 1_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("imagefile.yaml");
    std::fs::write(&path, &text).expect("write manifest");
    c.bench_function("validate 1000-line manifest", |b| {
        b.iter(|| {
            let checked = manifest::read(&path).expect("valid");
            assert!(!checked.warnings.has_errors());
        })
    });
}

criterion_group!(benches, validate);
criterion_main!(benches);

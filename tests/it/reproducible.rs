//! Reproducible builds, as root against the real mirror: the same lock
//! built again in another directory, with another `TMPDIR`, seconds later,
//! gives the same bytes in every output, SBOM and provenance (for
//! `manifests/debian-cloud.yaml`, what issue 20 asks of its SBOMs); and
//! `kiln build --check` names
//! the file a nondeterministic element writes.

use std::path::Path;

use crate::common::{kiln, mounts_under, repo_path, shared_cache, tool};

fn sha256(path: &Path) -> String {
    tool("sha256sum", &[path.to_str().expect("path")])
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

/// Builds `manifest` (with `outputs` replaced) in a fresh directory, then
/// again from a copy of its lock in another, deeper directory with another
/// TMPDIR (and, with `host_disk`, while the host has a loop device
/// attached that holds an ext4 labelled `cloudimg-rootfs`), and asserts
/// every output is byte-identical.
fn builds_twice_to_the_same_bytes(
    manifest: &str,
    image: &str,
    extensions: &[&str],
    host_disk: bool,
) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let text = std::fs::read_to_string(repo_path(manifest)).expect("read");
    let start = text.find("\noutputs:").expect("the manifest has outputs");
    let outputs: String = extensions.iter().map(|e| format!("  - {e}\n")).collect();
    let text = format!("{}\noutputs:\n{outputs}", &text[..start]);

    let first = tempfile::tempdir().expect("tempdir");
    std::fs::write(first.path().join("imagefile.yaml"), &text).expect("write");
    let output = kiln()
        .current_dir(first.path())
        .args(["build", "-o", "out", "--cache-dir"])
        .arg(shared_cache())
        .output()
        .expect("kiln runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let second = tempfile::tempdir().expect("tempdir");
    let dir = second.path().join("a/much/longer/path");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["imagefile.yaml", "imagefile.lock"] {
        std::fs::copy(first.path().join(file), dir.join(file)).expect("copy");
    }
    let tmp = second.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let attached = host_disk.then(crate::common::HostLoopDisk::attach);
    let output = kiln()
        .current_dir(&dir)
        .env("TMPDIR", &tmp)
        .args(["build", "--locked", "-o", "elsewhere", "--cache-dir"])
        .arg(shared_cache())
        .output()
        .expect("kiln runs");
    drop(attached);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The outputs, and the SBOMs and provenance written beside them.
    let documents = ["spdx.json", "cdx.json", "provenance.json"];
    for ext in extensions.iter().chain(&documents) {
        let a = first.path().join(format!("out/{image}.{ext}"));
        let b = dir.join(format!("elsewhere/{image}.{ext}"));
        assert_eq!(
            sha256(&a),
            sha256(&b),
            "{image}.{ext} differs between two builds"
        );
    }
    assert_eq!(mounts_under(first.path()), Vec::<String>::new());
    assert_eq!(mounts_under(second.path()), Vec::<String>::new());
}

#[test]
fn debian_minimal_builds_to_the_same_bytes_twice() {
    builds_twice_to_the_same_bytes(
        "manifests/debian-minimal.yaml",
        "debian-minimal",
        &["raw", "qcow2", "tar"],
        false,
    );
}

/// The second build runs while the host has a disk attached that looks
/// like an image's root: with the host's `/dev` in the chroot, the
/// initramfs gained fsck and `/run/blkid` listed the host's devices.
#[test]
fn debian_cloud_builds_to_the_same_bytes_twice_whatever_the_host_has_attached() {
    builds_twice_to_the_same_bytes(
        "manifests/debian-cloud.yaml",
        "debian-cloud",
        &["raw", "qcow2", "tar"],
        true,
    );
}

#[test]
fn check_names_the_file_a_nondeterministic_element_writes() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    let minimal =
        std::fs::read_to_string(repo_path("manifests/debian-minimal.yaml")).expect("read");
    std::fs::write(
        temp.path().join("imagefile.yaml"),
        format!("{minimal}elements:\n  - fixture-date\n"),
    )
    .expect("write");
    let output = kiln()
        .current_dir(temp.path())
        .args(["build", "--check", "-o", "out", "--cache-dir"])
        .arg(shared_cache())
        .arg("--elements-path")
        .arg(repo_path("tests/fixtures/elements/nondeterministic"))
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not reproducible"), "{stderr}");
    assert!(
        stderr.contains("/etc/fixture-build-date: content"),
        "the report names the file and how it differs: {stderr}"
    );
    assert!(stderr.contains("SOURCE_DATE_EPOCH"), "{stderr}");
    let out = temp.path().join("out");
    assert!(!out.join(".kiln-check-debian-minimal").exists());
    assert!(!out.join("debian-minimal.root").exists());
    assert_eq!(mounts_under(temp.path()), Vec::<String>::new());
}

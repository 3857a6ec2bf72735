//! Incremental builds from tree snapshots, as root against the real
//! mirror: a rebuild after editing one element's `finalise.d` script
//! restores the tree kept before the finishing phases instead of making it
//! again, and gives the same bytes as a clean build of the same inputs.
//! (What the key covers is in the unit tests of `src/snapshot`.)

use std::path::Path;

use crate::common::{kiln, mounts_under, repo_path, shared_cache, write_hook};

/// `kiln build` of `dir/imagefile.yaml` with the elements in
/// `dir/elements`, snapshots kept in the shared cache.
fn build(dir: &Path, out: &str, extra: &[&str]) -> (String, std::process::Output) {
    let output = kiln()
        .current_dir(dir)
        .env("KILN_SNAPSHOT_LIMIT", "4G")
        .args([
            "build",
            "--timings",
            "-o",
            out,
            "--elements-path",
            "elements",
        ])
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(extra)
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (stderr, output)
}

fn prune_snapshots() {
    let output = kiln()
        .args(["cache", "prune", "--cache-dir"])
        .arg(shared_cache())
        .output()
        .expect("kiln runs");
    assert!(output.status.success(), "{output:?}");
}

fn sha256(path: &Path) -> String {
    crate::common::tool("sha256sum", &[path.to_str().expect("utf-8")])
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

#[test]
fn a_rebuild_after_a_finalise_edit_restores_the_snapshot_and_matches_a_clean_build() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    let minimal =
        std::fs::read_to_string(repo_path("manifests/debian-minimal.yaml")).expect("read");
    std::fs::write(
        dir.join("imagefile.yaml"),
        format!("{minimal}elements:\n  - site\n"),
    )
    .expect("write");
    let site = dir.join("elements/site");
    write_hook(
        &site.join("install.d/50-site"),
        "echo installed > /etc/site-install\n",
    );
    write_hook(
        &site.join("finalise.d/50-site"),
        "echo one > /etc/site-final\n",
    );
    // Only this test keeps snapshots in the shared cache; one left by an
    // earlier run of the same kiln would be restored.
    prune_snapshots();

    let (first, _) = build(dir, "out1", &[]);
    assert!(!first.contains("restoring the tree"), "{first}");
    assert!(first.contains("save the snapshot"), "{first}");
    let listed = kiln()
        .args(["cache", "list", "--cache-dir"])
        .arg(shared_cache())
        .output()
        .expect("kiln runs");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("debian-minimal"), "{listed}");
    assert!(listed.contains("1 snapshots"), "{listed}");

    // One finalise.d script edited: the tree comes from the snapshot, and
    // only the finishing phases run.
    write_hook(
        &site.join("finalise.d/50-site"),
        "echo two > /etc/site-final\n",
    );
    let (second, _) = build(dir, "out2", &["--keep-tree"]);
    assert!(
        second.contains("restoring the tree from snapshot"),
        "{second}"
    );
    assert!(second.contains("restore the snapshot"), "{second}");
    assert!(!second.contains("phase install.d"), "{second}");
    assert!(second.contains("phase finalise.d"), "{second}");
    let tree = dir.join("out2/debian-minimal.root");
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/site-final")).expect("read"),
        "two\n"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/site-install")).expect("read"),
        "installed\n"
    );
    assert!(!tree.join("var/lib/kiln-bootstrap-repo").exists());
    assert!(!tree.join("tmp/in_target.d").exists());

    // Built again with nothing changed: up to date, nothing rebuilt; with
    // an output changed since, rebuilt (from the snapshot) to the same
    // bytes.
    let raw = dir.join("out2/debian-minimal.raw");
    let built = sha256(&raw);
    let (again, _) = build(dir, "out2", &[]);
    assert!(again.contains("debian-minimal is up to date"), "{again}");
    assert!(!again.contains("restoring the tree"), "{again}");
    std::fs::write(&raw, b"damaged").expect("damage the output");
    let (repaired, _) = build(dir, "out2", &[]);
    assert!(!repaired.contains("up to date"), "{repaired}");
    assert!(
        repaired.contains("restoring the tree from snapshot"),
        "{repaired}"
    );
    assert_eq!(sha256(&raw), built);

    // A clean build of the same inputs: the same bytes.
    let (third, _) = build(dir, "out3", &["--no-cache"]);
    assert!(!third.contains("restoring the tree"), "{third}");
    assert!(!third.contains("save the snapshot"), "{third}");
    for file in ["debian-minimal.raw", "debian-minimal.tar"] {
        assert_eq!(
            sha256(&dir.join("out2").join(file)),
            sha256(&dir.join("out3").join(file)),
            "{file}: incremental and clean builds differ"
        );
    }
    assert_eq!(mounts_under(dir), Vec::<String>::new());
    prune_snapshots();
}

//! A committed lock builds anywhere, as root against the real mirror: what
//! a colleague, a CI runner or next year's rebuild does with a repository
//! holding `imagefile.yaml`, `imagefile.lock` and an element of its own.
//!
//! The build that made the lock gives the reference bytes; then, each
//! with a cache that starts empty: (1) a plain build and (2) a `--locked`
//! build, started at the same moment on one cache; (3) `kiln fetch`, then
//! `kiln build --offline` in a network namespace with no network at all;
//! (4) a `git clone` of the repository at another path. Every output must
//! be byte-identical to the reference, and the lock untouched. Every error
//! on the way that says "run X first" is followed by X, and then works.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{kiln, mounts_under, repo_path, shared_cache, tool};

const IMAGE: &str = "debian-minimal";

/// The outputs compared, by extension.
const OUTPUTS: [&str; 2] = ["raw", "tar"];

/// An element of the repository's own, found with `--elements-path`.
const ELEMENT_SCRIPT: &str = "#!/bin/bash
set -eu
echo 'built from a committed lock' > /etc/hello-from-the-repository
";

fn sha256(path: &Path) -> String {
    tool("sha256sum", &[path.to_str().expect("UTF-8 path")])
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `kiln` with `args` in `dir`, asserting success; returns stderr.
fn kiln_ok(dir: &Path, args: &[&str]) -> String {
    let output = kiln()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("kiln runs");
    let stderr = text(&output);
    assert!(output.status.success(), "kiln {args:?}: {stderr}");
    stderr
}

/// The real `kiln` binary in a new network namespace: no interface but a
/// loopback that is down, so no mirror can be reached by any means.
fn kiln_without_network(dir: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .arg("--net")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("unshare runs (util-linux)")
}

fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=kiln test",
            "-c",
            "user.email=test@kiln.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", text(&output));
}

/// The hashes of the outputs in `out`, by extension.
fn hashes(out: &Path) -> Vec<(String, String)> {
    OUTPUTS
        .iter()
        .map(|ext| {
            let file = out.join(format!("{IMAGE}.{ext}"));
            assert!(file.is_file(), "{} was written", file.display());
            ((*ext).to_string(), sha256(&file))
        })
        .collect()
}

/// A user's repository: the minimal example with an element of its own,
/// committed with git.
fn repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    let element = repo.join("elements/hello/install.d");
    std::fs::create_dir_all(&element).expect("mkdir");
    let script = element.join("50-hello");
    std::fs::write(&script, ELEMENT_SCRIPT).expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    // A built-in element through `element-deps`, as DIB elements do.
    std::fs::write(repo.join("elements/hello/element-deps"), "install-static\n").expect("write");
    let static_dir = repo.join("elements/hello/static/etc");
    std::fs::create_dir_all(&static_dir).expect("mkdir");
    std::fs::write(static_dir.join("hello-static"), "from static/\n").expect("write");
    let manifest =
        std::fs::read_to_string(repo_path("manifests/debian-minimal.yaml")).expect("the example");
    std::fs::write(
        repo.join("imagefile.yaml"),
        format!("{manifest}elements:\n  - hello\n"),
    )
    .expect("write");
    repo
}

#[test]
fn a_committed_lock_builds_the_same_bytes_on_a_fresh_machine() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    let repo = repository(temp.path());
    let warm = shared_cache();
    let warm = warm.to_str().expect("UTF-8");

    // The build that makes the lock, in the (warm) cache of this machine.
    kiln_ok(
        &repo,
        &[
            "build",
            "--elements-path",
            "elements",
            "-o",
            "out",
            "--cache-dir",
            warm,
        ],
    );
    let reference = hashes(&repo.join("out"));
    let lock_path = repo.join("imagefile.lock");
    let lock_text = std::fs::read_to_string(&lock_path).expect("the build wrote the lock");
    // Nothing of this machine is in the lock: not the cache, not the
    // checkout (the element is recorded relative to the imagefile).
    assert!(
        lock_text.contains("{name: \"hello\", origin: \"elements/hello\""),
        "{lock_text}"
    );
    assert!(
        lock_text.contains("{name: \"install-static\", origin: \"builtin\""),
        "built-in elements are `builtin`: {lock_text}"
    );
    for machine_path in [warm, temp.path().to_str().expect("UTF-8")] {
        assert!(
            !lock_text.contains(machine_path),
            "the lock names {machine_path}: {lock_text}"
        );
    }
    std::fs::remove_dir_all(repo.join("out")).expect("remove the outputs");
    std::fs::write(repo.join(".gitignore"), "out*/\n").expect("write");
    git(&repo, &["init", "--quiet"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "an image"]);

    // (1) and (2): two builds at once on one empty cache, one --locked.
    let fresh = temp.path().join("fresh-cache");
    let fresh_arg = fresh.to_str().expect("UTF-8");
    let start = |extra: &[&str], out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .env("NO_COLOR", "1")
            .current_dir(&repo)
            .arg("build")
            .args(extra)
            .args([
                "--elements-path",
                "elements",
                "--timings",
                "-o",
                out,
                "--cache-dir",
            ])
            .arg(fresh_arg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kiln build starts")
    };
    let plain = start(&[], "out-plain");
    let locked = start(&["--locked"], "out-locked");
    for (name, child) in [("plain", plain), ("--locked", locked)] {
        let output = child.wait_with_output().expect("kiln build ends");
        let stderr = text(&output);
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("fetch "),
            "{name} reports --timings: {stderr}"
        );
    }
    assert_eq!(
        hashes(&repo.join("out-plain")),
        reference,
        "(1) a fresh cache"
    );
    assert_eq!(hashes(&repo.join("out-locked")), reference, "(2) --locked");

    // (3) --offline with the network closed: first it says what to run,
    // then, after that, it builds.
    let offline = temp.path().join("offline-cache");
    let offline_arg = offline.to_str().expect("UTF-8");
    let offline_build = [
        "build",
        "--offline",
        "--locked",
        "--elements-path",
        "elements",
        "--timings",
        "-o",
        "out-offline",
        "--cache-dir",
        offline_arg,
    ];
    let output = kiln_without_network(&repo, &offline_build);
    let stderr = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not in the cache and kiln is offline"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run `kiln fetch` once with the network"),
        "{stderr}"
    );
    assert!(!repo.join(format!("out-offline/{IMAGE}.raw")).exists());
    let fetched = kiln_ok(&repo, &["fetch", "--cache-dir", offline_arg]);
    assert!(fetched.contains(" downloaded "), "{fetched}");
    let output = kiln_without_network(&repo, &offline_build);
    assert!(output.status.success(), "(3) offline: {}", text(&output));
    assert_eq!(hashes(&repo.join("out-offline")), reference, "(3) offline");

    // (4) a clone at another path, with another empty cache.
    let elsewhere = temp.path().join("another/much/deeper/place");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let clone = elsewhere.join("clone");
    git(
        &elsewhere,
        &["clone", "--quiet", repo.to_str().expect("UTF-8"), "clone"],
    );
    let clone_cache = temp.path().join("clone-cache");
    kiln_ok(
        &clone,
        &[
            "build",
            "--locked",
            "--elements-path",
            "elements",
            "-o",
            "out",
            "--cache-dir",
            clone_cache.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(hashes(&clone.join("out")), reference, "(4) a clone");

    // No build touched the committed lock.
    assert_eq!(
        std::fs::read_to_string(&lock_path).expect("lock"),
        lock_text
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("imagefile.lock")).expect("lock"),
        lock_text
    );
    assert_eq!(mounts_under(temp.path()), Vec::<String>::new());
}

#[test]
fn a_stale_lock_offline_or_locked_says_what_to_run_and_that_works() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    std::fs::copy(
        repo_path("manifests/debian-minimal.yaml"),
        dir.join("imagefile.yaml"),
    )
    .expect("copy");
    let cache = dir.join("cache");
    let cache_arg = cache.to_str().expect("UTF-8");

    // No lock at all.
    for (flag, said) in [
        (
            "--locked",
            "run `kiln lock imagefile.yaml` and commit the lock",
        ),
        (
            "--offline",
            "run `kiln lock imagefile.yaml` and `kiln fetch imagefile.yaml` with the network first",
        ),
    ] {
        let output = kiln_without_network(
            dir,
            &[
                "build",
                flag,
                "-o",
                "out",
                "--cache-dir",
                cache_arg,
                "imagefile.yaml",
            ],
        );
        let stderr = text(&output);
        assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
        assert!(
            stderr.contains("there is no lock at imagefile.lock"),
            "{stderr}"
        );
        assert!(stderr.contains(said), "{flag}: {stderr}");
        assert!(!dir.join("imagefile.lock").exists(), "{flag} wrote no lock");
    }

    // A lock of another format is named as such.
    std::fs::write(dir.join("imagefile.lock"), "version: 1\n").expect("write");
    let output = kiln()
        .current_dir(dir)
        .args(["build", "--locked", "-o", "out", "--cache-dir", cache_arg])
        .output()
        .expect("kiln runs");
    let stderr = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has lockfile format 1;"), "{stderr}");
    assert!(stderr.contains("older kiln"), "{stderr}");

    // What the help said, then the offline, locked build works.
    kiln_ok(dir, &["lock", "imagefile.yaml", "--cache-dir", cache_arg]);
    kiln_ok(dir, &["fetch", "imagefile.yaml", "--cache-dir", cache_arg]);
    let output = kiln_without_network(
        dir,
        &[
            "build",
            "--locked",
            "--offline",
            "-o",
            "out",
            "--cache-dir",
            cache_arg,
            "imagefile.yaml",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(dir.join(format!("out/{IMAGE}.raw")).is_file());
    assert_eq!(mounts_under(dir), Vec::<String>::new());
}

//! `kiln build` as far as it goes today: a minbase tree bootstrapped from
//! the lock, as root, against the real mirror. The tree must hold exactly
//! the lock's packages (read with the tree's own dpkg-query, not kiln's
//! word for it), and the host must be left clean — no mount under the
//! output, no process rooted in the tree — after success and after kiln is
//! killed with SIGKILL in the middle of the chroot work.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    assert_clean_after_kill, kiln, mounts_under, processes_rooted_in, repo_path, shared_cache,
    tool, tree_inventory,
};

fn prepare(dir: &Path) -> String {
    std::fs::copy(
        repo_path("manifests/debian-minimal.yaml"),
        dir.join("imagefile.yaml"),
    )
    .expect("copy");
    let cache = shared_cache().to_str().expect("UTF-8").to_string();
    for args in [
        vec!["lock", "--cache-dir", &cache],
        vec!["fetch", "--cache-dir", &cache],
    ] {
        let output = kiln()
            .current_dir(dir)
            .args(&args)
            .output()
            .expect("kiln runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    cache
}

#[test]
fn a_minbase_tree_holds_exactly_the_lock_and_the_host_stays_clean() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = prepare(temp.path());
    let out = temp.path().join("out");

    // --locked refuses a lock older than the imagefile, before any work.
    let manifest = temp.path().join("imagefile.yaml");
    let original = std::fs::read_to_string(&manifest).expect("read");
    std::fs::write(&manifest, format!("{original}# changed\n")).expect("write");
    let output = kiln()
        .current_dir(temp.path())
        .args(["build", "--locked", "--cache-dir", &cache, "-o"])
        .arg(&out)
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("and --locked forbids"), "{stderr}");
    assert!(!out.join("debian-minimal.root").exists());
    std::fs::write(&manifest, original).expect("restore");
    // Without a lock, `kiln build` locks first (as cargo does); the build
    // killed below starts that way.
    std::fs::remove_file(temp.path().join("imagefile.lock")).expect("remove the lock");

    // Killed with SIGKILL while the chroot is configuring packages.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("NO_COLOR", "1")
        .current_dir(temp.path())
        .args(["build", "--cache-dir", &cache, "-o"])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln build starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    loop {
        let line = lines
            .next()
            .expect("kiln says it is bootstrapping")
            .expect("UTF-8");
        if line.starts_with("bootstrapping") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no bootstrap started"
        );
    }
    // Kill once dpkg is at work inside the chroot (its output reaches the
    // build log), so mounts and chroot processes exist.
    let log = out.join("debian-minimal.build.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|text| text.contains("Setting up ")) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "dpkg never started in the chroot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let work = out.join(".kiln-build-debian-minimal");
    assert!(
        !processes_rooted_in(&work).is_empty(),
        "chroot processes run when kiln is killed"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert_clean_after_kill(&out, &work, temp.path(), "debian-minimal");

    // The next build succeeds, over what the killed one left (and with a
    // relative output directory, as the README's quick start uses).
    let output = kiln()
        .current_dir(temp.path())
        .args([
            "build",
            "--keep-tree",
            "--timings",
            "--cache-dir",
            &cache,
            "-o",
            "out",
        ])
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("88 locked packages") || stderr.contains(" locked packages"),
        "{stderr}"
    );
    for stage in [
        "fetch",
        "unpack essential",
        "configure essential",
        "install the base",
        "check the finished tree",
        "assemble: filesystem ext4",
        "output raw",
        "output tar",
        "total",
    ] {
        assert!(
            stderr.contains(stage),
            "the timings table lists {stage}: {stderr}"
        );
    }
    let tree = out.join("debian-minimal.root");
    assert_eq!(
        mounts_under(&out),
        Vec::<String>::new(),
        "mounts left after a build"
    );
    assert_eq!(processes_rooted_in(&tree), Vec::<String>::new());
    assert!(!work.exists(), "the work directory is gone");

    // The tree's own dpkg says what is installed; it must be the lock.
    let query = std::process::Command::new("chroot")
        .arg(&tree)
        .args([
            "dpkg-query",
            "--show",
            "--showformat=${Package} ${Version} ${db:Status-Abbrev}\\n",
        ])
        .output()
        .expect("chroot dpkg-query");
    assert!(query.status.success());
    let mut installed: Vec<String> = String::from_utf8_lossy(&query.stdout)
        .lines()
        .map(|l| {
            assert!(l.ends_with("ii "), "not fully installed: {l}");
            l.trim_end_matches(" ii ").to_string()
        })
        .collect();
    installed.sort();
    let lock = kiln::lock::read(&temp.path().join("imagefile.lock")).expect("lock");
    let mut locked: Vec<String> = lock
        .packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    locked.sort();
    assert_eq!(installed, locked);
    // No build scaffolding in the image.
    for leftover in [
        "usr/sbin/policy-rc.d",
        "etc/apt/kiln-bootstrap.list",
        "var/lib/kiln-bootstrap-repo",
    ] {
        assert!(!tree.join(leftover).exists(), "{leftover} left in the tree");
    }
    assert!(
        std::fs::read_link(tree.join("bin")).is_ok_and(|t| t == Path::new("usr/bin")),
        "merged /usr"
    );

    // The raw output is one ext4 filesystem, labelled for cloud images,
    // clean, 64bit, and growable to 1 TiB (a sparse copy) staying clean.
    let raw = out.join("debian-minimal.raw");
    let raw_text = raw.to_str().expect("UTF-8 path");
    tool("e2fsck", &["-fn", raw_text]);
    let header = tool("dumpe2fs", &["-h", raw_text]);
    assert!(
        header.contains("Filesystem volume name:   cloudimg-rootfs"),
        "{header}"
    );
    assert!(header.contains(" 64bit"), "{header}");
    let fstab = tool("debugfs", &["-R", "cat /etc/fstab", raw_text]);
    assert!(fstab.contains("LABEL=cloudimg-rootfs / ext4"), "{fstab}");
    let grown = temp.path().join("grown.raw");
    tool(
        "cp",
        &["--sparse=always", raw_text, grown.to_str().expect("path")],
    );
    tool("truncate", &["-s", "1T", grown.to_str().expect("path")]);
    tool("resize2fs", &[grown.to_str().expect("path"), "1T"]);
    tool("e2fsck", &["-fn", grown.to_str().expect("path")]);
    std::fs::remove_file(&grown).expect("remove the copy");

    // The tar output, extracted, is the tree: types, modes (setuid too),
    // owners, sizes, links, devices, xattrs, clamped mtimes.
    let extracted = temp.path().join("extracted");
    std::fs::create_dir(&extracted).expect("mkdir");
    tool(
        "tar",
        &[
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-xpf",
            out.join("debian-minimal.tar").to_str().expect("path"),
            "-C",
            extracted.to_str().expect("path"),
        ],
    );
    let epoch = i64::try_from(lock.source_date_epoch).expect("epoch");
    let expected = tree_inventory(&tree, epoch);
    assert!(
        expected
            .iter()
            .any(|l| l.starts_with("usr/bin/su mode=104755")),
        "the tree has setuid su"
    );
    assert_eq!(tree_inventory(&extracted, epoch), expected);
    std::fs::remove_dir_all(&extracted).expect("remove the extraction");

    // The report names each output with its hash, the lock's hash, the
    // installed packages and the stages' timings.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("debian-minimal.report.json")).expect("report"),
    )
    .expect("report is JSON");
    let outputs = report["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2);
    for entry in outputs {
        let file = out.join(entry["file"].as_str().expect("file"));
        let sha = tool("sha256sum", &[file.to_str().expect("path")]);
        assert_eq!(entry["sha256"].as_str(), sha.split_whitespace().next());
    }
    let lock_sha = tool(
        "sha256sum",
        &[temp.path().join("imagefile.lock").to_str().expect("path")],
    );
    assert_eq!(
        report["lock_sha256"].as_str(),
        lock_sha.split_whitespace().next()
    );
    assert_eq!(
        report["packages"].as_array().expect("packages").len(),
        lock.packages.len()
    );
    assert!(
        report["timings"]
            .as_array()
            .expect("timings")
            .iter()
            .any(|t| t["stage"] == "output tar")
    );

    // Cleanup without following anything out of the tree.
    std::fs::remove_dir_all(&tree).expect("remove the tree");
}

#[test]
fn a_second_build_into_the_same_directory_is_refused_while_the_first_runs() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = prepare(temp.path());
    let out = temp.path().join("out");
    let args = ["build", "--locked", "--cache-dir", &cache, "-o"];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("NO_COLOR", "1")
        .env("KILN_SNAPSHOT_LIMIT", "0")
        .current_dir(temp.path())
        .args(args)
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the first build starts");
    // The work directory is made once the first build holds the lock.
    let work = out.join(".kiln-build-debian-minimal");
    let started = Instant::now();
    while !work.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first build never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = kiln()
        .current_dir(temp.path())
        .args(args)
        .arg(&out)
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another kiln build is writing into {} right now",
            out.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("build into another directory with -o"),
        "{stderr}"
    );
    // The first is untouched by it and finishes.
    assert!(first.wait().expect("reaped").success());
    assert!(out.join("debian-minimal.raw").is_file());
    assert!(!work.exists());
    assert_eq!(mounts_under(&out), Vec::<String>::new());
}

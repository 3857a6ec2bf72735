//! `kiln build` running element phases against the bootstrapped tree, as
//! root against the real mirror: the fixture elements in
//! `tests/fixtures/elements/` record where and in which order their scripts
//! ran, and a failing `install.d` script stops the build naming itself,
//! leaving no tree, no mount and no process behind.

use std::path::{Path, PathBuf};

use crate::common::{
    assert_clean_after_kill, kiln, mounts_under, processes_rooted_in, repo_path, shared_cache,
};

fn fixtures(set: &str) -> PathBuf {
    repo_path("tests/fixtures/elements").join(set)
}

/// `manifests/debian-minimal.yaml` with `elements` added, in `dir`.
fn imagefile(dir: &Path, elements: &[&str]) {
    let minimal =
        std::fs::read_to_string(repo_path("manifests/debian-minimal.yaml")).expect("read");
    let list: String = if elements.is_empty() {
        "elements: []\n".to_string()
    } else {
        let items: String = elements.iter().map(|e| format!("  - {e}\n")).collect();
        format!("elements:\n{items}")
    };
    std::fs::write(dir.join("imagefile.yaml"), format!("{minimal}{list}")).expect("write");
}

fn build(dir: &Path, elements_paths: &[PathBuf]) -> std::process::Output {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let cache = shared_cache();
    let mut command = kiln();
    command
        .current_dir(dir)
        .args([
            "build",
            "--keep-tree",
            "--timings",
            "-o",
            "out",
            "--cache-dir",
        ])
        .arg(&cache);
    for path in elements_paths {
        command.arg("--elements-path").arg(path);
    }
    command.output().expect("kiln runs")
}

#[test]
fn element_phases_run_in_dib_order_inside_and_outside_the_chroot() {
    let temp = tempfile::tempdir().expect("tempdir");
    imagefile(temp.path(), &["fixture-os", "fixture-lib"]);
    let output = build(temp.path(), &[fixtures("build")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for stage in [
        "phase root.d",
        "phase install.d",
        // Each in-chroot script's own time, under its phase.
        "  install.d/10-fixture-lib (fixture-lib)",
        "  post-install.d/40-fixture-lib (fixture-lib)",
        "phase cleanup.d",
        "total",
    ] {
        assert!(stderr.contains(stage), "the timings list {stage}: {stderr}");
    }
    assert!(
        stderr.contains("skipped 1 block-device.d scripts"),
        "{stderr}"
    );

    let out = temp.path().join("out");
    let tree = out.join("debian-minimal.root");
    let markers = std::fs::read_to_string(tree.join("fixture-markers")).expect("markers");
    let markers: Vec<&str> = markers.lines().collect();
    assert_eq!(
        markers,
        [
            "fixture-os/root.d/10-fixture-os-root outside",
            "fixture-app/root.d/50-fixture-app-root outside",
            "fixture-app/extra-data.d/50-fixture-app-extra-data outside",
            "fixture-app/pre-install.d/50-fixture-app-pre-install inside",
            "fixture-app/install.d/9-fixture-app-early inside",
            "fixture-lib/install.d/10-fixture-lib inside",
            "fixture-app/install.d/50-fixture-app-install inside",
            "fixture-app/install.d/100-fixture-app-late inside",
            "fixture-lib/post-install.d/40-fixture-lib inside",
            "fixture-app/post-install.d/50-fixture-app-post-install inside",
            "fixture-app/post-root.d/50-fixture-app-post-root outside",
            "fixture-app/pre-finalise.d/50-fixture-app-pre-finalise outside",
            "fixture-app/finalise.d/50-fixture-app-finalise inside",
            "fixture-app/cleanup.d/50-fixture-app-cleanup outside",
            "fixture-os/cleanup.d/90-fixture-os-cleanup outside",
        ]
    );

    // environment.d was sourced in order, and kiln's own variables set.
    let lock = kiln::lock::read(&temp.path().join("imagefile.lock")).expect("lock");
    let env = std::fs::read_to_string(tree.join("fixture-env")).expect("env");
    assert_eq!(
        env.trim_end(),
        format!(
            "FIXTURE_OS_LOADED=1 FIXTURE_LIB=1 FIXTURE_LIB_LATE=1 DISTRO_NAME=debian \
             TMP_HOOKS_PATH=/tmp/in_target.d SOURCE_DATE_EPOCH={}",
            lock.source_date_epoch
        )
    );

    // The lock pins every element's tree, and the packages their
    // package-installs ask for (through pkg-map: web-server → lighttpd)
    // are locked and installed; arch-restricted ones are not.
    let elements: Vec<&str> = lock.elements.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(elements[..3], ["fixture-os", "fixture-lib", "fixture-app"]);
    // fixture-app's `element-deps: base` resolves to kiln's built-in core
    // elements under their diskimage-builder names.
    for core in [
        "base",
        "install-bin",
        "install-static",
        "package-installs",
        "pkg-map",
        "dib-init-system",
    ] {
        assert!(
            elements.contains(&core),
            "{core} is planned and pinned: {elements:?}"
        );
    }
    // install-bin and install-static did their work before install.d.
    use std::os::unix::fs::PermissionsExt;
    let hello = tree.join("usr/local/bin/fixture-hello");
    let mode = std::fs::metadata(&hello)
        .expect("bin/ installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "installed executable");
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/fixture-static.conf")).expect("static/ copied"),
        "installed by install-static\n"
    );
    assert!(lock.elements.iter().all(|e| e.tree.starts_with("sha256:")));
    let names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
    for wanted in ["lighttpd", "less"] {
        assert!(names.contains(&wanted), "{wanted} is locked");
    }
    assert!(!names.contains(&"does-not-exist"));
    assert!(
        tree.join("usr/sbin/lighttpd").exists(),
        "lighttpd is installed"
    );

    // package-installs ran at its place in each phase: lighttpd (install.d)
    // before 50-fixture-app-install, ed (build-only) during install.d and
    // gone after it, though locked; DIB's helpers worked in the chroot.
    let helpers = std::fs::read_to_string(tree.join("fixture-helpers")).expect("helpers");
    let helpers: Vec<&str> = helpers.lines().collect();
    assert_eq!(
        helpers,
        [
            "ed-during-install.d /usr/bin/ed",
            "lighttpd-before-50 installed",
            "pkg-map lighttpd",
            "pkg-map-missing-ok vim",
            "dib-init-system systemd",
            "hooks /tmp/in_target.d",
            "unlocked-install refused: install-packages: not in the lock: cowsay",
            "locked-install ok",
            "dib-run-parts a b ",
        ]
    );
    assert!(names.contains(&"ed"), "ed is locked");
    assert!(!tree.join("usr/bin/ed").exists(), "ed was removed");
    assert!(stderr.contains("removed during the build: ed"), "{stderr}");
    // Outside the chroot, `sudo` and DIB's exported functions work.
    let outside = tree.join("fixture-outside");
    assert_eq!(
        std::fs::read_to_string(outside.join("element-dir"))
            .expect("get_image_element_array")
            .trim_end(),
        fixtures("build").join("fixture-app").display().to_string()
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("yaml")).expect("IMAGE_ELEMENT_YAML"),
        "yaml-ok\n"
    );

    // Changing an element makes the lock stale: --locked refuses to build.
    let elements_copy = temp.path().join("elements");
    std::fs::create_dir(&elements_copy).expect("mkdir");
    for name in ["fixture-os", "fixture-lib", "fixture-app"] {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(fixtures("build").join(name))
            .arg(&elements_copy)
            .status()
            .expect("cp");
        assert!(status.success());
    }
    let check = |elements_path: &Path| {
        kiln()
            .current_dir(temp.path())
            .args(["build", "--locked", "-o", "out2", "--cache-dir"])
            .arg(shared_cache())
            .arg("--elements-path")
            .arg(elements_path)
            .args(["--offline"])
            .output()
            .expect("kiln runs")
    };
    std::fs::write(
        elements_copy.join("fixture-app/install.d/50-fixture-app-install"),
        "#!/bin/sh\necho changed\n",
    )
    .expect("change the element");
    let output = check(&elements_copy);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("its elements, and --locked forbids"),
        "{stderr}"
    );

    // No build scaffolding left in the image or on the host.
    for leftover in [
        "tmp/in_target.d",
        "usr/sbin/policy-rc.d",
        "var/lib/kiln-bootstrap-repo",
        "etc/apt/kiln-bootstrap.list",
    ] {
        assert!(!tree.join(leftover).exists(), "{leftover} left in the tree");
    }
    assert_eq!(mounts_under(&out), Vec::<String>::new());
    assert_eq!(processes_rooted_in(&tree), Vec::<String>::new());
    assert!(!out.join(".kiln-build-debian-minimal").exists());
    std::fs::remove_dir_all(&tree).expect("remove the tree");
}

#[test]
fn a_failing_script_stops_the_build_naming_itself_and_leaves_nothing() {
    let temp = tempfile::tempdir().expect("tempdir");
    imagefile(temp.path(), &["fixture-fail"]);
    // With --shell-on-failure a shell opens in the chroot at the failure,
    // with its mounts in place; here it reads its commands from stdin.
    let output = kiln()
        .current_dir(temp.path())
        .args(["build", "--shell-on-failure", "-o", "out", "--cache-dir"])
        .arg(shared_cache())
        .arg("--elements-path")
        .arg(fixtures("failing"))
        .write_stdin("echo \"shell sees debian $(cat /etc/debian_version), $(ls /proc | grep -c '^[0-9]') processes\"; exit\n")
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stdout.contains("shell sees debian 12."),
        "the shell ran in the tree: {stdout}\n{stderr}"
    );
    assert!(stderr.contains("opening a shell in the chroot"), "{stderr}");
    for part in [
        "fixture-fail",
        "install.d",
        "50-fixture-fail",
        "exit code 3",
        "fixture-fail is about to fail",
        "debian-minimal.build.log",
    ] {
        assert!(stderr.contains(part), "stderr names {part}: {stderr}");
    }
    let out = temp.path().join("out");
    assert!(
        !out.join("debian-minimal.root").exists(),
        "no finished tree"
    );
    assert!(
        !out.join(".kiln-build-debian-minimal").exists(),
        "work dir removed"
    );
    assert_eq!(mounts_under(&out), Vec::<String>::new());
    assert_eq!(processes_rooted_in(&out), Vec::<String>::new());
}

#[test]
fn sigkill_during_install_d_leaves_the_host_clean_and_the_next_build_works() {
    use std::time::{Duration, Instant};

    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    imagefile(temp.path(), &["fixture-hang"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("NO_COLOR", "1")
        .current_dir(temp.path())
        .args(["build", "-o", "out", "--cache-dir"])
        .arg(shared_cache())
        .arg("--elements-path")
        .arg(fixtures("hanging"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kiln build starts");

    // Wait until the install.d script is running in the chroot.
    let out = temp.path().join("out");
    let log = out.join("debian-minimal.build.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|text| text.contains("fixture-hang is waiting"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "install.d never started"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "kiln ended before install.d"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::fs::canonicalize(&out).expect("out exists");
    let work = out.join(".kiln-build-debian-minimal");
    assert!(
        !processes_rooted_in(&work).is_empty(),
        "the script runs in the tree"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    assert_clean_after_kill(&out, &work, temp.path(), "debian-minimal");

    // The next build, without the hanging element, succeeds over the
    // remains of the killed one.
    imagefile(temp.path(), &[]);
    let output = build(temp.path(), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.join("debian-minimal.root/usr/bin/dpkg").exists());
    assert_eq!(mounts_under(&out), Vec::<String>::new());
    std::fs::remove_dir_all(out.join("debian-minimal.root")).expect("remove the tree");
}

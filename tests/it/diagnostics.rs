//! The diagnostics of a new user's commonest mistakes: a build started
//! without root, a misspelt element, a partition too small for the tree.
//! Each exits 1 with a `help:` line, points into the imagefile where the
//! mistake is there, and leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `stderr` with miette's wrapped lines joined again: a message goes on
/// after `  │ `, a help line after eight spaces.
fn unwrapped(stderr: &[u8]) -> String {
    let mut text = String::new();
    for line in String::from_utf8_lossy(stderr).lines() {
        if let Some(rest) = line
            .strip_prefix("  │ ")
            .or_else(|| line.strip_prefix("        "))
        {
            text.push(' ');
            text.push_str(rest);
        } else {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line);
        }
    }
    text
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs a copy of kiln (where user `nobody` can run it) as `nobody` in
/// `dir`, with `args`.
fn kiln_as_nobody(dir: &Path, args: &[&str]) -> std::process::Output {
    let binary = dir.join("kiln");
    if !binary.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &binary).expect("copy kiln");
        chmod(&binary, 0o755);
    }
    std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&binary)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/nonexistent")
        .env("TMPDIR", dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv runs kiln")
}

/// `kiln build` and `kiln disk-image-create` as a user other than root
/// fail at once with a diagnostic that says root is needed and gives the
/// command again under sudo, and create nothing: no output directory, no
/// lock, no `<base>.d/`. `kiln validate` still works as that user.
#[test]
fn a_build_without_root_says_so_before_doing_anything() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the test runs kiln as nobody: run the suite as root (scripts/test)"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    // Writable by nobody, so that only kiln's refusal keeps it empty.
    chmod(dir, 0o1777);
    std::fs::write(
        dir.join("imagefile.yaml"),
        "name: t\nbase:\n  distro: debian\n  release: bookworm\nelements: [vm]\noutputs: [qcow2]\n",
    )
    .expect("write");
    chmod(&dir.join("imagefile.yaml"), 0o644);
    let before = listing(dir);

    let built = kiln_as_nobody(dir, &["build", "-o", "out dir", "imagefile.yaml"]);
    let stderr = unwrapped(&built.stderr);
    assert_eq!(built.status.code(), Some(1), "{stderr}");
    for expected in [
        "kiln build needs root: it mounts /proc, /sys and /dev into the image's chroot",
        "(kiln runs as uid 65534)",
        "help: run it as root: sudo ",
        "kiln build -o 'out dir' imagefile.yaml",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
    assert!(!stderr.contains("EPERM"), "{stderr}");
    assert_eq!(listing(dir), before, "nothing is created");

    let dib = kiln_as_nobody(dir, &["disk-image-create", "-o", "img", "vm", "debian"]);
    let stderr = unwrapped(&dib.stderr);
    assert_eq!(dib.status.code(), Some(1), "{stderr}");
    for expected in [
        "disk-image-create needs root",
        "help: run it as root: sudo ",
        "disk-image-create -o img vm debian",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
    assert_eq!(listing(dir), before, "no img.d/ is created");

    let validated = kiln_as_nobody(dir, &["validate", "imagefile.yaml"]);
    let stderr = String::from_utf8_lossy(&validated.stderr);
    assert!(validated.status.success(), "{stderr}");
    assert!(stderr.contains("imagefile.yaml: valid"), "{stderr}");
}

/// The names in `dir`, sorted, without the copy of kiln and what
/// `kiln validate` unpacks into `$TMPDIR`.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "kiln" && !name.starts_with("kiln-"))
        .collect();
    names.sort();
    names
}

/// Runs `kiln ARGS` in `dir` with only the element directories given
/// (none from the environment), a cache of its own, and returns the exit
/// code and stderr.
fn kiln_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = crate::common::kiln()
        .current_dir(dir)
        .env_remove("KILN_ELEMENTS_PATH")
        .env_remove("ELEMENTS_PATH")
        .env("KILN_CACHE_DIR", dir.join("cache"))
        .args(args)
        .output()
        .expect("kiln runs");
    (output.status.code(), unwrapped(&output.stderr))
}

/// A misspelt element is underlined in `elements:` with a "did you mean"
/// by `kiln validate`, `kiln lock` and `kiln build` alike (each plans the
/// elements before anything else), in both forms of an entry.
#[test]
fn a_misspelt_element_is_underlined_in_the_imagefile() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    std::fs::write(
        dir.join("imagefile.yaml"),
        "name: t\nbase: {distro: debian, release: bookworm}\nelements: [vm, growrot]\noutputs: [qcow2]\n",
    )
    .expect("write");
    for command in ["validate", "lock", "build"] {
        let (code, stderr) = kiln_in(dir, &[command, "imagefile.yaml"]);
        assert_eq!(code, Some(1), "{command}: {stderr}");
        for expected in [
            "× element `growrot` not found; searched ",
            "╭─[imagefile.yaml:3:16]",
            "3 │ elements: [vm, growrot]",
            "·                ───┬───",
            "╰── no element of this name",
            "help: did you mean `growroot`? Otherwise check the element names and --elements-path",
        ] {
            assert!(
                stderr.contains(expected),
                "{command}: no `{expected}` in:\n{stderr}"
            );
        }
        assert!(!dir.join("imagefile.lock").exists(), "{command} locked");
    }

    // The `- name:` form: the name is underlined.
    std::fs::write(
        dir.join("imagefile.yaml"),
        "name: t\nbase: {distro: debian, release: bookworm}\nelements:\n  - vm\n  - name: devusr\n    with: {DIB_DEV_USER_USERNAME: stack}\n",
    )
    .expect("write");
    let (code, stderr) = kiln_in(dir, &["validate", "imagefile.yaml"]);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        "5 │   - name: devusr",
        "·           ───┬──",
        "help: did you mean `devuser`?",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
}

/// An element missing from the search path because another element's
/// `element-deps` names it: the diagnostic says which element depends on
/// it and underlines the imagefile's entry that brought that one in.
#[test]
fn a_missing_dependency_names_the_element_that_needs_it() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    std::fs::write(
        dir.join("imagefile.yaml"),
        "name: t\nbase: {distro: debian, release: bookworm}\nelements: [fixture-os, needs-missing]\n",
    )
    .expect("write");
    let broken = crate::common::repo_path("tests/fixtures/elements/broken-dep");
    let basic = crate::common::repo_path("tests/fixtures/elements/basic");
    let (broken, basic) = (
        broken.to_str().expect("UTF-8"),
        basic.to_str().expect("UTF-8"),
    );
    let (code, stderr) = kiln_in(
        dir,
        &[
            "validate",
            "--elements-path",
            broken,
            "--elements-path",
            basic,
            "imagefile.yaml",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        "× element `no-such-element` not found: `needs-missing` depends on it in its element-deps (the imagefile asks for it); searched ",
        "3 │ elements: [fixture-os, needs-missing]",
        "·                        ──────┬──────",
        "╰── needs `no-such-element` through element-deps",
        "help: fix the element-deps of `needs-missing`, or add the directory holding `no-such-element` with --elements-path",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
}

/// The number after `prefix` in `text`, up to the next space, as MiB
/// (`612.3 MiB`).
fn mib_after(text: &str, prefix: &str) -> f64 {
    let rest = &text[text
        .find(prefix)
        .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
        + prefix.len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{prefix}`"));
    if rest[number.len()..].starts_with(" GiB") {
        value * 1024.0
    } else {
        assert!(rest[number.len()..].starts_with(" MiB"), "{rest}");
        value
    }
}

/// A root partition too small for the tree fails as the user's mistake
/// (exit 1) once the tree is made and before any filesystem is written:
/// the diagnostic underlines the partition's `size:`, names the tree's
/// size and the smallest size that holds it, and the build leaves no image,
/// no work directory and no mount behind.
#[test]
fn a_partition_too_small_for_the_tree_points_at_its_size() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    // The minbase tree of manifests/debian-minimal.yaml, whose packages
    // the shared cache has, on a disk whose root partition cannot hold it.
    std::fs::write(
        dir.join("imagefile.yaml"),
        "name: small\nbase:\n  distro: debian\n  release: bookworm\ndisk:\n  table: gpt\n  partitions:\n    - name: root\n      size: 64MiB\n      mountpoint: /\noutputs: [raw]\n",
    )
    .expect("write");
    let cache = crate::common::shared_cache();
    let out = dir.join("out");
    let output = crate::common::kiln()
        .current_dir(dir)
        .arg("build")
        .arg("--cache-dir")
        .arg(&cache)
        .arg("-o")
        .arg(&out)
        .arg("imagefile.yaml")
        .output()
        .expect("kiln runs");
    let stderr = unwrapped(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "× partition `root` is too small: it is 64.0 MiB, and the files that go in it (the whole tree) take ",
        "; an ext4 holding them needs at least ",
        "╭─[imagefile.yaml:9:13]",
        "9 │       size: 64MiB",
        "·             ──┬──",
        "╰── too small: needs at least ",
        "help: give the partition `size: ",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
    assert!(!stderr.contains("mke2fs"), "{stderr}");
    let tree = mib_after(&stderr, "(the whole tree) take ");
    let needed = mib_after(&stderr, "needs at least ");
    assert!(tree > 64.0 && needed > tree, "{tree} {needed}\n{stderr}");
    // The label and the help give the same size, in the imagefile's units.
    let label = stderr
        .split("too small: needs at least ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the label's size");
    assert!(
        stderr.contains(&format!("help: give the partition `size: {label}` or more")),
        "{stderr}"
    );
    assert_eq!(
        label,
        format!("{}MiB", needed.round() as u64),
        "the label and the message agree"
    );

    assert_eq!(crate::common::mounts_under(dir), Vec::<String>::new());
    assert_eq!(crate::common::loop_devices_under(dir), Vec::<String>::new());
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .expect("the output directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["small.build.log"], "only the build log is left");
}

/// The guide's `KILN_NO_TMPFS=1` (and `0`) is taken as a switch, as
/// `KILN_QUIET` is, not refused by the argument parser.
#[test]
fn kiln_no_tmpfs_takes_one_and_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    for value in ["1", "0", "true"] {
        let output = crate::common::kiln()
            .current_dir(dir.path())
            .env("KILN_NO_TMPFS", value)
            .args(["build", "missing.yaml"])
            .output()
            .expect("kiln runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{value}: {stderr}");
        assert!(!stderr.contains("invalid value"), "{value}: {stderr}");
        assert!(stderr.contains("missing.yaml"), "{value}: {stderr}");
    }
}

//! `kiln validate`, `kiln init` and the command line as a user meets them:
//! the examples in `manifests/` are valid, a starter imagefile validates,
//! existing files are never overwritten, and exit codes tell user errors
//! (1) from internal failures (2).

use std::path::Path;

use crate::common::{files_with_extension, kiln, repo_path};

#[test]
fn every_example_manifest_is_valid() {
    let manifests = files_with_extension(&repo_path("manifests"), &[".yaml"]);
    assert!(!manifests.is_empty(), "manifests/ holds examples");
    for manifest in manifests {
        let output = kiln()
            .arg("validate")
            .arg(&manifest)
            .output()
            .expect("kiln runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}:\n{stderr}",
            manifest.display()
        );
        assert!(stderr.contains(": valid"), "{stderr}");
        assert!(
            !stderr.contains("warning"),
            "{}: examples carry no warnings:\n{stderr}",
            manifest.display()
        );
    }
}

#[test]
fn validate_reads_imagefile_yaml_by_default() {
    let temp = tempfile::tempdir().expect("temporary directory");
    let output = kiln()
        .current_dir(temp.path())
        .arg("validate")
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("imagefile.yaml: no such file"), "{stderr}");
    assert!(stderr.contains("kiln init"), "{stderr}");

    std::fs::write(
        temp.path().join("imagefile.yaml"),
        "name: demo\nbase: {distro: debian, release: bookworm}\n",
    )
    .expect("write");
    let output = kiln()
        .current_dir(temp.path())
        .arg("validate")
        .output()
        .expect("kiln runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn warnings_are_shown_but_do_not_fail() {
    let temp = tempfile::tempdir().expect("temporary directory");
    let path = temp.path().join("imagefile.yaml");
    std::fs::write(
        &path,
        "name: demo\nbase: {distro: debian, release: bookworm}\npackages: [vim, curl, vim]\n",
    )
    .expect("write");
    let output = kiln()
        .current_dir(temp.path())
        .arg("validate")
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("this package is listed twice"), "{stderr}");
    assert!(stderr.contains("first listed here"), "{stderr}");
    assert!(stderr.contains("imagefile.yaml:3:"), "{stderr}");
}

#[test]
fn init_writes_a_starter_that_validates_and_never_overwrites() {
    let temp = tempfile::tempdir().expect("temporary directory");
    let project = temp.path().join("web-server");
    std::fs::create_dir(&project).expect("mkdir");

    let output = kiln()
        .current_dir(&project)
        .arg("init")
        .output()
        .expect("kiln runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(project.join("imagefile.yaml")).expect("starter written");
    assert!(
        text.starts_with("# yaml-language-server: $schema=.kiln/imagefile.schema.json\n"),
        "{text}"
    );
    assert!(
        text.contains("name: web-server\n"),
        "the name comes from the directory:\n{text}"
    );
    assert!(
        text.contains("\nelements:\n")
            && text.contains("\n  - vm\n")
            && text.contains("\n  - debian\n"),
        "the Debian starter is a cloud image that boots:\n{text}"
    );
    let schema_copy =
        std::fs::read_to_string(project.join(".kiln/imagefile.schema.json")).expect("schema copy");
    let committed =
        std::fs::read_to_string(repo_path("schema/imagefile.schema.json")).expect("schema");
    assert_eq!(schema_copy, committed);

    let output = kiln()
        .current_dir(&project)
        .arg("validate")
        .output()
        .expect("kiln runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let before = std::fs::read(project.join("imagefile.yaml")).expect("read");
    let output = kiln()
        .current_dir(&project)
        .arg("init")
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("kiln init never overwrites a file"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(project.join("imagefile.yaml")).expect("read"),
        before
    );
}

#[test]
fn init_takes_distro_release_and_a_directory() {
    let temp = tempfile::tempdir().expect("temporary directory");
    let output = kiln()
        .current_dir(temp.path())
        .args(["init", ".", "--distro", "ubuntu", "--release", "jammy"])
        .output()
        .expect("kiln runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(temp.path().join("imagefile.yaml")).expect("written");
    assert!(
        text.contains("  distro: ubuntu\n  release: jammy\n"),
        "{text}"
    );
    assert!(
        text.contains("\nelements: []\n"),
        "only Debian's starter boots; the others leave the elements to the user:\n{text}"
    );

    let output = kiln()
        .current_dir(temp.path())
        .args(["init", "minimal.yaml", "--minimal"])
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    let text = std::fs::read_to_string(temp.path().join("minimal.yaml")).expect("written");
    assert!(
        text.contains("  distro: debian\n") && text.contains("\nelements: []\n"),
        "--minimal is a root tree:\n{text}"
    );
    let output = kiln()
        .current_dir(temp.path())
        .args(["validate", "minimal.yaml"])
        .output()
        .expect("kiln runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = kiln()
        .current_dir(temp.path())
        .args(["init", "other.yaml", "--release", "not a release"])
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        !temp.path().join("other.yaml").exists(),
        "nothing is written for a bad release"
    );
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let output = kiln().arg("valdate").output().expect("kiln runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("validate"),
        "clap suggests the command"
    );

    let output = kiln().arg("--help").output().expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("validate"));

    let output = kiln().arg("--version").output().expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("kiln "));
}

#[test]
fn elements_are_listed_and_shown_from_the_search_path() {
    let fixtures = repo_path("tests/fixtures/elements/basic");
    let output = kiln()
        .args(["elements", "list", "--elements-path"])
        .arg(&fixtures)
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in ["fixture-app", "fixture-lib", "fixture-os"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    assert!(stdout.contains("(provides operating-system)"), "{stdout}");

    let output = kiln()
        .args(["elements", "show", "fixture-app", "--elements-path"])
        .arg(&fixtures)
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("tree: sha256:"), "{stdout}");
    assert!(
        stdout.contains("install.d (in the chroot): 9-fixture-app-early, 50-fixture-app-install"),
        "scripts in dib-run-parts order: {stdout}"
    );
    assert!(
        stdout.contains(
            "install.d, not run (not executable, or not a hook name): \
             60-not-executable, 70-bad.sh, fixture-app-helper.sh, fixture-app.conf"
        ),
        "what does not run is listed apart: {stdout}"
    );
    assert!(stdout.contains("root.d (on the host)"), "{stdout}");

    let output = kiln()
        .args(["elements", "show", "fixture-ap", "--elements-path"])
        .arg(&fixtures)
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean `fixture-app`?"));
}

#[test]
fn elements_list_says_what_each_element_does_and_where_it_comes_from() {
    let cache = tempfile::tempdir().expect("tempdir");
    let user = tempfile::tempdir().expect("tempdir");
    let element = user.path().join("site-web");
    std::fs::create_dir_all(&element).expect("mkdir");
    std::fs::write(
        element.join("README.rst"),
        "========\nsite-web\n========\n\nServes our site. Reads ``SITE_ROOT``.\n",
    )
    .expect("write");
    let list = |json: bool| {
        let mut command = kiln();
        command
            .env_remove("KILN_ELEMENTS_PATH")
            .env_remove("ELEMENTS_PATH")
            .args(["elements", "list", "--elements-path"])
            .arg(user.path())
            .arg("--cache-dir")
            .arg(cache.path());
        if json {
            command.arg("--json");
        }
        let output = command.output().expect("kiln runs");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    };

    let listed: serde_json::Value = serde_json::from_str(&list(true)).expect("--json is JSON");
    let listed = listed.as_array().expect("an array");
    let find = |name: &str| {
        listed
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` in {listed:?}"))
    };
    for name in ["vm", "debian", "growroot"] {
        let element = find(name);
        assert_eq!(element["origin"], "built-in", "{element}");
        let description = element["description"].as_str().unwrap_or_default();
        assert!(
            description.len() > 20 && !description.contains('\n'),
            "{name} says what it does, in one line: {element}"
        );
        let path = element["path"].as_str().expect("path");
        assert!(
            Path::new(path).join("README.md").is_file(),
            "{name}'s path is its directory: {element}"
        );
    }
    assert!(
        find("growroot")["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Grows the root filesystem")),
        "from growroot's README: {}",
        find("growroot")
    );
    let user_dir = user.path().display().to_string();
    let mine = find("site-web");
    assert_eq!(mine["origin"], user_dir.as_str(), "{mine}");
    assert_eq!(mine["description"], "Serves our site.", "{mine}");
    assert_eq!(mine["path"], element.display().to_string().as_str());
    assert_eq!(mine["provides"], serde_json::json!([]));
    assert_eq!(mine["hides"], serde_json::json!([]));

    let text = list(false);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{text}"))
            .to_string()
    };
    assert!(
        line("site-web").contains(&format!("{user_dir}  Serves our site.")),
        "{text}"
    );
    let vm = line("vm");
    let origin_column = line("site-web").find(&user_dir).expect("origin");
    assert_eq!(
        vm.find("built-in"),
        Some(origin_column),
        "origins line up:\n{text}"
    );
    assert!(
        vm.contains("Makes the image a bootable virtual machine disk"),
        "{text}"
    );
    assert!(
        text.contains("\nbuilt-in: kiln's own elements, unpacked in "),
        "{text}"
    );
}

#[test]
fn elements_show_says_what_kiln_does_with_a_dib_elements_files() {
    // An element of DIB's shape under the name of one of kiln's own.
    let dir = tempfile::tempdir().expect("tempdir");
    let element = dir.path().join("growroot");
    std::fs::create_dir_all(element.join("static/etc")).expect("mkdir");
    std::fs::write(element.join("package-installs.yaml"), "growpart:\n").expect("write");
    let output = kiln()
        .args(["elements", "show", "growroot", "--elements-path"])
        .arg(dir.path())
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "  hides: kiln's own `growroot` (",
        "  has: package-installs.yaml (packages installed and removed by kiln's own `package-installs`)",
        "  has: static (copied into the image by kiln's own `install-static`)",
    ] {
        assert!(stdout.contains(line), "`{line}` missing:\n{stdout}");
    }
    assert!(!stdout.contains("kiln's own element"), "{stdout}");

    let output = kiln()
        .args(["elements", "show", "growroot"])
        .output()
        .expect("kiln runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("\n  kiln's own element\n"), "{stdout}");
}

/// `kiln validate` of `text`: its exit code and stderr.
fn validate_text(text: &str) -> (Option<i32>, String) {
    let temp = tempfile::tempdir().expect("temporary directory");
    let path = temp.path().join("imagefile.yaml");
    std::fs::write(&path, text).expect("write");
    let output = kiln()
        .arg("validate")
        .arg(&path)
        .output()
        .expect("kiln runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_ramdisk_without_a_kernel_points_at_the_output() {
    let (code, stderr) = validate_text(
        "name: demo\nbase: {distro: debian, release: bookworm}\noutputs:\n  - tar\n  - ramdisk\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("a ramdisk needs a kernel, and this image installs none"),
        "{stderr}"
    );
    // The underline is under the output, on line 5.
    assert!(stderr.contains("5 │   - ramdisk"), "{stderr}");
    assert!(stderr.contains("no kernel to boot"), "{stderr}");
    assert!(stderr.contains("help: add the `vm` element"), "{stderr}");

    // A kernel package is enough.
    let (code, stderr) = validate_text(
        "name: demo\nbase: {distro: debian, release: bookworm}\npackages: [linux-image-amd64, systemd-sysv]\noutputs: [ramdisk]\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
}

/// `kiln validate` works as any user, as the installation chapter says:
/// without a writable home the built-in elements are unpacked into a
/// private `$TMPDIR/kiln-<uid>` (0700, refused when another user made it),
/// and `KILN_CACHE_DIR` (or `--cache-dir`) is where they go when given.
#[test]
fn validate_works_without_a_writable_home_and_honours_the_cache_dir() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "the test runs kiln as nobody: run the suite as root (scripts/test)"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let open = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    open(scratch.path(), 0o755);
    // kiln itself, where nobody can run it.
    let binary = scratch.path().join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &binary).expect("copy kiln");
    open(&binary, 0o755);
    std::fs::write(
        scratch.path().join("imagefile.yaml"),
        "name: t\nbase:\n  distro: debian\n  release: bookworm\nelements: [vm, debian]\noutputs: [qcow2]\n",
    )
    .expect("write");
    open(&scratch.path().join("imagefile.yaml"), 0o644);
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    open(&tmp, 0o1777);
    let cache = scratch.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    open(&cache, 0o777);
    let as_nobody = |env: &[(&str, &std::path::Path)]| {
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&binary)
            .arg("validate")
            .current_dir(scratch.path())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/nonexistent")
            .env("TMPDIR", &tmp)
            .env("NO_COLOR", "1");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("setpriv runs kiln")
    };

    let homeless = as_nobody(&[]);
    let stderr = String::from_utf8_lossy(&homeless.stderr);
    assert!(
        homeless.status.success(),
        "validate without a home: {stderr}"
    );
    assert!(stderr.contains("imagefile.yaml: valid"), "{stderr}");
    let private = tmp.join("kiln-65534");
    let mode = std::fs::metadata(&private)
        .expect("the private directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "private: {mode:o}");
    assert!(private.join("builtin-elements").is_dir());

    let with_cache = as_nobody(&[("KILN_CACHE_DIR", &cache)]);
    assert!(
        with_cache.status.success(),
        "{}",
        String::from_utf8_lossy(&with_cache.stderr)
    );
    assert!(
        cache.join("builtin-elements").is_dir(),
        "KILN_CACHE_DIR holds the built-in elements"
    );

    // A `kiln-<uid>` another user made first is not used.
    std::fs::remove_dir_all(&private).expect("rm");
    std::fs::create_dir(&private).expect("mkdir as root");
    open(&private, 0o777);
    let planted = as_nobody(&[]);
    let stderr = String::from_utf8_lossy(&planted.stderr);
    assert_eq!(planted.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not kiln's own private directory") && stderr.contains("help:"),
        "{stderr}"
    );
}

//! `distro: image`: a cloud image made by another tool — diskimage-builder's
//! `debian vm growroot` qcow2 (`scripts/dib-debian-image`) — served from
//! 127.0.0.1, pinned by the lock, customised by an element that adds a
//! file and a package, built into a qcow2 that boots and passes `kiln
//! test`; and the same imagefile refused with `--locked` once the image at
//! its URL has changed.

use std::path::{Path, PathBuf};

use crate::apt_repo::serve;
use crate::common::{BUILT_IN_CHECKS_PASSED, kiln, repo_path, write_hook};

/// The DIB-built qcow2, made once into the test cache.
fn dib_image() -> PathBuf {
    let out = std::process::Command::new(repo_path("scripts/dib-debian-image"))
        .output()
        .expect("scripts/dib-debian-image runs");
    assert!(
        out.status.success(),
        "diskimage-builder could not build the Debian image:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// The imagefile: DIB's image as the base, kiln's `vm` for the disk, and
/// the site's element.
fn imagefile(url: &str) -> String {
    format!(
        "name: from-dib\n\
         base:\n  distro: image\n  url: {url}\n\
         elements: [vm, site]\n\
         disk:\n  size: 3GiB\n\
         outputs: [qcow2]\n\
         tests:\n\
         \x20 - name: the element's file is there\n    file: /etc/site-release\n\
         \x20 - name: the element's package runs\n    run: tmux -V\n    output: tmux\n"
    )
}

/// The site's element: a file, a package, and sshd without passwords
/// (Debian's sshd offers them, and `kiln test` refuses that).
fn site_element(elements: &Path) {
    let site = elements.join("site");
    write_hook(
        &site.join("install.d/50-site"),
        "echo 'built by kiln from a DIB image' > /etc/site-release\n\
         mkdir -p /etc/ssh/sshd_config.d\n\
         printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n' \
         > /etc/ssh/sshd_config.d/50-site.conf\n",
    );
    std::fs::write(site.join("package-installs.yaml"), "tmux:\n").expect("write");
}

fn sha256_of(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

#[test]
fn a_diskimage_builder_qcow2_is_pinned_customised_built_and_boots() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let image = dib_image();
    let scratch = tempfile::tempdir().expect("tempdir");
    let site_dir = scratch.path().join("site");
    std::fs::create_dir(&site_dir).expect("mkdir");
    let served = site_dir.join("debian.qcow2");
    std::fs::copy(&image, &served).expect("copy the image");
    let server = serve(&site_dir);
    let url = format!("{}/debian.qcow2", server.url);

    let project = scratch.path().join("project");
    let elements = project.join("elements");
    site_element(&elements);
    std::fs::write(project.join("imagefile.yaml"), imagefile(&url)).expect("write");
    let cache = scratch.path().join("cache");

    let build = kiln()
        .current_dir(&project)
        .args(["build", "--timings", "--elements-path"])
        .arg(&elements)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(
        build.status.success(),
        "the image base did not build:\n{stderr}"
    );

    // The lock pins the image: its URL, size and hash.
    let lock = std::fs::read_to_string(project.join("imagefile.lock")).expect("the lock");
    let sha256 = sha256_of(&served);
    let size = std::fs::metadata(&served).expect("stat").len();
    assert!(lock.contains(&format!("    url: \"{url}\"")), "{lock}");
    assert!(
        lock.contains(&format!("    sha256: \"{sha256}\"")),
        "{lock}"
    );
    assert!(lock.contains(&format!("    size: {size}")), "{lock}");
    assert!(lock.contains("    format: \"qcow2\""), "{lock}");
    assert!(lock.contains("packages: []"), "{lock}");

    // The report lists what the tree holds: DIB's packages and the
    // element's.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("out/from-dib.report.json")).expect("the report"),
    )
    .expect("JSON");
    let names: Vec<&str> = report["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for wanted in ["tmux", "cloud-init", "linux-image-amd64", "openssh-server"] {
        assert!(
            names.contains(&wanted),
            "the report lacks {wanted}: {names:?}"
        );
    }

    // Offline, the packages cannot come from the image's sources.
    let offline = kiln()
        .current_dir(&project)
        .args(["build", "--offline", "--elements-path"])
        .arg(&elements)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--output")
        .arg(scratch.path().join("offline-out"))
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&offline.stderr);
    assert_eq!(offline.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--offline cannot install")
            && stderr.contains("tmux")
            && stderr.contains("help:"),
        "{stderr}"
    );
    assert!(!scratch.path().join("offline-out").exists());

    let test = {
        let _one = crate::common::one_boot_at_a_time();
        kiln()
            .current_dir(&project)
            .arg("test")
            .output()
            .expect("kiln runs")
    };
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && !stdout.contains('✗'),
        "kiln test failed on the image built from DIB's image:\n{stdout}\n{}",
        String::from_utf8_lossy(&test.stderr)
    );
    for check in BUILT_IN_CHECKS_PASSED
        .iter()
        .chain(&["the element's file is there", "the element's package runs"])
    {
        assert!(
            stdout.contains(check),
            "kiln test did not report `{check}`:\n{stdout}"
        );
    }

    // The image changes at its URL: with the lock, a build that must
    // download it again (another cache) refuses it, naming both hashes,
    // and leaves no image behind.
    let qcow2 = project.join("out/from-dib.qcow2");
    std::fs::remove_file(&qcow2).expect("remove the first image");
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&served)
            .expect("open the served image");
        file.write_all(b"changed").expect("append");
    }
    let changed = sha256_of(&served);
    let refused = kiln()
        .current_dir(&project)
        .args(["build", "--locked", "--elements-path"])
        .arg(&elements)
        .arg("--cache-dir")
        .arg(scratch.path().join("another-cache"))
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a changed image was built:\n{stderr}"
    );
    assert!(
        stderr.contains(&sha256) && stderr.contains(&changed),
        "{stderr}"
    );
    assert!(!qcow2.exists(), "a refused build left {}", qcow2.display());
}

/// Builds the noarch RPMs `names` (each holding
/// `/usr/share/<name>/hello`) into `repo` and indexes it with createrepo_c.
fn rpm_repository(work: &Path, repo: &Path, names: &[&str]) {
    let top = work.join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).expect("mkdir");
    std::fs::create_dir_all(repo).expect("mkdir");
    for name in names {
        let spec = top.join(format!("SPECS/{name}.spec"));
        std::fs::write(
            &spec,
            format!(
                "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: kiln's stand-in package\n\
                 License: Apache-2.0\nBuildArch: noarch\nAutoReqProv: no\n\n\
                 %description\nInstalled by kiln's tests.\n\n\
                 %install\nmkdir -p %{{buildroot}}/usr/share/{name}\n\
                 echo hello > %{{buildroot}}/usr/share/{name}/hello\n\n\
                 %files\n/usr/share/{name}/hello\n"
            ),
        )
        .expect("write the spec");
        let built = std::process::Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("-bb")
            .arg(&spec)
            .output()
            .expect("rpmbuild runs");
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let rpm = top.join(format!("RPMS/noarch/{name}-1.0-1.noarch.rpm"));
        std::fs::copy(&rpm, repo.join(rpm.file_name().expect("a name"))).expect("copy");
    }
    let indexed = std::process::Command::new("createrepo_c")
        .arg("-q")
        .arg(repo)
        .status()
        .expect("createrepo_c runs");
    assert!(indexed.success());
}

/// dnf and zypper, as kiln runs them in a tree taken out of an image, are
/// tried here on the nearest thing to a Fedora or openSUSE tree this
/// machine can make: a Debian tree (built by kiln) holding Debian's own
/// dnf, zypper and rpm, with apt taken out and rpm's database where RPM
/// distributions keep it, reading a repository of test-made RPMs served
/// from 127.0.0.1. `packages:` go through the image family's install, a
/// hook's `install-packages` through the helper, and the report lists both
/// as rpm's database holds them.
#[test]
fn dnf_and_zypper_install_into_a_stand_in_rpm_tree() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let work = scratch.path();

    // The stand-in: Debian with dnf, zypper and rpm, as a tarball.
    let standin = work.join("standin");
    std::fs::create_dir(&standin).expect("mkdir");
    std::fs::write(
        standin.join("imagefile.yaml"),
        "name: rpm-standin\nbase:\n  distro: debian\n  release: bookworm\n\
         packages: [dnf, zypper, rpm]\noutputs: [tar]\n",
    )
    .expect("write");
    let built = kiln()
        .current_dir(&standin)
        .arg("build")
        .arg("--cache-dir")
        .arg(crate::common::shared_cache())
        .output()
        .expect("kiln runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let standin_tar = standin.join("out/rpm-standin.tar");

    let repo = work.join("repo");
    rpm_repository(work, &repo, &["kiln-standin", "kiln-standin-hook"]);
    let server = serve(&repo);

    for (manager, gone, repo_file, repo_text) in [
        (
            "dnf",
            &["usr/bin/apt", "usr/bin/apt-get", "usr/bin/zypper"][..],
            "etc/yum.repos.d/standin.repo",
            format!(
                "[standin]\nname=standin\nbaseurl={}/\ngpgcheck=0\nenabled=1\n",
                server.url
            ),
        ),
        (
            "zypper",
            &[
                "usr/bin/apt",
                "usr/bin/apt-get",
                "usr/bin/dnf",
                "usr/bin/dnf-3",
            ][..],
            "etc/zypp/repos.d/standin.repo",
            format!(
                "[standin]\nname=standin\nbaseurl={}/\ntype=rpm-md\ngpgcheck=0\nenabled=1\nautorefresh=1\n",
                server.url
            ),
        ),
    ] {
        // The image: the stand-in with only `manager`, as a gzip tarball.
        let tree = work.join(format!("{manager}-tree"));
        std::fs::create_dir(&tree).expect("mkdir");
        let unpacked = std::process::Command::new("tar")
            .args([
                "--extract",
                "--preserve-permissions",
                "--xattrs",
                "--numeric-owner",
                "--file",
            ])
            .arg(&standin_tar)
            .arg("--directory")
            .arg(&tree)
            .status()
            .expect("tar runs");
        assert!(unpacked.success());
        for path in gone {
            std::fs::remove_file(tree.join(path)).expect("remove the other package managers");
        }
        // Debian's rpm keeps its database in ~/.rpmdb; RPM distributions
        // in /var/lib/rpm.
        std::fs::create_dir_all(tree.join("etc/rpm")).expect("mkdir");
        std::fs::write(
            tree.join("etc/rpm/macros.dbpath"),
            "%_dbpath /var/lib/rpm\n",
        )
        .expect("write");
        let repo_path = tree.join(repo_file);
        std::fs::create_dir_all(repo_path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&repo_path, &repo_text).expect("write the repository");
        let image = work.join(format!("{manager}.tar.gz"));
        let packed = std::process::Command::new("tar")
            .args([
                "--create",
                "--gzip",
                "--xattrs",
                "--numeric-owner",
                "--file",
            ])
            .arg(&image)
            .arg("--directory")
            .arg(&tree)
            .arg(".")
            .status()
            .expect("tar runs");
        assert!(packed.success());

        let project = work.join(format!("{manager}-project"));
        write_hook(
            &project.join("elements/hooked/install.d/50-hooked"),
            "install-packages kiln-standin-hook\n",
        );
        std::fs::write(
            project.join("imagefile.yaml"),
            format!(
                "name: on-{manager}\nbase:\n  distro: image\n  url: file://{}\n\
                 elements: [hooked]\npackages: [kiln-standin]\noutputs: [tar]\n",
                image.display()
            ),
        )
        .expect("write");
        let build = kiln()
            .current_dir(&project)
            .args(["build", "--elements-path", "elements", "--cache-dir"])
            .arg(work.join("cache"))
            .output()
            .expect("kiln runs");
        let stderr = String::from_utf8_lossy(&build.stderr);
        assert!(build.status.success(), "{manager}: {stderr}");
        let log = std::fs::read_to_string(project.join(format!("out/on-{manager}.build.log")))
            .expect("the build log");
        let command = match manager {
            "dnf" => "dnf install --assumeyes --setopt=install_weak_deps=False kiln-standin",
            _ => "zypper --non-interactive install --no-recommends kiln-standin",
        };
        assert!(
            log.contains(&format!("kiln: running {command} in the tree")),
            "{manager}: `{command}` is not in the log:\n{log}"
        );

        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(project.join(format!("out/on-{manager}.report.json")))
                .expect("the report"),
        )
        .expect("JSON");
        let packages = report["packages"].as_array().expect("packages");
        for name in ["kiln-standin", "kiln-standin-hook"] {
            let entry = packages
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{manager}: the report lacks {name}: {packages:?}"));
            assert_eq!(entry["version"], "1.0-1", "{manager}: {entry}");
            assert_eq!(entry["arch"], "noarch", "{manager}: {entry}");
        }
        let listed = std::process::Command::new("tar")
            .arg("--list")
            .arg("--file")
            .arg(project.join(format!("out/on-{manager}.tar")))
            .output()
            .expect("tar runs");
        let listing = String::from_utf8_lossy(&listed.stdout);
        for name in ["kiln-standin", "kiln-standin-hook"] {
            assert!(
                listing.contains(&format!("usr/share/{name}/hello")),
                "{manager}: the image lacks {name}'s file"
            );
        }
    }
}

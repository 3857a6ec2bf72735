//! `kiln disk-image-create`: diskimage-builder's command line as Nodepool's
//! builder issues it (`nodepool/builder.py`: `disk-image-create -x -t
//! <types> --checksum --no-tmpfs --qemu-img-options 'compat=0.10' -o
//! <images-dir>/<name>-<build id> <elements>`, with `DIB_RELEASE`,
//! `DIB_IMAGE_NAME`, `DIB_IMAGE_FILENAME` and `ELEMENTS_PATH` set), built
//! once, the files Nodepool picks up checked, and the image booted.

use std::path::Path;

use crate::common::{BUILT_IN_CHECKS_PASSED, kiln, one_boot_at_a_time, shared_cache, write_hook};

/// The files in `dir`, sorted, with a `/` after directories.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the images directory")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    names.sort();
    names
}

/// Nodepool's exact command line for a `debian-minimal vm growroot` image in
/// qcow2 and raw: exactly the files Nodepool takes (`<base>.<format>` and
/// their `.md5` and `.sha256`, in md5sum's and sha256sum's format), the
/// qcow2 in the compat Nodepool asks for, and an image that passes `kiln
/// test`.
#[test]
fn nodepools_command_line_builds_the_files_nodepool_expects_and_the_image_boots() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    // Nodepool's `elements-dir`: the site's element that makes the node
    // reachable (DIB's debian-minimal has no sshd, cloud-init or DHCP
    // client, and Debian's sshd offers password logins, which `kiln test`
    // refuses).
    let elements = scratch.path().join("elements");
    let site = elements.join("site-node");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(
        site.join("package-installs.yaml"),
        "openssh-server:\ncloud-init:\nifupdown:\nisc-dhcp-client:\n",
    )
    .expect("write");
    write_hook(
        &site.join("post-install.d/50-site-sshd"),
        "mkdir -p /etc/ssh/sshd_config.d\n\
         printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n' \
         > /etc/ssh/sshd_config.d/50-site.conf\n",
    );
    let images = scratch.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let base = images.join("debian-bookworm-0000000001");
    let base_text = base.to_string_lossy().into_owned();

    // What Nodepool runs: shlex.split of its command, its environment.
    let command = format!(
        "-x -t qcow2,raw --checksum --no-tmpfs --qemu-img-options compat=0.10 -o {base_text} debian-minimal vm growroot site-node"
    );
    let build = kiln()
        .current_dir(scratch.path())
        .arg("disk-image-create")
        .args(command.split(' '))
        .env("DIB_RELEASE", "bookworm")
        .env("DIB_IMAGE_NAME", "debian-bookworm")
        .env("DIB_IMAGE_FILENAME", &base)
        .env("ELEMENTS_PATH", &elements)
        .env("KILN_CACHE_DIR", shared_cache())
        .output()
        .expect("kiln runs");
    assert!(
        build.status.success(),
        "kiln disk-image-create failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    // Nodepool takes every `<base>.<ext>` file for an image format.
    let name = "debian-bookworm-0000000001";
    assert_eq!(
        listing(&images),
        [
            format!("{name}.d/"),
            format!("{name}.qcow2"),
            format!("{name}.qcow2.md5"),
            format!("{name}.qcow2.sha256"),
            format!("{name}.raw"),
            format!("{name}.raw.md5"),
            format!("{name}.raw.sha256"),
        ]
    );
    let d = listing(&images.join(format!("{name}.d")));
    for kept in [
        "imagefile.yaml".to_string(),
        "imagefile.lock".to_string(),
        format!("{name}.report.json"),
        format!("{name}.build.log"),
        format!("{name}.spdx.json"),
    ] {
        assert!(d.contains(&kept), "{kept} is not in <base>.d/: {d:?}");
    }

    // The checksum files are md5sum's and sha256sum's lines for the path
    // given with -o, as DIB writes them, and they check.
    for format in ["qcow2", "raw"] {
        let image = format!("{base_text}.{format}");
        for (tool, ext, hex) in [("md5sum", "md5", 32), ("sha256sum", "sha256", 64)] {
            let file = format!("{image}.{ext}");
            let line = std::fs::read_to_string(&file).expect("read the checksum file");
            let (sum, path) = line
                .strip_suffix('\n')
                .and_then(|l| l.split_once("  "))
                .unwrap_or_else(|| panic!("{file}: not `<sum>  <path>\\n`: {line:?}"));
            assert_eq!(sum.len(), hex, "{file}: {line:?}");
            assert_eq!(path, image, "{file} names the image as -o gave it");
            let check = std::process::Command::new(tool)
                .args(["-c", &file])
                .output()
                .expect("run the checksum tool");
            assert!(
                check.status.success(),
                "{tool} -c {file}: {}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }

    // --qemu-img-options compat=0.10: a version 2 qcow2, as Nodepool asks.
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", &format!("{base_text}.qcow2")])
        .output()
        .expect("qemu-img info");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(
        info["format-specific"]["data"]["compat"], "0.10",
        "qemu-img info: {info}"
    );

    let test = {
        let _one = one_boot_at_a_time();
        kiln()
            .current_dir(scratch.path())
            .arg("test")
            .arg(format!("{base_text}.qcow2"))
            .output()
            .expect("kiln runs")
    };
    let stdout = String::from_utf8_lossy(&test.stdout);
    let stderr = String::from_utf8_lossy(&test.stderr);
    assert!(
        test.status.success() && !stdout.contains('✗'),
        "kiln test failed on the image Nodepool's command line built:\n{stdout}\n{stderr}"
    );
    for check in BUILT_IN_CHECKS_PASSED {
        assert!(
            stdout.contains(check),
            "kiln test did not report `{check}`:\n{stdout}"
        );
    }
    // `kiln test` wrote nothing beside the image that Nodepool would take.
    assert_eq!(listing(&images).len(), 7, "{:?}", listing(&images));
}

/// A DIB option kiln lacks is refused by name, with what to do, whether
/// kiln is started as `kiln disk-image-create` or as `disk-image-create`;
/// nothing is built or written.
#[test]
fn an_unsupported_dib_option_is_refused_by_name() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let link = scratch.path().join("disk-image-create");
    let install = kiln()
        .args(["disk-image-create", "--install-link"])
        .arg(scratch.path())
        .output()
        .expect("kiln runs");
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    assert!(link.symlink_metadata().expect("the link").is_symlink());

    let args = [
        "--mkfs-options",
        "-m 0",
        "-o",
        "out/img",
        "debian-minimal",
        "vm",
    ];
    let through_kiln = kiln()
        .current_dir(scratch.path())
        .arg("disk-image-create")
        .args(args)
        .env("DIB_RELEASE", "bookworm")
        .output()
        .expect("kiln runs");
    let through_link = std::process::Command::new(&link)
        .current_dir(scratch.path())
        .args(args)
        .env("DIB_RELEASE", "bookworm")
        .env("NO_COLOR", "1")
        .output()
        .expect("the link runs");
    for output in [through_kiln, through_link] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "a user error: {stderr}");
        assert!(
            stderr.contains("disk-image-create option `--mkfs-options` is not supported by kiln"),
            "{stderr}"
        );
        assert!(stderr.contains("help:"), "{stderr}");
    }
    assert!(!scratch.path().join("out").exists(), "nothing written");
}

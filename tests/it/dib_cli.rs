//! `kiln disk-image-create`: diskimage-builder's command line as Nodepool's
//! builder issues it (`nodepool/builder.py`: `disk-image-create -x -t
//! <types> --checksum --no-tmpfs --qemu-img-options 'compat=0.10' -o
//! <images-dir>/<name>-<build id> <elements>`, with `DIB_RELEASE`,
//! `DIB_IMAGE_NAME`, `DIB_IMAGE_FILENAME` and `ELEMENTS_PATH` set), built
//! once, the files Nodepool picks up checked, and the image booted.

use std::path::Path;

use crate::common::{
    BUILT_IN_CHECKS_PASSED, kiln, one_boot_at_a_time, repo_path, shared_cache, write_hook,
};

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

/// The marker before the guide's imagefile of a DIB user's command line
/// (`debian-minimal vm growroot cloud-init-datasources devuser site-sshd`,
/// with `-p openssh-server,cloud-init,ifupdown,isc-dhcp-client`): the test
/// below runs that command line as Nodepool issues it and checks that the
/// imagefile kiln writes for it is the guide's.
const DIB_USER_MARKER: &str = "<!-- dib-user: built and booted by tests/it/dib_cli.rs -->";
const GUIDE: &str = "docs/user-guide/coming-from-dib.md";

/// The imagefile in the fence after [`DIB_USER_MARKER`] in the guide.
fn dib_user_imagefile() -> serde_json::Value {
    let guide = std::fs::read_to_string(repo_path(GUIDE)).expect("read the guide");
    let after = guide
        .split_once(DIB_USER_MARKER)
        .unwrap_or_else(|| panic!("{GUIDE} has no `{DIB_USER_MARKER}`"))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```yaml")
        .and_then(|rest| rest.split_once('\n'))
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("a ```yaml fence follows `{DIB_USER_MARKER}`"));
    let (imagefile, _) = body
        .split_once("\n```")
        .expect("the fence after the DIB user marker is closed");
    serde_saphyr::from_str(imagefile).expect("the guide's imagefile is YAML")
}

/// What the guide's imagefile and the one kiln wrote must agree on.
fn essentials(imagefile: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "base": imagefile["base"],
        "elements": imagefile["elements"],
        "packages": imagefile["packages"],
        "DIB_CLOUD_INIT_DATASOURCES": imagefile["environment"]["DIB_CLOUD_INIT_DATASOURCES"],
    })
}

/// Nodepool's exact command line, for a DIB user's element list
/// (`debian-minimal vm growroot` with DIB's own `cloud-init-datasources`
/// and `devuser` copied unchanged into `ELEMENTS_PATH`, and the site's
/// `site-sshd`) in qcow2 and raw: exactly the files Nodepool takes
/// (`<base>.<format>` and their `.md5` and `.sha256`, in md5sum's and
/// sha256sum's format), the qcow2 in the compat Nodepool asks for, the
/// guide's imagefile for that command line, and an image that passes
/// `kiln test`.
#[test]
fn nodepools_command_line_builds_the_files_nodepool_expects_and_the_image_boots() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    // Nodepool's `elements-dir`: DIB's elements as a DIB user keeps them,
    // and the site's element that turns off sshd's password logins, which
    // `kiln test` refuses and nothing in DIB's list turns off. (DIB's
    // debian-minimal has no sshd, cloud-init or DHCP client: `-p`.)
    let elements = scratch.path().join("elements");
    std::fs::create_dir(&elements).expect("mkdir");
    for name in ["growroot", "cloud-init-datasources", "devuser"] {
        crate::dib_elements::copy_dib_element(name, &elements);
    }
    write_hook(
        &elements.join("site-sshd/post-install.d/50-site-sshd"),
        "mkdir -p /etc/ssh/sshd_config.d\n\
         printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n' \
         > /etc/ssh/sshd_config.d/50-site.conf\n",
    );
    let images = scratch.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let base = images.join("debian-bookworm-0000000001");
    let base_text = base.to_string_lossy().into_owned();

    // What Nodepool runs: shlex.split of its command, its environment (the
    // disk image's env-vars among it).
    let command = format!(
        "-x -t qcow2,raw --checksum --no-tmpfs --qemu-img-options compat=0.10 -o {base_text} -a amd64 \
         -p openssh-server,cloud-init,ifupdown,isc-dhcp-client \
         debian-minimal vm growroot cloud-init-datasources devuser site-sshd"
    );
    let build = kiln()
        .current_dir(scratch.path())
        .arg("disk-image-create")
        .args(command.split_whitespace())
        .env("DIB_RELEASE", "bookworm")
        .env("DIB_IMAGE_NAME", "debian-bookworm")
        .env("DIB_IMAGE_FILENAME", &base)
        .env("DIB_CLOUD_INIT_DATASOURCES", "NoCloud")
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
    let kept = images.join(format!("{name}.d"));
    let d = listing(&kept);
    for file in [
        "imagefile.yaml".to_string(),
        "imagefile.lock".to_string(),
        format!("{name}.report.json"),
        format!("{name}.build.log"),
        format!("{name}.spdx.json"),
    ] {
        assert!(d.contains(&file), "{file} is not in <base>.d/: {d:?}");
    }

    // The imagefile kiln wrote for the call is the guide's.
    let written: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(kept.join("imagefile.yaml")).expect("read the imagefile"),
    )
    .expect("YAML");
    assert_eq!(
        essentials(&written),
        essentials(&dib_user_imagefile()),
        "the imagefile for the DIB user's command line differs from the guide's ({GUIDE})"
    );

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

    // The image boots and passes `kiln test`, run by the Zuul role that
    // validates a build job's image, handed the qcow2 and the SHA-256 of
    // its `.sha256` file as Zuul hands a dependent job the artifacts.
    let qcow2 = std::path::PathBuf::from(format!("{base_text}.qcow2"));
    let sha256 = std::fs::read_to_string(format!("{base_text}.qcow2.sha256"))
        .expect("read the .sha256 file")
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string();
    let validated = {
        let _one = one_boot_at_a_time();
        crate::zuul_roles::validate_with_role(&qcow2, "qcow2", &sha256)
    };
    assert!(
        validated.output.status.success() && !validated.report.contains('✗'),
        "validate-kiln-image (kiln test) failed on the image Nodepool's command line built:\n{}\n{}\nkiln test:\n{}",
        String::from_utf8_lossy(&validated.output.stdout),
        String::from_utf8_lossy(&validated.output.stderr),
        validated.report
    );
    for check in BUILT_IN_CHECKS_PASSED {
        assert!(
            validated.report.contains(check),
            "kiln test did not report `{check}`:\n{}",
            validated.report
        );
    }
    assert!(
        validated.serial_log.contains("login:"),
        "the serial console is kept with the job's logs ({} bytes)",
        validated.serial_log.len()
    );
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

//! The mapping of `disk-image-create` calls onto imagefiles.

use super::*;
use crate::cli::dib::NODEPOOL_ARGS as NODEPOOL;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mapped(args: &[&str], pairs: &[(&str, &str)]) -> Result<Mapped, Failure> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let call = dib::parse(args.clone()).expect("parses");
    map(&call, &args, &env(pairs))
}

fn message(failure: Failure) -> String {
    failure
        .reports()
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn nodepool_call_becomes_an_imagefile_that_checks() {
    let m = mapped(
        NODEPOOL,
        &[
            ("DIB_RELEASE", "bookworm"),
            ("DIB_IMAGE_NAME", "debian-bookworm"),
            (
                "DIB_IMAGE_FILENAME",
                "/opt/nodepool/images/debian-bookworm-0000000001",
            ),
            ("ELEMENTS_PATH", "/etc/nodepool/elements"),
            ("DIB_GRUB_TIMEOUT", "0"),
            ("HOME", "/root"),
        ],
    )
    .expect("maps");
    assert_eq!(m.base, "/opt/nodepool/images/debian-bookworm-0000000001");
    assert_eq!(m.name, "debian-bookworm-0000000001");
    assert_eq!(
        m.dir(),
        PathBuf::from("/opt/nodepool/images/debian-bookworm-0000000001.d")
    );
    assert_eq!(
        m.outputs,
        [
            ("qcow2".to_string(), "qcow2".to_string()),
            ("raw".to_string(), "raw".to_string())
        ]
    );
    assert_eq!(m.checksums, [("md5sum", "md5"), ("sha256sum", "sha256")]);
    assert!(m.compress);
    assert_eq!(m.qemu_img_options.as_deref(), Some("compat=0.10"));
    let text = &m.imagefile;
    assert!(
        text.contains("elements: [\"base\", \"debian-minimal\", \"vm\", \"growroot\"]"),
        "{text}"
    );
    assert!(
        text.contains("  distro: debian\n  release: \"bookworm\"\n"),
        "{text}"
    );
    assert!(text.contains("outputs: [\"qcow2\", \"raw\"]"), "{text}");
    assert!(text.contains("\"DIB_DEBUG_TRACE\": \"1\""), "{text}");
    assert!(text.contains("\"DIB_GRUB_TIMEOUT\": \"0\""), "{text}");
    assert!(
        text.contains("\"DIB_IMAGE_NAME\": \"debian-bookworm\""),
        "{text}"
    );
    assert!(
        !text.contains("DIB_IMAGE_FILENAME:"),
        "build id kept out: {text}"
    );
    assert!(!text.contains("HOME"), "{text}");
    assert!(
        text.contains("# with ELEMENTS_PATH=/etc/nodepool/elements"),
        "{text}"
    );

    let source = manifest::Source::new("imagefile.yaml", text.clone());
    let parsed = manifest::parse(&source).expect("the imagefile parses");
    let problems = manifest::check(&parsed);
    assert!(problems.is_empty(), "{problems:?}\n{text}");
}

#[test]
fn options_map_onto_the_imagefile() {
    let m = mapped(
        &[
            "-n",
            "-u",
            "-a",
            "x86_64",
            "-p",
            "curl,vim",
            "--image-size",
            "2.5",
            "--root-label",
            "root",
            "-o",
            "out/web.qcow2",
            "-t",
            "qcow2",
            "debian",
        ],
        &[
            ("DIB_RELEASE", "trixie"),
            ("DIB_DISTRIBUTION_MIRROR", "http://mirror.example/debian"),
            ("DIB_CHECKSUM", "sha256"),
        ],
    )
    .expect("maps");
    // One format: DIB drops its extension from -o.
    assert_eq!(m.base, "out/web");
    assert_eq!(m.name, "web");
    assert!(!m.compress);
    assert_eq!(m.checksums, [("sha256sum", "sha256")]);
    let text = &m.imagefile;
    assert!(
        text.contains("elements: [\"debian\"]"),
        "-n adds no base: {text}"
    );
    assert!(text.contains("  arch: \"amd64\"\n"), "{text}");
    assert!(
        text.contains("  mirror: \"http://mirror.example/debian\"\n"),
        "{text}"
    );
    assert!(text.contains("packages: [\"curl\", \"vim\"]"), "{text}");
    assert!(
        text.contains("disk:\n  size: 2560MiB\n  label: \"root\"\n"),
        "{text}"
    );
    assert!(!text.contains("environment:"), "{text}");
    let source = manifest::Source::new("imagefile.yaml", text.clone());
    let parsed = manifest::parse(&source).expect("parses");
    assert!(manifest::check(&parsed).is_empty(), "{text}");
}

#[test]
fn squashfs_is_dibs_squash() {
    let m = mapped(
        &["-t", "squashfs,tar", "-o", "x", "debian-minimal"],
        &[("DIB_RELEASE", "bookworm")],
    )
    .expect("maps");
    assert_eq!(
        m.outputs,
        [
            ("squashfs".to_string(), "squash".to_string()),
            ("tar".to_string(), "tar".to_string())
        ]
    );
    assert!(m.checksums.is_empty());
}

#[test]
fn refusals_say_what_to_do() {
    let no_release = message(mapped(&["debian-minimal"], &[]).unwrap_err());
    assert!(
        no_release.contains("DIB_RELEASE is not set"),
        "{no_release}"
    );
    let no_distro = message(mapped(&["vm"], &[("DIB_RELEASE", "bookworm")]).unwrap_err());
    assert!(no_distro.contains("no distribution element"), "{no_distro}");
    let two = message(mapped(&["debian", "ubuntu"], &[("DIB_RELEASE", "x")]).unwrap_err());
    assert!(two.contains("more than one distribution"), "{two}");
    let bad_name = message(mapped(&["-o", "dir/", "debian"], &[("DIB_RELEASE", "x")]).unwrap_err());
    assert!(bad_name.contains("not a valid image name"), "{bad_name}");
    let qemu = message(
        mapped(
            &["-t", "raw", "--qemu-img-options", "compat=0.10", "debian"],
            &[("DIB_RELEASE", "x")],
        )
        .unwrap_err(),
    );
    assert!(qemu.contains("without a qcow2"), "{qemu}");
    let size =
        message(mapped(&["--image-size", "big", "debian"], &[("DIB_RELEASE", "x")]).unwrap_err());
    assert!(size.contains("not a size"), "{size}");
}

#[test]
fn image_sizes() {
    assert_eq!(image_size("8").as_deref(), Some("8GiB"));
    assert_eq!(image_size("0.5").as_deref(), Some("512MiB"));
    assert_eq!(image_size("0"), None);
    assert_eq!(image_size("-1"), None);
    assert_eq!(image_size("NaN"), None);
}

#[test]
fn the_header_is_one_comment_line_a_shell_can_run() {
    assert_eq!(shell_word("compat=0.10"), "compat=0.10");
    assert_eq!(shell_word("-m 0"), "'-m 0'");
    assert_eq!(shell_word("it's"), "'it'\\''s'");
    assert_eq!(shell_word("a\nname: evil"), "'a\\nname: evil'");
    let m = mapped(
        &["-o", "img", "-p", "curl", "debian-minimal"],
        &[
            ("DIB_RELEASE", "bookworm"),
            ("ELEMENTS_PATH", "/e\nname: x"),
        ],
    )
    .expect("maps");
    let source = manifest::Source::new("imagefile.yaml", m.imagefile.clone());
    let parsed = manifest::parse(&source).expect("parses");
    assert!(manifest::check(&parsed).is_empty(), "{}", m.imagefile);
    assert!(m.imagefile.contains("name: \"img\""), "{}", m.imagefile);
}

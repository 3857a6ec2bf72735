//! `kiln build` of a whole-disk image, as root against the real mirror:
//! `manifests/debian-state.yaml` (GPT: bios-boot, ESP, root, state) with
//! every disk output format. The table read back by sfdisk matches the
//! manifest, its GUIDs are the same on a second build of the same lock,
//! every filesystem is clean, and qemu-img accepts every format.

use std::path::Path;

use crate::common::{kiln, mounts_under, repo_path, shared_cache, tool};

fn build(dir: &Path, out: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let output = kiln()
        .current_dir(dir)
        .args(["build", "--timings", "-o", out, "--cache-dir"])
        .arg(shared_cache())
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for stage in [
        "assemble: partition esp (vfat)",
        "assemble: partition root (ext4)",
        "assemble: partition state (ext4)",
        "output qcow2",
        "output vmdk",
    ] {
        assert!(stderr.contains(stage), "{stage}: {stderr}");
    }
}

/// Copies partition `index` (1-based, from `table`) out of the disk.
fn extract(disk: &Path, table: &serde_json::Value, index: usize, to: &Path) {
    let part = &table["partitiontable"]["partitions"][index - 1];
    let start = part["start"].as_u64().expect("start");
    let size = part["size"].as_u64().expect("size");
    tool(
        "dd",
        &[
            &format!("if={}", disk.display()),
            &format!("of={}", to.display()),
            "bs=512",
            &format!("skip={start}"),
            &format!("count={size}"),
            "conv=sparse",
            "status=none",
        ],
    );
}

#[test]
fn a_gpt_disk_matches_its_manifest_and_every_format_checks_clean() {
    let temp = tempfile::tempdir().expect("tempdir");
    let manifest = std::fs::read_to_string(repo_path("manifests/debian-state.yaml"))
        .expect("read")
        .replace(
            "outputs:\n  - raw\n  - qcow2\n",
            "outputs:\n  - raw\n  - qcow2\n  - vhd\n  - vhdx\n  - vmdk\n",
        );
    assert!(manifest.contains("  - vmdk\n"), "the outputs were replaced");
    std::fs::write(temp.path().join("imagefile.yaml"), manifest).expect("write");
    build(temp.path(), "out");
    let out = temp.path().join("out");
    let raw = out.join("debian-state.raw");
    let raw_text = raw.to_str().expect("path");

    // The table, as sfdisk reads it back.
    let table: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", raw_text])).expect("sfdisk JSON");
    let t = &table["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["sectorsize"], 512);
    let parts = t["partitions"].as_array().expect("partitions");
    let summary: Vec<(String, String, u64, u64)> = parts
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_string(),
                p["type"].as_str().expect("type").to_string(),
                p["start"].as_u64().expect("start"),
                p["size"].as_u64().expect("size"),
            )
        })
        .collect();
    let mib = 2048;
    assert_eq!(
        summary,
        [
            (
                "bios".to_string(),
                "21686148-6449-6E6F-744E-656564454649".to_string(),
                mib,
                mib
            ),
            (
                "esp".to_string(),
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".to_string(),
                2 * mib,
                256 * mib
            ),
            (
                "root".to_string(),
                "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709".to_string(),
                258 * mib,
                3072 * mib
            ),
            (
                "state".to_string(),
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4".to_string(),
                3330 * mib,
                // The rest of 6 GiB, less 1 MiB for the backup table.
                6144 * mib - 3330 * mib - mib
            ),
        ]
    );

    // Every filesystem is clean and labelled; the root's fstab mounts the
    // others by label.
    let scratch = temp.path().join("parts");
    std::fs::create_dir(&scratch).expect("mkdir");
    let esp = scratch.join("esp");
    extract(&raw, &table, 2, &esp);
    tool("fsck.vfat", &["-n", esp.to_str().expect("path")]);
    let esp_label = tool("fatlabel", &[esp.to_str().expect("path")]);
    assert_eq!(esp_label.trim(), "ESP");
    for (index, name, label) in [(3, "root", "cloudimg-rootfs"), (4, "state", "state")] {
        let image = scratch.join(name);
        extract(&raw, &table, index, &image);
        let image_text = image.to_str().expect("path");
        tool("e2fsck", &["-fn", image_text]);
        let header = tool("dumpe2fs", &["-h", image_text]);
        assert!(
            header.contains(&format!("Filesystem volume name:   {label}\n")),
            "{header}"
        );
        assert!(header.contains(" 64bit"), "{header}");
    }
    let fstab = tool(
        "debugfs",
        &[
            "-R",
            "cat /etc/fstab",
            scratch.join("root").to_str().expect("path"),
        ],
    );
    for line in [
        "LABEL=cloudimg-rootfs / ext4 errors=remount-ro 0 1",
        "LABEL=ESP /boot/efi vfat umask=0077 0 2",
        "LABEL=state /var/lib/state ext4 defaults,nofail 0 2",
    ] {
        assert!(
            fstab
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == line.split_whitespace().collect::<Vec<_>>()),
            "{line} in\n{fstab}"
        );
    }
    std::fs::remove_dir_all(&scratch).expect("remove the partitions");

    // Every disk format is what qemu-img expects, 6 GiB, and checks clean.
    for (file, format) in [
        ("debian-state.qcow2", "qcow2"),
        ("debian-state.vhdx", "vhdx"),
        ("debian-state.vmdk", "vmdk"),
        ("debian-state.vhd", "vpc"),
    ] {
        let path = out.join(file);
        let path = path.to_str().expect("path");
        let info: serde_json::Value = serde_json::from_str(&tool(
            "qemu-img",
            &["info", "-f", format, "--output=json", path],
        ))
        .expect("qemu-img info JSON");
        assert_eq!(info["format"], format, "{file}");
        assert_eq!(info["virtual-size"], 6u64 << 30, "{file}");
        if format != "vpc" {
            tool("qemu-img", &["check", "-f", format, path]);
        }
    }
    tool(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            raw_text,
            out.join("debian-state.qcow2").to_str().expect("path"),
        ],
    );

    // The same lock again, elsewhere: the same disk and partition GUIDs.
    build(temp.path(), "again");
    let again: serde_json::Value = serde_json::from_str(&tool(
        "sfdisk",
        &[
            "--json",
            temp.path()
                .join("again/debian-state.raw")
                .to_str()
                .expect("path"),
        ],
    ))
    .expect("sfdisk JSON");
    assert_eq!(again["partitiontable"]["id"], t["id"]);
    let uuids = |table: &serde_json::Value| -> Vec<String> {
        table["partitiontable"]["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["uuid"].as_str().expect("uuid").to_string())
            .collect()
    };
    assert_eq!(uuids(&again), uuids(&table));
    assert_eq!(mounts_under(temp.path()), Vec::<String>::new());
}

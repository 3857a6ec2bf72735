//! `/etc/fstab` for the image, written from the disk layout.
//!
//! The image's fstab must name filesystems by something that survives a
//! move to another machine: a label when the manifest gives one, else the
//! filesystem UUID kiln chose (derived from the lock), else the partition's
//! `PARTUUID`. Never a device name such as `/dev/vda1`, which depends on
//! the hypervisor's disk bus.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::assemble::disk::{DiskLayout, PlacedPartition};
use crate::manifest::{Filesystem, PartitionName, PartitionType};

/// The first lines of every fstab kiln writes.
const HEADER: &str = "# /etc/fstab: written by kiln from the image's disk layout.\n\
                      # <file system> <mount point> <type> <options> <dump> <pass>\n";

/// The fstab of a whole-disk image: one line per partition with a
/// mountpoint, and one per swap partition.
///
/// Each filesystem is named by `LABEL=` when it has a label, else by
/// `UUID=` from `filesystem_uuids` (partition name → filesystem UUID),
/// else by `PARTUUID=`. Options are the manifest's, or `umask=0077` for an
/// ESP (the firmware's files are no one else's business),
/// `errors=remount-ro` for an ext4 `/` (as for a one-filesystem image) and
/// `defaults` otherwise. As Debian's installer does, `/` is checked first (pass 1),
/// other filesystems after it (pass 2), and swap never. Lines are ordered so
/// that every mountpoint comes after its parent (by depth, then disk
/// order); swap comes last.
pub fn fstab_for(
    layout: &DiskLayout,
    filesystem_uuids: &BTreeMap<PartitionName, String>,
) -> String {
    let mut mounted: Vec<&PlacedPartition> = layout
        .partitions
        .iter()
        .filter(|p| p.mountpoint.is_some())
        .collect();
    mounted.sort_by_key(|p| {
        p.mountpoint.as_ref().map_or(0, |m| {
            if m.is_root() {
                0
            } else {
                m.as_str().matches('/').count()
            }
        })
    });
    let swaps = layout
        .partitions
        .iter()
        .filter(|p| p.filesystem == Filesystem::Swap && p.mountpoint.is_none());

    let mut text = HEADER.to_string();
    for part in mounted {
        let Some(mountpoint) = &part.mountpoint else {
            continue;
        };
        let options = match (&part.options, part.kind, part.filesystem) {
            (Some(options), _, _) => options.as_str(),
            (None, PartitionType::Esp, _) | (None, _, Filesystem::Vfat) => "umask=0077",
            (None, _, Filesystem::Ext4) if mountpoint.is_root() => "errors=remount-ro",
            (None, _, _) => "defaults",
        };
        let pass = if mountpoint.is_root() { 1 } else { 2 };
        let _ = writeln!(
            text,
            "{} {mountpoint} {} {options} 0 {pass}",
            source(part, filesystem_uuids),
            part.filesystem.as_str()
        );
    }
    for part in swaps {
        let options = part.options.as_ref().map_or("sw", |o| o.as_str());
        let _ = writeln!(
            text,
            "{} none swap {options} 0 0",
            source(part, filesystem_uuids)
        );
    }
    text
}

/// How fstab names the filesystem on `part`.
fn source(part: &PlacedPartition, filesystem_uuids: &BTreeMap<PartitionName, String>) -> String {
    if let Some(label) = &part.label {
        format!("LABEL={label}")
    } else if let Some(uuid) = filesystem_uuids.get(&part.name) {
        format!("UUID={uuid}")
    } else {
        format!("PARTUUID={}", part.part_uuid)
    }
}

/// The fstab of an image of one filesystem, found by its `label`.
///
/// ext4 is mounted `errors=remount-ro`, as diskimage-builder and Debian's
/// installer do, so a corrupted root turns read-only rather than being
/// written further; xfs has no such option and gets `defaults`.
pub fn fstab_for_single(label: &str, filesystem: Filesystem) -> String {
    let options = match filesystem {
        Filesystem::Ext4 => "errors=remount-ro",
        _ => "defaults",
    };
    format!(
        "{HEADER}LABEL={label} / {} {options} 0 1\n",
        filesystem.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::disk::layout;
    use crate::assemble::ids::Ids;
    use crate::manifest::{Arch, Source, parse};

    fn layout_of(yaml_disk: &str) -> DiskLayout {
        let text =
            format!("name: t\nbase: {{distro: debian, release: bookworm}}\ndisk:\n{yaml_disk}");
        let manifest = parse(&Source::new("t.yaml", &text)).expect("parses");
        layout(
            &manifest.disk.value,
            Arch::Amd64,
            &Ids::from_lock_text("fstab"),
            &BTreeMap::new(),
        )
        .expect("lays out")
    }

    #[test]
    fn a_whole_disk_fstab_mounts_parents_first_by_label_or_uuid() {
        let layout = layout_of(
            "  table: gpt\n  partitions:\n\
             \x20   - {name: bios, type: bios-boot, size: 1MiB}\n\
             \x20   - {name: esp, type: esp, size: 64MiB, mountpoint: /boot/efi}\n\
             \x20   - {name: boot, size: 512MiB, mountpoint: /boot, label: boot}\n\
             \x20   - {name: swap, type: swap, size: 1GiB}\n\
             \x20   - {name: root, size: 2GiB, mountpoint: /, label: cloudimg-rootfs}\n\
             \x20   - {name: data, size: 1GiB, filesystem: xfs, mountpoint: /srv, options: 'defaults,noatime'}\n",
        );
        let uuids: BTreeMap<PartitionName, String> = [
            ("esp", "1A2B-3C4D"),
            ("swap", "5e5e5e5e-0000-4000-8000-000000000001"),
            ("data", "d47ad47a-0000-4000-8000-000000000002"),
        ]
        .into_iter()
        .map(|(name, uuid)| (name.parse().expect("name"), uuid.to_string()))
        .collect();
        assert_eq!(
            fstab_for(&layout, &uuids),
            "# /etc/fstab: written by kiln from the image's disk layout.\n\
             # <file system> <mount point> <type> <options> <dump> <pass>\n\
             LABEL=cloudimg-rootfs / ext4 errors=remount-ro 0 1\n\
             LABEL=boot /boot ext4 defaults 0 2\n\
             UUID=d47ad47a-0000-4000-8000-000000000002 /srv xfs defaults,noatime 0 2\n\
             UUID=1A2B-3C4D /boot/efi vfat umask=0077 0 2\n\
             UUID=5e5e5e5e-0000-4000-8000-000000000001 none swap sw 0 0\n"
        );
    }

    #[test]
    fn without_label_or_uuid_the_partition_uuid_names_the_filesystem() {
        let layout = layout_of(
            "  table: mbr\n  partitions:\n    - {name: root, size: 1GiB, mountpoint: /}\n",
        );
        let id = Ids::from_lock_text("fstab").u32("mbr disk id");
        assert_eq!(
            fstab_for(&layout, &BTreeMap::new()),
            format!("{HEADER}PARTUUID={id:08x}-01 / ext4 errors=remount-ro 0 1\n")
        );
    }

    #[test]
    fn a_single_filesystem_fstab_mounts_the_root_by_label() {
        assert_eq!(
            fstab_for_single("cloudimg-rootfs", Filesystem::Ext4),
            "# /etc/fstab: written by kiln from the image's disk layout.\n\
             # <file system> <mount point> <type> <options> <dump> <pass>\n\
             LABEL=cloudimg-rootfs / ext4 errors=remount-ro 0 1\n"
        );
        assert_eq!(
            fstab_for_single("root", Filesystem::Xfs),
            format!("{HEADER}LABEL=root / xfs defaults 0 1\n")
        );
    }
}

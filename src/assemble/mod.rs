//! The assemble stage: from the finished root tree to the raw image, a
//! filesystem image or a whole partitioned disk, with every identifier
//! derived from the lock.
//!
//! Without a partition table the image is one filesystem of the tree.
//! With one (or with the `vm` element, which defaults to a GPT disk
//! bootable by BIOS and UEFI) the tree is split by mountpoint and each
//! partition's filesystem is made from its part straight into the disk at
//! its offset (ext4, vfat), or as a file copied there (swap, xfs, whose
//! tools take no offset). `/etc/fstab` follows from the layout alone
//! ([`fstab_text`]); the build writes it before the phases.
//! Nothing is mounted and no loop device is used: the kernel needs no
//! vfat or partition-table support, and the result is the same bytes
//! every time.
//!
//! - [`ids`]: identifiers from the lock.
//! - [`filesystem`]: one filesystem image from a directory.
//! - [`disk`]: the layout maths, the table, writing partitions, splitting
//!   the tree by mountpoint.
//! - [`fstab`]: `/etc/fstab` from the layout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::manifest::{Arch, Disk, Filesystem, PartitionName, PartitionSize};

pub mod bootloader;
pub mod disk;
pub mod filesystem;
pub mod fstab;
pub mod ids;

use disk::DiskLayout;
use filesystem::{FilesystemSpec, MadeFilesystem, Placement, SizeChoice};
use ids::Ids;

/// The label of the root filesystem when the manifest gives none: what
/// cloud images and their initramfs look for.
pub const DEFAULT_ROOT_LABEL: &str = "cloudimg-rootfs";

/// The layout of an image with the `vm` element and no `disk.table`: GPT,
/// bootable by BIOS (through the bios-boot partition) and UEFI (through
/// the ESP), the root filling the rest. For arm64, without the bios-boot
/// partition.
pub const DEFAULT_VM_DISK_YAML: &str = "\
table: gpt
size: auto
partitions:
  - name: bios
    type: bios-boot
    size: 1MiB
  - name: esp
    type: esp
    size: 64MiB
    label: ESP
    mountpoint: /boot/efi
  - name: root
    size: rest
    label: cloudimg-rootfs
    mountpoint: /
";

/// What the assemble stage is given.
#[derive(Debug, Clone, Copy)]
pub struct AssembleRequest<'a> {
    /// The manifest's disk layout.
    pub disk: &'a Disk,
    /// The image's architecture (it picks the root partition's type).
    pub arch: Arch,
    /// Whether the `vm` element is in the plan (a disk without a `table`
    /// then gets [`DEFAULT_VM_DISK_YAML`]).
    pub uses_vm: bool,
    /// The seed of every identifier: [`crate::lock::identity_text`].
    pub lock_text: &'a str,
    /// From the lock.
    pub source_date_epoch: u64,
    /// The finished root tree. Split and put back during the stage.
    pub root: &'a Path,
    /// A scratch directory for the filesystem images.
    pub work: &'a Path,
    /// Where the raw image is written.
    pub raw: &'a Path,
}

/// What the assemble stage made.
#[derive(Debug)]
pub struct Assembled {
    /// The raw image: the one filesystem, or the whole disk.
    pub raw: PathBuf,
    /// The disk's layout, for a whole-disk image.
    pub layout: Option<DiskLayout>,
    /// Each filesystem made, by partition name (`root` for a
    /// one-filesystem image).
    pub filesystems: Vec<(String, MadeFilesystem)>,
    /// How long each step took.
    pub timings: Vec<(String, Duration)>,
}

/// Why the image could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// A filesystem could not be made.
    #[error(transparent)]
    Filesystem(#[from] filesystem::FilesystemError),
    /// The layout does not work out.
    #[error(transparent)]
    Layout(#[from] disk::LayoutError),
    /// Writing the disk failed.
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    /// The BIOS bootloader could not be put on the disk.
    #[error(transparent)]
    Bootloader(#[from] bootloader::BootloaderError),
    /// The default layout of the `vm` element did not parse (a bug).
    #[error("kiln's default vm disk layout is broken: {0}")]
    DefaultLayout(String),
    /// A `rest` partition of an `auto` disk has a filesystem whose size
    /// cannot follow from content.
    #[error(
        "partition `{name}` takes the `rest` of an `auto`-sized disk, but its filesystem ({filesystem}) has no content to size it by: give the disk or the partition a size"
    )]
    RestWithoutContent {
        /// The partition.
        name: String,
        /// Its filesystem.
        filesystem: String,
    },
    /// A file of the tree could not be written; fs-err's message names
    /// the operation and the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The layout the image gets: the manifest's, or the `vm` default.
pub fn effective_disk(disk: &Disk, uses_vm: bool, arch: Arch) -> Result<Disk, AssembleError> {
    if disk.table.is_some() || !uses_vm {
        return Ok(disk.clone());
    }
    let mut default: Disk = serde_saphyr::from_str(DEFAULT_VM_DISK_YAML)
        .map_err(|e| AssembleError::DefaultLayout(e.to_string()))?;
    // BIOS boot is an x86 thing: arm64 machines boot by UEFI only.
    if arch != Arch::Amd64 {
        default
            .partitions
            .retain(|p| p.value.kind.value != crate::manifest::PartitionType::BiosBoot);
    }
    // A size or headroom the manifest gives still applies.
    default.size = disk.size.clone();
    default.headroom = disk.headroom.clone();
    Ok(default)
}

/// The `/etc/fstab` the image gets. It depends only on the layout, the
/// filesystems' labels and their lock-derived UUIDs, so the build writes
/// it before the phases: hooks and the initramfs (whose fsck hook reads
/// it) see the image's real mounts, and an element may add lines.
pub fn fstab_text(
    disk: &Disk,
    uses_vm: bool,
    arch: Arch,
    lock_text: &str,
) -> Result<String, AssembleError> {
    let ids = Ids::from_lock_text(lock_text);
    let disk = effective_disk(disk, uses_vm, arch)?;
    if disk.table.is_none() {
        let (kind, label) = single_filesystem(&disk);
        return Ok(fstab::fstab_for_single(label, kind));
    }
    let layout = disk::layout(&disk, arch, &ids, &placeholder_sizes(&disk))?;
    Ok(fstab::fstab_for(&layout, &filesystem_uuids(&layout, &ids)))
}

/// The filesystem and label of an image without a partition table.
fn single_filesystem(disk: &Disk) -> (Filesystem, &str) {
    let kind = disk
        .filesystem
        .as_ref()
        .map_or(Filesystem::Ext4, |f| f.value);
    let label = disk
        .label
        .as_ref()
        .map_or(DEFAULT_ROOT_LABEL, |l| l.value.as_str());
    (kind, label)
}

/// Any size for each `rest` partition: enough for a layout whose
/// mountpoints, names and identifiers are right, before sizes are known.
fn placeholder_sizes(disk: &Disk) -> BTreeMap<PartitionName, u64> {
    disk.partitions
        .iter()
        .filter(|p| p.size.value == PartitionSize::Rest)
        .map(|p| (p.name.value.clone(), 1 << 20))
        .collect()
}

fn filesystem_uuids(layout: &DiskLayout, ids: &Ids) -> BTreeMap<PartitionName, String> {
    layout
        .partitions
        .iter()
        .filter_map(|p| {
            filesystem::filesystem_uuid(p.filesystem, p.name.as_str(), ids)
                .map(|uuid| (p.name.clone(), uuid))
        })
        .collect()
}

/// Writes the image's `/etc/fstab` ([`fstab_text`]) into the tree.
pub fn write_fstab(root: &Path, text: &str) -> Result<(), AssembleError> {
    let etc = root.join("etc");
    let path = etc.join("fstab");
    fs_err::create_dir_all(&etc)?;
    // A symlink must not lead the write out of the tree.
    if path.is_symlink() {
        fs_err::remove_file(&path)?;
    }
    Ok(fs_err::write(&path, text)?)
}

/// Assembles the raw image from the tree (whose `/etc/fstab` the build
/// wrote before the phases). Command output goes to `log`.
pub fn assemble(
    request: &AssembleRequest<'_>,
    log: &mut dyn Write,
) -> Result<Assembled, AssembleError> {
    let ids = Ids::from_lock_text(request.lock_text);
    let disk = effective_disk(request.disk, request.uses_vm, request.arch)?;
    if disk.table.is_none() {
        assemble_filesystem(request, &disk, &ids, log)
    } else {
        // Beside the tree, on its filesystem (which may be a tmpfs): the
        // partitions' subtrees are moved there by renaming.
        let staging = request
            .root
            .parent()
            .unwrap_or(request.work)
            .join("partitions");
        assemble_disk(request, &disk, &ids, &staging, log)
    }
}

fn assemble_filesystem(
    request: &AssembleRequest<'_>,
    disk: &Disk,
    ids: &Ids,
    log: &mut dyn Write,
) -> Result<Assembled, AssembleError> {
    let (kind, label) = single_filesystem(disk);
    let started = Instant::now();
    let spec = FilesystemSpec {
        kind,
        label: Some(label),
        size: size_choice(disk),
        purpose: "root",
        usage: None,
    };
    let made = filesystem::make_filesystem(
        Some(request.root),
        &spec,
        ids,
        request.source_date_epoch,
        Placement::File(request.raw),
        log,
    )?;
    Ok(Assembled {
        raw: request.raw.to_path_buf(),
        layout: None,
        filesystems: vec![("root".to_string(), made)],
        timings: vec![(
            format!("filesystem {kind:?}").to_lowercase(),
            started.elapsed(),
        )],
    })
}

fn size_choice(disk: &Disk) -> SizeChoice {
    match disk.size.value {
        crate::manifest::DiskSize::Auto => SizeChoice::Auto {
            headroom_bytes: disk.headroom_bytes(),
        },
        crate::manifest::DiskSize::Fixed(size) => SizeChoice::Exact(size.bytes()),
    }
}

/// Splits the tree, makes and places the filesystems, and puts the tree
/// back together whatever happened.
fn assemble_disk(
    request: &AssembleRequest<'_>,
    disk: &Disk,
    ids: &Ids,
    staging: &Path,
    log: &mut dyn Write,
) -> Result<Assembled, AssembleError> {
    // The mountpoints do not depend on sizes: a first layout with any size
    // for a `rest` partition is enough to split the tree.
    let first = disk::layout(disk, request.arch, ids, &placeholder_sizes(disk))?;
    let parts = disk::split_tree(request.root, &first, staging)?;
    let result = place_partitions(request, disk, ids, &parts, log);
    let restored = disk::unsplit_tree(request.root, &first, staging);
    let assembled = result?;
    restored?;
    Ok(assembled)
}

fn place_partitions(
    request: &AssembleRequest<'_>,
    disk: &Disk,
    ids: &Ids,
    parts: &[(PartitionName, PathBuf)],
    log: &mut dyn Write,
) -> Result<Assembled, AssembleError> {
    let mut timings = Vec::new();
    let tree_of = |name: &PartitionName, mountpoint: Option<&str>| -> Option<PathBuf> {
        if mountpoint == Some("/") {
            return Some(request.root.to_path_buf());
        }
        parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, dir)| dir.clone())
    };

    // The `rest` partition of an `auto` disk is as large as its content
    // needs.
    let started = Instant::now();
    let mut content_bytes = BTreeMap::new();
    // Each tree measured to size the disk, kept so its filesystem does
    // not measure it again.
    let mut usages = BTreeMap::new();
    if disk.size.value == crate::manifest::DiskSize::Auto {
        for partition in &disk.partitions {
            if partition.size.value != PartitionSize::Rest {
                continue;
            }
            let mountpoint = partition.mountpoint.as_ref().map(|m| m.value.as_str());
            let tree = tree_of(&partition.name.value, mountpoint);
            let kind = partition.effective_filesystem();
            let bytes = match (kind, &tree) {
                (Filesystem::Ext4, Some(tree)) => {
                    let usage = filesystem::TreeUsage::measure(tree)?;
                    usages.insert(partition.name.value.clone(), usage);
                    filesystem::ext4_auto_size_of(&usage, disk.headroom_bytes())
                }
                (Filesystem::Vfat, Some(tree)) => filesystem::vfat_auto_size(
                    filesystem::TreeUsage::measure(tree)?.content_bytes,
                    disk.headroom_bytes(),
                ),
                _ => {
                    return Err(AssembleError::RestWithoutContent {
                        name: partition.name.value.to_string(),
                        filesystem: format!("{kind:?}").to_lowercase(),
                    });
                }
            };
            content_bytes.insert(partition.name.value.clone(), bytes);
        }
    }
    let layout = disk::layout(disk, request.arch, ids, &content_bytes)?;
    timings.push(("layout".to_string(), started.elapsed()));

    disk::write_table(request.raw, &layout)?;
    let mut filesystems = Vec::new();
    for partition in &layout.partitions {
        if partition.filesystem == Filesystem::None {
            continue;
        }
        let started = Instant::now();
        let tree = tree_of(
            &partition.name,
            partition.mountpoint.as_ref().map(|m| m.as_str()),
        );
        let spec = FilesystemSpec {
            kind: partition.filesystem,
            label: partition.label.as_ref().map(|l| l.as_str()),
            size: SizeChoice::Exact(partition.size_bytes),
            purpose: partition.name.as_str(),
            usage: usages.get(&partition.name).copied(),
        };
        let made = if filesystem::writes_in_place(partition.filesystem) {
            // The new disk reads as zeros everywhere but its table, as
            // the tools expect of the range they are given.
            let placement = Placement::InDisk {
                disk: request.raw,
                offset_bytes: partition.start_bytes,
            };
            filesystem::make_filesystem(
                tree.as_deref(),
                &spec,
                ids,
                request.source_date_epoch,
                placement,
                log,
            )?
        } else {
            let image = request
                .work
                .join(format!("partition-{}.img", partition.name));
            let made = filesystem::make_filesystem(
                tree.as_deref(),
                &spec,
                ids,
                request.source_date_epoch,
                Placement::File(&image),
                log,
            )?;
            disk::write_partition(request.raw, partition, &image)?;
            remove_file(&image)?;
            made
        };
        timings.push((
            format!("partition {} ({:?})", partition.name, partition.filesystem).to_lowercase(),
            started.elapsed(),
        ));
        filesystems.push((partition.name.to_string(), made));
    }

    // GRUB for BIOS, when the tree carries its images (the `vm` element
    // makes them) and the disk has a place for core.img: the bios-boot
    // partition on GPT, the gap before the first partition on MBR.
    let started = Instant::now();
    if let Some(images) = bootloader::grub_bios_images(request.root)? {
        let has_place = layout.table == crate::manifest::PartitionTable::Mbr
            || layout
                .partitions
                .iter()
                .any(|p| p.kind == crate::manifest::PartitionType::BiosBoot);
        if has_place {
            let embedded = bootloader::embed_grub_bios(
                request.raw,
                &layout,
                &images.boot_img,
                &images.core_img,
            )?;
            let _ = writeln!(
                log,
                "kiln: GRUB for BIOS: core.img ({} sectors) at sector {}",
                embedded.core_sectors, embedded.core_lba
            );
            timings.push(("bios bootloader".to_string(), started.elapsed()));
        } else {
            let _ = writeln!(
                log,
                "kiln: the disk has no bios-boot partition, so it boots by UEFI only"
            );
        }
    }
    Ok(Assembled {
        raw: request.raw.to_path_buf(),
        layout: Some(layout),
        filesystems,
        timings,
    })
}

fn remove_file(path: &Path) -> Result<(), AssembleError> {
    Ok(fs_err::remove_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_default_layout_is_gpt_bootable_both_ways() {
        let disk = effective_disk(&Disk::default(), true, Arch::Amd64).expect("parses");
        assert_eq!(
            disk.table.as_ref().map(|t| t.value),
            Some(crate::manifest::PartitionTable::Gpt)
        );
        let kinds: Vec<_> = disk.partitions.iter().map(|p| p.kind.value).collect();
        assert_eq!(
            kinds,
            [
                crate::manifest::PartitionType::BiosBoot,
                crate::manifest::PartitionType::Esp,
                crate::manifest::PartitionType::Linux
            ]
        );
        let root = &disk.partitions[2];
        assert_eq!(
            root.label.as_ref().map(|l| l.value.as_str()),
            Some(DEFAULT_ROOT_LABEL)
        );
        // arm64 boots by UEFI only: no bios-boot partition.
        let arm64 = effective_disk(&Disk::default(), true, Arch::Arm64).expect("parses");
        let kinds: Vec<_> = arm64.partitions.iter().map(|p| p.kind.value).collect();
        assert_eq!(
            kinds,
            [
                crate::manifest::PartitionType::Esp,
                crate::manifest::PartitionType::Linux
            ]
        );
        // Without vm, no table is made up.
        assert!(
            effective_disk(&Disk::default(), false, Arch::Amd64)
                .expect("default")
                .table
                .is_none()
        );
    }
}

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
    /// A fixed size too small for the ext4 of the files that go in it:
    /// the user's mistake, found before any filesystem is written.
    #[error("{}", .0.message())]
    TooSmall(Box<TooSmall>),
    /// A file of the tree could not be written; fs-err's message names
    /// the operation and the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An ext4 partition (or the image's one filesystem) whose fixed size
/// cannot hold the files that go in it, with the numbers to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooSmall {
    /// The partition, or `None` for an image of one filesystem.
    pub partition: Option<String>,
    /// What goes in it, in words (`the tree but /boot/efi`).
    pub content: String,
    /// Its size in bytes, as the layout gives it.
    pub size_bytes: u64,
    /// The space the files take as ext4 stores them.
    pub tree_bytes: u64,
    /// The smallest ext4 that holds them
    /// ([`filesystem::ext4_smallest_size`]).
    pub needed_bytes: u64,
    /// The `size:` to change and what to write there.
    pub fix: SizeFix,
}

/// Which `size:` of the imagefile makes a filesystem too small, and the
/// size it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeFix {
    /// The partition's own `size:`.
    Partition {
        /// Where it is written.
        span: miette::SourceSpan,
        /// The smallest size that holds the files.
        bytes: u64,
    },
    /// The disk's `size:`: the partition takes the `rest`, or the image is
    /// one filesystem.
    Disk {
        /// Where it is written.
        span: miette::SourceSpan,
        /// The smallest disk whose filesystem holds the files.
        bytes: u64,
    },
}

impl TooSmall {
    /// What is wrong, with the numbers.
    pub fn message(&self) -> String {
        let what = match &self.partition {
            Some(name) => format!("partition `{name}`"),
            None => "the image's filesystem".to_string(),
        };
        format!(
            "{what} is too small: it is {}, and the files that go in it ({}) take {}; an ext4 holding them needs at least {}",
            crate::terminal::human_bytes(self.size_bytes),
            self.content,
            crate::terminal::human_bytes(self.tree_bytes),
            crate::terminal::human_bytes(self.needed_bytes),
        )
    }

    /// The label under the `size:` it points at.
    pub fn label(&self) -> String {
        match (&self.fix, &self.partition) {
            (SizeFix::Partition { .. }, _) | (SizeFix::Disk { .. }, None) => format!(
                "too small: needs at least {}",
                crate::manifest::Size::from_bytes(self.needed_bytes)
            ),
            (SizeFix::Disk { .. }, Some(name)) => format!(
                "leaves partition `{name}` {}, too small",
                crate::terminal::human_bytes(self.size_bytes)
            ),
        }
    }

    /// What to write instead.
    pub fn help(&self) -> String {
        match &self.fix {
            SizeFix::Partition { bytes, .. } => format!(
                "give the partition `size: {}` or more, or `size: rest` to give it what the others leave",
                crate::manifest::Size::from_bytes(*bytes)
            ),
            SizeFix::Disk { bytes, .. } => format!(
                "give the disk `size: {}` or more, or `size: auto` to size it by its content",
                crate::manifest::Size::from_bytes(*bytes)
            ),
        }
    }

    /// Where in the imagefile.
    pub fn span(&self) -> miette::SourceSpan {
        match self.fix {
            SizeFix::Partition { span, .. } | SizeFix::Disk { span, .. } => span,
        }
    }
}

/// `None` when an ext4 of `size_bytes` holds `usage`, else the smallest
/// size that does: both by [`filesystem::ext4_holds`], the arithmetic of
/// the layout assembly gives a fixed size, so the number a diagnostic
/// names is one assembly can use.
pub fn ext4_too_small(usage: &filesystem::TreeUsage, size_bytes: u64) -> Option<u64> {
    if filesystem::ext4_holds(usage, size_bytes) {
        return None;
    }
    // Larger than the size found too small, even at an odd size.
    Some(filesystem::ext4_smallest_size(usage).max(size_bytes + crate::manifest::ALIGN_BYTES))
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
    let size = size_choice(disk);
    // Measured once: for the check here and for mke2fs.
    let usage = match kind {
        Filesystem::Ext4 => Some(filesystem::TreeUsage::measure(request.root)?),
        _ => None,
    };
    if let (Some(usage), SizeChoice::Exact(bytes)) = (&usage, size)
        && let Some(needed_bytes) = ext4_too_small(usage, bytes)
    {
        return Err(AssembleError::TooSmall(Box::new(TooSmall {
            partition: None,
            content: "the whole tree".to_string(),
            size_bytes: bytes,
            tree_bytes: usage.blocks * filesystem::EXT4_BLOCK_BYTES,
            needed_bytes,
            fix: SizeFix::Disk {
                span: disk.size.span,
                bytes: needed_bytes,
            },
        })));
    }
    let spec = FilesystemSpec {
        kind,
        label: Some(label),
        size,
        purpose: "root",
        usage,
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
    check_fit(disk, &layout, &tree_of, &mut usages)?;
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

/// Refuses, before the table or any filesystem is written, an ext4
/// partition too small for the files that go in it, pointing at the
/// `size:` to change. Each tree measured is kept in `usages` for its
/// filesystem.
fn check_fit(
    disk: &Disk,
    layout: &DiskLayout,
    tree_of: &dyn Fn(&PartitionName, Option<&str>) -> Option<PathBuf>,
    usages: &mut BTreeMap<PartitionName, filesystem::TreeUsage>,
) -> Result<(), AssembleError> {
    let others: Vec<&str> = layout
        .partitions
        .iter()
        .filter_map(|p| p.mountpoint.as_ref())
        .filter(|m| !m.is_root())
        .map(|m| m.as_str())
        .collect();
    for placed in &layout.partitions {
        if placed.filesystem != Filesystem::Ext4 {
            continue;
        }
        let mountpoint = placed.mountpoint.as_ref().map(|m| m.as_str());
        let Some(tree) = tree_of(&placed.name, mountpoint) else {
            continue;
        };
        let usage = match usages.get(&placed.name) {
            Some(usage) => *usage,
            None => {
                let usage = filesystem::TreeUsage::measure(&tree)?;
                usages.insert(placed.name.clone(), usage);
                usage
            }
        };
        let Some(needed_bytes) = ext4_too_small(&usage, placed.size_bytes) else {
            continue;
        };
        let Some(partition) = disk.partitions.iter().find(|p| p.name.value == placed.name) else {
            continue;
        };
        let fix = match partition.size.value {
            PartitionSize::Fixed(_) => SizeFix::Partition {
                span: partition.size.span,
                bytes: needed_bytes,
            },
            PartitionSize::Rest => SizeFix::Disk {
                span: disk.size.span,
                bytes: disk_bytes_for_rest(disk, needed_bytes)
                    .ok_or(disk::LayoutError::Overflow)?,
            },
        };
        let content = match mountpoint {
            Some("/") if others.is_empty() => "the whole tree".to_string(),
            Some("/") => format!("the tree but {}", others.join(", ")),
            Some(mountpoint) => format!("the tree's {mountpoint}"),
            None => "its tree".to_string(),
        };
        return Err(AssembleError::TooSmall(Box::new(TooSmall {
            partition: Some(placed.name.to_string()),
            content,
            size_bytes: placed.size_bytes,
            tree_bytes: usage.blocks * filesystem::EXT4_BLOCK_BYTES,
            needed_bytes,
            fix,
        })));
    }
    Ok(())
}

/// The smallest fixed disk whose `rest` partition is `rest_bytes` (a
/// multiple of [`layout_fit::ALIGN_BYTES`]) with the other partitions as
/// they are; `None` past 64 bits or without a table.
fn disk_bytes_for_rest(disk: &Disk, rest_bytes: u64) -> Option<u64> {
    let table = disk.table.as_ref()?.value;
    crate::manifest::layout_fit::Fit::new(table, disk.partitions.iter().map(|p| p.size.value))?
        .auto_disk_bytes(rest_bytes)
}

fn remove_file(path: &Path) -> Result<(), AssembleError> {
    Ok(fs_err::remove_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// The imagefile's text and its `disk:`.
    fn disk_of(yaml_disk: &str) -> (String, Disk) {
        let text =
            format!("name: t\nbase: {{distro: debian, release: bookworm}}\ndisk:\n{yaml_disk}");
        let disk = crate::manifest::parse(&crate::manifest::Source::new("t.yaml", &text))
            .expect("parses")
            .disk
            .value;
        (text, disk)
    }

    fn usage(bytes: u64) -> filesystem::TreeUsage {
        filesystem::TreeUsage {
            blocks: bytes / filesystem::EXT4_BLOCK_BYTES,
            inodes: 20_000,
            content_bytes: bytes,
        }
    }

    #[test]
    fn the_smallest_ext4_that_fits_holds_the_tree_and_one_mib_less_does_not() {
        let tree = usage(600 * MIB);
        let needed = ext4_too_small(&tree, 100 * MIB).expect("100 MiB is too small");
        assert_eq!(needed, filesystem::ext4_smallest_size(&tree));
        assert_eq!(needed % MIB, 0, "a size the imagefile can give");
        assert!(needed > 600 * MIB, "{needed}");
        // The journal and metadata come on top, but less than `size: auto`
        // adds (it keeps ext4's reserved blocks free as well).
        assert!(needed < filesystem::ext4_auto_size_of(&tree, 0), "{needed}");
        assert!(needed < 660 * MIB, "{needed}");
        assert_eq!(ext4_too_small(&tree, needed), None);
        assert_eq!(ext4_too_small(&tree, needed + MIB), None);
        assert_eq!(ext4_too_small(&tree, needed - MIB), Some(needed));
        // An empty small partition fits: its journal shrinks with it.
        let empty = filesystem::TreeUsage::default();
        assert_eq!(ext4_too_small(&empty, 8 * MIB), None);
        assert_eq!(filesystem::ext4_smallest_size(&empty) % MIB, 0);
        assert!(filesystem::ext4_smallest_size(&empty) <= 8 * MIB);
    }

    #[test]
    fn a_rest_partition_grows_by_growing_the_disk() {
        let (_, disk) = disk_of(
            "  table: gpt\n  size: 1GiB\n  partitions:\n\
             \x20   - {name: esp, type: esp, size: 64MiB, mountpoint: /boot/efi}\n\
             \x20   - {name: root, size: rest, mountpoint: /}\n",
        );
        let bytes = disk_bytes_for_rest(&disk, 1500 * MIB).expect("fits in 64 bits");
        // 1 MiB before the first partition, the ESP, the root, GPT's backup.
        assert_eq!(bytes, (1 + 64 + 1500 + 1) * MIB);
        let fit = crate::manifest::layout_fit::Fit::new(
            crate::manifest::PartitionTable::Gpt,
            disk.partitions.iter().map(|p| p.size.value),
        )
        .expect("fit");
        assert_eq!(fit.rest_bytes_on(bytes), 1500 * MIB);
        assert_eq!(fit.rest_bytes_on(bytes - MIB), 1499 * MIB);
    }

    #[test]
    fn an_image_of_one_filesystem_too_small_points_at_the_disk_size_and_writes_nothing() {
        let (text, disk) = disk_of("  size: 8MiB\n");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        fs_err::create_dir_all(&root).expect("mkdir");
        fs_err::File::create(root.join("big"))
            .and_then(|f| f.set_len(30 * MIB))
            .expect("write");
        let raw = dir.path().join("t.raw");
        let request = AssembleRequest {
            disk: &disk,
            arch: Arch::Amd64,
            uses_vm: false,
            lock_text: "lock",
            source_date_epoch: 0,
            root: &root,
            work: dir.path(),
            raw: &raw,
        };
        let error = assemble(&request, &mut Vec::new()).expect_err("too small");
        let AssembleError::TooSmall(too_small) = error else {
            panic!("{error}");
        };
        assert!(!raw.exists(), "nothing written");
        assert_eq!(too_small.partition, None);
        assert_eq!(too_small.size_bytes, 8 * MIB);
        let span = too_small.span();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "8MiB");
        assert_eq!(
            too_small.fix,
            SizeFix::Disk {
                span,
                bytes: too_small.needed_bytes
            }
        );
        assert!(too_small.help().starts_with("give the disk `size: "));
        assert!(
            too_small
                .message()
                .starts_with("the image's filesystem is too small: it is 8.0 MiB"),
            "{}",
            too_small.message()
        );
    }

    #[test]
    fn a_partition_too_small_for_its_files_points_at_its_size() {
        let (text, disk) = disk_of(
            "  table: gpt\n  size: auto\n  partitions:\n\
             \x20   - {name: boot, size: 100MiB, mountpoint: /boot}\n\
             \x20   - {name: root, size: 20MiB, mountpoint: /}\n",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let boot = dir.path().join("boot");
        fs_err::create_dir_all(&root).expect("mkdir");
        fs_err::create_dir_all(&boot).expect("mkdir");
        // 30 MiB of files (sparse: only the apparent size counts).
        fs_err::File::create(root.join("big"))
            .and_then(|f| f.set_len(30 * MIB))
            .expect("write");
        let ids = Ids::from_lock_text("lock");
        let layout = disk::layout(&disk, Arch::Amd64, &ids, &BTreeMap::new()).expect("layout");
        let tree_of = |name: &PartitionName, _: Option<&str>| -> Option<PathBuf> {
            Some(if name.as_str() == "root" {
                root.clone()
            } else {
                boot.clone()
            })
        };
        let mut usages = BTreeMap::new();
        let error = check_fit(&disk, &layout, &tree_of, &mut usages).expect_err("too small");
        let AssembleError::TooSmall(too_small) = error else {
            panic!("{error}");
        };
        let measured = usages[&"root".parse::<PartitionName>().expect("name")];
        assert_eq!(
            too_small.needed_bytes,
            filesystem::ext4_smallest_size(&measured)
        );
        assert_eq!(too_small.partition.as_deref(), Some("root"));
        assert_eq!(too_small.content, "the tree but /boot");
        assert_eq!(too_small.size_bytes, 20 * MIB);
        assert_eq!(
            too_small.tree_bytes,
            30 * MIB + filesystem::EXT4_BLOCK_BYTES
        );
        let span = too_small.span();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "20MiB");
        let size = crate::manifest::Size::from_bytes(too_small.needed_bytes);
        assert_eq!(
            too_small.help(),
            format!(
                "give the partition `size: {size}` or more, or `size: rest` to give it what the others leave"
            )
        );
        assert!(
            too_small.message().starts_with(
                "partition `root` is too small: it is 20.0 MiB, and the files that go in it (the tree but /boot) take 30.0 MiB; an ext4 holding them needs at least "
            ),
            "{}",
            too_small.message()
        );

        // Large enough: nothing to say, and the boot partition (with an
        // empty tree) fits its 100 MiB.
        let (_, roomy) = disk_of(
            "  table: gpt\n  size: auto\n  partitions:\n\
             \x20   - {name: boot, size: 100MiB, mountpoint: /boot}\n\
             \x20   - {name: root, size: 100MiB, mountpoint: /}\n",
        );
        let layout = disk::layout(&roomy, Arch::Amd64, &ids, &BTreeMap::new()).expect("layout");
        check_fit(&roomy, &layout, &tree_of, &mut BTreeMap::new()).expect("fits");

        // A root taking the rest of a fixed disk: the disk's size is the
        // one to change, and the size given is one whose rest holds it.
        let (text, fixed) = disk_of(
            "  table: gpt\n  size: 40MiB\n  partitions:\n\
             \x20   - {name: boot, size: 8MiB, mountpoint: /boot}\n\
             \x20   - {name: root, size: rest, mountpoint: /}\n",
        );
        let layout = disk::layout(&fixed, Arch::Amd64, &ids, &BTreeMap::new()).expect("layout");
        let error =
            check_fit(&fixed, &layout, &tree_of, &mut BTreeMap::new()).expect_err("too small");
        let AssembleError::TooSmall(too_small) = error else {
            panic!("{error}");
        };
        let span = too_small.span();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "40MiB");
        assert_eq!(too_small.size_bytes, (40 - 1 - 8 - 1) * MIB);
        let SizeFix::Disk { bytes, .. } = too_small.fix else {
            panic!("{:?}", too_small.fix);
        };
        assert_eq!(bytes, (1 + 8 + 1) * MIB + too_small.needed_bytes);
        assert_eq!(
            too_small.label(),
            "leaves partition `root` 30.0 MiB, too small"
        );
        assert!(too_small.help().starts_with(&format!(
            "give the disk `size: {}` or more",
            crate::manifest::Size::from_bytes(bytes)
        )));
    }

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

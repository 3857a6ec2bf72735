//! Whole-disk images: where each partition goes, the partition table, and
//! the filesystems that cannot be written in place copied into place.
//!
//! A manifest with `disk.table` describes a disk; this module turns it into
//! a [`DiskLayout`] (pure arithmetic, tested without root), writes the
//! table into a sparse image file with `sfdisk` (no loop device: the build
//! host may have neither partition parsers nor device-mapper), copies a
//! filesystem image to its partition's offset (swap and xfs; ext4 and vfat
//! are written there directly, see [`crate::assemble::filesystem`]), and
//! splits the finished tree by mountpoint so each partition's filesystem is
//! built from its own directory. Every identifier (disk GUID or MBR id,
//! partition GUIDs) comes from [`Ids`], so the same lock writes the same
//! bytes.

use fs_err::os::unix::fs::FileExt as _;
use fs_err::{self as fs, File, OpenOptions};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt as _, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::assemble::ids::Ids;
use crate::host::command::CommandError;
use crate::manifest::{
    Arch, Disk, DiskSize, Filesystem, Label, MountOptions, Mountpoint, PartitionName,
    PartitionSize, PartitionTable, PartitionType, Size,
};

// The layout rules the manifest checker applies are the ones the disk is
// laid out by: one definition of the alignment, the GPT backup space and
// what a `rest` partition gets.
use crate::manifest::layout_fit::{self, Fit};
pub use crate::manifest::{ALIGN_BYTES, GPT_BACKUP_BYTES};

/// The logical sector size kiln writes tables for; sfdisk uses 512 for
/// image files.
pub const SECTOR_BYTES: u64 = 512;

/// The unit in which filesystem images are copied into a disk; chunks of
/// zeros this large are left as holes.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// The Debian package that ships `sfdisk` (not `util-linux` itself).
const SFDISK_PACKAGE: &str = "fdisk";

/// Root partition type GUIDs of the Discoverable Partitions Specification,
/// by architecture.
const ROOT_X86_64_GUID: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const ROOT_ARM64_GUID: &str = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE";

/// How the partition table names a partition's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeCode {
    /// A GPT partition type GUID, upper case as sfdisk prints it.
    Guid(&'static str),
    /// An MBR partition type byte.
    Byte(u8),
}

impl std::fmt::Display for TypeCode {
    /// The form sfdisk reads after `type=`: the GUID, or the byte in hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeCode::Guid(guid) => f.write_str(guid),
            TypeCode::Byte(byte) => write!(f, "{byte:02x}"),
        }
    }
}

/// One partition with its place on the disk and every identifier it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPartition {
    /// The manifest's name; on GPT also the partition's name.
    pub name: PartitionName,
    /// Its number in the table, from 1 (`/dev/vda<index>`).
    pub index: u32,
    /// Where it starts, in bytes from the start of the disk (a multiple of
    /// [`ALIGN_BYTES`]).
    pub start_bytes: u64,
    /// Its size in bytes (a multiple of [`ALIGN_BYTES`]).
    pub size_bytes: u64,
    /// What it is for.
    pub kind: PartitionType,
    /// The filesystem it holds.
    pub filesystem: Filesystem,
    /// The filesystem label, if the manifest gives one.
    pub label: Option<Label>,
    /// Where it is mounted, if anywhere.
    pub mountpoint: Option<Mountpoint>,
    /// Mount options from the manifest, if any.
    pub options: Option<MountOptions>,
    /// Its type GUID (GPT) or type byte (MBR).
    pub type_code: TypeCode,
    /// What the kernel shows as its `PARTUUID`: the partition GUID on GPT,
    /// `<disk id>-<index>` in hex on MBR (`1a2b3c4d-01`).
    pub part_uuid: String,
    /// Whether the MBR "active" flag is set (on the partition holding
    /// `/boot`, else the root); always false on GPT.
    pub bootable: bool,
}

impl PlacedPartition {
    /// The first byte after the partition.
    pub fn end_bytes(&self) -> u64 {
        self.start_bytes + self.size_bytes
    }
}

/// Where everything goes on a whole-disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// The kind of partition table.
    pub table: PartitionTable,
    /// The size of the image file.
    pub disk_bytes: u64,
    /// The partitions, in disk order.
    pub partitions: Vec<PlacedPartition>,
    /// The table's identifier as sfdisk's `label-id:` takes it: the disk
    /// GUID on GPT, `0x` and eight hex digits on MBR.
    pub disk_id: String,
}

impl DiskLayout {
    /// The partition called `name`.
    pub fn partition(&self, name: &str) -> Option<&PlacedPartition> {
        self.partitions.iter().find(|p| p.name.as_str() == name)
    }
}

/// Why the partitions cannot be laid out on the disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The disk is one filesystem, not a partitioned disk.
    #[error("the disk has no partition table")]
    NoTable,
    /// A partition table without partitions.
    #[error("the partition table has no partitions")]
    NoPartitions,
    /// More than one partition takes the rest of the disk.
    #[error("only one partition can take the rest of the disk; `{first}` and `{second}` both do")]
    TwoRests {
        /// The first `rest` partition.
        first: String,
        /// The second one.
        second: String,
    },
    /// An MBR table has four primary slots.
    #[error("an MBR disk holds at most 4 primary partitions; this one has {count}")]
    TooManyMbrPartitions {
        /// How many partitions the manifest lists.
        count: usize,
    },
    /// A partition type MBR has no code for.
    #[error("partition `{name}` of type `{kind}` needs a GPT disk")]
    GptOnly {
        /// The partition.
        name: String,
        /// Its type as written.
        kind: &'static str,
    },
    /// A fixed disk size that is not whole sectors.
    #[error(
        "the disk size {disk_bytes} bytes is not a whole number of {SECTOR_BYTES}-byte sectors"
    )]
    NotWholeSectors {
        /// The size asked for.
        disk_bytes: u64,
    },
    /// The partitions do not fit the fixed disk size.
    #[error(
        "the partitions need {} ({needed_bytes} bytes) but the disk is {} ({disk_bytes} bytes)",
        Size::from_bytes(*needed_bytes),
        Size::from_bytes(*disk_bytes)
    )]
    TooSmall {
        /// What the partitions, alignment and table need, including 1 MiB
        /// for a `rest` partition.
        needed_bytes: u64,
        /// The disk size asked for.
        disk_bytes: u64,
    },
    /// A `rest` partition on an `auto` disk, but no filesystem size for it.
    #[error(
        "partition `{name}` takes the rest of an `auto`-sized disk, so the size of its filesystem must be known first"
    )]
    RestSizeUnknown {
        /// The partition.
        name: String,
    },
    /// A filesystem larger than its partition.
    #[error(
        "the filesystem of partition `{name}` needs {filesystem_bytes} bytes but the partition is {} ({partition_bytes} bytes)",
        Size::from_bytes(*partition_bytes)
    )]
    FilesystemTooLarge {
        /// The partition.
        name: String,
        /// The filesystem's size.
        filesystem_bytes: u64,
        /// The partition's size.
        partition_bytes: u64,
    },
    /// A partition beyond what MBR's 32-bit sector numbers reach (2 TiB).
    #[error(
        "an MBR table reaches only 2 TiB; partition `{name}` ends at byte {end_bytes}; use `table: gpt`"
    )]
    BeyondMbr {
        /// The partition.
        name: String,
        /// Its end, in bytes from the start of the disk.
        end_bytes: u64,
    },
    /// Sizes that overflow 64 bits.
    #[error("the partition sizes add up to more than 16 EiB")]
    Overflow,
}

/// Why a disk image could not be written, split or filled.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// sfdisk is missing or could not start.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// sfdisk ran and refused the table.
    #[error("sfdisk could not write the partition table of {path} (exit code {code:?}): {stderr}")]
    Sfdisk {
        /// The image file.
        path: PathBuf,
        /// sfdisk's exit code.
        code: Option<i32>,
        /// What sfdisk wrote on stderr.
        stderr: String,
    },
    /// A file operation failed; fs-err's message names the operation and
    /// the path.
    #[error(transparent)]
    Fs(#[from] io::Error),
    /// Zeroing or writing a range of the disk image failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A filesystem image larger than its partition.
    #[error(
        "the filesystem image {image} is {image_bytes} bytes, larger than partition `{name}` ({partition_bytes} bytes)"
    )]
    ImageTooLarge {
        /// The filesystem image.
        image: PathBuf,
        /// Its size.
        image_bytes: u64,
        /// The partition.
        name: String,
        /// The partition's size.
        partition_bytes: u64,
    },
    /// A disk file shorter than its layout says.
    #[error(
        "the disk image {path} is {file_bytes} bytes, but partition `{name}` ends at byte {end_bytes}"
    )]
    DiskTooShort {
        /// The disk image.
        path: PathBuf,
        /// Its size.
        file_bytes: u64,
        /// The partition.
        name: String,
        /// Where the partition ends.
        end_bytes: u64,
    },
    /// A mountpoint that is, or lies under, a symbolic link in the tree.
    #[error(
        "mountpoint `{mountpoint}` of partition `{name}` goes through the symbolic link {path}, which may lead outside the tree"
    )]
    MountpointIsSymlink {
        /// The partition.
        name: String,
        /// Its mountpoint.
        mountpoint: String,
        /// The symbolic link.
        path: PathBuf,
    },
    /// A mountpoint that is, or lies under, something other than a directory.
    #[error(
        "mountpoint `{mountpoint}` of partition `{name}` is not a directory in the tree: {path}"
    )]
    MountpointNotDirectory {
        /// The partition.
        name: String,
        /// Its mountpoint.
        mountpoint: String,
        /// What is in the way.
        path: PathBuf,
    },
    /// A staging directory that is already there.
    #[error("the staging directory {path} already exists")]
    StagingExists {
        /// The directory.
        path: PathBuf,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DiskError + use<> {
    let path = path.to_path_buf();
    move |source| DiskError::Io {
        action,
        path,
        source,
    }
}

// ---------------------------------------------------------------- layout

/// The type GUID of a GPT partition.
///
/// A `linux` partition mounted at `/` gets the architecture's root type of
/// the Discoverable Partitions Specification rather than the generic Linux
/// type: systemd's initrd then finds the root without `root=`, and tools
/// that only know "Linux filesystem" still treat it as one (growpart,
/// grub, cloud-init do not look at the type).
fn gpt_type(kind: PartitionType, is_root: bool, arch: Arch) -> &'static str {
    match kind {
        PartitionType::Linux if is_root => match arch {
            Arch::Amd64 => ROOT_X86_64_GUID,
            Arch::Arm64 => ROOT_ARM64_GUID,
        },
        PartitionType::Linux => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        PartitionType::Esp => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        PartitionType::BiosBoot => "21686148-6449-6E6F-744E-656564454649",
        PartitionType::Swap => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        PartitionType::Xbootldr => "BC13C2FF-59E6-4262-A352-B275FD6F7172",
        PartitionType::Home => "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
        PartitionType::Srv => "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
        PartitionType::Var => "4D21B016-B534-45C2-A9FB-5C16E091FD2D",
        PartitionType::Tmp => "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1",
        PartitionType::Lvm => "E6D6D379-F507-44C2-A23C-238F2A3DF928",
        PartitionType::Raid => "A19D880F-05FC-4D3B-A006-743F0F84911E",
    }
}

/// The type byte of an MBR partition; MBR has no codes for `/home`, `/srv`,
/// `/var` or `/tmp`, which are plain Linux there. `xbootldr` is 0xea, as the
/// Boot Loader Specification says.
fn mbr_type(kind: PartitionType) -> Option<u8> {
    match kind {
        PartitionType::Linux
        | PartitionType::Home
        | PartitionType::Srv
        | PartitionType::Var
        | PartitionType::Tmp => Some(0x83),
        PartitionType::Esp => Some(0xef),
        PartitionType::Swap => Some(0x82),
        PartitionType::Xbootldr => Some(0xea),
        PartitionType::Lvm => Some(0x8e),
        PartitionType::Raid => Some(0xfd),
        PartitionType::BiosBoot => None,
    }
}

/// Lays out `disk`'s partitions: pure arithmetic, no files touched.
///
/// `filesystem_bytes` holds the size of each filesystem image already known
/// (by partition name). It must hold the `rest` partition's when the disk
/// size is `auto`: that partition is then made just large enough for it.
/// Every size given is checked to fit its partition.
///
/// Partitions start at 1 MiB, follow each other in manifest order, and are
/// rounded up to 1 MiB; on GPT the last 1 MiB holds the backup table. An
/// `auto` disk is the sum of all that.
pub fn layout(
    disk: &Disk,
    arch: Arch,
    ids: &Ids,
    filesystem_bytes: &BTreeMap<PartitionName, u64>,
) -> Result<DiskLayout, LayoutError> {
    let table = disk.table.as_ref().ok_or(LayoutError::NoTable)?.value;
    let partitions: Vec<_> = disk.partitions.iter().map(|p| &p.value).collect();
    if partitions.is_empty() {
        return Err(LayoutError::NoPartitions);
    }
    if table == PartitionTable::Mbr && partitions.len() > 4 {
        return Err(LayoutError::TooManyMbrPartitions {
            count: partitions.len(),
        });
    }
    let rests: Vec<_> = partitions
        .iter()
        .filter(|p| p.size.value == PartitionSize::Rest)
        .collect();
    if let [first, second, ..] = rests.as_slice() {
        return Err(LayoutError::TwoRests {
            first: first.name.to_string(),
            second: second.name.to_string(),
        });
    }
    let rest = rests.first();

    let fit =
        Fit::new(table, partitions.iter().map(|p| p.size.value)).ok_or(LayoutError::Overflow)?;

    let (disk_bytes, rest_bytes) = match disk.size.value {
        DiskSize::Auto => {
            let rest_bytes = match rest {
                Some(partition) => {
                    let name = &partition.name.value;
                    let content = filesystem_bytes.get(name).copied().ok_or_else(|| {
                        LayoutError::RestSizeUnknown {
                            name: name.to_string(),
                        }
                    })?;
                    layout_fit::rest_bytes_for(content).ok_or(LayoutError::Overflow)?
                }
                None => 0,
            };
            let disk_bytes = fit
                .auto_disk_bytes(rest_bytes)
                .ok_or(LayoutError::Overflow)?;
            (disk_bytes, rest_bytes)
        }
        DiskSize::Fixed(size) => {
            let disk_bytes = size.bytes();
            if !disk_bytes.is_multiple_of(SECTOR_BYTES) {
                return Err(LayoutError::NotWholeSectors { disk_bytes });
            }
            let needed_bytes = fit.needed_bytes().ok_or(LayoutError::Overflow)?;
            if needed_bytes > disk_bytes {
                return Err(LayoutError::TooSmall {
                    needed_bytes,
                    disk_bytes,
                });
            }
            (disk_bytes, fit.rest_bytes_on(disk_bytes))
        }
    };

    let mbr_id = ids.u32("mbr disk id");
    let disk_id = match table {
        PartitionTable::Gpt => ids.uuid("gpt disk").to_string(),
        PartitionTable::Mbr => format!("0x{mbr_id:08x}"),
    };
    // The MBR active flag goes where the BIOS bootloader looks for its
    // files: `/boot` when it is a partition of its own, else the root.
    let boot_holder = partitions
        .iter()
        .position(|p| p.mountpoint.as_ref().is_some_and(|m| m.as_str() == "/boot"))
        .or_else(|| {
            partitions
                .iter()
                .position(|p| p.mountpoint.as_ref().is_some_and(|m| m.is_root()))
        });

    let mut placed = Vec::with_capacity(partitions.len());
    let mut start_bytes = ALIGN_BYTES;
    for (position, partition) in partitions.iter().enumerate() {
        let name = partition.name.value.clone();
        let index = u32::try_from(position + 1).map_err(|_| LayoutError::Overflow)?;
        let size_bytes = match partition.size.value {
            PartitionSize::Fixed(size) => {
                layout_fit::align_up(size.bytes()).ok_or(LayoutError::Overflow)?
            }
            PartitionSize::Rest => rest_bytes,
        };
        if let Some(&content) = filesystem_bytes.get(&name)
            && content > size_bytes
        {
            return Err(LayoutError::FilesystemTooLarge {
                name: name.to_string(),
                filesystem_bytes: content,
                partition_bytes: size_bytes,
            });
        }
        let end_bytes = start_bytes
            .checked_add(size_bytes)
            .ok_or(LayoutError::Overflow)?;
        let kind = partition.kind.value;
        let is_root = partition.mountpoint.as_ref().is_some_and(|m| m.is_root());
        let (type_code, part_uuid) = match table {
            PartitionTable::Gpt => (
                TypeCode::Guid(gpt_type(kind, is_root, arch)),
                ids.uuid(&format!("gpt partition {name}")).to_string(),
            ),
            PartitionTable::Mbr => {
                let byte = mbr_type(kind).ok_or_else(|| LayoutError::GptOnly {
                    name: name.to_string(),
                    kind: kind.as_str(),
                })?;
                if end_bytes / SECTOR_BYTES > u64::from(u32::MAX) {
                    return Err(LayoutError::BeyondMbr {
                        name: name.to_string(),
                        end_bytes,
                    });
                }
                (TypeCode::Byte(byte), format!("{mbr_id:08x}-{index:02x}"))
            }
        };
        placed.push(PlacedPartition {
            name,
            index,
            start_bytes,
            size_bytes,
            kind,
            filesystem: partition.effective_filesystem(),
            label: partition.label.as_ref().map(|l| l.value.clone()),
            mountpoint: partition.mountpoint.as_ref().map(|m| m.value.clone()),
            options: partition.options.as_ref().map(|o| o.value.clone()),
            type_code,
            part_uuid,
            bootable: table == PartitionTable::Mbr && boot_holder == Some(position),
        });
        start_bytes = end_bytes;
    }

    Ok(DiskLayout {
        table,
        disk_bytes,
        partitions: placed,
        disk_id,
    })
}

// ---------------------------------------------------------------- table

/// The sfdisk script that writes `layout`'s table: every start, size, type
/// and identifier spelled out, so sfdisk decides nothing itself.
pub fn sfdisk_script(layout: &DiskLayout) -> String {
    let mut script = String::new();
    let label = match layout.table {
        PartitionTable::Gpt => "gpt",
        PartitionTable::Mbr => "dos",
    };
    script.push_str(&format!("label: {label}\n"));
    script.push_str(&format!("label-id: {}\n", layout.disk_id));
    script.push_str("unit: sectors\n");
    if layout.table == PartitionTable::Gpt {
        script.push_str(&format!("first-lba: {}\n", ALIGN_BYTES / SECTOR_BYTES));
    }
    script.push_str(&format!("sector-size: {SECTOR_BYTES}\n\n"));
    for partition in &layout.partitions {
        script.push_str(&format!(
            "start={}, size={}, type={}",
            partition.start_bytes / SECTOR_BYTES,
            partition.size_bytes / SECTOR_BYTES,
            partition.type_code
        ));
        match layout.table {
            PartitionTable::Gpt => script.push_str(&format!(
                ", uuid={}, name=\"{}\"",
                partition.part_uuid, partition.name
            )),
            PartitionTable::Mbr if partition.bootable => script.push_str(", bootable"),
            PartitionTable::Mbr => {}
        }
        script.push('\n');
    }
    script
}

/// Creates the disk image at `path` (sparse, `layout.disk_bytes` long,
/// replacing any file there) and writes its partition table by running
/// `sfdisk` on the file.
pub fn write_table(path: &Path, layout: &DiskLayout) -> Result<(), DiskError> {
    File::create(path)?.set_len(layout.disk_bytes)?;
    run_sfdisk(path, &sfdisk_script(layout))
}

/// Runs `sfdisk` on the image file `path` with `script` on its stdin.
fn run_sfdisk(path: &Path, script: &str) -> Result<(), DiskError> {
    let output = crate::host::command::Program::new("sfdisk", SFDISK_PACKAGE)
        .args([
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "always",
            "--wipe-partitions",
            "always",
        ])
        .arg(path)
        .env("LC_ALL", "C")
        .run_with_input(script.as_bytes())?;
    let code = output.code;
    if code != Some(0) {
        return Err(DiskError::Sfdisk {
            path: path.to_path_buf(),
            code,
            stderr: output.stderr.trim().to_string(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- filling

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Makes `len` bytes at `offset` read as zeros, as a hole where the
/// filesystem can punch one and with written zeros where it cannot.
fn zero_range(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    if len == 0 {
        return Ok(());
    }
    let to_off =
        |v: u64| i64::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let punched = fallocate(
        file,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        to_off(offset)?,
        to_off(len)?,
    );
    match punched {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::ENOSYS) => {
            let zeros = vec![0u8; COPY_CHUNK_BYTES];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(COPY_CHUNK_BYTES as u64);
                // `n` is at most COPY_CHUNK_BYTES, so it fits a usize.
                file.write_all_at(&zeros[..n as usize], offset + done)?;
                done += n;
            }
            Ok(())
        }
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// Copies the filesystem image `filesystem_image` into the disk image
/// `disk` at `part`'s offset, and zeros the rest of the partition.
///
/// The disk stays sparse: each 1 MiB of zeros in the image becomes a hole
/// rather than written blocks. Refuses an image larger than the partition,
/// and a disk file too short for the partition.
pub fn write_partition(
    disk: &Path,
    part: &PlacedPartition,
    filesystem_image: &Path,
) -> Result<(), DiskError> {
    let mut source = File::open(filesystem_image)?;
    let image_bytes = source.metadata()?.len();
    if image_bytes > part.size_bytes {
        return Err(DiskError::ImageTooLarge {
            image: filesystem_image.to_path_buf(),
            image_bytes,
            name: part.name.to_string(),
            partition_bytes: part.size_bytes,
        });
    }
    let target = OpenOptions::new().write(true).open(disk)?;
    let file_bytes = target.metadata()?.len();
    if file_bytes < part.end_bytes() {
        return Err(DiskError::DiskTooShort {
            path: disk.to_path_buf(),
            file_bytes,
            name: part.name.to_string(),
            end_bytes: part.end_bytes(),
        });
    }

    let mut buf = vec![0u8; COPY_CHUNK_BYTES];
    let mut copied: u64 = 0;
    loop {
        let n = read_full(&mut source, &mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let at = part.start_bytes + copied;
        if chunk.iter().all(|&b| b == 0) {
            zero_range(target.file(), at, n as u64).map_err(io_error("write", disk))?;
        } else {
            target.write_all_at(chunk, at)?;
        }
        copied += n as u64;
    }
    // The image may have grown since its size was read; never write past
    // the partition.
    if copied > part.size_bytes {
        return Err(DiskError::ImageTooLarge {
            image: filesystem_image.to_path_buf(),
            image_bytes: copied,
            name: part.name.to_string(),
            partition_bytes: part.size_bytes,
        });
    }
    zero_range(
        target.file(),
        part.start_bytes + copied,
        part.size_bytes - copied,
    )
    .map_err(io_error("write", disk))?;
    Ok(())
}

// ---------------------------------------------------------------- tree

/// The partitions mounted somewhere other than `/`, with their mountpoints.
fn non_root_mounts(layout: &DiskLayout) -> Vec<(&PlacedPartition, &Mountpoint)> {
    layout
        .partitions
        .iter()
        .filter_map(|p| p.mountpoint.as_ref().map(|m| (p, m)))
        .filter(|(_, m)| !m.is_root())
        .collect()
}

fn depth(mountpoint: &Mountpoint) -> usize {
    mountpoint.as_str().matches('/').count()
}

/// The mountpoint's directory under `root`, after checking that no part of
/// the path is a symbolic link (which would be followed on the host, not in
/// the image) or a non-directory. A path that does not exist yet is fine.
fn mountpoint_dir(
    root: &Path,
    part: &PlacedPartition,
    mountpoint: &Mountpoint,
) -> Result<PathBuf, DiskError> {
    let mut path = root.to_path_buf();
    for component in mountpoint.as_str().split('/').filter(|c| !c.is_empty()) {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(DiskError::MountpointIsSymlink {
                    name: part.name.to_string(),
                    mountpoint: mountpoint.to_string(),
                    path,
                });
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(DiskError::MountpointNotDirectory {
                    name: part.name.to_string(),
                    mountpoint: mountpoint.to_string(),
                    path,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(root.join(mountpoint.as_str().trim_start_matches('/')));
            }
            Err(source) => return Err(source.into()),
        }
    }
    Ok(path)
}

/// Moves every entry of `from` into `to` (same filesystem: renames), in
/// name order.
fn move_entries(from: &Path, to: &Path) -> Result<(), DiskError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(from)? {
        names.push(entry?.file_name());
    }
    names.sort();
    for name in names {
        let source = from.join(&name);
        fs::rename(&source, to.join(&name))?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) as a plain 0755 directory.
fn create_mountpoint(dir: &Path) -> Result<(), DiskError> {
    fs::create_dir_all(dir)?;
    Ok(fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(0o755),
    )?)
}

/// Splits the finished tree at `root` by mountpoint.
///
/// For each partition mounted elsewhere than `/`, the contents of
/// `root/<mountpoint>` are moved (renamed: `staging` must be on the same
/// filesystem as `root`) into `staging/<name>/`, which takes the
/// mountpoint's mode and owner; the mountpoint stays behind as an empty
/// directory, created when the tree lacks it. Deeper mountpoints go first,
/// so `/boot/efi`'s files leave `/boot` before `/boot` moves and the boot
/// partition keeps an empty `efi` directory to mount on.
///
/// Every mountpoint is checked before anything moves; one that is or
/// passes through a symbolic link is refused. Returns each partition's
/// directory in disk order. [`unsplit_tree`] puts everything back.
pub fn split_tree(
    root: &Path,
    layout: &DiskLayout,
    staging: &Path,
) -> Result<Vec<(PartitionName, PathBuf)>, DiskError> {
    let mut mounts = non_root_mounts(layout);
    let mut dirs = Vec::with_capacity(mounts.len());
    for (part, mountpoint) in &mounts {
        dirs.push(mountpoint_dir(root, part, mountpoint)?);
        let target = staging.join(part.name.as_str());
        if fs::symlink_metadata(&target).is_ok() {
            return Err(DiskError::StagingExists { path: target });
        }
    }
    fs::create_dir_all(staging)?;

    let mut order: Vec<usize> = (0..mounts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(depth(mounts[i].1)));
    for i in order {
        let (part, _) = mounts[i];
        let dir = &dirs[i];
        let target = staging.join(part.name.as_str());
        fs::create_dir(&target)?;
        if fs::symlink_metadata(dir).is_err() {
            create_mountpoint(dir)?;
        }
        let meta = fs::metadata(dir)?;
        fs::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(
            &target,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777),
        )?;
        move_entries(dir, &target)?;
    }
    mounts.sort_by_key(|(part, _)| part.index);
    Ok(mounts
        .into_iter()
        .map(|(part, _)| (part.name.clone(), staging.join(part.name.as_str())))
        .collect())
}

/// Undoes [`split_tree`]: moves each `staging/<name>/`'s contents back to
/// its mountpoint under `root`, shallowest first, and removes the emptied
/// staging directories (not `staging` itself). Partitions whose staging
/// directory is missing (a split that failed part way) are skipped, so
/// this also repairs a half-split tree.
pub fn unsplit_tree(root: &Path, layout: &DiskLayout, staging: &Path) -> Result<(), DiskError> {
    let mut mounts = non_root_mounts(layout);
    mounts.sort_by_key(|(_, m)| depth(m));
    for (part, mountpoint) in mounts {
        let source = staging.join(part.name.as_str());
        if fs::symlink_metadata(&source).is_err() {
            continue;
        }
        let dir = mountpoint_dir(root, part, mountpoint)?;
        if fs::symlink_metadata(&dir).is_err() {
            create_mountpoint(&dir)?;
        }
        move_entries(&source, &dir)?;
        fs::remove_dir(&source)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::host::walk;
    use crate::manifest::{Source, parse};
    use sha2::{Digest, Sha256};

    const MIB: u64 = 1 << 20;

    fn disk_of(yaml_disk: &str) -> Disk {
        let text =
            format!("name: t\nbase: {{distro: debian, release: bookworm}}\ndisk:\n{yaml_disk}");
        parse(&Source::new("t.yaml", &text))
            .expect("parses")
            .disk
            .value
    }

    fn ids() -> Ids {
        Ids::from_lock_text("lock for disk tests")
    }

    fn sizes(pairs: &[(&str, u64)]) -> BTreeMap<PartitionName, u64> {
        pairs
            .iter()
            .map(|(name, bytes)| (name.parse().unwrap(), *bytes))
            .collect()
    }

    const GPT_EXAMPLE: &str = "  table: gpt\n  size: 400MiB\n  partitions:\n\
        \x20   - {name: bios, type: bios-boot, size: 1MiB}\n\
        \x20   - {name: esp, type: esp, size: 64MiB, mountpoint: /boot/efi, label: EFI}\n\
        \x20   - {name: root, size: 200MiB, mountpoint: /, label: cloudimg-rootfs}\n\
        \x20   - {name: state, size: rest, mountpoint: /var/lib/state}\n";

    const MBR_EXAMPLE: &str = "  table: mbr\n  size: 300MiB\n  partitions:\n\
        \x20   - {name: boot, size: 100MiB, mountpoint: /boot}\n\
        \x20   - {name: swap, type: swap, size: 32MiB}\n\
        \x20   - {name: root, size: rest, mountpoint: /}\n";

    fn gpt_example() -> DiskLayout {
        layout(&disk_of(GPT_EXAMPLE), Arch::Amd64, &ids(), &BTreeMap::new()).unwrap()
    }

    fn mbr_example() -> DiskLayout {
        layout(&disk_of(MBR_EXAMPLE), Arch::Amd64, &ids(), &BTreeMap::new()).unwrap()
    }

    fn places(layout: &DiskLayout) -> Vec<(&str, u32, u64, u64)> {
        layout
            .partitions
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.index,
                    p.start_bytes / MIB,
                    p.size_bytes / MIB,
                )
            })
            .collect()
    }

    #[test]
    fn gpt_partitions_follow_each_other_from_1mib_and_rest_stops_before_the_backup() {
        let layout = gpt_example();
        assert_eq!(layout.disk_bytes, 400 * MIB);
        assert_eq!(
            places(&layout),
            [
                ("bios", 1, 1, 1),
                ("esp", 2, 2, 64),
                ("root", 3, 66, 200),
                ("state", 4, 266, 133)
            ]
        );
        let last = layout.partitions.last().unwrap();
        assert_eq!(last.end_bytes() + GPT_BACKUP_BYTES, layout.disk_bytes);
        let types: Vec<TypeCode> = layout.partitions.iter().map(|p| p.type_code).collect();
        assert_eq!(
            types,
            [
                TypeCode::Guid("21686148-6449-6E6F-744E-656564454649"),
                TypeCode::Guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
                TypeCode::Guid(ROOT_X86_64_GUID),
                TypeCode::Guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
            ]
        );
        assert!(layout.partitions.iter().all(|p| !p.bootable));
        assert_eq!(layout.disk_id, ids().uuid("gpt disk").to_string());
        assert_eq!(
            layout.partition("root").unwrap().part_uuid,
            ids().uuid("gpt partition root").to_string()
        );
        let esp = layout.partition("esp").unwrap();
        assert_eq!(esp.filesystem, Filesystem::Vfat);
        assert_eq!(esp.label.as_ref().map(|l| l.as_str()), Some("EFI"));
        assert_eq!(
            layout.partition("bios").unwrap().filesystem,
            Filesystem::None
        );
    }

    #[test]
    fn the_root_type_follows_the_architecture_and_only_for_linux_at_root() {
        let arm = layout(&disk_of(GPT_EXAMPLE), Arch::Arm64, &ids(), &BTreeMap::new()).unwrap();
        assert_eq!(
            arm.partition("root").unwrap().type_code,
            TypeCode::Guid(ROOT_ARM64_GUID)
        );
        let disk = disk_of(
            "  table: gpt\n  partitions:\n\
             \x20   - {name: root, type: var, size: 8MiB, mountpoint: /}\n\
             \x20   - {name: srv, size: 8MiB, mountpoint: /srv}\n",
        );
        let layout = super::layout(&disk, Arch::Amd64, &ids(), &BTreeMap::new()).unwrap();
        let types: Vec<String> = layout
            .partitions
            .iter()
            .map(|p| p.type_code.to_string())
            .collect();
        assert_eq!(
            types,
            [
                "4D21B016-B534-45C2-A9FB-5C16E091FD2D",
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
            ]
        );
    }

    #[test]
    fn mbr_marks_boot_active_uses_type_bytes_and_ends_at_the_disk_end() {
        let layout = mbr_example();
        assert_eq!(
            places(&layout),
            [
                ("boot", 1, 1, 100),
                ("swap", 2, 101, 32),
                ("root", 3, 133, 167)
            ]
        );
        assert_eq!(layout.partitions[2].end_bytes(), layout.disk_bytes);
        let id = ids().u32("mbr disk id");
        assert_eq!(layout.disk_id, format!("0x{id:08x}"));
        let shown: Vec<(String, bool, String)> = layout
            .partitions
            .iter()
            .map(|p| (p.type_code.to_string(), p.bootable, p.part_uuid.clone()))
            .collect();
        assert_eq!(
            shown,
            [
                ("83".to_string(), true, format!("{id:08x}-01")),
                ("82".to_string(), false, format!("{id:08x}-02")),
                ("83".to_string(), false, format!("{id:08x}-03")),
            ]
        );
        // Without a /boot partition the root is the active one.
        let disk = disk_of(
            "  table: mbr\n  partitions:\n\
             \x20   - {name: esp, type: esp, size: 8MiB, mountpoint: /boot/efi}\n\
             \x20   - {name: root, size: 8MiB, mountpoint: /}\n",
        );
        let layout = super::layout(&disk, Arch::Amd64, &ids(), &BTreeMap::new()).unwrap();
        let flags: Vec<(String, bool)> = layout
            .partitions
            .iter()
            .map(|p| (p.type_code.to_string(), p.bootable))
            .collect();
        assert_eq!(flags, [("ef".to_string(), false), ("83".to_string(), true)]);
        assert_eq!(layout.disk_bytes, 17 * MIB);
    }

    #[test]
    fn an_auto_disk_is_the_sum_with_rest_sized_by_its_filesystem() {
        let disk = disk_of(
            "  table: gpt\n  partitions:\n\
             \x20   - {name: esp, type: esp, size: 64MiB, mountpoint: /boot/efi}\n\
             \x20   - {name: root, size: rest, mountpoint: /}\n",
        );
        let layout = layout(
            &disk,
            Arch::Amd64,
            &ids(),
            &sizes(&[("root", 300 * MIB + 1)]),
        )
        .unwrap();
        assert_eq!(places(&layout), [("esp", 1, 1, 64), ("root", 2, 65, 301)]);
        assert_eq!(layout.disk_bytes, (1 + 64 + 301 + 1) * MIB);

        let err = super::layout(&disk, Arch::Amd64, &ids(), &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "partition `root` takes the rest of an `auto`-sized disk, so the size of its filesystem must be known first"
        );
    }

    #[test]
    fn fixed_sizes_round_up_to_the_alignment() {
        let disk = disk_of(
            "  table: mbr\n  partitions:\n    - {name: root, size: 1025KiB, mountpoint: /}\n",
        );
        let layout = super::layout(&disk, Arch::Amd64, &ids(), &BTreeMap::new()).unwrap();
        assert_eq!(places(&layout), [("root", 1, 1, 2)]);
        assert_eq!(layout.disk_bytes, 3 * MIB);
    }

    #[test]
    fn the_layout_and_the_manifest_checker_agree_on_what_fits() {
        // The same boundary as check.rs's `fixed_sizes_count_alignment_and_gpt_backup`.
        let fits = "  table: gpt\n  size: 1026MiB\n  partitions:\n    - {name: r, size: 1GiB, mountpoint: /}\n";
        let manifest_text =
            format!("name: t\nbase: {{distro: debian, release: bookworm}}\ndisk:\n{fits}");
        let manifest = parse(&Source::new("t.yaml", &manifest_text)).unwrap();
        assert!(crate::manifest::check(&manifest).is_empty());
        assert!(layout(&disk_of(fits), Arch::Amd64, &ids(), &BTreeMap::new()).is_ok());

        let too_small = fits.replace("1026MiB", "1025MiB");
        let err = layout(&disk_of(&too_small), Arch::Amd64, &ids(), &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the partitions need 1026MiB (1075838976 bytes) but the disk is 1025MiB (1074790400 bytes)"
        );

        // A `rest` partition needs at least 1 MiB.
        let with_rest = format!("{fits}    - {{name: s, size: rest}}\n");
        let err = layout(&disk_of(&with_rest), Arch::Amd64, &ids(), &BTreeMap::new()).unwrap_err();
        assert!(matches!(
            err,
            LayoutError::TooSmall {
                needed_bytes,
                ..
            } if needed_bytes == 1027 * MIB
        ));
    }

    #[test]
    fn a_filesystem_larger_than_its_partition_is_refused() {
        let err = layout(
            &disk_of(GPT_EXAMPLE),
            Arch::Amd64,
            &ids(),
            &sizes(&[("root", 200 * MIB + 1)]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the filesystem of partition `root` needs 209715201 bytes but the partition is 200MiB (209715200 bytes)"
        );
        let err = layout(
            &disk_of(GPT_EXAMPLE),
            Arch::Amd64,
            &ids(),
            &sizes(&[("state", 134 * MIB)]),
        )
        .unwrap_err();
        assert!(
            matches!(err, LayoutError::FilesystemTooLarge { partition_bytes, .. } if partition_bytes == 133 * MIB)
        );
    }

    #[test]
    fn what_mbr_cannot_hold_is_refused() {
        let five = (1..=5)
            .map(|i| format!("    - {{name: p{i}, size: 1MiB}}\n"))
            .collect::<String>();
        let err = layout(
            &disk_of(&format!("  table: mbr\n  partitions:\n{five}")),
            Arch::Amd64,
            &ids(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "an MBR disk holds at most 4 primary partitions; this one has 5"
        );

        let err = layout(
            &disk_of(
                "  table: mbr\n  partitions:\n    - {name: bios, type: bios-boot, size: 1MiB}\n",
            ),
            Arch::Amd64,
            &ids(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "partition `bios` of type `bios-boot` needs a GPT disk"
        );

        let err = layout(
            &disk_of("  table: mbr\n  partitions:\n    - {name: big, size: 3TiB, mountpoint: /}\n"),
            Arch::Amd64,
            &ids(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(matches!(err, LayoutError::BeyondMbr { .. }), "{err}");
    }

    #[test]
    fn odd_disks_are_refused() {
        let err = layout(
            &disk_of("  size: 1GiB\n"),
            Arch::Amd64,
            &ids(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err, LayoutError::NoTable);
        let err = layout(
            &disk_of("  table: gpt\n  size: 10000B\n  partitions:\n    - {name: r, size: 1MiB}\n"),
            Arch::Amd64,
            &ids(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the disk size 10000 bytes is not a whole number of 512-byte sectors"
        );
        let err = layout(
            &disk_of("  table: gpt\n  partitions:\n    - {name: a, size: rest}\n    - {name: b, size: rest}\n"),
            Arch::Amd64,
            &ids(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "only one partition can take the rest of the disk; `a` and `b` both do"
        );
    }

    #[test]
    fn the_sfdisk_script_spells_out_everything() {
        let layout = gpt_example();
        let id = |purpose: &str| ids().uuid(purpose).to_string();
        let expected = format!(
            "label: gpt\nlabel-id: {}\nunit: sectors\nfirst-lba: 2048\nsector-size: 512\n\n\
             start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid={}, name=\"bios\"\n\
             start=4096, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid={}, name=\"esp\"\n\
             start=135168, size=409600, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid={}, name=\"root\"\n\
             start=544768, size=272384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid={}, name=\"state\"\n",
            id("gpt disk"),
            id("gpt partition bios"),
            id("gpt partition esp"),
            id("gpt partition root"),
            id("gpt partition state"),
        );
        assert_eq!(sfdisk_script(&layout), expected);

        let mbr = mbr_example();
        let expected = format!(
            "label: dos\nlabel-id: 0x{:08x}\nunit: sectors\nsector-size: 512\n\n\
             start=2048, size=204800, type=83, bootable\n\
             start=206848, size=65536, type=82\n\
             start=272384, size=342016, type=83\n",
            ids().u32("mbr disk id")
        );
        assert_eq!(sfdisk_script(&mbr), expected);
    }

    // ------------------------------------------------------------ with tools

    /// Runs a host tool the test needs; a missing tool fails the test.
    fn tool(program: &str, args: &[&str]) -> String {
        let output = std::process::Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("this test needs `{program}` on the host: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn sha256(path: &Path) -> String {
        hex::encode(Sha256::digest(fs::read(path).unwrap()))
    }

    fn sfdisk_json(path: &Path) -> serde_json::Value {
        let text = tool("sfdisk", &["--json", path.to_str().unwrap()]);
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["partitiontable"].clone()
    }

    #[test]
    fn a_gpt_disk_written_by_sfdisk_reads_back_as_laid_out_and_twice_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let layout = gpt_example();
        let first = dir.path().join("a.raw");
        let second = dir.path().join("b.raw");
        write_table(&first, &layout).unwrap();
        write_table(&second, &layout).unwrap();
        assert_eq!(sha256(&first), sha256(&second));
        assert_eq!(fs::metadata(&first).unwrap().len(), 400 * MIB);

        let table = sfdisk_json(&first);
        assert_eq!(table["label"], "gpt");
        assert_eq!(
            table["id"].as_str().unwrap().to_lowercase(),
            ids().uuid("gpt disk").to_string()
        );
        assert_eq!(table["firstlba"], 2048);
        let parts = table["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 4);
        for (json, placed) in parts.iter().zip(&layout.partitions) {
            assert_eq!(json["start"].as_u64().unwrap(), placed.start_bytes / 512);
            assert_eq!(json["start"].as_u64().unwrap() % 2048, 0);
            assert_eq!(json["size"].as_u64().unwrap(), placed.size_bytes / 512);
            assert_eq!(json["type"].as_str().unwrap(), placed.type_code.to_string());
            assert_eq!(
                json["uuid"].as_str().unwrap().to_lowercase(),
                ids()
                    .uuid(&format!("gpt partition {}", placed.name))
                    .to_string()
            );
            assert_eq!(json["name"].as_str().unwrap(), placed.name.as_str());
        }
        let sizes: Vec<u64> = parts.iter().map(|p| p["size"].as_u64().unwrap()).collect();
        assert_eq!(sizes, [2048, 131072, 409600, 272384]);

        // partx reads the table with libblkid, independently of sfdisk.
        let shown = tool(
            "partx",
            &[
                "--show",
                "--noheadings",
                "--output",
                "NR,START,SECTORS,NAME,UUID",
                first.to_str().unwrap(),
            ],
        );
        let rows: Vec<Vec<String>> = shown
            .lines()
            .map(|l| l.split_whitespace().map(str::to_lowercase).collect())
            .collect();
        let expected: Vec<Vec<String>> = layout
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.index.to_string(),
                    (p.start_bytes / 512).to_string(),
                    (p.size_bytes / 512).to_string(),
                    p.name.to_string(),
                    p.part_uuid.clone(),
                ]
            })
            .collect();
        assert_eq!(rows, expected);

        // Another lock, other identifiers, other bytes.
        let other = layout_with_ids(GPT_EXAMPLE, &Ids::from_lock_text("another lock"));
        write_table(&second, &other).unwrap();
        assert_ne!(sha256(&first), sha256(&second));
    }

    fn layout_with_ids(yaml: &str, ids: &Ids) -> DiskLayout {
        layout(&disk_of(yaml), Arch::Amd64, ids, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn an_mbr_disk_written_by_sfdisk_reads_back_as_laid_out_and_twice_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let layout = mbr_example();
        let first = dir.path().join("a.raw");
        let second = dir.path().join("b.raw");
        write_table(&first, &layout).unwrap();
        write_table(&second, &layout).unwrap();
        assert_eq!(sha256(&first), sha256(&second));

        let table = sfdisk_json(&first);
        assert_eq!(table["label"], "dos");
        assert_eq!(table["id"].as_str().unwrap(), layout.disk_id);
        let parts = table["partitions"].as_array().unwrap();
        let seen: Vec<(u64, u64, String, bool)> = parts
            .iter()
            .map(|p| {
                (
                    p["start"].as_u64().unwrap(),
                    p["size"].as_u64().unwrap(),
                    p["type"].as_str().unwrap().to_string(),
                    p["bootable"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (2048, 204800, "83".to_string(), true),
                (206848, 65536, "82".to_string(), false),
                (272384, 342016, "83".to_string(), false),
            ]
        );
        let shown = tool(
            "partx",
            &[
                "--show",
                "--noheadings",
                "--output",
                "NR,START,SECTORS,UUID",
                first.to_str().unwrap(),
            ],
        );
        let uuids: Vec<String> = shown
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect();
        let expected: Vec<String> = layout
            .partitions
            .iter()
            .map(|p| p.part_uuid.clone())
            .collect();
        assert_eq!(uuids, expected);
    }

    #[test]
    fn an_ext4_filesystem_written_into_a_partition_is_intact_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        fs::create_dir(&content).unwrap();
        fs::write(content.join("hello.txt"), "hello from kiln\n").unwrap();
        let image = dir.path().join("root.ext4");
        tool(
            "mke2fs",
            &[
                "-q",
                "-t",
                "ext4",
                "-F",
                "-d",
                content.to_str().unwrap(),
                image.to_str().unwrap(),
                "16M",
            ],
        );

        let layout = gpt_example();
        let disk = dir.path().join("disk.raw");
        write_table(&disk, &layout).unwrap();
        let root = layout.partition("root").unwrap();
        write_partition(&disk, root, &image).unwrap();

        // The disk stays sparse: at most the filesystem's 16 MiB and the
        // tables are allocated out of 400 MiB.
        let allocated = fs::metadata(&disk).unwrap().blocks() * 512;
        assert!(allocated <= 18 * MIB, "{allocated} bytes allocated");

        let copy = dir.path().join("copy.ext4");
        tool(
            "dd",
            &[
                &format!("if={}", disk.display()),
                &format!("of={}", copy.display()),
                "bs=1M",
                &format!("skip={}", root.start_bytes / MIB),
                "count=16",
                "status=none",
            ],
        );
        assert_eq!(sha256(&copy), sha256(&image));
        tool("e2fsck", &["-fn", copy.to_str().unwrap()]);
        let cat = tool("debugfs", &["-R", "cat /hello.txt", copy.to_str().unwrap()]);
        assert_eq!(cat, "hello from kiln\n");

        // The table is untouched.
        assert_eq!(
            sfdisk_json(&disk)["partitions"].as_array().unwrap().len(),
            4
        );
    }

    #[test]
    fn writing_a_partition_replaces_what_was_there_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = gpt_example();
        let esp = layout.partition("esp").unwrap();
        let disk = dir.path().join("disk.raw");
        write_table(&disk, &layout).unwrap();

        let full = dir.path().join("full.img");
        fs::write(&full, vec![0xffu8; (64 * MIB) as usize]).unwrap();
        write_partition(&disk, esp, &full).unwrap();

        // A 40 MiB image with data in its first and 30th MiB only.
        let sparse = dir.path().join("sparse.img");
        let file = File::create(&sparse).unwrap();
        file.set_len(40 * MIB).unwrap();
        file.write_all_at(b"first", 0).unwrap();
        file.write_all_at(b"thirtieth", 29 * MIB + 7).unwrap();
        drop(file);
        write_partition(&disk, esp, &sparse).unwrap();

        let bytes = fs::read(&disk).unwrap();
        let region = &bytes[esp.start_bytes as usize..esp.end_bytes() as usize];
        let mut expected = vec![0u8; (64 * MIB) as usize];
        expected[..5].copy_from_slice(b"first");
        expected[(29 * MIB + 7) as usize..(29 * MIB + 16) as usize].copy_from_slice(b"thirtieth");
        assert!(region == expected.as_slice(), "partition bytes differ");
        // Neighbours untouched: the bios-boot and root partitions are zero.
        assert!(
            bytes[MIB as usize..esp.start_bytes as usize]
                .iter()
                .all(|&b| b == 0)
        );
        let root = layout.partition("root").unwrap();
        assert!(
            bytes[root.start_bytes as usize..root.end_bytes() as usize]
                .iter()
                .all(|&b| b == 0)
        );

        let allocated = fs::metadata(&disk).unwrap().blocks() * 512;
        assert!(allocated <= 4 * MIB, "{allocated} bytes allocated");
    }

    #[test]
    fn an_image_larger_than_its_partition_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = gpt_example();
        let bios = layout.partition("bios").unwrap();
        let disk = dir.path().join("disk.raw");
        write_table(&disk, &layout).unwrap();
        let before = sha256(&disk);
        let big = dir.path().join("big.img");
        File::create(&big).unwrap().set_len(MIB + 1).unwrap();
        let err = write_partition(&disk, bios, &big).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the filesystem image {} is 1048577 bytes, larger than partition `bios` (1048576 bytes)",
                big.display()
            )
        );
        assert_eq!(sha256(&disk), before);
    }

    // ------------------------------------------------------------ tree

    const NESTED: &str = "  table: gpt\n  partitions:\n\
        \x20   - {name: esp, type: esp, size: 8MiB, mountpoint: /boot/efi}\n\
        \x20   - {name: boot, size: 8MiB, mountpoint: /boot}\n\
        \x20   - {name: root, size: 8MiB, mountpoint: /}\n\
        \x20   - {name: state, size: 8MiB, mountpoint: /var/lib/state}\n\
        \x20   - {name: srv, size: 8MiB, mountpoint: /srv/data}\n";

    /// Every path under `dir` with its file contents (`/` for a directory,
    /// `-> target` for a symbolic link) and mode, sorted.
    fn listing(dir: &Path) -> Vec<(String, String, u32)> {
        let mut out = Vec::new();
        for entry in walk::tree(dir).min_depth(1) {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = walk::relative(&entry, dir).display().to_string();
            let meta = entry.metadata().unwrap();
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(path).unwrap().display().to_string();
                out.push((rel, format!("-> {target}"), 0));
            } else if meta.is_dir() {
                out.push((rel, "/".to_string(), mode));
            } else {
                out.push((rel, fs::read_to_string(path).unwrap(), mode));
            }
        }
        out.sort();
        out
    }

    fn make_tree(root: &Path) {
        for dir in ["boot/efi/EFI/BOOT", "etc", "var/lib/state/db", "srv"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::write(root.join("boot/vmlinuz"), "kernel").unwrap();
        fs::write(root.join("boot/efi/EFI/BOOT/BOOTX64.EFI"), "shim").unwrap();
        fs::write(root.join("etc/hostname"), "kiln").unwrap();
        fs::write(root.join("var/lib/state/db/data"), "state").unwrap();
        fs::set_permissions(
            root.join("boot/efi"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn splitting_moves_each_mountpoint_into_its_own_directory_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let staging = dir.path().join("staging");
        make_tree(&root);
        let before = listing(&root);
        let layout = layout_with_ids(NESTED, &ids());

        let split = split_tree(&root, &layout, &staging).unwrap();
        let shown: Vec<(String, PathBuf)> = split
            .iter()
            .map(|(name, path)| (name.to_string(), path.clone()))
            .collect();
        assert_eq!(
            shown,
            [
                ("esp".to_string(), staging.join("esp")),
                ("boot".to_string(), staging.join("boot")),
                ("state".to_string(), staging.join("state")),
                ("srv".to_string(), staging.join("srv")),
            ]
        );
        // The root keeps empty mountpoints, created where missing.
        assert_eq!(names(&root.join("boot")), Vec::<String>::new());
        assert_eq!(names(&root.join("var/lib/state")), Vec::<String>::new());
        assert_eq!(names(&root.join("srv/data")), Vec::<String>::new());
        assert_eq!(names(&root.join("etc")), ["hostname"]);
        // /boot keeps an empty `efi` to mount the ESP on.
        assert_eq!(names(&staging.join("boot")), ["efi", "vmlinuz"]);
        assert_eq!(names(&staging.join("boot/efi")), Vec::<String>::new());
        assert_eq!(
            fs::read_to_string(staging.join("esp/EFI/BOOT/BOOTX64.EFI")).unwrap(),
            "shim"
        );
        assert_eq!(
            fs::read_to_string(staging.join("state/db/data")).unwrap(),
            "state"
        );
        // The partition's top directory takes the mountpoint's mode.
        assert_eq!(
            fs::metadata(staging.join("esp")).unwrap().mode() & 0o7777,
            0o700
        );
        assert_eq!(
            fs::metadata(staging.join("srv")).unwrap().mode() & 0o7777,
            0o755
        );

        unsplit_tree(&root, &layout, &staging).unwrap();
        let mut after = listing(&root);
        // The one thing left behind: the created `/srv/data` mountpoint.
        after.retain(|(path, _, _)| path != "srv/data");
        assert_eq!(after, before);
        assert_eq!(names(&staging), Vec::<String>::new());
    }

    #[test]
    fn a_mountpoint_through_a_symlink_is_refused_before_anything_moves() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        let staging = dir.path().join("staging");
        make_tree(&root);
        fs::create_dir_all(outside.join("lib/state")).unwrap();
        fs::write(outside.join("lib/state/host-file"), "host").unwrap();
        fs::remove_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("var")).unwrap();
        let before = listing(&root);
        let layout = layout_with_ids(NESTED, &ids());

        let err = split_tree(&root, &layout, &staging).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "mountpoint `/var/lib/state` of partition `state` goes through the symbolic link {}, which may lead outside the tree",
                root.join("var").display()
            )
        );
        assert_eq!(listing(&root), before);
        assert_eq!(names(&outside.join("lib/state")), ["host-file"]);
        assert!(!staging.exists());

        // A mountpoint that is a file is refused too.
        fs::remove_file(root.join("var")).unwrap();
        fs::create_dir_all(root.join("var/lib")).unwrap();
        fs::write(root.join("var/lib/state"), "not a dir").unwrap();
        let err = split_tree(&root, &layout, &staging).unwrap_err();
        assert!(
            matches!(err, DiskError::MountpointNotDirectory { .. }),
            "{err}"
        );
    }

    #[test]
    fn an_existing_staging_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let staging = dir.path().join("staging");
        make_tree(&root);
        fs::create_dir_all(staging.join("boot")).unwrap();
        let err = split_tree(&root, &layout_with_ids(NESTED, &ids()), &staging).unwrap_err();
        assert!(matches!(err, DiskError::StagingExists { .. }), "{err}");
        assert_eq!(names(&root.join("boot")), ["efi", "vmlinuz"]);
    }
}

//! Taking the root tree out of an image file: a qcow2 or raw disk, a raw
//! filesystem, a tarball or a squashfs, told apart by their first bytes.
//!
//! Disks are read the way a person at a root shell would: `qemu-img
//! convert` makes a qcow2 raw (no `qemu-nbd`: it needs the nbd module,
//! which build hosts often lack), `sfdisk --json` reads the partition
//! table, `blkid -p` probes each partition in place (`--offset`/`--size`,
//! no loop device), and the chosen filesystem is attached read-only with
//! `losetup --offset --sizelimit` (no partition scanning: the kernel may
//! have no partition-table parsers) and mounted read-only without journal
//! replay, so the cached image is never written. The tree is copied out
//! with `tar --create | tar --extract`, which keeps ownership, modes,
//! xattrs (SELinux labels, file capabilities), ACLs, hardlinks, device
//! nodes, holes and timestamps, and measured fastest of `cp -a`,
//! `tar | tar` and `rsync -aHAX` (see [`run_tar_copy`] and
//! `benches/extract.rs`).
//!
//! Every loop device and mount is a guard. A loop device is detached as
//! soon as its filesystem is mounted, which makes the kernel free it when
//! the mount goes, so even a `kill -9` leaves nothing behind: the build's
//! private mount namespace (entered before this runs, see
//! [`crate::chroot::namespace`]) takes the mount with it.
//!
//! The root filesystem of a disk is chosen by its GPT type (the
//! Discoverable Partitions root type of the architecture), else by a
//! well-known label (`cloudimg-rootfs`, `root`, ...), else as the largest
//! Linux filesystem; the first candidate holding an `os-release` wins. On
//! btrfs the subvolume holding `etc/os-release` is the root (Fedora's
//! `root`), and the subvolumes and partitions the image's own `etc/fstab`
//! mounts below `/` (`home`, `var`, a separate `/boot`) are copied in at
//! their mount points.

use std::io::{Read as _, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use fs_err as fs;
use nix::mount::MsFlags;

use crate::chroot::ChrootError;
use crate::chroot::mounts::Mount;
use crate::host::command::{CommandError, Program};
use crate::host::walk;
use crate::manifest::Arch;

/// What kind of file an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A qcow2 disk image.
    Qcow2,
    /// A raw disk with a partition table.
    RawDisk,
    /// A raw filesystem image.
    RawFilesystem,
    /// A tarball, compressed or not.
    Tar,
    /// A squashfs filesystem.
    Squashfs,
}

impl ImageFormat {
    /// The format's name, for the log and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::RawDisk => "raw-disk",
            ImageFormat::RawFilesystem => "raw-filesystem",
            ImageFormat::Tar => "tar",
            ImageFormat::Squashfs => "squashfs",
        }
    }
}

/// What [`extract`] did.
#[derive(Debug)]
pub struct Extracted {
    /// The image's format.
    pub format: ImageFormat,
    /// Where the root filesystem was found, for the log and the report
    /// (such as `ext4 on partition 1 (label cloudimg-rootfs)`).
    pub root_filesystem: String,
    /// What else was copied in at its mount point from the image's
    /// `etc/fstab` (such as `/home: btrfs subvolume home`), in order.
    pub grafted: Vec<String>,
    /// How long each step took, for `--timings`.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Why an image's tree could not be taken out.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The file is none of the formats kiln reads.
    #[error(
        "{path} is not an image kiln can read: it looks like {looks_like} \
         (kiln reads qcow2 and raw disks, raw ext2/3/4, xfs and btrfs \
         filesystems, tarballs and squashfs)"
    )]
    NotAnImage {
        /// The file.
        path: String,
        /// What the file looks like instead (`an HTML page`, ...).
        looks_like: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A host program could not be run.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A host program failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
    /// A host program's output could not be understood.
    #[error("cannot read the output of `{command}`: {reason}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] ChrootError),
    /// No partition of the disk holds a root filesystem.
    #[error("{image} has no root filesystem kiln can read; its partitions:\n{partitions}")]
    NoRoot {
        /// The image.
        image: String,
        /// One line per partition: its type and what is on it.
        partitions: String,
    },
    /// The root is a logical volume.
    #[error(
        "the root of {image} is on LVM, which kiln does not read; its partitions:\n{partitions}"
    )]
    Lvm {
        /// The image.
        image: String,
        /// One line per partition.
        partitions: String,
    },
    /// The tree has no program to tell its architecture by.
    #[error(
        "cannot tell the architecture of the tree taken out of {image}: \
         it has neither usr/bin/env nor bin/sh"
    )]
    NoProgram {
        /// The image.
        image: String,
    },
    /// The image is for another architecture.
    #[error("{image} is an image for {found}, but the manifest asks for {wanted}")]
    WrongArch {
        /// The image.
        image: String,
        /// The manifest's architecture.
        wanted: &'static str,
        /// The architecture of the image's programs.
        found: String,
    },
    /// An fstab mount point would write outside the tree.
    #[error("the image's etc/fstab mounts {mount_point}, which leaves the tree: refusing it")]
    OutsideTree {
        /// The mount point as fstab gives it.
        mount_point: String,
    },
}

/// How many bytes [`detect`] reads: enough for btrfs's superblock at
/// 64 KiB.
const HEAD_BYTES: usize = 0x10100;

/// The format of the file at `path`, by its first bytes.
pub fn detect(path: &Path) -> Result<ImageFormat, ExtractError> {
    let head = read_head(path)?;
    classify(&head, &|| decompressed_head(path)).map_err(|looks_like| ExtractError::NotAnImage {
        path: path.display().to_string(),
        looks_like,
    })
}

fn read_head(path: &Path) -> Result<Vec<u8>, ExtractError> {
    let io = |source| ExtractError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    file.take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(head)
}

/// The first bytes of a compressed file, decompressed (empty when the
/// stream is not one of gzip, xz or zstd, or broken).
fn decompressed_head(path: &Path) -> Vec<u8> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut magic = [0u8; 4];
    let mut peek = std::io::BufReader::new(file);
    let reader: Box<dyn std::io::Read> = match std::io::BufRead::fill_buf(&mut peek) {
        Ok(bytes) if bytes.len() >= 4 => {
            magic.copy_from_slice(&bytes[..4]);
            match magic {
                [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(peek)),
                [0xfd, b'7', b'z', b'X'] => Box::new(liblzma::bufread::XzDecoder::new(peek)),
                [0x28, 0xb5, 0x2f, 0xfd] => match zstd::stream::read::Decoder::with_buffer(peek) {
                    Ok(decoder) => Box::new(decoder),
                    Err(_) => return Vec::new(),
                },
                _ => return Vec::new(),
            }
        }
        _ => return Vec::new(),
    };
    let mut head = Vec::new();
    let _ = reader.take(4096).read_to_end(&mut head);
    head
}

fn at(head: &[u8], offset: usize, magic: &[u8]) -> bool {
    head.get(offset..offset + magic.len()) == Some(magic)
}

/// The format of a file starting with `head`, or what it looks like
/// instead. `decompressed` gives the start of a compressed file's content.
fn classify(head: &[u8], decompressed: &dyn Fn() -> Vec<u8>) -> Result<ImageFormat, String> {
    if head.is_empty() {
        return Err("an empty file".to_string());
    }
    if at(head, 0, b"QFI\xfb") {
        return Ok(ImageFormat::Qcow2);
    }
    if at(head, 0, b"hsqs") {
        return Ok(ImageFormat::Squashfs);
    }
    let compression = if at(head, 0, &[0x1f, 0x8b]) {
        Some("gzip")
    } else if at(head, 0, &[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if at(head, 0, &[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if at(head, 0, b"BZh") {
        return Err(
            "a bzip2-compressed file (kiln reads tarballs compressed with gzip, xz or zstd)"
                .to_string(),
        );
    } else {
        None
    };
    if let Some(compression) = compression {
        let inner = decompressed();
        if at(&inner, 257, b"ustar") {
            return Ok(ImageFormat::Tar);
        }
        return Err(format!(
            "a {compression}-compressed file that is not a tarball \
             (a compressed disk image? decompress it first)"
        ));
    }
    if at(head, 257, b"ustar") {
        return Ok(ImageFormat::Tar);
    }
    if at(head, 0x8001, b"CD001") {
        return Err("an ISO 9660 image (an installer or live CD, not a disk image)".to_string());
    }
    if at(head, 512, b"EFI PART") || at(head, 4096, b"EFI PART") {
        return Ok(ImageFormat::RawDisk);
    }
    if at(head, 1080, &[0x53, 0xef]) || at(head, 0, b"XFSB") || at(head, 0x10040, b"_BHRfS_M") {
        return Ok(ImageFormat::RawFilesystem);
    }
    if let Some(other) = other_format(head) {
        return Err(other.to_string());
    }
    if at(head, 510, &[0x55, 0xaa]) && has_mbr_partition(head) {
        return Ok(ImageFormat::RawDisk);
    }
    Err(looks_like(head))
}

/// Formats kiln recognises only to name them in an error.
fn other_format(head: &[u8]) -> Option<&'static str> {
    let known: &[(usize, &[u8], &str)] = &[
        (0, b"LUKS\xba\xbe", "a LUKS-encrypted volume"),
        (
            512,
            b"LABELONE",
            "an LVM physical volume (kiln does not read LVM)",
        ),
        (4086, b"SWAPSPACE2", "a swap area"),
        (3, b"NTFS    ", "an NTFS filesystem"),
        (82, b"FAT32", "a FAT filesystem (an EFI system partition?)"),
        (54, b"FAT1", "a FAT filesystem (an EFI system partition?)"),
        (0, b"KDMV", "a VMDK disk (convert it to qcow2 or raw first)"),
        (0, b"# Disk DescriptorFile", "a VMDK descriptor"),
        (
            0,
            b"vhdxfile",
            "a VHDX disk (convert it to qcow2 or raw first)",
        ),
        (
            0,
            b"conectix",
            "a VHD disk (convert it to qcow2 or raw first)",
        ),
        (
            0,
            b"<<< ",
            "a VirtualBox VDI disk (convert it to qcow2 or raw first)",
        ),
        (0, b"\x7fELF", "an ELF program"),
        (0, b"PK\x03\x04", "a zip archive"),
        (0, b"%PDF", "a PDF document"),
        (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
        (
            0,
            b"-----BEGIN PGP",
            "a PGP-armoured file (a signature or key?)",
        ),
    ];
    known
        .iter()
        .find(|(offset, magic, _)| at(head, *offset, magic))
        .map(|(_, _, what)| *what)
}

/// Whether an MBR's four entries hold at least one plausible partition.
fn has_mbr_partition(head: &[u8]) -> bool {
    (0..4).any(|index| {
        let entry = 446 + 16 * index;
        let (Some(&status), Some(&kind)) = (head.get(entry), head.get(entry + 4)) else {
            return false;
        };
        let sectors = head
            .get(entry + 12..entry + 16)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        (status == 0 || status == 0x80) && kind != 0 && sectors != 0
    })
}

/// A description of a file of no known format.
fn looks_like(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") || lower.contains("<html")
    {
        return "an HTML page (the URL gave a web page, perhaps an error or a download page)"
            .to_string();
    }
    if lower.starts_with("<?xml") {
        return "an XML document".to_string();
    }
    if head.iter().all(|&b| b == 0) {
        return format!(
            "zeros (its first {} KiB are all zero: no partition table or filesystem)",
            head.len() / 1024
        );
    }
    if std::str::from_utf8(head).is_ok() || head.iter().take(512).all(|&b| b >= 0x09 && b != 0x7f) {
        let first_line: String = trimmed
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        return format!("a text file starting {first_line:?}");
    }
    let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("unknown data (first bytes {})", shown.join(" "))
}

/// Copies the root tree of `image` into `root` (an empty directory),
/// using `work` for scratch files and mount points. Must run inside the
/// build's private mount namespace.
pub fn extract(
    image: &Path,
    root: &Path,
    work: &Path,
    arch: Arch,
    log: &mut dyn Write,
) -> Result<Extracted, ExtractError> {
    let format = detect(image)?;
    let mut extracted = Extracted {
        format,
        root_filesystem: String::new(),
        grafted: Vec::new(),
        timings: Vec::new(),
    };
    let _ = writeln!(log, "extract: {} is a {}", image.display(), format.as_str());
    match format {
        ImageFormat::Tar => {
            let started = Instant::now();
            run_tar_extract(image, root)?;
            extracted.timings.push(("unpack", started.elapsed()));
            extracted.root_filesystem = "tarball".to_string();
        }
        ImageFormat::Squashfs => {
            let started = Instant::now();
            run_unsquashfs(image, root)?;
            extracted.timings.push(("unpack", started.elapsed()));
            extracted.root_filesystem = "squashfs".to_string();
        }
        ImageFormat::Qcow2 => {
            let raw = work.join("image.raw");
            let started = Instant::now();
            run_qemu_img_convert(image, &raw)?;
            extracted.timings.push(("convert", started.elapsed()));
            let _ = writeln!(
                log,
                "extract: converted to raw in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let result = match detect(&raw) {
                Ok(ImageFormat::RawDisk) => copy_from_disk(&raw, root, work, arch, &mut extracted),
                Ok(ImageFormat::RawFilesystem) => {
                    copy_from_filesystem(&raw, root, work, &mut extracted)
                }
                Ok(other) => Err(ExtractError::NotAnImage {
                    path: image.display().to_string(),
                    looks_like: format!("a qcow2 disk holding a {}", other.as_str()),
                }),
                Err(ExtractError::NotAnImage { looks_like, .. }) => Err(ExtractError::NotAnImage {
                    path: image.display().to_string(),
                    looks_like: format!("a qcow2 disk holding {looks_like}"),
                }),
                Err(error) => Err(error),
            };
            let _ = fs::remove_file(&raw);
            result.map_err(|error| rename_image(error, &raw, image))?;
        }
        ImageFormat::RawDisk => copy_from_disk(image, root, work, arch, &mut extracted)?,
        ImageFormat::RawFilesystem => copy_from_filesystem(image, root, work, &mut extracted)?,
    }
    for (what, took) in &extracted.timings {
        let _ = writeln!(log, "extract: {what} {:.2} s", took.as_secs_f64());
    }
    let started = Instant::now();
    check_arch(root, image, arch)?;
    extracted.timings.push(("check-arch", started.elapsed()));
    let _ = writeln!(
        log,
        "extract: root from {}{}",
        extracted.root_filesystem,
        if extracted.grafted.is_empty() {
            String::new()
        } else {
            format!(", with {}", extracted.grafted.join(", "))
        }
    );
    Ok(extracted)
}

/// Errors about the converted raw file name the qcow2 the user gave.
fn rename_image(error: ExtractError, raw: &Path, image: &Path) -> ExtractError {
    let raw = raw.display().to_string();
    let image = image.display().to_string();
    match error {
        ExtractError::NoRoot {
            image: name,
            partitions,
        } if name == raw => ExtractError::NoRoot { image, partitions },
        ExtractError::Lvm {
            image: name,
            partitions,
        } if name == raw => ExtractError::Lvm { image, partitions },
        other => other,
    }
}

/// Runs `program` with `args` and fails unless it exits 0.
fn run_checked(program: &mut Program, shown: &str) -> Result<Vec<u8>, ExtractError> {
    let finished = program.run()?;
    if finished.success() {
        Ok(finished.stdout)
    } else {
        Err(ExtractError::Failed {
            command: shown.to_string(),
            stderr: finished.stderr.trim().to_string(),
        })
    }
}

fn display_command(program: &str, args: &[&std::ffi::OsStr]) -> String {
    let mut shown = program.to_string();
    for arg in args {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

fn run_tool(
    program: &str,
    package: &str,
    args: &[&std::ffi::OsStr],
) -> Result<Vec<u8>, ExtractError> {
    run_checked(
        Program::new(program, package).args(args),
        &display_command(program, args),
    )
}

/// Unpacks a tarball (compressed or not: GNU tar recognises the
/// compression) with host `tar`, keeping xattrs, ACLs, numeric owners and
/// modes.
fn run_tar_extract(image: &Path, root: &Path) -> Result<(), ExtractError> {
    let mut tar = Program::new("tar", "tar");
    tar.arg("--extract")
        .arg("--file")
        .arg(image)
        .arg("--directory")
        .arg(root)
        .args(TAR_COPY_OPTIONS)
        .args(["--same-owner", "--preserve-permissions"]);
    let shown = format!(
        "tar --extract --file {} --directory {} {}",
        image.display(),
        root.display(),
        TAR_COPY_OPTIONS.join(" ")
    );
    run_checked(&mut tar, &shown)?;
    Ok(())
}

/// Unpacks a squashfs with `unsquashfs` (which keeps xattrs and owners
/// as root) into the existing `root`.
fn run_unsquashfs(image: &Path, root: &Path) -> Result<(), ExtractError> {
    run_tool(
        "unsquashfs",
        "squashfs-tools",
        &[
            "-no-progress".as_ref(),
            "-force".as_ref(),
            "-dest".as_ref(),
            root.as_os_str(),
            image.as_os_str(),
        ],
    )?;
    Ok(())
}

/// Converts a qcow2 to a raw file with `qemu-img convert`, writing out of
/// order (`-W`), which the raw output allows.
fn run_qemu_img_convert(image: &Path, raw: &Path) -> Result<(), ExtractError> {
    run_tool(
        "qemu-img",
        "qemu-utils",
        &[
            "convert".as_ref(),
            "-W".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            image.as_os_str(),
            raw.as_os_str(),
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Partitions and filesystems

/// The Discoverable Partitions root type for x86-64.
const GPT_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// The Discoverable Partitions root type for aarch64.
const GPT_ROOT_AARCH64: &str = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE";

/// Labels cloud images give their root filesystem.
const ROOT_LABELS: &[&str] = &["cloudimg-rootfs", "img-rootfs", "rootfs", "root"];

/// Filesystems kiln mounts to read a tree from.
const LINUX_FILESYSTEMS: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs"];

/// One partition of a disk (or a whole raw filesystem), with what
/// `blkid` found on it.
#[derive(Debug, Clone, Default)]
struct Volume {
    /// 1-based partition number; 0 for a whole-file filesystem.
    number: usize,
    offset_bytes: u64,
    size_bytes: u64,
    /// The partition type: a GPT GUID (upper case) or an MBR hex code.
    type_id: String,
    partuuid: Option<String>,
    partlabel: Option<String>,
    /// blkid's TYPE, LABEL and UUID.
    fstype: Option<String>,
    label: Option<String>,
    uuid: Option<String>,
}

impl Volume {
    fn is_linux_filesystem(&self) -> bool {
        self.fstype
            .as_deref()
            .is_some_and(|fstype| LINUX_FILESYSTEMS.contains(&fstype))
    }

    /// Such as `ext4 on partition 1 (label cloudimg-rootfs)`.
    fn describe(&self) -> String {
        let fstype = self.fstype.as_deref().unwrap_or("unknown");
        let place = if self.number == 0 {
            "the whole image".to_string()
        } else {
            format!("partition {}", self.number)
        };
        match &self.label {
            Some(label) => format!("{fstype} on {place} (label {label})"),
            None => format!("{fstype} on {place}"),
        }
    }

    /// One line for an error listing a disk's partitions.
    fn summary(&self) -> String {
        let found = match (&self.fstype, &self.label) {
            (Some(fstype), Some(label)) => format!("{fstype} labelled {label}"),
            (Some(fstype), None) => fstype.clone(),
            (None, _) => "no filesystem blkid knows".to_string(),
        };
        format!(
            "  partition {}: {}, {} MiB: {found}",
            self.number,
            partition_type_name(&self.type_id),
            self.size_bytes / (1024 * 1024)
        )
    }
}

fn partition_type_name(type_id: &str) -> String {
    let name = match type_id.to_ascii_uppercase().as_str() {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" | "EF" => "EFI system",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" | "83" => "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" | "82" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" | "8E" => "Linux LVM",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" | "EA" => "Linux extended boot",
        GPT_ROOT_X86_64 => "Linux root (x86-64)",
        GPT_ROOT_AARCH64 => "Linux root (aarch64)",
        "B" | "C" | "E" => "FAT",
        "5" | "F" => "extended",
        _ => return format!("type {type_id}"),
    };
    name.to_string()
}

fn arch_root_type(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => GPT_ROOT_X86_64,
        Arch::Arm64 => GPT_ROOT_AARCH64,
    }
}

/// The partitions of the disk `image`, read with `sfdisk --json` and
/// probed with `blkid -p`.
fn read_partitions(image: &Path) -> Result<Vec<Volume>, ExtractError> {
    let args: [&std::ffi::OsStr; 2] = ["--json".as_ref(), image.as_os_str()];
    let command = display_command("sfdisk", &args);
    let stdout = run_tool("sfdisk", "fdisk", &args)?;
    let output_error = |reason: String| ExtractError::Output {
        command: command.clone(),
        reason,
    };
    let json: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|error| output_error(error.to_string()))?;
    let table = &json["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let partitions = table["partitions"]
        .as_array()
        .ok_or_else(|| output_error("no partitions list".to_string()))?;
    let mut volumes = Vec::new();
    for (index, partition) in partitions.iter().enumerate() {
        let text = |key: &str| partition[key].as_str().map(str::to_string);
        let number = text("node")
            .and_then(|node| {
                let digits: String = node
                    .chars()
                    .rev()
                    .take_while(char::is_ascii_digit)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                digits.parse().ok()
            })
            .unwrap_or(index + 1);
        let (Some(start), Some(size)) = (partition["start"].as_u64(), partition["size"].as_u64())
        else {
            return Err(output_error(format!(
                "partition {number} has no start or size"
            )));
        };
        let mut volume = Volume {
            number,
            offset_bytes: start * sector,
            size_bytes: size * sector,
            type_id: text("type").unwrap_or_default().to_ascii_uppercase(),
            partuuid: text("uuid"),
            partlabel: text("name"),
            ..Volume::default()
        };
        if matches!(volume.type_id.as_str(), "5" | "F" | "85") {
            volumes.push(volume);
            continue;
        }
        run_blkid_probe(image, &mut volume)?;
        volumes.push(volume);
    }
    Ok(volumes)
}

/// Probes the filesystem of `volume` in `image` with `blkid -p` at its
/// offset, filling in its type, label and UUID.
fn run_blkid_probe(image: &Path, volume: &mut Volume) -> Result<(), ExtractError> {
    let offset = volume.offset_bytes.to_string();
    let size = volume.size_bytes.to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec!["-p".as_ref(), "-o".as_ref(), "export".as_ref()];
    if volume.number != 0 {
        let extra: [&std::ffi::OsStr; 4] =
            ["-O".as_ref(), offset.as_ref(), "-S".as_ref(), size.as_ref()];
        args.extend(extra);
    }
    args.push(image.as_os_str());
    let finished = Program::new("blkid", "util-linux").args(&args).run()?;
    match finished.code {
        Some(0) => {}
        // Nothing recognised, or ambiguous (such as two signatures).
        Some(2) | Some(8) => return Ok(()),
        _ => {
            return Err(ExtractError::Failed {
                command: display_command("blkid", &args),
                stderr: finished.stderr.trim().to_string(),
            });
        }
    }
    for line in String::from_utf8_lossy(&finished.stdout).lines() {
        if let Some((key, value)) = line.split_once('=') {
            let value = Some(value.to_string());
            match key {
                "TYPE" => volume.fstype = value,
                "LABEL" => volume.label = value,
                "UUID" => volume.uuid = value,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The partitions worth trying as the root, best first: the
/// architecture's GPT root type, then a root label, then the other Linux
/// filesystems, largest first.
fn root_candidates(volumes: &[Volume], arch: Arch) -> Vec<&Volume> {
    let mut candidates: Vec<&Volume> = volumes.iter().filter(|v| v.is_linux_filesystem()).collect();
    let rank = |volume: &Volume| {
        if volume.type_id == arch_root_type(arch) {
            0
        } else if volume
            .label
            .as_deref()
            .is_some_and(|label| ROOT_LABELS.iter().any(|l| l.eq_ignore_ascii_case(label)))
        {
            1
        } else {
            2
        }
    };
    candidates.sort_by_key(|volume| (rank(volume), std::cmp::Reverse(volume.size_bytes)));
    candidates
}

/// A loop device attached to part of a file; dropping it detaches it.
#[derive(Debug)]
struct LoopDevice {
    device: Option<String>,
}

impl LoopDevice {
    /// Attaches `volume` of `image` read-only with `losetup`.
    fn attach(image: &Path, volume: &Volume) -> Result<LoopDevice, ExtractError> {
        let offset = volume.offset_bytes.to_string();
        let size = volume.size_bytes.to_string();
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["--find".as_ref(), "--show".as_ref(), "--read-only".as_ref()];
        if volume.number != 0 {
            let extra: [&std::ffi::OsStr; 4] = [
                "--offset".as_ref(),
                offset.as_ref(),
                "--sizelimit".as_ref(),
                size.as_ref(),
            ];
            args.extend(extra);
        }
        args.push(image.as_os_str());
        let stdout = run_tool("losetup", "mount", &args)?;
        let device = String::from_utf8_lossy(&stdout).trim().to_string();
        if !device.starts_with("/dev/loop") {
            return Err(ExtractError::Output {
                command: display_command("losetup", &args),
                reason: format!("expected a /dev/loopN, got {device:?}"),
            });
        }
        Ok(LoopDevice {
            device: Some(device),
        })
    }

    fn path(&self) -> &Path {
        Path::new(self.device.as_deref().unwrap_or("/dev/null"))
    }

    /// Detaches the device now; while a filesystem on it is mounted, the
    /// kernel only marks it to be freed when that mount goes (autoclear),
    /// so no later step (nor a `kill -9`) can leave it attached.
    fn detach(&mut self) -> Result<(), ExtractError> {
        let Some(device) = self.device.take() else {
            return Ok(());
        };
        run_tool("losetup", "mount", &["--detach".as_ref(), device.as_ref()])?;
        Ok(())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Err(error) = self.detach() {
            eprintln!("kiln: warning: {error}");
        }
    }
}

/// A filesystem of the image, mounted read-only; its loop device goes
/// with the mount.
#[derive(Debug)]
struct MountedVolume {
    mount: Mount,
}

impl MountedVolume {
    fn dir(&self) -> &Path {
        self.mount.target()
    }
}

/// Mounts `volume` of `image` read-only on `target` (created), without
/// replaying journals: the image file stays as it was. A btrfs is
/// mounted at its top level (subvolume id 5) so every subvolume shows.
fn mount_volume(
    image: &Path,
    volume: &Volume,
    target: &Path,
) -> Result<MountedVolume, ExtractError> {
    let fstype = volume.fstype.as_deref().unwrap_or_default();
    let options = match fstype {
        "ext3" | "ext4" => Some("noload"),
        "xfs" => Some("norecovery,nouuid"),
        "btrfs" => Some("subvolid=5,rescue=nologreplay"),
        _ => None,
    };
    fs::create_dir_all(target).map_err(|source| ExtractError::Io {
        action: "create the mount point",
        path: target.to_path_buf(),
        source,
    })?;
    let mut device = LoopDevice::attach(image, volume)?;
    let what = format!("{} of {}", volume.describe(), image.display());
    let mount = Mount::new(
        &what,
        Some(device.path()),
        target,
        Some(fstype),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        options,
    )?;
    device.detach()?;
    Ok(MountedVolume { mount })
}

/// Whether `dir` looks like the root of a distribution's tree.
fn has_os_release(dir: &Path) -> bool {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .any(|file| fs::symlink_metadata(dir.join(file)).is_ok())
}

/// Where in a mounted filesystem the root tree is: its top, or (on
/// btrfs) the top-level subvolume that holds `etc/os-release`.
fn find_tree(mounted: &Path, fstype: &str) -> Option<(PathBuf, Option<String>)> {
    if has_os_release(mounted) {
        return Some((mounted.to_path_buf(), None));
    }
    if fstype != "btrfs" {
        return None;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(mounted)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()))
        .collect();
    entries.sort();
    // `root` first: Fedora names its root subvolume so.
    entries.sort_by_key(|path| path.file_name() != Some("root".as_ref()));
    entries
        .into_iter()
        .find(|path| has_os_release(path))
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (path, Some(name))
        })
}

/// Copies a raw filesystem's tree into `root`.
fn copy_from_filesystem(
    image: &Path,
    root: &Path,
    work: &Path,
    extracted: &mut Extracted,
) -> Result<(), ExtractError> {
    let started = Instant::now();
    let mut volume = Volume {
        number: 0,
        size_bytes: fs::metadata(image).map(|m| m.len()).unwrap_or(0),
        ..Volume::default()
    };
    run_blkid_probe(image, &mut volume)?;
    extracted.timings.push(("probe", started.elapsed()));
    let volumes = vec![volume];
    copy_root_of(image, &volumes, &[&volumes[0]], root, work, extracted)
}

/// Copies the root tree of the partitioned disk `image` into `root`.
fn copy_from_disk(
    image: &Path,
    root: &Path,
    work: &Path,
    arch: Arch,
    extracted: &mut Extracted,
) -> Result<(), ExtractError> {
    let started = Instant::now();
    let volumes = read_partitions(image)?;
    extracted.timings.push(("probe", started.elapsed()));
    let candidates = root_candidates(&volumes, arch);
    copy_root_of(image, &volumes, &candidates, root, work, extracted)
}

/// Mounts each candidate in turn until one holds a root tree, copies it
/// into `root`, and then what the tree's fstab mounts below `/`.
fn copy_root_of(
    image: &Path,
    volumes: &[Volume],
    candidates: &[&Volume],
    root: &Path,
    work: &Path,
    extracted: &mut Extracted,
) -> Result<(), ExtractError> {
    let listing = || {
        volumes
            .iter()
            .map(Volume::summary)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mount_point = work.join("mnt");
    for candidate in candidates {
        let started = Instant::now();
        let mounted = mount_volume(image, candidate, &mount_point)?;
        let fstype = candidate.fstype.as_deref().unwrap_or_default();
        let Some((tree, subvolume)) = find_tree(mounted.dir(), fstype) else {
            mounted.mount.unmount()?;
            continue;
        };
        extracted.timings.push(("mount", started.elapsed()));
        extracted.root_filesystem = match &subvolume {
            Some(name) => format!("{} (subvolume {name})", candidate.describe()),
            None => candidate.describe(),
        };
        let started = Instant::now();
        run_tar_copy(&tree, root)?;
        remove_lost_and_found(root);
        extracted.timings.push(("copy", started.elapsed()));

        let started = Instant::now();
        graft_fstab(
            image,
            volumes,
            candidate,
            mounted.dir(),
            root,
            work,
            extracted,
        )?;
        if !extracted.grafted.is_empty() {
            extracted.timings.push(("graft", started.elapsed()));
        }
        mounted.mount.unmount()?;
        return Ok(());
    }
    if volumes
        .iter()
        .any(|v| v.fstype.as_deref() == Some("LVM2_member"))
    {
        return Err(ExtractError::Lvm {
            image: image.display().to_string(),
            partitions: listing(),
        });
    }
    let partitions = if volumes.len() == 1 && volumes[0].number == 0 {
        format!(
            "  the whole image: {}",
            volumes[0]
                .fstype
                .as_deref()
                .unwrap_or("no filesystem blkid knows")
        )
    } else if volumes.is_empty() {
        "  (none)".to_string()
    } else {
        listing()
    };
    Err(ExtractError::NoRoot {
        image: image.display().to_string(),
        partitions,
    })
}

/// The options both ends of [`run_tar_copy`] share: every xattr (SELinux
/// labels, file capabilities), ACLs, owners by number. XFS shows its ACLs
/// a second time as `trusted.SGI_ACL_*`, which are the filesystem's own
/// (libattr's `/etc/xattr.conf`, which `cp` follows, skips them too).
const TAR_COPY_OPTIONS: &[&str] = &[
    "--xattrs",
    "--xattrs-include=*",
    "--xattrs-exclude=trusted.SGI_*",
    "--xattrs-exclude=xfsroot.*",
    "--acls",
    "--numeric-owner",
];

/// Copies the content of `source` into the existing `dest` with
/// `tar --create | tar --extract`: owners, modes, timestamps, xattrs,
/// ACLs, hardlinks, device nodes and holes (`--sparse`). Measured against
/// `cp -a --sparse=always` and `rsync -aHAX` on 1 GiB of `/usr` from a
/// read-only ext4 (`benches/extract.rs`, two cores): 5.1 s against 7.0 s
/// and 7.6 s, as reading and writing run in two processes at once.
fn run_tar_copy(source: &Path, dest: &Path) -> Result<(), ExtractError> {
    use std::process::Stdio;

    let stderr_file = || {
        tempfile::tempfile().map_err(|source| ExtractError::Io {
            action: "create a temporary file for tar's messages",
            path: std::env::temp_dir(),
            source,
        })
    };
    let (create_stderr, extract_stderr) = (stderr_file()?, stderr_file()?);
    let mut create = Program::new("tar", "tar");
    create
        .arg("--create")
        .arg("--sparse")
        .args(TAR_COPY_OPTIONS)
        .arg("--directory")
        .arg(source)
        .args(["--file", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(clone_file(&create_stderr)?);
    let mut reader = create.spawn()?;
    let Some(archive) = reader.stdout.take() else {
        let _ = reader.kill();
        let _ = reader.wait();
        return Err(ExtractError::Output {
            command: "tar --create".to_string(),
            reason: "no pipe to read the archive from".to_string(),
        });
    };
    let mut extract = Program::new("tar", "tar");
    extract
        .arg("--extract")
        .args(TAR_COPY_OPTIONS)
        .args(["--same-owner", "--preserve-permissions", "--directory"])
        .arg(dest)
        .args(["--file", "-"])
        .stdin(Stdio::from(archive))
        .stdout(Stdio::null())
        .stderr(clone_file(&extract_stderr)?);
    let writer = extract.spawn();
    // The Command keeps its copy of the pipe's read end until dropped:
    // without this, a `tar --extract` that died early would leave
    // `tar --create` blocked on a full pipe instead of failing.
    drop(extract);
    let written = writer.and_then(|mut writer| {
        writer.wait().map_err(|source| CommandError::Spawn {
            program: "tar".to_string(),
            source,
        })
    });
    let read = reader.wait();
    let failed = |side: &str, file: std::fs::File| {
        let mut stderr = String::new();
        let _ =
            std::io::Seek::rewind(&mut &file).and_then(|()| (&file).read_to_string(&mut stderr));
        ExtractError::Failed {
            command: format!(
                "tar --{side} (copying {} to {})",
                source.display(),
                dest.display()
            ),
            stderr: stderr.trim().to_string(),
        }
    };
    if !written?.success() {
        return Err(failed("extract", extract_stderr));
    }
    match read {
        Ok(status) if status.success() => Ok(()),
        _ => Err(failed("create", create_stderr)),
    }
}

fn clone_file(file: &std::fs::File) -> Result<std::fs::File, ExtractError> {
    file.try_clone().map_err(|source| ExtractError::Io {
        action: "share a temporary file with tar",
        path: std::env::temp_dir(),
        source,
    })
}

/// An empty `lost+found` is the filesystem's, not the distribution's:
/// kiln's own filesystem makes its own.
fn remove_lost_and_found(root: &Path) {
    let _ = std::fs::remove_dir(root.join("lost+found"));
}

/// One line of an fstab that mounts something kiln may copy in.
#[derive(Debug, Clone)]
struct FstabEntry {
    spec: String,
    mount_point: String,
    fstype: String,
    options: Vec<String>,
}

fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    let mut entries: Vec<FstabEntry> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [spec, mount_point, fstype, rest @ ..] = fields.as_slice() else {
                return None;
            };
            Some(FstabEntry {
                spec: spec.to_string(),
                mount_point: mount_point.replace("\\040", " "),
                fstype: fstype.to_string(),
                options: rest
                    .first()
                    .map(|o| o.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .filter(|entry| entry.mount_point.starts_with('/') && entry.mount_point != "/")
        .collect();
    entries.sort_by_key(|entry| entry.mount_point.matches('/').count());
    entries
}

impl FstabEntry {
    fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|option| option.strip_prefix(name)?.strip_prefix('='))
    }

    /// Whether this entry names `volume`.
    fn names(&self, volume: &Volume) -> bool {
        let (key, value) = if let Some(rest) = self.spec.strip_prefix("/dev/disk/by-uuid/") {
            ("UUID", rest)
        } else if let Some(rest) = self.spec.strip_prefix("/dev/disk/by-label/") {
            ("LABEL", rest)
        } else if let Some(rest) = self.spec.strip_prefix("/dev/disk/by-partuuid/") {
            ("PARTUUID", rest)
        } else if let Some(rest) = self.spec.strip_prefix("/dev/disk/by-partlabel/") {
            ("PARTLABEL", rest)
        } else if let Some((key, value)) = self.spec.split_once('=') {
            (key, value.trim_matches('"'))
        } else {
            return false;
        };
        let field = match key {
            "UUID" => &volume.uuid,
            "LABEL" => &volume.label,
            "PARTUUID" => &volume.partuuid,
            "PARTLABEL" => &volume.partlabel,
            _ => return false,
        };
        field
            .as_deref()
            .is_some_and(|field| field.eq_ignore_ascii_case(value))
    }
}

/// `root` joined with an fstab mount point, refusing `..` and any
/// symlink on the way (which could lead out of the tree).
fn inside_tree(root: &Path, mount_point: &str) -> Result<PathBuf, ExtractError> {
    let outside = || ExtractError::OutsideTree {
        mount_point: mount_point.to_string(),
    };
    let mut path = root.to_path_buf();
    for component in Path::new(mount_point).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                path.push(name);
                if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(outside());
                }
            }
            Component::ParentDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    Ok(path)
}

/// Copies in what the tree's `etc/fstab` mounts below `/` from this
/// image: btrfs subvolumes of the root filesystem (Fedora's `home`,
/// `var`) and other partitions of the disk (a separate `/boot`). A FAT
/// filesystem (the ESP) is left out: kiln cannot mount it here, and the
/// build installs its own bootloader.
fn graft_fstab(
    image: &Path,
    volumes: &[Volume],
    root_volume: &Volume,
    root_mounted: &Path,
    root: &Path,
    work: &Path,
    extracted: &mut Extracted,
) -> Result<(), ExtractError> {
    let fstab_path = root.join("etc/fstab");
    if !fs::symlink_metadata(&fstab_path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let text = fs::read_to_string(&fstab_path).map_err(|source| ExtractError::Io {
        action: "read",
        path: fstab_path.clone(),
        source,
    })?;
    for (index, entry) in parse_fstab(&text).iter().enumerate() {
        let subvolume = entry.option("subvol").map(|s| s.trim_start_matches('/'));
        if entry.fstype == "btrfs" && entry.names(root_volume) {
            let Some(subvolume) = subvolume.filter(|s| !s.is_empty()) else {
                continue;
            };
            let source = inside_tree(root_mounted, subvolume)?;
            if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let dest = inside_tree(root, &entry.mount_point)?;
            make_dir(&dest)?;
            run_tar_copy(&source, &dest)?;
            extracted.grafted.push(format!(
                "{}: btrfs subvolume {subvolume}",
                entry.mount_point
            ));
            continue;
        }
        let Some(volume) = volumes
            .iter()
            .find(|v| v.number != root_volume.number && entry.names(v))
        else {
            continue;
        };
        if !volume.is_linux_filesystem() {
            extracted.grafted.push(format!(
                "{}: not copied ({} cannot be mounted here)",
                entry.mount_point,
                volume.describe()
            ));
            continue;
        }
        let mounted = mount_volume(image, volume, &work.join(format!("graft{index}")))?;
        let source = match subvolume.filter(|s| !s.is_empty()) {
            Some(subvolume) => inside_tree(mounted.dir(), subvolume)?,
            None => mounted.dir().to_path_buf(),
        };
        let dest = inside_tree(root, &entry.mount_point)?;
        make_dir(&dest)?;
        run_tar_copy(&source, &dest)?;
        remove_lost_and_found(&dest);
        mounted.mount.unmount()?;
        extracted
            .grafted
            .push(format!("{}: {}", entry.mount_point, volume.describe()));
    }
    Ok(())
}

fn make_dir(path: &Path) -> Result<(), ExtractError> {
    fs::create_dir_all(path).map_err(|source| ExtractError::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    })
}

// ---------------------------------------------------------------------------
// Architecture

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "amd64 (x86-64)",
        Arch::Arm64 => "arm64 (aarch64)",
    }
}

/// The ELF `e_machine` of an architecture.
fn arch_machine(arch: Arch) -> u16 {
    match arch {
        Arch::Amd64 => 0x3e,
        Arch::Arm64 => 0xb7,
    }
}

fn machine_name(machine: u16) -> String {
    let name = match machine {
        0x03 => "i386",
        0x08 => "mips",
        0x14 => "ppc",
        0x15 => "ppc64",
        0x16 => "s390x",
        0x28 => "arm (32-bit)",
        0x3e => "amd64 (x86-64)",
        0xb7 => "arm64 (aarch64)",
        0xf3 => "riscv",
        0x102 => "loongarch",
        _ => return format!("ELF machine {machine:#x}"),
    };
    name.to_string()
}

/// The ELF machine of the file at `path`, if it is an ELF file.
fn elf_machine(path: &Path) -> Option<u16> {
    crate::host::file::elf_identity(path).map(|(_, _, machine)| machine)
}

/// Refuses a tree whose `usr/bin/env` (or `bin/sh`) is built for another
/// architecture than `arch`.
fn check_arch(root: &Path, image: &Path, arch: Arch) -> Result<(), ExtractError> {
    let machine = ["usr/bin/env", "bin/sh"]
        .iter()
        .filter_map(|program| walk::resolve_in_tree(root, program))
        .find_map(|path| elf_machine(&path));
    let Some(machine) = machine else {
        return Err(ExtractError::NoProgram {
            image: image.display().to_string(),
        });
    };
    if machine == arch_machine(arch) {
        return Ok(());
    }
    Err(ExtractError::WrongArch {
        image: image.display().to_string(),
        wanted: arch_name(arch),
        found: machine_name(machine),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(parts: &[(usize, &[u8])]) -> Vec<u8> {
        let mut head = vec![0u8; HEAD_BYTES];
        for (offset, bytes) in parts {
            head[*offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        head
    }

    fn none() -> Vec<u8> {
        Vec::new()
    }

    #[test]
    fn formats_are_told_by_their_magic() {
        let cases: Vec<(Vec<u8>, ImageFormat)> = vec![
            (padded(&[(0, b"QFI\xfb")]), ImageFormat::Qcow2),
            (padded(&[(0, b"hsqs")]), ImageFormat::Squashfs),
            (padded(&[(257, b"ustar\0")]), ImageFormat::Tar),
            (padded(&[(512, b"EFI PART")]), ImageFormat::RawDisk),
            (padded(&[(1080, &[0x53, 0xef])]), ImageFormat::RawFilesystem),
            (padded(&[(0, b"XFSB")]), ImageFormat::RawFilesystem),
            (
                padded(&[(0x10040, b"_BHRfS_M")]),
                ImageFormat::RawFilesystem,
            ),
            (
                padded(&[
                    (446, &[0x80, 0, 0, 0, 0x83, 0, 0, 0, 0, 8, 0, 0, 0, 0, 1, 0]),
                    (510, &[0x55, 0xaa]),
                ]),
                ImageFormat::RawDisk,
            ),
        ];
        for (head, format) in cases {
            assert_eq!(classify(&head, &none), Ok(format));
        }
    }

    #[test]
    fn compressed_files_are_tarballs_only_when_their_content_is() {
        let gzip = padded(&[(0, &[0x1f, 0x8b, 8, 0])]);
        let tar = || padded(&[(257, b"ustar  \0")]);
        assert_eq!(classify(&gzip, &tar), Ok(ImageFormat::Tar));
        let error = classify(&gzip, &none).unwrap_err();
        assert!(
            error.contains("gzip-compressed file that is not a tarball"),
            "{error}"
        );
    }

    #[test]
    fn other_files_say_what_they_look_like() {
        let html = b"\n<!DOCTYPE html>\n<html><body>Not found</body></html>".to_vec();
        assert!(
            classify(&html, &none)
                .unwrap_err()
                .starts_with("an HTML page")
        );
        let iso = padded(&[(0x8001, b"CD001"), (510, &[0x55, 0xaa])]);
        assert!(classify(&iso, &none).unwrap_err().contains("ISO 9660"));
        let fat = padded(&[(82, b"FAT32"), (510, &[0x55, 0xaa])]);
        assert!(
            classify(&fat, &none)
                .unwrap_err()
                .contains("FAT filesystem")
        );
        assert_eq!(classify(&[], &none).unwrap_err(), "an empty file");
        assert!(
            classify(&padded(&[]), &none)
                .unwrap_err()
                .starts_with("zeros")
        );
        let text = b"sha256sum  foo.img\n".to_vec();
        assert!(
            classify(&text, &none)
                .unwrap_err()
                .starts_with("a text file starting")
        );
    }

    #[test]
    fn fstab_entries_below_root_come_shallowest_first() {
        let entries = parse_fstab(
            "# comment\nUUID=a / btrfs subvol=root 0 0\nUUID=b /boot/efi vfat umask=077 0 2\n\
             UUID=a /home btrfs subvol=home,compress=zstd:1 0 0\nLABEL=boot /boot ext4 defaults 0 0\n\
             /dev/sda2 none swap sw 0 0\n",
        );
        let points: Vec<&str> = entries.iter().map(|e| e.mount_point.as_str()).collect();
        assert_eq!(points, ["/home", "/boot", "/boot/efi"]);
        assert_eq!(entries[0].option("subvol"), Some("home"));
        let boot = Volume {
            label: Some("boot".to_string()),
            ..Volume::default()
        };
        assert!(entries[1].names(&boot));
        assert!(!entries[0].names(&boot));
    }

    #[test]
    fn the_root_is_chosen_by_type_then_label_then_size() {
        let volume = |number, type_id: &str, fstype: &str, label: Option<&str>, size| Volume {
            number,
            type_id: type_id.to_string(),
            fstype: Some(fstype.to_string()),
            label: label.map(str::to_string),
            size_bytes: size,
            ..Volume::default()
        };
        let volumes = vec![
            volume(1, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "vfat", None, 100),
            volume(
                2,
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                "ext4",
                Some("boot"),
                500,
            ),
            volume(3, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "xfs", None, 9000),
            volume(
                4,
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                "ext4",
                Some("cloudimg-rootfs"),
                800,
            ),
            volume(5, GPT_ROOT_AARCH64, "ext4", None, 700),
        ];
        let order = |arch| {
            root_candidates(&volumes, arch)
                .iter()
                .map(|v| v.number)
                .collect::<Vec<_>>()
        };
        assert_eq!(order(Arch::Amd64), [4, 3, 5, 2]);
        assert_eq!(order(Arch::Arm64), [5, 4, 3, 2]);
    }

    #[test]
    fn symlinks_resolve_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/busybox"), b"x").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", root.join("usr/bin/env")).unwrap();
        assert_eq!(
            walk::resolve_in_tree(root, "usr/bin/env"),
            Some(root.join("usr/bin/busybox"))
        );
        std::os::unix::fs::symlink("../../../../etc/passwd", root.join("usr/bin/sh")).unwrap();
        assert_eq!(
            walk::resolve_in_tree(root, "bin/sh"),
            None,
            "the host's file is not read"
        );
    }
}

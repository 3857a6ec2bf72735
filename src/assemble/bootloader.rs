//! Making the assembled disk image bootable by a PC BIOS, without a device.
//!
//! On a real machine `grub-install` runs `grub-bios-setup`, which opens the
//! disk, finds where GRUB's core image may live (the `bios-boot` partition
//! on GPT, the gap before the first partition on MBR), writes it there,
//! patches the sector numbers into the two images and writes GRUB's boot
//! sector over the disk's first 440 bytes. kiln assembles disks as plain
//! files and never attaches them to a loop device, so it does the same
//! steps itself on the file: the `vm` element leaves `boot.img` and
//! `core.img` in the tree's `/boot/grub/i386-pc/`, and
//! [`embed_grub_bios`] puts them on the disk. Every byte written is a
//! function of the two images and the [`DiskLayout`], so the same lock
//! gives the same disk.
//!
//! The offsets are GRUB 2.06's (bookworm's), from
//! `include/grub/i386/pc/boot.h` and `util/setup.c`; the UEFI path needs
//! nothing here (the ESP simply holds `EFI/BOOT/BOOTX64.EFI`).

use fs_err::os::unix::fs::FileExt;
use fs_err::{self as fs, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::assemble::disk::{DiskLayout, SECTOR_BYTES};
use crate::manifest::{PartitionTable, PartitionType};

/// Where the `vm` element leaves GRUB's BIOS boot sector in the tree.
pub const BOOT_IMG_PATH: &str = "boot/grub/i386-pc/boot.img";

/// Where the `vm` element leaves GRUB's BIOS core image in the tree.
pub const CORE_IMG_PATH: &str = "boot/grub/i386-pc/core.img";

/// The sector size GRUB's BIOS images are made of (`GRUB_DISK_SECTOR_SIZE`).
const GRUB_SECTOR_BYTES: usize = 512;

/// `GRUB_BOOT_MACHINE_BPB_START` and `_END`: the DOS BIOS parameter block,
/// which grub-bios-setup keeps from the disk.
const BPB_START: usize = 0x03;
const BPB_END: usize = 0x5a;

/// `GRUB_BOOT_MACHINE_KERNEL_SECTOR`: a little-endian u64, the disk sector
/// holding the first sector of core.img.
const KERNEL_SECTOR: usize = 0x5c;

/// `GRUB_BOOT_MACHINE_BOOT_DRIVE`: 0xff means "the drive the BIOS booted
/// from" (grub-bios-setup's `write_rootdev` always writes 0xff).
const BOOT_DRIVE: usize = 0x64;

/// `GRUB_BOOT_MACHINE_DRIVE_CHECK`: a two-byte short jump that skips the
/// "is the boot drive a hard disk?" test; grub-bios-setup replaces it with
/// two NOPs on hard disks, for BIOSes that pass a wrong drive number.
const DRIVE_CHECK: usize = 0x66;

/// The x86 NOP instruction.
const NOP: u8 = 0x90;

/// `GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC` up to `GRUB_BOOT_MACHINE_PART_END`:
/// the disk signature, the partition table (on GPT, the protective MBR
/// entry) — the disk's own bytes, kept.
const DISK_ID_START: usize = 0x1b8;
const PART_END: usize = 0x1fe;

/// Where every boot sector carries 0x55 0xaa.
const SIGNATURE_OFFSET: usize = 0x1fe;

/// The size of one `struct grub_boot_blocklist` (`u64 start`, `u16 len`,
/// `u16 segment`, packed); diskboot.img's list ends at the end of
/// core.img's first sector and grows downwards.
const BLOCKLIST_BYTES: usize = 12;

/// The first (highest) blocklist entry, at the end of core.img's first
/// sector.
const FIRST_BLOCKLIST: usize = GRUB_SECTOR_BYTES - BLOCKLIST_BYTES;

/// The segment diskboot.img loads the rest of core.img to:
/// `GRUB_BOOT_I386_PC_KERNEL_SEG` (0x800) plus one sector (0x20 paragraphs),
/// as grub-bios-setup's `current_segment` starts; grub-mkimage writes it
/// too, so it also tells an i386-pc core.img from anything else.
const KERNEL_SEGMENT: u16 = 0x820;

/// The most sectors of core.img the BIOS path can load: grub-bios-setup
/// caps the embedding at `(0x78000 - GRUB_KERNEL_I386_PC_LINK_ADDR) >> 9`
/// with the link address 0x9000, beyond which core.img would overwrite
/// the boot sector's disk buffer.
pub const MAX_CORE_SECTORS: u64 = (0x78000 - 0x9000) / 512;

/// What [`embed_grub_bios`] wrote where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiosEmbedded {
    /// The disk sector (512 bytes) where core.img starts; also what the
    /// boot sector's kernel-sector field holds.
    pub core_lba: u64,
    /// How many sectors core.img takes (its size rounded up).
    pub core_sectors: u64,
    /// How many sectors the place it went to has: the `bios-boot`
    /// partition on GPT, the gap before the first partition on MBR.
    pub area_sectors: u64,
}

/// GRUB's two BIOS images as the `vm` element left them in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubBiosImages {
    /// `boot.img`: the 512-byte boot sector.
    pub boot_img: Vec<u8>,
    /// `core.img`: diskboot.img, the kernel and the embedded modules.
    pub core_img: Vec<u8>,
}

/// Why GRUB's BIOS images could not be put on a disk.
#[derive(Debug, thiserror::Error)]
pub enum BootloaderError {
    /// A GPT disk without the partition core.img goes into.
    #[error("a GPT disk needs a bios-boot partition for BIOS boot")]
    NoBiosBootPartition,
    /// An MBR disk whose first partition starts too early for core.img.
    #[error(
        "core.img needs {core_sectors} sectors before the first partition, but the first partition starts at sector {first_partition_lba}"
    )]
    MbrGapTooSmall {
        /// The sectors core.img takes.
        core_sectors: u64,
        /// Where the first partition starts.
        first_partition_lba: u64,
    },
    /// A core.img larger than the bios-boot partition.
    #[error(
        "core.img takes {core_sectors} sectors but the bios-boot partition `{name}` has only {area_sectors}"
    )]
    BiosBootTooSmall {
        /// The partition.
        name: String,
        /// The sectors core.img takes.
        core_sectors: u64,
        /// The partition's sectors.
        area_sectors: u64,
    },
    /// A core.img larger than what the BIOS path can load.
    #[error(
        "core.img takes {core_sectors} sectors; GRUB's BIOS boot sector loads at most {MAX_CORE_SECTORS}"
    )]
    CoreTooLarge {
        /// The sectors core.img takes.
        core_sectors: u64,
    },
    /// A boot.img that is not a 512-byte boot sector.
    #[error("boot.img is not GRUB's i386-pc boot sector: {reason}")]
    BadBootImage {
        /// What is wrong with it.
        reason: String,
    },
    /// A core.img that is not GRUB's i386-pc core image.
    #[error("core.img is not GRUB's i386-pc core image: {reason}")]
    BadCoreImage {
        /// What is wrong with it.
        reason: String,
    },
    /// The disk's first sector has no partition table signature.
    #[error("the disk image {path} has no partition table (no 0x55AA in its first sector)")]
    NoPartitionTable {
        /// The disk image.
        path: PathBuf,
    },
    /// A disk file shorter than where core.img goes.
    #[error(
        "the disk image {path} is {file_bytes} bytes, but core.img would end at byte {end_bytes}"
    )]
    DiskTooShort {
        /// The disk image.
        path: PathBuf,
        /// Its size.
        file_bytes: u64,
        /// Where core.img would end.
        end_bytes: u64,
    },
    /// Only one of the two images is in the tree.
    #[error("the tree has {present} but not {missing}; both come from the `vm` element")]
    HalfInstalled {
        /// The image that is there.
        present: PathBuf,
        /// The one that is not.
        missing: PathBuf,
    },
    /// A file operation failed; fs-err's message names the operation and
    /// the path.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads GRUB's BIOS images from the tree at `tree` ([`BOOT_IMG_PATH`],
/// [`CORE_IMG_PATH`]); `None` when neither is there (an image without the
/// `vm` element, or one that only boots by UEFI).
pub fn grub_bios_images(tree: &Path) -> Result<Option<GrubBiosImages>, BootloaderError> {
    let boot = tree.join(BOOT_IMG_PATH);
    let core = tree.join(CORE_IMG_PATH);
    let read = |path: &Path| match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BootloaderError::Io(source)),
    };
    match (read(&boot)?, read(&core)?) {
        (Some(boot_img), Some(core_img)) => Ok(Some(GrubBiosImages { boot_img, core_img })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(BootloaderError::HalfInstalled {
            present: boot,
            missing: core,
        }),
        (None, Some(_)) => Err(BootloaderError::HalfInstalled {
            present: core,
            missing: boot,
        }),
    }
}

/// Where core.img goes on `layout`'s disk: `(first sector, sectors there)`.
fn core_area(layout: &DiskLayout, core_sectors: u64) -> Result<(u64, u64), BootloaderError> {
    match layout.table {
        PartitionTable::Gpt => {
            let part = layout
                .partitions
                .iter()
                .find(|p| p.kind == PartitionType::BiosBoot)
                .ok_or(BootloaderError::NoBiosBootPartition)?;
            let area_sectors = part.size_bytes / SECTOR_BYTES;
            if core_sectors > area_sectors {
                return Err(BootloaderError::BiosBootTooSmall {
                    name: part.name.to_string(),
                    core_sectors,
                    area_sectors,
                });
            }
            Ok((part.start_bytes / SECTOR_BYTES, area_sectors))
        }
        PartitionTable::Mbr => {
            // Sector 0 is the boot sector; everything up to the first
            // partition is free, as GRUB's msdos embedding assumes.
            let first_partition_lba = layout
                .partitions
                .iter()
                .map(|p| p.start_bytes / SECTOR_BYTES)
                .min()
                .unwrap_or(layout.disk_bytes / SECTOR_BYTES);
            let area_sectors = first_partition_lba.saturating_sub(1);
            if core_sectors > area_sectors {
                return Err(BootloaderError::MbrGapTooSmall {
                    core_sectors,
                    first_partition_lba,
                });
            }
            Ok((1, area_sectors))
        }
    }
}

/// core.img with its blocklist pointing at `core_lba`, padded to whole
/// sectors: what grub-bios-setup writes when it embeds (without the
/// Reed-Solomon recovery codes `grub-install` adds by default; nothing
/// overwrites the embedding area of an image file, and GRUB skips the
/// recovery when the redundancy field, which grub-mkimage leaves at zero,
/// is zero).
fn patched_core(core_img: &[u8], core_lba: u64) -> Result<Vec<u8>, BootloaderError> {
    let core_sectors = core_img.len().div_ceil(GRUB_SECTOR_BYTES);
    let mut core = core_img.to_vec();
    core.resize(core_sectors * GRUB_SECTOR_BYTES, 0);

    let segment = u16::from_le_bytes([core[FIRST_BLOCKLIST + 10], core[FIRST_BLOCKLIST + 11]]);
    if segment != KERNEL_SEGMENT {
        return Err(BootloaderError::BadCoreImage {
            reason: format!(
                "the blocklist at the end of its first sector loads to segment {segment:#x}, not {KERNEL_SEGMENT:#x}"
            ),
        });
    }
    // Clear whatever list is there (grub-mkimage leaves one entry), down
    // to the first empty entry, as grub-bios-setup does.
    let mut entry = FIRST_BLOCKLIST;
    loop {
        let len = u16::from_le_bytes([core[entry + 8], core[entry + 9]]);
        if len == 0 {
            break;
        }
        core[entry..entry + BLOCKLIST_BYTES].fill(0);
        entry = entry
            .checked_sub(BLOCKLIST_BYTES)
            .filter(|&e| e > 0)
            .ok_or_else(|| BootloaderError::BadCoreImage {
                reason: "its blocklist has no terminating entry".to_string(),
            })?;
    }
    // One entry: every sector after the first, contiguous; the entry below
    // it is now zero, which ends the list.
    let rest_sectors =
        u16::try_from(core_sectors - 1).map_err(|_| BootloaderError::CoreTooLarge {
            core_sectors: core_sectors as u64,
        })?;
    let first = &mut core[FIRST_BLOCKLIST..GRUB_SECTOR_BYTES];
    first[0..8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    first[8..10].copy_from_slice(&rest_sectors.to_le_bytes());
    first[10..12].copy_from_slice(&KERNEL_SEGMENT.to_le_bytes());
    Ok(core)
}

/// GRUB's boot sector for this disk: `boot_img` with the disk's own BIOS
/// parameter block, disk signature and partition table (`disk_sector`),
/// pointing at core.img at `core_lba`.
fn patched_boot_sector(boot_img: &[u8], disk_sector: &[u8], core_lba: u64) -> Vec<u8> {
    let mut sector = boot_img.to_vec();
    sector[BPB_START..BPB_END].copy_from_slice(&disk_sector[BPB_START..BPB_END]);
    sector[DISK_ID_START..PART_END].copy_from_slice(&disk_sector[DISK_ID_START..PART_END]);
    sector[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    sector[BOOT_DRIVE] = 0xff;
    sector[DRIVE_CHECK] = NOP;
    sector[DRIVE_CHECK + 1] = NOP;
    sector
}

/// Makes the disk image `disk` (already holding `layout`'s partition table)
/// boot GRUB from a PC BIOS, doing what `grub-bios-setup` does on a
/// device.
///
/// core.img goes into the `bios-boot` partition on GPT, or the gap between
/// sector 1 and the first partition on MBR, with its blocklist patched to
/// load its other sectors from there. boot.img goes into sector 0 with the
/// kernel-sector field pointing at core.img and the drive check turned off
/// as for a hard disk, keeping the disk's BIOS parameter block (0x03–0x5a)
/// and its signature and partition table (0x1b8–0x1fe; on GPT the
/// protective MBR). Nothing else on the disk changes.
pub fn embed_grub_bios(
    disk: &Path,
    layout: &DiskLayout,
    boot_img: &[u8],
    core_img: &[u8],
) -> Result<BiosEmbedded, BootloaderError> {
    if boot_img.len() != GRUB_SECTOR_BYTES {
        return Err(BootloaderError::BadBootImage {
            reason: format!("it is {} bytes, not {GRUB_SECTOR_BYTES}", boot_img.len()),
        });
    }
    if boot_img[SIGNATURE_OFFSET..] != [0x55, 0xaa] {
        return Err(BootloaderError::BadBootImage {
            reason: "it does not end with the boot signature 0x55AA".to_string(),
        });
    }
    if core_img.len() < 2 * GRUB_SECTOR_BYTES {
        return Err(BootloaderError::BadCoreImage {
            reason: format!(
                "it is {} bytes, less than diskboot.img and one sector of kernel",
                core_img.len()
            ),
        });
    }
    let core_sectors = core_img.len().div_ceil(GRUB_SECTOR_BYTES) as u64;
    if core_sectors > MAX_CORE_SECTORS {
        return Err(BootloaderError::CoreTooLarge { core_sectors });
    }
    let (core_lba, area_sectors) = core_area(layout, core_sectors)?;
    let core = patched_core(core_img, core_lba)?;

    let file = OpenOptions::new().read(true).write(true).open(disk)?;
    let file_bytes = file.metadata()?.len();
    let end_bytes = (core_lba + core_sectors) * SECTOR_BYTES;
    if file_bytes < end_bytes {
        return Err(BootloaderError::DiskTooShort {
            path: disk.to_path_buf(),
            file_bytes,
            end_bytes,
        });
    }
    let mut disk_sector = [0u8; GRUB_SECTOR_BYTES];
    file.read_exact_at(&mut disk_sector, 0)?;
    if disk_sector[SIGNATURE_OFFSET..] != [0x55, 0xaa] {
        return Err(BootloaderError::NoPartitionTable {
            path: disk.to_path_buf(),
        });
    }
    let boot_sector = patched_boot_sector(boot_img, &disk_sector, core_lba);

    // core.img first: a disk whose boot sector points at a half-written
    // core is worse than one that does not boot at all.
    file.write_all_at(&core, core_lba * SECTOR_BYTES)?;
    file.write_all_at(&boot_sector, 0)?;
    Ok(BiosEmbedded {
        core_lba,
        core_sectors,
        area_sectors,
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::assemble::disk::{layout, write_partition, write_table};
    use crate::assemble::ids::Ids;
    use crate::manifest::{Arch, Disk, Source, parse};
    use std::collections::BTreeMap;
    use std::fs::File;
    use std::io::Read as _;
    use std::os::unix::fs::FileExt as _;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    const MIB: u64 = 1 << 20;
    const SECTOR: usize = 512;

    fn disk_of(yaml_disk: &str) -> Disk {
        let text =
            format!("name: t\nbase: {{distro: debian, release: bookworm}}\ndisk:\n{yaml_disk}");
        parse(&Source::new("t.yaml", &text))
            .expect("parses")
            .disk
            .value
    }

    fn layout_of(yaml_disk: &str) -> DiskLayout {
        layout(
            &disk_of(yaml_disk),
            Arch::Amd64,
            &Ids::from_lock_text("lock for bootloader tests"),
            &BTreeMap::new(),
        )
        .unwrap()
    }

    /// The `vm` element's default layout, smaller: BIOS and UEFI bootable.
    const GPT_VM: &str = "  table: gpt\n  partitions:\n\
        \x20   - {name: bios, type: bios-boot, size: 1MiB}\n\
        \x20   - {name: esp, type: esp, size: 16MiB, label: ESP, mountpoint: /boot/efi}\n\
        \x20   - {name: root, size: 32MiB, label: cloudimg-rootfs, mountpoint: /}\n";

    const GPT_UEFI_ONLY: &str = "  table: gpt\n  partitions:\n\
        \x20   - {name: esp, type: esp, size: 16MiB, mountpoint: /boot/efi}\n\
        \x20   - {name: root, size: 32MiB, mountpoint: /}\n";

    const MBR: &str = "  table: mbr\n  partitions:\n\
        \x20   - {name: root, size: 32MiB, label: cloudimg-rootfs, mountpoint: /}\n";

    // ------------------------------------------------------------ synthetic

    /// A disk file of `layout`'s size whose first two sectors hold a
    /// pattern (sector 0 ending in 0x55AA) and the rest zeros.
    fn synthetic_disk(path: &Path, layout: &DiskLayout) -> Vec<u8> {
        let mut head = vec![0u8; 2 * SECTOR];
        for (i, b) in head.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        head[510] = 0x55;
        head[511] = 0xaa;
        let file = File::create(path).unwrap();
        file.set_len(layout.disk_bytes).unwrap();
        file.write_all_at(&head, 0).unwrap();
        head
    }

    /// A stand-in for boot.img: a pattern, the drive-check jump and the
    /// signature.
    fn synthetic_boot() -> Vec<u8> {
        let mut boot: Vec<u8> = (0..SECTOR).map(|i| (i * 13 + 1) as u8 | 0x01).collect();
        boot[DRIVE_CHECK] = 0xeb;
        boot[DRIVE_CHECK + 1] = 0x05;
        boot[510] = 0x55;
        boot[511] = 0xaa;
        boot
    }

    /// A stand-in for core.img of `sectors` sectors (the last one partly
    /// filled), with grub-mkimage's blocklist and a stale second entry.
    fn synthetic_core(sectors: usize) -> Vec<u8> {
        let mut core: Vec<u8> = (0..sectors * SECTOR - 100)
            .map(|i| (i * 31 + 5) as u8 | 0x01)
            .collect();
        let entry = |core: &mut Vec<u8>, at: usize, start: u64, len: u16, seg: u16| {
            core[at..at + 8].copy_from_slice(&start.to_le_bytes());
            core[at + 8..at + 10].copy_from_slice(&len.to_le_bytes());
            core[at + 10..at + 12].copy_from_slice(&seg.to_le_bytes());
        };
        entry(&mut core, 500, 2, (sectors - 1) as u16, 0x820);
        entry(&mut core, 488, 77, 3, 0x1234);
        entry(&mut core, 476, 0, 0, 0);
        core
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
    }

    /// Checks every byte of sector 0 against what grub-bios-setup writes.
    fn check_boot_sector(sector: &[u8], boot: &[u8], disk_head: &[u8], core_lba: u64) {
        assert_eq!(sector[..3], boot[..3], "the jump to the code is boot.img's");
        assert_eq!(sector[3..0x5a], disk_head[3..0x5a], "the BPB is the disk's");
        assert_eq!(sector[0x5a..0x5c], boot[0x5a..0x5c]);
        assert_eq!(u64_at(sector, 0x5c), core_lba, "kernel sector");
        assert_eq!(sector[0x64], 0xff, "boot drive");
        assert_eq!(sector[0x65], boot[0x65]);
        assert_eq!(sector[0x66..0x68], [0x90, 0x90], "drive check");
        assert_eq!(
            sector[0x68..0x1b8],
            boot[0x68..0x1b8],
            "the code is boot.img's"
        );
        assert_eq!(
            sector[0x1b8..0x1fe],
            disk_head[0x1b8..0x1fe],
            "disk id and table are the disk's"
        );
        assert_eq!(sector[0x1fe..0x200], [0x55, 0xaa]);
    }

    /// Checks core.img on the disk: the blocklist, and every other byte.
    fn check_core(on_disk: &[u8], core: &[u8], core_lba: u64) {
        let sectors = core.len().div_ceil(SECTOR);
        assert_eq!(on_disk.len(), sectors * SECTOR);
        assert_eq!(
            on_disk[..500],
            core[..500],
            "diskboot.img's code, except its list"
        );
        assert_eq!(u64_at(on_disk, 500), core_lba + 1, "blocklist start");
        assert_eq!(
            u16_at(on_disk, 508) as usize,
            sectors - 1,
            "blocklist length"
        );
        assert_eq!(u16_at(on_disk, 510), 0x820, "blocklist segment");
        assert_eq!(
            on_disk[SECTOR..core.len()],
            core[SECTOR..],
            "the rest of core.img"
        );
        assert!(on_disk[core.len()..].iter().all(|&b| b == 0), "padding");
    }

    fn check_synthetic_core(on_disk: &[u8], core: &[u8], core_lba: u64) {
        let mut expected = core.to_vec();
        // The stale second entry is cleared, so it ends the list.
        expected[488..500].fill(0);
        check_core(on_disk, &expected, core_lba);
        assert!(on_disk[488..500].iter().all(|&b| b == 0));
    }

    fn read_range(path: &Path, at: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        File::open(path)
            .unwrap()
            .read_exact_at(&mut buf, at)
            .unwrap();
        buf
    }

    /// Everything outside sector 0 and `[from, to)` is as `disk_head`
    /// followed by zeros.
    fn check_untouched(path: &Path, disk_head: &[u8], from: u64, to: u64) {
        let bytes = fs::read(path).unwrap();
        assert_eq!(bytes[SECTOR..2 * SECTOR], disk_head[SECTOR..], "sector 1");
        for (i, &b) in bytes.iter().enumerate().skip(2 * SECTOR) {
            let i = i as u64;
            if i < from || i >= to {
                assert_eq!(b, 0, "byte {i} changed");
            }
        }
    }

    #[test]
    fn on_gpt_core_goes_into_the_bios_boot_partition() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        let layout = layout_of(GPT_VM);
        let head = synthetic_disk(&disk, &layout);
        let (boot, core) = (synthetic_boot(), synthetic_core(5));

        let done = embed_grub_bios(&disk, &layout, &boot, &core).unwrap();
        assert_eq!(
            done,
            BiosEmbedded {
                core_lba: 2048,
                core_sectors: 5,
                area_sectors: 2048
            }
        );
        check_boot_sector(&read_range(&disk, 0, SECTOR), &boot, &head, 2048);
        check_synthetic_core(&read_range(&disk, 2048 * 512, 5 * SECTOR), &core, 2048);
        check_untouched(&disk, &head, 2048 * 512, 2053 * 512);
    }

    #[test]
    fn on_mbr_core_goes_right_after_the_boot_sector() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        let layout = layout_of(MBR);
        let head = synthetic_disk(&disk, &layout);
        let (boot, core) = (synthetic_boot(), synthetic_core(3));

        let done = embed_grub_bios(&disk, &layout, &boot, &core).unwrap();
        assert_eq!(
            done,
            BiosEmbedded {
                core_lba: 1,
                core_sectors: 3,
                area_sectors: 2047
            }
        );
        check_boot_sector(&read_range(&disk, 0, SECTOR), &boot, &head, 1);
        check_synthetic_core(&read_range(&disk, 512, 3 * SECTOR), &core, 1);
        let bytes = fs::read(&disk).unwrap();
        assert!(bytes[4 * SECTOR..].iter().all(|&b| b == 0));
    }

    #[test]
    fn embedding_is_deterministic_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_of(GPT_VM);
        let (boot, core) = (synthetic_boot(), synthetic_core(9));
        let a = dir.path().join("a.raw");
        let b = dir.path().join("b.raw");
        synthetic_disk(&a, &layout);
        synthetic_disk(&b, &layout);
        embed_grub_bios(&a, &layout, &boot, &core).unwrap();
        embed_grub_bios(&b, &layout, &boot, &core).unwrap();
        let once = fs::read(&a).unwrap();
        assert!(once == fs::read(&b).unwrap(), "two disks differ");
        embed_grub_bios(&a, &layout, &boot, &core).unwrap();
        assert!(
            once == fs::read(&a).unwrap(),
            "embedding again changed the disk"
        );
    }

    /// `f` fails with `message`, and the disk is left as it was.
    fn refused(layout: &DiskLayout, boot: &[u8], core: &[u8], message: &str) {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        synthetic_disk(&disk, layout);
        let before = fs::read(&disk).unwrap();
        let err = embed_grub_bios(&disk, layout, boot, core).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert!(before == fs::read(&disk).unwrap(), "a refused embed wrote");
    }

    #[test]
    fn a_gpt_disk_without_bios_boot_is_refused() {
        refused(
            &layout_of(GPT_UEFI_ONLY),
            &synthetic_boot(),
            &synthetic_core(4),
            "a GPT disk needs a bios-boot partition for BIOS boot",
        );
    }

    #[test]
    fn core_larger_than_its_place_is_refused() {
        let mut small_gap = layout_of(MBR);
        small_gap.partitions[0].start_bytes = 8 * 512;
        refused(
            &small_gap,
            &synthetic_boot(),
            &synthetic_core(8),
            "core.img needs 8 sectors before the first partition, but the first partition starts at sector 8",
        );
        // Seven sectors fit between sector 1 and sector 8.
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        synthetic_disk(&disk, &small_gap);
        let done = embed_grub_bios(&disk, &small_gap, &synthetic_boot(), &synthetic_core(7));
        assert_eq!(done.unwrap().area_sectors, 7);

        let mut small_bios = layout_of(GPT_VM);
        small_bios.partitions[0].size_bytes = 4 * 512;
        refused(
            &small_bios,
            &synthetic_boot(),
            &synthetic_core(5),
            "core.img takes 5 sectors but the bios-boot partition `bios` has only 4",
        );

        refused(
            &layout_of(GPT_VM),
            &synthetic_boot(),
            &synthetic_core(889),
            "core.img takes 889 sectors; GRUB's BIOS boot sector loads at most 888",
        );
    }

    #[test]
    fn images_that_are_not_grubs_are_refused() {
        let layout = layout_of(GPT_VM);
        let core = synthetic_core(4);
        refused(
            &layout,
            &synthetic_boot()[..511],
            &core,
            "boot.img is not GRUB's i386-pc boot sector: it is 511 bytes, not 512",
        );
        let mut unsigned = synthetic_boot();
        unsigned[511] = 0;
        refused(
            &layout,
            &unsigned,
            &core,
            "boot.img is not GRUB's i386-pc boot sector: it does not end with the boot signature 0x55AA",
        );
        refused(
            &layout,
            &synthetic_boot(),
            &core[..1000],
            "core.img is not GRUB's i386-pc core image: it is 1000 bytes, less than diskboot.img and one sector of kernel",
        );
        let mut other_segment = core.clone();
        other_segment[510] = 0;
        refused(
            &layout,
            &synthetic_boot(),
            &other_segment,
            "core.img is not GRUB's i386-pc core image: the blocklist at the end of its first sector loads to segment 0x800, not 0x820",
        );
        let mut endless = core.clone();
        for entry in (8..=500).rev().step_by(12) {
            endless[entry + 8] = 1;
        }
        refused(
            &layout,
            &synthetic_boot(),
            &endless,
            "core.img is not GRUB's i386-pc core image: its blocklist has no terminating entry",
        );
    }

    #[test]
    fn a_disk_without_a_table_or_too_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_of(GPT_VM);
        let blank = dir.path().join("blank.raw");
        File::create(&blank)
            .unwrap()
            .set_len(layout.disk_bytes)
            .unwrap();
        let err =
            embed_grub_bios(&blank, &layout, &synthetic_boot(), &synthetic_core(4)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the disk image {} has no partition table (no 0x55AA in its first sector)",
                blank.display()
            )
        );
        assert!(fs::read(&blank).unwrap().iter().all(|&b| b == 0));

        let short = dir.path().join("short.raw");
        File::create(&short).unwrap().set_len(MIB + 512).unwrap();
        let err =
            embed_grub_bios(&short, &layout, &synthetic_boot(), &synthetic_core(4)).unwrap_err();
        assert!(
            matches!(err, BootloaderError::DiskTooShort { end_bytes, .. } if end_bytes == MIB + 2048),
            "{err}"
        );
    }

    #[test]
    fn the_images_are_read_from_the_tree_both_or_neither() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        assert_eq!(grub_bios_images(tree).unwrap(), None);
        fs::create_dir_all(tree.join("boot/grub/i386-pc")).unwrap();
        fs::write(tree.join(CORE_IMG_PATH), b"core").unwrap();
        let err = grub_bios_images(tree).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the tree has {} but not {}; both come from the `vm` element",
                tree.join(CORE_IMG_PATH).display(),
                tree.join(BOOT_IMG_PATH).display()
            )
        );
        fs::write(tree.join(BOOT_IMG_PATH), b"boot").unwrap();
        assert_eq!(
            grub_bios_images(tree).unwrap(),
            Some(GrubBiosImages {
                boot_img: b"boot".to_vec(),
                core_img: b"core".to_vec()
            })
        );
    }

    // ------------------------------------------------------------ real GRUB

    /// Runs `program`, which must exist (tests fail rather than skip), and
    /// returns its stdout.
    fn tool(program: &str, args: &[&str]) -> String {
        let output = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .env("MTOOLS_SKIP_CHECK", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}); scripts/install-test-deps installs it")
            });
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the `vm` element's finalise.d scripts (with its environment.d)
    /// on the host, with a tmpfs over `/boot` in a mount namespace of their
    /// own, so they write where they would in the image and the host's
    /// `/boot` is untouched; returns a copy of what they left in `/boot`.
    ///
    /// The kernel is a stand-in behind `/boot/vmlinuz` (Debian's
    /// `link_in_boot = yes` form); the images are made by the host's GRUB,
    /// bookworm's 2.06 as in the image.
    fn run_vm_element(out: &Path) -> PathBuf {
        let element = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements/vm");
        let boot = out.join("boot");
        let script = format!(
            "set -eu\n\
             mount -t tmpfs kiln-test /boot\n\
             echo kernel > /boot/vmlinuz-6.1.0-99-amd64\n\
             echo initrd > /boot/initrd.img-6.1.0-99-amd64\n\
             ln -s vmlinuz-6.1.0-99-amd64 /boot/vmlinuz\n\
             ln -s initrd.img-6.1.0-99-amd64 /boot/initrd.img\n\
             . {element}/environment.d/10-vm.bash\n\
             for hook in {element}/finalise.d/*; do bash \"$hook\"; done\n\
             mkdir -p {boot}\n\
             cp -a /boot/. {boot}/\n",
            element = element.display(),
            boot = boot.display(),
        );
        let output = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash", "-c", &script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("ARCH", "amd64")
            .env("DIB_ROOT_LABEL", "cloudimg-rootfs")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
        assert!(
            output.status.success(),
            "the vm element's scripts failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        boot
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_vm_element_writes_a_static_grub_cfg_and_reproducible_images() {
        let dir = tempfile::tempdir().unwrap();
        let first = run_vm_element(&dir.path().join("a"));
        let second = run_vm_element(&dir.path().join("b"));
        assert_eq!(
            fs::read_to_string(first.join("grub/grub.cfg")).unwrap(),
            "# Written by kiln's vm element at build time, not by grub-mkconfig.\n\
             set default=0\n\
             set timeout=1\n\
             # The menu on the first serial port as well as the screen. Only on BIOS:\n\
             # UEFI firmware (OVMF, clouds) already copies its console to the serial\n\
             # port, and GRUB writing there too would print everything twice.\n\
             if [ \"$grub_platform\" = pc ]; then\n\
             \x20   serial --unit=0 --speed=115200\n\
             \x20   terminal_input serial console\n\
             \x20   terminal_output serial console\n\
             fi\n\
             search --no-floppy --label cloudimg-rootfs --set=root\n\
             \n\
             menuentry 'Debian GNU/Linux 12 (bookworm)' --id kiln-default {\n\
             \x20   search --no-floppy --label cloudimg-rootfs --set=root\n\
             \x20   linux /boot/vmlinuz root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200n8\n\
             \x20   initrd /boot/initrd.img\n\
             }\n"
        );
        for image in [
            "grub/i386-pc/core.img",
            "grub/i386-pc/boot.img",
            "efi/EFI/BOOT/BOOTX64.EFI",
        ] {
            let a = fs::read(first.join(image)).unwrap();
            assert!(a.len() >= 512, "{image}");
            assert!(
                a == fs::read(second.join(image)).unwrap(),
                "{image} differs between runs"
            );
        }
        // GRUB's own parser accepts it.
        tool(
            "grub-script-check",
            &[first.join("grub/grub.cfg").to_str().unwrap()],
        );
        assert!(first.join("grub/i386-pc/normal.mod").is_file());
        assert!(first.join("grub/x86_64-efi/normal.mod").is_file());
        let boot_img = fs::read(first.join("grub/i386-pc/boot.img")).unwrap();
        assert!(boot_img == fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap());
    }

    fn sfdisk_json(path: &Path) -> serde_json::Value {
        let text = tool("sfdisk", &["--json", path.to_str().unwrap()]);
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["partitiontable"].clone()
    }

    /// Embeds the element's real images into a disk written by sfdisk and
    /// checks the table survived and the patched fields.
    fn embed_real(yaml: &str, core_lba: u64) {
        let dir = tempfile::tempdir().unwrap();
        let boot = run_vm_element(&dir.path().join("tree"));
        let images = grub_bios_images(boot.parent().unwrap()).unwrap().unwrap();
        let layout = layout_of(yaml);
        let disk = dir.path().join("disk.raw");
        write_table(&disk, &layout).unwrap();
        let table_before = sfdisk_json(&disk);
        let head = read_range(&disk, 0, 2 * SECTOR);

        let done = embed_grub_bios(&disk, &layout, &images.boot_img, &images.core_img).unwrap();
        assert_eq!(done.core_lba, core_lba);
        assert_eq!(
            done.core_sectors as usize,
            images.core_img.len().div_ceil(SECTOR)
        );
        assert_eq!(sfdisk_json(&disk), table_before);
        tool("sfdisk", &["--verify", disk.to_str().unwrap()]);
        check_boot_sector(
            &read_range(&disk, 0, SECTOR),
            &images.boot_img,
            &head,
            core_lba,
        );
        let on_disk = read_range(&disk, core_lba * 512, done.core_sectors as usize * SECTOR);
        check_core(&on_disk, &images.core_img, core_lba);
        // grub-mkimage's own list pointed at sector 2 for the same length.
        assert_eq!(u64_at(&images.core_img, 500), 2);
        assert_eq!(u16_at(&images.core_img, 508), u16_at(&on_disk, 508));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn real_grub_images_embed_into_a_gpt_disk_written_by_sfdisk() {
        embed_real(GPT_VM, 2048);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn real_grub_images_embed_into_an_mbr_disk_written_by_sfdisk() {
        embed_real(MBR, 1);
    }

    // ------------------------------------------------------------ booting

    const MARKER: &str = "KILN-GRUB-OK";

    /// A grub.cfg that proves GRUB got as far as reading the root
    /// filesystem, and stops the machine.
    const SMOKE_CFG: &str = "if [ \"$grub_platform\" = pc ]; then\n\
        serial --unit=0 --speed=115200\n\
        terminal_input serial console\n\
        terminal_output serial console\n\
        fi\n\
        echo KILN-GRUB-OK root=$root prefix=$prefix\n\
        halt\n";

    /// How long a boot may take under TCG on a loaded machine.
    const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

    /// A running qemu, killed when dropped (also when a test panics).
    struct Qemu(Child);

    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The first whole line of `log` holding [`MARKER`], without escape
    /// sequences around it.
    fn marker_line(log: &str) -> Option<String> {
        let start = log.find(MARKER)?;
        let end = start + log[start..].find(['\r', '\n'])?;
        Some(log[start..end].to_string())
    }

    /// Boots qemu with `args` until the serial log shows a whole line with
    /// [`MARKER`]; returns how long that took and the line.
    fn boot_until_marker(dir: &Path, args: &[String]) -> (Duration, String) {
        let log = dir.join("serial.log");
        let stderr = File::create(dir.join("qemu.stderr")).unwrap();
        let started = Instant::now();
        let mut qemu = Qemu(
            Command::new("qemu-system-x86_64")
                .args([
                    "-accel",
                    "tcg",
                    "-m",
                    "256",
                    "-display",
                    "none",
                    "-monitor",
                    "none",
                    "-nic",
                    "none",
                    "-no-reboot",
                    "-serial",
                    &format!("file:{}", log.display()),
                ])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run qemu-system-x86_64 ({e}); scripts/install-test-deps installs it"
                    )
                }),
        );
        let read_log = || {
            let mut text = Vec::new();
            if let Ok(mut file) = File::open(&log) {
                let _ = file.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        };
        loop {
            if let Some(line) = marker_line(&read_log()) {
                return (started.elapsed(), line);
            }
            let exited = qemu.0.try_wait().unwrap();
            if exited.is_some() || started.elapsed() > BOOT_TIMEOUT {
                // The marker may have landed just before qemu stopped.
                if let Some(line) = marker_line(&read_log()) {
                    return (started.elapsed(), line);
                }
                panic!(
                    "no {MARKER} on the serial console after {:?} (qemu: {exited:?}); log:\n{}\nstderr:\n{}",
                    started.elapsed(),
                    read_log(),
                    fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A disk laid out by `yaml` whose root filesystem holds the element's
    /// `/boot` with [`SMOKE_CFG`] as grub.cfg, whose ESP (if any) holds the
    /// element's BOOTX64.EFI, and with GRUB's BIOS images embedded.
    fn bootable_disk(dir: &Path, yaml: &str) -> PathBuf {
        let tree = dir.join("tree");
        let boot = run_vm_element(&tree);
        let layout = layout_of(yaml);
        let disk = dir.join("disk.raw");
        write_table(&disk, &layout).unwrap();

        // The root filesystem gets /boot; the ESP takes /boot/efi's files.
        let efi = dir.join("efi");
        fs::rename(boot.join("efi"), &efi).unwrap();
        fs::create_dir(boot.join("efi")).unwrap();
        fs::write(boot.join("grub/grub.cfg"), SMOKE_CFG).unwrap();
        let root = layout.partition("root").unwrap();
        let root_img = dir.join("root.ext4");
        tool(
            "mke2fs",
            &[
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "cloudimg-rootfs",
                "-d",
                tree.to_str().unwrap(),
                root_img.to_str().unwrap(),
                &format!("{}k", root.size_bytes / 1024),
            ],
        );
        write_partition(&disk, root, &root_img).unwrap();

        if let Some(esp) = layout.partition("esp") {
            let esp_img = dir.join("esp.vfat");
            let esp_img_arg = esp_img.to_str().unwrap();
            tool(
                "mkfs.vfat",
                &[
                    "-n",
                    "ESP",
                    "-C",
                    esp_img_arg,
                    &(esp.size_bytes / 1024).to_string(),
                ],
            );
            tool("mmd", &["-i", esp_img_arg, "::/EFI", "::/EFI/BOOT"]);
            tool(
                "mcopy",
                &[
                    "-i",
                    esp_img_arg,
                    efi.join("EFI/BOOT/BOOTX64.EFI").to_str().unwrap(),
                    "::/EFI/BOOT/BOOTX64.EFI",
                ],
            );
            write_partition(&disk, esp, &esp_img).unwrap();
        }

        let images = grub_bios_images(&tree).unwrap().unwrap();
        embed_grub_bios(&disk, &layout, &images.boot_img, &images.core_img).unwrap();
        disk
    }

    fn drive(disk: &Path) -> Vec<String> {
        vec![
            "-drive".to_string(),
            format!("file={},format=raw,if=virtio", disk.display()),
        ]
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn a_gpt_disk_boots_grub_from_bios() {
        let dir = tempfile::tempdir().unwrap();
        let disk = bootable_disk(dir.path(), GPT_VM);
        let (took, line) = boot_until_marker(dir.path(), &drive(&disk));
        eprintln!("BIOS (GPT) boot to GRUB: {:.1} s", took.as_secs_f64());
        // core.img found the root filesystem by its label, in partition 3.
        assert_eq!(
            line,
            "KILN-GRUB-OK root=hd0,gpt3 prefix=(hd0,gpt3)/boot/grub"
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn an_mbr_disk_boots_grub_from_bios() {
        let dir = tempfile::tempdir().unwrap();
        let disk = bootable_disk(dir.path(), MBR);
        let (took, line) = boot_until_marker(dir.path(), &drive(&disk));
        eprintln!("BIOS (MBR) boot to GRUB: {:.1} s", took.as_secs_f64());
        assert_eq!(
            line,
            "KILN-GRUB-OK root=hd0,msdos1 prefix=(hd0,msdos1)/boot/grub"
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn a_gpt_disk_boots_grub_from_uefi() {
        let dir = tempfile::tempdir().unwrap();
        let disk = bootable_disk(dir.path(), GPT_VM);
        let code = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
        let vars = dir.path().join("OVMF_VARS_4M.fd");
        fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
            .unwrap_or_else(|e| panic!("no OVMF ({e}); scripts/install-test-deps installs it"));
        let mut args = vec![
            "-drive".to_string(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.display()
            ),
            "-drive".to_string(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ];
        args.extend(drive(&disk));
        let (took, line) = boot_until_marker(dir.path(), &args);
        eprintln!("UEFI (GPT) boot to GRUB: {:.1} s", took.as_secs_f64());
        assert_eq!(
            line,
            "KILN-GRUB-OK root=hd0,gpt3 prefix=(hd0,gpt3)/boot/grub"
        );
    }
}

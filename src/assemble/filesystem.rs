//! Filesystem images, built from a directory tree without mounting
//! anything, and byte-identical for the same tree, lock and
//! `SOURCE_DATE_EPOCH`.
//!
//! The build host may have no loop devices and its kernel may lack vfat or
//! xfs, so every filesystem is written by its own userspace tools into a
//! file: ext4 in one pass with `mke2fs -d`, vfat with `mkfs.vfat` and
//! mtools, swap with `mkswap`, an empty xfs with `mkfs.xfs`. ext4 can also
//! be written straight into a disk image at its partition's offset
//! ([`Placement::InDisk`]: `mke2fs -E offset=`, then libext2fs'
//! `image?offset=` for debugfs), which saves copying the largest file of
//! the build; the others are made as files and copied in
//! ([`writes_in_place`] says why). Those tools
//! would pick random UUIDs and stamp the time of the build into the image;
//! this module passes each one identifiers from [`Ids`] and then rewrites
//! the timestamps the tools take from the clock or from the source files'
//! atime and ctime (which no caller can control), with `debugfs` for ext4
//! and `xfs_db` for xfs. It also owns "just large enough" sizing: an ext4
//! or vfat image of `size: auto` holds the tree plus the requested headroom
//! and little more.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::assemble::ids::Ids;
use crate::host::command::{self, CommandError, Finished};
use crate::host::walk;
use crate::manifest::Filesystem;

/// The ext4 block size kiln uses for every image.
pub const EXT4_BLOCK_BYTES: u64 = 4096;

/// The size of one ext4 inode (room for nanosecond times, crtime and small
/// extended attributes such as `security.capability`).
pub const EXT4_INODE_BYTES: u64 = 256;

/// One inode for every this many bytes of filesystem, at least: the usual
/// mke2fs ratio, so an image grown after boot keeps the usual density of
/// inodes (a grown ext4 keeps its inodes per group).
pub const EXT4_INODE_RATIO_BYTES: u64 = 16 * 1024;

/// Blocks in one ext4 block group at 4 KiB blocks.
const EXT4_BLOCKS_PER_GROUP: u64 = 32 * 1024;

/// Group descriptors per 4 KiB block with the 64bit feature (64 bytes
/// each).
const EXT4_DESCRIPTORS_PER_BLOCK: u64 = EXT4_BLOCK_BYTES / 64;

/// Inodes 1 to 11 exist in every ext4 (root is 2, lost+found is 11).
const EXT4_FIRST_FREE_INODE: u64 = 11;

/// Blocks lost+found takes (mke2fs makes it 16 KiB so e2fsck can use it
/// without allocating).
const EXT4_LOST_FOUND_BLOCKS: u64 = 4;

/// Extents one 4 KiB extent-tree block holds beyond the four in the inode.
const EXT4_EXTENTS_PER_BLOCK: u64 = 340;

/// The longest extent, in blocks.
const EXT4_MAX_EXTENT_BLOCKS: u64 = 32 * 1024;

/// Room for extended attributes inside a 256-byte inode, in bytes (what is
/// left after the 160 bytes of inode and the attribute header, rounded
/// down); more than this needs an attribute block.
const EXT4_INLINE_XATTR_BYTES: u64 = 80;

/// Symlink targets shorter than this live in the inode itself.
const EXT4_FAST_SYMLINK_BYTES: u64 = 60;

/// The journal for trees up to 512 MiB: small, because an image is written
/// once and grown after boot, and the journal does not grow with it.
pub const JOURNAL_SMALL_MIB: u64 = 16;

/// The smallest journal mke2fs makes (1024 blocks).
pub const JOURNAL_MIN_MIB: u64 = 4;

/// The journal for trees up to 4 GiB.
pub const JOURNAL_MEDIUM_MIB: u64 = 32;

/// The journal for larger trees.
pub const JOURNAL_LARGE_MIB: u64 = 64;

/// Sizes are rounded up to whole mebibytes: the partition alignment, so a
/// filesystem made for a partition fills it exactly.
pub use crate::manifest::ALIGN_BYTES;

/// Space kept beyond the estimate, in 4 KiB blocks: mke2fs drops a last
/// block group too small to be useful, and the directory estimate is only
/// an estimate.
const EXT4_SLACK_BLOCKS: u64 = 256;

/// The percentage of an ext4's blocks kept for root (`mke2fs -m`): a user
/// other than root cannot fill them, so an `auto` size counts them beside
/// the headroom, which is free for everyone.
const EXT4_RESERVED_PERCENT: u64 = 5;
const EXT4_RESERVED_TEXT: &str = "5";

/// The smallest FAT32 filesystem mkfs.vfat makes without warning that it
/// has fewer than 65525 clusters (at 512-byte clusters).
pub const FAT32_MIN_BYTES: u64 = 33 << 20;

/// The cluster size assumed when estimating vfat content: mkfs.vfat uses
/// 512 bytes below 260 MiB and 4 KiB up to 8 GiB, so this over-counts small
/// ESPs a little and fits every usual one.
const FAT_CLUSTER_BYTES: u64 = 4096;

/// One FAT directory entry.
const FAT_DIRENT_BYTES: u64 = 32;

/// UTF-16 code units of a long name one FAT directory entry holds.
const FAT_LFN_CHARS_PER_ENTRY: u64 = 13;

/// The smallest xfs mkfs.xfs (5.19 and later) accepts.
pub const XFS_MIN_BYTES: u64 = 300 << 20;

/// The smallest swap area worth making when the size is `auto` and the
/// headroom is smaller.
pub const SWAP_MIN_BYTES: u64 = 1 << 20;

/// The ext4 features of every image: `64bit` and `resize_inode` so it grows
/// online (the reserved GDT blocks cover 1024 times the first size; past
/// them the kernel switches to `meta_bg` by itself, up to the 1 EiB limit
/// of 64-bit block numbers), and the features Debian's mke2fs.conf turns
/// on for ext4. `orphan_file` and `metadata_csum_seed` stay off so older
/// kernels and GRUB read the image.
pub const EXT4_FEATURES: &str = "has_journal,ext_attr,resize_inode,dir_index,filetype,extent,\
     64bit,flex_bg,sparse_super,large_file,huge_file,dir_nlink,extra_isize,metadata_csum";

/// mke2fs reads `/etc/mke2fs.conf`, which differs between hosts (Ubuntu,
/// Fedora and Debian turn on different features and inode sizes); kiln
/// hands it this one instead, so the command line alone decides the image.
const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 5.0
\thash_alg = half_md4
\tlazy_itable_init = false
\tlazy_journal_init = false
[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tdefault = {
\t}
";

/// What filesystem to make, how large, and what to call it.
#[derive(Debug, Clone)]
pub struct FilesystemSpec<'a> {
    /// The kind of filesystem.
    pub kind: Filesystem,
    /// The label, if any (the caller picks defaults such as
    /// `cloudimg-rootfs`).
    pub label: Option<&'a str>,
    /// How large the image file is.
    pub size: SizeChoice,
    /// What the filesystem is for (`"root"`, `"esp"`, a partition name):
    /// every identifier is derived from it, so two filesystems of one image
    /// never share a UUID.
    pub purpose: &'a str,
    /// What the tree needs, when it was measured already (to size the
    /// disk): ext4 then does not walk it again.
    pub usage: Option<TreeUsage>,
}

/// How large a filesystem image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeChoice {
    /// Just large enough for the tree, plus this many bytes free (for swap
    /// and an empty xfs, which hold no tree, the headroom is the size).
    Auto {
        /// Free space wanted after the tree is in, in bytes.
        headroom_bytes: u64,
    },
    /// Exactly this many bytes.
    Exact(u64),
}

/// Where a filesystem is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// A new file holding the filesystem alone, replacing any file there.
    File(&'a Path),
    /// Inside an existing disk image, from `offset_bytes` on: a partition.
    /// The range must read as zeros, as in a disk new from
    /// [`crate::assemble::disk::write_table`], since the tools skip
    /// blocks that are to be zero. Only for the kinds
    /// [`writes_in_place`] accepts.
    InDisk {
        /// The disk image.
        disk: &'a Path,
        /// Where the partition starts, in bytes (a multiple of 512).
        offset_bytes: u64,
    },
}

impl Placement<'_> {
    /// The file the filesystem is written into.
    pub fn file(&self) -> &Path {
        match self {
            Placement::File(path) | Placement::InDisk { disk: path, .. } => path,
        }
    }

    /// Where the filesystem starts in [`Placement::file`].
    pub fn offset_bytes(&self) -> u64 {
        match self {
            Placement::File(_) => 0,
            Placement::InDisk { offset_bytes, .. } => *offset_bytes,
        }
    }
}

/// Whether a filesystem of `kind` can be written straight into a disk
/// image ([`Placement::InDisk`]) with the same bytes as in a file of its
/// own: ext4 only. mkswap (util-linux 2.38) and mkfs.xfs take no offset.
/// `mkfs.vfat --offset` does, but picks its cluster size and geometry from
/// the length of the whole disk file rather than the size it is given, so
/// the ESP would change (and the copy of a mostly empty ESP costs little).
pub fn writes_in_place(kind: Filesystem) -> bool {
    kind == Filesystem::Ext4
}

/// A filesystem image written to a file, or into a disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeFilesystem {
    /// The file holding it: the image file, or the disk.
    pub path: PathBuf,
    /// Where it starts in that file, in bytes (0 for an image file).
    pub offset_bytes: u64,
    /// Its length in bytes (a multiple of 1 MiB for `auto` sizes).
    pub bytes: u64,
    /// The filesystem UUID (for vfat, the volume id as `XXXX-XXXX`, the
    /// form `/dev/disk/by-uuid` and fstab use).
    pub uuid: Option<String>,
    /// The label given, if any.
    pub label: Option<String>,
}

/// Why a filesystem image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FilesystemError {
    /// A tool could not be started (for instance it is not installed).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A tool ran and failed.
    #[error("`{program}` failed ({status}) making the {purpose} filesystem:\n{stderr}")]
    Failed {
        /// The program.
        program: String,
        /// What the filesystem is for.
        purpose: String,
        /// Its exit status, as text.
        status: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// A file operation failed; fs-err's message names the operation and
    /// the path.
    #[error(transparent)]
    Fs(#[from] io::Error),
    /// Something other than a plain file operation failed on a file
    /// (extended attributes, a temporary file, a walk of the tree).
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The build log could not be written.
    #[error("cannot write the build log: {0}")]
    Log(io::Error),
    /// The disk image ends before the filesystem would.
    #[error(
        "cannot write the {purpose} filesystem into `{path}`: it ends at byte {file_bytes}, before the filesystem's end at byte {end_bytes}"
    )]
    DiskTooShort {
        /// What the filesystem is for.
        purpose: String,
        /// The disk image.
        path: PathBuf,
        /// Its length.
        file_bytes: u64,
        /// Where the filesystem would end.
        end_bytes: u64,
    },
    /// This kind of filesystem cannot be written into a disk in place (a
    /// bug of the caller: see [`writes_in_place`]).
    #[error("kiln cannot write a {kind} filesystem into a disk in place; it is made as a file")]
    NotInPlace {
        /// The filesystem.
        kind: &'static str,
    },
    /// `none` has no image; the caller leaves such a partition empty.
    #[error("the {purpose} partition has filesystem `none`, so there is no image to make")]
    NoFilesystem {
        /// What the partition is for.
        purpose: String,
    },
    /// The tree holds something this filesystem cannot store or kiln
    /// cannot pass to its tools.
    #[error("cannot put `{path}` into the {kind} filesystem: {why}")]
    Unsupported {
        /// The filesystem.
        kind: &'static str,
        /// The file in the tree.
        path: PathBuf,
        /// Why not.
        why: &'static str,
    },
    /// The installed xfsprogs cannot populate an xfs from a directory.
    #[error(
        "cannot build the {purpose} xfs from a directory: the installed mkfs.xfs can only \
         make an empty xfs (its protofile loses hard links, extended attributes and times); \
         use ext4 for a filesystem with content"
    )]
    XfsWithContent {
        /// What the filesystem is for.
        purpose: String,
    },
}

/// Makes a filesystem of `spec` at `placement` (a new file, or a range of
/// a disk image), holding `tree` if given, with every identifier from
/// `ids` and every timestamp at most `source_date_epoch`. Runs mke2fs and
/// debugfs (ext4), mkfs.vfat and mtools (vfat), mkswap (swap) or mkfs.xfs
/// and xfs_db (xfs); each command and its outcome is written to `log`.
/// The same tree gives the same bytes wherever they are placed.
///
/// `tree` must be `None` for swap and xfs (an xfs with content is
/// [`FilesystemError::XfsWithContent`]); [`Filesystem::None`] is
/// [`FilesystemError::NoFilesystem`], since there is no file to make.
pub fn make_filesystem(
    tree: Option<&Path>,
    spec: &FilesystemSpec,
    ids: &Ids,
    source_date_epoch: u64,
    placement: Placement<'_>,
    log: &mut dyn Write,
) -> Result<MadeFilesystem, FilesystemError> {
    if let Placement::InDisk { .. } = placement
        && !writes_in_place(spec.kind)
    {
        return Err(FilesystemError::NotInPlace {
            kind: spec.kind.as_str(),
        });
    }
    let made = match spec.kind {
        Filesystem::Ext4 => make_ext4(tree, spec, ids, source_date_epoch, placement, log)?,
        Filesystem::Vfat => make_vfat(tree, spec, ids, source_date_epoch, placement.file(), log)?,
        Filesystem::Swap => make_swap(tree, spec, ids, placement.file(), log)?,
        Filesystem::Xfs => make_xfs(tree, spec, ids, source_date_epoch, placement.file(), log)?,
        Filesystem::None => {
            return Err(FilesystemError::NoFilesystem {
                purpose: spec.purpose.to_string(),
            });
        }
    };
    Ok(made)
}

/// The UUID (for vfat, the volume id as `XXXX-XXXX`) the filesystem of
/// `kind` for `purpose` gets: what `/etc/fstab` names when there is no
/// label, known before the filesystem is made. `None` for no filesystem.
pub fn filesystem_uuid(kind: Filesystem, purpose: &str, ids: &Ids) -> Option<String> {
    match kind {
        Filesystem::Ext4 => Some(ids.uuid(&format!("ext4 uuid {purpose}")).to_string()),
        Filesystem::Vfat => {
            let hex = format!("{:08X}", vfat_volume_id(purpose, ids));
            Some(format!("{}-{}", &hex[..4], &hex[4..]))
        }
        Filesystem::Swap => Some(ids.uuid(&format!("swap uuid {purpose}")).to_string()),
        Filesystem::Xfs => Some(ids.uuid(&format!("xfs uuid {purpose}")).to_string()),
        Filesystem::None => None,
    }
}

fn vfat_volume_id(purpose: &str, ids: &Ids) -> u32 {
    ids.u32(&format!("vfat volume id {purpose}"))
}

/// The size `size: auto` gives an ext4 holding `tree` with
/// `headroom_bytes` free: see [`ext4_layout`]. Reads the tree (sizes,
/// names, extended attributes), runs nothing.
pub fn ext4_auto_size(tree: &Path, headroom_bytes: u64) -> Result<u64, FilesystemError> {
    Ok(ext4_auto_size_of(
        &TreeUsage::measure(tree)?,
        headroom_bytes,
    ))
}

/// [`ext4_auto_size`] of a tree measured already.
pub fn ext4_auto_size_of(usage: &TreeUsage, headroom_bytes: u64) -> u64 {
    ext4_layout(usage, SizeChoice::Auto { headroom_bytes }).bytes
}

/// Whether an ext4 of exactly `bytes` (a fixed `size:`, laid out by
/// [`ext4_layout`] with [`SizeChoice::Exact`]) holds `usage`: the tree's
/// blocks, the root directory and `lost+found`, the journal, the metadata
/// for that size, and the slack `size: auto` also keeps for the estimate's
/// sake (the blocks ext4 reserves for root are not counted: mke2fs fills
/// them).
pub fn ext4_holds(usage: &TreeUsage, bytes: u64) -> bool {
    let layout = ext4_layout(usage, SizeChoice::Exact(bytes));
    let blocks = bytes / EXT4_BLOCK_BYTES;
    let journal_blocks = (layout.journal_mib << 20) / EXT4_BLOCK_BYTES;
    let needed = usage.blocks
        + 1
        + EXT4_LOST_FOUND_BLOCKS
        + journal_blocks
        + ext4_metadata_blocks(blocks, layout.inodes)
        + EXT4_SLACK_BLOCKS
        + blocks / 200;
    needed <= blocks
}

/// The smallest size, a multiple of [`ALIGN_BYTES`], of an ext4 that
/// [`ext4_holds`] `usage`: at most what `size: auto` makes without
/// headroom, which also leaves ext4's blocks reserved for root free.
pub fn ext4_smallest_size(usage: &TreeUsage) -> u64 {
    let mut bytes = ext4_auto_size_of(usage, 0);
    while bytes > ALIGN_BYTES && ext4_holds(usage, bytes - ALIGN_BYTES) {
        bytes -= ALIGN_BYTES;
    }
    bytes
}

/// What a tree needs from an ext4, counted the way ext4 stores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// 4 KiB blocks for file contents, long symlink targets, directories,
    /// extent-tree blocks and extended-attribute blocks.
    pub blocks: u64,
    /// Inodes besides the root directory (hard links count once).
    pub inodes: u64,
    /// Bytes of file contents (apparent sizes), for choosing the journal.
    pub content_bytes: u64,
}

impl TreeUsage {
    /// Walks `tree` without following symlinks and counts what its files
    /// need in ext4.
    pub fn measure(tree: &Path) -> Result<TreeUsage, FilesystemError> {
        let mut usage = TreeUsage::default();
        let mut seen = HashSet::new();
        usage.blocks += ext4_dir_blocks(&read_names(tree)?);
        for_each_below(tree, &mut |path, meta| {
            let file_type = meta.file_type();
            if meta.nlink() > 1 && !file_type.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                return Ok(());
            }
            usage.inodes += 1;
            if file_type.is_dir() {
                usage.blocks += ext4_dir_blocks(&read_names(path)?);
            } else if file_type.is_file() {
                usage.content_bytes += meta.len();
                usage.blocks += ext4_file_blocks(meta.len());
            } else if file_type.is_symlink() && meta.len() >= EXT4_FAST_SYMLINK_BYTES {
                usage.blocks += 1;
            }
            if xattr_bytes(path)? > EXT4_INLINE_XATTR_BYTES {
                usage.blocks += 1;
            }
            Ok(())
        })?;
        Ok(usage)
    }
}

/// Blocks for a regular file's data and its extent tree, assuming the
/// worst: no holes, and a break at every block group.
fn ext4_file_blocks(len: u64) -> u64 {
    let data = len.div_ceil(EXT4_BLOCK_BYTES);
    let extents = 2 * data.div_ceil(EXT4_MAX_EXTENT_BLOCKS);
    let tree = if extents > 4 {
        extents.div_ceil(EXT4_EXTENTS_PER_BLOCK) + 1
    } else {
        0
    };
    data + tree
}

/// Blocks for a directory holding `names`: entries are 8 bytes plus the
/// name, 4-byte aligned, in blocks that end with a 12-byte checksum. A
/// directory of more than one block may become an htree whose leaves are
/// half full after splits, so those count twice, plus the index root.
fn ext4_dir_blocks(names: &[OsString]) -> u64 {
    let entry_bytes: u64 = 12
        + 12
        + names
            .iter()
            .map(|n| (8 + n.len() as u64).next_multiple_of(4))
            .sum::<u64>();
    let blocks = entry_bytes.div_ceil(EXT4_BLOCK_BYTES - 12);
    if blocks > 1 { 2 * blocks + 1 } else { 1 }
}

/// The total size of a file's extended attributes as ext4 stores them
/// (16-byte entry header, name and value, each 4-byte aligned).
fn xattr_bytes(path: &Path) -> Result<u64, FilesystemError> {
    let io_error = |source| FilesystemError::Io {
        action: "read the extended attributes of",
        path: path.to_path_buf(),
        source,
    };
    let mut total = 0;
    for name in xattr::list(path).map_err(io_error)? {
        let value = xattr::get(path, &name)
            .map_err(io_error)?
            .unwrap_or_default();
        total += 16 + (name.len() as u64).next_multiple_of(4);
        total += (value.len() as u64).next_multiple_of(4);
    }
    Ok(total)
}

/// The shape of an ext4 image: what mke2fs is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Layout {
    /// The image size in bytes.
    pub bytes: u64,
    /// The number of inodes (`mke2fs -N`).
    pub inodes: u64,
    /// The journal size in MiB (`mke2fs -J size=`).
    pub journal_mib: u64,
}

/// Lays out an ext4 for `usage`. With [`SizeChoice::Auto`] the size is the
/// tree's blocks, plus the metadata for that size (inode tables, bitmaps,
/// superblock and group descriptor backups, reserved GDT blocks for online
/// growth), plus the journal, plus the headroom and a little slack,
/// rounded up to [`ALIGN_BYTES`]. The inode count leaves a quarter of the
/// tree's count free and never falls below one per
/// [`EXT4_INODE_RATIO_BYTES`].
pub fn ext4_layout(usage: &TreeUsage, size: SizeChoice) -> Ext4Layout {
    let journal_mib = match usage.content_bytes {
        0..=0x2000_0000 => JOURNAL_SMALL_MIB,
        0x2000_0001..=0x1_0000_0000 => JOURNAL_MEDIUM_MIB,
        _ => JOURNAL_LARGE_MIB,
    };
    let needed_inodes = EXT4_FIRST_FREE_INODE + usage.inodes;
    let inodes_for =
        |bytes: u64| (needed_inodes + needed_inodes / 4).max(bytes / EXT4_INODE_RATIO_BYTES);
    let headroom_bytes = match size {
        SizeChoice::Exact(bytes) => {
            // mke2fs refuses a journal of more than half the free blocks.
            let journal_mib = journal_mib.min((bytes / 4) >> 20).max(JOURNAL_MIN_MIB);
            return Ext4Layout {
                bytes,
                inodes: inodes_for(bytes),
                journal_mib,
            };
        }
        SizeChoice::Auto { headroom_bytes } => headroom_bytes,
    };
    let journal_blocks = (journal_mib << 20) / EXT4_BLOCK_BYTES;
    let fixed_blocks = usage.blocks
        + 1
        + EXT4_LOST_FOUND_BLOCKS
        + journal_blocks
        + headroom_bytes.div_ceil(EXT4_BLOCK_BYTES)
        + EXT4_SLACK_BLOCKS;
    let mut bytes = (fixed_blocks * EXT4_BLOCK_BYTES).next_multiple_of(ALIGN_BYTES);
    // The metadata grows with the size; a few rounds reach a size that
    // holds its own metadata.
    for _ in 0..32 {
        let blocks = bytes / EXT4_BLOCK_BYTES;
        let metadata = ext4_metadata_blocks(blocks, inodes_for(bytes));
        let slack = blocks / 200;
        let reserved = ext4_reserved_blocks(blocks);
        // mke2fs refuses a journal of more than half the free blocks.
        let needed = (fixed_blocks + metadata + slack + reserved)
            .max(metadata + 2 * journal_blocks + EXT4_SLACK_BLOCKS);
        let next = (needed * EXT4_BLOCK_BYTES).next_multiple_of(ALIGN_BYTES);
        if next <= bytes {
            break;
        }
        bytes = next;
    }
    Ext4Layout {
        bytes,
        inodes: inodes_for(bytes),
        journal_mib,
    }
}

/// Blocks mke2fs keeps for root in an ext4 of `blocks` blocks (it rounds
/// `blocks * 5 / 100` down; one more is counted to be safe).
fn ext4_reserved_blocks(blocks: u64) -> u64 {
    blocks * EXT4_RESERVED_PERCENT / 100 + 1
}

/// Blocks of an ext4 of `blocks` blocks and `inodes` inodes taken by
/// metadata other than the journal and directories.
fn ext4_metadata_blocks(blocks: u64, inodes: u64) -> u64 {
    let groups = blocks.div_ceil(EXT4_BLOCKS_PER_GROUP).max(1);
    let inodes_per_group = inodes.div_ceil(groups).next_multiple_of(16);
    let inode_tables = groups * inodes_per_group * EXT4_INODE_BYTES / EXT4_BLOCK_BYTES;
    let bitmaps = 2 * groups;
    let descriptor_blocks = groups.div_ceil(EXT4_DESCRIPTORS_PER_BLOCK);
    // mke2fs reserves descriptor blocks for growth to 1024 times the size
    // (at most 2^32 blocks), and no more than one block of pointers.
    let growth_groups = (blocks * 1024)
        .min(u64::from(u32::MAX))
        .div_ceil(EXT4_BLOCKS_PER_GROUP);
    let reserved_gdt = growth_groups
        .div_ceil(EXT4_DESCRIPTORS_PER_BLOCK)
        .saturating_sub(descriptor_blocks)
        .min(EXT4_BLOCK_BYTES / 4);
    let backups = (0..groups).filter(|&g| ext4_group_has_super(g)).count() as u64;
    // The resize inode's double-indirect block (its indirect blocks are
    // the reserved descriptor blocks themselves).
    let resize_inode = 1;
    inode_tables + bitmaps + backups * (1 + descriptor_blocks + reserved_gdt) + resize_inode
}

/// Whether block group `group` holds a superblock copy under
/// `sparse_super`: groups 0 and 1 and the powers of 3, 5 and 7.
fn ext4_group_has_super(group: u64) -> bool {
    if group <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut power = base;
        while power < group {
            power *= base;
        }
        power == group
    })
}

fn make_ext4(
    tree: Option<&Path>,
    spec: &FilesystemSpec,
    ids: &Ids,
    source_date_epoch: u64,
    placement: Placement<'_>,
    log: &mut dyn Write,
) -> Result<MadeFilesystem, FilesystemError> {
    let usage = match (spec.usage, tree) {
        (Some(usage), _) => usage,
        (None, Some(tree)) => TreeUsage::measure(tree)?,
        (None, None) => TreeUsage::default(),
    };
    let layout = ext4_layout(&usage, spec.size);
    let uuid = ids.uuid(&format!("ext4 uuid {}", spec.purpose)).to_string();
    debug_assert_eq!(
        filesystem_uuid(Filesystem::Ext4, spec.purpose, ids).as_deref(),
        Some(uuid.as_str())
    );
    let hash_seed = ids.uuid(&format!("ext4 hash seed {}", spec.purpose));
    prepare_placement(placement, layout.bytes, spec.purpose)?;
    // The tree's names and times, for the clamp after mke2fs, are read on
    // the other core while mke2fs runs.
    let (made, times) = std::thread::scope(|scope| {
        let walker = tree.map(|tree| scope.spawn(move || TreeTimes::read(tree)));
        let made = run_mke2fs(
            tree,
            spec,
            &layout,
            &uuid,
            &hash_seed.to_string(),
            source_date_epoch,
            placement,
            log,
        );
        let times = walker.map(|walker| {
            walker.join().unwrap_or_else(|_| {
                Err(FilesystemError::Unsupported {
                    kind: "ext4",
                    path: PathBuf::new(),
                    why: "reading the tree's times failed unexpectedly",
                })
            })
        });
        (made, times)
    });
    made?;
    if let Some(times) = times {
        run_debugfs_clamp_times(&times?, spec.purpose, source_date_epoch, placement, log)?;
    }
    Ok(MadeFilesystem {
        path: placement.file().to_path_buf(),
        offset_bytes: placement.offset_bytes(),
        bytes: layout.bytes,
        uuid: Some(uuid),
        label: spec.label.map(str::to_string),
    })
}

/// Runs mke2fs to write the ext4 at `placement` (a file already of the
/// right size, or a disk at least as long as the filesystem's end), copying
/// `tree` in with `-d`. The host's mke2fs.conf is replaced by kiln's, and
/// `E2FSPROGS_FAKE_TIME` sets the superblock's times. In a disk,
/// `-E offset=` places the filesystem and the size argument bounds it, and
/// mke2fs writes the same bytes it writes into a file of its own.
#[allow(clippy::too_many_arguments)]
fn run_mke2fs(
    tree: Option<&Path>,
    spec: &FilesystemSpec,
    layout: &Ext4Layout,
    uuid: &str,
    hash_seed: &str,
    source_date_epoch: u64,
    placement: Placement<'_>,
    log: &mut dyn Write,
) -> Result<(), FilesystemError> {
    let mut conf = tempfile::Builder::new()
        .prefix("kiln-mke2fs-")
        .suffix(".conf")
        .tempfile_in(crate::host::temp::dir())
        .map_err(|source| FilesystemError::Io {
            action: "create",
            path: crate::host::temp::dir().join("kiln-mke2fs-*.conf"),
            source,
        })?;
    conf.write_all(MKE2FS_CONF.as_bytes())
        .map_err(|source| FilesystemError::Io {
            action: "write",
            path: conf.path().to_path_buf(),
            source,
        })?;
    let mut args: Vec<OsString> = [
        "-q",
        "-F",
        "-t",
        "ext4",
        "-T",
        "default",
        "-b",
        "4096",
        "-I",
        "256",
        "-m",
        EXT4_RESERVED_TEXT,
        "-O",
        EXT4_FEATURES,
        "-U",
        uuid,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push("-N".into());
    args.push(layout.inodes.to_string().into());
    args.push("-J".into());
    args.push(format!("size={}", layout.journal_mib).into());
    // mke2fs keeps only the last -E, so every extended option goes in one.
    let mut extended = format!(
        "hash_seed={hash_seed},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard"
    );
    if let Placement::InDisk { offset_bytes, .. } = placement {
        extended.push_str(&format!(",offset={offset_bytes}"));
    }
    args.push("-E".into());
    args.push(extended.into());
    if let Some(label) = spec.label {
        args.push("-L".into());
        args.push(label.into());
    }
    if let Some(tree) = tree {
        args.push("-d".into());
        args.push(tree.into());
    }
    args.push(placement.file().into());
    args.push(format!("{}k", layout.bytes / 1024).into());
    let env = [
        (
            "E2FSPROGS_FAKE_TIME",
            OsString::from(source_date_epoch.to_string()),
        ),
        ("MKE2FS_CONFIG", conf.path().as_os_str().to_os_string()),
    ];
    run_checked(log, spec.purpose, &env, "mke2fs", &args, "e2fsprogs")?;
    Ok(())
}

/// Sets every inode's atime, ctime and crtime in the finished ext4 to
/// `source_date_epoch`, and its mtime too where the tree's is newer, with
/// two debugfs runs: one read-only that lists each directory (`ls -p`) for
/// the inode numbers, then one `debugfs -w` whose script sets the fields by
/// inode number. `mke2fs -d` copies the source files' atime and ctime,
/// which change whenever anything reads or touches the tree, so without
/// this two builds of the same tree differ. Setting fields by path instead
/// would look each name up again, and directories written by `mke2fs -d`
/// are unindexed: a real root (`/usr/share/man/man1` holds thousands of
/// names) took minutes that way. The nanosecond parts are zeroed first
/// (setting the seconds keeps them).
/// The tree's directories (relative, the root first) and every entry's
/// mtime, which [`run_debugfs_clamp_times`] matches against the new
/// filesystem.
struct TreeTimes {
    dirs: Vec<PathBuf>,
    mtimes: BTreeMap<PathBuf, i64>,
}

impl TreeTimes {
    fn read(tree: &Path) -> Result<TreeTimes, FilesystemError> {
        let mut dirs = vec![PathBuf::new()];
        let mut mtimes = BTreeMap::new();
        for_each_below(tree, &mut |path, meta| {
            let relative = path.strip_prefix(tree).unwrap_or(path).to_path_buf();
            if debugfs_quote(&relative).is_none() {
                return Err(FilesystemError::Unsupported {
                    kind: "ext4",
                    path: path.to_path_buf(),
                    why: "its name holds a line break, which debugfs cannot name",
                });
            }
            if meta.is_dir() {
                dirs.push(relative.clone());
            }
            mtimes.insert(relative, meta.mtime());
            Ok(())
        })?;
        Ok(TreeTimes { dirs, mtimes })
    }
}

fn run_debugfs_clamp_times(
    times: &TreeTimes,
    purpose: &str,
    source_date_epoch: u64,
    placement: Placement<'_>,
    log: &mut dyn Write,
) -> Result<(), FilesystemError> {
    let out = &libext2fs_name(placement);
    let TreeTimes { dirs, mtimes } = times;
    let mut listing_script = Vec::new();
    for dir in dirs {
        listing_script.extend_from_slice(b"ls -p ");
        listing_script.extend(debugfs_quote(dir).unwrap_or_default());
        listing_script.push(b'\n');
    }
    let listing = run_debugfs_script(&listing_script, false, purpose, source_date_epoch, out, log)?;
    let inodes = debugfs_inodes(&listing, dirs, mtimes, source_date_epoch).ok_or_else(|| {
        FilesystemError::Failed {
            program: "debugfs".to_string(),
            purpose: purpose.to_string(),
            status: "its listing of the new filesystem does not match the tree".to_string(),
            stderr: String::new(),
        }
    })?;
    let script = debugfs_clamp_script(&inodes, source_date_epoch);
    run_debugfs_script(&script, true, purpose, source_date_epoch, out, log)?;
    Ok(())
}

/// The name libext2fs tools (debugfs, e2fsck, dumpe2fs) open the ext4 at
/// `placement` by: the file, with `?offset=<bytes>` for a filesystem
/// inside a disk (the unix I/O manager's option; a file name holding `?`
/// would be cut there, as it always was).
pub fn libext2fs_name(placement: Placement<'_>) -> OsString {
    let mut name = placement.file().as_os_str().to_os_string();
    if let Placement::InDisk { offset_bytes, .. } = placement {
        name.push(format!("?offset={offset_bytes}"));
    }
    name
}

/// Runs debugfs with `script` (`-w` if `write`) on `out` (a name as
/// [`libext2fs_name`] makes it) and returns its stdout. debugfs exits 0 even when a command of its script fails, so
/// anything on stderr besides its banner is taken as a failure.
fn run_debugfs_script(
    script: &[u8],
    write: bool,
    purpose: &str,
    source_date_epoch: u64,
    out: &OsStr,
    log: &mut dyn Write,
) -> Result<Vec<u8>, FilesystemError> {
    let mut file = tempfile::Builder::new()
        .prefix("kiln-debugfs-")
        .tempfile_in(crate::host::temp::dir())
        .map_err(|source| FilesystemError::Io {
            action: "create",
            path: crate::host::temp::dir().join("kiln-debugfs-*"),
            source,
        })?;
    file.write_all(script)
        .map_err(|source| FilesystemError::Io {
            action: "write",
            path: file.path().to_path_buf(),
            source,
        })?;
    let mut args = vec![OsStr::new("-f"), file.path().as_os_str(), out];
    if write {
        args.insert(0, OsStr::new("-w"));
    }
    let env = [(
        "E2FSPROGS_FAKE_TIME",
        OsString::from(source_date_epoch.to_string()),
    )];
    let finished = run_checked(log, purpose, &env, "debugfs", &args, "e2fsprogs")?;
    let complaints: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("debugfs "))
        .collect();
    if !complaints.is_empty() {
        return Err(FilesystemError::Failed {
            program: "debugfs".to_string(),
            purpose: purpose.to_string(),
            status: "a command of its script failed".to_string(),
            stderr: complaints.join("\n"),
        });
    }
    Ok(finished.stdout)
}

/// Reads the output of `ls -p` for each of `dirs` (in that order, each
/// introduced by debugfs' echo of the command) into the inode numbers of
/// the filesystem, each with whether its mtime is to be set (its source's
/// mtime, looked up in `mtimes`, is newer than the epoch). Root and
/// lost+found are in, hard links count once. `None` when the listing does
/// not name exactly the tree's files.
fn debugfs_inodes(
    listing: &[u8],
    dirs: &[PathBuf],
    mtimes: &BTreeMap<PathBuf, i64>,
    source_date_epoch: u64,
) -> Option<BTreeMap<u64, bool>> {
    let newer = |mtime: i64| mtime > source_date_epoch as i64;
    let mut inodes = BTreeMap::from([(2, true)]);
    let mut dir: Option<&PathBuf> = None;
    let mut listed = 0;
    let mut next_dir = dirs.iter();
    for line in listing.split(|&b| b == b'\n') {
        if line.starts_with(b"debugfs: ") {
            dir = Some(next_dir.next()?);
            continue;
        }
        let Some(fields) = line.strip_prefix(b"/").and_then(|l| l.strip_suffix(b"/")) else {
            continue;
        };
        let mut parts = fields.splitn(5, |&b| b == b'/');
        let inode: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let (_mode, _uid, _gid) = (parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next()?;
        let name = &rest[..rest.iter().rposition(|&b| b == b'/')?];
        if name == b"." || name == b".." {
            continue;
        }
        let path = dir?.join(OsStr::from_bytes(name));
        let clamp_mtime = match mtimes.get(&path) {
            Some(&mtime) => newer(mtime),
            None if path.as_os_str() == "lost+found" => true,
            None => return None,
        };
        listed += 1;
        inodes.insert(inode, clamp_mtime);
    }
    let expected = mtimes.len() + usize::from(!mtimes.contains_key(Path::new("lost+found")));
    (next_dir.next().is_none() && listed == expected).then_some(inodes)
}

/// The debugfs script that sets the times of `inodes` (number, and whether
/// to set the mtime too) with `sif <number>`.
fn debugfs_clamp_script(inodes: &BTreeMap<u64, bool>, source_date_epoch: u64) -> Vec<u8> {
    let mut script = String::new();
    for (&inode, &clamp_mtime) in inodes {
        let mut fields = vec!["atime", "ctime", "crtime"];
        if clamp_mtime {
            fields.push("mtime");
        }
        for field in fields {
            script.push_str(&format!("sif <{inode}> {field}_extra 0\n"));
            script.push_str(&format!("sif <{inode}> {field} @{source_date_epoch}\n"));
        }
    }
    script.into_bytes()
}

/// `relative` as an absolute path in debugfs' quoting, or `None` if a name
/// holds a line break.
fn debugfs_quote(relative: &Path) -> Option<Vec<u8>> {
    let bytes = relative.as_os_str().as_bytes();
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        return None;
    }
    let mut quoted = b"\"/".to_vec();
    for &byte in bytes {
        if byte == b'"' {
            quoted.push(b'"');
        }
        quoted.push(byte);
    }
    quoted.push(b'"');
    Some(quoted)
}

fn make_vfat(
    tree: Option<&Path>,
    spec: &FilesystemSpec,
    ids: &Ids,
    source_date_epoch: u64,
    out: &Path,
    log: &mut dyn Write,
) -> Result<MadeFilesystem, FilesystemError> {
    let content = match tree {
        Some(tree) => FatTree::read(tree)?,
        None => FatTree::default(),
    };
    let bytes = match spec.size {
        SizeChoice::Exact(bytes) => bytes,
        SizeChoice::Auto { headroom_bytes } => vfat_auto_size(content.bytes, headroom_bytes),
    };
    let volume_id = vfat_volume_id(spec.purpose, ids);
    create_image_file(out, bytes)?;
    run_mkfs_vfat(spec, volume_id, out, log)?;
    run_mtools_copy(&content, spec.purpose, source_date_epoch, out, log)?;
    let hex = format!("{volume_id:08X}");
    Ok(MadeFilesystem {
        path: out.to_path_buf(),
        offset_bytes: 0,
        bytes,
        uuid: Some(format!("{}-{}", &hex[..4], &hex[4..])),
        label: spec.label.map(str::to_string),
    })
}

/// The size `size: auto` gives a vfat holding `content_bytes` (as counted
/// by [`FatTree`]) with `headroom_bytes` free: both, plus the two FATs
/// (4 bytes for each 512-byte cluster at worst), rounded up to
/// [`ALIGN_BYTES`], and never below [`FAT32_MIN_BYTES`].
pub fn vfat_auto_size(content_bytes: u64, headroom_bytes: u64) -> u64 {
    let data = content_bytes + headroom_bytes + ALIGN_BYTES;
    let fats = 2 * 4 * data.div_ceil(512);
    (data + fats)
        .next_multiple_of(ALIGN_BYTES)
        .max(FAT32_MIN_BYTES)
}

/// A tree to copy into a vfat: directories parents first, and the files of
/// each directory, all in byte order of their names so the FAT directories
/// come out the same on every host.
#[derive(Debug, Default)]
struct FatTree {
    /// Directories below the root, as paths relative to it.
    dirs: Vec<PathBuf>,
    /// Files by their directory (relative, `""` for the root): each with
    /// its path in the tree and its mtime.
    files: BTreeMap<PathBuf, Vec<(PathBuf, i64)>>,
    /// Bytes the content takes at [`FAT_CLUSTER_BYTES`] clusters,
    /// directories included.
    bytes: u64,
}

impl FatTree {
    fn read(tree: &Path) -> Result<FatTree, FilesystemError> {
        let mut content = FatTree {
            bytes: fat_dir_bytes(&read_names(tree)?),
            ..FatTree::default()
        };
        for_each_below(tree, &mut |path, meta| {
            let relative = path.strip_prefix(tree).unwrap_or(path).to_path_buf();
            if meta.is_dir() {
                let names = read_names(path)?;
                let mut lower: Vec<String> = names
                    .iter()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .collect();
                lower.sort();
                if lower.windows(2).any(|pair| pair[0] == pair[1]) {
                    return Err(FilesystemError::Unsupported {
                        kind: "vfat",
                        path: path.to_path_buf(),
                        why: "two of its entries differ only in case",
                    });
                }
                content.bytes += fat_dir_bytes(&names);
                content.dirs.push(relative);
            } else if meta.is_file() {
                content.bytes += meta.len().next_multiple_of(FAT_CLUSTER_BYTES);
                let parent = relative.parent().unwrap_or(Path::new("")).to_path_buf();
                content
                    .files
                    .entry(parent)
                    .or_default()
                    .push((path.to_path_buf(), meta.mtime()));
            } else {
                return Err(FilesystemError::Unsupported {
                    kind: "vfat",
                    path: path.to_path_buf(),
                    why: "vfat holds only regular files and directories",
                });
            }
            Ok(())
        })?;
        Ok(content)
    }
}

/// Bytes a FAT directory holding `names` takes: an 8.3 entry and the long
/// name entries for each, plus `.` and `..`, in whole clusters.
fn fat_dir_bytes(names: &[OsString]) -> u64 {
    let entries: u64 = 2 + names
        .iter()
        .map(|n| {
            let units = n.to_string_lossy().encode_utf16().count() as u64;
            1 + units.div_ceil(FAT_LFN_CHARS_PER_ENTRY)
        })
        .sum::<u64>();
    (entries * FAT_DIRENT_BYTES).next_multiple_of(FAT_CLUSTER_BYTES)
}

/// Runs mkfs.vfat to write an empty FAT32 into `out`. `--invariant` fixes
/// the times and the boot sector's serial fields; `-i` then sets the volume
/// id kiln derives.
fn run_mkfs_vfat(
    spec: &FilesystemSpec,
    volume_id: u32,
    out: &Path,
    log: &mut dyn Write,
) -> Result<(), FilesystemError> {
    let mut args: Vec<OsString> = vec!["-F".into(), "32".into()];
    if let Some(label) = spec.label {
        args.push("-n".into());
        args.push(label.into());
    }
    // `--invariant` sets a fixed volume id of its own, so `-i` follows.
    args.push("--invariant".into());
    args.push("-i".into());
    args.push(format!("{volume_id:08x}").into());
    args.push(out.into());
    run_checked(log, spec.purpose, &[], "mkfs.vfat", &args, "dosfstools")?;
    Ok(())
}

/// Runs mtools to copy `content` into the vfat at `out`: one `mmd` for all
/// directories, then `mcopy` for each directory's files in name order.
/// mtools stamps new entries with `SOURCE_DATE_EPOCH`; a file whose mtime
/// is not newer keeps it (`-m`), so every time is clamped to the epoch.
/// `TZ=UTC` because FAT stores local time.
fn run_mtools_copy(
    content: &FatTree,
    purpose: &str,
    source_date_epoch: u64,
    out: &Path,
    log: &mut dyn Write,
) -> Result<(), FilesystemError> {
    let env = [
        ("MTOOLS_SKIP_CHECK", OsString::from("1")),
        (
            "SOURCE_DATE_EPOCH",
            OsString::from(source_date_epoch.to_string()),
        ),
        ("TZ", OsString::from("UTC")),
    ];
    let image = out.as_os_str();
    let fat_path = |relative: &Path| {
        let mut path = OsString::from("::/");
        path.push(relative.as_os_str());
        path
    };
    if !content.dirs.is_empty() {
        let mut args: Vec<OsString> = vec!["-i".into(), image.into()];
        args.extend(content.dirs.iter().map(|d| fat_path(d)));
        run_checked(log, purpose, &env, "mmd", &args, "mtools")?;
    }
    for (dir, files) in &content.files {
        let mut target = fat_path(dir);
        if !dir.as_os_str().is_empty() {
            target.push("/");
        }
        // Consecutive files that keep their mtime go in one mcopy, those
        // stamped with the epoch in another, so names stay in order.
        for run in files
            .chunk_by(|a, b| (a.1 <= source_date_epoch as i64) == (b.1 <= source_date_epoch as i64))
        {
            let mut args: Vec<OsString> = vec!["-i".into(), image.into(), "-p".into()];
            if run[0].1 <= source_date_epoch as i64 {
                args.push("-m".into());
            }
            args.extend(run.iter().map(|(path, _)| path.as_os_str().to_os_string()));
            args.push(target.clone());
            run_checked(log, purpose, &env, "mcopy", &args, "mtools")?;
        }
    }
    Ok(())
}

fn make_swap(
    tree: Option<&Path>,
    spec: &FilesystemSpec,
    ids: &Ids,
    out: &Path,
    log: &mut dyn Write,
) -> Result<MadeFilesystem, FilesystemError> {
    if let Some(tree) = tree {
        return Err(FilesystemError::Unsupported {
            kind: "swap",
            path: tree.to_path_buf(),
            why: "swap holds no files",
        });
    }
    let bytes = match spec.size {
        SizeChoice::Exact(bytes) => bytes,
        SizeChoice::Auto { headroom_bytes } => headroom_bytes
            .next_multiple_of(ALIGN_BYTES)
            .max(SWAP_MIN_BYTES),
    };
    let uuid = ids.uuid(&format!("swap uuid {}", spec.purpose)).to_string();
    create_image_file(out, bytes)?;
    let mut args: Vec<OsString> = vec!["-U".into(), uuid.clone().into()];
    if let Some(label) = spec.label {
        args.push("-L".into());
        args.push(label.into());
    }
    args.push(out.into());
    run_checked(log, spec.purpose, &[], "mkswap", &args, "util-linux")?;
    Ok(MadeFilesystem {
        path: out.to_path_buf(),
        offset_bytes: 0,
        bytes,
        uuid: Some(uuid),
        label: spec.label.map(str::to_string),
    })
}

fn make_xfs(
    tree: Option<&Path>,
    spec: &FilesystemSpec,
    ids: &Ids,
    source_date_epoch: u64,
    out: &Path,
    log: &mut dyn Write,
) -> Result<MadeFilesystem, FilesystemError> {
    if tree.is_some() {
        return Err(FilesystemError::XfsWithContent {
            purpose: spec.purpose.to_string(),
        });
    }
    let bytes = match spec.size {
        SizeChoice::Exact(bytes) => bytes,
        SizeChoice::Auto { headroom_bytes } => headroom_bytes
            .next_multiple_of(ALIGN_BYTES)
            .max(XFS_MIN_BYTES),
    };
    let uuid = ids.uuid(&format!("xfs uuid {}", spec.purpose)).to_string();
    create_image_file(out, bytes)?;
    let mut args: Vec<OsString> = vec!["-q".into(), "-m".into(), format!("uuid={uuid}").into()];
    if let Some(label) = spec.label {
        args.push("-L".into());
        args.push(label.into());
    }
    args.push(out.into());
    run_checked(log, spec.purpose, &[], "mkfs.xfs", &args, "xfsprogs")?;
    run_xfs_db_clamp_times(spec.purpose, source_date_epoch, out, log)?;
    Ok(MadeFilesystem {
        path: out.to_path_buf(),
        offset_bytes: 0,
        bytes,
        uuid: Some(uuid),
        label: spec.label.map(str::to_string),
    })
}

/// Runs xfs_db to set the times of the inodes mkfs.xfs makes (root,
/// realtime bitmap and summary), which it stamps with the clock, to
/// `source_date_epoch`. With `bigtime` (the default since xfsprogs 5.15)
/// xfs_db 6.1 writes a `.sec` field as the raw on-disk value, nanoseconds
/// since 1901-12-13T20:45:52Z, so kiln writes that.
fn run_xfs_db_clamp_times(
    purpose: &str,
    source_date_epoch: u64,
    out: &Path,
    log: &mut dyn Write,
) -> Result<(), FilesystemError> {
    let args = [
        OsStr::new("-r"),
        OsStr::new("-c"),
        OsStr::new("sb 0"),
        OsStr::new("-c"),
        OsStr::new("print rootino rbmino rsumino"),
        OsStr::new("-c"),
        OsStr::new("version"),
        out.as_os_str(),
    ];
    let finished = run_checked(log, purpose, &[], "xfs_db", &args, "xfsprogs")?;
    let stdout = String::from_utf8_lossy(&finished.stdout);
    let inodes: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .filter(|(name, _)| matches!(name.trim(), "rootino" | "rbmino" | "rsumino"))
        .map(|(_, value)| value.trim())
        .collect();
    let bigtime = stdout.contains("BIGTIME");
    let (seconds, nanoseconds) = if bigtime {
        ((source_date_epoch + (1 << 31)) * 1_000_000_000, None)
    } else {
        (source_date_epoch, Some(0))
    };
    let mut args: Vec<OsString> = vec!["-x".into()];
    for inode in inodes {
        args.push("-c".into());
        args.push(format!("inode {inode}").into());
        for field in ["core.atime", "core.mtime", "core.ctime", "v3.crtime"] {
            args.push("-c".into());
            args.push(format!("write {field}.sec {seconds}").into());
            if let Some(nanoseconds) = nanoseconds {
                args.push("-c".into());
                args.push(format!("write {field}.nsec {nanoseconds}").into());
            }
        }
    }
    args.push(out.into());
    run_checked(log, purpose, &[], "xfs_db", &args, "xfsprogs")?;
    Ok(())
}

/// Readies `placement` for a filesystem of `bytes`: a new file is made
/// ([`create_image_file`]); a disk must reach the filesystem's end.
fn prepare_placement(
    placement: Placement<'_>,
    bytes: u64,
    purpose: &str,
) -> Result<(), FilesystemError> {
    match placement {
        Placement::File(path) => create_image_file(path, bytes),
        Placement::InDisk { disk, offset_bytes } => {
            let file_bytes = fs_err::metadata(disk)?.len();
            let end_bytes = offset_bytes + bytes;
            if file_bytes < end_bytes {
                return Err(FilesystemError::DiskTooShort {
                    purpose: purpose.to_string(),
                    path: disk.to_path_buf(),
                    file_bytes,
                    end_bytes,
                });
            }
            Ok(())
        }
    }
}

/// Replaces `out` with a sparse file of `bytes` zeros, so nothing of an
/// earlier file survives in blocks the tools leave unwritten.
fn create_image_file(out: &Path, bytes: u64) -> Result<(), FilesystemError> {
    match fs_err::remove_file(out) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    fs_err::File::create_new(out)?.set_len(bytes)?;
    Ok(())
}

/// Runs `program` with exactly `env` besides `PATH` and `LC_ALL=C` (a
/// cleared environment, so variables of the host such as
/// `MKE2FS_DEVICE_SECTSIZE` or `MTOOLSRC` cannot change the image), logs
/// the command and its outcome, and turns a failure into
/// [`FilesystemError::Failed`] with its stderr.
fn run_checked<S: AsRef<OsStr>>(
    log: &mut dyn Write,
    purpose: &str,
    env: &[(&str, OsString)],
    program: &str,
    args: &[S],
    package: &str,
) -> Result<Finished, FilesystemError> {
    let shown: Vec<String> = env
        .iter()
        .map(|(name, value)| format!("{name}={}", value.to_string_lossy()))
        .chain(std::iter::once(program.to_string()))
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect();
    writeln!(log, "$ {}", shown.join(" ")).map_err(FilesystemError::Log)?;
    let finished = command::Program::new(program, package)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .env("LC_ALL", "C")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .args(args)
        .run()?;
    let status = match finished.code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    };
    writeln!(log, "  → {status}").map_err(FilesystemError::Log)?;
    if !finished.stderr.trim().is_empty() {
        for line in finished.stderr.lines() {
            writeln!(log, "  {line}").map_err(FilesystemError::Log)?;
        }
    }
    if !finished.success() {
        return Err(FilesystemError::Failed {
            program: program.to_string(),
            purpose: purpose.to_string(),
            status,
            stderr: finished.stderr,
        });
    }
    Ok(finished)
}

/// The names in directory `dir`.
fn read_names(dir: &Path) -> Result<Vec<OsString>, FilesystemError> {
    let mut names = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Calls `visit` for everything below `root` (not `root` itself), parents
/// before children, names in byte order, without following symlinks.
fn for_each_below(
    root: &Path,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<(), FilesystemError>,
) -> Result<(), FilesystemError> {
    let io_error = |action| {
        move |error| {
            let (path, source) = walk::failure(error, root);
            FilesystemError::Io {
                action,
                path,
                source,
            }
        }
    };
    for entry in walk::tree_sorted(root).min_depth(1) {
        let entry = entry.map_err(io_error("read the directory"))?;
        let meta = entry.metadata().map_err(io_error("read the metadata of"))?;
        visit(entry.path(), &meta)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::symlink;
    use std::time::Instant;

    /// 2020-09-13T12:26:40Z.
    const EPOCH: u64 = 1_600_000_000;
    const EPOCH_HEX: &str = "0x5f5e1000";
    const EPOCH_TEXT: &str = "Sun Sep 13 12:26:40 2020";
    /// 2017-07-14T02:40:00Z, older than the epoch: kept as it is.
    const OLD: u64 = 1_500_000_000;
    const OLD_HEX: &str = "0x59682f00";
    const ODD_NAME: &str = "odd name \"quoted\" #hash\ttab\\back";

    fn ids() -> Ids {
        Ids::from_lock_text("filesystem tests")
    }

    /// Runs a host tool for a test, under `TZ=UTC`. A missing tool fails
    /// the test.
    fn tool(program: &str, args: &[&OsStr]) -> Finished {
        let mut full: Vec<&OsStr> = vec![OsStr::new("TZ=UTC"), OsStr::new(program)];
        full.extend_from_slice(args);
        let finished = command::run("env", &full, "coreutils").expect("env runs");
        assert_ne!(
            finished.code,
            Some(127),
            "`{program}` is missing: {}",
            finished.stderr
        );
        finished
    }

    fn tool_ok(program: &str, args: &[&OsStr]) -> String {
        let finished = tool(program, args);
        assert!(
            finished.success(),
            "{program} {args:?} failed ({:?}):\n{}\n{}",
            finished.code,
            String::from_utf8_lossy(&finished.stdout),
            finished.stderr
        );
        String::from_utf8_lossy(&finished.stdout).into_owned()
    }

    fn os(text: &str) -> &OsStr {
        OsStr::new(text)
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests make files owned by other users and must run as root"
        );
    }

    fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
    }

    fn set_mtime(path: &Path, seconds: u64) {
        tool_ok(
            "touch",
            &[
                os("-h"),
                os("-m"),
                os(&format!("--date=@{seconds}")),
                path.as_os_str(),
            ],
        );
    }

    /// Every kind of thing a root tree holds, and the traps: setuid, other
    /// owners, short and long symlinks, a hard-linked pair, extended
    /// attributes (small and too large for the inode), a name debugfs must
    /// quote, a name that is not UTF-8, a fifo, a socket, an old mtime, and
    /// `small_files` small files in directories of several blocks.
    fn fixture(root: &Path, small_files: usize) {
        use std::os::unix::fs::PermissionsExt;
        let tool_path = root.join("usr/bin/tool");
        write(&tool_path, b"#!/bin/sh\n");
        std::os::unix::fs::chown(&tool_path, Some(0), Some(0)).expect("chown");
        fs::set_permissions(&tool_path, fs::Permissions::from_mode(0o4755)).expect("chmod");
        let owned = root.join("etc/owned");
        write(&owned, b"owned\n");
        std::os::unix::fs::chown(&owned, Some(1234), Some(5678)).expect("chown");
        xattr::set(&owned, "user.kiln", b"hello").expect("setxattr");
        let big = root.join("etc/big-xattr");
        write(&big, b"big\n");
        xattr::set(&big, "user.big", &[b'x'; 200]).expect("setxattr");
        symlink("../usr/bin/tool", root.join("etc/link")).expect("symlink");
        symlink(
            "/".to_string() + &"long/".repeat(20) + "target",
            root.join("etc/longlink"),
        )
        .expect("symlink");
        write(&root.join("a/one"), b"linked\n");
        fs::hard_link(root.join("a/one"), root.join("a/two")).expect("link");
        write(&root.join("a").join(ODD_NAME), b"odd\n");
        write(
            &root.join("a").join(OsStr::from_bytes(b"latin1-\xe9")),
            b"e\n",
        );
        write(&root.join("a/empty"), b"");
        write(&root.join("a/old"), b"old\n");
        set_mtime(&root.join("a/old"), OLD);
        nix::unistd::mkfifo(
            &root.join("a/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        let _socket = std::os::unix::net::UnixListener::bind(root.join("a/socket")).expect("bind");
        for i in 0..small_files {
            let name = format!(
                "share/doc/package-with-a-longish-name-{:03}/file-{i}",
                i % 40
            );
            write(
                &root.join(name),
                format!("{i}\n").repeat(i % 300).as_bytes(),
            );
        }
    }

    fn build_ext4(tree: Option<&Path>, size: SizeChoice, out: &Path) -> MadeFilesystem {
        let spec = FilesystemSpec {
            kind: Filesystem::Ext4,
            label: Some("cloudimg-rootfs"),
            size,
            purpose: "root",
            usage: None,
        };
        let mut log = Vec::new();
        let made = make_filesystem(tree, &spec, &ids(), EPOCH, Placement::File(out), &mut log);
        made.unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)))
    }

    fn sha256(path: &Path) -> String {
        hex::encode(Sha256::digest(fs::read(path).expect("read image")))
    }

    /// Changes the atime and ctime of everything in `tree`, as reading or
    /// copying the tree between two builds does.
    fn touch_atimes(tree: &Path) {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        tool_ok(
            "find",
            &[
                tree.as_os_str(),
                os("-exec"),
                os("touch"),
                os("-a"),
                os("-h"),
                os("{}"),
                os("+"),
            ],
        );
    }

    fn debugfs(image: &Path, request: &str) -> String {
        tool_ok("debugfs", &[os("-R"), os(request), image.as_os_str()])
    }

    /// The whitespace-separated word after `label` in debugfs' output.
    fn word_after<'a>(text: &'a str, label: &str) -> &'a str {
        let at = text
            .find(label)
            .unwrap_or_else(|| panic!("no `{label}` in\n{text}"));
        text[at + label.len()..]
            .split_whitespace()
            .next()
            .unwrap_or("")
    }

    fn assert_e2fsck_clean(image: &Path) {
        tool_ok("e2fsck", &[os("-fn"), image.as_os_str()]);
    }

    #[test]
    fn sparse_super_groups_are_0_1_and_powers_of_3_5_7() {
        let with: Vec<u64> = (0..100).filter(|&g| ext4_group_has_super(g)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn debugfs_quoting_doubles_quotes_and_refuses_line_breaks() {
        assert_eq!(
            debugfs_quote(Path::new("a b/c\"d")).as_deref(),
            Some(&b"\"/a b/c\"\"d\""[..])
        );
        assert_eq!(debugfs_quote(Path::new("")).as_deref(), Some(&b"\"/\""[..]));
        assert_eq!(debugfs_quote(Path::new("a\nb")), None);
    }

    #[test]
    fn ext4_layout_of_an_empty_tree_is_the_journal_and_headroom() {
        let layout = ext4_layout(
            &TreeUsage::default(),
            SizeChoice::Auto { headroom_bytes: 0 },
        );
        assert_eq!(layout.journal_mib, JOURNAL_SMALL_MIB);
        assert_eq!(layout.bytes % ALIGN_BYTES, 0);
        assert!(layout.bytes >= JOURNAL_SMALL_MIB << 20);
        // mke2fs wants free blocks for twice the journal.
        assert!(
            layout.bytes <= (2 * JOURNAL_SMALL_MIB + 4) << 20,
            "{layout:?}"
        );
        let exact = ext4_layout(&TreeUsage::default(), SizeChoice::Exact(1 << 30));
        assert_eq!(exact.bytes, 1 << 30);
        assert_eq!(exact.inodes, (1 << 30) / EXT4_INODE_RATIO_BYTES);
    }

    #[test]
    fn ext4_layout_is_the_tree_plus_metadata_journal_and_headroom() {
        for (blocks, inodes, headroom) in [
            (1u64, 1u64, 0u64),
            (10_000, 5_000, 64 << 20),
            (400_000, 40_000, 512 << 20),
            (2_000_000, 150_000, 0),
            (2_000_000, 1_500_000, 1 << 30),
        ] {
            let usage = TreeUsage {
                blocks,
                inodes,
                content_bytes: blocks * EXT4_BLOCK_BYTES,
            };
            let layout = ext4_layout(
                &usage,
                SizeChoice::Auto {
                    headroom_bytes: headroom,
                },
            );
            let blocks_total = layout.bytes / EXT4_BLOCK_BYTES;
            assert_eq!(layout.bytes % ALIGN_BYTES, 0);
            assert!(
                layout.inodes >= inodes + inodes / 4 + EXT4_FIRST_FREE_INODE,
                "{layout:?}"
            );
            assert!(
                layout.inodes >= layout.bytes / EXT4_INODE_RATIO_BYTES,
                "{layout:?}"
            );
            // It holds the tree, its metadata, the journal, root's reserve
            // and the headroom.
            let needed = blocks
                + ext4_metadata_blocks(blocks_total, layout.inodes)
                + layout.journal_mib * 256
                + blocks_total * EXT4_RESERVED_PERCENT / 100
                + headroom / EXT4_BLOCK_BYTES;
            assert!(blocks_total >= needed, "{usage:?} {layout:?}");
            // And not much more: inode tables, one bitmap block pair and
            // superblock copy per group, 3% for reserved GDT blocks and
            // slack, root's reserve, and 2 MiB.
            let groups = blocks_total.div_ceil(EXT4_BLOCKS_PER_GROUP);
            let bound = (blocks
                + layout.inodes / 16
                + 3 * groups
                + blocks_total * (3 + EXT4_RESERVED_PERCENT) / 100
                + 512)
                * EXT4_BLOCK_BYTES
                + (layout.journal_mib << 20)
                + headroom;
            // Small trees need room for twice the journal instead.
            let bound = bound.max((2 * layout.journal_mib + 4) << 20);
            assert!(layout.bytes <= bound, "{usage:?} {layout:?} > {bound}");
        }
    }

    #[test]
    fn vfat_auto_size_is_at_least_fat32s_minimum() {
        assert_eq!(vfat_auto_size(0, 0), FAT32_MIN_BYTES);
        let size = vfat_auto_size(100 << 20, 20 << 20);
        assert_eq!(size % ALIGN_BYTES, 0);
        assert!(((120 << 20)..=(125 << 20)).contains(&size), "{size}");
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn ext4_image_keeps_modes_owners_links_and_xattrs() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("tree");
        fixture(&tree, 50);
        let image = scratch.path().join("root.ext4");
        let made = build_ext4(
            Some(&tree),
            SizeChoice::Auto {
                headroom_bytes: 4 << 20,
            },
            &image,
        );
        let uuid = ids().uuid("ext4 uuid root").to_string();
        assert_eq!(made.uuid.as_deref(), Some(uuid.as_str()));
        assert_eq!(fs::metadata(&image).expect("image").len(), made.bytes);
        assert_e2fsck_clean(&image);

        let super_block = tool_ok("dumpe2fs", &[os("-h"), image.as_os_str()]);
        assert_eq!(
            word_after(&super_block, "Filesystem volume name:"),
            "cloudimg-rootfs"
        );
        assert_eq!(word_after(&super_block, "Filesystem UUID:"), uuid);
        let seed = ids().uuid("ext4 hash seed root").to_string();
        assert_eq!(word_after(&super_block, "Directory Hash Seed:"), seed);
        let features = super_block
            .lines()
            .find(|l| l.starts_with("Filesystem features:"))
            .expect("features");
        for feature in [
            "64bit",
            "resize_inode",
            "metadata_csum",
            "extent",
            "flex_bg",
        ] {
            assert!(
                features.split_whitespace().any(|f| f == feature),
                "{features}"
            );
        }
        for line in ["Filesystem created:", "Last write time:", "Last checked:"] {
            let shown = super_block
                .lines()
                .find(|l| l.starts_with(line))
                .expect(line);
            assert!(shown.ends_with(EPOCH_TEXT), "{shown}");
        }
        assert!(
            super_block.contains("Last mount time:          n/a"),
            "{super_block}"
        );

        let setuid = debugfs(&image, "stat /usr/bin/tool");
        assert_eq!(word_after(&setuid, "Mode:"), "04755");
        assert_eq!(word_after(&setuid, "User:"), "0");
        let owned = debugfs(&image, "stat /etc/owned");
        assert_eq!(word_after(&owned, "User:"), "1234");
        assert_eq!(word_after(&owned, "Group:"), "5678");
        for time in ["ctime:", "atime:", "mtime:", "crtime:"] {
            assert_eq!(
                word_after(&owned, time),
                format!("{EPOCH_HEX}:00000000"),
                "{owned}"
            );
        }
        let old = debugfs(&image, "stat /a/old");
        assert_eq!(
            word_after(&old, "mtime:"),
            format!("{OLD_HEX}:00000000"),
            "{old}"
        );
        assert_eq!(
            word_after(&old, "ctime:"),
            format!("{EPOCH_HEX}:00000000"),
            "{old}"
        );
        let odd = debugfs(
            &image,
            &format!("stat \"/a/{}\"", ODD_NAME.replace('"', "\"\"")),
        );
        assert_eq!(
            word_after(&odd, "ctime:"),
            format!("{EPOCH_HEX}:00000000"),
            "{odd}"
        );
        let root = debugfs(&image, "stat /");
        assert_eq!(
            word_after(&root, "crtime:"),
            format!("{EPOCH_HEX}:00000000"),
            "{root}"
        );

        let link = debugfs(&image, "stat /etc/link");
        assert!(
            link.contains("Fast link dest: \"../usr/bin/tool\""),
            "{link}"
        );
        let long = debugfs(&image, "cat /etc/longlink");
        assert!(long.starts_with("/long/long/"), "{long}");
        let one = debugfs(&image, "stat /a/one");
        let two = debugfs(&image, "stat /a/two");
        assert_eq!(word_after(&one, "Links:"), "2");
        assert_eq!(word_after(&one, "Inode:"), word_after(&two, "Inode:"));
        let fifo = debugfs(&image, "stat /a/fifo");
        assert_eq!(word_after(&fifo, "Type:"), "FIFO");

        let attributes = debugfs(&image, "ea_list /etc/owned");
        assert!(
            attributes.contains("user.kiln") && attributes.contains("hello"),
            "{attributes}"
        );
        let big = debugfs(&image, "ea_list /etc/big-xattr");
        assert!(big.contains("user.big (200)"), "{big}");
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn ext4_builds_of_the_same_tree_are_byte_identical() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("tree");
        fixture(&tree, 200);
        let first = scratch.path().join("first.ext4");
        let second = scratch.path().join("second.ext4");
        let size = SizeChoice::Auto {
            headroom_bytes: 1 << 20,
        };
        build_ext4(Some(&tree), size, &first);
        touch_atimes(&tree);
        build_ext4(Some(&tree), size, &second);
        assert_eq!(sha256(&first), sha256(&second));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn ext4_grows_offline_to_one_tebibyte_and_stays_clean() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("tree");
        fixture(&tree, 20);
        let image = scratch.path().join("root.ext4");
        build_ext4(Some(&tree), SizeChoice::Auto { headroom_bytes: 0 }, &image);
        tool_ok("truncate", &[os("-s"), os("1T"), image.as_os_str()]);
        tool_ok("resize2fs", &[image.as_os_str(), os("1T")]);
        assert_e2fsck_clean(&image);
        let super_block = tool_ok("dumpe2fs", &[os("-h"), image.as_os_str()]);
        assert_eq!(
            word_after(&super_block, "Block count:"),
            (1u64 << 28).to_string()
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn ext4_auto_size_fits_a_tree_of_many_files_with_little_to_spare() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("tree");
        fixture(&tree, 3000);
        for (name, mib) in [("big/one", 3usize), ("big/two", 9), ("big/three", 17)] {
            write(&tree.join(name), &vec![7u8; mib << 20]);
        }
        let headroom = 8 << 20;
        assert_eq!(
            ext4_auto_size(&tree, headroom).expect("size"),
            ext4_layout(
                &TreeUsage::measure(&tree).expect("usage"),
                SizeChoice::Auto {
                    headroom_bytes: headroom
                }
            )
            .bytes
        );
        let image = scratch.path().join("root.ext4");
        let started = Instant::now();
        let made = build_ext4(
            Some(&tree),
            SizeChoice::Auto {
                headroom_bytes: headroom,
            },
            &image,
        );
        eprintln!(
            "ext4 of ~3030 files, {} bytes: {:?}",
            made.bytes,
            started.elapsed()
        );
        assert_e2fsck_clean(&image);

        let usage = tool_ok(
            "du",
            &[os("-s"), os("-B1"), os("--apparent-size"), tree.as_os_str()],
        );
        let usage: u64 = word_after(&usage, "").parse().expect("du prints a number");
        let super_block = tool_ok("dumpe2fs", &[os("-h"), image.as_os_str()]);
        let number = |label: &str| -> u64 { word_after(&super_block, label).parse().expect(label) };
        let free_bytes = number("Free blocks:") * EXT4_BLOCK_BYTES;
        // The headroom is free for every user: beyond root's reserve.
        let reserved_bytes = number("Reserved block count:") * EXT4_BLOCK_BYTES;
        assert!(reserved_bytes > 0);
        let inode_bytes = number("Inode count:") * EXT4_INODE_BYTES;
        let journal_bytes = JOURNAL_SMALL_MIB << 20;
        // Every file rounds up to a block; directories and metadata are
        // bounded by 6% plus 2 MiB.
        let files = 3000 + 20;
        let bound = usage + files * EXT4_BLOCK_BYTES + inode_bytes + journal_bytes + headroom;
        assert!(
            made.bytes <= bound + bound * 6 / 100 + (2 << 20),
            "{} > {bound}",
            made.bytes
        );
        assert!(
            free_bytes >= headroom + reserved_bytes,
            "only {free_bytes} bytes free, {reserved_bytes} of them for root"
        );
        assert!(
            free_bytes <= headroom + reserved_bytes + made.bytes / 20 + (4 << 20),
            "{free_bytes} bytes free"
        );
        let inodes_free = number("Free inodes:");
        assert!(inodes_free >= files / 4, "{inodes_free} inodes free");
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn ext4_without_a_tree_is_empty_and_clean() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let image = scratch.path().join("data.ext4");
        let made = build_ext4(None, SizeChoice::Exact(64 << 20), &image);
        assert_eq!(made.bytes, 64 << 20);
        assert_eq!(fs::metadata(&image).expect("image").len(), 64 << 20);
        assert_e2fsck_clean(&image);
        let listing = debugfs(&image, "ls /");
        assert!(listing.contains("lost+found"), "{listing}");
    }

    /// Sparse zeros at the end of a test disk: far more disk than
    /// filesystem, so a tool that sized anything by the file would show.
    const DISK_TAIL_BYTES: u64 = 4 << 30;

    /// A disk of `before + bytes + after` bytes and [`DISK_TAIL_BYTES`],
    /// the partition of `bytes` at `before` zero and the `before` and
    /// `after` bytes around it 0x5a, as a partition sits between others.
    fn disk_around(path: &Path, before: u64, bytes: u64, after: u64) {
        let fill = |len: u64| vec![0x5au8; usize::try_from(len).expect("small")];
        let mut disk = fill(before);
        disk.resize(disk.len() + usize::try_from(bytes).expect("small"), 0);
        disk.extend(fill(after));
        fs::write(path, disk).expect("write disk");
        let file = fs::OpenOptions::new().write(true).open(path).expect("open");
        file.set_len(before + bytes + after + DISK_TAIL_BYTES)
            .expect("extend");
    }

    /// The bytes of `path` from `offset` on, `len` of them.
    fn range(path: &Path, offset: u64, len: u64) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0u8; usize::try_from(len).expect("small")];
        fs::File::open(path)
            .expect("open")
            .read_exact_at(&mut bytes, offset)
            .expect("read");
        bytes
    }

    /// Asserts the filesystem in `disk` at `offset` is byte for byte the
    /// image `alone`, and that the disk around it is untouched.
    fn assert_placed_as_alone(disk: &Path, offset: u64, alone: &Path, after: u64) {
        let bytes = fs::metadata(alone).expect("image").len();
        assert_eq!(
            fs::metadata(disk).expect("disk").len(),
            offset + bytes + after + DISK_TAIL_BYTES
        );
        let placed = range(disk, offset, bytes);
        let alone = fs::read(alone).expect("read image");
        let first_difference = placed.iter().zip(&alone).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "the placed filesystem differs");
        assert!(range(disk, 0, offset).iter().all(|&b| b == 0x5a));
        assert!(
            range(disk, offset + bytes, after)
                .iter()
                .all(|&b| b == 0x5a)
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn ext4_written_into_a_disk_is_clean_and_the_bytes_of_one_made_alone() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("tree");
        fixture(&tree, 200);
        let size = SizeChoice::Exact(48 << 20);
        let alone = scratch.path().join("alone.ext4");
        build_ext4(Some(&tree), size, &alone);
        touch_atimes(&tree);

        let disk = scratch.path().join("disk.raw");
        let (offset, after) = (3 << 20, 1 << 20);
        disk_around(&disk, offset, 48 << 20, after);
        let spec = FilesystemSpec {
            kind: Filesystem::Ext4,
            label: Some("cloudimg-rootfs"),
            size,
            purpose: "root",
            usage: None,
        };
        let placement = Placement::InDisk {
            disk: &disk,
            offset_bytes: offset,
        };
        let mut log = Vec::new();
        let made = make_filesystem(Some(&tree), &spec, &ids(), EPOCH, placement, &mut log)
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)));
        let log = String::from_utf8_lossy(&log);
        assert!(log.contains(&format!(",offset={offset} ")), "{log}");
        assert!(log.contains(&format!("disk.raw?offset={offset}")), "{log}");
        assert_eq!(
            (made.path.as_path(), made.offset_bytes),
            (disk.as_path(), offset)
        );
        assert_eq!(made.bytes, 48 << 20);

        assert_placed_as_alone(&disk, offset, &alone, after);
        let name = libext2fs_name(placement);
        tool_ok("e2fsck", &[os("-fn"), &name]);
        let root = tool_ok("debugfs", &[os("-R"), os("stat /"), &name]);
        assert_eq!(
            word_after(&root, "crtime:"),
            format!("{EPOCH_HEX}:00000000"),
            "{root}"
        );
    }

    #[test]
    fn only_ext4_is_written_in_place_and_a_short_disk_is_refused() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let disk = scratch.path().join("disk.raw");
        fs::write(&disk, vec![0u8; 1 << 20]).expect("write");
        let placement = Placement::InDisk {
            disk: &disk,
            offset_bytes: 1 << 20,
        };
        for kind in [Filesystem::Vfat, Filesystem::Swap, Filesystem::Xfs] {
            assert!(!writes_in_place(kind));
            let spec = FilesystemSpec {
                kind,
                label: None,
                size: SizeChoice::Exact(1 << 20),
                purpose: "data",
                usage: None,
            };
            let error = make_filesystem(None, &spec, &ids(), EPOCH, placement, &mut io::sink());
            assert!(
                matches!(error, Err(FilesystemError::NotInPlace { .. })),
                "{error:?}"
            );
        }
        assert!(writes_in_place(Filesystem::Ext4));
        let spec = FilesystemSpec {
            kind: Filesystem::Ext4,
            label: None,
            size: SizeChoice::Exact(64 << 20),
            purpose: "root",
            usage: None,
        };
        let error = make_filesystem(None, &spec, &ids(), EPOCH, placement, &mut io::sink());
        assert!(
            matches!(
                error,
                Err(FilesystemError::DiskTooShort { file_bytes, end_bytes, .. })
                    if file_bytes == 1 << 20 && end_bytes == (1 << 20) + (64 << 20)
            ),
            "{error:?}"
        );
        assert_eq!(fs::read(&disk).expect("read"), vec![0u8; 1 << 20]);
    }

    #[test]
    fn libext2fs_names_a_filesystem_inside_a_disk_by_its_offset() {
        let disk = Path::new("/work/out/demo.raw");
        assert_eq!(
            libext2fs_name(Placement::File(disk)),
            OsString::from("/work/out/demo.raw")
        );
        let placement = Placement::InDisk {
            disk,
            offset_bytes: 65 << 20,
        };
        assert_eq!(
            libext2fs_name(placement),
            OsString::from("/work/out/demo.raw?offset=68157440")
        );
        assert_eq!(placement.file(), disk);
        assert_eq!(placement.offset_bytes(), 65 << 20);
    }

    fn esp_fixture(root: &Path) {
        write(&root.join("EFI/debian/grubx64.efi"), &[0x4d, 0x5a, 1, 2, 3]);
        write(
            &root.join("EFI/debian/a long name with spaces.cfg"),
            b"set root\n",
        );
        write(&root.join("EFI/BOOT/BOOTX64.EFI"), &vec![0x90; 300_000]);
        write(&root.join("EFI/debian/old.cfg"), b"old\n");
        set_mtime(&root.join("EFI/debian/old.cfg"), OLD);
        write(&root.join("README"), b"esp\n");
    }

    fn build_vfat(tree: Option<&Path>, size: SizeChoice, out: &Path) -> MadeFilesystem {
        let spec = FilesystemSpec {
            kind: Filesystem::Vfat,
            label: Some("ESP"),
            size,
            purpose: "esp",
            usage: None,
        };
        let mut log = Vec::new();
        let made = make_filesystem(tree, &spec, &ids(), EPOCH, Placement::File(out), &mut log);
        made.unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)))
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn vfat_builds_are_byte_identical_clean_and_listed() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("esp");
        esp_fixture(&tree);
        let first = scratch.path().join("first.vfat");
        let second = scratch.path().join("second.vfat");
        let size = SizeChoice::Auto {
            headroom_bytes: 1 << 20,
        };
        let made = build_vfat(Some(&tree), size, &first);
        assert_eq!(made.bytes, FAT32_MIN_BYTES);
        touch_atimes(&tree);
        build_vfat(Some(&tree), size, &second);
        assert_eq!(sha256(&first), sha256(&second));

        let check = tool_ok("fsck.vfat", &[os("-n"), first.as_os_str()]);
        assert!(check.contains("9 files"), "{check}");
        let image = first.as_os_str();
        let top = tool_ok(
            "env",
            &[
                os("MTOOLS_SKIP_CHECK=1"),
                os("mdir"),
                os("-i"),
                image,
                os("::/"),
            ],
        );
        let hex = format!("{:08X}", ids().u32("vfat volume id esp"));
        assert!(
            top.contains(&format!("Serial Number is {}-{}", &hex[..4], &hex[4..])),
            "{top}"
        );
        assert_eq!(made.uuid, Some(format!("{}-{}", &hex[..4], &hex[4..])));
        assert!(top.contains("Volume in drive : is ESP"), "{top}");
        assert!(top.contains("EFI") && top.contains("README"), "{top}");
        let debian = tool_ok(
            "env",
            &[
                os("MTOOLS_SKIP_CHECK=1"),
                os("mdir"),
                os("-i"),
                image,
                os("::/EFI/debian"),
            ],
        );
        assert!(debian.contains("a long name with spaces.cfg"), "{debian}");
        assert!(
            debian.contains("grubx64  efi         5 2020-09-13  12:26"),
            "{debian}"
        );
        assert!(
            debian.contains("old      cfg         4 2017-07-14   2:40"),
            "{debian}"
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn vfat_refuses_symlinks_and_names_differing_in_case() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("esp");
        write(&tree.join("EFI/a"), b"a\n");
        symlink("a", tree.join("EFI/b")).expect("symlink");
        let spec = FilesystemSpec {
            kind: Filesystem::Vfat,
            label: None,
            size: SizeChoice::Exact(FAT32_MIN_BYTES),
            purpose: "esp",
            usage: None,
        };
        let out = scratch.path().join("esp.vfat");
        let error = make_filesystem(
            Some(&tree),
            &spec,
            &ids(),
            EPOCH,
            Placement::File(&out),
            &mut io::sink(),
        );
        assert!(
            matches!(error, Err(FilesystemError::Unsupported { .. })),
            "{error:?}"
        );
        fs::remove_file(tree.join("EFI/b")).expect("rm");
        write(&tree.join("EFI/A"), b"A\n");
        let error = make_filesystem(
            Some(&tree),
            &spec,
            &ids(),
            EPOCH,
            Placement::File(&out),
            &mut io::sink(),
        );
        assert!(
            matches!(error, Err(FilesystemError::Unsupported { .. })),
            "{error:?}"
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn swap_has_the_label_and_derived_uuid_and_is_reproducible() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let spec = FilesystemSpec {
            kind: Filesystem::Swap,
            label: Some("swap"),
            size: SizeChoice::Exact(16 << 20),
            purpose: "swap",
            usage: None,
        };
        let first = scratch.path().join("first.swap");
        let second = scratch.path().join("second.swap");
        let made = make_filesystem(
            None,
            &spec,
            &ids(),
            EPOCH,
            Placement::File(&first),
            &mut io::sink(),
        )
        .expect("swap");
        make_filesystem(
            None,
            &spec,
            &ids(),
            EPOCH,
            Placement::File(&second),
            &mut io::sink(),
        )
        .expect("swap");
        assert_eq!(sha256(&first), sha256(&second));
        let uuid = ids().uuid("swap uuid swap").to_string();
        assert_eq!(made.uuid.as_deref(), Some(uuid.as_str()));
        let shown = tool_ok("swaplabel", &[first.as_os_str()]);
        assert!(
            shown.contains("LABEL: swap") && shown.contains(&uuid),
            "{shown}"
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn xfs_is_empty_reproducible_and_refuses_a_tree() {
        require_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let spec = FilesystemSpec {
            kind: Filesystem::Xfs,
            label: Some("data"),
            size: SizeChoice::Auto { headroom_bytes: 0 },
            purpose: "data",
            usage: None,
        };
        let first = scratch.path().join("first.xfs");
        let second = scratch.path().join("second.xfs");
        let made = make_filesystem(
            None,
            &spec,
            &ids(),
            EPOCH,
            Placement::File(&first),
            &mut io::sink(),
        )
        .expect("xfs");
        assert_eq!(made.bytes, XFS_MIN_BYTES);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        make_filesystem(
            None,
            &spec,
            &ids(),
            EPOCH,
            Placement::File(&second),
            &mut io::sink(),
        )
        .expect("xfs");
        assert_eq!(sha256(&first), sha256(&second));
        tool_ok("xfs_repair", &[os("-n"), first.as_os_str()]);
        let root = tool_ok(
            "xfs_db",
            &[
                os("-r"),
                os("-c"),
                os("sb 0"),
                os("-c"),
                os("print uuid fname"),
                os("-c"),
                os("inode 128"),
                os("-c"),
                os("print core.mtime.sec v3.crtime.sec"),
                first.as_os_str(),
            ],
        );
        let uuid = ids().uuid("xfs uuid data").to_string();
        assert!(root.contains(&format!("uuid = {uuid}")), "{root}");
        assert!(root.contains("fname = \"data\\000\\000"), "{root}");
        assert!(
            root.contains(&format!("core.mtime.sec = {EPOCH_TEXT}")),
            "{root}"
        );
        assert!(
            root.contains(&format!("v3.crtime.sec = {EPOCH_TEXT}")),
            "{root}"
        );

        let tree = scratch.path().join("tree");
        write(&tree.join("file"), b"x\n");
        let error = make_filesystem(
            Some(&tree),
            &spec,
            &ids(),
            EPOCH,
            Placement::File(&first),
            &mut io::sink(),
        );
        assert!(
            matches!(error, Err(FilesystemError::XfsWithContent { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn none_has_no_image() {
        let spec = FilesystemSpec {
            kind: Filesystem::None,
            label: None,
            size: SizeChoice::Exact(1 << 20),
            purpose: "bios",
            usage: None,
        };
        let out = Path::new("/nonexistent/never-written");
        let error = make_filesystem(
            None,
            &spec,
            &ids(),
            EPOCH,
            Placement::File(out),
            &mut io::sink(),
        );
        assert!(
            matches!(error, Err(FilesystemError::NoFilesystem { .. })),
            "{error:?}"
        );
    }
}

//! The `ramdisk` output: the finished image as a kernel and an initramfs
//! that holds the whole root tree, for machines that boot over the network
//! and run from RAM (Ironic's deploy ramdisk, which diskimage-builder's
//! `ramdisk-image-create` makes). Two files are written beside the other
//! outputs: `<image>.kernel` and `<image>.initramfs`.
//!
//! # The kernel
//!
//! The image's own kernel, copied as it is ([`find_kernel`],
//! [`write_kernel`]). It is the target of the image's `/vmlinuz` or
//! `/boot/vmlinuz` symbolic link when there is one (Debian's kernel
//! packages keep it pointing at the kernel the image boots), followed
//! inside the tree, never on the host. Otherwise it is the newest
//! `/boot/vmlinuz-<version>`, versions compared as dpkg compares them
//! (`6.1.0-28-amd64` is newer than `6.1.0-3-amd64`). Its modules,
//! `/usr/lib/modules/<version>` (or `/lib/modules/<version>`), must be in
//! the tree: an initramfs without them boots without drivers. An image
//! without a kernel fails with [`OutputError::NoKernel`].
//!
//! # The initramfs
//!
//! The root tree as a cpio archive in the "newc" format (magic `070701`),
//! the one the kernel unpacks into its root filesystem, written by kiln
//! itself ([`write_initramfs`]) and compressed with zstd (the default, read
//! by Linux 5.9 and later) or gzip (read by every kernel). The archive is
//! streamed from the tree through the compressor into the file; it is
//! never held in memory. Only the list of entries is: a few megabytes for
//! an image of 50,000 files.
//!
//! The same tree always gives the same bytes:
//!
//! - Entries come in the order of [`walk::tree_sorted`]: each directory's
//!   names in byte order, a directory immediately before its contents.
//!   Paths are relative, without `./` or `/` (the root is `.`), as the
//!   kernel's own `gen_init_cpio` and `cpio -H newc` of `find .` write them.
//! - Owners are numeric, from the tree; modes are kept whole (setuid,
//!   setgid, sticky). Modification times are clamped to
//!   `SOURCE_DATE_EPOCH`: a later time becomes the epoch.
//! - Inode numbers are 1, 2, 3… in archive order, not the host's; the
//!   device of every entry is 0:0. A device node keeps its own number
//!   (`rdevmajor`, `rdevminor`).
//! - A directory's link count is 2 and one per subdirectory in the
//!   archive, whatever the host's filesystem says (btrfs says 1).
//! - zstd runs with as many workers as the machine has cores, and with
//!   one or more workers its output does not depend on how many.
//!   (`zstd -T0` behaves the same.) gzip is the pure-Rust `flate2`
//!   encoder at level [`GZIP_LEVEL`], with a header holding no time or
//!   name.
//!
//! Hard links are written as GNU cpio writes them, so that both the kernel
//! and `cpio -i` make one inode of them again: every name of the inode
//! carries the same inode number and the link count of the names in the
//! archive, and only the last name carries the data (the others have size
//! 0). The kernel (`init/initramfs.c`, `maybe_link`) creates the first name
//! and hard-links each later name with the same device and inode to it,
//! writing the data when it comes; GNU cpio defers the empty names until
//! the name with the data. Only regular files are grouped so: a hard-linked
//! symbolic link, device or FIFO (rare) becomes one entry per name, as the
//! kernel unpacks symbolic links without looking at their inode.
//!
//! After the last entry comes `TRAILER!!!`, and the archive is padded with
//! zeros to a multiple of 512 bytes, as GNU cpio pads it.
//!
//! What the archive cannot hold:
//!
//! - Extended attributes: newc has no place for them. File capabilities
//!   (`security.capability`) are lost with them: in a ramdisk `ping` and
//!   the like work for root only. The files are counted and the ones with
//!   capabilities listed in the [`RamdiskSummary`], so the report can say
//!   so. ACLs and SELinux labels are lost the same way.
//! - Sockets (no archive holds one); they are skipped and listed.
//! - A file of 4 GiB or more (sizes are 32-bit):
//!   [`OutputError::CpioFileTooLarge`].
//!
//! # What is left out, replaced and added
//!
//! - The `exclude` patterns of the manifest's `ramdisk` section: absolute
//!   paths in which `*` matches any run of characters within one
//!   component (`/usr/share/locale/*`, `/usr/lib/modules/*/kernel/sound`).
//!   A matching entry is left out with everything below it; its directory
//!   stays. Patterns match the path as the walk meets it, without
//!   following symbolic links: in a merged-`/usr` image `/lib` is a link
//!   to `usr/lib`, and `/lib/modules/*` matches nothing below it (write
//!   `/usr/lib/modules/*`).
//! - Always: `/boot/initrd.img*`, the image's own initramfs for booting
//!   from disk (large, and of no use inside a ramdisk), and the kernel
//!   file, delivered beside the initramfs.
//! - [`RamdiskRequest::for_image`] replaces `/etc/fstab` with a comment
//!   ([`RAMDISK_FSTAB`]): the image's fstab mounts its root filesystem by
//!   UUID, which a ramdisk does not have, and systemd would wait for it.
//!   The tree itself (and the image's other outputs) keep their fstab.
//!   An image with cloud-init and no `/etc/cloud/ds-identify.cfg` of its
//!   own gets one ([`RAMDISK_DS_IDENTIFY`]): without it cloud-init would
//!   turn itself off at boot, before any disk or network is up.
//! - The kernel runs `/init` of the initramfs. When the tree has none, the
//!   archive gets a symbolic link `init` → `/sbin/init` ([`INIT_TARGET`]):
//!   systemd (or whatever `/sbin/init` is) starts as the image's init,
//!   with the initramfs as its root filesystem.
//!
//! # Size
//!
//! The whole ramdisk is held in the machine's RAM, twice while the kernel
//! unpacks it. With a `max_size` in the manifest, a larger initramfs fails
//! with [`OutputError::RamdiskTooLarge`], naming the directories that hold
//! the most ([`biggest_directories`]), so the user knows what to add to
//! `exclude`; nothing is left in the output directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;

use super::{OutputError, Staged};
use crate::apt::version::Version;
use crate::host::walk;
use crate::manifest::{self, RamdiskCompression};

/// The extension of the kernel file of a ramdisk output:
/// `<image>.kernel`, as diskimage-builder names it.
pub const KERNEL_EXTENSION: &str = "kernel";

/// What replaces `/etc/fstab` in the initramfs: nothing to mount.
pub const RAMDISK_FSTAB: &str = "# kiln ramdisk: the root filesystem is the initramfs, in RAM\n";

/// cloud-init's file for the policy of `ds-identify`, in `/etc/cloud`.
const DS_IDENTIFY_CFG: &str = "ds-identify.cfg";

/// cloud-init's `ds-identify` policy in a ramdisk. `ds-identify` decides at
/// the very start of the boot (a systemd generator) whether cloud-init runs
/// at all, by looking for a datasource: a disk labelled `cidata` or
/// `config-2`, DMI strings. Booted from disk, the initramfs has loaded the
/// disk drivers by then; booted from a ramdisk, no disk exists yet, and
/// the default policy (`notfound=disabled`) turns cloud-init off. With
/// `notfound=enabled` cloud-init runs and searches its datasources itself
/// once the devices are there.
pub const RAMDISK_DS_IDENTIFY: &str = "# kiln ramdisk: disks appear only after ds-identify has looked for a datasource,\n# so cloud-init runs and searches for it itself.\npolicy: search,found=all,maybe=all,notfound=enabled\n";

/// Where the `/init` the archive gets (when the tree has none) points.
pub const INIT_TARGET: &str = "/sbin/init";

/// zstd's level: its command-line default. Higher levels take several
/// times as long for a few percent less.
pub const ZSTD_LEVEL: i32 = 3;

/// gzip's level: the fastest. On a Debian cloud image's tree (695 MiB of
/// files, two cores) level 1 takes 4.5 s for 270 MiB, level 3 13 s for
/// 231 MiB and the default, 6, 36 s for 225 MiB (`benches/initramfs.rs`):
/// the default's 17% less is not worth eight times as long, for the
/// fallback of old kernels. (zstd takes 2–4 s for 192 MiB.)
pub const GZIP_LEVEL: u32 = 1;

/// The magic of a newc header.
const NEWC_MAGIC: &[u8; 6] = b"070701";

/// The size of a newc header: the magic and 13 fields of 8 hex digits.
const NEWC_HEADER_BYTES: usize = 110;

/// The name of the entry that ends an archive.
const TRAILER_NAME: &[u8] = b"TRAILER!!!";

/// The archive is padded to a multiple of this, as GNU cpio pads it.
const ARCHIVE_BLOCK_BYTES: u64 = 512;

/// Buffer between the archive and the compressor.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Buffer between a file of the tree and the archive.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Always left out: the image's own initramfs (for booting from its disk).
const IMAGE_INITRD_PATTERN: &str = "/boot/initrd.img*";

/// How many directories a too-large error names.
const BIGGEST_DIRECTORIES: usize = 10;

/// A directory is named in a too-large error when it holds at least
/// 1/`BIGGEST_SHARE` of the unpacked bytes (see [`biggest_directories`]).
const BIGGEST_SHARE: u64 = 20;

/// The symbolic links that name the kernel an image boots, tried in order.
const KERNEL_LINKS: [&str; 2] = ["vmlinuz", "boot/vmlinuz"];

/// The file name prefix of a kernel in `/boot`.
const KERNEL_PREFIX: &str = "vmlinuz-";

/// The file name of an image's ramdisk kernel: `<image>.kernel`. (The
/// initramfs is [`super::file_name`] of the `ramdisk` format.)
pub fn kernel_file_name(image: &str) -> String {
    format!("{image}.{KERNEL_EXTENSION}")
}

/// The kernel a ramdisk boots, found in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// Its path below the tree's root: `boot/vmlinuz-6.1.0-28-amd64`.
    pub path: PathBuf,
    /// Its version, from the file name: `6.1.0-28-amd64`.
    pub version: String,
}

/// A file whose content the initramfs holds instead of the tree's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedFile {
    /// Its path below the root, without a leading `/`: `etc/fstab`.
    pub path: String,
    /// What it holds.
    pub content: Vec<u8>,
    /// Its permission bits, such as `0o644`.
    pub mode: u32,
}

/// What [`write_initramfs`] is asked to write.
#[derive(Debug, Clone)]
pub struct RamdiskRequest<'a> {
    /// The finished root tree.
    pub tree: &'a Path,
    /// The initramfs file to write; replaced only once complete.
    pub out: PathBuf,
    /// Seconds since 1970-01-01 UTC: the latest time the archive holds.
    pub source_date_epoch: u64,
    /// How the archive is compressed.
    pub compression: RamdiskCompression,
    /// Absolute paths left out, with everything below them; `*` matches
    /// within one component. Besides these, `/boot/initrd.img*` and the
    /// kernel are always left out.
    pub exclude: Vec<String>,
    /// The largest the compressed file may be, in bytes.
    pub max_bytes: Option<u64>,
    /// Files whose content is replaced (the tree's owner and time kept),
    /// or added, owned by root, when the tree has none but has their
    /// directory.
    pub replace: Vec<ReplacedFile>,
    /// The target of a symbolic link `init` added at the root when the
    /// archive would have no `init`.
    pub init_target: Option<String>,
}

impl<'a> RamdiskRequest<'a> {
    /// The request for an image's ramdisk: the manifest's settings, the
    /// comment-only `/etc/fstab` ([`RAMDISK_FSTAB`]) and `/init` →
    /// [`INIT_TARGET`].
    pub fn for_image(
        tree: &'a Path,
        out: PathBuf,
        source_date_epoch: u64,
        settings: &manifest::Ramdisk,
    ) -> RamdiskRequest<'a> {
        RamdiskRequest {
            tree,
            out,
            source_date_epoch,
            compression: settings.compression(),
            exclude: settings.exclude.iter().map(|p| p.value.clone()).collect(),
            max_bytes: settings.max_size.as_ref().map(|s| s.value.bytes()),
            replace: ramdisk_files(tree),
            init_target: Some(INIT_TARGET.to_string()),
        }
    }
}

/// The files an image's initramfs holds instead of (or besides) the
/// tree's: the comment-only fstab, and for an image with cloud-init and no
/// `ds-identify.cfg` of its own, [`RAMDISK_DS_IDENTIFY`].
fn ramdisk_files(tree: &Path) -> Vec<ReplacedFile> {
    let mut files = vec![ReplacedFile {
        path: "etc/fstab".to_string(),
        content: RAMDISK_FSTAB.as_bytes().to_vec(),
        mode: 0o644,
    }];
    // A real directory (not a link out of the tree), without the file.
    let cloud = tree.join("etc/cloud");
    let is_dir = fs::symlink_metadata(&cloud).is_ok_and(|m| m.is_dir());
    if is_dir && fs::symlink_metadata(cloud.join(DS_IDENTIFY_CFG)).is_err() {
        files.push(ReplacedFile {
            path: format!("etc/cloud/{DS_IDENTIFY_CFG}"),
            content: RAMDISK_DS_IDENTIFY.as_bytes().to_vec(),
            mode: 0o644,
        });
    }
    files
}

/// What [`write_initramfs`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamdiskSummary {
    /// The kernel beside it.
    pub kernel: Kernel,
    /// How the initramfs is compressed.
    pub compression: RamdiskCompression,
    /// Entries in the archive (the trailer not counted).
    pub entries: u64,
    /// How many of them are a second or later name of a file.
    pub hardlinks: u64,
    /// How many entries had a modification time after the epoch, and were
    /// given the epoch instead.
    pub clamped_mtimes: u64,
    /// Sockets left out, as paths in the image (`/run/x.sock`).
    pub skipped_sockets: Vec<PathBuf>,
    /// How many archived entries had extended attributes, which the
    /// archive does not hold.
    pub files_with_xattrs: u64,
    /// The archived files among them that had file capabilities
    /// (`security.capability`), as paths in the image.
    pub lost_capabilities: Vec<PathBuf>,
    /// Whether the archive got the `init` link of
    /// [`RamdiskRequest::init_target`].
    pub init_added: bool,
    /// The bytes of file content in the archive (each file once): what the
    /// ramdisk takes in RAM, roughly.
    pub unpacked_bytes: u64,
    /// The bytes of file content left out by the exclusions.
    pub excluded_bytes: u64,
    /// The size of the initramfs file.
    pub compressed_bytes: u64,
}

/// Finds the kernel a ramdisk of `tree` boots. See the module
/// documentation for which one.
pub fn find_kernel(tree: &Path) -> Result<Kernel, OutputError> {
    let no_kernel = || OutputError::NoKernel {
        tree: tree.to_path_buf(),
    };
    let linked = KERNEL_LINKS.iter().find_map(|link| {
        let is_link = fs::symlink_metadata(tree.join(link)).is_ok_and(|m| m.is_symlink());
        if !is_link {
            return None;
        }
        let target = walk::resolve_in_tree(tree, link)?;
        let relative = target.strip_prefix(tree).ok()?.to_path_buf();
        let version = kernel_version(relative.file_name()?)?;
        fs::symlink_metadata(&target)
            .is_ok_and(|m| m.is_file())
            .then_some(Kernel {
                path: relative,
                version,
            })
    });
    let kernel = match linked {
        Some(kernel) => kernel,
        None => {
            let boot = walk::resolve_in_tree(tree, "boot").ok_or_else(no_kernel)?;
            let listing = match fs::read_dir(&boot) {
                Ok(listing) => listing,
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Err(no_kernel()),
                Err(source) => return Err(OutputError::Read { path: boot, source }),
            };
            let mut versions = Vec::new();
            for entry in listing {
                let entry = entry.map_err(|source| OutputError::Read {
                    path: boot.clone(),
                    source,
                })?;
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                if let (true, Some(version)) = (is_file, kernel_version(&entry.file_name())) {
                    versions.push(version);
                }
            }
            let version = newest_version(versions).ok_or_else(no_kernel)?;
            let relative = boot
                .strip_prefix(tree)
                .unwrap_or(Path::new("boot"))
                .join(format!("{KERNEL_PREFIX}{version}"));
            Kernel {
                path: relative,
                version,
            }
        }
    };
    let has_modules = ["usr/lib/modules", "lib/modules"].iter().any(|dir| {
        walk::resolve_in_tree(tree, &format!("{dir}/{}", kernel.version))
            .is_some_and(|p| p.is_dir())
    });
    if !has_modules {
        return Err(OutputError::NoKernelModules {
            kernel: Path::new("/").join(&kernel.path),
            version: kernel.version,
        });
    }
    Ok(kernel)
}

/// The version in a kernel's file name, `vmlinuz-<version>`.
fn kernel_version(name: &OsStr) -> Option<String> {
    let name = name.to_str()?;
    let version = name.strip_prefix(KERNEL_PREFIX)?;
    (!version.is_empty()).then(|| version.to_string())
}

/// The newest of some kernel versions, compared as Debian versions; a
/// version dpkg cannot read is older than any it can, and ties go to the
/// greater spelling in bytes, so the choice never depends on the order of
/// a directory listing.
fn newest_version(versions: Vec<String>) -> Option<String> {
    versions
        .into_iter()
        .map(|v| (Version::parse(&v).ok(), v))
        .max_by(|(a, a_text), (b, b_text)| a.cmp(b).then_with(|| a_text.cmp(b_text)))
        .map(|(_, text)| text)
}

/// Copies the kernel of `tree` to `out` (mode 0644, whatever the tree's
/// is: Ubuntu's are 0600), replacing `out` only once complete. Returns its
/// size.
pub fn write_kernel(tree: &Path, kernel: &Kernel, out: &Path) -> Result<u64, OutputError> {
    let staged = Staged::beside(out)?;
    let source = tree.join(&kernel.path);
    let mut reader = File::open(&source).map_err(|e| OutputError::Read {
        path: source.clone(),
        source: e,
    })?;
    let write_error = |source| OutputError::Write {
        path: out.to_path_buf(),
        source,
    };
    let mut file = File::create(staged.path()).map_err(write_error)?;
    let bytes = io::copy(&mut reader, &mut file).map_err(|e| OutputError::Read {
        path: source.clone(),
        source: e,
    })?;
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(write_error)?;
    drop(file);
    staged.commit()?;
    Ok(bytes)
}

/// Writes the initramfs of `request.tree`, without `kernel`, to
/// `request.out`, replacing it only once complete and within
/// `request.max_bytes`. See the module documentation for what the archive
/// holds.
pub fn write_initramfs(
    request: &RamdiskRequest<'_>,
    kernel: &Kernel,
) -> Result<RamdiskSummary, OutputError> {
    let plan = plan_archive(request, kernel)?;
    let out = &request.out;
    let write_error = |source| OutputError::Write {
        path: out.clone(),
        source,
    };
    let staged = Staged::beside(out)?;
    let file = File::create(staged.path()).map_err(write_error)?;
    let compressor = Compressor::new(request.compression, file).map_err(write_error)?;
    let mut archive = Newc {
        writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, compressor),
        offset: 0,
        buffer: vec![0; READ_BUFFER_BYTES],
    };
    for member in &plan.members {
        archive.append(request.tree, member, out)?;
    }
    archive.finish().map_err(write_error)?;
    let file = archive
        .writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(Compressor::finish)
        .map_err(write_error)?;
    let compressed_bytes = file.metadata().map_err(write_error)?.len();
    drop(file);

    if let Some(limit) = request.max_bytes
        && compressed_bytes > limit
    {
        return Err(OutputError::RamdiskTooLarge {
            path: out.clone(),
            bytes: compressed_bytes,
            limit,
            biggest: biggest_directories(&plan.members),
        });
    }
    staged.commit()?;
    let mut summary = plan.summary;
    summary.compressed_bytes = compressed_bytes;
    Ok(summary)
}

/// One entry of the archive, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    /// Its path in the archive: `.` or `usr/bin/env`.
    name: Vec<u8>,
    /// The whole `st_mode`: type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    /// Clamped to the epoch.
    mtime: u32,
    nlink: u32,
    ino: u32,
    /// A device's number: major, minor.
    rdev: (u32, u32),
    /// The bytes that follow the header (0 for all names of a hard-linked
    /// file but the last).
    size: u32,
    body: Body,
    /// The host's device and inode of a regular file with several names.
    link_key: Option<(u64, u64)>,
}

/// What follows a member's header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// Nothing.
    Empty,
    /// The content of the tree's file at the member's name.
    Tree,
    /// These bytes: a symbolic link's target, or a replaced file.
    Bytes(Vec<u8>),
}

impl Member {
    fn is_dir(&self) -> bool {
        self.mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
    }

    fn is_file(&self) -> bool {
        self.mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
    }
}

/// The archive's entries, and the summary (compressed size still 0).
struct Plan {
    members: Vec<Member>,
    summary: RamdiskSummary,
}

/// Walks the tree and decides every entry of the archive: what is left
/// out, replaced and added, the inode numbers and link counts. Reads
/// metadata only; file contents are read when written.
fn plan_archive(request: &RamdiskRequest<'_>, kernel: &Kernel) -> Result<Plan, OutputError> {
    let tree = request.tree;
    let epoch = u32::try_from(request.source_date_epoch).unwrap_or(u32::MAX);
    let mut exclude: Vec<Pattern> = request.exclude.iter().map(|p| Pattern::new(p)).collect();
    exclude.push(Pattern::new(IMAGE_INITRD_PATTERN));
    exclude.push(Pattern::new(&format!("/{}", kernel.path.display())));

    let mut summary = RamdiskSummary {
        kernel: kernel.clone(),
        compression: request.compression,
        entries: 0,
        hardlinks: 0,
        clamped_mtimes: 0,
        skipped_sockets: Vec::new(),
        files_with_xattrs: 0,
        lost_capabilities: Vec::new(),
        init_added: false,
        unpacked_bytes: 0,
        excluded_bytes: 0,
        compressed_bytes: 0,
    };
    let mut replacements: Vec<(&ReplacedFile, bool)> =
        request.replace.iter().map(|r| (r, false)).collect();
    let mut excluded_inodes: std::collections::HashSet<(u64, u64)> = Default::default();
    let mut members: Vec<Member> = Vec::new();

    let read_error = |error| {
        let (path, source) = walk::failure(error, tree);
        OutputError::Read { path, source }
    };
    for entry in walk::tree_sorted(tree).follow_root_links(false) {
        let entry = entry.map_err(read_error)?;
        let meta = entry.metadata().map_err(read_error)?;
        let path = entry.path();
        let relative = walk::relative(&entry, tree).as_os_str().as_bytes();
        let name = if relative.is_empty() {
            b".".to_vec()
        } else {
            relative.to_vec()
        };
        let file_type = meta.file_type();
        if relative.is_empty() {
            // The root is never left out, whatever a pattern says.
        } else if exclude.iter().any(|p| p.matches(relative)) {
            if file_type.is_file() && excluded_inodes.insert((meta.dev(), meta.ino())) {
                summary.excluded_bytes += meta.len();
            }
            continue;
        }
        if file_type.is_socket() {
            summary.skipped_sockets.push(image_path(&name));
            continue;
        }

        let mtime = u32::try_from(meta.mtime().max(0)).unwrap_or(u32::MAX);
        if mtime > epoch {
            summary.clamped_mtimes += 1;
        }
        let mut member = Member {
            name,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: mtime.min(epoch),
            nlink: 1,
            ino: 0,
            rdev: (0, 0),
            size: 0,
            body: Body::Empty,
            link_key: None,
        };
        let attrs = super::tar::read_xattrs(path)?;
        if !attrs.is_empty() {
            summary.files_with_xattrs += 1;
            if attrs.iter().any(|(n, _)| n == "security.capability") {
                summary.lost_capabilities.push(image_path(&member.name));
            }
        }

        let replacement = match replacements
            .iter_mut()
            .find(|(r, _)| r.path.as_bytes() == member.name)
        {
            Some((replacement, used)) => {
                *used = true;
                // A directory of that name is kept: replacing it would
                // orphan what is below it.
                (!file_type.is_dir()).then_some(*replacement)
            }
            None => None,
        };
        if let Some(replacement) = replacement {
            member.mode = SFlag::S_IFREG.bits() | (replacement.mode & 0o7777);
            member.body = Body::Bytes(replacement.content.clone());
            member.size = cpio_size(path, replacement.content.len() as u64)?;
        } else if file_type.is_file() {
            member.size = cpio_size(path, meta.len())?;
            member.body = Body::Tree;
            if meta.nlink() > 1 {
                member.link_key = Some((meta.dev(), meta.ino()));
            }
        } else if file_type.is_symlink() {
            let target = fs::read_link(path).map_err(|source| OutputError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let target = target.as_os_str().as_bytes().to_vec();
            member.size = cpio_size(path, target.len() as u64)?;
            member.body = Body::Bytes(target);
        } else if file_type.is_char_device() || file_type.is_block_device() {
            let rdev = meta.rdev();
            member.rdev = (
                u32::try_from(nix::sys::stat::major(rdev)).unwrap_or(u32::MAX),
                u32::try_from(nix::sys::stat::minor(rdev)).unwrap_or(u32::MAX),
            );
        } else if !(file_type.is_dir() || file_type.is_fifo()) {
            return Err(OutputError::Read {
                path: path.to_path_buf(),
                source: io::Error::other("a file of unknown type"),
            });
        }
        members.push(member);
    }

    let epoch_mtime = epoch;
    for (replacement, used) in replacements {
        if used {
            continue;
        }
        let content = replacement.content.clone();
        let size = cpio_size(Path::new(&replacement.path), content.len() as u64)?;
        insert_member(
            &mut members,
            Member {
                name: replacement.path.as_bytes().to_vec(),
                mode: SFlag::S_IFREG.bits() | (replacement.mode & 0o7777),
                uid: 0,
                gid: 0,
                mtime: epoch_mtime,
                nlink: 1,
                ino: 0,
                rdev: (0, 0),
                size,
                body: Body::Bytes(content),
                link_key: None,
            },
        );
    }
    if let Some(target) = &request.init_target
        && !members.iter().any(|m| m.name == b"init")
    {
        let target = target.as_bytes().to_vec();
        summary.init_added = insert_member(
            &mut members,
            Member {
                name: b"init".to_vec(),
                mode: SFlag::S_IFLNK.bits() | 0o777,
                uid: 0,
                gid: 0,
                mtime: epoch_mtime,
                nlink: 1,
                ino: 0,
                rdev: (0, 0),
                size: cpio_size(Path::new("init"), target.len() as u64)?,
                body: Body::Bytes(target),
                link_key: None,
            },
        );
    }

    number_inodes(&mut members, &mut summary);
    summary.entries = members.len() as u64;
    summary.unpacked_bytes = members
        .iter()
        .filter(|m| m.is_file())
        .map(|m| u64::from(m.size))
        .sum();
    Ok(Plan { members, summary })
}

/// Inserts an added member at its place in the archive's order, if its
/// directory is in the archive. Returns whether it was inserted.
fn insert_member(members: &mut Vec<Member>, member: Member) -> bool {
    let parent = match member.name.iter().rposition(|&b| b == b'/') {
        Some(slash) => &member.name[..slash],
        None => b".".as_slice(),
    };
    if !members.iter().any(|m| m.name == parent && m.is_dir()) {
        return false;
    }
    let at = members.partition_point(|m| archive_order(&m.name, &member.name).is_lt());
    members.insert(at, member);
    true
}

/// The order of [`walk::tree_sorted`] for two archive paths: component by
/// component, each in byte order, so a directory comes right before its
/// contents (`a`, `a/b`, `a-c`).
fn archive_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let components = |p: &'_ [u8]| -> Vec<Vec<u8>> {
        if p == b"." {
            Vec::new()
        } else {
            p.split(|&c| c == b'/').map(<[u8]>::to_vec).collect()
        }
    };
    components(a).cmp(&components(b))
}

/// Gives every member its inode number (1, 2, 3… in archive order, one
/// per hard-linked file), link count and, for hard links, where the data
/// goes: with the last name, the others empty.
fn number_inodes(members: &mut [Member], summary: &mut RamdiskSummary) {
    let mut names_of: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (index, member) in members.iter().enumerate() {
        if let Some(key) = member.link_key {
            names_of.entry(key).or_default().push(index);
        }
    }
    for names in names_of.values() {
        let count = u32::try_from(names.len()).unwrap_or(u32::MAX);
        for &index in names {
            members[index].nlink = count;
        }
        if let Some((_last, earlier)) = names.split_last() {
            summary.hardlinks += earlier.len() as u64;
            for &index in earlier {
                members[index].size = 0;
                members[index].body = Body::Empty;
            }
        }
    }

    let mut subdirectories: HashMap<Vec<u8>, u32> = HashMap::new();
    for member in members.iter().filter(|m| m.is_dir() && m.name != b".") {
        let parent = match member.name.iter().rposition(|&b| b == b'/') {
            Some(slash) => member.name[..slash].to_vec(),
            None => b".".to_vec(),
        };
        *subdirectories.entry(parent).or_default() += 1;
    }

    let mut inode_of: HashMap<(u64, u64), u32> = HashMap::new();
    let mut next: u32 = 1;
    for member in members.iter_mut() {
        if member.is_dir() {
            member.nlink = 2 + subdirectories.get(&member.name).copied().unwrap_or(0);
        }
        member.ino = match member.link_key.and_then(|key| inode_of.get(&key)) {
            Some(&ino) => ino,
            None => {
                let ino = next;
                next = next.saturating_add(1);
                if let Some(key) = member.link_key {
                    inode_of.insert(key, ino);
                }
                ino
            }
        };
    }
}

/// A size as a newc header holds it: 32 bits.
fn cpio_size(path: &Path, bytes: u64) -> Result<u32, OutputError> {
    u32::try_from(bytes).map_err(|_| OutputError::CpioFileTooLarge {
        path: path.to_path_buf(),
        bytes,
    })
}

/// An archive path as a path in the image: `/usr/bin/ping`, `/` for `.`.
fn image_path(name: &[u8]) -> PathBuf {
    if name == b"." {
        return PathBuf::from("/");
    }
    Path::new("/").join(OsStr::from_bytes(name))
}

/// One `exclude` pattern, by component.
#[derive(Debug, Clone)]
struct Pattern {
    components: Vec<Vec<u8>>,
}

impl Pattern {
    /// Reads `/usr/share/locale/*`. Empty components (`//`, a trailing
    /// `/`) are ignored; a pattern of no component matches nothing.
    fn new(text: &str) -> Pattern {
        Pattern {
            components: text
                .split('/')
                .filter(|c| !c.is_empty())
                .map(|c| c.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Whether the archive path `relative` (`usr/share/locale/de`), or a
    /// directory above it, matches.
    fn matches(&self, relative: &[u8]) -> bool {
        if self.components.is_empty() {
            return false;
        }
        let mut path = relative.split(|&b| b == b'/');
        self.components.iter().all(|pattern| {
            path.next()
                .is_some_and(|name| component_matches(pattern, name))
        })
    }
}

/// Whether one path component matches one pattern component, where `*`
/// matches any run of bytes (none included).
fn component_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it is trying.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The directories a too-large error names: each holds at least
/// 1/[`BIGGEST_SHARE`] of the unpacked bytes, and as much again besides
/// its subdirectories that hold that share (so `/usr/lib`, which is
/// mostly `/usr/lib/modules/<version>`, is left out, but a directory with
/// one big subdirectory and much else is named with it). Biggest first,
/// at most [`BIGGEST_DIRECTORIES`], as paths in the image with their
/// bytes (of files below them, each counted once).
fn biggest_directories(members: &[Member]) -> Vec<(String, u64)> {
    let mut bytes_below: HashMap<&[u8], u64> = HashMap::new();
    let mut total: u64 = 0;
    for member in members.iter().filter(|m| m.is_file() && m.size > 0) {
        let size = u64::from(member.size);
        total += size;
        *bytes_below.entry(b".".as_slice()).or_default() += size;
        for (at, _) in member.name.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            *bytes_below.entry(&member.name[..at]).or_default() += size;
        }
    }
    let threshold = (total / BIGGEST_SHARE).max(1);
    let parent_of = |dir: &[u8]| -> Option<Vec<u8>> {
        if dir == b"." {
            return None;
        }
        Some(match dir.iter().rposition(|&b| b == b'/') {
            Some(slash) => dir[..slash].to_vec(),
            None => b".".to_vec(),
        })
    };
    let mut in_big_children: HashMap<Vec<u8>, u64> = HashMap::new();
    for (dir, &bytes) in &bytes_below {
        if bytes >= threshold
            && let Some(parent) = parent_of(dir)
        {
            *in_big_children.entry(parent).or_default() += bytes;
        }
    }
    let mut named: Vec<(String, u64)> = bytes_below
        .iter()
        .filter(|&(dir, &bytes)| {
            let rest = bytes - in_big_children.get(*dir).copied().unwrap_or(0);
            bytes >= threshold && rest >= threshold
        })
        .map(|(dir, &bytes)| (image_path(dir).to_string_lossy().into_owned(), bytes))
        .collect();
    named.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    named.truncate(BIGGEST_DIRECTORIES);
    named
}

/// A newc header's fields, in the order they are written (the
/// filesystem's device, always 0:0, and the checksum, always 0, left
/// out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NewcHeader {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
    /// The name's length with its terminating NUL.
    namesize: u32,
}

impl NewcHeader {
    /// The 110 bytes: `070701` and 13 fields of 8 upper-case hex digits,
    /// as GNU cpio and the kernel's `gen_init_cpio` write them.
    fn encode(&self) -> [u8; NEWC_HEADER_BYTES] {
        let fields = [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            0, // devmajor
            0, // devminor
            self.rdevmajor,
            self.rdevminor,
            self.namesize,
            0, // check
        ];
        let mut header = [b'0'; NEWC_HEADER_BYTES];
        header[..NEWC_MAGIC.len()].copy_from_slice(NEWC_MAGIC);
        for (i, field) in fields.iter().enumerate() {
            let at = NEWC_MAGIC.len() + 8 * i;
            header[at..at + 8].copy_from_slice(format!("{field:08X}").as_bytes());
        }
        header
    }
}

/// A newc archive being written.
struct Newc<W: Write> {
    writer: W,
    /// Bytes written so far, for the padding.
    offset: u64,
    /// Between a file and `writer`.
    buffer: Vec<u8>,
}

impl<W: Write> Newc<W> {
    /// Writes one member: its header, name and body, each padded to 4
    /// bytes.
    fn append(&mut self, tree: &Path, member: &Member, out: &Path) -> Result<(), OutputError> {
        let write_error = |source| OutputError::Write {
            path: out.to_path_buf(),
            source,
        };
        self.header(member).map_err(write_error)?;
        match &member.body {
            Body::Empty => {}
            Body::Bytes(bytes) => self.write(bytes).map_err(write_error)?,
            Body::Tree => {
                let path = tree.join(OsStr::from_bytes(&member.name));
                let read_error = |source| OutputError::Read {
                    path: path.clone(),
                    source,
                };
                let file = File::open(&path).map_err(read_error)?;
                let expected = u64::from(member.size);
                let mut content = file.take(expected);
                let mut copied: u64 = 0;
                loop {
                    let n = match content.read(&mut self.buffer) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(read_error(e)),
                    };
                    self.writer
                        .write_all(&self.buffer[..n])
                        .map_err(write_error)?;
                    copied += n as u64;
                }
                self.offset += copied;
                let grew = content
                    .into_inner()
                    .read(&mut [0u8; 1])
                    .is_ok_and(|n| n > 0);
                if copied != expected || grew {
                    return Err(OutputError::Changed { path });
                }
            }
        }
        self.pad(4).map_err(write_error)
    }

    fn header(&mut self, member: &Member) -> io::Result<()> {
        let header = NewcHeader {
            ino: member.ino,
            mode: member.mode,
            uid: member.uid,
            gid: member.gid,
            nlink: member.nlink,
            mtime: member.mtime,
            filesize: member.size,
            rdevmajor: member.rdev.0,
            rdevminor: member.rdev.1,
            namesize: u32::try_from(member.name.len() + 1).unwrap_or(u32::MAX),
        };
        self.write(&header.encode())?;
        self.write(&member.name)?;
        self.write(&[0])?;
        self.pad(4)
    }

    /// Writes the trailer and pads the archive to a whole block.
    fn finish(&mut self) -> io::Result<()> {
        let trailer = NewcHeader {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdevmajor: 0,
            rdevminor: 0,
            namesize: TRAILER_NAME.len() as u32 + 1,
        };
        self.write(&trailer.encode())?;
        self.write(TRAILER_NAME)?;
        self.write(&[0])?;
        // No flush: a flush ends the compressor's block early. The
        // buffer is emptied when the writer is taken out.
        self.pad(ARCHIVE_BLOCK_BYTES)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes zeros up to the next multiple of `align`.
    fn pad(&mut self, align: u64) -> io::Result<()> {
        let zeros = (align - self.offset % align) % align;
        io::copy(&mut io::repeat(0).take(zeros), &mut self.writer)?;
        self.offset += zeros;
        Ok(())
    }
}

/// The compressor between the archive and the file.
enum Compressor {
    Zstd(zstd::stream::write::Encoder<'static, File>),
    Gzip(flate2::write::GzEncoder<File>),
}

impl Compressor {
    fn new(compression: RamdiskCompression, file: File) -> io::Result<Compressor> {
        Ok(match compression {
            RamdiskCompression::Zstd => Compressor::Zstd(zstd_encoder(file, zstd_workers())?),
            RamdiskCompression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::new(GZIP_LEVEL),
            )),
        })
    }

    /// Ends the stream and returns the file.
    fn finish(self) -> io::Result<File> {
        match self {
            Compressor::Zstd(encoder) => encoder.finish(),
            Compressor::Gzip(encoder) => encoder.finish(),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(encoder) => encoder.write(buf),
            Compressor::Gzip(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Zstd(encoder) => encoder.flush(),
            Compressor::Gzip(encoder) => encoder.flush(),
        }
    }
}

/// A zstd encoder at [`ZSTD_LEVEL`] with `workers` threads, and a checksum
/// of the content (as the `zstd` command adds one).
fn zstd_encoder<W: Write>(
    writer: W,
    workers: u32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(writer, ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    encoder.multithread(workers)?;
    Ok(encoder)
}

/// zstd's workers: one per core. With one or more, the output is the same
/// whatever the number.
fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::output::test_fixture::{self, Fixture, KERNELS, run_tool, sha256_of};

    /// A member of some size for the pure functions' tests.
    fn file(name: &str, size: u32) -> Member {
        Member {
            name: name.as_bytes().to_vec(),
            mode: SFlag::S_IFREG.bits() | 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            nlink: 1,
            ino: 0,
            rdev: (0, 0),
            size,
            body: Body::Tree,
            link_key: None,
        }
    }

    #[test]
    fn a_newc_header_is_the_magic_and_thirteen_hex_fields() {
        let header = NewcHeader {
            ino: 1,
            mode: 0o100_644,
            uid: 1234,
            gid: 5678,
            nlink: 2,
            mtime: 1_700_000_000,
            filesize: 0xABCDEF,
            rdevmajor: 7,
            rdevminor: 9,
            namesize: 10,
        };
        let text = String::from_utf8(header.encode().to_vec()).expect("ascii");
        assert_eq!(
            text,
            concat!(
                "070701", "00000001", // ino
                "000081A4", // mode: regular file, 0644
                "000004D2", // uid
                "0000162E", // gid
                "00000002", // nlink
                "6553F100", // mtime
                "00ABCDEF", // filesize
                "00000000", // devmajor
                "00000000", // devminor
                "00000007", // rdevmajor
                "00000009", // rdevminor
                "0000000A", // namesize
                "00000000", // check
            )
        );
    }

    #[test]
    fn a_pattern_matches_its_path_and_everything_below_it() {
        let locale = Pattern::new("/usr/share/locale/*");
        assert!(locale.matches(b"usr/share/locale/de"));
        assert!(locale.matches(b"usr/share/locale/de/LC_MESSAGES/kiln.mo"));
        // The directory itself stays.
        assert!(!locale.matches(b"usr/share/locale"));
        assert!(!locale.matches(b"usr/share/localed/de"));

        let sound = Pattern::new("/usr/lib/modules/*/kernel/sound/");
        assert!(sound.matches(b"usr/lib/modules/6.1.0-28-amd64/kernel/sound"));
        assert!(sound.matches(b"usr/lib/modules/6.1.0-28-amd64/kernel/sound/snd.ko"));
        assert!(!sound.matches(b"usr/lib/modules/6.1.0-28-amd64/kernel/soundwire"));
        // `*` stays within one component.
        assert!(!sound.matches(b"usr/lib/modules/a/b/kernel/sound"));
        // Paths are matched as walked: `/lib` is not `/usr/lib`.
        assert!(!sound.matches(b"lib/modules/6.1.0-28-amd64/kernel/sound"));

        let doc = Pattern::new("/usr/share/doc");
        assert!(doc.matches(b"usr/share/doc"));
        assert!(!doc.matches(b"usr/share/doc-base"));
        assert!(!doc.matches(b"usr/share"));
        assert!(!Pattern::new("/").matches(b"usr"));
    }

    #[test]
    fn a_star_matches_any_run_of_bytes_in_a_component() {
        let cases: [(&str, &str, bool); 12] = [
            ("initrd.img*", "initrd.img", true),
            ("initrd.img*", "initrd.img-6.1.0-28-amd64", true),
            ("initrd.img*", "initrd.im", false),
            ("*", "", true),
            ("*", "anything", true),
            ("*.mo", "kiln.mo", true),
            ("*.mo", "kiln.mo.old", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYc-", false),
            ("lib**", "libc.so", true),
            ("exact", "exact", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                component_matches(pattern.as_bytes(), name.as_bytes()),
                expected,
                "{pattern} against {name}"
            );
        }
    }

    #[test]
    fn the_newest_kernel_is_chosen_as_dpkg_orders_versions() {
        let newest =
            |versions: &[&str]| newest_version(versions.iter().map(|v| v.to_string()).collect());
        assert_eq!(
            newest(&["6.1.0-3-amd64", "6.1.0-28-amd64", "6.1.0-9-amd64"]),
            Some("6.1.0-28-amd64".to_string())
        );
        assert_eq!(
            newest(&["6.12.9+bpo-amd64", "6.1.0-28-amd64"]),
            Some("6.12.9+bpo-amd64".to_string())
        );
        // A version dpkg cannot read loses to any it can.
        assert_eq!(
            newest(&["custom_build", "5.10.0-1-amd64"]),
            Some("5.10.0-1-amd64".to_string())
        );
        assert_eq!(newest(&[]), None);
    }

    #[test]
    fn added_entries_take_their_place_in_the_sorted_walk_s_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for path in ["a/b", "a-c", "B", "in", "init.d"] {
            fs::create_dir_all(root.join(path)).expect("mkdir");
        }
        let walked: Vec<Vec<u8>> = walk::tree_sorted(root)
            .into_iter()
            .map(|e| {
                let e = e.expect("walk");
                match walk::relative(&e, root).as_os_str().as_bytes() {
                    b"" => b".".to_vec(),
                    relative => relative.to_vec(),
                }
            })
            .collect();
        let mut sorted = walked.clone();
        sorted.sort_by(|a, b| archive_order(a, b));
        assert_eq!(sorted, walked);

        let mut members: Vec<Member> = walked
            .iter()
            .map(|name| Member {
                mode: SFlag::S_IFDIR.bits() | 0o755,
                ..file(&String::from_utf8_lossy(name), 0)
            })
            .collect();
        assert!(insert_member(&mut members, file("init", 0)));
        assert!(insert_member(&mut members, file("a/b/x", 0)));
        assert!(!insert_member(&mut members, file("missing/x", 0)));
        let names: Vec<String> = members
            .iter()
            .map(|m| String::from_utf8_lossy(&m.name).into_owned())
            .collect();
        assert_eq!(
            names,
            [".", "B", "a", "a/b", "a/b/x", "a-c", "in", "init", "init.d"]
        );
    }

    #[test]
    fn the_biggest_directories_are_the_ones_worth_excluding() {
        let modules = "usr/lib/modules/6.1.0-28-amd64/kernel";
        let members = vec![
            file(&format!("{modules}/drivers/gpu/amdgpu.ko"), 300),
            file(&format!("{modules}/drivers/net/e1000.ko"), 200),
            file(&format!("{modules}/drivers/misc/a.ko"), 40),
            file(&format!("{modules}/drivers/misc2/b.ko"), 40),
            file(&format!("{modules}/drivers/misc3/c.ko"), 40),
            file(&format!("{modules}/fs/x.ko"), 30),
            file("usr/lib/x86_64-linux-gnu/libc.so.6", 250),
            file("usr/share/doc/a/copyright", 40),
            file("usr/share/locale/de/x.mo", 40),
            file("etc/motd", 20),
        ];
        // 1,000 bytes in all: a directory is named from 50 bytes on.
        let biggest = biggest_directories(&members);
        let expected = [
            // Besides gpu and net, 120 bytes in small directories. Its
            // parents up to / are mostly it, and are not named.
            ("/usr/lib/modules/6.1.0-28-amd64/kernel/drivers", 620),
            ("/usr/lib/modules/6.1.0-28-amd64/kernel/drivers/gpu", 300),
            ("/usr/lib/x86_64-linux-gnu", 250),
            ("/usr/lib/modules/6.1.0-28-amd64/kernel/drivers/net", 200),
            // Two directories of 40, neither named on its own.
            ("/usr/share", 80),
        ]
        .map(|(dir, bytes)| (dir.to_string(), bytes));
        assert_eq!(biggest, expected);
    }

    #[test]
    fn zstd_writes_the_same_bytes_with_any_number_of_workers() {
        // Compressible but not trivial: 24 MiB, several of zstd's jobs.
        let mut data = Vec::with_capacity(24 << 20);
        let mut x: u32 = 1;
        while data.len() < 24 << 20 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            data.extend_from_slice(format!("line {} of the tree\n", x >> 20).as_bytes());
        }
        let compress = |workers| {
            let mut encoder = zstd_encoder(Vec::new(), workers).expect("encoder");
            encoder.write_all(&data).expect("write");
            encoder.finish().expect("finish")
        };
        let one = compress(1);
        assert_eq!(one, compress(2));
        assert_eq!(one, compress(5));
        assert_eq!(zstd::decode_all(one.as_slice()).expect("decode"), data);
    }

    /// A tree of plain files (no root needed) with kernels in `/boot`.
    fn kernel_tree(versions: &[&str], modules: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("boot")).expect("mkdir");
        for version in versions {
            fs::write(root.join(format!("boot/vmlinuz-{version}")), version).expect("write");
        }
        for version in modules {
            fs::create_dir_all(root.join(format!("usr/lib/modules/{version}"))).expect("mkdir");
        }
        dir
    }

    #[test]
    fn the_kernel_is_the_image_s_link_or_else_the_newest() {
        let dir = kernel_tree(&KERNELS, &KERNELS);
        let root = dir.path();
        assert_eq!(
            find_kernel(root).expect("kernel"),
            Kernel {
                path: PathBuf::from("boot/vmlinuz-6.1.0-2-amd64"),
                version: "6.1.0-2-amd64".to_string(),
            }
        );
        // Debian's /vmlinuz names the kernel the image boots; its absolute
        // target is in the tree, not on the host. /lib/modules is found
        // through the merged-/usr link.
        fs::rename(root.join("usr/lib"), root.join("usr/lib.real")).expect("rename");
        fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
        fs::rename(
            root.join("usr/lib.real/modules"),
            root.join("usr/lib/modules"),
        )
        .expect("rename");
        symlink("/boot/vmlinuz-6.1.0-1-amd64", root.join("vmlinuz")).expect("symlink");
        assert_eq!(
            find_kernel(root).expect("kernel").version,
            "6.1.0-1-amd64",
            "the link wins"
        );
        // A dangling link is no kernel: the newest is taken.
        fs::remove_file(root.join("vmlinuz")).expect("rm");
        symlink("/boot/vmlinuz-9", root.join("vmlinuz")).expect("symlink");
        assert_eq!(find_kernel(root).expect("kernel").version, "6.1.0-2-amd64");
    }

    #[test]
    fn an_image_without_a_kernel_or_its_modules_says_so() {
        let empty = kernel_tree(&[], &[]);
        let error = find_kernel(empty.path()).expect_err("no kernel");
        assert!(matches!(error, OutputError::NoKernel { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("boot/vmlinuz-<version>"), "{message}");
        assert!(message.contains("`vm` element"), "{message}");

        let no_boot = tempfile::tempdir().expect("tempdir");
        let error = find_kernel(no_boot.path()).expect_err("no /boot");
        assert!(matches!(error, OutputError::NoKernel { .. }), "{error}");

        let no_modules = kernel_tree(&KERNELS, &KERNELS[..1]);
        let error = find_kernel(no_modules.path()).expect_err("no modules");
        assert_eq!(
            error.to_string(),
            "the ramdisk's kernel /boot/vmlinuz-6.1.0-2-amd64 has no modules in the image \
             (no /usr/lib/modules/6.1.0-2-amd64): install the kernel's package rather than \
             copying the kernel alone"
        );
    }

    /// A request for the tree at `tree`, written to `out`.
    fn request<'a>(
        tree: &'a Path,
        out: &Path,
        compression: RamdiskCompression,
    ) -> RamdiskRequest<'a> {
        let settings = manifest::Ramdisk {
            compression: Some(manifest::Spanned::unplaced(compression)),
            ..manifest::Ramdisk::default()
        };
        RamdiskRequest::for_image(tree, out.to_path_buf(), test_fixture::EPOCH, &settings)
    }

    #[test]
    fn the_plan_links_names_numbers_inodes_and_replaces_fstab() {
        // Plain files only: this runs without root.
        let dir = kernel_tree(&KERNELS, &KERNELS);
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).expect("mkdir");
        fs::write(root.join("etc/fstab"), b"UUID=x / ext4 defaults 0 1\n").expect("write");
        fs::write(root.join("etc/a"), b"shared").expect("write");
        fs::hard_link(root.join("etc/a"), root.join("etc/b")).expect("link");
        fs::hard_link(root.join("etc/a"), root.join("etc/c")).expect("link");
        fs::write(
            root.join("boot/initrd.img-6.1.0-2-amd64"),
            b"disk initramfs",
        )
        .expect("write");
        let kernel = find_kernel(root).expect("kernel");
        let out = dir.path().join("out.initramfs");
        let plan =
            plan_archive(&request(root, &out, RamdiskCompression::Zstd), &kernel).expect("plan");
        let by_name = |name: &str| {
            plan.members
                .iter()
                .find(|m| m.name == name.as_bytes())
                .unwrap_or_else(|| panic!("{name} is not in the archive"))
        };
        let names: Vec<String> = plan
            .members
            .iter()
            .map(|m| String::from_utf8_lossy(&m.name).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                ".",
                "boot",
                "boot/vmlinuz-6.1.0-1-amd64",
                "etc",
                "etc/a",
                "etc/b",
                "etc/c",
                "etc/fstab",
                "init",
                "usr",
                "usr/lib",
                "usr/lib/modules",
                "usr/lib/modules/6.1.0-1-amd64",
                "usr/lib/modules/6.1.0-2-amd64",
            ]
        );
        // Inodes 1, 2, 3… in order; the three names share one, and only
        // the last carries the data.
        let inodes: Vec<u32> = plan.members.iter().map(|m| m.ino).collect();
        assert_eq!(inodes, [1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9, 10, 11, 12]);
        for (name, size) in [("etc/a", 0), ("etc/b", 0), ("etc/c", 6)] {
            assert_eq!(by_name(name).size, size, "{name}");
            assert_eq!(by_name(name).nlink, 3, "{name}");
        }
        assert_eq!(by_name("etc/a").body, Body::Empty);
        assert_eq!(plan.summary.hardlinks, 2);
        // A directory counts itself, its entry in its parent and its
        // subdirectories.
        assert_eq!(by_name(".").nlink, 5);
        assert_eq!(by_name("usr/lib/modules").nlink, 4);
        assert_eq!(by_name("etc").nlink, 2);

        let fstab = by_name("etc/fstab");
        assert_eq!(fstab.body, Body::Bytes(RAMDISK_FSTAB.as_bytes().to_vec()));
        assert_eq!(fstab.mode, 0o100_644);
        let init = by_name("init");
        assert_eq!(init.mode, 0o120_777);
        assert_eq!(init.body, Body::Bytes(b"/sbin/init".to_vec()));
        assert!(plan.summary.init_added);
        assert_eq!(
            plan.summary.excluded_bytes,
            "disk initramfs".len() as u64 + "6.1.0-2-amd64".len() as u64
        );
        assert_eq!(
            plan.summary.unpacked_bytes,
            "6.1.0-1-amd64".len() as u64 + 6 + RAMDISK_FSTAB.len() as u64
        );
    }

    #[test]
    fn cloud_init_gets_a_policy_that_waits_for_the_devices_unless_it_has_one() {
        let dir = kernel_tree(&KERNELS, &KERNELS);
        let root = dir.path();
        let out = root.join("out.initramfs");
        let paths = |root: &Path| -> Vec<String> {
            request(root, &out, RamdiskCompression::Zstd)
                .replace
                .iter()
                .map(|r| r.path.clone())
                .collect()
        };
        // No cloud-init: only the fstab.
        assert_eq!(paths(root), ["etc/fstab"]);
        fs::create_dir_all(root.join("etc/cloud")).expect("mkdir");
        assert_eq!(paths(root), ["etc/fstab", "etc/cloud/ds-identify.cfg"]);
        let added = request(root, &out, RamdiskCompression::Zstd).replace[1].clone();
        assert_eq!(added.content, RAMDISK_DS_IDENTIFY.as_bytes());
        assert!(RAMDISK_DS_IDENTIFY.contains("notfound=enabled"));
        // The image's own policy is kept.
        fs::write(root.join("etc/cloud/ds-identify.cfg"), "policy: enabled\n").expect("write");
        assert_eq!(paths(root), ["etc/fstab"]);
    }

    /// Decompresses the initramfs at `path` with the host's tool and
    /// unpacks it with GNU `cpio -idm` into `dir/<name>`, and with
    /// libarchive's `bsdtar` into `dir/<name>.bsdtar`.
    fn unpack(path: &Path, compression: RamdiskCompression, dir: &Path, name: &str) -> PathBuf {
        let archive = dir.join(format!("{name}.cpio"));
        match compression {
            RamdiskCompression::Zstd => {
                run_tool(
                    "zstd",
                    &[
                        "-d",
                        "-q",
                        "-o",
                        &archive.to_string_lossy(),
                        &path.to_string_lossy(),
                    ],
                );
            }
            RamdiskCompression::Gzip => {
                let gz = dir.join(format!("{name}.cpio.gz"));
                fs::copy(path, &gz).expect("copy");
                run_tool("gzip", &["-d", &gz.to_string_lossy()]);
            }
        }
        let bytes = fs::metadata(&archive).expect("stat").len();
        assert_eq!(bytes % ARCHIVE_BLOCK_BYTES, 0, "padded to whole blocks");
        let unpacked = dir.join(name);
        fs::create_dir(&unpacked).expect("mkdir");
        run_tool(
            "cpio",
            &[
                "-idm",
                "--quiet",
                "--no-absolute-filenames",
                "-F",
                &archive.to_string_lossy(),
                "-D",
                &unpacked.to_string_lossy(),
            ],
        );
        let by_bsdtar = dir.join(format!("{name}.bsdtar"));
        fs::create_dir(&by_bsdtar).expect("mkdir");
        run_tool(
            "bsdtar",
            &[
                "-xpf",
                &archive.to_string_lossy(),
                "--numeric-owner",
                "-C",
                &by_bsdtar.to_string_lossy(),
            ],
        );
        unpacked
    }

    /// The description of the fixture's tree as its initramfs holds it.
    fn expected_tree(tree: &Path) -> BTreeMap<String, test_fixture::Described> {
        let mut expected = test_fixture::describe_tree(tree);
        expected.retain(|path, _| {
            !(path == "run/kiln.sock"
                || path.starts_with("boot/initrd.img")
                || path == "boot/vmlinuz-6.1.0-2-amd64")
        });
        for entry in expected.values_mut() {
            entry.mtime = entry.mtime.min(test_fixture::EPOCH as i64);
            // newc holds no extended attributes.
            entry.xattrs.clear();
        }
        let fstab = expected.get_mut("etc/fstab").expect("fstab");
        fstab.content = Some(
            crate::cache::Digest::of_reader(RAMDISK_FSTAB.as_bytes())
                .expect("hash")
                .sha256,
        );
        fstab.size = RAMDISK_FSTAB.len() as u64;
        fstab.mode = 0o644;
        expected.insert(
            "init".to_string(),
            test_fixture::Described {
                kind: "symlink",
                mode: 0o777,
                uid: 0,
                gid: 0,
                size: INIT_TARGET.len() as u64,
                content: None,
                target: Some(INIT_TARGET.to_string()),
                rdev: 0,
                nlink: 1,
                xattrs: Vec::new(),
                mtime: test_fixture::EPOCH as i64,
            },
        );
        expected
    }

    fn assert_trees_equal(
        expected: &BTreeMap<String, test_fixture::Described>,
        found: &BTreeMap<String, test_fixture::Described>,
    ) {
        let mut differences = Vec::new();
        for (path, want) in expected {
            let got = found.get(path);
            if got != Some(want) {
                differences.push(format!("{path}:\n  want {want:?}\n  got  {got:?}"));
            }
        }
        for path in found.keys() {
            if !expected.contains_key(path) {
                differences.push(format!("{path}: not expected"));
            }
        }
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn cpio_unpacks_the_tree_exactly_from_either_compression() {
        let fixture = Fixture::bootable();
        let kernel = find_kernel(&fixture.tree).expect("kernel");
        for compression in [RamdiskCompression::Zstd, RamdiskCompression::Gzip] {
            let name = format!("{compression:?}").to_lowercase();
            let out = fixture.dir.path().join(format!("{name}.initramfs"));
            let summary = write_initramfs(&request(&fixture.tree, &out, compression), &kernel)
                .expect("write");

            assert_eq!(summary.kernel.version, "6.1.0-2-amd64");
            assert_eq!(summary.compression, compression);
            assert_eq!(summary.hardlinks, 1);
            assert_eq!(summary.clamped_mtimes, 1);
            assert_eq!(summary.skipped_sockets, [PathBuf::from("/run/kiln.sock")]);
            assert_eq!(summary.files_with_xattrs, 2);
            assert_eq!(summary.lost_capabilities, [PathBuf::from("/usr/bin/ping")]);
            assert!(summary.init_added);
            assert_eq!(
                summary.compressed_bytes,
                fs::metadata(&out).expect("stat").len()
            );

            let unpacked = unpack(&out, compression, fixture.dir.path(), &name);
            let expected = expected_tree(&fixture.tree);
            assert_eq!(summary.entries as usize, expected.len());
            // libarchive restores everything newc holds, but the time of
            // the directory it unpacks into.
            let by_bsdtar = fixture.dir.path().join(format!("{name}.bsdtar"));
            let mut found = test_fixture::describe_tree(&by_bsdtar);
            if let (Some(root), Some(want)) = (found.get_mut("."), expected.get(".")) {
                root.mtime = want.mtime;
            }
            assert_trees_equal(&expected, &found);
            // GNU cpio gives directories and symbolic links the time of
            // the unpacking (it sets a directory's time before filling
            // it, and never a link's); everything else the same.
            let mut found = test_fixture::describe_tree(&unpacked);
            for (path, entry) in &mut found {
                if matches!(entry.kind, "dir" | "symlink") {
                    entry.mtime = expected.get(path).map_or(entry.mtime, |e| e.mtime);
                }
            }
            assert_trees_equal(&expected, &found);
            // The pair of hard links is one inode again, for both.
            for dir in [&unpacked, &by_bsdtar] {
                let ino = |p: &str| fs::symlink_metadata(dir.join(p)).expect("stat").ino();
                assert_eq!(ino("srv/hard-a"), ino("srv/hard-b"));
            }
        }
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_archive_lists_init_and_relative_paths_in_order() {
        let fixture = Fixture::bootable();
        let kernel = find_kernel(&fixture.tree).expect("kernel");
        let out = fixture.dir.path().join("image.initramfs");
        write_initramfs(
            &request(&fixture.tree, &out, RamdiskCompression::Zstd),
            &kernel,
        )
        .expect("write");
        let archive = fixture.dir.path().join("image.cpio");
        run_tool(
            "zstd",
            &[
                "-d",
                "-q",
                "-o",
                &archive.to_string_lossy(),
                &out.to_string_lossy(),
            ],
        );
        let listing = run_tool("cpio", &["-t", "--quiet", "-F", &archive.to_string_lossy()]);
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(names.first(), Some(&"."));
        assert!(names.contains(&"init"), "{listing}");
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with("./") && !n.starts_with('/')),
            "{listing}"
        );
        let mut sorted = names.clone();
        sorted.sort_by(|a, b| archive_order(a.as_bytes(), b.as_bytes()));
        assert_eq!(names, sorted, "in the sorted walk's order");
        // The image's own initramfs and the kernel are not inside.
        assert!(names.contains(&"boot/vmlinuz-6.1.0-1-amd64"));
        assert!(!names.iter().any(|n| n.starts_with("boot/initrd.img")));
        assert!(!names.contains(&"boot/vmlinuz-6.1.0-2-amd64"));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_same_tree_gives_the_same_bytes() {
        let fixture = Fixture::bootable();
        let kernel = find_kernel(&fixture.tree).expect("kernel");
        for compression in [RamdiskCompression::Zstd, RamdiskCompression::Gzip] {
            let first = fixture.dir.path().join("first.initramfs");
            let second = fixture.dir.path().join("second.initramfs");
            write_initramfs(&request(&fixture.tree, &first, compression), &kernel).expect("write");
            write_initramfs(&request(&fixture.tree, &second, compression), &kernel).expect("write");
            assert_eq!(sha256_of(&first), sha256_of(&second), "{compression:?}");
        }
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn excluded_paths_are_left_out_with_what_is_below_them() {
        let fixture = Fixture::bootable();
        let kernel = find_kernel(&fixture.tree).expect("kernel");
        let out = fixture.dir.path().join("image.initramfs");
        let mut request = request(&fixture.tree, &out, RamdiskCompression::Gzip);
        request.exclude = vec![
            "/usr/share/locale/*".to_string(),
            "/usr/lib/modules/*/kernel/sound".to_string(),
            // Through the merged-/usr link: matches nothing.
            "/lib/modules/*/kernel/drivers".to_string(),
            "/srv/hard-a".to_string(),
        ];
        let summary = write_initramfs(&request, &kernel).expect("write");
        let unpacked = unpack(
            &out,
            RamdiskCompression::Gzip,
            fixture.dir.path(),
            "unpacked",
        );
        let found = test_fixture::describe_tree(&unpacked);

        assert!(
            found.contains_key("usr/share/locale"),
            "the directory stays"
        );
        assert!(!found.contains_key("usr/share/locale/de"));
        for version in KERNELS {
            let modules = format!("usr/lib/modules/{version}/kernel");
            assert!(found.contains_key(&modules));
            assert!(!found.contains_key(&format!("{modules}/sound")));
            assert!(found.contains_key(&format!("{modules}/drivers/net/e1000.ko")));
        }
        // One name of a hard-linked file left out: the other is a plain
        // file with the content.
        assert!(!found.contains_key("srv/hard-a"));
        let hard_b = &found["srv/hard-b"];
        assert_eq!((hard_b.nlink, hard_b.size), (1, 20));
        assert_eq!(summary.hardlinks, 0);
        assert_eq!(
            fs::read_to_string(unpacked.join("etc/fstab")).expect("fstab"),
            RAMDISK_FSTAB
        );

        let sound_bytes: u64 = KERNELS
            .iter()
            .map(|v| format!("sound driver of {v}").len() as u64 * 100)
            .sum();
        let initrd_bytes: u64 = KERNELS
            .iter()
            .map(|v| format!("disk initramfs of {v}").len() as u64 * 1000)
            .sum();
        let kernel_bytes = format!("kernel {}", KERNELS[1]).len() as u64;
        // hard-a's inode is kept through hard-b, but was left out once.
        assert_eq!(
            summary.excluded_bytes,
            "Abbild".len() as u64 + sound_bytes + initrd_bytes + kernel_bytes + 20
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn a_too_large_initramfs_names_the_biggest_directories_and_leaves_nothing() {
        let fixture = Fixture::bootable();
        let kernel = find_kernel(&fixture.tree).expect("kernel");
        let out_dir = fixture.dir.path().join("out");
        fs::create_dir(&out_dir).expect("mkdir");
        let out = out_dir.join("image.initramfs");
        let mut request = request(&fixture.tree, &out, RamdiskCompression::Zstd);
        request.max_bytes = Some(100);
        let error = write_initramfs(&request, &kernel).expect_err("too large");
        let OutputError::RamdiskTooLarge {
            bytes,
            limit,
            biggest,
            ..
        } = &error
        else {
            panic!("{error}");
        };
        assert_eq!(*limit, 100);
        assert!(*bytes > 100);
        let dirs: Vec<&str> = biggest.iter().map(|(d, _)| d.as_str()).collect();
        // Each kernel's modules are a third of the bytes; the sound and
        // network drivers each a sixth.
        for version in KERNELS {
            assert!(
                dirs.contains(&format!("/usr/lib/modules/{version}/kernel/sound").as_str()),
                "{dirs:?}"
            );
        }
        let message = error.to_string();
        assert!(message.contains("`ramdisk.exclude`"), "{message}");
        assert!(
            message.contains("/usr/lib/modules/6.1.0-2-amd64/kernel/sound"),
            "{message}"
        );
        assert_eq!(
            fs::read_dir(&out_dir).expect("list").count(),
            0,
            "nothing left"
        );

        request.max_bytes = Some(*bytes);
        write_initramfs(&request, &kernel).expect("exactly at the limit");
    }
}

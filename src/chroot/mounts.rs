//! Mounts as guards, the kernel filesystems DIB mounts into a chroot, and the
//! one safe way to delete a directory that may have held mounts.
//!
//! DIB's `mount_proc_dev_sys` mounts, in this order: proc on `proc`, a bind
//! of the host's `/dev` on `dev`, a new devpts instance on `dev/pts`
//! (`newinstance,ptmxmode=0666`, so the image's ptys are not the host's) and
//! sysfs on `sys`; `unmount_dir` takes them down deepest first. kiln keeps
//! that order and unmounts in reverse. sysfs is read-only: nothing a build
//! script should do needs to write to the host's kernel settings.
//!
//! `/dev` is **not** the host's, unlike DIB's bind: it is a private tmpfs
//! holding only the nodes a build needs (`null`, `zero`, `full`, `random`,
//! `urandom`, `tty`, `ptmx` -> `pts/ptmx`, the `fd`/`stdin`/`stdout`/
//! `stderr` links, a `pts` of its own and a `shm` tmpfs), as
//! systemd-nspawn and mmdebstrap give. With the host's `/dev`, what the
//! host had attached leaked into the image: initramfs hooks saw the host's
//! disks (and a loop device holding an ext4 labelled `cloudimg-rootfs`
//! gave the initramfs fsck), and libblkid cached the host's devices in
//! `/run/blkid`. kiln never needs a block device in the chroot: it makes
//! disks and filesystems as files, and `block-device.d` is skipped.
//!
//! All of this happens inside the build's private mount namespace
//! ([`super::namespace`]); the guards release mounts in an orderly unwind
//! and the namespace releases them when nothing unwinds.

use fs_err as fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::ChrootError;

const MOUNTINFO: &str = "/proc/thread-self/mountinfo";

/// One mounted filesystem. Dropping it unmounts it, lazily
/// (`MNT_DETACH`) if something still holds it busy; failures are logged,
/// since `Drop` cannot return them. Call [`Mount::unmount`] to see them.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    mounted: bool,
}

impl Mount {
    /// Mounts `source` of type `fstype` on `target` with `flags` and
    /// filesystem options `data`. `what` names the mount in errors.
    pub fn new(
        what: &str,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<Mount, ChrootError> {
        mount(source, target, fstype, flags, data).map_err(|source| ChrootError::Mount {
            fstype: what.to_string(),
            target: target.to_path_buf(),
            source,
        })?;
        Ok(Mount {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// Bind-mounts `source` on `target` (not recursively).
    pub fn bind(source: &Path, target: &Path) -> Result<Mount, ChrootError> {
        let what = format!("a bind of {}", source.display());
        Mount::new(&what, Some(source), target, None, MsFlags::MS_BIND, None)
    }

    /// Where this filesystem is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now and reports failure.
    pub fn unmount(mut self) -> Result<(), ChrootError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), ChrootError> {
        if !self.mounted {
            return Ok(());
        }
        self.mounted = false;
        match umount2(&self.target, MntFlags::empty()) {
            Ok(()) => Ok(()),
            // Still busy (a straggler has a file open): detach it from the
            // tree now; the kernel frees it when the last user lets go.
            Err(Errno::EBUSY) => {
                umount2(&self.target, MntFlags::MNT_DETACH).map_err(|source| ChrootError::Unmount {
                    target: self.target.clone(),
                    source,
                })
            }
            Err(source) => Err(ChrootError::Unmount {
                target: self.target.clone(),
                source,
            }),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(error) = self.release() {
            eprintln!("kiln: warning: {error}");
        }
    }
}

/// The kernel filesystems mounted into a chroot, in mount order. Dropping
/// it unmounts them in reverse order.
#[derive(Debug)]
pub struct ChrootMounts {
    mounts: Vec<Mount>,
}

impl ChrootMounts {
    /// The mount points, in the order they were mounted.
    pub fn targets(&self) -> Vec<&Path> {
        self.mounts.iter().map(Mount::target).collect()
    }

    /// Unmounts everything now, deepest first, and reports the first
    /// failure (after trying every mount).
    pub fn unmount(mut self) -> Result<(), ChrootError> {
        let mut first_error = None;
        while let Some(mount) = self.mounts.pop() {
            if let Err(error) = mount.unmount() {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for ChrootMounts {
    fn drop(&mut self) {
        // A Vec drops front to back; mounts must go back to front.
        while let Some(mount) = self.mounts.pop() {
            drop(mount);
        }
    }
}

/// Mounts proc, /dev, /dev/pts and sysfs into the tree at `root` as DIB
/// does (see the module documentation), creating the mount points if the
/// tree lacks them. On failure, whatever was already mounted is unmounted.
pub fn mount_dib_filesystems(root: &Path) -> Result<ChrootMounts, ChrootError> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut mounts = ChrootMounts { mounts: Vec::new() };

    let proc = mount_point(root, "proc")?;
    mounts.mounts.push(Mount::new(
        "proc",
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?);

    let dev = mount_point(root, "dev")?;
    mounts.mounts.push(Mount::new(
        "a private /dev (tmpfs)",
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=4m"),
    )?);
    populate_dev(&dev)?;

    let pts = mount_point(root, "dev/pts")?;
    mounts.mounts.push(Mount::new(
        "devpts",
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?);

    let shm = mount_point(root, "dev/shm")?;
    mounts.mounts.push(Mount::new(
        "a tmpfs for /dev/shm",
        Some(Path::new("tmpfs")),
        &shm,
        Some("tmpfs"),
        nosuid_nodev_noexec,
        Some("mode=1777"),
    )?);

    let sys = mount_point(root, "sys")?;
    mounts.mounts.push(Mount::new(
        "sysfs",
        Some(Path::new("sysfs")),
        &sys,
        Some("sysfs"),
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?);
    Ok(mounts)
}

/// The character devices of a private `/dev`: name, major, minor (the
/// kernel's fixed numbers, `Documentation/admin-guide/devices.txt`).
const DEV_NODES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symbolic links of a private `/dev`: name, target.
const DEV_LINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Fills the fresh tmpfs at `dev` with [`DEV_NODES`] (mode 0666, whatever
/// the umask) and [`DEV_LINKS`].
fn populate_dev(dev: &Path) -> Result<(), ChrootError> {
    use fs_err::os::unix::fs::symlink;
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    use std::os::unix::fs::PermissionsExt as _;

    let io = |action: &'static str, path: PathBuf| {
        move |source: std::io::Error| ChrootError::Io {
            action,
            path,
            source,
        }
    };
    for (name, major, minor) in DEV_NODES {
        let path = dev.join(name);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
        )
        .map_err(|errno| io("create the device node", path.clone())(errno.into()))?;
        fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    }
    for (name, target) in DEV_LINKS {
        let path = dev.join(name);
        symlink(target, &path)?;
    }
    Ok(())
}

/// `root/relative`, created if absent. Refuses a mount point that is a
/// symlink: mounting on it would mount on wherever it points, possibly on
/// the host.
fn mount_point(root: &Path, relative: &str) -> Result<PathBuf, ChrootError> {
    let path = root.join(relative);
    match fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            let resolved = fs::read_link(&path).unwrap_or_default();
            Err(ChrootError::OutsideTree { path, resolved })
        }
        Ok(_) => Ok(path),
        Err(_) => {
            fs::create_dir_all(&path)?;
            Ok(path)
        }
    }
}

/// Every mount point at or below `path` in the calling thread's mount
/// namespace, in the order `/proc/thread-self/mountinfo` lists them
/// (parents before children).
pub fn mounts_under(path: &Path) -> Result<Vec<PathBuf>, ChrootError> {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mountinfo = fs::read_to_string(MOUNTINFO)?;
    Ok(parse_mount_points(&mountinfo)
        .into_iter()
        .filter(|mount_point| mount_point.starts_with(&path))
        .collect())
}

/// The mount point (fifth field) of every line of a mountinfo file, with
/// the kernel's octal escapes (`\040` for a space, ...) decoded.
pub(crate) fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(decode_octal_escapes)
        .collect()
}

fn decode_octal_escapes(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                decoded.push(u8::try_from(value).unwrap_or(b'?'));
                index += 4;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(decoded))
}

/// Mounts a tmpfs of at most `size` bytes (pages are taken only as files
/// are written) on `dir`, made if missing, mode 0755. Nothing unmounts it
/// but [`unmount_all_under`] or the end of the build's mount namespace:
/// the directory it is on is removed with the build's work directory.
pub fn mount_tmpfs(dir: &Path, size: u64) -> Result<(), ChrootError> {
    fs::create_dir_all(dir)?;
    let options = format!("size={size},mode=0755");
    mount(
        Some("kiln-tree"),
        dir,
        Some("tmpfs"),
        // As a directory on disk would be: the tree's set-uid programs and
        // device nodes work in the chroot.
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| ChrootError::Mount {
        fstype: "tmpfs".to_string(),
        target: dir.to_path_buf(),
        source,
    })
}

/// Unmounts everything at or below `path`, deepest first, lazily if busy.
/// The last resort of a cleanup whose guards were lost.
pub fn unmount_all_under(path: &Path) -> Result<(), ChrootError> {
    let mut first_error = None;
    for target in mounts_under(path)?.into_iter().rev() {
        let result = umount2(&target, MntFlags::empty())
            .or_else(|_| umount2(&target, MntFlags::MNT_DETACH))
            .map_err(|source| ChrootError::Unmount { target, source });
        if let Err(error) = result {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Deletes `path` and everything in it, but refuses while anything is
/// mounted at or below it: deleting through a bind of `/dev` would delete
/// the host's device nodes.
pub fn remove_dir_all_checked(path: &Path) -> Result<(), ChrootError> {
    let mounts = mounts_under(path)?;
    if !mounts.is_empty() {
        return Err(ChrootError::StillMounted {
            path: path.to_path_buf(),
            mounts,
        });
    }
    Ok(fs::remove_dir_all(path)?)
}

//! The image a machine boots: the files found ([`ImageFiles`]: a disk
//! image, or a ramdisk's kernel and initramfs), and what kiln learns by
//! looking at them before booting (a disk's format and size from
//! `qemu-img info`, an initramfs's size and compression).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::initramfs::{Segment, Unpacked};
use super::{MachineError, failed};
use crate::host::command;

/// The files of a built image that a machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFiles {
    /// A disk image (`.qcow2`, `.raw`, or any format `qemu-img` reads).
    Disk(PathBuf),
    /// A ramdisk: a Linux kernel and the initramfs it unpacks into RAM
    /// (the `ramdisk` output's `<name>.kernel` and `<name>.initramfs`).
    Ramdisk {
        /// The kernel (a bzImage).
        kernel: PathBuf,
        /// The initramfs holding the whole tree.
        initramfs: PathBuf,
    },
}

impl ImageFiles {
    /// The file holding the image's tree: the disk image, or the
    /// initramfs.
    pub fn tree_file(&self) -> &Path {
        match self {
            ImageFiles::Disk(path) => path,
            ImageFiles::Ramdisk { initramfs, .. } => initramfs,
        }
    }

    /// Whether this is a ramdisk.
    pub fn is_ramdisk(&self) -> bool {
        matches!(self, ImageFiles::Ramdisk { .. })
    }

    /// The bytes of [`tree_file`](Self::tree_file) to search for files
    /// the image must not hold: a disk image's as they are (an
    /// uncompressed image holds every file's bytes), an initramfs's
    /// archives decompressed, as the kernel unpacks them.
    pub fn tree_bytes(&self) -> std::io::Result<Box<dyn Read>> {
        let file = fs_err::File::open(self.tree_file())?;
        Ok(match self {
            ImageFiles::Disk(_) => Box::new(file),
            ImageFiles::Ramdisk { .. } => Box::new(Unpacked::new(file)),
        })
    }
}

/// A ramdisk to boot, inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamdiskImage {
    /// The kernel's absolute path.
    pub kernel: PathBuf,
    /// The initramfs's absolute path.
    pub initramfs: PathBuf,
    /// The initramfs's size in bytes (compressed, as it is on disk).
    pub initramfs_bytes: u64,
    /// How the initramfs's first archive is stored, when kiln knows the
    /// format.
    pub compression: Option<Segment>,
    /// Parameters added to the kernel command line after the serial
    /// console's (the imagefile's `ramdisk.cmdline`); may be empty.
    pub cmdline: String,
}

impl RamdiskImage {
    /// Looks at `kernel` and `initramfs` (their paths made absolute, the
    /// initramfs's size and first bytes); `cmdline` is added to the kernel
    /// command line.
    pub fn inspect(
        kernel: &Path,
        initramfs: &Path,
        cmdline: &str,
    ) -> Result<RamdiskImage, MachineError> {
        let kernel = fs_err::canonicalize(kernel)?;
        let initramfs = fs_err::canonicalize(initramfs)?;
        let mut file = fs_err::File::open(&initramfs)?;
        let initramfs_bytes = file.metadata()?.len();
        let mut head = Vec::with_capacity(8);
        file.by_ref().take(8).read_to_end(&mut head)?;
        Ok(RamdiskImage {
            kernel,
            initramfs,
            initramfs_bytes,
            compression: Segment::detect(&head),
            cmdline: cmdline.trim().to_string(),
        })
    }

    /// The whole kernel command line on `platform`: its serial console,
    /// then [`cmdline`](Self::cmdline).
    pub fn kernel_cmdline(&self, platform: super::Platform) -> String {
        let console = platform.kernel_console();
        if self.cmdline.is_empty() {
            console.to_string()
        } else {
            format!("{console} {}", self.cmdline)
        }
    }
}

/// The format of a disk image, as QEMU names it (`qcow2`, `raw`, `vmdk`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFormat(pub String);

impl ImageFormat {
    /// The name QEMU uses for it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A disk image to boot, inspected.
#[derive(Debug, Clone)]
pub struct DiskImage {
    /// Its absolute path (an overlay names its backing file by it).
    pub path: PathBuf,
    /// Its format.
    pub format: ImageFormat,
    /// The size of the disk it holds, in bytes.
    pub virtual_bytes: u64,
}

impl DiskImage {
    /// Inspects the image at `path` with `qemu-img info` (shared, so an
    /// image in use by another QEMU can be read).
    pub fn inspect(path: &Path) -> Result<DiskImage, MachineError> {
        let path = fs_err::canonicalize(path)?;
        let finished = command::run(
            "qemu-img",
            &[
                "info".as_ref(),
                "--output=json".as_ref(),
                "--force-share".as_ref(),
                path.as_os_str(),
            ],
            "qemu-utils",
        )?;
        if !finished.success() {
            return Err(failed("qemu-img info", &finished));
        }
        let (format, virtual_bytes) =
            parse_info(&finished.stdout).map_err(|reason| MachineError::ImageInfo {
                path: path.clone(),
                reason,
            })?;
        Ok(DiskImage {
            path,
            format,
            virtual_bytes,
        })
    }
}

/// The format and virtual size from `qemu-img info --output=json`.
fn parse_info(json: &[u8]) -> Result<(ImageFormat, u64), String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
    let format = value
        .get("format")
        .and_then(serde_json::Value::as_str)
        .ok_or("no `format`")?;
    let size = value
        .get("virtual-size")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no `virtual-size`")?;
    Ok((ImageFormat(format.to_string()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_img_info_gives_format_and_size() {
        let json = br#"{"virtual-size": 2147483648, "filename": "x.qcow2", "format": "qcow2", "dirty-flag": false}"#;
        assert_eq!(
            parse_info(json),
            Ok((ImageFormat("qcow2".to_string()), 2 << 30))
        );
        assert!(parse_info(b"{}").is_err());
        assert!(parse_info(b"nope").is_err());
    }

    #[test]
    fn a_ramdisk_is_inspected_and_its_command_line_starts_with_the_console() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("web.kernel");
        let initramfs = dir.path().join("web.initramfs");
        std::fs::write(&kernel, b"MZ").expect("write");
        let bytes = crate::machine::initramfs::tests::zstd(b"070701");
        std::fs::write(&initramfs, &bytes).expect("write");
        let ramdisk =
            RamdiskImage::inspect(&kernel, &initramfs, " ipa-debug=1 \n").expect("inspect");
        assert_eq!(ramdisk.initramfs_bytes, bytes.len() as u64);
        assert_eq!(ramdisk.compression, Some(Segment::Zstd));
        assert!(ramdisk.kernel.is_absolute());
        assert_eq!(
            ramdisk.kernel_cmdline(crate::machine::Platform::X86_64),
            "console=ttyS0 ipa-debug=1"
        );
        let plain = RamdiskImage::inspect(&kernel, &kernel, "").expect("inspect");
        assert_eq!(plain.compression, None);
        assert_eq!(
            plain.kernel_cmdline(crate::machine::Platform::X86_64),
            "console=ttyS0"
        );
    }
}

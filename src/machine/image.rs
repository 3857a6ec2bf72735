//! The image file a machine boots: where it is and what `qemu-img info`
//! says about it (format, virtual size).

use std::path::{Path, PathBuf};

use super::{MachineError, failed};
use crate::host::command;

/// The format of a disk image, as QEMU names it (`qcow2`, `raw`, `vmdk`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFormat(pub String);

impl ImageFormat {
    /// The name QEMU uses for it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An image file to boot, inspected.
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
}

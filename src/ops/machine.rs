//! What `kiln boot` and `kiln test` share: finding the image (from an
//! imagefile and the output directory, or given directly) and turning the
//! command line's machine options into a [`MachineSpec`].

use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::machine::Accel;
use crate::machine::{DiskImage, Firmware, MachineSpec, Serial, qemu};
use crate::manifest::{self, Checked, DEFAULT_ROOT_LABEL, Size};

/// How the machine is set up, shared by `kiln boot` and `kiln test`.
#[derive(Debug, Clone)]
pub struct MachineOptions {
    /// An imagefile (whose built image is booted) or an image file.
    pub path: PathBuf,
    /// Where `kiln build` wrote the image.
    pub output: PathBuf,
    /// Boot with UEFI firmware instead of BIOS.
    pub uefi: bool,
    /// How QEMU runs the guest.
    pub accel: Accel,
    /// The machine's disk size (default: the image's plus
    /// [`qemu::GROW_BYTES`]).
    pub disk_size: Option<Size>,
    /// Write the serial console to this file.
    pub serial_log: Option<PathBuf>,
    /// The user to ssh in as.
    pub user: String,
}

/// The image to boot, and the imagefile it was built from if known.
#[derive(Debug)]
pub struct Target {
    /// The image file.
    pub image: PathBuf,
    /// The image's name (the host name of the machine).
    pub name: String,
    /// The imagefile, when the image was found through one.
    pub manifest: Option<Checked>,
}

impl Target {
    /// The label the root filesystem should have: the manifest's, or
    /// `cloudimg-rootfs`.
    pub fn root_label(&self) -> String {
        let Some(checked) = &self.manifest else {
            return DEFAULT_ROOT_LABEL.to_string();
        };
        let disk = &checked.manifest.disk.value;
        let label = match &disk.table {
            None => disk.label.as_ref(),
            Some(_) => disk
                .partitions
                .iter()
                .find(|p| p.mountpoint.as_ref().is_some_and(|m| m.is_root()))
                .and_then(|p| p.label.as_ref()),
        };
        label.map_or_else(
            || DEFAULT_ROOT_LABEL.to_string(),
            |l| l.as_str().to_string(),
        )
    }
}

/// Whether `path` names an imagefile rather than an image.
fn is_imagefile(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml")
}

/// Finds the image `options.path` means: an imagefile's built
/// `<output>/<name>.qcow2` (or `.raw`), or the image file itself.
pub fn find_target(options: &MachineOptions) -> Result<Target, Failure> {
    if !is_imagefile(&options.path) {
        if !options.path.is_file() {
            return Err(Failure::user(miette::miette!(
                help = "give an imagefile (`imagefile.yaml`) or a built image such as `out/<name>.qcow2`",
                "{} does not exist",
                options.path.display()
            )));
        }
        let name = options
            .path
            .file_stem()
            .map_or_else(|| "kiln".to_string(), |s| s.to_string_lossy().into_owned());
        return Ok(Target {
            image: options.path.clone(),
            name,
            manifest: None,
        });
    }
    let checked = manifest::read(&options.path)?;
    let name = checked.manifest.name.value.as_str().to_string();
    let candidates = ["qcow2", "raw"].map(|ext| options.output.join(format!("{name}.{ext}")));
    let Some(image) = candidates.iter().find(|c| c.is_file()) else {
        return Err(Failure::user(miette::miette!(
            help = format!(
                "run `kiln build {}{}` first",
                options.path.display(),
                if options.output == Path::new("out") {
                    String::new()
                } else {
                    format!(" -o {}", options.output.display())
                }
            ),
            "{name} has not been built: neither {} nor {} exists",
            candidates[0].display(),
            candidates[1].display()
        )));
    };
    Ok(Target {
        image: image.clone(),
        name,
        manifest: Some(checked),
    })
}

/// The machine to start for `target`, with its serial port on `serial`.
pub fn machine_spec(
    options: &MachineOptions,
    target: &Target,
    serial: Serial,
) -> Result<MachineSpec, Failure> {
    let image = DiskImage::inspect(&target.image).map_err(Failure::internal)?;
    let disk_bytes = match options.disk_size {
        Some(size) if size.bytes() < image.virtual_bytes => {
            return Err(Failure::user(miette::miette!(
                help = format!(
                    "give at least {}, or leave --disk-size out for the image's size plus 1 GiB",
                    Size::from_bytes(image.virtual_bytes.div_ceil(1 << 20) << 20)
                ),
                "--disk-size {size} is smaller than the image ({} bytes)",
                image.virtual_bytes
            )));
        }
        Some(size) => size.bytes(),
        None => image.virtual_bytes.saturating_add(qemu::GROW_BYTES),
    };
    let hostname: String = target
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Ok(MachineSpec {
        image,
        disk_bytes,
        accel: options.accel,
        firmware: if options.uefi {
            Firmware::Uefi
        } else {
            Firmware::Bios
        },
        serial,
        hostname: hostname.trim_matches('-').to_string(),
        user: options.user.clone(),
        extra_user_data: String::new(),
    })
}

/// `path` made absolute against the current directory.
pub fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path).map_err(Failure::internal)
}

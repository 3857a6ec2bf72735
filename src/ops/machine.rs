//! What `kiln boot` and `kiln test` share: finding the image (from an
//! imagefile and the output directory, or given directly) and turning the
//! command line's machine options into a [`MachineSpec`].
//!
//! An imagefile's image is its disk image when its `outputs` have a disk
//! format, and its ramdisk (`<name>.kernel` and `<name>.initramfs`) when
//! they have `ramdisk` and no disk format, or when `--ramdisk` asks for
//! it. A file given directly is a ramdisk when it is a `.kernel` or an
//! `.initramfs` (the other one beside it), a disk image otherwise.

use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::machine::Accel;
use crate::machine::{
    Boot, DiskImage, Firmware, ImageFiles, MachineSpec, Platform, RamdiskImage, Serial, qemu,
};
use crate::manifest::{self, Checked, DEFAULT_ROOT_LABEL, OutputFormat, Size};
use crate::output;
use crate::output::ramdisk::KERNEL_EXTENSION;

/// The file name extension of a ramdisk's initramfs.
fn initramfs_extension() -> &'static str {
    output::extension(OutputFormat::Ramdisk)
}

/// How the machine is set up, shared by `kiln boot` and `kiln test`.
#[derive(Debug, Clone)]
pub struct MachineOptions {
    /// An imagefile (whose built image is booted) or an image file.
    pub path: PathBuf,
    /// Where `kiln build` wrote the image.
    pub output: PathBuf,
    /// Boot with UEFI firmware instead of BIOS.
    pub uefi: bool,
    /// The architecture of an image given without its imagefile (`None`:
    /// the imagefile's, else amd64).
    pub arch: Option<manifest::Arch>,
    /// How QEMU runs the guest.
    pub accel: Accel,
    /// Boot the imagefile's ramdisk even when it has a disk image too.
    pub ramdisk: bool,
    /// The machine's disk size (default: the image's plus
    /// [`qemu::GROW_BYTES`]); refused for a ramdisk.
    pub disk_size: Option<Size>,
    /// Write the serial console to this file.
    pub serial_log: Option<PathBuf>,
    /// The user to ssh in as.
    pub user: String,
}

/// The image to boot, and the imagefile it was built from if known.
#[derive(Debug)]
pub struct Target {
    /// The image's files.
    pub files: ImageFiles,
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

    /// The machine that runs the image: the imagefile's `arch`; a PC for
    /// an image given without its imagefile.
    pub fn platform(&self) -> Platform {
        self.manifest.as_ref().map_or(Platform::X86_64, |checked| {
            Platform::for_arch(checked.manifest.base.value.arch.value)
        })
    }

    /// What the imagefile adds to a ramdisk's kernel command line
    /// (`ramdisk.cmdline`); empty without an imagefile.
    pub fn ramdisk_cmdline(&self) -> &str {
        self.manifest
            .as_ref()
            .and_then(|checked| checked.manifest.ramdisk.as_ref())
            .and_then(|ramdisk| ramdisk.value.cmdline.as_ref())
            .map_or("", |cmdline| cmdline.value.as_str())
    }
}

/// Whether `path` names an imagefile rather than an image.
fn is_imagefile(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml")
}

/// Finds the image `options.path` means: an imagefile's built disk image
/// (`<output>/<name>.qcow2`, else `.raw`) or ramdisk (`<output>/<name>.kernel`
/// and `.initramfs`), or the files given.
pub fn find_target(options: &MachineOptions) -> Result<Target, Failure> {
    if !is_imagefile(&options.path) {
        return given_target(options);
    }
    let checked = manifest::read(&options.path)?;
    let name = checked.manifest.name.value.as_str().to_string();
    let outputs: Vec<OutputFormat> = checked.manifest.outputs.iter().map(|o| o.value).collect();
    let has_ramdisk = outputs.contains(&OutputFormat::Ramdisk);
    let has_disk = outputs.iter().any(|&format| output::is_disk_format(format));
    let build_help = || {
        format!(
            "run `kiln build {}{}` first",
            options.path.display(),
            if options.output == Path::new("out") {
                String::new()
            } else {
                format!(" -o {}", options.output.display())
            }
        )
    };
    let files = if options.ramdisk || (has_ramdisk && !has_disk) {
        if !has_ramdisk {
            return Err(Failure::user(miette::miette!(
                help = format!(
                    "add `ramdisk` to the `outputs` of {} and build it, or leave out --ramdisk",
                    options.path.display()
                ),
                "--ramdisk boots a ramdisk, and {name} has no `ramdisk` output"
            )));
        }
        let kernel = options.output.join(format!("{name}.{KERNEL_EXTENSION}"));
        let initramfs = options
            .output
            .join(output::file_name(&name, OutputFormat::Ramdisk));
        let missing: Vec<&PathBuf> = [&kernel, &initramfs]
            .into_iter()
            .filter(|path| !path.is_file())
            .collect();
        match missing.as_slice() {
            [] => ImageFiles::Ramdisk { kernel, initramfs },
            [one] => {
                return Err(Failure::user(miette::miette!(
                    help = build_help(),
                    "{name}'s ramdisk has not been built: {} does not exist",
                    one.display()
                )));
            }
            _ => {
                return Err(Failure::user(miette::miette!(
                    help = build_help(),
                    "{name}'s ramdisk has not been built: neither {} nor {} exists",
                    kernel.display(),
                    initramfs.display()
                )));
            }
        }
    } else {
        let candidates = ["qcow2", "raw"].map(|ext| options.output.join(format!("{name}.{ext}")));
        let Some(image) = candidates.iter().find(|c| c.is_file()) else {
            return Err(Failure::user(miette::miette!(
                help = build_help(),
                "{name} has not been built: neither {} nor {} exists",
                candidates[0].display(),
                candidates[1].display()
            )));
        };
        ImageFiles::Disk(image.clone())
    };
    Ok(Target {
        files,
        name,
        manifest: Some(checked),
    })
}

/// The target of a file given instead of an imagefile: a ramdisk when it
/// is a `.kernel` or an `.initramfs` (the other one beside it), a disk
/// image otherwise.
fn given_target(options: &MachineOptions) -> Result<Target, Failure> {
    let path = &options.path;
    if !path.is_file() {
        return Err(Failure::user(miette::miette!(
            help = "give an imagefile (`imagefile.yaml`), a built image such as `out/<name>.qcow2`, \
                    or a ramdisk's `out/<name>.initramfs`",
            "{} does not exist",
            path.display()
        )));
    }
    let name = path
        .file_stem()
        .map_or_else(|| "kiln".to_string(), |s| s.to_string_lossy().into_owned());
    let extension = path.extension().and_then(|e| e.to_str());
    let files = if extension == Some(KERNEL_EXTENSION) || extension == Some(initramfs_extension()) {
        let kernel = path.with_extension(KERNEL_EXTENSION);
        let initramfs = path.with_extension(initramfs_extension());
        let (other, what) = if extension == Some(KERNEL_EXTENSION) {
            (&initramfs, "initramfs")
        } else {
            (&kernel, "kernel")
        };
        if !other.is_file() {
            return Err(Failure::user(miette::miette!(
                help = format!(
                    "a ramdisk is booted from `{name}.{KERNEL_EXTENSION}` and `{name}.{}` side \
                     by side, as `kiln build` writes them: keep the two together",
                    initramfs_extension()
                ),
                "{} has no {what} beside it: {} does not exist",
                path.display(),
                other.display()
            )));
        }
        ImageFiles::Ramdisk { kernel, initramfs }
    } else {
        if options.ramdisk {
            return Err(Failure::user(miette::miette!(
                help = format!(
                    "give a ramdisk's `<name>.{}` (with `<name>.{KERNEL_EXTENSION}` beside it) or its \
                     imagefile, or leave out --ramdisk",
                    initramfs_extension()
                ),
                "--ramdisk boots a ramdisk, and {} is not one",
                path.display()
            )));
        }
        ImageFiles::Disk(path.clone())
    };
    Ok(Target {
        files,
        name,
        manifest: None,
    })
}

/// The machine to start for `target`, with its serial port on `serial`.
pub fn machine_spec(
    options: &MachineOptions,
    target: &Target,
    serial: Serial,
) -> Result<MachineSpec, Failure> {
    let boot = match &target.files {
        ImageFiles::Disk(path) => disk_boot(options, path)?,
        ImageFiles::Ramdisk { kernel, initramfs } => {
            if let Some(size) = options.disk_size {
                return Err(Failure::user(miette::miette!(
                    help = "leave out --disk-size: a ramdisk's machine has no disk to size, and \
                            gets memory for its tree instead",
                    "--disk-size {size} does not apply to a ramdisk, which runs from RAM"
                )));
            }
            Boot::Ramdisk(
                RamdiskImage::inspect(kernel, initramfs, target.ramdisk_cmdline())
                    .map_err(Failure::internal)?,
            )
        }
    };
    let hostname: String = target
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let platform = match (options.arch, &target.manifest) {
        (None, _) => target.platform(),
        (Some(arch), None) => Platform::for_arch(arch),
        (Some(arch), Some(checked)) => {
            let written = checked.manifest.base.value.arch.value;
            if arch != written {
                return Err(Failure::user(miette::miette!(
                    help = "leave out --arch: it is for image files given without their imagefile",
                    "--arch {} differs from the imagefile's `arch: {}`",
                    arch.as_str(),
                    written.as_str()
                )));
            }
            Platform::for_arch(arch)
        }
    };
    Ok(MachineSpec {
        platform,
        memory_mib: boot.memory_mib(),
        boot,
        accel: options.accel,
        // An arm64 machine has only UEFI firmware: `--uefi` changes nothing.
        firmware: if options.uefi || platform.uefi_only() {
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

/// A disk image's boot: the image inspected, and the machine's disk size
/// (`--disk-size`, at least the image's).
fn disk_boot(options: &MachineOptions, path: &Path) -> Result<Boot, Failure> {
    let image = DiskImage::inspect(path).map_err(Failure::internal)?;
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
    Ok(Boot::Disk { image, disk_bytes })
}

/// `path` made absolute against the current directory.
pub fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path).map_err(Failure::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAMDISK_ONLY: &str = "name: ipa\nbase: {distro: debian, release: bookworm}\n\
                                outputs: [ramdisk]\nramdisk: {cmdline: ipa-debug=1}\n";
    const BOTH: &str = "name: ipa\nbase: {distro: debian, release: bookworm}\n\
                        outputs: [qcow2, ramdisk]\n";
    const DISK_ONLY: &str = "name: ipa\nbase: {distro: debian, release: bookworm}\n\
                             outputs: [qcow2]\n";

    /// A directory with `imagefile.yaml` holding `manifest`, and `out/`
    /// holding empty files named `built`.
    fn project(manifest: &str, built: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("imagefile.yaml"), manifest).expect("write");
        std::fs::create_dir(dir.path().join("out")).expect("mkdir");
        for name in built {
            std::fs::write(dir.path().join("out").join(name), b"").expect("write");
        }
        dir
    }

    fn options(path: PathBuf, output: PathBuf, ramdisk: bool) -> MachineOptions {
        MachineOptions {
            path,
            output,
            uefi: false,
            arch: None,
            accel: Accel::Tcg,
            ramdisk,
            disk_size: None,
            serial_log: None,
            user: "debian".to_string(),
        }
    }

    fn imagefile(dir: &tempfile::TempDir, ramdisk: bool) -> MachineOptions {
        options(
            dir.path().join("imagefile.yaml"),
            dir.path().join("out"),
            ramdisk,
        )
    }

    /// The one diagnostic of a user failure: its message and `help:`.
    fn diagnostic(result: Result<Target, Failure>) -> (String, String) {
        match result {
            Err(Failure::User(reports)) => {
                let [report] = reports.as_slice() else {
                    panic!("one diagnostic, not {reports:?}");
                };
                let help = report.help().map(|h| h.to_string()).unwrap_or_default();
                (report.to_string(), help)
            }
            other => panic!("a user failure, not {other:?}"),
        }
    }

    fn ramdisk_files(dir: &Path) -> ImageFiles {
        ImageFiles::Ramdisk {
            kernel: dir.join("ipa.kernel"),
            initramfs: dir.join("ipa.initramfs"),
        }
    }

    #[test]
    fn an_imagefile_with_only_a_ramdisk_boots_its_kernel_and_initramfs() {
        let dir = project(RAMDISK_ONLY, &["ipa.kernel", "ipa.initramfs"]);
        let target = find_target(&imagefile(&dir, false)).expect("found");
        assert_eq!(target.files, ramdisk_files(&dir.path().join("out")));
        assert_eq!(target.name, "ipa");
        assert_eq!(target.ramdisk_cmdline(), "ipa-debug=1");
    }

    #[test]
    fn an_imagefile_with_both_boots_its_disk_unless_asked_for_the_ramdisk() {
        let dir = project(BOTH, &["ipa.qcow2", "ipa.kernel", "ipa.initramfs"]);
        let target = find_target(&imagefile(&dir, false)).expect("found");
        assert_eq!(
            target.files,
            ImageFiles::Disk(dir.path().join("out/ipa.qcow2"))
        );
        let target = find_target(&imagefile(&dir, true)).expect("found");
        assert_eq!(target.files, ramdisk_files(&dir.path().join("out")));
        assert_eq!(target.ramdisk_cmdline(), "");
    }

    #[test]
    fn a_ramdisk_not_built_names_the_missing_files_and_says_to_build() {
        let dir = project(RAMDISK_ONLY, &["ipa.kernel"]);
        let out = dir.path().join("out");
        let (message, help) = diagnostic(find_target(&imagefile(&dir, false)));
        assert_eq!(
            message,
            format!(
                "ipa's ramdisk has not been built: {} does not exist",
                out.join("ipa.initramfs").display()
            )
        );
        assert_eq!(
            help,
            format!(
                "run `kiln build {} -o {}` first",
                dir.path().join("imagefile.yaml").display(),
                out.display()
            )
        );
        let dir = project(BOTH, &["ipa.qcow2"]);
        let out = dir.path().join("out");
        let (message, _) = diagnostic(find_target(&imagefile(&dir, true)));
        assert_eq!(
            message,
            format!(
                "ipa's ramdisk has not been built: neither {} nor {} exists",
                out.join("ipa.kernel").display(),
                out.join("ipa.initramfs").display()
            )
        );
        // The disk's message still names the disk's files.
        let dir = project(BOTH, &["ipa.kernel", "ipa.initramfs"]);
        let out = dir.path().join("out");
        let (message, _) = diagnostic(find_target(&imagefile(&dir, false)));
        assert_eq!(
            message,
            format!(
                "ipa has not been built: neither {} nor {} exists",
                out.join("ipa.qcow2").display(),
                out.join("ipa.raw").display()
            )
        );
    }

    #[test]
    fn asking_for_the_ramdisk_of_an_imagefile_without_one_is_refused() {
        let dir = project(DISK_ONLY, &["ipa.qcow2"]);
        let (message, help) = diagnostic(find_target(&imagefile(&dir, true)));
        assert_eq!(
            message,
            "--ramdisk boots a ramdisk, and ipa has no `ramdisk` output"
        );
        assert!(
            help.starts_with("add `ramdisk` to the `outputs` of "),
            "{help}"
        );
    }

    #[test]
    fn a_kernel_or_initramfs_given_boots_the_pair() {
        let dir = project(DISK_ONLY, &["ipa.kernel", "ipa.initramfs", "ipa.qcow2"]);
        let out = dir.path().join("out");
        for given in ["ipa.kernel", "ipa.initramfs"] {
            for ramdisk in [false, true] {
                let target =
                    find_target(&options(out.join(given), out.clone(), ramdisk)).expect("found");
                assert_eq!(target.files, ramdisk_files(&out), "{given}");
                assert_eq!(target.name, "ipa");
                assert!(target.manifest.is_none());
            }
        }
        let target =
            find_target(&options(out.join("ipa.qcow2"), out.clone(), false)).expect("found");
        assert_eq!(target.files, ImageFiles::Disk(out.join("ipa.qcow2")));
        let (message, help) = diagnostic(find_target(&options(
            out.join("ipa.qcow2"),
            out.clone(),
            true,
        )));
        assert_eq!(
            message,
            format!(
                "--ramdisk boots a ramdisk, and {} is not one",
                out.join("ipa.qcow2").display()
            )
        );
        assert!(help.contains("leave out --ramdisk"), "{help}");
    }

    #[test]
    fn a_ramdisk_given_without_its_other_half_is_refused() {
        let dir = project(DISK_ONLY, &["ipa.initramfs", "web.kernel"]);
        let out = dir.path().join("out");
        let (message, help) = diagnostic(find_target(&options(
            out.join("ipa.initramfs"),
            out.clone(),
            false,
        )));
        assert_eq!(
            message,
            format!(
                "{} has no kernel beside it: {} does not exist",
                out.join("ipa.initramfs").display(),
                out.join("ipa.kernel").display()
            )
        );
        assert!(help.contains("`ipa.kernel` and `ipa.initramfs`"), "{help}");
        let (message, _) = diagnostic(find_target(&options(
            out.join("web.kernel"),
            out.clone(),
            false,
        )));
        assert!(
            message.ends_with(&format!(
                "has no initramfs beside it: {} does not exist",
                out.join("web.initramfs").display()
            )),
            "{message}"
        );
        let (message, _) = diagnostic(find_target(&options(
            out.join("gone.initramfs"),
            out,
            false,
        )));
        assert!(
            message.ends_with("gone.initramfs does not exist"),
            "{message}"
        );
    }

    #[test]
    fn a_ramdisk_machine_gets_memory_for_its_tree_and_no_disk_size() {
        let dir = project(RAMDISK_ONLY, &["ipa.kernel"]);
        let out = dir.path().join("out");
        std::fs::write(out.join("ipa.initramfs"), vec![0u8; 40 << 20]).expect("write");
        let mut options = imagefile(&dir, false);
        let target = find_target(&options).expect("found");
        let spec = machine_spec(&options, &target, Serial::Console).expect("spec");
        let Boot::Ramdisk(ramdisk) = &spec.boot else {
            panic!("a ramdisk, not {:?}", spec.boot);
        };
        assert_eq!(
            ramdisk.kernel_cmdline(crate::machine::Platform::X86_64),
            "console=ttyS0 ipa-debug=1"
        );
        assert_eq!(ramdisk.initramfs_bytes, 40 << 20);
        // A 160 MiB tree, twice, on top of 1024 MiB.
        assert_eq!(spec.memory_mib, 1536);
        assert_eq!(spec.hostname, "ipa");

        options.disk_size = Some("4GiB".parse().expect("size"));
        let refused = machine_spec(&options, &target, Serial::Console).map(|_| target);
        let (message, help) = diagnostic(refused);
        assert_eq!(
            message,
            "--disk-size 4GiB does not apply to a ramdisk, which runs from RAM"
        );
        assert!(help.starts_with("leave out --disk-size"), "{help}");
    }

    #[test]
    fn arch_comes_from_the_imagefile_or_from_arch_for_an_image_file() {
        let dir = project(RAMDISK_ONLY, &["ipa.kernel", "ipa.initramfs"]);
        let out = dir.path().join("out");
        // The imagefile's (amd64 by default): a PC, BIOS unless --uefi.
        let mut from_imagefile = imagefile(&dir, false);
        let target = find_target(&from_imagefile).expect("found");
        let spec = machine_spec(&from_imagefile, &target, Serial::Console).expect("spec");
        assert_eq!(
            (spec.platform, spec.firmware),
            (Platform::X86_64, Firmware::Bios)
        );
        // --arch that contradicts the imagefile is refused.
        from_imagefile.arch = Some(manifest::Arch::Arm64);
        let refused = machine_spec(&from_imagefile, &target, Serial::Console).map(|_| target);
        let (message, help) = diagnostic(refused);
        assert_eq!(
            message,
            "--arch arm64 differs from the imagefile's `arch: amd64`"
        );
        assert!(help.starts_with("leave out --arch"), "{help}");
        // An image file: amd64 unless --arch says otherwise; arm64 is
        // the virt board, by UEFI whatever --uefi says.
        let mut given = options(out.join("ipa.initramfs"), out.clone(), false);
        let target = find_target(&given).expect("found");
        let spec = machine_spec(&given, &target, Serial::Console).expect("spec");
        assert_eq!(spec.platform, Platform::X86_64);
        given.arch = Some(manifest::Arch::Arm64);
        let spec = machine_spec(&given, &target, Serial::Console).expect("spec");
        assert_eq!(
            (spec.platform, spec.firmware),
            (Platform::Aarch64, Firmware::Uefi)
        );
        let Boot::Ramdisk(ramdisk) = &spec.boot else {
            panic!("a ramdisk, not {:?}", spec.boot);
        };
        assert_eq!(ramdisk.kernel_cmdline(spec.platform), "console=ttyAMA0");
    }
}

//! The output stage: the files a user uploads, written from the finished
//! image.
//!
//! Two things come out of the build. A raw image file (a whole disk, or one
//! filesystem) is the source of every disk format: it is itself the `raw`
//! output and `qemu-img` converts it to qcow2, VHD, VHDX and VMDK
//! ([`convert`]). The finished root tree is the source of the tree formats: a
//! tar archive written by kiln itself ([`tar`]), a squashfs written by
//! `mksquashfs` ([`squashfs`]) and a ramdisk, the image's kernel beside an
//! initramfs of the whole tree written by kiln itself ([`ramdisk`]).
//!
//! Every output is written in a temporary directory inside the output
//! directory and renamed over `<image>.<ext>` only once complete, so a failed build
//! never leaves half a file under the name a user uploads, and an earlier
//! build's output survives until the new one replaces it. A failed write
//! removes its temporary file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::host::command::{CommandError, Finished};
use crate::manifest::{self, OutputFormat};

pub mod convert;
pub mod ramdisk;
pub mod squashfs;
pub mod tar;

#[cfg(test)]
mod test_fixture;

/// The file name extension of each output format, without the dot.
pub fn extension(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Raw => "raw",
        OutputFormat::Qcow2 => "qcow2",
        OutputFormat::Tar => "tar",
        OutputFormat::Vhd => "vhd",
        OutputFormat::Vhdx => "vhdx",
        OutputFormat::Vmdk => "vmdk",
        OutputFormat::Squashfs => "squashfs",
        OutputFormat::Ramdisk => "initramfs",
    }
}

/// The file name of an image's output in one format: `<image>.<ext>`.
pub fn file_name(image: &str, format: OutputFormat) -> String {
    format!("{image}.{}", extension(format))
}

/// Whether a format is made from the raw image file (rather than from the
/// root tree).
pub fn is_disk_format(format: OutputFormat) -> bool {
    !matches!(
        format,
        OutputFormat::Tar | OutputFormat::Squashfs | OutputFormat::Ramdisk
    )
}

/// What the output stage is asked to write.
#[derive(Debug, Clone)]
pub struct OutputRequest<'a> {
    /// The image's name; outputs are called `<image>.<ext>`.
    pub image: &'a str,
    /// The directory the outputs go to. It must exist.
    pub dir: &'a Path,
    /// The formats to write, in the manifest's order.
    pub formats: &'a [OutputFormat],
    /// The raw image file, the source of every disk format. Needed when
    /// any of `formats` is a disk format.
    pub raw: Option<&'a Path>,
    /// What may be done with `raw` once the other disk formats are made
    /// from it.
    pub raw_placement: convert::RawPlacement,
    /// The finished root tree, the source of `tar`, `squashfs` and
    /// `ramdisk`.
    pub tree: Option<&'a Path>,
    /// Seconds since 1970-01-01 UTC: the latest timestamp an output holds.
    pub source_date_epoch: u64,
    /// Settings of the disk formats.
    pub disk: convert::DiskOptions,
    /// The manifest's `ramdisk` section; without one, a `ramdisk` output
    /// has the defaults.
    pub ramdisk: Option<&'a manifest::Ramdisk>,
}

/// One output file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Its format. A ramdisk is two files, both of format `ramdisk`: the
    /// kernel (`<image>.kernel`) and the initramfs (`<image>.initramfs`).
    pub format: OutputFormat,
    /// Where it is.
    pub path: PathBuf,
    /// How long writing it took.
    pub duration: std::time::Duration,
    /// What the initramfs of a ramdisk holds and left out (on the
    /// initramfs only), for the report.
    pub ramdisk: Option<ramdisk::RamdiskSummary>,
}

/// Writes every requested output, and returns them in the order asked
/// (a ramdisk as two files: its kernel, then its initramfs).
///
/// The raw image is placed last: it is the input of the other disk
/// formats, and with [`convert::RawPlacement::Move`] placing it takes it
/// away from its scratch location.
pub fn write_outputs(request: &OutputRequest<'_>) -> Result<Vec<Written>, OutputError> {
    let mut formats: Vec<OutputFormat> = Vec::new();
    for &format in request.formats {
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    let path_of = |format| request.dir.join(file_name(request.image, format));
    let raw = || {
        request
            .raw
            .ok_or(OutputError::MissingSource { format: "raw" })
    };
    let tree = || {
        request
            .tree
            .ok_or(OutputError::MissingSource { format: "tree" })
    };

    let mut written = Vec::new();
    for &format in &formats {
        let out = path_of(format);
        let started = std::time::Instant::now();
        match format {
            OutputFormat::Raw => {}
            OutputFormat::Tar => {
                tar::write_tar(tree()?, request.source_date_epoch, &out)?;
            }
            OutputFormat::Squashfs => {
                squashfs::write_squashfs(tree()?, request.source_date_epoch, &out)?;
            }
            OutputFormat::Ramdisk => {
                let tree = tree()?;
                // The kernel is looked for first: without one, no time is
                // spent on the initramfs.
                let kernel = ramdisk::find_kernel(tree)?;
                let defaults = manifest::Ramdisk::default();
                let settings = request.ramdisk.unwrap_or(&defaults);
                let initramfs = ramdisk::RamdiskRequest::for_image(
                    tree,
                    out.clone(),
                    request.source_date_epoch,
                    settings,
                );
                let summary = ramdisk::write_initramfs(&initramfs, &kernel)?;
                let initramfs_duration = started.elapsed();
                let kernel_started = std::time::Instant::now();
                let kernel_out = request.dir.join(ramdisk::kernel_file_name(request.image));
                ramdisk::write_kernel(tree, &kernel, &kernel_out)?;
                written.push(Written {
                    format,
                    path: kernel_out,
                    duration: kernel_started.elapsed(),
                    ramdisk: None,
                });
                written.push(Written {
                    format,
                    path: out,
                    duration: initramfs_duration,
                    ramdisk: Some(summary),
                });
                continue;
            }
            OutputFormat::Qcow2 | OutputFormat::Vhd | OutputFormat::Vhdx | OutputFormat::Vmdk => {
                convert::write_disk(raw()?, format, request.disk, &out)?;
            }
        }
        written.push(Written {
            format,
            path: out,
            duration: started.elapsed(),
            ramdisk: None,
        });
    }
    if formats.contains(&OutputFormat::Raw) {
        let started = std::time::Instant::now();
        convert::place_raw(raw()?, &path_of(OutputFormat::Raw), request.raw_placement)?;
        if let Some(raw) = written.iter_mut().find(|w| w.format == OutputFormat::Raw) {
            raw.duration = started.elapsed();
        }
    }
    Ok(written)
}

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or directory of the source could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was being read.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A tool could not be run.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A tool ran and failed.
    #[error("`{program}` failed writing {path} (exit status {status}): {stderr}")]
    Tool {
        /// The program.
        program: String,
        /// The output it was writing.
        path: PathBuf,
        /// Its exit code, or `signal` when a signal ended it.
        status: String,
        /// What it said on stderr.
        stderr: String,
    },
    /// A file changed size while it was being archived.
    #[error("{path} changed while it was being archived")]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// An extended attribute's name cannot be stored in a tar archive.
    #[error("{path} has the extended attribute {name:?}, whose name a tar archive cannot hold")]
    XattrName {
        /// The file.
        path: PathBuf,
        /// The attribute's name.
        name: String,
    },
    /// A tree format was asked of the disk converter, or the reverse.
    #[error("{format:?} is not made by this function")]
    WrongFormat {
        /// The format asked for.
        format: OutputFormat,
    },
    /// A ramdisk was asked of an image without a kernel.
    #[error(
        "the image has no kernel to boot a ramdisk with: no {}/boot/vmlinuz-<version>; add the `vm` element, or a kernel package such as `linux-image-amd64` to `packages`",
        tree.display()
    )]
    NoKernel {
        /// The image's root tree.
        tree: PathBuf,
    },
    /// The ramdisk's kernel has no modules in the image.
    #[error(
        "the ramdisk's kernel {kernel} has no modules in the image (no /usr/lib/modules/{version}): install the kernel's package rather than copying the kernel alone"
    )]
    NoKernelModules {
        /// The kernel, as a path in the image.
        kernel: PathBuf,
        /// Its version.
        version: String,
    },
    /// A file is too large for a cpio archive, whose sizes are 32-bit.
    #[error("{path} is {bytes} bytes: a cpio archive (the initramfs) holds files under 4 GiB")]
    CpioFileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The initramfs is larger than the manifest's `ramdisk.max_size`.
    #[error(
        "the initramfs would be {} ({bytes} bytes), more than `ramdisk.max_size` ({}); the biggest directories, unpacked: {}; add what the ramdisk does not need to `ramdisk.exclude`",
        crate::terminal::human_bytes(*.bytes),
        crate::terminal::human_bytes(*.limit),
        biggest_list(.biggest)
    )]
    RamdiskTooLarge {
        /// The initramfs that was not written.
        path: PathBuf,
        /// Its compressed size.
        bytes: u64,
        /// The limit.
        limit: u64,
        /// The directories holding the most, as paths in the image, with
        /// the bytes of the files below them, biggest first.
        biggest: Vec<(String, u64)>,
    },
    /// A format was requested without the input it is made from.
    #[error("an output needs the {format} source, and none was given")]
    MissingSource {
        /// `raw` or `tree`.
        format: &'static str,
    },
}

/// The directories of [`OutputError::RamdiskTooLarge`], for its message.
fn biggest_list(biggest: &[(String, u64)]) -> String {
    biggest
        .iter()
        .map(|(dir, bytes)| format!("{dir} {}", crate::terminal::human_bytes(*bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The prefix of [`Staged`]'s temporary directories.
const STAGING_PREFIX: &str = ".kiln-output-";

/// Removes the temporary directories of outputs that a killed build
/// (SIGKILL, a power cut: no `Drop` ran) left in `dir`, half-written
/// outputs inside. Only for a caller that holds the output directory's
/// lock, so no live build is writing them. Returns how many were removed.
pub fn remove_abandoned_staging(dir: &Path) -> Result<usize, OutputError> {
    let write_error = |source| OutputError::Write {
        path: dir.to_path_buf(),
        source,
    };
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(write_error)? {
        let entry = entry.map_err(write_error)?;
        let is_staging = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(STAGING_PREFIX));
        if is_staging && entry.file_type().map_err(write_error)?.is_dir() {
            fs::remove_dir_all(entry.path()).map_err(write_error)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A temporary file beside an output, renamed over the output by
/// [`Staged::commit`] and deleted if dropped before.
///
/// The file has the output's own name, inside a temporary directory in the
/// output directory: a streamOptimized VMDK's descriptor records its file
/// name, which must be the name the user uploads, not a temporary one.
#[derive(Debug)]
pub(crate) struct Staged {
    /// Holds only the staged file; removed with it on drop.
    _dir: tempfile::TempDir,
    path: PathBuf,
    out: PathBuf,
}

impl Staged {
    /// Reserves a temporary path for `out` on its filesystem, with `out`'s
    /// file name. Nothing is created at the path itself.
    pub(crate) fn beside(out: &Path) -> Result<Staged, OutputError> {
        let write_error = |source| OutputError::Write {
            path: out.to_path_buf(),
            source,
        };
        let dir = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let Some(name) = out.file_name() else {
            return Err(write_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an output path must end in a file name",
            )));
        };
        let temp = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(dir)
            .map_err(write_error)?;
        Ok(Staged {
            path: temp.path().join(name),
            _dir: temp,
            out: out.to_path_buf(),
        })
    }

    /// The temporary file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the temporary file to disk and renames it over the output.
    pub(crate) fn commit(self) -> Result<(), OutputError> {
        let write_error = |source| OutputError::Write {
            path: self.out.clone(),
            source,
        };
        // Tools such as qemu-img do not always sync what they write; a
        // rename that outlives the data it names would leave a truncated
        // output after a crash.
        fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(write_error)?;
        fs::rename(&self.path, &self.out).map_err(write_error)
    }
}

/// Turns a finished command into an error unless it succeeded.
pub(crate) fn check_tool(
    program: &str,
    out: &Path,
    finished: Finished,
) -> Result<Finished, OutputError> {
    if finished.success() {
        return Ok(finished);
    }
    Err(OutputError::Tool {
        program: program.to_string(),
        path: out.to_path_buf(),
        status: finished
            .code
            .map_or_else(|| "signal".to_string(), |c| c.to_string()),
        stderr: finished.stderr.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_its_extension() {
        let all = [
            (OutputFormat::Raw, "demo.raw"),
            (OutputFormat::Qcow2, "demo.qcow2"),
            (OutputFormat::Tar, "demo.tar"),
            (OutputFormat::Vhd, "demo.vhd"),
            (OutputFormat::Vhdx, "demo.vhdx"),
            (OutputFormat::Vmdk, "demo.vmdk"),
            (OutputFormat::Squashfs, "demo.squashfs"),
        ];
        for (format, name) in all {
            assert_eq!(file_name("demo", format), name);
        }
        assert!(!is_disk_format(OutputFormat::Tar));
        assert!(!is_disk_format(OutputFormat::Squashfs));
        assert!(is_disk_format(OutputFormat::Vmdk));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn every_requested_output_is_written_and_the_raw_moved_last() {
        let fixture = test_fixture::Fixture::build();
        let raw = test_fixture::raw_ext4(fixture.dir.path());
        let raw_digest = test_fixture::sha256_of(&raw);
        let dir = fixture.dir.path().join("out");
        fs::create_dir(&dir).expect("mkdir");
        let formats = [
            OutputFormat::Raw,
            OutputFormat::Qcow2,
            OutputFormat::Tar,
            OutputFormat::Raw,
        ];
        let request = OutputRequest {
            image: "demo",
            dir: &dir,
            formats: &formats,
            raw: Some(&raw),
            raw_placement: convert::RawPlacement::Move,
            tree: Some(&fixture.tree),
            source_date_epoch: test_fixture::EPOCH,
            disk: convert::DiskOptions::default(),
            ramdisk: None,
        };
        let written = write_outputs(&request).expect("outputs");
        let names: Vec<String> = written
            .iter()
            .map(|w| {
                w.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["demo.raw", "demo.qcow2", "demo.tar"]);
        assert!(!raw.exists(), "the raw file was moved");
        assert_eq!(test_fixture::sha256_of(&dir.join("demo.raw")), raw_digest);
        assert_eq!(fs::read_dir(&dir).expect("list").count(), 3);

        let missing = OutputRequest {
            raw: None,
            ..request
        };
        let error = write_outputs(&missing).expect_err("no raw");
        assert!(matches!(
            error,
            OutputError::MissingSource { format: "raw" }
        ));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn a_ramdisk_is_a_kernel_and_an_initramfs() {
        let fixture = test_fixture::Fixture::bootable();
        let dir = fixture.dir.path().join("out");
        fs::create_dir(&dir).expect("mkdir");
        let settings = manifest::Ramdisk {
            compression: Some(manifest::Spanned::unplaced(
                manifest::RamdiskCompression::Gzip,
            )),
            ..manifest::Ramdisk::default()
        };
        let formats = [OutputFormat::Tar, OutputFormat::Ramdisk];
        let request = OutputRequest {
            image: "demo",
            dir: &dir,
            formats: &formats,
            raw: None,
            raw_placement: convert::RawPlacement::Copy,
            tree: Some(&fixture.tree),
            source_date_epoch: test_fixture::EPOCH,
            disk: convert::DiskOptions::default(),
            ramdisk: Some(&settings),
        };
        let written = write_outputs(&request).expect("outputs");
        let described: Vec<(OutputFormat, String, bool)> = written
            .iter()
            .map(|w| {
                let name = w.path.file_name().expect("name").to_string_lossy();
                (w.format, name.into_owned(), w.ramdisk.is_some())
            })
            .collect();
        assert_eq!(
            described,
            [
                (OutputFormat::Tar, "demo.tar".to_string(), false),
                (OutputFormat::Ramdisk, "demo.kernel".to_string(), false),
                (OutputFormat::Ramdisk, "demo.initramfs".to_string(), true),
            ]
        );
        let summary = written[2].ramdisk.as_ref().expect("summary");
        assert_eq!(summary.kernel.version, test_fixture::KERNELS[1]);
        assert_eq!(summary.compression, manifest::RamdiskCompression::Gzip);
        assert_eq!(
            fs::read(dir.join("demo.kernel")).expect("kernel"),
            format!("kernel {}", test_fixture::KERNELS[1]).as_bytes()
        );
        let gzip_magic = [0x1f, 0x8b];
        assert_eq!(
            fs::read(dir.join("demo.initramfs")).expect("initramfs")[..2],
            gzip_magic
        );
        assert_eq!(fs::read_dir(&dir).expect("list").count(), 3);

        // An image without a kernel: an error, and no ramdisk file.
        let plain = test_fixture::Fixture::build();
        let empty = plain.dir.path().join("out");
        fs::create_dir(&empty).expect("mkdir");
        let formats = [OutputFormat::Ramdisk];
        let error = write_outputs(&OutputRequest {
            dir: &empty,
            formats: &formats,
            tree: Some(&plain.tree),
            ..request
        })
        .expect_err("no kernel");
        assert!(matches!(error, OutputError::NoKernel { .. }), "{error}");
        assert_eq!(fs::read_dir(&empty).expect("list").count(), 0);
    }

    #[test]
    fn abandoned_staging_is_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("image.raw");
        // What a SIGKILL leaves: the staged file, half written, and its
        // directory, which no Drop removed.
        let staged = Staged::beside(&out).unwrap();
        fs::write(staged.path(), b"half").unwrap();
        let abandoned = staged._dir.keep();
        fs::write(&out, b"whole").unwrap();
        fs::create_dir(dir.path().join("kept")).unwrap();
        assert_eq!(remove_abandoned_staging(dir.path()).unwrap(), 1);
        assert!(!abandoned.exists());
        assert_eq!(fs::read(&out).unwrap(), b"whole");
        assert!(dir.path().join("kept").is_dir());
        assert_eq!(remove_abandoned_staging(dir.path()).unwrap(), 0);
    }

    #[test]
    fn a_dropped_staged_file_leaves_nothing_and_a_commit_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("demo.raw");
        fs::write(&out, b"old").expect("write");
        let staged = Staged::beside(&out).expect("staged");
        assert_eq!(staged.path().file_name(), out.file_name());
        fs::write(staged.path(), b"half").expect("write");
        drop(staged);
        assert_eq!(fs::read(&out).expect("read"), b"old");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);

        let staged = Staged::beside(&out).expect("staged");
        fs::write(staged.path(), b"new").expect("write");
        staged.commit().expect("commit");
        assert_eq!(fs::read(&out).expect("read"), b"new");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}

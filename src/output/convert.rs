//! Disk formats: the raw image file converted by `qemu-img` into what each
//! cloud or hypervisor imports.
//!
//! The raw file is both an output and the input of the others, so it is
//! placed last, by a rename when the caller gives it away (no copy of a disk
//! that may be tens of gigabytes) or by a sparse copy when the caller keeps
//! it. The variant of each format is the one its main consumer expects:
//!
//! - qcow2: version 3 (`compat=1.1`, qemu-img's default), optionally
//!   compressed. OpenStack Glance and libvirt.
//! - vhd: `subformat=fixed,force_size=on`. Azure accepts only fixed VHDs
//!   whose virtual size is a whole number of MiB; `force_size` keeps the
//!   raw file's size instead of rounding it to a CHS geometry.
//! - vhdx: `subformat=dynamic`, what Hyper-V creates by default.
//! - vmdk: `subformat=streamOptimized`, the only VMDK variant that AWS VM
//!   Import and vSphere's OVF/OVA import accept; it is also compressed.
//!
//! qemu-img runs without `-W` (out-of-order writes), so the clusters of a
//! qcow2 are allocated in the order of the disk and two conversions of one
//! raw file give the same bytes, compressed or not. `-W` would let
//! qemu-img compress on both cores of a small builder (about a quarter
//! faster), but then compressed clusters land in the order they finish and
//! two runs differ. Compression is zlib, qcow2's only type before QEMU 5.1,
//! which every reader of qcow2 (Glance, libvirt, any QEMU) decompresses;
//! it is the command diskimage-builder runs (`qemu-img convert -c`). VHD, VHDX and VMDK headers carry random
//! identifiers (and VHD a creation time), so those formats are not
//! reproducible byte for byte; see the tests.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{OutputError, Staged, check_tool};
use crate::host::command;
use crate::manifest::OutputFormat;

/// The Debian package that provides `qemu-img`.
const QEMU_IMG_PACKAGE: &str = "qemu-utils";

/// How much of the raw file a sparse copy reads at once.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// The granularity at which a sparse copy leaves holes: a filesystem block.
const HOLE_BLOCK_BYTES: usize = 4096;

/// Settings of the disk formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskOptions {
    /// Compress qcow2 clusters with zlib (`qemu-img convert -c`): a smaller
    /// upload, a slower conversion, and reads that decompress until the
    /// guest rewrites the data.
    pub compress_qcow2: bool,
}

/// What may be done with the raw image file when it becomes the `raw`
/// output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawPlacement {
    /// The file is a scratch file the caller no longer needs: rename it into
    /// place (copying only when it is on another filesystem).
    Move,
    /// The caller keeps the file: copy it, leaving holes where it is zero.
    Copy,
}

/// The arguments of `qemu-img convert` for one format, without the source
/// and destination paths. `None` for formats qemu-img does not make.
pub fn qemu_img_convert_args(
    format: OutputFormat,
    options: DiskOptions,
) -> Option<Vec<&'static str>> {
    let mut args = vec!["convert", "-f", "raw", "-O"];
    match format {
        OutputFormat::Qcow2 => {
            args.push("qcow2");
            if options.compress_qcow2 {
                args.push("-c");
            }
        }
        OutputFormat::Vhd => args.extend(["vpc", "-o", "subformat=fixed,force_size=on"]),
        OutputFormat::Vhdx => args.extend(["vhdx", "-o", "subformat=dynamic"]),
        OutputFormat::Vmdk => args.extend(["vmdk", "-o", "subformat=streamOptimized"]),
        OutputFormat::Raw | OutputFormat::Tar | OutputFormat::Squashfs | OutputFormat::Ramdisk => {
            return None;
        }
    }
    Some(args)
}

/// Writes the disk format `format` of the raw image file `raw` to `out`,
/// replacing `out` only once the new file is complete. For `raw` this is a
/// sparse copy (see [`place_raw`] to move the file instead); the other
/// formats shell out to `qemu-img convert`.
pub fn write_disk(
    raw: &Path,
    format: OutputFormat,
    options: DiskOptions,
    out: &Path,
) -> Result<(), OutputError> {
    if format == OutputFormat::Raw {
        return place_raw(raw, out, RawPlacement::Copy);
    }
    let staged = Staged::beside(out)?;
    run_qemu_img_convert(raw, format, options, staged.path())?;
    staged.commit()
}

/// Runs `qemu-img convert` from the raw file `raw` to `dest` in `format`.
/// `dest` is overwritten in place; [`write_disk`] gives it a temporary name.
pub fn run_qemu_img_convert(
    raw: &Path,
    format: OutputFormat,
    options: DiskOptions,
    dest: &Path,
) -> Result<(), OutputError> {
    let Some(args) = qemu_img_convert_args(format, options) else {
        return Err(OutputError::WrongFormat { format });
    };
    let mut args: Vec<&std::ffi::OsStr> = args.into_iter().map(std::ffi::OsStr::new).collect();
    args.push(raw.as_os_str());
    args.push(dest.as_os_str());
    let finished = command::run("qemu-img", &args, QEMU_IMG_PACKAGE)?;
    check_tool("qemu-img", dest, finished)?;
    Ok(())
}

/// Makes `raw` the `raw` output at `out`. With [`RawPlacement::Move`] the
/// file is renamed, which costs nothing on one filesystem; across
/// filesystems, and with [`RawPlacement::Copy`], it is copied with holes
/// wherever a 4 KiB block is zero, so the output stays sparse however the
/// source was written. The source is never removed by a copy.
pub fn place_raw(raw: &Path, out: &Path, placement: RawPlacement) -> Result<(), OutputError> {
    if placement == RawPlacement::Move {
        match fs::rename(raw, out) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {}
            Err(source) => {
                return Err(OutputError::Write {
                    path: out.to_path_buf(),
                    source,
                });
            }
        }
    }
    let staged = Staged::beside(out)?;
    copy_sparse(raw, staged.path())?;
    staged.commit()
}

/// Copies `from` to the existing file `to`, seeking over zero blocks
/// instead of writing them.
fn copy_sparse(from: &Path, to: &Path) -> Result<(), OutputError> {
    let read_error = |source| OutputError::Read {
        path: from.to_path_buf(),
        source,
    };
    let write_error = |source| OutputError::Write {
        path: to.to_path_buf(),
        source,
    };
    let mut source = File::open(from).map_err(read_error)?;
    let mut dest = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)
        .map_err(write_error)?;
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut total: u64 = 0;
    loop {
        let n = read_full(&mut source, &mut buffer).map_err(read_error)?;
        if n == 0 {
            break;
        }
        let mut start = 0;
        while start < n {
            let block_end = |at: usize| (at + HOLE_BLOCK_BYTES).min(n);
            let zero = |at: usize| buffer[at..block_end(at)].iter().all(|&b| b == 0);
            let hole = zero(start);
            let mut end = block_end(start);
            while end < n && zero(end) == hole {
                end = block_end(end);
            }
            if hole {
                dest.seek(SeekFrom::Current((end - start) as i64))
                    .map_err(write_error)?;
            } else {
                dest.write_all(&buffer[start..end]).map_err(write_error)?;
            }
            start = end;
        }
        total += n as u64;
    }
    // A trailing hole was only seeked over; the length makes it part of
    // the file.
    dest.set_len(total).map_err(write_error)?;
    Ok(())
}

/// Reads until `buffer` is full or the file ends.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::Instant;

    use super::*;
    use crate::output::test_fixture::{DISK_BYTES, qemu_img_json, raw_ext4, run_tool, sha256_of};

    fn qemu_img_check(path: &Path) {
        run_tool("qemu-img", &["check", &path.to_string_lossy()]);
    }

    /// The format qemu-img must be told: a fixed VHD has its only header
    /// at the end, and qemu-img's probe takes it for a raw disk.
    fn qemu_name(format: OutputFormat) -> &'static str {
        match format {
            OutputFormat::Qcow2 => "qcow2",
            OutputFormat::Vhd => "vpc",
            OutputFormat::Vhdx => "vhdx",
            OutputFormat::Vmdk => "vmdk",
            _ => "raw",
        }
    }

    fn info(path: &Path, format: OutputFormat) -> (String, u64) {
        let info = qemu_img_json(&[
            "info",
            "-f",
            qemu_name(format),
            "--output=json",
            &path.to_string_lossy(),
        ]);
        (
            info["format"].as_str().unwrap_or_default().to_string(),
            info["virtual-size"].as_u64().unwrap_or_default(),
        )
    }

    #[test]
    fn the_arguments_name_what_each_cloud_expects() {
        let plain = DiskOptions::default();
        let compressed = DiskOptions {
            compress_qcow2: true,
        };
        let args = |f, o| qemu_img_convert_args(f, o).map(|a| a.join(" "));
        assert_eq!(
            args(OutputFormat::Qcow2, plain).as_deref(),
            Some("convert -f raw -O qcow2")
        );
        assert_eq!(
            args(OutputFormat::Qcow2, compressed).as_deref(),
            Some("convert -f raw -O qcow2 -c")
        );
        assert_eq!(
            args(OutputFormat::Vhd, plain).as_deref(),
            Some("convert -f raw -O vpc -o subformat=fixed,force_size=on")
        );
        assert_eq!(
            args(OutputFormat::Vhdx, plain).as_deref(),
            Some("convert -f raw -O vhdx -o subformat=dynamic")
        );
        assert_eq!(
            args(OutputFormat::Vmdk, plain).as_deref(),
            Some("convert -f raw -O vmdk -o subformat=streamOptimized")
        );
        assert_eq!(args(OutputFormat::Raw, plain), None);
        assert_eq!(args(OutputFormat::Tar, plain), None);
    }

    #[test]
    fn each_disk_format_is_valid_with_the_raw_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = raw_ext4(dir.path());
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        let cases = [
            (OutputFormat::Qcow2, "qcow2", true),
            (OutputFormat::Vhd, "vpc", false),
            (OutputFormat::Vhdx, "vhdx", true),
            (OutputFormat::Vmdk, "vmdk", true),
        ];
        for (format, qemu_name, checkable) in cases {
            let path = out.join(crate::output::file_name("demo", format));
            let started = Instant::now();
            write_disk(&raw, format, DiskOptions::default(), &path).expect("convert");
            eprintln!(
                "{qemu_name}: {:?}, {} bytes allocated",
                started.elapsed(),
                fs::metadata(&path).expect("stat").blocks() * 512
            );
            let (found, virtual_size) = info(&path, format);
            assert_eq!(found, qemu_name, "{}", path.display());
            // With force_size the VHD keeps the raw size exactly; without it
            // qemu would round it to a CHS geometry (64 MiB becomes
            // 67 125 248 bytes).
            assert_eq!(virtual_size, DISK_BYTES, "{}", path.display());
            if checkable {
                qemu_img_check(&path);
            }
            // The guest sees the same disk.
            run_tool(
                "qemu-img",
                &[
                    "compare",
                    "-f",
                    "raw",
                    "-F",
                    qemu_name,
                    &raw.to_string_lossy(),
                    &path.to_string_lossy(),
                ],
            );
        }
        // Only the finished outputs are left in the directory.
        let mut names: Vec<String> = fs::read_dir(&out)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["demo.qcow2", "demo.vhd", "demo.vhdx", "demo.vmdk"]);
        // A fixed VHD is the raw disk followed by a 512-byte footer.
        let vhd = out.join("demo.vhd");
        assert_eq!(fs::metadata(&vhd).expect("stat").len(), DISK_BYTES + 512);
    }

    #[test]
    fn qcow2_is_reproducible_and_compression_shrinks_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = raw_ext4(dir.path());
        let plain = DiskOptions::default();
        let compressed = DiskOptions {
            compress_qcow2: true,
        };
        let first = dir.path().join("first.qcow2");
        let second = dir.path().join("second.qcow2");
        let packed = dir.path().join("packed.qcow2");
        let packed_again = dir.path().join("packed-again.qcow2");
        let started = Instant::now();
        write_disk(&raw, OutputFormat::Qcow2, plain, &first).expect("convert");
        let plain_time = started.elapsed();
        write_disk(&raw, OutputFormat::Qcow2, plain, &second).expect("convert");
        let started = Instant::now();
        write_disk(&raw, OutputFormat::Qcow2, compressed, &packed).expect("convert");
        let packed_time = started.elapsed();
        write_disk(&raw, OutputFormat::Qcow2, compressed, &packed_again).expect("convert");
        eprintln!(
            "qcow2: {plain_time:?} for {} bytes; compressed: {packed_time:?} for {} bytes",
            fs::metadata(&first).expect("stat").len(),
            fs::metadata(&packed).expect("stat").len()
        );
        assert_eq!(sha256_of(&first), sha256_of(&second));
        // Compressed clusters are written in the disk's order too (no
        // `-W`), so a compressed qcow2 is reproducible as well.
        assert_eq!(sha256_of(&packed), sha256_of(&packed_again));
        qemu_img_check(&packed);
        assert!(
            fs::metadata(&packed).expect("stat").len() < fs::metadata(&first).expect("stat").len()
        );
        // Both hold the same disk.
        run_tool(
            "qemu-img",
            &[
                "compare",
                &first.to_string_lossy(),
                &packed.to_string_lossy(),
            ],
        );
        run_tool(
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                &raw.to_string_lossy(),
                &first.to_string_lossy(),
            ],
        );
    }

    /// Records, without asserting, whether VHD, VHDX and VMDK conversions
    /// are reproducible: their headers hold random identifiers, which this
    /// test documents (`cargo test -- --nocapture` prints the finding).
    #[test]
    fn vhd_vhdx_vmdk_determinism_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = raw_ext4(dir.path());
        for format in [OutputFormat::Vhd, OutputFormat::Vhdx, OutputFormat::Vmdk] {
            // One file name in two directories: a VMDK records its name.
            let name = crate::output::file_name("demo", format);
            let (a, b) = (
                dir.path().join("a").join(&name),
                dir.path().join("b").join(&name),
            );
            fs::create_dir_all(dir.path().join("a")).expect("mkdir");
            fs::create_dir_all(dir.path().join("b")).expect("mkdir");
            write_disk(&raw, format, DiskOptions::default(), &a).expect("convert");
            // The VHD footer's timestamp has a resolution of one second.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            write_disk(&raw, format, DiskOptions::default(), &b).expect("convert");
            let (x, y) = (fs::read(&a).expect("read"), fs::read(&b).expect("read"));
            let differing: Vec<usize> = (0..x.len().min(y.len()))
                .filter(|&i| x[i] != y[i])
                .collect();
            eprintln!(
                "{format:?}: identical={} differing bytes={} at {:x?}",
                x == y,
                differing.len(),
                differing
            );
            let name = qemu_name(format);
            run_tool(
                "qemu-img",
                &[
                    "compare",
                    "-f",
                    name,
                    "-F",
                    name,
                    &a.to_string_lossy(),
                    &b.to_string_lossy(),
                ],
            );
        }
    }

    #[test]
    fn raw_is_moved_or_copied_sparse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = raw_ext4(dir.path());
        let digest = sha256_of(&raw);

        let copy = dir.path().join("copy.raw");
        fs::write(&copy, b"an older build").expect("write");
        place_raw(&raw, &copy, RawPlacement::Copy).expect("copy");
        assert!(raw.exists());
        assert_eq!(sha256_of(&copy), digest);
        let meta = fs::metadata(&copy).expect("stat");
        assert_eq!(meta.len(), DISK_BYTES);
        assert!(
            meta.blocks() * 512 < DISK_BYTES / 2,
            "copy is not sparse: {} bytes allocated",
            meta.blocks() * 512
        );

        let moved = dir.path().join("moved.raw");
        let inode = fs::metadata(&raw).expect("stat").ino();
        place_raw(&raw, &moved, RawPlacement::Move).expect("move");
        assert!(!raw.exists());
        assert_eq!(fs::metadata(&moved).expect("stat").ino(), inode);
        assert_eq!(sha256_of(&moved), digest);
    }

    #[test]
    fn a_failed_conversion_keeps_the_old_output_and_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("demo.qcow2");
        fs::write(&out, b"previous build").expect("write");
        let missing = dir.path().join("missing.raw");
        let error = write_disk(&missing, OutputFormat::Qcow2, DiskOptions::default(), &out)
            .expect_err("no source");
        assert!(matches!(error, OutputError::Tool { .. }), "{error}");
        assert_eq!(fs::read(&out).expect("read"), b"previous build");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}

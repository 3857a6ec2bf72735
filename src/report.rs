//! The build report, `<image>.report.json`: what a build made and from what.
//!
//! A user (or their pipeline) uploads the outputs and keeps the report
//! beside them: it names each output file with its size and SHA-256, the
//! lock the image was built from, every package installed, and how long
//! each stage took. It is JSON because it is read by programs, pretty-printed
//! because it is also read in code review, and written atomically like the
//! outputs, so a report on disk always describes a finished build.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::Digest;
use crate::lock::{Lock, LockedPackage};
use crate::manifest::OutputFormat;

/// The version of the report format; raised when a field changes meaning
/// or disappears (new fields do not raise it).
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// What one build made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The report format version, [`REPORT_FORMAT_VERSION`].
    pub version: u32,
    /// The kiln version that built the image.
    pub kiln_version: String,
    /// The image's name.
    pub image: String,
    /// The SHA-256 of the lockfile the image was built from, in hex.
    pub lock_sha256: String,
    /// Seconds since 1970-01-01 UTC: the latest timestamp in the image.
    pub source_date_epoch: u64,
    /// Every output file, in the manifest's order.
    pub outputs: Vec<ReportOutput>,
    /// Every package installed, sorted by name.
    pub packages: Vec<ReportPackage>,
    /// How long each stage took, in the order they ran.
    pub timings: Vec<Timing>,
    /// Things the user should know that did not stop the build (a socket
    /// left out of a tar archive, a format that is not reproducible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The SHA-256 of everything the outputs are made of
    /// ([`crate::ops::build::inputs_digest`]): a build with the same inputs
    /// whose outputs are all still there, unchanged, is up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    /// The documents written beside the outputs: the SBOMs and the
    /// provenance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<ReportDocument>,
}

/// One document about the image (an SBOM, the provenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDocument {
    /// Its file name (beside the report).
    pub file: String,
    /// Its SHA-256, in hex.
    pub sha256: String,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportOutput {
    /// Its format.
    pub format: OutputFormat,
    /// Its file name (no directory: the report sits beside it).
    pub file: String,
    /// Its size in bytes (the apparent size, holes included).
    pub bytes: u64,
    /// Its SHA-256, in hex.
    pub sha256: String,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportPackage {
    /// The package's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture (`amd64`, or `all`).
    pub arch: String,
}

/// How long one stage took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The stage's name (`fetch`, `bootstrap`, `output`, ...).
    pub stage: String,
    /// Wall-clock seconds, to the millisecond.
    pub seconds: f64,
}

impl Timing {
    /// A timing from a measured duration, rounded to the millisecond so the
    /// report does not show clock noise.
    pub fn new(stage: &str, elapsed: Duration) -> Timing {
        Timing {
            stage: stage.to_string(),
            seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }
}

impl From<&LockedPackage> for ReportPackage {
    fn from(package: &LockedPackage) -> ReportPackage {
        ReportPackage {
            name: package.name.clone(),
            version: package.version.clone(),
            arch: package.arch.clone(),
        }
    }
}

impl Report {
    /// A report of the image `image` built from `lock` (whose file held
    /// `lock_text`), with no outputs, timings or notes yet.
    pub fn new(image: &str, lock: &Lock, lock_text: &[u8]) -> Report {
        let mut packages: Vec<ReportPackage> = lock.packages.iter().map(Into::into).collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Report {
            version: REPORT_FORMAT_VERSION,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            image: image.to_string(),
            lock_sha256: Digest::of_bytes(lock_text).sha256,
            source_date_epoch: lock.source_date_epoch,
            outputs: Vec::new(),
            packages,
            timings: Vec::new(),
            notes: Vec::new(),
            inputs: None,
            documents: Vec::new(),
        }
    }
}

/// Why a report could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An output could not be read to hash it.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The report's path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The SHA-256 of a file's content in hex, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String, ReportError> {
    Ok(digest_file(path)?.sha256)
}

/// Describes one output file for the report: its name, size and SHA-256,
/// read once.
pub fn describe_output(format: OutputFormat, path: &Path) -> Result<ReportOutput, ReportError> {
    let digest = digest_file(path)?;
    Ok(ReportOutput {
        format,
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: digest.size,
        sha256: digest.sha256,
    })
}

fn digest_file(path: &Path) -> Result<Digest, ReportError> {
    let read_error = |source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    Digest::of_reader(file).map_err(read_error)
}

/// The report as written: pretty JSON ending with a newline.
pub fn to_text(report: &Report) -> String {
    // Serialising plain structs of strings and numbers cannot fail; a
    // non-finite timing becomes `null`.
    let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the report to `path` atomically: to a temporary file beside it,
/// flushed to disk, then renamed over it.
pub fn write_report(path: &Path, report: &Report) -> Result<(), ReportError> {
    crate::host::file::write_atomic(path, to_text(report).as_bytes()).map_err(|source| {
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str) -> LockedPackage {
        LockedPackage {
            name: name.to_string(),
            version: "1.0-1".to_string(),
            arch: "amd64".to_string(),
            priority: None,
            size: 10,
            sha256: "0".repeat(64),
            repository: "debian/bookworm".to_string(),
            filename: format!("pool/main/{name}.deb"),
        }
    }

    fn lock() -> Lock {
        Lock {
            version: crate::lock::LOCK_FORMAT_VERSION,
            kiln: "0.1.0".to_string(),
            manifest: format!("sha256:{}", "1".repeat(64)),
            base: crate::lock::LockedBase {
                distro: "debian".to_string(),
                release: "bookworm".to_string(),
                arch: "amd64".to_string(),
                image: None,
            },
            repositories: Vec::new(),
            source_date_epoch: 1_746_835_200,
            packages: vec![package("zlib1g"), package("base-files")],
            native_twins: Vec::new(),
            elements: Vec::new(),
        }
    }

    #[test]
    fn sha256_file_matches_a_known_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").expect("write");
        assert_eq!(
            sha256_file(&path).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Larger than one read, not a multiple of it.
        let big = dir.path().join("big");
        let content = vec![7u8; 3 * 1024 * 1024 + 5];
        std::fs::write(&big, &content).expect("write");
        assert_eq!(
            sha256_file(&big).expect("hash"),
            Digest::of_bytes(&content).sha256
        );
        let error = sha256_file(&dir.path().join("missing")).expect_err("missing");
        assert!(matches!(error, ReportError::Read { .. }));
    }

    #[test]
    fn the_report_names_outputs_packages_and_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = dir.path().join("demo.qcow2");
        std::fs::write(&output, b"abc").expect("write");
        let mut report = Report::new("demo", &lock(), b"lock text\n");
        report
            .outputs
            .push(describe_output(OutputFormat::Qcow2, &output).expect("describe"));
        report
            .timings
            .push(Timing::new("output", Duration::from_micros(1_234_567)));

        assert_eq!(report.lock_sha256, Digest::of_bytes(b"lock text\n").sha256);
        assert_eq!(report.source_date_epoch, 1_746_835_200);
        let names: Vec<&str> = report.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["base-files", "zlib1g"]);
        assert_eq!(report.timings[0].seconds, 1.235);

        let text = to_text(&report);
        assert!(text.ends_with("}\n"));
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(json["outputs"][0]["format"], "qcow2");
        assert_eq!(json["outputs"][0]["file"], "demo.qcow2");
        assert_eq!(json["outputs"][0]["bytes"], 3);
        assert_eq!(
            json["outputs"][0]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(json["packages"][1]["version"], "1.0-1");
        assert_eq!(json["kiln_version"], env!("CARGO_PKG_VERSION"));
        assert!(json.get("notes").is_none(), "empty notes are left out");
        let back: Report = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, report);
    }

    #[test]
    fn writing_replaces_the_report_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("demo.report.json");
        std::fs::write(&path, b"old").expect("write");
        let mut report = Report::new("demo", &lock(), b"");
        report.notes.push("a note".to_string());
        write_report(&path, &report).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, to_text(&report));
        assert!(text.contains("\n  \"notes\": [\n    \"a note\"\n  ]\n"));
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);

        let error = write_report(&dir.path().join("missing/r.json"), &report).expect_err("no dir");
        assert!(matches!(error, ReportError::Write { .. }));
    }
}

//! The lockfile, `imagefile.lock`: every input of an image, pinned by hash.
//!
//! `kiln lock` writes it; `kiln fetch` and `kiln build` read it and never
//! consult anything it does not pin. The format is YAML meant to be read in
//! code review: one package per line, sorted by name, so an update shows
//! as exactly the lines of the packages that changed. The writer is
//! hand-made (not a generic serialiser) so that the same lock always gives
//! the same bytes; the reader is serde, checked against the same types,
//! whose JSON schema is committed at `schema/lock.schema.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod diff;
pub mod make;

/// The version of the lockfile format this kiln writes and reads.
pub const LOCK_FORMAT_VERSION: u32 = 3;

/// Everything an image build needs, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kiln lockfile")]
pub struct Lock {
    /// The lockfile format version.
    pub version: u32,
    /// The kiln version that wrote the lock.
    pub kiln: String,
    /// `sha256:` and the SHA-256 of the imagefile the lock was made from.
    pub manifest: String,
    /// The base distribution.
    pub base: LockedBase,
    /// Every apt repository (one suite of one archive) the packages come
    /// from, with its signed `InRelease` and the indexes read.
    pub repositories: Vec<LockedRepository>,
    /// Seconds since 1970-01-01 UTC used for every timestamp in the image.
    pub source_date_epoch: u64,
    /// Every package installed in the image, sorted by name.
    pub packages: Vec<LockedPackage>,
    /// For an image of another architecture than amd64 (arm64): the amd64
    /// builds of the architecture-neutral tools among `packages`
    /// (coreutils, sed, grep, …) at the same versions, with the libraries
    /// they need, sorted by name. On an amd64 host the build runs these
    /// "native twins" in place of emulating the image's own copies, which
    /// does the same work many times faster; the image gets nothing of
    /// them. Empty for an amd64 image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native_twins: Vec<LockedPackage>,
    /// Every element applied, with a hash of its directory tree.
    pub elements: Vec<LockedElement>,
}

/// The base distribution, as resolved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    /// The distribution family (`debian`, `ubuntu`).
    pub distro: String,
    /// The release (suite or code name) as the manifest names it.
    pub release: String,
    /// The architecture (`amd64`, `arm64`).
    pub arch: String,
    /// For a base taken out of an image: the image file, pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<LockedImage>,
}

/// The image a base tree is taken out of, pinned by size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// Where it was downloaded from.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// What kind of file it is (`qcow2`, `raw-disk`, `raw-filesystem`,
    /// `tar`, `squashfs`).
    pub format: String,
    /// The distribution's checksum file that named the image, when kiln
    /// found the image itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<String>,
    /// The fingerprint of the key whose signature on the checksum file
    /// verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The image's version or build serial, as the download site names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One suite of one apt archive, as read at the time of locking.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedRepository {
    /// The repository's name: the distro's (`debian`) for the base
    /// archive's suites, else the name the imagefile gives it.
    pub name: String,
    /// The suite, below `dists/`.
    pub suite: String,
    /// The archive's URL, the directory holding `dists/` and `pool/`.
    pub url: String,
    /// The components read.
    pub components: Vec<String>,
    /// apt's pin priority for its packages when the lock was resolved.
    pub priority: i32,
    /// The fingerprint of the key whose signature on the `InRelease` was
    /// checked.
    pub signed_by: String,
    /// The signed `InRelease` that pins the indexes.
    pub in_release: LockedInRelease,
    /// The package indexes the resolution read, with their hashes.
    pub indexes: Vec<LockedFile>,
}

impl LockedRepository {
    /// How packages name it: `<name>/<suite>`, such as
    /// `debian/bookworm-security`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.name, self.suite)
    }
}

impl Lock {
    /// The repository a package was locked from.
    pub fn repository_of(&self, package: &LockedPackage) -> Option<&LockedRepository> {
        let (name, suite) = package.repository.split_once('/')?;
        self.repositories
            .iter()
            .find(|r| r.name == name && r.suite == suite)
    }

    /// The base archive's URL: that of the repository of the release
    /// itself (the first the lock lists).
    pub fn base_url(&self) -> &str {
        self.repositories.first().map_or("", |r| r.url.as_str())
    }

    /// Where a package is downloaded from: its repository's URL and its
    /// `Filename`. When `mirror` is given, it stands in for every archive
    /// of the base distribution (whose pools do not overlap: Debian's
    /// security archive keeps its files under `pool/updates/`); packages of
    /// the imagefile's other repositories keep their own.
    pub fn package_url(&self, package: &LockedPackage, mirror: Option<&str>) -> String {
        let repository = self.repository_of(package);
        let url = match (mirror, repository) {
            (Some(mirror), Some(r)) if r.name == self.base.distro => mirror,
            (_, Some(r)) => r.url.as_str(),
            (_, None) => "",
        };
        format!("{}/{}", url.trim_end_matches('/'), package.filename)
    }
}

/// The archive's signed `InRelease` at the time of locking.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedInRelease {
    /// The SHA-256 of the `InRelease` file as downloaded.
    pub sha256: String,
    /// Its `Date` field.
    pub date: String,
}

/// A file of the archive, by path and hash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedFile {
    /// The path below `dists/<release>/`.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One package, pinned to the exact `.deb` file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// The package's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture (`amd64`, or `all`).
    pub arch: String,
    /// Its `Priority` as the archive's signed index gives it (the archive
    /// may override the `.deb`'s own); absent when the index gives none.
    /// The build takes the essential set and the base from it, so it needs
    /// no index at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// The `.deb`'s size in bytes.
    pub size: u64,
    /// The `.deb`'s SHA-256.
    pub sha256: String,
    /// The repository it comes from, as `<name>/<suite>`.
    pub repository: String,
    /// The `.deb`'s path below the repository's URL.
    pub filename: String,
}

/// One element, pinned by a hash of its directory tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedElement {
    /// The element's name.
    pub name: String,
    /// Where it was found: `builtin`, or the directory on the search path.
    pub origin: String,
    /// `sha256:` and the canonical hash of the element's tree.
    pub tree: String,
}

/// Why a lock could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The lock's path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a lock this kiln understands.
    #[error("{path} is not a valid lockfile: {message}")]
    Invalid {
        /// The lock's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The lock was written in another format.
    #[error("{}", version_message(path, *found))]
    Version {
        /// The lock's path.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The lock's path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

fn version_message(path: &Path, found: u32) -> String {
    if found > LOCK_FORMAT_VERSION {
        format!(
            "{} was written by a newer kiln (lockfile format {found}); this kiln reads up to format {LOCK_FORMAT_VERSION}: upgrade kiln",
            path.display()
        )
    } else {
        format!(
            "{} has lockfile format {found}; this kiln reads format {LOCK_FORMAT_VERSION} (the lock was written by an older kiln)",
            path.display()
        )
    }
}

impl LockError {
    /// Whether the lock was written by a newer kiln than this one, which
    /// must not overwrite it in its older format.
    pub fn is_newer_format(&self) -> bool {
        matches!(self, LockError::Version { found, .. } if *found > LOCK_FORMAT_VERSION)
    }
}

/// What to do about a lock written by a newer kiln.
pub const NEWER_FORMAT_HELP: &str = "install the kiln that wrote the lock (or a newer one); to keep this kiln instead, run `kiln lock --update` with it, which writes the lock in its own format, and commit that";

/// The lockfile that belongs to a manifest: `<stem>.lock` beside it.
pub fn path_for(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map_or_else(|| "imagefile".into(), |s| s.to_os_string());
    let mut name = stem;
    name.push(".lock");
    manifest.with_file_name(name)
}

/// `sha256:` and the SHA-256 of `bytes`, as the lock records hashes.
pub fn sha256_tag(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The text the image's identifiers (filesystem UUIDs, GUIDs, the ext4
/// hash seed: [`crate::assemble::Ids`]) derive from: the lock's, without
/// the elements' tree hashes. Editing an element's hook changes what the
/// image holds, not which disk it is, so a rebuild after such an edit keeps
/// `/etc/fstab` and can start from a snapshot ([`crate::snapshot`]).
pub fn identity_text(lock: &Lock) -> String {
    let mut lock = lock.clone();
    for element in &mut lock.elements {
        element.tree.clear();
    }
    // The native twins only make the build faster: nothing of them is in
    // the image, so neither they nor the indexes they were resolved from
    // (another architecture's) are part of its identity.
    lock.native_twins.clear();
    let arch_dir = format!("/binary-{}/", lock.base.arch);
    for repository in &mut lock.repositories {
        repository
            .indexes
            .retain(|index| !index.path.contains("/binary-") || index.path.contains(&arch_dir));
    }
    to_text(&lock)
}

/// The lock's text: a header comment, then the fields in a fixed order.
pub fn to_text(lock: &Lock) -> String {
    let mut out = String::new();
    let q = quote;
    // `write!` to a String cannot fail.
    let _ = writeln!(
        out,
        "# Written by `kiln lock`; do not edit. It pins every input of the image:"
    );
    let _ = writeln!(
        out,
        "# review changes to it like code, and commit it beside the imagefile."
    );
    let _ = writeln!(out, "version: {}", lock.version);
    let _ = writeln!(out, "kiln: {}", q(&lock.kiln));
    let _ = writeln!(out, "manifest: {}", q(&lock.manifest));
    let base = &lock.base;
    let _ = writeln!(out, "base:");
    let _ = writeln!(out, "  distro: {}", q(&base.distro));
    let _ = writeln!(out, "  release: {}", q(&base.release));
    let _ = writeln!(out, "  arch: {}", q(&base.arch));
    if let Some(image) = &base.image {
        let _ = writeln!(out, "  image:");
        let _ = writeln!(out, "    url: {}", q(&image.url));
        let _ = writeln!(out, "    size: {}", image.size);
        let _ = writeln!(out, "    sha256: {}", q(&image.sha256));
        let _ = writeln!(out, "    format: {}", q(&image.format));
        for (key, value) in [
            ("checksums", &image.checksums),
            ("signed_by", &image.signed_by),
            ("version", &image.version),
        ] {
            if let Some(value) = value {
                let _ = writeln!(out, "    {key}: {}", q(value));
            }
        }
    }
    if lock.repositories.is_empty() {
        let _ = writeln!(out, "repositories: []");
    } else {
        let _ = writeln!(out, "repositories:");
    }
    for repository in &lock.repositories {
        let _ = writeln!(out, "  - name: {}", q(&repository.name));
        let _ = writeln!(out, "    suite: {}", q(&repository.suite));
        let _ = writeln!(out, "    url: {}", q(&repository.url));
        let components: Vec<String> = repository.components.iter().map(|c| q(c)).collect();
        let _ = writeln!(out, "    components: [{}]", components.join(", "));
        let _ = writeln!(out, "    priority: {}", repository.priority);
        let _ = writeln!(out, "    signed_by: {}", q(&repository.signed_by));
        let _ = writeln!(
            out,
            "    in_release: {{sha256: {}, date: {}}}",
            q(&repository.in_release.sha256),
            q(&repository.in_release.date)
        );
        if repository.indexes.is_empty() {
            let _ = writeln!(out, "    indexes: []");
        } else {
            let _ = writeln!(out, "    indexes:");
        }
        for index in &repository.indexes {
            let _ = writeln!(
                out,
                "      - {{path: {}, size: {}, sha256: {}}}",
                q(&index.path),
                index.size,
                q(&index.sha256)
            );
        }
    }
    let _ = writeln!(out, "source_date_epoch: {}", lock.source_date_epoch);
    if lock.packages.is_empty() {
        let _ = writeln!(out, "packages: []");
    } else {
        let _ = writeln!(out, "packages:");
        write_packages(&mut out, &lock.packages);
    }
    if !lock.native_twins.is_empty() {
        let _ = writeln!(out, "native_twins:");
        write_packages(&mut out, &lock.native_twins);
    }
    if lock.elements.is_empty() {
        let _ = writeln!(out, "elements: []");
    } else {
        let _ = writeln!(out, "elements:");
        for e in &lock.elements {
            let _ = writeln!(
                out,
                "  - {{name: {}, origin: {}, tree: {}}}",
                q(&e.name),
                q(&e.origin),
                q(&e.tree)
            );
        }
    }
    out
}

/// One line per package, in the order given.
fn write_packages(out: &mut String, packages: &[LockedPackage]) {
    let q = quote;
    for p in packages {
        let priority = p
            .priority
            .as_ref()
            .map(|priority| format!(", priority: {}", q(priority)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  - {{name: {}, version: {}, arch: {}{priority}, size: {}, sha256: {}, repository: {}, filename: {}}}",
            q(&p.name),
            q(&p.version),
            q(&p.arch),
            p.size,
            q(&p.sha256),
            q(&p.repository),
            q(&p.filename)
        );
    }
}

/// A double-quoted YAML scalar: every value is quoted, so no version such
/// as `2.30` or name such as `yes` is ever read as a number or boolean.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Just the format version of a lockfile, whatever else it holds.
#[derive(Deserialize)]
struct Format {
    version: u32,
}

/// Reads the lock at `path`.
pub fn read(path: &Path) -> Result<Lock, LockError> {
    let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Reads a lock's `text`; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Lock, LockError> {
    let invalid = |e: serde_saphyr::Error| LockError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    // The version first: a lock of another format may not have this
    // format's fields, and "written by another kiln" is the useful message.
    let format: Format = serde_saphyr::from_str(text).map_err(invalid)?;
    if format.version != LOCK_FORMAT_VERSION {
        return Err(LockError::Version {
            path: path.to_path_buf(),
            found: format.version,
        });
    }
    serde_saphyr::from_str(text).map_err(invalid)
}

/// Writes the lock atomically: to a temporary file beside `path`, flushed
/// to disk, then renamed over it, so a crash never leaves half a lock.
/// Leaves the file untouched when its content would not change.
/// Returns whether the file changed.
pub fn write(path: &Path, lock: &Lock) -> Result<bool, LockError> {
    let text = to_text(lock);
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    crate::host::file::write_atomic(path, text.as_bytes()).map_err(|source| LockError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}

/// The lockfile's JSON schema (draft-07), committed as
/// `schema/lock.schema.json`.
pub fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    generator.into_root_schema_for::<Lock>().to_value()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Lock {
        Lock {
            version: LOCK_FORMAT_VERSION,
            kiln: "0.1.0".into(),
            manifest: sha256_tag(b"name: x\n"),
            base: LockedBase {
                distro: "debian".into(),
                release: "bookworm".into(),
                arch: "amd64".into(),
                image: None,
            },
            repositories: ["bookworm", "bookworm-security"]
                .into_iter()
                .map(|suite| LockedRepository {
                    name: "debian".into(),
                    suite: suite.into(),
                    url: if suite == "bookworm" {
                        "http://mirror.example.invalid/debian".into()
                    } else {
                        "http://mirror.example.invalid/debian-security".into()
                    },
                    components: vec!["main".into()],
                    priority: 500,
                    signed_by: "AB".repeat(20),
                    in_release: LockedInRelease {
                        sha256: "ab".repeat(32),
                        date: "Sat, 11 Jul 2026 10:16:37 UTC".into(),
                    },
                    indexes: vec![LockedFile {
                        path: "main/binary-amd64/Packages".into(),
                        sha256: "cd".repeat(32),
                        size: 50_060_337,
                    }],
                })
                .collect(),
            source_date_epoch: 1_783_764_997,
            packages: vec![
                LockedPackage {
                    name: "libc6".into(),
                    version: "2.36-9+deb12u13".into(),
                    arch: "amd64".into(),
                    priority: Some("optional".into()),
                    size: 2_757_936,
                    sha256: "ef".repeat(32),
                    repository: "debian/bookworm-security".into(),
                    filename: "pool/main/g/glibc/libc6_2.36-9+deb12u13_amd64.deb".into(),
                },
                LockedPackage {
                    name: "yes".into(),
                    version: "2.30".into(),
                    arch: "all".into(),
                    priority: None,
                    size: 1,
                    sha256: "01".repeat(32),
                    repository: "debian/bookworm".into(),
                    filename: "pool/main/y/yes/yes_2.30_all.deb".into(),
                },
            ],
            native_twins: Vec::new(),
            elements: vec![],
        }
    }

    #[test]
    fn text_round_trips_and_keeps_strings_strings() {
        let lock = sample();
        let text = to_text(&lock);
        let back: Lock = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, lock);
        assert!(
            text.contains("  - {name: \"yes\", version: \"2.30\", arch: \"all\""),
            "{text}"
        );
    }

    #[test]
    fn writing_is_atomic_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imagefile.lock");
        assert!(write(&path, &sample()).unwrap());
        assert!(
            !write(&path, &sample()).unwrap(),
            "an unchanged lock is not rewritten"
        );
        assert_eq!(read(&path).unwrap(), sample());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_build_reading_the_lock_while_it_is_rewritten_reads_a_whole_one() {
        // `kiln lock --update` beside a build that reads the lock: every
        // read sees the old lock or the new one, whole, never a mix.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imagefile.lock");
        let old = sample();
        let mut new = sample();
        new.packages[0].version = "2.36-9+deb12u14".into();
        // Larger than a page, as real locks are: a torn write would show.
        new.packages
            .extend(std::iter::repeat_n(new.packages[1].clone(), 200));
        write(&path, &old).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for round in 0..200 {
                    write(&path, if round % 2 == 0 { &new } else { &old }).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
                let read = read(&path).unwrap();
                assert!(read == old || read == new, "a lock neither old nor new");
                reads += 1;
            }
        });
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn the_lock_sits_beside_its_manifest() {
        assert_eq!(
            path_for(Path::new("imagefile.yaml")),
            Path::new("imagefile.lock")
        );
        assert_eq!(
            path_for(Path::new("m/debian-cloud.yaml")),
            Path::new("m/debian-cloud.lock")
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(
            &path,
            to_text(&sample()).replace("version: 3\n", "version: 9\n"),
        )
        .unwrap();
        assert!(matches!(
            read(&path),
            Err(LockError::Version { found: 9, .. })
        ));
        let newer = read(&path).unwrap_err();
        assert!(newer.is_newer_format());
        assert!(
            newer.to_string().ends_with(
                "was written by a newer kiln (lockfile format 9); this kiln reads up to format 3: upgrade kiln"
            ),
            "{newer}"
        );
    }

    #[test]
    fn a_lock_of_an_older_format_is_named_as_older_not_as_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        // Format 1 had no `priority` and format 2 no `repositories`, and an
        // unknown field is refused: the version must be looked at first.
        let text = to_text(&sample())
            .replace("version: 3\n", "version: 1\n")
            .replace(", priority: \"optional\"", "")
            .replace("    indexes:", "    unknown_in_format_3: 1\n    indexes:");
        std::fs::write(&path, text).unwrap();
        let error = read(&path).unwrap_err();
        assert!(
            matches!(error, LockError::Version { found: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("older kiln"), "{error}");
    }

    #[test]
    fn packages_download_from_their_own_repository() {
        let lock = sample();
        let libc = &lock.packages[0];
        assert_eq!(
            lock.package_url(libc, None),
            "http://mirror.example.invalid/debian-security/pool/main/g/glibc/libc6_2.36-9+deb12u13_amd64.deb"
        );
        // `--mirror` stands in for every archive of the distribution.
        assert_eq!(
            lock.package_url(libc, Some("file:///srv/m")),
            "file:///srv/m/pool/main/g/glibc/libc6_2.36-9+deb12u13_amd64.deb"
        );
        assert_eq!(
            lock.package_url(&lock.packages[1], Some("file:///srv/m/")),
            "file:///srv/m/pool/main/y/yes/yes_2.30_all.deb"
        );
    }

    #[test]
    fn the_archive_priority_is_written_only_when_the_index_gave_one() {
        let text = to_text(&sample());
        assert!(
            text.contains("arch: \"amd64\", priority: \"optional\", size: 2757936"),
            "{text}"
        );
        assert!(text.contains("arch: \"all\", size: 1,"), "{text}");
    }
}

//! Software bills of materials and provenance: what an image holds, where
//! each part came from, and how the image was made.
//!
//! The [`Inventory`] is what both SBOM formats say, gathered once:
//! the image, every package installed in it (name, version, architecture,
//! the maintainer as supplier, the licence its machine-readable copyright
//! file declares, the locked `.deb`'s SHA-256 and download URL), what each
//! package depends on among the others, every element with its tree hash,
//! and the base image for image bases. It is made from the finished tree
//! after a build ([`Inventory::from_tree`]: the tree's dpkg database is the
//! truth, so packages a hook removed are not there and packages an image
//! base brought are, marked as outside the lock) or from the lock alone
//! for `kiln sbom` ([`Inventory::from_lock`]: no licences, and the locked
//! packages whether or not a hook removes them, which the documents say).
//!
//! [`spdx::document`] and [`cyclonedx::document`] write it as SPDX 2.3
//! and CycloneDX 1.5 JSON, [`provenance::statement`] writes the in-toto
//! statement of a build. All three are deterministic: the same inventory
//! gives the same bytes (keys sorted, lists in a fixed order, timestamps
//! from `SOURCE_DATE_EPOCH`, identifiers derived from the content).

pub mod cyclonedx;
pub mod licence;
pub mod provenance;
pub mod spdx;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::apt::deb822::{Paragraphs, parse_provides, parse_relationships};
use crate::cache::{Cache, Digest, Lookup};
use crate::host::walk::resolve_in_tree;
use crate::lock::{Lock, LockedElement, LockedImage};
use crate::report::ReportPackage;

/// Copyright and status files are read up to this size; a larger one is
/// not a package database or copyright file kiln reads.
const MAX_READ_BYTES: u64 = 64 << 20;

/// Everything the SBOMs say, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The image's name.
    pub image: String,
    /// The kiln version that wrote the documents.
    pub kiln_version: String,
    /// Seconds since 1970 UTC: the documents' creation time.
    pub source_date_epoch: u64,
    /// The SHA-256 (hex) of the lock's text.
    pub lock_sha256: String,
    /// The SHA-256 (hex) of the imagefile the lock was made from.
    pub manifest_sha256: String,
    /// The distribution the packages belong to.
    pub os: OperatingSystem,
    /// The image's architecture.
    pub arch: String,
    /// The image the base tree was taken out of, for image bases.
    pub base_image: Option<LockedImage>,
    /// Every package, sorted by name then architecture.
    pub packages: Vec<Package>,
    /// Every element applied, in the lock's order.
    pub elements: Vec<LockedElement>,
    /// What the inventory was made from.
    pub basis: Basis,
}

/// What an inventory was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The finished tree of a build.
    Tree,
    /// The lock alone (`kiln sbom`).
    Lock {
        /// Whether each locked `.deb` was in the cache to read its
        /// maintainer and dependencies from.
        control_files: bool,
    },
}

/// The distribution, as a scanner matches vulnerabilities by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatingSystem {
    /// `debian`, `ubuntu`: the package URL's namespace.
    pub id: String,
    /// The release as the lock names it (`bookworm`): the package URL's
    /// `distro` qualifier.
    pub release: String,
    /// The release's version number (`12`), when kiln knows it.
    pub version: Option<String>,
}

/// One package of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Which package format it is.
    pub format: PackageFormat,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture (`amd64`, `all`).
    pub arch: String,
    /// Its maintainer, the package's supplier.
    pub maintainer: Option<Maintainer>,
    /// The licence its machine-readable copyright file declares.
    pub licence: licence::Declared,
    /// The `.deb` the lock pins; `None` for a package installed outside
    /// the lock (by an image base's package manager).
    pub locked: Option<LockedFile>,
    /// The packages it depends on (`Depends`, `Pre-Depends`), as
    /// [`Package::key`]s of packages in the inventory, sorted.
    pub depends: Vec<String>,
    /// Its `Depends` and `Pre-Depends` entries, each its alternatives'
    /// names, until [`resolve_depends`] turns them into `depends`.
    relations: Vec<Vec<String>>,
    /// The virtual names it provides.
    provides: Vec<String>,
}

/// Which package manager a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    /// dpkg (Debian, Ubuntu).
    Deb,
    /// rpm (Fedora, CentOS, RHEL, openSUSE image bases).
    Rpm,
}

/// A package's maintainer, from its `Maintainer` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintainer {
    /// The name (a person or a team).
    pub name: String,
    /// The e-mail address, when the field gives one.
    pub email: Option<String>,
}

/// The package file the lock pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedFile {
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// Where it is downloaded from.
    pub url: String,
    /// The repository it was locked from (`debian/bookworm-security`).
    pub repository: String,
}

impl Package {
    /// `name:arch`, unique in an inventory.
    pub fn key(&self) -> String {
        format!("{}:{}", self.name, self.arch)
    }

    /// The package URL (purl-spec's `deb` and `rpm` types): the
    /// distribution as namespace, and its release as the `distro`
    /// qualifier, which the `deb` type defines as "the distribution name,
    /// codename, or suite".
    pub fn purl(&self, os: &OperatingSystem) -> String {
        let kind = match self.format {
            PackageFormat::Deb => "deb",
            PackageFormat::Rpm => "rpm",
        };
        format!(
            "pkg:{kind}/{}/{}@{}?arch={}&distro={}",
            purl_encode(&os.id.to_ascii_lowercase()),
            purl_encode(&self.name.to_ascii_lowercase()),
            purl_encode(&self.version),
            purl_encode(&self.arch),
            purl_encode(&os.release),
        )
    }
}

/// Percent-encodes what a package URL segment cannot hold as it is
/// (purl-spec: `:` and `+` in versions become `%3A` and `%2B`).
fn purl_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Why an inventory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// A file of the tree could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The tree's dpkg database could not be read.
    #[error("{path} is not a dpkg status file kiln can read: {detail}")]
    Status {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A document could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// What identifies the documents of one image: its name and the lock.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The image's name.
    pub image: &'a str,
    /// The lock.
    pub lock: &'a Lock,
    /// The lock's text, as its file holds it.
    pub lock_text: &'a [u8],
}

impl Inventory {
    /// The inventory of a finished tree: every package its dpkg database
    /// (`/var/lib/dpkg/status`, read directly, without a chroot) holds as
    /// installed, with the licence of its copyright file and, when the
    /// lock pins it, the locked `.deb`. A tree without a dpkg database
    /// (an RPM image base) lists `rpm_packages`, the packages the build's
    /// finished-tree check found.
    pub fn from_tree(
        origin: Origin<'_>,
        root: &Path,
        rpm_packages: Option<&[ReportPackage]>,
    ) -> Result<Inventory, SbomError> {
        let mut inventory = Inventory::empty(origin, Basis::Tree);
        let status = resolve_in_tree(root, "var/lib/dpkg/status").filter(|p| p.is_file());
        let mut packages = match status {
            Some(path) => {
                let text = read_limited(&path)?;
                let installed = parse_status(&text).map_err(|detail| SbomError::Status {
                    path: path.clone(),
                    detail,
                })?;
                installed
                    .into_iter()
                    .map(|control| {
                        let licence = copyright_of(root, &control.name)?;
                        Ok(control.into_package(PackageFormat::Deb, licence))
                    })
                    .collect::<Result<Vec<_>, SbomError>>()?
            }
            None => rpm_packages
                .unwrap_or_default()
                .iter()
                .map(|p| Package {
                    format: PackageFormat::Rpm,
                    name: p.name.clone(),
                    version: p.version.clone(),
                    arch: p.arch.clone(),
                    maintainer: None,
                    licence: licence::Declared::default(),
                    locked: None,
                    depends: Vec::new(),
                    relations: Vec::new(),
                    provides: Vec::new(),
                })
                .collect(),
        };
        for package in &mut packages {
            package.locked = locked_file(origin.lock, package);
        }
        inventory.packages = packages;
        inventory.sort();
        Ok(inventory)
    }

    /// The inventory the lock alone gives (`kiln sbom`): every locked
    /// package, its maintainer and dependencies from its `.deb`'s control
    /// file when `cache` holds the `.deb` (`kiln fetch` puts it there), no
    /// licences (they are in the built tree). Packages a hook removes
    /// during a build are listed; an image base's own packages are not
    /// (the lock pins the image, not them).
    pub fn from_lock(origin: Origin<'_>, cache: Option<&Cache>) -> Inventory {
        let lock = origin.lock;
        let mut all_read = cache.is_some();
        let packages = lock
            .packages
            .iter()
            .map(|locked| {
                let control = cache.and_then(|cache| control_from_cache(cache, locked));
                if control.is_none() {
                    all_read = false;
                }
                let control = control.unwrap_or_else(|| Control {
                    name: locked.name.clone(),
                    version: locked.version.clone(),
                    arch: locked.arch.clone(),
                    ..Control::default()
                });
                let mut package =
                    control.into_package(PackageFormat::Deb, licence::Declared::default());
                // The lock's name, version and architecture are what it
                // pins, whatever the control file says.
                package.name.clone_from(&locked.name);
                package.version.clone_from(&locked.version);
                package.arch.clone_from(&locked.arch);
                package.locked = locked_file(lock, &package);
                package
            })
            .collect();
        let mut inventory = Inventory::empty(
            origin,
            Basis::Lock {
                control_files: all_read && !lock.packages.is_empty(),
            },
        );
        inventory.packages = packages;
        inventory.sort();
        inventory
    }

    fn empty(origin: Origin<'_>, basis: Basis) -> Inventory {
        let lock = origin.lock;
        Inventory {
            image: origin.image.to_string(),
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            source_date_epoch: lock.source_date_epoch,
            lock_sha256: Digest::of_bytes(origin.lock_text).sha256,
            manifest_sha256: lock
                .manifest
                .strip_prefix("sha256:")
                .unwrap_or(&lock.manifest)
                .to_string(),
            os: OperatingSystem {
                id: lock.base.distro.clone(),
                release: lock.base.release.clone(),
                version: release_version(&lock.base.distro, &lock.base.release).map(str::to_string),
            },
            arch: lock.base.arch.clone(),
            base_image: lock.base.image.clone(),
            packages: Vec::new(),
            elements: lock.elements.clone(),
            basis,
        }
    }

    /// Sorts the packages and resolves each one's dependencies to the
    /// packages present.
    fn sort(&mut self) {
        self.packages
            .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
        self.packages.dedup_by(|a, b| a.key() == b.key());
        resolve_depends(&mut self.packages);
    }

    /// The names (`name:arch`) of packages installed outside the lock.
    pub fn unlocked(&self) -> Vec<String> {
        self.packages
            .iter()
            .filter(|p| p.locked.is_none())
            .map(Package::key)
            .collect()
    }
}

/// The version number of a release named by its code name, for the
/// releases kiln builds (a scanner matches advisories by it). `None` for
/// any other name (`stable`, a future release): not guessed.
pub fn release_version(distro: &str, release: &str) -> Option<&'static str> {
    const RELEASES: &[(&str, &str, &str)] = &[
        ("debian", "buster", "10"),
        ("debian", "bullseye", "11"),
        ("debian", "bookworm", "12"),
        ("debian", "trixie", "13"),
        ("ubuntu", "focal", "20.04"),
        ("ubuntu", "jammy", "22.04"),
        ("ubuntu", "noble", "24.04"),
    ];
    RELEASES
        .iter()
        .find(|(d, r, _)| *d == distro && *r == release)
        .map(|(_, _, version)| *version)
}

/// The fields of one package's control paragraph the SBOM needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Control {
    name: String,
    version: String,
    arch: String,
    maintainer: Option<Maintainer>,
    /// Each `Depends`/`Pre-Depends` entry: its alternatives' names.
    depends: Vec<Vec<String>>,
    /// The virtual names it provides.
    provides: Vec<String>,
}

impl Control {
    fn from_paragraph(paragraph: &crate::apt::deb822::Paragraph<'_>) -> Result<Control, String> {
        let field = |name: &str| paragraph.get(name).unwrap_or_default().to_string();
        let mut depends = Vec::new();
        for name in ["Pre-Depends", "Depends"] {
            if let Some(value) = paragraph.get(name) {
                let parsed = parse_relationships(value).map_err(|e| e.to_string())?;
                depends.extend(parsed.into_iter().map(|dependency| {
                    dependency
                        .alternatives
                        .into_iter()
                        .map(|a| a.package)
                        .collect()
                }));
            }
        }
        let provides = match paragraph.get("Provides") {
            Some(value) => parse_provides(value)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|p| p.package)
                .collect(),
            None => Vec::new(),
        };
        Ok(Control {
            name: field("Package"),
            version: field("Version"),
            arch: field("Architecture"),
            maintainer: paragraph.get("Maintainer").map(maintainer),
            depends,
            provides,
        })
    }

    fn into_package(self, format: PackageFormat, licence: licence::Declared) -> Package {
        Package {
            format,
            name: self.name,
            version: self.version,
            arch: self.arch,
            maintainer: self.maintainer,
            licence,
            locked: None,
            depends: Vec::new(),
            relations: self.depends,
            provides: self.provides,
        }
    }
}

/// Turns each package's relationships into the keys of the packages that
/// satisfy them: for each entry, the first alternative that names an installed
/// package, else the first that an installed package provides. What the
/// tree holds satisfied dpkg, so versions need no second look.
fn resolve_depends(packages: &mut [Package]) {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut providers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in packages.iter() {
        by_name
            .entry(package.name.clone())
            .or_default()
            .push(package.key());
        for provided in &package.provides {
            providers
                .entry(provided.clone())
                .or_default()
                .push(package.key());
        }
    }
    for package in packages.iter_mut() {
        let own = package.key();
        let mut resolved = BTreeSet::new();
        for alternatives in &package.relations {
            let found = alternatives
                .iter()
                .find_map(|name| by_name.get(name))
                .or_else(|| alternatives.iter().find_map(|name| providers.get(name)));
            if let Some(keys) = found {
                // Of several architectures of one name, the package's own
                // (or `all`) first.
                let key = keys
                    .iter()
                    .find(|k| k.ends_with(&format!(":{}", package.arch)))
                    .unwrap_or(&keys[0]);
                if *key != own {
                    resolved.insert(key.clone());
                }
            }
        }
        package.depends = resolved.into_iter().collect();
    }
}

/// `Name <address>` read into its parts; anything else is a name.
fn maintainer(field: &str) -> Maintainer {
    let field = field.trim();
    if let Some((name, rest)) = field.split_once('<')
        && let Some(email) = rest.strip_suffix('>')
        && email.contains('@')
        && !email.contains(char::is_whitespace)
        && !name.trim().is_empty()
    {
        return Maintainer {
            name: name.trim().to_string(),
            email: Some(email.to_string()),
        };
    }
    Maintainer {
        name: field.to_string(),
        email: None,
    }
}

/// The installed packages of a dpkg `status` file (status `installed`;
/// config files left by a removed package are not a package the image
/// holds).
fn parse_status(text: &str) -> Result<Vec<Control>, String> {
    let mut packages = Vec::new();
    for paragraph in Paragraphs::new(text) {
        let paragraph = paragraph.map_err(|e| e.to_string())?;
        let installed = paragraph
            .get("Status")
            .is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"));
        if !installed {
            continue;
        }
        let control = Control::from_paragraph(&paragraph)
            .map_err(|e| format!("line {}: {e}", paragraph.line()))?;
        if control.name.is_empty() || control.version.is_empty() {
            return Err(format!(
                "line {}: an installed package without its name or version",
                paragraph.line()
            ));
        }
        packages.push(control);
    }
    Ok(packages)
}

/// What the copyright file of `package` in the tree declares (nothing when
/// there is none).
fn copyright_of(root: &Path, package: &str) -> Result<licence::Declared, SbomError> {
    let Some(path) = resolve_in_tree(root, &format!("usr/share/doc/{package}/copyright")) else {
        return Ok(licence::Declared::default());
    };
    if !path.is_file() {
        return Ok(licence::Declared::default());
    }
    Ok(licence::declared(&read_limited(&path)?))
}

/// A text file of the tree, up to [`MAX_READ_BYTES`]; invalid UTF-8 is
/// replaced (a copyright file in Latin-1 still has ASCII field names).
fn read_limited(path: &Path) -> Result<String, SbomError> {
    use std::io::Read as _;
    let read_error = |source| SbomError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = fs_err::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `.deb` the lock pins for `package`, matched by name, version and
/// architecture.
fn locked_file(lock: &Lock, package: &Package) -> Option<LockedFile> {
    if package.format != PackageFormat::Deb {
        return None;
    }
    let locked = lock.packages.iter().find(|l| {
        l.name == package.name && l.version == package.version && l.arch == package.arch
    })?;
    Some(LockedFile {
        sha256: locked.sha256.clone(),
        url: lock.package_url(locked, None),
        repository: locked.repository.clone(),
    })
}

/// The control paragraph of a locked `.deb`, when the cache holds it.
fn control_from_cache(cache: &Cache, locked: &crate::lock::LockedPackage) -> Option<Control> {
    let digest = Digest::new(&locked.sha256, locked.size).ok()?;
    let Ok(Lookup::Present(path)) = cache.get(&digest) else {
        return None;
    };
    let text = crate::bootstrap::deb::read_control(&path).ok()?;
    let paragraph = Paragraphs::new(&text).next()?.ok()?;
    Control::from_paragraph(&paragraph).ok()
}

/// A UUID (version 4 form, as RFC 9562 allows for derived bytes) from the
/// SHA-256 of `bytes`: the same content, the same identifier.
pub fn derived_uuid(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    crate::assemble::ids::Uuid::from_digest(&Sha256::digest(bytes).into()).to_string()
}

/// `2025-05-10T00:00:00Z` for seconds since the epoch.
pub fn iso8601_utc(epoch: u64) -> String {
    let (year, month, day, hour, minute, second) = crate::reproducible::utc_fields(epoch);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// The documents a build writes beside its report, by file name suffix.
pub const SPDX_SUFFIX: &str = "spdx.json";
/// See [`SPDX_SUFFIX`].
pub const CYCLONEDX_SUFFIX: &str = "cdx.json";
/// See [`SPDX_SUFFIX`].
pub const PROVENANCE_SUFFIX: &str = "provenance.json";

/// A JSON value as kiln writes documents: pretty, keys sorted (serde_json's
/// map), ending with a newline.
pub fn to_text(value: &serde_json::Value) -> String {
    // A value built from strings and numbers always serialises.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes `text` to `dir/<image>.<suffix>` atomically and returns the path.
pub fn write_document(
    dir: &Path,
    image: &str,
    suffix: &str,
    text: &str,
) -> Result<PathBuf, SbomError> {
    let path = dir.join(format!("{image}.{suffix}"));
    crate::host::file::write_atomic(&path, text.as_bytes()).map_err(|source| SbomError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lock::{LockedBase, LockedPackage, LockedRepository};

    pub(crate) fn locked(name: &str, version: &str, arch: &str) -> LockedPackage {
        LockedPackage {
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.to_string(),
            priority: None,
            size: 10,
            sha256: format!("{:0>64}", hex::encode(name)),
            repository: "debian/bookworm".to_string(),
            filename: format!("pool/main/{name}_{version}_{arch}.deb"),
        }
    }

    pub(crate) fn lock() -> Lock {
        Lock {
            version: crate::lock::LOCK_FORMAT_VERSION,
            kiln: "0.1.0".to_string(),
            manifest: format!("sha256:{}", "1".repeat(64)),
            base: LockedBase {
                distro: "debian".to_string(),
                release: "bookworm".to_string(),
                arch: "amd64".to_string(),
                image: None,
            },
            repositories: vec![LockedRepository {
                name: "debian".to_string(),
                suite: "bookworm".to_string(),
                url: "http://mirror.example.invalid/debian".to_string(),
                components: vec!["main".to_string()],
                priority: 500,
                signed_by: "ABCD".to_string(),
                in_release: crate::lock::LockedInRelease {
                    sha256: "2".repeat(64),
                    date: "Sat, 10 May 2025 00:00:00 UTC".to_string(),
                },
                indexes: Vec::new(),
            }],
            source_date_epoch: 1_746_835_200,
            packages: vec![
                locked("libc6", "2.36-9+deb12u10", "amd64"),
                locked("libstdc++6", "12.2.0-14", "amd64"),
                locked("base-files", "12.4+deb12u10", "amd64"),
                locked("mawk", "1.3.4.20200120-3.1", "amd64"),
            ],
            native_twins: Vec::new(),
            elements: vec![LockedElement {
                name: "vm".to_string(),
                origin: "builtin".to_string(),
                tree: format!("sha256:{}", "3".repeat(64)),
            }],
        }
    }

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u10
Depends: libgcc-s1
Description: GNU C Library

Package: libstdc++6
Status: install ok installed
Maintainer: Debian GCC Maintainers <debian-gcc@lists.debian.org>
Architecture: amd64
Version: 12.2.0-14
Depends: libc6 (>= 2.36), awk | mawk
Description: GNU Standard C++ Library

Package: mawk
Status: install ok installed
Maintainer: Boyuan Yang <byang@debian.org>
Architecture: amd64
Version: 1.3.4.20200120-3.1
Provides: awk
Pre-Depends: libc6 (>= 2.29)
Description: Pattern scanning

Package: base-files
Status: deinstall ok config-files
Architecture: amd64
Version: 12.4+deb12u10
Description: removed, its conffiles kept

Package: cloud-thing
Status: install ok installed
Maintainer: Someone
Architecture: all
Version: 1.0
Depends: libc6
Description: installed outside the lock
";

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("var/lib/dpkg")).expect("mkdir");
        std::fs::write(root.join("var/lib/dpkg/status"), STATUS).expect("write");
        std::fs::create_dir_all(root.join("usr/share/doc/mawk")).expect("mkdir");
        std::fs::write(
            root.join("usr/share/doc/mawk/copyright"),
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
             Files: *\nCopyright: x\nLicense: GPL-2\n",
        )
        .expect("write");
        // libstdc++6's doc directory is a link to another package's, as
        // gcc's are; an absolute link points into the tree, not the host.
        std::fs::create_dir_all(root.join("usr/share/doc/gcc-12-base")).expect("mkdir");
        std::fs::write(
            root.join("usr/share/doc/gcc-12-base/copyright"),
            "Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
             Files: *\nCopyright: x\nLicense: GPL-3+ with GCC-exception-3.1\n",
        )
        .expect("write");
        std::os::unix::fs::symlink(
            "/usr/share/doc/gcc-12-base",
            root.join("usr/share/doc/libstdc++6"),
        )
        .expect("symlink");
        dir
    }

    fn origin(lock: &Lock) -> Origin<'_> {
        Origin {
            image: "demo",
            lock,
            lock_text: b"lock text\n",
        }
    }

    #[test]
    fn the_tree_is_the_truth_removed_packages_are_gone_and_unlocked_ones_marked() {
        let lock = lock();
        let tree = tree();
        let inventory = Inventory::from_tree(origin(&lock), tree.path(), None).expect("inventory");
        let keys: Vec<String> = inventory.packages.iter().map(Package::key).collect();
        // base-files has only its conffiles left: not installed.
        assert_eq!(
            keys,
            [
                "cloud-thing:all",
                "libc6:amd64",
                "libstdc++6:amd64",
                "mawk:amd64"
            ]
        );
        assert_eq!(inventory.unlocked(), ["cloud-thing:all"]);
        let by_key: BTreeMap<String, &Package> =
            inventory.packages.iter().map(|p| (p.key(), p)).collect();
        let libstdcxx = by_key["libstdc++6:amd64"];
        // `awk | mawk`: awk is virtual, and mawk provides it.
        assert_eq!(libstdcxx.depends, ["libc6:amd64", "mawk:amd64"]);
        assert_eq!(
            libstdcxx.licence.expression.as_deref(),
            Some("LicenseRef-GPL-3-plus-with-GCC-exception-3.1")
        );
        assert_eq!(
            by_key["mawk:amd64"].licence.expression.as_deref(),
            Some("GPL-2.0-only")
        );
        assert_eq!(by_key["mawk:amd64"].depends, ["libc6:amd64"]);
        // libgcc-s1 is not installed: no relationship to nothing.
        assert!(by_key["libc6:amd64"].depends.is_empty());
        assert_eq!(by_key["libc6:amd64"].licence.expression, None);
        let libc = by_key["libc6:amd64"];
        assert_eq!(
            libc.maintainer,
            Some(Maintainer {
                name: "GNU Libc Maintainers".to_string(),
                email: Some("debian-glibc@lists.debian.org".to_string())
            })
        );
        let file = libc.locked.as_ref().expect("locked");
        assert_eq!(
            file.url,
            "http://mirror.example.invalid/debian/pool/main/libc6_2.36-9+deb12u10_amd64.deb"
        );
        assert_eq!(
            libc.purl(&inventory.os),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=bookworm"
        );
        assert_eq!(inventory.os.version.as_deref(), Some("12"));
        assert_eq!(inventory.manifest_sha256, "1".repeat(64));
    }

    #[test]
    fn a_lock_alone_lists_every_locked_package_without_licences() {
        let lock = lock();
        let inventory = Inventory::from_lock(origin(&lock), None);
        let keys: Vec<String> = inventory.packages.iter().map(Package::key).collect();
        assert_eq!(
            keys,
            [
                "base-files:amd64",
                "libc6:amd64",
                "libstdc++6:amd64",
                "mawk:amd64"
            ]
        );
        assert!(inventory.packages.iter().all(|p| p.locked.is_some()
            && p.licence.expression.is_none()
            && p.maintainer.is_none()));
        assert_eq!(
            inventory.basis,
            Basis::Lock {
                control_files: false
            }
        );
    }

    #[test]
    fn a_broken_status_file_is_an_error_naming_it() {
        let lock = lock();
        let tree = tree();
        std::fs::write(
            tree.path().join("var/lib/dpkg/status"),
            "Package: x\nStatus: install ok installed\nVersion: 1\nDepends: a (>>\n",
        )
        .expect("write");
        let error = Inventory::from_tree(origin(&lock), tree.path(), None).expect_err("broken");
        assert!(error.to_string().contains("var/lib/dpkg/status"), "{error}");
    }

    #[test]
    fn derived_identifiers_are_uuids_and_stable() {
        let a = derived_uuid(b"x");
        assert_eq!(a, derived_uuid(b"x"));
        assert_ne!(a, derived_uuid(b"y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_eq!(iso8601_utc(1_746_835_200), "2025-05-10T00:00:00Z");
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
    }
}

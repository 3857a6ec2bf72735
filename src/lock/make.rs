//! Making a lock: from a checked manifest to every package pinned.
//!
//! The steps, each verified before the next trusts it:
//! 1. the repositories: the release, its `-updates`, `-security` (and
//!    `-backports`) suites at the mirrors the manifest or the host's apt
//!    sources name, then the manifest's `repositories`, each with its key;
//! 2. for each, `dists/<suite>/InRelease`, its signature checked with gpgv;
//! 3. each `Packages` index, fetched compressed (by hash when the archive
//!    allows), decompressed, and checked against the size and SHA-256 the
//!    InRelease gives for the uncompressed file, then kept in the cache and
//!    read from there a paragraph at a time;
//! 4. the resolution of minbase plus the manifest's packages across all of
//!    them, with apt's pin priorities (`NotAutomatic` suites 1 or 100,
//!    others 500 unless the manifest says otherwise).
//!
//! The result is a [`Lock`]; writing it is the caller's business.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::apt::index::{IndexError, PackageIndex};
use crate::apt::release::{self, Release, ReleaseError};
use crate::apt::resolve::{self, ResolveError, SeedRequest};
use crate::apt::sources;
use crate::cache::{Cache, CommitError, Digest, Lookup};
use crate::host::http::{Http, HttpError};
use crate::manifest::{Checked, Distro, Manifest, SuiteKind};

use super::{
    LOCK_FORMAT_VERSION, Lock, LockedBase, LockedFile, LockedInRelease, LockedPackage,
    LockedRepository,
};

/// An `InRelease` is about 150 KiB; anything above this is not one.
const MAX_IN_RELEASE_BYTES: u64 = 16 << 20;

/// Where the host keeps its apt configuration.
pub const HOST_APT_DIR: &str = "/etc/apt";

/// Why a lock could not be made. Each variant says which part of the
/// manifest (if any) the user should look at.
#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    /// The base distribution cannot be locked (yet).
    #[error(
        "`kiln lock` can lock `debian` and `ubuntu` bases; `{distro}` bases are not supported yet"
    )]
    Unsupported {
        /// The distro named.
        distro: &'static str,
    },
    /// No mirror in the manifest, and none in the host's apt sources.
    #[error("the manifest names no `mirror`, and the host's apt sources name none for `{release}`")]
    NoMirror {
        /// The release looked for.
        release: String,
    },
    /// The mirror has no such release.
    #[error("the mirror has no release `{release}`: {url} does not exist{}",
        .suggestion.as_ref().map_or_else(String::new, |s| format!("; did you mean `{s}`? (the mirror has it)")))]
    NoRelease {
        /// The release asked for.
        release: String,
        /// The InRelease URL tried.
        url: String,
        /// A release name close to it that the mirror has.
        suggestion: Option<String>,
    },
    /// The archive does not carry the architecture or component.
    #[error("{url} lists no `{wanted}` (it has: {})", .available.join(", "))]
    NotInRelease {
        /// The InRelease URL.
        url: String,
        /// The architecture or component wanted.
        wanted: String,
        /// What the archive has.
        available: Vec<String>,
    },
    /// The InRelease does not list an index kiln needs.
    #[error("{url} lists no hash for `{path}`, so it cannot be verified")]
    UnlistedIndex {
        /// The InRelease URL.
        url: String,
        /// The index path.
        path: String,
    },
    /// The archive's Valid-Until has passed: its indexes may be stale.
    #[error("{url} expired on {valid_until} (Valid-Until); the mirror is out of date")]
    Expired {
        /// The InRelease URL.
        url: String,
        /// When it expired, in seconds since 1970.
        valid_until: u64,
    },
    /// A download failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The InRelease was refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// An index could not be decompressed or did not match its hash.
    #[error("the index {url} is damaged: {detail}")]
    BadIndex {
        /// Where it came from.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The packages cannot be resolved (boxed: a resolution error carries
    /// whole dependency chains).
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    /// The cache failed.
    #[error("the cache failed: {0}")]
    Cache(String),
    /// The image of an image base could not be found, pinned or read.
    #[error(transparent)]
    Image(Box<crate::distro::image::ImageError>),
    /// Two repositories give one package version with different contents.
    #[error(
        "{first} and {second} both give {package} {version}, with different contents: \
         the image could hold either"
    )]
    SameVersionDiffers {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The repository read first, as `name/suite`.
        first: String,
        /// The other.
        second: String,
    },
    /// A failure reading one repository, with the manifest entry it comes
    /// from.
    #[error("{suite}: {error}")]
    At {
        /// The entry.
        entry: Entry,
        /// The suite being read.
        suite: String,
        /// What went wrong.
        error: Box<MakeError>,
    },
}

/// What the manifest's elements bring to the lock: their pinned trees and
/// the packages their `package-installs` ask for.
#[derive(Debug, Clone, Default)]
pub struct Elements {
    /// Every element applied, with its tree hash, in plan order.
    pub locked: Vec<super::LockedElement>,
    /// Packages to install for them (pkg-map applied), sorted.
    pub packages: Vec<String>,
}

impl Elements {
    /// The lock's view of a plan whose built-in elements are in `builtin`,
    /// for the imagefile in `manifest_dir`.
    pub fn from_plan(plan: &crate::plan::Plan, builtin: &Path, manifest_dir: &Path) -> Self {
        Elements {
            locked: plan
                .elements
                .iter()
                .map(|e| super::LockedElement {
                    name: e.name.to_string(),
                    origin: origin(&e.dir, builtin, manifest_dir),
                    tree: e.tree_hash.clone(),
                })
                .collect(),
            packages: plan.packages_to_install(),
        }
    }
}

/// Where an element was found, as the lock records it: `builtin`, its
/// directory relative to the imagefile's when it is inside that (an
/// element committed beside the imagefile), else its absolute directory.
/// Never the cache's or a checkout's own path, which differ from machine
/// to machine: the same inputs must give the same lock, byte for byte,
/// because the image's identifiers are derived from it.
fn origin(dir: &Path, builtin: &Path, manifest_dir: &Path) -> String {
    let canonical =
        |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = canonical(dir);
    if dir.starts_with(canonical(builtin)) {
        return "builtin".to_string();
    }
    match dir.strip_prefix(canonical(manifest_dir)) {
        Ok(relative) if relative.as_os_str().is_empty() => ".".to_string(),
        Ok(relative) => relative.display().to_string(),
        Err(_) => dir.display().to_string(),
    }
}

/// What `make` also reports besides the lock.
#[derive(Debug, Clone)]
pub struct Made {
    /// The lock.
    pub lock: Lock,
    /// The key files that verified each repository, in the lock's order.
    pub keyrings: Vec<PathBuf>,
}

/// Which entry of the manifest a repository comes from, so an error about
/// it can point there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The base archive: the release itself (`None`) or one of `suites`.
    Base(Option<SuiteKind>),
    /// The `repositories` entry at this position.
    Repository(usize),
}

/// One suite of one archive to read, with how to trust it.
#[derive(Debug, Clone)]
struct Wanted {
    entry: Entry,
    name: String,
    suite: String,
    url: String,
    components: Vec<String>,
    keyrings: Vec<PathBuf>,
    fingerprint: Option<String>,
    priority: Option<i32>,
}

/// Makes the lock for `checked`, whose file's SHA-256 is `manifest_sha256`
/// (as `sha256:…`) and which lives in `manifest_dir` (key files are
/// relative to it). `apt_dir` is where the host's apt sources are read
/// when the manifest names no mirror.
pub fn make(
    checked: &Checked,
    manifest_sha256: &str,
    manifest_dir: &Path,
    elements: &Elements,
    http: &Http,
    cache: &Cache,
    apt_dir: &Path,
) -> Result<Made, MakeError> {
    let manifest = &checked.manifest;
    let base = &manifest.base;
    let distro = base.distro.value;
    if !distro.is_debian_family() {
        return Err(MakeError::Unsupported {
            distro: distro.as_str(),
        });
    }
    let release_name = base
        .release
        .as_ref()
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    let arch = base.arch.value.as_str();
    let wanted = wanted_repositories(manifest, &release_name, manifest_dir, apt_dir)?;

    let mut index = PackageIndex::new(arch);
    let twin_arch = native_twin_arch(arch);
    let mut twin_index = twin_arch.map(PackageIndex::new);
    let mut repositories = Vec::new();
    let mut keyrings = Vec::new();
    let mut newest_date = 0;
    for (number, want) in wanted.iter().enumerate() {
        let at = |error: MakeError| MakeError::At {
            entry: want.entry,
            suite: want.suite.clone(),
            error: Box::new(error),
        };
        let ReadRepository {
            locked,
            release,
            indexes,
            twin_indexes,
        } = read_repository(want, arch, twin_arch, http, cache).map_err(at)?;
        newest_date = newest_date.max(release.date_epoch);
        for (url, path) in indexes {
            let file = fs_err::File::open(&path).map_err(|e| {
                at(MakeError::BadIndex {
                    url: url.clone(),
                    detail: e.to_string(),
                })
            })?;
            index
                .add_repository_from(&url, BufReader::new(file), number, locked.priority)
                .map_err(|e| match e {
                    IndexError::Differs(differs) => MakeError::SameVersionDiffers {
                        package: differs.package.clone(),
                        version: differs.version.clone(),
                        first: repositories
                            .get(differs.earlier_repository)
                            .map(LockedRepository::id)
                            .unwrap_or_default(),
                        second: locked.id(),
                    },
                    other => at(MakeError::BadIndex {
                        url: url.clone(),
                        detail: other.to_string(),
                    }),
                })?;
        }
        if let Some(twin_index) = twin_index.as_mut() {
            for (url, path) in twin_indexes {
                let bad = |detail: String| {
                    at(MakeError::BadIndex {
                        url: url.clone(),
                        detail,
                    })
                };
                let file = fs_err::File::open(&path).map_err(|e| bad(e.to_string()))?;
                twin_index
                    .add_repository_from(&url, BufReader::new(file), number, locked.priority)
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
        keyrings.push(want.keyrings.first().cloned().unwrap_or_default());
        repositories.push(locked);
    }

    let packages = resolve_packages(&index, &repositories, manifest, &elements.packages, arch)?;
    let native_twins = twin_index
        .as_ref()
        .map(|twin_index| resolve_native_twins(twin_index, &repositories, &packages))
        .unwrap_or_default();

    let source_date_epoch = manifest
        .source_date_epoch
        .as_ref()
        .map_or(newest_date, |s| s.value);
    let lock = Lock {
        version: LOCK_FORMAT_VERSION,
        kiln: env!("CARGO_PKG_VERSION").to_string(),
        manifest: manifest_sha256.to_string(),
        base: LockedBase {
            distro: distro.as_str().to_string(),
            release: release_name,
            arch: arch.to_string(),
            image: None,
        },
        repositories,
        source_date_epoch,
        packages,
        native_twins,
        elements: elements.locked.clone(),
    };
    Ok(Made { lock, keyrings })
}

/// The packages of `manifest` and of its elements' `element_packages`,
/// with the minimal base, resolved in `index` (read from `repositories`,
/// in order), sorted as the lock lists them.
fn resolve_packages(
    index: &PackageIndex,
    repositories: &[LockedRepository],
    manifest: &Manifest,
    element_packages: &[String],
    arch: &str,
) -> Result<Vec<LockedPackage>, MakeError> {
    let mut seeds = resolve::minbase_seeds(index);
    seeds.extend(manifest.packages.iter().map(|p| {
        let seed = SeedRequest::new(p.value.name());
        match p.value.suite() {
            Some(suite) => seed.from_repositories(
                repositories
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.suite == suite)
                    .map(|(n, _)| n)
                    .collect(),
            ),
            None => seed,
        }
    }));
    seeds.extend(element_packages.iter().map(SeedRequest::new));
    let resolution =
        resolve::resolve(index, &seeds, arch).map_err(|e| MakeError::Resolve(Box::new(e)))?;
    Ok(locked_packages(&resolution, repositories))
}

/// A resolution as the lock lists it: sorted, each package pinned to its
/// `.deb` in its repository.
fn locked_packages(
    resolution: &resolve::Resolution<'_>,
    repositories: &[LockedRepository],
) -> Vec<LockedPackage> {
    let mut packages: Vec<LockedPackage> = resolution
        .packages()
        .iter()
        .map(|resolved| {
            let p = resolved.package;
            LockedPackage {
                name: p.name.clone(),
                version: p.version.to_string(),
                arch: p.architecture.to_string(),
                priority: p.priority.map(|priority| priority.to_string()),
                size: p.size,
                sha256: p.sha256.to_string(),
                repository: repositories
                    .get(p.repository)
                    .map(LockedRepository::id)
                    .unwrap_or_default(),
                filename: p.filename.to_string(),
            }
        })
        .collect();
    packages.sort();
    packages
}

/// The packages whose programs a build may run as native twins: each
/// does the same on any architecture (no `uname -m` of its own, no
/// architecture-specific output), and build scripts start them thousands
/// of times (mkinitramfs, maintainer scripts, grub-mkconfig). Which of
/// their programs stay emulated (`uname`; dpkg but for `dpkg-deb` and
/// `dpkg-split`) is the chroot's business ([`crate::chroot::twins`]).
/// perl-base's `perl` runs natively only for `deb-systemd-helper` and
/// `update-rc.d`; with these, each `python3.N-minimal`
/// ([`is_native_twin_package`]), whose interpreter runs natively only to
/// byte-compile.
pub const NATIVE_TWIN_PACKAGES: &[&str] = &[
    "coreutils",
    "cpio",
    "dash",
    "debianutils",
    "diffutils",
    "dpkg",
    "findutils",
    "grep",
    "gzip",
    "kmod",
    "mawk",
    "perl-base",
    "sed",
    "tar",
    "xz-utils",
    "zstd",
];

/// Whether the image's package `name` gets a native twin: one of
/// [`NATIVE_TWIN_PACKAGES`], or a Python interpreter (`python3.11-minimal`),
/// whose twin runs only the byte-compiling Debian's packages do when they
/// are configured ([`crate::chroot::twins::argument_rules`]).
pub fn is_native_twin_package(name: &str) -> bool {
    NATIVE_TWIN_PACKAGES.contains(&name) || python_minor(name, "-minimal").is_some()
}

/// The `N` of a package or program named `python3.N<suffix>`.
pub fn python_minor(name: &str, suffix: &str) -> Option<u32> {
    name.strip_prefix("python3.")?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// The architecture of the native twins an image of `arch` is locked
/// with: amd64 for any other architecture (kiln emulates only on amd64
/// hosts), none for amd64.
fn native_twin_arch(arch: &str) -> Option<&'static str> {
    (arch != "amd64").then_some("amd64")
}

/// The native twins of `packages`: each of [`NATIVE_TWIN_PACKAGES`] the
/// image has, at the image's version exactly, resolved with its
/// dependencies in `index` (the twin architecture's indexes of the same
/// repositories). A package whose version the twin architecture lacks (a
/// binary-only upload for one architecture) has no twin. Twins only save
/// time, so a twin set that cannot be resolved is said and left empty.
fn resolve_native_twins(
    index: &PackageIndex,
    repositories: &[LockedRepository],
    packages: &[LockedPackage],
) -> Vec<LockedPackage> {
    let seeds: Vec<SeedRequest> = packages
        .iter()
        .filter(|p| is_native_twin_package(&p.name) && p.arch != "all")
        .filter_map(|p| {
            let version = crate::apt::version::Version::parse(&p.version).ok()?;
            index
                .versions(&p.name)
                .any(|candidate| candidate.version == version)
                .then(|| {
                    SeedRequest::with_version(
                        p.name.clone(),
                        crate::apt::deb822::VersionConstraint {
                            relation: crate::apt::version::Relation::Equal,
                            version,
                        },
                    )
                })
        })
        .collect();
    if seeds.is_empty() {
        return Vec::new();
    }
    match resolve::resolve(index, &seeds, index.architecture()) {
        Ok(resolution) => locked_packages(&resolution, repositories),
        Err(error) => {
            crate::terminal::status(&format!(
                "no native twins for the build (its programs will all be emulated): {error}"
            ));
            Vec::new()
        }
    }
}

/// What `lock`'s own pinned indexes resolve `manifest` (with its elements'
/// `element_packages`) to, read from `cache` only: the packages `kiln lock`
/// would have written from the same archive state. `None` when the lock
/// is not one of a Debian-family archive, or when an index it pins is not
/// in the cache (a cache that only `kiln fetch` filled holds no indexes).
pub fn resolve_pinned(
    lock: &Lock,
    manifest: &Manifest,
    element_packages: &[String],
    cache: &Cache,
) -> Result<Option<Vec<LockedPackage>>, MakeError> {
    if lock.base.image.is_some() || lock.repositories.is_empty() {
        return Ok(None);
    }
    let mut index = PackageIndex::new(&lock.base.arch);
    for (number, repository) in lock.repositories.iter().enumerate() {
        let arch_dir = format!("/binary-{}/", lock.base.arch);
        for file in repository
            .indexes
            .iter()
            .filter(|f| f.path.contains(&arch_dir))
        {
            let Ok(digest) = Digest::new(&file.sha256, file.size) else {
                return Ok(None);
            };
            let Ok(Lookup::Present(blob)) = cache.get(&digest) else {
                return Ok(None);
            };
            let origin = format!("{} {}", repository.id(), file.path);
            let bad = |detail: String| MakeError::BadIndex {
                url: origin.clone(),
                detail,
            };
            let text = fs_err::File::open(&blob).map_err(|e| bad(e.to_string()))?;
            index
                .add_repository_from(&origin, BufReader::new(text), number, repository.priority)
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    resolve_packages(
        &index,
        &lock.repositories,
        manifest,
        element_packages,
        &lock.base.arch,
    )
    .map(Some)
}

/// The repositories the manifest asks for, in the order they are read:
/// the release, its other suites as listed, then `repositories`.
fn wanted_repositories(
    manifest: &Manifest,
    release: &str,
    manifest_dir: &Path,
    apt_dir: &Path,
) -> Result<Vec<Wanted>, MakeError> {
    let base = &manifest.base;
    let distro = base.distro.value;
    let entries =
        if base.mirror.is_none() || base.keyring.is_none() || base.security_mirror.is_none() {
            sources::read_entries(&sources::source_files(apt_dir))
        } else {
            Vec::new()
        };
    // A Debian host's fallback archive serves Debian releases only: an
    // Ubuntu base must find its own release named in the sources.
    let host_entry = match distro {
        Distro::Ubuntu => entries
            .iter()
            .find(|e| e.suites.iter().any(|s| s == release)),
        _ => sources::mirror_for(&entries, release),
    };
    let mirror = match (&base.mirror, host_entry) {
        (Some(mirror), _) => mirror.as_str().trim_end_matches('/').to_string(),
        (None, Some(entry)) => entry.uri.clone(),
        (None, None) => {
            return Err(MakeError::NoMirror {
                release: release.to_string(),
            });
        }
    };
    let keyring = match (&base.keyring, host_entry) {
        (Some(keyring), _) => manifest_dir.join(keyring.value.as_str()),
        (None, Some(entry)) if base.mirror.is_none() && entry.signed_by.is_some() => {
            entry.signed_by.clone().unwrap_or_default()
        }
        _ => default_keyring(distro),
    };
    let components: Vec<String> = match &base.components {
        Some(components) => components.iter().map(|c| c.as_str().to_string()).collect(),
        None if distro == Distro::Ubuntu => vec!["main".into(), "universe".into()],
        None => vec!["main".into()],
    };
    let kinds: Vec<SuiteKind> = match &base.suites {
        Some(suites) => suites.iter().map(|s| s.value).collect(),
        None if DEVELOPMENT_RELEASES.contains(&release) => Vec::new(),
        None => SuiteKind::DEFAULT.to_vec(),
    };
    let base_repository = |entry, suite: String, url: String| Wanted {
        entry,
        name: distro.as_str().to_string(),
        suite,
        url,
        components: components.clone(),
        keyrings: vec![keyring.clone()],
        fingerprint: None,
        priority: None,
    };
    let mut wanted = vec![base_repository(
        Entry::Base(None),
        release.to_string(),
        mirror.clone(),
    )];
    let mut seen = Vec::new();
    for kind in kinds {
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let suite = kind.suite(release);
        let url = match kind {
            SuiteKind::Security => security_mirror(manifest, &mirror, &entries, &suite),
            _ => mirror.clone(),
        };
        wanted.push(base_repository(Entry::Base(Some(kind)), suite, url));
    }
    for (position, repository) in manifest.repositories.iter().enumerate() {
        let keyrings = match &repository.key {
            Some(key) => vec![manifest_dir.join(key.value.as_str())],
            None => host_keyrings(apt_dir),
        };
        let suites: Vec<String> = if repository.suites.is_empty() {
            vec![release.to_string()]
        } else {
            repository
                .suites
                .iter()
                .map(|s| s.as_str().to_string())
                .collect()
        };
        let components: Vec<String> = if repository.components.is_empty() {
            vec!["main".to_string()]
        } else {
            repository
                .components
                .iter()
                .map(|c| c.as_str().to_string())
                .collect()
        };
        for suite in suites {
            wanted.push(Wanted {
                entry: Entry::Repository(position),
                name: repository.name.as_str().to_string(),
                suite,
                url: repository.url.as_str().trim_end_matches('/').to_string(),
                components: components.clone(),
                keyrings: keyrings.clone(),
                fingerprint: repository
                    .fingerprint
                    .as_ref()
                    .map(|f| f.value.normalised()),
                priority: repository.priority.as_ref().map(|p| p.value),
            });
        }
    }
    Ok(wanted)
}

/// Releases that have no updates, security or backports suites.
const DEVELOPMENT_RELEASES: [&str; 4] = ["sid", "unstable", "experimental", "rc-buggy"];

/// Where `suite` (`<release>-security`) is published: the manifest's
/// `security_mirror`; else, with no `mirror` in the manifest, the host's
/// apt sources (the entry naming that suite, or any security suite);
/// else Debian's layout (`…/debian` → `…/debian-security`), or the mirror
/// itself (Ubuntu's layout, and any mirror that merges them).
fn security_mirror(
    manifest: &Manifest,
    mirror: &str,
    entries: &[sources::SourceEntry],
    suite: &str,
) -> String {
    let base = &manifest.base;
    if let Some(url) = &base.security_mirror {
        return url.as_str().trim_end_matches('/').to_string();
    }
    if base.mirror.is_none() {
        let host = entries
            .iter()
            .find(|e| e.suites.iter().any(|s| s == suite))
            .or_else(|| {
                entries
                    .iter()
                    .find(|e| e.suites.iter().any(|s| s.ends_with("-security")))
            });
        if let Some(entry) = host {
            return entry.uri.clone();
        }
    }
    match (base.distro.value, mirror.strip_suffix("/debian")) {
        (Distro::Debian, Some(root)) => format!("{root}/debian-security"),
        _ => mirror.to_string(),
    }
}

/// The keyrings apt trusts on the host without a `Signed-By`: where a
/// `fingerprint` alone looks for its key.
fn host_keyrings(apt_dir: &Path) -> Vec<PathBuf> {
    let mut keyrings = Vec::new();
    for dir in [
        apt_dir.join("trusted.gpg.d"),
        apt_dir.join("keyrings"),
        PathBuf::from("/usr/share/keyrings"),
    ] {
        keyrings.extend(
            sources::files_with_extensions(&dir, &["gpg", "asc"])
                .into_iter()
                .filter(|path| crate::apt::release::read_key(path).is_ok()),
        );
    }
    let trusted = apt_dir.join("trusted.gpg");
    if trusted.is_file() {
        keyrings.push(trusted);
    }
    keyrings
}

/// One repository as read: its lock entry, its release and `(url, path)`
/// of each uncompressed, verified index in the cache, the native twins'
/// architecture's apart.
struct ReadRepository {
    locked: LockedRepository,
    release: Release,
    indexes: Vec<(String, PathBuf)>,
    twin_indexes: Vec<(String, PathBuf)>,
}

/// Debian's and Ubuntu's release names (code names and Debian's aliases),
/// for a "did you mean" when the mirror has no release of the name given.
/// (A mirror need not list its `dists/` directory, so the names are
/// known here and the closest is asked of the mirror.)
const RELEASE_NAMES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "experimental",
    "focal",
    "jammy",
    "noble",
    "oracular",
    "plucky",
    "questing",
];

/// The release name closest to `release` that the mirror at `url` has
/// (its `dists/<name>/InRelease` is there), if one is close.
fn release_on_the_mirror(url: &str, release: &str, http: &Http) -> Option<String> {
    let closest = crate::manifest::did_you_mean(release, RELEASE_NAMES)?;
    http.get_small(
        &format!("{url}/dists/{closest}/InRelease"),
        MAX_IN_RELEASE_BYTES,
    )
    .ok()
    .map(|_| closest.to_string())
}

/// Reads one repository: its `InRelease` (verified), and the `Packages`
/// index of each component (from the cache when the hash matches), for
/// `arch` and, when the repository has it, for `twin_arch`.
fn read_repository(
    want: &Wanted,
    arch: &str,
    twin_arch: Option<&str>,
    http: &Http,
    cache: &Cache,
) -> Result<ReadRepository, MakeError> {
    let dists = format!("{}/dists/{}", want.url, want.suite);
    let in_release_url = format!("{dists}/InRelease");
    let in_release = http
        .get_small(&in_release_url, MAX_IN_RELEASE_BYTES)
        .map_err(|e| match e {
            HttpError::NotFound { url } => MakeError::NoRelease {
                release: want.suite.clone(),
                url,
                suggestion: match want.entry {
                    Entry::Base(None) => release_on_the_mirror(&want.url, &want.suite, http),
                    _ => None,
                },
            },
            other => MakeError::Http(other),
        })?;
    if want.keyrings.is_empty() {
        return Err(MakeError::Release(ReleaseError::MissingKeyring {
            keyring: "the host's apt keyrings (none found)".to_string(),
        }));
    }
    let keyrings: Vec<&Path> = want.keyrings.iter().map(PathBuf::as_path).collect();
    let verified = release::verify(
        &in_release,
        &keyrings,
        want.fingerprint.as_deref(),
        &in_release_url,
    )?;
    let release = release::parse(&verified.text, &in_release_url)?;
    check_release(&release, &in_release_url, arch, &want.components)?;
    let mut indexes = Vec::new();
    let mut paths = Vec::new();
    for component in &want.components {
        let (path, file) = load_index(&release, &dists, component, arch, http, cache)?;
        paths.push((format!("{dists}/{}", file.path), path));
        indexes.push(file);
    }
    let mut twin_paths = Vec::new();
    if let Some(twin_arch) = twin_arch.filter(|a| release.architectures.iter().any(|r| r == a)) {
        for component in &want.components {
            let (path, file) = load_index(&release, &dists, component, twin_arch, http, cache)?;
            twin_paths.push((format!("{dists}/{}", file.path), path));
            indexes.push(file);
        }
    }
    let locked = LockedRepository {
        name: want.name.clone(),
        suite: want.suite.clone(),
        url: want.url.clone(),
        components: want.components.clone(),
        priority: want.priority.unwrap_or_else(|| release.default_pin()),
        signed_by: verified.fingerprint,
        in_release: LockedInRelease {
            sha256: Digest::of_bytes(&in_release).sha256,
            date: release.date.clone(),
        },
        indexes,
    };
    Ok(ReadRepository {
        locked,
        release,
        indexes: paths,
        twin_indexes: twin_paths,
    })
}

/// The archive keyring Debian's and Ubuntu's keyring packages install.
fn default_keyring(distro: Distro) -> PathBuf {
    PathBuf::from(match distro {
        Distro::Ubuntu => "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        _ => "/usr/share/keyrings/debian-archive-keyring.gpg",
    })
}

fn check_release(
    release: &Release,
    url: &str,
    arch: &str,
    components: &[String],
) -> Result<(), MakeError> {
    if !release.architectures.iter().any(|a| a == arch) {
        return Err(MakeError::NotInRelease {
            url: url.to_string(),
            wanted: arch.to_string(),
            available: release.architectures.clone(),
        });
    }
    for component in components {
        // Debian's security archive lists `updates/main` for the `main`
        // that sources name (and publishes its indexes under `main/`).
        let listed = |c: &String| {
            c == component
                || c.strip_suffix(component.as_str())
                    .is_some_and(|prefix| prefix.ends_with('/'))
        };
        if !release.components.iter().any(listed) {
            return Err(MakeError::NotInRelease {
                url: url.to_string(),
                wanted: component.to_string(),
                available: release.components.clone(),
            });
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(valid_until) = release.valid_until_epoch
        && valid_until < now
    {
        return Err(MakeError::Expired {
            url: url.to_string(),
            valid_until,
        });
    }
    Ok(())
}

/// The uncompressed `Packages` index of one component, as a verified blob
/// in the cache: from the cache when present (and still matching the
/// InRelease's hash), else downloaded and decompressed into it.
fn load_index(
    release: &Release,
    dists: &str,
    component: &str,
    arch: &str,
    http: &Http,
    cache: &Cache,
) -> Result<(PathBuf, LockedFile), MakeError> {
    let path = format!("{component}/binary-{arch}/Packages");
    let plain = release
        .files
        .get(&path)
        .cloned()
        .ok_or_else(|| MakeError::UnlistedIndex {
            url: format!("{dists}/InRelease"),
            path: path.clone(),
        })?;
    let locked = LockedFile {
        path: path.clone(),
        sha256: plain.sha256.clone(),
        size: plain.size,
    };
    let cache_error = |e: &dyn std::fmt::Display| MakeError::Cache(e.to_string());
    if let Lookup::Present(blob) = cache.get(&plain).map_err(|e| cache_error(&e))? {
        return Ok((blob, locked));
    }

    let compressed = [("xz", Compression::Xz), ("gz", Compression::Gzip)]
        .into_iter()
        .find_map(|(ext, kind)| {
            let compressed_path = format!("{path}.{ext}");
            release
                .files
                .get(&compressed_path)
                .map(|d| (compressed_path, d.clone(), kind))
        });
    let Some((compressed_path, compressed_digest, kind)) = compressed else {
        return Err(MakeError::UnlistedIndex {
            url: format!("{dists}/InRelease"),
            path: format!("{path}.xz"),
        });
    };
    // By hash, the URL names exactly the file the InRelease vouches for,
    // even while the mirror is being updated underneath.
    let url = if release.acquire_by_hash {
        format!(
            "{dists}/{component}/binary-{arch}/by-hash/SHA256/{}",
            compressed_digest.sha256
        )
    } else {
        format!("{dists}/{compressed_path}")
    };

    let plain_url = format!("{dists}/{compressed_path}");
    if let Some(downloads) = http.downloads() {
        downloads.expect(1, compressed_digest.size);
    }
    let blob = match http.download(&url, &compressed_digest, cache) {
        // Partial mirrors (aptly, apt-mirror) often lack `by-hash/`; the
        // file by name is checked against the same hash, so trust is the
        // same. Say so rather than switch quietly.
        Err(HttpError::NotFound { .. }) if url != plain_url => {
            crate::terminal::status(&format!(
                "{url} does not exist; fetching {plain_url} instead (checked against the same hash)"
            ));
            http.download(&plain_url, &compressed_digest, cache)?
        }
        other => other?,
    };
    if let Some(downloads) = http.downloads() {
        downloads.file_done();
    }
    let file = std::fs::File::open(&blob).map_err(|e| cache_error(&e))?;
    let mut reader: Box<dyn Read> = match kind {
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(std::io::BufReader::new(file))),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file))),
    };
    let mut writer = cache.writer().map_err(|e| cache_error(&e))?;
    // Never inflate beyond what the InRelease says the index is.
    let copied =
        std::io::copy(&mut (&mut reader).take(plain.size + 1), &mut writer).map_err(|e| {
            MakeError::BadIndex {
                url: url.clone(),
                detail: format!("cannot decompress it: {e}"),
            }
        })?;
    let blob = writer.commit(&plain).map_err(|e| match e {
        CommitError::Mismatch { expected, actual } => MakeError::BadIndex {
            url: url.clone(),
            detail: format!(
                "decompressed it is {} bytes with SHA-256 {}, but the InRelease says {} bytes with SHA-256 {} ({copied} bytes read)",
                actual.size, actual.sha256, expected.size, expected.sha256
            ),
        },
        CommitError::Cache(e) => cache_error(&e),
    })?;
    Ok((blob, locked))
}

#[derive(Clone, Copy)]
enum Compression {
    Xz,
    Gzip,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_origins_do_not_name_the_machine() {
        let temp = tempfile::tempdir().unwrap();
        let builtin = temp.path().join("cache/builtin-elements/0123456789abcdef");
        let checkout = temp.path().join("checkout");
        let outside = temp.path().join("elsewhere/elements/site");
        for dir in [
            builtin.join("vm"),
            checkout.join("elements/mine"),
            outside.clone(),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        assert_eq!(origin(&builtin.join("vm"), &builtin, &checkout), "builtin");
        assert_eq!(
            origin(&checkout.join("elements/mine"), &builtin, &checkout),
            "elements/mine"
        );
        // Through a relative or symlinked path, the same answer.
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(&checkout, &link).unwrap();
        assert_eq!(
            origin(&link.join("elements/mine"), &builtin, &checkout),
            "elements/mine"
        );
        assert_eq!(
            origin(&outside, &builtin, &checkout),
            std::fs::canonicalize(&outside)
                .unwrap()
                .display()
                .to_string()
        );
    }
}

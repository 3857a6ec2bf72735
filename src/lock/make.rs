//! Making a lock: from a checked manifest to every package pinned.
//!
//! The steps, each verified before the next trusts it:
//! 1. the mirror (the manifest's, or the host's apt sources') and keyring;
//! 2. `dists/<release>/InRelease`, its signature checked with gpgv;
//! 3. each `Packages` index, fetched compressed (by hash when the archive
//!    allows), decompressed, and checked against the size and SHA-256 the
//!    InRelease gives for the uncompressed file, then kept in the cache;
//! 4. the resolution of minbase plus the manifest's packages.
//!
//! The result is a [`Lock`]; writing it is the caller's business.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::apt::index::PackageIndex;
use crate::apt::release::{self, Release, ReleaseError};
use crate::apt::resolve::{self, ResolveError, SeedRequest};
use crate::apt::sources;
use crate::cache::{Cache, CommitError, Digest, Lookup};
use crate::host::http::{Http, HttpError};
use crate::manifest::{Checked, Distro};

use super::{LOCK_FORMAT_VERSION, Lock, LockedBase, LockedFile, LockedInRelease, LockedPackage};

/// An `InRelease` is about 150 KiB; anything above this is not one.
const MAX_IN_RELEASE_BYTES: u64 = 16 << 20;

/// The archive components kiln reads. Debian's essential set lives in
/// `main`; more components arrive with a manifest field for them.
const COMPONENTS: [&str; 1] = ["main"];

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
    #[error("the mirror has no release `{release}`: {url} does not exist")]
    NoRelease {
        /// The release asked for.
        release: String,
        /// The InRelease URL tried.
        url: String,
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
    /// Where the keyring that verified the InRelease is.
    pub keyring: PathBuf,
}

/// Makes the lock for `checked`, whose file's SHA-256 is `manifest_sha256`
/// (as `sha256:…`). `apt_dir` is where the host's apt sources are read
/// when the manifest names no mirror.
pub fn make(
    checked: &Checked,
    manifest_sha256: &str,
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
    let arch = match base.arch.value {
        crate::manifest::Arch::Amd64 => "amd64",
        crate::manifest::Arch::Arm64 => "arm64",
    };

    let host_entry = if base.mirror.is_none() || base.keyring.is_none() {
        let entries = sources::read_entries(&sources::source_files(apt_dir));
        // A Debian host's fallback archive serves Debian releases only: an
        // Ubuntu base must find its own release named in the sources.
        match distro {
            Distro::Ubuntu => entries
                .iter()
                .find(|e| e.suites.contains(&release_name))
                .cloned(),
            _ => sources::mirror_for(&entries, &release_name).cloned(),
        }
    } else {
        None
    };
    let mirror = match (&base.mirror, &host_entry) {
        (Some(mirror), _) => mirror.as_str().trim_end_matches('/').to_string(),
        (None, Some(entry)) => entry.uri.clone(),
        (None, None) => {
            return Err(MakeError::NoMirror {
                release: release_name,
            });
        }
    };
    let keyring = match (&base.keyring, &host_entry) {
        (Some(keyring), _) => PathBuf::from(keyring.value.as_str()),
        (None, Some(entry)) if base.mirror.is_none() && entry.signed_by.is_some() => {
            entry.signed_by.clone().unwrap_or_default()
        }
        _ => default_keyring(distro),
    };

    let dists = format!("{mirror}/dists/{release_name}");
    let in_release_url = format!("{dists}/InRelease");
    let in_release = http
        .get_small(&in_release_url, MAX_IN_RELEASE_BYTES)
        .map_err(|e| match e {
            HttpError::NotFound { url } => MakeError::NoRelease {
                release: release_name.clone(),
                url,
            },
            other => MakeError::Http(other),
        })?;
    let signed = release::verify(&in_release, &keyring, &in_release_url)?;
    let release = release::parse(&signed, &in_release_url)?;
    check_release(&release, &in_release_url, arch)?;

    let mut index = PackageIndex::new(arch);
    let mut indexes = Vec::new();
    for component in COMPONENTS {
        let (text, file) = load_index(&release, &dists, component, arch, http, cache)?;
        index
            .add_packages(&format!("{dists}/{}", file.path), &text)
            .map_err(|e| MakeError::BadIndex {
                url: format!("{dists}/{}", file.path),
                detail: e.to_string(),
            })?;
        indexes.push(file);
    }

    let mut seeds = resolve::minbase_seeds(&index);
    seeds.extend(
        manifest
            .packages
            .iter()
            .map(|p| SeedRequest::new(p.as_str().split(':').next().unwrap_or_default())),
    );
    seeds.extend(elements.packages.iter().map(SeedRequest::new));
    let resolution =
        resolve::resolve(&index, &seeds, arch).map_err(|e| MakeError::Resolve(Box::new(e)))?;
    let mut packages: Vec<LockedPackage> = resolution
        .packages()
        .iter()
        .map(|resolved| {
            let p = resolved.package;
            LockedPackage {
                name: p.name.clone(),
                version: p.version.to_string(),
                arch: p.architecture.clone(),
                priority: p.priority.map(|priority| priority.to_string()),
                size: p.size,
                sha256: p.sha256.clone(),
                filename: p.filename.clone(),
            }
        })
        .collect();
    packages.sort();

    let source_date_epoch = manifest
        .source_date_epoch
        .as_ref()
        .map_or(release.date_epoch, |s| s.value);
    let lock = Lock {
        version: LOCK_FORMAT_VERSION,
        kiln: env!("CARGO_PKG_VERSION").to_string(),
        manifest: manifest_sha256.to_string(),
        base: LockedBase {
            distro: distro.as_str().to_string(),
            release: release_name,
            arch: arch.to_string(),
            mirror,
            in_release: LockedInRelease {
                sha256: Digest::of_bytes(&in_release).sha256,
                date: release.date.clone(),
            },
            indexes,
        },
        source_date_epoch,
        packages,
        elements: elements.locked.clone(),
    };
    Ok(Made { lock, keyring })
}

/// The archive keyring Debian's and Ubuntu's keyring packages install.
fn default_keyring(distro: Distro) -> PathBuf {
    PathBuf::from(match distro {
        Distro::Ubuntu => "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        _ => "/usr/share/keyrings/debian-archive-keyring.gpg",
    })
}

fn check_release(release: &Release, url: &str, arch: &str) -> Result<(), MakeError> {
    if !release.architectures.iter().any(|a| a == arch) {
        return Err(MakeError::NotInRelease {
            url: url.to_string(),
            wanted: arch.to_string(),
            available: release.architectures.clone(),
        });
    }
    for component in COMPONENTS {
        if !release.components.iter().any(|c| c == component) {
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

/// The uncompressed `Packages` index of one component: from the cache when
/// present (and still matching the InRelease's hash), else downloaded.
fn load_index(
    release: &Release,
    dists: &str,
    component: &str,
    arch: &str,
    http: &Http,
    cache: &Cache,
) -> Result<(String, LockedFile), MakeError> {
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
        return Ok((read_text(&blob, &format!("{dists}/{path}"))?, locked));
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
    Ok((read_text(&blob, &url)?, locked))
}

#[derive(Clone, Copy)]
enum Compression {
    Xz,
    Gzip,
}

fn read_text(path: &Path, url: &str) -> Result<String, MakeError> {
    std::fs::read_to_string(path).map_err(|e| MakeError::BadIndex {
        url: url.to_string(),
        detail: e.to_string(),
    })
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

//! Image bases: a base tree taken out of a published cloud image (or any
//! image given by `url`), pinned by the image's size and SHA-256.
//!
//! - **Locking** ([`ImageBase`]'s [`Family::lock`]): the image is the
//!   file at `base.url` (checked against `base.sha256` when given), or,
//!   for `fedora`, `centos`, `opensuse` and `ubuntu` without `url`, the
//!   release's official cloud image found on the distribution's download
//!   site ([`discover`]), whose checksum file's signature is checked with
//!   the distribution's key. It is downloaded into the cache, recognised
//!   ([`extract::detect`]) and pinned in the lock's `base.image`.
//! - **Bootstrapping**: the root tree is copied out of the cached image
//!   ([`extract::extract`]), and the plan's packages are installed by the
//!   image's own package manager ([`PackageManager`]: apt, dnf or zypper)
//!   from the image's own package sources. Those packages are *not*
//!   pinned by the lock yet: the report records what the tree holds, by
//!   name and version.
//! - **Checking the finished tree** lists the tree's packages for the
//!   report; nothing is compared with the lock (which pins none).

pub mod discover;
pub mod extract;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::bootstrap::{self, InstallError};
use crate::cache::{Digest, Lookup};
use crate::chroot::{self, ChrootError};
use crate::lock::make::{Made, MakeError};
use crate::lock::{LOCK_FORMAT_VERSION, Lock, LockedBase, LockedImage};
use crate::manifest::Distro;
use crate::report::ReportPackage;

use super::{
    BaseError, BootstrapRequest, Bootstrapped, Family, LockRequest, Staged, TreeCheck, Volatile,
};

/// The image family (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ImageBase;

/// Besides what every build removes: the package managers' caches and
/// history, and cloud-init's record of the machines the image ran on.
const IMAGE_VOLATILE: Volatile = Volatile {
    emptied_dirs: &[
        "var/cache/apt",
        "var/lib/apt/lists",
        "var/cache/dnf",
        "var/cache/yum",
        "var/cache/zypp",
        "var/lib/cloud",
    ],
    removed_files: &[
        "var/cache/debconf/config.dat-old",
        "var/cache/debconf/templates.dat-old",
        "var/lib/dpkg/status-old",
        "var/lib/dpkg/diversions-old",
        "var/lib/dpkg/statoverride-old",
    ],
};

/// Why an image base could not be locked or made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The distribution's image could not be found or its checksum file
    /// did not verify.
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
    /// The file is not an image, or its tree cannot be taken out.
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
    /// `distro: rhel` without `url`: Red Hat's images need a subscription.
    #[error(
        "`distro: rhel` has no public download site: give `url:` with the image you downloaded"
    )]
    RhelNeedsUrl,
    /// The lock pins no image (it was made for an archive base).
    #[error("the lock pins no image for the base; run `kiln lock` again")]
    NotPinned,
    /// The pinned image is not in the cache (fetch first).
    #[error("the pinned image {url} is not in the cache; run `kiln fetch`")]
    NotFetched {
        /// Its URL.
        url: String,
    },
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// The image's package manager failed, or the tree has none.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The tree has no package manager kiln knows, and packages are asked for.
    #[error(
        "the image has no apt-get, dnf or zypper, so kiln cannot install {}",
        .packages.join(", ")
    )]
    NoPackageManager {
        /// The packages asked for.
        packages: Vec<String>,
    },
}

impl Family for ImageBase {
    fn name(&self) -> &'static str {
        "image"
    }

    fn lock(&self, request: &LockRequest<'_>) -> Result<Made, MakeError> {
        let image_error = |error: ImageError| MakeError::Image(Box::new(error));
        let manifest = &request.checked.manifest;
        let base = &manifest.base.value;
        let distro = base.distro.value;
        let release = base
            .release
            .as_ref()
            .map(|r| r.value.as_str().to_string())
            .unwrap_or_default();
        let (url, expected, found) = match &base.url {
            Some(url) => (
                url.value.as_str().to_string(),
                base.sha256.as_ref().map(|s| s.value.as_str().to_string()),
                None,
            ),
            None if distro == Distro::Rhel || distro == Distro::Image => {
                return Err(image_error(ImageError::RhelNeedsUrl));
            }
            None => {
                let keyrings: Vec<std::path::PathBuf> = match &base.keyring {
                    Some(keyring) => vec![request.manifest_dir.join(&keyring.value)],
                    None => discover::default_keyrings(distro, &release),
                };
                let mirror = base.mirror.as_ref().map(|m| m.value.as_str().to_string());
                let found = discover::discover(&discover::Request {
                    distro,
                    release: &release,
                    arch: base.arch.value,
                    mirror: mirror.as_deref(),
                    keyrings: &keyrings,
                    http: request.http,
                })
                .map_err(|e| image_error(e.into()))?;
                (found.url.clone(), Some(found.sha256.clone()), Some(found))
            }
        };
        crate::terminal::progress(&format!("lock: downloading {url}"));
        // Its size counts once the server announces it.
        if let Some(downloads) = request.http.downloads() {
            downloads.expect_unsized();
        }
        let (path, digest) =
            request
                .http
                .download_unpinned(&url, expected.as_deref(), request.cache)?;
        if let Some(downloads) = request.http.downloads() {
            downloads.file_done();
        }
        // Named by its URL, not by where the cache keeps it.
        let format = extract::detect(&path).map_err(|error| match error {
            extract::ExtractError::NotAnImage { looks_like, .. } => {
                image_error(ImageError::Extract(extract::ExtractError::NotAnImage {
                    path: url.clone(),
                    looks_like,
                }))
            }
            other => image_error(other.into()),
        })?;
        let source_date_epoch = manifest
            .source_date_epoch
            .as_ref()
            .map_or_else(today_utc, |s| s.value);
        let lock = Lock {
            version: LOCK_FORMAT_VERSION,
            kiln: env!("CARGO_PKG_VERSION").to_string(),
            manifest: request.manifest_sha256.to_string(),
            base: LockedBase {
                distro: distro.as_str().to_string(),
                release,
                arch: base.arch.value.as_str().to_string(),
                image: Some(LockedImage {
                    url,
                    size: digest.size,
                    sha256: digest.sha256,
                    format: format.as_str().to_string(),
                    checksums: found.as_ref().map(|f| f.checksums.clone()),
                    signed_by: found
                        .as_ref()
                        .filter(|f| f.trust == discover::Trust::Signed)
                        .map(|f| f.signed_by.clone()),
                    version: found.map(|f| f.version),
                }),
            },
            repositories: Vec::new(),
            source_date_epoch,
            packages: Vec::new(),
            native_twins: Vec::new(),
            elements: request.elements.locked.clone(),
        };
        Ok(Made {
            lock,
            keyrings: Vec::new(),
        })
    }

    fn bootstrap(
        &self,
        request: &BootstrapRequest<'_>,
        log: &mut dyn Write,
    ) -> Result<Bootstrapped, BaseError> {
        let image = request
            .lock
            .base
            .image
            .as_ref()
            .ok_or_else(|| base_error(ImageError::NotPinned))?;
        let path = cached_image(request.cache, image).map_err(base_error)?;
        // The lock pins the imagefile, so its `arch` is the lock's.
        let arch = request.manifest.base.value.arch.value;
        let extracted = extract::extract(&path, request.root, request.work, arch, log)
            .map_err(|e| base_error(e.into()))?;
        let _ = writeln!(
            log,
            "kiln: took the root tree out of {} ({:?}): {}",
            image.url, extracted.format, extracted.root_filesystem
        );
        let mut timings: Vec<(&'static str, std::time::Duration)> = extracted
            .timings
            .into_iter()
            .map(|(step, took)| (extract_stage(step), took))
            .collect();
        let step = Instant::now();
        install_packages(request.lock, request.root, request.packages, log)?;
        timings.push(("install the packages", step.elapsed()));
        Ok(Bootstrapped {
            timings,
            staged: Box::new(NothingStaged),
        })
    }

    fn phase_environment(&self, _lock: &Lock) -> Vec<(String, String)> {
        vec![("KILN_BASE_FROM".to_string(), "image".to_string())]
    }

    fn check_finished_tree(&self, lock: &Lock, root: &Path) -> Result<TreeCheck, BaseError> {
        let installed = installed(lock, root).map_err(base_error)?;
        Ok(TreeCheck {
            removed: Vec::new(),
            installed: Some(installed),
        })
    }

    fn volatile(&self) -> &'static Volatile {
        &IMAGE_VOLATILE
    }
}

/// Nothing is staged: the image's package manager reads the image's own
/// sources.
#[derive(Debug)]
struct NothingStaged;

impl Staged for NothingStaged {
    fn remove(self: Box<Self>) -> Result<(), BaseError> {
        Ok(())
    }
}

fn base_error(error: ImageError) -> BaseError {
    let signal = match &error {
        ImageError::Install(InstallError::Chroot(ChrootError::Interrupted { signal })) => {
            Some(*signal)
        }
        _ => None,
    };
    BaseError::new(error, signal)
}

/// The pinned image's path in the cache, verified.
fn cached_image(
    cache: &crate::cache::Cache,
    image: &LockedImage,
) -> Result<std::path::PathBuf, ImageError> {
    let digest = Digest::new(&image.sha256, image.size).map_err(|_| ImageError::NotPinned)?;
    match cache.get(&digest)? {
        Lookup::Present(path) => Ok(path),
        _ => Err(ImageError::NotFetched {
            url: image.url.clone(),
        }),
    }
}

/// The package manager of a tree taken out of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    /// Debian's and Ubuntu's apt (dpkg underneath).
    Apt,
    /// Fedora's, CentOS Stream's and RHEL's dnf (rpm underneath).
    Dnf,
    /// openSUSE's zypper (rpm underneath).
    Zypper,
}

impl PackageManager {
    /// The package manager `root` has, by its program.
    pub fn of_tree(root: &Path) -> Option<PackageManager> {
        let has = |path: &str| std::fs::symlink_metadata(root.join(path)).is_ok();
        if has("usr/bin/apt-get") {
            Some(PackageManager::Apt)
        } else if has("usr/bin/dnf") {
            // Fedora's and CentOS's `dnf` is a link to `dnf-3` or `dnf5`.
            Some(PackageManager::Dnf)
        } else if has("usr/bin/zypper") {
            Some(PackageManager::Zypper)
        } else {
            None
        }
    }

    /// The commands that install `packages` from the tree's own sources,
    /// without recommended packages, answering no questions.
    pub fn install_commands(self, packages: &[String]) -> Vec<Vec<String>> {
        let command = |words: &[&str]| -> Vec<String> {
            words
                .iter()
                .map(|w| w.to_string())
                .chain(packages.iter().cloned())
                .collect()
        };
        match self {
            PackageManager::Apt => vec![
                vec!["apt-get".to_string(), "update".to_string()],
                command(&["apt-get", "install", "--yes", "--no-install-recommends"]),
            ],
            PackageManager::Dnf => vec![command(&[
                "dnf",
                "install",
                "--assumeyes",
                "--setopt=install_weak_deps=False",
            ])],
            PackageManager::Zypper => vec![command(&[
                "zypper",
                "--non-interactive",
                "install",
                "--no-recommends",
            ])],
        }
    }
}

/// Installs `packages` with the tree's own package manager, in the chroot
/// with the host's resolver and no services started.
fn install_packages(
    lock: &Lock,
    root: &Path,
    packages: &[String],
    log: &mut dyn Write,
) -> Result<(), BaseError> {
    if packages.is_empty() {
        return Ok(());
    }
    let manager = PackageManager::of_tree(root).ok_or_else(|| {
        base_error(ImageError::NoPackageManager {
            packages: packages.to_vec(),
        })
    })?;
    let env = bootstrap::install::chroot_env(lock);
    let install_error = |e: ChrootError| base_error(ImageError::Install(e.into()));
    let mounts = chroot::mount_dib_filesystems(root).map_err(install_error)?;
    let setup = chroot::prepare_tree(root).map_err(install_error)?;
    for argv in manager.install_commands(packages) {
        let _ = writeln!(log, "kiln: running {} in the tree", argv.join(" "));
        crate::host::signals::check()
            .map_err(ChrootError::from)
            .map_err(install_error)?;
        chroot::run_in_chroot(root, &argv, &env, log)
            .and_then(|finished| finished.check())
            .map_err(install_error)?;
    }
    setup.finish().map_err(install_error)?;
    mounts.unmount().map_err(install_error)?;
    Ok(())
}

/// Every package the tree's package database holds, sorted by name.
fn installed(lock: &Lock, root: &Path) -> Result<Vec<ReportPackage>, ImageError> {
    let env = bootstrap::install::chroot_env(lock);
    let mut packages: Vec<ReportPackage> = match PackageManager::of_tree(root) {
        None => Vec::new(),
        Some(PackageManager::Apt) => bootstrap::install::installed_packages(root, &env)?
            .into_iter()
            .map(|(name, version)| ReportPackage {
                name,
                version,
                arch: String::new(),
            })
            .collect(),
        Some(PackageManager::Dnf | PackageManager::Zypper) => {
            let mut output = Vec::new();
            let argv: Vec<String> = [
                "rpm",
                "--query",
                "--all",
                "--queryformat",
                "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            chroot::run_in_chroot(root, &argv, &env, &mut output)
                .and_then(|finished| finished.check())
                .map_err(InstallError::from)?;
            String::from_utf8_lossy(&output)
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split('\t');
                    let (name, version, arch) = (fields.next()?, fields.next()?, fields.next()?);
                    Some(ReportPackage {
                        name: name.to_string(),
                        version: version.strip_prefix("0:").unwrap_or(version).to_string(),
                        arch: arch.to_string(),
                    })
                })
                .collect()
        }
    };
    packages.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
    Ok(packages)
}

/// How `--timings` names an extraction step.
fn extract_stage(step: &str) -> &'static str {
    match step {
        "convert" => "extract: convert",
        "probe" => "extract: probe",
        "mount" => "extract: mount",
        "copy" => "extract: copy",
        "graft" => "extract: graft",
        "unpack" => "extract: unpack",
        "check-arch" => "extract: check the architecture",
        _ => "extract",
    }
}

/// Midnight UTC today, in seconds since 1970: the default
/// `source_date_epoch` of an image base (locking the same image again the
/// same day gives the same lock).
fn today_utc() -> u64 {
    const DAY: u64 = 86_400;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now - now % DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_package_manager_installs_without_recommends_and_without_questions() {
        let packages = vec!["tmux".to_string()];
        let apt = PackageManager::Apt.install_commands(&packages);
        assert_eq!(apt[0], ["apt-get", "update"]);
        assert_eq!(
            apt[1],
            [
                "apt-get",
                "install",
                "--yes",
                "--no-install-recommends",
                "tmux"
            ]
        );
        let dnf = PackageManager::Dnf.install_commands(&packages);
        assert_eq!(
            dnf,
            [[
                "dnf",
                "install",
                "--assumeyes",
                "--setopt=install_weak_deps=False",
                "tmux"
            ]]
        );
        let zypper = PackageManager::Zypper.install_commands(&packages);
        assert_eq!(
            zypper,
            [[
                "zypper",
                "--non-interactive",
                "install",
                "--no-recommends",
                "tmux"
            ]]
        );
    }

    #[test]
    fn the_package_manager_is_found_by_its_program_in_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PackageManager::of_tree(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        std::fs::write(dir.path().join("usr/bin/zypper"), "").unwrap();
        assert_eq!(
            PackageManager::of_tree(dir.path()),
            Some(PackageManager::Zypper)
        );
        std::fs::write(dir.path().join("usr/bin/dnf"), "").unwrap();
        assert_eq!(
            PackageManager::of_tree(dir.path()),
            Some(PackageManager::Dnf)
        );
        std::os::unix::fs::symlink("apt-get.real", dir.path().join("usr/bin/apt-get")).unwrap();
        assert_eq!(
            PackageManager::of_tree(dir.path()),
            Some(PackageManager::Apt)
        );
    }
}

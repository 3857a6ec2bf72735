//! The apt family: Debian and Ubuntu, locked by kiln's own apt client
//! ([`crate::apt`], [`crate::lock::make`]) and bootstrapped without
//! debootstrap ([`crate::bootstrap`]): the essential `.deb`s unpacked by
//! kiln, configured by the target's dpkg, the rest installed by the
//! target's apt from a local repository of exactly the locked files.

use std::io::Write;
use std::path::Path;

use crate::bootstrap::{self, InstallError, LocalRepo};
use crate::chroot::ChrootError;
use crate::lock::make::{self, Made, MakeError};
use crate::lock::{Lock, LockedRepository};

use super::{
    BaseError, BootstrapRequest, Bootstrapped, Family, LockRequest, Staged, TreeCheck, Volatile,
};

/// The apt family (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Apt;

/// What dpkg, debconf and apt leave that differs from build to build:
/// the previous copies dpkg and debconf keep, apt's downloaded lists and
/// archives (rebuilt by `apt update`).
const APT_VOLATILE: Volatile = Volatile {
    emptied_dirs: &[
        "var/cache/apt",
        "var/cache/debconf/tmp",
        "var/lib/apt/lists",
    ],
    removed_files: &[
        "var/cache/debconf/config.dat-old",
        "var/cache/debconf/templates.dat-old",
        "var/cache/debconf/passwords.dat-old",
        "var/lib/dpkg/status-old",
        "var/lib/dpkg/diversions-old",
        "var/lib/dpkg/statoverride-old",
    ],
};

impl Family for Apt {
    fn name(&self) -> &'static str {
        "debian"
    }

    fn lock(&self, request: &LockRequest<'_>) -> Result<Made, MakeError> {
        make::make(
            request.checked,
            request.manifest_sha256,
            request.manifest_dir,
            request.elements,
            request.http,
            request.cache,
            request.host_config_dir,
        )
    }

    fn bootstrap(
        &self,
        request: &BootstrapRequest<'_>,
        log: &mut dyn Write,
    ) -> Result<Bootstrapped, BaseError> {
        // The local repository has one suite: `name/suite` was for the lock.
        let packages: Vec<String> = request
            .manifest
            .packages
            .iter()
            .map(|p| p.as_str().split('/').next().unwrap_or_default().to_string())
            .collect();
        let (done, repo) = bootstrap::bootstrap(
            request.lock,
            request.cache,
            request.root,
            request.work,
            &packages,
            log,
        )
        .map_err(base_error)?;
        // Dropping `repo` on failure unmounts it.
        bootstrap::sources::write_extra_sources(
            request.lock,
            request.manifest,
            request.manifest_dir,
            request.root,
        )
        .map_err(|error| BaseError::new(error, None))?;
        Ok(Bootstrapped {
            timings: done.timings,
            staged: Box::new(repo),
        })
    }

    fn takes_snapshots(&self) -> bool {
        true
    }

    fn restage(
        &self,
        request: &BootstrapRequest<'_>,
        log: &mut dyn Write,
    ) -> Result<Box<dyn Staged>, BaseError> {
        let repo = bootstrap::install::restage(
            request.lock,
            request.cache,
            request.root,
            request.work,
            log,
        )
        .map_err(base_error)?;
        Ok(Box::new(repo))
    }

    fn phase_environment(&self, lock: &Lock) -> Vec<(String, String)> {
        apt_environment(lock)
    }

    fn check_finished_tree(&self, lock: &Lock, root: &Path) -> Result<TreeCheck, BaseError> {
        let removed = bootstrap::check_finished_tree(lock, root).map_err(base_error)?;
        Ok(TreeCheck {
            removed,
            installed: None,
        })
    }

    fn volatile(&self) -> &'static Volatile {
        &APT_VOLATILE
    }
}

impl Staged for LocalRepo {
    fn remove(self: Box<Self>) -> Result<(), BaseError> {
        LocalRepo::remove(*self).map_err(base_error)
    }
}

fn base_error(error: InstallError) -> BaseError {
    let signal = match &error {
        InstallError::Chroot(ChrootError::Interrupted { signal }) => Some(*signal),
        _ => None,
    };
    BaseError::new(error, signal)
}

/// What hooks learn of the lock's repositories, to write the image's apt
/// sources as the lock read them (the `debootstrap` element does): the
/// base archive (`DIB_DISTRIBUTION_MIRROR`), its components
/// (`DIB_DEBIAN_COMPONENTS`), the security suite's archive
/// (`DIB_DEBIAN_SECURITY_MIRROR`), and kiln's own `KILN_APT_SUITES` (the
/// suites read from the base archive) and `KILN_APT_SECURITY_SUITE`
/// (empty when the lock has none).
fn apt_environment(lock: &Lock) -> Vec<(String, String)> {
    let base: Vec<&LockedRepository> = lock
        .repositories
        .iter()
        .filter(|r| r.name == lock.base.distro)
        .collect();
    let Some(first) = base.first() else {
        return Vec::new();
    };
    let security = base.iter().find(|r| r.suite.ends_with("-security"));
    let suites: Vec<&str> = base
        .iter()
        .filter(|r| r.url == first.url && !r.suite.ends_with("-security"))
        .map(|r| r.suite.as_str())
        .collect();
    let mut env = vec![
        ("DIB_DISTRIBUTION_MIRROR".to_string(), first.url.clone()),
        (
            "DIB_DEBIAN_COMPONENTS".to_string(),
            first.components.join(","),
        ),
        ("KILN_APT_SUITES".to_string(), suites.join(" ")),
        (
            "KILN_APT_SECURITY_SUITE".to_string(),
            security.map(|r| r.suite.clone()).unwrap_or_default(),
        ),
    ];
    if let Some(security) = security {
        env.push((
            "DIB_DEBIAN_SECURITY_MIRROR".to_string(),
            security.url.clone(),
        ));
    }
    env
}

//! The distribution seam: what the pipeline asks of a base distribution,
//! and the one place that knows which distributions kiln can install.
//!
//! A [`Family`] is one way of making a base tree. The stages around it
//! (plan, phases, normalise, assemble, output) are the same for every
//! base; what differs sits behind the trait:
//!
//! - **locking**: reading the distribution's archives and pinning every
//!   package of the base and of the imagefile ([`Family::lock`]);
//! - **bootstrapping**: turning the lock and the cached package files into
//!   a tree whose own package manager can install more from exactly the
//!   locked files while the phases run ([`Family::bootstrap`]), then taking
//!   that set-up away again ([`Staged::remove`]);
//! - **checking the finished tree** against the lock with the tree's own
//!   package database ([`Family::check_finished_tree`]);
//! - what the **phases** learn of the lock's archives, under DIB's names
//!   ([`Family::phase_environment`]);
//! - the package manager's own **state files** that differ from build to
//!   build, which the normalise stage removes ([`Family::volatile`]).
//!
//! Today the apt family ([`debian::Apt`]: Debian and Ubuntu, `.deb`s
//! resolved by kiln and installed by the target's dpkg and apt) implements
//! it; its internals are the [`crate::apt`] client, the
//! [`crate::bootstrap`] stage and [`crate::lock::make`]. An RPM family
//! (Fedora, CentOS, RHEL, openSUSE) and an image-based base (`distro:
//! image`) are the next implementations; until then [`family`] has none
//! for them and `kiln lock` says so, pointing at `distro`.
//!
//! The lock's format is the apt family's (repositories with their signed
//! `InRelease`, `.deb`s by SHA-256); another family adds its own kind of
//! locked file under a new lock format version.

pub mod debian;
pub mod image;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::cache::Cache;
use crate::host::http::Http;
use crate::lock::Lock;
use crate::lock::make::{Elements, Made, MakeError};
use crate::manifest::{Base, Checked, Distro, Manifest};

/// One way of installing a base distribution: see the module
/// documentation. Implementations are stateless; [`family`] hands out
/// `'static` ones.
pub trait Family: Sync {
    /// The family's name, as `pkg-map` files key their `family` section.
    fn name(&self) -> &'static str;

    /// Pins the base and the imagefile's packages: reads and verifies the
    /// archives, resolves, and returns the lock (not yet written).
    fn lock(&self, request: &LockRequest<'_>) -> Result<Made, MakeError>;

    /// Makes the base tree in `request.root` (an empty directory) from the
    /// lock and the cache, ready for the phases: the locked packages the
    /// base needs are installed, and the tree's package manager can
    /// install the others from exactly the locked files until
    /// [`Bootstrapped::staged`] is removed. Must run inside the build's
    /// mount namespace. Command output goes to `log`.
    fn bootstrap(
        &self,
        request: &BootstrapRequest<'_>,
        log: &mut dyn Write,
    ) -> Result<Bootstrapped, BaseError>;

    /// Whether builds of this family snapshot their tree
    /// ([`crate::snapshot`]): [`Family::restage`] can stage the packages
    /// again in a restored tree.
    fn takes_snapshots(&self) -> bool {
        false
    }

    /// Stages the locked packages again in a tree restored from a
    /// snapshot (taken with the staging removed), as [`Family::bootstrap`]
    /// left them. Called only when [`Family::takes_snapshots`]; a family
    /// that takes none has nothing to stage again.
    fn restage(
        &self,
        _request: &BootstrapRequest<'_>,
        _log: &mut dyn Write,
    ) -> Result<Box<dyn Staged>, BaseError> {
        Err(BaseError::new(
            std::io::Error::other("this base takes no snapshots and cannot be staged again"),
            None,
        ))
    }

    /// What the phases' hooks learn of the lock's archives (DIB's names,
    /// such as `DIB_DISTRIBUTION_MIRROR`), for hooks that write the
    /// image's package sources as the lock read them.
    fn phase_environment(&self, lock: &Lock) -> Vec<(String, String)>;

    /// After the phases, with the staging removed: the tree's package
    /// database must hold exactly the locked packages at their locked
    /// versions, but for those the build removed, whose names are
    /// returned. A family whose lock pins no packages returns what the
    /// tree holds instead, for the report.
    fn check_finished_tree(&self, lock: &Lock, root: &Path) -> Result<TreeCheck, BaseError>;

    /// The package manager's files that differ from build to build of one
    /// lock and that an image does not need, for the normalise stage.
    fn volatile(&self) -> &'static Volatile;
}

/// What a family's package manager leaves behind that the normalise stage
/// removes, relative to the root.
#[derive(Debug)]
pub struct Volatile {
    /// Directories whose contents are removed (the directories stay).
    pub emptied_dirs: &'static [&'static str],
    /// Files removed.
    pub removed_files: &'static [&'static str],
}

/// What [`Family::check_finished_tree`] found.
#[derive(Debug, Clone, Default)]
pub struct TreeCheck {
    /// Locked packages the build removed.
    pub removed: Vec<String>,
    /// Every package the tree holds, when the lock does not pin them
    /// (image bases); `None` when the lock's packages are the tree's.
    pub installed: Option<Vec<crate::report::ReportPackage>>,
}

/// What [`Family::lock`] reads.
#[derive(Debug, Clone, Copy)]
pub struct LockRequest<'a> {
    /// The imagefile.
    pub checked: &'a Checked,
    /// The imagefile's SHA-256, as `sha256:…`.
    pub manifest_sha256: &'a str,
    /// The imagefile's directory: key files are relative to it.
    pub manifest_dir: &'a Path,
    /// The plan's elements and the packages they install.
    pub elements: &'a Elements,
    /// The client for the archives.
    pub http: &'a Http,
    /// Where downloaded indexes are kept.
    pub cache: &'a Cache,
    /// Where the host's package manager configuration is read when the
    /// imagefile names no mirror (`/etc/apt` for the apt family).
    pub host_config_dir: &'a Path,
}

/// What [`Family::bootstrap`] reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapRequest<'a> {
    /// The lock, fetched into `cache`.
    pub lock: &'a Lock,
    /// Where the locked files are.
    pub cache: &'a Cache,
    /// The imagefile, for the package sources the image keeps.
    pub manifest: &'a Manifest,
    /// The imagefile's directory: key files are relative to it.
    pub manifest_dir: &'a Path,
    /// Every package the plan installs (the imagefile's and the
    /// elements', pkg-map applied), by name.
    pub packages: &'a [String],
    /// The tree to make, an empty directory.
    pub root: &'a Path,
    /// A scratch directory beside it, removed with the build.
    pub work: &'a Path,
}

/// A bootstrapped tree's state while the phases run.
#[derive(Debug)]
pub struct Bootstrapped {
    /// How long each step took, for `--timings`, in order.
    pub timings: Vec<(&'static str, Duration)>,
    /// What lets the tree's package manager reach the locked files.
    pub staged: Box<dyn Staged>,
}

/// The set-up that lets the tree's package manager install from exactly
/// the locked files. Dropping it releases what it holds on the host (a
/// mount); [`Staged::remove`] also takes its configuration out of the tree.
pub trait Staged: std::fmt::Debug {
    /// Leaves the tree as if the staging had never been there.
    fn remove(self: Box<Self>) -> Result<(), BaseError>;
}

/// Why a family could not make or check the base tree: the family's own
/// error, and the signal that stopped the build if one did.
/// It reads as the family's error itself (its message, its causes).
#[derive(Debug)]
pub struct BaseError {
    source: Box<dyn std::error::Error + Send + Sync>,
    interrupted_by: Option<nix::sys::signal::Signal>,
}

impl std::fmt::Display for BaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for BaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl BaseError {
    /// A family's error; `interrupted_by` is the signal that caused it.
    pub fn new(
        source: impl std::error::Error + Send + Sync + 'static,
        interrupted_by: Option<nix::sys::signal::Signal>,
    ) -> Self {
        BaseError {
            source: Box::new(source),
            interrupted_by,
        }
    }

    /// The signal that stopped the build, when it was interrupted.
    pub fn interrupted_by(&self) -> Option<nix::sys::signal::Signal> {
        self.interrupted_by
    }
}

/// The family that makes `base`'s tree: kiln's apt installer for Debian
/// and Ubuntu from their archives, else the image family.
pub fn family(base: &Base) -> &'static dyn Family {
    if base.from_image() {
        &image::ImageBase
    } else {
        &debian::Apt
    }
}

/// The family `pkg-map` files key `distro`'s names by, whether or not
/// kiln can install it yet (a plan for any distro maps its packages).
pub fn pkg_map_family(distro: Distro) -> Option<&'static str> {
    match distro {
        Distro::Debian | Distro::Ubuntu => Some(debian::Apt.name()),
        Distro::Fedora | Distro::Centos | Distro::Rhel => Some("redhat"),
        Distro::Opensuse => Some("suse"),
        Distro::Image => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(yaml: &str) -> Base {
        let source =
            crate::manifest::Source::new("imagefile.yaml", format!("name: t\nbase: {yaml}\n"));
        crate::manifest::parse(&source)
            .unwrap_or_else(|e| panic!("{yaml}: {e:?}"))
            .base
            .value
    }

    #[test]
    fn archives_are_installed_by_apt_and_everything_else_comes_from_an_image() {
        for yaml in [
            "{distro: debian, release: bookworm}",
            "{distro: ubuntu, release: noble}",
        ] {
            assert_eq!(family(&base(yaml)).name(), "debian", "{yaml}");
        }
        for yaml in [
            "{distro: fedora, release: '41'}",
            "{distro: centos, release: 9-stream}",
            "{distro: rhel, release: '9', url: 'file:///rhel.qcow2'}",
            "{distro: opensuse, release: '15.6'}",
            "{distro: image, url: 'http://127.0.0.1/x.qcow2'}",
            "{distro: ubuntu, release: noble, from: cloud-image}",
            "{distro: debian, release: bookworm, url: 'file:///debian.qcow2'}",
        ] {
            assert_eq!(family(&base(yaml)).name(), "image", "{yaml}");
        }
    }

    #[test]
    fn every_package_distro_maps_to_a_pkg_map_family() {
        for (distro, family) in [
            (Distro::Debian, Some("debian")),
            (Distro::Ubuntu, Some("debian")),
            (Distro::Fedora, Some("redhat")),
            (Distro::Centos, Some("redhat")),
            (Distro::Rhel, Some("redhat")),
            (Distro::Opensuse, Some("suse")),
            (Distro::Image, None),
        ] {
            assert_eq!(pkg_map_family(distro), family, "{distro:?}");
        }
    }
}

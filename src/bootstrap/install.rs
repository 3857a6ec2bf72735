//! The second stage: from an unpacked essential set to every locked
//! package installed and configured by the target's own dpkg and apt.
//!
//! As mmdebstrap does, the essential `.deb`s are installed in one
//! `dpkg --install --force-depends` inside the chroot (their files are
//! already in place; this runs their maintainer scripts and registers
//! them). The rest are installed with the target's apt from a local
//! repository of exactly the locked files, bind-mounted into the tree, at
//! the exact locked versions. Finally `dpkg-query` inside the tree must
//! list exactly the lock's packages and versions, or the build fails.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::chroot::{self, ChrootError};
use crate::lock::Lock;

use super::essential::essential_set;
use super::extract::{BootstrapError, extract_essential, stage_debs, write_dpkg_skeleton};
use super::paragraphs::{LockedParagraph, ParagraphError, locked_paragraphs};
use super::repo::{RepoError, write_apt_setup, write_local_repo};

/// Where the local repository appears inside the chroot.
pub const REPO_IN_CHROOT: &str = "/var/lib/kiln-bootstrap-repo";

/// Why the second stage failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The first stage failed.
    #[error(transparent)]
    Extract(#[from] BootstrapError),
    /// The essential set could not be worked out.
    #[error(transparent)]
    Essential(#[from] super::essential::EssentialError),
    /// A locked package's paragraph could not be made from its `.deb`.
    #[error(transparent)]
    Paragraph(#[from] ParagraphError),
    /// The local repository could not be written.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A chroot command or mount failed.
    #[error(transparent)]
    Chroot(#[from] ChrootError),
    /// The tree's packages differ from the lock.
    #[error("the installed packages differ from the lock: {}", .differences.join("; "))]
    Mismatch {
        /// Each difference, as `name: locked X, installed Y`.
        differences: Vec<String>,
    },
    /// A file of the build could not be written or removed; fs-err's
    /// message names the operation and the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The locked packages' control paragraphs could not be read as an
    /// index.
    #[error("cannot read the locked packages' control files: {detail}")]
    Paragraphs {
        /// What was wrong with them.
        detail: String,
    },
}

/// The local repository of the lock's packages, mounted in the tree and
/// named by the tree's apt configuration while the phases run. Dropping it
/// unmounts the repository; [`LocalRepo::remove`] also takes the apt
/// configuration and lists out of the tree.
#[derive(Debug)]
pub struct LocalRepo {
    root: PathBuf,
    mount: chroot::Mount,
    mount_point: PathBuf,
    apt: super::repo::AptSetup,
}

impl LocalRepo {
    /// Leaves the tree as if the repository had never been there.
    pub fn remove(self) -> Result<(), InstallError> {
        for path in [&self.apt.config, &self.apt.source_list] {
            remove(&self.root.join(path))?;
        }
        remove_dir(&self.root.join(&self.apt.source_parts))?;
        clear_dir(&self.root.join("var/lib/apt/lists"))?;
        self.mount.unmount()?;
        remove_dir(&self.mount_point)
    }
}

/// How long each step took, for `--timings`.
#[derive(Debug, Default, Clone)]
pub struct Bootstrapped {
    /// (step, duration), in order.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Builds the base root tree for `lock` in `root` (an empty directory),
/// with the `.deb`s from `cache`: the essential set, the rest of
/// debootstrap's minbase set and `packages` (the imagefile's). `work` is a
/// scratch directory beside it for the local repository, which is
/// returned still mounted for the phases. Command output goes to `log`.
/// Must run inside the build's mount namespace
/// ([`chroot::enter_build_namespace`]).
pub fn bootstrap(
    lock: &Lock,
    cache: &Cache,
    root: &Path,
    work: &Path,
    packages: &[String],
    log: &mut dyn Write,
) -> Result<(Bootstrapped, LocalRepo), InstallError> {
    let mut done = Bootstrapped::default();
    let mut step = Instant::now();
    let mut lap = |name: &'static str, done: &mut Bootstrapped| {
        done.timings.push((name, step.elapsed()));
        step = Instant::now();
    };

    // Everything the bootstrap knows of a package comes from the lock and
    // its `.deb`: no archive index is read (see `paragraphs`).
    let paragraphs = locked_paragraphs(lock, cache)?;
    let essential = essential_set(&paragraphs)?;
    lap("read the locked packages", &mut done);
    extract_essential(&essential, &lock.base.arch, root).map_err(|error| match error {
        // Reported as every interruption is, so the build says so.
        BootstrapError::Interrupted(interrupted) => InstallError::Chroot(interrupted.into()),
        other => other.into(),
    })?;
    write_dpkg_skeleton(root, &lock.base.arch)?;
    lap("unpack essential", &mut done);

    let env = chroot_env(lock);
    let mounts = chroot::mount_dib_filesystems(root)?;
    let setup = chroot::prepare_tree(root)?;

    let staged = stage_debs(&essential, root)?;
    let mut argv = vec![
        "dpkg".to_string(),
        "--install".to_string(),
        "--force-depends".to_string(),
    ];
    argv.extend(staged.iter().cloned());
    crate::host::signals::check().map_err(chroot::ChrootError::from)?;
    chroot::run_in_chroot(root, &argv, &env, log)?.check()?;
    for deb in &staged {
        remove(&root.join(deb.trim_start_matches('/')))?;
    }
    lap("configure essential", &mut done);

    let repo = stage_local_repo(lock, &paragraphs, root, work, &env, log)?;
    let essential_names: Vec<&str> = essential.iter().map(|p| p.package.name.as_str()).collect();
    let base = base_packages(lock, &paragraphs, packages)?;
    let rest: Vec<String> = lock
        .packages
        .iter()
        .filter(|p| !essential_names.contains(&p.name.as_str()) && base.contains(&p.name))
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    if !rest.is_empty() {
        let mut argv = strings(&["apt-get", "install", "--yes", "--no-install-recommends"]);
        argv.extend(rest);
        crate::host::signals::check().map_err(chroot::ChrootError::from)?;
        chroot::run_in_chroot(root, &argv, &env, log)?.check()?;
    }
    lap("install the base", &mut done);

    let installed = installed_packages(root, &env)?;
    setup.finish()?;
    mounts.unmount()?;

    compare_with_lock(lock, &installed, Coverage::Subset)?;
    lap("check against the lock", &mut done);
    Ok((done, repo))
}

/// Stages the local repository of the lock's packages in a tree that has
/// none (a snapshot of a bootstrapped tree, whose staging was removed
/// before it was taken), as [`bootstrap`] leaves it: mounted, named by
/// apt's configuration, its lists read. `work` is the scratch directory
/// beside the tree.
pub fn restage(
    lock: &Lock,
    cache: &Cache,
    root: &Path,
    work: &Path,
    log: &mut dyn Write,
) -> Result<LocalRepo, InstallError> {
    let paragraphs = locked_paragraphs(lock, cache)?;
    let env = chroot_env(lock);
    let mounts = chroot::mount_dib_filesystems(root)?;
    let setup = chroot::prepare_tree(root)?;
    let repo = stage_local_repo(lock, &paragraphs, root, work, &env, log)?;
    setup.finish()?;
    mounts.unmount()?;
    Ok(repo)
}

/// Writes the local repository into `work/repo`, mounts it in the tree,
/// writes apt's configuration for it and runs `apt-get update` (the
/// chroot's filesystems must be mounted).
fn stage_local_repo(
    lock: &Lock,
    paragraphs: &[LockedParagraph<'_>],
    root: &Path,
    work: &Path,
    env: &[(String, String)],
    log: &mut dyn Write,
) -> Result<LocalRepo, InstallError> {
    let repo_dir = work.join("repo");
    write_local_repo(lock, paragraphs, &repo_dir)?;
    let mount_point = root.join(REPO_IN_CHROOT.trim_start_matches('/'));
    fs_err::create_dir_all(&mount_point)?;
    let mount = chroot::Mount::bind(&repo_dir, &mount_point)?;
    let apt = write_apt_setup(root, REPO_IN_CHROOT)?;
    let repo = LocalRepo {
        root: root.to_path_buf(),
        mount,
        mount_point,
        apt,
    };
    crate::host::signals::check().map_err(chroot::ChrootError::from)?;
    chroot::run_in_chroot(root, &strings(&["apt-get", "update"]), env, log)?.check()?;
    Ok(repo)
}

/// The names apt is asked for after the essential set: debootstrap's
/// minbase seeds and the imagefile's packages. apt pulls in their
/// dependencies from the repository, which holds only locked files.
fn base_packages(
    lock: &Lock,
    paragraphs: &[LockedParagraph<'_>],
    packages: &[String],
) -> Result<std::collections::BTreeSet<String>, InstallError> {
    // The seeds of minbase among the locked packages are the seeds of
    // minbase in the whole archive: `kiln lock` resolved from them.
    let mut index = crate::apt::index::PackageIndex::new(&lock.base.arch);
    let text: String = paragraphs
        .iter()
        .map(|paragraph| format!("{}\n\n", paragraph.text))
        .collect();
    index
        .add_packages("the locked packages", &text)
        .map_err(|e| InstallError::Paragraphs {
            detail: e.to_string(),
        })?;
    let mut names: std::collections::BTreeSet<String> = crate::apt::resolve::minbase_seeds(&index)
        .into_iter()
        .map(|seed| seed.package)
        .collect();
    names.extend(
        packages
            .iter()
            .map(|p| p.split([':', '=']).next().unwrap_or_default().to_string()),
    );
    // apt installs the dependencies; naming them too would mark them as
    // installed by hand, which apt's autoremove then treats differently.
    Ok(names)
}

/// What the build has installed when the phases are done: every package
/// must be locked at its locked version, and every locked package
/// installed unless dpkg's log in the tree shows the build removed it.
/// Returns the names of the packages the build removed.
pub fn check_finished_tree(lock: &Lock, root: &Path) -> Result<Vec<String>, InstallError> {
    let env = chroot_env(lock);
    let installed = installed_packages(root, &env)?;
    let log_path = root.join("var/log/dpkg.log");
    let dpkg_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let removed: std::collections::BTreeSet<String> = dpkg_log
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(2);
            let action = fields.next()?;
            let package = fields.next()?;
            matches!(action, "remove" | "purge")
                .then(|| package.split(':').next().unwrap_or(package).to_string())
        })
        .filter(|name| !installed.contains_key(name))
        .collect();
    compare_with_lock(lock, &installed, Coverage::AllBut(&removed))?;
    Ok(removed.into_iter().collect())
}

/// How much of the lock must be installed.
enum Coverage<'a> {
    /// Only locked packages, at locked versions (after the base: the
    /// elements' packages come in the phases).
    Subset,
    /// Every locked package but these (which the build removed).
    AllBut(&'a std::collections::BTreeSet<String>),
}

/// The environment of every bootstrap command in the chroot.
pub(crate) fn chroot_env(lock: &Lock) -> Vec<(String, String)> {
    [
        ("LC_ALL", "C".to_string()),
        ("DEBCONF_NONINTERACTIVE_SEEN", "true".to_string()),
        ("SOURCE_DATE_EPOCH", lock.source_date_epoch.to_string()),
        ("HOME", "/root".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every package dpkg has installed in the tree, name → version.
pub(crate) fn installed_packages(
    root: &Path,
    env: &[(String, String)],
) -> Result<BTreeMap<String, String>, InstallError> {
    let mut output = Vec::new();
    let argv = strings(&[
        "dpkg-query",
        "--show",
        "--showformat=${db:Status-Abbrev}\\t${Package}\\t${Version}\\n",
    ]);
    chroot::run_in_chroot(root, &argv, env, &mut output)?.check()?;
    Ok(String::from_utf8_lossy(&output)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (status, name, version) = (fields.next()?, fields.next()?, fields.next()?);
            // `ii ` is installed; anything else (half-configured, config
            // files only) is not a package the image holds.
            status
                .starts_with("ii")
                .then(|| (name.to_string(), version.to_string()))
        })
        .collect())
}

/// Fails unless `installed` holds only the lock's names and versions, and
/// as much of the lock as `coverage` asks.
fn compare_with_lock(
    lock: &Lock,
    installed: &BTreeMap<String, String>,
    coverage: Coverage<'_>,
) -> Result<(), InstallError> {
    let locked: BTreeMap<&str, &str> = lock
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    let mut differences = Vec::new();
    for (name, version) in &locked {
        match installed.get(*name) {
            Some(v) if v == version => {}
            Some(v) => differences.push(format!("{name}: locked {version}, installed {v}")),
            None => match coverage {
                Coverage::Subset => {}
                Coverage::AllBut(removed) if removed.contains(*name) => {}
                Coverage::AllBut(_) => {
                    differences.push(format!("{name}: locked {version}, not installed"))
                }
            },
        }
    }
    for (name, version) in installed {
        if !locked.contains_key(name.as_str()) {
            differences.push(format!("{name}: not locked, installed {version}"));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(InstallError::Mismatch { differences })
    }
}

fn remove(path: &Path) -> Result<(), InstallError> {
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<(), InstallError> {
    match fs_err::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Removes the files (not the directory) of `dir`, recursing; refuses
/// while anything is mounted below it.
fn clear_dir(dir: &Path) -> Result<(), InstallError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            chroot::remove_dir_all_checked(&path)?;
        } else {
            remove(&path)?;
        }
    }
    Ok(())
}

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
use super::extract::{
    BootstrapError, extract_essential, load_indexes, stage_debs, write_dpkg_skeleton,
};
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
    /// A file of the build could not be written or removed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// How long each step took, for `--timings`.
#[derive(Debug, Default, Clone)]
pub struct Bootstrapped {
    /// (step, duration), in order.
    pub timings: Vec<(&'static str, Duration)>,
    /// How many packages the tree holds.
    pub packages: usize,
}

/// Builds the root tree for `lock` in `root` (an empty directory), with the
/// `.deb`s from `cache`; `work` is a scratch directory beside it for the
/// local repository. Command output goes to `log`. Must run inside the
/// build's mount namespace ([`chroot::enter_build_namespace`]).
pub fn bootstrap(
    lock: &Lock,
    cache: &Cache,
    root: &Path,
    work: &Path,
    log: &mut dyn Write,
) -> Result<Bootstrapped, InstallError> {
    let mut done = Bootstrapped::default();
    let mut step = Instant::now();
    let mut lap = |name: &'static str, done: &mut Bootstrapped| {
        done.timings.push((name, step.elapsed()));
        step = Instant::now();
    };

    let texts = load_indexes(lock, cache)?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    extract_essential(lock, cache, &texts, root)?;
    write_dpkg_skeleton(root, &lock.base.arch)?;
    lap("unpack essential", &mut done);

    let env = chroot_env(lock);
    let mounts = chroot::mount_dib_filesystems(root)?;
    let setup = chroot::prepare_tree(root)?;

    let essential = essential_set(lock, &texts)?;
    let staged = stage_debs(cache, &essential, root)?;
    let mut argv = vec![
        "dpkg".to_string(),
        "--install".to_string(),
        "--force-depends".to_string(),
    ];
    argv.extend(staged.iter().cloned());
    chroot::signals::check()?;
    chroot::run_in_chroot(root, &argv, &env, log)?.check()?;
    for deb in &staged {
        remove(&root.join(deb.trim_start_matches('/')))?;
    }
    lap("configure essential", &mut done);

    let repo_dir = work.join("repo");
    write_local_repo(lock, cache, &texts, &repo_dir)?;
    let repo_mount_point = root.join(REPO_IN_CHROOT.trim_start_matches('/'));
    std::fs::create_dir_all(&repo_mount_point).map_err(|source| InstallError::Io {
        action: "create",
        path: repo_mount_point.clone(),
        source,
    })?;
    let repo_mount = chroot::Mount::bind(&repo_dir, &repo_mount_point)?;
    let apt = write_apt_setup(root, REPO_IN_CHROOT)?;
    let essential_names: Vec<&str> = essential.iter().map(|p| p.name.as_str()).collect();
    let rest: Vec<String> = lock
        .packages
        .iter()
        .filter(|p| !essential_names.contains(&p.name.as_str()))
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    chroot::signals::check()?;
    chroot::run_in_chroot(root, &strings(&["apt-get", "update"]), &env, log)?.check()?;
    if !rest.is_empty() {
        let mut argv = strings(&["apt-get", "install", "--yes", "--no-install-recommends"]);
        argv.extend(rest);
        chroot::signals::check()?;
        chroot::run_in_chroot(root, &argv, &env, log)?.check()?;
    }
    lap("install the rest", &mut done);

    let installed = installed_packages(root, &env)?;
    // The bootstrap's apt setup and lists go before the image is used.
    for path in [&apt.config, &apt.source_list] {
        remove(&root.join(path))?;
    }
    remove_dir(&root.join(&apt.source_parts))?;
    clear_dir(&root.join("var/lib/apt/lists"))?;
    repo_mount.unmount()?;
    remove_dir(&repo_mount_point)?;
    setup.finish()?;
    mounts.unmount()?;

    compare_with_lock(lock, &installed)?;
    done.packages = installed.len();
    lap("check against the lock", &mut done);
    Ok(done)
}

/// The environment of every bootstrap command in the chroot.
fn chroot_env(lock: &Lock) -> Vec<(String, String)> {
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
fn installed_packages(
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

/// Fails unless `installed` is exactly the lock's names and versions.
fn compare_with_lock(
    lock: &Lock,
    installed: &BTreeMap<String, String>,
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
            None => differences.push(format!("{name}: locked {version}, not installed")),
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
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(InstallError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<(), InstallError> {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(InstallError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source: e,
        }),
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

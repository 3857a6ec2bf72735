//! The first stage of a Debian bootstrap: the essential set unpacked into
//! the tree by kiln itself, and the files dpkg and apt need before they can
//! run inside it.
//!
//! What is written mirrors the two reference tools (read from
//! debootstrap 1.0.128's `first_stage_install` and mmdebstrap 1.3's
//! `run_setup`): an empty `var/lib/dpkg/status` and `available`
//! (debootstrap), `var/lib/dpkg/arch` and dpkg's and apt's state and cache
//! directories (mmdebstrap), `/tmp` as 1777, and the placeholder
//! `etc/fstab` both write. Neither the host's `resolv.conf` nor its
//! `hostname` is copied: they would make the tree depend on the build host.
//! The essential `.deb`s are then placed in `var/cache/apt/archives/` for
//! the in-chroot `dpkg --install` that registers and configures them.

use fs_err as fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::deb::{DebError, unpack_data};
use super::essential::EssentialError;
use super::merged_usr::{MergedUsrError, create_merged_usr};
use super::paragraphs::{LockedParagraph, ParagraphError};
use super::repo::{RepoError, link_or_copy};

/// Directories created empty (mode 0755) before dpkg first runs.
const SKELETON_DIRS: [&str; 15] = [
    "etc/apt/apt.conf.d",
    "etc/apt/sources.list.d",
    "etc/apt/preferences.d",
    "etc/dpkg/dpkg.cfg.d",
    "var/cache/apt/archives/partial",
    "var/lib/apt/lists/partial",
    "var/lib/dpkg/alternatives",
    "var/lib/dpkg/info",
    "var/lib/dpkg/triggers",
    "var/lib/dpkg/updates",
    "var/log/apt",
    "var/lib/dpkg",
    "var/cache/apt",
    "etc/apt",
    "tmp",
];

/// Why the first stage failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The essential set could not be worked out.
    #[error(transparent)]
    Essential(#[from] EssentialError),
    /// The merged-/usr links could not be made.
    #[error(transparent)]
    MergedUsr(#[from] MergedUsrError),
    /// A package could not be unpacked.
    #[error("cannot unpack {package}: {source}")]
    Unpack {
        /// The package.
        package: String,
        /// What went wrong.
        source: Box<DebError>,
    },
    /// A locked `.deb` could not be found or read.
    #[error(transparent)]
    Paragraph(#[from] ParagraphError),
    /// A locked value is not usable as a file name.
    #[error("{what}: {reason}")]
    InvalidLock {
        /// The package.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The repository or a staged `.deb` could not be written.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A file of the skeleton could not be written; fs-err's message
    /// names the operation and the path.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// SIGINT or SIGTERM arrived between two packages.
    #[error(transparent)]
    Interrupted(#[from] crate::host::signals::Interrupted),
}

/// Makes the merged-/usr links in `root` (which must exist) for `arch` and
/// unpacks the data of every package of `essential` (the
/// [`essential_set`](super::essential::essential_set)) into it, in order.
/// Returns the names unpacked.
pub fn extract_essential(
    essential: &[&LockedParagraph<'_>],
    arch: &str,
    root: &Path,
) -> Result<Vec<String>, BootstrapError> {
    create_merged_usr(root, arch)?;
    let mut names = Vec::with_capacity(essential.len());
    for LockedParagraph { package, deb, .. } in essential {
        // Unpacking takes seconds and runs no command the watcher could
        // kill: stop between packages.
        crate::host::signals::check()?;
        unpack_data(deb, root).map_err(|source| BootstrapError::Unpack {
            package: package.name.clone(),
            source: Box::new(source),
        })?;
        names.push(package.name.clone());
    }
    Ok(names)
}

/// Writes the directories and files dpkg and apt need before their first
/// run in `root`; files already there (from a package) are kept.
pub fn write_dpkg_skeleton(root: &Path, arch: &str) -> Result<(), BootstrapError> {
    for dir in SKELETON_DIRS {
        let path = root.join(dir);
        if !path.is_dir() {
            fs::create_dir_all(&path)?;
        }
    }
    let tmp = root.join("tmp");
    fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    let files = [
        ("var/lib/dpkg/status", String::new()),
        ("var/lib/dpkg/available", String::new()),
        ("var/lib/dpkg/arch", format!("{arch}\n")),
        (
            "etc/fstab",
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n".to_string(),
        ),
    ];
    for (name, content) in files {
        let path = root.join(name);
        if fs::symlink_metadata(&path).is_err() {
            fs::write(&path, content)?;
            fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Places the `.deb` of each of `packages` in `root/var/cache/apt/archives/`
/// (hard links to the cache where possible) and returns their paths as the
/// chroot sees them, in the same order, for `dpkg --install`.
pub fn stage_debs(
    packages: &[&LockedParagraph<'_>],
    root: &Path,
) -> Result<Vec<String>, BootstrapError> {
    let archives = Path::new("var/cache/apt/archives");
    let dir = root.join(archives);
    fs::create_dir_all(&dir)?;
    let mut staged = Vec::with_capacity(packages.len());
    for LockedParagraph { package, deb, .. } in packages {
        // The digest keeps names unique and free of anything path-like.
        let name = format!("{}_{}.deb", package.name, package.sha256);
        if !package
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(BootstrapError::InvalidLock {
                what: package.name.clone(),
                reason: "not a Debian package name".to_string(),
            });
        }
        link_or_copy(deb, &dir.join(&name))?;
        staged.push(format!("/{}/{name}", archives.display()));
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    use crate::bootstrap::deb::tests::{craft_deb_with_control, raw_header};
    use crate::bootstrap::essential::essential_set;
    use crate::bootstrap::essential::tests::lock_of;
    use crate::bootstrap::paragraphs::locked_paragraphs;
    use crate::cache::{Cache, Digest};

    #[test]
    fn skeleton_has_what_dpkg_and_apt_need_and_keeps_existing_files() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/fstab"), "from a package\n").unwrap();
        write_dpkg_skeleton(root.path(), "arm64").unwrap();
        let r = |rel: &str| root.path().join(rel);
        assert_eq!(fs::read_to_string(r("var/lib/dpkg/status")).unwrap(), "");
        assert_eq!(fs::read_to_string(r("var/lib/dpkg/available")).unwrap(), "");
        assert_eq!(
            fs::read_to_string(r("var/lib/dpkg/arch")).unwrap(),
            "arm64\n"
        );
        assert_eq!(
            fs::read_to_string(r("etc/fstab")).unwrap(),
            "from a package\n"
        );
        assert!(r("var/lib/dpkg/info").is_dir());
        assert!(r("var/cache/apt/archives/partial").is_dir());
        assert_eq!(fs::metadata(r("tmp")).unwrap().mode() & 0o7777, 0o1777);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn essential_packages_are_unpacked_from_the_cache_with_merged_usr() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let mut digests = Vec::new();
        for (name, file, field) in [
            ("ess", &b"./bin/ess"[..], "Essential: yes"),
            ("opt", b"./bin/opt", "Essential: no"),
        ] {
            let deb = dir.path().join(format!("{name}.deb"));
            let mut header = raw_header(file, tar::EntryType::Regular, b"", 3);
            header.set_mode(0o755);
            header.set_cksum();
            let control = format!("Package: {name}\nVersion: 1\nArchitecture: amd64\n{field}\n");
            craft_deb_with_control(&deb, control.as_bytes(), &[(header, b"hi\n")]);
            let bytes = fs::read(&deb).unwrap();
            let digest = Digest::of_bytes(&bytes);
            cache.insert_bytes(&bytes, &digest).unwrap();
            digests.push(digest);
        }
        let mut lock = lock_of(&[("ess", &digests[0].sha256), ("opt", &digests[1].sha256)]);
        for (package, digest) in lock.packages.iter_mut().zip(&digests) {
            package.size = digest.size;
        }
        let paragraphs = locked_paragraphs(&lock, &cache).unwrap();
        let essential = essential_set(&paragraphs).unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let names = extract_essential(&essential, "amd64", &root).unwrap();
        assert_eq!(names, ["ess"]);
        assert_eq!(
            fs::read_to_string(root.join("usr/bin/ess")).unwrap(),
            "hi\n"
        );
        assert!(!root.join("usr/bin/opt").exists());
        assert!(
            fs::symlink_metadata(root.join("bin"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let staged = stage_debs(&essential, &root).unwrap();
        assert_eq!(staged.len(), 1);
        let staged_path = root.join(staged[0].trim_start_matches('/'));
        assert_eq!(Digest::of_file(&staged_path).unwrap(), digests[0]);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn a_hostile_package_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let deb = dir.path().join("evil.deb");
        let mut device = raw_header(b"./dev/sda", tar::EntryType::Block, b"", 0);
        device.set_device_major(8).unwrap();
        device.set_cksum();
        craft_deb_with_control(
            &deb,
            b"Package: evil\nVersion: 1\nArchitecture: amd64\nEssential: yes\n",
            &[(device, b"")],
        );
        let bytes = fs::read(&deb).unwrap();
        let digest = Digest::of_bytes(&bytes);
        cache.insert_bytes(&bytes, &digest).unwrap();
        let mut lock = lock_of(&[("evil", &digest.sha256)]);
        lock.packages[0].size = digest.size;
        let paragraphs = locked_paragraphs(&lock, &cache).unwrap();
        let essential = essential_set(&paragraphs).unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let error = extract_essential(&essential, "amd64", &root).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("cannot unpack evil: "), "{message}");
        assert!(message.contains("`./dev/sda`"), "{message}");
        assert!(message.contains("device node"), "{message}");
        assert!(!root.join("dev/sda").exists());
    }
}

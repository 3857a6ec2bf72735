//! The local apt repository that the target's own apt installs from inside
//! the chroot, made only of the locked `.deb`s, and the apt configuration
//! that makes it the only source.
//!
//! Layout (a flat "dists" archive apt reads over `file:`):
//! `pool/<file>.deb` (hard links to the cache's blobs where the filesystem
//! allows, else copies), `dists/kiln/main/binary-<arch>/Packages` holding
//! exactly the locked packages' paragraphs as the mirror published them
//! (only `Filename` rewritten), and `dists/kiln/Release` with that file's
//! SHA-256. The repository is unsigned; the apt source says
//! `[trusted=yes]` because every byte in it was verified against the lock,
//! whose index hashes chain back to the signed `InRelease`.

use fs_err as fs;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::cache::Digest;
use crate::lock::Lock;

use super::paragraphs::LockedParagraph;

/// The suite name of the local repository.
pub const SUITE: &str = "kiln";

/// The one component of the local repository.
pub const COMPONENT: &str = "main";

/// Why the local repository could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A locked value is not usable as a file name or digest.
    #[error("{package}: {reason}")]
    Invalid {
        /// The package.
        package: String,
        /// What is wrong.
        reason: String,
    },
    /// A file of the repository could not be written; fs-err's message
    /// names the operation and the path.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What [`write_local_repo`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRepo {
    /// The repository's directory.
    pub dir: PathBuf,
    /// The `.deb` of each locked package, by name, inside `dir`.
    pub debs: Vec<(String, PathBuf)>,
    /// The `Packages` file's digest, as the `Release` file records it.
    pub packages_digest: Digest,
}

/// Writes the repository of the locked packages' `paragraphs` (every
/// package of `lock`) into `dir` (created if missing).
pub fn write_local_repo(
    lock: &Lock,
    paragraphs: &[LockedParagraph<'_>],
    dir: &Path,
) -> Result<LocalRepo, RepoError> {
    let arch = &lock.base.arch;
    let pool = dir.join("pool");
    let binary_dir = dir
        .join("dists")
        .join(SUITE)
        .join(COMPONENT)
        .join(format!("binary-{arch}"));
    for path in [&pool, &binary_dir] {
        fs::create_dir_all(path)?;
    }

    let mut packages = String::new();
    let mut debs = Vec::new();
    for LockedParagraph {
        package,
        text: paragraph,
        deb: blob,
    } in paragraphs
    {
        let invalid = |reason: String| RepoError::Invalid {
            package: package.name.clone(),
            reason,
        };
        let file_name = pool_file_name(&package.filename).ok_or_else(|| {
            invalid(format!(
                "`{}` does not end in a usable .deb file name",
                package.filename
            ))
        })?;
        let target = pool.join(file_name);
        link_or_copy(blob, &target)?;
        debs.push((package.name.clone(), target));

        if !packages.is_empty() {
            packages.push('\n');
        }
        for line in paragraph.lines() {
            let is_filename = line
                .split_once(':')
                .is_some_and(|(name, _)| name.eq_ignore_ascii_case("Filename"));
            if is_filename {
                let _ = writeln!(packages, "Filename: pool/{file_name}");
            } else {
                packages.push_str(line);
                packages.push('\n');
            }
        }
    }
    let packages_path = binary_dir.join("Packages");
    write(&packages_path, packages.as_bytes())?;
    let packages_digest = Digest::of_bytes(packages.as_bytes());

    let release = release_text(lock, &packages_digest);
    write(
        &dir.join("dists").join(SUITE).join("Release"),
        release.as_bytes(),
    )?;
    Ok(LocalRepo {
        dir: dir.to_path_buf(),
        debs,
        packages_digest,
    })
}

/// The `deb` line for `/etc/apt/sources.list`, for the repository at
/// `path_in_chroot` (an absolute path as the chroot sees it).
pub fn sources_line(path_in_chroot: &str) -> String {
    format!("deb [trusted=yes] file:{path_in_chroot} {SUITE} {COMPONENT}\n")
}

/// An apt configuration that reads only `source_list` (an absolute path in
/// the chroot) and the empty `source_parts` directory, and installs
/// nothing the lock did not ask for.
pub fn apt_config(source_list: &str, source_parts: &str) -> String {
    format!(
        "// Written by kiln for the build; removed before the image is finished.\n\
         Dir::Etc::SourceList \"{source_list}\";\n\
         Dir::Etc::SourceParts \"{source_parts}\";\n\
         APT::Install-Recommends \"false\";\n\
         APT::Install-Suggests \"false\";\n\
         APT::Get::Upgrade-Allow-New \"false\";\n\
         Acquire::Languages \"none\";\n\
         Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled \"false\";\n\
         Acquire::Retries \"0\";\n"
    )
}

/// The apt files [`write_apt_setup`] wrote, relative to the root, so the
/// build can remove them before the image is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSetup {
    /// The apt configuration snippet.
    pub config: PathBuf,
    /// The sources list naming only the local repository.
    pub source_list: PathBuf,
    /// The empty directory used as `Dir::Etc::SourceParts`.
    pub source_parts: PathBuf,
}

/// Writes, inside `root`, the sources list for the repository at
/// `repo_in_chroot` and the apt configuration that makes it the only
/// source.
pub fn write_apt_setup(root: &Path, repo_in_chroot: &str) -> Result<AptSetup, RepoError> {
    let setup = AptSetup {
        config: PathBuf::from("etc/apt/apt.conf.d/00kiln-bootstrap"),
        source_list: PathBuf::from("etc/apt/kiln-bootstrap.list"),
        source_parts: PathBuf::from("etc/apt/kiln-bootstrap.list.d"),
    };
    fs::create_dir_all(root.join("etc/apt/apt.conf.d"))?;
    fs::create_dir_all(root.join(&setup.source_parts))?;
    write(
        &root.join(&setup.source_list),
        sources_line(repo_in_chroot).as_bytes(),
    )?;
    let config = apt_config(
        &format!("/{}", setup.source_list.display()),
        &format!("/{}", setup.source_parts.display()),
    );
    write(&root.join(&setup.config), config.as_bytes())?;
    Ok(setup)
}

/// The last component of a mirror path, if it is a plain `.deb` name.
fn pool_file_name(filename: &str) -> Option<&str> {
    let name = filename.rsplit('/').next()?;
    let plain = name.ends_with(".deb")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._~%".contains(&b));
    plain.then_some(name)
}

/// A `Release` file for the repository.
fn release_text(lock: &Lock, packages: &Digest) -> String {
    let arch = &lock.base.arch;
    format!(
        "Origin: kiln\n\
         Label: kiln\n\
         Suite: {SUITE}\n\
         Codename: {SUITE}\n\
         Date: {date}\n\
         Architectures: {arch} all\n\
         Components: {COMPONENT}\n\
         Description: The packages of one kiln lock\n\
         SHA256:\n \
         {sha256} {size} {COMPONENT}/binary-{arch}/Packages\n",
        date = rfc2822_utc(lock.source_date_epoch),
        sha256 = packages.sha256,
        size = packages.size,
    )
}

/// `Sat, 11 Jul 2026 10:16:37 UTC` for seconds since the epoch, as Release
/// files write dates. The lock's epoch is used so the file is the same on
/// every build.
pub(crate) fn rfc2822_utc(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, hour, minute, second) = crate::reproducible::utc_fields(epoch);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        DAYS[(epoch / 86_400 % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        hour,
        minute,
        second
    )
}

/// Hard-links `from` to `to` (replacing `to`), or copies it when the two
/// are on different filesystems or links are not allowed.
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> Result<(), RepoError> {
    match fs::remove_file(to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    Ok(fs::write(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::essential::tests::lock_of;

    #[test]
    fn release_dates_are_rfc2822() {
        assert_eq!(rfc2822_utc(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(rfc2822_utc(1_783_764_997), "Sat, 11 Jul 2026 10:16:37 UTC");
        assert_eq!(rfc2822_utc(951_782_400), "Tue, 29 Feb 2000 00:00:00 UTC");
    }

    #[test]
    fn pool_names_are_plain_deb_file_names() {
        assert_eq!(
            pool_file_name("pool/main/b/bash/bash_5.2.15-2+b13_amd64.deb"),
            Some("bash_5.2.15-2+b13_amd64.deb")
        );
        assert_eq!(pool_file_name("pool/main/x/.."), None);
        assert_eq!(pool_file_name("pool/a b.deb"), None);
    }

    #[test]
    fn repository_holds_exactly_the_locked_paragraphs() {
        let dir = tempfile::tempdir().unwrap();
        let deb_a = b"not really a deb, but the repo does not look inside".to_vec();
        let blob = dir.path().join("blob");
        fs::write(&blob, &deb_a).unwrap();
        let digest = Digest::of_bytes(&deb_a);
        let mut lock = lock_of(&[("a", &digest.sha256)]);
        lock.packages[0].size = digest.size;
        lock.packages[0].filename = "pool/main/a/a/a_1_amd64.deb".into();
        let paragraphs = [LockedParagraph {
            package: &lock.packages[0],
            text: format!(
                "Package: a\nVersion: 1\nDescription: A\n line two\nFilename: pool/main/a/a/a_1_amd64.deb\nSize: {}\nSHA256: {}",
                digest.size, digest.sha256
            ),
            deb: blob,
        }];
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = write_local_repo(&lock, &paragraphs, repo_dir.path()).unwrap();
        let packages = fs::read_to_string(
            repo_dir
                .path()
                .join("dists/kiln/main/binary-amd64/Packages"),
        )
        .unwrap();
        assert_eq!(
            packages,
            format!(
                "Package: a\nVersion: 1\nDescription: A\n line two\nFilename: pool/a_1_amd64.deb\nSize: {}\nSHA256: {}\n",
                digest.size, digest.sha256
            )
        );
        assert_eq!(
            fs::read(repo_dir.path().join("pool/a_1_amd64.deb")).unwrap(),
            deb_a
        );
        let release = fs::read_to_string(repo_dir.path().join("dists/kiln/Release")).unwrap();
        assert!(release.contains(&format!(
            " {} {} main/binary-amd64/Packages\n",
            repo.packages_digest.sha256, repo.packages_digest.size
        )));
        assert_eq!(repo.packages_digest, Digest::of_bytes(packages.as_bytes()));
    }

    #[test]
    fn apt_setup_points_only_at_the_local_repository() {
        let root = tempfile::tempdir().unwrap();
        let setup = write_apt_setup(root.path(), "/var/lib/kiln/repo").unwrap();
        let list = fs::read_to_string(root.path().join(&setup.source_list)).unwrap();
        assert_eq!(
            list,
            "deb [trusted=yes] file:/var/lib/kiln/repo kiln main\n"
        );
        let config = fs::read_to_string(root.path().join(&setup.config)).unwrap();
        assert!(config.contains("Dir::Etc::SourceList \"/etc/apt/kiln-bootstrap.list\";"));
        assert!(config.contains("Dir::Etc::SourceParts \"/etc/apt/kiln-bootstrap.list.d\";"));
        assert!(config.contains("APT::Install-Recommends \"false\";"));
        assert!(root.path().join(&setup.source_parts).is_dir());
    }
}

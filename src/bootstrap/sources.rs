//! The image's apt sources for the imagefile's extra `repositories`, so
//! that apt on a booted machine trusts and reads the repositories its
//! packages came from.
//!
//! For each repository the lock read (other than the base distribution's
//! archive, whose sources the `debian` element writes), the build writes
//! `/etc/apt/sources.list.d/<name>.sources` (deb822: the lock's URL, suites
//! and components, `Signed-By` its key), the key itself as
//! `/etc/apt/keyrings/<name>.asc` or `.gpg` (as the imagefile gave it),
//! and, for a priority other than apt's default 500,
//! `/etc/apt/preferences.d/<name>.pref` pinning the repository's origin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::lock::{Lock, LockedRepository};
use crate::manifest::Manifest;

/// Why the sources could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// A file could not be read or written; fs-err's message names the
    /// operation and the path.
    #[error("cannot write the apt source of repository `{name}`: {source}")]
    Io {
        /// The repository.
        name: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Writes the apt sources, keys and pins of the lock's extra repositories
/// into `root`. Keys are read from the imagefile (`manifest`, in
/// `manifest_dir`); a repository given by `fingerprint` alone gets
/// `Signed-By: <fingerprint>`, whose key the image must bring itself.
/// Returns the files written, relative to `root`.
pub fn write_extra_sources(
    lock: &Lock,
    manifest: &Manifest,
    manifest_dir: &Path,
    root: &Path,
) -> Result<Vec<PathBuf>, SourcesError> {
    let mut by_name: BTreeMap<&str, Vec<&LockedRepository>> = BTreeMap::new();
    for repository in lock
        .repositories
        .iter()
        .filter(|r| r.name != lock.base.distro)
    {
        by_name
            .entry(&repository.name)
            .or_default()
            .push(repository);
    }
    let mut written = Vec::new();
    for (name, suites) in by_name {
        let io = |source| SourcesError::Io {
            name: name.to_string(),
            source,
        };
        let entry = manifest
            .repositories
            .iter()
            .find(|r| r.name.as_str() == name);
        let signed_by = match entry.and_then(|r| r.key.as_ref()) {
            Some(key) => {
                let source = manifest_dir.join(key.value.as_str());
                let bytes = fs_err::read(&source).map_err(io)?;
                let extension = if bytes.starts_with(b"-----BEGIN") {
                    "asc"
                } else {
                    "gpg"
                };
                let relative = PathBuf::from(format!("etc/apt/keyrings/{name}.{extension}"));
                write(root, &relative, &bytes).map_err(io)?;
                written.push(relative.clone());
                format!("/{}", relative.display())
            }
            None => entry
                .and_then(|r| r.fingerprint.as_ref())
                .map(|f| f.value.normalised())
                .unwrap_or_default(),
        };
        let first = suites[0];
        let suite_names: Vec<&str> = suites.iter().map(|r| r.suite.as_str()).collect();
        let text = format!(
            "# Written by kiln: the repository `{name}` the image was locked from.\n\
             Types: deb\nURIs: {}\nSuites: {}\nComponents: {}\nSigned-By: {signed_by}\n",
            first.url,
            suite_names.join(" "),
            first.components.join(" "),
        );
        let relative = PathBuf::from(format!("etc/apt/sources.list.d/{name}.sources"));
        write(root, &relative, text.as_bytes()).map_err(io)?;
        written.push(relative);
        if first.priority != crate::apt::index::DEFAULT_PIN {
            let host = first
                .url
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split(['/', ':']).next())
                .unwrap_or_default();
            let text = format!(
                "# Written by kiln: the priority the imagefile gives `{name}`.\n\
                 Package: *\nPin: origin \"{host}\"\nPin-Priority: {}\n",
                first.priority
            );
            let relative = PathBuf::from(format!("etc/apt/preferences.d/{name}.pref"));
            write(root, &relative, text.as_bytes()).map_err(io)?;
            written.push(relative);
        }
    }
    Ok(written)
}

/// Writes `bytes` to `root/relative`, mode 0644, making its directory.
fn write(root: &Path, relative: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = root.join(relative);
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    fs_err::write(&path, bytes)?;
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
}

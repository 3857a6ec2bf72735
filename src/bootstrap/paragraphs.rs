//! Each locked package's index paragraph, made from the lock and the
//! locked `.deb` alone: the build reads no archive index.
//!
//! Bootstrap needs two things from the paragraphs: the fields that decide
//! the essential set (`Essential`, `Priority`, `Depends`, …) and a
//! `Packages` file for the local repository the target's apt installs
//! from. An archive makes its paragraphs the same way (dak and
//! `dpkg-scanpackages` alike): the `.deb`'s own `control` file, with the
//! archive's `Priority` (an override file may change the package's own) and
//! the file's `Filename`, `Size` and `SHA256`. The lock pins all four, the
//! `Priority` from the signed index it was resolved from, so a committed
//! lock builds on a machine that never saw that index, and keeps building
//! after the archive has replaced it: what an archive stops serving first
//! is its old indexes, long before the `.deb`s.

use std::path::{Path, PathBuf};

use crate::cache::{Cache, CacheError, Digest};
use crate::lock::{Lock, LockedPackage};

use super::deb::{DebError, read_control};

/// Fields of a `.deb`'s control file that the archive sets itself; the
/// control file's own values (if any) are dropped.
const ARCHIVE_FIELDS: [&str; 5] = ["Priority", "Filename", "Size", "MD5sum", "SHA256"];

/// Fields whose value in the control file must equal the lock's.
const CHECKED_FIELDS: [&str; 3] = ["Package", "Version", "Architecture"];

/// Why a locked package's paragraph could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ParagraphError {
    /// A locked `.deb` is not in the cache (or failed its check there),
    /// although the build fetched every one before it started.
    #[error(
        "{package} {version}: its .deb (sha256 {sha256}) is no longer in the cache at {cache}; \
         something removed or damaged it during the build: build again, and kiln fetches it anew"
    )]
    NotCached {
        /// The package's name.
        package: String,
        /// Its locked version.
        version: String,
        /// Its locked SHA-256.
        sha256: String,
        /// The cache directory.
        cache: PathBuf,
    },
    /// The lock's entry is not usable.
    #[error("the lock's entry for {package} is malformed: {reason}")]
    Invalid {
        /// The package's name.
        package: String,
        /// What is wrong.
        reason: String,
    },
    /// The cache could not be read.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The `.deb`'s control file could not be read.
    #[error("cannot read the control file of {package}: {source}")]
    Control {
        /// The package's name.
        package: String,
        /// What went wrong.
        source: Box<DebError>,
    },
    /// The `.deb` is not the package the lock says it is.
    #[error("the .deb locked as {package} has `{field}: {found}` where the lock says `{expected}`")]
    Mismatch {
        /// The package's name in the lock.
        package: String,
        /// The control field.
        field: &'static str,
        /// The value in the `.deb`.
        found: String,
        /// The value in the lock.
        expected: String,
    },
}

/// One locked package and its paragraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedParagraph<'l> {
    /// The package, as locked.
    pub package: &'l LockedPackage,
    /// Its paragraph: fields and continuation lines, no blank line after.
    pub text: String,
    /// Its `.deb` in the cache, verified.
    pub deb: PathBuf,
}

/// The verified cache blob of a locked package's `.deb`.
fn cached_deb(cache: &Cache, package: &LockedPackage) -> Result<PathBuf, ParagraphError> {
    let digest =
        Digest::new(&package.sha256, package.size).map_err(|e| ParagraphError::Invalid {
            package: package.name.clone(),
            reason: e.to_string(),
        })?;
    match cache.get(&digest)?.path() {
        Some(path) => Ok(path.to_path_buf()),
        None => Err(ParagraphError::NotCached {
            package: package.name.clone(),
            version: package.version.clone(),
            sha256: package.sha256.clone(),
            cache: cache.dir().to_path_buf(),
        }),
    }
}

/// Every locked package with its paragraph, in lock order, each made from
/// its `.deb` in the cache.
pub fn locked_paragraphs<'l>(
    lock: &'l Lock,
    cache: &Cache,
) -> Result<Vec<LockedParagraph<'l>>, ParagraphError> {
    lock.packages
        .iter()
        .map(|package| {
            let deb = cached_deb(cache, package)?;
            let text = paragraph_of_deb(package, &deb)?;
            Ok(LockedParagraph { package, text, deb })
        })
        .collect()
}

fn paragraph_of_deb(package: &LockedPackage, deb: &Path) -> Result<String, ParagraphError> {
    let control = read_control(deb).map_err(|source| ParagraphError::Control {
        package: package.name.clone(),
        source: Box::new(source),
    })?;
    paragraph_from_control(package, &control)
}

/// The paragraph an archive publishes for `package` whose `.deb` has the
/// control file `control`: the control file's fields, but for those the
/// archive sets, which come from the lock (see the module documentation).
pub fn paragraph_from_control(
    package: &LockedPackage,
    control: &str,
) -> Result<String, ParagraphError> {
    let Some(first) = raw_paragraphs(control).next() else {
        return Err(ParagraphError::Invalid {
            package: package.name.clone(),
            reason: "the .deb's control file is empty".to_string(),
        });
    };
    for field in CHECKED_FIELDS {
        let expected = match field {
            "Package" => &package.name,
            "Version" => &package.version,
            _ => &package.arch,
        };
        let found = field_value(first, field).unwrap_or_default();
        if found != expected {
            return Err(ParagraphError::Mismatch {
                package: package.name.clone(),
                field,
                found: found.to_string(),
                expected: expected.clone(),
            });
        }
    }
    let mut text = String::with_capacity(first.len() + 256);
    let mut skipping = false;
    for line in first.lines() {
        if !line.starts_with([' ', '\t']) {
            skipping = line.split_once(':').is_some_and(|(name, _)| {
                ARCHIVE_FIELDS
                    .iter()
                    .any(|field| name.eq_ignore_ascii_case(field))
            });
        }
        if !skipping {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some(priority) = &package.priority {
        text.push_str(&format!("Priority: {priority}\n"));
    }
    text.push_str(&format!(
        "Filename: {}\nSize: {}\nSHA256: {}",
        package.filename, package.size, package.sha256
    ));
    Ok(text)
}

/// The paragraphs of a deb822 text, split at blank lines, each without its
/// trailing line break.
pub fn raw_paragraphs(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        // Skip blank lines before the paragraph.
        loop {
            let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            if line_end == 0 {
                return None;
            }
            if rest[..line_end].trim_ascii().is_empty() {
                rest = &rest[line_end..];
            } else {
                break;
            }
        }
        let mut end = 0;
        while end < rest.len() {
            let line_end = rest[end..].find('\n').map_or(rest.len(), |i| end + i + 1);
            if rest[end..line_end].trim_ascii().is_empty() {
                break;
            }
            end = line_end;
        }
        let paragraph = rest[..end].trim_end_matches(['\n', '\r']);
        rest = &rest[end..];
        Some(paragraph)
    })
}

/// The one-line value of field `name` in a raw paragraph (case-insensitive
/// name, as deb822 compares them).
pub fn field_value<'t>(paragraph: &'t str, name: &str) -> Option<&'t str> {
    paragraph.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        if line.starts_with([' ', '\t']) || !field.eq_ignore_ascii_case(name) {
            return None;
        }
        Some(value.trim_ascii())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bootstrap::essential::tests::lock_of;

    /// The paragraphs of `lock`'s packages made from control texts: for
    /// each package, the paragraph of `controls` whose `Package` is its
    /// name, with the lock's name, version and arch filled in where the
    /// text leaves them out.
    pub(crate) fn paragraphs_of<'l>(lock: &'l Lock, controls: &str) -> Vec<LockedParagraph<'l>> {
        lock.packages
            .iter()
            .map(|package| {
                let control = raw_paragraphs(controls)
                    .find(|p| field_value(p, "Package") == Some(package.name.as_str()))
                    .unwrap_or_else(|| panic!("no control text for {}", package.name));
                let mut full = control.to_string();
                for (field, value) in [
                    ("Version", &package.version),
                    ("Architecture", &package.arch),
                ] {
                    if field_value(control, field).is_none() {
                        full.push_str(&format!("\n{field}: {value}"));
                    }
                }
                LockedParagraph {
                    package,
                    text: paragraph_from_control(package, &full).unwrap(),
                    deb: PathBuf::from(format!("/nonexistent/{}.deb", package.name)),
                }
            })
            .collect()
    }

    #[test]
    fn splits_paragraphs_at_blank_lines() {
        let text = "\nPackage: a\nDescription: x\n more\n\n\nPackage: b\r\n\r\nPackage: c";
        let paragraphs: Vec<_> = raw_paragraphs(text).collect();
        assert_eq!(
            paragraphs,
            [
                "Package: a\nDescription: x\n more",
                "Package: b",
                "Package: c"
            ]
        );
    }

    #[test]
    fn field_values_ignore_continuation_lines_and_case() {
        let paragraph = "Package: a\nDescription: x\n sha256: no\nsha256: yes";
        assert_eq!(field_value(paragraph, "SHA256"), Some("yes"));
        assert_eq!(field_value(paragraph, "Missing"), None);
    }

    #[test]
    fn the_archive_fields_come_from_the_lock_and_the_rest_from_the_deb() {
        let mut lock = lock_of(&[("libc6", &"ab".repeat(32))]);
        lock.packages[0].priority = Some("required".into());
        let control = "Package: libc6\nVersion: 1\nArchitecture: amd64\n\
                       Priority: optional\nDepends: libgcc-s1\n\
                       Description: GNU C Library\n Priority: in a description stays\n";
        let text = paragraph_from_control(&lock.packages[0], control).unwrap();
        assert_eq!(
            text,
            format!(
                "Package: libc6\nVersion: 1\nArchitecture: amd64\nDepends: libgcc-s1\n\
                 Description: GNU C Library\n Priority: in a description stays\n\
                 Priority: required\nFilename: pool/main/libc6_1_amd64.deb\nSize: 1\nSHA256: {}",
                "ab".repeat(32)
            )
        );

        // No priority in the index: none in the paragraph either.
        lock.packages[0].priority = None;
        let text = paragraph_from_control(&lock.packages[0], control).unwrap();
        assert!(!text.contains("\nPriority: "), "{text}");
    }

    #[test]
    fn a_deb_that_is_not_the_locked_package_is_refused() {
        let lock = lock_of(&[("libc6", &"ab".repeat(32))]);
        let control = "Package: libc6\nVersion: 2\nArchitecture: amd64\n";
        let err = paragraph_from_control(&lock.packages[0], control).unwrap_err();
        assert!(
            err.to_string()
                .contains("has `Version: 2` where the lock says `1`"),
            "{err}"
        );
    }

    #[test]
    fn a_deb_missing_from_the_cache_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let lock = lock_of(&[("a", &"ab".repeat(32))]);
        let err = locked_paragraphs(&lock, &cache).unwrap_err();
        assert!(matches!(err, ParagraphError::NotCached { .. }), "{err}");
        assert!(err.to_string().contains("build again"), "{err}");
    }
}

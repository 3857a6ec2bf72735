//! Finding each locked package's own paragraph in the `Packages` indexes
//! the lock was resolved from, as the exact text the archive published.
//!
//! Bootstrap needs two things from those paragraphs: the fields that decide
//! the essential set (`Essential`, `Priority`, `Depends`, …) and the text
//! itself, which the local repository republishes unchanged except for
//! `Filename`. A paragraph is matched by name *and* by the `.deb`'s SHA-256,
//! so an index holding several versions of a package still yields the one
//! the lock pinned.

use std::collections::HashMap;

use crate::lock::{Lock, LockedPackage};

/// Why the locked packages could not all be found in the indexes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParagraphError {
    /// A locked package has no paragraph with its name and hash.
    #[error(
        "package {name} {version} (sha256 {sha256}) is in the lock but not in its Packages index"
    )]
    NotInIndex {
        /// The package's name.
        name: String,
        /// Its locked version.
        version: String,
        /// Its locked SHA-256.
        sha256: String,
    },
}

/// Every locked package with the raw text of its index paragraph (fields
/// and continuation lines, without the blank line after it), in lock order.
pub fn locked_paragraphs<'l, 't>(
    lock: &'l Lock,
    index_texts: &[&'t str],
) -> Result<Vec<(&'l LockedPackage, &'t str)>, ParagraphError> {
    let mut wanted: HashMap<&str, &LockedPackage> = lock
        .packages
        .iter()
        .map(|package| (package.name.as_str(), package))
        .collect();
    let mut found: HashMap<&str, &'t str> = HashMap::new();
    for text in index_texts {
        for paragraph in raw_paragraphs(text) {
            let Some(name) = field_value(paragraph, "Package") else {
                continue;
            };
            let Some(package) = wanted.get(name) else {
                continue;
            };
            if field_value(paragraph, "SHA256") == Some(package.sha256.as_str()) {
                found.insert(package.name.as_str(), paragraph);
                wanted.remove(name);
                if wanted.is_empty() {
                    break;
                }
            }
        }
    }
    lock.packages
        .iter()
        .map(|package| {
            found
                .get(package.name.as_str())
                .map(|text| (package, *text))
                .ok_or_else(|| ParagraphError::NotInIndex {
                    name: package.name.clone(),
                    version: package.version.clone(),
                    sha256: package.sha256.clone(),
                })
        })
        .collect()
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
mod tests {
    use super::*;

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
}

//! Finding the Debian mirror the host already uses.
//!
//! When a manifest names no `mirror`, kiln uses the archive the host's apt
//! sources name, so a build goes to the same (often local or proxied)
//! mirror as `apt-get` on that machine — and no mirror host name ever has
//! to be written into kiln. Both formats are read: one-line `.list` files
//! (`/etc/apt/sources.list`, `sources.list.d/*.list`) and deb822 `.sources`
//! files.

use std::path::{Path, PathBuf};

use super::deb822::Paragraphs;

/// One `deb` entry of the host's apt sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// The archive's base URL, without a trailing slash.
    pub uri: String,
    /// The suites (`bookworm`, `bookworm-updates`, …).
    pub suites: Vec<String>,
    /// The components (`main`, …).
    pub components: Vec<String>,
    /// The keyring the entry trusts (`Signed-By`), when it names a file.
    pub signed_by: Option<PathBuf>,
    /// The file the entry was read from, for messages.
    pub origin: PathBuf,
}

/// The files apt reads its sources from, under `etc_apt` (normally
/// `/etc/apt`), in apt's order: `sources.list`, then `sources.list.d/`
/// sorted by name.
pub fn source_files(etc_apt: &Path) -> Vec<PathBuf> {
    let mut files = vec![etc_apt.join("sources.list")];
    files.extend(files_with_extensions(
        &etc_apt.join("sources.list.d"),
        &["list", "sources"],
    ));
    files.into_iter().filter(|path| path.is_file()).collect()
}

/// The files in `dir` whose extension is one of `extensions`, sorted by
/// name as apt reads its `.d` directories; none when `dir` cannot be read.
pub fn files_with_extensions(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| extensions.iter().any(|wanted| ext == *wanted))
        })
        .collect();
    files.sort();
    files
}

/// Every enabled `deb` entry in the given files, in order. Unreadable or
/// malformed files are skipped: they are the host's business, and apt
/// itself would have complained about them.
pub fn read_entries(files: &[PathBuf]) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if file.extension().is_some_and(|ext| ext == "sources") {
            entries.extend(parse_deb822_sources(&text, file));
        } else {
            entries.extend(text.lines().filter_map(|line| parse_one_line(line, file)));
        }
    }
    entries
}

/// Parses a one-line entry: `deb [options] URI SUITE [COMPONENT...]`.
fn parse_one_line(line: &str, origin: &Path) -> Option<SourceEntry> {
    let line = line.split('#').next().unwrap_or("").trim();
    let rest = line.strip_prefix("deb")?;
    if !rest.starts_with([' ', '\t']) {
        return None; // `deb-src`
    }
    let mut rest = rest.trim_start();
    let mut signed_by = None;
    if let Some(options) = rest.strip_prefix('[') {
        let (options, after) = options.split_once(']')?;
        for option in options.split_whitespace() {
            if let Some(path) = option.strip_prefix("signed-by=") {
                signed_by = Some(PathBuf::from(path));
            }
        }
        rest = after.trim_start();
    }
    let mut words = rest.split_whitespace();
    let uri = words.next()?.trim_end_matches('/').to_string();
    let suite = words.next()?.to_string();
    Some(SourceEntry {
        uri,
        suites: vec![suite],
        components: words.map(str::to_string).collect(),
        signed_by,
        origin: origin.to_path_buf(),
    })
}

/// Parses the `Types: deb` paragraphs of a deb822 `.sources` file.
fn parse_deb822_sources(text: &str, origin: &Path) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    for paragraph in Paragraphs::new(text) {
        let Ok(paragraph) = paragraph else { break };
        let words = |name: &str| -> Vec<String> {
            paragraph
                .get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        if paragraph
            .get("Enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        // `Signed-By` may hold an inline key block instead of a path.
        let signed_by = paragraph
            .get("Signed-By")
            .filter(|v| v.starts_with('/') && !v.contains('\n'))
            .map(PathBuf::from);
        for uri in words("URIs") {
            entries.push(SourceEntry {
                uri: uri.trim_end_matches('/').to_string(),
                suites: words("Suites"),
                components: words("Components"),
                signed_by: signed_by.clone(),
                origin: origin.to_path_buf(),
            });
        }
    }
    entries
}

/// The entry to use as the mirror for `release`: the first whose suites
/// name the release itself, else the first that serves a release's main
/// suite (not `-updates`, `-security` or `-backports`, which live in
/// archives of their own).
pub fn mirror_for<'a>(entries: &'a [SourceEntry], release: &str) -> Option<&'a SourceEntry> {
    entries
        .iter()
        .find(|entry| entry.suites.iter().any(|suite| suite == release))
        .or_else(|| {
            entries.iter().find(|entry| {
                entry.suites.iter().any(|suite| {
                    !["-updates", "-security", "-backports", "/updates"]
                        .iter()
                        .any(|tail| suite.ends_with(tail))
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_and_picks_the_release_mirror() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("sources.list"),
            "# comment\ndeb-src http://src.example.invalid/debian bookworm main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://one.example.invalid/debian/ bookworm-updates main\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb\n# a comment between fields\nURIs: http://two.example.invalid/debian\n\
             Suites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/x.gpg\n\n\
             Types: deb\nURIs: http://sec.example.invalid/debian-security\nSuites: bookworm-security\n\
             Components: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.example.invalid\nSuites: bookworm\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/ignored.disabled"),
            "deb http://x bookworm main\n",
        )
        .unwrap();

        let entries = read_entries(&source_files(dir.path()));
        let uris: Vec<&str> = entries.iter().map(|e| e.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "http://one.example.invalid/debian",
                "http://two.example.invalid/debian",
                "http://sec.example.invalid/debian-security"
            ]
        );
        assert_eq!(entries[0].signed_by.as_deref(), Some(Path::new("/k.gpg")));

        let mirror = mirror_for(&entries, "bookworm").unwrap();
        assert_eq!(mirror.uri, "http://two.example.invalid/debian");
        assert_eq!(
            mirror.signed_by.as_deref(),
            Some(Path::new("/usr/share/keyrings/x.gpg"))
        );
        // A release the host does not list: the first main-suite archive.
        assert_eq!(
            mirror_for(&entries, "trixie").unwrap().uri,
            "http://two.example.invalid/debian"
        );
        assert!(mirror_for(&entries[2..], "trixie").is_none());
    }
}

//! The element search path: where kiln looks for element directories.
//!
//! An element is a directory `<dir>/<name>/` in one of an ordered list of
//! directories: the user's `--elements-path` entries, then the colon list
//! from `KILN_ELEMENTS_PATH` (or DIB's `ELEMENTS_PATH`), then kiln's
//! built-in `elements/`. As in diskimage-builder, an earlier directory wins
//! over a later one, so a user can override a built-in element by name;
//! the hidden copies are kept so the plan can warn about them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::manifest::ElementName;

/// The environment variable kiln reads its extra element directories from.
pub const KILN_ELEMENTS_PATH_VAR: &str = "KILN_ELEMENTS_PATH";

/// diskimage-builder's variable, read when kiln's own is unset so that an
/// existing DIB setup works unchanged.
pub const DIB_ELEMENTS_PATH_VAR: &str = "ELEMENTS_PATH";

/// An ordered list of directories that hold elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
    /// kiln's built-in directory (absolute), also in `dirs`.
    builtin: PathBuf,
}

/// One element found on the search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The element's name: its directory's name.
    pub name: ElementName,
    /// The element's directory, the one that wins.
    pub dir: PathBuf,
    /// Directories of elements with the same name later on the path, which
    /// this one hides.
    pub shadows: Vec<PathBuf>,
}

impl SearchPath {
    /// Builds the path from the command line's entries, the environment's
    /// colon list and the built-in directory, in that order of precedence.
    /// Empty entries in the colon list (`a::b`, a trailing `:`) are skipped,
    /// as a shell's `PATH` handling would make them mean the current
    /// directory, which is never what a build wants.
    pub fn from_parts(cli: &[PathBuf], env: Option<&str>, builtin: &Path) -> Self {
        let mut dirs: Vec<PathBuf> = cli.to_vec();
        if let Some(list) = env {
            dirs.extend(list.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
        }
        let builtin = std::path::absolute(builtin).unwrap_or_else(|_| builtin.to_path_buf());
        dirs.push(builtin.clone());
        // Absolute: outside-chroot hooks run, and source their
        // `environment.d` files, from other working directories.
        for dir in &mut dirs {
            if let Ok(absolute) = std::path::absolute(&*dir) {
                *dir = absolute;
            }
        }
        // The same directory twice would make every element in it shadow
        // itself; keep its first (highest-precedence) place.
        let mut seen = Vec::new();
        dirs.retain(|d| {
            if seen.contains(d) {
                false
            } else {
                seen.push(d.clone());
                true
            }
        });
        SearchPath { dirs, builtin }
    }

    /// Builds the path as [`SearchPath::from_parts`] does, reading the
    /// colon list from `KILN_ELEMENTS_PATH`, or `ELEMENTS_PATH` when that is
    /// unset.
    pub fn from_env(cli: &[PathBuf], builtin: &Path) -> Self {
        let env = std::env::var(KILN_ELEMENTS_PATH_VAR)
            .or_else(|_| std::env::var(DIB_ELEMENTS_PATH_VAR))
            .ok();
        Self::from_parts(cli, env.as_deref(), builtin)
    }

    /// Whether `element_dir` is one of kiln's built-in elements.
    pub fn is_builtin(&self, element_dir: &Path) -> bool {
        element_dir.parent() == Some(self.builtin.as_path())
    }

    /// The directories searched, first (winning) to last.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Finds the element called `name`: the first directory on the path
    /// that has a `name/` subdirectory (a symlink to one counts, as it does
    /// for DIB).
    pub fn find(&self, name: &ElementName) -> Option<Element> {
        let mut found = self
            .dirs
            .iter()
            .map(|d| d.join(name.as_str()))
            .filter(|candidate| candidate.is_dir());
        let dir = found.next()?;
        Some(Element {
            name: name.clone(),
            dir,
            shadows: found.collect(),
        })
    }

    /// Every element visible on the path, sorted by name. Directories that
    /// do not exist or cannot be read are skipped: a missing path entry is
    /// a normal state (a fresh checkout without a user element directory),
    /// and a named element that cannot be found is reported by the plan.
    /// Entries whose names are not valid element names are not elements.
    pub fn list(&self) -> Vec<Element> {
        let mut by_name: BTreeMap<ElementName, Element> = BTreeMap::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut here: Vec<(ElementName, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| {
                    let name: ElementName = e.file_name().to_str()?.parse().ok()?;
                    Some((name, e.path()))
                })
                .collect();
            here.sort();
            for (name, path) in here {
                match by_name.get_mut(&name) {
                    Some(winner) => winner.shadows.push(path),
                    None => {
                        by_name.insert(
                            name.clone(),
                            Element {
                                name,
                                dir: path,
                                shadows: Vec::new(),
                            },
                        );
                    }
                }
            }
        }
        by_name.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::fixtures;

    fn name(s: &str) -> ElementName {
        s.parse().expect("valid name")
    }

    #[test]
    fn order_is_cli_then_env_then_builtin() {
        let path = SearchPath::from_parts(
            &[PathBuf::from("/cli")],
            Some("/env1::/env2:"),
            Path::new("/builtin"),
        );
        assert_eq!(
            path.dirs(),
            &[
                PathBuf::from("/cli"),
                PathBuf::from("/env1"),
                PathBuf::from("/env2"),
                PathBuf::from("/builtin")
            ]
        );
    }

    #[test]
    fn repeated_directory_keeps_its_first_place() {
        let path = SearchPath::from_parts(&[PathBuf::from("/a")], Some("/b:/a"), Path::new("/a"));
        assert_eq!(path.dirs(), &[PathBuf::from("/a"), PathBuf::from("/b")]);
    }

    #[test]
    fn earlier_directory_wins_and_records_the_hidden_one() {
        let path = SearchPath::from_parts(&[fixtures("overlay")], None, &fixtures("basic"));
        let lib = path.find(&name("fixture-lib")).expect("found");
        assert_eq!(lib.dir, fixtures("overlay").join("fixture-lib"));
        assert_eq!(lib.shadows, vec![fixtures("basic").join("fixture-lib")]);
        let os = path.find(&name("fixture-os")).expect("found");
        assert!(os.shadows.is_empty());
        assert!(path.find(&name("no-such-element")).is_none());
    }

    #[test]
    fn list_shows_every_visible_element_once() {
        let path = SearchPath::from_parts(&[fixtures("overlay")], None, &fixtures("basic"));
        let listed = path.list();
        let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["fixture-app", "fixture-legacy", "fixture-lib", "fixture-os"]
        );
        let lib = listed
            .iter()
            .find(|e| e.name.as_str() == "fixture-lib")
            .expect("listed");
        assert_eq!(lib.dir, fixtures("overlay").join("fixture-lib"));
        assert_eq!(lib.shadows.len(), 1);
    }

    #[test]
    fn missing_directories_are_skipped() {
        let path =
            SearchPath::from_parts(&[PathBuf::from("/no/such/dir")], None, &fixtures("basic"));
        assert_eq!(path.list().len(), 4);
    }
}

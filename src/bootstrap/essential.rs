//! Which locked packages bootstrap unpacks by hand before dpkg can run.
//!
//! The two reference tools differ. debootstrap 1.0.128 (bookworm) extracts
//! every `Priority: required` package (`work_out_debs` in
//! `scripts/debian-common`), adding `usr-is-merged` on bookworm, then
//! installs `apt` (minbase) with dpkg inside the chroot. mmdebstrap 1.3
//! extracts `?essential` as apt resolves it, i.e. every `Essential: yes`
//! package *and its dependencies*, then installs the rest with apt.
//! `Essential: yes` alone is not enough: `coreutils` is essential but the
//! `libc6` it needs is only `Priority: required`, so `chroot /bin/true`
//! would fail.
//!
//! kiln takes the union of both seeds (`Essential: yes` or
//! `Priority: required`), plus `apt`, which installs everything after this
//! stage (Debian's archive makes it `required`, Ubuntu's only `important`;
//! debootstrap installs it with dpkg in either case), and closes it over
//! `Pre-Depends` and `Depends`
//! within the lock, taking for each dependency the first alternative the
//! lock contains (by name or through `Provides`). That is a superset of
//! both tools' first stage for the same packages, so the unpacked tree can
//! always run the target's dpkg, and it never adds a package the lock does
//! not pin.

use std::collections::{BTreeSet, HashMap};

use crate::apt::deb822::{Paragraphs, parse_provides, parse_relationships};

use super::paragraphs::LockedParagraph;

/// The package that installs the rest: always in the first stage.
const BOOTSTRAP_APT: &str = "apt";

/// Why the essential set could not be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EssentialError {
    /// A locked package's paragraph cannot be read.
    #[error("the index paragraph of {package} cannot be read: {message}")]
    Invalid {
        /// The package.
        package: String,
        /// What is wrong.
        message: String,
    },
}

/// What one locked package contributes to the choice.
struct Facts {
    seed: bool,
    /// Each dependency's alternatives, by package name.
    depends: Vec<Vec<String>>,
}

/// The locked packages to unpack first, in lock order, from the locked
/// packages' `paragraphs` (in lock order), each with its verified `.deb`;
/// see the module documentation for the rule.
pub fn essential_set<'p, 'l>(
    paragraphs: &'p [LockedParagraph<'l>],
) -> Result<Vec<&'p LockedParagraph<'l>>, EssentialError> {
    let mut facts: HashMap<&str, Facts> = HashMap::new();
    // Real package names and the names they provide, to the locked package.
    let mut providers: HashMap<String, &str> = HashMap::new();
    for LockedParagraph { package, text, .. } in paragraphs {
        let invalid = |message: String| EssentialError::Invalid {
            package: package.name.clone(),
            message,
        };
        let paragraph = Paragraphs::new(text)
            .next()
            .ok_or_else(|| invalid("empty paragraph".to_string()))?
            .map_err(|e| invalid(e.to_string()))?;
        let essential = paragraph
            .get("Essential")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let required = paragraph
            .get("Priority")
            .is_some_and(|v| v.eq_ignore_ascii_case("required"));
        let mut depends = Vec::new();
        for field in ["Pre-Depends", "Depends"] {
            if let Some(value) = paragraph.get(field) {
                let parsed = parse_relationships(value).map_err(|e| invalid(e.to_string()))?;
                depends.extend(parsed.into_iter().map(|dependency| {
                    dependency
                        .alternatives
                        .into_iter()
                        .map(|alternative| alternative.package)
                        .collect::<Vec<_>>()
                }));
            }
        }
        if let Some(value) = paragraph.get("Provides") {
            for provided in parse_provides(value).map_err(|e| invalid(e.to_string()))? {
                providers
                    .entry(provided.package)
                    .or_insert(package.name.as_str());
            }
        }
        facts.insert(
            package.name.as_str(),
            Facts {
                seed: essential || required || package.name == BOOTSTRAP_APT,
                depends,
            },
        );
    }
    // A real package always wins over a provider of the same name.
    for LockedParagraph { package, .. } in paragraphs {
        providers.insert(package.name.clone(), package.name.as_str());
    }

    let mut chosen: BTreeSet<&str> = BTreeSet::new();
    let mut queue: Vec<&str> = facts
        .iter()
        .filter(|(_, facts)| facts.seed)
        .map(|(name, _)| *name)
        .collect();
    while let Some(name) = queue.pop() {
        if !chosen.insert(name) {
            continue;
        }
        let Some(package_facts) = facts.get(name) else {
            continue;
        };
        for alternatives in &package_facts.depends {
            // Already satisfied by something chosen: nothing to add.
            if alternatives
                .iter()
                .any(|alt| providers.get(alt).is_some_and(|p| chosen.contains(p)))
            {
                continue;
            }
            if let Some(provider) = alternatives.iter().find_map(|alt| providers.get(alt)) {
                queue.push(provider);
            }
        }
    }
    Ok(paragraphs
        .iter()
        .filter(|paragraph| chosen.contains(paragraph.package.name.as_str()))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bootstrap::paragraphs::field_value;
    use crate::bootstrap::paragraphs::raw_paragraphs;
    use crate::bootstrap::paragraphs::tests::paragraphs_of;
    use crate::lock::{Lock, LockedBase, LockedPackage};

    /// A lock of the given packages (name, sha256), with dummy other fields.
    pub(crate) fn lock_of(packages: &[(&str, &str)]) -> Lock {
        Lock {
            version: 1,
            kiln: "test".into(),
            manifest: "sha256:0".into(),
            base: LockedBase {
                distro: "debian".into(),
                release: "bookworm".into(),
                arch: "amd64".into(),
                image: None,
            },
            repositories: Vec::new(),
            source_date_epoch: 0,
            packages: packages
                .iter()
                .map(|(name, sha256)| LockedPackage {
                    name: (*name).into(),
                    version: "1".into(),
                    arch: "amd64".into(),
                    priority: None,
                    size: 1,
                    sha256: (*sha256).into(),
                    repository: "debian/bookworm".into(),
                    filename: format!("pool/main/{name}_1_amd64.deb"),
                })
                .collect(),
            native_twins: Vec::new(),
            elements: Vec::new(),
        }
    }

    const INDEX: &str = "\
Package: coreutils
Essential: yes
Priority: required
Pre-Depends: libc6 (>= 2.34)
SHA256: c1

Package: libc6
Priority: optional
Depends: libgcc-s1
SHA256: l1

Package: libgcc-s1
Depends: gcc-12-base | gcc-base
SHA256: g1

Package: other-base
Provides: gcc-base
SHA256: o1

Package: init-system-helpers
Priority: optional
Depends: usrmerge | usr-is-merged
SHA256: i1

Package: usr-is-merged
Priority: optional
SHA256: u1

Package: apt
Priority: important
Depends: libc6
SHA256: a1

Package: mawk
Priority: required
SHA256: m1

Package: coreutils
Essential: yes
SHA256: c2-other-version
";

    /// `lock` with each package's priority taken from its paragraph in
    /// `index`, as `kiln lock` takes it from the archive's.
    fn with_priorities(mut lock: Lock, index: &str) -> Lock {
        for package in &mut lock.packages {
            package.priority = raw_paragraphs(index)
                .find(|p| field_value(p, "Package") == Some(package.name.as_str()))
                .and_then(|p| field_value(p, "Priority"))
                .map(str::to_string);
        }
        lock
    }

    #[test]
    fn seeds_are_essential_or_required_closed_over_dependencies() {
        let lock = with_priorities(
            lock_of(&[
                ("apt", "a1"),
                ("coreutils", "c1"),
                ("libc6", "l1"),
                ("libgcc-s1", "g1"),
                ("mawk", "m1"),
                ("other-base", "o1"),
            ]),
            INDEX,
        );
        let names: Vec<_> = essential_set(&paragraphs_of(&lock, INDEX))
            .unwrap()
            .into_iter()
            .map(|p| p.package.name.as_str())
            .collect();
        // libgcc-s1's `gcc-12-base | gcc-base` is met by the provider in the
        // lock; apt is neither essential nor required here (as in Ubuntu's
        // archive), but it installs the rest, so it comes first too.
        assert_eq!(
            names,
            [
                "apt",
                "coreutils",
                "libc6",
                "libgcc-s1",
                "mawk",
                "other-base"
            ]
        );
    }

    #[test]
    fn the_archive_priority_decides_not_the_packages_own() {
        // mawk's own control file says `required`; the archive (the lock)
        // says `optional`, as an override file can.
        let mut lock = with_priorities(lock_of(&[("mawk", "m1")]), INDEX);
        lock.packages[0].priority = Some("optional".into());
        assert!(
            essential_set(&paragraphs_of(&lock, INDEX))
                .unwrap()
                .is_empty()
        );
        lock.packages[0].priority = Some("required".into());
        assert_eq!(
            essential_set(&paragraphs_of(&lock, INDEX)).unwrap().len(),
            1
        );
    }
}

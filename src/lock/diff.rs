//! What changed between two locks, as `kiln lock --update` reports it:
//! like `cargo update`, one line per package upgraded, downgraded, added,
//! removed or rebuilt (same version, another file), one per element whose
//! tree changed, one when the base image is another file, and a summary. This is how a user learns that a security
//! update is waiting: `kiln lock --update --dry-run` shows it without
//! writing anything. Also how a lock differs from what its own pinned
//! indexes resolve ([`edited`]): what `kiln build --locked` names when a
//! lock was edited by hand, field by field.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::apt::version::Version;

use super::{Lock, LockedPackage};

/// One change of one package or element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A newer version.
    Upgraded {
        /// The package.
        name: String,
        /// The old version.
        from: String,
        /// The new version.
        to: String,
        /// The repository it now comes from (`debian/bookworm-security`).
        repository: String,
    },
    /// An older version (a package the archive took back, or a pin).
    Downgraded {
        /// The package.
        name: String,
        /// The old version.
        from: String,
        /// The new version.
        to: String,
        /// The repository it now comes from (`debian/bookworm-security`).
        repository: String,
    },
    /// The same version with another file: a binary rebuild, or an
    /// archive that replaced a file, which is worth a look.
    Rebuilt {
        /// The package.
        name: String,
        /// The version.
        version: String,
        /// The repository it now comes from.
        repository: String,
    },
    /// A package the old lock did not have.
    Added {
        /// The package.
        name: String,
        /// Its version.
        version: String,
        /// The repository it comes from.
        repository: String,
    },
    /// A package the new lock does not have.
    Removed {
        /// The package.
        name: String,
        /// Its old version.
        version: String,
    },
    /// The base image is another file (a new build of the release, or
    /// the file at the URL changed).
    BaseImage {
        /// The old image: its version (or URL) and SHA-256.
        from: String,
        /// The new one.
        to: String,
    },
    /// An element whose tree hash changed, appeared or went away.
    Element {
        /// The element.
        name: String,
        /// `changed`, `added` or `removed`.
        how: &'static str,
    },
}

/// The changes from `old` to `new`, packages by name, then elements in
/// the new lock's order.
pub fn changes(old: &Lock, new: &Lock) -> Vec<Change> {
    let by_name = |lock: &Lock| -> BTreeMap<String, LockedPackage> {
        lock.packages
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect()
    };
    let (before, after) = (by_name(old), by_name(new));
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    let mut changes = Vec::new();
    for name in names {
        let name = name.clone();
        match (before.get(&name), after.get(&name)) {
            (Some(old), Some(new)) if old.version != new.version => {
                let (from, to) = (old.version.clone(), new.version.clone());
                let repository = new.repository.clone();
                changes.push(match compare_versions(&from, &to) {
                    Ordering::Greater => Change::Downgraded {
                        name,
                        from,
                        to,
                        repository,
                    },
                    _ => Change::Upgraded {
                        name,
                        from,
                        to,
                        repository,
                    },
                });
            }
            (Some(old), Some(new)) if old.sha256 != new.sha256 => changes.push(Change::Rebuilt {
                name,
                version: new.version.clone(),
                repository: new.repository.clone(),
            }),
            (Some(_), Some(_)) => {}
            (None, Some(new)) => changes.push(Change::Added {
                name,
                version: new.version.clone(),
                repository: new.repository.clone(),
            }),
            (Some(old), None) => changes.push(Change::Removed {
                name,
                version: old.version.clone(),
            }),
            (None, None) => {}
        }
    }
    if let (Some(before), Some(after)) = (&old.base.image, &new.base.image)
        && before.sha256 != after.sha256
    {
        let describe = |image: &super::LockedImage| {
            format!(
                "{} (sha256 {})",
                image.version.as_deref().unwrap_or(&image.url),
                image.sha256
            )
        };
        changes.insert(
            0,
            Change::BaseImage {
                from: describe(before),
                to: describe(after),
            },
        );
    }
    let old_trees: BTreeMap<&str, &str> = old
        .elements
        .iter()
        .map(|e| (e.name.as_str(), e.tree.as_str()))
        .collect();
    for element in &new.elements {
        let how = match old_trees.get(element.name.as_str()) {
            None => "added",
            Some(tree) if *tree != element.tree => "changed",
            Some(_) => continue,
        };
        changes.push(Change::Element {
            name: element.name.clone(),
            how,
        });
    }
    for element in &old.elements {
        if !new.elements.iter().any(|e| e.name == element.name) {
            changes.push(Change::Element {
                name: element.name.clone(),
                how: "removed",
            });
        }
    }
    changes
}

/// Debian's version order; text order for a version that does not parse
/// (a lock edited by hand), so a report never fails.
fn compare_versions(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

/// The report: one line per change, with the repository the new lock
/// takes the package from, then a summary line. Empty when nothing
/// changed.
pub fn render(changes: &[Change]) -> String {
    let mut out = String::new();
    let (mut upgraded, mut downgraded, mut rebuilt, mut added, mut removed, mut elements) =
        (0, 0, 0, 0, 0, 0);
    let mut image = false;
    for change in changes {
        // `write!` to a String cannot fail.
        let _ = match change {
            Change::Upgraded {
                name,
                from,
                to,
                repository,
            } => {
                upgraded += 1;
                writeln!(out, "   Upgrading {name} {from} -> {to} ({repository})")
            }
            Change::Downgraded {
                name,
                from,
                to,
                repository,
            } => {
                downgraded += 1;
                writeln!(out, " Downgrading {name} {from} -> {to} ({repository})")
            }
            Change::Rebuilt {
                name,
                version,
                repository,
            } => {
                rebuilt += 1;
                writeln!(
                    out,
                    "   Replacing {name} {version}: same version, another file ({repository})"
                )
            }
            Change::Added {
                name,
                version,
                repository,
            } => {
                added += 1;
                writeln!(out, "      Adding {name} {version} ({repository})")
            }
            Change::Removed { name, version } => {
                removed += 1;
                writeln!(out, "    Removing {name} {version}")
            }
            Change::Element { name, how } => {
                elements += 1;
                writeln!(out, "     Element {name}: {how}")
            }
            Change::BaseImage { from, to } => {
                image = true;
                writeln!(out, "  Base image {from} -> {to}")
            }
        };
    }
    if changes.is_empty() {
        return out;
    }
    let parts: Vec<String> = [
        (upgraded, "upgraded"),
        (downgraded, "downgraded"),
        (rebuilt, "replaced"),
        (added, "added"),
        (removed, "removed"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let packages = upgraded + downgraded + rebuilt + added + removed;
    let mut summary = String::new();
    if image {
        summary.push_str("the base image changed");
    }
    if packages > 0 {
        if !summary.is_empty() {
            summary.push_str("; ");
        }
        let _ = write!(
            summary,
            "{packages} package{} changed ({})",
            if packages == 1 { "" } else { "s" },
            parts.join(", ")
        );
    }
    if elements > 0 {
        if !summary.is_empty() {
            summary.push_str("; ");
        }
        let _ = write!(
            summary,
            "{elements} element{} changed",
            if elements == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(out, "{summary}");
    out
}

/// One way a lock's packages differ from what its own pinned indexes
/// resolve the imagefile to: the mark of a lock edited by hand (or by a
/// tool that is not `kiln lock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edited {
    /// The indexes give the package; the lock lost it.
    Removed {
        /// The package.
        name: String,
        /// The version the indexes give.
        version: String,
    },
    /// The lock has a package nothing asks for.
    Added {
        /// The package.
        name: String,
        /// The version the lock gives.
        version: String,
    },
    /// One field of a package has another value.
    Field {
        /// The package.
        name: String,
        /// The field, as the lock spells it (`sha256`, `version`).
        field: &'static str,
        /// The lock's value.
        lock: String,
        /// The indexes' value.
        index: String,
    },
}

impl std::fmt::Display for Edited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Edited::Removed { name, version } => write!(
                f,
                "`{name}` {version} is missing: the pinned indexes resolve it, the lock has no entry"
            ),
            Edited::Added { name, version } => write!(
                f,
                "`{name}` {version} is an extra entry: neither the imagefile, its elements nor any locked package needs it"
            ),
            Edited::Field {
                name,
                field,
                lock,
                index,
            } => write!(
                f,
                "`{name}`: {field} is {lock} in the lock, {index} in the pinned index"
            ),
        }
    }
}

/// How `locked` (a lock's packages) differs from `resolved` (what its
/// pinned indexes give), by package name, each field of a package apart.
pub fn edited(locked: &[LockedPackage], resolved: &[LockedPackage]) -> Vec<Edited> {
    let by_name = |packages: &[LockedPackage]| -> BTreeMap<String, LockedPackage> {
        packages
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect()
    };
    let (lock, index) = (by_name(locked), by_name(resolved));
    let mut names: Vec<&String> = lock.keys().chain(index.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        match (lock.get(name), index.get(name)) {
            (Some(l), None) => out.push(Edited::Added {
                name: name.clone(),
                version: l.version.clone(),
            }),
            (None, Some(i)) => out.push(Edited::Removed {
                name: name.clone(),
                version: i.version.clone(),
            }),
            (Some(l), Some(i)) => {
                let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "absent".to_string());
                let fields = [
                    ("version", l.version.clone(), i.version.clone()),
                    ("arch", l.arch.clone(), i.arch.clone()),
                    ("priority", show(&l.priority), show(&i.priority)),
                    ("size", l.size.to_string(), i.size.to_string()),
                    ("sha256", l.sha256.clone(), i.sha256.clone()),
                    ("repository", l.repository.clone(), i.repository.clone()),
                    ("filename", l.filename.clone(), i.filename.clone()),
                ];
                for (field, lock, index) in fields {
                    if lock != index {
                        out.push(Edited::Field {
                            name: name.clone(),
                            field,
                            lock,
                            index,
                        });
                    }
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::essential::tests::lock_of;
    use crate::lock::LockedElement;

    fn lock(packages: &[(&str, &str, &str)], elements: &[(&str, &str)]) -> Lock {
        let pairs: Vec<(&str, &str)> = packages
            .iter()
            .map(|(name, _, sha)| (*name, *sha))
            .collect();
        let mut lock = lock_of(&pairs);
        for (package, (_, version, _)) in lock.packages.iter_mut().zip(packages) {
            package.version = (*version).to_string();
            // Security updates come from the security suite.
            if version.contains("+deb12u") {
                package.repository = "debian/bookworm-security".to_string();
            }
        }
        lock.elements = elements
            .iter()
            .map(|(name, tree)| LockedElement {
                name: (*name).into(),
                origin: "builtin".into(),
                tree: (*tree).into(),
            })
            .collect();
        lock
    }

    #[test]
    fn a_new_base_image_is_reported_first_with_its_version_and_hash() {
        let image = |version: &str, sha256: &str| crate::lock::LockedImage {
            url: format!("https://site/Fedora-Cloud-Base-Generic-41-{version}.x86_64.qcow2"),
            size: 1,
            sha256: sha256.into(),
            format: "qcow2".into(),
            checksums: None,
            signed_by: None,
            version: Some(version.into()),
        };
        let mut old = lock(&[], &[("fedora", "t1")]);
        old.base.image = Some(image("41-1.4", "aa"));
        let mut new = old.clone();
        assert!(changes(&old, &new).is_empty());
        new.base.image = Some(image("41-1.5", "bb"));
        new.elements[0].tree = "t2".into();
        assert_eq!(
            render(&changes(&old, &new)),
            "  Base image 41-1.4 (sha256 aa) -> 41-1.5 (sha256 bb)\n\
             \x20    Element fedora: changed\n\
             the base image changed; 1 element changed\n"
        );
    }

    #[test]
    fn every_kind_of_change_is_reported_with_a_summary() {
        let old = lock(
            &[
                ("libc6", "2.36-9+deb12u10", "a"),
                ("libexpat1", "2.5.0-1+deb12u1", "b"),
                ("gone", "1.0", "c"),
                ("same", "1.0", "d"),
                ("rebuilt", "1.0", "e"),
                ("taken-back", "2.0~rc1", "f"),
            ],
            &[("base", "t1"), ("old-element", "t2")],
        );
        let new = lock(
            &[
                ("libc6", "2.36-9+deb12u13", "a2"),
                ("libexpat1", "2.5.0-1+deb12u2", "b2"),
                ("new", "3", "g"),
                ("same", "1.0", "d"),
                ("rebuilt", "1.0", "e2"),
                ("taken-back", "1.9", "f2"),
            ],
            &[("base", "t1b"), ("new-element", "t3")],
        );
        insta::assert_snapshot!(render(&changes(&old, &new)));
    }

    #[test]
    fn nothing_changed_prints_nothing() {
        let one = lock(&[("libc6", "2.36", "a")], &[("base", "t")]);
        assert_eq!(changes(&one, &one), []);
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn versions_compare_as_debian_does() {
        // Text order would call 1.10 older than 1.9, and 1.0~rc1 newer than 1.0.
        let old = lock(&[("a", "1.9", "x"), ("b", "1.0~rc1", "y")], &[]);
        let new = lock(&[("a", "1.10", "x2"), ("b", "1.0", "y2")], &[]);
        let changes = changes(&old, &new);
        assert!(
            changes.iter().all(|c| matches!(c, Change::Upgraded { .. })),
            "{changes:?}"
        );
    }

    #[test]
    fn a_hand_edit_is_named_by_package_and_field() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        let resolved = lock(
            &[
                ("bash", "5.2", &a),
                ("dash", "0.5", &b),
                ("zlib1g", "1.2", &c),
            ],
            &[],
        )
        .packages;
        let mut locked = resolved.clone();
        let removed = locked.remove(0);
        locked[0].sha256 = "0".repeat(64);
        let mut extra = locked[0].clone();
        extra.name = "zzz-extra".into();
        locked.push(extra);
        let edits = edited(&locked, &resolved);
        assert_eq!(edits.len(), 3, "{edits:?}");
        let text: Vec<String> = edits.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t.starts_with(&format!(
                "`{}` {} is missing",
                removed.name, removed.version
            ))),
            "{text:?}"
        );
        let changed = &resolved[1];
        assert!(
            text.contains(&format!(
                "`{}`: sha256 is {} in the lock, {} in the pinned index",
                changed.name,
                "0".repeat(64),
                changed.sha256
            )),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("`zzz-extra` ") && t.contains("extra entry")),
            "{text:?}"
        );
        assert!(edited(&resolved, &resolved).is_empty());
    }
}

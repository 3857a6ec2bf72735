//! The hook phases of a build and which scripts run in each, in DIB's order.
//!
//! diskimage-builder copies every element's phase directories into one
//! hooks tree (`generate_hooks`, failing on a file name two elements share)
//! and runs each phase with `dib-run-parts`: regular files (symlinks
//! followed) that are executable and whose names match `^[0-9A-Za-z_-]+$`,
//! ordered by `LANG=C sort -n`. Before every phase it sources the
//! `environment.d` files. This module computes the same lists up front so
//! that the build only executes them.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::manifest::ElementName;

use super::search::Element;
use super::{PlanError, PlanWarning, io_error};

/// A hook phase, in the order a build runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PhaseName {
    /// Creates or adapts the initial root tree; outside the chroot.
    Root,
    /// Copies data from the host into the hooks tree; outside the chroot.
    ExtraData,
    /// Prepares package installation (repositories); in the chroot.
    PreInstall,
    /// Installs packages and software; in the chroot.
    Install,
    /// Configures what was installed; in the chroot.
    PostInstall,
    /// Adjusts the tree from the host after the installs; outside.
    PostRoot,
    /// Customises the block device; outside the chroot.
    BlockDevice,
    /// Final tuning from the host before `finalise.d`; outside.
    PreFinalise,
    /// Final tuning in the finished filesystem (bootloader); in the chroot.
    Finalise,
    /// Removes build-time settings from the tree; outside the chroot.
    Cleanup,
}

impl PhaseName {
    /// Every phase, in the order DIB's `disk-image-create` runs them.
    pub const ALL: [PhaseName; 10] = [
        PhaseName::Root,
        PhaseName::ExtraData,
        PhaseName::PreInstall,
        PhaseName::Install,
        PhaseName::PostInstall,
        PhaseName::PostRoot,
        PhaseName::BlockDevice,
        PhaseName::PreFinalise,
        PhaseName::Finalise,
        PhaseName::Cleanup,
    ];

    /// The phase's directory name in an element (`install.d`).
    pub fn dir_name(self) -> &'static str {
        match self {
            PhaseName::Root => "root.d",
            PhaseName::ExtraData => "extra-data.d",
            PhaseName::PreInstall => "pre-install.d",
            PhaseName::Install => "install.d",
            PhaseName::PostInstall => "post-install.d",
            PhaseName::PostRoot => "post-root.d",
            PhaseName::BlockDevice => "block-device.d",
            PhaseName::PreFinalise => "pre-finalise.d",
            PhaseName::Finalise => "finalise.d",
            PhaseName::Cleanup => "cleanup.d",
        }
    }

    /// Whether the phase finishes the image rather than making its tree:
    /// DIB runs these once the disk exists and `/etc/fstab` is written
    /// (`block-device.d` on). kiln writes fstab and snapshots the tree
    /// just before them ([`crate::snapshot`]).
    pub fn finishes_image(self) -> bool {
        matches!(
            self,
            PhaseName::BlockDevice
                | PhaseName::PreFinalise
                | PhaseName::Finalise
                | PhaseName::Cleanup
        )
    }

    /// Whether DIB runs this phase inside the image's chroot
    /// (`run_d_in_target`) rather than on the host (`run_d`).
    pub fn in_chroot(self) -> bool {
        matches!(
            self,
            PhaseName::PreInstall
                | PhaseName::Install
                | PhaseName::PostInstall
                | PhaseName::Finalise
        )
    }

    /// The phase for a directory name such as `install.d`.
    pub fn from_dir_name(name: &str) -> Option<PhaseName> {
        PhaseName::ALL.into_iter().find(|p| p.dir_name() == name)
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// One phase and the scripts it runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Which phase.
    pub name: PhaseName,
    /// Whether it runs inside the chroot.
    pub in_chroot: bool,
    /// The scripts of all elements, merged and in run order.
    pub scripts: Vec<Script>,
}

/// One executable hook script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The element it comes from.
    pub element: ElementName,
    /// Its file name, which orders it within the phase.
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
}

/// One `environment.d` file, sourced before every phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentFile {
    /// The element it comes from.
    pub element: ElementName,
    /// Its file name, which orders it.
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
}

/// Orders script names as `LANG=C sort -n` does in `dib-run-parts`: by the
/// leading (optionally negative) decimal number, a name without one
/// counting as 0, then byte by byte. So `9-b` runs before `10-a`, and
/// `foo` with the zeros.
pub fn run_parts_order(a: &str, b: &str) -> Ordering {
    numeric_prefix(a)
        .cmp(&numeric_prefix(b))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The leading number of a name, as a comparable value of any length.
#[derive(Debug, PartialEq, Eq)]
struct Numeric<'a> {
    negative: bool,
    /// Digits without leading zeros; empty means zero.
    digits: &'a str,
}

impl Ord for Numeric<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        fn magnitude<'a>(n: &Numeric<'a>) -> (usize, &'a str) {
            (n.digits.len(), n.digits)
        }
        fn positive(n: &Numeric<'_>) -> bool {
            !n.negative || n.digits.is_empty()
        }
        match (positive(self), positive(other)) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (true, true) => magnitude(self).cmp(&magnitude(other)),
            (false, false) => magnitude(other).cmp(&magnitude(self)),
        }
    }
}

impl PartialOrd for Numeric<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn numeric_prefix(name: &str) -> Numeric<'_> {
    let trimmed = name.trim_start_matches([' ', '\t']);
    let (negative, rest) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let digits = rest[..end].trim_start_matches('0');
    Numeric { negative, digits }
}

/// Whether `dib-run-parts` would consider a script name (its default
/// `RUN_PARTS_REGEX`, `^[0-9A-Za-z_-]+$`).
fn is_run_parts_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `dib-run-parts` sources an environment file by this name
/// (`[0-9A-Za-z_.-]+`).
fn is_environment_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Whether `dib-run-parts` runs the file at `path`, called `name`: a
/// regular file (after following symlinks), executable, with a run-parts
/// name. The plan picks scripts by this rule; `kiln elements show` and
/// the phases (for what a hook adds) apply the same.
pub fn runs_as_hook(path: &Path, name: &str) -> bool {
    is_run_parts_name(name)
        && std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && is_executable(&meta))
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// A regular file (after following symlinks) in one of an element's hook
/// directories.
struct HookFile {
    name: String,
    path: PathBuf,
    executable: bool,
}

/// Lists the regular files directly in `dir`, sorted by name. A missing
/// directory has none. Subdirectories are not hooks (DIB's `find
/// -maxdepth 1 -xtype f`), nor are dangling symlinks.
fn hook_files(dir: &Path, warnings: &mut Vec<PlanWarning>) -> Result<Vec<HookFile>, PlanError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            warnings.push(PlanWarning::IgnoredHookName { path });
            continue;
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        files.push(HookFile {
            name,
            path,
            executable: is_executable(&meta),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Merges the elements' hook scripts into phases, in run order.
pub(crate) fn collect_phases(
    elements: &[Element],
    warnings: &mut Vec<PlanWarning>,
) -> Result<Vec<Phase>, PlanError> {
    let mut phases = Vec::new();
    for phase in PhaseName::ALL {
        let mut owners: HashMap<String, PathBuf> = HashMap::new();
        let mut scripts = Vec::new();
        for element in elements {
            for file in hook_files(&element.dir.join(phase.dir_name()), warnings)? {
                // DIB refuses any clash, runnable or not, because both files
                // would land at one path in the merged hooks tree.
                if let Some(first) = owners.get(&file.name) {
                    return Err(PlanError::DuplicateHook {
                        dir: phase.dir_name().to_string(),
                        name: file.name,
                        first: first.clone(),
                        second: file.path,
                    });
                }
                owners.insert(file.name.clone(), file.path.clone());
                // Files that do not look like hooks are data the element's
                // scripts read from beside them (`dhcp-interface@.service`,
                // `ttySx.conf`): DIB skips them silently, and so does kiln.
                let runnable_name = is_run_parts_name(&file.name);
                if !file.executable {
                    if runnable_name {
                        warnings.push(PlanWarning::NotExecutable { path: file.path });
                    }
                } else if !runnable_name {
                    if file.name.starts_with(|c: char| c.is_ascii_digit()) {
                        warnings.push(PlanWarning::IgnoredHookName { path: file.path });
                    }
                } else {
                    scripts.push(Script {
                        element: element.name.clone(),
                        name: file.name,
                        path: file.path,
                    });
                }
            }
        }
        scripts.sort_by(|a, b| run_parts_order(&a.name, &b.name));
        phases.push(Phase {
            name: phase,
            in_chroot: phase.in_chroot(),
            scripts,
        });
    }
    Ok(phases)
}

/// Collects every element's `environment.d` files in the order they are
/// sourced.
///
/// `dib-run-parts` sorts their *full paths* with `sort -n`; the paths all
/// start with `/` and share the hooks directory, so no numeric prefix
/// applies and the order is plain byte order of the file names (unlike the
/// scripts: `10-a` sorts before `9-b` here). Executable bits do not matter.
pub(crate) fn collect_environment_files(
    elements: &[Element],
    warnings: &mut Vec<PlanWarning>,
) -> Result<Vec<EnvironmentFile>, PlanError> {
    let mut files: Vec<EnvironmentFile> = Vec::new();
    for element in elements {
        for file in hook_files(&element.dir.join("environment.d"), warnings)? {
            if let Some(first) = files.iter().find(|f| f.name == file.name) {
                return Err(PlanError::DuplicateHook {
                    dir: "environment.d".to_string(),
                    name: file.name,
                    first: first.path.clone(),
                    second: file.path,
                });
            }
            if !is_environment_name(&file.name) {
                warnings.push(PlanWarning::IgnoredHookName { path: file.path });
                continue;
            }
            files.push(EnvironmentFile {
                element: element.name.clone(),
                name: file.name,
                path: file.path,
            });
        }
    }
    files.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_order_and_chroot_match_dib() {
        let dirs: Vec<&str> = PhaseName::ALL.iter().map(|p| p.dir_name()).collect();
        assert_eq!(
            dirs,
            [
                "root.d",
                "extra-data.d",
                "pre-install.d",
                "install.d",
                "post-install.d",
                "post-root.d",
                "block-device.d",
                "pre-finalise.d",
                "finalise.d",
                "cleanup.d"
            ]
        );
        let inside: Vec<&str> = PhaseName::ALL
            .iter()
            .filter(|p| p.in_chroot())
            .map(|p| p.dir_name())
            .collect();
        assert_eq!(
            inside,
            ["pre-install.d", "install.d", "post-install.d", "finalise.d"]
        );
        assert_eq!(
            PhaseName::from_dir_name("install.d"),
            Some(PhaseName::Install)
        );
        assert_eq!(PhaseName::from_dir_name("install"), None);
    }

    #[test]
    fn run_parts_sorts_numerically_then_bytewise() {
        let mut names = vec![
            "10-a", "9-b", "foo", "01-x", "1-a", "Z", "-5-neg", "100", "10-B",
        ];
        names.sort_by(|a, b| run_parts_order(a, b));
        assert_eq!(
            names,
            [
                "-5-neg", "Z", "foo", "01-x", "1-a", "9-b", "10-B", "10-a", "100"
            ]
        );
    }

    #[test]
    fn numbers_longer_than_u64_still_order() {
        assert_eq!(
            run_parts_order("99999999999999999999999-a", "100000000000000000000000-a"),
            Ordering::Less
        );
    }

    #[test]
    fn names_dib_run_parts_accepts() {
        assert!(is_run_parts_name("50-install_things"));
        assert!(!is_run_parts_name("50-install.sh"));
        assert!(!is_run_parts_name(""));
        assert!(is_environment_name("10-foo.bash"));
        assert!(!is_environment_name("10 foo"));
    }
}

//! Packages elements ask for: `package-installs.yaml` / `.json`, the older
//! plain `package-installs` list, and `pkg-map` name translation.
//!
//! Follows DIB's `package-installs-squash` and `pkg-map`: each entry is a
//! package name with options (`phase`, default `install.d`; `uninstall`;
//! `build-only`, meaning install then uninstall; `arch` / `not-arch`;
//! `installtype`; `when`; `dib_python_version`). Names are then translated
//! through the declaring element's `pkg-map` as `pkg-map --missing-ok`
//! does: the most specific of `release`, `distro`, `family`, `default`
//! wins, a name with no mapping is kept, a name mapped to `""` is dropped,
//! and a mapping with spaces names several packages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::{Arch, Distro, ElementName};

use super::phases::PhaseName;
use super::search::Element;
use super::{PlanError, PlanWarning, read_text};

/// One package an element asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRequest {
    /// The package's name for the target distribution, after `pkg-map`.
    pub name: String,
    /// The element that asked for it.
    pub element: ElementName,
}

/// What to install and uninstall in one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhasePackages {
    /// The phase whose scripts install (or remove) them.
    pub phase: PhaseName,
    /// Packages to install, in element order, then file order.
    pub install: Vec<PackageRequest>,
    /// Packages to remove.
    pub uninstall: Vec<PackageRequest>,
}

/// What the package rules are evaluated against.
pub(crate) struct Target<'a> {
    pub(crate) distro: Distro,
    pub(crate) release: Option<&'a str>,
    pub(crate) arch: Arch,
    /// The plan's environment, for `installtype` and `when`.
    pub(crate) environment: &'a dyn Fn(&str) -> Option<String>,
}

/// One package entry's options. Unknown keys are kept so they can be
/// reported rather than silently dropped.
#[derive(Debug, Default, Deserialize)]
struct Options {
    phase: Option<String>,
    uninstall: Option<serde_json::Value>,
    #[serde(rename = "build-only")]
    build_only: Option<serde_json::Value>,
    arch: Option<String>,
    #[serde(rename = "not-arch")]
    not_arch: Option<String>,
    installtype: Option<String>,
    when: Option<When>,
    dib_python_version: Option<serde_json::Value>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum When {
    One(String),
    All(Vec<String>),
}

/// Collects every element's package requests, grouped by phase in phase
/// order (phases with none are left out).
pub(crate) fn collect(
    elements: &[Element],
    target: &Target<'_>,
    warnings: &mut Vec<PlanWarning>,
) -> Result<Vec<PhasePackages>, PlanError> {
    let mut by_phase: BTreeMap<PhaseName, PhasePackages> = BTreeMap::new();
    for element in elements {
        let map = PkgMap::read(&element.dir.join("pkg-map"), target)?;
        for (path, entries) in read_entries(element, warnings)? {
            for (package, options) in entries {
                let Some(actions) = evaluate(element, &path, &package, options, target, warnings)?
                else {
                    continue;
                };
                let (phase, install, uninstall) = actions;
                let slot = by_phase.entry(phase).or_insert_with(|| PhasePackages {
                    phase,
                    install: Vec::new(),
                    uninstall: Vec::new(),
                });
                for name in map.translate(&package) {
                    let request = PackageRequest {
                        name,
                        element: element.name.clone(),
                    };
                    if install && !slot.install.contains(&request) {
                        slot.install.push(request.clone());
                    }
                    if uninstall && !slot.uninstall.contains(&request) {
                        slot.uninstall.push(request);
                    }
                }
            }
        }
    }
    Ok(by_phase.into_values().collect())
}

/// Every element's `pkg-map`, flattened for the target; elements without
/// one are left out.
pub(crate) fn pkg_maps(
    elements: &[Element],
    target: &Target<'_>,
) -> Result<BTreeMap<ElementName, BTreeMap<String, String>>, PlanError> {
    let mut maps = BTreeMap::new();
    for element in elements {
        let map = PkgMap::read(&element.dir.join("pkg-map"), target)?;
        if !map.names.is_empty() {
            maps.insert(element.name.clone(), map.names);
        }
    }
    Ok(maps)
}

type Entries = Vec<(String, Options)>;

/// Reads an element's package files: `package-installs.json` then
/// `package-installs.yaml` (DIB reads both when both exist), and the plain
/// `package-installs` list.
fn read_entries(
    element: &Element,
    warnings: &mut Vec<PlanWarning>,
) -> Result<Vec<(PathBuf, Entries)>, PlanError> {
    let mut files = Vec::new();
    for file in ["package-installs.json", "package-installs.yaml"] {
        let path = element.dir.join(file);
        let Some(text) = read_text(&path)? else {
            continue;
        };
        // DIB tries JSON first and falls back to YAML for either name; YAML
        // is a superset of JSON, so one YAML parse serves both.
        let parsed: Option<BTreeMap<String, Option<Options>>> = serde_saphyr::from_str(&text)
            .map_err(|e| PlanError::BadPackageFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let entries = parsed
            .unwrap_or_default()
            .into_iter()
            .map(|(name, options)| (name, options.unwrap_or_default()))
            .collect();
        files.push((path, entries));
    }
    let legacy = element.dir.join("package-installs");
    if legacy.is_file()
        && let Some(text) = read_text(&legacy)?
    {
        warnings.push(PlanWarning::LegacyPackageInstalls {
            path: legacy.clone(),
        });
        let entries = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default().trim())
            .filter(|line| !line.is_empty())
            .map(|line| match line.strip_prefix('-') {
                Some(name) => (
                    name.trim().to_string(),
                    Options {
                        uninstall: Some(serde_json::Value::Bool(true)),
                        ..Options::default()
                    },
                ),
                None => (line.to_string(), Options::default()),
            })
            .collect();
        files.push((legacy, entries));
    }
    // element.yaml's `packages`: entries with every option at its default.
    if let Some((path, names)) = super::element_yaml::packages(&element.dir)? {
        let entries = names.into_iter().map(|n| (n, Options::default())).collect();
        files.push((path, entries));
    }
    Ok(files)
}

/// Decides whether an entry applies, and how: `(phase, install, uninstall)`,
/// or `None` when a filter excludes it.
fn evaluate(
    element: &Element,
    path: &Path,
    package: &str,
    options: Options,
    target: &Target<'_>,
    warnings: &mut Vec<PlanWarning>,
) -> Result<Option<(PhaseName, bool, bool)>, PlanError> {
    for key in options.other.keys() {
        warnings.push(PlanWarning::IgnoredPackageKey {
            path: path.to_path_buf(),
            package: package.to_string(),
            key: key.clone(),
        });
    }
    let phase_name = options.phase.as_deref().unwrap_or("install.d");
    let phase =
        PhaseName::from_dir_name(phase_name).ok_or_else(|| PlanError::UnknownPackagePhase {
            path: path.to_path_buf(),
            package: package.to_string(),
            phase: phase_name.to_string(),
        })?;
    // DIB tests for the key, not its value: `uninstall: false` uninstalls.
    let (mut install, mut uninstall) = (true, false);
    if let Some(value) = &options.uninstall {
        if value == &serde_json::Value::Bool(false) {
            warnings.push(PlanWarning::UninstallFalse {
                path: path.to_path_buf(),
                package: package.to_string(),
            });
        }
        (install, uninstall) = (false, true);
    }
    if options.build_only.is_some() {
        (install, uninstall) = (true, true);
    }
    match (&options.arch, &options.not_arch) {
        (Some(_), Some(_)) => {
            return Err(PlanError::ArchAndNotArch {
                path: path.to_path_buf(),
                package: package.to_string(),
            });
        }
        (Some(list), None) if !arch_in_list(target.arch, list) => return Ok(None),
        (None, Some(list)) if arch_in_list(target.arch, list) => return Ok(None),
        _ => {}
    }
    if let Some(wanted) = &options.installtype {
        let variable = format!(
            "DIB_INSTALLTYPE_{}",
            element.name.as_str().replace('-', "_")
        );
        let actual = (target.environment)(&variable)
            .or_else(|| (target.environment)("DIB_DEFAULT_INSTALLTYPE"))
            .unwrap_or_else(|| "source".to_string());
        if *wanted != actual {
            return Ok(None);
        }
    }
    if let Some(value) = &options.dib_python_version {
        // Every release kiln builds has only Python 3, which is what DIB
        // sets DIB_PYTHON_VERSION to on them.
        let version = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if version != "3" {
            warnings.push(PlanWarning::PythonVersionAssumed {
                path: path.to_path_buf(),
                package: package.to_string(),
                version: version.clone(),
            });
            return Ok(None);
        }
    }
    if let Some(when) = &options.when {
        let statements = match when {
            When::One(s) => std::slice::from_ref(s),
            When::All(list) => list.as_slice(),
        };
        for statement in statements {
            match when_holds(statement, target) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(WhenProblem::Malformed) => {
                    return Err(PlanError::BadWhen {
                        path: path.to_path_buf(),
                        package: package.to_string(),
                        statement: statement.clone(),
                    });
                }
                Err(WhenProblem::Unknown(variable)) => {
                    // The variable may come from an environment.d script,
                    // which only the build can run; leaving the package
                    // out keeps the plan from locking packages it may not
                    // need, and the warning says so.
                    warnings.push(PlanWarning::WhenUnknown {
                        path: path.to_path_buf(),
                        package: package.to_string(),
                        variable,
                    });
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some((phase, install, uninstall)))
}

enum WhenProblem {
    Malformed,
    Unknown(String),
}

/// Evaluates `VAR = value` / `VAR != value` as DIB's `_when` does.
fn when_holds(statement: &str, target: &Target<'_>) -> Result<bool, WhenProblem> {
    let var_end = statement
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(statement.len());
    let (variable, rest) = statement.split_at(var_end);
    let rest = rest.trim_start();
    let (equal, value) = if let Some(v) = rest.strip_prefix("!=") {
        (false, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (true, v)
    } else {
        return Err(WhenProblem::Malformed);
    };
    if variable.is_empty() {
        return Err(WhenProblem::Malformed);
    }
    let actual =
        (target.environment)(variable).ok_or_else(|| WhenProblem::Unknown(variable.to_string()))?;
    Ok((actual == value.trim_start()) == equal)
}

/// Whether the target architecture is in a comma list. Elements written
/// for DIB use both Debian names and kernel names (`amd64,x86_64`), since
/// DIB's `ARCH` differs by distro; either matches.
fn arch_in_list(arch: Arch, list: &str) -> bool {
    let names: &[&str] = match arch {
        Arch::Amd64 => &["amd64", "x86_64"],
        Arch::Arm64 => &["arm64", "aarch64"],
    };
    list.split(',').map(str::trim).any(|a| names.contains(&a))
}

#[derive(Debug, Default, Deserialize)]
struct PkgMapFile {
    #[serde(default)]
    default: BTreeMap<String, String>,
    #[serde(default)]
    family: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    distro: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    release: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

/// One element's `pkg-map`, flattened for the target.
#[derive(Debug, Default)]
struct PkgMap {
    names: BTreeMap<String, String>,
}

impl PkgMap {
    fn read(path: &Path, target: &Target<'_>) -> Result<PkgMap, PlanError> {
        let Some(text) = read_text(path)? else {
            return Ok(PkgMap::default());
        };
        let mut file: PkgMapFile =
            serde_json::from_str(&text).map_err(|e| PlanError::BadPkgMap {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let mut names = std::mem::take(&mut file.default);
        if let Some(map) =
            crate::distro::pkg_map_family(target.distro).and_then(|f| file.family.remove(f))
        {
            names.extend(map);
        }
        if let Some(map) = file.distro.remove(target.distro.as_str()) {
            names.extend(map);
        }
        if let (Some(release), Some(mut releases)) =
            (target.release, file.release.remove(target.distro.as_str()))
            && let Some(map) = releases.remove(release)
        {
            names.extend(map);
        }
        Ok(PkgMap { names })
    }

    fn translate(&self, package: &str) -> Vec<String> {
        match self.names.get(package) {
            Some(mapped) => mapped.split_whitespace().map(str::to_string).collect(),
            None => vec![package.to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn target(distro: Distro, release: Option<&'static str>) -> Target<'static> {
        Target {
            distro,
            release,
            arch: Arch::Amd64,
            environment: &no_env,
        }
    }

    fn map(json: &str, target: &Target<'_>) -> PkgMap {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pkg-map");
        std::fs::write(&path, json).expect("write");
        PkgMap::read(&path, target).expect("parse")
    }

    const MAP: &str = r#"{
        "default": {"web": "httpd", "tool": "tool-generic"},
        "family": {"debian": {"web": "apache2", "dev": "build-essential pkg-config"}},
        "distro": {"ubuntu": {"web": "apache2-ubuntu"}},
        "release": {"debian": {"trixie": {"web": "apache2-trixie", "gone": ""}}}
    }"#;

    #[test]
    fn most_specific_mapping_wins() {
        let bookworm = map(MAP, &target(Distro::Debian, Some("bookworm")));
        assert_eq!(bookworm.translate("web"), ["apache2"]);
        assert_eq!(bookworm.translate("tool"), ["tool-generic"]);
        assert_eq!(bookworm.translate("unmapped"), ["unmapped"]);
        assert_eq!(bookworm.translate("dev"), ["build-essential", "pkg-config"]);
        let trixie = map(MAP, &target(Distro::Debian, Some("trixie")));
        assert_eq!(trixie.translate("web"), ["apache2-trixie"]);
        assert!(trixie.translate("gone").is_empty());
        let ubuntu = map(MAP, &target(Distro::Ubuntu, Some("noble")));
        assert_eq!(ubuntu.translate("web"), ["apache2-ubuntu"]);
        let fedora = map(MAP, &target(Distro::Fedora, None));
        assert_eq!(fedora.translate("web"), ["httpd"]);
    }

    #[test]
    fn arch_lists_accept_both_spellings() {
        assert!(arch_in_list(Arch::Amd64, "x86_64, ppc64le"));
        assert!(arch_in_list(Arch::Amd64, "amd64"));
        assert!(!arch_in_list(Arch::Amd64, "arm64,aarch64"));
        assert!(arch_in_list(Arch::Arm64, "aarch64"));
    }

    #[test]
    fn when_statements() {
        let env = |name: &str| (name == "DIB_FLAG").then(|| "yes".to_string());
        let t = Target {
            distro: Distro::Debian,
            release: None,
            arch: Arch::Amd64,
            environment: &env,
        };
        assert!(matches!(when_holds("DIB_FLAG = yes", &t), Ok(true)));
        assert!(matches!(when_holds("DIB_FLAG!=yes", &t), Ok(false)));
        assert!(matches!(when_holds("DIB_FLAG = no", &t), Ok(false)));
        assert!(matches!(
            when_holds("OTHER = 1", &t),
            Err(WhenProblem::Unknown(_))
        ));
        assert!(matches!(
            when_holds("DIB_FLAG yes", &t),
            Err(WhenProblem::Malformed)
        ));
    }
}

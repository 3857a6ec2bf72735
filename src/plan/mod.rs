//! The plan stage: `Manifest` + element directories → [`Plan`].
//!
//! The plan is everything about a build that can be decided from the
//! manifest and the element trees alone, before anything is downloaded:
//! which elements take part and in what order (with the hash of each tree,
//! for the lock), the environment the hooks see, the `environment.d` files
//! and hook scripts of every phase in run order, and the packages elements
//! ask for. It follows diskimage-builder's semantics so that DIB elements
//! run unchanged; each submodule names the DIB code it mirrors.

mod builtin;
mod deps;
mod element_yaml;
mod packages;
mod phases;
mod search;
mod tree_hash;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::{DEFAULT_ROOT_LABEL, Distro, ElementName, EnvName, Manifest, ParamValue};

pub use builtin::{BuiltinError, unpack_builtin_elements};
pub use deps::OPERATING_SYSTEM;
#[cfg(test)]
pub(crate) use element_yaml::parse as parse_element_yaml;
pub use element_yaml::{
    ELEMENT_YAML, ElementYaml, ElementYamlError, ParamType, Parameter, read_element_yaml,
    schema as element_schema,
};
pub use packages::{PackageRequest, PhasePackages};
pub use phases::{EnvironmentFile, Phase, PhaseName, Script, run_parts_order, runs_as_hook};
pub use search::{DIB_ELEMENTS_PATH_VAR, Element, KILN_ELEMENTS_PATH_VAR, SearchPath};
pub use tree_hash::{TreeHashError, tree_hash, tree_hash_without};

/// Variables DIB's hooks expect whose values depend on the build's own
/// directories, devices or lock, so the build stage sets them:
/// `TMP_MOUNT_PATH` and `TARGET_ROOT` (the root tree), `TMP_BUILD_DIR`,
/// `TMP_IMAGE_DIR`, `TMP_HOOKS_PATH` (the merged hooks tree), `ELEMENTS_PATH`
/// and `IMAGE_ELEMENT_YAML` (where the element copies are), `DIB_IMAGE_CACHE`,
/// `IMAGE_BLOCK_DEVICE` (block-device.d), `DIB_IMAGE_ROOT_FS_UUID` (derived
/// from the lock), `DIB_IMAGE_SIZE`, `DIB_OFFLINE` (the build's network
/// policy) and `SOURCE_DATE_EPOCH` (pinned in the lock).
pub const RUNTIME_VARIABLES: &[&str] = &[
    "TMP_MOUNT_PATH",
    "TARGET_ROOT",
    "TMP_BUILD_DIR",
    "TMP_IMAGE_DIR",
    "TMP_HOOKS_PATH",
    "ELEMENTS_PATH",
    "IMAGE_ELEMENT_YAML",
    "DIB_IMAGE_CACHE",
    "IMAGE_BLOCK_DEVICE",
    "DIB_IMAGE_ROOT_FS_UUID",
    "DIB_IMAGE_SIZE",
    "DIB_OFFLINE",
    "SOURCE_DATE_EPOCH",
];

/// Standard variables the plan derives from the manifest; the manifest's
/// `environment` and element parameters may not set them, because a second
/// value would contradict the `base` the image is built from.
const DERIVED_VARIABLES: &[&str] = &[
    "ARCH",
    "DISTRO_NAME",
    "DIB_RELEASE",
    "IMAGE_NAME",
    "IMAGE_ELEMENT",
    "DIB_ROOT_LABEL",
    "LC_ALL",
];

/// Everything about a build decided from the manifest and element trees.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The elements, the manifest's first (in its order), then their
    /// dependencies in discovery order; provided names removed.
    pub elements: Vec<PlannedElement>,
    /// The hooks' environment, in the order it is set.
    pub environment: Vec<EnvVar>,
    /// The `environment.d` files, in the order they are sourced before
    /// every phase.
    pub environment_files: Vec<EnvironmentFile>,
    /// Every phase, in run order, with its scripts.
    pub phases: Vec<Phase>,
    /// Packages to install and remove, by phase, in phase order.
    pub packages: Vec<PhasePackages>,
    /// Each element's `pkg-map`, flattened for the target (name → the
    /// names it maps to, space-separated; empty to drop it), for the
    /// `pkg-map` helper hooks call in the chroot. Elements without one are
    /// left out.
    pub pkg_maps: BTreeMap<ElementName, BTreeMap<String, String>>,
    /// Things worth telling the user that do not stop the build.
    pub warnings: Vec<PlanWarning>,
}

impl Plan {
    /// Every package any element installs, sorted and without duplicates:
    /// the lock stage adds these to the packages it resolves.
    pub fn packages_to_install(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .packages
            .iter()
            .flat_map(|p| p.install.iter().map(|r| r.name.clone()))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The value the plan gives a variable, if any.
    pub fn env(&self, name: &str) -> Option<&str> {
        lookup(&self.environment, name)
    }

    /// One phase's scripts.
    pub fn phase(&self, name: PhaseName) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// The packages to install and remove in one phase.
    pub fn phase_packages(&self, name: PhaseName) -> Option<&PhasePackages> {
        self.packages.iter().find(|p| p.phase == name)
    }
}

/// One element taking part in the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedElement {
    /// Its name.
    pub name: ElementName,
    /// The directory it was found in (the winning one on the search path).
    pub dir: PathBuf,
    /// [`tree_hash`] of that directory.
    pub tree_hash: String,
    /// The values the manifest's `with:` gave it, by the environment
    /// variable the hooks read them from (only the manifest's own elements
    /// have any). Without an `element.yaml` declaring parameters, each
    /// `with:` key is the variable.
    pub params: BTreeMap<EnvName, ParamValue>,
    /// Defaults from its `element.yaml` for the parameters the manifest
    /// left out, by variable; a value set elsewhere wins over them.
    pub defaults: BTreeMap<EnvName, ParamValue>,
    /// The element whose `element-deps` pulled it in; `None` when the
    /// manifest names it.
    pub required_by: Option<ElementName>,
}

/// One environment variable for the hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Where the value comes from.
    pub origin: EnvOrigin,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvOrigin {
    /// A variable DIB sets, derived from the manifest or DIB's default.
    Standard,
    /// The manifest's `environment`.
    Manifest,
    /// A parameter (`with:`) of this element.
    Element(ElementName),
}

impl fmt::Display for EnvOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvOrigin::Standard => f.write_str("kiln's standard variables"),
            EnvOrigin::Manifest => f.write_str("the manifest's `environment`"),
            EnvOrigin::Element(name) => write!(f, "the parameters of element `{name}`"),
        }
    }
}

/// What [`PlanError::ElementNotFound`] says; boxed, as it is the largest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    /// The missing element.
    pub name: ElementName,
    /// The requested element that led to it, through each `element-deps`,
    /// ending with the missing one.
    pub chain: Vec<ElementName>,
    /// The closest visible element name, if one is close.
    pub suggestion: Option<ElementName>,
    /// The directories searched, in order.
    pub searched: Vec<PathBuf>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An element is on no directory of the search path.
    #[error("{}", not_found_message(.0))]
    ElementNotFound(Box<NotFound>),
    /// No element provides `operating-system`, and the base is not one kiln
    /// bootstraps itself (Debian, Ubuntu).
    #[error(
        "no element provides `operating-system` among {}, and kiln does not bootstrap this base itself; add the element for the base distribution (one whose `element-provides` lists `operating-system`)",
        names(elements)
    )]
    NoOperatingSystem {
        /// The elements that were found.
        elements: Vec<ElementName>,
    },
    /// Several elements provide `operating-system`.
    #[error(
        "more than one element provides `operating-system`: {}; keep only one base distribution element",
        providers.iter().map(|(n, d)| format!("`{n}` ({})", d.display())).collect::<Vec<_>>().join(", ")
    )]
    SeveralOperatingSystems {
        /// Each provider and its directory.
        providers: Vec<(ElementName, PathBuf)>,
    },
    /// Two elements provide the same name.
    #[error(
        "`{provided}` is provided by both `{first}` ({}) and `{second}` ({}); remove one of them",
        first_dir.display(), second_dir.display()
    )]
    ProvidedTwice {
        /// The provided name.
        provided: String,
        /// The first provider.
        first: ElementName,
        /// Its directory.
        first_dir: PathBuf,
        /// The second provider.
        second: ElementName,
        /// Its directory.
        second_dir: PathBuf,
    },
    /// The manifest names an element another element already provides.
    #[error(
        "element `{element}` is already provided by `{provider}`; remove `{element}` from the manifest"
    )]
    AlreadyProvided {
        /// The element the manifest names.
        element: ElementName,
        /// The element that provides it.
        provider: ElementName,
    },
    /// An `element-deps` or `element-provides` line is not an element name.
    #[error("{}:{line}: `{name}` is not an element name: {reason}", path.display())]
    BadElementName {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The text on that line.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two elements have a hook file of the same name in the same
    /// directory; DIB would overwrite one with the other.
    #[error(
        "two elements have `{dir}/{name}`: {} and {}; rename one of them",
        first.display(), second.display()
    )]
    DuplicateHook {
        /// The hook directory (`install.d`, `environment.d`).
        dir: String,
        /// The file name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A `package-installs` file could not be parsed.
    #[error("{}: {message}", path.display())]
    BadPackageFile {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A package names a phase that does not exist.
    #[error(
        "{}: package `{package}` names phase `{phase}`, which is not one of {}",
        path.display(),
        PhaseName::ALL.map(|p| p.dir_name()).join(", ")
    )]
    UnknownPackagePhase {
        /// The file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The phase as written.
        phase: String,
    },
    /// A package has both `arch` and `not-arch`.
    #[error("{}: package `{package}` has both `arch` and `not-arch`; keep one", path.display())]
    ArchAndNotArch {
        /// The file.
        path: PathBuf,
        /// The package.
        package: String,
    },
    /// A `when` statement is not `VAR = value` or `VAR != value`.
    #[error("{}: package `{package}` has a malformed `when`: `{statement}` (expected `VARIABLE = value` or `VARIABLE != value`)", path.display())]
    BadWhen {
        /// The file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The statement.
        statement: String,
    },
    /// A `pkg-map` file is not the JSON shape `pkg-map` reads.
    #[error("{}: not a valid pkg-map: {message}", path.display())]
    BadPkgMap {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The manifest or a parameter sets a variable kiln derives itself.
    #[error(
        "{origin} sets `{name}`, which kiln sets from the manifest's `base` and `name`; remove it"
    )]
    ReservedVariable {
        /// The variable.
        name: String,
        /// Who tried to set it.
        origin: EnvOrigin,
    },
    /// Two sources give one variable different values.
    #[error(
        "`{name}` is set to `{first_value}` by {first} and to `{second_value}` by {second}; give it one value"
    )]
    ConflictingVariable {
        /// The variable.
        name: String,
        /// The first source.
        first: EnvOrigin,
        /// Its value.
        first_value: String,
        /// The second source.
        second: EnvOrigin,
        /// Its value.
        second_value: String,
    },
    /// A file or directory of an element could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// An element's tree could not be hashed.
    #[error("element `{element}`: {source}")]
    TreeHash {
        /// The element.
        element: ElementName,
        /// The failure.
        #[source]
        source: TreeHashError,
    },
    /// An element's `element.yaml` is malformed or contradicts itself.
    #[error(transparent)]
    ElementYaml(Box<ElementYamlError>),
    /// The manifest's `with:` values do not fit the parameters elements
    /// declare in `element.yaml`; every problem, each pointing into the
    /// manifest.
    #[error("{}", parameter_message(.0))]
    Parameters(Vec<crate::manifest::Problem>),
}

fn parameter_message(problems: &[crate::manifest::Problem]) -> String {
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    messages.join("; ")
}

fn names(list: &[ElementName]) -> String {
    if list.is_empty() {
        return "no elements".to_string();
    }
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_found_message(nf: &NotFound) -> String {
    let mut text = format!("element `{}` not found", nf.name);
    if nf.chain.len() > 1 {
        let chain: Vec<&str> = nf.chain.iter().map(ElementName::as_str).collect();
        text.push_str(&format!(" (required by {})", chain.join(" -> ")));
    }
    let dirs: Vec<String> = nf
        .searched
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    text.push_str(&format!("; searched {}", dirs.join(", ")));
    if let Some(s) = &nf.suggestion {
        text.push_str(&format!("; did you mean `{s}`?"));
    }
    text
}

/// Something worth telling the user that does not stop the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanWarning {
    /// An element used by the build hides others of the same name.
    Shadowed {
        /// The element.
        name: ElementName,
        /// The directory used.
        used: PathBuf,
        /// The directories hidden.
        hidden: Vec<PathBuf>,
    },
    /// The manifest names an element twice; the first is used.
    DuplicateElement {
        /// The element.
        name: ElementName,
    },
    /// A hook file is not executable, so DIB (and kiln) skip it.
    NotExecutable {
        /// The file.
        path: PathBuf,
    },
    /// A hook file's name is outside what `dib-run-parts` runs.
    IgnoredHookName {
        /// The file.
        path: PathBuf,
    },
    /// The old plain `package-installs` list is read.
    LegacyPackageInstalls {
        /// The file.
        path: PathBuf,
    },
    /// An option of a package entry kiln does not know.
    IgnoredPackageKey {
        /// The file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The key.
        key: String,
    },
    /// `uninstall: false`, which DIB reads as "uninstall".
    UninstallFalse {
        /// The file.
        path: PathBuf,
        /// The package.
        package: String,
    },
    /// A package is for a `dib_python_version` other than 3, so skipped.
    PythonVersionAssumed {
        /// The file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The version asked for.
        version: String,
    },
    /// A `when` names a variable the plan does not know; the package is
    /// left out.
    WhenUnknown {
        /// The file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The variable.
        variable: String,
    },
}

impl fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanWarning::Shadowed { name, used, hidden } => write!(
                f,
                "element `{name}` from {} hides {}",
                used.display(),
                hidden
                    .iter()
                    .map(|h| h.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            PlanWarning::DuplicateElement { name } => {
                write!(
                    f,
                    "element `{name}` is listed more than once; the first is used"
                )
            }
            PlanWarning::NotExecutable { path } => {
                write!(
                    f,
                    "{} is not executable and will not run (chmod +x it, or move it out of the phase directory)",
                    path.display()
                )
            }
            PlanWarning::IgnoredHookName { path } => write!(
                f,
                "{} will not run: hook names may only use letters, digits, `_` and `-` (and `.` in environment.d)",
                path.display()
            ),
            PlanWarning::LegacyPackageInstalls { path } => write!(
                f,
                "{} uses the old plain package list; package-installs.yaml is preferred",
                path.display()
            ),
            PlanWarning::IgnoredPackageKey { path, package, key } => {
                write!(
                    f,
                    "{}: package `{package}`: option `{key}` is not known and is ignored",
                    path.display()
                )
            }
            PlanWarning::UninstallFalse { path, package } => write!(
                f,
                "{}: package `{package}` has `uninstall: false`, which diskimage-builder treats as uninstall; remove the key to install it",
                path.display()
            ),
            PlanWarning::PythonVersionAssumed {
                path,
                package,
                version,
            } => write!(
                f,
                "{}: package `{package}` is for dib_python_version {version} and is skipped: kiln's distributions have Python 3 only",
                path.display()
            ),
            PlanWarning::WhenUnknown {
                path,
                package,
                variable,
            } => write!(
                f,
                "{}: package `{package}` depends on `{variable}`, which the manifest does not set; the package is left out (set `{variable}` in `environment` to decide)",
                path.display()
            ),
        }
    }
}

/// Makes the plan for `manifest` with the elements on `search`.
pub fn plan(manifest: &Manifest, search: &SearchPath) -> Result<Plan, PlanError> {
    let mut warnings = Vec::new();

    let mut requested: Vec<ElementName> = Vec::new();
    for element in &manifest.elements {
        let name = element.value.name().clone();
        if requested.contains(&name) {
            warnings.push(PlanWarning::DuplicateElement { name });
            continue;
        }
        requested.push(name);
    }

    // kiln bootstraps Debian-family bases itself, so the tree already has
    // its operating system and DIB's operating-system element is optional.
    // kiln makes every base tree itself, from the archive or from the
    // image, so no element needs to provide it.
    let os_from_base = true;
    let resolved = deps::expand(&requested, search, os_from_base)?;
    let mut params = element_yaml::bind(manifest, &resolved)?;
    let mut elements = Vec::with_capacity(resolved.len());
    for r in &resolved {
        if !r.element.shadows.is_empty() {
            warnings.push(PlanWarning::Shadowed {
                name: r.element.name.clone(),
                used: r.element.dir.clone(),
                hidden: r.element.shadows.clone(),
            });
        }
        let hash = tree_hash(&r.element.dir).map_err(|source| PlanError::TreeHash {
            element: r.element.name.clone(),
            source,
        })?;
        elements.push(PlannedElement {
            name: r.element.name.clone(),
            dir: r.element.dir.clone(),
            tree_hash: hash,
            params: params
                .get_mut(&r.element.name)
                .map(|b| std::mem::take(&mut b.given))
                .unwrap_or_default(),
            defaults: params
                .remove(&r.element.name)
                .map(|b| b.defaults)
                .unwrap_or_default(),
            required_by: r.required_by.clone(),
        });
    }

    let environment = environment(manifest, &elements)?;
    let found: Vec<Element> = resolved.into_iter().map(|r| r.element).collect();
    let environment_files = phases::collect_environment_files(&found, &mut warnings)?;
    let phases = phases::collect_phases(&found, &mut warnings)?;
    let base = &manifest.base.value;
    let release = base.release.as_ref().map(|r| r.value.as_str());
    let env_lookup = |name: &str| lookup(&environment, name).map(str::to_string);
    let target = packages::Target {
        distro: base.distro.value,
        release,
        arch: base.arch.value,
        environment: &env_lookup,
    };
    let packages = packages::collect(&found, &target, &mut warnings)?;
    let pkg_maps = packages::pkg_maps(&found, &target)?;

    Ok(Plan {
        elements,
        environment,
        environment_files,
        phases,
        packages,
        pkg_maps,
        warnings,
    })
}

fn lookup<'a>(environment: &'a [EnvVar], name: &str) -> Option<&'a str> {
    environment
        .iter()
        .find(|v| v.name == name)
        .map(|v| v.value.as_str())
}

/// Builds the hooks' environment: DIB's standard variables, then the
/// manifest's `environment`, then element parameters.
fn environment(manifest: &Manifest, elements: &[PlannedElement]) -> Result<Vec<EnvVar>, PlanError> {
    let base = &manifest.base.value;
    let standard = |name: &str, value: &str| EnvVar {
        name: name.to_string(),
        value: value.to_string(),
        origin: EnvOrigin::Standard,
    };
    // DIB's own settings: `disk-image-create` exports LC_ALL=C for stable
    // sorting in and out of the chroot, and writes the default install
    // type into environment.d; DISTRO_NAME is normally exported by the
    // operating-system element, but kiln already knows it from `base`.
    let mut env = vec![
        standard("LC_ALL", "C"),
        // DIB's `-a` takes, and its Debian-family elements expect, the
        // Debian name.
        standard("ARCH", base.arch.value.as_str()),
    ];
    if base.distro.value != Distro::Image {
        env.push(standard("DISTRO_NAME", base.distro.value.as_str()));
    }
    if let Some(release) = &base.release {
        env.push(standard("DIB_RELEASE", release.value.as_str()));
    }
    env.push(standard("IMAGE_NAME", manifest.name.value.as_str()));
    let element_list: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    env.push(standard("IMAGE_ELEMENT", &element_list.join(" ")));
    let label = manifest
        .disk
        .value
        .label
        .as_ref()
        .map(|l| l.value.as_str())
        .unwrap_or(DEFAULT_ROOT_LABEL);
    env.push(standard("DIB_ROOT_LABEL", label));
    env.push(standard("DIB_DEFAULT_INSTALLTYPE", "source"));
    // Every release kiln builds has Python 3 only; DIB's `dib-python`
    // would otherwise pick Python 2 for Debian.
    env.push(standard("DIB_PYTHON_VERSION", "3"));
    env.push(standard("DIB_PYTHON", "python3"));
    env.push(standard("DIB_DEBUG_TRACE", "0"));

    let mut set =
        |name: &EnvName, value: &ParamValue, origin: EnvOrigin| -> Result<(), PlanError> {
            let name = name.as_str();
            if DERIVED_VARIABLES.contains(&name) || RUNTIME_VARIABLES.contains(&name) {
                return Err(PlanError::ReservedVariable {
                    name: name.to_string(),
                    origin,
                });
            }
            match env.iter_mut().find(|v| v.name == name) {
                // A default DIB sets (install type, trace level) is the user's
                // to override.
                Some(existing) if existing.origin == EnvOrigin::Standard => {
                    existing.value = value.0.clone();
                    existing.origin = origin;
                }
                Some(existing) if existing.value != value.0 => {
                    return Err(PlanError::ConflictingVariable {
                        name: name.to_string(),
                        first: existing.origin.clone(),
                        first_value: existing.value.clone(),
                        second: origin,
                        second_value: value.0.clone(),
                    });
                }
                Some(_) => {}
                None => env.push(EnvVar {
                    name: name.to_string(),
                    value: value.0.clone(),
                    origin,
                }),
            }
            Ok(())
        };
    for (name, value) in &manifest.environment {
        set(name, value, EnvOrigin::Manifest)?;
    }
    for element in elements {
        for (name, value) in &element.params {
            set(name, value, EnvOrigin::Element(element.name.clone()))?;
        }
    }
    // Defaults of `element.yaml` parameters yield to every value given,
    // and among themselves the first element's wins.
    for element in elements {
        for (name, value) in &element.defaults {
            match env.iter_mut().find(|v| v.name == name.as_str()) {
                Some(existing) if existing.origin == EnvOrigin::Standard => {
                    existing.value = value.0.clone();
                    existing.origin = EnvOrigin::Element(element.name.clone());
                }
                Some(_) => {}
                None => env.push(EnvVar {
                    name: name.to_string(),
                    value: value.0.clone(),
                    origin: EnvOrigin::Element(element.name.clone()),
                }),
            }
        }
    }
    Ok(env)
}

/// Reads a text file of an element; `None` when it does not exist.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>, PlanError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> PlanError {
    PlanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests;

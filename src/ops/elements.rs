//! kiln's built-in elements, unpacked where the search path can find
//! them, and what `kiln elements` says about the elements a search path
//! holds.

use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::manifest::ElementName;
use crate::plan::{self, PhaseName, SearchPath};

/// kiln's built-in elements, embedded in the binary and unpacked on first
/// use into the cache directory: `cache_dir` (`--cache-dir`, or
/// `KILN_CACHE_DIR` through clap), else the default one. Without a default one, or when
/// the default one cannot be written (a user without a writable home),
/// into kiln's private directory in the temporary directory; a cache
/// directory given explicitly must work.
pub fn builtin_elements(cache_dir: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(dir) = cache_dir {
        return plan::unpack_builtin_elements(dir).map_err(Failure::internal);
    }
    let default = crate::cache::Cache::default_dir().ok();
    let first = default.as_deref().map(plan::unpack_builtin_elements);
    match first {
        Some(Ok(dir)) => Ok(dir),
        // The default cache cannot be written: the private directory's
        // failure, if that fails too, is the one that says what to do.
        Some(Err(_)) | None => private_temp_dir()
            .and_then(|temp| plan::unpack_builtin_elements(&temp).map_err(Failure::internal)),
    }
}

/// `$TMPDIR/kiln-<uid>`, created private (0700) if missing, and refused
/// unless it is a directory of this user that nobody else can write: what
/// is unpacked there runs as hooks, so another user must not have put it
/// there first.
fn private_temp_dir() -> Result<PathBuf, Failure> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = nix::unistd::geteuid().as_raw();
    let dir = std::env::temp_dir().join(format!("kiln-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Failure::internal(miette::miette!(
                "cannot create {}: {e}",
                dir.display()
            )));
        }
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(Failure::internal)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(Failure::Internal(miette::miette!(
            help = "remove it, or give kiln a cache directory with --cache-dir or KILN_CACHE_DIR",
            "{} is not kiln's own private directory (another owner, or writable by others)",
            dir.display()
        )));
    }
    Ok(dir)
}

/// The lines of a file such as `element-deps`, without comments.
fn names_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

/// `kiln elements list`: every element the search path holds, one a line,
/// with its directory, what it provides and how many others it hides.
pub fn list(search: &SearchPath) -> String {
    let elements = search.list();
    if elements.is_empty() {
        return format!(
            "no elements on the search path ({})\n",
            search
                .dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let width = elements
        .iter()
        .map(|e| e.name.as_str().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for element in elements {
        let provides = names_in(&element.dir.join("element-provides"));
        let mut line = format!(
            "{:<width$}  {}",
            element.name.as_str(),
            element.dir.display()
        );
        if !provides.is_empty() {
            line.push_str(&format!("  (provides {})", provides.join(", ")));
        }
        if !element.shadows.is_empty() {
            line.push_str(&format!("  (hides {} other)", element.shadows.len()));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// DIB's per-element conventions: a file or directory, the element that
/// acts on it, and what that element does with it.
const DIB_CONVENTIONS: &[(&str, &str, &str)] = &[
    (
        "package-installs.yaml",
        "package-installs",
        "packages installed and removed",
    ),
    (
        "package-installs.json",
        "package-installs",
        "packages installed and removed",
    ),
    ("pkg-map", "pkg-map", "package names mapped"),
    ("bin", "install-bin", "installed into /usr/local/bin"),
    ("static", "install-static", "copied into the image"),
    ("init-scripts", "dib-init-system", "systemd units installed"),
];

/// `kiln elements show NAME`: where the element is, what it depends on and
/// provides, its `element.yaml`, and each phase's hooks (what runs, and
/// what sits beside the hooks as data).
pub fn show(search: &SearchPath, name: &str) -> Result<String, Failure> {
    let parsed: ElementName = name.parse().map_err(|e: crate::manifest::ValueError| {
        Failure::user(miette::miette!(help = e.help, "{}", e.message))
    })?;
    let Some(element) = search.find(&parsed) else {
        let names: Vec<String> = search.list().iter().map(|e| e.name.to_string()).collect();
        let closest = names
            .iter()
            .map(|n| (strsim::jaro_winkler(n, name), n))
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, n)| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        return Err(Failure::user(miette::miette!(
            help = format!(
                "{closest}`kiln elements list` shows the elements on the search path; add directories with --elements-path"
            ),
            "no element called `{name}`"
        )));
    };
    let dir = &element.dir;
    let mut out = format!("{}\n  directory: {}\n", element.name, dir.display());
    if let Ok(hash) = plan::tree_hash(dir) {
        out.push_str(&format!("  tree: {hash}\n"));
    }
    if search.is_builtin(dir) {
        out.push_str("  kiln's own element\n");
    }
    for shadow in &element.shadows {
        if search.is_builtin(shadow) {
            out.push_str(&format!(
                "  hides: kiln's own `{}` ({}), which builds with this search path do not use\n",
                element.name,
                shadow.display()
            ));
        } else {
            out.push_str(&format!("  hides: {}\n", shadow.display()));
        }
    }
    for (label, file) in [
        ("depends on", "element-deps"),
        ("provides", "element-provides"),
    ] {
        let names = names_in(&dir.join(file));
        if !names.is_empty() {
            out.push_str(&format!("  {label}: {}\n", names.join(", ")));
        }
    }
    for file in ["README.rst", "README.md"] {
        if dir.join(file).is_file() {
            out.push_str(&format!("  has: {file}\n"));
        }
    }
    // The files and directories of DIB's conventions, and the element that
    // acts on them in a build with this search path: kiln's own
    // implementation, or the one that hides it.
    for (file, handler, what) in DIB_CONVENTIONS {
        if !dir.join(file).exists() {
            continue;
        }
        let by = handler
            .parse::<ElementName>()
            .ok()
            .and_then(|name| search.find(&name))
            .map_or_else(
                || format!("no `{handler}` on the search path, so nothing does"),
                |found| {
                    if search.is_builtin(&found.dir) {
                        format!("kiln's own `{handler}`")
                    } else {
                        format!("`{handler}` from {}", found.dir.display())
                    }
                },
            );
        out.push_str(&format!("  has: {file} ({what} by {by})\n"));
    }
    out.push_str(&element_yaml_lines(dir));
    let dirs = std::iter::once("environment.d").chain(PhaseName::ALL.iter().map(|p| p.dir_name()));
    for sub in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        // What runs (as the plan decides: executable, a run-parts name)
        // and what sits beside it as data for the scripts.
        let mut scripts = Vec::new();
        let mut data = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if sub == "environment.d" || plan::runs_as_hook(&entry.path(), &name) {
                scripts.push(name);
            } else {
                data.push(name);
            }
        }
        data.sort();
        scripts.sort_by(|a, b| plan::run_parts_order(a, b));
        let place = PhaseName::from_dir_name(sub)
            .map(|p| {
                if p.in_chroot() {
                    " (in the chroot)"
                } else {
                    " (on the host)"
                }
            })
            .unwrap_or("");
        if !scripts.is_empty() {
            out.push_str(&format!("  {sub}{place}: {}\n", scripts.join(", ")));
        }
        if !data.is_empty() {
            out.push_str(&format!(
                "  {sub}, not run (not executable, or not a hook name): {}\n",
                data.join(", ")
            ));
        }
    }
    Ok(out)
}

/// What the element's `element.yaml` declares: description, dependencies,
/// packages and parameters (with type, default or `required`, and the
/// variable the hooks read).
fn element_yaml_lines(dir: &Path) -> String {
    let yaml = match plan::read_element_yaml(dir) {
        Ok(Some(yaml)) => yaml,
        Ok(None) => return String::new(),
        Err(e) => return format!("  element.yaml: not valid: {e}\n"),
    };
    let mut out = String::new();
    if let Some(description) = &yaml.description {
        out.push_str(&format!("  description: {}\n", description.trim()));
    }
    let list = |items: Vec<String>| items.join(", ");
    if !yaml.dependencies.is_empty() {
        let names = yaml.dependencies.iter().map(|d| d.value.to_string());
        out.push_str(&format!(
            "  depends on (element.yaml): {}\n",
            list(names.collect())
        ));
    }
    if !yaml.packages.is_empty() {
        let names = yaml.packages.iter().map(|p| p.value.clone());
        out.push_str(&format!("  installs: {}\n", list(names.collect())));
    }
    for (name, param) in yaml.parameters.iter().flatten() {
        let mut kind = param.kind.value.to_string();
        if !param.values.is_empty() {
            let values = param.values.iter().map(|v| v.value.0.clone());
            kind.push_str(&format!(" of {}", list(values.collect())));
        }
        if let Some(default) = &param.default {
            kind.push_str(&format!(", default `{}`", default.value.0));
        } else if param.required.value {
            kind.push_str(", required");
        }
        let mut line = format!(
            "  parameter {} ({kind}) -> ${}",
            name.value,
            param.env_name(&name.value)
        );
        if let Some(description) = &param.description {
            line.push_str(&format!(": {}", description.trim()));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

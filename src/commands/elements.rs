//! `kiln elements list` and `kiln elements show NAME`: what elements the
//! search path holds, and what one of them does.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::manifest::ElementName;
use crate::plan::{self, PhaseName, SearchPath};

/// Settings of `kiln elements`.
#[derive(Debug)]
pub struct ElementsSettings {
    /// Directories searched before `KILN_ELEMENTS_PATH`/`ELEMENTS_PATH`
    /// and the built-in elements.
    pub elements_path: Vec<PathBuf>,
    /// `Some(name)` to show one element; `None` to list them all.
    pub show: Option<String>,
}

/// kiln's built-in elements, embedded in the binary and unpacked into the
/// cache directory (or, without one, the temporary directory) on first use.
pub fn builtin_elements() -> Result<PathBuf, Failure> {
    let base = crate::cache::Cache::default_dir()
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("kiln-{}", nix::unistd::geteuid())));
    plan::unpack_builtin_elements(&base).map_err(|e| Failure::Internal(miette::miette!("{e}")))
}

/// Lists the elements, or shows one.
pub fn run(settings: &ElementsSettings) -> Result<(), Failure> {
    let search = SearchPath::from_env(&settings.elements_path, &builtin_elements()?);
    let text = match &settings.show {
        None => list(&search),
        Some(name) => show(&search, name)?,
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::Internal(miette::miette!("cannot write to stdout: {e}")))
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

fn list(search: &SearchPath) -> String {
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

fn show(search: &SearchPath, name: &str) -> Result<String, Failure> {
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
    for shadow in &element.shadows {
        out.push_str(&format!("  hides: {}\n", shadow.display()));
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
    for file in [
        "package-installs.yaml",
        "package-installs.json",
        "pkg-map",
        "README.rst",
        "README.md",
    ] {
        if dir.join(file).is_file() {
            out.push_str(&format!("  has: {file}\n"));
        }
    }
    let dirs = std::iter::once("environment.d").chain(PhaseName::ALL.iter().map(|p| p.dir_name()));
    for sub in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut scripts: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if scripts.is_empty() {
            continue;
        }
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
        out.push_str(&format!("  {sub}{place}: {}\n", scripts.join(", ")));
    }
    Ok(out)
}

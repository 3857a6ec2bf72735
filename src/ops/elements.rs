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

/// What `kiln elements list` calls an element that comes with kiln.
pub const BUILTIN_ORIGIN: &str = "built-in";

/// Below this many columns left for the description, `kiln elements list`
/// lets the line wrap rather than cut the description to nothing.
const MIN_DESCRIPTION_COLUMNS: usize = 20;

/// One element as `kiln elements list` shows it; `--json` prints an array
/// of these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// The element's name.
    pub name: String,
    /// What it does, in one line ([`description`]); `null` when it says
    /// nothing about itself.
    pub description: Option<String>,
    /// `built-in`, or the search-path directory that holds the element,
    /// as the path was given.
    pub origin: String,
    /// The element's directory.
    pub path: String,
    /// What it provides (`element-provides`).
    pub provides: Vec<String>,
    /// The directories of elements of the same name later on the search
    /// path, which this one hides.
    pub hides: Vec<String>,
}

/// Every element the search path holds, sorted by name.
pub fn listed(search: &SearchPath) -> Vec<Listed> {
    search
        .list()
        .into_iter()
        .map(|element| {
            let origin = if search.is_builtin(&element.dir) {
                BUILTIN_ORIGIN.to_string()
            } else {
                element
                    .dir
                    .parent()
                    .unwrap_or(&element.dir)
                    .display()
                    .to_string()
            };
            Listed {
                name: element.name.to_string(),
                description: description(&element.dir),
                origin,
                path: element.dir.display().to_string(),
                provides: names_in(&element.dir.join("element-provides")),
                hides: element
                    .shadows
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect(),
            }
        })
        .collect()
}

/// `kiln elements list --json`: [`listed`] as a JSON array.
pub fn list_json(search: &SearchPath) -> Result<String, Failure> {
    let mut text = serde_json::to_string_pretty(&listed(search)).map_err(Failure::internal)?;
    text.push('\n');
    Ok(text)
}

/// `kiln elements list`: every element the search path holds, one a line,
/// in columns: its name, where it comes from and what it does (with what
/// it provides and how many others it hides). With `columns` (stdout is a
/// terminal that wide) a description that does not fit is cut with `…`.
pub fn list(search: &SearchPath, columns: Option<usize>) -> String {
    let elements = listed(search);
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
    let width = |text: &str| text.chars().count();
    let name_width = elements.iter().map(|e| width(&e.name)).max().unwrap_or(0);
    let origin_width = elements.iter().map(|e| width(&e.origin)).max().unwrap_or(0);
    let mut out = String::new();
    for element in &elements {
        let mut notes = String::new();
        if !element.provides.is_empty() {
            notes.push_str(&format!("  (provides {})", element.provides.join(", ")));
        }
        if !element.hides.is_empty() {
            notes.push_str(&format!("  (hides {} other)", element.hides.len()));
        }
        let mut description = element.description.clone().unwrap_or_default();
        let used = name_width + 2 + origin_width + 2 + width(&notes);
        if let Some(columns) = columns
            && columns >= used + MIN_DESCRIPTION_COLUMNS
        {
            description = cut(&description, columns - used);
        }
        let line = format!(
            "{:<name_width$}  {:<origin_width$}  {description}{notes}",
            element.name, element.origin
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if let Some(builtin) = search.dirs().last()
        && elements.iter().any(|e| e.origin == BUILTIN_ORIGIN)
    {
        out.push_str(&format!(
            "\n{BUILTIN_ORIGIN}: kiln's own elements, unpacked in {}\n",
            builtin.display()
        ));
    }
    out
}

/// `text` in at most `columns` characters, ending in `…` when cut.
fn cut(text: &str, columns: usize) -> String {
    if text.chars().count() <= columns {
        return text.to_string();
    }
    let kept: String = text.chars().take(columns.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

/// What the element in `dir` does, in one line: the first sentence of its
/// `element.yaml`'s `description`, else of the first paragraph of its
/// `README.rst` or `README.md` (titles, underlines, comments and badges
/// skipped). `None` when it has neither.
pub fn description(dir: &Path) -> Option<String> {
    // A broken element.yaml is `kiln elements show`'s and the plan's to
    // report; the list falls back to the README.
    if let Ok(Some(yaml)) = plan::read_element_yaml(dir)
        && let Some(text) = yaml.description
        && let Some(line) = one_line(&text)
    {
        return Some(line);
    }
    ["README.rst", "README.md"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(dir.join(file)).ok())
        .find_map(|text| readme_summary(&text))
}

/// The first sentence of a README's first paragraph of prose.
fn readme_summary(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut in_comment = false;
    let mut in_directive = false;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim();
        let next = lines.get(index + 1).map_or("", |l| l.trim());
        index += 1;
        if !paragraph.is_empty() {
            if line.is_empty() {
                break;
            }
            paragraph.push(line);
            continue;
        }
        if in_comment {
            in_comment = !line.contains("-->");
            continue;
        }
        if in_directive {
            // An RST directive's or comment's body is indented.
            if line.is_empty() || lines[index - 1].starts_with([' ', '\t']) {
                continue;
            }
            in_directive = false;
        }
        if line.is_empty() || line.starts_with('#') || is_underline(line) {
            continue;
        }
        if line.starts_with("<!--") {
            in_comment = !line.contains("-->");
            continue;
        }
        if line.starts_with("..") {
            in_directive = true;
            continue;
        }
        // Badges and images.
        if line.starts_with("![") || line.starts_with("[![") {
            continue;
        }
        // An RST or Markdown (setext) title: the line above an underline.
        if is_underline(next) {
            index += 1;
            continue;
        }
        paragraph.push(line);
    }
    one_line(&paragraph.join(" "))
}

/// Whether `line` underlines (or overlines) a title: one punctuation
/// character repeated, as RST and Markdown's setext titles write it.
fn is_underline(line: &str) -> bool {
    let mut chars = line.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_punctuation() && line.len() >= 3 && chars.all(|c| c == first)
}

/// `text`'s first sentence, on one line, with Markdown's bold and RST's
/// literal markers made plain; `None` for empty text. A sentence of one
/// or two words (`**Experimental.**`) takes the next one with it.
fn one_line(text: &str) -> Option<String> {
    let plain = text.replace("**", "").replace("``", "`");
    let words: Vec<&str> = plain.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let mut sentence: Vec<&str> = Vec::new();
    for word in words {
        sentence.push(word);
        if ends_sentence(word) && sentence.len() > 2 {
            break;
        }
    }
    Some(sentence.join(" "))
}

/// Whether `word` ends a sentence: a full stop, question or exclamation
/// mark (after a closing bracket or quote too), but not an abbreviation.
fn ends_sentence(word: &str) -> bool {
    const ABBREVIATIONS: [&str; 6] = ["e.g.", "i.e.", "etc.", "vs.", "cf.", "approx."];
    let trimmed = word.trim_end_matches([')', '"', '\'', '`', '*', '_']);
    if ABBREVIATIONS
        .iter()
        .any(|a| trimmed.to_ascii_lowercase().trim_start_matches(['(', '`']) == *a)
    {
        return false;
    }
    trimmed.ends_with(['.', '!', '?']) && !trimmed.ends_with("..")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An element directory holding `files` (name, text).
    fn element(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    #[test]
    fn the_description_comes_from_element_yaml_first() {
        let dir = element(&[
            (
                "element.yaml",
                "description: >-\n  Grows the root filesystem at boot, e.g. on a\n  bigger disk. Reads no variables.\n",
            ),
            ("README.md", "# mine\n\nWhat the README says.\n"),
        ]);
        assert_eq!(
            description(dir.path()).as_deref(),
            Some("Grows the root filesystem at boot, e.g. on a bigger disk.")
        );
    }

    #[test]
    fn an_element_yaml_without_description_leaves_it_to_the_readme() {
        let dir = element(&[
            ("element.yaml", "distros: [debian]\n"),
            ("README.md", "# mine\n\nWhat the README says.\n"),
        ]);
        assert_eq!(
            description(dir.path()).as_deref(),
            Some("What the README says.")
        );
    }

    #[test]
    fn a_readme_rst_gives_its_first_sentence_after_the_title() {
        let dir = element(&[(
            "README.rst",
            "..\n   a comment\n   over two lines\n\n========\nmy-thing\n========\n\n\
             Installs ``thing`` and\nstarts it at boot. More text\nfollows.\n\n\
             Usage\n-----\n\nSet ``DIB_THING``.\n",
        )]);
        assert_eq!(
            description(dir.path()).as_deref(),
            Some("Installs `thing` and starts it at boot.")
        );
    }

    #[test]
    fn a_readme_md_gives_its_first_sentence_after_the_heading() {
        let dir = element(&[(
            "README.md",
            "<!-- generated -->\n# vm\n\n[![ci](badge.svg)](ci)\n\n\
             **Experimental.** Makes the image a bootable disk: a kernel\n\
             and GRUB. kiln's own code.\n\n## Files\n",
        )]);
        assert_eq!(
            description(dir.path()).as_deref(),
            Some("Experimental. Makes the image a bootable disk: a kernel and GRUB.")
        );
    }

    #[test]
    fn an_element_without_element_yaml_or_readme_has_no_description() {
        let dir = element(&[("element-deps", "base\n")]);
        assert_eq!(description(dir.path()), None);
        let dir = element(&[("README.md", "# only a title\n\n")]);
        assert_eq!(description(dir.path()), None);
    }

    #[test]
    fn the_list_is_columns_and_cuts_descriptions_to_the_terminal() {
        let builtin = tempfile::tempdir().expect("tempdir");
        let user = tempfile::tempdir().expect("tempdir");
        for (dir, name, readme) in [
            (builtin.path(), "vm", "# vm\n\nMakes a bootable disk.\n"),
            (
                builtin.path(),
                "growroot",
                "# growroot\n\nGrows the root filesystem to fill its disk at boot.\n",
            ),
            (user.path(), "growroot", "# growroot\n\nMy own.\n"),
            (user.path(), "site", ""),
        ] {
            std::fs::create_dir_all(dir.join(name)).expect("mkdir");
            std::fs::write(dir.join(name).join("README.md"), readme).expect("write");
        }
        let search = SearchPath::from_parts(&[user.path().to_path_buf()], None, builtin.path());
        let listed = listed(&search);
        let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["growroot", "site", "vm"]);
        let user_dir = user.path().display().to_string();
        assert_eq!(listed[0].origin, user_dir);
        assert_eq!(listed[0].hides.len(), 1);
        assert_eq!(listed[1].description, None);
        assert_eq!(listed[2].origin, BUILTIN_ORIGIN);
        assert_eq!(
            listed[2].description.as_deref(),
            Some("Makes a bootable disk.")
        );

        let whole = list(&search, None);
        let width = user_dir.len();
        assert!(
            whole.contains(&format!(
                "growroot  {user_dir}  My own.  (hides 1 other)\n\
                 site      {user_dir}\n\
                 vm        {BUILTIN_ORIGIN:<width$}  Makes a bootable disk.\n"
            )),
            "{whole}"
        );
        assert!(
            whole.contains("built-in: kiln's own elements, unpacked in "),
            "{whole}"
        );

        // On a terminal just wide enough for 20 columns of description,
        // the longer one is cut; a narrower one lets lines wrap.
        let columns = "growroot  built-in  ".len() + 20;
        let search = SearchPath::from_parts(&[], None, builtin.path());
        let cut_list = list(&search, Some(columns));
        assert!(
            cut_list.contains("growroot  built-in  Grows the root file…\n"),
            "{cut_list}"
        );
        assert!(
            cut_list
                .lines()
                .take_while(|l| !l.is_empty())
                .all(|l| l.chars().count() <= columns),
            "{cut_list}"
        );
        let narrow = list(&search, Some(30));
        assert!(narrow.contains("Grows the root filesystem to fill its disk at boot."));
    }
}

//! `kiln man`: kiln's manual pages, in roff.
//!
//! The pages are made from the command line's own definition
//! ([`crate::cli::definition`]) by clap_mangen, so they say what `--help`
//! says and cannot drift from it: `kiln(1)` lists every command, and each
//! command has its page, `kiln-build(1)`, `kiln-cache-prune(1)`… kiln's own
//! page adds what clap does not know: the exit status, the environment, the
//! files and where the user guide is. `kiln man` prints one page;
//! `--output DIR` writes them all (what the Debian package installs).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::failure::Failure;

/// The manual section kiln's pages are in: user commands.
const SECTION: &str = "1";

/// What `kiln man` was asked for.
#[derive(Debug)]
pub struct ManSettings {
    /// The command whose page to print, as its words (`["cache",
    /// "prune"]`); empty for kiln's own page.
    pub command: Vec<String>,
    /// Write every page into this directory instead of printing one.
    pub output: Option<PathBuf>,
}

/// Prints one page on stdout, or writes every page into `settings.output`
/// and names each on stderr.
pub fn run(settings: &ManSettings) -> Result<(), Failure> {
    if let Some(dir) = &settings.output {
        for path in write_pages(dir).map_err(|e| {
            Failure::Internal(miette::miette!(
                "cannot write the manual pages into {}: {e}",
                dir.display()
            ))
        })? {
            crate::terminal::status(&format!("wrote {}", path.display()));
        }
        return Ok(());
    }
    let page = page(&settings.command)?;
    std::io::stdout()
        .lock()
        .write_all(page.as_bytes())
        .map_err(|e| Failure::Internal(miette::miette!("cannot write the page to stdout: {e}")))
}

/// kiln's definition with its names filled in (`kiln-build` and so on)
/// and without clap's `help` command, which needs no page.
fn built() -> clap::Command {
    let mut root = crate::cli::definition().disable_help_subcommand(true);
    root.build();
    root
}

/// The page of the command named by `words` (kiln's own when empty).
pub fn page(words: &[String]) -> Result<String, Failure> {
    let root = built();
    let mut command = &root;
    for (depth, word) in words.iter().enumerate() {
        command = match command.find_subcommand(word) {
            Some(sub) if !sub.is_hide_set() => sub,
            _ => return Err(no_such_command(command, &words[..=depth])),
        };
    }
    Ok(render(command, words.is_empty()))
}

fn no_such_command(parent: &clap::Command, words: &[String]) -> Failure {
    let known: Vec<&str> = parent
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name())
        .collect();
    Failure::user(miette::miette!(
        help = format!(
            "`kiln man` prints kiln's own page; `kiln man COMMAND` a command's, one of: {}",
            known.join(", ")
        ),
        "kiln has no command `{}`",
        words.join(" ")
    ))
}

/// Writes `kiln.1` and a page for every command, at every depth, into
/// `dir` (made if missing); returns the paths written.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn write(
        command: &clap::Command,
        root: bool,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        let path = dir.join(format!("{}.{SECTION}", page_name(command)));
        fs_err::write(&path, render(command, root))?;
        written.push(path);
        for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
            write(sub, false, dir, written)?;
        }
        Ok(())
    }
    fs_err::create_dir_all(dir)?;
    let mut written = Vec::new();
    write(&built(), true, dir, &mut written)?;
    Ok(written)
}

/// `kiln`, `kiln-build`, `kiln-cache-prune`: the page's name, as clap
/// names a built subcommand.
fn page_name(command: &clap::Command) -> &str {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
}

/// One page: clap_mangen's sections, then kiln's own (on kiln's page) or a
/// pointer back to `kiln(1)`.
fn render(command: &clap::Command, root: bool) -> String {
    let man = clap_mangen::Man::new(command.clone()).section(SECTION);
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render(&mut out);
    let text = String::from_utf8_lossy(&out);
    // clap_mangen writes an empty date as nothing at all, which shifts the
    // source and manual into the date's and source's places: the title
    // line is written here, with the date left empty but there (no date,
    // so a page is the same whenever it is made).
    let mut text: String = text
        .lines()
        .map(|line| {
            if line.starts_with(".TH ") {
                format!(
                    ".TH {} {SECTION} \"\" \"kiln {}\" \"kiln manual\"\n",
                    page_name(command),
                    env!("CARGO_PKG_VERSION")
                )
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let extra = if root {
        kiln_sections()
    } else if command.get_name() == "disk-image-create" {
        let mut roff = dib_section();
        roff.control("SH", ["SEE ALSO"])
            .text([bold("kiln"), roman("(1)")]);
        roff
    } else {
        see_also_kiln()
    };
    // Rendered as the page is, so an apostrophe is one (not a closing
    // quote), without the preamble the page already starts with.
    let extra = extra.render();
    let preamble = Roff::new().render();
    text.push_str(extra.strip_prefix(&preamble).unwrap_or(&extra));
    ascii(&text)
}

/// `text` with every character beyond ASCII written as groff's `\[uXXXX]`:
/// troff reads bytes, and without `preconv` (which `man` runs, a plain
/// `groff -man` does not) a `…` in a help text is an invalid character.
fn ascii(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\[u{:04X}]", u32::from(c));
        }
    }
    out
}

fn see_also_kiln() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("kiln"),
        roman("(1), and kiln's user guide (see "),
        bold("kiln"),
        roman("(1))."),
    ]);
    roff
}

/// `kiln disk-image-create` takes DIB's options, which clap does not
/// parse: its page quotes the text `disk-image-create --help` prints.
fn dib_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["DISKIMAGE-BUILDER'S COMMAND LINE"]);
    roff.text([roman(
        "The same as kiln started under the name disk-image-create (a link to kiln); \
         disk-image-create --help prints:",
    )]);
    roff.control("PP", []).control("nf", []);
    for line in crate::cli::dib::help_text().lines() {
        if line.is_empty() {
            roff.control("sp", []);
        } else {
            roff.text([roman(line)]);
        }
    }
    roff.control("fi", []);
    roff
}

/// A tagged paragraph: `tag` in bold, then `text`.
fn item(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text([roman(text)]);
}

/// What kiln's own page says beyond the command line.
fn kiln_sections() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    item(&mut roff, "0", "Success.");
    item(
        &mut roff,
        "1",
        "A mistake of the user: an imagefile, lock or option that is wrong. The diagnostic points at the line to fix and says what to do.",
    );
    item(
        &mut roff,
        "2",
        "A failure of kiln or of the host it runs on (a tool that failed, a full disk, a mirror that cannot be reached).",
    );

    roff.control("SH", ["ENVIRONMENT"]);
    item(
        &mut roff,
        "KILN_CACHE_DIR",
        "The cache: downloaded packages, the built-in elements and tree snapshots (the --cache-dir option). Default: /var/cache/kiln for root, else ~/.cache/kiln.",
    );
    item(
        &mut roff,
        "KILN_ELEMENTS_PATH, ELEMENTS_PATH",
        "Directories of elements, separated by colons, searched after --elements-path and before kiln's built-in elements.",
    );
    item(
        &mut roff,
        "KILN_MIRROR",
        "Download the locked packages from this mirror or proxy of the same distribution instead of the lock's (the --mirror option).",
    );
    item(
        &mut roff,
        "KILN_NO_TMPFS",
        "Make the image's tree on disk rather than in memory (the --no-tmpfs option).",
    );
    item(
        &mut roff,
        "KILN_SNAPSHOT_LIMIT",
        "The size the cache's tree snapshots are kept within (default 8G); 0 turns incremental builds off.",
    );
    item(
        &mut roff,
        "KILN_HTTP_RETRIES, KILN_HTTP_BACKOFF_MS, KILN_HTTP_TIMEOUT_SECS",
        "How downloads retry and time out; the user guide's troubleshooting chapter gives their defaults.",
    );
    item(
        &mut roff,
        "KILN_QUIET",
        "Unless empty, 0, false, no or off: no progress is shown (the --quiet option).",
    );
    item(
        &mut roff,
        "NO_COLOR",
        "When set and not empty, diagnostics are printed without colour.",
    );

    roff.control("SH", ["FILES"]);
    item(
        &mut roff,
        "imagefile.yaml",
        "The image's declaration, which most commands take by default.",
    );
    item(
        &mut roff,
        "imagefile.lock",
        "Every input pinned by hash, written by kiln lock beside the imagefile; commit it with the imagefile.",
    );
    item(
        &mut roff,
        "out/",
        "Where kiln build writes the image, its outputs and its report (the --output option).",
    );
    item(
        &mut roff,
        "/var/cache/kiln",
        "root's cache (see KILN_CACHE_DIR).",
    );

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("kiln-build"),
        roman("(1) and the other pages named under SUBCOMMANDS; "),
        bold("disk-image-create"),
        roman(" (kiln started under that name takes diskimage-builder's command line: "),
        bold("kiln disk-image-create --help"),
        roman(")."),
    ]);
    roff.text([
        roman("The user guide: "),
        italic("/usr/share/doc/kiln/user-guide/"),
        roman(" where kiln is installed from its Debian package, "),
        italic("docs/user-guide/"),
        roman(" in kiln's source."),
    ]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kiln_s_page_lists_every_command_and_each_has_its_own_page() {
        let page = page(&[]).expect("kiln's page");
        assert!(page.contains("\n.TH kiln 1 \"\" \"kiln "), "{page}");
        assert!(page.contains("EXIT STATUS") && page.contains("KILN_CACHE_DIR"));
        for sub in built().get_subcommands() {
            let name = sub.get_name();
            let escaped = name.replace('-', "\\-");
            assert!(
                page.contains(&format!("kiln\\-{escaped}(1)")),
                "no {name} in {page}"
            );
            let own = super::page(&[name.to_string()]).expect("a command's page");
            assert!(own.contains(&format!("\n.TH kiln-{name} 1 ")), "{own}");
            assert!(own.contains("SEE ALSO") && !own.contains("EXIT STATUS"));
        }
        let man = super::page(&["man".into()]).expect("man's page");
        assert!(man.is_ascii() && man.contains("\\[u2026]"), "{man}");
        let dib = super::page(&["disk-image-create".into()]).expect("disk-image-create");
        assert!(
            dib.contains("\\-\\-checksum") && dib.contains("DIB_RELEASE"),
            "{dib}"
        );
        let prune = super::page(&["cache".into(), "prune".into()]).expect("cache prune");
        assert!(prune.contains("\\-\\-keep"), "{prune}");
    }

    #[test]
    fn an_unknown_command_is_a_user_error_that_lists_the_commands() {
        let failure = page(&["bild".into()]).expect_err("no such command");
        assert_eq!(failure.exit_code(), crate::failure::USER_EXIT_CODE);
        let report = failure.reports()[0];
        assert_eq!(report.to_string(), "kiln has no command `bild`");
        let help = report.help().map(|h| h.to_string()).unwrap_or_default();
        assert!(help.contains("build, ") && help.contains("man"), "{help}");
        let nested = page(&["cache".into(), "purge".into()]).expect_err("no such command");
        assert_eq!(
            nested.reports()[0].to_string(),
            "kiln has no command `cache purge`"
        );
    }

    #[test]
    fn output_writes_one_page_per_command_at_every_depth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_pages(&dir.path().join("man1")).expect("pages");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        for expected in [
            "kiln.1",
            "kiln-build.1",
            "kiln-cache-prune.1",
            "kiln-elements-show.1",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} not in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let build = std::fs::read_to_string(dir.path().join("man1/kiln-build.1")).expect("read");
        assert_eq!(build, page(&["build".into()]).expect("page"));
    }
}

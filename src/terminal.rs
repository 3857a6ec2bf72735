//! What kiln prints on the terminal, and how.
//!
//! Diagnostics go to stderr through miette's graphical handler: colour only
//! when stderr is a terminal and `NO_COLOR` is unset, a fixed width when it
//! is not a terminal so that logs and snapshots are stable. Status lines go
//! to stderr too; stdout carries only a command's output (a schema, a path).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use miette::{MietteHandlerOpts, ReportHandler};

pub mod downloads;

/// Width of diagnostics when stderr is not a terminal.
const PIPE_WIDTH_COLUMNS: usize = 100;

/// Installs kiln's diagnostic style. Call once, before printing anything.
pub fn install() {
    // Installing twice fails harmlessly; the first style stays.
    let _ = miette::set_hook(Box::new(|_| handler()));
}

fn handler() -> Box<dyn ReportHandler> {
    let tty = std::io::stderr().is_terminal();
    let colour = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Lines wrap at spaces only: a URL or path in a message stays whole, so
    // it can be copied from the terminal.
    let mut options = MietteHandlerOpts::new()
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .break_words(false)
        .terminal_links(false)
        .color(colour)
        .unicode(true)
        .force_graphical(true);
    if !tty {
        options = options.width(PIPE_WIDTH_COLUMNS);
    }
    Box::new(options.build())
}

/// Prints a diagnostic (error or warning) to stderr.
pub fn diagnostic(report: &miette::Report) {
    // A closed stderr leaves nothing to tell; ignore write errors.
    let write = || {
        let _ = writeln!(std::io::stderr().lock(), "{report:?}");
    };
    match bars() {
        Some(bars) => bars.suspend(write),
        None => write(),
    }
}

/// Whether `KILN_LOG=debug` asks for every host command and its exit
/// code on stderr: the one place that variable is read.
pub fn debug_log() -> bool {
    std::env::var_os("KILN_LOG").is_some_and(|v| v == "debug")
}

/// The width of the terminal stdout writes to, in columns; `None` when
/// stdout is not a terminal (a pipe or a file gets whole lines).
pub fn stdout_columns() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size_of(std::io::stdout()).map(|(width, _)| usize::from(width.0))
}

/// Prints a one-line status message to stderr (above any progress bar,
/// which is drawn again below it).
pub fn status(message: &str) {
    let write = || {
        let _ = writeln!(std::io::stderr().lock(), "{message}");
    };
    match bars() {
        Some(bars) => bars.suspend(write),
        None => write(),
    }
}

/// Prints a one-line warning to stderr: something went wrong that the
/// command carries on without.
pub fn warning(message: &str) {
    status(&format!("warning: {message}"));
}

/// Makes a panic print as an internal error that asks for a bug report,
/// rather than as a Rust backtrace hint; `main` then exits 2.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(
            std::io::stderr().lock(),
            "internal error: kiln crashed ({info}).\n\
             This is a bug in kiln, not in your input; please report it with the command you ran."
        );
    }));
}

/// Whether `--quiet` asks for no progress output: no spinner, no step
/// lines, no download bar or download lines (summaries, warnings and
/// errors still print).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns progress output off (`--quiet`). Call before anything is shown.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether progress output is off (`--quiet`).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Where progress is shown as it changes, redrawn in place (on a terminal
/// only): the build's step spinner and the download bar share it, so that
/// they are drawn one below the other instead of over each other.
static BARS: OnceLock<Option<indicatif::MultiProgress>> = OnceLock::new();

/// The terminal's progress area: `None` when stderr is not a terminal, and
/// with `--quiet`, where progress is plain lines or nothing.
pub(crate) fn bars() -> Option<&'static indicatif::MultiProgress> {
    BARS.get_or_init(|| {
        (std::io::stderr().is_terminal() && !quiet()).then(|| {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())
        })
    })
    .as_ref()
}

/// The spinner that shows the build's current step with its elapsed time,
/// on a terminal only (logs and pipes get one plain line per step).
static PROGRESS: OnceLock<Option<indicatif::ProgressBar>> = OnceLock::new();

fn spinner() -> Option<&'static indicatif::ProgressBar> {
    PROGRESS
        .get_or_init(|| {
            let bar = bars()?.add(indicatif::ProgressBar::new_spinner());
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            Some(bar)
        })
        .as_ref()
}

/// Shows `step` as what the build is doing now: on a terminal as a spinner
/// with the step's elapsed time, elsewhere as a plain line.
pub fn progress(step: &str) {
    match spinner() {
        Some(bar) => {
            bar.reset_elapsed();
            bar.set_message(step.to_string());
        }
        None if quiet() => {}
        None => status(&format!("→ {step}")),
    }
}

/// Removes the spinner (before a final summary or an error).
pub fn progress_done() {
    if let Some(bar) = spinner() {
        bar.finish_and_clear();
    }
}

/// A size for people: `412.3 MiB`, or `1.5 GiB` from 1 GiB up.
pub fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

/// An argument as a shell would need it, on one line: quoted when it holds
/// anything but plain characters, control characters escaped (so a command
/// line can be shown in a YAML comment or a `help:` line and pasted back).
pub fn shell_word(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./,=:+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_string();
    }
    let escaped: String = arg
        .chars()
        .flat_map(|c| match c {
            '\'' => "'\\''".chars().collect::<Vec<_>>(),
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect();
    format!("'{escaped}'")
}

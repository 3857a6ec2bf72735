//! How a command fails, and the exit code each kind of failure gets.
//!
//! A user mistake (a bad manifest, a missing file, a wrong flag) exits 1
//! with diagnostics that say what to fix; a failure of kiln or the host
//! exits 2. Scripts and CI can tell the two apart.

use miette::Report;

/// Exit code of a user error: a bad manifest, a wrong flag.
pub const USER_EXIT_CODE: u8 = 1;
/// Exit code of an internal failure of kiln or the host.
pub const INTERNAL_EXIT_CODE: u8 = 2;

/// What to do when a write found the disk full, wherever it was.
const FULL_DISK_HELP: &str = "the disk holding the path above is full: free space there, or build elsewhere with -o DIR and keep the cache elsewhere with --cache-dir DIR (KILN_CACHE_DIR)";

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The user's input is wrong. Every diagnostic is printed.
    User(Vec<Report>),
    /// kiln itself, or the host it runs on, failed.
    Internal(Report),
}

impl Failure {
    /// A user failure from anything miette can print.
    pub fn user(diagnostic: impl Into<Report>) -> Self {
        Failure::User(vec![diagnostic.into()])
    }

    /// A failure of kiln or the host, from anything that can be shown (an
    /// error's own message). A full disk gets a `help:` line: the places
    /// that know which directory filled say more (the cache, the output
    /// directory), and this covers every other write.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        let message = error.to_string();
        if crate::host::space::mentions_out_of_space(&message) {
            return Failure::Internal(miette::miette!(help = FULL_DISK_HELP, "{message}"));
        }
        Failure::Internal(miette::miette!("{message}"))
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::User(_) => USER_EXIT_CODE,
            Failure::Internal(_) => INTERNAL_EXIT_CODE,
        }
    }

    /// The diagnostics to print, in order.
    pub fn reports(&self) -> Vec<&Report> {
        match self {
            Failure::User(reports) => reports.iter().collect(),
            Failure::Internal(report) => vec![report],
        }
    }
}

impl From<crate::manifest::Problems> for Failure {
    fn from(problems: crate::manifest::Problems) -> Self {
        Failure::User(
            problems
                .diagnostics()
                .into_iter()
                .map(Report::new)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(failure: &Failure) -> Option<String> {
        failure.reports()[0].help().map(|help| help.to_string())
    }

    #[test]
    fn a_full_disk_anywhere_gets_a_help_line_and_other_failures_none() {
        let full = Failure::internal(std::io::Error::from_raw_os_error(28));
        assert_eq!(full.exit_code(), INTERNAL_EXIT_CODE);
        assert!(
            full.reports()[0]
                .to_string()
                .contains("No space left on device")
        );
        assert!(help(&full).is_some_and(|h| h.contains("--cache-dir") && h.contains("-o DIR")));
        let other = Failure::internal("mke2fs failed");
        assert_eq!(help(&other), None);
    }
}

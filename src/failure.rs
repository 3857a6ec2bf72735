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
    /// error's own message).
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Failure::Internal(miette::miette!("{error}"))
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

//! Running programs of the host: one function, so every external command
//! is started, checked and reported the same way.
//!
//! kiln shells out only to tools whose job no crate does well (gpgv now;
//! mke2fs and qemu-img later). A missing tool is a clear error naming the
//! Debian package that provides it.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// What a finished command left behind.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// What it wrote on stdout.
    pub stdout: Vec<u8>,
    /// What it wrote on stderr.
    pub stderr: String,
}

impl Finished {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Why a command could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed.
    #[error("`{program}` is not installed (Debian package `{package}`)")]
    NotFound {
        /// The program's name.
        program: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// The program exists but could not be started.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program's name.
        program: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Runs `program` with `args` to completion, capturing its output. The
/// exit status is the caller's to judge; `package` names the Debian package
/// to install when the program is missing. With `KILN_LOG=debug` in the
/// environment, each command and its exit code are printed on stderr.
pub fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    package: &str,
) -> Result<Finished, CommandError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CommandError::NotFound {
                    program: program.to_string(),
                    package: package.to_string(),
                }
            } else {
                CommandError::Spawn {
                    program: program.to_string(),
                    source,
                }
            }
        })?;
    let finished = Finished {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if std::env::var_os("KILN_LOG").is_some_and(|v| v == "debug") {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        crate::terminal::status(&format!(
            "$ {program} {} → {:?}",
            shown.join(" "),
            finished.code
        ));
    }
    Ok(finished)
}

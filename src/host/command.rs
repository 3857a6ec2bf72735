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

/// One host program about to run: the one place kiln makes a
/// [`std::process::Command`] (clippy's `disallowed-methods` forbids it
/// elsewhere). Every way of running it maps a missing program to
/// [`CommandError::NotFound`] naming its Debian package; what it captures
/// is reported on stderr with `KILN_LOG=debug`.
#[derive(Debug)]
pub struct Program {
    command: Command,
    name: String,
    package: String,
}

impl Program {
    /// `program` (a name looked up on `PATH`, or a path), from Debian
    /// package `package`.
    pub fn new(program: impl AsRef<OsStr>, package: &str) -> Program {
        #[allow(clippy::disallowed_methods)]
        let command = Command::new(program.as_ref());
        Program {
            command,
            name: program.as_ref().to_string_lossy().into_owned(),
            package: package.to_string(),
        }
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Program {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<S: AsRef<OsStr>>(&mut self, args: impl IntoIterator<Item = S>) -> &mut Program {
        self.command.args(args);
        self
    }

    /// Sets one environment variable.
    pub fn env(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Program {
        self.command.env(name, value);
        self
    }

    /// Sets environment variables.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        &mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Program {
        self.command.envs(vars);
        self
    }

    /// Starts from an empty environment instead of kiln's.
    pub fn env_clear(&mut self) -> &mut Program {
        self.command.env_clear();
        self
    }

    /// Runs it in `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<std::path::Path>) -> &mut Program {
        self.command.current_dir(dir);
        self
    }

    /// Its standard input (for [`Program::spawn`]; [`Program::run`] gives
    /// it none).
    pub fn stdin(&mut self, stdio: impl Into<Stdio>) -> &mut Program {
        self.command.stdin(stdio);
        self
    }

    /// Its standard output (for [`Program::spawn`]).
    pub fn stdout(&mut self, stdio: impl Into<Stdio>) -> &mut Program {
        self.command.stdout(stdio);
        self
    }

    /// Its standard error (for [`Program::spawn`]).
    pub fn stderr(&mut self, stdio: impl Into<Stdio>) -> &mut Program {
        self.command.stderr(stdio);
        self
    }

    /// Starts it and hands back the running child.
    pub fn spawn(&mut self) -> Result<std::process::Child, CommandError> {
        self.command.spawn().map_err(|source| self.error(source))
    }

    /// Runs it to completion with no input, capturing its output.
    pub fn run(&mut self) -> Result<Finished, CommandError> {
        self.command.stdin(Stdio::null());
        let output = self.command.output().map_err(|source| self.error(source))?;
        Ok(self.finished(output, None))
    }

    /// Runs it to completion with `input` on its standard input,
    /// capturing its output. A program that exits before reading all of
    /// it is judged by its status and stderr, as any other.
    pub fn run_with_input(&mut self, input: &[u8]) -> Result<Finished, CommandError> {
        use std::io::Write as _;

        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        let output = child
            .wait_with_output()
            .map_err(|source| self.error(source))?;
        Ok(self.finished(output, Some(input.len())))
    }

    fn error(&self, source: std::io::Error) -> CommandError {
        if source.kind() == std::io::ErrorKind::NotFound {
            CommandError::NotFound {
                program: self.name.clone(),
                package: self.package.clone(),
            }
        } else {
            CommandError::Spawn {
                program: self.name.clone(),
                source,
            }
        }
    }

    fn finished(&self, output: std::process::Output, input: Option<usize>) -> Finished {
        let finished = Finished {
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if crate::terminal::debug_log() {
            let shown: Vec<String> = self
                .command
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let input = input.map_or(String::new(), |n| format!(" < {n} bytes"));
            crate::terminal::status(&format!(
                "$ {} {}{input} → {:?}",
                self.name,
                shown.join(" "),
                finished.code
            ));
        }
        finished
    }
}

impl CommandError {
    /// The operating system's answer, for errors that carry an
    /// [`std::io::Error`] (a missing program is `NotFound`, with this
    /// error's message).
    pub fn into_io(self) -> std::io::Error {
        match self {
            CommandError::Spawn { source, .. } => source,
            not_found @ CommandError::NotFound { .. } => {
                std::io::Error::new(std::io::ErrorKind::NotFound, not_found.to_string())
            }
        }
    }
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
    Program::new(program, package).args(args).run()
}

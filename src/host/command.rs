//! Running programs of the host: one function, so every external command
//! is started, checked and reported the same way.
//!
//! kiln shells out only to tools whose job no crate does well (gpgv,
//! mke2fs, qemu-img, cp…). A missing tool is a clear error naming the
//! Debian package that provides it.
//!
//! Every program starts through the guard of
//! [`crate::host::signals::dies_with_kiln`]: it dies with kiln, also when
//! kiln is killed with SIGKILL (an mke2fs or a `qemu-img convert` does not
//! go on writing into an output nobody will finish), and while
//! [`Program::run`] waits for it, it is the command a SIGINT or SIGTERM
//! stops at once.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where util-linux's `setpriv` is on Debian (merged `/usr` or not).
pub(crate) const SETPRIV_CANDIDATES: [&str; 2] = ["/usr/bin/setpriv", "/bin/setpriv"];

/// util-linux's `setpriv`, if installed.
pub(crate) fn setpriv() -> Option<PathBuf> {
    SETPRIV_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// `program` as `PATH` finds it (a path is taken as it is), if it is there.
fn on_path(program: &OsStr) -> Option<PathBuf> {
    let program = Path::new(program);
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

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
    /// How many of the command's first arguments are the guard's (none
    /// when it runs without one).
    guard_args: usize,
    /// The program is not on `PATH`: running it is
    /// [`CommandError::NotFound`] (the guard would start and fail instead).
    missing: bool,
}

impl Program {
    /// `program` (a name looked up on `PATH`, or a path), from Debian
    /// package `package`, started through the guard (see the module
    /// documentation).
    pub fn new(program: impl AsRef<OsStr>, package: &str) -> Program {
        let Some(setpriv) = setpriv() else {
            // No util-linux: the program runs as it is, as it did before
            // the guard (and a build says `setpriv` is missing when it
            // gets to its first chroot command).
            return Program::plain(program, package);
        };
        let Some(resolved) = on_path(program.as_ref()) else {
            let mut missing = Program::plain(program, package);
            missing.missing = true;
            return missing;
        };
        let mut guarded = crate::host::signals::dies_with_kiln(&setpriv);
        guarded.guard_args = guarded.command.get_args().count() + 1;
        guarded.command.arg(resolved);
        guarded.name = program.as_ref().to_string_lossy().into_owned();
        guarded.package = package.to_string();
        guarded
    }

    /// `program` started as it is, without the guard: the guard itself,
    /// which kiln's chroot runner and QEMU build on.
    pub(crate) fn plain(program: impl AsRef<OsStr>, package: &str) -> Program {
        #[allow(clippy::disallowed_methods)]
        let command = Command::new(program.as_ref());
        Program {
            command,
            name: program.as_ref().to_string_lossy().into_owned(),
            package: package.to_string(),
            guard_args: 0,
            missing: false,
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

    /// Leaves one variable of kiln's environment out.
    pub fn env_remove(&mut self, name: impl AsRef<OsStr>) -> &mut Program {
        self.command.env_remove(name);
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
        if self.missing {
            return Err(self.error(std::io::ErrorKind::NotFound.into()));
        }
        self.command.spawn().map_err(|source| self.error(source))
    }

    /// Runs it to completion with no input, capturing its output. A
    /// SIGINT or SIGTERM to kiln meanwhile kills it (its status is then
    /// "killed by a signal").
    pub fn run(&mut self) -> Result<Finished, CommandError> {
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = self.spawn()?;
        let running = crate::host::signals::Running::register(child.id());
        let output = child.wait_with_output();
        drop(running);
        let output = output.map_err(|source| self.error(source))?;
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
        let running = crate::host::signals::Running::register(child.id());
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        let output = child.wait_with_output();
        drop(running);
        let output = output.map_err(|source| self.error(source))?;
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
                .skip(self.guard_args)
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

//! Running a command inside the image tree (DIB's in-target phases) or
//! beside it (root.d, extra-data.d, block-device.d, cleanup.d), so that
//! nothing it starts can outlive it or kiln.
//!
//! Each command gets a PID namespace of its own; its first process is the
//! namespace's init, and when that exits or is killed the kernel kills
//! every process left in the namespace, so a daemon a script started (or
//! `sleep 1000 &`) cannot keep the tree busy. And the namespace's init dies
//! with kiln, even on SIGKILL.
//!
//! ## Why util-linux and not fork
//! Doing this in process needs `fork` and code between `fork` and `exec`
//! (`unshare(CLONE_NEWPID)`, a second fork, `prctl(PR_SET_PDEATHSIG)`,
//! mounting /proc, `chroot`), all of which is `unsafe` in Rust, and the
//! crate forbids `unsafe`. util-linux, which every Debian host has
//! (`Essential: yes`), already implements it, so the command line is
//!
//! ```text
//! setpriv --pdeathsig KILL -- /bin/sh -c <guard> kiln-guard <kiln pid> \
//!     unshare --pid --fork --kill-child=KILL \
//!     --mount-proc=/proc --root=<tree> --wd=/ -- <argv>
//! ```
//!
//! `setpriv` sets the parent-death signal to SIGKILL; the guard
//! ([`crate::host::signals::dies_with_kiln`]) checks that kiln did not die
//! before that (else the command never starts) and unblocks SIGINT and
//! SIGTERM, which kiln keeps blocked on every thread, also while it
//! spawns; then it execs `unshare`, which so dies with the kiln thread
//! that started it. `unshare`
//! forks the namespace's init, which gets SIGKILL when `unshare` dies
//! (`--kill-child`; util-linux 2.38 checks after its `prctl` that `unshare`
//! is still its parent), and relays its exit status. `--mount-proc` mounts a
//! /proc for the new PID namespace inside the tree, in a mount namespace of
//! the command's own (a child of the build's), so the command sees its own
//! processes and every mount a script leaves behind vanishes with it.
//! Commands outside the chroot get the same PID namespace but stay in the
//! build's mount namespace, because root.d and block-device.d scripts mount
//! things into the tree that later phases need.
//!
//! Known gaps: the parent-death signal is tied to the *thread* that spawned
//! the command, so the build must not run commands from short-lived
//! threads; and util-linux 2.38's `unshare` reports an init killed by a signal as exit
//! status 1 (with "sigprocmask unblock failed") rather than re-raising it.
//! The command is PID 1 of its namespace, so signals it has no handler for
//! are ignored when sent from inside it (a script's `kill $$`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use super::ChrootError;
use crate::host::command::SETPRIV_CANDIDATES;
use crate::host::signals::{self, Running};

/// How many of a command's last output lines are kept for error messages.
pub const TAIL_LINES: usize = 40;

/// The `PATH` every command gets.
pub const CHROOT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

const UNSHARE_CANDIDATES: [&str; 2] = ["/usr/bin/unshare", "/bin/unshare"];

/// How a command ended, with the end of its output.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its last [`TAIL_LINES`] lines of output (stdout and stderr merged).
    pub tail: Vec<String>,
    /// The command line, for messages.
    pub command: String,
}

impl Finished {
    /// `Ok` when the command exited 0; otherwise [`ChrootError::Failed`]
    /// carrying its last lines of output.
    pub fn check(self) -> Result<(), ChrootError> {
        if self.status.success() {
            return Ok(());
        }
        Err(ChrootError::Failed {
            command: self.command,
            status: describe(self.status),
            tail: self.tail.join("\n"),
        })
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// Arguments shown of a command in messages; `dpkg --install` with a
/// hundred paths says how many it had instead.
const SHOWN_ARGS: usize = 6;

fn shown_command(argv: &[String]) -> String {
    if argv.len() <= SHOWN_ARGS {
        return argv.join(" ");
    }
    format!(
        "{} … ({} more arguments)",
        argv[..SHOWN_ARGS].join(" "),
        argv.len() - SHOWN_ARGS
    )
}

/// dpkg's force options in the chroot: its defaults (`security-mac`,
/// `downgrade`; `DPKG_FORCE` replaces them) and `unsafe-io`, no fsync after
/// each file, as mmdebstrap builds. A build that fails throws its tree
/// away, so what fsync guards against cannot reach an image. In the
/// environment rather than in `/etc/dpkg/dpkg.cfg.d`, so the tree is not
/// touched; dpkg before 1.19.5 ignores it.
pub const DPKG_FORCE: &str = "security-mac,downgrade,unsafe-io";

/// Runs `argv` chrooted into `root` (working directory `/`) in a new PID
/// namespace, with only `env`, `PATH` ([`CHROOT_PATH`]),
/// `DEBIAN_FRONTEND=noninteractive` and `DPKG_FORCE` ([`DPKG_FORCE`]) in
/// its environment (entries in `env` win). Output is streamed to `log` as
/// it comes; the exit status is the
/// caller's to judge ([`Finished::check`]). Shells out to util-linux's
/// `setpriv` and `unshare` (see the module documentation).
pub fn run_in_chroot(
    root: &Path,
    argv: &[String],
    env: &[(String, String)],
    log: &mut dyn Write,
) -> Result<Finished, ChrootError> {
    let proc = root.join("proc");
    if !proc.is_dir() {
        fs_err::create_dir_all(&proc)?;
    }
    let mut namespace_args: Vec<std::ffi::OsString> = vec![
        "--mount-proc=/proc".into(),
        {
            let mut root_arg = std::ffi::OsString::from("--root=");
            root_arg.push(root.as_os_str());
            root_arg
        },
        "--wd=/".into(),
    ];
    namespace_args.push("--".into());
    // A tree of another architecture (arm64 on amd64): its binaries run
    // through QEMU, registered only in the command's own namespaces.
    let emulation = match super::emulation::Emulation::for_tree(root)? {
        Some(emulation) => emulation.prefix(root)?.0,
        None => Vec::new(),
    };
    run(&namespace_args, Path::new("/"), argv, env, log, emulation)
}

/// Runs `argv` on the host, beside the tree (DIB's outside-chroot phases),
/// in a new PID namespace but in the build's mount namespace, with the
/// same environment rules as [`run_in_chroot`] plus `TARGET_ROOT=<root>`,
/// in `working_dir` (where DIB's hooks find the user's directory, such as
/// `manifests` writing `<image>.d/`). Shells out to util-linux's `setpriv`
/// and `unshare`.
pub fn run_outside_chroot(
    target_root: &Path,
    working_dir: &Path,
    argv: &[String],
    env: &[(String, String)],
    log: &mut dyn Write,
) -> Result<Finished, ChrootError> {
    let mut env = env.to_vec();
    env.push(("TARGET_ROOT".to_string(), target_root.display().to_string()));
    run(&["--".into()], working_dir, argv, &env, log, Vec::new())
}

/// Opens an interactive shell (`/bin/bash`, else `/bin/sh`) chrooted into
/// `root`, in a new PID namespace like [`run_in_chroot`], with the
/// terminal's stdin, stdout and stderr: DIB's `break=after-error`. Returns
/// when the user leaves the shell.
pub fn shell_in_chroot(
    root: &Path,
    env: &[(String, String)],
) -> Result<std::process::ExitStatus, ChrootError> {
    let shell = if root.join("bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let setpriv = find_tool("setpriv", &SETPRIV_CANDIDATES)?;
    let unshare = find_tool("unshare", &UNSHARE_CANDIDATES)?;
    let mut root_arg = std::ffi::OsString::from("--root=");
    root_arg.push(root.as_os_str());
    let mut command = signals::dies_with_kiln(&setpriv);
    command
        .arg(unshare)
        .args(["--pid", "--fork", "--kill-child=KILL", "--mount-proc=/proc"])
        .arg(root_arg)
        .args(["--wd=/", "--", shell])
        .env_clear()
        .env("PATH", CHROOT_PATH)
        .env(
            "TERM",
            std::env::var("TERM").unwrap_or_else(|_| "dumb".into()),
        )
        .env("PS1", "(kiln chroot) \\w# ")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .current_dir("/");
    let spawned = command.spawn();
    let mut child = spawned.map_err(|error| ChrootError::Spawn {
        command: shell.to_string(),
        source: error.into_io(),
    })?;
    child.wait().map_err(|source| ChrootError::Spawn {
        command: shell.to_string(),
        source,
    })
}

fn find_tool(program: &'static str, candidates: &[&str]) -> Result<PathBuf, ChrootError> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or(ChrootError::ToolMissing { program })
}

fn run(
    namespace_args: &[std::ffi::OsString],
    working_dir: &Path,
    argv: &[String],
    env: &[(String, String)],
    log: &mut dyn Write,
    emulation: Vec<std::ffi::OsString>,
) -> Result<Finished, ChrootError> {
    signals::check()?;
    let command_line = shown_command(argv);
    let setpriv = find_tool("setpriv", &SETPRIV_CANDIDATES)?;
    let unshare = find_tool("unshare", &UNSHARE_CANDIDATES)?;

    let (reader, writer) = std::io::pipe().map_err(|source| ChrootError::Spawn {
        command: command_line.clone(),
        source,
    })?;
    let writer_for_stderr = writer.try_clone().map_err(|source| ChrootError::Spawn {
        command: command_line.clone(),
        source,
    })?;

    let mut command = signals::dies_with_kiln(&setpriv);
    command
        .args(emulation)
        .arg(unshare)
        .args(["--pid", "--fork", "--kill-child=KILL"])
        .args(namespace_args)
        .args(argv)
        .env_clear()
        .env("PATH", CHROOT_PATH)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DPKG_FORCE", DPKG_FORCE)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .current_dir(working_dir)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr);
    // SIGINT and SIGTERM stay blocked here: one that arrives during the
    // spawn waits for the watcher, which kills the command once it is
    // registered below (or `register` does).
    let spawned = command.spawn();
    // The command holds our copies of the pipe's write end; only when they
    // are closed does the reader see the end of the output.
    drop(command);
    let mut child = spawned.map_err(|error| ChrootError::Spawn {
        command: command_line.clone(),
        source: error.into_io(),
    })?;
    let running = Running::register(child.id());

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut log_error = None;
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if log_error.is_none()
                    && let Err(error) = log.write_all(&line)
                {
                    // Keep draining, or the command would block on a full pipe.
                    log_error = Some(error);
                }
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                let text = String::from_utf8_lossy(&line);
                tail.push_back(text.trim_end_matches(['\n', '\r']).to_string());
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                log_error.get_or_insert(error);
                break;
            }
        }
    }
    // Unregister before reaping: once reaped, the pid may belong to
    // someone else.
    drop(running);
    let status = child.wait().map_err(|source| ChrootError::Spawn {
        command: command_line.clone(),
        source,
    })?;
    let _ = log.flush();
    signals::check()?;
    if let Some(source) = log_error {
        return Err(ChrootError::Io {
            action: "write the build log for",
            path: PathBuf::from(&command_line),
            source,
        });
    }
    Ok(Finished {
        status,
        tail: tail.into(),
        command: command_line,
    })
}

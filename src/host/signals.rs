//! SIGINT and SIGTERM during a build or a test: stop promptly, clean up,
//! exit non-zero. Part of the host seam: every program kiln starts that
//! must die on a signal (the chroot runner's commands, QEMU) registers
//! here.
//!
//! A signal handler may do almost nothing, and installing one needs
//! `unsafe` (which the crate forbids). Instead [`install`] blocks SIGINT and
//! SIGTERM and a watcher thread reads them from a `signalfd`. On a signal
//! it records it (the build loop checks [`check`] between steps) and kills
//! the chroot command running at that moment, whose PID namespace takes
//! every process of the command with it. The command being run then
//! returns [`Interrupted`] (in the chroot runner, `ChrootError::Interrupted`), the build unwinds through its
//! guards (mounts, tree setup, temporary directories), and kiln fails
//! saying it was interrupted, with exit status 2 (`main` does not return
//! [`exit_code`], 128 + the signal number as a shell reports it).
//!
//! The signal mask is per thread and inherited by new threads, so
//! [`install`] must run on the main thread before any other thread starts,
//! like `chroot::enter_build_namespace`; a thread that does not
//! block the signals would take the default action and end kiln at once
//! (which the namespaces still clean up after, but without unwinding).
//!
//! ## Starting a program that must die with kiln
//! The signals stay blocked on every kiln thread, also while a program is
//! spawned: a signal that arrives then waits for the watcher instead of
//! ending kiln on the spot. A blocked mask is inherited across `fork` and
//! `exec` (the standard library resets it on some spawn paths and not on
//! others), and resetting it in the child would need `pre_exec`
//! (`unsafe`). So [`dies_with_kiln`] starts the program through
//!
//! ```text
//! setpriv --pdeathsig KILL -- /bin/sh -c <guard> kiln-guard <kiln pid> \
//!     <program> <args>
//! ```
//!
//! `setpriv` asks for SIGKILL when kiln dies; the guard script then checks
//! that its parent is still kiln (a kiln killed between `fork` and that
//! `prctl` left an orphan, now the child of init or a subreaper, which
//! must not go on to run a command nobody will clean up), and execs
//! coreutils' `env --default-signal=INT,TERM`, which unblocks the two
//! signals and restores their default action for the program. There is no
//! moment in which a signal to kiln is lost or ends it without unwinding,
//! nor one in which a SIGKILL of kiln leaves the program running.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use crate::host::command::Program;

/// Signal handling could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up SIGINT/SIGTERM handling: {source}")]
pub struct SignalError {
    /// The kernel's answer.
    pub source: nix::Error,
}

/// SIGINT or SIGTERM arrived: what is running stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {signal}")]
pub struct Interrupted {
    /// The signal that arrived.
    pub signal: Signal,
}

/// The signal received, as a raw number; 0 while none has arrived.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The process id of the chroot command running now, if any. The watcher
/// holds the lock while it kills, and the runner clears it before reaping
/// the child, so the id cannot have been reused by then.
static RUNNING: Mutex<Option<i32>> = Mutex::new(None);

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Blocks SIGINT and SIGTERM on the calling thread (and every thread it
/// starts later) and starts the thread that turns them into the build's
/// interrupt flag. Installing twice is harmless.
pub fn install() -> Result<(), SignalError> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let mask = stop_signals();
    mask.thread_block()
        .map_err(|source| SignalError { source })?;
    let signals = SignalFd::new(&mask).map_err(|source| SignalError { source })?;
    std::thread::Builder::new()
        .name("kiln-signals".to_string())
        .spawn(move || watch(&signals))
        .map_err(|source| SignalError {
            source: source
                .raw_os_error()
                .map_or(nix::Error::EAGAIN, nix::Error::from_raw),
        })?;
    let _ = INSTALLED.set(());
    Ok(())
}

const STOP_SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

fn stop_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for signal in STOP_SIGNALS {
        mask.add(signal);
    }
    mask
}

/// The guard between `setpriv` and the program (see the module
/// documentation): `$1` is the pid the program's parent must have. The
/// shell exports `PWD` and `SHLVL`, which the program's environment must
/// not gain.
pub(crate) const GUARD_SCRIPT: &str = r#"[ "$PPID" = "$1" ] || exit 125; shift; exec /usr/bin/env -u PWD -u SHLVL --default-signal=INT,TERM -- "$@""#;

/// A command line that starts a program so that it dies with kiln (even on
/// SIGKILL) and starts with SIGINT and SIGTERM unblocked, with no window
/// around the spawn (see the module documentation). `setpriv` is
/// util-linux's; the caller adds the program and its arguments. Shells out
/// to `setpriv`, `/bin/bash` (which, unlike dash, passes on the functions
/// DIB hooks export, `BASH_FUNC_*%%`) and `env`.
pub(crate) fn dies_with_kiln(setpriv: &Path) -> Program {
    dies_with(setpriv, std::process::id())
}

/// [`dies_with_kiln`], with the pid the parent must have given: a test
/// stands in for kiln with another process.
pub(crate) fn dies_with(setpriv: &Path, parent: u32) -> Program {
    let mut command = Program::plain(setpriv, "util-linux");
    command
        // A non-interactive bash would read the file `BASH_ENV` names.
        .env_remove("BASH_ENV")
        .args(["--pdeathsig", "KILL", "--", "/bin/bash", "-c", GUARD_SCRIPT])
        .arg("kiln-guard")
        .arg(parent.to_string());
    command
}

fn watch(signals: &SignalFd) {
    loop {
        match signals.read_signal() {
            Ok(Some(info)) => {
                if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                    interrupt(signal);
                }
            }
            Ok(None) => {}
            Err(nix::Error::EINTR) => {}
            Err(error) => {
                eprintln!("kiln: warning: no longer watching for SIGINT/SIGTERM: {error}");
                return;
            }
        }
    }
}

/// Records `signal` as the reason the build stops and kills the running
/// chroot command. This is what the watcher does on SIGINT or SIGTERM.
pub fn interrupt(signal: Signal) {
    let _ = RECEIVED.compare_exchange(0, signal as i32, Ordering::SeqCst, Ordering::SeqCst);
    let running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pid) = *running {
        // The child is `setpriv`→`unshare`; killing it makes its PID
        // namespace's init die (`--kill-child`), which kills the rest.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The signal that interrupted the build, if one did.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        raw => Signal::try_from(raw).ok(),
    }
}

/// `Err(Interrupted)` once SIGINT or SIGTERM has arrived. The build loop
/// calls it between steps.
pub fn check() -> Result<(), Interrupted> {
    match received() {
        Some(signal) => Err(Interrupted { signal }),
        None => Ok(()),
    }
}

/// Forgets the signal received, so a test can be interrupted again.
#[cfg(test)]
pub(crate) fn forget_received() {
    RECEIVED.store(0, Ordering::SeqCst);
}

/// The exit status kiln ends with after `signal`: 128 + its number.
pub fn exit_code(signal: Signal) -> i32 {
    128 + signal as i32
}

/// Marks a chroot command as the one to kill on a signal, until dropped.
#[derive(Debug)]
pub(crate) struct Running(());

impl Running {
    /// Registers `pid`; if a signal already arrived, kills it at once.
    pub(crate) fn register(pid: u32) -> Running {
        let pid = i32::try_from(pid).ok();
        *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) = pid;
        if received().is_some()
            && let Some(pid) = pid
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        Running(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]

    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use super::GUARD_SCRIPT;

    /// Starts `touch <marker>` the way [`super::dies_with`] does, from a
    /// shell standing in for kiln that has already exited by the time the
    /// child gets to `setpriv` (`exit_first`), or that waits for it: what
    /// happens when kiln is killed between `fork` and the child's `prctl`.
    fn start_from_a_parent(marker: &Path, exit_first: bool) {
        let script = format!(
            r#"(sleep 0.3; exec setpriv --pdeathsig KILL -- /bin/sh -c "$0" kiln-guard $$ /usr/bin/touch "$1") & {}"#,
            if exit_first { "exit 0" } else { "wait" }
        );
        let status = Command::new("/bin/sh")
            .args(["-c", &script, GUARD_SCRIPT])
            .arg(marker)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_program_whose_kiln_died_while_spawning_it_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let orphan = dir.path().join("orphan-ran");
        start_from_a_parent(&orphan, true);
        let waited = dir.path().join("child-ran");
        start_from_a_parent(&waited, false);
        assert!(waited.exists(), "with its parent alive, the program runs");
        // The orphan had 0.3 s to wait plus as long again to run.
        std::thread::sleep(Duration::from_millis(900));
        assert!(!orphan.exists(), "the orphan ran its program");
    }

    #[test]
    fn the_program_starts_with_the_stop_signals_unblocked_and_default() {
        // Blocked by the caller, as kiln blocks them on every thread.
        let output = Command::new("/usr/bin/env")
            .args(["--block-signal=INT,TERM", "--ignore-signal=TERM"])
            .arg("setpriv")
            .args(["--pdeathsig", "KILL", "--", "/bin/bash", "-c", GUARD_SCRIPT])
            .arg("kiln-guard")
            .arg(std::process::id().to_string())
            .args(["/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        // env's parent is this process: the guard's check passes through
        // setpriv, which env execs.
        assert!(output.status.success(), "{text}");
        let masks: Vec<u64> = text
            .lines()
            .map(|line| u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap())
            .collect();
        // Bit n-1 is signal n: SIGINT is 2, SIGTERM 15.
        let stop: u64 = (1 << 1) | (1 << 14);
        assert_eq!(masks.len(), 2, "{text}");
        assert_eq!(masks[0] & stop, 0, "blocked: {text}");
        assert_eq!(masks[1] & stop, 0, "ignored: {text}");
    }
}

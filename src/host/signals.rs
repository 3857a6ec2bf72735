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
//! guards (mounts, tree setup, temporary directories), and kiln exits with
//! [`exit_code`] (128 + the signal number, as a shell reports it).
//!
//! The signal mask is per thread and inherited by new threads, so
//! [`install`] must run on the main thread before any other thread starts,
//! like `chroot::enter_build_namespace`; a thread that does not
//! block the signals would take the default action and end kiln at once
//! (which the namespaces still clean up after, but without unwinding).
//! A blocked mask is inherited across `fork` and `exec` (neither the
//! standard library nor `setpriv`/`unshare` reset it), and resetting it in
//! the child would need `pre_exec` (`unsafe`). So the runner unblocks the
//! two signals on its own thread for the moment of `spawn`
//! ([`Unblocked`]) and blocks them again. A signal arriving in that window
//! of a millisecond or so ends kiln with the default action instead of an
//! orderly unwind; the namespaces still release every mount and process.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

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

/// SIGINT and SIGTERM unblocked on the calling thread until dropped, so a
/// command spawned meanwhile starts with them deliverable. Does nothing
/// unless [`install`] ran.
#[derive(Debug)]
pub(crate) struct Unblocked {
    reblock: bool,
}

impl Unblocked {
    /// Unblocks them on this thread, if [`install`] blocked them.
    pub(crate) fn new() -> Unblocked {
        let reblock = INSTALLED.get().is_some() && stop_signals().thread_unblock().is_ok();
        Unblocked { reblock }
    }
}

impl Drop for Unblocked {
    fn drop(&mut self) {
        if self.reblock && stop_signals().thread_block().is_err() {
            eprintln!("kiln: warning: cannot block SIGINT/SIGTERM again");
        }
    }
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

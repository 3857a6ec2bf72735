//! The build's private mount namespace: the kernel's guarantee behind every
//! `Mount` guard.
//!
//! Guards release mounts when kiln unwinds, but a `kill -9` runs no `Drop`.
//! So the build first moves into a mount namespace of its own, made
//! recursively private so that nothing mounted afterwards propagates back to
//! the host. The host never sees the build's mounts at all, and the kernel
//! tears them all down when the last process in the namespace exits. The
//! processes kiln starts are in it too, and die with kiln (see
//! [`super::run`]), so "the last process" is kiln itself.
//!
//! ## Threads
//! `unshare(CLONE_NEWNS)` moves only the *calling thread* (and whatever it
//! spawns afterwards); threads that already exist stay in the host's
//! namespace, and `/proc/self` keeps describing the main thread. kiln
//! therefore calls [`enter_build_namespace`] on the main thread at the start
//! of `kiln build`, before anything starts a thread (reqwest's blocking
//! client does), and this module always inspects `/proc/thread-self`, which
//! is right whichever thread asks.
//!
//! ## Why not re-exec into a child
//! Re-executing kiln as `unshare --mount --propagation private kiln ...`
//! gives the same guarantee but adds a process, argument forwarding and a
//! hidden subcommand. The in-process `unshare(2)` needs no `fork` (which the
//! crate's `forbid(unsafe_code)` rules out) and is just as robust against
//! SIGKILL: the namespace dies with its last member either way. The only
//! cost is the rule above about threads, which [`enter_build_namespace`]
//! checks after the fact by comparing the namespace before and after.

use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use super::ChrootError;

const THREAD_MOUNT_NAMESPACE: &str = "/proc/thread-self/ns/mnt";

/// Moves the calling thread into a new, recursively private mount
/// namespace, so every mount made afterwards is invisible to the host and
/// vanishes when the build's last process exits (on SIGKILL too).
///
/// Call it on the main thread before any other thread exists; see the
/// module documentation.
pub fn enter_build_namespace() -> Result<(), ChrootError> {
    let before = current_mount_namespace()?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|source| ChrootError::Unshare { source })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| ChrootError::MakePrivate { source })?;
    let after = current_mount_namespace()?;
    if before == after {
        return Err(ChrootError::NotIsolated { before, after });
    }
    Ok(())
}

/// The identity of the calling thread's mount namespace, such as
/// `mnt:[4026531841]`.
pub fn current_mount_namespace() -> Result<String, ChrootError> {
    let path = Path::new(THREAD_MOUNT_NAMESPACE);
    Ok(fs_err::read_link(path)?.display().to_string())
}

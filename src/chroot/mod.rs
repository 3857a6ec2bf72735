//! The chroot runner: everything the build does *inside* the image tree.
//!
//! DIB runs its in-target phases with `chroot` after mounting /proc, /sys,
//! /dev and /dev/pts into the tree, swapping in the host's resolv.conf and a
//! `policy-rc.d` that keeps services from starting. kiln does the same, but
//! every resource is a guard whose `Drop` releases it ([`mounts::Mount`],
//! [`setup::TreeSetup`]), and the kernel backs the guards up: the build runs
//! in its own mount namespace ([`namespace::enter_build_namespace`]) and
//! every chroot command in its own PID namespace ([`run::run_in_chroot`]), so
//! a `kill -9` of kiln leaves no mount and no process behind. SIGINT and
//! SIGTERM are turned into a flag the build loop checks
//! ([`crate::host::signals`]), so an interrupted build unwinds through the
//! same guards and exits non-zero.
//!
//! This module owns no policy about *which* scripts run; the phases stage
//! decides that and calls [`run::run_in_chroot`] or
//! [`run::run_outside_chroot`] for each one.

pub mod emulation;
pub mod mounts;
pub mod namespace;
pub mod run;
pub mod setup;
pub mod twins;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use mounts::{
    ChrootMounts, Mount, mount_dib_filesystems, mount_tmpfs, mounts_under, remove_dir_all_checked,
    unmount_all_under,
};
pub use namespace::enter_build_namespace;
pub use run::{CHROOT_PATH, Finished, run_in_chroot, run_outside_chroot, shell_in_chroot};
pub use setup::{TreeSetup, prepare_tree};

/// Everything that can go wrong while preparing, entering or cleaning up a
/// chroot.
#[derive(Debug, thiserror::Error)]
pub enum ChrootError {
    /// `unshare(2)` refused to create a namespace (kiln is not root, or
    /// runs in a container that forbids it).
    #[error("cannot create a private mount namespace for the build: {source}")]
    Unshare {
        /// The kernel's answer.
        source: nix::Error,
    },
    /// The new mount namespace could not be made private, so mounts could
    /// leak to the host.
    #[error("cannot make the build's mounts private to it: {source}")]
    MakePrivate {
        /// The kernel's answer.
        source: nix::Error,
    },
    /// After `unshare` the thread is still in its old mount namespace.
    #[error("the build is not in its own mount namespace after unshare ({before} == {after})")]
    NotIsolated {
        /// `/proc/thread-self/ns/mnt` before.
        before: String,
        /// `/proc/thread-self/ns/mnt` after.
        after: String,
    },
    /// The tree's binaries are of an architecture this host cannot run.
    #[error(transparent)]
    Emulation(#[from] emulation::EmulationError),
    /// A mount failed.
    #[error("cannot mount {fstype} on {}: {source}", target.display())]
    Mount {
        /// What was being mounted (`proc`, `sysfs`, `a private /dev (tmpfs)`, ...).
        fstype: String,
        /// Where.
        target: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// An unmount failed even lazily.
    #[error("cannot unmount {}: {source}", target.display())]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// Something is still mounted below a directory kiln was asked to
    /// delete; deleting it would delete through the mount into the host.
    #[error("refusing to delete {}: still mounted inside it: {}", path.display(), list_paths(mounts))]
    StillMounted {
        /// The directory.
        path: PathBuf,
        /// The mount points found below it.
        mounts: Vec<PathBuf>,
    },
    /// A file operation failed; fs-err's message names the operation and
    /// the path.
    #[error(transparent)]
    Fs(#[from] std::io::Error),
    /// Something that is not a plain file operation failed on a file (a
    /// device node, the build log, a file a killed build left).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What kiln was doing (`read`, `write`, `rename`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// A path in the tree resolves outside the tree (an absolute symlink),
    /// so writing to it would write to the host.
    #[error("{} resolves outside the image tree (to {}); refusing to write through it", path.display(), resolved.display())]
    OutsideTree {
        /// The path inside the tree.
        path: PathBuf,
        /// Where it resolves on the host.
        resolved: PathBuf,
    },
    /// A util-linux tool kiln relies on is missing.
    #[error("`{program}` is not installed (Debian package `util-linux`)")]
    ToolMissing {
        /// The program's name.
        program: &'static str,
    },
    /// The command could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed ({status}); its last lines were:\n{tail}")]
    Failed {
        /// The command line.
        command: String,
        /// How it ended, in words.
        status: String,
        /// The last lines of its output.
        tail: String,
    },
    /// SIGINT or SIGTERM arrived; the build is stopping.
    #[error("interrupted by {signal}")]
    Interrupted {
        /// The signal that arrived.
        signal: nix::sys::signal::Signal,
    },
}

impl From<crate::host::signals::Interrupted> for ChrootError {
    fn from(interrupted: crate::host::signals::Interrupted) -> Self {
        ChrootError::Interrupted {
            signal: interrupted.signal,
        }
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

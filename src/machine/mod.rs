//! Booting a built image in QEMU, for `kiln boot` and `kiln test`.
//!
//! The image file is never written: a disk image is booted on a qcow2
//! overlay backed by it, a ramdisk (kernel and initramfs) is loaded into
//! the machine's RAM by QEMU. The machine's temporary directory holds
//! the overlay, a fresh ssh key, the NoCloud seed that hands the key to
//! cloud-init, and (for UEFI) a private copy of the firmware's variable
//! store. [`Machine`] owns the
//! running QEMU and stops it when dropped, on every path out: success,
//! error, and SIGINT/SIGTERM (through [`crate::host::signals`]); QEMU
//! gets a parent-death signal too, so it does not outlive kiln even when
//! kiln is killed with SIGKILL.
//!
//! - [`image`]: the image's files, and what kiln reads from them before
//!   booting (a disk's format and size, an initramfs's size).
//! - [`initramfs`]: an initramfs's archives read as the kernel unpacks
//!   them (for looking inside a ramdisk).
//! - [`seed`]: the NoCloud seed (`cidata` vfat image).
//! - [`ssh`]: the throwaway key and running commands in the machine.
//! - [`qemu`]: the QEMU command line and the running machine.

pub mod checks;
pub mod image;
pub mod initramfs;
pub mod qemu;
pub mod seed;
pub mod ssh;

pub use image::{DiskImage, ImageFiles, ImageFormat, RamdiskImage};
pub use qemu::{Accel, Boot, Firmware, Machine, MachineSpec, Platform, Serial};
pub use ssh::{SshKey, SshTarget};

use std::path::PathBuf;

/// Why a machine could not be prepared, started or talked to.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A host program could not be run.
    #[error(transparent)]
    Command(#[from] crate::host::command::CommandError),
    /// A host program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line, shortened.
        command: String,
        /// How it ended.
        status: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// A file operation failed; fs-err's message names the operation and
    /// the path.
    #[error(transparent)]
    Fs(#[from] std::io::Error),
    /// Something other than a plain file operation failed on a file (the
    /// temporary directory).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// `qemu-img info` printed something kiln does not understand.
    #[error("cannot read `qemu-img info` of {}: {reason}", path.display())]
    ImageInfo {
        /// The image.
        path: PathBuf,
        /// What was wrong with the output.
        reason: String,
    },
    /// The UEFI firmware files are not installed.
    #[error("the UEFI firmware {} is missing (Debian package `{package}`)", path.display())]
    NoFirmware {
        /// The file looked for.
        path: PathBuf,
        /// The package that holds it.
        package: &'static str,
    },
    /// No TCP port could be reserved for ssh.
    #[error("cannot find a free TCP port on 127.0.0.1: {source}")]
    NoPort {
        /// What went wrong.
        source: std::io::Error,
    },
    /// QEMU could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// A finished host command's failure as a [`MachineError`].
pub(crate) fn failed(command: &str, finished: &crate::host::command::Finished) -> MachineError {
    MachineError::Failed {
        command: command.to_string(),
        status: finished.code.map_or_else(
            || "killed by a signal".to_string(),
            |c| format!("exit status {c}"),
        ),
        stderr: finished.stderr.trim().to_string(),
    }
}

//! `kiln boot`: start a built image in QEMU, copy-on-write (a ramdisk from
//! RAM), with a fresh ssh key handed to cloud-init, and the serial console
//! on the terminal.

use crate::failure::Failure;
use crate::machine::{Boot, Machine, MachineSpec, Serial};
use crate::ops::machine::{MachineOptions, Target, absolute, find_target, machine_spec};
use crate::terminal;

/// Settings of `kiln boot`.
#[derive(Debug, Clone)]
pub struct BootSettings {
    /// The machine.
    pub machine: MachineOptions,
}

/// Boots the image with the serial console on the terminal (or in
/// `--serial-log`) until QEMU ends.
pub fn run(settings: &BootSettings) -> Result<(), Failure> {
    crate::host::signals::install().map_err(Failure::internal)?;
    // Dropped last: the machine's files are inside.
    let _temp = crate::host::temp::Session::start().map_err(Failure::internal)?;
    let options = &settings.machine;
    let target = find_target(options)?;
    let serial = match &options.serial_log {
        Some(path) => Serial::File(absolute(path)?),
        None => Serial::Console,
    };
    let spec = machine_spec(options, &target, serial)?;
    let mut machine = Machine::start(&spec).map_err(Failure::internal)?;
    terminal::status(&format!(
        "{}\nssh in, once cloud-init has run, with:\n  {}\n{}",
        booting(&target, &spec, &machine),
        machine.ssh.login_command(),
        match &spec.serial {
            Serial::Console => "the serial console follows; quit with Ctrl-a x".to_string(),
            Serial::File(path) => format!("serial console: {} (stop with Ctrl-C)", path.display()),
        }
    ));
    let status = machine.wait().map_err(Failure::internal)?;
    match crate::host::signals::received() {
        // Ctrl-C is how the guide says to quit: a normal end, not an error.
        Some(nix::sys::signal::Signal::SIGINT) => {
            terminal::status(&format!(
                "Ctrl-C: the machine was stopped; {}",
                match spec.boot {
                    Boot::Disk { .. } => "the image is unchanged",
                    Boot::Ramdisk(_) => "nothing was written back",
                }
            ));
            return Ok(());
        }
        Some(signal) => {
            return Err(Failure::Internal(miette::miette!(
                "interrupted by {signal:?}; the machine was stopped"
            )));
        }
        None => {}
    }
    match status {
        Some(status) if !status.success() => Err(Failure::Internal(miette::miette!(
            "{} ended with {status}{}",
            spec.platform.program(),
            match machine.qemu_output() {
                text if text.is_empty() => String::new(),
                text => format!(": {text}"),
            }
        ))),
        _ => Ok(()),
    }
}

/// What is booted, and how, as the first lines `kiln boot` prints.
fn booting(target: &Target, spec: &MachineSpec, machine: &Machine) -> String {
    match &spec.boot {
        Boot::Disk { disk_bytes, .. } => format!(
            "booting {} ({}, disk {} MiB) on the copy-on-write overlay {}; the image is not changed",
            target.files.tree_file().display(),
            spec.shown(),
            disk_bytes >> 20,
            machine.files.overlay_shown(),
        ),
        Boot::Ramdisk(ramdisk) => format!(
            "booting the ramdisk {} ({}, {} MiB) with the kernel {} ({}, memory {} MiB); \
             it runs from RAM, nothing is written back\n\
             kernel command line: {}",
            ramdisk.initramfs.display(),
            ramdisk.compression.map_or("unknown format", |c| c.as_str()),
            ramdisk.initramfs_bytes.div_ceil(1 << 20),
            ramdisk.kernel.display(),
            spec.shown(),
            spec.memory_mib,
            ramdisk.kernel_cmdline(spec.platform)
        ),
    }
}

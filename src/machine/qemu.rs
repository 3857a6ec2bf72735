//! The QEMU command line, and the running machine as a guard value.
//!
//! QEMU is started through util-linux's `setpriv --pdeathsig KILL` (as the
//! chroot runner does, see [`crate::chroot`]), so it gets SIGKILL when the
//! kiln thread that started it ends, even if kiln itself is killed with
//! SIGKILL. It is registered with [`crate::host::signals`], whose
//! watcher kills it on SIGINT or SIGTERM; and [`Machine`]'s `Drop` stops
//! it (SIGTERM, then SIGKILL) on every other way out.

use fs_err::File;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use super::image::DiskImage;
use super::seed::{SeedConfig, make_seed};
use super::ssh::{HOST_ADDRESS, SshKey, SshTarget};
use super::{MachineError, failed};
use crate::host::command;
use crate::host::signals::{Running, Unblocked};

/// The QEMU system emulator kiln runs.
pub const QEMU_PROGRAM: &str = "qemu-system-x86_64";

/// The UEFI firmware's code (read-only).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

/// The UEFI firmware's variable store, copied for each machine.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The machine's memory.
pub const MEMORY_MIB: u32 = 1024;

/// The machine's virtual CPUs.
pub const CPUS: u32 = 2;

/// What the overlay adds to the image's size when no disk size is given,
/// so the root filesystem has something to grow into.
pub const GROW_BYTES: u64 = 1 << 30;

/// How long QEMU gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

const SETPRIV_CANDIDATES: [&str; 2] = ["/usr/bin/setpriv", "/bin/setpriv"];

/// How QEMU runs the guest's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's own translator: slow, but works everywhere.
    Tcg,
    /// The kernel's hypervisor (`/dev/kvm`).
    Kvm,
}

impl Accel {
    /// The name QEMU uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// The firmware the machine boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF (UEFI), from Debian's `ovmf` package.
    Uefi,
}

impl Firmware {
    /// The name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        }
    }
}

/// Where the machine's first serial port goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// The terminal, multiplexed with QEMU's monitor (`Ctrl-a x` quits,
    /// `Ctrl-a c` switches to the monitor).
    Console,
    /// A file (the terminal is left alone).
    File(PathBuf),
}

/// Everything needed to start a machine.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    /// The image to boot (never written).
    pub image: DiskImage,
    /// The size of the machine's disk; at least the image's.
    pub disk_bytes: u64,
    /// How QEMU runs the guest.
    pub accel: Accel,
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// Where the serial console goes.
    pub serial: Serial,
    /// The machine's host name (cloud-init's `local-hostname`).
    pub hostname: String,
    /// The user to ssh in as (the image's cloud-init default user).
    pub user: String,
    /// More `#cloud-config` keys for the seed.
    pub extra_user_data: String,
}

/// The files of one machine, made in its temporary directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFiles {
    /// The qcow2 overlay backed by the image.
    pub overlay: PathBuf,
    /// The NoCloud seed.
    pub seed: PathBuf,
    /// The private copy of the UEFI variable store (UEFI only).
    pub uefi_vars: Option<PathBuf>,
}

/// QEMU's arguments for a machine.
pub fn qemu_args(
    spec: &MachineSpec,
    files: &MachineFiles,
    ssh_port: u16,
    name: &str,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-name", name, "-accel", spec.accel.as_str()]);
    if spec.accel == Accel::Kvm {
        push(&["-cpu", "host"]);
    }
    let memory = MEMORY_MIB.to_string();
    let cpus = CPUS.to_string();
    push(&["-m", &memory, "-smp", &cpus]);
    if let (Firmware::Uefi, Some(vars)) = (spec.firmware, &files.uefi_vars) {
        push(&["-drive"]);
        args.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}").into());
        args.push("-drive".into());
        args.push(drive_arg("if=pflash,format=raw,unit=1,file=", vars));
    }
    args.push("-drive".into());
    args.push(drive_arg(
        "if=virtio,format=qcow2,cache=unsafe,discard=unmap,file=",
        &files.overlay,
    ));
    args.push("-drive".into());
    args.push(drive_arg(
        "if=virtio,format=raw,readonly=on,file=",
        &files.seed,
    ));
    args.push("-nic".into());
    args.push(
        format!("user,model=virtio-net-pci,hostfwd=tcp:{HOST_ADDRESS}:{ssh_port}-:22").into(),
    );
    args.push("-device".into());
    args.push("virtio-rng-pci".into());
    match &spec.serial {
        Serial::Console => {
            args.extend(["-nographic", "-serial", "mon:stdio"].map(OsString::from));
        }
        Serial::File(path) => {
            args.extend(["-display", "none", "-monitor", "none", "-serial"].map(OsString::from));
            let mut arg = OsString::from("file:");
            arg.push(path.as_os_str());
            args.push(arg);
        }
    }
    args
}

/// A `-drive` value ending with a file name, whose commas QEMU wants
/// doubled.
fn drive_arg(options: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(options);
    arg.push(path.to_string_lossy().replace(',', ",,"));
    arg
}

/// A free TCP port on 127.0.0.1, found by letting the kernel choose one.
/// Another program may take it before QEMU does; that is reported as QEMU
/// failing to start.
pub fn free_port() -> Result<u16, MachineError> {
    let listener = std::net::TcpListener::bind((HOST_ADDRESS, 0))
        .map_err(|source| MachineError::NoPort { source })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| MachineError::NoPort { source })
}

/// A running QEMU with its temporary directory; stopped and removed when
/// dropped.
#[derive(Debug)]
pub struct Machine {
    child: Option<Child>,
    running: Option<Running>,
    /// How to ssh in.
    pub ssh: SshTarget,
    /// The machine's files.
    pub files: MachineFiles,
    /// Where QEMU's own stdout and stderr go (when the serial port is not
    /// on the terminal).
    pub qemu_log: PathBuf,
    // Last: removed after QEMU is stopped.
    dir: tempfile::TempDir,
}

impl Machine {
    /// Makes the overlay, key and seed in a new temporary directory and
    /// starts QEMU; shells out to `qemu-img`, `ssh-keygen`, `mkfs.vfat`,
    /// `mcopy`, `setpriv` and QEMU.
    pub fn start(spec: &MachineSpec) -> Result<Machine, MachineError> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-machine-")
            .tempdir()
            .map_err(|source| MachineError::Io {
                action: "create a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let overlay = dir.path().join("disk.qcow2");
        let size = spec.disk_bytes.max(spec.image.virtual_bytes).to_string();
        let finished = command::run(
            "qemu-img",
            &[
                "create".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                "-F".as_ref(),
                spec.image.format.as_str().as_ref(),
                "-b".as_ref(),
                spec.image.path.as_os_str(),
                overlay.as_os_str(),
                size.as_ref(),
            ],
            "qemu-utils",
        )?;
        if !finished.success() {
            return Err(failed("qemu-img create", &finished));
        }
        let key = SshKey::generate(dir.path())?;
        let instance_id = format!(
            "kiln-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let seed = make_seed(
            dir.path(),
            &SeedConfig {
                instance_id: &instance_id,
                hostname: &spec.hostname,
                public_key: &key.public,
                extra_user_data: &spec.extra_user_data,
            },
        )?;
        let uefi_vars = match spec.firmware {
            Firmware::Bios => None,
            Firmware::Uefi => {
                for firmware in [OVMF_CODE, OVMF_VARS] {
                    if !Path::new(firmware).is_file() {
                        return Err(MachineError::NoFirmware {
                            path: PathBuf::from(firmware),
                        });
                    }
                }
                let vars = dir.path().join("OVMF_VARS.fd");
                fs_err::copy(OVMF_VARS, &vars)?;
                Some(vars)
            }
        };
        let files = MachineFiles {
            overlay,
            seed,
            uefi_vars,
        };
        let port = free_port()?;
        let args = qemu_args(spec, &files, port, &format!("kiln-{}", spec.hostname));
        let qemu_log = dir.path().join("qemu.log");
        let setpriv = SETPRIV_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| MachineError::Spawn {
                program: "setpriv".to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not installed (Debian package `util-linux`)",
                ),
            })?;
        let mut command = command::Program::new(setpriv, "util-linux");
        command
            .args(["--pdeathsig", "KILL", "--", QEMU_PROGRAM])
            .args(&args);
        if let Serial::File(_) = spec.serial {
            let log = File::create(&qemu_log)?;
            let log_err = log.try_clone()?;
            command
                .stdin(Stdio::null())
                .stdout(log.into_file())
                .stderr(log_err.into_file());
        }
        let spawned = {
            // QEMU must start with SIGTERM deliverable, or stopping it
            // politely would not work.
            let _unblocked = Unblocked::new();
            command.spawn()
        };
        let child = spawned.map_err(|error| MachineError::Spawn {
            program: QEMU_PROGRAM.to_string(),
            source: error.into_io(),
        })?;
        let running = Running::register(child.id());
        Ok(Machine {
            child: Some(child),
            running: Some(running),
            ssh: SshTarget {
                user: spec.user.clone(),
                port,
                key: key.private,
            },
            files,
            qemu_log,
            dir,
        })
    }

    /// The machine's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// QEMU's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether QEMU has ended (without reaping it, so its process id stays
    /// its own while the signal watcher may still kill it).
    pub fn has_exited(&self) -> bool {
        let Some(pid) = self.raw_pid() else {
            return true;
        };
        !matches!(
            waitid(
                Id::Pid(pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG
            ),
            Ok(WaitStatus::StillAlive)
        )
    }

    /// Waits for QEMU to end (the user quit it, the guest powered off, or
    /// a signal made kiln kill it) and reaps it.
    pub fn wait(&mut self) -> Result<Option<ExitStatus>, MachineError> {
        if let Some(pid) = self.raw_pid() {
            while let Err(nix::Error::EINTR) =
                waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
            {}
        }
        Ok(self.reap())
    }

    /// QEMU's own output (its stdout and stderr), when it went to a file.
    pub fn qemu_output(&self) -> String {
        std::fs::read_to_string(&self.qemu_log)
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Stops QEMU: SIGTERM, then SIGKILL after a grace period. Idempotent.
    pub fn stop(&mut self) {
        if let Some(pid) = self.raw_pid()
            && !self.has_exited()
        {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while !self.has_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !self.has_exited() {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        self.reap();
    }

    fn raw_pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .map(Pid::from_raw)
    }

    /// Unregisters QEMU from the signal watcher, then reaps it: once
    /// reaped, its process id may belong to someone else.
    fn reap(&mut self) -> Option<ExitStatus> {
        self.running = None;
        let mut child = self.child.take()?;
        child.wait().ok()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::machine::ImageFormat;

    fn spec(firmware: Firmware, serial: Serial) -> MachineSpec {
        MachineSpec {
            image: DiskImage {
                path: PathBuf::from("/srv/web.qcow2"),
                format: ImageFormat("qcow2".into()),
                virtual_bytes: 1 << 30,
            },
            disk_bytes: 2 << 30,
            accel: Accel::Tcg,
            firmware,
            serial,
            hostname: "web".into(),
            user: "debian".into(),
            extra_user_data: String::new(),
        }
    }

    fn line(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_bios_machine_boots_the_overlay_with_the_seed_and_forwards_ssh() {
        let files = MachineFiles {
            overlay: PathBuf::from("/tmp/m,1/disk.qcow2"),
            seed: PathBuf::from("/tmp/m/seed.img"),
            uefi_vars: None,
        };
        let args = line(&qemu_args(
            &spec(Firmware::Bios, Serial::Console),
            &files,
            2222,
            "kiln-web",
        ));
        assert_eq!(
            args,
            "-name kiln-web -accel tcg -m 1024 -smp 2 \
             -drive if=virtio,format=qcow2,cache=unsafe,discard=unmap,file=/tmp/m,,1/disk.qcow2 \
             -drive if=virtio,format=raw,readonly=on,file=/tmp/m/seed.img \
             -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22 \
             -device virtio-rng-pci -nographic -serial mon:stdio"
        );
    }

    #[test]
    fn a_uefi_machine_gets_the_firmware_and_its_own_variables() {
        let files = MachineFiles {
            overlay: PathBuf::from("/tmp/m/disk.qcow2"),
            seed: PathBuf::from("/tmp/m/seed.img"),
            uefi_vars: Some(PathBuf::from("/tmp/m/OVMF_VARS.fd")),
        };
        let mut spec = spec(
            Firmware::Uefi,
            Serial::File(PathBuf::from("/tmp/serial.log")),
        );
        spec.accel = Accel::Kvm;
        let args = line(&qemu_args(&spec, &files, 2222, "kiln-web"));
        assert!(args.contains("-accel kvm -cpu host"), "{args}");
        assert!(
            args.contains(
                "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
                 -drive if=pflash,format=raw,unit=1,file=/tmp/m/OVMF_VARS.fd"
            ),
            "{args}"
        );
        assert!(
            args.ends_with("-display none -monitor none -serial file:/tmp/serial.log"),
            "{args}"
        );
    }

    #[test]
    fn a_free_port_is_found() {
        assert!(free_port().is_ok_and(|p| p > 0));
    }
}

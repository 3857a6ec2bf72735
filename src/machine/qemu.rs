//! The QEMU command line, and the running machine as a guard value.
//!
//! A machine boots either a disk image, through a throwaway qcow2 overlay
//! backed by it, or a ramdisk, whose kernel and initramfs QEMU loads
//! itself (`-kernel`, `-initrd`) with no disk at all but the NoCloud seed.
//!
//! QEMU is started through [`crate::host::signals::dies_with_kiln`] (as
//! the chroot runner's commands are), so it gets SIGKILL when the kiln
//! thread that started it ends, even if kiln itself is killed with
//! SIGKILL, and never starts if kiln died while spawning it. It is registered with [`crate::host::signals`], whose
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

use super::image::{DiskImage, RamdiskImage};
use super::seed::{SeedConfig, make_seed};
use super::ssh::{HOST_ADDRESS, SshKey, SshTarget};
use super::{MachineError, failed};
use crate::host::command;
use crate::host::signals::{Running, dies_with_kiln};

/// The machine QEMU emulates: the image's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// A PC (`qemu-system-x86_64`), with SeaBIOS or OVMF.
    X86_64,
    /// Arm's `virt` board (`qemu-system-aarch64 -machine virt`), with
    /// AAVMF: UEFI only, as arm64 cloud machines boot.
    Aarch64,
}

impl Platform {
    /// The platform that runs images of `arch`.
    pub fn for_arch(arch: crate::manifest::Arch) -> Platform {
        match arch {
            crate::manifest::Arch::Amd64 => Platform::X86_64,
            crate::manifest::Arch::Arm64 => Platform::Aarch64,
        }
    }

    /// The image architecture's Debian name, as users write it.
    pub fn arch_name(self) -> &'static str {
        match self {
            Platform::X86_64 => "amd64",
            Platform::Aarch64 => "arm64",
        }
    }

    /// The QEMU system emulator kiln runs.
    pub fn program(self) -> &'static str {
        match self {
            Platform::X86_64 => "qemu-system-x86_64",
            Platform::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package holding [`program`](Self::program).
    pub fn package(self) -> &'static str {
        match self {
            Platform::X86_64 => "qemu-system-x86",
            Platform::Aarch64 => "qemu-system-arm",
        }
    }

    /// Whether the platform has only UEFI firmware.
    pub fn uefi_only(self) -> bool {
        self == Platform::Aarch64
    }

    /// The UEFI firmware's code (read-only) and its variable store (copied
    /// for each machine), and the Debian package holding them.
    pub fn uefi_firmware(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Platform::X86_64 => (OVMF_CODE, OVMF_VARS, "ovmf"),
            Platform::Aarch64 => (AAVMF_CODE, AAVMF_VARS, "qemu-efi-aarch64"),
        }
    }

    /// What kiln puts first on a ramdisk's kernel command line: the
    /// kernel's console on the machine's first serial port, where kiln
    /// reads and shows it (a PC's 16550, the `virt` board's PL011).
    pub fn kernel_console(self) -> &'static str {
        match self {
            Platform::X86_64 => "console=ttyS0",
            Platform::Aarch64 => "console=ttyAMA0",
        }
    }

    /// The machine and CPU QEMU emulates, before the common arguments.
    fn machine_args(self, accel: Accel) -> &'static [&'static str] {
        match (self, accel) {
            (Platform::X86_64, Accel::Tcg) => &[],
            (Platform::X86_64, Accel::Kvm) => &["-cpu", "host"],
            // `max`: every feature TCG emulates, so any arm64 kernel runs.
            (Platform::Aarch64, Accel::Tcg) => &["-machine", "virt", "-cpu", "max"],
            (Platform::Aarch64, Accel::Kvm) => &["-machine", "virt", "-cpu", "host"],
        }
    }
}

/// The x86 UEFI firmware's code (read-only), from Debian's `ovmf`.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

/// The x86 UEFI firmware's variable store, copied for each machine.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The arm64 UEFI firmware's code, from Debian's `qemu-efi-aarch64`
/// (padded to the `virt` board's 64 MiB flash).
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";

/// The arm64 UEFI firmware's variable store, copied for each machine.
pub const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// The memory of a machine booting a disk image; a ramdisk's gets more
/// (see [`ramdisk_memory_mib`]).
pub const MEMORY_MIB: u64 = 1024;

/// How many times its compressed size a ramdisk's tree is taken to need
/// once unpacked: zstd and gzip shrink a Debian tree about three times,
/// and the tree's many small files each take whole 4 KiB pages in RAM.
pub const UNPACKED_RATIO: u64 = 4;

/// A ramdisk machine's memory is a multiple of this.
pub const MEMORY_STEP_MIB: u64 = 256;

/// The machine's virtual CPUs.
pub const CPUS: u32 = 2;

/// What the overlay adds to the image's size when no disk size is given,
/// so the root filesystem has something to grow into.
pub const GROW_BYTES: u64 = 1 << 30;

/// How long QEMU gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

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

/// What a machine boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// A disk image, through a qcow2 overlay; the image is never written.
    Disk {
        /// The image.
        image: DiskImage,
        /// The size of the machine's disk; at least the image's.
        disk_bytes: u64,
    },
    /// A ramdisk: QEMU loads the kernel and the initramfs, and the machine
    /// runs from RAM with no disk but the seed.
    Ramdisk(RamdiskImage),
}

impl Boot {
    /// The memory a machine booting this gets: [`MEMORY_MIB`] for a disk
    /// image, [`ramdisk_memory_mib`] for a ramdisk.
    pub fn memory_mib(&self) -> u64 {
        match self {
            Boot::Disk { .. } => MEMORY_MIB,
            Boot::Ramdisk(ramdisk) => ramdisk_memory_mib(ramdisk.initramfs_bytes),
        }
    }
}

/// The memory, in MiB, of a machine booting an initramfs of
/// `initramfs_bytes` (compressed): [`MEMORY_MIB`] plus twice the unpacked
/// tree (estimated as [`UNPACKED_RATIO`] times the file), rounded up to
/// [`MEMORY_STEP_MIB`].
///
/// Why twice: the kernel unpacks the initramfs into its rootfs, a tmpfs
/// that may hold at most half of the machine's memory (with no `root=`,
/// Linux mounts it with tmpfs's default size); a tree larger than that
/// fails to unpack (`Initramfs unpacking failed: write error`) and the
/// kernel panics. With twice the tree plus [`MEMORY_MIB`], the tree fits
/// in the half with [`MEMORY_MIB`]/2 to spare for what the running system
/// writes to `/`, and the memory left to run in is at least a disk
/// machine's, since the tree stays in RAM for the machine's whole life.
/// The compressed file itself needs no room of its own: QEMU loads it
/// into the machine's memory, and the kernel frees it once unpacked,
/// before anything else runs.
pub fn ramdisk_memory_mib(initramfs_bytes: u64) -> u64 {
    let tree_mib = initramfs_bytes
        .div_ceil(1 << 20)
        .saturating_mul(UNPACKED_RATIO);
    MEMORY_MIB
        .saturating_add(tree_mib.saturating_mul(2))
        .div_ceil(MEMORY_STEP_MIB)
        .saturating_mul(MEMORY_STEP_MIB)
}

/// Everything needed to start a machine.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    /// The machine QEMU emulates.
    pub platform: Platform,
    /// What it boots.
    pub boot: Boot,
    /// Its memory, in MiB.
    pub memory_mib: u64,
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

impl MachineSpec {
    /// How the machine runs, as kiln shows it: `UEFI, tcg`, or with the
    /// image's architecture first when it is not the PC's (`arm64, UEFI,
    /// tcg`).
    pub fn shown(&self) -> String {
        let how = format!("{}, {}", self.firmware.as_str(), self.accel.as_str());
        match self.platform {
            Platform::X86_64 => how,
            other => format!("{}, {how}", other.arch_name()),
        }
    }
}

/// The files of one machine, made in its temporary directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFiles {
    /// The qcow2 overlay backed by the image (none for a ramdisk).
    pub overlay: Option<PathBuf>,
    /// The NoCloud seed.
    pub seed: PathBuf,
    /// The private copy of the UEFI variable store (UEFI only).
    pub uefi_vars: Option<PathBuf>,
}

impl MachineFiles {
    /// The overlay's path as shown to the user (empty for a ramdisk).
    pub fn overlay_shown(&self) -> String {
        self.overlay
            .as_ref()
            .map_or_else(String::new, |o| o.display().to_string())
    }
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
    push(spec.platform.machine_args(spec.accel));
    let memory = spec.memory_mib.to_string();
    let cpus = CPUS.to_string();
    push(&["-m", &memory, "-smp", &cpus]);
    if let (Firmware::Uefi, Some(vars)) = (spec.firmware, &files.uefi_vars) {
        let (code, _, _) = spec.platform.uefi_firmware();
        push(&["-drive"]);
        args.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={code}").into());
        args.push("-drive".into());
        args.push(drive_arg("if=pflash,format=raw,unit=1,file=", vars));
    }
    if let Some(overlay) = &files.overlay {
        args.push("-drive".into());
        args.push(drive_arg(
            "if=virtio,format=qcow2,cache=unsafe,discard=unmap,file=",
            overlay,
        ));
    }
    if let Boot::Ramdisk(ramdisk) = &spec.boot {
        // QEMU takes these file names whole (no `,` options to escape),
        // and boots the kernel itself under SeaBIOS and OVMF alike. No
        // `panic=`: Debian's kernel halts on a panic, where rebooting
        // (QEMU restarts the machine) would only panic again; `kiln test`
        // ends the run when "Kernel panic" reaches the console, and `kiln
        // boot` shows it there.
        args.push("-kernel".into());
        args.push(ramdisk.kernel.clone().into());
        args.push("-initrd".into());
        args.push(ramdisk.initramfs.clone().into());
        args.push("-append".into());
        args.push(ramdisk.kernel_cmdline(spec.platform).into());
    }
    // cloud-init finds the seed by its label: the second disk of a disk
    // machine, a ramdisk's only one.
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

/// Makes `dir/disk.qcow2`, a qcow2 overlay backed by `image` of
/// `disk_bytes` (at least the image's size); shells out to `qemu-img`.
fn make_overlay(dir: &Path, image: &DiskImage, disk_bytes: u64) -> Result<PathBuf, MachineError> {
    let overlay = dir.join("disk.qcow2");
    let size = disk_bytes.max(image.virtual_bytes).to_string();
    let finished = command::run(
        "qemu-img",
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-F".as_ref(),
            image.format.as_str().as_ref(),
            "-b".as_ref(),
            image.path.as_os_str(),
            overlay.as_os_str(),
            size.as_ref(),
        ],
        "qemu-utils",
    )?;
    if !finished.success() {
        return Err(failed("qemu-img create", &finished));
    }
    Ok(overlay)
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

/// The prefix of a machine's temporary directory.
const MACHINE_DIR_PREFIX: &str = "kiln-machine-";

impl Machine {
    /// Makes the overlay (for a disk image), key and seed in a new
    /// temporary directory and starts QEMU; shells out to `qemu-img`,
    /// `ssh-keygen`, `mkfs.vfat`, `mcopy`, `setpriv` and QEMU.
    pub fn start(spec: &MachineSpec) -> Result<Machine, MachineError> {
        // In kiln's own temporary directory, which a SIGKILL leaves only
        // until the next kiln starts.
        let temp = crate::host::temp::dir();
        let dir = tempfile::Builder::new()
            .prefix(MACHINE_DIR_PREFIX)
            .tempdir_in(&temp)
            .map_err(|source| MachineError::Io {
                action: "create a temporary directory in",
                path: temp.clone(),
                source,
            })?;
        let overlay = match &spec.boot {
            Boot::Disk { image, disk_bytes } => Some(make_overlay(dir.path(), image, *disk_bytes)?),
            Boot::Ramdisk(_) => None,
        };
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
                let (code, vars_template, package) = spec.platform.uefi_firmware();
                for firmware in [code, vars_template] {
                    if !Path::new(firmware).is_file() {
                        return Err(MachineError::NoFirmware {
                            path: PathBuf::from(firmware),
                            package,
                        });
                    }
                }
                let vars = dir.path().join("UEFI_VARS.fd");
                fs_err::copy(vars_template, &vars)?;
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
        let setpriv = crate::host::command::setpriv().ok_or_else(|| MachineError::Spawn {
            program: "setpriv".to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not installed (Debian package `util-linux`)",
            ),
        })?;
        let mut command = dies_with_kiln(&setpriv);
        command.arg(spec.platform.program()).args(&args);
        if let Serial::File(_) = spec.serial {
            let log = File::create(&qemu_log)?;
            let log_err = log.try_clone()?;
            command
                .stdin(Stdio::null())
                .stdout(log.into_file())
                .stderr(log_err.into_file());
        }
        // QEMU starts with SIGTERM deliverable (the guard unblocks it), or
        // stopping it politely would not work.
        let spawned = command.spawn();
        let child = spawned.map_err(|error| MachineError::Spawn {
            program: spec.platform.program().to_string(),
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
            platform: Platform::X86_64,
            boot: Boot::Disk {
                image: DiskImage {
                    path: PathBuf::from("/srv/web.qcow2"),
                    format: ImageFormat("qcow2".into()),
                    virtual_bytes: 1 << 30,
                },
                disk_bytes: 2 << 30,
            },
            memory_mib: MEMORY_MIB,
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
            overlay: Some(PathBuf::from("/tmp/m,1/disk.qcow2")),
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
            overlay: Some(PathBuf::from("/tmp/m/disk.qcow2")),
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
    fn an_arm64_machine_is_the_virt_board_with_aavmf_and_its_own_console() {
        let files = MachineFiles {
            overlay: Some(PathBuf::from("/tmp/m/disk.qcow2")),
            seed: PathBuf::from("/tmp/m/seed.img"),
            uefi_vars: Some(PathBuf::from("/tmp/m/UEFI_VARS.fd")),
        };
        let mut spec = spec(Firmware::Uefi, Serial::Console);
        spec.platform = Platform::Aarch64;
        assert_eq!(
            line(&qemu_args(&spec, &files, 2222, "kiln-web")),
            "-name kiln-web -accel tcg -machine virt -cpu max -m 1024 -smp 2 \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \
             -drive if=pflash,format=raw,unit=1,file=/tmp/m/UEFI_VARS.fd \
             -drive if=virtio,format=qcow2,cache=unsafe,discard=unmap,file=/tmp/m/disk.qcow2 \
             -drive if=virtio,format=raw,readonly=on,file=/tmp/m/seed.img \
             -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22 \
             -device virtio-rng-pci -nographic -serial mon:stdio"
        );
        assert_eq!(spec.shown(), "arm64, UEFI, tcg");
        assert_eq!(spec.platform.program(), "qemu-system-aarch64");
        spec.boot = Boot::Ramdisk(ramdisk("ipa-debug=1"));
        let args = line(&qemu_args(&spec, &files, 2222, "kiln-ipa"));
        assert!(
            args.contains("-append console=ttyAMA0 ipa-debug=1 "),
            "{args}"
        );
        assert!(Platform::Aarch64.uefi_only() && !Platform::X86_64.uefi_only());
        assert_eq!(
            Platform::for_arch(crate::manifest::Arch::Arm64),
            Platform::Aarch64
        );
    }

    fn ramdisk(cmdline: &str) -> RamdiskImage {
        RamdiskImage {
            kernel: PathBuf::from("/srv/out,1/ipa.kernel"),
            initramfs: PathBuf::from("/srv/out,1/ipa.initramfs"),
            initramfs_bytes: 300 << 20,
            compression: Some(crate::machine::initramfs::Segment::Zstd),
            cmdline: cmdline.to_string(),
        }
    }

    #[test]
    fn a_ramdisk_machine_loads_kernel_and_initramfs_with_only_the_seed_as_disk() {
        let files = MachineFiles {
            overlay: None,
            seed: PathBuf::from("/tmp/m/seed.img"),
            uefi_vars: None,
        };
        let mut spec = spec(
            Firmware::Bios,
            Serial::File(PathBuf::from("/tmp/serial.log")),
        );
        spec.boot = Boot::Ramdisk(ramdisk("ipa-insecure=1 systemd.log_level=debug"));
        spec.memory_mib = spec.boot.memory_mib();
        let args = qemu_args(&spec, &files, 2222, "kiln-ipa");
        // The kernel command line is one argument, spaces and all.
        assert!(args.contains(&OsString::from(
            "console=ttyS0 ipa-insecure=1 systemd.log_level=debug"
        )));
        assert_eq!(
            line(&args),
            "-name kiln-ipa -accel tcg -m 3584 -smp 2 \
             -kernel /srv/out,1/ipa.kernel -initrd /srv/out,1/ipa.initramfs \
             -append console=ttyS0 ipa-insecure=1 systemd.log_level=debug \
             -drive if=virtio,format=raw,readonly=on,file=/tmp/m/seed.img \
             -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22 \
             -device virtio-rng-pci -display none -monitor none -serial file:/tmp/serial.log"
        );
    }

    #[test]
    fn a_uefi_ramdisk_machine_gets_the_firmware_and_the_bare_console() {
        let files = MachineFiles {
            overlay: None,
            seed: PathBuf::from("/tmp/m/seed.img"),
            uefi_vars: Some(PathBuf::from("/tmp/m/OVMF_VARS.fd")),
        };
        let mut spec = spec(Firmware::Uefi, Serial::Console);
        spec.boot = Boot::Ramdisk(ramdisk(""));
        spec.memory_mib = spec.boot.memory_mib();
        assert_eq!(
            line(&qemu_args(&spec, &files, 2222, "kiln-ipa")),
            "-name kiln-ipa -accel tcg -m 3584 -smp 2 \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
             -drive if=pflash,format=raw,unit=1,file=/tmp/m/OVMF_VARS.fd \
             -kernel /srv/out,1/ipa.kernel -initrd /srv/out,1/ipa.initramfs \
             -append console=ttyS0 \
             -drive if=virtio,format=raw,readonly=on,file=/tmp/m/seed.img \
             -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22 \
             -device virtio-rng-pci -nographic -serial mon:stdio"
        );
    }

    #[test]
    fn a_ramdisk_gets_room_for_twice_its_unpacked_tree_beyond_a_disk_machines_memory() {
        const MIB: u64 = 1 << 20;
        // A tiny initramfs: 1 MiB, taken as a 4 MiB tree, 8 MiB for it.
        assert_eq!(ramdisk_memory_mib(1), 1280);
        assert_eq!(ramdisk_memory_mib(MIB), 1280);
        // 32 MiB: a 128 MiB tree, 1024 + 256 exactly.
        assert_eq!(ramdisk_memory_mib(32 * MIB), 1280);
        assert_eq!(ramdisk_memory_mib(32 * MIB + 1), 1536);
        // 300 MiB (an agent ramdisk): a 1200 MiB tree; 3424 rounds up.
        assert_eq!(ramdisk_memory_mib(300 * MIB), 3584);
        for bytes in [0, MIB, 77 * MIB, 300 * MIB, 1 << 32] {
            let memory = ramdisk_memory_mib(bytes);
            let tree = bytes.div_ceil(MIB) * UNPACKED_RATIO;
            assert_eq!(memory % MEMORY_STEP_MIB, 0);
            // The tree fits in the rootfs (half the memory) with room to
            // write, and leaves a disk machine's memory to run in.
            assert!(memory / 2 >= tree + MEMORY_MIB / 2, "{bytes}");
            assert!(memory - tree >= MEMORY_MIB, "{bytes}");
        }
        assert_eq!(ramdisk_memory_mib(u64::MAX) % MEMORY_STEP_MIB, 0);
    }

    #[test]
    fn a_free_port_is_found() {
        assert!(free_port().is_ok_and(|p| p > 0));
    }
}

//! Running another architecture's binaries in the chroot (an arm64 tree on
//! an amd64 host) through QEMU's user-mode emulation, without touching the
//! host's binfmt_misc.
//!
//! Since Linux 6.7 binfmt_misc has an instance per user namespace: a
//! binary's handler is looked up in the instance of the caller's user
//! namespace (or its nearest ancestor that has one). So each emulated
//! command runs in a user namespace of its own, with every uid and gid
//! mapped to itself (root stays root, files keep their owners), and a mount
//! namespace in which it mounts binfmt_misc and registers kiln's handler
//! for the target's ELF header, with the flags `F` (the kernel opens the
//! handler at registration, so it need not exist inside the tree) and `P`
//! (the program's own `argv[0]` is passed on). The handler exists only in
//! that namespace and goes away with it, also when kiln is killed with
//! SIGKILL; the host's `/proc/sys/fs/binfmt_misc` is never mounted or
//! written.
//!
//! The handler is a small static program (`binfmt_dispatch.c`, compiled by
//! `build.rs` and embedded) that runs the program's native twin when the
//! build has one ([`super::twins`]) and QEMU otherwise. It finds both in
//! the emulation directory beside the tree ([`emulation_dir`]: the
//! handler, a copy of QEMU, the twins and their table), which the command
//! bind-mounts at [`DIR_IN_CHROOT`], in the tree's private `/dev` (a tmpfs
//! of the build's, or one of the command's own): nothing is written into
//! the tree.
//!
//! The command line put in front of the command's own (after the spawn
//! guard, before `unshare --pid`):
//!
//! ```text
//! bash -c <parent> kiln-emulation <child> <registration> <dir> <tree> <argv>
//! ```
//!
//! The parent starts `setpriv --pdeathsig KILL -- unshare --user --mount --
//! bash -c <child> …` and, once the child is in its new user namespace,
//! writes its identity uid and gid maps (only a process outside the
//! namespace with CAP_SETUID may map more than its own id; util-linux
//! 2.38's `--map-users` would need `newuidmap`). The child waits for its
//! map, mounts binfmt_misc, registers the handler, mounts the emulation
//! directory in the tree's `/dev` and execs `argv`. The parent relays its
//! exit status.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fs_err as fs;

use super::ChrootError;

/// Where the emulation directory appears inside the chroot; the handler
/// (`binfmt_dispatch.c`) has it compiled in.
pub const DIR_IN_CHROOT: &str = "/dev/.kiln-emulation";

/// The binfmt_misc handler, compiled by `build.rs`.
const DISPATCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kiln-binfmt-dispatch"));

/// QEMU's user-mode emulator for a target architecture, as Debian's
/// `qemu-user-static` installs it, with the ELF header it handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulation {
    /// The target architecture, as Debian names it (`arm64`).
    pub arch: &'static str,
    /// The emulator on the host.
    pub interpreter: PathBuf,
    /// The ELF header bytes that select it, and which of their bits count.
    magic: &'static [u8],
    mask: &'static [u8],
}

/// Why a target's binaries cannot be run on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// kiln knows no emulation for the architecture on this host.
    #[error("kiln cannot run `{target}` binaries on a `{host}` host")]
    Unsupported {
        /// The image's architecture.
        target: String,
        /// The host's.
        host: String,
    },
    /// QEMU's user-mode emulator is not installed.
    #[error("`{arch}` binaries need QEMU's user-mode emulator {}, which is not installed", .interpreter.display())]
    NoEmulator {
        /// The image's architecture.
        arch: String,
        /// Where the emulator was looked for.
        interpreter: PathBuf,
    },
    /// The kernel has no binfmt_misc.
    #[error("the kernel has no binfmt_misc, which running `{arch}` binaries needs")]
    NoBinfmtMisc {
        /// The image's architecture.
        arch: String,
    },
}

impl EmulationError {
    /// What to do about it.
    pub fn help(&self) -> String {
        match self {
            EmulationError::Unsupported { .. } => {
                "build on a host of the image's architecture, or for amd64 or arm64 on an amd64 host"
                    .to_string()
            }
            EmulationError::NoEmulator { .. } => {
                "apt-get install --no-install-recommends qemu-user-static (without binfmt-support: kiln registers the emulator only inside each build command's own namespace)"
                    .to_string()
            }
            EmulationError::NoBinfmtMisc { .. } => {
                "use a kernel with binfmt_misc (CONFIG_BINFMT_MISC, Linux 6.7 or later for one per namespace)"
                    .to_string()
            }
        }
    }
}

/// The ELF header of a 64-bit little-endian aarch64 executable or shared
/// object, and its mask, as Debian's qemu-user-static registers them.
const AARCH64_MAGIC: &[u8] =
    b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
const AARCH64_MASK: &[u8] =
    b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";

/// The host's architecture, as Debian names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Emulation {
    /// The emulation a tree of `target` needs on this host: `None` when the
    /// host runs its binaries natively. Checked before anything is
    /// downloaded: the emulator must be installed and the kernel must have
    /// binfmt_misc.
    pub fn for_target(target: &str) -> Result<Option<Emulation>, EmulationError> {
        Self::for_target_on(
            target,
            host_arch(),
            Path::new("/usr/bin"),
            Path::new("/proc/filesystems"),
        )
    }

    fn for_target_on(
        target: &str,
        host: &str,
        bin: &Path,
        filesystems: &Path,
    ) -> Result<Option<Emulation>, EmulationError> {
        if target == host {
            return Ok(None);
        }
        let emulation = match (target, host) {
            ("arm64", "amd64") => Emulation {
                arch: "arm64",
                interpreter: bin.join("qemu-aarch64-static"),
                magic: AARCH64_MAGIC,
                mask: AARCH64_MASK,
            },
            _ => {
                return Err(EmulationError::Unsupported {
                    target: target.to_string(),
                    host: host.to_string(),
                });
            }
        };
        if !emulation.interpreter.is_file() {
            return Err(EmulationError::NoEmulator {
                arch: target.to_string(),
                interpreter: emulation.interpreter,
            });
        }
        let known = std::fs::read_to_string(filesystems).unwrap_or_default();
        if !known
            .lines()
            .any(|line| line.split_whitespace().last() == Some("binfmt_misc"))
        {
            return Err(EmulationError::NoBinfmtMisc {
                arch: target.to_string(),
            });
        }
        Ok(Some(emulation))
    }

    /// The line written to binfmt_misc's `register` for `handler`: magic
    /// and mask escaped as `\xHH`, which the kernel decodes, and the flags
    /// `F` and `P`.
    fn registration(&self, handler: &Path) -> String {
        let escaped = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| format!("\\x{b:02x}"))
                .collect::<String>()
        };
        format!(
            ":kiln-{}:M::{}:{}:{}:FP",
            self.arch,
            escaped(self.magic),
            escaped(self.mask),
            handler.display()
        )
    }

    /// The words to put in front of a command chrooted into `root` so that
    /// it runs in a user and mount namespace of its own whose binfmt_misc
    /// runs the target's binaries (see the module documentation), with the
    /// emulation directory made ready: the handler, QEMU, and the table of
    /// native twins for the tree as it is now. Returns the words and how
    /// many of the tree's programs have a twin.
    pub fn prefix(&self, root: &Path) -> Result<(Vec<OsString>, usize), ChrootError> {
        let dir = emulation_dir(root);
        fs::create_dir_all(&dir)?;
        let handler = dir.join("dispatch");
        write_if_differs(DISPATCH, &handler)?;
        copy_if_changed(&self.interpreter, &dir.join("qemu"))?;
        let twins = super::twins::write_table(root, &dir)?;
        let words = vec![
            "/bin/bash".into(),
            "-c".into(),
            PARENT_SCRIPT.into(),
            "kiln-emulation".into(),
            CHILD_SCRIPT.into(),
            self.registration(&handler).into(),
            dir.into_os_string(),
            root.as_os_str().to_owned(),
        ];
        Ok((words, twins))
    }

    /// The emulation the tree at `root` needs on this host, judged by its
    /// own `/usr/bin/env`: `None` for a tree of the host's architecture
    /// (or one without that file yet).
    pub fn for_tree(root: &Path) -> Result<Option<Emulation>, EmulationError> {
        match elf_arch(&root.join("usr/bin/env")) {
            Some(arch) => Self::for_target(arch),
            None => Ok(None),
        }
    }
}

/// The directory beside the tree `root` that holds what its emulated
/// commands need: `.kiln-emulation-<name>` next to it. The build's work
/// directory holds both, and goes with them.
pub fn emulation_dir(root: &Path) -> PathBuf {
    let name = root
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    root.parent()
        .unwrap_or(root)
        .join(format!(".kiln-emulation-{name}"))
}

/// Makes `target` an executable copy of `bytes`, unless it already is
/// one: the kernel holds the handler open while a command runs, so it is
/// never rewritten needlessly (nor the twins' files written per command).
pub(super) fn write_if_differs(bytes: &[u8], target: &Path) -> Result<(), ChrootError> {
    if std::fs::read(target).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    install(bytes, target, None)
}

/// Makes `target` an executable copy of the file `source` (QEMU, 5 MB),
/// unless it already is one by size and mtime (which the copy takes from
/// `source`): checked before every command, so not by reading it.
fn copy_if_changed(source: &Path, target: &Path) -> Result<(), ChrootError> {
    let wanted = fs::metadata(source)?;
    if let Ok(have) = std::fs::metadata(target)
        && have.len() == wanted.len()
        && have.modified().ok() == wanted.modified().ok()
    {
        return Ok(());
    }
    install(&fs::read(source)?, target, wanted.modified().ok())
}

/// Writes `bytes` to `target` executable (with `mtime`), through a partial
/// file renamed into place.
fn install(
    bytes: &[u8],
    target: &Path,
    mtime: Option<std::time::SystemTime>,
) -> Result<(), ChrootError> {
    let partial = target.with_extension("partial");
    fs::write(&partial, bytes)?;
    fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    if let Some(mtime) = mtime {
        fs::File::options()
            .write(true)
            .open(&partial)?
            .set_modified(mtime)?;
    }
    fs::rename(&partial, target)?;
    Ok(())
}

/// The Debian architecture of the ELF file at `path`, from its class, byte
/// order and machine; `None` if it is not one kiln knows.
fn elf_arch(path: &Path) -> Option<&'static str> {
    match crate::host::file::elf_identity(path)? {
        (2, 1, 62) => Some("amd64"),
        (2, 1, 183) => Some("arm64"),
        _ => None,
    }
}

/// The parent: starts the child in a new user and mount namespace (dying
/// with this shell), maps every id to itself once the child is in it, and
/// relays the child's exit status. `$1` is the child's script, `$2` the
/// registration, the rest the command.
const PARENT_SCRIPT: &str = r#"child=$1; shift
setpriv --pdeathsig KILL -- unshare --user --mount -- /bin/bash -c "$child" kiln-emulated "$@" &
pid=$!
self=$(readlink /proc/self/ns/user)
until [ "$(readlink /proc/$pid/ns/user 2>/dev/null)" != "$self" ]; do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
    sleep 0.002
done
{ echo '0 0 4294967295' > /proc/$pid/uid_map && echo '0 0 4294967295' > /proc/$pid/gid_map; } || { kill -KILL "$pid"; exit 125; }
wait "$pid""#;

/// The child, in its own user and mount namespace: waits for its id map,
/// mounts binfmt_misc (an instance of this namespace's own), registers the
/// handler (`$1`), bind-mounts the emulation directory (`$2`) read-only at
/// [`DIR_IN_CHROOT`] in the tree (`$3`), in a tmpfs of its own when the
/// tree's `/dev` is not one already, and execs the command.
///
/// The parent-death signal `setpriv` gave it does not last: the first exec
/// after its id map is written makes it root of the namespace, gaining
/// capabilities, and the kernel clears the signal on such an exec. So it is
/// given again, by `setpriv` inside the namespace, and the command starts
/// only if the parent is still the one that started it (had it died first,
/// the signal would never come): without this, a SIGKILL of kiln left the
/// emulated command running on until it ended by itself.
const CHILD_SCRIPT: &str = r#"until [ -n "$(cat /proc/self/uid_map)" ]; do sleep 0.002; done
mount -t binfmt_misc kiln-binfmt /proc/sys/fs/binfmt_misc || exit 125
printf '%s' "$1" > /proc/sys/fs/binfmt_misc/register || exit 125
dev=$3/dev
[ -d "$dev" ] && [ ! -L "$dev" ] || { echo "kiln: $dev is not a directory" >&2; exit 125; }
mountpoint -q "$dev" || mount -t tmpfs -o mode=0755,size=64k kiln-dev "$dev" || exit 125
mkdir -p "$dev/.kiln-emulation" && mount --bind "$2" "$dev/.kiln-emulation" &&
    mount -o remount,bind,ro "$dev/.kiln-emulation" || exit 125
shift 3
exec setpriv --pdeathsig KILL -- /bin/bash -c 'read -r _ _ _ ppid _ < /proc/self/stat
[ "$ppid" = "$1" ] || exit 125
shift
exec "$@"' kiln-emulated "$PPID" "$@""#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_target_needs_no_emulation() {
        let none = Emulation::for_target_on(
            "amd64",
            "amd64",
            Path::new("/nonexistent"),
            Path::new("/nonexistent"),
        );
        assert_eq!(none, Ok(None));
    }

    #[test]
    fn arm64_on_amd64_needs_the_emulator_and_binfmt_misc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let filesystems = dir.path().join("filesystems");
        std::fs::write(&filesystems, "nodev\tproc\nnodev\tbinfmt_misc\n").expect("write");
        let missing = Emulation::for_target_on("arm64", "amd64", dir.path(), &filesystems);
        assert!(
            matches!(missing, Err(EmulationError::NoEmulator { .. })),
            "{missing:?}"
        );
        std::fs::write(dir.path().join("qemu-aarch64-static"), b"").expect("write");
        let found = Emulation::for_target_on("arm64", "amd64", dir.path(), &filesystems)
            .expect("found")
            .expect("needed");
        assert_eq!(found.interpreter, dir.path().join("qemu-aarch64-static"));
        std::fs::write(&filesystems, "nodev\tproc\n").expect("write");
        assert!(matches!(
            Emulation::for_target_on("arm64", "amd64", dir.path(), &filesystems),
            Err(EmulationError::NoBinfmtMisc { .. })
        ));
        assert!(matches!(
            Emulation::for_target_on("riscv64", "amd64", dir.path(), &filesystems),
            Err(EmulationError::Unsupported { .. })
        ));
    }

    #[test]
    fn the_registration_escapes_magic_and_mask_and_fixes_the_interpreter() {
        let emulation = Emulation {
            arch: "arm64",
            interpreter: PathBuf::from("/usr/bin/qemu-aarch64-static"),
            magic: AARCH64_MAGIC,
            mask: AARCH64_MASK,
        };
        let line = emulation.registration(Path::new("/usr/bin/qemu-aarch64-static"));
        assert!(
            line.starts_with(":kiln-arm64:M::\\x7f\\x45\\x4c\\x46\\x02"),
            "{line}"
        );
        assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:FP"), "{line}");
        assert_eq!(line.matches("\\x").count(), 40, "{line}");
    }

    /// A static aarch64 program that exits with 42: `mov x0, #42; mov x8,
    /// #93 (exit); svc #0`, in one loadable segment.
    fn exit_42_aarch64() -> Vec<u8> {
        let code: [u32; 3] = [0xd280_0540, 0xd280_0ba8, 0xd400_0001];
        let base: u64 = 0x40_0000;
        let entry = base + 64 + 56;
        let size = 64 + 56 + 12u64;
        let mut elf = Vec::new();
        elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        elf.extend_from_slice(&1u32.to_le_bytes());
        elf.extend_from_slice(&entry.to_le_bytes());
        elf.extend_from_slice(&64u64.to_le_bytes()); // program headers
        elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
        elf.extend_from_slice(&0u32.to_le_bytes());
        for half in [64u16, 56, 1, 0, 0, 0] {
            elf.extend_from_slice(&half.to_le_bytes());
        }
        elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf.extend_from_slice(&5u32.to_le_bytes()); // R+X
        for quad in [0, base, base, size, size, 0x1000] {
            elf.extend_from_slice(&quad.to_le_bytes());
        }
        for word in code {
            elf.extend_from_slice(&word.to_le_bytes());
        }
        elf
    }

    /// The host tier: runs an aarch64 program through the wrapper with the
    /// host's qemu-aarch64-static, and checks that the host's binfmt_misc
    /// is as it was and still cannot run it.
    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root, qemu-user-static and binfmt_misc (cargo test --features host-tests)"
    )]
    // The test runs the program itself and the wrapper as given, the way
    // the chroot runner's spawn would.
    #[allow(clippy::disallowed_methods)]
    fn an_arm64_program_runs_in_its_namespace_and_the_host_is_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let emulation = Emulation::for_target("arm64")
            .expect("qemu-user-static is installed (scripts/install-test-deps)")
            .expect("arm64 is foreign here");
        let dir = tempfile::tempdir().expect("tempdir");
        // A tree holding only the program and an empty /dev, which the
        // command mounts a tmpfs of its own on for the emulation directory.
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("dev")).expect("mkdir");
        let program = tree.join("exit-42");
        std::fs::write(&program, exit_42_aarch64()).expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let host_binfmt = || {
            let mut names: Vec<String> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        let before = host_binfmt();

        let native = std::process::Command::new(&program).status();
        assert!(
            native.is_err(),
            "the host runs aarch64 natively: {native:?}"
        );

        let (mut argv, twins) = emulation.prefix(&tree).expect("the emulation directory");
        assert_eq!(twins, 0, "no twins were unpacked");
        let mut root = std::ffi::OsString::from("--root=");
        root.push(&tree);
        argv.extend(["unshare".into(), root, "/exit-42".into()]);
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .expect("bash runs");
        assert_eq!(
            status.code(),
            Some(42),
            "the aarch64 program ran and exited 42"
        );
        assert_eq!(elf_arch(&program), Some("arm64"));
        assert_eq!(elf_arch(Path::new("/usr/bin/env")), Some(host_arch()));
        assert_eq!(host_binfmt(), before, "the host's binfmt_misc is as it was");
        assert_eq!(
            std::fs::read_dir(tree.join("dev")).expect("read").count(),
            0,
            "the tree's /dev is as it was"
        );
        assert!(emulation_dir(&tree).join("dispatch").is_file());

        // The command cannot write into the emulation directory: it is
        // mounted read-only in the tree (seen here from outside the chroot).
        let (mut argv, _) = emulation.prefix(&tree).expect("the emulation directory");
        let mounted = format!("{}{DIR_IN_CHROOT}", tree.display());
        argv.extend([
            "sh".into(),
            "-c".into(),
            format!("test -x {mounted}/dispatch && ! touch {mounted}/written 2>/dev/null").into(),
        ]);
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            "the emulation directory was writable: {status:?}"
        );
        assert!(!emulation_dir(&tree).join("written").exists());

        let after = std::process::Command::new(&program).status();
        assert!(after.is_err(), "the host still cannot run it: {after:?}");
    }
}

//! The command line: clap types, and their conversion into [`Settings`].
//!
//! Commands never see clap's types; they receive the settings structs of
//! [`crate::commands`], resolved once here (uv's and cargo's way).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::commands::boot::BootSettings;
use crate::commands::build::BuildSettings;
use crate::commands::cache::CacheSettings;
use crate::commands::completions::{CompletionsSettings, Shell};
use crate::commands::disk_image_create::DiskImageCreateSettings;
use crate::commands::elements::{ElementsCommand, ElementsSettings};
use crate::commands::fetch::FetchSettings;
use crate::commands::init::InitSettings;
use crate::commands::lock::LockSettings;
use crate::commands::man::ManSettings;
use crate::commands::sbom::SbomSettings;
use crate::commands::test::TestSettings;
use crate::commands::validate::ValidateSettings;
use crate::machine::Accel;
use crate::manifest::{Arch, Distro, SbomFormat, Size};
use crate::ops::machine::MachineOptions;

pub mod dib;

pub use crate::failure::{INTERNAL_EXIT_CODE, USER_EXIT_CODE};

/// kiln builds machine images from a declarative manifest.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
    /// Show no progress: no download bar or lines, no build steps
    /// (summaries, warnings and errors still print).
    #[arg(
        short,
        long,
        global = true,
        env = "KILN_QUIET",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Check an imagefile and report every problem found in it.
    Validate {
        /// The imagefile to check.
        #[arg(default_value = "imagefile.yaml")]
        path: PathBuf,
        /// A directory of elements, searched before `KILN_ELEMENTS_PATH`
        /// (or `ELEMENTS_PATH`) and kiln's built-in elements; repeatable,
        /// the first given wins.
        #[arg(long = "elements-path", value_name = "DIR")]
        elements_path: Vec<PathBuf>,
        /// The cache directory, where kiln's built-in elements are unpacked
        /// (default: /var/cache/kiln for root, else ~/.cache/kiln; without
        /// a writable one, a private directory in $TMPDIR).
        #[arg(long, env = "KILN_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Print the imagefile's JSON schema (for editors and other tools).
    Schema {
        /// Print the lockfile's schema instead.
        #[arg(long)]
        lock: bool,
    },
    /// Pin every input of the image into `<imagefile>.lock`.
    Lock {
        /// The imagefile to lock.
        #[arg(default_value = "imagefile.yaml")]
        path: PathBuf,
        /// Resolve against the mirror again even if the lock is up to date.
        #[arg(long)]
        update: bool,
        /// Show what would change, without writing the lock.
        #[arg(long)]
        dry_run: bool,
        /// Where downloads are cached (default: /var/cache/kiln for root).
        #[arg(long, env = "KILN_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// A directory of elements, searched before `KILN_ELEMENTS_PATH`
        /// (or `ELEMENTS_PATH`) and kiln's built-in elements; repeatable.
        #[arg(long = "elements-path", value_name = "DIR")]
        elements_path: Vec<PathBuf>,
    },
    /// Build the image from the lock (as root): the root tree, the raw
    /// image and every output, with a report beside them.
    Build {
        /// The imagefile to build (its lock sits beside it).
        #[arg(default_value = "imagefile.yaml")]
        path: PathBuf,
        /// Where results are written.
        #[arg(short, long, default_value = "out")]
        output: PathBuf,
        /// Use only the cache; fail naming any package that is missing.
        #[arg(long)]
        offline: bool,
        /// Fail if the lock is missing or older than the imagefile, rather
        /// than locking first (for CI).
        #[arg(long)]
        locked: bool,
        /// When a script in the chroot fails, open a shell there to look
        /// around before cleaning up (DIB's `break=after-error`).
        #[arg(long)]
        shell_on_failure: bool,
        /// Print how long each stage took (it is always in the report).
        #[arg(long)]
        timings: bool,
        /// Keep the finished root tree as `<output>/<name>.root/`.
        #[arg(long)]
        keep_tree: bool,
        /// Build twice, in two directories, and compare every output;
        /// name what differs when they are not identical.
        #[arg(long)]
        check: bool,
        /// Compress the qcow2 output (smaller, much slower to write).
        #[arg(long)]
        compress: bool,
        /// Make the tree from scratch: restore no snapshot and keep none
        /// (downloads are still cached).
        #[arg(long)]
        no_cache: bool,
        /// Make the tree on disk in the output directory, not in memory (a
        /// tmpfs, used when half the available memory holds the tree).
        #[arg(
            long,
            env = "KILN_NO_TMPFS",
            value_parser = clap::builder::FalseyValueParser::new()
        )]
        no_tmpfs: bool,
        /// For an image of another architecture (arm64): run every one of
        /// its programs under QEMU, none as a native twin (the host's build
        /// of the same package version, which the lock pins). Slower; for
        /// when a twin is suspected of doing something the image's own
        /// program would not.
        #[arg(
            long,
            env = "KILN_EMULATE_ALL",
            value_parser = clap::builder::FalseyValueParser::new()
        )]
        emulate_all: bool,
        /// Download the locked `.deb`s from this archive instead of the
        /// lock's mirror: a mirror or proxy of the same distribution
        /// (http, https or file URL). Every file is still checked against
        /// the lock's hash, and the image still names the lock's mirror.
        #[arg(long, env = "KILN_MIRROR", value_name = "URL")]
        mirror: Option<String>,
        /// Where downloads are cached (default: /var/cache/kiln for root).
        #[arg(long, env = "KILN_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// A directory of elements, searched before `KILN_ELEMENTS_PATH`
        /// (or `ELEMENTS_PATH`) and kiln's built-in elements; repeatable,
        /// the first given wins.
        #[arg(long = "elements-path", value_name = "DIR")]
        elements_path: Vec<PathBuf>,
    },
    /// List or prune the tree snapshots kept in the cache for incremental
    /// builds.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        /// The cache directory (default: /var/cache/kiln for root).
        #[arg(long, env = "KILN_CACHE_DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
    /// List the elements on the search path, or show one.
    Elements {
        #[command(subcommand)]
        action: ElementsAction,
        /// A directory of elements, searched first (repeatable).
        #[arg(long, global = true)]
        elements_path: Vec<PathBuf>,
        /// The cache directory, where kiln's built-in elements are unpacked.
        #[arg(long, env = "KILN_CACHE_DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
    /// Download every package the lock pins into the cache.
    Fetch {
        /// The imagefile whose lock to fetch.
        #[arg(default_value = "imagefile.yaml")]
        path: PathBuf,
        /// Use only the cache; fail naming any package that is missing.
        #[arg(long)]
        offline: bool,
        /// Download the locked `.deb`s from this archive instead of the
        /// lock's mirror: a mirror or proxy of the same distribution
        /// (http, https or file URL). Every file is still checked against
        /// the lock's hash, and the image still names the lock's mirror.
        #[arg(long, env = "KILN_MIRROR", value_name = "URL")]
        mirror: Option<String>,
        /// Where downloads are cached (default: /var/cache/kiln for root).
        #[arg(long, env = "KILN_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Boot a built image in QEMU on a throwaway copy-on-write overlay (a
    /// ramdisk from RAM), with a fresh ssh key given to cloud-init and the
    /// serial console on the terminal.
    Boot {
        #[command(flatten)]
        machine: CliMachine,
    },
    /// Boot a built image and check it: ssh login with a key, systemd
    /// running, no password login, root filesystem grown (for a ramdisk:
    /// `/` in RAM), no host keys in the image, and the imagefile's own
    /// `tests:`.
    Test {
        #[command(flatten)]
        machine: CliMachine,
        /// Seconds the machine gets to boot and accept the ssh login.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
    },
    /// Write the image's SBOMs (SPDX, CycloneDX) from its lock, without
    /// building: every locked package with its version, package URL and
    /// the SHA-256 of its `.deb`. Licences, and packages the build
    /// removes, are known only after a build (`kiln build` writes the
    /// SBOMs from the finished image).
    Sbom {
        /// The imagefile whose lock to describe.
        #[arg(default_value = "imagefile.yaml")]
        path: PathBuf,
        /// Write `<name>.spdx.json` and `<name>.cdx.json` into DIR instead
        /// of one document to stdout.
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Only this format (to stdout: `spdx` unless given).
        #[arg(long, value_enum)]
        format: Option<CliSbomFormat>,
        /// Where downloads are cached (default: /var/cache/kiln for root);
        /// the locked `.deb`s found there give maintainers and dependencies.
        #[arg(long, env = "KILN_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// diskimage-builder's command line (as Nodepool issues it): the
    /// call is written as an imagefile and lock into `<base>.d/` and built,
    /// the images written as `<base>.<format>`. `kiln disk-image-create
    /// --help` lists the options; kiln started as `disk-image-create` does
    /// the same.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    DiskImageCreate {
        /// DIB's options and elements.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Write a commented starter imagefile.
    ///
    /// For Debian (the default) the starter is a cloud image that boots and
    /// passes `kiln test` as written: the elements `vm` and `debian`, a
    /// qcow2 output. For every other distribution, and with `--minimal`, it
    /// is a root tree without kernel or bootloader (`elements: []`): kiln's
    /// `vm` element has been booted on Debian only.
    Init {
        /// Where to write it; a directory gets `imagefile.yaml` inside.
        #[arg(default_value = "imagefile.yaml")]
        path: PathBuf,
        /// The distribution to start from.
        #[arg(long, value_enum, default_value_t = Distro::Debian)]
        distro: Distro,
        /// The release; defaults to the distro's current stable release.
        #[arg(long)]
        release: Option<String>,
        /// A root tree without kernel or bootloader (`elements: []`), not
        /// a bootable cloud image.
        #[arg(long)]
        minimal: bool,
    },
    /// Print the shell completion script for kiln's commands and options:
    /// `source <(kiln completions bash)` turns completion on in this
    /// shell (the user guide's installation chapter says how to keep it).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: CliShell,
    },
    /// Print kiln's manual page in roff (`kiln man | man -l -`), or a
    /// command's (`kiln man build`).
    Man {
        /// The command whose page to print, such as `build` or `cache
        /// prune` (default: kiln's own page, which lists every command).
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
        /// Write every page (`kiln.1`, `kiln-build.1`, …) into DIR instead
        /// of printing one.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        output: Option<PathBuf>,
    },
}

/// The options of `kiln boot` and `kiln test` that set up the machine.
#[derive(Debug, clap::Args)]
struct CliMachine {
    /// An imagefile, whose built image is booted: `<output>/<name>.qcow2`
    /// (else `.raw`), or its ramdisk (`<name>.kernel` and
    /// `<name>.initramfs`) when it has a `ramdisk` output and no disk one.
    /// Or an image file, or a ramdisk's `.initramfs` or `.kernel` (with
    /// the other beside it).
    #[arg(default_value = "imagefile.yaml")]
    path: PathBuf,
    /// Where `kiln build` wrote the image.
    #[arg(short, long, default_value = "out")]
    output: PathBuf,
    /// Boot with UEFI firmware (OVMF) instead of BIOS.
    #[arg(long)]
    uefi: bool,
    /// The architecture of an image file given without its imagefile:
    /// `amd64` (the default) or `arm64` (Arm's `virt` board, by UEFI). An
    /// imagefile's own `arch` is used otherwise.
    #[arg(long, value_enum)]
    arch: Option<CliArch>,
    /// How QEMU runs the guest: `tcg` (emulation, works everywhere) or
    /// `kvm` (fast, where /dev/kvm works).
    #[arg(long, value_enum, default_value_t = CliAccel::Tcg)]
    accel: CliAccel,
    /// Boot the imagefile's ramdisk (`<name>.kernel` and
    /// `<name>.initramfs`) even when it has a disk image too. The machine
    /// runs from RAM, and gets memory for the unpacked tree.
    #[arg(long)]
    ramdisk: bool,
    /// The machine's disk size, such as `4GiB`; the root filesystem grows
    /// into it (default: the image's size plus 1 GiB). The image itself is
    /// never changed. Not for a ramdisk, which has no disk.
    #[arg(long, value_name = "SIZE")]
    disk_size: Option<Size>,
    /// Write the serial console to FILE.
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,
    /// The user to ssh in as (the image's cloud-init default user).
    #[arg(long, default_value = "debian")]
    user: String,
}

impl From<CliMachine> for MachineOptions {
    fn from(machine: CliMachine) -> MachineOptions {
        MachineOptions {
            path: machine.path,
            output: machine.output,
            uefi: machine.uefi,
            arch: machine.arch.map(|arch| match arch {
                CliArch::Amd64 => Arch::Amd64,
                CliArch::Arm64 => Arch::Arm64,
            }),
            ramdisk: machine.ramdisk,
            accel: match machine.accel {
                CliAccel::Tcg => Accel::Tcg,
                CliAccel::Kvm => Accel::Kvm,
            },
            disk_size: machine.disk_size,
            serial_log: machine.serial_log,
            user: machine.user,
        }
    }
}

/// `kiln sbom --format` values; mirrors [`SbomFormat`].
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliSbomFormat {
    Spdx,
    Cyclonedx,
}

/// `kiln completions` values; mirrors [`Shell`].
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliShell {
    Bash,
    Zsh,
    Fish,
}

/// `--arch` values; mirrors [`Arch`].
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliArch {
    Amd64,
    Arm64,
}

/// `--accel` values; mirrors [`Accel`].
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliAccel {
    Tcg,
    Kvm,
}

/// What `kiln elements` does.
#[derive(Debug, Subcommand)]
enum CacheAction {
    /// Every snapshot: its key, image, size and when it was last used,
    /// the most recently used first.
    List,
    /// Remove the least recently used snapshots until the rest fit in
    /// `--keep` (default: all of them go).
    Prune {
        /// The size to keep them within: bytes, or a number with K, M, G
        /// or T.
        #[arg(long, default_value = "0", value_parser = parse_size)]
        keep: u64,
    },
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::snapshot::parse_size(text)
        .ok_or_else(|| format!("`{text}` is not a size (bytes, or a number with K, M, G or T)"))
}

#[derive(Debug, Subcommand)]
enum ElementsAction {
    /// Every element on the search path: its name, where it comes from
    /// (`built-in`, or the search-path directory that holds it) and what
    /// it does.
    List {
        /// Print a JSON array of {name, description, origin, path,
        /// provides, hides} instead, for tools.
        #[arg(long)]
        json: bool,
    },
    /// One element: its directory, tree hash, dependencies and hooks.
    Show {
        /// The element's name.
        name: String,
    },
}

/// `--distro` takes exactly the imagefile's `distro` values.
impl ValueEnum for Distro {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Distro::Debian,
            Distro::Ubuntu,
            Distro::Fedora,
            Distro::Centos,
            Distro::Rhel,
            Distro::Opensuse,
            Distro::Image,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Everything a kiln run needs, resolved from the command line.
#[derive(Debug)]
pub struct Settings {
    /// The command to run.
    pub command: Command,
    /// `--quiet`: no progress output.
    pub quiet: bool,
}

/// A command with its settings.
#[derive(Debug)]
pub enum Command {
    /// `kiln validate`.
    Validate(ValidateSettings),
    /// `kiln schema`, for the lockfile with `lock`.
    Schema {
        /// Print the lockfile's schema.
        lock: bool,
    },
    /// `kiln lock`.
    Lock(LockSettings),
    /// `kiln fetch`.
    Fetch(FetchSettings),
    /// `kiln build`.
    Build(BuildSettings),
    /// `kiln elements list|show`.
    Elements(ElementsSettings),
    /// `kiln cache list|prune`.
    Cache(CacheSettings),
    /// `kiln sbom`.
    Sbom(SbomSettings),
    /// `kiln init`.
    Init(InitSettings),
    /// `kiln disk-image-create`, or kiln started as `disk-image-create`.
    DiskImageCreate(DiskImageCreateSettings),
    /// `kiln boot`.
    Boot(BootSettings),
    /// `kiln test`.
    Test(TestSettings),
    /// `kiln completions`.
    Completions(CompletionsSettings),
    /// `kiln man`.
    Man(ManSettings),
}

/// kiln's command line as clap defines it: what `kiln completions` and
/// `kiln man` are made from, so they list exactly what `--help` does.
pub fn definition() -> clap::Command {
    Cli::command()
}

/// Parses the process's arguments. On `--help` and `--version` prints and
/// returns exit code 0; on a usage error prints clap's message and returns
/// the user-error code (clap's own would be 2, which kiln keeps for internal
/// failures).
pub fn parse() -> Result<Settings, ExitCode> {
    parse_from(std::env::args_os())
}

/// [`parse`] over given arguments.
pub fn parse_from<I, T>(args: I) -> Result<Settings, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    // Started through a link named `disk-image-create`: DIB's command line.
    let started_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if started_as.as_deref() == Some("disk-image-create") {
        let rest = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return disk_image_create(rest);
    }
    let cli = Cli::try_parse_from(args).map_err(|error| {
        let _ = error.print();
        if error.use_stderr() {
            ExitCode::from(USER_EXIT_CODE)
        } else {
            ExitCode::SUCCESS
        }
    })?;
    let command = match cli.command {
        CliCommand::Validate {
            path,
            elements_path,
            cache_dir,
        } => Command::Validate(ValidateSettings {
            path,
            elements_path,
            cache_dir,
        }),
        CliCommand::Schema { lock } => Command::Schema { lock },
        CliCommand::Lock {
            path,
            update,
            dry_run,
            cache_dir,
            elements_path,
        } => Command::Lock(LockSettings {
            path,
            update,
            dry_run,
            cache_dir,
            elements_path,
        }),
        CliCommand::Build {
            path,
            output,
            offline,
            locked,
            shell_on_failure,
            timings,
            keep_tree,
            check,
            compress,
            no_cache,
            no_tmpfs,
            emulate_all,
            mirror,
            cache_dir,
            elements_path,
        } => Command::Build(BuildSettings {
            mirror,
            shell_on_failure,
            timings,
            keep_tree,
            check,
            compress,
            no_cache,
            no_tmpfs,
            emulate_all,
            path,
            output,
            cache_dir,
            offline,
            locked,
            elements_path,
        }),
        CliCommand::Cache { action, cache_dir } => Command::Cache(CacheSettings {
            cache_dir,
            prune: match action {
                CacheAction::List => None,
                CacheAction::Prune { keep } => Some(keep),
            },
        }),
        CliCommand::Elements {
            action,
            elements_path,
            cache_dir,
        } => Command::Elements(ElementsSettings {
            elements_path,
            cache_dir,
            action: match action {
                ElementsAction::List { json } => ElementsCommand::List { json },
                ElementsAction::Show { name } => ElementsCommand::Show(name),
            },
        }),
        CliCommand::Fetch {
            path,
            offline,
            mirror,
            cache_dir,
        } => Command::Fetch(FetchSettings {
            path,
            offline,
            mirror,
            cache_dir,
        }),
        CliCommand::Boot { machine } => Command::Boot(BootSettings {
            machine: machine.into(),
        }),
        CliCommand::Test { machine, timeout } => Command::Test(TestSettings {
            machine: machine.into(),
            timeout: std::time::Duration::from_secs(timeout),
        }),
        CliCommand::Sbom {
            path,
            output,
            format,
            cache_dir,
        } => Command::Sbom(SbomSettings {
            path,
            output,
            format: format.map(|f| match f {
                CliSbomFormat::Spdx => SbomFormat::Spdx,
                CliSbomFormat::Cyclonedx => SbomFormat::Cyclonedx,
            }),
            cache_dir,
        }),
        CliCommand::DiskImageCreate { args } => return disk_image_create(args),
        CliCommand::Init {
            path,
            distro,
            release,
            minimal,
        } => Command::Init(InitSettings {
            path,
            distro,
            release,
            minimal,
        }),
        CliCommand::Completions { shell } => Command::Completions(CompletionsSettings {
            shell: match shell {
                CliShell::Bash => Shell::Bash,
                CliShell::Zsh => Shell::Zsh,
                CliShell::Fish => Shell::Fish,
            },
        }),
        CliCommand::Man { command, output } => Command::Man(ManSettings { command, output }),
    };
    Ok(Settings {
        command,
        quiet: cli.quiet,
    })
}

/// Settings of a `disk-image-create` call; its usage errors are printed as
/// diagnostics, with the user-error code.
fn disk_image_create(args: Vec<String>) -> Result<Settings, ExitCode> {
    match dib::parse(args.clone()) {
        Ok(call) => Ok(Settings {
            command: Command::DiskImageCreate(DiskImageCreateSettings {
                call,
                args,
                // vars() would panic on a variable that is not UTF-8.
                environment: std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect(),
            }),
            quiet: false,
        }),
        Err(error) => {
            let help = error.help();
            crate::terminal::diagnostic(&miette::miette!(help = help, "{error}"));
            Err(ExitCode::from(USER_EXIT_CODE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_is_a_flag_of_every_command() {
        for args in [
            vec!["kiln", "fetch", "-q"],
            vec!["kiln", "--quiet", "lock"],
            vec!["kiln", "build", "--quiet", "x.yaml"],
        ] {
            match parse_from(args.clone()) {
                Ok(settings) => assert!(settings.quiet, "{args:?}"),
                Err(_) => panic!("{args:?} is refused"),
            }
        }
    }

    #[test]
    fn disk_image_create_by_subcommand_and_by_program_name() {
        for args in [
            vec![
                "kiln",
                "disk-image-create",
                "-x",
                "-o",
                "img",
                "debian-minimal",
            ],
            vec![
                "/usr/local/bin/disk-image-create",
                "-x",
                "-o",
                "img",
                "debian-minimal",
            ],
        ] {
            match parse_from(args.clone()) {
                Ok(Settings {
                    command: Command::DiskImageCreate(settings),
                    ..
                }) => {
                    assert_eq!(settings.call.trace, 1, "{args:?}");
                    assert_eq!(settings.call.output.as_deref(), Some("img"));
                    assert_eq!(settings.call.elements, ["debian-minimal"]);
                    assert_eq!(settings.args, ["-x", "-o", "img", "debian-minimal"]);
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        // A refused option is a usage error, not a settings value.
        assert!(parse_from(["disk-image-create", "--logfile", "x", "vm"]).is_err());
    }
}

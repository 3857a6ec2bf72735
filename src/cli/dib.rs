//! diskimage-builder's command line, as `disk-image-create` takes it:
//! parsed the way DIB's `getopt` call parses it (short options bundled,
//! `--long=value` or `--long value`, options and elements in any order,
//! `--` ending the options), into [`DibCall`].
//!
//! Every option DIB knows is either mapped onto kiln's model, accepted as
//! meaningless for kiln (and said so in the guide), or refused by name with
//! what to do instead. Nothing is silently ignored.

use std::path::PathBuf;

/// One `disk-image-create` call, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DibCall {
    /// `-o`: the output path without the format's extension (`<base>`).
    pub output: Option<String>,
    /// `-t`: the formats, in the order given (default `qcow2`).
    pub formats: Vec<String>,
    /// `-a`: the architecture.
    pub arch: Option<String>,
    /// `-n`: do not add the `base` element.
    pub skip_base: bool,
    /// `-p`: extra packages (repeatable, comma-separated).
    pub packages: Vec<String>,
    /// `--image-size`: the image size in GB (DIB's unit: GiB).
    pub image_size: Option<String>,
    /// `--checksum`: write `.md5` and `.sha256` beside each output.
    pub checksum: bool,
    /// `-x`, given this many times: DIB_DEBUG_TRACE.
    pub trace: u32,
    /// `-u`: leave the qcow2 uncompressed.
    pub uncompressed: bool,
    /// `--qemu-img-options`: options for the qcow2 (`compat=0.10`).
    pub qemu_img_options: Option<String>,
    /// `--offline`.
    pub offline: bool,
    /// `--no-tmpfs`: make the tree on disk.
    pub no_tmpfs: bool,
    /// `--root-label`.
    pub root_label: Option<String>,
    /// The elements, in the order given.
    pub elements: Vec<String>,
    /// `-h`/`--help`.
    pub help: bool,
    /// `--version`.
    pub version: bool,
    /// kiln's own `--install-link DIR`: make `DIR/disk-image-create` a
    /// link to this kiln and stop.
    pub install_link: Option<PathBuf>,
}

/// Why a `disk-image-create` command line cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DibArgError {
    /// An option DIB has that kiln does not support.
    #[error("disk-image-create option `{option}` is not supported by kiln")]
    Unsupported {
        /// The option as DIB spells it.
        option: String,
        /// What to do instead.
        help: String,
    },
    /// An option DIB does not have either.
    #[error("disk-image-create has no option `{0}`")]
    Unknown(String),
    /// An option that needs a value came last.
    #[error("disk-image-create option `{0}` needs a value")]
    MissingValue(String),
    /// A value kiln cannot use.
    #[error("disk-image-create {option} {value}: {message}")]
    BadValue {
        /// The option.
        option: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        message: String,
    },
}

impl DibArgError {
    /// The `help:` line of the diagnostic.
    pub fn help(&self) -> String {
        match self {
            DibArgError::Unsupported { help, .. } => help.clone(),
            DibArgError::Unknown(_) => {
                "`disk-image-create --help` lists the options kiln takes".to_string()
            }
            DibArgError::MissingValue(_) => {
                "give the value after the option, as diskimage-builder takes it".to_string()
            }
            DibArgError::BadValue { .. } => {
                "`disk-image-create --help` lists the values kiln takes".to_string()
            }
        }
    }
}

/// DIB's short options that take a value (`getopt -o a:ho:t:xucnp:`).
const SHORT_WITH_VALUE: &[char] = &['a', 'o', 't', 'p'];

/// DIB's long options that take a value.
const LONG_WITH_VALUE: &[&str] = &[
    "min-tmpfs",
    "image-size",
    "image-extra-size",
    "image-cache",
    "max-online-resize",
    "mkfs-journal-size",
    "mkfs-options",
    "qemu-img-options",
    "ramdisk-element",
    "root-label",
    "install-type",
    "docker-target",
    "logfile",
    "install-link",
];

/// DIB's long options that take none.
const LONG_FLAGS: &[&str] = &["checksum", "no-tmpfs", "offline", "help", "version"];

/// The output types DIB's `-t` takes that kiln writes.
pub const SUPPORTED_FORMATS: &[&str] = &["qcow2", "raw", "vhd", "vhdx", "vmdk", "tar", "squashfs"];

/// What to do instead of a DIB option kiln refuses.
fn refusal(option: &str) -> Option<&'static str> {
    Some(match option {
        "--image-extra-size" => {
            "kiln sizes the filesystem to the tree plus headroom itself; for more room write an imagefile with `disk.headroom`, or give --image-size"
        }
        "--image-cache" => {
            "kiln caches every locked download by SHA-256 in its own cache: set KILN_CACHE_DIR instead"
        }
        "--max-online-resize" => {
            "kiln makes the root filesystem growable to 1 PB online; drop the option"
        }
        "--mkfs-journal-size" | "--mkfs-options" => {
            "kiln writes the filesystem with fixed, reproducible mke2fs options; drop the option (an imagefile's `disk` section chooses the filesystem type)"
        }
        "--ramdisk-element" => {
            "build a deploy ramdisk with an imagefile's `outputs: [ramdisk]` (see the guide's Deploy ramdisks chapter)"
        }
        "--install-type" => {
            "kiln has no install types; give an element its parameters with `with:` in an imagefile"
        }
        "--docker-target" => {
            "use `-t tar` and import the tarball (`docker import <base>.tar NAME`)"
        }
        "--logfile" => {
            "kiln always writes the build log to `<base>.d/<name>.build.log`; drop the option"
        }
        _ => return None,
    })
}

/// Parses `disk-image-create`'s arguments (without the program name).
pub fn parse<I, S>(args: I) -> Result<DibCall, DibArgError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut call = DibCall::default();
    let mut i = 0;
    let mut options_done = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if options_done || arg == "-" || !arg.starts_with('-') {
            call.elements.push(arg.clone());
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let option = format!("--{name}");
            if LONG_FLAGS.contains(&name) {
                if inline.is_some() {
                    return Err(DibArgError::BadValue {
                        option,
                        value: inline.unwrap_or_default(),
                        message: "this option takes no value".to_string(),
                    });
                }
                match name {
                    "checksum" => call.checksum = true,
                    "offline" => call.offline = true,
                    "help" => call.help = true,
                    "version" => call.version = true,
                    "no-tmpfs" => call.no_tmpfs = true,
                    _ => {}
                }
                continue;
            }
            if !LONG_WITH_VALUE.contains(&name) {
                return Err(DibArgError::Unknown(option));
            }
            let value = match inline {
                Some(value) => value,
                None => {
                    let Some(value) = args.get(i) else {
                        return Err(DibArgError::MissingValue(option));
                    };
                    i += 1;
                    value.clone()
                }
            };
            if let Some(help) = refusal(&option) {
                return Err(DibArgError::Unsupported {
                    option,
                    help: help.to_string(),
                });
            }
            match name {
                "image-size" => call.image_size = Some(value),
                "qemu-img-options" => call.qemu_img_options = Some(value),
                "root-label" => call.root_label = Some(value),
                "install-link" => call.install_link = Some(PathBuf::from(value)),
                // --min-tmpfs: kiln sizes the tmpfs by the lock.
                _ => {}
            }
            continue;
        }
        // A bundle of short options: `-xu`, `-tqcow2`, `-x -t qcow2`.
        for (at, c) in arg[1..].char_indices() {
            if SHORT_WITH_VALUE.contains(&c) {
                let rest = &arg[1 + at + c.len_utf8()..];
                let value = if !rest.is_empty() {
                    rest.to_string()
                } else if let Some(value) = args.get(i) {
                    i += 1;
                    value.clone()
                } else {
                    return Err(DibArgError::MissingValue(format!("-{c}")));
                };
                match c {
                    'a' => call.arch = Some(value),
                    'o' => call.output = Some(value),
                    't' => call.formats = value.split(',').map(str::to_string).collect(),
                    _ => call.packages.extend(
                        value
                            .split(',')
                            .filter(|p| !p.is_empty())
                            .map(str::to_string),
                    ),
                }
                break;
            }
            match c {
                'x' => call.trace += 1,
                'u' => call.uncompressed = true,
                // `-c` clears the environment: kiln's hooks never see the
                // host's environment anyway.
                'c' => {}
                'n' => call.skip_base = true,
                'h' => call.help = true,
                other => return Err(DibArgError::Unknown(format!("-{other}"))),
            }
        }
    }
    if call.formats.is_empty() {
        call.formats.push("qcow2".to_string());
    }
    for format in &call.formats {
        if !SUPPORTED_FORMATS.contains(&format.as_str()) {
            let help = match format.as_str() {
                "tgz" => "use `-t tar` and compress the tarball afterwards",
                "docker" => "use `-t tar` and import it (`docker import <base>.tar NAME`)",
                "aci" => "appc images are retired; use `-t tar`",
                _ => "kiln writes qcow2, raw, vhd, vhdx, vmdk, tar and squashfs",
            };
            return Err(DibArgError::Unsupported {
                option: format!("-t {format}"),
                help: help.to_string(),
            });
        }
    }
    Ok(call)
}

/// The text `disk-image-create --help` prints.
pub fn help_text() -> String {
    format!(
        "Usage: disk-image-create [OPTIONS]... ELEMENT [ELEMENT]...

kiln's drop-in for diskimage-builder's disk-image-create: the call is written
as an imagefile and lock into <base>.d/, built, and the images written as
<base>.<format> (report, log and SBOMs stay in <base>.d/).

Options kiln maps onto its model:
  -o BASE                 write BASE.<format> for each format (default: image)
  -t TYPE[,TYPE]          {formats} (default qcow2)
  -a ARCH                 amd64 or arm64 (x86_64 and aarch64 are taken as these)
  -p PKG[,PKG]            extra packages (repeatable)
  -n                      do not add the `base` element
  -u                      leave the qcow2 uncompressed (compressed otherwise, as DIB does)
  -x                      DIB_DEBUG_TRACE for the hooks (repeatable)
  --checksum              BASE.<format>.md5 and .sha256, as md5sum/sha256sum write them
  --qemu-img-options OPTS applied to the qcow2 with `qemu-img amend -o OPTS`
  --image-size GB         the disk's size in GiB (default: just large enough)
  --root-label LABEL      the root filesystem's label
  --offline               use only kiln's cache
  --no-tmpfs              make the tree on disk, not in memory (also DIB_NO_TMPFS=1)
Accepted, and meaningless for kiln: --min-tmpfs N (kiln sizes the tmpfs from
  the lock), -c.
Refused, with what to do instead: --image-extra-size, --image-cache,
  --max-online-resize, --mkfs-options, --mkfs-journal-size,
  --ramdisk-element, --install-type, --docker-target, --logfile.
kiln's own: --install-link DIR  make DIR/disk-image-create a link to this kiln.

Environment: DIB_RELEASE (required), ELEMENTS_PATH, DIB_CHECKSUM, and every
other DIB_* variable, which reaches the hooks through the imagefile's
`environment` (DIB_IMAGE_FILENAME, which holds Nodepool's build id, does not).
",
        formats = SUPPORTED_FORMATS.join(", ")
    )
}

/// Nodepool's builder's command line (`nodepool/builder.py`: `-x -t
/// <types> --checksum --no-tmpfs <qemu-img options> -o <base> <elements>`
/// after `shlex.split`), with qcow2 among the types: what the tests parse.
#[cfg(test)]
pub(crate) const NODEPOOL_ARGS: &[&str] = &[
    "-x",
    "-t",
    "qcow2,raw",
    "--checksum",
    "--no-tmpfs",
    "--qemu-img-options",
    "compat=0.10",
    "-o",
    "/opt/nodepool/images/debian-bookworm-0000000001",
    "debian-minimal",
    "vm",
    "growroot",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodepool_command_line() {
        // nodepool/builder.py: '%s -x -t %s --checksum --no-tmpfs %s -o %s %s'
        // after shlex.split, with qcow2 among the types.
        let call = parse(NODEPOOL_ARGS.iter().copied()).expect("parses");
        assert_eq!(call.trace, 1);
        assert_eq!(call.formats, ["qcow2", "raw"]);
        assert!(call.checksum);
        assert_eq!(call.qemu_img_options.as_deref(), Some("compat=0.10"));
        assert_eq!(
            call.output.as_deref(),
            Some("/opt/nodepool/images/debian-bookworm-0000000001")
        );
        assert_eq!(call.elements, ["debian-minimal", "vm", "growroot"]);
        assert!(!call.skip_base && !call.uncompressed);
    }

    #[test]
    fn getopt_forms() {
        let call = parse([
            "vm",
            "-xxn",
            "-tqcow2",
            "--image-size=4",
            "-p",
            "curl,vim",
            "-pnginx",
            "-a",
            "amd64",
            "--",
            "-odd-element",
        ])
        .expect("parses");
        assert_eq!(call.trace, 2);
        assert!(call.skip_base);
        assert_eq!(call.formats, ["qcow2"]);
        assert_eq!(call.image_size.as_deref(), Some("4"));
        assert_eq!(call.packages, ["curl", "vim", "nginx"]);
        assert_eq!(call.arch.as_deref(), Some("amd64"));
        assert_eq!(call.elements, ["vm", "-odd-element"]);
    }

    #[test]
    fn defaults_to_qcow2() {
        let call = parse(["debian-minimal"]).expect("parses");
        assert_eq!(call.formats, ["qcow2"]);
        assert_eq!(call.output, None);
    }

    #[test]
    fn meaningless_options_are_accepted() {
        let call = parse(["--no-tmpfs", "--min-tmpfs", "2", "-c", "debian-minimal"]).expect("ok");
        assert_eq!(call.elements, ["debian-minimal"]);
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        for (args, option) in [
            (vec!["--mkfs-options", "-m 0"], "--mkfs-options"),
            (vec!["--image-extra-size=2"], "--image-extra-size"),
            (vec!["--image-cache", "/c"], "--image-cache"),
            (vec!["--max-online-resize", "1"], "--max-online-resize"),
            (vec!["--ramdisk-element", "x"], "--ramdisk-element"),
            (vec!["--install-type", "source"], "--install-type"),
            (vec!["--docker-target", "t"], "--docker-target"),
            (vec!["--logfile", "l"], "--logfile"),
            (vec!["-t", "qcow2,docker"], "-t docker"),
            (vec!["-t", "tgz"], "-t tgz"),
        ] {
            let mut args = args;
            args.push("debian-minimal");
            match parse(args.clone()) {
                Err(DibArgError::Unsupported { option: o, help }) => {
                    assert_eq!(o, option, "{args:?}");
                    assert!(!help.is_empty());
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_and_incomplete_options() {
        assert_eq!(
            parse(["--frobnicate", "vm"]),
            Err(DibArgError::Unknown("--frobnicate".to_string()))
        );
        assert_eq!(
            parse(["-z", "vm"]),
            Err(DibArgError::Unknown("-z".to_string()))
        );
        assert_eq!(
            parse(["vm", "-o"]),
            Err(DibArgError::MissingValue("-o".to_string()))
        );
        assert!(matches!(
            parse(["--checksum=1", "vm"]),
            Err(DibArgError::BadValue { .. })
        ));
    }
}

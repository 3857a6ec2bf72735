//! `kiln disk-image-create` (and kiln started as `disk-image-create`):
//! diskimage-builder's command line, as CI systems such as Nodepool issue
//! it, mapped onto kiln's model.
//!
//! The call becomes an imagefile written into `<base>.d/`, locked and built
//! there by `kiln build` (so the build can be reviewed and reproduced from
//! that directory later); then each image is moved to `<base>.<format>`, and
//! `--checksum` writes `<base>.<format>.md5` and `.sha256` exactly as DIB
//! does (`md5sum <base>.<format> > <base>.<format>.md5`). Nothing else is
//! named `<base>.<anything>`: Nodepool takes every such file for an image
//! format, so the report, log and SBOMs stay in `<base>.d/`.
//!
//! [`prepare`] and [`finish`] are the two halves around the build, which
//! [`crate::run`] runs with `kiln build`'s own command.

use std::path::{Path, PathBuf};

use crate::cli::dib::{self, DibCall};
use crate::commands::build::BuildSettings;
use crate::failure::Failure;
use crate::host::command;
use crate::terminal::shell_word;
use crate::{manifest, terminal};

/// Settings of `kiln disk-image-create`.
#[derive(Debug)]
pub struct DiskImageCreateSettings {
    /// The parsed command line.
    pub call: DibCall,
    /// The arguments as given, for the imagefile's header.
    pub args: Vec<String>,
    /// The process's environment (DIB_*, ELEMENTS_PATH, KILN_*).
    pub environment: Vec<(String, String)>,
}

/// The call mapped onto kiln: what to write, build and then move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// `<base>`, as given with `-o` (relative paths stay relative, as
    /// DIB's checksum files show them).
    pub base: String,
    /// The image's name: `<base>`'s file name.
    pub name: String,
    /// The imagefile's text.
    pub imagefile: String,
    /// Each output: kiln's file extension and DIB's.
    pub outputs: Vec<(String, String)>,
    /// The checksum programs to run (`md5sum`, `sha256sum`), by extension.
    pub checksums: Vec<(&'static str, &'static str)>,
    /// Compress the qcow2 (DIB does unless `-u`).
    pub compress: bool,
    /// Options for `qemu-img amend` on the qcow2.
    pub qemu_img_options: Option<String>,
    /// Build with only the cache.
    pub offline: bool,
    /// Make the tree on disk, not in a tmpfs (`--no-tmpfs`,
    /// `DIB_NO_TMPFS=1`).
    pub no_tmpfs: bool,
}

impl Mapped {
    /// `<base>.d/`: the imagefile, lock, report, log and SBOMs.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(format!("{}.d", self.base))
    }
}

/// Variables of the environment that are not handed to the hooks as they
/// are: kiln maps them onto the imagefile, derives them itself, or they
/// would make every build differ (`DIB_IMAGE_FILENAME` holds Nodepool's
/// build id).
const MAPPED_VARIABLES: &[&str] = &[
    "DIB_RELEASE",
    "DIB_IMAGE_SIZE",
    "DIB_ROOT_LABEL",
    "DIB_OFFLINE",
    "DIB_DISTRIBUTION_MIRROR",
    "DIB_CHECKSUM",
    "DIB_DEBUG_TRACE",
    "DIB_IMAGE_FILENAME",
    "DIB_NO_TMPFS",
    "DIB_MIN_TMPFS",
    "DIB_IMAGE_CACHE",
    "DIB_IMAGE_ROOT_FS_UUID",
];

/// The distribution a DIB distribution element builds on.
fn distro_of(element: &str) -> Option<&'static str> {
    Some(match element {
        "debian" | "debian-minimal" => "debian",
        "ubuntu" | "ubuntu-minimal" => "ubuntu",
        "fedora" => "fedora",
        "centos" => "centos",
        "rhel" => "rhel",
        "opensuse" => "opensuse",
        _ => return None,
    })
}

/// A YAML scalar: a JSON string is one.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

fn user_error(message: String, help: &str) -> Failure {
    Failure::user(miette::miette!(help = help.to_string(), "{message}"))
}

/// DIB's `--image-size` (GiB, possibly fractional) as a kiln size.
fn image_size(value: &str) -> Option<String> {
    if let Ok(gib) = value.parse::<u64>() {
        return (gib > 0).then(|| format!("{gib}GiB"));
    }
    let gib: f64 = value.parse().ok()?;
    let mib = (gib * 1024.0).round();
    (gib.is_finite() && mib >= 1.0).then(|| format!("{}MiB", mib as u64))
}

/// Maps a parsed call and the environment onto an imagefile and the steps
/// around its build.
pub fn map(call: &DibCall, args: &[String], env: &[(String, String)]) -> Result<Mapped, Failure> {
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let mut base = call.output.clone().unwrap_or_else(|| "image".to_string());
    // DIB drops a format's extension from `-o` when it makes one format.
    if let [format] = call.formats.as_slice()
        && let Some(stripped) = base.strip_suffix(&format!(".{format}"))
    {
        base = stripped.to_string();
    }
    // The text after the last `/`, not Path::file_name: `-o dir/` names
    // no image (DIB would write `dir/.qcow2`).
    let name = base.rsplit('/').next().unwrap_or_default().to_string();
    if name.parse::<manifest::ImageName>().is_err() {
        return Err(user_error(
            format!("-o {base}: `{name}` is not a valid image name"),
            "end -o with a name of letters, digits, `.`, `_` and `-`, starting with a letter or digit",
        ));
    }

    let distros: Vec<&str> = call.elements.iter().filter_map(|e| distro_of(e)).collect();
    let distro = match distros.as_slice() {
        [] => {
            return Err(user_error(
                "no distribution element among the elements".to_string(),
                "name one, as diskimage-builder requires: debian-minimal, debian, ubuntu-minimal, ubuntu, fedora, centos, rhel or opensuse",
            ));
        }
        [first, rest @ ..] => {
            if rest.iter().any(|d| d != first) {
                return Err(user_error(
                    format!(
                        "the elements name more than one distribution: {}",
                        distros.join(", ")
                    ),
                    "keep one distribution element",
                ));
            }
            *first
        }
    };
    let Some(release) = var("DIB_RELEASE") else {
        return Err(user_error(
            "DIB_RELEASE is not set".to_string(),
            "export DIB_RELEASE (such as bookworm): kiln pins the release in the lock and has no moving default (Nodepool sets it from the diskimage's `release`)",
        ));
    };
    let arch = call.arch.as_deref().map(|arch| match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    });

    let mut elements: Vec<String> = Vec::new();
    if !call.skip_base && !call.elements.iter().any(|e| e == "base") {
        elements.push("base".to_string());
    }
    elements.extend(call.elements.iter().cloned());

    let mut text =
        String::from("# Written by `kiln disk-image-create` for the call:\n#   disk-image-create");
    for arg in args {
        text.push(' ');
        text.push_str(&shell_word(arg));
    }
    text.push('\n');
    if let Some(path) = var("ELEMENTS_PATH") {
        text.push_str(&format!("# with ELEMENTS_PATH={}\n", shell_word(path)));
    }
    text.push_str(
        "# Build it again from this directory with `kiln build imagefile.yaml -o . --locked`.\n",
    );
    text.push_str(&format!(
        "name: {}\nbase:\n  distro: {distro}\n  release: {}\n",
        quoted(&name),
        quoted(release)
    ));
    if let Some(arch) = arch {
        text.push_str(&format!("  arch: {}\n", quoted(arch)));
    }
    if let Some(mirror) = var("DIB_DISTRIBUTION_MIRROR") {
        text.push_str(&format!("  mirror: {}\n", quoted(mirror)));
    }
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| quoted(i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    text.push_str(&format!("elements: [{}]\n", list(&elements)));
    if !call.packages.is_empty() {
        text.push_str(&format!("packages: [{}]\n", list(&call.packages)));
    }
    let size = call.image_size.as_deref().or(var("DIB_IMAGE_SIZE"));
    let label = call.root_label.as_deref().or(var("DIB_ROOT_LABEL"));
    if size.is_some() || label.is_some() {
        text.push_str("disk:\n");
        if let Some(size) = size {
            let Some(kiln_size) = image_size(size) else {
                return Err(user_error(
                    format!("--image-size {size}: not a size in GB"),
                    "give a positive number of GiB, such as 8 or 2.5",
                ));
            };
            text.push_str(&format!("  size: {kiln_size}\n"));
        }
        if let Some(label) = label {
            text.push_str(&format!("  label: {}\n", quoted(label)));
        }
    }
    let kiln_formats: Vec<String> = call.formats.clone();
    text.push_str(&format!("outputs: [{}]\n", list(&kiln_formats)));

    let trace = var("DIB_DEBUG_TRACE")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0)
        + call.trace;
    let mut environment: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("DIB_") && !MAPPED_VARIABLES.contains(&k.as_str()))
        .cloned()
        .collect();
    if trace > 0 {
        environment.push(("DIB_DEBUG_TRACE".to_string(), trace.to_string()));
    }
    environment.sort();
    environment.dedup_by(|a, b| a.0 == b.0);
    if !environment.is_empty() {
        text.push_str("environment:\n");
        for (key, value) in &environment {
            text.push_str(&format!("  {}: {}\n", quoted(key), quoted(value)));
        }
    }

    let checksum = if call.checksum {
        "md5,sha256"
    } else {
        match var("DIB_CHECKSUM") {
            Some("1") => "md5,sha256",
            Some("0") | None => "",
            Some(other) => other,
        }
    };
    let mut checksums = Vec::new();
    if checksum.contains("md5") {
        checksums.push(("md5sum", "md5"));
    }
    if checksum.contains("sha256") {
        checksums.push(("sha256sum", "sha256"));
    }
    let has_qcow2 = call.formats.iter().any(|f| f == "qcow2");
    if call.qemu_img_options.is_some() && !has_qcow2 {
        return Err(user_error(
            "--qemu-img-options without a qcow2 among the formats".to_string(),
            "kiln applies --qemu-img-options to the qcow2 only; drop the option or add qcow2 to -t",
        ));
    }
    Ok(Mapped {
        outputs: call
            .formats
            .iter()
            .map(|f| {
                let dib = if f == "squashfs" {
                    "squash"
                } else {
                    f.as_str()
                };
                (f.clone(), dib.to_string())
            })
            .collect(),
        base,
        name,
        imagefile: text,
        checksums,
        compress: has_qcow2 && !call.uncompressed,
        qemu_img_options: call.qemu_img_options.clone(),
        offline: call.offline || var("DIB_OFFLINE").is_some(),
        no_tmpfs: call.no_tmpfs || var("DIB_NO_TMPFS").is_some_and(|v| v == "1"),
    })
}

/// Makes `dir/disk-image-create` a symbolic link to this kiln.
fn install_link(dir: &Path) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(Failure::internal)?;
    let link = dir.join("disk-image-create");
    if link.symlink_metadata().is_ok() {
        return Err(user_error(
            format!("{} already exists", link.display()),
            "remove it first, or choose another directory",
        ));
    }
    std::os::unix::fs::symlink(&exe, &link).map_err(|e| {
        user_error(
            format!("cannot make {}: {e}", link.display()),
            "give a directory you can write, such as /usr/local/bin (as root)",
        )
    })?;
    terminal::status(&format!("{} -> {}", link.display(), exe.display()));
    Ok(())
}

/// The first half: writes the imagefile into `<base>.d/` and returns what
/// `kiln build` is to do, or `None` when the call was only `--help`,
/// `--version` or `--install-link`.
pub fn prepare(
    settings: &DiskImageCreateSettings,
) -> Result<Option<(Mapped, BuildSettings)>, Failure> {
    let call = &settings.call;
    if call.help {
        print!("{}", dib::help_text());
        return Ok(None);
    }
    if call.version {
        println!(
            "kiln {} (disk-image-create compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(None);
    }
    if let Some(dir) = &call.install_link {
        install_link(dir)?;
        return Ok(None);
    }
    // Before anything else: the build needs root, and a user without it
    // learns so before fixing anything that would not help.
    crate::ops::build::require_root("disk-image-create")?;
    let mapped = map(call, &settings.args, &settings.environment)?;
    let dir = mapped.dir();
    fs_err::create_dir_all(&dir).map_err(Failure::internal)?;
    let path = dir.join("imagefile.yaml");
    // Rewritten only when it changes: a newer imagefile makes a new lock.
    if std::fs::read_to_string(&path).ok().as_deref() != Some(mapped.imagefile.as_str()) {
        fs_err::write(&path, &mapped.imagefile).map_err(Failure::internal)?;
    }
    let env = |name: &str| {
        settings
            .environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let build = BuildSettings {
        path,
        output: dir,
        cache_dir: env("KILN_CACHE_DIR").map(PathBuf::from),
        offline: mapped.offline,
        mirror: env("KILN_MIRROR"),
        locked: false,
        shell_on_failure: false,
        timings: false,
        keep_tree: false,
        check: false,
        compress: mapped.compress,
        no_cache: false,
        no_tmpfs: mapped.no_tmpfs,
        emulate_all: false,
        elements_path: Vec::new(),
    };
    Ok(Some((mapped, build)))
}

/// Runs a program that must succeed, for its stdout.
fn run_checked(program: &str, args: &[&str], package: &str) -> Result<Vec<u8>, Failure> {
    let finished = command::run(program, args, package).map_err(Failure::internal)?;
    if !finished.success() {
        return Err(Failure::internal(format!(
            "{program} {} failed: {}",
            args.join(" "),
            finished.stderr.trim()
        )));
    }
    Ok(finished.stdout)
}

/// The second half: moves each image to `<base>.<format>`, applies
/// `--qemu-img-options` to the qcow2, writes the checksum files.
pub fn finish(mapped: &Mapped) -> Result<(), Failure> {
    let dir = mapped.dir();
    let mut written = Vec::new();
    for (kiln_ext, dib_ext) in &mapped.outputs {
        let built = dir.join(format!("{}.{kiln_ext}", mapped.name));
        let target = format!("{}.{dib_ext}", mapped.base);
        fs_err::rename(&built, &target).map_err(Failure::internal)?;
        if kiln_ext == "qcow2"
            && let Some(options) = &mapped.qemu_img_options
        {
            run_checked(
                "qemu-img",
                &["amend", "-f", "qcow2", "-o", options, &target],
                "qemu-utils",
            )?;
        }
        written.push(target.clone());
        for (program, ext) in &mapped.checksums {
            // Exactly DIB's `md5sum <base>.<format> > <base>.<format>.md5`.
            let line = run_checked(program, &[&target], "coreutils")?;
            fs_err::write(format!("{target}.{ext}"), line).map_err(Failure::internal)?;
            written.push(format!("{target}.{ext}"));
        }
    }
    terminal::status(&format!(
        "disk-image-create: wrote {}\nimagefile, lock, report, log and SBOMs: {}/",
        written.join(", "),
        dir.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests;

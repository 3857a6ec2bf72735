//! `kiln init`: write a commented starter imagefile.
//!
//! For Debian the starter is a cloud image that boots and passes `kiln
//! test` as written (the `vm` and `debian` elements: what most people
//! want first); `--minimal`, and every other distribution, get a root
//! tree without kernel or bootloader, with the elements left for the user
//! to choose, since kiln's `vm` element has only been booted on Debian.
//!
//! The starter begins with a `yaml-language-server` line pointing at a copy
//! of the schema in `.kiln/` beside it, so an editor completes and checks
//! the file from the first keystroke. An existing imagefile is never
//! overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::manifest::{self, Distro, Problem};
use crate::ops::schema::schema_text;
use crate::terminal;

/// Where, relative to the imagefile, `kiln init` puts the editor's schema.
pub const SCHEMA_COPY_PATH: &str = ".kiln/imagefile.schema.json";

/// Settings of `kiln init`.
#[derive(Debug)]
pub struct InitSettings {
    /// The file to write, or a directory to write `imagefile.yaml` into.
    pub path: PathBuf,
    /// The distribution to start from.
    pub distro: Distro,
    /// The release, or the distro's current one.
    pub release: Option<String>,
    /// A root tree without kernel or bootloader (`elements: []`), even
    /// where a bootable starter exists.
    pub minimal: bool,
}

/// Whether the starter for `distro` is a bootable cloud image. Only
/// Debian's: kiln's `vm` element installs Debian's kernel and GRUB
/// packages, and has been booted with `debian` only (Ubuntu names its
/// kernel package differently; the RPM distributions need their own
/// bootloader set-up).
pub fn boots(distro: Distro) -> bool {
    distro == Distro::Debian
}

/// The release a starter names when none is given.
fn default_release(distro: Distro) -> Option<&'static str> {
    match distro {
        Distro::Debian => Some("bookworm"),
        Distro::Ubuntu => Some("noble"),
        Distro::Fedora => Some("41"),
        Distro::Centos | Distro::Rhel => Some("9"),
        Distro::Opensuse => Some("15.6"),
        Distro::Image => None,
    }
}

/// An image name made from a directory name: the project's name, if it
/// makes a valid one.
fn name_from_dir(dir: &Path) -> String {
    let raw = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    match cleaned.parse::<manifest::ImageName>() {
        Ok(name) if !cleaned.is_empty() => name.to_string(),
        _ => "my-image".to_string(),
    }
}

/// The starter imagefile's text: a bootable cloud image when `bootable`
/// (see [`boots`]), else a root tree with no elements.
pub fn starter(name: &str, distro: Distro, release: Option<&str>, bootable: bool) -> String {
    let mut base = format!("base:\n  distro: {}\n", distro.as_str());
    if let Some(release) = release {
        base.push_str(&format!("  release: {release}\n"));
    }
    if distro.is_debian_family() {
        base.push_str(
            "  # arch: amd64        # or arm64\n\
             \x20 # mirror: http://…   # default: the mirror the host's apt sources name\n\
             \x20 # suites: [updates, security]   # the default; add backports, or [] for the release alone\n\
             \x20 # components: [main]            # add contrib, non-free-firmware, …\n",
        );
    } else if matches!(distro, Distro::Image | Distro::Rhel) {
        base.push_str(
            "  # The cloud image or root filesystem tarball to start from (required):\n\
             \x20 # url: https://…\n",
        );
    } else {
        base.push_str(
            "  # Default: the release's cloud image, found on the distribution's\n\
             \x20 # download site and checked with its signed checksum file.\n\
             \x20 # keyring: keys/distribution.gpg   # the key that signs the checksums\n\
             \x20 # mirror: https://…                # another download site, laid out the same\n\
             \x20 # url: https://…                   # or this image instead\n",
        );
    }
    let (elements, packages, disk) = if bootable {
        (
            "# Elements to apply, in order: directories of hook scripts, as in\n\
# diskimage-builder. Give parameters with `- {name: NAME, with: {KEY: value}}`;\n\
# `kiln elements list` shows every element and what it does.\n\
elements:\n\
\x20 # The kernel, its initramfs, systemd and GRUB: boots by BIOS or UEFI.\n\
\x20 - vm\n\
\x20 # What Debian's own cloud images carry: openssh-server with password\n\
\x20 # logins off, cloud-init with the `debian` user (your cloud's ssh key\n\
\x20 # lands there), DHCP networking, and `growroot`, which grows the root\n\
\x20 # filesystem to fill whatever disk the machine gets.\n\
\x20 - debian\n",
            "# Extra packages from the distribution's archive, one a line (`- nginx`);\n\
# `debian` already brings openssh-server and cloud-init. `name/suite`\n\
# takes one from that suite, such as `linux-image-amd64/bookworm-backports`.\n\
packages: []\n",
            "# The disk layout. Without `disk`, `vm` makes the disk Debian's cloud\n\
# images have: GPT, a bios-boot partition, a 64 MiB ESP and the root (ext4,\n\
# labelled cloudimg-rootfs) just large enough for the tree; `growroot`\n\
# grows it on the first boot. Another layout:\n\
# disk:\n\
#   table: gpt\n\
#   size: 4GiB\n\
#   partitions:\n\
#     - {name: bios, type: bios-boot, size: 1MiB}\n\
#     - {name: esp, type: esp, size: 512MiB, mountpoint: /boot/efi}\n\
#     - {name: root, size: rest, mountpoint: /, label: cloudimg-rootfs}\n",
        )
    } else {
        (
            "# Elements to apply, in order: directories of hook scripts, as in\n\
# diskimage-builder. Give parameters with `- {name: NAME, with: {KEY: value}}`;\n\
# `kiln elements list` shows every element and what it does. Without\n\
# elements the image is a root tree with no kernel and no bootloader.\n\
elements: []\n",
            "# Extra packages from the distribution's archive. `name/suite` takes one\n\
# from that suite, such as `linux-image-amd64/bookworm-backports`.\n\
packages:\n\
\x20 - openssh-server\n",
            "# The disk layout. Without `disk`: one ext4 filesystem labelled\n\
# cloudimg-rootfs, just large enough for the tree. A whole disk instead:\n\
# disk:\n\
#   table: gpt\n\
#   partitions:\n\
#     - {name: bios, type: bios-boot, size: 1MiB}\n\
#     - {name: esp, type: esp, size: 512MiB, mountpoint: /boot/efi}\n\
#     - {name: root, size: rest, mountpoint: /, label: cloudimg-rootfs}\n",
        )
    };
    // `kiln test` boots only what `vm` made bootable.
    let tests = if bootable {
        "\n# Checks of your own, which `kiln test` runs in the booted machine after\n\
# its standard ones (ssh login, systemd, the root filesystem grown, ...):\n\
# tests:\n\
#   - unit: nginx.service\n\
#   - name: the site answers\n\
#     run: curl -sf http://localhost/\n\
#     output: Welcome to nginx\n"
    } else {
        ""
    };
    let check = if bootable {
        "Check it with `kiln validate`, build it\n\
# with `kiln build` (as root) and boot and check it with `kiln test`."
    } else {
        "Check it with `kiln validate`."
    };
    format!(
        "# yaml-language-server: $schema={SCHEMA_COPY_PATH}\n\
#\n\
# A kiln imagefile: what to build. {check}\n\
# The user guide's imagefile reference describes every key.\n\
\n\
# Output files are named after the image: {name}.qcow2, ...\n\
name: {name}\n\
\n\
# The distribution to start from.\n\
{base}\
\n\
{elements}\
\n\
{packages}\
\n\
# Other apt repositories, each checked with its own key:\n\
# repositories:\n\
#   - name: vendor\n\
#     url: https://…\n\
#     suites: [stable]\n\
#     components: [main]\n\
#     key: keys/vendor.asc\n\
\n\
# Variables handed to every element hook.\n\
# environment:\n\
#   DIB_DEBUG_TRACE: \"1\"\n\
\n\
{disk}\
\n\
# The files to write: raw, qcow2, tar, vhd, vhdx, vmdk, squashfs.\n\
outputs:\n\
\x20 - qcow2\n\
{tests}"
    )
}

/// Writes the starter imagefile and the editor's schema copy.
pub fn run(settings: &InitSettings) -> Result<(), Failure> {
    let path = if settings.path.is_dir() {
        settings.path.join("imagefile.yaml")
    } else {
        settings.path.clone()
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let release = settings
        .release
        .as_deref()
        .or(default_release(settings.distro));
    if let Some(release) = release
        && let Err(e) = release.parse::<manifest::Release>()
    {
        return Err(Failure::user(miette::miette!(
            help = e.help,
            "--release: {}",
            e.message
        )));
    }
    let bootable = boots(settings.distro) && !settings.minimal;
    let text = starter(&name_from_dir(&dir), settings.distro, release, bootable);

    let shown = path.display().to_string();
    let exists = |what: &str| {
        let problem = Problem::file_error(
            format!("{what}; kiln init never overwrites a file"),
            "choose another path, or move the existing file away first",
        );
        Failure::from(manifest::Source::new(shown.clone(), String::new()).problems(vec![problem]))
    };
    if path.exists() {
        return Err(exists("the file already exists"));
    }
    fs_err::create_dir_all(&dir).map_err(Failure::internal)?;
    // `create_new` makes "does not exist yet" and "write" one step.
    let mut file = match fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(exists("the file already exists"));
        }
        Err(e) => return Err(Failure::internal(e)),
    };
    file.write_all(text.as_bytes()).map_err(Failure::internal)?;

    let schema_path = dir.join(SCHEMA_COPY_PATH);
    let schema = schema_text();
    if std::fs::read_to_string(&schema_path).ok().as_deref() != Some(schema.as_str()) {
        if let Some(parent) = schema_path.parent() {
            fs_err::create_dir_all(parent).map_err(Failure::internal)?;
        }
        fs_err::write(&schema_path, schema).map_err(Failure::internal)?;
    }
    // The commands take `imagefile.yaml` when given no path.
    let arg = if path == Path::new("imagefile.yaml") {
        String::new()
    } else {
        format!(" {shown}")
    };
    let next = if bootable {
        format!(
            "next: `kiln validate{arg}`, then `kiln build{arg}` (as root) and `kiln test{arg}` to boot and check it"
        )
    } else {
        format!("next: edit it, then run `kiln validate{arg}`")
    };
    terminal::status(&format!(
        "wrote {shown} (and the editor schema {})\n{next}",
        schema_path.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every distribution `--distro` takes.
    fn distros() -> Vec<Distro> {
        <Distro as clap::ValueEnum>::value_variants().to_vec()
    }

    /// The starter's text, parsed, with what `kiln validate`'s manifest
    /// checks say about it.
    fn checked(distro: Distro, bootable: bool) -> (manifest::Manifest, Vec<Problem>) {
        let text = starter("demo", distro, default_release(distro), bootable);
        let source = manifest::Source::new("imagefile.yaml", text);
        let parsed = manifest::parse(&source).expect("starter parses");
        let problems = manifest::check(&parsed);
        (parsed, problems)
    }

    fn element_names(manifest: &manifest::Manifest) -> Vec<String> {
        manifest
            .elements
            .iter()
            .map(|e| e.value.name().to_string())
            .collect()
    }

    #[test]
    fn every_starter_parses() {
        for distro in distros() {
            for bootable in [false, boots(distro)] {
                let (_, problems) = checked(distro, bootable);
                if !matches!(distro, Distro::Image | Distro::Rhel) {
                    assert!(problems.is_empty(), "{distro:?}: {problems:?}");
                } else {
                    // These starters leave `url` for the user to fill in,
                    // and validation says so.
                    assert_eq!(problems.len(), 1, "{distro:?}: {problems:?}");
                    assert!(problems[0].message.contains("needs a `url`"));
                }
            }
        }
    }

    #[test]
    fn the_debian_starter_is_a_cloud_image_and_minimal_is_a_root_tree() {
        assert!(boots(Distro::Debian));
        let (cloud, _) = checked(Distro::Debian, true);
        assert_eq!(element_names(&cloud), ["vm", "debian"]);
        assert!(cloud.packages.is_empty(), "`debian` brings openssh-server");
        let (minimal, _) = checked(Distro::Debian, false);
        assert!(element_names(&minimal).is_empty());
        assert_eq!(minimal.packages.len(), 1);
        for (manifest, what) in [(cloud, "cloud"), (minimal, "minimal")] {
            assert!(
                manifest.disk.value.table.is_none(),
                "{what}: the default disk"
            );
            assert_eq!(manifest.outputs.len(), 1, "{what}: qcow2 only");
        }
    }

    #[test]
    fn the_cloud_starters_tests_example_is_an_imagefile_s_tests() {
        let text = starter("demo", Distro::Debian, Some("bookworm"), true);
        let (before, example) = text.split_once("# tests:\n").expect("a tests example");
        let uncommented: String = example
            .lines()
            .map(|line| format!("{}\n", line.strip_prefix("# ").expect("commented")))
            .collect();
        let source =
            manifest::Source::new("imagefile.yaml", format!("{before}tests:\n{uncommented}"));
        let parsed = manifest::parse(&source).expect("parses with the tests");
        assert!(manifest::check(&parsed).is_empty());
        assert_eq!(parsed.tests.len(), 2);
    }

    #[test]
    fn other_distributions_get_a_root_tree() {
        for distro in distros().into_iter().filter(|d| *d != Distro::Debian) {
            assert!(!boots(distro), "{distro:?}");
        }
    }
}

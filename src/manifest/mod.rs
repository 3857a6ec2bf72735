//! The imagefile: what a user writes, read into typed values.
//!
//! This module owns the first arrow of the pipeline, `imagefile.yaml` →
//! [`Manifest`]. The types below are the single source of truth for the
//! format: serde reads them, schemars turns them (and their doc comments)
//! into `schema/imagefile.schema.json`, and [`check`] applies the rules a
//! schema cannot express. YAML is read only through [`parse`], so the YAML
//! crate can be swapped in one place.

mod check;
mod diagnostic;
pub mod layout_fit;
pub use layout_fit::{ALIGN_BYTES, GPT_BACKUP_BYTES};
mod source;
mod spanned;
mod values;

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use check::check;
pub(crate) use diagnostic::line_and_column;
pub use diagnostic::{ManifestError, Problem, Problems, Severity};
pub(crate) use source::did_you_mean;
pub use source::{Source, load};
pub use spanned::Spanned;
pub(crate) use values::HELP_SEPARATOR;
pub use values::{
    Component, DiskSize, ElementName, EnvName, Fingerprint, ImageName, Label, MountOptions,
    Mountpoint, PackageName, PartitionName, PartitionSize, Release, RepositoryName, Sha256Hex,
    Size, SourceUrl, SuiteName, ValueError,
};

/// The label of the root filesystem when the manifest names none; cloud
/// images find their root by it.
pub const DEFAULT_ROOT_LABEL: &str = "cloudimg-rootfs";

/// A kiln imagefile: the base distribution, the elements and packages to
/// apply, the disk layout and the output formats of one machine image.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kiln imagefile")]
pub struct Manifest {
    /// The image's name. Output files are written as `<name>.<format>`.
    pub name: Spanned<ImageName>,

    /// The distribution the image starts from.
    pub base: Spanned<Base>,

    /// Elements to apply, in order: a name, or `{name, with: {param: value}}`
    /// to pass parameters. Elements are directories of hook scripts, as in
    /// diskimage-builder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elements: Vec<Spanned<ElementRef>>,

    /// Extra packages to install from the base distribution's archive (or
    /// from `repositories`). Write `name/suite` to take a package from one
    /// suite, as apt does: `linux-image-amd64/bookworm-backports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Spanned<PackageName>>,

    /// Other apt repositories to install packages from, besides the base
    /// distribution's archive: a vendor's, or your own. Each is signed by
    /// its own `key`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<Spanned<Repository>>,

    /// Environment variables handed to every element hook, such as
    /// `DIB_RELEASE` for elements written for diskimage-builder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<EnvName, ParamValue>,

    /// The disk layout: one filesystem (the default: ext4 labelled
    /// `cloudimg-rootfs`, just large enough), or a partition `table` with
    /// `partitions` for a whole-disk image.
    #[serde(default)]
    pub disk: Spanned<Disk>,

    /// The files to write. Defaults to `[qcow2]`.
    #[serde(default = "default_outputs")]
    #[schemars(default = "default_outputs")]
    pub outputs: Vec<Spanned<OutputFormat>>,

    /// Settings of the `ramdisk` output (a kernel and an initramfs holding
    /// the whole tree): its compression, what to leave out of it, a size
    /// limit and the kernel command line `kiln boot` and `kiln test` add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramdisk: Option<Spanned<Ramdisk>>,

    /// The software bills of materials written beside the report:
    /// `spdx` (`<name>.spdx.json`, SPDX 2.3) and `cyclonedx`
    /// (`<name>.cdx.json`, CycloneDX 1.5), each listing every package
    /// installed in the image with its version, licence, package URL and
    /// the SHA-256 of its `.deb`. Defaults to both; `[]` writes none. The
    /// build's provenance (`<name>.provenance.json`) is always written.
    #[serde(default = "default_sbom")]
    #[schemars(default = "default_sbom")]
    pub sbom: Vec<Spanned<SbomFormat>>,

    /// Seconds since 1970-01-01 UTC used for every timestamp in the image.
    /// Defaults to the date of the base distribution's index in the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<Spanned<u64>>,

    /// Checks `kiln test` runs in the booted image, after its built-in ones
    /// (boots, ssh login with a key, no password login, root filesystem
    /// grown): each runs a command (`run`), looks for a file (`file`) or
    /// asks whether a systemd unit is active (`unit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<Spanned<ImageTest>>,
}

fn default_sbom() -> Vec<Spanned<SbomFormat>> {
    vec![
        Spanned::unplaced(SbomFormat::Spdx),
        Spanned::unplaced(SbomFormat::Cyclonedx),
    ]
}

/// A software bill of materials format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    /// SPDX 2.3 JSON, `<name>.spdx.json`.
    Spdx,
    /// CycloneDX 1.5 JSON, `<name>.cdx.json`.
    Cyclonedx,
}

fn default_outputs() -> Vec<Spanned<OutputFormat>> {
    vec![Spanned::unplaced(OutputFormat::Qcow2)]
}

/// The distribution an image is built from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = {"properties": {"distro": {"const": "image"}}},
    "then" = {"required": ["url"]},
    "else" = {"required": ["release"]}
))]
pub struct Base {
    /// The distribution family, or `image` to start from a cloud image or
    /// root filesystem tarball given by `url`.
    pub distro: Spanned<Distro>,

    /// The release: a code name such as `bookworm` or `noble`, or a version
    /// such as `9`. Required for every distro except `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Spanned<Release>>,

    /// The CPU architecture of the image.
    #[serde(default)]
    pub arch: Spanned<Arch>,

    /// The archive to install packages from. Defaults to the mirror the
    /// host's apt sources name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Spanned<SourceUrl>>,

    /// The release's suites besides `<release>` itself: `updates`
    /// (`<release>-updates`, point-release fixes), `security`
    /// (`<release>-security`) and `backports` (`<release>-backports`,
    /// whose packages are only taken when asked for, as
    /// `name/<release>-backports`). Defaults to `[updates, security]`, as
    /// the distributions' own cloud images; `[]` for the release alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suites: Option<Vec<Spanned<SuiteKind>>>,

    /// The archive components to read. Defaults to `[main]` for Debian
    /// and `[main, universe]` for Ubuntu; add `contrib`, `non-free` or
    /// `non-free-firmware` (Debian), `restricted` or `multiverse`
    /// (Ubuntu) as needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Spanned<Component>>>,

    /// Where the `security` suite is published. Defaults to the archive
    /// the host's apt sources name for `<release>-security`, else, for
    /// Debian, `mirror` with `-security` added (`…/debian` becomes
    /// `…/debian-security`) and for Ubuntu `mirror` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_mirror: Option<Spanned<SourceUrl>>,

    /// An OpenPGP keyring that signs the archive. Defaults to the host's
    /// archive keyring for the distro.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<Spanned<String>>,

    /// For `distro: image` (and distros installed from an image): where
    /// to download the cloud image or root filesystem tarball.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Spanned<SourceUrl>>,

    /// The SHA-256 of the file at `url`. When absent, `kiln lock` records
    /// the digest of what it downloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Spanned<Sha256Hex>>,

    /// Where the base tree comes from: `archive` (kiln installs the
    /// release's packages itself; Debian and Ubuntu only, their default)
    /// or `cloud-image` (taken out of the distribution's published cloud
    /// image; the default, and the only way, for Fedora, CentOS Stream,
    /// RHEL and openSUSE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Spanned<BaseFrom>>,
}

/// Where a base tree comes from (`base.from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BaseFrom {
    /// The distribution's package archive, installed by kiln.
    Archive,
    /// The distribution's published cloud image (or `url`).
    CloudImage,
}

impl Base {
    /// Whether the base tree is taken out of an image (a cloud image the
    /// distribution publishes, or the file at `url`) rather than installed
    /// from the archive by kiln.
    pub fn from_image(&self) -> bool {
        match self.from.as_ref().map(|f| f.value) {
            Some(BaseFrom::CloudImage) => true,
            Some(BaseFrom::Archive) => false,
            None => !self.distro.value.is_debian_family() || self.url.is_some(),
        }
    }
}

/// One of a release's suites besides the release itself.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SuiteKind {
    /// `<release>-updates`: fixes published between point releases.
    Updates,
    /// `<release>-security`: security updates.
    Security,
    /// `<release>-backports`: newer versions from the next release, taken
    /// only for packages asked for as `name/<release>-backports`.
    Backports,
}

impl SuiteKind {
    /// The defaults, as Debian's and Ubuntu's cloud images take them.
    pub const DEFAULT: [SuiteKind; 2] = [SuiteKind::Updates, SuiteKind::Security];

    /// The suite's name for `release`: `bookworm-security`.
    pub fn suite(self, release: &str) -> String {
        format!("{release}-{}", self.as_str())
    }

    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteKind::Updates => "updates",
            SuiteKind::Security => "security",
            SuiteKind::Backports => "backports",
        }
    }
}

/// An extra apt repository.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [{"required": ["key"]}, {"required": ["fingerprint"]}]))]
pub struct Repository {
    /// A short name for it: the lock names the repository by it, and the
    /// image's apt source is `/etc/apt/sources.list.d/<name>.sources`.
    pub name: Spanned<RepositoryName>,

    /// The archive's URL: the directory that holds `dists/` and `pool/`.
    pub url: Spanned<SourceUrl>,

    /// The suites to read, below `dists/`. Defaults to the base's
    /// `release`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<Spanned<SuiteName>>,

    /// The components to read. Defaults to `[main]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Spanned<Component>>,

    /// The OpenPGP public key (armored `.asc` or binary `.gpg`) that signs
    /// the repository's `InRelease`, relative to the imagefile. It is also
    /// installed in the image, so that apt there trusts the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Spanned<String>>,

    /// The fingerprint of the key that must have signed the `InRelease`,
    /// as apt's `Signed-By` takes it. With `key`, only that key of the
    /// file counts; without, the key is looked up in the host's apt
    /// keyrings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Spanned<Fingerprint>>,

    /// apt's pin priority for the repository's packages. Defaults to 500,
    /// that of every repository apt reads; a higher one wins over newer
    /// versions elsewhere, below 100 its packages are only taken when
    /// nothing else has them, below 0 never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Spanned<i32>>,
}

/// A distribution family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    /// Debian, installed from its archive by kiln itself.
    Debian,
    /// Ubuntu, installed from its archive by kiln itself.
    Ubuntu,
    /// Fedora, from a cloud image or root filesystem tarball.
    Fedora,
    /// CentOS Stream, from a cloud image or root filesystem tarball.
    Centos,
    /// Red Hat Enterprise Linux, from a cloud image or root filesystem tarball.
    Rhel,
    /// openSUSE, from a cloud image or root filesystem tarball.
    Opensuse,
    /// Any cloud image or root filesystem tarball given by `url`.
    Image,
}

impl Distro {
    /// Whether kiln installs this distro from its package archive (rather
    /// than from an image given by URL).
    pub fn is_debian_family(self) -> bool {
        matches!(self, Distro::Debian | Distro::Ubuntu)
    }

    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
            Distro::Fedora => "fedora",
            Distro::Centos => "centos",
            Distro::Rhel => "rhel",
            Distro::Opensuse => "opensuse",
            Distro::Image => "image",
        }
    }
}

/// A CPU architecture, by its Debian name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64-bit x86 (x86_64).
    #[default]
    Amd64,
    /// 64-bit ARM (aarch64).
    Arm64,
}

impl Arch {
    /// Debian's name, as a manifest writes it and apt, the lock and
    /// DIB's `ARCH` use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// An element to apply: its name, or its name with parameters.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ElementRef {
    /// Just the element's name.
    Name(ElementName),
    /// The element's name and parameters for it.
    WithParams(ElementWithParams),
}

impl ElementRef {
    /// The element's name, however it was written.
    pub fn name(&self) -> &ElementName {
        match self {
            ElementRef::Name(name) => name,
            ElementRef::WithParams(with) => &with.name.value,
        }
    }
}

/// An element with parameters.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElementWithParams {
    /// The element's name.
    pub name: Spanned<ElementName>,
    /// Parameters for the element. Names follow environment-variable rules,
    /// because diskimage-builder elements read their parameters from the
    /// environment.
    #[serde(default)]
    pub with: BTreeMap<Spanned<EnvName>, Spanned<ParamValue>>,
}

// Written by hand rather than `#[serde(untagged)]`, which would replace the
// precise error of the branch that was meant ("unknown key `wiht`") with
// "data did not match any variant".
impl<'de> Deserialize<'de> for ElementRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ElementRefVisitor;

        impl<'de> Visitor<'de> for ElementRefVisitor {
            type Value = ElementRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an element name, or a mapping with `name` and `with`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ElementRef, E> {
                text.parse()
                    .map(ElementRef::Name)
                    .map_err(|e: ValueError| E::custom(e.encode()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ElementRef, A::Error> {
                ElementWithParams::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ElementRef::WithParams)
            }
        }

        deserializer.deserialize_any(ElementRefVisitor)
    }
}

/// A parameter or environment value: a string, number or boolean, handed
/// to elements as text (`1` and `"1"` mean the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(with = "ParamValueSchema")]
pub struct ParamValue(pub String);

/// The JSON schema shape of [`ParamValue`].
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ParamValueSchema {
    Text(String),
    Number(f64),
    Flag(bool),
}

// Read as a string, which keeps the scalar exactly as written: `0755`,
// `1.0` and `yes` reach the element as those characters, as they would in
// a shell, not as the number or boolean YAML would make of them.
impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ParamValue)
    }
}

/// The disk layout.
///
/// Without `table`, the image is one filesystem (`filesystem`, `label`,
/// `size`). With `table`, it is a whole disk with `partitions`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = {"required": ["table"]},
    "then" = {"required": ["partitions"]}
))]
pub struct Disk {
    /// The partition table of a whole-disk image. Leave it out for an image
    /// of one filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Spanned<PartitionTable>>,

    /// The size of the filesystem image or the whole disk: `auto` (just
    /// large enough for the tree, plus a little headroom) or a size such as
    /// `8GiB`.
    #[serde(default)]
    pub size: Spanned<DiskSize>,

    /// Free space left in a filesystem whose size is `auto` (the one
    /// filesystem of an `auto`-sized image, or the `rest` partition of an
    /// `auto`-sized disk), such as `64MiB`, the default. The root
    /// filesystem grows to fill the disk on first boot; this is room for
    /// the first boot itself, and for users on a root that never grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<Spanned<Size>>,

    /// The filesystem of a one-filesystem image. Defaults to `ext4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Spanned<Filesystem>>,

    /// The label of a one-filesystem image. Defaults to `cloudimg-rootfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Spanned<Label>>,

    /// The partitions of a whole-disk image, in disk order. Exactly one is
    /// mounted at `/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Spanned<Partition>>,
}

/// A kind of partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTable {
    /// GUID partition table: UEFI and BIOS (with a `bios-boot` partition).
    Gpt,
    /// MS-DOS partition table: BIOS only, at most four partitions.
    Mbr,
}

/// One partition of a whole-disk image.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// A name for the partition, unique on the disk; on GPT it is the
    /// partition's name.
    pub name: Spanned<PartitionName>,

    /// The partition's size, such as `512MiB`, or `rest` for the space the
    /// other partitions leave (at most one partition).
    pub size: Spanned<PartitionSize>,

    /// What the partition is for; sets its type GUID (GPT) or type byte
    /// (MBR). Defaults to `linux`.
    #[serde(rename = "type", default)]
    pub kind: Spanned<PartitionType>,

    /// The filesystem to create. Defaults to `vfat` for `esp`, `swap` for
    /// `swap`, `none` for `bios-boot` and `ext4` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Spanned<Filesystem>>,

    /// The filesystem label; `/etc/fstab` mounts by it. At most 16 bytes for
    /// ext4, 12 for xfs and 11 for vfat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Spanned<Label>>,

    /// Where the filesystem is mounted in the image, such as `/` or
    /// `/boot/efi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<Spanned<Mountpoint>>,

    /// Mount options for `/etc/fstab`. Defaults to `defaults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Spanned<MountOptions>>,
}

/// The headroom of an `auto`-sized filesystem when `disk.headroom` is not
/// given. Measured: the first boot of `manifests/debian-cloud.yaml` on a
/// disk of the image's size (cloud-init, one ssh login) writes about
/// 30 MiB, 16 MiB of it the journal (journald allocates 8 MiB for the
/// system's file and 8 MiB for each user's); 32 MiB left users 2 MiB
/// after it. 64 MiB leaves them about as much as the first boot took.
pub const DEFAULT_HEADROOM_BYTES: u64 = 64 << 20;

impl Disk {
    /// The free space an `auto`-sized filesystem is given.
    pub fn headroom_bytes(&self) -> u64 {
        self.headroom
            .as_ref()
            .map_or(DEFAULT_HEADROOM_BYTES, |h| h.value.bytes())
    }
}

impl Partition {
    /// The filesystem this partition gets: the one written, or the default
    /// for its type.
    pub fn effective_filesystem(&self) -> Filesystem {
        match &self.filesystem {
            Some(fs) => fs.value,
            None => self.kind.default_filesystem(),
        }
    }
}

/// What a partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionType {
    /// A Linux filesystem (the root, or any other).
    #[default]
    Linux,
    /// The EFI system partition, holding the UEFI bootloader; vfat.
    Esp,
    /// The BIOS boot partition GRUB needs on GPT disks; no filesystem.
    BiosBoot,
    /// Swap space.
    Swap,
    /// An extended boot loader partition (`/boot` shared between systems).
    Xbootldr,
    /// A Linux `/home` partition.
    Home,
    /// A Linux `/srv` partition.
    Srv,
    /// A Linux `/var` partition.
    Var,
    /// A Linux `/tmp` partition.
    Tmp,
    /// An LVM physical volume.
    Lvm,
    /// A Linux software RAID member.
    Raid,
}

impl PartitionType {
    /// The filesystem a partition of this type gets when none is written.
    pub fn default_filesystem(self) -> Filesystem {
        match self {
            PartitionType::Esp => Filesystem::Vfat,
            PartitionType::Swap => Filesystem::Swap,
            PartitionType::BiosBoot | PartitionType::Lvm | PartitionType::Raid => Filesystem::None,
            _ => Filesystem::Ext4,
        }
    }

    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionType::Linux => "linux",
            PartitionType::Esp => "esp",
            PartitionType::BiosBoot => "bios-boot",
            PartitionType::Swap => "swap",
            PartitionType::Xbootldr => "xbootldr",
            PartitionType::Home => "home",
            PartitionType::Srv => "srv",
            PartitionType::Var => "var",
            PartitionType::Tmp => "tmp",
            PartitionType::Lvm => "lvm",
            PartitionType::Raid => "raid",
        }
    }
}

/// A filesystem kiln can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// ext4, the default; growable online.
    Ext4,
    /// XFS (needs `mkfs.xfs` on the host).
    Xfs,
    /// FAT32, for the EFI system partition.
    Vfat,
    /// Swap space.
    Swap,
    /// No filesystem: the partition is left empty.
    None,
}

impl Filesystem {
    /// The longest label this filesystem stores, in bytes.
    pub fn max_label_bytes(self) -> Option<usize> {
        match self {
            Filesystem::Ext4 => Some(16),
            Filesystem::Xfs => Some(12),
            Filesystem::Vfat => Some(11),
            Filesystem::Swap => Some(15),
            Filesystem::None => None,
        }
    }

    /// Whether a filesystem of this kind can be mounted somewhere.
    pub fn is_mountable(self) -> bool {
        matches!(self, Filesystem::Ext4 | Filesystem::Xfs | Filesystem::Vfat)
    }

    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Xfs => "xfs",
            Filesystem::Vfat => "vfat",
            Filesystem::Swap => "swap",
            Filesystem::None => "none",
        }
    }
}

/// A file format to write the image in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A raw disk or filesystem image, byte for byte.
    Raw,
    /// QEMU copy-on-write v2, what OpenStack Glance and libvirt prefer.
    Qcow2,
    /// A tar archive of the finished tree.
    Tar,
    /// A Microsoft VHD (Azure), fixed size.
    Vhd,
    /// A Microsoft VHDX (Hyper-V).
    Vhdx,
    /// A VMware disk.
    Vmdk,
    /// A compressed read-only squashfs of the tree.
    Squashfs,
    /// A deploy ramdisk: `<name>.kernel` and `<name>.initramfs`, the whole
    /// tree as a compressed cpio archive with systemd as `/init`, so the
    /// machine runs from RAM (as Ironic's agent ramdisks do). Needs a
    /// kernel in the image (the `vm` element, or a `linux-image-*`
    /// package); no `disk` section is needed.
    Ramdisk,
}

/// Settings of the `ramdisk` output.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ramdisk {
    /// How the initramfs is compressed: `zstd` (the default; fast to
    /// write and to unpack) or `gzip` (for kernels and boot loaders older
    /// than Linux 5.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Spanned<RamdiskCompression>>,

    /// Absolute paths left out of the initramfs (not out of the image's
    /// other outputs), each with everything below it; `*` matches within
    /// one path component: `/usr/share/doc`, `/usr/share/locale/*`,
    /// `/usr/lib/modules/*/kernel/sound`. A ramdisk is held in RAM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Spanned<String>>,

    /// The largest the initramfs file may be, such as `400MiB`. A larger
    /// one fails the build, naming the biggest directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Spanned<Size>>,

    /// Added to the kernel command line when `kiln boot` and `kiln test`
    /// boot the ramdisk (after `console=ttyS0`), and recorded in the
    /// report for the machines that boot it over the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Spanned<String>>,
}

impl Ramdisk {
    /// The compression, `zstd` when none is written.
    pub fn compression(&self) -> RamdiskCompression {
        self.compression
            .as_ref()
            .map_or(RamdiskCompression::Zstd, |c| c.value)
    }
}

/// How a ramdisk's initramfs is compressed: as the kernel unpacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RamdiskCompression {
    /// Zstandard (Linux 5.9 and later).
    #[default]
    Zstd,
    /// gzip, which every kernel reads.
    Gzip,
}

impl RamdiskCompression {
    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            RamdiskCompression::Zstd => "zstd",
            RamdiskCompression::Gzip => "gzip",
        }
    }
}

/// One check of `kiln test` in the booted image: exactly one of `run`,
/// `file` or `unit`, and optionally a `name` to report it by.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["run"]},
    {"required": ["file"], "not": {"anyOf": [{"required": ["exit"]}, {"required": ["output"]}, {"required": ["sudo"]}]}},
    {"required": ["unit"], "not": {"anyOf": [{"required": ["exit"]}, {"required": ["output"]}, {"required": ["sudo"]}]}}
]))]
pub struct ImageTest {
    /// What `kiln test` calls this check in its output. Defaults to the
    /// command, path or unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Spanned<String>>,

    /// A shell command run over ssh as the default user (with `sudo: true`,
    /// as root). It passes when it exits with `exit` and its output
    /// contains `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Spanned<String>>,

    /// The exit status `run` must end with. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Spanned<u8>>,

    /// Text that the output of `run` (stdout and stderr) must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Spanned<String>>,

    /// Run the command as root, with `sudo`. Defaults to `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<Spanned<bool>>,

    /// An absolute path that must exist in the booted image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Spanned<String>>,

    /// A systemd unit that must be active, such as `nginx.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Spanned<String>>,
}

/// What an [`ImageTest`] checks, once [`check()`](fn@check) has made sure
/// it names exactly one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestCheck<'a> {
    /// Run a command; it must exit with `exit` and print `output`.
    Run {
        /// The shell command.
        command: &'a str,
        /// The exit status it must end with.
        exit: u8,
        /// Text its output must contain.
        output: Option<&'a str>,
        /// Whether it runs as root through `sudo`.
        sudo: bool,
    },
    /// This path must exist.
    File(&'a str),
    /// This systemd unit must be active.
    Unit(&'a str),
}

impl ImageTest {
    /// What the test checks; `None` when it names none or several of
    /// `run`, `file` and `unit` (which [`check()`](fn@check) refuses).
    pub fn check(&self) -> Option<TestCheck<'_>> {
        match (&self.run, &self.file, &self.unit) {
            (Some(run), None, None) => Some(TestCheck::Run {
                command: run.value.as_str(),
                exit: self.exit.as_ref().map_or(0, |e| e.value),
                output: self.output.as_ref().map(|o| o.value.as_str()),
                sudo: self.sudo.as_ref().is_some_and(|s| s.value),
            }),
            (None, Some(file), None) => Some(TestCheck::File(file.value.as_str())),
            (None, None, Some(unit)) => Some(TestCheck::Unit(unit.value.as_str())),
            _ => None,
        }
    }

    /// The name `kiln test` reports the test by: its `name`, or what it
    /// checks.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.value.clone();
        }
        match self.check() {
            Some(TestCheck::Run { command, sudo, .. }) => {
                format!("run `{}{command}`", if sudo { "sudo " } else { "" })
            }
            Some(TestCheck::File(path)) => format!("file {path} exists"),
            Some(TestCheck::Unit(unit)) => format!("unit {unit} is active"),
            None => "test".to_string(),
        }
    }
}

/// Parses an imagefile's text into a [`Manifest`], or reports every problem
/// found. The one place kiln reads YAML.
///
/// Structural errors (bad YAML, a wrong type, an unknown key) stop the
/// parser at the first one; the rules of [`check`] run only on a manifest
/// that parsed, and report all their problems together.
pub fn parse(source: &Source) -> Result<Manifest, Problems> {
    source::parse_yaml(source)
}

/// Generates the imagefile's JSON schema (draft-07, which
/// yaml-language-server understands).
pub fn schema() -> serde_json::Value {
    // Subschemas are inlined: yaml-language-server completes a key whose
    // schema is only an `allOf: [$ref]` as a bare word, without `: `, and
    // shows the referenced type's description on hover instead of the
    // key's own.
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|settings| settings.inline_subschemas = true)
        .with_transform(tidy_for_editors)
        .into_generator();
    let schema = generator.into_root_schema_for::<Manifest>();
    schema.to_value()
}

/// A manifest that parsed and passed [`check`], with the warnings the
/// checks raised.
#[derive(Debug)]
pub struct Checked {
    /// The manifest.
    pub manifest: Manifest,
    /// Its file, for later diagnostics that point into it.
    pub source: Source,
    /// Problems that do not stop the build (a package listed twice).
    pub warnings: Problems,
}

/// Reads, parses and checks the imagefile at `path`: the first stage of
/// every command that takes a manifest. Fails with every problem found.
pub fn read(path: &std::path::Path) -> Result<Checked, Problems> {
    let source = load(path)?;
    let manifest = parse(&source)?;
    let problems = source.problems(check(&manifest));
    if problems.has_errors() {
        return Err(problems);
    }
    Ok(Checked {
        manifest,
        source,
        warnings: problems,
    })
}

/// Shapes the generated schema for editors.
///
/// - `null` is removed from optional keys: in an imagefile an absent key
///   means "the default", and `key: null` is refused by the parser, so
///   editors should not offer it either.
/// - Descriptions are unwrapped: a doc comment's line breaks are only
///   source formatting, but editors show each as a paragraph break.
pub(crate) fn tidy_for_editors(schema: &mut schemars::Schema) {
    use serde_json::Value;

    if let Some(Value::String(description)) = schema.get_mut("description") {
        *description = description
            .split("\n\n")
            .map(|paragraph| paragraph.replace('\n', " "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }

    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            schema.insert("type".into(), only);
        }
    }
    let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
    if let Some(Value::Array(alternatives)) = schema.get_mut("anyOf") {
        alternatives.retain(|v| !is_null(v));
        if alternatives.len() == 1 {
            let only = alternatives.remove(0);
            schema.remove("anyOf");
            schema.insert("allOf".into(), Value::Array(vec![only]));
        }
    }
    schemars::transform::transform_subschemas(&mut tidy_for_editors, schema);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_values_keep_their_spelling() {
        let text = "name: x\nbase: {distro: debian, release: 12}\nenvironment:\n  A: yes\n  B: 1.0\n  C: 0755\n  D: \"q\"\n";
        let manifest = parse(&Source::new("t.yaml", text)).expect("parses");
        let values: Vec<&str> = manifest
            .environment
            .values()
            .map(|v| v.0.as_str())
            .collect();
        assert_eq!(values, ["yes", "1.0", "0755", "q"]);
        assert_eq!(
            manifest.base.release.as_ref().map(|r| r.as_str()),
            Some("12")
        );
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let manifest = parse(&Source::new(
            "t.yaml",
            "name: x\nbase: {distro: debian, release: bookworm}\n",
        ))
        .expect("parses");
        assert_eq!(manifest.base.arch.value, Arch::Amd64);
        assert_eq!(manifest.disk.size.value, DiskSize::Auto);
        assert!(manifest.disk.table.is_none());
        assert_eq!(
            manifest.outputs.iter().map(|o| o.value).collect::<Vec<_>>(),
            [OutputFormat::Qcow2]
        );
    }

    #[test]
    fn spans_point_at_the_value() {
        let text = "name: demo\nbase: {distro: debian, release: bookworm}\n";
        let manifest = parse(&Source::new("t.yaml", text)).expect("parses");
        let span = manifest.name.span;
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "demo");
        let span = manifest.base.distro.span;
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "debian");
    }
}

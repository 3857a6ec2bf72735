//! The small values of an imagefile that check themselves when parsed.
//!
//! Sizes, labels, mountpoints and names each get a newtype whose only
//! constructor is its `FromStr`, so a `Label` in hand is a valid label. Each
//! one also describes itself to the JSON schema (pattern, length), so editors
//! flag a bad value before kiln ever sees it. A failed check is a
//! [`ValueError`]: what is wrong and what to write instead.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Separates the message from the help text when a [`ValueError`] travels
/// through serde's string-only custom errors (see [`ValueError::encode`]).
pub(crate) const HELP_SEPARATOR: char = '\u{1f}';

/// Why a value was rejected, and what the user should write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// What is wrong, naming the value.
    pub message: String,
    /// What to do about it.
    pub help: String,
}

impl ValueError {
    fn new(message: impl Into<String>, help: impl Into<String>) -> Self {
        ValueError {
            message: message.into(),
            help: help.into(),
        }
    }

    /// Packs message and help into the one string serde lets a
    /// deserializer carry; the diagnostics layer splits it again.
    pub(crate) fn encode(&self) -> String {
        format!("{}{HELP_SEPARATOR}{}", self.message, self.help)
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// Implements string (de)serialisation through `FromStr`/`Display` and a
/// JSON schema for a newtype that checks itself.
macro_rules! checked_string {
    ($ty:ident, $schema:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse()
                    .map_err(|e: ValueError| serde::de::Error::custom(e.encode()))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

/// Gives a `String` newtype its `as_str` and a `Display` that writes it as
/// it was parsed.
macro_rules! text_newtype {
    ($ty:ident) => {
        impl $ty {
            /// The value as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

// ---------------------------------------------------------------- sizes

/// Binary units kiln accepts, longest spelling first so `MiB` wins over `M`.
const SIZE_UNITS: [(&str, u64); 9] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
    ("B", 1),
];

/// Decimal units people write out of habit, and the binary unit we suggest.
const DECIMAL_UNITS: [(&str, &str); 8] = [
    ("kB", "KiB"),
    ("KB", "KiB"),
    ("MB", "MiB"),
    ("GB", "GiB"),
    ("TB", "TiB"),
    ("mb", "MiB"),
    ("gb", "GiB"),
    ("tb", "TiB"),
];

const SIZE_PATTERN: &str = r"^[1-9][0-9]*\s*(B|K|KiB|M|MiB|G|GiB|T|TiB)$";

/// A size in bytes, written with a binary unit: `512MiB`, `2GiB`, `1T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(u64);

impl Size {
    /// A size of exactly `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Size(bytes)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let trimmed = text.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(digits_end);
        let unit = unit.trim_start();
        let example = "write a whole number and a binary unit, such as `512MiB` or `2GiB`";
        if digits.is_empty() {
            return Err(ValueError::new(
                format!("`{text}` is not a size"),
                example.to_string(),
            ));
        }
        if unit.is_empty() {
            return Err(ValueError::new(
                format!("the size `{text}` has no unit"),
                format!("add a unit: `{digits}MiB` or `{digits}GiB`"),
            ));
        }
        if unit.starts_with('.') || unit.starts_with(',') {
            return Err(ValueError::new(
                format!("the size `{text}` is not a whole number"),
                "use a smaller unit instead of a fraction: `1536MiB`, not `1.5GiB`",
            ));
        }
        if let Some((_, binary)) = DECIMAL_UNITS.iter().find(|(decimal, _)| *decimal == unit) {
            return Err(ValueError::new(
                format!("`{unit}` is a decimal unit; kiln sizes are binary"),
                format!("write `{digits}{binary}`"),
            ));
        }
        let Some((_, multiplier)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(ValueError::new(
                format!("`{unit}` is not a size unit"),
                "use one of B, KiB, MiB, GiB or TiB (K, M, G and T mean the same)",
            ));
        };
        let number: u64 = digits.parse().map_err(|_| {
            ValueError::new(
                format!("the size `{text}` is too large"),
                "sizes must be below 16 EiB",
            )
        })?;
        if number == 0 {
            return Err(ValueError::new(
                format!("the size `{text}` is zero"),
                "give a size larger than zero",
            ));
        }
        number.checked_mul(*multiplier).map(Size).ok_or_else(|| {
            ValueError::new(
                format!("the size `{text}` is too large"),
                "sizes must be below 16 EiB",
            )
        })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest unit that divides the size exactly, so that
        // `Display` and `FromStr` round-trip.
        for (unit, multiplier) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0.is_multiple_of(multiplier) {
                return write!(f, "{}{unit}", self.0 / multiplier);
            }
        }
        write!(f, "{}B", self.0)
    }
}

checked_string!(
    Size,
    json_schema!({
        "type": "string",
        "pattern": SIZE_PATTERN,
        "description": "A size with a binary unit, such as `512MiB` or `2GiB`.",
        "examples": ["512MiB", "2GiB"]
    })
);

/// The size of a filesystem image or a whole disk: `auto` (just large enough
/// for the tree) or a fixed [`Size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskSize {
    /// Just large enough for the tree, plus a little headroom.
    #[default]
    Auto,
    /// Exactly this size.
    Fixed(Size),
}

impl FromStr for DiskSize {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text.trim() == "auto" {
            return Ok(DiskSize::Auto);
        }
        text.parse()
            .map(DiskSize::Fixed)
            .map_err(|e: ValueError| ValueError {
                help: format!("{}; or write `auto` for just large enough", e.help),
                ..e
            })
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSize::Auto => f.write_str("auto"),
            DiskSize::Fixed(size) => size.fmt(f),
        }
    }
}

checked_string!(
    DiskSize,
    json_schema!({
        "type": "string",
        "pattern": format!("^auto$|{SIZE_PATTERN}"),
        "description": "`auto` (just large enough for the tree) or a size such as `4GiB`.",
        "examples": ["auto", "4GiB"]
    })
);

/// The size of a partition: a fixed [`Size`], or `rest` for whatever the
/// disk has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionSize {
    /// Exactly this size.
    Fixed(Size),
    /// The space the other partitions leave.
    Rest,
}

impl FromStr for PartitionSize {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text.trim() == "rest" {
            return Ok(PartitionSize::Rest);
        }
        text.parse()
            .map(PartitionSize::Fixed)
            .map_err(|e: ValueError| ValueError {
                help: format!(
                    "{}; or write `rest` for the space the other partitions leave",
                    e.help
                ),
                ..e
            })
    }
}

impl fmt::Display for PartitionSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionSize::Rest => f.write_str("rest"),
            PartitionSize::Fixed(size) => size.fmt(f),
        }
    }
}

checked_string!(
    PartitionSize,
    json_schema!({
        "type": "string",
        "pattern": format!("^rest$|{SIZE_PATTERN}"),
        "description": "A size such as `512MiB`, or `rest` for the space the other partitions leave.",
        "examples": ["512MiB", "rest"]
    })
);

// ---------------------------------------------------------------- names

/// Checks a name made of ASCII letters, digits, `.`, `_` and `-` that starts
/// with a letter or digit. `what` names the thing in messages.
fn check_name(text: &str, what: &str, max_len: usize) -> Result<(), ValueError> {
    if text.is_empty() {
        return Err(ValueError::new(
            format!("the {what} is empty"),
            format!("write the {what} with letters, digits, `.`, `_` and `-`"),
        ));
    }
    if text.len() > max_len {
        return Err(ValueError::new(
            format!(
                "the {what} `{text}` is {} bytes long; at most {max_len} are allowed",
                text.len()
            ),
            format!("shorten the {what} to {max_len} characters"),
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ValueError::new(
            format!("the {what} `{text}` contains {}", describe_char(bad)),
            format!("use only letters, digits, `.`, `_` and `-` in the {what}"),
        ));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ValueError::new(
            format!("the {what} `{text}` does not start with a letter or digit"),
            format!("start the {what} with a letter or digit"),
        ));
    }
    Ok(())
}

/// A character named so that invisible ones (a tab, a space) are visible.
fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        c => format!("`{c}`"),
    }
}

/// Defines a name newtype: `$what` names it in messages, `$max` bounds its
/// length in bytes.
macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        text_newtype!($ty);

        impl FromStr for $ty {
            type Err = ValueError;
            fn from_str(text: &str) -> Result<Self, ValueError> {
                check_name(text, $what, $max)?;
                Ok($ty(text.to_string()))
            }
        }

        checked_string!(
            $ty,
            json_schema!({
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
                "minLength": 1,
                "maxLength": $max
            })
        );
    };
}

name_type!(
    /// The image's name; output files are called `<name>.<format>`.
    ImageName,
    "image name",
    64
);
name_type!(
    /// The name of an element: a directory on the element search path.
    ElementName,
    "element name",
    128
);
name_type!(
    /// The name of a partition; on GPT it becomes the partition's name.
    PartitionName,
    "partition name",
    36
);
name_type!(
    /// The name of an extra apt repository: the lock names the repository
    /// by it, and the image's apt source is `<name>.sources`.
    RepositoryName,
    "repository name",
    64
);
name_type!(
    /// An apt suite: a directory below the archive's `dists/`, such as
    /// `bookworm-backports` or `stable`.
    SuiteName,
    "suite name",
    64
);
name_type!(
    /// An archive component, such as `main`, `contrib` or `universe`.
    Component,
    "component",
    64
);
/// A distribution release: a code name (`bookworm`) or number (`9`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release(String);

impl FromStr for Release {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        check_name(text, "release", 64)?;
        Ok(Release(text.to_string()))
    }
}

text_newtype!(Release);

// YAML reads `release: 12` as a number; kiln takes it as the text "12", and
// the schema must not make editors flag it.
checked_string!(
    Release,
    json_schema!({
        "type": ["string", "integer"],
        "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        "minLength": 1,
        "maxLength": 64,
        "examples": ["bookworm", "noble", "9"]
    })
);

/// The name of a package in the base distribution's archive, optionally
/// qualified with an architecture (`libc6:amd64`) or, as apt writes it,
/// with the suite to take it from (`linux-image-amd64/bookworm-backports`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName(String);

impl PackageName {
    /// The package's name alone, without `:arch` or `/suite`.
    pub fn name(&self) -> &str {
        let end = self.0.find([':', '/']).unwrap_or(self.0.len());
        &self.0[..end]
    }

    /// The suite after `/`, when the package is asked for from one.
    pub fn suite(&self) -> Option<&str> {
        self.0.split_once('/').map(|(_, suite)| suite)
    }
}

impl FromStr for PackageName {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let help = "package names are made of letters, digits, `+`, `.`, `_` and `-`, \
                    optionally followed by `:arch` or by `/suite` (as in \
                    `linux-image-amd64/bookworm-backports`)";
        let (rest, suite) = match text.split_once('/') {
            Some((rest, suite)) => (rest, Some(suite)),
            None => (text, None),
        };
        let (name, arch) = match rest.split_once(':') {
            Some((name, arch)) => (name, Some(arch)),
            None => (rest, None),
        };
        let valid_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-'));
        let valid_arch = arch.is_none_or(|a| {
            !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        let valid_suite = suite.is_none_or(|s| check_name(s, "suite name", 64).is_ok());
        if text.contains(['=', '(', '<', '>']) {
            return Err(ValueError::new(
                format!("`{text}` is not a package name"),
                "versions are pinned by `kiln lock`, not in the manifest; write the bare name",
            ));
        }
        if !valid_name || !valid_arch || !valid_suite {
            return Err(ValueError::new(
                format!("`{text}` is not a package name"),
                help,
            ));
        }
        Ok(PackageName(text.to_string()))
    }
}

text_newtype!(PackageName);

checked_string!(
    PackageName,
    json_schema!({
        "type": "string",
        "pattern": "^[A-Za-z0-9][A-Za-z0-9+._-]*(:[A-Za-z0-9-]+)?(/[A-Za-z0-9][A-Za-z0-9._-]*)?$",
        "description": "A package name, optionally with `:arch`, or with `/suite` to take it from that suite (such as backports).",
        "examples": ["openssh-server", "cloud-init", "linux-image-amd64/bookworm-backports"]
    })
);

/// The name of an environment variable handed to elements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

impl FromStr for EnvName {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let valid = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ValueError::new(
                format!("`{text}` is not an environment variable name"),
                "use letters, digits and `_`, starting with a letter or `_`, as in `DIB_RELEASE`",
            ));
        }
        Ok(EnvName(text.to_string()))
    }
}

text_newtype!(EnvName);

checked_string!(
    EnvName,
    json_schema!({
        "type": "string",
        "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"
    })
);

// ---------------------------------------------------------------- filesystem values

/// The longest label any filesystem kiln writes accepts (ext4: 16 bytes).
pub(crate) const LABEL_MAX_BYTES: usize = 16;

/// A filesystem label, at most 16 bytes of letters, digits, `.`, `_` and `-`
/// so that it can appear unquoted in `/etc/fstab` and on a kernel command
/// line. Filesystems with shorter limits (vfat: 11, xfs: 12) are checked
/// against the partition's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(String);

impl FromStr for Label {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        check_name(text, "label", LABEL_MAX_BYTES)?;
        Ok(Label(text.to_string()))
    }
}

text_newtype!(Label);

checked_string!(
    Label,
    json_schema!({
        "type": "string",
        "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        "minLength": 1,
        "maxLength": LABEL_MAX_BYTES,
        "description": "A filesystem label: at most 16 bytes for ext4, 12 for xfs, 11 for vfat.",
        "examples": ["cloudimg-rootfs"]
    })
);

/// An absolute, normalised path where a filesystem is mounted: `/`,
/// `/boot/efi`, `/var/lib/state`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mountpoint(String);

impl Mountpoint {
    /// Whether this is the root of the tree.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }
}

impl FromStr for Mountpoint {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        if !text.starts_with('/') {
            return Err(ValueError::new(
                format!("the mountpoint `{text}` is not an absolute path"),
                format!(
                    "start the mountpoint with `/`, as in `/{}`",
                    text.trim_start_matches("./")
                ),
            ));
        }
        if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValueError::new(
                format!("the mountpoint `{text}` contains {}", describe_char(bad)),
                "use a path without spaces or control characters",
            ));
        }
        if text == "/" {
            return Ok(Mountpoint(text.to_string()));
        }
        let normalised = text
            .split('/')
            .filter(|part| !part.is_empty() && *part != ".")
            .collect::<Vec<_>>();
        if normalised.contains(&"..") {
            return Err(ValueError::new(
                format!("the mountpoint `{text}` contains `..`"),
                "write the path without `..`",
            ));
        }
        let canonical = format!("/{}", normalised.join("/"));
        if canonical != text {
            return Err(ValueError::new(
                format!("the mountpoint `{text}` is not in normal form"),
                format!("write `{canonical}`"),
            ));
        }
        Ok(Mountpoint(text.to_string()))
    }
}

text_newtype!(Mountpoint);

checked_string!(
    Mountpoint,
    json_schema!({
        "type": "string",
        "pattern": "^/([^/\\s]+(/[^/\\s]+)*)?$",
        "description": "An absolute path such as `/`, `/boot/efi` or `/var/lib/state`.",
        "examples": ["/", "/boot/efi"]
    })
);

/// Mount options for `/etc/fstab`, comma separated: `defaults,noatime`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountOptions(String);

impl FromStr for MountOptions {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let valid = !text.is_empty()
            && text.split(',').all(|option| {
                !option.is_empty() && !option.chars().any(|c| c.is_whitespace() || c.is_control())
            });
        if !valid {
            return Err(ValueError::new(
                format!("`{text}` are not valid mount options"),
                "write options separated by commas, without spaces: `defaults,noatime`",
            ));
        }
        Ok(MountOptions(text.to_string()))
    }
}

text_newtype!(MountOptions);

checked_string!(
    MountOptions,
    json_schema!({
        "type": "string",
        "pattern": "^[^,\\s]+(,[^,\\s]+)*$",
        "examples": ["defaults", "defaults,noatime"]
    })
);

// ---------------------------------------------------------------- sources

/// Where to download from: an `http://`, `https://` or `file://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceUrl(String);

impl FromStr for SourceUrl {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let rest = ["http://", "https://", "file://"]
            .iter()
            .find_map(|scheme| text.strip_prefix(scheme));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.chars().any(char::is_whitespace) => {
                Ok(SourceUrl(text.to_string()))
            }
            Some(_) => Err(ValueError::new(
                format!("`{text}` is not a valid URL"),
                "write a URL without spaces, with a host or path after the scheme",
            )),
            None => Err(ValueError::new(
                format!("`{text}` is not an http, https or file URL"),
                "write a URL starting with `http://`, `https://` or `file://`",
            )),
        }
    }
}

text_newtype!(SourceUrl);

checked_string!(
    SourceUrl,
    json_schema!({
        "type": "string",
        "pattern": "^(https?|file)://\\S+$",
        "format": "uri"
    })
);

/// An OpenPGP key fingerprint: 40 hexadecimal digits (64 for a version 5
/// key), spaces allowed between groups as `gpg` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint as upper-case digits without spaces, as gpgv's
    /// status lines give it.
    pub fn normalised(&self) -> String {
        self.0
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect()
    }
}

impl FromStr for Fingerprint {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let digits: String = text.chars().filter(|c| *c != ' ').collect();
        if !matches!(digits.len(), 40 | 64) || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ValueError::new(
                format!("`{text}` is not an OpenPGP fingerprint"),
                "give the key's full fingerprint, 40 hexadecimal digits, as `gpg --show-keys --with-fingerprint KEYFILE` prints it",
            ));
        }
        Ok(Fingerprint(text.to_string()))
    }
}

text_newtype!(Fingerprint);

checked_string!(
    Fingerprint,
    json_schema!({
        "type": "string",
        "pattern": "^([0-9A-Fa-f] ?){40}(([0-9A-Fa-f] ?){24})?$"
    })
);

/// A SHA-256 digest written as 64 lowercase hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

impl FromStr for Sha256Hex {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ValueError::new(
                format!("`{text}` is not a SHA-256 digest"),
                "write the 64 hexadecimal digits that `sha256sum FILE` prints",
            ));
        }
        Ok(Sha256Hex(hex.to_ascii_lowercase()))
    }
}

text_newtype!(Sha256Hex);

checked_string!(
    Sha256Hex,
    json_schema!({
        "type": "string",
        "pattern": "^(sha256:)?[0-9a-fA-F]{64}$"
    })
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!("512MiB".parse::<Size>().unwrap().bytes(), 512 << 20);
        assert_eq!("2GiB".parse::<Size>().unwrap().bytes(), 2 << 30);
        assert_eq!("2G".parse::<Size>().unwrap().bytes(), 2 << 30);
        assert_eq!("1 TiB".parse::<Size>().unwrap().bytes(), 1 << 40);
        assert_eq!("4096B".parse::<Size>().unwrap().bytes(), 4096);
    }

    #[test]
    fn sizes_reject_what_users_get_wrong() {
        let err = "2GB".parse::<Size>().unwrap_err();
        assert_eq!(err.help, "write `2GiB`");
        assert!(
            "512"
                .parse::<Size>()
                .unwrap_err()
                .message
                .contains("no unit")
        );
        assert!(
            "1.5GiB"
                .parse::<Size>()
                .unwrap_err()
                .message
                .contains("whole number")
        );
        assert!("0MiB".parse::<Size>().unwrap_err().message.contains("zero"));
        assert!(
            "99999999999999TiB"
                .parse::<Size>()
                .unwrap_err()
                .message
                .contains("too large")
        );
        assert!("lots".parse::<Size>().is_err());
        assert!(
            "5 parsecs"
                .parse::<Size>()
                .unwrap_err()
                .message
                .contains("not a size unit")
        );
    }

    #[test]
    fn partition_and_disk_sizes_accept_their_keywords() {
        assert_eq!(
            "rest".parse::<PartitionSize>().unwrap(),
            PartitionSize::Rest
        );
        assert_eq!("auto".parse::<DiskSize>().unwrap(), DiskSize::Auto);
        assert!(
            "auto"
                .parse::<PartitionSize>()
                .unwrap_err()
                .help
                .contains("`rest`")
        );
    }

    #[test]
    fn labels_are_bounded_and_plain() {
        assert!("cloudimg-rootfs".parse::<Label>().is_ok());
        assert!(
            "a-label-that-is-too-long"
                .parse::<Label>()
                .unwrap_err()
                .message
                .contains("at most 16")
        );
        assert!(
            "my label"
                .parse::<Label>()
                .unwrap_err()
                .message
                .contains("a space")
        );
        assert!("".parse::<Label>().is_err());
    }

    #[test]
    fn mountpoints_are_absolute_and_normal() {
        assert!("/".parse::<Mountpoint>().unwrap().is_root());
        assert!("/boot/efi".parse::<Mountpoint>().is_ok());
        assert_eq!(
            "boot".parse::<Mountpoint>().unwrap_err().help,
            "start the mountpoint with `/`, as in `/boot`"
        );
        assert_eq!(
            "/var/".parse::<Mountpoint>().unwrap_err().help,
            "write `/var`"
        );
        assert_eq!(
            "//var".parse::<Mountpoint>().unwrap_err().help,
            "write `/var`"
        );
        assert!("/var/../etc".parse::<Mountpoint>().is_err());
    }

    #[test]
    fn package_names_refuse_version_pins() {
        assert!("openssh-server".parse::<PackageName>().is_ok());
        assert!("libc6:amd64".parse::<PackageName>().is_ok());
        assert!("g++".parse::<PackageName>().is_ok());
        assert!(
            "curl=7.88"
                .parse::<PackageName>()
                .unwrap_err()
                .help
                .contains("kiln lock")
        );
        assert!("-rf".parse::<PackageName>().is_err());
    }

    proptest! {
        #[test]
        fn size_display_round_trips(bytes in 1u64..(1 << 50)) {
            let size = Size::from_bytes(bytes);
            prop_assert_eq!(size.to_string().parse::<Size>().unwrap(), size);
        }

        #[test]
        fn size_parsing_never_panics(text in "\\PC*") {
            let _ = text.parse::<Size>();
            let _ = text.parse::<PartitionSize>();
            let _ = text.parse::<Mountpoint>();
            let _ = text.parse::<Label>();
        }

        #[test]
        fn every_unit_scales(n in 1u64..1024, unit_index in 0usize..SIZE_UNITS.len()) {
            let (unit, multiplier) = SIZE_UNITS[unit_index];
            prop_assert_eq!(format!("{n}{unit}").parse::<Size>().unwrap().bytes(), n * multiplier);
        }
    }
}

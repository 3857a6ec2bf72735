//! The packages an archive offers for one architecture, read from its
//! `Packages` indexes and looked up by name and by virtual name.
//!
//! `kiln lock` reads one `Packages` file per suite and component (bookworm,
//! bookworm-updates, the security suite, …) for the image's architecture and
//! needs, for every package, what the resolver decides with (version,
//! relationships, `Essential`, `Priority`, `Multi-Arch`) and what the lock
//! pins (`Filename`, `Size`, `SHA256`). [`PackageIndex`] owns that data, so it
//! outlives the texts it was read from, and answers the two questions the
//! resolver asks: which versions of a package exist (newest first), and
//! which packages provide a virtual name. A paragraph kiln cannot read fully
//! is an error naming the file, the line and the package, never a package
//! silently left out: a lock resolved from a partly read index would be
//! missing packages nobody asked to leave out.
//!
//! An index for Debian's main archive is read from a 50 MB text into what
//! resolution needs, one paragraph at a time
//! ([`PackageIndex::add_repository_from`] takes any reader), and a
//! package's relationship fields stay as written until the resolver first
//! asks for them: it visits a few hundred of the 60 000 packages, and the
//! parsed relationships of all of them would be most of the index's
//! memory.

use std::fmt;
use std::io::BufRead;
use std::sync::{Arc, OnceLock};

use super::deb822::{
    self, Deb822Error, Dependency, Paragraph, ParagraphReader, Provided, RelationshipError,
    excerpt, is_package_name,
};
use super::version::{Version, VersionError};

/// apt's pin priority of a repository nothing else says about.
pub const DEFAULT_PIN: i32 = 500;

/// Characters in a hex-encoded SHA-256 digest.
const SHA256_HEX_CHARS: usize = 64;

/// The fewest packages room is made for at a time in an index.
const PACKAGES_GROWTH_MIN: usize = 1024;

/// The architecture name that marks architecture-independent packages; the
/// `binary-amd64` index lists them alongside the `amd64` ones.
pub const ARCHITECTURE_ALL: &str = "all";

/// One binary package version from a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `Package`: the package name.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Architecture`: the index's architecture or `all` (shared by every
    /// package of the index).
    pub architecture: Arc<str>,
    /// `Multi-Arch`, [`MultiArch::No`] when absent.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority`, if given.
    pub priority: Option<Priority>,
    /// `Pre-Depends`, `Depends`, `Conflicts` and `Breaks`; read them with
    /// [`Package::pre_depends`] and its siblings.
    relationships: Relationships,
    /// `Provides`: the virtual packages this one stands in for.
    pub provides: Box<[Provided]>,
    /// `Filename`: the `.deb`'s path below the mirror's root, such as
    /// `pool/main/d/dpkg/dpkg_1.21.22_amd64.deb`.
    pub filename: Box<str>,
    /// `Size`: the `.deb`'s size in bytes.
    pub size: u64,
    /// `SHA256`: the `.deb`'s digest.
    pub sha256: Sha256,
    /// The repository the text it was read from belongs to, as the caller
    /// numbered it in [`PackageIndex::add_repository`] (0 for
    /// [`PackageIndex::add_packages`]).
    pub repository: usize,
    /// apt's pin priority of that repository: the candidate of a package
    /// is its version of the highest pin, then the newest.
    pub pin: i32,
}

/// A SHA-256 digest, kept as its 32 bytes: an index holds one per package,
/// and as text each would cost three times the memory.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// The digest written as 64 hex digits, in either case.
    pub fn from_hex(hex: &str) -> Option<Sha256> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(Sha256(bytes))
    }
}

/// As 64 lower-case hex digits, as the lock writes it.
impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// The relationship fields of a package the resolver reads, as written
/// (and checked when the paragraph was read), parsed the first time one is
/// asked for.
#[derive(Debug, Clone, Default)]
struct Relationships {
    /// The values in [`RELATIONSHIP_FIELDS`] order, joined by
    /// [`RELATIONSHIP_SEPARATOR`] (an absent field is empty); `None` when
    /// all four are absent, as for most packages' `Conflicts` and
    /// `Breaks`, so the common case costs one allocation.
    written: Option<Box<str>>,
    parsed: OnceLock<Box<[Vec<Dependency>; 4]>>,
}

/// Between the values in [`Relationships::written`]: a character no
/// relationship field can hold, since [`deb822::parse_relationships`]
/// accepts only names, versions and restriction lists.
const RELATIONSHIP_SEPARATOR: char = '\0';

/// The fields [`Relationships`] holds, in its order.
const RELATIONSHIP_FIELDS: [&str; 4] = ["Pre-Depends", "Depends", "Conflicts", "Breaks"];

/// Two packages' relationships are the same when they are written the same,
/// whether or not either has been parsed yet.
impl PartialEq for Relationships {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl Eq for Relationships {}

impl Relationships {
    /// Keeps `values`, in [`RELATIONSHIP_FIELDS`] order, each already
    /// accepted by [`deb822::parse_relationships`].
    fn new(values: [Option<&str>; 4]) -> Relationships {
        let written = values.iter().any(Option::is_some).then(|| {
            values
                .map(Option::unwrap_or_default)
                .join(&RELATIONSHIP_SEPARATOR.to_string())
                .into_boxed_str()
        });
        Relationships {
            written,
            parsed: OnceLock::new(),
        }
    }

    /// The parsed values, in [`RELATIONSHIP_FIELDS`] order.
    fn parsed(&self) -> &[Vec<Dependency>; 4] {
        self.parsed.get_or_init(|| {
            let mut values = self
                .written
                .as_deref()
                .unwrap_or_default()
                .split(RELATIONSHIP_SEPARATOR);
            Box::new(std::array::from_fn(|_| {
                values
                    .next()
                    // `read_package` parsed this very text without error
                    // before keeping it, so nothing is lost here.
                    .and_then(|value| deb822::parse_relationships(value).ok())
                    .unwrap_or_default()
            }))
        })
    }
}

/// A package's `Multi-Arch` field: how it may satisfy dependencies from
/// packages of other architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MultiArch {
    /// No field, or `no`: only same-architecture dependencies.
    #[default]
    No,
    /// `same`: co-installable with itself for other architectures.
    Same,
    /// `foreign`: satisfies dependencies from any architecture.
    Foreign,
    /// `allowed`: satisfies dependencies qualified with `:any`.
    Allowed,
}

/// A package's `Priority` (Debian Policy 2.5). Ordered from most to least
/// important, so `Priority::Required < Priority::Optional`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// `required`: needed for the system to work; debootstrap installs
    /// all of them.
    Required,
    /// `important`.
    Important,
    /// `standard`.
    Standard,
    /// `optional`.
    Optional,
    /// `extra`: deprecated, means the same as `optional`.
    Extra,
}

/// A package that provides a virtual name, as [`PackageIndex::providers`]
/// returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider<'i> {
    /// The providing package.
    pub package: &'i Package,
    /// The version it provides the name at, if its `Provides` gives one.
    pub version: Option<&'i Version>,
}

/// Every binary package available for one architecture, from one or more
/// `Packages` texts.
#[derive(Debug, Clone)]
pub struct PackageIndex {
    architecture: Arc<str>,
    /// [`ARCHITECTURE_ALL`], shared by the packages that have it.
    all: Arc<str>,
    /// Every package, in the order read.
    packages: Vec<Package>,
    /// Every position in `packages`, sorted by name, then candidate first
    /// (see [`PackageIndex::versions`]); looked up by binary search, which
    /// costs a word per package where a map by name would cost a copy of
    /// every name and a list per name.
    by_name: Vec<usize>,
    /// `(position in packages, position in its provides)` of every
    /// `Provides` entry, sorted by virtual name, then by provider name,
    /// then newest version first.
    providers: Vec<(usize, usize)>,
}

/// A `Packages` text that kiln cannot read completely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The text is not well-formed deb822.
    #[error("{origin}: {error}")]
    Syntax {
        /// Where the text came from, as the caller named it.
        origin: String,
        /// What is wrong and on which line.
        error: Deb822Error,
    },
    /// A paragraph is well-formed but is not a usable package entry.
    #[error("{origin}, line {line}: {}{kind}", package_prefix(.package.as_deref()))]
    Package {
        /// Where the text came from, as the caller named it.
        origin: String,
        /// 1-based line of the offending field, or of the paragraph when a
        /// field is missing.
        line: usize,
        /// The paragraph's `Package`, when it has a readable one.
        package: Option<String>,
        /// What is wrong; boxed because relationship errors are large and
        /// every `Result` carrying an `IndexError` would pay for them.
        kind: Box<PackageErrorKind>,
    },
    /// The text could not be read to its end.
    #[error("{origin}: cannot read it: {error}")]
    Read {
        /// Where the text came from, as the caller named it.
        origin: String,
        /// What failed.
        error: String,
    },
    /// The text gives a version another repository gives with other
    /// contents.
    #[error(transparent)]
    Differs(Box<SameVersionDiffers>),
}

/// Two repositories give the same package at the same version with
/// different contents: which one apt installs would depend on the order it
/// reads them, and the lock could not say which file the image holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{origin} gives {package} {version} ({architecture}) with SHA-256 {sha256}, \
     but another repository gives the same version with SHA-256 {earlier_sha256}"
)]
pub struct SameVersionDiffers {
    /// The text read second.
    pub origin: String,
    /// The package.
    pub package: String,
    /// Its version.
    pub version: String,
    /// Its architecture.
    pub architecture: String,
    /// Its digest in `origin`.
    pub sha256: String,
    /// The repository (as the caller numbered it) read first.
    pub earlier_repository: usize,
    /// Its digest there.
    pub earlier_sha256: String,
}

/// The ways a `Packages` paragraph can be unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageErrorKind {
    /// A field every package entry must have is absent.
    #[error("the required field `{0}` is missing")]
    MissingField(&'static str),
    /// A `Package` value that breaks dpkg's naming rule.
    #[error("`{0}` is not a package name")]
    InvalidName(String),
    /// An `Architecture` value that is not one architecture name.
    #[error("`{0}` is not an architecture name")]
    InvalidArchitecture(String),
    /// A `Version` that is not a Debian version.
    #[error("`Version`: {0}")]
    InvalidVersion(VersionError),
    /// A relationship field that does not parse.
    #[error("`{field}`: {error}")]
    InvalidRelationship {
        /// The field, such as `Depends`.
        field: &'static str,
        /// What is wrong with it.
        error: RelationshipError,
    },
    /// A `Size` that is not a whole number of bytes.
    #[error("`Size` must be a whole number of bytes, not `{0}`")]
    InvalidSize(String),
    /// A `SHA256` that is not 64 hex digits.
    #[error("`SHA256` must be {SHA256_HEX_CHARS} hexadecimal digits, not `{0}`")]
    InvalidSha256(String),
    /// A `Multi-Arch` other than `no`, `same`, `foreign` or `allowed`.
    #[error("`Multi-Arch` must be `no`, `same`, `foreign` or `allowed`, not `{0}`")]
    InvalidMultiArch(String),
    /// A `Priority` outside Policy's list.
    #[error(
        "`Priority` must be `required`, `important`, `standard`, `optional` or `extra`, not `{0}`"
    )]
    InvalidPriority(String),
    /// An `Essential` other than `yes` or `no`.
    #[error("`Essential` must be `yes` or `no`, not `{0}`")]
    InvalidEssential(String),
}

/// `package `foo`: ` when the name is known, for [`IndexError`]'s message.
fn package_prefix(package: Option<&str>) -> String {
    package.map_or_else(String::new, |name| format!("package `{name}`: "))
}

impl IndexError {
    /// Where the text with the error came from, as the caller named it.
    pub fn origin(&self) -> &str {
        match self {
            IndexError::Syntax { origin, .. }
            | IndexError::Package { origin, .. }
            | IndexError::Read { origin, .. } => origin,
            IndexError::Differs(differs) => &differs.origin,
        }
    }

    /// The 1-based line the error is about; 0 for [`IndexError::Differs`]
    /// and [`IndexError::Read`].
    pub fn line(&self) -> usize {
        match self {
            IndexError::Syntax { error, .. } => error.line(),
            IndexError::Package { line, .. } => *line,
            // About a whole paragraph, which the text does not say where,
            // or about the text as a whole (its own message names the
            // line when it knows it).
            IndexError::Differs(_) | IndexError::Read { .. } => 0,
        }
    }

    /// The package the error is about, when its name could be read.
    pub fn package(&self) -> Option<&str> {
        match self {
            IndexError::Syntax { .. } | IndexError::Read { .. } => None,
            IndexError::Differs(differs) => Some(&differs.package),
            IndexError::Package { package, .. } => package.as_deref(),
        }
    }
}

impl PackageIndex {
    /// An empty index for `architecture` (such as `amd64`); packages of
    /// that architecture and of `all` are kept, all others skipped.
    pub fn new(architecture: &str) -> PackageIndex {
        PackageIndex {
            architecture: architecture.into(),
            all: ARCHITECTURE_ALL.into(),
            packages: Vec::new(),
            by_name: Vec::new(),
            providers: Vec::new(),
        }
    }

    /// Reads one `Packages` text into a new index; see
    /// [`PackageIndex::add_packages`].
    pub fn from_packages(
        architecture: &str,
        origin: &str,
        text: &str,
    ) -> Result<PackageIndex, IndexError> {
        let mut index = PackageIndex::new(architecture);
        index.add_packages(origin, text)?;
        Ok(index)
    }

    /// Adds the packages of one `Packages` text (already decompressed and
    /// hash-checked) as repository 0 at apt's default pin priority, 500;
    /// see [`PackageIndex::add_repository`].
    pub fn add_packages(&mut self, origin: &str, text: &str) -> Result<usize, IndexError> {
        self.add_repository(origin, text, 0, DEFAULT_PIN)
    }

    /// Adds the packages of one `Packages` text (already decompressed and
    /// hash-checked) of `repository` (the caller's number for it), whose
    /// packages have apt pin priority `pin`, and returns how many were
    /// added. `origin` names the text in error messages, e.g. its URL.
    /// A package whose pin is negative is never installed, as in apt, so
    /// it is not added at all.
    ///
    /// Paragraphs for other architectures are skipped after reading only
    /// their `Architecture`, so a mistake in a package kiln can never use
    /// does not stop the lock. A package whose name, version and
    /// architecture are already in the index is skipped too: like apt with
    /// one version in two suites, the first text read wins, so callers add
    /// texts in order of preference. On error the index is left unchanged.
    pub fn add_repository(
        &mut self,
        origin: &str,
        text: &str,
        repository: usize,
        pin: i32,
    ) -> Result<usize, IndexError> {
        self.add_repository_from(origin, text.as_bytes(), repository, pin)
    }

    /// [`PackageIndex::add_repository`] for a text read from `reader` (a
    /// file, a decompressing reader) one paragraph at a time, so the text
    /// is never in memory whole. A read error, or text that is not UTF-8,
    /// is an [`IndexError::Read`].
    pub fn add_repository_from(
        &mut self,
        origin: &str,
        reader: impl BufRead,
        repository: usize,
        pin: i32,
    ) -> Result<usize, IndexError> {
        let first_new = self.packages.len();
        let read = self.read_repository(origin, reader, repository, pin);
        let differs = read.and_then(|()| self.drop_duplicates(origin, first_new));
        if let Err(error) = differs {
            // Leave the index as it was before this text.
            self.packages.truncate(first_new);
            return Err(error);
        }
        let added = self.packages.len() - first_new;

        // Sorting here rather than at lookup keeps lookups cheap and their
        // order independent of the order the texts listed packages in.
        self.by_name.extend(first_new..self.packages.len());
        let packages = &self.packages;
        let architecture = &self.architecture;
        self.by_name.sort_by(|&a, &b| {
            let (a_package, b_package) = (&packages[a], &packages[b]);
            a_package
                .name
                .cmp(&b_package.name)
                .then_with(|| b_package.pin.cmp(&a_package.pin))
                .then_with(|| b_package.version.cmp(&a_package.version))
                .then_with(|| {
                    // The architecture-specific build before an `all` one
                    // of the same version.
                    (a_package.architecture != *architecture)
                        .cmp(&(b_package.architecture != *architecture))
                })
                .then(a.cmp(&b))
        });
        for (position, package) in packages.iter().enumerate().skip(first_new) {
            self.providers
                .extend((0..package.provides.len()).map(|provision| (position, provision)));
        }
        self.providers
            .sort_by(|&(a, a_provision), &(b, b_provision)| {
                let (a_package, b_package) = (&packages[a], &packages[b]);
                a_package.provides[a_provision]
                    .package
                    .cmp(&b_package.provides[b_provision].package)
                    .then_with(|| a_package.name.cmp(&b_package.name))
                    .then_with(|| b_package.version.cmp(&a_package.version))
                    .then_with(|| a_package.architecture.cmp(&b_package.architecture))
                    .then(a.cmp(&b))
            });
        Ok(added)
    }

    /// Adds each package `reader` gives to the end of `packages` (none
    /// when `pin` is negative), unindexed.
    fn read_repository(
        &mut self,
        origin: &str,
        reader: impl BufRead,
        repository: usize,
        pin: i32,
    ) -> Result<(), IndexError> {
        let mut reader = ParagraphReader::new(reader);
        loop {
            let paragraphs = reader.next_text().map_err(|error| IndexError::Read {
                origin: origin.to_string(),
                error: error.to_string(),
            })?;
            let Some(paragraphs) = paragraphs else {
                return Ok(());
            };
            for paragraph in paragraphs {
                let paragraph = paragraph.map_err(|error| IndexError::Syntax {
                    origin: origin.to_string(),
                    error,
                })?;
                let Some(mut package) = self.read_package(origin, &paragraph)? else {
                    continue;
                };
                // A package whose pin is negative is never installed, but
                // its text must still read.
                if pin < 0 {
                    continue;
                }
                package.repository = repository;
                package.pin = pin;
                let position = self.packages.len();
                if position == self.packages.capacity() {
                    // An archive's packages are tens of megabytes: growing
                    // by a quarter instead of doubling keeps the unused
                    // tail small.
                    self.packages
                        .reserve_exact(position / 4 + PACKAGES_GROWTH_MIN);
                }
                self.packages.push(package);
            }
        }
    }

    /// Takes out of the packages from `first_new` on (one text's, not yet
    /// indexed) those whose name, version and architecture the index or
    /// the text already has: like apt with one version in two suites, the
    /// first read wins. Another repository's version with other contents
    /// is an error, the first in the text's order.
    fn drop_duplicates(&mut self, origin: &str, first_new: usize) -> Result<(), IndexError> {
        let same = |a: &Package, b: &Package| {
            a.name == b.name && a.version == b.version && a.architecture == b.architecture
        };
        let new = &self.packages[first_new..];
        let mut keep = vec![true; new.len()];
        let mut by_name: Vec<usize> = (0..new.len()).collect();
        by_name.sort_by(|&a, &b| new[a].name.cmp(&new[b].name).then(a.cmp(&b)));
        for group in by_name.chunk_by(|&a, &b| new[a].name == new[b].name) {
            for (later, &b) in group.iter().enumerate() {
                if group[..later]
                    .iter()
                    .any(|&a| keep[a] && same(&new[a], &new[b]))
                {
                    keep[b] = false;
                }
            }
        }
        for (position, package) in new.iter().enumerate() {
            for known in self.versions(&package.name) {
                if !same(known, package) {
                    continue;
                }
                keep[position] = false;
                if known.repository != package.repository && known.sha256 != package.sha256 {
                    return Err(IndexError::Differs(Box::new(SameVersionDiffers {
                        origin: origin.to_string(),
                        package: package.name.clone(),
                        version: package.version.to_string(),
                        architecture: package.architecture.to_string(),
                        sha256: package.sha256.to_string(),
                        earlier_repository: known.repository,
                        earlier_sha256: known.sha256.to_string(),
                    })));
                }
            }
        }
        let mut position = 0;
        self.packages.retain(|_| {
            let kept = position < first_new || keep[position - first_new];
            position += 1;
            kept
        });
        Ok(())
    }

    /// Reads one paragraph; `None` when it is for another architecture.
    fn read_package(
        &self,
        origin: &str,
        paragraph: &Paragraph<'_>,
    ) -> Result<Option<Package>, IndexError> {
        let fail = |line: usize, package: Option<&str>, kind| IndexError::Package {
            origin: origin.to_string(),
            line,
            package: package.map(str::to_string),
            kind: Box::new(kind),
        };
        let required = |name: &'static str, package: Option<&str>| {
            paragraph.field(name).ok_or_else(|| {
                fail(
                    paragraph.line(),
                    package,
                    PackageErrorKind::MissingField(name),
                )
            })
        };

        let name_field = required("Package", None)?;
        let name = name_field.value();
        if !is_package_name(name) {
            return Err(fail(
                name_field.line(),
                None,
                PackageErrorKind::InvalidName(excerpt(name)),
            ));
        }
        let package_name = Some(name);

        let architecture_field = required("Architecture", package_name)?;
        let architecture = architecture_field.value();
        let architecture = if architecture == &*self.architecture {
            Arc::clone(&self.architecture)
        } else if architecture == ARCHITECTURE_ALL {
            Arc::clone(&self.all)
        } else {
            if architecture.is_empty() || architecture.contains(char::is_whitespace) {
                return Err(fail(
                    architecture_field.line(),
                    package_name,
                    PackageErrorKind::InvalidArchitecture(excerpt(architecture)),
                ));
            }
            return Ok(None);
        };

        let version_field = required("Version", package_name)?;
        let version = Version::parse(version_field.value()).map_err(|error| {
            fail(
                version_field.line(),
                package_name,
                PackageErrorKind::InvalidVersion(error),
            )
        })?;

        let multi_arch = match paragraph.field("Multi-Arch") {
            None => MultiArch::No,
            Some(field) => match field.value() {
                "no" => MultiArch::No,
                "same" => MultiArch::Same,
                "foreign" => MultiArch::Foreign,
                "allowed" => MultiArch::Allowed,
                other => {
                    return Err(fail(
                        field.line(),
                        package_name,
                        PackageErrorKind::InvalidMultiArch(excerpt(other)),
                    ));
                }
            },
        };

        let essential = match paragraph.field("Essential") {
            None => false,
            Some(field) => match field.value() {
                "yes" => true,
                "no" => false,
                other => {
                    return Err(fail(
                        field.line(),
                        package_name,
                        PackageErrorKind::InvalidEssential(excerpt(other)),
                    ));
                }
            },
        };

        let priority = match paragraph.field("Priority") {
            None => None,
            Some(field) => Some(match field.value() {
                "required" => Priority::Required,
                "important" => Priority::Important,
                "standard" => Priority::Standard,
                "optional" => Priority::Optional,
                "extra" => Priority::Extra,
                other => {
                    return Err(fail(
                        field.line(),
                        package_name,
                        PackageErrorKind::InvalidPriority(excerpt(other)),
                    ));
                }
            }),
        };

        // Checked now, so a broken index fails the lock whether or not the
        // resolver comes to this package; kept as written until it does.
        let mut values = [None; 4];
        for (value, field_name) in values.iter_mut().zip(RELATIONSHIP_FIELDS) {
            let Some(field) = paragraph.field(field_name) else {
                continue;
            };
            deb822::parse_relationships(field.value()).map_err(|error| {
                fail(
                    field.line(),
                    package_name,
                    PackageErrorKind::InvalidRelationship {
                        field: field_name,
                        error,
                    },
                )
            })?;
            *value = Some(field.value());
        }
        let relationships = Relationships::new(values);

        let provides = match paragraph.field("Provides") {
            None => Box::default(),
            Some(field) => deb822::parse_provides(field.value())
                .map_err(|error| {
                    fail(
                        field.line(),
                        package_name,
                        PackageErrorKind::InvalidRelationship {
                            field: "Provides",
                            error,
                        },
                    )
                })?
                .into_boxed_slice(),
        };

        let filename = required("Filename", package_name)?.value().into();

        let size_field = required("Size", package_name)?;
        let size = size_field.value().parse::<u64>().map_err(|_| {
            fail(
                size_field.line(),
                package_name,
                PackageErrorKind::InvalidSize(excerpt(size_field.value())),
            )
        })?;

        let sha256_field = required("SHA256", package_name)?;
        let sha256 = Sha256::from_hex(sha256_field.value()).ok_or_else(|| {
            fail(
                sha256_field.line(),
                package_name,
                PackageErrorKind::InvalidSha256(excerpt(sha256_field.value())),
            )
        })?;

        Ok(Some(Package {
            name: name.to_string(),
            version,
            architecture,
            multi_arch,
            essential,
            priority,
            relationships,
            provides,
            filename,
            size,
            sha256,
            repository: 0,
            pin: DEFAULT_PIN,
        }))
    }

    /// The architecture this index was built for.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// How many package versions the index holds.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// Whether the index holds no packages.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Every package version, in the order the texts listed them.
    pub fn packages(&self) -> impl ExactSizeIterator<Item = &Package> + '_ {
        self.packages.iter()
    }

    /// Every version of the real package `name`, candidate first: highest
    /// pin priority first, then newest (for equal versions, the index's own
    /// architecture before `all`). Empty for a
    /// name no package has, including purely virtual names.
    pub fn versions(&self, name: &str) -> impl ExactSizeIterator<Item = &Package> + '_ {
        let name_of = |&position: &usize| self.packages[position].name.as_str();
        let start = self.by_name.partition_point(|p| name_of(p) < name);
        let end = start + self.by_name[start..].partition_point(|p| name_of(p) == name);
        self.by_name[start..end].iter().map(|&i| &self.packages[i])
    }

    /// apt's candidate version of the real package `name`: the newest of
    /// those with the highest pin priority.
    pub fn newest(&self, name: &str) -> Option<&Package> {
        self.versions(name).next()
    }

    /// Every package version whose `Provides` names `name`, ordered by
    /// package name and then newest version first.
    pub fn providers(&self, name: &str) -> impl ExactSizeIterator<Item = Provider<'_>> + '_ {
        let name_of = |&(position, provision): &(usize, usize)| {
            self.packages[position].provides[provision].package.as_str()
        };
        let start = self.providers.partition_point(|p| name_of(p) < name);
        let end = start + self.providers[start..].partition_point(|p| name_of(p) == name);
        self.providers[start..end]
            .iter()
            .map(|&(package, provision)| {
                let package = &self.packages[package];
                Provider {
                    package,
                    version: package
                        .provides
                        .get(provision)
                        .and_then(|p| p.version.as_ref()),
                }
            })
    }

    /// The names of all real packages, in no particular order.
    pub fn package_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_name
            .chunk_by(|&a, &b| self.packages[a].name == self.packages[b].name)
            .filter_map(|versions| versions.first())
            .map(|&position| self.packages[position].name.as_str())
    }

    /// The names some package provides, in no particular order.
    pub fn virtual_names(&self) -> impl Iterator<Item = &str> + '_ {
        let name_of = |&(position, provision): &(usize, usize)| {
            self.packages[position].provides[provision].package.as_str()
        };
        self.providers
            .chunk_by(move |a, b| name_of(a) == name_of(b))
            .filter_map(|providers| providers.first())
            .map(name_of)
    }
}

impl Package {
    /// `Pre-Depends`, in the order written.
    pub fn pre_depends(&self) -> &[Dependency] {
        &self.relationships.parsed()[0]
    }

    /// `Depends`, in the order written.
    pub fn depends(&self) -> &[Dependency] {
        &self.relationships.parsed()[1]
    }

    /// `Conflicts`: packages that cannot be installed alongside this one.
    pub fn conflicts(&self) -> &[Dependency] {
        &self.relationships.parsed()[2]
    }

    /// `Breaks`: packages this one breaks; for a finished image, as
    /// incompatible as `Conflicts`.
    pub fn breaks(&self) -> &[Dependency] {
        &self.relationships.parsed()[3]
    }

    /// The version at which this package provides `name`: `Some(None)` for
    /// an unversioned `Provides`, `None` when it does not provide `name`.
    pub fn provision(&self, name: &str) -> Option<Option<&Version>> {
        self.provides
            .iter()
            .find(|provision| provision.package == name)
            .map(|provision| provision.version.as_ref())
    }
}

impl fmt::Display for MultiArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MultiArch::No => "no",
            MultiArch::Same => "same",
            MultiArch::Foreign => "foreign",
            MultiArch::Allowed => "allowed",
        })
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Required => "required",
            Priority::Important => "important",
            Priority::Standard => "standard",
            Priority::Optional => "optional",
            Priority::Extra => "extra",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::version::Relation;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A minimal valid paragraph with the given extra fields.
    fn entry(name: &str, version: &str, architecture: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {architecture}\n{extra}\
             Filename: pool/main/{name}_{version}_{architecture}.deb\nSize: 1234\nSHA256: {SHA}\n\n"
        )
    }

    #[test]
    fn reads_every_field_the_lock_and_resolver_use() {
        let text = format!(
            "{}{}",
            entry(
                "libc6",
                "2.36-9+deb12u4",
                "amd64",
                "Multi-Arch: same\nPriority: optional\nPre-Depends: libgcc-s1\n\
                 Depends: libgcc-s1, libcrypt1 (>= 1:4.4.10-10~) | foo:any [amd64 !i386]\n\
                 Breaks: hurd (<< 1:0.9)\nConflicts: libc6-bad\n\
                 Provides: libc6-abi (= 2.36), glibc\n",
            ),
            entry(
                "dpkg",
                "1.21.22",
                "amd64",
                "Essential: yes\nPriority: required\nMulti-Arch: foreign\n"
            )
        );
        let index = PackageIndex::from_packages("amd64", "test", &text).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.architecture(), "amd64");

        let libc6 = index.newest("libc6").unwrap();
        assert_eq!(libc6.version.as_str(), "2.36-9+deb12u4");
        assert_eq!(libc6.multi_arch, MultiArch::Same);
        assert!(!libc6.essential);
        assert_eq!(libc6.priority, Some(Priority::Optional));
        assert_eq!(libc6.pre_depends().len(), 1);
        assert_eq!(libc6.depends().len(), 2);
        assert_eq!(
            libc6.depends()[1].to_string(),
            "libcrypt1 (>= 1:4.4.10-10~) | foo:any [amd64 !i386]"
        );
        let foo = &libc6.depends()[1].alternatives[1];
        assert_eq!(foo.arch_qualifier.as_deref(), Some("any"));
        assert_eq!(foo.architectures.len(), 2);
        assert!(foo.architectures[1].negated);
        assert_eq!(libc6.breaks()[0].to_string(), "hurd (<< 1:0.9)");
        assert_eq!(
            libc6.breaks()[0].alternatives[0]
                .version
                .as_ref()
                .unwrap()
                .relation,
            Relation::Earlier
        );
        assert_eq!(libc6.conflicts().len(), 1);
        assert_eq!(libc6.provides.len(), 2);
        assert_eq!(&*libc6.filename, "pool/main/libc6_2.36-9+deb12u4_amd64.deb");
        assert_eq!(libc6.size, 1234);
        assert_eq!(libc6.sha256.to_string(), SHA);
        assert_eq!(
            libc6.provision("libc6-abi").unwrap().unwrap().as_str(),
            "2.36"
        );
        assert_eq!(libc6.provision("glibc"), Some(None));
        assert_eq!(libc6.provision("dpkg"), None);

        let dpkg = index.newest("dpkg").unwrap();
        assert!(dpkg.essential);
        assert_eq!(dpkg.priority, Some(Priority::Required));
        assert_eq!(dpkg.multi_arch, MultiArch::Foreign);
        assert!(dpkg.depends().is_empty());

        let providers: Vec<_> = index.providers("libc6-abi").collect();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].package.name, "libc6");
        assert_eq!(providers[0].version.unwrap().as_str(), "2.36");
        assert_eq!(index.providers("glibc").next().unwrap().version, None);
        assert_eq!(index.providers("nothing").count(), 0);
        assert_eq!(index.versions("glibc").count(), 0);
    }

    #[test]
    fn keeps_the_target_architecture_and_all_only() {
        let text = format!(
            "{}{}{}",
            entry("a", "1", "amd64", ""),
            entry("b", "1", "all", ""),
            // Not validated beyond its architecture: kiln never uses it.
            "Package: c\nVersion: not a version\nArchitecture: i386\n\n",
        );
        let index = PackageIndex::from_packages("amd64", "test", &text).unwrap();
        assert_eq!(index.len(), 2);
        assert!(index.newest("c").is_none());
        let mut names: Vec<&str> = index.package_names().collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn versions_come_newest_first_across_texts_and_duplicates_are_dropped() {
        let mut index = PackageIndex::new("amd64");
        let first = format!(
            "{}{}",
            entry("a", "1.0-1", "amd64", "Provides: v (= 1)\n"),
            entry("a", "2.0-1", "amd64", "Provides: v (= 2)\n"),
        );
        let second = format!(
            "{}{}{}",
            entry("a", "1.5-1", "amd64", ""),
            // Same version as the first text: the first one read wins.
            entry("a", "2.0-1", "amd64", "Essential: yes\n"),
            entry("b", "3", "all", "Provides: v\n"),
        );
        assert_eq!(index.add_packages("first", &first).unwrap(), 2);
        assert_eq!(index.add_packages("second", &second).unwrap(), 2);
        let versions: Vec<&str> = index.versions("a").map(|p| p.version.as_str()).collect();
        assert_eq!(versions, ["2.0-1", "1.5-1", "1.0-1"]);
        assert!(!index.newest("a").unwrap().essential);
        let providers: Vec<(&str, Option<&str>)> = index
            .providers("v")
            .map(|p| (p.package.name.as_str(), p.version.map(Version::as_str)))
            .collect();
        assert_eq!(providers, [("a", Some("2")), ("a", Some("1")), ("b", None)]);
    }

    #[test]
    fn a_failed_text_leaves_the_index_unchanged() {
        let mut index = PackageIndex::new("amd64");
        let text = format!(
            "{}Package: b\nVersion: 1\nArchitecture: amd64\n\n",
            entry("a", "1", "amd64", "")
        );
        assert!(index.add_packages("broken", &text).is_err());
        assert!(index.is_empty());
        assert!(index.newest("a").is_none());
    }

    #[test]
    fn reads_a_compressed_stream_and_a_failed_one_leaves_earlier_texts() {
        use std::io::Write;
        let first = format!(
            "{}{}",
            entry("a", "1", "amd64", "Provides: v\n"),
            entry("b", "1", "all", "")
        );
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(first.as_bytes()).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut index = PackageIndex::new("amd64");
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(gzip.as_slice()));
        assert_eq!(
            index.add_repository_from("first", reader, 0, 500).unwrap(),
            2
        );

        let broken = format!(
            "{}{}Package: d\nVersion: 1\nArchitecture: amd64\n\n",
            entry("a", "2", "amd64", "Provides: v\n"),
            entry("c", "1", "amd64", ""),
        );
        assert!(
            index
                .add_repository_from("broken", broken.as_bytes(), 1, 500)
                .is_err()
        );
        let bad_bytes = b"Package: e\nVersion: \xff\n";
        let error = index
            .add_repository_from("bad", &bad_bytes[..], 1, 500)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "bad: cannot read it: line 2: the text is not UTF-8"
        );

        assert_eq!(index.len(), 2);
        assert_eq!(index.versions("a").count(), 1);
        assert!(index.newest("c").is_none());
        assert_eq!(index.providers("v").count(), 1);
        let mut names: Vec<&str> = index.package_names().collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(index.virtual_names().collect::<Vec<_>>(), ["v"]);
    }

    #[test]
    fn malformed_paragraphs_name_the_file_line_and_package() {
        let error =
            |text: &str| PackageIndex::from_packages("amd64", "Packages", text).unwrap_err();

        let text = format!(
            "{}{}",
            entry("good", "1", "amd64", ""),
            entry("bad", "1.0-", "amd64", "")
        );
        let err = error(&text);
        assert_eq!(err.line(), 9);
        assert_eq!(err.package(), Some("bad"));
        assert_eq!(err.origin(), "Packages");
        assert_eq!(
            err.to_string(),
            "Packages, line 9: package `bad`: `Version`: `1.0-` is not a valid Debian version: \
             the revision after the last `-` is empty"
        );

        let err = error(&entry("bad", "1", "amd64", "Depends: a,, b\n"));
        assert_eq!(err.line(), 4);
        assert!(matches!(
            &err,
            IndexError::Package { kind, .. } if matches!(
                **kind,
                PackageErrorKind::InvalidRelationship { field: "Depends", .. }
            )
        ));

        let err = error("Package: nosize\nVersion: 1\nArchitecture: all\n\n");
        assert_eq!(err.line(), 1);
        assert_eq!(
            err.to_string(),
            "Packages, line 1: package `nosize`: the required field `Filename` is missing"
        );

        let err = error("Version: 1\nArchitecture: all\n");
        assert_eq!(
            err.to_string(),
            "Packages, line 1: the required field `Package` is missing"
        );

        let kind = |extra: &str| match error(&entry("p", "1", "amd64", extra)) {
            IndexError::Package { kind, .. } => *kind,
            other => panic!("unexpected {other}"),
        };
        assert_eq!(
            kind("Multi-Arch: sometimes\n"),
            PackageErrorKind::InvalidMultiArch("sometimes".into())
        );
        assert_eq!(
            kind("Essential: maybe\n"),
            PackageErrorKind::InvalidEssential("maybe".into())
        );
        assert_eq!(
            kind("Priority: urgent\n"),
            PackageErrorKind::InvalidPriority("urgent".into())
        );
        assert!(matches!(
            kind("Provides: a (>= 1)\n"),
            PackageErrorKind::InvalidRelationship {
                field: "Provides",
                ..
            }
        ));

        let err =
            error("Package: p\nVersion: 1\nArchitecture: all\nFilename: f\nSize: -1\nSHA256: x\n");
        assert_eq!(err.line(), 5);
        assert_eq!(
            err.to_string(),
            "Packages, line 5: package `p`: `Size` must be a whole number of bytes, not `-1`"
        );
        let err =
            error("Package: p\nVersion: 1\nArchitecture: all\nFilename: f\nSize: 1\nSHA256: abc\n");
        assert!(
            err.to_string()
                .contains("`SHA256` must be 64 hexadecimal digits, not `abc`")
        );

        let err = error("Package: Bad_Name!\nVersion: 1\n");
        assert_eq!(err.package(), None);
        assert!(
            err.to_string()
                .contains("`Bad_Name!` is not a package name")
        );

        let err = error("Package: a\nVersion 1\n");
        assert_eq!(
            err.to_string(),
            "Packages: line 2: `Version 1` is neither a `Name: value` field nor an indented \
             continuation line"
        );
        assert_eq!(err.line(), 2);
    }

    #[test]
    fn upper_case_digests_are_stored_lower_case() {
        let text = entry("a", "1", "all", "").replace(SHA, &SHA.to_ascii_uppercase());
        let index = PackageIndex::from_packages("amd64", "test", &text).unwrap();
        assert_eq!(index.newest("a").unwrap().sha256.to_string(), SHA);
    }
}

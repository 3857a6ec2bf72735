//! Finding a distribution's official cloud image for a release, the way
//! the distribution publishes it, and checking the signature on its
//! checksum file.
//!
//! Each distribution lays out its download site differently; kiln reads it
//! as a person would, through the sites' directory listings (Apache or
//! nginx autoindex HTML, `<a href="…">`):
//!
//! - **Fedora** (`https://dl.fedoraproject.org`):
//!   `pub/fedora/linux/releases/<N>/Cloud/<x86_64|aarch64>/images/` holds
//!   `Fedora-Cloud-Base-Generic-<N>-<compose>.<arch>.qcow2` (Fedora 40:
//!   `Fedora-Cloud-Base-Generic.<arch>-40-<compose>.qcow2`) and the
//!   clear-signed `Fedora-Cloud-<N>-<compose>-<arch>-CHECKSUM`
//!   (`SHA256 (file) = hex` lines), signed with the release's key.
//! - **CentOS Stream** (`https://cloud.centos.org`):
//!   `centos/<N>-stream/<arch>/images/` holds
//!   `CentOS-Stream-GenericCloud-<N>-<date>.<n>.<arch>.qcow2` and one
//!   `CHECKSUM` (`SHA256 (file) = hex`) for every image there. CentOS
//!   publishes **no signature** for it (no `.asc`, not clear-signed), so
//!   kiln takes it as it comes over HTTPS and says so in
//!   [`Found::trust`]; a site that clear-signs `CHECKSUM` or puts a
//!   detached `CHECKSUM.asc` beside it is checked like the others.
//! - **openSUSE** (`https://download.opensuse.org`):
//!   `distribution/leap/<ver>/appliances/` (Tumbleweed:
//!   `tumbleweed/appliances/`) holds
//!   `openSUSE-Leap-<ver>-Minimal-VM.<arch>-Cloud.qcow2`, builds named
//!   `…-Minimal-VM.<arch>-<version>-Cloud-Build<n>.qcow2`, and for each a
//!   `.sha256` (`hex  file`) with a detached signature `.sha256.asc`.
//! - **Ubuntu** (`https://cloud-images.ubuntu.com`):
//!   `releases/<codename or version>/release-<serial>/` holds
//!   `ubuntu-<version>-server-cloudimg-<arch>.img` (a qcow2 disk) and
//!   `SHA256SUMS` (`hex *file`) with its detached signature
//!   `SHA256SUMS.gpg`. kiln pins the newest serial's directory, not the
//!   moving `release/`.
//!
//! The functions that read listings and checksum files and order versions
//! are pure and tested here; `tests/it/image_sites.rs` serves sites laid
//! out like the real ones and signed with throwaway keys.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::apt::release::{self, ReleaseError, Verified};
use crate::host::http::{Http, HttpError};
use crate::manifest::{Arch, Distro};

/// Fedora's download site.
pub const FEDORA_SITE: &str = "https://dl.fedoraproject.org";
/// CentOS's cloud image site.
pub const CENTOS_SITE: &str = "https://cloud.centos.org";
/// openSUSE's download site.
pub const OPENSUSE_SITE: &str = "https://download.opensuse.org";
/// Ubuntu's cloud image site.
pub const UBUNTU_SITE: &str = "https://cloud-images.ubuntu.com";
/// Where the `distribution-gpg-keys` package puts its keys.
pub const DISTRIBUTION_GPG_KEYS: &str = "/usr/share/distribution-gpg-keys";
/// The keyring of the keys that sign `cloud-images.ubuntu.com` (Ubuntu's
/// `ubuntu-cloudimage-keyring` package; Debian 12 does not ship it).
pub const UBUNTU_CLOUDIMAGE_KEYRING: &str = "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg";

/// The largest directory listing read.
const MAX_LISTING_BYTES: u64 = 16 << 20;
/// The largest checksum file read.
const MAX_CHECKSUMS_BYTES: u64 = 4 << 20;
/// The largest detached signature read.
const MAX_SIGNATURE_BYTES: u64 = 1 << 20;

/// What [`discover`] looks for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `fedora`, `centos`, `opensuse` or `ubuntu`.
    pub distro: Distro,
    /// The release as the imagefile names it (`41`, `9-stream` or `9`,
    /// `15.6` or `tumbleweed`, `noble` or `24.04`).
    pub release: &'a str,
    /// The architecture.
    pub arch: Arch,
    /// The download site instead of the distribution's own (`base.mirror`):
    /// its root, below which the paths are the same as on the
    /// distribution's site (`<mirror>/pub/fedora/linux/releases/…`).
    pub mirror: Option<&'a str>,
    /// Keyrings the checksum file's signature must verify against.
    pub keyrings: &'a [PathBuf],
    /// The HTTP client.
    pub http: &'a Http,
}

/// How far the checksum in [`Found`] is vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The checksum file's OpenPGP signature verified against the keyrings.
    Signed,
    /// The site publishes the checksum file unsigned (CentOS Stream); it is
    /// only as good as the connection it came over, and the lock's pin
    /// keeps it from changing afterwards.
    Unsigned,
}

/// The image found, with the checksum that pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The image's URL.
    pub url: String,
    /// Its SHA-256 as the signed checksum file gives it (lower-case hex).
    pub sha256: String,
    /// The checksum file's URL.
    pub checksums: String,
    /// The fingerprint of the key whose signature on it verified (empty
    /// when [`Found::trust`] is [`Trust::Unsigned`]).
    pub signed_by: String,
    /// The image's version or build serial as the site names it.
    pub version: String,
    /// Whether a signature vouches for `sha256`.
    pub trust: Trust,
}

/// Why no image was found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// kiln finds no published cloud images for this distro.
    #[error("kiln cannot find {distro} cloud images by release; give the image's `url` instead")]
    UnsupportedDistro {
        /// The distro.
        distro: String,
    },
    /// A listing or checksum file could not be fetched.
    #[error("cannot read {url}: {source}")]
    Http {
        /// What was fetched.
        url: String,
        /// Why it failed.
        source: Box<HttpError>,
    },
    /// The site has no such release.
    #[error("{distro} has no release `{release}` at {url}; it has: {}", known.join(", "))]
    UnknownRelease {
        /// The distro.
        distro: String,
        /// The release asked for.
        release: String,
        /// The listing of releases read.
        url: String,
        /// The releases the listing shows.
        known: Vec<String>,
    },
    /// The release's image directory has no image of the expected name.
    #[error("{url} has no image named like {wanted}")]
    NoImage {
        /// The directory listed.
        url: String,
        /// The name pattern looked for.
        wanted: String,
    },
    /// A file the layout needs (checksum file, signature) is not listed.
    #[error("{url} has no {name}, which should come with {image}")]
    MissingFile {
        /// The directory listed.
        url: String,
        /// The file's name.
        name: String,
        /// The image it belongs to.
        image: String,
    },
    /// The checksum file is signed but no keyring was given.
    #[error(
        "{url} is signed, but no keyring to check it was given or found; \
         set `keyring:` to the {distro} key's file"
    )]
    NoKeyring {
        /// The distro.
        distro: String,
        /// The checksum file.
        url: String,
    },
    /// The checksum file's signature does not verify.
    #[error("the checksum file {url} is not signed by a key of {keyrings}: {source}")]
    Signature {
        /// The checksum file.
        url: String,
        /// The keyrings used.
        keyrings: String,
        /// What gpgv or the key reader said.
        source: Box<ReleaseError>,
    },
    /// A keyring was given, but the site signs nothing.
    #[error(
        "{url} is published unsigned, so it cannot be checked against {keyrings}; \
         drop `keyring:` to take it over HTTPS and pin it in the lock"
    )]
    Unsigned {
        /// The checksum file.
        url: String,
        /// The keyrings given.
        keyrings: String,
    },
    /// The image is not in the (verified) checksum file.
    #[error("{image} is not listed in the checksum file {url}")]
    NotInChecksums {
        /// The image's file name.
        image: String,
        /// The checksum file.
        url: String,
    },
}

/// Finds the image of `request`: reads the site's listings, picks the
/// newest build of the release, fetches its checksum file and checks its
/// signature against `request.keyrings`.
pub fn discover(request: &Request<'_>) -> Result<Found, DiscoverError> {
    let site = |default: &'static str| {
        request
            .mirror
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string()
    };
    match request.distro {
        Distro::Fedora => fedora(request, &site(FEDORA_SITE)),
        Distro::Centos => centos(request, &site(CENTOS_SITE)),
        Distro::Opensuse => opensuse(request, &site(OPENSUSE_SITE)),
        Distro::Ubuntu => ubuntu(request, &site(UBUNTU_SITE)),
        other => Err(DiscoverError::UnsupportedDistro {
            distro: other.as_str().to_string(),
        }),
    }
}

/// Whether the distribution signs the checksum file of its cloud images,
/// so that a keyring is needed. CentOS Stream does not.
pub fn publishes_signatures(distro: Distro) -> bool {
    !matches!(distro, Distro::Centos)
}

/// The keyrings a distribution's signatures are checked with when the
/// imagefile names none: the keys of the `distribution-gpg-keys` package
/// (Fedora's release key, openSUSE's project keys) and Ubuntu's
/// `ubuntu-cloudimage-keyring.gpg`, those that are installed. Debian 12
/// ships neither package, so there this is usually empty and the caller
/// asks for `keyring:`. Empty for CentOS, which signs no checksum file.
pub fn default_keyrings(distro: Distro, release: &str) -> Vec<PathBuf> {
    default_keyrings_under(Path::new("/"), distro, release)
}

/// [`default_keyrings`] with the file system rooted at `root`.
fn default_keyrings_under(root: &Path, distro: Distro, release: &str) -> Vec<PathBuf> {
    let keys = |dir: &str, names: &[String]| -> Vec<PathBuf> {
        names
            .iter()
            .map(|name| PathBuf::from(format!("{DISTRIBUTION_GPG_KEYS}/{dir}/{name}")))
            .collect()
    };
    let candidates = match distro {
        Distro::Fedora => keys("fedora", &[format!("RPM-GPG-KEY-fedora-{release}-primary")]),
        Distro::Opensuse if release.eq_ignore_ascii_case("tumbleweed") => keys(
            "opensuse",
            &[
                "RPM-GPG-KEY-openSUSE-Tumbleweed".to_string(),
                "RPM-GPG-KEY-openSUSE-2022".to_string(),
                "RPM-GPG-KEY-openSUSE".to_string(),
            ],
        ),
        Distro::Opensuse => keys(
            "opensuse",
            &[
                "RPM-GPG-KEY-openSUSE".to_string(),
                "RPM-GPG-KEY-openSUSE-2022".to_string(),
            ],
        ),
        Distro::Ubuntu => vec![PathBuf::from(UBUNTU_CLOUDIMAGE_KEYRING)],
        _ => Vec::new(),
    };
    candidates
        .into_iter()
        .filter(|path| {
            let relative = path.strip_prefix("/").unwrap_or(path);
            root.join(relative).is_file()
        })
        .collect()
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file or directory name, percent-decoded, without a slash.
    pub name: String,
    /// Whether the listing links it as a directory (`name/`).
    pub dir: bool,
}

/// The entries of an autoindex HTML listing of `dir_url` (Apache's
/// FancyIndexing table or `<pre>`, nginx's `<pre>`, MirrorCache's table):
/// every `href` that names something directly inside the directory —
/// relative, or absolute below `dir_url`. Sort links (`?C=N;O=D`), the
/// parent, and links elsewhere are left out; each name once, in order.
pub fn parse_listing(html: &str, dir_url: &str) -> Vec<Entry> {
    let dir_url = if dir_url.ends_with('/') {
        dir_url.to_string()
    } else {
        format!("{dir_url}/")
    };
    let dir_path = dir_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_else(|| "/".to_string());
    let lower = html.to_ascii_lowercase();
    let mut entries: Vec<Entry> = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("href=") {
        let start = from + at + "href=".len();
        let rest = &html[start..];
        let (value, used) = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => match rest[1..].find(quote) {
                Some(end) => (&rest[1..=end], end + 2),
                None => break,
            },
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        from = start + used.max(1);
        if let Some(entry) = listing_entry(value, &dir_url, &dir_path)
            && !entries.iter().any(|e| e.name == entry.name)
        {
            entries.push(entry);
        }
    }
    entries
}

/// The entry an `href` value names, if it is directly inside the directory.
fn listing_entry(href: &str, dir_url: &str, dir_path: &str) -> Option<Entry> {
    let href = href.replace("&amp;", "&");
    let href = href.split(['?', '#']).next().unwrap_or("");
    let relative = if href.contains("://") {
        href.strip_prefix(dir_url)?
    } else if href.starts_with('/') {
        href.strip_prefix(dir_path)?
    } else {
        href.strip_prefix("./").unwrap_or(href)
    };
    let decoded = percent_decode(relative)?;
    let dir = decoded.ends_with('/');
    let name = decoded.trim_end_matches('/');
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return None;
    }
    Some(Entry {
        name: name.to_string(),
        dir,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The SHA-256 lines of a checksum file, as `(file name, lower-case hex)`:
/// BSD style (`SHA256 (name) = hex`, Fedora's and CentOS's `CHECKSUM`) and
/// GNU style (`hex  name` or `hex *name`, `SHA256SUMS` and `.sha256`).
/// Comments, other algorithms and anything else are skipped.
pub fn parse_checksums(text: &str) -> Vec<(String, String)> {
    let is_sha256 = |hex: &str| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("SHA256 (") {
                let (name, hex) = rest.rsplit_once(") = ")?;
                let hex = hex.trim();
                return is_sha256(hex).then(|| (name.to_string(), hex.to_ascii_lowercase()));
            }
            let (hex, name) = line.split_once(char::is_whitespace)?;
            let name = name.trim_start();
            let name = name.strip_prefix('*').unwrap_or(name);
            (is_sha256(hex) && !name.is_empty())
                .then(|| (name.to_string(), hex.to_ascii_lowercase()))
        })
        .collect()
}

/// The SHA-256 that `checksums` gives for exactly the file `name`.
pub fn checksum_for<'a>(checksums: &'a [(String, String)], name: &str) -> Option<&'a str> {
    checksums
        .iter()
        .find(|(file, _)| file == name)
        .map(|(_, hex)| hex.as_str())
}

/// Orders version strings as the sites number builds (`1.4` < `1.14`,
/// `20240523` < `20240523.1`): runs of digits compare as numbers, other
/// runs as text, and a version that is a prefix of another is older.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (runs(a), runs(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
                let order = if digits(x) && digits(y) {
                    let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                } else {
                    x.cmp(y)
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// `s` split into maximal runs of digits and of non-digits.
fn runs(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

/// The newest of `(version, value)` pairs by [`compare_versions`].
fn newest<T>(candidates: impl IntoIterator<Item = (String, T)>) -> Option<(String, T)> {
    candidates
        .into_iter()
        .max_by(|(a, _), (b, _)| compare_versions(a, b))
}

/// The Fedora compose (`1.4`) of an image file name, if `name` is the
/// Generic cloud qcow2 of `release` on `arch`.
pub fn fedora_compose(name: &str, release: &str, arch: &str) -> Option<String> {
    let compose = name
        .strip_prefix(&format!("Fedora-Cloud-Base-Generic-{release}-"))
        .and_then(|rest| rest.strip_suffix(&format!(".{arch}.qcow2")))
        .or_else(|| {
            name.strip_prefix(&format!("Fedora-Cloud-Base-Generic.{arch}-{release}-"))
                .and_then(|rest| rest.strip_suffix(".qcow2"))
        })?;
    is_build_number(compose).then(|| compose.to_string())
}

/// The CentOS Stream build (`20240101.0`) of an image file name, if `name`
/// is the GenericCloud qcow2 of `major` on `arch` (not the `latest` alias).
pub fn centos_build(name: &str, major: &str, arch: &str) -> Option<String> {
    let build = name
        .strip_prefix(&format!("CentOS-Stream-GenericCloud-{major}-"))?
        .strip_suffix(&format!(".{arch}.qcow2"))?;
    is_build_number(build).then(|| build.to_string())
}

/// Digits and dots, starting with a digit.
fn is_build_number(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit())
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// An openSUSE appliance image name, read: `None` for other files,
/// `Some(None)` for the unversioned `…-Cloud.qcow2`, `Some(Some(version))`
/// for a build (`…-<version>-Cloud-<build>.qcow2` → `<version>-<build>`).
pub fn opensuse_build(name: &str, prefix: &str) -> Option<Option<String>> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".qcow2")?;
    if rest == "Cloud" {
        return Some(None);
    }
    let (version, build) = rest.split_once("-Cloud-")?;
    (!version.is_empty() && !build.is_empty() && !build.contains('/'))
        .then(|| Some(format!("{version}-{build}")))
}

/// Reads what the sites serve.
struct Site<'r, 'a> {
    request: &'r Request<'a>,
}

impl Site<'_, '_> {
    fn get(&self, url: &str, max: u64) -> Result<Vec<u8>, DiscoverError> {
        self.request
            .http
            .get_small(url, max)
            .map_err(|source| DiscoverError::Http {
                url: url.to_string(),
                source: Box::new(source),
            })
    }

    fn listing(&self, url: &str) -> Result<Vec<Entry>, DiscoverError> {
        let html = self.get(url, MAX_LISTING_BYTES)?;
        Ok(parse_listing(&String::from_utf8_lossy(&html), url))
    }

    /// Lists `parent` and checks that it has the directory `name`; if not,
    /// the error lists the directories `is_release` accepts, oldest first.
    fn require_release(
        &self,
        parent: &str,
        name: &str,
        is_release: impl Fn(&str) -> bool,
    ) -> Result<(), DiscoverError> {
        let entries = self.listing(parent)?;
        if entries.iter().any(|e| e.dir && e.name == name) {
            return Ok(());
        }
        let mut known: Vec<String> = entries
            .into_iter()
            .filter(|e| e.dir && is_release(&e.name))
            .map(|e| e.name)
            .collect();
        known.sort_by(|a, b| compare_versions(a, b));
        Err(DiscoverError::UnknownRelease {
            distro: self.request.distro.as_str().to_string(),
            release: self.request.release.to_string(),
            url: parent.to_string(),
            known,
        })
    }

    fn keyring_names(&self) -> String {
        if self.request.keyrings.is_empty() {
            return "(none)".to_string();
        }
        self.request
            .keyrings
            .iter()
            .map(|k| k.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks the signature on the checksum file `body` fetched from `url`:
    /// clear-signed when `detached` is `None`, else by the detached
    /// signature fetched from that URL.
    fn verified(
        &self,
        url: &str,
        body: &[u8],
        detached: Option<&str>,
    ) -> Result<Verified, DiscoverError> {
        if self.request.keyrings.is_empty() {
            return Err(DiscoverError::NoKeyring {
                distro: self.request.distro.as_str().to_string(),
                url: url.to_string(),
            });
        }
        let keyrings: Vec<&Path> = self.request.keyrings.iter().map(PathBuf::as_path).collect();
        let checked = match detached {
            None => release::verify(body, &keyrings, None, url),
            Some(signature_url) => {
                let signature = self.get(signature_url, MAX_SIGNATURE_BYTES)?;
                release::verify_detached(body, &signature, &keyrings, None, url)
            }
        };
        checked.map_err(|source| DiscoverError::Signature {
            url: url.to_string(),
            keyrings: self.keyring_names(),
            source: Box::new(source),
        })
    }
}

fn require_file(
    entries: &[Entry],
    dir: &str,
    name: &str,
    image: &str,
) -> Result<(), DiscoverError> {
    if entries.iter().any(|e| !e.dir && e.name == name) {
        Ok(())
    } else {
        Err(DiscoverError::MissingFile {
            url: dir.to_string(),
            name: name.to_string(),
            image: image.to_string(),
        })
    }
}

fn sha256_in(text: &str, image: &str, url: &str) -> Result<String, DiscoverError> {
    checksum_for(&parse_checksums(text), image)
        .map(str::to_string)
        .ok_or_else(|| DiscoverError::NotInChecksums {
            image: image.to_string(),
            url: url.to_string(),
        })
}

fn rpm_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "aarch64",
    }
}

fn files(entries: &[Entry]) -> impl Iterator<Item = &str> {
    entries.iter().filter(|e| !e.dir).map(|e| e.name.as_str())
}

/// Fedora: the newest compose in `releases/<N>/Cloud/<arch>/images/`, its
/// clear-signed `CHECKSUM`.
fn fedora(request: &Request<'_>, site: &str) -> Result<Found, DiscoverError> {
    let reader = Site { request };
    let release = request.release;
    let arch = rpm_arch(request.arch);
    let releases = format!("{site}/pub/fedora/linux/releases/");
    reader.require_release(&releases, release, |name| {
        name.bytes().all(|b| b.is_ascii_digit())
    })?;
    let dir = format!("{releases}{release}/Cloud/{arch}/images/");
    let entries = reader.listing(&dir)?;
    let (compose, image) = newest(
        files(&entries)
            .filter_map(|name| Some((fedora_compose(name, release, arch)?, name.to_string()))),
    )
    .ok_or_else(|| DiscoverError::NoImage {
        url: dir.clone(),
        wanted: format!("Fedora-Cloud-Base-Generic-{release}-<compose>.{arch}.qcow2"),
    })?;
    let checksum_name = format!("Fedora-Cloud-{release}-{compose}-{arch}-CHECKSUM");
    require_file(&entries, &dir, &checksum_name, &image)?;
    let checksums = format!("{dir}{checksum_name}");
    let body = reader.get(&checksums, MAX_CHECKSUMS_BYTES)?;
    let verified = reader.verified(&checksums, &body, None)?;
    Ok(Found {
        url: format!("{dir}{image}"),
        sha256: sha256_in(&verified.text, &image, &checksums)?,
        checksums,
        signed_by: verified.fingerprint,
        version: compose,
        trust: Trust::Signed,
    })
}

/// CentOS Stream: the newest GenericCloud build in
/// `centos/<N>-stream/<arch>/images/` and that directory's `CHECKSUM`,
/// which CentOS does not sign (see the module's documentation).
fn centos(request: &Request<'_>, site: &str) -> Result<Found, DiscoverError> {
    let reader = Site { request };
    let major = request
        .release
        .strip_suffix("-stream")
        .unwrap_or(request.release);
    let arch = rpm_arch(request.arch);
    let parent = format!("{site}/centos/");
    reader.require_release(&parent, &format!("{major}-stream"), |name| {
        name.ends_with("-stream")
    })?;
    let dir = format!("{parent}{major}-stream/{arch}/images/");
    let entries = reader.listing(&dir)?;
    let (build, image) = newest(
        files(&entries)
            .filter_map(|name| Some((centos_build(name, major, arch)?, name.to_string()))),
    )
    .ok_or_else(|| DiscoverError::NoImage {
        url: dir.clone(),
        wanted: format!("CentOS-Stream-GenericCloud-{major}-<date>.<n>.{arch}.qcow2"),
    })?;
    require_file(&entries, &dir, "CHECKSUM", &image)?;
    let checksums = format!("{dir}CHECKSUM");
    let body = reader.get(&checksums, MAX_CHECKSUMS_BYTES)?;
    let (text, signed_by, trust) = if body.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        let verified = reader.verified(&checksums, &body, None)?;
        (verified.text, verified.fingerprint, Trust::Signed)
    } else if files(&entries).any(|name| name == "CHECKSUM.asc") {
        let verified = reader.verified(&checksums, &body, Some(&format!("{checksums}.asc")))?;
        (verified.text, verified.fingerprint, Trust::Signed)
    } else if !request.keyrings.is_empty() {
        return Err(DiscoverError::Unsigned {
            url: checksums,
            keyrings: reader.keyring_names(),
        });
    } else {
        (
            String::from_utf8_lossy(&body).into_owned(),
            String::new(),
            Trust::Unsigned,
        )
    };
    Ok(Found {
        url: format!("{dir}{image}"),
        sha256: sha256_in(&text, &image, &checksums)?,
        checksums,
        signed_by,
        version: build,
        trust,
    })
}

/// openSUSE: the newest `Minimal-VM` Cloud build in the release's
/// `appliances/` (else the unversioned image), its `.sha256` and the
/// detached `.sha256.asc`.
fn opensuse(request: &Request<'_>, site: &str) -> Result<Found, DiscoverError> {
    let reader = Site { request };
    let arch = rpm_arch(request.arch);
    let release = request.release;
    let (dir, product) = if release.eq_ignore_ascii_case("tumbleweed") {
        (
            format!("{site}/tumbleweed/appliances/"),
            "Tumbleweed".to_string(),
        )
    } else {
        let version = release
            .strip_prefix("leap-")
            .or_else(|| release.strip_prefix("Leap-"))
            .unwrap_or(release);
        let parent = format!("{site}/distribution/leap/");
        reader.require_release(&parent, version, |name| {
            name.starts_with(|c: char| c.is_ascii_digit())
        })?;
        (
            format!("{parent}{version}/appliances/"),
            format!("Leap-{version}"),
        )
    };
    let prefix = format!("openSUSE-{product}-Minimal-VM.{arch}-");
    let entries = reader.listing(&dir)?;
    let listed = |name: &str| files(&entries).any(|file| file == name);
    let builds = files(&entries).filter_map(|name| {
        let version = opensuse_build(name, &prefix)??;
        listed(&format!("{name}.sha256")).then(|| (version, name.to_string()))
    });
    let (version, image) = match newest(builds) {
        Some(found) => found,
        None => {
            let alias = format!("{prefix}Cloud.qcow2");
            if !listed(&alias) {
                return Err(DiscoverError::NoImage {
                    url: dir,
                    wanted: format!("{prefix}[<version>-]Cloud[-<build>].qcow2"),
                });
            }
            (release.to_string(), alias)
        }
    };
    let checksum_name = format!("{image}.sha256");
    require_file(&entries, &dir, &checksum_name, &image)?;
    require_file(&entries, &dir, &format!("{checksum_name}.asc"), &image)?;
    let checksums = format!("{dir}{checksum_name}");
    let body = reader.get(&checksums, MAX_CHECKSUMS_BYTES)?;
    let verified = reader.verified(&checksums, &body, Some(&format!("{checksums}.asc")))?;
    let lines = parse_checksums(&verified.text);
    // The unversioned image's `.sha256` may name the build it stands for;
    // then that build's own URL is pinned.
    let (image, version) = match (checksum_for(&lines, &image), lines.as_slice()) {
        (Some(_), _) => (image, version),
        (None, [(named, _)]) if listed(named) => match opensuse_build(named, &prefix) {
            Some(Some(build)) => (named.clone(), build),
            _ => (image, version),
        },
        _ => (image, version),
    };
    Ok(Found {
        url: format!("{dir}{image}"),
        sha256: sha256_in(&verified.text, &image, &checksums)?,
        checksums,
        signed_by: verified.fingerprint,
        version,
        trust: Trust::Signed,
    })
}

/// Ubuntu: the newest `release-<serial>/` of `releases/<release>/`, its
/// `SHA256SUMS` and the detached `SHA256SUMS.gpg`.
fn ubuntu(request: &Request<'_>, site: &str) -> Result<Found, DiscoverError> {
    let reader = Site { request };
    let arch = request.arch.as_str();
    let release = request.release;
    let releases = format!("{site}/releases/");
    reader.require_release(&releases, release, |name| name != "streams")?;
    let dir = format!("{releases}{release}/");
    let serials = reader.listing(&dir)?;
    let (serial, _) = newest(
        serials
            .iter()
            .filter(|e| e.dir)
            .filter_map(|e| e.name.strip_prefix("release-"))
            .filter(|serial| is_build_number(serial))
            .map(|serial| (serial.to_string(), ())),
    )
    .ok_or_else(|| DiscoverError::NoImage {
        url: dir.clone(),
        wanted: "release-<serial>/".to_string(),
    })?;
    let serial_dir = format!("{dir}release-{serial}/");
    let entries = reader.listing(&serial_dir)?;
    let suffix = format!("-server-cloudimg-{arch}.img");
    let (_, image) = newest(files(&entries).filter_map(|name| {
        let version = name.strip_prefix("ubuntu-")?.strip_suffix(&suffix)?;
        is_build_number(version).then(|| (version.to_string(), name.to_string()))
    }))
    .ok_or_else(|| DiscoverError::NoImage {
        url: serial_dir.clone(),
        wanted: format!("ubuntu-<version>{suffix}"),
    })?;
    require_file(&entries, &serial_dir, "SHA256SUMS", &image)?;
    require_file(&entries, &serial_dir, "SHA256SUMS.gpg", &image)?;
    let checksums = format!("{serial_dir}SHA256SUMS");
    let body = reader.get(&checksums, MAX_CHECKSUMS_BYTES)?;
    let verified = reader.verified(&checksums, &body, Some(&format!("{checksums}.gpg")))?;
    Ok(Found {
        url: format!("{serial_dir}{image}"),
        sha256: sha256_in(&verified.text, &image, &checksums)?,
        checksums,
        signed_by: verified.fingerprint,
        version: serial,
        trust: Trust::Signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_A: &str = "6205ae0c524b4d1816dbd3573ce29b5c44ed26c9fbc874fbe48c41c89dd0bac2";
    const HEX_B: &str = "0f9f542051447aa428cf9cce9aeba68e345376d761c51cd6b0d644f5fa449830";

    #[test]
    fn apache_table_listing_gives_files_and_directories() {
        let html = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html><head><title>Index of /pub/fedora/linux/releases</title></head><body>
<h1>Index of /pub/fedora/linux/releases</h1><table>
<tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="/pub/fedora/linux/">Parent Directory</a></td></tr>
<tr><td valign="top"><img src="/icons/folder.gif" alt="[DIR]"></td><td><a href="40/">40/</a></td></tr>
<tr><td valign="top"><img src="/icons/folder.gif" alt="[DIR]"></td><td><a href="41/">41/</a></td></tr>
<tr><td valign="top"><img src="/icons/text.gif" alt="[TXT]"></td><td><a href="Fedora-Cloud-41-1.4-x86_64-CHECKSUM">Fedora-Cloud-41-1.4-x86_64-CHECKSUM</a></td></tr>
</table></body></html>"#;
        let entries = parse_listing(
            html,
            "https://dl.fedoraproject.org/pub/fedora/linux/releases/",
        );
        let names: Vec<(&str, bool)> = entries.iter().map(|e| (e.name.as_str(), e.dir)).collect();
        assert_eq!(
            names,
            [
                ("40", true),
                ("41", true),
                ("Fedora-Cloud-41-1.4-x86_64-CHECKSUM", false)
            ]
        );
    }

    #[test]
    fn listing_takes_absolute_links_below_the_directory_and_decodes_them() {
        let html = concat!(
            "<a href='../'>../</a> <a href=\"/a/b/x%2By.qcow2\">x</a> ",
            "<a href=\"http://h/a/b/sub/\">s</a> <a href=\"http://other/z\">z</a> ",
            "<a href=\"/elsewhere/q\">q</a> <a href=./x%2By.qcow2>again</a>",
        );
        let entries = parse_listing(html, "http://h/a/b/");
        assert_eq!(
            entries,
            [
                Entry {
                    name: "x+y.qcow2".into(),
                    dir: false
                },
                Entry {
                    name: "sub".into(),
                    dir: true
                }
            ]
        );
    }

    #[test]
    fn checksums_are_read_in_bsd_and_gnu_styles() {
        let text = format!(
            "# Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2: 491716608 bytes\n\
             SHA256 (Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2) = {HEX_A}\n\
             SHA512 (other) = abcd\n\
             {HEX_B} *ubuntu-24.04-server-cloudimg-amd64.img\n\
             {HEX_A}  openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2\n\
             not a line\n"
        );
        let lines = parse_checksums(&text);
        assert_eq!(
            lines,
            [
                (
                    "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2".to_string(),
                    HEX_A.to_string()
                ),
                (
                    "ubuntu-24.04-server-cloudimg-amd64.img".to_string(),
                    HEX_B.to_string()
                ),
                (
                    "openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2".to_string(),
                    HEX_A.to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_image_is_matched_in_the_checksum_list_by_exact_file_name() {
        let lines = parse_checksums(&format!(
            "{HEX_A} *ubuntu-24.04-server-cloudimg-amd64.img.manifest\n\
             {HEX_B} *ubuntu-24.04-server-cloudimg-amd64.img\n\
             {HEX_A} *ubuntu-24.04-server-cloudimg-amd64-disk-kvm.img\n"
        ));
        assert_eq!(
            checksum_for(&lines, "ubuntu-24.04-server-cloudimg-amd64.img"),
            Some(HEX_B)
        );
        assert_eq!(checksum_for(&lines, "server-cloudimg-amd64.img"), None);
        assert_eq!(
            checksum_for(&lines, "ubuntu-24.04-server-cloudimg-amd64"),
            None
        );
    }

    #[test]
    fn versions_order_numbers_as_numbers() {
        assert_eq!(compare_versions("1.4", "1.14"), Ordering::Less);
        assert_eq!(compare_versions("20240523", "20240523.1"), Ordering::Less);
        assert_eq!(
            compare_versions("20250101.0", "20241231.9"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("15.6.0-Build16.3", "15.6.0-Build9.10"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("007", "7"), Ordering::Equal);
        let newest_serial = newest(
            ["20240423", "20240523.1", "20240523", "20240101"]
                .into_iter()
                .map(|s| (s.to_string(), ())),
        );
        assert_eq!(
            newest_serial.map(|(s, ())| s).as_deref(),
            Some("20240523.1")
        );
    }

    #[test]
    fn image_names_are_read_per_distribution() {
        assert_eq!(
            fedora_compose(
                "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2",
                "41",
                "x86_64"
            )
            .as_deref(),
            Some("1.4")
        );
        assert_eq!(
            fedora_compose(
                "Fedora-Cloud-Base-Generic.x86_64-40-1.14.qcow2",
                "40",
                "x86_64"
            )
            .as_deref(),
            Some("1.14")
        );
        assert_eq!(
            fedora_compose(
                "Fedora-Cloud-Base-Generic-41-1.4.aarch64.qcow2",
                "41",
                "x86_64"
            ),
            None
        );
        assert_eq!(
            fedora_compose(
                "Fedora-Cloud-Base-AmazonEC2-41-1.4.x86_64.raw.xz",
                "41",
                "x86_64"
            ),
            None
        );
        assert_eq!(
            centos_build(
                "CentOS-Stream-GenericCloud-9-20240101.0.x86_64.qcow2",
                "9",
                "x86_64"
            )
            .as_deref(),
            Some("20240101.0")
        );
        assert_eq!(
            centos_build(
                "CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2",
                "9",
                "x86_64"
            ),
            None
        );
        assert_eq!(
            centos_build(
                "CentOS-Stream-GenericCloud-9-20240101.0.x86_64.qcow2.SHA256SUM",
                "9",
                "x86_64"
            ),
            None
        );
        let prefix = "openSUSE-Leap-15.6-Minimal-VM.x86_64-";
        assert_eq!(
            opensuse_build("openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2", prefix),
            Some(None)
        );
        assert_eq!(
            opensuse_build(
                "openSUSE-Leap-15.6-Minimal-VM.x86_64-15.6.0-Cloud-Build16.3.qcow2",
                prefix
            ),
            Some(Some("15.6.0-Build16.3".to_string()))
        );
        assert_eq!(
            opensuse_build(
                "openSUSE-Leap-15.6-Minimal-VM.x86_64-kvm-and-xen.qcow2",
                prefix
            ),
            None
        );
    }

    #[test]
    fn default_keyrings_are_the_installed_ones() {
        let root = tempfile::tempdir().unwrap();
        assert!(default_keyrings_under(root.path(), Distro::Fedora, "41").is_empty());
        let fedora = root
            .path()
            .join("usr/share/distribution-gpg-keys/fedora/RPM-GPG-KEY-fedora-41-primary");
        std::fs::create_dir_all(fedora.parent().unwrap()).unwrap();
        std::fs::write(&fedora, "key").unwrap();
        let suse = root
            .path()
            .join("usr/share/distribution-gpg-keys/opensuse/RPM-GPG-KEY-openSUSE");
        std::fs::create_dir_all(suse.parent().unwrap()).unwrap();
        std::fs::write(&suse, "key").unwrap();
        assert_eq!(
            default_keyrings_under(root.path(), Distro::Fedora, "41"),
            [PathBuf::from(
                "/usr/share/distribution-gpg-keys/fedora/RPM-GPG-KEY-fedora-41-primary"
            )]
        );
        assert!(default_keyrings_under(root.path(), Distro::Fedora, "42").is_empty());
        assert_eq!(
            default_keyrings_under(root.path(), Distro::Opensuse, "15.6"),
            [PathBuf::from(
                "/usr/share/distribution-gpg-keys/opensuse/RPM-GPG-KEY-openSUSE"
            )]
        );
        assert!(default_keyrings_under(root.path(), Distro::Centos, "9").is_empty());
        assert!(default_keyrings_under(root.path(), Distro::Ubuntu, "noble").is_empty());
    }
}

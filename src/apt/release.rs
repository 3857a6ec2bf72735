//! The archive's signed `InRelease`: checking its signature and reading the
//! hashes of the indexes it lists.
//!
//! Everything kiln installs is trusted through this one file: its OpenPGP
//! signature is checked with `gpgv` against a keyring, and only the text
//! gpgv vouches for is read. The `SHA256` list then pins every index
//! (`Packages`), and the indexes pin every `.deb`.

use std::collections::BTreeMap;
use std::path::Path;

use super::deb822::Paragraphs;
use crate::cache::Digest;
use crate::host::command;

/// What kiln reads from a `Release` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `Suite` (`stable`, `oldstable`, …).
    pub suite: Option<String>,
    /// `Codename` (`bookworm`, …).
    pub codename: Option<String>,
    /// `Date`, as written.
    pub date: String,
    /// `Date` in seconds since 1970-01-01 UTC.
    pub date_epoch: u64,
    /// `Valid-Until` in seconds, when the archive sets one.
    pub valid_until_epoch: Option<u64>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// `Components`.
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`: indexes can be fetched by their hash, which
    /// stays valid while the mirror updates.
    pub acquire_by_hash: bool,
    /// `NotAutomatic: yes` (backports, experimental): apt gives its
    /// packages pin priority 1, so they are taken only when asked for.
    pub not_automatic: bool,
    /// `ButAutomaticUpgrades: yes`: with `NotAutomatic`, priority 100, so
    /// packages installed from it are upgraded from it.
    pub but_automatic_upgrades: bool,
    /// The `SHA256` list: path below `dists/<suite>/` → digest.
    pub files: BTreeMap<String, Digest>,
}

impl Release {
    /// apt's default pin priority for the packages of this release: 1
    /// for `NotAutomatic`, 100 with `ButAutomaticUpgrades` too, else 500.
    pub fn default_pin(&self) -> i32 {
        match (self.not_automatic, self.but_automatic_upgrades) {
            (true, true) => 100,
            (true, false) => 1,
            _ => 500,
        }
    }
}

/// A checked `InRelease`: the text the signature covers, and who signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed text.
    pub text: String,
    /// The fingerprint of the (primary) key whose signature verified.
    pub fingerprint: String,
}

/// Why an `InRelease` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// gpgv found no good signature by a key of the keyring.
    #[error("the signature of {url} does not verify against the keyring {keyring}: {detail}")]
    BadSignature {
        /// Where the file came from.
        url: String,
        /// The keyring used.
        keyring: String,
        /// gpgv's own words.
        detail: String,
    },
    /// The keyring file does not exist.
    #[error("the keyring {keyring} does not exist")]
    MissingKeyring {
        /// The keyring's path.
        keyring: String,
    },
    /// The keyring file holds no OpenPGP public key.
    #[error("{keyring} is not an OpenPGP public key: {detail}")]
    NotAKey {
        /// The file's path.
        keyring: String,
        /// What it holds instead.
        detail: String,
    },
    /// A good signature, but not by the key the fingerprint names.
    #[error("{url} is signed by {found}, not by the key {wanted} (`fingerprint`)")]
    WrongSigner {
        /// Where the file came from.
        url: String,
        /// The fingerprint asked for.
        wanted: String,
        /// Who signed it.
        found: String,
    },
    /// gpgv could not be run.
    #[error(transparent)]
    Gpgv(#[from] command::CommandError),
    /// The signed text is not a Release file.
    #[error("{url} is not a valid Release file: {detail}")]
    Malformed {
        /// Where the file came from.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The file could not be written for gpgv to read.
    #[error("cannot prepare {url} for gpgv: {source}")]
    Io {
        /// Where the file came from.
        url: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Checks the OpenPGP signature of an `InRelease` file with `gpgv` against
/// `keyrings` (binary or armored key files) and returns the signed text and
/// the signer. Accepts the file when at least one signature is good
/// (`VALIDSIG`) and none is bad (`BADSIG`), as apt does: archives sign
/// with several keys, and a keyring need not hold all of them. With
/// `fingerprint`, a good signature must be by that key (its primary key
/// or a subkey), as apt's `Signed-By: <fingerprint>`.
pub fn verify(
    in_release: &[u8],
    keyrings: &[&Path],
    fingerprint: Option<&str>,
    url: &str,
) -> Result<Verified, ReleaseError> {
    let io = |source| ReleaseError::Io {
        url: url.to_string(),
        source,
    };
    let dir = tempfile::tempdir().map_err(io)?;
    let signed = dir.path().join("InRelease");
    let content = dir.path().join("content");
    std::fs::write(&signed, in_release).map_err(io)?;
    let fingerprint = run_gpgv(
        dir.path(),
        keyrings,
        fingerprint,
        url,
        vec!["--output".into(), content.clone().into(), signed.into()],
    )?;
    Ok(Verified {
        text: std::fs::read_to_string(&content).map_err(io)?,
        fingerprint,
    })
}

/// Checks a detached OpenPGP signature (`signature`, binary or armored, as
/// `SHA256SUMS.gpg` or `*.sha256.asc`) over `data` with `gpgv`, by the same
/// rules as [`verify`], and returns `data` as the signed text.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    keyrings: &[&Path],
    fingerprint: Option<&str>,
    url: &str,
) -> Result<Verified, ReleaseError> {
    let io = |source| ReleaseError::Io {
        url: url.to_string(),
        source,
    };
    let text = String::from_utf8(data.to_vec()).map_err(|_| ReleaseError::Malformed {
        url: url.to_string(),
        detail: "it is not UTF-8 text".to_string(),
    })?;
    let dir = tempfile::tempdir().map_err(io)?;
    let signed = dir.path().join("data");
    let detached = dir.path().join("data.sig");
    std::fs::write(&signed, data).map_err(io)?;
    std::fs::write(&detached, signature).map_err(io)?;
    let fingerprint = run_gpgv(
        dir.path(),
        keyrings,
        fingerprint,
        url,
        vec![detached.into(), signed.into()],
    )?;
    Ok(Verified { text, fingerprint })
}

/// Runs `gpgv --status-fd 2` with `keyrings` (written as binary keyrings
/// into `dir`) on `inputs`, and returns the primary-key fingerprint of the
/// signer its status lines vouch for: at least one `VALIDSIG`, no `BADSIG`
/// or `ERRSIG`, and with `fingerprint`, a good signature by that key.
fn run_gpgv(
    dir: &Path,
    keyrings: &[&Path],
    fingerprint: Option<&str>,
    url: &str,
    inputs: Vec<std::ffi::OsString>,
) -> Result<String, ReleaseError> {
    let io = |source| ReleaseError::Io {
        url: url.to_string(),
        source,
    };
    let mut args: Vec<std::ffi::OsString> = vec!["--status-fd".into(), "2".into()];
    for (n, keyring) in keyrings.iter().enumerate() {
        let binary = dir.join(format!("keyring-{n}.gpg"));
        std::fs::write(&binary, read_key(keyring)?).map_err(io)?;
        args.push("--keyring".into());
        args.push(binary.into());
    }
    args.extend(inputs);
    let finished = command::run::<std::ffi::OsString>("gpgv", &args, "gpgv")?;
    let status: Vec<&str> = finished
        .stderr
        .lines()
        .filter_map(|line| line.strip_prefix("[GNUPG:] "))
        .collect();
    // `VALIDSIG <signing key fpr> … <primary key fpr>`.
    let signers: Vec<(&str, &str)> = status
        .iter()
        .filter_map(|s| s.strip_prefix("VALIDSIG "))
        .filter_map(|rest| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some((*fields.first()?, *fields.last()?))
        })
        .collect();
    let bad = status
        .iter()
        .any(|s| s.starts_with("BADSIG ") || s.starts_with("ERRSIG "));
    let keyring_names = keyrings
        .iter()
        .map(|k| k.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if signers.is_empty() || bad {
        let detail: Vec<&str> = finished
            .stderr
            .lines()
            .filter(|line| line.starts_with("gpgv:"))
            .collect();
        return Err(ReleaseError::BadSignature {
            url: url.to_string(),
            keyring: keyring_names,
            detail: if detail.is_empty() {
                "no signature found".to_string()
            } else {
                detail.join("; ")
            },
        });
    }
    let signer = match fingerprint {
        None => signers[0].1,
        Some(wanted) => signers
            .iter()
            .find(|(key, primary)| {
                key.eq_ignore_ascii_case(wanted) || primary.eq_ignore_ascii_case(wanted)
            })
            .map(|(_, primary)| *primary)
            .ok_or_else(|| ReleaseError::WrongSigner {
                url: url.to_string(),
                wanted: wanted.to_string(),
                found: signers[0].1.to_string(),
            })?,
    };
    Ok(signer.to_string())
}

/// The binary OpenPGP packets of a key file, as gpgv reads keyrings: the
/// file itself, or the decoded body of an ASCII-armored one (`.asc`), which
/// apt accepts and gpgv does not. Anything that does not start with a
/// public-key packet is refused by name.
pub fn read_key(path: &Path) -> Result<Vec<u8>, ReleaseError> {
    let keyring = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReleaseError::MissingKeyring { keyring });
        }
        Err(source) => {
            return Err(ReleaseError::Io {
                url: keyring,
                source,
            });
        }
    };
    let not_a_key = |detail: &str| ReleaseError::NotAKey {
        keyring: keyring.clone(),
        detail: detail.to_string(),
    };
    let binary = if bytes.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        let text = String::from_utf8_lossy(&bytes);
        dearmor(&text).ok_or_else(|| not_a_key("its armor does not decode"))?
    } else if bytes.starts_with(b"-----BEGIN PGP") {
        return Err(not_a_key("it is armored, but not a PUBLIC KEY BLOCK"));
    } else {
        bytes
    };
    // The first packet's tag must be 6, a public key: old format
    // `10tttt ll`, new format `11tttttt`.
    let tag = binary.first().map(|&b| match b {
        b if b & 0xc0 == 0xc0 => b & 0x3f,
        b if b & 0x80 == 0x80 => (b >> 2) & 0x0f,
        _ => 0,
    });
    if tag != Some(6) {
        return Err(not_a_key(if binary.is_empty() {
            "it is empty"
        } else {
            "it does not start with a public key packet"
        }));
    }
    Ok(binary)
}

/// The body of an ASCII-armored block (RFC 4880 §6): the base64 between
/// the blank line after the headers and the `=` checksum line.
pub(crate) fn dearmor(text: &str) -> Option<Vec<u8>> {
    let mut lines = text.lines().map(str::trim_end);
    lines.next()?;
    // Armor headers (`Comment: …`) up to the first blank line.
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
    }
    let mut body = String::new();
    for line in lines {
        if line.starts_with('=') || line.starts_with("-----END") {
            break;
        }
        body.push_str(line);
    }
    base64_decode(&body)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Reads the fields kiln needs from a (verified) Release text.
pub fn parse(text: &str, url: &str) -> Result<Release, ReleaseError> {
    let malformed = |detail: String| ReleaseError::Malformed {
        url: url.to_string(),
        detail,
    };
    let paragraph = Paragraphs::new(text)
        .next()
        .ok_or_else(|| malformed("it is empty".to_string()))?
        .map_err(|e| malformed(e.to_string()))?;
    let words = |name: &str| -> Vec<String> {
        paragraph
            .get(name)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let yes = |name: &str| {
        paragraph
            .get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"))
    };
    let date = paragraph
        .get("Date")
        .ok_or_else(|| malformed("it has no Date".to_string()))?
        .to_string();
    let date_epoch =
        parse_date(&date).ok_or_else(|| malformed(format!("its Date `{date}` is not a date")))?;
    let valid_until_epoch = match paragraph.get("Valid-Until") {
        Some(v) => Some(
            parse_date(v)
                .ok_or_else(|| malformed(format!("its Valid-Until `{v}` is not a date")))?,
        ),
        None => None,
    };
    let mut files = BTreeMap::new();
    let list = paragraph
        .get_multiline("SHA256")
        .ok_or_else(|| malformed("it has no SHA256 list".to_string()))?;
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(hash), Some(size), Some(path), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(format!(
                "the SHA256 line `{line}` is not `hash size path`"
            )));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| malformed(format!("the size in `{line}` is not a number")))?;
        let digest = Digest::new(hash, size).map_err(|e| malformed(format!("`{line}`: {e}")))?;
        files.insert(path.to_string(), digest);
    }
    Ok(Release {
        suite: paragraph.get("Suite").map(str::to_string),
        codename: paragraph.get("Codename").map(str::to_string),
        date,
        date_epoch,
        valid_until_epoch,
        architectures: words("Architectures"),
        components: words("Components"),
        acquire_by_hash: yes("Acquire-By-Hash"),
        not_automatic: yes("NotAutomatic"),
        but_automatic_upgrades: yes("ButAutomaticUpgrades"),
        files,
    })
}

/// Parses an RFC 2822 date as Release files write it —
/// `Sat, 11 Jul 2026 10:16:37 UTC` — into seconds since 1970 (UTC).
pub fn parse_date(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.split_once(", ").map_or(text, |(_, rest)| rest);
    let mut parts = text.split_whitespace();
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    let offset_seconds: i64 = match parts.next() {
        None | Some("UTC" | "GMT" | "Z") => 0,
        Some(zone) => {
            let (sign, digits) = zone.split_at_checked(1)?;
            let value: i64 = digits.parse().ok()?;
            let seconds = (value / 100) * 3600 + (value % 100) * 60;
            match sign {
                "+" => seconds,
                "-" => -seconds,
                _ => return None,
            }
        }
    };
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, i64::try_from(day).ok()?);
    let seconds =
        days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()? - offset_seconds;
    u64::try_from(seconds).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_release_files_write_them() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1_783_764_997)
        );
        assert_eq!(
            parse_date("Sat, 10 Jun 2023 08:56:00 UTC"),
            Some(1_686_387_360)
        );
        assert_eq!(
            parse_date("Sat, 10 Jun 2023 10:56:00 +0200"),
            Some(1_686_387_360)
        );
        assert_eq!(parse_date("29 Feb 2024 00:00:00"), Some(1_709_164_800));
        assert_eq!(parse_date("Sat, 32 Jul 2026 10:16:37 UTC"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn release_fields_and_hashes_are_read() {
        let text = "Origin: Debian\nSuite: oldstable\nCodename: bookworm\n\
                    Date: Sat, 10 Jun 2023 08:56:00 UTC\nAcquire-By-Hash: yes\n\
                    Architectures: all amd64 arm64\nComponents: main contrib\nMD5Sum:\n \
                    f230d61720e789abf5df55d6026230c6 50060337 main/binary-amd64/Packages\nSHA256:\n \
                    515e692f2c4121c6fcec444ef100cc18f79a991910615f3a88c8b7becfc94d2f 50060337 main/binary-amd64/Packages\n \
                    9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5  8790396 main/binary-amd64/Packages.xz\n";
        let release = parse(text, "test").unwrap();
        assert_eq!(release.codename.as_deref(), Some("bookworm"));
        assert_eq!(release.date_epoch, 1_686_387_360);
        assert!(release.acquire_by_hash);
        assert_eq!(release.architectures, ["all", "amd64", "arm64"]);
        assert_eq!(release.files.len(), 2);
        assert_eq!(
            release.files["main/binary-amd64/Packages.xz"].size,
            8_790_396
        );
        assert!(parse("Origin: x\n", "test").is_err());
    }
}

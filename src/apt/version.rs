//! Debian package versions, parsed and ordered exactly as dpkg does.
//!
//! `kiln lock` picks one version of every package out of an archive's
//! `Packages` index and checks it against the `(>= 2.36)`-style constraints in
//! other packages' `Depends`. If kiln ordered versions even slightly
//! differently from dpkg and apt, the lockfile could pin a set of packages
//! that apt inside the image then calls broken, so [`Version`]'s `Ord` is a
//! transcription of dpkg's `verrevcmp` (lib/dpkg/version.c) rather than a
//! reimplementation from the prose in Debian Policy 5.6.12, and the tests
//! compare it against the host's `dpkg --compare-versions`. [`Relation`] is
//! the operator of a dependency's version constraint.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// dpkg stores the epoch in a C `int` and rejects anything larger.
const EPOCH_MAX: u32 = i32::MAX as u32;

/// A Debian version, `[epoch:]upstream_version[-debian_revision]`.
///
/// Equality follows the ordering, not the spelling: `0:1.0`, `1.0`, `1.0-0`
/// and `1.00` are all equal, as they are to dpkg. The spelling as written is
/// kept for [`Display`](fmt::Display), so a version read from an archive is
/// written back into the lockfile unchanged.
#[derive(Clone)]
pub struct Version {
    /// The version exactly as written.
    text: Box<str>,
    /// The epoch, `0` when none is written.
    epoch: u32,
    /// Byte offset in `text` where the upstream version starts (after the
    /// epoch's colon, if any).
    upstream_start: usize,
    /// Byte offset in `text` of the last hyphen, which starts the revision;
    /// `None` when there is no revision.
    revision_hyphen: Option<usize>,
}

/// Why a string is not a Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{version}` is not a valid Debian version: {kind}")]
pub struct VersionError {
    /// The text that was rejected.
    pub version: String,
    /// What is wrong with it.
    pub kind: VersionErrorKind,
}

/// The ways a version can break Debian Policy 5.6.12.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionErrorKind {
    /// Nothing was written.
    #[error("it is empty")]
    Empty,
    /// A colon with nothing before it.
    #[error("the epoch before `:` is empty")]
    EmptyEpoch,
    /// Something other than digits before the first colon.
    #[error("the epoch before the first `:` must be a number")]
    EpochNotNumber,
    /// An epoch dpkg cannot store.
    #[error("the epoch is larger than {EPOCH_MAX}")]
    EpochTooLarge,
    /// Nothing between the epoch and the revision.
    #[error("the upstream version is empty")]
    EmptyUpstream,
    /// A hyphen with nothing after it.
    #[error("the revision after the last `-` is empty")]
    EmptyRevision,
    /// Policy says the upstream version starts with a digit. dpkg only warns
    /// here; kiln refuses, so a `Version` in hand is always one Policy allows.
    #[error("the upstream version must start with a digit")]
    UpstreamStartsWithNonDigit,
    /// A character outside letters, digits and `.+~-:` in the upstream
    /// version.
    #[error(
        "`{0}` is not allowed in the upstream version (only letters, digits and `.+~`, \
         `-` when there is a revision, `:` when there is an epoch)"
    )]
    InvalidUpstreamCharacter(char),
    /// A character outside letters, digits and `.+~` in the revision.
    #[error("`{0}` is not allowed in the revision (only letters, digits and `.+~`)")]
    InvalidRevisionCharacter(char),
}

impl Version {
    /// Parses `[epoch:]upstream_version[-debian_revision]` as dpkg's
    /// `parseversion` does: the epoch ends at the first colon, the revision
    /// starts after the last hyphen. Surrounding whitespace is refused rather
    /// than trimmed; callers reading deb822 fields get trimmed values already.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let fail = |kind| VersionError {
            version: text.to_string(),
            kind,
        };
        if text.is_empty() {
            return Err(fail(VersionErrorKind::Empty));
        }

        let (epoch, upstream_start) = match text.find(':') {
            Some(colon) => {
                let digits = &text[..colon];
                if digits.is_empty() {
                    return Err(fail(VersionErrorKind::EmptyEpoch));
                }
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail(VersionErrorKind::EpochNotNumber));
                }
                // All digits, so the only way to fail is overflow.
                let epoch = digits
                    .parse::<u32>()
                    .ok()
                    .filter(|&epoch| epoch <= EPOCH_MAX)
                    .ok_or_else(|| fail(VersionErrorKind::EpochTooLarge))?;
                (epoch, colon + 1)
            }
            None => (0, 0),
        };

        let rest = &text[upstream_start..];
        let revision_hyphen = rest.rfind('-').map(|hyphen| upstream_start + hyphen);
        let (upstream, revision) = match revision_hyphen {
            Some(hyphen) => (&text[upstream_start..hyphen], Some(&text[hyphen + 1..])),
            None => (rest, None),
        };

        match upstream.chars().next() {
            None => return Err(fail(VersionErrorKind::EmptyUpstream)),
            Some(first) if !first.is_ascii_digit() => {
                // A bad character is the more useful thing to report than
                // "must start with a digit" when the first one is both.
                if !is_upstream_char(first) {
                    return Err(fail(VersionErrorKind::InvalidUpstreamCharacter(first)));
                }
                return Err(fail(VersionErrorKind::UpstreamStartsWithNonDigit));
            }
            Some(_) => {}
        }
        if let Some(bad) = upstream.chars().find(|&c| !is_upstream_char(c)) {
            return Err(fail(VersionErrorKind::InvalidUpstreamCharacter(bad)));
        }
        if let Some(revision) = revision {
            if revision.is_empty() {
                return Err(fail(VersionErrorKind::EmptyRevision));
            }
            if let Some(bad) = revision.chars().find(|&c| !is_revision_char(c)) {
                return Err(fail(VersionErrorKind::InvalidRevisionCharacter(bad)));
            }
        }

        Ok(Version {
            text: text.into(),
            epoch,
            upstream_start,
            revision_hyphen,
        })
    }

    /// The version exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch, `0` when none is written.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version: everything between the epoch's colon and the
    /// revision's hyphen.
    pub fn upstream(&self) -> &str {
        let end = self.revision_hyphen.unwrap_or(self.text.len());
        self.text.get(self.upstream_start..end).unwrap_or_default()
    }

    /// The Debian revision after the last hyphen, if one is written.
    pub fn revision(&self) -> Option<&str> {
        self.revision_hyphen
            .and_then(|hyphen| self.text.get(hyphen + 1..))
    }
}

/// Characters Policy 5.6.12 allows in an upstream version. `-` and `:` can
/// only reach here when a revision or epoch was split off, which is exactly
/// when Policy allows them.
fn is_upstream_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':')
}

/// Characters Policy 5.6.12 allows in a Debian revision.
fn is_revision_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~')
}

/// dpkg's `order()`: the weight of one character in a non-digit part. `~`
/// sorts before the end of the string (weight 0), which sorts before letters,
/// which sort before every other character. Digits weigh 0 like the end of
/// the string because a digit ends the non-digit part.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`, comparing two upstream versions or two revisions.
///
/// The strings alternate between non-digit and digit parts. Non-digit parts
/// compare character by character by [`order`]; digit parts compare as
/// numbers, done here on the digit strings themselves (leading zeros
/// skipped, then the longer run wins, then the first differing digit) so a
/// run of any length compares without overflow.
fn compare_part(a: &[u8], b: &[u8]) -> Ordering {
    let is_digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !is_digit(a, i)) || (j < b.len() && !is_digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            // Equal weights here mean both sides hold the same non-digit
            // character, so neither index runs past its end.
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while is_digit(a, i) && is_digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if is_digit(a, i) {
            return Ordering::Greater;
        }
        if is_digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Feeds `part` to `state` so that parts [`compare_part`] calls equal hash
/// alike: each non-digit run as written, each digit run without its leading
/// zeros.
fn hash_part<H: Hasher>(part: &[u8], state: &mut H) {
    let mut rest = part;
    while !rest.is_empty() {
        let letters = rest.iter().take_while(|b| !b.is_ascii_digit()).count();
        let (non_digits, after) = rest.split_at(letters);
        let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
        let (number, after) = after.split_at(digits);
        let zeros = number.iter().take_while(|&&b| b == b'0').count();
        let number = &number[zeros..];
        // A part of only zeros (as in revision `0`) equals an empty part
        // (no revision), so it must add nothing. That is the only way both
        // runs come out empty: after the first run, every run starts with a
        // non-digit.
        if !(non_digits.is_empty() && number.is_empty()) {
            state.write(non_digits);
            state.write_u8(0xff);
            state.write(number);
            state.write_u8(0xfe);
        }
        rest = after;
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // dpkg compares an absent revision as the empty string.
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream().as_bytes(), other.upstream().as_bytes()))
            .then_with(|| {
                compare_part(
                    self.revision().unwrap_or_default().as_bytes(),
                    other.revision().unwrap_or_default().as_bytes(),
                )
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(self.epoch);
        hash_part(self.upstream().as_bytes(), state);
        // Keeps `1-2` and `12` apart; not needed for correctness.
        state.write_u8(0xfd);
        hash_part(self.revision().unwrap_or_default().as_bytes(), state);
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Version").field(&&*self.text).finish()
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, VersionError> {
        Version::parse(text)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The operator in a version constraint such as `libc6 (>= 2.36)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// `<<`: strictly earlier.
    Earlier,
    /// `<=`, or the obsolete `<` that means the same.
    EarlierOrEqual,
    /// `=`: exactly this version (by comparison, so `1.0` matches `1.0-0`).
    Equal,
    /// `>=`, or the obsolete `>` that means the same.
    LaterOrEqual,
    /// `>>`: strictly later.
    Later,
}

/// A string that is not one of the version relation operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a version relation; write one of `<<`, `<=`, `=`, `>=`, `>>`")]
pub struct UnknownRelation(pub String);

impl Relation {
    /// Whether `candidate` meets the constraint `self bound`; for
    /// `Relation::LaterOrEqual` that reads "candidate >= bound".
    pub fn satisfied_by(self, candidate: &Version, bound: &Version) -> bool {
        let ordering = candidate.cmp(bound);
        match self {
            Relation::Earlier => ordering == Ordering::Less,
            Relation::EarlierOrEqual => ordering != Ordering::Greater,
            Relation::Equal => ordering == Ordering::Equal,
            Relation::LaterOrEqual => ordering != Ordering::Less,
            Relation::Later => ordering == Ordering::Greater,
        }
    }

    /// The operator as Policy writes it today (never the obsolete `<`/`>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Earlier => "<<",
            Relation::EarlierOrEqual => "<=",
            Relation::Equal => "=",
            Relation::LaterOrEqual => ">=",
            Relation::Later => ">>",
        }
    }
}

impl FromStr for Relation {
    type Err = UnknownRelation;

    fn from_str(text: &str) -> Result<Self, UnknownRelation> {
        match text {
            "<<" => Ok(Relation::Earlier),
            // `<` and `>` are obsolete and, surprisingly, not strict: dpkg
            // still reads them as `<=` and `>=`, and old packages use them.
            "<=" | "<" => Ok(Relation::EarlierOrEqual),
            "=" => Ok(Relation::Equal),
            ">=" | ">" => Ok(Relation::LaterOrEqual),
            ">>" => Ok(Relation::Later),
            _ => Err(UnknownRelation(text.to_string())),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;
    use std::process::Command;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn hash_of(version: &Version) -> u64 {
        let mut hasher = DefaultHasher::new();
        version.hash(&mut hasher);
        hasher.finish()
    }

    /// Pairs and the ordering `dpkg --compare-versions` gives them, checked
    /// by hand against dpkg 1.21.22 and again by `table_agrees_with_dpkg`.
    /// Many come from dpkg's own t/version.t and lib/dpkg/t/t-version.c.
    const KNOWN: &[(&str, Ordering, &str)] = &[
        ("1.0~rc1", Ordering::Less, "1.0"),
        ("1:0.1", Ordering::Greater, "2.0"),
        ("1.0-1", Ordering::Less, "1.0-2"),
        ("2.30-1+b1", Ordering::Greater, "2.30-1"),
        ("2.30-1+b1", Ordering::Less, "2.30-2"),
        ("7.6p2-4", Ordering::Greater, "7.6-0"),
        ("7.6p2-4", Ordering::Less, "7.6p10-1"),
        ("1.0a", Ordering::Less, "1.0b"),
        ("1.0", Ordering::Less, "1.0a"),
        ("1.0~", Ordering::Less, "1.0"),
        ("1.0~~", Ordering::Less, "1.0~"),
        ("1.0~~a", Ordering::Greater, "1.0~~"),
        ("0:1.0", Ordering::Equal, "1.0"),
        // An absent revision compares as the empty string, and a digit run
        // of only zeros as an empty one, so these are the same version.
        ("1.0", Ordering::Equal, "1.0-0"),
        ("1.0-0", Ordering::Equal, "1.0-00"),
        ("1", Ordering::Less, "1-0.0"),
        ("0:0", Ordering::Equal, "0"),
        ("0", Ordering::Equal, "00"),
        ("1.01", Ordering::Equal, "1.1"),
        ("1.0", Ordering::Equal, "1."),
        ("1.0", Ordering::Less, "1.0.0"),
        ("1.0", Ordering::Less, "1.0+"),
        ("1.0+", Ordering::Less, "1.0."),
        ("1.0a", Ordering::Less, "1.0+"),
        ("1.0A", Ordering::Less, "1.0a"),
        ("1.0-a", Ordering::Greater, "1.0-0"),
        ("2.6.32", Ordering::Greater, "2.6.4"),
        ("2:1.0", Ordering::Less, "10:0.1"),
        ("10:1", Ordering::Greater, "9:2"),
        ("1.2.3-4-5", Ordering::Greater, "1.2.3-4"),
        ("1.0-1~bpo1", Ordering::Less, "1.0-1"),
        ("1.0-1", Ordering::Less, "1.0-1+deb12u1"),
        ("1~", Ordering::Less, "1-~"),
        ("1:2.39.5", Ordering::Less, "1:2.39.5-."),
        ("72.1~rc-1~", Ordering::Less, "72.1-1"),
        // Longer than any machine integer: compared as digit strings.
        (
            "99999999999999999999999",
            Ordering::Greater,
            "99999999999999999999998",
        ),
        (
            "1.000000000000000000000000000000000000001",
            Ordering::Equal,
            "1.1",
        ),
        // From dpkg's t-version.c.
        ("1.2-3", Ordering::Equal, "1.2-3"),
        ("0:1.2-3", Ordering::Equal, "1.2-3"),
        ("1.2-3", Ordering::Less, "1.2-4"),
        ("1.2-4", Ordering::Greater, "1.2-3"),
        ("1:1.2-4", Ordering::Greater, "0:1.2-3"),
        ("0:1.2-4", Ordering::Greater, "1.2-3"),
        ("0:1.2-3", Ordering::Less, "1.2-4"),
        ("1.2-3", Ordering::Greater, "0:1.1-3"),
        ("0:1.1-3", Ordering::Less, "1.2-3"),
        ("1:1.1-3", Ordering::Greater, "1.2-3"),
        ("1.2-3~0", Ordering::Less, "1.2-3"),
    ];

    #[test]
    fn known_pairs_compare_as_dpkg_does() {
        for &(a, expected, b) in KNOWN {
            let (a, b) = (v(a), v(b));
            assert_eq!(a.cmp(&b), expected, "{a} vs {b}");
            assert_eq!(b.cmp(&a), expected.reverse(), "{b} vs {a}");
            assert_eq!(a == b, expected == Ordering::Equal, "{a} == {b}");
            if a == b {
                assert_eq!(hash_of(&a), hash_of(&b), "{a} and {b} hash alike");
            }
        }
    }

    /// Asks the host's dpkg how `a` and `b` compare. kiln's test suite runs
    /// on Debian (see scripts/test), so a missing dpkg is a failure, not a
    /// skip: the point of these tests is that they really ran.
    fn dpkg_compare(a: &str, b: &str) -> Ordering {
        let holds = |op: &str| {
            let status = Command::new("dpkg")
                .args(["--compare-versions", a, op, b])
                .status()
                .expect("dpkg --compare-versions runs (kiln's tests need a Debian host)");
            match status.code() {
                Some(0) => true,
                Some(1) => false,
                _ => panic!("dpkg --compare-versions {a} {op} {b} failed: {status}"),
            }
        };
        if holds("lt") {
            Ordering::Less
        } else if holds("eq") {
            Ordering::Equal
        } else {
            Ordering::Greater
        }
    }

    #[test]
    fn table_agrees_with_dpkg() {
        for &(a, expected, b) in KNOWN {
            assert_eq!(dpkg_compare(a, b), expected, "dpkg on {a} vs {b}");
        }
    }

    #[test]
    fn parts_are_split_as_dpkg_splits_them() {
        let version = v("1:2.30:x-1-2+b1");
        assert_eq!(version.epoch(), 1);
        assert_eq!(version.upstream(), "2.30:x-1");
        assert_eq!(version.revision(), Some("2+b1"));
        assert_eq!(version.as_str(), "1:2.30:x-1-2+b1");

        let version = v("7.6p2");
        assert_eq!(version.epoch(), 0);
        assert_eq!(version.upstream(), "7.6p2");
        assert_eq!(version.revision(), None);

        assert_eq!(v("0002147483647:1").epoch(), 2_147_483_647);
    }

    #[test]
    fn display_keeps_the_spelling_that_equality_ignores() {
        assert_eq!(v("0:1.00").to_string(), "0:1.00");
        assert_eq!(v("0:1.00"), v("1.0"));
    }

    #[test]
    fn bad_versions_say_what_is_wrong() {
        let kind = |text: &str| Version::parse(text).unwrap_err().kind;
        assert_eq!(kind(""), VersionErrorKind::Empty);
        assert_eq!(kind(":1.0"), VersionErrorKind::EmptyEpoch);
        assert_eq!(kind("a:1.0"), VersionErrorKind::EpochNotNumber);
        assert_eq!(kind("1.0:1"), VersionErrorKind::EpochNotNumber);
        assert_eq!(kind("-1:1.0"), VersionErrorKind::EpochNotNumber);
        assert_eq!(kind("2147483648:1"), VersionErrorKind::EpochTooLarge);
        assert_eq!(
            kind("99999999999999999999:1"),
            VersionErrorKind::EpochTooLarge
        );
        assert_eq!(kind("1:"), VersionErrorKind::EmptyUpstream);
        assert_eq!(kind("-1"), VersionErrorKind::EmptyUpstream);
        assert_eq!(kind("1:-1"), VersionErrorKind::EmptyUpstream);
        assert_eq!(kind("1.0-"), VersionErrorKind::EmptyRevision);
        assert_eq!(kind("a1.0"), VersionErrorKind::UpstreamStartsWithNonDigit);
        assert_eq!(
            kind("1.0 "),
            VersionErrorKind::InvalidUpstreamCharacter(' ')
        );
        assert_eq!(
            kind("1.0_2"),
            VersionErrorKind::InvalidUpstreamCharacter('_')
        );
        assert_eq!(
            kind("_1.0"),
            VersionErrorKind::InvalidUpstreamCharacter('_')
        );
        assert_eq!(
            kind("1.0é"),
            VersionErrorKind::InvalidUpstreamCharacter('é')
        );
        assert_eq!(
            kind("1:1.0-1:2"),
            VersionErrorKind::InvalidRevisionCharacter(':')
        );
        assert_eq!(
            kind("1.0-1_2"),
            VersionErrorKind::InvalidRevisionCharacter('_')
        );
        assert_eq!(
            Version::parse("1.0-").unwrap_err().to_string(),
            "`1.0-` is not a valid Debian version: the revision after the last `-` is empty"
        );
    }

    #[test]
    fn relations_read_every_spelling_dpkg_accepts() {
        let (older, newer) = (v("1.0"), v("1.1"));
        let cases = [
            ("<<", true, false, false),
            ("<=", true, true, false),
            ("<", true, true, false),
            ("=", false, true, false),
            (">=", false, true, true),
            (">", false, true, true),
            (">>", false, false, true),
        ];
        for (op, below, equal, above) in cases {
            let relation: Relation = op.parse().unwrap();
            assert_eq!(relation.satisfied_by(&older, &newer), below, "1.0 {op} 1.1");
            assert_eq!(relation.satisfied_by(&newer, &newer), equal, "1.1 {op} 1.1");
            assert_eq!(relation.satisfied_by(&newer, &older), above, "1.1 {op} 1.0");
        }
        assert_eq!("<".parse::<Relation>().unwrap().to_string(), "<=");
        assert!("=>".parse::<Relation>().is_err());
        assert!("==".parse::<Relation>().is_err());
        assert!(Relation::Equal.satisfied_by(&v("1.0-0"), &v("1.0")));
    }

    #[test]
    fn serde_round_trips_the_spelling() {
        let version = v("1:2.0-1");
        let json = serde_json::to_string(&version).unwrap();
        assert_eq!(json, "\"1:2.0-1\"");
        let back: Version = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), "1:2.0-1");
        assert!(serde_json::from_str::<Version>("\"1.0-\"").is_err());
    }

    /// Valid versions, drawn from a small alphabet so that random pairs share
    /// prefixes and land on every branch of the comparison (`~` against the
    /// end of the string, runs of zeros, letters against punctuation).
    fn version_text() -> impl Strategy<Value = String> {
        let upstream_tail = prop_oneof![
            "[0-9a.~+]{0,8}",
            "[0-9A-Za-z.~+]{0,12}",
            // Long digit runs, beyond u64.
            "[0-9]{15,30}(\\.[0-9]{0,25})?",
        ];
        (
            prop::option::of(prop_oneof![0u32..3, 0u32..=EPOCH_MAX]),
            "[0-9]",
            upstream_tail,
            // Colons inside the upstream version need an epoch, hyphens need
            // a revision; these get inserted only when that holds.
            prop::option::of("[0-9a~.]{0,3}"),
            prop::option::of("[0-9a~.+]{1,6}"),
        )
            .prop_map(|(epoch, first, tail, inner, revision)| {
                let mut text = String::new();
                if let Some(epoch) = epoch {
                    text.push_str(&format!("{epoch}:"));
                }
                text.push_str(&first);
                text.push_str(&tail);
                if let Some(inner) = inner {
                    if epoch.is_some() {
                        text.push(':');
                        text.push_str(&inner);
                    }
                    if revision.is_some() {
                        text.push('-');
                        text.push_str(&inner);
                    }
                }
                if let Some(revision) = revision {
                    text.push('-');
                    text.push_str(&revision);
                }
                text
            })
    }

    /// A second version that is often a near neighbour of the first, so
    /// equal and barely-different pairs are common.
    fn version_pair() -> impl Strategy<Value = (String, String)> {
        let suffix = prop::sample::select(vec![
            "", "~", "~~", "0", "00", "a", "A", "+", ".", ".0", "-0", "-1", "~1", "+b1",
        ]);
        prop_oneof![
            (version_text(), version_text()),
            // Every suffix keeps the text valid: a `-…` suffix turns an old
            // revision into the tail of the upstream version, and revision
            // characters are all allowed there.
            (version_text(), suffix).prop_map(|(a, suffix)| {
                let b = format!("{a}{suffix}");
                (a, b)
            }),
            // A shared prefix with two different endings puts every pair of
            // characters against each other at the same position.
            // Digit-only endings of equal length exercise the
            // first-differing-digit rule.
            (
                version_text(),
                prop_oneof!["[0-9aZ.~+]{0,4}", "[0-9]{2,3}"],
                prop_oneof!["[0-9aZ.~+]{0,4}", "[0-9]{2,3}"],
            )
                .prop_map(|(prefix, x, y)| (format!("{prefix}{x}"), format!("{prefix}{y}"))),
            version_text().prop_map(|a| {
                // Same version with a zero written in front of every digit
                // run of the upstream part: equal to dpkg.
                let mut b = String::new();
                let mut previous_digit = false;
                let upstream_at = a.find(':').map_or(0, |c| c + 1);
                for (i, c) in a.char_indices() {
                    if i >= upstream_at && c.is_ascii_digit() && !previous_digit {
                        b.push('0');
                    }
                    previous_digit = c.is_ascii_digit();
                    b.push(c);
                }
                (a, b)
            }),
        ]
    }

    proptest! {
        #[test]
        fn generated_versions_parse_and_display_round_trips(text in version_text()) {
            let version = Version::parse(&text).unwrap();
            prop_assert_eq!(version.to_string(), text.clone());
            let again = Version::parse(&version.to_string()).unwrap();
            prop_assert_eq!(again.as_str(), version.as_str());
            prop_assert_eq!(again.epoch(), version.epoch());
            prop_assert_eq!(again.upstream(), version.upstream());
            prop_assert_eq!(again.revision(), version.revision());
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = Version::parse(&text);
        }

        #[test]
        fn ordering_is_a_total_order(
            a in version_text(),
            b in version_text(),
            c in version_text(),
        ) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(a.cmp(&a), Ordering::Equal);
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            if a <= b && b <= c {
                prop_assert!(a <= c, "{} <= {} <= {} but not {} <= {}", a, b, c, a, c);
            }
            if a == b && b == c {
                prop_assert_eq!(&a, &c);
            }
        }

        #[test]
        fn near_neighbours_order_consistently((a, b) in version_pair()) {
            let (a, b) = (v(&a), v(&b));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
            if a == b {
                prop_assert_eq!(hash_of(&a), hash_of(&b), "{} and {} hash alike", a, b);
            }
        }
    }

    proptest! {
        // Each case spawns up to two dpkg processes (~1 ms each), so fewer
        // cases than the default would still run in a couple of seconds;
        // 300 keeps `cargo test` quick while covering every suffix kind.
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn ordering_agrees_with_dpkg((a, b) in version_pair()) {
            let (va, vb) = (v(&a), v(&b));
            prop_assert_eq!(va.cmp(&vb), dpkg_compare(&a, &b), "{} vs {}", a, b);
        }
    }
}

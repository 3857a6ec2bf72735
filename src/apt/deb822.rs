//! Reading deb822 control data: the `Name: value` paragraphs of `Packages`,
//! `InRelease` and dpkg's `status`, and the relationship fields inside them.
//!
//! A `Packages` index for one Debian suite is around 50 MB and 63 000
//! paragraphs, and `kiln lock` reads it on every run, so [`Paragraphs`] walks
//! the text lazily and hands out slices of it: a paragraph costs one `Vec` of
//! field slices, a field costs nothing. It accepts what dpkg and apt accept
//! (continuation lines, `#` comments, CRLF line ends) and refuses, with a
//! line number, what they would misread. The text must already be free of
//! its OpenPGP armour; checking and stripping that is the caller's job.
//!
//! [`ParagraphReader`] does the same for a stream (a file, a decompressing
//! reader): it holds one paragraph's text at a time, so reading an index
//! costs what the caller keeps of it, not the index's size.
//!
//! [`parse_relationships`] and [`parse_provides`] read the value of
//! `Depends`-style fields (Debian Policy 7.1) into typed alternatives with
//! [`Version`] constraints.

use std::fmt;
use std::io::{self, BufRead};
use std::iter::FusedIterator;

use super::version::{Relation, UnknownRelation, Version, VersionError};

/// Most `Packages` paragraphs have 12 to 16 fields; reserving this many up
/// front saves the `Vec` from regrowing in the common case.
const USUAL_FIELD_COUNT: usize = 16;

/// Error messages quote at most this many characters of the offending text,
/// so a corrupt multi-megabyte line does not become a multi-megabyte error.
const EXCERPT_CHARS: usize = 60;

/// The paragraphs of a deb822 text, parsed one at a time as the iterator
/// advances.
///
/// After the first error the iterator ends: a half-read index must not look
/// like a complete one.
#[derive(Debug, Clone)]
pub struct Paragraphs<'a> {
    text: &'a str,
    /// Byte offset of the next line to read.
    pos: usize,
    /// Number of lines read so far, so the 1-based number of the line just
    /// read.
    line: usize,
    done: bool,
}

/// One paragraph (stanza): its fields in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph<'a> {
    fields: Vec<Field<'a>>,
    line: usize,
}

/// One `Name: value` field, borrowed from the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    name: &'a str,
    /// Everything after the colon up to the end of the last continuation
    /// line, untrimmed.
    raw: &'a str,
    line: usize,
}

/// A field value read as lines, for fields such as `Description`,
/// `Conffiles` and `SHA256` whose continuation lines are separate records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multiline<'a> {
    raw: &'a str,
}

/// A line of deb822 text that dpkg and apt would not read as intended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deb822Error {
    /// A line that is not blank, not a comment, not indented, and has no
    /// colon.
    #[error(
        "line {line}: `{text}` is neither a `Name: value` field nor an indented continuation line"
    )]
    MissingColon {
        /// 1-based line number.
        line: usize,
        /// The start of the line.
        text: String,
    },
    /// A line starting with a colon.
    #[error("line {line}: the field name before `:` is empty")]
    EmptyFieldName {
        /// 1-based line number.
        line: usize,
    },
    /// A field name with spaces, control or non-ASCII characters, or a
    /// leading `-` (which deb822 reserves for OpenPGP armour).
    #[error(
        "line {line}: `{name}` is not a field name (printable ASCII without spaces, not starting with `-`)"
    )]
    InvalidFieldName {
        /// 1-based line number.
        line: usize,
        /// The start of the name as written.
        name: String,
    },
    /// The same field twice in one paragraph (names compared ignoring case).
    #[error("line {line}: field `{name}` was already given on line {first_line} of this paragraph")]
    DuplicateField {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The name as written the second time.
        name: String,
        /// 1-based line number of the first occurrence.
        first_line: usize,
    },
    /// An indented line with no field before it in the paragraph.
    #[error("line {line}: indented continuation line with no field before it")]
    ContinuationBeforeField {
        /// 1-based line number.
        line: usize,
    },
    /// An indented line right after a comment. Other tools would join it to
    /// the field before the comment; kiln's borrowed values cannot skip the
    /// comment, so it refuses rather than return the comment as part of the
    /// value.
    #[error(
        "line {line}: continuation line after a comment line; move the comment out of the field"
    )]
    ContinuationAfterComment {
        /// 1-based line number.
        line: usize,
    },
}

impl Deb822Error {
    /// The 1-based number of the line the error is about.
    pub fn line(&self) -> usize {
        match *self {
            Deb822Error::MissingColon { line, .. }
            | Deb822Error::EmptyFieldName { line }
            | Deb822Error::InvalidFieldName { line, .. }
            | Deb822Error::DuplicateField { line, .. }
            | Deb822Error::ContinuationBeforeField { line }
            | Deb822Error::ContinuationAfterComment { line } => line,
        }
    }
}

/// The first [`EXCERPT_CHARS`] characters of `text`, marked when cut, so a
/// corrupt value does not become a huge error message.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

impl<'a> Paragraphs<'a> {
    /// Starts reading paragraphs from `text`; nothing is parsed until the
    /// iterator is advanced.
    pub fn new(text: &'a str) -> Self {
        Paragraphs::after_line(text, 0)
    }

    /// Like [`Paragraphs::new`] for a `text` that starts after line
    /// `lines_before` of a longer one, so line numbers count from there.
    fn after_line(text: &'a str, lines_before: usize) -> Self {
        Paragraphs {
            text,
            pos: 0,
            line: lines_before,
            done: false,
        }
    }

    fn fail(&mut self, error: Deb822Error) -> Option<Result<Paragraph<'a>, Deb822Error>> {
        self.done = true;
        Some(Err(error))
    }
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph<'a>, Deb822Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let text = self.text;
        let mut fields: Vec<Field<'a>> = Vec::with_capacity(USUAL_FIELD_COUNT);
        let mut first_line = 0;
        // Where the value of the last field starts, while continuation lines
        // may still extend it; a comment line closes it.
        let mut open_value: Option<usize> = None;
        let mut after_comment = false;

        while let Some(rest) = text.get(self.pos..).filter(|rest| !rest.is_empty()) {
            let line_start = self.pos;
            let (line, advance) = match rest.find('\n') {
                Some(end) => (&rest[..end], end + 1),
                None => (rest, rest.len()),
            };
            self.pos += advance;
            self.line += 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line_end = line_start + line.len();

            match line.as_bytes().first() {
                None => {
                    if !fields.is_empty() {
                        return Some(Ok(Paragraph {
                            fields,
                            line: first_line,
                        }));
                    }
                }
                Some(b'#') => {
                    open_value = None;
                    after_comment = true;
                }
                Some(b' ' | b'\t') => match open_value {
                    // dpkg and apt read an indented line as a continuation
                    // even when it is only whitespace, so it stays in the
                    // value rather than ending the paragraph.
                    Some(value_start) => {
                        if let Some(field) = fields.last_mut() {
                            field.raw = &text[value_start..line_end];
                        }
                    }
                    // With no field to continue, a whitespace-only line can
                    // only be meant as blank (deb822(5) allows that).
                    None if line.trim_ascii().is_empty() => {
                        if !fields.is_empty() {
                            return Some(Ok(Paragraph {
                                fields,
                                line: first_line,
                            }));
                        }
                    }
                    None if after_comment && !fields.is_empty() => {
                        let line = self.line;
                        return self.fail(Deb822Error::ContinuationAfterComment { line });
                    }
                    None => {
                        let line = self.line;
                        return self.fail(Deb822Error::ContinuationBeforeField { line });
                    }
                },
                Some(_) => {
                    let Some(colon) = line.find(':') else {
                        let error = Deb822Error::MissingColon {
                            line: self.line,
                            text: excerpt(line),
                        };
                        return self.fail(error);
                    };
                    let name = &line[..colon];
                    if name.is_empty() {
                        let line = self.line;
                        return self.fail(Deb822Error::EmptyFieldName { line });
                    }
                    if name.starts_with('-') || !name.bytes().all(|b| b.is_ascii_graphic()) {
                        let error = Deb822Error::InvalidFieldName {
                            line: self.line,
                            name: excerpt(name),
                        };
                        return self.fail(error);
                    }
                    if let Some(first) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
                        let error = Deb822Error::DuplicateField {
                            line: self.line,
                            name: name.to_string(),
                            first_line: first.line,
                        };
                        return self.fail(error);
                    }
                    if fields.is_empty() {
                        first_line = self.line;
                    }
                    let value_start = line_start + colon + 1;
                    fields.push(Field {
                        name,
                        raw: &text[value_start..line_end],
                        line: self.line,
                    });
                    open_value = Some(value_start);
                    after_comment = false;
                }
            }
        }

        self.done = true;
        (!fields.is_empty()).then_some(Ok(Paragraph {
            fields,
            line: first_line,
        }))
    }
}

impl FusedIterator for Paragraphs<'_> {}

/// The paragraphs of a deb822 stream, read one stretch of text at a time.
///
/// Each call of [`ParagraphReader::next_text`] reads up to the next empty
/// line (the only line that ends a paragraph whatever came before it) and
/// hands out [`Paragraphs`] over that text, with line numbers counted from
/// the start of the stream; the text is dropped on the next call. Usually
/// that is one paragraph; a comment alone gives none, and a
/// whitespace-only line after a comment can end one early, exactly as
/// [`Paragraphs`] reads the whole text.
#[derive(Debug)]
pub struct ParagraphReader<R> {
    reader: R,
    /// The current stretch of text, reused so a stream costs one buffer.
    text: Vec<u8>,
    /// Lines read before the current stretch.
    lines_before: usize,
    /// Lines read so far, including the current stretch.
    lines: usize,
}

impl<R: BufRead> ParagraphReader<R> {
    /// Starts reading `reader`; nothing is read until
    /// [`ParagraphReader::next_text`] is called.
    pub fn new(reader: R) -> Self {
        ParagraphReader {
            reader,
            text: Vec::new(),
            lines_before: 0,
            lines: 0,
        }
    }

    /// The paragraphs of the next stretch of text, or `None` at the end of
    /// the stream. Text that is not UTF-8 is an [`io::ErrorKind::InvalidData`]
    /// error naming its line.
    pub fn next_text(&mut self) -> io::Result<Option<Paragraphs<'_>>> {
        self.text.clear();
        self.lines_before = self.lines;
        loop {
            let start = self.text.len();
            if self.reader.read_until(b'\n', &mut self.text)? == 0 {
                break;
            }
            self.lines += 1;
            let line = &self.text[start..];
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
                if start > 0 {
                    break;
                }
                // Empty lines between paragraphs: nothing to keep.
                self.text.clear();
                self.lines_before = self.lines;
            }
        }
        if self.text.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(&self.text).map_err(|error| {
            let valid = &self.text[..error.valid_up_to()];
            let line = self.lines_before + 1 + valid.iter().filter(|&&b| b == b'\n').count();
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {line}: the text is not UTF-8"),
            )
        })?;
        Ok(Some(Paragraphs::after_line(text, self.lines_before)))
    }
}

impl<'a> Paragraph<'a> {
    /// The field called `name` (ignoring ASCII case), if present.
    pub fn field(&self, name: &str) -> Option<&Field<'a>> {
        self.fields
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
    }

    /// The value of the field called `name` (ignoring ASCII case), trimmed.
    ///
    /// For a single-line field that is the whole value. A field folded over
    /// several lines (as `Tag` is in `Packages`, or `Depends` can be) comes
    /// back as one slice with its line breaks still inside; parsers that
    /// treat all whitespace alike, such as [`parse_relationships`], can use
    /// it as it is. For fields whose lines are separate records use
    /// [`Paragraph::get_multiline`].
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.field(name).map(Field::value)
    }

    /// The value of the field called `name` (ignoring ASCII case), read as
    /// lines.
    pub fn get_multiline(&self, name: &str) -> Option<Multiline<'a>> {
        self.field(name).map(Field::multiline)
    }

    /// Every field, in the order written.
    pub fn fields(&self) -> &[Field<'a>] {
        &self.fields
    }

    /// The 1-based line number of the paragraph's first field.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<'a> Field<'a> {
    /// The name as written, with its original capitalisation.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The value with surrounding whitespace trimmed; see
    /// [`Paragraph::get`] for what that means for folded fields.
    pub fn value(&self) -> &'a str {
        self.raw.trim_ascii()
    }

    /// The value read as lines.
    pub fn multiline(&self) -> Multiline<'a> {
        Multiline { raw: self.raw }
    }

    /// The 1-based line number the field starts on.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<'a> Multiline<'a> {
    /// The text on the field's own line, trimmed: a `Description`'s
    /// synopsis, or empty for `Conffiles` and `SHA256`.
    pub fn first_line(self) -> &'a str {
        self.raw.split('\n').next().unwrap_or_default().trim_ascii()
    }

    /// The continuation lines, each without its one leading space or tab and
    /// without trailing whitespace, and a lone `.` (Policy's way of writing
    /// an empty line in a `Description`) as an empty line. Deeper
    /// indentation is kept: in a `Description` it marks verbatim text.
    pub fn lines(self) -> impl Iterator<Item = &'a str> {
        self.raw.split('\n').skip(1).map(|line| {
            // Every continuation line starts with one ASCII space or tab, so
            // byte 1 is a character boundary.
            let line = line.get(1..).unwrap_or_default().trim_ascii_end();
            if line == "." { "" } else { line }
        })
    }
}

/// One comma-separated entry of a relationship field: it is satisfied when
/// any one of its alternatives is. Owned, so a package index keeps what
/// this parser returns as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The `|`-separated alternatives, in order of preference.
    pub alternatives: Vec<Alternative>,
}

/// One package a [`Dependency`] can be satisfied by, with its conditions:
/// `name[:arch] [(op version)] [[arch …]] [<profile …> …]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The package name (or virtual package name).
    pub package: String,
    /// The `:any`, `:native` or `:amd64` after the name, without its colon.
    pub arch_qualifier: Option<String>,
    /// The version the package must have, if any.
    pub version: Option<VersionConstraint>,
    /// The `[amd64 !i386]` list: the alternative only applies on these
    /// architectures (or on all but the negated ones). Empty when
    /// unrestricted. Binary `Packages` files never carry these; source
    /// `Build-Depends` do.
    pub architectures: Vec<RestrictionTerm>,
    /// The `<!nocheck> <stage1 cross>` build-profile formula: the
    /// alternative applies when every term of any one group holds. Empty when
    /// unrestricted. Like architectures, only source packages use these.
    pub profiles: Vec<Vec<RestrictionTerm>>,
}

/// A version constraint such as `(>= 2.36)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConstraint {
    /// The operator.
    pub relation: Relation,
    /// The version on the right of the operator.
    pub version: Version,
}

/// One architecture or build profile in a restriction list, possibly negated
/// with `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictionTerm {
    /// Whether the term was written with a leading `!`.
    pub negated: bool,
    /// The architecture (`amd64`, `linux-any`) or profile (`nocheck`) name.
    pub name: String,
}

/// One entry of a `Provides` field: a virtual package, optionally at an
/// exact version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provided {
    /// The name provided.
    pub package: String,
    /// The version provided, from `(= VERSION)`; an unversioned `Provides`
    /// cannot satisfy a versioned dependency.
    pub version: Option<Version>,
}

/// A relationship field entry that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not a valid relationship: {kind}")]
pub struct RelationshipError {
    /// The entry (or the start of it) that was rejected.
    pub entry: String,
    /// What is wrong with it.
    pub kind: RelationshipErrorKind,
}

/// The ways a relationship entry can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationshipErrorKind {
    /// Nothing between two commas (a single trailing comma is allowed).
    #[error("an entry between commas is empty")]
    EmptyEntry,
    /// Nothing on one side of a `|`.
    #[error("an alternative next to `|` is empty")]
    EmptyAlternative,
    /// A package name that breaks dpkg's rules (starts with a letter or
    /// digit; then letters, digits and `-+._`).
    #[error("`{0}` is not a package name")]
    InvalidPackageName(String),
    /// Something after `name:` that is not an architecture name.
    #[error("`{0}` is not an architecture qualifier")]
    InvalidArchQualifier(String),
    /// A `(`, `[` or `<` with no matching close.
    #[error("the `{0}` is never closed")]
    Unclosed(char),
    /// A version in parentheses with no operator, such as `(1.0)`.
    #[error("the version constraint has no operator; write `(>= VERSION)` or similar")]
    MissingRelation,
    /// An operator that is not one of the five Policy allows.
    #[error(transparent)]
    UnknownRelation(#[from] UnknownRelation),
    /// An operator with no version after it.
    #[error("there is no version after `{0}`")]
    MissingVersion(Relation),
    /// A version that is not a valid Debian version.
    #[error(transparent)]
    InvalidVersion(#[from] VersionError),
    /// `[]` or `<>`.
    #[error("the `{0}…` list is empty")]
    EmptyRestriction(char),
    /// A term in `[…]` that is not an architecture name.
    #[error("`{0}` is not an architecture")]
    InvalidArchitecture(String),
    /// A term in `<…>` that is not a build profile name.
    #[error("`{0}` is not a build profile")]
    InvalidProfile(String),
    /// Text after the last part an entry can have, or parts out of order.
    #[error("`{0}` is not expected here")]
    UnexpectedText(String),
    /// `|` in a `Provides` field.
    #[error("`Provides` cannot list alternatives with `|`")]
    ProvidesAlternatives,
    /// A `Provides` version other than `(= VERSION)`.
    #[error("`Provides` can only give an exact version `(= VERSION)`, not `{0}`")]
    ProvidesRelation(Relation),
    /// A `Provides` entry with an architecture qualifier, architecture list
    /// or build profiles.
    #[error(
        "`Provides` entries cannot carry architecture qualifiers, restrictions or build profiles"
    )]
    ProvidesRestricted,
}

/// Reads a relationship field value (`Depends`, `Pre-Depends`,
/// `Recommends`, `Breaks`, `Build-Depends`, …) into its comma-separated
/// entries. Line breaks count as whitespace, so folded values from
/// [`Paragraph::get`] work. An empty value, or one trailing comma, is
/// allowed; any other empty entry is an error.
pub fn parse_relationships(value: &str) -> Result<Vec<Dependency>, RelationshipError> {
    let mut dependencies = Vec::new();
    let mut entries = value.split(',').peekable();
    while let Some(entry) = entries.next() {
        if entry.trim_ascii().is_empty() {
            if entries.peek().is_none() {
                break;
            }
            return Err(RelationshipError {
                entry: excerpt(value.trim_ascii()),
                kind: RelationshipErrorKind::EmptyEntry,
            });
        }
        let alternatives = entry
            .split('|')
            .map(parse_alternative)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|kind| RelationshipError {
                entry: excerpt(entry.trim_ascii()),
                kind,
            })?;
        dependencies.push(Dependency { alternatives });
    }
    Ok(dependencies)
}

/// Reads a `Provides` field value: like [`parse_relationships`], but each
/// entry is a single name with at most an exact `(= VERSION)`.
pub fn parse_provides(value: &str) -> Result<Vec<Provided>, RelationshipError> {
    parse_relationships(value)?
        .into_iter()
        .map(provided)
        .collect()
}

/// Checks that one relationship entry is something a package can provide.
fn provided(dependency: Dependency) -> Result<Provided, RelationshipError> {
    let fail = |entry: &dyn fmt::Display, kind| RelationshipError {
        entry: excerpt(&entry.to_string()),
        kind,
    };
    let alternative = match <[Alternative; 1]>::try_from(dependency.alternatives) {
        Ok([alternative]) => alternative,
        Err(alternatives) => {
            return Err(fail(
                &Dependency { alternatives },
                RelationshipErrorKind::ProvidesAlternatives,
            ));
        }
    };
    if alternative.arch_qualifier.is_some()
        || !alternative.architectures.is_empty()
        || !alternative.profiles.is_empty()
    {
        return Err(fail(
            &alternative,
            RelationshipErrorKind::ProvidesRestricted,
        ));
    }
    if let Some(constraint) = &alternative.version
        && constraint.relation != Relation::Equal
    {
        return Err(fail(
            &alternative,
            RelationshipErrorKind::ProvidesRelation(constraint.relation),
        ));
    }
    Ok(Provided {
        package: alternative.package,
        version: alternative.version.map(|constraint| constraint.version),
    })
}

/// Reads one `|`-separated alternative.
fn parse_alternative(text: &str) -> Result<Alternative, RelationshipErrorKind> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(RelationshipErrorKind::EmptyAlternative);
    }
    let ends_word = |c: char| c.is_ascii_whitespace() || matches!(c, ':' | '(' | '[' | '<');

    let name_end = text.find(ends_word).unwrap_or(text.len());
    let package = &text[..name_end];
    if !is_package_name(package) {
        return Err(RelationshipErrorKind::InvalidPackageName(excerpt(package)));
    }
    let mut rest = &text[name_end..];

    let mut arch_qualifier = None;
    if let Some(after) = rest.strip_prefix(':') {
        let end = after.find(ends_word).unwrap_or(after.len());
        let qualifier = &after[..end];
        if !is_architecture(qualifier) {
            return Err(RelationshipErrorKind::InvalidArchQualifier(excerpt(
                qualifier,
            )));
        }
        arch_qualifier = Some(qualifier.to_string());
        rest = &after[end..];
    }
    rest = rest.trim_ascii_start();

    let mut version = None;
    if let Some((inside, after)) = bracketed(rest, '(', ')')? {
        version = Some(parse_constraint(inside)?);
        rest = after;
    }

    let mut architectures = Vec::new();
    if let Some((inside, after)) = bracketed(rest, '[', ']')? {
        architectures = parse_terms(inside, '[', is_architecture, |name| {
            RelationshipErrorKind::InvalidArchitecture(excerpt(name))
        })?;
        rest = after;
    }

    let mut profiles = Vec::new();
    while let Some((inside, after)) = bracketed(rest, '<', '>')? {
        profiles.push(parse_terms(inside, '<', is_profile, |name| {
            RelationshipErrorKind::InvalidProfile(excerpt(name))
        })?);
        rest = after;
    }

    if !rest.is_empty() {
        return Err(RelationshipErrorKind::UnexpectedText(excerpt(rest)));
    }
    Ok(Alternative {
        package: package.to_string(),
        arch_qualifier,
        version,
        architectures,
        profiles,
    })
}

/// When `text` starts with `open`, splits it into what is inside the
/// brackets and what follows them (left-trimmed).
fn bracketed(
    text: &str,
    open: char,
    close: char,
) -> Result<Option<(&str, &str)>, RelationshipErrorKind> {
    let Some(after_open) = text.strip_prefix(open) else {
        return Ok(None);
    };
    let close_at = after_open
        .find(close)
        .ok_or(RelationshipErrorKind::Unclosed(open))?;
    let inside = &after_open[..close_at];
    let after = after_open[close_at + close.len_utf8()..].trim_ascii_start();
    Ok(Some((inside, after)))
}

/// Reads the inside of `(>= 1.0)`; whitespace between the operator and the
/// version is optional, as in dpkg.
fn parse_constraint(inside: &str) -> Result<VersionConstraint, RelationshipErrorKind> {
    let inside = inside.trim_ascii();
    let operator_len = inside
        .bytes()
        .take_while(|b| matches!(b, b'<' | b'>' | b'='))
        .count();
    if operator_len == 0 {
        return Err(RelationshipErrorKind::MissingRelation);
    }
    let relation: Relation = inside[..operator_len].parse()?;
    let version = inside[operator_len..].trim_ascii();
    if version.is_empty() {
        return Err(RelationshipErrorKind::MissingVersion(relation));
    }
    Ok(VersionConstraint {
        relation,
        version: Version::parse(version)?,
    })
}

/// Reads the whitespace-separated, optionally `!`-negated terms inside
/// `[…]` or `<…>`.
fn parse_terms(
    inside: &str,
    open: char,
    valid: fn(&str) -> bool,
    invalid: impl Fn(&str) -> RelationshipErrorKind,
) -> Result<Vec<RestrictionTerm>, RelationshipErrorKind> {
    let terms = inside
        .split_ascii_whitespace()
        .map(|term| {
            let (negated, name) = match term.strip_prefix('!') {
                Some(name) => (true, name),
                None => (false, term),
            };
            if valid(name) {
                Ok(RestrictionTerm {
                    negated,
                    name: name.to_string(),
                })
            } else {
                Err(invalid(term))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if terms.is_empty() {
        return Err(RelationshipErrorKind::EmptyRestriction(open));
    }
    Ok(terms)
}

/// dpkg's package name rule (`pkg_name_is_illegal`): a letter or digit, then
/// letters, digits and `-+._`.
pub(crate) fn is_package_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.' | b'_'))
}

/// Architecture names and wildcards: `amd64`, `linux-any`, `any`, `native`.
fn is_architecture(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Build profile names: `nocheck`, `stage1`, `pkg.foo.bar`.
fn is_profile(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.' | b'_'))
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, alternative) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{alternative}")?;
        }
        Ok(())
    }
}

/// Debian's syntax: `name:qual (op version) [arch …] <profile …>`.
impl fmt::Display for Alternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write_terms(f: &mut fmt::Formatter<'_>, terms: &[RestrictionTerm]) -> fmt::Result {
            for (i, term) in terms.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                if term.negated {
                    f.write_str("!")?;
                }
                f.write_str(&term.name)?;
            }
            Ok(())
        }
        f.write_str(&self.package)?;
        if let Some(qualifier) = &self.arch_qualifier {
            write!(f, ":{qualifier}")?;
        }
        if let Some(constraint) = &self.version {
            write!(f, " ({constraint})")?;
        }
        if !self.architectures.is_empty() {
            f.write_str(" [")?;
            write_terms(f, &self.architectures)?;
            f.write_str("]")?;
        }
        for group in &self.profiles {
            f.write_str(" <")?;
            write_terms(f, group)?;
            f.write_str(">")?;
        }
        Ok(())
    }
}

impl Alternative {
    /// An alternative on `package` with no qualifier, version or
    /// restriction.
    pub fn named(package: &str) -> Alternative {
        Alternative {
            package: package.to_string(),
            arch_qualifier: None,
            version: None,
            architectures: Vec::new(),
            profiles: Vec::new(),
        }
    }
}

impl fmt::Display for VersionConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.relation, self.version)
    }
}

impl VersionConstraint {
    /// Whether `candidate` meets this constraint.
    pub fn satisfied_by(&self, candidate: &Version) -> bool {
        self.relation.satisfied_by(candidate, &self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(text: &str) -> Result<Vec<Paragraph<'_>>, Deb822Error> {
        Paragraphs::new(text).collect()
    }

    /// Shaped like bookworm's main/binary-amd64/Packages, including its
    /// folded `Tag` field.
    const PACKAGES: &str = "\
Package: adduser
Version: 3.134
Installed-Size: 686
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Depends: passwd
Suggests: liblocale-gettext-perl, perl, cron, quota
Description: add and remove users and groups
Multi-Arch: foreign
Description-md5: a5681e7bad8d90695043c6eab9784701
Tag: admin::user-management, implemented-in::perl, interface::commandline,
 role::program, scope::utility, suite::debian
Section: admin
Priority: important
Filename: pool/main/a/adduser/adduser_3.134_all.deb
Size: 183272
MD5sum: 3f5b94b9878c6df571f9aa5f86dab452
SHA256: c24fe4eb8e60d8632d72ed104cce7c92cff200847c897dc8ba764b6c47b519e0

Package: libc6
Source: glibc
Version: 2.36-9+deb12u14
Installed-Size: 13001
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Replaces: libc6-amd64
Depends: libgcc-s1
Recommends: libidn2-0 (>= 2.0.5~)
Suggests: glibc-doc, debconf | debconf-2.0, libc-l10n, locales, libnss-nis, libnss-nisplus
Breaks: aide (<< 0.17.3-4+b3), gnumach-image-1.8-486 (<< 2:1.8+git20210923~), openssh-server (<< 1:8.1p1-5)
Description: GNU C Library: Shared libraries
Multi-Arch: same
Homepage: https://www.gnu.org/software/libc/libc.html
Section: libs
Priority: optional
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb
Size: 2759320
SHA256: ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf
";

    /// Shaped like /var/lib/dpkg/status, with a long description and
    /// conffiles.
    const STATUS: &str = "\
Package: dash
Essential: yes
Status: install ok installed
Version: 0.5.12-2
Depends: debianutils (>= 5.6-0.1), dpkg (>= 1.19.1)
Pre-Depends: libc6 (>= 2.34)
Conffiles:
 /etc/dash/dash.conf 0b4b6ec1c2d1d5d4e0a9ab5d5a6bd8bd
Description: POSIX-compliant shell
 The Debian Almquist Shell (dash) is a POSIX-compliant shell derived
 from ash.
 .
   verbatim line
 Since it executes scripts faster than bash, it is the default shell.
Homepage: http://gondor.apana.org.au/~herbert/dash/
";

    /// The signed part of an InRelease file.
    const RELEASE: &str = "\
Origin: Debian
Suite: oldstable-updates
Codename: bookworm-updates
Architectures: all amd64 arm64
Components: main contrib non-free-firmware non-free
SHA256:
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855        0 contrib/Contents-all
 f61f27bd17de546264aa58f40f3aafaac7021e0ef69c17f6b1b4cd7664a037ec       20 contrib/Contents-all.gz
";

    #[test]
    fn reads_packages_paragraphs() {
        let paragraphs = parse_all(PACKAGES).unwrap();
        assert_eq!(paragraphs.len(), 2);
        let [adduser, libc6] = &paragraphs[..] else {
            unreachable!()
        };
        assert_eq!(adduser.line(), 1);
        assert_eq!(libc6.line(), 20);
        assert_eq!(adduser.get("Package"), Some("adduser"));
        assert_eq!(adduser.get("Version"), Some("3.134"));
        assert_eq!(adduser.fields().len(), 17);
        assert_eq!(
            adduser.get("Tag"),
            Some(
                "admin::user-management, implemented-in::perl, interface::commandline,\n \
                 role::program, scope::utility, suite::debian"
            )
        );
        assert_eq!(adduser.field("tag").unwrap().line(), 11);
        assert_eq!(adduser.get("Section"), Some("admin"));
        assert_eq!(libc6.get("Source"), Some("glibc"));
        assert_eq!(adduser.get("Source"), None);
        assert_eq!(
            libc6.get("Version").map(Version::parse).unwrap().unwrap(),
            Version::parse("2.36-9+deb12u14").unwrap()
        );
    }

    #[test]
    fn lookup_ignores_case_but_names_keep_their_spelling() {
        let paragraph = parse_all(PACKAGES).unwrap().remove(0);
        assert_eq!(paragraph.get("package"), Some("adduser"));
        assert_eq!(paragraph.get("INSTALLED-SIZE"), Some("686"));
        let names: Vec<&str> = paragraph.fields().iter().map(Field::name).collect();
        assert_eq!(
            names[..4],
            ["Package", "Version", "Installed-Size", "Maintainer"]
        );
        assert!(names.contains(&"Description-md5"));
    }

    #[test]
    fn multiline_values_come_back_as_lines() {
        let dash = parse_all(STATUS).unwrap().remove(0);
        let description = dash.get_multiline("Description").unwrap();
        assert_eq!(description.first_line(), "POSIX-compliant shell");
        let lines: Vec<&str> = description.lines().collect();
        assert_eq!(
            lines,
            [
                "The Debian Almquist Shell (dash) is a POSIX-compliant shell derived",
                "from ash.",
                "",
                "  verbatim line",
                "Since it executes scripts faster than bash, it is the default shell.",
            ]
        );
        let conffiles = dash.get_multiline("Conffiles").unwrap();
        assert_eq!(conffiles.first_line(), "");
        assert_eq!(
            conffiles.lines().collect::<Vec<_>>(),
            ["/etc/dash/dash.conf 0b4b6ec1c2d1d5d4e0a9ab5d5a6bd8bd"]
        );
        assert_eq!(
            dash.get("Homepage"),
            Some("http://gondor.apana.org.au/~herbert/dash/")
        );
        // A single-line field read as lines has no continuation lines.
        assert_eq!(dash.get_multiline("Version").unwrap().lines().count(), 0);

        let release = parse_all(RELEASE).unwrap().remove(0);
        let sums: Vec<Vec<&str>> = release
            .get_multiline("sha256")
            .unwrap()
            .lines()
            .map(|line| line.split_ascii_whitespace().collect())
            .collect();
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[1][1..], ["20", "contrib/Contents-all.gz"]);
    }

    #[test]
    fn separators_comments_and_line_ends_are_tolerated() {
        let text = "# a comment before anything\n\n\nA: 1\n# between fields\nB:2\r\n\r\n \t\n\nC:   3   \nD: x\n y\n\t\tz";
        let paragraphs = parse_all(text).unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].get("A"), Some("1"));
        assert_eq!(paragraphs[0].get("B"), Some("2"));
        assert_eq!(paragraphs[0].line(), 4);
        assert_eq!(paragraphs[1].get("C"), Some("3"));
        assert_eq!(paragraphs[1].get("D"), Some("x\n y\n\t\tz"));
        assert_eq!(paragraphs[1].line(), 10);
        assert_eq!(
            paragraphs[1]
                .get_multiline("D")
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            ["y", "\tz"]
        );
        assert!(parse_all("").unwrap().is_empty());
        assert!(parse_all("\n\n# only a comment\n").unwrap().is_empty());
        // An empty value is still a field.
        assert_eq!(parse_all("A:\n").unwrap()[0].get("A"), Some(""));
    }

    #[test]
    fn a_whitespace_only_line_inside_a_field_continues_it() {
        // dpkg and apt do the same; only an empty line ends a paragraph.
        let paragraphs = parse_all("A: x\n \nB: y\n").unwrap();
        assert_eq!(paragraphs.len(), 1);
        assert_eq!(paragraphs[0].get("B"), Some("y"));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let error = |text: &str| parse_all(text).unwrap_err();
        assert_eq!(
            error("A: 1\nno colon here\n"),
            Deb822Error::MissingColon {
                line: 2,
                text: "no colon here".to_string()
            }
        );
        assert_eq!(
            error("\n\n continued\n"),
            Deb822Error::ContinuationBeforeField { line: 3 }
        );
        assert_eq!(
            error("A: 1\n\n continued\n"),
            Deb822Error::ContinuationBeforeField { line: 3 }
        );
        assert_eq!(
            error("A: 1\n# note\n continued\n"),
            Deb822Error::ContinuationAfterComment { line: 3 }
        );
        assert_eq!(
            error("A: 1\n: 2\n"),
            Deb822Error::EmptyFieldName { line: 2 }
        );
        assert_eq!(
            error("A B: 1\n"),
            Deb822Error::InvalidFieldName {
                line: 1,
                name: "A B".to_string()
            }
        );
        assert_eq!(
            error("-----BEGIN PGP SIGNATURE: x\n"),
            Deb822Error::InvalidFieldName {
                line: 1,
                name: "-----BEGIN PGP SIGNATURE".to_string()
            }
        );
        assert_eq!(
            error("Version: 1\nA: 2\nversion: 2\n"),
            Deb822Error::DuplicateField {
                line: 3,
                name: "version".to_string(),
                first_line: 1
            }
        );
        // The same name in different paragraphs is fine.
        assert_eq!(parse_all("A: 1\n\nA: 2\n").unwrap().len(), 2);
        assert_eq!(
            error("-----BEGIN PGP SIGNED MESSAGE-----\n").to_string(),
            "line 1: `-----BEGIN PGP SIGNED MESSAGE-----` is neither a `Name: value` field \
             nor an indented continuation line"
        );
        let long = "x".repeat(10_000);
        let Deb822Error::MissingColon { text, .. } = error(&long) else {
            unreachable!()
        };
        assert_eq!(text.chars().count(), EXCERPT_CHARS + 1);
    }

    /// Paragraphs as `(line, [(name, value)])`, or the first error's message.
    type Read = Result<Vec<(usize, Vec<(String, String)>)>, String>;

    /// Every paragraph a [`ParagraphReader`] gives.
    fn read_stream(reader: impl BufRead) -> Read {
        let mut reader = ParagraphReader::new(reader);
        let mut read = Vec::new();
        while let Some(paragraphs) = reader.next_text().map_err(|e| e.to_string())? {
            for paragraph in paragraphs {
                let paragraph = paragraph.map_err(|e| e.to_string())?;
                let fields = paragraph
                    .fields()
                    .iter()
                    .map(|f| (f.name().to_string(), f.value().to_string()))
                    .collect();
                read.push((paragraph.line(), fields));
            }
        }
        Ok(read)
    }

    /// What [`Paragraphs`] reads from the whole text, in the same form.
    fn read_whole(text: &str) -> Read {
        Paragraphs::new(text)
            .map(|paragraph| {
                let paragraph = paragraph.map_err(|e| e.to_string())?;
                let fields = paragraph
                    .fields()
                    .iter()
                    .map(|f| (f.name().to_string(), f.value().to_string()))
                    .collect();
                Ok((paragraph.line(), fields))
            })
            .collect()
    }

    #[test]
    fn a_stream_reads_as_the_whole_text_does() {
        let text =
            format!("\n\n# a comment\n{PACKAGES}\n\n\nPackage: last\r\nDepends: a,\r\n b\r\n \r\n");
        let streamed = read_stream(text.as_bytes()).unwrap();
        assert_eq!(streamed, read_whole(&text).unwrap());
        assert_eq!(streamed.len(), 3);
        // Line numbers count from the start of the stream.
        assert_eq!(streamed[0].0, 4);
        let (_, last) = &streamed[2];
        assert_eq!(last[0], ("Package".into(), "last".into()));
        // A folded field keeps its continuation lines, whitespace-only too.
        assert_eq!(last[1], ("Depends".into(), "a,\r\n b".into()));
        // A tiny buffer splits lines across reads; nothing changes.
        let small = std::io::BufReader::with_capacity(3, text.as_bytes());
        assert_eq!(read_stream(small).unwrap(), streamed);
    }

    #[test]
    fn a_stream_keeps_each_paragraphs_fields_and_multiline_values() {
        let text =
            "Package: a\nDescription: short\n long\n .\n more\nSHA256:\n abc 1 f\n\nPackage: b\n";
        let mut reader = ParagraphReader::new(text.as_bytes());
        let first: Vec<_> = reader.next_text().unwrap().unwrap().collect();
        let [Ok(first)] = first.as_slice() else {
            panic!("one paragraph expected, got {first:?}");
        };
        assert_eq!(first.get("package"), Some("a"));
        let description = first.get_multiline("Description").unwrap();
        assert_eq!(description.first_line(), "short");
        assert_eq!(
            description.lines().collect::<Vec<_>>(),
            ["long", "", "more"]
        );
        assert_eq!(
            first
                .get_multiline("SHA256")
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            ["abc 1 f"]
        );
        let second: Vec<_> = reader.next_text().unwrap().unwrap().collect();
        assert_eq!(second.len(), 1);
        assert!(reader.next_text().unwrap().is_none());
    }

    #[test]
    fn a_stream_reports_bad_lines_and_bad_bytes_with_their_number() {
        let error = read_stream("A: 1\n\nB: 2\nbroken\n".as_bytes()).unwrap_err();
        assert_eq!(
            error,
            "line 4: `broken` is neither a `Name: value` field nor an indented continuation line"
        );
        let error = read_stream(&b"A: 1\n\nB: 2\nC: \xff\n"[..]).unwrap_err();
        assert_eq!(error, "line 4: the text is not UTF-8");
    }

    #[test]
    fn a_stream_reads_through_decompression() {
        use std::io::Write;
        let text = format!("{PACKAGES}\n");
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(text.as_bytes()).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(text.as_bytes()).unwrap();
        let xz = xz.finish().unwrap();
        let whole = read_whole(&text).unwrap();
        let from_gzip = std::io::BufReader::new(flate2::read::GzDecoder::new(gzip.as_slice()));
        assert_eq!(read_stream(from_gzip).unwrap(), whole);
        let from_xz = std::io::BufReader::new(liblzma::read::XzDecoder::new(xz.as_slice()));
        assert_eq!(read_stream(from_xz).unwrap(), whole);
    }

    #[test]
    fn iteration_is_lazy_and_stops_after_an_error() {
        let mut paragraphs = Paragraphs::new("A: 1\n\nbroken\n\nB: 2\n");
        assert_eq!(paragraphs.next().unwrap().unwrap().get("A"), Some("1"));
        assert_eq!(paragraphs.next().unwrap().unwrap_err().line(), 3);
        assert!(paragraphs.next().is_none());
        assert!(paragraphs.next().is_none());
    }

    #[test]
    fn reads_depends_with_versions_and_alternatives() {
        let libc6 = parse_all(PACKAGES).unwrap().remove(1);
        let breaks = parse_relationships(libc6.get("Breaks").unwrap()).unwrap();
        assert_eq!(breaks.len(), 3);
        let gnumach = &breaks[1].alternatives[0];
        assert_eq!(gnumach.package, "gnumach-image-1.8-486");
        let constraint = gnumach.version.as_ref().unwrap();
        assert_eq!(constraint.relation, Relation::Earlier);
        assert_eq!(constraint.version.as_str(), "2:1.8+git20210923~");
        assert!(constraint.satisfied_by(&Version::parse("2:1.8+git20210922").unwrap()));
        assert!(!constraint.satisfied_by(&Version::parse("2:1.8+git20210923").unwrap()));

        let suggests = parse_relationships(libc6.get("Suggests").unwrap()).unwrap();
        assert_eq!(suggests.len(), 6);
        let debconf: Vec<&str> = suggests[1]
            .alternatives
            .iter()
            .map(|a| a.package.as_str())
            .collect();
        assert_eq!(debconf, ["debconf", "debconf-2.0"]);
        assert_eq!(suggests[1].to_string(), "debconf | debconf-2.0");

        let depends = parse_relationships(
            "node-xtend, nodejs:any | nodejs (<< 12.22.5~dfsg-4~), perl:any,\n python3 (>=3.11~)",
        )
        .unwrap();
        assert_eq!(depends.len(), 4);
        assert_eq!(
            depends[1].alternatives[0].arch_qualifier.as_deref(),
            Some("any")
        );
        assert_eq!(depends[1].alternatives[1].arch_qualifier.as_deref(), None);
        assert_eq!(depends[3].alternatives[0].to_string(), "python3 (>= 3.11~)");
    }

    #[test]
    fn reads_build_dependency_restrictions() {
        let depends = parse_relationships(
            "debhelper-compat (= 13), libfoo-dev [linux-any !hurd-i386] <!nocheck> <stage1 cross>, \
             gcc:native (>= 4:12) [amd64]",
        )
        .unwrap();
        let foo = &depends[1].alternatives[0];
        assert_eq!(
            foo.architectures,
            [
                RestrictionTerm {
                    negated: false,
                    name: "linux-any".into()
                },
                RestrictionTerm {
                    negated: true,
                    name: "hurd-i386".into()
                },
            ]
        );
        assert_eq!(foo.profiles.len(), 2);
        assert_eq!(
            foo.profiles[0],
            [RestrictionTerm {
                negated: true,
                name: "nocheck".into()
            }]
        );
        assert_eq!(foo.profiles[1].len(), 2);
        assert_eq!(
            foo.to_string(),
            "libfoo-dev [linux-any !hurd-i386] <!nocheck> <stage1 cross>"
        );
        let gcc = &depends[2].alternatives[0];
        assert_eq!(gcc.arch_qualifier.as_deref(), Some("native"));
        assert_eq!(gcc.version.as_ref().unwrap().version.epoch(), 4);
        assert_eq!(gcc.architectures.len(), 1);
    }

    #[test]
    fn trailing_commas_and_obsolete_operators_are_accepted() {
        assert!(parse_relationships("").unwrap().is_empty());
        assert!(parse_relationships("  ").unwrap().is_empty());
        assert_eq!(parse_relationships("a, b,").unwrap().len(), 2);
        let old = parse_relationships("a (< 1.0), b (> 2)").unwrap();
        assert_eq!(
            old[0].alternatives[0].version.as_ref().unwrap().relation,
            Relation::EarlierOrEqual
        );
        assert_eq!(
            old[1].alternatives[0].version.as_ref().unwrap().relation,
            Relation::LaterOrEqual
        );
    }

    #[test]
    fn malformed_relationships_say_what_is_wrong() {
        let kind = |text: &str| parse_relationships(text).unwrap_err().kind;
        assert_eq!(kind("a,, b"), RelationshipErrorKind::EmptyEntry);
        assert_eq!(kind(", a"), RelationshipErrorKind::EmptyEntry);
        assert_eq!(kind("a | | b"), RelationshipErrorKind::EmptyAlternative);
        assert_eq!(kind("a |"), RelationshipErrorKind::EmptyAlternative);
        assert_eq!(
            kind("-a"),
            RelationshipErrorKind::InvalidPackageName("-a".into())
        );
        assert_eq!(
            kind("(>= 1)"),
            RelationshipErrorKind::InvalidPackageName("".into())
        );
        assert_eq!(
            kind("a:"),
            RelationshipErrorKind::InvalidArchQualifier("".into())
        );
        assert_eq!(kind("a (>= 1"), RelationshipErrorKind::Unclosed('('));
        assert_eq!(kind("a [amd64"), RelationshipErrorKind::Unclosed('['));
        assert_eq!(kind("a <nocheck"), RelationshipErrorKind::Unclosed('<'));
        assert_eq!(kind("a (1.0)"), RelationshipErrorKind::MissingRelation);
        assert_eq!(
            kind("a (>=)"),
            RelationshipErrorKind::MissingVersion(Relation::LaterOrEqual)
        );
        assert!(matches!(
            kind("a (=> 1)"),
            RelationshipErrorKind::UnknownRelation(_)
        ));
        assert!(matches!(
            kind("a (>= 1.0-)"),
            RelationshipErrorKind::InvalidVersion(_)
        ));
        assert!(matches!(
            kind("a (>= 1 2)"),
            RelationshipErrorKind::InvalidVersion(_)
        ));
        assert_eq!(kind("a []"), RelationshipErrorKind::EmptyRestriction('['));
        assert_eq!(kind("a <>"), RelationshipErrorKind::EmptyRestriction('<'));
        assert_eq!(
            kind("a [amd64 !]"),
            RelationshipErrorKind::InvalidArchitecture("!".into())
        );
        assert_eq!(
            kind("a <no/check>"),
            RelationshipErrorKind::InvalidProfile("no/check".into())
        );
        assert_eq!(
            kind("a b"),
            RelationshipErrorKind::UnexpectedText("b".into())
        );
        // Parts out of order are unexpected text.
        assert_eq!(
            kind("a [amd64] (>= 1)"),
            RelationshipErrorKind::UnexpectedText("(>= 1)".into())
        );
        assert_eq!(
            parse_relationships("ok, bad (>> )")
                .unwrap_err()
                .to_string(),
            "`bad (>> )` is not a valid relationship: there is no version after `>>`"
        );
    }

    #[test]
    fn reads_provides() {
        let provides = parse_provides("awk, libfoo-abi-2 (= 2.1-3), mail-transport-agent").unwrap();
        assert_eq!(provides.len(), 3);
        assert_eq!(
            provides[0],
            Provided {
                package: "awk".into(),
                version: None
            }
        );
        assert_eq!(provides[1].version.as_ref().unwrap().as_str(), "2.1-3");
        let kind = |text: &str| parse_provides(text).unwrap_err().kind;
        assert_eq!(kind("a | b"), RelationshipErrorKind::ProvidesAlternatives);
        assert_eq!(
            kind("a (>= 1)"),
            RelationshipErrorKind::ProvidesRelation(Relation::LaterOrEqual)
        );
        assert_eq!(kind("a:any"), RelationshipErrorKind::ProvidesRestricted);
        assert_eq!(kind("a [amd64]"), RelationshipErrorKind::ProvidesRestricted);
    }

    /// Reads the host's dpkg database, the one real deb822 file every Debian
    /// machine has. kiln's tests run on Debian (scripts/test), so a missing
    /// file fails the test rather than skipping it.
    #[test]
    fn reads_the_hosts_dpkg_status() {
        let text = std::fs::read_to_string("/var/lib/dpkg/status")
            .expect("/var/lib/dpkg/status is readable (kiln's tests need a Debian host)");
        // Counted independently of the parser: each paragraph starts with
        // `Package:` in dpkg's own output.
        let expected = text
            .lines()
            .filter(|line| line.starts_with("Package:"))
            .count();
        let mut count = 0;
        for paragraph in Paragraphs::new(&text) {
            let paragraph = paragraph.unwrap();
            count += 1;
            let package = paragraph.get("Package");
            assert!(
                package.is_some(),
                "paragraph at line {} has no Package",
                paragraph.line()
            );
            let status = paragraph.get("Status").unwrap_or_default();
            if !status.ends_with("not-installed") {
                let version = paragraph.get("Version");
                assert!(version.is_some(), "{package:?} has no Version");
                Version::parse(version.unwrap_or_default()).unwrap();
            }
            for name in [
                "Depends",
                "Pre-Depends",
                "Recommends",
                "Suggests",
                "Breaks",
                "Conflicts",
            ] {
                if let Some(value) = paragraph.get(name) {
                    parse_relationships(value).unwrap();
                }
            }
            if let Some(value) = paragraph.get("Provides") {
                parse_provides(value).unwrap();
            }
        }
        assert_eq!(count, expected);
        assert!(
            count >= 20,
            "only {count} packages installed; is this a Debian system?"
        );
    }

    /// A paragraph as plain data, for generating well-formed text.
    type Fields = Vec<(String, String, Vec<String>)>;

    fn field_strategy() -> impl Strategy<Value = (String, String, Vec<String>)> {
        (
            "[A-Za-z][A-Za-z0-9-]{0,10}",
            "[ -~]{0,20}",
            prop::collection::vec("[!-~][ -~]{0,15}", 0..3),
        )
    }

    fn render(paragraphs: &[Fields]) -> String {
        let mut text = String::new();
        for paragraph in paragraphs {
            for (name, value, continuations) in paragraph {
                text.push_str(&format!("{name}: {value}\n"));
                for line in continuations {
                    text.push_str(&format!(" {line}\n"));
                }
            }
            text.push('\n');
        }
        text
    }

    /// Lines in every shape the parser distinguishes, so random sequences of
    /// them reach every branch.
    fn line_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[A-Za-z-]{1,4}:[ -~]{0,6}",
            "[ \t][ -~]{0,6}",
            "#[ -~]{0,4}",
            "[ -~]{0,8}",
            "\\PC{0,8}",
            Just("\r".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
            for paragraph in Paragraphs::new(&text) {
                let Ok(paragraph) = paragraph else { break };
                for field in paragraph.fields() {
                    let _ = field.multiline().lines().count();
                    let _ = parse_relationships(field.value());
                }
            }
        }

        #[test]
        fn never_panics_on_line_soup(lines in prop::collection::vec(line_strategy(), 0..30)) {
            let text = lines.join("\n");
            let mut last_line = 0;
            for paragraph in Paragraphs::new(&text) {
                match paragraph {
                    Ok(paragraph) => {
                        prop_assert!(paragraph.line() > last_line);
                        last_line = paragraph.line();
                        prop_assert!(!paragraph.fields().is_empty());
                    }
                    Err(error) => prop_assert!(error.line() >= 1 && error.line() <= lines.len()),
                }
            }
        }

        #[test]
        fn relationships_never_panic(text in "[a-z0-9:!<>=()\\[\\]|,. ~+-]{0,60}") {
            let _ = parse_relationships(&text);
            let _ = parse_provides(&text);
        }

        #[test]
        fn well_formed_text_reads_back(
            paragraphs in prop::collection::vec(prop::collection::vec(field_strategy(), 1..6), 0..5)
        ) {
            // Names must be unique within a paragraph, ignoring case.
            let paragraphs: Vec<Fields> = paragraphs
                .into_iter()
                .map(|fields| {
                    let mut seen = std::collections::HashSet::new();
                    fields
                        .into_iter()
                        .filter(|(name, _, _)| seen.insert(name.to_ascii_lowercase()))
                        .collect()
                })
                .collect();
            let text = render(&paragraphs);
            let parsed = parse_all(&text).unwrap();
            prop_assert_eq!(parsed.len(), paragraphs.len());
            for (parsed, expected) in parsed.iter().zip(&paragraphs) {
                prop_assert_eq!(parsed.fields().len(), expected.len());
                for (field, (name, value, continuations)) in parsed.fields().iter().zip(expected) {
                    prop_assert_eq!(field.name(), name.as_str());
                    let got = parsed.get(&name.to_ascii_uppercase());
                    prop_assert_eq!(got, Some(field.value()));
                    let multiline = field.multiline();
                    prop_assert_eq!(multiline.first_line(), value.trim_ascii());
                    let lines: Vec<&str> = multiline.lines().collect();
                    let expected_lines: Vec<&str> = continuations
                        .iter()
                        .map(|line| line.trim_ascii_end())
                        .map(|line| if line == "." { "" } else { line })
                        .collect();
                    prop_assert_eq!(lines, expected_lines);
                }
            }
        }
    }
}

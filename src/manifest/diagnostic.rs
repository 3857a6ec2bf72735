//! Problems found in an imagefile, as miette diagnostics.
//!
//! Every stage that judges the user's manifest (reading the file, parsing
//! the YAML, the semantic checks) reports [`Problem`]s: a message, the span
//! it is about, and a `help:` line. [`Problems`] ties them to the file's
//! text so miette can print the file name, line and column and underline
//! the offending span.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth fixing, but the manifest is usable.
    Warning,
    /// The manifest cannot be used.
    Error,
}

/// One thing wrong with an imagefile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// The text the problem is about, and a short label to print under it.
    pub span: Option<(SourceSpan, String)>,
    /// Another place that explains the problem ("first used here").
    pub related: Option<(SourceSpan, String)>,
    /// What the user should do.
    pub help: String,
}

impl Problem {
    /// An error about the text at `span`.
    pub fn error(
        message: impl Into<String>,
        span: SourceSpan,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            message: message.into(),
            span: Some((span, label.into())),
            related: None,
            help: help.into(),
        }
    }

    /// An error about the file as a whole (it is missing, or a directory).
    pub fn file_error(message: impl Into<String>, help: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            message: message.into(),
            span: None,
            related: None,
            help: help.into(),
        }
    }

    /// The same problem as a warning.
    pub fn warning(self) -> Self {
        Problem {
            severity: Severity::Warning,
            ..self
        }
    }

    /// The same problem, also pointing at another place.
    pub fn with_related(self, span: SourceSpan, label: impl Into<String>) -> Self {
        Problem {
            related: Some((span, label.into())),
            ..self
        }
    }
}

/// Everything found wrong with one imagefile, ready to print.
#[derive(Debug, Clone)]
pub struct Problems {
    /// The file's name as the user gave it, and its text (empty when the
    /// file could not be read).
    source: NamedSource<Arc<String>>,
    /// The problems, in the order they occur in the file.
    pub problems: Vec<Problem>,
}

impl Problems {
    /// Problems in the file `name` whose text is `text`.
    pub fn new(name: &str, text: Arc<String>, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| p.span.as_ref().map_or(0, |(span, _)| span.offset()));
        Problems {
            source: NamedSource::new(name, text).with_language("yaml"),
            problems,
        }
    }

    /// Whether any problem is an error (not just a warning).
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// One diagnostic per problem, each carrying the file's text.
    pub fn diagnostics(&self) -> Vec<ManifestError> {
        let text = self.source.inner().as_str();
        self.problems
            .iter()
            .map(|problem| {
                let mut problem = problem.clone();
                // A snippet of a minified or binary line would flood (or
                // garble) the terminal: say where instead.
                if let Some((span, _)) = &problem.span
                    && !is_displayable(line_at(text, span.offset()))
                {
                    let (line, column) = line_and_column(text, span.offset());
                    problem.message = format!("{} (line {line}, column {column})", problem.message);
                    problem.span = None;
                    problem.related = None;
                }
                ManifestError {
                    problem,
                    source: self.source.clone(),
                }
            })
            .collect()
    }
}

/// The longest line kiln shows in a snippet.
const MAX_SNIPPET_LINE_BYTES: usize = 240;

/// Whether a line can be shown as it is: short, without control
/// characters, and not mostly undecodable bytes.
fn is_displayable(line: &str) -> bool {
    line.len() <= MAX_SNIPPET_LINE_BYTES
        && !line.chars().any(|c| c.is_control() && c != '\t')
        && line.matches(char::REPLACEMENT_CHARACTER).count() <= 3
}

/// The line of `text` holding byte `offset`, without its line break.
fn line_at(text: &str, offset: usize) -> &str {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    &text[start..end]
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One [`Problem`] with the text it points into: a printable diagnostic.
#[derive(Debug, Clone)]
pub struct ManifestError {
    problem: Problem,
    source: NamedSource<Arc<String>>,
}

impl ManifestError {
    /// The problem this diagnostic prints.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problem.span.is_none() {
            // Without a snippet miette shows no file name; say it here.
            write!(f, "{}: {}", self.source.name(), self.problem.message)
        } else {
            f.write_str(&self.problem.message)
        }
    }
}

impl std::error::Error for ManifestError {}

impl Diagnostic for ManifestError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        None
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.problem.severity {
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.problem.help))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.problem
            .span
            .as_ref()
            .map(|_| &self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (span, label) = self.problem.span.as_ref()?;
        let primary = LabeledSpan::new_primary_with_span(Some(label.clone()), *span);
        let related = self
            .problem
            .related
            .as_ref()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

//! Reading an imagefile from disk and turning YAML errors into problems.
//!
//! Everything that can go wrong before the manifest's own rules apply is
//! caught here: a missing file, a directory, a huge or binary file, text
//! that is not UTF-8, and YAML the parser or the types reject. Each becomes
//! a [`Problem`] that points at the text and says what to do.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use miette::SourceSpan;
use serde_saphyr::budget::BudgetBreach;

use super::Manifest;
use super::diagnostic::{Problem, Problems};
use super::values::HELP_SEPARATOR;

/// The largest imagefile kiln reads. A real manifest is a few kilobytes; a
/// larger file is a mistake (or an attack) and is refused before parsing.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Deeper nesting than any imagefile needs; stops stack-exhausting input.
const MAX_DEPTH: usize = 64;

/// Aliases and anchors an imagefile may use; stops "billion laughs".
const MAX_ALIASES: usize = 256;

/// The text of an imagefile and the name to show for it.
#[derive(Debug, Clone)]
pub struct Source {
    name: String,
    text: Arc<String>,
}

impl Source {
    /// An imagefile named `name` (for messages) holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: Arc::new(text.into()),
        }
    }

    /// The name shown in diagnostics: the path as the user gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// These problems, tied to this file for printing.
    pub fn problems(&self, problems: Vec<Problem>) -> Problems {
        Problems::new(&self.name, Arc::clone(&self.text), problems)
    }
}

/// Reads the imagefile at `path`. Refuses directories, files over
/// [`MAX_MANIFEST_BYTES`], binary files and text that is not UTF-8.
pub fn load(path: &Path) -> Result<Source, Problems> {
    let name = path.display().to_string();
    let file_problem =
        |problem: Problem| Problems::new(&name, Arc::new(String::new()), vec![problem]);

    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(file_problem(Problem::file_error(
                "no such file",
                format!(
                    "run `kiln init {name}` to write a starter imagefile, or give the path of an existing one"
                ),
            )));
        }
        Err(e) => {
            return Err(file_problem(Problem::file_error(
                format!("cannot read the file: {e}"),
                "check that the path is right and that you may read it",
            )));
        }
    };
    if metadata.is_dir() {
        let inside = path.join("imagefile.yaml");
        let help = if inside.is_file() {
            format!("give the imagefile inside it: `{}`", inside.display())
        } else {
            "give the path of an imagefile, such as `imagefile.yaml`".to_string()
        };
        return Err(file_problem(Problem::file_error(
            "this is a directory, not an imagefile",
            help,
        )));
    }
    if metadata.len() > MAX_MANIFEST_BYTES {
        return Err(file_problem(too_large(metadata.len())));
    }

    let mut bytes = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|file| file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        return Err(file_problem(Problem::file_error(
            format!("cannot read the file: {e}"),
            "check that the path is right and that you may read it",
        )));
    }
    // Special files (a FIFO, /dev/zero) report no length up front.
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(file_problem(too_large(bytes.len() as u64)));
    }
    from_bytes(name, bytes)
}

fn too_large(bytes: u64) -> Problem {
    Problem::file_error(
        format!(
            "the file is {:.1} MiB; an imagefile may be at most {} MiB",
            bytes as f64 / (1u64 << 20) as f64,
            MAX_MANIFEST_BYTES >> 20
        ),
        "check that this is the imagefile you meant; a manifest is a few kilobytes of YAML",
    )
}

/// Checks that `bytes` are UTF-8 text and not a binary file.
fn from_bytes(name: String, bytes: Vec<u8>) -> Result<Source, Problems> {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let source = Source::new(name, lossy);
            let span = SourceSpan::from(offset..offset + char::REPLACEMENT_CHARACTER.len_utf8());
            return Err(source.problems(vec![Problem::error(
                "the file is not UTF-8 text",
                span,
                "this byte is not valid UTF-8",
                "save the imagefile as UTF-8; if this is a binary file, give the imagefile's path instead",
            )]));
        }
    };
    let source = Source::new(name, text);
    if let Some(offset) = source
        .text()
        .find(|c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        let c = source.text()[offset..].chars().next().unwrap_or('\0');
        return Err(source.problems(vec![Problem::error(
            format!(
                "the file contains the control character U+{:04X}",
                u32::from(c)
            ),
            SourceSpan::from(offset..offset + c.len_utf8()),
            "not text",
            "this looks like a binary file; give the path of the imagefile, a YAML text file",
        )]));
    }
    Ok(source)
}

/// Parses the YAML of `source` into a [`Manifest`].
pub(super) fn parse_yaml(source: &Source) -> Result<Manifest, Problems> {
    let text = source.text();
    if text.lines().all(|line| {
        line.trim().is_empty() || line.trim_start().starts_with('#') || line.trim() == "---"
    }) {
        let span = SourceSpan::from(0..text.len());
        return Err(source.problems(vec![Problem::error(
            "the imagefile is empty",
            span,
            "nothing here",
            "add at least `name:` and `base:`; `kiln init` writes a commented starter imagefile",
        )]));
    }
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(source.problems(vec![too_large(text.len() as u64)]));
    }
    // serde stops at the first error. To report the others too, the entry
    // at fault is blanked out (replaced by spaces, so every byte offset
    // stays valid) and the text parsed again, up to a limit. An error that
    // is only the consequence of a blanked entry (a required key now
    // missing) ends the search rather than being reported.
    let mut working = text.to_string();
    let mut problems = Vec::new();
    // Keys blanked out, and the keys their typos probably meant.
    let mut blanked_keys: Vec<String> = Vec::new();
    let mut blanked_starts: Vec<usize> = Vec::new();
    for _ in 0..MAX_STRUCTURAL_PROBLEMS {
        let error = match serde_saphyr::from_str_with_options::<Manifest>(&working, options()) {
            Ok(manifest) if problems.is_empty() => return Ok(manifest),
            Ok(_) => break,
            Err(error) => error,
        };
        // Blanking keeps every byte offset, so spans found in the working
        // text point at the same bytes of the original.
        let problem = problem_from_yaml(&error, &working);
        let offset = problem.span.as_ref().map_or(0, |(span, _)| span.offset());
        let repeated = problems.iter().any(|p: &Problem| {
            p.message == problem.message && p.span.as_ref().map(|(s, _)| s.offset()) == Some(offset)
        });
        if !problems.is_empty()
            && (repeated
                || is_consequence(&error, offset, &working, &blanked_keys, &blanked_starts))
        {
            break;
        }
        problems.push(problem);
        if !is_recoverable(&error) {
            break;
        }
        if let serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } = error.without_snippet()
            && let Some(meant) = did_you_mean(field, expected)
            && strsim::normalized_damerau_levenshtein(field, meant) >= 0.6
        {
            blanked_keys.push(meant.to_string());
        }
        match blank_entry(&mut working, offset) {
            Some((key, start)) => {
                blanked_keys.push(key);
                blanked_starts.push(start);
            }
            None => break,
        }
        if working.trim().is_empty() {
            break;
        }
    }
    Err(source.problems(problems))
}

/// Whether an error found after blanking entries is only their echo: a
/// required key now missing (or misspelt in a blanked entry), or a parent
/// left empty because its child was blanked.
fn is_consequence(
    error: &serde_saphyr::Error,
    offset: usize,
    working: &str,
    blanked_keys: &[String],
    blanked_starts: &[usize],
) -> bool {
    if let serde_saphyr::Error::SerdeMissingField { field, .. } = error.without_snippet() {
        return blanked_keys.iter().any(|key| key == field);
    }
    // The error's line is followed (across blank lines) by a blanked entry.
    let offset = offset.min(working.len());
    let line_end = working[offset..]
        .find('\n')
        .map_or(working.len(), |i| offset + i);
    let next_content = working[line_end..]
        .find(|c: char| !c.is_whitespace())
        .map_or(working.len(), |i| line_end + i);
    blanked_starts
        .iter()
        .any(|&start| start > line_end && start <= next_content)
}

/// At most this many structural problems are reported at once; past a
/// few, the rest are usually consequences of the first.
const MAX_STRUCTURAL_PROBLEMS: usize = 20;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
        with_snippet: false,
    }
}

/// Whether parsing can go on past this error once its entry is blanked:
/// mistakes in one entry (an unknown key, a wrong value), not in the YAML
/// itself.
fn is_recoverable(error: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    matches!(
        error.without_snippet(),
        E::SerdeUnknownField { .. }
            | E::SerdeUnknownVariant { .. }
            | E::SerdeInvalidType { .. }
            | E::Message { .. }
            | E::InvalidScalar { .. }
            | E::NullIntoString { .. }
            | E::DuplicateMappingKey { .. }
            | E::Unexpected { .. }
    )
}

/// Blanks the block-style entry on the line holding `offset`: from its key
/// (after a list item's `- `, unless the item is a plain value) to the end
/// of the line, and every following line indented deeper (its children).
/// Returns the entry's key and where the blanking starts, or `None` when
/// there is nothing sensible to blank.
fn blank_entry(text: &mut String, offset: usize) -> Option<(String, usize)> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = line_of(text, line_start).to_string();
    let indent = line.len() - line.trim_start_matches(' ').len();
    let item = line[indent..].starts_with("- ");
    // A list item holding a plain value goes whole, dash included, or the
    // list would keep an empty (null) item.
    let plain_item = item && !line[indent + 2..].contains(": ") && !line.trim_end().ends_with(':');
    let key_column = if item && !plain_item {
        indent + 2 + (line[indent + 2..].len() - line[indent + 2..].trim_start_matches(' ').len())
    } else {
        indent
    };
    let key = line[key_column..]
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut end = line_start + line.len();
    // Children: following lines that are blank, comments, or indented
    // deeper than the entry's key.
    while end < text.len() {
        let next_start = end + 1;
        let next = line_of(text, next_start.min(text.len()));
        let next_indent = next.len() - next.trim_start_matches(' ').len();
        let is_child = !next.trim().is_empty()
            && !next.trim_start().starts_with('#')
            && next_indent > key_column;
        if !is_child {
            break;
        }
        end = next_start + next.len();
    }
    let start = line_start + key_column;
    if start >= end {
        return None;
    }
    let blanked: String = text[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    // Spaces for characters keeps line numbers; for multi-byte characters
    // pad so that byte offsets after the entry stay the same too.
    let padding = (end - start).saturating_sub(blanked.len());
    text.replace_range(start..end, &format!("{blanked}{}", " ".repeat(padding)));
    Some((key, start))
}

/// Turns a YAML or type error into a problem with a span and advice.
fn problem_from_yaml(error: &serde_saphyr::Error, text: &str) -> Problem {
    use serde_saphyr::Error as E;

    let error = error.without_snippet();
    let span = error
        .location()
        .map_or(SourceSpan::from(0..0), |l| span_of(&l, text));
    let at =
        |message: String, label: &str, help: String| Problem::error(message, span, label, help);

    match error {
        E::AliasError { error, .. } => problem_from_yaml(error, text),
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let help = match did_you_mean(field, expected) {
                Some(best) => format!(
                    "did you mean `{best}`? Keys allowed here: {}",
                    list(expected)
                ),
                None => format!("remove it; keys allowed here: {}", list(expected)),
            };
            at(format!("unknown key `{field}`"), "not a key here", help)
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let help = match did_you_mean(variant, expected) {
                Some(best) => format!("did you mean `{best}`? Choose one of: {}", list(expected)),
                None => format!("choose one of: {}", list(expected)),
            };
            at(
                format!("`{variant}` is not allowed here"),
                "unknown value",
                help,
            )
        }
        E::SerdeMissingField { field, .. } => Problem::error(
            format!("missing key `{field}`"),
            first_key_of_mapping(text, span.offset()),
            format!("this mapping needs `{field}`"),
            missing_key_help(field),
        ),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => {
            let help = if expected.contains("sequence") {
                "write a list: one `- item` per line, or `[a, b]`".to_string()
            } else if expected.starts_with("struct") || expected.contains("map") {
                "write a mapping of `key: value` lines, indented under this key".to_string()
            } else {
                format!("write {expected} here")
            };
            at(
                format!("expected {expected}, found {unexpected}"),
                "wrong type",
                help,
            )
        }
        E::Unexpected { expected, .. } if expected.contains("scalar") => {
            let found = match text
                .get(span.offset()..)
                .and_then(|t| t.trim_start().chars().next())
            {
                Some('[' | '-') => "a list",
                Some('{') => "a mapping",
                _ => "a list or mapping",
            };
            at(
                format!("expected a single value here, found {found}"),
                found,
                "write one plain value, such as `demo` or `\"quoted text\"`".to_string(),
            )
        }
        E::InvalidScalar { ty, .. } => {
            let written = text
                .get(span.offset()..span.offset() + span.len())
                .unwrap_or("");
            let wanted = match *ty {
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number of zero or more",
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
                "f32" | "f64" => "a number",
                "bool" => "`true` or `false`",
                other => other,
            };
            at(
                format!("`{written}` is not {wanted}"),
                "invalid value",
                format!("write {wanted} here"),
            )
        }
        E::Unexpected { expected, .. } if expected.contains("sequence") => at(
            "expected a list here".to_string(),
            "not a list",
            "write a list: one `- item` per line, or `[a, b]`".to_string(),
        ),
        E::Unexpected { expected, .. } if expected.contains("mapping") => at(
            "expected a mapping here".to_string(),
            "not a mapping",
            "write `key: value` lines, indented under this key".to_string(),
        ),
        E::NullIntoString { .. } => at(
            "this key has no value".to_string(),
            "empty",
            "write a value after the colon, or remove the key".to_string(),
        ),
        E::Message { msg, .. } => match msg.split_once(HELP_SEPARATOR) {
            Some((message, help)) => {
                let spans_lines = text
                    .get(span.offset()..span.offset() + span.len())
                    .is_some_and(|t| t.contains('\n'));
                let help = if spans_lines {
                    format!(
                        "{help}\nthis value runs over several lines: is a closing `}}` or `]` missing?"
                    )
                } else {
                    help.to_string()
                };
                at(message.to_string(), "invalid value", help)
            }
            None => at(msg.clone(), "here", "correct the value here".to_string()),
        },
        E::DuplicateMappingKey { key, .. } => at(
            match key {
                Some(key) => format!("the key `{key}` appears twice in this mapping"),
                None => "a key appears twice in this mapping".to_string(),
            },
            "repeated key",
            "remove one of the two; a YAML mapping holds each key once".to_string(),
        ),
        E::MultipleDocuments { .. } => at(
            "the imagefile holds more than one YAML document".to_string(),
            "a second document starts here",
            "remove this `---` line and what follows; one imagefile describes one image"
                .to_string(),
        ),
        E::Budget { breach, .. } => {
            let (message, help) = match breach {
                BudgetBreach::Depth { .. } => (
                    format!("the YAML nests more than {MAX_DEPTH} levels deep"),
                    "an imagefile needs only a few levels; check for runaway brackets or indentation",
                ),
                BudgetBreach::Aliases { .. } | BudgetBreach::Anchors { .. } => (
                    format!("the YAML uses more than {MAX_ALIASES} aliases or anchors"),
                    "write the values out instead of expanding aliases",
                ),
                BudgetBreach::Documents { .. } => {
                    return at(
                        "the imagefile holds more than one YAML document".to_string(),
                        "a second document starts here",
                        "remove this `---` line and what follows; one imagefile describes one image"
                            .to_string(),
                    );
                }
                _ => (
                    "the YAML is too large to be an imagefile".to_string(),
                    "an imagefile is a few kilobytes; check that this is the right file",
                ),
            };
            at(message, "limit reached here", help.to_string())
        }
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => at(
            "the YAML aliases expand to too much data".to_string(),
            "alias expanded here",
            "this looks like an alias bomb; write the values out instead of nesting aliases"
                .to_string(),
        ),
        E::Eof { .. } => at(
            "the imagefile ends in the middle of a value".to_string(),
            "unexpected end",
            "close every open quote and bracket".to_string(),
        ),
        other => {
            let message = other.to_string();
            let offset = span.offset();
            let tab_near = line_of(text, offset).contains('\t');
            if message.contains("recursion limit") || message.contains("nesting") {
                return at(
                    "the YAML nests too deeply".to_string(),
                    "too deep",
                    "an imagefile needs only a few levels; check for runaway brackets or indentation"
                        .to_string(),
                );
            }
            let help = if tab_near {
                "YAML indents with spaces only; replace the tab with spaces"
            } else {
                "check the YAML syntax here: indentation, quotes and brackets"
            };
            at(strip_location_suffix(&message), "here", help.to_string())
        }
    }
}

/// The first key of the block mapping that holds the key at `offset`:
/// serde reports a missing key at the mapping's end, but the user should
/// look at its start.
fn first_key_of_mapping(text: &str, offset: usize) -> SourceSpan {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let key_column = |line: &str| line.len() - line.trim_start_matches([' ', '-']).len();
    let significant = |line: &str| !line.trim().is_empty() && !line.trim_start().starts_with('#');
    let column = key_column(line_of(text, line_start));
    let mut first = line_start;
    let mut cursor = line_start;
    while cursor > 0 {
        let previous_start = text[..cursor - 1].rfind('\n').map_or(0, |i| i + 1);
        let line = line_of(text, previous_start);
        cursor = previous_start;
        if !significant(line) {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent < column && key_column(line) != column {
            break;
        }
        if key_column(line) == column {
            first = previous_start;
            if line.trim_start().starts_with('-') {
                break;
            }
        }
    }
    let line = line_of(text, first);
    let key_start = first + key_column(line);
    let key_len = line[key_column(line)..].find(':').unwrap_or(0);
    SourceSpan::from(key_start..key_start + key_len)
}

/// Removes serde-saphyr's " at line X, column Y" suffix: miette shows the
/// location itself.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// The full line of text containing `offset`.
fn line_of(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    text.get(start..end).unwrap_or("")
}

/// The byte range a location covers: the parser's byte span when it has
/// one, else the token starting at its line and column.
fn span_of(location: &serde_saphyr::Location, text: &str) -> SourceSpan {
    let span = location.span();
    if let (Some(offset), Some(len)) = (span.byte_offset(), span.byte_len()) {
        let offset = usize::try_from(offset).unwrap_or(0).min(text.len());
        let len = usize::try_from(len).unwrap_or(0).min(text.len() - offset);
        return SourceSpan::from(offset..offset + len);
    }
    let line = usize::try_from(location.line()).unwrap_or(0);
    let column = usize::try_from(location.column()).unwrap_or(0);
    if line == 0 {
        return SourceSpan::from(0..0);
    }
    let line_start = yaml_line_start(text, line);
    // The line as YAML reads it: `\r` ends a line too, so the line's text
    // ends at either break (splitting at `\n` alone once put the offset
    // past the end of a text holding a lone `\r`).
    let line_text = text[line_start..].split(['\n', '\r']).next().unwrap_or("");
    let offset = line_start
        + line_text
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(line_text.len(), |(i, _)| i);
    let token_len = text[offset..]
        .find(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .unwrap_or(text.len() - offset);
    SourceSpan::from(offset..offset + token_len)
}

/// The byte offset where 1-based `line` starts, counting line breaks as
/// YAML does (`\n`, `\r\n` and a lone `\r`); the end of the text when it
/// has fewer lines.
fn yaml_line_start(text: &str, line: usize) -> usize {
    let bytes = text.as_bytes();
    let mut seen = 1;
    let mut i = 0;
    while seen < line && i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                i += 1;
                seen += 1;
            }
            b'\r' | b'\n' => seen += 1,
            _ => {}
        }
        i += 1;
    }
    i.min(text.len())
}

/// The allowed name closest to what the user wrote, if one is close.
pub(crate) fn did_you_mean<'a>(written: &str, allowed: &[&'a str]) -> Option<&'a str> {
    const ALIASES: [(&str, &str); 10] = [
        ("x86_64", "amd64"),
        ("x86-64", "amd64"),
        ("aarch64", "arm64"),
        ("msdos", "mbr"),
        ("dos", "mbr"),
        ("fat", "vfat"),
        ("fat32", "vfat"),
        ("efi", "esp"),
        ("img", "raw"),
        ("bios_boot", "bios-boot"),
    ];
    let lowered = written.to_ascii_lowercase();
    if let Some((_, target)) = ALIASES.iter().find(|(alias, _)| *alias == lowered)
        && let Some(found) = allowed.iter().find(|a| *a == target)
    {
        return Some(found);
    }
    allowed
        .iter()
        .map(|candidate| {
            (
                strsim::jaro_winkler(&lowered, &candidate.to_ascii_lowercase()),
                *candidate,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing_key_help(field: &str) -> String {
    match field {
        "name" => "add `name: my-image`; output files are named after it".to_string(),
        "base" => {
            "add a base, such as:\n  base:\n    distro: debian\n    release: bookworm".to_string()
        }
        "distro" => {
            "add `distro: debian` (or ubuntu, fedora, centos, rhel, opensuse, image)".to_string()
        }
        "size" => "add `size: 512MiB` (or `rest` for the remaining space)".to_string(),
        other => format!("add `{other}:` to this mapping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Found by the fuzzing harness (src/fuzz.rs, seed 7): a lone `\r` is a
    // YAML line break, so the parser's line 2 started past the text's end
    // when lines were counted at `\n` only, and slicing there panicked.
    // (`load` refuses this text for its NULs before parsing; the parser
    // must not rely on that.)
    #[test]
    fn fuzz_a_lone_carriage_return_in_a_quoted_scalar() {
        let text = "\"\r \0\0";
        let source = Source::new("imagefile.yaml", text);
        let problems = parse_yaml(&source).unwrap_err();
        assert!(!problems.problems.is_empty());
        for problem in &problems.problems {
            let (span, _) = problem.span.as_ref().unwrap();
            assert!(span.offset() + span.len() <= text.len(), "{problem:?}");
        }
        assert_eq!(yaml_line_start("a\rb\r\nc\nd", 4), 7);
        assert_eq!(yaml_line_start("a\rb", 9), 3);
    }

    #[test]
    fn suggestions_find_typos_and_aliases() {
        assert_eq!(
            did_you_mean("lable", &["name", "label", "size"]),
            Some("label")
        );
        assert_eq!(did_you_mean("x86_64", &["amd64", "arm64"]), Some("amd64"));
        assert_eq!(did_you_mean("zzz", &["name", "label"]), None);
    }

    #[test]
    fn spans_fall_back_to_line_and_column() {
        let text = "a: 1\nbb: two\n";
        assert_eq!(line_of(text, 6), "bb: two");
    }
}

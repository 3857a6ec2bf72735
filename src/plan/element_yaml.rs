//! `element.yaml`: what an element says about itself — a description, the
//! elements it needs, the packages it installs and the parameters it takes
//! from the manifest's `with:`.
//!
//! diskimage-builder has no such file: its hooks read whatever environment
//! variables they like, so a misspelt `with:` key is silently ignored and
//! the build goes on with the hook's own default. An element that declares
//! its parameters lets the plan (and so `kiln validate`) catch that before
//! anything is downloaded: unknown names, values of the wrong type, values
//! outside an enum, required parameters left out. The file is optional; an
//! element without it, or without a `parameters` key in it, takes `with:`
//! exactly as DIB would. The types below are the format's single source of
//! truth: serde reads them, schemars turns them (and their doc comments)
//! into `schema/element.schema.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::SourceSpan;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::{
    Distro, ElementName, ElementRef, EnvName, HELP_SEPARATOR, Manifest, ParamValue, Problem,
    Spanned, did_you_mean,
};

use super::deps::Resolved;
use super::{DERIVED_VARIABLES, PlanError, RUNTIME_VARIABLES, read_text};

/// The file's name inside an element directory.
pub const ELEMENT_YAML: &str = "element.yaml";

/// An element's `element.yaml`: its description, dependencies, packages
/// and parameters. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kiln element.yaml")]
pub struct ElementYaml {
    /// What the element does, in a sentence or two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// Elements this one needs, in addition to those listed in
    /// `element-deps` (a name in both is fine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Spanned<ElementName>>,

    /// Packages to install in the `install.d` phase, as entries without
    /// options in `package-installs.yaml` would be; the element's `pkg-map`
    /// translates them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Spanned<String>>,

    /// The base distributions the element is written for (`base.distro`).
    /// An image of another distribution that names the element, or pulls
    /// it in, is refused when it is planned. Without this key the element
    /// is taken for any distribution, as in diskimage-builder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distros: Vec<Spanned<Distro>>,

    /// The parameters the element takes from the manifest's `with:`, by
    /// name. With this key, a `with:` key that is not listed here is an
    /// error; `parameters: {}` means the element takes none. Without it,
    /// `with:` values reach the hooks unchecked, as in diskimage-builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<Spanned<EnvName>, Parameter>>,
}

/// One parameter of an element.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = {"required": ["type"], "properties": {"type": {"const": "enum"}}},
    "then" = {"required": ["values"]},
    "else" = {"not": {"required": ["values"]}}
))]
pub struct Parameter {
    /// The kind of value: `string` (the default), `integer`, `boolean`, or
    /// `enum` (one of `values`).
    #[serde(rename = "type", default)]
    pub kind: Spanned<ParamType>,

    /// What the parameter does, for the element's users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// The value the hooks get when the manifest gives none. A variable
    /// set by the manifest's `environment` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Spanned<ParamValue>>,

    /// The environment variable the hooks read the value from. Defaults to
    /// the parameter's name, so an element that already reads
    /// `DIB_FOO` can declare a parameter `DIB_FOO` without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Spanned<EnvName>>,

    /// Whether every manifest using the element must give a value. A
    /// required parameter has no `default`.
    #[serde(default)]
    pub required: Spanned<bool>,

    /// For `type: enum`: the values allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Spanned<ParamValue>>,
}

impl Parameter {
    /// The variable the hooks read this parameter from.
    pub fn env_name<'a>(&'a self, name: &'a EnvName) -> &'a EnvName {
        self.env.as_ref().map_or(name, |e| &e.value)
    }
}

/// The kind of value a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text, handed to the hooks as written.
    #[default]
    String,
    /// A whole number such as `8` or `-1`, handed to the hooks as written.
    Integer,
    /// `true` or `false`, handed to the hooks as `true` or `false`.
    Boolean,
    /// One of the parameter's `values`.
    Enum,
}

impl ParamType {
    /// The name as written in `element.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Enum => "enum",
        }
    }
}

/// Generates `element.yaml`'s JSON schema (draft-07, shaped for editors as
/// the imagefile's is).
pub fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|settings| settings.inline_subschemas = true)
        .with_transform(crate::manifest::tidy_for_editors)
        .into_generator();
    generator.into_root_schema_for::<ElementYaml>().to_value()
}

/// An `element.yaml` that is malformed or contradicts itself.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", summary(self))]
pub struct ElementYamlError {
    /// The file.
    pub path: PathBuf,
    /// Its text, for diagnostics that point into it.
    pub text: Arc<String>,
    /// Everything wrong with it, each with a span into `text`.
    pub problems: Vec<Problem>,
}

fn summary(error: &ElementYamlError) -> String {
    let Some(first) = error.problems.first() else {
        return format!("{}: not a valid element.yaml", error.path.display());
    };
    let offset = first.span.as_ref().map_or(0, |(span, _)| span.offset());
    let (line, column) = crate::manifest::line_and_column(&error.text, offset);
    let mut text = format!(
        "{}:{line}:{column}: {}",
        error.path.display(),
        first.message
    );
    if error.problems.len() > 1 {
        text.push_str(&format!(" (and {} more)", error.problems.len() - 1));
    }
    text
}

/// An `element.yaml` read from an element directory.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The file.
    pub(crate) path: PathBuf,
    /// What it says.
    pub(crate) yaml: ElementYaml,
}

/// Reads and checks the `element.yaml` of the element in `dir`; `None` when
/// it has none.
pub(crate) fn read(dir: &Path) -> Result<Option<Loaded>, PlanError> {
    let path = dir.join(ELEMENT_YAML);
    let Some(text) = read_text(&path)? else {
        return Ok(None);
    };
    match parse(&text) {
        Ok(yaml) => Ok(Some(Loaded { path, yaml })),
        Err(problems) => Err(PlanError::ElementYaml(Box::new(ElementYamlError {
            path,
            text: Arc::new(text),
            problems,
        }))),
    }
}

/// Parses and checks the text of an `element.yaml`: the element's
/// description, or every problem found, each with a span into `text`.
pub(crate) fn parse(text: &str) -> Result<ElementYaml, Vec<Problem>> {
    let parsed = match serde_saphyr::from_str::<Option<ElementYaml>>(text) {
        Ok(parsed) => parsed.unwrap_or_default(),
        Err(error) => return Err(vec![problem_from_yaml(&error, text)]),
    };
    let problems = check(&parsed);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(parsed)
}

/// Reads and checks the `element.yaml` of the element in `dir`; `None` when
/// it has none.
pub fn read_element_yaml(dir: &Path) -> Result<Option<ElementYaml>, PlanError> {
    Ok(read(dir)?.map(|l| l.yaml))
}

/// The elements the `element.yaml` in `dir` depends on.
pub(crate) fn dependencies(dir: &Path) -> Result<Vec<ElementName>, PlanError> {
    Ok(read(dir)?
        .map(|l| l.yaml.dependencies.into_iter().map(|d| d.value).collect())
        .unwrap_or_default())
}

/// The packages the `element.yaml` in `dir` installs, with the file's path;
/// `None` when it has no `element.yaml`.
pub(crate) fn packages(dir: &Path) -> Result<Option<(PathBuf, Vec<String>)>, PlanError> {
    Ok(read(dir)?.map(|l| {
        let names = l.yaml.packages.into_iter().map(|p| p.value).collect();
        (l.path, names)
    }))
}

/// Where serde-saphyr's error points, as a byte range into `text`.
fn span_of(error: &serde_saphyr::Error, text: &str) -> SourceSpan {
    let Some(location) = error.location() else {
        return SourceSpan::from(0..0);
    };
    let span = location.span();
    if let (Some(offset), Some(len)) = (span.byte_offset(), span.byte_len()) {
        let offset = usize::try_from(offset).unwrap_or(0).min(text.len());
        let len = usize::try_from(len).unwrap_or(0).min(text.len() - offset);
        return SourceSpan::from(offset..offset + len);
    }
    let line = usize::try_from(location.line()).unwrap_or(1).max(1);
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let column = usize::try_from(location.column()).unwrap_or(1).max(1);
    let offset = text[line_start..]
        .char_indices()
        .nth(column - 1)
        .map_or(text.len(), |(i, _)| line_start + i);
    SourceSpan::from(offset..offset)
}

const FORMAT_HELP: &str = "element.yaml takes `description`, `dependencies`, `packages`, `distros` and `parameters`; see \"Element parameters\" in the user guide, or schema/element.schema.json";

/// Turns a YAML or type error in an `element.yaml` into a problem.
fn problem_from_yaml(error: &serde_saphyr::Error, text: &str) -> Problem {
    use serde_saphyr::Error as E;
    let error = error.without_snippet();
    let span = span_of(error, text);
    match error {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let allowed = expected
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let help = match did_you_mean(field, expected) {
                Some(best) => format!("did you mean `{best}`? Keys allowed here: {allowed}"),
                None => format!("remove it; keys allowed here: {allowed}"),
            };
            Problem::error(
                format!("unknown key `{field}`"),
                span,
                "not a key here",
                help,
            )
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let allowed = expected
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let help = match did_you_mean(variant, expected) {
                Some(best) => format!("did you mean `{best}`? Choose one of: {allowed}"),
                None => format!("choose one of: {allowed}"),
            };
            Problem::error(
                format!("`{variant}` is not allowed here"),
                span,
                "unknown value",
                help,
            )
        }
        E::Message { msg, .. } => match msg.split_once(HELP_SEPARATOR) {
            Some((message, help)) => Problem::error(message, span, "invalid value", help),
            None => Problem::error(msg.clone(), span, "here", FORMAT_HELP),
        },
        other => {
            let message = other.to_string();
            let message = match message.rfind(" at line ") {
                Some(index) => message[..index].to_string(),
                None => message,
            };
            Problem::error(message, span, "here", FORMAT_HELP)
        }
    }
}

/// The rules of `element.yaml` a schema cannot express.
fn check(yaml: &ElementYaml) -> Vec<Problem> {
    let mut problems = Vec::new();
    for package in &yaml.packages {
        if package.is_empty() || package.contains(char::is_whitespace) {
            problems.push(Problem::error(
                format!("`{}` is not a package name", package.value),
                package.span,
                "not a package name",
                "write one package name per list entry, without spaces",
            ));
        }
    }
    let Some(parameters) = &yaml.parameters else {
        return problems;
    };
    check_parameters(parameters, &mut problems);
    by_place(&mut problems);
    problems
}

/// Orders problems as they occur in their file.
fn by_place(problems: &mut [Problem]) {
    problems.sort_by_key(|p| p.span.as_ref().map_or(0, |(span, _)| span.offset()));
}

fn check_parameters(
    parameters: &BTreeMap<Spanned<EnvName>, Parameter>,
    problems: &mut Vec<Problem>,
) {
    let mut envs: BTreeMap<&EnvName, &Spanned<EnvName>> = BTreeMap::new();
    for (name, param) in parameters {
        let env = param.env_name(name);
        let env_span = param.env.as_ref().map_or(name.span, |e| e.span);
        if DERIVED_VARIABLES.contains(&env.as_str()) || RUNTIME_VARIABLES.contains(&env.as_str()) {
            problems.push(Problem::error(
                format!(
                    "parameter `{}` would set `{env}`, which kiln sets itself",
                    name.value
                ),
                env_span,
                "reserved variable",
                "choose another variable, such as one starting with `DIB_` and the element's name",
            ));
        }
        if let Some(first) = envs.insert(env, name) {
            problems.push(
                Problem::error(
                    format!(
                        "parameters `{}` and `{}` both set `{env}`",
                        first.value, name.value
                    ),
                    env_span,
                    "same variable again",
                    "give each parameter its own `env`",
                )
                .with_related(first.span, "first set here"),
            );
        }
        match (param.kind.value, param.values.first()) {
            (ParamType::Enum, None) => problems.push(Problem::error(
                format!("parameter `{}` is an enum without `values`", name.value),
                param.kind.span,
                "no values",
                "list the allowed values, as in `values: [small, large]`",
            )),
            (kind, Some(first)) if kind != ParamType::Enum => problems.push(Problem::error(
                format!(
                    "parameter `{}` has `values`, but only an enum takes them",
                    name.value
                ),
                first.span,
                "not used",
                "write `type: enum`, or remove `values`",
            )),
            _ => {}
        }
        if let Some(default) = &param.default {
            if param.required.value {
                problems.push(
                    Problem::error(
                        format!(
                            "parameter `{}` is required and has a default",
                            name.value
                        ),
                        param.required.span,
                        "required",
                        "remove `required: true` (the default is used when the manifest gives no value) or remove `default`",
                    )
                    .with_related(default.span, "default"),
                );
            } else if let Err(mismatch) = value_for(param, &default.value.0)
                && !(mismatch == Mismatch::Choice && param.values.is_empty())
            {
                problems.push(Problem::error(
                    format!(
                        "the default of parameter `{}` {}",
                        name.value,
                        mismatch.describe(&default.value.0, param)
                    ),
                    default.span,
                    mismatch.label(),
                    mismatch.help(param),
                ));
            }
        }
    }
}

/// Why a value does not fit a parameter: what it should have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mismatch {
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// One of the enum's `values`.
    Choice,
}

impl Mismatch {
    fn describe(self, value: &str, param: &Parameter) -> String {
        match self {
            Mismatch::Integer => format!("is an integer, but `{value}` is not a whole number"),
            Mismatch::Boolean => format!("is a boolean, but `{value}` is not `true` or `false`"),
            Mismatch::Choice => {
                format!("is one of {}, but not `{value}`", allowed_values(param))
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mismatch::Integer => "not a whole number",
            Mismatch::Boolean => "not a boolean",
            Mismatch::Choice => "not allowed",
        }
    }

    /// [`Mismatch::help`], suggesting the allowed value closest to what
    /// was written.
    fn help_for(self, param: &Parameter, written: &str) -> String {
        let values: Vec<&str> = param.values.iter().map(|v| v.value.0.as_str()).collect();
        match did_you_mean(written, &values) {
            Some(best) if self == Mismatch::Choice => {
                format!(
                    "did you mean `{best}`? Choose one of {}",
                    allowed_values(param)
                )
            }
            _ => self.help(param),
        }
    }

    fn help(self, param: &Parameter) -> String {
        match self {
            Mismatch::Integer => "write a whole number, such as `8` or `-1`".to_string(),
            Mismatch::Boolean => "write `true` or `false`".to_string(),
            Mismatch::Choice => format!("choose one of {}", allowed_values(param)),
        }
    }
}

fn allowed_values(param: &Parameter) -> String {
    param
        .values
        .iter()
        .map(|v| format!("`{}`", v.value.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text the hooks get for `value`, or why it does not fit `param`.
/// Integers keep their spelling; booleans become `true` or `false`.
fn value_for(param: &Parameter, value: &str) -> Result<String, Mismatch> {
    match param.kind.value {
        ParamType::String => Ok(value.to_string()),
        ParamType::Integer => value
            .parse::<i64>()
            .map(|_| value.to_string())
            .map_err(|_| Mismatch::Integer),
        // YAML 1.2's spellings of the two booleans.
        ParamType::Boolean => match value {
            "true" | "True" | "TRUE" => Ok("true".to_string()),
            "false" | "False" | "FALSE" => Ok("false".to_string()),
            _ => Err(Mismatch::Boolean),
        },
        ParamType::Enum => {
            if param.values.iter().any(|v| v.value.0 == value) {
                Ok(value.to_string())
            } else {
                Err(Mismatch::Choice)
            }
        }
    }
}

/// The environment one element's parameters give the hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Values the manifest gave, by variable.
    pub(crate) given: BTreeMap<EnvName, ParamValue>,
    /// Defaults of parameters the manifest left out, by variable.
    pub(crate) defaults: BTreeMap<EnvName, ParamValue>,
}

/// How the manifest names one element: where, and with what `with:`.
struct Entry<'a> {
    name_span: SourceSpan,
    with: Option<&'a BTreeMap<Spanned<EnvName>, Spanned<ParamValue>>>,
}

/// Checks the manifest's `with:` values against the parameters each
/// element's `element.yaml` declares and works out every element's
/// environment; fails with every problem found, each pointing into the
/// manifest.
pub(crate) fn bind(
    manifest: &Manifest,
    resolved: &[Resolved],
) -> Result<BTreeMap<ElementName, Bound>, PlanError> {
    let mut entries: BTreeMap<&ElementName, Entry<'_>> = BTreeMap::new();
    for element in &manifest.elements {
        let entry = match &element.value {
            ElementRef::Name(_) => Entry {
                name_span: element.span,
                with: None,
            },
            ElementRef::WithParams(with) => Entry {
                name_span: with.name.span,
                with: Some(&with.with),
            },
        };
        // The plan uses an element's first entry; so does this.
        entries.entry(element.value.name()).or_insert(entry);
    }
    let parents: BTreeMap<&ElementName, Option<&ElementName>> = resolved
        .iter()
        .map(|r| (&r.element.name, r.required_by.as_ref()))
        .collect();

    let mut problems = Vec::new();
    let mut bound = BTreeMap::new();
    let distro = manifest.base.value.distro.value;
    // Elements refused for this distribution, and what they pull in: a
    // refusal is said once, for the element the manifest brings in.
    let mut refused: BTreeSet<&ElementName> = BTreeSet::new();
    for r in resolved {
        let element = &r.element.name;
        let entry = entries.get(element);
        let with = entry.and_then(|e| e.with);
        let yaml = read(&r.element.dir)?.map(|l| l.yaml);
        let distros = yaml.as_ref().map_or(&[][..], |y| y.distros.as_slice());
        let wrong = !distros.is_empty() && !distros.iter().any(|d| d.value == distro);
        let parent_refused = r.required_by.as_ref().is_some_and(|p| refused.contains(p));
        if wrong && !parent_refused {
            problems.push(wrong_distro(
                element, distros, distro, entry, &parents, &entries,
            ));
        }
        if wrong || parent_refused {
            refused.insert(element);
        }
        let parameters = yaml.and_then(|y| y.parameters);
        let Some(parameters) = parameters else {
            // No declared parameters: `with:` reaches the hooks as written,
            // as in diskimage-builder.
            let given = with
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.value.clone(), v.value.clone()))
                .collect();
            bound.insert(
                element.clone(),
                Bound {
                    given,
                    defaults: BTreeMap::new(),
                },
            );
            continue;
        };
        let mut result = Bound::default();
        for (key, value) in with.into_iter().flatten() {
            let Some((name, param)) = parameters.get_key_value(key) else {
                problems.push(unknown_parameter(element, key, &parameters));
                continue;
            };
            match value_for(param, &value.value.0) {
                Ok(text) => {
                    result
                        .given
                        .insert(param.env_name(name).clone(), ParamValue(text));
                }
                Err(mismatch) => problems.push(Problem::error(
                    format!(
                        "parameter `{key}` of element `{element}` {}",
                        mismatch.describe(&value.value.0, param),
                        key = key.value
                    ),
                    value.span,
                    mismatch.label(),
                    mismatch.help_for(param, &value.value.0),
                )),
            }
        }
        for (name, param) in &parameters {
            if with.is_some_and(|w| w.contains_key(name)) {
                continue;
            }
            if let Some(default) = &param.default {
                // Checked when the file was read, so it fits.
                let text = value_for(param, &default.value.0).unwrap_or_default();
                result
                    .defaults
                    .insert(param.env_name(name).clone(), ParamValue(text));
            } else if param.required.value {
                problems.push(missing_parameter(
                    element, name, param, entry, &parents, &entries,
                ));
            }
        }
        bound.insert(element.clone(), result);
    }
    by_place(&mut problems);
    if problems.is_empty() {
        Ok(bound)
    } else {
        Err(PlanError::Parameters(problems))
    }
}

fn unknown_parameter(
    element: &ElementName,
    key: &Spanned<EnvName>,
    parameters: &BTreeMap<Spanned<EnvName>, Parameter>,
) -> Problem {
    let names: Vec<&str> = parameters.keys().map(|n| n.value.as_str()).collect();
    let listed = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let help = if names.is_empty() {
        format!("remove it; element `{element}` takes no parameters")
    } else {
        match did_you_mean(key.value.as_str(), &names) {
            Some(best) => {
                format!("did you mean `{best}`? Parameters of `{element}`: {listed}")
            }
            None => format!("remove it; parameters of `{element}`: {listed}"),
        }
    };
    Problem::error(
        format!(
            "element `{element}` has no parameter `{}`",
            key.value.as_str()
        ),
        key.span,
        "unknown parameter",
        help,
    )
}

/// Where the manifest brings in `element`: its own entry, or the entry of
/// the requested element whose `element-deps` pulled it in, with the chain
/// from there (`app -> lib`).
fn brought_in_at(
    element: &ElementName,
    entry: Option<&Entry<'_>>,
    parents: &BTreeMap<&ElementName, Option<&ElementName>>,
    entries: &BTreeMap<&ElementName, Entry<'_>>,
) -> (SourceSpan, Option<String>) {
    if let Some(entry) = entry {
        return (entry.name_span, None);
    }
    let mut chain = vec![element];
    let mut cursor = element;
    while let Some(Some(parent)) = parents.get(cursor) {
        chain.push(parent);
        cursor = parent;
    }
    let span = entries
        .get(cursor)
        .map_or(SourceSpan::from(0..0), |e| e.name_span);
    let path = chain
        .iter()
        .rev()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(" -> ");
    (span, Some(path))
}

fn wrong_distro(
    element: &ElementName,
    distros: &[Spanned<Distro>],
    distro: Distro,
    entry: Option<&Entry<'_>>,
    parents: &BTreeMap<&ElementName, Option<&ElementName>>,
    entries: &BTreeMap<&ElementName, Entry<'_>>,
) -> Problem {
    let listed = distros
        .iter()
        .map(|d| format!("`{}`", d.value.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    // The element of the same family named for this distribution, when
    // kiln's own elements have one (`debian` -> `ubuntu`).
    let counterpart = [("debian", "ubuntu"), ("debian-minimal", "ubuntu-minimal")]
        .iter()
        .find_map(|(d, u)| match (distro, element.as_str()) {
            (Distro::Ubuntu, name) if name == *d => Some(*u),
            (Distro::Debian, name) if name == *u => Some(*d),
            _ => None,
        });
    let (span, chain) = brought_in_at(element, entry, parents, entries);
    let help = match (counterpart, &chain) {
        (Some(other), None) => format!(
            "use `{other}` for a `base.distro: {}` image, or change `base.distro` to {listed}",
            distro.as_str()
        ),
        _ => format!(
            "remove the element, or change `base.distro` to {listed}; `{element}` is for {listed} only"
        ),
    };
    match chain {
        None => Problem::error(
            format!(
                "element `{element}` is for {listed}, and this image's base is `{}`",
                distro.as_str()
            ),
            span,
            format!("not for `{}`", distro.as_str()),
            help,
        ),
        Some(path) => Problem::error(
            format!(
                "element `{element}` (required by {path}) is for {listed}, and this image's base is `{}`",
                distro.as_str()
            ),
            span,
            format!("pulls in `{element}`"),
            help,
        ),
    }
}

fn missing_parameter(
    element: &ElementName,
    name: &Spanned<EnvName>,
    param: &Parameter,
    entry: Option<&Entry<'_>>,
    parents: &BTreeMap<&ElementName, Option<&ElementName>>,
    entries: &BTreeMap<&ElementName, Entry<'_>>,
) -> Problem {
    let name = name.value.as_str();
    let what = param
        .description
        .as_deref()
        .map(|d| format!(" ({})", d.trim()))
        .unwrap_or_default();
    let kind = param.kind.value.as_str();
    if let Some(entry) = entry {
        let help = if entry.with.is_some() {
            format!("add `{name}: …` under `with:`; it takes a {kind}{what}")
        } else {
            format!(
                "write the element as `- name: {element}` with `with: {{{name}: …}}`; `{name}` takes a {kind}{what}"
            )
        };
        return Problem::error(
            format!("element `{element}` needs parameter `{name}`"),
            entry.name_span,
            format!("`{name}` not given"),
            help,
        );
    }
    // A dependency: point at the manifest's element that pulled it in.
    let (span, path) = brought_in_at(element, None, parents, entries);
    let path = path.unwrap_or_default();
    Problem::error(
        format!("element `{element}` (required by {path}) needs parameter `{name}`"),
        span,
        format!("pulls in `{element}`"),
        format!(
            "add `- name: {element}` with `with: {{{name}: …}}` to `elements`; `{name}` takes a {kind}{what}"
        ),
    )
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;

//! `kiln elements list` (or `list --json`, for tools) and `kiln elements
//! show NAME`: what elements the search path holds, and what one of them
//! does.

use std::io::Write;
use std::path::PathBuf;

use crate::failure::Failure;
use crate::ops::elements::{builtin_elements, list, list_json, show};
use crate::plan::SearchPath;
use crate::terminal;

/// What `kiln elements` was asked to do.
#[derive(Debug)]
pub enum ElementsCommand {
    /// List every element; as JSON for tools with `json`.
    List {
        /// Print a JSON array instead of columns.
        json: bool,
    },
    /// Show the element of this name.
    Show(String),
}

/// Settings of `kiln elements`.
#[derive(Debug)]
pub struct ElementsSettings {
    /// Directories searched before `KILN_ELEMENTS_PATH`/`ELEMENTS_PATH`
    /// and the built-in elements.
    pub elements_path: Vec<PathBuf>,
    /// List them all, or show one.
    pub action: ElementsCommand,
    /// Where kiln's built-in elements are unpacked (the cache directory).
    pub cache_dir: Option<PathBuf>,
}

/// Lists the elements, or shows one.
pub fn run(settings: &ElementsSettings) -> Result<(), Failure> {
    let search = SearchPath::from_env(
        &settings.elements_path,
        &builtin_elements(settings.cache_dir.as_deref())?,
    );
    let text = match &settings.action {
        ElementsCommand::List { json: false } => list(&search, terminal::stdout_columns()),
        ElementsCommand::List { json: true } => list_json(&search)?,
        ElementsCommand::Show(name) => show(&search, name)?,
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::Internal(miette::miette!("cannot write to stdout: {e}")))
}

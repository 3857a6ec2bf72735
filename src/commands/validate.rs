//! `kiln validate`: check an imagefile and report every problem in it.

use std::path::PathBuf;

use crate::failure::Failure;
use crate::{manifest, terminal};

/// Settings of `kiln validate`.
#[derive(Debug)]
pub struct ValidateSettings {
    /// The imagefile to check.
    pub path: PathBuf,
}

/// Checks the imagefile; prints warnings, and a summary when it is valid.
pub fn run(settings: &ValidateSettings) -> Result<(), Failure> {
    let checked = manifest::read(&settings.path)?;
    for warning in checked.warnings.diagnostics() {
        terminal::diagnostic(&miette::Report::new(warning));
    }
    let manifest = &checked.manifest;
    let base = &manifest.base;
    let release = base
        .release
        .as_ref()
        .map(|r| format!(" {}", r.value))
        .unwrap_or_default();
    terminal::status(&format!(
        "{}: valid — image `{}`, {}{release}, {} element(s), {} extra package(s)",
        checked.source.name(),
        manifest.name.value,
        base.distro.as_str(),
        manifest.elements.len(),
        manifest.packages.len(),
    ));
    Ok(())
}

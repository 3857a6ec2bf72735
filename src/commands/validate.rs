//! `kiln validate`: check an imagefile and report every problem in it.
//!
//! Besides the manifest's own rules, validate plans its elements as `kiln
//! lock` would (without touching the network), so elements that cannot be
//! found, a malformed `element.yaml` and `with:` values that do not fit an
//! element's declared parameters are reported before any download.

use std::path::PathBuf;

use crate::failure::Failure;
use crate::ops::lock::plan_elements;
use crate::{manifest, terminal};

/// Settings of `kiln validate`.
#[derive(Debug)]
pub struct ValidateSettings {
    /// The imagefile to check.
    pub path: PathBuf,
    /// Element directories searched first.
    pub elements_path: Vec<PathBuf>,
}

/// Checks the imagefile and plans its elements; prints warnings, and a
/// summary when it is valid.
pub fn run(settings: &ValidateSettings) -> Result<(), Failure> {
    let checked = manifest::read(&settings.path)?;
    for warning in checked.warnings.diagnostics() {
        terminal::diagnostic(&miette::Report::new(warning));
    }
    let plan = plan_elements(&checked, &settings.elements_path)?;
    let manifest = &checked.manifest;
    let base = &manifest.base;
    let release = base
        .release
        .as_ref()
        .map(|r| format!(" {}", r.value))
        .unwrap_or_default();
    if base.distro.value == manifest::Distro::Ubuntu {
        terminal::status(
            "note: `distro: ubuntu` is experimental: kiln has locked and built it (with the \
             `ubuntu` and `ubuntu-minimal` elements) only from a test-made archive laid out and \
             signed like Ubuntu's, never from Ubuntu's own archive, and has not booted it",
        );
    }
    let repositories = if manifest.repositories.is_empty() {
        String::new()
    } else {
        format!(", {} extra repositor(ies)", manifest.repositories.len())
    };
    terminal::status(&format!(
        "{}: valid — image `{}`, {}{release}, {} element(s), {} extra package(s){repositories}",
        checked.source.name(),
        manifest.name.value,
        base.distro.as_str(),
        plan.elements.len(),
        manifest.packages.len(),
    ));
    Ok(())
}

//! `kiln lock`: pin every input of an image into `<imagefile>.lock`.

use std::path::PathBuf;

use crate::failure::Failure;
use crate::manifest;
use crate::ops::lock::{Write, is_current, lock_planned, plan_elements};
use crate::{lock, terminal};

/// Settings of `kiln lock`.
#[derive(Debug)]
pub struct LockSettings {
    /// The imagefile to lock.
    pub path: PathBuf,
    /// Resolve again even when the lock matches the manifest.
    pub update: bool,
    /// Show what would change without writing the lock.
    pub dry_run: bool,
    /// The cache directory, when not the default.
    pub cache_dir: Option<PathBuf>,
    /// Element directories searched first.
    pub elements_path: Vec<PathBuf>,
}

/// Writes (or refreshes) the lock beside the imagefile.
pub fn run(settings: &LockSettings) -> Result<(), Failure> {
    let checked = manifest::read(&settings.path)?;
    for warning in checked.warnings.diagnostics() {
        terminal::diagnostic(&miette::Report::new(warning));
    }
    let plan = plan_elements(
        &checked,
        &settings.elements_path,
        settings.cache_dir.as_deref(),
    )?;
    let lock_path = lock::path_for(&settings.path);
    if !settings.update
        && let Ok(existing) = lock::read(&lock_path)
        && is_current(&existing, &checked, &plan)
    {
        terminal::status(&format!(
            "{} is up to date ({} packages); `kiln lock --update` resolves against the mirror again",
            lock_path.display(),
            existing.packages.len()
        ));
        return Ok(());
    }

    let write = if settings.dry_run {
        Write::DryRun
    } else {
        Write::Yes
    };
    lock_planned(
        &checked,
        &plan,
        &lock_path,
        settings.cache_dir.as_ref(),
        write,
    )?;
    Ok(())
}

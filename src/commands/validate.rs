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
    /// Where kiln's built-in elements are unpacked (the cache directory).
    pub cache_dir: Option<PathBuf>,
}

/// What has not been tried of the imagefile's base, when something has
/// not: the warning `kiln validate` gives, naming what was not tried.
pub fn experimental_note(base: &manifest::Base) -> Option<String> {
    let notes: Vec<String> = [distro_note(base), arch_note(base)]
        .into_iter()
        .flatten()
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// What has not been tried of building for the image's architecture.
fn arch_note(base: &manifest::Base) -> Option<String> {
    (base.arch.value == manifest::Arch::Arm64).then(|| {
        "`arch: arm64` is experimental: kiln builds arm64 images on an amd64 host through \
         QEMU's user-mode emulation, with native twins of the architecture-neutral tools (about \
         2.5 times as slow as amd64) and boots them with `kiln test` under qemu-system-aarch64; it \
         has not been tried on a real arm64 machine or cloud"
            .to_string()
    })
}

/// What has not been tried of the image's distribution.
fn distro_note(base: &manifest::Base) -> Option<String> {
    use manifest::Distro;
    let distro = base.distro.value;
    let from_image = base.from_image();
    let found_by_kiln = from_image && base.url.is_none();
    let note = match distro {
        Distro::Ubuntu if !from_image => {
            "`distro: ubuntu` is experimental: kiln has locked and built it (with the \
             `ubuntu` and `ubuntu-minimal` elements) only from a test-made archive laid out and \
             signed like Ubuntu's, never from Ubuntu's own archive, and has not booted it"
                .to_string()
        }
        Distro::Debian | Distro::Image if from_image => return None,
        Distro::Debian => return None,
        Distro::Rhel => {
            "`distro: rhel` is experimental: kiln has never taken a tree out of a RHEL image, \
             run dnf in one, made its bootloader, relabelled it for SELinux or booted it"
                .to_string()
        }
        _ => {
            let manager = match distro {
                Distro::Opensuse => "zypper",
                Distro::Ubuntu => "apt",
                _ => "dnf",
            };
            let site = if found_by_kiln {
                format!(
                    "finding the image and checking its signature have been tried only against a \
                     download site laid out like {}'s, signed by a test key; ",
                    distro.as_str()
                )
            } else {
                String::new()
            };
            format!(
                "`distro: {}` from its cloud image is experimental: {site}kiln has never taken a \
                 tree out of the distribution's own image, run {manager} in it (only in a \
                 Debian-based stand-in), made its bootloader{} or booted it",
                distro.as_str(),
                if matches!(distro, Distro::Fedora | Distro::Centos) {
                    ", relabelled it for SELinux"
                } else {
                    ""
                }
            )
        }
    };
    Some(note)
}

/// Checks the imagefile and plans its elements; prints warnings, and a
/// summary when it is valid.
pub fn run(settings: &ValidateSettings) -> Result<(), Failure> {
    let checked = manifest::read(&settings.path)?;
    for warning in checked.warnings.diagnostics() {
        terminal::diagnostic(&miette::Report::new(warning));
    }
    let plan = plan_elements(
        &checked,
        &settings.elements_path,
        settings.cache_dir.as_deref(),
    )?;
    let manifest = &checked.manifest;
    let base = &manifest.base;
    let release = base
        .release
        .as_ref()
        .map(|r| format!(" {}", r.value))
        .unwrap_or_default();
    if let Some(note) = experimental_note(&base.value) {
        terminal::status(&format!("note: {note}"));
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

//! `kiln sbom`: the image's SBOMs from its lock, without building (for a
//! CI step that scans what an image will hold before it is built).
//!
//! What the lock alone cannot know is said in the documents themselves:
//! licences are in the built tree's copyright files (`NOASSERTION` here),
//! a package a hook removes during the build is still listed, an image
//! base's own packages are not; maintainers and dependencies come from the
//! locked `.deb`s when the cache holds them (`kiln fetch`).

use std::io::Write as _;
use std::path::PathBuf;

use crate::failure::Failure;
use crate::manifest::{self, SbomFormat};
use crate::ops::fetch::{open_cache, read_lock};
use crate::{lock, sbom, terminal};

/// Settings of `kiln sbom`.
#[derive(Debug)]
pub struct SbomSettings {
    /// The imagefile whose lock to describe.
    pub path: PathBuf,
    /// Write `<name>.spdx.json` and `<name>.cdx.json` into this directory
    /// instead of one document to stdout.
    pub output: Option<PathBuf>,
    /// Only this format (stdout: SPDX unless given).
    pub format: Option<SbomFormat>,
    /// The cache directory, when not the default.
    pub cache_dir: Option<PathBuf>,
}

/// Writes the SBOMs of the imagefile's lock.
pub fn run(settings: &SbomSettings) -> Result<(), Failure> {
    let checked = manifest::read(&settings.path)?;
    let lock = read_lock(&settings.path)?;
    if lock.manifest != lock::sha256_tag(checked.source.text().as_bytes()) {
        terminal::warning(&format!(
            "{} is older than {}: the SBOM describes the lock, not the imagefile as it is now (run `kiln lock {}`)",
            lock::path_for(&settings.path).display(),
            settings.path.display(),
            settings.path.display()
        ));
    }
    let lock_text = lock::to_text(&lock);
    // Without a cache the SBOM still lists every package, without
    // maintainers and dependencies (and says so below).
    let cache = open_cache(settings.cache_dir.as_ref()).ok();
    let name = checked.manifest.name.value.as_str();
    let inventory = sbom::Inventory::from_lock(
        sbom::Origin {
            image: name,
            lock: &lock,
            lock_text: lock_text.as_bytes(),
        },
        cache.as_ref(),
    );
    if inventory.basis
        == (sbom::Basis::Lock {
            control_files: false,
        })
        && !lock.packages.is_empty()
    {
        terminal::warning(
            "some locked .deb files are not in the cache: their maintainers and dependencies are left out (run `kiln fetch` first to have them)",
        );
    }
    let document = |format: SbomFormat| match format {
        SbomFormat::Spdx => (sbom::SPDX_SUFFIX, sbom::spdx::document(&inventory)),
        SbomFormat::Cyclonedx => (
            sbom::CYCLONEDX_SUFFIX,
            sbom::cyclonedx::document(&inventory),
        ),
    };
    let Some(dir) = &settings.output else {
        let (_, value) = document(settings.format.unwrap_or(SbomFormat::Spdx));
        return std::io::stdout()
            .lock()
            .write_all(sbom::to_text(&value).as_bytes())
            .map_err(|e| {
                Failure::Internal(miette::miette!("cannot write the SBOM to stdout: {e}"))
            });
    };
    let formats = match settings.format {
        Some(format) => vec![format],
        None => vec![SbomFormat::Spdx, SbomFormat::Cyclonedx],
    };
    fs_err::create_dir_all(dir).map_err(|e| {
        Failure::user(miette::miette!(
            help = "give a directory kiln can create and write with -o",
            "{e}"
        ))
    })?;
    for format in formats {
        let (suffix, value) = document(format);
        let path =
            sbom::write_document(dir, name, suffix, &sbom::to_text(&value)).map_err(|e| {
                Failure::user(miette::miette!(
                    help = "give a directory kiln can write with -o, or leave -o out to print to stdout",
                    "{e}"
                ))
            })?;
        terminal::status(&format!(
            "wrote {} ({} packages, from the lock)",
            path.display(),
            inventory.packages.len()
        ));
    }
    Ok(())
}

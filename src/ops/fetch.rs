//! What every operation that reads a lock or the cache shares: opening
//! the cache, reading the lock beside an imagefile, the `--mirror` to
//! download from, and how a fetch failure reaches the user.

use crate::cache::Cache;
use crate::failure::Failure;
use crate::fetch::FetchError;
use crate::lock;
use std::path::PathBuf;

/// Opens the cache named on the command line, or the default one.
pub fn open_cache(dir: Option<&PathBuf>) -> Result<Cache, Failure> {
    let dir = match dir {
        Some(dir) => dir.clone(),
        None => Cache::default_dir().map_err(|e| {
            Failure::user(miette::miette!(
                help = "give a cache directory with --cache-dir, or set HOME",
                "{e}"
            ))
        })?,
    };
    Cache::open(&dir).map_err(Failure::internal)
}

/// Reads the lock beside `manifest`, with a hint when it is missing.
pub fn read_lock(manifest: &std::path::Path) -> Result<lock::Lock, Failure> {
    let path = lock::path_for(manifest);
    if !path.exists() {
        return Err(Failure::user(miette::miette!(
            help = format!("run `kiln lock {}` first", manifest.display()),
            "there is no lock at {}",
            path.display()
        )));
    }
    lock::read(&path).map_err(|e| {
        if e.is_newer_format() {
            return Failure::user(miette::miette!(help = lock::NEWER_FORMAT_HELP, "{e}"));
        }
        Failure::user(miette::miette!(
            help = format!(
                "run `kiln lock --update {}` to write it anew",
                manifest.display()
            ),
            "{e}"
        ))
    })
}

/// The archive to download the base archive's `.deb`s from instead of the
/// lock's: `--mirror`, when given, checked to be a URL kiln can download
/// from.
pub fn download_mirror(mirror: Option<&str>) -> Result<Option<&str>, Failure> {
    let Some(mirror) = mirror else {
        return Ok(None);
    };
    let scheme_ok = ["http://", "https://", "file://"]
        .iter()
        .any(|scheme| mirror.starts_with(scheme) && mirror.len() > scheme.len());
    if scheme_ok {
        Ok(Some(mirror))
    } else {
        Err(Failure::user(miette::miette!(
            help = "give the archive's base URL, the one with `pool/` below it, such as the URI of your apt sources (http://, https:// or file://)",
            "--mirror `{mirror}` is not an http, https or file URL"
        )))
    }
}

/// A fetch failure as the user sees it: packages missing offline are the
/// user's to fix (exit 1); a mirror or network failure is not (exit 2).
pub fn fetch_failure(error: FetchError) -> Failure {
    match error {
        FetchError::Missing { .. } => Failure::user(miette::miette!(
            help = "run `kiln fetch` once with the network, then work offline",
            "{error}"
        )),
        FetchError::Download {
            ref package,
            source: crate::host::http::HttpError::HashMismatch { .. },
            ..
        } if package == crate::fetch::IMAGE => Failure::Internal(miette::miette!(
            help = "the image at the lock's URL is not the one `kiln lock` pinned: check where it comes from, then run `kiln lock` to pin the new one (or keep building from a cache that holds the pinned one)",
            "{error}"
        )),
        other => Failure::Internal(miette::miette!("{other}")),
    }
}

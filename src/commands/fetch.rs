//! `kiln fetch`: download every package a lock pins into the cache: all
//! that a build from the lock needs, so that `kiln build --offline` works.

use std::path::PathBuf;
use std::time::Instant;

use crate::cache::Cache;
use crate::failure::Failure;
use crate::fetch::{self, FetchError};
use crate::host::http::{Http, HttpOptions};
use crate::{lock, terminal};

/// Settings of `kiln fetch`.
#[derive(Debug)]
pub struct FetchSettings {
    /// The imagefile whose lock to fetch (the lock sits beside it).
    pub path: PathBuf,
    /// Use only the cache; fail naming what is missing.
    pub offline: bool,
    /// Where to download from instead of the lock's mirror.
    pub mirror: Option<String>,
    /// The cache directory, when not the default.
    pub cache_dir: Option<PathBuf>,
}

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
    Cache::open(&dir).map_err(|e| Failure::Internal(miette::miette!("{e}")))
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
        other => Failure::Internal(miette::miette!("{other}")),
    }
}

/// Downloads (or, offline, checks) every locked package.
pub fn run(settings: &FetchSettings) -> Result<(), Failure> {
    let lock = read_lock(&settings.path)?;
    let cache = open_cache(settings.cache_dir.as_ref())?;
    let http = Http::new(HttpOptions {
        offline: settings.offline,
        ..HttpOptions::default()
    })
    .map_err(|e| Failure::Internal(miette::miette!("{e}")))?;
    let mirror = download_mirror(settings.mirror.as_deref())?;
    let started = Instant::now();
    let fetched = fetch::fetch(&lock, mirror, &cache, &http).map_err(fetch_failure)?;
    terminal::status(&format!(
        "{} package(s) in the cache at {}: {} already there, {} downloaded ({:.1} MiB) in {:.1} s",
        lock.packages.len(),
        cache.dir().display(),
        fetched.cached,
        fetched.downloaded,
        fetched.downloaded_bytes as f64 / f64::from(1u32 << 20),
        started.elapsed().as_secs_f64(),
    ));
    Ok(())
}

//! `kiln fetch`: download every package a lock pins into the cache: all
//! that a build from the lock needs, so that `kiln build --offline` works.

use std::path::PathBuf;
use std::time::Instant;

use crate::failure::Failure;
use crate::fetch;
use crate::ops::fetch::{download_mirror, fetch_failure, http_client, open_cache, read_lock};
use crate::terminal;

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

/// What the lock has kiln fetch: the base image, the packages and the
/// native twins (which are downloaded and counted with the packages).
fn fetched_what(lock: &crate::lock::Lock) -> String {
    let mut what = match &lock.base.image {
        Some(_) => format!("the base image and {} package(s)", lock.packages.len()),
        None => format!("{} package(s)", lock.packages.len()),
    };
    if !lock.native_twins.is_empty() {
        what.push_str(&format!(" and {} native twin(s)", lock.native_twins.len()));
    }
    what
}

/// Downloads (or, offline, checks) every locked package.
pub fn run(settings: &FetchSettings) -> Result<(), Failure> {
    let lock = read_lock(&settings.path)?;
    let cache = open_cache(settings.cache_dir.as_ref())?;
    let http = http_client(settings.offline)?;
    let mirror = download_mirror(settings.mirror.as_deref())?;
    let started = Instant::now();
    let fetched = fetch::fetch(&lock, mirror, &cache, &http).map_err(fetch_failure(&cache))?;
    let what = fetched_what(&lock);
    terminal::status(&format!(
        "{what} in the cache at {}: {} already there, {} downloaded ({:.1} MiB) in {:.1} s",
        cache.dir().display(),
        fetched.cached,
        fetched.downloaded,
        fetched.downloaded_bytes as f64 / f64::from(1u32 << 20),
        started.elapsed().as_secs_f64(),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_the_native_twins_beside_the_packages() {
        let mut lock = crate::lock::tests::sample();
        assert_eq!(fetched_what(&lock), "2 package(s)");
        lock.native_twins = vec![lock.packages[0].clone()];
        assert_eq!(fetched_what(&lock), "2 package(s) and 1 native twin(s)");
    }
}

//! The fetch stage: a lock's packages, downloaded into the cache and
//! verified.
//!
//! `kiln fetch` and `kiln build` call [`fetch`] with the lock. The locked
//! `.deb`s are everything a build from the lock reads from the cache (the
//! bootstrap makes each package's index paragraph from its `.deb` and the
//! lock), so after a fetch a build needs no network. Every `.deb` is
//! looked up in the content-addressed cache by its locked size and SHA-256
//! (which re-verifies it) and downloaded only when absent or corrupt. With the network switched off (`--offline`), a missing
//! package is an error that names it; nothing falls back to anything.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cache::{Cache, CacheError, Digest, Lookup};
use crate::host::http::{Http, HttpError};
use crate::lock::{Lock, LockedPackage};
use crate::terminal::downloads::Downloads;

/// How many downloads run at once: enough to hide per-request latency on a
/// mirror, few enough to be polite to it.
pub const PARALLEL_DOWNLOADS: usize = 4;

/// What a fetch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Packages already in the cache, verified.
    pub cached: usize,
    /// Packages downloaded now.
    pub downloaded: usize,
    /// Bytes downloaded now.
    pub downloaded_bytes: u64,
    /// Cached blobs found corrupt (and fetched again), by package name.
    pub repaired: Vec<String>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Offline, and these packages are not in the cache.
    #[error("{} package(s) are not in the cache and kiln is offline: {}", .packages.len(), .packages.join(", "))]
    Missing {
        /// The missing packages' names.
        packages: Vec<String>,
    },
    /// A package could not be downloaded or did not match the lock.
    #[error("cannot fetch {package} {version}: {source}")]
    Download {
        /// The package's name.
        package: String,
        /// Its locked version.
        version: String,
        /// What went wrong.
        source: HttpError,
    },
    /// The lock holds a malformed hash.
    #[error("the lock's entry for {package} is malformed: {detail}")]
    BadLock {
        /// The package's name.
        package: String,
        /// What is wrong.
        detail: String,
    },
    /// The cache's filesystem has less free space than the missing
    /// packages take; nothing was downloaded.
    #[error(
        "not enough space on {} for {count} download(s): they need {}, and {} is free (of {})",
        .dir.display(),
        crate::terminal::human_bytes(*.needed_bytes),
        crate::terminal::human_bytes(.space.free_bytes),
        crate::terminal::human_bytes(.space.total_bytes)
    )]
    NoSpace {
        /// The cache directory.
        dir: std::path::PathBuf,
        /// How many downloads are missing (packages, the base image).
        count: usize,
        /// Their size in bytes, from the lock.
        needed_bytes: u64,
        /// The cache's filesystem.
        space: crate::host::space::Space,
    },
    /// The cache could not be read or written.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Makes sure every package of `lock` is in `cache`, verified, downloading
/// what is missing from its repository, or from `mirror` instead of the
/// base archive (a local mirror or proxy of the same distribution). Which
/// one does not change a byte: every file is checked against the lock's
/// hash. Reports
/// all missing packages at once when offline; stops at the first download
/// error otherwise.
pub fn fetch(
    lock: &Lock,
    mirror: Option<&str>,
    cache: &Cache,
    http: &Http,
) -> Result<Fetched, FetchError> {
    // The native twins are fetched with the packages: an emulated build
    // runs them, and `--offline` must find them.
    let packages: Vec<&crate::lock::LockedPackage> =
        lock.packages.iter().chain(&lock.native_twins).collect();
    let mut digests = Vec::with_capacity(packages.len());
    for package in &packages {
        let digest =
            Digest::new(&package.sha256, package.size).map_err(|e| FetchError::BadLock {
                package: package.name.clone(),
                detail: e.to_string(),
            })?;
        digests.push(digest);
    }
    let offline = http.options().offline;
    if !offline {
        check_space(lock, &digests, cache)?;
    }
    // The set shown while downloading: what is not in the cache now (a
    // blob there but corrupt joins it when found), the base image among
    // the files when there is one. Offline nothing is downloaded.
    let unit = match lock.base.image {
        Some(_) => "file",
        None => "package",
    };
    let downloads = if offline {
        Downloads::hidden(unit)
    } else {
        Downloads::new(unit)
    };
    let absent: Vec<&Digest> = digests
        .iter()
        .filter(|digest| !cache.blob_path(digest).exists())
        .collect();
    let image = lock
        .base
        .image
        .as_ref()
        .filter(|image| !image_in_cache(image, cache));
    downloads.expect(
        absent.len() + usize::from(image.is_some()),
        absent.iter().map(|digest| digest.size).sum::<u64>() + image.map_or(0, |i| i.size),
    );
    let http = &http.reporting_to(&downloads);
    let image = fetch_image(lock, cache, http, &downloads)?;

    let next = AtomicUsize::new(0);
    let outcome = Mutex::new((Fetched::default(), Vec::<String>::new(), None::<FetchError>));
    let work = || loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let (Some(package), Some(digest)) = (packages.get(index), digests.get(index)) else {
            return;
        };
        if outcome.lock().map(|o| o.2.is_some()).unwrap_or(true) {
            return;
        }
        let url = lock.package_url(package, mirror);
        let result = fetch_one(&url, package, digest, cache, http, &downloads);
        let Ok(mut outcome) = outcome.lock() else {
            return;
        };
        match result {
            Ok(One::Cached) => outcome.0.cached += 1,
            Ok(One::Downloaded { repaired }) => {
                outcome.0.downloaded += 1;
                outcome.0.downloaded_bytes += package.size;
                if repaired {
                    outcome.0.repaired.push(package.name.clone());
                }
            }
            Err(FetchError::Download {
                source: HttpError::Offline { .. },
                ..
            }) => outcome.1.push(package.name.clone()),
            Err(error) => {
                outcome.2.get_or_insert(error);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS {
            scope.spawn(work);
        }
    });
    let (mut fetched, mut missing, error) = outcome
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(error) = error {
        return Err(error);
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(FetchError::Missing { packages: missing });
    }
    fetched.repaired.sort();
    downloads.finish();
    if let Some(one) = image {
        match one {
            One::Cached => fetched.cached += 1,
            One::Downloaded { repaired } => {
                fetched.downloaded += 1;
                fetched.downloaded_bytes += lock.base.image.as_ref().map_or(0, |i| i.size);
                if repaired {
                    fetched.repaired.push(IMAGE.to_string());
                }
            }
        }
    }
    Ok(fetched)
}

/// Refuses a fetch whose missing packages (by the lock's sizes) do not fit
/// on the cache's filesystem, before a byte is written: failing at once
/// with the sizes beats failing halfway with a half-filled disk. Present
/// blobs are only stat'ed here; [`fetch_one`] verifies them. A filesystem
/// that cannot be asked is not checked (the writes still report a full
/// disk).
fn check_space(lock: &Lock, digests: &[Digest], cache: &Cache) -> Result<(), FetchError> {
    let image = lock.base.image.as_ref().map(|image| Digest {
        sha256: image.sha256.clone(),
        size: image.size,
    });
    let missing: Vec<&Digest> = digests
        .iter()
        .chain(image.as_ref())
        .filter(|digest| !cache.blob_path(digest).exists())
        .collect();
    let needed_bytes: u64 = missing.iter().map(|digest| digest.size).sum();
    if needed_bytes == 0 {
        return Ok(());
    }
    let Ok(space) = crate::host::space::space_of(cache.dir()) else {
        return Ok(());
    };
    if space.free_bytes >= needed_bytes {
        return Ok(());
    }
    Err(FetchError::NoSpace {
        dir: cache.dir().to_path_buf(),
        count: missing.len(),
        needed_bytes,
        space,
    })
}

/// How a fetch names the base image among the packages.
pub const IMAGE: &str = "the base image";

/// Puts the lock's base image, when it pins one, into the cache. It is
/// downloaded whole and hashed before it is kept, so a file changed at its
/// URL is refused with the locked and the actual SHA-256.
fn fetch_image(
    lock: &Lock,
    cache: &Cache,
    http: &Http,
    downloads: &Downloads,
) -> Result<Option<One>, FetchError> {
    let Some(image) = &lock.base.image else {
        return Ok(None);
    };
    let bad_lock = |detail: String| FetchError::BadLock {
        package: IMAGE.to_string(),
        detail,
    };
    let digest = Digest::new(&image.sha256, image.size).map_err(|e| bad_lock(e.to_string()))?;
    let repaired = match cache.get(&digest)? {
        Lookup::Present(_) => return Ok(Some(One::Cached)),
        Lookup::Missing => false,
        Lookup::Corrupt { .. } => {
            downloads.expect(1, image.size);
            true
        }
    };
    match http.download_unpinned(&image.url, Some(&image.sha256), cache) {
        Ok(_) => {
            downloads.file_done();
            Ok(Some(One::Downloaded { repaired }))
        }
        Err(HttpError::Offline { .. }) => Err(FetchError::Missing {
            packages: vec![format!("{IMAGE} {}", image.url)],
        }),
        Err(source) => Err(FetchError::Download {
            package: IMAGE.to_string(),
            version: image.url.clone(),
            source,
        }),
    }
}

enum One {
    Cached,
    Downloaded { repaired: bool },
}

fn fetch_one(
    url: &str,
    package: &LockedPackage,
    digest: &Digest,
    cache: &Cache,
    http: &Http,
    downloads: &Downloads,
) -> Result<One, FetchError> {
    let repaired = match cache.get(digest)? {
        Lookup::Present(_) => return Ok(One::Cached),
        Lookup::Missing => false,
        Lookup::Corrupt { path, .. } => {
            downloads.expect(1, package.size);
            crate::terminal::status(&format!(
                "the cached {} {} ({}) was corrupt; fetching it again",
                package.name,
                package.version,
                path.display()
            ));
            true
        }
    };
    http.download(url, digest, cache)
        .map_err(|source| FetchError::Download {
            package: package.name.clone(),
            version: package.version.clone(),
            source,
        })?;
    downloads.file_done();
    Ok(One::Downloaded { repaired })
}

/// Whether the lock's base image is in the cache (not verified: the
/// fetch does that).
fn image_in_cache(image: &crate::lock::LockedImage, cache: &Cache) -> bool {
    Digest::new(&image.sha256, image.size).is_ok_and(|digest| cache.blob_path(&digest).exists())
}

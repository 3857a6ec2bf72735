//! What every operation that reads a lock or the cache shares: opening
//! the cache, the HTTP client, reading the lock beside an imagefile, the
//! `--mirror` to download from, and how a fetch failure reaches the user.

use crate::cache::Cache;
use crate::failure::Failure;
use crate::fetch::FetchError;
use crate::host::http::{Http, HttpError, HttpOptions};
use crate::lock;
use std::path::PathBuf;

/// The HTTP client, with the retries, backoff, timeout and progress
/// interval the `KILN_HTTP_*` environment variables set, and `offline`.
pub fn http_client(offline: bool) -> Result<Http, Failure> {
    let options = HttpOptions::from_environment().map_err(|error| {
        Failure::user(miette::miette!(
            help = format!(
                "give a whole number, or unset {} to use kiln's default",
                error.variable
            ),
            "{error}"
        ))
    })?;
    Http::new(HttpOptions { offline, ..options }).map_err(Failure::internal)
}

/// What to do about a download that failed, for the `help:` line.
pub fn download_help(error: &HttpError) -> &'static str {
    match error {
        HttpError::NotFound { .. } => {
            "the mirror no longer has this file: run `kiln lock --update` to pin what it has now, or download from a mirror that has it (`--mirror`)"
        }
        HttpError::Status { status, .. } if *status < 500 && *status != 408 && *status != 429 => {
            "the mirror refuses the request: check the URL, and any proxy or access rule between kiln and the mirror"
        }
        HttpError::HashMismatch { .. }
        | HttpError::SizeMismatch { .. }
        | HttpError::TooLarge { .. } => {
            "the mirror (or a proxy or captive portal in between) sent another file than the one pinned; nothing was kept: try again once the mirror has synced, or use another mirror (`--mirror`)"
        }
        HttpError::Redirect { .. } => {
            "the mirror's redirects lead nowhere: check the mirror URL (or a proxy in between), or use another mirror (`--mirror`)"
        }
        HttpError::Status { .. } | HttpError::Timeout { .. } | HttpError::Network { .. } => {
            "the mirror is down, overloaded or unreachable, and kiln retried: try again later, use another mirror (`--mirror`), or allow more retries and time with KILN_HTTP_RETRIES and KILN_HTTP_TIMEOUT_SECS"
        }
        HttpError::Tls { .. } => {
            "check the host's clock and CA certificates, and any proxy that intercepts TLS"
        }
        HttpError::Offline { .. } => "run once with the network, then work offline",
        _ => {
            "see the message above; the troubleshooting chapter of the user guide lists what each one means"
        }
    }
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
/// user's to fix (exit 1); a mirror or network failure is not (exit 2),
/// nor a full cache, which names the cache and how to get room.
pub fn fetch_failure(cache: &Cache) -> impl Fn(FetchError) -> Failure + '_ {
    move |error| match error {
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
        FetchError::NoSpace { .. } => {
            Failure::Internal(miette::miette!(help = cache_space_help(cache), "{error}"))
        }
        other if crate::host::space::is_out_of_space(&other) => {
            let space = crate::host::space::space_of(cache.dir())
                .map(|s| {
                    format!(
                        " ({} free of {})",
                        crate::terminal::human_bytes(s.free_bytes),
                        crate::terminal::human_bytes(s.total_bytes)
                    )
                })
                .unwrap_or_default();
            Failure::Internal(miette::miette!(
                help = cache_space_help(cache),
                "no space left on {}{space}, the cache: {other}",
                cache.dir().display()
            ))
        }
        FetchError::Download { ref source, .. } => {
            Failure::Internal(miette::miette!(help = download_help(source), "{error}"))
        }
        other => Failure::Internal(miette::miette!("{other}")),
    }
}

/// What to do about a cache without room.
fn cache_space_help(cache: &Cache) -> String {
    format!(
        "free space on the filesystem of {} (nothing partial was kept in it), or use a cache on a larger filesystem with --cache-dir DIR or KILN_CACHE_DIR=DIR",
        cache.dir().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheError;
    use crate::host::http::HttpError;

    fn rendered(failure: &Failure) -> (String, String) {
        let report = &failure.reports()[0];
        let help = report.help().map(|h| h.to_string()).unwrap_or_default();
        (report.to_string(), help)
    }

    #[test]
    fn a_cache_that_fills_during_a_download_is_named_with_help() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("cache");
        let error = FetchError::Download {
            package: "bash".into(),
            version: "5.2.15-2+b13".into(),
            source: HttpError::Cache(CacheError::Write {
                path: dir.path().join("tmp/blob-x"),
                source: std::io::Error::from(std::io::ErrorKind::StorageFull),
            }),
        };
        let failure = fetch_failure(&cache)(error);
        assert_eq!(failure.exit_code(), crate::failure::INTERNAL_EXIT_CODE);
        let (message, help) = rendered(&failure);
        let start = format!("no space left on {} (", dir.path().display());
        assert!(message.starts_with(&start), "{message}");
        assert!(
            message.contains("the cache: cannot fetch bash 5.2.15-2+b13"),
            "{message}"
        );
        assert!(help.contains("--cache-dir DIR"), "{help}");
    }

    #[test]
    fn a_cache_too_small_for_the_missing_packages_says_how_much_is_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("cache");
        let error = FetchError::NoSpace {
            dir: dir.path().to_path_buf(),
            count: 88,
            needed_bytes: 30 << 20,
            space: crate::host::space::Space {
                free_bytes: 16 << 20,
                total_bytes: 16 << 20,
            },
        };
        let (message, help) = rendered(&fetch_failure(&cache)(error));
        assert_eq!(
            message,
            format!(
                "not enough space on {} for 88 download(s): they need 30.0 MiB, and 16.0 MiB is free (of 16.0 MiB)",
                dir.path().display()
            )
        );
        assert!(help.contains("--cache-dir DIR"), "{help}");
    }

    #[test]
    fn other_fetch_failures_are_not_taken_for_a_full_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("cache");
        let error = FetchError::BadLock {
            package: "bash".into(),
            detail: "not a hash".into(),
        };
        let (message, help) = rendered(&fetch_failure(&cache)(error));
        assert!(!message.contains("space"), "{message}");
        assert_eq!(help, "");
    }
}

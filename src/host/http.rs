//! Downloads from mirrors and base-image URLs, for `kiln lock` and `kiln fetch`.
//!
//! [`Http`] is the only way kiln reads a URL. It fetches small files (an
//! `InRelease`) into memory and large ones (`.deb`s, indexes, images)
//! straight into the [`Cache`], checked against the size and SHA-256 the
//! lock expects. `file://` URLs read local mirrors with the same checks.
//! Transient failures (connection errors, timeouts, HTTP 5xx and 429, bodies
//! cut short) are retried with exponential backoff, or after the wait the
//! server asks for with `Retry-After`, and each retry is logged; everything
//! else (a 404, a 403, a different file, a redirect loop) fails at once
//! with an error that names the URL and what was expected. The bytes of
//! a download are counted as they arrive in the set of downloads it
//! belongs to ([`Http::reporting_to`]), which shows them; a transfer
//! outside such a set is reported every few seconds (bytes so far, rate),
//! and one inside it when nothing arrives, so a stalled mirror is visible
//! before the read timeout ends it. Nothing
//! falls back silently: offline mode refuses the network instead of
//! pretending.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use reqwest::blocking::{Client, Response};
use reqwest::header::RETRY_AFTER;
use sha2::Digest as _;

use crate::cache::{BlobWriter, Cache, CacheError, CommitError, Digest, Lookup};
use crate::terminal::downloads::Downloads;

/// Retries after the first attempt, unless the options say otherwise.
pub const DEFAULT_RETRIES: u32 = 4;

/// Delay before the first retry; each further retry waits twice as long.
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 500;

/// Longest wait between two attempts, however many retries are allowed,
/// and however long a server's `Retry-After` asks for.
const MAX_BACKOFF_MS: u64 = 30_000;

/// How often a transfer under way is reported.
pub const DEFAULT_PROGRESS_SECS: u64 = 10;

/// Redirects followed before kiln gives up (a loop is refused sooner).
const MAX_REDIRECTS: usize = 10;

/// A body of another size than expected is hashed, up to this size, so
/// that the error can name the file that came instead (not kept).
const WRONG_FILE_HASH_LIMIT_BYTES: u64 = 64 << 20;

/// The environment variables that override [`HttpOptions::default`], for
/// slow or flaky networks (and for tests that need fast retries).
pub const RETRIES_VARIABLE: &str = "KILN_HTTP_RETRIES";
/// See [`RETRIES_VARIABLE`]: the first retry's delay in milliseconds.
pub const BACKOFF_VARIABLE: &str = "KILN_HTTP_BACKOFF_MS";
/// See [`RETRIES_VARIABLE`]: the read timeout in seconds.
pub const TIMEOUT_VARIABLE: &str = "KILN_HTTP_TIMEOUT_SECS";
/// See [`RETRIES_VARIABLE`]: seconds between two progress lines.
pub const PROGRESS_VARIABLE: &str = "KILN_HTTP_PROGRESS_SECS";

/// How long to wait for a TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 15;

/// How long to wait for response headers, and for each read of the body.
/// This is not a limit on the whole transfer: a large image on a slow but
/// steady link must still arrive.
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 60;

/// Size of each read from the network or a local file.
const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// How kiln talks to the network.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Retries after the first attempt for transient failures.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff_base: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response headers and for each body read.
    pub read_timeout: Duration,
    /// How often a transfer under way is reported.
    pub progress_interval: Duration,
    /// Refuse every network request (`file://` URLs and cached blobs still
    /// work, since they need no network).
    pub offline: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            retries: DEFAULT_RETRIES,
            backoff_base: Duration::from_millis(DEFAULT_BACKOFF_BASE_MS),
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            read_timeout: Duration::from_secs(DEFAULT_READ_TIMEOUT_SECS),
            progress_interval: Duration::from_secs(DEFAULT_PROGRESS_SECS),
            offline: false,
        }
    }
}

/// An environment variable of [`HttpOptions::from_environment`] that is
/// not a number kiln can use.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is not {wanted}")]
pub struct OptionError {
    /// The variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What it must be.
    pub wanted: &'static str,
}

impl HttpOptions {
    /// The defaults, with what `KILN_HTTP_RETRIES`, `KILN_HTTP_BACKOFF_MS`,
    /// `KILN_HTTP_TIMEOUT_SECS` and `KILN_HTTP_PROGRESS_SECS` set instead.
    pub fn from_environment() -> Result<HttpOptions, OptionError> {
        Self::from_variables(|name| std::env::var(name).ok())
    }

    /// [`HttpOptions::from_environment`] with the variables looked up by
    /// `get`.
    pub fn from_variables(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<HttpOptions, OptionError> {
        let number = |variable: &'static str, wanted: &'static str, least: u64| {
            get(variable)
                .map(|value| match value.trim().parse::<u64>() {
                    Ok(n) if n >= least => Ok(n),
                    _ => Err(OptionError {
                        variable,
                        value,
                        wanted,
                    }),
                })
                .transpose()
        };
        let mut options = HttpOptions::default();
        if let Some(n) = number(RETRIES_VARIABLE, "a number of retries (0 to 100)", 0)? {
            options.retries = u32::try_from(n)
                .ok()
                .filter(|n| *n <= 100)
                .ok_or(OptionError {
                    variable: RETRIES_VARIABLE,
                    value: n.to_string(),
                    wanted: "a number of retries (0 to 100)",
                })?;
        }
        if let Some(n) = number(BACKOFF_VARIABLE, "a delay in milliseconds", 0)? {
            options.backoff_base = Duration::from_millis(n);
        }
        if let Some(n) = number(TIMEOUT_VARIABLE, "a timeout in seconds (1 or more)", 1)? {
            options.read_timeout = Duration::from_secs(n);
        }
        if let Some(n) = number(PROGRESS_VARIABLE, "an interval in seconds (1 or more)", 1)? {
            options.progress_interval = Duration::from_secs(n);
        }
        Ok(options)
    }
}

/// Why a URL could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL does not parse.
    #[error("`{url}` is not a valid URL: {message}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The URL's scheme is not one kiln reads.
    #[error("cannot fetch {url}: kiln reads only http://, https:// and file:// URLs")]
    UnsupportedScheme {
        /// The URL.
        url: String,
    },
    /// The server (or the local mirror) has no such file.
    #[error("{url} was not found (the mirror has no such file)")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// The server answered with a status other than 200.
    #[error("{url} answered HTTP {status} (after {attempts} attempt(s)); expected 200")]
    Status {
        /// The URL.
        url: String,
        /// The last HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer came in time.
    #[error("{url} timed out on each of {attempts} attempt(s)")]
    Timeout {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The connection failed or broke.
    #[error("cannot download {url} (after {attempts} attempt(s)): {message}")]
    Network {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The underlying failure.
        message: String,
    },
    /// The TLS handshake failed (a certificate problem, say); retrying
    /// would not change the answer.
    #[error("cannot establish a secure connection to {url}: {message}")]
    Tls {
        /// The URL.
        url: String,
        /// The underlying failure.
        message: String,
    },
    /// The body is larger than allowed or expected.
    #[error("{url} is larger than the {limit} bytes expected")]
    TooLarge {
        /// The URL.
        url: String,
        /// The most bytes kiln would accept.
        limit: u64,
    },
    /// The body has a different size from the one the lock expects.
    #[error("{url} is {actual} bytes, but {expected} bytes were expected")]
    SizeMismatch {
        /// The URL.
        url: String,
        /// The expected size in bytes.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// The body is another file than the one expected: its SHA-256
    /// differs (and perhaps its size).
    #[error(
        "{url} is not the file expected: it sent {} bytes with SHA-256 {}, but {} with SHA-256 {} was expected",
        .files.actual_size,
        .files.actual_sha256,
        .files.expected_size.map_or_else(|| "a file".to_owned(), |size| format!("{size} bytes")),
        .files.expected_sha256
    )]
    HashMismatch {
        /// The URL.
        url: String,
        /// The file expected and the one received (boxed: errors travel
        /// in `Result`s, which stay small).
        files: Box<Mismatch>,
    },
    /// Following the URL's redirects leads nowhere: a loop, or too many.
    #[error("{url} cannot be downloaded: {reason}")]
    Redirect {
        /// The URL.
        url: String,
        /// The loop, or how many redirects were followed.
        reason: String,
    },
    /// Offline mode is on and the URL needs the network.
    #[error("cannot fetch {url}: kiln is running offline")]
    Offline {
        /// The URL.
        url: String,
    },
    /// A `file://` URL could not be read.
    #[error("cannot read {url} ({path}): {source}")]
    Local {
        /// The URL.
        url: String,
        /// The local path it names.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {message}")]
    Client {
        /// The underlying failure.
        message: String,
    },
    /// The cache could not store or read a blob.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The file a URL was expected to be and the one it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The expected SHA-256.
    pub expected_sha256: String,
    /// The expected size, when known.
    pub expected_size: Option<u64>,
    /// The SHA-256 received.
    pub actual_sha256: String,
    /// The size received.
    pub actual_size: u64,
}

/// kiln's HTTP client: retries, timeouts, offline mode and verification.
#[derive(Debug, Clone)]
pub struct Http {
    client: Client,
    options: HttpOptions,
    /// The set of downloads the bytes of [`Http::download`] and
    /// [`Http::download_unpinned`] are counted in, when shown.
    downloads: Option<Downloads>,
}

/// Where a URL points.
enum Target {
    Remote(Url),
    Local(PathBuf),
}

/// The outcome of one failed attempt.
enum Attempt {
    /// Worth trying again; `error` is what to report if no attempt is left,
    /// `asked` the wait the server asked for (`Retry-After`).
    Retry {
        reason: String,
        error: HttpError,
        asked: Option<Duration>,
    },
    /// Final.
    Fail(HttpError),
}

impl From<CacheError> for Attempt {
    fn from(error: CacheError) -> Self {
        Attempt::Fail(HttpError::Cache(error))
    }
}

/// Why copying a body into a blob stopped.
/// The largest file [`Http::download_unpinned`] takes: larger than any
/// cloud image, small enough to stop a server that never ends its body.
pub const MAX_UNPINNED_BYTES: u64 = 64 << 30;

enum CopyError {
    Read(io::Error),
    Write(io::Error),
    TooLarge,
}

impl Http {
    /// A client with the given options.
    pub fn new(options: HttpOptions) -> Result<Http, HttpError> {
        install_crypto_provider();
        let client = Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            // The blocking client applies this to the wait for headers and to
            // each body read, so it bounds stalls, not whole transfers.
            .timeout(options.read_timeout)
            .redirect(reqwest::redirect::Policy::custom(follow_redirect))
            .build()
            .map_err(|e| HttpError::Client {
                message: error_chain(&e),
            })?;
        Ok(Http {
            client,
            options,
            downloads: None,
        })
    }

    /// This client, counting the bytes of its downloads (not of
    /// [`Http::get_small`]) in `downloads` as they arrive. The caller says
    /// which files the set expects and when each is done.
    pub fn reporting_to(&self, downloads: &Downloads) -> Http {
        Http {
            downloads: Some(downloads.clone()),
            ..self.clone()
        }
    }

    /// The set of downloads this client counts its bytes in, if any.
    pub fn downloads(&self) -> Option<&Downloads> {
        self.downloads.as_ref()
    }

    /// The options this client was made with.
    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Fetches a small file (an `InRelease`, a checksum list) into memory,
    /// refusing bodies larger than `max_bytes`.
    pub fn get_small(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, HttpError> {
        match Self::target(url)? {
            Target::Local(path) => read_local_small(url, &path, max_bytes),
            Target::Remote(remote) => {
                self.require_online(url)?;
                self.retrying(url, None, |attempt, received| {
                    self.get_small_once(&remote, url, max_bytes, attempt, received)
                })
            }
        }
    }

    /// Puts the blob `expected` into `cache`, downloading it from `url` if
    /// the cache does not already hold a verified copy, and returns its path.
    /// In offline mode a verified cached copy is still returned.
    ///
    /// The blob's lock is held throughout, so a second kiln process asking
    /// for the same blob waits and then finds it in the cache. The caller
    /// must not hold that blob's [`Cache::lock_blob`] itself: file locks
    /// are per open file, so it would wait on its own lock forever.
    pub fn download(
        &self,
        url: &str,
        expected: &Digest,
        cache: &Cache,
    ) -> Result<PathBuf, HttpError> {
        let target = Self::target(url)?;
        let _lock = match cache.try_lock_blob(expected)? {
            Some(lock) => lock,
            None => {
                log(&format!("waiting for another download of {url} to finish"));
                cache.lock_blob(expected)?
            }
        };
        match cache.get(expected)? {
            // Another process downloaded it while this one waited: it
            // arrived all the same.
            Lookup::Present(path) => {
                if let Some(downloads) = &self.downloads {
                    downloads.received(expected.size);
                }
                return Ok(path);
            }
            Lookup::Missing => {}
            Lookup::Corrupt {
                path,
                actual_size,
                actual_sha256,
            } => log(&format!(
                "cached blob {} was corrupt ({actual_size} bytes, sha256 {}); fetching {url} again",
                path.display(),
                actual_sha256.as_deref().unwrap_or("not computed"),
            )),
        }
        match target {
            Target::Local(path) => {
                download_local(url, &path, expected, cache, self.downloads.as_ref())
            }
            Target::Remote(remote) => {
                self.require_online(url)?;
                self.retrying(url, Some(expected.size), |attempt, received| {
                    self.download_once(&remote, url, expected, cache, attempt, received)
                })
            }
        }
    }

    /// Puts the file at `url` into `cache` when its size is not known in
    /// advance (an image found by name, to be pinned by the lock), and
    /// returns where it is and its digest. With `expected_sha256`, a file
    /// of another hash is refused (and not kept). Refuses files over
    /// [`MAX_UNPINNED_BYTES`].
    pub fn download_unpinned(
        &self,
        url: &str,
        expected_sha256: Option<&str>,
        cache: &Cache,
    ) -> Result<(PathBuf, Digest), HttpError> {
        let target = Self::target(url)?;
        let copy = |reader: &mut dyn Read, attempt: u32| -> Result<(PathBuf, Digest), Attempt> {
            let mut writer = cache.writer().map_err(|e| Attempt::Fail(e.into()))?;
            let mut reader = reader;
            match copy_capped(&mut reader, &mut writer, MAX_UNPINNED_BYTES) {
                Ok(()) => {}
                Err(CopyError::Read(e)) => return Err(classify_read_error(&e, url, attempt)),
                Err(CopyError::Write(source)) => return Err(write_failed(&writer, source)),
                Err(CopyError::TooLarge) => {
                    return Err(Attempt::Fail(HttpError::TooLarge {
                        url: url.to_owned(),
                        limit: MAX_UNPINNED_BYTES,
                    }));
                }
            }
            let actual = writer.digest();
            if let Some(expected) = expected_sha256
                && !expected.eq_ignore_ascii_case(&actual.sha256)
            {
                return Err(Attempt::Fail(HttpError::HashMismatch {
                    url: url.to_owned(),
                    files: Box::new(Mismatch {
                        expected_sha256: expected.to_ascii_lowercase(),
                        expected_size: None,
                        actual_sha256: actual.sha256,
                        actual_size: actual.size,
                    }),
                }));
            }
            let path = commit(writer, url, &actual).map_err(Attempt::Fail)?;
            Ok((path, actual))
        };
        let once = |result: Result<(PathBuf, Digest), Attempt>| match result {
            Ok(done) => Ok(done),
            Err(Attempt::Fail(error) | Attempt::Retry { error, .. }) => Err(error),
        };
        match target {
            Target::Local(path) => {
                let file = open_local(url, &path)?;
                if let (Some(downloads), Ok(metadata)) = (&self.downloads, file.metadata()) {
                    downloads.announced(metadata.len());
                }
                let read = AtomicU64::new(0);
                once(copy(
                    &mut Counted::new(file, &read, self.downloads.as_ref()),
                    1,
                ))
            }
            Target::Remote(remote) => {
                self.require_online(url)?;
                // The size counts in the set once, when the first
                // answer announces it.
                let mut announced = false;
                self.retrying(url, None, |attempt, received| {
                    let response = self.send(&remote, url, attempt)?;
                    if let (Some(downloads), Some(length), false) =
                        (&self.downloads, response.content_length(), announced)
                    {
                        downloads.announced(length);
                        announced = true;
                    }
                    let mut counted = Counted::new(response, received, self.downloads.as_ref());
                    copy(&mut counted, attempt)
                })
            }
        }
    }

    fn require_online(&self, url: &str) -> Result<(), HttpError> {
        if self.options.offline {
            Err(HttpError::Offline {
                url: url.to_owned(),
            })
        } else {
            Ok(())
        }
    }

    fn target(url: &str) -> Result<Target, HttpError> {
        let parsed = Url::parse(url).map_err(|e| HttpError::InvalidUrl {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        match parsed.scheme() {
            "file" => {
                parsed
                    .to_file_path()
                    .map(Target::Local)
                    .map_err(|()| HttpError::InvalidUrl {
                        url: url.to_owned(),
                        message: "a file:// URL must name an absolute local path".to_owned(),
                    })
            }
            "http" | "https" => Ok(Target::Remote(parsed)),
            _ => Err(HttpError::UnsupportedScheme {
                url: url.to_owned(),
            }),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries
    /// are used up, sleeping in between: with exponential backoff, or as
    /// long as the server asked (up to the longest backoff). Each attempt
    /// counts the bytes it receives in its second argument, which a
    /// [`Watch`] reports while the attempt runs; `size` is the size
    /// expected, when known.
    fn retrying<T>(
        &self,
        url: &str,
        size: Option<u64>,
        mut attempt: impl FnMut(u32, &AtomicU64) -> Result<T, Attempt>,
    ) -> Result<T, HttpError> {
        let attempts = self.options.retries.saturating_add(1);
        let mut number = 1;
        loop {
            let received = Arc::new(AtomicU64::new(0));
            let outcome = {
                let _watch = Watch::start(
                    url,
                    size,
                    self.options.progress_interval,
                    &received,
                    self.downloads.is_some(),
                );
                attempt(number, &received)
            };
            if let (Err(Attempt::Retry { .. }), Some(downloads)) = (&outcome, &self.downloads) {
                downloads.unreceived(received.load(Ordering::Relaxed));
            }
            match outcome {
                Ok(value) => return Ok(value),
                Err(Attempt::Fail(error)) => return Err(error),
                Err(Attempt::Retry { error, .. }) if number >= attempts => return Err(error),
                Err(Attempt::Retry { reason, asked, .. }) => {
                    let backoff = backoff(self.options.backoff_base, number);
                    let (delay, why) = retry_wait(backoff, asked);
                    log(&retry_message(
                        url,
                        delay,
                        number + 1,
                        attempts,
                        &reason,
                        &why,
                    ));
                    std::thread::sleep(delay);
                    number += 1;
                }
            }
        }
    }

    fn send(&self, remote: &Url, url: &str, attempt: u32) -> Result<Response, Attempt> {
        let response = self
            .client
            .get(remote.clone())
            .send()
            .map_err(|e| classify_send_error(&e, url, attempt))?;
        let asked = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        check_status(response.status().as_u16(), url, attempt, asked)?;
        Ok(response)
    }

    fn get_small_once(
        &self,
        remote: &Url,
        url: &str,
        max_bytes: u64,
        attempt: u32,
        received: &AtomicU64,
    ) -> Result<Vec<u8>, Attempt> {
        let response = self.send(remote, url, attempt)?;
        let too_large = || {
            Attempt::Fail(HttpError::TooLarge {
                url: url.to_owned(),
                limit: max_bytes,
            })
        };
        if response.content_length().is_some_and(|len| len > max_bytes) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        // One byte more than allowed tells a body at the limit from one over.
        Counted::new(response, received, None)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| classify_read_error(&e, url, attempt))?;
        if body.len() as u64 > max_bytes {
            return Err(too_large());
        }
        Ok(body)
    }

    fn download_once(
        &self,
        remote: &Url,
        url: &str,
        expected: &Digest,
        cache: &Cache,
        attempt: u32,
        received: &AtomicU64,
    ) -> Result<PathBuf, Attempt> {
        let response = self.send(remote, url, attempt)?;
        let length = response.content_length();
        let mut response = Counted::new(response, received, self.downloads.as_ref());
        if let Some(length) = length
            && length != expected.size
        {
            return Err(Attempt::Fail(wrong_file(
                url,
                expected,
                length,
                &mut response,
            )));
        }
        let mut writer = cache.writer()?;
        match copy_capped(&mut response, &mut writer, expected.size) {
            Ok(()) => {}
            Err(CopyError::Read(e)) => return Err(classify_read_error(&e, url, attempt)),
            Err(CopyError::Write(source)) => return Err(write_failed(&writer, source)),
            Err(CopyError::TooLarge) => {
                return Err(Attempt::Fail(HttpError::TooLarge {
                    url: url.to_owned(),
                    limit: expected.size,
                }));
            }
        }
        // Without a Content-Length a cut connection looks like a short
        // body, so a short body is retried like any other broken transfer.
        if writer.written() < expected.size {
            return Err(Attempt::Retry {
                reason: format!(
                    "the body ended after {} of {} bytes",
                    writer.written(),
                    expected.size
                ),
                error: HttpError::SizeMismatch {
                    url: url.to_owned(),
                    expected: expected.size,
                    actual: writer.written(),
                },
                asked: None,
            });
        }
        commit(writer, url, expected).map_err(Attempt::Fail)
    }
}

/// Reads a local file into memory, refusing files over `max_bytes`.
fn read_local_small(url: &str, path: &Path, max_bytes: u64) -> Result<Vec<u8>, HttpError> {
    let file = open_local(url, path)?;
    let mut body = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|source| local_error(url, path, source))?;
    if body.len() as u64 > max_bytes {
        return Err(HttpError::TooLarge {
            url: url.to_owned(),
            limit: max_bytes,
        });
    }
    Ok(body)
}

/// Copies a local file into the cache with the same checks as a download.
fn download_local(
    url: &str,
    path: &Path,
    expected: &Digest,
    cache: &Cache,
    downloads: Option<&Downloads>,
) -> Result<PathBuf, HttpError> {
    let read = AtomicU64::new(0);
    let mut file = Counted::new(open_local(url, path)?, &read, downloads);
    let mut writer = cache.writer()?;
    match copy_capped(&mut file, &mut writer, expected.size) {
        Ok(()) => {}
        Err(CopyError::Read(source)) => return Err(local_error(url, path, source)),
        Err(CopyError::Write(source)) => {
            return Err(HttpError::Cache(CacheError::Write {
                path: writer.temp_path().to_path_buf(),
                source,
            }));
        }
        Err(CopyError::TooLarge) => {
            return Err(HttpError::TooLarge {
                url: url.to_owned(),
                limit: expected.size,
            });
        }
    }
    commit(writer, url, expected)
}

fn open_local(url: &str, path: &Path) -> Result<File, HttpError> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            HttpError::NotFound {
                url: url.to_owned(),
            }
        } else {
            local_error(url, path, source)
        }
    })?;
    // Reading a directory fails only at the first read, with a vaguer error.
    match file.metadata() {
        Ok(metadata) if metadata.is_dir() => Err(local_error(
            url,
            path,
            io::Error::new(io::ErrorKind::IsADirectory, "it is a directory, not a file"),
        )),
        Ok(_) => Ok(file),
        Err(source) => Err(local_error(url, path, source)),
    }
}

fn local_error(url: &str, path: &Path, source: io::Error) -> HttpError {
    HttpError::Local {
        url: url.to_owned(),
        path: path.to_path_buf(),
        source,
    }
}

/// Copies `reader` into `writer`, failing as soon as more than `limit`
/// bytes arrive, so a misbehaving server cannot fill the disk.
fn copy_capped(
    reader: &mut impl Read,
    writer: &mut BlobWriter,
    limit: u64,
) -> Result<(), CopyError> {
    let mut buffer = vec![0; COPY_BUFFER_BYTES];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        if writer.written() + n as u64 > limit {
            return Err(CopyError::TooLarge);
        }
        writer.write_all(&buffer[..n]).map_err(CopyError::Write)?;
    }
}

/// Commits a finished body, turning a mismatch into an error naming the URL.
fn commit(writer: BlobWriter, url: &str, expected: &Digest) -> Result<PathBuf, HttpError> {
    writer.commit(expected).map_err(|error| match error {
        CommitError::Mismatch { expected, actual } if expected.size != actual.size => {
            HttpError::SizeMismatch {
                url: url.to_owned(),
                expected: expected.size,
                actual: actual.size,
            }
        }
        CommitError::Mismatch { expected, actual } => HttpError::HashMismatch {
            url: url.to_owned(),
            files: Box::new(Mismatch {
                expected_sha256: expected.sha256,
                expected_size: Some(expected.size),
                actual_sha256: actual.sha256,
                actual_size: actual.size,
            }),
        },
        CommitError::Cache(error) => HttpError::Cache(error),
    })
}

fn write_failed(writer: &BlobWriter, source: io::Error) -> Attempt {
    Attempt::Fail(HttpError::Cache(CacheError::Write {
        path: writer.temp_path().to_path_buf(),
        source,
    }))
}

/// The error for a body whose announced `length` is not the expected
/// size: another file. A small one is read through (into nothing but the
/// hasher) so that the error can say which file came instead.
fn wrong_file(url: &str, expected: &Digest, length: u64, body: &mut impl Read) -> HttpError {
    let size_only = HttpError::SizeMismatch {
        url: url.to_owned(),
        expected: expected.size,
        actual: length,
    };
    if length > WRONG_FILE_HASH_LIMIT_BYTES {
        return size_only;
    }
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; COPY_BUFFER_BYTES];
    let mut read = 0u64;
    loop {
        match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                read += n as u64;
                if read > length {
                    return size_only;
                }
                hasher.update(&buffer[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return size_only,
        }
    }
    if read != length {
        return size_only;
    }
    HttpError::HashMismatch {
        url: url.to_owned(),
        files: Box::new(Mismatch {
            expected_sha256: expected.sha256.clone(),
            expected_size: Some(expected.size),
            actual_sha256: hex::encode(hasher.finalize()),
            actual_size: length,
        }),
    }
}

/// Sorts an HTTP status into success, a transient failure or a final one.
/// `asked` is the wait the server asked for with `Retry-After`.
fn check_status(
    status: u16,
    url: &str,
    attempt: u32,
    asked: Option<Duration>,
) -> Result<(), Attempt> {
    let error = || HttpError::Status {
        url: url.to_owned(),
        status,
        attempts: attempt,
    };
    match status {
        200 => Ok(()),
        404 | 410 => Err(Attempt::Fail(HttpError::NotFound {
            url: url.to_owned(),
        })),
        // Overload and gateway trouble pass; 408 means the server gave up
        // waiting on us, which a new connection may not repeat.
        408 | 429 | 500..=599 => Err(Attempt::Retry {
            reason: format!("HTTP {status}"),
            error: error(),
            asked,
        }),
        _ => Err(Attempt::Fail(error())),
    }
}

fn classify_send_error(error: &reqwest::Error, url: &str, attempt: u32) -> Attempt {
    let message = error_chain(error);
    if is_tls_error(error) {
        return Attempt::Fail(HttpError::Tls {
            url: url.to_owned(),
            message,
        });
    }
    if error.is_timeout() {
        return Attempt::Retry {
            reason: "timed out".to_owned(),
            error: HttpError::Timeout {
                url: url.to_owned(),
                attempts: attempt,
            },
            asked: None,
        };
    }
    if let Some(redirect) = causes(error)
        .iter()
        .find_map(|cause| cause.downcast_ref::<RedirectError>())
    {
        return Attempt::Fail(HttpError::Redirect {
            url: url.to_owned(),
            reason: redirect.0.clone(),
        });
    }
    let network = HttpError::Network {
        url: url.to_owned(),
        attempts: attempt,
        message: message.clone(),
    };
    // A redirect loop or a request kiln could not even build will fail the
    // same way every time.
    if error.is_redirect() || error.is_builder() {
        Attempt::Fail(network)
    } else {
        Attempt::Retry {
            reason: message,
            error: network,
            asked: None,
        }
    }
}

/// Every error while reading a body means the transfer broke off, which a
/// new attempt may not repeat.
fn classify_read_error(error: &io::Error, url: &str, attempt: u32) -> Attempt {
    let timed_out = error.kind() == io::ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        return Attempt::Retry {
            reason: "timed out while reading the body".to_owned(),
            error: HttpError::Timeout {
                url: url.to_owned(),
                attempts: attempt,
            },
            asked: None,
        };
    }
    let message = format!("the transfer broke off: {}", error_chain(error));
    Attempt::Retry {
        reason: message.clone(),
        error: HttpError::Network {
            url: url.to_owned(),
            attempts: attempt,
            message,
        },
        asked: None,
    }
}

/// The errors an error wraps, outermost first. `io::Error` hides its inner
/// error from `source()` (it returns the inner error's source), so it is
/// unwrapped by hand.
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut found = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        found.push(current);
        next = match current
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    found
}

fn is_tls_error(error: &reqwest::Error) -> bool {
    causes(error)
        .iter()
        .any(|cause| cause.is::<rustls::Error>())
}

/// A one-line description of an error and its causes. reqwest's own outer
/// message repeats the URL, which every kiln error already names, so it is
/// left out when there is something more specific underneath.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes(error) {
        let text = cause.to_string();
        // io::Error displays its inner error; say it once.
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    if parts.len() > 1 && error.is::<reqwest::Error>() {
        parts.remove(0);
    }
    parts.join(": ")
}

/// The wait before attempt `failed + 1`: `base`, then doubling, capped.
fn backoff(base: Duration, failed: u32) -> Duration {
    let factor = 2u32.saturating_pow(failed.saturating_sub(1));
    base.saturating_mul(factor)
        .min(Duration::from_millis(MAX_BACKOFF_MS))
}

/// The wait before the next attempt, and why it is not the backoff when
/// the server asked for another: its `Retry-After`, up to the longest
/// backoff.
fn retry_wait(backoff: Duration, asked: Option<Duration>) -> (Duration, String) {
    let longest = Duration::from_millis(MAX_BACKOFF_MS);
    match asked {
        None => (backoff, String::new()),
        Some(asked) if asked > longest => (
            longest,
            format!(
                "; the server asked for {} s with Retry-After, kiln waits at most {} s",
                asked.as_secs(),
                longest.as_secs()
            ),
        ),
        Some(asked) => (
            asked,
            "; the server asked for this wait with Retry-After".to_owned(),
        ),
    }
}

/// The one place retries are reported, so every retry reads the same.
fn retry_message(
    url: &str,
    delay: Duration,
    next: u32,
    attempts: u32,
    reason: &str,
    why: &str,
) -> String {
    format!(
        "retrying {url} in {:.1} s (attempt {next} of {attempts}{why}): {reason}",
        delay.as_secs_f64()
    )
}

/// A `Retry-After` value, delta-seconds (`120`) or an HTTP-date (`Sun, 06
/// Nov 1994 08:49:37 GMT`), as a wait from `now`; a date gone by is no
/// wait. Anything else is ignored (the backoff applies).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is a very long wait.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = crate::apt::release::parse_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Why following a redirect was refused.
#[derive(Debug)]
struct RedirectError(String);

impl std::fmt::Display for RedirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectError {}

/// The redirect policy: follow, unless the next URL is one already
/// visited (a loop, which would only repeat) or there were too many.
fn follow_redirect(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let next = attempt.url();
    let previous = attempt.previous();
    if previous.contains(next) {
        let chain: Vec<&str> = previous
            .iter()
            .chain(std::iter::once(next))
            .map(Url::as_str)
            .collect();
        let reason = format!("it redirects in a loop: {}", chain.join(" -> "));
        attempt.error(RedirectError(reason))
    } else if previous.len() > MAX_REDIRECTS {
        let reason =
            format!("it redirects more than {MAX_REDIRECTS} times (the last time to {next})");
        attempt.error(RedirectError(reason))
    } else {
        attempt.follow()
    }
}

/// A reader that counts the bytes it passes on, for a [`Watch`] and for
/// the set of downloads the transfer belongs to.
struct Counted<'a, R> {
    inner: R,
    received: &'a AtomicU64,
    downloads: Option<&'a Downloads>,
}

impl<'a, R: Read> Counted<'a, R> {
    fn new(inner: R, received: &'a AtomicU64, downloads: Option<&'a Downloads>) -> Self {
        Counted {
            inner,
            received,
            downloads,
        }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.received.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(downloads) = self.downloads {
            downloads.received(n as u64);
        }
        Ok(n)
    }
}

/// Reports one attempt at a URL every `interval` while it runs, from a
/// thread of its own: a transfer blocked in a read (a stalled mirror) is
/// reported too, until the read timeout ends it. A transfer counted in a
/// shown set of downloads is reported only when it stalls (the set shows
/// the rest). Dropping it stops the thread.
struct Watch {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    fn start(
        url: &str,
        size: Option<u64>,
        interval: Duration,
        received: &Arc<AtomicU64>,
        only_stalls: bool,
    ) -> Watch {
        let (stop, stopped) = mpsc::channel::<()>();
        let (url, received) = (url.to_owned(), received.clone());
        let thread = std::thread::Builder::new()
            .name("kiln-download-progress".to_owned())
            .spawn(move || {
                let started = Instant::now();
                let mut before = 0;
                // Only a timeout goes on: a message or the sender dropped
                // means the attempt is over.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let now = received.load(Ordering::Relaxed);
                    if only_stalls && now > before {
                        before = now;
                        continue;
                    }
                    log(&progress_message(
                        &url,
                        now,
                        size,
                        now.saturating_sub(before),
                        interval,
                        started.elapsed(),
                    ));
                    before = now;
                }
            })
            // Without a thread there is no progress to show, which is no
            // reason to fail the download.
            .ok();
        Watch {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The line a [`Watch`] prints: the URL, bytes so far out of the size
/// expected, and the rate over the last interval, or that nothing came.
fn progress_message(
    url: &str,
    received: u64,
    size: Option<u64>,
    lately: u64,
    interval: Duration,
    elapsed: Duration,
) -> String {
    let so_far = match size {
        Some(size) => format!("{} of {}", bytes(received), bytes(size)),
        None => bytes(received),
    };
    let seconds = interval.as_secs_f64();
    let rate = if lately == 0 {
        format!("nothing received in the last {seconds:.0} s")
    } else {
        format!("{}/s", bytes((lately as f64 / seconds.max(0.001)) as u64))
    };
    format!(
        "downloading {url}: {so_far} after {:.0} s, {rate}",
        elapsed.as_secs_f64()
    )
}

/// A byte count for people: `512 bytes`, `1.5 KiB`, `80.0 MiB`, `1.2 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn log(message: &str) {
    crate::terminal::status(message);
}

/// rustls needs one process-wide crypto provider; kiln uses ring.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error only means a provider is installed already, which is
        // all that is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the test server answers to one request.
    #[derive(Clone)]
    enum Reply {
        Ok(Vec<u8>),
        Status(u16),
        /// A close-delimited body with no Content-Length.
        NoLength(Vec<u8>),
        /// Claims `claimed` bytes, sends `body`, then hangs up.
        Cut {
            claimed: usize,
            body: Vec<u8>,
        },
        /// Reads the request and never answers.
        Silent,
        /// Waits, then answers 200.
        Slow(Vec<u8>, Duration),
        /// Claims `claimed` bytes, sends `body`, then sends nothing more
        /// (keeping the connection open for a while).
        Stall {
            claimed: usize,
            body: Vec<u8>,
        },
        /// Resets the connection (RST) once the request has arrived.
        Reset,
        /// Answers with a status and one more header line.
        StatusWith(u16, &'static str),
        /// Answers 302 to the path given, with `{n}` replaced by the
        /// request's number.
        Redirect(&'static str),
    }

    struct Server {
        base: String,
        requests: Arc<AtomicUsize>,
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// An HTTP/1.1 server on 127.0.0.1 that answers the n-th request with
    /// the n-th reply (the last one repeats). Each connection gets its own
    /// thread so a silent or slow reply does not hold up the next one.
    fn serve(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let index = counter.fetch_add(1, Ordering::SeqCst);
                let reply = replies[index.min(replies.len() - 1)].clone();
                std::thread::spawn(move || answer(stream, reply, index));
            }
        });
        Server { base, requests }
    }

    /// Answers request number `index` (from 0) with `reply`.
    fn answer(mut stream: TcpStream, reply: Reply, index: usize) {
        if matches!(reply, Reply::Reset) {
            // Closing a socket with bytes not yet read sends an RST, not a
            // FIN (RFC 2525 2.17): wait for the request, leave it unread,
            // and close.
            let _ = stream.peek(&mut [0; 1]);
            return;
        }
        let mut reader = io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        let head = |status: &str, length: Option<usize>| {
            let length = length
                .map(|n| format!("Content-Length: {n}\r\n"))
                .unwrap_or_default();
            format!("HTTP/1.1 {status}\r\n{length}Connection: close\r\n\r\n")
        };
        let _ = match reply {
            Reply::Ok(body) => stream
                .write_all(head("200 OK", Some(body.len())).as_bytes())
                .and_then(|()| stream.write_all(&body)),
            Reply::Status(code) => {
                stream.write_all(head(&format!("{code} Whatever"), Some(0)).as_bytes())
            }
            Reply::NoLength(body) => stream
                .write_all(head("200 OK", None).as_bytes())
                .and_then(|()| stream.write_all(&body)),
            Reply::Cut { claimed, body } => stream
                .write_all(head("200 OK", Some(claimed)).as_bytes())
                .and_then(|()| stream.write_all(&body)),
            Reply::Silent => {
                std::thread::sleep(Duration::from_secs(5));
                Ok(())
            }
            Reply::Slow(body, delay) => {
                std::thread::sleep(delay);
                stream
                    .write_all(head("200 OK", Some(body.len())).as_bytes())
                    .and_then(|()| stream.write_all(&body))
            }
            Reply::Stall { claimed, body } => {
                let sent = stream
                    .write_all(head("200 OK", Some(claimed)).as_bytes())
                    .and_then(|()| stream.write_all(&body))
                    .and_then(|()| stream.flush());
                std::thread::sleep(Duration::from_secs(5));
                sent
            }
            Reply::Reset => unreachable!("answered before the request is read"),
            Reply::StatusWith(code, header) => stream.write_all(
                format!(
                    "HTTP/1.1 {code} Whatever\r\n{header}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            ),
            Reply::Redirect(location) => stream.write_all(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    location.replace("{n}", &index.to_string())
                )
                .as_bytes(),
            ),
        };
        let _ = stream.flush();
    }

    fn fast_options() -> HttpOptions {
        HttpOptions {
            retries: 2,
            backoff_base: Duration::from_millis(1),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
            progress_interval: Duration::from_secs(DEFAULT_PROGRESS_SECS),
            offline: false,
        }
    }

    fn http() -> Http {
        Http::new(fast_options()).unwrap()
    }

    /// The blobs and temporary files a cache directory holds.
    fn blob_files(dir: &Path) -> Vec<PathBuf> {
        let mut found = crate::cache::files_under(&dir.join("blobs"));
        found.extend(crate::cache::files_under(&dir.join("tmp")));
        found
    }

    fn body() -> Vec<u8> {
        (0..100_000u32).flat_map(|i| i.to_be_bytes()).collect()
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn download_stores_the_blob_and_the_second_call_hits_the_cache() {
        let data = body();
        let server = serve(vec![Reply::Ok(data.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Digest::of_bytes(&data);
        let http = http();

        let first = http
            .download(&server.url("/a.deb"), &digest, &cache)
            .unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), data);
        let second = http
            .download(&server.url("/a.deb"), &digest, &cache)
            .unwrap();
        assert_eq!(first, second);
        assert_eq!(server.requests(), 1);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn not_found_fails_at_once_naming_the_url() {
        let server = serve(vec![Reply::Status(404)]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let url = server.url("/pool/missing.deb");
        let err = http()
            .download(&url, &Digest::of_bytes(b"x"), &cache)
            .unwrap_err();
        assert!(
            matches!(&err, HttpError::NotFound { url: u } if *u == url),
            "{err}"
        );
        assert!(err.to_string().contains(&url));
        assert_eq!(server.requests(), 1);
        assert!(blob_files(dir.path()).is_empty());
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn forbidden_is_not_retried() {
        let server = serve(vec![Reply::Status(403)]);
        let err = http().get_small(&server.url("/x"), 100).unwrap_err();
        assert!(
            matches!(
                err,
                HttpError::Status {
                    status: 403,
                    attempts: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(server.requests(), 1);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn server_errors_are_retried_until_one_succeeds() {
        let data = body();
        let server = serve(vec![
            Reply::Status(500),
            Reply::Status(503),
            Reply::Ok(data.clone()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let path = http()
            .download(&server.url("/a"), &Digest::of_bytes(&data), &cache)
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(server.requests(), 3);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn server_errors_fail_once_the_retries_are_used_up() {
        let server = serve(vec![Reply::Status(429)]);
        let err = http().get_small(&server.url("/busy"), 100).unwrap_err();
        assert!(
            matches!(
                err,
                HttpError::Status {
                    status: 429,
                    attempts: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(server.requests(), 3);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn wrong_hash_is_refused_and_nothing_is_cached() {
        let server = serve(vec![Reply::Ok(b"evil!".to_vec())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let expected = Digest::of_bytes(b"good!");
        let url = server.url("/a");
        let err = http().download(&url, &expected, &cache).unwrap_err();
        match &err {
            HttpError::HashMismatch { url: u, files } => {
                assert_eq!(*u, url);
                assert_eq!(
                    **files,
                    Mismatch {
                        expected_sha256: expected.sha256.clone(),
                        expected_size: Some(5),
                        actual_sha256: Digest::of_bytes(b"evil!").sha256,
                        actual_size: 5,
                    }
                );
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(server.requests(), 1, "a hash mismatch is not retried");
        assert!(blob_files(dir.path()).is_empty());
        assert_eq!(cache.get(&expected).unwrap(), Lookup::Missing);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn a_different_file_is_refused_at_once_naming_both_files() {
        let other = b"hello, and more".to_vec();
        let server = serve(vec![Reply::Ok(other.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let expected = Digest::of_bytes(b"hello");
        let url = server.url("/pool/a.deb");
        let err = http().download(&url, &expected, &cache).unwrap_err();
        let received = Digest::of_bytes(&other);
        assert!(
            matches!(
                &err,
                HttpError::HashMismatch { url: u, files } if *u == url && **files == Mismatch {
                    expected_sha256: expected.sha256.clone(),
                    expected_size: Some(5),
                    actual_sha256: received.sha256.clone(),
                    actual_size: 15,
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        for part in [
            url.as_str(),
            "not the file expected",
            "15 bytes",
            &received.sha256,
            "5 bytes",
            &expected.sha256,
        ] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
        assert_eq!(server.requests(), 1, "another file is not retried");
        assert!(blob_files(dir.path()).is_empty());
        assert_eq!(cache.get(&expected).unwrap(), Lookup::Missing);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn a_large_different_file_is_refused_by_its_length_before_the_body() {
        let claimed = usize::try_from(WRONG_FILE_HASH_LIMIT_BYTES).unwrap() + 1;
        let server = serve(vec![Reply::Stall {
            claimed,
            body: Vec::new(),
        }]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let started = Instant::now();
        let err = http()
            .download(&server.url("/a"), &Digest::of_bytes(b"hello"), &cache)
            .unwrap_err();
        assert!(
            matches!(err, HttpError::SizeMismatch { expected: 5, actual, .. } if actual == claimed as u64),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused without waiting for the body"
        );
        assert!(blob_files(dir.path()).is_empty());
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn a_reset_connection_is_retried() {
        let data = body();
        let server = serve(vec![Reply::Reset, Reply::Reset, Reply::Ok(data.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let path = http()
            .download(&server.url("/a"), &Digest::of_bytes(&data), &cache)
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(server.requests(), 3);

        // Reset every time: a network error naming the URL, nothing kept.
        let server = serve(vec![Reply::Reset]);
        let other = Digest::of_bytes(b"other");
        let url = server.url("/b");
        let err = http().download(&url, &other, &cache).unwrap_err();
        assert!(
            matches!(&err, HttpError::Network { url: u, attempts: 3, .. } if *u == url),
            "{err:?}"
        );
        assert_eq!(server.requests(), 3);
        assert_eq!(cache.get(&other).unwrap(), Lookup::Missing);
        assert!(crate::cache::files_under(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn a_body_that_stalls_midway_times_out_and_is_fetched_again() {
        let data = body();
        let stall = Reply::Stall {
            claimed: data.len(),
            body: data[..50_000].to_vec(),
        };
        let server = serve(vec![stall.clone(), Reply::Ok(data.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let http = Http::new(HttpOptions {
            read_timeout: Duration::from_millis(300),
            ..fast_options()
        })
        .unwrap();
        let path = http
            .download(&server.url("/a"), &Digest::of_bytes(&data), &cache)
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(server.requests(), 2);

        // Stalled every time: a timeout, well before the server lets go.
        let server = serve(vec![stall]);
        let mut other = data.clone();
        other[0] ^= 1;
        let other = Digest::of_bytes(&other);
        let started = Instant::now();
        let err = http
            .download(&server.url("/b"), &other, &cache)
            .unwrap_err();
        assert!(
            matches!(err, HttpError::Timeout { attempts: 3, .. }),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(cache.get(&other).unwrap(), Lookup::Missing);
        assert!(crate::cache::files_under(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn retry_after_is_honoured_in_seconds_and_as_a_date() {
        let data = body();
        // Three seconds ahead, as a date in whole seconds: at least two
        // seconds ahead when the first retry (after 1 s) asks.
        let in_three_seconds = SystemTime::now() + Duration::from_secs(3);
        let date: &'static str =
            Box::leak(format!("Retry-After: {}", http_date(in_three_seconds)).into_boxed_str());
        let server = serve(vec![
            Reply::StatusWith(503, "Retry-After: 1"),
            Reply::StatusWith(429, date),
            Reply::Ok(data.clone()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let started = Instant::now();
        // The backoff alone (1 ms, then 2 ms) would take no time at all.
        http()
            .download(&server.url("/a"), &Digest::of_bytes(&data), &cache)
            .unwrap();
        let took = started.elapsed();
        assert_eq!(server.requests(), 3);
        // 1 s, then what is left to the date: 1 s at least, 3 s at most.
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < Duration::from_secs(6), "{took:?}");
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn without_retry_after_the_backoff_applies() {
        let server = serve(vec![
            Reply::Status(500),
            Reply::Status(429),
            Reply::Status(503),
        ]);
        let started = Instant::now();
        let err = http().get_small(&server.url("/busy"), 100).unwrap_err();
        assert!(
            matches!(
                err,
                HttpError::Status {
                    status: 503,
                    attempts: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(server.requests(), 3);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn a_redirect_loop_fails_at_once_naming_the_url_and_the_loop() {
        let server = serve(vec![Reply::Redirect("/b"), Reply::Redirect("/a")]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let url = server.url("/a");
        let expected = Digest::of_bytes(b"x");
        let err = http().download(&url, &expected, &cache).unwrap_err();
        match &err {
            HttpError::Redirect { url: u, reason } => {
                assert_eq!(*u, url);
                assert_eq!(
                    *reason,
                    format!(
                        "it redirects in a loop: {url} -> {} -> {url}",
                        server.url("/b")
                    )
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains(&url));
        assert_eq!(
            server.requests(),
            2,
            "a loop is not followed round, nor retried"
        );
        assert!(blob_files(dir.path()).is_empty());

        // Redirects that never repeat a URL end after MAX_REDIRECTS.
        let server = serve(vec![Reply::Redirect("/hop/{n}")]);
        let url = server.url("/start");
        let err = http().get_small(&url, 10).unwrap_err();
        match &err {
            HttpError::Redirect { url: u, reason } => {
                assert_eq!(*u, url);
                assert!(
                    reason.starts_with("it redirects more than 10 times"),
                    "{reason}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(server.requests(), MAX_REDIRECTS + 1);
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date gone by is no wait"
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(http_date(now), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn the_retry_line_says_when_the_server_chose_the_wait() {
        let backoff = Duration::from_millis(500);
        assert_eq!(retry_wait(backoff, None), (backoff, String::new()));
        let (wait, why) = retry_wait(backoff, Some(Duration::from_secs(3)));
        assert_eq!(wait, Duration::from_secs(3));
        assert_eq!(
            retry_message("http://m/a", wait, 2, 5, "HTTP 503", &why),
            "retrying http://m/a in 3.0 s (attempt 2 of 5; the server asked for this wait with Retry-After): HTTP 503"
        );
        let (wait, why) = retry_wait(backoff, Some(Duration::from_secs(3600)));
        assert_eq!(wait, Duration::from_millis(MAX_BACKOFF_MS));
        assert!(
            why.contains("asked for 3600 s with Retry-After, kiln waits at most 30 s"),
            "{why}"
        );
    }

    #[test]
    fn the_progress_line_gives_bytes_so_far_and_the_rate() {
        let ten = Duration::from_secs(10);
        assert_eq!(
            progress_message(
                "http://m/a.qcow2",
                15 << 20,
                Some(80 << 20),
                5 << 20,
                ten,
                ten * 3
            ),
            "downloading http://m/a.qcow2: 15.0 MiB of 80.0 MiB after 30 s, 512.0 KiB/s"
        );
        assert_eq!(
            progress_message("http://m/a", 1000, None, 0, ten, ten * 2),
            "downloading http://m/a: 1000 bytes after 20 s, nothing received in the last 10 s"
        );
    }

    #[test]
    fn the_environment_sets_retries_backoff_timeout_and_progress() {
        let options = HttpOptions::from_variables(|name| match name {
            RETRIES_VARIABLE => Some("7".to_owned()),
            BACKOFF_VARIABLE => Some("10".to_owned()),
            TIMEOUT_VARIABLE => Some("3".to_owned()),
            PROGRESS_VARIABLE => Some("1".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(options.retries, 7);
        assert_eq!(options.backoff_base, Duration::from_millis(10));
        assert_eq!(options.read_timeout, Duration::from_secs(3));
        assert_eq!(options.progress_interval, Duration::from_secs(1));
        let defaults = HttpOptions::from_variables(|_| None).unwrap();
        assert_eq!(defaults.retries, DEFAULT_RETRIES);
        for (variable, value) in [
            (RETRIES_VARIABLE, "many"),
            (RETRIES_VARIABLE, "1000"),
            (TIMEOUT_VARIABLE, "0"),
            (PROGRESS_VARIABLE, "-1"),
            (BACKOFF_VARIABLE, "1.5"),
        ] {
            let err =
                HttpOptions::from_variables(|name| (name == variable).then(|| value.to_owned()))
                    .unwrap_err();
            assert_eq!(err.variable, variable);
            assert!(
                err.to_string()
                    .starts_with(&format!("{variable}=\"{value}\" is not")),
                "{err}"
            );
        }
    }

    /// An IMF-fixdate, as a server writes `Retry-After`: the date the
    /// test archive's Release files carry, in GMT.
    fn http_date(time: SystemTime) -> String {
        let secs = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
        crate::bootstrap::repo::rfc2822_utc(secs).replace(" UTC", " GMT")
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn body_longer_than_expected_without_length_is_cut_off() {
        let server = serve(vec![Reply::NoLength(vec![b'x'; 1_000_000])]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let err = http()
            .download(&server.url("/a"), &Digest::of_bytes(b"hello"), &cache)
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge { limit: 5, .. }), "{err}");
        assert_eq!(server.requests(), 1);
        assert!(blob_files(dir.path()).is_empty());
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn body_cut_short_is_retried() {
        let data = body();
        let server = serve(vec![
            Reply::Cut {
                claimed: data.len(),
                body: data[..1000].to_vec(),
            },
            Reply::Ok(data.clone()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let path = http()
            .download(&server.url("/a"), &Digest::of_bytes(&data), &cache)
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(server.requests(), 2);
        assert_eq!(blob_files(dir.path()).len(), 1);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn a_retried_download_counts_its_bytes_once_in_its_set() {
        let data = body();
        let size = data.len() as u64;
        let server = serve(vec![
            Reply::Cut {
                claimed: data.len(),
                body: data[..1000].to_vec(),
            },
            Reply::Ok(data.clone()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let downloads = Downloads::new("package");
        downloads.expect(1, size);
        http()
            .reporting_to(&downloads)
            .download(&server.url("/a"), &Digest::of_bytes(&data), &cache)
            .unwrap();
        assert_eq!(server.requests(), 2);
        assert_eq!(downloads.bytes(), (size, size));

        // An image of unknown size: the size the server announces counts,
        // once, and its bytes as they come.
        let server = serve(vec![Reply::Ok(data.clone())]);
        let downloads = Downloads::new("file");
        downloads.expect_unsized();
        http()
            .reporting_to(&downloads)
            .download_unpinned(&server.url("/image"), None, &cache)
            .unwrap();
        assert_eq!(downloads.bytes(), (size, size));

        // A local mirror's files count too.
        let local = dir.path().join("local.deb");
        std::fs::write(&local, &data).unwrap();
        let other = tempfile::tempdir().unwrap();
        let other = Cache::open(other.path()).unwrap();
        let downloads = Downloads::new("package");
        downloads.expect(1, size);
        http()
            .reporting_to(&downloads)
            .download(
                &format!("file://{}", local.display()),
                &Digest::of_bytes(&data),
                &other,
            )
            .unwrap();
        assert_eq!(downloads.bytes(), (size, size));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn short_body_without_length_is_retried_then_reported_as_a_size_mismatch() {
        let server = serve(vec![Reply::NoLength(b"hel".to_vec())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let err = http()
            .download(&server.url("/a"), &Digest::of_bytes(b"hello"), &cache)
            .unwrap_err();
        assert!(
            matches!(
                err,
                HttpError::SizeMismatch {
                    expected: 5,
                    actual: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(server.requests(), 3);
        assert!(blob_files(dir.path()).is_empty());
    }

    #[test]
    fn closed_port_is_a_network_error_after_the_retries() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/InRelease");
        let err = http().get_small(&url, 100).unwrap_err();
        match &err {
            HttpError::Network {
                url: u, attempts, ..
            } => {
                assert_eq!(*u, url);
                assert_eq!(*attempts, 3);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains(&url), "{err}");
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn silent_server_times_out_after_the_retries() {
        let server = serve(vec![Reply::Silent]);
        let http = Http::new(HttpOptions {
            retries: 1,
            read_timeout: Duration::from_millis(200),
            ..fast_options()
        })
        .unwrap();
        let err = http.get_small(&server.url("/a"), 100).unwrap_err();
        assert!(
            matches!(err, HttpError::Timeout { attempts: 2, .. }),
            "{err}"
        );
        assert_eq!(server.requests(), 2);
    }

    #[test]
    fn offline_mode_never_connects_but_serves_the_cache() {
        let data = body();
        let server = serve(vec![Reply::Ok(data.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let offline = Http::new(HttpOptions {
            offline: true,
            ..fast_options()
        })
        .unwrap();
        let url = server.url("/a");
        let digest = Digest::of_bytes(&data);

        let err = offline.get_small(&url, 1 << 20).unwrap_err();
        assert!(
            matches!(&err, HttpError::Offline { url: u } if *u == url),
            "{err}"
        );
        let err = offline.download(&url, &digest, &cache).unwrap_err();
        assert!(matches!(err, HttpError::Offline { .. }), "{err}");
        assert_eq!(server.requests(), 0);

        cache.insert_bytes(&data, &digest).unwrap();
        assert!(offline.download(&url, &digest, &cache).is_ok());
        assert_eq!(server.requests(), 0);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn get_small_returns_the_body_and_refuses_large_ones() {
        let server = serve(vec![
            Reply::Ok(b"Origin: Debian\n".to_vec()),
            Reply::Ok(vec![b'x'; 101]),
            Reply::NoLength(vec![b'x'; 101]),
            Reply::NoLength(vec![b'x'; 100]),
        ]);
        let http = http();
        assert_eq!(
            http.get_small(&server.url("/InRelease"), 100).unwrap(),
            b"Origin: Debian\n"
        );
        for _ in 0..2 {
            let err = http.get_small(&server.url("/big"), 100).unwrap_err();
            assert!(
                matches!(err, HttpError::TooLarge { limit: 100, .. }),
                "{err}"
            );
        }
        assert_eq!(
            http.get_small(&server.url("/edge"), 100).unwrap().len(),
            100
        );
        assert_eq!(server.requests(), 4);
    }

    #[test]
    fn file_urls_read_local_mirrors_with_the_same_checks() {
        let mirror = tempfile::tempdir().unwrap();
        let data = body();
        std::fs::write(mirror.path().join("a.deb"), &data).unwrap();
        let url = Url::from_file_path(mirror.path().join("a.deb"))
            .unwrap()
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        // Local mirrors need no network, so offline mode allows them.
        let http = Http::new(HttpOptions {
            offline: true,
            ..fast_options()
        })
        .unwrap();

        let path = http
            .download(&url, &Digest::of_bytes(&data), &cache)
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(http.get_small(&url, 1 << 20).unwrap(), data);
        assert!(matches!(
            http.get_small(&url, 10),
            Err(HttpError::TooLarge { limit: 10, .. })
        ));

        let mut wrong = data.clone();
        wrong[0] ^= 1;
        let err = http
            .download(&url, &Digest::of_bytes(&wrong), &cache)
            .unwrap_err();
        assert!(matches!(err, HttpError::HashMismatch { .. }), "{err}");
        let err = http
            .download(&url, &Digest::of_bytes(&data[1..]), &cache)
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");

        let missing = Url::from_file_path(mirror.path().join("gone.deb"))
            .unwrap()
            .to_string();
        let err = http.get_small(&missing, 10).unwrap_err();
        assert!(
            matches!(&err, HttpError::NotFound { url } if *url == missing),
            "{err}"
        );
        let dir_url = Url::from_file_path(mirror.path()).unwrap().to_string();
        assert!(matches!(
            http.get_small(&dir_url, 10),
            Err(HttpError::Local { .. })
        ));
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn corrupt_cached_blob_is_fetched_again() {
        let data = body();
        let server = serve(vec![Reply::Ok(data.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Digest::of_bytes(&data);
        let path = cache.insert_bytes(&data, &digest).unwrap();
        let mut broken = data.clone();
        broken[7] ^= 0xff;
        std::fs::write(&path, broken).unwrap();

        let again = http().download(&server.url("/a"), &digest, &cache).unwrap();
        assert_eq!(again, path);
        assert_eq!(std::fs::read(&again).unwrap(), data);
        assert_eq!(server.requests(), 1);
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs a loopback network (cargo test --features host-tests)"
    )]
    fn two_caches_downloading_the_same_blob_fetch_it_once() {
        let data = body();
        let server = serve(vec![Reply::Slow(data.clone(), Duration::from_millis(300))]);
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of_bytes(&data);
        let url = server.url("/a");
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (root, digest, url) = (dir.path().to_path_buf(), digest.clone(), url.clone());
                std::thread::spawn(move || {
                    let cache = Cache::open(&root).unwrap();
                    http().download(&url, &digest, &cache).unwrap()
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(Digest::of_file(&handle.join().unwrap()).unwrap(), digest);
        }
        assert_eq!(server.requests(), 1);
    }

    #[test]
    fn bad_urls_are_refused_before_any_request() {
        let http = http();
        assert!(matches!(
            http.get_small("not a url", 1),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            http.get_small("ftp://example.invalid/x", 1),
            Err(HttpError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_millis(500);
        let waits: Vec<f64> = (1..=4).map(|n| backoff(base, n).as_secs_f64()).collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0]);
        assert_eq!(backoff(base, 40), Duration::from_millis(MAX_BACKOFF_MS));
    }
}

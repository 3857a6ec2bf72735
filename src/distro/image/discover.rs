//! Finding a distribution's official cloud image for a release, the way
//! the distribution publishes it, and checking the signature on its
//! checksum file. (Placeholder: being written.)

use std::path::PathBuf;

use crate::host::http::Http;
use crate::manifest::{Arch, Distro};

/// What [`discover`] looks for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `fedora`, `centos`, `opensuse` or `ubuntu`.
    pub distro: Distro,
    /// The release as the imagefile names it (`41`, `9-stream` or `9`, `15.6`, `noble`).
    pub release: &'a str,
    /// The architecture.
    pub arch: Arch,
    /// The download site instead of the distribution's own (`base.mirror`).
    pub mirror: Option<&'a str>,
    /// Keyrings the checksum file's signature must verify against.
    pub keyrings: &'a [PathBuf],
    /// The HTTP client.
    pub http: &'a Http,
}

/// The image found, with the checksum that pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The image's URL.
    pub url: String,
    /// Its SHA-256 as the signed checksum file gives it (lower-case hex).
    pub sha256: String,
    /// The checksum file's URL.
    pub checksums: String,
    /// The fingerprint of the key whose signature on it verified.
    pub signed_by: String,
    /// The image's version or build serial as the site names it.
    pub version: String,
}

/// Why no image was found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// Placeholder.
    #[error("finding {distro} {release}'s cloud image is not written yet")]
    NotYet {
        /// The distro.
        distro: String,
        /// The release.
        release: String,
    },
}

/// Finds the image of `request`.
pub fn discover(request: &Request<'_>) -> Result<Found, DiscoverError> {
    Err(DiscoverError::NotYet {
        distro: request.distro.as_str().to_string(),
        release: request.release.to_string(),
    })
}

/// The keyrings a distribution's signatures are checked with when the
/// imagefile names none.
pub fn default_keyrings(_distro: Distro, _release: &str) -> Vec<PathBuf> {
    Vec::new()
}

//! Image bases: a base tree taken out of a published cloud image (or any
//! image given by URL), pinned by the image's SHA-256.

pub mod discover;
pub mod extract;

//! kiln's own apt repository client, for `kiln lock`.
//!
//! To pin every package of an image into the lockfile without running apt
//! on the host, kiln reads Debian archives itself: it verifies a suite's
//! `InRelease`, reads the `Packages` indexes it lists, and resolves the
//! manifest's packages and their dependencies into exact versions. This
//! module owns that work. [`version`] orders versions exactly as dpkg does;
//! [`deb822`] reads the control-file paragraphs and relationship fields
//! those indexes are written in.

pub mod deb822;
pub mod index;
pub mod release;
pub mod resolve;
pub mod sources;
pub mod version;

//! kiln's integration tests: one binary that drives the real `kiln`
//! executable on real files, as a user at a terminal would.

#![allow(clippy::disallowed_methods)]
// Test helpers may fail loudly: a panic is a test failure with a message.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    unreachable_pub
)]

mod apt_repo;
mod arm64;
mod assemble;
mod boot;
mod build;
mod committed_lock;
mod common;
mod concurrency;
mod corpus;
mod diagnostics;
mod dib_cli;
mod dib_elements;
mod docs;
mod download_progress;
mod editor;
mod element_yaml;
mod extract;
mod full_disk;
mod image_base;
mod image_sites;
mod kill;
mod lock;
mod phases;
mod ramdisk;
mod ramdisk_boot;
mod reproducible;
mod sbom;
mod schema;
mod shell;
mod snapshot;
mod validate;
mod zuul_roles;

//! One module per kiln command. Each exposes a settings struct (built by
//! [`crate::cli`]) and a `run` function that does the command's work by
//! calling the operations in [`crate::ops`] and the pipeline stages. No
//! command imports another: what two commands share is an operation.

pub mod boot;
pub mod build;
pub mod cache;
pub mod completions;
pub mod disk_image_create;
pub mod elements;
pub mod fetch;
pub mod init;
pub mod lock;
pub mod man;
pub mod sbom;
pub mod schema;
pub mod test;
pub mod validate;

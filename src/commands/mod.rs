//! One module per kiln command. Each exposes a settings struct (built by
//! [`crate::cli`]) and a `run` function that does the command's work by
//! calling the pipeline stages.

pub mod boot;
pub mod build;
pub mod elements;
pub mod fetch;
pub mod init;
pub mod lock;
pub mod schema;
pub mod test;
pub mod validate;

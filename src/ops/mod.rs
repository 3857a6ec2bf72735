//! The operations the commands run, shared between them: planning and
//! locking, opening the cache and reading a lock, the built-in elements,
//! the schemas, finding and describing the machine to boot. A command
//! (`crate::commands`) parses its settings, calls operations and prints;
//! no command imports another.

pub mod build;
pub mod elements;
pub mod fetch;
pub mod lock;
pub mod machine;
pub mod schema;

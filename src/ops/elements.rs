//! kiln's built-in elements, unpacked where the search path can find
//! them.

use std::path::PathBuf;

use crate::failure::Failure;
use crate::plan;

/// kiln's built-in elements, embedded in the binary and unpacked into the
/// cache directory (or, without one, the temporary directory) on first use.
pub fn builtin_elements() -> Result<PathBuf, Failure> {
    let base = crate::cache::Cache::default_dir()
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("kiln-{}", nix::unistd::geteuid())));
    plan::unpack_builtin_elements(&base).map_err(Failure::internal)
}

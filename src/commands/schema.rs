//! `kiln schema`: print the imagefile's (or the lockfile's) JSON schema on
//! stdout.

use std::io::Write;

use crate::failure::Failure;
use crate::ops::schema::{pretty, schema_text};

/// Prints the imagefile's schema, or with `lock` the lockfile's
/// (`schema/lock.schema.json`).
pub fn run(lock: bool) -> Result<(), Failure> {
    let text = if lock {
        pretty(&crate::lock::schema())
    } else {
        schema_text()
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::Internal(miette::miette!("cannot write the schema to stdout: {e}")))
}

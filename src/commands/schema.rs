//! `kiln schema`: print the imagefile's (or the lockfile's) JSON schema on
//! stdout.

use std::io::Write;

use crate::failure::Failure;
use crate::manifest;

/// The schema exactly as committed at `schema/imagefile.schema.json`.
pub fn schema_text() -> String {
    pretty(&manifest::schema())
}

fn pretty(schema: &serde_json::Value) -> String {
    // Serialising a `serde_json::Value` cannot fail.
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

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

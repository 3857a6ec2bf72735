//! `kiln schema`: print the imagefile's JSON schema on stdout.

use std::io::Write;

use crate::failure::Failure;
use crate::manifest;

/// The schema exactly as committed at `schema/imagefile.schema.json`.
pub fn schema_text() -> String {
    // Serialising a `serde_json::Value` cannot fail.
    let mut text = serde_json::to_string_pretty(&manifest::schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// Prints the schema.
pub fn run() -> Result<(), Failure> {
    std::io::stdout()
        .lock()
        .write_all(schema_text().as_bytes())
        .map_err(|e| Failure::Internal(miette::miette!("cannot write the schema to stdout: {e}")))
}

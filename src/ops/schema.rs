//! The JSON schemas as text, exactly as committed under `schema/`.

use crate::manifest;

/// The schema exactly as committed at `schema/imagefile.schema.json`.
pub fn schema_text() -> String {
    pretty(&manifest::schema())
}

/// `schema` as pretty JSON with a final newline, as committed.
pub fn pretty(schema: &serde_json::Value) -> String {
    // Serialising a `serde_json::Value` cannot fail.
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

//! Values that remember where in the imagefile they were written.
//!
//! Semantic checks (duplicate labels, a second `/` mountpoint, sizes that do
//! not fit) happen after parsing, yet their diagnostics must still underline
//! the offending text. [`Spanned`] carries the byte range of a value next to
//! the value; in the JSON schema it is invisible (its schema is the inner
//! type's), so wrapping a field never changes what editors see.

use std::borrow::Cow;
use std::ops::Deref;

use miette::SourceSpan;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value together with the byte range of the YAML node it was read from.
///
/// Equality and ordering look at the value only, so two partitions with the
/// same label compare equal wherever they were written.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    /// The parsed value.
    pub value: T,
    /// Where the value was written, as a byte range into the source.
    pub span: SourceSpan,
}

impl<T> Spanned<T> {
    /// Wraps a value that has no place in a file (a default, or a value made
    /// by code); its span is empty and points at the start of the file.
    pub fn unplaced(value: T) -> Self {
        Spanned {
            value,
            span: SourceSpan::from(0..0),
        }
    }
}

impl<T: Default> Default for Spanned<T> {
    fn default() -> Self {
        Spanned::unplaced(T::default())
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Spanned<T> {}

impl<T: PartialOrd> PartialOrd for Spanned<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}

impl<T: Ord> Ord for Spanned<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let inner = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let span = inner.referenced.span();
        let span = match (span.byte_offset(), span.byte_len()) {
            (Some(offset), Some(len)) => SourceSpan::from(to_usize(offset)..to_usize(offset + len)),
            _ => SourceSpan::from(0..0),
        };
        Ok(Spanned {
            value: inner.value,
            span,
        })
    }
}

/// Offsets beyond `usize` cannot occur: the source was read into memory.
fn to_usize(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

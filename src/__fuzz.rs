//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Unstable and not part of the crate's API: thin wrappers over internal
//! parsers, changed or removed without notice.

/// The JSON-RPC peek: `None` when `input` is not one JSON text, otherwise
/// the raw text of its top-level `id` (when it is a string, a number or
/// `null`).
#[must_use]
pub fn json_peek(input: &[u8]) -> Option<Option<String>> {
    crate::mcp::json::check(input).map(|peek| peek.id)
}

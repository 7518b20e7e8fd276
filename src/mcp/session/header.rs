//! The `Mcp-Session-Id` header, and the session id a request or an answer
//! presents in it.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

/// The `Mcp-Session-Id` header of the MCP Streamable HTTP transport.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The single session id a request presents.
pub(in crate::mcp) enum Presented<'a> {
    None,
    One(&'a HeaderValue),
    Several,
}

pub(in crate::mcp) fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(MCP_SESSION_ID).iter();
    match (values.next(), values.next()) {
        (None, _) => Presented::None,
        (Some(value), None) => Presented::One(value),
        (Some(_), Some(_)) => Presented::Several,
    }
}

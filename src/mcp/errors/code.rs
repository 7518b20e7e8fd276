//! The JSON-RPC error codes, and the error answers the MCP layers build.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::mcp::json;

/// JSON-RPC 2.0 and MCP error codes used by [`JsonRpcErrorsLayer`](crate::mcp::JsonRpcErrorsLayer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `-32700`: the body is not JSON.
    ParseError,
    /// `-32600`: the message is not a request this server accepts.
    InvalidRequest,
    /// `-32603`: the server failed.
    InternalError,
    /// `-32000`: a transport-level refusal (wrong method, media type, size).
    ServerError,
    /// `-32001`: the session named by `Mcp-Session-Id` does not exist.
    SessionNotFound,
}

impl ErrorCode {
    /// The numeric code.
    #[must_use]
    pub const fn code(self) -> i32 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::InternalError => -32603,
            Self::ServerError => -32000,
            Self::SessionNotFound => -32001,
        }
    }

    /// The code a plain-text error answer with `status` is given.
    #[must_use]
    pub const fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::InvalidRequest,
            404 => Self::SessionNotFound,
            500..=599 => Self::InternalError,
            _ => Self::ServerError,
        }
    }
}

/// A complete JSON-RPC error response built by this layer.
pub(in crate::mcp) fn error_response(
    status: StatusCode,
    id: Option<&str>,
    code: ErrorCode,
    message: &str,
) -> Response<Bytes> {
    let body = Bytes::from(json::error_object(id, code.code(), message));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The answer to a request body that could not be read.
pub(in crate::mcp) fn unreadable_body() -> Response<Bytes> {
    error_response(
        StatusCode::BAD_REQUEST,
        None,
        ErrorCode::InvalidRequest,
        "Invalid Request: the request body could not be read",
    )
}

/// The answer when the layer itself failed.
pub(in crate::mcp) fn internal_error() -> Response<Bytes> {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        ErrorCode::InternalError,
        "Internal error",
    )
}

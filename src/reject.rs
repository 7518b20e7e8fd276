//! How every layer says no.
//!
//! A layer that denies a request builds one [`Rejection`]: a stable machine
//! [`Reason`] (`ip_denied`, `payload_too_large`, ...), the HTTP status, a
//! human-readable detail and any extra headers (`Retry-After`,
//! `WWW-Authenticate`). A [`Respond`] implementation turns it into the
//! response; the default, [`DefaultResponder`], answers
//!
//! * HTTP clients with an RFC 9457 `application/problem+json` body:
//!
//!   ```json
//!   {"type":"urn:tower-warden:problem:ip_denied","title":"Forbidden",
//!    "status":403,"detail":"client address is not allowed","code":"ip_denied"}
//!   ```
//!
//! * gRPC clients (a request whose `content-type` starts with
//!   `application/grpc`) with a trailers-only answer: HTTP 200, an empty
//!   body, and `grpc-status` / `grpc-message` headers (`PERMISSION_DENIED`,
//!   `UNAUTHENTICATED`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, ...) that every
//!   gRPC client reads as the call's status.
//!
//! Whatever the responder builds, the layer then puts the [`Rejection`] in
//! the response extensions, so outer layers (metrics, logging, a custom
//! error page) can see why a request was refused:
//!
//! ```
//! use tower_warden::reject::{Reason, Rejection};
//! # fn check(response: &http::Response<tower_warden::body::ResponseBody<String>>) {
//! if let Some(rejection) = response.extensions().get::<Rejection>() {
//!     assert_eq!(rejection.reason(), Reason::IpDenied);
//! }
//! # }
//! ```
//!
//! To answer in your own format, give any layer a closure through its
//! `responder` builder method:
//!
//! ```
//! use bytes::Bytes;
//! use http::Response;
//! use tower_warden::reject::{Rejection, RequestHead};
//!
//! let plain_text = |rejection: &Rejection, _request: &RequestHead<'_>| {
//!     Response::builder()
//!         .status(rejection.status())
//!         .header("content-type", "text/plain")
//!         .body(Bytes::from(rejection.reason().code()))
//!         .unwrap()
//! };
//! let layer = tower_warden::body_limit::BodyLimitLayer::new(1024).responder(plain_text);
//! # let _ = layer;
//! ```

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

/// The stable, machine-readable reason for a rejection.
///
/// [`Reason::code`] is what clients, dashboards and alert rules match on; it
/// never changes for a given variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The client address is denied by the IP filter (403, `ip_denied`).
    IpDenied,
    /// A trusted proxy sent a forwarding header that cannot be used: too few
    /// hops, or an entry that is not an address (400, `forwarded_invalid`).
    ForwardedInvalid,
    /// The server could not learn the peer address at all — it was not
    /// served with connect info (500, `client_ip_unavailable`).
    ClientIpUnavailable,
    /// No verified client certificate was asserted by a trusted TLS proxy
    /// (403, `client_cert_required`).
    ClientCertRequired,
    /// The request body is larger than allowed (413, `payload_too_large`).
    PayloadTooLarge,
    /// The `Origin` header names a site that may not call this server
    /// (403, `origin_forbidden`).
    OriginForbidden,
    /// The `Host` header names a host this server does not answer for
    /// (403, `host_forbidden`).
    HostForbidden,
    /// No credential was presented (401).
    Unauthenticated,
    /// The credential was presented but is not valid: a bad signature, an
    /// unknown key, a wrong issuer or audience, an unknown API key (401).
    InvalidCredentials,
    /// The token's `exp` has passed (401).
    TokenExpired,
    /// The caller is authenticated but lacks a scope or role the request
    /// needs (403).
    InsufficientScope,
    /// The server cannot check credentials right now, for example because
    /// its signing keys are too stale to trust (503).
    AuthUnavailable,
    /// An MCP session id that does not exist for this caller (404).
    SessionNotFound,
    /// Too many requests for the caller's quota (429).
    RateLimited,
    /// The caller asked for a namespace (tenant) that is not its own (403,
    /// `namespace_forbidden`).
    NamespaceForbidden,
    /// The service behind a circuit breaker is failing; the breaker is open
    /// and answers at once (503, `circuit_open`).
    CircuitOpen,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 16] = [
        Self::IpDenied,
        Self::ForwardedInvalid,
        Self::ClientIpUnavailable,
        Self::ClientCertRequired,
        Self::PayloadTooLarge,
        Self::OriginForbidden,
        Self::HostForbidden,
        Self::Unauthenticated,
        Self::InvalidCredentials,
        Self::TokenExpired,
        Self::InsufficientScope,
        Self::AuthUnavailable,
        Self::SessionNotFound,
        Self::RateLimited,
        Self::NamespaceForbidden,
        Self::CircuitOpen,
    ];

    /// The layer that refuses with this reason, as metrics label it:
    /// `client_ip`, `ip_filter`, `client_cert`, `body_limit`, `mcp_origin`,
    /// `auth` (authentication, and scopes and roles), `mcp_session`,
    /// `rate_limit`, `namespace` or `circuit_breaker`.
    #[must_use]
    pub const fn layer(self) -> &'static str {
        match self {
            Self::IpDenied => "ip_filter",
            Self::ForwardedInvalid | Self::ClientIpUnavailable => "client_ip",
            Self::ClientCertRequired => "client_cert",
            Self::PayloadTooLarge => "body_limit",
            Self::OriginForbidden | Self::HostForbidden => "mcp_origin",
            Self::Unauthenticated
            | Self::InvalidCredentials
            | Self::TokenExpired
            | Self::InsufficientScope
            | Self::AuthUnavailable => "auth",
            Self::SessionNotFound => "mcp_session",
            Self::RateLimited => "rate_limit",
            Self::NamespaceForbidden => "namespace",
            Self::CircuitOpen => "circuit_breaker",
        }
    }

    /// This reason's position in [`Reason::ALL`] (an exhaustive match, so a
    /// new variant cannot be forgotten there).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::IpDenied => 0,
            Self::ForwardedInvalid => 1,
            Self::ClientIpUnavailable => 2,
            Self::ClientCertRequired => 3,
            Self::PayloadTooLarge => 4,
            Self::OriginForbidden => 5,
            Self::HostForbidden => 6,
            Self::Unauthenticated => 7,
            Self::InvalidCredentials => 8,
            Self::TokenExpired => 9,
            Self::InsufficientScope => 10,
            Self::AuthUnavailable => 11,
            Self::SessionNotFound => 12,
            Self::RateLimited => 13,
            Self::NamespaceForbidden => 14,
            Self::CircuitOpen => 15,
        }
    }

    /// Whether this is a failure to authenticate (a missing, invalid or
    /// expired credential, or credentials that cannot be checked).
    #[must_use]
    pub const fn is_auth_failure(self) -> bool {
        matches!(
            self,
            Self::Unauthenticated
                | Self::InvalidCredentials
                | Self::TokenExpired
                | Self::AuthUnavailable
        )
    }

    /// The stable machine code, e.g. `ip_denied`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::IpDenied => "ip_denied",
            Self::ForwardedInvalid => "forwarded_invalid",
            Self::ClientIpUnavailable => "client_ip_unavailable",
            Self::ClientCertRequired => "client_cert_required",
            Self::PayloadTooLarge => "payload_too_large",
            Self::OriginForbidden => "origin_forbidden",
            Self::HostForbidden => "host_forbidden",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::TokenExpired => "token_expired",
            Self::InsufficientScope => "insufficient_scope",
            Self::AuthUnavailable => "auth_unavailable",
            Self::SessionNotFound => "session_not_found",
            Self::RateLimited => "rate_limited",
            Self::NamespaceForbidden => "namespace_forbidden",
            Self::CircuitOpen => "circuit_open",
        }
    }

    /// The HTTP status this reason is answered with by default.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::IpDenied
            | Self::ClientCertRequired
            | Self::OriginForbidden
            | Self::HostForbidden
            | Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::ForwardedInvalid => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::InvalidCredentials | Self::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Self::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::NamespaceForbidden => StatusCode::FORBIDDEN,
            Self::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            Self::ClientIpUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The gRPC status a gRPC client receives for this reason.
    #[must_use]
    pub const fn grpc_code(self) -> GrpcCode {
        match self {
            Self::IpDenied
            | Self::ClientCertRequired
            | Self::OriginForbidden
            | Self::HostForbidden
            | Self::InsufficientScope => GrpcCode::PermissionDenied,
            Self::ForwardedInvalid => GrpcCode::InvalidArgument,
            Self::Unauthenticated | Self::InvalidCredentials | Self::TokenExpired => {
                GrpcCode::Unauthenticated
            }
            Self::AuthUnavailable => GrpcCode::Unavailable,
            Self::SessionNotFound => GrpcCode::NotFound,
            Self::RateLimited => GrpcCode::ResourceExhausted,
            Self::NamespaceForbidden => GrpcCode::PermissionDenied,
            Self::CircuitOpen => GrpcCode::Unavailable,
            Self::ClientIpUnavailable => GrpcCode::Internal,
            Self::PayloadTooLarge => GrpcCode::ResourceExhausted,
        }
    }

    /// The default human-readable detail.
    #[must_use]
    pub const fn default_detail(self) -> &'static str {
        match self {
            Self::IpDenied => "client address is not allowed",
            Self::ForwardedInvalid => "the forwarding header from the trusted proxy is unusable",
            Self::ClientIpUnavailable => "the server cannot determine the client address",
            Self::ClientCertRequired => "a verified client certificate is required",
            Self::PayloadTooLarge => "request body is too large",
            Self::OriginForbidden => "requests from this origin are not allowed",
            Self::HostForbidden => "requests for this host are not allowed",
            Self::Unauthenticated => "authentication is required",
            Self::InvalidCredentials => "the credentials are not valid",
            Self::TokenExpired => "the token has expired",
            Self::InsufficientScope => "the credentials do not grant access to this resource",
            Self::AuthUnavailable => "credentials cannot be checked right now",
            Self::SessionNotFound => "session not found",
            Self::RateLimited => "too many requests; retry later",
            Self::NamespaceForbidden => "this namespace belongs to another tenant",
            Self::CircuitOpen => "the upstream service is failing; retry later",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// gRPC status codes, as carried in the `grpc-status` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum GrpcCode {
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument = 3,
    /// `NOT_FOUND` (5).
    NotFound = 5,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8).
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition = 9,
    /// `INTERNAL` (13).
    Internal = 13,
    /// `UNAVAILABLE` (14).
    Unavailable = 14,
    /// `UNAUTHENTICATED` (16).
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The numeric code.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::InvalidArgument => "3",
            Self::NotFound => "5",
            Self::PermissionDenied => "7",
            Self::ResourceExhausted => "8",
            Self::FailedPrecondition => "9",
            Self::Internal => "13",
            Self::Unavailable => "14",
            Self::Unauthenticated => "16",
        })
    }
}

/// One refusal: why, with which status, and what to tell the client.
///
/// Built by a layer, rendered by a [`Respond`] implementation, then left in
/// the response extensions. Its detail never carries a secret.
#[derive(Clone, Debug)]
pub struct Rejection {
    reason: Reason,
    status: StatusCode,
    detail: Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A rejection with the reason's default status and detail.
    #[must_use]
    pub fn new(reason: Reason) -> Self {
        Self {
            reason,
            status: reason.status(),
            detail: Cow::Borrowed(reason.default_detail()),
            headers: Vec::new(),
        }
    }

    /// Replaces the human-readable detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Replaces the HTTP status.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header to the response (for example `Retry-After`).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The machine-readable reason.
    #[must_use]
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable detail.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Extra headers for the response, in order.
    #[must_use]
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// The RFC 9457 problem document for this rejection.
    #[must_use]
    pub fn problem_json(&self) -> String {
        problem_document(self.reason.code(), self.status, &self.detail)
    }
}

/// An RFC 9457 problem answer in the perimeter's format for an
/// application's own refusals (`not_found`, `conflict`, `upstream_timeout`,
/// ...), so that everything a client is refused reads the same way: the
/// same `type`, `title`, `status`, `detail` and `code` members a
/// [`Rejection`] renders with, the same headers.
///
/// ```
/// use http::StatusCode;
/// use http::header::{HeaderValue, RETRY_AFTER};
/// use tower_warden::reject::Problem;
///
/// let response = Problem::new(StatusCode::CONFLICT, "conflict", "the name is taken")
///     .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
///     .into_response();
/// assert_eq!(response.status(), StatusCode::CONFLICT);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
/// assert_eq!(body["type"], "urn:tower-warden:problem:conflict");
/// assert_eq!(body["code"], "conflict");
/// ```
///
/// A problem is an answer, not a perimeter refusal: it carries no
/// [`Reason`], so the metrics and the audit trail do not count it. A
/// [`Rejection`] converts into one (`Problem::from`) with its reason's code.
#[derive(Clone, Debug)]
pub struct Problem {
    status: StatusCode,
    code: Cow<'static, str>,
    detail: Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with `status`, the machine `code` (a short `snake_case`
    /// name clients match on; it is escaped, never trusted) and a human
    /// `detail` (never a secret, never another server's own text).
    #[must_use]
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the response (for example `Retry-After`).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable detail.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The RFC 9457 problem document.
    #[must_use]
    pub fn to_json(&self) -> String {
        problem_document(&self.code, self.status, &self.detail)
    }

    /// The `application/problem+json` response.
    #[must_use]
    pub fn into_response(self) -> Response<Bytes> {
        problem_http(self.status, self.to_json(), &self.headers)
    }
}

impl From<Rejection> for Problem {
    fn from(rejection: Rejection) -> Self {
        Self {
            status: rejection.status,
            code: Cow::Borrowed(rejection.reason.code()),
            detail: rejection.detail,
            headers: rejection.headers,
        }
    }
}

/// The problem document every refusal and [`Problem`] renders as.
fn problem_document(code: &str, status: StatusCode, detail: &str) -> String {
    let mut out = String::with_capacity(160 + detail.len());
    out.push_str("{\"type\":");
    push_json_string_with_prefix(&mut out, "urn:tower-warden:problem:", code);
    out.push_str(",\"title\":");
    push_json_string(
        &mut out,
        status.canonical_reason().unwrap_or("Request refused"),
    );
    out.push_str(",\"status\":");
    out.push_str(status.as_str());
    out.push_str(",\"detail\":");
    push_json_string(&mut out, detail);
    out.push_str(",\"code\":");
    push_json_string(&mut out, code);
    out.push('}');
    out
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.status, self.detail)
    }
}

impl std::error::Error for Rejection {}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    push_json_string_with_prefix(out, "", s);
}

/// Appends `prefix` (plain text, nothing to escape) followed by `s` as one
/// JSON string literal.
fn push_json_string_with_prefix(out: &mut String, prefix: &str, s: &str) {
    out.push('"');
    out.push_str(prefix);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The parts of a request a [`Respond`] implementation may look at.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (`ClientIp` and friends).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    #[must_use]
    pub fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// Whether this is a gRPC call (`content-type: application/grpc*`).
    #[must_use]
    pub fn is_grpc(&self) -> bool {
        is_grpc(self.headers)
    }
}

/// Whether `headers` announce a gRPC call (`content-type: application/grpc*`).
#[must_use]
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Turns a [`Rejection`] into a response.
///
/// Implemented by [`DefaultResponder`] and by every
/// `Fn(&Rejection, &RequestHead<'_>) -> Response<Bytes> + Clone`.
pub trait Respond: Clone {
    /// Builds the response for `rejection` of `request`.
    fn respond(&self, rejection: &Rejection, request: &RequestHead<'_>) -> Response<Bytes>;
}

impl<F> Respond for F
where
    F: Fn(&Rejection, &RequestHead<'_>) -> Response<Bytes> + Clone,
{
    fn respond(&self, rejection: &Rejection, request: &RequestHead<'_>) -> Response<Bytes> {
        self(rejection, request)
    }
}

/// The default responder: RFC 9457 problem JSON for HTTP, trailers-only
/// status for gRPC.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultResponder;

impl Respond for DefaultResponder {
    fn respond(&self, rejection: &Rejection, request: &RequestHead<'_>) -> Response<Bytes> {
        if request.is_grpc() {
            grpc_response(rejection)
        } else {
            problem_response(rejection)
        }
    }
}

/// The `application/problem+json` response for `rejection`.
#[must_use]
pub fn problem_response(rejection: &Rejection) -> Response<Bytes> {
    problem_http(
        rejection.status(),
        rejection.problem_json(),
        rejection.headers(),
    )
}

fn problem_http(
    status: StatusCode,
    document: String,
    extra: &[(HeaderName, HeaderValue)],
) -> Response<Bytes> {
    let body = Bytes::from(document);
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    extend_headers(headers, extra);
    *response.body_mut() = body;
    response
}

/// The trailers-only gRPC response for `rejection`.
#[must_use]
pub fn grpc_response(rejection: &Rejection) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        HeaderName::from_static("grpc-status"),
        rejection.reason().grpc_code().header_value(),
    );
    let message = format!("{}: {}", rejection.reason().code(), rejection.detail());
    if let Ok(value) = HeaderValue::from_str(&percent_encode_grpc(&message)) {
        headers.insert(HeaderName::from_static("grpc-message"), value);
    }
    extend_headers(headers, rejection.headers());
    response
}

fn extend_headers(into: &mut HeaderMap, from: &[(HeaderName, HeaderValue)]) {
    for (name, value) in from {
        into.append(name.clone(), value.clone());
    }
}

/// Percent-encodes a `grpc-message` as the gRPC over HTTP/2 spec asks:
/// everything outside printable ASCII, and `%` itself.
fn percent_encode_grpc(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Renders `rejection` with `responder`, logs it once (at DEBUG: a flood of
/// refusals must not flood the logs; the metrics count each one, and the
/// [audit trail](crate::audit) keeps a bounded record of who was refused),
/// and leaves the typed rejection in the response extensions.
pub(crate) fn render<R: Respond, B>(
    responder: &R,
    rejection: Rejection,
    request: &Request<B>,
) -> Response<Bytes> {
    tracing::debug!(
        target: crate::telemetry::DECISIONS,
        layer = rejection.reason().layer(),
        reason = rejection.reason().code(),
        status = rejection.status().as_u16(),
        method = %request.method(),
        path = request.uri().path(),
        "refused"
    );
    let mut response = responder.respond(&rejection, &RequestHead::of(request));
    response.extensions_mut().insert(rejection);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri("/x");
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn http_rejections_are_problem_json() {
        let rejection = Rejection::new(Reason::PayloadTooLarge)
            .with_detail("body \"over\" 10 bytes")
            .with_header(http::header::CONNECTION, HeaderValue::from_static("close"));
        let response = render(&DefaultResponder, rejection, &request(None));
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()["connection"], "close");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["status"], 413);
        assert_eq!(body["code"], "payload_too_large");
        assert_eq!(body["title"], "Payload Too Large");
        assert_eq!(body["detail"], "body \"over\" 10 bytes");
        assert_eq!(body["type"], "urn:tower-warden:problem:payload_too_large");
        assert_eq!(
            response.headers()[CONTENT_LENGTH],
            response.body().len().to_string().as_str()
        );
        let kept = response.extensions().get::<Rejection>().unwrap();
        assert_eq!(kept.reason(), Reason::PayloadTooLarge);
    }

    #[test]
    fn grpc_rejections_are_trailers_only() {
        let rejection = Rejection::new(Reason::IpDenied).with_detail("100% denied\n");
        let response = render(
            &DefaultResponder,
            rejection,
            &request(Some("application/grpc+proto")),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(
            response.headers()["grpc-message"],
            "ip_denied: 100%25 denied%0A"
        );
        assert!(response.body().is_empty());
    }

    #[test]
    fn every_reason_maps_consistently() {
        for (index, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), index);
            let grpc = grpc_response(&Rejection::new(reason));
            assert_eq!(
                grpc.headers()["grpc-status"],
                reason.grpc_code().as_u8().to_string().as_str()
            );
            let http = problem_response(&Rejection::new(reason));
            assert_eq!(http.status(), reason.status());
            assert!(reason.status().is_client_error() || reason.status().is_server_error());
        }
    }

    #[test]
    fn a_problem_reads_like_a_rejection() {
        let rejection = Rejection::new(Reason::RateLimited)
            .with_detail("slow \"down\"")
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
        let expected = problem_response(&rejection);
        let problem = Problem::from(rejection);
        assert_eq!(problem.code(), "rate_limited");
        let response = problem.into_response();
        assert_eq!(response.status(), expected.status());
        assert_eq!(response.headers(), expected.headers());
        assert_eq!(response.body(), expected.body());
    }

    #[test]
    fn an_application_code_is_named_in_type_and_code_and_escaped() {
        let response =
            Problem::new(StatusCode::NOT_FOUND, "not_found", "no such connection").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:tower-warden:problem:not_found",
                "title": "Not Found",
                "status": 404,
                "detail": "no such connection",
                "code": "not_found",
            })
        );
        let odd = Problem::new(StatusCode::BAD_REQUEST, "a\"b\\c\n", "d").into_response();
        let body: serde_json::Value = serde_json::from_slice(odd.body()).unwrap();
        assert_eq!(body["code"], "a\"b\\c\n");
        assert_eq!(body["type"], "urn:tower-warden:problem:a\"b\\c\n");
    }

    #[test]
    fn custom_responders_are_closures() {
        let responder = |r: &Rejection, _: &RequestHead<'_>| {
            Response::builder()
                .status(StatusCode::IM_A_TEAPOT)
                .body(Bytes::from(r.reason().code()))
                .unwrap()
        };
        let response = render(&responder, Rejection::new(Reason::IpDenied), &request(None));
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(response.body(), "ip_denied");
        assert!(response.extensions().get::<Rejection>().is_some());
    }
}

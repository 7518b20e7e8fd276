//! `Host` and `Origin` validation against DNS rebinding.

use std::sync::Arc;

use http::header::{HOST, ORIGIN};
use http::uri::Authority;
use http::{HeaderMap, Request, Uri};
use tower_layer::Layer;

use crate::error::ConfigError;
use crate::guard::{Check, Guard};
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};

/// The hosts a [`HostOriginLayer`] answers for unless told otherwise: the
/// loopback names, on any port.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// A host name (lower case, IPv6 without brackets) and maybe a port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: Option<u16>,
}

impl HostPort {
    fn of(authority: &Authority) -> Self {
        Self {
            host: normalize_host(authority.host()),
            port: authority.port_u16(),
        }
    }
}

fn normalize_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // One trailing dot names the same (fully qualified) host; `localhost..`
    // is no host at all and must not be read as `localhost`.
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// `http://a.example:8080`, `https://a.example` (default port), or
/// `http://localhost:*` (any port); or the opaque origin `null`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AllowedOrigin {
    Null,
    Site {
        scheme: String,
        host: String,
        /// `None` means any port (`:*`).
        port: Option<u16>,
    },
}

/// An `Origin` header value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Null,
    Site {
        scheme: String,
        host: String,
        port: u16,
    },
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Parses a serialized origin (`scheme://host[:port]`, nothing after it).
fn parse_origin(text: &str) -> Option<Origin> {
    if text == "null" {
        return Some(Origin::Null);
    }
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        || rest.is_empty()
        || rest.contains(['/', '?', '#', '@'])
    {
        return None;
    }
    let authority: Authority = rest.parse().ok()?;
    let port = match authority.port_u16() {
        Some(port) => port,
        None => default_port(&scheme)?,
    };
    Some(Origin::Site {
        scheme,
        host: normalize_host(authority.host()),
        port,
    })
}

fn parse_allowed_origin(text: &str) -> Result<AllowedOrigin, ConfigError> {
    let text = text.trim();
    let invalid = || {
        ConfigError::new(
            "allowed_origins",
            format!(
                "`{text}` is not an origin such as `https://app.example.com`, `http://localhost:*` or `null`"
            ),
        )
    };
    if text == "null" {
        return Ok(AllowedOrigin::Null);
    }
    if let Some(base) = text.strip_suffix(":*") {
        let (scheme, host) = match parse_origin(base).ok_or_else(invalid)? {
            Origin::Site { scheme, host, .. } => (scheme, host),
            Origin::Null => return Err(invalid()),
        };
        // `base` must not itself carry a port (`http://a:80:*`).
        let after_scheme = base.split_once("://").map_or("", |(_, rest)| rest);
        let authority: Authority = after_scheme.parse().map_err(|_| invalid())?;
        if authority.port().is_some() {
            return Err(invalid());
        }
        return Ok(AllowedOrigin::Site {
            scheme,
            host,
            port: None,
        });
    }
    match parse_origin(text).ok_or_else(invalid)? {
        Origin::Null => Ok(AllowedOrigin::Null),
        Origin::Site { scheme, host, port } => Ok(AllowedOrigin::Site {
            scheme,
            host,
            port: Some(port),
        }),
    }
}

fn parse_allowed_host(text: &str) -> Result<HostPort, ConfigError> {
    let text = text.trim();
    let authority: Authority = text
        .parse()
        .ok()
        .filter(|a: &Authority| a.as_str() == text && !text.contains('@') && !text.is_empty())
        .ok_or_else(|| {
            ConfigError::new(
                "allowed_hosts",
                format!(
                    "`{text}` is not a host such as `mcp.example.com`, `mcp.example.com:8443` or `[::1]`"
                ),
            )
        })?;
    Ok(HostPort::of(&authority))
}

/// Checks that `text` is a valid [`HostOriginLayer::try_allowed_origins`]
/// entry.
pub(crate) fn validate_allowed_origin(text: &str) -> Result<(), ConfigError> {
    parse_allowed_origin(text).map(drop)
}

/// Checks that `text` is a valid [`HostOriginLayer::try_allowed_hosts`]
/// entry.
pub(crate) fn validate_allowed_host(text: &str) -> Result<(), ConfigError> {
    parse_allowed_host(text).map(drop)
}

#[derive(Clone, Debug)]
struct Config {
    hosts: Vec<HostPort>,
    origins: Vec<AllowedOrigin>,
    any_origin: bool,
}

impl Config {
    /// Whether `headers` carry exactly one `Host` in the plain form
    /// `name[:port]` or `[v6][:port]` naming an allowed host. `false` says
    /// only that the full check must decide.
    fn plain_host_allowed(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(HOST).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        // The usual request spells an allowed name exactly, without a port:
        // a byte comparison decides it (an allowed name is already
        // normalized and valid; IPv6 literals need their brackets, so they
        // take the parse below).
        let value = value.as_bytes();
        if self.hosts.iter().any(|allowed| {
            allowed.port.is_none() && allowed.host.as_bytes() == value && !value.contains(&b':')
        }) {
            return true;
        }
        let Some((host, port)) = plain_host(value) else {
            return false;
        };
        self.hosts.iter().any(|allowed| {
            allowed.host.as_bytes().eq_ignore_ascii_case(host)
                && allowed.port.is_none_or(|p| port == Some(p))
        })
    }

    fn host_allowed(&self, host: &HostPort) -> bool {
        self.hosts.iter().any(|allowed| {
            allowed.host == host.host && allowed.port.is_none_or(|port| host.port == Some(port))
        })
    }

    fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        // The common request — one plain `Host`, no `Origin`, an
        // origin-form target — admitted without copying or allocating;
        // anything else, and every refusal, takes the full path below.
        if uri.authority().is_none()
            && !headers.contains_key(ORIGIN)
            && self.plain_host_allowed(headers)
        {
            return Ok(());
        }
        let host = request_host(uri, headers)?;
        if !self.host_allowed(&host) {
            return Err(Rejection::new(Reason::HostForbidden));
        }
        // An absolute-form target (`POST http://evil.example/mcp`) names the
        // host a server must act for (RFC 9112, section 3.2.2), whatever the
        // `Host` header says: every host the request names must be allowed.
        if let Some(authority) = uri.authority() {
            if authority.as_str().contains('@') {
                return Err(Rejection::new(Reason::HostForbidden)
                    .with_detail("the request target carries user information"));
            }
            if !self.host_allowed(&HostPort::of(authority)) {
                return Err(Rejection::new(Reason::HostForbidden)
                    .with_detail("the request target names a host that is not served"));
            }
        }
        let mut origins = headers.get_all(ORIGIN).iter();
        let Some(value) = origins.next() else {
            return Ok(());
        };
        if origins.next().is_some() {
            return Err(Rejection::new(Reason::OriginForbidden)
                .with_detail("more than one Origin header was sent"));
        }
        let origin = value
            .to_str()
            .ok()
            .and_then(|text| parse_origin(text.trim()))
            .ok_or_else(|| {
                Rejection::new(Reason::OriginForbidden)
                    .with_detail("the Origin header is malformed")
            })?;
        if self.any_origin || self.origin_allowed(&origin, &host) {
            Ok(())
        } else {
            Err(Rejection::new(Reason::OriginForbidden))
        }
    }

    fn origin_allowed(&self, origin: &Origin, host: &HostPort) -> bool {
        if let Origin::Site {
            scheme,
            host: name,
            port,
        } = origin
        {
            // Same host: the page was served by this very server.
            let host_port = host.port.or_else(|| default_port(scheme));
            if *name == host.host && host_port == Some(*port) {
                return true;
            }
        }
        self.origins.iter().any(|allowed| match (allowed, origin) {
            (AllowedOrigin::Null, Origin::Null) => true,
            (
                AllowedOrigin::Site {
                    scheme: a_scheme,
                    host: a_host,
                    port: a_port,
                },
                Origin::Site { scheme, host, port },
            ) => a_scheme == scheme && a_host == host && a_port.is_none_or(|p| p == *port),
            _ => false,
        })
    }
}

/// A `Host` value of the plain forms `name[:port]` (letters, digits, `.`
/// and `-`) and `[v6][:port]` (hex digits, `:` and `.`), as the host the
/// full check would compare (brackets and one trailing dot dropped; still
/// in its own letter case) and its port; `None` for anything else, which
/// [`request_host`] then reads in full.
fn plain_host(value: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, rest) = if let Some(bracketed) = value.strip_prefix(b"[") {
        let end = bracketed.iter().position(|&b| b == b']')?;
        let host = &bracketed[..end];
        if host.is_empty()
            || !host
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (host, &bracketed[end + 1..])
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let host = &value[..end];
        if !host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return None;
        }
        let host = host.strip_suffix(b".").unwrap_or(host);
        (host, &value[end..])
    };
    if host.is_empty() {
        return None;
    }
    let port = match rest {
        [] => None,
        [b':', digits @ ..] if (1..=5).contains(&digits.len()) => {
            let mut port = 0u32;
            for &digit in digits {
                if !digit.is_ascii_digit() {
                    return None;
                }
                port = port * 10 + u32::from(digit - b'0');
            }
            Some(u16::try_from(port).ok()?)
        }
        _ => return None,
    };
    Some((host, port))
}

/// The request's host: the `Host` header, or the URI authority (HTTP/2).
fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<HostPort, Rejection> {
    let mut values = headers.get_all(HOST).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .ok()
            .and_then(|text| text.parse::<Authority>().ok())
            .filter(|authority| !authority.as_str().contains('@'))
            .map(|authority| HostPort::of(&authority))
            .ok_or_else(|| {
                Rejection::new(Reason::HostForbidden).with_detail("the Host header is malformed")
            }),
        (Some(_), Some(_)) => {
            Err(Rejection::new(Reason::HostForbidden)
                .with_detail("more than one Host header was sent"))
        }
        (None, _) => uri.authority().map(HostPort::of).ok_or_else(|| {
            Rejection::new(Reason::HostForbidden).with_detail("the request names no host")
        }),
    }
}

/// Refuses requests whose `Host` this server does not answer for, and
/// requests from web pages of other sites.
///
/// This is the DNS-rebinding protection the MCP Streamable HTTP transport
/// asks for: a page on `evil.example` that rebinds its name to 127.0.0.1
/// still sends `Host: evil.example` and `Origin: http://evil.example`.
///
/// * `Host` (or the HTTP/2 `:authority`) must name an allowed host —
///   [`LOOPBACK_HOSTS`] on any port by default. A missing, repeated or
///   malformed `Host` is refused too. 403 `host_forbidden`.
/// * `Origin`, when present, must be the request's own host (same host and
///   port) or one of the allowed origins; requests without `Origin` (non
///   browser clients) pass. 403 `origin_forbidden`.
///
/// Clones share the configuration.
///
/// # Example
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_warden::mcp::HostOriginLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = HostOriginLayer::new()
///     .try_allowed_hosts(["mcp.example.com"])?
///     .try_allowed_origins(["https://app.example.com"])?;
/// let service = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(())) });
///
/// let request = Request::builder()
///     .uri("/mcp")
///     .header("host", "mcp.example.com")
///     .header("origin", "https://evil.example")
///     .body(())?;
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct HostOriginLayer<R = DefaultResponder> {
    config: Arc<Config>,
    responder: R,
}

impl Default for HostOriginLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HostOriginLayer {
    /// Allows the [`LOOPBACK_HOSTS`] on any port, and same-host origins.
    pub fn new() -> Self {
        let hosts = LOOPBACK_HOSTS
            .iter()
            .filter_map(|host| parse_allowed_host(host).ok())
            .collect();
        Self {
            config: Arc::new(Config {
                hosts,
                origins: Vec::new(),
                any_origin: false,
            }),
            responder: DefaultResponder,
        }
    }
}

impl<R> HostOriginLayer<R> {
    /// Replaces the allowed hosts: `mcp.example.com` (any port),
    /// `mcp.example.com:8443` (that port only), `127.0.0.1`, `[::1]:8000`.
    /// Names compare case-insensitively.
    ///
    /// # Errors
    ///
    /// Names the first entry that is not a host.
    pub fn try_allowed_hosts<I, T>(mut self, hosts: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let hosts = hosts
            .into_iter()
            .map(|host| parse_allowed_host(host.as_ref()))
            .collect::<Result<_, _>>()?;
        Arc::make_mut(&mut self.config).hosts = hosts;
        Ok(self)
    }

    /// Replaces the origins allowed besides the request's own host:
    /// `https://app.example.com` (its default port), `http://localhost:6274`,
    /// `http://localhost:*` (any port) or `null`.
    ///
    /// # Errors
    ///
    /// Names the first entry that is not an origin.
    pub fn try_allowed_origins<I, T>(mut self, origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let origins = origins
            .into_iter()
            .map(|origin| parse_allowed_origin(origin.as_ref()))
            .collect::<Result<_, _>>()?;
        Arc::make_mut(&mut self.config).origins = origins;
        Ok(self)
    }

    /// Admits a well-formed `Origin` from any site; the `Host` check stays.
    /// This gives up the protection against cross-site requests from
    /// browsers: meant for development only (the reference server allows it
    /// only with `MCP_CORS_ORIGINS=*` outside production).
    pub fn allow_any_origin(mut self) -> Self {
        Arc::make_mut(&mut self.config).any_origin = true;
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> HostOriginLayer<R2> {
        HostOriginLayer {
            config: self.config,
            responder,
        }
    }
}

impl<R: Respond> Check for HostOriginLayer<R> {
    const LAYER: &'static str = "mcp_origin";

    type Responder = R;

    #[inline]
    fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
        self.config.check(request.uri(), request.headers())
    }

    fn responder(&self) -> &R {
        &self.responder
    }
}

impl<S, R: Respond> Layer<S> for HostOriginLayer<R> {
    type Service = HostOrigin<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}

/// The service made by [`HostOriginLayer`].
pub type HostOrigin<S, R = DefaultResponder> = Guard<S, HostOriginLayer<R>>;

impl HostOrigin<(), DefaultResponder> {
    /// The layer that enforces MCP's `Host` and `Origin` rules; see
    /// [`HostOriginLayer::new`].
    pub fn layer() -> HostOriginLayer {
        HostOriginLayer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt};

    async fn status(layer: HostOriginLayer, host: Option<&str>, origin: Option<&str>) -> u16 {
        let service = ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(()))
            });
        let mut builder = Request::builder().uri("/mcp");
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        if let Some(origin) = origin {
            builder = builder.header(ORIGIN, origin);
        }
        let response = service.oneshot(builder.body(()).unwrap()).await.unwrap();
        if response.status() == StatusCode::FORBIDDEN {
            let rejection = response.extensions().get::<Rejection>().unwrap();
            assert!(matches!(
                rejection.reason(),
                Reason::HostForbidden | Reason::OriginForbidden
            ));
        }
        response.status().as_u16()
    }

    #[tokio::test]
    async fn loopback_hosts_on_any_port_by_default() {
        let layer = HostOriginLayer::new;
        for host in [
            "localhost",
            "localhost:8000",
            "LOCALHOST:1",
            "127.0.0.1:8000",
            "[::1]:8000",
            "[::1]",
        ] {
            assert_eq!(status(layer(), Some(host), None).await, 200, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8000",
            "127.0.0.2",
            "localhost.evil.example",
            "user@localhost",
            "local host",
        ] {
            assert_eq!(status(layer(), Some(host), None).await, 403, "{host}");
        }
        assert_eq!(status(layer(), None, None).await, 403);
    }

    #[tokio::test]
    async fn any_origin_keeps_the_host_check() {
        let layer = || HostOriginLayer::new().allow_any_origin();
        let site = Some("https://anything.example");
        assert_eq!(status(layer(), Some("localhost:8000"), site).await, 200);
        assert_eq!(
            status(HostOrigin::layer(), Some("localhost:8000"), site).await,
            403
        );
        // DNS rebinding still fails on the Host, and garbage is still garbage.
        assert_eq!(status(layer(), Some("evil.example"), site).await, 403);
        assert_eq!(
            status(layer(), Some("localhost"), Some("not an origin")).await,
            403
        );
    }

    #[tokio::test]
    async fn http2_authority_stands_in_for_host() {
        let service = HostOriginLayer::new().layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }));
        let request = Request::builder()
            .uri("http://localhost:8000/mcp")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn configured_hosts_replace_the_defaults() {
        let layer = || {
            HostOriginLayer::new()
                .try_allowed_hosts(["mcp.example.com", "api.example.com:8443"])
                .unwrap()
        };
        assert_eq!(status(layer(), Some("MCP.example.com:1"), None).await, 200);
        assert_eq!(
            status(layer(), Some("api.example.com:8443"), None).await,
            200
        );
        assert_eq!(status(layer(), Some("api.example.com"), None).await, 403);
        assert_eq!(status(layer(), Some("localhost"), None).await, 403);
    }

    #[tokio::test]
    async fn origins_must_be_same_host_or_listed() {
        let layer = || {
            HostOriginLayer::new()
                .try_allowed_origins(["https://app.example.com", "http://localhost:*", "null"])
                .unwrap()
        };
        let host = Some("localhost:8000");
        for (origin, expected) in [
            ("http://localhost:8000", 200),
            ("http://localhost:6274", 200),
            ("https://app.example.com", 200),
            ("https://app.example.com:443", 200),
            ("null", 200),
            ("https://app.example.com:8443", 403),
            ("http://app.example.com", 403),
            ("https://evil.example", 403),
            ("http://localhost.evil.example:8000", 403),
            ("not an origin", 403),
            ("http://localhost:8000/path", 403),
        ] {
            assert_eq!(
                status(layer(), host, Some(origin)).await,
                expected,
                "{origin}"
            );
        }
        let strict = HostOriginLayer::new;
        assert_eq!(
            status(strict(), host, Some("http://localhost:8000")).await,
            200
        );
        assert_eq!(
            status(
                strict(),
                Some("127.0.0.1:8000"),
                Some("http://127.0.0.1:8000")
            )
            .await,
            200
        );
        assert_eq!(
            status(strict(), Some("localhost"), Some("http://localhost")).await,
            200
        );
        assert_eq!(
            status(strict(), host, Some("http://localhost:6274")).await,
            403
        );
        assert_eq!(status(strict(), host, Some("null")).await, 403);
    }

    #[tokio::test]
    async fn rejections_are_problem_json() {
        let service = HostOriginLayer::new().layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
        }));
        let request = Request::builder()
            .header(HOST, "localhost")
            .header(ORIGIN, "https://evil.example")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(response.body().is_rejection());
    }

    #[test]
    fn bad_entries_are_config_errors() {
        for origin in [
            "example.com",
            "https://",
            "https://a.example/path",
            "https://a.example:80:*",
            "ftp://a.example",
            "*",
        ] {
            let error = HostOriginLayer::new()
                .try_allowed_origins([origin])
                .unwrap_err();
            assert_eq!(error.setting(), "allowed_origins", "{origin}");
        }
        for host in ["", "a b", "https://a.example", "a.example/x", "u@a.example"] {
            let error = HostOriginLayer::new()
                .try_allowed_hosts([host])
                .unwrap_err();
            assert_eq!(error.setting(), "allowed_hosts", "{host}");
        }
        assert!(validate_allowed_origin("http://[::1]:*").is_ok());
        assert!(validate_allowed_host("[::1]:8000").is_ok());
    }

    /// The status for a request to `target` (absolute-form when it names a
    /// scheme) with `host` as its `Host` header.
    async fn status_for_target(target: &str, host: &str) -> u16 {
        let service = ServiceBuilder::new()
            .layer(HostOriginLayer::new())
            .service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(()))
            });
        let request = Request::builder()
            .uri(target)
            .header(HOST, host)
            .body(())
            .unwrap();
        service.oneshot(request).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn attack_absolute_form_target_names_a_foreign_host() {
        // The Host header names loopback, the target another host: the
        // target is what the request is for (RFC 9112, section 3.2.2).
        for target in [
            "http://evil.example/mcp",
            "http://localhost.evil.example:8000/mcp",
            "http://user@localhost/mcp",
        ] {
            assert_eq!(
                status_for_target(target, "localhost:8000").await,
                403,
                "{target}"
            );
        }
        // Both name a served host: admitted.
        assert_eq!(
            status_for_target("http://localhost:8000/mcp", "127.0.0.1:8000").await,
            200
        );
        assert_eq!(status_for_target("/mcp", "localhost:8000").await, 200);
    }

    #[tokio::test]
    async fn attack_more_than_one_trailing_dot_is_another_host() {
        let layer = HostOriginLayer::new;
        assert_eq!(status(layer(), Some("localhost."), None).await, 200);
        assert_eq!(status(layer(), Some("127.0.0.1.:80"), None).await, 200);
        for host in ["localhost..", "localhost..:8000", "127.0.0.1.."] {
            assert_eq!(status(layer(), Some(host), None).await, 403, "{host}");
        }
    }

    #[test]
    fn the_plain_host_path_admits_only_what_the_full_reading_admits() {
        let layers = [
            HostOriginLayer::new(),
            HostOriginLayer::new()
                .try_allowed_hosts(["MCP.example.com:8443", "[2001:db8::1]", "10.0.0.1"])
                .unwrap(),
        ];
        let hosts = [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "localhost..",
            "localhost:",
            "localhost:+80",
            "localhost:080",
            "localhost:0",
            "localhost:65535",
            "localhost:65536",
            "localhost:99999",
            "localhost:80:90",
            "loc alhost",
            "a@localhost",
            "localhost/x",
            "[::1]",
            "[::1]:1",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:",
            "[::1.]",
            "::1",
            "",
            ".",
            "127.0.0.1",
            "127.0.0.1.:80",
            "[::ffff:127.0.0.1]",
            "mcp.example.com",
            "mcp.example.com:8443",
            "Mcp.Example.Com.:8443",
            "mcp.example.com:443",
            "[2001:DB8::1]:9",
            "[2001:db8:0::1]",
            "2001:db8::1",
            "10.0.0.1:1",
            "10.0.0.01",
            "xn--localhost",
            "-",
        ];
        for layer in &layers {
            for host in hosts {
                let mut headers = HeaderMap::new();
                headers.insert(HOST, HeaderValue::from_str(host).unwrap());
                let uri = Uri::from_static("/mcp");
                let fast = layer.config.plain_host_allowed(&headers);
                let full =
                    request_host(&uri, &headers).is_ok_and(|host| layer.config.host_allowed(&host));
                assert!(!fast || full, "{host}: admitted by the plain path only");
                assert_eq!(
                    layer.config.check(&uri, &headers).is_ok(),
                    full,
                    "{host}: the check must decide as the full reading"
                );
            }
        }
        // The plain path does serve the common forms.
        let mut headers = HeaderMap::new();
        for host in ["localhost:8000", "127.0.0.1", "[::1]:3000", "LocalHost."] {
            headers.insert(HOST, HeaderValue::from_static(host));
            assert!(layers[0].config.plain_host_allowed(&headers), "{host}");
        }
    }
}

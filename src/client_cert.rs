//! Require a client certificate that a TLS-terminating proxy verified.
//!
//! When nginx, Envoy or Traefik terminates mutual TLS, the application never
//! sees the certificate: the proxy tells it, in a header, whether the client
//! presented one that verified. [`ClientCertLayer`] refuses every request
//! without that assertion, and — the part hand-rolled checks forget — believes
//! the header **only when the TCP peer is one of your trusted proxies**. A
//! client that connects directly and sends `X-SSL-Client-Verify: SUCCESS`
//! itself is refused.
//!
//! Two header conventions are supported:
//!
//! * a verification header with an expected value — by default
//!   `X-SSL-Client-Verify: SUCCESS` (nginx's `$ssl_client_verify`); both the
//!   name and the value are configurable ([`ClientCertLayer::header`]);
//! * RFC 9440's `Client-Cert` header ([`ClientCertLayer::rfc9440`]), whose
//!   value is the DER certificate as a structured-field byte sequence
//!   (`:base64:`). A malformed value is refused.
//!
//! Exactly one instance of the header must be present: a proxy that appends
//! rather than replaces would otherwise let a client smuggle its own value in.
//! An optional subject header ([`ClientCertLayer::subject_header`], for
//! example nginx's `$ssl_client_s_dn` sent as `X-SSL-Client-S-DN`) is copied
//! into the [`ClientCertInfo`] request extension along with the RFC 9440
//! certificate bytes.
//!
//! Refusals are 403 `client_cert_required` (gRPC `PERMISSION_DENIED`).
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::client_cert::ClientCertLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = ClientCertLayer::new().try_trusted_proxies(["127.0.0.1"])?;
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_req: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) });
//!
//! // The proxy on loopback vouches for the certificate: admitted.
//! let mut request = Request::new(());
//! request.extensions_mut().insert(SocketAddr::from(([127, 0, 0, 1], 50000)));
//! request.headers_mut().insert("x-ssl-client-verify", "SUCCESS".parse()?);
//! assert_eq!(service.clone().oneshot(request).await?.status(), StatusCode::OK);
//!
//! // The same header straight from a client: refused.
//! let mut request = Request::new(());
//! request.extensions_mut().insert(SocketAddr::from(([198, 51, 100, 9], 50000)));
//! request.headers_mut().insert("x-ssl-client-verify", "SUCCESS".parse()?);
//! assert_eq!(service.oneshot(request).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```
//!
//! # Caveats
//!
//! Configure the proxy to *set* (replace) these headers on every request,
//! including when no certificate was presented, and make sure the application
//! port is reachable only through the proxy. With no trusted proxy configured
//! every request is refused.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use ipnet::IpNet;
use tower_layer::Layer;

use crate::cidr::{in_any, normalize_net, parse_nets};
use crate::client_ip::peer_ip;
use crate::error::ConfigError;
use crate::guard::{Check, Guard};
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};

/// What the trusted proxy told us about the client certificate, left in the
/// request extensions by [`ClientCertLayer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientCertInfo {
    subject: Option<String>,
    certificate: Option<Vec<u8>>,
}

impl ClientCertInfo {
    /// The subject the proxy reported in the subject header, if configured
    /// and present.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The DER certificate from an RFC 9440 `Client-Cert` header.
    #[must_use]
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }
}

#[derive(Clone, Debug)]
enum Mode {
    Verify {
        name: HeaderName,
        value: HeaderValue,
    },
    Rfc9440,
}

#[derive(Clone, Debug)]
struct Config {
    trusted: Vec<IpNet>,
    mode: Mode,
    subject_header: Option<HeaderName>,
}

impl Config {
    fn check(
        &self,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<ClientCertInfo, Rejection> {
        let trusted = peer.is_some_and(|ip| in_any(&self.trusted, ip));
        if !trusted {
            return Err(refuse(
                "client certificate assertions are accepted only from a trusted proxy",
            ));
        }
        let mut info = ClientCertInfo::default();
        match &self.mode {
            Mode::Verify { name, value } => {
                let got = single(headers, name)?;
                if got.as_bytes().trim_ascii() != value.as_bytes() {
                    return Err(refuse("the proxy did not verify a client certificate"));
                }
            }
            Mode::Rfc9440 => {
                let got = single(headers, &CLIENT_CERT)?;
                let der = decode_byte_sequence(got.as_bytes())
                    .ok_or_else(|| refuse("the Client-Cert header is malformed"))?;
                info.certificate = Some(der);
            }
        }
        if let Some(name) = &self.subject_header {
            info.subject = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
        }
        Ok(info)
    }
}

const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a HeaderValue, Rejection> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(refuse("no client certificate was presented")),
        (Some(_), Some(_)) => Err(refuse(
            "the client certificate header appears more than once",
        )),
    }
}

fn refuse(detail: &'static str) -> Rejection {
    Rejection::new(Reason::ClientCertRequired).with_detail(detail)
}

/// Decodes an RFC 8941 byte sequence (`:base64:`), strictly: standard
/// alphabet, padded, non-empty.
fn decode_byte_sequence(value: &[u8]) -> Option<Vec<u8>> {
    let inner = value.trim_ascii().strip_prefix(b":")?.strip_suffix(b":")?;
    if inner.is_empty() || inner.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(inner.len() / 4 * 3);
    for (index, chunk) in inner.chunks(4).enumerate() {
        let last = index == inner.len() / 4 - 1;
        let mut acc: u32 = 0;
        let mut pad = 0;
        for (i, &c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if last && i >= 2 => {
                    pad += 1;
                    0
                }
                _ => return None,
            };
            if pad > 0 && c != b'=' {
                return None;
            }
            acc = (acc << 6) | u32::from(v);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Refuses requests without a client-certificate assertion from a trusted
/// proxy. Clones share the configuration. See the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientCertLayer<R = DefaultResponder> {
    config: Arc<Config>,
    responder: R,
}

impl Default for ClientCertLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCertLayer {
    /// Expects `X-SSL-Client-Verify: SUCCESS`; trusts no proxy yet.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                trusted: Vec::new(),
                mode: Mode::Verify {
                    name: HeaderName::from_static("x-ssl-client-verify"),
                    value: HeaderValue::from_static("SUCCESS"),
                },
                subject_header: None,
            }),
            responder: DefaultResponder,
        }
    }
}

impl<R> ClientCertLayer<R> {
    /// Believes the headers from peers in these prefixes (and only them).
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        Arc::make_mut(&mut self.config).trusted = proxies.into_iter().map(normalize_net).collect();
        self
    }

    /// Like [`trusted_proxies`](Self::trusted_proxies), from text.
    ///
    /// # Errors
    ///
    /// Names the first entry that is not an address or CIDR.
    pub fn try_trusted_proxies<I, T>(mut self, proxies: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Arc::make_mut(&mut self.config).trusted = parse_nets("trusted_proxies", proxies)?;
        Ok(self)
    }

    /// Expects `name: value` from the proxy (default
    /// `X-SSL-Client-Verify: SUCCESS`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        Arc::make_mut(&mut self.config).mode = Mode::Verify { name, value };
        self
    }

    /// Like [`header`](Self::header), from text.
    ///
    /// # Errors
    ///
    /// When the name is not a valid header name or the value is empty or not
    /// a valid header value.
    pub fn try_header(self, name: &str, value: &str) -> Result<Self, ConfigError> {
        let name = HeaderName::try_from(name.trim()).map_err(|_| {
            ConfigError::new(
                "client_cert_header",
                format!("`{name}` is not a header name"),
            )
        })?;
        let value = value.trim();
        if value.is_empty() {
            return Err(ConfigError::new(
                "client_cert_header_value",
                "the expected value must not be empty",
            ));
        }
        let value = HeaderValue::try_from(value).map_err(|_| {
            ConfigError::new("client_cert_header_value", "not a valid header value")
        })?;
        Ok(self.header(name, value))
    }

    /// Expects an RFC 9440 `Client-Cert` header instead of a verification
    /// header; its certificate is left in [`ClientCertInfo`].
    pub fn rfc9440(mut self) -> Self {
        Arc::make_mut(&mut self.config).mode = Mode::Rfc9440;
        self
    }

    /// Copies this header (for example `X-SSL-Client-S-DN`) into
    /// [`ClientCertInfo::subject`].
    pub fn subject_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.config).subject_header = Some(name);
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> ClientCertLayer<R2> {
        ClientCertLayer {
            config: self.config,
            responder,
        }
    }
}

impl<R: Respond> Check for ClientCertLayer<R> {
    const LAYER: &'static str = "client_cert";

    type Responder = R;

    #[inline]
    fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
        let info = self
            .config
            .check(request.headers(), peer_ip(request.extensions()))?;
        request.extensions_mut().insert(info);
        Ok(())
    }

    fn responder(&self) -> &R {
        &self.responder
    }
}

impl<S, R: Respond> Layer<S> for ClientCertLayer<R> {
    type Service = ClientCert<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}

/// The service made by [`ClientCertLayer`].
pub type ClientCert<S, R = DefaultResponder> = Guard<S, ClientCertLayer<R>>;

impl ClientCert<(), DefaultResponder> {
    /// The layer that reads the client certificate a trusted TLS proxy
    /// asserts; see [`ClientCertLayer::new`].
    pub fn layer() -> ClientCertLayer {
        ClientCertLayer::new()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    fn request(peer: [u8; 4], headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(SocketAddr::from((peer, 443)));
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::try_from(*value).unwrap(),
            );
        }
        request
    }

    async fn run(
        layer: ClientCertLayer,
        request: Request<()>,
    ) -> (StatusCode, Option<ClientCertInfo>, usize, serde_json::Value) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(None));
        let (c, s) = (calls.clone(), seen.clone());
        let service = ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |req: Request<()>| {
                c.fetch_add(1, Ordering::SeqCst);
                *s.lock().unwrap() = req.extensions().get::<ClientCertInfo>().cloned();
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            });
        let response = service.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let info = seen.lock().unwrap().take();
        (status, info, calls.load(Ordering::SeqCst), json)
    }

    fn layer() -> ClientCertLayer {
        ClientCertLayer::new()
            .try_trusted_proxies(["10.0.0.0/8"])
            .unwrap()
    }

    #[tokio::test]
    async fn proxy_assertion_admits_and_records_subject() {
        let layer = layer().subject_header(HeaderName::from_static("x-ssl-client-s-dn"));
        let (status, info, calls, _) = run(
            layer,
            request(
                [10, 0, 0, 1],
                &[
                    ("x-ssl-client-verify", "SUCCESS"),
                    ("x-ssl-client-s-dn", "CN=agent-7"),
                ],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(calls, 1);
        assert_eq!(info.unwrap().subject(), Some("CN=agent-7"));
    }

    #[tokio::test]
    async fn attack_cert_header_from_direct_client_is_refused() {
        let (status, _, calls, body) = run(
            layer(),
            request([198, 51, 100, 7], &[("x-ssl-client-verify", "SUCCESS")]),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(calls, 0);
        assert_eq!(body["code"], "client_cert_required");
    }

    #[tokio::test]
    async fn missing_failed_or_duplicated_assertions_are_refused() {
        for headers in [
            &[][..],
            &[("x-ssl-client-verify", "FAILED:certificate has expired")][..],
            &[("x-ssl-client-verify", "NONE")][..],
            &[("x-ssl-client-verify", "success")][..],
            &[
                ("x-ssl-client-verify", "SUCCESS"),
                ("x-ssl-client-verify", "FAILED"),
            ][..],
        ] {
            let (status, _, calls, body) = run(layer(), request([10, 0, 0, 1], headers)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}");
            assert_eq!(calls, 0);
            assert_eq!(body["code"], "client_cert_required");
        }
    }

    #[tokio::test]
    async fn no_peer_or_no_trusted_proxy_is_refused() {
        let mut no_peer = Request::new(());
        no_peer
            .headers_mut()
            .insert("x-ssl-client-verify", HeaderValue::from_static("SUCCESS"));
        assert_eq!(run(layer(), no_peer).await.0, StatusCode::FORBIDDEN);
        let untrusting = ClientCert::layer();
        let (status, ..) = run(
            untrusting,
            request([127, 0, 0, 1], &[("x-ssl-client-verify", "SUCCESS")]),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn custom_header_and_value() {
        let layer = layer().try_header("X-Client-Cert-Status", "ok").unwrap();
        let ok = request([10, 1, 1, 1], &[("x-client-cert-status", "ok")]);
        assert_eq!(run(layer.clone(), ok).await.0, StatusCode::OK);
        let default_name = request([10, 1, 1, 1], &[("x-ssl-client-verify", "SUCCESS")]);
        assert_eq!(run(layer, default_name).await.0, StatusCode::FORBIDDEN);
        assert!(
            ClientCertLayer::new()
                .try_header("bad header", "x")
                .is_err()
        );
        let err = ClientCertLayer::new().try_header("x-ok", " ").unwrap_err();
        assert_eq!(err.setting(), "client_cert_header_value");
    }

    #[tokio::test]
    async fn rfc9440_client_cert_header() {
        let layer = layer().rfc9440();
        // ":AQID:" is the byte sequence 01 02 03.
        let (status, info, ..) = run(
            layer.clone(),
            request([10, 0, 0, 1], &[("client-cert", ":AQID:")]),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info.unwrap().certificate_der(), Some(&[1u8, 2, 3][..]));
        let (status, info, ..) = run(
            layer.clone(),
            request([10, 0, 0, 1], &[("client-cert", ":AQI=:")]),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info.unwrap().certificate_der(), Some(&[1u8, 2][..]));
        for bad in ["AQID", ":AQ:", ":A=QI:", "::", ":AQI*:"] {
            let (status, ..) = run(
                layer.clone(),
                request([10, 0, 0, 1], &[("client-cert", bad)]),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{bad}");
        }
        let (status, ..) = run(
            layer,
            request([203, 0, 113, 1], &[("client-cert", ":AQID:")]),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn grpc_callers_get_permission_denied() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let service = ServiceBuilder::new()
            .layer(layer())
            .service_fn(move |_: Request<()>| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            });
        let response = service
            .oneshot(request(
                [10, 0, 0, 1],
                &[("content-type", "application/grpc")],
            ))
            .await
            .unwrap();
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

//! Who is really calling: the peer address, or the client behind a proxy you
//! trust.
//!
//! [`ClientIpLayer`] puts a [`ClientIp`] in the request extensions for the
//! layers and handlers after it. It protects against the classic spoof:
//! believing the leftmost `X-Forwarded-For` entry, which any client can
//! write.
//!
//! * The peer address comes from the connection: a [`SocketAddr`] request
//!   extension, axum's `ConnectInfo<SocketAddr>` (feature `axum`) or tonic's
//!   `TcpConnectInfo` (feature `tonic`).
//! * Forwarding headers (`X-Forwarded-For`, or RFC 7239 `Forwarded`; one of
//!   them, chosen by you) are read **only** when the peer is a trusted proxy.
//!   Several header lines are joined in order.
//! * The chain is walked from the right. [`ClientIpLayer::depth`] is the
//!   number of proxies that append to the header (1 for a single nginx). The
//!   rightmost entry was written by the peer itself; each entry further left
//!   is believed only while every entry to its right is a trusted proxy. The
//!   client is the first untrusted entry, or the entry at `depth`, whichever
//!   comes first. Entries left of it are never read.
//! * IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are normalised to IPv4,
//!   for the peer, the chain and the trusted list alike.
//!
//! # Fails closed
//!
//! A trusted peer whose header is missing, whose chain is shorter than needed
//! (every entry is a trusted proxy and fewer than `depth` exist), or whose
//! walked entries do not parse (`unknown`, obfuscated `_node` identifiers,
//! junk) is refused with 400 `forwarded_invalid`: guessing would hand the
//! proxy's own, often allow-listed, address to an unknown caller. A request
//! with no peer address at all is refused with 500 `client_ip_unavailable`
//! (serve the app with connect info).
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::client_ip::{ClientIp, ClientIpLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = ClientIpLayer::new().try_trusted_proxies(["10.0.0.0/8"])?;
//! let service = ServiceBuilder::new().layer(layer).service_fn(|req: Request<()>| async move {
//!     let ClientIp(ip) = req.extensions().get::<ClientIp>().copied().unwrap();
//!     Ok::<_, std::convert::Infallible>(Response::new(ip.to_string()))
//! });
//!
//! // The peer is our proxy; the leftmost entry is whatever the client wrote.
//! let mut request = Request::new(());
//! request.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 2], 40000)));
//! request.headers_mut().insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse()?);
//! let response = service.oneshot(request).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "203.0.113.7");
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap, HeaderName, Request, Response};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use crate::ConfigError;
use crate::future::ResponseFuture;
use crate::net::{canonical, canonical_net, parse_net};
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// The address of the client, as resolved by [`ClientIpLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client address.
    #[inline]
    #[must_use]
    pub fn ip(self) -> IpAddr {
        self.0
    }

    /// The client address of a request: the [`ClientIp`] extension when
    /// [`ClientIpLayer`] ran, the peer address otherwise.
    #[inline]
    #[must_use]
    pub fn of(extensions: &Extensions) -> Option<IpAddr> {
        match extensions.get::<ClientIp>() {
            Some(ip) => Some(ip.0),
            None => peer_ip(extensions),
        }
    }
}

/// The peer address of the connection, from a [`SocketAddr`] extension,
/// axum's `ConnectInfo<SocketAddr>` (feature `axum`) or tonic's
/// `TcpConnectInfo` (feature `tonic`), normalised (IPv4-mapped IPv6 becomes
/// IPv4).
#[must_use]
pub fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(canonical(info.0.ip()));
    }
    #[cfg(feature = "tonic")]
    if let Some(info) = extensions.get::<tonic::transport::server::TcpConnectInfo>()
        && let Some(addr) = info.remote_addr()
    {
        return Some(canonical(addr.ip()));
    }
    None
}

/// Which forwarding header a trusted proxy writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

#[derive(Clone, Debug)]
struct Config {
    trusted: Vec<IpNet>,
    depth: usize,
    header: ForwardedHeader,
}

impl Config {
    #[inline]
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    fn resolve(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<IpAddr, Rejection> {
        let peer =
            peer_ip(extensions).ok_or_else(|| Rejection::new(Reason::ClientIpUnavailable))?;
        if !self.is_trusted(peer) {
            return Ok(peer);
        }
        let (name, parse): (HeaderName, fn(&str) -> Option<IpAddr>) = match self.header {
            ForwardedHeader::XForwardedFor => {
                (HeaderName::from_static("x-forwarded-for"), parse_xff_entry)
            }
            ForwardedHeader::Forwarded => (http::header::FORWARDED, parse_forwarded_element),
        };
        let mut walked = 0;
        for line in headers.get_all(&name).iter().rev() {
            let line = line
                .to_str()
                .map_err(|_| invalid("forwarding header is not visible ASCII"))?;
            for entry in line.rsplit(',') {
                let ip = parse(entry.trim())
                    .map(canonical)
                    .ok_or_else(|| invalid("forwarding header entry is not an IP address"))?;
                walked += 1;
                if walked >= self.depth || !self.is_trusted(ip) {
                    return Ok(ip);
                }
            }
        }
        Err(invalid(
            "forwarding chain from the trusted proxy is shorter than the configured depth",
        ))
    }
}

fn invalid(detail: &'static str) -> Rejection {
    Rejection::new(Reason::ForwardedInvalid).with_detail(detail)
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`.
fn parse_xff_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':')?.parse::<u16>().is_ok()) {
            return None;
        }
        return inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    entry.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The `for=` node of one RFC 7239 element (`for=192.0.2.60;proto=https`).
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (key, value) = pair.trim().split_once('=')?;
        if key.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            found = Some(parse_xff_entry(value)?);
        }
    }
    found
}

/// Resolves the client address and leaves it in [`ClientIp`].
///
/// Clones share the configuration. See the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientIpLayer<R = DefaultResponder> {
    config: Arc<Config>,
    responder: R,
}

impl Default for ClientIpLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIpLayer {
    /// Uses the peer address; trusts no proxy.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                trusted: Vec::new(),
                depth: 1,
                header: ForwardedHeader::XForwardedFor,
            }),
            responder: DefaultResponder,
        }
    }
}

impl<R> ClientIpLayer<R> {
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Trusts forwarding headers from peers in these prefixes (and only them).
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.config_mut().trusted = proxies
            .into_iter()
            .map(|net| canonical_net(net).trunc())
            .collect();
        self
    }

    /// Like [`trusted_proxies`](Self::trusted_proxies), from text: CIDRs
    /// (`10.0.0.0/8`) or bare addresses (`127.0.0.1`).
    ///
    /// # Errors
    ///
    /// Names the first entry that is neither.
    pub fn try_trusted_proxies<I, T>(mut self, proxies: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.config_mut().trusted = proxies
            .into_iter()
            .map(|p| parse_net("trusted_proxies", p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// The number of proxies that append to the forwarding header (default
    /// 1). Zero is treated as 1: a trusted peer always wrote the rightmost
    /// entry.
    pub fn depth(mut self, depth: usize) -> Self {
        self.config_mut().depth = depth.max(1);
        self
    }

    /// Reads `X-Forwarded-For` (the default).
    pub fn x_forwarded_for(mut self) -> Self {
        self.config_mut().header = ForwardedHeader::XForwardedFor;
        self
    }

    /// Reads RFC 7239 `Forwarded` instead of `X-Forwarded-For`.
    pub fn forwarded(mut self) -> Self {
        self.config_mut().header = ForwardedHeader::Forwarded;
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> ClientIpLayer<R2> {
        ClientIpLayer {
            config: self.config,
            responder,
        }
    }
}

impl<S, R: Clone> Layer<S> for ClientIpLayer<R> {
    type Service = ClientIpResolver<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpResolver {
            inner,
            config: Arc::clone(&self.config),
            responder: self.responder.clone(),
        }
    }
}

/// The service made by [`ClientIpLayer`].
#[derive(Clone, Debug)]
pub struct ClientIpResolver<S, R = DefaultResponder> {
    inner: S,
    config: Arc<Config>,
    responder: R,
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ClientIpResolver<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Respond,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.config.resolve(request.headers(), request.extensions()) {
            Ok(ip) => {
                request.extensions_mut().insert(ClientIp(ip));
                ResponseFuture::inner(self.inner.call(request))
            }
            Err(rejection) => {
                ResponseFuture::reject(reject::render(&self.responder, rejection, &request))
            }
        }
    }
}

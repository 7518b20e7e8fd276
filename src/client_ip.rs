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
//! * In `Forwarded`, a quoted string is one value wherever its commas and
//!   semicolons stand (`for=192.0.2.7;host="a,for=6.6.6.6"` is one element
//!   naming `192.0.2.7`), and each line is read from its end, so what a
//!   client wrote left of a proxy's element cannot change how that element
//!   is read. An element is `token=value` pairs, each value a token or one
//!   quoted string, with exactly one `for`.
//!
//! # Fails closed
//!
//! A trusted peer whose header is missing, whose chain is shorter than needed
//! (every entry is a trusted proxy and fewer than `depth` exist), or whose
//! walked entries do not parse (`unknown`, obfuscated `_node` identifiers,
//! empty entries, stray or unterminated quotes, junk) is refused with 400
//! `forwarded_invalid`: guessing would hand the proxy's own, often
//! allow-listed, address to an unknown caller. A request
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
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Extensions, HeaderMap, HeaderName, Request};
use ipnet::IpNet;
use tower_layer::Layer;

use crate::cidr::{canonical, in_any, normalize_net, parse_nets};
use crate::error::ConfigError;
use crate::guard::{Check, Guard};
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};

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

/// Says once per process, at error level, how to give requests their peer
/// address: a server set up without it refuses every request.
#[cold]
fn no_peer_hint() {
    static SAID: AtomicBool = AtomicBool::new(false);
    hint_once(&SAID);
}

/// Logs the hint unless `said`; whether it did.
fn hint_once(said: &AtomicBool) -> bool {
    if said.swap(true, Ordering::Relaxed) {
        return false;
    }
    tracing::error!(target: "tower_warden", "{NO_PEER_HINT}");
    true
}

const NO_PEER_HINT: &str = "requests carry no peer address, so every one is refused \
    (500 client_ip_unavailable): serve with connect info — axum: \
    `into_make_service_with_connect_info::<SocketAddr>()` and tower-warden's `axum` feature; \
    tonic: the `tonic` feature; otherwise insert the peer's `SocketAddr` as a request extension";

impl Config {
    #[inline]
    fn is_trusted(&self, ip: IpAddr) -> bool {
        in_any(&self.trusted, ip)
    }

    fn resolve(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<IpAddr, Rejection> {
        let peer = peer_ip(extensions).ok_or_else(|| {
            no_peer_hint();
            Rejection::new(Reason::ClientIpUnavailable)
        })?;
        if !self.is_trusted(peer) {
            return Ok(peer);
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => http::header::FORWARDED,
        };
        let mut walked = 0;
        for line in headers.get_all(&name).iter().rev() {
            let line = line
                .to_str()
                .map_err(|_| invalid("forwarding header is not visible ASCII"))?;
            let found = match self.header {
                ForwardedHeader::XForwardedFor => self.walk(
                    line.rsplit(',').map(|entry| parse_xff_entry(entry.trim())),
                    &mut walked,
                ),
                ForwardedHeader::Forwarded => self.walk(
                    ElementsFromRight::new(line)
                        .map(|element| element.and_then(parse_forwarded_element)),
                    &mut walked,
                ),
            }?;
            if let Some(ip) = found {
                return Ok(ip);
            }
        }
        Err(invalid(
            "forwarding chain from the trusted proxy is shorter than the configured depth",
        ))
    }

    /// Walks the entries of one line, rightmost first, counting them in
    /// `walked`: the client once found, `None` when the line ran out first.
    #[inline]
    fn walk(
        &self,
        entries: impl Iterator<Item = Option<IpAddr>>,
        walked: &mut usize,
    ) -> Result<Option<IpAddr>, Rejection> {
        for entry in entries {
            let ip = entry
                .map(canonical)
                .ok_or_else(|| invalid("forwarding header entry is not an IP address"))?;
            *walked += 1;
            if *walked >= self.depth || !self.is_trusted(ip) {
                return Ok(Some(ip));
            }
        }
        Ok(None)
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

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

/// The elements of one RFC 7239 `Forwarded` line, rightmost first: a
/// comma inside a quoted string (`host="a,b"`) does not end an element.
///
/// The line is read from its end, so the elements a trusted proxy appended
/// are delimited correctly whatever the client wrote to their left, and
/// nothing left of the element the walk stops at is read. An element whose
/// quotes do not close before the start of the line is `None`.
struct ElementsFromRight<'a> {
    line: &'a str,
    /// Where the next element ends; `None` once the line is used up.
    end: Option<usize>,
}

impl<'a> ElementsFromRight<'a> {
    fn new(line: &'a str) -> Self {
        Self {
            line,
            end: Some(line.len()),
        }
    }
}

impl<'a> Iterator for ElementsFromRight<'a> {
    type Item = Option<&'a str>;

    fn next(&mut self) -> Option<Self::Item> {
        let end = self.end?;
        let bytes = self.line.as_bytes();
        let mut quoted = false;
        let mut i = end;
        while i > 0 {
            i -= 1;
            match bytes[i] {
                // Read backwards, a quote inside a quoted string opens it
                // unless an odd run of backslashes escapes it.
                b'"' if quoted => {
                    let run = bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                    quoted = run % 2 == 1;
                }
                b'"' => quoted = true,
                b',' if !quoted => {
                    self.end = Some(i);
                    return Some(Some(&self.line[i + 1..end]));
                }
                _ => {}
            }
        }
        self.end = None;
        Some((!quoted).then_some(&self.line[..end]))
    }
}

/// The `for=` node of one RFC 7239 element (`for=192.0.2.60;proto=https`),
/// read from the left: `token=value` pairs split at semicolons outside
/// quoted strings, each value a token or one whole quoted string, exactly
/// one `for`. Anything else (an empty pair, a comma outside quotes, a stray
/// quote, an unterminated string) is `None`.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut found = None;
    let mut pairs = ForwardedPairs(Some(element));
    while let Some(pair) = pairs.next_pair()? {
        let (key, value) = pair.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(is_tchar) {
            return None;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            // One whole quoted string: no unescaped quote before the last.
            Some(quoted) => quoted
                .strip_suffix('"')
                .filter(|inner| !has_unescaped_quote(inner))?,
            None if value.contains('"') => return None,
            None => value,
        };
        if key.eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            found = Some(parse_xff_entry(value)?);
        }
    }
    found
}

/// RFC 9110 `tchar`: what a token (a parameter name) is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether the inside of a quoted string has a quote no backslash escapes.
fn has_unescaped_quote(inner: &str) -> bool {
    let mut escaped = false;
    for b in inner.bytes() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return true,
            _ => {}
        }
    }
    false
}

/// The `;`-separated pairs of an element, quoted strings kept whole; what
/// is left to read, `None` once done.
struct ForwardedPairs<'a>(Option<&'a str>);

impl<'a> ForwardedPairs<'a> {
    /// The next pair (`Some(None)` when the element is used up), or `None`
    /// when the element is not well formed: a comma outside quotes or an
    /// unterminated quoted string.
    fn next_pair(&mut self) -> Option<Option<&'a str>> {
        let Some(rest) = self.0 else {
            return Some(None);
        };
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in rest.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b';' if !quoted => {
                    self.0 = Some(&rest[i + 1..]);
                    return Some(Some(&rest[..i]));
                }
                b',' if !quoted => return None,
                _ => {}
            }
        }
        self.0 = None;
        (!quoted).then_some(Some(rest))
    }
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
        self.config_mut().trusted = proxies.into_iter().map(normalize_net).collect();
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
        self.config_mut().trusted = parse_nets("trusted_proxies", proxies)?;
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

impl<R: Respond> Check for ClientIpLayer<R> {
    const LAYER: &'static str = "client_ip";

    type Responder = R;

    #[inline]
    fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
        let ip = self
            .config
            .resolve(request.headers(), request.extensions())?;
        request.extensions_mut().insert(ClientIp(ip));
        Ok(())
    }

    fn responder(&self) -> &R {
        &self.responder
    }
}

impl<S, R: Respond> Layer<S> for ClientIpLayer<R> {
    type Service = SetClientIp<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}

/// The service made by [`ClientIpLayer`].
pub type SetClientIp<S, R = DefaultResponder> = Guard<S, ClientIpLayer<R>>;

impl SetClientIp<(), DefaultResponder> {
    /// The layer that sets the [`ClientIp`] extension; see
    /// [`ClientIpLayer::new`].
    pub fn layer() -> ClientIpLayer {
        ClientIpLayer::new()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{HeaderValue, Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    /// What the inner service saw, or the refusal.
    async fn resolve(
        layer: ClientIpLayer,
        peer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<IpAddr, (StatusCode, String)> {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let service = ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |req: Request<()>| {
                c.fetch_add(1, Ordering::SeqCst);
                let ip = req.extensions().get::<ClientIp>().unwrap().ip();
                async move { Ok::<_, Infallible>(Response::new(ip.to_string())) }
            });
        let mut request = Request::new(());
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(peer.parse::<SocketAddr>().unwrap());
        }
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::try_from(*value).unwrap(),
            );
        }
        let response = service.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        if status == StatusCode::OK {
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            Ok(body.parse().unwrap())
        } else {
            assert_eq!(
                calls.load(Ordering::SeqCst),
                0,
                "a refusal never calls the service"
            );
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            Err((status, json["code"].as_str().unwrap().to_owned()))
        }
    }

    fn behind_proxy(depth: usize) -> ClientIpLayer {
        ClientIpLayer::new()
            .try_trusted_proxies(["10.0.0.0/8", "2001:db8:ffff::/48"])
            .unwrap()
            .depth(depth)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn without_proxies_the_peer_is_the_client() {
        let got = resolve(SetClientIp::layer(), Some("198.51.100.4:1000"), &[]).await;
        assert_eq!(got, Ok(ip("198.51.100.4")));
    }

    #[tokio::test]
    async fn attack_xff_from_an_untrusted_peer_is_ignored() {
        let got = resolve(
            behind_proxy(1),
            Some("198.51.100.4:1000"),
            &[("x-forwarded-for", "10.0.0.1")],
        )
        .await;
        assert_eq!(got, Ok(ip("198.51.100.4")));
    }

    #[tokio::test]
    async fn attack_spoofed_leftmost_entry_is_never_taken() {
        // nginx appended the real client to whatever the client sent.
        let got = resolve(
            behind_proxy(1),
            Some("10.0.0.2:1000"),
            &[("x-forwarded-for", "127.0.0.1, 10.9.9.9, 203.0.113.7")],
        )
        .await;
        assert_eq!(got, Ok(ip("203.0.113.7")));
    }

    #[tokio::test]
    async fn two_proxies_skip_the_trusted_hop() {
        let got = resolve(
            behind_proxy(2),
            Some("10.0.0.2:1000"),
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.3")],
        )
        .await;
        assert_eq!(got, Ok(ip("203.0.113.7")));
        // The inner proxy was bypassed: the first untrusted hop is the client.
        let got = resolve(
            behind_proxy(2),
            Some("10.0.0.2:1000"),
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.7")],
        )
        .await;
        assert_eq!(got, Ok(ip("203.0.113.7")));
        // Depth bounds the walk: a trusted address at the depth is the client.
        let got = resolve(
            behind_proxy(1),
            Some("10.0.0.2:1000"),
            &[("x-forwarded-for", "6.6.6.6, 10.0.0.3")],
        )
        .await;
        assert_eq!(got, Ok(ip("10.0.0.3")));
    }

    #[tokio::test]
    async fn attack_chain_shorter_than_the_depth_fails_closed() {
        let got = resolve(
            behind_proxy(3),
            Some("10.0.0.2:1000"),
            &[("x-forwarded-for", "10.0.0.5, 10.0.0.3")],
        )
        .await;
        assert_eq!(
            got,
            Err((StatusCode::BAD_REQUEST, "forwarded_invalid".into()))
        );
        let missing = resolve(behind_proxy(1), Some("10.0.0.2:1000"), &[]).await;
        assert_eq!(
            missing,
            Err((StatusCode::BAD_REQUEST, "forwarded_invalid".into()))
        );
    }

    #[tokio::test]
    async fn attack_unparsable_entries_fail_closed() {
        for value in [
            "unknown",
            "203.0.113.7, ",
            "not-an-ip",
            "1.2.3.4.5",
            "[::1",
            "",
        ] {
            let got = resolve(
                behind_proxy(1),
                Some("10.0.0.2:1000"),
                &[("x-forwarded-for", value)],
            )
            .await;
            assert_eq!(
                got,
                Err((StatusCode::BAD_REQUEST, "forwarded_invalid".into())),
                "{value:?}"
            );
        }
        // Junk left of the client is never read.
        let got = resolve(
            behind_proxy(1),
            Some("10.0.0.2:1000"),
            &[("x-forwarded-for", "garbage, 203.0.113.7")],
        )
        .await;
        assert_eq!(got, Ok(ip("203.0.113.7")));
    }

    #[tokio::test]
    async fn several_header_lines_are_joined_in_order() {
        let got = resolve(
            behind_proxy(2),
            Some("10.0.0.2:1000"),
            &[
                ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
                ("x-forwarded-for", "10.0.0.3"),
            ],
        )
        .await;
        assert_eq!(got, Ok(ip("203.0.113.7")));
    }

    #[tokio::test]
    async fn ports_and_brackets_are_accepted() {
        for (value, want) in [
            ("203.0.113.7:4711", "203.0.113.7"),
            ("[2001:db8::7]:4711", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
        ] {
            let got = resolve(
                behind_proxy(1),
                Some("10.0.0.2:1000"),
                &[("x-forwarded-for", value)],
            )
            .await;
            assert_eq!(got, Ok(ip(want)), "{value}");
        }
    }

    #[tokio::test]
    async fn attack_ipv4_mapped_ipv6_is_normalised() {
        // A mapped peer is the trusted proxy it maps to.
        let got = resolve(
            behind_proxy(1),
            Some("[::ffff:10.0.0.2]:1000"),
            &[("x-forwarded-for", "::ffff:203.0.113.7")],
        )
        .await;
        assert_eq!(got, Ok(ip("203.0.113.7")));
        // And a mapped client cannot pass for a different address family.
        let got = resolve(ClientIpLayer::new(), Some("[::ffff:192.0.2.1]:9"), &[]).await;
        assert_eq!(got, Ok(ip("192.0.2.1")));
        // Trusted lists written in mapped form match plain IPv4 peers.
        let layer = ClientIpLayer::new()
            .try_trusted_proxies(["::ffff:10.0.0.0/104"])
            .unwrap();
        let got = resolve(
            layer,
            Some("10.1.1.1:1"),
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await;
        assert_eq!(got, Ok(ip("203.0.113.9")));
    }

    #[tokio::test]
    async fn rfc7239_forwarded_header() {
        let layer = behind_proxy(2).forwarded();
        let got = resolve(
            layer.clone(),
            Some("10.0.0.2:1000"),
            &[(
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, For=10.0.0.3;by=10.0.0.2",
            )],
        )
        .await;
        assert_eq!(got, Ok(ip("2001:db8::17")));
        // With `forwarded()`, X-Forwarded-For is not read at all.
        let got = resolve(
            layer.clone(),
            Some("10.0.0.2:1000"),
            &[("x-forwarded-for", "203.0.113.7")],
        )
        .await;
        assert_eq!(
            got,
            Err((StatusCode::BAD_REQUEST, "forwarded_invalid".into()))
        );
        for value in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=1.2.3.4;for=5.6.7.8",
        ] {
            let got = resolve(
                layer.clone(),
                Some("10.0.0.2:1000"),
                &[("forwarded", value)],
            )
            .await;
            assert_eq!(
                got,
                Err((StatusCode::BAD_REQUEST, "forwarded_invalid".into())),
                "{value}"
            );
        }
    }

    #[tokio::test]
    async fn attack_quoted_commas_and_semicolons_in_forwarded_stay_in_their_value() {
        // Before: the line was split at every comma and semicolon, so a
        // quoted `host` the proxy copied from the client named the client.
        let layer = behind_proxy(1).forwarded();
        for value in [
            r#"for=203.0.113.7;host="x,for=6.6.6.6;y=""#,
            r#"for=203.0.113.7;host="a\",for=6.6.6.6;b=\"""#,
            r#"host="x;for=6.6.6.6";for=203.0.113.7"#,
            r#"x=", for=203.0.113.7"#,
        ] {
            let got = resolve(
                layer.clone(),
                Some("10.0.0.2:1000"),
                &[("forwarded", value)],
            )
            .await;
            assert_eq!(got, Ok(ip("203.0.113.7")), "{value}");
        }
        for value in [
            r#"for=203.0.113.7;x=a"b"#,
            r#"for=203.0.113.7;host="open"#,
            r#"for=203.0.113.7;host="a"b""#,
            r#"for=203.0.113.7;a b=c"#,
        ] {
            let got = resolve(
                layer.clone(),
                Some("10.0.0.2:1000"),
                &[("forwarded", value)],
            )
            .await;
            assert_eq!(
                got,
                Err((StatusCode::BAD_REQUEST, "forwarded_invalid".into())),
                "{value}"
            );
        }
    }

    #[test]
    fn a_missing_peer_address_is_explained_once() {
        crate::testing::start();
        let said = AtomicBool::new(false);
        assert!(hint_once(&said));
        assert!(!hint_once(&said));
        let lines = crate::testing::lines_with("requests carry no peer address");
        assert!(!lines.is_empty());
        assert!(
            lines[0].contains("ERROR") && lines[0].contains("into_make_service_with_connect_info")
        );
    }

    #[tokio::test]
    async fn no_peer_address_fails_closed() {
        let got = resolve(
            ClientIpLayer::new(),
            None,
            &[("x-forwarded-for", "1.2.3.4")],
        )
        .await;
        assert_eq!(
            got,
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "client_ip_unavailable".into()
            ))
        );
    }

    #[test]
    fn bad_trusted_proxies_are_config_errors() {
        let err = ClientIpLayer::new()
            .try_trusted_proxies(["10.0.0.0/8", "10.0.0.0/40"])
            .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/40"));
    }

    #[test]
    fn client_ip_of_prefers_the_extension() {
        let mut extensions = Extensions::new();
        assert_eq!(ClientIp::of(&extensions), None);
        extensions.insert(SocketAddr::from(([10, 0, 0, 2], 1)));
        assert_eq!(ClientIp::of(&extensions), Some(ip("10.0.0.2")));
        extensions.insert(ClientIp(ip("203.0.113.7")));
        assert_eq!(ClientIp::of(&extensions), Some(ip("203.0.113.7")));
    }
}

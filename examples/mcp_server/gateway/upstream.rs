//! Upstream MCP servers, reached with rmcp's Streamable HTTP client: one
//! client per connection (per connection and caller when the connection
//! exchanges tokens), each call through the connection's own circuit
//! breaker and timeout.
//!
//! The caller's credential is never passed on (MCP forbids token
//! passthrough): a connection carries its own upstream credential, sent as
//! `Authorization: Bearer …`, or exchanges the caller's token at
//! `MCP_TOKEN_EXCHANGE_URL` for one whose resource is the upstream
//! ([`UpstreamAuth::TokenExchange`]); nothing else from the caller's
//! request reaches the upstream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ContentBlock, JsonObject,
    RequestParamsMeta as _, Tool,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tower_warden::auth::{AccessToken, ExchangeError, ExchangeTarget, TokenExchange};
use tower_warden::circuit_breaker::{BreakerState, CircuitBreakers};
use tower_warden::mcp::schema_firewall::SchemaCache;
use tower_warden::mcp::tool_integrity::{Finding, ToolDigest, ToolPins, ToolScreen};
use tower_warden::mcp::{ResponseLimitExceeded, ResponseLimitLayer};
use tower_warden::otel;
use tower_warden::principal::Principal;
use tower_warden::tool_rules::AnnotationPolicy;
use tracing::Instrument as _;

use super::capped::{Capped, TokenCell};
use super::store::{Connection, ConnectionStore, Pin, StoreError, UpstreamAuth};

type Client = RunningService<RoleClient, ClientConfig>;

/// The most upstream clients held for callers of token-exchange
/// connections (one MCP session each); a new caller past it closes one.
const MAX_CALLER_CLIENTS: usize = 1024;

/// Who an upstream call is made for: the caller's principal and, when the
/// auth layer kept it, its verified access token (what a token-exchange
/// connection exchanges).
#[derive(Clone, Copy, Debug, Default)]
pub struct OnBehalf<'a> {
    /// The caller.
    pub principal: Option<&'a Principal>,
    /// Its access token.
    pub token: Option<&'a AccessToken>,
}

impl<'a> OnBehalf<'a> {
    /// The caller of a request with these extensions.
    pub fn of(extensions: Option<&'a http::Extensions>) -> Self {
        Self {
            principal: extensions.and_then(http::Extensions::get),
            token: extensions.and_then(http::Extensions::get),
        }
    }
}

/// Which client a call uses: the connection's own, or one per caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    connection: String,
    /// The caller's subject (token-exchange connections only).
    caller: Option<String>,
}

/// A running client, and the token its requests carry when it is a
/// caller's.
struct Held {
    client: Arc<Client>,
    token: Option<Arc<TokenCell>>,
}

use super::super::tools::GATEWAY_HOP;

/// Why an upstream call did not produce an answer.
#[derive(Debug)]
pub enum UpstreamError {
    /// The connection's breaker is open: the upstream was not called.
    Open {
        /// When the breaker lets a probe through.
        retry_after: Duration,
    },
    /// No answer within the connection's timeout.
    Timeout,
    /// The upstream could not be reached, or broke the protocol.
    Failed(String),
    /// The upstream answered with a JSON-RPC error (it is up; the request
    /// was wrong).
    Refused(rmcp::ErrorData),
    /// The connection's URL is not one the gateway may reach (a private
    /// address while `MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS` is off): the
    /// upstream was not called.
    Forbidden(String),
    /// The connection store, which holds the approved tools, failed: the
    /// upstream's tools cannot be checked, so none is offered or called.
    Store(StoreError),
    /// The tool rules on annotations refuse this caller the tool: the
    /// upstream was not called.
    Denied(String),
    /// The upstream's answer went over a cap on answers (the
    /// `MAX_ANSWER_*` caps, or the connection's timeout) and was cut.
    Capped(ResponseLimitExceeded),
    /// The connection exchanges the caller's token, and no token came: the
    /// caller has none to exchange (an API key, no credential), the
    /// authorization server refused, or could not be asked. The upstream
    /// was not called.
    Exchange(ExchangeError),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open { retry_after } => write!(
                f,
                "the upstream is failing; its circuit breaker is open for {} s more",
                retry_after.as_secs().max(1)
            ),
            Self::Timeout => f.write_str("the upstream did not answer in time"),
            Self::Failed(why) => write!(f, "the upstream cannot be reached: {why}"),
            Self::Refused(error) => write!(f, "the upstream refused the call: {}", error.message),
            Self::Forbidden(why) => write!(f, "the upstream may not be reached: {why}"),
            Self::Store(error) => error.fmt(f),
            Self::Capped(limit) => write!(f, "the upstream's answer was cut: {limit}"),
            Self::Denied(why) => f.write_str(why),
            Self::Exchange(error) => error.fmt(f),
        }
    }
}

impl UpstreamError {
    /// What the tenant is told: a fixed sentence per kind of failure. The
    /// upstream's own text (a response body, an error message) never
    /// reaches the tenant — an upstream may be any web server, and its
    /// answer would turn the gateway into a reader of it; it is logged
    /// instead, once, when the call fails.
    pub fn public_detail(&self) -> String {
        match self {
            Self::Open { .. } | Self::Timeout | Self::Forbidden(_) => self.to_string(),
            Self::Failed(_) => {
                "the upstream cannot be reached or did not answer as an MCP server".to_owned()
            }
            Self::Refused(error) => format!(
                "the upstream refused the call (JSON-RPC error {})",
                error.code.0
            ),
            Self::Store(_) => "the connection store is unavailable".to_owned(),
            Self::Capped(_) | Self::Denied(_) => self.to_string(),
            Self::Exchange(ExchangeError::Refused { error }) => format!(
                "the authorization server refused to exchange the caller's token for this \
                 upstream ({error})"
            ),
            Self::Exchange(ExchangeError::Unreachable(_)) => {
                "the authorization server cannot be reached to exchange the caller's token"
                    .to_owned()
            }
            Self::Exchange(_) => {
                "the authorization server gave no usable token for this upstream".to_owned()
            }
        }
    }
}

/// Which addresses upstreams may have: a tenant must not turn the gateway
/// against the network it runs in (server-side request forgery).
///
/// The rule is enforced in three places, so that no spelling of an address
/// and no path to a socket escapes it:
///
/// 1. [`Reach::check_url`] reads the URL with the parser the HTTP client
///    uses (`reqwest::Url`, the WHATWG URL standard), so `2130706433`,
///    `127.1`, `0x7f.0.0.1`, `0177.0.0.1` or `127.0.0.1.` are seen as the
///    `127.0.0.1` the client would connect to. It runs when a connection is
///    registered and again before every new upstream client (so a
///    connection stored earlier, under other settings, is refused too):
///    address literals are refused before any socket is opened.
/// 2. The client's resolver ([`PublicOnly`]) keeps only public addresses,
///    so a host name that resolves (or later re-resolves: DNS rebinding) to
///    a private address is refused before connecting.
/// 3. A connector layer ([`PeerCheck`]) checks the address of every socket
///    the client opened, literal and resolved hosts alike, and drops it
///    before a request byte is written. The connector cannot check
///    earlier: reqwest hands its layers the destination in a sealed type,
///    so the final address is only known once connected. It is the
///    backstop for any path that would skip 1 and 2.
///
/// Redirects are never followed and proxies from the environment are never
/// used (either could lead anywhere).
#[derive(Clone, Copy, Debug)]
pub struct Reach {
    /// Whether loopback, private, link-local and other non-public
    /// addresses are allowed (`MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS`).
    pub allow_private: bool,
}

impl Reach {
    /// Refuses a URL whose host is a non-public address (in any spelling
    /// the HTTP client accepts) or `localhost`; host names are checked
    /// again when resolved, and every socket once connected.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL".to_owned())?;
        let refused = match parsed.host() {
            None => true,
            Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name.is_empty() || name == "localhost" || name.ends_with(".localhost")
            }
        };
        if refused {
            let host = parsed.host_str().unwrap_or_default();
            return Err(format!(
                "{host} is not a public address; upstreams on private networks need \
                 MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS=true"
            ));
        }
        Ok(())
    }

    /// The HTTP client upstream calls go through: no redirects (a redirect
    /// could lead anywhere), no proxy from the environment, and — unless
    /// private addresses are allowed — host names resolved to public
    /// addresses only and every socket's peer checked once connected.
    ///
    /// # Errors
    ///
    /// The client cannot be built (its TLS setup failed).
    pub fn http_client(&self) -> Result<reqwest::Client, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if !self.allow_private {
            builder = builder
                .dns_resolver(PublicOnly)
                .connector_layer(PeerCheckLayer);
        }
        builder
            .build()
            .map_err(|e| UpstreamError::Failed(e.to_string()))
    }
}

/// Whether `ip` is a public unicast address: not in any special-purpose
/// block of the IANA IPv4 and IPv6 registries that is not globally
/// reachable, and not a translation or tunnel prefix (NAT64, 6to4, Teredo,
/// IPv4-compatible) that could carry a private IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(a == 0 // "this network"
                || a == 10 // private
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || a == 127 // loopback
                || (a == 169 && b == 254) // link local
                || (a == 172 && (16..32).contains(&b)) // private
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 192 && b == 0 && c == 2) // documentation
                || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
                || (a == 192 && b == 168) // private
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || (a == 198 && b == 51 && c == 100) // documentation
                || (a == 203 && b == 0 && c == 113) // documentation
                || a >= 224) // multicast, reserved, broadcast
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(s[..6] == [0; 6] // unspecified, loopback, IPv4-compatible
                || (s[0] == 0x0064 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1)) // NAT64
                || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard only
                || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0] == 0x2002 // 6to4
                || (s[0] == 0x3fff && s[1] < 0x1000) // documentation (3fff::/20)
                || s[0] == 0x5f00 // segment routing
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] & 0xff00) == 0xff00) // multicast
        }
    }
}

/// A resolver that keeps only public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| is_public(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Adds [`PeerCheck`] to the HTTP client's connector.
#[derive(Clone, Copy, Debug)]
struct PeerCheckLayer;

impl<S> tower::Layer<S> for PeerCheckLayer {
    type Service = PeerCheck<S>;

    fn layer(&self, inner: S) -> PeerCheck<S> {
        PeerCheck { inner }
    }
}

/// A connector that refuses every connection whose peer is not a public
/// address (or whose peer is unknown), before anything is sent on it.
#[derive(Clone, Debug)]
struct PeerCheck<S> {
    inner: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, R> tower::Service<R> for PeerCheck<S>
where
    S: tower::Service<R>,
    S::Response: hyper_util::client::legacy::connect::Connection + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send + 'static>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let connecting = self.inner.call(request);
        Box::pin(async move {
            let connection = connecting.await.map_err(Into::into)?;
            let mut extras = http::Extensions::new();
            hyper_util::client::legacy::connect::Connection::connected(&connection)
                .get_extras(&mut extras);
            let peer = extras
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .map(|info| info.remote_addr().ip());
            match peer {
                Some(ip) if is_public(ip) => Ok(connection),
                Some(ip) => Err(format!("{ip} is not a public address").into()),
                None => Err("the upstream's address is unknown".into()),
            }
        })
    }
}

/// Each connection's last tool list, and when it was fetched.
type ToolCache = HashMap<String, (tokio::time::Instant, Arc<Vec<Tool>>)>;

/// How a listed tool differs from the connection's approved tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Offered under a name that has no approved definition.
    Added,
    /// Offered with another definition than the approved one.
    Changed,
}

/// A tool as its upstream last listed it: the definition calls are checked
/// against, its digest, and why it is held back, if it is.
struct Listed {
    definition: Value,
    digest: ToolDigest,
    /// What the tool screen found in it (screened unless it is approved).
    finding: Option<Finding>,
    /// How it differs from its approved definition.
    change: Option<Change>,
}

impl Listed {
    /// Whether it waits for an operator: flagged by the screen, or not the
    /// approved definition.
    fn held(&self) -> bool {
        self.finding.is_some() || self.change.is_some()
    }

    /// Why it is held, for the caller (a tool error) and the operator.
    fn reason(&self) -> Option<String> {
        match (&self.finding, self.change) {
            (Some(finding), _) => Some(finding.to_string()),
            (None, Some(Change::Changed)) => {
                Some("its definition changed since it was approved".to_owned())
            }
            (None, Some(Change::Added)) => {
                Some("it appeared after the connection's tools were approved".to_owned())
            }
            (None, None) => None,
        }
    }

    /// The kind of finding, as audit events and metrics name it.
    fn kind(&self) -> &'static str {
        match (&self.finding, self.change) {
            (Some(_), _) => "flagged",
            (None, Some(Change::Changed)) => "changed",
            (None, Some(Change::Added)) => "added",
            (None, None) => "approved",
        }
    }
}

/// A connection's last listing: its tools by name, and the approved
/// definitions of the tools that changed or are gone.
#[derive(Default)]
struct Listing {
    tools: HashMap<String, Listed>,
    pinned: HashMap<String, Pin>,
}

impl Listing {
    /// Pinned tools the upstream no longer offers.
    fn removed(&self) -> impl Iterator<Item = &Pin> {
        self.pinned
            .values()
            .filter(|pin| !self.tools.contains_key(&pin.tool))
    }
}

/// Each connection's last listing.
type Listings = HashMap<String, Arc<Listing>>;

/// What an operator's approval of one tool did not do.
#[derive(Debug)]
pub enum ApproveError {
    /// The upstream does not offer the tool, and it has no pin to forget.
    Unknown,
    /// The tool's definition now is not the one whose digest was approved
    /// (it changed after the operator looked).
    Stale {
        /// The digest of the definition offered now, when it is offered.
        now: Option<String>,
    },
    /// The connection already holds as many pins as it may.
    Full,
    /// Listing the upstream, or the store, failed.
    Upstream(UpstreamError),
}

/// The name metrics count tool findings under.
pub const TOOL_FINDINGS: &str = "tower_warden_gateway_tool_findings_total";

/// The largest event of an upstream's answer stream (as rmcp caps a JSON
/// answer).
pub const MAX_ANSWER_EVENT_BYTES: usize = 16 << 20;
/// The most bytes of one upstream answer stream.
pub const MAX_ANSWER_STREAM_BYTES: u64 = 64 << 20;
/// The most events of one upstream answer stream (progress and log
/// notifications included).
pub const MAX_ANSWER_EVENTS: u64 = 10_000;

/// How many distinct tool schemas stay compiled.
const COMPILED_SCHEMAS: usize = 4096;

/// The running clients of every connection, their breakers, and the tool
/// lists they last gave.
pub struct Upstreams {
    clients: Mutex<HashMap<ClientKey, Held>>,
    /// Exchanges callers' tokens for token-exchange connections.
    exchange: Option<TokenExchange>,
    breakers: CircuitBreakers,
    reach: Reach,
    /// Each connection's tool list and when it was fetched.
    tools: Mutex<ToolCache>,
    tools_ttl: Duration,
    fanout: usize,
    /// Each connection's tools as last listed.
    listings: Mutex<Listings>,
    /// Their compiled input and output schemas.
    schemas: SchemaCache,
    /// Screens every listed tool for hidden characters and phrases.
    screen: ToolScreen,
    /// Whether a flagged or changed tool is quarantined (hidden, its calls
    /// refused) or only logged.
    quarantine: bool,
    /// Where each connection's approved tools are kept.
    store: ConnectionStore,
    /// The caps on every upstream answer stream (its duration: the
    /// connection's timeout).
    caps: ResponseLimitLayer,
    /// Rules on tool annotations, checked before every call.
    annotations: Arc<AnnotationPolicy>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    /// Upstreams whose breakers are built by `breakers`, reachable as
    /// `reach` allows, their approved tools kept in `store`.
    /// Tool lists are not cached and `tools/list` asks 8 upstreams at a
    /// time until [`Upstreams::tools_cache_ttl`] and [`Upstreams::fanout`]
    /// say otherwise.
    pub fn new(breakers: CircuitBreakers, reach: Reach, store: ConnectionStore) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            exchange: None,
            breakers,
            reach,
            tools: Mutex::new(HashMap::new()),
            tools_ttl: Duration::ZERO,
            fanout: 8,
            listings: Mutex::new(HashMap::new()),
            schemas: SchemaCache::new(COMPILED_SCHEMAS),
            screen: ToolScreen::new(),
            quarantine: true,
            store,
            caps: ResponseLimitLayer::new()
                .max_event_bytes(MAX_ANSWER_EVENT_BYTES)
                .max_stream_bytes(MAX_ANSWER_STREAM_BYTES)
                .max_events(MAX_ANSWER_EVENTS),
            annotations: Arc::default(),
        }
    }

    /// Reuses an upstream's tool list for `ttl` (`MCP_GATEWAY_TOOLS_CACHE_TTL`;
    /// zero: every listing asks the upstream).
    #[must_use]
    pub fn tools_cache_ttl(mut self, ttl: Duration) -> Self {
        self.tools_ttl = ttl;
        self
    }

    /// Screens listed tools with `screen`; a flagged tool, and a tool that
    /// differs from its approved definition, is quarantined (hidden from
    /// listings, its calls answered with a tool error) when `quarantine` is
    /// set (`MCP_GATEWAY_TOOL_SCREEN=quarantine`, the default), only logged
    /// otherwise.
    #[must_use]
    pub fn tool_screen(mut self, screen: ToolScreen, quarantine: bool) -> Self {
        self.screen = screen;
        self.quarantine = quarantine;
        self
    }

    /// Checks every call against `annotations` (`MCP_TOOL_ANNOTATION_SCOPES`,
    /// `MCP_TOOL_ANNOTATIONS_OFF`), reading the tool's annotations as last
    /// listed (pinned, so an upstream cannot claim a milder hint unseen).
    #[must_use]
    pub fn annotations(mut self, annotations: Arc<AnnotationPolicy>) -> Self {
        self.annotations = annotations;
        self
    }

    /// Why `caller` may not see or call `tool` (a definition as listed) by
    /// the rules on annotations, if it may not.
    pub fn annotation_refusal(&self, caller: Option<&Principal>, tool: &Tool) -> Option<String> {
        if self.annotations.is_empty() {
            return None;
        }
        let annotations = tool
            .annotations
            .as_ref()
            .and_then(|a| serde_json::to_value(a).ok());
        self.annotations.refusal(caller, annotations.as_ref())
    }

    /// Exchanges callers' tokens with `exchange` (`MCP_TOKEN_EXCHANGE_*`)
    /// for the connections that ask for it; without one, such connections
    /// are refused at registration and their calls fail.
    #[must_use]
    pub fn token_exchange(mut self, exchange: Option<TokenExchange>) -> Self {
        self.exchange = exchange;
        self
    }

    /// Whether connections may exchange callers' tokens.
    pub fn exchanges_tokens(&self) -> bool {
        self.exchange.is_some()
    }

    /// Lists at most `n` upstreams at once for one `tools/list`
    /// (`MCP_GATEWAY_FANOUT`, at least 1).
    #[must_use]
    pub fn fanout(mut self, n: usize) -> Self {
        self.fanout = n.max(1);
        self
    }

    /// How many upstreams one `tools/list` asks at once.
    pub fn fanout_limit(&self) -> usize {
        self.fanout
    }

    /// Which addresses upstreams may have.
    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// The tools of `connection`'s upstream (every page): the list fetched
    /// within the cache's lifetime, else a fresh one (kept when it came).
    pub async fn list_tools(
        &self,
        connection: &Connection,
        on: OnBehalf<'_>,
    ) -> Result<Vec<Tool>, UpstreamError> {
        self.reach
            .check_url(&connection.url)
            .map_err(UpstreamError::Forbidden)?;
        let now = tokio::time::Instant::now();
        if let Some((at, tools)) = self.cached().get(&connection.id)
            && now.duration_since(*at) < self.tools_ttl
        {
            return Ok(tools.as_ref().clone());
        }
        let (tools, listing) = self.fetch(connection, on).await?;
        let tools: Vec<Tool> = if self.quarantine {
            tools
                .into_iter()
                .filter(|tool| {
                    listing
                        .tools
                        .get(tool.name.as_ref())
                        .is_some_and(|listed| !listed.held())
                })
                .collect()
        } else {
            tools
        };
        if !self.tools_ttl.is_zero() {
            let mut cached = self.cached();
            cached.retain(|_, (at, _)| now.duration_since(*at) < self.tools_ttl);
            cached.insert(connection.id.clone(), (now, Arc::new(tools.clone())));
        }
        Ok(tools)
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, ToolCache> {
        self.tools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh listing of `connection`'s upstream, reviewed against its
    /// approved tools ([`Upstreams::review`]) and kept as what calls are
    /// checked against.
    async fn fetch(
        &self,
        connection: &Connection,
        on: OnBehalf<'_>,
    ) -> Result<(Vec<Tool>, Arc<Listing>), UpstreamError> {
        let tools = self
            .guarded(connection, on, |client| async move {
                client.list_all_tools().await
            })
            .await?;
        let listing = Arc::new(self.review(connection, &tools).await?);
        let before = self
            .listings()
            .insert(connection.id.clone(), Arc::clone(&listing));
        self.report(connection, before.as_deref(), &listing);
        Ok((tools, listing))
    }

    /// Compares a listing with the connection's approved tools. The first
    /// listing of a connection approves every tool the screen passes (trust
    /// on first use); after that, a tool offered under a new name
    /// ([`Change::Added`]) or with another definition ([`Change::Changed`])
    /// waits for an operator, and so does any unapproved tool the screen
    /// flags. Approved tools are not screened again.
    async fn review(
        &self,
        connection: &Connection,
        tools: &[Tool],
    ) -> Result<Listing, UpstreamError> {
        let definitions: Vec<Value> = tools
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(|e| UpstreamError::Failed(e.to_string()))?;
        // Two definitions under one name: which one a client would call is
        // anyone's guess; the listing is refused whole.
        let now =
            ToolPins::from_tools(&definitions).map_err(|e| UpstreamError::Failed(e.to_string()))?;
        let pins = match self.store.pins(&connection.id).await {
            Ok(Some(pins)) => pins,
            Ok(None) => {
                let first: Vec<Pin> = definitions
                    .iter()
                    .filter(|definition| self.screen.screen(definition).is_ok())
                    .filter_map(|definition| pin_of(definition, &now))
                    .collect();
                // Another instance may have pinned first: read back what won.
                self.store
                    .pin_first(&connection.id, &first)
                    .await
                    .map_err(UpstreamError::Store)?;
                self.store
                    .pins(&connection.id)
                    .await
                    .map_err(UpstreamError::Store)?
                    .unwrap_or_default()
            }
            Err(error) => return Err(UpstreamError::Store(error)),
        };
        let approved = ToolPins::from_digests(
            pins.iter()
                .filter_map(|pin| Some((pin.tool.clone(), ToolDigest::from_hex(&pin.digest)?))),
        );
        let changes = approved.diff(&now);
        let change = |name: &String| {
            if changes.added.binary_search(name).is_ok() {
                Some(Change::Added)
            } else if changes.changed.binary_search(name).is_ok() {
                Some(Change::Changed)
            } else {
                None
            }
        };
        let mut listing = Listing::default();
        for definition in definitions {
            let Some((name, digest)) = definition
                .get("name")
                .and_then(Value::as_str)
                .and_then(|name| Some((name.to_owned(), *now.get(name)?)))
            else {
                continue;
            };
            let change = change(&name);
            let finding = if change.is_some() {
                self.screen.screen(&definition).err()
            } else {
                None
            };
            listing.tools.insert(
                name,
                Listed {
                    definition,
                    digest,
                    finding,
                    change,
                },
            );
        }
        listing.pinned = pins
            .into_iter()
            .filter(|pin| {
                changes.changed.binary_search(&pin.tool).is_ok()
                    || changes.removed.binary_search(&pin.tool).is_ok()
            })
            .map(|pin| (pin.tool.clone(), pin))
            .collect();
        Ok(listing)
    }

    /// One audit event and one count per finding that `listing` shows and
    /// the listing `before` it did not: a tool that is held (flagged,
    /// added, changed) or gone. Bounded: a tool held listing after listing
    /// is reported once, until it changes again.
    fn report(&self, connection: &Connection, before: Option<&Listing>, listing: &Listing) {
        let action = if self.quarantine {
            "quarantined"
        } else {
            "logged"
        };
        for (tool, listed) in &listing.tools {
            if !listed.held() {
                continue;
            }
            let known = before.and_then(|b| b.tools.get(tool)).is_some_and(|b| {
                b.held() && b.digest == listed.digest && b.kind() == listed.kind()
            });
            if known {
                continue;
            }
            let kind = listed.kind();
            tracing::warn!(
                target: tower_warden::audit::TARGET,
                event = "tool_finding",
                kind,
                action,
                namespace = %connection.namespace,
                connection = %connection.id,
                server = %connection.server_name,
                tool = %tool,
                digest = %listed.digest.to_hex(),
                reason = listed.reason().unwrap_or_default(),
                "gateway: an upstream tool waits for an operator's review"
            );
            metrics::counter!(TOOL_FINDINGS, "kind" => kind, "action" => action).increment(1);
        }
        for pin in listing.removed() {
            let known = before.is_some_and(|b| {
                b.pinned.contains_key(&pin.tool) && !b.tools.contains_key(&pin.tool)
            });
            if known {
                continue;
            }
            tracing::warn!(
                target: tower_warden::audit::TARGET,
                event = "tool_finding",
                kind = "removed",
                action = "logged",
                namespace = %connection.namespace,
                connection = %connection.id,
                server = %connection.server_name,
                tool = %pin.tool,
                "gateway: an approved upstream tool is no longer offered"
            );
            metrics::counter!(TOOL_FINDINGS, "kind" => "removed", "action" => "logged")
                .increment(1);
        }
    }

    /// What differs between the tools `connection`'s upstream offers now
    /// (a fresh listing) and its approved tools: one entry per tool that
    /// waits for an operator, with both definitions and their digests.
    pub async fn changes(
        &self,
        connection: &Connection,
        on: OnBehalf<'_>,
    ) -> Result<Vec<Value>, UpstreamError> {
        self.reach
            .check_url(&connection.url)
            .map_err(UpstreamError::Forbidden)?;
        let (_, listing) = self.fetch(connection, on).await?;
        let pinned = |tool: &str| listing.pinned.get(tool);
        let parse =
            |pin: &Pin| serde_json::from_str::<Value>(&pin.definition).unwrap_or(Value::Null);
        let mut changes: Vec<Value> = listing
            .tools
            .iter()
            .filter(|(_, listed)| listed.held())
            .map(|(tool, listed)| {
                serde_json::json!({
                    "tool": tool,
                    "kind": listed.kind(),
                    "reason": listed.reason(),
                    "digest": listed.digest.to_hex(),
                    "definition": listed.definition,
                    "approved_digest": pinned(tool).map(|pin| pin.digest.clone()),
                    "approved_definition": pinned(tool).map(parse),
                })
            })
            .chain(listing.removed().map(|pin| {
                serde_json::json!({
                    "tool": pin.tool,
                    "kind": "removed",
                    "reason": "the upstream no longer offers it",
                    "digest": null,
                    "definition": null,
                    "approved_digest": pin.digest,
                    "approved_definition": parse(pin),
                })
            }))
            .collect();
        changes.sort_by(|a, b| a["tool"].as_str().cmp(&b["tool"].as_str()));
        Ok(changes)
    }

    /// Approves `tool` of `connection` as a fresh listing shows it, if its
    /// digest there is `digest` (what the operator reviewed): it is pinned,
    /// and offered and callable again. `digest: None` approves the removal
    /// of a tool the upstream no longer offers (its pin is forgotten: if it
    /// comes back, it is new). The next listing or call reads the approval
    /// (on every instance sharing the store, at its next listing).
    pub async fn approve(
        &self,
        connection: &Connection,
        tool: &str,
        digest: Option<&str>,
        on: OnBehalf<'_>,
    ) -> Result<(), ApproveError> {
        self.reach
            .check_url(&connection.url)
            .map_err(|why| ApproveError::Upstream(UpstreamError::Forbidden(why)))?;
        let (_, listing) = self
            .fetch(connection, on)
            .await
            .map_err(ApproveError::Upstream)?;
        let offered = listing.tools.get(tool);
        let approved = match (offered, digest) {
            (Some(listed), Some(digest)) if listed.digest.to_hex() == digest => {
                let pin = pin_of(
                    &listed.definition,
                    &ToolPins::from_digests([(tool.to_owned(), listed.digest)]),
                )
                .ok_or(ApproveError::Unknown)?;
                self.store.approve(&connection.id, Ok(&pin)).await
            }
            (Some(listed), _) => {
                return Err(ApproveError::Stale {
                    now: Some(listed.digest.to_hex()),
                });
            }
            (None, None) if listing.pinned.contains_key(tool) => {
                self.store.approve(&connection.id, Err(tool)).await
            }
            (None, Some(_)) if listing.pinned.contains_key(tool) => {
                return Err(ApproveError::Stale { now: None });
            }
            (None, _) => return Err(ApproveError::Unknown),
        };
        match approved {
            Ok(true) => {}
            Ok(false) => return Err(ApproveError::Full),
            Err(error) => return Err(ApproveError::Upstream(UpstreamError::Store(error))),
        }
        // Calls and listings read the approval from a fresh listing.
        self.listings().remove(&connection.id);
        self.cached().remove(&connection.id);
        Ok(())
    }

    fn listings(&self) -> std::sync::MutexGuard<'_, Listings> {
        self.listings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `connection`'s last listing, when it holds `tool`.
    fn listing_with(&self, connection: &Connection, tool: &str) -> Option<Arc<Listing>> {
        self.listings()
            .get(&connection.id)
            .filter(|listing| listing.tools.contains_key(tool))
            .cloned()
    }

    /// Calls `tool` on `connection`'s upstream, through the schema
    /// firewall: arguments its listed `inputSchema` does not allow are
    /// answered with a tool error and never sent, and a result that does
    /// not match its `outputSchema` is replaced by one. A tool this
    /// process has not seen listed is listed first (once), so its schema
    /// is known before any call reaches the upstream.
    pub async fn call_tool(
        &self,
        connection: &Connection,
        tool: &str,
        arguments: Option<JsonObject>,
        on: OnBehalf<'_>,
    ) -> Result<CallToolResult, UpstreamError> {
        let caller = on.principal;
        let listing = match self.listing_with(connection, tool) {
            Some(listing) => Some(listing),
            None => {
                self.list_tools(connection, on).await?;
                self.listing_with(connection, tool)
            }
        };
        let listed = listing.as_ref().and_then(|listing| listing.tools.get(tool));
        if self.quarantine
            && let Some(reason) = listed.and_then(Listed::reason)
        {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "Tool {tool} is quarantined by the gateway ({reason}) until an operator reviews it"
            ))]));
        }
        // A tool not listed has no annotations: MCP's defaults (destructive,
        // open-world) apply.
        if let Some(refusal) = self.annotations.refusal(
            caller,
            listed.and_then(|listed| listed.definition.get("annotations")),
        ) {
            return Err(UpstreamError::Denied(refusal));
        }
        let given = arguments.map(Value::Object);
        if let Some(listed) = listed
            && let Err(refusal) = self
                .schemas
                .check_arguments(&listed.definition, given.as_ref())
        {
            tracing::debug!(connection = %connection.id, tool, %refusal, "gateway: arguments refused by the tool's schema");
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                refusal.text(tool),
            )]));
        }
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Some(Value::Object(arguments)) = given {
            params = params.with_arguments(arguments);
        }
        // The upstream continues this trace: `_meta.traceparent` (SEP-414),
        // which the transport also sends as the `traceparent` header.
        let span = tracing::info_span!(
            "upstream call",
            otel.name = format!("tools/call {}", otel::bounded(tool)),
            otel.kind = "client",
            mcp.method.name = "tools/call",
            gen_ai.tool.name = otel::bounded(tool),
            gateway.connection = %connection.id,
        );
        if let Some(context) = otel::TraceContext::of(&span) {
            params.set_traceparent(&context.traceparent);
            if let Some(state) = &context.tracestate {
                params.set_tracestate(state);
            }
        }
        let result = self
            .guarded(connection, on, |client| async move {
                client.call_tool(params).await
            })
            .instrument(span)
            .await?;
        if let Some(listed) = listed.filter(|l| l.definition.get("outputSchema").is_some()) {
            let answered = serde_json::to_value(&result).unwrap_or(Value::Null);
            if let Err(refusal) = self.schemas.check_result(&listed.definition, &answered) {
                tracing::debug!(connection = %connection.id, tool, %refusal, "gateway: a result refused by the tool's output schema");
                return Ok(CallToolResult::error(vec![ContentBlock::text(
                    refusal.text(tool),
                )]));
            }
        }
        Ok(result)
    }

    /// Closes `id`'s clients and drops its breaker (the connection is
    /// gone).
    pub fn forget(&self, id: &str) {
        let mut gone = Vec::new();
        self.lock().retain(|key, held| {
            let keep = key.connection != id;
            if !keep {
                gone.push(Arc::clone(&held.client));
            }
            keep
        });
        self.cached().remove(id);
        self.listings().remove(id);
        self.breakers.remove(id);
        for client in gone {
            close(client);
        }
    }

    /// Every breaker and its state, for `/health`.
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        self.breakers.states()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Held>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client a call on `connection` for `on` uses: the connection's
    /// own, or — when it exchanges tokens — the caller's (one MCP session
    /// per caller, so an upstream that ties sessions to users sees each
    /// user in its own). A caller without an access token to exchange (an
    /// API key, no credential) is refused.
    fn client_key(
        &self,
        connection: &Connection,
        on: OnBehalf<'_>,
    ) -> Result<ClientKey, UpstreamError> {
        let caller = match connection.upstream_auth {
            UpstreamAuth::Credential => None,
            UpstreamAuth::TokenExchange => match (on.principal, on.token) {
                (Some(principal), Some(_)) => Some(principal.subject().to_owned()),
                _ => {
                    return Err(UpstreamError::Denied(
                        "this upstream is called with a token exchanged for the caller's \
                         access token, and the caller has none (API keys cannot be exchanged)"
                            .to_owned(),
                    ));
                }
            },
        };
        Ok(ClientKey {
            connection: connection.id.clone(),
            caller,
        })
    }

    /// Runs `call` on `connection`'s client for `on`, through its breaker
    /// and within its timeout (exchanging the caller's token and
    /// connecting first if needed). A transport failure, a timeout, or a
    /// token endpoint that cannot be reached counts against the breaker (a
    /// transport failure or a timeout also drops the client, so the next
    /// call connects afresh); an exchange the authorization server refused
    /// counts neither way.
    async fn guarded<T, F, Fut>(
        &self,
        connection: &Connection,
        on: OnBehalf<'_>,
        call: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        // Checked at every call, not only at registration: the settings
        // may have changed since the connection was stored.
        self.reach
            .check_url(&connection.url)
            .map_err(UpstreamError::Forbidden)?;
        if connection.credential_unreadable {
            tracing::warn!(
                connection = %connection.id,
                "the stored upstream credential does not decrypt with MCP_GATEWAY_CREDENTIAL_KEY"
            );
            return Err(UpstreamError::Forbidden(
                "its stored credential cannot be read; register the connection again".to_owned(),
            ));
        }
        let key = self.client_key(connection, on)?;
        let breaker = self.breakers.get_or_insert(&connection.id);
        let permit = breaker.try_acquire().map_err(|open| UpstreamError::Open {
            retry_after: open.retry_after(),
        })?;
        let timeout = Duration::from_millis(connection.timeout_ms);
        let outcome = tokio::time::timeout(timeout, async {
            let token = match (&key.caller, on.token) {
                (Some(_), Some(token)) => Some(self.exchanged(connection, token).await?),
                _ => None,
            };
            let client = self.client(connection, &key, token.as_deref()).await?;
            call(client).await.map_err(|error| match error {
                // The error event that ends a capped answer.
                ServiceError::McpError(data)
                    if let Some(limit) = ResponseLimitExceeded::from_message(&data.message) =>
                {
                    UpstreamError::Capped(limit)
                }
                ServiceError::McpError(data) => UpstreamError::Refused(data),
                other => UpstreamError::Failed(other.to_string()),
            })
        })
        .await
        .unwrap_or(Err(UpstreamError::Timeout));
        if let Err(error) = &outcome {
            // The only place the upstream's own text goes: the log.
            tracing::warn!(connection = %connection.id, %error, "upstream call failed");
        }
        match &outcome {
            Ok(_) | Err(UpstreamError::Refused(_)) => permit.success(),
            // The upstream was not called: no verdict on it.
            Err(UpstreamError::Exchange(error)) if !error.is_unreachable() => drop(permit),
            Err(UpstreamError::Exchange(_)) => permit.failure(),
            Err(_) => {
                permit.failure();
                if let Some(held) = self.lock().remove(&key) {
                    close(held.client);
                }
            }
        }
        outcome
    }

    /// A token for `connection`'s upstream (its URL as the resource) in
    /// exchange for the caller's `token`.
    async fn exchanged(
        &self,
        connection: &Connection,
        token: &AccessToken,
    ) -> Result<Arc<str>, UpstreamError> {
        let Some(exchange) = &self.exchange else {
            return Err(UpstreamError::Forbidden(
                "it exchanges tokens, and this gateway has no MCP_TOKEN_EXCHANGE_URL".to_owned(),
            ));
        };
        exchange
            .exchange(token.as_str(), &ExchangeTarget::resource(&connection.url))
            .await
            .map(|exchanged| Arc::from(exchanged.as_str()))
            .map_err(UpstreamError::Exchange)
    }

    /// The running client of `key`, else a new one; `token` (an exchanged
    /// token) is what a caller's client sends from now on.
    async fn client(
        &self,
        connection: &Connection,
        key: &ClientKey,
        token: Option<&str>,
    ) -> Result<Arc<Client>, UpstreamError> {
        if let Some(held) = self.lock().get(key) {
            if let (Some(cell), Some(token)) = (&held.token, token) {
                cell.set(token);
            }
            return Ok(Arc::clone(&held.client));
        }
        // Marks the call as the gateway's own: a gateway receiving it (this
        // one, registered as its own upstream, or another in a loop) offers
        // only its built-in tools, so tool listings cannot recurse.
        let hop = HashMap::from([(
            http::HeaderName::from_static(GATEWAY_HOP),
            http::HeaderValue::from_static("1"),
        )]);
        let mut config = StreamableHttpClientTransportConfig::with_uri(connection.url.clone())
            .custom_headers(hop);
        if let (UpstreamAuth::Credential, Some(credential)) =
            (connection.upstream_auth, &connection.credential)
        {
            config = config.auth_header(credential.clone());
        }
        let caps = self
            .caps
            .clone()
            .max_duration(Duration::from_millis(connection.timeout_ms));
        let cell = token.map(|token| Arc::new(TokenCell::new(token)));
        let transport = StreamableHttpClientTransport::with_client(
            Capped::new(self.reach.http_client()?, caps).with_token(cell.clone()),
            config,
        );
        // The session's task lives as long as the client: under a span of
        // its own, not the span of the call that opened it (which would
        // then never end).
        let session = tracing::info_span!(
            parent: None,
            "upstream session",
            gateway.connection = %connection.id,
        );
        let client = ClientConfig::default()
            .serve(transport)
            .instrument(session)
            .await
            .map_err(|e| UpstreamError::Failed(e.to_string()))?;
        let client = Arc::new(client);
        let (kept, evicted) = {
            let mut clients = self.lock();
            let evicted = if key.caller.is_some()
                && !clients.contains_key(key)
                && clients.keys().filter(|k| k.caller.is_some()).count() >= MAX_CALLER_CLIENTS
            {
                let victim = clients.keys().find(|k| k.caller.is_some()).cloned();
                victim.and_then(|victim| clients.remove(&victim))
            } else {
                None
            };
            let held = clients.entry(key.clone()).or_insert_with(|| Held {
                client: Arc::clone(&client),
                token: cell,
            });
            // Another call connected first: its client, with this token.
            if let (Some(cell), Some(token)) = (&held.token, token) {
                cell.set(token);
            }
            (Arc::clone(&held.client), evicted)
        };
        if let Some(evicted) = evicted {
            close(evicted.client);
        }
        if !Arc::ptr_eq(&kept, &client) {
            close(client);
        }
        Ok(kept)
    }
}

/// The pin of the tool `definition`, whose digest `pins` holds.
fn pin_of(definition: &Value, pins: &ToolPins) -> Option<Pin> {
    let tool = definition.get("name")?.as_str()?;
    Some(Pin {
        tool: tool.to_owned(),
        digest: pins.get(tool)?.to_hex(),
        definition: definition.to_string(),
    })
}

/// Ends a client's session in the background (when no call holds it).
fn close(client: Arc<Client>) {
    if let Ok(client) = Arc::try_unwrap(client) {
        tokio::spawn(async move {
            let _ = client.cancel().await;
        });
    }
}

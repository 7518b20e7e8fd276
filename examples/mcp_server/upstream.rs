//! Upstream MCP servers, reached with rmcp's Streamable HTTP client: one
//! client per connection, each call through the connection's own circuit
//! breaker and timeout.
//!
//! The caller's credential is never passed on (MCP forbids token
//! passthrough): a connection may carry its own upstream credential, sent
//! as `Authorization: Bearer …`, and nothing else from the caller's request
//! reaches the upstream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, JsonObject, Tool};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use tower_warden::circuit_breaker::{BreakerState, CircuitBreakers};

use super::store::Connection;

type Client = RunningService<RoleClient, ClientConfig>;

use super::tools::GATEWAY_HOP;

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
        }
    }
}

/// Which addresses upstreams may have: a tenant must not turn the gateway
/// against the network it runs in (server-side request forgery).
#[derive(Clone, Copy, Debug)]
pub struct Reach {
    /// Whether loopback, private, link-local and other non-public
    /// addresses are allowed (`MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS`).
    pub allow_private: bool,
}

impl Reach {
    /// Refuses a URL whose host is a non-public address literal or
    /// `localhost` (host names are checked again when resolved).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        let host = uri.host().unwrap_or_default();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let refused = match literal.parse::<IpAddr>() {
            Ok(ip) => !is_public(ip),
            Err(_) => {
                let name = host.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if refused {
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
    /// addresses only.
    fn http_client(&self) -> Result<reqwest::Client, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if !self.allow_private {
            builder = builder.dns_resolver(PublicOnly);
        }
        builder
            .build()
            .map_err(|e| UpstreamError::Failed(e.to_string()))
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
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

/// The running clients of every connection, and their breakers.
pub struct Upstreams {
    clients: Mutex<HashMap<String, Arc<Client>>>,
    breakers: CircuitBreakers,
    reach: Reach,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    /// Upstreams whose breakers are built by `breakers`, reachable as
    /// `reach` allows.
    pub fn new(breakers: CircuitBreakers, reach: Reach) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            breakers,
            reach,
        }
    }

    /// Which addresses upstreams may have.
    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// The tools of `connection`'s upstream (every page).
    pub async fn list_tools(&self, connection: &Connection) -> Result<Vec<Tool>, UpstreamError> {
        self.guarded(
            connection,
            |client| async move { client.list_all_tools().await },
        )
        .await
    }

    /// Calls `tool` on `connection`'s upstream.
    pub async fn call_tool(
        &self,
        connection: &Connection,
        tool: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, UpstreamError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        self.guarded(connection, |client| async move {
            client.call_tool(params).await
        })
        .await
    }

    /// Closes `id`'s client and drops its breaker (the connection is gone).
    pub fn forget(&self, id: &str) {
        let client = self.lock().remove(id);
        self.breakers.remove(id);
        if let Some(client) = client {
            close(client);
        }
    }

    /// Every breaker and its state, for `/health`.
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        self.breakers.states()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Client>>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` on `connection`'s client, through its breaker and
    /// within its timeout (connecting first if needed). A transport
    /// failure or a timeout counts against the breaker and drops the
    /// client, so the next call connects afresh.
    async fn guarded<T, F, Fut>(&self, connection: &Connection, call: F) -> Result<T, UpstreamError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let breaker = self.breakers.get_or_insert(&connection.id);
        let permit = breaker.try_acquire().map_err(|open| UpstreamError::Open {
            retry_after: open.retry_after(),
        })?;
        let timeout = Duration::from_millis(connection.timeout_ms);
        let outcome = tokio::time::timeout(timeout, async {
            let client = self.client(connection).await?;
            call(client).await.map_err(|error| match error {
                ServiceError::McpError(data) => UpstreamError::Refused(data),
                other => UpstreamError::Failed(other.to_string()),
            })
        })
        .await
        .unwrap_or(Err(UpstreamError::Timeout));
        match &outcome {
            Ok(_) | Err(UpstreamError::Refused(_)) => permit.success(),
            Err(_) => {
                permit.failure();
                if let Some(client) = self.lock().remove(&connection.id) {
                    close(client);
                }
            }
        }
        outcome
    }

    async fn client(&self, connection: &Connection) -> Result<Arc<Client>, UpstreamError> {
        if let Some(client) = self.lock().get(&connection.id) {
            return Ok(Arc::clone(client));
        }
        self.reach
            .check_url(&connection.url)
            .map_err(UpstreamError::Failed)?;
        // Marks the call as the gateway's own: a gateway receiving it (this
        // one, registered as its own upstream, or another in a loop) offers
        // only its built-in tools, so tool listings cannot recurse.
        let hop = HashMap::from([(
            http::HeaderName::from_static(GATEWAY_HOP),
            http::HeaderValue::from_static("1"),
        )]);
        let mut config = StreamableHttpClientTransportConfig::with_uri(connection.url.clone())
            .custom_headers(hop);
        if let Some(credential) = &connection.credential {
            config = config.auth_header(credential.clone());
        }
        let transport =
            StreamableHttpClientTransport::with_client(self.reach.http_client()?, config);
        let client = ClientConfig::default()
            .serve(transport)
            .await
            .map_err(|e| UpstreamError::Failed(e.to_string()))?;
        let client = Arc::new(client);
        let kept = Arc::clone(
            self.lock()
                .entry(connection.id.clone())
                .or_insert_with(|| Arc::clone(&client)),
        );
        if !Arc::ptr_eq(&kept, &client) {
            close(client);
        }
        Ok(kept)
    }
}

/// Ends a client's session in the background (when no call holds it).
fn close(client: Arc<Client>) {
    if let Ok(client) = Arc::try_unwrap(client) {
        tokio::spawn(async move {
            let _ = client.cancel().await;
        });
    }
}

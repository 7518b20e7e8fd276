//! What a limit is counted per: [`KeyBy`].

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::Request;
use http::header::HeaderName;

use super::store::RateKey;
use crate::client_ip::ClientIp;
use crate::principal::{AuthMethod, McpCall, Principal};
use crate::reject::RequestHead;

type KeyFn = dyn Fn(&RequestHead<'_>) -> Option<RateKey> + Send + Sync;

/// How a request's [`RateKey`] is found.
///
/// A request whose key cannot be found (a per-principal limit, but no
/// [`Principal`]; a per-tool limit, but not a `tools/call`) **passes
/// through** uncounted: refusing unauthenticated callers is the job of the
/// auth layer in front, and a per-IP limit before it bounds them. Text keys
/// carry a prefix per kind (`sub:`, `key:`, `ns:`, `tool:`, `hdr:<name>:`), so
/// two kinds never share a quota in one store.
#[derive(Clone)]
#[non_exhaustive]
pub enum KeyBy {
    /// One quota for everyone.
    Global,
    /// The client address ([`ClientIp::of`]); IPv6 addresses are grouped by
    /// their first `v6_prefix` bits (a /64 is one customer line).
    ClientIp {
        /// Prefix length IPv6 addresses are cut to (0–128).
        v6_prefix: u8,
    },
    /// The [`Principal`]'s subject.
    Subject,
    /// The API key id of a principal that authenticated with an API key.
    ApiKeyId,
    /// The principal's namespace.
    Namespace,
    /// The tool of an MCP `tools/call` ([`McpCall::tool`]).
    Tool,
    /// A request header's value.
    Header(HeaderName),
    /// Your own rule.
    Custom(Arc<KeyFn>),
}

impl KeyBy {
    /// The client address, IPv6 grouped by /64.
    #[must_use]
    pub fn client_ip() -> Self {
        Self::ClientIp { v6_prefix: 64 }
    }

    /// The client address, IPv6 grouped by `/v6_prefix` (clamped to 128).
    #[must_use]
    pub fn client_ip_v6_prefix(v6_prefix: u8) -> Self {
        Self::ClientIp {
            v6_prefix: v6_prefix.min(128),
        }
    }

    /// A request header's value.
    #[must_use]
    pub fn header(name: HeaderName) -> Self {
        Self::Header(name)
    }

    /// Your own rule over the request head; `None` lets the request pass.
    #[must_use]
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<RateKey> + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(f))
    }

    /// The key of `request`, if it has one.
    #[must_use]
    pub fn extract<B>(&self, request: &Request<B>) -> Option<RateKey> {
        let extensions = request.extensions();
        let principal = || extensions.get::<Principal>();
        match self {
            Self::Global => Some(RateKey::Global),
            Self::ClientIp { v6_prefix } => {
                ClientIp::of(extensions).map(|ip| RateKey::Ip(group(ip, *v6_prefix)))
            }
            Self::Subject => principal().map(|p| text("sub:", p.subject())),
            Self::ApiKeyId => principal()
                .filter(|p| p.method() == AuthMethod::ApiKey)
                .and_then(Principal::key_id)
                .map(|id| text("key:", id)),
            Self::Namespace => principal()
                .and_then(Principal::namespace)
                .map(|ns| text("ns:", ns)),
            Self::Tool => extensions
                .get::<McpCall>()
                .and_then(McpCall::tool)
                .map(|tool| text("tool:", tool)),
            Self::Header(name) => request.headers().get(name).map(|value| {
                let value = String::from_utf8_lossy(value.as_bytes());
                RateKey::Text(format!("hdr:{}:{value}", name.as_str()).into())
            }),
            Self::Custom(f) => f(&RequestHead::of(request)),
        }
    }
}

fn text(prefix: &str, value: &str) -> RateKey {
    let mut s = String::with_capacity(prefix.len() + value.len());
    s.push_str(prefix);
    s.push_str(value);
    RateKey::Text(s.into())
}

/// IPv4 as is; IPv6 cut to its first `prefix` bits.
fn group(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = match prefix {
                0 => 0,
                p if p >= 128 => u128::MAX,
                p => u128::MAX << (128 - u32::from(p)),
            };
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("Global"),
            Self::ClientIp { v6_prefix } => f
                .debug_struct("ClientIp")
                .field("v6_prefix", v6_prefix)
                .finish(),
            Self::Subject => f.write_str("Subject"),
            Self::ApiKeyId => f.write_str("ApiKeyId"),
            Self::Namespace => f.write_str("Namespace"),
            Self::Tool => f.write_str("Tool"),
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

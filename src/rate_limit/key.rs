//! What a limit is counted per: [`KeyBy`].

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::Request;
use http::header::HeaderName;

use super::DEFAULT_IPV6_PREFIX;
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
/// carry a prefix per kind (`sub:`, `anon:`, `key:`, `ns:`, `tool:`, `hdr:<name>:`), so
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
    /// The [`Principal`]'s subject. Anonymous principals (authentication
    /// switched off) share no subject worth counting, so each client
    /// address gets its own allowance, IPv6 grouped by its first
    /// `anonymous_v6_prefix` bits; one client's burst never answers
    /// everyone else 429. Built by [`KeyBy::subject`] (/64) or
    /// [`KeyBy::subject_v6_prefix`]: give it the prefix of the per-IP
    /// limit, so that both count a client the same way.
    Subject {
        /// Prefix length anonymous callers' IPv6 addresses are cut to
        /// (0–128).
        anonymous_v6_prefix: u8,
    },
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
        Self::ClientIp {
            v6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// The client address, IPv6 grouped by `/v6_prefix` (clamped to 128).
    #[must_use]
    pub fn client_ip_v6_prefix(v6_prefix: u8) -> Self {
        Self::ClientIp {
            v6_prefix: v6_prefix.min(128),
        }
    }

    /// The principal's subject; anonymous callers by client address, IPv6
    /// grouped by /64.
    #[must_use]
    pub fn subject() -> Self {
        Self::Subject {
            anonymous_v6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// The principal's subject; anonymous callers by client address, IPv6
    /// grouped by `/anonymous_v6_prefix` (clamped to 128) — the
    /// `v6_prefix` of the per-IP limit in front, so that an anonymous
    /// client's two allowances cover the same addresses.
    #[must_use]
    pub fn subject_v6_prefix(anonymous_v6_prefix: u8) -> Self {
        Self::Subject {
            anonymous_v6_prefix: anonymous_v6_prefix.min(128),
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
            Self::Subject {
                anonymous_v6_prefix,
            } => principal().map(|p| match p.method() {
                AuthMethod::Anonymous => match ClientIp::of(extensions) {
                    Some(ip) => text("anon:", &group(ip, *anonymous_v6_prefix).to_string()),
                    None => text("anon:", "-"),
                },
                _ => RateKey::Text(p.subject_key()),
            }),
            Self::ApiKeyId => principal()
                .filter(|p| p.method() == AuthMethod::ApiKey)
                .and_then(Principal::key_id_key)
                .map(RateKey::Text),
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
            Self::Subject {
                anonymous_v6_prefix,
            } => f
                .debug_struct("Subject")
                .field("anonymous_v6_prefix", anonymous_v6_prefix)
                .finish(),
            Self::ApiKeyId => f.write_str("ApiKeyId"),
            Self::Namespace => f.write_str("Namespace"),
            Self::Tool => f.write_str("Tool"),
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::StatusCode;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::rate_limit::{Quota, RateLimitLayer};

    fn anonymous_from(addr: &str) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(Principal::anonymous());
        request
            .extensions_mut()
            .insert(addr.parse::<SocketAddr>().unwrap());
        request
    }

    #[test]
    fn anonymous_principals_are_keyed_by_client_address() {
        let key = |addr| KeyBy::subject().extract(&anonymous_from(addr));
        assert_eq!(key("192.0.2.1:1"), key("192.0.2.1:2"));
        assert_ne!(key("192.0.2.1:1"), key("192.0.2.2:1"));
        assert_eq!(key("[2001:db8::1]:1"), key("[2001:db8::2]:1"));
        assert_ne!(key("[2001:db8::1]:1"), key("[2001:db8:0:1::1]:1"));
        // Never the bucket of a real subject called `anonymous`.
        let mut named = Request::new(());
        named
            .extensions_mut()
            .insert(Principal::builder("anonymous", AuthMethod::Jwt).build());
        assert_ne!(KeyBy::subject().extract(&named), key("192.0.2.1:1"));
    }

    #[test]
    fn anonymous_ipv6_callers_are_grouped_by_the_prefix_given() {
        // Before: always /64, whatever the per-IP limit's prefix.
        let key = |prefix, addr| KeyBy::subject_v6_prefix(prefix).extract(&anonymous_from(addr));
        // /96: one bucket for 2001:db8::1:0:0/96, another for the next
        // /96 of the same /64.
        assert_eq!(
            key(96, "[2001:db8::1:0:1]:1"),
            key(96, "[2001:db8::1:0:2]:1")
        );
        assert_ne!(
            key(96, "[2001:db8::1:0:1]:1"),
            key(96, "[2001:db8::2:0:1]:1")
        );
        // /48: two /64s of one /48 share a bucket.
        assert_eq!(
            key(48, "[2001:db8:1:1::1]:1"),
            key(48, "[2001:db8:1:2::1]:1")
        );
        assert_ne!(key(48, "[2001:db8:1::1]:1"), key(48, "[2001:db8:2::1]:1"));
        // The same key the per-IP limit groups by, as text; IPv4 whole.
        assert_eq!(
            key(48, "[2001:db8:1:2::1]:1"),
            Some(RateKey::Text("anon:2001:db8:1::".into()))
        );
        assert_eq!(key(48, "192.0.2.1:1"), key(128, "192.0.2.1:2"));
        // Clamped like `client_ip_v6_prefix`; `subject()` is /64.
        assert_eq!(key(200, "[2001:db8::1]:1"), key(128, "[2001:db8::1]:1"));
        assert_eq!(
            KeyBy::subject().extract(&anonymous_from("[2001:db8::1:0:1]:1")),
            key(64, "[2001:db8::2:0:1]:1")
        );
        assert_eq!(
            format!("{:?}", KeyBy::subject_v6_prefix(56)),
            "Subject { anonymous_v6_prefix: 56 }"
        );
    }

    #[tokio::test]
    async fn one_anonymous_client_exhausting_its_quota_leaves_others_alone() {
        let limit = RateLimitLayer::memory(Quota::per_minute(2).unwrap(), KeyBy::subject());
        let service = ServiceBuilder::new()
            .layer(limit)
            .service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            });
        let status = |addr| {
            let service = service.clone();
            async move {
                let response = service.oneshot(anonymous_from(addr)).await.unwrap();
                response.status()
            }
        };
        assert_eq!(status("192.0.2.1:1000").await, StatusCode::OK);
        assert_eq!(status("192.0.2.1:1001").await, StatusCode::OK);
        assert_eq!(
            status("192.0.2.1:1002").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status("192.0.2.2:1000").await, StatusCode::OK);
    }
}

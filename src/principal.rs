//! Who is calling, and what the call is: the facts that authentication and
//! the MCP peek leave in the request extensions for the layers and handlers
//! after them.
//!
//! * [`Principal`] — the authenticated caller: subject, namespace, roles,
//!   scopes, how it authenticated and when its credential expires. Put there
//!   by [`AuthLayer`](crate::auth::AuthLayer); read it in a handler with
//!   `request.extensions().get::<Principal>()` (or, with feature `axum`, as
//!   an extractor).
//! * [`McpCall`] — the JSON-RPC method of an MCP request and, for
//!   `tools/call`, the tool's name.
//!
//! These types live here rather than in the layers so that layers never
//! depend on each other: a per-tool rate limit reads [`McpCall`] without
//! knowing which layer produced it.
//!
//! # Scopes
//!
//! A granted scope matches a required scope when they are equal, when the
//! granted scope is `*`, or when the granted scope ends in `:*` and the
//! required scope starts with what comes before the `*` (`tools:*` grants
//! `tools:echo` and `tools:admin:reset`). No other `*` is a wildcard:
//! `tools*` grants only the scope literally named `tools*`, never `tools`
//! or `toolshed`. Required scopes are plain strings: a `*` in a
//! requirement has no special meaning.
//!
//! ```
//! use tower_warden::principal::{AuthMethod, Principal};
//!
//! let alice = Principal::builder("alice", AuthMethod::Jwt)
//!     .namespace("acme")
//!     .scopes(["tools:*", "resources:read"])
//!     .roles(["reader"])
//!     .build();
//! assert!(alice.has_scope("tools:echo"));
//! assert!(!alice.has_scope("resources:write"));
//! assert!(alice.has_role("reader"));
//! assert_eq!(alice.namespace(), Some("acme"));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a [`Principal`] authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A verified JSON Web Token (`Authorization: Bearer`).
    Jwt,
    /// An API key (`X-API-Key`, or a bearer value that is not a JWT).
    ApiKey,
    /// No credential: authentication is switched off (development only).
    Anonymous,
    /// An opaque access token the authorization server vouched for
    /// (RFC 7662 introspection).
    Introspected,
}

impl AuthMethod {
    /// A short lowercase name: `jwt`, `api_key`, `anonymous`,
    /// `introspected`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Anonymous => "anonymous",
            Self::Introspected => "introspected",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of a request.
///
/// Cloning is cheap (one reference count): the token cache hands the same
/// principal to every request that presents the same token.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal(Arc<Inner>);

#[derive(PartialEq, Eq)]
struct Inner {
    subject: Box<str>,
    namespace: Option<Box<str>>,
    roles: Box<[Box<str>]>,
    scopes: Box<[Box<str>]>,
    method: AuthMethod,
    key_id: Option<Box<str>>,
    expires_at: Option<u64>,
    /// `sub:<subject>`, the rate-limit key of this principal, made once.
    subject_key: Memo,
    /// `key:<key id>`, the rate-limit key of its API key, made once.
    key_id_key: Memo,
}

/// A text derived from the other fields of a principal, made on first use
/// and shared by every clone (a principal from the token cache is cloned
/// for each request that presents the token); it never takes part in
/// equality.
#[derive(Default)]
struct Memo(std::sync::OnceLock<Arc<str>>);

impl Memo {
    fn get(&self, prefix: &str, value: &str) -> Arc<str> {
        Arc::clone(self.0.get_or_init(|| {
            let mut text = String::with_capacity(prefix.len() + value.len());
            text.push_str(prefix);
            text.push_str(value);
            text.into()
        }))
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Memo {}

impl Principal {
    /// `sub:<subject>`: the key [`KeyBy::Subject`](crate::rate_limit::KeyBy)
    /// counts this principal under, made once per principal.
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) fn subject_key(&self) -> Arc<str> {
        self.0.subject_key.get("sub:", &self.0.subject)
    }

    /// `key:<key id>`: the key [`KeyBy::ApiKeyId`](crate::rate_limit::KeyBy)
    /// counts this principal's API key under.
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) fn key_id_key(&self) -> Option<Arc<str>> {
        let id = self.0.key_id.as_deref()?;
        Some(self.0.key_id_key.get("key:", id))
    }

    /// Starts a principal for `subject` (a JWT's `sub`, an API key's id).
    pub fn builder(subject: impl Into<String>, method: AuthMethod) -> PrincipalBuilder {
        PrincipalBuilder {
            subject: subject.into(),
            namespace: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            method,
            key_id: None,
            expires_at: None,
        }
    }

    /// The principal that [`AuthMethod::Anonymous`] requests get when
    /// authentication is switched off: subject `anonymous`, no namespace,
    /// every scope (`*`).
    #[must_use]
    pub fn anonymous() -> Self {
        Self::builder("anonymous", AuthMethod::Anonymous)
            .scopes(["*"])
            .build()
    }

    /// The subject: a JWT's `sub` claim, or an API key's id.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The tenant this principal belongs to, when its credential names one.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.0.namespace.as_deref()
    }

    /// The roles granted (a JWT's `roles` claim, an API key's roles).
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.roles.iter().map(|r| &**r)
    }

    /// The scopes granted, as written (wildcards included).
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.scopes.iter().map(|s| &**s)
    }

    /// How the principal authenticated.
    #[must_use]
    pub fn method(&self) -> AuthMethod {
        self.0.method
    }

    /// The id of the key that vouched for this principal: the JWT signing
    /// key's `kid`, or the API key's id. Safe to log; never the secret.
    #[must_use]
    pub fn key_id(&self) -> Option<&str> {
        self.0.key_id.as_deref()
    }

    /// When the credential stops being valid (a JWT's `exp`), if it does.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0
            .expires_at
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// [`expires_at`](Self::expires_at) in seconds since the Unix epoch.
    #[must_use]
    pub fn expires_at_unix(&self) -> Option<u64> {
        self.0.expires_at
    }

    /// Whether the role was granted (exact match).
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles.iter().any(|r| &**r == role)
    }

    /// Whether some granted scope covers `required` (see the
    /// [module docs](self) for the wildcard rule).
    #[must_use]
    pub fn has_scope(&self, required: &str) -> bool {
        self.0.scopes.iter().any(|g| scope_covers(g, required))
    }

    /// Whether every scope in `required` is covered.
    #[must_use]
    pub fn has_scopes<'a>(&self, required: impl IntoIterator<Item = &'a str>) -> bool {
        required.into_iter().all(|r| self.has_scope(r))
    }

    /// Whether this principal is the caller `earlier` was, granted at least
    /// as much: the same subject and namespace, every role of `earlier`,
    /// and every scope of `earlier` covered (by the same scope or a
    /// wildcard). A credential checked again later (a long-lived session
    /// after a reload) must still cover what it was admitted with.
    #[must_use]
    pub fn covers(&self, earlier: &Principal) -> bool {
        self.subject() == earlier.subject()
            && self.namespace() == earlier.namespace()
            && earlier.roles().all(|role| self.has_role(role))
            && earlier.scopes().all(|scope| self.has_scope(scope))
    }

    /// The scopes in `required` that are not covered, in order.
    pub fn missing_scopes<'a, I>(&self, required: I) -> Vec<&'a str>
    where
        I: IntoIterator<Item = &'a str>,
    {
        required
            .into_iter()
            .filter(|r| !self.has_scope(r))
            .collect()
    }
}

/// Whether the granted scope `granted` covers the required scope `required`.
#[must_use]
pub fn scope_covers(granted: &str, required: &str) -> bool {
    if granted == "*" {
        return true;
    }
    // Only `prefix:*` is a wildcard: the prefix keeps its `:`, so `tools:*`
    // covers `tools:call` but not `toolshed`. Any other `*` is literal.
    match granted.strip_suffix('*').filter(|p| p.ends_with(':')) {
        Some(prefix) => required.starts_with(prefix),
        None => granted == required,
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject())
            .field("namespace", &self.namespace())
            .field("roles", &self.0.roles)
            .field("scopes", &self.0.scopes)
            .field("method", &self.method())
            .field("key_id", &self.key_id())
            .field("expires_at", &self.0.expires_at)
            .finish()
    }
}

/// Builds a [`Principal`]; see [`Principal::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct PrincipalBuilder {
    subject: String,
    namespace: Option<String>,
    roles: Vec<String>,
    scopes: Vec<String>,
    method: AuthMethod,
    key_id: Option<String>,
    expires_at: Option<u64>,
}

impl PrincipalBuilder {
    /// The tenant.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the namespace, or clears it with `None`.
    pub fn maybe_namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace;
        self
    }

    /// Adds roles.
    pub fn roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds scopes (wildcards allowed, see [`scope_covers`]).
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The id of the key that vouched for the principal.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// When the credential expires, in seconds since the Unix epoch.
    pub fn expires_at_unix(mut self, secs: u64) -> Self {
        self.expires_at = Some(secs);
        self
    }

    /// Finishes the principal. Duplicate roles and scopes are dropped.
    #[must_use]
    pub fn build(self) -> Principal {
        fn dedup(mut v: Vec<String>) -> Box<[Box<str>]> {
            let mut seen = std::collections::HashSet::with_capacity(v.len());
            v.retain(|s| seen.insert(s.clone()));
            v.into_iter().map(String::into_boxed_str).collect()
        }
        Principal(Arc::new(Inner {
            subject: self.subject.into_boxed_str(),
            namespace: self.namespace.map(String::into_boxed_str),
            roles: dedup(self.roles),
            scopes: dedup(self.scopes),
            method: self.method,
            key_id: self.key_id.map(String::into_boxed_str),
            expires_at: self.expires_at,
            subject_key: Memo::default(),
            key_id_key: Memo::default(),
        }))
    }
}

/// The tool a JSON-RPC message calls: the `params.name` of a `tools/call`.
pub(crate) fn called_tool(message: &serde_json::Value) -> Option<&str> {
    if message.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    message.get("params")?.get("name")?.as_str()
}

/// The JSON-RPC call an MCP request carries, as peeked from its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpCall {
    method: Box<str>,
    tool: Option<Box<str>>,
    id: Option<Box<str>>,
}

impl McpCall {
    /// A call of `method`; `tool` is the `params.name` of a `tools/call`.
    #[must_use]
    pub fn new(method: impl Into<String>, tool: Option<String>) -> Self {
        Self {
            method: method.into().into_boxed_str(),
            tool: tool.map(String::into_boxed_str),
            id: None,
        }
    }

    /// The call a JSON-RPC message makes: its `method`, the `params.name`
    /// of a `tools/call`, and its `id` when that is a string or a number.
    /// `None` for a message without a string `method` (a response).
    #[must_use]
    pub fn of_message(message: &serde_json::Value) -> Option<Self> {
        let method = message.get("method")?.as_str()?;
        let call = Self::new(method, called_tool(message).map(str::to_owned));
        Some(
            match message
                .get("id")
                .filter(|id| id.is_string() || id.is_number())
            {
                Some(id) => call.with_id(id.to_string()),
                None => call,
            },
        )
    }

    /// The same call with the JSON-RPC `id` of its request, as JSON text
    /// (`7`, `"a-1"`), so that an answer made in its place (an error cut
    /// into a response stream) can name the request it answers.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into().into_boxed_str());
        self
    }

    /// The JSON-RPC `id` of the request, as JSON text; `None` for a
    /// notification or when it is not known.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The JSON-RPC method (`initialize`, `tools/call`, ...).
    #[must_use]
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The tool name of a `tools/call`.
    #[must_use]
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }
}

/// The longest namespace name.
pub(crate) const MAX_NAMESPACE_LEN: usize = 64;

/// Whether `name` is a valid namespace name: 1 to 64 of `a-z 0-9 _ -`,
/// starting with a letter or digit. (Public as `namespace::is_valid`.)
pub(crate) fn is_valid_namespace(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAMESPACE_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_prefixes_only() {
        assert!(scope_covers("*", "anything"));
        assert!(scope_covers("tools:*", "tools:echo"));
        assert!(scope_covers("tools:*", "tools:"));
        assert!(!scope_covers("tools:*", "tools"));
        assert!(!scope_covers("tools:*", "resources:read"));
        assert!(scope_covers("tools:echo", "tools:echo"));
        assert!(!scope_covers("tools:echo", "tools:echo2"));
        assert!(!scope_covers("tools:echo", "tools:*"));
        // Only `*` and `prefix:*` are wildcards.
        assert!(scope_covers("*", "tools:call"));
        assert!(scope_covers("tools:*", "tools:call"));
        assert!(!scope_covers("tools*", "tools:call"));
        assert!(!scope_covers("tools*", "toolshed"));
        assert!(!scope_covers("tools*", "tools"));
        assert!(scope_covers("tools*", "tools*"));
        assert!(!scope_covers("t*", "tools:call"));
        assert!(!scope_covers("**", "tools:call"));
    }

    #[test]
    fn covers_means_the_same_caller_with_at_least_the_same_grants() {
        let p = |sub: &str, ns: Option<&str>, roles: &[&str], scopes: &[&str]| {
            Principal::builder(sub, AuthMethod::ApiKey)
                .maybe_namespace(ns.map(str::to_owned))
                .roles(roles.iter().copied())
                .scopes(scopes.iter().copied())
                .build()
        };
        let was = p("bot", Some("acme"), &["reader"], &["tools:*", "files:read"]);
        assert!(was.covers(&was));
        // Wider: more scopes, a covering wildcard, another role.
        assert!(p("bot", Some("acme"), &["reader", "x"], &["*"]).covers(&was));
        // Narrower, or someone else.
        let narrower = p(
            "bot",
            Some("acme"),
            &["reader"],
            &["tools:echo", "files:read"],
        );
        assert!(!narrower.covers(&was));
        assert!(!p("bot", Some("acme"), &[], &["*"]).covers(&was));
        assert!(!p("bot", Some("other"), &["reader"], &["*"]).covers(&was));
        assert!(!p("bot", None, &["reader"], &["*"]).covers(&was));
        assert!(!p("bot2", Some("acme"), &["reader"], &["*"]).covers(&was));
    }

    #[test]
    fn principal_reports_missing_scopes_in_order() {
        let p = Principal::builder("bob", AuthMethod::ApiKey)
            .scopes(["tools:echo", "tools:echo"])
            .build();
        assert_eq!(p.scopes().count(), 1);
        assert_eq!(
            p.missing_scopes(["tools:add", "tools:echo", "admin"]),
            ["tools:add", "admin"]
        );
        assert!(p.has_scopes(["tools:echo"]));
        assert!(!p.has_role("admin"));
        assert_eq!(p.namespace(), None);
    }

    #[test]
    fn anonymous_has_every_scope() {
        let p = Principal::anonymous();
        assert_eq!(p.method(), AuthMethod::Anonymous);
        assert!(p.has_scope("tools:anything"));
    }
}

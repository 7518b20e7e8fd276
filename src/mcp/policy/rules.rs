//! [`ToolPolicy`]: which scopes each MCP tool needs, and the 403 a call
//! beyond them gets.

use std::fmt::Write as _;
use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;

use crate::challenge;
use crate::error::ConfigError;
use crate::principal::Principal;
use crate::reject::{Reason, Rejection};
use crate::tool_rules::{ANY_TOOL, ToolRules, is_scope_token, parse_tool_scopes};

/// The environment variable [`ToolPolicy::try_from_json`] reads its
/// configuration from; configuration errors name it.
const ENV_VAR: &str = "MCP_TOOL_SCOPES";

/// The most characters of a (caller-chosen) tool name repeated in a
/// rejection detail or an audit event.
pub(super) const MAX_TOOL_NAME_CHARS: usize = 64;

type Scopes = Box<[Box<str>]>;

/// Tool rule → scopes, matched by the one tool-rule matcher
/// ([`ToolRules`]) that `MCP_TOOL_RATE_LIMITS` uses too.
type Rules = ToolRules<Scopes>;

/// Which scopes a caller needs to call each MCP tool.
///
/// A listed tool needs every scope listed for it. A tool that is not listed
/// needs the [`default_scopes`](Self::default_scopes) — none unless set, so
/// that unlisted tools are open to every caller that got past
/// authentication. Listing a tool with no scopes opens it even when a
/// default is set.
///
/// A tool is listed under its exact name, or as `*.<tool>`: `<tool>` behind
/// any server name (`<server_name>.<tool>`, as the gateway names an
/// upstream's tools), so that renaming a connection cannot escape the rule.
/// The exact name wins over `*.<tool>`, which wins over the default `*`;
/// see [`ToolRules`], the matcher `MCP_TOOL_RATE_LIMITS` uses too.
///
/// Scopes are checked with [`Principal::has_scope`], so granted wildcards
/// count: `*` grants everything, `tools:*` grants `tools:echo`.
///
/// Clones are cheap and share the rules.
///
/// ```
/// use tower_warden::mcp::ToolPolicy;
/// use tower_warden::principal::{AuthMethod, Principal};
///
/// let policy = ToolPolicy::new()
///     .require("echo", ["tools:echo"])
///     .require("add", ["tools:add", "math"]);
/// let caller = Principal::builder("alice", AuthMethod::Jwt)
///     .scopes(["tools:echo", "tools:add"])
///     .build();
/// assert!(policy.allows(&caller, "echo"));
/// assert_eq!(policy.missing(&caller, "add"), ["math"]);
/// assert!(policy.allows(&caller, "not-listed"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ToolPolicy(Arc<Inner>);

/// The rules, and what a refusal's challenge names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Inner {
    rules: Rules,
    /// The protected-resource metadata URL (RFC 9728) a 403 names.
    resource_metadata: Option<Box<str>>,
}

fn boxed_scopes<I, T>(scopes: I) -> Scopes
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    let mut out: Vec<Box<str>> = Vec::new();
    for scope in scopes {
        let scope = scope.into().into_boxed_str();
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    out.into_boxed_slice()
}

impl ToolPolicy {
    /// A policy that lists no tool: every tool is open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires every scope in `scopes` to call `tool` (replacing what was
    /// required of it before). No scopes at all opens the tool, whatever the
    /// default. `tool` is a [`ToolRules`] key: a name, `*.<name>` (that
    /// name on any server), or `*` (the [default](Self::default_scopes)).
    pub fn require<I, T>(mut self, tool: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.0)
            .rules
            .insert(tool, boxed_scopes(scopes));
        self
    }

    /// Requires every scope in `scopes` to call a tool that is not listed
    /// with [`require`](Self::require).
    pub fn default_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.0)
            .rules
            .insert(ANY_TOOL, boxed_scopes(scopes));
        self
    }

    /// Reads the policy from the value of `MCP_TOOL_SCOPES`: a JSON object
    /// from tool name to the scopes it requires, each an array of strings or
    /// one space-separated string. The key `"*"` sets the
    /// [`default_scopes`](Self::default_scopes), and a key `*.<tool>` is
    /// `<tool>` on any gateway connection (`<server_name>.<tool>`); see
    /// [`ToolRules`].
    ///
    /// ```
    /// use tower_warden::mcp::ToolPolicy;
    ///
    /// # fn main() -> Result<(), tower_warden::ConfigError> {
    /// let policy = ToolPolicy::try_from_json(
    ///     r#"{"echo": ["tools:echo"], "add": "tools:add math", "*": "tools:admin"}"#,
    /// )?;
    /// assert_eq!(policy.required_scopes("add").collect::<Vec<_>>(), ["tools:add", "math"]);
    /// assert_eq!(policy.required_scopes("reset").collect::<Vec<_>>(), ["tools:admin"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `MCP_TOOL_SCOPES` when the text is not JSON,
    /// not an object, names an empty tool, or gives a tool something other
    /// than scopes (scopes are RFC 6750 scope tokens: printable ASCII
    /// without space, `"` or `\`).
    pub fn try_from_json(text: &str) -> Result<Self, ConfigError> {
        Self::try_from_entries(parse_tool_scopes(text)?)
    }

    /// Builds the policy from `MCP_TOOL_SCOPES` entries as
    /// [`WardenConfig::tool_scopes`](crate::config::WardenConfig::tool_scopes)
    /// holds them: tool name → scopes, where the key `"*"` sets the
    /// [`default_scopes`](Self::default_scopes). [`try_from_json`](Self::try_from_json)
    /// and [`WardenLayer::from_config`](crate::stack::WardenLayer) both read
    /// the setting through it, so `"*"` means the same everywhere.
    ///
    /// ```
    /// use tower_warden::mcp::ToolPolicy;
    ///
    /// # fn main() -> Result<(), tower_warden::ConfigError> {
    /// let policy = ToolPolicy::try_from_entries([("*", ["tools:call"])])?;
    /// assert_eq!(policy.required_scopes("any-tool").collect::<Vec<_>>(), ["tools:call"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `MCP_TOOL_SCOPES` when a tool name is empty
    /// or a scope is not an RFC 6750 scope token (printable ASCII without
    /// space, `"` or `\`).
    pub fn try_from_entries<E, T, I, S>(entries: E) -> Result<Self, ConfigError>
    where
        E: IntoIterator<Item = (T, I)>,
        T: Into<String>,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut policy = Self::new();
        for (tool, scopes) in entries {
            let tool: String = tool.into();
            if tool.is_empty() {
                return Err(ConfigError::new(ENV_VAR, "a tool name is empty"));
            }
            let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
            if let Some(bad) = scopes.iter().find(|scope| !is_scope_token(scope)) {
                return Err(ConfigError::new(
                    ENV_VAR,
                    format!(
                        "`{}` is not a scope (of tool `{}`): scopes are printable ASCII without \
                         spaces, quotes or backslashes",
                        display_name(bad),
                        display_name(&tool)
                    ),
                ));
            }
            // `"*"` is the default, `*.<tool>` any server's `<tool>`.
            policy = policy.require(tool, scopes);
        }
        Ok(policy)
    }

    /// Names the protected-resource metadata URL (RFC 9728) in the
    /// challenge of every refusal, as the 401 of
    /// [`AuthLayer`](crate::auth::AuthLayer) does (MCP asks the two to
    /// agree, so a client can step up from either).
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.0).resource_metadata = Some(url.into().into_boxed_str());
        self
    }

    /// The scopes required to call `tool`, in the order configured.
    pub fn required_scopes(&self, tool: &str) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.requirement(tool).iter().map(|s| &**s)
    }

    /// The scopes required to call `tool` that `principal` was not granted,
    /// in the order configured. Empty when the call is allowed.
    #[must_use]
    pub fn missing<'a>(&'a self, principal: &Principal, tool: &str) -> Vec<&'a str> {
        self.missing_for(Some(principal), tool)
    }

    /// Whether `principal` may call `tool`.
    #[must_use]
    pub fn allows(&self, principal: &Principal, tool: &str) -> bool {
        self.allows_for(Some(principal), tool)
    }

    fn requirement(&self, tool: &str) -> &[Box<str>] {
        self.0.rules.find(tool).map_or(&[], |(_, scopes)| scopes)
    }

    /// [`missing`](Self::missing) for a caller that may be absent; an absent
    /// caller has no scopes.
    pub(super) fn missing_for<'a>(
        &'a self,
        principal: Option<&Principal>,
        tool: &str,
    ) -> Vec<&'a str> {
        self.requirement(tool)
            .iter()
            .map(|s| &**s)
            .filter(|scope| !principal.is_some_and(|p| p.has_scope(scope)))
            .collect()
    }

    /// The 403 `insufficient_scope` answer (with its `WWW-Authenticate`
    /// challenge) when `principal` may not call `tool`, as
    /// [`McpPolicyLayer`](crate::mcp::McpPolicyLayer) answers a `tools/call`; `None` when it may.
    #[cfg(feature = "stack")]
    pub(crate) fn refusal(&self, principal: Option<&Principal>, tool: &str) -> Option<Rejection> {
        let missing = self.missing_for(principal, tool);
        (!missing.is_empty()).then(|| self.insufficient_scope(&[(tool, missing)]))
    }

    pub(crate) fn allows_for(&self, principal: Option<&Principal>, tool: &str) -> bool {
        self.requirement(tool)
            .iter()
            .all(|scope| principal.is_some_and(|p| p.has_scope(scope)))
    }
}

/// A caller-chosen name made safe to repeat: at most
/// [`MAX_TOOL_NAME_CHARS`] characters, control characters replaced.
pub(super) fn display_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(MAX_TOOL_NAME_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if name.chars().nth(MAX_TOOL_NAME_CHARS).is_some() {
        out.push('…');
    }
    out
}

impl ToolPolicy {
    /// The 403 for calls of tools whose scopes the caller lacks: every
    /// scope the refused calls need in one challenge.
    pub(super) fn insufficient_scope(&self, denied: &[(&str, Vec<&str>)]) -> Rejection {
        let mut scopes: Vec<&str> = Vec::new();
        let mut detail = String::new();
        for (tool, missing) in denied {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            let _ = write!(
                detail,
                "tool `{}` requires {} the caller was not granted: {}",
                display_name(tool),
                if missing.len() == 1 {
                    "a scope"
                } else {
                    "scopes"
                },
                missing.join(" ")
            );
            for scope in missing {
                if !scopes.contains(scope) {
                    scopes.push(scope);
                }
            }
        }
        let challenge = challenge::insufficient_scope(
            &scopes,
            Some(&detail),
            self.0.resource_metadata.as_deref(),
        );
        Rejection::new(Reason::InsufficientScope)
            .with_detail(detail)
            .with_header(WWW_AUTHENTICATE, challenge)
    }
}

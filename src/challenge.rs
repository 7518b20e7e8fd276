//! `WWW-Authenticate: Bearer ...` challenges (RFC 6750 §3, RFC 9728 §5.1)
//! and `WWW-Authenticate: DPoP ...` ones (RFC 9449 §7.1): the one builder of
//! the authentication layer's 401s and of every 403 `insufficient_scope`
//! (scope requirements, tool policy).

#![cfg_attr(not(any(feature = "auth", feature = "mcp")), allow(dead_code))]

use http::HeaderValue;

/// Appends `name="value"` to a challenge, escaping `"` and `\` and dropping
/// control characters so the header stays valid whatever the value.
fn param(out: &mut String, scheme: &str, name: &str, value: &str) {
    out.push_str(if out.len() > scheme.len() { ", " } else { " " });
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || !c.is_ascii() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds one Bearer (or DPoP) challenge.
#[derive(Debug, Default)]
pub(crate) struct Challenge<'a> {
    /// A `DPoP` challenge rather than a `Bearer` one.
    pub(crate) dpop: bool,
    /// The `algs` of a DPoP challenge.
    pub(crate) algs: Option<&'a str>,
    pub(crate) realm: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    pub(crate) description: Option<&'a str>,
    pub(crate) scope: Option<&'a str>,
    pub(crate) resource_metadata: Option<&'a str>,
}

/// The challenge of a 403 for a caller that lacks `scopes` (RFC 6750 §3.1;
/// MCP: `scope` names what the refused operation needs, and
/// `resource_metadata` points at the resource's metadata as a 401 does).
/// Scopes that are not RFC 6750 scope tokens (built in code) are left out
/// of the header; the problem body still names them.
pub(crate) fn insufficient_scope(
    scopes: &[&str],
    description: Option<&str>,
    resource_metadata: Option<&str>,
) -> HeaderValue {
    let joined = scopes.join(" ");
    let tokens = scopes.iter().all(|s| crate::tool_rules::is_scope_token(s));
    Challenge {
        error: Some("insufficient_scope"),
        description,
        scope: (tokens && !scopes.is_empty()).then_some(joined.as_str()),
        resource_metadata,
        ..Challenge::default()
    }
    .to_header()
}

impl Challenge<'_> {
    pub(crate) fn to_header(&self) -> HeaderValue {
        let scheme = if self.dpop { "DPoP" } else { "Bearer" };
        let mut out = String::from(scheme);
        let params = [
            ("realm", self.realm),
            ("algs", self.algs),
            ("error", self.error),
            ("error_description", self.description),
            ("scope", self.scope),
            ("resource_metadata", self.resource_metadata),
        ];
        for (name, value) in params {
            if let Some(value) = value {
                param(&mut out, scheme, name, value);
            }
        }
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_challenge_and_full_challenge() {
        assert_eq!(Challenge::default().to_header(), "Bearer");
        let c = Challenge {
            dpop: false,
            algs: None,
            realm: Some("mcp"),
            error: Some("insufficient_scope"),
            description: Some("say \"please\"\n"),
            scope: Some("tools:add tools:echo"),
            resource_metadata: Some("https://x/.well-known/oauth-protected-resource"),
        };
        assert_eq!(
            c.to_header(),
            "Bearer realm=\"mcp\", error=\"insufficient_scope\", error_description=\"say \\\"please\\\"\", scope=\"tools:add tools:echo\", resource_metadata=\"https://x/.well-known/oauth-protected-resource\""
        );
    }

    #[test]
    fn dpop_challenge() {
        let c = Challenge {
            dpop: true,
            algs: Some("ES256 RS256"),
            error: Some("invalid_dpop_proof"),
            ..Challenge::default()
        };
        assert_eq!(
            c.to_header(),
            "DPoP algs=\"ES256 RS256\", error=\"invalid_dpop_proof\""
        );
    }
}

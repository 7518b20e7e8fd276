//! `WWW-Authenticate: Bearer ...` challenges (RFC 6750 §3, RFC 9728 §5.1).

use http::HeaderValue;

/// Appends `name="value"` to a challenge, escaping `"` and `\` and dropping
/// control characters so the header stays valid whatever the value.
fn param(out: &mut String, name: &str, value: &str) {
    out.push_str(if out.len() > "Bearer".len() {
        ", "
    } else {
        " "
    });
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

/// Builds one Bearer challenge.
#[derive(Debug, Default)]
pub(crate) struct Challenge<'a> {
    pub(crate) realm: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    pub(crate) description: Option<&'a str>,
    pub(crate) scope: Option<&'a str>,
    pub(crate) resource_metadata: Option<&'a str>,
}

impl Challenge<'_> {
    pub(crate) fn to_header(&self) -> HeaderValue {
        let mut out = String::from("Bearer");
        if let Some(realm) = self.realm {
            param(&mut out, "realm", realm);
        }
        if let Some(error) = self.error {
            param(&mut out, "error", error);
        }
        if let Some(description) = self.description {
            param(&mut out, "error_description", description);
        }
        if let Some(scope) = self.scope {
            param(&mut out, "scope", scope);
        }
        if let Some(url) = self.resource_metadata {
            param(&mut out, "resource_metadata", url);
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
}

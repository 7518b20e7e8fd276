//! Which rule of a tool-keyed setting applies to a tool: the one matcher
//! behind `MCP_TOOL_SCOPES` ([`ToolPolicy`](crate::mcp::ToolPolicy)) and
//! `MCP_TOOL_RATE_LIMITS` (per-tool
//! [`RateLimitLayer`](crate::rate_limit::RateLimitLayer)).
//!
//! A key is one of:
//!
//! | key | matches |
//! |---|---|
//! | `<tool>` | exactly that name (`echo`, or a gateway tool `github.search`) |
//! | `*.<tool>` | `<tool>` behind any first segment: `<server>.<tool>` whatever `<server>` is |
//! | `*` | every tool no other key matches |
//!
//! The exact key wins over `*.<tool>`, which wins over `*`. A gateway names
//! an upstream's tools `<server_name>.<tool>`, and a tenant chooses the
//! `server_name`: a rule on `*.<tool>` holds for that tool on every
//! connection, whatever it is called, so registering the same upstream
//! again under another name does not escape it. Quotas are counted per
//! rule (the key that matched), not per tool name, so every name a rule
//! matches draws on one allowance.
//!
//! ```
//! use tower_warden::tool_rules::ToolRules;
//!
//! let mut rules = ToolRules::new();
//! rules.insert("*", "default");
//! rules.insert("*.search", "any search");
//! rules.insert("github.search", "github's");
//! assert_eq!(rules.find("github.search"), Some(("github.search", &"github's")));
//! assert_eq!(rules.find("renamed.search"), Some(("*.search", &"any search")));
//! assert_eq!(rules.find("search"), Some(("*", &"default")));
//! ```

use std::collections::HashMap;

use crate::error::ConfigError;

/// The key that sets the rule of every tool no other key matches.
pub const ANY_TOOL: &str = "*";

/// The prefix of a key that matches a tool behind any server name.
pub const ANY_SERVER: &str = "*.";

/// Values keyed by tool rules; see the [module docs](self) for the keys and
/// their precedence. Two are equal when they hold the same rules, in
/// whatever order.
#[derive(Clone, Debug)]
pub struct ToolRules<T> {
    /// Every rule, in the order first inserted: `(key, value)`.
    entries: Vec<(Box<str>, T)>,
    /// Exact tool name → index into `entries`.
    exact: HashMap<Box<str>, usize>,
    /// `<tool>` of a `*.<tool>` key → index into `entries`.
    any_server: HashMap<Box<str>, usize>,
    /// The index of the `*` rule.
    default: Option<usize>,
}

impl<T> Default for ToolRules<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            exact: HashMap::new(),
            any_server: HashMap::new(),
            default: None,
        }
    }
}

impl<T: PartialEq> PartialEq for ToolRules<T> {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .all(|(key, value)| other.rule(key) == Some(value))
    }
}

impl<T: Eq> Eq for ToolRules<T> {}

impl<T> ToolRules<T> {
    /// The value of the rule written `key` (not the rule that matches a
    /// tool of that name: see [`find`](Self::find)).
    #[must_use]
    pub fn rule(&self, key: &str) -> Option<&T> {
        let index = if key == ANY_TOOL {
            self.default
        } else {
            match key.strip_prefix(ANY_SERVER) {
                Some(tool) if !tool.is_empty() => self.any_server.get(tool).copied(),
                _ => self.exact.get(key).copied(),
            }
        }?;
        Some(&self.entries[index].1)
    }

    /// No rules: nothing matches.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rule of `key` (replacing the value it had).
    pub fn insert(&mut self, key: impl Into<String>, value: T) {
        let key: Box<str> = key.into().into_boxed_str();
        let slot = if &*key == ANY_TOOL {
            &mut self.default
        } else {
            let (map, name) = match key.strip_prefix(ANY_SERVER) {
                Some(tool) if !tool.is_empty() => (&mut self.any_server, tool),
                _ => (&mut self.exact, &*key),
            };
            if let Some(&index) = map.get(name) {
                self.entries[index].1 = value;
                return;
            }
            map.insert(name.into(), self.entries.len());
            self.entries.push((key, value));
            return;
        };
        match *slot {
            Some(index) => self.entries[index].1 = value,
            None => {
                *slot = Some(self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// The rule that applies to `tool`: its key and value. The exact name
    /// first, then `*.<tool>` for a name `<server>.<tool>`, then `*`.
    #[must_use]
    pub fn find(&self, tool: &str) -> Option<(&str, &T)> {
        let (key, index) = self.index_of(tool)?;
        Some((key, &self.entries[index].1))
    }

    /// Every rule, in the order first inserted.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &T)> + '_ {
        self.entries.iter().map(|(key, value)| (&**key, value))
    }

    /// Whether there are no rules.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// [`find`](Self::find), as the key and the rule's place in
    /// [`iter`](Self::iter)'s order.
    pub(crate) fn index_of(&self, tool: &str) -> Option<(&str, usize)> {
        let index = *self
            .exact
            .get(tool)
            .or_else(|| {
                let (_, rest) = tool.split_once('.')?;
                self.any_server.get(rest)
            })
            .or(self.default.as_ref())?;
        Some((&self.entries[index].0, index))
    }
}

/// `MCP_TOOL_SCOPES`: `{"tool": ["scope", ...] | "scope scope", ...}`; the
/// key `"*"` is the requirement of every tool not listed. The one reader of
/// the setting: [`WardenConfig`](crate::config::WardenConfig) and
/// [`ToolPolicy::try_from_json`](crate::mcp::ToolPolicy::try_from_json)
/// both read it through this.
///
/// # Errors
///
/// A [`ConfigError`] naming `MCP_TOOL_SCOPES` when the text is not a JSON
/// object of scopes.
pub fn parse_tool_scopes(text: &str) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let bad = |m: String| ConfigError::new("MCP_TOOL_SCOPES", m);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("must be a JSON object: tool name → scopes".into()))?;
    let mut out = Vec::with_capacity(object.len());
    for (tool, scopes) in object {
        let scopes: Vec<String> = match scopes {
            serde_json::Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("the scopes of `{tool}` must be strings")))?,
            _ => {
                return Err(bad(format!(
                    "the scopes of `{tool}` must be an array of strings"
                )));
            }
        };
        out.push((tool.clone(), scopes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_any_server_beats_default() {
        let mut rules = ToolRules::new();
        rules.insert("*", 1);
        rules.insert("*.search", 2);
        rules.insert("gh.search", 3);
        assert_eq!(rules.find("gh.search"), Some(("gh.search", &3)));
        assert_eq!(rules.find("other.search"), Some(("*.search", &2)));
        assert_eq!(rules.find("x.y.search"), Some(("*", &1)));
        assert_eq!(rules.find("search"), Some(("*", &1)));
        assert_eq!(rules.find("gh.searches"), Some(("*", &1)));
    }

    #[test]
    fn any_server_matches_the_rest_after_the_first_dot() {
        let mut rules = ToolRules::new();
        rules.insert("*.a.b", "ab");
        assert_eq!(rules.find("srv.a.b"), Some(("*.a.b", &"ab")));
        assert_eq!(rules.find("a.b"), None);
        assert_eq!(rules.find("ab"), None);
    }

    #[test]
    fn a_key_set_twice_keeps_its_last_value_and_first_place() {
        let mut rules = ToolRules::new();
        rules.insert("echo", 1);
        rules.insert("*", 2);
        rules.insert("echo", 3);
        rules.insert("*", 4);
        assert_eq!(rules.iter().collect::<Vec<_>>(), [("echo", &3), ("*", &4)]);
        assert_eq!(rules.index_of("other"), Some(("*", 1)));
    }

    #[test]
    fn a_bare_any_server_prefix_is_an_exact_name() {
        let mut rules = ToolRules::new();
        rules.insert("*.", 1);
        assert_eq!(rules.find("x."), None);
        assert_eq!(rules.find("*."), Some(("*.", &1)));
    }

    #[test]
    fn equal_rules_in_any_order_are_equal() {
        let mut a = ToolRules::new();
        a.insert("*", 1);
        a.insert("*.x", 2);
        a.insert("x", 3);
        let mut b = ToolRules::new();
        b.insert("x", 3);
        b.insert("*.x", 2);
        b.insert("*", 1);
        assert_eq!(a, b);
        assert_eq!(a.rule("*.x"), Some(&2));
        assert_eq!(a.rule("y.x"), None);
        b.insert("*", 4);
        assert_ne!(a, b);
    }

    #[test]
    fn no_rules_match_nothing() {
        let rules = ToolRules::<u32>::new();
        assert!(rules.is_empty());
        assert_eq!(rules.find("echo"), None);
    }
}

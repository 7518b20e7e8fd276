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
use crate::principal::Principal;

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
    parse_word_lists("MCP_TOOL_SCOPES", text, "tool name", "scopes")
}

/// A JSON object from a key (`key`, in errors) to words (`words`): each an
/// array of strings, or one space-separated string. The reader of every
/// setting of that form (`MCP_TOOL_SCOPES`, `MCP_TOOL_ANNOTATION_SCOPES`,
/// `MCP_TOOL_ANNOTATIONS_OFF`).
pub(crate) fn parse_word_lists(
    setting: &'static str,
    text: &str,
    key: &str,
    words: &str,
) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let bad = |m: String| ConfigError::new(setting, m);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad(format!("must be a JSON object: {key} → {words}")))?;
    let mut out = Vec::with_capacity(object.len());
    for (name, list) in object {
        let list: Vec<String> = match list {
            serde_json::Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("the {words} of `{name}` must be strings")))?,
            _ => {
                return Err(bad(format!(
                    "the {words} of `{name}` must be an array of strings"
                )));
            }
        };
        out.push((name.clone(), list));
    }
    Ok(out)
}

/// Whether `scope` is an RFC 6750 `scope-token`: printable ASCII without
/// space, `"` or `\`, so that it can be quoted in `WWW-Authenticate`.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// A behaviour hint of an MCP tool (its `annotations`), as a rule of an
/// [`AnnotationPolicy`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hint {
    /// `readOnlyHint`: the tool does not modify its environment.
    ReadOnly,
    /// `destructiveHint`: the tool may destroy or overwrite.
    Destructive,
    /// `idempotentHint`: calling it again with the same arguments does
    /// nothing more.
    Idempotent,
    /// `openWorldHint`: the tool reaches beyond a closed domain (the web,
    /// other people's systems).
    OpenWorld,
}

impl Hint {
    /// Every hint.
    pub const ALL: [Self; 4] = [
        Self::ReadOnly,
        Self::Destructive,
        Self::Idempotent,
        Self::OpenWorld,
    ];

    /// Its name in a tool's `annotations`, e.g. `destructiveHint`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ReadOnly => "readOnlyHint",
            Self::Destructive => "destructiveHint",
            Self::Idempotent => "idempotentHint",
            Self::OpenWorld => "openWorldHint",
        }
    }

    /// The hint named `name` (exactly as MCP spells it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|hint| hint.name() == name)
    }

    /// Whether a tool with these `annotations` (the object, or `None`
    /// when the tool has none) is to be treated as having this hint. A
    /// hint that is missing, or not a boolean, takes MCP's default, which
    /// is the cautious reading: a tool is destructive and open-world unless
    /// it says otherwise, and read-only or idempotent only when it says so.
    /// `destructiveHint` and `idempotentHint` mean nothing for a read-only
    /// tool. Other members grant and exempt nothing.
    #[must_use]
    pub fn holds(self, annotations: Option<&serde_json::Value>) -> bool {
        let flag = |hint: Self| {
            annotations
                .and_then(|a| a.get(hint.name()))
                .and_then(serde_json::Value::as_bool)
        };
        let read_only = flag(Self::ReadOnly).unwrap_or(false);
        match self {
            Self::ReadOnly => read_only,
            Self::Destructive => !read_only && flag(self).unwrap_or(true),
            Self::Idempotent => !read_only && flag(self).unwrap_or(false),
            Self::OpenWorld => flag(self).unwrap_or(true),
        }
    }
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rules on tool annotations (`MCP_TOOL_ANNOTATION_SCOPES`,
/// `MCP_TOOL_ANNOTATIONS_OFF`): the scopes a caller needs for a tool with a
/// [`Hint`], and the namespaces in which such tools are off. They hold
/// beside the rules on names ([`ToolPolicy`](crate::mcp::ToolPolicy)): a
/// call must pass both. Where the annotations come from an upstream, pin
/// them first (an upstream can claim any hint): see
/// `mcp::tool_integrity`.
///
/// ```
/// use serde_json::json;
/// use tower_warden::principal::{AuthMethod, Principal};
/// use tower_warden::tool_rules::{AnnotationPolicy, Hint};
///
/// let policy = AnnotationPolicy::new()
///     .require(Hint::Destructive, ["tools:write"])
///     .switch_off(Hint::OpenWorld, ["kids"]);
/// let reader = Principal::builder("ana", AuthMethod::Jwt)
///     .scopes(["tools:read"])
///     .namespace("kids")
///     .build();
/// let delete = json!({"destructiveHint": true, "openWorldHint": false});
/// assert!(policy.refusal(Some(&reader), Some(&delete)).is_some());
/// // No annotations: destructive and open-world, as MCP reads them.
/// assert!(policy.refusal(Some(&reader), None).is_some());
/// let lookup = json!({"readOnlyHint": true, "openWorldHint": false});
/// assert_eq!(policy.refusal(Some(&reader), Some(&lookup)), None);
/// // Off in the namespace `kids`, whatever the scopes.
/// let browse = json!({"readOnlyHint": true});
/// assert!(policy.refusal(Some(&reader), Some(&browse)).is_some());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct AnnotationPolicy {
    /// Per hint: the scopes a caller needs.
    scopes: Vec<(Hint, Vec<Box<str>>)>,
    /// Per hint: the namespaces where its tools are off (`*`: everywhere).
    off: Vec<(Hint, Vec<Box<str>>)>,
}

impl AnnotationPolicy {
    /// No rules: annotations decide nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires every scope in `scopes` of a caller of a tool with `hint`
    /// (added to what other hints require).
    pub fn require<I, T>(mut self, hint: Hint, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let scopes = scopes.into_iter().map(|s| s.into().into_boxed_str());
        self.scopes.push((hint, scopes.collect()));
        self
    }

    /// Switches tools with `hint` off for callers in `namespaces` (`*`:
    /// every caller): hidden and refused.
    pub fn switch_off<I, T>(mut self, hint: Hint, namespaces: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let namespaces = namespaces.into_iter().map(|s| s.into().into_boxed_str());
        self.off.push((hint, namespaces.collect()));
        self
    }

    /// The policy of `MCP_TOOL_ANNOTATION_SCOPES` (`scopes`: hint name →
    /// scopes) and `MCP_TOOL_ANNOTATIONS_OFF` (`off`: hint name →
    /// namespaces, or `*`).
    ///
    /// # Errors
    ///
    /// A key that is not a hint name (`readOnlyHint`, `destructiveHint`,
    /// `idempotentHint`, `openWorldHint`), a scope that is not an RFC 6750
    /// scope token, an empty list, or a namespace that is not one.
    pub fn try_from_entries(
        scopes: &[(String, Vec<String>)],
        off: &[(String, Vec<String>)],
    ) -> Result<Self, ConfigError> {
        let hint = |setting: &'static str, name: &str| {
            Hint::from_name(name).ok_or_else(|| {
                ConfigError::new(
                    setting,
                    format!(
                        "`{name}` is not a tool hint: one of readOnlyHint, destructiveHint, \
                         idempotentHint, openWorldHint"
                    ),
                )
            })
        };
        let mut policy = Self::new();
        for (name, list) in scopes {
            let setting = "MCP_TOOL_ANNOTATION_SCOPES";
            let hint = hint(setting, name)?;
            if list.is_empty() || list.iter().any(|s| !is_scope_token(s)) {
                return Err(ConfigError::new(
                    setting,
                    format!("the scopes of `{name}` must be one or more scope tokens"),
                ));
            }
            policy = policy.require(hint, list.iter().cloned());
        }
        for (name, list) in off {
            let setting = "MCP_TOOL_ANNOTATIONS_OFF";
            let hint = hint(setting, name)?;
            let valid = |ns: &String| ns == "*" || crate::principal::is_valid_namespace(ns);
            if list.is_empty() || !list.iter().all(valid) {
                return Err(ConfigError::new(
                    setting,
                    format!("the namespaces of `{name}` must be one or more namespaces, or `*`"),
                ));
            }
            policy = policy.switch_off(hint, list.iter().cloned());
        }
        Ok(policy)
    }

    /// Whether there are no rules.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.off.is_empty()
    }

    /// Why `principal` may not see or call a tool with these `annotations`
    /// (see [`Hint::holds`]); `None` when it may. A missing principal has
    /// no scopes and no namespace.
    #[must_use]
    pub fn refusal(
        &self,
        principal: Option<&Principal>,
        annotations: Option<&serde_json::Value>,
    ) -> Option<String> {
        let namespace = principal.and_then(Principal::namespace);
        for (hint, namespaces) in &self.off {
            let here = namespaces
                .iter()
                .any(|ns| &**ns == "*" || Some(&**ns) == namespace);
            if here && hint.holds(annotations) {
                return Some(format!("tools with {hint} are off here"));
            }
        }
        for (hint, scopes) in &self.scopes {
            if !hint.holds(annotations) {
                continue;
            }
            let missing: Vec<&str> = scopes
                .iter()
                .map(|s| &**s)
                .filter(|s| !principal.is_some_and(|p| p.has_scope(s)))
                .collect();
            if !missing.is_empty() {
                return Some(format!(
                    "insufficient_scope: tools with {hint} need the scope {}",
                    missing.join(" ")
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;
    use serde_json::json;

    #[test]
    fn hints_read_missing_values_as_mcp_defaults() {
        let none = None;
        assert!(Hint::Destructive.holds(none));
        assert!(Hint::OpenWorld.holds(none));
        assert!(!Hint::ReadOnly.holds(none));
        assert!(!Hint::Idempotent.holds(none));
        let read_only =
            json!({"readOnlyHint": true, "destructiveHint": true, "idempotentHint": true});
        assert!(Hint::ReadOnly.holds(Some(&read_only)));
        assert!(
            !Hint::Destructive.holds(Some(&read_only)),
            "meaningless when read-only"
        );
        assert!(!Hint::Idempotent.holds(Some(&read_only)));
        let additive = json!({"destructiveHint": false, "openWorldHint": false});
        assert!(!Hint::Destructive.holds(Some(&additive)));
        assert!(!Hint::OpenWorld.holds(Some(&additive)));
        // Not a boolean: the default, never an exemption.
        let odd = json!({"destructiveHint": "false", "openWorldHint": 0, "safeHint": true});
        assert!(Hint::Destructive.holds(Some(&odd)));
        assert!(Hint::OpenWorld.holds(Some(&odd)));
        assert_eq!(Hint::from_name("safeHint"), None);
        assert_eq!(Hint::from_name("openWorldHint"), Some(Hint::OpenWorld));
    }

    #[test]
    fn annotation_rules_need_scopes_and_switch_tools_off_per_namespace() {
        let scopes = vec![("destructiveHint".to_owned(), vec!["tools:write".to_owned()])];
        let off = vec![("openWorldHint".to_owned(), vec!["kids".to_owned()])];
        let policy = AnnotationPolicy::try_from_entries(&scopes, &off).unwrap();
        let who = |scopes: &[&str], namespace: &str| {
            Principal::builder("p", AuthMethod::Jwt)
                .scopes(scopes.iter().copied())
                .namespace(namespace)
                .build()
        };
        let delete = json!({"destructiveHint": true, "openWorldHint": false});
        let writer = who(&["tools:write"], "acme");
        let reader = who(&["tools:read"], "acme");
        assert_eq!(policy.refusal(Some(&writer), Some(&delete)), None);
        let refused = policy.refusal(Some(&reader), Some(&delete)).unwrap();
        assert!(refused.contains("tools:write"), "{refused}");
        assert!(
            policy.refusal(None, Some(&delete)).is_some(),
            "no principal, no scopes"
        );
        // `*` granted covers it, as for tool scopes.
        assert_eq!(
            policy.refusal(Some(&who(&["*"], "acme")), Some(&delete)),
            None
        );

        let search = json!({"readOnlyHint": true});
        assert_eq!(policy.refusal(Some(&reader), Some(&search)), None);
        let kid = who(&["*"], "kids");
        assert!(
            policy
                .refusal(Some(&kid), Some(&search))
                .unwrap()
                .contains("off")
        );
        let closed = json!({"readOnlyHint": true, "openWorldHint": false});
        assert_eq!(policy.refusal(Some(&kid), Some(&closed)), None);

        let everywhere = vec![("openWorldHint".to_owned(), vec!["*".to_owned()])];
        let policy = AnnotationPolicy::try_from_entries(&[], &everywhere).unwrap();
        assert!(policy.refusal(Some(&writer), None).is_some());
    }

    #[test]
    fn bad_annotation_rules_name_their_setting() {
        let entry =
            |k: &str, v: &[&str]| vec![(k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect())];
        for (scopes, off, setting) in [
            (
                entry("safeHint", &["x"]),
                vec![],
                "MCP_TOOL_ANNOTATION_SCOPES",
            ),
            (
                entry("destructivehint", &["x"]),
                vec![],
                "MCP_TOOL_ANNOTATION_SCOPES",
            ),
            (
                entry("destructiveHint", &[]),
                vec![],
                "MCP_TOOL_ANNOTATION_SCOPES",
            ),
            (
                entry("destructiveHint", &["a\"b"]),
                vec![],
                "MCP_TOOL_ANNOTATION_SCOPES",
            ),
            (
                vec![],
                entry("openWorldHint", &[]),
                "MCP_TOOL_ANNOTATIONS_OFF",
            ),
            (
                vec![],
                entry("openWorldHint", &["Not A Namespace"]),
                "MCP_TOOL_ANNOTATIONS_OFF",
            ),
            (
                vec![],
                entry("worldHint", &["acme"]),
                "MCP_TOOL_ANNOTATIONS_OFF",
            ),
        ] {
            let error = AnnotationPolicy::try_from_entries(&scopes, &off).unwrap_err();
            assert_eq!(error.setting(), setting, "{scopes:?} {off:?}");
        }
    }

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

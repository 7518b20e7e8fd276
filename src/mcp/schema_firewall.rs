//! Schema firewall: a tool's arguments checked against its `inputSchema`
//! before the tool (or the upstream serving it) runs, and its structured
//! result against its `outputSchema` before the caller sees it.
//!
//! A model calls tools with whatever arguments it produced; a tool that
//! trusts them (a path where a name was declared, an extra member a handler
//! forwards to a shell) is the model's to misuse. The tool's own
//! `inputSchema` says what it accepts, so a gateway can refuse the rest
//! before any upstream sees it. A refusal is a tool execution error
//! (`isError: true`, as the 2025-11-25 revision asks for input validation)
//! that names the first failing path, so the model can correct its call.
//!
//! Schemas come from the servers whose tools they describe, so they are
//! untrusted too: [`SchemaCache`] compiles each distinct schema once (with
//! the maintained [`jsonschema`] crate), refuses references to anything
//! but the schema itself (no `$ref` to a URL or a file: nothing is ever
//! fetched), and caps a schema's size and nesting depth.
//!
//! ```
//! use serde_json::json;
//! use tower_warden::mcp::schema_firewall::SchemaCache;
//!
//! let cache = SchemaCache::new(1024);
//! let tool = json!({
//!     "name": "read",
//!     "inputSchema": {
//!         "type": "object",
//!         "properties": {"path": {"type": "string", "pattern": "^[a-z]+\\.txt$"}},
//!         "required": ["path"],
//!         "additionalProperties": false
//!     }
//! });
//! assert!(cache.check_arguments(&tool, Some(&json!({"path": "notes.txt"}))).is_ok());
//!
//! let refused = cache.check_arguments(&tool, Some(&json!({"path": "../../etc/passwd"}))).unwrap_err();
//! assert_eq!(refused.path(), "/path");
//! let result = refused.tool_result("read");
//! assert_eq!(result["isError"], true);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// Keys whose string value is a reference to another schema.
const REFERENCE_KEYS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// Caps on the schemas a [`SchemaCache`] compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaLimits {
    /// The largest schema, in bytes of compact JSON (default 64 KiB).
    pub max_bytes: usize,
    /// The deepest nesting of arrays and objects (default 32).
    pub max_depth: usize,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 10,
            max_depth: 32,
        }
    }
}

/// Why a tool's schema cannot be used (the tool is then refused: a tool
/// whose schema cannot be checked is not called).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema is larger than [`SchemaLimits::max_bytes`].
    TooLarge {
        /// Its size in bytes.
        bytes: usize,
    },
    /// The schema nests deeper than [`SchemaLimits::max_depth`].
    TooDeep,
    /// The schema refers to something outside itself (`$ref` to a URL, a
    /// file or another document).
    RemoteReference(String),
    /// The schema is not a valid JSON Schema.
    Invalid(String),
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes } => write!(f, "the schema is too large ({bytes} bytes)"),
            Self::TooDeep => f.write_str("the schema nests too deep"),
            Self::RemoteReference(target) => {
                write!(f, "the schema refers outside itself (`{target}`)")
            }
            Self::Invalid(why) => write!(f, "the schema is not valid: {why}"),
        }
    }
}

impl std::error::Error for SchemaError {}

/// Why a tool call or its result was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The instance does not match the schema.
    Violation {
        /// The JSON pointer of the first failing value (`""` for the whole).
        path: String,
        /// What the schema wanted, without echoing the value.
        message: String,
        /// Whether the arguments (`true`) or the result (`false`) failed.
        arguments: bool,
    },
    /// The tool's schema cannot be used.
    Schema(SchemaError),
}

impl Refusal {
    /// The JSON pointer of the first failing value; `""` when the schema
    /// itself was refused.
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            Self::Violation { path, .. } => path,
            Self::Schema(_) => "",
        }
    }

    /// The `tools/call` result that answers the call instead: a tool
    /// execution error (`isError: true`) whose text ([`text`](Self::text))
    /// names `tool`, the failing path and what was expected.
    #[must_use]
    pub fn tool_result(&self, tool: &str) -> Value {
        json!({"content": [{"type": "text", "text": self.text(tool)}], "isError": true})
    }

    /// The text of [`tool_result`](Self::tool_result), for a caller that
    /// builds the result with its own types.
    #[must_use]
    pub fn text(&self, tool: &str) -> String {
        match self {
            Self::Violation {
                path,
                message,
                arguments: true,
            } => format!(
                "Invalid arguments for tool {tool}: at {}: {message}",
                display_path(path)
            ),
            Self::Violation { path, message, .. } => format!(
                "The result of tool {tool} does not match its output schema: at {}: {message}",
                display_path(path)
            ),
            Self::Schema(error) => format!("Tool {tool} cannot be called: {error}"),
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the top level"
    } else {
        path
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Violation { path, message, .. } => {
                write!(f, "at {}: {message}", display_path(path))
            }
            Self::Schema(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for Refusal {}

/// One compiled schema.
#[derive(Clone)]
pub struct ToolSchema {
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolSchema").finish_non_exhaustive()
    }
}

impl ToolSchema {
    /// Compiles `schema` within `limits`, refusing references outside it.
    ///
    /// # Errors
    ///
    /// The schema is too large, too deep, refers outside itself, or is not
    /// a valid JSON Schema.
    pub fn compile(schema: &Value, limits: &SchemaLimits) -> Result<Self, SchemaError> {
        let bytes = serde_json::to_vec(schema).map_or(usize::MAX, |text| text.len());
        if bytes > limits.max_bytes {
            return Err(SchemaError::TooLarge { bytes });
        }
        check_tree(schema, limits.max_depth)?;
        let validator = jsonschema::options()
            .with_retriever(NothingRemote)
            .build(schema)
            .map_err(|e| SchemaError::Invalid(e.masked().to_string()))?;
        Ok(Self {
            validator: Arc::new(validator),
        })
    }

    /// Checks the `arguments` of a call against this (input) schema;
    /// absent arguments are checked as `{}`. For a caller that keeps each
    /// tool's compiled schema (per pinned tool), without a cache lookup.
    ///
    /// # Errors
    ///
    /// The first violation.
    pub fn check_arguments(&self, arguments: Option<&Value>) -> Result<(), Refusal> {
        let empty = json!({});
        match self.first_violation(arguments.unwrap_or(&empty)) {
            Some((path, message)) => Err(Refusal::Violation {
                path,
                message,
                arguments: true,
            }),
            None => Ok(()),
        }
    }

    /// Checks a `tools/call` `result` against this (output) schema: see
    /// [`SchemaCache::check_result`].
    ///
    /// # Errors
    ///
    /// The first violation (a missing `structuredContent` is one).
    pub fn check_result(&self, result: &Value) -> Result<(), Refusal> {
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let Some(structured) = result.get("structuredContent") else {
            return Err(Refusal::Violation {
                path: String::new(),
                message: "the tool declares an output schema but returned no structuredContent"
                    .into(),
                arguments: false,
            });
        };
        match self.first_violation(structured) {
            Some((path, message)) => Err(Refusal::Violation {
                path,
                message,
                arguments: false,
            }),
            None => Ok(()),
        }
    }

    /// The first place where `instance` fails the schema.
    fn first_violation(&self, instance: &Value) -> Option<(String, String)> {
        self.validator.validate(instance).err().map(|error| {
            (
                error.instance_path().to_string(),
                error.masked().to_string(),
            )
        })
    }
}

/// A retriever that retrieves nothing: references were checked to be
/// local before compiling; this makes sure nothing is fetched anyway.
struct NothingRemote;

impl jsonschema::Retrieve for NothingRemote {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "`{}` is outside the schema; nothing is fetched",
            uri.as_str()
        )
        .into())
    }
}

/// Refuses a tree deeper than `max_depth` or with a reference outside it.
fn check_tree(value: &Value, max_depth: usize) -> Result<(), SchemaError> {
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Object(object) => {
                if depth > max_depth {
                    return Err(SchemaError::TooDeep);
                }
                for (key, item) in object {
                    if REFERENCE_KEYS.contains(&key.as_str())
                        && let Some(target) = item.as_str().filter(|t| !t.starts_with('#'))
                    {
                        return Err(SchemaError::RemoteReference(target.to_owned()));
                    }
                    stack.push((item, depth + 1));
                }
            }
            Value::Array(items) => {
                if depth > max_depth {
                    return Err(SchemaError::TooDeep);
                }
                stack.extend(items.iter().map(|item| (item, depth + 1)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Compiled schemas, one per distinct schema, bounded; see the
/// [module docs](self). Clones share the cache.
#[derive(Clone)]
pub struct SchemaCache {
    inner: Arc<CacheInner>,
}

/// Compiled schemas (or their refusals) with the schema they came from.
type Entries = HashMap<u64, (Value, Result<ToolSchema, SchemaError>)>;

struct CacheInner {
    limits: SchemaLimits,
    capacity: usize,
    /// Keyed by a randomly seeded hash of the schema; each entry keeps the
    /// schema and a hit compares it, so a colliding schema never borrows
    /// another's validator.
    entries: Mutex<Entries>,
    hasher: RandomState,
}

impl fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaCache")
            .field("limits", &self.inner.limits)
            .field("capacity", &self.inner.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl SchemaCache {
    /// A cache of at most `capacity` compiled schemas, with the default
    /// [`SchemaLimits`].
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, SchemaLimits::default())
    }

    /// A cache of at most `capacity` compiled schemas within `limits`.
    #[must_use]
    pub fn with_limits(capacity: usize, limits: SchemaLimits) -> Self {
        Self {
            inner: Arc::new(CacheInner {
                limits,
                capacity: capacity.max(1),
                entries: Mutex::new(HashMap::new()),
                hasher: RandomState::new(),
            }),
        }
    }

    /// How many schemas are compiled.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is compiled yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `schema` compiled: from the cache, or compiled now and kept (a
    /// refusal is kept too, so a bad schema is not compiled again per call).
    ///
    /// # Errors
    ///
    /// The schema cannot be used ([`ToolSchema::compile`]).
    pub fn get(&self, schema: &Value) -> Result<ToolSchema, SchemaError> {
        let mut hasher = self.inner.hasher.build_hasher();
        hash_value(schema, &mut hasher);
        let key = hasher.finish();
        if let Some((kept, compiled)) = self.lock().get(&key)
            && kept == schema
        {
            return compiled.clone();
        }
        // Compiled outside the lock: a large schema does not stall others.
        let compiled = ToolSchema::compile(schema, &self.inner.limits);
        let mut entries = self.lock();
        if entries.len() >= self.inner.capacity
            && !entries.contains_key(&key)
            && let Some(&victim) = entries.keys().next()
        {
            entries.remove(&victim);
        }
        entries.insert(key, (schema.clone(), compiled.clone()));
        compiled
    }

    /// Checks the `arguments` of a call of `tool` (its definition, as
    /// listed) against its `inputSchema`; absent arguments are checked as
    /// `{}`. A tool without an `inputSchema` accepts anything.
    ///
    /// # Errors
    ///
    /// The first violation, or the schema's own refusal.
    pub fn check_arguments(&self, tool: &Value, arguments: Option<&Value>) -> Result<(), Refusal> {
        match tool.get("inputSchema") {
            Some(schema) => self
                .get(schema)
                .map_err(Refusal::Schema)?
                .check_arguments(arguments),
            None => Ok(()),
        }
    }

    /// Checks a `tools/call` `result` of `tool` against its
    /// `outputSchema`: a tool that declares one must answer with
    /// `structuredContent` that matches it. Error results
    /// (`isError: true`) and tools without an `outputSchema` pass.
    ///
    /// # Errors
    ///
    /// The first violation (a missing `structuredContent` is one, at the
    /// top level), or the schema's own refusal.
    pub fn check_result(&self, tool: &Value, result: &Value) -> Result<(), Refusal> {
        match tool.get("outputSchema") {
            Some(schema) => self
                .get(schema)
                .map_err(Refusal::Schema)?
                .check_result(result),
            None => Ok(()),
        }
    }
}

/// Feeds `value` to `hasher` without writing it out as text.
fn hash_value(value: &Value, hasher: &mut impl Hasher) {
    match value {
        Value::Null => hasher.write_u8(0),
        Value::Bool(b) => {
            hasher.write_u8(1);
            hasher.write_u8(u8::from(*b));
        }
        Value::Number(n) => {
            hasher.write_u8(2);
            if let Some(f) = n.as_f64() {
                hasher.write_u64(f.to_bits());
            }
        }
        Value::String(s) => {
            hasher.write_u8(3);
            hasher.write(s.as_bytes());
            hasher.write_u8(0xff);
        }
        Value::Array(items) => {
            hasher.write_u8(4);
            hasher.write_usize(items.len());
            for item in items {
                hash_value(item, hasher);
            }
        }
        Value::Object(object) => {
            hasher.write_u8(5);
            hasher.write_usize(object.len());
            for (key, item) in object {
                hasher.write(key.as_bytes());
                hasher.write_u8(0xff);
                hash_value(item, hasher);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> Value {
        json!({
            "name": "transfer",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "to": {"type": "string", "maxLength": 34},
                    "amount": {"type": "integer", "minimum": 1, "maximum": 100},
                    "memo": {"$ref": "#/$defs/memo"}
                },
                "required": ["to", "amount"],
                "additionalProperties": false,
                "$defs": {"memo": {"type": "string", "maxLength": 8}}
            },
            "outputSchema": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"]
            }
        })
    }

    fn violation(cache: &SchemaCache, arguments: Value) -> (String, String) {
        match cache.check_arguments(&tool(), Some(&arguments)) {
            Err(Refusal::Violation {
                path,
                message,
                arguments: true,
            }) => (path, message),
            other => panic!("{arguments}: {other:?}"),
        }
    }

    #[test]
    fn valid_arguments_pass_and_each_kind_of_violation_names_its_path() {
        let cache = SchemaCache::new(16);
        assert_eq!(
            cache.check_arguments(
                &tool(),
                Some(&json!({"to": "alice", "amount": 5, "memo": "rent"}))
            ),
            Ok(())
        );
        assert_eq!(
            violation(&cache, json!({"to": "alice", "amount": 500})).0,
            "/amount"
        );
        assert_eq!(violation(&cache, json!({"to": 7, "amount": 5})).0, "/to");
        assert_eq!(
            violation(
                &cache,
                json!({"to": "a", "amount": 5, "memo": "far too long"})
            )
            .0,
            "/memo",
            "a local $ref is followed"
        );
        // Undeclared member, missing member: reported at the object.
        let (path, message) = violation(&cache, json!({"to": "a", "amount": 5, "cmd": "rm -rf /"}));
        assert_eq!(path, "");
        assert!(
            !message.contains("rm -rf"),
            "the value is not echoed: {message}"
        );
        assert_eq!(violation(&cache, json!({"to": "a"})).0, "");
        // Absent arguments are `{}`: missing required members.
        assert!(cache.check_arguments(&tool(), None).is_err());
        // Only one compiled schema for all of these calls.
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_refusal_is_a_tool_error_the_model_can_read() {
        let cache = SchemaCache::new(16);
        let refusal = cache
            .check_arguments(&tool(), Some(&json!({"to": "a", "amount": 0})))
            .unwrap_err();
        let result = refusal.tool_result("transfer");
        assert_eq!(result["isError"], true);
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("Invalid arguments for tool transfer: at /amount: "),
            "{text}"
        );
    }

    #[test]
    fn schemas_that_reach_outside_themselves_are_refused_and_nothing_is_fetched() {
        let cache = SchemaCache::new(16);
        for target in [
            "http://127.0.0.1:9/schema.json",
            "https://example.com/s.json#/x",
            "file:///etc/passwd",
            "other.json",
            "/absolute",
        ] {
            for key in REFERENCE_KEYS {
                let tool =
                    json!({"name": "t", "inputSchema": {"properties": {"a": {key: target}}}});
                assert_eq!(
                    cache.check_arguments(&tool, Some(&json!({"a": 1}))),
                    Err(Refusal::Schema(SchemaError::RemoteReference(target.into()))),
                    "{key}: {target}"
                );
            }
        }
        // A meta-schema that is not a known draft would need a fetch: refused.
        let tool = json!({"name": "t", "inputSchema": {"$schema": "http://127.0.0.1:9/meta", "type": "object"}});
        assert!(matches!(
            cache.check_arguments(&tool, Some(&json!({}))),
            Err(Refusal::Schema(SchemaError::Invalid(_)))
        ));
    }

    #[test]
    fn oversized_deep_and_invalid_schemas_are_refused() {
        let cache = SchemaCache::with_limits(
            16,
            SchemaLimits {
                max_bytes: 1024,
                max_depth: 8,
            },
        );
        let big = json!({"name": "t", "inputSchema": {"description": "x".repeat(2000)}});
        assert!(matches!(
            cache.check_arguments(&big, None),
            Err(Refusal::Schema(SchemaError::TooLarge { .. }))
        ));
        let mut deep = json!({"type": "object"});
        for _ in 0..10 {
            deep = json!({"properties": {"a": deep}});
        }
        let deep = json!({"name": "t", "inputSchema": deep});
        assert_eq!(
            cache.check_arguments(&deep, None),
            Err(Refusal::Schema(SchemaError::TooDeep))
        );
        let invalid = json!({"name": "t", "inputSchema": {"type": "no-such-type"}});
        let refusal = cache.check_arguments(&invalid, None).unwrap_err();
        assert!(matches!(refusal, Refusal::Schema(SchemaError::Invalid(_))));
        assert_eq!(refusal.tool_result("t")["isError"], true);
    }

    #[test]
    fn results_are_checked_against_the_output_schema() {
        let cache = SchemaCache::new(16);
        let ok = json!({"content": [], "structuredContent": {"id": "tx-1"}});
        assert_eq!(cache.check_result(&tool(), &ok), Ok(()));
        let wrong = json!({"content": [], "structuredContent": {"id": 7}});
        let refusal = cache.check_result(&tool(), &wrong).unwrap_err();
        assert_eq!(refusal.path(), "/id");
        let text = refusal.tool_result("transfer")["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains("does not match its output schema"), "{text}");
        let missing = json!({"content": [{"type": "text", "text": "done"}]});
        assert!(cache.check_result(&tool(), &missing).is_err());
        // Errors pass through; so does any result of a tool without one.
        let error = json!({"content": [], "isError": true});
        assert_eq!(cache.check_result(&tool(), &error), Ok(()));
        assert_eq!(cache.check_result(&json!({"name": "x"}), &missing), Ok(()));
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_refusals() {
        let cache = SchemaCache::new(4);
        for n in 0..20 {
            let tool = json!({"name": "t", "inputSchema": {"type": "object", "maxProperties": n}});
            assert!(cache.check_arguments(&tool, Some(&json!({}))).is_ok());
        }
        assert_eq!(cache.len(), 4);
        let bad = json!({"name": "t", "inputSchema": {"$ref": "http://x/"}});
        assert!(cache.check_arguments(&bad, None).is_err());
        assert!(cache.check_arguments(&bad, None).is_err());
        assert_eq!(cache.len(), 4);
    }
}

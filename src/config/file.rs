//! `MCP_CONFIG_FILE`: the settings of [`VARIABLES`] (and of the names an
//! application reads beside them, [`Source`](super::Source)) as a TOML file
//! (or any serde document), flattened into the variables' text values.

use std::path::Path;

use serde_json::Value;

use super::WardenConfig;
use super::settings::{VARIABLES, key_of};
use super::suggest::closest;
use crate::error::ConfigError;

/// The largest settings file read: far above any real one.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `(index into the known names, value as a variable would hold it, key as
/// written)`.
pub(super) type Setting = (usize, String, String);

fn index_of(key: &str, names: &[&'static str]) -> Option<usize> {
    names
        .iter()
        .position(|v| *v == key || key_of(v) == key)
        .filter(|&index| names[index] != "MCP_CONFIG_FILE")
}

/// Reads and flattens the settings file at `path`, whose keys are those of
/// `names`.
pub(super) fn read(path: &Path, names: &[&'static str]) -> Result<Vec<Setting>, ConfigError> {
    let cannot = |why: String| {
        ConfigError::new(
            "MCP_CONFIG_FILE",
            format!("cannot read {}: {why}", path.display()),
        )
    };
    let size = std::fs::metadata(path)
        .map_err(|e| cannot(e.to_string()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(cannot(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| cannot(e.to_string()))?;
    parse(&text, &path.display().to_string(), names)
}

/// Parses TOML `text` (named `source` in errors) into settings.
///
/// A syntax error is reported by line and column with the parser's
/// message, never with the offending line itself, which may hold a secret.
pub(super) fn parse(
    text: &str,
    source: &str,
    names: &[&'static str],
) -> Result<Vec<Setting>, ConfigError> {
    let tree: Value = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        ConfigError::new(
            "MCP_CONFIG_FILE",
            format!("{source} is not valid TOML{at}: {}", e.message().trim()),
        )
    })?;
    flatten(&tree, source, names)
}

/// Flattens a document: `a.b = v` and `a_b = v` both set the variable whose
/// key is `a_b`. A table is taken whole when its key names a variable
/// (`tool_scopes`), and walked otherwise.
pub(super) fn flatten(
    tree: &Value,
    source: &str,
    names: &[&'static str],
) -> Result<Vec<Setting>, ConfigError> {
    let Value::Object(top) = tree else {
        return Err(ConfigError::new(
            "MCP_CONFIG_FILE",
            format!("{source} must be a table of settings"),
        ));
    };
    let mut out = Vec::new();
    let mut stack: Vec<(String, String, &serde_json::Map<String, Value>)> =
        vec![(String::new(), String::new(), top)];
    while let Some((prefix, written, table)) = stack.pop() {
        for (key, value) in table {
            let (name, shown) = if prefix.is_empty() {
                (key.clone(), shown_key(key))
            } else {
                (
                    format!("{prefix}_{key}"),
                    format!("{written}.{}", shown_key(key)),
                )
            };
            if let Some(index) = index_of(&name, names) {
                if out.iter().any(|(i, _, _)| *i == index) {
                    return Err(ConfigError::new(
                        names[index],
                        format!("is set twice in {source} (again as `{shown}`)"),
                    ));
                }
                let text = text_of(value).ok_or_else(|| {
                    ConfigError::new(
                        names[index],
                        format!(
                            "`{shown}` in {source} is not a string, number, boolean, list or table"
                        ),
                    )
                })?;
                out.push((index, text, shown));
            } else if let Value::Object(inner) = value {
                stack.push((name, shown, inner));
            } else {
                if name == key_of("MCP_CONFIG_FILE") {
                    return Err(ConfigError::new(
                        shown,
                        format!("{source} cannot name another settings file"),
                    ));
                }
                let keys: Vec<String> = names
                    .iter()
                    .filter(|v| **v != "MCP_CONFIG_FILE")
                    .map(|v| key_of(v))
                    .collect();
                let near = closest(&name, keys.iter().map(String::as_str))
                    .map(|near| format!("; did you mean {near}?"))
                    .unwrap_or_default();
                return Err(ConfigError::new(
                    shown.clone(),
                    format!(
                        "unknown setting {shown} in {source}{near} (keys are the variable names in lower case without MCP_)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// A key as TOML would write it: bare when it can be, quoted otherwise, so
/// that an empty or odd key still shows in an error (`""`, `"a b"`).
fn shown_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

/// The value as an environment variable would hold it: lists as JSON arrays
/// of strings, tables as JSON objects.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Some(text.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            serde_json::to_string(&items).ok()
        }
        Value::Object(_) => serde_json::to_string(value).ok(),
        Value::Null => None,
    }
}

impl<'de> serde::Deserialize<'de> for WardenConfig {
    /// The settings from any serde document keyed like the settings file
    /// (see the [module docs](super#the-settings-file)), without looking at
    /// the environment.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tree = Value::deserialize(deserializer)?;
        let settings =
            flatten(&tree, "the document", &VARIABLES).map_err(serde::de::Error::custom)?;
        WardenConfig::from_settings(settings).map_err(serde::de::Error::custom)
    }
}

//! How settings are shown: [`WardenConfig::redacted_json`] and `Debug`,
//! both from each setting's one [`Redaction`] in the declaration table
//! ([`SETTINGS`]).

use std::fmt;

use serde_json::{Map, Value};

use super::WardenConfig;
use super::settings::{Redaction, SETTINGS, View, key_of};
use crate::url_text::redact as redact_url;

impl Redaction {
    /// Applies this redaction to a setting's JSON value.
    pub(super) fn apply(self, value: &mut Value) {
        match (self, &mut *value) {
            (Self::Shown, _) | (Self::Secret, Value::Null) => {}
            (Self::Secret, Value::Array(items)) => {
                *value = Value::from(format!("<{} redacted>", items.len()));
            }
            (Self::Secret, _) => *value = Value::from("<redacted>"),
            (Self::Url, Value::String(url)) => *url = redact_url(url),
            (Self::Url, Value::Array(items)) => {
                for item in items {
                    Self::Url.apply(item);
                }
            }
            (Self::Url, _) => {}
        }
    }
}

impl WardenConfig {
    /// The effective settings as JSON, keyed like the settings file, with
    /// every secret replaced by `"<redacted>"` and the password and query
    /// values of every URL setting redacted (for a status page; `Debug`
    /// prints the same).
    #[must_use]
    pub fn redacted_json(&self) -> Value {
        view(self)
    }
}

impl fmt::Debug for WardenConfig {
    /// The settings as [`redacted_json`](Self::redacted_json) shows them:
    /// secrets and URL credentials are redacted by the same declaration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WardenConfig {}", self.redacted_json())
    }
}

/// The declared view of every setting, each redacted by its declaration:
/// the body of [`WardenConfig::redacted_json`].
fn view(config: &WardenConfig) -> Value {
    let mut out = Map::new();
    for setting in SETTINGS {
        let (key, show) = match setting.view {
            View::Key(show) => (key_of(setting.name), show),
            View::Named(key, show) => (key.to_owned(), show),
            View::Elsewhere => continue,
        };
        let mut value = show(config);
        setting.redaction.apply(&mut value);
        out.insert(key, value);
    }
    Value::Object(out)
}

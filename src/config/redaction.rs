//! How settings are shown: [`WardenConfig::redacted_json`] and `Debug`,
//! both from each setting's one [`Redaction`] in the declaration table.

use std::fmt;

use serde_json::Value;

use super::WardenConfig;
use super::settings;
use crate::url_text::redact as redact_url;

/// How a setting is shown by [`WardenConfig::redacted_json`] and `Debug`:
/// part of the setting's declaration in [`SETTINGS`](settings::SETTINGS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Redaction {
    /// Shown as it is.
    Shown,
    /// A secret: never shown (a list shows how many entries it has).
    Secret,
    /// A URL (or a list of URLs): shown without the password of its user
    /// info, its query values or its fragment (`url_text::redact`).
    Url,
}

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
        settings::view(self)
    }
}

impl fmt::Debug for WardenConfig {
    /// The settings as [`redacted_json`](Self::redacted_json) shows them:
    /// secrets and URL credentials are redacted by the same declaration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WardenConfig {}", self.redacted_json())
    }
}

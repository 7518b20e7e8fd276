//! How settings are shown: [`WardenConfig::redacted_json`] and `Debug`,
//! both from each setting's one [`Redaction`] in the declaration table.

use std::fmt;

use serde_json::Value;

use super::WardenConfig;
use super::settings;

/// How a setting is shown by [`WardenConfig::redacted_json`] and `Debug`:
/// part of the setting's declaration in [`SETTINGS`](settings::SETTINGS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Redaction {
    /// Shown as it is.
    Shown,
    /// A secret: never shown (a list shows how many entries it has).
    Secret,
    /// A URL (or a list of URLs): shown without the password of its user
    /// info, its query values or its fragment ([`redact_url`]).
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

/// `url` with the password of its user info (all of the user info when it
/// has no `:` or looks odd, since some clients read a lone user info as
/// the password), every query value and the fragment replaced by
/// `<redacted>`. The user info ends at the last `@`, so a malformed URL is
/// redacted too much rather than too little.
pub(crate) fn redact_url(url: &str) -> String {
    const R: &str = "<redacted>";
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => {
            let shown = match userinfo.split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:{R}@"),
                _ => format!("{R}@"),
            };
            (shown, rest)
        }
        None => (String::new(), rest),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, _)) => (rest, format!("#{R}")),
        None => (rest, String::new()),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) => format!("{key}={R}"),
                    None if pair.is_empty() => String::new(),
                    None => R.to_owned(),
                })
                .collect();
            (path, format!("?{}", pairs.join("&")))
        }
        None => (rest, String::new()),
    };
    format!("{prefix}{userinfo}{path}{query}{fragment}")
}

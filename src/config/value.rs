//! The value parsers every area shares: numbers, booleans, lists, paths,
//! URLs and host names, each naming its variable in its error.

use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;

use super::vars::Vars;
use crate::cidr::parse_nets;
use crate::error::ConfigError;
use crate::url_text::redact as redact_url;

/// The path of a file that exists, if set.
pub(super) fn path(vars: &Vars, name: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    let Some(text) = vars.get(name) else {
        return Ok(None);
    };
    let path = PathBuf::from(text);
    if !path.is_file() {
        return Err(ConfigError::new(
            name,
            format!("`{text}` is not a readable file"),
        ));
    }
    Ok(Some(path))
}

/// An `https://` URL, or `http://` in development or to a loopback host;
/// errors show it redacted.
pub(super) fn url(name: &'static str, text: &str, production: bool) -> Result<String, ConfigError> {
    let ok = text.starts_with("https://")
        || (!production && text.starts_with("http://"))
        || (text.starts_with("http://") && is_loopback_url(text));
    let rest = text.split_once("://").map_or("", |(_, rest)| rest);
    if !ok || rest.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            name,
            format!(
                "`{}` is not an {}URL",
                redact_url(text),
                if production { "https " } else { "http(s) " }
            ),
        ));
    }
    Ok(text.to_owned())
}

/// Whether an `http://` URL names a loopback host.
fn is_loopback_url(text: &str) -> bool {
    let rest = text.trim_start_matches("http://");
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|h| rest.starts_with(h) && rest[h.len()..].starts_with([':', '/']) || rest == *h)
}

/// A whole number from `min` to `max`, if set.
pub(super) fn whole<T>(
    vars: &Vars,
    name: &'static str,
    min: T,
    max: T,
) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    let Some(text) = vars.get(name) else {
        return Ok(None);
    };
    match text.parse::<T>() {
        Ok(n) if min <= n && n <= max => Ok(Some(n)),
        _ => Err(ConfigError::new(
            name,
            format!("`{text}` is not a whole number from {min} to {max}"),
        )),
    }
}

/// An RFC 1123 host name (letters, digits, `-`, dots).
pub(super) fn is_host_name(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off` (any case), if set.
pub(super) fn boolean(vars: &Vars, name: &'static str) -> Result<Option<bool>, ConfigError> {
    let Some(text) = vars.get(name) else {
        return Ok(None);
    };
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::new(
            name,
            format!("`{text}` is not a boolean (true/false, 1/0, yes/no, on/off)"),
        )),
    }
}

/// A [`list`] of addresses and CIDR prefixes, if set.
pub(super) fn nets(vars: &Vars, name: &'static str) -> Result<Option<Vec<IpNet>>, ConfigError> {
    list(vars, name)?
        .map(|items| parse_nets(name, items))
        .transpose()
}

/// The one parser of every list setting. Unset is `None` (the setting's
/// documented default); set but holding no entry (``, `,`, `[]`) is an
/// error, so an allow list can never be emptied into "everyone" by
/// accident.
pub(super) fn list(vars: &Vars, name: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(text) = vars.raw(name) else {
        return Ok(None);
    };
    let items = parse_list(text).map_err(|message| ConfigError::new(name, message))?;
    if items.is_empty() {
        return Err(ConfigError::new(
            name,
            "is set but lists nothing: unset it to get its default, or name at least one entry",
        ));
    }
    Ok(Some(items))
}

/// `a, b` or a JSON array of strings `["a", "b"]`; blank entries are
/// dropped.
pub(super) fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let text = text.trim();
    let items = if text.starts_with('[') {
        parse_json_strings(text)?
    } else {
        text.split(',').map(str::to_owned).collect()
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

/// A JSON array whose elements are all strings, read by `serde_json`.
fn parse_json_strings(text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(text)
        .map_err(|_| "starts with `[` but is not a JSON array of strings".to_owned())
}

/// The `N` bytes that `text` spells in exactly `2 * N` hex digits (either
/// case, nothing else), or `None`.
pub(crate) fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// A JSON object of tool rules (keys as in [`crate::tool_rules`]) to whole
/// numbers from `min` to `max`: `{"search": 30, "*": 600}`. `what` names
/// the number in errors ("requests a minute").
pub(super) fn tool_numbers(
    name: &'static str,
    text: &str,
    min: u64,
    max: u64,
    what: &str,
) -> Result<Vec<(String, u64)>, ConfigError> {
    let bad = |m: String| ConfigError::new(name, m);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad(format!("must be a JSON object: tool name → {what}")))?;
    object
        .iter()
        .map(|(tool, number)| {
            number
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .map(|n| (tool.clone(), n))
                .ok_or_else(|| {
                    bad(format!(
                        "the value of `{tool}` must be a whole number of {what} from {min} to {max}"
                    ))
                })
        })
        .collect()
}

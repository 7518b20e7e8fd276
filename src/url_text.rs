//! URL text the crate reads without a URL parser, the same in every
//! build: the one redactor of a URL's password, query values and fragment
//! (for settings, errors and `Debug`), and the shape of a Redis URL
//! (scheme, TLS, host). Settings check `MCP_REDIS_URL` with it whatever
//! the features; the Redis store (feature `redis`) uses the same
//! functions, so both agree on what a Redis URL is and how it is shown.

/// `url` with the password of its user info (all of the user info when it
/// has no `:` or looks odd, since some clients read a lone user info as
/// the password), every query value and the fragment replaced by
/// `<redacted>`. The user info ends at the last `@`, so a malformed URL is
/// redacted too much rather than too little.
pub(crate) fn redact(url: &str) -> String {
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

/// Whether `url` is a TLS (`rediss://`) Redis URL.
pub(crate) fn is_redis_tls(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// Whether `url` is a `redis://` or `rediss://` URL with a host and no
/// blank or control character.
pub(crate) fn is_redis_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = ["redis://", "rediss://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| &url[scheme.len()..]);
    let host = rest
        .map(|rest| rest.rsplit_once('@').map_or(rest, |(_, host)| host))
        .map(|host| host.split(['/', '?', '#']).next().unwrap_or(""));
    host.is_some_and(|h| !h.is_empty() && !h.starts_with(':'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

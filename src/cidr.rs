//! Address parsing shared by the network layers.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::ConfigError;

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host prefix).
///
/// IPv4-mapped IPv6 input (`::ffff:10.0.0.1`, `::ffff:10.0.0.0/104`) is
/// normalised to IPv4 so that it matches the addresses the layers see. The
/// host bits of a CIDR are cleared (`10.1.2.3/8` means `10.0.0.0/8`).
pub(crate) fn parse_net(setting: &'static str, text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    let net = if text.contains('/') {
        text.parse::<IpNet>().map_err(|_| {
            ConfigError::new(
                setting,
                format!("`{text}` is not an IP address or CIDR prefix"),
            )
        })?
    } else {
        let ip = text.parse::<IpAddr>().map_err(|_| {
            ConfigError::new(
                setting,
                format!("`{text}` is not an IP address or CIDR prefix"),
            )
        })?;
        IpNet::from(ip)
    };
    Ok(normalize_net(net))
}

/// Parses every entry of `list` with [`parse_net`]; the first bad entry is
/// the error.
pub(crate) fn parse_nets<I, T>(setting: &'static str, list: I) -> Result<Vec<IpNet>, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    list.into_iter()
        .map(|entry| parse_net(setting, entry.as_ref()))
        .collect()
}

/// A prefix as the layers compare it: IPv4-mapped IPv6 becomes IPv4, and the
/// host bits are cleared.
pub(crate) fn normalize_net(net: IpNet) -> IpNet {
    canonical_net(net).trunc()
}

/// An IPv4-mapped IPv6 prefix (`::ffff:0:0/96` and longer) as IPv4.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        let len = v6.prefix_len() - 96;
        if let Ok(n) = ipnet::Ipv4Net::new(v4, len) {
            return IpNet::V4(n);
        }
    }
    net
}

/// Whether `ip` (already canonical) lies in any of `nets`. Trusted-proxy
/// lists are short, so a scan beats any index here.
#[inline]
pub(crate) fn in_any(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|net| net.contains(&ip))
}

/// An address as the layers compare it: IPv4-mapped IPv6 becomes IPv4.
#[inline]
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs_and_bare_addresses() {
        assert_eq!(
            parse_net("x", "10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_net("x", " 10.1.2.3/8 ").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_net("x", "203.0.113.42").unwrap().to_string(),
            "203.0.113.42/32"
        );
        assert_eq!(
            parse_net("x", "2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            parse_net("x", "::ffff:10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(
            parse_net("x", "::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn rejects_garbage_naming_the_setting() {
        let err = parse_net("MCP_ALLOWED_IPS", "10.0.0.0/33").unwrap_err();
        assert_eq!(err.setting(), "MCP_ALLOWED_IPS");
        assert!(err.to_string().contains("10.0.0.0/33"));
        assert!(parse_net("x", "").is_err());
        assert!(parse_net("x", "example.com").is_err());
    }
}

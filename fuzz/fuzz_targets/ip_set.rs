//! `IpSet` building and lookup against a linear scan.
//!
//! Invariants: building never panics; every lookup (`decide`,
//! `is_allowed`) equals the naive scan's longest-prefix verdict (a tie
//! denies; no match allows only when the allow list is empty), IPv4-mapped
//! IPv6 addresses and prefixes being their IPv4 selves, and an
//! IPv4-compatible address (`::a.b.c.d`) admitted by the IPv6 lists judged
//! again by the IPv4 lists; `from_lists` over the same prefixes as text
//! builds the same set.
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tower_warden::ip_filter::IpSet;
use tower_warden::ip_filter::Verdict;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// IPv4-mapped IPv6.
    Mapped([u8; 4]),
    /// Deprecated IPv4-compatible IPv6 (`::a.b.c.d`).
    Compat([u8; 4]),
    /// Near a few bases, so that prefixes nest and queries hit edges.
    Near(u8, u8),
}

impl Addr {
    fn ip(self) -> IpAddr {
        match self {
            Addr::V4(b) => IpAddr::from(b),
            Addr::V6(b) => IpAddr::from(b),
            Addr::Mapped(b) => IpAddr::V6(std::net::Ipv4Addr::from(b).to_ipv6_mapped()),
            Addr::Compat(b) => IpAddr::V6(std::net::Ipv6Addr::from_bits(u128::from(
                u32::from_be_bytes(b),
            ))),
            Addr::Near(base, low) => match base % 4 {
                0 => IpAddr::from([10, 0, base >> 2, low]),
                1 => IpAddr::from([255, 255, 255, low]),
                2 => IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    u16::from(base),
                    u16::from(low),
                )),
                _ => IpAddr::V6(std::net::Ipv6Addr::from(u128::MAX - u128::from(low))),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    allow: Vec<(Addr, u8)>,
    deny: Vec<(Addr, u8)>,
    queries: Vec<Addr>,
}

fn net(addr: Addr, len: u8) -> IpNet {
    let ip = addr.ip();
    let max = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(ip, len % (max + 1)).expect("length in range")
}

/// IPv4-mapped IPv6 prefixes of /96 or longer as IPv4, host bits cleared.
fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
    {
        return IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
            .unwrap()
            .trunc();
    }
    net.trunc()
}

/// The longest-prefix verdict by a linear scan over the canonical prefixes
/// (`allow` and `deny` already through [`canonical`]).
fn naive(allow: &[IpNet], deny: &[IpNet], ip: IpAddr) -> Verdict {
    let ip = ip.to_canonical();
    let mut best: Option<(u8, bool, IpNet)> = None;
    for (list, allowed) in [(allow, true), (deny, false)] {
        for &net in list {
            if !net.contains(&ip) {
                continue;
            }
            let len = net.prefix_len();
            let better = match best {
                None => true,
                Some((l, a, _)) => len > l || (len == l && a && !allowed),
            };
            if better {
                best = Some((len, allowed, net));
            }
        }
    }
    match best {
        Some((_, true, net)) => Verdict::Allow(Some(net)),
        Some((_, false, net)) => Verdict::Deny(Some(net)),
        None if allow.is_empty() => Verdict::Allow(None),
        None => Verdict::Deny(None),
    }
}

/// At most this many rules (allow and deny together; the rest of a longer
/// input is ignored) and this many queries per input. The check is
/// quadratic in the rules (every rule's edges are probed against every
/// rule): 64 rules, up to 129 interval starts, already fill windows and
/// nest nodes of the lookup tree, at a small fraction of the cost per input
/// of hundreds.
const MAX_RULES: usize = 64;
const MAX_QUERIES: usize = 64;

/// The IPv4 address a deprecated IPv4-compatible address (`::a.b.c.d`,
/// outside `::/104`) carries.
fn compatible(ip: IpAddr) -> Option<IpAddr> {
    let IpAddr::V6(v6) = ip else { return None };
    let v4 = u32::try_from(v6.to_bits()).ok()?;
    (v4 >> 24 != 0).then(|| IpAddr::from(v4.to_be_bytes()))
}

/// The verdict: the linear scan, and an IPv4-compatible address the IPv6
/// lists admit must then pass the IPv4 lists for the address it carries
/// (which then decide, and name the prefix).
fn model(allow: &[IpNet], deny: &[IpNet], ip: IpAddr) -> Verdict {
    let ip = ip.to_canonical();
    let verdict = naive(allow, deny, ip);
    match compatible(ip) {
        Some(v4) if verdict.is_allowed() => naive(allow, deny, v4),
        _ => verdict,
    }
}

fuzz_target!(|input: Input| {
    let allow: Vec<IpNet> = input
        .allow
        .iter()
        .take(MAX_RULES)
        .map(|&(a, l)| net(a, l))
        .collect();
    let deny: Vec<IpNet> = input
        .deny
        .iter()
        .take(MAX_RULES - allow.len())
        .map(|&(a, l)| net(a, l))
        .collect();
    let allow_c: Vec<IpNet> = allow.iter().map(|&n| canonical(n)).collect();
    let deny_c: Vec<IpNet> = deny.iter().map(|&n| canonical(n)).collect();
    let set = IpSet::builder()
        .allow_nets(allow.iter().copied())
        .deny_nets(deny.iter().copied())
        .build();
    let text = IpSet::from_lists(
        allow.iter().map(ToString::to_string),
        deny.iter().map(ToString::to_string),
    )
    .expect("prefixes as text parse");
    // Probe the queries, every rule's edges, and the ends of both spaces.
    let mut probes: Vec<IpAddr> = input
        .queries
        .iter()
        .take(MAX_QUERIES)
        .map(|q| q.ip())
        .collect();
    for n in allow.iter().chain(&deny) {
        probes.push(n.network());
        probes.push(n.broadcast());
        if let Some(after) = next(n.broadcast()) {
            probes.push(after);
        }
        if let Some(before) = prev(n.network()) {
            probes.push(before);
        }
    }
    probes.extend(
        [
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]
        .map(|s| s.parse::<IpAddr>().unwrap()),
    );
    for ip in probes {
        let want = model(&allow_c, &deny_c, ip);
        assert_eq!(set.decide(ip), want, "{ip} in {allow:?} / {deny:?}");
        assert_eq!(set.is_allowed(ip), want.is_allowed(), "{ip}");
        assert_eq!(text.decide(ip), want, "from_lists: {ip}");
    }
});

fn next(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => v4
            .to_bits()
            .checked_add(1)
            .map(|b| IpAddr::from(b.to_be_bytes())),
        IpAddr::V6(v6) => v6
            .to_bits()
            .checked_add(1)
            .map(|b| IpAddr::from(b.to_be_bytes())),
    }
}

fn prev(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => v4
            .to_bits()
            .checked_sub(1)
            .map(|b| IpAddr::from(b.to_be_bytes())),
        IpAddr::V6(v6) => v6
            .to_bits()
            .checked_sub(1)
            .map(|b| IpAddr::from(b.to_be_bytes())),
    }
}

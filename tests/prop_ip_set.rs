//! Property tests: `IpSet` against a naive linear scan.
//!
//! Random allow and deny lists of IPv4 and IPv6 prefixes — drawn around a
//! few base addresses so that they nest, overlap and repeat, with lengths
//! biased to `/0`, host routes and their neighbours, some written as
//! IPv4-mapped IPv6 — are built through every public constructor (the
//! builder one prefix at a time, the builder from iterators, `from_lists`
//! from text). Each set is asked about random addresses and about every
//! rule's edges (first and last address, one before, one after), each IPv4
//! query also in its IPv4-mapped and IPv4-compatible IPv6 spellings. The
//! answer must be the oracle's, prefix included.
//!
//! The oracle is the documented semantics, written as plainly as possible:
//!
//! * the longest matching prefix decides, and a prefix in both lists
//!   denies;
//! * nothing matches: denied when the allow list is non-empty, allowed
//!   otherwise;
//! * IPv4-mapped IPv6 addresses, and IPv4-mapped prefixes of `/96` or
//!   longer, are the IPv4 ones they carry; other IPv6 prefixes never match
//!   an IPv4 address;
//! * an IPv4-compatible address (`::a.b.c.d`, outside `::/104`) must be
//!   admitted by the IPv6 lists and then by the IPv4 lists for the address
//!   it carries, which decide;
//! * host bits of a prefix are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::test_runner::Config;
use tower_warden::ip_filter::{IpSet, Verdict};

// ---------------------------------------------------------------------------
// The oracle.

/// A prefix as the oracle compares it: one family, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    V4 { key: u32, len: u8 },
    V6 { key: u128, len: u8 },
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// Whether the top 96 bits are `::ffff:0:0/96`.
fn is_mapped(bits: u128) -> bool {
    bits >> 32 == 0xffff
}

impl Prefix {
    fn of(net: IpNet) -> Self {
        match net {
            IpNet::V4(n) => Self::v4(n.addr().to_bits(), n.prefix_len()),
            IpNet::V6(n) => {
                let (bits, len) = (n.addr().to_bits(), n.prefix_len());
                if len >= 96 && is_mapped(bits) {
                    Self::v4(bits as u32, len - 96)
                } else {
                    Self::V6 {
                        key: bits & mask128(len),
                        len,
                    }
                }
            }
        }
    }

    fn v4(bits: u32, len: u8) -> Self {
        Self::V4 {
            key: bits & mask32(len),
            len,
        }
    }

    fn len(self) -> u8 {
        match self {
            Self::V4 { len, .. } | Self::V6 { len, .. } => len,
        }
    }

    fn contains(self, query: Query) -> bool {
        match (self, query) {
            (Self::V4 { key, len }, Query::V4(bits)) => bits & mask32(len) == key,
            (Self::V6 { key, len }, Query::V6(bits)) => bits & mask128(len) == key,
            _ => false,
        }
    }

    fn net(self) -> IpNet {
        match self {
            Self::V4 { key, len } => {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from_bits(key), len).unwrap())
            }
            Self::V6 { key, len } => {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from_bits(key), len).unwrap())
            }
        }
    }
}

/// An address in the family it is judged in.
#[derive(Clone, Copy, Debug)]
enum Query {
    V4(u32),
    V6(u128),
}

impl Query {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.to_bits()),
            IpAddr::V6(v6) if is_mapped(v6.to_bits()) => Self::V4(v6.to_bits() as u32),
            IpAddr::V6(v6) => Self::V6(v6.to_bits()),
        }
    }
}

struct Oracle {
    allow: Vec<Prefix>,
    deny: Vec<Prefix>,
}

impl Oracle {
    fn new(allow: &[IpNet], deny: &[IpNet]) -> Self {
        Self {
            allow: allow.iter().copied().map(Prefix::of).collect(),
            deny: deny.iter().copied().map(Prefix::of).collect(),
        }
    }

    /// The verdict of one family's rules, by scanning all of them.
    fn scan(&self, query: Query) -> Verdict {
        // (length, denies, prefix): longer wins, then deny over allow.
        let mut best: Option<(u8, bool, Prefix)> = None;
        let rules = self
            .allow
            .iter()
            .map(|p| (*p, false))
            .chain(self.deny.iter().map(|p| (*p, true)));
        for (prefix, denies) in rules {
            if !prefix.contains(query) {
                continue;
            }
            let candidate = (prefix.len(), denies, prefix);
            if best.is_none_or(|(len, d, _)| (candidate.0, candidate.1) > (len, d)) {
                best = Some(candidate);
            }
        }
        match best {
            Some((_, false, prefix)) => Verdict::Allow(Some(prefix.net())),
            Some((_, true, prefix)) => Verdict::Deny(Some(prefix.net())),
            None if self.allow.is_empty() => Verdict::Allow(None),
            None => Verdict::Deny(None),
        }
    }

    fn decide(&self, ip: IpAddr) -> Verdict {
        let query = Query::of(ip);
        let verdict = self.scan(query);
        match query {
            // `::a.b.c.d` with `a` non-zero: the IPv4 lists have the last
            // word once the IPv6 lists let it through.
            Query::V6(bits) if bits >> 32 == 0 && (bits as u32) >> 24 != 0 => {
                if verdict.is_allowed() {
                    self.scan(Query::V4(bits as u32))
                } else {
                    verdict
                }
            }
            _ => verdict,
        }
    }

    fn distinct(list: &[Prefix]) -> usize {
        let mut seen: Vec<Prefix> = Vec::new();
        for p in list {
            if !seen.contains(p) {
                seen.push(*p);
            }
        }
        seen.len()
    }
}

// ---------------------------------------------------------------------------
// Generators.

/// A few base addresses per family: the rules and queries cluster around
/// them.
#[derive(Clone, Debug)]
struct Bases {
    v4: Vec<u32>,
    v6: Vec<u128>,
}

fn bases() -> impl Strategy<Value = Bases> {
    (
        prop::collection::vec(any::<u32>(), 1..4),
        prop::collection::vec(any::<u128>(), 1..4),
    )
        .prop_map(|(v4, v6)| Bases { v4, v6 })
}

/// How one address is drawn: which base, which low bits to flip (a shift
/// that keeps neighbours sharing long prefixes), or anywhere at all.
#[derive(Clone, Copy, Debug)]
struct Near {
    base: usize,
    noise: u128,
    shift: u32,
    anywhere: bool,
}

fn near() -> impl Strategy<Value = Near> {
    (
        any::<usize>(),
        any::<u128>(),
        0u32..128,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(base, noise, shift, anywhere)| Near {
            base,
            noise,
            shift,
            anywhere,
        })
}

impl Near {
    fn v4(self, bases: &Bases) -> u32 {
        if self.anywhere {
            return self.noise as u32;
        }
        bases.v4[self.base % bases.v4.len()] ^ ((self.noise as u32) >> (self.shift % 32))
    }

    fn v6(self, bases: &Bases) -> u128 {
        if self.anywhere {
            return self.noise;
        }
        bases.v6[self.base % bases.v6.len()] ^ (self.noise >> self.shift)
    }
}

/// Prefix lengths biased to the edges: `/0`, the host route, one short of
/// it, else anything.
fn length(width: u8) -> impl Strategy<Value = u8> {
    prop_oneof![
        1 => Just(0),
        2 => Just(width),
        1 => Just(width - 1),
        6 => 0..=width,
    ]
}

#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
    /// An IPv4 prefix written as IPv4-mapped IPv6 (`::ffff:a.b.c.d/len`);
    /// a length under 96 keeps it IPv6.
    Mapped,
    /// An IPv4-compatible prefix (`::a.b.c.d/len`), plain IPv6.
    Compatible,
}

#[derive(Clone, Copy, Debug)]
enum Lists {
    Allow,
    Deny,
    Both,
}

#[derive(Clone, Copy, Debug)]
struct RuleSpec {
    family: Family,
    at: Near,
    len: u8,
    lists: Lists,
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    let family = prop_oneof![
        5 => Just(Family::V4),
        4 => Just(Family::V6),
        2 => Just(Family::Mapped),
        1 => Just(Family::Compatible),
    ];
    let lists =
        prop_oneof![2 => Just(Lists::Allow), 2 => Just(Lists::Deny), 1 => Just(Lists::Both)];
    (family, near(), length(128), length(32), lists).prop_map(|(family, at, len6, len4, lists)| {
        let len = match family {
            Family::V4 => len4,
            Family::V6 => len6,
            // Mostly /96 and longer (within the mapped or compatible
            // range), sometimes shorter: /80 to /95 hold the whole range
            // and more, and stay IPv6.
            Family::Mapped | Family::Compatible if len6 < 48 => len6,
            Family::Mapped | Family::Compatible if len6 < 64 => 80 + (len6 - 48),
            Family::Mapped | Family::Compatible => 96 + len4,
        };
        RuleSpec {
            family,
            at,
            len,
            lists,
        }
    })
}

impl RuleSpec {
    /// The prefix, host bits and all.
    fn net(self, bases: &Bases) -> IpNet {
        match self.family {
            Family::V4 => {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from_bits(self.at.v4(bases)), self.len).unwrap())
            }
            Family::V6 => {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from_bits(self.at.v6(bases)), self.len).unwrap())
            }
            Family::Mapped => {
                let v6 = Ipv4Addr::from_bits(self.at.v4(bases)).to_ipv6_mapped();
                IpNet::V6(Ipv6Net::new(v6, self.len).unwrap())
            }
            Family::Compatible => {
                let v6 = Ipv6Addr::from_bits(u128::from(self.at.v4(bases)));
                IpNet::V6(Ipv6Net::new(v6, self.len).unwrap())
            }
        }
    }
}

/// Which lists a case keeps: most cases both, some only one, a few none.
#[derive(Clone, Copy, Debug)]
enum Keep {
    Both,
    AllowOnly,
    DenyOnly,
}

fn keep() -> impl Strategy<Value = Keep> {
    prop_oneof![6 => Just(Keep::Both), 1 => Just(Keep::AllowOnly), 1 => Just(Keep::DenyOnly)]
}

/// The allow and deny lists of a case.
fn lists(bases: &Bases, rules: &[RuleSpec], keep: Keep) -> (Vec<IpNet>, Vec<IpNet>) {
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    for rule in rules {
        let net = rule.net(bases);
        match rule.lists {
            Lists::Allow => allow.push(net),
            Lists::Deny => deny.push(net),
            Lists::Both => {
                allow.push(net);
                deny.push(net);
            }
        }
    }
    match keep {
        Keep::Both => {}
        Keep::AllowOnly => deny.clear(),
        Keep::DenyOnly => allow.clear(),
    }
    (allow, deny)
}

/// Every rule's first and last address, one before and one after (wrapping
/// at the ends of the space), in the rule's own family as the oracle sees
/// it; plus the ends of both spaces and the IPv4-compatible boundary.
fn edges(nets: &[IpNet]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = [
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "::1",
        "::0.255.255.255",
        "::1.0.0.0",
        "::255.255.255.255",
        "::1:0:0",
        "::fffe:ffff:ffff",
        "::ffff:0.0.0.0",
        "::ffff:255.255.255.255",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for net in nets {
        match Prefix::of(*net) {
            Prefix::V4 { key, len } => {
                let last = key | !mask32(len);
                for bits in [key, last, key.wrapping_sub(1), last.wrapping_add(1)] {
                    out.push(IpAddr::V4(Ipv4Addr::from_bits(bits)));
                }
            }
            Prefix::V6 { key, len } => {
                let last = key | !mask128(len);
                for bits in [key, last, key.wrapping_sub(1), last.wrapping_add(1)] {
                    out.push(IpAddr::V6(Ipv6Addr::from_bits(bits)));
                }
            }
        }
    }
    out
}

/// An IPv4 address also as IPv4-mapped and IPv4-compatible IPv6.
fn spellings(ip: IpAddr) -> Vec<IpAddr> {
    match ip {
        IpAddr::V4(v4) => vec![
            ip,
            IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(Ipv6Addr::from_bits(u128::from(v4.to_bits()))),
        ],
        IpAddr::V6(_) => vec![ip],
    }
}

/// A prefix as an operator might type it: CIDR with host bits, a bare
/// address for a host route, padded with blanks.
fn as_text(net: IpNet, style: u8) -> String {
    let full = net.prefix_len() == net.max_prefix_len();
    let core = if full && style.is_multiple_of(2) {
        net.addr().to_string()
    } else {
        net.to_string()
    };
    match style % 3 {
        0 => core,
        1 => format!(" {core}"),
        _ => format!("\t{core} "),
    }
}

/// The same lists through each public constructor.
fn constructions(allow: &[IpNet], deny: &[IpNet], style: u8) -> Vec<(&'static str, IpSet)> {
    let mut one_by_one = IpSet::builder();
    for (i, net) in allow.iter().enumerate() {
        // A host route also goes in as a bare `IpAddr`.
        one_by_one = if net.prefix_len() == net.max_prefix_len() && i % 2 == 0 {
            one_by_one.allow(net.addr())
        } else {
            one_by_one.allow(*net)
        };
    }
    for (i, net) in deny.iter().enumerate() {
        one_by_one = if net.prefix_len() == net.max_prefix_len() && i % 2 == 1 {
            one_by_one.deny(net.addr())
        } else {
            one_by_one.deny(*net)
        };
    }
    let iterators = IpSet::builder()
        .deny_nets(deny.iter().copied())
        .allow_nets(allow.iter().copied())
        .build();
    // Blank entries are ignored.
    let text = |list: &[IpNet]| -> Vec<String> {
        let mut out: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, n)| as_text(*n, style.wrapping_add(i as u8)))
            .collect();
        if style.is_multiple_of(4) {
            out.insert(out.len() / 2, "  ".to_owned());
        }
        out
    };
    let from_text = IpSet::from_lists(text(allow), text(deny)).expect("valid prefixes parse");
    vec![
        ("builder, one by one", one_by_one.build()),
        ("builder, from iterators", iterators),
        ("from_lists", from_text),
    ]
}

fn check(
    allow: &[IpNet],
    deny: &[IpNet],
    queries: &[IpAddr],
    style: u8,
) -> Result<(), TestCaseError> {
    let oracle = Oracle::new(allow, deny);
    let all: Vec<IpNet> = allow.iter().chain(deny).copied().collect();
    let mut probes: Vec<IpAddr> = queries.to_vec();
    probes.extend(edges(&all));
    let probes: Vec<IpAddr> = probes.into_iter().flat_map(spellings).collect();
    for (how, set) in constructions(allow, deny, style) {
        prop_assert_eq!(set.allow_len(), Oracle::distinct(&oracle.allow), "{}", how);
        prop_assert_eq!(set.deny_len(), Oracle::distinct(&oracle.deny), "{}", how);
        prop_assert_eq!(
            set.is_empty(),
            allow.is_empty() && deny.is_empty(),
            "{}",
            how
        );
        for &ip in &probes {
            let want = oracle.decide(ip);
            prop_assert_eq!(set.decide(ip), want, "{}: {}", how, ip);
            prop_assert_eq!(set.is_allowed(ip), want.is_allowed(), "{}: {}", how, ip);
        }
    }
    Ok(())
}

/// Random queries near the bases (or anywhere), in either family.
fn queries(bases: &Bases, near: &[(Near, bool)]) -> Vec<IpAddr> {
    near.iter()
        .map(|&(at, v6)| {
            if v6 {
                IpAddr::V6(Ipv6Addr::from_bits(at.v6(bases)))
            } else {
                IpAddr::V4(Ipv4Addr::from_bits(at.v4(bases)))
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(Config::with_cases(256))]

    /// Small sets, where every kind of collision is likely.
    #[test]
    fn small_sets_match_a_linear_scan(
        bases in bases(),
        rules in prop::collection::vec(rule(), 0..24),
        keep in keep(),
        near in prop::collection::vec((near(), any::<bool>()), 0..32),
        style in any::<u8>(),
    ) {
        let (allow, deny) = lists(&bases, &rules, keep);
        check(&allow, &deny, &queries(&bases, &near), style)?;
    }
}

proptest! {
    #![proptest_config(Config::with_cases(16))]

    /// Larger sets: deeper nodes and fuller blocks in the lookup tables.
    #[test]
    fn larger_sets_match_a_linear_scan(
        bases in bases(),
        rules in prop::collection::vec(rule(), 100..400),
        keep in keep(),
        near in prop::collection::vec((near(), any::<bool>()), 0..200),
        style in any::<u8>(),
    ) {
        let (allow, deny) = lists(&bases, &rules, keep);
        check(&allow, &deny, &queries(&bases, &near), style)?;
    }
}

proptest! {
    #![proptest_config(Config::with_cases(256))]

    /// A prefix length beyond the family's width is refused at build time,
    /// naming the list and the entry, wherever it stands in the list.
    #[test]
    fn a_bad_length_names_its_list_and_entry(
        bases in bases(),
        rules in prop::collection::vec(rule(), 0..8),
        at in any::<prop::sample::Index>(),
        v6 in any::<bool>(),
        extra in 1u8..100,
        deny_side in any::<bool>(),
    ) {
        let (allow, deny) = lists(&bases, &rules, Keep::Both);
        let bad = if v6 {
            format!("2001:db8::/{}", 128 + u16::from(extra))
        } else {
            format!("192.0.2.0/{}", 32 + u16::from(extra))
        };
        let mut good: Vec<String> = if deny_side { &deny } else { &allow }
            .iter()
            .map(ToString::to_string)
            .collect();
        good.insert(at.index(good.len() + 1), bad.clone());
        let other: Vec<String> = if deny_side { &allow } else { &deny }
            .iter()
            .map(ToString::to_string)
            .collect();
        let err = if deny_side {
            IpSet::from_lists(other, good)
        } else {
            IpSet::from_lists(good, other)
        }
        .unwrap_err();
        prop_assert_eq!(err.setting(), if deny_side { "deny" } else { "allow" });
        prop_assert!(err.message().contains(&bad), "{}", err);
    }
}

/// The documented examples, as fixed points of the oracle itself: a wrong
/// oracle would make every property above meaningless.
#[test]
fn the_oracle_agrees_with_the_documented_examples() {
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let oracle = Oracle::new(&[net("10.0.0.0/24")], &[net("0.0.0.0/0")]);
    assert_eq!(
        oracle.decide(ip("10.0.0.5")),
        Verdict::Allow(Some(net("10.0.0.0/24")))
    );
    assert_eq!(
        oracle.decide(ip("8.8.8.8")),
        Verdict::Deny(Some(net("0.0.0.0/0")))
    );
    assert_eq!(
        oracle.decide(ip("::ffff:10.0.0.5")),
        Verdict::Allow(Some(net("10.0.0.0/24")))
    );
    assert_eq!(oracle.decide(ip("2001:db8::1")), Verdict::Deny(None));
    // A tie denies, whatever the spelling.
    let oracle = Oracle::new(&[net("192.0.2.77/24")], &[net("::ffff:192.0.2.0/120")]);
    assert_eq!(
        oracle.decide(ip("192.0.2.1")),
        Verdict::Deny(Some(net("192.0.2.0/24")))
    );
    // IPv4-compatible: both families must admit; the IPv4 lists decide.
    let oracle = Oracle::new(&[], &[net("203.0.113.0/24")]);
    assert_eq!(
        oracle.decide(ip("::203.0.113.9")),
        Verdict::Deny(Some(net("203.0.113.0/24")))
    );
    assert_eq!(oracle.decide(ip("::1")), Verdict::Allow(None));
    let oracle = Oracle::new(&[net("::/96")], &[]);
    assert_eq!(oracle.decide(ip("::203.0.113.9")), Verdict::Deny(None));
    assert_eq!(oracle.decide(ip("::1")), Verdict::Allow(Some(net("::/96"))));
    // `::/0` is IPv6 only.
    let oracle = Oracle::new(&[net("::/0")], &[]);
    assert_eq!(oracle.decide(ip("192.0.2.1")), Verdict::Deny(None));
    // The empty set allows everything.
    let oracle = Oracle::new(&[], &[]);
    assert_eq!(oracle.decide(ip("192.0.2.1")), Verdict::Allow(None));
}

//! [`IpSet`]: allow and deny prefixes with a longest-prefix verdict.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::table::{Leaf, Rule, Table};
use crate::cidr::{canonical, normalize_net, parse_nets};
use crate::error::ConfigError;

/// Allow and deny lists of IPv4 and IPv6 prefixes, answered in constant
/// time.
///
/// # Semantics
///
/// * The most specific (longest) matching prefix decides.
/// * A prefix that is in both lists denies.
/// * An address that matches nothing is denied when the allow list is
///   non-empty, and allowed otherwise. The empty set allows everything.
/// * IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) and prefixes
///   (`::ffff:10.0.0.0/104`) are treated as the IPv4 ones they carry. Other
///   IPv6 prefixes never match an IPv4 client: `::/0` means "all of IPv6".
/// * A deprecated IPv4-compatible address (`::192.0.2.1`, RFC 4291
///   section 2.5.5.1) must pass both the IPv6 lists and the IPv4 lists for
///   the address it carries, so it can neither slip past an IPv4 deny list
///   nor enter an IPv4 allow list.
///
/// So `deny 0.0.0.0/0, allow 10.0.0.0/24` admits `10.0.0.5` and refuses
/// `8.8.8.8`; `allow 10.0.0.0/8, deny 10.6.6.0/24` admits the network but
/// not the bad subnet.
///
/// ```
/// use std::net::IpAddr;
/// use tower_warden::ip_filter::{Verdict, IpSet};
///
/// let set = IpSet::from_lists(["10.0.0.0/24", "2001:db8::/32"], ["0.0.0.0/0"])?;
/// assert!(set.is_allowed("10.0.0.5".parse()?));
/// assert!(!set.is_allowed("8.8.8.8".parse()?));
/// assert!(set.is_allowed("::ffff:10.0.0.7".parse()?));
/// assert_eq!(
///     set.decide("8.8.8.8".parse()?),
///     Verdict::Deny(Some("0.0.0.0/0".parse()?)),
/// );
/// // Not in any list, and the allow list is not empty:
/// assert_eq!(set.decide("2001:db9::1".parse::<IpAddr>()?), Verdict::Deny(None));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
///
/// # Cost
///
/// A lookup costs the same whatever the size of the lists: for most sets,
/// a little arithmetic and one cache-line-sized block read (a radix tree
/// over the precomputed verdicts, see the
/// [module docs](super#performance)); it never allocates. Building is
/// `O(n log n)` and memory is linear in the number of prefixes. Clones are
/// cheap and share the tables.
#[derive(Clone)]
pub struct IpSet {
    inner: Arc<Inner>,
}

struct Inner {
    v4: Table<u32>,
    v6: Table<u128>,
    allow_len: usize,
    deny_len: usize,
}

impl Default for IpSet {
    /// The empty set, which allows every address.
    fn default() -> Self {
        IpSetBuilder::default().build()
    }
}

impl fmt::Debug for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpSet")
            .field("allow", &self.inner.allow_len)
            .field("deny", &self.inner.deny_len)
            .field("ipv4_intervals", &self.inner.v4.intervals())
            .field("ipv6_intervals", &self.inner.v6.intervals())
            .field("table_bytes", &self.table_bytes())
            .finish()
    }
}

impl IpSet {
    /// Starts an empty set.
    pub fn builder() -> IpSetBuilder {
        IpSetBuilder::default()
    }

    /// Builds a set from text lists of CIDR prefixes (`10.0.0.0/8`,
    /// `2001:db8::/32`) or bare addresses (`203.0.113.7`). Surrounding
    /// whitespace is ignored, and so are blank entries.
    ///
    /// # Errors
    ///
    /// On the first entry that is neither; the error's
    /// [setting](ConfigError::setting) is `allow` or `deny` and its message
    /// quotes the entry. Callers that read an environment variable re-label
    /// it: `.map_err(|e| e.for_setting("MCP_ALLOWED_IPS"))`.
    pub fn from_lists(
        allow: impl IntoIterator<Item: AsRef<str>>,
        deny: impl IntoIterator<Item: AsRef<str>>,
    ) -> Result<Self, ConfigError> {
        fn parse(
            setting: &'static str,
            list: impl IntoIterator<Item: AsRef<str>>,
        ) -> Result<Vec<IpNet>, ConfigError> {
            parse_nets(
                setting,
                list.into_iter()
                    .filter(|entry| !entry.as_ref().trim().is_empty()),
            )
        }
        let allow = parse("allow", allow)?;
        let deny = parse("deny", deny)?;
        Ok(IpSetBuilder { allow, deny }.build())
    }

    /// Whether `ip` is admitted.
    #[inline]
    #[must_use]
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.leaf(ip).is_allow()
    }

    /// The verdict for `ip`, with the prefix that decided it.
    #[must_use]
    pub fn decide(&self, ip: IpAddr) -> Verdict {
        let mut ip = canonical(ip);
        let mut leaf = self.leaf(ip);
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = ipv4_compatible(v6)
            && self.leaf_of(IpAddr::V6(v6)).is_allow()
        {
            // The IPv4 lists decided (see `leaf`): report their prefix.
            ip = IpAddr::V4(v4);
            leaf = self.leaf_of(ip);
        }
        let matched = leaf.matched_len().and_then(|len| match ip {
            IpAddr::V4(v4) => Ipv4Net::new(v4, len).ok().map(|n| IpNet::V4(n.trunc())),
            IpAddr::V6(v6) => Ipv6Net::new(v6, len).ok().map(|n| IpNet::V6(n.trunc())),
        });
        if leaf.is_allow() {
            Verdict::Allow(matched)
        } else {
            Verdict::Deny(matched)
        }
    }

    /// The verdict's leaf of an address: an IPv4-compatible IPv6 address
    /// allowed by the IPv6 lists is then judged by the IPv4 lists too.
    #[inline(always)]
    fn leaf(&self, ip: IpAddr) -> Leaf {
        let ip = canonical(ip);
        let leaf = self.leaf_of(ip);
        if let IpAddr::V6(v6) = ip
            && leaf.is_allow()
            && let Some(v4) = ipv4_compatible(v6)
        {
            return self.inner.v4.lookup(v4.to_bits());
        }
        leaf
    }

    /// The leaf of a canonical address in its own family's table.
    #[inline(always)]
    fn leaf_of(&self, ip: IpAddr) -> Leaf {
        match ip {
            IpAddr::V4(v4) => self.inner.v4.lookup(v4.to_bits()),
            IpAddr::V6(v6) => self.inner.v6.lookup(v6.to_bits()),
        }
    }

    /// Whether both lists are empty (the set then allows everything).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.allow_len == 0 && self.inner.deny_len == 0
    }

    /// The number of distinct prefixes in the allow list.
    #[must_use]
    pub fn allow_len(&self) -> usize {
        self.inner.allow_len
    }

    /// The number of distinct prefixes in the deny list.
    #[must_use]
    pub fn deny_len(&self) -> usize {
        self.inner.deny_len
    }

    /// Heap bytes held by the lookup tables.
    fn table_bytes(&self) -> usize {
        self.inner.v4.heap_bytes() + self.inner.v6.heap_bytes()
    }

    /// The shifts of the IPv4 and IPv6 nodes below the roots.
    #[cfg(test)]
    fn node_shifts(&self) -> (Vec<u8>, Vec<u8>) {
        (self.inner.v4.node_shifts(), self.inner.v6.node_shifts())
    }
}

/// The verdict of an [`IpSet`] for one address, with the prefix that
/// decided it: `None` when no prefix matched and the set's default applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Admitted: by this allow prefix, or (`None`) because the allow list is
    /// empty and nothing matched.
    Allow(Option<IpNet>),
    /// Refused: by this deny prefix (or one in both lists), or (`None`)
    /// because the allow list is non-empty and nothing matched.
    Deny(Option<IpNet>),
}

impl Verdict {
    /// Whether the address is admitted.
    #[must_use]
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The prefix that decided, if any matched.
    #[must_use]
    pub fn matched(self) -> Option<IpNet> {
        match self {
            Self::Allow(net) | Self::Deny(net) => net,
        }
    }
}

/// Collects the prefixes of an [`IpSet`]; see [`IpSet::builder`].
///
/// Host bits are ignored (`10.1.2.3/8` means `10.0.0.0/8`), duplicates are
/// harmless, and order does not matter.
#[derive(Clone, Default)]
#[must_use]
pub struct IpSetBuilder {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl fmt::Debug for IpSetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpSetBuilder")
            .field("allow", &self.allow.len())
            .field("deny", &self.deny.len())
            .finish()
    }
}

impl IpSetBuilder {
    /// Adds a prefix (or, from an [`IpAddr`], a single address) to the allow
    /// list.
    pub fn allow(mut self, net: impl Into<IpNet>) -> Self {
        self.allow.push(net.into());
        self
    }

    /// Adds a prefix (or, from an [`IpAddr`], a single address) to the deny
    /// list.
    pub fn deny(mut self, net: impl Into<IpNet>) -> Self {
        self.deny.push(net.into());
        self
    }

    /// Adds many prefixes to the allow list.
    pub fn allow_nets(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.allow.extend(nets);
        self
    }

    /// Adds many prefixes to the deny list.
    pub fn deny_nets(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.deny.extend(nets);
        self
    }

    /// Precomputes the lookup tables.
    ///
    /// # Panics
    ///
    /// Only if one address family would need more than 2^32 table blocks
    /// (hundreds of gigabytes), beyond the tables' 32-bit indices.
    pub fn build(self) -> IpSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (list, allow) in [(self.allow, true), (self.deny, false)] {
            for net in list {
                // `prefix_len` is at most 32 or 128.
                match normalize_net(net) {
                    IpNet::V4(n) => v4.push(Rule {
                        key: u32::from(n.network()),
                        len: n.prefix_len(),
                        allow,
                    }),
                    IpNet::V6(n) => v6.push(Rule {
                        key: u128::from(n.network()),
                        len: n.prefix_len(),
                        allow,
                    }),
                }
            }
        }
        let (allow4, deny4) = distinct(&mut v4);
        let (allow6, deny6) = distinct(&mut v6);
        let allow_len = allow4 + allow6;
        let deny_len = deny4 + deny6;
        let default_allow = allow_len == 0;
        IpSet {
            inner: Arc::new(Inner {
                v4: Table::build(v4, default_allow),
                v6: Table::build(v6, default_allow),
                allow_len,
                deny_len,
            }),
        }
    }
}

/// Sorts and deduplicates `rules` (keeping ties in both lists) and counts
/// the distinct allow and deny prefixes.
fn distinct<K: Ord + Copy>(rules: &mut Vec<Rule<K>>) -> (usize, usize) {
    rules.sort_unstable();
    rules.dedup();
    let allow = rules.iter().filter(|rule| rule.allow).count();
    (allow, rules.len() - allow)
}

/// The IPv4 address a deprecated IPv4-compatible IPv6 address
/// (`::a.b.c.d`) carries; `None` for other addresses and for `::/104`
/// (`::`, `::1` and the like are not IPv4 in disguise).
#[inline]
fn ipv4_compatible(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = v6.to_bits();
    let v4 = u32::try_from(bits).ok()?;
    (v4 >> 24 != 0).then(|| Ipv4Addr::from_bits(v4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_filter::splitmix::Rng;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn attack_ipv4_compatible_address_meets_the_ipv4_lists() {
        let deny = IpSet::from_lists(Vec::<&str>::new(), ["203.0.113.0/24"]).unwrap();
        assert!(!deny.is_allowed(ip("::203.0.113.9")));
        assert!(matches!(
            deny.decide(ip("::203.0.113.9")),
            Verdict::Deny(Some(n)) if n == net("203.0.113.0/24")
        ));
        assert!(deny.is_allowed(ip("::198.51.100.7")));
        assert!(deny.is_allowed(ip("::1")));
        let allow = IpSet::from_lists(["198.51.100.0/24"], Vec::<&str>::new()).unwrap();
        assert!(!allow.is_allowed(ip("::203.0.113.9")));
        // An IPv6 allow list does not open the IPv4 address it carries.
        let allow = IpSet::from_lists(["::/96"], Vec::<&str>::new()).unwrap();
        assert!(!allow.is_allowed(ip("::203.0.113.9")));
        assert!(allow.is_allowed(ip("::1")));
        // Both families allowed: admitted.
        let both = IpSet::from_lists(["::/96", "198.51.100.0/24"], Vec::<&str>::new()).unwrap();
        assert!(both.is_allowed(ip("::198.51.100.7")));
        assert!(matches!(
            both.decide(ip("::198.51.100.7")),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn empty_set_allows_everything() {
        let set = IpSet::default();
        assert!(set.is_empty());
        for addr in ["0.0.0.0", "8.8.8.8", "255.255.255.255", "::", "2001:db8::1"] {
            assert_eq!(set.decide(ip(addr)), Verdict::Allow(None), "{addr}");
        }
        let empty = IpSet::from_lists(["", "  "], [" "; 1]).unwrap();
        assert!(empty.is_empty());
        assert!(empty.is_allowed(ip("192.0.2.1")));
    }

    #[test]
    fn operator_case_deny_all_allow_subnet() {
        let set = IpSet::from_lists(["10.0.0.0/24"], ["0.0.0.0/0"]).unwrap();
        assert_eq!(
            set.decide(ip("10.0.0.5")),
            Verdict::Allow(Some(net("10.0.0.0/24")))
        );
        assert_eq!(
            set.decide(ip("8.8.8.8")),
            Verdict::Deny(Some(net("0.0.0.0/0")))
        );
        assert_eq!(
            set.decide(ip("10.0.1.0")),
            Verdict::Deny(Some(net("0.0.0.0/0")))
        );
        // IPv6 matches nothing and the allow list is non-empty.
        assert_eq!(set.decide(ip("2001:db8::1")), Verdict::Deny(None));
    }

    #[test]
    fn longest_prefix_wins_both_ways() {
        let set = IpSet::builder()
            .allow(net("10.0.0.0/8"))
            .deny(net("10.6.6.0/24"))
            .allow(net("10.6.6.6/32"))
            .build();
        assert!(set.is_allowed(ip("10.1.2.3")));
        assert!(!set.is_allowed(ip("10.6.6.5")));
        assert!(set.is_allowed(ip("10.6.6.6")));
        assert!(!set.is_allowed(ip("11.0.0.0")));
        assert_eq!(set.allow_len(), 2);
        assert_eq!(set.deny_len(), 1);
    }

    #[test]
    fn a_tie_denies() {
        let set = IpSet::from_lists(["192.0.2.0/24", "198.51.100.7"], ["192.0.2.0/24"]).unwrap();
        assert_eq!(
            set.decide(ip("192.0.2.1")),
            Verdict::Deny(Some(net("192.0.2.0/24")))
        );
        assert!(set.is_allowed(ip("198.51.100.7")));
        // The same prefix written differently is still a tie.
        let set = IpSet::from_lists(["192.0.2.77/24"], ["::ffff:192.0.2.0/120"]).unwrap();
        assert!(!set.is_allowed(ip("192.0.2.1")));
    }

    #[test]
    fn ipv6_and_ipv4_mapped() {
        let set = IpSet::from_lists(
            ["2001:db8::/32", "::ffff:10.0.0.0/104"],
            ["2001:db8:bad::/48", "::/0"],
        )
        .unwrap();
        assert!(set.is_allowed(ip("2001:db8:1::1")));
        assert_eq!(
            set.decide(ip("2001:db8:bad::1")),
            Verdict::Deny(Some(net("2001:db8:bad::/48")))
        );
        assert_eq!(
            set.decide(ip("2001:db9::1")),
            Verdict::Deny(Some(net("::/0")))
        );
        // The mapped allow prefix is 10.0.0.0/8, for both spellings of a
        // client address.
        assert_eq!(
            set.decide(ip("10.1.2.3")),
            Verdict::Allow(Some(net("10.0.0.0/8")))
        );
        assert_eq!(
            set.decide(ip("::ffff:10.1.2.3")),
            Verdict::Allow(Some(net("10.0.0.0/8")))
        );
        // `::/0` is IPv6 only; IPv4 outside the allow list falls to the
        // default, which is deny.
        assert_eq!(set.decide(ip("192.0.2.1")), Verdict::Deny(None));
        assert_eq!(set.decide(ip("::ffff:192.0.2.1")), Verdict::Deny(None));
    }

    #[test]
    fn edge_prefixes() {
        let set = IpSet::builder()
            .deny(net("0.0.0.0/0"))
            .allow(IpAddr::V4(Ipv4Addr::BROADCAST))
            .allow(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            .allow(net("::/0"))
            .deny(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
            .deny(net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
            .build();
        assert!(set.is_allowed(ip("255.255.255.255")));
        assert!(set.is_allowed(ip("0.0.0.0")));
        assert!(!set.is_allowed(ip("0.0.0.1")));
        assert!(!set.is_allowed(ip("255.255.255.254")));
        assert!(!set.is_allowed(ip("::")));
        assert!(set.is_allowed(ip("::1")));
        assert!(!set.is_allowed(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(set.is_allowed(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")));
        assert_eq!(set.decide(ip("::1")), Verdict::Allow(Some(net("::/0"))));
        assert_eq!(
            set.decide(ip("255.255.255.255")),
            Verdict::Allow(Some(net("255.255.255.255/32")))
        );
    }

    #[test]
    fn bad_entries_name_the_list_and_the_entry() {
        let err = IpSet::from_lists(["10.0.0.0/8", "10.0.0.0/33"], [""; 0]).unwrap_err();
        assert_eq!(err.setting(), "allow");
        assert!(err.message().contains("`10.0.0.0/33`"), "{err}");
        let err = IpSet::from_lists(["10.0.0.0/8"], ["example.com"]).unwrap_err();
        assert_eq!(err.setting(), "deny");
        assert!(err.message().contains("example.com"), "{err}");
        let err = err.for_setting("MCP_BLOCKED_IPS");
        assert_eq!(
            err.to_string(),
            "invalid MCP_BLOCKED_IPS: `example.com` is not an IP address or CIDR prefix"
        );
        for bad in [
            "10.0.0",
            "10.0.0.0/",
            "/8",
            "2001:db8::/129",
            "10.0.0.0/8/8",
            "::ffff:1.2.3.4/200",
        ] {
            assert!(IpSet::from_lists([bad], [""; 0]).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_shows_counts_not_entries() {
        let set = IpSet::from_lists(["10.0.0.0/8", "2001:db8::/32"], ["10.6.6.0/24"]).unwrap();
        let debug = format!("{set:?}");
        assert!(debug.starts_with("IpSet { allow: 2, deny: 1,"), "{debug}");
        assert!(!debug.contains("10.0.0.0"), "{debug}");
        let builder = IpSet::builder().allow(net("10.0.0.0/8"));
        assert_eq!(format!("{builder:?}"), "IpSetBuilder { allow: 1, deny: 0 }");
    }

    /// The semantics, by linear scan.
    fn naive(allow: &[IpNet], deny: &[IpNet], ip: IpAddr) -> Verdict {
        let ip = ip.to_canonical();
        let mut best: Option<(u8, bool, IpNet)> = None;
        for (list, allowed) in [(allow, true), (deny, false)] {
            for net in list {
                let net = normalize_net(*net);
                if !net.contains(&ip) {
                    continue;
                }
                let len = net.prefix_len();
                let better = match best {
                    None => true,
                    Some((best_len, best_allowed, _)) => {
                        len > best_len || (len == best_len && best_allowed && !allowed)
                    }
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

    /// Random prefixes that nest and collide: drawn around a few base
    /// addresses, with lengths biased to the edges.
    struct Gen {
        rng: Rng,
        bases4: Vec<u32>,
        bases6: Vec<u128>,
    }

    impl Gen {
        fn new(seed: u64, bases: usize) -> Self {
            let mut rng = Rng(seed);
            let bases4 = (0..bases).map(|_| rng.next() as u32).collect();
            let bases6 = (0..bases).map(|_| rng.u128()).collect();
            Self {
                rng,
                bases4,
                bases6,
            }
        }

        fn len(&mut self, width: u8) -> u8 {
            match self.rng.below(10) {
                0 => 0,
                1 | 2 => width,
                3 => width - 1,
                _ => self.rng.below(u64::from(width) + 1) as u8,
            }
        }

        fn v4(&mut self) -> u32 {
            let base = self.bases4[self.rng.below(self.bases4.len() as u64) as usize];
            // Flip a few low bits so that neighbours share long prefixes.
            base ^ (self.rng.next() as u32 >> (8 + self.rng.below(24)))
        }

        fn v6(&mut self) -> u128 {
            let base = self.bases6[self.rng.below(self.bases6.len() as u64) as usize];
            base ^ (self.rng.u128() >> (8 + self.rng.below(120)))
        }

        fn net(&mut self) -> IpNet {
            match self.rng.below(20) {
                0..=9 => {
                    let len = self.len(32);
                    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(self.v4()), len).unwrap())
                }
                10..=16 => {
                    let len = self.len(128);
                    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(self.v6()), len).unwrap())
                }
                // IPv4-mapped, written as IPv6 (and sometimes shorter than
                // the mapped range, so it stays IPv6).
                _ => {
                    let len = 96 + self.len(32);
                    let len = if self.rng.below(8) == 0 {
                        self.rng.below(96) as u8
                    } else {
                        len
                    };
                    let mapped = Ipv4Addr::from(self.v4()).to_ipv6_mapped();
                    IpNet::V6(Ipv6Net::new(mapped, len).unwrap())
                }
            }
        }

        /// Addresses at and around the rules' edges, near the bases, and
        /// anywhere.
        fn query(&mut self, rules: &[IpNet]) -> IpAddr {
            let pick = self.rng.below(10);
            if pick < 4 && !rules.is_empty() {
                let net = normalize_net(rules[self.rng.below(rules.len() as u64) as usize]);
                return match net {
                    IpNet::V4(n) => {
                        let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                        let key = match self.rng.below(5) {
                            0 => lo,
                            1 => hi,
                            2 => lo.wrapping_sub(1),
                            3 => hi.wrapping_add(1),
                            _ => lo | (self.rng.next() as u32 & (hi - lo)),
                        };
                        let v4 = Ipv4Addr::from(key);
                        if self.rng.below(4) == 0 {
                            IpAddr::V6(v4.to_ipv6_mapped())
                        } else {
                            IpAddr::V4(v4)
                        }
                    }
                    IpNet::V6(n) => {
                        let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                        let key = match self.rng.below(5) {
                            0 => lo,
                            1 => hi,
                            2 => lo.wrapping_sub(1),
                            3 => hi.wrapping_add(1),
                            _ => lo | (self.rng.u128() & (hi - lo)),
                        };
                        IpAddr::V6(Ipv6Addr::from(key))
                    }
                };
            }
            match pick {
                4 | 5 => IpAddr::V4(Ipv4Addr::from(self.v4())),
                6 => IpAddr::V6(Ipv4Addr::from(self.v4()).to_ipv6_mapped()),
                7 | 8 => IpAddr::V6(Ipv6Addr::from(self.v6())),
                _ if self.rng.below(2) == 0 => IpAddr::V4(Ipv4Addr::from(self.rng.next() as u32)),
                _ => IpAddr::V6(Ipv6Addr::from(self.rng.u128())),
            }
        }
    }

    fn check(seed: u64, bases: usize, rules: usize, queries: usize) -> IpSet {
        let mut g = Gen::new(seed, bases);
        let mut allow = Vec::new();
        let mut deny = Vec::new();
        for _ in 0..rules {
            let net = g.net();
            match g.rng.below(3) {
                0 => allow.push(net),
                1 => deny.push(net),
                // The same prefix in both lists.
                _ => {
                    allow.push(net);
                    deny.push(net);
                }
            }
        }
        // Sometimes only one list.
        match seed % 5 {
            0 => allow.clear(),
            1 => deny.clear(),
            _ => {}
        }
        let set = IpSet::builder()
            .allow_nets(allow.iter().copied())
            .deny_nets(deny.iter().copied())
            .build();
        let all: Vec<IpNet> = allow.iter().chain(&deny).copied().collect();
        for _ in 0..queries {
            let addr = g.query(&all);
            let expected = naive(&allow, &deny, addr);
            assert_eq!(set.decide(addr), expected, "seed {seed}, address {addr}");
            assert_eq!(
                set.is_allowed(addr),
                expected.is_allowed(),
                "seed {seed}, address {addr}"
            );
        }
        set
    }

    #[test]
    fn matches_a_linear_scan_on_small_random_sets() {
        for seed in 0..300 {
            check(
                seed,
                1 + (seed as usize % 7),
                1 + (seed as usize * 7) % 60,
                300,
            );
        }
    }

    #[test]
    fn matches_a_linear_scan_on_large_random_sets() {
        // Dense clusters around few bases (deep nodes, path compression,
        // full buckets) and spread-out sets (wide nodes).
        let dense = check(1001, 3, 3000, 4000);
        check(1002, 40, 3000, 4000);
        check(1003, 400, 2000, 3000);
        // The dense set really has nodes below the roots, on both halves of
        // IPv6 keys.
        let (v4, v6) = dense.node_shifts();
        assert!(!v4.is_empty());
        assert!(v6.iter().any(|&shift| shift < 64), "{v6:?}");
        assert!(v6.iter().any(|&shift| shift >= 64), "{v6:?}");
    }

    #[test]
    fn memory_is_linear() {
        let mut rng = Rng(7);
        let nets: Vec<IpNet> = (0..20_000)
            .map(|_| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), 32).unwrap()))
            .collect();
        let set = IpSet::builder().deny_nets(nets).build();
        // About 40k interval starts and leaves (6 bytes each) plus the
        // slots that index them.
        assert!(
            set.table_bytes() < 20_000 * 64,
            "{} bytes",
            set.table_bytes()
        );
    }
}

//! `IpSet` lookups against a linear `ipnet` scan and the `prefix-trie` crate,
//! at 10 to 1M prefixes, IPv4 and IPv6, for addresses that match a prefix
//! (hits) and addresses that match none (misses).
//!
//! Each benchmark answers one lookup per iteration from a rotating set of
//! 1024 addresses (read from memory at an index hidden from the optimiser),
//! so the reported time is the time per lookup. Before the lookups, the
//! bench prints how long the 1M-prefix sets take to build and how much
//! memory they hold (resident-set growth; the set's `Debug` output adds the
//! exact size of its tables).
//!
//! All three implementations answer with the same semantics (longest prefix
//! decides, a tie denies, unmatched is denied when the allow list is
//! non-empty); the bench checks that they agree on every address it asks.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use tower_warden::ip_filter::IpSet;

const SIZES: [usize; 4] = [10, 1_000, 100_000, 1_000_000];
/// The linear scan is skipped above this size (1M would take a quarter
/// second per sample).
const LINEAR_MAX: usize = 100_000;
const QUERIES: usize = 1024;

#[path = "../src/ip_filter/splitmix.rs"]
mod splitmix;
use splitmix::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        }
    }

    /// A prefix shaped like real lists: IPv4 mostly hosts and /24s with
    /// some /16-/31 networks; IPv6 hosts, /64s, /48s and /32-/127 inside
    /// 2000::/3.
    fn prefix(self, rng: &mut Rng) -> IpNet {
        match self {
            Self::V4 => {
                let len = match rng.below(10) {
                    0..=3 => 32,
                    4..=6 => 24,
                    _ => 16 + rng.below(16) as u8,
                };
                let addr = Ipv4Addr::from(rng.next() as u32);
                IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
            }
            Self::V6 => {
                let len = match rng.below(10) {
                    0..=2 => 128,
                    3..=5 => 64,
                    6 | 7 => 48,
                    _ => 32 + rng.below(96) as u8,
                };
                let addr = Ipv6Addr::from(self.random_key(rng));
                IpNet::V6(Ipv6Net::new(addr, len).unwrap().trunc())
            }
        }
    }

    /// A random address of the space the prefixes are drawn from.
    fn random_key(self, rng: &mut Rng) -> u128 {
        match self {
            Self::V4 => u128::from(rng.next() as u32),
            // Global unicast, 2000::/3.
            Self::V6 => (rng.u128() >> 3) | (1 << 125),
        }
    }

    fn addr(self, key: u128) -> IpAddr {
        match self {
            Self::V4 => IpAddr::V4(Ipv4Addr::from(key as u32)),
            Self::V6 => IpAddr::V6(Ipv6Addr::from(key)),
        }
    }
}

/// Half allow, half deny.
struct Lists {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Lists {
    fn generate(family: Family, size: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let mut allow = Vec::with_capacity(size / 2 + 1);
        let mut deny = Vec::with_capacity(size / 2 + 1);
        for _ in 0..size {
            let net = family.prefix(&mut rng);
            if rng.below(2) == 0 {
                allow.push(net);
            } else {
                deny.push(net);
            }
        }
        Self { allow, deny }
    }

    fn ip_set(&self) -> IpSet {
        IpSet::builder()
            .allow_nets(self.allow.iter().copied())
            .deny_nets(self.deny.iter().copied())
            .build()
    }

    fn all(&self) -> impl Iterator<Item = &IpNet> {
        self.allow.iter().chain(&self.deny)
    }
}

/// A linear scan over `ipnet` prefixes with the `IpSet` semantics, one list
/// per family.
struct Linear {
    v4: Vec<(Ipv4Net, bool)>,
    v6: Vec<(Ipv6Net, bool)>,
    default_allow: bool,
}

impl Linear {
    fn new(lists: &Lists) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (list, allow) in [(&lists.allow, true), (&lists.deny, false)] {
            for net in list {
                match net {
                    IpNet::V4(n) => v4.push((*n, allow)),
                    IpNet::V6(n) => v6.push((*n, allow)),
                }
            }
        }
        Self {
            v4,
            v6,
            default_allow: lists.allow.is_empty(),
        }
    }

    fn is_allowed(&self, ip: IpAddr) -> bool {
        // (prefix length, allow) of the best match so far.
        let mut best: Option<(u8, bool)> = None;
        let mut consider = |len: u8, allow: bool| {
            if best.is_none_or(|(l, a)| len > l || (len == l && a && !allow)) {
                best = Some((len, allow));
            }
        };
        match ip.to_canonical() {
            IpAddr::V4(addr) => {
                for (net, allow) in &self.v4 {
                    if net.contains(&addr) {
                        consider(net.prefix_len(), *allow);
                    }
                }
            }
            IpAddr::V6(addr) => {
                for (net, allow) in &self.v6 {
                    if net.contains(&addr) {
                        consider(net.prefix_len(), *allow);
                    }
                }
            }
        }
        best.map_or(self.default_allow, |(_, allow)| allow)
    }
}

/// `prefix-trie` maps with the `IpSet` semantics: deny entries are inserted
/// last, so a tie denies.
struct Trie {
    v4: PrefixMap<Ipv4Net, bool>,
    v6: PrefixMap<Ipv6Net, bool>,
    default_allow: bool,
}

impl Trie {
    fn new(lists: &Lists) -> Self {
        let mut v4 = PrefixMap::new();
        let mut v6 = PrefixMap::new();
        for (list, allow) in [(&lists.allow, true), (&lists.deny, false)] {
            for net in list {
                match net {
                    IpNet::V4(n) => v4.insert(*n, allow),
                    IpNet::V6(n) => v6.insert(*n, allow),
                };
            }
        }
        Self {
            v4,
            v6,
            default_allow: lists.allow.is_empty(),
        }
    }

    fn is_allowed(&self, ip: IpAddr) -> bool {
        let found = match ip.to_canonical() {
            IpAddr::V4(addr) => self.v4.get_lpm(&Ipv4Net::from(addr)).map(|(_, a)| *a),
            IpAddr::V6(addr) => self.v6.get_lpm(&Ipv6Net::from(addr)).map(|(_, a)| *a),
        };
        found.unwrap_or(self.default_allow)
    }
}

/// 1024 addresses inside random prefixes of the lists (hits), and 1024
/// that match no prefix (misses).
fn queries(family: Family, lists: &Lists, set: &IpSet, seed: u64) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut rng = Rng(seed);
    let all: Vec<&IpNet> = lists.all().collect();
    let hits = (0..QUERIES)
        .map(|_| {
            let net = all[rng.below(all.len() as u64) as usize];
            let addr = match net {
                IpNet::V4(n) => {
                    let host = u32::from(n.hostmask()) & rng.next() as u32;
                    IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
                }
                IpNet::V6(n) => {
                    let host = u128::from(n.hostmask()) & rng.u128();
                    IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
                }
            };
            assert!(set.decide(addr).matched().is_some());
            addr
        })
        .collect();
    let mut misses = Vec::with_capacity(QUERIES);
    while misses.len() < QUERIES {
        let addr = family.addr(family.random_key(&mut rng));
        if set.decide(addr).matched().is_none() {
            misses.push(addr);
        }
    }
    (hits, misses)
}

/// Resident and peak-resident memory of this process, in bytes (Linux).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak-resident counter (Linux); false when unsupported.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Builds `what` once, printing the time and the memory it holds (current
/// resident growth, and peak growth during the build).
fn measured<T>(label: &str, what: impl FnOnce() -> T) -> T {
    let peak_known = reset_peak();
    let (before, _) = rss();
    let start = Instant::now();
    let value = what();
    let elapsed = start.elapsed();
    let (after, peak) = rss();
    let peak = if peak_known {
        format!("{:.1} MiB", mib(peak.saturating_sub(before)))
    } else {
        "n/a".to_owned()
    };
    println!(
        "build {label}: {:.3} s, holds {:.1} MiB, peak during build +{peak}",
        elapsed.as_secs_f64(),
        mib(after.saturating_sub(before)),
    );
    value
}

struct Case {
    size: usize,
    set: IpSet,
    trie: Trie,
    linear: Option<Linear>,
    hits: Vec<IpAddr>,
    misses: Vec<IpAddr>,
}

impl Case {
    fn new(family: Family, size: usize) -> Self {
        let seed = size as u64 * 2 + u64::from(family == Family::V6);
        let lists = Lists::generate(family, size, seed);
        let big = size >= 1_000_000;
        let label = format!("{} {size}", family.name());
        let set = if big {
            measured(&format!("IpSet {label}"), || lists.ip_set())
        } else {
            lists.ip_set()
        };
        let trie = if big {
            measured(&format!("prefix-trie {label}"), || Trie::new(&lists))
        } else {
            Trie::new(&lists)
        };
        let linear = (size <= LINEAR_MAX).then(|| Linear::new(&lists));
        let (hits, misses) = queries(family, &lists, &set, seed ^ 0xabcd);
        for &addr in hits.iter().chain(&misses) {
            let expected = set.is_allowed(addr);
            assert_eq!(trie.is_allowed(addr), expected, "prefix-trie, {addr}");
            if let Some(linear) = &linear {
                assert_eq!(linear.is_allowed(addr), expected, "linear, {addr}");
            }
        }
        if big {
            println!("{label}: {set:?}");
        }
        Self {
            size,
            set,
            trie,
            linear,
            hits,
            misses,
        }
    }
}

/// One lookup per iteration, cycling through `addrs`.
fn lookups(c: &mut Criterion, group: &str, cases: &[Case], addrs: fn(&Case) -> &[IpAddr]) {
    let mut group = c.benchmark_group(group);
    for case in cases {
        let addrs = addrs(case);
        group.bench_function(BenchmarkId::new("ip_set", case.size), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % QUERIES;
                case.set.is_allowed(addrs[black_box(i)])
            });
        });
        group.bench_function(BenchmarkId::new("prefix_trie", case.size), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % QUERIES;
                case.trie.is_allowed(addrs[black_box(i)])
            });
        });
        if let Some(linear) = &case.linear {
            group.bench_function(BenchmarkId::new("linear", case.size), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % QUERIES;
                    linear.is_allowed(addrs[black_box(i)])
                });
            });
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(20)
        .configure_from_args();
    for family in [Family::V4, Family::V6] {
        let cases: Vec<Case> = SIZES.iter().map(|&size| Case::new(family, size)).collect();
        let name = family.name();
        lookups(&mut c, &format!("{name}_hit"), &cases, |case| &case.hits);
        lookups(&mut c, &format!("{name}_miss"), &cases, |case| &case.misses);
    }
    c.final_summary();
}

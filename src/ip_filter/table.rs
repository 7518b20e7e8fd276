//! The lookup structure behind [`IpSet`](super::IpSet), one per address
//! family.
//!
//! # Idea
//!
//! The allow and deny prefixes of one family are first flattened into
//! *elementary intervals*: a sorted list of interval starts, each carrying a
//! [`Leaf`] — the verdict of the longest prefix covering that interval and
//! that prefix's length (or "nothing matched"). Every address then belongs to
//! exactly one interval, and the answer for an address is the leaf of the
//! last start at or below it. Adjacent intervals with the same leaf are
//! merged, which is lossless: the matched prefix of an address is always the
//! address truncated to the matched length.
//!
//! A radix tree over the key bits finds that interval. Each node splits the
//! range it covers into `2^stride` equal slots; a slot holds
//!
//! * a leaf, when no interval starts strictly inside it,
//! * a bucket, when at most [`BUCKET_MAX`] starts fall inside it: a short run
//!   of the sorted starts that is counted branch-free,
//! * or a child node, when more starts fall inside it.
//!
//! Node strides grow with the number of starts they split (up to
//! [`MAX_STRIDE`] bits), so a node has about one start per slot, and a node
//! whose starts all share a longer common prefix than the slot it hangs from
//! skips those bits (path compression) instead of adding levels. Lookup cost
//! is bounded by the key width, not by the number of entries; in practice it
//! is one or two slot reads, a bucket of a few keys and one leaf read.
//! Memory is linear in the number of entries.
//!
//! Everything lives in flat boxed slices indexed by `u32`s packed into `u64`
//! slots: no pointers, no per-node allocation.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitXor, Not, Shl, Shr};

/// The most starts a bucket may hold before its slot gets a child node.
const BUCKET_MAX: usize = 8;

/// The widest a node may be, in bits (`2^20` slots of 8 bytes = 8 MiB).
const MAX_STRIDE: u32 = 20;

/// An address as an unsigned integer: `u32` for IPv4, `u128` for IPv6.
pub(super) trait Key:
    Copy
    + Ord
    + fmt::Debug
    + BitAnd<Output = Self>
    + BitOr<Output = Self>
    + BitXor<Output = Self>
    + Not<Output = Self>
    + Shl<u32, Output = Self>
    + Shr<u32, Output = Self>
{
    /// Key width in bits.
    const BITS: u32;
    /// All bits clear.
    const ZERO: Self;
    /// All bits set.
    const MAX: Self;
    /// `self + 1`, or `None` at the top of the address space.
    fn checked_inc(self) -> Option<Self>;
    /// The number of leading zero bits.
    fn leading_zeros(self) -> u32;
    /// The low 32 bits.
    fn low_u32(self) -> u32;
    /// Widens a slot number.
    fn from_u32(value: u32) -> Self;
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;
            const MAX: Self = <$t>::MAX;
            #[inline]
            fn checked_inc(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline]
            fn leading_zeros(self) -> u32 {
                <$t>::leading_zeros(self)
            }
            #[inline]
            #[allow(clippy::cast_possible_truncation)]
            fn low_u32(self) -> u32 {
                self as u32
            }
            #[inline]
            fn from_u32(value: u32) -> Self {
                Self::from(value)
            }
        }
    };
}

impl_key!(u32);
impl_key!(u128);

/// The bits of a `len`-bit prefix that are host bits (`len` ≥ width: none).
#[inline]
fn host_mask<K: Key>(len: u32) -> K {
    if len >= K::BITS {
        K::ZERO
    } else {
        K::MAX >> len
    }
}

/// The bits above the lowest `bits` bits (`bits` ≥ width: none).
#[inline]
fn high_mask<K: Key>(bits: u32) -> K {
    if bits >= K::BITS {
        K::ZERO
    } else {
        K::MAX << bits
    }
}

/// The verdict for one elementary interval: allow or deny, and the length
/// of the prefix that decided (or none: the set's default applied).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Leaf(u16);

impl Leaf {
    const ALLOW: u16 = 0x8000;
    const LEN: u16 = 0x00ff;
    /// What a lookup answers if the structure were ever inconsistent: deny.
    pub(super) const FAIL_CLOSED: Self = Self(0);

    /// Decided by a prefix of `len` bits.
    pub(super) fn matched(allow: bool, len: u8) -> Self {
        // `len + 1` fits: prefix lengths are at most 128.
        let len = u16::from(len) + 1;
        Self(if allow { Self::ALLOW | len } else { len })
    }

    /// Nothing matched; `allow` is the set's default.
    pub(super) fn unmatched(allow: bool) -> Self {
        Self(if allow { Self::ALLOW } else { 0 })
    }

    /// Whether the address is admitted.
    #[inline]
    pub(super) fn is_allow(self) -> bool {
        self.0 & Self::ALLOW != 0
    }

    /// The length of the prefix that decided, if any matched.
    #[inline]
    pub(super) fn matched_len(self) -> Option<u8> {
        // The stored value is `len + 1` ≤ 129.
        #[allow(clippy::cast_possible_truncation)]
        (self.0 & Self::LEN).checked_sub(1).map(|len| len as u8)
    }
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_allow() { "allow" } else { "deny" };
        match self.matched_len() {
            Some(len) => write!(f, "{verdict}/{len}"),
            None => write!(f, "{verdict}(default)"),
        }
    }
}

/// One rule of one family: a prefix (host bits clear) and its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rule<K> {
    pub(super) key: K,
    pub(super) len: u8,
    /// `false` (deny) sorts first, so that a tie keeps the deny.
    pub(super) allow: bool,
}

// Slot encoding, a `u64`:
//
// | tag (bits 62-63) | meaning                                              |
// |------------------|------------------------------------------------------|
// | 0 `LEAF`         | bits 0-15: the leaf                                  |
// | 1 `BUCKET`       | bits 0-31: first start index, bits 32-39: count      |
// | 2 `NODE`         | bits 0-31: first slot of the child block,            |
// |                  | bits 32-39: shift, bits 40-44: stride                |
// | 3 `SKIP`         | bits 0-31: index of a path-compressed node header    |
const TAG_SHIFT: u32 = 62;
const LEAF: u64 = 0;
const BUCKET: u64 = 1;
const NODE: u64 = 2;
const SKIP: u64 = 3;

fn leaf_slot(leaf: Leaf) -> u64 {
    (LEAF << TAG_SHIFT) | u64::from(leaf.0)
}

fn bucket_slot(first: u32, count: u8) -> u64 {
    (BUCKET << TAG_SHIFT) | (u64::from(count) << 32) | u64::from(first)
}

fn node_slot(base: u32, shift: u32, stride: u32) -> u64 {
    (NODE << TAG_SHIFT) | (u64::from(stride) << 40) | (u64::from(shift) << 32) | u64::from(base)
}

fn skip_slot(header: u32) -> u64 {
    (SKIP << TAG_SHIFT) | u64::from(header)
}

/// A path-compressed node: the keys of its range that do not share
/// `prefix` lie wholly below or above every start inside it.
#[derive(Clone, Copy, Debug)]
struct Skip<K> {
    mask: K,
    prefix: K,
    below: Leaf,
    above: Leaf,
    /// A `NODE` slot: where to continue when the prefix matches.
    next: u64,
}

/// The lookup table of one address family.
#[derive(Clone)]
pub(super) struct Table<K> {
    root: u64,
    slots: Box<[u64]>,
    skips: Box<[Skip<K>]>,
    starts: Box<[K]>,
    leaves: Box<[Leaf]>,
}

impl<K: Key> fmt::Debug for Table<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("intervals", &self.starts.len())
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// Converts a table index to the `u32` stored in slots.
///
/// # Panics
///
/// When a table would exceed `u32::MAX` entries, which needs more than a
/// billion prefixes in one address family.
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).expect("IpSet supports at most 2^31 prefixes per address family")
}

impl<K: Key> Table<K> {
    /// Builds the table for `rules`; unmatched addresses get `default`
    /// (`true` = allow).
    pub(super) fn build(mut rules: Vec<Rule<K>>, default_allow: bool) -> Self {
        rules.sort_unstable();
        // Same prefix in both lists: the deny sorts first and is kept.
        rules.dedup_by(|later, earlier| later.key == earlier.key && later.len == earlier.len);
        let (starts, leaves) = intervals(&rules, Leaf::unmatched(default_allow));
        let mut builder = Builder {
            starts: &starts,
            leaves: &leaves,
            slots: Vec::new(),
            skips: Vec::new(),
        };
        let root = builder.range(0, starts.len(), K::BITS);
        let Builder { slots, skips, .. } = builder;
        Self {
            root,
            slots: slots.into_boxed_slice(),
            skips: skips.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
            leaves: leaves.into_boxed_slice(),
        }
    }

    /// The number of elementary intervals.
    pub(super) fn intervals(&self) -> usize {
        self.starts.len()
    }

    /// Heap bytes held by the table.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
            + std::mem::size_of_val(&*self.skips)
            + std::mem::size_of_val(&*self.starts)
            + std::mem::size_of_val(&*self.leaves)
    }

    /// The leaf of the interval holding `key`.
    #[inline]
    pub(super) fn lookup(&self, key: K) -> Leaf {
        let mut slot = self.root;
        // Every step descends at least one bit, so this loop is bounded by
        // the key width; a malformed table fails closed rather than panics.
        loop {
            match slot >> TAG_SHIFT {
                LEAF => {
                    #[allow(clippy::cast_possible_truncation)]
                    return Leaf(slot as u16);
                }
                BUCKET => {
                    #[allow(clippy::cast_possible_truncation)]
                    let first = slot as u32 as usize;
                    let count = usize::from((slot >> 32) as u8);
                    let Some(starts) = self.starts.get(first..first + count) else {
                        return Leaf::FAIL_CLOSED;
                    };
                    let below = starts.iter().filter(|&&start| start <= key).count();
                    // `below == 0` only when `first > 0`: the interval
                    // covering the slot's beginning starts before it.
                    return match self.leaves.get((first + below).wrapping_sub(1)) {
                        Some(&leaf) => leaf,
                        None => Leaf::FAIL_CLOSED,
                    };
                }
                NODE => {
                    #[allow(clippy::cast_possible_truncation)]
                    let base = slot as u32 as usize;
                    let shift = u32::from((slot >> 32) as u8);
                    let stride = ((slot >> 40) & 0x1f) as u32;
                    let index = (key >> shift).low_u32() & ((1 << stride) - 1);
                    slot = match self.slots.get(base + index as usize) {
                        Some(&next) => next,
                        None => return Leaf::FAIL_CLOSED,
                    };
                }
                _ => {
                    #[allow(clippy::cast_possible_truncation)]
                    let Some(skip) = self.skips.get(slot as u32 as usize) else {
                        return Leaf::FAIL_CLOSED;
                    };
                    if key & skip.mask != skip.prefix {
                        return if key < skip.prefix {
                            skip.below
                        } else {
                            skip.above
                        };
                    }
                    slot = skip.next;
                }
            }
        }
    }
}

/// Flattens sorted, deduplicated rules into elementary intervals: sorted
/// starts (the first is 0) and their leaves, adjacent equal leaves merged.
fn intervals<K: Key>(rules: &[Rule<K>], default: Leaf) -> (Vec<K>, Vec<Leaf>) {
    let mut starts = Vec::with_capacity(2 * rules.len() + 1);
    let mut leaves = Vec::with_capacity(2 * rules.len() + 1);
    // Boundaries arrive in non-decreasing order; a later one at the same
    // position overrides an earlier one.
    let mut push = |start: K, leaf: Leaf| {
        if starts.last() == Some(&start) {
            if let Some(last) = leaves.last_mut() {
                *last = leaf;
            }
        } else {
            starts.push(start);
            leaves.push(leaf);
        }
    };
    push(K::ZERO, default);
    // The prefixes enclosing the current position: (last address, leaf).
    // Prefixes either nest or are disjoint, and rules come sorted by start
    // then length, so this is a proper stack.
    let mut open: Vec<(K, Leaf)> = Vec::new();
    for rule in rules {
        while let Some(&(end, _)) = open.last() {
            if end >= rule.key {
                break;
            }
            open.pop();
            let resume = open.last().map_or(default, |&(_, leaf)| leaf);
            // `end < rule.key`, so `end + 1` exists.
            if let Some(next) = end.checked_inc() {
                push(next, resume);
            }
        }
        let leaf = Leaf::matched(rule.allow, rule.len);
        open.push((rule.key | host_mask::<K>(u32::from(rule.len)), leaf));
        push(rule.key, leaf);
    }
    while let Some((end, _)) = open.pop() {
        let resume = open.last().map_or(default, |&(_, leaf)| leaf);
        if let Some(next) = end.checked_inc() {
            push(next, resume);
        }
    }
    // Merge runs of equal leaves, keeping each run's first start.
    let mut write = 0;
    for read in 0..starts.len() {
        if write == 0 || leaves[read] != leaves[write - 1] {
            starts[write] = starts[read];
            leaves[write] = leaves[read];
            write += 1;
        }
    }
    starts.truncate(write);
    leaves.truncate(write);
    (starts, leaves)
}

struct Builder<'a, K> {
    starts: &'a [K],
    leaves: &'a [Leaf],
    slots: Vec<u64>,
    skips: Vec<Skip<K>>,
}

impl<K: Key> Builder<'_, K> {
    /// The slot for an aligned range of `2^bits` keys in which exactly the
    /// starts `first..first + count` lie.
    fn range(&mut self, first: usize, count: usize, bits: u32) -> u64 {
        if count == 0 {
            // The interval covering this range began before it; there is
            // always one, because the very first start is key 0.
            return leaf_slot(self.leaves[first.saturating_sub(1)]);
        }
        let range_start = self.starts[first] & high_mask::<K>(bits);
        if count == 1 && self.starts[first] == range_start {
            return leaf_slot(self.leaves[first]);
        }
        if count <= BUCKET_MAX {
            // BUCKET_MAX fits in the 8-bit count.
            #[allow(clippy::cast_possible_truncation)]
            return bucket_slot(index_u32(first), count as u8);
        }
        self.node(first, count, bits)
    }

    /// A child node splitting the (at least two) starts
    /// `first..first + count`, which lie in an aligned range of `2^bits`.
    fn node(&mut self, first: usize, count: usize, bits: u32) -> u64 {
        let last = first + count - 1;
        let low = self.starts[first];
        // The starts differ in their lowest `span` bits and agree above.
        let span = K::BITS - (low ^ self.starts[last]).leading_zeros();
        let stride = ceil_log2(count).clamp(1, span.min(MAX_STRIDE));
        let shift = span - stride;
        let prefix = low & high_mask::<K>(span);
        let base = self.slots.len();
        let width = 1usize << stride;
        self.slots.resize(base + width, 0);
        let mut next = first;
        let end = first + count;
        for i in 0..width {
            // `i < 2^stride ≤ 2^20` fits a u32.
            #[allow(clippy::cast_possible_truncation)]
            let slot_key = (prefix | (K::from_u32(i as u32) << shift)) >> shift;
            let begin = next;
            while next < end && self.starts[next] >> shift == slot_key {
                next += 1;
            }
            let slot = self.range(begin, next - begin, shift);
            self.slots[base + i] = slot;
        }
        let node = node_slot(index_u32(base), shift, stride);
        if span >= bits {
            return node;
        }
        // The starts share more bits than the range does: test those bits
        // once instead of descending through them.
        let header = index_u32(self.skips.len());
        self.skips.push(Skip {
            mask: high_mask::<K>(span),
            prefix,
            below: self.leaves[first.saturating_sub(1)],
            above: self.leaves[last],
            next: node,
        });
        skip_slot(header)
    }
}

/// The smallest `s` with `2^s >= n` (for `n ≥ 1`).
fn ceil_log2(n: usize) -> u32 {
    usize::BITS - (n.max(1) - 1).leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(key: u32, len: u8, allow: bool) -> Rule<u32> {
        Rule { key, len, allow }
    }

    #[test]
    fn intervals_nest_and_merge() {
        // deny 0/0, allow 10.0.0.0/24 (0x0a000000), deny 10.0.0.128/25.
        let mut rules = vec![
            rule(0, 0, false),
            rule(0x0a00_0000, 24, true),
            rule(0x0a00_0080, 25, false),
        ];
        rules.sort_unstable();
        let (starts, leaves) = intervals(&rules, Leaf::unmatched(false));
        assert_eq!(starts, vec![0, 0x0a00_0000, 0x0a00_0080, 0x0a00_0100]);
        assert_eq!(
            leaves,
            vec![
                Leaf::matched(false, 0),
                Leaf::matched(true, 24),
                Leaf::matched(false, 25),
                Leaf::matched(false, 0),
            ]
        );
    }

    #[test]
    fn intervals_reach_the_top_of_the_space() {
        let mut rules = vec![rule(u32::MAX, 32, true), rule(0xffff_ff00, 24, false)];
        rules.sort_unstable();
        let (starts, leaves) = intervals(&rules, Leaf::unmatched(true));
        assert_eq!(starts, vec![0, 0xffff_ff00, u32::MAX]);
        assert_eq!(leaves[2], Leaf::matched(true, 32));
    }

    #[test]
    fn dense_clusters_use_skips_and_stay_correct() {
        // 4096 host routes packed into one /20 deep in the space: the root
        // is path-compressed.
        let rules: Vec<_> = (0..4096u32)
            .map(|i| rule(0xc633_6400 + i * 2, 32, i % 3 == 0))
            .collect();
        let table = Table::build(rules, false);
        assert!(!table.skips.is_empty());
        assert_eq!(table.lookup(0).matched_len(), None);
        assert_eq!(table.lookup(u32::MAX).matched_len(), None);
        for i in 0..4096u32 {
            let key = 0xc633_6400 + i * 2;
            assert_eq!(table.lookup(key), Leaf::matched(i % 3 == 0, 32), "{key:#x}");
            assert_eq!(table.lookup(key + 1), Leaf::unmatched(false), "{key:#x}");
        }
    }

    #[test]
    fn leaves_round_trip() {
        for len in 0..=128u8 {
            for allow in [false, true] {
                let leaf = Leaf::matched(allow, len);
                assert_eq!(leaf.is_allow(), allow);
                assert_eq!(leaf.matched_len(), Some(len));
            }
        }
        assert_eq!(Leaf::unmatched(true).matched_len(), None);
        assert!(!Leaf::FAIL_CLOSED.is_allow());
    }
}

//! The lookup structure behind [`IpSet`](super::IpSet), one per address
//! family.
//!
//! # Idea
//!
//! The allow and deny prefixes of one family are first flattened into
//! *elementary intervals*: a sorted list of interval starts, each carrying a
//! [`Leaf`] — the verdict of the longest prefix covering that interval and
//! that prefix's length (or "nothing matched"). Every address belongs to
//! exactly one interval: the one that starts at the last start at or below
//! it. Adjacent intervals with the same leaf are merged, which is lossless:
//! the matched prefix of an address is always the address truncated to the
//! matched length.
//!
//! A radix tree over the key bits then finds that interval. A node splits
//! the key range between its first and last start into `2^stride` equal
//! slots on the highest bits in which those two starts differ; each slot is
//! one cache-aligned [`Block`] holding either
//!
//! * a *window*: the (at most [`Block::WINDOW`]) starts that fall inside the
//!   slot and their leaves, plus the leaf in force where the slot begins.
//!   Counting the starts at or below a key is branch-free and picks the
//!   leaf from the same cache line(s); or
//! * a child node, when more starts fall inside the slot.
//!
//! Node strides grow with the number of starts they split (aiming at
//! [`Key::PER_SLOT`] starts per slot, up to [`MAX_STRIDE`] bits), so for
//! most sets a lookup is the root's arithmetic plus **one block read**.
//! To pick a slot, a key outside a node's first..=last start is clamped
//! into that range: it then lands in the first (or last) start's window,
//! where it counts below (or above) every start and so gets the leaf before
//! the node (or the last one in it). Splitting on the highest bits in which
//! the node's starts differ skips the bits they share (path compression),
//! without a branch. Lookup cost is bounded by the key width, never by the
//! number of entries, and memory is linear in the number of entries.
//!
//! Everything lives in one flat boxed slice of blocks indexed by `u32`: no
//! pointers, no per-node allocation.

use std::fmt;
use std::ops::{BitOr, BitXor, Shr};

/// The widest a node may be, in bits (`2^20` blocks).
const MAX_STRIDE: u32 = 20;

/// An address as an unsigned integer: `u32` for IPv4, `u128` for IPv6.
pub(super) trait Key:
    Copy + Ord + fmt::Debug + BitOr<Output = Self> + BitXor<Output = Self> + Shr<u32, Output = Self>
{
    /// Key width in bits.
    const BITS: u32;
    /// All bits clear.
    const ZERO: Self;
    /// All bits set.
    const MAX: Self;
    /// The average number of starts per slot a node aims for.
    const PER_SLOT: usize;
    /// The block holding a window of these keys.
    type Block: Block<Self>;
    /// `self + 1`, or `None` at the top of the address space.
    fn checked_inc(self) -> Option<Self>;
    /// The number of leading zero bits.
    fn leading_zeros(self) -> u32;
    /// The low 32 bits.
    fn low_u32(self) -> u32;
    /// The low 32 bits of `self`, clamped to `lo..=hi`, shifted right by
    /// `shift`: a node's slot number (plus the node's origin).
    fn slot(self, lo: Self, hi: Self, shift: u32) -> u32;
}

/// The bits of a `len`-bit prefix that are host bits (`len` ≥ width: none).
#[inline]
fn host_mask<K: Key>(len: u32) -> K {
    if len >= K::BITS {
        K::ZERO
    } else {
        K::MAX >> len
    }
}

/// A node: splits the keys `lo..=hi` (its first and last interval start)
/// into slots on the key bits from `shift` up to the highest bit in which
/// `lo` and `hi` differ, one block each.
///
/// The block of a key in `lo..=hi` is `origin + (key >> shift)`, modulo
/// 2^32: `origin` is the index of the node's first block minus the (low 32
/// bits of the) shifted common prefix of `lo` and `hi`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Node<K> {
    lo: K,
    hi: K,
    origin: u32,
    shift: u8,
}

/// One slot of a node, laid out in one (IPv4) or two (IPv6) cache lines.
pub(super) trait Block<K>: Copy + fmt::Debug {
    /// The most interval starts a window holds.
    const WINDOW: usize;
    /// A window of `starts` (at most [`WINDOW`](Self::WINDOW)) with their
    /// `leaves`; `before` is the leaf in force where the slot begins.
    fn window(starts: &[K], before: Leaf, leaves: &[Leaf]) -> Self;
    /// A child node.
    fn node(node: Node<K>) -> Self;
    /// The child node, if this block is one.
    fn child(&self) -> Option<Node<K>>;
    /// The leaf of `key` in this window.
    fn leaf(&self, key: K) -> Leaf;
}

macro_rules! key_and_block {
    (
        $key:ty,
        $block:ident,
        window = $window:literal,
        align = $align:literal,
        per_slot = $per_slot:literal,
        count = $count:ident,
        slot = $slot:ident $(,)?
    ) => {
        impl Key for $key {
            const BITS: u32 = <$key>::BITS;
            const ZERO: Self = 0;
            const MAX: Self = <$key>::MAX;
            const PER_SLOT: usize = $per_slot;
            type Block = $block;
            #[inline]
            fn checked_inc(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline]
            fn leading_zeros(self) -> u32 {
                <$key>::leading_zeros(self)
            }
            #[inline]
            #[allow(clippy::cast_possible_truncation)]
            fn low_u32(self) -> u32 {
                self as u32
            }
            #[inline]
            fn slot(self, lo: Self, hi: Self, shift: u32) -> u32 {
                $slot(self, lo, hi, shift)
            }
        }

        /// A block of
        #[doc = concat!("`", stringify!($key), "` keys.")]
        #[derive(Clone, Copy, Debug)]
        #[repr(C, align($align))]
        pub(super) struct $block {
            /// A window: sorted starts, padded with the maximum key.
            /// A node: `lo` and `hi`.
            starts: [$key; $window],
            /// A window: the leaf before the first start, then the leaf of
            /// each start, padded with the last one (so that the maximum
            /// key, which counts the padding too, gets it).
            leaves: [Leaf; $window + 1],
            origin: u32,
            shift: u8,
            /// Whether this block is a node rather than a window.
            is_node: bool,
        }

        impl Block<$key> for $block {
            const WINDOW: usize = $window;

            fn window(starts: &[$key], before: Leaf, leaves: &[Leaf]) -> Self {
                let mut block = Self {
                    starts: [<$key>::MAX; $window],
                    leaves: [before; $window + 1],
                    origin: 0,
                    shift: 0,
                    is_node: false,
                };
                let mut last = before;
                for (i, slot) in block.leaves.iter_mut().enumerate().skip(1) {
                    if let (Some(&start), Some(&leaf)) = (starts.get(i - 1), leaves.get(i - 1)) {
                        block.starts[i - 1] = start;
                        last = leaf;
                    }
                    *slot = last;
                }
                block
            }

            fn node(node: Node<$key>) -> Self {
                let mut starts = [<$key>::MAX; $window];
                starts[0] = node.lo;
                starts[1] = node.hi;
                Self {
                    starts,
                    leaves: [Leaf::FAIL_CLOSED; $window + 1],
                    origin: node.origin,
                    shift: node.shift,
                    is_node: true,
                }
            }

            #[inline]
            fn child(&self) -> Option<Node<$key>> {
                self.is_node.then(|| Node {
                    lo: self.starts[0],
                    hi: self.starts[1],
                    origin: self.origin,
                    shift: self.shift,
                })
            }

            #[inline]
            fn leaf(&self, key: $key) -> Leaf {
                match self.leaves.get($count(&self.starts, key) as usize) {
                    Some(&leaf) => leaf,
                    None => Leaf::FAIL_CLOSED,
                }
            }
        }
    };
}

/// The number of 8 sorted `starts` at or below `key`: a byte of ones per
/// start at or below (compilers build these with a few SIMD instructions),
/// which form a prefix whose length in bytes is the count.
#[inline]
fn count_8(starts: &[u32; 8], key: u32) -> u32 {
    let mut bytes = [0u8; 8];
    for (byte, &start) in bytes.iter_mut().zip(starts) {
        *byte = 0u8.wrapping_sub(u8::from(start <= key));
    }
    u64::from_le_bytes(bytes).trailing_ones() / 8
}

/// The number of `starts` at or below `key`: `N` minus the number above,
/// whose comparisons become borrow flags added up (scalar, for `u128`).
#[inline]
fn count_by_mask<K: Key, const N: usize>(starts: &[K; N], key: K) -> u32 {
    let mut above = 0u32;
    for &start in starts {
        above = above.wrapping_add(u32::from(key < start));
    }
    N as u32 - above
}

/// [`Key::slot`] for IPv4.
#[inline]
fn slot_u32(key: u32, lo: u32, hi: u32, shift: u32) -> u32 {
    key.clamp_to(lo, hi) >> shift
}

/// [`Key::slot`] for IPv6.
#[inline]
#[allow(clippy::cast_possible_truncation)]
fn slot_u128(key: u128, lo: u128, hi: u128, shift: u32) -> u32 {
    if shift >= 64 {
        // Only the high halves matter (the common case at the top of an
        // IPv6 table): clamp and shift those alone.
        let high = |k: u128| (k >> 64) as u64;
        (high(key).clamp_to(high(lo), high(hi)) >> (shift - 64)) as u32
    } else {
        (key.clamp_to(lo, hi) >> shift) as u32
    }
}

/// `Ord::clamp` without its assertion: `lo <= hi` holds by construction.
trait ClampTo: Ord + Sized {
    #[inline]
    fn clamp_to(self, lo: Self, hi: Self) -> Self {
        self.max(lo).min(hi)
    }
}

impl<T: Ord> ClampTo for T {}

// IPv4: 8 starts and 9 leaves in one 64-byte line.
key_and_block!(
    u32,
    Block4,
    window = 8,
    align = 64,
    per_slot = 4,
    count = count_8,
    slot = slot_u32
);
// IPv6: 6 starts and 7 leaves in one 128-byte pair of lines.
key_and_block!(
    u128,
    Block6,
    window = 6,
    align = 128,
    per_slot = 2,
    count = count_by_mask,
    slot = slot_u128
);

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

/// The lookup table of one address family.
#[derive(Clone)]
pub(super) struct Table<K: Key> {
    root: Node<K>,
    blocks: Box<[K::Block]>,
    intervals: usize,
}

impl<K: Key> fmt::Debug for Table<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("intervals", &self.intervals)
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// Converts a block index to the `u32` stored in nodes.
///
/// # Panics
///
/// When a table would exceed `2^32` blocks, which needs hundreds of
/// gigabytes of prefixes in one address family.
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).expect("IpSet supports at most 2^32 blocks per address family")
}

impl<K: Key> Table<K> {
    /// Builds the table for `rules`; unmatched addresses get `default`
    /// (`true` = allow).
    pub(super) fn build(mut rules: Vec<Rule<K>>, default_allow: bool) -> Self {
        rules.sort_unstable();
        // Same prefix in both lists: the deny sorts first and is kept.
        rules.dedup_by(|later, earlier| later.key == earlier.key && later.len == earlier.len);
        let (starts, leaves) = intervals(&rules, Leaf::unmatched(default_allow));
        drop(rules);
        let mut builder = Builder {
            starts: &starts,
            leaves: &leaves,
            blocks: Vec::new(),
        };
        // Allocate once, exactly: the blocks are most of the memory.
        let needed = builder.blocks_needed(0, starts.len());
        builder.blocks = Vec::with_capacity(needed);
        let root = builder.node(0, starts.len());
        debug_assert_eq!(builder.blocks.len(), needed);
        Self {
            root,
            blocks: builder.blocks.into_boxed_slice(),
            intervals: starts.len(),
        }
    }

    /// The number of elementary intervals.
    pub(super) fn intervals(&self) -> usize {
        self.intervals
    }

    /// Heap bytes held by the table.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.blocks)
    }

    /// The shifts of the nodes below the root.
    #[cfg(test)]
    pub(super) fn node_shifts(&self) -> Vec<u8> {
        self.blocks
            .iter()
            .filter_map(|block| block.child().map(|node| node.shift))
            .collect()
    }

    /// The leaf of the interval holding `key`.
    #[inline]
    pub(super) fn lookup(&self, key: K) -> Leaf {
        let root = &self.root;
        // The root's first start is key 0 (so clamping up is a no-op).
        let mut index = root
            .origin
            .wrapping_add(key.slot(K::ZERO, root.hi, u32::from(root.shift)));
        // Each node splits on lower bits than its parent, so this loop runs
        // at most once per key bit (and for most sets, once); a malformed
        // table fails closed rather than panics.
        loop {
            let Some(block) = self.blocks.get(index as usize) else {
                return Leaf::FAIL_CLOSED;
            };
            let Some(node) = block.child() else {
                return block.leaf(key);
            };
            index = node
                .origin
                .wrapping_add(key.slot(node.lo, node.hi, u32::from(node.shift)));
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

struct Builder<'a, K: Key> {
    starts: &'a [K],
    leaves: &'a [Leaf],
    blocks: Vec<K::Block>,
}

/// How a node splits its starts: on key bits `shift..shift + stride`.
#[derive(Clone, Copy)]
struct Split {
    shift: u32,
    stride: u32,
}

impl<K: Key> Builder<'_, K> {
    /// How to split the starts `first..first + count` (at least one).
    fn split(&self, first: usize, count: usize) -> Split {
        let lo = self.starts[first];
        let hi = self.starts[first + count - 1];
        // The starts differ in their lowest `span` bits and agree above.
        let span = K::BITS - (lo ^ hi).leading_zeros();
        let stride = if span == 0 {
            // A single start (the root of an empty table).
            0
        } else {
            ceil_log2(count.div_ceil(K::PER_SLOT)).clamp(1, span.min(MAX_STRIDE))
        };
        Split {
            shift: span - stride,
            stride,
        }
    }

    /// The number of blocks a node over the starts `first..first + count`
    /// needs, its descendants included.
    fn blocks_needed(&self, first: usize, count: usize) -> usize {
        let split = self.split(first, count);
        let mut total = 1usize << split.stride;
        let mut children = Vec::new();
        slots(self.starts, first, count, split, |_, begin, end| {
            if end - begin > K::Block::WINDOW {
                children.push((begin, end - begin));
            }
        });
        for (begin, count) in children {
            total += self.blocks_needed(begin, count);
        }
        total
    }

    /// A node over the starts `first..first + count` (at least one), with
    /// its blocks.
    fn node(&mut self, first: usize, count: usize) -> Node<K> {
        let split = self.split(first, count);
        let base = self.blocks.len();
        let empty = K::Block::window(&[], Leaf::FAIL_CLOSED, &[]);
        self.blocks.resize(base + (1 << split.stride), empty);
        let (starts, leaves) = (self.starts, self.leaves);
        let blocks = &mut self.blocks;
        let mut children = Vec::new();
        slots(starts, first, count, split, |slot, begin, end| {
            if end - begin > K::Block::WINDOW {
                children.push((slot, begin, end - begin));
            } else {
                // Where the slot begins, the interval of the last start
                // before it is in force (keys that are before the node's
                // first start count below it in its window and get this).
                let before = leaves[begin.saturating_sub(1)];
                blocks[base + slot] =
                    K::Block::window(&starts[begin..end], before, &leaves[begin..end]);
            }
        });
        for (slot, begin, count) in children {
            let child = self.node(begin, count);
            self.blocks[base + slot] = K::Block::node(child);
        }
        let lo = self.starts[first];
        // Index arithmetic modulo 2^32: see `Node`.
        let prefix = (lo >> split.shift).low_u32() & !((1 << split.stride) - 1);
        // `shift` < 128 fits.
        #[allow(clippy::cast_possible_truncation)]
        Node {
            lo,
            hi: self.starts[first + count - 1],
            origin: index_u32(base).wrapping_sub(prefix),
            shift: split.shift as u8,
        }
    }
}

/// Calls `each(slot, begin, end)` for every slot of `split` over
/// `starts[first..first + count]`, with the starts `begin..end` inside.
fn slots<K: Key>(
    starts: &[K],
    first: usize,
    count: usize,
    split: Split,
    mut each: impl FnMut(usize, usize, usize),
) {
    let end = first + count;
    let mask = (1u32 << split.stride) - 1;
    let mut next = first;
    for slot in 0..1usize << split.stride {
        let begin = next;
        while next < end && (starts[next] >> split.shift).low_u32() & mask == slot as u32 {
            next += 1;
        }
        each(slot, begin, next);
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
        assert!(table.root.lo == 0 && table.blocks.iter().any(|block| block.child().is_some()));
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

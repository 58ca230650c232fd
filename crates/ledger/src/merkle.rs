//! RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.
//!
//! Leaves are hashed as `SHA-256(0x00 || leaf)` and interior nodes as
//! `SHA-256(0x01 || left || right)`. The tree over `n` leaves splits at the largest power of
//! two below `n`, so every left subtree is perfect.
//!
//! Proofs are computed from stored subtree hashes ([`NodeSource`]), never by rehashing the log:
//! a proof touches `O(log n)` nodes. The verification functions need nothing but their
//! arguments and are what an offline auditor runs.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves, largest first:
/// everything needed to keep appending and to compute the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild from stored subtree roots (largest first, one per set bit of `size`).
    pub fn from_parts(size: u64, stack: Vec<Hash>) -> Option<Self> {
        (stack.len() == size.count_ones() as usize).then_some(Self { size, stack })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf hash. `completed` receives the hashes of every perfect subtree this leaf
    /// completes, from level 0 (the leaf itself) upward: the nodes the store keeps for proofs.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<Hash>) {
        completed.push(leaf);
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            // INVARIANT: one stack entry per set bit of `size`, so a set low bit has an entry.
            let Some(left) = self.stack.pop() else { break };
            hash = node_hash(&left, &hash);
            completed.push(hash);
            size >>= 1;
        }
        self.stack.push(hash);
        self.size += 1;
    }

    /// The tree root (the empty-tree root for size 0).
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        let mut acc = *last;
        for left in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Where a perfect subtree's hash lives: leaf `seq`'s list of completed nodes, at `level`.
///
/// The subtree at `level` with index `index` covers leaves `[index << level, (index + 1) <<
/// level)`; it is completed by its last leaf, `((index + 1) << level) - 1`.
pub fn node_position(level: u32, index: u64) -> Option<u64> {
    index
        .checked_add(1)?
        .checked_mul(1u64.checked_shl(level)?)?
        .checked_sub(1)
}

/// Number of nodes leaf `seq` completes (itself included): `trailing_ones(seq) + 1`.
pub fn completed_count(seq: u64) -> usize {
    seq.trailing_ones() as usize + 1
}

/// A source of perfect-subtree hashes.
pub trait NodeSource {
    /// Error of the source (a store error).
    type Error;
    /// Hash of the perfect subtree at `level` covering leaves `[index << level, (index + 1) << level)`.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Hash of leaves `[start, end)` where `start` is a multiple of a power of two `>= end - start`
/// (every range the RFC 6962 recursion produces): the right fold of its perfect subtrees.
pub fn range_hash<S: NodeSource>(src: &mut S, start: u64, end: u64) -> Result<Hash, S::Error> {
    debug_assert!(end > start);
    let mut parts = Vec::with_capacity(8);
    let mut pos = start;
    let width = end - start;
    for level in (0..64u32).rev() {
        let span = 1u64 << level;
        if width & span != 0 {
            parts.push(src.node(level, pos >> level)?);
            pos += span;
        }
    }
    let mut iter = parts.into_iter().rev();
    let mut acc = iter.next().unwrap_or_else(empty_root);
    for left in iter {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// Root of the tree of the first `size` leaves.
pub fn root_at<S: NodeSource>(src: &mut S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// Inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1), leaf side
/// first. Returns `None` when `index >= size`.
pub fn inclusion_proof<S: NodeSource>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if index >= size {
        return Ok(None);
    }
    let mut proof = Vec::with_capacity(64);
    // Walk from the root down, remembering siblings; reverse at the end (leaf side first).
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(Some(proof))
}

/// Consistency proof between the trees of `old` and `new` leaves (RFC 9162 §2.1.4.1). Returns
/// `None` when `old > new`; the proof is empty when `old == 0` or `old == new`.
pub fn consistency_proof<S: NodeSource>(
    src: &mut S,
    old: u64,
    new: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if old > new {
        return Ok(None);
    }
    let mut proof = Vec::with_capacity(64);
    if old == 0 || old == new {
        return Ok(Some(proof));
    }
    // SUBPROOF(m, D[lo:hi], b), iteratively; siblings are appended after the recursive part,
    // so collect them top-down and reverse.
    let (mut lo, mut hi, mut m, mut whole) = (0u64, new, old, true);
    let mut tail = Vec::with_capacity(64);
    loop {
        if m == hi - lo {
            if !whole {
                proof.push(range_hash(src, lo, hi)?);
            }
            break;
        }
        let k = split_point(hi - lo);
        if m <= k {
            tail.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            tail.push(range_hash(src, lo, lo + k)?);
            lo += k;
            m -= k;
            whole = false;
        }
    }
    tail.reverse();
    proof.extend(tail);
    Ok(Some(proof))
}

/// Why a proof did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index is not inside the tree.
    #[error("leaf index {index} is outside a tree of {size} events")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length for these tree sizes")]
    WrongLength,
    /// The recomputed root differs from the expected one.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// The old tree is larger than the new one.
    #[error("old tree size {old} is larger than new tree size {new}")]
    OldLarger {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
}

/// Verify that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verify that the tree of `old` leaves with `old_root` is a prefix of the tree of `new`
/// leaves with `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::OldLarger { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        // The empty tree is a prefix of every tree.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// An in-memory tree of leaf hashes that keeps every perfect subtree: the reference the stores
/// are tested against, and a [`NodeSource`] for small logs.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    /// `nodes[seq]` = hashes of the perfect subtrees leaf `seq` completes, level 0 first.
    nodes: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a leaf (its data, hashed here).
    pub fn push_data(&mut self, data: &[u8]) {
        self.push_leaf(leaf_hash(data));
    }

    /// Append a leaf hash.
    pub fn push_leaf(&mut self, leaf: Hash) {
        let mut completed = Vec::new();
        self.frontier.push(leaf, &mut completed);
        self.nodes.push(completed);
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    type Error = ProofError;

    fn node(&mut self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let seq = node_position(level, index).ok_or(ProofError::WrongLength)?;
        usize::try_from(seq)
            .ok()
            .and_then(|s| self.nodes.get(s))
            .and_then(|n| n.get(level as usize))
            .copied()
            .ok_or(ProofError::IndexOutOfRange {
                index: seq,
                size: self.size(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straight from the RFC 6962 definition, recursively over the leaf data.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_the_definition() {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..70u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            tree.push_leaf(leaf);
            assert_eq!(tree.root(), reference_root(&leaves), "size {}", i + 1);
            for size in 1..=leaves.len() as u64 {
                assert_eq!(
                    root_at(&mut tree, size).unwrap(),
                    reference_root(&leaves[..size as usize])
                );
            }
        }
    }

    #[test]
    fn all_proofs_verify_for_small_trees() {
        let mut tree = MemoryTree::new();
        for i in 0..40u32 {
            tree.push_data(&i.to_be_bytes());
        }
        for size in 1..=40u64 {
            let root = root_at(&mut tree, size).unwrap();
            for index in 0..size {
                let proof = inclusion_proof(&mut tree, index, size).unwrap().unwrap();
                let leaf = tree.node(0, index).unwrap();
                verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            }
            for old in 0..=size {
                let old_root = root_at(&mut tree, old).unwrap();
                let proof = consistency_proof(&mut tree, old, size).unwrap().unwrap();
                verify_consistency(old, size, &old_root, &root, &proof).unwrap();
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root(),
            [
                0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
                0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
                0x78, 0x52, 0xb8, 0x55
            ]
        );
    }
}

//! RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.
//!
//! * leaf hash: `SHA-256(0x00 || entry)`
//! * interior node: `SHA-256(0x01 || left || right)`
//! * `MTH({})` is `SHA-256("")`; `MTH(D[n])` for `n > 1` splits at `k`, the
//!   largest power of two smaller than `n` (RFC 9162 §2.1.1).
//!
//! Proof generation follows RFC 9162 §2.1.3.1 (`PATH`) and §2.1.4.1
//! (`SUBPROOF`); verification follows the algorithms of §2.1.3.2 and §2.1.4.2
//! step by step. Everything here works on leaf hashes, not on entries.

use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// `MTH({})`, the root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree sizes {old} and {new} do not satisfy old <= new <= available")]
    InvalidSizes { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
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

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Something that can give `MTH(D[start:end])` over a fixed list of leaves.
trait RangeHasher {
    fn range_hash(&self, start: u64, end: u64) -> Hash;
}

/// The naive, fully recursive MTH over a slice of leaf hashes.
struct Slice<'a>(&'a [Hash]);

impl RangeHasher for Slice<'_> {
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        match n {
            0 => EMPTY_ROOT,
            1 => self.0[start as usize],
            _ => {
                let k = split_point(n);
                node_hash(
                    &self.range_hash(start, start + k),
                    &self.range_hash(start + k, end),
                )
            }
        }
    }
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[start:end])`, appended to `out` bottom-up.
fn path<H: RangeHasher>(h: &H, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        path(h, m, start, start + k, out);
        out.push(h.range_hash(start + k, end));
    } else {
        path(h, m - k, start + k, end, out);
        out.push(h.range_hash(start, start + k));
    }
}

/// RFC 9162 §2.1.4.1 `SUBPROOF(m, D[start:end], b)`, appended bottom-up.
fn subproof<H: RangeHasher>(h: &H, m: u64, start: u64, end: u64, b: bool, out: &mut Vec<Hash>) {
    let n = end - start;
    if m == n {
        if !b {
            out.push(h.range_hash(start, end));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(h, m, start, start + k, b, out);
        out.push(h.range_hash(start + k, end));
    } else {
        subproof(h, m - k, start + k, end, false, out);
        out.push(h.range_hash(start, start + k));
    }
}

fn inclusion_in<H: RangeHasher>(h: &H, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(h, index, 0, size, &mut out);
    Ok(out)
}

fn consistency_in<H: RangeHasher>(h: &H, old: u64, new: u64) -> Vec<Hash> {
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(h, old, 0, new, true, &mut out);
    }
    out
}

/// `MTH` of a list of leaf hashes, computed by plain recursion.
pub fn root_of(leaves: &[Hash]) -> Hash {
    Slice(leaves).range_hash(0, leaves.len() as u64)
}

/// The inclusion proof of leaf `index` in the tree made of all of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    inclusion_in(&Slice(leaves), index, leaves.len() as u64)
}

/// The consistency proof from the tree of the first `old_size` leaves to the
/// tree of all of `leaves`. Empty when `old_size` is 0 or equals the size.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new = leaves.len() as u64;
    if old_size > new {
        return Err(ProofError::InvalidSizes { old: old_size, new });
    }
    Ok(consistency_in(&Slice(leaves), old_size, new))
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
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

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
///
/// The degenerate cases RFC 9162 leaves to the caller are decided strictly:
/// `old_size == new_size` needs an empty proof and equal roots, and
/// `old_size == 0` needs an empty proof and `old_root == EMPTY_ROOT`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::InvalidSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        let ok = if old_size == 0 {
            old_root == &EMPTY_ROOT
        } else {
            old_root == new_root
        };
        return if ok {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // Step 2: if `first` is an exact power of two, prepend `first_hash`.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*path[0], *path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
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

/// An append-only Merkle tree that keeps every complete subtree hash, so that
/// roots and proofs for any earlier size cost O(log n) hashes instead of O(n).
///
/// `levels[h][j]` is the hash of the perfect subtree of height `h` covering
/// leaves `[j * 2^h, (j + 1) * 2^h)`; `levels[0]` holds the leaf hashes.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The leaf hash at `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Option<&Hash> {
        self.levels.first()?.get(usize::try_from(index).ok()?)
    }

    /// Appends a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let mut h = 0;
        let mut node = leaf;
        loop {
            if self.levels.len() == h {
                self.levels.push(Vec::new());
            }
            self.levels[h].push(node);
            let len = self.levels[h].len();
            if len % 2 == 1 {
                break;
            }
            node = node_hash(&self.levels[h][len - 2], &self.levels[h][len - 1]);
            h += 1;
        }
        self.size() - 1
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.range_hash(0, self.size())
    }

    /// The root of the tree made of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::InvalidSizes {
                old: size,
                new: self.size(),
            });
        }
        Ok(self.range_hash(0, size))
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::InvalidSizes {
                old: size,
                new: self.size(),
            });
        }
        inclusion_in(self, index, size)
    }

    /// The consistency proof from size `old` to size `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if old > new || new > self.size() {
            return Err(ProofError::InvalidSizes { old, new });
        }
        Ok(consistency_in(self, old, new))
    }
}

impl RangeHasher for MerkleTree {
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return EMPTY_ROOT;
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            if let Some(hash) = self.levels.get(h).and_then(|l| l.get((start / n) as usize)) {
                return *hash;
            }
        }
        let k = split_point(n);
        node_hash(
            &self.range_hash(start, start + k),
            &self.range_hash(start + k, end),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root_of(&[]), EMPTY_ROOT);
        assert_eq!(MerkleTree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn leaf_and_node_prefixes() {
        let mut buf = vec![0x00];
        buf.extend_from_slice(b"abc");
        assert_eq!(leaf_hash(b"abc"), <[u8; 32]>::from(Sha256::digest(&buf)));
        let (l, r) = (leaf_hash(b"l"), leaf_hash(b"r"));
        let mut buf = vec![0x01];
        buf.extend_from_slice(&l);
        buf.extend_from_slice(&r);
        assert_eq!(node_hash(&l, &r), <[u8; 32]>::from(Sha256::digest(&buf)));
        assert_ne!(node_hash(&l, &r), node_hash(&r, &l));
    }
}

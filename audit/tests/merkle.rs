//! RFC 6962 / 9162 Merkle tree: published vectors, an independent reference
//! computation, exhaustive proof round trips and tampered proofs.

use cloister_audit::merkle::{
    self, consistency_proof, inclusion_proof, leaf_hash, root_of, verify_consistency,
    verify_inclusion, Hash, MerkleTree, ProofError, EMPTY_ROOT,
};
use sha2::{Digest, Sha256};

fn hx(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn h(s: &str) -> Hash {
    hx(s).try_into().unwrap()
}

/// The leaf inputs of the Certificate Transparency / transparency-dev tests.
const CT_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Published roots for sizes 0..=8 (transparency-dev/merkle testonly).
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Published hashes of every complete subtree of the 8-leaf tree, by level.
const CT_NODES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

// ---- an independent reference, written from RFC 6962 §2.1 with sha2 only ----

fn sha(parts: &[&[u8]]) -> Hash {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// MTH over raw entries, straight from the RFC's recursive definition.
fn reference_mth(entries: &[Vec<u8>]) -> Hash {
    match entries.len() {
        0 => sha(&[]),
        1 => sha(&[&[0x00], &entries[0]]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let (l, r) = (reference_mth(&entries[..k]), reference_mth(&entries[k..]));
            sha(&[&[0x01], &l, &r])
        }
    }
}

/// A second, bottom-up construction: hash pairs level by level, carrying an
/// unpaired last node up unchanged. Equal to MTH for every size.
fn bottom_up_root(entries: &[Vec<u8>]) -> Hash {
    if entries.is_empty() {
        return sha(&[]);
    }
    let mut level: Vec<Hash> = entries.iter().map(|e| sha(&[&[0x00], e])).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| match c {
                [l, r] => sha(&[&[0x01], l, r]),
                [x] => *x,
                _ => unreachable!(),
            })
            .collect();
    }
    level[0]
}

fn ct_entries() -> Vec<Vec<u8>> {
    CT_INPUTS.iter().map(|s| hx(s)).collect()
}

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
}

#[test]
fn empty_tree_hash() {
    assert_eq!(EMPTY_ROOT, h(CT_ROOTS[0]));
    assert_eq!(root_of(&[]), EMPTY_ROOT);
    assert_eq!(reference_mth(&[]), EMPTY_ROOT);
}

#[test]
fn ct_roots_match_published_and_reference() {
    let e = ct_entries();
    let leaves: Vec<Hash> = e.iter().map(|x| leaf_hash(x)).collect();
    let mut tree = MerkleTree::new();
    for n in 0..=8 {
        if n > 0 {
            tree.push(leaves[n - 1]);
        }
        let want = h(CT_ROOTS[n]);
        assert_eq!(reference_mth(&e[..n]), want, "reference, size {n}");
        assert_eq!(bottom_up_root(&e[..n]), want, "bottom-up, size {n}");
        assert_eq!(root_of(&leaves[..n]), want, "root_of, size {n}");
        assert_eq!(tree.root(), want, "MerkleTree, size {n}");
        assert_eq!(tree.root_at(n as u64).unwrap(), want);
    }
    for (n, root) in CT_ROOTS.iter().enumerate() {
        assert_eq!(tree.root_at(n as u64).unwrap(), h(root), "root_at {n}");
    }
    assert!(tree.root_at(9).is_err());
}

#[test]
fn ct_complete_subtrees_match_published() {
    let leaves: Vec<Hash> = ct_entries().iter().map(|x| leaf_hash(x)).collect();
    for (level, nodes) in CT_NODES.iter().enumerate() {
        let w = 1 << level;
        for (j, node) in nodes.iter().enumerate() {
            assert_eq!(
                root_of(&leaves[j * w..(j + 1) * w]),
                h(node),
                "level {level} node {j}"
            );
        }
    }
}

#[test]
fn ct_proofs_match_published() {
    let leaves: Vec<Hash> = ct_entries().iter().map(|x| leaf_hash(x)).collect();
    let hs = |v: &[&str]| v.iter().map(|s| h(s)).collect::<Vec<_>>();
    let inclusion: [(u64, usize, Vec<Hash>); 4] = [
        (0, 8, hs(&[CT_NODES[0][1], CT_NODES[1][1], CT_NODES[2][1]])),
        (5, 8, hs(&[CT_NODES[0][4], CT_NODES[1][3], CT_NODES[2][0]])),
        (2, 3, hs(&[CT_NODES[1][0]])),
        (1, 5, hs(&[CT_NODES[0][0], CT_NODES[1][1], CT_NODES[0][4]])),
    ];
    for (index, size, want) in inclusion {
        let got = inclusion_proof(&leaves[..size], index).unwrap();
        assert_eq!(got, want, "inclusion {index} in {size}");
        verify_inclusion(
            &leaves[index as usize],
            index,
            size as u64,
            &got,
            &h(CT_ROOTS[size]),
        )
        .unwrap();
    }
    // Published consistency proofs (2 -> 8, 6 -> 8) and derived ones.
    let consistency: [(u64, usize, Vec<Hash>); 4] = [
        (2, 8, hs(&[CT_NODES[1][1], CT_NODES[2][1]])),
        (6, 8, hs(&[CT_NODES[1][2], CT_NODES[1][3], CT_NODES[2][0]])),
        (1, 8, hs(&[CT_NODES[0][1], CT_NODES[1][1], CT_NODES[2][1]])),
        (2, 5, hs(&[CT_NODES[1][1], CT_NODES[0][4]])),
    ];
    for (m, n, want) in consistency {
        let got = consistency_proof(&leaves[..n], m).unwrap();
        assert_eq!(got, want, "consistency {m} -> {n}");
        verify_consistency(m, n as u64, &h(CT_ROOTS[m as usize]), &h(CT_ROOTS[n]), &got).unwrap();
    }
}

const N: usize = 64;

#[test]
fn roots_agree_with_reference_for_all_sizes() {
    let e = entries(N);
    let leaves: Vec<Hash> = e.iter().map(|x| leaf_hash(x)).collect();
    let mut tree = MerkleTree::new();
    for n in 0..=N {
        let want = reference_mth(&e[..n]);
        assert_eq!(bottom_up_root(&e[..n]), want);
        assert_eq!(root_of(&leaves[..n]), want, "size {n}");
        assert_eq!(tree.root(), want, "tree size {n}");
        if n < N {
            assert_eq!(tree.push(leaves[n]), n as u64);
        }
    }
    for n in 0..=N {
        assert_eq!(tree.root_at(n as u64).unwrap(), reference_mth(&e[..n]));
    }
}

#[test]
fn every_inclusion_proof_round_trips() {
    let leaves: Vec<Hash> = entries(N).iter().map(|x| leaf_hash(x)).collect();
    let mut tree = MerkleTree::new();
    leaves.iter().for_each(|l| {
        tree.push(*l);
    });
    let mut count = 0;
    for n in 1..=N {
        let root = root_of(&leaves[..n]);
        for i in 0..n as u64 {
            let p = inclusion_proof(&leaves[..n], i).unwrap();
            assert_eq!(tree.inclusion_proof(i, n as u64).unwrap(), p, "{i} in {n}");
            verify_inclusion(&leaves[i as usize], i, n as u64, &p, &root).unwrap();
            // The proof is for this leaf and this position only.
            for j in 0..n as u64 {
                if j != i {
                    assert!(verify_inclusion(&leaves[j as usize], i, n as u64, &p, &root).is_err());
                    assert!(verify_inclusion(&leaves[i as usize], j, n as u64, &p, &root).is_err());
                }
            }
            count += 1;
        }
        assert!(inclusion_proof(&leaves[..n], n as u64).is_err());
    }
    assert_eq!(count, N * (N + 1) / 2);
}

#[test]
fn every_consistency_proof_round_trips() {
    let leaves: Vec<Hash> = entries(N).iter().map(|x| leaf_hash(x)).collect();
    let mut tree = MerkleTree::new();
    leaves.iter().for_each(|l| {
        tree.push(*l);
    });
    let roots: Vec<Hash> = (0..=N).map(|n| root_of(&leaves[..n])).collect();
    let mut count = 0;
    for n in 0..=N {
        for m in 0..=n {
            let p = consistency_proof(&leaves[..n], m as u64).unwrap();
            assert_eq!(tree.consistency_proof(m as u64, n as u64).unwrap(), p);
            verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &p)
                .unwrap_or_else(|e| panic!("{m} -> {n}: {e}"));
            // Against the wrong old or new root it fails.
            if m > 0 && m < n {
                assert!(
                    verify_consistency(m as u64, n as u64, &roots[m - 1], &roots[n], &p).is_err()
                );
                assert!(
                    verify_consistency(m as u64, n as u64, &roots[m], &roots[n - 1], &p).is_err()
                );
            }
            count += 1;
        }
        assert!(consistency_proof(&leaves[..n], n as u64 + 1).is_err());
    }
    assert_eq!(count, (N + 1) * (N + 2) / 2);
}

fn flip(p: &[Hash], i: usize) -> Vec<Hash> {
    let mut q = p.to_vec();
    q[i][7] ^= 0x01;
    q
}

#[test]
fn tampered_inclusion_proofs_are_rejected() {
    let leaves: Vec<Hash> = entries(N).iter().map(|x| leaf_hash(x)).collect();
    for n in 2..=N {
        let root = root_of(&leaves[..n]);
        let n64 = n as u64;
        for i in 0..n64 {
            let leaf = &leaves[i as usize];
            let p = inclusion_proof(&leaves[..n], i).unwrap();
            for k in 0..p.len() {
                assert_eq!(
                    verify_inclusion(leaf, i, n64, &flip(&p, k), &root),
                    Err(ProofError::RootMismatch)
                );
            }
            if p.len() >= 2 && p[0] != p[1] {
                let mut s = p.clone();
                s.swap(0, 1);
                assert!(verify_inclusion(leaf, i, n64, &s, &root).is_err());
            }
            assert_eq!(
                verify_inclusion(leaf, i, n64, &p[..p.len() - 1], &root),
                Err(ProofError::WrongLength)
            );
            let mut long = p.clone();
            long.push([0xab; 32]);
            assert_eq!(
                verify_inclusion(leaf, i, n64, &long, &root),
                Err(ProofError::WrongLength)
            );
            assert!(verify_inclusion(leaf, i, n64, &p, &root_of(&leaves[..n - 1])).is_err());
            let mut bad_leaf = *leaf;
            bad_leaf[0] ^= 0x80;
            assert!(verify_inclusion(&bad_leaf, i, n64, &p, &root).is_err());
        }
        assert!(matches!(
            verify_inclusion(&leaves[0], n64, n64, &[], &root),
            Err(ProofError::IndexOutOfRange { .. })
        ));
    }
}

#[test]
fn tampered_consistency_proofs_are_rejected() {
    let leaves: Vec<Hash> = entries(N).iter().map(|x| leaf_hash(x)).collect();
    let roots: Vec<Hash> = (0..=N).map(|n| root_of(&leaves[..n])).collect();
    for n in 2..=N {
        for m in 1..n {
            let (m64, n64) = (m as u64, n as u64);
            let p = consistency_proof(&leaves[..n], m64).unwrap();
            assert!(!p.is_empty());
            for k in 0..p.len() {
                assert!(
                    verify_consistency(m64, n64, &roots[m], &roots[n], &flip(&p, k)).is_err(),
                    "flipped {k} of {m} -> {n}"
                );
            }
            if p.len() >= 2 && p[0] != p[1] {
                let mut s = p.clone();
                s.swap(0, 1);
                assert!(verify_consistency(m64, n64, &roots[m], &roots[n], &s).is_err());
            }
            assert!(verify_consistency(m64, n64, &roots[m], &roots[n], &p[..p.len() - 1]).is_err());
            let mut long = p.clone();
            long.push([0xcd; 32]);
            assert!(verify_consistency(m64, n64, &roots[m], &roots[n], &long).is_err());
            assert!(verify_consistency(m64, n64, &roots[m], &roots[n], &[]).is_err());
            // The proof is for these sizes only.
            assert!(
                verify_consistency(m64 + 1, n64, &roots[m + 1], &roots[n], &p).is_err()
                    || consistency_proof(&leaves[..n], m64 + 1).unwrap() == p
            );
        }
    }
    // Degenerate cases, decided strictly.
    let r = &roots;
    assert!(verify_consistency(4, 4, &r[4], &r[4], &[]).is_ok());
    assert_eq!(
        verify_consistency(4, 4, &r[4], &r[5], &[]),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(4, 4, &r[4], &r[4], &[r[0]]),
        Err(ProofError::WrongLength)
    );
    assert!(verify_consistency(0, 8, &EMPTY_ROOT, &r[8], &[]).is_ok());
    assert_eq!(
        verify_consistency(0, 8, &r[1], &r[8], &[]),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 8, &EMPTY_ROOT, &r[8], &[r[1]]),
        Err(ProofError::WrongLength)
    );
    assert!(matches!(
        verify_consistency(8, 4, &r[8], &r[4], &[]),
        Err(ProofError::InvalidSizes { .. })
    ));
}

#[test]
fn node_hash_is_not_leaf_hash() {
    // Second-preimage resistance between levels: a node's preimage as a leaf
    // hashes differently.
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let mut concat = a.to_vec();
    concat.extend_from_slice(&b);
    assert_ne!(merkle::node_hash(&a, &b), leaf_hash(&concat));
}

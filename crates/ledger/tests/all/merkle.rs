//! The Merkle tree against RFC 6962 (and ct-merkle): proofs verify for random sizes and
//! indexes, and fail for any flipped bit.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use proptest::prelude::*;
use remit_ledger::merkle::{
    Hash, MemoryTree, NodeSource, consistency_proof, inclusion_proof, leaf_hash, root_at,
    verify_consistency, verify_inclusion,
};
use sha2::Sha256;

fn leaves(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("event {i}").into_bytes()).collect()
}

fn tree(n: u64) -> (MemoryTree, MemoryBackedTree<Sha256, Vec<u8>>) {
    let mut ours = MemoryTree::new();
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for leaf in leaves(n) {
        ours.push_data(&leaf);
        theirs.push(leaf);
    }
    (ours, theirs)
}

fn flip(hashes: &mut [Hash], bit: usize) {
    let i = bit / 256;
    hashes[i][(bit % 256) / 8] ^= 1 << (bit % 8);
}

/// RFC 6962 section 2.1.3 test vectors as used by Certificate Transparency: roots of the
/// trees over the 8 reference leaves.
#[test]
fn rfc6962_reference_roots() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let mut tree = MemoryTree::new();
    for (input, root) in inputs.iter().zip(roots) {
        tree.push_data(input);
        assert_eq!(remit_ledger::hex::encode(&tree.root()), root);
    }
    assert_eq!(
        remit_ledger::hex::encode(&root_at(&mut tree, 0).unwrap()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn agrees_with_ct_merkle_up_to_100() {
    let (mut ours, mut theirs) = (
        MemoryTree::new(),
        MemoryBackedTree::<Sha256, Vec<u8>>::new(),
    );
    for leaf in leaves(100) {
        ours.push_data(&leaf);
        theirs.push(leaf);
        let n = ours.size();
        assert_eq!(
            &ours.root()[..],
            &theirs.root().as_bytes()[..],
            "root at {n}"
        );
        for idx in [0, n / 2, n - 1] {
            let a = inclusion_proof(&mut ours, idx, n)
                .unwrap()
                .unwrap()
                .concat();
            assert_eq!(
                a,
                theirs.prove_inclusion(idx as usize).as_bytes(),
                "inclusion {idx}/{n}"
            );
        }
        for old in [1, n / 3 + 1, n] {
            let a = consistency_proof(&mut ours, old, n)
                .unwrap()
                .unwrap()
                .concat();
            let b = theirs.prove_consistency((n - old) as usize);
            assert_eq!(a, b.as_bytes(), "consistency {old}->{n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn inclusion_verifies_and_any_flipped_bit_fails(size in 1u64..300, index_seed in any::<u64>(), bit_seed in any::<usize>()) {
        let index = index_seed % size;
        let (mut ours, _) = tree(size);
        let root = ours.root();
        let leaf = ours.node(0, index).unwrap();
        let proof = inclusion_proof(&mut ours, index, size).unwrap().unwrap();
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());
        // ct-merkle accepts our proof too.
        let ct_root = RootHash::<Sha256>::new(root.into(), size);
        let ct_proof = InclusionProof::<Sha256>::from_bytes(proof.concat());
        let leaf_data = format!("event {}", index).into_bytes();
        prop_assert!(ct_root.verify_inclusion(&leaf_data, index, &ct_proof).is_ok());

        // Flip one bit anywhere: in the proof, the leaf or the root.
        let total = (proof.len() + 2) * 256;
        let bit = bit_seed % total;
        let mut hashes: Vec<Hash> = proof.clone();
        hashes.push(leaf);
        hashes.push(root);
        flip(&mut hashes, bit);
        let (p, rest) = hashes.split_at(proof.len());
        prop_assert!(verify_inclusion(&rest[0], index, size, p, &rest[1]).is_err());
        // Wrong index or size fails as well.
        if size > 1 {
            prop_assert!(verify_inclusion(&leaf, (index + 1) % size, size, &proof, &root).is_err());
        }
    }

    #[test]
    fn consistency_verifies_and_any_flipped_bit_fails(new in 1u64..300, old_seed in any::<u64>(), bit_seed in any::<usize>()) {
        let old = 1 + old_seed % new;
        let (mut ours, _) = tree(new);
        let old_root = root_at(&mut ours, old).unwrap();
        let new_root = ours.root();
        let proof = consistency_proof(&mut ours, old, new).unwrap().unwrap();
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());
        if old < new {
            let ct_new = RootHash::<Sha256>::new(new_root.into(), new);
            let ct_old = RootHash::<Sha256>::new(old_root.into(), old);
            let ct_proof = ConsistencyProof::<Sha256>::try_from_bytes(proof.concat()).unwrap();
            prop_assert!(ct_new.verify_consistency(&ct_old, &ct_proof).is_ok());
        }
        let total = (proof.len() + 2) * 256;
        let bit = bit_seed % total;
        let mut hashes: Vec<Hash> = proof.clone();
        hashes.push(old_root);
        hashes.push(new_root);
        flip(&mut hashes, bit);
        let (p, rest) = hashes.split_at(proof.len());
        prop_assert!(verify_consistency(old, new, &rest[0], &rest[1], p).is_err());
    }
}

#[test]
fn proofs_reject_malformed_inputs() {
    let (mut ours, _) = tree(10);
    let root = ours.root();
    let leaf = leaf_hash(b"event 3");
    let proof = inclusion_proof(&mut ours, 3, 10).unwrap().unwrap();
    assert!(verify_inclusion(&leaf, 3, 10, &proof[..proof.len() - 1], &root).is_err());
    let mut longer = proof.clone();
    longer.push([0; 32]);
    assert!(verify_inclusion(&leaf, 3, 10, &longer, &root).is_err());
    assert!(verify_inclusion(&leaf, 10, 10, &proof, &root).is_err());
    assert!(inclusion_proof(&mut ours, 10, 10).unwrap().is_none());
    assert!(consistency_proof(&mut ours, 11, 10).unwrap().is_none());
    assert!(verify_consistency(5, 4, &root, &root, &[]).is_err());
    assert!(verify_consistency(4, 10, &root, &root, &[]).is_err());
    assert!(verify_consistency(0, 10, &root, &root, &[]).is_ok());
}

//! Golden vectors for the hashing policies.
//!
//! A node that hashes differently from its peers sends targets to the wrong
//! cache, and a release that changes the hash moves every target in a
//! running cluster. These vectors were recorded from the documented
//! definition (`stable_hash = fmix64(fnv1a64(bytes))`, ring points at
//! `stable_hash(node_le32 ++ vnode_le32)`); the FNV-1a values for "", "a"
//! and "foobar" are the published FNV test vectors. If one fails, the
//! placement changed: that needs a migration plan, not a new vector.

use std::time::Duration;

use iolite_cluster::policy::{
    BoundedLoadHash, ConsistentHash, LoadTable, ModHash, NodeId, Policy, PolicyKind, PolicyParams,
    Ring, TargetKey, fnv1a64, stable_hash,
};

#[test]
fn stable_hash_vectors() {
    let vectors: &[(&[u8], u64, u64)] = &[
        (b"", 0xcbf29ce484222325, 0xefd01f60ba992926),
        (b"a", 0xaf63dc4c8601ec8c, 0x82a2a958a9bece5b),
        (b"foobar", 0x85944171f73967e8, 0x2c22194922d1672b),
        (b"/index.html", 0xc0db15da98438971, 0x43f3e2a1af9f1352),
        (b"/obj/0", 0x383f5f536fb9ee24, 0xff058b4445141bf9),
        (
            b"/images/logo.png?v=2",
            0xd2fc5ad5091bf429,
            0x0dbdaab30b2ee199,
        ),
    ];
    for &(input, fnv, stable) in vectors {
        assert_eq!(fnv1a64(input), fnv, "fnv1a64({input:?})");
        assert_eq!(stable_hash(input), stable, "stable_hash({input:?})");
        assert_eq!(TargetKey::of(input), TargetKey(stable));
    }
}

#[test]
fn ring_point_vectors() {
    let want = [0x4a3a3a4ba6523826, 0x3ad01629b1ef6425, 0x190a8a604db7d6a0];
    for (v, &p) in want.iter().enumerate() {
        assert_eq!(Ring::point(NodeId(1), v as u32), p, "vnode {v}");
    }
}

fn four() -> Vec<NodeId> {
    (0..4).map(NodeId).collect()
}

fn keys() -> Vec<TargetKey> {
    (0..16)
        .map(|i| TargetKey::of(format!("/obj/{i}").as_bytes()))
        .collect()
}

const CHASH_4X160: [u32; 16] = [1, 3, 1, 2, 3, 3, 2, 0, 2, 3, 2, 3, 1, 3, 0, 2];
const MOD_4: [u32; 16] = [1, 2, 3, 1, 3, 2, 3, 3, 2, 3, 2, 0, 2, 0, 1, 0];
/// Bounded loads, c = 1.25, loads (10, 10, 0, 0): cap = ceil(1.25 * 21 / 4) = 7,
/// so targets owned by nodes 0 and 1 walk on to the next node under it.
const BOUNDED_4X160_10_10_0_0: [u32; 16] = [2, 3, 2, 2, 3, 3, 2, 3, 2, 3, 2, 3, 3, 3, 2, 2];

#[test]
fn consistent_hash_vectors() {
    let p = ConsistentHash::new(&four(), 160);
    let got: Vec<u32> = keys()
        .iter()
        .map(|&k| p.ring().owner(k).unwrap().0)
        .collect();
    assert_eq!(got, CHASH_4X160);
    // The same through the policy interface and PolicyKind::build, with any loads.
    let mut t = LoadTable::new(&four());
    t.set_load(NodeId(1), 500);
    let mut built = PolicyKind::ConsistentHash.build(&four(), &PolicyParams::default());
    let got: Vec<u32> = keys()
        .iter()
        .map(|&k| built.decide(k, &t, Duration::ZERO).unwrap().0)
        .collect();
    assert_eq!(got, CHASH_4X160);
}

#[test]
fn mod_hash_vectors() {
    let p = ModHash::new(&four());
    let got: Vec<u32> = keys().iter().map(|&k| p.lookup(k).unwrap().0).collect();
    assert_eq!(got, MOD_4);
}

#[test]
fn bounded_load_vectors() {
    let mut p = BoundedLoadHash::new(&four(), 160, 1.25);
    let idle = LoadTable::new(&four());
    let got: Vec<u32> = keys()
        .iter()
        .map(|&k| p.decide(k, &idle, Duration::ZERO).unwrap().0)
        .collect();
    assert_eq!(
        got, CHASH_4X160,
        "with no load it is plain consistent hashing"
    );
    let mut t = LoadTable::new(&four());
    for (n, l) in [(0, 10), (1, 10), (2, 0), (3, 0)] {
        t.set_load(NodeId(n), l);
    }
    assert_eq!(p.capacity(&t), 7);
    let got: Vec<u32> = keys()
        .iter()
        .map(|&k| p.decide(k, &t, Duration::ZERO).unwrap().0)
        .collect();
    assert_eq!(got, BOUNDED_4X160_10_10_0_0);
}

//! What a node parses from its peers: a gossip datagram, first as anyone
//! could send it (the packet checks must refuse it: nobody forges a tag
//! without the key), then sealed with the key as a member would send it
//! (it must open to the same bytes, once) and handed to foca as the agent
//! hands it: header, member updates and load broadcasts decoded, never a
//! panic.
#![no_main]

use std::net::SocketAddr;

use foca::AccumulatingRuntime;
use iolite_cluster::membership::packet::{
    self, ClusterKey, MAX_PACKET, OVERHEAD, Rejection, ReplayGuard,
};
use iolite_cluster::membership::{LoadBook, NodeIdentity, new_swim};
use iolite_core::config::ClusterTimers;
use libfuzzer_sys::fuzz_target;

const NOW_US: u64 = 1_800_000_000_000_000;
const WINDOW_US: u64 = 10_000_000;

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new(&[0x5a; 32]);
    let from: SocketAddr = "127.0.0.2:7946".parse().unwrap();
    let to: SocketAddr = "127.0.0.3:7946".parse().unwrap();
    let mut guard = ReplayGuard::new(WINDOW_US);

    // As received from anyone: refused, and for a reason that fits.
    match packet::open(&key, from, to, data, NOW_US, &mut guard) {
        Ok(_) => panic!("a packet opened without being sealed with the key"),
        Err(Rejection::Malformed) => {
            assert!(data.len() < OVERHEAD || data.len() > MAX_PACKET || data[0] != packet::VERSION)
        }
        Err(Rejection::BadMac) => {}
        Err(other) => panic!("an unauthenticated packet got as far as {other:?}"),
    }
    assert!(guard.is_empty());

    // As a member sends it: opens to the same payload, once.
    let mut sealed = Vec::new();
    packet::seal(&key, from, to, NOW_US, 7, data, &mut sealed);
    let payload = match packet::open(&key, from, to, &sealed, NOW_US, &mut guard) {
        Ok(p) => {
            assert_eq!(p, data);
            p
        }
        Err(Rejection::Malformed) => {
            assert!(sealed.len() > MAX_PACKET);
            return;
        }
        Err(other) => panic!("a sealed packet was refused: {other:?}"),
    };
    assert_eq!(
        packet::open(&key, from, to, &sealed, NOW_US, &mut guard),
        Err(Rejection::Replay)
    );

    // Then foca, as the agent runs it.
    let me = NodeIdentity {
        name: "n3".into(),
        peer: to,
        client: "127.0.0.3:8080".parse().unwrap(),
        generation: 1,
    };
    let mut swim = new_swim(me, &ClusterTimers::default(), 3, 1, LoadBook::default());
    let mut runtime = AccumulatingRuntime::new();
    let _ = swim.handle_data(payload, &mut runtime);
    while runtime.to_send().is_some() {}
    while runtime.to_schedule().is_some() {}
    while runtime.to_notify().is_some() {}
    for m in swim.iter_membership_state() {
        assert!(
            m.id().peer != to || m.state() == foca::State::Down,
            "foca took a live member at our own address"
        );
    }
});

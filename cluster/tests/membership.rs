//! Membership agents in one process on loopback addresses: they find each
//! other through seeds, gossip their loads, see a leaver go and refuse a
//! node with another key. (`tests/cluster_membership.rs` runs the same
//! with real `iolite serve` processes, SIGKILL included.)

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use iolite_cluster::membership::{MemberState, Membership, Settings};
use iolite_core::config::ClusterTimers;

/// A free UDP address on a loopback address of its own (127.x.y.z, drawn
/// from the clock and pid so parallel runs do not meet).
fn free_peer_addr(i: u8) -> SocketAddr {
    let seed = std::process::id() as u64 ^ agent_clock();
    let ip = std::net::Ipv4Addr::new(
        127,
        100 + (seed % 100) as u8,
        (seed / 100 % 250) as u8 + 1,
        i,
    );
    let s = UdpSocket::bind((ip, 0)).expect("bind a free port");
    s.local_addr().unwrap()
}

fn agent_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

fn fast() -> ClusterTimers {
    ClusterTimers {
        probe_period: Duration::from_millis(200),
        probe_rtt: Duration::from_millis(100),
        suspect_to_down: Duration::from_millis(500),
        gossip_period: Duration::from_millis(50),
        replay_window: Duration::from_secs(5),
    }
}

fn node(name: &str, peer: SocketAddr, seeds: &[SocketAddr], key: &[u8]) -> Membership {
    Membership::start(Settings {
        name: name.to_owned(),
        peer,
        client: SocketAddr::new(peer.ip(), 8080),
        seeds: seeds.to_vec(),
        key: key.to_vec(),
        timers: fast(),
    })
    .expect("start membership")
}

/// Waits (10 s at most) until `fact` holds of `m`'s view.
fn wait_for(m: &Membership, what: &str, fact: impl Fn(&iolite_cluster::View) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut watch = m.watch();
    loop {
        if fact(&watch.borrow_and_update()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never; view {:#?}",
            m.view()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn three_agents_join_gossip_loads_and_see_a_leaver_go() {
    let key = [42u8; 32];
    let peers: Vec<SocketAddr> = (1..=3).map(free_peer_addr).collect();
    let nodes: Vec<Membership> = (0..3)
        .map(|i| node(&format!("n{}", i + 1), peers[i], &peers[..1], &key))
        .collect();
    for m in &nodes {
        wait_for(m, "three alive", |v| v.count(MemberState::Alive) == 3);
    }
    let v = nodes[0].view();
    assert!(v.members[0].local && v.members[0].name == "n1");
    assert_eq!(
        v.members.iter().map(|m| m.client).collect::<Vec<_>>(),
        peers
            .iter()
            .map(|p| SocketAddr::new(p.ip(), 8080))
            .collect::<Vec<_>>()
    );

    nodes[2].set_load(17);
    for m in &nodes[..2] {
        wait_for(m, "n3's load", |v| {
            v.members.iter().any(|m| m.name == "n3" && m.load == 17)
        });
    }

    let mut nodes = nodes;
    let leaver = nodes.pop().unwrap();
    let at = Instant::now();
    leaver.stop();
    for m in &nodes {
        wait_for(m, "n3 down", |v| {
            v.members
                .iter()
                .any(|m| m.name == "n3" && m.state == MemberState::Down)
        });
    }
    eprintln!("a leaver was seen down after {:?}", at.elapsed());
}

#[test]
fn an_agent_with_another_key_is_never_let_in() {
    let peers: Vec<SocketAddr> = (1..=3).map(free_peer_addr).collect();
    let a = node("a", peers[0], &[], &[1u8; 32]);
    let b = node("b", peers[1], &peers[..1], &[1u8; 32]);
    wait_for(&a, "b joins", |v| v.count(MemberState::Alive) == 2);
    let intruder = node("intruder", peers[2], &peers[..2], &[2u8; 32]);
    let rejected = || {
        use iolite_core::metrics::MetricsSource as _;
        let mut out = Vec::new();
        a.report().samples(&mut out);
        out.iter()
            .find(|s| {
                s.name == "iolite_cluster_gossip_rejected_total"
                    && s.labels == [("reason", "bad_mac".to_owned())]
            })
            .map(|s| s.value)
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while rejected() < 3 {
        assert!(
            Instant::now() < deadline,
            "a never rejected the intruder's announces"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for m in [&a, &b] {
        assert!(m.view().members.iter().all(|m| m.name != "intruder"));
    }
    assert_eq!(
        intruder.view().members.len(),
        1,
        "the intruder knows nobody"
    );
}

//! Cluster membership with real `iolite serve` processes, one per loopback
//! address (127.A.B.1, 127.A.B.2, ...; A and B drawn per test so parallel
//! tests and runs do not meet): nodes find each other through seeds, a
//! SIGKILLed node is declared down within 3 s with the test's timers and
//! taken back when restarted, a node with another key never gets in, a
//! captured packet replayed is refused, and `check-config` reads
//! `[cluster]`.
//!
//! Every wait is on a fact the nodes report (their `/metrics`), with a
//! deadline; every process is stopped by its pid.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

mod support;

use support::{Node, metric_in, wait_for};

/// The failure detector's timers every test node runs with: a dead node
/// is down about probe_period + probe_rtt + suspect_to_down after its last
/// answer, well within 3 s.
const FAST_TIMERS: &str = "probe_period = \"200ms\"\nprobe_rtt = \"100ms\"\nsuspect_to_down = \"600ms\"\ngossip_period = \"100ms\"\n";

/// How long a fact may take to show when nothing is timed (joining).
const SETTLE: Duration = Duration::from_secs(20);

/// One test's corner of the loopback network, its key and its files.
struct Lab {
    dir: tempfile::TempDir,
    /// 127.A.B.0: node addresses are this plus 1, 2, ...
    base: [u8; 3],
}

impl Lab {
    fn new(tag: u8) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("site")).unwrap();
        std::fs::write(dir.path().join("site/index.html"), b"node\n").unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let mix = (std::process::id() ^ nanos).wrapping_mul(2_654_435_761);
        let lab = Lab {
            dir,
            base: [
                127,
                10 + (mix % 240) as u8,
                tag.wrapping_add((mix >> 8) as u8),
            ],
        };
        lab.write_key("cluster.key", &[0x5a; 32]);
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A key file readable by its owner only.
    fn write_key(&self, name: &str, key: &[u8]) {
        use std::os::unix::fs::PermissionsExt as _;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(self.path(name), hex + "\n").unwrap();
        std::fs::set_permissions(self.path(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Node `i`'s loopback address.
    fn ip(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.base[0], self.base[1], self.base[2], i)
    }

    /// A free UDP port on node `i`'s address.
    fn peer_addr(&self, i: u8) -> SocketAddr {
        UdpSocket::bind((self.ip(i), 0))
            .expect("a free UDP port")
            .local_addr()
            .unwrap()
    }

    /// Writes node `name`'s configuration: clients and admin on port 0 of
    /// its address, gossip on `peer`.
    fn config(&self, name: &str, peer: SocketAddr, seeds: &[SocketAddr], extra: &str) -> PathBuf {
        let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let ip = peer.ip();
        let text = format!(
            "listen = \"{ip}:0\"\nadmin = \"{ip}:0\"\nroot = \"site\"\nworkers = 1\n[log]\naccess = \"off\"\n\
             [cluster]\nname = \"{name}\"\npeer = \"{peer}\"\nseeds = [{}]\nkey_file = \"cluster.key\"\n{FAST_TIMERS}{extra}",
            seeds.join(", ")
        );
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Waits until every node sees `alive` members alive and none otherwise.
fn wait_for_members(nodes: &[&Node], alive: u64, down: u64, limit: Duration) -> Duration {
    wait_for(
        &format!("every node sees {alive} alive, {down} down"),
        limit,
        || {
            nodes.iter().all(|n| {
                let m = n.metrics();
                metric_in(&m, "iolite_cluster_members{state=\"alive\"}") == alive
                    && metric_in(&m, "iolite_cluster_members{state=\"suspect\"}") == 0
                    && metric_in(&m, "iolite_cluster_members{state=\"down\"}") == down
            })
        },
    )
}

fn members(n: &Node, state: &str) -> u64 {
    n.metric(&format!("iolite_cluster_members{{state=\"{state}\"}}"))
}

fn rejected(n: &Node, reason: &str) -> u64 {
    n.metric(&format!(
        "iolite_cluster_gossip_rejected_total{{reason=\"{reason}\"}}"
    ))
}

#[test]
fn three_nodes_join_a_killed_one_is_down_within_3s_and_rejoins_when_restarted() {
    let lab = Lab::new(1);
    let peers: Vec<SocketAddr> = (1..=3).map(|i| lab.peer_addr(i)).collect();
    // One seed list for every node (each skips its own address).
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| lab.config(&format!("n{}", i + 1), peers[i], &peers, ""))
        .collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&configs[i], &format!("n{}", i + 1)))
        .collect();
    let joined = wait_for_members(&nodes.iter().collect::<Vec<_>>(), 3, 0, SETTLE);
    eprintln!("3 nodes saw each other {joined:?} after the last start");
    let text = nodes[0].metrics();
    for name in ["n1", "n2", "n3"] {
        assert!(
            text.contains(&format!(
                "iolite_cluster_member_load{{member=\"{name}\"}} 0\n"
            )),
            "{text}"
        );
    }

    let victim = nodes.pop().unwrap();
    let killed = Instant::now();
    victim.kill();
    wait_for_members(&[&nodes[0], &nodes[1]], 2, 1, Duration::from_secs(3));
    let detected = killed.elapsed();
    eprintln!("n3 SIGKILLed: both others saw it down after {detected:?}");
    assert!(detected <= Duration::from_secs(3), "{detected:?}");

    let restarted = Node::start(&configs[2], "n3");
    let back = wait_for_members(&[&nodes[0], &nodes[1], &restarted], 3, 0, SETTLE);
    eprintln!("n3 restarted: every node saw it alive after {back:?}");
    let log = nodes[0].log.lock().unwrap().clone();
    for line in [
        "cluster: member down member=n3",
        "cluster: member up member=n3",
    ] {
        assert!(
            log.iter().filter(|l| l.contains(line)).count() >= 1,
            "{line:?} in {log:#?}"
        );
    }
    restarted.stop();
    // A node that stops says so: the others see it down at once.
    wait_for_members(&[&nodes[0], &nodes[1]], 2, 1, Duration::from_secs(3));
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_node_declared_down_while_alive_comes_back_by_itself() {
    // Paused (SIGSTOP) past the detector, b is declared down; resumed, it
    // learns so, renews its identity (a new generation) and rejoins, with
    // no seed of its own and nothing restarted.
    let lab = Lab::new(5);
    let peers: Vec<SocketAddr> = (1..=2).map(|i| lab.peer_addr(i)).collect();
    let a = Node::start(&lab.config("a", peers[0], &[], ""), "a");
    let b = Node::start(&lab.config("b", peers[1], &peers[..1], ""), "b");
    wait_for_members(&[&a, &b], 2, 0, SETTLE);
    kill(b.pid(), Signal::SIGSTOP).unwrap();
    wait_for_members(&[&a], 1, 1, Duration::from_secs(3));
    kill(b.pid(), Signal::SIGCONT).unwrap();
    wait_for_members(&[&a, &b], 2, 0, SETTLE);
    let log = b.log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| l.contains("rejoined as a new generation")),
        "{log:#?}"
    );
    drop(log);
    for n in [a, b] {
        n.stop();
    }
}

#[test]
fn a_node_with_another_key_never_gets_in_and_is_counted() {
    let lab = Lab::new(2);
    lab.write_key("other.key", &[0xa5; 32]);
    let peers: Vec<SocketAddr> = (1..=3).map(|i| lab.peer_addr(i)).collect();
    let a = Node::start(&lab.config("a", peers[0], &[], ""), "a");
    let b = Node::start(&lab.config("b", peers[1], &peers[..1], ""), "b");
    wait_for_members(&[&a, &b], 2, 0, SETTLE);
    let intruder_config = lab.config("intruder", peers[2], &peers[..2], "");
    let text = std::fs::read_to_string(&intruder_config)
        .unwrap()
        .replace("cluster.key", "other.key");
    std::fs::write(&intruder_config, text).unwrap();
    let intruder = Node::start(&intruder_config, "intruder");
    // It announces to both seeds again and again; both refuse every packet.
    wait_for("both refuse the intruder's packets", SETTLE, || {
        rejected(&a, "bad_mac") >= 5 && rejected(&b, "bad_mac") >= 5
    });
    for n in [&a, &b] {
        assert_eq!(
            (
                members(n, "alive"),
                members(n, "suspect"),
                members(n, "down")
            ),
            (2, 0, 0)
        );
        assert!(!n.metrics().contains("member=\"intruder\""));
    }
    assert_eq!(members(&intruder, "alive"), 1, "the intruder knows nobody");
    assert_eq!(
        intruder.metric("iolite_cluster_gossip_packets_total{direction=\"in\"}"),
        0
    );
    for n in [a, b, intruder] {
        n.stop();
    }
}

#[test]
fn a_captured_packet_is_taken_once_and_its_replay_refused() {
    let lab = Lab::new(3);
    let a_peer = lab.peer_addr(1);
    // The test stands where b will be, as a's only seed, and captures
    // what a sends there: announces, sealed for (a -> b's address).
    let b_peer = lab.peer_addr(2);
    let tap = UdpSocket::bind(b_peer).unwrap();
    tap.set_read_timeout(Some(SETTLE)).unwrap();
    let a = Node::start(&lab.config("a", a_peer, &[b_peer], ""), "a");
    let mut captured = vec![0u8; 2048];
    let (n, from) = tap
        .recv_from(&mut captured)
        .expect("a announces to its seed");
    captured.truncate(n);
    assert_eq!(from, a_peer);
    drop(tap);
    // a goes; the test takes its address, b takes its own. A long replay
    // window, so the first delivery is still fresh on a busy machine.
    a.kill();
    let forger = UdpSocket::bind(a_peer).unwrap();
    let b = Node::start(
        &lab.config("b", b_peer, &[], "replay_window = \"60s\"\n"),
        "b",
    );
    // Delivered once, it is a's announce: b takes a in.
    forger.send_to(&captured, b_peer).unwrap();
    wait_for("b takes the announce", SETTLE, || members(&b, "alive") == 2);
    assert_eq!(rejected(&b, "replay"), 0);
    // Every later copy is refused, and nothing else is.
    for _ in 0..3 {
        forger.send_to(&captured, b_peer).unwrap();
    }
    wait_for("b refuses the replays", SETTLE, || {
        rejected(&b, "replay") == 3
    });
    // Altered by one bit, it fails the MAC.
    let mut altered = captured.clone();
    altered[20] ^= 1;
    forger.send_to(&altered, b_peer).unwrap();
    wait_for("b refuses the altered copy", SETTLE, || {
        rejected(&b, "bad_mac") == 1
    });
    assert_eq!(rejected(&b, "malformed") + rejected(&b, "stale"), 0);
    b.stop();
}

#[test]
fn check_config_reads_a_cluster_table_and_reports_bad_ones_with_positions() {
    let lab = Lab::new(4);
    let peer = lab.peer_addr(1);
    let good = lab.config("n1", peer, &[lab.peer_addr(2)], "policy = \"chash-bl\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "  cluster     node n1 peer {peer} client (first listener), policy chash-bl\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  timers      probe 200ms (rtt 100ms), suspect to down 600ms, gossip 100ms, replay window 10s\n"
        ),
        "{stdout}"
    );
    let bad = lab.path("bad.toml");
    std::fs::write(
        &bad,
        "root = \"site\"\n[cluster]\nname = \"n 1\"\npeer = \"127.0.0.1:0\"\nkey_file = \"nokey\"\npolicy = \"random\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&bad.display().to_string(), "FILE");
    let stderr = stderr.replace(&lab.dir.path().display().to_string(), "TMP");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "FILE:3:8: cluster.name: bad node name \"n 1\": 1 to 64 letters, digits, '.', '_' or '-' are needed",
            "FILE:4:8: cluster.peer: 127.0.0.1:0 cannot be reached by peers: a specific IP and a port other than 0 are needed",
            "FILE:5:12: cluster.key_file: file \"TMP/nokey\" does not exist",
            "FILE:6:10: cluster.policy: unknown dispatch policy \"random\": expected \"lard-r\", \"wrr\", \"chash\", \"chash-bl\" or \"local\"",
            "4 errors in the configuration",
        ]
    );
}

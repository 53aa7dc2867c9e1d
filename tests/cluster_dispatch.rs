//! Dispatch and forwarding with real `iolite serve` processes, one per
//! loopback address (127.A.B.1, ...; A and B drawn per test): a target's
//! requests stick to its server set whichever node they arrive at, and
//! come back whole without a body byte copied in user space; the peer
//! listener refuses requests that are unsigned, signed with another key,
//! stale or replayed, and a client's imitation of peer fields is stripped;
//! a node SIGKILLed under load fails no GET sent through a survivor, and
//! restarted rejoins and takes work; a
//! target's set grows when its node passes T_high while another is under
//! T_low, and shrinks back after K (thresholds set by the test); past the
//! cluster-wide limit S requests wait in their node's bounded queue, and
//! past the queue get 503 with `Retry-After`; the owner of targets killed
//! (there is no single dispatcher: each target's owner decides for it),
//! the survivors decide its targets and no GET fails beyond those in
//! flight.
//!
//! Every wait is on a fact the nodes report (their `/metrics`), with a
//! deadline; every process is stopped by its pid.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use iolite_cluster::dispatch::auth::{Hop, Outgoing, PeerSigner};
use support::{Node, wait_for};

const FAST_TIMERS: &str = "probe_period = \"200ms\"\nprobe_rtt = \"100ms\"\nsuspect_to_down = \"600ms\"\ngossip_period = \"100ms\"\nreplay_window = \"2s\"\n";
const SETTLE: Duration = Duration::from_secs(20);
/// The cluster key file's text (the key is the file's bytes).
const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// Targets served, each a file of its own size and bytes.
const FILES: usize = 8;

fn file_body(i: usize) -> Vec<u8> {
    (0..3000 + 997 * i)
        .map(|j| b'a' + ((i + j) % 26) as u8)
        .collect()
}

struct Lab {
    dir: tempfile::TempDir,
    base: [u8; 3],
}

impl Lab {
    fn new(tag: u8) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("site")).unwrap();
        for i in 0..FILES {
            std::fs::write(dir.path().join(format!("site/f{i}.txt")), file_body(i)).unwrap();
        }
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
        use std::os::unix::fs::PermissionsExt as _;
        let key = lab.dir.path().join("cluster.key");
        std::fs::write(&key, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        lab
    }

    /// A free port on node `i`'s address for both UDP (gossip) and TCP
    /// (the peer listener).
    fn peer_addr(&self, i: u8) -> SocketAddr {
        let ip = Ipv4Addr::new(self.base[0], self.base[1], self.base[2], i);
        loop {
            let udp = UdpSocket::bind((ip, 0)).expect("a free UDP port");
            let addr = udp.local_addr().unwrap();
            if std::net::TcpListener::bind(addr).is_ok() {
                return addr;
            }
        }
    }

    /// Node `name`'s configuration: `extra` before `[cluster]`,
    /// `cluster_keys` at the end of it.
    fn config(
        &self,
        name: &str,
        peer: SocketAddr,
        seeds: &[SocketAddr],
        (extra, cluster_keys): (&str, &str),
    ) -> PathBuf {
        let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let ip = peer.ip();
        let text = format!(
            "listen = \"{ip}:0\"\nadmin = \"{ip}:0\"\nroot = \"site\"\nworkers = 1\n[log]\naccess = \"off\"\n\
             {extra}[cluster]\nname = \"{name}\"\npeer = \"{peer}\"\nseeds = [{}]\nkey_file = \"cluster.key\"\n{FAST_TIMERS}{cluster_keys}",
            seeds.join(", ")
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `n` nodes n1..nN, each seeded with all, started and joined;
    /// `extra` goes into each configuration before `[cluster]`,
    /// `cluster_keys` into `[cluster]`.
    fn cluster(&self, n: u8, extra: &str, cluster_keys: &str) -> Vec<Node> {
        let peers: Vec<SocketAddr> = (1..=n).map(|i| self.peer_addr(i)).collect();
        let nodes: Vec<Node> = (0..n as usize)
            .map(|i| {
                let name = format!("n{}", i + 1);
                Node::start(
                    &self.config(&name, peers[i], &peers, (extra, cluster_keys)),
                    &name,
                )
                .with_peer(peers[i])
            })
            .collect();
        wait_for("every node sees every other", SETTLE, || {
            nodes
                .iter()
                .all(|x| x.metric("iolite_cluster_members{state=\"alive\"}") == u64::from(n))
        });
        nodes
    }
}

/// One request on a connection of its own (`Connection: close`): the
/// head (status line and fields) and the body, read to the end.
fn exchange(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    (head, all[end + 4..].to_vec())
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The node that served an answer: its `X-Iolite-Node`, or the node asked.
fn served_by(head: &str, asked: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("x-iolite-node")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| asked.to_owned())
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

#[test]
fn a_targets_requests_stick_to_its_server_set_from_every_node_and_come_back_whole() {
    let lab = Lab::new(40);
    let hello = support::module_lib(&["iolite-example-hello"], "hello");
    let nodes = lab.cluster(
        3,
        &format!("[[module]]\nprefix = \"/hello\"\npath = \"{hello}\"\nprocesses_min = 1\nprocesses_max = 1\n"),
        "",
    );
    let mut servers: Vec<Vec<String>> = vec![Vec::new(); FILES];
    for round in 0..3 {
        for (i, server) in servers.iter_mut().enumerate() {
            for n in &nodes {
                let (head, body) = exchange(n.client, &get(&format!("/f{i}.txt")));
                assert_eq!(
                    status(&head),
                    200,
                    "round {round} f{i} via {}: {head}",
                    n.name
                );
                assert!(
                    body == file_body(i),
                    "f{i} via {}: the body differs",
                    n.name
                );
                server.push(served_by(&head, &n.name));
            }
        }
    }
    for (i, s) in servers.iter().enumerate() {
        assert!(
            s.windows(2).all(|w| w[0] == w[1]),
            "f{i} was served by more than one node: {s:?}"
        );
    }
    let forwarded: u64 = nodes
        .iter()
        .map(|n| n.metric("iolite_cluster_forwarded_total"))
        .sum();
    let decisions: u64 = nodes
        .iter()
        .map(|n| n.metric("iolite_cluster_decisions_total"))
        .sum();
    // Every request was decided once, by its target's owner; two of
    // every three arrived where their target is not served.
    assert_eq!(decisions, (3 * FILES * 3) as u64);
    assert!(forwarded >= (2 * FILES * 3) as u64, "forwarded {forwarded}");
    // A module mount runs where the request arrives: nothing forwarded.
    for n in &nodes {
        let (head, _) = exchange(n.client, &get("/hello"));
        assert_eq!(status(&head), 200, "/hello via {}: {head}", n.name);
        assert_eq!(served_by(&head, &n.name), n.name, "{head}");
    }
    let after: u64 = nodes
        .iter()
        .map(|n| n.metric("iolite_cluster_forwarded_total"))
        .sum();
    assert_eq!(after, forwarded, "a module request was forwarded");
    for n in &nodes {
        assert_eq!(
            n.metric("iolite_body_bytes_copied_total"),
            0,
            "{} copied body bytes",
            n.name
        );
        assert_eq!(n.metric("iolite_cluster_peer_errors_total"), 0);
    }
    for n in nodes {
        n.stop();
    }
}

/// A signed head for `target` on node `to`'s peer listener.
fn signed(key: &[u8], target: &str, at_us: u64, nonce: u128) -> String {
    let out = Outgoing {
        method: b"GET",
        target: target.as_bytes(),
        host: b"peer",
        ..Outgoing::default()
    };
    let lines = PeerSigner::new(key, "n9").sign(&out, Hop::Serve, at_us, nonce);
    format!("GET {target} HTTP/1.1\r\nhost: peer\r\nconnection: close\r\n{lines}\r\n")
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn the_peer_listener_refuses_forged_stale_and_replayed_requests_and_clients_cannot_pose_as_peers() {
    let lab = Lab::new(41);
    let nodes = lab.cluster(1, "", "");
    let n = &nodes[0];
    let refused = |reason: &str| {
        n.metric(&format!(
            "iolite_cluster_peer_refused_total{{reason=\"{reason}\"}}"
        ))
    };

    // No signature at all, on the peer listener.
    let (head, _) = exchange(n.peer(), &get("/f1.txt"));
    assert_eq!(status(&head), 403, "{head}");
    assert_eq!(refused("malformed"), 1);

    // Signed with another key; then peer fields a client made up.
    let (head, _) = exchange(n.peer(), &signed(&[b'a'; 64], "/f1.txt", now_us(), 1));
    assert_eq!(status(&head), 403, "{head}");
    assert_eq!(refused("bad_signature"), 1);
    let forged = "GET /f1.txt HTTP/1.1\r\nhost: peer\r\nconnection: close\r\nx-iolite-peer-node: n1\r\n\
                  x-iolite-peer-time: 1\r\nx-iolite-peer-nonce: 00000000000000000000000000000001\r\n\
                  x-iolite-peer-hop: serve\r\nx-iolite-peer-sig: 0000000000000000000000000000000000000000000000000000000000000000\r\n\r\n";
    let (head, _) = exchange(n.peer(), forged);
    assert_eq!(status(&head), 403, "{head}");
    assert_eq!(refused("bad_signature"), 2);

    // Signed with the key: served once; the same bytes again are refused.
    let good = signed(KEY.as_bytes(), "/f1.txt", now_us(), 2);
    let (head, body) = exchange(n.peer(), &good);
    assert_eq!(
        status(&head),
        200,
        "{head}\n{good}\nrefused: {:?}",
        ["malformed", "bad_signature", "stale", "replay", "body"].map(|r| (r, refused(r)))
    );
    assert_eq!(body, file_body(1));
    let (head, _) = exchange(n.peer(), &good);
    assert_eq!(status(&head), 403, "{head}");
    assert_eq!(refused("replay"), 1);

    // Captured and replayed after the window (2 s here), or made to look
    // older: stale.
    let old = signed(KEY.as_bytes(), "/f1.txt", now_us() - 5_000_000, 3);
    let (head, _) = exchange(n.peer(), &old);
    assert_eq!(status(&head), 403, "{head}");
    assert_eq!(refused("stale"), 1);
    let (head, _) = exchange(
        n.peer(),
        &signed(KEY.as_bytes(), "/f1.txt", now_us() + 5_000_000, 4),
    );
    assert_eq!(status(&head), 403, "{head}");
    assert_eq!(refused("stale"), 2);

    // A client sending peer fields to the client listener is served as a
    // client: the fields are stripped before any handler sees them.
    let (head, body) = exchange(n.client, forged);
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(body, file_body(1));
    assert_eq!(n.metric("iolite_cluster_served_for_peers_total"), 1);
    let (head, _) = exchange(n.client, &good);
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(
        n.metric("iolite_cluster_served_for_peers_total"),
        1,
        "a client's peer fields were taken for a peer's"
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_node_killed_under_load_fails_no_get_sent_through_a_survivor() {
    let lab = Lab::new(42);
    let mut nodes = lab.cluster(3, "", "");
    // Which node serves the targets (under light load LARD/R keeps each on
    // one node), and an entry node that is not it.
    let mut serving = std::collections::BTreeMap::new();
    for i in 0..FILES {
        let (head, _) = exchange(nodes[0].client, &get(&format!("/f{i}.txt")));
        *serving.entry(served_by(&head, &nodes[0].name)).or_insert(0) += 1;
    }
    let victim_name = serving
        .iter()
        .filter(|(name, _)| *name != "n1")
        .max_by_key(|(_, n)| **n)
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| "n3".to_owned());
    let victim_at = nodes.iter().position(|n| n.name == victim_name).unwrap();
    let entry = nodes[0].client;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    let i = k % FILES;
                    k += 1;
                    let (head, body) = exchange(entry, &get(&format!("/f{i}.txt")));
                    if status(&head) == 200 && body == file_body(i) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.lock().unwrap().push(head);
                    }
                }
            })
        })
        .collect();
    wait_for("some answers before the kill", SETTLE, || {
        ok.load(Ordering::Relaxed) >= 50
    });
    let victim = nodes.remove(victim_at);
    let victim_peer = victim.peer();
    let killed = Instant::now();
    victim.kill();
    let survivors: Vec<&Node> = nodes.iter().collect();
    wait_for(
        "the killed node is down on the survivors",
        Duration::from_secs(3),
        || {
            survivors
                .iter()
                .all(|n| n.metric("iolite_cluster_members{state=\"down\"}") == 1)
        },
    );
    eprintln!("{victim_name} SIGKILLed: down after {:?}", killed.elapsed());
    let after = ok.load(Ordering::Relaxed);
    wait_for("answers after the settling", SETTLE, || {
        ok.load(Ordering::Relaxed) >= after + 50
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    if !failures.is_empty() {
        for n in &nodes {
            let log = n.log.lock().unwrap();
            let notable: Vec<&String> = log
                .iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("forward"))
                .collect();
            eprintln!("{}'s log: {notable:#?}", n.name);
        }
    }
    assert!(failures.is_empty(), "failed GETs: {failures:#?}");
    let retries: u64 = nodes
        .iter()
        .map(|n| n.metric("iolite_cluster_retries_total"))
        .sum();
    eprintln!(
        "{} GETs answered, {retries} retried on another node",
        ok.load(Ordering::Relaxed)
    );
    assert!(retries >= 1, "no forward to the killed node was retried");

    // Restarted, it rejoins and takes work again: it owns targets once
    // more, and decides for them.
    let config = lab.dir.path().join(format!("{victim_name}.toml"));
    let back = Node::start(&config, &victim_name).with_peer(victim_peer);
    wait_for("the restarted node is alive on every node", SETTLE, || {
        nodes
            .iter()
            .chain([&back])
            .all(|n| n.metric("iolite_cluster_members{state=\"alive\"}") == 3)
    });
    for i in 0..FILES {
        let (head, body) = exchange(entry, &get(&format!("/f{i}.txt")));
        assert_eq!(status(&head), 200, "{head}");
        assert!(body == file_body(i), "f{i}: the body differs");
    }
    assert!(
        back.metric("iolite_cluster_decisions_total") > 0,
        "{victim_name} restarted decides nothing"
    );
    nodes.push(back);
    for n in nodes {
        n.stop();
    }
}

/// The server set of `target` as its owner's `/status` shows it (the
/// node names), or None if no node lists it.
fn server_set(nodes: &[Node], target: &str) -> Option<Vec<String>> {
    let cell = format!("<tr><td>{target}</td><td>");
    nodes.iter().find_map(|n| {
        let (_, body) = exchange(
            n.admin,
            "GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        let page = String::from_utf8_lossy(&body).into_owned();
        let row = &page[page.find(&cell)? + cell.len()..];
        let set = row.split("</td><td>").nth(1)?.split("</td>").next()?;
        Some(set.split(", ").map(str::to_owned).collect())
    })
}

#[test]
fn a_set_grows_when_its_node_passes_t_high_and_shrinks_after_k() {
    let lab = Lab::new(43);
    let big: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(lab.dir.path().join("site/big.bin"), &big).unwrap();
    drop(big);
    let k = Duration::from_secs(1);
    // The thresholds of this test: a node over 2 active requests is busy,
    // one under 1 idle; K = 1 s.
    let nodes = lab.cluster(3, "", "t_low = 1\nt_high = 2\nk = \"1s\"\n");
    let head = "HEAD /big.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let (h, _) = exchange(nodes[0].client, head);
    assert_eq!(status(&h), 200, "{h}");
    let first = served_by(&h, &nodes[0].name);
    assert_eq!(server_set(&nodes, "/big.bin"), Some(vec![first.clone()]));
    let busy = nodes.iter().find(|n| n.name == first).unwrap();

    // Three clients that ask for the big file at its node and do not read:
    // three active requests there, over T_high.
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(busy.client).unwrap();
            s.write_all(get("/big.bin").as_bytes()).unwrap();
            s
        })
        .collect();
    let load = format!("iolite_cluster_member_load{{member=\"{first}\"}}");
    wait_for("every node sees the busy node's load", SETTLE, || {
        nodes.iter().all(|n| n.metric(&load) >= 3)
    });
    // The next request goes to an idle node, and the set holds both.
    let (h, _) = exchange(nodes[0].client, head);
    let second = served_by(&h, &nodes[0].name);
    let grown = Instant::now();
    assert_ne!(second, first, "{h}");
    let mut set = server_set(&nodes, "/big.bin").unwrap();
    set.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(set, want);

    // Load gone, the set shrinks back to one node, not before K.
    drop(stalled);
    wait_for("the busy node's load gone", SETTLE, || {
        nodes.iter().all(|n| n.metric(&load) == 0)
    });
    let took = wait_for("the set shrinks", SETTLE, || {
        let (h, _) = exchange(nodes[1].client, head);
        assert_eq!(status(&h), 200, "{h}");
        server_set(&nodes, "/big.bin").is_some_and(|s| s.len() == 1)
    });
    let after = grown.elapsed();
    eprintln!("set grew to {want:?}, shrank {after:?} later ({took:?} after the load went)");
    assert!(
        after + Duration::from_millis(200) >= k,
        "shrank after {after:?}, K is {k:?}"
    );
    for n in nodes {
        n.stop();
    }
}

/// The requests in the cluster as `node` sees them: the sum of the
/// members' loads on its `/metrics`.
fn in_cluster(node: &Node) -> u64 {
    node.metrics()
        .lines()
        .filter(|l| l.starts_with("iolite_cluster_member_load{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn past_the_cluster_wide_limit_requests_queue_then_get_503_with_retry_after() {
    let lab = Lab::new(44);
    let big: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(lab.dir.path().join("site/big.bin"), &big).unwrap();
    drop(big);
    // 3 nodes with T_low = 1, T_high = 2: S = (3-1)*2 + 1 - 1 = 4
    // requests in the cluster; two more may wait on a node.
    let nodes = lab.cluster(
        3,
        "",
        "t_low = 1\nt_high = 2\nqueue = 2\nqueue_timeout = \"60s\"\n",
    );
    let entry = &nodes[0];
    // Four clients that ask for the big file and do not read: the cluster
    // holds S requests (each sent once the entry node sees the one before,
    // so none of them waits).
    let mut stalled = Vec::new();
    for k in 1..=4u64 {
        let mut s = TcpStream::connect(entry.client).unwrap();
        s.write_all(get("/big.bin").as_bytes()).unwrap();
        stalled.push(s);
        wait_for("the entry node sees the stalled request", SETTLE, || {
            in_cluster(entry) == k
        });
    }
    assert_eq!(entry.metric("iolite_cluster_queued_total"), 0);

    // Two more wait in the entry node's queue...
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let addr = entry.client;
            std::thread::spawn(move || exchange(addr, &get(&format!("/f{i}.txt"))))
        })
        .collect();
    wait_for("two requests waiting", SETTLE, || {
        entry.metric("iolite_cluster_waiting_requests") == 2
    });
    // ...and the next one is refused at once, saying when to come back.
    let t0 = Instant::now();
    let (head, _) = exchange(entry.client, &get("/f2.txt"));
    assert_eq!(status(&head), 503, "{head}");
    assert!(head.contains("Retry-After: 1"), "{head}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(entry.metric("iolite_cluster_queue_full_total"), 1);
    assert_eq!(entry.metric("iolite_cluster_waiting_requests"), 2);

    // One stalled client goes: there is room, and the waiting ones are
    // served in turn, whole.
    drop(stalled.remove(0));
    for (i, w) in waiting.into_iter().enumerate() {
        let (head, body) = w.join().unwrap();
        assert_eq!(status(&head), 200, "{head}");
        assert!(body == file_body(i), "f{i}: the body differs");
    }
    assert_eq!(entry.metric("iolite_cluster_queued_total"), 2);
    assert_eq!(entry.metric("iolite_cluster_waiting_requests"), 0);
    assert_eq!(entry.metric("iolite_cluster_queue_timeouts_total"), 0);
    drop(stalled);
    for n in nodes {
        n.stop();
    }
}

/// The node whose `/status` lists `target` among the targets it decided
/// (its owner, or the one before it), asking only `nodes`.
fn decider_of(nodes: &[&Node], target: &str) -> Option<String> {
    let cell = format!("<tr><td>{target}</td><td>");
    nodes.iter().find_map(|n| {
        let (_, body) = exchange(
            n.admin,
            "GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        String::from_utf8_lossy(&body)
            .contains(&cell)
            .then(|| n.name.clone())
    })
}

#[test]
fn the_owner_of_targets_killed_its_targets_are_decided_by_the_new_owners_and_no_get_fails() {
    let lab = Lab::new(45);
    let mut nodes = lab.cluster(3, "", "");
    // Every target once through n1, so each owner has decided its own.
    for i in 0..FILES {
        let (head, _) = exchange(nodes[0].client, &get(&format!("/f{i}.txt")));
        assert_eq!(status(&head), 200, "{head}");
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let owners: Vec<String> = (0..FILES)
        .map(|i| decider_of(&all, &format!("/f{i}.txt")).expect("an owner decided it"))
        .collect();
    // The victim: the node other than the entry n1 that owns most targets.
    let victim_name = ["n2", "n3"]
        .into_iter()
        .max_by_key(|v| owners.iter().filter(|o| o == v).count())
        .unwrap()
        .to_owned();
    let orphans: Vec<usize> = (0..FILES).filter(|&i| owners[i] == victim_name).collect();
    assert!(
        !orphans.is_empty(),
        "{victim_name} owns nothing: {owners:?}"
    );
    let victim_at = nodes.iter().position(|n| n.name == victim_name).unwrap();
    let others: Vec<&Node> = nodes.iter().filter(|n| n.name != victim_name).collect();
    for &i in &orphans {
        let target = format!("/f{i}.txt");
        assert_eq!(decider_of(&others, &target), None, "{target} decided twice");
    }
    let entry = nodes[0].client;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let threads = 2;
    let clients: Vec<_> = (0..threads)
        .map(|c| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    let i = k % FILES;
                    k += 1;
                    let (head, body) = exchange(entry, &get(&format!("/f{i}.txt")));
                    if status(&head) == 200 && body == file_body(i) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.lock().unwrap().push(head);
                    }
                }
            })
        })
        .collect();
    wait_for("some answers before the kill", SETTLE, || {
        ok.load(Ordering::Relaxed) >= 50
    });
    let victim = nodes.remove(victim_at);
    let killed = Instant::now();
    victim.kill();
    let survivors: Vec<&Node> = nodes.iter().collect();
    wait_for(
        "the killed owner is down on the survivors",
        Duration::from_secs(3),
        || {
            survivors
                .iter()
                .all(|n| n.metric("iolite_cluster_members{state=\"down\"}") == 1)
        },
    );
    eprintln!(
        "owner {victim_name} SIGKILLed: down after {:?}",
        killed.elapsed()
    );
    let decided_before: u64 = survivors
        .iter()
        .map(|n| n.metric("iolite_cluster_decisions_total"))
        .sum();
    let after = ok.load(Ordering::Relaxed);
    wait_for("answers after the settling", SETTLE, || {
        ok.load(Ordering::Relaxed) >= after + 100
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    // The dead owner's targets are decided by the survivors now: each is
    // on a survivor's list of targets it decided, and they keep deciding.
    for &i in &orphans {
        let target = format!("/f{i}.txt");
        let now = decider_of(&survivors, &target);
        assert!(
            now.as_ref().is_some_and(|n| *n != victim_name),
            "{target}, owned by {victim_name}, is decided by no survivor ({now:?})"
        );
    }
    let decided_after: u64 = survivors
        .iter()
        .map(|n| n.metric("iolite_cluster_decisions_total"))
        .sum();
    assert!(
        decided_after >= decided_before + 100,
        "the survivors decided {} requests after the kill",
        decided_after - decided_before
    );
    // At most the requests in flight at the kill may fail (one per client
    // thread); with the retry of a GET none should.
    let failures = failures.lock().unwrap();
    eprintln!(
        "{} GETs answered, {} failed; {victim_name} owned {orphans:?}",
        ok.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.len() <= threads, "failed GETs: {failures:#?}");
    for n in nodes {
        n.stop();
    }
}

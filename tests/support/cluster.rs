//! Cluster nodes under test: `iolite serve --config FILE` processes, each
//! with its log collected, its announced addresses and its `/metrics`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running node.
pub struct Node {
    pub name: String,
    child: Child,
    /// Where it takes clients, and its admin listener, as it announced them.
    pub client: SocketAddr,
    pub admin: SocketAddr,
    /// Its peer address, when the test gave it ([`Node::with_peer`]).
    peer: Option<SocketAddr>,
    /// Its log so far.
    pub log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Starts a node with `config` and waits for its two announced
    /// addresses.
    pub fn start(config: &Path, name: &str) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iolite"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start iolite");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut client, mut admin) = (None, None);
        for _ in 0..2 {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let line = line.trim();
            if let Some(a) = line.strip_prefix("admin on http://") {
                admin = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("listening on http://") {
                client = Some(a.parse().unwrap());
            }
        }
        let (Some(client), Some(admin)) = (client, admin) else {
            panic!(
                "{name} announced no addresses; log: {:#?}",
                log.lock().unwrap()
            );
        };
        Node {
            name: name.to_owned(),
            child,
            client,
            admin,
            peer: None,
            log,
            reader: Some(reader),
        }
    }

    /// The node's peer address, as its configuration gave it.
    pub fn with_peer(mut self, peer: SocketAddr) -> Node {
        self.peer = Some(peer);
        self
    }

    /// The peer address given with [`Node::with_peer`].
    pub fn peer(&self) -> SocketAddr {
        self.peer.expect("Node::with_peer")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Its `/metrics` page.
    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.admin).expect("admin listener");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    }

    /// One sample of `/metrics`: `name{labels}` (0 when absent).
    pub fn metric(&self, series: &str) -> u64 {
        metric_in(&self.metrics(), series)
    }

    /// SIGKILL, and the exit collected.
    pub fn kill(mut self) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
        self.reader.take().map(|r| r.join());
    }

    /// SIGTERM and the exit; the log must hold no ERROR line.
    pub fn stop(mut self) {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        self.reader.take().map(|r| r.join());
        let log = self.log.lock().unwrap();
        assert!(
            status.success(),
            "{} exited {status}; log: {log:#?}",
            self.name
        );
        let errors: Vec<&String> = log.iter().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors.is_empty(),
            "{} logged errors: {errors:#?}",
            self.name
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The value of `series` (`name{labels}`) in a `/metrics` page; 0 when
/// absent.
pub fn metric_in(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Waits until `fact` holds (checked every 20 ms), failing after `limit`;
/// returns how long it took.
pub fn wait_for(what: &str, limit: Duration, mut fact: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if fact() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! The server under test: `iolite serve` started on port 0, its log and
//! admin pages; and a document root for it to serve.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::http::{Response, connect, read_response};

/// A running `iolite serve` on port 0.
pub struct Iolite {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The log so far, and a signal for each line added.
    stderr: Arc<(Mutex<Vec<String>>, Condvar)>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Iolite {
    /// Starts the binary serving `root`, with `extra` flags.
    pub fn start(root: &Path, extra: &[&str]) -> Iolite {
        Self::start_as(root, extra, None)
    }

    /// [`Iolite::start`], as user `uid` (its own group) when given: the
    /// test must run as root for that.
    pub fn start_as(root: &Path, extra: &[&str], uid: Option<u32>) -> Iolite {
        Self::start_with(root, extra, uid, &[])
    }

    /// [`Iolite::start`] with these environment variables set.
    pub fn start_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Iolite {
        Self::start_with(root, extra, None, env)
    }

    fn start_with(root: &Path, extra: &[&str], uid: Option<u32>, env: &[(&str, &str)]) -> Iolite {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iolite"));
        cmd.envs(env.iter().copied());
        if let Some(uid) = uid {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, uid);
        }
        let child = cmd
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--root",
            ])
            .arg(root)
            .args(if extra.contains(&"--workers") {
                &[][..]
            } else {
                &["--workers", "2"][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start iolite");
        Self::announced(child)
    }

    /// `iolite serve` with exactly `args` (no listener, admin or root
    /// added: the args must give an admin listener).
    pub fn start_args(args: &[&str]) -> Iolite {
        let child = Command::new(env!("CARGO_BIN_EXE_iolite"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start iolite");
        Self::announced(child)
    }

    /// Reads the first listener and the admin address the server
    /// announces; the log is collected from then on.
    fn announced(mut child: Child) -> Iolite {
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .or_else(|| line.trim().strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("first line: {line:?}"));
        let addr = addr.parse().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let admin = line
            .trim()
            .strip_prefix("admin on http://")
            .unwrap_or_else(|| panic!("second line: {line:?}"));
        let admin = admin.parse().unwrap();
        let stderr = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Iolite {
            child,
            addr,
            admin,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A client connection with a generous read timeout (a hang fails the
    /// test instead of blocking it forever).
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate();
        self.wait()
    }

    /// [`Iolite::stop`] for a test that makes the server log errors on
    /// purpose: every ERROR line must be one `expected` accepts.
    pub fn stop_expecting(mut self, expected: impl Fn(&str) -> bool) -> ExitStatus {
        self.terminate();
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        let unexpected: Vec<String> = self
            .error_lines()
            .into_iter()
            .filter(|l| !expected(l))
            .collect();
        assert!(
            unexpected.is_empty(),
            "the server logged other errors: {unexpected:#?}"
        );
        status
    }

    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for the exit; then the whole log is in, and it must hold no
    /// ERROR line.
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        let errors = self.error_lines();
        assert!(errors.is_empty(), "the server logged errors: {errors:#?}");
        status
    }

    /// Every line the server logged so far (all of them after [`Iolite::wait`]).
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Waits until the log holds `n` lines matching `pred` (20 s at most,
    /// then the test fails showing the log); returns the matching lines.
    pub fn wait_for_lines(&self, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (lines, added) = &*self.stderr;
        let mut lines = lines.lock().unwrap();
        loop {
            let found: Vec<String> = lines.iter().filter(|l| pred(l)).cloned().collect();
            if found.len() >= n {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{n} matching log lines never came; the log:\n{}",
                lines.join("\n")
            );
            lines = added.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Lines the server logged at ERROR level so far.
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("ERROR"))
            .cloned()
            .collect()
    }

    /// One admin page's body.
    pub fn admin_get(&self, path: &str) -> Response {
        let mut s = connect(self.admin);
        write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
        read_response(&mut s, &mut Vec::new(), false)
    }

    /// The value of a metric without labels (or with the given label set).
    pub fn metric(&self, name: &str) -> u64 {
        let page = self.admin_get("/metrics");
        let text = String::from_utf8(page.body).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// The value of `name{module="prefix"}`: one module's figure.
    pub fn module_metric(&self, name: &str, prefix: &str) -> u64 {
        self.metric(&format!("{name}{{module=\"{prefix}\"}}"))
    }

    /// Waits until module `prefix`'s figure `name` reaches `at_least`
    /// (a fact the server reports), failing the test after 30 s.
    pub fn wait_for_module_metric(&self, name: &str, prefix: &str, at_least: u64) -> u64 {
        self.wait_for_metric(&format!("{name}{{module=\"{prefix}\"}}"), at_least)
    }

    /// Waits until the series `name` (labels included) reaches `at_least`,
    /// failing the test after 30 s: counters the server bumps after the
    /// response has left (the log and the request-finished hook run then).
    pub fn wait_for_metric(&self, name: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.metric(name);
            if now >= at_least {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {now}, below {at_least}, for 30 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs `iolite serve` on port 0 with no admin listener, serving `root`
/// with `extra` flags, until it exits: a server that must refuse to start.
/// Its exit status and output.
pub fn serve_refused(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "none",
            "--root",
        ])
        .arg(root)
        .args(extra)
        .output()
        .expect("run iolite")
}

impl Drop for Iolite {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A document root inside a temporary directory, with a file outside it.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let w = |p: &str, body: &[u8]| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        };
        w("hello.txt", b"hello, world\n");
        w("index.html", b"<!doctype html><title>root</title>\n");
        w("dir/index.html", b"<!doctype html><title>dir</title>\n");
        w("a b.txt", b"space\n");
        w("style.css", b"body{}\n");
        w("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>\n");
        w("noext", b"bytes\n");
        w("empty.txt", b"");
        std::fs::create_dir_all(root.join("emptydir")).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        w("big.bin", &big);
        std::fs::write(dir.path().join("secret.txt"), b"outside the root\n").unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("link-in")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link-out")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("link-out-rel")).unwrap();
        std::os::unix::fs::symlink("/", root.join("link-slash")).unwrap();
        Site { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

//! CGI/1.1 through the real binary: shell, Perl and Python programs (the
//! fixtures below, written into a temporary folder), each run as a
//! process per request by `iolite serve --config` with a `[[cgi]]` mount.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{Iolite, children, closed, fd_count, get, read_response, request};

/// The programs, by name: written into `bin/`, mode 755.
const PROGRAMS: &[(&str, &str)] = &[
    ("env.sh", ENV_SH),
    ("env.pl", ENV_PL),
    ("env.py", ENV_PY),
    (
        "post.pl",
        r#"#!/usr/bin/perl
use Digest::MD5;
binmode STDIN;
my $want = $ENV{CONTENT_LENGTH} // 0;
my ($got, $buf, $md5) = (0, '', Digest::MD5->new);
while ($got < $want) {
    my $n = read(STDIN, $buf, 65536) or last;
    $got += $n; $md5->add($buf);
}
print "Content-Type: text/plain\r\n\r\n$got ", $md5->hexdigest, " $ENV{CONTENT_TYPE}\n";
"#,
    ),
    (
        "status.sh",
        "#!/bin/sh\nprintf 'Status: 201 Created\\r\\nContent-Type: text/plain\\r\\nX-Mine: yes\\r\\n\\r\\nmade\\n'\n",
    ),
    (
        "nocontent.sh",
        "#!/bin/sh\nprintf 'Status: 204 No Content\\n\\n'\n",
    ),
    (
        "away.sh",
        "#!/bin/sh\nprintf 'Location: http://example.com/elsewhere\\nContent-Type: text/plain\\n\\nmoved\\n'\n",
    ),
    (
        "local.sh",
        "#!/bin/sh\nprintf 'Location: /hello.txt\\n\\n'\n",
    ),
    (
        "local-cgi.sh",
        "#!/bin/sh\nprintf 'Location: /cgi-bin/env.sh/hop?x=1\\n\\n'\n",
    ),
    (
        "loop.sh",
        "#!/bin/sh\nprintf 'Location: /cgi-bin/loop.sh\\n\\n'\n",
    ),
    (
        "nph-raw.sh",
        "#!/bin/sh\nprintf 'HTTP/1.1 299 Fine\\r\\nContent-Type: text/plain\\r\\nX-Raw: 1\\r\\n\\r\\nraw body\\n'\n",
    ),
    (
        "slow.py",
        r#"#!/usr/bin/python3
import sys
sys.stdout.write("Content-Type: text/plain\r\n\r\none\n")
sys.stdout.flush()
with open("gate.fifo") as gate:
    gate.read()
sys.stdout.write("two\n")
"#,
    ),
    (
        "bad.sh",
        "#!/bin/sh\nprintf 'Content-Type text/plain\\n\\nbody\\n'\n",
    ),
    ("early.sh", "#!/bin/sh\nexit 3\n"),
    (
        "silent.sh",
        "#!/bin/sh\nsleep 1000 &\necho $! > silent.pid\nwait\n",
    ),
    (
        "midway.sh",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nfirst\\n'\nsleep 1000 &\necho $! > midway.pid\nwait\n",
    ),
    (
        "unread.sh",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nnot reading\\n'\n",
    ),
    (
        "gated.sh",
        "#!/bin/sh\nwhile [ ! -e open.flag ]; do sleep 0.02; done\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n",
    ),
    (
        "big.sh",
        "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nwhile [ ! -e big.flag ]; do sleep 0.02; done\nexec head -c 67108864 /dev/zero\n",
    ),
    (
        "ids.sh",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nid -u\nid -g\nid -G\n",
    ),
    (
        "noisy.py",
        r#"#!/usr/bin/python3
import sys
sys.stderr.write("x" * 5000 + "\n")
for i in range(100):
    sys.stderr.write(f"noise {i}\n")
sys.stderr.flush()
sys.stdout.write("Content-Ty")
sys.stdout.flush()
sys.stdout.write("pe: text/plain\r")
sys.stdout.flush()
sys.stdout.write("\nX-A: 1\n")
sys.stdout.flush()
sys.stdout.write("\r\nquiet body\n")
"#,
    ),
    (
        "forker.py",
        r#"#!/usr/bin/python3
import os, time
kids = []
for i in range(10):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
pids_line = [l for l in open("/proc/self/cgroup").read().splitlines() if ":pids:" in l or l.startswith("0::")]
print("Content-Type: text/plain\r\n\r", end="\n")
print(len(kids))
print(pids_line[0].split(":", 2)[2])
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
"#,
    ),
    (
        "stream.sh",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nlength=%s\\n' \"${CONTENT_LENGTH-(unset)}\"\nwc -c\n",
    ),
    (
        "sum.sh",
        "#!/bin/sh\nsum=$(md5sum | cut -d' ' -f1)\nprintf 'Status: 200 OK\\r\\nX-Md5: %s\\r\\n\\r\\n' \"$sum\"\n",
    ),
];

/// Every meta-variable the fixtures print, in order.
const VARS: &str = "GATEWAY_INTERFACE SERVER_SOFTWARE SERVER_NAME SERVER_PORT SERVER_PROTOCOL \
REQUEST_METHOD SCRIPT_NAME PATH_INFO PATH_TRANSLATED QUERY_STRING CONTENT_LENGTH CONTENT_TYPE \
REMOTE_ADDR REMOTE_PORT REQUEST_URI DOCUMENT_ROOT SCRIPT_FILENAME REQUEST_SCHEME HTTP_X_TEST \
HTTP_PROXY HTTP_AUTHORIZATION PATH HOME MOUNT_VAR";

const ENV_SH: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
for v in $VARS; do
  eval "val=\${$v-(unset)}"
  echo "$v=$val"
done
echo "ARGS=$*"
echo "PWD=$(pwd)"
"#;

const ENV_PL: &str = r#"#!/usr/bin/perl
print "Content-Type: text/plain\r\n\r\n";
for my $v (split ' ', "$VARS") { print "$v=", $ENV{$v} // "(unset)", "\n"; }
print "ARGS=@ARGV\n";
use Cwd; print "PWD=", getcwd(), "\n";
"#;

const ENV_PY: &str = r#"#!/usr/bin/python3
import os, sys
print("Content-Type: text/plain\r\n\r", end="\n")
for v in "$VARS".split():
    print(f"{v}={os.environ.get(v, '(unset)')}")
print("ARGS=" + " ".join(sys.argv[1:]))
print("PWD=" + os.getcwd())
"#;

/// A folder with `root/` (a static file) and `bin/` (the programs), and a
/// configuration mounting `bin/` at `/cgi-bin` with `extra` keys.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(root.join("hello.txt"), b"static hello\n").unwrap();
        for (name, text) in PROGRAMS {
            let path = bin.join(name);
            std::fs::write(&path, text.replace("$VARS", VARS)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(bin.join("plain.txt"), b"not a program\n").unwrap();
        // Not executable: runs only through an interpreter by extension.
        std::fs::write(
            bin.join("plain.py"),
            "print(\"Content-Type: text/plain\\r\\n\\r\\nran by python\", end=\"\\n\")\n",
        )
        .unwrap();
        Setup { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Starts the server with a `[[cgi]]` mount of `bin/` at `/cgi-bin`
    /// carrying `extra` keys.
    fn start(&self, extra: &str) -> Iolite {
        let config = self.dir.path().join("iolite.toml");
        std::fs::write(
            &config,
            format!("[[cgi]]\nprefix = \"/cgi-bin\"\ndir = \"bin\"\n{extra}\n"),
        )
        .unwrap();
        Iolite::start(
            &self.dir.path().join("root"),
            &["--config", config.to_str().unwrap()],
        )
    }
}

fn lines(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (20 s at most) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` is gone (or a zombie not ours to reap).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
    }
}

/// Reads a pid a program wrote into `file` of `bin/` (waiting for it).
fn pid_in(file: &Path) -> i32 {
    let mut pid = None;
    wait_until(&format!("{} written", file.display()), || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

#[test]
fn shell_perl_and_python_programs_get_every_meta_variable() {
    let setup = Setup::new();
    // The server's own environment (its HOME, say) is not passed.
    let server = setup.start("env = { MOUNT_VAR = \"from the mount\" }");
    let bin = setup.bin().canonicalize().unwrap();
    let root = setup.dir.path().join("root").canonicalize().unwrap();
    for program in ["env.sh", "env.pl", "env.py"] {
        let body = b"a=1&b=2";
        let mut s = server.connect();
        write!(
            s,
            "POST /cgi-bin/{program}/extra/path?a%20b=c HTTP/1.1\r\nHost: example.test:8080\r\n\
             X-Test: seen\r\nProxy: http://evil.test/\r\nAuthorization: Basic c2VjcmV0\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!(
            r.status,
            200,
            "{program}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let port = s.local_addr().unwrap().port();
        let want = [
            "GATEWAY_INTERFACE=CGI/1.1".to_owned(),
            format!("SERVER_SOFTWARE=iolite/{}", env!("CARGO_PKG_VERSION")),
            "SERVER_NAME=example.test".into(),
            "SERVER_PORT=8080".into(),
            "SERVER_PROTOCOL=HTTP/1.1".into(),
            "REQUEST_METHOD=POST".into(),
            format!("SCRIPT_NAME=/cgi-bin/{program}"),
            "PATH_INFO=/extra/path".into(),
            format!("PATH_TRANSLATED={}/extra/path", root.display()),
            "QUERY_STRING=a%20b=c".into(),
            "CONTENT_LENGTH=7".into(),
            "CONTENT_TYPE=application/x-www-form-urlencoded".into(),
            "REMOTE_ADDR=127.0.0.1".into(),
            format!("REMOTE_PORT={port}"),
            format!("REQUEST_URI=/cgi-bin/{program}/extra/path?a%20b=c"),
            format!("DOCUMENT_ROOT={}", root.display()),
            format!("SCRIPT_FILENAME={}/{program}", bin.display()),
            "REQUEST_SCHEME=http".into(),
            "HTTP_X_TEST=seen".into(),
            "HTTP_PROXY=(unset)".into(),
            "HTTP_AUTHORIZATION=(unset)".into(),
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "HOME=(unset)".into(),
            "MOUNT_VAR=from the mount".into(),
            "ARGS=".into(),
            format!("PWD={}", bin.display()),
        ];
        assert_eq!(lines(&r.body), want, "{program}");
    }
    // A search-style query: its words are the arguments; an empty query
    // is still QUERY_STRING; no body, no CONTENT_LENGTH.
    let r = get(&server, "/cgi-bin/env.pl?hello+big%20world");
    let got = lines(&r.body);
    assert!(got.contains(&"ARGS=hello big world".to_owned()), "{got:?}");
    let r = get(&server, "/cgi-bin/env.sh");
    let got = lines(&r.body);
    for line in [
        "QUERY_STRING=",
        "CONTENT_LENGTH=(unset)",
        "PATH_INFO=(unset)",
        "REQUEST_METHOD=GET",
    ] {
        assert!(got.contains(&line.to_owned()), "{line}: {got:?}");
    }
    server.stop();
}

#[test]
fn authorization_and_the_servers_variables_pass_only_when_the_mount_says_so() {
    let setup = Setup::new();
    let server = setup.start("pass_authorization = true\npass_env = [\"HOME\"]");
    let mut s = server.connect();
    write!(
        s,
        "GET /cgi-bin/env.sh HTTP/1.1\r\nHost: t\r\nAuthorization: Basic c2VjcmV0\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    let got = lines(&r.body);
    assert!(
        got.contains(&"HTTP_AUTHORIZATION=Basic c2VjcmV0".to_owned()),
        "{got:?}"
    );
    let home = std::env::var("HOME").unwrap();
    assert!(got.contains(&format!("HOME={home}")), "{got:?}");
    server.stop();
}

#[test]
fn programs_run_as_the_mount_s_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the server must start as root to run programs as another user");
        return;
    }
    let setup = Setup::new();
    // The user must reach its program's folder.
    std::fs::set_permissions(setup.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let server = setup.start("user = \"nobody\"");
    let r = get(&server, "/cgi-bin/ids.sh");
    let want = vec![
        nobody.uid.to_string(),
        nobody.gid.to_string(),
        nobody.gid.to_string(),
    ];
    assert_eq!(lines(&r.body), want);
    server.stop();
}

#[test]
fn stderr_goes_to_the_log_line_by_line_cut_and_bounded() {
    let setup = Setup::new();
    let server = setup.start("");
    // Its header block comes in pieces, with LF and CRLF line ends.
    let r = get(&server, "/cgi-bin/noisy.py");
    assert_eq!(
        (r.status, r.header("X-A"), &r.body[..]),
        (200, Some("1"), &b"quiet body\n"[..])
    );
    server.wait_for_lines(1, |l| {
        l.contains("noisy.py") && l.contains("more lines not logged")
    });
    let lines = server.log_lines();
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("noisy.py") && l.contains("stderr:") && !l.contains("more lines"))
        .collect();
    // The 5000-byte line cut at 1 KiB; 20 lines a second logged (the
    // program writes all 101 within one, unless the machine stalls), the
    // others counted: every line is one or the other.
    let cut = logged
        .iter()
        .find(|l| l.contains("[cut]"))
        .expect("a cut line");
    assert!(cut.matches('x').count() <= 1100, "{cut}");
    assert!(logged.len() >= 20 && logged.len() < 101, "{logged:#?}");
    let counted: usize = lines
        .iter()
        .filter(|l| l.contains("noisy.py") && l.contains("more lines not logged"))
        .map(|l| {
            let at = l.find("stderr: ").unwrap() + 8;
            l[at..].split(' ').next().unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(logged.len() + counted, 101, "{lines:#?}");
    server.stop();
}

#[test]
fn a_mount_s_programs_share_one_pids_cgroup() {
    let root_pids = std::fs::read_to_string("/proc/self/cgroup")
        .map(|c| {
            c.lines()
                .any(|l| l.contains(":pids:") || l.starts_with("0::"))
        })
        .unwrap_or(false);
    if !nix::unistd::geteuid().is_root() || !root_pids {
        eprintln!("skipped: a pids cgroup needs root and a pids hierarchy");
        return;
    }
    let setup = Setup::new();
    let server = setup.start("tasks = 4");
    let made = server.wait_for_lines(1, |l| {
        l.contains("pids.max 4") || l.contains("no pids cgroup")
    });
    if made[0].contains("no pids cgroup") {
        eprintln!("skipped: {}", made[0]);
        server.stop();
        return;
    }
    // The program and 3 of its children: the fourth fork fails.
    let r = get(&server, "/cgi-bin/forker.py");
    let got = lines(&r.body);
    assert_eq!(got[0], "3", "{got:?}");
    assert!(
        got[1].contains(&format!("iolite-cgi-{}-", server.pid())),
        "{got:?}"
    );
    server.stop();
}

#[test]
fn a_script_runs_through_the_interpreter_its_extension_names() {
    let setup = Setup::new();
    let server = setup.start("interpreters = { py = \"/usr/bin/python3\" }");
    let r = get(&server, "/cgi-bin/plain.py");
    assert_eq!((r.status, &r.body[..]), (200, &b"ran by python\n"[..]));
    assert_eq!(get(&server, "/cgi-bin/plain.txt").status, 403);
    server.stop();
    // Without the mount's word, a file that is not executable is refused.
    let server = setup.start("");
    assert_eq!(get(&server, "/cgi-bin/plain.py").status, 403);
    server.stop();
}

#[test]
fn statuses_redirects_and_nph_answers() {
    let setup = Setup::new();
    let server = setup.start("");
    let r = get(&server, "/cgi-bin/status.sh");
    assert_eq!(
        (r.status, r.header("X-Mine"), &r.body[..]),
        (201, Some("yes"), &b"made\n"[..])
    );
    assert_eq!(get(&server, "/cgi-bin/nocontent.sh").status, 204);
    // A client redirect, with its body.
    let r = get(&server, "/cgi-bin/away.sh");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://example.com/elsewhere"));
    assert_eq!(r.body, b"moved\n");
    // Local redirects: served internally, to a file and to a program.
    let r = get(&server, "/cgi-bin/local.sh");
    assert_eq!((r.status, &r.body[..]), (200, &b"static hello\n"[..]));
    assert_eq!(r.header("Location"), None);
    let r = get(&server, "/cgi-bin/local-cgi.sh");
    let got = lines(&r.body);
    assert!(got.contains(&"PATH_INFO=/hop".to_owned()), "{got:?}");
    assert!(got.contains(&"QUERY_STRING=x=1".to_owned()), "{got:?}");
    // A redirect to itself ends after 10 hops.
    assert_eq!(get(&server, "/cgi-bin/loop.sh").status, 500);
    // NPH: the program's own status line and fields, as they are.
    let mut s = server.connect();
    write!(s, "GET /cgi-bin/nph-raw.sh HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(
        raw,
        b"HTTP/1.1 299 Fine\r\nContent-Type: text/plain\r\nX-Raw: 1\r\n\r\nraw body\n"
    );
    // Not programs: 404 for what does not exist or is hidden, 403 for a
    // file that is not executable.
    assert_eq!(get(&server, "/cgi-bin/none.sh").status, 404);
    assert_eq!(get(&server, "/cgi-bin/").status, 404);
    assert_eq!(get(&server, "/cgi-bin/plain.txt").status, 403);
    server.stop();
}

#[test]
fn a_post_body_reaches_stdin_and_an_http10_answer_ends_at_close() {
    let setup = Setup::new();
    let server = setup.start("");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let r = request(&server, "POST", "/cgi-bin/post.pl", &body);
    let want = format!("{} {:x} text/x-test\n", body.len(), md5(&body));
    assert_eq!(String::from_utf8_lossy(&r.body), want);
    // A chunked body is read whole and given its length.
    let mut s = server.connect();
    s.write_all(b"POST /cgi-bin/post.pl HTTP/1.1\r\nHost: t\r\nContent-Type: a/b\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("11 {:x} a/b\n", md5(b"hello world"))
    );
    // HTTP/1.0: no chunks; the connection's end ends the body.
    let mut s = server.connect();
    s.write_all(b"GET /cgi-bin/env.sh HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("Transfer-Encoding"), "{text}");
    assert!(text.contains("SERVER_PROTOCOL=HTTP/1.0"), "{text}");
    server.stop();
}

#[test]
fn a_chunked_body_streams_to_stdin_without_a_length_when_the_mount_says_so() {
    let setup = Setup::new();
    let server = setup.start("stream_chunked = true");
    let mut s = server.connect();
    s.write_all(b"POST /cgi-bin/stream.sh HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").unwrap();
    // The program has its answer's head out before the body ends: it
    // reads stdin as the chunks arrive.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("length=(unset)") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    s.write_all(b"6\r\n world\r\n0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    while !String::from_utf8_lossy(&rest).contains("0\r\n\r\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&rest));
        rest.extend_from_slice(&chunk[..n]);
    }
    assert!(
        String::from_utf8_lossy(&rest).contains("11\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    server.stop();
}

#[test]
fn a_slow_program_is_seen_line_by_line() {
    let setup = Setup::new();
    let fifo = setup.bin().join("gate.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let server = setup.start("");
    let mut s = server.connect();
    write!(s, "GET /cgi-bin/slow.py HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // The first line arrives while the program waits at its gate.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("one\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("two"));
    drop(support::open_fifo_writer(&fifo));
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&rest).contains("0\r\n\r\n") && Instant::now() < deadline {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&rest).contains("two\n"));
    server.stop();
}

#[test]
fn bad_headers_and_early_exits_are_502_with_one_line_naming_the_program() {
    let setup = Setup::new();
    let server = setup.start("");
    assert_eq!(get(&server, "/cgi-bin/bad.sh").status, 502);
    assert_eq!(get(&server, "/cgi-bin/early.sh").status, 502);
    let bad = server.wait_for_lines(1, |l| {
        l.contains("bad.sh") && l.contains("malformed header block")
    });
    assert!(bad[0].contains("no colon"), "{bad:?}");
    server.wait_for_lines(1, |l| {
        l.contains("early.sh") && l.contains("without any output")
    });
    // A program that answers without reading its body: the answer comes,
    // the connection closes (its unread body), nothing hangs.
    let body = vec![b'x'; 8 << 20];
    let mut s = server.connect();
    write!(
        s,
        "POST /cgi-bin/unread.sh HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&body).is_ok())
    };
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!((r.status, &r.body[..]), (200, &b"not reading\n"[..]));
    assert!(closed(&mut s));
    writer.join().unwrap();
    server.stop();
}

#[test]
fn a_program_that_never_answers_is_504_and_its_group_is_killed() {
    let setup = Setup::new();
    let server = setup.start("timeout = \"1s\"");
    let r = get(&server, "/cgi-bin/silent.sh");
    assert_eq!(r.status, 504);
    let sleeper = pid_in(&setup.bin().join("silent.pid"));
    wait_until("the silent program's group is gone", || gone(sleeper));
    wait_until("no child of the server left", || {
        children(server.pid()).is_empty()
    });
    server.wait_for_lines(1, |l| {
        l.contains("silent.sh") && l.contains("no header block within")
    });
    server.stop();
}

#[test]
fn a_client_that_leaves_mid_answer_takes_the_program_group_with_it() {
    let setup = Setup::new();
    let server = setup.start("");
    let mut s = server.connect();
    write!(s, "GET /cgi-bin/midway.sh HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }
    let sleeper = pid_in(&setup.bin().join("midway.pid"));
    assert!(!gone(sleeper));
    drop(s);
    wait_until("the program's group is gone", || gone(sleeper));
    // No zombie: the server has no child left at all.
    wait_until("no child of the server left", || {
        children(server.pid()).is_empty()
    });
    server.stop();
}

#[test]
fn two_hundred_requests_against_eight_processes_queue_or_get_503_and_nothing_leaks() {
    let setup = Setup::new();
    let server = setup.start("max_processes = 8\nqueue = 64");
    // Warm: one request through, so lazily made descriptors exist.
    std::fs::write(setup.bin().join("open.flag"), b"").unwrap();
    assert_eq!(get(&server, "/cgi-bin/gated.sh").status, 200);
    std::fs::remove_file(setup.bin().join("open.flag")).unwrap();
    wait_until("no child left after the warm-up", || {
        children(server.pid()).is_empty()
    });
    let fds_before = fd_count(server.pid());
    let addr = server.addr;
    let (tx, rx) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut s = support::connect(addr);
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                write!(s, "GET /cgi-bin/gated.sh HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                let r = read_response(&mut s, &mut Vec::new(), false);
                if r.status == 503 {
                    assert_eq!(r.header("Retry-After"), Some("1"));
                }
                tx.send(r.status).unwrap();
            })
        })
        .collect();
    // 8 run, 64 wait: the other 128 are refused at once.
    let mut statuses: Vec<u16> = (0..128).map(|_| rx.recv().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    wait_until("8 programs running", || children(server.pid()).len() == 8);
    assert_eq!(children(server.pid()).len(), 8);
    std::fs::write(setup.bin().join("open.flag"), b"").unwrap();
    statuses.extend((0..72).map(|_| rx.recv().unwrap()));
    clients.into_iter().for_each(|c| c.join().unwrap());
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        72,
        "{statuses:?}"
    );
    wait_until("no child left", || children(server.pid()).is_empty());
    wait_until("the descriptors back to where they were", || {
        fd_count(server.pid()) <= fds_before
    });
    server.stop();
}

#[test]
fn a_64_mib_answer_and_a_64_mib_upload_copy_no_body_byte() {
    let setup = Setup::new();
    let server = setup.start("");
    let copied = "iolite_body_bytes_copied_total";
    let before = server.metric(copied);
    // The answer: its head arrives, then the program writes its body.
    let mut s = server.connect();
    write!(s, "GET /cgi-bin/big.sh HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("Transfer-Encoding: chunked"));
    std::fs::write(setup.bin().join("big.flag"), b"").unwrap();
    let mut buf = head;
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.body.len(), 64 << 20);
    assert!(r.body.iter().all(|&b| b == 0));
    // The upload, sent once the server asked for it (no byte of it comes
    // with the head).
    let body: Vec<u8> = (0..(64u32 << 20)).map(|i| (i % 251) as u8).collect();
    let mut s = server.connect();
    write!(
        s,
        "POST /cgi-bin/sum.sh HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut cont = [0u8; 25];
    s.read_exact(&mut cont).unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(&body).unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(
        r.header("X-Md5"),
        Some(format!("{:x}", md5(&body)).as_str())
    );
    assert_eq!(server.metric(copied), before);
    server.stop();
}

/// MD5, for checking what a program received (no crate for it here: the
/// system's md5sum).
fn md5(bytes: &[u8]) -> Md5 {
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Md5(String::from_utf8_lossy(&out.stdout)[..32].to_owned())
}

struct Md5(String);

impl std::fmt::LowerHex for Md5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `read_paths` and `write_paths` put a mount's programs under landlock:
/// they read those trees and their own folder, write only the write
/// trees, and nothing else (here /etc, which file permissions alone
/// would let them read).
#[test]
fn a_mount_with_read_and_write_paths_confines_its_programs_under_landlock() {
    if iolite_sandbox::landlock_abi().is_err() {
        eprintln!("skipped: no landlock on this kernel");
        return;
    }
    let setup = Setup::new();
    let spool = setup.dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = setup.bin().join("reach.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
         cat \"$DOCUMENT_ROOT/hello.txt\" 2>&1 || echo root-denied\n\
         cat /etc/hostname >/dev/null 2>&1 && echo etc-read || echo etc-denied\n\
         (echo x > \"$SPOOL/out.txt\") 2>&1 && echo spool-written || echo spool-denied\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = setup.dir.path().join("root");
    let system: Vec<String> = ["/usr", "/bin", "/lib", "/lib64"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| format!("{p:?}"))
        .collect();
    let env = format!("env = {{ SPOOL = {:?} }}\n", spool.display().to_string());
    // Without the lists: file permissions alone.
    let server = setup.start(&env);
    let open = lines(&get(&server, "/cgi-bin/reach.sh").body);
    assert_eq!(open, ["static hello", "etc-read", "spool-written"]);
    server.stop();
    std::fs::remove_file(spool.join("out.txt")).unwrap();
    let server = setup.start(&format!(
        "{env}read_paths = [{}, {:?}]\nwrite_paths = [{:?}]\n",
        system.join(", "),
        root.display().to_string(),
        spool.display().to_string()
    ));
    let confined = lines(&get(&server, "/cgi-bin/reach.sh").body);
    assert_eq!(confined, ["static hello", "etc-denied", "spool-written"]);
    server.stop();
    // A write tree only where listed: the spool read-only is denied.
    let server = setup.start(&format!(
        "{env}read_paths = [{}, {:?}, {:?}]\n",
        system.join(", "),
        root.display().to_string(),
        spool.display().to_string()
    ));
    let read_only = lines(&get(&server, "/cgi-bin/reach.sh").body);
    assert_eq!(read_only[..2], ["static hello", "etc-denied"]);
    assert!(read_only[2].ends_with("Permission denied"), "{read_only:?}");
    assert_eq!(read_only[3], "spool-denied");
    server.stop();
}

#[test]
fn programs_run_under_the_seccomp_deny_list_unless_the_mount_turns_it_off() {
    if !Path::new("/usr/bin/python3").exists() || !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: needs python3 on x86_64 (the probe's call numbers)");
        return;
    }
    let setup = Setup::new();
    // add_key and unshare(CLONE_NEWUSER) work for root and for other
    // users alike: only the filter refuses them.
    let script = setup.bin().join("calls.py");
    std::fs::write(
        &script,
        "#!/usr/bin/python3\nimport ctypes, subprocess\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         e = lambda r: 0 if r >= 0 else ctypes.get_errno()\n\
         print('Content-Type: text/plain\\r\\n\\r', end='\\n')\n\
         print('add_key', e(libc.syscall(248, b'user', b'k', b'v', 1, -4)))\n\
         print('unshare', e(libc.unshare(0x10000000)))\n\
         print('child', subprocess.run(['/bin/echo', 'ran'], capture_output=True).stdout.decode().strip())\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = setup.start("");
    let filtered = lines(&get(&server, "/cgi-bin/calls.py").body);
    let eperm = nix::errno::Errno::EPERM as i32;
    assert_eq!(
        filtered,
        [
            format!("add_key {eperm}"),
            format!("unshare {eperm}"),
            "child ran".to_owned()
        ]
    );
    server.stop();
    let server = setup.start("seccomp = false");
    let open = lines(&get(&server, "/cgi-bin/calls.py").body);
    assert_eq!(open, ["add_key 0", "unshare 0", "child ran"]);
    server.stop();
}

#[test]
fn a_programs_validators_answer_conditional_requests_with_304_and_412() {
    let setup = Setup::new();
    let script = setup.bin().join("tagged.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nETag: \"v7\"\\r\\n\
         Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\\r\\nCache-Control: max-age=5\\r\\n\\r\\n'\n\
         head -c 300000 /dev/zero\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = setup.start("");
    let ask = |field: &str| {
        let mut s = server.connect();
        write!(
            s,
            "GET /cgi-bin/tagged.sh HTTP/1.1\r\nHost: t\r\n{field}\r\n"
        )
        .unwrap();
        read_response(&mut s, &mut Vec::new(), false)
    };
    let full = ask("");
    assert_eq!((full.status, full.body.len()), (200, 300_000));
    let current = ask("If-None-Match: \"v7\"\r\n");
    assert_eq!(current.status, 304);
    assert!(current.body.is_empty());
    assert_eq!(current.header("etag"), Some("\"v7\""));
    assert_eq!(current.header("cache-control"), Some("max-age=5"));
    assert_eq!(current.header("content-type"), None);
    let since = ask("If-Modified-Since: Mon, 07 Nov 1994 08:49:37 GMT\r\n");
    assert_eq!(since.status, 304);
    let changed = ask("If-None-Match: \"v6\"\r\n");
    assert_eq!((changed.status, changed.body.len()), (200, 300_000));
    let failed = ask("If-Match: \"v6\"\r\n");
    assert_eq!(failed.status, 412);
    // The programs whose answers were replaced are gone too.
    wait_until("every program reaped", || children(server.pid()).is_empty());
    server.stop();
}

//! FastCGI through the real binary to a real php-fpm (Debian's
//! php8.2-fpm, installed by scripts/install-deps), started by each test on
//! a unix socket in a temporary folder.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Iolite, get, read_response, request};

const PHP_FPM: &str = "/usr/sbin/php-fpm8.2";

/// A php-fpm master with two children, serving `site/` of its folder.
struct PhpFpm {
    child: Child,
    dir: tempfile::TempDir,
}

impl PhpFpm {
    fn start() -> PhpFpm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("site")).unwrap();
        std::fs::write(
            d.join("fpm.conf"),
            format!(
                "[global]\nerror_log = {log}\ndaemonize = no\n\
                 [www]\nuser = root\ngroup = root\nlisten = {sock}\n\
                 pm = static\npm.max_children = 2\ncatch_workers_output = yes\n\
                 php_admin_value[post_max_size] = 64M\n",
                log = d.join("fpm.log").display(),
                sock = d.join("fpm.sock").display(),
            ),
        )
        .unwrap();
        for (name, text) in SCRIPTS {
            std::fs::write(d.join("site").join(name), text).unwrap();
        }
        std::fs::write(d.join("site/hello.txt"), b"static hello\n").unwrap();
        let child = Command::new(PHP_FPM)
            .args(["-R", "-F", "-y"])
            .arg(d.join("fpm.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{PHP_FPM} (scripts/install-deps installs it): {e}"));
        let fpm = PhpFpm { child, dir };
        // Ready when its socket accepts.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(fpm.socket()).is_err() {
            assert!(Instant::now() < deadline, "php-fpm did not listen in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        fpm
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("fpm.sock")
    }

    fn site(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    fn mount(&self) -> String {
        format!("/php=unix:{}", self.socket().display())
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let _ = self.child.wait();
    }
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "info.php",
        r#"<?php header("X-Custom: yes");
foreach (["SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD", "REQUEST_URI",
          "SCRIPT_FILENAME", "SERVER_PROTOCOL", "GATEWAY_INTERFACE", "HTTP_X_TEST",
          "HTTP_PROXY", "REMOTE_ADDR"] as $v)
    echo $v, "=", $_SERVER[$v] ?? "(unset)", "\n";
"#,
    ),
    (
        "post.php",
        r#"<?php $in = file_get_contents("php://input");
echo strlen($in), " ", md5($in), " ", $_SERVER["CONTENT_TYPE"] ?? "-", " ",
     json_encode($_POST), " ", json_encode($_COOKIE), "\n";
"#,
    ),
    (
        "big.php",
        r#"<?php $n = (int)$_GET["n"]; header("Content-Type: application/octet-stream");
$chunk = str_repeat("abcdefgh", 1024);
for ($i = 0; $i < intdiv($n, 8192); $i++) echo $chunk;
echo str_repeat("z", $n % 8192);
"#,
    ),
    (
        "cookie.php",
        r#"<?php setcookie("session", "abc123"); http_response_code(201); echo "made\n";"#,
    ),
    (
        "local.php",
        r#"<?php header("Location: /hello.txt", true, 200);"#,
    ),
    (
        "away.php",
        r#"<?php header("Location: http://example.com/x", true, 301); echo "moved";"#,
    ),
    ("die.php", r#"<?php posix_kill(getmypid(), 9);"#),
    ("slow.php", r#"<?php sleep(30); echo "late";"#),
    ("index.php", r#"<?php echo "the index\n";"#),
];

fn body_text(r: &support::Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// `GET target` from `n` clients at once, each on a connection of its
/// own: their statuses.
fn at_once(server: &Iolite, target: &str, n: usize) -> Vec<u16> {
    let addr = server.addr;
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let target = target.to_owned();
            std::thread::spawn(move || {
                let mut s = support::connect(addr);
                write!(s, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                read_response(&mut s, &mut Vec::new(), false).status
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

fn big_body(n: usize) -> Vec<u8> {
    let mut b = b"abcdefgh".repeat(1024 * (n / 8192));
    b.extend(std::iter::repeat_n(b'z', n % 8192));
    b
}

#[test]
fn php_pages_get_their_variables_headers_cookies_and_bodies() {
    let fpm = PhpFpm::start();
    let server = Iolite::start(&fpm.site(), &["--fastcgi", &fpm.mount()]);

    let mut s = server.connect();
    write!(
        s,
        "GET /php/info.php/extra/path?a=1&b=2 HTTP/1.1\r\nHost: t\r\nX-Test: seen\r\nProxy: evil\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-custom"), Some("yes"));
    let text = body_text(&r);
    for want in [
        "SCRIPT_NAME=/php/info.php\n",
        "PATH_INFO=/extra/path\n",
        "QUERY_STRING=a=1&b=2\n",
        "REQUEST_METHOD=GET\n",
        "REQUEST_URI=/php/info.php/extra/path?a=1&b=2\n",
        "SERVER_PROTOCOL=HTTP/1.1\n",
        "GATEWAY_INTERFACE=CGI/1.1\n",
        "HTTP_X_TEST=seen\n",
        "HTTP_PROXY=(unset)\n",
        "REMOTE_ADDR=127.0.0.1\n",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    let filename = fpm.site().join("info.php");
    assert!(
        text.contains(&format!("SCRIPT_FILENAME={}\n", filename.display())),
        "{text}"
    );

    // The index file, on a persistent connection: the same peer
    // connection serves request after request.
    for _ in 0..3 {
        write!(s, "GET /php/ HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!((r.status, body_text(&r).as_str()), (200, "the index\n"));
    }

    // A form, with a cookie.
    let mut s = server.connect();
    let form = b"a=1&b=two";
    write!(
        s,
        "POST /php/post.php HTTP/1.1\r\nHost: t\r\nCookie: c=3\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        form.len()
    )
    .unwrap();
    s.write_all(form).unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(
        body_text(&r),
        format!(
            "9 {:x} application/x-www-form-urlencoded {{\"a\":\"1\",\"b\":\"two\"}} {{\"c\":\"3\"}}\n",
            md5(form)
        )
    );

    // A cookie set, with its own status.
    let r = get(&server, "/php/cookie.php");
    assert_eq!(r.status, 201);
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.starts_with("session=abc123"))
    );

    // 16 MiB up, with a length and chunked.
    let upload: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let want = format!("16777216 {:x} text/x-test [] []\n", md5(&upload));
    let r = request(&server, "POST", "/php/post.php", &upload);
    assert_eq!((r.status, body_text(&r)), (200, want.clone()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload");
    std::fs::write(&file, &upload).unwrap();
    let (status, out, err) = support::curl(&[
        "-H",
        "Content-Type: text/x-test",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://{}/php/post.php", server.addr),
    ]);
    assert!(status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out), want);
    assert!(server.stop().success());
}

#[test]
fn a_long_answer_is_spliced_from_the_peer_socket() {
    let fpm = PhpFpm::start();
    let server = Iolite::start(&fpm.site(), &["--fastcgi", &fpm.mount()]);
    for n in [100_000, 1 << 20, (8 << 20) + 5] {
        let before = server.metric("iolite_body_bytes_copied_total");
        let r = get(&server, &format!("/php/big.php?n={n}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), n);
        assert!(r.body == big_body(n), "the body of {n} bytes differs");
        // Only what came with the header block's read (16 KiB at most).
        let copied = server.metric("iolite_body_bytes_copied_total") - before;
        assert!(copied <= 16 * 1024, "{copied} bytes copied for {n}");
    }
    assert!(server.stop().success());
}

#[test]
fn redirects_local_and_to_the_client() {
    let fpm = PhpFpm::start();
    let server = Iolite::start(&fpm.site(), &["--fastcgi", &fpm.mount()]);
    let r = get(&server, "/php/local.php");
    assert_eq!((r.status, body_text(&r).as_str()), (200, "static hello\n"));
    let r = get(&server, "/php/away.php");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://example.com/x"));
    assert_eq!(body_text(&r), "moved");
    assert!(server.stop().success());
}

#[test]
fn a_peer_that_dies_or_is_not_there_is_502_and_the_next_request_succeeds() {
    let fpm = PhpFpm::start();
    let server = Iolite::start(&fpm.site(), &["--fastcgi", &fpm.mount()]);
    for _ in 0..3 {
        assert_eq!(get(&server, "/php/die.php").status, 502);
        assert_eq!(get(&server, "/php/index.php").status, 200);
    }
    assert!(server.stop().success());

    let nowhere = fpm.dir.path().join("nobody-listens.sock");
    let server = Iolite::start(
        &fpm.site(),
        &["--fastcgi", &format!("/php=unix:{}", nowhere.display())],
    );
    assert_eq!(get(&server, "/php/index.php").status, 502);
    assert_eq!(get(&server, "/hello.txt").status, 200);
    server.wait_for_metric("iolite_request_errors_total{side=\"upstream\"}", 1);
    assert!(server.stop().success());
}

#[test]
fn a_peer_past_the_mount_s_timeout_is_504() {
    let fpm = PhpFpm::start();
    let config = fpm.dir.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[fastcgi]]\nprefix = \"/php\"\naddress = \"unix:{}\"\ntimeout = \"1s\"\n",
            fpm.socket().display()
        ),
    )
    .unwrap();
    let server = Iolite::start(&fpm.site(), &["--config", config.to_str().unwrap()]);
    let started = Instant::now();
    assert_eq!(get(&server, "/php/slow.php").status, 504);
    assert!(started.elapsed() < Duration::from_secs(20));
    // The other child still answers.
    assert_eq!(get(&server, "/php/index.php").status, 200);
    assert!(server.stop().success());
}

/// MD5, as PHP's md5() prints it (what the scripts report).
fn md5(bytes: &[u8]) -> Md5 {
    let out = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("md5sum");
    Md5(String::from_utf8_lossy(&out.stdout[..32]).into_owned())
}

struct Md5(String);

impl std::fmt::LowerHex for Md5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[test]
fn fcgiwrap_runs_shell_scripts_as_a_second_kind_of_peer() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let script = site.join("env.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nX-Shell: yes\\r\\n\\r\\n'\n\
         echo \"SCRIPT_NAME=$SCRIPT_NAME QUERY_STRING=$QUERY_STRING METHOD=$REQUEST_METHOD\"\n\
         head -c \"${CONTENT_LENGTH:-0}\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sock = dir.path().join("cgi.sock");
    // In a process group of its own: its preforked children go with it.
    let wrap = Group(
        std::os::unix::process::CommandExt::process_group(
            Command::new("/usr/sbin/fcgiwrap")
                .args(["-c", "2", "-s"])
                .arg(format!("unix:{}", sock.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("fcgiwrap (scripts/install-deps installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "fcgiwrap did not listen in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = Iolite::start(
        &site,
        &["--fastcgi", &format!("/cgi=unix:{}", sock.display())],
    );
    let r = get(&server, "/cgi/env.sh?x=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-shell"), Some("yes"));
    assert_eq!(
        body_text(&r),
        "SCRIPT_NAME=/cgi/env.sh QUERY_STRING=x=1 METHOD=GET\n"
    );
    let upload = b"0123456789".repeat(10_000);
    let r = request(&server, "POST", "/cgi/env.sh", &upload);
    assert_eq!(r.status, 200);
    let mut want = b"SCRIPT_NAME=/cgi/env.sh QUERY_STRING= METHOD=POST\n".to_vec();
    want.extend_from_slice(&upload);
    assert!(r.body == want, "{} bytes back", r.body.len());
    assert!(server.stop().success());
    drop(wrap);
}

/// A process started as the leader of its own group: SIGTERM to the whole
/// group by its id when dropped (a failing test included), then the
/// leader's exit collected.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[test]
fn requests_past_the_queue_get_503_and_the_rest_are_served_in_turn() {
    let fpm = PhpFpm::start();
    std::fs::write(
        fpm.site().join("nap.php"),
        "<?php usleep(2000000); echo \"rested\\n\";",
    )
    .unwrap();
    let config = fpm.dir.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "workers = 1\n[[fastcgi]]\nprefix = \"/php\"\naddress = \"unix:{}\"\nconnections = 1\n",
            fpm.socket().display()
        ),
    )
    .unwrap();
    let server = Iolite::start(
        &fpm.site(),
        &["--config", config.to_str().unwrap(), "--workers", "1"],
    );
    // One in flight and four waiting at most: of twelve at once (sent
    // well within the first one's 2 s), seven are turned away at once,
    // five are served one after another.
    let mut statuses = at_once(&server, "/php/nap.php", 12);
    statuses.sort();
    assert_eq!(statuses, [[200; 5].as_slice(), &[503; 7]].concat());
    // And then the peer is free again.
    assert_eq!(get(&server, "/php/nap.php").status, 200);
    assert!(server.stop().success());
}

#[test]
fn kept_connections_never_outnumber_the_peer_s_processes() {
    // php-fpm serves a kept-alive connection with one child until it
    // closes: with two children and more connections kept than that, a
    // new connection would wait behind idle ones until the timeout. The
    // workers share the mount's two connections, so four requests at a
    // time, again and again, are all served.
    let fpm = PhpFpm::start();
    std::fs::write(
        fpm.site().join("nap.php"),
        "<?php usleep(100000); echo \"rested\\n\";",
    )
    .unwrap();
    let config = fpm.dir.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[fastcgi]]\nprefix = \"/php\"\naddress = \"unix:{}\"\nconnections = 2\ntimeout = \"10s\"\n",
            fpm.socket().display()
        ),
    )
    .unwrap();
    let server = Iolite::start(&fpm.site(), &["--config", config.to_str().unwrap()]);
    for _ in 0..3 {
        assert_eq!(at_once(&server, "/php/nap.php", 4), [200; 4]);
    }
    assert!(server.stop().success());
}

#[test]
fn a_script_that_pauses_is_seen_up_to_its_pause() {
    // The script prints a line, then a second one, then waits until the
    // test has seen that second line before it prints the last: an answer
    // held back anywhere (in the server's batching of records, say) never
    // ends.
    let fpm = PhpFpm::start();
    let marker = fpm.dir.path().join("seen");
    std::fs::write(
        fpm.site().join("pause.php"),
        format!(
            r#"<?php while (ob_get_level()) ob_end_flush();
header("Content-Type: text/plain");
echo str_repeat("a", 20000), "\n"; flush();
usleep(200000);
echo "second line\n"; flush();
for ($i = 0; $i < 600 && !file_exists("{}"); $i++) usleep(50000);
echo "last line\n";
"#,
            marker.display()
        ),
    )
    .unwrap();
    let server = Iolite::start(&fpm.site(), &["--fastcgi", &fpm.mount()]);
    let mut s = server.connect();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /php/pause.php HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.windows(12).any(|w| w == b"second line\n") {
        let n = std::io::Read::read(&mut s, &mut buf).expect("the second line in 30 s");
        assert!(n > 0, "closed before the second line");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!got.windows(9).any(|w| w == b"last line"));
    std::fs::write(&marker, b"").unwrap();
    std::io::Read::read_to_end(&mut s, &mut got).unwrap();
    assert!(got.windows(10).any(|w| w == b"last line\n"));
    assert!(server.stop().success());
}

/// `[[location]]` headers reach a FastCGI answer, a spliced one too:
/// `headers` replace the script's field of that name, `headers_default`
/// leave the script's own.
#[test]
fn location_headers_reach_php_answers() {
    let fpm = PhpFpm::start();
    let config = fpm.dir.path().join("iolite.toml");
    std::fs::write(
        &config,
        "[[location]]\nprefix = \"/php\"\n\
         headers = { \"X-Custom\" = \"operator\", \"Cache-Control\" = \"no-store\" }\n\
         headers_default = { \"Content-Type\" = \"text/x-never\", \"X-Default\" = \"d\" }\n",
    )
    .unwrap();
    let server = Iolite::start(
        &fpm.site(),
        &[
            "--fastcgi",
            &fpm.mount(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let r = get(&server, "/php/info.php");
    assert_eq!(r.status, 200);
    let custom: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-custom"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(custom, ["operator"]);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-default"), Some("d"));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let big = get(&server, "/php/big.php?n=100000");
    assert_eq!((big.status, big.body.len()), (200, 100_000));
    assert_eq!(big.header("cache-control"), Some("no-store"));
    assert_eq!(big.header("content-type"), Some("application/octet-stream"));
    assert!(server.stop().success());
}

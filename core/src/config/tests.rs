//! Table-driven tests: bad files → exact messages with positions, good files
//! → the expected `Config`, flags over files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A directory holding `site/`, `docs/`, `cgi-bin/`, `mod.so`, `app.wasm`
/// (a WASI command: its kind is `wagi`).
struct Fixture {
    dir: tempfile::TempDir,
}

/// The smallest WASI command: one function, exported as `_start`.
const WAGI: &[u8] = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0\x0a\x04\x01\x02\0\x0b";

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for d in ["site", "docs", "cgi-bin"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("mod.so"), b"").unwrap();
        std::fs::write(dir.path().join("app.wasm"), WAGI).unwrap();
        Fixture { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("iolite.toml")
    }

    /// Every error line for `text`, with the file's path shown as `FILE` and
    /// the fixture directory as `TMP`.
    fn errors(&self, text: &str) -> Vec<String> {
        match from_str(text, &self.file()) {
            Ok(c) => panic!("expected errors for {text:?}, got {c:?}"),
            Err(e) => e
                .lines()
                .into_iter()
                .map(|l| {
                    l.replace(&self.file().display().to_string(), "FILE")
                        .replace(&self.dir.path().display().to_string(), "TMP")
                })
                .collect(),
        }
    }

    fn config(&self, text: &str) -> Config {
        from_str(text, &self.file()).unwrap_or_else(|e| panic!("{text:?}:\n{e}"))
    }
}

const ROOT: &str = "root = \"site\"\n";

#[test]
fn bad_files_report_every_error_with_its_position() {
    let fx = Fixture::new();
    let table: &[(&str, &[&str])] = &[
        // Syntax errors: all of them, nothing else.
        (
            "root = \"site\"\nworkers = \n",
            &["FILE:2:11: syntax error: string values must be quoted, expected literal string"],
        ),
        (
            "root = \"site\nworkers = 2\n",
            &["FILE:1:13: syntax error: invalid basic string, expected `\"`"],
        ),
        (
            "root = \"site\"\nworkers = 2\nworkers = 3\n",
            &["FILE:3:1: syntax error: duplicate key `workers`"],
        ),
        // Unknown keys, in every table.
        (
            "root = \"site\"\nlistn = \"127.0.0.1:1\"\n",
            &["FILE:2:1: unknown top-level key `listn` (did you mean `listen`?)"],
        ),
        (
            "root = \"site\"\nserver_name = \"example.com\"\n",
            &[
                "FILE:2:1: unknown top-level key `server_name` (expected one of: listen, root, index, workers, admin, cache, limits, log, location, module, cgi, fastcgi, wasm, cluster, runner_uids, headers, headers_default, headers_always, listener)",
            ],
        ),
        // A key's line break or control character is shown escaped: every
        // diagnostic stays one line (found by the `config` fuzz target).
        (
            "root = \"site\"\n\"a\\nb\" = 1\n[log]\n\"\\u001b[2J\" = 1\n",
            &[
                "FILE:2:1: unknown top-level key `a\\nb` (expected one of: listen, root, index, workers, admin, cache, limits, log, location, module, cgi, fastcgi, wasm, cluster, runner_uids, headers, headers_default, headers_always, listener)",
                "FILE:4:1: unknown key in [log]: `\\u{1b}[2J` (expected one of: access, level)",
            ],
        ),
        (
            "root = \"site\"\n[cache]\nsise = \"1M\"\n",
            &["FILE:3:1: unknown key in [cache]: `sise` (did you mean `size`?)"],
        ),
        (
            "root = \"site\"\n[limits]\nmax_url = 10\n",
            &["FILE:3:1: unknown key in [limits]: `max_url` (did you mean `max_uri`?)"],
        ),
        (
            "root = \"site\"\n[log]\nerror = \"x\"\n",
            &["FILE:3:1: unknown key in [log]: `error` (expected one of: access, level)"],
        ),
        (
            "root = \"site\"\n[admin]\naddr = \"127.0.0.1:1\"\n",
            &["FILE:3:1: unknown key in [admin]: `addr` (expected one of: listen)"],
        ),
        (
            "root = \"site\"\n[[location]]\nprefix = \"/a\"\nautoidx = true\n",
            &["FILE:4:1: unknown key in [[location]]: `autoidx` (did you mean `autoindex`?)"],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/m\"\npath = \"mod.so\"\nproceses = 2\n[module.sandbox]\nseccom = false\n",
            &[
                "FILE:5:1: unknown key in [[module]]: `proceses` (expected one of: prefix, path, processes_min, processes_max, in_flight, timeout, idle_timeout, max_requests, memory_limit, transfer, lane_stall, lane_idle, check_timeout, restart_backoff, restart_backoff_max, max_body, env, sandbox)",
                "FILE:7:1: unknown key in [module.sandbox]: `seccom` (did you mean `seccomp`?)",
            ],
        ),
        (
            "root = \"site\"\n[[cgi]]\nprefix = \"/c\"\ndir = \"cgi-bin\"\nhandler = 1\n[[fastcgi]]\nprefix = \"/p\"\naddress = \"127.0.0.1:9000\"\npool = 2\n[[wasm]]\nprefix = \"/w\"\npath = \"app.wasm\"\nfuel = 1\n",
            &[
                "FILE:5:1: unknown key in [[cgi]]: `handler` (expected one of: prefix, dir, program, timeout, env, pass_env, max_processes, queue, pass_authorization, stream_chunked, user, tasks, interpreters, read_paths, write_paths, seccomp)",
                "FILE:9:1: unknown key in [[fastcgi]]: `pool` (expected one of: prefix, address, root, index, connections, timeout)",
                "FILE:13:1: unknown key in [[wasm]]: `fuel` (expected one of: prefix, path, kind, memory_limit, timeout)",
            ],
        ),
        // Wrong types.
        (
            "root = 5\nworkers = \"two\"\ncache = 3\n",
            &[
                "FILE:1:8: root: expected a string, found an integer",
                "FILE:2:11: workers: expected an integer, found a string",
                "FILE:3:9: cache: expected a table ([cache]), found an integer",
            ],
        ),
        // Bad sizes, durations, policy, numbers.
        (
            "root = \"site\"\n[cache]\nsize = \"12X\"\nrevalidate = \"1 fortnight\"\npolicy = \"arc\"\nlarge_file_threshold = -1\n",
            &[
                "FILE:3:8: cache.size: bad size \"12X\": expected a number of bytes with an optional suffix K, M, G or T (such as 256M)",
                "FILE:4:14: cache.revalidate: bad duration \"1 fortnight\": expected a whole number with a unit ms, s, m or h (such as 1s or 250ms)",
                "FILE:5:10: cache.policy: unknown cache policy \"arc\": expected \"gdsf\" or \"lru\"",
                "FILE:6:24: cache.large_file_threshold: a size cannot be negative, found -1",
            ],
        ),
        (
            "root = \"site\"\nworkers = 0\n",
            &["FILE:2:11: workers: must be at least 1, found 0"],
        ),
        (
            "root = \"site\"\nworkers = -3\n",
            &["FILE:2:11: workers: must be at least 1, found -3"],
        ),
        (
            "root = \"site\"\n[limits]\nheader_timeout = \"0s\"\nkeepalive_timeout = 30\nmax_headers = 0\nmax_uri = \"128K\"\n",
            &[
                "FILE:3:18: limits.header_timeout: must be longer than 0",
                "FILE:4:21: limits.keepalive_timeout: expected a duration such as \"1s\" or \"250ms\", found an integer",
                "FILE:5:15: limits.max_headers: must be at least 1, found 0",
                "FILE:6:11: limits.max_uri (131072) is larger than limits.max_head (65536): no request line could fit",
            ],
        ),
        // Addresses.
        (
            "root = \"site\"\nlisten = [\"127.0.0.1:8080\", \"localhost:80\", \"1.2.3.4\"]\nadmin = \"everywhere\"\n",
            &[
                "FILE:2:29: listen: bad address \"localhost:80\": expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080",
                "FILE:2:45: listen: bad address \"1.2.3.4\": expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080",
                "FILE:3:9: admin: bad address \"everywhere\": expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080, or \"none\"",
            ],
        ),
        (
            "root = \"site\"\nlisten = [\"127.0.0.1:8080\",\n  \"[::1]:8080\",\n  \"127.0.0.1:8080\"]\n",
            &["FILE:4:3: listen: 127.0.0.1:8080 is listed twice (first at 2:11)"],
        ),
        (
            "root = \"site\"\nlisten = []\n",
            &["FILE:2:10: listen: at least one address is needed"],
        ),
        (
            "root = \"site\"\nlisten = \"127.0.0.1:9000\"\nadmin = \"127.0.0.1:9000\"\n",
            &[
                "FILE:3:9: admin: 127.0.0.1:9000 is also a client listener; the admin listener needs its own address",
            ],
        ),
        // Paths that must exist.
        (
            "root = \"nowhere\"\n",
            &["FILE:1:8: root: directory \"TMP/nowhere\" does not exist"],
        ),
        (
            "root = \"mod.so\"\n",
            &["FILE:1:8: root: \"TMP/mod.so\" is not a directory"],
        ),
        (
            "workers = 1\n",
            &[
                "default settings: root: directory \"examples/site\" does not exist (set root in the configuration file or pass --root DIR)",
            ],
        ),
        (
            "root = \"site\"\n[log]\naccess = \"no/such/dir/access.log\"\nlevel = \"loud\"\n",
            &[
                "FILE:3:10: log.access: the access log's directory \"TMP/no/such/dir\" does not exist",
                "FILE:4:9: log.level: unknown log level \"loud\": expected \"error\", \"warn\", \"info\", \"debug\" or \"trace\"",
            ],
        ),
        // Locations.
        (
            "root = \"site\"\n[[location]]\nprefix = \"/docs\"\n[[location]]\nprefix = \"/docs/\"\nroot = \"missing\"\n[[location]]\nprefix = \"docs\"\n",
            &[
                "FILE:5:10: location.prefix: \"/docs\" is already used by the location at 3:10",
                "FILE:6:8: location.root: directory \"TMP/missing\" does not exist",
                "FILE:8:10: location.prefix: bad prefix \"docs\": it must start with '/'",
            ],
        ),
        (
            "root = \"site\"\n[[location]]\nroot = \"docs\"\nindex = [\"a/b.html\"]\nheaders = { \"Bad Name\" = \"x\", \"X-Ok\" = 3 }\n",
            &[
                "FILE:2:1: [[location]]: missing required key `prefix`",
                "FILE:4:10: location.index: bad index file name \"a/b.html\": a plain file name is needed",
                "FILE:5:13: location.headers: bad header name \"Bad Name\"",
                "FILE:5:40: location.headers.X-Ok: expected a string, found an integer",
            ],
        ),
        // Headers the server writes itself, a name twice, the new keys.
        (
            "root = \"site\"\nheaders = { \"Content-Length\" = \"1\" }\nheaders_always = 1\n[[location]]\nprefix = \"/a\"\nheaders_default = { \"X-A\" = \"1\", \"x-a\" = \"2\", \"connection\" = \"close\" }\nheaders_always = \"yes\"\n",
            &[
                "FILE:2:13: headers: \"Content-Length\" is written by the server itself (framing, connection)",
                "FILE:3:18: headers_always: expected true or false, found an integer",
                "FILE:6:34: location.headers_default: \"x-a\" is set twice (header names ignore case)",
                "FILE:6:47: location.headers_default: \"connection\" is written by the server itself (framing, connection)",
                "FILE:7:18: location.headers_always: expected true or false, found a string",
            ],
        ),
        (
            "root = \"site\"\nlocation = { prefix = \"/a\" }\n",
            &["FILE:2:12: location: expected an array of tables ([[location]]), found a table"],
        ),
        // Mounts.
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\npath = \"gone.so\"\ntransfer = \"inline\"\n",
            &[
                "FILE:5:12: module.transfer: unknown body transfer \"inline\": expected \"shared\" or \"copy\"",
            ],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\n",
            &["FILE:2:1: [[module]]: missing required key `path`"],
        ),
        (
            "root = \"site\"\n[[module]]\npath = \"gone.so\"\nprocesses_min = 4\nprocesses_max = 2\nmemory_limit = \"1M\"\n[module.sandbox]\nprofile = \"paranoid\"\n",
            &[
                "FILE:2:1: [[module]]: missing required key `prefix`",
                "FILE:4:17: module.processes_min (4) is larger than module.processes_max (2)",
                "FILE:6:16: module.memory_limit: must be at least 16M",
                "FILE:8:11: module.sandbox.profile: unknown sandbox profile \"paranoid\": expected \"strict\" or \"none\"",
            ],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\npath = \"mod.so\"\nrestart_backoff = \"20s\"\nrestart_backoff_max = \"0s\"\n",
            &["FILE:6:23: module.restart_backoff_max: must be longer than 0"],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\npath = \"mod.so\"\nmax_body = \"big\"\nenv = { \"A=B\" = \"x\", N = 3 }\n",
            &[
                "FILE:5:12: module.max_body: bad size \"big\": expected a number of bytes with an optional suffix K, M, G or T (such as 256M)",
                "FILE:6:9: module.env: an environment variable's name cannot hold '='",
                "FILE:6:26: module.env.N: expected a string, found an integer",
            ],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\npath = \"mod.so\"\nrestart_backoff = \"20s\"\n",
            &[
                "FILE:5:19: module.restart_backoff (20s) is longer than module.restart_backoff_max (10s)",
            ],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\npath = \"gone.so\"\n",
            &["FILE:4:8: module.path: file \"TMP/gone.so\" does not exist"],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\npath = \"mod.so\"\n[module.sandbox]\nread_paths = [\"docs\", \"nope\", \"\"]\nwrite_paths = 3\n",
            &[
                "FILE:6:23: module.sandbox.read_paths: \"nope\" does not exist",
                "FILE:6:31: module.sandbox.read_paths: the path is empty",
                "FILE:7:15: module.sandbox.write_paths: expected a string or an array of strings, found an integer",
            ],
        ),
        (
            "root = \"site\"\n[[module]]\nprefix = \"/app\"\npath = \"mod.so\"\n[[wasm]]\nprefix = \"/app/\"\npath = \"app.wasm\"\nkind = \"emscripten\"\n[[cgi]]\nprefix = \"/app\"\ndir = \"mod.so\"\n",
            &[
                "FILE:8:8: wasm.kind: unknown wasm kind \"emscripten\": expected \"wasi-http\", \"wagi\" or \"sdk\"",
                "FILE:10:10: cgi.prefix: \"/app\" is already mounted by the module at 3:10",
                "FILE:11:7: cgi.dir: \"TMP/mod.so\" is not a directory",
            ],
        ),
        (
            "root = \"site\"\n[cache]\ncompress = \"yes\"\ncompress_types = [\"text/*\", \"html\", \"a/b c\"]\ncompress_min_size = -1\nprecompressed = 1\n",
            &[
                "FILE:3:12: cache.compress: expected true or false, found a string",
                "FILE:4:29: cache.compress_types: \"html\" is not a media type (type/subtype or type/*)",
                "FILE:4:37: cache.compress_types: \"a/b c\" is not a media type (type/subtype or type/*)",
                "FILE:5:21: cache.compress_min_size: a size cannot be negative, found -1",
                "FILE:6:17: cache.precompressed: expected true or false, found an integer",
            ],
        ),
        (
            "root = \"site\"\n[[cgi]]\nprefix = \"/c\"\ndir = \"cgi-bin\"\nread_paths = [\"site\", \"nope\"]\nwrite_paths = 3\n",
            &[
                "FILE:5:23: cgi.read_paths: \"nope\" does not exist",
                "FILE:6:15: cgi.write_paths: expected a string or an array of strings, found an integer",
            ],
        ),
        (
            "root = \"site\"\n[[cgi]]\nprefix = \"/c\"\ndir = \"cgi-bin\"\nprogram = \"mod.so\"\n[[cgi]]\nprefix = \"/d\"\n[[cgi]]\nprefix = \"/e\"\nprogram = \"mod.so\"\n[[cgi]]\nprefix = \"/f\"\nprogram = \"cgi-bin\"\n",
            &[
                "FILE:5:11: cgi.program: give `dir` or `program`, not both",
                "FILE:6:1: [[cgi]]: missing required key `dir` or `program`",
                "FILE:10:11: cgi.program: \"TMP/mod.so\" is not executable",
                "FILE:13:11: cgi.program: \"TMP/cgi-bin\" is not a regular file",
            ],
        ),
        (
            "root = \"site\"\n[[cgi]]\nprefix = \"/c\"\ndir = \"cgi-bin\"\nenv = { \"A=B\" = \"1\", C = 2, \"\" = \"x\" }\npass_env = [\"\", 3]\nmax_processes = 0\nqueue = -1\npass_authorization = \"yes\"\nstream_chunked = 1\ntimeout = \"0s\"\n[[cgi]]\nprefix = \"/d\"\ndir = \"cgi-bin\"\nenv = [\"A\"]\npass_env = [\"X=Y\"]\nuser = \"no-such-user-here\"\n[[cgi]]\nprefix = \"/e\"\nuser = 0\ndir = \"cgi-bin\"\ntasks = 0\ninterpreters = { \".py\" = \"/usr/bin/python3\", sh = \"/nonexistent/sh\", pl = 3 }\n",
            &[
                "FILE:5:9: cgi.env: an environment variable's name cannot hold '='",
                "FILE:5:26: cgi.env.C: expected a string, found an integer",
                "FILE:5:29: cgi.env: an environment variable's name is empty",
                "FILE:6:17: cgi.pass_env: expected a string, found an integer",
                "FILE:7:17: cgi.max_processes: must be at least 1, found 0",
                "FILE:8:9: cgi.queue: must be at least 0, found -1",
                "FILE:9:22: cgi.pass_authorization: expected true or false, found a string",
                "FILE:10:18: cgi.stream_chunked: expected true or false, found an integer",
                "FILE:11:11: cgi.timeout: must be longer than 0",
                "FILE:15:7: cgi.env: expected a table ([cgi.env]), found an array",
                "FILE:16:13: cgi.pass_env: an environment variable's name cannot hold '='",
                "FILE:17:8: cgi.user: no user named \"no-such-user-here\"",
                "FILE:20:8: cgi.user: expected a string, found an integer",
                "FILE:22:9: cgi.tasks: must be at least 1, found 0",
                "FILE:23:18: cgi.interpreters: \".py\" is not a file extension (no dot)",
                "FILE:23:51: cgi.interpreters.sh: \"/nonexistent/sh\" is not an executable file",
                "FILE:23:75: cgi.interpreters.pl: expected a string, found an integer",
            ],
        ),
        (
            "root = \"site\"\n[[wasm]]\nprefix = \"/x\"\npath = \"app.wasm\"\n[[module]]\nprefix = \"/x\"\npath = \"mod.so\"\n",
            &["FILE:6:10: module.prefix: \"/x\" is already mounted by the wasm at 3:10"],
        ),
        (
            "root = \"site\"\n[[fastcgi]]\nprefix = \"/php\"\naddress = \"php-fpm\"\n[[fastcgi]]\nprefix = \"/php2\"\n",
            &[
                "FILE:4:11: fastcgi.address: bad address \"php-fpm\": expected IP:PORT or unix:/path/to.sock",
                "FILE:5:1: [[fastcgi]]: missing required key `address`",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (text, want) in table {
        let got = fx.errors(text);
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        if got != want {
            failures.push(format!(
                "for file:\n{text}\n got: {got:#?}\nwant: {want:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn an_empty_file_gives_the_embedded_defaults() {
    let fx = Fixture::new();
    let c = fx.config(ROOT);
    assert_eq!(
        c.listeners,
        vec![Listener {
            addr: addr("127.0.0.1:8080"),
            tls: None,
        }]
    );
    assert_eq!(c.root, fx.dir.path().join("site"));
    assert_eq!(c.admin, Some(addr("127.0.0.1:8081")));
    assert_eq!(c.index, vec!["index.html".to_owned()]);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.workers, cpus);
    assert_eq!(
        c.cache,
        CacheConfig {
            size: 256 << 20,
            revalidate: Duration::from_secs(1),
            large_file_threshold: 32 << 20,
            policy: CachePolicy::Gdsf,
            compress: Default::default(),
        }
    );
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.log.access, AccessLogTarget::Stdout);
    assert_eq!(c.log.level, LogLevel::Info);
    assert!(c.locations.is_empty() && c.modules.is_empty() && c.not_yet_supported().is_empty());
}

#[test]
fn a_full_file_gives_the_expected_config() {
    let fx = Fixture::new();
    let text = r#"
listen = ["127.0.0.1:0", "[::1]:8443", "127.0.0.1:0"]
root = "site"
index = ["index.html", "index.htm"]
workers = 3
admin = "none"

[cache]
size = "64M"
revalidate = "0"
policy = "lru"

[limits]
max_uri = "4K"
max_head = 16384
max_headers = 50
max_body = "1G"
header_timeout = "5s"
keepalive_timeout = "250ms"
send_timeout = "90s"
shutdown_grace = "2m"

[log]
access = "logs-access.log"
level = "debug"

[[location]]
prefix = "/docs/"
root = "docs"
index = "README.html"
cache = false
headers = { "Cache-Control" = "no-cache", "X-Frame-Options" = "DENY" }

[[location]]
prefix = "/"
autoindex = true

[[module]]
prefix = "/app"
path = "mod.so"
processes_min = 0
processes_max = 8
in_flight = 4
timeout = "5s"
idle_timeout = "2m"
max_requests = 5000
memory_limit = "128M"
transfer = "copy"
lane_stall = "0ms"
lane_idle = "300ms"
restart_backoff = "100ms"
restart_backoff_max = "3s"
max_body = "1M"
env = { GREETING = "hi", "DB_URL" = "postgres://x" }
[module.sandbox]
profile = "none"
landlock = true
read_paths = ["site"]
user = "iolite"
open_files = 64
tasks = 8
cpu_time = "10s"

[[cgi]]
prefix = "/cgi-bin"
dir = "cgi-bin"
env = { A = "1", B_C = "x y" }
pass_env = ["TZ"]
max_processes = 8
queue = 0
pass_authorization = true
stream_chunked = true

[[fastcgi]]
prefix = "/php"
address = "unix:/run/php.sock"
index = "main.php"
connections = 2

[[wasm]]
prefix = "/w"
path = "app.wasm"
kind = "wagi"
memory_limit = "1M"
timeout = "100ms"
"#;
    let c = fx.config(text);
    let dir = fx.dir.path();
    let want = Config {
        runner_uids: None,
        source: Some(fx.file()),
        listeners: vec![
            Listener {
                addr: addr("127.0.0.1:0"),
                tls: None,
            },
            Listener {
                addr: addr("[::1]:8443"),
                tls: None,
            },
            Listener {
                addr: addr("127.0.0.1:0"),
                tls: None,
            },
        ],
        root: dir.join("site"),
        index: vec!["index.html".into(), "index.htm".into()],
        workers: 3,
        admin: None,
        cache: CacheConfig {
            size: 64 << 20,
            revalidate: Duration::ZERO,
            large_file_threshold: 8 << 20,
            policy: CachePolicy::Lru,
            compress: Default::default(),
        },
        limits: Limits {
            max_uri: 4096,
            max_head: 16384,
            max_headers: 50,
            max_body: 1 << 30,
            header_timeout: Duration::from_secs(5),
            keepalive_timeout: Duration::from_millis(250),
            send_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(120),
        },
        locations: vec![
            Location {
                prefix: "/docs".into(),
                root: Some(dir.join("docs")),
                index: Some(vec!["README.html".into()]),
                autoindex: false,
                cache: false,
                headers: vec![
                    ("Cache-Control".into(), "no-cache".into()),
                    ("X-Frame-Options".into(), "DENY".into()),
                ],
                headers_default: vec![],
                headers_always: false,
            },
            Location {
                prefix: "/".into(),
                root: None,
                index: None,
                autoindex: true,
                cache: true,
                headers: vec![],
                headers_default: vec![],
                headers_always: false,
            },
        ],
        headers: vec![],
        headers_default: vec![],
        headers_always: false,
        log: LogConfig {
            access: AccessLogTarget::File(dir.join("logs-access.log")),
            level: LogLevel::Debug,
        },
        modules: vec![ModuleConfig {
            prefix: "/app".into(),
            path: dir.join("mod.so"),
            processes_min: 0,
            processes_max: 8,
            in_flight: 4,
            timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            max_requests: Some(5000),
            memory_limit: Some(128 << 20),
            transfer: ModuleTransfer::Copy,
            lane_stall: Duration::ZERO,
            lane_idle: Duration::from_millis(300),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(3),
            max_body: Some(1 << 20),
            env: vec![
                ("DB_URL".into(), "postgres://x".into()),
                ("GREETING".into(), "hi".into()),
            ],
            sandbox: SandboxConfig {
                profile: SandboxProfile::None,
                user: Some("iolite".into()),
                seccomp: false,
                landlock: true,
                read_paths: vec![dir.join("site")],
                write_paths: vec![],
                namespaces: false,
                no_new_privs: false,
                open_files: Some(64),
                tasks: Some(8),
                cpu_time: Some(Duration::from_secs(10)),
                low_priority: false,
            },
        }],
        cgi: vec![CgiConfig {
            prefix: "/cgi-bin".into(),
            dir: dir.join("cgi-bin"),
            env: vec![("A".into(), "1".into()), ("B_C".into(), "x y".into())],
            pass_env: vec!["TZ".into()],
            max_processes: 8,
            queue: 0,
            pass_authorization: true,
            stream_chunked: true,
            ..CgiConfig::default()
        }],
        fastcgi: vec![FastCgiConfig {
            prefix: "/php".into(),
            address: FastCgiAddress::Unix(PathBuf::from("/run/php.sock")),
            root: None,
            index: "main.php".into(),
            connections: 2,
            timeout: Duration::from_secs(30),
        }],
        wasm: vec![WasmConfig {
            prefix: "/w".into(),
            path: dir.join("app.wasm"),
            kind: WasmKind::Wagi,
            memory_limit: 1 << 20,
            timeout: Duration::from_millis(100),
        }],
        cluster: None,
    };
    assert_eq!(c, want);
    assert_eq!(
        c.not_yet_supported(),
        vec![
            "wasm at /w (WAGI programs are not yet supported; wasi:http components are)",
            "location /: autoindex = true (directory listings are not yet supported)",
        ]
    );
    assert_eq!(
        c.location_for("/docs/a.html").map(|l| l.prefix.as_str()),
        Some("/docs")
    );
    assert_eq!(
        c.location_for("/docs").map(|l| l.prefix.as_str()),
        Some("/docs")
    );
    assert_eq!(
        c.location_for("/docsx").map(|l| l.prefix.as_str()),
        Some("/")
    );
    assert!(
        c.summary()
            .contains("  cache       64 MiB lru, revalidate 0s, files over 8 MiB sent uncached\n")
    );
}

#[test]
fn admin_as_a_table_and_threshold_explicit() {
    let fx = Fixture::new();
    let c = fx.config("root = \"site\"\n[admin]\nlisten = \"[::1]:0\"\n[cache]\nsize = 1000\nlarge_file_threshold = \"1K\"\n");
    assert_eq!(c.admin, Some(addr("[::1]:0")));
    assert_eq!((c.cache.size, c.cache.large_file_threshold), (1000, 1024));
}

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn args(list: &[&str]) -> Result<ServeArgs, String> {
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("serve").chain(list.iter().copied()))
        .map(|c| c.serve)
        .map_err(|e| e.to_string())
}

#[test]
fn flags_override_the_file() {
    let fx = Fixture::new();
    std::fs::write(
        fx.file(),
        "listen = \"127.0.0.1:7000\"\nroot = \"docs\"\nworkers = 2\n[cache]\nsize = \"1G\"\n[log]\naccess = \"off\"\n",
    )
    .unwrap();
    let file = fx.file().display().to_string();
    let site = fx.dir.path().join("site").display().to_string();
    let a = args(&[
        "--config",
        &file,
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--root",
        &site,
        "--cache-size",
        "64M",
        "--workers",
        "5",
        "--admin",
        "none",
        "--access-log",
        "stdout",
    ])
    .unwrap();
    let c = resolve(&a).unwrap();
    assert_eq!(
        c.listeners,
        vec![
            Listener {
                addr: addr("127.0.0.1:0"),
                tls: None,
            },
            Listener {
                addr: addr("[::1]:0"),
                tls: None,
            }
        ]
    );
    assert_eq!(c.root, PathBuf::from(&site));
    assert_eq!(
        (c.cache.size, c.cache.large_file_threshold),
        (64 << 20, 8 << 20)
    );
    assert_eq!(c.workers, 5);
    assert_eq!(c.admin, None);
    assert_eq!(c.log.access, AccessLogTarget::Stdout);

    // Without flags the file wins over the defaults.
    let c = resolve(&args(&["--config", &file]).unwrap()).unwrap();
    assert_eq!(
        c.listeners,
        vec![Listener {
            addr: addr("127.0.0.1:7000"),
            tls: None,
        }]
    );
    assert_eq!(c.root, fx.dir.path().join("docs"));
    assert_eq!((c.workers, c.cache.size), (2, 1 << 30));
    assert_eq!(c.log.access, AccessLogTarget::Off);
}

#[test]
fn serve_with_a_bad_file_gives_the_check_config_messages() {
    let fx = Fixture::new();
    std::fs::write(
        fx.file(),
        "root = \"site\"\nworkers = 0\n[cache]\npolicy = \"fifo\"\n",
    )
    .unwrap();
    let file = fx.file().display().to_string();
    let via_serve = resolve(&args(&["--config", &file, "--workers", "2"]).unwrap()).unwrap_err();
    let via_check = check_file(&fx.file()).unwrap_err();
    assert_eq!(via_serve, via_check);
    assert_eq!(via_check.0.len(), 2);
    let missing = fx.dir.path().join("nope.toml");
    let e = check_file(&missing).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.to_string().starts_with(&format!(
        "{}: cannot read the configuration file: ",
        missing.display()
    )));
}

#[test]
fn a_file_that_is_not_utf8_is_an_error() {
    // The fuzz target (core/fuzz, `config`) feeds the parser valid UTF-8
    // only, because the file reader refuses anything else, here.
    let fx = Fixture::new();
    std::fs::write(fx.file(), b"root = \"site\"\nindex = \"\xff\xfe.html\"\n").unwrap();
    let e = check_file(&fx.file()).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].origin, Origin::File(fx.file().as_path().into()));
    assert!(
        e.0[0]
            .message
            .starts_with("cannot read the configuration file: "),
        "{e}"
    );
    assert!(e.0[0].message.contains("UTF-8"), "{e}");
}

#[test]
fn bad_flags_are_refused_by_clap_or_reported_with_the_flag() {
    for (list, needle) in [
        (
            &["--listen", "localhost:80"][..],
            "bad address \"localhost:80\"",
        ),
        (&["--cache-size", "12Q"], "bad size \"12Q\""),
        (&["--workers", "0"], "must be between 1 and 1024, found 0"),
        (&["--workers", "many"], "expected a whole number of workers"),
        (&["--admin", "yes"], "bad address \"yes\""),
        (
            &["--access-log", ""],
            "expected \"stdout\", \"off\" or a file path",
        ),
        (&["--module", "app.so"], "expected PREFIX=TARGET"),
        (&["--module", "app=x.so"], "bad prefix \"app\""),
    ] {
        let e = args(list).unwrap_err();
        assert!(e.contains(needle), "{list:?}: {e}");
    }
    let fx = Fixture::new();
    let site = fx.dir.path().join("site").display().to_string();
    let so = fx.dir.path().join("mod.so").display().to_string();
    let a = args(&[
        "--root",
        &site,
        "--listen",
        "127.0.0.1:9999",
        "--listen",
        "127.0.0.1:9999",
        "--admin",
        "127.0.0.1:9999",
        "--module",
        &format!("/a={so}"),
        "--wasm",
        "/a/=missing.wasm",
        "--fastcgi",
        "/p=nowhere",
        "--cgi",
        &format!("/c={so}"),
        "--access-log",
        "/no/such/dir/log",
    ])
    .unwrap();
    let e = resolve(&a).unwrap_err();
    assert_eq!(
        e.lines(),
        vec![
            "--fastcgi: bad address \"nowhere\": expected IP:PORT or unix:/path/to.sock".to_owned(),
            "--listen: 127.0.0.1:9999 is listed twice (first at --listen)".to_owned(),
            "--admin: 127.0.0.1:9999 is also a client listener; the admin listener needs its own address".to_owned(),
            "--wasm: \"/a\" is already mounted by the module at --module".to_owned(),
            format!("--cgi: {so:?} is not executable"),
            "--wasm: file \"missing.wasm\" does not exist".to_owned(),
            "--access-log: the access log's directory \"/no/such/dir\" does not exist".to_owned(),
        ]
    );
    let ok = args(&["--root", &site, "--module", &format!("/app={so}")]).unwrap();
    let c = resolve(&ok).unwrap();
    assert_eq!(c.modules[0].prefix, "/app");
    assert_eq!(c.modules[0].path, PathBuf::from(&so));
    assert!(c.not_yet_supported().is_empty(), "modules are served");
}

#[test]
fn the_parser_never_panics_on_mangled_files() {
    // Every prefix of a valid file, and every single-byte change to it in a
    // few positions, gives a Config or diagnostics, never a panic.
    let fx = Fixture::new();
    let text = "listen = [\"127.0.0.1:0\"]\nroot = \"site\"\n[cache]\nsize = \"1M\"\n[[location]]\nprefix = \"/é\"\nheaders = { A = \"b\" }\n";
    for end in 0..=text.len() {
        if text.is_char_boundary(end) {
            let _ = from_str(&text[..end], &fx.file());
        }
    }
    for (i, _) in text.char_indices() {
        for repl in ["\"", "[", "=", "\n", "\u{0}", "]]", "é"] {
            let mut s = text.to_owned();
            s.replace_range(i..i + text[i..].chars().next().unwrap().len_utf8(), repl);
            let _ = from_str(&s, &fx.file());
        }
    }
}

#[test]
fn the_documented_format_parses() {
    // The TOML block in this module's doc: every key it shows is known and
    // well typed; only paths that do not exist here may be reported.
    let doc: String = include_str!("mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| *l != "```toml")
        .skip(1)
        .take_while(|l| *l != "```")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        doc.contains("[[wasm]]") && doc.contains("[module.sandbox]"),
        "{doc}"
    );
    let fx = Fixture::new();
    let errors = fx.errors(&doc);
    let other: Vec<&String> = errors
        .iter()
        .filter(|e| !e.contains("does not exist"))
        .collect();
    assert!(other.is_empty(), "{errors:#?}");
    assert_eq!(errors.len(), 8, "{errors:#?}");
}

#[test]
fn defaults_for_a_root() {
    let c = Config::defaults_for_root(PathBuf::from("/srv/www"));
    assert_eq!(c.root, PathBuf::from("/srv/www"));
    assert_eq!(
        c.listeners,
        vec![Listener {
            addr: addr(DEFAULT_LISTEN),
            tls: None,
        }]
    );
    assert_eq!(c.admin, Some(addr(DEFAULT_ADMIN)));
    assert_eq!(c.cache.large_file_threshold, DEFAULT_CACHE_SIZE / 8);
    assert_eq!(c.source, None);
}

#[test]
fn a_mount_ties_only_with_a_mount_at_the_same_prefix_table() {
    let fx = Fixture::new();
    // A location's settings apply to whatever handler serves under its
    // prefix: a location and a mount at one prefix are no tie, and neither
    // are mounts whose prefixes only share a start.
    let c = fx.config(
        "root = \"site\"\n[[location]]\nprefix = \"/app\"\nheaders = { \"X-A\" = \"1\" }\n[[module]]\nprefix = \"/app\"\npath = \"mod.so\"\n[[module]]\nprefix = \"/app/admin\"\npath = \"mod.so\"\n[[cgi]]\nprefix = \"/application\"\ndir = \"cgi-bin\"\n",
    );
    assert_eq!(c.modules.len(), 2);
    assert_eq!(c.locations.len(), 1);
    // Two mounts at one prefix are, whatever their kinds, each named with
    // its position and the first one's.
    let table: &[(&str, &[&str])] = &[
        (
            "root = \"site\"\n[[module]]\nprefix = \"/m\"\npath = \"mod.so\"\n[[module]]\nprefix = \"/m\"\npath = \"mod.so\"\n",
            &["FILE:6:10: module.prefix: \"/m\" is already mounted by the module at 3:10"],
        ),
        (
            "root = \"site\"\n[[cgi]]\nprefix = \"/\"\ndir = \"cgi-bin\"\n[[fastcgi]]\nprefix = \"/\"\naddress = \"unix:/run/php.sock\"\n",
            &["FILE:6:10: fastcgi.prefix: \"/\" is already mounted by the cgi at 3:10"],
        ),
    ];
    for (text, want) in table {
        assert_eq!(fx.errors(text), *want, "{text}");
    }
}

/// Writes a cluster key file `name` of `len` bytes with `mode`.
fn key_file(fx: &Fixture, name: &str, len: usize, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = fx.dir.path().join(name);
    std::fs::write(&path, format!("{}\n", "k".repeat(len))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_cluster_table_parses_with_defaults_and_settings() {
    let fx = Fixture::new();
    key_file(&fx, "cluster.key", 64, 0o600);
    let c = fx.config(
        "root = \"site\"\nlisten = \"127.0.0.2:0\"\n[cluster]\nname = \"n1\"\npeer = \"127.0.0.2:7946\"\nkey_file = \"cluster.key\"\n",
    );
    let cl = c.cluster.expect("a cluster");
    assert_eq!(cl.name, "n1");
    assert_eq!(cl.peer, addr("127.0.0.2:7946"));
    assert_eq!(cl.client, None);
    assert!(cl.seeds.is_empty());
    assert_eq!(cl.key_file, fx.dir.path().join("cluster.key"));
    assert_eq!(cl.policy, ClusterPolicy::LardR);
    assert_eq!(cl.timers, ClusterTimers::default());
    assert_eq!(read_cluster_key(&cl.key_file).unwrap(), vec![b'k'; 64]);

    let c = fx.config(
        "root = \"site\"\n[cluster]\nname = \"node-2.a_b\"\npeer = \"[::1]:7000\"\nclient = \"10.0.0.2:80\"\nseeds = [\"127.0.0.2:7946\", \"[::1]:7000\"]\nkey_file = \"cluster.key\"\npolicy = \"chash-bl\"\nprobe_period = \"200ms\"\nprobe_rtt = \"100ms\"\nsuspect_to_down = \"500ms\"\ngossip_period = \"50ms\"\nreplay_window = \"2s\"\nt_low = 1\nt_high = 3\nk = \"500ms\"\nqueue = 0\nqueue_timeout = \"250ms\"\n",
    );
    let cl = c.cluster.clone().expect("a cluster");
    assert_eq!(
        cl.lard,
        LardSettings {
            t_low: 1,
            t_high: 3,
            k: Duration::from_millis(500)
        }
    );
    assert_eq!(
        cl.admission,
        AdmissionSettings {
            queue: 0,
            queue_timeout: Duration::from_millis(250)
        }
    );
    assert_eq!(cl.client, Some(addr("10.0.0.2:80")));
    assert_eq!(cl.seeds, vec![addr("127.0.0.2:7946"), addr("[::1]:7000")]);
    assert_eq!(cl.policy, ClusterPolicy::ChashBl);
    assert_eq!(
        cl.timers,
        ClusterTimers {
            probe_period: Duration::from_millis(200),
            probe_rtt: Duration::from_millis(100),
            suspect_to_down: Duration::from_millis(500),
            gossip_period: Duration::from_millis(50),
            replay_window: Duration::from_secs(2),
        }
    );
    let summary = c.summary();
    for line in [
        "  cluster     node node-2.a_b peer [::1]:7000 client 10.0.0.2:80, policy chash-bl\n",
        "  seeds       127.0.0.2:7946, [::1]:7000\n",
        "  timers      probe 200ms (rtt 100ms), suspect to down 500ms, gossip 50ms, replay window 2s\n",
        "  admission   past the cluster-wide limit (lard-r: S = (n-1)*t_high + t_low - 1) 0 requests queue for up to 250ms\n",
    ] {
        assert!(summary.contains(line), "{line:?} in\n{summary}");
    }
    for (name, p) in ClusterPolicy::NAMES {
        let c = fx.config(&format!(
            "root = \"site\"\n[cluster]\nname = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"cluster.key\"\npolicy = \"{name}\"\n"
        ));
        assert_eq!(c.cluster.unwrap().policy, p);
        assert_eq!(p.as_str(), name);
    }
}

#[test]
fn bad_cluster_tables_report_every_error_with_its_position() {
    let fx = Fixture::new();
    key_file(&fx, "good.key", 32, 0o600);
    key_file(&fx, "short.key", 31, 0o600);
    key_file(&fx, "open.key", 64, 0o644);
    let head = "root = \"site\"\n[cluster]\n";
    let table: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "FILE:2:1: [cluster]: missing required key `name`",
                "FILE:2:1: [cluster]: missing required key `peer`",
                "FILE:2:1: [cluster]: missing required key `key_file`",
            ],
        ),
        (
            "name = \"a b\"\npeer = \"0.0.0.0:7946\"\nkey_file = \"good.key\"\nseeds = [\"127.0.0.2:0\", \"host:1\", \"127.0.0.3:1\", \"127.0.0.3:1\"]\nclient = \"127.0.0.1\"\n",
            &[
                "FILE:3:8: cluster.name: bad node name \"a b\": 1 to 64 letters, digits, '.', '_' or '-' are needed",
                "FILE:4:8: cluster.peer: 0.0.0.0:7946 cannot be reached by peers: a specific IP and a port other than 0 are needed",
                "FILE:6:10: cluster.seeds: 127.0.0.2:0 cannot be reached by peers: a specific IP and a port other than 0 are needed",
                "FILE:6:25: cluster.seeds: bad address \"host:1\": expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080",
                "FILE:6:50: cluster.seeds: 127.0.0.3:1 is listed twice",
                "FILE:7:10: cluster.client: bad address \"127.0.0.1\": expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080",
            ],
        ),
        (
            "name = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"short.key\"\npolicy = \"lard\"\nprobe_period = \"1s\"\nprobe_rtt = \"1s\"\nsuspect_to_down = \"0\"\ngossip_period = 5\nreplay_windw = \"1s\"\n",
            &[
                "FILE:5:12: cluster.key_file: the key in \"TMP/short.key\" is 31 bytes, at least 32 are needed (e.g. `openssl rand -hex 32 > FILE`)",
                "FILE:6:10: cluster.policy: unknown dispatch policy \"lard\": expected \"lard-r\", \"wrr\", \"chash\", \"chash-bl\" or \"local\"",
                "FILE:8:13: cluster.probe_rtt (1s) must be shorter than cluster.probe_period (1s)",
                "FILE:9:19: cluster.suspect_to_down: must be longer than 0",
                "FILE:10:17: cluster.gossip_period: expected a duration such as \"1s\" or \"250ms\", found an integer",
                "FILE:11:1: unknown key in [cluster]: `replay_windw` (did you mean `replay_window`?)",
            ],
        ),
        (
            "name = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"open.key\"\nprobe_period = \"400ms\"\n",
            &[
                "FILE:5:12: cluster.key_file: \"TMP/open.key\" can be read by every user of this machine (mode 644): chmod 600 it",
                "FILE:6:16: cluster.probe_rtt (500ms) must be shorter than cluster.probe_period (400ms)",
            ],
        ),
        (
            "name = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"good.key\"\nt_low = 65\nk = \"0s\"\nt_high = 0\n",
            &[
                "FILE:6:9: cluster.t_low: must be below cluster.t_high (65 and 65)",
                "FILE:7:5: cluster.k: must be longer than 0",
                "FILE:8:10: cluster.t_high: must be at least 1, found 0",
            ],
        ),
        (
            "name = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"good.key\"\nqueue = -1\nqueue_timeout = \"0s\"\n",
            &[
                "FILE:6:9: cluster.queue: must be at least 0, found -1",
                "FILE:7:17: cluster.queue_timeout: must be longer than 0",
            ],
        ),
        (
            "name = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"missing.key\"\n",
            &["FILE:5:12: cluster.key_file: file \"TMP/missing.key\" does not exist"],
        ),
        (
            "name = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"site\"\n",
            &["FILE:5:12: cluster.key_file: \"TMP/site\" is not a regular file"],
        ),
    ];
    let mut failures = Vec::new();
    for (body, want) in table {
        let text = format!("{head}{body}");
        let got = fx.errors(&text);
        if got != *want {
            failures.push(format!(
                "for file:\n{text}\n got: {got:#?}\nwant: {want:#?}"
            ));
        }
    }
    // A listener on every address cannot be told to peers: `client` is needed.
    let got = fx.errors(
        "root = \"site\"\nlisten = \"0.0.0.0:8080\"\n\n[cluster]\nname = \"n\"\npeer = \"127.0.0.2:1\"\nkey_file = \"good.key\"\n",
    );
    let want = [
        "FILE:4:1: [cluster]: the first listener 0.0.0.0:8080 is not an address peers can reach; set cluster.client",
    ];
    if got != want {
        failures.push(format!("unspecified listener:\n got: {got:#?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn runner_uids_give_each_module_that_drops_root_its_own_uid() {
    let fx = Fixture::new();
    let module = |prefix: &str, extra: &str| {
        format!("[[module]]\nprefix = \"{prefix}\"\npath = \"mod.so\"\n{extra}")
    };
    let text = format!(
        "{ROOT}runner_uids = \"61000-61002\"\n{}{}{}",
        module("/a", ""),
        module("/open", "[module.sandbox]\nprofile = \"none\"\n"),
        module("/b", ""),
    );
    let c = fx.config(&text);
    let users: Vec<Option<&str>> = c
        .modules
        .iter()
        .map(|m| m.sandbox.user.as_deref())
        .collect();
    assert_eq!(users, [Some("61000"), None, Some("61001")]);
    assert_eq!(c.runner_uids, Some((61000, 61002)));
    assert!(
        c.summary()
            .contains("  runner uids 61000-61002, one per module: /a 61000, /b 61001\n"),
        "{}",
        c.summary()
    );
    // Without a range, modules that share a user are pointed at it.
    let shared = fx.config(&format!("{ROOT}{}{}", module("/a", ""), module("/b", "")));
    assert!(
        shared
            .summary()
            .contains("runner uids none: modules share a user"),
        "{}",
        shared.summary()
    );

    let table: &[(&str, &str)] = &[
        (
            "\"61000\"",
            "FILE:2:15: runner_uids: expected \"FIRST-LAST\" (uids, e.g. \"61000-61999\"), found \"61000\"",
        ),
        (
            "\"0-10\"",
            "FILE:2:15: runner_uids: must not include uid 0 (root)",
        ),
        ("\"20-10\"", "FILE:2:15: runner_uids: 20 is above 10"),
        (
            "\"61000-61000\"",
            "FILE:2:15: runner_uids: 1 uids for 2 modules that drop root: one each is needed",
        ),
    ];
    for (value, want) in table {
        let text = format!(
            "{ROOT}runner_uids = {value}\n{}{}",
            module("/a", ""),
            module("/b", "")
        );
        assert_eq!(fx.errors(&text), [*want], "{value}");
    }
}

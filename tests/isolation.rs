//! Isolation of process modules, through the real binary and real runner
//! processes: the `hostile` fixture module attacks the machine (a thread
//! bomb, a fork bomb, a descriptor hog, an unbounded allocation, a network
//! socket, ptrace, fork, a CPU spin, a dead runner whose socket stays open,
//! files outside its landlock trees), and each attack is stopped by the
//! runner's sandbox. In every case only that request fails (502, or 403
//! for a refused file), a second module in the same server (hello) still
//! answers, and the attacker's runner is restarted (its harmless route
//! answers). The server's log names each measure applied to each runner,
//! and no runner's pids cgroup or process outlives it.
//!
//! What this machine offers decides which limit stops the task bombs: as
//! root with a writable pids cgroup, `pids.max`; as another user,
//! RLIMIT_NPROC inside the runner's user namespace (the report says
//! `nproc=N/userns` or `nproc=N/uid`). The test reads the runner's report
//! and checks the limit that applies; as root without a pids cgroup
//! nothing bounds tasks (`nproc=unenforced(root)`), and the task bombs are
//! skipped (printed), never run unbounded.

mod support;

use std::path::{Path, PathBuf};

use iolite_modules::runner::RUNNER_ALLOWANCE;
use support::{Iolite, get};

fn lib(name: &str) -> String {
    support::module_lib(&["iolite-example-hello", "iolite-fixture-hostile"], name)
}

/// Limits of the attacked module, small so each attack ends quickly.
const TASKS: u64 = 16;
const OPEN_FILES: u64 = 64;
const MEMORY_MIB: u64 = 64;

/// A server with hello at /hello and the hostile module at each prefix,
/// with that `[module.sandbox]` table (and `memory_limit = MEMORY_MIB`
/// unless the profile is "none": there, no memory limit is the point).
fn start(sandboxes: &[(&str, &str)]) -> (tempfile::TempDir, Iolite) {
    start_as(sandboxes, None)
}

/// [`start`], the server running as user `uid`.
fn start_as(sandboxes: &[(&str, &str)], uid: Option<u32>) -> (tempfile::TempDir, Iolite) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), b"static\n").unwrap();
    let mut config = format!(
        "[[module]]\nprefix = \"/hello\"\npath = \"{}\"\n",
        lib("hello")
    );
    for (prefix, sandbox) in sandboxes {
        let memory = if sandbox.contains("profile = \"none\"") {
            String::new()
        } else {
            format!("memory_limit = \"{MEMORY_MIB}M\"\n")
        };
        config += &format!(
            "\n[[module]]\nprefix = \"{prefix}\"\npath = \"{}\"\n{memory}[module.sandbox]\n{sandbox}\n",
            lib("hostile")
        );
    }
    let file = root.path().join("iolite.toml");
    std::fs::write(&file, config).unwrap();
    if uid.is_some() {
        // Readable by the server's user (a temporary directory is private).
        use std::os::unix::fs::PermissionsExt;
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(root.path(), open).unwrap();
    }
    let server = Iolite::start_as(root.path(), &["--config", file.to_str().unwrap()], uid);
    (root, server)
}

/// The sandbox report of the `n`-th runner of `module` to be ready.
fn report(server: &Iolite, module: &str, n: usize) -> String {
    let tag = format!("module={module} ");
    let lines = server.wait_for_lines(n, |l| l.contains("runner ready") && l.contains(&tag));
    let line = &lines[n - 1];
    line[line.find("sandbox=").expect("a sandbox field") + "sandbox=".len()..].to_owned()
}

/// The number in the module's panic message `hostile: {what}: stopped
/// after N ...`, once the server logged it.
fn stopped_after(server: &Iolite, what: &str) -> (u64, String) {
    let tag = format!("hostile: {what}: stopped after ");
    let line = server.wait_for_lines(1, |l| l.contains(&tag)).remove(0);
    let rest = &line[line.find(&tag).unwrap() + tag.len()..];
    let n = rest.split(' ').next().unwrap().parse().unwrap();
    (n, line)
}

/// The attack's request fails alone: 502; hello still answers; the
/// attacker's runner comes back.
fn attack_fails_alone(server: &Iolite, prefix: &str, attack: &str) {
    let r = get(server, &format!("{prefix}/{attack}"));
    assert_eq!(r.header("x-attack"), None, "{attack} succeeded");
    assert_eq!(r.status, 502, "{attack}");
    assert_eq!(get(server, "/hello/z").body, b"Hello, z!\n", "{attack}");
    // Crashes in a row lengthen the restart's pause; during one over
    // 250 ms the module answers 503 with Retry-After until it is up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = get(server, &format!("{prefix}/nothing"));
        if r.status == 503 && std::time::Instant::now() < deadline {
            assert_eq!(r.header("retry-after"), Some("1"), "{attack}");
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        assert_eq!(r.status, 204, "restarted after {attack}");
        break;
    }
}

/// Whether the report shows a tasks limit of `TASKS` in force.
fn tasks_bounded(report: &str) -> bool {
    report.contains(&format!("pids(cgroup v1, max={TASKS})"))
        || report.contains(&format!("pids(cgroup v2, max={TASKS})"))
        || report.contains(&format!("nproc={TASKS}/"))
}

#[test]
fn each_attack_is_stopped_by_its_limit_and_fails_only_its_request() {
    // A stale cgroup of a dead server's runner, removed at start-up.
    let stale = iolite_sandbox::pids_cgroup_for(99_999_999);
    let stale = stale.filter(|dir| std::fs::create_dir(dir).is_ok());
    let (_root, server) = start(&[(
        "/hostile",
        &format!("open_files = {OPEN_FILES}\ntasks = {TASKS}\n"),
    )]);
    match &stale {
        Some(dir) => assert!(!dir.exists(), "{} was not swept", dir.display()),
        None => eprintln!("skipped: no writable pids cgroup to leave a stale one in"),
    }
    let first = report(&server, "/hostile", 1);

    // The log names every measure, applied or not, and why.
    let root = nix::unistd::geteuid().is_root();
    // The address-space limit: memory_limit, the shared pools (the output
    // pool alone is 64 MiB) and the allowance.
    let limit = address_space(&first);
    assert!(
        limit >= (MEMORY_MIB << 20) + (64 << 20) + RUNNER_ALLOWANCE,
        "{first}"
    );
    for want in [
        format!(",nofile={OPEN_FILES},cpu=60s,core=0"),
        "no_new_privs ".to_owned(),
        "seccomp(allow-list, ".to_owned(),
        if root { "user=nobody(" } else { "user=" }.to_owned(),
    ] {
        assert!(first.contains(&want), "{want:?} not in {first}");
    }
    for measure in ["pids(", "namespaces(", "landlock("] {
        assert!(first.contains(measure), "{measure} not in {first}");
    }
    match iolite_sandbox::landlock_abi() {
        Ok(abi) => assert!(
            first.contains(&format!("landlock(abi {abi}, ro=0, rw=0)")),
            "{first}"
        ),
        Err(_) => assert!(first.contains("landlock(unavailable: "), "{first}"),
    }

    // Landlock: the module reads no file, even one every user may read,
    // nor its own library's path (it runs from the server's sealed copy).
    for path in [lib("hostile"), "/etc/passwd".to_owned()] {
        let other = get(&server, &format!("/hostile/read?path={path}"));
        let text = String::from_utf8_lossy(&other.body).into_owned();
        if first.contains("landlock(abi") {
            assert_eq!(other.status, 403, "{path}: {text}");
            assert!(text.contains("Permission denied"), "{text}");
        } else {
            eprintln!("skipped: no landlock here ({first}); {path}: {text}");
        }
    }

    // Killed by seccomp: SIGSYS, one runner each.
    for (i, attack) in ["socket", "ptrace", "fork"].into_iter().enumerate() {
        attack_fails_alone(&server, "/hostile", attack);
        server.wait_for_lines(i + 1, |l| {
            l.contains("runner exited") && l.contains("SIGSYS")
        });
    }

    // Stopped by the open files limit: EMFILE below it.
    attack_fails_alone(&server, "/hostile", "fds");
    let (fds, line) = stopped_after(&server, "fds");
    assert!(fds > 0 && fds < OPEN_FILES, "{line}");
    assert!(line.contains("Too many open files"), "{line}");

    // Stopped by the address-space limit: memory_limit, plus the allowance
    // for code and stacks, and no more.
    attack_fails_alone(&server, "/hostile", "alloc");
    let (mib, line) = stopped_after(&server, "alloc");
    assert!(mib >= MEMORY_MIB / 2, "{line}");
    assert!(mib <= MEMORY_MIB + (RUNNER_ALLOWANCE >> 20), "{line}");

    // Stopped by the tasks limit.
    if tasks_bounded(&first) {
        attack_fails_alone(&server, "/hostile", "threads");
        let (threads, line) = stopped_after(&server, "threads");
        assert!(threads > 0 && threads < TASKS, "{line}");
        assert!(line.contains("Resource temporarily unavailable"), "{line}");
    } else {
        eprintln!("skipped: the thread bomb: no tasks limit on this machine ({first})");
    }

    // Every runner got the same sandbox, and each dead one's pids cgroup
    // was removed after it was reaped.
    let runners = server.wait_for_lines(1, |l| l.contains("runner ready module=/hostile "));
    for line in &runners {
        assert!(line.ends_with(&first), "{line}");
    }
    let mut server = server;
    server.terminate();
    assert!(server.wait().success());
    let log = server.log_lines();
    assert!(!log.iter().any(|l| l.contains("left behind")), "{log:#?}");
    for line in log.iter().filter(|l| l.contains("runner ready")) {
        let pid: u32 = field(line, "pid=").parse().unwrap();
        if let Some(dir) = iolite_sandbox::pids_cgroup_for(pid) {
            assert!(!dir.exists(), "{} still there", dir.display());
        }
    }
    // Runners ended by the shutdown are no warning.
    let stopped: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("runner exited (server stopping)"))
        .collect();
    assert_eq!(stopped.len(), 2, "{log:#?}");
    assert!(stopped.iter().all(|l| l.contains(" INFO ")), "{stopped:#?}");
}

/// The value after `name` in a log line, up to the next space.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line
        .find(name)
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + name.len();
    line[at..].split(' ').next().unwrap()
}

/// The address-space limit in a report (`rlimits(as=929800K,...`).
fn address_space(report: &str) -> u64 {
    let value = field(report, "rlimits(as=");
    let value = value.split(',').next().unwrap();
    let (digits, shift) = match value.as_bytes().last() {
        Some(b'G') => (&value[..value.len() - 1], 30),
        Some(b'M') => (&value[..value.len() - 1], 20),
        Some(b'K') => (&value[..value.len() - 1], 10),
        _ => (value, 0),
    };
    digits.parse::<u64>().unwrap() << shift
}

#[test]
fn without_seccomp_other_limits_still_hold_and_profile_none_turns_all_off() {
    let (_root, server) = start(&[
        ("/lax", &format!("seccomp = false\ntasks = {TASKS}\n")),
        ("/open", "profile = \"none\"\n"),
        ("/spin", "cpu_time = \"1s\"\n"),
    ]);
    let lax = report(&server, "/lax", 1);
    assert!(lax.contains("seccomp(off: setting)"), "{lax}");
    let open = report(&server, "/open", 1);
    for off in [
        "rlimits",
        "pids",
        "namespaces",
        "no_new_privs",
        "landlock",
        "seccomp",
    ] {
        assert!(open.contains(&format!("{off}(off: setting)")), "{open}");
    }

    // Nothing stops a network socket under profile none: the attack
    // succeeds, which proves the setting reached the runner.
    let r = get(&server, "/open/socket");
    assert_eq!((r.status, r.header("x-attack")), (200, Some("succeeded")));

    // The CPU time limit ends a runner that spins (SIGXCPU).
    assert!(report(&server, "/spin", 1).contains(",cpu=1s,"));
    attack_fails_alone(&server, "/spin", "spin");
    server.wait_for_lines(1, |l| l.contains("runner exited") && l.contains("SIGXCPU"));

    // A runner that dies while a child it forked keeps its socket open:
    // the child dies with the runner's PID namespace (its init ends), so
    // the socket closes at once; without a PID namespace the death is
    // noticed through the runner's pidfd. 502 either way, no timeout.
    attack_fails_alone(&server, "/lax", "orphan");
    server.wait_for_lines(1, |l| {
        l.contains("runner died; its socket is still open")
            || (l.contains("module=/lax") && l.contains("runner exited") && l.contains("SIGABRT"))
    });

    // A real fork bomb: the children count against the tasks limit, and
    // die with the runner (its process group and cgroup are killed).
    if tasks_bounded(&lax) {
        attack_fails_alone(&server, "/lax", "forkbomb");
        let (forked, line) = stopped_after(&server, "forkbomb");
        assert!(forked > 0 && forked < TASKS, "{line}");
    } else {
        eprintln!("skipped: the fork bomb: no tasks limit on this machine ({lax})");
    }
    let mut server = server;
    server.terminate();
    assert!(server.wait().success());
    let log = server.log_lines();
    assert!(!log.iter().any(|l| l.contains("left behind")), "{log:#?}");
    // No process of a dead runner's group is left (zombies wait for init
    // to reap them). With a pids cgroup, its removal above waited until
    // every task had exited; without one the kill is asynchronous.
    if lax.contains("pids(cgroup") {
        for line in log
            .iter()
            .filter(|l| l.contains("runner ready module=/lax "))
        {
            let group: i32 = field(line, "pid=").parse().unwrap();
            // A task killed with its PID namespace leaves the cgroup a
            // moment before it is gone: waited for, with a bound.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut live = live_members(group);
            while !live.is_empty() && std::time::Instant::now() < deadline {
                std::thread::yield_now();
                live = live_members(group);
            }
            assert!(live.is_empty(), "group {group} has live {live:?}");
        }
    }
}

/// A server that is not root (as on a machine without root, or a
/// deployment that starts iolite unprivileged): no user drop, no pids
/// cgroup, and the tasks limit is RLIMIT_NPROC inside the runner's own user
/// namespace (or for the whole uid without one). Run here by dropping the
/// server to `nobody` when the test is root; as another user, the test runs
/// the server as that user.
#[test]
fn an_unprivileged_server_still_bounds_tasks_with_rlimit_nproc() {
    let uid = nix::unistd::geteuid()
        .is_root()
        .then(|| nix::unistd::User::from_name("nobody").ok().flatten())
        .flatten()
        .map(|u| u.uid.as_raw());
    let (_root, server) = start_as(&[("/hostile", &format!("tasks = {TASKS}\n"))], uid);
    let report = report(&server, "/hostile", 1);
    let me = uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    for want in [
        format!("user={me}(not root)"),
        "pids(unavailable: ".to_owned(),
    ] {
        assert!(report.contains(&want), "{want:?} not in {report}");
    }
    assert!(
        report.contains(&format!("nproc={TASKS}/userns"))
            || report.contains(&format!("nproc={TASKS}/uid")),
        "{report}"
    );
    // A PID namespace of its own, made inside a user namespace (where the
    // machine allows unprivileged ones, as the user namespace shows).
    let namespaces = field(&report, "namespaces(");
    if namespaces.contains("user") {
        assert!(namespaces.contains("pid"), "{report}");
    } else {
        eprintln!("skipped: no unprivileged user namespaces here ({report})");
    }
    attack_fails_alone(&server, "/hostile", "threads");
    let (threads, line) = stopped_after(&server, "threads");
    assert!(threads > 0 && threads < TASKS, "{line}");
    attack_fails_alone(&server, "/hostile", "socket");
    assert!(server.stop().success());
}

/// `read_paths` and `write_paths` open exactly those trees to the module
/// under landlock; file permissions alone would let it do more (the trees
/// are world-writable here, and /etc/passwd world-readable).
#[test]
fn landlock_opens_only_the_configured_paths() {
    if iolite_sandbox::landlock_abi().is_err() {
        eprintln!("skipped: no landlock on this kernel");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let trees = tempfile::tempdir().unwrap();
    let (read, write) = (trees.path().join("read"), trees.path().join("write"));
    for dir in [trees.path(), &read, &write] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::write(read.join("data.txt"), b"some data\n").unwrap();
    std::fs::set_permissions(
        read.join("data.txt"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let (_root, server) = start(&[(
        "/hostile",
        &format!(
            "read_paths = [\"{}\"]\nwrite_paths = [\"{}\"]\n",
            read.display(),
            write.display()
        ),
    )]);
    assert!(report(&server, "/hostile", 1).contains(", ro=1, rw=1)"));
    let ask = |route: &str, path: &Path| {
        let r = get(
            &server,
            &format!("/hostile/{route}?path={}", path.display()),
        );
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    // (route, path, status)
    let table: [(&str, PathBuf, u16); 7] = [
        ("read", read.join("data.txt"), 200),
        ("read", PathBuf::from("/etc/passwd"), 403),
        ("create", write.join("new.txt"), 200),
        ("read", write.join("new.txt"), 200),
        ("create", read.join("new.txt"), 403),
        ("create", trees.path().join("new.txt"), 403),
        ("read", PathBuf::from(lib("hostile")), 403),
    ];
    for (route, path, status) in &table {
        let (got, body) = ask(route, path);
        assert_eq!(got, *status, "{route} {}: {body}", path.display());
        if *status == 403 {
            assert!(body.contains("Permission denied"), "{body}");
        }
    }
    assert_eq!(std::fs::read(write.join("new.txt")).unwrap(), b"hostile\n");
    assert!(!read.join("new.txt").exists());
    assert!(server.stop().success());
}

#[test]
fn a_sandbox_that_cannot_be_applied_refuses_to_start_the_server() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the sandbox user matters only to a root server");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("iolite.toml");
    std::fs::write(
        &file,
        format!(
            "[[module]]\nprefix = \"/h\"\npath = \"{}\"\n[module.sandbox]\nuser = \"iolite-no-such-user\"\n",
            lib("hello")
        ),
    )
    .unwrap();
    let out = support::serve_refused(root.path(), &["--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing was announced");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("module at /h:")
            && stderr.contains("sandbox user \"iolite-no-such-user\" does not exist"),
        "{stderr}"
    );
}

/// The processes of process group `group` that are not zombies.
fn live_members(group: i32) -> Vec<i32> {
    support::processes()
        .into_iter()
        .filter(|p| p.pgrp == group && !matches!(p.state, 'Z' | 'X'))
        .map(|p| p.pid)
        .collect()
}

#[test]
fn a_library_in_a_directory_the_sandbox_user_cannot_enter_still_loads() {
    // The runner opens its library before it drops root; a checkout under
    // /root (mode 0700) is the common case this covers.
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the server drops to `nobody` only when run as root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let so = private.path().join("libhello.so");
    std::fs::copy(lib("hello"), &so).unwrap();
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o644)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/hello\"\npath = \"{}\"\n",
            so.display()
        ),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    let sandbox = report(&server, "/hello", 1);
    assert!(sandbox.contains("user=nobody"), "{sandbox}");
    assert_eq!(get(&server, "/hello/p").body, b"Hello, p!\n");
    server.stop();
}

//! Real processes under real profiles: the probe fixture applies a profile
//! to itself, then misbehaves; these tests check how it ends.
//!
//! A measure this machine does not offer is not silently passed: the test
//! asserts the probe's report says "unavailable" and prints `skipped: ...`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

use iolite_sandbox::{pids_cgroup_for, remove_pids_cgroup, sweep_stale_pids_cgroups};

/// The probe fixture (`fixtures/probes`), built on first use.
fn probe_bin() -> std::path::PathBuf {
    iolite_fixtures::bin("iolite-fixture-probes", "iolite-sandbox-probe")
}

#[derive(Debug)]
struct Run {
    status: ExitStatus,
    report: String,
    stdout: String,
    stderr: String,
}

impl Run {
    fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// The outcome text of one measure in the report line, e.g. `seccomp(`.
    fn has(&self, part: &str) -> bool {
        self.report.contains(part)
    }

    fn results(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("result: "))
            .collect()
    }
}

fn probe(args: &[&str]) -> Run {
    let child = Command::new(probe_bin())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn probe");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait probe");
    if let Some(cgroup) = pids_cgroup_for(pid) {
        remove_pids_cgroup(&cgroup).expect("remove the probe's cgroup");
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or("")
        .to_owned();
    let run = Run {
        status: out.status,
        report,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("probe {args:?}: {:?}\n  report: {}", run.status, run.report);
    run
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn default_profile_applies_every_measure_this_machine_offers() {
    let run = probe(&["report"]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        run.has("rlimits(as=1G,nofile=256,cpu=60s,core=0"),
        "{run:?}"
    );
    assert!(run.has(" no_new_privs "), "{run:?}");
    assert!(run.has("seccomp(allow-list, "), "{run:?}");
    if is_root() {
        assert!(run.has("user=nobody(65534:"), "{run:?}");
    } else {
        assert!(run.has("(not root)"), "{run:?}");
    }
    for measure in ["landlock(", "namespaces(", "pids("] {
        let applied = run.has(measure) && !run.has(&format!("{measure}unavailable"));
        if !applied {
            eprintln!("skipped: {measure} is unavailable here: {}", run.report);
            assert!(run.has(&format!("{measure}unavailable: ")), "{run:?}");
        }
    }
}

#[test]
fn forbidden_syscalls_kill_the_process_with_sigsys() {
    // (action, what it tries)
    let table = [
        ("tcp", "a TCP socket"),
        ("unix-socket", "a new unix socket"),
        ("ptrace", "ptrace"),
        ("execve", "execve"),
        ("fork", "fork"),
        ("spawn", "posix_spawn of a program"),
        ("kill-parent", "a signal to another process"),
        ("mprotect-exec", "making memory executable"),
    ];
    for (action, what) in table {
        let run = probe(&[action]);
        assert!(run.has("seccomp(allow-list"), "{action}: {run:?}");
        assert_eq!(
            run.signal(),
            Some(libc::SIGSYS),
            "{what} ({action}) must die by SIGSYS: {run:?}"
        );
        assert!(run.results().is_empty(), "{action} printed {run:?}");
    }
}

#[test]
fn allowed_work_still_works_under_the_default_profile() {
    let run = probe(&["work"]);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.results(), ["work ok"], "{run:?}");
    // The caught panic was reported on stderr and did not kill the process.
    assert!(run.stderr.contains("probe panic (expected)"), "{run:?}");
}

#[test]
fn unbounded_allocation_aborts_the_child_only() {
    let limit = 256u64 << 20;
    let run = probe(&["alloc", "--as", &limit.to_string()]);
    assert!(run.has("as=256M"), "{run:?}");
    assert_eq!(run.signal(), Some(libc::SIGABRT), "{run:?}");
    assert!(run.stderr.contains("memory allocation of"), "{run:?}");

    let run = probe(&["alloc-try", "--as", &limit.to_string()]);
    assert!(run.status.success(), "{run:?}");
    let mib: u64 = run.results()[0]
        .strip_prefix("allocation failed after ")
        .and_then(|s| s.strip_suffix(" MiB"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(mib < 256, "allocated {mib} MiB under a 256 MiB limit");
}

#[test]
fn descriptor_hog_gets_emfile_at_the_limit() {
    for limit in [32u64, 256] {
        let run = probe(&["nofile", "--nofile", &limit.to_string()]);
        assert!(run.status.success(), "{run:?}");
        assert!(
            run.results()
                .contains(&format!("emfile highest fd {}", limit - 1).as_str()),
            "{limit}: {run:?}"
        );
    }
}

/// Parses "fork failed after N children: ...".
fn forks(run: &Run) -> u64 {
    run.results()
        .iter()
        .find_map(|r| r.strip_prefix("fork failed after "))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fork failure: {run:?}"))
}

#[test]
fn fork_bomb_is_stopped_by_the_process_limit() {
    // seccomp off: it would kill the first fork before any limit is reached.
    let run = probe(&["forkbomb", "--no-seccomp", "--nproc", "16"]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        run.has("pids(cgroup") || run.has("nproc=16/"),
        "no process limit claimed: {run:?}"
    );
    assert!(forks(&run) < 16, "{run:?}");
}

#[test]
fn fork_bomb_as_root_needs_the_cgroup() {
    if !is_root() {
        eprintln!("skipped: the root case needs root");
        return;
    }
    let run = probe(&["forkbomb", "--no-seccomp", "--keep-root", "--nproc", "16"]);
    assert!(run.status.success(), "{run:?}");
    assert!(run.has("user=root(kept"), "{run:?}");
    if run.has("pids(cgroup") {
        assert!(forks(&run) < 16, "{run:?}");
    } else {
        // Root ignores RLIMIT_NPROC: the report must not claim a limit.
        eprintln!("skipped: no writable pids cgroup: {}", run.report);
        assert!(run.has("pids(unavailable: "), "{run:?}");
        assert!(run.has("nproc=unenforced(root)"), "{run:?}");
    }
}

#[test]
fn cpu_hog_gets_sigxcpu() {
    let run = probe(&["cpu", "--cpu", "1"]);
    assert!(run.has("cpu=1s"), "{run:?}");
    assert_eq!(run.signal(), Some(libc::SIGXCPU), "{run:?}");
}

/// A world-writable directory tree the sandbox user can reach.
fn open_tree() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("allowed");
    let outside = dir.path().join("outside");
    for d in [dir.path(), &allowed, &outside] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    std::fs::write(outside.join("secret"), b"s").expect("write");
    std::fs::set_permissions(
        outside.join("secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    (
        dir,
        allowed.to_string_lossy().into_owned(),
        outside.to_string_lossy().into_owned(),
    )
}

#[test]
fn landlock_confines_file_access_to_the_listed_trees() {
    let (_dir, allowed, outside) = open_tree();
    let ok = format!("{allowed}/f");
    let denied = format!("{outside}/f");
    let run = probe(&["write", &ok, &denied, "--rw", &allowed]);
    assert!(run.status.success(), "{run:?}");
    if run.has("landlock(unavailable") {
        eprintln!("skipped: landlock unavailable: {}", run.report);
        // open=landlock without landlock: every path call is refused.
        assert!(run.has("paths EACCES"), "{run:?}");
        return;
    }
    assert!(run.has("landlock(abi "), "{run:?}");
    assert_eq!(
        run.results(),
        [
            format!("write {ok}: ok"),
            format!("write {denied}: errno {}", libc::EACCES)
        ],
        "{run:?}"
    );

    // Read-only trees: readable, not writable; other trees: not even readable.
    let secret = format!("{outside}/secret");
    let run = probe(&["read", &secret, "--ro", &outside]);
    assert_eq!(run.results(), [format!("read {secret}: ok")], "{run:?}");
    let run = probe(&["write", &secret, "--ro", &outside]);
    let eacces = format!("write {secret}: errno {}", libc::EACCES);
    assert_eq!(run.results(), [eacces], "{run:?}");
    let run = probe(&["read", &secret, "--ro", &allowed]);
    let eacces = format!("read {secret}: errno {}", libc::EACCES);
    assert_eq!(run.results(), [eacces], "{run:?}");
}

#[test]
fn open_policy_never_refuses_paths_even_inside_landlock_trees() {
    let (_dir, allowed, _outside) = open_tree();
    let file = format!("{allowed}/f");
    let run = probe(&["write", &file, "--rw", &allowed, "--open", "never"]);
    assert!(run.status.success(), "{run:?}");
    assert!(run.has("open=never: paths EACCES"), "{run:?}");
    let eacces = format!("write {file}: errno {}", libc::EACCES);
    assert_eq!(run.results(), [eacces], "{run:?}");
}

#[test]
fn new_network_namespace_has_no_network() {
    // seccomp and landlock off so that connect() itself answers.
    let run = probe(&["tcp", "--no-seccomp", "--no-landlock"]);
    if !run.has("namespaces(net") {
        eprintln!("skipped: no network namespace: {}", run.report);
        assert!(run.has("namespaces(unavailable") || run.has("unavailable net"));
        return;
    }
    let result = run.results().join("\n");
    assert!(
        result.contains(&format!("code: {}", libc::ENETUNREACH)),
        "{run:?}"
    );
}

#[test]
fn threads_started_before_the_profile_are_refused_or_reported() {
    let run = probe(&["report", "--early-thread"]);
    if run.report.is_empty() {
        // Landlock cannot cover the other thread: a clear error, not a half sandbox.
        assert_eq!(run.status.code(), Some(2), "{run:?}");
        assert!(
            run.stderr
                .contains("landlock needs a single-threaded process, found 2 threads"),
            "{run:?}"
        );
    } else {
        eprintln!("skipped: landlock unavailable, namespaces checked only");
    }
    let run = probe(&["report", "--early-thread", "--no-landlock"]);
    assert!(run.status.success(), "{run:?}");
    assert!(run.has("user: process has 2 threads"), "{run:?}");
}

#[test]
fn unknown_user_is_a_clear_error() {
    if !is_root() {
        eprintln!("skipped: the user drop only happens as root");
        return;
    }
    let run = probe(&["report", "--user", "iolite-no-such-user"]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("sandbox user \"iolite-no-such-user\" does not exist"),
        "{run:?}"
    );
}

#[test]
fn stale_cgroups_are_swept_and_live_ones_kept() {
    // Cgroups named like runners', for pids no process can have.
    let (Some(stale), Some(live)) = (pids_cgroup_for(u32::MAX), pids_cgroup_for(u32::MAX - 1))
    else {
        eprintln!("skipped: no pids cgroup hierarchy here");
        return;
    };
    if std::fs::create_dir(&stale).is_err() {
        eprintln!("skipped: the pids cgroup is not writable");
        return;
    }
    std::fs::create_dir(&live).expect("mkdir live cgroup");
    // A process blocked on its stdin keeps the live one populated.
    let mut cat = Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cat");
    std::fs::write(live.join("cgroup.procs"), cat.id().to_string()).expect("join");

    assert!(sweep_stale_pids_cgroups() >= 1);
    assert!(!stale.exists());
    assert!(live.exists(), "a populated cgroup was removed");

    drop(cat.stdin.take());
    cat.wait().expect("wait cat");
    assert!(remove_pids_cgroup(&live).expect("remove live"));
}

#[test]
fn the_kernel_confirms_what_the_report_claims() {
    // Landlock off and paths allowed, so the probe can read its own status.
    let run = probe(&["status", "--no-landlock", "--open", "always"]);
    assert!(run.status.success(), "{run:?}");
    let results = run.results();
    let field = |name: &str| {
        results
            .iter()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {run:?}"))
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "filter mode");
    // clone3 (ENOSYS), the allow-list and the post-load one (no
    // PROT_EXEC); paths are allowed, so no fourth.
    assert_eq!(field("Seccomp_filters:"), "3");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    if is_root() {
        assert_eq!(field("Uid:"), "65534 65534 65534 65534");
        assert_eq!(field("Gid:"), "65534 65534 65534 65534");
        assert_eq!(field("Groups:"), "");
    }

    if is_root() {
        // Root kept: still uid 0, but the user namespace took every capability.
        let run = probe(&["status", "--keep-root", "--no-landlock", "--open", "always"]);
        assert!(run.status.success(), "{run:?}");
        if run.has("namespaces(") && run.has(",user") {
            let caps = run.results().into_iter().find(|l| l.starts_with("CapEff:"));
            assert_eq!(caps, Some("CapEff: 0000000000000000"), "{run:?}");
        } else {
            eprintln!("skipped: no user namespace: {}", run.report);
            assert!(run.has("unavailable user"), "{run:?}");
        }
    }
}

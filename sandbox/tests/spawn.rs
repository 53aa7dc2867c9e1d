//! `Spawn`: a program started by the `CLONE_VM | CLONE_VFORK` child gets
//! exactly its environment, folder, limits, descriptors and session, and
//! a failed step is reported by name.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use iolite_sandbox::Spawn;

/// Runs `sh -c script` in `dir` with `env`, returns (stdout, stderr, status).
fn run(script: &str, dir: &Path, env: &[(&str, &str)]) -> (String, String, i32) {
    run_with(
        Spawn::new(Path::new("/bin/sh")).unwrap(),
        "-c",
        script,
        dir,
        env,
    )
}

/// Runs `program flag script` (as `spawn` has it) in `dir` with `env`.
fn run_with(
    mut spawn: Spawn,
    flag: &str,
    script: &str,
    dir: &Path,
    env: &[(&str, &str)],
) -> (String, String, i32) {
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let (err_r, err_w) = nix::unistd::pipe().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    spawn.arg(flag).unwrap().arg(script).unwrap();
    for (k, v) in env {
        spawn.env(k.as_bytes(), v.as_bytes()).unwrap();
    }
    spawn
        .dir(dir)
        .unwrap()
        .rlimit(libc::RLIMIT_NOFILE as i32, 77);
    let mut child = spawn
        .spawn(null.as_fd(), out_w.as_fd(), err_w.as_fd())
        .unwrap();
    drop((out_w, err_w));
    let (mut out, mut err) = (String::new(), String::new());
    std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
    std::fs::File::from(err_r).read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    (out, err, status)
}

#[test]
fn the_program_gets_its_environment_folder_limits_and_a_session_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let script = "echo \"foo=$FOO home=${HOME:-none}\"; pwd; ulimit -n; \
                  read -r _ _ _ _ pgrp sid _ < /proc/$$/stat; \
                  [ \"$pgrp\" = $$ ] && [ \"$sid\" = $$ ] && echo leader; \
                  grep -E '^(SigIgn|SigBlk|NoNewPrivs)' /proc/self/status; \
                  ls /proc/$$/fd | wc -l; echo oops >&2";
    let (out, err, status) = run(script, dir.path(), &[("FOO", "bar")]);
    let canonical = dir.path().canonicalize().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "foo=bar home=none", "{out}");
    assert_eq!(Path::new(lines[1]), canonical, "{out}");
    assert_eq!(lines[2], "77", "{out}");
    assert_eq!(lines[3], "leader", "{out}");
    // SIGPIPE is ignored by this test process: not by the program.
    assert_eq!(
        lines[4].split_whitespace().nth(1),
        Some("0000000000000000"),
        "{out}"
    );
    assert_eq!(
        lines[5].split_whitespace().nth(1),
        Some("0000000000000000"),
        "{out}"
    );
    assert_eq!(lines[6].split_whitespace().nth(1), Some("1"), "{out}");
    // The shell holds 0, 1 and 2, nothing of this process.
    assert_eq!(lines[7].trim(), "3", "{out}");
    assert_eq!(err, "oops\n");
    assert_eq!(status, 0);
}

/// Python, through ctypes: each denied call's errno (0: it worked), a
/// namespace flag on `clone` (with `CLONE=1`: unfiltered, as root, it
/// would start a second interpreter), and a child started the ordinary way
/// (`subprocess`: clone3 refused with ENOSYS, then clone).
const PROBE: &str = r#"
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def errno(r):
    return 0 if r >= 0 else ctypes.get_errno()
print("unshare", errno(libc.unshare(0x10000000)))
print("add_key", errno(libc.syscall(248, b"user", b"k", b"v", 1, -4)))
print("ptrace", errno(libc.syscall(101, 16, 1, 0, 0)))
if os.environ.get("CLONE") == "1":
    print("clone-newuts", errno(libc.syscall(56, 0x04000000 | 17, 0, 0, 0, 0)))
print("child", subprocess.run(["/bin/sh", "-c", "echo ran"], capture_output=True).stdout.decode().strip())
"#;

#[test]
fn a_program_under_the_filter_gets_eperm_for_denied_calls_and_runs_the_rest() {
    if !Path::new("/usr/bin/python3").exists() || !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: needs python3 on x86_64 (the probe's call numbers)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let filter = iolite_sandbox::ProgramFilter::new().unwrap();
    let mut spawn = Spawn::new(Path::new("/usr/bin/python3")).unwrap();
    spawn.seccomp(&filter);
    let (out, err, status) = run_with(spawn, "-c", PROBE, dir.path(), &[("CLONE", "1")]);
    assert_eq!(status, 0, "{out}{err}");
    let eperm = libc::EPERM.to_string();
    for call in ["unshare", "add_key", "ptrace", "clone-newuts"] {
        let line = out.lines().find(|l| l.starts_with(call)).unwrap_or("");
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(eperm.as_str()),
            "{call}: {out}{err}"
        );
    }
    assert!(out.contains("child ran"), "{out}{err}");
    // The same probe without the filter: the calls are not refused by
    // the kernel for some other reason (as root they succeed; as
    // another user add_key still does).
    let spawn = Spawn::new(Path::new("/usr/bin/python3")).unwrap();
    let (out, err, _) = run_with(spawn, "-c", PROBE, dir.path(), &[]);
    assert!(out.contains("add_key 0"), "{out}{err}");
}

#[test]
fn a_failed_step_is_named() {
    let null = std::fs::File::open("/dev/null").unwrap();
    let e = Spawn::new(Path::new("/nonexistent/program"))
        .unwrap()
        .spawn(null.as_fd(), null.as_fd(), null.as_fd())
        .unwrap_err();
    assert!(e.to_string().starts_with("execve: "), "{e}");
    let e = Spawn::new(Path::new("/bin/true"))
        .unwrap()
        .dir(Path::new("/nonexistent"))
        .unwrap()
        .spawn(null.as_fd(), null.as_fd(), null.as_fd())
        .unwrap_err();
    assert!(e.to_string().starts_with("chdir: "), "{e}");
}

#[test]
fn a_dropped_child_is_killed_with_its_group_and_reaped() {
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut spawn = Spawn::new(Path::new("/bin/sh")).unwrap();
    spawn
        .arg("-c")
        .unwrap()
        .arg("sleep 300 & echo $!; exec sleep 300")
        .unwrap();
    let child = spawn
        .spawn(null.as_fd(), out_w.as_fd(), null.as_fd())
        .unwrap();
    drop(out_w);
    let mut line = [0u8; 32];
    let n = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&out_r), &mut line).unwrap();
    let grandchild: i32 = std::str::from_utf8(&line[..n])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = child.pid() as i32;
    drop(child);
    // The leader is reaped (here or by the reaper thread) and the
    // grandchild, in its group, killed: neither pid is ours any more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let leader_gone = !Path::new(&format!("/proc/{pid}")).exists();
        let grandchild_gone = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true);
        if leader_gone && grandchild_gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leader {pid} or grandchild {grandchild} still there"
        );
        std::thread::yield_now();
    }
}

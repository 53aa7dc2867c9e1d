//! A tokio runtime — what a runner serves requests with — keeps working
//! under the default seccomp allow-list.
//!
//! The test re-executes its own binary with `IOLITE_SANDBOX_TOKIO_CHILD` set;
//! in that child the same test applies the profile to itself and runs the
//! runtime. libtest runs tests on a thread of its own, so landlock (which
//! needs a single-threaded process) is off here; the probe tests cover it.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use iolite_sandbox::{Measure, Profile, pids_cgroup_for, remove_pids_cgroup};

const CHILD: &str = "IOLITE_SANDBOX_TOKIO_CHILD";

#[test]
fn tokio_runtime_works_under_seccomp() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([
            "--exact",
            "tokio_runtime_works_under_seccomp",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run child");
    let pid_line = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(pid) = pid_line
        .lines()
        .find_map(|l| l.split_once("child pid: ").map(|(_, pid)| pid))
        .and_then(|p| p.parse().ok())
        .and_then(pids_cgroup_for)
    {
        remove_pids_cgroup(&pid).expect("remove cgroup");
    }
    assert!(
        out.status.success(),
        "child {:?} (signal {:?})\nstdout:\n{pid_line}\nstderr:\n{stderr}",
        out.status,
        out.status.signal()
    );
    assert!(pid_line.contains("report: "), "{pid_line}");
    assert!(pid_line.contains("seccomp(allow-list"), "{pid_line}");
    assert!(pid_line.contains("tokio ok"), "{pid_line}");
}

fn child() {
    println!("child pid: {}", std::process::id());
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
    // tokio's signal driver makes a socket pair once per process, and the
    // allow-list has no socketpair (a module could park descriptors in
    // flight in one): a runtime built before the sandbox made it; the
    // runtime below reuses it. A module cannot do this (its code runs
    // only once the sandbox is in force): it builds tokio without the
    // `signal` and `process` features, whose I/O driver needs none.
    drop(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("warm-up runtime"),
    );
    let profile = Profile {
        landlock: None,
        ..Profile::default()
    };
    let report = profile.apply().expect("apply");
    println!("report: {report}");
    assert!(report.is_applied(Measure::Seccomp));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        let mut a = tokio::net::UnixStream::from_std(a).expect("from_std");
        let mut b = tokio::net::UnixStream::from_std(b).expect("from_std");
        let writer = tokio::spawn(async move {
            for i in 0..100u32 {
                a.write_all(&i.to_le_bytes()).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let mut sum = 0u32;
        let mut buf = [0u8; 4];
        for _ in 0..100 {
            b.read_exact(&mut buf).await.expect("read");
            sum += u32::from_le_bytes(buf);
        }
        writer.await.expect("writer");
        assert_eq!(sum, 4950);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let blocking = tokio::task::spawn_blocking(|| (1..=10u64).product::<u64>())
            .await
            .expect("spawn_blocking");
        assert_eq!(blocking, 3_628_800);
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move { tx.send(7u8).await.expect("send") });
        assert_eq!(rx.recv().await, Some(7));
        let t = tokio::time::timeout(
            std::time::Duration::from_millis(5),
            std::future::pending::<()>(),
        )
        .await;
        assert!(t.is_err());
    });
    drop(rt);
    println!("tokio ok");
}

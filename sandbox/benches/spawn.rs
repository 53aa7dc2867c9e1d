//! `cargo bench -p iolite-sandbox --bench spawn`: one spawn and wait of
//! `/bin/true` by each way of starting a CGI program, from a process that
//! holds `IOLITE_BENCH_RSS_MIB` MiB (default 1024) of touched memory, as
//! a server with a warm cache does.
//!
//! - `posix_spawn`: glibc's, nothing applied (the floor: it cannot apply a
//!   user, rlimits or NO_NEW_PRIVS);
//! - `clone_vfork`: [`iolite_sandbox::Spawn`] with setsid, two rlimits,
//!   NO_NEW_PRIVS and chdir applied;
//! - `helper`: posix_spawn of an exec helper that applies one step and
//!   execs the program (`/usr/bin/setsid /bin/true`: a small C program,
//!   two execs);
//! - `fork`: `std::process::Command` with a `pre_exec` hook (std then
//!   forks, copying the page tables).

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

fn posix_spawn(argv: &[&str]) {
    let args: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut ptrs: Vec<*mut libc::c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    ptrs.push(std::ptr::null_mut());
    let envp: [*mut libc::c_char; 1] = [std::ptr::null_mut()];
    let mut pid = 0;
    // SAFETY: NUL-terminated argv and envp arrays of live CStrings; no
    // file actions or attributes.
    let r = unsafe {
        libc::posix_spawn(
            &mut pid,
            args[0].as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            ptrs.as_ptr(),
            envp.as_ptr(),
        )
    };
    assert_eq!(r, 0);
    let mut status = 0;
    // SAFETY: our child; one int we own.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

fn bench(c: &mut Criterion) {
    let mib: usize = std::env::var("IOLITE_BENCH_RSS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut held = vec![0u8; mib << 20];
    for page in held.chunks_mut(4096) {
        page[0] = 1;
    }
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut group = c.benchmark_group(format!("spawn_true_rss_{mib}MiB"));
    group.sample_size(30);
    group.measurement_time(std::time::Duration::from_secs(4));
    group.bench_function("posix_spawn", |b| b.iter(|| posix_spawn(&["/bin/true"])));
    let mut spawn = iolite_sandbox::Spawn::new(Path::new("/bin/true")).unwrap();
    spawn
        .dir(Path::new("/tmp"))
        .unwrap()
        .rlimit(libc::RLIMIT_NOFILE as i32, 256)
        .rlimit(libc::RLIMIT_CORE as i32, 0)
        .env(b"PATH", b"/usr/bin:/bin")
        .unwrap();
    group.bench_function("clone_vfork", |b| {
        b.iter(|| {
            let mut child = spawn
                .spawn(null.as_fd(), null.as_fd(), null.as_fd())
                .unwrap();
            child.wait().unwrap();
        })
    });
    let mut filtered = iolite_sandbox::Spawn::new(Path::new("/bin/true")).unwrap();
    filtered
        .dir(Path::new("/tmp"))
        .unwrap()
        .rlimit(libc::RLIMIT_NOFILE as i32, 256)
        .rlimit(libc::RLIMIT_CORE as i32, 0)
        .env(b"PATH", b"/usr/bin:/bin")
        .unwrap()
        .seccomp(&iolite_sandbox::ProgramFilter::new().unwrap());
    group.bench_function("clone_vfork_seccomp", |b| {
        b.iter(|| {
            let mut child = filtered
                .spawn(null.as_fd(), null.as_fd(), null.as_fd())
                .unwrap();
            child.wait().unwrap();
        })
    });
    group.bench_function("helper", |b| {
        b.iter(|| posix_spawn(&["/usr/bin/setsid", "/bin/true"]))
    });
    group.bench_function("fork", |b| {
        b.iter(|| {
            let mut cmd = std::process::Command::new("/bin/true");
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
            cmd.status().unwrap();
        })
    });
    group.finish();
    std::hint::black_box(&held);
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Test fixture: applies a sandbox profile to itself, then does one thing —
//! usually a forbidden one — so a test can check how it ends.
//!
//! `iolite-sandbox-probe ACTION [ARG...] [--option VALUE...]`
//!
//! Prints `report: <one-line report>` first, then `result: ...` lines. The
//! profile is [`Profile::default`] changed by the options (see `parse`).
//! Between the two phases it dlopens libm, as a runner loads a module.

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use iolite_sandbox::{Landlock, OpenPolicy, Profile};

fn usage(msg: &str) -> ExitCode {
    eprintln!("iolite-sandbox-probe: {msg}");
    ExitCode::from(2)
}

struct Options {
    action: String,
    rest: Vec<String>,
    profile: Profile,
    /// Start a thread before applying the profile (a runner mistake).
    early_thread: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut early_thread = false;
    let mut profile = Profile::default();
    let mut action = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    let num = |v: Option<&String>, name: &str| -> Result<u64, String> {
        v.ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--user" => profile.user = Some(it.next().ok_or("--user needs a value")?.clone()),
            "--keep-root" => profile.user = None,
            "--no-seccomp" => profile.seccomp = false,
            "--no-landlock" => profile.landlock = None,
            "--no-namespaces" => profile.namespaces = false,
            "--no-nnp" => profile.no_new_privs = false,
            "--early-thread" => early_thread = true,
            "--open" => {
                profile.open = match it.next().map(String::as_str) {
                    Some("never") => OpenPolicy::Never,
                    Some("landlock") => OpenPolicy::UnderLandlock,
                    Some("always") => OpenPolicy::Always,
                    other => return Err(format!("--open: bad value {other:?}")),
                }
            }
            "--as" => profile.rlimits.address_space = Some(num(it.next(), a)?),
            "--nofile" => profile.rlimits.open_files = Some(num(it.next(), a)?),
            "--cpu" => profile.rlimits.cpu_seconds = Some(num(it.next(), a)?),
            "--nproc" => profile.rlimits.processes = Some(num(it.next(), a)?),
            "--ro" | "--rw" => {
                let path = PathBuf::from(it.next().ok_or("path needed")?);
                let rules = profile.landlock.get_or_insert_with(Landlock::default);
                if a == "--ro" {
                    rules.read_only.push(path);
                } else {
                    rules.read_write.push(path);
                }
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if action.is_none() => action = Some(s.to_owned()),
            s => rest.push(s.to_owned()),
        }
    }
    Ok(Options {
        action: action.ok_or("no action")?,
        rest,
        profile,
        early_thread,
    })
}

type Cos = extern "C" fn(f64) -> f64;

/// What a runner does between the phases: load a shared object.
fn load_library() -> Result<Cos, String> {
    // SAFETY: dlopen with a valid NUL-terminated name; libm's initialisers
    // are those of the C library itself.
    let handle = unsafe { libc::dlopen(c"libm.so.6".as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        return Err("dlopen libm.so.6 failed".into());
    }
    // SAFETY: handle is a live dlopen handle and the name is NUL-terminated.
    let sym = unsafe { libc::dlsym(handle, c"cos".as_ptr()) };
    if sym.is_null() {
        return Err("dlsym cos failed".into());
    }
    // SAFETY: libm's `cos` has exactly the C signature double cos(double);
    // the handle is never closed, so the code stays mapped.
    Ok(unsafe { std::mem::transmute::<*mut libc::c_void, Cos>(sym) })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("list-syscalls") {
        // The allow-list as Markdown table rows, for sandbox/README.md.
        for g in iolite_sandbox::seccomp_allow_list() {
            let calls: Vec<String> = g.syscalls.iter().map(|c| format!("`{c}`")).collect();
            println!("| {} | {} | {} |", g.name, calls.join(" "), g.why);
        }
        return ExitCode::SUCCESS;
    }
    let Options {
        action,
        rest,
        profile,
        early_thread,
    } = match parse(&args) {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    if early_thread {
        std::thread::spawn(|| {
            loop {
                std::thread::park();
            }
        });
    }
    // A connected pair made before the sandbox, like the runner's socket.
    let (left, right) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return usage(&format!("socketpair: {e}")),
    };
    let pending = match profile.apply_before_load() {
        Ok(p) => p,
        Err(e) => return usage(&format!("phase 1: {e}")),
    };
    let cos = match load_library() {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    let report = match pending.apply_after_load() {
        Ok(r) => r,
        Err(e) => return usage(&format!("phase 2: {e}")),
    };
    say(&format!("report: {report}"));
    run(&action, &rest, cos, left, right)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn survived(what: &str) -> ExitCode {
    say(&format!("result: survived {what}"));
    ExitCode::from(3)
}

fn run(action: &str, rest: &[String], cos: Cos, left: UnixStream, right: UnixStream) -> ExitCode {
    match action {
        "report" => ExitCode::SUCCESS,
        "tcp" => {
            let r = std::net::TcpStream::connect("127.0.0.1:9");
            survived(&format!("tcp connect: {r:?}"))
        }
        "unix-socket" => {
            let r = UnixStream::connect("/nonexistent-iolite-probe");
            survived(&format!("unix connect: {r:?}"))
        }
        "ptrace" => {
            // SAFETY: PTRACE_TRACEME takes no pointers.
            let rc = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
            survived(&format!("ptrace: {rc}"))
        }
        "execve" => {
            let r = nix::unistd::execv(c"/bin/true", &[c"true"]);
            survived(&format!("execve: {r:?}"))
        }
        "fork" => {
            // SAFETY: the child only calls _exit.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    // SAFETY: _exit is async-signal-safe and ends the child.
                    unsafe { libc::_exit(0) }
                }
                r => survived(&format!("fork: {r:?}")),
            }
        }
        "spawn" => {
            let r = std::process::Command::new("/bin/true").status();
            survived(&format!("spawn: {r:?}"))
        }
        "kill-parent" => {
            let r = nix::sys::signal::kill(nix::unistd::getppid(), None);
            survived(&format!("kill(parent, 0): {r:?}"))
        }
        "mprotect-exec" => mprotect_exec(),
        "alloc" => {
            let mut hold: Vec<Vec<u8>> = Vec::new();
            loop {
                hold.push(vec![1u8; 16 << 20]);
                if hold.len() > 4096 {
                    return survived("64 GiB of allocations");
                }
            }
        }
        "alloc-try" => {
            let mut hold: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = Vec::new();
                if chunk.try_reserve_exact(16 << 20).is_err() {
                    say(&format!(
                        "result: allocation failed after {} MiB",
                        hold.len() * 16
                    ));
                    return ExitCode::SUCCESS;
                }
                chunk.resize(16 << 20, 1u8);
                hold.push(chunk);
                if hold.len() > 4096 {
                    return survived("64 GiB of allocations");
                }
            }
        }
        "nofile" => nofile(),
        "forkbomb" => forkbomb(),
        "cpu" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "write" | "read" => {
            for path in rest {
                let r = if action == "write" {
                    std::fs::write(path, b"probe")
                } else {
                    std::fs::read(path).map(drop)
                };
                match r {
                    Ok(()) => say(&format!("result: {action} {path}: ok")),
                    Err(e) => say(&format!(
                        "result: {action} {path}: errno {}",
                        e.raw_os_error().unwrap_or(-1)
                    )),
                }
            }
            ExitCode::SUCCESS
        }
        "status" => match std::fs::read_to_string("/proc/self/status") {
            Ok(status) => {
                let keys = [
                    "Uid:",
                    "Gid:",
                    "Groups:",
                    "CapPrm:",
                    "CapEff:",
                    "CapBnd:",
                    "NoNewPrivs:",
                    "Seccomp:",
                    "Seccomp_filters:",
                ];
                for line in status
                    .lines()
                    .filter(|l| keys.iter().any(|k| l.starts_with(k)))
                {
                    let line: Vec<&str> = line.split_whitespace().collect();
                    say(&format!("result: {}", line.join(" ")));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                say(&format!("result: /proc/self/status: {e}"));
                ExitCode::from(4)
            }
        },
        "work" => match work(cos, left, right) {
            Ok(()) => {
                say("result: work ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                say(&format!("result: work failed: {e}"));
                ExitCode::from(4)
            }
        },
        other => usage(&format!("unknown action {other}")),
    }
}

fn mprotect_exec() -> ExitCode {
    use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, mprotect};
    let len = std::num::NonZeroUsize::new(4096).expect("non-zero");
    let flags = MapFlags::MAP_PRIVATE;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh private anonymous mapping aliases no Rust object.
    let map = match unsafe { mmap_anonymous(None, len, prot, flags) } {
        Ok(m) => m,
        Err(e) => return survived(&format!("mmap failed: {e}")),
    };
    // SAFETY: the mapping was just created with this length and nothing
    // else refers to it.
    let r = unsafe { mprotect(map, 4096, ProtFlags::PROT_READ | ProtFlags::PROT_EXEC) };
    survived(&format!("mprotect(PROT_EXEC): {r:?}"))
}

fn nofile() -> ExitCode {
    let mut last = -1;
    loop {
        match nix::unistd::dup(1) {
            Ok(fd) => last = fd,
            Err(e) => {
                say(&format!("result: dup failed at fd {last}+1: {}", e.desc()));
                return if e == nix::errno::Errno::EMFILE {
                    say(&format!("result: emfile highest fd {last}"));
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(4)
                };
            }
        }
        if last > 1_000_000 {
            return survived("a million descriptors");
        }
    }
}

fn forkbomb() -> ExitCode {
    let (read_end, write_end) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return usage(&format!("pipe: {e}")),
    };
    let mut children = Vec::new();
    let failure = loop {
        if children.len() >= 4096 {
            break None;
        }
        // SAFETY: the child only closes a descriptor, reads a pipe and calls
        // _exit, all async-signal-safe.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // SAFETY: raw calls only; the child waits for the pipe to
                // close (the probe exits or drops the write end), then ends.
                unsafe {
                    libc::close(write_end.as_raw_fd());
                    let mut b = 0u8;
                    libc::read(read_end.as_raw_fd(), (&raw mut b).cast(), 1);
                    libc::_exit(0)
                }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => children.push(child),
            Err(e) => break Some(e),
        }
    };
    drop(write_end);
    let started = children.len();
    for child in children {
        let _ = nix::sys::wait::waitpid(child, None);
    }
    match failure {
        Some(e) => {
            say(&format!(
                "result: fork failed after {started} children: {}",
                e.desc()
            ));
            ExitCode::SUCCESS
        }
        None => survived("4096 forks"),
    }
}

fn work(cos: Cos, left: UnixStream, right: UnixStream) -> Result<(), String> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MemFdCreateFlag, memfd_create};
    use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

    // Threads, a channel (futex), sleeping, thread names.
    let (tx, rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..4u64)
        .map(|i| {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("probe-{i}"))
                .spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    tx.send((1..=1000u64).map(|k| k * i).sum::<u64>())
                })
                .map_err(|e| format!("spawn: {e}"))
        })
        .collect::<Result<_, _>>()?;
    drop(tx);
    for h in handles {
        h.join()
            .map_err(|_| "thread panicked".to_owned())?
            .map_err(|e| e.to_string())?;
    }
    let total: u64 = rx.iter().sum();
    if total != 500_500 * 6 {
        return Err(format!("threads summed {total}"));
    }
    let _ = std::thread::available_parallelism();

    // A panic caught inside the module does not kill it.
    let caught = std::panic::catch_unwind(|| panic!("probe panic (expected)"));
    if caught.is_ok() {
        return Err("catch_unwind returned Ok".into());
    }

    // Code loaded between the phases runs.
    if (cos(0.0) - 1.0).abs() > 1e-12 {
        return Err("cos(0) != 1".into());
    }

    // A sealed memfd, passed over the pre-existing socket and mapped read-only.
    let payload = b"iolite sealed buffer";
    let memfd = memfd_create(
        c"probe-pool",
        MemFdCreateFlag::MFD_ALLOW_SEALING | MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| format!("memfd_create: {e}"))?;
    nix::unistd::write(&memfd, payload).map_err(|e| format!("write memfd: {e}"))?;
    let seals = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    fcntl(memfd.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| format!("seal: {e}"))?;
    if nix::unistd::write(&memfd, b"x").is_ok() {
        return Err("write to a sealed memfd succeeded".into());
    }
    let fds = [memfd.as_raw_fd()];
    sendmsg::<()>(
        left.as_raw_fd(),
        &[IoSlice::new(b"p")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("sendmsg: {e}"))?;
    drop(memfd);
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        right.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let received = msg
        .cmsgs()
        .map_err(|e| format!("cmsgs: {e}"))?
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .ok_or("no descriptor received")?;
    // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
    let received = unsafe { OwnedFd::from_raw_fd(received) };
    check_mapping(&received, payload)?;
    Ok(())
}

fn check_mapping(fd: &OwnedFd, payload: &[u8]) -> Result<(), String> {
    use nix::sys::mman::{MapFlags, ProtFlags, mmap, mprotect, munmap};
    let len = std::num::NonZeroUsize::new(payload.len()).ok_or("empty payload")?;
    // SAFETY: a fresh shared read-only mapping of a sealed memfd: its size
    // cannot shrink (F_SEAL_SHRINK), so reads stay in bounds.
    let map = unsafe { mmap(None, len, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, fd, 0) }
        .map_err(|e| format!("mmap: {e}"))?;
    // SAFETY: the mapping is `len` bytes long and readable, and lives until
    // the munmap below.
    let seen = unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<u8>(), len.get()) };
    if seen != payload {
        return Err(format!(
            "mapped bytes differ: {:?}",
            CStr::from_bytes_until_nul(seen)
        ));
    }
    // SAFETY: same mapping; asking for write access must be refused.
    let widened = unsafe { mprotect(map, len.get(), ProtFlags::PROT_READ | ProtFlags::PROT_WRITE) };
    if widened.is_ok() {
        return Err("mprotect(PROT_WRITE) on a sealed read-only mapping succeeded".into());
    }
    // SAFETY: unmapping the mapping made above; `seen` is not used after.
    unsafe { munmap(map, len.get()) }.map_err(|e| format!("munmap: {e}"))?;
    Ok(())
}

//! The seccomp allow-list, built with seccompiler.
//!
//! The filters are installed on every thread (TSYNC), in two steps around
//! the loading of the module, so that the library's constructors already
//! run under the allow-list ([`apply_for_load`]):
//!
//! 1. `clone3` fails with ENOSYS: its flags sit in memory a filter cannot
//!    read, so glibc is sent back to `clone`, whose flags can be checked.
//! 2. the allow-list: everything in [`seccomp_allow_list`] (some calls only
//!    with the arguments noted there) is let through; any other call kills the
//!    whole process with SIGSYS (SECCOMP_RET_KILL_PROCESS). What the
//!    dynamic loader needs is in it: path calls (landlock decides which
//!    paths), and `mmap` with PROT_EXEC of a file.
//!
//! then, once the module is loaded ([`apply_after_load`]):
//!
//! 3. `mmap`/`mprotect` with PROT_EXEC and `seccomp` itself kill: no new
//!    code, no more filters;
//! 4. path calls fail with EACCES when the [`OpenPolicy`] denies them.
//!
//! The kernel takes the strictest answer of all filters, so 1, 3 and 4 win
//! over the allow-list for the calls they name. Filters only ever take
//! rights away: a library's constructor that stacks filters of its own
//! (it may, between the two steps) can restrict itself, never loosen
//! anything, and 3 and 4 guard its own process only.

use std::collections::BTreeMap;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::SandboxError;
use crate::report::Outcome;
use crate::settings::OpenPolicy;

/// One group of the allow-list: the calls, and why a runner needs them.
#[derive(Debug, Clone)]
pub struct SyscallGroup {
    /// Short name.
    pub name: &'static str,
    /// Why a runner needs these after setup (and any argument restriction).
    pub why: &'static str,
    /// The syscall names on this architecture.
    pub syscalls: Vec<&'static str>,
}

macro_rules! calls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name)),*]
    };
}

#[cfg(target_arch = "x86_64")]
macro_rules! x86_only {
    ($($name:ident),* $(,)?) => { calls![$($name),*] };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! x86_only {
    ($($name:ident),* $(,)?) => {
        &[]
    };
}

type Calls = &'static [(&'static str, libc::c_long)];

/// Groups: (name, why, calls on every architecture, x86_64-only legacy calls).
const GROUPS: &[(&str, &str, Calls, Calls)] = &[
    (
        "fd-io",
        "read, write and inspect descriptors the runner already holds (its socket, pools, \
         stdout/stderr); ioctl only FIONBIO, FIOCLEX, FIONCLEX, FIONREAD, TCGETS; fcntl only \
         to duplicate, read and set descriptor and status flags, lock, add and read seals \
         and read a pipe's size (no F_SETOWN, F_SETSIG, F_SETLEASE, F_NOTIFY, F_SETPIPE_SZ)",
        calls![
            SYS_read,
            SYS_write,
            SYS_readv,
            SYS_writev,
            SYS_pread64,
            SYS_pwrite64,
            SYS_preadv,
            SYS_pwritev,
            SYS_preadv2,
            SYS_pwritev2,
            SYS_lseek,
            SYS_close,
            SYS_dup,
            SYS_dup3,
            SYS_fcntl,
            SYS_fstat,
            SYS_newfstatat,
            SYS_statx,
            SYS_fstatfs,
            SYS_ftruncate,
            SYS_fallocate,
            SYS_fsync,
            SYS_fdatasync,
            SYS_sendfile,
            SYS_ioctl,
        ],
        x86_only![SYS_dup2],
    ),
    (
        "socket-io",
        "messages and descriptors (SCM_RIGHTS) over the sockets the server gave it; no \
         socket, socketpair, connect, bind, listen or accept (no private socket pair to \
         park descriptors in flight in)",
        calls![
            SYS_recvmsg,
            SYS_sendmsg,
            SYS_recvfrom,
            SYS_sendto,
            SYS_recvmmsg,
            SYS_sendmmsg,
            SYS_shutdown,
            SYS_getsockopt,
            SYS_getsockname,
            SYS_getpeername,
        ],
        x86_only![],
    ),
    (
        "memory",
        "heap, thread stacks and mapping received pools; mprotect never with PROT_EXEC, \
         mmap with PROT_EXEC only of a file while the module is loaded, never after",
        calls![
            SYS_mmap,
            SYS_munmap,
            SYS_mprotect,
            SYS_madvise,
            SYS_mremap,
            SYS_brk,
            SYS_msync
        ],
        x86_only![],
    ),
    (
        "loading",
        "the runner stacks its post-load filter (seccomp SET_MODE_FILTER only; forbidden \
         once the module is loaded); no memfd_create: the runner made the output pool",
        calls![SYS_seccomp],
        x86_only![],
    ),
    (
        "threads",
        "thread pools: clone only with CLONE_THREAD and no namespace flag (clone3 gets \
         ENOSYS so glibc falls back to clone), futexes, rseq, thread names through \
         prctl(PR_SET_NAME/PR_GET_NAME) only (and PR_SET_NO_NEW_PRIVS, already set)",
        calls![
            SYS_clone,
            SYS_clone3,
            SYS_futex,
            SYS_set_robust_list,
            SYS_rseq,
            SYS_sched_yield,
            SYS_sched_getaffinity,
            SYS_set_tid_address,
            SYS_gettid,
            SYS_getpid,
            SYS_exit,
            SYS_exit_group,
            SYS_prctl,
            SYS_restart_syscall,
        ],
        x86_only![],
    ),
    (
        "time",
        "clocks and sleeping (timeouts, Instant)",
        calls![
            SYS_clock_gettime,
            SYS_clock_getres,
            SYS_gettimeofday,
            SYS_nanosleep,
            SYS_clock_nanosleep
        ],
        x86_only![],
    ),
    (
        "event-loop",
        "epoll/poll readiness and eventfd/pipe wakers of an async runtime",
        calls![
            SYS_epoll_create1,
            SYS_epoll_ctl,
            SYS_epoll_pwait,
            SYS_epoll_pwait2,
            SYS_ppoll,
            SYS_pselect6,
            SYS_eventfd2,
            SYS_pipe2,
        ],
        x86_only![SYS_epoll_wait, SYS_poll],
    ),
    (
        "signals",
        "handlers, masks and the alternate stack (stack-overflow guard); kill and tgkill \
         only to its own pid (abort, panics); never to another process",
        calls![
            SYS_rt_sigaction,
            SYS_rt_sigprocmask,
            SYS_rt_sigreturn,
            SYS_sigaltstack,
            SYS_kill,
            SYS_tgkill,
        ],
        x86_only![],
    ),
    (
        "identity",
        "reading its own ids, limits (prlimit64 on itself and without a new limit), \
         resource usage, uname and randomness",
        calls![
            SYS_getuid,
            SYS_geteuid,
            SYS_getgid,
            SYS_getegid,
            SYS_getppid,
            SYS_getrandom,
            SYS_uname,
            SYS_getrusage,
            SYS_prlimit64,
            SYS_getrlimit,
        ],
        x86_only![],
    ),
    (
        "paths",
        "opening, listing, creating and removing files by path: allowed or EACCES by the \
         open policy; where allowed, landlock decides which paths",
        PATH_CALLS,
        x86_only![
            SYS_open,
            SYS_access,
            SYS_readlink,
            SYS_mkdir,
            SYS_unlink,
            SYS_rmdir,
            SYS_rename,
            SYS_renameat,
            SYS_stat,
            SYS_lstat,
        ],
    ),
];

const PATH_CALLS: Calls = calls![
    SYS_openat,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_readlinkat,
    SYS_getdents64,
    SYS_getcwd,
    SYS_mkdirat,
    SYS_unlinkat,
    SYS_renameat2,
];

/// The allow-list, group by group, for documentation and logs. The names are
/// those of this architecture (x86_64 includes legacy calls like `open`).
pub fn seccomp_allow_list() -> Vec<SyscallGroup> {
    GROUPS
        .iter()
        .map(|(name, why, common, legacy)| SyscallGroup {
            name,
            why,
            syscalls: common
                .iter()
                .chain(legacy.iter())
                .map(|(n, _)| n.strip_prefix("SYS_").unwrap_or(n))
                .collect(),
        })
        .collect()
}

fn all_calls() -> impl Iterator<Item = (&'static str, libc::c_long)> {
    GROUPS
        .iter()
        .flat_map(|(_, _, common, legacy)| common.iter().chain(legacy.iter()).copied())
}

fn path_calls() -> impl Iterator<Item = libc::c_long> {
    GROUPS
        .iter()
        .filter(|(name, ..)| *name == "paths")
        .flat_map(|(_, _, common, legacy)| common.iter().chain(legacy.iter()).map(|(_, n)| *n))
}

fn cond(arg: u8, len: Len, op: Op, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, len, op, value).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn u(v: impl TryInto<u64>) -> u64 {
    v.try_into().unwrap_or(u64::MAX)
}

/// The argument rules for the calls allowed only in part; an empty vector
/// allows every call of that number.
fn rules_for(nr: libc::c_long, pid: u32) -> Result<Vec<SeccompRule>, SandboxError> {
    let no_exec = |arg| {
        rule(vec![cond(
            arg,
            Len::Dword,
            Op::MaskedEq(u(libc::PROT_EXEC)),
            0,
        )?])
    };
    Ok(match nr {
        // PROT_EXEC only for a file (the loader's segments): not anonymous.
        libc::SYS_mmap => vec![
            no_exec(2)?,
            rule(vec![
                cond(3, Len::Dword, Op::MaskedEq(u(libc::MAP_ANONYMOUS)), 0)?,
                cond(4, Len::Dword, Op::Ne, u64::from(u32::MAX))?,
            ])?,
        ],
        libc::SYS_mprotect => vec![no_exec(2)?],
        libc::SYS_seccomp => vec![rule(vec![cond(
            0,
            Len::Dword,
            Op::Eq,
            u(libc::SECCOMP_SET_MODE_FILTER),
        )?])?],
        libc::SYS_fcntl => FCNTL_COMMANDS
            .iter()
            .map(|&cmd| rule(vec![cond(1, Len::Dword, Op::Eq, u(cmd))?]))
            .collect::<Result<_, _>>()?,
        libc::SYS_clone => {
            let ns = libc::CLONE_NEWNS
                | libc::CLONE_NEWCGROUP
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUSER
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNET;
            let mask = u(libc::CLONE_THREAD | ns);
            vec![rule(vec![cond(
                0,
                Len::Qword,
                Op::MaskedEq(mask),
                u(libc::CLONE_THREAD),
            )?])?]
        }
        libc::SYS_kill | libc::SYS_tgkill => {
            vec![rule(vec![cond(0, Len::Dword, Op::Eq, u64::from(pid))?])?]
        }
        libc::SYS_ioctl => [
            u(libc::FIONBIO),
            u(libc::FIOCLEX),
            u(libc::FIONCLEX),
            u(libc::FIONREAD),
            u(libc::TCGETS),
        ]
        .into_iter()
        .map(|cmd| rule(vec![cond(1, Len::Dword, Op::Eq, cmd)?]))
        .collect::<Result<_, _>>()?,
        libc::SYS_prctl => [
            u(libc::PR_SET_NAME),
            u(libc::PR_GET_NAME),
            // Already set; seccompiler sets it before installing a filter.
            u(libc::PR_SET_NO_NEW_PRIVS),
        ]
        .into_iter()
        .map(|op| rule(vec![cond(0, Len::Dword, Op::Eq, op)?]))
        .collect::<Result<_, _>>()?,
        libc::SYS_prlimit64 => vec![rule(vec![
            cond(0, Len::Dword, Op::Eq, 0)?,
            cond(2, Len::Qword, Op::Eq, 0)?,
        ])?],
        _ => Vec::new(),
    })
}

/// The fcntl commands a module may use: descriptor and status flags,
/// duplication, record locks, seals, the size of a pipe. Not the ones that
/// make the kernel signal a process (F_SETOWN, F_SETOWN_EX, F_SETSIG,
/// F_SETLEASE, F_NOTIFY: landlock's signal scope does not cover them before
/// Linux 6.12) nor F_SETPIPE_SZ (kernel memory).
const FCNTL_COMMANDS: &[libc::c_int] = &[
    libc::F_DUPFD,
    libc::F_DUPFD_CLOEXEC,
    libc::F_GETFD,
    libc::F_SETFD,
    libc::F_GETFL,
    libc::F_SETFL,
    libc::F_GETLK,
    libc::F_SETLK,
    libc::F_SETLKW,
    libc::F_OFD_GETLK,
    libc::F_OFD_SETLK,
    libc::F_OFD_SETLKW,
    libc::F_ADD_SEALS,
    libc::F_GET_SEALS,
    libc::F_GETPIPE_SZ,
];

fn errno(e: libc::c_int) -> u32 {
    u32::try_from(e).unwrap_or(u32::from(u16::MAX))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<seccompiler::BpfProgram, SandboxError> {
    SeccompFilter::new(rules, mismatch, matched, arch)
        .and_then(TryInto::try_into)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))
}

/// The programs installed before the module is loaded, in installation
/// order (clone3, the allow-list), and the allow-list's size.
fn build_for_load(
    pid: u32,
    arch: TargetArch,
) -> Result<(Vec<seccompiler::BpfProgram>, usize), SandboxError> {
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(errno(libc::ENOSYS)),
        arch,
    )?;
    let mut allow = BTreeMap::new();
    for (_, nr) in all_calls() {
        allow.insert(nr, rules_for(nr, pid)?);
    }
    let count = allow.len();
    let allow = compile(
        allow,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )?;
    Ok((vec![clone3, allow], count))
}

/// The programs stacked once the module is loaded: no PROT_EXEC and no
/// more filters (kill), and, when paths are denied, EACCES for path calls.
fn build_after_load(
    allow_paths: bool,
    arch: TargetArch,
) -> Result<Vec<seccompiler::BpfProgram>, SandboxError> {
    let exec = |arg| -> Result<Vec<SeccompRule>, SandboxError> {
        Ok(vec![rule(vec![cond(
            arg,
            Len::Dword,
            Op::MaskedEq(u(libc::PROT_EXEC)),
            u(libc::PROT_EXEC),
        )?])?])
    };
    let closed = BTreeMap::from([
        (libc::SYS_mmap, exec(2)?),
        (libc::SYS_mprotect, exec(2)?),
        (libc::SYS_seccomp, Vec::new()),
    ]);
    let mut programs = Vec::new();
    if !allow_paths {
        programs.push(compile(
            path_calls().map(|n| (n, Vec::new())).collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(errno(libc::EACCES)),
            arch,
        )?);
    }
    // Last: it forbids `seccomp` itself.
    programs.push(compile(
        closed,
        SeccompAction::Allow,
        SeccompAction::KillProcess,
        arch,
    )?);
    Ok(programs)
}

fn target_arch() -> Option<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).ok()
}

fn install(programs: &[seccompiler::BpfProgram]) -> Result<(), SandboxError> {
    for program in programs {
        seccompiler::apply_filter_all_threads(program)
            .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    }
    Ok(())
}

/// Step one, before the module is loaded: clone3 and the allow-list. Its
/// detail names the allow-list's size.
pub(crate) fn apply_for_load() -> Result<Outcome, SandboxError> {
    let Some(arch) = target_arch() else {
        return Ok(Outcome::Unavailable(format!(
            "no filter for {}",
            std::env::consts::ARCH
        )));
    };
    let (programs, count) = build_for_load(std::process::id(), arch)?;
    install(&programs)?;
    Ok(Outcome::Applied(format!("allow-list, {count} syscalls")))
}

/// Step two, once the module is loaded: PROT_EXEC and seccomp closed, and
/// path calls denied unless `allow_paths`. Returns the detail to add.
pub(crate) fn apply_after_load(
    allow_paths: bool,
    policy: OpenPolicy,
) -> Result<String, SandboxError> {
    let Some(arch) = target_arch() else {
        return Ok(String::new());
    };
    install(&build_after_load(allow_paths, arch)?)?;
    let paths = if allow_paths { "allowed" } else { "EACCES" };
    Ok(format!("open={}: paths {paths}", policy.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_dangerous_call_is_listed() {
        let names: Vec<&str> = seccomp_allow_list()
            .iter()
            .flat_map(|g| g.syscalls.iter().copied())
            .collect();
        for bad in [
            "socket",
            "connect",
            "bind",
            "listen",
            "accept",
            "accept4",
            "ptrace",
            "execve",
            "execveat",
            "fork",
            "vfork",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "process_vm_readv",
            "process_vm_writev",
            "io_uring_setup",
            "userfaultfd",
            "tkill",
            "setuid",
            "setresuid",
            "pidfd_open",
            "pidfd_send_signal",
            "keyctl",
            "perf_event_open",
            "socketpair",
            "memfd_create",
            "landlock_restrict_self",
        ] {
            assert!(!names.contains(&bad), "{bad} is in the allow-list");
        }
        for needed in ["read", "mmap", "futex", "clone", "fcntl", "exit_group"] {
            assert!(names.contains(&needed), "{needed} missing");
        }
    }

    #[test]
    fn readme_lists_every_group_and_call() {
        let readme = include_str!("../README.md");
        for group in seccomp_allow_list() {
            assert!(
                readme.contains(&format!("| {} |", group.name)),
                "{}",
                group.name
            );
            for call in group.syscalls {
                assert!(
                    readme.contains(&format!("`{call}`")),
                    "README lacks `{call}`"
                );
            }
        }
    }

    #[test]
    fn filters_compile_for_this_arch() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
        let (load, count) = build_for_load(1, arch).unwrap();
        assert_eq!(load.len(), 2);
        assert_eq!(count, all_calls().count());
        assert_eq!(build_after_load(true, arch).unwrap().len(), 1);
        assert_eq!(build_after_load(false, arch).unwrap().len(), 2);
    }
}

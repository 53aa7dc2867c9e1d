//! The child between `clone` and `execve`: raw system calls only, on what
//! the parent prepared (see the parent module's doc for the steps and why).

use std::os::fd::RawFd;

/// The steps of the child, for the error the parent reports.
pub(super) const STEPS: [&str; 10] = [
    "",
    "sigaction",
    "sigprocmask",
    "setsid",
    "prlimit",
    "dup2",
    "setgroups",
    "setgid",
    "setuid",
    "prctl(NO_NEW_PRIVS)",
];
pub(super) const STEP_CHDIR: i32 = 10;
pub(super) const STEP_EXEC: i32 = 11;
pub(super) const STEP_CGROUP: i32 = 12;
pub(super) const STEP_LANDLOCK: i32 = 13;
pub(super) const STEP_SECCOMP: i32 = 14;

pub(super) fn step_name(step: i32) -> &'static str {
    match step {
        STEP_CHDIR => "chdir",
        STEP_LANDLOCK => "landlock_restrict_self",
        STEP_SECCOMP => "seccomp",
        STEP_EXEC => "execve",
        STEP_CGROUP => "joining the cgroup",
        n => STEPS.get(n as usize).copied().unwrap_or("spawn"),
    }
}

/// What the child reads (prepared by the parent) and writes (a failed
/// step and its errno).
#[repr(C)]
pub(super) struct ChildArgs {
    pub(super) path: *const libc::c_char,
    pub(super) argv: *const *const libc::c_char,
    pub(super) envp: *const *const libc::c_char,
    pub(super) dir: *const libc::c_char,
    pub(super) fds: [RawFd; 3],
    pub(super) rlimits: *const (libc::c_int, libc::rlimit64),
    pub(super) n_rlimits: usize,
    pub(super) set_ids: bool,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) no_new_privs: bool,
    /// `cgroup.procs` to write "0" into, or -1.
    pub(super) cgroup: RawFd,
    /// A landlock ruleset to put in force, or -1.
    pub(super) landlock: RawFd,
    /// seccomp filters to put in force, in order.
    pub(super) filters: *const libc::sock_fprog,
    pub(super) n_filters: usize,
    /// Bit `n - 1`: signal `n` has a disposition other than the default.
    pub(super) reset: u64,
    /// The signal mask the program gets (the parent's, before the clone).
    pub(super) mask: u64,
    /// Written by a child whose step failed.
    pub(super) failed_step: i32,
    pub(super) errno: i32,
}

/// The child, between clone and exec: raw system calls only (see the
/// module doc). Returns only when a step failed (the exit code).
pub(super) extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive and not touched by
    // the parent until this child execs or exits (CLONE_VFORK).
    let args = unsafe { &mut *arg.cast::<ChildArgs>() };
    // SAFETY: every call below is a raw system call on integers and on
    // memory the parent prepared for it (NUL-terminated strings and
    // arrays, a zeroed kernel sigaction, rlimit values), as `ChildArgs`
    // documents; none allocates or takes a lock.
    unsafe {
        let fail = |args: &mut ChildArgs, step: i32| -> libc::c_int {
            args.failed_step = step;
            args.errno = *libc::__errno_location();
            libc::syscall(libc::SYS_exit, 127 as libc::c_long);
            127
        };
        // SIG_DFL, no flags, no restorer, empty mask: all zero whatever
        // the architecture's layout of the kernel's sigaction.
        let default_action = [0u64; 4];
        for sig in 1..=64 {
            if args.reset & (1u64 << (sig - 1)) != 0
                && libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig as libc::c_long,
                    default_action.as_ptr(),
                    std::ptr::null::<u64>(),
                    8 as libc::c_long,
                ) != 0
            {
                return fail(args, 1);
            }
        }
        let mask = args.mask;
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            &raw const mask,
            std::ptr::null::<u64>(),
            8 as libc::c_long,
        ) != 0
        {
            return fail(args, 2);
        }
        if libc::syscall(libc::SYS_setsid) < 0 {
            return fail(args, 3);
        }
        if args.cgroup >= 0
            && libc::syscall(
                libc::SYS_write,
                args.cgroup as libc::c_long,
                c"0".as_ptr(),
                1 as libc::c_long,
            ) != 1
        {
            return fail(args, STEP_CGROUP);
        }
        for i in 0..args.n_rlimits {
            let (resource, limit) = &*args.rlimits.add(i);
            if libc::syscall(
                libc::SYS_prlimit64,
                0 as libc::c_long,
                *resource as libc::c_long,
                limit as *const libc::rlimit64,
                std::ptr::null::<libc::rlimit64>(),
            ) != 0
            {
                return fail(args, 4);
            }
        }
        for (target, &fd) in args.fds.iter().enumerate() {
            if libc::syscall(
                libc::SYS_dup3,
                fd as libc::c_long,
                target as libc::c_long,
                0 as libc::c_long,
            ) < 0
            {
                return fail(args, 5);
            }
        }
        // Every other descriptor close-on-exec (before Linux 5.11 this
        // fails, and the server's descriptors are close-on-exec anyway).
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_long,
            libc::c_long::from(u32::MAX),
            libc::CLOSE_RANGE_CLOEXEC as libc::c_long,
        );
        if args.set_ids {
            if libc::syscall(
                libc::SYS_setgroups,
                0 as libc::c_long,
                std::ptr::null::<libc::gid_t>(),
            ) != 0
            {
                return fail(args, 6);
            }
            if libc::syscall(libc::SYS_setgid, args.gid as libc::c_long) != 0 {
                return fail(args, 7);
            }
            if libc::syscall(libc::SYS_setuid, args.uid as libc::c_long) != 0 {
                return fail(args, 8);
            }
        }
        if args.no_new_privs
            && libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_NO_NEW_PRIVS as libc::c_long,
                1 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
            ) != 0
        {
            return fail(args, 9);
        }
        if args.landlock >= 0
            && libc::syscall(
                libc::SYS_landlock_restrict_self,
                args.landlock as libc::c_long,
                0 as libc::c_long,
            ) != 0
        {
            return fail(args, STEP_LANDLOCK);
        }
        for i in 0..args.n_filters {
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_long,
                0 as libc::c_long,
                args.filters.add(i),
            ) != 0
            {
                return fail(args, STEP_SECCOMP);
            }
        }
        if !args.dir.is_null() && libc::syscall(libc::SYS_chdir, args.dir) != 0 {
            return fail(args, STEP_CHDIR);
        }
        libc::syscall(libc::SYS_execve, args.path, args.argv, args.envp);
        fail(args, STEP_EXEC)
    }
}

//! [`ProgramFilter`]: the seccomp filter a foreign program (a CGI program,
//! any language, code we did not write) runs under.
//!
//! A module runner gets an allow-list ([`crate::seccomp_allow_list`]): we
//! know what it does. A CGI program can be a shell, Perl, PHP, git, a
//! compiled binary: no allow-list fits them all, so this is a deny-list
//! in the spirit of Docker's default profile and systemd's
//! `@system-service`: the calls no web program needs, that reach beyond
//! the process (other processes' memory, namespaces, mounts, the kernel's
//! configuration) or that widen the kernel's attack surface (bpf,
//! io_uring, userfaultfd, perf, the keyring). They fail with `EPERM`, as
//! a container's would, so a program that probes for them carries on.
//! `clone` with a namespace flag fails the same way; `clone3`, whose
//! flags sit in memory a filter cannot read, fails with `ENOSYS`, which
//! sends glibc and Rust's std back to `clone`.
//!
//! Built once per mount ([`bpf`]: a binary search, not seccompiler's
//! chain, since the kernel's cost of installing a filter grows with it);
//! each program puts it in force between fork and exec
//! ([`crate::Spawn::seccomp`], after NO_NEW_PRIVS, which a filter needs
//! in a process without CAP_SYS_ADMIN). The numbers are this
//! architecture's: 32-bit calls (i386, x32) kill the process, so a
//! 32-bit program needs the filter off.

use std::sync::Arc;

use crate::error::SandboxError;

mod bpf;

type Calls = &'static [(&'static str, libc::c_long)];

macro_rules! calls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name)),*]
    };
}

#[cfg(target_arch = "x86_64")]
const X86_PORTS: Calls = calls![SYS_iopl, SYS_ioperm];
#[cfg(not(target_arch = "x86_64"))]
const X86_PORTS: Calls = &[];

/// The denied groups: name, why, calls (denied whatever their arguments).
const DENIED: &[(&str, &str, Calls)] = &[
    (
        "namespaces",
        "a program makes no namespace of its own nor enters one (and `clone` with a \
         CLONE_NEW* flag fails too)",
        calls![SYS_unshare, SYS_setns],
    ),
    (
        "mounts",
        "no mount, no new root",
        calls![
            SYS_mount,
            SYS_umount2,
            SYS_pivot_root,
            SYS_chroot,
            SYS_fsopen,
            SYS_fsconfig,
            SYS_fsmount,
            SYS_fspick,
            SYS_move_mount,
            SYS_open_tree,
            SYS_mount_setattr,
        ],
    ),
    (
        "other-processes",
        "no reading or writing another process (ptrace, its memory, its descriptors)",
        calls![
            SYS_ptrace,
            SYS_process_vm_readv,
            SYS_process_vm_writev,
            SYS_kcmp,
            SYS_pidfd_getfd,
        ],
    ),
    (
        "kernel-surface",
        "interfaces with a record of privilege escalations that no web program needs",
        calls![
            SYS_bpf,
            SYS_perf_event_open,
            SYS_userfaultfd,
            SYS_io_uring_setup,
            SYS_io_uring_enter,
            SYS_io_uring_register,
            SYS_add_key,
            SYS_request_key,
            SYS_keyctl,
            SYS_open_by_handle_at,
            SYS_name_to_handle_at,
        ],
    ),
    (
        "system",
        "the machine's configuration: modules, kexec, reboot, swap, clocks, names, \
         accounting, the kernel log, quotas",
        calls![
            SYS_init_module,
            SYS_finit_module,
            SYS_delete_module,
            SYS_kexec_load,
            SYS_kexec_file_load,
            SYS_reboot,
            SYS_swapon,
            SYS_swapoff,
            SYS_settimeofday,
            SYS_clock_settime,
            SYS_clock_adjtime,
            SYS_adjtimex,
            SYS_sethostname,
            SYS_setdomainname,
            SYS_acct,
            SYS_syslog,
            SYS_quotactl,
            SYS_vhangup,
        ],
    ),
    ("io-ports", "no direct hardware access", X86_PORTS),
];

/// The namespace flags `clone` is refused with.
const NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The built filter (cheap to clone: shared).
#[derive(Debug, Clone)]
pub struct ProgramFilter {
    program: Arc<[libc::sock_filter]>,
}

impl ProgramFilter {
    /// Builds the filter for this architecture.
    pub fn new() -> Result<ProgramFilter, SandboxError> {
        if !bpf::supported() {
            return Err(SandboxError::Seccomp(format!(
                "no filter for {}",
                std::env::consts::ARCH
            )));
        }
        let mask = NAMESPACE_FLAGS.iter().fold(0u32, |m, &f| m | f as u32);
        let denied: Vec<(u32, bpf::Action)> = DENIED
            .iter()
            .flat_map(|(_, _, calls)| calls.iter())
            .map(|&(_, nr)| (nr as u32, bpf::Action::Errno(libc::EPERM as u16)))
            .chain([
                (libc::SYS_clone as u32, bpf::Action::CloneUnless(mask)),
                (
                    libc::SYS_clone3 as u32,
                    bpf::Action::Errno(libc::ENOSYS as u16),
                ),
            ])
            .collect();
        Ok(ProgramFilter {
            program: bpf::program(&denied).into(),
        })
    }

    /// The denied groups, for documentation and logs: (name, why, calls).
    pub fn denied() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
        DENIED
            .iter()
            .filter(|(_, _, calls)| !calls.is_empty())
            .map(|&(name, why, calls)| {
                let names = calls
                    .iter()
                    .map(|(n, _)| n.strip_prefix("SYS_").unwrap_or(n));
                (name, why, names.collect())
            })
            .collect()
    }

    /// The BPF program.
    pub(crate) fn program(&self) -> &[libc::sock_filter] {
        &self.program
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_gets_the_listed_action_and_no_other() {
        let filter = ProgramFilter::new().unwrap();
        let program = filter.program();
        assert!(program.len() < 255, "{} instructions", program.len());
        let denied: Vec<u32> = DENIED
            .iter()
            .flat_map(|(_, _, calls)| calls.iter().map(|&(_, nr)| nr as u32))
            .collect();
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let run = |nr, arg0| bpf::run(program, bpf::NATIVE, nr, arg0);
        for nr in 0..1024 {
            let want = if denied.contains(&nr) {
                eperm
            } else if nr == libc::SYS_clone3 as u32 {
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
            } else {
                libc::SECCOMP_RET_ALLOW
            };
            assert_eq!(run(nr, 0), want, "call {nr}");
        }
        let clone = libc::SYS_clone as u32;
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(run(clone, thread), libc::SECCOMP_RET_ALLOW);
        for flag in NAMESPACE_FLAGS {
            assert_eq!(run(clone, flag as u64 | 17), eperm, "{flag:#x}");
        }
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        assert_eq!(run(0x4000_0000 | 272, 0), kill, "x32");
        assert_eq!(bpf::run(program, 0x4000_0003, 1, 0), kill, "i386");
    }

    #[test]
    fn denies_what_the_readme_lists() {
        let readme = include_str!("../README.md");
        for (name, _, calls) in ProgramFilter::denied() {
            assert!(
                readme.contains(&format!("| {name} |")),
                "README lacks {name}"
            );
            for call in calls {
                assert!(
                    readme.contains(&format!("`{call}`")),
                    "README lacks `{call}`"
                );
            }
        }
    }

    #[test]
    fn denies_nothing_a_web_program_needs() {
        let names: Vec<&str> = ProgramFilter::denied()
            .into_iter()
            .flat_map(|(_, _, calls)| calls)
            .collect();
        for needed in [
            "execve", "clone", "read", "write", "openat", "socket", "connect", "mmap", "pipe2",
            "wait4", "kill", "setsid", "chdir",
        ] {
            assert!(!names.contains(&needed), "{needed} is denied");
        }
    }
}

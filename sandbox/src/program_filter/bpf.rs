//! The deny-list as one classic BPF program: a binary search over the
//! sorted system call numbers.
//!
//! Why not seccompiler here (the runners' allow-list uses it): a program
//! installs its filter once per request, and the kernel's cost of
//! installing one grows with the length of the path a call takes through
//! it — at attach time it runs the filter for every system call number of
//! both x86 ABIs to fill its action cache, and JIT-compiles it.
//! seccompiler checks the numbers one after another. Measured with `perf
//! record` over a loop of 2,400 spawns of `/bin/true`, half of them
//! filtered (2-core machine busy with builds, 2026-12-08): with
//! seccompiler's form of this list, installing the filter (`do_seccomp`)
//! took 14.2% of all samples, more than the `execve` of the filtered and
//! unfiltered programs together (13.2%), about 150–200 µs per spawn; in
//! this form 1.5% against 16.4%, a tenth of an `execve`. A search tree
//! takes at most seven comparisons per number.
//!
//! Layout: the architecture must be this one (else the process is
//! killed: the numbers below are this ABI's, and x86_64's x32 calls, bit
//! 30 set, are killed too); then the number is searched; a found number
//! returns its action (`clone` first tests its flags); anything else is
//! allowed.

/// What a denied number gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// `SECCOMP_RET_ERRNO` with this errno.
    Errno(u16),
    /// `clone`: `EPERM` when a flag of the mask is set in its first
    /// argument, else allowed.
    CloneUnless(u32),
}

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: u32 = 0;

/// x86_64's x32 ABI marks its numbers with this bit.
const X32_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH_AT: u32 = 4;
/// The low 32 bits of `args[0]` (little-endian).
const ARG0_LOW: u32 = 16;

/// Leaves of the search hold at most this many numbers.
const LEAF: usize = 4;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: usize, jf: usize) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | code | libc::BPF_K) as u16,
        jt: u8::try_from(jt).expect("a jump within 255 instructions"),
        jf: u8::try_from(jf).expect("a jump within 255 instructions"),
        k,
    }
}

fn ret(value: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, value)
}

fn errno(e: u16) -> u32 {
    libc::SECCOMP_RET_ERRNO | u32::from(e)
}

/// Whether this architecture has a filter.
pub(super) fn supported() -> bool {
    ARCH != 0
}

/// The program for `denied` (numbers with their action, any order).
pub(super) fn program(denied: &[(u32, Action)]) -> Vec<libc::sock_filter> {
    let mut sorted = denied.to_vec();
    sorted.sort_by_key(|&(nr, _)| nr);
    sorted.dedup_by_key(|&mut (nr, _)| nr);
    let load = |at| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, at);
    let mut out = vec![
        load(ARCH_AT),
        jump(libc::BPF_JEQ, ARCH, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        load(NR),
        jump(libc::BPF_JGE, X32_BIT, 0, 1),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
    ];
    out.extend(search(&sorted));
    out
}

/// The search over `sorted` (the number loaded): a node splits at its
/// middle number (`jge`: the upper half follows the lower one); a leaf
/// compares each number and allows what none matched.
fn search(sorted: &[(u32, Action)]) -> Vec<libc::sock_filter> {
    if sorted.len() <= LEAF {
        let mut out = Vec::new();
        for &(nr, action) in sorted {
            let found = on_found(action);
            out.push(jump(libc::BPF_JEQ, nr, 0, found.len()));
            out.extend(found);
        }
        out.push(ret(libc::SECCOMP_RET_ALLOW));
        return out;
    }
    let (low, high) = sorted.split_at(sorted.len() / 2);
    let low = search(low);
    let high = search(high);
    let mut out = vec![jump(
        libc::BPF_JGE,
        sorted[sorted.len() / 2].0,
        low.len(),
        0,
    )];
    out.extend(low);
    out.extend(high);
    out
}

/// The instructions run once the number matched (each path returns).
fn on_found(action: Action) -> Vec<libc::sock_filter> {
    match action {
        Action::Errno(e) => vec![ret(errno(e))],
        Action::CloneUnless(mask) => vec![
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, ARG0_LOW),
            jump(libc::BPF_JSET, mask, 0, 1),
            ret(errno(libc::EPERM as u16)),
            ret(libc::SECCOMP_RET_ALLOW),
        ],
    }
}

/// Runs `program` on a call, as the kernel would (the instructions built
/// here only): for tests.
#[cfg(test)]
pub(super) fn run(program: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let i = program[pc];
        let code = u32::from(i.code);
        pc += 1;
        if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
            a = match i.k {
                NR => nr,
                ARCH_AT => arch,
                ARG0_LOW => arg0 as u32,
                k => panic!("load of offset {k}"),
            };
        } else if code == libc::BPF_RET | libc::BPF_K {
            return i.k;
        } else {
            let taken = match code & !(libc::BPF_JMP | libc::BPF_K) {
                libc::BPF_JEQ => a == i.k,
                libc::BPF_JGE => a >= i.k,
                libc::BPF_JSET => a & i.k != 0,
                op => panic!("unexpected instruction {op:#x}"),
            };
            pc += usize::from(if taken { i.jt } else { i.jf });
        }
    }
}

#[cfg(test)]
pub(super) const NATIVE: u32 = ARCH;

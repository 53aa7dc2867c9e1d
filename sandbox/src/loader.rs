//! Loading a module library into a runner process (libloading), and
//! spawning a child that inherits exactly one extra descriptor. The only
//! `unsafe` of process modules lives here: calling into a loaded library,
//! and the `pre_exec` hook.
//!
//! The loader knows symbol names and a version number it is given; it knows
//! nothing of the protocol spoken over the descriptor (that is iolite-sdk's,
//! compiled into the module itself, so no Rust type crosses the boundary).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Why a module library could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `dlopen` failed (missing file, not a shared object, missing
    /// dependency).
    #[error("cannot load module {path}: {reason}")]
    Open {
        /// The library.
        path: PathBuf,
        /// What the dynamic loader said.
        reason: String,
    },
    /// A required symbol is missing: not a module built with iolite-sdk.
    #[error("{path} is not an iolite module: symbol {symbol} not found")]
    MissingSymbol {
        /// The library.
        path: PathBuf,
        /// The symbol.
        symbol: String,
    },
    /// The library was built for another module ABI.
    #[error(
        "module {path} was built for module ABI version {found}, but this server speaks ABI version {expected}; rebuild it with a matching iolite-sdk"
    )]
    AbiMismatch {
        /// The library.
        path: PathBuf,
        /// What the library says.
        found: u32,
        /// What the runner requires.
        expected: u32,
    },
}

/// A module library loaded into this process.
#[derive(Debug)]
pub struct ModuleLibrary {
    lib: libloading::Library,
    path: PathBuf,
}

impl ModuleLibrary {
    /// Loads the library at `path` (its initialisers run now: the sandbox
    /// must already be applied).
    pub fn open(path: &Path) -> Result<ModuleLibrary, LoadError> {
        // SAFETY: loading a library runs its initialisers, which can do
        // anything the process may do; that is the point of a runner
        // process, which is sandboxed and exists only to run this code.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(ModuleLibrary {
            lib,
            path: path.to_owned(),
        })
    }

    /// Loads the library from `file`, opened earlier (named `path` in
    /// errors): a runner opens its library before it drops root, so a
    /// library under a directory the sandbox user cannot enter (a checkout
    /// in `/root`) still loads, while every file the module opens later is
    /// subject to the sandbox. The file itself must be readable by that user.
    pub fn open_file(file: &std::fs::File, path: &Path) -> Result<ModuleLibrary, LoadError> {
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let mut lib = ModuleLibrary::open(&by_fd).map_err(|e| match e {
            LoadError::Open { reason, .. } => LoadError::Open {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })?;
        lib.path = path.to_owned();
        Ok(lib)
    }

    fn missing(&self, symbol: &[u8]) -> LoadError {
        LoadError::MissingSymbol {
            path: self.path.clone(),
            symbol: String::from_utf8_lossy(symbol).into_owned(),
        }
    }

    /// Calls the version symbol (`extern "C" fn() -> u32`) and checks it
    /// against `expected`.
    pub fn check_abi(&self, symbol: &[u8], expected: u32) -> Result<(), LoadError> {
        let found = self.call_u32(symbol)?;
        if found != expected {
            return Err(LoadError::AbiMismatch {
                path: self.path.clone(),
                found,
                expected,
            });
        }
        Ok(())
    }

    /// Calls a symbol of type `extern "C" fn() -> u32` (the version, the
    /// feature bits) and returns what it returns.
    pub fn call_u32(&self, symbol: &[u8]) -> Result<u32, LoadError> {
        // SAFETY: callers name only symbols whose type the module ABI fixes
        // (every version of it) as `extern "C" fn() -> u32`. A library that
        // exports the name with another type breaks the ABI contract it
        // claims.
        let f = unsafe { self.lib.get::<extern "C" fn() -> u32>(symbol) }
            .map_err(|_| self.missing(symbol))?;
        Ok(f())
    }

    /// Calls the main symbol (`unsafe extern "C" fn(i32, i32) -> i32`),
    /// handing it `sock` and `output`; returns what it returns (the exit
    /// code). Check the ABI first.
    pub fn run_main(
        &self,
        symbol: &[u8],
        sock: OwnedFd,
        output: OwnedFd,
    ) -> Result<i32, LoadError> {
        // SAFETY: the type is fixed by the module ABI, whose version
        // `check_abi` verified: `unsafe extern "C" fn(i32, i32) -> i32`.
        let f = unsafe {
            self.lib
                .get::<unsafe extern "C" fn(i32, i32) -> i32>(symbol)
        }
        .map_err(|_| self.missing(symbol))?;
        let (fd, output) = (sock.into_raw_fd(), output.into_raw_fd());
        // SAFETY: the entry point's contract is an open unix socket and a
        // memfd that no one else owns; `into_raw_fd` just gave up our
        // ownership of both.
        Ok(unsafe { f(fd, output) })
    }
}

/// Spawns `cmd` with `fd` inherited under the same number and no other
/// descriptor but stdin, stdout and stderr: every other descriptor is made
/// close-on-exec in the child first (`close_range(2)`), so descriptors the
/// server itself inherited without close-on-exec (from a shell, a service
/// manager) never reach a runner. `fd` stays close-on-exec in this process,
/// so a concurrent spawn never inherits it.
pub fn spawn_inheriting(cmd: &mut Command, fd: BorrowedFd<'_>) -> io::Result<Child> {
    let raw: RawFd = fd.as_raw_fd();
    // SAFETY: the hook runs in the child between fork and exec and calls
    // only close_range(2), fcntl(2) and getrlimit(2), which are
    // async-signal-safe; it touches no memory of the parent's other
    // threads (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            cloexec_all_but(Some(raw))?;
            // SAFETY (of the call): fcntl on a descriptor number is harmless
            // when the number is invalid (EBADF, reported to the parent).
            let r = libc::fcntl(raw, libc::F_SETFD, 0);
            if r == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd` with no descriptor but stdin, stdout and stderr (see
/// [`spawn_inheriting`]).
pub fn spawn_closed(cmd: &mut Command) -> io::Result<Child> {
    // SAFETY: as in `spawn_inheriting`: only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| cloexec_all_but(None));
    }
    cmd.spawn()
}

/// Marks every descriptor from 3 up close-on-exec, except `keep`. Runs in a
/// forked child before exec: async-signal-safe calls only. (Close-on-exec
/// rather than closed: the standard library's own error pipe, already
/// close-on-exec, must stay open until the exec.)
fn cloexec_all_but(keep: Option<RawFd>) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let (below, above) = match keep.and_then(|k| libc::c_uint::try_from(k).ok()) {
        Some(k) if k >= 3 => (Some((3, k - 1)), k + 1),
        _ => (None, 3),
    };
    for (first, last) in below
        .into_iter()
        .chain(std::iter::once((above, libc::c_uint::MAX)))
    {
        if first > last {
            continue;
        }
        // SAFETY: close_range takes integers and touches no memory.
        let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, CLOSE_RANGE_CLOEXEC) };
        if r == 0 {
            continue;
        }
        // Before Linux 5.11 (no CLOSE_RANGE_CLOEXEC): one descriptor at a
        // time, up to the descriptor limit.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let top = limit.rlim_cur.min(u64::from(last)).min(1 << 20);
        for n in u64::from(first)..top {
            // SAFETY: fcntl on a number that may not be open: EBADF, ignored.
            unsafe { libc::fcntl(n as RawFd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// Takes ownership of the unix socket a runner inherited as descriptor `n`
/// (see [`spawn_inheriting`]) and marks it close-on-exec again. Meant for a
/// runner's start-up, where nothing else can own that number: it succeeds
/// once per process, and only for an open unix stream socket.
pub fn take_inherited_socket(n: RawFd) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if n < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {n} is not an inherited socket"),
        ));
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the inherited socket was already taken",
        ));
    }
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `domain`, a live
    // c_int; an invalid or non-socket descriptor only makes it fail.
    let r = unsafe {
        libc::getsockopt(
            n,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast(),
            &mut len,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    if domain != libc::AF_UNIX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {n} is not a unix socket"),
        ));
    }
    // SAFETY: `n` is an open socket (getsockopt succeeded) that this process
    // inherited; the once-only flag above makes this the one owner.
    let fd = unsafe { OwnedFd::from_raw_fd(n) };
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(n, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

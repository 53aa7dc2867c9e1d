//! The runner process: `iolite runner --socket-fd N --module PATH` (a
//! hidden subcommand; the server re-executes its own binary). It takes the
//! inherited socket, applies the sandbox, loads the library, checks its ABI
//! version and hands the socket to the module's entry point, which speaks
//! the protocol with its own copy of iolite-sdk.
//!
//! `iolite runner --check --module PATH` only loads and checks the library
//! (the server does this once per module before it starts, so a library
//! built for another ABI is refused at start-up with both versions named).

use std::path::Path;

use iolite_sandbox::{ModuleLibrary, take_inherited_socket};
use iolite_sdk::wire::{ABI_SYMBOL, ABI_VERSION, MAIN_SYMBOL};

use crate::error::Error;

/// Loads `module` and checks its ABI version.
///
/// SANDBOX CALL SITE (sandbox branch): opening the library runs its
/// initialisers, so the same profile belongs here, before `open`.
pub fn check(module: &Path) -> Result<(), Error> {
    let lib = ModuleLibrary::open(module)?;
    lib.check_abi(ABI_SYMBOL, ABI_VERSION)?;
    Ok(())
}

/// Serves the module on inherited descriptor `socket_fd`; returns the exit
/// code the module's entry point returned. `shared_bytes` is how much shared
/// memory (request, output and cache pools) the runner will map.
pub fn run(socket_fd: i32, module: &Path, shared_bytes: u64) -> Result<i32, Error> {
    let sock = take_inherited_socket(socket_fd)
        .map_err(|e| Error::Runner(format!("--socket-fd {socket_fd}: {e}")))?;
    // ---------------------------------------------------------------
    // SANDBOX CALL SITE (sandbox branch): apply the module's profile here,
    // before the library is opened (its initialisers are module code):
    //     iolite_sandbox::Profile::from(..).apply()?;
    // rlimits (RLIMIT_AS must be memory_limit + `shared_bytes`: the pools
    // are mapped after this point, by the module's SDK), NO_NEW_PRIVS, user
    // drop, landlock (allow reading `module`),
    // seccomp (allow recvmsg/sendmsg/mmap(PROT_READ)/munmap/futex/exit).
    // ---------------------------------------------------------------
    let _ = shared_bytes;
    let lib = ModuleLibrary::open(module)?;
    lib.check_abi(ABI_SYMBOL, ABI_VERSION)?;
    Ok(lib.run_main(MAIN_SYMBOL, sock)?)
}

//! WebAssembly mounts (`--wasm PREFIX=FILE`, `[[wasm]]`): today
//! wasi:http/proxy components. A mount is a process module whose runners
//! host the guest instead of loading a library: the same supervision,
//! restarts, recycling, sandbox and data links as native modules
//! ([`crate::ProcessModule`]), with wasmtime's limits inside (two walls:
//! a bug in the engine costs one runner, not the server).
//!
//! The server compiles the component (iolite-sandbox's `wasm::code`: in
//! the server process, cached on disk under `$XDG_CACHE_HOME/iolite/wasm`,
//! else `~/.cache/iolite/wasm`, a folder only the server's user can
//! write), and the runners load a sealed copy of the compiled code, which
//! no runner can write. The kind of a binary is told by the config
//! (`iolite_core::config`, which refuses a `kind` the binary contradicts);
//! WAGI programs and SDK modules built for wasm32 are not served yet
//! (`serve` refuses them).
//!
//! # Layout
//! - `mod` (this file): [`start_wasm`].
//! - `spec`: [`WasmSpec`], the runner's `--wasm` (a leaf).
//! - `guest`: the runner's side: loading, and a wasi:http request through
//!   the SDK's protocol.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iolite_core::config::{ModuleConfig, WasmConfig, WasmKind};
use iolite_sandbox::wasm::Limits;
use iolite_sandbox::wasm::code::{Origin, compile_cached};

use crate::error::Error;
use crate::process::ProcessModule;
use crate::runner::SandboxSpec;

pub(crate) mod guest;
pub(crate) mod spec;

pub use spec::WasmSpec;

/// How much later than the guest's own deadline the server gives up on a
/// runner (and replaces it): the runner answers 504 itself first.
const SERVER_GRACE: Duration = Duration::from_secs(5);

/// The limits a mount's stores get.
fn limits(cfg: &WasmConfig) -> Limits {
    Limits {
        memory: cfg.memory_limit,
        timeout: cfg.timeout,
        ..Limits::default()
    }
}

/// Where compiled code is kept.
fn cache_dir() -> PathBuf {
    let home = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"));
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(home)
        .unwrap_or_else(std::env::temp_dir)
        .join("iolite")
        .join("wasm")
}

/// Compiles (or finds in the cache) the component of `cfg`, then starts
/// its runners as a process module; logs the kind and the limits applied.
pub fn start_wasm(
    cfg: &WasmConfig,
    exe: &Path,
    max_body: u64,
    cache: Option<iolite_core::CacheAccess>,
) -> Result<Arc<ProcessModule>, Error> {
    if cfg.kind != WasmKind::WasiHttp {
        return Err(Error::Check {
            prefix: cfg.prefix.clone(),
            message: format!(
                "{}: only wasi:http components are served yet",
                cfg.path.display()
            ),
        });
    }
    let refused = |message: String| Error::Check {
        prefix: cfg.prefix.clone(),
        message,
    };
    let bytes =
        std::fs::read(&cfg.path).map_err(|e| refused(format!("{}: {e}", cfg.path.display())))?;
    let limits = limits(cfg);
    let started = Instant::now();
    let compiler = iolite_sandbox::wasm::compiler(&limits)?;
    let (code, origin) = compile_cached(&compiler, &bytes, &cache_dir())
        .map_err(|e| refused(format!("{}: {e}", cfg.path.display())))?;
    tracing::info!(
        wasm = %cfg.prefix,
        path = %cfg.path.display(),
        kind = "wasi:http component",
        memory_limit = limits.memory,
        timeout = ?limits.timeout,
        instances_per_runner = limits.instances,
        max_wasm_stack = limits.max_stack,
        code = %code.display(),
        compiled = origin == Origin::Compiled,
        took = ?started.elapsed(),
        "wasm mounted (one instance per request; 504 past the timeout, 502 on a trap)"
    );
    let module = ModuleConfig {
        prefix: cfg.prefix.clone(),
        path: code,
        in_flight: limits.instances,
        timeout: limits.timeout + SERVER_GRACE,
        memory_limit: Some(limits.address_space()),
        ..ModuleConfig::default()
    };
    let mut sandbox = SandboxSpec::from_config(&module);
    sandbox.wasm = Some(WasmSpec { limits });
    ProcessModule::start_with(&module, sandbox, exe, max_body, cache)
}

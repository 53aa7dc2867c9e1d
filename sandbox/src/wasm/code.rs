//! Compiled guest code: compiling in the server, the disk cache, loading
//! in a runner (see the parent module for who may write what).
//!
//! The cache holds one file per (wasm bytes, engine) pair, named by
//! [`cache_key`]: the SHA-256 of the wasm, wasmtime's version and its
//! compatibility hash of the settings that shape code. A file is written
//! whole to a temporary name and renamed, so a reader never sees half a
//! file; a restart finds it and does not compile again. wasmtime checks
//! the header of what it loads (version, settings) and refuses a mismatch,
//! which is then compiled again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::SandboxError;

/// The wasmtime version this build links (part of every cache key).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Where compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Read from the cache.
    Cached,
}

/// The cache file name for `wasm` under `engine`:
/// `<sha256>-wasmtime-<version>-<settings hash>.cwasm`.
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let digest = Sha256::digest(wasm);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!(
        "{hex}-wasmtime-{WASMTIME_VERSION}-{:016x}.cwasm",
        h.finish()
    )
}

/// The compiled form of the component `wasm`: from `cache` when it holds
/// it, else compiled with `engine` and written there. Returns the path of
/// the compiled file (in `cache`, or in `scratch` when `cache` is None or
/// cannot be written) and whether it was compiled now.
pub fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    cache: &Path,
) -> Result<(PathBuf, Origin), SandboxError> {
    let path = cache.join(cache_key(engine, wasm));
    if let Ok(bytes) = std::fs::read(&path)
        && Engine::detect_precompiled(&bytes) == Some(wasmtime::Precompiled::Component)
    {
        return Ok((path, Origin::Cached));
    }
    let code = compile(engine, wasm)?;
    write_atomically(cache, &path, &code)?;
    Ok((path, Origin::Compiled))
}

/// Compiles the component `wasm` (Cranelift; no guest code runs).
pub fn compile(engine: &Engine, wasm: &[u8]) -> Result<Vec<u8>, SandboxError> {
    engine
        .precompile_component(wasm)
        .map_err(|e| SandboxError::Wasm(format!("compiling: {e:#}")))
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    use std::os::unix::fs::DirBuilderExt;
    let failed = |e: std::io::Error| SandboxError::Wasm(format!("{}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let mut tmp = tempfile_in(dir).map_err(failed)?;
    tmp.1.write_all(bytes).map_err(failed)?;
    tmp.1.sync_all().map_err(failed)?;
    std::fs::rename(&tmp.0, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp.0);
        failed(e)
    })
}

/// A new file in `dir` only this process opened (O_EXCL, mode 0600).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut n = 0u32;
    loop {
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Loads compiled code from `file` (the server's sealed copy) into
/// `engine`: reads it through the open descriptor (no path is opened
/// again: the runner may have dropped to a user that cannot), then maps
/// its text executable, so call it before seccomp forbids PROT_EXEC.
pub fn load(engine: &Engine, file: &std::fs::File) -> Result<Component, SandboxError> {
    use std::io::{Read, Seek};
    let failed = |e: std::io::Error| SandboxError::Wasm(format!("reading compiled code: {e}"));
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(0)).map_err(failed)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(failed)?;
    // SAFETY: wasmtime trusts the bytes it deserializes as code. These are
    // the server's: compiled by `compile` in the server process and handed
    // to this runner as a sealed memfd (or a file in the server's 0700
    // cache folder) that no runner can write; wasmtime still checks their
    // header against this engine's version and settings.
    unsafe { Component::deserialize(engine, &bytes) }
        .map_err(|e| SandboxError::Wasm(format!("loading compiled code: {e:#}")))
}

//! The library a module's runners load: not the file at the configured
//! path, but a sealed memfd copy of it ([`Snapshot`]) taken when it was
//! checked. An open descriptor of the file would not freeze its bytes
//! (`cp` over a library rewrites the same inode), and the path may hold
//! a broken build by the time a runner restarts; a snapshot cannot
//! change. [`Library`] holds the one in use: every runner start (first
//! start, restart after a crash, recycling, scaling) loads it, and only a
//! snapshot whose check passed replaces it (a reload).
//!
//! Runners open the snapshot through the server's descriptor table
//! (`/proc/PID/fd/N`) while they still have the server's credentials,
//! before their sandbox; the file is the memfd itself, read-only for
//! everybody (sealed against writes, growth and shrinking).

use std::hash::Hasher;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memfd::{FileSeal, MemfdOptions};

use crate::error::Error;

/// Largest library copied (a cdylib of several hundred MiB is a mistake
/// the operator should hear about, not a memfd the server keeps).
const MAX_LIBRARY: u64 = 1 << 30;

/// A sealed memfd copy of a library file, as it was when read.
#[derive(Debug)]
pub(crate) struct Snapshot {
    memfd: memfd::Memfd,
    /// The configured path it was read from (for messages).
    origin: PathBuf,
    /// Its bytes' hash and length: what a check's outcome is kept by.
    pub hash: u64,
    pub len: u64,
}

impl Snapshot {
    /// Reads the library at `path` into a new sealed memfd.
    pub fn take(path: &Path) -> Result<Arc<Snapshot>, Error> {
        let failed = |reason: String| Error::Library {
            path: path.to_owned(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing(path.to_owned()),
            _ => failed(e.to_string()),
        })?;
        let meta = file.metadata().map_err(|e| failed(e.to_string()))?;
        if !meta.is_file() {
            return Err(Error::Missing(path.to_owned()));
        }
        if meta.len() > MAX_LIBRARY {
            return Err(failed(format!(
                "{} bytes; a module library may have at most {MAX_LIBRARY}",
                meta.len()
            )));
        }
        let memfd = MemfdOptions::default()
            .allow_sealing(true)
            .close_on_exec(true)
            .create("iolite-module-library")
            .map_err(|e| failed(format!("memfd: {e}")))?;
        let mut hasher = std::hash::DefaultHasher::new();
        let mut len = 0u64;
        let mut out = memfd.as_file();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(e.to_string())),
            };
            len += n as u64;
            if len > MAX_LIBRARY {
                return Err(failed(format!(
                    "grew past {MAX_LIBRARY} bytes while being read"
                )));
            }
            hasher.write(&chunk[..n]);
            std::io::Write::write_all(&mut out, &chunk[..n]).map_err(|e| failed(e.to_string()))?;
        }
        memfd
            .add_seals(&[
                FileSeal::SealWrite,
                FileSeal::SealShrink,
                FileSeal::SealGrow,
                FileSeal::SealSeal,
            ])
            .map_err(|e| failed(format!("sealing its copy: {e}")))?;
        Ok(Arc::new(Snapshot {
            memfd,
            origin: path.to_owned(),
            hash: hasher.finish(),
            len,
        }))
    }

    /// The path a child of this process opens the copy by (while the copy
    /// lives: hold the snapshot until the runner has opened it).
    pub fn open_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.memfd.as_file().as_raw_fd()
        ))
    }

    /// The configured path it was read from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }
}

/// The checked library a module's runners start from; replaced only by a
/// snapshot that passed its check.
#[derive(Debug)]
pub(crate) struct Library {
    /// The configured path (read again at each reload).
    pub path: PathBuf,
    current: Mutex<Option<Arc<Snapshot>>>,
}

impl Library {
    /// No snapshot yet (the module's check has not passed).
    pub fn new(path: &Path) -> Arc<Library> {
        Arc::new(Library {
            path: path.to_owned(),
            current: Mutex::new(None),
        })
    }

    /// The snapshot runners start from; None while no check has passed.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Makes `checked` the one runners start from.
    pub fn replace(&self, checked: Arc<Snapshot>) {
        if let Ok(mut c) = self.current.lock() {
            *c = Some(checked);
        }
    }
}

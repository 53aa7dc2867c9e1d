//! [`Error`], the crate's one error enum.

use std::path::PathBuf;

/// Why a process module could not be started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The module library failed its check (missing, not a module, another
    /// ABI version): the runner's own message.
    #[error("module at {prefix}: {message}")]
    Check {
        /// The mount prefix.
        prefix: String,
        /// What the checking runner printed.
        message: String,
    },
    /// The module library could not be checked in time, or its loading
    /// died (a constructor that sleeps, or that its sandbox killed): that
    /// module is refused, the rest of the server is served.
    #[error("module at {prefix}: {message}")]
    Refused {
        /// The mount prefix.
        prefix: String,
        /// What happened, naming the library and the limit.
        message: String,
    },
    /// The request pool could not be created.
    #[error("module at {prefix}: request pool: {source}")]
    Pool {
        /// The mount prefix.
        prefix: String,
        /// The buffer layer's error.
        source: iolite_ipc::Error,
    },
    /// A process or thread could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The runner could not load or run its module.
    #[error("{0}")]
    Load(#[from] iolite_sandbox::LoadError),
    /// The runner could not apply its sandbox: it must not run module code.
    #[error("sandbox: {0}")]
    Sandbox(#[from] iolite_sandbox::SandboxError),
    /// The runner was started wrongly.
    #[error("runner: {0}")]
    Runner(String),
    /// The path of the iolite binary is unknown (re-exec for runners).
    #[error("cannot find the iolite binary to start runners: {0}")]
    Exe(std::io::Error),
    /// The module library path.
    #[error("module library {0:?} does not exist")]
    Missing(PathBuf),
    /// The module library could not be read into the server's copy.
    #[error("module library {path:?}: {reason}")]
    Library {
        /// The configured path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

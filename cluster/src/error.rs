//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong in the cluster crate. None of these reach an HTTP
/// client: they are configuration and input errors of the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A trace file could not be read at all.
    #[error("{path}: {source}")]
    TraceIo {
        /// The file named on the command line.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// One line of a trace file is malformed.
    #[error("{path}:{line}: {problem}")]
    TraceLine {
        /// The trace file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A trace file holds no request.
    #[error("{path}: no requests in trace")]
    EmptyTrace {
        /// The trace file.
        path: PathBuf,
    },
    /// An unknown policy name.
    #[error("unknown policy `{0}` (known: wrr, hash, chash, chash-bl, lard, lard-r, all)")]
    UnknownPolicy(String),
    /// A simulator parameter is out of range or inconsistent.
    #[error("invalid simulator parameter: {0}")]
    InvalidParam(String),
    /// Membership could not start (the key file, the peer address).
    #[error("{0}")]
    Membership(String),
    /// Writing a result (the SVG plot) failed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file that could not be written.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

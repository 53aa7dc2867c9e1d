//! [`Error`], the SDK's one error enum (what ends a runner's protocol loop).

/// Why a module's runner stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The shared-memory layer or the socket failed.
    #[error("{0}")]
    Ipc(#[from] iolite_ipc::Error),
    /// The server speaks another module ABI.
    #[error("the server speaks module ABI {server}; this module was built for ABI {module}")]
    AbiMismatch {
        /// The server's version.
        server: u32,
        /// This module's version.
        module: u32,
    },
    /// The server sent something out of order.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// [`Module::init`](crate::Module::init) refused to start.
    #[error("init failed: {0}")]
    Init(String),
    /// The client went away while the module read the request body in
    /// parts ([`Ctx::body_part`](crate::Ctx::body_part)): no more parts
    /// come, and whatever the module answers is not read.
    #[error("the request was cancelled (its client went away)")]
    Cancelled,
    /// A response body held a buffer that is neither in the output pool nor
    /// a slice of this request's body (for example a slice kept from an
    /// earlier request): that response becomes a 500.
    #[error("response body holds a buffer of pool {pool:#x} that this request cannot name")]
    ForeignBuffer {
        /// The pool of that buffer.
        pool: u64,
    },
}

//! The crate's one error type.

/// Everything that can go wrong in the buffer layer.
///
/// Errors say who caused them: exhaustion is backpressure (retry later),
/// descriptor and frame errors are the peer's fault (its channel is closed),
/// system errors are internal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pool has no room for the request: back off and retry later.
    #[error("pool exhausted: {requested} bytes requested, {free} bytes free")]
    PoolExhausted {
        /// Bytes asked for.
        requested: usize,
        /// Bytes free in the pool at that moment (possibly fragmented).
        free: usize,
    },
    /// A pool configuration that cannot be built.
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(&'static str),
    /// A range outside the buffer, aggregate or builder it was applied to.
    #[error("range {start}..{end} is outside 0..{len}")]
    RangeOutOfBounds {
        /// Start of the range asked for.
        start: usize,
        /// End of the range asked for.
        end: usize,
        /// Length of what it was applied to.
        len: usize,
    },
    /// A descriptor names a pool this process was never given.
    #[error("unknown pool {pool:#x}")]
    UnknownPool {
        /// The pool id the descriptor named.
        pool: u64,
    },
    /// A descriptor's offset or length lies outside its pool's data area.
    #[error("descriptor {offset}+{len} is outside pool {pool:#x}")]
    DescriptorOutOfRange {
        /// The pool the descriptor named.
        pool: u64,
        /// Its offset in the pool's memfd.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A descriptor names a region that has been freed (and maybe reused).
    #[error(
        "stale descriptor for pool {pool:#x} at {offset}: generation {found}, current {current}"
    )]
    StaleGeneration {
        /// The pool the descriptor named.
        pool: u64,
        /// Its allocation's offset in the pool's memfd.
        offset: u64,
        /// The generation it carried.
        found: u32,
        /// The region's current generation.
        current: u32,
    },
    /// A release or descriptor names a lease that is not outstanding.
    #[error("unknown lease {lease}")]
    UnknownLease {
        /// The lease id.
        lease: u64,
    },
    /// The same lease was imported twice while the first import is alive.
    #[error("lease {lease} is already imported")]
    DuplicateLease {
        /// The lease id.
        lease: u64,
    },
    /// A buffer was exported to a peer that was not given its pool.
    #[error("pool {pool:#x} was not shared with this peer")]
    PoolNotShared {
        /// The pool id.
        pool: u64,
    },
    /// A received pool fd is missing a required seal.
    #[error("pool fd lacks required seals (has {seals:#x})")]
    MissingSeals {
        /// The seals the fd carries.
        seals: i32,
    },
    /// A received pool fd has a size or header that does not match its announcement.
    #[error("bad pool: {0}")]
    BadPool(&'static str),
    /// A frame with a protocol version this side does not speak; the channel is closed.
    #[error("frame version {found}, expected {expected}")]
    WrongVersion {
        /// The version byte received.
        found: u8,
        /// The version this side speaks.
        expected: u8,
    },
    /// A frame longer than the channel's limit; the channel is closed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// The length the header claimed.
        len: u32,
        /// The channel's limit.
        max: u32,
    },
    /// A frame whose payload does not decode; the channel is closed.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer closed the channel in the middle of a frame.
    #[error("channel closed in the middle of a frame ({have} bytes of it received)")]
    Truncated {
        /// Bytes of the unfinished frame that had arrived.
        have: usize,
    },
    /// A frame needed file descriptors that did not arrive with it.
    #[error("frame needs {needed} fds, {available} arrived")]
    MissingFds {
        /// How many the frame needs.
        needed: usize,
        /// How many were queued.
        available: usize,
    },
    /// The peer sent more file descriptors than a channel accepts.
    #[error("too many file descriptors from peer")]
    TooManyFds,
    /// The peer shared more pools than this side accepts from it (none
    /// after its handshake); the channel is closed.
    #[error("pool shared past the limit of {limit}")]
    TooManyPools {
        /// Pools this side accepts from the peer in all.
        limit: usize,
    },
    /// The peer's descriptors would make this side hold more slices of
    /// its pools (and of quotes of this side's) than it allows at once.
    #[error("descriptors past the limit of {limit} slices held")]
    TooManyHeld {
        /// Slices this side holds for the peer at most.
        limit: usize,
    },
    /// A descriptor names pages its pool's owner never wrote (holes of a
    /// sparse memfd): reading them would allocate them here.
    #[error("descriptor names unwritten pages of pool {pool:#x} at {offset}")]
    NotWritten {
        /// The pool.
        pool: u64,
        /// The first byte of the first unwritten page it names.
        offset: u64,
    },
    /// The channel is closed: the peer went away or an earlier error closed it.
    #[error("channel closed")]
    Closed,
    /// A system call failed.
    #[error("system error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The HTTP status a request failing with this error should get:
    /// 503 for backpressure, 502 for a misbehaving or vanished peer, 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::PoolExhausted { .. } => 503,
            Error::UnknownPool { .. }
            | Error::DescriptorOutOfRange { .. }
            | Error::StaleGeneration { .. }
            | Error::UnknownLease { .. }
            | Error::DuplicateLease { .. }
            | Error::MissingSeals { .. }
            | Error::BadPool(_)
            | Error::WrongVersion { .. }
            | Error::Oversized { .. }
            | Error::Malformed(_)
            | Error::Truncated { .. }
            | Error::MissingFds { .. }
            | Error::TooManyFds
            | Error::TooManyPools { .. }
            | Error::TooManyHeld { .. }
            | Error::NotWritten { .. }
            | Error::Closed => 502,
            _ => 500,
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::PoolExhausted { .. })
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io(std::io::Error::from(e))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

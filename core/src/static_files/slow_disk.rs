//! BENCHMARKS ONLY: the static files' miss path under a simulated slow
//! disk ([`crate::cache::SlowDisk`], `IOLITE_BENCH_DISK_DELAY`; off unless
//! that variable is set). A hit is answered at once from the cache (by the
//! caller); a miss waits here, without holding its worker, for the
//! process's one disk and then the delay, is read into the cache (so the
//! next request hits), and is answered from the file with the same bytes.

use std::sync::Arc;

use crate::cache::FileCache;
use crate::handler::{Outcome, PendingResponse, ResponseFuture};
use crate::response::Response;

/// `response` (the file's, from the file), sent once the disk has taken
/// its turn and `fill` has read the file into the cache.
pub(super) fn after_the_disk(
    cache: Arc<FileCache>,
    response: Response,
    fill: impl FnOnce() + 'static,
) -> Outcome {
    Outcome::Pending(Box::new(Miss {
        cache,
        fill: Box::new(fill),
        response,
    }))
}

/// A miss waiting for the disk.
struct Miss {
    cache: Arc<FileCache>,
    fill: Box<dyn FnOnce()>,
    response: Response,
}

impl std::fmt::Debug for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miss").finish_non_exhaustive()
    }
}

impl PendingResponse for Miss {
    fn respond(self: Box<Self>) -> ResponseFuture {
        Box::pin(async move {
            if let Some(disk) = self.cache.slow_disk() {
                let _turn = disk.turn.lock().await;
                tokio::time::sleep(disk.delay).await;
            }
            (self.fill)();
            Ok(self.response)
        })
    }
}

//! [`WorkerCtx`]: what one worker thread shares between its connections
//! (a leaf: the server makes it, the connection and its exchanges read it).

use std::sync::Arc;

use crate::access_log::AccessLogWriter;
use crate::metrics::Metrics;
use crate::options::ServerOptions;
use crate::phases::Phases;

/// What one worker shares between its connections.
#[derive(Debug)]
pub(crate) struct WorkerCtx {
    pub phases: Phases,
    pub metrics: Arc<Metrics>,
    pub opts: Arc<ServerOptions>,
    /// This worker's access-log writer (none when the log is off). The
    /// worker's connections share its thread, so a `RefCell` suffices.
    pub access_log: Option<std::cell::RefCell<AccessLogWriter>>,
}

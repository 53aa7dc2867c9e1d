//! Listeners, workers and shutdown. Each worker is one OS thread with its
//! own tokio current-thread runtime and its own `SO_REUSEPORT` listener on
//! the same address, so the kernel spreads connections and no wake-up ever
//! crosses threads; a connection lives and dies on the worker that accepted
//! it. The thread that calls [`Server::run`] waits for SIGTERM or SIGINT and
//! serves the admin listener; on a signal every worker stops accepting,
//! lets in-flight responses finish (closing idle keep-alive connections at
//! once) for up to `shutdown_grace`, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::{JoinSet, LocalSet};

use crate::connection::{WorkerCtx, serve_connection};
use crate::error::Error;
use crate::http::Limits;
use crate::metrics::Metrics;
use crate::phases::{Handler, Phases};
use crate::static_files::StaticFiles;

/// Everything `iolite serve` can be told. A plain struct: the command line
/// and the config file fill it, the server only reads it.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where clients connect (port 0: any free port; see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// The document root.
    pub root: PathBuf,
    /// Worker threads; 0 means one per CPU.
    pub workers: usize,
    /// The admin listener (`/metrics`, `/status`), or none.
    pub admin: Option<SocketAddr>,
    /// The unified cache's byte budget (kept for the cache; unused until it lands).
    pub cache_size: u64,
    /// How long a cached file's metadata is trusted before it is checked
    /// again (0: every request).
    pub revalidate: Duration,
    /// Head, target and body size limits.
    pub limits: Limits,
    /// Time allowed to send a whole request head (and each body read).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// Time a blocked response write may wait for the client.
    pub send_timeout: Duration,
    /// Bound on finishing in-flight responses at shutdown.
    pub shutdown_grace: Duration,
    /// Open files kept per worker by the static handler.
    pub open_files: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            root: PathBuf::from("examples/site"),
            workers: 0,
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            cache_size: 256 << 20,
            revalidate: Duration::from_secs(1),
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            open_files: 4096,
        }
    }
}

/// Makes the extra handlers one worker registers at start-up (called once
/// per worker thread, so handlers need not be `Send`).
pub type HandlerFactory = Arc<dyn Fn() -> Vec<Box<dyn Handler>> + Send + Sync>;

/// A bound server: listeners open, signal handlers installed, not yet serving.
pub struct Server {
    opts: Arc<ServerOptions>,
    local_addr: SocketAddr,
    listeners: Vec<std::net::TcpListener>,
    admin: Option<(SocketAddr, std::net::TcpListener)>,
    root: Arc<OwnedFd>,
    metrics: Arc<Metrics>,
    control: tokio::runtime::Runtime,
    signals: Option<(Signal, Signal)>,
    handlers: Option<HandlerFactory>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("admin", &self.admin_addr())
            .field("workers", &self.listeners.len())
            .field("extra_handlers", &self.handlers.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the root, binds one listener per worker (and the admin
    /// listener) and installs the SIGTERM/SIGINT handlers, so that once this
    /// returns the addresses can be announced and a signal is never lost.
    pub fn bind(mut opts: ServerOptions) -> Result<Server, Error> {
        if opts.workers == 0 {
            opts.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        let root = Arc::new(StaticFiles::open_root(&opts.root)?);
        // Cached open files may take half the descriptors; sockets the rest.
        let fd_limit = raise_fd_limit();
        opts.open_files = opts
            .open_files
            .min((fd_limit / 2 / opts.workers as u64).max(1) as usize);
        let first = reuseport_listener(opts.listen)?;
        let local_addr = first.local_addr().map_err(|source| Error::Listen {
            addr: opts.listen,
            source,
        })?;
        let mut listeners = vec![first];
        for _ in 1..opts.workers {
            listeners.push(reuseport_listener(local_addr)?);
        }
        let admin = match opts.admin {
            None => None,
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .map_err(|source| Error::Listen { addr, source })?;
                l.set_nonblocking(true)
                    .map_err(|source| Error::Listen { addr, source })?;
                let bound = l
                    .local_addr()
                    .map_err(|source| Error::Listen { addr, source })?;
                Some((bound, l))
            }
        };
        let control = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("iolite-control")
            .build()?;
        let signals = {
            let _guard = control.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            )
        };
        Ok(Server {
            opts: Arc::new(opts),
            local_addr,
            listeners,
            admin,
            root,
            metrics: Arc::new(Metrics::new()),
            control,
            signals: Some(signals),
            handlers: None,
        })
    }

    /// Registers, in every worker, the handlers `factory` makes, ahead of the
    /// static file handler (which answers whatever they decline).
    pub fn with_handlers(mut self, factory: HandlerFactory) -> Self {
        self.handlers = Some(factory);
        self
    }

    /// The address clients connect to (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub fn run(mut self) -> Result<(), Error> {
        let (mut term, mut int) = self.signals.take().expect("signals are taken only here");
        self.run_until(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        })
    }

    /// Serves until `stop` completes, then shuts down gracefully: no new
    /// connections, in-flight responses finish within `shutdown_grace`.
    pub fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::with_capacity(self.listeners.len());
        for (id, listener) in self.listeners.into_iter().enumerate() {
            let opts = self.opts.clone();
            let metrics = self.metrics.clone();
            let root = self.root.clone();
            let stop_rx = stop_rx.clone();
            let handlers = self.handlers.clone();
            let handle = std::thread::Builder::new()
                .name(format!("iolite-worker-{id}"))
                .spawn(move || worker(listener, opts, metrics, root, handlers, stop_rx))?;
            workers.push(handle);
        }
        let metrics = self.metrics.clone();
        let admin = self.admin;
        self.control.block_on(async move {
            if let Some((_, listener)) = admin {
                match TcpListener::from_std(listener) {
                    Ok(listener) => {
                        tokio::spawn(crate::admin::serve(listener, metrics));
                    }
                    Err(e) => tracing::error!(error = %e, "admin listener"),
                }
            }
            stop.await;
        });
        let _ = stop_tx.send(true);
        let mut failed = false;
        for handle in workers {
            failed |= handle.join().is_err();
        }
        if failed {
            return Err(Error::Io(std::io::Error::other("a worker thread panicked")));
        }
        tracing::info!("stopped");
        Ok(())
    }
}

fn reuseport_listener(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let fail = |source| Error::Listen { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    Ok(socket.into())
}

/// Open files are the static handler's working set: lift the soft limit on
/// descriptors to the hard one, and return the limit now in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// The handlers every worker registers at start-up: the extra ones first,
/// then the static file handler.
fn standard_phases(
    opts: &ServerOptions,
    root: Arc<OwnedFd>,
    extra: Option<&HandlerFactory>,
) -> Phases {
    let mut phases = Phases::new();
    for handler in extra.map(|make| make()).unwrap_or_default() {
        phases = phases.register(handler);
    }
    let static_files = StaticFiles::new(root, opts.root.clone(), opts.revalidate, opts.open_files);
    phases.register(Box::new(static_files))
}

fn worker(
    listener: std::net::TcpListener,
    opts: Arc<ServerOptions>,
    metrics: Arc<Metrics>,
    root: Arc<OwnedFd>,
    handlers: Option<HandlerFactory>,
    mut stop: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "worker runtime");
            return;
        }
    };
    let local = LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "worker listener");
                return;
            }
        };
        let ctx = Rc::new(WorkerCtx {
            phases: standard_phases(&opts, root, handlers.as_ref()),
            metrics,
            opts: opts.clone(),
        });
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn_local(serve_connection(stream, peer, ctx.clone(), stop.clone()));
                    }
                    Err(e) => {
                        // Out of descriptors or memory: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let drained = tokio::time::timeout(opts.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(open = connections.len(), "shutdown grace over; dropping connections");
        }
        connections.abort_all();
    });
}

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

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::{JoinSet, LocalSet};

use crate::access_log::{AccessLog, AccessLogWriter};
use crate::cache::FileCache;
pub use crate::cache::replacement::Policy as CachePolicy;
use crate::connection::Listener;
use crate::connection::serve_connection;
use crate::error::Error;
use crate::handler::{Handler, PeerGate};
use crate::metrics::Metrics;
pub use crate::options::ServerOptions;
use crate::phases::{Phase, Phases};
use crate::site::Site;
use crate::static_files::StaticFiles;
use crate::static_files::compress::{Compressible, Compressor};
use crate::tls::TlsListener;
use crate::worker::WorkerCtx;

mod listen;

use listen::{accept_any, raise_fd_limit, reuseport_listener};

/// Makes a mount's handler for one worker (called once per worker, on the
/// worker's thread: a handler may keep per-worker state). Process modules
/// come in this way: core never spawns processes itself.
pub type HandlerFactory = Arc<dyn Fn() -> Box<dyn Handler> + Send + Sync>;

/// Wraps the static files (the content phase's fallback) in another
/// handler, once per worker ([`Server::wrap_fallback`]): the cluster's
/// dispatcher serves what it keeps here through the handler it is given.
pub type FallbackWrap = Arc<dyn Fn(Box<dyn Handler>) -> Box<dyn Handler> + Send + Sync>;

/// The peer listener: its gate, its address, one listener per worker.
struct PeerListen {
    gate: Arc<dyn PeerGate>,
    addr: SocketAddr,
    listeners: Vec<std::net::TcpListener>,
}

/// A handler mounted at a prefix of one phase, on every worker.
#[derive(Clone)]
pub struct Mount {
    pub phase: Phase,
    /// `/` or `/seg[/seg...]` without a trailing slash.
    pub prefix: String,
    /// The handler sees paths without the prefix
    /// ([`RequestCtx::local_path`](crate::handler::RequestCtx::local_path)).
    pub strip: bool,
    pub make: HandlerFactory,
}

impl Mount {
    /// A content handler at `prefix` (the whole path, not stripped).
    pub fn content(prefix: &str, make: HandlerFactory) -> Mount {
        Mount::new(Phase::Content, prefix, make)
    }

    /// A handler at `prefix` of `phase` (the whole path, not stripped).
    pub fn new(phase: Phase, prefix: &str, make: HandlerFactory) -> Mount {
        Mount {
            phase,
            prefix: prefix.to_owned(),
            strip: false,
            make,
        }
    }

    /// The handler sees paths with the prefix stripped.
    pub fn stripped(mut self) -> Mount {
        self.strip = true;
        self
    }
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("phase", &self.phase)
            .field("prefix", &self.prefix)
            .field("strip", &self.strip)
            .finish_non_exhaustive()
    }
}

/// A bound server: listeners open, signal handlers installed, not yet serving.
pub struct Server {
    mounts: Vec<Mount>,
    opts: Arc<ServerOptions>,
    local_addrs: Vec<SocketAddr>,
    /// One set per worker: a listener for every address, each bound with
    /// SO_REUSEPORT so the kernel spreads connections over the workers.
    listeners: Vec<Vec<std::net::TcpListener>>,
    /// The TLS settings of each address's listener (none: plain HTTP).
    tls: Vec<Option<Arc<TlsListener>>>,
    admin: Option<(SocketAddr, std::net::TcpListener)>,
    root: Arc<OwnedFd>,
    /// The root of each location that has its own, in `opts.locations` order.
    location_roots: Vec<Option<Arc<OwnedFd>>>,
    metrics: Arc<Metrics>,
    cache: Option<Arc<FileCache>>,
    /// Makes compressed variants into the cache (none without one).
    compressor: Option<Arc<Compressor>>,
    access_log: AccessLog,
    control: tokio::runtime::Runtime,
    /// SIGTERM, SIGINT, SIGHUP.
    signals: Option<(Signal, Signal, Signal)>,
    /// What SIGHUP does ([`Server::on_reload`]).
    reload: Option<Box<dyn Fn() + Send>>,
    peer: Option<PeerListen>,
    wrap_fallback: Option<FallbackWrap>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs)
            .field("admin", &self.admin_addr())
            .field("workers", &self.listeners.len())
            .field("mounts", &self.mounts)
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
        let location_roots = opts
            .locations
            .iter()
            .map(|l| {
                l.root
                    .as_deref()
                    .map(|r| StaticFiles::open_root(r).map(Arc::new))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = Arc::new(Metrics::new());
        let cache = match opts.cache_size {
            0 => None,
            size => {
                let threshold = match opts.cache_threshold {
                    0 => size / 8,
                    t => t,
                };
                let disk = crate::cache::SlowDisk::from_env().map_err(Error::Options)?;
                if let Some(d) = &disk {
                    tracing::warn!(delay = ?d.delay, "benchmark knob: every cache miss waits on one simulated disk");
                }
                let cache = FileCache::new(size, threshold, opts.cache_policy, metrics.clone())
                    .map_err(|e| Error::Options(format!("cache: {e}")))?
                    .with_slow_disk(disk);
                Some(Arc::new(cache))
            }
        };
        let compressor = match (&cache, opts.compress.enabled) {
            (Some(cache), true) => Some(
                Compressor::start(cache.clone())
                    .map_err(|e| Error::Options(format!("compressor thread: {e}")))?,
            ),
            _ => None,
        };
        let access_log = AccessLog::open(&opts.access_log)
            .map_err(|e| Error::Options(format!("access log {:?}: {e}", opts.access_log)))?;
        // Cached open files may take half the descriptors; sockets the rest.
        let fd_limit = raise_fd_limit();
        opts.open_files = opts
            .open_files
            .min((fd_limit / 2 / opts.workers as u64).max(1) as usize);
        if opts.listen.is_empty() {
            return Err(Error::Options("no address to listen on".to_owned()));
        }
        // The first worker's listeners fix the ports (port 0 picks one); the
        // other workers bind the very same addresses.
        let mut local_addrs = Vec::with_capacity(opts.listen.len());
        let mut first = Vec::with_capacity(opts.listen.len());
        for &addr in &opts.listen {
            let l = reuseport_listener(addr)?;
            local_addrs.push(
                l.local_addr()
                    .map_err(|source| Error::Listen { addr, source })?,
            );
            first.push(l);
        }
        let tls = listen::tls_listeners(&local_addrs, &opts.tls)?;
        let mut listeners = vec![first];
        for _ in 1..opts.workers {
            listeners.push(
                local_addrs
                    .iter()
                    .map(|&a| reuseport_listener(a))
                    .collect::<Result<_, _>>()?,
            );
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
                signal(SignalKind::hangup())?,
            )
        };
        Ok(Server {
            mounts: Vec::new(),
            opts: Arc::new(opts),
            local_addrs,
            listeners,
            tls,
            admin,
            root,
            location_roots,
            metrics,
            cache,
            compressor,
            access_log,
            control,
            signals: Some(signals),
            reload: None,
            peer: None,
            wrap_fallback: None,
        })
    }

    /// Mounts a handler on every worker. In each phase the longest
    /// matching prefix is asked first; the static files answer what no
    /// content mount does. A second mount at the same prefix of a phase,
    /// or a prefix that is not `/` or `/seg[/seg...]`, is refused.
    pub fn mount(mut self, mount: Mount) -> Result<Self, Error> {
        if !crate::phases::valid_prefix(&mount.prefix) {
            return Err(Error::Options(format!(
                "mount prefix {:?}: expected / or /name[/name...] without a trailing slash",
                mount.prefix
            )));
        }
        if self
            .mounts
            .iter()
            .any(|m| m.phase == mount.phase && m.prefix == mount.prefix)
        {
            return Err(Error::Options(format!(
                "{:?} is mounted twice in the {:?} phase",
                mount.prefix, mount.phase
            )));
        }
        self.mounts.push(mount);
        Ok(self)
    }

    /// Binds the peer listener at `addr` (one socket per worker, as the
    /// client listeners): the same engine serves it, but every request on
    /// it must pass `gate` first, and requests on the client listeners
    /// have the gate's reserved fields stripped. Returns the bound address.
    pub fn peer_listener(
        &mut self,
        addr: SocketAddr,
        gate: Arc<dyn PeerGate>,
    ) -> Result<SocketAddr, Error> {
        let first = reuseport_listener(addr)?;
        let bound = first
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?;
        let mut listeners = vec![first];
        for _ in 1..self.listeners.len() {
            listeners.push(reuseport_listener(bound)?);
        }
        self.peer = Some(PeerListen {
            gate,
            addr: bound,
            listeners,
        });
        Ok(bound)
    }

    /// The peer listener's address, if there is one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.as_ref().map(|p| p.addr)
    }

    /// Wraps the static files, the content phase's fallback, in the
    /// handler `wrap` makes of them on each worker.
    pub fn wrap_fallback(mut self, wrap: FallbackWrap) -> Self {
        self.wrap_fallback = Some(wrap);
        self
    }

    /// What process modules need to include cached files by reference: the
    /// document root and the unified cache (none when the cache is off).
    pub fn cache_access(&self) -> Option<CacheAccess> {
        Some(CacheAccess {
            root: self.root.clone(),
            root_path: self.opts.root.clone(),
            revalidate: self.opts.revalidate,
            cache: self.cache.clone()?,
        })
    }

    /// The address clients connect to (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every address clients connect to, in the order they were given.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Whether the listener at `local_addrs()[i]` serves HTTPS.
    pub fn is_tls(&self, i: usize) -> bool {
        self.tls.get(i).is_some_and(Option::is_some)
    }

    /// The admin listener's address, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What SIGHUP does while [`Server::run`] serves (called on the control
    /// thread: it must not block). Without it, SIGHUP is logged and
    /// ignored (it never ends the server).
    pub fn on_reload(mut self, reload: Box<dyn Fn() + Send>) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully; SIGHUP
    /// runs the [`on_reload`](Server::on_reload) hook.
    pub fn run(mut self) -> Result<(), Error> {
        let (mut term, mut int, mut hup) =
            self.signals.take().expect("signals are taken only here");
        let reload = self.reload.take();
        let tls = self.tls.clone();
        self.run_until(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break tracing::info!("SIGTERM: shutting down"),
                    _ = int.recv() => break tracing::info!("SIGINT: shutting down"),
                    _ = hup.recv() => {
                        listen::reload_tls(&tls);
                        match &reload {
                            Some(reload) => {
                                tracing::info!("SIGHUP: reloading");
                                reload();
                            }
                            None if tls.iter().any(Option::is_some) => {}
                            None => tracing::info!("SIGHUP: nothing to reload"),
                        }
                    }
                }
            }
        })
    }

    /// Serves until `stop` completes, then shuts down gracefully: no new
    /// connections, in-flight responses finish within `shutdown_grace`.
    pub fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::with_capacity(self.listeners.len());
        let (gate, mut peer_listeners) = match self.peer {
            Some(p) => (Some(p.gate), p.listeners.into_iter().map(Some).collect()),
            None => (None, Vec::new()),
        };
        for (id, listener) in self.listeners.into_iter().enumerate() {
            let opts = self.opts.clone();
            let parts = WorkerParts {
                listeners: listener,
                tls: self.tls.clone(),
                opts,
                metrics: self.metrics.clone(),
                root: self.root.clone(),
                location_roots: self.location_roots.clone(),
                cache: self.cache.clone(),
                compressor: self.compressor.clone(),
                access_log: self
                    .access_log
                    .is_enabled()
                    .then(|| self.access_log.writer()),
                mounts: self.mounts.clone(),
                stop: stop_rx.clone(),
                gate: gate.clone(),
                peer_listener: peer_listeners.get_mut(id).and_then(Option::take),
                wrap_fallback: self.wrap_fallback.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("iolite-worker-{id}"))
                .spawn(move || worker(parts))?;
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

/// The document root and the unified cache, for users outside the workers
/// (a process module's runner thread): each makes its own
/// [`StaticFiles`] view with [`files`](CacheAccess::files) and shares
/// [`pool`](CacheAccess::pool) with its runner.
#[derive(Debug, Clone)]
pub struct CacheAccess {
    root: Arc<OwnedFd>,
    root_path: PathBuf,
    revalidate: Duration,
    cache: Arc<FileCache>,
}

impl CacheAccess {
    /// The cache pool (to share read-only with a runner).
    pub fn pool(&self) -> &iolite_ipc::Pool {
        self.cache.pool()
    }

    /// A static-files view on this thread, for
    /// [`StaticFiles::cached_agg`].
    pub fn files(&self) -> StaticFiles {
        StaticFiles::new(
            self.root.clone(),
            self.root_path.clone(),
            self.revalidate,
            256,
        )
        .with_cache(Some(self.cache.clone()))
    }
}

/// One worker's handlers: the mounts, then the static files as the
/// content phase's fallback, serving the root and each location's own
/// root ([`Site`]); the locations' settings.
fn worker_phases(
    opts: &ServerOptions,
    (root, location_roots): (Arc<OwnedFd>, Vec<Option<Arc<OwnedFd>>>),
    (cache, compressor): (Option<Arc<FileCache>>, Option<Arc<Compressor>>),
    mounts: &[Mount],
    wrap_fallback: Option<&FallbackWrap>,
) -> Result<Phases, Error> {
    let compressible = Compressible::from_config(&opts.compress);
    let mut phases = Phases::new();
    for m in mounts {
        phases = phases.mount(m.phase, &m.prefix, m.strip, (m.make)())?;
    }
    let by_location = opts
        .locations
        .iter()
        .zip(location_roots)
        .map(|(loc, own_root)| {
            let (fd, path, strip) = match (own_root, &loc.root) {
                (Some(fd), Some(path)) => (fd, path.clone(), true),
                _ => (root.clone(), opts.root.clone(), false),
            };
            let files = StaticFiles::new(fd, path, opts.revalidate, opts.open_files)
                .for_location(&loc.prefix, strip)
                .with_index(loc.index.as_deref().unwrap_or(&opts.index))
                .with_cache(cache.clone().filter(|_| loc.cache))
                .with_compression(compressible.clone(), compressor.clone());
            (loc.prefix.clone(), files)
        })
        .collect();
    let root = StaticFiles::new(root, opts.root.clone(), opts.revalidate, opts.open_files)
        .with_index(&opts.index)
        .with_cache(cache)
        .with_compression(compressible, compressor);
    let site: Box<dyn Handler> = Box::new(Site::new(root, by_location));
    let fallback = match wrap_fallback {
        Some(wrap) => wrap(site),
        None => site,
    };
    Ok(phases
        .fallback(fallback)
        .with_locations(opts.locations.clone())
        .with_headers(opts.headers.clone()))
}

/// What one worker thread starts with.
struct WorkerParts {
    /// One listener per address, this worker's own (SO_REUSEPORT).
    listeners: Vec<std::net::TcpListener>,
    /// Each listener's TLS settings (by index).
    tls: Vec<Option<Arc<TlsListener>>>,
    opts: Arc<ServerOptions>,
    metrics: Arc<Metrics>,
    root: Arc<OwnedFd>,
    location_roots: Vec<Option<Arc<OwnedFd>>>,
    cache: Option<Arc<FileCache>>,
    compressor: Option<Arc<Compressor>>,
    access_log: Option<AccessLogWriter>,
    mounts: Vec<Mount>,
    stop: watch::Receiver<bool>,
    /// The cluster's gate (none outside a cluster).
    gate: Option<Arc<dyn PeerGate>>,
    /// This worker's peer listener (SO_REUSEPORT), if there is one.
    peer_listener: Option<std::net::TcpListener>,
    wrap_fallback: Option<FallbackWrap>,
}

fn worker(parts: WorkerParts) {
    let WorkerParts {
        listeners,
        tls,
        opts,
        metrics,
        root,
        location_roots,
        cache,
        compressor,
        access_log,
        mounts,
        mut stop,
        gate,
        peer_listener,
        wrap_fallback,
    } = parts;
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
        let listeners = match listeners
            .into_iter()
            .map(TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "worker listener");
                return;
            }
        };
        let peer_listener = match peer_listener.map(TcpListener::from_std).transpose() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "worker peer listener");
                return;
            }
        };
        let phases = match worker_phases(
            &opts,
            (root, location_roots),
            (cache, compressor),
            &mounts,
            wrap_fallback.as_ref(),
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "worker handlers");
                return;
            }
        };
        let ctx = Rc::new(WorkerCtx {
            phases,
            metrics,
            opts: opts.clone(),
            access_log: access_log.map(std::cell::RefCell::new),
        });
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                accepted = accept_any(&listeners) => match accepted {
                    Ok((stream, peer, i)) => {
                        let _ = stream.set_nodelay(true);
                        let gate = gate.clone().map(|g| (g, Listener::Client));
                        let tls = tls.get(i).cloned().flatten();
                        connections.spawn_local(serve_connection(stream, peer, ctx.clone(), stop.clone(), gate, tls));
                    }
                    Err(e) => {
                        // Out of descriptors or memory: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                accepted = accept_any(peer_listener.as_slice()), if peer_listener.is_some() => match accepted {
                    Ok((stream, peer, _)) => {
                        let _ = stream.set_nodelay(true);
                        let gate = gate.clone().map(|g| (g, Listener::Peer));
                        connections.spawn_local(serve_connection(stream, peer, ctx.clone(), stop.clone(), gate, None));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "peer accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listeners);
        drop(peer_listener);
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

//! The listening side: sockets bound with `SO_REUSEPORT` (one per worker
//! and address), the accept loop's poll over them, the file descriptor
//! limit, and the TLS settings of each listener (built at bind, read again
//! on SIGHUP).

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::config::TlsConfig;
use crate::error::Error;
use crate::tls::TlsListener;

/// The next connection on any of `listeners` (polled in order, so a busy
/// first listener cannot starve the others for long: each poll that finds a
/// connection returns, and the next accept starts over).
/// Returns the index of the listener too.
pub(super) async fn accept_any(
    listeners: &[TcpListener],
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr, usize)> {
    std::future::poll_fn(|cx| {
        for (i, l) in listeners.iter().enumerate() {
            if let std::task::Poll::Ready(r) = l.poll_accept(cx) {
                return std::task::Poll::Ready(r.map(|(s, a)| (s, a, i)));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

pub(super) fn reuseport_listener(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
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
pub(super) fn raise_fd_limit() -> u64 {
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

/// The TLS settings of each listener (`tls[i]` for `addrs[i]`), their
/// certificates loaded and checked; and, once, whether the kernel could
/// take over the records (kTLS).
pub(super) fn tls_listeners(
    addrs: &[SocketAddr],
    tls: &[Option<TlsConfig>],
) -> Result<Vec<Option<Arc<TlsListener>>>, Error> {
    let mut out = Vec::with_capacity(addrs.len());
    for (i, &addr) in addrs.iter().enumerate() {
        match tls.get(i).cloned().flatten() {
            Some(settings) => {
                let listener = TlsListener::new(addr, settings)
                    .map_err(|e| Error::Options(format!("TLS on {addr}: {e}")))?;
                out.push(Some(Arc::new(listener)));
            }
            None => out.push(None),
        }
    }
    if out.iter().any(Option::is_some) {
        let probe = crate::tls::ktls::probe();
        tracing::info!("{}", crate::tls::ktls::describe(&probe));
    }
    Ok(out)
}

/// SIGHUP: every TLS listener reads its certificates again; one that
/// fails keeps its old ones, and the log says why.
pub(super) fn reload_tls(tls: &[Option<Arc<TlsListener>>]) {
    for t in tls.iter().flatten() {
        match t.reload() {
            Ok(()) => tracing::info!(listener = %t.addr(), "SIGHUP: TLS certificates reloaded"),
            Err(e) => tracing::error!(
                listener = %t.addr(),
                "SIGHUP: TLS certificates not reloaded, the old ones stay in use: {e}"
            ),
        }
    }
}

//! A link's reader task, one per link on its worker's thread: answers
//! in, queued output out, releases on a tick, stalled streams ended.
//! [`Link::open`] is here, beside the task it starts, so that the link's
//! own file need not know the task.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iolite_core::static_files::StaticFiles;
use iolite_ipc::Peer;
use iolite_sdk::wire::Msg;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::Link;
use super::protocol::{LinkConfig, State};
use crate::metrics::ModuleMetrics;
use crate::process::supervisor::{Attached, SlotHandle};

/// How often a link with buffers still held wakes to send their releases
/// when no request carries them.
const RELEASE_TICK: Duration = Duration::from_millis(10);
/// Yields to the runtime after sending before the worker may sleep (see
/// `read_loop`), and sends that do not poll after polls found nothing.
const ANSWER_POLLS: usize = 16;
const SKIP_AFTER_MISS: u32 = 64;
/// Slices of its pools (and quotes of the server's) that a runner's
/// answers may make one link hold at once: whole answers its clients are
/// still being sent, and stream parts not sent yet (about 150 bytes of the
/// server's memory each).
pub(super) const MAX_SLICES_HELD: usize = 1 << 14;
/// Frames the reader takes in one go before it lets the worker's other
/// tasks run: a runner that keeps its socket full cannot hold a worker.
const READ_BATCH: usize = 64;

impl Link {
    /// Wraps an attached socket and starts its reader task on this thread.
    pub(super) fn open(
        attached: Attached,
        cfg: LinkConfig,
        files: Option<Rc<StaticFiles>>,
        slot: Arc<SlotHandle>,
    ) -> std::io::Result<Rc<Link>> {
        attached.sock.set_nonblocking(true)?;
        let io = UnixStream::from_std(attached.sock.try_clone()?)?;
        let mut peer: Peer<Msg> = Peer::new(attached.sock);
        bound(&mut peer);
        peer.adopt_pool(&cfg.pool);
        if let Some(cache) = &cfg.cache_pool {
            peer.adopt_pool(cache);
        }
        peer.adopt_remote(&attached.output);
        let link = Rc::new(Link {
            io,
            state: RefCell::new(State {
                peer,
                inflight: HashMap::new(),
                closed: false,
                progress: Instant::now(),
                lookup_until: 0,
            }),
            kick: Notify::new(),
            cfg,
            files,
            slot,
            generation: attached.generation,
        });
        tokio::task::spawn_local(read_loop(link.clone()));
        Ok(link)
    }
}

/// What a runner may make the server hold through a link, beyond which it
/// is replaced (the wire contract, `iolite_sdk::wire`, lists them): no
/// pool shared (every pool came in the handshake), no descriptor at all,
/// at most [`MAX_SLICES_HELD`] slices held, and only pages it wrote named;
/// its pools' bytes are never viewed as `&[u8]` ([`Peer::distrust`]).
pub(super) fn bound(peer: &mut Peer<Msg>) {
    peer.set_pool_limit(0);
    peer.channel().set_fd_limit(0);
    peer.set_held_limit(MAX_SLICES_HELD);
    peer.distrust();
}

/// The reader task of a link: answers in, queued output out, releases on
/// a tick, stalled streams ended. It ends when the link closes.
async fn read_loop(link: Rc<Link>) {
    let _open = OpenLink::new(link.cfg.metrics.clone());
    // One timer for the whole life of the link, re-armed when it fires (a
    // new one per wake-up would cost a timer-wheel insert and removal).
    let tick = tokio::time::sleep(RELEASE_TICK);
    tokio::pin!(tick);
    // Right after requests went out, the task yields to the runtime a few
    // times instead of letting the worker sleep: each yield polls the
    // reactor without blocking, and a quick answer is then taken without a
    // sleep and a wake-up. Other tasks run between the yields; answers are
    // read only through readiness, as always. After polls that found
    // nothing, the next sends do not poll (the runner is busy or slow).
    let mut polls_left = 0usize;
    let mut skip = 0u32;
    // Wakes the task when a runner starts draining (its link may be idle).
    let mut drain = link.slot.drain_watch();
    let mut drain_open = true;
    let mut draining = link.slot.is_draining(link.generation);
    loop {
        if link.is_closed() || (draining && link.drained()) {
            return;
        }
        let (want_write, hold, waiting) = {
            let st = link.state.borrow();
            (
                st.peer.queued() > 0,
                st.peer.leases_held() > 0 || st.peer.releases_pending() > 0,
                st.inflight.values().any(|f| f.reply.is_some()),
            )
        };
        if !waiting {
            polls_left = 0;
        } else if polls_left == 1 {
            // The last poll found nothing.
            skip = SKIP_AFTER_MISS;
        }
        let deadline = link.expire_streams();
        if link.is_closed() {
            return;
        }
        tokio::select! {
            biased;
            ready = link.io.readable() => {
                if ready.is_err() {
                    link.fail("runner link: reactor error", false);
                    return;
                }
                // Until the socket is drained (WouldBlock clears readiness).
                // A read made inside this `try_io` that took less than it had
                // room for drained it: no second read is needed to see
                // EAGAIN (data that came after it is a new readiness event,
                // which clearing does not lose). A read made before proves
                // nothing: data may have come since, its event already taken.
                // After a batch, the rest waits for the next turn (the
                // socket stays readable: nothing was cleared).
                let mut batch = 0;
                loop {
                    if batch == READ_BATCH {
                        tokio::task::yield_now().await;
                        break;
                    }
                    batch += 1;
                    let r = link.io.try_io(Interest::READABLE, || {
                        link.state.borrow_mut().peer.clear_drained();
                        match link.read_some() {
                            Ok(true) if link.state.borrow().peer.drained() => {
                                Err(ErrorKind::WouldBlock.into())
                            }
                            Ok(true) => Ok(Ok(())),
                            Ok(false) => Err(ErrorKind::WouldBlock.into()),
                            Err(e) => Ok(Err(e)),
                        }
                    });
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err((why, replace))) => {
                            link.fail(&why, replace);
                            return;
                        }
                        Err(_) => break,
                    }
                }
            }
            ready = link.io.writable(), if want_write => {
                if ready.is_err() {
                    link.fail("runner link: reactor error", false);
                    return;
                }
                let r = link.io.try_io(Interest::WRITABLE, || {
                    match link.state.borrow_mut().peer.flush(false) {
                        Ok(true) => Ok(Ok(())),
                        Ok(false) => Err(ErrorKind::WouldBlock.into()),
                        Err(e) => Ok(Err(e)),
                    }
                });
                if let Ok(Err(e)) = r {
                    link.fail(&format!("runner link: {e}"), false);
                    return;
                }
            }
            () = link.kick.notified() => {
                link.flush();
                if skip > 0 {
                    skip -= 1;
                } else {
                    polls_left = ANSWER_POLLS;
                }
            }
            () = tokio::task::yield_now(), if polls_left > 0 && waiting => {
                polls_left -= 1;
            }
            () = &mut tick, if hold => {
                tick.as_mut().reset(tokio::time::Instant::now() + RELEASE_TICK);
                let r = {
                    let mut st = link.state.borrow_mut();
                    st.peer.queue_releases().map(drop)
                };
                if r.is_ok() {
                    link.flush();
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {}
            changed = drain.changed(), if drain_open => {
                drain_open = changed.is_ok();
                draining = link.slot.is_draining(link.generation);
            }
        }
    }
}

/// Counts a link in the module's links gauge while its reader task runs.
struct OpenLink(Option<Arc<ModuleMetrics>>);

impl OpenLink {
    fn new(metrics: Option<Arc<ModuleMetrics>>) -> Self {
        if let Some(m) = &metrics {
            m.links.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        OpenLink(metrics)
    }
}

impl Drop for OpenLink {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.links.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

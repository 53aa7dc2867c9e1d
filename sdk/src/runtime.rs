//! The runner side of the protocol, compiled into each module: receive the
//! pools, make the memfd the runner made into the output pool and share
//! it, then serve every data link the
//! server attaches on a thread of its own. When the server closes the
//! control socket (it drains this runner: recycled, or idle), the process
//! ends once every link has been closed by the server, which closes each
//! after its last answer: requests already sent are answered.
//!
//! A request body in parts is read by the module ([`crate::Ctx::body_part`]);
//! the parts of a request answered before its body's end (or refused with
//! 413 because the module takes bodies whole, or skipped as cancelled) are
//! dropped as they come, which releases them to the server (`link`).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use iolite_ipc::{Agg, AggDesc, Event, Peer, Pool, RemotePool};

use crate::error::Error;
use crate::link::{Link, Owed};
use crate::module::{Ctx, Init, Module, Request};
use crate::parts::BodyLeft;
use crate::response::Response;
use crate::status::HttpError;
use crate::transfer::{copy_in, copy_out, describe};
use crate::wire::{ABI_VERSION, Msg, ResponseFrame, Transfer};

/// Most bytes of answers a link queues while more requests are already
/// buffered (answers to a burst leave in one `sendmsg`).
const DEFER_BYTES: usize = 64 << 10;
/// Non-blocking polls of a link before its thread sleeps (see
/// `next_message`).
const SPIN_POLLS: usize = 16;

/// Runs module `M` on the socket the server gave the runner, with the
/// output pool's memfd the runner made for it. Returns the process exit
/// code: 0 when the server closed the control socket and then every link,
/// 1 on an error (written to stderr, which the server logs under the
/// module's name).
pub fn run<M: Module + Default + 'static>(sock: OwnedFd, output: OwnedFd) -> i32 {
    run_module(M::default(), sock, output)
}

/// [`run`] with a module the caller made: a host that speaks the protocol
/// for code it runs itself (the runner's WebAssembly guests), not a
/// library's `export!`.
pub fn run_module<M: Module + 'static>(module: M, sock: OwnedFd, output: OwnedFd) -> i32 {
    match serve(module, sock, output) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("iolite module: {e}");
            1
        }
    }
}

/// What every link of a process shares.
struct Shared<M> {
    module: M,
    /// The module's mount prefix, for [`Request::sub_path`].
    mount: Arc<str>,
    pool: Pool,
    remote: Vec<RemotePool>,
    transfer: Transfer,
}

fn serve<M: Module + 'static>(mut module: M, sock: OwnedFd, output: OwnedFd) -> Result<(), Error> {
    let mut control: Peer<Msg> = Peer::new(UnixStream::from(sock));
    let (name, output_pool, transfer) = match control.recv()? {
        Msg::Hello {
            abi,
            name,
            output_pool,
            transfer,
            ..
        } => {
            if abi != ABI_VERSION {
                return Err(Error::AbiMismatch {
                    server: abi,
                    module: ABI_VERSION,
                });
            }
            (name, output_pool, transfer)
        }
        _ => return Err(Error::Protocol("the first message is not Hello")),
    };
    let size = usize::try_from(output_pool).map_err(|_| Error::Protocol("output pool size"))?;
    // The runner made the memfd (a module may not: no memfd_create in its
    // sandbox); it becomes this process's pool here.
    let pool = Pool::adopt(output, size)?;
    control.share_pool(&pool)?;
    let mount: Arc<str> = Arc::from(name.as_str());
    module.init(&Init { name }).map_err(Error::Init)?;
    control.send(&Msg::Ready {
        abi: ABI_VERSION,
        output_pool: pool.id(),
    })?;
    let shared = Arc::new(Shared {
        module,
        mount,
        pool,
        remote: control.remote_pools().cloned().collect(),
        transfer,
    });
    let mut links = Vec::new();
    loop {
        match control.recv_event() {
            Ok(Event::Message(Msg::Attach)) => {
                let sock = control
                    .channel()
                    .take_fds(1)?
                    .pop()
                    .ok_or(Error::Protocol("Attach without a socket"))?;
                let shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("iolite-link".into())
                    .spawn(move || serve_link_or_exit(&shared, sock));
                links.retain(|l: &std::thread::JoinHandle<()>| !l.is_finished());
                match spawned {
                    Ok(link) => {
                        links.push(link);
                        control.send(&Msg::Attach)?;
                    }
                    // The socket went with the closure: the server keeps
                    // the links it has.
                    Err(_) => control.send(&Msg::AttachRefused)?,
                }
            }
            Ok(Event::Message(_)) => {
                return Err(Error::Protocol("unexpected message on the control socket"));
            }
            Ok(_) => {}
            Err(iolite_ipc::Error::Closed) => {
                // Drained: the links still answer what they were sent.
                for link in links {
                    let _ = link.join();
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Serves one link; a panic or an error in it ends the whole process (the
/// server then fails what was in flight and starts another).
fn serve_link_or_exit<M: Module>(shared: &Shared<M>, sock: OwnedFd) {
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve_link(shared, UnixStream::from(sock))
    }));
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("iolite module: {e}");
            std::process::exit(1);
        }
        // The panic hook already wrote the message to stderr.
        Err(_) => std::process::exit(101),
    }
}

fn serve_link<M: Module>(shared: &Shared<M>, sock: UnixStream) -> Result<(), Error> {
    let mut peer: Peer<Msg> = Peer::new(sock);
    peer.adopt_pool(&shared.pool);
    for remote in &shared.remote {
        peer.adopt_remote(remote);
    }
    let copy = shared.transfer == Transfer::Copy;
    let mut pending = VecDeque::new();
    let mut quotable = Vec::new();
    // Requests answered before their body's last part came.
    let mut owed = Owed::default();
    // Copy mode: the body bytes of the next request, as they came.
    let mut inline = Inline::default();
    loop {
        let msg = match pending.pop_front() {
            Some(msg) => msg,
            None => match next_message(&mut peer) {
                Ok(msg) => msg,
                Err(iolite_ipc::Error::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        let Some(msg) = owed.absorb(&mut peer, msg)? else {
            continue;
        };
        match msg {
            Msg::Request(mut frame) => {
                let id = frame.id;
                if owed.contains(id) {
                    return Err(Error::Protocol(
                        "a request has the id of one whose body parts are still coming",
                    ));
                }
                // A cancel that is already here skips the request.
                take_buffered(&mut peer, &mut pending)?;
                let cancelled = pending
                    .iter()
                    .any(|m| matches!(m, Msg::Cancel { id: c } if *c == id));
                let body = if copy {
                    inline.take(id, &shared.pool)?
                } else {
                    peer.import(&frame.body)?
                };
                if frame.parts > 0 && !body.is_empty() {
                    return Err(Error::Protocol("a request in parts also carries a body"));
                }
                // A library without BODY_IN_PARTS (swapped in by a reload,
                // say) never sees a body in parts.
                let refused = frame.parts > 0 && !M::BODY_IN_PARTS;
                if cancelled || refused {
                    drop(body);
                    owed.insert(id, frame.parts);
                    let status = if cancelled { 503 } else { 413 };
                    if !cancelled {
                        eprintln!(
                            "iolite module: request {id}: a body in parts, but this module takes bodies whole: 413"
                        );
                    }
                    answer(&mut peer, empty_answer(id, status), &pending)?;
                    continue;
                }
                quotable.clear();
                quotable.append(&mut std::mem::take(&mut frame.body).bufs);
                let req = Request {
                    frame,
                    body,
                    mount: shared.mount.clone(),
                };
                let mut ctx = Ctx {
                    link: Link {
                        pool: &shared.pool,
                        peer: &mut peer,
                        quotable: &mut quotable,
                        pending: &mut pending,
                        owed: &mut owed,
                        copy,
                    },
                    id,
                    whole: &req.body,
                    body: BodyLeft::new(req.frame.parts),
                    stream_left: None,
                };
                let handled = shared.module.handle(&req, &mut ctx);
                let stream_left = ctx.stream_left;
                let body_left = std::mem::replace(&mut ctx.body, BodyLeft::Parts(0));
                // The client went away, or its body ended short: a stream of
                // unknown length is then cut, not ended.
                let cancelled = matches!(body_left, BodyLeft::Cancelled)
                    || pending
                        .iter()
                        .any(|m| matches!(m, Msg::Cancel { id: of } if *of == id));
                match body_left {
                    BodyLeft::Broken(e) => return Err(e),
                    // Dropped as they come (the answer may go first).
                    BodyLeft::Parts(left) => owed.insert(id, left),
                    BodyLeft::Whole | BodyLeft::Cancelled => {}
                }
                if let Some(left) = stream_left {
                    match left {
                        Some(0) => {}
                        Some(left) => {
                            eprintln!(
                                "iolite module: request {id}: stream ended {left} bytes short"
                            );
                            peer.send(&Msg::StreamAbort { id })?;
                        }
                        // An error cuts it: the client sees it short.
                        None if cancelled || handled.is_err() => {
                            peer.send(&Msg::StreamAbort { id })?;
                        }
                        // Returning ends a stream of unknown length.
                        None => peer.send(&Msg::StreamEnd { id })?,
                    }
                    if let Err(e) = handled {
                        log_failure(id, &e);
                    }
                    drop(req);
                    continue;
                }
                let render = |e| shared.module.error_response(e);
                let mut resp = answer_of(id, handled, &shared.pool, render);
                let body = if copy {
                    copy_out(&mut peer, id, &resp.body).map(|()| AggDesc::default())
                } else {
                    describe(&mut peer, &shared.pool, &resp.body, &quotable)
                };
                let frame = match body {
                    Ok(body) => ResponseFrame {
                        id,
                        status: resp.status,
                        headers: std::mem::take(&mut resp.headers),
                        body,
                    },
                    Err(e) => {
                        eprintln!("iolite module: request {id}: {e}");
                        empty_answer(id, 500)
                    }
                };
                answer(&mut peer, frame, &pending)?;
                // Only now may the request body's and cached files' leases
                // be released: the response above may quote them.
                drop(req);
                drop(resp);
            }
            // Its request was answered already (a cancel for a request
            // still waiting is found before that request starts); no more
            // of its body's parts come.
            Msg::Cancel { id } => owed.cancel(id),
            Msg::Data { id, bytes } if copy => inline.push(id, &bytes.0)?,
            Msg::BodyPart { .. } => {
                return Err(Error::Protocol(
                    "a body part of a request that has no more parts coming",
                ));
            }
            _ => return Err(Error::Protocol("unexpected message")),
        }
    }
}

/// Copy mode: the body bytes of the next request, from the [`Msg::Data`]
/// frames that precede its [`Msg::Request`].
#[derive(Debug, Default)]
struct Inline {
    id: u64,
    bytes: Vec<u8>,
}

impl Inline {
    fn push(&mut self, id: u64, bytes: &[u8]) -> Result<(), Error> {
        if self.bytes.is_empty() {
            self.id = id;
        } else if self.id != id {
            return Err(Error::Protocol(
                "inline body bytes of two requests interleave",
            ));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    /// The body of request `id`, copied into `pool`.
    fn take(&mut self, id: u64, pool: &Pool) -> Result<Agg, Error> {
        if !self.bytes.is_empty() && self.id != id {
            return Err(Error::Protocol("inline body bytes of another request"));
        }
        copy_in(pool, &mut self.bytes)
    }
}

/// The next message: answers and releases go out first; then the socket is
/// polled a few times, giving the CPU away between polls, before this
/// thread sleeps in `recvmsg`. Under load the next requests usually come
/// within those polls, which saves a sleep and a wake-up per batch.
fn next_message(peer: &mut Peer<Msg>) -> iolite_ipc::Result<Msg> {
    if !peer.has_frame() {
        peer.flush_releases()?;
        for _ in 0..SPIN_POLLS {
            match peer.try_recv_event()? {
                Some(Event::Message(m)) => return Ok(m),
                Some(_) => {}
                None => std::thread::yield_now(),
            }
        }
    }
    peer.recv()
}

/// The answer to send for what the module returned: an error becomes its
/// status and message, a body of bytes goes into the output pool.
fn answer_of(
    id: u64,
    handled: Result<Response, HttpError>,
    pool: &Pool,
    render: impl Fn(HttpError) -> Response,
) -> Response {
    let mut resp = handled.unwrap_or_else(|e| {
        log_failure(id, &e);
        render(e)
    });
    if let Err(e) = resp.seal(pool) {
        // The module's answer (or its rendering of an error) cannot be
        // sent: the plain answer of why.
        let e = HttpError::from(e);
        log_failure(id, &e);
        resp = e.into_response();
        if resp.seal(pool).is_err() {
            // No room even for the message: the status alone.
            resp.inline = None;
        }
    }
    resp
}

/// A 5xx is the module's failure: its cause goes to stderr (the server
/// logs it under the module's name); a 4xx is the client's, not logged.
fn log_failure(id: u64, e: &HttpError) {
    if e.worth_logging() {
        eprintln!("iolite module: request {id}: {e}");
    }
}

fn empty_answer(id: u64, status: u16) -> ResponseFrame {
    ResponseFrame {
        id,
        status,
        headers: Vec::new(),
        body: AggDesc::default(),
    }
}

/// Sends an answer, or queues it while more requests are already buffered
/// here (they go out together when this link runs out of work).
fn answer(
    peer: &mut Peer<Msg>,
    frame: ResponseFrame,
    pending: &VecDeque<Msg>,
) -> Result<(), Error> {
    let more = !pending.is_empty() || peer.has_frame();
    if more && peer.queued() < DEFER_BYTES {
        peer.queue(&Msg::Response(frame))?;
    } else {
        peer.send(&Msg::Response(frame))?;
    }
    Ok(())
}

/// Moves the frames already received (no system call) into `pending`.
fn take_buffered(peer: &mut Peer<Msg>, pending: &mut VecDeque<Msg>) -> Result<(), Error> {
    while peer.has_frame() {
        if let Event::Message(m) = peer.recv_event()? {
            pending.push_back(m);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

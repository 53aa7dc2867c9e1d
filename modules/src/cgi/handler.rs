//! The core `Handler` of a [`Cgi`] mount and its pending answer: the
//! program found from the path, its meta-variables from the head core
//! parsed, the body routed to its stdin, the answer awaited, and the
//! program's end once the request is finished.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use iolite_core::Error;
use iolite_core::body::{BodyMode, VecBody, VecSink};
use iolite_core::handler::{
    Ending, Finished, Handler, Outcome, PendingResponse, RequestCtx, ResponseFuture,
};
use iolite_core::http::request::BodyFraming;
use tokio::sync::oneshot;

use super::answer;
use super::mount::{Cgi, Script};
use super::process::{self, Program};
use super::stdin::{StdinSink, write_whole};
use crate::cgi::env::{self, Var};

/// A request's program, once started: kept in the request's context so
/// the request-finished hook decides its end.
type ProgramCell = Rc<RefCell<Option<Program>>>;

/// The request's context (see [`RequestCtx::set_context`]).
struct Running(ProgramCell);

impl Cgi {
    /// A content handler for one worker (call it on the worker's thread).
    /// Mount it at the prefix, not stripped: the program is found from
    /// the whole path.
    pub fn handler(self: &Arc<Self>) -> Box<dyn Handler> {
        Box::new(CgiHandler { cgi: self.clone() })
    }
}

#[derive(Debug)]
struct CgiHandler {
    cgi: Arc<Cgi>,
}

impl Handler for CgiHandler {
    fn name(&self) -> &'static str {
        "cgi"
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let script = self.cgi.script(req.path)?;
        let body_len = match req.head.body {
            BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let vars = env::meta_variables(
            req,
            &env::Script {
                name: &script.name,
                path_info: &script.path_info,
                filename: &script.filename,
                document_root: self.cgi.document_root(),
            },
            body_len,
            self.cgi.pass_authorization(),
        );
        let cell = ProgramCell::default();
        req.set_context(Box::new(Running(cell.clone())));
        let name: Arc<str> = script.filename.display().to_string().into();
        Ok(Outcome::Pending(Box::new(Pending {
            cgi: self.cgi.clone(),
            script,
            name,
            vars,
            query: req.query().to_vec(),
            cell,
            stdin: None,
            chunked: None,
        })))
    }

    /// The program exits by itself after an answer sent whole (its group
    /// killed if it has not within the timeout); after a failure or a
    /// client that left, its group is killed now. Reaped either way.
    fn request_finished(&self, finished: Finished) {
        let Some(running) = finished.context.and_then(|c| c.downcast::<Running>().ok()) else {
            return;
        };
        let Some(program) = running.0.borrow_mut().take() else {
            return;
        };
        match finished.ending {
            Ending::Complete if program.has_exited() => drop(program),
            Ending::Complete => {
                tokio::task::spawn_local(program.finish(self.cgi.timeout()));
            }
            Ending::Error(_) | Ending::ClientGone => drop(program),
        }
    }
}

/// A request waiting for its program's answer.
struct Pending {
    cgi: Arc<Cgi>,
    script: Script,
    /// The program's path, for errors and the log.
    name: Arc<str>,
    vars: Vec<Var>,
    query: Vec<u8>,
    cell: ProgramCell,
    /// Where the program's stdin goes, for a body streamed to it.
    stdin: Option<oneshot::Sender<std::os::fd::OwnedFd>>,
    /// A chunked body read whole first.
    chunked: Option<VecBody>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("program", &self.name)
            .finish_non_exhaustive()
    }
}

impl PendingResponse for Pending {
    /// A body with a length, or a chunked one on a `stream_chunked`
    /// mount, goes to stdin while the answer is read; another chunked
    /// body is read whole first (its length is then `CONTENT_LENGTH`).
    fn body(&mut self, len: Option<u64>) -> Result<BodyMode, Error> {
        if len.is_none() && !self.cgi.stream_chunked() {
            let (sink, body) = VecSink::new(None);
            self.chunked = Some(body);
            return Ok(BodyMode::Whole(Box::new(sink)));
        }
        let (tx, rx) = oneshot::channel();
        self.stdin = Some(tx);
        Ok(BodyMode::Duplex(Box::new(StdinSink::new(
            rx,
            self.cgi.timeout(),
            self.name.clone(),
        ))))
    }

    fn respond(self: Box<Self>) -> ResponseFuture {
        let Pending {
            cgi,
            script,
            name,
            mut vars,
            query,
            cell,
            stdin,
            chunked,
        } = *self;
        Box::pin(async move {
            let slot = cgi.slot(&name).await?;
            let whole = chunked.map(|b| b.take().unwrap_or_default());
            if let Some(body) = &whole {
                vars.push((
                    b"CONTENT_LENGTH".to_vec(),
                    body.len().to_string().into_bytes(),
                ));
            }
            let with_body = stdin.is_some() || whole.is_some();
            let started = process::start(&cgi, &script, &vars, &query, with_body, slot, &name)?;
            *cell.borrow_mut() = Some(started.program);
            match (started.stdin, stdin, whole) {
                (Some(fd), Some(tx), _) => drop(tx.send(fd)),
                (Some(fd), None, Some(body)) => write_whole(fd, body, cgi.timeout()),
                _ => {}
            }
            let answer = answer::respond(&cgi, &name, started.stdout, script.nph).await;
            // No body to stream from the program: its group goes now.
            if answer.as_ref().map_or(true, |r| r.redirect.is_some()) {
                drop(cell.borrow_mut().take());
            }
            answer
        })
    }
}

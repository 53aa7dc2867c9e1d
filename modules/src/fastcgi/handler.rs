//! The core `Handler` of a [`FastCgi`] mount (one per worker, with that
//! worker's idle connections) and its pending answer.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use iolite_core::Error;
use iolite_core::body::{BodyMode, VecBody, VecSink};
use iolite_core::handler::{Handler, Outcome, PendingResponse, RequestCtx, ResponseFuture};

use super::conn::Idle;
use super::exchange::{self, Request, StdinSink};
use super::mount::FastCgi;
use crate::cgi::env::{self, Script, Var};

impl FastCgi {
    /// A content handler for one worker (call it on the worker's thread:
    /// it keeps that worker's idle connections). Mount it stripped.
    pub fn handler(self: &Arc<Self>) -> Box<dyn Handler> {
        Box::new(FastCgiHandler {
            fcgi: self.clone(),
            idle: Rc::new(Idle::new(self.connections())),
        })
    }
}

/// The handler of one mount on one worker.
#[derive(Debug)]
struct FastCgiHandler {
    fcgi: Arc<FastCgi>,
    idle: Rc<Idle>,
}

impl Handler for FastCgiHandler {
    fn name(&self) -> &'static str {
        "fastcgi"
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let (name, path_info, filename) = self.fcgi.script(req.local_path());
        let script = Script {
            name: &name,
            path_info: &path_info,
            filename: &filename,
            document_root: self.fcgi.root(),
        };
        let body_len = match req.head.body {
            iolite_core::http::request::BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let vars = env::meta_variables(req, &script, body_len, true);
        Ok(Outcome::Pending(Box::new(Pending {
            request: Rc::new(RefCell::new(Request::new(
                self.fcgi.clone(),
                self.idle.clone(),
            ))),
            vars,
            chunked: None,
        })))
    }
}

/// A request waiting for its body, then its answer.
#[derive(Debug)]
struct Pending {
    request: Rc<RefCell<Request>>,
    vars: Vec<Var>,
    /// A chunked body, read whole first: the peer is told its length.
    chunked: Option<VecBody>,
}

impl PendingResponse for Pending {
    fn body(&mut self, len: Option<u64>) -> Result<BodyMode, Error> {
        match len {
            Some(_) => Ok(BodyMode::Whole(Box::new(StdinSink::new(
                self.request.clone(),
                std::mem::take(&mut self.vars),
            )))),
            None => {
                let (sink, body) = VecSink::new(None);
                self.chunked = Some(body);
                Ok(BodyMode::Whole(Box::new(sink)))
            }
        }
    }

    fn respond(self: Box<Self>) -> ResponseFuture {
        let Pending {
            request,
            mut vars,
            chunked,
        } = *self;
        Box::pin(async move {
            let body = match chunked {
                Some(b) => {
                    let bytes = b.take().unwrap_or_default();
                    vars.push((
                        b"CONTENT_LENGTH".to_vec(),
                        bytes.len().to_string().into_bytes(),
                    ));
                    Some(bytes)
                }
                None => None,
            };
            exchange::answer(request, vars, body).await
        })
    }
}

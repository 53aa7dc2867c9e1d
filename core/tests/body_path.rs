//! The one body path over loopback TCP: every framing (none, a length,
//! chunked, `100-continue`, an early answer, a client gone mid-body)
//! against every sink (discarded by a handler that answers at once, whole
//! into memory, whole into a pool, duplex, duplex answered before the
//! body, a descriptor by splice). Each case checks the answer, whether the
//! connection stays usable, and that the handler's request-finished hook
//! ran exactly once, with the status and ending the client saw.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iolite_core::body::{
    BodyMode, BodySink, Discard, FdSink, FinishFuture, PoolSink, ReadyFuture, VecSink,
};
use iolite_core::handler::{
    Ending, Finished, Handler, Outcome, PendingResponse, RequestCtx, ResponseFuture,
};
use iolite_core::{Body, Error, HeaderLines, Mount, Response, UpstreamKind};
use support::{Running, fnv, read_response, serve};

/// What a finished hook saw: (request id, status, ending).
type Hooks = Arc<Mutex<Vec<(u64, u16, Ending)>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// Answered at once; the body is read and thrown away.
    Discard,
    Vec,
    Pool,
    /// Answered once the whole body has come, read while awaited.
    Duplex,
    /// Answered at once, before the body, which is read meanwhile.
    Early,
    /// Into a pipe by splice; a thread reads the other end.
    Fd,
}

const SINKS: [Sink; 6] = [
    Sink::Discard,
    Sink::Vec,
    Sink::Pool,
    Sink::Duplex,
    Sink::Early,
    Sink::Fd,
];

impl Sink {
    fn prefix(self) -> &'static str {
        match self {
            Sink::Discard => "/discard",
            Sink::Vec => "/vec",
            Sink::Pool => "/pool",
            Sink::Duplex => "/duplex",
            Sink::Early => "/early",
            Sink::Fd => "/fd",
        }
    }
}

struct TestHandler {
    sink: Sink,
    hooks: Hooks,
    pool: iolite_ipc::Pool,
}

impl Handler for TestHandler {
    fn name(&self) -> &'static str {
        "body-test"
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let query = String::from_utf8_lossy(req.query()).into_owned();
        let id: u64 = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("id="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        req.set_context(Box::new(id));
        let refuse = query.contains("refuse");
        if self.sink == Sink::Discard {
            if refuse {
                return Err(Error::Forbidden("refused"));
            }
            return Ok(Outcome::Done(text(200, "discarded".into())));
        }
        Ok(Outcome::Pending(Box::new(Pending {
            sink: self.sink,
            refuse,
            pool: self.pool.clone(),
            result: None,
        })))
    }

    fn request_finished(&self, f: Finished) {
        let id = f
            .context
            .and_then(|c| c.downcast::<u64>().ok())
            .map_or(0, |b| *b);
        self.hooks.lock().unwrap().push((id, f.status, f.ending));
    }
}

fn text(status: u16, body: String) -> Response {
    Response::new(status, HeaderLines::None, Body::Bytes(body.into_bytes()))
}

fn summary(bytes: &[u8]) -> String {
    format!("len={} sum={:x}", bytes.len(), fnv(bytes))
}

/// Where a pending answer finds its body.
enum Taken {
    Vec(iolite_core::body::VecBody),
    Pool(iolite_core::body::PoolBody),
    Later(tokio::sync::oneshot::Receiver<Vec<u8>>),
}

#[derive(Debug)]
struct Pending {
    sink: Sink,
    refuse: bool,
    pool: iolite_ipc::Pool,
    result: Option<Taken>,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Taken")
    }
}

impl PendingResponse for Pending {
    fn body(&mut self, len: Option<u64>) -> Result<BodyMode, Error> {
        if self.refuse {
            return Err(Error::Unavailable("refused"));
        }
        Ok(match self.sink {
            Sink::Discard => BodyMode::Whole(Box::new(Discard)),
            Sink::Vec => {
                let (sink, body) = VecSink::new(len);
                self.result = Some(Taken::Vec(body));
                BodyMode::Whole(Box::new(sink))
            }
            Sink::Pool => {
                let (sink, body) = PoolSink::new(&self.pool, len, "test pool full")?;
                self.result = Some(Taken::Pool(body));
                BodyMode::Whole(Box::new(sink))
            }
            Sink::Duplex | Sink::Early => {
                let (sink, body) = VecSink::new(len);
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.result = Some(Taken::Later(rx));
                BodyMode::Duplex(Box::new(Signal {
                    inner: sink,
                    body,
                    tx: Some(tx),
                }))
            }
            Sink::Fd => {
                let (r, w) = rustix::pipe::pipe().map_err(|e| Error::Io(e.into()))?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let _ = std::fs::File::from(r).read_to_end(&mut got);
                    let _ = tx.send(got);
                });
                self.result = Some(Taken::Later(rx));
                let upstream = (UpstreamKind::Cgi, Arc::from("test"));
                BodyMode::Whole(Box::new(FdSink::new(w, Duration::from_secs(10), upstream)?))
            }
        })
    }

    fn respond(self: Box<Self>) -> ResponseFuture {
        Box::pin(async move {
            if self.sink == Sink::Early {
                return Ok(text(200, "early".into()));
            }
            let bytes = match self.result {
                None => Vec::new(),
                Some(Taken::Vec(b)) => b.take().unwrap_or_default(),
                Some(Taken::Pool(b)) => b
                    .take()
                    .map(|agg| {
                        agg.bufs()
                            .iter()
                            .flat_map(|b| b.as_slice().to_vec())
                            .collect()
                    })
                    .unwrap_or_default(),
                Some(Taken::Later(rx)) => rx
                    .await
                    .map_err(|_| Error::BadRequest("the body ended short"))?,
            };
            Ok(text(200, summary(&bytes)))
        })
    }
}

/// A duplex sink that hands the whole body to the answer when it is
/// complete (dropped short: the answer fails).
struct Signal {
    inner: VecSink,
    body: iolite_core::body::VecBody,
    tx: Option<tokio::sync::oneshot::Sender<Vec<u8>>>,
}

impl BodySink for Signal {
    fn ready(&mut self) -> ReadyFuture<'_> {
        self.inner.ready()
    }
    fn space(&mut self, max: usize) -> &mut [u8] {
        self.inner.space(max)
    }
    fn advance(&mut self, n: usize) {
        self.inner.advance(n)
    }
    fn finish(&mut self) -> FinishFuture<'_> {
        Box::pin(async move {
            self.inner.finish().await?;
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(self.body.take().unwrap_or_default());
            }
            Ok(())
        })
    }
}

/// The framings and situations of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    NoBody,
    Length,
    Chunked,
    Continue,
    EarlyAnswer,
    ClientGone,
}

const CASES: [Case; 6] = [
    Case::NoBody,
    Case::Length,
    Case::Chunked,
    Case::Continue,
    Case::EarlyAnswer,
    Case::ClientGone,
];

/// 200,000 bytes: several reads, with part of it sent with the head.
fn payload() -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for size in [1usize, 4096, 70_000, 3].iter().cycle() {
        if at >= body.len() {
            break;
        }
        let n = (*size).min(body.len() - at);
        out.extend_from_slice(format!("{n:x};x=y\r\n").as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
    out
}

/// What the table expects of one exchange.
struct Want {
    status: u16,
    body: Option<String>,
    /// The connection serves another request afterwards (None: it depends
    /// on a race the test does not control).
    reusable: Option<bool>,
    /// The hook's ending (None: either ending is right).
    ending: Option<Ending>,
}

fn want(sink: Sink, case: Case, body: &[u8]) -> Want {
    let answer = match sink {
        Sink::Discard => "discarded".to_owned(),
        Sink::Early => "early".to_owned(),
        _ if case == Case::NoBody => summary(b""),
        _ => summary(body),
    };
    match case {
        Case::NoBody | Case::Length | Case::Chunked | Case::Continue => Want {
            status: 200,
            body: Some(answer),
            // An early answer leaves the connection open only when the
            // whole body came before its head went out: a race.
            reusable: (sink != Sink::Early || case == Case::NoBody).then_some(true),
            ending: Some(Ending::Complete),
        },
        Case::EarlyAnswer => Want {
            status: if sink == Sink::Discard { 403 } else { 503 },
            body: None,
            reusable: Some(false),
            ending: Some(Ending::Error(if sink == Sink::Discard {
                iolite_core::Side::Client
            } else {
                iolite_core::Side::Internal
            })),
        },
        Case::ClientGone => Want {
            status: 499,
            body: None,
            reusable: Some(false),
            ending: (sink != Sink::Early).then_some(Ending::ClientGone),
        },
    }
}

/// Runs one exchange; returns the status the client saw (499: none) and
/// whether the connection served a second request.
fn run(
    addr: std::net::SocketAddr,
    sink: Sink,
    case: Case,
    id: u64,
    body: &[u8],
) -> (u16, Option<String>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let target = format!(
        "{}?id={id}{}",
        sink.prefix(),
        if case == Case::EarlyAnswer {
            "&refuse"
        } else {
            ""
        }
    );
    let mut buf = Vec::new();
    match case {
        Case::NoBody => write!(s, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap(),
        Case::Length => {
            let mut first = format!(
                "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            first.extend_from_slice(&body[..1000]);
            s.write_all(&first).unwrap();
            s.write_all(&body[1000..]).unwrap();
        }
        Case::Chunked => {
            let mut all =
                format!("POST {target} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .into_bytes();
            all.extend_from_slice(&chunked(body));
            s.write_all(&all).unwrap();
        }
        Case::Continue | Case::EarlyAnswer => {
            write!(s, "POST {target} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
            let first = read_response(&mut s, &mut buf, false);
            if first.status != 100 {
                // A final answer instead: the body is not sent.
                let reusable = support::serves_again(&mut s, &mut buf);
                return (first.status, Some(first.text()), reusable);
            }
            // A client may have sent it meanwhile: the server may close
            // after an early answer.
            let _ = s.write_all(body);
        }
        Case::ClientGone => {
            let mut first = format!(
                "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            first.extend_from_slice(&body[..body.len() / 2]);
            s.write_all(&first).unwrap();
            drop(s);
            return (499, None, false);
        }
    }
    let r = read_response(&mut s, &mut buf, false);
    let reusable = support::serves_again(&mut s, &mut buf);
    (r.status, Some(r.text()), reusable)
}

fn start(hooks: &Hooks) -> Running {
    let hooks = hooks.clone();
    serve(move |server| {
        let mut server = server;
        for sink in SINKS {
            let hooks = hooks.clone();
            let pool = iolite_ipc::Pool::new(64 << 20).unwrap();
            server = server
                .mount(Mount::content(
                    sink.prefix(),
                    Arc::new(move || {
                        Box::new(TestHandler {
                            sink,
                            hooks: hooks.clone(),
                            pool: pool.clone(),
                        })
                    }),
                ))
                .unwrap();
        }
        server
    })
}

#[test]
fn every_framing_against_every_sink_table() {
    let hooks = Hooks::default();
    let server = start(&hooks);
    let body = payload();
    let mut id = 0;
    for sink in SINKS {
        for case in CASES {
            id += 1;
            let label = format!("{sink:?} × {case:?}");
            let want = want(sink, case, &body);
            let (status, answer, reusable) = run(server.addr, sink, case, id, &body);
            assert_eq!(status, want.status, "{label}: status");
            if let (Some(want_body), Some(got)) = (&want.body, &answer) {
                assert_eq!(got, want_body, "{label}: answer");
            }
            if let (Some(want_reusable), false) = (want.reusable, case == Case::ClientGone) {
                assert_eq!(reusable, want_reusable, "{label}: connection reused");
            }
            // The hook, exactly once (a client gone is noticed a moment later).
            let deadline = Instant::now() + Duration::from_secs(10);
            let seen = loop {
                let seen: Vec<_> = hooks
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|h| h.0 == id)
                    .cloned()
                    .collect();
                if !seen.is_empty() || Instant::now() > deadline {
                    break seen;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            assert_eq!(seen.len(), 1, "{label}: hook calls {seen:?}");
            let (_, hook_status, ending) = seen[0];
            if let Some(want_ending) = want.ending {
                assert_eq!(ending, want_ending, "{label}: ending");
                assert_eq!(hook_status, status, "{label}: hook status");
            }
        }
    }
    // Only the second requests of reused connections ran besides the table.
    let stray: Vec<_> = hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.0 > id)
        .cloned()
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    server.stop();
}

#[test]
fn an_answer_sent_before_the_body_is_read_closes_the_connection() {
    let hooks = Hooks::default();
    let server = start(&hooks);
    let body = payload();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut first = format!(
        "POST /early?id=1 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    first.extend_from_slice(&body[..1000]);
    s.write_all(&first).unwrap();
    // The rest of the body is never sent: the answer cannot wait for it.
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!((r.status, r.text().as_str()), (200, "early"));
    assert_eq!(r.header("connection"), Some("close"), "{}", r.head);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty() && buf.is_empty(),
        "the connection closes after the answer"
    );
    server.stop();
}

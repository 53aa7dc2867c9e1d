//! CGI/1.1 (RFC 3875): legacy programs run unmodified, a process per
//! request.
//!
//! The request flow, for one request at a `[[cgi]]` mount:
//! 1. `handler` (with `mount`): the path names a program (a folder mount:
//!    the first path segment that is an executable file; a program mount:
//!    its one program, the rest of the path is `PATH_INFO`); the
//!    meta-variables come from the head core parsed (`env`).
//! 2. `handler`: a body with a length (or a chunked one on a
//!    `stream_chunked` mount) is routed to the program's stdin while the
//!    answer is read (`stdin`: core's `FdSink`, spliced socket → pipe);
//!    another chunked body is read whole first and given its length.
//! 3. `process`: a turn among the mount's `max_processes` (a bounded
//!    queue, then 503), then the program started by iolite-sandbox's
//!    `Spawn` (no copy of the server's page tables) in its own folder and
//!    session, with only the request's and the mount's variables, and
//!    the search words of a query without `=` as arguments; its stderr
//!    logged line by line under its name (lines cut and rate bounded).
//! 4. `answer`: stdout read up to the end of the header block (`header`),
//!    504 past the timeout; the response's body is the stdout pipe,
//!    spliced to the client by core (an answer complete already goes from
//!    memory; NPH programs' bytes go as they are).
//! 5. `handler`'s request-finished hook: the program exits by itself after
//!    an answer sent whole; its process group is killed at once after a
//!    failure or when the client left; it is always reaped.
//!
//! # Layout
//! - [`header`]: the program's header block (a leaf; fuzzed in
//!   `modules/fuzz`, target `cgi_header`).
//! - [`env`]: the meta-variables (shared with FastCGI).
//! - `mount`: [`Cgi`], a mount's settings, its programs and process slots.
//! - `handler`: the core `Handler`, the pending answer, the program's end.
//! - `process`: starting a program; its stderr; [`Program`](process) and
//!   its end.
//! - `stdin`: the request body into stdin.
//! - `answer`: the header block read and made a response.

mod answer;
pub mod env;
mod handler;
pub mod header;
mod mount;
mod process;
mod stdin;

pub use mount::Cgi;

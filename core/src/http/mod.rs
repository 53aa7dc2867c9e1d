//! The HTTP/1.1 wire format: request heads, chunked bodies, targets, dates,
//! validators, ranges and multipart framing, response heads. Pure functions over byte slices:
//! no I/O here, so each piece is unit-tested and fuzzed on its own.

pub mod accept_encoding;
pub mod chunked;
pub mod conditional;
pub mod date;
pub mod multipart;
pub mod range;
pub mod request;
pub mod response;
pub mod target;

pub use chunked::{ChunkedDecoder, Progress};
pub use request::{
    BodyFraming, Limits, Method, RequestHead, Span, Version, parse_head, parse_head_fields,
};
pub use response::{ConnectionHeader, write_head};

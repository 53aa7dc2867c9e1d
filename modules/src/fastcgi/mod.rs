//! FastCGI: requests to persistent application servers (php-fpm,
//! fcgiwrap) over unix or TCP connections.
//!
//! # Layout
//! - [`record`]: the record codec, the client's side (a leaf; fuzzed in
//!   `modules/fuzz`, target `fastcgi_records`).

pub mod record;

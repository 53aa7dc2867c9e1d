//! Whether this kernel can encrypt TLS records itself (kTLS): the `tls`
//! upper-layer protocol is asked for on a connected loopback socket, as
//! the handoff after a handshake would ask for it. Where the kernel has it,
//! the send path could keep writev, sendfile and splice under TLS; where it
//! does not (`ENOENT`: no `tls` module, as on the machines this project is
//! tested on), records are made by rustls in user space and every body
//! byte encrypted there is counted as copied.
//!
//! The handoff itself (the session's keys into `TLS_TX`/`TLS_RX`) is not
//! written yet: it could not be tested on any kernel this project runs
//! on, so the probe's answer is reported and the user-space path serves.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};

use nix::sys::socket::{setsockopt, sockopt::TcpUlp};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ktls {
    /// The kernel accepted the `tls` upper-layer protocol.
    Available,
    /// It did not; why, in words.
    Unavailable(String),
}

/// Asks the kernel for the `tls` upper-layer protocol on a connected
/// loopback TCP socket (the option needs an established connection).
pub fn probe() -> Ktls {
    match try_probe() {
        Ok(()) => Ktls::Available,
        Err(e) if e.raw_os_error() == Some(libc_enoent()) => Ktls::Unavailable(
            "setsockopt(TCP_ULP, \"tls\") gives ENOENT: this kernel has no tls module".to_owned(),
        ),
        Err(e) => Ktls::Unavailable(format!("setsockopt(TCP_ULP, \"tls\"): {e}")),
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

fn try_probe() -> io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (_server, _) = listener.accept()?;
    setsockopt(&client, TcpUlp::default(), b"tls").map_err(io::Error::from)
}

/// The line `serve` logs once at start.
pub fn describe(k: &Ktls) -> String {
    match k {
        Ktls::Available => "kTLS: the kernel has the tls module; TLS records are still made in user space (rustls): the kTLS handoff is not written yet".to_owned(),
        Ktls::Unavailable(why) => format!(
            "kTLS: unavailable ({why}); TLS records are made in user space (rustls), each body byte counted in iolite_body_bytes_copied_total"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_answers_without_failing_and_says_why() {
        // Either answer is right for some kernel; the test shows which
        // one this kernel gives (the note on issue 20 records it).
        let k = probe();
        eprintln!("{}", describe(&k));
        if let Ktls::Unavailable(why) = &k {
            assert!(why.contains("TCP_ULP"), "{why}");
        }
    }
}

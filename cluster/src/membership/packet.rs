//! The authenticated gossip packet: what goes in one UDP datagram between
//! peers, and the checks a node makes before foca sees a byte of it.
//!
//! ```text
//! | version 1 | timestamp: u64 µs since the epoch | counter: u64 | foca payload | HMAC-SHA256 tag: 32 |
//! ```
//!
//! The tag covers the version, timestamp and counter, the sender's and the
//! receiver's peer addresses (the sender's as the receiver sees the
//! datagram come from: a packet moved to another source or destination
//! fails) and the payload. A receiver drops, and counts by reason, a
//! packet that is too short or of another version, whose tag does not
//! verify (compared in constant time), whose timestamp is further than the
//! replay window from its clock, or that it has accepted before (the
//! [`ReplayGuard`] remembers the tags of accepted packets for a window).
//! Integers are big-endian.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The packet format's version byte.
pub const VERSION: u8 = 1;
/// Version, timestamp and counter.
pub const HEADER_LEN: usize = 1 + 8 + 8;
/// The HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// What sealing adds to a foca payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest datagram sent or accepted: under a 1500-byte Ethernet MTU
/// with room for IP and UDP headers (IPv6 included).
pub const MAX_PACKET: usize = 1400;
/// Accepted packets remembered at most (a full guard refuses new packets
/// rather than forget one inside the window; only key holders fill it).
pub const MAX_REMEMBERED: usize = 1 << 16;

/// Why a packet was dropped (the label of
/// `iolite_cluster_gossip_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Shorter than a header and a tag, longer than [`MAX_PACKET`], or of
    /// another version.
    Malformed,
    /// The tag does not verify: another key, or altered, or sent from or
    /// to another address than it was sealed for.
    BadMac,
    /// The timestamp is outside the replay window.
    Stale,
    /// Accepted before.
    Replay,
    /// The guard holds [`MAX_REMEMBERED`] packets of the current window.
    GuardFull,
}

impl Rejection {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Rejection; 5] = [
        Rejection::Malformed,
        Rejection::BadMac,
        Rejection::Stale,
        Rejection::Replay,
        Rejection::GuardFull,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::BadMac => "bad_mac",
            Rejection::Stale => "stale",
            Rejection::Replay => "replay",
            Rejection::GuardFull => "guard_full",
        }
    }
}

/// The cluster key, ready to sign and check packets.
#[derive(Clone)]
pub struct ClusterKey {
    /// HMAC keyed once; cloned per packet (no key schedule per packet).
    keyed: hmac::Hmac<Sha256>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A key from the bytes of the key file (any length works for HMAC;
    /// the configuration asks for at least 32).
    pub fn new(bytes: &[u8]) -> ClusterKey {
        ClusterKey {
            keyed: hmac::Hmac::<Sha256>::new_from_slice(bytes).expect("HMAC takes any key length"),
        }
    }

    fn mac(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        header_and_payload: &[u8],
    ) -> hmac::Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(&addr_bytes(from));
        mac.update(&addr_bytes(to));
        mac.update(header_and_payload);
        mac
    }
}

/// `family (4 or 6) | IP | port`, as the tag covers it.
fn addr_bytes(a: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(19);
    match a {
        SocketAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.ip().octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
    out
}

/// Writes into `out` (cleared first) the datagram carrying `payload` from
/// `from` to `to`, stamped `timestamp_us` and `counter`.
pub fn seal(
    key: &ClusterKey,
    from: SocketAddr,
    to: SocketAddr,
    timestamp_us: u64,
    counter: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.push(VERSION);
    out.extend_from_slice(&timestamp_us.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(payload);
    let tag = key.mac(from, to, out).finalize().into_bytes();
    out.extend_from_slice(&tag);
}

/// The foca payload of `packet`, received from `from` on `to` at
/// `now_us`, if it passes every check (and is then remembered by `guard`).
pub fn open<'p>(
    key: &ClusterKey,
    from: SocketAddr,
    to: SocketAddr,
    packet: &'p [u8],
    now_us: u64,
    guard: &mut ReplayGuard,
) -> Result<&'p [u8], Rejection> {
    if packet.len() < OVERHEAD || packet.len() > MAX_PACKET || packet[0] != VERSION {
        return Err(Rejection::Malformed);
    }
    let (signed, tag) = packet.split_at(packet.len() - TAG_LEN);
    key.mac(from, to, signed)
        .verify_slice(tag)
        .map_err(|_| Rejection::BadMac)?;
    let timestamp_us = u64::from_be_bytes(signed[1..9].try_into().expect("8 bytes"));
    guard.admit(tag, timestamp_us, now_us)?;
    Ok(&signed[HEADER_LEN..])
}

/// The tags of the packets accepted within the replay window.
#[derive(Debug)]
pub struct ReplayGuard {
    window_us: u64,
    seen: HashSet<[u8; 16]>,
    /// In order of acceptance, with each packet's timestamp.
    order: VecDeque<(u64, [u8; 16])>,
    capacity: usize,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `window_us` of the clock.
    pub fn new(window_us: u64) -> ReplayGuard {
        Self::with_capacity(window_us, MAX_REMEMBERED)
    }

    /// A guard remembering at most `capacity` packets.
    pub fn with_capacity(window_us: u64, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            window_us,
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Packets remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no packet is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Admits an authenticated packet (its tag, its timestamp) at `now_us`.
    pub(crate) fn admit(
        &mut self,
        tag: &[u8],
        timestamp_us: u64,
        now_us: u64,
    ) -> Result<(), Rejection> {
        if timestamp_us.abs_diff(now_us) > self.window_us {
            return Err(Rejection::Stale);
        }
        // A packet is forgotten once its timestamp has left the window:
        // from then on it is refused as stale.
        while let Some(&(ts, id)) = self.order.front() {
            if ts.saturating_add(self.window_us) >= now_us {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
        // Half the tag: 128 bits tell packets apart as well as 256.
        let id: [u8; 16] = tag[..16].try_into().expect("a 32-byte tag");
        if self.seen.contains(&id) {
            return Err(Rejection::Replay);
        }
        if self.seen.len() >= self.capacity {
            return Err(Rejection::GuardFull);
        }
        self.seen.insert(id);
        self.order.push_back((timestamp_us, id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    struct Case {
        key: ClusterKey,
        a: SocketAddr,
        b: SocketAddr,
        now: u64,
    }

    fn case() -> Case {
        Case {
            key: ClusterKey::new(&[7u8; 32]),
            a: addr("127.0.0.2:7946"),
            b: addr("127.0.0.3:7946"),
            now: 1_800_000_000 * SECOND,
        }
    }

    fn sealed(c: &Case, ts: u64, counter: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(&c.key, c.a, c.b, ts, counter, payload, &mut out);
        out
    }

    #[test]
    fn a_sealed_packet_opens_once() {
        let c = case();
        let mut guard = ReplayGuard::new(10 * SECOND);
        let p = sealed(&c, c.now, 1, b"payload");
        assert_eq!(p.len(), 7 + OVERHEAD);
        assert_eq!(
            open(&c.key, c.a, c.b, &p, c.now, &mut guard),
            Ok(&b"payload"[..])
        );
        assert_eq!(
            open(&c.key, c.a, c.b, &p, c.now + 1, &mut guard),
            Err(Rejection::Replay)
        );
        // The same payload, stamped again, is another packet.
        let again = sealed(&c, c.now, 2, b"payload");
        assert!(open(&c.key, c.a, c.b, &again, c.now, &mut guard).is_ok());
        let empty = sealed(&c, c.now, 3, b"");
        assert_eq!(
            open(&c.key, c.a, c.b, &empty, c.now, &mut guard),
            Ok(&b""[..])
        );
    }

    #[test]
    fn every_alteration_is_refused_with_its_reason() {
        let c = case();
        let p = sealed(&c, c.now, 1, b"payload");
        let other = ClusterKey::new(&[8u8; 32]);
        let mut guard = ReplayGuard::new(10 * SECOND);
        let stranger = addr("127.0.0.9:7946");
        // Another key, another sender, another receiver, a port changed.
        assert_eq!(
            open(&other, c.a, c.b, &p, c.now, &mut guard),
            Err(Rejection::BadMac)
        );
        assert_eq!(
            open(&c.key, stranger, c.b, &p, c.now, &mut guard),
            Err(Rejection::BadMac)
        );
        assert_eq!(
            open(&c.key, c.a, stranger, &p, c.now, &mut guard),
            Err(Rejection::BadMac)
        );
        assert_eq!(
            open(&c.key, addr("127.0.0.2:7947"), c.b, &p, c.now, &mut guard),
            Err(Rejection::BadMac)
        );
        // Every single bit flipped, anywhere but the version byte.
        for i in 1..p.len() {
            for bit in 0..8 {
                let mut q = p.clone();
                q[i] ^= 1 << bit;
                assert_eq!(
                    open(&c.key, c.a, c.b, &q, c.now, &mut guard),
                    Err(Rejection::BadMac),
                    "byte {i} bit {bit}"
                );
            }
        }
        let mut q = p.clone();
        q[0] = 2;
        assert_eq!(
            open(&c.key, c.a, c.b, &q, c.now, &mut guard),
            Err(Rejection::Malformed)
        );
        for len in 0..OVERHEAD {
            assert_eq!(
                open(&c.key, c.a, c.b, &p[..len.min(p.len())], c.now, &mut guard),
                Err(Rejection::Malformed)
            );
        }
        assert_eq!(
            open(
                &c.key,
                c.a,
                c.b,
                &vec![VERSION; MAX_PACKET + 1],
                c.now,
                &mut guard
            ),
            Err(Rejection::Malformed)
        );
        // A truncated tag fails the check, not the length test.
        assert_eq!(
            open(&c.key, c.a, c.b, &p[..p.len() - 1], c.now, &mut guard),
            Err(Rejection::BadMac)
        );
        // None of it was remembered; the genuine packet still opens.
        assert!(guard.is_empty());
        assert!(open(&c.key, c.a, c.b, &p, c.now, &mut guard).is_ok());
    }

    #[test]
    fn timestamps_outside_the_window_are_stale_and_forgotten_packets_stay_refused() {
        let c = case();
        let window = 10 * SECOND;
        let mut guard = ReplayGuard::new(window);
        let table: &[(u64, Result<(), Rejection>)] = &[
            (c.now, Ok(())),
            (c.now - window, Ok(())),
            (c.now + window, Ok(())),
            (c.now - window - 1, Err(Rejection::Stale)),
            (c.now + window + 1, Err(Rejection::Stale)),
            (0, Err(Rejection::Stale)),
            (u64::MAX, Err(Rejection::Stale)),
        ];
        for (i, (ts, want)) in table.iter().enumerate() {
            let p = sealed(&c, *ts, i as u64, b"x");
            let got = open(&c.key, c.a, c.b, &p, c.now, &mut guard).map(|_| ());
            assert_eq!(got, *want, "timestamp {ts}");
        }
        // Captured now, replayed later: refused as a replay inside the
        // window, as stale after it, and forgotten by then.
        let p = sealed(&c, c.now, 100, b"captured");
        assert!(open(&c.key, c.a, c.b, &p, c.now, &mut guard).is_ok());
        for later in [1, window / 2, window] {
            assert_eq!(
                open(&c.key, c.a, c.b, &p, c.now + later, &mut guard),
                Err(Rejection::Replay)
            );
        }
        let much_later = c.now + 2 * window + 2;
        assert_eq!(
            open(&c.key, c.a, c.b, &p, much_later, &mut guard),
            Err(Rejection::Stale)
        );
        let fresh = sealed(&c, much_later, 101, b"x");
        assert!(open(&c.key, c.a, c.b, &fresh, much_later, &mut guard).is_ok());
        assert_eq!(guard.len(), 1, "everything of the old window was forgotten");
    }

    #[test]
    fn a_full_guard_refuses_rather_than_forgets() {
        let c = case();
        let mut guard = ReplayGuard::with_capacity(10 * SECOND, 3);
        for i in 0..3 {
            assert!(
                open(
                    &c.key,
                    c.a,
                    c.b,
                    &sealed(&c, c.now, i, b"x"),
                    c.now,
                    &mut guard
                )
                .is_ok()
            );
        }
        let p = sealed(&c, c.now, 3, b"x");
        assert_eq!(
            open(&c.key, c.a, c.b, &p, c.now, &mut guard),
            Err(Rejection::GuardFull)
        );
        assert_eq!(
            open(
                &c.key,
                c.a,
                c.b,
                &sealed(&c, c.now, 0, b"x"),
                c.now,
                &mut guard
            ),
            Err(Rejection::Replay)
        );
        // After the window, room again.
        let later = c.now + 11 * SECOND;
        assert!(
            open(
                &c.key,
                c.a,
                c.b,
                &sealed(&c, later, 4, b"x"),
                later,
                &mut guard
            )
            .is_ok()
        );
    }

    #[test]
    fn the_tag_is_hmac_sha256_over_addresses_header_and_payload() {
        // Golden vector: a change to the format changes this tag, and
        // every node of a cluster must run the same format.
        let c = case();
        let p = sealed(&c, 0x0102_0304_0506_0708, 9, b"abc");
        assert_eq!(
            &p[..HEADER_LEN + 3],
            b"\x01\x01\x02\x03\x04\x05\x06\x07\x08\0\0\0\0\0\0\0\x09abc"
        );
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(b"\x04\x7f\0\0\x02\x1f\x0a");
        mac.update(b"\x04\x7f\0\0\x03\x1f\x0a");
        mac.update(&p[..HEADER_LEN + 3]);
        assert_eq!(&p[HEADER_LEN + 3..], &mac.finalize().into_bytes()[..]);
    }
}

//! Signed peer requests: what a node adds to a request it sends another
//! node ([`PeerSigner::sign`]), and the check the receiving node's peer
//! listener makes before anything routes it ([`PeerVerifier::verify`]).
//! Pure (the clock and the replay guard are arguments); fuzzed in
//! `cluster/fuzz` (`peer_headers`).
//!
//! A signed request carries these fields:
//!
//! ```text
//! X-Iolite-Peer-Node: NAME            the sending node
//! X-Iolite-Peer-Time: MICROSECONDS    since the epoch, the sender's clock
//! X-Iolite-Peer-Nonce: 32 HEX DIGITS  never twice from one sender
//! X-Iolite-Peer-Hop: decide | serve   what the receiver is asked to do
//! X-Iolite-Peer-Body-Sha256: HEX      only with a body
//! X-Iolite-Peer-Sig: 64 HEX DIGITS    HMAC-SHA256, below
//! ```
//!
//! The tag is HMAC-SHA256 with the cluster key over `iolite-peer/1`, the
//! method, the target, and then, in this order, each of the fields iolite
//! acts on — `host`, `range`, `if-range`, `if-none-match`,
//! `if-modified-since`, `content-length`, `transfer-encoding` — and the
//! peer fields above but the tag, each as `name:value` when present and
//! `name` alone when absent, every item ended by a NUL byte. A covered
//! field sent twice is refused, so what is signed is what is served.
//! The receiver checks the tag in constant time (`hmac`'s `verify_slice`)
//! before it looks at the time and the nonce; refuses a time further than
//! the replay window from its clock, and a tag it has accepted before
//! within the window (the request replayed). The nonce makes two honest
//! requests for the same target two different tags.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::membership::packet::{Rejection, ReplayGuard};

/// The lower-case prefix of every peer field: what client listeners strip.
pub const PREFIX: &[u8] = b"x-iolite-peer-";
/// The sending node.
pub const NODE: &str = "x-iolite-peer-node";
/// The sender's clock, microseconds since the epoch.
pub const TIME: &str = "x-iolite-peer-time";
/// A value never used twice by one sender.
pub const NONCE: &str = "x-iolite-peer-nonce";
/// What the receiver is asked to do.
pub const HOP: &str = "x-iolite-peer-hop";
/// SHA-256 of the body, hex, when there is one.
pub const BODY: &str = "x-iolite-peer-body-sha256";
/// The tag.
pub const SIG: &str = "x-iolite-peer-sig";
/// The field of an owner's answer to a `decide` request whose chosen node
/// is another: serve there (the answer, 421 with no body, is not sent on).
pub const GO: &str = "x-iolite-peer-go";

/// The fields the tag covers, in order (the tag itself excepted).
const COVERED: [&str; 12] = [
    "host",
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "content-length",
    "transfer-encoding",
    NODE,
    TIME,
    NONCE,
    HOP,
    BODY,
];
/// Where [`NODE`] is in [`COVERED`], and the others after it.
const AT_NODE: usize = 7;
const AT_TIME: usize = 8;
const AT_NONCE: usize = 9;
const AT_HOP: usize = 10;
const AT_BODY: usize = 11;

/// What the sender asks of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The receiver owns the target: it decides where it is served (and
    /// serves it, or forwards it once more with [`Hop::Serve`]).
    Decide,
    /// Serve it here, whatever the policy would say.
    Serve,
}

impl Hop {
    /// The field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Hop::Decide => "decide",
            Hop::Serve => "serve",
        }
    }

    fn parse(v: &[u8]) -> Option<Hop> {
        match v {
            b"decide" => Some(Hop::Decide),
            b"serve" => Some(Hop::Serve),
            _ => None,
        }
    }
}

/// Why a peer request was refused (the label of
/// `iolite_cluster_peer_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A peer field is missing, malformed or sent twice.
    Malformed,
    /// The tag does not verify: another key, or altered.
    BadSig,
    /// The time is outside the replay window.
    Stale,
    /// Accepted before.
    Replay,
    /// The replay guard is full of the current window's requests.
    GuardFull,
    /// A body (no peer message has one yet).
    Body,
}

impl Refusal {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Refusal; 6] = [
        Refusal::Malformed,
        Refusal::BadSig,
        Refusal::Stale,
        Refusal::Replay,
        Refusal::GuardFull,
        Refusal::Body,
    ];

    /// The metric label, and the 403 page's reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::BadSig => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::Replay => "replay",
            Refusal::GuardFull => "guard_full",
            Refusal::Body => "body",
        }
    }
}

/// What a verified request says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The sending node's name.
    pub node: String,
    pub hop: Hop,
}

/// The MAC over a request's signed parts.
fn tag_of(
    keyed: &hmac::Hmac<Sha256>,
    method: &[u8],
    target: &[u8],
    covered: &[Option<&[u8]>; COVERED.len()],
) -> hmac::Hmac<Sha256> {
    let mut mac = keyed.clone();
    mac.update(b"iolite-peer/1\0");
    mac.update(method);
    mac.update(b"\0");
    mac.update(target);
    mac.update(b"\0");
    for (name, value) in COVERED.iter().zip(covered) {
        mac.update(name.as_bytes());
        if let Some(v) = value {
            mac.update(b":");
            mac.update(v);
        }
        mac.update(b"\0");
    }
    mac
}

fn keyed(key: &[u8]) -> hmac::Hmac<Sha256> {
    hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

fn hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

fn unhex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

/// What a sender signs: the request's method and target, and the values
/// of the fields it sends among the covered ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outgoing<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub host: &'a [u8],
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    /// The body, if the request has one (its length and digest are signed).
    pub body: Option<&'a [u8]>,
}

/// Signs this node's requests.
#[derive(Clone)]
pub struct PeerSigner {
    keyed: hmac::Hmac<Sha256>,
    node: String,
}

impl std::fmt::Debug for PeerSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSigner")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl PeerSigner {
    /// A signer for node `node` with the cluster key's bytes.
    pub fn new(key: &[u8], node: &str) -> PeerSigner {
        PeerSigner {
            keyed: keyed(key),
            node: node.to_owned(),
        }
    }

    /// The header lines (each ending in CRLF) that sign `req` as sent at
    /// `now_us` with `nonce`, asking `hop`: the peer fields, and
    /// `Content-Length` when there is a body. The caller writes `Host`,
    /// `Range` and the other covered fields itself, with the values given.
    pub fn sign(&self, req: &Outgoing<'_>, hop: Hop, now_us: u64, nonce: u128) -> String {
        let time = now_us.to_string();
        let nonce = format!("{nonce:032x}");
        let (length, digest) = match req.body {
            Some(b) => {
                let mut d = String::with_capacity(64);
                hex(&Sha256::digest(b), &mut d);
                (Some(b.len().to_string()), Some(d))
            }
            None => (None, None),
        };
        let covered: [Option<&[u8]>; COVERED.len()] = [
            Some(req.host),
            req.range,
            req.if_range,
            req.if_none_match,
            req.if_modified_since,
            length.as_deref().map(str::as_bytes),
            None,
            Some(self.node.as_bytes()),
            Some(time.as_bytes()),
            Some(nonce.as_bytes()),
            Some(hop.as_str().as_bytes()),
            digest.as_deref().map(str::as_bytes),
        ];
        let tag = tag_of(&self.keyed, req.method, req.target, &covered)
            .finalize()
            .into_bytes();
        let mut out = String::with_capacity(320);
        let mut line = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        };
        if let Some(l) = &length {
            line("content-length", l);
        }
        line(NODE, &self.node);
        line(TIME, &time);
        line(NONCE, &nonce);
        line(HOP, hop.as_str());
        if let Some(d) = &digest {
            line(BODY, d);
        }
        let mut sig = String::with_capacity(64);
        hex(&tag, &mut sig);
        line(SIG, &sig);
        out
    }
}

/// Checks the requests on the peer listener.
pub struct PeerVerifier {
    keyed: hmac::Hmac<Sha256>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerVerifier(..)")
    }
}

impl PeerVerifier {
    /// A verifier with the cluster key's bytes.
    pub fn new(key: &[u8]) -> PeerVerifier {
        PeerVerifier { keyed: keyed(key) }
    }

    /// Checks a request's signature (see the module doc): `headers` are
    /// its fields as sent, names in any case. At `now_us`; an accepted
    /// request is remembered by `guard` and refused the next time.
    pub fn verify<'h>(
        &self,
        method: &[u8],
        target: &[u8],
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
        now_us: u64,
        guard: &mut ReplayGuard,
    ) -> Result<Claims, Refusal> {
        let mut covered: [Option<&[u8]>; COVERED.len()] = [None; COVERED.len()];
        let mut sig: Option<&[u8]> = None;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(SIG.as_bytes()) {
                if sig.replace(value).is_some() {
                    return Err(Refusal::Malformed);
                }
                continue;
            }
            if let Some(i) = COVERED
                .iter()
                .position(|c| name.eq_ignore_ascii_case(c.as_bytes()))
                && covered[i].replace(value).is_some()
            {
                return Err(Refusal::Malformed);
            } else if has_prefix(name)
                && !COVERED
                    .iter()
                    .any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
            {
                // A peer field this version does not know is not signed:
                // refuse it rather than pass it on unchecked.
                return Err(Refusal::Malformed);
            }
        }
        let sig = sig.ok_or(Refusal::Malformed)?;
        let mut tag = [0u8; 32];
        unhex(sig, &mut tag).ok_or(Refusal::Malformed)?;
        let node = covered[AT_NODE].ok_or(Refusal::Malformed)?;
        let time = covered[AT_TIME].ok_or(Refusal::Malformed)?;
        let nonce = covered[AT_NONCE].ok_or(Refusal::Malformed)?;
        let hop = covered[AT_HOP]
            .and_then(Hop::parse)
            .ok_or(Refusal::Malformed)?;
        let mut nonce_bytes = [0u8; 16];
        unhex(nonce, &mut nonce_bytes).ok_or(Refusal::Malformed)?;
        let time: u64 = std::str::from_utf8(time)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or(Refusal::Malformed)?;
        let node = std::str::from_utf8(node)
            .ok()
            .filter(|n| !n.is_empty() && n.len() <= 64)
            .ok_or(Refusal::Malformed)?;
        tag_of(&self.keyed, method, target, &covered)
            .verify_slice(&tag)
            .map_err(|_| Refusal::BadSig)?;
        let has_body = covered[AT_BODY].is_some()
            || covered[6].is_some()
            || covered[5].is_some_and(|l| l != b"0");
        guard.admit(&tag, time, now_us).map_err(|r| match r {
            Rejection::Stale => Refusal::Stale,
            Rejection::GuardFull => Refusal::GuardFull,
            _ => Refusal::Replay,
        })?;
        if has_body {
            return Err(Refusal::Body);
        }
        Ok(Claims {
            node: node.to_owned(),
            hop,
        })
    }
}

/// Whether a field's name is a peer field's.
pub fn has_prefix(name: &[u8]) -> bool {
    name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;
    const NOW: u64 = 1_800_000_000 * SECOND;
    const KEY: &[u8] = &[0x5a; 32];

    fn request(signed: &str, extra: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"Host".to_vec(), b"n2".to_vec())];
        for line in signed.split("\r\n").filter(|l| !l.is_empty()) {
            let (n, v) = line.split_once(": ").unwrap();
            out.push((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
        for (n, v) in extra {
            out.push((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
        out
    }

    fn check(
        v: &PeerVerifier,
        method: &[u8],
        target: &[u8],
        fields: &[(Vec<u8>, Vec<u8>)],
        now: u64,
        guard: &mut ReplayGuard,
    ) -> Result<Claims, Refusal> {
        v.verify(
            method,
            target,
            fields.iter().map(|(n, v)| (&n[..], &v[..])),
            now,
            guard,
        )
    }

    /// What is checked, the fields, the method, the target, the verifier,
    /// the reason expected.
    type Case<'v> = (
        &'static str,
        Vec<(Vec<u8>, Vec<u8>)>,
        &'static [u8],
        &'static [u8],
        &'v PeerVerifier,
        Refusal,
    );

    fn get(target: &[u8]) -> Outgoing<'_> {
        Outgoing {
            method: b"GET",
            target,
            host: b"n2",
            ..Outgoing::default()
        }
    }

    #[test]
    fn a_signed_request_passes_once_and_claims_its_sender() {
        let s = PeerSigner::new(KEY, "n1");
        let v = PeerVerifier::new(KEY);
        let mut guard = ReplayGuard::new(10 * SECOND);
        let fields = request(&s.sign(&get(b"/a.html"), Hop::Decide, NOW, 1), &[]);
        let want = Claims {
            node: "n1".into(),
            hop: Hop::Decide,
        };
        assert_eq!(
            check(&v, b"GET", b"/a.html", &fields, NOW, &mut guard),
            Ok(want)
        );
        assert_eq!(
            check(&v, b"GET", b"/a.html", &fields, NOW + 1, &mut guard),
            Err(Refusal::Replay)
        );
        // Another nonce: another request.
        let again = request(&s.sign(&get(b"/a.html"), Hop::Serve, NOW, 2), &[]);
        assert!(check(&v, b"GET", b"/a.html", &again, NOW, &mut guard).is_ok());
    }

    #[test]
    fn every_change_is_refused_with_its_reason() {
        let s = PeerSigner::new(KEY, "n1");
        let v = PeerVerifier::new(KEY);
        let signed = s.sign(&get(b"/a.html"), Hop::Decide, NOW, 7);
        let fields = request(&signed, &[]);
        let mut guard = ReplayGuard::new(10 * SECOND);
        let wrong = PeerVerifier::new(&[0x5b; 32]);
        let table: Vec<Case<'_>> = vec![
            (
                "another key",
                fields.clone(),
                b"GET",
                b"/a.html",
                &wrong,
                Refusal::BadSig,
            ),
            (
                "another target",
                fields.clone(),
                b"GET",
                b"/b.html",
                &v,
                Refusal::BadSig,
            ),
            (
                "another method",
                fields.clone(),
                b"HEAD",
                b"/a.html",
                &v,
                Refusal::BadSig,
            ),
            (
                "a range added",
                request(&signed, &[("Range", "bytes=0-1")]),
                b"GET",
                b"/a.html",
                &v,
                Refusal::BadSig,
            ),
            (
                "a covered field twice",
                request(&signed, &[("host", "n3")]),
                b"GET",
                b"/a.html",
                &v,
                Refusal::Malformed,
            ),
            (
                "an unknown peer field",
                request(&signed, &[("X-Iolite-Peer-Route", "10.0.0.1")]),
                b"GET",
                b"/a.html",
                &v,
                Refusal::Malformed,
            ),
            (
                "no fields",
                Vec::new(),
                b"GET",
                b"/a.html",
                &v,
                Refusal::Malformed,
            ),
        ];
        for (what, f, method, target, verifier, want) in table {
            assert_eq!(
                check(verifier, method, target, &f, NOW, &mut guard),
                Err(want),
                "{what}"
            );
        }
        // Each peer field altered, or dropped.
        for (i, (name, _)) in fields.iter().enumerate().skip(1) {
            let mut altered = fields.clone();
            altered[i].1.push(b'0');
            let got = check(&v, b"GET", b"/a.html", &altered, NOW, &mut guard);
            assert!(
                matches!(got, Err(Refusal::BadSig | Refusal::Malformed)),
                "{} altered: {got:?}",
                String::from_utf8_lossy(name)
            );
            let mut dropped = fields.clone();
            dropped.remove(i);
            let got = check(&v, b"GET", b"/a.html", &dropped, NOW, &mut guard);
            assert!(
                matches!(got, Err(Refusal::BadSig | Refusal::Malformed)),
                "{} dropped: {got:?}",
                String::from_utf8_lossy(name)
            );
        }
        // Nothing refused was remembered: the genuine request passes.
        assert!(guard.is_empty());
        assert!(check(&v, b"GET", b"/a.html", &fields, NOW, &mut guard).is_ok());
    }

    #[test]
    fn outside_the_window_is_stale_and_a_body_is_refused() {
        let s = PeerSigner::new(KEY, "n1");
        let v = PeerVerifier::new(KEY);
        let mut guard = ReplayGuard::new(10 * SECOND);
        for (at, want) in [
            (NOW - 10 * SECOND, Ok(())),
            (NOW - 10 * SECOND - 1, Err(Refusal::Stale)),
            (NOW + 10 * SECOND + 1, Err(Refusal::Stale)),
        ] {
            let f = request(&s.sign(&get(b"/x"), Hop::Serve, at, u128::from(at)), &[]);
            assert_eq!(
                check(&v, b"GET", b"/x", &f, NOW, &mut guard).map(drop),
                want,
                "{at}"
            );
        }
        let post = Outgoing {
            method: b"POST",
            body: Some(b"hello"),
            ..get(b"/x")
        };
        let f = request(&s.sign(&post, Hop::Serve, NOW, 99), &[]);
        assert_eq!(
            check(&v, b"POST", b"/x", &f, NOW, &mut guard),
            Err(Refusal::Body)
        );
    }

    #[test]
    fn the_tag_is_hmac_sha256_over_the_documented_string() {
        // Golden vector: every node of a cluster must sign the same way.
        let s = PeerSigner::new(KEY, "n1");
        let lines = s.sign(&get(b"/a"), Hop::Serve, 5, 6);
        let mut mac = keyed(KEY);
        mac.update(
            b"iolite-peer/1\0GET\0/a\0host:n2\0range\0if-range\0if-none-match\0if-modified-since\0\
content-length\0transfer-encoding\0x-iolite-peer-node:n1\0x-iolite-peer-time:5\0\
x-iolite-peer-nonce:00000000000000000000000000000006\0x-iolite-peer-hop:serve\0\
x-iolite-peer-body-sha256\0",
        );
        let mut want = String::new();
        hex(&mac.finalize().into_bytes(), &mut want);
        assert!(
            lines.ends_with(&format!("x-iolite-peer-sig: {want}\r\n")),
            "{lines}"
        );
    }
}

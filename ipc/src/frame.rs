//! The wire format of the channel, as pure functions over bytes.
//!
//! A frame is a version byte, a u32 payload length (little-endian) and a
//! postcard payload. File descriptors travel beside the bytes (SCM_RIGHTS);
//! the payload says how many a frame carries. Decoding checks the version and
//! the length limit from the 5-byte header alone, before waiting for (or
//! allocating) the payload, so a hostile length costs nothing.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes before the payload: version (1) + length (4).
pub const HEADER_LEN: usize = 5;
/// Default limit on a payload's length.
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;

/// The result of looking at the front of a receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Not a whole frame yet: at least `needed` more bytes must arrive.
    Incomplete {
        /// Bytes still missing (a lower bound while the header is incomplete).
        needed: usize,
    },
    /// A whole frame: its payload, and how many bytes of the buffer it used.
    Frame {
        /// The payload bytes.
        payload: &'a [u8],
        /// Header + payload length, to drop from the buffer.
        consumed: usize,
    },
}

/// Looks for one frame at the front of `buf`.
///
/// # Errors
/// [`Error::WrongVersion`] or [`Error::Oversized`] as soon as the header shows
/// them; the channel must then be closed.
pub fn decode(buf: &[u8], max_payload: u32) -> Result<Decoded<'_>> {
    let Some(&version) = buf.first() else {
        return Ok(Decoded::Incomplete { needed: HEADER_LEN });
    };
    if version != VERSION {
        return Err(Error::WrongVersion {
            found: version,
            expected: VERSION,
        });
    }
    let Some(len_bytes) = buf.get(1..HEADER_LEN) else {
        return Ok(Decoded::Incomplete {
            needed: HEADER_LEN - buf.len(),
        });
    };
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    if len > max_payload {
        return Err(Error::Oversized {
            len,
            max: max_payload,
        });
    }
    let total = HEADER_LEN + len as usize;
    match buf.get(HEADER_LEN..total) {
        Some(payload) => Ok(Decoded::Frame {
            payload,
            consumed: total,
        }),
        None => Ok(Decoded::Incomplete {
            needed: total - buf.len(),
        }),
    }
}

/// Appends one frame holding `msg` to `out`.
///
/// # Errors
/// [`Error::Oversized`] if the payload exceeds `max_payload` (nothing is
/// appended then), [`Error::Malformed`] if `msg` cannot be serialized.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>, max_payload: u32) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[VERSION, 0, 0, 0, 0]);
    let taken = std::mem::take(out);
    let mut full = postcard::to_extend(msg, taken).map_err(|e| Error::Malformed(e.to_string()))?;
    let len = full.len() - start - HEADER_LEN;
    match u32::try_from(len) {
        Ok(l) if l <= max_payload => {
            full[start + 1..start + HEADER_LEN].copy_from_slice(&l.to_le_bytes());
            *out = full;
            Ok(())
        }
        _ => {
            full.truncate(start);
            *out = full;
            Err(Error::Oversized {
                len: u32::try_from(len).unwrap_or(u32::MAX),
                max: max_payload,
            })
        }
    }
}

/// Decodes a payload; every byte must be used.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, rest)) => Err(Error::Malformed(format!("{} trailing bytes", rest.len()))),
        Err(e) => Err(Error::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let max = 16;
        type Want = Result<Option<(&'static [u8], usize)>, &'static str>;
        let cases: &[(&[u8], Want)] = &[
            (b"", Ok(None)),
            (&[1], Ok(None)),
            (&[1, 3, 0, 0], Ok(None)),
            (&[1, 3, 0, 0, 0, b'a', b'b'], Ok(None)),
            (&[1, 3, 0, 0, 0, b'a', b'b', b'c'], Ok(Some((b"abc", 8)))),
            (&[1, 0, 0, 0, 0, 9], Ok(Some((b"", 5)))),
            (&[1, 2, 0, 0, 0, 7, 8, 1, 0], Ok(Some((&[7, 8], 7)))),
            (&[2, 0, 0, 0, 0], Err("version")),
            (&[0], Err("version")),
            (&[1, 17, 0, 0, 0], Err("oversized")),
            (&[1, 0xff, 0xff, 0xff, 0xff], Err("oversized")),
        ];
        for (input, want) in cases {
            let got = decode(input, max);
            match (got, want) {
                (Ok(Decoded::Incomplete { needed }), Ok(None)) => assert!(needed > 0),
                (Ok(Decoded::Frame { payload, consumed }), Ok(Some((p, c)))) => {
                    assert_eq!((payload, consumed), (*p, *c), "{input:?}")
                }
                (Err(Error::WrongVersion { .. }), Err("version")) => {}
                (Err(Error::Oversized { .. }), Err("oversized")) => {}
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn round_trip_and_limits() {
        let mut out = vec![9];
        encode(&(7u32, "hello".to_string()), &mut out, 64).unwrap();
        let Decoded::Frame { payload, consumed } = decode(&out[1..], 64).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(consumed, out.len() - 1);
        let back: (u32, String) = decode_payload(payload).unwrap();
        assert_eq!(back, (7, "hello".to_string()));
        assert!(matches!(
            decode_payload::<(u32, String)>(&payload[..3]),
            Err(Error::Malformed(_))
        ));
        let mut long = payload.to_vec();
        long.push(0);
        assert!(matches!(
            decode_payload::<(u32, String)>(&long),
            Err(Error::Malformed(_))
        ));
        let mut out2 = vec![9];
        assert!(matches!(
            encode(&vec![0u8; 100], &mut out2, 64),
            Err(Error::Oversized { .. })
        ));
        assert_eq!(out2, vec![9], "nothing appended on error");
    }
}

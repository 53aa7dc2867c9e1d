//! The framing of a `multipart/byteranges` body (RFC 9110 §14.6 and its
//! media type registration, RFC 2046 §5.1.1): the only bytes of such a
//! body the server writes itself. The parts' bytes are never here: the
//! send path takes them from the cache pool or the file.
//!
//! The layout is nginx's, so both send the same bytes but for the
//! boundary: each part is
//! `CRLF "--" boundary CRLF "Content-Type: " type CRLF "Content-Range: bytes " first "-" last "/" length CRLF CRLF`
//! then its bytes; after the last part, `CRLF "--" boundary "--" CRLF`.

use super::response::push_decimal;

/// Digits in a boundary (as nginx's: a zero-padded decimal number).
pub const BOUNDARY_LEN: usize = 20;

/// A boundary made of `n`: 20 decimal digits, zero-padded. A boundary
/// need only be unlikely in the parts (RFC 2046 §5.1.1); callers mix a
/// per-process secret into `n` so a file's content cannot be made to
/// guess it.
pub fn boundary(mut n: u64) -> [u8; BOUNDARY_LEN] {
    let mut out = [b'0'; BOUNDARY_LEN];
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// The response's `Content-Type` line.
pub fn push_content_type(out: &mut Vec<u8>, boundary: &[u8]) {
    out.extend_from_slice(b"Content-Type: multipart/byteranges; boundary=");
    out.extend_from_slice(boundary);
    out.extend_from_slice(b"\r\n");
}

/// The head of the part holding bytes `first..=last` of a representation
/// of `len` bytes of type `content_type` (no `Content-Type` line when it
/// is empty).
pub fn push_part_head(
    out: &mut Vec<u8>,
    boundary: &[u8],
    content_type: &[u8],
    (first, last): (u64, u64),
    len: u64,
) {
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary);
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Range: bytes ");
    push_decimal(out, first);
    out.push(b'-');
    push_decimal(out, last);
    out.push(b'/');
    push_decimal(out, len);
    out.extend_from_slice(b"\r\n\r\n");
}

/// The close delimiter after the last part.
pub fn push_tail(out: &mut Vec<u8>, boundary: &[u8]) {
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary);
    out.extend_from_slice(b"--\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_nginx_s() {
        let b = boundary(42);
        assert_eq!(&b, b"00000000000000000042");
        assert_eq!(&boundary(u64::MAX), b"18446744073709551615");
        let mut out = Vec::new();
        push_content_type(&mut out, &b);
        assert_eq!(
            out,
            b"Content-Type: multipart/byteranges; boundary=00000000000000000042\r\n"
        );
        out.clear();
        push_part_head(&mut out, &b, b"text/plain", (0, 4), 100);
        push_part_head(&mut out, &b, b"", (7, 7), 100);
        push_tail(&mut out, &b);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\r\n--00000000000000000042\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-4/100\r\n\r\n\
             \r\n--00000000000000000042\r\nContent-Range: bytes 7-7/100\r\n\r\n\
             \r\n--00000000000000000042--\r\n"
        );
    }
}

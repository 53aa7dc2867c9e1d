//! A CGI program's header block (RFC 3875 §6): what the server reads of a
//! program's output before it moves the body on by reference.
//!
//! The block is lines of `name: value` ended by an empty line; a line ends
//! with LF or CRLF, and a program may mix them. It may arrive split across
//! any number of reads: [`find_end`] says where it ends once it is all
//! there (scanning only what is new), then [`parse`] reads it once.
//!
//! What the program meant is one of RFC 3875's responses ([`Kind`]):
//! a document (with `Content-Type`, or a `Status` alone, such as 204), a
//! local redirect (`Location` with an absolute path and no other status:
//! the server serves that path instead, as Apache does), or a client
//! redirect (`Location` with an absolute URI, 302 unless `Status` says
//! otherwise, with or without a document).
//!
//! Fields the connection owns (`Connection`, `Keep-Alive`,
//! `Transfer-Encoding`, `TE`, `Trailer`, `Upgrade`, `Proxy-Connection`)
//! are dropped; `Content-Length` is checked and kept apart, since the
//! server frames the body. A continuation line (obs-fold), a field name
//! that is not a token, a control character in a value, a bad `Status`, a
//! block with none of `Content-Type`, `Location`, `Status`, or a block
//! longer than the limit is a [`HeaderError`], which the handler turns
//! into a 502 and one log line naming the program.

use std::fmt;

/// The fields a header block may hold at most.
pub const MAX_FIELDS: usize = 100;

/// What the program's response is (RFC 3875 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A document, or a status alone.
    Document,
    /// `Location: /path?query` with no status of its own: served
    /// internally, without a round trip to the client.
    LocalRedirect(Vec<u8>),
    /// `Location: scheme:...`: the client is sent there.
    ClientRedirect(Vec<u8>),
}

/// A parsed header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiHead {
    pub kind: Kind,
    /// `Status`'s code; 200 for a document without one, 302 for a client
    /// redirect without one.
    pub status: u16,
    /// `Status`'s reason phrase, when the program gave one.
    pub reason: Option<Vec<u8>>,
    /// `Content-Length`, when the program gave one.
    pub content_length: Option<u64>,
    /// The fields to send on, in the program's order, without `Status`,
    /// `Content-Length` and the connection's own; `Location` included for
    /// a client redirect. Names are tokens; values are the program's
    /// bytes (HTTP allows bytes above 127), trimmed, with no control
    /// character but tab.
    pub fields: Vec<(String, Vec<u8>)>,
    /// Fields dropped because the connection owns them.
    pub dropped: usize,
}

/// Why a header block is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Longer than `limit` bytes without its empty line.
    TooLong { limit: usize },
    /// More than [`MAX_FIELDS`] fields.
    TooManyFields,
    /// A line without a colon.
    NoColon { line: usize },
    /// A field name that is not an HTTP token.
    BadName { line: usize },
    /// A control character (other than tab) in a value.
    BadValue { line: usize, name: String },
    /// A line starting with a space or tab (obs-fold, RFC 9112 §5.2).
    Continuation { line: usize },
    /// `Status` not `DDD reason` with a code from 100 to 999.
    BadStatus { value: String },
    /// `Content-Length` not a number, or two that differ.
    BadContentLength { value: String },
    /// `Location` neither an absolute path nor an absolute URI.
    BadLocation { value: String },
    /// Two `Status` or two `Location` fields.
    Repeated { name: &'static str },
    /// None of `Content-Type`, `Location`, `Status`.
    NoCgiField,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooLong { limit } => {
                write!(f, "header block longer than {limit} bytes")
            }
            HeaderError::TooManyFields => {
                write!(f, "more than {MAX_FIELDS} header fields")
            }
            HeaderError::NoColon { line } => write!(f, "header line {line} has no colon"),
            HeaderError::BadName { line } => {
                write!(f, "header line {line}: the field name is not a token")
            }
            HeaderError::BadValue { line, name } => {
                write!(f, "header line {line}: control character in {name}")
            }
            HeaderError::Continuation { line } => write!(
                f,
                "header line {line} starts with white space (folded lines are not allowed)"
            ),
            HeaderError::BadStatus { value } => {
                write!(f, "Status {value:?} is not a three-digit code and a reason")
            }
            HeaderError::BadContentLength { value } => {
                write!(f, "Content-Length {value:?} is not one decimal number")
            }
            HeaderError::BadLocation { value } => write!(
                f,
                "Location {value:?} is neither an absolute path nor an absolute URI"
            ),
            HeaderError::Repeated { name } => write!(f, "{name} given twice"),
            HeaderError::NoCgiField => {
                write!(f, "no Content-Type, Location or Status in the header block")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

/// Where the header block in `buf` ends (the index just past its empty
/// line), if it is all there. `from` is how much of `buf` an earlier call
/// already scanned, so a block that arrives in many reads is scanned
/// about once. A block not ended within `limit` bytes is an error.
pub fn find_end(buf: &[u8], from: usize, limit: usize) -> Result<Option<usize>, HeaderError> {
    // The empty line is LF LF or LF CR LF, or the block's first line
    // (a program that prints no field: refused later by `parse`). Two
    // bytes back from `from`, in case it fell inside one.
    let mut i = from.saturating_sub(2).min(buf.len());
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + off;
        let empty = match lf {
            0 => true,
            1 => buf[0] == b'\r',
            _ => buf[lf - 1] == b'\n' || (buf[lf - 1] == b'\r' && buf[lf - 2] == b'\n'),
        };
        if empty {
            let end = lf + 1;
            return if end > limit {
                Err(HeaderError::TooLong { limit })
            } else {
                Ok(Some(end))
            };
        }
        i = lf + 1;
    }
    if buf.len() >= limit {
        return Err(HeaderError::TooLong { limit });
    }
    Ok(None)
}

/// Parses a complete header block, `block` as [`find_end`] delimited it
/// (its empty line included).
pub fn parse(block: &[u8]) -> Result<CgiHead, HeaderError> {
    let mut status: Option<(u16, Option<Vec<u8>>)> = None;
    let mut location: Option<Vec<u8>> = None;
    let mut content_length: Option<u64> = None;
    let mut has_type = false;
    let mut fields = Vec::new();
    let mut dropped = 0;
    let mut count = 0;
    for (index, raw) in block.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_FIELDS {
            return Err(HeaderError::TooManyFields);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HeaderError::Continuation { line: line_no });
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeaderError::NoColon { line: line_no })?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(HeaderError::BadName { line: line_no });
        }
        // A token is ASCII: the name is valid UTF-8.
        let name = String::from_utf8_lossy(name).into_owned();
        let value = trim(&line[colon + 1..]);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeaderError::BadValue {
                line: line_no,
                name,
            });
        }
        match name.to_ascii_lowercase().as_str() {
            "status" => {
                if status.is_some() {
                    return Err(HeaderError::Repeated { name: "Status" });
                }
                status = Some(parse_status(value)?);
            }
            "location" => {
                if location.is_some() {
                    return Err(HeaderError::Repeated { name: "Location" });
                }
                location = Some(value.to_vec());
            }
            "content-length" => {
                let n = parse_length(value)?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(bad_length(value));
                }
                content_length = Some(n);
            }
            "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade"
            | "proxy-connection" => dropped += 1,
            lower => {
                has_type |= lower == "content-type";
                fields.push((name, value.to_vec()));
            }
        }
    }
    let kind = match &location {
        Some(l) if l.starts_with(b"/") && !l.starts_with(b"//") => {
            if status.as_ref().is_some_and(|(code, _)| *code != 200) {
                // A status of its own: the program wants the client to
                // see this Location (Apache's rule).
                Kind::ClientRedirect(l.clone())
            } else {
                Kind::LocalRedirect(l.clone())
            }
        }
        Some(l) if is_absolute_uri(l) => Kind::ClientRedirect(l.clone()),
        Some(l) => {
            return Err(HeaderError::BadLocation {
                value: String::from_utf8_lossy(l).into_owned(),
            });
        }
        None if status.is_none() && !has_type => return Err(HeaderError::NoCgiField),
        None => Kind::Document,
    };
    let (status, reason) = match (status, &kind) {
        (Some(s), _) => s,
        (None, Kind::ClientRedirect(_)) => (302, None),
        (None, _) => (200, None),
    };
    if let (Kind::ClientRedirect(l), Some(_)) = (&kind, &location) {
        fields.push(("Location".to_string(), l.clone()));
    }
    Ok(CgiHead {
        kind,
        status,
        reason,
        content_length,
        fields,
        dropped,
    })
}

fn parse_status(value: &[u8]) -> Result<(u16, Option<Vec<u8>>), HeaderError> {
    let bad = || HeaderError::BadStatus {
        value: String::from_utf8_lossy(value).into_owned(),
    };
    let (code, reason) = match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(at) => (&value[..at], trim(&value[at..])),
        None => (value, &b""[..]),
    };
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return Err(bad());
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Ok((code, (!reason.is_empty()).then(|| reason.to_vec())))
}

fn bad_length(value: &[u8]) -> HeaderError {
    HeaderError::BadContentLength {
        value: String::from_utf8_lossy(value).into_owned(),
    }
}

fn parse_length(value: &[u8]) -> Result<u64, HeaderError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad_length(value));
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `scheme ":" ...` with a scheme as RFC 3986 spells it.
fn is_absolute_uri(s: &[u8]) -> bool {
    let Some(colon) = s.iter().position(|&b| b == b':') else {
        return false;
    };
    let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !s.iter().any(|&b| b == b' ' || b == b'\t')
}

/// RFC 9110 tchar.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests;

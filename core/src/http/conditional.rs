//! Validators and ranges: `If-None-Match` (weak comparison), `If-Modified-Since`,
//! `If-Range` (strong comparison) and a single byte `Range` (RFC 9110 13, 14).

use super::date::parse_http_date;

/// Whether an `If-None-Match` value matches `etag` (weak comparison: `W/`
/// prefixes are ignored on both sides; `*` matches any current representation).
pub fn none_match(header: &[u8], etag: &[u8]) -> bool {
    let etag = etag.strip_prefix(b"W/").unwrap_or(etag);
    if trim(header) == b"*" {
        return true;
    }
    let mut rest = header;
    loop {
        rest = trim_start_commas(rest);
        if rest.is_empty() {
            return false;
        }
        let tag_start = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(after_quote) = tag_start.strip_prefix(b"\"") else {
            return false; // malformed: no match
        };
        let Some(close) = after_quote.iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &tag_start[..close + 2];
        if tag == etag {
            return true;
        }
        rest = &after_quote[close + 1..];
    }
}

/// Whether a response last modified at `mtime` (seconds) is unchanged since
/// the `If-Modified-Since` value (an unparseable date never matches).
pub fn not_modified_since(header: &[u8], mtime: u64) -> bool {
    parse_http_date(trim(header)).is_some_and(|since| mtime <= since)
}

/// Whether an `If-Range` value still names this representation: an entity
/// tag by strong comparison, or exactly its `Last-Modified` date.
pub fn if_range_matches(header: &[u8], etag: &[u8], mtime: u64) -> bool {
    let header = trim(header);
    if header.starts_with(b"\"") {
        !etag.starts_with(b"W/") && header == etag
    } else if header.starts_with(b"W/") {
        false
    } else {
        parse_http_date(header) == Some(mtime)
    }
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Send the whole representation (no usable single range: absent,
    /// malformed, another unit, or several ranges — all of which a server
    /// may answer with 200).
    Full,
    /// Send bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// No byte selected: 416.
    Unsatisfiable,
}

/// Interprets a `Range` value for a representation of `len` bytes.
pub fn parse_range(header: &[u8], len: u64) -> RangeRequest {
    let header = trim(header);
    if header.len() < 6 || !header[..6].eq_ignore_ascii_case(b"bytes=") {
        return RangeRequest::Full;
    }
    let spec = trim(&header[6..]);
    if spec.contains(&b',') {
        return RangeRequest::Full;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (trim(&spec[..dash]), trim(&spec[dash + 1..]));
    match (number(first), number(last)) {
        (Some(start), last)
            if !first.is_empty() && (last.is_some() || spec[dash + 1..].is_empty()) =>
        {
            if let Some(end) = last
                && end < start
            {
                return RangeRequest::Full; // invalid: ignored
            }
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            let end = last.map_or(len - 1, |e| e.min(len - 1));
            RangeRequest::Partial { start, end }
        }
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial {
                start: len.saturating_sub(suffix),
                end: len - 1,
            }
        }
        _ => RangeRequest::Full,
    }
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
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

fn trim_start_commas(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b',', rest @ ..] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn range_table() {
        let table: &[(&str, u64, RangeRequest)] = &[
            ("bytes=0-0", 10, Partial { start: 0, end: 0 }),
            ("bytes=0-9", 10, Partial { start: 0, end: 9 }),
            ("bytes=2-100", 10, Partial { start: 2, end: 9 }),
            ("bytes=5-", 10, Partial { start: 5, end: 9 }),
            ("bytes=-3", 10, Partial { start: 7, end: 9 }),
            ("bytes=-30", 10, Partial { start: 0, end: 9 }),
            ("BYTES = 1-2", 10, Full),
            ("Bytes=1-2", 10, Partial { start: 1, end: 2 }),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=5-2", 10, Full),
            ("bytes=0-1,3-4", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=-", 10, Full),
            ("bytes=1-x", 10, Full),
            ("items=0-1", 10, Full),
            ("", 10, Full),
        ];
        for (header, len, want) in table {
            assert_eq!(
                parse_range(header.as_bytes(), *len),
                *want,
                "{header} of {len}"
            );
        }
    }

    #[test]
    fn validators_table() {
        let etag = b"\"abc\"";
        let table: &[(&str, bool)] = &[
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("\"x\",W/\"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("abc", false),
            ("\"x\"", false),
            ("", false),
        ];
        for (header, want) in table {
            assert_eq!(none_match(header.as_bytes(), etag), *want, "{header}");
        }
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(not_modified_since(date.as_bytes(), 784_111_777));
        assert!(not_modified_since(date.as_bytes(), 784_111_000));
        assert!(!not_modified_since(date.as_bytes(), 784_111_778));
        assert!(!not_modified_since(b"yesterday", 0));
        assert!(if_range_matches(b"\"abc\"", etag, 1));
        assert!(!if_range_matches(b"W/\"abc\"", etag, 1));
        assert!(if_range_matches(date.as_bytes(), etag, 784_111_777));
        assert!(!if_range_matches(date.as_bytes(), etag, 784_111_778));
    }
}

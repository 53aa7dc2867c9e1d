//! Validators and ranges (RFC 9110 13, 14): the preconditions in the
//! order §13.2.2 evaluates them ([`evaluate`]: `If-Match` and `If-Range`
//! by strong comparison, `If-None-Match` by weak, `If-Unmodified-Since`,
//! `If-Modified-Since`); `Range` itself is parsed in [`super::range`].

use super::date::parse_http_date;
pub use super::range::{RangeRequest, parse_range};

/// The validators a request's preconditions are checked against, and the
/// precondition fields it sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Preconditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
}

/// What the preconditions decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: answer the request (a `Range` may still apply).
    Proceed,
    /// 304 Not Modified (a GET or HEAD whose cached copy is current).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// RFC 9110 §13.2.2 for a representation with entity tag `etag` and
/// last modification `mtime` (seconds), for a GET or HEAD (`safe`) or
/// another method.
pub fn evaluate(p: &Preconditions<'_>, etag: &[u8], mtime: u64, safe: bool) -> Verdict {
    // 1. If-Match, else 2. If-Unmodified-Since (a date that does not
    // parse is ignored).
    if let Some(im) = p.if_match {
        if !strong_match(im, etag) {
            return Verdict::Failed;
        }
    } else if let Some(ius) = p.if_unmodified_since
        && parse_http_date(trim(ius)).is_some_and(|date| mtime > date)
    {
        return Verdict::Failed;
    }
    // 3. If-None-Match, else 4. If-Modified-Since (GET and HEAD only).
    if let Some(inm) = p.if_none_match {
        if none_match(inm, etag) {
            return if safe {
                Verdict::NotModified
            } else {
                Verdict::Failed
            };
        }
    } else if safe
        && let Some(ims) = p.if_modified_since
        && not_modified_since(ims, mtime)
    {
        return Verdict::NotModified;
    }
    Verdict::Proceed
}

/// Whether an `If-Match` value matches `etag` (strong comparison: a weak
/// tag on either side never matches; `*` matches any current
/// representation).
pub fn strong_match(header: &[u8], etag: &[u8]) -> bool {
    if trim(header) == b"*" {
        return true;
    }
    if etag.starts_with(b"W/") {
        return false;
    }
    tags(header).any(|(weak, tag)| !weak && tag == etag)
}

/// The entity tags of a list (`"a", W/"b"`): whether each is weak, and the
/// tag with its quotes. A malformed element ends the list.
fn tags(header: &[u8]) -> impl Iterator<Item = (bool, &[u8])> {
    let mut rest = header;
    std::iter::from_fn(move || {
        rest = trim_start_commas(rest);
        let (weak, tag_start) = match rest.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let after_quote = tag_start.strip_prefix(b"\"")?;
        let close = after_quote.iter().position(|&b| b == b'"')?;
        rest = &after_quote[close + 1..];
        Some((weak, &tag_start[..close + 2]))
    })
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison: `W/`
/// prefixes are ignored on both sides; `*` matches any current representation).
pub fn none_match(header: &[u8], etag: &[u8]) -> bool {
    let etag = etag.strip_prefix(b"W/").unwrap_or(etag);
    trim(header) == b"*" || tags(header).any(|(_, tag)| tag == etag)
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

    const ETAG: &[u8] = b"\"v2\"";
    /// Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT.
    const MTIME: u64 = 784_111_777;
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AT: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    /// (If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since,
    /// status for GET, status for PUT): rows worked out by hand from RFC
    /// 9110 §13.2.2 (200 = proceed).
    type Row = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        u16,
        u16,
    );
    const ROWS: &[Row] = &[
        (None, None, None, None, 200, 200),
        // If-Match: strong comparison; * matches; a failure is 412 whatever follows.
        (Some("\"v2\""), None, None, None, 200, 200),
        (Some("\"v1\", \"v2\""), None, None, None, 200, 200),
        (Some("*"), None, None, None, 200, 200),
        (Some("\"v1\""), None, None, None, 412, 412),
        (Some("W/\"v2\""), None, None, None, 412, 412),
        (Some("\"v1\""), None, Some("\"v1\""), Some(AT), 412, 412),
        // If-Unmodified-Since, only without If-Match; a bad date is ignored.
        (None, Some(AT), None, None, 200, 200),
        (None, Some(AFTER), None, None, 200, 200),
        (None, Some(BEFORE), None, None, 412, 412),
        (None, Some("not a date"), None, None, 200, 200),
        (Some("\"v2\""), Some(BEFORE), None, None, 200, 200),
        // If-None-Match: weak comparison; 304 for GET, 412 for others.
        (None, None, Some("\"v2\""), None, 304, 412),
        (None, None, Some("W/\"v2\""), None, 304, 412),
        (None, None, Some("\"v1\", W/\"v2\""), None, 304, 412),
        (None, None, Some("*"), None, 304, 412),
        (None, None, Some("\"v1\""), None, 200, 200),
        // If-Modified-Since: GET only, and only without If-None-Match.
        (None, None, None, Some(AT), 304, 200),
        (None, None, None, Some(AFTER), 304, 200),
        (None, None, None, Some(BEFORE), 200, 200),
        (None, None, None, Some("garbage"), 200, 200),
        (None, None, Some("\"v1\""), Some(AT), 200, 200),
        (None, None, Some("\"v2\""), Some(BEFORE), 304, 412),
        // Steps in order: 1 passes, 3 decides.
        (Some("\"v2\""), None, Some("\"v2\""), None, 304, 412),
        (Some("*"), Some(BEFORE), Some("\"v1\""), Some(AT), 200, 200),
        (None, Some(AT), None, Some(AT), 304, 200),
        (None, Some(BEFORE), None, Some(AT), 412, 412),
    ];

    fn status(v: Verdict) -> u16 {
        match v {
            Verdict::Proceed => 200,
            Verdict::NotModified => 304,
            Verdict::Failed => 412,
        }
    }

    fn check(row: &Row, etag: &[u8], want_get: u16, want_put: u16) {
        let p = Preconditions {
            if_match: row.0.map(str::as_bytes),
            if_unmodified_since: row.1.map(str::as_bytes),
            if_none_match: row.2.map(str::as_bytes),
            if_modified_since: row.3.map(str::as_bytes),
        };
        assert_eq!(
            status(evaluate(&p, etag, MTIME, true)),
            want_get,
            "GET {row:?}"
        );
        assert_eq!(
            status(evaluate(&p, etag, MTIME, false)),
            want_put,
            "PUT {row:?}"
        );
    }

    #[test]
    fn preconditions_by_hand() {
        for row in ROWS {
            check(row, ETAG, row.4, row.5);
        }
    }

    /// Every combination of the four fields, each absent, passing or
    /// failing (and If-Match also weak), against RFC 9110 §13.2.2's steps
    /// read one by one.
    #[test]
    fn preconditions_every_combination() {
        let im = [
            None,
            Some("\"v2\""),
            Some("*"),
            Some("\"v1\""),
            Some("W/\"v2\""),
        ];
        let ius = [None, Some(AT), Some(BEFORE), Some("bad")];
        let inm = [None, Some("W/\"v2\""), Some("*"), Some("\"v1\"")];
        let ims = [None, Some(AT), Some(BEFORE), Some("bad")];
        let mut n = 0;
        for a in im {
            for b in ius {
                for c in inm {
                    for d in ims {
                        // Step 1 and 2: the write preconditions.
                        let im_fails = a.is_some_and(|v| !matches!(v, "\"v2\"" | "*"));
                        let ius_fails = a.is_none() && b == Some(BEFORE);
                        // Step 3 and 4: the read preconditions.
                        let inm_matches = c.is_some_and(|v| v != "\"v1\"");
                        let ims_unchanged = c.is_none() && d == Some(AT);
                        let (get, put) = if im_fails || ius_fails {
                            (412, 412)
                        } else if inm_matches {
                            (304, 412)
                        } else if ims_unchanged {
                            (304, 200)
                        } else {
                            (200, 200)
                        };
                        check(&(a, b, c, d, 0, 0), ETAG, get, put);
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 5 * 4 * 4 * 4);
    }

    #[test]
    fn a_weak_representation_never_passes_if_match_but_a_star() {
        assert!(!strong_match(b"W/\"v2\"", b"W/\"v2\""));
        assert!(!strong_match(b"\"v2\"", b"W/\"v2\""));
        assert!(strong_match(b"*", b"W/\"v2\""));
        assert!(none_match(b"\"v2\"", b"W/\"v2\""));
        // A malformed list matches nothing after the break.
        assert!(!strong_match(b"v2, \"v2\"", ETAG));
        assert!(strong_match(b" , \"x\" ,\"v2\"", ETAG));
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

//! The `Range` header (RFC 9110 §14.1.2, §14.2) for a representation of
//! known length: one range, several (`multipart/byteranges`, §14.6), or
//! none. Parsing allocates nothing: a set of ranges is a fixed array.
//!
//! Which range sets are served is nginx's choice (its range filter's
//! `ngx_http_range_parse`), so that both answer the same `Range` header
//! with the same bytes; the differences are listed on [`parse_range`].

/// The most ranges one answer carries; a `Range` with more satisfiable
/// ranges gets the whole representation (200), as nginx does past
/// `max_ranges`. Clients that ask for several ranges (PDF readers
/// fetching objects, download managers) ask for a handful; each range
/// costs a part head (about 100 bytes), a slice to gather and, from a
/// file, a `sendfile` call, so the bound keeps one request's work and
/// framing small. Apache's `MaxRanges` default is 200; nginx's
/// `max_ranges` is unbounded unless set.
pub const MAX_RANGES: usize = 16;

/// The satisfiable ranges of a `Range` header, in the order asked
/// (RFC 9110 lets a server reorder or merge them; nginx does neither, and
/// nor does this, so answers match nginx's byte for byte).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RangeSet {
    ranges: [(u64, u64); MAX_RANGES],
    len: usize,
}

impl RangeSet {
    const EMPTY: RangeSet = RangeSet {
        ranges: [(0, 0); MAX_RANGES],
        len: 0,
    };

    /// The ranges, each `(first, last)` with `first <= last` (inclusive,
    /// as `Content-Range` writes them), in the order asked.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }

    /// The number of ranges (at least 2 in [`RangeRequest::Multi`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no range (never in a [`RangeRequest::Multi`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes the ranges select, overlaps counted as often as asked
    /// (at most the representation's length in a [`RangeRequest::Multi`]).
    pub fn total(&self) -> u64 {
        self.ranges()
            .iter()
            .fold(0u64, |t, (a, b)| t.saturating_add(b - a + 1))
    }
}

impl std::fmt::Debug for RangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

/// What a `Range` header asks of a representation of `len` bytes.
// 264 bytes, held briefly on the stack while one answer is made: boxing the
// set would allocate per request, which parsing never does.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Send the whole representation with 200: no `Range`, another unit, a
    /// malformed value, more than [`MAX_RANGES`] ranges, or ranges that
    /// together select more bytes than the representation has (overlaps
    /// that would amplify the answer).
    Full,
    /// One range: 206 with `Content-Range`, bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// Several ranges: 206 `multipart/byteranges`, one part each.
    Multi(RangeSet),
    /// No range selects a byte: 416.
    Unsatisfiable,
}

/// Interprets a `Range` value for a representation of `len` bytes.
///
/// As nginx: ranges that select nothing (start past the end) are dropped
/// and the others served, 416 only when none is left; ranges keep their
/// order and are not merged; ranges whose sizes add up to more than `len`
/// get the whole representation. Unlike nginx, a malformed value (a range
/// whose last byte is before its first, a non-digit, an empty element) is
/// ignored (200, as RFC 9110 §14.2 allows) where nginx answers 416; and
/// more than [`MAX_RANGES`] ranges get 200 (nginx's `max_ranges`, which
/// nginx leaves unbounded by default).
pub fn parse_range(header: &[u8], len: u64) -> RangeRequest {
    let header = trim(header);
    if header.len() < 6 || !header[..6].eq_ignore_ascii_case(b"bytes=") {
        return RangeRequest::Full;
    }
    let mut set = RangeSet::EMPTY;
    // Bytes selected so far, and whether a range was dropped.
    let mut total: u64 = 0;
    let mut elements = 0usize;
    for spec in header[6..].split(|&b| b == b',') {
        let spec = trim(spec);
        if spec.is_empty() {
            // RFC 9110's `1#range-spec` allows empty list elements.
            continue;
        }
        elements += 1;
        let Some(range) = one_range(spec, len) else {
            return RangeRequest::Full;
        };
        let Some((first, last)) = range else {
            continue; // selects nothing
        };
        if set.len == MAX_RANGES {
            return RangeRequest::Full;
        }
        set.ranges[set.len] = (first, last);
        set.len += 1;
        // Past u64 is past any length: saturating would hide that a
        // 2^64 - 1 byte representation is asked for more than itself.
        let Some(sum) = total.checked_add(last - first + 1) else {
            return RangeRequest::Full;
        };
        total = sum;
    }
    match set.len {
        _ if elements == 0 => RangeRequest::Full,
        0 => RangeRequest::Unsatisfiable,
        _ if total > len => RangeRequest::Full,
        1 => RangeRequest::Partial {
            start: set.ranges[0].0,
            end: set.ranges[0].1,
        },
        _ => RangeRequest::Multi(set),
    }
}

/// One `range-spec` against `len` bytes: `None` when malformed,
/// `Some(None)` when it selects no byte, else its first and last byte.
fn one_range(spec: &[u8], len: u64) -> Option<Option<(u64, u64)>> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (trim(&spec[..dash]), trim(&spec[dash + 1..]));
    if first.is_empty() {
        // A suffix: the last `n` bytes.
        let n = number(last)?;
        if n == 0 || len == 0 {
            return Some(None);
        }
        return Some(Some((len.saturating_sub(n), len - 1)));
    }
    let start = number(first)?;
    let end = if last.is_empty() {
        None
    } else {
        Some(number(last)?)
    };
    if end.is_some_and(|end| end < start) {
        return None;
    }
    if start >= len {
        return Some(None);
    }
    Some(Some((start, end.map_or(len - 1, |e| e.min(len - 1)))))
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

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    fn multi(ranges: &[(u64, u64)]) -> RangeRequest {
        let mut set = RangeSet::EMPTY;
        for &r in ranges {
            set.ranges[set.len] = r;
            set.len += 1;
        }
        Multi(set)
    }

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
            ("bytes=a-b", 10, Full),
            ("bytes=-", 10, Full),
            ("bytes=1-x", 10, Full),
            ("items=0-1", 10, Full),
            ("", 10, Full),
            ("bytes=", 10, Full),
            ("bytes=,", 10, Full),
            // Several ranges: in the order asked, not merged.
            ("bytes=0-1,3-4", 10, multi(&[(0, 1), (3, 4)])),
            ("bytes=0-1, 3-4 ,", 10, multi(&[(0, 1), (3, 4)])),
            ("bytes=6-7,0-1", 10, multi(&[(6, 7), (0, 1)])),
            ("bytes=0-1,-2", 10, multi(&[(0, 1), (8, 9)])),
            ("bytes=0-4,3-6", 10, multi(&[(0, 4), (3, 6)])),
            // Unsatisfiable ranges dropped; one left is a plain 206.
            ("bytes=0-1,20-30", 10, Partial { start: 0, end: 1 }),
            ("bytes=20-30,2-3,40-", 10, Partial { start: 2, end: 3 }),
            ("bytes=20-30,40-", 10, Unsatisfiable),
            ("bytes=-0,-0", 10, Unsatisfiable),
            // More bytes than the file: the whole file.
            ("bytes=0-9,0-0", 10, Full),
            ("bytes=0-5,3-8", 10, Full),
            ("bytes=-6,-6", 10, Full),
            // Found by the `ranges` fuzz target: the sizes add up past u64.
            ("bytes=0- ,-199", u64::MAX, Full),
            ("bytes=0-,-1", u64::MAX, Full),
            // A malformed element spoils the header.
            ("bytes=0-1,x", 10, Full),
            ("bytes=0-1,5-2", 10, Full),
            ("bytes=0-1,-", 10, Full),
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
    fn many_ranges_get_the_whole_file() {
        let ranges = |n: usize| {
            let specs: Vec<String> = (0..n).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
            format!("bytes={}", specs.join(","))
        };
        let at_most = parse_range(ranges(MAX_RANGES).as_bytes(), 1000);
        let Multi(set) = at_most else {
            panic!("{at_most:?}")
        };
        assert_eq!(set.len(), MAX_RANGES);
        assert_eq!(set.total(), MAX_RANGES as u64);
        assert_eq!(parse_range(ranges(MAX_RANGES + 1).as_bytes(), 1000), Full);
        // 200 overlapping ranges: far more bytes than the file.
        let overlapping = format!("bytes={}", vec!["0-"; 200].join(","));
        assert_eq!(parse_range(overlapping.as_bytes(), 1000), Full);
        // Unsatisfiable ones do not count against the bound.
        let dropped = format!("bytes={},0-1,4-5", vec!["5000-"; 50].join(","));
        assert_eq!(
            parse_range(dropped.as_bytes(), 1000),
            multi(&[(0, 1), (4, 5)])
        );
    }
}

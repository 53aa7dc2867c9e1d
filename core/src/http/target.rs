//! From request target to a safe path: strip the scheme and authority of an
//! absolute-form target and the query, percent-decode each segment, and
//! remove dot segments — all before any file is looked at. A path that would
//! climb above the root, or that decodes to a `/` or NUL inside a segment, is
//! refused (403) rather than reinterpreted.

use crate::error::Error;

/// The path part of a request target, still percent-encoded (no query).
/// Absolute-form (`http://host/p`) gives its path; `*` and authority-form
/// are not paths and give 400.
pub fn target_path(target: &[u8]) -> Result<&[u8], Error> {
    let path = if target.first() == Some(&b'/') {
        target
    } else {
        let rest = strip_scheme(target).ok_or(Error::BadRequest("request target is not a path"))?;
        match rest.iter().position(|&b| b == b'/') {
            Some(i) => &rest[i..],
            None if !rest.is_empty() => b"/",
            None => return Err(Error::BadRequest("absolute URI without authority")),
        }
    };
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    Ok(&path[..end])
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [b"http://".as_slice(), b"https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// Percent-decodes `path` and removes its dot segments into `out` (cleared
/// first), giving `/`-separated segments starting with `/`, with no empty,
/// `.` or `..` segment. A trailing slash is kept: it means "directory".
pub fn normalize(path: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    if path.first() != Some(&b'/') {
        return Err(Error::BadRequest("path does not start with /"));
    }
    let mut trailing_slash = false;
    for raw in path[1..].split(|&b| b == b'/') {
        let seg_start = out.len();
        out.push(b'/');
        decode_segment(raw, out)?;
        let seg = &out[seg_start + 1..];
        trailing_slash = true;
        if seg.is_empty() || seg == b"." {
            out.truncate(seg_start);
        } else if seg == b".." {
            out.truncate(seg_start);
            let parent = out
                .iter()
                .rposition(|&b| b == b'/')
                .ok_or(Error::Forbidden("path climbs above the root"))?;
            out.truncate(parent);
        } else {
            trailing_slash = false;
        }
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    Ok(())
}

fn decode_segment(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let decoded = if b == b'%' {
            let hi = raw.get(i + 1).and_then(|&h| (h as char).to_digit(16));
            let lo = raw.get(i + 2).and_then(|&l| (l as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Error::BadRequest("invalid percent-encoding"));
            };
            i += 3;
            (hi * 16 + lo) as u8
        } else {
            i += 1;
            b
        };
        match decoded {
            b'/' => return Err(Error::Forbidden("encoded slash in path")),
            0 => return Err(Error::Forbidden("NUL in path")),
            _ => out.push(decoded),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_to_paths_table() {
        let table: &[(&str, Result<&str, u16>)] = &[
            ("/", Ok("/")),
            ("/a/b?x=1", Ok("/a/b")),
            ("http://example.com/a?q", Ok("/a")),
            ("HTTP://example.com", Ok("/")),
            ("*", Err(400)),
            ("example.com:80", Err(400)),
            ("http://", Err(400)),
        ];
        for (target, want) in table {
            let got = target_path(target.as_bytes()).map_err(|e| e.status());
            assert_eq!(got, want.map(str::as_bytes), "{target}");
        }
    }

    #[test]
    fn normalize_table() {
        let table: &[(&str, Result<&str, u16>)] = &[
            ("/", Ok("/")),
            ("/index.html", Ok("/index.html")),
            ("/a/b/", Ok("/a/b/")),
            ("//a///b", Ok("/a/b")),
            ("/a/./b", Ok("/a/b")),
            ("/a/../b", Ok("/b")),
            ("/a/b/..", Ok("/a/")),
            ("/a/.", Ok("/a/")),
            ("/a%20b", Ok("/a b")),
            ("/%41%62", Ok("/Ab")),
            ("/a/%2e%2e/b", Ok("/b")),
            ("/a/%2E/b", Ok("/a/b")),
            ("/..", Err(403)),
            ("/../etc/passwd", Err(403)),
            ("/a/../../etc/passwd", Err(403)),
            ("/%2e%2e/etc/passwd", Err(403)),
            ("/%2E%2e/x", Err(403)),
            ("/a%2fb", Err(403)),
            ("/a%2F..%2F..%2Fetc", Err(403)),
            ("/a%00.html", Err(403)),
            ("/a%", Err(400)),
            ("/a%4", Err(400)),
            ("/a%zz", Err(400)),
            ("a", Err(400)),
        ];
        let mut out = Vec::new();
        for (path, want) in table {
            let got = normalize(path.as_bytes(), &mut out)
                .map(|()| out.clone())
                .map_err(|e| e.status());
            assert_eq!(got, want.map(|w| w.as_bytes().to_vec()), "{path}");
        }
    }
}

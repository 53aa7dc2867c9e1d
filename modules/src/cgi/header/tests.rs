use super::*;

fn whole(block: &str) -> Result<CgiHead, HeaderError> {
    let end = find_end(block.as_bytes(), 0, 8192)?.expect("a complete block");
    parse(&block.as_bytes()[..end])
}

fn fields(h: &CgiHead) -> Vec<(&str, &str)> {
    h.fields
        .iter()
        .map(|(n, v)| (n.as_str(), std::str::from_utf8(v).unwrap()))
        .collect()
}

/// A block, and its kind, status, reason and the fields sent on.
type Case<'a> = (
    &'a str,
    Kind,
    u16,
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
);

#[test]
fn responses_of_every_kind() {
    let table: &[Case<'_>] = &[
        (
            "Content-Type: text/plain\n\n",
            Kind::Document,
            200,
            None,
            &[("Content-Type", "text/plain")],
        ),
        (
            "Content-type:text/html\r\nX-A:  b c \r\n\r\n",
            Kind::Document,
            200,
            None,
            &[("Content-type", "text/html"), ("X-A", "b c")],
        ),
        (
            "Status: 404 Not Found\nContent-Type: text/plain\n\n",
            Kind::Document,
            404,
            Some("Not Found"),
            &[("Content-Type", "text/plain")],
        ),
        ("Status: 204\n\n", Kind::Document, 204, None, &[]),
        (
            "Location: /other?x=1\n\n",
            Kind::LocalRedirect("/other?x=1".as_bytes().to_vec()),
            200,
            None,
            &[],
        ),
        (
            "Location: /other\nStatus: 200 OK\n\n",
            Kind::LocalRedirect("/other".as_bytes().to_vec()),
            200,
            Some("OK"),
            &[],
        ),
        (
            "Status: 303 See Other\nLocation: /after\n\n",
            Kind::ClientRedirect("/after".as_bytes().to_vec()),
            303,
            Some("See Other"),
            &[("Location", "/after")],
        ),
        (
            "Location: https://example.com/x\n\n",
            Kind::ClientRedirect("https://example.com/x".as_bytes().to_vec()),
            302,
            None,
            &[("Location", "https://example.com/x")],
        ),
        (
            "Location: http://e/\nStatus: 301 Moved\nContent-Type: text/html\n\n",
            Kind::ClientRedirect("http://e/".as_bytes().to_vec()),
            301,
            Some("Moved"),
            &[("Content-Type", "text/html"), ("Location", "http://e/")],
        ),
        (
            // Mixed line ends, an empty value, a repeated field kept twice.
            "Content-Type: a/b\r\nSet-Cookie: a=1\nSet-Cookie: b=2\r\nX-Empty:\n\r\n",
            Kind::Document,
            200,
            None,
            &[
                ("Content-Type", "a/b"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("X-Empty", ""),
            ],
        ),
    ];
    for (block, kind, status, reason, want) in table {
        let h = whole(block).unwrap_or_else(|e| panic!("{block:?}: {e}"));
        assert_eq!(&h.kind, kind, "{block:?}");
        assert_eq!(h.status, *status, "{block:?}");
        assert_eq!(h.reason.as_deref(), reason.map(str::as_bytes), "{block:?}");
        assert_eq!(fields(&h), *want, "{block:?}");
    }
}

#[test]
fn the_connection_s_fields_are_dropped_and_content_length_kept_apart() {
    let h = whole(
        "Content-Type: t/t\nContent-Length: 12\nConnection: close\nTransfer-Encoding: chunked\n\
         Keep-Alive: 5\ncontent-length: 12\n\n",
    )
    .unwrap();
    assert_eq!(h.content_length, Some(12));
    assert_eq!(h.dropped, 3);
    assert_eq!(fields(&h), [("Content-Type", "t/t")]);
}

#[test]
fn bad_blocks_are_refused_for_what_they_are() {
    let table: &[(&str, HeaderError)] = &[
        ("\n", HeaderError::NoCgiField),
        ("\r\n", HeaderError::NoCgiField),
        ("X-Only: 1\n\n", HeaderError::NoCgiField),
        (
            "Content-Type: t\nno colon here\n\n",
            HeaderError::NoColon { line: 2 },
        ),
        ("Bad Name: 1\n\n", HeaderError::BadName { line: 1 }),
        (": 1\n\n", HeaderError::BadName { line: 1 }),
        (
            "Content-Type: t\n folded\n\n",
            HeaderError::Continuation { line: 2 },
        ),
        (
            "Content-Type: a\x01b\n\n",
            HeaderError::BadValue {
                line: 1,
                name: "Content-Type".into(),
            },
        ),
        (
            "Content-Type: ab\r\r\n\n",
            HeaderError::BadValue {
                line: 1,
                name: "Content-Type".into(),
            },
        ),
        (
            "Status: 20\n\n",
            HeaderError::BadStatus { value: "20".into() },
        ),
        (
            "Status: abc OK\n\n",
            HeaderError::BadStatus {
                value: "abc OK".into(),
            },
        ),
        (
            "Status: 099 Low\n\n",
            HeaderError::BadStatus {
                value: "099 Low".into(),
            },
        ),
        (
            "Status: 200\nStatus: 200\n\n",
            HeaderError::Repeated { name: "Status" },
        ),
        (
            "Location: /a\nLocation: /b\n\n",
            HeaderError::Repeated { name: "Location" },
        ),
        (
            "Location: relative/path\n\n",
            HeaderError::BadLocation {
                value: "relative/path".into(),
            },
        ),
        (
            "Location: //host/x\n\n",
            HeaderError::BadLocation {
                value: "//host/x".into(),
            },
        ),
        (
            "Content-Type: t\nContent-Length: -1\n\n",
            HeaderError::BadContentLength { value: "-1".into() },
        ),
        (
            "Content-Type: t\nContent-Length: 1\nContent-Length: 2\n\n",
            HeaderError::BadContentLength { value: "2".into() },
        ),
        (
            "Content-Type: t\nContent-Length: 99999999999999999999\n\n",
            HeaderError::BadContentLength {
                value: "99999999999999999999".into(),
            },
        ),
    ];
    for (block, want) in table {
        assert_eq!(whole(block).as_ref(), Err(want), "{block:?}");
        // Every refusal reads as one line for the log.
        assert!(!want.to_string().contains('\n'));
    }
}

#[test]
fn too_many_fields_and_too_long_blocks() {
    let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: v\n")).collect();
    assert_eq!(whole(&format!("{many}\n")), Err(HeaderError::TooManyFields));
    let long = format!("Content-Type: {}\n\n", "x".repeat(100));
    assert_eq!(
        find_end(long.as_bytes(), 0, 50),
        Err(HeaderError::TooLong { limit: 50 })
    );
    // Not yet ended, and already at the limit.
    assert_eq!(
        find_end(&long.as_bytes()[..60], 0, 50),
        Err(HeaderError::TooLong { limit: 50 })
    );
    // Just fits.
    assert_eq!(
        find_end(long.as_bytes(), 0, long.len()),
        Ok(Some(long.len()))
    );
}

#[test]
fn a_block_split_anywhere_ends_in_the_same_place() {
    let out = b"Content-Type: text/plain\r\nX-A: 1\n\r\nbody\n\nmore";
    let want = find_end(out, 0, 1024).unwrap().unwrap();
    assert_eq!(&out[want..], b"body\n\nmore");
    for cut in 0..out.len() {
        // Bytes arrive up to `cut`, then the rest: the second call
        // starts from where the first stopped.
        let first = find_end(&out[..cut], 0, 1024).unwrap();
        let found = match first {
            Some(end) => end,
            None => find_end(out, cut, 1024).unwrap().unwrap(),
        };
        assert_eq!(found, want, "cut at {cut}");
    }
}

#[test]
fn bytes_above_127_pass_as_they_are() {
    // Latin-1 in a value and a reason (obs-text): kept, not replaced.
    let block = b"Status: 200 Gr\xfc\xdfe\nContent-Type: t\nX-Name: M\xfcller \n\n";
    let end = find_end(block, 0, 1024).unwrap().unwrap();
    let h = parse(&block[..end]).unwrap();
    assert_eq!(h.reason.as_deref(), Some(&b"Gr\xfc\xdfe"[..]));
    assert_eq!(h.fields[1], ("X-Name".to_string(), b"M\xfcller".to_vec()));
}

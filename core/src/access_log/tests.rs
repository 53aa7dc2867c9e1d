//! The access log's lines, escaping, dates, buffering and reopening.

use super::*;
use std::time::Instant;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn entry() -> Entry<'static> {
    Entry {
        client: "192.0.2.7".parse().unwrap(),
        user: None,
        time: at(1_700_000_000),
        method: b"GET",
        target: b"/index.html",
        version: "HTTP/1.1",
        status: 200,
        body_bytes: 1043,
        referer: None,
        user_agent: Some(b"curl/8.5.0"),
        error: None,
    }
}

fn line(e: &Entry<'_>) -> String {
    let mut out = Vec::new();
    format_line(&mut out, e);
    String::from_utf8(out).expect("always ASCII")
}

#[test]
fn lines_in_combined_log_format() {
    let base = entry();
    let table: Vec<(Entry<'static>, &str)> = vec![
        (
            base.clone(),
            "192.0.2.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /index.html HTTP/1.1\" 200 1043 \"-\" \"curl/8.5.0\"\n",
        ),
        (
            Entry {
                client: "::1".parse().unwrap(),
                user: Some(b"alice"),
                time: at(0),
                method: b"HEAD",
                target: b"/a?b=c",
                version: "HTTP/1.0",
                status: 304,
                body_bytes: 0,
                referer: Some(b"http://example.com/"),
                user_agent: None,
                error: None,
            },
            "::1 - alice [01/Jan/1970:00:00:00 +0000] \"HEAD /a?b=c HTTP/1.0\" 304 0 \"http://example.com/\" \"-\"\n",
        ),
        (
            Entry {
                client: "::ffff:10.1.2.3".parse().unwrap(),
                time: at(951_782_400 + 86_399),
                ..base.clone()
            },
            "10.1.2.3 - - [29/Feb/2000:23:59:59 +0000] \"GET /index.html HTTP/1.1\" 200 1043 \"-\" \"curl/8.5.0\"\n",
        ),
        (
            Entry {
                method: b"",
                target: b"",
                version: "",
                status: 408,
                body_bytes: 0,
                user_agent: None,
                ..base.clone()
            },
            "192.0.2.7 - - [14/Nov/2023:22:13:20 +0000] \"-\" 408 0 \"-\" \"-\"\n",
        ),
        (
            Entry {
                status: 504,
                error: Some(crate::error::Side::Upstream),
                ..base.clone()
            },
            "192.0.2.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /index.html HTTP/1.1\" 504 1043 \"-\" \"curl/8.5.0\" error=upstream\n",
        ),
        (
            // Quotes, backslashes, controls and non-ASCII in every
            // client-supplied field.
            Entry {
                user: Some(b"b\"o b"),
                target: b"/x\"y\\z\r\n\x1b[31m",
                referer: Some(b"\"; rm -rf /\t"),
                user_agent: Some("Mozilla \"é\" \x7f".as_bytes()),
                ..base.clone()
            },
            "192.0.2.7 - b\\\"o b [14/Nov/2023:22:13:20 +0000] \"GET /x\\\"y\\\\z\\x0D\\x0A\\x1B[31m HTTP/1.1\" 200 1043 \"\\\"; rm -rf /\\x09\" \"Mozilla \\\"\\xC3\\xA9\\\" \\x7F\"\n",
        ),
        (
            Entry {
                status: 599,
                body_bytes: u64::MAX,
                referer: Some(b""),
                ..base.clone()
            },
            "192.0.2.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /index.html HTTP/1.1\" 599 18446744073709551615 \"\" \"curl/8.5.0\"\n",
        ),
    ];
    for (e, want) in &table {
        assert_eq!(line(e), *want);
    }
}

#[test]
fn dates_match_the_calendar() {
    let table: &[(u64, &str)] = &[
        (0, "01/Jan/1970:00:00:00 +0000"),
        (68_169_600, "29/Feb/1972:00:00:00 +0000"),
        (951_868_799, "29/Feb/2000:23:59:59 +0000"),
        (978_307_200, "01/Jan/2001:00:00:00 +0000"),
        (1_700_000_000, "14/Nov/2023:22:13:20 +0000"),
        (1_798_761_599, "31/Dec/2026:23:59:59 +0000"),
        (4_102_444_800, "01/Jan/2100:00:00:00 +0000"),
    ];
    for (secs, want) in table {
        assert_eq!(
            std::str::from_utf8(&clf_date(*secs)).unwrap(),
            *want,
            "{secs}"
        );
    }
    let mut c = DateCache::default();
    assert_eq!(c.get(at(0)), b"01/Jan/1970:00:00:00 +0000");
    assert_eq!(c.get(at(61)), b"01/Jan/1970:00:01:01 +0000");
    let before = UNIX_EPOCH - Duration::from_secs(5);
    assert_eq!(c.get(before), b"01/Jan/1970:00:00:00 +0000");
}

#[test]
fn every_line_of_every_writer_reaches_the_output_once() {
    // A long interval: only full buffers and shutdown write.
    let (mut log, mem) = AccessLog::in_memory(Duration::from_secs(3600));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let mut w = log.writer();
            std::thread::spawn(move || {
                for i in 0..5_000u64 {
                    w.log(&Entry {
                        body_bytes: t * 1_000_000 + i,
                        ..entry()
                    });
                }
                // Dropped with lines still buffered.
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    log.shutdown();
    let text = String::from_utf8(lock(&mem).clone()).unwrap();
    let mut seen: Vec<u64> = text
        .lines()
        .map(|l| {
            assert!(
                l.starts_with(
                    "192.0.2.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /index.html HTTP/1.1\" 200 "
                ),
                "{l}"
            );
            l.split(' ').nth(9).unwrap().parse().unwrap()
        })
        .collect();
    seen.sort_unstable();
    let want: Vec<u64> = (0..4u64)
        .flat_map(|t| (0..5_000).map(move |i| t * 1_000_000 + i))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(log.write_errors(), 0);
}

#[test]
fn the_flusher_writes_idle_buffers() {
    let (log, mem) = AccessLog::in_memory(Duration::from_millis(20));
    let mut w = log.writer();
    w.log(&entry());
    // Nothing else happens: only the flusher thread can write the line.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lock(&mem).is_empty() {
        assert!(Instant::now() < deadline, "the line was never flushed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(lock(&mem).as_slice(), line(&entry()).as_bytes());
    // The writer's buffer is still registered while it lives.
    drop(w);
    log.flush();
    log.flush();
    assert_eq!(lock(&log.shared.as_ref().unwrap().buffers).len(), 0);
}

#[test]
fn a_file_log_appends_and_off_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "earlier\n").unwrap();
    let mut log = AccessLog::open(&AccessLogTarget::File(path.clone())).unwrap();
    let mut w = log.writer();
    w.log(&entry());
    w.flush();
    w.log(&entry());
    drop(w);
    log.shutdown();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        format!("earlier\n{}{}", line(&entry()), line(&entry()))
    );

    let off = AccessLog::open(&AccessLogTarget::Off).unwrap();
    assert!(!off.is_enabled());
    let mut w = off.writer();
    w.log(&entry());
    w.flush();

    // A rotation: the file is moved away, the log reopened.
    let log = AccessLog::open(&AccessLogTarget::File(path.clone())).unwrap();
    let mut w = log.writer();
    w.log(&entry());
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    log.reopen().unwrap();
    w.log(&Entry {
        status: 404,
        ..entry()
    });
    drop(w);
    drop(log);
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.ends_with(&format!("{}{}", line(&entry()), line(&entry()))));
    assert_eq!(old.lines().count(), 4);
    let new = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        new,
        line(&Entry {
            status: 404,
            ..entry()
        })
    );

    let bad = AccessLog::open(&AccessLogTarget::File(dir.path().join("no/such/file")));
    assert!(bad.is_err());
}

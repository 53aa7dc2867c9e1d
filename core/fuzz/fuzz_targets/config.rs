//! `cargo +nightly fuzz run config corpus/config seeds/config`: the
//! configuration file parser and validator, as `iolite serve --config FILE`
//! and `iolite check-config FILE` run them (`config::from_str` is
//! `config::check_file` without the read), over the fixture directory
//! `fixture/` (so that relative paths in the seeds exist).
//!
//! The file reader is `read_to_string`: a file that is not UTF-8 is refused
//! with a "cannot read" error before the parser sees it (unit test
//! `a_file_that_is_not_utf8_is_an_error` in core), so only valid UTF-8
//! reaches the parser here.
//!
//! Properties: no panic; an error lists at least one diagnostic; each
//! message is non-empty and one line (check-config prints one problem per
//! line); a diagnostic at a file position names this file, a line within
//! the input's line count and a column within that line (plus one: the end
//! of the line); nothing is reported against a flag (there are none); a
//! configuration that passes is consistent (see `check_config`).
#![no_main]

use std::path::Path;

use iolite_core::config::{self, Config, MAX_WORKERS, Origin};
use libfuzzer_sys::fuzz_target;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixture/iolite.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new(FILE);
    match config::from_str(text, file) {
        Ok(c) => check_config(&c, file),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a diagnostic");
            let lines: Vec<&str> = text.split('\n').collect();
            for d in &errors.0 {
                assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
                assert!(!d.message.contains(['\n', '\r']), "two lines: {d:?}");
                match &d.origin {
                    Origin::At { path, line, column } => {
                        assert_eq!(&**path, file);
                        assert!((1..=lines.len()).contains(line), "{d:?}");
                        let width = lines[line - 1].chars().count();
                        assert!((1..=width + 1).contains(column), "{d:?}");
                    }
                    Origin::File(path) => assert_eq!(&**path, file),
                    Origin::Default => {}
                    Origin::Flag(flag) => panic!("{flag} reported without flags: {d:?}"),
                }
            }
            assert_eq!(errors.to_string().lines().count(), errors.0.len());
        }
    }
});

/// What the validator promises about a configuration it accepts.
fn check_config(c: &Config, file: &Path) {
    assert_eq!(c.source.as_deref(), Some(file));
    assert!(!c.listeners.is_empty());
    assert!((1..=MAX_WORKERS).contains(&c.workers));
    assert!(c.root.is_dir(), "{:?}", c.root);
    assert!(!c.index.is_empty());
    assert!(c.limits.max_uri <= c.limits.max_head);
    assert!(c.limits.max_headers >= 1 && c.limits.max_uri >= 1);
    check_headers(&c.headers);
    check_headers(&c.headers_default);
    for l in &c.locations {
        assert!(l.prefix.starts_with('/'));
        assert!(l.prefix == "/" || !l.prefix.ends_with('/'));
        check_headers(&l.headers);
        check_headers(&l.headers_default);
        assert_eq!(
            c.location_for(&l.prefix).map(|x| &x.prefix),
            Some(&l.prefix)
        );
    }
    for m in &c.modules {
        assert!(m.path.is_file());
        assert!(m.processes_max >= 1 && m.processes_min <= m.processes_max);
    }
    let _ = c.summary();
    let _ = c.not_yet_supported();
}

/// A `headers` table: token names, each once (case ignored), none the
/// server writes itself, values without control characters but tab.
fn check_headers(table: &[(String, String)]) {
    for (i, (name, value)) in table.iter().enumerate() {
        assert!(!name.is_empty() && !name.contains([':', ' ', '\r', '\n']));
        assert!(
            !value.chars().any(|ch| ch.is_control() && ch != '\t'),
            "{value:?}"
        );
        assert!(
            table[..i].iter().all(|(n, _)| !n.eq_ignore_ascii_case(name)),
            "{name} twice"
        );
        for own in ["content-length", "transfer-encoding", "connection", "date", "server"] {
            assert!(!name.eq_ignore_ascii_case(own), "{name}");
        }
    }
}

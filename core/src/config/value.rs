//! Parsers and printers for the value forms the configuration shares between
//! the file and the flags: byte sizes, durations, socket addresses, mount
//! prefixes.

use std::net::SocketAddr;
use std::time::Duration;

/// Parses a byte size: a whole number with an optional binary suffix
/// (`K`, `M`, `G`, `T`, case-insensitive, optionally followed by `B` or `iB`),
/// such as `256M`, `64K`, `1GiB` or `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    let expected = "expected a number of bytes with an optional suffix K, M, G or T (such as 256M)";
    if digits.is_empty() {
        return Err(format!("bad size {text:?}: {expected}"));
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("bad size {text:?}: {expected}")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("size {text:?} is too large"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration: a whole number with a unit `ms`, `s`, `m` or `h`
/// (`250ms`, `1s`, `5m`), or a bare `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    let expected = "expected a whole number with a unit ms, s, m or h (such as 1s or 250ms)";
    if digits.is_empty() {
        return Err(format!("bad duration {text:?}: {expected}"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?} is too long"))?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" if n == 0 => 0,
        _ => return Err(format!("bad duration {text:?}: {expected}")),
    };
    let millis = n
        .checked_mul(millis_per)
        .filter(|&ms| ms <= 365 * 24 * 3_600_000)
        .ok_or_else(|| format!("duration {text:?} is too long (a year at most)"))?;
    Ok(Duration::from_millis(millis))
}

/// Parses `IP:PORT` (`127.0.0.1:8080`, `[::1]:8080`; port 0 picks a free
/// port). Host names are refused: a listener binds an address, not a name.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse::<SocketAddr>().map_err(|_| {
        format!("bad address {text:?}: expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080")
    })
}

/// Checks a URL path prefix for a location or a mount: it starts with `/`,
/// holds no `..`, `.` or empty segment, no `?`, `#`, `%`, whitespace or
/// control characters. A trailing `/` is dropped (except for `/` itself) so
/// `/app` and `/app/` name the same mount.
pub fn parse_prefix(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("bad prefix {text:?}: it must start with '/'"));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%' | '\\'))
    {
        return Err(format!(
            "bad prefix {text:?}: {c:?} is not allowed in a prefix"
        ));
    }
    let trimmed = if text.len() > 1 {
        text.strip_suffix('/').unwrap_or(text)
    } else {
        text
    };
    if trimmed != "/"
        && trimmed[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "bad prefix {text:?}: empty, '.' and '..' segments are not allowed"
        ));
    }
    Ok(trimmed.to_owned())
}

/// `268435456` → `256 MiB`; exact multiples print without decimals.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1s`, `250ms`, `5m`, `0s`: the shortest exact form `parse_duration` reads back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let table: &[(&str, Result<u64, ()>)] = &[
            ("0", Ok(0)),
            ("4096", Ok(4096)),
            ("64K", Ok(64 << 10)),
            ("64k", Ok(64 << 10)),
            ("256M", Ok(256 << 20)),
            ("256MiB", Ok(256 << 20)),
            ("1G", Ok(1 << 30)),
            ("1gb", Ok(1 << 30)),
            ("2T", Ok(2 << 40)),
            ("12B", Ok(12)),
            ("", Err(())),
            ("M", Err(())),
            ("12X", Err(())),
            ("1.5G", Err(())),
            ("-1K", Err(())),
            ("99999999999999999999", Err(())),
            ("16777216T", Err(())),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text).map_err(|_| ()), *want, "{text:?}");
        }
    }

    #[test]
    fn durations() {
        let table: &[(&str, Result<u64, ()>)] = &[
            ("0", Ok(0)),
            ("0s", Ok(0)),
            ("250ms", Ok(250)),
            ("1s", Ok(1000)),
            ("5m", Ok(300_000)),
            ("2h", Ok(7_200_000)),
            ("1", Err(())),
            ("s", Err(())),
            ("1 fortnight", Err(())),
            ("1.5s", Err(())),
            ("-1s", Err(())),
            ("100000h", Err(())),
        ];
        for (text, want) in table {
            assert_eq!(
                parse_duration(text)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|_| ()),
                *want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("/").unwrap(), "/");
        assert_eq!(parse_prefix("/app/").unwrap(), "/app");
        assert_eq!(parse_prefix("/a/b").unwrap(), "/a/b");
        for bad in [
            "app", "", "/a//b", "/a/../b", "/./x", "/a b", "/a?x", "/%2e",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        for d in ["0s", "250ms", "1s", "90s", "5m", "2h"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(100), "100 B");
    }
}

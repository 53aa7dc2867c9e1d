//! `/status`: the figures of `/metrics` as a small HTML page a person can
//! read at a glance. Inline CSS, no script, no external assets; the page
//! reloads itself every 5 seconds with a meta refresh.

use std::fmt::Write as _;

use crate::config::format_size;
use crate::metrics::{Snapshot, StatusTable};

const STYLE: &str = "\
body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:46em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .8em}h2{font-size:1.05em;margin:1.4em 0 .4em;color:#555}\
.cards{display:flex;flex-wrap:wrap;gap:.6em}\
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:8.5em}\
.card b{display:block;font-size:1.45em;font-variant-numeric:tabular-nums}\
.card span{color:#666;font-size:.85em}\
.c2 b{color:#1a7f37}.c3 b{color:#0969da}.c4 b{color:#9a6700}.c5 b{color:#cf222e}\
.copied{background:#ffebe9;border-color:#cf222e}.copied b{color:#cf222e}\
.zero b{color:#1a7f37}\
table{border-collapse:collapse;margin-top:.3em}td,th{padding:.15em .9em .15em 0;text-align:right;font-variant-numeric:tabular-nums}\
th{text-align:left;color:#555;font-weight:normal}\
footer{margin-top:2em;color:#888;font-size:.85em}";

/// The status page for `s`.
pub fn render_html(s: &Snapshot) -> String {
    render_html_with(s, &[])
}

/// The status page for `s`, with other crates' `tables` after the
/// server's own figures.
pub fn render_html_with(s: &Snapshot, tables: &[StatusTable]) -> String {
    let mut h = String::with_capacity(4096);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"5\">\n<title>iolite status</title>\n<style>",
    );
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n<h1>iolite status</h1>\n");

    let total = s.requests_total();
    let mut classes = [0u64; 5];
    for &(status, n) in &s.requests_by_status {
        if let Some(c) = classes.get_mut(usize::from(status / 100).wrapping_sub(1)) {
            *c += n;
        }
    }
    h.push_str("<h2>Requests</h2>\n<div class=\"cards\">\n");
    card(&mut h, "", &group(total), "requests");
    for (i, n) in classes.iter().enumerate() {
        if i == 0 && *n == 0 {
            continue; // 1xx is rare; its card only when it happened.
        }
        let class = format!("c{}", i + 1);
        let label = format!("{}xx{}", i + 1, share(*n, total));
        card(&mut h, &class, &group(*n), &label);
    }
    h.push_str("</div>\n");
    if !s.requests_by_status.is_empty() {
        h.push_str("<table>\n<tr><th>status</th><th>responses</th></tr>\n");
        for (status, n) in &s.requests_by_status {
            let _ = writeln!(h, "<tr><th>{status}</th><td>{}</td></tr>", group(*n));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Traffic</h2>\n<div class=\"cards\">\n");
    card(
        &mut h,
        "",
        &format_size(s.bytes_sent),
        &format!("sent ({} bytes)", group(s.bytes_sent)),
    );
    card(&mut h, "", &group(s.connections_open), "connections open");
    card(
        &mut h,
        "",
        &group(s.connections_total),
        "connections accepted",
    );
    h.push_str("</div>\n");

    h.push_str("<h2>Cache</h2>\n<div class=\"cards\">\n");
    let lookups = s.cache_hits + s.cache_misses;
    let ratio = if lookups == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", s.cache_hits as f64 * 100.0 / lookups as f64)
    };
    card(&mut h, "", &ratio, "hit ratio");
    card(&mut h, "", &group(s.cache_hits), "hits");
    card(&mut h, "", &group(s.cache_misses), "misses");
    card(
        &mut h,
        "",
        &format_size(s.cache_bytes),
        &format!("held in {} entries", group(s.cache_entries)),
    );
    card(
        &mut h,
        "",
        &group(s.cache_evictions),
        &format!("evictions ({})", format_size(s.cache_evicted_bytes)),
    );
    h.push_str("</div>\n");

    h.push_str("<h2>Zero copy</h2>\n<div class=\"cards\">\n");
    if s.body_bytes_copied == 0 {
        card(&mut h, "zero", "0", "body bytes copied in user space");
    } else {
        card(
            &mut h,
            "copied",
            &format_size(s.body_bytes_copied),
            &format!(
                "body bytes copied in user space ({})",
                group(s.body_bytes_copied)
            ),
        );
    }
    h.push_str("</div>\n");

    for t in tables {
        let _ = writeln!(h, "<h2>{}</h2>", escape(&t.title));
        if !t.note.is_empty() {
            let _ = writeln!(h, "<p>{}</p>", escape(&t.note));
        }
        h.push_str("<table>\n<tr>");
        for c in &t.columns {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr>\n");
        for row in &t.rows {
            h.push_str("<tr>");
            for cell in row {
                let _ = write!(h, "<td>{}</td>", escape(cell));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }

    h.push_str(
        "<footer>The same figures, machine-readable: <a href=\"/metrics\">/metrics</a>. \
         This page reloads every 5 seconds.</footer>\n</body>\n</html>\n",
    );
    h
}

fn card(h: &mut String, class: &str, value: &str, label: &str) {
    let class = if class.is_empty() {
        "card".to_owned()
    } else {
        format!("card {class}")
    };
    let _ = writeln!(
        h,
        "<div class=\"{class}\"><b>{value}</b><span>{label}</span></div>"
    );
}

/// Text as HTML: `&`, `<`, `>` and quotes escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// ` · 12.5%` of `total`, or nothing when there is no total.
fn share(n: u64, total: u64) -> String {
    let pct = n as f64 * 100.0 / total as f64;
    if total == 0 {
        String::new()
    } else if n > 0 && pct < 0.05 {
        " · &lt;0.1%".to_owned()
    } else {
        format!(" · {pct:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Snapshot {
        Snapshot {
            requests_by_status: vec![(200, 1_234_560), (206, 40), (304, 300), (404, 99), (503, 1)],
            bytes_sent: 3 << 30,
            connections_open: 64,
            connections_total: 1_000_001,
            cache_hits: 3,
            cache_misses: 1,
            cache_evictions: 12,
            cache_evicted_bytes: 6 << 20,
            cache_bytes: 200 << 20,
            cache_entries: 2_000,
            body_bytes_copied: 0,
            ..Snapshot::default()
        }
    }

    #[test]
    fn shows_every_figure() {
        let page = render_html(&busy());
        for needle in [
            "<b>1,235,000</b><span>requests</span>",
            "<div class=\"card c2\"><b>1,234,600</b><span>2xx · 100.0%</span>",
            "<div class=\"card c3\"><b>300</b><span>3xx · &lt;0.1%</span>",
            "<div class=\"card c4\"><b>99</b><span>4xx · &lt;0.1%</span>",
            "<div class=\"card c5\"><b>1</b><span>5xx · &lt;0.1%</span>",
            "<tr><th>206</th><td>40</td></tr>",
            "<b>3 GiB</b><span>sent (3,221,225,472 bytes)</span>",
            "<b>64</b><span>connections open</span>",
            "<b>1,000,001</b><span>connections accepted</span>",
            "<b>75.0%</b><span>hit ratio</span>",
            "<b>200 MiB</b><span>held in 2,000 entries</span>",
            "<b>12</b><span>evictions (6 MiB)</span>",
            "<div class=\"card zero\"><b>0</b><span>body bytes copied in user space</span>",
        ] {
            assert!(page.contains(needle), "missing {needle:?} in\n{page}");
        }
        assert!(!page.contains("card copied"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn copied_bytes_are_highlighted_and_an_idle_server_renders() {
        let page = render_html(&Snapshot {
            body_bytes_copied: 1536,
            ..busy()
        });
        assert!(page.contains(
            "<div class=\"card copied\"><b>1.5 KiB</b><span>body bytes copied in user space (1,536)</span>"
        ));
        let idle = render_html(&Snapshot::default());
        assert!(idle.contains("<b>–</b><span>hit ratio</span>"));
        assert!(idle.contains("<b>0</b><span>2xx</span>"));
        assert!(!idle.contains("1xx"));
        let early = render_html(&Snapshot {
            requests_by_status: vec![(100, 1), (200, 3)],
            ..Snapshot::default()
        });
        assert!(early.contains("<b>1</b><span>1xx · 25.0%</span>"));
        assert!(early.contains("<b>3</b><span>2xx · 75.0%</span>"));
        assert!(!idle.contains("<table>"));
        // Tags balance (a cheap well-formedness check).
        for page in [&page, &idle] {
            for tag in [
                "div", "b", "span", "h1", "h2", "table", "tr", "th", "td", "style", "footer",
            ] {
                let open = page.matches(&format!("<{tag}>")).count()
                    + page.matches(&format!("<{tag} ")).count();
                let close = page.matches(&format!("</{tag}>")).count();
                assert_eq!(open, close, "<{tag}> in\n{page}");
            }
        }
    }

    #[test]
    fn other_crates_tables_come_after_the_figures_escaped() {
        let tables = [StatusTable {
            title: "Cluster <3>".into(),
            note: "node a & b".into(),
            columns: vec!["name", "state"],
            rows: vec![
                vec!["n1".into(), "alive".into()],
                vec!["<script>".into(), "\"down\"".into()],
            ],
        }];
        let page = render_html_with(&busy(), &tables);
        let at = page
            .find("<h2>Cluster &lt;3&gt;</h2>")
            .expect("the table's heading");
        assert!(at > page.find("<h2>Zero copy</h2>").unwrap());
        for needle in [
            "<p>node a &amp; b</p>",
            "<tr><th>name</th><th>state</th></tr>",
            "<tr><td>n1</td><td>alive</td></tr>",
            "<tr><td>&lt;script&gt;</td><td>&quot;down&quot;</td></tr>",
        ] {
            assert!(page.contains(needle), "missing {needle:?} in\n{page}");
        }
        assert!(!page.contains("<script"));
        assert_eq!(render_html(&busy()), render_html_with(&busy(), &[]));
    }

    #[test]
    fn groups_digits() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(group(n), want);
        }
    }
}

//! The TOML walker: reads a configuration file into a [`Draft`], reporting
//! every syntax error, unknown key, wrong type and bad value with its
//! position instead of stopping at the first.

use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::diag::LineIndex;
use super::validate::Draft;
use super::{Diagnostic, Origin, value};

pub(super) type Val<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

/// Reads `text` (the content of `path`) into `draft`, adding a diagnostic per
/// problem. Returns false when the file has syntax errors: those are all
/// reported and nothing of the file is applied.
pub(crate) fn apply(
    draft: &mut Draft,
    path: &Path,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let mut cx = Cx {
        lines: LineIndex::new(text),
        path: Arc::from(path),
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        diags,
    };
    if !syntax.is_empty() {
        for e in &syntax {
            let span = e.span().unwrap_or(0..0);
            let message = match (e.message(), text.get(span.clone())) {
                ("duplicate key", Some(key)) if !key.is_empty() => {
                    format!("duplicate key `{}`", key.escape_debug())
                }
                (m, _) => m.to_owned(),
            };
            cx.error(span, format!("syntax error: {message}"));
        }
        return false;
    }
    cx.top(doc.get_ref(), draft);
    true
}

pub(super) struct Cx<'s, 'd> {
    lines: LineIndex<'s>,
    path: Arc<Path>,
    pub(super) base: PathBuf,
    diags: &'d mut Vec<Diagnostic>,
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Cx<'_, '_> {
    pub(super) fn origin(&self, span: &Range<usize>) -> Origin {
        let (line, column) = self.lines.position(span.start);
        Origin::At {
            path: self.path.clone(),
            line,
            column,
        }
    }

    pub(super) fn error(&mut self, span: Range<usize>, message: String) {
        let origin = self.origin(&span);
        self.diags.push(Diagnostic { origin, message });
    }

    pub(super) fn bad(&mut self, v: &Val<'_>, key: &str, problem: impl Display) {
        self.error(v.span(), format!("{key}: {problem}"));
    }

    pub(super) fn wrong_type(&mut self, v: &Val<'_>, key: &str, expected: &str) {
        let found = type_name(v.get_ref());
        self.bad(v, key, format!("expected {expected}, found {found}"));
    }

    pub(super) fn unknown(&mut self, k: &Key<'_>, table: &str, allowed: &[&str]) {
        // Escaped: a quoted key may hold a line break or a control
        // character, and each diagnostic must stay one printable line.
        let name = k.get_ref().escape_debug().to_string();
        let place = if table.is_empty() {
            "unknown top-level key".to_owned()
        } else {
            format!("unknown key in {table}:")
        };
        let hint = match closest(&name, allowed) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("expected one of: {}", allowed.join(", ")),
        };
        self.error(k.span(), format!("{place} `{name}` ({hint})"));
    }

    pub(super) fn missing(&mut self, table: &Val<'_>, header: &str, key: &str) {
        self.error(
            table.span(),
            format!("{header}: missing required key `{key}`"),
        );
    }

    pub(super) fn string<'v>(&mut self, v: &'v Val<'_>, key: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(v, key, "a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, v: &Val<'_>, key: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, key, "true or false");
                None
            }
        }
    }

    pub(super) fn integer(&mut self, v: &Val<'_>, key: &str) -> Option<i128> {
        match v.get_ref() {
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.bad(v, key, "the number is too large");
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "an integer");
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub(super) fn count(&mut self, v: &Val<'_>, key: &str, min: u64, max: u64) -> Option<u64> {
        let n = self.integer(v, key)?;
        if n < i128::from(min) {
            self.bad(v, key, format!("must be at least {min}, found {n}"));
            None
        } else if n > i128::from(max) {
            self.bad(v, key, format!("must be at most {max}, found {n}"));
            None
        } else {
            u64::try_from(n).ok()
        }
    }

    /// A byte size: a non-negative integer or a string such as "256M".
    pub(super) fn size(&mut self, v: &Val<'_>, key: &str) -> Option<u64> {
        match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(v, key)?;
                if n < 0 {
                    self.bad(v, key, format!("a size cannot be negative, found {n}"));
                    return None;
                }
                match u64::try_from(n) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.bad(v, key, "the size is too large");
                        None
                    }
                }
            }
            DeValue::String(s) => match value::parse_size(s) {
                Ok(n) => Some(n),
                Err(problem) => {
                    self.bad(v, key, problem);
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "a size such as \"256M\" or a number of bytes");
                None
            }
        }
    }

    /// A size that must fit a `usize` and be at least 1.
    pub(super) fn size_usize(&mut self, v: &Val<'_>, key: &str) -> Option<usize> {
        let n = self.size(v, key)?;
        if n == 0 {
            self.bad(v, key, "must be at least 1 byte");
            return None;
        }
        usize::try_from(n).ok()
    }

    pub(super) fn duration(&mut self, v: &Val<'_>, key: &str) -> Option<Duration> {
        match v.get_ref() {
            DeValue::String(s) => match value::parse_duration(s) {
                Ok(d) => Some(d),
                Err(problem) => {
                    self.bad(v, key, problem);
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "a duration such as \"1s\" or \"250ms\"");
                None
            }
        }
    }

    /// A duration that must not be zero.
    pub(super) fn positive_duration(&mut self, v: &Val<'_>, key: &str) -> Option<Duration> {
        let d = self.duration(v, key)?;
        if d.is_zero() {
            self.bad(v, key, "must be longer than 0");
            return None;
        }
        Some(d)
    }

    /// A path, relative to the file's directory unless absolute.
    pub(super) fn path(&mut self, v: &Val<'_>, key: &str) -> Option<PathBuf> {
        let s = self.string(v, key)?;
        if s.is_empty() {
            self.bad(v, key, "the path is empty");
            return None;
        }
        Some(self.base.join(s))
    }

    pub(super) fn prefix(&mut self, v: &Val<'_>, key: &str) -> Option<String> {
        let s = self.string(v, key)?;
        match value::parse_prefix(s) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.bad(v, key, problem);
                None
            }
        }
    }

    /// One of `choices` (exact, lower case).
    pub(super) fn choice<T: Copy>(
        &mut self,
        v: &Val<'_>,
        key: &str,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(v, key)?;
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        self.bad(
            v,
            key,
            format!("unknown {what} {s:?}: expected {}", or_list(&names)),
        );
        None
    }

    pub(super) fn table<'v, 'i>(&mut self, v: &'v Val<'i>, key: &str) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, key, &format!("a table ([{key}])"));
                None
            }
        }
    }

    /// The tables of an array of tables (`[[key]]`).
    pub(super) fn tables<'v, 'i>(
        &mut self,
        v: &'v Val<'i>,
        key: &str,
    ) -> Vec<(&'v Val<'i>, &'v DeTable<'i>)> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(v, key, &format!("an array of tables ([[{key}]])"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((item, t)),
                _ => self.wrong_type(item, key, &format!("a table ([[{key}]])")),
            }
        }
        out
    }

    /// A string or an array of strings, each with its span.
    pub(super) fn strings<'v>(
        &mut self,
        v: &'v Val<'_>,
        key: &str,
    ) -> Option<Vec<(&'v str, Range<usize>)>> {
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.as_ref(), v.span())]),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.as_ref(), item.span())),
                        _ => {
                            self.wrong_type(item, key, "a string");
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => {
                self.wrong_type(v, key, "a string or an array of strings");
                None
            }
        }
    }

    /// Index file names: plain names, no `/`.
    pub(super) fn index(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<String>> {
        let names = self.strings(v, key)?;
        if names.is_empty() {
            self.bad(v, key, "at least one index file name is needed");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (name, span) in names {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                self.error(
                    span,
                    format!("{key}: bad index file name {name:?}: a plain file name is needed"),
                );
                ok = false;
            } else {
                out.push(name.to_owned());
            }
        }
        ok.then_some(out)
    }
}

/// The allowed key nearest to `name`, if it is a likely typo (at most two
/// edits away, and fewer edits than half its length).
fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|&(d, k)| d <= 2 && d * 2 < k.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// RFC 9110 token characters (header field names).
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    pub(super) fn typos_find_their_key() {
        let keys = &["size", "revalidate", "large_file_threshold", "policy"];
        assert_eq!(super::closest("sise", keys), Some("size"));
        assert_eq!(super::closest("revalidte", keys), Some("revalidate"));
        assert_eq!(super::closest("polcy", keys), Some("policy"));
        assert_eq!(super::closest("zzz", keys), None);
        assert_eq!(super::closest("", keys), None);
        assert_eq!(super::edit_distance("kitten", "sitting"), 3);
        assert_eq!(super::edit_distance("", "abc"), 3);
        assert_eq!(super::edit_distance("é", "e"), 1);
    }
}

//! Where a setting came from, and the errors reported against it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Where a setting came from: the embedded defaults, a command-line flag, or
/// a position in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded default.
    Default,
    /// A command-line flag, such as `--listen`.
    Flag(&'static str),
    /// A configuration file as a whole (it could not be read, say).
    File(Arc<Path>),
    /// A position in a configuration file; line and column count from 1,
    /// the column in characters.
    At {
        path: Arc<Path>,
        line: usize,
        column: usize,
    },
}

impl Origin {
    pub(crate) fn sort_key(&self) -> (u8, usize, usize) {
        match self {
            Origin::File(_) => (0, 0, 0),
            Origin::At { line, column, .. } => (0, *line, *column),
            Origin::Flag(_) => (1, 0, 0),
            Origin::Default => (2, 0, 0),
        }
    }

    /// `LINE:COLUMN` for a file position, used to point at an earlier
    /// definition; the flag name or "the defaults" otherwise.
    pub(crate) fn short(&self) -> String {
        match self {
            Origin::At { line, column, .. } => format!("{line}:{column}"),
            Origin::File(p) => p.display().to_string(),
            Origin::Flag(f) => (*f).to_owned(),
            Origin::Default => "the defaults".to_owned(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default settings"),
            Origin::Flag(flag) => f.write_str(flag),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::At { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
        }
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// Every problem found in a configuration (never empty), ordered by file
/// position, then flags, then defaults. `Display` prints one per line as
/// `FILE:LINE:COLUMN: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl ConfigErrors {
    pub(crate) fn sorted(mut list: Vec<Diagnostic>) -> Self {
        list.sort_by_key(|d| d.origin.sort_key());
        list.dedup();
        ConfigErrors(list)
    }

    /// The messages, one `Display` line each.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Turns byte offsets of one source text into 1-based line and column
/// (in characters).
#[derive(Debug)]
pub(crate) struct LineIndex<'s> {
    text: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        // An offset inside a multi-byte character counts as that character.
        let mut end = offset;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let column = self.text[start..end].chars().count() + 1;
        (line + 1, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_from_offsets() {
        let idx = LineIndex::new("ab\ncé\n\nx");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(2), (1, 3));
        assert_eq!(idx.position(3), (2, 1));
        assert_eq!(idx.position(6), (2, 3)); // after the two-byte é
        assert_eq!(idx.position(7), (3, 1));
        assert_eq!(idx.position(8), (4, 1));
        assert_eq!(idx.position(99), (4, 2));
    }
}

//! Diagnostics: one problem in a config or job file, reported as `path:line:col: message`.
//!
//! The `toml` crate gives byte spans; this module turns them into 1-based line and column so
//! every message names the place an editor can jump to.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, naming the key where there is one.
    pub message: String,
    /// Worth saying, not wrong: the file is used all the same (a secret this shell lacks).
    pub warning: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}{}",
            self.path.display(),
            self.line,
            self.col,
            if self.warning { "warning: " } else { "" },
            self.message
        )
    }
}

/// A file's text with its path, for turning spans into [`Diagnostic`]s.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Where the text came from.
    pub path: &'a Path,
    /// The text itself.
    pub text: &'a str,
}

impl<'a> Source<'a> {
    /// Pairs a path with its text.
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text }
    }

    /// A diagnostic at the start of `span` (or at 1:1 without one).
    pub fn at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = span.map(|s| line_col(self.text, s.start)).unwrap_or((1, 1));
        Diagnostic {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
            warning: false,
        }
    }

    /// A warning at the start of `span`: see [`Diagnostic::warning`].
    pub fn warn(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            warning: true,
            ..self.at(span, message)
        }
    }

    /// A diagnostic from a `toml` parse or type error, which carries its own span.
    pub fn from_toml(&self, err: &toml::de::Error) -> Diagnostic {
        // The toml crate's message repeats the span as a code excerpt; the first line is the gist.
        let message = err
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .trim();
        // serde's type errors ("invalid type: string \"four\", expected i64") name no key; the
        // span is the value's, so the key is the one assigned on that line.
        let typed = ["invalid type", "invalid value", "invalid length"]
            .iter()
            .any(|p| message.starts_with(p));
        match err
            .span()
            .and_then(|s| self.key_at(s.start))
            .filter(|_| typed)
        {
            Some(key) => self.at(err.span(), format!("`{key}`: {message}")),
            None => self.at(err.span(), message.to_string()),
        }
    }

    /// The key assigned a value starting at byte `pos`, dotted with its table's name
    /// (`load.concurrency`): `key = value` on the value's line, under the nearest `[table]` or
    /// `[[table]]` header above it. `None` when the value is not on its key's line.
    fn key_at(&self, pos: usize) -> Option<String> {
        let pos = (0..=pos.min(self.text.len()))
            .rev()
            .find(|p| self.text.is_char_boundary(*p))?;
        let before = &self.text[..pos];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let (key, _) = before[line_start..].split_once('=')?;
        let key = key.trim().trim_matches('"');
        if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
            return None;
        }
        let table = before[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim());
        Some(match table {
            Some(t) if !t.is_empty() => format!("{t}.{key}"),
            _ => key.to_string(),
        })
    }
}

/// A diagnostic for a whole file at 1:1 (unreadable, empty, binary, too big).
pub fn whole_file(path: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        path: path.to_path_buf(),
        line: 1,
        col: 1,
        message: message.into(),
        warning: false,
    }
}

/// 1-based line and character column of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    // Snap to a char boundary: spans from the parser always are, but be safe on odd input.
    let pos = (0..=pos)
        .rev()
        .find(|p| text.is_char_boundary(*p))
        .unwrap_or(0);
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = text[line_start..pos].chars().count() + 1;
    (line, col)
}

/// Reads a file as UTF-8 text no larger than `max_bytes`, or says why not.
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String, Diagnostic> {
    let meta =
        std::fs::metadata(path).map_err(|e| whole_file(path, format!("cannot read: {e}")))?;
    if meta.len() > max_bytes {
        return Err(whole_file(
            path,
            format!(
                "file is {} bytes; the limit is {} bytes",
                meta.len(),
                max_bytes
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| whole_file(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..good]).into_owned();
        let (line, col) = line_col(&text, good);
        Diagnostic {
            path: path.to_path_buf(),
            line,
            col,
            message: format!("not UTF-8 text (a binary file?): invalid byte at offset {good}"),
            warning: false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_chars() {
        let t = "a = 1\nbé = x\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        // 'é' is two bytes: the byte after it is column 3.
        assert_eq!(line_col(t, 9), (2, 3));
        assert_eq!(line_col(t, 1000), (3, 1));
    }

    #[test]
    fn a_type_error_names_its_key() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Load {
            concurrency: i64,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Job {
            targets: Vec<String>,
            load: Load,
        }
        let path = Path::new("j.toml");
        let diag = |text: &str| {
            let e = toml::from_str::<Job>(text).unwrap_err();
            Source::new(path, text).from_toml(&e).to_string()
        };
        assert_eq!(
            diag("targets = [\"a/b\"]\n[load]\nconcurrency = \"four\"\n"),
            "j.toml:3:15: `load.concurrency`: invalid type: string \"four\", expected i64"
        );
        let d = diag("targets = \"a/b\"\n[load]\nconcurrency = 4\n");
        assert!(d.starts_with("j.toml:1:11: `targets`: invalid type"), "{d}");
        // Not a type error: the message is the parser's own.
        let d = diag("targets = [\n[load]\n");
        assert_eq!(d, "j.toml:2:7: unclosed array, expected `]`");
    }

    #[test]
    fn display_is_path_line_col_message() {
        let d = whole_file(Path::new("jobs/x.toml"), "empty");
        assert_eq!(d.to_string(), "jobs/x.toml:1:1: empty");
    }
}

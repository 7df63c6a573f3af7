//! Config errors and their rustc-style rendering.
//!
//! A [`ConfigError`] carries the file, a 1-based line and column, the dotted key path, the
//! message, an optional hint and the source line it points into; [`ConfigErrors`] is every
//! error found in one file. Rendered, one error reads:
//!
//! ```text
//! hale.toml:3:1: error: components.web.comand: unknown key
//!   |
//! 3 | comand = ["oops"]
//!   | ^^^^^^
//!   help: did you mean `command`? valid keys: command, shell, ...
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// Where in the file; `None` when the file could not be read at all.
    pub position: Option<Position>,
    /// Dotted key path, e.g. `components.web.restart.policy`; empty when not about a key.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
    /// The source line the error points into (without its newline), if shown.
    pub source_line: Option<String>,
    /// Characters to underline from `position.column` (at least 1).
    pub width: usize,
}

impl ConfigError {
    /// The file could not be read.
    pub(crate) fn unreadable(path: &Path, err: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        let help = match err.kind() {
            ErrorKind::NotFound => Some("name another file with `-c FILE`".to_string()),
            ErrorKind::IsADirectory => {
                Some(format!("`-c` names a file, such as {}", path.join("hale.toml").display()))
            }
            ErrorKind::PermissionDenied => {
                Some("make the file readable by this user, or run hale as its owner".to_string())
            }
            _ => None,
        };
        ConfigError {
            file: path.to_path_buf(),
            position: None,
            key: String::new(),
            message: format!("cannot read the config file: {err}"),
            help,
            source_line: None,
            width: 1,
        }
    }

    /// The file is larger than `limit` bytes: `size` when known (a regular file), else it was
    /// cut short while reading (a device or a pipe that keeps writing).
    pub(crate) fn too_large(path: &Path, size: Option<u64>, limit: u64) -> Self {
        let mib = |n: u64| format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0));
        let what = match size {
            Some(n) => format!("the file is {}", mib(n)),
            None => format!("the file is over {}", mib(limit)),
        };
        ConfigError {
            file: path.to_path_buf(),
            position: None,
            key: String::new(),
            message: format!("{what}: a config file may be at most {}", mib(limit)),
            help: Some(
                "is -c naming the right file? split the components among several files if it is"
                    .to_string(),
            ),
            source_line: None,
            width: 1,
        }
    }

    /// The file is not UTF-8; `valid` bytes of `bytes` are. `key` is the table (and key) the
    /// first bad byte is in, when that can be told.
    pub(crate) fn not_utf8(
        path: &Path,
        key: String,
        lossy: &str,
        bytes: &[u8],
        valid: usize,
    ) -> Self {
        let prefix = bytes.get(..valid).unwrap_or_default();
        let line = prefix.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = prefix.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column =
            String::from_utf8_lossy(prefix.get(line_start..).unwrap_or_default()).chars().count()
                + 1;
        // A UTF-16 file (Windows editors and PowerShell's `>` write one) starts with its byte
        // order mark; say so, since the fix is the same but the cause is otherwise a mystery.
        let (message, help) =
            if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
                (
                    "the file is UTF-16 (it starts with a UTF-16 byte order mark), not UTF-8"
                        .to_string(),
                    "save the file as UTF-8 (in PowerShell: Out-File -Encoding utf8)".to_string(),
                )
            } else {
                let byte = bytes.get(valid).copied().unwrap_or_default();
                (
                format!("the file is not valid UTF-8 (byte {valid} is 0x{byte:02x})"),
                "save the file as UTF-8, or write the character as a \\u escape inside a string"
                    .to_string(),
            )
            };
        ConfigError {
            file: path.to_path_buf(),
            position: Some(Position { line, column }),
            key,
            message,
            help: Some(help),
            source_line: lossy.lines().nth(line - 1).map(str::to_string),
            width: 1,
        }
    }
}

/// `line` with each control character but tab replaced by its visible symbol (U+2400 and on:
/// NUL shows as `␀`), one character for one, so that the caret stays under its column and no
/// raw control byte reaches the terminal.
fn visible(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '\t' => c,
            '\0'..='\x1f' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
            '\x7f' => '\u{2421}',
            _ => c,
        })
        .collect()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.position {
            write!(f, ":{}:{}", pos.line, pos.column)?;
        }
        write!(f, ": error: ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(pos), Some(src)) = (self.position, &self.source_line) {
            let num = pos.line.to_string();
            let pad = " ".repeat(num.len());
            // Keep tabs so the caret lines up under the same characters.
            let lead: String = src
                .chars()
                .take(pos.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let src = visible(src);
            write!(f, "\n{pad} |\n{num} | {src}\n{pad} | {lead}{}", "^".repeat(self.width.max(1)))?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one config file (never empty when returned by `load`/`parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The errors, in file order.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn single(error: ConfigError) -> Self {
        ConfigErrors { errors: vec![error] }
    }

    /// How many errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// A one-line summary such as `hale.toml: 3 errors`.
    pub fn summary(&self) -> String {
        let file = self.errors.first().map(|e| e.file.display().to_string()).unwrap_or_default();
        match self.errors.len() {
            1 => format!("{file}: 1 error"),
            n => format!("{file}: {n} errors"),
        }
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// Each error, separated by a blank line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.errors.iter().enumerate() {
            if i > 0 {
                write!(f, "\n\n")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Byte offsets to lines and columns of one text.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 0-based line index of byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// The text of 0-based line `idx`, without its line ending, and its start offset.
    fn line_text(&self, idx: usize) -> (usize, &'a str) {
        let start = self.starts.get(idx).copied().unwrap_or(self.text.len());
        let end = self.starts.get(idx + 1).map_or(self.text.len(), |next| next.saturating_sub(1));
        let line = self.text.get(start..end).unwrap_or_default();
        (start, line.strip_suffix('\r').unwrap_or(line))
    }

    /// Position, source line and underline width for a byte span.
    pub(crate) fn locate(&self, span: &Range<usize>) -> (Position, String, usize) {
        let offset = span.start.min(self.text.len());
        let idx = self.line_of(offset);
        let (start, line) = self.line_text(idx);
        let before = offset.saturating_sub(start);
        let column = match line.get(..before) {
            Some(s) => s.chars().count() + 1,
            None => before.min(line.len()) + 1,
        };
        let width = match line.get(before.min(line.len())..) {
            Some(rest) => {
                let len = span.end.saturating_sub(offset);
                let mut taken = 0;
                let mut chars = 0;
                for c in rest.chars() {
                    if taken >= len {
                        break;
                    }
                    taken += c.len_utf8();
                    chars += 1;
                }
                chars.max(1)
            }
            None => 1,
        };
        (Position { line: idx + 1, column }, line.to_string(), width)
    }
}

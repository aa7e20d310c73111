//! The one error type of this crate, and the helpers that place an error in
//! the manifest text (byte span → 1-based line and column).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Hint attached to every "unknown field" error.
const UNKNOWN_FIELD_HINT: &str =
    "check the spelling against the Spin manifest v2 reference, or remove the field";

/// Hint for a key given twice.
const DUPLICATE_KEY_HINT: &str =
    "each key and table may appear only once; remove or rename the duplicate";

/// A manifest that cannot be used, with the place of the mistake and how to
/// fix it.
///
/// Displayed as `{file}:{line}:{column}: {message}`, followed by a second line
/// `  hint: {hint}` when there is a hint. An error that is not tied to a place
/// in the text (the file could not be read) has `line == 0 && column == 0` and
/// is displayed as `{file}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file, as passed to [`parse_file`](crate::parse_file) or
    /// [`parse_str`](crate::parse_str).
    pub file: PathBuf,
    /// 1-based line of the offending key or value (0 if not tied to the text).
    pub line: usize,
    /// 1-based column, counted in characters (0 if not tied to the text).
    pub column: usize,
    /// What is wrong, as a lowercase phrase.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 && self.column == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl ManifestError {
    /// The error for a manifest file that cannot be read.
    pub(crate) fn unreadable(file: &Path, err: &std::io::Error) -> Self {
        let hint = if err.kind() == std::io::ErrorKind::NotFound {
            "check the path; the manifest of a Spin app is usually `spin.toml` in the app directory"
        } else {
            "check that the path names a readable file"
        };
        ManifestError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read manifest: {err}"),
            hint: Some(hint.to_owned()),
        }
    }
}

/// The manifest text and its file name, used to turn byte spans into
/// [`ManifestError`]s.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub file: &'a Path,
}

impl Source<'_> {
    /// An error at the start of the byte range `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        let (line, column) = self.line_column(span.start);
        ManifestError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.line_column(offset).0
    }

    /// Converts a TOML syntax error (the text is not TOML at all).
    pub fn syntax_error(&self, err: &toml::de::Error) -> ManifestError {
        let span = err.span().unwrap_or(0..0);
        let mut message = clean_message(err.message());
        let hint = if message.starts_with("duplicate key") {
            if let Some(key) = self
                .text
                .get(span.clone())
                .filter(|key| !key.contains('\n'))
            {
                message = format!("duplicate key `{key}`");
            }
            DUPLICATE_KEY_HINT
        } else {
            "fix the TOML syntax at this position; see https://toml.io for the format"
        };
        self.error(span, message, hint)
    }

    /// Converts an error found while mapping the TOML onto the manifest
    /// schema (unknown field, wrong type, missing field, ...).
    pub fn schema_error(&self, err: &toml::de::Error) -> ManifestError {
        let message = toml_words(&clean_message(err.message()));
        let hint = schema_hint(&message);
        self.error(err.span().unwrap_or(0..0), message, hint)
    }
}

/// Serde's names for TOML's types, replaced by TOML's own.
fn toml_words(message: &str) -> String {
    message
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table")
}

/// The message of a toml error as a single lowercase line.
fn clean_message(message: &str) -> String {
    let message = message.trim().replace('\n', "; ");
    let mut chars = message.chars();
    let Some(first) = chars.next() else {
        return message;
    };
    // Keep acronyms such as "TOML" intact.
    let acronym = chars.clone().next().is_some_and(char::is_uppercase);
    if first.is_uppercase() && !acronym {
        first.to_lowercase().chain(chars).collect()
    } else {
        message
    }
}

/// A hint for a serde/toml schema error, chosen by the kind of error.
fn schema_hint(message: &str) -> String {
    if message.starts_with("unknown field") {
        UNKNOWN_FIELD_HINT.to_owned()
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        format!("add `{field} = ...` to this table; see the Spin manifest v2 reference")
    } else if message.starts_with("duplicate key") {
        DUPLICATE_KEY_HINT.to_owned()
    } else if message.contains("[[trigger.http]]") {
        "declare each trigger with its own `[[trigger.http]]` header (double brackets)".to_owned()
    } else {
        "check the value against the Spin manifest v2 reference".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source<'_> {
        Source {
            text,
            file: Path::new("spin.toml"),
        }
    }

    #[test]
    fn line_and_column_are_one_based() {
        let src = source("ab\ncdé\nf");
        assert_eq!(src.line_column(0), (1, 1));
        assert_eq!(src.line_column(1), (1, 2));
        assert_eq!(src.line_column(3), (2, 1));
        // 'é' is two bytes; the column counts characters.
        assert_eq!(src.line_column(7), (2, 4));
        assert_eq!(src.line_column(8), (3, 1));
        assert_eq!(src.line_column(1000), (3, 2));
    }

    #[test]
    fn offset_inside_a_character_is_rounded_down() {
        let src = source("é");
        assert_eq!(src.line_column(1), (1, 1));
    }

    #[test]
    fn display_with_and_without_position() {
        let err = ManifestError {
            file: PathBuf::from("spin.toml"),
            line: 3,
            column: 7,
            message: "bad thing".to_owned(),
            hint: Some("do the other thing".to_owned()),
        };
        assert_eq!(
            err.to_string(),
            "spin.toml:3:7: bad thing\n  hint: do the other thing"
        );
        let err = ManifestError {
            line: 0,
            column: 0,
            hint: None,
            ..err
        };
        assert_eq!(err.to_string(), "spin.toml: bad thing");
    }

    #[test]
    fn messages_are_lowercased_and_single_line() {
        assert_eq!(clean_message("Invalid key\n"), "invalid key");
        assert_eq!(clean_message("TOML parse"), "TOML parse");
        assert_eq!(clean_message("a\nb"), "a; b");
    }

    #[test]
    fn serde_type_names_become_toml_type_names() {
        assert_eq!(
            toml_words("invalid type: map, expected a sequence"),
            "invalid type: table, expected an array"
        );
        assert_eq!(
            toml_words("invalid type: sequence, expected a map"),
            "invalid type: array, expected a table"
        );
    }

    #[test]
    fn hints_depend_on_the_error_kind() {
        assert_eq!(schema_hint("unknown field `x`"), UNKNOWN_FIELD_HINT);
        assert_eq!(
            schema_hint("missing field `source`"),
            "add `source = ...` to this table; see the Spin manifest v2 reference"
        );
        assert!(schema_hint("duplicate key").contains("only once"));
        assert!(schema_hint("invalid type: integer `1`").contains("reference"));
    }
}

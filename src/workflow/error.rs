//! The one error type of workflow loading, and the helpers that give it a position.
//!
//! A workflow file is written by hand, so every error names where it is (`origin:line:column`,
//! 1-based, column counted in characters) and, when something better can be said, carries a
//! `hint` that the CLI prints on its own line. The hint is deliberately not part of `Display`.

use std::fmt;

/// Something is wrong with a workflow file, or with how it was asked for.
///
/// `Display` is `<origin>:<line>:<column>: <message>`; parts that are unknown are left out (an
/// empty `origin` leaves out the prefix entirely, used when no file is involved).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", Location(self), self.message)]
pub struct WorkflowError {
    /// A path as the user gave it, `builtin:<name>`, or empty when no file is involved.
    pub origin: String,
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending key or value.
    pub column: Option<usize>,
    pub message: String,
    /// Advice printed by the CLI as `hint: ...`.
    pub hint: Option<String>,
    /// More mistakes found in the same pass (other steps), reported after this one (boxed:
    /// the error stays small to pass around).
    pub also: Box<[WorkflowError]>,
}

/// Renders the `origin:line:column: ` prefix of a [`WorkflowError`].
struct Location<'a>(&'a WorkflowError);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if e.origin.is_empty() {
            return Ok(());
        }
        write!(f, "{}", e.origin)?;
        if let Some(line) = e.line {
            write!(f, ":{line}")?;
            if let Some(column) = e.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")
    }
}

impl WorkflowError {
    /// An error with no position (not about a place in a file).
    pub fn new(origin: impl Into<String>, message: impl Into<String>) -> Self {
        WorkflowError {
            origin: origin.into(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
            also: Box::new([]),
        }
    }

    /// An error at byte `offset` of `source`.
    pub fn at(origin: &str, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(source, offset);
        WorkflowError {
            origin: origin.to_string(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
            hint: None,
            also: Box::new([]),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// 1-based (line, column) of byte `offset` in `source`; the column counts characters.
///
/// An offset past the end, or inside a multi-byte character, is clamped to the nearest
/// character boundary before it.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The candidate closest to `word`, if it is close enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= limit || (c.len() >= 4 && c.starts_with(lower.as_str())))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `a, b, c` with each name in backticks.
pub fn backticked<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_unknown_parts() {
        let mut e = WorkflowError::new("wf.toml", "boom");
        assert_eq!(e.to_string(), "wf.toml: boom");
        e.line = Some(3);
        assert_eq!(e.to_string(), "wf.toml:3: boom");
        e.column = Some(7);
        e.hint = Some("not shown".into());
        assert_eq!(e.to_string(), "wf.toml:3:7: boom");
        assert_eq!(WorkflowError::new("", "boom").to_string(), "boom");
    }

    #[test]
    fn line_column_counts_characters() {
        let s = "ab\ncé d\n";
        assert_eq!(line_column(s, 0), (1, 1));
        assert_eq!(line_column(s, 3), (2, 1));
        // 'd' is after the two-byte 'é' and a space.
        assert_eq!(line_column(s, s.find('d').expect("d is in s")), (2, 4));
        assert_eq!(line_column(s, 999), (3, 1));
    }

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["id", "prompt", "timeout", "idle_timeout"];
        assert_eq!(closest("promt", keys), Some("prompt"));
        assert_eq!(closest("timout", keys), Some("timeout"));
        assert_eq!(closest("Prompt", keys), Some("prompt"));
        assert_eq!(closest("zzz", keys), None);
        assert_eq!(closest("x", keys), None);
    }
}

//! The one rule for paths a workflow names — they stay inside the folder they are read in —
//! and the one way a workflow's files are read: bounded in size, UTF-8, positions for both.
//!
//! `outputs`, `prompt_file` and the `file`/`files` of `context` are relative paths: to the
//! worktree, or (`prompt_file`) to the workflow file's directory. A path that is absolute, that
//! goes up with a `..` component, or that holds a NUL byte is refused — when the file is parsed
//! for what it says literally, and when a run binds its vars for what the vars put in (a var
//! value is never trusted to be a path: `{name}.md` with `name=../../x` would write outside).

use std::io::Read;
use std::path::Path;

use super::error::WorkflowError;

/// The largest workflow or prompt file read, in bytes: four times the largest prompt the
/// engines are tested with (1 MiB). A workflow is a page of settings and prompts; anything near
/// this size is a mistake (a log pasted in, the wrong file named), and reading it whole would
/// cost memory and time for nothing.
pub const MAX_FILE: usize = 4 << 20;

/// Why a file could not be read as a workflow's text.
pub enum ReadError {
    /// It could not be opened or read; the caller words it.
    Io(std::io::Error),
    /// It was read but is not text we take (too big, not UTF-8): a positioned error.
    Bad(WorkflowError),
}

/// The text of `path`, read up to [`MAX_FILE`] bytes; `origin` is what errors name.
pub fn read_text(path: &Path, origin: &str) -> Result<String, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    text(bytes, origin).map_err(ReadError::Bad)
}

/// `bytes` as text, or an error placed where it stops being text we take: past [`MAX_FILE`],
/// or at the first byte that is not UTF-8.
pub fn text(bytes: Vec<u8>, origin: &str) -> Result<String, WorkflowError> {
    if bytes.len() > MAX_FILE {
        let valid = match std::str::from_utf8(&bytes[..MAX_FILE]) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to here"),
        };
        return Err(too_big(origin, valid));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let valid = std::str::from_utf8(&bytes[..at]).expect("valid up to here");
        WorkflowError::at(
            origin,
            valid,
            at,
            format!("byte 0x{:02x} is not UTF-8 text", bytes[at]),
        )
        .with_hint("save the file as UTF-8")
    })
}

/// The error for a file over [`MAX_FILE`], placed at the end of `before`, its text up to the
/// limit.
pub fn too_big(origin: &str, before: &str) -> WorkflowError {
    WorkflowError::at(
        origin,
        before,
        before.len(),
        format!("the file is larger than {} MiB, the limit", MAX_FILE >> 20),
    )
    .with_hint(
        "a workflow file holds settings and prompts; is it the right file? long prompts go in `prompt_file`s",
    )
}

/// Why `path` would leave the folder it is relative to; `None` when it stays inside.
///
/// Both `/` and `\` separate components (a workflow written on Windows must not escape on
/// Windows either), and a drive prefix (`C:`) is absolute.
pub fn escape(path: &str) -> Option<&'static str> {
    if path.contains('\0') {
        return Some("holds a NUL byte");
    }
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with(['/', '\\']) || drive {
        return Some("is absolute");
    }
    if path.split(['/', '\\']).any(|part| part == "..") {
        return Some("goes up with `..`");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn relative_paths_inside_pass() {
        for ok in [
            "a.md",
            "docs/a.md",
            "src/**/*.rs",
            "./x",
            "a..b",
            "..a",
            "{name}.md",
            "a/",
        ] {
            assert_eq!(escape(ok), None, "{ok}");
        }
    }

    #[test]
    fn absolute_up_and_nul_paths_are_refused() {
        for (bad, why) in [
            ("/etc/passwd", "is absolute"),
            ("\\\\server\\share", "is absolute"),
            ("C:\\x", "is absolute"),
            ("c:x", "is absolute"),
            ("..", "goes up with `..`"),
            ("../x", "goes up with `..`"),
            ("a/../../x", "goes up with `..`"),
            ("a\\..\\x", "goes up with `..`"),
            ("a/..", "goes up with `..`"),
            ("a\0b", "holds a NUL byte"),
        ] {
            assert_eq!(escape(bad), Some(why), "{bad:?}");
        }
    }
}

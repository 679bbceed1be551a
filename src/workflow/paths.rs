//! The one rule for paths a workflow names: they stay inside the folder they are read in.
//!
//! `outputs`, `prompt_file` and the `file`/`files` of `context` are relative paths: to the
//! worktree, or (`prompt_file`) to the workflow file's directory. A path that is absolute, that
//! goes up with a `..` component, or that holds a NUL byte is refused — when the file is parsed
//! for what it says literally, and when a run binds its vars for what the vars put in (a var
//! value is never trusted to be a path: `{name}.md` with `name=../../x` would write outside).

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

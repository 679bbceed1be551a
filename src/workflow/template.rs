//! Placeholders: `{name}` in `run`, `prompt`, `outputs`, `env` values and `args`.
//!
//! `{{` and `}}` are literal braces. Expansion is a single pass over the template: a value is
//! inserted as-is and never scanned again, so a value containing `{other}` or shell syntax such
//! as `$(rm -rf ~)` stays literal text (and `run` is an argv, never a shell line, so it stays
//! one argument). [`check`] is what `parse` uses to reject unknown names and unbalanced braces;
//! [`expand`] is lenient because it only ever sees checked templates.

use std::collections::BTreeMap;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text to copy (with `{{`/`}}` already collapsed to one brace).
    Text(&'a str),
    /// `{name}`; `start` is the byte offset of the `{` in the template.
    Placeholder { name: &'a str, start: usize },
}

/// Whether `name` can be a placeholder: a letter or `_`, then letters, digits, `_` or `-`.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Splits a template into pieces. Only `{name}` is a placeholder; any other brace (shell
/// `{ …; }`, JSON, awk programs in a prompt or argv) is plain text.
pub fn scan(template: &str) -> Vec<Piece<'_>> {
    let bytes = template.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'}' if bytes.get(i + 1) == Some(&bytes[i]) => {
                // Keep the first brace of the pair as text, skip the second.
                pieces.push(Piece::Text(&template[text_start..=i]));
                i += 2;
                text_start = i;
            }
            b'{' => {
                let rest = &template[i + 1..];
                match rest.find('}') {
                    Some(close) if is_name(&rest[..close]) => {
                        pieces.push(Piece::Text(&template[text_start..i]));
                        pieces.push(Piece::Placeholder {
                            name: &rest[..close],
                            start: i,
                        });
                        i += close + 2;
                        text_start = i;
                    }
                    _ => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    pieces.push(Piece::Text(&template[text_start..]));
    pieces.retain(|p| !matches!(p, Piece::Text("")));
    pieces
}

/// Expand `{name}` placeholders in one template; `{{` and `}}` are literal braces. Unknown names
/// are left as written (parse() already rejected them), and so is a template with stray braces.
pub fn expand(template: &str, values: &BTreeMap<String, String>) -> String {
    let pieces = scan(template);
    let mut out = String::with_capacity(template.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder { name, .. } => match values.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// The placeholders of a template as (name, byte offset of its `{`).
pub fn placeholders(template: &str) -> Vec<(&str, usize)> {
    scan(template)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder { name, start } => Some((name, start)),
            Piece::Text(_) => None,
        })
        .collect()
}

/// The quotes a placeholder of a shell script sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// `'…'` (or `$'…'`): a value with a `'` ends them, and what follows is shell code.
    Single,
    /// `"…"`: a value with `"`, `` ` `` or `$(` is read by the shell.
    Double,
}

/// The placeholders of a shell script (the argument after `sh -c`) that sit inside quotes, as
/// (name, byte offset of its `{`, quotes). A value pasted there is read as shell code; the safe
/// way is a positional argument (`"$1"`). An unquoted placeholder is not listed: a script that
/// is a var (`["sh", "-c", "{test_command}"]`) means the value to be shell code.
pub fn quoted_placeholders(script: &str) -> Vec<(&str, usize, Quote)> {
    let quotes = quote_at(script);
    placeholders(script)
        .into_iter()
        .filter_map(|(name, start)| quotes[start].map(|q| (name, start, q)))
        .collect()
}

/// For each byte of a POSIX shell script, the quotes it is inside (a light lexer: quotes,
/// backslashes and comments; enough to tell where a pasted value lands).
fn quote_at(script: &str) -> Vec<Option<Quote>> {
    let bytes = script.as_bytes();
    let mut out = vec![None; bytes.len() + 1];
    let mut state: Option<Quote> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        out[i] = state;
        match (state, b) {
            (None, b'\\') | (Some(Quote::Double), b'\\') => {
                if i + 1 < bytes.len() {
                    out[i + 1] = state;
                }
                i += 2;
                continue;
            }
            (None, b'\'') => state = Some(Quote::Single),
            (None, b'"') => state = Some(Quote::Double),
            (None, b'#') if i == 0 || bytes[i - 1].is_ascii_whitespace() => {
                // A comment, to the end of the line.
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = None;
                    i += 1;
                }
                continue;
            }
            (Some(Quote::Single), b'\'') | (Some(Quote::Double), b'"') => {
                state = None;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_names_and_literal_braces() {
        let v = values(&[("x", "1"), ("name", "greeting")]);
        assert_eq!(expand("a {x} b", &v), "a 1 b");
        assert_eq!(expand("{{x}}", &v), "{x}");
        assert_eq!(expand("{{{x}}}", &v), "{1}");
        assert_eq!(expand("src/{name}.sh", &v), "src/greeting.sh");
        assert_eq!(expand("{x}{x}", &v), "11");
        assert_eq!(expand("", &v), "");
        assert_eq!(expand("no braces", &v), "no braces");
    }

    #[test]
    fn values_are_not_expanded_again() {
        let v = values(&[
            ("a", "{b}"),
            ("b", "B"),
            ("evil", "$(rm -rf ~)"),
            ("q", "'; reboot"),
        ]);
        assert_eq!(expand("{a}", &v), "{b}");
        assert_eq!(expand("{evil}", &v), "$(rm -rf ~)");
        assert_eq!(expand("echo '{q}'", &v), "echo ''; reboot'");
    }

    #[test]
    fn unknown_names_and_stray_braces_are_left_alone() {
        let v = values(&[]);
        assert_eq!(expand("{nope}", &v), "{nope}");
        assert_eq!(expand("a { b", &v), "a { b");
        assert_eq!(expand("a } b", &v), "a } b");
    }

    #[test]
    fn only_names_in_braces_are_placeholders() {
        assert_eq!(scan("ab{c"), vec![Piece::Text("ab{c")]);
        assert_eq!(placeholders("{a{b}"), vec![("b", 2)]);
        assert_eq!(scan("ab}"), vec![Piece::Text("ab}")]);
        assert_eq!(scan("{{ }}"), vec![Piece::Text("{"), Piece::Text(" }")]);
        assert_eq!(placeholders("x {a} {{b}} {c}"), vec![("a", 2), ("c", 12)]);
        let v = BTreeMap::new();
        assert_eq!(
            expand("test -e f || { echo no; exit 3; }", &v),
            "test -e f || { echo no; exit 3; }"
        );
        assert_eq!(expand("awk '{print $1}'", &v), "awk '{print $1}'");
        assert_eq!(expand("{\"a\": 1}", &v), "{\"a\": 1}");
    }

    #[test]
    fn placeholders_inside_quotes_of_a_script_are_found() {
        let found = |s| {
            quoted_placeholders(s)
                .into_iter()
                .map(|(n, _, q)| (n, q))
                .collect::<Vec<_>>()
        };
        assert_eq!(found("echo '{x}'"), [("x", Quote::Single)]);
        assert_eq!(found("echo \"a {x} b\""), [("x", Quote::Double)]);
        assert_eq!(found("{test_command}"), []);
        assert_eq!(found("make {target} && echo 'done'"), []);
        assert_eq!(found("echo \"it's\" {x}"), []);
        assert_eq!(
            found("echo 'a\"b' \"{y}\" '{z}'"),
            [("y", Quote::Double), ("z", Quote::Single)]
        );
        assert_eq!(found("echo \\'{x}"), []);
        assert_eq!(found("echo \"\\\"{x}\""), [("x", Quote::Double)]);
        assert_eq!(found("# it's a comment\necho {x}"), []);
        assert_eq!(found("echo '{{x}}'"), []);
        assert_eq!(found("echo $'{x}'"), [("x", Quote::Single)]);
    }
}

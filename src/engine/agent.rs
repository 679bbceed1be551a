//! What the agent-CLI adapters share: finding the program, the default permission level,
//! reading JSON lines, and turning "how the CLI ended" into an [`Outcome`].
//!
//! Invariants every adapter keeps by building on [`Report::finish`]:
//! - a step succeeds only when the process exited 0, the CLI's own stream said the turn
//!   completed, and no error was reported anywhere (error event, error flag in the result,
//!   permission denial, error text on stderr): an exit code of 0 alone never makes a success;
//! - transient trouble the CLI retries by itself (reconnecting, backing off after a 429) is kept
//!   as the *last problem* and only named in the error when the run then ends badly (timeout,
//!   non-zero exit) — it is not an error while the CLI may still recover;
//! - `fallback_reason` is set when the failure says "this engine cannot serve now": rate limit,
//!   not logged in / bad key, or the program could not be started.
//!
//! The program of each CLI can be replaced by an absolute path in an environment variable
//! (`MACHINE_CLAUDE_BIN`, `MACHINE_CODEX_BIN`, …): tests point it at the fake agent, users at a
//! wrapper script or a second installation. It is read once, when the engine is built.
//!
//! Also here: what the interactive forms share — the prompt as a first message within argv's
//! limits ([`first_message`]), fresh session ids, and reading the CLIs' session files (the user's
//! environment comes in as a list, never from `std::env`, so tests can give a temporary home).

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{summary_line, Ending, EngineError, Outcome, StepInput, Stream};
use crate::workflow::{Permissions, ResolvedStep};

/// The permission level of a step that does not say: `edit`.
///
/// An agent step exists to change files, so the default lets the CLI edit files in the
/// worktree without asking (a headless CLI that asks is a CLI that silently does nothing).
/// Running arbitrary commands outside the CLI's sandbox (`full`) must be asked for, because the
/// worktree is not a security boundary; `read` is for review-like steps.
pub const DEFAULT_PERMISSIONS: Permissions = Permissions::Edit;

/// The permission level a step gets.
pub fn permissions(step: &ResolvedStep) -> Permissions {
    step.permissions.unwrap_or(DEFAULT_PERMISSIONS)
}

/// How one CLI is found and installed.
#[derive(Debug, Clone, Copy)]
pub struct Cli {
    /// Engine name, as in workflow files.
    pub engine: &'static str,
    /// Program name looked up on `PATH`.
    pub program: &'static str,
    /// Environment variable holding a path that replaces the program.
    pub override_var: &'static str,
    /// One command that installs it.
    pub install: &'static str,
}

impl Cli {
    /// The program to start: the override variable's value in `vars` (the environment as
    /// read at start) if set, else the program name.
    pub fn program_in(&self, vars: &[(String, String)]) -> String {
        match vars.iter().find(|(k, _)| k == self.override_var) {
            Some((_, p)) if !p.is_empty() => p.clone(),
            _ => self.program.to_string(),
        }
    }

    /// Where `program` is found: a path containing `/` is taken as is, a bare name is
    /// searched in `path` (a `PATH` value).
    pub fn locate(&self, program: &str, path: Option<&OsStr>) -> Result<PathBuf, EngineError> {
        let found = if program.contains('/') {
            let p = PathBuf::from(program);
            is_executable(&p).then_some(p)
        } else {
            path.and_then(|path| {
                std::env::split_paths(path)
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .map(|dir| dir.join(program))
                    .find(|p| is_executable(p))
            })
        };
        found.ok_or_else(|| EngineError::Unavailable {
            engine: self.engine.to_string(),
            reason: if program.contains('/') {
                format!(
                    "`{program}` (from {}) is not an executable file",
                    self.override_var
                )
            } else {
                format!(
                    "`{program}` was not found on PATH; install it with `{}`",
                    self.install
                )
            },
        })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The step's extra environment, as `Invocation::env` wants it.
pub fn step_env(step: &ResolvedStep) -> Vec<(String, String)> {
    step.env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A JSON object line, or `None` for anything else (banners, blank lines, partial output).
pub fn json_line(line: &str) -> Option<Value> {
    let t = line.trim();
    if !t.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(t)
        .ok()
        .filter(Value::is_object)
}

/// `v[key]` as a string, if it is one.
pub fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `v[key]` as a u64 (floats are rounded down, negatives ignored).
pub fn u64_at(v: &Value, key: &str) -> Option<u64> {
    let x = v.get(key)?;
    x.as_u64()
        .or_else(|| x.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Make an API error message readable: many CLIs pass the provider's JSON error body through
/// as a string (`{"type":"error","error":{"message":"…","code":400}}`). Keeps the status code.
pub fn tidy_api_error(text: &str) -> String {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix("[API Error: ")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    let Some(v) = json_line(inner) else {
        return trimmed.to_string();
    };
    let err = v.get("error").unwrap_or(&v);
    let message = str_at(err, "message").unwrap_or(inner);
    let code = err.get("code").and_then(|c| {
        c.as_u64()
            .map(|n| n.to_string())
            .or_else(|| c.as_str().map(String::from))
    });
    let kind = str_at(err, "type").filter(|t| *t != "error" && *t != "unknown");
    match (code, kind) {
        (Some(code), Some(kind)) => format!("API error {code} ({kind}): {message}"),
        (Some(code), None) => format!("API error {code}: {message}"),
        (None, Some(kind)) => format!("API error ({kind}): {message}"),
        (None, None) => message.to_string(),
    }
}

/// Whether `text` contains `code` as a number on its own (not inside a longer number).
fn has_number(text: &str, code: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(code).any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + code.len()).copied();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

/// Why an engine cannot serve now, if `text` says so: rate limit or not logged in.
pub fn fallback_reason(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    const RATE: &[&str] = &[
        "rate limit",
        "rate_limit",
        "ratelimit",
        "too many requests",
        "quota exceeded",
        "resource_exhausted",
        "usage limit",
    ];
    const AUTH: &[&str] = &[
        "invalid api key",
        "invalid_api_key",
        "invalid x-api-key",
        "please run /login",
        "not logged in",
        "authentication_error",
        "authenticationerror",
        "failed to authenticate",
        "unauthorized",
        "missing environment variable",
        "api key not valid",
        "no api key",
        "login required",
        "authentication required",
        "please log in",
        "agent login",
    ];
    if has_number(text, "429") || RATE.iter().any(|p| lower.contains(p)) {
        Some("rate-limited".to_string())
    } else if has_number(text, "401") || AUTH.iter().any(|p| lower.contains(p)) {
        Some("not logged in (or the API key was refused)".to_string())
    } else {
        None
    }
}

/// Lines of stderr kept for error messages.
const STDERR_TAIL: usize = 8;

/// What an adapter's parser has gathered; [`Report::finish`] makes the [`Outcome`].
#[derive(Debug, Default)]
pub struct Report {
    pub session: Option<String>,
    /// The agent's final message (its last answer of the turn).
    pub final_message: Option<String>,
    pub usage: BTreeMap<String, u64>,
    /// Errors the CLI reported as final; any makes the step fail.
    pub errors: Vec<String>,
    /// The latest trouble the CLI said it was retrying; named only if the run ends badly.
    pub problem: Option<String>,
    /// The stream said the turn completed (result event, turn.completed, …).
    pub completed: bool,
    stderr: VecDeque<String>,
}

impl Report {
    /// Keep the last lines of stderr (for an error message when nothing better is known).
    pub fn stderr_line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if self.stderr.len() == STDERR_TAIL {
            self.stderr.pop_front();
        }
        self.stderr.push_back(super::kept(line));
    }

    /// Keep a line of either stream the adapter did not understand: stderr lines feed error
    /// messages, unknown stdout lines are ignored (they stay in the step log).
    pub fn other_line(&mut self, stream: Stream, line: &str) {
        if stream == Stream::Stderr {
            self.stderr_line(line);
        }
    }

    pub fn error(&mut self, message: impl Into<String>) {
        let message = message.into();
        if !message.is_empty() && !self.errors.contains(&message) {
            self.errors.push(message);
        }
    }

    pub fn add_usage(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            *self.usage.entry(key.to_string()).or_insert(0) += v;
        }
    }

    /// Cost in US dollars, kept as micro-dollars.
    pub fn add_cost_usd(&mut self, dollars: Option<f64>) {
        if let Some(d) = dollars.filter(|d| d.is_finite() && *d > 0.0) {
            self.add_usage("cost_usd_micros", Some((d * 1_000_000.0).round() as u64));
        }
    }

    /// The outcome: see the module header for when it is a success.
    pub fn finish(self, engine: &str, ending: &Ending) -> Outcome {
        let exited_ok = *ending == Ending::Exited(0);
        let success = exited_ok && self.completed && self.errors.is_empty();
        let last_stderr = self.stderr.back().cloned();
        let error = if success {
            None
        } else if !self.errors.is_empty() {
            Some(self.errors.join("; "))
        } else if exited_ok {
            Some(format!(
                "{engine} exited 0 without reporting a result{}",
                last_stderr
                    .as_deref()
                    .map(|l| format!(" (stderr: {l})"))
                    .unwrap_or_default()
            ))
        } else {
            let mut msg = ending.describe();
            if let Some(p) = self.problem.as_deref().or(last_stderr.as_deref()) {
                msg.push_str(&format!("; last message: {p}"));
            }
            Some(msg)
        };
        let fallback = if success {
            None
        } else if *ending == Ending::Exited(127) && !self.completed {
            Some(format!("could not start {engine}"))
        } else {
            let mut all = self.errors.join("\n");
            if let Some(p) = &self.problem {
                all.push('\n');
                all.push_str(p);
            }
            if self.errors.is_empty() {
                for l in &self.stderr {
                    all.push('\n');
                    all.push_str(l);
                }
            }
            fallback_reason(&all)
        };
        Outcome {
            success,
            summary: self.final_message.as_deref().and_then(summary_line),
            final_message: self.final_message,
            session: self.session,
            usage: self.usage,
            error,
            fallback_reason: fallback,
        }
    }
}

/// The struct of an agent engine: the program to run (from the override variable or the CLI's
/// own name), with `new` (tests build one for a given program) and `from_env`.
macro_rules! cli_engine {
    ($engine:ident, $cli:expr) => {
        pub struct $engine {
            program: String,
        }

        impl $engine {
            #[cfg(test)]
            pub fn new(program: impl Into<String>) -> $engine {
                $engine {
                    program: program.into(),
                }
            }

            pub fn from_vars(vars: &[(String, String)]) -> $engine {
                $engine {
                    program: $cli.program_in(vars),
                }
            }
        }
    };
}

/// `name` and `check` of an agent engine's `Engine` impl: the same for every CLI.
macro_rules! cli_engine_basics {
    ($cli:expr) => {
        fn name(&self) -> &'static str {
            $cli.engine
        }

        fn check(&self, path: Option<&std::ffi::OsStr>) -> Result<(), EngineError> {
            $cli.locate(&self.program, path).map(|_| ())
        }
    };
}

pub(crate) use {cli_engine, cli_engine_basics};

/// The largest prompt passed as it is in argv, in bytes (Linux caps one argument at 128 KiB).
pub const ARGV_PROMPT_MAX: usize = 100 << 10;

/// The argument that stands for a prompt too long for argv, kept in `file`.
pub fn pointer_prompt(file: &Path, len: usize) -> String {
    format!(
        "Your instructions for this step are too long for a command line, so they are in the file {} ({len} bytes). Read that whole file first, then do what it says.",
        file.display()
    )
}

/// The prompt as one program argument: itself up to [`ARGV_PROMPT_MAX`] bytes; a longer one is
/// written to the step's prompt file (outside the worktree) and the argument asks the agent to
/// read that file ([`pointer_prompt`]), so the program still starts.
pub fn prompt_argument(input: &StepInput<'_>) -> Result<String, EngineError> {
    if input.prompt.len() <= ARGV_PROMPT_MAX {
        return Ok(input.prompt.to_string());
    }
    let file = input.write_prompt_file()?;
    Ok(pointer_prompt(file, input.prompt.len()))
}

/// The first message of an interactive session, as [`prompt_argument`] makes it; `None` for a
/// blank prompt, so the CLI starts waiting for the user instead of sending an empty message.
pub fn first_message(input: &StepInput<'_>) -> Result<Option<String>, EngineError> {
    if input.prompt.trim().is_empty() {
        return Ok(None);
    }
    prompt_argument(input).map(Some)
}

/// A random (version 4) UUID, the form Claude Code's and Gemini CLI's `--session-id` want.
pub fn new_session_id() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether `id` can be part of a file name as it is: not empty, only ASCII letters, digits,
/// `-` and `_` (no `/`, no `..`). Session ids from the record are checked before they become
/// paths.
pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `key` in `env` (the user's environment as read at start), if set and not empty.
pub fn var<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `$HOME` in `env`.
pub fn home(env: &[(String, String)]) -> Option<PathBuf> {
    var(env, "HOME").map(PathBuf::from)
}

/// How much older than `since` a file's modification time may look although it was written
/// after: some file systems keep whole seconds (FAT two).
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// When `path` was last modified, if it was at or after `since` (less [`MTIME_SLACK`]).
pub fn modified_since(path: &Path, since: SystemTime) -> Option<SystemTime> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let earliest = since.checked_sub(MTIME_SLACK).unwrap_or(since);
    (modified >= earliest).then_some(modified)
}

/// The longest first line [`first_json_line`] reads (Codex puts its whole system prompt there).
const FIRST_LINE_MAX: u64 = 4 << 20;

/// The first line of the file at `path` as a JSON object: the header line the CLIs start their
/// session files with.
pub fn first_json_line(path: &Path) -> Option<Value> {
    let file = std::fs::File::open(path).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(std::io::Read::take(file, FIRST_LINE_MAX))
        .read_line(&mut line)
        .ok()?;
    json_line(&line)
}

/// The files in `dir` whose names satisfy `wanted` (unreadable folders have none).
pub fn files_in(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(&wanted))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect()
}

/// Of `paths`, the one modified last, if any was modified since `since`, with what `pick`
/// makes of it (files `pick` refuses are skipped).
pub fn newest_since<T>(
    paths: impl IntoIterator<Item = PathBuf>,
    since: SystemTime,
    pick: impl Fn(&Path) -> Option<T>,
) -> Option<T> {
    let mut found: Vec<(SystemTime, PathBuf)> = paths
        .into_iter()
        .filter_map(|p| modified_since(&p, since).map(|t| (t, p)))
        .collect();
    found.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    found.iter().find_map(|(_, p)| pick(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_reasons_are_recognised() {
        assert_eq!(
            fallback_reason("API Error: Request rejected (429) · scripted 429").as_deref(),
            Some("rate-limited")
        );
        assert!(
            fallback_reason("exceeded retry limit, last status: 429 Too Many Requests").is_some()
        );
        assert!(fallback_reason("Invalid API key · Please run /login").is_some());
        assert!(fallback_reason("unexpected status 401 Unauthorized").is_some());
        assert!(fallback_reason("took 14290 ms").is_none());
        assert!(fallback_reason("API Error: 400 bad request").is_none());
    }

    #[test]
    fn api_error_bodies_are_made_readable() {
        let raw = r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "scripted 400", "code": 400}}"#;
        assert_eq!(
            tidy_api_error(raw),
            "API error 400 (invalid_request_error): scripted 400"
        );
        assert_eq!(tidy_api_error("plain words"), "plain words");
    }

    #[test]
    fn exit_zero_without_result_is_a_failure() {
        let r = Report::default();
        let o = r.finish("claude", &Ending::Exited(0));
        assert!(!o.success);
        assert!(o
            .error
            .expect("error")
            .contains("without reporting a result"));
    }

    #[test]
    fn a_problem_is_named_when_the_run_times_out() {
        let r = Report {
            problem: Some("Reconnecting... 2/5".into()),
            ..Report::default()
        };
        let o = r.finish(
            "codex",
            &Ending::TimedOut(std::time::Duration::from_secs(60)),
        );
        assert!(!o.success);
        assert!(o.error.expect("error").contains("Reconnecting... 2/5"));
    }

    #[test]
    fn locate_searches_path_and_names_the_install_command() {
        let cli = Cli {
            engine: "x",
            program: "sh",
            override_var: "MACHINE_X_BIN",
            install: "install x",
        };
        let path = std::ffi::OsString::from("/nonexistent:/bin:/usr/bin");
        assert!(cli.locate("sh", Some(&path)).is_ok());
        let err = cli
            .locate("no-such-program-here", Some(&path))
            .expect_err("missing");
        assert!(err.to_string().contains("install x"), "{err}");
        assert!(cli.locate("/bin/sh", None).is_ok());
    }
}

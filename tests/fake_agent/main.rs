//! `fake-agent`: a stand-in for the agent CLIs (claude, codex, gemini, opencode, cursor-agent,
//! aider) that speaks each one's real output protocol, so engine adapters and the runner are
//! tested fast and offline. Built only with `--features test-fakes`.
//!
//! Which CLI it impersonates: `FAKE_AGENT_CLI`, else the file name it was started as
//! (`claude`, `codex`, `gemini`, `opencode`, `cursor-agent`/`cursor`, `aider`).
//!
//! What it does is scripted by directives, one per line, found in the prompt and in the file
//! named by `FAKE_AGENT_SCRIPT` (same syntax; the file is read first):
//!
//! | directive | effect |
//! |---|---|
//! | `FAKE_WRITE <path> <text>` | write `<text>` (`\n` escapes allowed) + newline to `<path>` in the working dir, through the CLI's "tool" (refused like the real CLI when its permissions do not allow writes) |
//! | `FAKE_REPLY <text>` | the final message (default: `FAKE_REPLY: hello from the fake model. You said: <last prompt line>`) |
//! | `FAKE_ERROR <status> [message]` | fail with an API error of HTTP `<status>` the way the CLI does (exit code, event shape) |
//! | `FAKE_EXIT <code>` | exit with `<code>` whatever happened |
//! | `FAKE_NO_RESULT` | end without the final result event |
//! | `FAKE_SLEEP <seconds>` | sleep after the first event |
//! | `FAKE_HANG` | after the first event, hang without output until killed |
//! | `FAKE_RECONNECT <n>` | codex: `n` "Reconnecting..." error events, one a second, then hang |
//! | `FAKE_SESSION <id>` | use this session id for a new session |
//!
//! A line `<cli>: DIRECTIVE` (e.g. `claude: FAKE_ERROR 429`) applies only when impersonating
//! that CLI (`cursor` for cursor-agent), so one prompt can script a fallback chain.
//!
//! The prompt is read where the real CLI reads it, as measured with the pinned versions (see
//! `parse_args`): the prompt argument and/or a non-terminal stdin (claude, codex `-`, gemini,
//! opencode), `--message`/`--message-file` (aider), the argument only (cursor-agent).
//!
//! A resume flag (`--resume ID`, `exec resume ID`, `-s ID`) keeps the given session id; a
//! new session gets the id of gemini's `--session-id`, else of `FAKE_SESSION`, else a fresh one. `--version` prints a version line. With `FAKE_AGENT_LOG` set,
//! one JSON line per start is appended to that file: `{"cli", "argv", "cwd", "prompt",
//! "session", "stdin"}`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cli {
    Claude,
    Codex,
    Gemini,
    Opencode,
    Cursor,
    Aider,
}

#[derive(Default)]
struct Script {
    writes: Vec<(String, String)>,
    reply: Option<String>,
    error: Option<(u16, String)>,
    exit: Option<i32>,
    no_result: bool,
    sleep: Option<f64>,
    hang: bool,
    reconnect: Option<u32>,
    session: Option<String>,
}

impl Script {
    /// Read directives; a line `<cli>: DIRECTIVE` applies only when impersonating `<cli>`.
    fn read(&mut self, cli: Cli, text: &str) {
        for line in text.lines() {
            let mut line = line.trim();
            if let Some((who, _)) = line.split_once(": FAKE_") {
                if who != cli.name() {
                    continue;
                }
                line = &line[who.len() + 2..];
            }
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim();
            match word {
                "FAKE_WRITE" => {
                    let (path, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    self.writes
                        .push((path.to_string(), text.replace("\\n", "\n")));
                }
                "FAKE_REPLY" => self.reply = Some(rest.replace("\\n", "\n")),
                "FAKE_ERROR" => {
                    let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                    let code = code.parse().unwrap_or(500);
                    let msg = if msg.is_empty() {
                        format!("scripted {code}")
                    } else {
                        msg.to_string()
                    };
                    self.error = Some((code, msg));
                }
                "FAKE_EXIT" => self.exit = rest.parse().ok(),
                "FAKE_NO_RESULT" => self.no_result = true,
                "FAKE_SLEEP" => self.sleep = rest.parse().ok(),
                "FAKE_HANG" => self.hang = true,
                "FAKE_RECONNECT" => self.reconnect = rest.parse().ok(),
                "FAKE_SESSION" => self.session = Some(rest.to_string()),
                _ => {}
            }
        }
    }
}

/// What the command line (and stdin, or a message file) says.
struct Args {
    prompt: String,
    resume: Option<String>,
    dir: Option<PathBuf>,
    /// Whether this CLI, with these flags, would let the model write files.
    can_write: bool,
    /// Codex: what it says on stderr about stdin before it starts.
    stdin_note: Option<&'static str>,
}

fn value_after(argv: &[String], names: &[&str]) -> Option<String> {
    argv.iter().enumerate().find_map(|(i, a)| {
        for n in names {
            if a == n {
                return argv.get(i + 1).cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                return Some(v.to_string());
            }
        }
        None
    })
}

fn has(argv: &[String], flag: &str) -> bool {
    argv.iter().any(|a| a == flag)
}

/// The positional arguments, given the options that take a value (`--opt value`; `--opt=value`
/// and flags are skipped); everything after `--` is positional, and so is a lone `-`.
fn positionals(argv: &[String], with_value: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            out.extend(it.cloned());
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            if !a.contains('=') && with_value.contains(&a.as_str()) {
                it.next();
            }
            continue;
        }
        out.push(a.clone());
    }
    out
}

const CLAUDE_VALUES: &[&str] = &[
    "--output-format",
    "--input-format",
    "--model",
    "--effort",
    "--permission-mode",
    "--resume",
    "-r",
    "--session-id",
    "--max-turns",
    "--append-system-prompt",
    "--system-prompt",
    "--fallback-model",
    "--settings",
];
const CODEX_VALUES: &[&str] = &[
    "-m",
    "--model",
    "-c",
    "--config",
    "-s",
    "--sandbox",
    "-C",
    "--cd",
    "-o",
    "--output-last-message",
    "-p",
    "--profile",
    "-i",
    "--image",
    "--color",
];
const OPENCODE_VALUES: &[&str] = &[
    "--format",
    "-m",
    "--model",
    "--variant",
    "--agent",
    "--dir",
    "-s",
    "--session",
    "--title",
    "--port",
    "-f",
    "--file",
];
const CURSOR_VALUES: &[&str] = &[
    "--output-format",
    "--model",
    "--mode",
    "--sandbox",
    "--workspace",
    "--resume",
    "--api-key",
    "-H",
    "--header",
];

/// `stdin` is what a non-terminal stdin held (None for a terminal). Each CLI builds its prompt
/// from its argument and stdin the way the real one was measured to (agent-lab, pinned
/// versions):
/// - claude `-p`: the prompt argument, then `\n` and stdin; stdin alone without an argument;
/// - codex `exec`: the prompt `-` is stdin; no prompt argument: stdin; an argument with a
///   non-empty stdin: `ARG\n\n<stdin>\nSTDIN</stdin>`;
/// - gemini: stdin, then a blank line and `-p`; with `-p` empty (or absent), stdin alone;
/// - opencode `run`: the message argument, then `\n` and stdin; stdin alone without a message;
/// - cursor-agent: the prompt argument only (its documentation names no other way);
/// - aider: `--message`, else the contents of `--message-file`; stdin is not read for it.
fn parse_args(cli: Cli, argv: &[String], stdin: Option<&str>) -> Args {
    let stdin_text = stdin.unwrap_or("");
    let joined = |words: Vec<String>| (!words.is_empty()).then(|| words.join(" "));
    let arg_then_stdin = |arg: Option<String>| match arg {
        Some(a) if !stdin_text.is_empty() => format!("{a}\n{stdin_text}"),
        Some(a) => a,
        None => stdin_text.to_string(),
    };
    match cli {
        Cli::Claude => Args {
            prompt: arg_then_stdin(joined(positionals(argv, CLAUDE_VALUES))),
            resume: value_after(argv, &["--resume", "-r"]),
            dir: None,
            can_write: has(argv, "--dangerously-skip-permissions")
                || matches!(
                    value_after(argv, &["--permission-mode"]).as_deref(),
                    Some("acceptEdits" | "bypassPermissions")
                ),
            stdin_note: None,
        },
        Cli::Codex => {
            let mut words = positionals(argv, CODEX_VALUES);
            if words.first().map(String::as_str) == Some("exec") {
                words.remove(0);
            }
            let mut resume = None;
            if words.first().map(String::as_str) == Some("resume") {
                words.remove(0);
                resume = (!words.is_empty()).then(|| words.remove(0));
            }
            let (prompt, stdin_note) = match joined(words) {
                Some(p) if p == "-" => (stdin_text.to_string(), None),
                None => (stdin_text.to_string(), Some("Reading prompt from stdin...")),
                Some(p) if stdin.is_none() => (p, None),
                Some(p) => {
                    let note = Some("Reading additional input from stdin...");
                    if stdin_text.is_empty() {
                        (p, note)
                    } else {
                        let nl = if stdin_text.ends_with('\n') { "" } else { "\n" };
                        (format!("{p}\n\n<stdin>\n{stdin_text}{nl}</stdin>"), note)
                    }
                }
            };
            Args {
                prompt,
                resume,
                dir: value_after(argv, &["-C", "--cd"]).map(PathBuf::from),
                can_write: has(argv, "--dangerously-bypass-approvals-and-sandbox")
                    || matches!(
                        value_after(argv, &["-s", "--sandbox"]).as_deref(),
                        Some("workspace-write" | "danger-full-access")
                    ),
                stdin_note,
            }
        }
        Cli::Gemini => {
            let p = value_after(argv, &["--prompt", "-p"]).unwrap_or_default();
            Args {
                prompt: match (stdin_text.is_empty(), p.is_empty()) {
                    (true, _) => p,
                    (false, true) => stdin_text.to_string(),
                    (false, false) => format!("{stdin_text}\n\n{p}"),
                },
                resume: value_after(argv, &["--resume", "-r"]),
                dir: None,
                can_write: has(argv, "--yolo")
                    || has(argv, "-y")
                    || matches!(
                        value_after(argv, &["--approval-mode"]).as_deref(),
                        Some("auto_edit" | "yolo")
                    ),
                stdin_note: None,
            }
        }
        Cli::Opencode => {
            let mut words = positionals(argv, OPENCODE_VALUES);
            if words.first().map(String::as_str) == Some("run") {
                words.remove(0);
            }
            Args {
                prompt: arg_then_stdin(joined(words)),
                resume: value_after(argv, &["-s", "--session"]),
                dir: value_after(argv, &["--dir"]).map(PathBuf::from),
                can_write: value_after(argv, &["--agent"]).as_deref() != Some("plan"),
                stdin_note: None,
            }
        }
        Cli::Cursor => Args {
            prompt: joined(positionals(argv, CURSOR_VALUES)).unwrap_or_default(),
            resume: value_after(argv, &["--resume"]),
            dir: value_after(argv, &["--workspace"]).map(PathBuf::from),
            can_write: has(argv, "--force") || has(argv, "--yolo") || has(argv, "-f"),
            stdin_note: None,
        },
        Cli::Aider => Args {
            prompt: value_after(argv, &["--message", "--msg", "-m"])
                .or_else(|| {
                    let file = value_after(argv, &["--message-file", "-f"])?;
                    match std::fs::read_to_string(&file) {
                        Ok(text) => Some(text),
                        Err(e) => {
                            warn(&format!("{file}: unable to read: {e}"));
                            None
                        }
                    }
                })
                .unwrap_or_default(),
            resume: has(argv, "--restore-chat-history").then(|| ".aider.chat.history.md".into()),
            dir: None,
            can_write: !has(argv, "--dry-run"),
            stdin_note: None,
        },
    }
}

impl Cli {
    fn name(self) -> &'static str {
        match self {
            Cli::Claude => "claude",
            Cli::Codex => "codex",
            Cli::Gemini => "gemini",
            Cli::Opencode => "opencode",
            Cli::Cursor => "cursor",
            Cli::Aider => "aider",
        }
    }
}

fn which_cli() -> Option<Cli> {
    let name = std::env::var("FAKE_AGENT_CLI").ok().or_else(|| {
        std::env::args().next().and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
    })?;
    Some(match name.as_str() {
        "claude" => Cli::Claude,
        "codex" => Cli::Codex,
        "gemini" => Cli::Gemini,
        "opencode" => Cli::Opencode,
        "cursor" | "cursor-agent" | "agent" => Cli::Cursor,
        "aider" => Cli::Aider,
        _ => return None,
    })
}

fn new_id(cli: Cli) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = nanos ^ ((std::process::id() as u128) << 64);
    let hex = format!("{n:032x}");
    match cli {
        Cli::Opencode => format!("ses_{}", &hex[..26]),
        _ => format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        ),
    }
}

fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn warn(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn version(cli: Cli) -> &'static str {
    match cli {
        Cli::Claude => "2.1.197 (Claude Code)",
        Cli::Codex => "codex-cli 0.169.0",
        Cli::Gemini => "0.61.0",
        Cli::Opencode => "1.18.33",
        Cli::Cursor => "2026.01.28-fd13201",
        Cli::Aider => "aider 0.86.2",
    }
}

/// The provider's JSON error body, as the CLIs pass it through.
fn error_body(code: u16, msg: &str) -> String {
    let kind = match code {
        401 => "authentication_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": msg, "code": code, "status": kind}})
        .to_string()
}

/// A JSON object laid out as `JSON.stringify(v, null, 2)` does, its fields in this order (as
/// Gemini prints its `-o json` output), without a final newline.
fn indented(fields: &[(&str, Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let v = serde_json::to_string_pretty(v)
                .expect("JSON value")
                .replace('\n', "\n  ");
            format!("  {}: {v}", json!(k))
        })
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}

/// Codex refuses a longer prompt (measured on 0.169.0).
const CODEX_MAX_CHARS: usize = 1 << 20;

/// Gemini's flags that change its output and sessions.
struct GeminiFlags {
    /// `-o`/`--output-format`: `text` (the default), `json` or `stream-json`.
    output: String,
    /// `--session-id`: the id of a new session.
    session_id: Option<String>,
}

impl GeminiFlags {
    fn parse(argv: &[String]) -> GeminiFlags {
        GeminiFlags {
            output: value_after(argv, &["-o", "--output-format"]).unwrap_or_else(|| "text".into()),
            session_id: value_after(argv, &["--session-id"]),
        }
    }
}

struct Run {
    cli: Cli,
    gemini: Option<GeminiFlags>,
    stdin_note: Option<&'static str>,
    script: Script,
    session: String,
    dir: PathBuf,
    can_write: bool,
    prompt: String,
}

impl Run {
    fn reply(&self) -> String {
        self.script.reply.clone().unwrap_or_else(|| {
            let last = self
                .prompt
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            format!("FAKE_REPLY: hello from the fake model. You said: {last}")
        })
    }

    /// Write the scripted files if allowed; the paths refused otherwise.
    fn write_files(&self) -> Vec<String> {
        let mut refused = Vec::new();
        for (path, text) in &self.script.writes {
            let full = self.dir.join(path);
            if !self.can_write {
                refused.push(full.display().to_string());
                continue;
            }
            if let Some(parent) = full.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if let Err(e) = std::fs::write(&full, format!("{text}\n")) {
                warn(&format!("fake-agent: cannot write {}: {e}", full.display()));
            }
        }
        refused
    }

    fn pause(&self) {
        if let Some(s) = self.script.sleep {
            std::thread::sleep(Duration::from_secs_f64(s));
        }
        if self.script.hang {
            hang();
        }
    }

    fn claude(&self, cursor: bool) -> i32 {
        let sid = &self.session;
        emit(
            json!({"type": "system", "subtype": "init", "cwd": self.dir, "session_id": sid,
            "tools": ["Bash", "Edit", "Read", "Write"], "model": "claude-opus-4-8",
            "permissionMode": "default"}),
        );
        self.pause();
        if let Some((code, msg)) = &self.script.error {
            if cursor {
                warn(&format!("Error: API error ({code}): {msg}"));
                return 1;
            }
            let text = match code {
                401 => format!("Failed to authenticate. API Error: 401 {msg}"),
                429 => format!("API Error: Request rejected (429) · {msg}"),
                _ => format!("API Error: {code} {msg}"),
            };
            emit(
                json!({"type": "assistant", "message": {"model": "<synthetic>", "role": "assistant",
                "content": [{"type": "text", "text": text}]}, "session_id": sid}),
            );
            if !self.script.no_result {
                emit(
                    json!({"type": "result", "subtype": "success", "is_error": true,
                    "api_error_status": code, "duration_ms": 10, "num_turns": 1, "result": text,
                    "session_id": sid, "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0},
                    "permission_denials": []}),
                );
            }
            return 1;
        }
        let mut denials = Vec::new();
        let mut turns = 1;
        if !self.script.writes.is_empty() {
            turns = 2;
            emit(json!({"type": "assistant", "message": {"role": "assistant",
                "content": [{"type": "text", "text": "I'll create the file now."}],
                "usage": {"input_tokens": 10, "output_tokens": 5}}, "session_id": sid}));
            let refused = self.write_files();
            for (i, (path, text)) in self.script.writes.iter().enumerate() {
                let full = self.dir.join(path).display().to_string();
                let id = format!("toolu_{i:04}");
                emit(
                    json!({"type": "assistant", "message": {"role": "assistant", "content": [
                    {"type": "tool_use", "id": id, "name": "Write",
                     "input": {"file_path": full, "content": format!("{text}\n")}}]}, "session_id": sid}),
                );
                if refused.contains(&full) {
                    let msg = format!("Claude requested permissions to write to {full}, but you haven't granted it yet.");
                    emit(
                        json!({"type": "user", "message": {"role": "user", "content": [
                        {"type": "tool_result", "content": msg, "is_error": true, "tool_use_id": id}]},
                        "session_id": sid}),
                    );
                    denials.push(json!({"tool_name": "Write", "tool_use_id": id,
                        "tool_input": {"file_path": full, "content": format!("{text}\n")}}));
                } else {
                    emit(
                        json!({"type": "user", "message": {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": id,
                         "content": format!("File created successfully at: {full}")}]}, "session_id": sid}),
                    );
                }
            }
        }
        let reply = self.reply();
        emit(json!({"type": "assistant", "message": {"role": "assistant",
            "content": [{"type": "text", "text": reply}],
            "usage": {"input_tokens": 10, "output_tokens": 5}}, "session_id": sid}));
        if !self.script.no_result {
            if cursor {
                emit(
                    json!({"type": "result", "subtype": "success", "duration_ms": 20,
                    "duration_api_ms": 20, "is_error": false, "result": reply, "session_id": sid,
                    "request_id": "req_fake"}),
                );
            } else {
                emit(
                    json!({"type": "result", "subtype": "success", "is_error": false,
                    "api_error_status": null, "duration_ms": 20, "num_turns": turns, "result": reply,
                    "stop_reason": "end_turn", "session_id": sid,
                    "total_cost_usd": 0.000105 * turns as f64,
                    "usage": {"input_tokens": 10 * turns, "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0, "output_tokens": 5 * turns},
                    "permission_denials": denials}),
                );
            }
        }
        0
    }

    fn codex(&self) -> i32 {
        if let Some(note) = self.stdin_note {
            warn(note);
        }
        emit(json!({"type": "thread.started", "thread_id": self.session}));
        let chars = self.prompt.chars().count();
        if chars > CODEX_MAX_CHARS {
            warn(&format!("Error: turn/start: turn/start failed: Input exceeds the maximum length of {CODEX_MAX_CHARS} characters. (code -32602), data: {{\"input_error_code\":\"input_too_large\",\"max_chars\":{CODEX_MAX_CHARS},\"actual_chars\":{chars}}}"));
            warn("");
            warn("Stack backtrace:");
            warn("   0: <unknown>");
            return 1;
        }
        emit(json!({"type": "turn.started"}));
        self.pause();
        if let Some(n) = self.script.reconnect {
            for i in 1..=n {
                emit(json!({"type": "error", "message": format!(
                    "Reconnecting... {i}/{n} (stream disconnected before completion: error sending request for url (http://127.0.0.1:9/v1/responses))")}));
                std::thread::sleep(Duration::from_secs(1));
            }
            hang();
        }
        if let Some((code, msg)) = &self.script.error {
            let text = match code {
                401 => format!("unexpected status 401 Unauthorized: {msg}, url: http://127.0.0.1:8766/v1/responses"),
                429 => "exceeded retry limit, last status: 429 Too Many Requests".to_string(),
                _ => error_body(*code, msg),
            };
            emit(json!({"type": "error", "message": text}));
            emit(json!({"type": "turn.failed", "error": {"message": text}}));
            return 1;
        }
        let mut items = 0;
        if !self.script.writes.is_empty() {
            emit(
                json!({"type": "item.completed", "item": {"id": "item_0", "type": "agent_message",
                "text": "I'll create the file now."}}),
            );
            items += 1;
            let refused = self.write_files();
            if refused.is_empty() {
                let changes: Vec<Value> = self
                    .script
                    .writes
                    .iter()
                    .map(|(p, _)| json!({"path": self.dir.join(p), "kind": "add"}))
                    .collect();
                emit(
                    json!({"type": "item.completed", "item": {"id": format!("item_{items}"),
                    "type": "file_change", "changes": changes, "status": "completed"}}),
                );
                items += 1;
            } else {
                warn("2026-01-01T00:00:00.000000Z ERROR codex_core::tools::router: error=patch rejected: writing is blocked by read-only sandbox; rejected by user approval settings");
            }
        }
        emit(
            json!({"type": "item.completed", "item": {"id": format!("item_{items}"),
            "type": "agent_message", "text": self.reply()}}),
        );
        if !self.script.no_result {
            emit(
                json!({"type": "turn.completed", "usage": {"input_tokens": 10, "cached_input_tokens": 0,
                "cache_write_input_tokens": 0, "output_tokens": 5, "reasoning_output_tokens": 0}}),
            );
        }
        0
    }

    /// Gemini CLI 0.61.0, headless. Sessions are kept as files under
    /// `$HOME/.gemini/tmp/<working dir's name>/chats/` from the start of a turn, as the real CLI
    /// keeps them: `--resume` of an id not there, or `--session-id` of one that is, exits 42.
    /// `-o stream-json` prints one event a line; `-o json` one object indented by two spaces at
    /// the end (without a final newline), and on failure nothing on stdout but the object
    /// `{session_id, error: {type, message, code}}` on stderr. An API error exits with its HTTP
    /// status mod 256; 429 and 5xx are retried first (ten attempts, here a tenth of a second
    /// apart instead of minutes).
    fn gemini(&self, resumed: bool) -> i32 {
        let flags = self.gemini.as_ref().expect("gemini flags");
        warn("Warning: 256-color support not detected. Using a terminal with at least 256-color support is recommended for a better visual experience.");
        warn("Ripgrep is not available. Falling back to GrepTool.");
        let chats = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".gemini/tmp")
            .join(self.dir.file_name().unwrap_or_default())
            .join("chats");
        let transcript = chats.join(format!("session-{}.jsonl", self.session));
        if resumed && !transcript.exists() {
            warn(&format!(
                "Error resuming session: Invalid session identifier \"{}\".",
                self.session
            ));
            warn(&format!("  Searched for sessions in {}.", chats.display()));
            warn("  Use --list-sessions to see available sessions, then use --resume {number}, --resume {uuid}, or --resume latest.");
            return 42;
        }
        if !resumed && flags.session_id.is_some() && transcript.exists() {
            warn(&format!("Error starting session: Session ID \"{}\" already exists. Use --resume to resume it, or provide a different ID.", self.session));
            return 42;
        }
        let _ = std::fs::create_dir_all(&chats);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&transcript)
        {
            let _ = writeln!(f, "{}", json!({"type": "user", "content": self.prompt}));
        }
        let stream = flags.output == "stream-json";
        let json_out = flags.output == "json";
        let ts = "2026-01-01T00:00:00.000Z";
        if stream {
            emit(
                json!({"type": "init", "timestamp": ts, "session_id": self.session, "model": "gemini-2.5-flash"}),
            );
            emit(
                json!({"type": "message", "timestamp": ts, "role": "user", "content": self.prompt}),
            );
        }
        self.pause();
        if let Some((code, msg)) = &self.script.error {
            let body = error_body(*code, msg);
            // The error's message: the provider's body, or after the retries only its message
            // (measured for 429; 5xx, not retried to its end in the lab, is assumed alike).
            let mut message = body.clone();
            let mut stream_message = format!("[API Error: {body}]");
            if *code == 429 || *code >= 500 {
                for i in 1..10 {
                    warn(&format!("Attempt {i} failed with status {code}. Retrying with backoff... _ApiError: {body}"));
                    warn(
                        "    at throwErrorIfNotOK (file:///gemini-cli/bundle/chunk.js:267833:24) {",
                    );
                    warn(&format!("  status: {code}"));
                    warn("}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                warn(&format!("Attempt 10 failed: {msg}. Max attempts reached"));
                message = msg.clone();
                stream_message = format!("[API Error: {msg}]");
                if *code == 429 {
                    stream_message.push_str("\nPlease wait and try again later. To increase your limits, request a quota increase through AI Studio, or switch to another /auth method");
                }
            }
            warn(&format!("Error when talking to Gemini API Full report available at: /tmp/gemini-client-error.json _ApiError: {body}"));
            warn("    at throwErrorIfNotOK (file:///gemini-cli/bundle/chunk.js:267833:24)");
            warn("    at async Turn.run (file:///gemini-cli/bundle/chunk.js:333001:24) {");
            warn(&format!("  status: {code}"));
            warn("}");
            if json_out {
                let error = json!({"type": "Error", "message": message, "code": code});
                warn(&indented(&[
                    ("session_id", json!(self.session)),
                    ("error", error),
                ]));
            } else if stream {
                emit(json!({"type": "result", "timestamp": ts, "status": "error",
                    "error": {"type": "unknown", "message": stream_message},
                    "stats": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0, "cached": 0}}));
            }
            return i32::from(*code) % 256;
        }
        let mut calls = 0;
        if !self.script.writes.is_empty() && self.can_write {
            if stream {
                emit(
                    json!({"type": "message", "timestamp": ts, "role": "assistant",
                    "content": "I'll create the file now.", "delta": true}),
                );
            }
            self.write_files();
            for (i, (path, text)) in self.script.writes.iter().enumerate() {
                let id = format!("write_file_{i}");
                if stream {
                    emit(
                        json!({"type": "tool_use", "timestamp": ts, "tool_name": "write_file", "tool_id": id,
                        "parameters": {"file_path": self.dir.join(path), "content": format!("{text}\n")}}),
                    );
                    emit(
                        json!({"type": "tool_result", "timestamp": ts, "tool_id": id, "status": "success"}),
                    );
                }
                calls += 1;
            }
        }
        if self.script.no_result {
            return 0;
        }
        if stream {
            emit(
                json!({"type": "message", "timestamp": ts, "role": "assistant", "content": self.reply(), "delta": true}),
            );
            emit(
                json!({"type": "result", "timestamp": ts, "status": "success", "stats": {
                "total_tokens": 15, "input_tokens": 10, "output_tokens": 5, "cached": 0, "input": 10,
                "duration_ms": 20, "tool_calls": calls}}),
            );
        } else if json_out {
            let requests = 1 + calls;
            let tokens = json!({"input": 10 * requests, "prompt": 10 * requests,
                "candidates": 5 * requests, "total": 15 * requests, "cached": 0, "thoughts": 0,
                "tool": 0});
            let api = json!({"totalRequests": requests, "totalErrors": 0, "totalLatencyMs": 20,
                "errorsByType": {}});
            let stats = json!({
                "models": {"gemini-2.5-flash": {"api": api, "tokens": tokens,
                    "roles": {"main": {"totalRequests": requests, "totalErrors": 0,
                        "totalLatencyMs": 20, "tokens": tokens}}}},
                "tools": {"totalCalls": calls, "totalSuccess": calls, "totalFail": 0,
                    "totalDurationMs": 0,
                    "totalDecisions": {"accept": calls, "reject": 0, "modify": 0, "auto_accept": 0},
                    "byName": {}},
                "files": {"totalLinesAdded": calls, "totalLinesRemoved": 0}});
            let out = indented(&[
                ("session_id", json!(self.session)),
                ("response", json!(self.reply())),
                ("stats", stats),
            ]);
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        } else {
            say(&self.reply());
        }
        0
    }

    fn opencode(&self) -> i32 {
        let sid = &self.session;
        let ts = 1_795_264_984_130u64;
        if let Some((code, msg)) = &self.script.error {
            self.pause();
            emit(
                json!({"type": "error", "timestamp": ts, "sessionID": sid, "error": {"name": "APIError",
                "data": {"message": msg, "statusCode": code, "isRetryable": false,
                    "responseBody": error_body(*code, msg)}}}),
            );
            return 1;
        }
        let step_start = json!({"type": "step_start", "timestamp": ts, "sessionID": sid,
            "part": {"id": "prt_1", "messageID": "msg_1", "sessionID": sid, "type": "step-start"}});
        let step_finish = |reason: &str| {
            json!({"type": "step_finish", "timestamp": ts, "sessionID": sid,
            "part": {"id": "prt_9", "reason": reason, "messageID": "msg_1", "sessionID": sid, "type": "step-finish",
                "tokens": {"total": 15, "input": 10, "output": 5, "reasoning": 0, "cache": {"write": 0, "read": 0}},
                "cost": 0.0001}})
        };
        emit(step_start.clone());
        self.pause();
        if !self.script.writes.is_empty() {
            emit(json!({"type": "text", "timestamp": ts, "sessionID": sid,
                "part": {"id": "prt_2", "type": "text", "text": "I'll create the file now."}}));
            let refused = self.write_files();
            for (i, (path, text)) in self.script.writes.iter().enumerate() {
                let full = self.dir.join(path);
                let state = if refused.contains(&full.display().to_string()) {
                    json!({"status": "error", "input": {"filePath": full, "content": format!("{text}\n")},
                        "error": "The user has specified a rule which prevents you from using this specific tool call."})
                } else {
                    json!({"status": "completed", "input": {"filePath": full, "content": format!("{text}\n")},
                        "output": "Wrote file successfully."})
                };
                emit(
                    json!({"type": "tool_use", "timestamp": ts, "sessionID": sid, "part": {"type": "tool",
                    "tool": "write", "callID": format!("call_{i}"), "state": state}}),
                );
            }
            emit(step_finish("tool-calls"));
            emit(step_start);
        }
        emit(json!({"type": "text", "timestamp": ts, "sessionID": sid,
            "part": {"id": "prt_3", "type": "text", "text": self.reply()}}));
        if !self.script.no_result {
            emit(step_finish("stop"));
        }
        0
    }

    fn aider(&self) -> i32 {
        warn("Input is not a terminal");
        say("Aider v0.86.2");
        say("Model: openai/fake-model with whole edit format");
        say("Git repo: .git with 1 files");
        say("Repo-map: disabled");
        self.pause();
        if let Some((code, msg)) = &self.script.error {
            let kind = match code {
                401 => "AuthenticationError",
                429 => "RateLimitError",
                400..=499 => "BadRequestError",
                _ => "InternalServerError",
            };
            say(&format!("litellm.{kind}: {kind}: OpenAIException - {msg}"));
            return 0;
        }
        let refused = self.write_files();
        say(&self.reply());
        for (path, _) in &self.script.writes {
            if !refused.contains(&self.dir.join(path).display().to_string()) {
                say(&format!("Applied edit to {path}"));
            }
        }
        say("Tokens: 1.2k sent, 85 received. Cost: $0.0012 message, $0.0012 session.");
        let history = self.dir.join(".aider.chat.history.md");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(history)
        {
            let _ = writeln!(f, "#### {}\n\n{}\n", self.prompt, self.reply());
        }
        0
    }
}

fn main() {
    let Some(cli) = which_cli() else {
        eprintln!("fake-agent: set FAKE_AGENT_CLI or start me as claude, codex, gemini, opencode, cursor-agent or aider");
        std::process::exit(2);
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if has(&argv, "--version") || has(&argv, "-V") || has(&argv, "-v") {
        say(version(cli));
        return;
    }
    // Like the real CLIs, read a non-terminal stdin to its end (an open pipe would block).
    let mut stdin = String::new();
    // SAFETY: isatty only inspects file descriptor 0.
    let piped = unsafe { libc::isatty(0) } == 0;
    if piped {
        let _ = std::io::stdin().read_to_string(&mut stdin);
    }
    let args = parse_args(cli, &argv, piped.then_some(stdin.as_str()));
    let mut script = Script::default();
    if let Ok(path) = std::env::var("FAKE_AGENT_SCRIPT") {
        match std::fs::read_to_string(&path) {
            Ok(text) => script.read(cli, &text),
            Err(e) => {
                eprintln!("fake-agent: cannot read FAKE_AGENT_SCRIPT {path}: {e}");
                std::process::exit(2);
            }
        }
    }
    script.read(cli, &args.prompt);
    let gemini = (cli == Cli::Gemini).then(|| GeminiFlags::parse(&argv));
    let session = args
        .resume
        .clone()
        .or_else(|| gemini.as_ref().and_then(|g| g.session_id.clone()))
        .or_else(|| script.session.clone())
        .unwrap_or_else(|| new_id(cli));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if let Ok(log) = std::env::var("FAKE_AGENT_LOG") {
        let line = json!({"cli": cli.name(), "argv": argv, "cwd": cwd,
            "prompt": args.prompt, "session": session, "resumed": args.resume.is_some(), "stdin": stdin});
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            // One write: a reader never sees half a line followed by another's.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
    if cli == Cli::Claude {
        // Like Claude Code: sessions live in $CLAUDE_CONFIG_DIR (or ~/.claude)/projects/<cwd with
        // every character but letters, digits and '-' made '-'>/<session>.jsonl; resuming an
        // id that is not there fails with exit 1 and nothing on stdout.
        if let Some(transcript) = claude_transcript(&cwd, &session) {
            if args.resume.is_some() && !transcript.exists() {
                eprintln!("No conversation found with session ID: {session}");
                std::process::exit(1);
            }
            if let Some(dir) = transcript.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&transcript)
            {
                let _ = writeln!(
                    f,
                    "{}",
                    json!({"type": "user", "sessionId": session, "message": {"role": "user", "content": args.prompt}})
                );
            }
        }
    }
    let exit_override = script.exit;
    let run = Run {
        cli,
        gemini,
        stdin_note: args.stdin_note,
        script,
        session,
        dir: args.dir.unwrap_or(cwd),
        can_write: args.can_write,
        prompt: args.prompt,
    };
    let code = match run.cli {
        Cli::Claude => run.claude(false),
        Cli::Cursor => run.claude(true),
        Cli::Codex => run.codex(),
        Cli::Gemini => run.gemini(args.resume.is_some()),
        Cli::Opencode => run.opencode(),
        Cli::Aider => run.aider(),
    };
    std::process::exit(exit_override.unwrap_or(code));
}

/// Where Claude Code keeps a session's transcript for a working directory.
fn claude_transcript(cwd: &Path, session: &str) -> Option<PathBuf> {
    let config = match std::env::var_os("CLAUDE_CONFIG_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".claude"),
    };
    let project: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Some(
        config
            .join("projects")
            .join(project)
            .join(format!("{session}.jsonl")),
    )
}

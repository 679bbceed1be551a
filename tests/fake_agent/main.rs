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
//! | `FAKE_LEAVE_MODES` | interactive: exit without undoing the terminal modes (see below) |
//!
//! A line `<cli>: DIRECTIVE` (e.g. `claude: FAKE_ERROR 429`) applies only when impersonating
//! that CLI (`cursor` for cursor-agent), so one prompt can script a fallback chain.
//!
//! The prompt is read where the real CLI reads it, as measured with the pinned versions (see
//! `parse_args`): the prompt argument and/or a non-terminal stdin (claude, codex `-`, gemini,
//! opencode), `--message`/`--message-file` (aider), the argument only (cursor-agent).
//!
//! A resume flag (`--resume ID`, `exec resume ID`, `-s ID`) keeps the given session id; a
//! new session gets the id of gemini's `--session-id`, else of `FAKE_SESSION`, else a fresh one
//! (a version 7 UUID for codex, `ses_…` for opencode). `--version` prints a version line. With
//! `FAKE_AGENT_LOG` set, one JSON line per start is appended to that file: `{"cli", "argv",
//! "cwd", "prompt", "session", "resumed", "stdin", "named_files"}` (what the files the prompt
//! names by an absolute path held when it started), plus `"interactive": true` for an
//! interactive start. Sessions are kept on disk where the real CLIs keep them (see `Store`);
//! `opencode session list --format json` lists the fake OpenCode's.
//!
//! Interactive mode: started with the CLI's interactive command line (no `-p`, `exec`, `run`,
//! `--message`: see `is_interactive`) on a terminal, the fake acts like the CLI's own TUI:
//! - prints `fake <cli> interactive session <id>` (`… resumed with <n> earlier turns` when it
//!   continues a session; aider's id is `none`), then switches on the alternate screen,
//!   bracketed paste, mouse reporting and the kitty keyboard protocol and turns the terminal's
//!   echo off (lines stay canonical; it echoes each line itself as `> <line>`);
//! - the first message (the prompt argument; aider's `/code` line of its `--load` file) is a
//!   turn: its directives run (`FAKE_WRITE` with the CLI's write permissions, and files the
//!   message names by absolute path are read for directives too, as an agent reads a prompt
//!   file it is pointed at), then `fake: <reply>`;
//! - each line from the terminal is a turn the same way; `/exit` or end of input ends with exit
//!   0, `FAKE_EXIT <n>` with `n`;
//! - on leaving it undoes the modes and restores the terminal, unless `FAKE_LEAVE_MODES` was in
//!   a turn or `FAKE_AGENT_LEAVE_MODES=1` is set: then it leaves them on, as a crashed TUI does.
//!
//! Continuing a session the CLI does not have fails as the real CLI does (claude exit 1, codex
//! exit 1, gemini exit 42, opencode exit 1).

use std::io::{BufRead, Read, Write};
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
    leave_modes: bool,
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
                "FAKE_LEAVE_MODES" => self.leave_modes = true,
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
    "--add-dir",
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
        // A version 7 UUID, as Codex's: the time in milliseconds first.
        Cli::Codex => {
            let ms = now_ms();
            format!(
                "{:08x}-{:04x}-7{}-8{}-{}{}",
                (ms >> 16) & 0xffff_ffff,
                ms & 0xffff,
                &hex[17..20],
                &hex[21..24],
                &hex[24..32],
                &hex[4..8]
            )
        }
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

/// The fake model's answer when the prompt names none: the prompt's last line, quoted.
fn default_reply(prompt: &str) -> String {
    let last = prompt
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    format!("FAKE_REPLY: hello from the fake model. You said: {last}")
}

/// Write each `(path, text)` of `writes` (text + newline) under `dir` if `can_write`; the full
/// paths refused otherwise.
fn apply_writes(writes: &[(String, String)], dir: &Path, can_write: bool) -> Vec<String> {
    let mut refused = Vec::new();
    for (path, text) in writes {
        let full = dir.join(path);
        if !can_write {
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
        self.script
            .reply
            .clone()
            .unwrap_or_else(|| default_reply(&self.prompt))
    }

    /// Write the scripted files if allowed; the paths refused otherwise.
    fn write_files(&self) -> Vec<String> {
        apply_writes(&self.script.writes, &self.dir, self.can_write)
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
        let Some(store) = Store::locate(Cli::Gemini, &self.dir, &self.session) else {
            warn("fake-agent: no HOME");
            return 1;
        };
        if resumed && !store.exists() {
            let chats = store.path.parent().unwrap_or(Path::new(""));
            warn(&format!(
                "Error resuming session: Invalid session identifier \"{}\".",
                self.session
            ));
            warn(&format!("  Searched for sessions in {}.", chats.display()));
            warn("  Use --list-sessions to see available sessions, then use --resume {number}, --resume {uuid}, or --resume latest.");
            return 42;
        }
        if !resumed && flags.session_id.is_some() && store.exists() {
            warn(&format!("Error starting session: Session ID \"{}\" already exists. Use --resume to resume it, or provide a different ID.", self.session));
            return 42;
        }
        store.create(&self.dir, "");
        store.append(true, &self.prompt);
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
    if cli == Cli::Opencode
        && positionals(&argv, OPENCODE_VALUES).starts_with(&["session".into(), "list".into()])
    {
        std::process::exit(opencode_session_list());
    }
    // SAFETY: isatty only inspects file descriptor 0.
    let terminal = unsafe { libc::isatty(0) } == 1;
    if terminal && is_interactive(cli, &argv) {
        std::process::exit(interactive(cli, &argv));
    }
    std::process::exit(headless(cli, &argv, terminal));
}

/// The directives of `FAKE_AGENT_SCRIPT` (read first) and of `prompt`; exits 2 if the script
/// cannot be read.
fn load_script(cli: Cli, prompt: &str) -> Script {
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
    script.read(cli, prompt);
    script
}

/// Append one line for this start to `FAKE_AGENT_LOG`, if set.
fn log_start(line: Value) {
    if let Ok(log) = std::env::var("FAKE_AGENT_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            // One write: a reader never sees half a line followed by another's.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// One headless run (print mode, `exec`, `run`, `--message`); the exit code.
fn headless(cli: Cli, argv: &[String], terminal: bool) -> i32 {
    // Like the real CLIs, read a non-terminal stdin to its end (an open pipe would block).
    let mut stdin = String::new();
    if !terminal {
        let _ = std::io::stdin().read_to_string(&mut stdin);
    }
    let args = parse_args(cli, argv, (!terminal).then_some(stdin.as_str()));
    let script = load_script(cli, &args.prompt);
    let gemini = (cli == Cli::Gemini).then(|| GeminiFlags::parse(argv));
    // Claude Code's `--fork-session` and OpenCode's `--fork`: the resumed conversation goes on
    // under a new id, the original left as it was.
    let forked_from = args.resume.clone().filter(|_| {
        (cli == Cli::Claude && has(argv, "--fork-session"))
            || (cli == Cli::Opencode && has(argv, "--fork"))
    });
    let session = forked_from
        .as_ref()
        .map(|_| new_id(cli))
        .or_else(|| args.resume.clone())
        .or_else(|| gemini.as_ref().and_then(|g| g.session_id.clone()))
        .or_else(|| script.session.clone())
        .unwrap_or_else(|| new_id(cli));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let named: serde_json::Map<String, serde_json::Value> = files_named(&args.prompt)
        .into_iter()
        .map(|(path, content)| (path, content.into()))
        .collect();
    log_start(json!({"cli": cli.name(), "argv": argv, "cwd": cwd,
        "prompt": args.prompt, "session": session, "resumed": args.resume.is_some(), "stdin": stdin,
        "forked_from": forked_from, "named_files": named}));
    let dir = args.dir.clone().unwrap_or_else(|| cwd.clone());
    if let Some(original) = &forked_from {
        fork_session(
            cli,
            if cli == Cli::Claude { &cwd } else { &dir },
            original,
            &session,
        );
    }
    if let Err(code) = keep_headless_session(cli, &cwd, &dir, &session, &args) {
        return code;
    }
    let exit_override = script.exit;
    let run = Run {
        cli,
        gemini,
        stdin_note: args.stdin_note,
        script,
        session,
        dir,
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
    exit_override.unwrap_or(code)
}

/// A fork starts as a copy of the original session's file.
fn fork_session(cli: Cli, project: &Path, original: &str, new: &str) {
    let (Some(from), Some(to)) = (
        Store::locate(cli, project, original),
        Store::locate(cli, project, new),
    ) else {
        return;
    };
    if let Some(dir) = to.path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::copy(&from.path, &to.path);
}

/// Keep a headless run's prompt in its session where the CLI keeps sessions (gemini's in
/// `Run::gemini`, aider's history as it answers). Like Claude Code, resuming a session that is
/// not there fails with exit 1 and nothing on stdout; the others start it.
fn keep_headless_session(
    cli: Cli,
    cwd: &Path,
    dir: &Path,
    session: &str,
    args: &Args,
) -> Result<(), i32> {
    let project = if cli == Cli::Claude { cwd } else { dir };
    if matches!(cli, Cli::Gemini | Cli::Aider) {
        return Ok(());
    }
    let Some(store) = Store::locate(cli, project, session) else {
        return Ok(());
    };
    if cli == Cli::Claude && args.resume.is_some() && !store.exists() {
        eprintln!("No conversation found with session ID: {session}");
        return Err(1);
    }
    store.create(project, "codex_exec");
    store.append(true, &args.prompt);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sessions on disk, where and as each real CLI keeps them (measured with the pinned versions
// unless said otherwise), so git machine's `find_session` and `transcript_path` work against
// the fake as against the real CLI:
// - claude: `$CLAUDE_CONFIG_DIR` (or `~/.claude`)`/projects/<cwd, non-alphanumerics made
//   '-'>/<id>.jsonl`;
// - codex: `$CODEX_HOME` (or `~/.codex`)`/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl`, first
//   line `{"type":"session_meta","payload":{"id","cwd",…}}` (times in UTC here);
// - gemini: `$GEMINI_CLI_HOME` (or `$HOME`)`/.gemini/tmp/<slug>/chats/session-<time>-<id, first
//   8>.jsonl`, first line `{"sessionId",…}`; the slug registered in `.gemini/projects.json` and
//   `.project_root` markers;
// - opencode: the real one keeps SQLite; the fake keeps `$XDG_DATA_HOME` (or
//   `~/.local/share`)`/opencode/fake-agent-sessions/<id>.jsonl`, read back by its `session list`;
// - cursor: `~/.cursor/chats/<md5 of the workspace's real path>/<id>/store.db` (the real one is
//   SQLite; here JSON lines, only its place matters);
// - aider: `.aider.chat.history.md` in the working directory.

/// A session of the impersonated CLI on disk.
struct Store {
    cli: Cli,
    path: PathBuf,
    id: String,
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Milliseconds since 1970.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `ms` as a UTC civil date and time: (year, month, day, hour, minute, second).
fn civil(ms: u64) -> (u64, u64, u64, u64, u64, u64) {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    let n = |range: std::ops::Range<usize>| text[range].parse::<u64>().unwrap_or(0);
    (n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19))
}

fn first_line(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.lines().next()?).ok()
}

impl Store {
    /// Session `id` of `cli` in the project folder `dir`: the file it is in, or where a new one
    /// goes.
    fn locate(cli: Cli, dir: &Path, id: &str) -> Option<Store> {
        let path = match cli {
            Cli::Claude => claude_transcript(dir, id)?,
            Cli::Codex => codex_rollout(id),
            Cli::Gemini => {
                let chats = gemini_chats(dir)?;
                gemini_session_file(&chats, id).unwrap_or_else(|| {
                    let (y, mo, d, h, mi, _) = civil(now_ms());
                    let short = id.get(..8).unwrap_or(id);
                    chats.join(format!(
                        "session-{y:04}-{mo:02}-{d:02}T{h:02}-{mi:02}-{short}.jsonl"
                    ))
                })
            }
            Cli::Opencode => opencode_sessions().join(format!("{id}.jsonl")),
            Cli::Cursor => {
                let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
                let workspace = md5_hex(real.to_string_lossy().as_bytes());
                let chats = home().join(".cursor").join("chats");
                chats.join(workspace).join(id).join("store.db")
            }
            Cli::Aider => dir.join(".aider.chat.history.md"),
        };
        Some(Store {
            cli,
            path,
            id: id.to_string(),
        })
    }

    fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// Create the file of a new session with the CLI's header line (if it has one).
    fn create(&self, dir: &Path, originator: &str) {
        if self.exists() {
            return;
        }
        let ts = "2026-01-01T00:00:00.000Z";
        let header = match self.cli {
            Cli::Codex => Some(json!({"timestamp": ts, "type": "session_meta",
                "payload": {"id": self.id, "timestamp": ts, "cwd": dir,
                    "originator": originator, "cli_version": "0.169.0"}})),
            Cli::Gemini => Some(json!({"sessionId": self.id, "projectHash": "fake",
                "startTime": ts, "lastUpdated": ts, "kind": "main"})),
            Cli::Opencode => Some(json!({"id": self.id, "directory": dir, "created": now_ms()})),
            Cli::Cursor => Some(json!({"chatId": self.id, "workspace": dir})),
            Cli::Claude | Cli::Aider => None,
        };
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(
            &self.path,
            header.map(|h| format!("{h}\n")).unwrap_or_default(),
        );
    }

    /// Append one message, `user`'s or the agent's, in the CLI's format.
    fn append(&self, user: bool, text: &str) {
        let role = if user { "user" } else { "assistant" };
        let line = match self.cli {
            Cli::Claude if user => json!({"type": "user", "sessionId": self.id,
                "message": {"role": "user", "content": text}})
            .to_string(),
            Cli::Claude => json!({"type": "assistant", "sessionId": self.id,
                "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}})
            .to_string(),
            Cli::Codex => {
                let kind = if user { "input_text" } else { "output_text" };
                json!({"timestamp": "2026-01-01T00:00:00.000Z", "type": "response_item",
                    "payload": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}})
                .to_string()
            }
            Cli::Gemini => {
                let kind = if user { "user" } else { "gemini" };
                json!({"type": kind, "content": text}).to_string()
            }
            Cli::Opencode | Cli::Cursor => json!({"role": role, "text": text}).to_string(),
            Cli::Aider if user => format!("#### {text}\n"),
            Cli::Aider => format!("{text}\n"),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// How many user messages the session holds.
    fn user_turns(&self) -> usize {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter(|l| {
                let v = serde_json::from_str::<Value>(l).unwrap_or_default();
                match self.cli {
                    Cli::Aider => l.starts_with("#### "),
                    // Not the tool results Claude Code also files as "user".
                    Cli::Claude => v["type"] == "user" && v["message"]["content"].is_string(),
                    Cli::Gemini => v["type"] == "user",
                    Cli::Codex => v["payload"]["role"] == "user",
                    Cli::Opencode | Cli::Cursor => v["role"] == "user",
                }
            })
            .count()
    }
}

/// Where Claude Code keeps a session's transcript for a working directory.
fn claude_transcript(cwd: &Path, session: &str) -> Option<PathBuf> {
    let config = match env_dir("CLAUDE_CONFIG_DIR") {
        Some(dir) => dir,
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

/// Codex's rollout of `id`: the one in any day folder, else a new one for today.
fn codex_rollout(id: &str) -> PathBuf {
    let sessions = env_dir("CODEX_HOME")
        .unwrap_or_else(|| home().join(".codex"))
        .join("sessions");
    let suffix = format!("-{id}.jsonl");
    let children = |dirs: &[PathBuf]| -> Vec<PathBuf> {
        dirs.iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|e| e.flatten().map(|e| e.path()))
            .collect()
    };
    // sessions/YYYY/MM/DD
    let mut days = vec![sessions.clone()];
    for _ in 0..3 {
        days = children(&days).into_iter().filter(|p| p.is_dir()).collect();
    }
    let found = children(&days).into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("rollout-") && n.ends_with(&suffix))
    });
    found.unwrap_or_else(|| {
        let (y, mo, d, h, mi, s) = civil(now_ms());
        sessions
            .join(format!("{y:04}/{mo:02}/{d:02}"))
            .join(format!(
                "rollout-{y:04}-{mo:02}-{d:02}T{h:02}-{mi:02}-{s:02}{suffix}"
            ))
    })
}

/// `$GEMINI_CLI_HOME` (or `$HOME`)`/.gemini`.
fn gemini_dir() -> PathBuf {
    env_dir("GEMINI_CLI_HOME")
        .unwrap_or_else(home)
        .join(".gemini")
}

/// The chats folder of the project `dir`, registering the project as Gemini CLI does: its slug
/// from `projects.json`, else the folder's name made a slug (`-1`, `-2`, … when another folder
/// owns it), with `.project_root` markers under `tmp` and `history`.
fn gemini_chats(dir: &Path) -> Option<PathBuf> {
    let gemini = gemini_dir();
    let registry_path = gemini.join("projects.json");
    let mut registry: Value = std::fs::read_to_string(&registry_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({"projects": {}}));
    let path = dir.to_string_lossy().to_string();
    let owner = |slug: &str| {
        std::fs::read_to_string(gemini.join("tmp").join(slug).join(".project_root")).ok()
    };
    let slug = match registry["projects"][&path].as_str() {
        Some(slug) => slug.to_string(),
        None => {
            let name = dir.file_name()?.to_string_lossy().to_lowercase();
            let base: String = name
                .split(|c: char| !c.is_ascii_lowercase() && !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            let base = if base.is_empty() {
                "project".to_string()
            } else {
                base
            };
            let taken = |c: &str| {
                registry["projects"]
                    .as_object()
                    .is_some_and(|m| m.values().any(|v| v == c))
                    || owner(c).is_some_and(|o| o.trim() != path)
            };
            let slug = (0..)
                .map(|n| {
                    if n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    }
                })
                .find(|c| !taken(c))?;
            registry["projects"][&path] = json!(slug);
            let _ = std::fs::create_dir_all(&gemini);
            let _ = std::fs::write(&registry_path, registry.to_string());
            slug
        }
    };
    for base in ["tmp", "history"] {
        let marker = gemini.join(base).join(&slug).join(".project_root");
        let _ = std::fs::create_dir_all(marker.parent()?);
        let _ = std::fs::write(marker, &path);
    }
    Some(gemini.join("tmp").join(slug).join("chats"))
}

/// The session file of `id` in a Gemini chats folder.
fn gemini_session_file(chats: &Path, id: &str) -> Option<PathBuf> {
    let suffix = format!("-{}.jsonl", id.get(..8)?);
    std::fs::read_dir(chats)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("session-")
                && name.ends_with(&suffix)
                && first_line(p).is_some_and(|h| h["sessionId"] == id)
        })
}

/// Where the fake OpenCode keeps its sessions.
fn opencode_sessions() -> PathBuf {
    env_dir("XDG_DATA_HOME")
        .unwrap_or_else(|| home().join(".local").join("share"))
        .join("opencode")
        .join("fake-agent-sessions")
}

/// `opencode session list --format json`: every session, the last updated first, as OpenCode
/// 1.18.33 prints them (`id`, `title`, `updated`, `created`, `projectId`, `directory`).
fn opencode_session_list() -> i32 {
    let files = std::fs::read_dir(opencode_sessions())
        .map(|e| e.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut list: Vec<Value> = files
        .iter()
        .filter_map(|p| {
            let head = first_line(p)?;
            let modified = std::fs::metadata(p).ok()?.modified().ok()?;
            let updated = modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
            let title = std::fs::read_to_string(p).ok()?.lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["role"] == "user").then(|| v["text"].clone())
            });
            Some(
                json!({"id": head["id"], "title": title.unwrap_or(json!("New session")),
                "updated": updated, "created": head["created"], "projectId": "global",
                "directory": head["directory"]}),
            )
        })
        .collect();
    list.sort_by_key(|v| std::cmp::Reverse(v["updated"].as_u64()));
    say(&serde_json::to_string_pretty(&list).expect("JSON"));
    0
}

/// The MD5 digest of `data` in lower-case hex: Cursor names a workspace's chat folder by the
/// MD5 of its path.
fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::compute(data))
}

// ---------------------------------------------------------------------------------------------
// Interactive mode: the CLI's own terminal interface, as git machine starts it for a step with
// `mode = "interactive"` (see the module header).

/// Terminal modes real TUIs switch on (and may leave on when they crash): alternate screen,
/// bracketed paste, mouse reporting, kitty keyboard protocol.
const MODES_ON: &str = "\x1b[?1049h\x1b[?2004h\x1b[?1000h\x1b[>1u";
/// The same, switched off in reverse order.
const MODES_OFF: &str = "\x1b[<u\x1b[?1000l\x1b[?2004l\x1b[?1049l";

/// Whether `argv` is the CLI's interactive command line: none of its headless forms (claude and
/// cursor-agent `-p`, `codex exec`, gemini `-p`/`--prompt`, `opencode run`, aider `--message`
/// or `--message-file`).
fn is_interactive(cli: Cli, argv: &[String]) -> bool {
    match cli {
        Cli::Claude | Cli::Cursor => !has(argv, "-p") && !has(argv, "--print"),
        Cli::Codex => !matches!(
            positionals(argv, CODEX_VALUES).first().map(String::as_str),
            Some("exec" | "e")
        ),
        Cli::Gemini => value_after(argv, &["--prompt", "-p"]).is_none(),
        Cli::Opencode => {
            positionals(argv, OPENCODE_VALUES)
                .first()
                .map(String::as_str)
                != Some("run")
        }
        Cli::Aider => {
            value_after(argv, &["--message", "--msg", "-m", "--message-file", "-f"]).is_none()
        }
    }
}

/// What an interactive command line says.
struct Tui {
    cli: Cli,
    /// The first message ("" for none).
    first: String,
    resume: Option<String>,
    /// A session id given up front (`--session-id`).
    preset: Option<String>,
    /// The folder the agent works (and writes) in.
    dir: PathBuf,
    can_write: bool,
}

/// Read an interactive command line the way each CLI's TUI takes it (see `is_interactive`).
fn tui_args(cli: Cli, argv: &[String], cwd: &Path) -> Tui {
    let mut tui = Tui {
        cli,
        first: String::new(),
        resume: None,
        preset: None,
        dir: cwd.to_path_buf(),
        can_write: parse_args(cli, argv, None).can_write,
    };
    let joined = |words: Vec<String>| words.join(" ");
    match cli {
        Cli::Claude => {
            tui.first = joined(positionals(argv, CLAUDE_VALUES));
            tui.resume = value_after(argv, &["--resume", "-r"]);
            tui.preset = value_after(argv, &["--session-id"]);
        }
        Cli::Codex => {
            let mut words = positionals(argv, CODEX_VALUES);
            if words.first().map(String::as_str) == Some("resume") {
                words.remove(0);
                tui.resume = (!words.is_empty()).then(|| words.remove(0));
            }
            tui.first = joined(words);
            tui.dir = value_after(argv, &["-C", "--cd"]).map_or(tui.dir, PathBuf::from);
        }
        Cli::Gemini => {
            tui.first = value_after(argv, &["--prompt-interactive", "-i"]).unwrap_or_default();
            tui.resume = value_after(argv, &["--resume", "-r"]);
            tui.preset = value_after(argv, &["--session-id"]);
        }
        Cli::Opencode => {
            let mut values = OPENCODE_VALUES.to_vec();
            values.push("--prompt");
            let words = positionals(argv, &values);
            tui.dir = words.first().map_or(tui.dir, PathBuf::from);
            tui.first = value_after(argv, &["--prompt"]).unwrap_or_default();
            tui.resume = value_after(argv, &["-s", "--session"]);
        }
        Cli::Cursor => {
            tui.first = joined(positionals(argv, CURSOR_VALUES));
            tui.resume = value_after(argv, &["--resume"]);
            tui.dir = value_after(argv, &["--workspace"]).map_or(tui.dir, PathBuf::from);
            let mode = value_after(argv, &["--mode"]);
            tui.can_write = !matches!(mode.as_deref(), Some("ask" | "plan"));
        }
        Cli::Aider => {
            // `--load FILE` runs in-chat commands: a `/code MESSAGE` line sends MESSAGE.
            let load = value_after(argv, &["--load"]).and_then(|f| std::fs::read_to_string(f).ok());
            tui.first = load
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("/code ").map(String::from))
                .unwrap_or_default();
            tui.resume = has(argv, "--restore-chat-history").then(|| "none".to_string());
        }
    }
    tui
}

/// The error the CLI gives for a session it does not have, and its exit code.
fn unknown_session(cli: Cli, id: &str) -> (String, i32) {
    match cli {
        Cli::Claude => (format!("No conversation found with session ID: {id}"), 1),
        Cli::Codex => (format!("ERROR: No saved session found with ID {id}. Run `codex resume` without an ID to choose from existing sessions."), 1),
        Cli::Gemini => (format!("Error resuming session: Invalid session identifier \"{id}\"."), 42),
        Cli::Opencode => (format!("Error: Session not found: {id}"), 1),
        Cli::Cursor | Cli::Aider => (format!("Error: chat {id} not found"), 1),
    }
}

/// The session an interactive start uses: the one to continue (which must exist), or a new one
/// with the preset id, `FAKE_SESSION`, or a fresh id. Aider's is its history file ("none").
fn tui_session(tui: &Tui, script: &Script, cwd: &Path) -> Result<Store, (String, i32)> {
    let cli = tui.cli;
    if cli == Cli::Aider {
        return Store::locate(cli, cwd, "none").ok_or_else(|| ("no session".into(), 1));
    }
    // Claude Code and Gemini CLI keep sessions by the folder they run in.
    let dir = if matches!(cli, Cli::Claude | Cli::Gemini) {
        cwd
    } else {
        &tui.dir
    };
    let id = match (&tui.resume, &tui.preset) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => script.session.clone().unwrap_or_else(|| new_id(cli)),
    };
    let store = Store::locate(cli, dir, &id).ok_or_else(|| ("no home".to_string(), 1))?;
    if tui.resume.is_some() && !store.exists() {
        return Err(unknown_session(cli, &id));
    }
    if cli == Cli::Gemini && tui.resume.is_none() && store.exists() {
        return Err((format!("Error starting session: Session ID \"{id}\" already exists. Use --resume to resume it, or provide a different ID."), 42));
    }
    store.create(dir, "codex-tui");
    Ok(store)
}

/// The terminal as a TUI leaves it: [`MODES_ON`] written and echo off (lines stay canonical;
/// the fake echoes each line itself), so whoever started it must restore the terminal if the
/// fake does not.
struct Terminal {
    saved: Option<libc::termios>,
}

impl Terminal {
    fn enter() -> Terminal {
        print!("{MODES_ON}");
        let _ = std::io::stdout().flush();
        // SAFETY: termios is plain data, filled in by tcgetattr on the terminal at fd 0.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is a terminal (checked before) and `t` is a valid termios to fill.
        let saved = (unsafe { libc::tcgetattr(0, &mut t) } == 0).then_some(t);
        if let Some(mut quiet) = saved {
            quiet.c_lflag &= !libc::ECHO;
            // SAFETY: a termios obtained from tcgetattr, with one flag changed.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
        }
        Terminal { saved }
    }

    fn restore(&self) {
        if let Some(t) = &self.saved {
            // SAFETY: the termios tcgetattr gave for fd 0.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
        print!("{MODES_OFF}");
        let _ = std::io::stdout().flush();
    }
}

/// The files a message names by an absolute path, with what they hold (as an agent reads a
/// prompt file it is pointed at).
fn files_named(message: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for word in message.split_whitespace() {
        let word = word.trim_matches(|c: char| "()\"'`,;:".contains(c));
        let word = word.trim_end_matches('.');
        if word.starts_with('/') && Path::new(word).is_file() {
            if let Ok(content) = std::fs::read_to_string(word) {
                files.push((word.to_string(), content));
            }
        }
    }
    files
}

/// An interactive session in progress.
struct Chat {
    tui: Tui,
    store: Store,
    /// End like a crashed TUI: leave the terminal modes and termios as they are.
    leave_modes: bool,
}

impl Chat {
    /// The text a turn's directives are read from: the message and every file it names by an
    /// absolute path (as an agent reads a prompt file it is pointed at).
    fn turn_text(message: &str) -> String {
        let mut text = message.to_string();
        for (_, content) in files_named(message) {
            text.push('\n');
            text.push_str(&content);
        }
        text
    }

    /// One turn: the directives of `message` (plus `script`), the reply printed as
    /// `fake: <reply>`, both kept in the session. Some(code) when the turn ends the program.
    fn turn(&mut self, message: &str, mut script: Script) -> Option<i32> {
        script.read(self.tui.cli, &Chat::turn_text(message));
        self.leave_modes |= script.leave_modes;
        self.store.append(true, message);
        if let Some(s) = script.sleep {
            std::thread::sleep(Duration::from_secs_f64(s));
        }
        if script.hang {
            hang();
        }
        let reply = if let Some((code, msg)) = &script.error {
            format!("API error {code}: {msg}")
        } else {
            let refused = apply_writes(&script.writes, &self.tui.dir, self.tui.can_write);
            for path in &refused {
                say(&format!("fake: not allowed to write {path}"));
            }
            script
                .reply
                .clone()
                .unwrap_or_else(|| default_reply(message))
        };
        say(&format!("fake: {reply}"));
        self.store.append(false, &reply);
        script.exit
    }

    /// Turns from the terminal, a line each, until `/exit`, end of input or `FAKE_EXIT`.
    fn converse(&mut self) -> i32 {
        let stdin = std::io::stdin();
        loop {
            let mut line = String::new();
            match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => return 0,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\n', '\r']);
            say(&format!("> {line}"));
            if line.trim() == "/exit" {
                return 0;
            }
            if let Some(code) = self.turn(line, Script::default()) {
                return code;
            }
        }
    }
}

/// Run the interactive session of `cli` started with `argv` on a terminal; the exit code.
fn interactive(cli: Cli, argv: &[String]) -> i32 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let tui = tui_args(cli, argv, &cwd);
    // The first message's directives are read by its turn; `FAKE_SESSION` is needed before.
    let probe = load_script(cli, &Chat::turn_text(&tui.first));
    let store = match tui_session(&tui, &probe, &cwd) {
        Ok(store) => store,
        Err((message, code)) => {
            warn(&message);
            return code;
        }
    };
    log_start(
        json!({"cli": cli.name(), "argv": argv, "cwd": cwd, "prompt": tui.first,
        "session": store.id, "resumed": tui.resume.is_some(), "stdin": "", "interactive": true}),
    );
    let mut banner = format!("fake {} interactive session {}", cli.name(), store.id);
    if tui.resume.is_some() {
        let earlier = store.user_turns();
        banner.push_str(&format!(" resumed with {earlier} earlier turns"));
    }
    say(&banner);
    let terminal = Terminal::enter();
    let leave = std::env::var("FAKE_AGENT_LEAVE_MODES").is_ok_and(|v| v == "1");
    let first = tui.first.clone();
    let mut chat = Chat {
        tui,
        store,
        leave_modes: leave,
    };
    let code = if first.trim().is_empty() {
        None
    } else {
        chat.turn(&first, load_script(cli, ""))
    };
    let code = code.unwrap_or_else(|| chat.converse());
    if !chat.leave_modes {
        terminal.restore();
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn headless_and_interactive_command_lines_are_told_apart() {
        let cases = [
            (Cli::Claude, &["-p", "--verbose"][..], false),
            (Cli::Claude, &["--session-id", "x", "--", "hi"][..], true),
            (Cli::Codex, &["exec", "--json", "--", "-"][..], false),
            (
                Cli::Codex,
                &["resume", "--no-daemon", "id", "--", "hi"][..],
                true,
            ),
            (Cli::Gemini, &["--prompt=", "-o", "json"][..], false),
            (Cli::Gemini, &["--prompt-interactive=hi"][..], true),
            (Cli::Opencode, &["run", "--format", "json"][..], false),
            (Cli::Opencode, &["/w", "--prompt=hi"][..], true),
            (Cli::Cursor, &["-p", "hi"][..], false),
            (Cli::Cursor, &["--workspace", "/w", "hi"][..], true),
            (Cli::Aider, &["--message-file=/p"][..], false),
            (Cli::Aider, &["--read=/p", "--load=/c"][..], true),
        ];
        for (cli, words, interactive) in cases {
            assert_eq!(
                is_interactive(cli, &argv(words)),
                interactive,
                "{cli:?} {words:?}"
            );
        }
    }

    #[test]
    fn interactive_arguments_give_the_first_message_and_the_session() {
        let cwd = Path::new("/w");
        let t = tui_args(
            Cli::Codex,
            &argv(&["resume", "--no-daemon", "-C", "/x", "01a2", "--", "-go on"]),
            cwd,
        );
        assert_eq!(
            (t.first.as_str(), t.resume.as_deref()),
            ("-go on", Some("01a2"))
        );
        assert_eq!(t.dir, Path::new("/x"));
        let t = tui_args(
            Cli::Opencode,
            &argv(&["/y", "-m", "a/b", "--prompt=hi there"]),
            cwd,
        );
        assert_eq!(
            (t.first.as_str(), t.dir.as_path()),
            ("hi there", Path::new("/y"))
        );
        let t = tui_args(
            Cli::Gemini,
            &argv(&["--session-id", "s", "--prompt-interactive=x"]),
            cwd,
        );
        assert_eq!((t.first.as_str(), t.preset.as_deref()), ("x", Some("s")));
    }

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(civil(1_796_072_608_378), (2026, 11, 30, 21, 3, 28));
    }
}

//! The `gemini` engine: Gemini CLI in headless mode, its answer read as JSON.
//!
//! Command line: `gemini --prompt= -o FORMAT --skip-trust [-m M] --approval-mode MODE
//! (--session-id UUID | --resume ID) [args…]` with the prompt on stdin. Measured on Gemini CLI
//! 0.61.0: headless Gemini reads a piped stdin to its end and puts it *before* the `-p` text,
//! joined by a blank line (`STDIN\n\nP`); with `-p` empty the model gets exactly stdin, a
//! trailing newline included (a 1 MiB prompt, new and `--resume`d, reached the model whole). The
//! empty `--prompt=` is what selects headless mode explicitly; `--skip-trust` trusts the worktree
//! for this run (otherwise headless Gemini exits 55 in an untrusted folder);
//! `GEMINI_CLI_NO_RELAUNCH=true` keeps it in one process. Gemini has no reasoning setting on its
//! command line: `reasoning` is not used.
//!
//! FORMAT depends on the prompt's size. `stream-json` repeats the whole prompt as its first
//! event, and Gemini exits without waiting for stdout to drain: whatever does not fit in the
//! pipe (64 KiB) when it exits is lost, the final `result` included, and the step would fail
//! with "exited 0 without reporting a result" although the model did its work. Measured with a
//! reader that waits until Gemini has exited: everything arrives up to 56 KiB of output; above,
//! the stream is cut at the pipe's 64 KiB. Through git machine, how often a large prompt lost the
//! result depended on how fast its output was read (a 1 MiB prompt: 5 times in 5 on one machine,
//! never in 7 on another). `-o json` does not repeat the prompt: it prints one
//! object at the end (`{session_id, response, stats}`, indented over many lines). But it prints
//! nothing while the agent works, so a step would show no activity and a turn longer than the
//! step's `idle_timeout` (15 minutes by default for agent steps) would be stopped as silent. So
//! a prompt up to [`STREAM_PROMPT_MAX`] (16 KiB, whose echo stays well inside the pipe even if
//! JSON escaping doubles it) keeps the live stream; a larger one gets `-o json`.
//!
//! The session id is chosen here: a new session gets `--session-id` with a fresh v4 UUID, a
//! continued one `--resume ID`, and the parser reports that id before any output. With `-o json`
//! nothing on stdout names it before the end; the runner writes it down at the program's first
//! line of output, which with Gemini is a warning on stderr as it starts (`Warning: 256-color
//! support not detected…` when not on a terminal), so an interrupted step can continue its
//! session. Measured: `--resume` of an id Gemini never saved (killed before its first request)
//! exits 42 with `Error resuming session: Invalid session identifier …` on stderr;
//! `--session-id` of an id that exists exits 42 with `Error starting session: …`.
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]) are approval modes:
//! `read` → `default` (headless, this offers only read-only tools), `edit` → `auto_edit`,
//! `full` → `yolo`.
//!
//! `-o stream-json`: `init` (`session_id`), `message` (`role`, `content`, `delta`), `tool_use`,
//! `tool_result`, `error` (`severity` "warning"/"error"), and `result` (`status`
//! "success"/"error", `error.message`, `stats`).
//!
//! `-o json`, success (exit 0): `{session_id, response, stats: {models: {NAME: {tokens: {prompt,
//! candidates, cached, …}}}, tools: {totalCalls}, …}, warnings?}` on stdout; `response` is the
//! final message; `warnings` says e.g. that Gemini stopped a looping model (which stream-json
//! reports as an `error` of severity "warning"); per Gemini's source an invalid model stream
//! adds `error: {type: "INVALID_STREAM", message}`.
//! Failure: stdout stays empty and `{session_id, error: {type, message, code}}` goes to stderr,
//! `message` being the provider's JSON error body for an API error.
//!
//! Measured in both formats: on an API error the exit code is the HTTP status mod 256 (400 →
//! 144, 401 → 145, 403 → 147). 429 and 5xx are retried with backoff (`Attempt N failed with
//! status 429. Retrying with backoff...` on stderr): a problem, not an error, while Gemini may
//! still recover, named if the runner's timeout ends the run. A 429 is given up after ten
//! attempts (nearly four minutes): exit 173, `{error: {message: "…", code: 429}}` on stderr with
//! `-o json`, a `result` with `[API Error: …]\nPlease wait and try again later…` in stream-json.
//! Either way a 429 makes way for the step's next engine.
//!
//! Interactive: `gemini --skip-trust [-m M] --approval-mode MODE (--session-id UUID | --resume
//! ID) [args…] [--prompt-interactive=MESSAGE]` — `-i` ("execute the provided prompt and continue
//! in interactive mode"), in its `=` form so a message starting with `-` stays a value; `read`
//! is `--approval-mode plan`. Measured on 0.61.0: the TUI sends the message at once, keeps the
//! preset id, and `--resume ID -i MESSAGE` continues the same session in the same file.
//!
//! Sessions: `$GEMINI_CLI_HOME` (default `$HOME`)`/.gemini/tmp/<slug>/chats/session-<start,
//! YYYY-MM-DDTHH-MM>-<first 8 characters of the id>.jsonl`, whose first line is `{"sessionId",
//! "projectHash", "startTime", "lastUpdated", "kind"}`. The slug is the project folder's own
//! (each worktree is a project of its own): `.gemini/projects.json` maps the folder's path to
//! it and `tmp/<slug>/.project_root` names its owner; a new folder gets its name made a slug
//! (`-1`, `-2`, … when taken). `--resume` looks for any `session-*-<8 characters>.jsonl` in the
//! chats folder whose first line has the id, so a restored transcript needs only that name.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::agent::{self, json_line, str_at, tidy_api_error, u64_at, Cli, Report};
use super::{
    Ending, Engine, EngineError, EventParser, Interactive, Invocation, Outcome, StepInput, Stream,
};
use crate::workflow::{Permissions, ResolvedStep};

pub const CLI: Cli = Cli {
    engine: "gemini",
    program: "gemini",
    override_var: "MACHINE_GEMINI_BIN",
    install: "npm install -g @google/gemini-cli",
};

/// The largest prompt (in bytes) sent with `-o stream-json`; a larger one gets `-o json`, see
/// the module header.
pub const STREAM_PROMPT_MAX: usize = 16 << 10;

pub struct GeminiEngine {
    program: String,
    /// The session id the last [`Engine::invocation`] gave Gemini (preset or resumed), for the
    /// parser of that invocation: the runner builds the parser after the invocation.
    session: Mutex<Option<String>>,
}

impl GeminiEngine {
    #[cfg(test)]
    pub fn new(program: impl Into<String>) -> GeminiEngine {
        GeminiEngine {
            program: program.into(),
            session: Mutex::new(None),
        }
    }

    pub fn from_vars(vars: &[(String, String)]) -> GeminiEngine {
        GeminiEngine {
            program: CLI.program_in(vars),
            session: Mutex::new(None),
        }
    }
}

impl Engine for GeminiEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let format = if input.prompt.len() > STREAM_PROMPT_MAX {
            "json"
        } else {
            "stream-json"
        };
        let mut args = vec![
            "--prompt=".to_string(),
            "-o".into(),
            format.into(),
            "--skip-trust".into(),
        ];
        args.extend(options(step, false));
        let session = session_args(input, &mut args);
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
        args.extend(step.args.iter().cloned());
        let mut inv = Invocation::agent(&self.program, args, env(step), input.prompt);
        // One JSON answer at the end: a long turn is silent, not hung.
        inv.quiet_until_done = format == "json";
        Ok(inv)
    }

    fn parser(&self) -> Box<dyn EventParser> {
        let mut parser = GeminiParser::default();
        parser.report.session = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Box::new(parser)
    }

    fn can_resume(&self) -> bool {
        true
    }

    /// The session's file in the project's chats folder; for a session not here, a name Gemini
    /// finds it by (`session-…-<first 8 characters of the id>.jsonl`) in the folder Gemini uses
    /// (or will claim) for `workdir`.
    fn transcript_path(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        session: &str,
    ) -> Option<PathBuf> {
        let short = short_id(session)?;
        let gemini = gemini_dir(env)?;
        let slug = known_slug(&gemini, workdir).unwrap_or_else(|| free_slug(&gemini, workdir));
        let chats = gemini.join("tmp").join(slug).join("chats");
        session_file(&chats, session)
            .or_else(|| Some(chats.join(format!("session-restored-{short}.jsonl"))))
    }

    /// `gemini --skip-trust [-m M] --approval-mode MODE (--session-id UUID | --resume ID)
    /// [args…] [--prompt-interactive=MESSAGE]`: see the module header.
    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError> {
        let step = input.step;
        let mut args = vec!["--skip-trust".to_string()];
        args.extend(options(step, true));
        let session = session_args(input, &mut args);
        args.extend(step.args.iter().cloned());
        if let Some(message) = agent::first_message(input)? {
            args.push(format!("--prompt-interactive={message}"));
        }
        Ok(Interactive {
            inv: Invocation::agent(&self.program, args, env(step), ""),
            session: Some(session),
        })
    }

    /// `expected` exists when a session file of the project holds it; without one, the
    /// project's session file written last since `since`.
    fn find_session(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        since: SystemTime,
        expected: Option<&str>,
    ) -> Option<String> {
        let gemini = gemini_dir(env)?;
        let chats = gemini
            .join("tmp")
            .join(known_slug(&gemini, workdir)?)
            .join("chats");
        if let Some(id) = expected {
            return session_file(&chats, id).map(|_| id.to_string());
        }
        let files = agent::files_in(&chats, |n| {
            n.starts_with("session-") && n.ends_with(".jsonl")
        });
        agent::newest_since(files, since, |p| {
            let head = agent::first_json_line(p)?;
            let id = str_at(&head, "sessionId").filter(|id| agent::safe_id(id))?;
            (str_at(&head, "kind") != Some("subagent")).then(|| id.to_string())
        })
    }
}

/// The model and approval-mode options headless and interactive runs share. `read` is
/// `default` headless (where it offers only read-only tools) but `plan` (Gemini's read-only
/// mode) interactively, where `default` would only ask before each change.
fn options(step: &ResolvedStep, interactive: bool) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(model) = &step.model {
        args.extend(["-m".into(), model.clone()]);
    }
    let mode = match agent::permissions(step) {
        Permissions::Read if interactive => "plan",
        Permissions::Read => "default",
        Permissions::Edit => "auto_edit",
        Permissions::Full => "yolo",
    };
    args.extend(["--approval-mode".into(), mode.into()]);
    args
}

/// `--resume ID` for a continued session, else `--session-id` with a fresh id, added to
/// `args`; returns the session's id.
fn session_args(input: &StepInput<'_>, args: &mut Vec<String>) -> String {
    match input.resume_session {
        Some(id) => {
            args.extend(["--resume".into(), id.to_string()]);
            id.to_string()
        }
        None => {
            let id = agent::new_session_id();
            args.extend(["--session-id".into(), id.clone()]);
            id
        }
    }
}

/// The step's environment, with Gemini kept in one process.
fn env(step: &ResolvedStep) -> Vec<(String, String)> {
    let mut env = vec![("GEMINI_CLI_NO_RELAUNCH".to_string(), "true".to_string())];
    env.extend(agent::step_env(step));
    env
}

/// `$GEMINI_CLI_HOME` (default `$HOME`)`/.gemini`.
fn gemini_dir(env: &[(String, String)]) -> Option<PathBuf> {
    let home = agent::var(env, "GEMINI_CLI_HOME")
        .map(PathBuf::from)
        .or_else(|| agent::home(env))?;
    Some(home.join(".gemini"))
}

/// The first 8 characters of a session id, which Gemini puts in its file names.
fn short_id(id: &str) -> Option<&str> {
    (agent::safe_id(id) && id.len() >= 8).then(|| &id[..8])
}

/// The project folder's marker: the path that owns a slug.
const PROJECT_ROOT: &str = ".project_root";

/// Where Gemini keeps the slugs of project folders, each with its [`PROJECT_ROOT`] marker.
const SLUG_BASES: [&str; 2] = ["tmp", "history"];

/// The owner named by `<gemini>/<base>/<slug>/.project_root`, if there is one.
fn slug_owner(gemini: &Path, base: &str, slug: &str) -> Option<String> {
    let marker = gemini.join(base).join(slug).join(PROJECT_ROOT);
    std::fs::read_to_string(marker)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The slugs `<gemini>/projects.json` maps project paths to.
fn registry(gemini: &Path) -> serde_json::Map<String, serde_json::Value> {
    std::fs::read_to_string(gemini.join("projects.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("projects")?.as_object().cloned())
        .unwrap_or_default()
}

/// The slug Gemini CLI already uses for `workdir`: the one `projects.json` maps it to (unless a
/// marker says another folder owns it), else the folder under `tmp` whose marker names it.
fn known_slug(gemini: &Path, workdir: &Path) -> Option<String> {
    let path = workdir.to_string_lossy();
    let mapped = registry(gemini)
        .get(path.as_ref())
        .and_then(|v| v.as_str())
        .map(String::from)
        .filter(|slug| {
            SLUG_BASES
                .iter()
                .all(|b| slug_owner(gemini, b, slug).is_none_or(|o| o == path))
        });
    mapped.or_else(|| {
        let entries = std::fs::read_dir(gemini.join("tmp")).ok()?;
        entries.flatten().find_map(|e| {
            let slug = e.file_name().to_str()?.to_string();
            (slug_owner(gemini, "tmp", &slug)? == path).then_some(slug)
        })
    })
}

/// The slug Gemini CLI would claim for a folder it has not seen: the folder's name in lower
/// case with runs of other characters than letters and digits made one `-` (`project` if
/// nothing is left), then `-1`, `-2`, … past slugs that `projects.json` gives out or a marker
/// gives another folder.
fn free_slug(gemini: &Path, workdir: &Path) -> String {
    let name = workdir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = match slug.trim_end_matches('-') {
        "" => "project".to_string(),
        s => s.to_string(),
    };
    let taken = registry(gemini);
    let path = workdir.to_string_lossy();
    (0..)
        .map(|n| {
            if n == 0 {
                slug.clone()
            } else {
                format!("{slug}-{n}")
            }
        })
        .find(|c| {
            !taken.values().any(|v| v.as_str() == Some(c))
                && SLUG_BASES
                    .iter()
                    .all(|b| slug_owner(gemini, b, c).is_none_or(|o| o == path))
        })
        .expect("some slug is free")
}

/// The session file of `id` in `chats`: named `session-…-<first 8 characters>.jsonl`, its first
/// line naming the whole id.
fn session_file(chats: &Path, id: &str) -> Option<PathBuf> {
    let suffix = format!("-{}.jsonl", short_id(id)?);
    agent::files_in(chats, |n| n.starts_with("session-") && n.ends_with(&suffix))
        .into_iter()
        .find(|p| agent::first_json_line(p).is_some_and(|h| str_at(&h, "sessionId") == Some(id)))
}

/// Reads either format: `stream-json` events one per line, or the one indented JSON object of
/// `-o json` (on stdout for a success, on stderr for a failure), gathered from its opening `{`
/// line to its closing `}` line (the only braces at the start of a line in that layout).
#[derive(Default)]
struct GeminiParser {
    report: Report,
    /// Assistant text since the last tool call: the final message once the turn ends.
    text: String,
    /// The `-o json` object being gathered, per stream.
    object: [Option<String>; 2],
}

impl GeminiParser {
    fn event(&mut self, v: &serde_json::Value) {
        let r = &mut self.report;
        match str_at(v, "type") {
            Some("init") => {
                if let Some(id) = str_at(v, "session_id") {
                    r.session = Some(id.to_string());
                }
            }
            Some("message") if str_at(v, "role") == Some("assistant") => {
                let content = str_at(v, "content").unwrap_or("");
                if v.get("delta").and_then(|d| d.as_bool()) != Some(true) {
                    self.text.clear();
                }
                self.text.push_str(content);
            }
            Some("tool_use") => self.text.clear(),
            Some("result") => {
                match str_at(v, "status") {
                    Some("success") => r.completed = true,
                    _ => {
                        let msg = v
                            .pointer("/error/message")
                            .and_then(|m| m.as_str())
                            .unwrap_or("the turn failed");
                        r.error(tidy_api_error(msg));
                    }
                }
                if let Some(s) = v.get("stats") {
                    r.add_usage("input_tokens", u64_at(s, "input_tokens"));
                    r.add_usage("output_tokens", u64_at(s, "output_tokens"));
                    r.add_usage("cache_read_input_tokens", u64_at(s, "cached"));
                    r.add_usage("tool_calls", u64_at(s, "tool_calls"));
                }
            }
            Some("error") => {
                let msg = str_at(v, "message").unwrap_or("error").to_string();
                if str_at(v, "severity") == Some("error") {
                    r.error(tidy_api_error(&msg));
                } else {
                    r.problem = Some(msg);
                }
            }
            _ => {}
        }
    }

    /// The `-o json` object: the answer (from stdout) or the failure (from stderr).
    fn object(&mut self, v: &serde_json::Value) {
        let r = &mut self.report;
        if let Some(id) = str_at(v, "session_id").filter(|s| !s.is_empty()) {
            r.session = Some(id.to_string());
        }
        if let Some(e) = v.get("error") {
            r.error(error_text(e));
        } else if v.get("response").is_some() {
            r.completed = true;
        }
        if let Some(text) = str_at(v, "response").filter(|t| !t.trim().is_empty()) {
            self.text = text.to_string();
        }
        if let Some(w) = v.get("warnings").and_then(|w| w.as_array()) {
            if let Some(last) = w.iter().rev().find_map(|w| w.as_str()) {
                r.problem = Some(last.to_string());
            }
        }
        if let Some(s) = v.get("stats") {
            let models = s.get("models").and_then(|m| m.as_object());
            for tokens in models
                .into_iter()
                .flatten()
                .filter_map(|(_, m)| m.get("tokens"))
            {
                r.add_usage("input_tokens", u64_at(tokens, "prompt"));
                r.add_usage("output_tokens", u64_at(tokens, "candidates"));
                r.add_usage("cache_read_input_tokens", u64_at(tokens, "cached"));
            }
            let calls = s.get("tools").and_then(|t| u64_at(t, "totalCalls"));
            r.add_usage("tool_calls", calls);
        }
    }

    /// Gather the lines of a `-o json` object; true if `line` was one of them.
    fn gather(&mut self, stream: Stream, line: &str) -> bool {
        let slot = &mut self.object[usize::from(stream == Stream::Stderr)];
        match slot {
            None if line.trim_end() == "{" => *slot = Some("{\n".to_string()),
            None => return false,
            Some(text) => {
                text.push_str(line);
                text.push('\n');
                if line.trim_end() == "}" {
                    let text = slot.take().unwrap_or_default();
                    match json_line(&text) {
                        Some(v) => self.object(&v),
                        None => self.report.other_line(stream, &text),
                    }
                }
            }
        }
        true
    }

    fn stderr(&mut self, line: &str) {
        let l = line.trim();
        if let Some(v) = json_line(l) {
            // The failure object of `-o json`, should it come on one line.
            if v.get("error").is_some() {
                self.object(&v);
                return;
            }
        }
        if l.starts_with("Attempt ") && l.contains("Retrying") {
            let head = l.split(" _ApiError").next().unwrap_or(l);
            self.report.problem = Some(head.to_string());
        }
        if l.starts_with("Error resuming session") || l.starts_with("Error starting session") {
            self.report.error(l);
        }
        let noise = [
            "at ",
            "Warning: 256-color",
            "[STARTUP]",
            "Ripgrep is not available",
        ];
        if !noise.iter().any(|n| l.starts_with(n)) {
            self.report.stderr_line(l);
        }
    }
}

/// The text of an `-o json` error object `{type, message, code}`: an API error's JSON body made
/// readable, its HTTP status kept.
fn error_text(e: &serde_json::Value) -> String {
    let msg = tidy_api_error(str_at(e, "message").unwrap_or("error"));
    match u64_at(e, "code") {
        Some(code @ 400..=599) if !msg.starts_with("API error") => {
            format!("API error {code}: {msg}")
        }
        _ => msg,
    }
}

impl EventParser for GeminiParser {
    fn line(&mut self, stream: Stream, line: &str) {
        if self.gather(stream, line) {
            return;
        }
        match (stream, json_line(line)) {
            (Stream::Stdout, Some(v)) => self.event(&v),
            (Stream::Stderr, _) => self.stderr(line),
            (stream, None) => self.report.other_line(stream, line),
        }
    }

    fn session(&self) -> Option<&str> {
        self.report.session.as_deref()
    }

    fn finish(mut self: Box<Self>, ending: &Ending) -> Outcome {
        // An object cut short (the program killed while printing it) is only text.
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            if let Some(text) = self.object[i].take() {
                self.report.other_line(stream, &text);
            }
        }
        if !self.text.trim().is_empty() {
            self.report.final_message = Some(std::mem::take(&mut self.text));
        }
        if let Ending::Exited(code) = *ending {
            if self.report.errors.is_empty() {
                match code {
                    // An HTTP status folded into the exit code (400..=511 mod 256).
                    144..=255 => self
                        .report
                        .error(format!("API error {} (exit code {code})", code + 256)),
                    41 => self
                        .report
                        .error("authentication failed (exit code 41): not logged in"),
                    55 => self
                        .report
                        .error("the workspace is not trusted (exit code 55)"),
                    _ => {}
                }
            }
        }
        self.report.finish(CLI.engine, ending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{
        home_env, interactive, interactive_args, large_prompt_goes_to_the_file, parse, resolved,
        write,
    };

    // Recorded from Gemini CLI 0.61.0 against the agent-lab model server.
    const INIT: &str = r#"{"type":"init","timestamp":"2026-11-21T12:41:43.130Z","session_id":"08b84faf-eef7-49c4-bc65-8ede672858aa","model":"gemini-2.5-flash"}"#;
    const USER: &str = r#"{"type":"message","timestamp":"2026-11-21T12:41:43.132Z","role":"user","content":"CREATE_FILE /w/a.txt hello"}"#;
    const SAY1: &str = r#"{"type":"message","timestamp":"2026-11-21T12:41:43.172Z","role":"assistant","content":"I'll create the file now.","delta":true}"#;
    const TOOL: &str = r#"{"type":"tool_use","timestamp":"2026-11-21T12:41:43.241Z","tool_name":"write_file","tool_id":"write_file_1","parameters":{"file_path":"/w/a.txt","content":"hello\n"}}"#;
    const TOOL_OK: &str = r#"{"type":"tool_result","timestamp":"2026-11-21T12:41:43.434Z","tool_id":"write_file_1","status":"success"}"#;
    const SAY2: &str = r#"{"type":"message","timestamp":"2026-11-21T12:41:43.487Z","role":"assistant","content":"FAKE_DONE: the file has been written.","delta":true}"#;
    const RESULT: &str = r#"{"type":"result","timestamp":"2026-11-21T12:41:43.488Z","status":"success","stats":{"total_tokens":30,"input_tokens":20,"output_tokens":10,"cached":0,"input":20,"duration_ms":359,"tool_calls":1}}"#;
    const RESULT_400: &str = r#"{"type":"result","timestamp":"2026-11-21T12:41:48.172Z","status":"error","error":{"type":"unknown","message":"[API Error: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"scripted 400\",\"code\":400,\"status\":\"invalid_request_error\"}}]"},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0}}"#;

    // `-o json`, recorded the same way (`stats.tools` and `stats.files` shortened).
    const JSON_OK: &str = r#"{
  "session_id": "d4a13e7d-7570-49e9-ac82-c9a5154733cb",
  "response": "FAKE_DONE: the file has been written.",
  "stats": {
    "models": {
      "gemini-fake": {
        "api": {
          "totalRequests": 2,
          "totalErrors": 0,
          "totalLatencyMs": 199,
          "errorsByType": {}
        },
        "tokens": {
          "input": 20,
          "prompt": 20,
          "candidates": 10,
          "total": 30,
          "cached": 0,
          "thoughts": 0,
          "tool": 0
        }
      }
    },
    "tools": {
      "totalCalls": 1,
      "totalSuccess": 1,
      "totalFail": 0
    }
  }
}"#;
    const JSON_400: &str = r#"Error when talking to Gemini API Full report available at: /tmp/gemini-client-error-Turn.run-sendMessageStream-2026-11-30T19-42-28-009Z.json _ApiError: {"type":"error","error":{"type":"invalid_request_error","message":"scripted 400","code":400,"status":"invalid_request_error"}}
    at throwErrorIfNotOK (file:///lab/npm/lib/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:267833:24)
    at async Turn.run (file:///lab/npm/lib/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:333001:24) {
  status: 400
}
{
  "session_id": "ee92df1a-a65e-4007-bb25-0e78a0a99dfa",
  "error": {
    "type": "Error",
    "message": "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"scripted 400\",\"code\":400,\"status\":\"invalid_request_error\"}}",
    "code": 400
  }
}"#;
    // After ten attempts at a 429 (nearly four minutes).
    const JSON_429: &str = r#"Attempt 10 failed: scripted 429. Max attempts reached
Error when talking to Gemini API Full report available at: /tmp/gemini-client-error-Turn.run-sendMessageStream-2026-11-30T19-47-27-640Z.json RetryableQuotaError: scripted 429
  cause: { code: 429, message: 'scripted 429', details: [] },
  retryDelayMs: undefined,
  status: 429
}
{
  "session_id": "2af467fc-de5e-4a61-8ba2-a57e51caaef0",
  "error": {
    "type": "Error",
    "message": "scripted 429",
    "code": 429
  }
}"#;

    fn engine() -> GeminiEngine {
        GeminiEngine::new("gemini")
    }

    fn invocation(engine: &GeminiEngine, prompt: &str, resume: Option<&str>) -> Invocation {
        let mut step = resolved("docs");
        step.model = Some("gemini-2.5-flash".into());
        engine
            .invocation(&StepInput {
                step: &step,
                prompt,
                workdir: Path::new("/w"),
                resume_session: resume,
                fork_session: false,
                prompt_file: Path::new("/nonexistent/p.prompt"),
            })
            .expect("inv")
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn a_large_prompt_reads_one_answer_and_is_not_timed_out_for_silence() {
        let small = invocation(&engine(), "short", None);
        assert!(small.args.contains(&"stream-json".to_string()));
        assert!(!small.quiet_until_done);
        let large = invocation(&engine(), &"x".repeat(STREAM_PROMPT_MAX + 1), None);
        assert!(large.args.contains(&"json".to_string()));
        assert!(
            large.quiet_until_done,
            "no default idle timeout for a silent turn"
        );
    }

    #[test]
    fn command_line() {
        let inv = invocation(&engine(), "-x", Some("08b8"));
        assert_eq!(
            inv.args,
            [
                "--prompt=",
                "-o",
                "stream-json",
                "--skip-trust",
                "-m",
                "gemini-2.5-flash",
                "--approval-mode",
                "auto_edit",
                "--resume",
                "08b8"
            ]
        );
        assert_eq!(inv.stdin, b"-x");
        assert!(inv
            .env
            .contains(&("GEMINI_CLI_NO_RELAUNCH".into(), "true".into())));
    }

    #[test]
    fn a_large_prompt_gets_one_json_object_and_a_new_session_a_preset_id() {
        let e = engine();
        let small = "a".repeat(STREAM_PROMPT_MAX);
        let inv = invocation(&e, &small, None);
        assert_eq!(inv.args[1..3], ["-o", "stream-json"]);
        let large = "a".repeat(STREAM_PROMPT_MAX + 1);
        let inv = invocation(&e, &large, None);
        assert_eq!(inv.args[1..3], ["-o", "json"]);
        assert_eq!(inv.stdin, large.as_bytes());
        let at = inv.args.iter().position(|a| a == "--session-id");
        let id = &inv.args[at.expect("--session-id") + 1];
        // A version 4 UUID, and a new one each time.
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(parts[2].starts_with('4'), "{id}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        let again = invocation(&e, &large, None);
        assert!(!again.args.contains(id));
        assert!(!inv.args.contains(&"--resume".to_string()));
    }

    #[test]
    fn the_parser_names_the_session_before_any_output() {
        let e = engine();
        let inv = invocation(&e, "go", None);
        let id = inv.args.last().expect("id").clone();
        assert_eq!(e.parser().session(), Some(id.as_str()));
        invocation(&e, "go", Some("08b8"));
        assert_eq!(e.parser().session(), Some("08b8"));
        // One parser per invocation.
        assert_eq!(e.parser().session(), None);
    }

    #[test]
    fn success_joins_deltas_after_the_last_tool() {
        let o = parse(
            &engine(),
            &[INIT, USER, SAY1, TOOL, TOOL_OK, SAY2, RESULT],
            &[],
            0,
        );
        assert!(o.success, "{o:?}");
        assert_eq!(
            o.session.as_deref(),
            Some("08b84faf-eef7-49c4-bc65-8ede672858aa")
        );
        assert_eq!(
            o.final_message.as_deref(),
            Some("FAKE_DONE: the file has been written.")
        );
        assert_eq!(o.usage["input_tokens"], 20);
        assert_eq!(o.usage["tool_calls"], 1);
    }

    #[test]
    fn the_json_object_gives_response_session_and_usage() {
        let o = parse(
            &engine(),
            &lines(JSON_OK),
            &[
                "Warning: 256-color support not detected. Using a terminal with at least 256-color support is recommended for a better visual experience.",
                "Ripgrep is not available. Falling back to GrepTool.",
            ],
            0,
        );
        assert!(o.success, "{o:?}");
        assert_eq!(
            o.session.as_deref(),
            Some("d4a13e7d-7570-49e9-ac82-c9a5154733cb")
        );
        assert_eq!(
            o.final_message.as_deref(),
            Some("FAKE_DONE: the file has been written.")
        );
        assert_eq!(o.usage["input_tokens"], 20);
        assert_eq!(o.usage["output_tokens"], 10);
        assert_eq!(o.usage["cache_read_input_tokens"], 0);
        assert_eq!(o.usage["tool_calls"], 1);
        // Cut short, it is no answer.
        let cut = lines(JSON_OK);
        let o = parse(&engine(), &cut[..cut.len() - 1], &[], 0);
        assert!(!o.success);
        assert!(o
            .error
            .expect("error")
            .contains("without reporting a result"));
    }

    #[test]
    fn a_json_object_with_an_error_or_warnings() {
        let invalid = r#"{
  "session_id": "x",
  "response": "",
  "stats": {},
  "error": {
    "type": "INVALID_STREAM",
    "message": "Model stream ended with an invalid chunk or missing finish reason."
  }
}"#;
        let o = parse(&engine(), &lines(invalid), &[], 0);
        assert!(!o.success);
        assert_eq!(
            o.error.as_deref(),
            Some("Model stream ended with an invalid chunk or missing finish reason.")
        );
        // Gemini stopped a looping model: the turn ended, with a warning (as stream-json's
        // `error` event of severity "warning", it does not fail the step).
        let looped = "{\n  \"session_id\": \"x\",\n  \"response\": \"\",\n  \"stats\": {},\n  \"warnings\": [\n    \"Loop detected, stopping execution\"\n  ]\n}";
        let o = parse(&engine(), &lines(looped), &[], 0);
        assert!(o.success, "{o:?}");
        assert_eq!(o.final_message, None);
    }

    #[test]
    fn error_result_and_folded_exit_code() {
        let o = parse(&engine(), &[INIT, USER, RESULT_400], &[], 144);
        assert!(!o.success);
        assert_eq!(
            o.error.as_deref(),
            Some("API error 400 (invalid_request_error): scripted 400")
        );
        assert_eq!(o.fallback_reason, None);
        // `-o json`: nothing on stdout, the error object (indented) on stderr.
        let o = parse(&engine(), &[], &lines(JSON_400), 144);
        assert_eq!(
            o.error.as_deref(),
            Some("API error 400 (invalid_request_error): scripted 400")
        );
        assert_eq!(
            o.session.as_deref(),
            Some("ee92df1a-a65e-4007-bb25-0e78a0a99dfa")
        );
        assert_eq!(o.fallback_reason, None);
        let o = parse(&engine(), &[], &lines(JSON_429), 173);
        assert_eq!(o.error.as_deref(), Some("API error 429: scripted 429"));
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
        // The same object on one line.
        let o = parse(
            &engine(),
            &[],
            &[
                r#"{"session_id":"x","error":{"type":"authentication_error","message":"scripted 401","code":401}}"#,
            ],
            145,
        );
        assert_eq!(o.error.as_deref(), Some("API error 401: scripted 401"));
        assert!(o.fallback_reason.is_some());
        // stream-json, after ten attempts at a 429.
        let given_up = r#"{"type":"result","timestamp":"2026-11-30T19:52:46.905Z","status":"error","error":{"type":"unknown","message":"[API Error: scripted 429]\nPlease wait and try again later. To increase your limits, request a quota increase through AI Studio, or switch to another /auth method"},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,"tool_calls":0}}"#;
        let o = parse(&engine(), &[INIT, given_up], &[], 173);
        assert!(o.error.expect("error").contains("scripted 429"));
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
        // Only the exit code.
        let o = parse(&engine(), &[INIT], &[], 173);
        assert_eq!(o.error.as_deref(), Some("API error 429 (exit code 173)"));
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
    }

    #[test]
    fn a_session_gemini_does_not_have_is_named() {
        let o = parse(
            &engine(),
            &[],
            &[
                r#"Error resuming session: Invalid session identifier "5369b605-037a-46c8-8356-64e4d29ab2ce"."#,
                "  Searched for sessions in /home/u/.gemini/tmp/w/chats.",
                "  Use --list-sessions to see available sessions, then use --resume {number}, --resume {uuid}, or --resume latest.",
            ],
            42,
        );
        assert!(!o.success);
        assert_eq!(
            o.error.as_deref(),
            Some(
                r#"Error resuming session: Invalid session identifier "5369b605-037a-46c8-8356-64e4d29ab2ce"."#
            )
        );
        assert_eq!(o.fallback_reason, None);
    }

    #[test]
    fn retries_are_a_problem_named_on_timeout() {
        let mut p = engine().parser();
        p.line(Stream::Stdout, INIT);
        p.line(
            Stream::Stderr,
            r#"Attempt 1 failed with status 429. Retrying with backoff... _ApiError: {"type":"error"}"#,
        );
        let o = p.finish(&Ending::IdleTimedOut(std::time::Duration::from_secs(300)));
        assert!(!o.success);
        assert!(o.error.expect("error").contains("status 429"));
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
    }

    #[test]
    fn interactive_new_and_resumed() {
        let mut step = resolved("docs");
        step.model = Some("gemini-2.5-flash".into());
        step.args = vec!["--include-directories".into(), "/docs".into()];
        let i = interactive(&engine(), &step, "-x\ny", None).expect("interactive");
        let id = i.session.expect("a preset id");
        assert_eq!(
            i.inv.args,
            [
                "--skip-trust",
                "-m",
                "gemini-2.5-flash",
                "--approval-mode",
                "auto_edit",
                "--session-id",
                &id,
                "--include-directories",
                "/docs",
                "--prompt-interactive=-x\ny"
            ]
        );
        assert!(i
            .inv
            .env
            .contains(&("GEMINI_CLI_NO_RELAUNCH".into(), "true".into())));
        step.permissions = Some(Permissions::Read);
        step.args.clear();
        let a = interactive_args(&engine(), &step, "", Some("08b8"));
        assert_eq!(
            a,
            [
                "--skip-trust",
                "-m",
                "gemini-2.5-flash",
                "--approval-mode",
                "plan",
                "--resume",
                "08b8"
            ]
        );
        let args = large_prompt_goes_to_the_file(&engine());
        assert!(!args.iter().any(|a| a.starts_with("--prompt=")));
    }

    const SESSION: &str = "22222222-3333-4444-8555-666666666666";

    /// Gemini's files for the project folder `w` under the slug `slug`, with one session.
    fn project(gemini: &Path, w: &str, slug: &str, session: &str) -> PathBuf {
        let registry = serde_json::json!({"projects": {w: slug}});
        write(&gemini.join("projects.json"), &registry.to_string());
        write(&gemini.join("tmp").join(slug).join(".project_root"), w);
        let file = gemini
            .join("tmp")
            .join(slug)
            .join("chats")
            .join(format!("session-2026-11-30T21-05-{}.jsonl", &session[..8]));
        let head = serde_json::json!({"sessionId": session, "projectHash": "ab", "kind": "main"});
        write(&file, &format!("{head}\n"));
        file
    }

    #[test]
    fn find_session_reads_the_projects_chats() {
        let home = tempfile::tempdir().expect("home");
        let env = home_env(home.path());
        let since = SystemTime::now() - std::time::Duration::from_secs(60);
        let e = engine();
        let w = Path::new("/w/my-repo");
        assert_eq!(e.find_session(&env, w, since, Some(SESSION)), None);
        project(
            &home.path().join(".gemini"),
            "/w/my-repo",
            "my-repo",
            SESSION,
        );
        assert_eq!(
            e.find_session(&env, w, since, Some(SESSION)).as_deref(),
            Some(SESSION)
        );
        assert_eq!(
            e.find_session(&env, w, since, None).as_deref(),
            Some(SESSION)
        );
        // Same first 8 characters, another session.
        let twin = "22222222-0000-4000-8000-000000000000";
        assert_eq!(e.find_session(&env, w, since, Some(twin)), None);
        // Another folder is another project.
        assert_eq!(
            e.find_session(&env, Path::new("/w/other"), since, None),
            None
        );
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(e.find_session(&env, w, later, None), None);
        // $GEMINI_CLI_HOME replaces $HOME.
        let mut env = env;
        env.push(("GEMINI_CLI_HOME".into(), "/nonexistent".into()));
        assert_eq!(e.find_session(&env, w, since, Some(SESSION)), None);
    }

    #[test]
    fn the_transcript_is_the_session_file_or_where_gemini_looks() {
        let home = tempfile::tempdir().expect("home");
        let env = home_env(home.path());
        let gemini = home.path().join(".gemini");
        let e = engine();
        let w = Path::new("/w/My Repo!");
        // Never seen: the slug Gemini will claim for the folder.
        let fresh = gemini.join("tmp/my-repo/chats/session-restored-22222222.jsonl");
        assert_eq!(e.transcript_path(&env, w, SESSION), Some(fresh));
        // Taken by another folder: the next one.
        project(
            &gemini,
            "/x/my-repo",
            "my-repo",
            "33333333-3333-4444-8555-666666666666",
        );
        let next = gemini.join("tmp/my-repo-1/chats/session-restored-22222222.jsonl");
        assert_eq!(e.transcript_path(&env, w, SESSION), Some(next));
        // Known, with the session: its file.
        let file = project(&gemini, "/w/My Repo!", "mine", SESSION);
        assert_eq!(e.transcript_path(&env, w, SESSION), Some(file));
        assert_eq!(e.transcript_path(&env, w, "short"), None);
    }
}

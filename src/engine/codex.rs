//! The `codex` engine: OpenAI Codex CLI, `codex exec --json`.
//!
//! Command line: `codex exec --json --skip-git-repo-check [-m M]
//! [-c model_reasoning_effort="R"] <permissions> -C WORKDIR [args…] [resume ID] -- -` with the
//! prompt on stdin. Measured on Codex 0.169.0: the prompt `-` reads stdin to its end and sends
//! exactly that (a 1 MiB prompt, new and resumed, reached the model whole; without `-` a prompt
//! argument gets stdin appended inside `<stdin>` tags). Codex itself refuses a prompt over
//! 1,048,576 characters (`Error: … Input exceeds the maximum length …` on stderr, exit 1): that
//! line is the step's error.
//! Options of `exec` go before the `resume` subcommand (measured: `exec resume` itself has no
//! `-s`/`-C`, but takes them from `exec`). `--skip-git-repo-check` is harmless: the worktree is
//! a git checkout, but a linked worktree is not always "trusted" by Codex.
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]) are Codex's sandbox modes:
//! `read` → `-s read-only` (a write fails inside the tool and Codex exits 0 — we read the
//! rejection on stderr and fail the step), `edit` → `-s workspace-write`, `full` →
//! `--dangerously-bypass-approvals-and-sandbox`. `exec` never stops to ask for approval.
//!
//! Stream: `thread.started` (`thread_id` = the session), `item.completed` items of type
//! `agent_message` (the last is the final message), `turn.completed` (`usage`) or
//! `turn.failed` (`error.message`), and `{"type":"error"}` events. `Reconnecting...` error
//! events repeat forever when the server is unreachable: they are not final (the runner's
//! timeout ends such a run) but are named in the error when it does.
//!
//! Interactive: `codex --no-daemon [options] [args…] [-- MESSAGE]`, continuing with `codex resume
//! --no-daemon [options] [args…] ID [-- MESSAGE]` — the same options as `exec` (the TUI has no
//! `--skip-git-repo-check`). Measured on 0.169.0: without `--no-daemon` the TUI hands its turns
//! to a shared background server that outlives it ("Disconnected from this task. Any running
//! work continues."), so work could go on in the worktree after the step ended; with it,
//! everything runs in the TUI's own process. A folder Codex has never trusted gets a trust
//! question first; a linked worktree counts as its repository's folder (not asked again). Codex
//! picks the session id itself: it is found afterwards in its rollout file.
//!
//! Sessions: `$CODEX_HOME` (default `~/.codex`)`/sessions/YYYY/MM/DD/rollout-YYYY-MM-DDTHH-MM-SS-
//! <id>.jsonl`, whose first line is `{"type":"session_meta","payload":{"id","cwd",…}}`; `exec`
//! and the TUI both write one, a resumed session appends to its file. Codex also indexes them in
//! SQLite (`state_5.sqlite`), but measured: a rollout copied into another `CODEX_HOME`'s
//! sessions folder, under any date, is resumed by id. So the rollout is the transcript git
//! machine keeps, and one restored goes to the day of its id (a version 7 UUID holds its
//! creation time).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::agent::{self, json_line, str_at, tidy_api_error, u64_at, Cli, Report};
use super::{
    Ending, Engine, EngineError, EventParser, Interactive, Invocation, Outcome, StepInput, Stream,
};
use crate::workflow::{Permissions, ResolvedStep};

pub const CLI: Cli = Cli {
    engine: "codex",
    program: "codex",
    override_var: "MACHINE_CODEX_BIN",
    install: "npm install -g @openai/codex",
};

agent::cli_engine!(CodexEngine, CLI);

impl Engine for CodexEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let mut args: Vec<String> = ["exec", "--json", "--skip-git-repo-check"]
            .map(String::from)
            .to_vec();
        args.extend(options(step, input.workdir));
        args.extend(step.args.iter().cloned());
        if let Some(id) = input.resume_session {
            args.extend(["resume".into(), id.to_string()]);
        }
        args.extend(["--".into(), "-".into()]);
        Ok(Invocation::agent(
            &self.program,
            args,
            agent::step_env(step),
            input.prompt,
        ))
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(CodexParser::default())
    }

    fn can_resume(&self) -> bool {
        true
    }

    /// The session's rollout file, wherever it is among the day folders; for a session not
    /// here, the file name Codex would give it (from the time in its id).
    fn transcript_path(
        &self,
        env: &[(String, String)],
        _workdir: &Path,
        session: &str,
    ) -> Option<PathBuf> {
        if !agent::safe_id(session) {
            return None;
        }
        let sessions = sessions_dir(env)?;
        find_rollout(&sessions, session).or_else(|| {
            let (date, time) = utc(uuid_v7_time(session)?);
            let (y, m, d) = date;
            let name = format!(
                "rollout-{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}-{session}.jsonl",
                time.0, time.1, time.2
            );
            Some(day_dir(&sessions, date).join(name))
        })
    }

    /// `codex --no-daemon …` or `codex resume --no-daemon … ID`: see the module header.
    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError> {
        let step = input.step;
        let mut args = Vec::new();
        if input.resume_session.is_some() {
            args.push("resume".to_string());
        }
        args.push("--no-daemon".into());
        args.extend(options(step, input.workdir));
        args.extend(step.args.iter().cloned());
        if let Some(id) = input.resume_session {
            args.push(id.to_string());
        }
        if let Some(message) = agent::first_message(input)? {
            args.extend(["--".into(), message]);
        }
        Ok(Interactive {
            inv: Invocation::agent(&self.program, args, agent::step_env(step), ""),
            session: input.resume_session.map(String::from),
        })
    }

    /// `expected` exists when its rollout does; without one, the rollout written last since
    /// `since` whose `session_meta` names `workdir` as its `cwd`.
    fn find_session(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        since: SystemTime,
        expected: Option<&str>,
    ) -> Option<String> {
        let sessions = sessions_dir(env)?;
        if let Some(id) = expected {
            if !agent::safe_id(id) {
                return None;
            }
            let meta = session_meta(&find_rollout(&sessions, id)?)?;
            return (str_at(&meta, "id") == Some(id)).then(|| id.to_string());
        }
        // A day folder is named in local time: start a day before `since`'s UTC date.
        let secs = since.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let from = utc(secs.saturating_sub(86_400) * 1000).0;
        let rollouts = day_dirs(&sessions)
            .into_iter()
            .filter(|(date, _)| *date >= from)
            .flat_map(|(_, dir)| agent::files_in(&dir, is_rollout));
        agent::newest_since(rollouts, since, |p| {
            let meta = session_meta(p)?;
            let cwd = Path::new(str_at(&meta, "cwd")?);
            let same = cwd == workdir
                || (cwd.canonicalize().ok())
                    .is_some_and(|c| workdir.canonicalize().ok() == Some(c));
            let id = str_at(&meta, "id").filter(|id| agent::safe_id(id))?;
            same.then(|| id.to_string())
        })
    }
}

/// The options `exec` and the TUI share: model, reasoning effort, sandbox and working folder.
fn options(step: &ResolvedStep, workdir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(model) = &step.model {
        args.extend(["-m".into(), model.clone()]);
    }
    if let Some(effort) = &step.reasoning {
        args.extend(["-c".into(), format!("model_reasoning_effort=\"{effort}\"")]);
    }
    match agent::permissions(step) {
        Permissions::Read => args.extend(["-s".into(), "read-only".into()]),
        Permissions::Edit => args.extend(["-s".into(), "workspace-write".into()]),
        Permissions::Full => args.push("--dangerously-bypass-approvals-and-sandbox".into()),
    }
    args.extend(["-C".into(), workdir.display().to_string()]);
    args
}

/// `$CODEX_HOME` (default `~/.codex`)`/sessions`.
fn sessions_dir(env: &[(String, String)]) -> Option<PathBuf> {
    let home = match agent::var(env, "CODEX_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => agent::home(env)?.join(".codex"),
    };
    Some(home.join("sessions"))
}

fn is_rollout(name: &str) -> bool {
    name.starts_with("rollout-") && name.ends_with(".jsonl")
}

/// The rollout file of session `id` in any day folder (the newest day first).
fn find_rollout(sessions: &Path, id: &str) -> Option<PathBuf> {
    let suffix = format!("-{id}.jsonl");
    day_dirs(sessions).into_iter().rev().find_map(|(_, dir)| {
        agent::files_in(&dir, |n| is_rollout(n) && n.ends_with(&suffix))
            .into_iter()
            .next()
    })
}

/// The `payload` of a rollout's first line, if it is a `session_meta`.
fn session_meta(rollout: &Path) -> Option<serde_json::Value> {
    let first = agent::first_json_line(rollout)?;
    if str_at(&first, "type") != Some("session_meta") {
        return None;
    }
    first.get("payload").cloned()
}

/// A date as (year, month, day).
type Date = (u64, u64, u64);

/// `sessions/YYYY/MM/DD`.
fn day_dir(sessions: &Path, (y, m, d): Date) -> PathBuf {
    sessions
        .join(format!("{y:04}"))
        .join(format!("{m:02}"))
        .join(format!("{d:02}"))
}

/// The day folders under `sessions` with their dates, oldest first.
fn day_dirs(sessions: &Path) -> Vec<(Date, PathBuf)> {
    let numbered = |dir: &Path| -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .filter(|(_, p): &(u64, PathBuf)| p.is_dir())
            .collect()
    };
    let mut days = Vec::new();
    for (y, year) in numbered(sessions) {
        for (m, month) in numbered(&year) {
            days.extend(numbered(&month).into_iter().map(|(d, p)| ((y, m, d), p)));
        }
    }
    days.sort();
    days
}

/// The creation time (milliseconds since 1970) a version 7 UUID starts with.
fn uuid_v7_time(id: &str) -> Option<u64> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    let well_formed =
        id.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    if !well_formed || hex.as_bytes()[12] != b'7' {
        return None;
    }
    u64::from_str_radix(&hex[..12], 16).ok()
}

/// Milliseconds since 1970 as a UTC date and (hour, minute, second), read from the RFC 3339
/// form of that time.
fn utc(millis: u64) -> (Date, (u64, u64, u64)) {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    let text = humantime::format_rfc3339_seconds(time).to_string(); // 2026-11-30T21:03:28Z
    let n = |range: std::ops::Range<usize>| text[range].parse::<u64>().unwrap_or(0);
    (
        (n(0..4), n(5..7), n(8..10)),
        (n(11..13), n(14..16), n(17..19)),
    )
}

#[derive(Default)]
struct CodexParser {
    report: Report,
}

impl CodexParser {
    fn event(&mut self, v: &serde_json::Value) {
        let r = &mut self.report;
        match str_at(v, "type") {
            Some("thread.started") => {
                if let Some(id) = str_at(v, "thread_id") {
                    r.session = Some(id.to_string());
                }
            }
            Some("item.completed") => {
                let Some(item) = v.get("item") else { return };
                match str_at(item, "type") {
                    Some("agent_message") => {
                        if let Some(t) = str_at(item, "text") {
                            r.final_message = Some(t.to_string());
                        }
                    }
                    // E.g. "Model metadata … not found": Codex goes on; keep it for messages.
                    Some("error") => r.problem = str_at(item, "message").map(String::from),
                    _ => {}
                }
            }
            Some("turn.completed") => {
                r.completed = true;
                if let Some(u) = v.get("usage") {
                    r.add_usage("input_tokens", u64_at(u, "input_tokens"));
                    r.add_usage("cache_read_input_tokens", u64_at(u, "cached_input_tokens"));
                    r.add_usage("output_tokens", u64_at(u, "output_tokens"));
                    r.add_usage(
                        "reasoning_output_tokens",
                        u64_at(u, "reasoning_output_tokens"),
                    );
                }
            }
            Some("turn.failed") => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("the turn failed");
                r.error(tidy_api_error(msg));
            }
            // Not final by itself: `turn.failed` follows a fatal one; `Reconnecting...` repeats.
            Some("error") => r.problem = str_at(v, "message").map(tidy_api_error),
            _ => {}
        }
    }
}

impl EventParser for CodexParser {
    fn line(&mut self, stream: Stream, line: &str) {
        match (stream, json_line(line)) {
            (Stream::Stdout, Some(v)) => self.event(&v),
            (Stream::Stderr, _) => {
                if line.contains("blocked by read-only sandbox") {
                    self.report.error(
                        "the agent was not allowed to write (read-only sandbox); allow it with the step's `permissions = \"edit\"`",
                    );
                } else if line.contains("Not inside a trusted directory") {
                    self.report.error(line.trim().to_string());
                } else if let Some(e) = line.strip_prefix("Error: ") {
                    // Fatal, before any event: e.g. "turn/start failed: Input exceeds the
                    // maximum length of 1048576 characters. …", then a stack backtrace.
                    self.report.error(e.trim().to_string());
                }
                if !line.starts_with("Reading additional input from stdin")
                    && !line.starts_with("Reading prompt from stdin")
                {
                    self.report.stderr_line(line);
                }
            }
            (stream, None) => self.report.other_line(stream, line),
        }
    }

    fn session(&self) -> Option<&str> {
        self.report.session.as_deref()
    }

    fn finish(self: Box<Self>, ending: &Ending) -> Outcome {
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
    use std::time::Duration;

    // Recorded from Codex 0.169.0 against the agent-lab model server.
    const STARTED: &str =
        r#"{"type":"thread.started","thread_id":"01a1fe20-3ba8-7b80-973a-129369d82e14"}"#;
    const TURN: &str = r#"{"type":"turn.started"}"#;
    const MSG1: &str = r#"{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"I'll create the file now."}}"#;
    const CHANGE: &str = r#"{"type":"item.completed","item":{"id":"item_1","type":"file_change","changes":[{"path":"/w/a.txt","kind":"add"}],"status":"completed"}}"#;
    const MSG2: &str = r#"{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"FAKE_DONE: the file has been written."}}"#;
    const DONE: &str = r#"{"type":"turn.completed","usage":{"input_tokens":20,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":10,"reasoning_output_tokens":0}}"#;
    const ERR_400: &str = r#"{"type":"error","message":"{\"type\": \"error\", \"error\": {\"type\": \"invalid_request_error\", \"message\": \"scripted 400\", \"code\": 400, \"status\": \"invalid_request_error\"}}"}"#;
    const FAILED_400: &str = r#"{"type":"turn.failed","error":{"message":"{\"type\": \"error\", \"error\": {\"type\": \"invalid_request_error\", \"message\": \"scripted 400\", \"code\": 400, \"status\": \"invalid_request_error\"}}"}}"#;
    const FAILED_429: &str = r#"{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many Requests"}}"#;
    const FAILED_401: &str = r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: scripted 401, url: http://127.0.0.1:8766/v1/responses"}}"#;
    const RECONNECT: &str = r#"{"type":"error","message":"Reconnecting... 2/5 (stream disconnected before completion: error sending request for url (http://127.0.0.1:9/v1/responses))"}"#;

    fn engine() -> CodexEngine {
        CodexEngine::new("codex")
    }

    #[test]
    fn command_line_new_and_resumed() {
        let mut step = resolved("implement");
        step.model = Some("gpt-5.5".into());
        step.reasoning = Some("high".into());
        let mut input = StepInput {
            step: &step,
            prompt: "do it",
            workdir: Path::new("/w"),
            resume_session: None,
            fork_session: false,
            prompt_file: Path::new("/nonexistent/p.prompt"),
        };
        let inv = engine().invocation(&input).expect("inv");
        assert_eq!(
            inv.args,
            [
                "exec",
                "--json",
                "--skip-git-repo-check",
                "-m",
                "gpt-5.5",
                "-c",
                "model_reasoning_effort=\"high\"",
                "-s",
                "workspace-write",
                "-C",
                "/w",
                "--",
                "-"
            ]
        );
        assert_eq!(inv.stdin, b"do it");
        input.resume_session = Some("01a1");
        let inv = engine().invocation(&input).expect("inv");
        let tail: Vec<&str> = inv
            .args
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(tail, ["resume", "01a1", "--", "-"]);
        assert_eq!(inv.stdin, b"do it");
    }

    #[test]
    fn permissions_map_to_sandbox_modes() {
        let mut step = resolved("s");
        for (p, flag) in [
            (Permissions::Read, "read-only"),
            (
                Permissions::Full,
                "--dangerously-bypass-approvals-and-sandbox",
            ),
        ] {
            step.permissions = Some(p);
            let inv = engine()
                .invocation(&StepInput {
                    step: &step,
                    prompt: "p",
                    workdir: Path::new("/w"),
                    resume_session: None,
                    fork_session: false,
                    prompt_file: Path::new("/nonexistent/p.prompt"),
                })
                .expect("inv");
            assert!(inv.args.iter().any(|a| a == flag), "{p:?}: {:?}", inv.args);
        }
    }

    #[test]
    fn success_takes_the_last_agent_message_and_usage() {
        let o = parse(
            &engine(),
            &[STARTED, TURN, MSG1, CHANGE, MSG2, DONE],
            &[],
            0,
        );
        assert!(o.success, "{o:?}");
        assert_eq!(
            o.session.as_deref(),
            Some("01a1fe20-3ba8-7b80-973a-129369d82e14")
        );
        assert_eq!(
            o.summary.as_deref(),
            Some("FAKE_DONE: the file has been written.")
        );
        assert_eq!(o.usage["input_tokens"], 20);
        assert_eq!(o.usage["output_tokens"], 10);
    }

    #[test]
    fn turn_failed_is_an_error_with_a_readable_message() {
        let o = parse(&engine(), &[STARTED, TURN, ERR_400, FAILED_400], &[], 1);
        assert!(!o.success);
        assert_eq!(
            o.error.as_deref(),
            Some("API error 400 (invalid_request_error): scripted 400")
        );
        assert_eq!(o.fallback_reason, None);
        // Even with exit code 0.
        assert!(!parse(&engine(), &[STARTED, FAILED_400], &[], 0).success);
    }

    #[test]
    fn rate_limit_and_login_are_fallback_reasons() {
        let o = parse(&engine(), &[STARTED, FAILED_429], &[], 1);
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
        let o = parse(&engine(), &[STARTED, FAILED_401], &[], 1);
        assert!(o
            .fallback_reason
            .expect("reason")
            .starts_with("not logged in"));
    }

    #[test]
    fn reconnecting_is_not_final_but_named_on_timeout() {
        let mut p = engine().parser();
        for l in [STARTED, TURN, RECONNECT, RECONNECT] {
            p.line(Stream::Stdout, l);
        }
        let o = p.finish(&Ending::TimedOut(Duration::from_secs(600)));
        assert!(!o.success);
        let e = o.error.expect("error");
        assert!(e.starts_with("timed out after 10m"), "{e}");
        assert!(e.contains("Reconnecting... 2/5"), "{e}");
    }

    #[test]
    fn a_prompt_codex_refuses_fails_with_codexs_reason() {
        let o = parse(
            &engine(),
            &[STARTED],
            &[
                "Reading prompt from stdin...",
                r#"Error: turn/start: turn/start failed: Input exceeds the maximum length of 1048576 characters. (code -32602), data: {"input_error_code":"input_too_large","max_chars":1048576,"actual_chars":1048577}"#,
                "",
                "Stack backtrace:",
                "   0: <unknown>",
            ],
            1,
        );
        assert!(!o.success);
        let e = o.error.expect("error");
        assert!(
            e.starts_with("turn/start: turn/start failed: Input exceeds the maximum length"),
            "{e}"
        );
    }

    #[test]
    fn read_only_rejection_on_stderr_fails() {
        let o = parse(
            &engine(),
            &[STARTED, TURN, MSG1, MSG2, DONE],
            &["2026-11-21T12:41:28.535827Z ERROR codex_core::tools::router: error=patch rejected: writing is blocked by read-only sandbox; rejected by user approval settings"],
            0,
        );
        assert!(!o.success);
        assert!(o.error.expect("error").contains("read-only sandbox"));
    }

    #[test]
    fn interactive_new_and_resumed() {
        let mut step = resolved("implement");
        step.model = Some("gpt-5.5".into());
        step.reasoning = Some("high".into());
        let i = interactive(&engine(), &step, "-do it", None).expect("interactive");
        assert_eq!(i.session, None, "Codex picks its own id");
        assert_eq!(
            i.inv.args,
            [
                "--no-daemon",
                "-m",
                "gpt-5.5",
                "-c",
                "model_reasoning_effort=\"high\"",
                "-s",
                "workspace-write",
                "-C",
                "/w",
                "--",
                "-do it"
            ]
        );
        step.permissions = Some(Permissions::Full);
        step.model = None;
        step.reasoning = None;
        let i = interactive(&engine(), &step, "more", Some("01a2")).expect("interactive");
        assert_eq!(i.session.as_deref(), Some("01a2"));
        assert_eq!(
            i.inv.args,
            [
                "resume",
                "--no-daemon",
                "--dangerously-bypass-approvals-and-sandbox",
                "-C",
                "/w",
                "01a2",
                "--",
                "more"
            ]
        );
        assert!(!interactive_args(&engine(), &step, "", None).contains(&"--".to_string()));
        let args = large_prompt_goes_to_the_file(&engine());
        assert!(!args.contains(&"exec".to_string()));
    }

    /// A rollout of session `id` run in `cwd`, in the day folder `day` of `home`'s sessions.
    fn rollout(home: &Path, day: &str, id: &str, cwd: &str) -> PathBuf {
        let path = home
            .join(".codex/sessions")
            .join(day)
            .join(format!("rollout-2026-11-30T21-03-28-{id}.jsonl"));
        let meta = serde_json::json!({"timestamp": "2026-11-30T21:03:28.492Z", "type": "session_meta",
            "payload": {"id": id, "cwd": cwd, "originator": "codex-tui"}});
        write(&path, &format!("{meta}\n"));
        path
    }

    fn today() -> String {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        let ((y, m, d), _) = utc(ms as u64);
        format!("{y:04}/{m:02}/{d:02}")
    }

    #[test]
    fn find_session_reads_the_rollouts() {
        let home = tempfile::tempdir().expect("home");
        let env = home_env(home.path());
        let since = SystemTime::now() - std::time::Duration::from_secs(60);
        let e = engine();
        let w = Path::new("/w");
        assert_eq!(e.find_session(&env, w, since, None), None);
        assert_eq!(e.find_session(&env, w, since, Some(ID)), None);
        let other = "01a22e45-99e7-7c30-842f-944cb296efed";
        rollout(home.path(), &today(), other, "/elsewhere");
        assert_eq!(e.find_session(&env, w, since, None), None, "another cwd");
        rollout(home.path(), &today(), ID, "/w");
        assert_eq!(e.find_session(&env, w, since, None).as_deref(), Some(ID));
        assert_eq!(
            e.find_session(&env, w, since, Some(ID)).as_deref(),
            Some(ID)
        );
        assert_eq!(e.find_session(&env, w, since, Some("01a22e45-0000")), None);
        // A resumed session is found in any day folder; a new one only from `since`'s day on.
        let old = "01a22e45-1111-7000-8000-000000000000";
        rollout(home.path(), "2001/01/02", old, "/old");
        let old_w = Path::new("/old");
        assert_eq!(
            e.find_session(&env, old_w, since, Some(old)).as_deref(),
            Some(old)
        );
        assert_eq!(e.find_session(&env, old_w, since, None), None);
        // $CODEX_HOME replaces ~/.codex.
        let mut env = env;
        env.push((
            "CODEX_HOME".into(),
            home.path().join("none").display().to_string(),
        ));
        assert_eq!(e.find_session(&env, w, since, Some(ID)), None);
    }

    const ID: &str = "01a22e45-127a-7f33-a669-eebe0c6e4d81";

    #[test]
    fn the_transcript_is_the_rollout_or_where_codex_would_put_it() {
        let home = tempfile::tempdir().expect("home");
        let env = home_env(home.path());
        let e = engine();
        let w = Path::new("/w");
        // Not here: the day and time of its version 7 id (2026-11-30 21:03:28 UTC).
        let sessions = home.path().join(".codex/sessions");
        assert_eq!(
            e.transcript_path(&env, w, ID),
            Some(sessions.join(format!("2026/11/30/rollout-2026-11-30T21-03-28-{ID}.jsonl")))
        );
        assert_eq!(e.transcript_path(&env, w, "not-a-v7-id"), None);
        assert_eq!(e.transcript_path(&env, w, "../x"), None);
        let path = rollout(home.path(), "2026/12/01", ID, "/w");
        assert_eq!(e.transcript_path(&env, w, ID), Some(path));
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc(0), ((1970, 1, 1), (0, 0, 0)));
        assert_eq!(utc(951_782_400_000), ((2000, 2, 29), (0, 0, 0)));
        assert_eq!(utc(1_796_072_608_378), ((2026, 11, 30), (21, 3, 28)));
        assert_eq!(uuid_v7_time(ID), Some(1_796_072_608_378));
    }
}

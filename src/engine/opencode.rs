//! The `opencode` engine: OpenCode, `opencode run --format json`.
//!
//! Command line: `opencode run --format json [-m PROVIDER/MODEL] [--variant R] <permissions>
//! --dir WORKDIR [-s ID] [args…]` with the prompt on stdin. `reasoning` maps to `--variant`
//! (the provider's reasoning effort, e.g. high, max, minimal). Measured on OpenCode 1.18.33:
//! with no message argument, `run` reads a non-terminal stdin to its end and sends exactly that,
//! a trailing newline included (a 1 MiB prompt, new and `-s`-resumed, reached the model whole);
//! given a message as well it would send `MESSAGE\nSTDIN`.
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]): `read` → `--agent plan`
//! (OpenCode's built-in read-only agent), `edit` → nothing (file writes are allowed by default
//! in `run`), `full` → `--auto` (auto-approve whatever is not explicitly denied).
//!
//! Stream: JSON events `step_start`, `text`, `tool_use`, `step_finish`, `error`, each with a
//! top-level `sessionID` (`ses_…`) and a `part` (`part.text`; `step_finish` has `part.tokens`
//! and `part.cost` in dollars). Errors: `{"type":"error","error":{"name":"APIError","data":
//! {"message","statusCode","isRetryable"}}}` and exit 1.
//!
//! Interactive: `opencode WORKDIR [-m M] <permissions> [args…] [--prompt=MESSAGE]` — the TUI
//! takes the project folder as its positional argument and has no `--variant` (`reasoning` is
//! not used). Measured on 1.18.33: the TUI sends `--prompt` at once in a new session, but with
//! `-s ID` it opens the session and drops the prompt without a word (known upstream:
//! anomalyco/opencode#37536, #48113). So continuing a session interactively works only without
//! a first message; with one it is refused here rather than silently losing the prompt.
//!
//! Sessions live in OpenCode's SQLite database (`$XDG_DATA_HOME/opencode/opencode.db`), one for
//! all projects: there is no per-session file to keep as a transcript, and git machine does not
//! read SQLite. The session a run used is found with OpenCode's own `opencode session list
//! --format json` (`[{id, title, updated, created, projectId, directory}]`, times in
//! milliseconds), run in the worktree with the user's environment.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::agent::{self, json_line, str_at, u64_at, Cli, Report};
use super::{
    Ending, Engine, EngineError, EventParser, Interactive, Invocation, Outcome, StepInput, Stream,
};
use crate::workflow::{Permissions, ResolvedStep};

pub const CLI: Cli = Cli {
    engine: "opencode",
    program: "opencode",
    override_var: "MACHINE_OPENCODE_BIN",
    install: "npm install -g opencode-ai",
};

agent::cli_engine!(OpencodeEngine, CLI);

impl Engine for OpencodeEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let mut args: Vec<String> = ["run", "--format", "json"].map(String::from).to_vec();
        if let Some(model) = &step.model {
            args.extend(["-m".into(), model.clone()]);
        }
        if let Some(variant) = &step.reasoning {
            args.extend(["--variant".into(), variant.clone()]);
        }
        args.extend(permissions(step));
        args.extend(["--dir".into(), input.workdir.display().to_string()]);
        if let Some(id) = input.resume_session {
            args.extend(["-s".into(), id.to_string()]);
            if input.fork_session {
                args.push("--fork".into());
            }
        }
        args.extend(step.args.iter().cloned());
        Ok(Invocation::agent(
            &self.program,
            args,
            agent::step_env(step),
            input.prompt,
        ))
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(OpencodeParser::default())
    }

    fn can_resume(&self) -> bool {
        true
    }

    /// `opencode WORKDIR [-m M] <permissions> [-s ID] [args…] [--prompt=MESSAGE]`: see the
    /// module header.
    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError> {
        let step = input.step;
        let message = agent::first_message(input)?;
        if let (Some(id), Some(_)) = (input.resume_session, &message) {
            return Err(EngineError::Invalid {
                step: step.id.to_string(),
                message: format!(
                    "OpenCode cannot continue session {id} interactively with a first message: its TUI drops `--prompt` when given `--session` (OpenCode 1.18, anomalyco/opencode#37536); start a new session (no `session`) or run the step headless"
                ),
            });
        }
        let mut args = vec![input.workdir.display().to_string()];
        if let Some(model) = &step.model {
            args.extend(["-m".into(), model.clone()]);
        }
        args.extend(permissions(step));
        if let Some(id) = input.resume_session {
            args.extend(["-s".into(), id.to_string()]);
        }
        args.extend(step.args.iter().cloned());
        if let Some(message) = message {
            args.push(format!("--prompt={message}"));
        }
        Ok(Interactive {
            inv: Invocation::agent(&self.program, args, agent::step_env(step), ""),
            session: input.resume_session.map(String::from),
        })
    }

    /// From `opencode session list`: `expected` when it is listed; without one, the session of
    /// `workdir` updated last since `since`.
    fn find_session(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        since: SystemTime,
        expected: Option<&str>,
    ) -> Option<String> {
        let sessions = list_sessions(&self.program, env, workdir)?;
        if let Some(id) = expected {
            let listed = sessions.iter().any(|s| str_at(s, "id") == Some(id));
            return listed.then(|| id.to_string());
        }
        // Like file times, allow a little for clocks that keep whole seconds.
        let since = since.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
        let since = since.saturating_sub(2000);
        let workdir = workdir.to_string_lossy();
        sessions
            .iter()
            .filter(|s| str_at(s, "directory") == Some(workdir.as_ref()))
            .filter_map(|s| {
                let updated = u64_at(s, "updated").or_else(|| u64_at(s, "created"))?;
                let id = str_at(s, "id").filter(|id| agent::safe_id(id))?;
                (updated >= since).then_some((updated, id))
            })
            .max()
            .map(|(_, id)| id.to_string())
    }
}

/// The permission options headless and interactive runs share.
fn permissions(step: &ResolvedStep) -> Vec<String> {
    match agent::permissions(step) {
        Permissions::Read => vec!["--agent".into(), "plan".into()],
        Permissions::Edit => Vec::new(),
        Permissions::Full => vec!["--auto".into()],
    }
}

/// How long `opencode session list` may take (measured: about 2 s).
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// OpenCode's sessions as `opencode session list --format json` prints them, run in `workdir`
/// with exactly the user's environment `env`, stdin closed, in a process group of its own that
/// is killed if it takes longer than [`LIST_TIMEOUT`]. None if it fails.
fn list_sessions(program: &str, env: &[(String, String)], workdir: &Path) -> Option<Vec<Value>> {
    let mut child = Command::new(program)
        .args(["session", "list", "--format", "json"])
        .current_dir(workdir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = tx.send(stdout.read_to_string(&mut text).map(|_| text));
    });
    let deadline = Instant::now() + LIST_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    // Whatever it left running (or all of it, on a timeout) goes with its group, so nothing
    // keeps the pipe open. (Just reaped, its id cannot have been given to a new group yet.)
    if let Ok(group) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid only signals that process group, which is ours.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    let _ = child.wait();
    let text = rx.recv_timeout(Duration::from_secs(2)).ok()?.ok()?;
    if !status?.success() {
        return None;
    }
    serde_json::from_str::<Vec<Value>>(text.trim()).ok()
}

#[derive(Default)]
struct OpencodeParser {
    report: Report,
    /// Text parts since the last tool call.
    text: Vec<String>,
}

impl OpencodeParser {
    fn event(&mut self, v: &serde_json::Value) {
        let r = &mut self.report;
        if let Some(id) = str_at(v, "sessionID") {
            r.session = Some(id.to_string());
        }
        let part = v.get("part");
        match str_at(v, "type") {
            Some("text") => {
                if let Some(t) = part.and_then(|p| str_at(p, "text")) {
                    self.text.push(t.to_string());
                }
            }
            Some("tool_use") => {
                self.text.clear();
                let state = part.and_then(|p| p.get("state"));
                if state.and_then(|s| str_at(s, "status")) == Some("error") {
                    r.problem = state.and_then(|s| str_at(s, "error")).map(String::from);
                }
            }
            Some("step_finish") => {
                r.completed = true;
                if let Some(p) = part {
                    if let Some(t) = p.get("tokens") {
                        r.add_usage("input_tokens", u64_at(t, "input"));
                        r.add_usage("output_tokens", u64_at(t, "output"));
                        r.add_usage("reasoning_output_tokens", u64_at(t, "reasoning"));
                        if let Some(c) = t.get("cache") {
                            r.add_usage("cache_read_input_tokens", u64_at(c, "read"));
                        }
                    }
                    r.add_cost_usd(p.get("cost").and_then(|c| c.as_f64()));
                }
            }
            Some("error") => {
                let e = v.get("error");
                let data = e.and_then(|e| e.get("data"));
                let name = e.and_then(|e| str_at(e, "name")).unwrap_or("error");
                let msg = data
                    .and_then(|d| str_at(d, "message"))
                    .or_else(|| e.and_then(|e| str_at(e, "message")))
                    .unwrap_or("the run failed");
                r.error(match data.and_then(|d| u64_at(d, "statusCode")) {
                    Some(code) => format!("{name} {code}: {msg}"),
                    None => format!("{name}: {msg}"),
                });
            }
            _ => {}
        }
    }
}

impl EventParser for OpencodeParser {
    fn line(&mut self, stream: Stream, line: &str) {
        match (stream, json_line(line)) {
            (Stream::Stdout, Some(v)) => self.event(&v),
            (stream, _) => self.report.other_line(stream, line),
        }
    }

    fn session(&self) -> Option<&str> {
        self.report.session.as_deref()
    }

    fn finish(mut self: Box<Self>, ending: &Ending) -> Outcome {
        if !self.text.is_empty() {
            self.report.final_message = Some(self.text.join("\n"));
        }
        self.report.finish(CLI.engine, ending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{
        interactive, interactive_args, large_prompt_goes_to_the_file, parse, resolved, write,
    };

    // Recorded from OpenCode 1.18.33 against the agent-lab model server (trimmed).
    const START: &str = r#"{"type":"step_start","timestamp":1795264984130,"sessionID":"ses_e01de5971ffeJKyrt9qFRH3yq0","part":{"id":"prt_1","messageID":"msg_1","sessionID":"ses_e01de5971ffeJKyrt9qFRH3yq0","type":"step-start"}}"#;
    const TEXT1: &str = r#"{"type":"text","timestamp":1795264984130,"sessionID":"ses_e01de5971ffeJKyrt9qFRH3yq0","part":{"id":"prt_2","type":"text","text":"I'll create the file now."}}"#;
    const TOOL: &str = r#"{"type":"tool_use","timestamp":1795264984170,"sessionID":"ses_e01de5971ffeJKyrt9qFRH3yq0","part":{"type":"tool","tool":"write","callID":"call_0005","state":{"status":"completed","input":{"filePath":"/w/a.txt","content":"hello\n"},"output":"Wrote file successfully."}}}"#;
    const FINISH1: &str = r#"{"type":"step_finish","timestamp":1795264984281,"sessionID":"ses_e01de5971ffeJKyrt9qFRH3yq0","part":{"reason":"tool-calls","type":"step-finish","tokens":{"total":15,"input":10,"output":5,"reasoning":0,"cache":{"write":0,"read":0}},"cost":0}}"#;
    const TEXT2: &str = r#"{"type":"text","timestamp":1795264984755,"sessionID":"ses_e01de5971ffeJKyrt9qFRH3yq0","part":{"id":"prt_3","type":"text","text":"FAKE_DONE: the file has been written."}}"#;
    const FINISH2: &str = r#"{"type":"step_finish","timestamp":1795264984903,"sessionID":"ses_e01de5971ffeJKyrt9qFRH3yq0","part":{"reason":"stop","type":"step-finish","tokens":{"total":15,"input":10,"output":5,"reasoning":0,"cache":{"write":0,"read":0}},"cost":0.0015}}"#;
    const ERROR_401: &str = r#"{"type":"error","timestamp":1795264992099,"sessionID":"ses_e01de3349ffe3HBrVq8Yc4Inu6","error":{"name":"APIError","data":{"message":"scripted 401","statusCode":401,"isRetryable":false}}}"#;

    fn engine() -> OpencodeEngine {
        OpencodeEngine::new("opencode")
    }

    #[test]
    fn command_line() {
        let mut step = resolved("s");
        step.model = Some("fake/fake-model".into());
        step.permissions = Some(Permissions::Read);
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: "go",
                workdir: Path::new("/w"),
                resume_session: Some("ses_1"),
                fork_session: false,
                prompt_file: Path::new("/nonexistent/p.prompt"),
            })
            .expect("inv");
        assert_eq!(
            inv.args,
            [
                "run",
                "--format",
                "json",
                "-m",
                "fake/fake-model",
                "--agent",
                "plan",
                "--dir",
                "/w",
                "-s",
                "ses_1"
            ]
        );
        assert_eq!(inv.stdin, b"go");
    }

    #[test]
    fn success_with_tokens_and_cost() {
        let o = parse(
            &engine(),
            &[START, TEXT1, TOOL, FINISH1, START, TEXT2, FINISH2],
            &[],
            0,
        );
        assert!(o.success, "{o:?}");
        assert_eq!(o.session.as_deref(), Some("ses_e01de5971ffeJKyrt9qFRH3yq0"));
        assert_eq!(
            o.summary.as_deref(),
            Some("FAKE_DONE: the file has been written.")
        );
        assert_eq!(o.usage["input_tokens"], 20);
        assert_eq!(o.usage["cost_usd_micros"], 1500);
    }

    #[test]
    fn error_event() {
        let o = parse(&engine(), &[ERROR_401], &[], 1);
        assert!(!o.success);
        assert_eq!(o.error.as_deref(), Some("APIError 401: scripted 401"));
        assert!(o.fallback_reason.is_some());
        assert_eq!(o.session.as_deref(), Some("ses_e01de3349ffe3HBrVq8Yc4Inu6"));
        assert!(!parse(&engine(), &[START, ERROR_401], &[], 0).success);
    }

    #[test]
    fn interactive_new_session_and_a_resume_without_a_message() {
        let mut step = resolved("s");
        step.model = Some("fake/fake-model".into());
        step.reasoning = Some("high".into());
        step.permissions = Some(Permissions::Full);
        let i = interactive(&engine(), &step, "-go\non", None).expect("interactive");
        assert_eq!(i.session, None, "OpenCode picks its own id");
        assert_eq!(
            i.inv.args,
            ["/w", "-m", "fake/fake-model", "--auto", "--prompt=-go\non"]
        );
        step.permissions = Some(Permissions::Read);
        let a = interactive_args(&engine(), &step, "", Some("ses_1"));
        assert_eq!(
            a,
            [
                "/w",
                "-m",
                "fake/fake-model",
                "--agent",
                "plan",
                "-s",
                "ses_1"
            ]
        );
        let err = interactive(&engine(), &step, "go on", Some("ses_1")).expect_err("refused");
        assert!(err.to_string().contains("drops `--prompt`"), "{err}");
        let args = large_prompt_goes_to_the_file(&engine());
        assert!(!args.contains(&"run".to_string()));
    }

    /// An `opencode` that prints `listing` for `session list --format json` (and fails else).
    fn lister(dir: &Path, listing: &str) -> OpencodeEngine {
        let program = dir.join("opencode");
        let script = format!(
            "#!/bin/sh\n[ \"$*\" = \"session list --format json\" ] || exit 2\n[ \"$PWD\" = \"$EXPECT_PWD\" ] || exit 3\ncat <<'EOF'\n{listing}\nEOF\n"
        );
        write(&program, &script);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Another test's child may hold the new file open for a moment ("text file busy").
        while let Err(e) = Command::new(&program).status() {
            assert_eq!(e.raw_os_error(), Some(libc::ETXTBSY), "{e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        OpencodeEngine::new(program.display().to_string())
    }

    #[test]
    fn find_session_asks_opencodes_session_list() {
        let dir = tempfile::tempdir().expect("dir");
        let w = dir.path().join("w");
        std::fs::create_dir_all(&w).expect("workdir");
        let env = vec![
            ("EXPECT_PWD".to_string(), w.display().to_string()),
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ];
        let now = SystemTime::now();
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("clock").as_millis();
        let listing = serde_json::json!([
            {"id": "ses_new", "title": "t", "updated": ms(now), "created": ms(now), "directory": w},
            {"id": "ses_old", "updated": 1000, "created": 1000, "directory": w},
            {"id": "ses_else", "updated": ms(now) + 5, "created": ms(now), "directory": "/elsewhere"}
        ]);
        let e = lister(dir.path(), &listing.to_string());
        let since = now - std::time::Duration::from_secs(1);
        assert_eq!(
            e.find_session(&env, &w, since, None).as_deref(),
            Some("ses_new")
        );
        assert_eq!(
            e.find_session(&env, &w, since, Some("ses_old")).as_deref(),
            Some("ses_old")
        );
        assert_eq!(e.find_session(&env, &w, since, Some("ses_gone")), None);
        let later = now + std::time::Duration::from_secs(60);
        assert_eq!(e.find_session(&env, &w, later, None), None);
        // A failing or missing program confirms nothing.
        assert_eq!(e.find_session(&[], &w, since, Some("ses_old")), None);
        let missing = OpencodeEngine::new("/nonexistent/opencode");
        assert_eq!(missing.find_session(&env, &w, since, Some("ses_old")), None);
    }
}

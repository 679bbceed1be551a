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

use super::agent::{self, json_line, str_at, tidy_api_error, u64_at, Cli, Report};
use super::{Ending, Engine, EngineError, EventParser, Invocation, Outcome, StepInput, Stream};
use crate::workflow::Permissions;

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
        args.extend(["-C".into(), input.workdir.display().to_string()]);
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
    use crate::engine::testing::{parse, resolved};
    use std::path::Path;
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
}

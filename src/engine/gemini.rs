//! The `gemini` engine: Gemini CLI in headless mode with a JSON event stream.
//!
//! Command line: `gemini --prompt= -o stream-json --skip-trust [-m M] --approval-mode MODE
//! [--resume ID] [args…]` with the prompt on stdin. Measured on Gemini CLI 0.61.0: headless
//! Gemini reads a piped stdin to its end and puts it *before* the `-p` text, joined by a blank
//! line (`STDIN\n\nP`); with `-p` empty the model gets exactly stdin, a trailing newline
//! included (a 1 MiB prompt, new and `--resume`d, reached the model whole). The empty
//! `--prompt=` is what selects headless mode explicitly; `--skip-trust`
//! trusts the worktree for this run (otherwise headless Gemini exits 55 in an untrusted
//! folder); `GEMINI_CLI_NO_RELAUNCH=true` keeps it in one process. Gemini has no reasoning
//! setting on its command line: `reasoning` is not used.
//!
//! Known limit, not ours (measured, 0.61.0): stream-json echoes the whole prompt as its first
//! `message` event, and when stdout is a pipe Gemini can exit before that write has drained,
//! losing the events after it — the final `result` included, so the step fails with "exited 0
//! without reporting a result" although the model got the prompt whole. Seen 5 times in 5 with
//! a 1 MiB prompt, once in 5 at 300 KB, never with stdout a file or with `-o json` (which does
//! not echo the prompt).
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]) are approval modes:
//! `read` → `default` (headless, this offers only read-only tools), `edit` → `auto_edit`,
//! `full` → `yolo`.
//!
//! Stream: `init` (`session_id`), `message` (`role`, `content`, `delta`), `tool_use`,
//! `tool_result`, and `result` (`status` "success"/"error", `error.message`, `stats`). Measured:
//! on an API error the exit code is the HTTP status mod 256 (400 → 144, 401 → 145); with
//! `-o json` the error object goes to stderr. 429 and 5xx are retried with backoff for minutes
//! (`Attempt N failed with status 429. Retrying with backoff...` on stderr): a problem, not an
//! error, until the runner's timeout ends the run.

use super::agent::{self, json_line, str_at, tidy_api_error, u64_at, Cli, Report};
use super::{Ending, Engine, EngineError, EventParser, Invocation, Outcome, StepInput, Stream};
use crate::workflow::Permissions;

pub const CLI: Cli = Cli {
    engine: "gemini",
    program: "gemini",
    override_var: "MACHINE_GEMINI_BIN",
    install: "npm install -g @google/gemini-cli",
};

agent::cli_engine!(GeminiEngine, CLI);

impl Engine for GeminiEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let mut args = vec![
            "--prompt=".to_string(),
            "-o".into(),
            "stream-json".into(),
            "--skip-trust".into(),
        ];
        if let Some(model) = &step.model {
            args.extend(["-m".into(), model.clone()]);
        }
        let mode = match agent::permissions(step) {
            Permissions::Read => "default",
            Permissions::Edit => "auto_edit",
            Permissions::Full => "yolo",
        };
        args.extend(["--approval-mode".into(), mode.into()]);
        if let Some(id) = input.resume_session {
            args.extend(["--resume".into(), id.to_string()]);
        }
        args.extend(step.args.iter().cloned());
        let mut env = vec![("GEMINI_CLI_NO_RELAUNCH".to_string(), "true".to_string())];
        env.extend(agent::step_env(step));
        Ok(Invocation::agent(&self.program, args, env, input.prompt))
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(GeminiParser::default())
    }

    fn can_resume(&self) -> bool {
        true
    }
}

#[derive(Default)]
struct GeminiParser {
    report: Report,
    /// Assistant text since the last tool call: the final message once the turn ends.
    text: String,
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

    fn stderr(&mut self, line: &str) {
        let l = line.trim();
        if let Some(v) = json_line(l) {
            // `-o json` puts `{session_id, error:{type,message,code}}` on stderr.
            if let Some(e) = v.get("error") {
                let msg = str_at(e, "message").unwrap_or("error");
                let msg = match u64_at(e, "code") {
                    Some(code) if !msg.starts_with("API") => {
                        format!("API error {code}: {msg}")
                    }
                    _ => tidy_api_error(msg),
                };
                self.report.error(msg);
                return;
            }
        }
        if l.starts_with("Attempt ") && l.contains("Retrying") {
            let head = l.split(" _ApiError").next().unwrap_or(l);
            self.report.problem = Some(head.to_string());
        }
        if !l.starts_with("at ") && !l.starts_with("Warning: 256-color") {
            self.report.stderr_line(l);
        }
    }
}

impl EventParser for GeminiParser {
    fn line(&mut self, stream: Stream, line: &str) {
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
    use crate::engine::testing::{parse, resolved};
    use std::path::Path;

    // Recorded from Gemini CLI 0.61.0 against the agent-lab model server.
    const INIT: &str = r#"{"type":"init","timestamp":"2026-11-21T12:41:43.130Z","session_id":"08b84faf-eef7-49c4-bc65-8ede672858aa","model":"gemini-2.5-flash"}"#;
    const USER: &str = r#"{"type":"message","timestamp":"2026-11-21T12:41:43.132Z","role":"user","content":"CREATE_FILE /w/a.txt hello"}"#;
    const SAY1: &str = r#"{"type":"message","timestamp":"2026-11-21T12:41:43.172Z","role":"assistant","content":"I'll create the file now.","delta":true}"#;
    const TOOL: &str = r#"{"type":"tool_use","timestamp":"2026-11-21T12:41:43.241Z","tool_name":"write_file","tool_id":"write_file_1","parameters":{"file_path":"/w/a.txt","content":"hello\n"}}"#;
    const TOOL_OK: &str = r#"{"type":"tool_result","timestamp":"2026-11-21T12:41:43.434Z","tool_id":"write_file_1","status":"success"}"#;
    const SAY2: &str = r#"{"type":"message","timestamp":"2026-11-21T12:41:43.487Z","role":"assistant","content":"FAKE_DONE: the file has been written.","delta":true}"#;
    const RESULT: &str = r#"{"type":"result","timestamp":"2026-11-21T12:41:43.488Z","status":"success","stats":{"total_tokens":30,"input_tokens":20,"output_tokens":10,"cached":0,"input":20,"duration_ms":359,"tool_calls":1}}"#;
    const RESULT_400: &str = r#"{"type":"result","timestamp":"2026-11-21T12:41:48.172Z","status":"error","error":{"type":"unknown","message":"[API Error: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"scripted 400\",\"code\":400,\"status\":\"invalid_request_error\"}}]"},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0}}"#;

    fn engine() -> GeminiEngine {
        GeminiEngine::new("gemini")
    }

    #[test]
    fn command_line() {
        let mut step = resolved("docs");
        step.model = Some("gemini-2.5-flash".into());
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: "-x",
                workdir: Path::new("/w"),
                resume_session: Some("08b8"),
                prompt_file: Path::new("/nonexistent/p.prompt"),
            })
            .expect("inv");
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
    fn error_result_and_folded_exit_code() {
        let o = parse(&engine(), &[INIT, USER, RESULT_400], &[], 144);
        assert!(!o.success);
        assert_eq!(
            o.error.as_deref(),
            Some("API error 400 (invalid_request_error): scripted 400")
        );
        // `-o json` style: nothing on stdout, the error object on stderr.
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
        // Only the exit code.
        let o = parse(&engine(), &[INIT], &[], 173);
        assert_eq!(o.error.as_deref(), Some("API error 429 (exit code 173)"));
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
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
}

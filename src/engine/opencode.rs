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

use super::agent::{self, json_line, str_at, u64_at, Cli, Report};
use super::{Ending, Engine, EngineError, EventParser, Invocation, Outcome, StepInput, Stream};
use crate::workflow::Permissions;

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
        match agent::permissions(step) {
            Permissions::Read => args.extend(["--agent".into(), "plan".into()]),
            Permissions::Edit => {}
            Permissions::Full => args.push("--auto".into()),
        }
        args.extend(["--dir".into(), input.workdir.display().to_string()]);
        if let Some(id) = input.resume_session {
            args.extend(["-s".into(), id.to_string()]);
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
    use crate::engine::testing::{parse, resolved};
    use std::path::Path;

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
}

//! The `cursor` engine: Cursor's agent CLI in print mode with a JSON event stream.
//!
//! Command line: `cursor-agent -p --output-format stream-json --trust [--model M]
//! <permissions> --workspace WORKDIR [--resume ID] [args…] PROMPT`. `--trust` skips the
//! workspace-trust question a headless run cannot answer. Cursor has no reasoning setting on
//! its command line (reasoning is part of the model name, e.g. `…-thinking`).
//!
//! The prompt is an argument: Cursor documents no other way in (not stdin, not a file), and
//! Cursor cannot be installed where git machine is tested, so this follows its documentation
//! only. Linux refuses an argument over 128 KiB, so a prompt over [`ARGV_PROMPT_MAX`] (100 KiB)
//! is written to the step's [`StepInput::prompt_file`] (outside the worktree) and the argument
//! becomes a short request to read that file first ([`pointer_prompt`]): the agent then reads
//! its instructions with its own file tool instead of receiving them in the first message.
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]): `read` → `--mode ask`
//! (read-only), `edit` → `--force --sandbox enabled` (in print mode Cursor applies changes only
//! with `--force`; the sandbox keeps shell commands inside the workspace), `full` → `--force
//! --sandbox disabled`.
//!
//! Stream (documented by Cursor as mirroring Claude Code's): `{"type":"system","subtype":"init",
//! "session_id"}`, `user`, `assistant` (`message.content[].text`), `tool_call`
//! (`started`/`completed`), and the final `{"type":"result","subtype":"success","is_error",
//! "result","session_id"}`. On failure Cursor exits non-zero, the stream may end without a
//! result, and the error is written to stderr. Parsed by Claude's parser.

use super::agent::{self, Cli};
use super::claude::ClaudeParser;
use super::{Ending, Engine, EngineError, EventParser, Invocation, Outcome, StepInput, Stream};
use crate::workflow::Permissions;

pub const CLI: Cli = Cli {
    engine: "cursor",
    program: "cursor-agent",
    override_var: "MACHINE_CURSOR_BIN",
    install: "curl https://cursor.com/install -fsS | bash",
};

/// The largest prompt passed as it is in argv, in bytes (Linux caps one argument at 128 KiB).
pub const ARGV_PROMPT_MAX: usize = 100 << 10;

/// The argument that stands for a prompt too long for argv, kept in `file`.
pub fn pointer_prompt(file: &std::path::Path, len: usize) -> String {
    format!(
        "Your instructions for this step are too long for a command line, so they are in the file {} ({len} bytes). Read that whole file first, then do what it says.",
        file.display()
    )
}

agent::cli_engine!(CursorEngine, CLI);

impl Engine for CursorEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--trust"]
            .map(String::from)
            .to_vec();
        if let Some(model) = &step.model {
            args.extend(["--model".into(), model.clone()]);
        }
        match agent::permissions(step) {
            Permissions::Read => args.extend(["--mode".into(), "ask".into()]),
            Permissions::Edit => {
                args.extend(["--force".into(), "--sandbox".into(), "enabled".into()])
            }
            Permissions::Full => {
                args.extend(["--force".into(), "--sandbox".into(), "disabled".into()])
            }
        }
        args.extend(["--workspace".into(), input.workdir.display().to_string()]);
        if let Some(id) = input.resume_session {
            args.extend(["--resume".into(), id.to_string()]);
        }
        args.extend(step.args.iter().cloned());
        if input.prompt.len() <= ARGV_PROMPT_MAX {
            args.push(input.prompt.to_string());
        } else {
            let file = input.write_prompt_file()?;
            args.push(pointer_prompt(file, input.prompt.len()));
        }
        Ok(Invocation::agent(
            &self.program,
            args,
            agent::step_env(step),
            "",
        ))
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(CursorParser(ClaudeParser::default()))
    }

    fn can_resume(&self) -> bool {
        true
    }
}

struct CursorParser(ClaudeParser);

impl EventParser for CursorParser {
    fn line(&mut self, stream: Stream, line: &str) {
        self.0.line(stream, line);
    }

    fn session(&self) -> Option<&str> {
        self.0.session()
    }

    fn finish(self: Box<Self>, ending: &Ending) -> Outcome {
        self.0.finish_as(CLI.engine, ending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{parse, resolved};
    use std::path::Path;

    // Shapes from Cursor's output-format documentation.
    const INIT: &str = r#"{"type":"system","subtype":"init","apiKeySource":"login","cwd":"/w","session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff","model":"Auto","permissionMode":"default"}"#;
    const ASSISTANT: &str = r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Done: wrote a.txt"}]},"session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff"}"#;
    const RESULT: &str = r#"{"type":"result","subtype":"success","duration_ms":1234,"duration_api_ms":1234,"is_error":false,"result":"Done: wrote a.txt","session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff","request_id":"r1"}"#;
    const RESULT_ERR: &str = r#"{"type":"result","subtype":"error","is_error":true,"result":"Rate limit exceeded","session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff"}"#;

    fn engine() -> CursorEngine {
        CursorEngine::new("cursor-agent")
    }

    #[test]
    fn command_line() {
        let step = resolved("s");
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: "go",
                workdir: Path::new("/w"),
                resume_session: Some("c6b6"),
                prompt_file: Path::new("/nonexistent/p.prompt"),
            })
            .expect("inv");
        assert_eq!(
            inv.args,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--trust",
                "--force",
                "--sandbox",
                "enabled",
                "--workspace",
                "/w",
                "--resume",
                "c6b6",
                "go"
            ]
        );
    }

    #[test]
    fn a_prompt_too_long_for_argv_goes_in_the_prompt_file() {
        let step = resolved("s");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("01-s.prompt");
        let prompt = "x".repeat(ARGV_PROMPT_MAX + 1);
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: &prompt,
                workdir: Path::new("/w"),
                resume_session: None,
                prompt_file: &file,
            })
            .expect("inv");
        let last = inv.args.last().expect("prompt argument");
        assert_eq!(*last, pointer_prompt(&file, prompt.len()));
        assert_eq!(std::fs::read_to_string(&file).expect("prompt file"), prompt);
    }

    #[test]
    fn success_and_errors() {
        let o = parse(&engine(), &[INIT, ASSISTANT, RESULT], &[], 0);
        assert!(o.success, "{o:?}");
        assert_eq!(
            o.session.as_deref(),
            Some("c6b62c6f-7ead-4fd6-9922-e952131177ff")
        );
        assert_eq!(o.summary.as_deref(), Some("Done: wrote a.txt"));
        let o = parse(&engine(), &[INIT, RESULT_ERR], &[], 0);
        assert!(!o.success);
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
        let o = parse(
            &engine(),
            &[INIT],
            &["Error: Authentication required. Please run 'cursor-agent login'"],
            1,
        );
        assert!(!o.success);
        assert!(o.error.expect("error").contains("Authentication required"));
        assert!(o.fallback_reason.is_some());
    }
}

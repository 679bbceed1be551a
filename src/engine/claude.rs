//! The `claude` engine: Claude Code in print mode with a JSON event stream.
//!
//! Command line: `claude -p --output-format stream-json --verbose [--model M] [--effort R]
//! <permissions> [--resume ID] [args…]` with the prompt on stdin (without `--verbose`
//! stream-json exits 1). Measured on Claude Code 2.1.197: with no prompt argument, `-p` reads a
//! non-terminal stdin to its end and sends exactly that, a trailing newline included (a 1 MiB
//! prompt, new and `--resume`d, reached the model whole); given an argument as well it would send
//! `ARG\nSTDIN`. Nothing of the prompt is in argv, so no size limit applies and a prompt
//! starting with `-` or following a variadic option such as `--add-dir` needs no `--`.
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]):
//! - `read` → `--permission-mode plan`: tools that change nothing;
//! - `edit` → `--permission-mode acceptEdits`: file edits are accepted without asking, shell
//!   commands that need approval are denied;
//! - `full` → `--dangerously-skip-permissions`. Claude Code refuses that flag as root unless
//!   `IS_SANDBOX=1`; we do not set it for the user (`env = { IS_SANDBOX = "1" }` in the step).
//!
//! `reasoning` maps to `--effort` (Claude Code has low, medium, high, xhigh, max; `minimal`
//! becomes `low`).
//!
//! Stream: every event carries `session_id`; the last is `{"type":"result"}` with `result`,
//! `is_error`, `api_error_status`, `usage`, `total_cost_usd`, `permission_denials`. Measured on
//! the real CLI: an API error gives `is_error:true` with `subtype:"success"`; under `-p` a
//! denied write exits 0 and is only visible in `permission_denials` — both are failures here.
//!
//! Interactive: `claude [--model M] [--effort R] <permissions> (--session-id UUID | --resume ID)
//! [args…] [-- MESSAGE]` — the same options without `-p`, the message as the one positional
//! argument (after `--`, so a prompt starting with `-` is not an option). Measured on 2.1.197:
//! the TUI sends the message at once, keeps the preset id, writes the transcript as
//! `<project>/<id>.jsonl` from the first message, and `--resume ID MESSAGE` appends to that same
//! file under the same id. A session with no message sent has no transcript, so it is not found.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::agent::{self, json_line, str_at, u64_at, Cli, Report};
use super::{
    Ending, Engine, EngineError, EventParser, Interactive, Invocation, Outcome, StepInput, Stream,
};
use crate::workflow::{Permissions, ResolvedStep};

pub const CLI: Cli = Cli {
    engine: "claude",
    program: "claude",
    override_var: "MACHINE_CLAUDE_BIN",
    install: "npm install -g @anthropic-ai/claude-code",
};

agent::cli_engine!(ClaudeEngine, CLI);

impl Engine for ClaudeEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
            .map(String::from)
            .to_vec();
        args.extend(options(step));
        if let Some(id) = input.resume_session {
            args.extend(["--resume".into(), id.to_string()]);
            if input.fork_session {
                args.push("--fork-session".into());
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

    /// `claude [options] (--session-id UUID | --resume ID) [args…] [-- MESSAGE]`: see the module
    /// header.
    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError> {
        let step = input.step;
        let mut args = options(step);
        let session = match input.resume_session {
            Some(id) => {
                args.extend(["--resume".into(), id.to_string()]);
                id.to_string()
            }
            None => {
                let id = agent::new_session_id();
                args.extend(["--session-id".into(), id.clone()]);
                id
            }
        };
        args.extend(step.args.iter().cloned());
        if let Some(message) = agent::first_message(input)? {
            args.extend(["--".into(), message]);
        }
        Ok(Interactive {
            inv: Invocation::agent(&self.program, args, agent::step_env(step), ""),
            session: Some(session),
        })
    }

    /// `expected` exists when its transcript does; without one, the transcript of the working
    /// directory's project written last since `since`.
    fn find_session(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        since: SystemTime,
        expected: Option<&str>,
    ) -> Option<String> {
        if let Some(id) = expected {
            let path = self.transcript_path(env, workdir, id)?;
            return path.is_file().then(|| id.to_string());
        }
        let dir = project_dir(env, workdir)?;
        let transcripts = agent::files_in(&dir, |n| n.ends_with(".jsonl"));
        agent::newest_since(transcripts, since, |p| {
            let id = p.file_stem()?.to_str()?;
            agent::safe_id(id).then(|| id.to_string())
        })
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(ClaudeParser::default())
    }

    /// `$CLAUDE_CONFIG_DIR` (default `~/.claude`)`/projects/<workdir, every character other
    /// than a letter, digit or '-' made '-'>/<session>.jsonl`, as Claude Code 2.x lays it out.
    fn transcript_path(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        session: &str,
    ) -> Option<PathBuf> {
        let dir = project_dir(env, workdir)?;
        agent::safe_id(session).then(|| dir.join(format!("{session}.jsonl")))
    }

    fn can_resume(&self) -> bool {
        true
    }
}

/// The options headless and interactive runs share: model, effort and permissions.
fn options(step: &ResolvedStep) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(model) = &step.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if let Some(effort) = &step.reasoning {
        // Claude Code's levels are low, medium, high, xhigh, max: no "minimal".
        let effort = if effort == "minimal" {
            "low"
        } else {
            effort.as_str()
        };
        args.extend(["--effort".into(), effort.to_string()]);
    }
    match agent::permissions(step) {
        Permissions::Read => args.extend(["--permission-mode".into(), "plan".into()]),
        Permissions::Edit => args.extend(["--permission-mode".into(), "acceptEdits".into()]),
        Permissions::Full => args.push("--dangerously-skip-permissions".into()),
    }
    args
}

/// Where Claude Code keeps the sessions of `workdir`: `$CLAUDE_CONFIG_DIR` (default
/// `~/.claude`)`/projects/` and the path with every character other than a letter, digit or '-'
/// made '-'.
fn project_dir(env: &[(String, String)], workdir: &Path) -> Option<PathBuf> {
    let config = match agent::var(env, "CLAUDE_CONFIG_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => agent::home(env)?.join(".claude"),
    };
    let project: String = workdir
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
    Some(config.join("projects").join(project))
}

/// Reads Claude Code's (and Cursor's, which copies it) stream-json events.
#[derive(Default)]
pub struct ClaudeParser {
    pub report: Report,
    last_text: Option<String>,
}

impl ClaudeParser {
    fn event(&mut self, v: &serde_json::Value) {
        if let Some(id) = str_at(v, "session_id").filter(|s| !s.is_empty()) {
            self.report.session = Some(id.to_string());
        }
        match str_at(v, "type") {
            Some("assistant") => {
                let text: Vec<&str> = v
                    .pointer("/message/content")
                    .and_then(|c| c.as_array())
                    .into_iter()
                    .flatten()
                    .filter(|b| str_at(b, "type") == Some("text"))
                    .filter_map(|b| str_at(b, "text"))
                    .collect();
                if !text.is_empty() {
                    self.last_text = Some(text.join("\n"));
                }
            }
            Some("result") => self.result(v),
            _ => {}
        }
    }

    fn result(&mut self, v: &serde_json::Value) {
        let r = &mut self.report;
        r.completed = true;
        let text = str_at(v, "result").map(str::to_string);
        let is_error = v.get("is_error").and_then(|b| b.as_bool()).unwrap_or(false);
        let subtype = str_at(v, "subtype").unwrap_or("");
        if is_error || subtype.starts_with("error") {
            let mut msg = text
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| {
                    let errs: Vec<&str> = v
                        .get("errors")
                        .and_then(|e| e.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.as_str())
                        .collect();
                    (!errs.is_empty()).then(|| errs.join("; "))
                })
                .unwrap_or_else(|| format!("the agent reported an error ({subtype})"));
            if let Some(status) = u64_at(v, "api_error_status") {
                if !msg.contains(&status.to_string()) {
                    msg = format!("{msg} (HTTP {status})");
                }
            }
            if subtype == "error_max_turns" {
                msg = format!("{msg}: the turn limit was reached");
            }
            r.error(msg);
        } else {
            r.final_message = text.or_else(|| self.last_text.take());
        }
        let denials: Vec<String> = v
            .get("permission_denials")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .map(|d| {
                let tool = str_at(d, "tool_name").unwrap_or("a tool");
                let target = d.get("tool_input").and_then(|i| {
                    str_at(i, "file_path")
                        .or_else(|| str_at(i, "command"))
                        .or_else(|| str_at(i, "path"))
                });
                match target {
                    Some(t) => format!("{tool} {t}"),
                    None => tool.to_string(),
                }
            })
            .collect();
        if !denials.is_empty() {
            r.error(format!(
                "the agent was denied permission for: {}; allow more with the step's `permissions` (\"edit\" allows file edits in the worktree, \"full\" everything)",
                denials.join(", ")
            ));
        }
        if let Some(u) = v.get("usage") {
            r.add_usage("input_tokens", u64_at(u, "input_tokens"));
            r.add_usage("output_tokens", u64_at(u, "output_tokens"));
            r.add_usage(
                "cache_read_input_tokens",
                u64_at(u, "cache_read_input_tokens"),
            );
            r.add_usage(
                "cache_creation_input_tokens",
                u64_at(u, "cache_creation_input_tokens"),
            );
        }
        r.add_usage("turns", u64_at(v, "num_turns"));
        r.add_cost_usd(v.get("total_cost_usd").and_then(|c| c.as_f64()));
    }

    /// The outcome, named after `engine` in messages.
    pub fn finish_as(mut self, engine: &str, ending: &Ending) -> Outcome {
        if self.report.final_message.is_none() && self.report.errors.is_empty() {
            self.report.final_message = self.last_text.take();
        }
        self.report.finish(engine, ending)
    }
}

impl EventParser for ClaudeParser {
    fn line(&mut self, stream: Stream, line: &str) {
        match (stream, json_line(line)) {
            (Stream::Stdout, Some(v)) => self.event(&v),
            (Stream::Stderr, _) => {
                let l = line.trim();
                if l.starts_with("No conversation found with session ID") {
                    self.report.error(l.to_string());
                } else if l.contains("cannot be used with root/sudo privileges") {
                    self.report.error(format!(
                        "{l} (permissions = \"full\" as root needs `env = {{ IS_SANDBOX = \"1\" }}`)"
                    ));
                }
                self.report.stderr_line(line);
            }
            (stream, None) => self.report.other_line(stream, line),
        }
    }

    fn session(&self) -> Option<&str> {
        self.report.session.as_deref()
    }

    fn finish(self: Box<Self>, ending: &Ending) -> Outcome {
        self.finish_as(CLI.engine, ending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{
        home_env, interactive, interactive_args, large_prompt_goes_to_the_file, parse, resolved,
        write,
    };

    // Recorded from Claude Code 2.1.197 against the agent-lab model server (trimmed).
    const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"9cdd6c31-9865-4c13-a6da-a3c3a4d44746","tools":["Write"],"model":"claude-opus-4-8[1m]","permissionMode":"acceptEdits"}"#;
    const ASSISTANT: &str = r#"{"type":"assistant","message":{"id":"msg_0002","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"text","text":"I'll create the file now."}],"usage":{"input_tokens":10,"output_tokens":5}},"parent_tool_use_id":null,"session_id":"9cdd6c31-9865-4c13-a6da-a3c3a4d44746"}"#;
    const RESULT_OK: &str = r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":345,"num_turns":2,"result":"FAKE_DONE: the file has been written.","stop_reason":"end_turn","session_id":"9cdd6c31-9865-4c13-a6da-a3c3a4d44746","total_cost_usd":0.00035,"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10},"permission_denials":[]}"#;
    const RESULT_400: &str = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":400,"duration_ms":185,"num_turns":1,"result":"API Error: 400 scripted 400","session_id":"0e7e1e99-3f28-4c1a-a499-565b9b912017","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0},"permission_denials":[]}"#;
    const RESULT_429: &str = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"num_turns":1,"result":"API Error: Request rejected (429) · scripted 429","session_id":"30a6be5f-8000-48f3-9d39-b2ec3cd99000","permission_denials":[]}"#;
    const RESULT_DENIED: &str = r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"num_turns":2,"result":"FAKE_DONE: the file has been written.","session_id":"ad25dd63-3c5c-4c4f-b71f-836450b166af","total_cost_usd":0.00035,"usage":{"input_tokens":20,"output_tokens":10},"permission_denials":[{"tool_name":"Write","tool_use_id":"toolu_0006","tool_input":{"file_path":"/w/b.txt","content":"hello\n"}}]}"#;
    const RESULT_NO_SESSION: &str = r#"{"type":"result","subtype":"error_during_execution","duration_ms":0,"is_error":true,"num_turns":0,"session_id":"11111111-1111-1111-1111-111111111111","permission_denials":[],"errors":["No conversation found with session ID: 11111111-1111-1111-1111-111111111111"]}"#;

    fn engine() -> ClaudeEngine {
        ClaudeEngine::new("claude")
    }

    #[test]
    fn command_line_for_a_new_session() {
        let mut step = resolved("design");
        step.model = Some("sonnet".into());
        step.reasoning = Some("high".into());
        step.args = vec!["--max-turns".into(), "5".into()];
        step.env.insert("FOO".into(), "bar".into());
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: "-write it",
                workdir: Path::new("/w"),
                resume_session: None,
                fork_session: false,
                prompt_file: Path::new("/nonexistent/p.prompt"),
            })
            .expect("invocation");
        assert_eq!(inv.program, "claude");
        assert_eq!(
            inv.args,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--model",
                "sonnet",
                "--effort",
                "high",
                "--permission-mode",
                "acceptEdits",
                "--max-turns",
                "5"
            ]
        );
        assert_eq!(inv.env, [("FOO".to_string(), "bar".to_string())]);
        assert_eq!(inv.stdin, b"-write it");
    }

    #[test]
    fn permissions_and_resume() {
        let mut step = resolved("s");
        let args = |step: &crate::workflow::ResolvedStep| {
            engine()
                .invocation(&StepInput {
                    step,
                    prompt: "p",
                    workdir: Path::new("/w"),
                    resume_session: Some("abc"),
                    fork_session: false,
                    prompt_file: Path::new("/nonexistent/p.prompt"),
                })
                .expect("inv")
                .args
        };
        step.permissions = Some(Permissions::Read);
        let a = args(&step);
        assert!(a.windows(2).any(|w| w == ["--permission-mode", "plan"]));
        assert!(a.windows(2).any(|w| w == ["--resume", "abc"]));
        step.permissions = Some(Permissions::Full);
        let a = args(&step);
        assert!(a.contains(&"--dangerously-skip-permissions".to_string()));
        assert!(!a.contains(&"--permission-mode".to_string()));
        assert!(!a.contains(&"--fork-session".to_string()));
    }

    #[test]
    fn a_fork_resumes_the_session_as_a_copy() {
        let step = resolved("s");
        let input = |fork_session| StepInput {
            step: &step,
            prompt: "p",
            workdir: Path::new("/w"),
            resume_session: Some("abc"),
            fork_session,
            prompt_file: Path::new("/nonexistent/p.prompt"),
        };
        let a = engine().invocation(&input(true)).expect("inv").args;
        assert!(
            a.windows(3)
                .any(|w| w == ["--resume", "abc", "--fork-session"]),
            "{a:?}"
        );
        let a = engine().invocation(&input(false)).expect("inv").args;
        assert!(!a.contains(&"--fork-session".to_string()));
    }

    #[test]
    fn success_with_usage_and_cost() {
        let o = parse(&engine(), &[INIT, ASSISTANT, RESULT_OK], &[], 0);
        assert!(o.success, "{o:?}");
        assert_eq!(
            o.session.as_deref(),
            Some("9cdd6c31-9865-4c13-a6da-a3c3a4d44746")
        );
        assert_eq!(
            o.summary.as_deref(),
            Some("FAKE_DONE: the file has been written.")
        );
        assert_eq!(o.usage["input_tokens"], 20);
        assert_eq!(o.usage["output_tokens"], 10);
        assert_eq!(o.usage["cost_usd_micros"], 350);
        assert_eq!(o.usage["turns"], 2);
    }

    #[test]
    fn is_error_fails_even_with_subtype_success() {
        let o = parse(&engine(), &[INIT, RESULT_400], &[], 1);
        assert!(!o.success);
        assert_eq!(o.error.as_deref(), Some("API Error: 400 scripted 400"));
        assert_eq!(o.fallback_reason, None);
        // The same result with exit code 0 is still a failure.
        let o = parse(&engine(), &[INIT, RESULT_400], &[], 0);
        assert!(!o.success);
    }

    #[test]
    fn rate_limit_is_a_fallback_reason() {
        let o = parse(&engine(), &[INIT, RESULT_429], &[], 1);
        assert!(!o.success);
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
    }

    #[test]
    fn permission_denial_fails_the_step() {
        let o = parse(&engine(), &[INIT, RESULT_DENIED], &[], 0);
        assert!(!o.success);
        let e = o.error.expect("error");
        assert!(e.contains("denied permission for: Write /w/b.txt"), "{e}");
    }

    #[test]
    fn unknown_resume_session() {
        let o = parse(
            &engine(),
            &[RESULT_NO_SESSION],
            &["No conversation found with session ID: 11111111-1111-1111-1111-111111111111"],
            1,
        );
        assert!(!o.success);
        assert!(o.error.expect("error").contains("No conversation found"));
    }

    #[test]
    fn exit_zero_without_result_fails() {
        let o = parse(&engine(), &[INIT, ASSISTANT], &[], 0);
        assert!(!o.success);
        assert_eq!(
            o.session.as_deref(),
            Some("9cdd6c31-9865-4c13-a6da-a3c3a4d44746")
        );
    }

    #[test]
    fn interactive_presets_a_session_and_sends_the_prompt_as_the_first_message() {
        let mut step = resolved("design");
        step.model = Some("sonnet".into());
        step.reasoning = Some("minimal".into());
        step.args = vec!["--add-dir".into(), "/docs".into()];
        step.env.insert("FOO".into(), "bar".into());
        let i = interactive(&engine(), &step, "-write it", None).expect("interactive");
        let id = i.session.expect("a preset id");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(
            i.inv.args,
            [
                "--model",
                "sonnet",
                "--effort",
                "low",
                "--permission-mode",
                "acceptEdits",
                "--session-id",
                &id,
                "--add-dir",
                "/docs",
                "--",
                "-write it"
            ]
        );
        assert!(!i.inv.args.contains(&"-p".to_string()));
        assert_eq!(i.inv.env, [("FOO".to_string(), "bar".to_string())]);
        assert!(i.inv.stdin.is_empty());
        let again = interactive(&engine(), &step, "p", None).expect("interactive");
        assert_ne!(again.session.as_deref(), Some(id.as_str()), "a fresh id");
    }

    #[test]
    fn interactive_resume_permissions_and_a_blank_prompt() {
        let mut step = resolved("s");
        step.permissions = Some(Permissions::Full);
        let i = interactive(&engine(), &step, "go on", Some("abc")).expect("interactive");
        assert_eq!(i.session.as_deref(), Some("abc"));
        assert_eq!(
            i.inv.args,
            [
                "--dangerously-skip-permissions",
                "--resume",
                "abc",
                "--",
                "go on"
            ]
        );
        step.permissions = Some(Permissions::Read);
        let a = interactive_args(&engine(), &step, " \n", Some("abc"));
        assert_eq!(a, ["--permission-mode", "plan", "--resume", "abc"]);
        large_prompt_goes_to_the_file(&engine());
    }

    #[test]
    fn find_session_verifies_the_transcript_in_the_project_folder() {
        let home = tempfile::tempdir().expect("home");
        let env = home_env(home.path());
        let since = SystemTime::now();
        let w = Path::new("/w/my repo");
        let project = home.path().join(".claude/projects/-w-my-repo");
        let e = engine();
        assert_eq!(e.find_session(&env, w, since, Some("a-1")), None);
        assert_eq!(e.find_session(&env, w, since, None), None);
        write(&project.join("a-1.jsonl"), "{}\n");
        assert_eq!(
            e.find_session(&env, w, since, Some("a-1")).as_deref(),
            Some("a-1")
        );
        assert_eq!(e.find_session(&env, w, since, Some("b-2")), None);
        assert_eq!(e.find_session(&env, w, since, None).as_deref(), Some("a-1"));
        // Another working directory's project is not this one's.
        assert_eq!(
            e.find_session(&env, Path::new("/w/other"), since, None),
            None
        );
        // Written before the run started: not this run's.
        let later = since + std::time::Duration::from_secs(60);
        assert_eq!(e.find_session(&env, w, later, None), None);
        // $CLAUDE_CONFIG_DIR replaces ~/.claude.
        let mut env = env;
        env.push(("CLAUDE_CONFIG_DIR".into(), "/nonexistent".into()));
        assert_eq!(e.find_session(&env, w, since, Some("a-1")), None);
    }
}

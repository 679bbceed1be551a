//! The `aider` engine: Aider with one message, answering yes to its questions.
//!
//! Command line: `aider --message-file=FILE --yes-always --no-pretty --no-stream
//! --no-fancy-input --no-auto-commits --no-dirty-commits --no-gitignore --no-check-update
//! --no-show-release-notes --no-analytics [--model M] [--reasoning-effort R]
//! [--dry-run] [--restore-chat-history] [args…]`. git machine commits the step itself, so
//! Aider must not commit, and must not add `.aider*` to the user's `.gitignore`.
//!
//! The prompt goes in a file because Aider takes it only as `--message` (argv, refused by the
//! kernel over 128 KiB) or `--message-file`, and does not read stdin for it. FILE is the step's
//! [`StepInput::prompt_file`], written here, outside the worktree. Measured on Aider 0.86.2: the
//! file is read whole as UTF-8 and sent as is (a 1 MiB prompt, new and with
//! `--restore-chat-history`, reached the model whole; Aider only warns that the context is
//! over the model's token limit, and sends it anyway under `--yes-always`).
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]): Aider has no tool
//! permissions; `read` → `--dry-run` (no file is changed), `edit` and `full` → edits applied.
//! Headless Aider never runs shell commands (they need an explicit yes), so `full` adds nothing.
//!
//! Output is plain text and errors are text too, with exit code 0 (measured): a
//! `litellm.…Error:` line or `Connection error.` that is not followed by `Retrying in …` is
//! final. Aider has no session id: its conversation is the chat-history file in the working
//! directory, so the "session" reported is that file's name, and resuming passes
//! `--restore-chat-history`. Usage comes from `Tokens: 2.3k sent, 120 received. Cost: $0.01
//! message, …` lines.
//!
//! Interactive: `aider --read=PROMPT_FILE --load=COMMANDS_FILE <the same no-commit and
//! no-network options> [--model M] [--reasoning-effort R] [--dry-run] [--restore-chat-history]
//! [args…]` — the headless options without those that only make sense with nobody at the
//! terminal (`--yes-always`, `--no-pretty`, `--no-stream`, `--no-fancy-input`). Aider has no
//! option that sends a first message and then stays in its chat (`--message` exits after the
//! answer), so (measured on 0.86.2): the prompt file is added to the chat read-only (`--read`,
//! it stays in the context of every turn), and `--load` runs one `/code` command that asks the
//! model to do what that file says. Aider runs it at once, then opens the chat. Two
//! limitations, measured: Aider prints "Command '/code …' is only supported in interactive
//! mode, skipping." after the answer although it did run it, and the next turns do not see that
//! first exchange (the instructions, being read-only context, they do see). The commands file
//! is written beside the prompt file, outside the worktree. Aider has no session id: none is
//! assigned or found (its history file is not a session the TUI can be pointed at by id).
//! A continued session (`resume_session`) adds `--restore-chat-history`, as headless.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::agent::{self, Cli, Report};
use super::{
    Ending, Engine, EngineError, EventParser, Interactive, Invocation, Outcome, StepInput, Stream,
};
use crate::workflow::{Permissions, ResolvedStep};

pub const CLI: Cli = Cli {
    engine: "aider",
    program: "aider",
    override_var: "MACHINE_AIDER_BIN",
    install: "python -m pip install aider-install && aider-install",
};

/// The chat-history file Aider keeps in its working directory: Aider's "session".
pub const CHAT_HISTORY: &str = ".aider.chat.history.md";

agent::cli_engine!(AiderEngine, CLI);

impl Engine for AiderEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let file = input.write_prompt_file()?;
        let mut args = vec![format!("--message-file={}", file.display())];
        args.extend(
            [
                "--yes-always",
                "--no-pretty",
                "--no-stream",
                "--no-fancy-input",
            ]
            .map(String::from),
        );
        args.extend(options(input));
        Ok(Invocation::agent(
            &self.program,
            args,
            agent::step_env(step),
            "",
        ))
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(AiderParser::default())
    }

    fn can_resume(&self) -> bool {
        true
    }

    /// `aider --read=PROMPT_FILE --load=COMMANDS_FILE [options…]`: see the module header.
    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError> {
        let step = input.step;
        let mut args = Vec::new();
        if !input.prompt.trim().is_empty() {
            let prompt = input.write_prompt_file()?.to_path_buf();
            let commands = write_commands_file(input, &prompt)?;
            args.push(format!("--read={}", prompt.display()));
            args.push(format!("--load={}", commands.display()));
        }
        args.extend(options(input));
        Ok(Interactive {
            inv: Invocation::agent(&self.program, args, agent::step_env(step), ""),
            session: None,
        })
    }

    fn find_session(
        &self,
        _env: &[(String, String)],
        _workdir: &Path,
        _since: std::time::SystemTime,
        _expected: Option<&str>,
    ) -> Option<String> {
        None
    }
}

/// The options headless and interactive runs share: no commits or `.gitignore` changes (git
/// machine commits the step), no update checks or analytics, model, effort, `--dry-run` for
/// `read`, the restored history of a continued session, and the step's own arguments.
fn options(input: &StepInput<'_>) -> Vec<String> {
    let step: &ResolvedStep = input.step;
    let mut args: Vec<String> = [
        "--no-auto-commits",
        "--no-dirty-commits",
        "--no-gitignore",
        "--no-check-update",
        "--no-show-release-notes",
        "--no-analytics",
    ]
    .map(String::from)
    .to_vec();
    if let Some(model) = &step.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if let Some(effort) = &step.reasoning {
        args.extend(["--reasoning-effort".into(), effort.clone()]);
    }
    if agent::permissions(step) == Permissions::Read {
        args.push("--dry-run".into());
    }
    if input.resume_session.is_some() {
        args.push("--restore-chat-history".into());
    }
    args.extend(step.args.iter().cloned());
    args
}

/// Write the file of in-chat commands `--load` runs: one `/code` asking the model to do what
/// `prompt` (the prompt file, in the chat read-only) says. Beside the prompt file, outside the
/// worktree; returns its path.
fn write_commands_file(input: &StepInput<'_>, prompt: &Path) -> Result<PathBuf, EngineError> {
    let mut name = prompt.as_os_str().to_os_string();
    name.push(".aider-commands");
    let path = PathBuf::from(name);
    let command = format!(
        "/code Your instructions for this step are in the file {}, which is in this chat read-only. Do what it says.\n",
        prompt.display()
    );
    std::fs::write(&path, command).map_err(|e| EngineError::Invalid {
        step: input.step.id.to_string(),
        message: format!("cannot write Aider's commands to {}: {e}", path.display()),
    })?;
    Ok(path)
}

/// Lines of Aider's reply kept for the final message.
const REPLY_LINES: usize = 200;

/// Aider's own status lines, not part of the model's reply.
const NOISE: &[&str] = &[
    "Aider v",
    "Model:",
    "Main model:",
    "Weak model:",
    "Editor model:",
    "Git repo:",
    "Repo-map:",
    "Tokens:",
    "Cost:",
    "Added ",
    "Use /help",
    "https://aider.chat",
    "Warning",
    "Input is not a terminal",
    "Can't initialize prompt toolkit",
    "Retrying in",
    "Chat files:",
    "Restored previous conversation history",
];

#[derive(Default)]
struct AiderParser {
    report: Report,
    reply: VecDeque<String>,
    /// An error line not (yet) followed by "Retrying in".
    pending: Option<String>,
}

fn is_error_line(l: &str) -> bool {
    (l.contains("litellm.") && l.contains("Error"))
        || l.starts_with("Connection error")
        || l.contains("APIConnectionError")
        || l.contains("AuthenticationError")
        || l.contains("RateLimitError")
}

/// `2.3k` → 2300, `1.2M` → 1_200_000, `$0.0123` → 0.0123 (as f64).
fn number(s: &str) -> Option<f64> {
    let s = s.trim().trim_start_matches('$').replace(',', "");
    let (digits, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        _ => (s.as_str(), 1.0),
    };
    digits.parse::<f64>().ok().map(|n| n * mult)
}

impl AiderParser {
    fn usage(&mut self, l: &str) {
        // "Tokens: 2.3k sent, 120 received. Cost: $0.01 message, $0.02 session."
        let body = l.trim_start_matches("Tokens:");
        let (tokens, cost) = body.split_once("Cost:").unwrap_or((body, ""));
        for piece in tokens.split(',') {
            let mut words = piece.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let what = what.trim_end_matches('.');
            let key = match what {
                "sent" => "input_tokens",
                "received" => "output_tokens",
                "cache" => "cache_read_input_tokens",
                _ => continue,
            };
            self.report.add_usage(key, number(n).map(|f| f as u64));
        }
        if let Some(first) = cost.split(',').next() {
            if first.contains("message") {
                self.report
                    .add_cost_usd(first.split_whitespace().next().and_then(number));
            }
        }
    }
}

impl EventParser for AiderParser {
    fn line(&mut self, stream: Stream, line: &str) {
        let l = line.trim();
        if l.is_empty() {
            return;
        }
        if stream == Stream::Stderr {
            self.report.stderr_line(l);
        }
        if is_error_line(l) {
            if let Some(previous) = self.pending.replace(l.to_string()) {
                self.report.problem = Some(previous);
            }
            return;
        }
        if l.starts_with("Retrying in") {
            self.report.problem = self.pending.take().or(Some(l.to_string()));
            return;
        }
        if stream == Stream::Stdout {
            if l.starts_with("Tokens:") {
                self.usage(l);
            }
            if NOISE.iter().any(|n| l.starts_with(n)) {
                return;
            }
            if self.reply.len() == REPLY_LINES {
                self.reply.pop_front();
            }
            self.reply.push_back(l.to_string());
        }
    }

    fn finish(mut self: Box<Self>, ending: &Ending) -> Outcome {
        if let Some(e) = self.pending.take() {
            self.report.error(e);
        }
        // Aider has no end-of-turn marker: a clean exit is the end of the turn.
        self.report.completed = *ending == Ending::Exited(0);
        self.report.session = Some(CHAT_HISTORY.to_string());
        if !self.reply.is_empty() {
            self.report.final_message = Some(Vec::from(self.reply).join("\n"));
        }
        self.report.finish(CLI.engine, ending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{parse, resolved};
    use std::path::Path;

    fn engine() -> AiderEngine {
        AiderEngine::new("aider")
    }

    #[test]
    fn command_line() {
        let mut step = resolved("s");
        step.model = Some("openai/fake-model".into());
        step.permissions = Some(Permissions::Read);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("logs").join("01-s.prompt");
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: "fix it",
                workdir: Path::new("/w"),
                resume_session: Some(CHAT_HISTORY),
                fork_session: false,
                prompt_file: &file,
            })
            .expect("inv");
        assert_eq!(inv.args[0], format!("--message-file={}", file.display()));
        assert_eq!(
            std::fs::read_to_string(&file).expect("prompt file"),
            "fix it"
        );
        assert!(inv.stdin.is_empty());
        assert!(inv.args.contains(&"--yes-always".to_string()));
        assert!(inv.args.contains(&"--no-auto-commits".to_string()));
        assert!(inv.args.contains(&"--dry-run".to_string()));
        assert!(inv.args.contains(&"--restore-chat-history".to_string()));
        assert!(inv
            .args
            .windows(2)
            .any(|w| w == ["--model", "openai/fake-model"]));
    }

    #[test]
    fn reply_usage_and_session() {
        let o = parse(
            &engine(),
            &[
                "Aider v0.86.2",
                "Model: openai/fake-model with whole edit format",
                "Git repo: .git with 3 files",
                "Repo-map: disabled",
                "I added the greeting module.",
                "",
                "Applied edit to src/greeting.py",
                "Tokens: 2.3k sent, 120 received. Cost: $0.0012 message, $0.0030 session.",
            ],
            &["Input is not a terminal"],
            0,
        );
        assert!(o.success, "{o:?}");
        assert_eq!(o.summary.as_deref(), Some("I added the greeting module."));
        assert_eq!(o.usage["input_tokens"], 2300);
        assert_eq!(o.usage["output_tokens"], 120);
        assert_eq!(o.usage["cost_usd_micros"], 1200);
        assert_eq!(o.session.as_deref(), Some(CHAT_HISTORY));
    }

    #[test]
    fn error_text_with_exit_zero_fails() {
        let o = parse(
            &engine(),
            &[
                "Aider v0.86.2",
                "litellm.BadRequestError: OpenAIException - scripted 400",
            ],
            &[],
            0,
        );
        assert!(!o.success);
        assert!(o.error.expect("error").contains("BadRequestError"));
        let o = parse(
            &engine(),
            &["litellm.AuthenticationError: AuthenticationError: OpenAIException - scripted 401"],
            &[],
            0,
        );
        assert!(o.fallback_reason.is_some());
    }

    #[test]
    fn retried_errors_are_not_final() {
        let o = parse(
            &engine(),
            &[
                "litellm.RateLimitError: RateLimitError: OpenAIException - scripted 429",
                "Retrying in 0.2 seconds...",
                "Here is the change.",
            ],
            &[],
            0,
        );
        assert!(o.success, "{o:?}");
        let o = parse(
            &engine(),
            &[
                "litellm.InternalServerError: scripted 500",
                "Retrying in 0.2 seconds...",
                "Connection error.",
            ],
            &[],
            0,
        );
        assert!(!o.success);
        assert_eq!(o.error.as_deref(), Some("Connection error."));
    }

    #[test]
    fn interactive_reads_the_prompt_file_and_runs_one_command() {
        let mut step = resolved("s");
        step.model = Some("openai/fake-model".into());
        step.permissions = Some(Permissions::Read);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("logs").join("01-s.prompt");
        let i = engine()
            .interactive(&StepInput {
                step: &step,
                prompt: "fix it\nwell",
                workdir: Path::new("/w"),
                resume_session: Some(CHAT_HISTORY),
                fork_session: false,
                prompt_file: &file,
            })
            .expect("interactive");
        assert_eq!(i.session, None, "Aider has no session id");
        let commands = dir.path().join("logs").join("01-s.prompt.aider-commands");
        assert_eq!(i.inv.args[0], format!("--read={}", file.display()));
        assert_eq!(i.inv.args[1], format!("--load={}", commands.display()));
        assert_eq!(
            std::fs::read_to_string(&file).expect("prompt"),
            "fix it\nwell"
        );
        let command = std::fs::read_to_string(&commands).expect("commands");
        assert!(
            command.starts_with("/code ") && command.ends_with(".\n"),
            "{command}"
        );
        assert_eq!(command.lines().count(), 1);
        assert!(command.contains(&file.display().to_string()), "{command}");
        for headless in [
            "--yes-always",
            "--no-pretty",
            "--message-file",
            "--no-fancy-input",
        ] {
            assert!(
                !i.inv.args.iter().any(|a| a.starts_with(headless)),
                "{headless}"
            );
        }
        for kept in ["--no-auto-commits", "--dry-run", "--restore-chat-history"] {
            assert!(i.inv.args.contains(&kept.to_string()), "{kept}");
        }
        assert!(i
            .inv
            .args
            .windows(2)
            .any(|w| w == ["--model", "openai/fake-model"]));
        // A blank prompt: just the chat.
        let a = crate::engine::testing::interactive_args(&engine(), &step, "", None);
        assert!(!a
            .iter()
            .any(|a| a.starts_with("--read") || a.starts_with("--load")));
        let home = tempfile::tempdir().expect("home");
        let env = crate::engine::testing::home_env(home.path());
        let now = std::time::SystemTime::now();
        assert_eq!(
            engine().find_session(&env, Path::new("/w"), now, None),
            None
        );
    }
}

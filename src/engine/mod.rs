//! Engines: how a step's program is started and how its output is read.
//!
//! An engine turns a resolved step into an [`Invocation`] (program, arguments, extra
//! environment, stdin bytes) and supplies an [`EventParser`] that reads the program's output as
//! it arrives into an [`Outcome`] (success, summary, session id, usage, error). Engines never
//! touch git and never spawn a step's program themselves: [`process`] does that the same way for
//! all of them (own process group, timeouts, Ctrl-C, bounded log). The one program an engine
//! runs itself is OpenCode's `session list`, to learn which session an interactive run used
//! (OpenCode keeps sessions only in SQLite), bounded by a timeout in a process group of its own.
//!
//! Prompts of any size: Linux refuses an argument or environment string over 128 KiB
//! (`MAX_ARG_STRLEN`, "Argument list too long"), and a prompt with a `files` context easily is
//! one. So a prompt never travels in argv or the environment beyond a small size: each engine
//! puts it on the program's stdin, or in [`StepInput::prompt_file`] (which the engine writes, see
//! [`StepInput::write_prompt_file`]), wherever its CLI reads it. Only Cursor, whose documented
//! headless form takes the prompt as an argument only, keeps it in argv — while it is small;
//! above 100 KiB the argument asks the agent to read the prompt file.
//!
//! Interactive steps: [`Engine::interactive`] gives the command line of the CLI's own terminal
//! interface, started in the worktree with the step's prompt as its first message. There the
//! terminal is the agent's input, so the prompt can only travel as an argument: the same
//! 100 KiB rule applies to every CLI (a longer prompt goes to the prompt file, the argument
//! asks the agent to read it). Nothing is parsed from a terminal interface's output; afterwards
//! [`Engine::find_session`] reads the CLI's own session storage to learn, and verify, which
//! session was used. `docs/interactive-clis.md` records each command line as measured.

pub mod agent;
pub mod aider;
pub mod claude;
pub mod codex;
pub mod command;
pub mod cursor;
pub mod gemini;
pub mod opencode;
pub mod process;

use std::collections::BTreeMap;
use std::path::Path;

use crate::workflow::ResolvedStep;

/// What a step's program is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// Added to (or replacing in) the user's environment.
    pub env: Vec<(String, String)>,
    /// Removed from the user's environment.
    pub env_remove: Vec<String>,
    /// Written to the program's stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// The program prints nothing until it is done (e.g. Gemini CLI's `-o json`): no default
    /// idle timeout applies, only one the step sets itself.
    pub quiet_until_done: bool,
}

impl Invocation {
    /// A program and its arguments as given (a gate, a setup command): the user's
    /// environment, nothing on stdin.
    pub fn plain(program: &str, args: &[String]) -> Invocation {
        Invocation {
            program: program.to_string(),
            args: args.to_vec(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: Vec::new(),
            quiet_until_done: false,
        }
    }

    /// An agent CLI's invocation. `stdin` is the prompt for a CLI that reads it there, else
    /// empty; either way stdin is closed once written (some CLIs wait for an open stdin to end).
    pub fn agent(
        program: &str,
        args: Vec<String>,
        env: Vec<(String, String)>,
        stdin: &str,
    ) -> Invocation {
        Invocation {
            program: program.to_string(),
            args,
            env,
            env_remove: Vec::new(),
            stdin: stdin.as_bytes().to_vec(),
            quiet_until_done: false,
        }
    }
}

/// How a CLI's interactive interface is started for a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Interactive {
    /// Program and arguments; `stdin` stays empty (the terminal is the agent's input).
    pub inv: Invocation,
    /// The session id given up front (Claude Code `--session-id`, Gemini CLI `--session-id`), or
    /// the one being continued; None when the CLI picks its own (found afterwards by
    /// [`Engine::find_session`]).
    pub session: Option<String>,
}

/// Everything an engine may use to build its command line.
pub struct StepInput<'a> {
    pub step: &'a ResolvedStep,
    /// The prompt exactly as it is sent.
    pub prompt: &'a str,
    pub workdir: &'a Path,
    /// A session to continue instead of starting a new one.
    pub resume_session: Option<&'a str>,
    /// Continue `resume_session` as a copy (a new session id), leaving the original as it was,
    /// where the CLI can fork a session (Claude Code, OpenCode); others continue it.
    pub fork_session: bool,
    /// Where the prompt goes for a program that reads it from a file: beside the step's log,
    /// outside the worktree (so the step never commits it), one per step attempt. Nothing is
    /// there until an engine calls [`StepInput::write_prompt_file`]; once the step ends, it
    /// moves into the step's record as `prompt.md` when it holds the prompt recorded there.
    pub prompt_file: &'a Path,
}

impl StepInput<'_> {
    /// Write the prompt to [`StepInput::prompt_file`] (creating its folder) and return the path.
    pub fn write_prompt_file(&self) -> Result<&Path, EngineError> {
        let path = self.prompt_file;
        let written = match path.parent() {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
        .and_then(|()| std::fs::write(path, self.prompt));
        written.map(|()| path).map_err(|e| EngineError::Invalid {
            step: self.step.id.to_string(),
            message: format!("cannot write the prompt to {}: {e}", path.display()),
        })
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    TimedOut(std::time::Duration),
    IdleTimedOut(std::time::Duration),
    Cancelled,
}

impl Ending {
    pub fn describe(&self) -> String {
        match self {
            Ending::Exited(code) => format!("exit code {code}"),
            Ending::Signaled(sig) => format!("killed by signal {sig}"),
            Ending::TimedOut(d) => format!("timed out after {}", humantime::format_duration(*d)),
            Ending::IdleTimedOut(d) => {
                format!("no output for {}; stopped", humantime::format_duration(*d))
            }
            Ending::Cancelled => "interrupted".to_string(),
        }
    }
}

/// What the engine made of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub success: bool,
    /// One line for the commit message.
    pub summary: Option<String>,
    /// The agent's final message (or the command's output tail), kept in the record.
    pub final_message: Option<String>,
    pub session: Option<String>,
    pub usage: BTreeMap<String, u64>,
    /// The error as the program reported it.
    pub error: Option<String>,
    /// Set when the failure means "this engine cannot serve now" (not installed, not logged
    /// in, rate-limited, failed to start): the runner then tries the step's next engine.
    pub fallback_reason: Option<String>,
}

/// Reads a program's output line by line as it arrives.
pub trait EventParser: Send {
    fn line(&mut self, stream: Stream, line: &str);
    /// The session id, as soon as the stream has told it (before the program ends), so a run
    /// killed mid-step can be resumed in the same session.
    fn session(&self) -> Option<&str> {
        None
    }
    fn finish(self: Box<Self>, ending: &Ending) -> Outcome;
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine `{engine}` is not available: {reason}")]
    Unavailable { engine: String, reason: String },
    #[error("step `{step}`: {message}")]
    Invalid { step: String, message: String },
}

pub trait Engine {
    fn name(&self) -> &'static str;
    /// Check that the engine can run here (its program found on `path`), before anything
    /// starts. `Err(Unavailable)` makes the runner try the next engine of the step.
    fn check(&self, path: Option<&std::ffi::OsStr>) -> Result<(), EngineError> {
        let _ = path;
        Ok(())
    }
    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError>;
    fn parser(&self) -> Box<dyn EventParser>;
    /// Whether the CLI can continue an earlier session (`resume_session`).
    fn can_resume(&self) -> bool {
        false
    }
    /// Where the CLI keeps the transcript of `session` when run in `workdir`, for CLIs that keep
    /// sessions per working directory: git machine saves it into the step record and restores
    /// it there before resuming on another clone or machine (so the path may not exist yet: it
    /// is then where the CLI would look). `env` is the user's environment.
    fn transcript_path(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        session: &str,
    ) -> Option<std::path::PathBuf> {
        let _ = (env, workdir, session);
        None
    }
    /// The CLI's interactive interface for this step: `input.prompt` as the first message,
    /// continuing `input.resume_session` when set (else a new session, with an id assigned up
    /// front where the CLI allows it). Err([`EngineError::Invalid`]) with a clear message when
    /// the CLI has no interactive interface git machine can drive for this step.
    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError>;
    /// After the interactive program ended: the session it used, verified to exist in the CLI's
    /// own storage (not assumed). `expected` is [`Interactive::session`] (checked to exist); when
    /// None, the session the CLI created (or last wrote to) for `workdir` since `since`. `env` is
    /// the user's environment (`HOME` and the CLI's own variables are read from it, never from
    /// the process). None when no session can be confirmed.
    fn find_session(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        since: std::time::SystemTime,
        expected: Option<&str>,
    ) -> Option<String>;
}

/// Longest line an engine keeps for messages and summaries (the step log keeps more).
pub const KEPT_LINE: usize = 4 << 10;

/// `line`, cut to at most [`KEPT_LINE`] bytes (at a character boundary).
pub fn kept(line: &str) -> String {
    if line.len() <= KEPT_LINE {
        return line.to_string();
    }
    let mut end = KEPT_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} […]", &line[..end])
}

/// The engine called `name`, if this build has it. Agent engines read their program override
/// (`MACHINE_<ENGINE>_BIN`, see [`agent`]) from `vars`, the environment as read at start.
pub fn by_name(name: &str, vars: &[(String, String)]) -> Option<Box<dyn Engine>> {
    Some(match name {
        "command" => Box::new(command::CommandEngine),
        "claude" => Box::new(claude::ClaudeEngine::from_vars(vars)),
        "codex" => Box::new(codex::CodexEngine::from_vars(vars)),
        "gemini" => Box::new(gemini::GeminiEngine::from_vars(vars)),
        "opencode" => Box::new(opencode::OpencodeEngine::from_vars(vars)),
        "cursor" => Box::new(cursor::CursorEngine::from_vars(vars)),
        "aider" => Box::new(aider::AiderEngine::from_vars(vars)),
        _ => return None,
    })
}

/// Every agent CLI this build drives, in the order `git machine engines` lists them.
pub const AGENTS: &[agent::Cli] = &[
    claude::CLI,
    codex::CLI,
    gemini::CLI,
    opencode::CLI,
    cursor::CLI,
    aider::CLI,
];

/// First line of `text` that has something in it, trimmed to a commit-summary length.
pub fn summary_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut s: String = line.chars().take(72).collect();
    if line.chars().count() > 72 {
        s.pop();
        s.push('…');
    }
    Some(s)
}

/// Helpers for the adapters' unit tests: a step from a small workflow, and a parser fed with
/// recorded lines.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::{Ending, Engine, EngineError, Interactive, Outcome, StepInput, Stream};
    use crate::workflow::ResolvedStep;

    /// A resolved agent step `id` with nothing but a prompt set.
    pub fn resolved(id: &str) -> ResolvedStep {
        let text = format!(
            "version = 1\nname = \"t\"\ndescription = \"t\"\n[[steps]]\nid = \"{id}\"\nengine = \"claude\"\nprompt = \"p\"\n"
        );
        let wf = crate::workflow::parse("test", &text).expect("test workflow parses");
        wf.resolve(&Default::default()).pop().expect("one step")
    }

    /// Feed `stdout` then `stderr` lines to `engine`'s parser; end with exit `code`.
    pub fn parse(engine: &dyn Engine, stdout: &[&str], stderr: &[&str], code: i32) -> Outcome {
        let mut p = engine.parser();
        for l in stdout {
            p.line(Stream::Stdout, l);
        }
        for l in stderr {
            p.line(Stream::Stderr, l);
        }
        p.finish(&Ending::Exited(code))
    }

    /// `engine`'s interactive form of `step` in `/w` with `prompt`, continuing `resume`.
    pub fn interactive(
        engine: &dyn Engine,
        step: &ResolvedStep,
        prompt: &str,
        resume: Option<&str>,
    ) -> Result<Interactive, EngineError> {
        engine.interactive(&StepInput {
            step,
            prompt,
            workdir: Path::new("/w"),
            resume_session: resume,
            fork_session: false,
            prompt_file: Path::new("/nonexistent/p.prompt"),
        })
    }

    /// The arguments of [`interactive`], which must succeed.
    pub fn interactive_args(
        engine: &dyn Engine,
        step: &ResolvedStep,
        prompt: &str,
        resume: Option<&str>,
    ) -> Vec<String> {
        let i = interactive(engine, step, prompt, resume).expect("interactive");
        assert!(i.inv.stdin.is_empty(), "the terminal is the agent's input");
        i.inv.args
    }

    /// Check that a prompt too long for argv reaches `engine`'s interactive form as a short
    /// argument naming the prompt file, which holds the whole prompt; returns the arguments.
    pub fn large_prompt_goes_to_the_file(engine: &dyn Engine) -> Vec<String> {
        let step = resolved("s");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("logs").join("01-s.prompt");
        let prompt = "y".repeat(super::agent::ARGV_PROMPT_MAX + 1);
        let i = engine
            .interactive(&StepInput {
                step: &step,
                prompt: &prompt,
                workdir: Path::new("/w"),
                resume_session: None,
                fork_session: false,
                prompt_file: &file,
            })
            .expect("interactive");
        assert_eq!(std::fs::read_to_string(&file).expect("prompt file"), prompt);
        let longest = i.inv.args.iter().map(String::len).max().unwrap_or(0);
        assert!(longest < 1024, "an argument of {longest} bytes");
        assert!(
            i.inv
                .args
                .iter()
                .any(|a| a.contains(&file.display().to_string())),
            "{:?}",
            i.inv.args
        );
        i.inv.args
    }

    /// An environment whose only variable is `HOME`.
    pub fn home_env(home: &Path) -> Vec<(String, String)> {
        vec![("HOME".into(), home.display().to_string())]
    }

    /// Write `text` to `path`, creating its folders.
    pub fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prompt of `len` bytes whose last line is `last`.
    fn big_prompt(len: usize, last: &str) -> String {
        let mut p = "-starts with a dash\n".to_string();
        while p.len() + 40 + last.len() < len {
            p.push_str("filler filler filler filler filler\n");
        }
        p.push_str(&"x".repeat(len - p.len() - last.len() - 1));
        p.push('\n');
        p.push_str(last);
        p
    }

    #[test]
    fn a_one_mib_prompt_stays_out_of_argv_and_the_environment_for_every_engine() {
        let prompt = big_prompt(1 << 20, "FAKE_REPLY ok");
        assert_eq!(prompt.len(), 1 << 20);
        let mut step = testing::resolved("s");
        step.run = vec!["sh".into(), "-c".into(), "cat".into()];
        for name in [
            "command", "claude", "codex", "gemini", "opencode", "cursor", "aider",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("logs").join("01-s.prompt");
            for resume in [None, Some("abc")] {
                let engine = by_name(name, &[]).expect("engine");
                let inv = engine
                    .invocation(&StepInput {
                        step: &step,
                        prompt: &prompt,
                        workdir: Path::new("/w"),
                        resume_session: resume,
                        fork_session: false,
                        prompt_file: &file,
                    })
                    .expect("invocation");
                let longest = inv
                    .args
                    .iter()
                    .chain(inv.env.iter().map(|(_, v)| v))
                    .map(String::len)
                    .max()
                    .unwrap_or(0);
                assert!(longest < 1024, "{name}: an argument of {longest} bytes");
                let in_file = std::fs::read_to_string(&file).ok();
                assert!(
                    inv.stdin == prompt.as_bytes() || in_file.as_deref() == Some(&prompt),
                    "{name}: the prompt is neither on stdin nor in the prompt file"
                );
            }
        }
    }

    #[test]
    fn a_command_gets_the_prompt_on_stdin_in_a_file_and_in_the_environment_while_small() {
        let mut step = testing::resolved("s");
        step.run = vec!["cat".into()];
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("logs").join("01-s.prompt");
        let env = |prompt: &str| {
            let inv = command::CommandEngine
                .invocation(&StepInput {
                    step: &step,
                    prompt,
                    workdir: Path::new("/w"),
                    resume_session: None,
                    fork_session: false,
                    prompt_file: &file,
                })
                .expect("invocation");
            assert_eq!(inv.stdin, prompt.as_bytes());
            assert_eq!(std::fs::read_to_string(&file).expect("prompt file"), prompt);
            let var = |k: &str| inv.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            assert_eq!(
                var("MACHINE_PROMPT_FILE").as_deref(),
                Some(file.to_str().expect("utf-8 path"))
            );
            (var("MACHINE_PROMPT"), inv.env_remove)
        };
        let small = "a".repeat(command::PROMPT_ENV_MAX);
        assert_eq!(env(&small), (Some(small.clone()), Vec::new()));
        let large = "a".repeat(command::PROMPT_ENV_MAX + 1);
        assert_eq!(env(&large), (None, vec!["MACHINE_PROMPT".to_string()]));
        assert_eq!(env(""), (Some(String::new()), Vec::new()));
    }

    #[test]
    fn a_one_mib_prompt_stays_out_of_argv_in_every_interactive_invocation() {
        let prompt = big_prompt(1 << 20, "FAKE_REPLY ok");
        let mut step = testing::resolved("s");
        step.run = vec!["bash".into()];
        for name in [
            "command", "claude", "codex", "gemini", "opencode", "cursor", "aider",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("logs").join("01-s.prompt");
            for resume in [None, Some("abc")] {
                let engine = by_name(name, &[]).expect("engine");
                let result = engine.interactive(&StepInput {
                    step: &step,
                    prompt: &prompt,
                    workdir: Path::new("/w"),
                    resume_session: resume,
                    fork_session: false,
                    prompt_file: &file,
                });
                let inv = match (name, resume, result) {
                    // OpenCode's TUI drops a first message given with `--session`.
                    ("opencode", Some(_), Err(EngineError::Invalid { message, .. })) => {
                        assert!(message.contains("--prompt"), "{message}");
                        continue;
                    }
                    (_, _, result) => result.expect("interactive").inv,
                };
                assert!(inv.stdin.is_empty(), "{name}: the terminal is the input");
                let longest = inv
                    .args
                    .iter()
                    .chain(inv.env.iter().map(|(_, v)| v))
                    .map(String::len)
                    .max()
                    .unwrap_or(0);
                assert!(longest < 1024, "{name}: an argument of {longest} bytes");
                let in_file = std::fs::read_to_string(&file).ok();
                assert_eq!(in_file.as_deref(), Some(prompt.as_str()), "{name}");
            }
        }
    }

    #[test]
    fn a_command_runs_as_it_is_interactively_with_the_prompt_in_a_file() {
        let mut step = testing::resolved("s");
        step.run = vec!["bash".into()];
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("01-s.prompt");
        let i = command::CommandEngine
            .interactive(&StepInput {
                step: &step,
                prompt: "check it by hand",
                workdir: Path::new("/w"),
                resume_session: None,
                fork_session: false,
                prompt_file: &file,
            })
            .expect("interactive");
        assert_eq!(i.session, None);
        assert_eq!((i.inv.program.as_str(), i.inv.args.len()), ("bash", 0));
        assert!(i.inv.stdin.is_empty());
        let file_var = (
            "MACHINE_PROMPT_FILE".to_string(),
            file.display().to_string(),
        );
        assert!(i.inv.env.contains(&file_var), "{:?}", i.inv.env);
        assert_eq!(
            std::fs::read_to_string(&file).expect("prompt"),
            "check it by hand"
        );
        let env = testing::home_env(dir.path());
        let since = std::time::SystemTime::now();
        assert_eq!(
            command::CommandEngine.find_session(&env, Path::new("/w"), since, None),
            None
        );
    }
}

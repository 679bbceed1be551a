//! Engines: how a step's program is started and how its output is read.
//!
//! An engine turns a resolved step into an [`Invocation`] (program, arguments, extra
//! environment, stdin bytes) and supplies an [`EventParser`] that reads the program's output as
//! it arrives into an [`Outcome`] (success, summary, session id, usage, error). Engines never
//! touch git and never spawn anything themselves: [`process::run`] does that the same way for
//! all of them (own process group, timeouts, Ctrl-C, bounded log).

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
}

impl Invocation {
    /// An agent CLI's invocation: the prompt travels in `args`, so stdin gets nothing and is
    /// closed at once (some CLIs wait for an open stdin to end).
    pub fn agent(program: &str, args: Vec<String>, env: Vec<(String, String)>) -> Invocation {
        Invocation {
            program: program.to_string(),
            args,
            env,
            env_remove: Vec::new(),
            stdin: Vec::new(),
        }
    }
}

/// Everything an engine may use to build its command line.
pub struct StepInput<'a> {
    pub step: &'a ResolvedStep,
    /// The prompt exactly as it is sent.
    pub prompt: &'a str,
    pub workdir: &'a Path,
    /// A session to continue instead of starting a new one.
    pub resume_session: Option<&'a str>,
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
    /// it there before resuming on another clone or machine. `env` is the user's environment.
    fn transcript_path(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        session: &str,
    ) -> Option<std::path::PathBuf> {
        let _ = (env, workdir, session);
        None
    }
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
    use super::{Ending, Engine, Outcome, Stream};
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
}

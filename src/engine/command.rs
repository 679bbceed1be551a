//! The `command` engine: any program, run with the step's `run` argv in the worktree.
//!
//! The prompt (empty if the step has none) reaches the program three ways:
//! - on stdin, which is then closed;
//! - in the file named by `$MACHINE_PROMPT_FILE` (beside the step's log, outside the worktree),
//!   always;
//! - as `$MACHINE_PROMPT`, only while it is at most [`PROMPT_ENV_MAX`] bytes (32 KiB). A larger
//!   prompt would make the program fail to start: Linux refuses an environment string over
//!   128 KiB ("Argument list too long"), and the environment shares its room with argv. Above
//!   the limit `$MACHINE_PROMPT` is unset, not truncated, so a script cannot mistake a part for
//!   the whole.
//!
//! The step succeeds when the program exits 0; its first line of stdout becomes the commit
//! summary.
//!
//! Interactive (`mode = "interactive"`, e.g. `run = ["bash"]` for a manual step): the same
//! program, arguments and environment, but stdin is the terminal, so the prompt is in
//! `$MACHINE_PROMPT_FILE` (and `$MACHINE_PROMPT` while small) only. An arbitrary program has no
//! session: none is assigned or found.

use std::path::Path;

use super::{
    Ending, Engine, EngineError, EventParser, Interactive, Invocation, Outcome, StepInput, Stream,
};

pub struct CommandEngine;

/// The largest prompt also passed as `$MACHINE_PROMPT`, in bytes.
pub const PROMPT_ENV_MAX: usize = 32 << 10;

impl Engine for CommandEngine {
    fn name(&self) -> &'static str {
        "command"
    }

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let mut inv = command(input)?;
        inv.stdin = input.prompt.as_bytes().to_vec();
        Ok(inv)
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(CommandParser::default())
    }

    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError> {
        Ok(Interactive {
            inv: command(input)?,
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

/// The step's `run` argv (and `args`) with the prompt in `$MACHINE_PROMPT_FILE` and, while
/// small, `$MACHINE_PROMPT`; stdin empty.
fn command(input: &StepInput<'_>) -> Result<Invocation, EngineError> {
    let (program, args) = input
        .step
        .run
        .split_first()
        .ok_or_else(|| EngineError::Invalid {
            step: input.step.id.to_string(),
            message: "the command engine needs `run = [\"program\", \"arg\", …]`".to_string(),
        })?;
    let mut args = args.to_vec();
    args.extend(input.step.args.iter().cloned());
    let file = input.write_prompt_file()?;
    let mut env = vec![(
        "MACHINE_PROMPT_FILE".to_string(),
        file.display().to_string(),
    )];
    let mut env_remove = Vec::new();
    if input.prompt.len() <= PROMPT_ENV_MAX {
        env.push(("MACHINE_PROMPT".to_string(), input.prompt.to_string()));
    } else {
        // Not even the user's own: a nested run must not see a stale prompt.
        env_remove.push("MACHINE_PROMPT".to_string());
    }
    Ok(Invocation {
        program: program.clone(),
        args,
        env,
        env_remove,
        stdin: Vec::new(),
        quiet_until_done: false,
    })
}

/// Keeps the first stdout line and the last lines of output.
#[derive(Default)]
struct CommandParser {
    first_stdout: Option<String>,
    tail: std::collections::VecDeque<String>,
}

const TAIL_LINES: usize = 20;

impl EventParser for CommandParser {
    fn line(&mut self, stream: Stream, line: &str) {
        if stream == Stream::Stdout && self.first_stdout.is_none() && !line.trim().is_empty() {
            self.first_stdout = Some(super::kept(line));
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        // Lines are kept cut: the tail becomes the step's message and is committed.
        self.tail.push_back(super::kept(line));
    }

    fn finish(self: Box<Self>, ending: &Ending) -> Outcome {
        let success = *ending == Ending::Exited(0);
        let tail = Vec::from(self.tail).join("\n");
        Outcome {
            success,
            summary: self.first_stdout.as_deref().and_then(super::summary_line),
            error: (!success).then(|| ending.describe()),
            final_message: (!tail.is_empty()).then_some(tail),
            ..Outcome::default()
        }
    }
}

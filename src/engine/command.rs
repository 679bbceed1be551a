//! The `command` engine: any program, run with the step's `run` argv in the worktree.
//!
//! The prompt (if any) is written to stdin and passed as `$MACHINE_PROMPT`. The step succeeds
//! when the program exits 0; its first line of stdout becomes the commit summary.

use super::{Ending, Engine, EngineError, EventParser, Invocation, Outcome, StepInput, Stream};

pub struct CommandEngine;

impl Engine for CommandEngine {
    fn name(&self) -> &'static str {
        "command"
    }

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
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
        Ok(Invocation {
            program: program.clone(),
            args,
            env: vec![("MACHINE_PROMPT".to_string(), input.prompt.to_string())],
            env_remove: Vec::new(),
            stdin: input.prompt.as_bytes().to_vec(),
        })
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(CommandParser::default())
    }
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
            self.first_stdout = Some(line.to_string());
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
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

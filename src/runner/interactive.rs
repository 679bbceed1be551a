//! Interactive steps: the terminal handed to the step's program — an agent CLI's own
//! interface, or a command such as a shell — and the person's work committed as the step.
//!
//! The first of the step's engines with an interactive interface is started in the step's
//! worktree, with the step's prompt as its first message and a session id git machine knows:
//! assigned up front where the CLI takes one, found afterwards where it picks its own — and in
//! both cases confirmed in the CLI's own storage ([`crate::engine::Engine::find_session`]), not
//! assumed. An agent step is done when the person leaves the agent, however they leave it; a
//! command step (a shell for a manual step) when its program exits with 0.

use std::path::Path;
use std::time::SystemTime;

use super::exec::{Attempt, StepRun};
use super::machine::{self, Input, Plan};
use super::{How, Kind, Prepared, RunEnd};
use crate::engine::{self, process, Ending, StepInput};
use crate::error::{Error, Result};
use crate::git::Worktree;
use crate::store::lock::RunLock;
use crate::store::RunInfo;
use crate::workflow::{Fallback, Mode, ResolvedStep, StepId, CONTROLLER};

/// Run the step with the terminal handed over. `on_spawn` gets the process group (None when
/// done).
pub fn attempt(
    rt: &tokio::runtime::Runtime,
    run: &StepRun<'_>,
    on_spawn: &mut dyn FnMut(Option<i32>),
) -> Result<Attempt> {
    let step = run.step;
    let mut skipped = Vec::new();
    for engine_name in &step.engines {
        let Some((engine, resumed)) = super::exec::usable(run, engine_name, &mut skipped) else {
            continue;
        };
        let step_as_run = step.for_engine(engine_name);
        let input = StepInput {
            step: &step_as_run,
            prompt: run.prompt,
            workdir: run.workdir,
            resume_session: resumed.as_deref(),
            fork_session: false,
            prompt_file: &run.log.with_extension("prompt"),
        };
        let started = match engine.interactive(&input) {
            Ok(started) => started,
            Err(e) => {
                skipped.push(format!("{engine_name}: {e}"));
                continue;
            }
        };
        if let Some(session) = &started.session {
            record_inflight(run.session_path, engine_name, session);
        }
        let since = SystemTime::now();
        let stop = [run.cancel];
        let ending = rt.block_on(process::run_foreground(
            &started.inv,
            run.workdir,
            &run.env.vars,
            &stop,
            &mut |pgid| on_spawn(Some(pgid)),
        ));
        on_spawn(None);
        let ending = match ending {
            Ok(ending) => ending,
            Err(e) => {
                skipped.push(format!("{engine_name}: could not start: {e}"));
                continue;
            }
        };
        let session = engine.find_session(
            &run.env.vars,
            run.workdir,
            since,
            started.session.as_deref(),
        );
        if let Some(session) = &session {
            record_inflight(run.session_path, engine_name, session);
        }
        let outcome = outcome(engine_name, &started, &ending, session);
        write_log(run.log, &started.inv, &ending, &outcome)?;
        return Ok(Attempt {
            engine: engine.name().to_string(),
            inv: started.inv,
            ending,
            outcome,
            resumed,
            skipped,
            passed_over: Vec::new(),
        });
    }
    Err(crate::error::Error::failed(format!(
        "no engine of step `{}` could hand it the terminal: {}",
        step.id,
        skipped.join("; ")
    )))
}

/// What the interactive run means for the step.
fn outcome(
    engine_name: &str,
    started: &engine::Interactive,
    ending: &Ending,
    session: Option<String>,
) -> engine::Outcome {
    let agent = engine_name != "command";
    let success = match ending {
        // People leave agents in many ways (/exit, Ctrl-D, Ctrl-C twice); all of them end the
        // step. A command says with its exit code whether the manual work is done.
        Ending::Exited(code) => agent || *code == 0,
        Ending::Signaled(_) => agent,
        _ => false,
    };
    let mut summary = format!("interactive {}", started.inv.program);
    if agent && session.is_none() {
        summary.push_str(" (no session confirmed)");
    }
    let error = (!success).then(|| match ending {
        Ending::Cancelled => "stopped while the person had the terminal".to_string(),
        other => format!("`{}` ended with {}", started.inv.program, other.describe()),
    });
    let warning = match (&started.session, &session) {
        (Some(expected), None) => Some(format!(
            "the CLI has no session `{expected}` after the step; it is not recorded"
        )),
        _ => None,
    };
    engine::Outcome {
        success,
        summary: Some(summary),
        final_message: warning,
        session,
        error,
        ..Default::default()
    }
}

/// The session, written where a resume after a crash looks for it.
fn record_inflight(path: &Path, engine: &str, session: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(path, format!("{engine} {session}\n"));
}

/// The step's log: what was handed the terminal, and how it ended (the screen itself was the
/// person's, and is not kept).
fn write_log(
    log: &Path,
    inv: &engine::Invocation,
    ending: &Ending,
    outcome: &engine::Outcome,
) -> Result {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = format!(
        "interactive: the terminal was handed to `{}` ({} arguments)\nended: {}\n",
        inv.program,
        inv.args.len(),
        ending.describe()
    );
    match &outcome.session {
        Some(s) => text.push_str(&format!("session: {s} (confirmed in the CLI's storage)\n")),
        None => text.push_str("session: none confirmed\n"),
    }
    std::fs::write(log, text)?;
    Ok(())
}

impl super::Runner<'_> {
    /// Whether the person is here to be handed the terminal or talked with.
    pub(super) fn person_present(&self) -> bool {
        self.person.as_ref().is_some_and(|p| p.present())
    }

    /// How `step` is executed now.
    pub(super) fn how(&self, plan: &Plan, step: &ResolvedStep) -> How {
        if plan.taken_over.as_ref() == Some(&step.id) {
            return How::TakenOver;
        }
        let present = self.person_present();
        match (step.mode, present, step.interactive_fallback) {
            (Mode::Autonomous, ..) => How::Headless,
            (Mode::Interactive, true, _) => How::Terminal,
            (Mode::Conversation, true, _) => How::Conversation,
            (_, false, Fallback::Headless) => How::Headless,
            (_, false, Fallback::Pause) => How::Wait,
        }
    }

    /// The step needs the person, who is not at a terminal: the run pauses before it, saying
    /// how to go on.
    pub(super) fn wait_for_person(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        plan: &Plan,
        step: &ResolvedStep,
    ) -> Result<Option<RunEnd>> {
        let id = info.id.clone();
        let what = if step.mode == Mode::Conversation {
            "the controller's conversation needs you"
        } else {
            "it is interactive"
        };
        let why = format!(
            "step `{}` waits for you: {what}, and there is no terminal to hand over \
             (`git machine resume {id}` on a terminal goes on; `interactive_fallback = \"headless\"` \
             runs it without you)",
            step.id
        );
        let t = machine::decide(
            &info.state,
            plan,
            Input::WaitsForPerson {
                step: step.id.clone(),
                why,
            },
        );
        let commit = self.publish_state(
            info,
            &t.state,
            &format!("wait: `{}` needs a person at a terminal", step.id),
        )?;
        info.tip = commit;
        info.state = t.state.clone();
        self.report_notices(&id, wt, &t.notices);
        Ok(Some(RunEnd::Waiting))
    }

    /// Hand the terminal to the step's program; the view steps aside meanwhile.
    pub(super) fn hand_over(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        rec: &str,
        prepared: &Prepared,
        lock: &mut RunLock,
    ) -> Result<Attempt> {
        let id = &info.id;
        let (_session, files) = self.before_program(info, wt, step, rec, prepared)?;
        let run = prepared.run_of(step, wt, &files, info.tip, self.env, &self.controls.cancel);
        if let Some(error) = &run.prestart_error {
            return Err(Error::failed(format!("step `{}`: {error}", step.id)));
        }
        self.emit(
            id,
            Kind::TerminalHandedOver {
                step: step.id.clone(),
                engine: step.engines.first().cloned().unwrap_or_default(),
            },
        );
        let attempt = attempt(self.rt, &run, &mut |pgid| lock.set_step_pgid(pgid));
        self.emit(
            id,
            Kind::TerminalTakenBack {
                step: step.id.clone(),
            },
        );
        attempt
    }

    /// The step the controller's conversation was: done with the conversation's session and
    /// result, not run again.
    pub(super) fn taken_over(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
    ) -> Result<Attempt> {
        let controller = StepId::parse(CONTROLLER).expect("`controller` is a step id");
        let session = info.state.sessions.get(&controller).cloned();
        let message = super::context::last_message(&info.id, wt, CONTROLLER);
        Ok(Attempt {
            engine: session
                .as_ref()
                .map(|s| s.engine.clone())
                .or_else(|| step.engines.first().cloned())
                .unwrap_or_default(),
            inv: engine::Invocation::agent("", Vec::new(), Vec::new(), ""),
            ending: Ending::Exited(0),
            outcome: engine::Outcome {
                success: true,
                summary: Some("done in the controller's conversation".to_string()),
                final_message: message,
                session: session.map(|s| s.id),
                ..Default::default()
            },
            resumed: None,
            skipped: Vec::new(),
            passed_over: Vec::new(),
        })
    }
}

//! The controller's conversation: the run's opening chat with the person, as its first step.
//!
//! Each line the person types is sent to the controller's engine as the next turn of one
//! headless session — so it works the same for every engine — and the agent's answer is shown.
//! An empty line asks whether to start the workflow. Every turn is appended at once to
//! `conversation.jsonl` in the step's record folder (in the worktree, which a resume keeps while
//! the session is known), so a crash or Ctrl-C in the middle loses nothing: `resume` reopens
//! the same session and shows the turns already had. When the person starts the workflow, the
//! step is committed like any other: the files the agent wrote, its session, and the
//! conversation (also as the step's message, which is what `from = "controller"` gives later
//! steps).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::time::Instant;

use super::exec::{self, Attempt, StepRun};
use super::machine::{self, Input};
use super::person::Said;
use super::stage::stage_step;
use super::{plan_of, step_message, Kind, Prepared};
use crate::engine::Ending;
use crate::error::{Error, Result};
use crate::git::Worktree;
use crate::store::lock::RunLock;
use crate::store::txn;
use crate::store::{self, layout, record_name, RunId, RunInfo, SessionRef, Status};
use crate::workflow::{ResolvedStep, CONTROLLER};

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The person's name (from git config), or `agent`.
    pub who: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub text: String,
}

/// Who the agent is in the conversation's turns.
pub const AGENT: &str = "agent";

/// The conversation so far, kept in its file as it grows.
pub struct Conversation {
    path: PathBuf,
    pub turns: Vec<Turn>,
}

impl Conversation {
    /// The conversation in `dir` (a record folder): the turns already had, if any. A line that
    /// does not read is an error, not a turn quietly lost.
    pub fn open(dir: &Path) -> Result<Conversation> {
        let path = dir.join(layout::CONVERSATION);
        let mut turns = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let turn = serde_json::from_str(line).map_err(|e| {
                    crate::error::Error::failed(format!(
                        "{} line {}: not a turn of the conversation: {e}",
                        path.display(),
                        i + 1
                    ))
                })?;
                turns.push(turn);
            }
        }
        Ok(Conversation { path, turns })
    }

    /// Add a turn, on disk first.
    pub fn push(&mut self, who: &str, text: &str) -> Result {
        let turn = Turn {
            who: who.to_string(),
            at: store::now_rfc3339(),
            text: text.to_string(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_string(&turn).expect("a turn serializes");
        line.push('\n');
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(line.as_bytes())?;
        self.turns.push(turn);
        Ok(())
    }

    /// The conversation as text for people and for later steps' prompts.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for t in &self.turns {
            out.push_str(&format!("**{}**: {}\n\n", t.who, t.text.trim_end()));
        }
        out
    }
}

impl super::Runner<'_> {
    /// Have the controller's conversation as step `step`; its attempt is what the step
    /// commits. Ends `Cancelled` when the person leaves it without starting (Ctrl-D, Ctrl-C):
    /// the run stops, resumable in the same conversation.
    pub(super) fn converse(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        rec: &str,
        prepared: &Prepared,
        lock: &mut RunLock,
    ) -> Result<Attempt> {
        let attempt = self.chat(info, wt, step, rec, prepared, lock, "Start the workflow?");
        self.done_talking();
        attempt
    }

    /// The conversation is over, however it ended.
    fn done_talking(&mut self) {
        if let Some(p) = self.person.as_mut() {
            p.done();
        }
    }

    /// The conversation loop; the agent opens it with the prompt unless the conversation is
    /// reopened or returned to. `question` is asked on an empty line.
    #[allow(clippy::too_many_arguments)]
    fn chat(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        rec: &str,
        prepared: &Prepared,
        lock: &mut RunLock,
        question: &str,
    ) -> Result<Attempt> {
        let id = &info.id;
        self.restore_transcript(id, wt, step, prepared)?;
        let mut chat = Conversation::open(&wt.path.join(store::record_dir(id, rec)))?;
        let mut session = prepared.continued.clone();
        self.emit(
            id,
            Kind::ConversationStarted {
                engine: step.engines.first().cloned().unwrap_or_default(),
                session: session.as_ref().map(|s| s.id.clone()),
                earlier_turns: chat.turns.len(),
            },
        );
        for t in chat.turns.clone() {
            self.emit(
                id,
                Kind::Turn {
                    who: t.who,
                    text: t.text,
                },
            );
        }
        let mut last = None;
        // Tokens and cost of every turn, for the step's record.
        let mut spent = std::collections::BTreeMap::new();
        let returned = question != "Start the workflow?";
        if chat.turns.is_empty() && !returned {
            // The controller's prompt opens the conversation; the agent speaks first.
            let first = self.turn(
                info,
                wt,
                step,
                rec,
                &prepared.prompt,
                &session,
                lock,
                prepared.prestart_error.clone(),
            )?;
            if !first.outcome.success || first.ending == Ending::Cancelled {
                return Ok(first);
            }
            self.answered(info, &mut chat, &first)?;
            session = first.session().or(session);
            add_usage(&mut spent, &first);
            last = Some(first);
        }
        let me = self.repo.user_name();
        loop {
            let said = match self.person.as_mut() {
                Some(p) => p.line(),
                None => Said::Gone,
            };
            match said {
                Said::Line(text) => {
                    chat.push(&me, &text)?;
                    self.emit(
                        id,
                        Kind::Turn {
                            who: me.clone(),
                            text: text.clone(),
                        },
                    );
                    let answer = self.turn(info, wt, step, rec, &text, &session, lock, None)?;
                    if answer.ending == Ending::Cancelled {
                        return Ok(answer);
                    }
                    self.answered(info, &mut chat, &answer)?;
                    session = answer.session().or(session);
                    add_usage(&mut spent, &answer);
                    last = Some(answer);
                }
                Said::Done => {
                    let go = self.person.as_mut().and_then(|p| p.confirm(question, true));
                    match go {
                        Some(true) => break,
                        Some(false) => continue,
                        None => return Ok(left(step, last, session)),
                    }
                }
                Said::Gone => return Ok(left(step, last, session)),
            }
        }
        self.emit(id, Kind::ConversationEnded { started: true });
        let mut done = finished(step, last, session, &chat);
        done.outcome.usage = spent;
        Ok(done)
    }

    /// Show the agent's answer (or what went wrong) and keep it in the conversation.
    fn answered(&mut self, info: &RunInfo, chat: &mut Conversation, answer: &Attempt) -> Result {
        let text = match (&answer.outcome.final_message, answer.outcome.success) {
            (Some(m), true) => m.clone(),
            (None, true) => "(no answer)".to_string(),
            (_, false) => format!(
                "(the agent failed: {}; say it again, or go on with an empty line)",
                answer.error()
            ),
        };
        chat.push(AGENT, &text)?;
        self.emit(
            &info.id,
            Kind::Turn {
                who: AGENT.to_string(),
                text,
            },
        );
        Ok(())
    }

    /// One headless turn of the conversation's session.
    #[allow(clippy::too_many_arguments)]
    fn turn(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        rec: &str,
        text: &str,
        session: &Option<SessionRef>,
        lock: &mut RunLock,
        prestart_error: Option<String>,
    ) -> Result<Attempt> {
        let id = &info.id;
        let _session = self.lock_session(id, session.as_ref())?;
        let files = exec::RunFiles::of(&self.paths, id, rec, self.env);
        let mut run = StepRun::new(
            step,
            text,
            &wt.path,
            &files,
            info.tip,
            self.env,
            &self.controls.cancel,
        );
        run.continued = session.as_ref();
        run.prestart_error = prestart_error;
        exec::attempt_step(self.rt, &run, &mut |pgid| lock.set_step_pgid(pgid), None)
    }
}

impl super::Runner<'_> {
    /// The run stopped where the person asked for the controller (`c`): have the
    /// conversation, then go on, as many times as they ask. Returns how the run ended at last.
    pub fn then_controller(&mut self, id: &RunId, mut end: super::RunEnd) -> Result<super::RunEnd> {
        use std::sync::atomic::Ordering::SeqCst;
        while self.controls.controller.swap(false, SeqCst)
            && matches!(end, super::RunEnd::Paused | super::RunEnd::Interrupted)
        {
            self.controls.cancel.store(false, SeqCst);
            self.controls.pause.store(false, SeqCst);
            if !self.return_to_controller(id)? {
                return Ok(end);
            }
            end = self.resume(id, super::ResumeOptions::default())?;
        }
        Ok(end)
    }

    /// Go back to the controller's conversation of run `id`, which no process executes: the
    /// same session, a new record, its own `controller:` commit. A step that was stopped in
    /// flight keeps its partial work in the worktree and its session: the commit then holds the
    /// conversation's record alone, and whatever the controller's agent changed is committed
    /// with that step. `Ok(true)` when the person asked to go on with the run.
    pub fn return_to_controller(&mut self, id: &RunId) -> Result<bool> {
        let mut lock = RunLock::acquire(&self.paths.lock(id), id.as_str())?;
        store::clear_stale_ref_locks(self.repo, id)?;
        let tip = self.branch_tip(id)?;
        let checkpoint = self.last_machine_commit(id, tip)?;
        let mut info = store::read_run_at(self.repo, id, checkpoint)?;
        let wf = info.workflow()?;
        let plan = plan_of(&wf, &info);
        let Some(step) = plan
            .steps
            .iter()
            .find(|s| s.id.as_str() == CONTROLLER)
            .cloned()
        else {
            return Err(Error::usage(format!(
                "run {id}'s workflow `{}` has no [controller]",
                info.record.workflow
            ))
            .with_hint("add a `[controller]` to the workflow for new runs"));
        };
        if !self.person_present() {
            return Err(
                Error::usage("the controller's conversation needs a terminal")
                    .with_hint("run `git machine controller` in a terminal, without --no-input"),
            );
        }
        let wt = self.ensure_worktree(id)?;
        self.clear_stale_git_locks(id, &wt)?;
        // As `resume` does: what an unfinished step left is kept under refs/machine/attempts/;
        // it stays in the worktree only while that step can continue in its session.
        let left_out = self.set_aside(&wt, &info, tip, "interrupted")?;
        let in_flight = self.inflight(&info, false);
        let base = match in_flight {
            Some(_) => tip,
            None => {
                if tip != checkpoint {
                    txn::move_refs(
                        self.repo,
                        &[crate::git::RefUpdate {
                            name: id.branch(),
                            old: Some(tip),
                            new: Some(checkpoint),
                        }],
                        &format!(
                            "git machine: back to the controller of run {id} from its checkpoint"
                        ),
                    )?;
                }
                wt.reset_keeping(checkpoint, &super::stage::Stage::paths(&left_out))?;
                checkpoint
            }
        };
        let rec = record_name(info.state.seq + 1, &step.id);
        let prepared = Prepared {
            fork: false,
            prompt: step.prompt.clone().unwrap_or_default(),
            context: Vec::new(),
            prestart_error: None,
            continued: info.state.sessions.get(&step.id).cloned(),
        };
        let started_at = store::now_rfc3339();
        let started = Instant::now();
        let question = if info.state.status == Status::Completed {
            "Done talking?"
        } else {
            "Resume the run?"
        };
        let attempt = self.chat(&info, &wt, &step, &rec, &prepared, &mut lock, question);
        self.done_talking();
        let attempt = attempt?;
        if attempt.ending == Ending::Cancelled {
            return Ok(false);
        }
        let mut record = exec::record_of(
            &step,
            info.state.seq + 1,
            &attempt,
            started_at,
            started.elapsed(),
        );
        let t = machine::decide(
            &info.state,
            &plan,
            Input::Returned {
                session: attempt.session(),
            },
        );
        let mut files = self.record_files(
            &wt,
            id,
            &rec,
            &mut record,
            (&prepared.prompt, &attempt),
            &t.state,
        )?;
        let tree = match &in_flight {
            Some(_) => self
                .repo
                .tree_with_files(self.repo.tree_of(base)?, &files)?,
            None => {
                let secrets = self.rules_at(id, base)?;
                let staged = stage_step(&wt, id, &rec, &mut record, &mut files, (&secrets, base))?;
                self.keep_run_folder(id, base, staged.tree, &files)?.0
            }
        };
        let commit = txn::publish(
            self.repo,
            id,
            base,
            txn::Commit {
                tree,
                files: Vec::new(),
                parents: vec![base],
                message: step_message(id, &rec, &record, None),
                author: Some(txn::author(Some(&record.engine))),
                side_refs: Vec::new(),
            },
        )?;
        if let Some(next) = &info.state.next {
            // The step in flight is numbered after this record now: its session moves along.
            let before = self
                .paths
                .inflight_session(id, &record_name(info.state.seq + 1, next));
            let after = self
                .paths
                .inflight_session(id, &record_name(t.state.seq + 1, next));
            if before.exists() {
                std::fs::rename(before, after)?;
            }
        }
        info.tip = commit;
        info.state = t.state;
        self.report_left_out(id, Some(&step.id), &record.left_out);
        self.emit(id, Kind::ConversationEnded { started: false });
        Ok(info.state.status != Status::Completed)
    }
}

/// The person left the conversation without starting the workflow: the step stops as if
/// interrupted, resumable in the same session.
fn left(step: &ResolvedStep, last: Option<Attempt>, session: Option<SessionRef>) -> Attempt {
    let mut a = last.unwrap_or_else(|| empty(step));
    a.ending = Ending::Cancelled;
    a.outcome.session = session.map(|s| s.id);
    a
}

/// Add a turn's tokens and cost to the conversation's.
fn add_usage(spent: &mut std::collections::BTreeMap<String, u64>, turn: &Attempt) {
    for (k, v) in &turn.outcome.usage {
        *spent.entry(k.clone()).or_default() += v;
    }
}

/// The conversation is over and the workflow starts: the step's result.
fn finished(
    step: &ResolvedStep,
    last: Option<Attempt>,
    session: Option<SessionRef>,
    chat: &Conversation,
) -> Attempt {
    let mut a = last.unwrap_or_else(|| empty(step));
    if let Some(s) = &session {
        a.engine = s.engine.clone();
    }
    let person_turns = chat.turns.iter().filter(|t| t.who != AGENT).count();
    a.ending = Ending::Exited(0);
    a.outcome.success = true;
    a.outcome.error = None;
    a.outcome.summary = Some(format!(
        "conversation of {person_turns} turn{}",
        if person_turns == 1 { "" } else { "s" }
    ));
    a.outcome.final_message = Some(chat.markdown());
    a.outcome.session = session.map(|s| s.id);
    a
}

/// An attempt before any turn ran (a conversation reopened and left at once).
fn empty(step: &ResolvedStep) -> Attempt {
    Attempt {
        engine: step.engines.first().cloned().unwrap_or_default(),
        inv: crate::engine::Invocation::agent("", Vec::new(), Vec::new(), ""),
        ending: Ending::Exited(0),
        outcome: Default::default(),
        resumed: None,
        skipped: Vec::new(),
        passed_over: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_is_kept_turn_by_turn_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut chat = Conversation::open(dir.path()).expect("no file yet");
        assert!(chat.turns.is_empty());
        chat.push(AGENT, "What shall we build?").expect("written");
        chat.push("Ada", "A todo app\nwith tags").expect("written");
        let again = Conversation::open(dir.path()).expect("read back");
        assert_eq!(again.turns, chat.turns);
        assert_eq!(
            again.markdown(),
            "**agent**: What shall we build?\n\n**Ada**: A todo app\nwith tags\n\n"
        );
    }

    #[test]
    fn a_damaged_conversation_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(layout::CONVERSATION);
        std::fs::write(
            &path,
            "{\"who\":\"agent\",\"at\":\"2026-01-01T00:00:00Z\",\"text\":\"hi\"}\nnot json\n",
        )
        .expect("write");
        let e = Conversation::open(dir.path()).err().expect("an error");
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}

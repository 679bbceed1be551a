//! Talking to a running step: a message from the person (`git machine say`, the live view's
//! `m`) stops the step's program at once, and the step goes on in its own session with the
//! message as the next turn. Every message is kept with the step's record (who, when, what);
//! until the record is committed, the messages delivered are kept beside the step's session,
//! so that a step that starts again from scratch hears them again.

use std::sync::atomic::Ordering;

use super::exec::Attempt;
use super::{Kind, Prepared};
use crate::engine::{self, Ending};
use crate::error::Result;
use crate::git::Worktree;
use crate::store::lock::RunLock;
use crate::store::mail::{self, Message};
use crate::store::{RunId, RunInfo};
use crate::workflow::ResolvedStep;

/// What a step that starts again is told of what the person said before.
pub fn replayed(said: &[Message]) -> String {
    if said.is_empty() {
        return String::new();
    }
    let mut out = "\n\nWhile you worked on this before, you were told:\n".to_string();
    for m in said {
        out.push_str(&format!("- {} ({}): {}\n", m.by, m.at, m.text));
    }
    out
}

/// The next turn of a session that a message interrupted.
fn next_turn(said: &[Message]) -> String {
    if said.is_empty() {
        return "Go on with your task where you stopped.".to_string();
    }
    let mut out = String::new();
    for m in said {
        out.push_str(&format!("Message from {}: {}\n", m.by, m.text));
    }
    out.push_str("\nTake this into account and go on with your task.");
    out
}

impl super::Runner<'_> {
    /// Run the step headless, hearing the person: each time messages come, the program is
    /// stopped and the step goes on in its session (or starts again with the messages, for an
    /// engine without sessions). Returns the last attempt and every message heard.
    pub(super) fn attempt_heard(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        rec: &str,
        prepared: &Prepared,
        lock: &mut RunLock,
    ) -> Result<(Attempt, Vec<Message>)> {
        let id = &info.id;
        let mut prepared = prepared.clone();
        let original = prepared.prompt.clone();
        let mut heard = mail::read(&self.paths.delivered(id, rec))?;
        loop {
            let attempt = self.attempt_step(info, wt, step, rec, &prepared, lock)?;
            let stopped_for_mail = attempt.ending == Ending::Cancelled
                && self.controls.mail.swap(false, Ordering::SeqCst)
                && !self.controls.cancel.load(Ordering::SeqCst)
                && !self.controls.skip.load(Ordering::SeqCst);
            if !stopped_for_mail {
                return Ok((attempt, heard));
            }
            let said = self.take_messages(id)?;
            for m in &said {
                mail::post(&self.paths.delivered(id, rec), m)?;
                self.emit(
                    id,
                    Kind::Said {
                        step: step.id.clone(),
                        by: m.by.clone(),
                        text: m.text.clone(),
                    },
                );
            }
            heard.extend(said.iter().cloned());
            let session = attempt.session().filter(|s| {
                engine::by_name(&s.engine, &self.env.vars).is_some_and(|e| e.can_resume())
            });
            prepared.prompt = match &session {
                Some(_) => next_turn(&said),
                None => format!("{original}{}", replayed(&heard)),
            };
            prepared.continued = session.or(prepared.continued);
            prepared.prestart_error = None;
        }
    }

    /// The messages waiting for the run: typed in this process's view, and posted to its
    /// mailbox from elsewhere.
    fn take_messages(&mut self, id: &RunId) -> Result<Vec<Message>> {
        let me = self.repo.user_name();
        let typed: Vec<String> = match self.controls.said.lock() {
            Ok(mut said) => std::mem::take(&mut *said),
            Err(_) => Vec::new(),
        };
        let mut out: Vec<Message> = typed.iter().map(|t| Message::now(&me, t)).collect();
        out.extend(mail::take(&self.paths.mailbox(id))?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str) -> Message {
        Message {
            by: "Ada".into(),
            at: "2026-01-01T00:00:00Z".into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_message_is_the_next_turn_of_the_session() {
        let turn = next_turn(&[said("use sqlite"), said("and tests")]);
        assert!(turn.starts_with("Message from Ada: use sqlite\nMessage from Ada: and tests\n"));
        assert!(turn.ends_with("go on with your task."));
        assert_eq!(next_turn(&[]), "Go on with your task where you stopped.");
    }

    #[test]
    fn a_step_that_starts_again_hears_what_it_was_told() {
        assert_eq!(replayed(&[]), "");
        let text = replayed(&[said("use sqlite")]);
        assert!(
            text.contains("you were told:\n- Ada (2026-01-01T00:00:00Z): use sqlite\n"),
            "{text}"
        );
    }
}

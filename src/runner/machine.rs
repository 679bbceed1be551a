//! The run's life cycle as one pure function: from the checkpoint, the plan and what just
//! happened, decide the next checkpoint, what kind of commit publishes it, and what to report.
//!
//! No I/O here: executing a step (running its program, reading its directive, running its
//! gate) produces an [`Input`]; [`decide`] turns it into a [`Transition`]; the run transaction
//! in `store::txn` publishes that as one commit; the runner reports the transition's events.
//! Every rule is listed in docs/design.md ("The state machine") and has a unit test below.

use std::collections::{BTreeMap, BTreeSet};

use crate::git::Oid;
use crate::store::{
    GroupAction, GroupDirective, LoopFeedback, LoopRecord, RunRecord, SessionRef, State, Status,
};
use crate::workflow::{LoopSpec, ResolvedStep, StepId, CONTROLLER};

/// The workflow as resolved for this run: which steps apply (track and conditions), which are
/// conflict resolvers, and what follows what.
pub struct Plan {
    pub steps: Vec<ResolvedStep>,
    selected: Vec<bool>,
    /// Each group's `on_conflict` step, by group.
    on_conflict: BTreeMap<String, StepId>,
    resolvers: BTreeSet<StepId>,
    /// The first step, when the controller's conversation was it (`[controller] step = …`).
    pub taken_over: Option<StepId>,
}

impl Plan {
    /// `on_conflict`: (group, resolver step) pairs.
    pub fn new(
        steps: Vec<ResolvedStep>,
        record: &RunRecord,
        on_conflict: Vec<(String, StepId)>,
    ) -> Plan {
        let selected = steps
            .iter()
            .map(|s| selected(&s.when, &s.when_any, &s.tracks, record))
            .collect();
        Plan {
            steps,
            selected,
            resolvers: on_conflict.iter().map(|(_, r)| r.clone()).collect(),
            on_conflict: on_conflict.into_iter().collect(),
            taken_over: None,
        }
    }

    /// The step that resolves `group`'s merge conflicts, if it has one.
    pub fn resolver(&self, group: &str) -> Option<StepId> {
        self.on_conflict.get(group).cloned()
    }

    pub fn index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    pub fn step(&self, id: &str) -> Option<&ResolvedStep> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn is_selected(&self, id: &str) -> bool {
        self.index(id).is_some_and(|i| self.selected[i])
    }

    /// The first step that runs.
    pub fn first(&self) -> Option<StepId> {
        self.runnable_from(0)
    }

    fn runnable_from(&self, from: usize) -> Option<StepId> {
        (from..self.steps.len())
            .find(|&i| self.selected[i] && !self.resolvers.contains(&self.steps[i].id))
            .map(|i| self.steps[i].id.clone())
    }

    /// The step that runs after `id`: the next one that applies, past `id`'s whole group when
    /// it is in one. Resolver steps run only for conflicts and are never a successor.
    pub fn successor(&self, id: &str) -> Option<StepId> {
        let index = self.index(id)?;
        let group = self.steps[index].group.as_deref();
        let after = match group {
            Some(g) => {
                index
                    + self.steps[index..]
                        .iter()
                        .take_while(|s| s.group.as_deref() == Some(g))
                        .count()
            }
            None => index + 1,
        };
        self.runnable_from(after)
    }

    /// Steps between `id` and its successor that are passed over (their conditions or tracks
    /// were not chosen), for the report.
    pub fn skipped_after(&self, id: &str) -> Vec<StepId> {
        let Some(index) = self.index(id) else {
            return Vec::new();
        };
        let next = self.successor(id).and_then(|n| self.index(&n));
        let end = next.unwrap_or(self.steps.len());
        (index + 1..end)
            .filter(|&i| !self.selected[i] && !self.resolvers.contains(&self.steps[i].id))
            .filter(|&i| {
                self.steps[i].group.is_none() || self.steps[i].group != self.steps[index].group
            })
            .map(|i| self.steps[i].id.clone())
            .collect()
    }

    /// The members of the group `first` starts that apply to this run, in order.
    pub fn members(&self, first: &str) -> Vec<&ResolvedStep> {
        let Some(index) = self.index(first) else {
            return Vec::new();
        };
        let Some(group) = self.steps[index].group.as_deref() else {
            return Vec::new();
        };
        // `next` always names a group's first member; find the group's real start.
        let start = (0..=index)
            .rev()
            .take_while(|&i| self.steps[i].group.as_deref() == Some(group))
            .last()
            .unwrap_or(index);
        self.steps[start..]
            .iter()
            .enumerate()
            .take_while(|(_, s)| s.group.as_deref() == Some(group))
            .filter(|(i, _)| self.selected[start + i])
            .map(|(_, s)| s)
            .collect()
    }
}

/// Whether a step (its `when`, `when_any`, `tracks`) runs with the run's chosen track and
/// conditions.
pub fn selected(
    when: &[String],
    when_any: &[String],
    tracks: &[String],
    record: &RunRecord,
) -> bool {
    let has = |c: &String| record.conditions.contains(c);
    when.iter().all(has)
        && (when_any.is_empty() || when_any.iter().any(has))
        && (tracks.is_empty() || record.track.as_ref().is_some_and(|t| tracks.contains(t)))
}

/// `.codemachine/directive.toml` as the agent wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Continue,
    Stop(String),
    Pause(String),
    Error(String),
    Loop {
        to: Option<String>,
        reason: String,
    },
    /// Unreadable, or an unknown action: the step fails with this message.
    Invalid(String),
}

impl Directive {
    /// `action: reason`, as the step record keeps it.
    pub fn describe(&self) -> String {
        let (action, reason) = match self {
            Directive::Continue => ("continue", ""),
            Directive::Stop(r) => ("stop", r.as_str()),
            Directive::Pause(r) => ("pause", r.as_str()),
            Directive::Error(r) => ("error", r.as_str()),
            Directive::Loop { reason, .. } => ("loop", reason.as_str()),
            Directive::Invalid(m) => ("invalid", m.as_str()),
        };
        if reason.is_empty() {
            action.to_string()
        } else {
            format!("{action}: {reason}")
        }
    }
}

/// A loop gate's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The command, as the user wrote it.
    pub command: String,
    pub passed: bool,
    /// How it ended (`exit 101`), when it did not pass.
    pub ending: String,
    /// The last lines of its output, when it did not pass.
    pub tail: String,
}

impl Gate {
    pub fn describe(&self) -> String {
        if self.passed {
            "passed".to_string()
        } else {
            format!("failed ({})", self.ending)
        }
    }
}

/// What just happened to the run.
#[derive(Debug, Clone)]
pub enum Input {
    /// A step's program succeeded (and its declared outputs exist). `gate` is set when the
    /// runner ran the step's loop gate (see [`needs_gate`]).
    StepSucceeded {
        step: StepId,
        session: Option<SessionRef>,
        directive: Option<Directive>,
        gate: Option<Gate>,
    },
    /// A person skipped the step while it ran (`by`: who).
    StepSkipped { step: StepId, by: String },
    /// A step's program failed, timed out, or could not start with any engine.
    StepFailed {
        step: StepId,
        session: Option<SessionRef>,
        error: String,
    },
    /// A member of the group in progress finished and its commit exists.
    MemberSucceeded {
        member: StepId,
        /// Its record number (taken when the group started it).
        seq: u32,
        commit: Oid,
        base: Oid,
        directive: Option<Directive>,
    },
    /// Members of the group failed; the group is over for now. `seq`: the highest record
    /// number the group has taken.
    MembersFailed {
        first: StepId,
        seq: u32,
        base: Oid,
        failed: Vec<(StepId, String)>,
    },
    /// All members merged cleanly onto the run.
    Merged { first: StepId },
    /// Merging `member` conflicts in `paths`; `pending` are the members still to merge.
    Conflict {
        first: StepId,
        member: StepId,
        paths: Vec<String>,
        pending: Vec<StepId>,
    },
    /// The group's resolver (or a person, on resume) resolved the conflict with `member`.
    Resolved { member: StepId },
    /// A person's edits after a pause are committed, or a paused run just goes on.
    Reviewed,
    /// The next step needs the person and cannot have them now (an interactive step with no
    /// terminal): the run waits, paused before it.
    WaitsForPerson { step: StepId, why: String },
    /// The person went back to the controller's conversation in the middle of the run; it
    /// adds a record and leaves the run where it was.
    Returned { session: Option<SessionRef> },
}

/// What kind of commit publishes a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// The step's work and its record.
    Step,
    /// Only the step's record, the work set aside: the step failed.
    Failure,
    /// Only the step's record, the work set aside: a person skipped the step.
    Skipped,
    /// Only the checkpoint: a member finished (its commit goes under a side ref).
    MemberDone,
    /// The failed members' records.
    GroupFailure,
    /// The members' merge (clean, or as far as it went before a conflict).
    Merge,
    /// The resolver's resolution of a conflicting merge.
    Resolution,
    /// A person's edits.
    Review,
    /// Only the checkpoint: the run waits for a person before its next step.
    Wait,
    /// A return to the controller's conversation: its files and its record.
    Conversation,
}

/// Something worth telling the user that the decision itself found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A loop sends the run back.
    Loop {
        from: StepId,
        to: StepId,
        pass: u32,
        max: u32,
        why: String,
    },
    /// A loop ran out of passes: the run goes on (`on_max = "continue"`) or stops failed.
    LoopExhausted {
        from: StepId,
        max: u32,
        went_on: bool,
    },
    Paused {
        reason: String,
    },
    /// The run waits for the person before `step`.
    Waiting {
        step: StepId,
        reason: String,
    },
    Stopped {
        reason: String,
    },
    Failed {
        step: StepId,
        reason: String,
    },
    /// A person skipped a step.
    Skipped {
        step: StepId,
        by: String,
    },
}

/// The decision: the next checkpoint, how it is published, what to tell.
#[derive(Debug, Clone)]
#[must_use = "a transition does nothing until it is published"]
pub struct Transition {
    pub state: State,
    pub publish: Publish,
    pub notices: Vec<Notice>,
    /// For the step record: what the directive was, what the gate said, where a loop went.
    pub directive: Option<String>,
    pub gate: Option<String>,
    pub looped: Option<LoopRecord>,
    /// The step failed after all (a directive said so or was wrong): the error to record.
    pub error: Option<String>,
}

impl Transition {
    fn new(state: State, publish: Publish) -> Transition {
        Transition {
            state,
            publish,
            notices: Vec::new(),
            directive: None,
            gate: None,
            looped: None,
            error: None,
        }
    }
}

/// A person asked the run to pause once the current step is committed (`p`, SIGUSR1): a run
/// that would go on pauses at its next step instead.
pub fn with_pause(mut t: Transition, by: &str) -> Transition {
    if t.state.status == Status::Running && t.state.next.is_some() {
        finish_or_pause(&mut t, Some(format!("paused by {by}")));
    }
    t
}

/// Whether the step's loop gate must run: it has one, and no directive already decided.
pub fn needs_gate(step: &ResolvedStep, directive: Option<&Directive>) -> bool {
    let Some(spec) = &step.loop_spec else {
        return false;
    };
    !spec.until.is_empty()
        && !matches!(
            directive,
            Some(
                Directive::Stop(_)
                    | Directive::Error(_)
                    | Directive::Invalid(_)
                    | Directive::Loop { .. }
            )
        )
}

/// The lines of a gate's output that go into the looped-to step's prompt.
pub const GATE_TAIL_LINES: usize = 40;

/// Decide what `input` does to the run whose checkpoint is `state`.
pub fn decide(state: &State, plan: &Plan, input: Input) -> Transition {
    match input {
        Input::StepSucceeded {
            step,
            session,
            directive,
            gate,
        } => step_succeeded(state, plan, &step, session, directive, gate),
        Input::StepFailed {
            step,
            session,
            error,
        } => {
            let mut next = begin(state);
            next.seq = state.seq + 1;
            remember_session(&mut next, &step, session);
            fail(
                next,
                Publish::Failure,
                &step,
                &step,
                format!("step `{step}` failed: {error}"),
            )
        }
        Input::StepSkipped { step, by } => {
            let mut next = begin(state);
            next.seq = state.seq + 1;
            next.feedback = None;
            next.loops.remove(&step);
            next.next = plan.successor(&step);
            if next.next.is_none() {
                next.status = Status::Completed;
            }
            let mut t = Transition::new(next, Publish::Skipped);
            t.notices.push(Notice::Skipped { step, by });
            t
        }
        Input::MemberSucceeded {
            member,
            seq,
            commit,
            base,
            directive,
        } => {
            let mut t = member_succeeded(state, plan, &member, commit, base, directive);
            t.state.seq = state.seq.max(seq);
            t
        }
        Input::MembersFailed {
            first,
            seq,
            base,
            failed,
        } => members_failed(state, plan, &first, seq, base, &failed),
        Input::Merged { first } => merged(state, plan, &first),
        Input::Conflict {
            first,
            member,
            paths,
            pending,
        } => {
            let mut next = state.clone();
            next.status = Status::Conflict;
            next.next = Some(first);
            next.pending_merge = pending;
            next.reason = Some(format!(
                "merging `{member}` into the run conflicts in: {}",
                paths.join(", ")
            ));
            next.conflict_paths = paths;
            Transition::new(next, Publish::Merge)
        }
        Input::Resolved { member } => {
            let mut next = state.clone();
            next.seq = state.seq + 1;
            next.status = Status::Running;
            next.conflict_paths.clear();
            next.reason = None;
            next.pending_merge.retain(|s| *s != member);
            Transition::new(next, Publish::Resolution)
        }
        Input::Reviewed => {
            let mut next = state.clone();
            next.status = Status::Running;
            next.reason = None;
            Transition::new(next, Publish::Review)
        }
        Input::WaitsForPerson { step, why } => {
            let mut next = state.clone();
            next.status = Status::Paused;
            next.next = Some(step.clone());
            next.reason = Some(why.clone());
            let mut t = Transition::new(next, Publish::Wait);
            t.notices.push(Notice::Waiting { step, reason: why });
            t
        }
        Input::Returned { session } => {
            let mut next = state.clone();
            next.seq += 1;
            remember_session(
                &mut next,
                &StepId::parse(CONTROLLER).expect("an id"),
                session,
            );
            Transition::new(next, Publish::Conversation)
        }
    }
}

/// The checkpoint a new decision starts from: running, no stale reason.
fn begin(state: &State) -> State {
    let mut next = state.clone();
    next.status = Status::Running;
    next.reason = None;
    next.failed = None;
    next
}

fn remember_session(state: &mut State, step: &StepId, session: Option<SessionRef>) {
    if let Some(s) = session {
        state.sessions.insert(step.clone(), s);
    }
}

/// Stop the run failed at `failed`; a resume starts at `resume_at`.
fn fail(
    mut state: State,
    publish: Publish,
    failed: &StepId,
    resume_at: &StepId,
    reason: String,
) -> Transition {
    state.status = Status::Failed;
    state.next = Some(resume_at.clone());
    state.failed = Some(failed.clone());
    state.reason = Some(reason.clone());
    let mut t = Transition::new(state, publish);
    t.notices.push(Notice::Failed {
        step: failed.clone(),
        reason,
    });
    t
}

fn step_succeeded(
    state: &State,
    plan: &Plan,
    step: &StepId,
    session: Option<SessionRef>,
    directive: Option<Directive>,
    gate: Option<Gate>,
) -> Transition {
    let mut next = begin(state);
    next.seq = state.seq + 1;
    next.feedback = None;
    remember_session(&mut next, step, session);
    let spec = plan.step(step).and_then(|s| s.loop_spec.clone());
    let checkpoint = plan.step(step).is_some_and(|s| s.checkpoint);
    let described = directive.as_ref().map(Directive::describe);
    let failure = |next: State, error: String| {
        let mut t = fail(
            next,
            Publish::Failure,
            step,
            step,
            format!("step `{step}` failed: {error}"),
        );
        t.directive = described.clone();
        t.error = Some(error);
        t
    };
    let mut loop_why = None;
    let mut pause = checkpoint.then(String::new);
    match asked(step, spec.as_ref(), directive) {
        Asked::Nothing => {}
        Asked::Fail(error) => return failure(next, error),
        Asked::Pause(reason) => pause = Some(reason),
        Asked::Loop(why) => loop_why = Some(why),
        Asked::Stop(reason) => {
            next.loops.remove(step);
            next.status = Status::Completed;
            next.next = None;
            next.reason = Some(reason.clone());
            let mut t = Transition::new(next, Publish::Step);
            t.directive = described;
            t.notices.push(Notice::Stopped { reason });
            return t;
        }
    }
    let gate_text = gate.as_ref().map(Gate::describe);
    if let Some(g) = gate.as_ref().filter(|g| !g.passed) {
        loop_why = Some(format!(
            "the gate `{}` failed ({}){}",
            g.command,
            g.ending,
            if g.tail.trim().is_empty() {
                String::new()
            } else {
                format!(":\n{}", g.tail.trim_end())
            }
        ));
    }
    next.next = plan.successor(step);
    let mut t = Transition::new(next, Publish::Step);
    t.directive = described;
    t.gate = gate_text;
    match (&spec, loop_why) {
        (Some(spec), Some(why)) => {
            if let Some(failed) = loop_back(&mut t, step, spec, why) {
                return failed;
            }
        }
        _ => {
            t.state.loops.remove(step);
        }
    }
    if let Some(reason) = pause {
        finish_or_pause(
            &mut t,
            Some(reason)
                .filter(|r| !r.is_empty())
                .or_else(|| Some(format!("checkpoint after `{step}`"))),
        );
    } else if t.state.next.is_none() {
        t.state.status = Status::Completed;
    }
    t
}

/// What a step's directive asks for, checked against the step's limits.
enum Asked {
    Nothing,
    Pause(String),
    Stop(String),
    /// Go back, for this reason.
    Loop(String),
    /// The step fails after all, with this error.
    Fail(String),
}

fn asked(step: &StepId, spec: Option<&LoopSpec>, directive: Option<Directive>) -> Asked {
    match directive {
        None | Some(Directive::Continue) => Asked::Nothing,
        Some(Directive::Invalid(message)) => Asked::Fail(message),
        Some(Directive::Error(why)) => Asked::Fail(format!("the step reported an error: {why}")),
        Some(Directive::Stop(why)) => Asked::Stop(format!("stopped by step `{step}`: {why}")),
        Some(Directive::Pause(why)) => Asked::Pause(format!("paused by step `{step}`: {why}")),
        Some(Directive::Loop { to, reason }) => match spec {
            None => Asked::Fail(format!(
                "the directive asks to loop, but step `{step}` declares no `loop`"
            )),
            Some(spec) => match to.filter(|to| spec.to != *to) {
                Some(to) => Asked::Fail(format!(
                    "the directive asks to loop to `{to}`; step `{step}` may only loop to `{}`",
                    spec.to
                )),
                None if reason.is_empty() => Asked::Loop(format!("step `{step}` asked to loop")),
                None => Asked::Loop(reason),
            },
        },
    }
}

/// A loop asks to go back (`why`): back to `spec.to` while passes remain, else out of passes.
/// `Some` when the run stops failed here.
fn loop_back(
    t: &mut Transition,
    step: &StepId,
    spec: &LoopSpec,
    why: String,
) -> Option<Transition> {
    let done = t.state.loops.get(step).copied().unwrap_or(0) + 1;
    if done < spec.max {
        t.state.loops.insert(step.clone(), done);
        t.state.next = Some(spec.to.clone());
        let pass = done + 1;
        t.state.feedback = Some(LoopFeedback {
            from: step.clone(),
            pass,
            reason: why.clone(),
        });
        t.looped = Some(LoopRecord {
            to: spec.to.clone(),
            pass,
            max: spec.max,
            exhausted: false,
        });
        t.notices.push(Notice::Loop {
            from: step.clone(),
            to: spec.to.clone(),
            pass,
            max: spec.max,
            why,
        });
    } else {
        t.state.loops.remove(step);
        t.looped = Some(LoopRecord {
            to: spec.to.clone(),
            pass: done + 1,
            max: spec.max,
            exhausted: true,
        });
        t.notices.push(Notice::LoopExhausted {
            from: step.clone(),
            max: spec.max,
            went_on: spec.continue_on_max,
        });
        if !spec.continue_on_max {
            // The work is committed; a resume starts the loop again from its target.
            let reason = format!(
                "loop of `{step}` reached its max of {} passes{}; `git machine resume` starts `{}` again",
                spec.max,
                t.gate.as_deref().map(|g| format!(", gate {g}")).unwrap_or_default(),
                spec.to
            );
            let mut failed = fail(t.state.clone(), Publish::Step, step, &spec.to, reason);
            failed.notices.splice(0..0, t.notices.drain(..));
            failed.directive = t.directive.take();
            failed.gate = t.gate.take();
            failed.looped = t.looped.take();
            return Some(failed);
        }
        t.state.reason = Some(format!(
            "loop of `{step}` reached its max of {} passes; went on",
            spec.max
        ));
    }
    None
}

fn members_failed(
    state: &State,
    plan: &Plan,
    first: &StepId,
    seq: u32,
    base: Oid,
    failed: &[(StepId, String)],
) -> Transition {
    let mut next = state.clone();
    next.seq = state.seq.max(seq);
    next.group_base = Some(base);
    let names: Vec<&str> = failed.iter().map(|(m, _)| m.as_str()).collect();
    let failed_step = failed.first().map_or(first, |(m, _)| m);
    let group = plan
        .step(first)
        .and_then(|s| s.group.clone())
        .unwrap_or_default();
    let reason = format!(
        "parallel group `{group}`: {} failed; `git machine resume` reruns only {}",
        names.join(", "),
        if names.len() == 1 { "it" } else { "those" }
    );
    fail(next, Publish::GroupFailure, failed_step, first, reason)
}

fn finish_or_pause(t: &mut Transition, reason: Option<String>) {
    let reason = reason.unwrap_or_default();
    t.state.status = Status::Paused;
    t.state.reason = Some(reason.clone());
    t.notices.push(Notice::Paused { reason });
}

fn member_succeeded(
    state: &State,
    plan: &Plan,
    member: &StepId,
    commit: Oid,
    base: Oid,
    directive: Option<Directive>,
) -> Transition {
    let mut next = state.clone();
    next.status = Status::Running;
    next.group_base = Some(base);
    let group = plan
        .step(member)
        .and_then(|s| s.group.clone())
        .unwrap_or_default();
    let mut t = Transition::new(next, Publish::MemberDone);
    t.directive = directive.as_ref().map(Directive::describe);
    match directive {
        None | Some(Directive::Continue) => {}
        Some(Directive::Stop(reason)) => {
            t.state.group_directive = Some(GroupDirective {
                member: member.clone(),
                action: GroupAction::Stop,
                reason,
            })
        }
        Some(Directive::Pause(reason)) => {
            if t.state
                .group_directive
                .as_ref()
                .is_none_or(|d| d.action != GroupAction::Stop)
            {
                t.state.group_directive = Some(GroupDirective {
                    member: member.clone(),
                    action: GroupAction::Pause,
                    reason,
                })
            }
        }
        // The runner fails such a member instead (see `member_directive_problem`); should one
        // arrive here, its error is still recorded rather than the directive obeyed.
        Some(d) => t.error = member_directive_problem(member, &group, &d),
    }
    t.state.group_done.insert(member.clone(), commit);
    t
}

/// Why a member's directive fails the member, or `None` when the group can obey it.
pub fn member_directive_problem(member: &str, group: &str, d: &Directive) -> Option<String> {
    match d {
        Directive::Continue | Directive::Stop(_) | Directive::Pause(_) => None,
        _ => Some(member_directive_error(member, group, &d.describe())),
    }
}

fn member_directive_error(member: &str, group: &str, directive: &str) -> String {
    if directive.starts_with("loop") {
        format!(
            "step `{member}` of parallel group `{group}` asks to loop; a member of a group cannot send the run back (put the loop on a step after the group)"
        )
    } else if let Some(why) = directive.strip_prefix("error") {
        format!("the step reported an error{why}")
    } else {
        directive.trim_start_matches("invalid: ").to_string()
    }
}

fn merged(state: &State, plan: &Plan, first: &StepId) -> Transition {
    let mut next = begin(state);
    next.group_done.clear();
    next.group_base = None;
    next.pending_merge.clear();
    next.conflict_paths.clear();
    next.next = plan.successor(first);
    let directive = next.group_directive.take();
    let mut t = Transition::new(next, Publish::Merge);
    match directive {
        Some(d) if d.action == GroupAction::Stop => {
            let reason = format!("stopped by step `{}`: {}", d.member, d.reason);
            t.state.next = None;
            t.state.status = Status::Completed;
            t.state.reason = Some(reason.clone());
            t.notices.push(Notice::Stopped { reason });
        }
        Some(d) => finish_or_pause(
            &mut t,
            Some(format!("paused by step `{}`: {}", d.member, d.reason)),
        ),
        None if t.state.next.is_none() => t.state.status = Status::Completed,
        None => {}
    }
    t
}

#[cfg(test)]
mod tests;

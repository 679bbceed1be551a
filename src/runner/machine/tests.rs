//! One test per rule of [`decide`]; the rules are listed in docs/design.md.

use std::collections::BTreeMap;

use super::*;
use crate::store::{RunRecord, SessionRef, State, Status, FORMAT_VERSION};

const WORKFLOW: &str = r#"
version = 1
name = "t"
[defaults]
engine = "command"

[[condition_groups]]
id = "parts"
question = "Which parts?"
multi = true
[condition_groups.options]
extra = "An extra step"

[[steps]]
id = "design"
run = ["true"]

[[steps]]
id = "optional"
run = ["true"]
when = ["extra"]

[[steps]]
id = "implement"
run = ["true"]

[[steps]]
id = "review"
run = ["true"]
loop = { to = "implement", max = 3, until = { run = ["cargo", "test"] } }

[[steps]]
id = "a"
group = "g"
run = ["true"]

[[steps]]
id = "b"
group = "g"
run = ["true"]

[[steps]]
id = "look"
run = ["true"]
checkpoint = true

[[steps]]
id = "last"
run = ["true"]
loop = { to = "last", max = 2, on_max = "continue" }
"#;

fn record(conditions: &[&str]) -> RunRecord {
    RunRecord {
        version: FORMAT_VERSION,
        run_id: "r".into(),
        workflow: "t".into(),
        origin: "t.toml".into(),
        base: "0".repeat(40),
        started: "2026-01-01T00:00:00Z".into(),
        vars: BTreeMap::new(),
        overrides: BTreeMap::new(),
        track: None,
        conditions: conditions.iter().map(|c| c.to_string()).collect(),
    }
}

fn plan_with(conditions: &[&str]) -> Plan {
    let wf = crate::workflow::parse("t.toml", WORKFLOW).expect("the test workflow is valid");
    Plan::new(
        wf.resolve(&BTreeMap::new()),
        &record(conditions),
        Vec::new(),
    )
}

fn plan() -> Plan {
    plan_with(&[])
}

fn at(next: &str) -> State {
    let mut state = State::new(Some(next.into()));
    state.seq = 4;
    state
}

fn ok(step: &str) -> Input {
    Input::StepSucceeded {
        step: step.into(),
        session: None,
        directive: None,
        gate: None,
    }
}

fn with_directive(step: &str, d: Directive) -> Input {
    Input::StepSucceeded {
        step: step.into(),
        session: None,
        directive: Some(d),
        gate: None,
    }
}

fn gate(passed: bool) -> Option<Gate> {
    Some(Gate {
        command: "cargo test".into(),
        passed,
        ending: if passed {
            String::new()
        } else {
            "exit 101".into()
        },
        tail: if passed {
            String::new()
        } else {
            "test x ... FAILED".into()
        },
    })
}

fn oid(n: u8) -> Oid {
    Oid::parse(&format!("{n:02x}").repeat(20)).expect("40 hex digits")
}

#[test]
fn a_step_that_succeeds_goes_to_the_next_step_that_applies() {
    let t = decide(&at("design"), &plan(), ok("design"));
    assert_eq!(t.state.next.as_deref(), Some("implement"));
    assert_eq!(t.state.status, Status::Running);
    assert_eq!(t.state.seq, 5);
    assert_eq!(t.publish, Publish::Step);
    assert_eq!(plan().skipped_after("design"), vec!["optional".to_string()]);
}

#[test]
fn a_chosen_condition_brings_its_step_in() {
    let t = decide(&at("design"), &plan_with(&["extra"]), ok("design"));
    assert_eq!(t.state.next.as_deref(), Some("optional"));
}

#[test]
fn the_last_step_completes_the_run() {
    let mut p = plan();
    p.steps.last_mut().expect("steps").loop_spec = None;
    let t = decide(&at("last"), &p, ok("last"));
    assert_eq!(t.state.next, None);
    assert_eq!(t.state.status, Status::Completed);
}

#[test]
fn a_failed_step_is_recorded_and_retried_on_resume() {
    let t = decide(
        &at("implement"),
        &plan(),
        Input::StepFailed {
            step: "implement".into(),
            session: None,
            error: "exit 1".into(),
        },
    );
    assert_eq!(t.publish, Publish::Failure);
    assert_eq!(t.state.status, Status::Failed);
    assert_eq!(t.state.next.as_deref(), Some("implement"));
    assert_eq!(t.state.failed.as_deref(), Some("implement"));
    assert_eq!(t.state.seq, 5);
}

#[test]
fn a_session_is_remembered_for_later_steps() {
    let s = SessionRef {
        engine: "claude".into(),
        id: "abc".into(),
    };
    let t = decide(
        &at("design"),
        &plan(),
        Input::StepSucceeded {
            step: "design".into(),
            session: Some(s.clone()),
            directive: None,
            gate: None,
        },
    );
    assert_eq!(t.state.sessions.get("design"), Some(&s));
}

#[test]
fn a_failing_gate_sends_the_run_back_with_its_output() {
    let t = decide(
        &at("review"),
        &plan(),
        Input::StepSucceeded {
            step: "review".into(),
            session: None,
            directive: None,
            gate: gate(false),
        },
    );
    assert_eq!(t.state.next.as_deref(), Some("implement"));
    assert_eq!(t.state.loops.get("review"), Some(&1));
    let fb = t.state.feedback.expect("feedback for the looped-to step");
    assert_eq!((fb.from.as_str(), fb.pass), ("review", 2));
    assert!(
        fb.reason.contains("`cargo test` failed (exit 101)"),
        "{}",
        fb.reason
    );
    assert!(fb.reason.contains("test x ... FAILED"), "{}", fb.reason);
    assert_eq!(t.gate.as_deref(), Some("failed (exit 101)"));
    assert!(matches!(&t.notices[0], Notice::Loop { to, pass: 2, max: 3, .. } if to == "implement"));
}

#[test]
fn a_passing_gate_leaves_the_loop_and_resets_its_counter() {
    let mut s = at("review");
    s.loops.insert("review".into(), 2);
    let t = decide(
        &s,
        &plan(),
        Input::StepSucceeded {
            step: "review".into(),
            session: None,
            directive: None,
            gate: gate(true),
        },
    );
    assert_eq!(t.state.next.as_deref(), Some("a"));
    assert!(t.state.loops.is_empty());
    assert_eq!(t.state.feedback, None);
    assert_eq!(t.looped, None);
}

#[test]
fn a_loop_at_its_max_fails_the_run_naming_the_looping_step() {
    let mut s = at("review");
    s.loops.insert("review".into(), 2);
    let t = decide(
        &s,
        &plan(),
        Input::StepSucceeded {
            step: "review".into(),
            session: None,
            directive: None,
            gate: gate(false),
        },
    );
    assert_eq!(
        t.publish,
        Publish::Step,
        "the work of the last pass is kept"
    );
    assert_eq!(t.state.status, Status::Failed);
    assert_eq!(t.state.failed.as_deref(), Some("review"));
    assert_eq!(t.state.next.as_deref(), Some("implement"));
    assert!(t.looped.as_ref().is_some_and(|l| l.exhausted));
    assert!(t
        .state
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("max of 3")));
}

#[test]
fn a_loop_at_its_max_with_on_max_continue_goes_on() {
    let mut s = at("last");
    s.loops.insert("last".into(), 1);
    let t = decide(
        &s,
        &plan(),
        with_directive(
            "last",
            Directive::Loop {
                to: None,
                reason: "again".into(),
            },
        ),
    );
    assert_eq!(t.state.status, Status::Completed);
    assert!(matches!(
        t.notices[0],
        Notice::LoopExhausted { went_on: true, .. }
    ));
}

#[test]
fn a_loop_directive_uses_its_reason_as_feedback() {
    let t = decide(
        &at("review"),
        &plan(),
        with_directive(
            "review",
            Directive::Loop {
                to: Some("implement".into()),
                reason: "the parser drops comments".into(),
            },
        ),
    );
    assert_eq!(t.state.next.as_deref(), Some("implement"));
    assert_eq!(
        t.state.feedback.map(|f| f.reason).as_deref(),
        Some("the parser drops comments")
    );
}

#[test]
fn a_loop_directive_outside_the_steps_limits_fails_it() {
    let t = decide(
        &at("review"),
        &plan(),
        with_directive(
            "review",
            Directive::Loop {
                to: Some("design".into()),
                reason: String::new(),
            },
        ),
    );
    assert_eq!(t.publish, Publish::Failure);
    assert!(t
        .error
        .as_deref()
        .is_some_and(|e| e.contains("may only loop to `implement`")));
    let t = decide(
        &at("design"),
        &plan(),
        with_directive(
            "design",
            Directive::Loop {
                to: None,
                reason: String::new(),
            },
        ),
    );
    assert!(t
        .error
        .as_deref()
        .is_some_and(|e| e.contains("declares no `loop`")));
}

#[test]
fn a_stop_directive_completes_the_run_early() {
    let t = decide(
        &at("design"),
        &plan(),
        with_directive("design", Directive::Stop("done".into())),
    );
    assert_eq!(t.state.status, Status::Completed);
    assert_eq!(t.state.next, None);
    assert_eq!(
        t.state.reason.as_deref(),
        Some("stopped by step `design`: done")
    );
}

#[test]
fn a_pause_directive_or_a_checkpoint_pauses_after_the_commit() {
    let t = decide(
        &at("design"),
        &plan(),
        with_directive("design", Directive::Pause("look".into())),
    );
    assert_eq!(
        (t.state.status, t.state.next.as_deref()),
        (Status::Paused, Some("implement"))
    );
    let t = decide(&at("look"), &plan(), ok("look"));
    assert_eq!(
        (t.state.status, t.state.next.as_deref()),
        (Status::Paused, Some("last"))
    );
    assert_eq!(t.publish, Publish::Step);
}

#[test]
fn an_error_or_unreadable_directive_fails_the_step() {
    for d in [
        Directive::Error("no".into()),
        Directive::Invalid("bad toml".into()),
    ] {
        let t = decide(&at("design"), &plan(), with_directive("design", d));
        assert_eq!(t.publish, Publish::Failure);
        assert_eq!(t.state.status, Status::Failed);
        assert_eq!(t.state.next.as_deref(), Some("design"));
    }
}

#[test]
fn the_gate_runs_only_when_no_directive_decided() {
    let p = plan();
    let review = p.step("review").expect("review");
    assert!(needs_gate(review, None));
    assert!(needs_gate(review, Some(&Directive::Continue)));
    assert!(!needs_gate(review, Some(&Directive::Stop(String::new()))));
    assert!(!needs_gate(p.step("design").expect("design"), None));
}

#[test]
fn a_finished_member_is_checkpointed_at_once() {
    let t = decide(
        &at("a"),
        &plan(),
        Input::MemberSucceeded {
            member: "a".into(),
            seq: 5,
            commit: oid(1),
            base: oid(9),
            directive: None,
        },
    );
    assert_eq!(t.publish, Publish::MemberDone);
    assert_eq!(t.state.group_done.get("a"), Some(&oid(1)));
    assert_eq!(t.state.group_base, Some(oid(9)));
    assert_eq!(t.state.next.as_deref(), Some("a"), "the group is not over");
    assert_eq!(t.state.seq, 5, "no later member may take its record number");
}

#[test]
fn a_members_stop_applies_to_the_group_after_it_merges() {
    let t = decide(
        &at("a"),
        &plan(),
        Input::MemberSucceeded {
            member: "b".into(),
            seq: 6,
            commit: oid(2),
            base: oid(9),
            directive: Some(Directive::Stop("enough".into())),
        },
    );
    assert_eq!(t.state.status, Status::Running, "not before the merge");
    let merged = decide(&t.state, &plan(), Input::Merged { first: "a".into() });
    assert_eq!(merged.state.status, Status::Completed);
    assert_eq!(
        merged.state.reason.as_deref(),
        Some("stopped by step `b`: enough")
    );
    assert!(merged.state.group_directive.is_none());
}

#[test]
fn a_members_pause_pauses_after_the_merge() {
    let mut s = at("a");
    s.group_directive = Some(GroupDirective {
        member: "a".into(),
        action: crate::store::GroupAction::Pause,
        reason: "check".into(),
    });
    let t = decide(&s, &plan(), Input::Merged { first: "a".into() });
    assert_eq!(
        (t.state.status, t.state.next.as_deref()),
        (Status::Paused, Some("look"))
    );
}

#[test]
fn a_members_loop_or_error_is_a_member_failure() {
    let why = member_directive_problem(
        "a",
        "g",
        &Directive::Loop {
            to: None,
            reason: String::new(),
        },
    )
    .expect("a member cannot loop");
    assert!(why.contains("cannot send the run back"), "{why}");
    assert!(member_directive_problem("a", "g", &Directive::Error("x".into())).is_some());
    assert!(member_directive_problem("a", "g", &Directive::Pause(String::new())).is_none());
}

#[test]
fn failed_members_fail_the_group_keeping_the_others_done() {
    let mut s = at("a");
    s.group_done.insert("b".into(), oid(2));
    let t = decide(
        &s,
        &plan(),
        Input::MembersFailed {
            first: "a".into(),
            seq: 5,
            base: oid(9),
            failed: vec![("a".into(), "exit 1".into())],
        },
    );
    assert_eq!(t.publish, Publish::GroupFailure);
    assert_eq!(t.state.status, Status::Failed);
    assert_eq!(t.state.failed.as_deref(), Some("a"));
    assert_eq!(t.state.next.as_deref(), Some("a"));
    assert_eq!(t.state.group_done.get("b"), Some(&oid(2)));
    assert_eq!(t.state.seq, 5);
}

#[test]
fn a_clean_merge_ends_the_group() {
    let mut s = at("a");
    s.group_done.insert("a".into(), oid(1));
    s.group_base = Some(oid(9));
    let t = decide(&s, &plan(), Input::Merged { first: "a".into() });
    assert_eq!(t.publish, Publish::Merge);
    assert_eq!(t.state.next.as_deref(), Some("look"));
    assert!(t.state.group_done.is_empty() && t.state.group_base.is_none());
}

#[test]
fn a_conflict_stops_the_run_with_the_paths() {
    let t = decide(
        &at("a"),
        &plan(),
        Input::Conflict {
            first: "a".into(),
            member: "b".into(),
            paths: vec!["x.txt".into()],
            pending: vec!["b".into()],
        },
    );
    assert_eq!(t.state.status, Status::Conflict);
    assert_eq!(t.state.conflict_paths, vec!["x.txt".to_string()]);
    assert_eq!(t.state.pending_merge, vec!["b".to_string()]);
    assert_eq!(t.state.next.as_deref(), Some("a"));
}

#[test]
fn a_resolution_takes_the_member_off_the_pending_list() {
    let mut s = at("a");
    s.status = Status::Conflict;
    s.pending_merge = vec!["b".into()];
    s.conflict_paths = vec!["x".into()];
    let t = decide(&s, &plan(), Input::Resolved { member: "b".into() });
    assert_eq!(t.publish, Publish::Resolution);
    assert_eq!(t.state.status, Status::Running);
    assert!(t.state.pending_merge.is_empty() && t.state.conflict_paths.is_empty());
    assert_eq!(t.state.seq, 5);
}

#[test]
fn a_review_resumes_a_paused_run() {
    let mut s = at("implement");
    s.status = Status::Paused;
    s.reason = Some("checkpoint".into());
    let t = decide(&s, &plan(), Input::Reviewed);
    assert_eq!(t.publish, Publish::Review);
    assert_eq!(t.state.status, Status::Running);
    assert_eq!(t.state.reason, None);
    assert_eq!(t.state.next.as_deref(), Some("implement"));
}

#[test]
fn a_groups_members_are_found_from_its_first() {
    let p = plan();
    let ids: Vec<&str> = p.members("a").iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(p.successor("a").as_deref(), Some("look"));
}

#[test]
fn a_skipped_step_is_recorded_and_the_run_goes_on() {
    let mut s = at("implement");
    s.feedback = Some(LoopFeedback {
        from: "review".into(),
        pass: 2,
        reason: "x".into(),
    });
    let t = decide(
        &s,
        &plan(),
        Input::StepSkipped {
            step: "implement".into(),
            by: "Ada".into(),
        },
    );
    assert_eq!(t.publish, Publish::Skipped);
    assert_eq!(t.state.next.as_deref(), Some("review"));
    assert_eq!(t.state.status, Status::Running);
    assert_eq!(t.state.seq, 5);
    assert_eq!(t.state.feedback, None);
    assert!(matches!(&t.notices[0], Notice::Skipped { by, .. } if by == "Ada"));
}

#[test]
fn a_pause_request_pauses_at_the_next_step_but_never_ends_a_finished_or_failed_run() {
    let t = with_pause(decide(&at("design"), &plan(), ok("design")), "Ada");
    assert_eq!(
        (t.state.status, t.state.next.as_deref()),
        (Status::Paused, Some("implement"))
    );
    assert_eq!(t.state.reason.as_deref(), Some("paused by Ada"));
    let mut p = plan();
    p.steps.last_mut().expect("steps").loop_spec = None;
    let done = with_pause(decide(&at("last"), &p, ok("last")), "Ada");
    assert_eq!(done.state.status, Status::Completed);
    let failed = with_pause(
        decide(
            &at("design"),
            &plan(),
            Input::StepFailed {
                step: "design".into(),
                session: None,
                error: "x".into(),
            },
        ),
        "Ada",
    );
    assert_eq!(failed.state.status, Status::Failed);
}

#[test]
fn a_step_that_needs_the_person_pauses_the_run_before_it() {
    let mut s = at("implement");
    s.seq = 4;
    let why = "step `implement` is interactive and there is no terminal".to_string();
    let t = decide(
        &s,
        &plan(),
        Input::WaitsForPerson {
            step: "implement".into(),
            why: why.clone(),
        },
    );
    assert_eq!(t.publish, Publish::Wait);
    assert_eq!(t.state.status, Status::Paused);
    assert_eq!(t.state.next.as_deref(), Some("implement"));
    assert_eq!(t.state.reason.as_deref(), Some(why.as_str()));
    // No record is written: the step has not run.
    assert_eq!(t.state.seq, 4);
    assert_eq!(
        t.notices,
        vec![Notice::Waiting {
            step: "implement".into(),
            reason: why
        }]
    );
    // A review (the person on a terminal) lets it go on, to the same step.
    let t = decide(&t.state, &plan(), Input::Reviewed);
    assert_eq!(t.state.status, Status::Running);
    assert_eq!(t.state.next.as_deref(), Some("implement"));
}

#[test]
fn a_return_to_the_controller_adds_a_record_and_leaves_the_run_where_it_was() {
    let mut s = at("review");
    s.seq = 7;
    s.loops.insert("review".into(), 1);
    let session = SessionRef {
        engine: "claude".into(),
        id: "s-1".into(),
    };
    let t = decide(
        &s,
        &plan(),
        Input::Returned {
            session: Some(session.clone()),
        },
    );
    assert_eq!(t.publish, Publish::Conversation);
    assert_eq!(t.state.seq, 8);
    assert_eq!(t.state.next.as_deref(), Some("review"));
    assert_eq!(t.state.status, Status::Running);
    assert_eq!(t.state.loops, s.loops);
    assert_eq!(t.state.sessions.get("controller"), Some(&session));
    assert!(t.notices.is_empty());
}

//! What the runner tells the world while a run executes: typed events, in order. The runner
//! never prints; `ui/` renders these as progress lines or as JSON lines (`--json`, schema in
//! docs/events.md). Field names here are the JSON schema: change them only with its version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::git::Oid;
use crate::workflow::StepId;

/// Version of the event schema (docs/events.md).
pub const SCHEMA_VERSION: u32 = 1;

/// One event: what happened, to which run, when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub run: String,
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(flatten)]
    pub kind: Kind,
}

/// Lines added and removed by a step.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Diffstat {
    pub files: usize,
    pub insertions: usize,
    pub deletions: usize,
    /// Each changed file (the first [`DIFFSTAT_PATHS`]), git machine's own files left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathStat>,
}

/// One file a step changed: lines added and removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PathStat {
    pub path: String,
    pub insertions: usize,
    pub deletions: usize,
}

/// Files listed by name in a diffstat, at most.
pub const DIFFSTAT_PATHS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Kind {
    RunStarted {
        schema: u32,
        workflow: String,
        branch: String,
        worktree: String,
        /// `None` for a new run; else where it resumes (`step`, `review`, `merge`).
        #[serde(skip_serializing_if = "Option::is_none")]
        resumed: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<StepId>,
        /// The workflow has a `[controller]` to go back to (`c`, `git machine controller`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        controller: bool,
    },
    /// The run's workflow was replaced (`resume --reload`) or its engine or model changed.
    WorkflowChanged {
        commit: Oid,
        diff: String,
    },
    /// Work a killed or failed step left is kept under a ref.
    AttemptKept {
        r#ref: String,
        commit: Oid,
    },
    /// A lock file a killed process left was removed.
    StaleLockRemoved {
        path: String,
    },
    /// What preparing a worktree did or could not do (`[workspace]` files, submodules, the
    /// setup command), for the run's worktree or a `member`'s.
    Workspace {
        #[serde(skip_serializing_if = "Option::is_none")]
        member: Option<StepId>,
        note: String,
        /// It could not be done (a file missing, a submodule the user never initialised).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        warning: bool,
    },
    StepStarted {
        step: StepId,
        /// 1-based position and the number of steps in the workflow.
        position: usize,
        total: usize,
        engines: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pass: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        continues_session: Option<String>,
    },
    /// A transcript was put back where its agent CLI looks for it.
    TranscriptRestored {
        step: StepId,
        engine: String,
        session: String,
        path: String,
    },
    EngineSkipped {
        step: StepId,
        engine: String,
        reason: String,
    },
    GateStarted {
        step: StepId,
        command: String,
    },
    Gate {
        step: StepId,
        command: String,
        passed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        ending: Option<String>,
    },
    Directive {
        step: StepId,
        directive: String,
    },
    /// What a running step (or `member`) is doing, in words; in the event log for `watch`, at
    /// most a few a second, never on `--json` stdout.
    Activity {
        #[serde(skip_serializing_if = "Option::is_none")]
        member: Option<String>,
        text: String,
    },
    StepFinished {
        step: StepId,
        commit: Oid,
        engine: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        duration_ms: u64,
        diffstat: Diffstat,
        /// Token counts and cost as the engine reported them (`input_tokens`, …).
        usage: BTreeMap<String, u64>,
        summary: String,
    },
    StepFailed {
        step: StepId,
        reason: String,
        /// Where the log is: the file in the worktree and the commit holding it.
        log: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        commit: Option<Oid>,
        duration_ms: u64,
        /// The last lines of the step's final message or output.
        tail: Vec<String>,
    },
    StepSkipped {
        step: StepId,
        why: String,
    },
    StepInterrupted {
        step: StepId,
        duration_ms: u64,
    },
    /// The step changed git machine's own files; they were kept as recorded.
    RecordRepaired {
        step: StepId,
    },
    /// Secret files were left out of a commit; they stay in the worktree, untracked.
    LeftOut {
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        files: Vec<crate::store::secrets::LeftOut>,
    },
    GroupStarted {
        group: String,
        members: Vec<StepId>,
        jobs: usize,
    },
    MemberFinished {
        step: StepId,
        group: String,
        commit: Oid,
        checkpoint: Oid,
        engine: String,
        duration_ms: u64,
        summary: String,
    },
    MemberFailed {
        step: StepId,
        group: String,
        reason: String,
        duration_ms: u64,
        /// The last lines of the member's final message or output.
        tail: Vec<String>,
    },
    GroupMerged {
        group: String,
        commit: Oid,
        members: Vec<StepId>,
    },
    Conflict {
        group: String,
        step: StepId,
        paths: Vec<String>,
        worktree: String,
    },
    ResolverStarted {
        step: StepId,
        group: String,
        member: StepId,
    },
    Resolved {
        step: StepId,
        commit: Oid,
    },
    ResolverFailed {
        step: StepId,
        reason: String,
    },
    Loop {
        step: StepId,
        to: StepId,
        pass: u32,
        max: u32,
        why: String,
    },
    LoopExhausted {
        step: StepId,
        max: u32,
        went_on: bool,
    },
    Stopped {
        reason: String,
    },
    Paused {
        reason: String,
        worktree: String,
    },
    Review {
        commit: Oid,
        after: String,
    },
    /// The run is paused before `step`, which needs the person at a terminal.
    Waiting {
        step: StepId,
        reason: String,
    },
    /// An interactive step's program has the terminal (the view steps aside).
    TerminalHandedOver {
        step: StepId,
        engine: String,
    },
    /// The terminal is back from an interactive step's program.
    TerminalTakenBack {
        step: StepId,
    },
    /// The controller's conversation begins (or is reopened: `session` continues, with
    /// `earlier_turns` already had).
    ConversationStarted {
        engine: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        earlier_turns: usize,
    },
    /// One turn of the conversation: the person's line or the agent's answer.
    Turn {
        who: String,
        text: String,
    },
    /// The conversation is over; the run goes on (`started`) or stops where it is.
    ConversationEnded {
        started: bool,
    },
    /// A person's message reached a running step, which goes on in its session with it.
    Said {
        step: StepId,
        by: String,
        text: String,
    },
    RunFinished {
        /// completed | failed | paused | conflict | interrupted
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The step that failed, when the state is `failed`.
        #[serde(skip_serializing_if = "Option::is_none")]
        failed_step: Option<StepId>,
        duration_ms: u64,
    },
}

/// Where events go: the command line hands the runner one.
pub trait Sink {
    fn emit(&mut self, event: Event);
    /// Output of a step's program as it arrives (`--verbose`, the live view).
    fn output(&mut self, _line: &str) {}
    /// Output of a member of a parallel group, as it arrives.
    fn member_output(&mut self, _step: &str, line: &str) {
        self.output(line);
    }
}

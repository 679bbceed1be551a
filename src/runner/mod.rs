//! Executing a run: start it, run its steps, publish each transition, report what happened.
//!
//! The life cycle is one loop of four parts:
//! - **execute** (`exec`, `parallel`): run a step's program, or a group's members, in a
//!   worktree; read its directive; run its gate. This yields a [`machine::Input`] and changes
//!   nothing in git.
//! - **decide** ([`machine::decide`]): a pure function from the checkpoint, the plan and the
//!   input to the next checkpoint, the kind of commit that publishes it, and what to tell.
//! - **publish** ([`crate::store::txn`]): one commit plus its refs in one compare-and-swap.
//! - **report** ([`events`]): typed events to the [`Sink`] the command line gave; only `ui/`
//!   renders them.
//!
//! Only publishing changes what a resume sees, and it is atomic: killed before it, a resume
//! finds the old checkpoint and runs the step again (its debris kept under
//! `refs/machine/attempts/`); killed after it, the checkpoint already names what comes next.

mod context;
pub mod controller;
pub mod events;
mod exec;
pub mod filter;
mod interactive;
pub mod machine;
mod messages;
mod parallel;
pub mod person;
mod pool;
mod reload;
pub mod settings;
mod stage;
mod transcript;
mod workspace;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use crate::engine::{self, Ending};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::git::{GitError, Oid, RefName, RefUpdate, Repo, Worktree};
use crate::store::lock::RunLock;
use crate::store::mail;
use crate::store::pool::Target;
use crate::store::secrets::LeftOut;
use crate::store::txn::{self, trailer};
use crate::store::{
    self, record_name, to_toml, Paths, RunId, RunInfo, RunRecord, SessionRef, State, Status,
    StoreError, ATTEMPTS_PREFIX,
};
use crate::workflow::{ResolvedStep, StepId, Workflow};
pub use events::{Diffstat, Event, Kind, Sink};
use exec::{Attempt, StepRun};
pub use machine::selected;
use machine::{Input, Notice, Plan, Publish, Transition};
pub use reload::Reload;

/// What a caller needs to start a run.
pub struct StartRequest<'a> {
    pub workflow: &'a Workflow,
    pub vars: BTreeMap<String, String>,
    pub base: Oid,
    pub overrides: BTreeMap<String, String>,
    pub track: Option<String>,
    pub conditions: Vec<String>,
}

/// Why a new run could not be created: its id was taken by a run created at the same
/// moment (try another), or anything else.
enum Taken {
    Id(StoreError),
    Other(Error),
}

impl From<StoreError> for Taken {
    fn from(e: StoreError) -> Taken {
        match e {
            StoreError::Git(GitError::RefMoved { .. }) => Taken::Id(e),
            e => Taken::Other(e.into()),
        }
    }
}

/// Create a run with `create`, again with a new id while another run created in the same
/// millisecond took the id (its random part is one character); at most 8 more tries.
fn first_free<T>(mut create: impl FnMut() -> std::result::Result<T, Taken>) -> Result<T> {
    let mut tries = 0;
    loop {
        match create() {
            Ok(t) => return Ok(t),
            Err(Taken::Id(_)) if tries < 8 => tries += 1,
            Err(Taken::Id(e)) => return Err(e.into()),
            Err(Taken::Other(e)) => return Err(e),
        }
    }
}

/// Everything the runner works with.
pub struct Runner<'a> {
    pub repo: &'a Repo,
    pub paths: Paths,
    pub sink: &'a mut dyn Sink,
    pub env: &'a Env,
    /// What the person asks: stop now, pause after the step, skip the step.
    pub controls: &'a crate::signal::Controls,
    /// Pass the steps' output to the sink as it arrives.
    pub echo: bool,
    /// How many members of a parallel group run at once.
    pub jobs: usize,
    /// The one event loop: the steps' programs, parallel members and the live view run on it.
    pub rt: &'a tokio::runtime::Runtime,
    /// The person at the terminal, when there is one to hand it to or to talk with.
    pub person: Option<&'a mut dyn person::Person>,
    /// Which worktrees are watched (`git config machine.watch`).
    pub watch: crate::git::WatchWhen,
    /// The secret rules of the workflow version last read ([`Runner::rules_at`]).
    pub secrets_seen: std::cell::RefCell<Option<(Oid, crate::store::secrets::Secrets)>>,
}

/// An attempt kept aside: its commit, and the side ref that keeps it.
pub type Kept = (Oid, RefUpdate);

/// How a run's execution ended; the command line maps it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Completed,
    Failed,
    Paused,
    /// Paused before a step that needs the person at a terminal.
    Waiting,
    Conflict,
    Interrupted,
}

impl RunEnd {
    pub fn name(self) -> &'static str {
        match self {
            RunEnd::Completed => "completed",
            RunEnd::Failed => "failed",
            RunEnd::Paused | RunEnd::Waiting => "paused",
            RunEnd::Conflict => "conflict",
            RunEnd::Interrupted => "interrupted",
        }
    }

    /// Where a checkpoint leaves the run: `None` while it goes on.
    fn of(status: Status) -> Option<RunEnd> {
        match status {
            Status::Running => None,
            Status::Completed => Some(RunEnd::Completed),
            Status::Failed => Some(RunEnd::Failed),
            Status::Paused => Some(RunEnd::Paused),
            Status::Conflict => Some(RunEnd::Conflict),
        }
    }
}

/// How `resume` continues.
#[derive(Default)]
pub struct ResumeOptions {
    /// Start an interrupted agent step afresh instead of continuing its session.
    pub restart_step: bool,
    /// Adopt a new workflow definition, engine or model for the rest of the run.
    pub reload: Option<Reload>,
}

/// Values of the built-in placeholders for a run.
fn builtin_values(id: &RunId, record: &RunRecord) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("run_id".into(), id.to_string());
    v.insert("workflow".into(), record.workflow.clone());
    v.insert(
        "date".into(),
        record.started.get(..10).unwrap_or_default().to_string(),
    );
    v.insert("base".into(), record.base.clone());
    v.insert("track".into(), record.track.clone().unwrap_or_default());
    v.insert("conditions".into(), record.conditions.join(", "));
    v
}

/// The plan of a run at its checkpoint: the workflow resolved with the run's values (and the
/// loop feedback of the pass about to run), overrides applied.
fn plan_of(wf: &Workflow, info: &RunInfo) -> Plan {
    let mut values = info.record.vars.clone();
    values.extend(builtin_values(&info.id, &info.record));
    let fb = info.state.feedback.as_ref();
    values.extend(crate::workflow::loop_values(
        fb.map(|f| (f.reason.as_str(), f.pass)),
    ));
    let mut steps = wf.resolve(&values);
    settings::apply(&mut steps, &info.record.overrides);
    let on_conflict = wf
        .groups
        .iter()
        .filter_map(|g| g.on_conflict.clone().map(|r| (g.id.clone(), r)))
        .collect();
    let mut plan = Plan::new(steps, &info.record, on_conflict);
    plan.taken_over = wf.controller.clone().flatten();
    plan
}

impl Runner<'_> {
    fn emit(&mut self, run: &RunId, kind: Kind) {
        self.sink.emit(Event {
            run: run.to_string(),
            time: store::now_rfc3339(),
            kind,
        });
    }

    /// Create the run (branch, start commit, worktree) and execute it.
    pub fn start(&mut self, req: StartRequest<'_>) -> Result<(RunId, RunEnd)> {
        let spec = settings::workspace(&req.workflow.workspace, &req.overrides);
        workspace::check_before_start(self.repo, &spec)?;
        workspace::check_lfs(self.repo, req.base, self.env.var("PATH"))?;
        let (id, mut info, start) = first_free(|| {
            let (id, info) = self.new_run(&req).map_err(Taken::Other)?;
            let start = self.create_run(&info, &req).map_err(Taken::from)?;
            Ok((id, info, start))
        })?;
        info.tip = start;
        // Locked once the run exists: a kill before this leaves no lock of a run that never was.
        let lock = RunLock::acquire(&self.paths.lock(&id), id.as_str())?;
        let wt_path = self.paths.worktree(&id);
        self.pool()?
            .acquire(self.repo, &wt_path, Target::Branch(&id.branch(), start))?;
        let wt = Worktree::new(wt_path.clone());
        wt.watch_from(start, self.watch)?;
        self.emit(
            &id,
            Kind::RunStarted {
                schema: events::SCHEMA_VERSION,
                workflow: info.record.workflow.clone(),
                branch: format!("machine/{id}"),
                worktree: exec::shown(&wt_path),
                resumed: None,
                next: info.state.next.clone(),
                controller: req.workflow.controller.is_some(),
            },
        );
        let end = self.execute(info, lock, None, wt)?;
        Ok((id, end))
    }

    /// A new run's id and what its start commit records; the id names no branch yet.
    fn new_run(&self, req: &StartRequest<'_>) -> Result<(RunId, RunInfo)> {
        let now = SystemTime::now();
        let mut id = RunId::generate(now);
        while self.repo.ref_target(&id.branch()).is_some() {
            id = RunId::generate(now);
        }
        let record = RunRecord {
            version: store::FORMAT_VERSION,
            run_id: id.to_string(),
            workflow: req.workflow.name.clone(),
            origin: req.workflow.origin.clone(),
            base: req.base.to_string(),
            started: store::now_rfc3339(),
            vars: req.vars.clone(),
            overrides: req.overrides.clone(),
            track: req.track.clone(),
            conditions: req.conditions.clone(),
        };
        let mut info = RunInfo {
            id: id.clone(),
            tip: req.base,
            record,
            state: State::new(None),
            workflow_source: req.workflow.source.clone(),
            prompt_files: req.workflow.prompt_files.clone(),
        };
        let first = plan_of(req.workflow, &info).first().ok_or_else(|| {
            Error::usage("no step of this workflow applies to the chosen track and conditions").with_hint("`git machine validate <workflow>` lists each step's track and conditions; choose another with --track or --with")
        })?;
        info.state.next = Some(first);
        Ok((id, info))
    }

    /// The run's branch, created at its start commit (refused if the branch exists).
    fn create_run(&self, info: &RunInfo, req: &StartRequest<'_>) -> Result<Oid, StoreError> {
        let id = &info.id;
        txn::start(
            self.repo,
            id,
            txn::Commit {
                tree: self.repo.tree_of(req.base)?,
                files: store::run_files(info),
                parents: vec![req.base],
                message: txn::message(
                    &format!("start: {} ({})", info.record.workflow, id),
                    &[(trailer::RUN, id.as_str())],
                ),
                author: None,
                side_refs: Vec::new(),
            },
        )
    }

    /// Continue a run from its last checkpoint. An agent step that was interrupted mid-flight
    /// continues in its own session with its partial work kept (unless `restart_step`); any
    /// other unfinished step starts again from a clean checkpoint, its debris kept as an attempt.
    pub fn resume(&mut self, id: &RunId, opts: ResumeOptions) -> Result<RunEnd> {
        let lock = RunLock::acquire(&self.paths.lock(id), id.as_str())?;
        store::clear_stale_ref_locks(self.repo, id)?;
        let tip = self.repo.ref_target(&id.branch()).ok_or_else(|| {
            Error::usage(format!("run {id} has no branch any more"))
                .with_hint("`git machine status` lists the runs that have one")
        })?;
        let checkpoint = self.last_machine_commit(id, tip)?;
        let mut info = store::read_run_at(self.repo, id, checkpoint)?;
        if let Some(reload) = &opts.reload {
            // Checked before anything is touched: a refused reload changes nothing.
            reload.check(&info)?;
        }
        if info.state.status == Status::Completed {
            // Killed while handing its worktree to the pool: finish that.
            self.finish_release(id)?;
            self.emit(
                id,
                Kind::RunFinished {
                    state: "completed".into(),
                    reason: Some("the run was already complete".into()),
                    failed_step: None,
                    duration_ms: 0,
                },
            );
            return Ok(RunEnd::Completed);
        }
        let wt = self.ensure_worktree(id)?;
        self.clear_stale_git_locks(id, &wt)?;
        let (resumed, inflight) = match info.state.status {
            Status::Paused => {
                self.review(&mut info, tip, &wt)?;
                ("review", None)
            }
            Status::Conflict => {
                self.check_resolved(&mut info, tip, &wt)?;
                ("merge", None)
            }
            _ => {
                let inflight = self.inflight(&info, opts.restart_step);
                // Whatever the unfinished step left is kept under refs/machine/attempts/.
                let left_out = self.set_aside(&wt, &info, tip, "interrupted")?;
                if inflight.is_none() {
                    if tip != checkpoint {
                        txn::move_refs(
                            self.repo,
                            &[RefUpdate {
                                name: id.branch(),
                                old: Some(tip),
                                new: Some(checkpoint),
                            }],
                            &format!("git machine: resume run {id} from its checkpoint"),
                        )?;
                    }
                    wt.reset_keeping(checkpoint, &stage::Stage::paths(&left_out))?;
                }
                ("step", inflight)
            }
        };
        if let Some(reload) = &opts.reload {
            self.reload(&mut info, &wt, reload)?;
        }
        self.emit(
            id,
            Kind::RunStarted {
                schema: events::SCHEMA_VERSION,
                workflow: info.record.workflow.clone(),
                branch: format!("machine/{id}"),
                worktree: exec::shown(&wt.path),
                resumed: Some(resumed.to_string()),
                next: info.state.next.clone(),
                controller: info.workflow().is_ok_and(|wf| wf.controller.is_some()),
            },
        );
        self.execute(info, lock, inflight, wt)
    }

    /// The session of the step a killed git machine left in flight, if it can continue.
    fn inflight(&self, info: &RunInfo, restart_step: bool) -> Option<SessionRef> {
        match (&info.state.next, info.state.status) {
            (Some(next), Status::Running) if !restart_step => {
                let rec = record_name(info.state.seq + 1, next);
                exec::read_inflight(&self.paths.inflight_session(&info.id, &rec)).filter(|s| {
                    engine::by_name(&s.engine, &self.env.vars).is_some_and(|e| e.can_resume())
                })
            }
            _ => None,
        }
    }

    /// After a merge conflict: go on only once the person resolved and committed it.
    fn check_resolved(&mut self, info: &mut RunInfo, tip: Oid, wt: &Worktree) -> Result {
        let id = info.id.clone();
        let unmerged = wt.unmerged_paths()?;
        let hint = format!(
            "in {}: edit the files, `git add` them, `git commit`, then `git machine resume {id}`",
            wt.path.display()
        );
        if !unmerged.is_empty() {
            return Err(Error::failed(format!(
                "run {id} still has unresolved conflicts: {}",
                unmerged.join(", ")
            ))
            .with_hint(hint));
        }
        if wt.merging() {
            return Err(Error::failed(format!(
                "the merge in run {id}'s worktree is resolved but not committed"
            ))
            .with_hint(hint));
        }
        let waiting = info
            .state
            .pending_merge
            .first()
            .map(|s| s.as_str())
            .unwrap_or("-");
        match info.state.group_done.get(waiting) {
            Some(c) if self.repo.is_ancestor(*c, tip)? => {
                info.tip = tip;
                Ok(())
            }
            _ => Err(Error::failed(format!(
                "the merge of `{waiting}` into run {id} is not committed yet"
            ))
            .with_hint(hint)),
        }
    }

    /// Commit only a new checkpoint `state` on the run's branch, titled `title`: the run's
    /// code and records as they are.
    fn publish_state(&mut self, info: &RunInfo, state: &State, title: &str) -> Result<Oid> {
        let id = &info.id;
        let tip = self.branch_tip(id)?;
        Ok(txn::publish(
            self.repo,
            id,
            tip,
            txn::Commit {
                tree: self.repo.tree_of(tip)?,
                files: vec![(store::state_path(id), to_toml(state).into_bytes())],
                parents: vec![tip],
                message: txn::message(title, &[(trailer::RUN, id.as_str())]),
                author: None,
                side_refs: Vec::new(),
            },
        )?)
    }

    /// A paused run goes on: what the person changed in the worktree (files, or commits of
    /// their own) is committed first as a `review:` commit authored by them — empty when they
    /// changed nothing.
    fn review(&mut self, info: &mut RunInfo, tip: Oid, wt: &Worktree) -> Result {
        let id = info.id.clone();
        let after = self
            .repo
            .commit_info(info.tip)?
            .trailer(trailer::STEP)
            .unwrap_or("the checkpoint")
            .to_string();
        let plan = plan_of(&info.workflow()?, info);
        let t = machine::decide(&info.state, &plan, Input::Reviewed);
        // Without changes the review is still committed (empty): the run's state leaves
        // `paused` in history, and the log shows who let it go on, and when.
        let title = if !wt.is_dirty()? && tip == info.tip {
            format!("review: no changes after `{after}`")
        } else {
            format!("review: changes after `{after}`")
        };
        let staged = stage::stage(wt, &[], &self.rules_at(&id, info.tip)?, tip)?;
        let tree = self.repo.tree_with_subtree(
            staged.tree,
            &id.dir(),
            self.repo
                .subtree(self.repo.tree_of(info.tip)?, &id.dir())?
                .expect("every run commit holds the run's folder"),
        )?;
        let commit = txn::publish(
            self.repo,
            &id,
            tip,
            txn::Commit {
                tree,
                files: vec![(store::state_path(&id), to_toml(&t.state).into_bytes())],
                parents: vec![tip],
                message: txn::message(
                    &title,
                    &[
                        (trailer::RUN, id.as_str()),
                        (trailer::REVIEW, after.as_str()),
                    ],
                ),
                author: None,
                side_refs: Vec::new(),
            },
        )?;
        wt.reset_keeping(commit, &stage::Stage::paths(&staged.left_out))?;
        info.tip = commit;
        info.state = t.state;
        self.report_left_out(&id, None, &staged.left_out);
        self.emit(&id, Kind::Review { commit, after });
        Ok(())
    }

    /// Walk back from `tip` to the newest commit git machine made for the run (skipping commits a
    /// step's program made itself and was killed before its step commit).
    pub fn last_machine_commit(&self, id: &RunId, tip: Oid) -> Result<Oid> {
        let mut cursor = tip;
        loop {
            let info = self.repo.commit_info(cursor)?;
            if info.trailer(trailer::RUN) == Some(id.as_str()) {
                return Ok(cursor);
            }
            cursor = *info.parents.first().ok_or_else(|| {
                Error::failed(format!("branch machine/{id} holds no commit of run {id}"))
            })?;
        }
    }

    /// The run's worktree, created (again) if its folder is gone.
    pub fn ensure_worktree(&self, id: &RunId) -> Result<Worktree> {
        let path = self.paths.worktree(id);
        let wt = Worktree::new(path.clone());
        let branch = id.branch();
        if wt.is_valid() && !wt.is_switching() {
            if wt.head_ref().as_deref() != Some(branch.as_str()) {
                return Err(Error::failed(format!(
                    "the worktree of run {id} ({}) is not on branch machine/{id}",
                    path.display()
                ))
                .with_hint(format!(
                    "run `git -C {} switch machine/{id}`",
                    path.display()
                )));
            }
            return Ok(wt);
        }
        for (other, checked_out) in self.repo.worktrees()? {
            if checked_out.as_deref() == Some(branch.as_str()) && other != path && other.exists() {
                return Err(Error::refused(format!(
                    "branch machine/{id} is checked out in {}",
                    other.display()
                ))
                .with_hint("switch that checkout to another branch; git machine runs steps in its own worktree"));
            }
        }
        if !wt.is_switching() {
            if path.exists() {
                std::fs::remove_dir_all(&path)?;
            }
            // Drop git's entry for the vanished folder: `worktree add --force` misses it when
            // the folder's parents are gone too, and would register the same path a second time.
            self.repo.worktree_remove(&path)?;
        }
        let tip = self.branch_tip(id)?;
        self.pool()?
            .acquire(self.repo, &path, Target::Branch(&branch, tip))?;
        wt.watch_from(tip, self.watch)?;
        Ok(wt)
    }

    /// Remove the git lock files a killed git machine (or a step's git killed with its group)
    /// left on this run's refs and in its worktree's index. Git refuses every update while one
    /// exists, so the run could never move again; holding the run lock, with any orphaned step
    /// group killed, nothing that could still own them runs.
    pub fn clear_stale_git_locks(&mut self, id: &RunId, wt: &Worktree) -> Result {
        let prefixes = [format!("{ATTEMPTS_PREFIX}{id}/"), id.attic_prefix()];
        let stale = self.repo.stale_locks(&id.branch(), &prefixes, wt);
        self.remove_stale_locks(id, stale)
    }

    /// Remove the lock on `wt`'s index a killed process left (a member's worktree, which
    /// [`Runner::clear_stale_git_locks`] does not cover); the caller holds the run's lock.
    pub fn clear_stale_index_lock(&mut self, id: &RunId, wt: &Worktree) -> Result {
        self.remove_stale_locks(id, wt.index_lock())
    }

    /// Remove those of `locks` that exist, each said.
    fn remove_stale_locks(
        &mut self,
        id: &RunId,
        locks: impl IntoIterator<Item = std::path::PathBuf>,
    ) -> Result {
        for path in locks.into_iter().filter(|p| p.exists()) {
            std::fs::remove_file(&path)?;
            self.emit(
                id,
                Kind::StaleLockRemoved {
                    path: exec::shown(&path),
                },
            );
        }
        Ok(())
    }

    /// What differs from the checkpoint (files in `wt`, commits above it), as a commit not yet
    /// referenced, with the side ref that would keep it: `refs/machine/attempts/<run>/<rec>-<label>`.
    /// Secret files are left out of it (and listed), as from a step's commit.
    pub fn attempt(
        &self,
        id: &RunId,
        wt: &Worktree,
        checkpoint: Oid,
        head: Oid,
        rec: &str,
        label: &str,
    ) -> Result<(Option<Kept>, Vec<LeftOut>)> {
        let dirty = wt.is_dirty()?;
        if !dirty && head == checkpoint {
            return Ok((None, Vec::new()));
        }
        let staged = stage::stage(wt, &[], &self.rules_at(id, checkpoint)?, checkpoint)?;
        let left_out = staged.left_out;
        // Commits the step's program made holding a left-out file are not kept: the attempt
        // sits on the checkpoint instead.
        let parent = if stage::committed_by_program(self.repo, head, &left_out)? {
            checkpoint
        } else {
            head
        };
        let snapshot = if staged.tree == self.repo.tree_of(parent)? {
            parent
        } else {
            let msg = txn::message(
                &format!("{label}: work left by {rec} of run {id}"),
                &[(trailer::ATTEMPT, id.as_str())],
            );
            self.repo.commit(staged.tree, &[parent], &msg, None)?
        };
        if snapshot == checkpoint {
            return Ok((None, left_out));
        }
        let name = RefName::new(format!("{ATTEMPTS_PREFIX}{id}/{rec}-{label}"));
        Ok((
            Some((snapshot, txn::side_ref(self.repo, name, snapshot))),
            left_out,
        ))
    }

    /// Keep what the run's worktree holds beyond its branch tip (a person's edits, a step's
    /// partial work) under `refs/machine/attempts/<run>/removed`, before the worktree goes.
    /// Returns the ref, when there was anything to keep.
    pub fn keep_before_removing(
        &self,
        id: &RunId,
        wt: &Worktree,
        tip: Oid,
    ) -> Result<Option<String>> {
        let (Some((_, update)), _) = self.attempt(id, wt, tip, tip, "rm", "removed")? else {
            return Ok(None);
        };
        let name = update.name.to_string();
        txn::move_refs(
            self.repo,
            &[update],
            "git machine: keep edits of a removed worktree",
        )?;
        Ok(Some(name))
    }

    /// Keep whatever an unfinished step left (files in the worktree, commits above the
    /// checkpoint) under `refs/machine/attempts/`, so starting clean loses nothing.
    /// Returns the secret files left out of it, which stay in the worktree.
    fn set_aside(
        &mut self,
        wt: &Worktree,
        info: &RunInfo,
        tip: Oid,
        label: &str,
    ) -> Result<Vec<LeftOut>> {
        let rec = format!("{:02}", info.state.seq + 1);
        let (kept, left_out) = self.attempt(&info.id, wt, info.tip, tip, &rec, label)?;
        self.report_left_out(&info.id, None, &left_out);
        if let Some((snapshot, update)) = kept {
            let name = update.name.to_string();
            txn::move_refs(self.repo, &[update], "git machine: keep an attempt")?;
            self.emit(
                &info.id,
                Kind::AttemptKept {
                    r#ref: name,
                    commit: snapshot,
                },
            );
        }
        Ok(left_out)
    }

    fn execute(
        &mut self,
        mut info: RunInfo,
        mut lock: RunLock,
        mut inflight: Option<SessionRef>,
        wt: Worktree,
    ) -> Result<RunEnd> {
        let id = info.id.clone();
        let wf = info.workflow().map_err(|e| {
            Error::failed(format!(
                "the workflow stored in run {id} no longer parses: {e}"
            ))
            .with_hint(format!(
                "`git machine resume {id} --reload` adopts the workflow as it is now"
            ))
        })?;
        let spec = settings::workspace(&wf.workspace, &info.record.overrides);
        let notes = self.ready(&id, None, &wt, &spec)?;
        // The first step run in the run's worktree sets it up and records how it was prepared.
        let mut fresh = Some(workspace::Fresh { spec, notes });
        let started = Instant::now();
        let end = loop {
            let Some(next) = info.state.next.clone() else {
                break RunEnd::Completed;
            };
            if self.controls.cancel.load(Ordering::SeqCst) {
                break RunEnd::Interrupted;
            }
            let plan = plan_of(&wf, &info);
            let index = plan.index(&next).ok_or_else(|| {
                Error::failed(format!(
                    "run {id} wants step `{next}`, which its workflow does not have"
                ))
                .with_hint(format!(
                    "`git machine resume {id} --reload` adopts the workflow as it is now"
                ))
            })?;
            if !plan.is_selected(&next) {
                self.emit(
                    &id,
                    Kind::StepSkipped {
                        step: next.clone(),
                        why: skip_why(),
                    },
                );
                info.state.next = plan.successor(&next);
                continue;
            }
            let end = if plan.steps[index].group.is_some() {
                self.run_group(&mut info, &wt, &plan, &next, &mut lock)?
            } else {
                let carried = (inflight.take(), fresh.take());
                self.run_step(&mut info, &wt, &plan, index, carried, &mut lock)?
            };
            if let Some(end) = end {
                break end;
            }
        };
        if end == RunEnd::Completed {
            // Nothing needs it any more: the next run starts from it.
            self.release_worktree(&id)?;
        }
        let failed_step = (end == RunEnd::Failed)
            .then(|| info.state.failed.clone())
            .flatten();
        self.emit(
            &id,
            Kind::RunFinished {
                state: end.name().to_string(),
                reason: info.state.reason.clone(),
                failed_step,
                duration_ms: started.elapsed().as_millis() as u64,
            },
        );
        Ok(end)
    }

    /// Run one step with the first of its engines that can serve, decide, publish, report.
    /// `Some(end)` when the run stops here.
    /// `fresh`: the worktree was just prepared, and this is the first step to run in it.
    fn run_step(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        plan: &Plan,
        index: usize,
        (inflight, fresh): (Option<SessionRef>, Option<workspace::Fresh>),
        lock: &mut RunLock,
    ) -> Result<Option<RunEnd>> {
        let step = &plan.steps[index];
        let id = info.id.clone();
        let how = self.how(plan, step);
        if how == How::Wait {
            return self.wait_for_person(info, wt, plan, step);
        }
        let rec = record_name(info.state.seq + 1, &step.id);
        let mut notes = Vec::new();
        let mut setup_error = None;
        if let Some(fresh) = fresh {
            notes = fresh.notes;
            match self.set_up(&id, None, (wt, &rec), &fresh.spec, &mut notes) {
                Ok(true) => {}
                Ok(false) => return Ok(Some(RunEnd::Interrupted)),
                Err(error) => setup_error = Some(error),
            }
        }
        let mut prepared = self.prepare(info, wt, step, &rec, inflight);
        if let Some(error) = setup_error {
            prepared.prestart_error = Some(error);
        }
        let continued = prepared.continued.clone();
        let pass = step
            .loop_spec
            .as_ref()
            .map(|_| info.state.loops.get(&step.id).copied().unwrap_or(0) + 1)
            .or(info
                .state
                .feedback
                .as_ref()
                .filter(|f| f.from != step.id)
                .map(|f| f.pass));
        self.emit(
            &id,
            Kind::StepStarted {
                step: step.id.clone(),
                position: index + 1,
                total: plan.steps.len(),
                engines: step.engines.clone(),
                pass: pass.filter(|p| *p > 1),
                continues_session: continued.as_ref().map(|s| s.id.clone()),
            },
        );
        let started_at = store::now_rfc3339();
        let started = Instant::now();
        let mut heard = Vec::new();
        let mut attempt = match how {
            How::Headless | How::Wait => {
                let (attempt, messages) =
                    self.attempt_heard(info, wt, step, &rec, &prepared, lock)?;
                heard = messages;
                attempt
            }
            How::Terminal => self.hand_over(info, wt, step, &rec, &prepared, lock)?,
            How::Conversation => self.converse(info, wt, step, &rec, &prepared, lock)?,
            How::TakenOver => self.taken_over(info, wt, step)?,
        };
        crate::env::crash::point("step-ran");
        let skipped =
            attempt.ending == Ending::Cancelled && self.controls.skip.swap(false, Ordering::SeqCst);
        if attempt.ending == Ending::Cancelled && !skipped {
            self.emit(
                &id,
                Kind::StepInterrupted {
                    step: step.id.clone(),
                    duration_ms: started.elapsed().as_millis() as u64,
                },
            );
            return Ok(Some(RunEnd::Interrupted));
        }
        if attempt.outcome.success {
            if let Some(why) = workspace::submodule_refusal(wt)? {
                attempt.refuse(why);
            }
        }
        let mut record = exec::record_of(
            step,
            info.state.seq + 1,
            &attempt,
            started_at,
            started.elapsed(),
        );
        record.context = prepared.context.clone();
        record.messages = heard;
        record.workspace = notes;
        record.iteration = step
            .loop_spec
            .as_ref()
            .map(|_| info.state.loops.get(&step.id).copied().unwrap_or(0) + 1);
        let input = if skipped {
            let by = self.repo.user_name();
            record.status = store::StepStatus::Skipped;
            record.summary = format!("skipped by {by}");
            record.skipped_by = Some(by.clone());
            Input::StepSkipped {
                step: step.id.clone(),
                by,
            }
        } else {
            let Some(input) = self.input_of(&id, step, wt, &rec, &attempt)? else {
                return Ok(Some(RunEnd::Interrupted));
            };
            input
        };
        let mut t = machine::decide(&info.state, plan, input);
        if self.controls.pause.swap(false, Ordering::SeqCst) {
            t = machine::with_pause(t, &self.repo.user_name());
        }
        self.finish_step(
            info,
            wt,
            plan,
            step,
            &rec,
            record,
            (&prepared.prompt, &attempt),
            t,
        )
    }

    /// What the step's run means for the run: its directive read, its gate run. `None` when
    /// Ctrl-C stopped the gate.
    fn input_of(
        &mut self,
        id: &RunId,
        step: &ResolvedStep,
        wt: &Worktree,
        rec: &str,
        attempt: &Attempt,
    ) -> Result<Option<Input>> {
        if !attempt.outcome.success {
            return Ok(Some(Input::StepFailed {
                step: step.id.clone(),
                session: attempt.session(),
                error: attempt.error(),
            }));
        }
        let directive = exec::take_directive(&wt.path)?;
        let gate = if machine::needs_gate(step, directive.as_ref()) {
            match self.gate(id, step, wt, rec) {
                Some(g) => Some(g),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(Input::StepSucceeded {
            step: step.id.clone(),
            session: attempt.session(),
            directive,
            gate,
        }))
    }

    /// The prompt (with its context report) and the session a step continues, if any.
    fn prepare(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        rec: &str,
        inflight: Option<SessionRef>,
    ) -> Prepared {
        // A session to continue: the interrupted execution's, or an earlier step's (`session`).
        let was_inflight = inflight.is_some();
        let continued = inflight.or_else(|| {
            step.session
                .as_ref()
                .and_then(|from| info.state.sessions.get(from).cloned())
        });
        let (mut prompt, context, prestart_error) =
            match context::build(&info.id, wt, step, info.state.feedback.as_ref()) {
                Ok((prompt, context)) => (prompt, context, None),
                Err(message) => (
                    step.prompt.clone().unwrap_or_default(),
                    Vec::new(),
                    Some(message),
                ),
            };
        let in_session = was_inflight
            && exec::read_inflight(&self.paths.inflight_session(&info.id, rec)).is_some();
        if in_session {
            prompt = format!(
                "You were interrupted while working on this task. Continue where you stopped; \
                 the files you already changed are still in place.\n\nThe task was:\n{prompt}"
            );
        } else {
            // A step that starts again hears again what the person told it.
            let said = mail::read(&self.paths.delivered(&info.id, rec)).unwrap_or_default();
            prompt.push_str(&messages::replayed(&said));
        }
        // A rewound run may have continued this session already on the abandoned history: a
        // fork leaves that history's session as it was.
        let fork = !was_inflight
            && continued.is_some()
            && self
                .repo
                .refs_under(&info.id.attic_prefix())
                .is_ok_and(|refs| !refs.is_empty());
        Prepared {
            fork,
            prompt,
            context,
            prestart_error,
            continued,
        }
    }

    /// Run the step's program (its ending is `Cancelled` when it was stopped or skipped).
    fn attempt_step(
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
        let mut run = prepared.run_of(step, wt, &files, info.tip, self.env, &self.controls.cancel);
        run.skip = Some(&self.controls.skip);
        run.mail = Some(&self.controls.mail);
        run.fork = prepared.fork;
        let sink = &mut *self.sink;
        let mut echo = |line: &str| sink.output(line);
        let echo: Option<&mut dyn FnMut(&str)> = if self.echo { Some(&mut echo) } else { None };
        let attempt =
            exec::attempt_step(self.rt, &run, &mut |pgid| lock.set_step_pgid(pgid), echo)?;
        for (engine, reason) in &attempt.passed_over {
            self.emit(
                id,
                Kind::EngineSkipped {
                    step: step.id.clone(),
                    engine: engine.clone(),
                    reason: reason.clone(),
                },
            );
        }
        Ok(attempt)
    }

    /// The lock of the session a step continues, held while its program runs: two processes
    /// writing one session would corrupt it.
    fn lock_session(&self, id: &RunId, continued: Option<&SessionRef>) -> Result<Option<RunLock>> {
        let Some(s) = continued else {
            return Ok(None);
        };
        let path = self.paths.session_lock(&s.engine, &s.id);
        match RunLock::acquire(&path, id.as_str()) {
            Ok(lock) => Ok(Some(lock)),
            Err(store::lock::LockError::Held { holder, .. }) => Err(Error::refused(format!(
                "the {} session {} is in use by pid {} on {} since {}",
                s.engine, s.id, holder.pid, holder.host, holder.since
            ))
            .with_hint("one process continues a session at a time; wait for it to end, or stop it with `git machine stop`")),
            Err(e) => Err(e.into()),
        }
    }

    /// Before a step's program starts: the session it continues locked and its transcript in
    /// place; the files of this execution.
    fn before_program(
        &mut self,
        info: &RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        rec: &str,
        prepared: &Prepared,
    ) -> Result<(Option<RunLock>, exec::RunFiles)> {
        let session = self.lock_session(&info.id, prepared.continued.as_ref())?;
        self.restore_transcript(&info.id, wt, step, prepared)?;
        Ok((
            session,
            exec::RunFiles::of(&self.paths, &info.id, rec, self.env),
        ))
    }

    /// Before a step continues a session: its transcript put back where the CLI looks for it,
    /// if the CLI does not have it here (another clone, another machine).
    fn restore_transcript(
        &mut self,
        id: &RunId,
        wt: &Worktree,
        step: &ResolvedStep,
        prepared: &Prepared,
    ) -> Result {
        if let Some(s) = &prepared.continued {
            if let Some(path) = transcript::restore(&s.engine, &self.env.vars, wt, id, &s.id)? {
                self.emit(
                    id,
                    Kind::TranscriptRestored {
                        step: step.id.clone(),
                        engine: s.engine.clone(),
                        session: s.id.clone(),
                        path: exec::shown(&path),
                    },
                );
            }
        }
        Ok(())
    }

    /// Run the step's loop gate, reporting it; `None` when Ctrl-C stopped it.
    fn gate(
        &mut self,
        id: &RunId,
        step: &ResolvedStep,
        wt: &Worktree,
        rec: &str,
    ) -> Option<machine::Gate> {
        let command = step
            .loop_spec
            .as_ref()
            .map(|l| l.until.join(" "))
            .unwrap_or_default();
        self.emit(
            id,
            Kind::GateStarted {
                step: step.id.clone(),
                command,
            },
        );
        let log = self.paths.gate_log(id, rec);
        let gate = exec::run_gate(
            self.rt,
            step,
            &wt.path,
            self.env,
            &log,
            &self.controls.cancel,
        )?;
        self.emit(
            id,
            Kind::Gate {
                step: step.id.clone(),
                command: gate.command.clone(),
                passed: gate.passed,
                ending: (!gate.passed).then(|| gate.ending.clone()),
            },
        );
        Some(gate)
    }

    /// Publish a step's transition (its work, or only its record when it failed) and report it.
    #[allow(clippy::too_many_arguments)]
    fn finish_step(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        plan: &Plan,
        step: &ResolvedStep,
        rec: &str,
        mut record: store::StepRecord,
        (prompt, attempt): (&str, &Attempt),
        t: Transition,
    ) -> Result<Option<RunEnd>> {
        let id = info.id.clone();
        record.directive = t.directive.clone();
        record.gate = t.gate.clone();
        record.looped = t.looped.clone();
        if let Some(error) = &t.error {
            record.status = store::StepStatus::Failed;
            record.error = Some(error.clone());
            record.summary = format!("failed ({})", exec::first_line(error));
        }
        if let Some(session) = &attempt.outcome.session {
            let dir = wt.path.join(store::record_dir(&id, rec));
            std::fs::create_dir_all(&dir)?;
            transcript::save(&attempt.engine, &self.env.vars, wt, session, &dir)?;
        }
        if t.looped.is_some() {
            crate::env::crash::point("looped");
        }
        record.repairs.extend(follow_run(wt, &id)?);
        let tip_before = info.tip;
        let current = self.tip_above(&id, tip_before, &step.id)?;
        let failed = matches!(t.publish, Publish::Failure | Publish::Skipped);
        let label = if t.publish == Publish::Skipped {
            "skipped"
        } else {
            "failed"
        };
        let mut side_refs = Vec::new();
        if failed {
            // Keep what the failed attempt did; the failure record sits on the checkpoint.
            let (kept, left_out) = self.attempt(&id, wt, tip_before, current, rec, label)?;
            if let Some((snapshot, update)) = kept {
                record.attempt_commit = Some(snapshot);
                side_refs.push(update);
            }
            record.left_out = left_out;
        }
        let mut files =
            self.record_files(wt, &id, rec, &mut record, (prompt, attempt), &t.state)?;
        let (tree, parent, repaired) = if failed {
            (self.repo.tree_of(tip_before)?, tip_before, false)
        } else {
            let secrets = self.rules_at(&id, tip_before)?;
            let staged = stage::stage_step(
                wt,
                &id,
                rec,
                &mut record,
                &mut files,
                (&secrets, tip_before),
            )?;
            let (tree, repaired) = self.keep_run_folder(&id, tip_before, staged.tree, &files)?;
            // The program's own commits holding a left-out file are not kept (see stage.rs).
            let folded = stage::committed_by_program(self.repo, current, &record.left_out)?;
            (tree, if folded { tip_before } else { current }, repaired)
        };
        let keep = stage::Stage::paths(&record.left_out);
        let commit = txn::publish(
            self.repo,
            &id,
            current,
            txn::Commit {
                tree,
                files: if failed { files } else { Vec::new() },
                parents: vec![parent],
                message: step_message(&id, rec, &record, failed.then_some(label)),
                author: Some(txn::author(Some(&record.engine))),
                side_refs,
            },
        )?;
        let _ = std::fs::remove_file(self.paths.inflight_session(&id, rec));
        let _ = std::fs::remove_file(self.paths.delivered(&id, rec));
        if failed || repaired || parent != current {
            // The worktree follows the commit: clean after a failure, git machine's files
            // as recorded after a step that changed them, on the new commit after the
            // program's own commits were folded into it; secret files left out stay.
            wt.reset_keeping(commit, &keep)?;
        }
        self.report_left_out(&id, Some(&step.id), &record.left_out);
        if repaired {
            self.emit(
                &id,
                Kind::RecordRepaired {
                    step: step.id.clone(),
                },
            );
        }
        info.tip = commit;
        info.state = t.state.clone();
        self.report_step(&id, wt, plan, step, &record, (parent, commit), attempt, &t)
    }

    /// The branch tip, which must still contain `tip` (the step's own commits may sit above it).
    fn tip_above(&self, id: &RunId, tip: Oid, step: &StepId) -> Result<Oid> {
        let current = self.branch_tip(id)?;
        if current != tip && !self.repo.is_ancestor(tip, current)? {
            return Err(Error::refused(format!(
                "branch machine/{id} was moved off the run while step `{step}` ran"
            ))
            .with_hint(format!(
                "see `git reflog machine/{id}`; `git machine resume {id}` starts the step again"
            )));
        }
        Ok(current)
    }

    /// Write the step's record (its log moved in, its gate's log beside it) and the new
    /// checkpoint into the worktree, and return them as (path in the tree, bytes): staged with
    /// the step's work, or committed alone on the checkpoint when the step failed.
    fn record_files(
        &self,
        wt: &Worktree,
        id: &RunId,
        rec: &str,
        record: &mut store::StepRecord,
        (prompt, attempt): (&str, &Attempt),
        state: &State,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let dir = wt.path.join(store::record_dir(id, rec));
        let message = attempt.outcome.final_message.as_deref();
        exec::write_record(&dir, record, prompt, message, &self.paths.log(id, rec))?;
        let gate_log = self.paths.gate_log(id, rec);
        if gate_log.exists() {
            std::fs::rename(gate_log, dir.join(store::layout::GATE_LOG))?;
        }
        let mut files = exec::record_files(&dir, &store::record_dir(id, rec))?;
        let state = to_toml(state).into_bytes();
        std::fs::write(wt.path.join(store::state_path(id)), &state)?;
        files.push((store::state_path(id), state));
        Ok(files)
    }

    /// Tell what a published step did, then what the decision found.
    #[allow(clippy::too_many_arguments)]
    fn report_step(
        &mut self,
        id: &RunId,
        wt: &Worktree,
        plan: &Plan,
        step: &ResolvedStep,
        record: &store::StepRecord,
        (parent, commit): (Oid, Oid),
        attempt: &Attempt,
        t: &Transition,
    ) -> Result<Option<RunEnd>> {
        if let Some(d) = &t.directive {
            self.emit(
                id,
                Kind::Directive {
                    step: step.id.clone(),
                    directive: d.clone(),
                },
            );
        }
        if record.status == store::StepStatus::Skipped {
            // The decision's notice says it was skipped, and by whom.
        } else if record.status == store::StepStatus::Succeeded {
            let diffstat = self.diffstat(parent, commit)?;
            self.emit(
                id,
                Kind::StepFinished {
                    step: step.id.clone(),
                    commit,
                    engine: record.engine.clone(),
                    model: record.model.clone(),
                    session: record.session.clone(),
                    duration_ms: record.duration_ms,
                    diffstat,
                    usage: record.usage.clone(),
                    summary: record.summary.clone(),
                },
            );
        } else {
            let log = format!(
                "{}/{}/{}",
                wt.path.display(),
                store::record_dir(id, &record_name(record.seq, &record.step)),
                record.log_file.as_deref().unwrap_or(store::layout::OUTPUT)
            );
            let tail = exec::tail_lines(attempt.outcome.final_message.as_deref(), 10);
            self.emit(
                id,
                Kind::StepFailed {
                    step: step.id.clone(),
                    reason: record.error.clone().unwrap_or_default(),
                    log,
                    commit: Some(commit),
                    duration_ms: record.duration_ms,
                    tail,
                },
            );
        }
        self.report_notices(id, wt, &t.notices);
        if RunEnd::of(t.state.status).is_none() {
            for skipped in plan.skipped_after(&step.id) {
                self.emit(
                    id,
                    Kind::StepSkipped {
                        step: skipped,
                        why: skip_why(),
                    },
                );
            }
        }
        Ok(RunEnd::of(t.state.status))
    }

    fn report_notices(&mut self, id: &RunId, wt: &Worktree, notices: &[Notice]) {
        for notice in notices {
            let kind = match notice.clone() {
                Notice::Loop {
                    from,
                    to,
                    pass,
                    max,
                    why,
                } => Kind::Loop {
                    step: from,
                    to,
                    pass,
                    max,
                    why,
                },
                Notice::LoopExhausted { from, max, went_on } => Kind::LoopExhausted {
                    step: from,
                    max,
                    went_on,
                },
                Notice::Paused { reason } => Kind::Paused {
                    reason,
                    worktree: exec::shown(&wt.path),
                },
                Notice::Stopped { reason } => Kind::Stopped { reason },
                Notice::Waiting { step, reason } => Kind::Waiting { step, reason },
                Notice::Skipped { step, by } => Kind::StepSkipped {
                    step,
                    why: format!("skipped by {by}"),
                },
                // The step's own failure event says it; the run's end repeats the reason.
                Notice::Failed { .. } => continue,
            };
            self.emit(id, kind);
        }
    }

    /// Files, lines added and removed between two commits, git machine's own files left out.
    fn diffstat(&self, old: Oid, new: Oid) -> Result<Diffstat> {
        let stat = self.repo.diffstat(old, new, Some(store::layout::OWN_DIR))?;
        Ok(Diffstat {
            files: stat.len(),
            insertions: stat.iter().map(|(_, a, _)| a).sum(),
            deletions: stat.iter().map(|(_, _, d)| d).sum(),
            paths: stat
                .into_iter()
                .take(events::DIFFSTAT_PATHS)
                .map(|(path, insertions, deletions)| events::PathStat {
                    path,
                    insertions,
                    deletions,
                })
                .collect(),
        })
    }

    fn branch_tip(&self, id: &RunId) -> Result<Oid> {
        self.repo.ref_target(&id.branch()).ok_or_else(|| {
            Error::refused(format!(
                "branch machine/{id} was deleted while the run was executing"
            ))
        })
    }

    /// The run's folder belongs to git machine: whatever a step did to it, the commit holds the
    /// checkpoint's folder plus `files` (this step's record and the new `state.toml`). Returns
    /// the tree to commit and whether the worktree's copy of the folder must be put back (the
    /// step changed git machine's files).
    fn keep_run_folder(
        &mut self,
        id: &RunId,
        tip: Oid,
        staged: Oid,
        files: &[(String, Vec<u8>)],
    ) -> Result<(Oid, bool)> {
        let dir = id.dir();
        let tip_tree = self.repo.tree_of(tip)?;
        if self
            .repo
            .folder_is_with_files(staged, tip_tree, &dir, files)?
        {
            return Ok((staged, false));
        }
        let expected_root = self.repo.tree_with_files(tip_tree, files)?;
        let expected = self
            .repo
            .subtree(expected_root, &dir)?
            .expect("the run's folder has just been written into the tree");
        if self.repo.subtree(staged, &dir)? == Some(expected) {
            return Ok((staged, false));
        }
        Ok((self.repo.tree_with_subtree(staged, &dir, expected)?, true))
    }
}

/// Point the worktree back at the run's branch if the step switched it elsewhere (`git
/// checkout -b x`, `--detach`): the step's work is in the index and files and goes on the run's
/// branch all the same. What was done, for the record.
fn follow_run(wt: &Worktree, id: &RunId) -> Result<Option<String>> {
    let branch = id.branch();
    let head = wt.head_ref();
    if head.as_deref() == Some(branch.as_str()) {
        return Ok(None);
    }
    wt.attach(&branch)?;
    let other = head.unwrap_or_else(|| "a detached HEAD".to_string());
    Ok(Some(format!(
        "the step switched the worktree to {other}; it was switched back to {branch} \
         (the step's work is committed on the run's branch; {other} is left as it is)"
    )))
}

/// The message of a step's commit: `<step>: <summary>` and its trailers.
fn step_message(id: &RunId, rec: &str, record: &store::StepRecord, status: Option<&str>) -> String {
    let mut trailers = vec![
        (trailer::RUN, id.as_str()),
        (trailer::STEP, record.step.as_str()),
        (trailer::RECORD, rec),
        (trailer::ENGINE, record.engine.as_str()),
    ];
    if let Some(s) = &record.session {
        trailers.push((trailer::SESSION, s.as_str()));
    }
    if let Some(status) = status {
        trailers.push((trailer::STATUS, status));
    }
    txn::message(&format!("{}: {}", record.step, record.summary), &trailers)
}

/// What a step is sent, and what it continues.
/// How a step is executed, from its mode and whether the person is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Headless: the engine's program alone.
    Headless,
    /// The terminal handed to the step's program.
    Terminal,
    /// The controller's chat.
    Conversation,
    /// Done already: the controller's conversation was this step.
    TakenOver,
    /// The step needs the person, who is not here: the run pauses before it.
    Wait,
}

#[derive(Clone)]
struct Prepared {
    prompt: String,
    context: Vec<String>,
    /// A context that could not be built: the step fails before any program starts.
    prestart_error: Option<String>,
    continued: Option<SessionRef>,
    /// Continue `continued` as a fork: a rewound run re-using an earlier step's session.
    fork: bool,
}

impl Prepared {
    /// The run of `step`'s program as prepared: its prompt, the session it continues, a context
    /// that could not be built.
    fn run_of<'r>(
        &'r self,
        step: &'r ResolvedStep,
        wt: &'r Worktree,
        files: &'r exec::RunFiles,
        base: Oid,
        env: &'r Env,
        cancel: &'r std::sync::atomic::AtomicBool,
    ) -> StepRun<'r> {
        let mut run = StepRun::new(step, &self.prompt, &wt.path, files, base, env, cancel);
        run.continued = self.continued.as_ref();
        run.prestart_error = self.prestart_error.clone();
        run
    }
}

fn skip_why() -> String {
    "its conditions or tracks were not chosen".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken() -> Taken {
        Taken::from(StoreError::Git(GitError::RefMoved {
            name: RefName::new("refs/heads/machine/x".to_string()),
            expected: "nothing".to_string(),
            found: "0123456789".to_string(),
        }))
    }

    /// Regression: four runs started at once failed one in a few hundred times with "ref
    /// refs/heads/machine/<id> moved: expected nothing", two of them having drawn the same id
    /// in the same millisecond. The loser takes another id.
    #[test]
    fn a_run_whose_id_was_just_taken_takes_another() {
        let mut calls = 0;
        let got = first_free(|| {
            calls += 1;
            if calls < 3 {
                Err(taken())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.expect("created"), 3);
        let mut calls = 0;
        let err = first_free::<()>(|| {
            calls += 1;
            Err(taken())
        })
        .expect_err("gives up");
        assert_eq!(calls, 9, "eight more tries, then the error");
        assert!(err.to_string().contains("moved"), "{err}");
        let mut calls = 0;
        let err = first_free::<()>(|| {
            calls += 1;
            Err(Taken::Other(Error::usage("bad workflow")))
        })
        .expect_err("other errors at once");
        assert_eq!(calls, 1);
        assert!(err.to_string().contains("bad workflow"));
    }
}

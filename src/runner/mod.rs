//! Executing a run: start it, run its steps in its worktree, commit each one, stop cleanly.
//!
//! The order of work for one step is what makes a crash at any moment safe:
//! 1. the step's program runs in the worktree (nothing in git changes);
//! 2. its record and the next checkpoint are written into the worktree;
//! 3. everything is staged and one commit is made on top of the branch tip;
//! 4. the branch is moved to it by compare-and-swap.
//!
//! Only step 4 publishes anything, and it is atomic: killed before it, a resume finds the old
//! checkpoint and runs the step again (from a clean worktree, the debris kept under
//! `refs/machine/attempts/`); killed after it, the new checkpoint says the next step. A step is
//! never committed twice, and none is lost.

mod context;
mod parallel;
mod transcript;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use crate::cli::error::{CliError, CliResult, EXIT_FAILED, EXIT_INTERRUPTED};
use crate::cli::Env;
use crate::engine::{self, process, Ending, StepInput};
use crate::git::{Oid, RefName, RefUpdate, Repo, Worktree};
use crate::store::lock::RunLock;
use crate::store::{
    self, record_name, to_toml, Paths, RunId, RunInfo, RunRecord, SessionRef, State, Status,
    StepRecord, StepStatus, ATTEMPTS_PREFIX,
};
use crate::ui::{elapsed, Ui};
use crate::workflow::{ResolvedStep, Workflow};

/// What a caller needs to start a run.
pub struct StartRequest<'a> {
    pub workflow: &'a Workflow,
    pub vars: BTreeMap<String, String>,
    pub base: Oid,
    pub overrides: BTreeMap<String, String>,
    pub track: Option<String>,
    pub conditions: Vec<String>,
}

/// Everything the runner works with.
pub struct Runner<'a> {
    pub repo: &'a Repo,
    pub paths: Paths,
    pub ui: &'a mut Ui,
    pub env: &'a Env,
    pub cancel: &'a AtomicBool,
    /// Print the steps' output as it arrives.
    pub echo: bool,
    /// How many members of a parallel group run at once.
    pub jobs: usize,
}

/// How a run's execution ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    Completed,
    Failed,
    Paused,
    Conflict,
    Interrupted,
}

impl RunEnd {
    pub fn into_result(self, id: &RunId) -> CliResult {
        match self {
            RunEnd::Completed => Ok(()),
            RunEnd::Conflict => Err(CliError::new(EXIT_FAILED, format!("run {id} stopped on a merge conflict"))
                .with_hint(format!("`git machine status {id}` lists the paths; resolve and commit them in the run's worktree, then `git machine resume {id}`"))),
            RunEnd::Paused => Err(CliError::new(EXIT_FAILED, format!("run {id} is paused for review"))
                .with_hint(format!("look at and edit its worktree, then `git machine resume {id}` commits your changes as a review and goes on"))),
            RunEnd::Failed => Err(CliError::new(
                EXIT_FAILED,
                format!("run {id} stopped on a failed step"),
            )
            .with_hint(format!(
                "fix the cause, then `git machine resume {id}` retries the step"
            ))),
            RunEnd::Interrupted => {
                Err(
                    CliError::new(EXIT_INTERRUPTED, format!("run {id} interrupted")).with_hint(
                        format!("`git machine resume {id}` continues from the last step commit"),
                    ),
                )
            }
        }
    }
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

fn commit_message(summary: &str, trailers: &[(&str, &str)]) -> String {
    let mut m = format!("{summary}\n\n");
    for (k, v) in trailers {
        m.push_str(&format!("{k}: {v}\n"));
    }
    m
}

impl Runner<'_> {
    /// Create the run (branch, start commit, worktree) and execute it.
    pub fn start(&mut self, req: StartRequest<'_>) -> CliResult<(RunId, RunEnd)> {
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
            vars: req.vars,
            overrides: req.overrides,
            track: req.track,
            conditions: req.conditions,
        };
        let first = req
            .workflow
            .steps
            .iter()
            .find(|s| selected(&s.when, &s.when_any, &s.tracks, &record))
            .ok_or_else(|| {
                CliError::usage(
                    "no step of this workflow applies to the chosen track and conditions",
                )
            })?
            .id
            .clone();
        let state = State {
            version: store::FORMAT_VERSION,
            status: Status::Running,
            next: Some(first),
            seq: 0,
            reason: None,
            loops: BTreeMap::new(),
            sessions: BTreeMap::new(),
            group_base: None,
            group_done: BTreeMap::new(),
            pending_merge: Vec::new(),
            conflict_paths: Vec::new(),
            feedback: None,
        };
        let dir = id.dir();
        let mut files = vec![
            (format!("{dir}/run.toml"), to_toml(&record).into_bytes()),
            (format!("{dir}/state.toml"), to_toml(&state).into_bytes()),
            (
                format!("{dir}/workflow.toml"),
                req.workflow.source.clone().into_bytes(),
            ),
        ];
        if !req.workflow.prompt_files.is_empty() {
            files.push((
                format!("{dir}/{}", store::PROMPT_FILES),
                to_toml(&req.workflow.prompt_files).into_bytes(),
            ));
        }
        let tree = self
            .repo
            .tree_with_files(self.repo.tree_of(req.base)?, &files)?;
        let message = commit_message(
            &format!("start: {} ({})", record.workflow, id),
            &[("Machine-Run", id.as_str())],
        );
        let start = self.repo.commit(tree, &[req.base], &message, None)?;
        self.repo.update_refs(
            &[RefUpdate {
                name: id.branch(),
                old: None,
                new: Some(start),
            }],
            &format!("git machine: start run {id}"),
        )?;
        // Locked once the run exists: a kill before this leaves no lock of a run that never was.
        let lock = RunLock::acquire(&self.paths.lock(&id), id.as_str())?;
        let wt_path = self.paths.worktree(&id);
        self.repo.worktree_add(&wt_path, &id.branch())?;
        self.ui.note(&format!(
            "{} {} {}  {}",
            self.ui.bold("run"),
            self.ui.cyan(id.as_str()),
            record.workflow,
            self.ui.dim(&format!(
                "branch machine/{id}, worktree {}",
                wt_path.display()
            ))
        ));
        let info = RunInfo {
            id: id.clone(),
            tip: start,
            record,
            state,
            workflow_source: req.workflow.source.clone(),
            prompt_files: req.workflow.prompt_files.clone(),
        };
        let end = self.execute(info, lock, None)?;
        Ok((id, end))
    }

    /// Continue a run from its last checkpoint. An agent step that was interrupted mid-flight
    /// continues in its own session with its partial work kept (unless `restart_step`); any
    /// other unfinished step starts again from a clean checkpoint, its debris kept as an attempt.
    pub fn resume(&mut self, id: &RunId, restart_step: bool) -> CliResult<RunEnd> {
        let lock = RunLock::acquire(&self.paths.lock(id), id.as_str())?;
        let tip = self
            .repo
            .ref_target(&id.branch())
            .ok_or_else(|| CliError::usage(format!("run {id} has no branch any more")))?;
        let checkpoint = self.last_machine_commit(id, tip)?;
        let info = store::read_run_at(self.repo, id, checkpoint)?;
        if info.state.status == Status::Completed {
            self.ui.note(&format!("run {id} is already complete"));
            return Ok(RunEnd::Completed);
        }
        let wt = self.ensure_worktree(id)?;
        self.clear_stale_git_locks(id, &wt)?;
        if info.state.status == Status::Paused {
            return self.resume_paused(info, tip, &wt, lock);
        }
        if info.state.status == Status::Conflict {
            return self.resume_conflict(info, tip, &wt, lock);
        }
        let inflight = match (&info.state.next, info.state.status) {
            (Some(next), Status::Running) if !restart_step => {
                let rec = record_name(info.state.seq + 1, next);
                read_inflight(&self.paths.inflight_session(id, &rec))
                    .filter(|s| engine::by_name(&s.engine).is_some_and(|e| e.can_resume()))
            }
            _ => None,
        };
        // Whatever the unfinished step left is kept under refs/machine/attempts/ either way.
        self.set_aside(id, &wt, &info, tip, "interrupted")?;
        if inflight.is_none() {
            if tip != checkpoint {
                self.repo.update_refs(
                    &[RefUpdate {
                        name: id.branch(),
                        old: Some(tip),
                        new: Some(checkpoint),
                    }],
                    &format!("git machine: resume run {id} from its checkpoint"),
                )?;
            }
            wt.reset_hard(checkpoint)?;
        }
        self.ui.note(&format!(
            "{} {} {}  {}",
            self.ui.bold("resume"),
            self.ui.cyan(id.as_str()),
            info.record.workflow,
            self.ui.dim(&match &inflight {
                Some(s) => format!(
                    "step {} continues in {} session {}",
                    info.state.next.as_deref().unwrap_or("-"),
                    s.engine,
                    s.id
                ),
                None => format!("at step {}", info.state.next.as_deref().unwrap_or("-")),
            })
        ));
        self.execute(info, lock, inflight)
    }

    /// Continue after a merge conflict, once the person has resolved and committed it.
    fn resume_conflict(
        &mut self,
        mut info: RunInfo,
        tip: Oid,
        wt: &Worktree,
        lock: RunLock,
    ) -> CliResult<RunEnd> {
        let id = info.id.clone();
        let unmerged = wt.git(&["diff", "--name-only", "--diff-filter=U"])?;
        let hint = format!(
            "in {}: edit the files, `git add` them, `git commit`, then `git machine resume {id}`",
            wt.path.display()
        );
        if !unmerged.trim().is_empty() {
            return Err(CliError::failed(format!(
                "run {id} still has unresolved conflicts: {}",
                unmerged.split_whitespace().collect::<Vec<_>>().join(", ")
            ))
            .with_hint(hint));
        }
        if wt
            .git(&["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .is_ok()
        {
            return Err(CliError::failed(format!(
                "the merge in run {id}'s worktree is resolved but not committed"
            ))
            .with_hint(hint));
        }
        let waiting = info
            .state
            .pending_merge
            .first()
            .cloned()
            .unwrap_or_default();
        let commit = info
            .state
            .group_done
            .get(&waiting)
            .and_then(|c| Oid::parse(c));
        match commit {
            Some(c) if self.repo.is_ancestor(c, tip)? => {}
            _ => {
                return Err(CliError::failed(format!(
                    "the merge of `{waiting}` into run {id} is not committed yet"
                ))
                .with_hint(hint))
            }
        }
        info.tip = tip;
        self.ui.note(&format!(
            "{} {} {}  {}",
            self.ui.bold("resume"),
            self.ui.cyan(id.as_str()),
            info.record.workflow,
            self.ui.dim("after the resolved merge")
        ));
        self.execute(info, lock, None)
    }

    /// Continue a paused run: what the person changed in the worktree (files, or commits of
    /// their own) is committed first as a `review:` commit authored by them.
    fn resume_paused(
        &mut self,
        mut info: RunInfo,
        tip: Oid,
        wt: &Worktree,
        lock: RunLock,
    ) -> CliResult<RunEnd> {
        let id = info.id.clone();
        let edited = wt.is_dirty()?;
        let after = self
            .repo
            .commit_info(info.tip)?
            .trailer("Machine-Step")
            .unwrap_or("the checkpoint")
            .to_string();
        info.state.status = Status::Running;
        info.state.reason = None;
        if edited || tip != info.tip {
            let run_dir = wt.path.join(id.dir());
            std::fs::write(run_dir.join("state.toml"), to_toml(&info.state))?;
            let tree = wt.stage_all(&[id.dir().as_str()])?;
            let message = commit_message(
                &format!("review: changes after `{after}`"),
                &[
                    ("Machine-Run", id.as_str()),
                    ("Machine-Review", after.as_str()),
                ],
            );
            let commit = self.repo.commit(tree, &[tip], &message, None)?;
            self.repo.update_refs(
                &[RefUpdate {
                    name: id.branch(),
                    old: Some(tip),
                    new: Some(commit),
                }],
                &format!("git machine: review of run {id}"),
            )?;
            info.tip = commit;
            self.ui.note(&format!(
                "{} your changes as {}",
                self.ui.bold("review"),
                commit.short()
            ));
        }
        self.ui.note(&format!(
            "{} {} {}  {}",
            self.ui.bold("resume"),
            self.ui.cyan(id.as_str()),
            info.record.workflow,
            self.ui.dim(&format!(
                "at step {}",
                info.state.next.as_deref().unwrap_or("-")
            ))
        ));
        self.execute(info, lock, None)
    }

    /// Walk back from `tip` to the newest commit git machine made for the run (skipping commits a
    /// step's program made itself and was killed before its step commit).
    pub fn last_machine_commit(&self, id: &RunId, tip: Oid) -> CliResult<Oid> {
        let mut cursor = tip;
        loop {
            let info = self.repo.commit_info(cursor)?;
            if info.trailer("Machine-Run") == Some(id.as_str()) {
                return Ok(cursor);
            }
            cursor = *info.parents.first().ok_or_else(|| {
                CliError::failed(format!("branch machine/{id} holds no commit of run {id}"))
            })?;
        }
    }

    /// The run's worktree, created (again) if its folder is gone.
    pub fn ensure_worktree(&self, id: &RunId) -> CliResult<Worktree> {
        let path = self.paths.worktree(id);
        let wt = Worktree::new(path.clone());
        let branch = id.branch();
        if wt.is_valid() {
            if wt.head_ref().as_deref() != Some(branch.as_str()) {
                return Err(CliError::failed(format!(
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
                return Err(CliError::refused(format!(
                    "branch machine/{id} is checked out in {}",
                    other.display()
                ))
                .with_hint("switch that checkout to another branch; git machine runs steps in its own worktree"));
            }
        }
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        // Drop git's entry for the vanished folder: `worktree add --force` misses it when the
        // folder's parents are gone too, and would register the same path a second time.
        self.repo.worktree_remove(&path)?;
        self.repo.worktree_add(&path, &branch)?;
        Ok(wt)
    }

    /// Remove the git lock files a killed git machine (or a step's git killed with its group)
    /// left on this run's refs and in its worktree's index. Git refuses every update while one
    /// exists, so the run could never move again; holding the run lock, with any orphaned step
    /// group killed, nothing that could still own them runs.
    pub fn clear_stale_git_locks(&mut self, id: &RunId, wt: &Worktree) -> CliResult {
        let prefixes = [format!("{ATTEMPTS_PREFIX}{id}/"), id.attic_prefix()];
        let stale = self.repo.stale_locks(&id.branch(), &prefixes, wt);
        for path in stale.into_iter().filter(|p| p.exists()) {
            std::fs::remove_file(&path)?;
            self.ui.note(&self.ui.dim(&format!(
                "removed {}, left by a process that was killed",
                path.display()
            )));
        }
        Ok(())
    }

    /// Keep whatever differs from the checkpoint (files in the worktree, commits above it) as a
    /// commit under `refs/machine/attempts/<run>/<n>-<label>`, so starting clean loses nothing.
    pub fn set_aside(
        &mut self,
        id: &RunId,
        wt: &Worktree,
        info: &RunInfo,
        tip: Oid,
        label: &str,
    ) -> CliResult<Option<Oid>> {
        let dirty = wt.is_dirty()?;
        if !dirty && tip == info.tip {
            return Ok(None);
        }
        let snapshot = if dirty {
            let tree = wt.stage_all(&[])?;
            let msg = commit_message(
                &format!("{label}: work left in the worktree of run {id}"),
                &[("Machine-Attempt", id.as_str())],
            );
            self.repo.commit(tree, &[tip], &msg, None)?
        } else {
            tip
        };
        let name = RefName::new(format!(
            "{ATTEMPTS_PREFIX}{id}/{:02}-{label}",
            info.state.seq + 1
        ));
        let old = self.repo.ref_target(&name);
        self.repo.update_refs(
            &[RefUpdate {
                name: name.clone(),
                old,
                new: Some(snapshot),
            }],
            "git machine: keep an attempt",
        )?;
        self.ui.note(&self.ui.dim(&format!(
            "kept earlier work of the unfinished step as {name} ({})",
            snapshot.short()
        )));
        Ok(Some(snapshot))
    }

    fn execute(
        &mut self,
        mut info: RunInfo,
        mut lock: RunLock,
        mut inflight: Option<SessionRef>,
    ) -> CliResult<RunEnd> {
        let id = info.id.clone();
        let wf = info.workflow().map_err(|e| {
            CliError::failed(format!(
                "the workflow stored in run {id} no longer parses: {e}"
            ))
        })?;
        let mut values = info.record.vars.clone();
        values.extend(builtin_values(&id, &info.record));
        let mut steps = wf.resolve(&values);
        apply_overrides(&mut steps, &info.record.overrides);
        // Steps that resolve a group's merge conflicts run only for that.
        let resolvers: Vec<String> = wf
            .groups
            .iter()
            .filter_map(|g| g.on_conflict.clone())
            .collect();
        let wt = Worktree::new(self.paths.worktree(&id));
        let run_started = Instant::now();
        loop {
            let Some(next) = info.state.next.clone() else {
                self.ui.note(&format!(
                    "{} run {} completed in {}",
                    self.ui.green("done"),
                    id,
                    elapsed(run_started.elapsed())
                ));
                return Ok(RunEnd::Completed);
            };
            if self.cancel.load(Ordering::SeqCst) {
                return Ok(RunEnd::Interrupted);
            }
            let index = steps.iter().position(|s| s.id == next).ok_or_else(|| {
                CliError::failed(format!(
                    "run {id} wants step `{next}`, which its workflow does not have"
                ))
            })?;
            let step = &steps[index];
            let following = steps[index + 1..]
                .iter()
                .find(|s| {
                    selected(&s.when, &s.when_any, &s.tracks, &info.record)
                        && !resolvers.contains(&s.id)
                })
                .map(|s| s.id.clone());
            if !selected(&step.when, &step.when_any, &step.tracks, &info.record) {
                self.ui.note(&format!(
                    "{} {} {}",
                    self.ui.dim(&format!("[{}/{}]", index + 1, steps.len())),
                    step.id,
                    self.ui
                        .dim("skipped (its conditions or tracks were not chosen)")
                ));
                info.state.next = following;
                continue;
            }
            if let Some(group) = step.group.clone() {
                let members: Vec<&ResolvedStep> = steps[index..]
                    .iter()
                    .take_while(|s| s.group.as_deref() == Some(group.as_str()))
                    .filter(|s| selected(&s.when, &s.when_any, &s.tracks, &info.record))
                    .collect();
                let after = index
                    + steps[index..]
                        .iter()
                        .take_while(|s| s.group.as_deref() == Some(group.as_str()))
                        .count();
                let following = steps[after..]
                    .iter()
                    .find(|s| {
                        selected(&s.when, &s.when_any, &s.tracks, &info.record)
                            && !resolvers.contains(&s.id)
                    })
                    .map(|s| s.id.clone());
                let resolver = wf
                    .groups
                    .iter()
                    .find(|g| g.id == group)
                    .and_then(|g| g.on_conflict.as_ref())
                    .and_then(|r| steps.iter().find(|s| &s.id == r));
                let ctx = parallel::GroupCtx {
                    name: group,
                    first: step.id.clone(),
                    following,
                    resolver,
                };
                match self.run_group(&mut info, &wt, &members, ctx, &mut lock)? {
                    StepEnd::Committed => continue,
                    StepEnd::Failed => return Ok(RunEnd::Failed),
                    StepEnd::Paused => return Ok(RunEnd::Paused),
                    StepEnd::Conflict => return Ok(RunEnd::Conflict),
                    StepEnd::Interrupted => return Ok(RunEnd::Interrupted),
                }
            }
            let position = (index + 1, steps.len());
            let resume = inflight.take();
            match self.run_step(&mut info, &wt, step, following, position, resume, &mut lock)? {
                StepEnd::Committed => {}
                StepEnd::Failed => return Ok(RunEnd::Failed),
                StepEnd::Paused => return Ok(RunEnd::Paused),
                StepEnd::Conflict => return Ok(RunEnd::Conflict),
                StepEnd::Interrupted => return Ok(RunEnd::Interrupted),
            }
        }
    }

    /// Run one step with the first of its engines that can serve, and commit the result.
    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        following: Option<String>,
        (number, total): (usize, usize),
        inflight: Option<SessionRef>,
        lock: &mut RunLock,
    ) -> CliResult<StepEnd> {
        let id = info.id.clone();
        let seq = info.state.seq + 1;
        let rec_name = record_name(seq, &step.id);
        let log_path = self.paths.log(&id, &rec_name);
        let session_path = self.paths.inflight_session(&id, &rec_name);
        let tip_before = info.tip;
        let path_var = self
            .env
            .vars
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| std::ffi::OsString::from(v));
        // A session to continue: the interrupted execution's, or an earlier step's (`session`).
        let continued: Option<SessionRef> = inflight.or_else(|| {
            step.session
                .as_ref()
                .and_then(|from| info.state.sessions.get(from).cloned())
        });
        let mut prestart_error = None;
        let feedback = info.state.feedback.as_ref();
        let (mut prompt, context_report) = match context::build(&id, wt, step, feedback) {
            Ok(built) => built,
            Err(message) => {
                prestart_error = Some(message);
                (step.prompt.clone().unwrap_or_default(), Vec::new())
            }
        };
        if continued.is_some() && read_inflight(&session_path).is_some() {
            prompt = format!(
                "You were interrupted while working on this task. Continue where you stopped; \
                 the files you already changed are still in place.\n\nThe task was:\n{prompt}"
            );
        }
        self.ui.note(&format!(
            "{} {} {}",
            self.ui.dim(&format!("[{number}/{total}]")),
            self.ui.bold(&step.id),
            self.ui.dim(&format!("({}) …", step.engines.join(" → ")))
        ));
        let started_at = store::now_rfc3339();
        let started = Instant::now();
        let run = StepRun {
            step,
            prompt: &prompt,
            workdir: &wt.path,
            log: &log_path,
            session_path: &session_path,
            continued: continued.as_ref(),
            prestart_error,
            base: tip_before,
            env: self.env,
            cancel: self.cancel,
            echo: self.echo,
            path_var: path_var.as_deref(),
        };
        if let Some(s) = run.continued {
            if let Some(path) = transcript::restore(&s.engine, &self.env.vars, wt, &id, &s.id)? {
                self.ui.note(&self.ui.dim(&format!(
                    "  restored the {} session {} from the run's records to {}",
                    s.engine,
                    s.id,
                    path.display()
                )));
            }
        }
        let attempt = attempt_step(&run, &mut |pgid| lock.set_step_pgid(pgid))?;
        for note in &attempt.notes {
            self.ui
                .note(&format!("  {} {note}", self.ui.yellow("skipped")));
        }
        if attempt.ending == Ending::Cancelled {
            self.ui.note(&format!(
                "{} {} {}",
                self.ui.yellow("interrupted"),
                step.id,
                self.ui.dim(&format!(
                    "after {}; `git machine resume {id}` continues it",
                    elapsed(started.elapsed())
                ))
            ));
            return Ok(StepEnd::Interrupted);
        }
        let duration = started.elapsed();
        let Attempt {
            engine: engine_name,
            inv,
            ending,
            outcome,
            resumed,
            skipped,
            ..
        } = attempt;
        let mut record = StepRecord {
            version: store::FORMAT_VERSION,
            step: step.id.clone(),
            seq,
            engine: engine_name.clone(),
            status: if outcome.success {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            },
            summary: String::new(),
            started: started_at,
            ended: store::now_rfc3339(),
            duration_ms: duration.as_millis() as u64,
            exit_code: match ending {
                Ending::Exited(c) => Some(c),
                _ => None,
            },
            signal: match ending {
                Ending::Signaled(s) => Some(s),
                _ => None,
            },
            error: outcome.error.clone(),
            command: std::iter::once(inv.program.clone())
                .filter(|p| !p.is_empty())
                .chain(inv.args.iter().cloned())
                .collect(),
            session: outcome.session.clone(),
            model: step.model.clone(),
            attempt_commit: None,
            skipped_engines: skipped,
            usage: outcome.usage.clone(),
            resumed_session: resumed,
            directive: None,
            gate: None,
            iteration: step
                .loop_spec
                .as_ref()
                .map(|_| info.state.loops.get(&step.id).copied().unwrap_or(0) + 1),
            context: context_report,
            log_file: None,
        };
        let mut state = info.state.clone();
        state.seq = seq;
        if let Some(session) = &outcome.session {
            state.sessions.insert(
                step.id.clone(),
                SessionRef {
                    engine: engine_name.clone(),
                    id: session.clone(),
                },
            );
        }
        let mut outcome = outcome;
        let mut paused = false;
        let mut halt = false;
        if outcome.success {
            let rec_dir = wt.path.join(id.dir()).join("steps").join(&rec_name);
            std::fs::create_dir_all(&rec_dir)?;
            let flow = self.after_step(wt, step, following.clone(), &info.state, &rec_dir)?;
            record.directive = flow.directive;
            record.gate = flow.gate;
            match flow.error {
                Some(error) => {
                    outcome.success = false;
                    outcome.error = Some(error);
                    record.status = StepStatus::Failed;
                    record.error = outcome.error.clone();
                }
                None => {
                    state.loops = flow.loops;
                    paused = flow.pause;
                    halt = flow.halt;
                    state.reason = flow.reason;
                }
            }
            if outcome.success {
                state.next = flow.next;
            }
        }
        let summary;
        if outcome.success {
            summary = outcome.summary.clone().unwrap_or_else(|| {
                if inv.program.is_empty() {
                    "done".to_string()
                } else {
                    format!("ran {}", inv.program)
                }
            });
            state.status = match (&state.next, paused, halt) {
                // A loop that ran out with on_max = "fail" stops the run, its work kept.
                (_, _, true) => Status::Failed,
                (_, true, _) => Status::Paused,
                (Some(_), false, _) => Status::Running,
                (None, false, _) => Status::Completed,
            };
        } else {
            let error = outcome.error.clone().unwrap_or_else(|| ending.describe());
            summary = format!("failed ({})", first_line(&error));
            // Keep what the failed attempt did, then record the failure on a clean checkpoint.
            let tip_now = self.branch_tip(&id)?;
            let snapshot = self.set_aside(&id, wt, info, tip_now, "failed")?;
            record.attempt_commit = snapshot.map(|s| s.to_string());
            wt.reset_hard(tip_before)?;
            state.status = Status::Failed;
            state.reason = Some(format!("step `{}` failed: {error}", step.id));
        }
        record.summary = summary.clone();
        if let Some(session) = &outcome.session {
            let rec_dir = wt.path.join(id.dir()).join("steps").join(&rec_name);
            transcript::save(&engine_name, &self.env.vars, wt, session, &rec_dir)?;
        }
        self.write_record(
            wt,
            &id,
            &rec_name,
            &mut record,
            (&prompt, outcome.final_message.as_deref()),
            &log_path,
            &state,
        )?;
        let run_dir = id.dir();
        let staged = wt.stage_all(&[run_dir.as_str()])?;
        let (tree, repair) = self.keep_run_folder(wt, &id, tip_before, &rec_name, staged)?;
        let current = self.branch_tip(&id)?;
        if current != tip_before && !self.repo.is_ancestor(tip_before, current)? {
            return Err(CliError::refused(format!(
                "branch machine/{id} was moved off the run while step `{}` ran",
                step.id
            ))
            .with_hint(format!(
                "see `git reflog machine/{id}`; `git machine resume {id}` starts the step again"
            )));
        }
        let mut trailers = vec![
            ("Machine-Run", id.as_str()),
            ("Machine-Step", step.id.as_str()),
            ("Machine-Record", rec_name.as_str()),
            ("Machine-Engine", engine_name.as_str()),
        ];
        if let Some(s) = &outcome.session {
            trailers.push(("Machine-Session", s.as_str()));
        }
        if !outcome.success {
            trailers.push(("Machine-Status", "failed"));
        }
        let message = commit_message(&format!("{}: {summary}", step.id), &trailers);
        let author_name = format!("git machine ({engine_name})");
        // A failed attempt's commits were set aside: the failure record sits on the checkpoint.
        let parent = if outcome.success { current } else { tip_before };
        let commit = self.repo.commit(
            tree,
            &[parent],
            &message,
            Some((&author_name, "git-machine@localhost")),
        )?;
        self.repo.update_refs(
            &[RefUpdate {
                name: id.branch(),
                old: Some(current),
                new: Some(commit),
            }],
            &format!("git machine: step {}", step.id),
        )?;
        if repair {
            // The step changed git machine's own files: put them back as committed.
            wt.git(&["checkout", &commit.to_string(), "--", &run_dir])?;
            wt.git(&["clean", "-fdq", "--", &run_dir])?;
        }
        let _ = std::fs::remove_file(&session_path);
        info.tip = commit;
        info.state = state;
        if outcome.success {
            self.ui.note(&format!(
                "{} {} {}  {}",
                self.ui.green("  ok"),
                step.id,
                self.ui
                    .dim(&format!("{} {}", elapsed(duration), commit.short())),
                summary
            ));
            if let Some(reason) = &info.state.reason {
                self.ui.note(&format!("  {}", self.ui.yellow(reason)));
            }
            match info.state.status {
                Status::Paused => {
                    self.ui.note(&format!(
                        "{} after `{}`: review and edit {}, then `git machine resume {id}`",
                        self.ui.yellow("paused"),
                        step.id,
                        wt.path.display()
                    ));
                    Ok(StepEnd::Paused)
                }
                Status::Failed => Ok(StepEnd::Failed),
                _ => Ok(StepEnd::Committed),
            }
        } else {
            self.ui.note(&format!(
                "{} {} {}  {}",
                self.ui.red("  failed"),
                step.id,
                self.ui
                    .dim(&format!("{} {}", elapsed(duration), commit.short())),
                record.error.as_deref().unwrap_or("")
            ));
            if let Some(tail) = &outcome.final_message {
                let lines: Vec<&str> = tail.lines().collect();
                for line in &lines[lines.len().saturating_sub(10)..] {
                    self.ui.note(&format!("    {}", self.ui.dim(line)));
                }
            }
            self.ui.note(&format!(
                "  log: {}/{}/steps/{rec_name}/{} (in commit {}), or `git machine show {id} {} --all`",
                wt.path.display(),
                id.dir(),
                record.log_file.as_deref().unwrap_or("output.log"),
                commit.short(),
                step.id
            ));
            Ok(StepEnd::Failed)
        }
    }

    /// Read the step's directive and run its loop gate: where the run goes next.
    fn after_step(
        &mut self,
        wt: &Worktree,
        step: &ResolvedStep,
        following: Option<String>,
        state: &State,
        rec_dir: &Path,
    ) -> CliResult<Flow> {
        let mut flow = Flow {
            next: following,
            loops: state.loops.clone(),
            pause: step.checkpoint,
            halt: false,
            reason: None,
            directive: None,
            gate: None,
            error: None,
        };
        let mut loop_request = false;
        let mut stopped = false;
        let path = wt.path.join(DIRECTIVE_PATH);
        if let Ok(text) = std::fs::read_to_string(&path) {
            std::fs::remove_file(&path)?;
            let d: Directive = match toml::from_str(&text) {
                Ok(d) => d,
                Err(e) => {
                    flow.error = Some(format!("invalid {DIRECTIVE_PATH}: {}", e.message().trim()));
                    return Ok(flow);
                }
            };
            let why = d.reason.clone().unwrap_or_default();
            flow.directive = Some(if why.is_empty() {
                d.action.clone()
            } else {
                format!("{}: {why}", d.action)
            });
            match d.action.as_str() {
                "continue" => {}
                "stop" => {
                    stopped = true;
                    flow.next = None;
                    flow.reason = Some(format!("stopped by step `{}`: {why}", step.id));
                }
                "pause" => {
                    flow.pause = true;
                    flow.reason = Some(format!("paused by step `{}`: {why}", step.id));
                }
                "error" => {
                    flow.error = Some(format!("the step reported an error: {why}"));
                    return Ok(flow);
                }
                "loop" => {
                    let Some(spec) = &step.loop_spec else {
                        flow.error = Some(format!(
                            "the directive asks to loop, but step `{}` declares no `loop`",
                            step.id
                        ));
                        return Ok(flow);
                    };
                    if let Some(to) = d.to.as_deref().filter(|to| *to != spec.to) {
                        flow.error = Some(format!(
                            "the directive asks to loop to `{to}`; step `{}` may only loop to `{}`",
                            step.id, spec.to
                        ));
                        return Ok(flow);
                    }
                    loop_request = true;
                }
                other => {
                    flow.error = Some(format!(
                        "unknown directive action `{other}` in {DIRECTIVE_PATH}; expected continue, loop, stop, pause or error"
                    ));
                    return Ok(flow);
                }
            }
        }
        let Some(spec) = step.loop_spec.as_ref().filter(|_| !stopped) else {
            return Ok(flow);
        };
        let wants_loop = if loop_request {
            true
        } else if !spec.until.is_empty() {
            let passed = self.run_gate(wt, step, &spec.until, rec_dir)?;
            flow.gate = Some(
                passed
                    .clone()
                    .map_or_else(|| "passed".to_string(), |e| format!("failed ({e})")),
            );
            passed.is_some()
        } else {
            false
        };
        let done = flow.loops.remove(&step.id).unwrap_or(0) + 1;
        if !wants_loop {
            return Ok(flow);
        }
        if done < spec.max {
            flow.loops.insert(step.id.clone(), done);
            flow.next = Some(spec.to.clone());
        } else if spec.continue_on_max {
            flow.reason = Some(format!(
                "loop of `{}` reached its max of {} passes; went on",
                step.id, spec.max
            ));
        } else {
            flow.halt = true;
            flow.next = Some(spec.to.clone());
            flow.reason =
                Some(format!(
                "loop of `{}` reached its max of {} passes{}; `git machine resume` starts it again",
                step.id,
                spec.max,
                flow.gate.as_deref().map(|g| format!(", gate {g}")).unwrap_or_default()
            ));
        }
        Ok(flow)
    }

    /// Run a loop gate in the worktree; `None` when it passed, else why not.
    fn run_gate(
        &mut self,
        wt: &Worktree,
        step: &ResolvedStep,
        argv: &[String],
        rec_dir: &Path,
    ) -> CliResult<Option<String>> {
        let (program, args) = argv.split_first().expect("a gate has a program");
        let inv = engine::Invocation {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: Vec::new(),
        };
        let command = engine::by_name("command").expect("the command engine is built in");
        let mut parser = command.parser();
        let limits = process::Limits {
            timeout: step.timeout,
            idle_timeout: step.idle_timeout,
        };
        self.ui
            .note(&format!("  {} {}", self.ui.dim("gate"), argv.join(" ")));
        let ending = process::run(
            &inv,
            &wt.path,
            &self.env.vars,
            &rec_dir.join("gate.log"),
            limits,
            self.cancel,
            &mut |_| {},
            parser.as_mut(),
            None,
        );
        Ok(match ending {
            Ok(Ending::Exited(0)) => None,
            Ok(Ending::Cancelled) => {
                return Err(
                    CliError::new(EXIT_INTERRUPTED, "interrupted while the loop gate ran")
                        .with_hint("`git machine resume` runs the step again"),
                )
            }
            Ok(other) => Some(other.describe()),
            Err(e) => Some(format!("could not start `{program}`: {e}")),
        })
    }

    fn branch_tip(&self, id: &RunId) -> CliResult<Oid> {
        self.repo.ref_target(&id.branch()).ok_or_else(|| {
            CliError::refused(format!(
                "branch machine/{id} was deleted while the run was executing"
            ))
        })
    }

    /// The run's folder belongs to git machine: whatever a step did to it, the commit holds the
    /// checkpoint's folder plus this step's record and `state.toml`. Returns the tree to commit
    /// and whether the worktree's copy of the folder must be put back after the commit.
    fn keep_run_folder(
        &mut self,
        wt: &Worktree,
        id: &RunId,
        tip: Oid,
        rec_name: &str,
        staged: Oid,
    ) -> CliResult<(Oid, bool)> {
        let dir = id.dir();
        let mut files = vec![(
            format!("{dir}/state.toml"),
            std::fs::read(wt.path.join(&dir).join("state.toml"))?,
        )];
        for entry in std::fs::read_dir(wt.path.join(&dir).join("steps").join(rec_name))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                files.push((
                    format!("{dir}/steps/{rec_name}/{name}"),
                    std::fs::read(entry.path())?,
                ));
            }
        }
        let expected_root = self.repo.tree_with_files(self.repo.tree_of(tip)?, &files)?;
        let expected = self
            .repo
            .subtree(expected_root, &dir)?
            .expect("the run's folder has just been written into the tree");
        if self.repo.subtree(staged, &dir)? == Some(expected) {
            return Ok((staged, false));
        }
        self.ui.note(&self.ui.yellow(&format!(
            "  the step changed git machine's own files under {dir}; they are kept as recorded"
        )));
        Ok((self.repo.tree_with_subtree(staged, &dir, expected)?, true))
    }

    #[allow(clippy::too_many_arguments)]
    fn write_record(
        &self,
        wt: &Worktree,
        id: &RunId,
        rec_name: &str,
        record: &mut StepRecord,
        (prompt, message): (&str, Option<&str>),
        log: &Path,
        state: &State,
    ) -> CliResult {
        let run_dir: PathBuf = wt.path.join(id.dir());
        let dir = run_dir.join("steps").join(rec_name);
        std::fs::create_dir_all(&dir)?;
        let log_file = keep_log(log, &dir)?;
        record.log_file = (log_file != "output.log").then(|| log_file.to_string());
        std::fs::write(dir.join("step.toml"), to_toml(&*record))?;
        std::fs::write(dir.join("prompt.md"), prompt)?;
        if let Some(message) = message {
            std::fs::write(dir.join("message.md"), message)?;
        }
        std::fs::write(run_dir.join("state.toml"), to_toml(state))?;
        Ok(())
    }
}

enum StepEnd {
    Committed,
    Failed,
    Paused,
    Conflict,
    Interrupted,
}

/// Agent steps without an `idle_timeout` get this one: some CLIs wait forever, silently, when
/// their model server is unreachable.
pub const DEFAULT_AGENT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Logs above this size are kept gzip-compressed in the record.
const LOG_COMPRESS_ABOVE: u64 = 256 << 10;

/// Copy the step's log into its record folder; returns the file name used.
fn keep_log(log: &Path, dir: &Path) -> std::io::Result<String> {
    let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        std::fs::write(dir.join("output.log"), "")?;
        return Ok("output.log".to_string());
    }
    // A small log moves into the record (same file system: no copy); a large one is packed.
    if size <= LOG_COMPRESS_ABOVE && std::fs::rename(log, dir.join("output.log")).is_ok() {
        return Ok("output.log".to_string());
    }
    keep_file(log, dir, "output.log")
}

/// Copy `src` into `dir` as `name`, or as `name.gz` when it is large; returns the name used.
fn keep_file(src: &Path, dir: &Path, name: &str) -> std::io::Result<String> {
    let size = std::fs::metadata(src).map(|m| m.len()).unwrap_or(0);
    if size <= LOG_COMPRESS_ABOVE {
        std::fs::copy(src, dir.join(name))?;
        return Ok(name.to_string());
    }
    let packed = format!("{name}.gz");
    let mut input = std::fs::File::open(src)?;
    let out = std::fs::File::create(dir.join(&packed))?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut gz)?;
    gz.finish()?;
    Ok(packed)
}

/// Run-level overrides (`--engine`, `--model`, `machine.engine`) apply to every agent step.
fn apply_overrides(steps: &mut [ResolvedStep], overrides: &BTreeMap<String, String>) {
    for step in steps.iter_mut() {
        if step.engines.iter().all(|e| e == "command") {
            continue;
        }
        if let Some(engine) = overrides.get("engine") {
            step.engines = vec![engine.clone()];
        }
        if let Some(model) = overrides.get("model") {
            step.model = Some(model.clone());
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The session of an interrupted step, as written by [`Inflight`].
fn read_inflight(path: &Path) -> Option<SessionRef> {
    let text = std::fs::read_to_string(path).ok()?;
    let (engine, id) = text.trim().split_once(' ')?;
    Some(SessionRef {
        engine: engine.to_string(),
        id: id.to_string(),
    })
}

/// Wraps an engine's parser to write the session id to disk the moment it is known.
struct Inflight {
    inner: Box<dyn engine::EventParser>,
    path: PathBuf,
    engine: String,
    written: bool,
}

impl engine::EventParser for Inflight {
    fn line(&mut self, stream: engine::Stream, line: &str) {
        self.inner.line(stream, line);
        if !self.written {
            if let Some(id) = self.inner.session() {
                if let Some(dir) = self.path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                self.written =
                    std::fs::write(&self.path, format!("{} {id}\n", self.engine)).is_ok();
            }
        }
    }
    fn session(&self) -> Option<&str> {
        self.inner.session()
    }
    fn finish(self: Box<Self>, ending: &Ending) -> engine::Outcome {
        self.inner.finish(ending)
    }
}

/// What happens after a step that succeeded: read from its directive and its loop gate.
struct Flow {
    next: Option<String>,
    loops: BTreeMap<String, u32>,
    pause: bool,
    /// Stop the run as failed, the step's work committed (a loop ran out with on_max = "fail").
    halt: bool,
    reason: Option<String>,
    directive: Option<String>,
    gate: Option<String>,
    /// The step fails after all (an `error` directive, a bad directive, a loop target outside
    /// the step's limits).
    error: Option<String>,
}

/// `.codemachine/directive.toml`, written by an agent to steer the run.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Directive {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

pub const DIRECTIVE_PATH: &str = ".codemachine/directive.toml";

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

/// What one step's program run needs, independent of the runner (so parallel members can run
/// on threads of their own).
pub struct StepRun<'a> {
    pub step: &'a ResolvedStep,
    pub prompt: &'a str,
    pub workdir: &'a Path,
    pub log: &'a Path,
    pub session_path: &'a Path,
    pub continued: Option<&'a SessionRef>,
    /// Set when the step must fail before any program starts (e.g. required context missing).
    pub prestart_error: Option<String>,
    /// Commit the worktree is reset to before trying the next engine.
    pub base: Oid,
    pub env: &'a Env,
    pub cancel: &'a AtomicBool,
    pub echo: bool,
    pub path_var: Option<&'a std::ffi::OsStr>,
}

/// The result of running a step's program with the first engine that could serve.
pub struct Attempt {
    pub engine: String,
    pub inv: engine::Invocation,
    pub ending: Ending,
    pub outcome: engine::Outcome,
    pub resumed: Option<String>,
    pub skipped: Vec<String>,
    /// Engines passed over while running, for the user.
    pub notes: Vec<String>,
}

/// Try the step's engines in order; an engine that is missing, cannot start or reports a
/// fallback reason gives way to the next. `on_spawn` gets the process group (None when done).
pub fn attempt_step(
    run: &StepRun<'_>,
    on_spawn: &mut dyn FnMut(Option<i32>),
) -> CliResult<Attempt> {
    let step = run.step;
    let mut skipped: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let engines = if run.prestart_error.is_some() {
        &[][..]
    } else {
        &step.engines[..]
    };
    for (i, engine_name) in engines.iter().enumerate() {
        let Some(engine) = engine::by_name(engine_name) else {
            skipped.push(format!("{engine_name}: not built into this git machine"));
            continue;
        };
        if let Err(e) = engine.check(run.path_var) {
            skipped.push(format!("{engine_name}: {e}"));
            continue;
        }
        let resume_session = run
            .continued
            .filter(|s| &s.engine == engine_name && engine.can_resume())
            .map(|s| s.id.clone());
        let input = StepInput {
            step,
            prompt: run.prompt,
            workdir: run.workdir,
            resume_session: resume_session.as_deref(),
        };
        let inv = match engine.invocation(&input) {
            Ok(inv) => inv,
            Err(e) => {
                skipped.push(format!("{engine_name}: {e}"));
                continue;
            }
        };
        let mut parser = Inflight {
            inner: engine.parser(),
            path: run.session_path.to_path_buf(),
            engine: engine_name.clone(),
            written: false,
        };
        let limits = process::Limits {
            timeout: step.timeout,
            idle_timeout: step
                .idle_timeout
                .or_else(|| (engine_name != "command").then_some(DEFAULT_AGENT_IDLE_TIMEOUT)),
        };
        let mut spawned = |pgid: i32| on_spawn(Some(pgid));
        let mut print = |_: engine::Stream, line: &str| eprintln!("    {line}");
        let ending = process::run(
            &inv,
            run.workdir,
            &run.env.vars,
            run.log,
            limits,
            run.cancel,
            &mut spawned,
            &mut parser,
            if run.echo { Some(&mut print) } else { None },
        );
        on_spawn(None);
        let (ending, mut outcome) = match ending {
            Ok(ending) => {
                let outcome = parser.inner.finish(&ending);
                (ending, outcome)
            }
            // The log could not be written: the disk is full, which no engine fixes.
            Err(e) if crate::cli::error::is_disk_full(&e) => return Err(e.into()),
            Err(e) => {
                // Could not be started: an engine that cannot serve now.
                let msg = format!("could not start `{}`: {e}", inv.program);
                std::fs::write(run.log, format!("{msg}\n"))?;
                let outcome = engine::Outcome {
                    error: Some(msg.clone()),
                    fallback_reason: Some(msg),
                    ..Default::default()
                };
                (Ending::Exited(127), outcome)
            }
        };
        if ending != Ending::Cancelled && !outcome.success && i + 1 < step.engines.len() {
            if let Some(reason) = &outcome.fallback_reason {
                skipped.push(format!("{engine_name}: {reason}"));
                notes.push(format!(
                    "{engine_name}: {reason}; trying {}",
                    step.engines[i + 1]
                ));
                Worktree::new(run.workdir.to_path_buf()).reset_hard(run.base)?;
                continue;
            }
        }
        if outcome.success {
            let missing: Vec<&str> = step
                .outputs
                .iter()
                .map(String::as_str)
                .filter(|o| !run.workdir.join(o).exists())
                .collect();
            if !missing.is_empty() {
                outcome.success = false;
                outcome.error = Some(format!("declared output missing: {}", missing.join(", ")));
            }
        }
        return Ok(Attempt {
            engine: engine.name().to_string(),
            inv,
            ending,
            outcome,
            resumed: resume_session,
            skipped,
            notes,
        });
    }
    let error = run
        .prestart_error
        .clone()
        .unwrap_or_else(|| format!("no engine could run this step: {}", skipped.join("; ")));
    if let Some(dir) = run.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(run.log, format!("{error}\n"))?;
    Ok(Attempt {
        engine: step.engines.first().cloned().unwrap_or_default(),
        inv: engine::Invocation {
            program: String::new(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: Vec::new(),
        },
        ending: Ending::Exited(127),
        outcome: engine::Outcome {
            error: Some(error),
            ..Default::default()
        },
        resumed: None,
        skipped,
        notes,
    })
}

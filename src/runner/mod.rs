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
    self, record_name, to_toml, Paths, RunId, RunInfo, RunRecord, State, Status, StepRecord,
    StepStatus, ATTEMPTS_PREFIX,
};
use crate::ui::{elapsed, Ui};
use crate::workflow::{self, ResolvedStep, Workflow};

/// What a caller needs to start a run.
pub struct StartRequest<'a> {
    pub workflow: &'a Workflow,
    pub vars: BTreeMap<String, String>,
    pub base: Oid,
    pub overrides: BTreeMap<String, String>,
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
}

/// How a run's execution ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    Completed,
    Failed,
    Interrupted,
}

impl RunEnd {
    pub fn into_result(self, id: &RunId) -> CliResult {
        match self {
            RunEnd::Completed => Ok(()),
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

const RUN_FILES: [&str; 3] = ["run.toml", "state.toml", "workflow.toml"];

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
    v.insert("track".into(), String::new());
    v.insert("conditions".into(), String::new());
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
        };
        let first = req
            .workflow
            .steps
            .first()
            .expect("a validated workflow has steps")
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
        };
        let lock = RunLock::acquire(&self.paths.lock(&id), id.as_str())?;
        let dir = id.dir();
        let files = vec![
            (format!("{dir}/run.toml"), to_toml(&record).into_bytes()),
            (format!("{dir}/state.toml"), to_toml(&state).into_bytes()),
            (
                format!("{dir}/workflow.toml"),
                req.workflow.source.clone().into_bytes(),
            ),
        ];
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
        };
        let end = self.execute(info, lock)?;
        Ok((id, end))
    }

    /// Continue a run from its last checkpoint.
    pub fn resume(&mut self, id: &RunId) -> CliResult<RunEnd> {
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
        // A step killed mid-flight may have left commits and files: keep them, then start clean.
        self.set_aside(id, &wt, &info, tip, "interrupted")?;
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
        self.execute(info, lock)
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
        self.ui.note(&format!(
            "{}",
            self.ui.dim(&format!(
                "kept earlier work of the unfinished step as {name} ({})",
                snapshot.short()
            ))
        ));
        Ok(Some(snapshot))
    }

    fn execute(&mut self, mut info: RunInfo, mut lock: RunLock) -> CliResult<RunEnd> {
        let id = info.id.clone();
        let wf = workflow::parse(&info.record.origin, &info.workflow_source).map_err(|e| {
            CliError::failed(format!(
                "the workflow stored in run {id} no longer parses: {e}"
            ))
        })?;
        let mut values = info.record.vars.clone();
        values.extend(builtin_values(&id, &info.record));
        let steps = wf.resolve(&values);
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
            let following = steps.get(index + 1).map(|s| s.id.clone());
            match self.run_step(
                &mut info,
                &wt,
                step,
                following,
                index,
                steps.len(),
                &mut lock,
            )? {
                StepEnd::Committed => {}
                StepEnd::Failed => return Ok(RunEnd::Failed),
                StepEnd::Interrupted => return Ok(RunEnd::Interrupted),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        step: &ResolvedStep,
        following: Option<String>,
        index: usize,
        total: usize,
        lock: &mut RunLock,
    ) -> CliResult<StepEnd> {
        let id = info.id.clone();
        let seq = info.state.seq + 1;
        let rec_name = record_name(seq, &step.id);
        let log_path = self.paths.log(&id, &rec_name);
        let prompt = step.prompt.clone().unwrap_or_default();
        let engine_name = step
            .engines
            .first()
            .cloned()
            .unwrap_or_else(|| "command".into());
        let engine = engine::by_name(&engine_name).ok_or_else(|| {
            CliError::failed(format!(
                "engine `{engine_name}` is not available in this build"
            ))
        })?;
        let input = StepInput {
            step,
            prompt: &prompt,
            workdir: &wt.path,
            resume_session: None,
        };
        let inv = engine
            .invocation(&input)
            .map_err(|e| CliError::failed(e.to_string()))?;
        self.ui.note(&format!(
            "{} {} {}",
            self.ui.dim(&format!("[{}/{}]", index + 1, total)),
            self.ui.bold(&step.id),
            self.ui.dim(&format!("({engine_name}) …"))
        ));
        let started_at = store::now_rfc3339();
        let started = Instant::now();
        let mut parser = engine.parser();
        let limits = process::Limits {
            timeout: step.timeout,
            idle_timeout: step.idle_timeout,
        };
        let mut on_spawn = |pgid: i32| lock.set_step_pgid(Some(pgid));
        let echo = self.echo;
        let mut print = |_: engine::Stream, line: &str| eprintln!("    {line}");
        let ending = process::run(
            &inv,
            &wt.path,
            &self.env.vars,
            &log_path,
            limits,
            self.cancel,
            &mut on_spawn,
            parser.as_mut(),
            if echo { Some(&mut print) } else { None },
        );
        lock.set_step_pgid(None);
        let ending = match ending {
            Ok(e) => e,
            Err(e) => {
                // The program could not be started: a failed step, with the reason recorded.
                let msg = format!("could not start `{}`: {e}", inv.program);
                std::fs::write(&log_path, format!("{msg}\n"))?;
                Ending::Exited(127)
            }
        };
        let duration = started.elapsed();
        let mut outcome = parser.finish(&ending);
        if ending == Ending::Exited(127) && outcome.error.is_none() {
            outcome.error = Some(format!("could not start `{}`", inv.program));
        }
        if ending == Ending::Cancelled {
            self.ui.note(&format!(
                "{} {} {}",
                self.ui.yellow("interrupted"),
                step.id,
                self.ui.dim(&format!(
                    "after {}; `git machine resume {id}` runs it again",
                    elapsed(duration)
                ))
            ));
            return Ok(StepEnd::Interrupted);
        }
        if outcome.success {
            let missing: Vec<&str> = step
                .outputs
                .iter()
                .map(String::as_str)
                .filter(|o| !wt.path.join(o).exists())
                .collect();
            if !missing.is_empty() {
                outcome.success = false;
                outcome.error = Some(format!("declared output missing: {}", missing.join(", ")));
            }
        }
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
                .chain(inv.args.iter().cloned())
                .collect(),
            session: outcome.session.clone(),
            model: step.model.clone(),
            attempt_commit: None,
            skipped_engines: Vec::new(),
            usage: outcome.usage.clone(),
        };
        let tip_before = info.tip;
        let mut state = info.state.clone();
        state.seq = seq;
        if let Some(session) = &outcome.session {
            state.sessions.insert(step.id.clone(), session.clone());
        }
        let summary;
        if outcome.success {
            summary = outcome
                .summary
                .clone()
                .unwrap_or_else(|| format!("ran {}", inv.program));
            state.next = following;
            state.status = if state.next.is_some() {
                Status::Running
            } else {
                Status::Completed
            };
            state.reason = None;
        } else {
            let error = outcome.error.clone().unwrap_or_else(|| ending.describe());
            summary = format!("failed ({error})");
            // Keep what the failed attempt did, then record the failure on a clean checkpoint.
            let snapshot = self.set_aside(&id, wt, info, self.branch_tip(&id)?, "failed")?;
            record.attempt_commit = snapshot.map(|s| s.to_string());
            wt.reset_hard(tip_before)?;
            state.status = Status::Failed;
            state.reason = Some(format!("step `{}` failed: {error}", step.id));
        }
        record.summary = summary.clone();
        self.write_record(
            wt, &id, tip_before, &rec_name, &record, &prompt, &log_path, &state,
        )?;
        let run_dir = id.dir();
        let tree = wt.stage_all(&[run_dir.as_str()])?;
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
            Ok(StepEnd::Committed)
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
                for line in tail
                    .lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    self.ui.note(&format!("    {}", self.ui.dim(line)));
                }
            }
            self.ui.note(&format!(
                "  log: {}/{}/steps/{rec_name}/output.log (in commit {}), or `git machine show {id} {}`",
                wt.path.display(),
                id.dir(),
                commit.short(),
                step.id
            ));
            Ok(StepEnd::Failed)
        }
    }

    fn branch_tip(&self, id: &RunId) -> CliResult<Oid> {
        self.repo.ref_target(&id.branch()).ok_or_else(|| {
            CliError::refused(format!(
                "branch machine/{id} was deleted while the run was executing"
            ))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_record(
        &self,
        wt: &Worktree,
        id: &RunId,
        tip: Oid,
        rec_name: &str,
        record: &StepRecord,
        prompt: &str,
        log: &Path,
        state: &State,
    ) -> CliResult {
        let run_dir: PathBuf = wt.path.join(id.dir());
        let dir = run_dir.join("steps").join(rec_name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("step.toml"), to_toml(record))?;
        std::fs::write(dir.join("prompt.md"), prompt)?;
        if log.exists() {
            std::fs::copy(log, dir.join("output.log"))?;
        } else {
            std::fs::write(dir.join("output.log"), "")?;
        }
        std::fs::write(run_dir.join("state.toml"), to_toml(state))?;
        // The run's own files are restored as committed, whatever the step did to them.
        for name in RUN_FILES.iter().filter(|n| **n != "state.toml") {
            if let Some(bytes) = self.repo.read_file(tip, &format!("{}/{name}", id.dir()))? {
                std::fs::write(run_dir.join(name), bytes)?;
            }
        }
        Ok(())
    }
}

enum StepEnd {
    Committed,
    Failed,
    Interrupted,
}

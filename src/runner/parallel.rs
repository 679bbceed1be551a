//! Parallel groups: consecutive steps with the same `group` run at the same time, each in a
//! worktree of its own created from the same commit, each making its own commit; the run branch
//! then gets one merge commit joining them.
//!
//! Invariants:
//! - member worktrees are taken (from the pool, or by `git worktree add`) one after another
//!   (concurrent `git worktree add` collides on the config lock) beside the run's own, as
//!   `<run>--<step>`, then switched to the group's base side by side, detached;
//! - members' programs run on the command's one event loop; a member that succeeded is staged
//!   on a thread of its own (its `git add -A` scans its whole worktree) while the loop goes
//!   on, then the driver (this thread) decides and publishes it at once: its commit under
//!   `refs/machine/parallel/<run>/<step>` and a checkpoint commit on the run branch listing it
//!   in `group_done`, in one transaction — so a member that finished is never run again,
//!   whatever happens to the others or to git machine;
//! - a member's directive is read out of its worktree (never committed as code) and applies to
//!   the group once it has merged (`stop`, `pause`); a member cannot `loop`;
//! - a failure in one member fails the group after the others finish: the run branch gets a
//!   failure record, the finished members stay done;
//! - merges happen in memory in member order; a conflict commits what merged cleanly with state
//!   `conflict`, then leaves the conflicting merge in the run's worktree for a person (or the
//!   group's `on_conflict` step) to resolve. `resume` goes on once the merge is committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::exec::{self, Attempt, StepRun};
use super::machine::{self, Input, Plan};
use super::stage::{self, stage_step, Stage};
use super::{context, Kind, RunEnd, Runner};
use crate::error::{Error, Result};
use crate::git::{Oid, RefName, Worktree};
use crate::store::lock::RunLock;
use crate::store::pool::Target;
use crate::store::txn::{self, trailer};
use crate::store::{self, record_name, to_toml, RecordName, RunInfo, StepRecord, PARALLEL_PREFIX};
use crate::workflow::{ResolvedStep, StepId};

/// A member about to run: its worktree, prompt and record name.
struct Slot<'a> {
    step: &'a ResolvedStep,
    seq: u32,
    rec: RecordName,
    wt: Worktree,
    prompt: String,
    context: Vec<String>,
    prestart: Option<String>,
    /// How its worktree was prepared (see [`super::workspace`]), for its record.
    workspace: Vec<String>,
    log: std::path::PathBuf,
    session: std::path::PathBuf,
}

/// A member running on the group's event loop: its slot, attempt, start time and duration.
type Member<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = MemberEnd> + 'a>>;

/// Lines of members' output waiting for the view; more are dropped (it is only their activity).
const QUEUED: usize = 64;

/// The end of a member: its slot, attempt, start time and duration.
type MemberEnd = (usize, Result<Attempt>, String, Duration);

/// Waits until at least one of `running` has finished: the indexes in `running` and the ends
/// of all that have (members that end together are staged side by side). Finished ones must
/// be removed before the next wait.
struct AllDone<'a, 'b> {
    running: &'a mut [Member<'b>],
}

impl std::future::Future for AllDone<'_, '_> {
    type Output = Vec<(usize, MemberEnd)>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut done = Vec::new();
        for (k, member) in self.get_mut().running.iter_mut().enumerate() {
            if let std::task::Poll::Ready(end) = member.as_mut().poll(cx) {
                done.push((k, end));
            }
        }
        if done.is_empty() {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(done)
        }
    }
}

/// A member staged on its own thread: its slot, and its record and tree (or the error).
type Staged = (usize, Result<(StepRecord, Oid)>);

/// A member whose program succeeded, its record written into its worktree: to be staged,
/// committed and published.
struct Succeeded {
    attempt: Attempt,
    record: StepRecord,
    directive: Option<machine::Directive>,
    /// Its worktree's HEAD after the program (which may have committed).
    head: Oid,
}

/// What became of a member whose program ended.
enum Ended {
    /// Stopped by Ctrl-C: neither done nor failed; resume runs it again.
    Stopped,
    Failed(Box<Failed>),
    Succeeded(Box<Succeeded>),
}

/// A member that failed, waiting for the group's failure record.
struct Failed {
    slot: usize,
    record: StepRecord,
    attempt: Option<(Oid, crate::git::RefUpdate)>,
}

impl Runner<'_> {
    /// Run the members of the group at `first` that have not finished yet, then merge all.
    pub(super) fn run_group(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        plan: &Plan,
        first: &StepId,
        lock: &mut RunLock,
    ) -> Result<Option<RunEnd>> {
        if !info.state.pending_merge.is_empty() {
            // After a conflict a person resolved: finish the merges.
            return self.merge_group(info, wt, plan, first, lock);
        }
        // Reruns start from the group's original base, so that every member, old or new,
        // merges against the same ancestor.
        let base = info.state.group_base.unwrap_or(info.tip);
        let members = plan.members(first);
        let group = members[0].group.clone().unwrap_or_default();
        let slots = self.prepare_slots(info, &members, base)?;
        self.emit(
            &info.id,
            Kind::GroupStarted {
                group: group.clone(),
                members: slots.iter().map(|s| s.step.id.clone()).collect(),
                jobs: self.jobs,
            },
        );
        let (failed, holding) = self.run_slots(info, plan, &group, &slots, base)?;
        // Finished members' worktrees go to the pool; a failed one stays for a look, and so
        // does one holding files its commit left out (secrets: they exist only there, until
        // `rm` or `gc`).
        let mut done: Vec<(&Path, Oid)> = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let Some(commit) = info.state.group_done.get(&slot.step.id).copied() else {
                continue;
            };
            if holding.contains(&i) {
                // HEAD on the member's commit all the same: the program's own commits, which
                // may hold what was left out, are then reachable from no worktree's HEAD.
                slot.wt.detach_head_at(commit)?;
            } else {
                done.push((slot.wt.path.as_path(), commit));
            }
        }
        self.release_members(&done);
        if self.controls.cancel.load(Ordering::SeqCst) {
            return Ok(Some(RunEnd::Interrupted));
        }
        if !failed.is_empty() {
            return self.fail_group(info, wt, plan, first, &slots, failed, base);
        }
        self.merge_group(info, wt, plan, first, lock)
    }

    /// Worktrees and prompts of the members still to run, one after another.
    fn prepare_slots<'s>(
        &mut self,
        info: &RunInfo,
        members: &[&'s ResolvedStep],
        base: Oid,
    ) -> Result<Vec<Slot<'s>>> {
        let id = &info.id;
        let spec = super::settings::workspace(&info.workflow()?.workspace, &info.record.overrides);
        for done in members
            .iter()
            .filter(|m| info.state.group_done.contains_key(&m.id))
        {
            // Killed between publishing a member and removing its worktree: remove it now.
            self.repo
                .worktree_remove(&self.paths.member_worktree(id, &done.id))?;
        }
        let todo: Vec<&ResolvedStep> = members
            .iter()
            .copied()
            .filter(|m| !info.state.group_done.contains_key(&m.id))
            .collect();
        let paths: Vec<PathBuf> = todo
            .iter()
            .map(|m| self.paths.member_worktree(id, &m.id))
            .collect();
        let mut wanted = Vec::new();
        for path in &paths {
            let mwt = Worktree::new(path.clone());
            if mwt.is_valid() {
                // The run's lock is held and a killed holder's step groups are gone: a lock
                // on the member's index is what a kill inside its staging left.
                self.clear_stale_index_lock(id, &mwt)?;
                mwt.detach_at(base)?;
                mwt.reset_hard(base)?;
            } else {
                if path.exists() {
                    std::fs::remove_dir_all(path)?;
                }
                wanted.push((path.as_path(), Target::Detached(base)));
            }
        }
        // The members' worktrees are switched to the base side by side.
        self.pool()?.acquire_all(self.repo, &wanted)?;
        let mut seq = info.state.seq;
        let mut prepared = Vec::new();
        // Watched from the moment they hold the base, before anything is copied in.
        let acquired: Vec<PathBuf> = wanted.iter().map(|(p, _)| p.to_path_buf()).collect();
        let worktrees: Vec<Worktree> = paths.into_iter().map(Worktree::new).collect();
        let fresh: Vec<&Worktree> = worktrees
            .iter()
            .filter(|mwt| acquired.contains(&mwt.path))
            .collect();
        Worktree::watch_all(&fresh, base, self.watch)?;
        for (step, mwt) in todo.into_iter().zip(worktrees) {
            seq += 1;
            let rec = record_name(seq, &step.id);
            let notes = self.ready(id, Some(&step.id), &mwt, &spec)?;
            prepared.push((step, seq, rec, mwt, notes));
        }
        // Every member's setup at once, as their programs will run.
        let members: Vec<(&StepId, &Worktree, &str)> = prepared
            .iter()
            .map(|(step, _, rec, mwt, _)| (&step.id, mwt, rec.as_str()))
            .collect();
        let mut notes: Vec<_> = prepared.iter().map(|p| p.4.clone()).collect();
        let setups = self.set_up_members(id, &members, &spec, &mut notes);
        let mut slots = Vec::new();
        for (((step, seq, rec, mwt, _), notes), setup) in
            prepared.into_iter().zip(notes).zip(setups)
        {
            let (prompt, context, mut prestart) = match context::build(id, &mwt, step, None) {
                Ok((p, c)) => (p, c, None),
                Err(e) => (step.prompt.clone().unwrap_or_default(), Vec::new(), Some(e)),
            };
            match setup {
                Ok(true) => {}
                Ok(false) => prestart = Some("setup interrupted".to_string()),
                Err(error) => prestart = Some(error),
            }
            slots.push(Slot {
                step,
                seq,
                log: self.paths.log(id, &rec),
                session: self.paths.inflight_session(id, &rec),
                rec,
                wt: mwt,
                prompt,
                context,
                prestart,
                workspace: notes,
            });
        }
        Ok(slots)
    }

    /// Run the slots' programs on one event loop, at most `jobs` at a time; a member that
    /// succeeds is staged on a thread and published once its tree is back (publishing blocks
    /// the loop briefly; the others' output waits in their pipes). Returns the members that
    /// failed, and the slots of those whose worktree holds files their commit left out.
    fn run_slots(
        &mut self,
        info: &mut RunInfo,
        plan: &Plan,
        group: &str,
        slots: &[Slot<'_>],
        base: Oid,
    ) -> Result<(Vec<Failed>, Vec<usize>)> {
        let runtime = self.rt;
        let (env, cancel) = (self.env, &*self.controls.cancel);
        let path_var = env.var("PATH").map(std::ffi::OsString::from);
        // Members' output for the view: best effort, a full queue drops lines.
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(usize, String)>(QUEUED);
        let echo = self.echo;
        let member = |i: usize| {
            let (out, path_var) = (out_tx.clone(), &path_var);
            async move {
                let slot = &slots[i];
                let started_at = store::now_rfc3339();
                let started = Instant::now();
                let run = StepRun {
                    step: slot.step,
                    prompt: &slot.prompt,
                    workdir: &slot.wt.path,
                    log: &slot.log,
                    session_path: &slot.session,
                    continued: None,
                    prestart_error: slot.prestart.clone(),
                    // An engine that gives way is followed by the next from the same base.
                    base,
                    env,
                    cancel,
                    skip: None,
                    mail: None,
                    fork: false,
                    path_var: path_var.as_deref(),
                };
                let mut forward = |line: &str| {
                    let _ = out.try_send((i, line.to_string()));
                };
                let shown: Option<&mut dyn FnMut(&str)> =
                    if echo { Some(&mut forward) } else { None };
                let attempt = exec::attempt(&run, &mut |_| {}, shown).await;
                (i, attempt, started_at, started.elapsed())
            }
        };
        let mut waiting = 0..slots.len();
        let mut running: Vec<Member<'_>> = Vec::new();
        let mut failed = Vec::new();
        let id = info.id.clone();
        let rules = self.rules_at(&id, base)?;
        // Members that succeeded are staged on threads of their own (`git add -A` scans the
        // member's whole worktree) while the loop goes on; each is committed and published
        // here once its tree is back.
        let (staged_tx, mut staged_rx) = tokio::sync::mpsc::unbounded_channel::<Staged>();
        let mut staging: BTreeMap<usize, Box<Succeeded>> = BTreeMap::new();
        // Members whose worktree holds files their commit left out.
        let mut holding = Vec::new();
        std::thread::scope(|scope| {
            runtime.block_on(async {
                for i in waiting
                    .by_ref()
                    .take(self.jobs.clamp(1, slots.len().max(1)))
                {
                    running.push(Box::pin(member(i)));
                }
                while !running.is_empty() || !staging.is_empty() {
                    tokio::select! {
                        Some((i, line)) = out_rx.recv() => {
                            self.sink.member_output(&slots[i].step.id, &line);
                        }
                        mut ends = AllDone { running: &mut running }, if !running.is_empty() => {
                            ends.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
                            for (k, end) in ends {
                                drop(running.swap_remove(k));
                                if let Some(next) = waiting.next() {
                                    running.push(Box::pin(member(next)));
                                }
                                let (i, attempt, started_at, duration) = end;
                                let done = (attempt?, started_at, duration);
                                match self.member_ended(info, group, &slots[i], i, base, done)? {
                                    Ended::Stopped => {}
                                    Ended::Failed(f) => failed.push(*f),
                                    Ended::Succeeded(s) => {
                                        let (tx, slot) = (staged_tx.clone(), &slots[i]);
                                        let (mut record, rules, id) = (s.record.clone(), &rules, &id);
                                        scope.spawn(move || {
                                            let staged = stage_step(&slot.wt, id, &slot.rec, &mut record, &mut [], (rules, base));
                                            let _ = tx.send((i, staged.map(|st| (record, st.tree))));
                                        });
                                        staging.insert(i, s);
                                    }
                                }
                            }
                        }
                        Some((i, staged)) = staged_rx.recv() => {
                            let done = staging.remove(&i).expect("a member being staged");
                            let (record, tree) = staged?;
                            if !record.left_out.is_empty() {
                                holding.push(i);
                            }
                            self.publish_succeeded(info, plan, group, &slots[i], base, *done, (record, tree))?;
                        }
                    }
                }
                Ok::<(), crate::error::Error>(())
            })
        })?;
        Ok((failed, holding))
    }

    /// A member's program ended: keep its work aside if it failed, else write its record into
    /// its worktree for staging and [`Runner::publish_succeeded`].
    #[allow(clippy::too_many_arguments)]
    fn member_ended(
        &mut self,
        info: &RunInfo,
        group: &str,
        slot: &Slot<'_>,
        index: usize,
        base: Oid,
        (a, started_at, duration): (Attempt, String, Duration),
    ) -> Result<Ended> {
        let id = info.id.clone();
        if self.controls.cancel.load(Ordering::SeqCst) && !a.outcome.success {
            return Ok(Ended::Stopped);
        }
        let mut a = a;
        if a.outcome.success {
            if let Some(why) = super::workspace::submodule_refusal(&slot.wt)? {
                a.refuse(why);
            }
        }
        let mut record = exec::record_of(slot.step, slot.seq, &a, started_at, duration);
        record.context = slot.context.clone();
        record.workspace = slot.workspace.clone();
        let mut error = (!a.outcome.success).then(|| a.error());
        let directive = if a.outcome.success {
            exec::take_directive(&slot.wt.path)?
        } else {
            None
        };
        if let Some(d) = &directive {
            record.directive = Some(d.describe());
            error = error.or_else(|| machine::member_directive_problem(&slot.step.id, group, d));
        }
        if let Some(error) = error {
            let tail = exec::tail_lines(a.outcome.final_message.as_deref(), 10);
            let failed =
                self.member_failed(&id, group, slot, index, base, record, (error, tail))?;
            return Ok(Ended::Failed(Box::new(failed)));
        }
        let dir = slot
            .wt
            .path
            .join(id.dir())
            .join("steps")
            .join(slot.rec.as_str());
        exec::write_record(
            &dir,
            &mut record,
            &slot.prompt,
            a.outcome.final_message.as_deref(),
            &slot.log,
        )?;
        Ok(Ended::Succeeded(Box::new(Succeeded {
            head: slot.wt.head()?,
            attempt: a,
            record,
            directive,
        })))
    }

    /// Commit a member that succeeded, its `tree` staged, and publish it.
    #[allow(clippy::too_many_arguments)]
    fn publish_succeeded(
        &mut self,
        info: &mut RunInfo,
        plan: &Plan,
        group: &str,
        slot: &Slot<'_>,
        base: Oid,
        done: Succeeded,
        (record, tree): (StepRecord, Oid),
    ) -> Result {
        let id = info.id.clone();
        let commit =
            self.commit_member(&id, slot, &record, (&done.attempt, base), (done.head, tree))?;
        self.report_left_out(&id, Some(&slot.step.id), &record.left_out);
        crate::env::crash::point("member-committed");
        let t = machine::decide(
            &info.state,
            plan,
            Input::MemberSucceeded {
                member: slot.step.id.clone(),
                seq: slot.seq,
                commit,
                base,
                directive: done.directive,
            },
        );
        let checkpoint = self.publish_member(info, plan, group, slot, commit, &t.state)?;
        info.tip = checkpoint;
        info.state = t.state;
        let _ = std::fs::remove_file(&slot.session);
        self.emit(
            &id,
            Kind::MemberFinished {
                step: slot.step.id.clone(),
                group: group.to_string(),
                commit,
                checkpoint,
                engine: record.engine.clone(),
                duration_ms: record.duration_ms,
                summary: record.summary.clone(),
            },
        );
        Ok(())
    }

    /// A member failed (its program, or its directive): keep its work aside, report it; the
    /// group's failure record is written once the others end.
    #[allow(clippy::too_many_arguments)]
    fn member_failed(
        &mut self,
        id: &store::RunId,
        group: &str,
        slot: &Slot<'_>,
        index: usize,
        base: Oid,
        mut record: StepRecord,
        (error, tail): (String, Vec<String>),
    ) -> Result<Failed> {
        record.status = store::StepStatus::Failed;
        record.summary = format!("failed ({})", exec::first_line(&error));
        record.error = Some(error.clone());
        let head = slot.wt.head()?;
        let (attempt, left_out) = self.attempt(id, &slot.wt, base, head, &slot.rec, "failed")?;
        record.attempt_commit = attempt.as_ref().map(|(c, _)| *c);
        self.report_left_out(id, Some(&slot.step.id), &left_out);
        record.left_out = left_out;
        self.emit(
            id,
            Kind::MemberFailed {
                step: slot.step.id.clone(),
                group: group.to_string(),
                reason: error,
                duration_ms: record.duration_ms,
                tail,
            },
        );
        Ok(Failed {
            slot: index,
            record,
            attempt,
        })
    }

    /// Publish a finished member: its commit under `refs/machine/parallel/` and a checkpoint
    /// commit listing it, in one transaction. Returns the checkpoint commit.
    fn publish_member(
        &self,
        info: &RunInfo,
        plan: &Plan,
        group: &str,
        slot: &Slot<'_>,
        commit: Oid,
        state: &store::State,
    ) -> Result<Oid> {
        let id = &info.id;
        let done = state.group_done.len();
        let message = txn::message(
            &format!(
                "{group}: `{}` done ({done} of {})",
                slot.step.id,
                plan.members(&slot.step.id).len()
            ),
            &[
                (trailer::RUN, id.as_str()),
                (trailer::GROUP, group),
                (trailer::MEMBER, slot.step.id.as_str()),
            ],
        );
        let member_ref = RefName::new(format!("{PARALLEL_PREFIX}{id}/{}", slot.step.id));
        let files = vec![(store::state_path(id), to_toml(state).into_bytes())];
        let side_refs = vec![txn::side_ref(self.repo, member_ref, commit)];
        let author = Some(txn::author(None));
        let checkpoint = txn::on_top(self.repo, id, info.tip, files, message, author, side_refs)?;
        Ok(checkpoint)
    }

    /// Commit a finished member's staged `tree` on `head` (its worktree's HEAD after the
    /// program), not on any branch: the run transaction publishes it.
    fn commit_member(
        &self,
        id: &store::RunId,
        slot: &Slot<'_>,
        record: &StepRecord,
        (a, base): (&Attempt, Oid),
        (head, tree): (Oid, Oid),
    ) -> Result<Oid> {
        // The program's own commits holding a left-out file are not kept (see stage.rs).
        let head = match stage::committed_by_program(self.repo, head, &record.left_out)? {
            true => base,
            false => head,
        };
        let mut trailers = vec![
            (trailer::RUN, id.as_str()),
            (trailer::STEP, slot.step.id.as_str()),
            (trailer::RECORD, slot.rec.as_str()),
            (trailer::ENGINE, a.engine.as_str()),
        ];
        if let Some(s) = &a.outcome.session {
            trailers.push((trailer::SESSION, s.as_str()));
        }
        let message = txn::message(&format!("{}: {}", slot.step.id, record.summary), &trailers);
        let (name, email) = txn::author(Some(&a.engine));
        Ok(self
            .repo
            .commit(tree, &[head], &message, Some((&name, &email)))?)
    }

    /// Record the failed members on the run branch; finished members stay done.
    #[allow(clippy::too_many_arguments)]
    fn fail_group(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        plan: &Plan,
        first: &StepId,
        slots: &[Slot<'_>],
        failed: Vec<Failed>,
        base: Oid,
    ) -> Result<Option<RunEnd>> {
        let id = info.id.clone();
        let group = plan
            .step(first)
            .and_then(|s| s.group.clone())
            .unwrap_or_default();
        let t = machine::decide(
            &info.state,
            plan,
            Input::MembersFailed {
                first: first.clone(),
                seq: slots.last().map_or(info.state.seq, |s| s.seq),
                base,
                failed: failed
                    .iter()
                    .map(|f| {
                        (
                            slots[f.slot].step.id.clone(),
                            f.record.error.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
            },
        );
        let mut files = vec![(store::state_path(&id), to_toml(&t.state).into_bytes())];
        let mut side_refs = Vec::new();
        let mut records = Vec::new();
        let mut names = Vec::new();
        for mut f in failed {
            let slot = &slots[f.slot];
            let dir = wt.path.join(store::record_dir(&id, &slot.rec));
            exec::write_record(&dir, &mut f.record, &slot.prompt, None, &slot.log)?;
            files.extend(exec::record_files(
                &dir,
                &store::record_dir(&id, &slot.rec),
            )?);
            side_refs.extend(f.attempt.map(|(_, update)| update));
            records.push(slot.rec.to_string());
            names.push(slot.step.id.as_str());
        }
        let records = records.join(",");
        let message = txn::message(
            &format!("{group}: failed ({})", names.join(", ")),
            &[
                (trailer::RUN, id.as_str()),
                (trailer::GROUP, group.as_str()),
                (trailer::RECORDS, records.as_str()),
                (trailer::STATUS, "failed"),
            ],
        );
        let commit = txn::on_top(self.repo, &id, info.tip, files, message, None, side_refs)?;
        stage::reset(wt, commit, &self.rules_at(&id, commit)?)?;
        info.tip = commit;
        info.state = t.state;
        Ok(Some(RunEnd::Failed))
    }

    /// Merge the members' commits (in order) onto the run branch: one merge commit when all
    /// merge cleanly; otherwise stop in `conflict` (or hand the conflict to the resolver step).
    pub(super) fn merge_group(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        plan: &Plan,
        first: &StepId,
        lock: &mut RunLock,
    ) -> Result<Option<RunEnd>> {
        let id = info.id.clone();
        let base = info.state.group_base.unwrap_or(info.tip);
        let base_tree = self.repo.tree_of(base)?;
        let members = plan.members(first);
        let group = members[0].group.clone().unwrap_or_default();
        let mut queue: Vec<(StepId, Oid)> = Vec::new();
        for m in &members {
            let commit = info.state.group_done.get(&m.id).copied().ok_or_else(|| {
                Error::failed(format!(
                    "run {id}: member `{}` of group `{group}` has no commit to merge",
                    m.id
                ))
            })?;
            queue.push((m.id.clone(), commit));
        }
        loop {
            let tip = info.tip;
            let (acc, clean, conflict) = self.merge_queue(tip, base_tree, &mut queue)?;
            crate::env::crash::point("merged");
            let names: Vec<StepId> = clean.iter().map(|(s, _)| s.clone()).collect();
            let mut parents = vec![tip];
            parents.extend(clean.iter().map(|(_, c)| *c));
            let Some((member, commit, paths)) = conflict else {
                let t = machine::decide(
                    &info.state,
                    plan,
                    Input::Merged {
                        first: first.clone(),
                    },
                );
                let subject = if names.is_empty() {
                    format!("{group}: merged")
                } else {
                    format!("{group}: merge {}", names.join(", "))
                };
                let merge =
                    self.commit_merge(info, wt, &group, acc, &parents, &subject, t.state.clone())?;
                let members = names;
                self.emit(
                    &id,
                    Kind::GroupMerged {
                        group,
                        commit: merge,
                        members,
                    },
                );
                self.report_notices(&id, wt, &t.notices);
                return Ok(super::RunEnd::of(info.state.status));
            };
            let t = machine::decide(
                &info.state,
                plan,
                Input::Conflict {
                    first: first.clone(),
                    member: member.clone(),
                    paths: paths.clone(),
                    pending: queue.iter().map(|(s, _)| s.clone()).collect(),
                },
            );
            let subject = format!(
                "{group}: merge {}(conflict with {member})",
                if names.is_empty() {
                    String::new()
                } else {
                    format!("{} ", names.join(", "))
                }
            );
            self.commit_merge(info, wt, &group, acc, &parents, &subject, t.state)?;
            // Leave the conflicting merge in the worktree, markers and all.
            wt.start_merge(commit);
            let resolver = plan.resolver(&group).and_then(|r| plan.step(&r));
            if let Some(resolver) = resolver {
                if self.resolve_with(
                    info,
                    wt,
                    plan,
                    &group,
                    resolver,
                    (&member, commit),
                    &paths,
                    lock,
                )? {
                    queue.remove(0);
                    continue;
                }
            }
            self.emit(
                &id,
                Kind::Conflict {
                    group: group.clone(),
                    step: member,
                    paths,
                    worktree: exec::shown(&wt.path),
                },
            );
            return Ok(Some(RunEnd::Conflict));
        }
    }

    /// Merge the queued members onto `tip`'s tree, in order, until one conflicts: the tree so
    /// far, the members merged cleanly, and the conflicting one with its paths. Members a
    /// person already merged (after a conflict) leave the queue.
    #[allow(clippy::type_complexity)]
    fn merge_queue(
        &self,
        tip: Oid,
        base_tree: Oid,
        queue: &mut Vec<(StepId, Oid)>,
    ) -> Result<(Oid, Vec<(StepId, Oid)>, Option<(StepId, Oid, Vec<String>)>)> {
        let mut acc = self.repo.tree_of(tip)?;
        let mut clean = Vec::new();
        while let Some((step, commit)) = queue.first().cloned() {
            if self.repo.is_ancestor(commit, tip)? {
                queue.remove(0);
                continue;
            }
            match self
                .repo
                .merge_trees(base_tree, acc, self.repo.tree_of(commit)?)?
            {
                Ok(tree) => {
                    acc = tree;
                    clean.push(queue.remove(0));
                }
                Err(paths) => return Ok((acc, clean, Some((step, commit, paths)))),
            }
        }
        Ok((acc, clean, None))
    }

    /// Commit `tree` plus the checkpoint `state` with `parents` (the tip first, then merged
    /// members), move the run branch to it and the worktree with it.
    #[allow(clippy::too_many_arguments)]
    fn commit_merge(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        group: &str,
        tree: Oid,
        parents: &[Oid],
        subject: &str,
        state: store::State,
    ) -> Result<Oid> {
        let id = info.id.clone();
        let commit = txn::publish(
            self.repo,
            &id,
            info.tip,
            txn::Commit {
                tree,
                files: vec![(store::state_path(&id), to_toml(&state).into_bytes())],
                parents: parents.to_vec(),
                message: txn::message(
                    subject,
                    &[(trailer::RUN, id.as_str()), (trailer::GROUP, group)],
                ),
                author: Some(txn::author(None)),
                side_refs: Vec::new(),
            },
        )?;
        // The worktree was left at the tip while the members ran: only the files the merge
        // brings are written, unless something else changed it.
        // Where the worktree was left: the group's base, or the tip after a resolver's commit.
        let group_base = info.state.group_base.unwrap_or(info.tip);
        if !wt.advance(&[group_base, info.tip], commit)? {
            stage::reset(wt, commit, &self.rules_at(&id, commit)?)?;
        }
        info.tip = commit;
        info.state = state;
        Ok(commit)
    }

    /// Let the group's `on_conflict` step resolve the merge left in the worktree. `Ok(true)`
    /// when it did and the resolution is committed.
    #[allow(clippy::too_many_arguments)]
    fn resolve_with(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        plan: &Plan,
        group: &str,
        resolver: &ResolvedStep,
        (member, commit): (&StepId, Oid),
        paths: &[String],
        lock: &mut RunLock,
    ) -> Result<bool> {
        let id = info.id.clone();
        let seq = info.state.seq + 1;
        let rec = record_name(seq, &resolver.id);
        let log = self.paths.log(&id, &rec);
        let session = self.paths.inflight_session(&id, &rec);
        let prompt = format!(
            "{}\n\nMerging the work of step `{member}` conflicts in these files; resolve every conflict (remove the markers), keeping both sides' intent:\n{}",
            resolver.prompt.clone().unwrap_or_default(),
            paths.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
        );
        self.emit(
            &id,
            Kind::ResolverStarted {
                step: resolver.id.clone(),
                group: group.to_string(),
                member: member.clone(),
            },
        );
        let started_at = store::now_rfc3339();
        let started = Instant::now();
        let path_var = self.env.var("PATH").map(std::ffi::OsString::from);
        let run = StepRun {
            step: resolver,
            prompt: &prompt,
            workdir: &wt.path,
            log: &log,
            session_path: &session,
            continued: None,
            prestart_error: None,
            base: info.tip,
            env: self.env,
            cancel: &self.controls.cancel,
            skip: None,
            mail: None,
            fork: false,
            path_var: path_var.as_deref(),
        };
        let attempt =
            exec::attempt_step(self.rt, &run, &mut |pgid| lock.set_step_pgid(pgid), None)?;
        if let Some(reason) = self.unresolved(wt, paths, &attempt)? {
            self.emit(
                &id,
                Kind::ResolverFailed {
                    step: resolver.id.clone(),
                    reason,
                },
            );
            return Ok(false);
        }
        let t = machine::decide(
            &info.state,
            plan,
            Input::Resolved {
                member: member.clone(),
            },
        );
        let mut record = exec::record_of(resolver, seq, &attempt, started_at, started.elapsed());
        record.summary = format!("resolve the conflicts of {group} with {member}");
        let mut files =
            self.record_files(wt, &id, &rec, &mut record, (&prompt, &attempt), &t.state)?;
        let secrets = self.rules_at(&id, info.tip)?;
        let tree = stage_step(wt, &id, &rec, &mut record, &mut files, (&secrets, info.tip))?.tree;
        let tip = info.tip;
        let resolved = txn::publish(
            self.repo,
            &id,
            tip,
            txn::Commit {
                tree,
                files,
                parents: vec![tip, commit],
                message: super::step_message(&id, &rec, &record, None),
                author: Some(txn::author(Some(&attempt.engine))),
                side_refs: Vec::new(),
            },
        )?;
        // The merge is committed: drop git's in-progress merge state.
        wt.quit_merge();
        wt.reset_keeping(resolved, &Stage::paths(&record.left_out))?;
        self.report_left_out(&id, Some(&resolver.id), &record.left_out);
        info.tip = resolved;
        info.state = t.state;
        self.emit(
            &id,
            Kind::Resolved {
                step: resolver.id.clone(),
                commit: resolved,
            },
        );
        Ok(true)
    }

    /// Why the resolver's work does not resolve the conflict, if it does not.
    fn unresolved(
        &self,
        wt: &Worktree,
        paths: &[String],
        attempt: &Attempt,
    ) -> Result<Option<String>> {
        if !attempt.outcome.success {
            return Ok(Some(attempt.error()));
        }
        let unmerged = wt.stage_resolution()?;
        let markers = paths.iter().any(|p| {
            std::fs::read_to_string(wt.path.join(p)).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.starts_with("<<<<<<< ") || l.starts_with(">>>>>>> "))
            })
        });
        Ok((unmerged || markers).then(|| "conflicts left unresolved".to_string()))
    }
}

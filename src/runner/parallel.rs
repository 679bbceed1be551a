//! Parallel groups: consecutive steps with the same `group` run at the same time, each in a
//! worktree of its own created from the same commit, each making its own commit; the run branch
//! then gets one merge commit joining them.
//!
//! Invariants:
//! - member worktrees are created one after another (concurrent `git worktree add` collides on
//!   the config lock) beside the run's own, as `<run>--<step>`, detached at the group's base;
//! - a member's commit is published under `refs/machine/parallel/<run>/<step>` the moment it is
//!   made, and listed in the checkpoint (`group_done`), so a failed or interrupted group reruns
//!   only the members that have no commit yet;
//! - a failure in one member fails the group after the others finish: the run branch gets a
//!   failure record, the finished members stay done;
//! - merges happen in memory in member order; a conflict commits what merged cleanly with state
//!   `conflict`, then leaves the conflicting merge in the run's worktree for a person (or the
//!   group's `on_conflict` step) to resolve. `resume` goes on once the merge is committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{attempt_step, commit_message, context, Attempt, Runner, StepEnd, StepRun};
use crate::cli::error::{CliError, CliResult};
use crate::engine::Ending;
use crate::git::{Oid, RefName, RefUpdate, Worktree};
use crate::store::lock::RunLock;
use crate::store::{
    self, record_name, to_toml, RunInfo, Status, StepRecord, StepStatus, PARALLEL_PREFIX,
};
use crate::ui::elapsed;
use crate::workflow::ResolvedStep;

/// The group being run, as the merge needs it.
pub struct GroupCtx<'a> {
    pub name: String,
    /// First member: what `next` names while the group is unfinished.
    pub first: String,
    pub following: Option<String>,
    pub resolver: Option<&'a ResolvedStep>,
}

/// A member's attempt, its start time (RFC 3339) and how long it ran.
type SlotResult = (CliResult<Attempt>, String, Duration);

struct Slot<'a> {
    step: &'a ResolvedStep,
    rec: String,
    wt: Worktree,
    prompt: String,
    context: Vec<String>,
    prestart: Option<String>,
    log: std::path::PathBuf,
    session: std::path::PathBuf,
}

impl Runner<'_> {
    /// Run the members of a parallel group that have not finished yet, then merge all.
    pub(super) fn run_group(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        members: &[&ResolvedStep],
        ctx: GroupCtx<'_>,
        lock: &mut RunLock,
    ) -> CliResult<StepEnd> {
        let id = info.id.clone();
        if !info.state.pending_merge.is_empty() {
            // After a conflict a person resolved: finish the merges.
            let queue = info
                .state
                .pending_merge
                .iter()
                .filter_map(|s| {
                    info.state
                        .group_done
                        .get(s)
                        .and_then(|c| Oid::parse(c))
                        .map(|c| (s.clone(), c))
                })
                .collect();
            return self.merge_group(info, wt, &ctx, queue, lock);
        }
        // Reruns after a failure start from the group's original base, so that every member,
        // old or new, merges against the same ancestor.
        let base = info
            .state
            .group_base
            .as_deref()
            .and_then(Oid::parse)
            .unwrap_or(info.tip);
        let done: BTreeMap<String, Oid> = info
            .state
            .group_done
            .iter()
            .filter_map(|(k, v)| Oid::parse(v).map(|o| (k.clone(), o)))
            .collect();
        let mut seq = info.state.seq;
        let mut slots = Vec::new();
        for step in members.iter().filter(|m| !done.contains_key(&m.id)) {
            seq += 1;
            let rec = record_name(seq, &step.id);
            let path = self.paths.member_worktree(&id, &step.id);
            let mwt = Worktree::new(path.clone());
            if mwt.is_valid() {
                mwt.git(&["checkout", "-q", "--force", "--detach", &base.to_string()])?;
                mwt.reset_hard(base)?;
            } else {
                if path.exists() {
                    std::fs::remove_dir_all(&path)?;
                }
                self.repo.worktree_add_detached(&path, base)?;
            }
            let (prompt, context, prestart) = match context::build(&id, &mwt, step, None) {
                Ok((p, c)) => (p, c, None),
                Err(e) => (step.prompt.clone().unwrap_or_default(), Vec::new(), Some(e)),
            };
            slots.push(Slot {
                step,
                log: self.paths.log(&id, &rec),
                session: self.paths.inflight_session(&id, &rec),
                rec,
                wt: mwt,
                prompt,
                context,
                prestart,
            });
        }
        let names: Vec<&str> = slots.iter().map(|s| s.step.id.as_str()).collect();
        self.ui.note(&format!(
            "{} {} {}",
            self.ui.bold(&format!("group {}", ctx.name)),
            names.join(", "),
            self.ui.dim(&format!("(at most {} at a time) …", self.jobs))
        ));
        let results = self.run_slots(&slots);
        let cancelled = self.cancel.load(Ordering::SeqCst);
        let mut commits = done.clone();
        let mut failed = Vec::new();
        for (slot, (attempt, started_at, duration)) in slots.iter().zip(results) {
            let attempt = attempt?;
            if cancelled && !attempt.outcome.success {
                // Stopped by Ctrl-C: neither done nor failed; resume runs it again.
                continue;
            }
            let mut record = self.member_record(slot, &attempt, started_at, duration, seq);
            if attempt.outcome.success {
                let commit = self.commit_member(info, slot, &mut record, &attempt)?;
                commits.insert(slot.step.id.clone(), commit);
                self.ui.note(&format!(
                    "{} {} {}  {}",
                    self.ui.green("  ok"),
                    slot.step.id,
                    self.ui
                        .dim(&format!("{} {}", elapsed(duration), commit.short())),
                    record.summary
                ));
            } else {
                let snapshot = if slot.wt.is_dirty()? {
                    let tree = slot.wt.stage_all(&[])?;
                    let msg = commit_message(
                        &format!("failed: work left by `{}` of run {id}", slot.step.id),
                        &[("Machine-Attempt", id.as_str())],
                    );
                    let head = self.member_head(&slot.wt)?;
                    let c = self.repo.commit(tree, &[head], &msg, None)?;
                    let name = RefName::new(format!(
                        "{}{id}/{}-failed",
                        store::ATTEMPTS_PREFIX,
                        slot.rec
                    ));
                    let old = self.repo.ref_target(&name);
                    self.repo.update_refs(
                        &[RefUpdate {
                            name,
                            old,
                            new: Some(c),
                        }],
                        "git machine: keep an attempt",
                    )?;
                    Some(c)
                } else {
                    None
                };
                record.attempt_commit = snapshot.map(|c| c.to_string());
                self.ui.note(&format!(
                    "{} {} {}  {}",
                    self.ui.red("  failed"),
                    slot.step.id,
                    self.ui.dim(&elapsed(duration)),
                    record.error.as_deref().unwrap_or("")
                ));
                failed.push((slot, record, attempt));
            }
        }
        if cancelled {
            return self.interrupt_group(info, wt, &ctx, base, seq, &commits);
        }
        if !failed.is_empty() {
            return self.fail_group(info, wt, &ctx, base, seq, &commits, failed);
        }
        for slot in &slots {
            // Finished members' worktrees are disposable; failed ones stay for a look.
            let _ = self.repo.worktree_remove(&slot.wt.path);
        }
        info.state.seq = seq;
        let queue: Vec<(String, Oid)> = members
            .iter()
            .map(|m| (m.id.clone(), commits[&m.id]))
            .collect();
        info.state.group_done = commits
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        info.state.group_base = Some(base.to_string());
        self.merge_group(info, wt, &ctx, queue, lock)
    }

    /// Run the slots' programs, at most `jobs` at a time.
    fn run_slots(&self, slots: &[Slot<'_>]) -> Vec<SlotResult> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<SlotResult>>> =
            Mutex::new((0..slots.len()).map(|_| None).collect());
        let path_var = self
            .env
            .vars
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| std::ffi::OsString::from(v));
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.clamp(1, slots.len().max(1)) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(slot) = slots.get(i) else { break };
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
                        base: Oid::parse(&"0".repeat(40)).expect("a valid id"),
                        env: self.env,
                        cancel: self.cancel,
                        echo: false,
                        path_var: path_var.as_deref(),
                    };
                    let attempt = attempt_step(&run, &mut |_| {});
                    results.lock().expect("no thread panics holding it")[i] =
                        Some((attempt, started_at, started.elapsed()));
                });
            }
        });
        results
            .into_inner()
            .expect("no thread panics holding it")
            .into_iter()
            .map(|r| r.expect("every slot ran"))
            .collect()
    }

    fn member_head(&self, wt: &Worktree) -> CliResult<Oid> {
        let head = wt.git(&["rev-parse", "HEAD"])?;
        Oid::parse(head.trim())
            .ok_or_else(|| CliError::failed(format!("no HEAD in {}", wt.path.display())))
    }

    fn member_record(
        &self,
        slot: &Slot<'_>,
        a: &Attempt,
        started_at: String,
        duration: Duration,
        _seq: u32,
    ) -> StepRecord {
        let seq = slot.rec[..slot.rec.find('-').unwrap_or(0)]
            .parse()
            .unwrap_or(0);
        StepRecord {
            version: store::FORMAT_VERSION,
            step: slot.step.id.clone(),
            seq,
            engine: a.engine.clone(),
            status: if a.outcome.success {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            },
            summary: if a.outcome.success {
                a.outcome
                    .summary
                    .clone()
                    .unwrap_or_else(|| format!("ran {}", a.inv.program))
            } else {
                format!(
                    "failed ({})",
                    a.outcome
                        .error
                        .clone()
                        .unwrap_or_else(|| a.ending.describe())
                        .lines()
                        .next()
                        .unwrap_or("")
                )
            },
            started: started_at,
            ended: store::now_rfc3339(),
            duration_ms: duration.as_millis() as u64,
            exit_code: match a.ending {
                Ending::Exited(c) => Some(c),
                _ => None,
            },
            signal: match a.ending {
                Ending::Signaled(s) => Some(s),
                _ => None,
            },
            error: a.outcome.error.clone(),
            command: std::iter::once(a.inv.program.clone())
                .filter(|p| !p.is_empty())
                .chain(a.inv.args.iter().cloned())
                .collect(),
            session: a.outcome.session.clone(),
            model: slot.step.model.clone(),
            attempt_commit: None,
            skipped_engines: a.skipped.clone(),
            usage: a.outcome.usage.clone(),
            resumed_session: None,
            directive: None,
            gate: None,
            iteration: None,
            context: slot.context.clone(),
            log_file: None,
        }
    }

    /// Commit a finished member in its worktree and publish it under `refs/machine/parallel/`.
    fn commit_member(
        &self,
        info: &RunInfo,
        slot: &Slot<'_>,
        record: &mut StepRecord,
        a: &Attempt,
    ) -> CliResult<Oid> {
        let id = &info.id;
        let dir = slot.wt.path.join(id.dir()).join("steps").join(&slot.rec);
        std::fs::create_dir_all(&dir)?;
        let log_file = super::keep_log(&slot.log, &dir)?;
        record.log_file = (log_file != "output.log").then(|| log_file.to_string());
        std::fs::write(dir.join("step.toml"), to_toml(&*record))?;
        std::fs::write(dir.join("prompt.md"), &slot.prompt)?;
        if let Some(m) = &a.outcome.final_message {
            std::fs::write(dir.join("message.md"), m)?;
        }
        let run_dir = id.dir();
        let tree = slot.wt.stage_all(&[run_dir.as_str()])?;
        let head = self.member_head(&slot.wt)?;
        let mut trailers = vec![
            ("Machine-Run", id.as_str()),
            ("Machine-Step", slot.step.id.as_str()),
            ("Machine-Record", slot.rec.as_str()),
            ("Machine-Engine", a.engine.as_str()),
        ];
        if let Some(s) = &a.outcome.session {
            trailers.push(("Machine-Session", s.as_str()));
        }
        let message = commit_message(&format!("{}: {}", slot.step.id, record.summary), &trailers);
        let author = format!("git machine ({})", a.engine);
        let commit = self.repo.commit(
            tree,
            &[head],
            &message,
            Some((&author, "git-machine@localhost")),
        )?;
        let name = RefName::new(format!("{PARALLEL_PREFIX}{id}/{}", slot.step.id));
        let old = self.repo.ref_target(&name);
        self.repo.update_refs(
            &[RefUpdate {
                name,
                old,
                new: Some(commit),
            }],
            &format!("git machine: parallel step {}", slot.step.id),
        )?;
        let _ = std::fs::remove_file(&slot.session);
        Ok(commit)
    }

    /// Ctrl-C during a group: the members that finished are kept done in a checkpoint commit,
    /// so `resume` runs only the others.
    #[allow(clippy::too_many_arguments)]
    fn interrupt_group(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        ctx: &GroupCtx<'_>,
        base: Oid,
        seq: u32,
        commits: &BTreeMap<String, Oid>,
    ) -> CliResult<StepEnd> {
        if commits.len() == info.state.group_done.len() {
            return Ok(StepEnd::Interrupted);
        }
        let mut state = info.state.clone();
        state.seq = seq;
        state.next = Some(ctx.first.clone());
        state.group_base = Some(base.to_string());
        state.group_done = commits
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let names: Vec<&str> = commits.keys().map(String::as_str).collect();
        let tip = info.tip;
        let tree = self.repo.tree_of(tip)?;
        self.commit_merge(
            info,
            wt,
            ctx,
            tree,
            &[tip],
            &format!("{}: interrupted ({} done)", ctx.name, names.join(", ")),
            state,
        )?;
        Ok(StepEnd::Interrupted)
    }

    /// Record the failed members on the run branch; finished members stay done.
    #[allow(clippy::too_many_arguments)]
    fn fail_group(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        ctx: &GroupCtx<'_>,
        base: Oid,
        seq: u32,
        commits: &BTreeMap<String, Oid>,
        failed: Vec<(&Slot<'_>, StepRecord, Attempt)>,
    ) -> CliResult<StepEnd> {
        let id = info.id.clone();
        let mut state = info.state.clone();
        state.seq = seq;
        state.status = Status::Failed;
        state.next = Some(ctx.first.clone());
        state.group_done = commits
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        state.group_base = Some(base.to_string());
        let names: Vec<&str> = failed.iter().map(|(s, _, _)| s.step.id.as_str()).collect();
        state.reason = Some(format!(
            "parallel group `{}`: {} failed; `git machine resume` reruns only {}",
            ctx.name,
            names.join(", "),
            if names.len() == 1 { "it" } else { "those" }
        ));
        let mut records = Vec::new();
        for (slot, record, attempt) in &failed {
            let dir = wt.path.join(id.dir()).join("steps").join(&slot.rec);
            std::fs::create_dir_all(&dir)?;
            let mut record = record.clone();
            let log_file = super::keep_log(&slot.log, &dir)?;
            record.log_file = (log_file != "output.log").then(|| log_file.to_string());
            std::fs::write(dir.join("step.toml"), to_toml(&record))?;
            std::fs::write(dir.join("prompt.md"), &slot.prompt)?;
            if let Some(tail) = &attempt.outcome.final_message {
                let lines: Vec<&str> = tail.lines().collect();
                for line in &lines[lines.len().saturating_sub(10)..] {
                    self.ui.note(&format!("    {}", self.ui.dim(line)));
                }
            }
            records.push(slot.rec.clone());
        }
        std::fs::write(wt.path.join(id.dir()).join("state.toml"), to_toml(&state))?;
        let tree = wt.stage_all(&[id.dir().as_str()])?;
        let records = records.join(",");
        let message = commit_message(
            &format!("{}: failed ({})", ctx.name, names.join(", ")),
            &[
                ("Machine-Run", id.as_str()),
                ("Machine-Group", ctx.name.as_str()),
                ("Machine-Records", records.as_str()),
                ("Machine-Status", "failed"),
            ],
        );
        let current = info.tip;
        let commit = self.repo.commit(tree, &[current], &message, None)?;
        self.repo.update_refs(
            &[RefUpdate {
                name: id.branch(),
                old: Some(current),
                new: Some(commit),
            }],
            &format!("git machine: group {} failed", ctx.name),
        )?;
        info.tip = commit;
        info.state = state;
        self.ui.note(&format!(
            "  {}",
            self.ui
                .yellow(info.state.reason.as_deref().unwrap_or_default())
        ));
        Ok(StepEnd::Failed)
    }

    /// Merge the members' commits (in order) onto the run branch: one merge commit when all
    /// merge cleanly; otherwise stop in `conflict` (or hand the conflict to the resolver step).
    pub(super) fn merge_group(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        ctx: &GroupCtx<'_>,
        mut queue: Vec<(String, Oid)>,
        lock: &mut RunLock,
    ) -> CliResult<StepEnd> {
        let id = info.id.clone();
        let base = info
            .state
            .group_base
            .as_deref()
            .and_then(Oid::parse)
            .unwrap_or(info.tip);
        let base_tree = self.repo.tree_of(base)?;
        loop {
            let tip = info.tip;
            let mut acc = self.repo.tree_of(tip)?;
            let mut clean: Vec<(String, Oid)> = Vec::new();
            let mut conflict = None;
            while let Some((step, commit)) = queue.first().cloned() {
                if self.repo.is_ancestor(commit, tip)? {
                    queue.remove(0); // merged already (by a person, after a conflict)
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
                    Err(paths) => {
                        conflict = Some((step, commit, paths));
                        break;
                    }
                }
            }
            let mut state = info.state.clone();
            let names: Vec<&str> = clean.iter().map(|(s, _)| s.as_str()).collect();
            let mut parents = vec![tip];
            parents.extend(clean.iter().map(|(_, c)| *c));
            let Some((step, commit, paths)) = conflict else {
                state.next = ctx.following.clone();
                state.status = if state.next.is_some() {
                    Status::Running
                } else {
                    Status::Completed
                };
                state.reason = None;
                state.group_done.clear();
                state.group_base = None;
                state.pending_merge.clear();
                state.conflict_paths.clear();
                let subject = if names.is_empty() {
                    format!("{}: merged", ctx.name)
                } else {
                    format!("{}: merge {}", ctx.name, names.join(", "))
                };
                let merge = self.commit_merge(info, wt, ctx, acc, &parents, &subject, state)?;
                self.ui.note(&format!(
                    "{} {} {}",
                    self.ui.green("  merged"),
                    ctx.name,
                    self.ui.dim(&merge.short())
                ));
                return Ok(StepEnd::Committed);
            };
            state.status = Status::Conflict;
            state.next = Some(ctx.first.clone());
            state.group_base = Some(base.to_string());
            state.pending_merge = queue.iter().map(|(s, _)| s.clone()).collect();
            state.conflict_paths = paths.clone();
            state.reason = Some(format!(
                "merging `{step}` into the run conflicts in: {}",
                paths.join(", ")
            ));
            let subject = format!(
                "{}: merge {}(conflict with {step})",
                ctx.name,
                if names.is_empty() {
                    String::new()
                } else {
                    format!("{} ", names.join(", "))
                }
            );
            self.commit_merge(info, wt, ctx, acc, &parents, &subject, state)?;
            // Leave the conflicting merge in the worktree, markers and all.
            let _ = wt.git(&[
                "-c",
                "user.name=git machine",
                "-c",
                "user.email=git-machine@localhost",
                "merge",
                "--no-ff",
                "--no-commit",
                &commit.to_string(),
            ]);
            if let Some(resolver) = ctx.resolver {
                if self.resolve_with(info, wt, ctx, resolver, &step, commit, &paths, lock)? {
                    queue.remove(0);
                    continue;
                }
            }
            self.ui.note(&format!(
                "{} {}",
                self.ui.red("  conflict"),
                info.state.reason.as_deref().unwrap_or_default()
            ));
            self.ui.note(&format!(
                "  resolve in {}: edit the files, `git add` them and `git commit`, then `git machine resume {id}`",
                wt.path.display()
            ));
            return Ok(StepEnd::Conflict);
        }
    }

    /// Commit `tree` plus the checkpoint `state` with `parents` (the tip first, then merged
    /// members), move the run branch to it and the worktree with it.
    #[allow(clippy::too_many_arguments)]
    fn commit_merge(
        &mut self,
        info: &mut RunInfo,
        wt: &Worktree,
        ctx: &GroupCtx<'_>,
        tree: Oid,
        parents: &[Oid],
        subject: &str,
        state: store::State,
    ) -> CliResult<Oid> {
        let id = info.id.clone();
        let files = [(
            format!("{}/state.toml", id.dir()),
            to_toml(&state).into_bytes(),
        )];
        let tree = self.repo.tree_with_files(tree, &files)?;
        let message = commit_message(
            subject,
            &[
                ("Machine-Run", id.as_str()),
                ("Machine-Group", ctx.name.as_str()),
            ],
        );
        let commit = self.repo.commit(
            tree,
            parents,
            &message,
            Some(("git machine", "git-machine@localhost")),
        )?;
        self.repo.update_refs(
            &[RefUpdate {
                name: id.branch(),
                old: Some(info.tip),
                new: Some(commit),
            }],
            &format!("git machine: {subject}"),
        )?;
        wt.reset_hard(commit)?;
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
        ctx: &GroupCtx<'_>,
        resolver: &ResolvedStep,
        member: &str,
        commit: Oid,
        paths: &[String],
        lock: &mut RunLock,
    ) -> CliResult<bool> {
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
        self.ui.note(&format!(
            "  {} {} resolves the conflict",
            self.ui.bold(&resolver.id),
            self.ui.dim("…")
        ));
        let started_at = store::now_rfc3339();
        let started = Instant::now();
        let path_var = self
            .env
            .vars
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| std::ffi::OsString::from(v));
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
            cancel: self.cancel,
            echo: self.echo,
            path_var: path_var.as_deref(),
        };
        let attempt = attempt_step(&run, &mut |pgid| lock.set_step_pgid(pgid))?;
        if !attempt.outcome.success {
            self.ui.note(&format!(
                "  {} {}: {}",
                self.ui.red("failed"),
                resolver.id,
                attempt.outcome.error.as_deref().unwrap_or("")
            ));
            return Ok(false);
        }
        wt.git(&["add", "-A"])?;
        let unmerged = wt.git(&["ls-files", "-u"])?;
        let markers = paths.iter().any(|p| {
            std::fs::read_to_string(wt.path.join(p)).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.starts_with("<<<<<<< ") || l.starts_with(">>>>>>> "))
            })
        });
        if !unmerged.trim().is_empty() || markers {
            self.ui.note(&format!(
                "  {} `{}` left conflicts unresolved",
                self.ui.red("failed"),
                resolver.id
            ));
            return Ok(false);
        }
        let slot = Slot {
            step: resolver,
            rec: rec.clone(),
            wt: Worktree::new(wt.path.clone()),
            prompt: prompt.clone(),
            context: Vec::new(),
            prestart: None,
            log: log.clone(),
            session: session.clone(),
        };
        let mut record = self.member_record(&slot, &attempt, started_at, started.elapsed(), seq);
        let mut state = info.state.clone();
        state.seq = seq;
        state.status = Status::Running;
        state.conflict_paths.clear();
        state.reason = None;
        state.pending_merge.retain(|s| s != member);
        let dir = wt.path.join(id.dir()).join("steps").join(&rec);
        std::fs::create_dir_all(&dir)?;
        let log_file = super::keep_log(&log, &dir)?;
        record.log_file = (log_file != "output.log").then(|| log_file.to_string());
        std::fs::write(dir.join("step.toml"), to_toml(&record))?;
        std::fs::write(dir.join("prompt.md"), &prompt)?;
        std::fs::write(wt.path.join(id.dir()).join("state.toml"), to_toml(&state))?;
        let tree = wt.stage_all(&[id.dir().as_str()])?;
        let message = commit_message(
            &format!(
                "{}: resolve the conflicts of {} with {member}",
                resolver.id, ctx.name
            ),
            &[
                ("Machine-Run", id.as_str()),
                ("Machine-Step", resolver.id.as_str()),
                ("Machine-Record", rec.as_str()),
                ("Machine-Engine", attempt.engine.as_str()),
            ],
        );
        let author = format!("git machine ({})", attempt.engine);
        let tip = info.tip;
        let resolved = self.repo.commit(
            tree,
            &[tip, commit],
            &message,
            Some((&author, "git-machine@localhost")),
        )?;
        self.repo.update_refs(
            &[RefUpdate {
                name: id.branch(),
                old: Some(tip),
                new: Some(resolved),
            }],
            &format!("git machine: {} resolved conflicts", resolver.id),
        )?;
        // The merge is committed: drop git's in-progress merge state.
        let _ = wt.git(&["merge", "--quit"]);
        wt.reset_hard(resolved)?;
        info.tip = resolved;
        info.state = state;
        self.ui.note(&format!(
            "{} {} {}",
            self.ui.green("  ok"),
            resolver.id,
            self.ui.dim(&resolved.short())
        ));
        Ok(true)
    }
}

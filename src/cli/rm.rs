//! `git machine rm`: remove a run's worktree (by path), and its branch when asked.

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::git::{Oid, RefUpdate, Repo, Worktree};
use crate::store::lock::RunLock;
use crate::store::pool::{IfDirty, Pool};
use crate::store::{Paths, RunId, ATTEMPTS_PREFIX};

/// Remove runs' worktrees, and with --branch their branches and kept tips
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Run ids or unique prefixes of them
    #[arg(required = true, num_args = 1..)]
    pub runs: Vec<String>,
    /// Also delete the branch machine/<run> and the run's attic and attempt refs
    #[arg(long)]
    pub branch: bool,
    /// Remove a worktree holding uncommitted changes (they are kept under
    /// refs/machine/attempts/<run>/ unless --branch deletes those too)
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &mut Ctx, args: &RmArgs) -> CliResult {
    let repo = ctx.repo()?;
    // Every run is found first: a mistake in one removes none.
    let runs = args
        .runs
        .iter()
        .map(|r| find_run(&repo, Some(r)))
        .collect::<CliResult<Vec<_>>>()?;
    let paths = Paths::new(&repo, &ctx.env);
    for (id, tip) in &runs {
        remove(ctx, &repo, &paths, id, *tip, args)?;
    }
    Ok(())
}

/// A person's edits (or a step's partial work) in the run's worktree: refused without
/// `--force`, kept as an attempt with it.
fn keep_changes(
    ctx: &mut Ctx,
    repo: &Repo,
    paths: &Paths,
    id: &RunId,
    tip: Oid,
    force: bool,
) -> CliResult<Option<String>> {
    let wt = Worktree::new(paths.worktree(id));
    if !wt.is_valid() {
        return Ok(None);
    }
    let changes = wt.changes()?;
    if changes.is_empty() {
        return Ok(None);
    }
    if !force {
        return Err(CliError::usage(format!(
            "run {id}'s worktree holds uncommitted changes (your edits, or a step's unfinished work)"
        ))
        .caused_by(changes.iter().take(10).cloned().collect::<Vec<_>>().join("\n"))
        .with_hint(format!(
            "nothing was removed; `git machine resume {id}` commits a paused run's edits as a review, or `--force` removes the worktree and keeps them under refs/machine/attempts/{id}/"
        )));
    }
    let mut progress = crate::ui::progress::Progress::new(&mut ctx.ui, false);
    let rt = crate::engine::process::event_loop()?;
    let runner = crate::runner::Runner {
        repo,
        paths: paths.clone(),
        sink: &mut progress,
        env: &ctx.env,
        controls: &ctx.controls,
        echo: false,
        jobs: 1,
        rt: &rt,
        person: None,
        secrets_seen: Default::default(),
        watch: Default::default(),
    };
    let kept = runner.keep_before_removing(id, &wt, tip)?;
    if let Some(name) = &kept {
        ctx.ui
            .note(&format!("kept the worktree's changes as {name}"));
    }
    Ok(kept)
}

fn remove(
    ctx: &mut Ctx,
    repo: &Repo,
    paths: &Paths,
    id: &RunId,
    tip: Oid,
    args: &RmArgs,
) -> CliResult {
    let lock = RunLock::acquire(&paths.lock(id), id.as_str())?;
    crate::store::clear_stale_ref_locks(repo, id)?;
    let kept = keep_changes(ctx, repo, paths, id, tip, args.force)?;
    let wt = paths.worktree(id);
    // Clean worktrees go to the pool for the next run; what they held beyond the tip was
    // refused or kept above.
    let pool = Pool::new(repo, paths)?;
    pool.release(repo, &wt, IfDirty::Remove)?;
    for member in paths.member_worktrees(id) {
        pool.release(repo, &member, IfDirty::Remove)?;
    }
    if let Some(logs) = paths.log(id, "x").parent() {
        let _ = std::fs::remove_dir_all(logs);
    }
    if let Some(parent) = wt.parent() {
        // The repository's folder of worktrees goes with its last run (fails while not empty).
        let _ = std::fs::remove_dir(parent);
    }
    ctx.ui.out(&format!(
        "removed the worktree of run {id} ({})",
        wt.display()
    ));
    if args.branch {
        let mut updates = vec![RefUpdate {
            name: id.branch(),
            old: Some(tip),
            new: None,
        }];
        for prefix in [
            id.attic_prefix(),
            format!("{ATTEMPTS_PREFIX}{id}/"),
            format!("{}{id}/", crate::store::PARALLEL_PREFIX),
        ] {
            for (name, oid) in repo.refs_under(&prefix)? {
                // The edits just kept stay, even with the rest of the run.
                if kept.as_deref() == Some(name.as_str()) {
                    continue;
                }
                updates.push(RefUpdate {
                    name,
                    old: Some(oid),
                    new: None,
                });
            }
        }
        crate::store::txn::move_refs(repo, &updates, &format!("git machine: remove run {id}"))?;
        // The run is gone: so is the event log `watch` read it from.
        let events = paths.events(id);
        let _ = std::fs::remove_file(events.with_extension("jsonl.1"));
        let _ = std::fs::remove_file(events);
        ctx.ui.out(&format!(
            "deleted branch machine/{id} (was {})",
            tip.short()
        ));
        if let Some(name) = &kept {
            ctx.ui.note(&format!(
                "{name} keeps the worktree's changes; `git update-ref -d {name}` when they are no longer needed"
            ));
        }
    } else {
        ctx.ui.out(&format!(
            "branch machine/{id} is kept; `git machine rm --branch {id}` deletes it"
        ));
    }
    drop(lock);
    Ok(())
}

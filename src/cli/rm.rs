//! `git machine rm`: remove a run's worktree (by path), and its branch when asked.

use clap::Args;

use super::error::CliResult;
use super::{find_run, Ctx};
use crate::git::RefUpdate;
use crate::store::lock::RunLock;
use crate::store::{Paths, ATTEMPTS_PREFIX};

/// Remove a run's worktree, and with --branch its branch and kept tips
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Run id or a unique prefix of it
    pub run: String,
    /// Also delete the branch machine/<run> and the run's attic and attempt refs
    #[arg(long)]
    pub branch: bool,
}

pub fn run(ctx: &mut Ctx, args: &RmArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, tip) = find_run(&repo, Some(&args.run))?;
    let paths = Paths::new(&repo, &ctx.env);
    let lock = RunLock::acquire(&paths.lock(&id), id.as_str())?;
    let wt = paths.worktree(&id);
    repo.worktree_remove(&wt)?;
    for member in paths.member_worktrees(&id) {
        repo.worktree_remove(&member)?;
    }
    if let Some(logs) = paths.log(&id, "x").parent() {
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
                updates.push(RefUpdate {
                    name,
                    old: Some(oid),
                    new: None,
                });
            }
        }
        crate::store::txn::move_refs(&repo, &updates, &format!("git machine: remove run {id}"))?;
        // The run is gone: so is the event log `watch` read it from.
        let events = paths.events(&id);
        let _ = std::fs::remove_file(events.with_extension("jsonl.1"));
        let _ = std::fs::remove_file(events);
        ctx.ui.out(&format!(
            "deleted branch machine/{id} (was {})",
            tip.short()
        ));
    } else {
        ctx.ui.out(&format!(
            "branch machine/{id} is kept; `git machine rm --branch {id}` deletes it"
        ));
    }
    drop(lock);
    Ok(())
}

//! The runner's side of the worktree pool (`store::pool`): which worktrees it hands back, and
//! when. A run's worktree goes back when the run completes; a member's when its commit is
//! published. Creating them is [`crate::store::pool::Pool::acquire`], called where a run or a
//! member gets its worktree.

use super::Runner;
use crate::error::Result;
use crate::git::{Oid, Worktree};
use crate::store::pool::{IfDirty, Pool, Released};
use crate::store::RunId;

impl Runner<'_> {
    /// This repository's worktree pool, bounded as configured.
    pub(super) fn pool(&self) -> Result<Pool> {
        Pool::new(self.repo, &self.paths)
    }

    /// A completed run's worktree goes to the pool; one holding changes nobody committed (a
    /// person's edits) stays where it is.
    pub(super) fn release_worktree(&self, id: &RunId) -> Result<Released> {
        self.pool()?
            .release(self.repo, &self.paths.worktree(id), IfDirty::Keep)
    }

    /// A member's worktree after its commit was published: HEAD moved onto the commit (its
    /// index and files already hold it: the commit's tree was written from the index after
    /// `git add -A`), then to the pool.
    pub(super) fn release_member(&self, wt: &Worktree, commit: Oid) -> Result<Released> {
        wt.detach_head_at(commit)?;
        self.pool()?
            .release(self.repo, &wt.path, IfDirty::KnownClean)
    }
}

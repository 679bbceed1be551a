//! The runner's side of the worktree pool (`store::pool`): which worktrees it hands back, and
//! when. A run's worktree goes back when the run completes; members' once the
//! group's members have all ended, parked side by side. Creating them is [`crate::store::pool::Pool::acquire`], called where a run or a
//! member gets its worktree.

use super::Runner;
use crate::error::Result;
use std::path::Path;

use crate::git::Oid;
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

    /// What a completed run's release left undone when the process was killed in the middle
    /// of it: its worktree, still at its path, goes to the pool; one already moved into the
    /// pool is made known to git there.
    pub(super) fn finish_release(&self, id: &RunId) -> Result {
        if self.paths.worktree(id).exists() {
            self.release_worktree(id)?;
        }
        self.pool()?.heal(self.repo)
    }

    /// Finished members' worktrees after their commits were published: HEAD moved onto each
    /// one's commit (its index and files already hold it: the commit's tree was staged from
    /// them), then to the pool, parked side by side. Best effort: a worktree that cannot be
    /// pooled stays at its member's path, which the next run of the group removes.
    pub(super) fn release_members(&self, done: &[(&Path, Oid)]) {
        if let Ok(pool) = self.pool() {
            let _ = pool.release_members(self.repo, done);
        }
    }
}

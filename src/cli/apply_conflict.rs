//! An `apply` that meets a conflict stops the way `git cherry-pick` does: the steps before it
//! are on the branch, the conflicting step's change is in the checkout with git's markers, and
//! the person resolves it, `git add`s the files and runs `git machine apply --continue` (which
//! commits the resolution as that step and applies the rest), or `--abort` (which puts the
//! branch back where it was before the apply). What is pending is kept in
//! `<git dir>/machine/apply.toml`.

use serde::{Deserialize, Serialize};

use super::error::{CliError, CliResult};
use super::Ctx;
use crate::git::{Oid, RefName, RefUpdate, Repo, Worktree};
use crate::store::Paths;

/// The apply waiting for the person.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    pub run: String,
    /// The full ref name of the branch.
    pub branch: String,
    /// The branch before the apply, for `--abort`.
    pub original: Oid,
    /// The run commit whose change conflicts.
    pub from: Oid,
    /// The commit message the resolution gets, its trailers included.
    pub message: String,
    pub author: String,
    pub email: String,
}

/// Whether commits made on the user's branch are signed (`commit.gpgsign`).
pub fn signs(repo: &Repo) -> bool {
    repo.config_bool("commit.gpgsign").unwrap_or(false)
}

/// A commit for the user's branch: signed by git when `sign`, else made directly.
pub fn land(
    repo: &Repo,
    sign: bool,
    tree: Oid,
    parent: Oid,
    message: &str,
    author: Option<(&str, &str)>,
) -> crate::git::Result<Oid> {
    if sign {
        repo.commit_signed(tree, &[parent], message, author)
    } else {
        repo.commit(tree, &[parent], message, author)
    }
}

/// Read the pending apply, if there is one.
pub fn pending(paths: &Paths) -> CliResult<Option<Pending>> {
    let path = paths.apply_state();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        CliError::failed(format!("{}: not an apply in progress: {e}", path.display())).with_hint(
            "`git machine apply --abort` cannot read it either; remove the file to start over",
        )
    })
}

/// The step's change conflicts: land what merged cleanly (`cur`), put the conflicting change
/// in the checkout, keep what is pending, and say how to go on.
#[allow(clippy::too_many_arguments)]
pub fn stop(
    repo: &Repo,
    paths: &Paths,
    user: &Worktree,
    head: Oid,
    cur: Oid,
    (before, next): (Oid, Oid),
    pending: Pending,
) -> CliResult {
    if cur != head {
        user.switch_trees(head, cur)?;
        repo.update_refs(
            &[RefUpdate {
                name: RefName::new(pending.branch.clone()),
                old: Some(head),
                new: Some(cur),
            }],
            &format!("git machine: apply run {}", pending.run),
        )?;
    }
    // The step's change alone, without the run's own files, as a commit git can pick.
    let base = repo.commit(before, &[], "git machine: apply base", None)?;
    let pick = repo.commit(next, &[base], &pending.message, None)?;
    let conflicted = user.pick_without_commit(pick)?;
    user.forget_pick();
    let subject = pending.message.lines().next().unwrap_or("").to_string();
    let run = pending.run.clone();
    std::fs::create_dir_all(paths.apply_state().parent().expect("in the git dir"))?;
    std::fs::write(paths.apply_state(), crate::store::to_toml(&pending))?;
    Err(CliError::failed(format!(
        "applying `{subject}` of run {run} conflicts in: {}",
        conflicted.join(", ")
    ))
    .with_hint(
        "resolve them in your checkout and `git add` them, then `git machine apply --continue`; \
         or `git machine apply --abort` puts your branch back as it was",
    ))
}

/// `--continue`: commit the person's resolution as the step, then the rest of the run.
pub fn resume(ctx: &mut Ctx, repo: &Repo, paths: &Paths, user: &Worktree) -> CliResult<String> {
    let Some(p) = pending(paths)? else {
        return Err(CliError::usage("no apply is waiting for a resolution")
            .with_hint("`git machine apply <run>` applies a run"));
    };
    let unresolved = user.unmerged_paths()?;
    if !unresolved.is_empty() {
        return Err(
            CliError::usage(format!("still in conflict: {}", unresolved.join(", ")))
                .with_hint("edit them, `git add` them, then `git machine apply --continue` again"),
        );
    }
    let head = repo
        .head_commit()
        .ok_or_else(|| CliError::failed("the branch has no commit"))?;
    let tree = user.index_tree()?;
    let author = Some((p.author.as_str(), p.email.as_str()));
    let commit = land(repo, signs(repo), tree, head, &p.message, author)?;
    repo.update_refs(
        &[RefUpdate {
            name: RefName::new(p.branch.clone()),
            old: Some(head),
            new: Some(commit),
        }],
        &format!("git machine: apply run {} (resolved)", p.run),
    )?;
    std::fs::remove_file(paths.apply_state())?;
    let subject = p.message.lines().next().unwrap_or("").to_string();
    ctx.ui
        .out(&format!("{} {subject} (resolved)", commit.short()));
    Ok(p.run)
}

/// `--abort`: the branch, index and files back as before the apply (untracked files kept).
pub fn abort(ctx: &mut Ctx, paths: &Paths, user: &Worktree) -> CliResult {
    let Some(p) = pending(paths)? else {
        return Err(CliError::usage("no apply is waiting for a resolution"));
    };
    user.reset_merge(p.original)?;
    std::fs::remove_file(paths.apply_state())?;
    ctx.ui.out(&format!(
        "put {} back at {}; run {} is not applied",
        p.branch.trim_start_matches("refs/heads/"),
        p.original.short(),
        p.run
    ));
    Ok(())
}

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
    /// Who wrote the step (the committer's identity when the whole run is squashed).
    pub author: Option<Author>,
    /// The whole run squashed into one commit: nothing is left to apply after it.
    #[serde(default)]
    pub squash: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// How commits are made for the user's branch: as `git cherry-pick` makes them. Each message
/// goes through the `prepare-commit-msg` hook, the commit is signed by git when
/// `commit.gpgsign` says so, and `post-commit` runs for each once the branch has moved. A dry
/// run runs no hook and signs nothing.
pub struct Landing<'a> {
    pub repo: &'a Repo,
    pub user: &'a Worktree,
    /// Signed (`commit.gpgsign`).
    pub sign: bool,
    /// Hooks run (not in a dry run).
    pub hooks: bool,
}

impl<'a> Landing<'a> {
    pub fn new(repo: &'a Repo, user: &'a Worktree, dry_run: bool) -> Landing<'a> {
        Landing {
            repo,
            user,
            sign: !dry_run && repo.config_bool("commit.gpgsign").unwrap_or(false),
            hooks: !dry_run,
        }
    }

    /// A commit of `tree` on `parent`, not yet on any branch.
    pub fn commit(
        &self,
        tree: Oid,
        parent: Oid,
        message: &str,
        author: Option<(&str, &str)>,
    ) -> CliResult<Oid> {
        let message = if self.hooks {
            self.user.prepare_commit_msg(message).map_err(|e| {
                CliError::failed(format!("the prepare-commit-msg hook refused a commit: {e}"))
                    .with_hint(
                    "the commits before it are not on your branch; fix the hook, then apply again",
                )
            })?
        } else {
            message.to_string()
        };
        let made = if self.sign {
            self.repo.commit_signed(tree, &[parent], &message, author)
        } else {
            self.repo.commit(tree, &[parent], &message, author)
        };
        Ok(made?)
    }

    /// After the branch moved over `landed` new commits: `post-commit` once for each, as a
    /// cherry-pick of as many commits runs it (its failure changes nothing, as in git).
    pub fn landed(&self, landed: usize) {
        if self.hooks {
            for _ in 0..landed {
                let _ = self.user.run_hook("post-commit", &[]);
            }
        }
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
pub fn stop(
    landing: &Landing,
    paths: &Paths,
    (head, cur, landed): (Oid, Oid, usize),
    (before, next): (Oid, Oid),
    pending: Pending,
) -> CliResult {
    let (repo, user) = (landing.repo, landing.user);
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
        landing.landed(landed);
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

/// `--continue`: commit the person's resolution as the step with `git commit` itself (its hooks
/// run and it signs, as after `git cherry-pick --continue`). The run, if steps are left to
/// apply after it (none when the run was squashed).
pub fn resume(
    ctx: &mut Ctx,
    repo: &Repo,
    paths: &Paths,
    user: &Worktree,
) -> CliResult<Option<String>> {
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
    let on = repo.head_branch();
    if on.as_ref().map(RefName::as_str) != Some(p.branch.as_str()) {
        return Err(CliError::usage(format!(
            "the apply of run {} stopped on {}, but {} is checked out",
            p.run,
            p.branch.trim_start_matches("refs/heads/"),
            on.map_or("no branch".to_string(), |b| b
                .as_str()
                .trim_start_matches("refs/heads/")
                .to_string())
        ))
        .with_hint("check that branch out again, then `git machine apply --continue`"));
    }
    let author = p
        .author
        .as_ref()
        .map(|a| (a.name.as_str(), a.email.as_str()));
    let commit = user.commit_index(&p.message, author).map_err(|e| {
        CliError::failed(format!("the resolution was not committed: {e}")).with_hint(
            "the apply still waits; fix what stopped it, then `git machine apply --continue` again",
        )
    })?;
    std::fs::remove_file(paths.apply_state())?;
    let subject = p.message.lines().next().unwrap_or("").to_string();
    ctx.ui
        .out(&format!("{} {subject} (resolved)", commit.short()));
    Ok((!p.squash).then_some(p.run))
}

/// `--abort`: the branch, index and files back as before the apply (untracked files kept).
pub fn abort(ctx: &mut Ctx, paths: &Paths, user: &Worktree) -> CliResult {
    let Some(p) = pending(paths)? else {
        return Err(CliError::usage("no apply is waiting for a resolution")
            .with_hint("`--abort` puts back an apply that stopped on a conflict; there is none"));
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

//! `git machine apply`: put a run's code changes on the user's current branch.
//!
//! Each step's change (its tree minus the run's own `.codemachine/runs/<run>/`) is merged onto
//! HEAD three-way, in memory; only when every step applied cleanly are the user's files, index
//! and branch updated. A conflict, a dirty checkout or a file in the way changes nothing.

use std::collections::BTreeSet;

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::git::{GitError, Oid, RefUpdate, Worktree};
use crate::store::txn::trailer;
use crate::store::{self, Paths, RunId, Status, StepStatus};

/// Put a run's code changes on the current branch, one commit per step or squashed
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Run id or a unique prefix of it (default: the most recent run)
    pub run: Option<String>,
    /// Make one commit of the whole run
    #[arg(long)]
    pub squash: bool,
    /// Apply a run that is not completed (failed, paused, interrupted): what it has so far
    #[arg(long)]
    pub partial: bool,
    /// Say what would be applied, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// After a conflict: commit your resolution (resolved and `git add`ed) and apply the rest
    #[arg(long = "continue", conflicts_with_all = ["abort", "squash", "dry_run"])]
    pub continue_: bool,
    /// After a conflict: put your branch back as it was before the apply
    #[arg(long, conflicts_with_all = ["squash", "dry_run"])]
    pub abort: bool,
}

pub fn run(ctx: &mut Ctx, args: &ApplyArgs) -> CliResult {
    let repo = ctx.repo()?;
    let workdir = repo
        .workdir()
        .ok_or_else(|| CliError::usage("`apply` needs a checkout; this repository is bare"))?
        .to_path_buf();
    let paths = Paths::new(&repo, &ctx.env);
    if args.continue_ || args.abort {
        let user = Worktree::new(workdir.clone());
        if args.abort {
            return super::apply_conflict::abort(ctx, &paths, &user);
        }
        let run = super::apply_conflict::resume(ctx, &repo, &paths, &user)?;
        let rest = ApplyArgs {
            run: Some(run),
            squash: false,
            partial: true,
            dry_run: false,
            continue_: false,
            abort: false,
        };
        return self::run(ctx, &rest);
    }
    if let Some(p) = super::apply_conflict::pending(&paths)? {
        return Err(CliError::usage(format!(
            "an apply of run {} is waiting for a resolution",
            p.run
        ))
        .with_hint("`git machine apply --continue` once the conflicts are resolved and added, or `git machine apply --abort`"));
    }
    let (id, tip) = find_run(&repo, args.run.as_deref())?;
    let info = store::read_run_at(&repo, &id, tip)?;
    if info.state.status != Status::Completed && !args.partial {
        let at = info
            .state
            .next
            .as_ref()
            .map(|s| format!(" at step `{s}`"))
            .unwrap_or_default();
        return Err(CliError::usage(format!(
            "run {id} is not completed: it is {}{at}",
            status_word(info.state.status)
        ))
        .with_hint(format!(
            "finish it with `git machine resume {id}`, or land what it has so far with `git machine apply {id} --partial`"
        )));
    }
    let (start, commits) = store::step_commits(&repo, &info)?;
    let user = Worktree::new(workdir);
    let changed = user.tracked_changes()?;
    if !changed.is_empty() {
        return Err(CliError::usage(
            "your checkout has uncommitted changes; `apply` would mix them with the run's",
        )
        .caused_by(
            changed
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .with_hint("commit or stash them first (`git stash`), then apply again"));
    }
    let branch = repo.head_branch().ok_or_else(|| {
        CliError::usage("HEAD is detached").with_hint("check out the branch to apply the run to")
    })?;
    let head = repo
        .head_commit()
        .ok_or_else(|| CliError::usage("the current branch has no commits yet"))?;
    let worktree = paths.worktree(&id);
    // Signed as the user's own commits are, when `commit.gpgsign` says so (git signs them).
    let sign = !args.dry_run && super::apply_conflict::signs(&repo);
    let commit = |tree: Oid, parent: Oid, msg: &str, author: Option<(&str, &str)>| {
        super::apply_conflict::land(&repo, sign, tree, parent, msg, author)
    };
    let strip = |commit: Oid| -> CliResult<Oid> {
        Ok(repo.tree_without(repo.tree_of(commit)?, &id.dir())?)
    };
    let done: Vec<_> = commits
        .iter()
        .filter(|c| c.record.status == StepStatus::Succeeded)
        .collect();
    let first = strip(start)?;
    let (already, squashed) = applied(&repo, &id, start, head)?;
    let mut cur = head;
    let mut made = Vec::new();
    let mut skipped = 0usize;
    let merge = |prev: Oid, cur: Oid, next: Oid, what: &str| -> CliResult<Oid> {
        match repo.merge_trees(prev, repo.tree_of(cur)?, next)? {
            Ok(tree) => Ok(tree),
            Err(paths) => Err(CliError::failed(format!(
                "{what} conflicts with your branch in: {}",
                paths.join(", ")
            ))
            .with_hint(format!(
                "nothing was changed; bring the run up to date in its own worktree, where its \
                 branch is checked out: `git -C {} rebase {}` (resolve there, `git -C … rebase \
                 --continue`), then `git machine apply {id}` again",
                worktree.display(),
                branch.as_str().trim_start_matches("refs/heads/")
            ))),
        }
    };
    if args.squash && squashed {
        ctx.ui.out(&format!(
            "run {id} is applied to {} already (squashed); nothing to do",
            branch.as_str().trim_start_matches("refs/heads/")
        ));
        return Ok(());
    }
    if args.squash {
        // The run's code as its tip has it (a failure record at the tip changes no code).
        let last = strip(tip)?;
        if last != first {
            let tree = merge(first, cur, last, &format!("run {id}"))?;
            let mut msg = format!("{}: run {id}\n\n", info.record.workflow);
            for c in &done {
                msg.push_str(&format!("- {}: {}\n", c.record.step, c.record.summary));
            }
            msg.push_str(&format!("\nMachine-Run: {id}\n"));
            cur = commit(tree, cur, &msg, None)?;
            made.push(("squashed".to_string(), cur));
        }
    } else {
        // Every commit of the run's first-parent history, in order: step commits, the merge of
        // each parallel group, a person's review commits, commits a step's program made itself.
        // Failure records change no code and are skipped.
        let chain = repo.first_parent_chain(start, tip)?.ok_or_else(|| {
            CliError::failed(format!("run {id}'s start commit is not on its branch"))
        })?;
        let mut parent = start;
        for c in chain {
            let (before, next) = (strip(parent)?, strip(c)?);
            parent = c;
            if before == next {
                continue;
            }
            let (message, author, email) = repo.commit_text(c)?;
            let subject = message.lines().next().unwrap_or("").to_string();
            if already.contains(&c) {
                ctx.ui.note(&format!("already applied: {subject}"));
                skipped += 1;
                continue;
            }
            let trailers = crate::git::parse_trailers(&message);
            let mut msg = format!("{subject}\n\n");
            for key in [
                trailer::RUN,
                trailer::STEP,
                trailer::ENGINE,
                trailer::SESSION,
            ] {
                if let Some(v) = trailers.get(key) {
                    msg.push_str(&format!("{key}: {v}\n"));
                }
            }
            msg.push_str(&format!("{}: {c}\n", trailer::APPLIED_FROM));
            let clean = repo.merge_trees(before, repo.tree_of(cur)?, next)?;
            let tree = match clean {
                Ok(tree) => tree,
                Err(_) if !args.dry_run => {
                    let pending = super::apply_conflict::Pending {
                        run: id.to_string(),
                        branch: branch.as_str().to_string(),
                        original: head,
                        from: c,
                        message: msg,
                        author,
                        email,
                    };
                    return super::apply_conflict::stop(
                        &repo,
                        &paths,
                        &user,
                        head,
                        cur,
                        (before, next),
                        pending,
                    );
                }
                Err(_) => merge(before, cur, next, &format!("`{subject}`"))?,
            };
            cur = commit(tree, cur, &msg, Some((&author, &email)))?;
            made.push((subject, cur));
        }
    }
    if made.is_empty() && skipped > 0 {
        ctx.ui.out(&format!(
            "run {id} is applied to {} already; nothing to do",
            branch.as_str().trim_start_matches("refs/heads/")
        ));
        return Ok(());
    }
    if made.is_empty() {
        ctx.ui
            .out(&format!("nothing to apply: run {id} changed no files"));
        return Ok(());
    }
    if args.dry_run {
        for (step, _) in &made {
            ctx.ui.out(&format!("would apply: {step}"));
        }
        ctx.ui.out(&format!(
            "nothing was changed (--dry-run); {} commit{} would go on {}",
            made.len(),
            if made.len() == 1 { "" } else { "s" },
            branch.as_str().trim_start_matches("refs/heads/")
        ));
        return Ok(());
    }
    // Update files and index first (refusing to overwrite anything), then move the branch.
    if let Err(e) = user.switch_trees(head, cur) {
        return Err(in_the_way(&user, &id, head, cur, e));
    }
    if let Err(e) = repo.update_refs(
        &[RefUpdate {
            name: branch.clone(),
            old: Some(head),
            new: Some(cur),
        }],
        &format!("git machine: apply run {id}"),
    ) {
        let _ = user.switch_trees(cur, head);
        return Err(e.into());
    }
    for (step, oid) in &made {
        ctx.ui.out(&format!("{} {step}", oid.short()));
    }
    ctx.ui.out(&format!(
        "applied run {id} to {} ({} commit{})",
        branch.as_str().trim_start_matches("refs/heads/"),
        made.len(),
        if made.len() == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// The state's name, as `status` shows it.
fn status_word(status: Status) -> &'static str {
    match status {
        Status::Running => "running or interrupted",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Paused => "paused",
        Status::Conflict => "stopped on a merge conflict",
    }
}

/// What of run `id` the branch at `head` has already: the run commits applied one by one (by
/// their `Machine-Applied-From` trailer), and whether the whole run was applied squashed (a
/// commit with its `Machine-Run` and no `Machine-Applied-From`). Only the commits since the
/// run started from the branch's history are read.
fn applied(
    repo: &crate::git::Repo,
    id: &RunId,
    start: Oid,
    head: Oid,
) -> CliResult<(BTreeSet<Oid>, bool)> {
    let base = repo.commit_info(start)?.parents.first().copied();
    let since = match base {
        Some(base) if repo.is_ancestor(base, head)? => repo.commits_between(base, head)?,
        _ => Vec::new(),
    };
    let mut one_by_one = BTreeSet::new();
    let mut squashed = false;
    for c in since {
        let info = repo.commit_info(c)?;
        match (
            info.trailer(trailer::APPLIED_FROM),
            info.trailer(trailer::RUN),
        ) {
            (Some(from), _) => {
                if let Some(oid) = Oid::parse(from) {
                    one_by_one.insert(oid);
                }
            }
            (None, Some(run)) if run == id.as_str() => squashed = true,
            _ => {}
        }
    }
    Ok((one_by_one, squashed))
}

/// What `git read-tree -m -u` says when a file of the user's stands where the run puts one: the
/// path sits between each pair. These are git's plumbing messages, which it never translates.
const UNTRACKED_IN_THE_WAY: [(&str, &str); 3] = [
    (
        "Untracked working tree file '",
        "' would be overwritten by merge.",
    ),
    (
        "Untracked working tree file '",
        "' would be removed by merge.",
    ),
    ("Updating '", "' would lose untracked files in it"),
];
/// The same for a tracked file whose changes `git status` did not show (a file marked
/// `--assume-unchanged` or `--skip-worktree`).
const CHANGED_IN_THE_WAY: [(&str, &str); 2] = [
    ("Entry '", "' not uptodate. Cannot merge."),
    ("Entry '", "' would be overwritten by merge. Cannot merge."),
];

/// The paths a message of `stderr` names with one of `patterns`.
fn named_paths(stderr: &str, patterns: &[(&str, &str)]) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| {
            patterns.iter().find_map(|(before, after)| {
                let start = line.find(before)? + before.len();
                line[start..].strip_suffix(after).map(str::to_string)
            })
        })
        .collect()
}

/// Turn git's refusal to update the user's files into a usage error naming the files in the way.
/// Git names only the first file it trips over, so the untracked ones among the paths the run
/// adds are found here too, so that one round of tidying is enough. Any other failure is
/// passed on as it is.
fn in_the_way(user: &Worktree, id: &RunId, head: Oid, cur: Oid, e: GitError) -> CliError {
    let GitError::Cli { stderr, .. } = &e else {
        return e.into();
    };
    let mut untracked: BTreeSet<String> = named_paths(stderr, &UNTRACKED_IN_THE_WAY)
        .into_iter()
        .collect();
    let changed: BTreeSet<String> = named_paths(stderr, &CHANGED_IN_THE_WAY)
        .into_iter()
        .collect();
    if untracked.is_empty() && changed.is_empty() {
        return e.into();
    }
    untracked.extend(untracked_in_the_way(user, head, cur));
    let nothing = "nothing was changed";
    if changed.is_empty() {
        CliError::usage(format!(
            "run {id} would overwrite untracked files in your checkout: {}",
            list(&untracked)
        ))
        .with_hint(format!(
            "{nothing}; move or remove them, or commit them, then `git machine apply {id}` again"
        ))
    } else {
        let mut err = CliError::usage(format!(
            "run {id} would overwrite local changes in your checkout: {}",
            list(&changed)
        ));
        if !untracked.is_empty() {
            err = err.caused_by(format!("untracked files in the way: {}", list(&untracked)));
        }
        err.with_hint(format!(
            "{nothing}; commit or stash those changes, then `git machine apply {id}` again \
             (`git status` hides changes to files marked `--assume-unchanged` or \
             `--skip-worktree`; `git ls-files -v` shows the marks)"
        ))
    }
}

/// Files and folders of the user's, not known to git, that stand where `cur` adds a path: at the
/// path itself (a file, or a folder holding something) or at one of its parent folders (a file).
fn untracked_in_the_way(user: &Worktree, head: Oid, cur: Oid) -> Vec<String> {
    let Ok(added) = user.added_paths(head, cur) else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    for path in &added {
        let mut parent = String::new();
        for part in path.split('/') {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            let Ok(meta) = user.path.join(&parent).symlink_metadata() else {
                break;
            };
            let last = parent.len() == path.len();
            if !meta.is_dir() {
                found.insert(parent.clone());
                break;
            }
            if last
                && std::fs::read_dir(user.path.join(&parent)).is_ok_and(|mut d| d.next().is_some())
            {
                found.insert(parent.clone());
            }
        }
    }
    // A parent that is a tracked file the run replaces by a folder is not in the way.
    if found.is_empty() {
        return Vec::new();
    }
    let listed: Vec<&str> = found.iter().map(String::as_str).collect();
    let tracked = user.tracked_among(&listed).unwrap_or_default();
    let tracked: BTreeSet<&str> = tracked.iter().map(String::as_str).collect();
    found
        .iter()
        .filter(|p| !tracked.contains(p.as_str()))
        .cloned()
        .collect()
}

/// Paths for a message: the first ten, then how many more.
fn list(paths: &BTreeSet<String>) -> String {
    let mut names: Vec<String> = paths.iter().take(10).cloned().collect();
    if paths.len() > names.len() {
        names.push(format!("and {} more", paths.len() - names.len()));
    }
    names.join(", ")
}

//! `git machine apply`: put a run's code changes on the user's current branch.
//!
//! Each step's change (its tree minus the run's own `.codemachine/runs/<run>/`) is merged onto
//! HEAD three-way, in memory; only when every step applied cleanly are the user's files, index
//! and branch updated. A conflict, a dirty checkout or a file in the way changes nothing.

use std::collections::BTreeSet;

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::git::{GitError, Oid, RefName, RefUpdate, Worktree};
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
        .ok_or_else(|| {
            CliError::usage("`apply` needs a checkout; this repository is bare").with_hint(
                "run it in a clone with a working tree, on the branch to land the run on",
            )
        })?
        .to_path_buf();
    let paths = Paths::new(&repo, &ctx.env);
    let user = Worktree::users(workdir);
    if args.abort {
        return super::apply_conflict::abort(ctx, &paths, &user);
    }
    if args.continue_ {
        let Some(run) = super::apply_conflict::resume(ctx, &repo, &paths, &user)? else {
            return Ok(());
        };
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
        return Err(not_completed(&id, &info));
    }
    let (branch, head) = ready_to_land(&repo, &user)?;
    let apply = Apply {
        repo: &repo,
        paths: &paths,
        landing: super::apply_conflict::Landing::new(&repo, &user, args.dry_run),
        id: &id,
        branch: &branch,
        head,
        dry_run: args.dry_run,
    };
    let (start, commits) = store::step_commits(&repo, &info)?;
    let (already, squashed) = applied(&repo, &id, start, head)?;
    if squashed {
        ctx.ui.out(&format!(
            "run {id} is applied to {} already (squashed); nothing to do",
            apply.branch_name()
        ));
        return Ok(());
    }
    let planned = if args.squash {
        let done: Vec<_> = commits
            .iter()
            .filter(|c| c.record.status == StepStatus::Succeeded)
            .map(|c| format!("- {}: {}\n", c.record.step, c.record.summary))
            .collect();
        apply.squashed(&info.record.workflow, &done, start, tip)?
    } else {
        apply.one_by_one(ctx, &already, start, tip)?
    };
    apply.finish(ctx, planned)
}

/// Why a run that is not completed is not applied, and how to go on.
fn not_completed(id: &RunId, info: &store::RunInfo) -> CliError {
    let at = info
        .state
        .next
        .as_ref()
        .map(|s| format!(" at step `{s}`"))
        .unwrap_or_default();
    CliError::usage(format!(
        "run {id} is not completed: it is {}{at}",
        status_word(info.state.status)
    ))
    .with_hint(format!(
        "finish it with `git machine resume {id}`, or land what it has so far with `git machine apply {id} --partial`"
    ))
}

/// The branch checked out and its commit, once the checkout has no changes `apply` would mix
/// with the run's.
fn ready_to_land(repo: &crate::git::Repo, user: &Worktree) -> CliResult<(RefName, Oid)> {
    let changed = user.tracked_changes()?;
    if !changed.is_empty() {
        let named: Vec<_> = changed.iter().take(5).cloned().collect();
        return Err(CliError::usage(
            "your checkout has uncommitted changes; `apply` would mix them with the run's",
        )
        .caused_by(named.join("\n"))
        .with_hint("commit or stash them first (`git stash`), then apply again"));
    }
    let branch = repo.head_branch().ok_or_else(|| {
        CliError::usage("HEAD is detached").with_hint("check out the branch to apply the run to")
    })?;
    let head = repo.head_commit().ok_or_else(|| {
        CliError::usage("the current branch has no commits yet")
            .with_hint("make a first commit, then apply the run onto it")
    })?;
    Ok((branch, head))
}

/// One apply of a run onto the branch checked out.
struct Apply<'a> {
    repo: &'a crate::git::Repo,
    paths: &'a Paths,
    landing: super::apply_conflict::Landing<'a>,
    id: &'a RunId,
    branch: &'a RefName,
    /// The branch before the apply.
    head: Oid,
    dry_run: bool,
}

/// The commits made for the branch (not on it yet), each with what it says, and how many
/// changes the branch had already.
#[derive(Default)]
struct Planned {
    made: Vec<(String, Oid)>,
    skipped: usize,
}

impl Apply<'_> {
    fn branch_name(&self) -> &str {
        self.branch.as_str().trim_start_matches("refs/heads/")
    }

    /// A commit's tree without the run's own folder: its code.
    fn code(&self, commit: Oid) -> CliResult<Oid> {
        Ok(self
            .repo
            .tree_without(self.repo.tree_of(commit)?, &self.id.dir())?)
    }

    /// The whole run as one commit: the code as its tip has it (a failure record at the tip
    /// changes no code).
    fn squashed(
        &self,
        workflow: &str,
        done: &[String],
        start: Oid,
        tip: Oid,
    ) -> CliResult<Planned> {
        let (first, last) = (self.code(start)?, self.code(tip)?);
        let mut planned = Planned::default();
        if last == first {
            return Ok(planned);
        }
        let id = self.id;
        let msg = format!(
            "{workflow}: run {id}\n\n{}\n{}: {id}\n",
            done.concat(),
            trailer::RUN
        );
        let Some(tree) = self.merge(
            (first, last),
            self.head,
            &format!("run {id}"),
            || (tip, msg.clone(), None, true),
            0,
        )?
        else {
            planned.skipped += 1;
            return Ok(planned);
        };
        let made = self.landing.commit(tree, self.head, &msg, None)?;
        planned.made.push(("squashed".to_string(), made));
        Ok(planned)
    }

    /// Every commit of the run's first-parent history, in order: step commits, the merge of
    /// each parallel group, a person's review commits, commits a step's program made itself.
    /// Failure records change no code and are skipped, and so are the changes the branch has.
    fn one_by_one(
        &self,
        ctx: &mut Ctx,
        already: &BTreeSet<Oid>,
        start: Oid,
        tip: Oid,
    ) -> CliResult<Planned> {
        let chain = self.repo.first_parent_chain(start, tip)?.ok_or_else(|| {
            CliError::failed(format!(
                "run {}'s start commit is not on its branch",
                self.id
            ))
        })?;
        let mut planned = Planned::default();
        let (mut parent, mut cur) = (start, self.head);
        for c in chain {
            let change = (self.code(parent)?, self.code(c)?);
            parent = c;
            if change.0 == change.1 {
                continue;
            }
            let (message, author, email) = self.repo.commit_text(c)?;
            let subject = message.lines().next().unwrap_or("").to_string();
            if already.contains(&c) {
                ctx.ui.note(&format!("already applied: {subject}"));
                planned.skipped += 1;
                continue;
            }
            let msg = applied_message(&subject, &message, c);
            let author = (author, email);
            let conflict = || (c, msg.clone(), Some(author.clone()), false);
            let what = format!("`{subject}`");
            let Some(tree) = self.merge(change, cur, &what, conflict, planned.made.len())? else {
                ctx.ui.note(&format!("already on your branch: {subject}"));
                planned.skipped += 1;
                continue;
            };
            cur = self
                .landing
                .commit(tree, cur, &msg, Some((&author.0, &author.1)))?;
            planned.made.push((subject, cur));
        }
        Ok(planned)
    }

    /// The change `before → next` merged onto `cur`: the tree for its commit, or none when the
    /// branch has it all already. A conflict stops the apply for the person (`landed` commits
    /// made before it go on the branch first), and a dry run only says so.
    fn merge(
        &self,
        (before, next): (Oid, Oid),
        cur: Oid,
        what: &str,
        conflict: impl FnOnce() -> (Oid, String, Option<(String, String)>, bool),
        landed: usize,
    ) -> CliResult<Option<Oid>> {
        let ours = self.repo.tree_of(cur)?;
        match self.repo.merge_trees(before, ours, next)? {
            Ok(tree) => Ok((tree != ours).then_some(tree)),
            Err(paths) if self.dry_run => Err(CliError::failed(format!(
                "{what} would conflict with your branch in: {}",
                paths.join(", ")
            ))
            .with_hint(format!(
                "nothing was changed (--dry-run); `git machine apply {}` stops at the conflict for you to resolve",
                self.id
            ))),
            Err(_) => {
                let (from, message, author, squash) = conflict();
                let pending = super::apply_conflict::Pending {
                    run: self.id.to_string(),
                    branch: self.branch.as_str().to_string(),
                    original: self.head,
                    from,
                    message,
                    author: author
                        .map(|(name, email)| super::apply_conflict::Author { name, email }),
                    squash,
                };
                let at = (self.head, cur, landed);
                super::apply_conflict::stop(&self.landing, self.paths, at, (before, next), pending)
                    .map(|()| None)
            }
        }
    }

    /// Land what was planned: files and index first (refusing to overwrite anything), then
    /// the branch; or, in a dry run, say what would land.
    fn finish(&self, ctx: &mut Ctx, planned: Planned) -> CliResult {
        let (id, on) = (self.id, self.branch_name());
        let Some(&(_, tip)) = planned.made.last() else {
            ctx.ui.out(&if planned.skipped > 0 {
                format!("run {id} is applied to {on} already; nothing to do")
            } else {
                format!("nothing to apply: run {id} changed no files")
            });
            return Ok(());
        };
        let n = planned.made.len();
        let commits = format!("{n} commit{}", if n == 1 { "" } else { "s" });
        if self.dry_run {
            for (step, _) in &planned.made {
                ctx.ui.out(&format!("would apply: {step}"));
            }
            ctx.ui.out(&format!(
                "nothing was changed (--dry-run); {commits} would go on {on}"
            ));
            return Ok(());
        }
        let user = self.landing.user;
        if let Err(e) = user.switch_trees(self.head, tip) {
            return Err(in_the_way(user, id, self.head, tip, e));
        }
        let update = RefUpdate {
            name: self.branch.clone(),
            old: Some(self.head),
            new: Some(tip),
        };
        if let Err(e) = self
            .repo
            .update_refs(&[update], &format!("git machine: apply run {id}"))
        {
            let _ = user.switch_trees(tip, self.head);
            return Err(e.into());
        }
        self.landing.landed(n);
        for (step, oid) in &planned.made {
            ctx.ui.out(&format!("{} {step}", oid.short()));
        }
        ctx.ui.out(&format!("applied run {id} to {on} ({commits})"));
        Ok(())
    }
}

/// The message of a run commit as applied: its subject, the run's trailers, and where it
/// came from (how a second apply recognises it).
fn applied_message(subject: &str, message: &str, from: Oid) -> String {
    let trailers = crate::git::parse_trailers(message);
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
    msg.push_str(&format!("{}: {from}\n", trailer::APPLIED_FROM));
    msg
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

//! `git machine rewind`: make a step the next to run again, keeping the abandoned tip.

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::git::{RefName, RefUpdate, Worktree};
use crate::runner::Runner;
use crate::store::lock::RunLock;
use crate::store::{self, Paths};

/// Make a step the next to run; the abandoned tip stays under refs/machine/attic
#[derive(Args, Debug)]
pub struct RewindArgs {
    /// [RUN] STEP: the run (id or unique prefix; default the most recent) and the step to run
    /// next (its latest execution is undone, with everything after it); with --undo, only [RUN]
    #[arg(value_names = ["RUN", "STEP"], num_args = 0..=2)]
    pub words: Vec<String>,
    /// Restore the tip the last rewind abandoned
    #[arg(long)]
    pub undo: bool,
}

pub fn run(ctx: &mut Ctx, args: &RewindArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (run, step) = match (args.undo, args.words.as_slice()) {
        (true, []) => (None, None),
        (true, [run]) => (Some(run.as_str()), None),
        (false, [step]) => (None, Some(step.as_str())),
        (false, [run, step]) => (Some(run.as_str()), Some(step.as_str())),
        (true, _) => {
            return Err(CliError::usage("`rewind --undo` takes at most the run")
                .with_hint("git machine rewind --undo [RUN]"))
        }
        (false, _) => {
            return Err(CliError::usage("`rewind` needs the step to run next")
                .with_hint("git machine rewind [RUN] STEP, or git machine rewind --undo [RUN]"))
        }
    };
    let (id, tip) = find_run(&repo, run)?;
    let paths = Paths::new(&repo, &ctx.env);
    let _lock = RunLock::acquire(&paths.lock(&id), id.as_str())?;
    store::clear_stale_ref_locks(&repo, &id)?;
    let attic = repo.refs_under(&id.attic_prefix())?;
    let number = |name: &RefName| {
        name.as_str()
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let mut progress = crate::ui::progress::Progress::new(&mut ctx.ui, false);
    let rt = crate::engine::process::event_loop()?;
    let mut runner = Runner {
        rt: &rt,
        person: None,
        secrets_seen: Default::default(),
        watch: Default::default(),
        repo: &repo,
        paths: paths.clone(),
        sink: &mut progress,
        env: &ctx.env,
        controls: &ctx.controls,
        echo: false,
        jobs: 1,
    };
    let wt = Worktree::new(paths.worktree(&id));
    if wt.is_valid() {
        runner.clear_stale_git_locks(&id, &wt)?;
    }
    let checkpoint = runner.last_machine_commit(&id, tip)?;
    let info = store::read_run_at(&repo, &id, checkpoint)?;
    let (target, mut updates, message) = if args.undo {
        let Some((name, restored)) = attic.iter().max_by_key(|(n, _)| number(n)).cloned() else {
            return Err(
                CliError::usage(format!("run {id} has no rewind to undo")).with_hint(format!(
                    "`--undo` takes back a `git machine rewind {id} <step>`; `git machine log {id}` shows the run's steps"
                )),
            );
        };
        // The tip being left is kept in the same attic slot unless the restored one contains it,
        // so undoing an undo works and nothing becomes unreachable.
        let keep = if repo.is_ancestor(tip, restored)? {
            None
        } else {
            Some(tip)
        };
        let updates = vec![
            RefUpdate {
                name: id.branch(),
                old: Some(tip),
                new: Some(restored),
            },
            RefUpdate {
                name: name.clone(),
                old: Some(restored),
                new: keep,
            },
        ];
        (
            restored,
            updates,
            format!("restored run {id} to {}", restored.short()),
        )
    } else {
        let step = step.expect("a step is given without --undo");
        let (_, commits) = store::step_commits(&repo, &info)?;
        let Some(found) = commits
            .iter()
            .rev()
            .find(|c| c.record.step == step || c.record_name.as_str() == step)
        else {
            let executed: Vec<&str> = commits.iter().map(|c| c.record.step.as_str()).collect();
            return Err(
                CliError::usage(format!("step `{step}` of run {id} has not run yet")).with_hint(
                    if executed.is_empty() {
                        "no step of this run has run yet; nothing to rewind".to_string()
                    } else {
                        format!("steps that have run: {}", executed.join(", "))
                    },
                ),
            );
        };
        let n = attic.iter().map(|(n, _)| number(n)).max().unwrap_or(0) + 1;
        let attic_ref = RefName::new(format!("{}{n}", id.attic_prefix()));
        let updates = vec![
            RefUpdate {
                name: id.branch(),
                old: Some(tip),
                new: Some(found.previous),
            },
            RefUpdate {
                name: attic_ref.clone(),
                old: None,
                new: Some(tip),
            },
        ];
        (
            found.previous,
            updates,
            format!(
                "rewound run {id}: `{step}` runs next; the old tip {} is kept as {attic_ref}",
                tip.short()
            ),
        )
    };
    // What the worktree holds beyond the checkpoint is kept, in the same transaction; secret
    // files, never committed, stay in the worktree.
    let mut left_out = Vec::new();
    if wt.is_valid() {
        let rec = format!("{:02}", info.state.seq + 1);
        let (kept, left) = runner.attempt(&id, &wt, info.tip, checkpoint, &rec, "rewound")?;
        if let Some((_, keep)) = kept {
            updates.push(keep);
        }
        left_out = left.into_iter().map(|l| l.path).collect();
    }
    drop(runner);
    crate::store::txn::move_refs(&repo, &updates, &format!("git machine: rewind run {id}"))?;
    if wt.is_valid() {
        wt.reset_keeping(target, &left_out)?;
    }
    ctx.ui.out(&message);
    ctx.ui.out(&format!(
        "continue with `git machine resume {id}`{}",
        if args.undo {
            String::new()
        } else {
            format!(", or undo with `git machine rewind --undo {id}`")
        }
    ));
    Ok(())
}

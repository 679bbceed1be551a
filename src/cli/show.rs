//! `git machine show`: one step's diff as `git show` prints it (git's colours), through the
//! pager git would use.

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::git;
use crate::store;

/// Show the diff of one step, through a pager
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// [RUN] STEP: the run (id or unique prefix; default the most recent) and the step (its
    /// id for its latest execution, or a record number such as 3 or 03-test)
    #[arg(value_names = ["RUN", "STEP"], num_args = 1..=2, required = true)]
    pub words: Vec<String>,
    /// Include the run's own files under .codemachine/
    #[arg(long)]
    pub all: bool,
}

pub fn run(ctx: &mut Ctx, args: &ShowArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (run, step) = match args.words.as_slice() {
        [step] => (None, step.as_str()),
        [run, step] => (Some(run.as_str()), step.as_str()),
        _ => unreachable!("clap takes one or two words"),
    };
    let (id, tip) = find_run(&repo, run)?;
    let info = store::read_run_at(&repo, &id, tip)?;
    let (_, commits) = store::step_commits(&repo, &info)?;
    let wanted = step;
    let found = commits.iter().rev().find(|c| {
        c.record.step == wanted
            || c.record_name.as_str() == wanted
            || wanted.parse::<u32>().is_ok_and(|n| n == c.record.seq)
    });
    let Some(c) = found else {
        // A step number is never taken for a run, though every run id starts with digits.
        if run.is_none() && wanted.parse::<u32>().is_err() {
            if let Ok((named, named_tip)) = find_run(&repo, Some(wanted)) {
                return Err(a_run_not_a_step(&repo, &named, named_tip)?);
            }
        }
        return Err(
            CliError::usage(format!("run {id} has no executed step `{wanted}`")).with_hint(
                match executed(&commits) {
                    Some(known) => format!("executed steps: {known}"),
                    None => NONE_RAN.to_string(),
                },
            ),
        );
    };
    // `git show` of each commit (the step's own and any its program made) keeps every header
    // even when the pathspec hides a commit's whole diff.
    let mut git_args = vec![
        "show".to_string(),
        "--patch".to_string(),
        "--stat".to_string(),
    ];
    git_args.extend(
        repo.commits_between(c.previous, c.commit)?
            .iter()
            .map(|o| o.to_string()),
    );
    if ctx.ui.color {
        git_args.insert(0, "color.ui=always".to_string());
        git_args.insert(0, "-c".to_string());
    }
    if !args.all {
        git_args.extend([
            "--".to_string(),
            ".".to_string(),
            ":(exclude).codemachine".to_string(),
        ]);
    }
    let dir = repo.workdir().unwrap_or(repo.common_dir()).to_path_buf();
    super::page(ctx);
    for l in &c.record.left_out {
        ctx.ui.out(&format!(
            "left out of this commit: {} ({}; still in the run's worktree)",
            l.path, l.reason
        ));
    }
    match git::git_stream(&dir, &git_args, &mut |bytes| ctx.ui.out_bytes(bytes))? {
        git::Streamed::Exited(0) | git::Streamed::ReaderGone => Ok(()),
        git::Streamed::Exited(code) => Err(CliError::failed(format!(
            "`git show` of the step's commits exited with code {code}"
        ))
        .with_hint("its message above says why")),
    }
}

/// The error for `show <run>` alone: the word names a run, and a step must be named too.
fn a_run_not_a_step(repo: &git::Repo, id: &store::RunId, tip: git::Oid) -> CliResult<CliError> {
    let info = store::read_run_at(repo, id, tip)?;
    let (_, commits) = store::step_commits(repo, &info)?;
    let error = CliError::usage(format!("`{id}` is a run: name one of its steps too"));
    Ok(match (commits.last(), executed(&commits)) {
        (Some(last), Some(known)) => error.with_hint(format!(
            "git machine show {id} {}  (its executed steps: {known})",
            last.record_name
        )),
        _ => error.with_hint(NONE_RAN),
    })
}

const NONE_RAN: &str = "no step of this run has run yet";

/// The record names of a run's executed steps, comma-separated; `None` when none ran.
fn executed(commits: &[store::StepCommit]) -> Option<String> {
    let names: Vec<String> = commits.iter().map(|c| c.record_name.to_string()).collect();
    (!names.is_empty()).then(|| names.join(", "))
}

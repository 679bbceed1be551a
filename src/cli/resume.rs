//! `git machine resume`: continue a run from its last step commit.

use clap::Args;

use super::error::CliResult;
use super::{find_run, Ctx};
use crate::runner::Runner;
use crate::store::Paths;

/// Continue a run from its last step commit (retrying a failed step)
#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Run id or a unique prefix of it (default: the most recent run)
    pub run: Option<String>,
    /// Start an interrupted agent step afresh from the last commit instead of continuing its session
    #[arg(long)]
    pub restart_step: bool,
    /// Members of a parallel group that run at once (default: git config machine.jobs, else 4)
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print the steps' output as it arrives
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(ctx: &mut Ctx, args: &ResumeArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, _) = find_run(&repo, args.run.as_deref())?;
    let mut runner = Runner {
        repo: &repo,
        paths: Paths::new(&repo),
        ui: &mut ctx.ui,
        env: &ctx.env,
        cancel: &ctx.cancel,
        echo: args.verbose,
        jobs: super::jobs(&repo, args.jobs)?,
    };
    let end = runner.resume(&id, args.restart_step)?;
    super::run_end(end, &id)
}

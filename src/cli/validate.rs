//! `git machine validate`: check a workflow file without running anything.

use clap::Args;

use super::error::CliResult;
use super::Ctx;
use crate::git::Repo;
use crate::workflow;

/// Check a workflow file and report every problem with its line and column
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Workflow name or path to a .toml file
    pub workflow: String,
}

pub fn run(ctx: &mut Ctx, args: &ValidateArgs) -> CliResult {
    let repo = Repo::discover(&ctx.env.cwd, &ctx.env.git()).ok();
    let wf = workflow::load(
        &ctx.env.cwd,
        repo.as_ref().and_then(|r| r.workdir()),
        &args.workflow,
    )?;
    ctx.ui.out(&format!(
        "{}: ok — workflow `{}`, {} step{}, {} var{}",
        wf.origin,
        wf.name,
        wf.steps.len(),
        if wf.steps.len() == 1 { "" } else { "s" },
        wf.vars.len(),
        if wf.vars.len() == 1 { "" } else { "s" },
    ));
    Ok(())
}

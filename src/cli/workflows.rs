//! `git machine workflows`: the workflows this repository can run.

use clap::Args;
use serde_json::json;

use super::error::CliResult;
use super::Ctx;
use crate::git::Repo;
use crate::workflow;

/// List the workflows of this repository (.codemachine/workflows) and the built-ins
#[derive(Args, Debug)]
pub struct WorkflowsArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &mut Ctx, args: &WorkflowsArgs) -> CliResult {
    let repo = Repo::discover(&ctx.env.cwd, &ctx.env.git()).ok();
    let found = workflow::list(repo.as_ref().and_then(|r| r.workdir()));
    if args.json {
        let list: Vec<_> = found
            .iter()
            .map(|(name, description, origin)| json!({"name": name, "description": description, "origin": origin}))
            .collect();
        ctx.ui
            .out(&serde_json::to_string_pretty(&list).expect("plain JSON values"));
        return Ok(());
    }
    for (name, description, origin) in &found {
        ctx.ui.out(&format!(
            "{:<20} {}  {}",
            ctx.ui.bold(name),
            description,
            ctx.ui.dim(origin)
        ));
    }
    Ok(())
}

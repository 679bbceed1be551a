//! `git machine resume`: continue a run from its last step commit.

use clap::Args;

use super::error::CliResult;
use super::{find_run, Ctx};
use crate::runner::{Reload, ResumeOptions};
use crate::store;
use crate::workflow;

/// Continue a run from its last step commit (retrying a failed step)
#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Run id or a unique prefix of it (default: the most recent run)
    pub run: Option<String>,
    /// Start an interrupted agent step afresh from the last commit instead of continuing its session
    #[arg(long)]
    pub restart_step: bool,
    /// Adopt the workflow as it is now for the rest of the run (committed as `workflow:`)
    #[arg(long)]
    pub reload: bool,
    /// With --reload: read the workflow from this file instead of the repository's
    #[arg(long, value_name = "FILE", requires = "reload")]
    pub workflow: Option<String>,
    /// Use this engine for the remaining agent steps (recorded as a `workflow:` commit)
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Use this model for the remaining agent steps (recorded as a `workflow:` commit)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Members of a parallel group that run at once (default: git config machine.jobs, else 4)
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub shown: super::Shown,
    /// Continue in the background: print the run id and return at once (`watch` follows it)
    #[arg(long)]
    pub detach: bool,
    /// Trust the run's workflow (or, with --reload, the file) and record that, without asking
    #[arg(long)]
    pub trust: bool,
}

pub fn run(ctx: &mut Ctx, args: &ResumeArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, tip) = find_run(&repo, args.run.as_deref())?;
    let again = format!("git machine resume {id} --trust");
    let asked = super::trust::Asked {
        trust: args.trust,
        no_input: args.shown.no_input,
        again: &again,
    };
    if !args.reload {
        let info = store::read_run_at(&repo, &id, tip)?;
        super::trust::check_stored(
            ctx,
            &repo,
            &info.record.workflow,
            &info.workflow_source,
            &asked,
        )?;
    }
    if args.detach {
        return super::detach::detach(ctx, &[]);
    }
    if let Some(engine) = &args.engine {
        super::run::check_engine("--engine", engine)?;
    }
    let reload = if args.reload || args.engine.is_some() || args.model.is_some() {
        let workflow = if args.reload {
            let name = match &args.workflow {
                Some(file) => file.clone(),
                None => store::read_run_at(&repo, &id, tip)?.record.workflow,
            };
            let cwd = match &args.workflow {
                Some(_) => ctx.env.cwd.clone(),
                None => repo
                    .workdir()
                    .map(|p| p.to_path_buf())
                    .unwrap_or(ctx.env.cwd.clone()),
            };
            let (wf, file) = workflow::load_file(&cwd, repo.workdir(), &name)?;
            super::trust::check(ctx, &repo, file.as_deref(), &wf.source, &asked)?;
            Some(wf)
        } else {
            None
        };
        Some(Reload {
            workflow,
            engine: args.engine.clone(),
            model: args.model.clone(),
        })
    } else {
        None
    };
    let opts = ResumeOptions {
        restart_step: args.restart_step,
        reload,
    };
    let jobs = super::jobs(&repo, args.jobs)?;
    let end = super::with_runner(ctx, &repo, &args.shown, jobs, |runner| {
        let end = runner.resume(&id, opts)?;
        runner.then_controller(&id, end)
    })?;
    super::run_end(end, &id)
}

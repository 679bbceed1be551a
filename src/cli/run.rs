//! `git machine run`: start a workflow as a new run and execute it.

use std::collections::BTreeMap;

use clap::Args;

use super::error::{CliError, CliResult};
use super::Ctx;
use crate::git::Repo;
use crate::runner::{settings, StartRequest};
use crate::workflow::{self, VarValue};

/// Start a workflow as a new run on its own branch
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workflow name (.codemachine/workflows/<name>.toml or a built-in) or path to a .toml file
    pub workflow: String,
    /// Set a workflow variable (NAME=@FILE reads the value from FILE; @@ starts a value with @)
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, VarValue)>,
    /// Start from this revision instead of HEAD
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Use this engine for every agent step, even those whose workflow names one
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Use this model for every agent step, even those whose workflow names one
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// The workflow's track for this run (asked on a terminal when not given)
    #[arg(long, value_name = "TRACK")]
    pub track: Option<String>,
    /// Conditions that hold for this run, comma-separated (asked on a terminal when not given)
    #[arg(long = "with", value_name = "COND,…", value_delimiter = ',')]
    pub with: Vec<String>,
    /// Members of a parallel group that run at once (default: git config machine.jobs, else 4)
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub shown: super::Shown,
    /// Run in the background: print the run id and return at once (`watch` follows it)
    #[arg(long)]
    pub detach: bool,
    /// Trust the workflow file as it is now and record that, without asking (for CI)
    #[arg(long)]
    pub trust: bool,
}

pub fn parse_var(s: &str) -> Result<(String, VarValue), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), VarValue::parse(v)?)),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

/// The `--var` values, `@FILE`s read (relative to the current directory).
fn given_vars(ctx: &Ctx, args: &RunArgs) -> CliResult<Vec<(String, String)>> {
    args.vars
        .iter()
        .map(|(name, value)| Ok((name.clone(), value.read(name, &ctx.env.cwd)?)))
        .collect()
}

/// An engine given for every agent step must be an agent engine git machine knows.
pub fn check_engine(from: &str, engine: &str) -> CliResult {
    if workflow::ENGINES.contains(&engine) && engine != "command" {
        return Ok(());
    }
    let agents: Vec<&str> = workflow::ENGINES
        .iter()
        .copied()
        .filter(|e| *e != "command")
        .collect();
    Err(
        CliError::usage(format!("{from}: unknown agent engine `{engine}`"))
            .with_hint(format!("agent engines: {}", agents.join(", "))),
    )
}

/// The run's settings for its agent steps (stored in `run.toml`, so a resume keeps them): the
/// flags, and `machine.engine`, `machine.model`, `machine.<engine>.args`, `machine.workspace.*`
/// as git's rules merge them (`git -c`, repository, global). How they meet the workflow:
/// `runner::settings`.
fn settings(repo: &Repo, args: &RunArgs) -> CliResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if let Some(engine) = &args.engine {
        check_engine("--engine", engine)?;
        out.insert(settings::ENGINE.to_string(), engine.clone());
    }
    if let Some(engine) = repo.config_str("machine.engine") {
        check_engine("git config machine.engine", &engine)?;
        out.insert(settings::DEFAULT_ENGINE.to_string(), engine);
    }
    if let Some(model) = &args.model {
        out.insert(settings::MODEL.to_string(), model.clone());
    }
    if let Some(model) = repo.config_str("machine.model") {
        out.insert(settings::DEFAULT_MODEL.to_string(), model);
    }
    for engine in workflow::ENGINES.iter().filter(|e| **e != "command") {
        let key = format!("machine.{engine}.args");
        if let Some(value) = repo.config_str(&key) {
            settings::split_args(&value).map_err(|why| {
                CliError::usage(format!("git config {key} is `{value}`: {why}"))
                    .with_hint(format!(
                        "give the arguments as a shell would, e.g. `git config {key} \"--flag 'a value'\"`"
                    ))
            })?;
            out.insert(settings::args_key(engine), value);
        }
    }
    workspace_settings(repo, &mut out)?;
    Ok(out)
}

/// `machine.workspace.copy`, `.link`, `.setup`, `.setupKey`: words as a shell splits them,
/// paths checked as the workflow's `[workspace]` paths are.
fn workspace_settings(repo: &Repo, out: &mut BTreeMap<String, String>) -> CliResult {
    for (key, config) in settings::WORKSPACE_KEYS {
        let Some(value) = repo.config_str(config) else {
            continue;
        };
        let words = settings::split_args(&value).map_err(|why| {
            CliError::usage(format!("git config {config} is `{value}`: {why}"))
                .with_hint("give the words as a shell would, quoting a path with spaces")
        })?;
        if key != settings::WORKSPACE_SETUP {
            let bad = words
                .iter()
                .find_map(|w| workflow::workspace_path_problem(w).map(|why| (w, why)));
            if let Some((path, why)) = bad {
                return Err(CliError::usage(format!(
                    "git config {config} can't name `{path}`: {why}"
                ))
                .with_hint("give paths relative to the repository's root, separated by spaces"));
            }
        }
        out.insert(key.to_string(), value);
    }
    Ok(())
}

pub fn run(ctx: &mut Ctx, args: &RunArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (wf, file) = workflow::load_file(&ctx.env.cwd, repo.workdir(), &args.workflow)?;
    let again = format!("git machine run {} --trust", args.workflow);
    let asked = super::trust::Asked {
        trust: args.trust,
        no_input: args.shown.no_input,
        again: &again,
    };
    super::trust::check(ctx, &repo, file.as_deref(), &wf.source, &asked)?;
    for warning in &wf.warnings {
        ctx.ui.note(&format!("warning: {warning}"));
        if let Some(hint) = &warning.hint {
            ctx.ui.note(&format!("hint: {hint}"));
        }
    }
    let given = given_vars(ctx, args)?;
    if args.detach {
        // Checked here first, so a mistake is told on this terminal: the same checks run again.
        super::choices::bind_vars(&wf, &given, Some("--detach"))?;
        super::choices::choose(&wf, args.track.as_deref(), &args.with, false)?;
        return super::detach::detach(ctx, &["--no-input"]);
    }
    let no_input = args.shown.no_input.then_some("--no-input");
    let vars = super::choices::bind_vars(&wf, &given, no_input)?;
    let (track, conditions) =
        super::choices::choose(&wf, args.track.as_deref(), &args.with, !args.shown.no_input)?;
    let base = match &args.base {
        Some(rev) => repo.resolve_commit(rev).ok_or_else(|| {
            CliError::usage(format!("--base `{rev}` names no commit"))
                .with_hint("give a branch, tag or commit id, e.g. --base main")
        })?,
        None => repo.head_commit().ok_or_else(|| {
            CliError::usage("this repository has no commits yet")
                .with_hint("make a first commit, or give --base <rev>")
        })?,
    };
    let overrides = settings(&repo, args)?;
    let jobs = super::jobs(&repo, args.jobs)?;
    let (id, end) = super::with_runner(ctx, &repo, &args.shown, jobs, |runner| {
        let (id, end) = runner.start(StartRequest {
            workflow: &wf,
            vars,
            base,
            overrides,
            track,
            conditions,
        })?;
        Ok((id.clone(), runner.then_controller(&id, end)?))
    })?;
    super::run_end(end, &id)
}

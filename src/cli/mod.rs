//! The command line: one module per subcommand, each an `XArgs` (clap derive) and a
//! `run(ctx, &XArgs)`, dispatched by one `match`.

mod apply;
mod apply_conflict;
mod choices;
mod completions;
mod controller;
mod demo;
mod detach;
mod engines;
pub mod error;
mod gc;
mod help;
mod init;
mod log;
mod man;
mod new;
mod resume;
mod rewind;
mod rm;
mod run;
mod say;
mod show;
mod status;
mod stop;
mod trust;
mod validate;
mod watch;
mod workflows;

use clap::{Parser, Subcommand};

pub use crate::env::Env;
use crate::git::Repo;
use crate::runner::RunEnd;
use crate::signal::Controls;
use crate::store::{self, Lookup, RunId};
use crate::ui::{ColorChoice, Ui};
use error::{CliError, CliResult};

/// Run multi-step AI coding-agent workflows as git branches: one commit per step
#[derive(Parser, Debug)]
#[command(
    name = "git machine",
    bin_name = "git machine",
    version,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// When to colour output
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Do not send output through a pager
    #[arg(long, global = true)]
    no_pager: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Run(run::RunArgs),
    Resume(resume::ResumeArgs),
    Controller(controller::ControllerArgs),
    Status(status::StatusArgs),
    Log(log::LogArgs),
    Show(show::ShowArgs),
    Rewind(rewind::RewindArgs),
    Apply(apply::ApplyArgs),
    Rm(rm::RmArgs),
    Gc(gc::GcArgs),
    Init(init::InitArgs),
    New(new::NewArgs),
    Stop(stop::StopArgs),
    Say(say::SayArgs),
    Watch(watch::WatchArgs),
    Trust(trust::TrustArgs),
    Validate(validate::ValidateArgs),
    Workflows(workflows::WorkflowsArgs),
    Demo(demo::DemoArgs),
    Engines(engines::EnginesArgs),
    Help(help::HelpArgs),
    InstallMan(man::InstallManArgs),
    Completions(completions::CompletionsArgs),
    #[command(name = "__complete", hide = true)]
    Complete(completions::CompleteArgs),
}

pub struct Ctx {
    pub env: Env,
    pub ui: Ui,
    /// What the person asks of a run: stop (SIGINT/SIGTERM/SIGHUP), pause, skip.
    pub controls: Controls,
    /// The pager chosen for this command's output, until [`page`] starts it.
    pub pager: Option<String>,
}

/// Send the rest of the command's output through the pager, if one was chosen (see
/// `crate::ui::pager`). `LESS` and `LV` are set for it as git sets them, unless already set.
pub fn page(ctx: &mut Ctx) {
    let Some(command) = ctx.pager.take() else {
        return;
    };
    let env: Vec<(&str, &str)> = crate::ui::pager::PAGER_ENV
        .iter()
        .copied()
        .filter(|(name, _)| ctx.env.var(name).is_none())
        .collect();
    ctx.ui.start_pager(&command, &env);
}

/// The pager for this command's output, chosen like git's (see `crate::ui::pager`).
fn pager(env: &Env, repo: Option<&Repo>, no_pager: bool) -> Option<String> {
    use std::io::IsTerminal;
    let config = |key: &str| repo.and_then(|r| r.config_str(key));
    let (machine, core) = (config("pager.machine"), config("core.pager"));
    crate::ui::pager::pager_command(&crate::ui::pager::PagerInputs {
        no_pager,
        stdout_terminal: std::io::stdout().is_terminal(),
        pager_in_use: env
            .var("GIT_PAGER_IN_USE")
            .is_some_and(|v| crate::ui::pager::bool_value(v) != Some(false)),
        pager_machine: machine.as_deref(),
        git_pager: env.var("GIT_PAGER"),
        core_pager: core.as_deref(),
        pager: env.var("PAGER"),
    })
}

impl Ctx {
    pub fn repo(&self) -> CliResult<Repo> {
        Ok(Repo::discover(&self.env.cwd, &self.env.git())?)
    }
}

/// How many members of a parallel group run at once: `--jobs`, else `git config machine.jobs`,
/// else [`DEFAULT_JOBS`].
pub fn jobs(repo: &Repo, given: Option<usize>) -> CliResult<usize> {
    match given {
        Some(0) => {
            return Err(
                CliError::usage("--jobs 0: at least one member must run at a time")
                    .with_hint("give a positive number, e.g. `--jobs 4`"),
            )
        }
        Some(n) => return Ok(n),
        None => {}
    }
    match repo.config_str("machine.jobs") {
        None => Ok(DEFAULT_JOBS),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                CliError::usage(format!(
                    "git config machine.jobs is `{v}`, not a positive number"
                ))
                .with_hint("set it with `git config machine.jobs 4`")
            }),
    }
}

pub const DEFAULT_JOBS: usize = 4;

/// Which worktrees' stagings go by a watch of their folders: `git config machine.watch`,
/// `auto` (the default) or `true`: every one the system allows; `false`: none.
pub fn watching(repo: &Repo) -> CliResult<crate::git::WatchWhen> {
    use crate::git::WatchWhen;
    let Some(v) = repo.config_str("machine.watch") else {
        return Ok(WatchWhen::Always);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "auto" | "true" | "yes" | "on" | "1" => Ok(WatchWhen::Always),
        "false" | "no" | "off" | "0" => Ok(WatchWhen::Never),
        _ => Err(CliError::usage(format!(
            "git config machine.watch is `{v}`, not auto, true or false"
        ))
        .with_hint("set it with `git config machine.watch auto` (the default)")),
    }
}

/// How a run's events are shown: the live view when stdout and stderr are a terminal (and
/// neither `--plain` nor `--json` was asked), else progress lines or JSON lines.
pub enum View<'a> {
    Live(crate::ui::live::Live),
    Lines(crate::ui::progress::Progress<'a>),
}

impl View<'_> {
    pub fn new<'a>(
        rt: &tokio::runtime::Handle,
        ui: &'a mut Ui,
        controls: &Controls,
        json: bool,
        plain: bool,
        verbose: bool,
    ) -> View<'a> {
        use std::io::IsTerminal;
        let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        if terminal && !json && !plain {
            View::Live(crate::ui::live::Live::start(rt, ui, controls))
        } else {
            let mut lines = crate::ui::progress::Progress::new(ui, json);
            lines.verbose = verbose;
            View::Lines(lines)
        }
    }
}

impl crate::runner::Sink for View<'_> {
    fn emit(&mut self, event: crate::runner::Event) {
        match self {
            View::Live(v) => v.emit(event),
            View::Lines(v) => v.emit(event),
        }
    }
    fn output(&mut self, line: &str) {
        match self {
            View::Live(v) => v.output(line),
            View::Lines(v) => v.output(line),
        }
    }
    fn member_output(&mut self, step: &str, line: &str) {
        match self {
            View::Live(v) => v.member_output(step, line),
            View::Lines(v) => v.member_output(step, line),
        }
    }
}

/// How a command shows a run: `--json`, `--plain`, `-v`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Shown {
    /// Show what the steps do as they run (agents' tool calls and text, in words)
    #[arg(short, long)]
    pub verbose: bool,
    /// Report events as JSON lines on stdout (schema: docs/events.md)
    #[arg(long)]
    pub json: bool,
    /// One line per event instead of the live view, even on a terminal
    #[arg(long)]
    pub plain: bool,
    /// Never ask or hand over the terminal: questions take their defaults (a var without one
    /// must be given with --var), interactive steps follow `interactive_fallback`
    #[arg(long)]
    pub no_input: bool,
}

/// Run `f` with a runner whose events go to the view (live, lines or JSON) and to the run's
/// event log (for `watch`); steps' output always reaches both, `-v` decides what lines show.
pub fn with_runner<T>(
    ctx: &mut Ctx,
    repo: &Repo,
    shown: &Shown,
    jobs: usize,
    f: impl FnOnce(&mut crate::runner::Runner<'_>) -> crate::error::Result<T>,
) -> CliResult<T> {
    let paths = store::Paths::new(repo, &ctx.env);
    let rt = crate::engine::process::event_loop()?;
    let mut view = View::new(
        rt.handle(),
        &mut ctx.ui,
        &ctx.controls,
        shown.json,
        shown.plain,
        shown.verbose,
    );
    let mut logged = crate::ui::eventlog::Logged::new(&mut view, paths.clone());
    let mut person = crate::ui::person::Terminal::new(shown.no_input, ctx.controls.cancel.clone());
    let mut runner = crate::runner::Runner {
        repo,
        paths,
        sink: &mut logged,
        env: &ctx.env,
        controls: &ctx.controls,
        echo: true,
        jobs,
        rt: &rt,
        person: Some(&mut person),
        secrets_seen: Default::default(),
        watch: watching(repo)?,
    };
    Ok(f(&mut runner)?)
}

/// How the end of a run's execution ends the command: the one place a run's end becomes an
/// exit code.
pub fn run_end(end: RunEnd, id: &RunId) -> CliResult {
    use error::{EXIT_FAILED, EXIT_INTERRUPTED};
    let (code, message, hint) = match end {
        RunEnd::Completed => return Ok(()),
        RunEnd::Conflict => (
            EXIT_FAILED,
            format!("run {id} stopped on a merge conflict"),
            format!("`git machine status {id}` lists the paths; resolve and commit them in the run's worktree, then `git machine resume {id}`"),
        ),
        RunEnd::Paused => (
            EXIT_FAILED,
            format!("run {id} is paused for review"),
            format!("look at and edit its worktree, then `git machine resume {id}` commits your changes as a review and goes on"),
        ),
        RunEnd::Waiting => (
            EXIT_FAILED,
            format!("run {id} waits for you at a terminal"),
            format!("`git machine resume {id}` on a terminal goes on (`git machine status {id}` says which step)"),
        ),
        RunEnd::Failed => (
            EXIT_FAILED,
            format!("run {id} stopped on a failed step"),
            format!("fix the cause, then `git machine resume {id}` retries the step (`--reload` if the cause was in the workflow)"),
        ),
        RunEnd::Interrupted => (
            EXIT_INTERRUPTED,
            format!("run {id} interrupted"),
            format!("`git machine resume {id}` continues from the last step commit"),
        ),
    };
    Err(CliError::new(code, message).with_hint(hint))
}

/// Find a run by a unique prefix of its id (or the most recent one).
pub fn find_run(repo: &Repo, given: Option<&str>) -> CliResult<(RunId, crate::git::Oid)> {
    match store::find_run(repo, given)? {
        Lookup::Found(id, tip) => Ok((id, tip)),
        Lookup::NotFound => Err(match given {
            Some(g) => CliError::usage(format!("no run matches `{g}`"))
                .with_hint("`git machine status` lists the runs of this repository"),
            None => CliError::usage("this repository has no runs yet")
                .with_hint("start one with `git machine run <workflow>`"),
        }),
        Lookup::Ambiguous(ids) => Err(CliError::usage(format!(
            "`{}` matches {} runs: {}",
            given.unwrap_or_default(),
            ids.len(),
            ids.iter().map(RunId::as_str).collect::<Vec<_>>().join(", ")
        ))
        .with_hint("give more characters of the run id")),
    }
}

fn dispatch(ctx: &mut Ctx, cli: &Cli) -> CliResult {
    match &cli.command {
        Command::Run(a) => run::run(ctx, a),
        Command::Resume(a) => resume::run(ctx, a),
        Command::Controller(a) => controller::run(ctx, a),
        Command::Status(a) => status::run(ctx, a),
        Command::Log(a) => log::run(ctx, a),
        Command::Show(a) => show::run(ctx, a),
        Command::Rewind(a) => rewind::run(ctx, a),
        Command::Apply(a) => apply::run(ctx, a),
        Command::Rm(a) => rm::run(ctx, a),
        Command::Gc(a) => gc::run(ctx, a),
        Command::Init(a) => init::run(ctx, a),
        Command::New(a) => new::run(ctx, a),
        Command::Stop(a) => stop::run(ctx, a),
        Command::Say(a) => say::run(ctx, a),
        Command::Watch(a) => watch::run(ctx, a),
        Command::Trust(a) => trust::run(ctx, a),
        Command::Validate(a) => validate::run(ctx, a),
        Command::Workflows(a) => workflows::run(ctx, a),
        Command::Demo(a) => demo::run(ctx, a),
        Command::Engines(a) => engines::run(ctx, a),
        Command::Help(a) => help::run(ctx, a),
        Command::InstallMan(a) => man::run(ctx, a),
        Command::Completions(a) => completions::run(ctx, a),
        Command::Complete(a) => completions::complete(ctx, a),
    }
}

pub fn main() -> i32 {
    let env = Env::from_process();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&env, e),
    };
    let repo = Repo::discover(&env.cwd, &env.git()).ok();
    let config = |key: &str| repo.as_ref().and_then(|r| r.config_str(key));
    let (machine, ui_color) = (config("color.machine"), config("color.ui"));
    let pager = pager(&env, repo.as_ref(), cli.no_pager);
    let color = crate::ui::use_color(
        cli.color,
        machine.as_deref(),
        ui_color.as_deref(),
        env.no_color,
        env.clicolor_force,
    );
    let controls = Controls::default();
    crate::signal::install(&controls);
    let mut ctx = Ctx {
        env,
        ui: Ui::new(color),
        controls,
        pager,
    };
    let code = match dispatch(&mut ctx, &cli) {
        Ok(()) => 0,
        Err(e) => {
            e.render(&mut ctx.ui);
            e.code
        }
    };
    ctx.ui.finish();
    code
}

/// Help and version as clap prints them; a mistake in git machine's own style.
fn clap_error(env: &Env, e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            error::EXIT_USAGE
        } else {
            0
        };
    }
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && crate::ui::use_color(
            crate::ui::ColorChoice::Auto,
            None,
            None,
            env.no_color,
            env.clicolor_force,
        );
    let mut ui = Ui::new(color);
    // The subcommand the mistake is in, for the hint (clap names it only in a usage line).
    let command = <Cli as clap::CommandFactory>::command();
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let sub = std::env::args().skip(1).find(|a| names.contains(a));
    let e = error::from_clap(&e.render().to_string(), sub.as_deref());
    e.render(&mut ui);
    ui.finish();
    e.code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

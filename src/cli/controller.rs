//! `git machine controller`: go back to a run's controller conversation — the same session,
//! its own `controller:` commit — and go on with the run when the person is done.

use std::time::Duration;

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::runner::ResumeOptions;
use crate::store::{lock, Paths};

/// Talk with a run's controller again, then resume the run
#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Run id or a unique prefix of it (default: the most recent run)
    pub run: Option<String>,
    /// A running run stops its step at once (its work and session are kept) instead of after it
    #[arg(long, conflicts_with = "after")]
    pub now: bool,
    /// A running run pauses after its current step (the default on no terminal)
    #[arg(long)]
    pub after: bool,
    /// Members of a parallel group that run at once when the run goes on
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub shown: super::Shown,
}

pub fn run(ctx: &mut Ctx, args: &ControllerArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, tip) = find_run(&repo, args.run.as_deref())?;
    // The conversation goes on and the run resumes: its stored workflow needs trust here, as
    // for `resume` (the person is at a terminal, so the question is asked there).
    let info = crate::store::read_run_at(&repo, &id, tip)?;
    let again = format!("git machine resume {id} --trust");
    let asked = super::trust::Asked {
        trust: false,
        no_input: args.shown.no_input,
        again: &again,
    };
    super::trust::check_stored(
        ctx,
        &repo,
        &info.record.workflow,
        &info.workflow_source,
        &asked,
    )?;
    let paths = Paths::new(&repo, &ctx.env);
    if let Some(holder) = lock::live_holder(&paths.lock(&id)) {
        let now = args.now || (!args.after && ask_now(ctx)?);
        let signal = if now {
            libc::SIGTERM
        } else {
            crate::signal::PAUSE_SIGNAL
        };
        lock::signal_holder_with(&holder, signal)
            .map_err(|e| CliError::failed(format!("cannot reach pid {}: {e}", holder.pid)))?;
        ctx.ui.note(&format!(
            "run {id}: {}",
            if now {
                "stopping its step now (its work and session are kept)…"
            } else {
                "pausing after its current step…"
            }
        ));
        while lock::holder_alive(&holder) {
            if ctx
                .controls
                .cancel
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return Err(CliError::new(
                    super::error::EXIT_INTERRUPTED,
                    format!("stopped waiting; run {id} was asked to pause"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let jobs = super::jobs(&repo, args.jobs)?;
    let end = super::with_runner(ctx, &repo, &args.shown, jobs, |runner| {
        if !runner.return_to_controller(&id)? {
            return Ok(None);
        }
        runner.resume(&id, ResumeOptions::default()).map(Some)
    })?;
    match end {
        Some(end) => super::run_end(end, &id),
        None => {
            ctx.ui.note(&format!(
                "run {id} stays where it was; `git machine resume {id}` goes on"
            ));
            Ok(())
        }
    }
}

/// Whether a running run stops its step now, asked on a terminal.
fn ask_now(ctx: &mut Ctx) -> CliResult<bool> {
    use crate::runner::person::Person;
    let mut person = crate::ui::person::Terminal::new(false, ctx.controls.cancel.clone());
    if !person.present() {
        return Ok(false);
    }
    person
        .confirm(
            "The run is executing a step. Stop it now (its work and session are kept)? Otherwise after it",
            false,
        )
        .ok_or_else(|| CliError::new(super::error::EXIT_INTERRUPTED, "no answer"))
}

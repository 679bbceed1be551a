//! `git machine stop`: stop a run that another process is executing.

use std::time::{Duration, Instant};

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::store::{self, lock, Paths};

/// Stop a running run: its step is stopped and the run left resumable
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Run id or a unique prefix of it (default: the most recent run)
    pub run: Option<String>,
    /// Kill it and its step at once instead of letting it stop its step
    #[arg(long)]
    pub now: bool,
}

/// How long a graceful stop may take: the step gets SIGTERM, then SIGKILL after a grace.
const STOP_WAIT: Duration = Duration::from_secs(30);

pub fn run(ctx: &mut Ctx, args: &StopArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, tip) = find_run(&repo, args.run.as_deref())?;
    let paths = Paths::new(&repo, &ctx.env);
    let not_running = || {
        CliError::usage(format!("run {id} is not running"))
            .with_hint(format!("`git machine status {id}` shows where it stands; `git machine resume {id}` continues it"))
    };
    let Some(holder) = lock::live_holder(&paths.lock(&id)) else {
        return Err(not_running());
    };
    let step = store::read_run_at(&repo, &id, tip)
        .ok()
        .and_then(|info| info.state.next)
        .map(|s| format!(" at step `{s}`"))
        .unwrap_or_default();
    match lock::signal_holder(&paths.lock(&id), &holder, args.now) {
        Ok(()) => {}
        // It ended between being found and being told: nothing is running to stop.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(not_running()),
        Err(e) => {
            return Err(CliError::failed(format!(
                "cannot stop pid {}: {e}",
                holder.pid
            )))
        }
    }
    let deadline = Instant::now() + STOP_WAIT;
    while lock::holder_alive(&holder) {
        if Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "run {id} (pid {}) has not stopped after {}s",
                holder.pid,
                STOP_WAIT.as_secs()
            ))
            .with_hint(format!("`git machine stop --now {id}` kills it")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ctx.ui.out(&format!(
        "stopped run {id}{step} (pid {}{})",
        holder.pid,
        if args.now { ", killed" } else { "" }
    ));
    ctx.ui
        .out(&format!("continue with `git machine resume {id}`"));
    Ok(())
}

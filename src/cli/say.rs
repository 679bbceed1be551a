//! `git machine say`: a message to the agent of a running run's current step. The step is
//! stopped at once and goes on in its own session with the message as the next turn.

use clap::Args;

use super::error::{CliError, CliResult};
use super::{find_run, Ctx};
use crate::store::mail::{self, Message};
use crate::store::{self, lock, Paths};

/// Tell the running step's agent something: it goes on in its session with your message
#[derive(Args, Debug)]
pub struct SayArgs {
    /// Run id or a unique prefix of it
    pub run: String,
    /// The message (several words are joined with spaces)
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

pub fn run(ctx: &mut Ctx, args: &SayArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, tip) = find_run(&repo, Some(&args.run))?;
    let text = args.text.join(" ");
    if text.trim().is_empty() {
        return Err(CliError::usage("the message is empty").with_hint(format!(
            "git machine say {id} \"what the agent should know\""
        )));
    }
    let paths = Paths::new(&repo, &ctx.env);
    let Some(holder) = lock::live_holder(&paths.lock(&id)) else {
        return Err(CliError::usage(format!("run {id} is not running"))
            .with_hint(format!(
                "a message goes to a running step; `git machine controller {id}` talks with the run's controller"
            )));
    };
    mail::post(&paths.mailbox(&id), &Message::now(&repo.user_name(), &text))?;
    lock::signal_holder_with(&holder, crate::signal::MAIL_SIGNAL)
        .map_err(|e| CliError::failed(format!("cannot reach pid {}: {e}", holder.pid)))?;
    let step = store::read_run_at(&repo, &id, tip)
        .ok()
        .and_then(|info| info.state.next)
        .map(|s| format!(" (step `{s}`)"))
        .unwrap_or_default();
    ctx.ui.out(&format!("said to run {id}{step}: {text}"));
    Ok(())
}

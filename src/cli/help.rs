//! `git machine help [<subcommand>]`: the long help, straight from the clap definitions.
//!
//! `git machine --help` is taken by git (it opens the man page); this works where no page is
//! installed. `-h` stays clap's short help.

use clap::{Args, CommandFactory};

use super::error::{CliError, CliResult};
use super::{Cli, Ctx};

/// Show the long help of git machine or of one subcommand (needs no man page)
#[derive(Args, Debug)]
pub struct HelpArgs {
    /// The subcommand to explain
    pub command: Option<String>,
}

pub fn run(ctx: &mut Ctx, args: &HelpArgs) -> CliResult {
    let mut cmd = Cli::command();
    cmd.build();
    let text = match &args.command {
        None => cmd.render_long_help(),
        Some(name) => subcommand(&mut cmd, name)?.render_long_help(),
    };
    ctx.ui.out(text.to_string().trim_end());
    Ok(())
}

/// The visible subcommand `name`, or a usage error listing them.
fn subcommand<'a>(cmd: &'a mut clap::Command, name: &str) -> CliResult<&'a mut clap::Command> {
    let known: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    match cmd.find_subcommand_mut(name) {
        Some(sub) if !sub.is_hide_set() => Ok(sub),
        _ => Err(
            CliError::usage(format!("`{name}` is not a git machine subcommand"))
                .with_hint(format!("the subcommands are: {}", known.join(", "))),
        ),
    }
}

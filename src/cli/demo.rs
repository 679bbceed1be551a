//! `git machine demo`: a scratch repository, the built-in `demo` workflow, its log.

use clap::Args;

use super::error::{CliError, CliResult};
use super::Ctx;
use crate::git::{self, Repo};
use crate::runner::StartRequest;
use crate::workflow;

/// Run the built-in demo workflow in a scratch repository (no network, no API key)
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Show what the steps do as they run (agents' tool calls and text, in words)
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(ctx: &mut Ctx, args: &DemoArgs) -> CliResult {
    let dir = tempfile::Builder::new()
        .prefix("git-machine-demo-")
        .tempdir()?
        .keep();
    git::init_scratch_repo(&dir)?;
    let repo = Repo::open(&dir, &ctx.env.git())?;
    let source = workflow::builtin("demo").expect("the demo workflow is built in");
    let wf = workflow::parse("builtin:demo", source)?;
    let vars = wf.bind_vars(&[])?;
    let base = repo
        .head_commit()
        .ok_or_else(|| CliError::new(101, "the scratch repository has no commit"))?;
    ctx.ui
        .note(&format!("scratch repository: {}", dir.display()));
    let shown = super::Shown {
        json: false,
        plain: false,
        verbose: args.verbose,
        no_input: true,
    };
    let (id, end) = super::with_runner(ctx, &repo, &shown, super::DEFAULT_JOBS, |runner| {
        runner.start(StartRequest {
            workflow: &wf,
            vars,
            base,
            overrides: Default::default(),
            track: None,
            conditions: Vec::new(),
        })
    })?;
    ctx.ui.out("");
    super::log::print(ctx, &repo, &id, false)?;
    ctx.ui.out("");
    ctx.ui.out(&format!(
        "Look around: cd {} && git log --stat machine/{id}",
        shell_quoted(&dir.display().to_string())
    ));
    ctx.ui
        .out(&format!("             git machine show {id} implement"));
    super::run_end(end, &id)
}

/// `text` as one word for a POSIX shell, to be pasted: as it is when it holds only characters
/// no shell reads specially, else in single quotes (each `'` written `'\''`). A temporary
/// directory may hold spaces or quotes (`TMPDIR`).
fn shell_quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quoted;

    #[test]
    fn paths_are_quoted_for_the_shell_when_they_need_it() {
        assert_eq!(
            shell_quoted("/tmp/git-machine-demo-x1"),
            "/tmp/git-machine-demo-x1"
        );
        assert_eq!(shell_quoted("/tmp/my dir"), "'/tmp/my dir'");
        assert_eq!(shell_quoted("/tmp/it's $(x)"), "'/tmp/it'\\''s $(x)'");
        assert_eq!(shell_quoted(""), "''");
    }
}

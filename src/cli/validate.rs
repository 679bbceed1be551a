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
    if let Some(warning) = name_differs(&wf.origin, &wf.name) {
        ctx.ui.note(&warning);
    }
    Ok(())
}

/// A warning when a workflow file's `name` is not its file name: `git machine run <file name>`
/// finds the file, while runs, `status` and `workflows` call it by `name`.
fn name_differs(origin: &str, name: &str) -> Option<String> {
    if origin.starts_with("builtin:") {
        return None;
    }
    let stem = std::path::Path::new(origin)
        .file_stem()?
        .to_string_lossy()
        .into_owned();
    (stem != name).then(|| {
        format!(
            "warning: {origin}: `name = \"{name}\"` differs from the file name `{stem}`; \
             `git machine run {stem}` finds the file, but runs call it `{name}` (rename one \
             of them to match)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_other_than_the_file_name_is_warned_about() {
        assert!(name_differs(".codemachine/workflows/ship.toml", "ship").is_none());
        assert!(name_differs("builtin:demo", "anything").is_none());
        let w = name_differs(".codemachine/workflows/ship.toml", "deploy").expect("a warning");
        assert!(
            w.contains("`name = \"deploy\"` differs from the file name `ship`"),
            "{w}"
        );
    }
}

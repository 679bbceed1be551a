//! `git machine validate`: check a workflow file without running anything.
//!
//! Stricter than `run`: what a run only warns about (a placeholder pasted inside quotes of a
//! shell script, [`workflow::Workflow::warnings`]) is an error here, exit code 2, so a check in
//! CI or before a commit catches it.

use std::collections::BTreeMap;
use std::path::Path;

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
    /// Also show each step as a run would start it (a dry run): its prompt with the vars
    /// filled in, and its context sources with their sizes in this checkout
    #[arg(long)]
    pub render: bool,
    /// A var's value for --render (a var without one shows as `{name}`)
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = super::run::parse_var)]
    pub vars: Vec<(String, workflow::VarValue)>,
}

pub fn run(ctx: &mut Ctx, args: &ValidateArgs) -> CliResult {
    let repo = Repo::discover(&ctx.env.cwd, &ctx.env.git()).ok();
    let wf = workflow::load(
        &ctx.env.cwd,
        repo.as_ref().and_then(|r| r.workdir()),
        &args.workflow,
    )?;
    if let Some((first, rest)) = wf.warnings.split_first() {
        // Allowed in a run (with a warning), refused here: a check before a commit should fail.
        let mut e = first.clone();
        e.also = rest.to_vec().into_boxed_slice();
        return Err(e.into());
    }
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
    if args.render {
        let root = repo
            .as_ref()
            .and_then(|r| r.workdir())
            .map(Path::to_path_buf);
        render(ctx, &wf, &args.vars, root.as_deref())?;
    }
    Ok(())
}

/// Each step as a run would start it: engine, mode, the prompt with the values known here,
/// and each context source with its size in this checkout (steps' results exist only in a
/// run).
fn render(
    ctx: &mut Ctx,
    wf: &workflow::Workflow,
    given: &[(String, workflow::VarValue)],
    root: Option<&Path>,
) -> CliResult {
    let mut values = BTreeMap::new();
    for var in &wf.vars {
        let value = match given.iter().rev().find(|(n, _)| *n == var.name) {
            Some((name, v)) => v.read(name, &ctx.env.cwd)?,
            None => var
                .default
                .clone()
                .unwrap_or_else(|| format!("{{{}}}", var.name)),
        };
        values.insert(var.name.clone(), value);
    }
    wf.check_paths(&values)?;
    for (k, v) in [
        ("run_id", "<run-id>"),
        ("workflow", wf.name.as_str()),
        ("date", "<date>"),
        ("base", "<base>"),
        ("track", "<track>"),
        ("conditions", "<conditions>"),
        ("loop_reason", ""),
        ("loop_pass", "1"),
    ] {
        values.insert(k.to_string(), v.to_string());
    }
    for step in wf.resolve(&values) {
        ctx.ui.out(&format!(
            "\n── {} ({}{})",
            step.id,
            step.engines.join(" → "),
            match step.mode {
                workflow::Mode::Autonomous => String::new(),
                workflow::Mode::Interactive => ", interactive".to_string(),
                workflow::Mode::Conversation => ", conversation".to_string(),
            }
        ));
        if !step.run.is_empty() {
            ctx.ui.out(&format!("run: {:?}", step.run));
        }
        for source in &step.context {
            ctx.ui
                .out(&format!("context: {}", context_size(source, root)));
        }
        if let Some(prompt) = &step.prompt {
            ctx.ui.out(&format!("prompt ({} bytes):", prompt.len()));
            for line in prompt.lines() {
                ctx.ui.out(&format!("  {line}"));
            }
        }
    }
    Ok(())
}

/// A context source and what it holds in this checkout.
fn context_size(source: &workflow::ContextSource, root: Option<&Path>) -> String {
    use workflow::ContextSource;
    let required = |r: bool| if r { ", required" } else { "" };
    match source {
        ContextSource::Step {
            from,
            output,
            required: r,
            ..
        } => match output {
            Some(o) => format!("`{o}` of step `{from}` (at run time{})", required(*r)),
            None => format!("the result of step `{from}` (at run time{})", required(*r)),
        },
        ContextSource::File { path, required: r } => {
            let size = root
                .and_then(|d| std::fs::metadata(d.join(path)).ok())
                .map(|m| m.len());
            match size {
                Some(n) => format!("file `{path}`: {n} bytes here{}", required(*r)),
                None => format!("file `{path}`: not in this checkout{}", required(*r)),
            }
        }
        ContextSource::Files {
            pattern,
            required: r,
        } => {
            let (count, bytes) = root.map_or((0, 0), |d| matching(d, pattern));
            format!(
                "files `{pattern}`: {count} here, {bytes} bytes{}",
                required(*r)
            )
        }
    }
}

/// Files of the checkout matching `pattern` (`.git` left out): how many, how many bytes.
fn matching(root: &Path, pattern: &str) -> (usize, u64) {
    let Ok(glob) = globset::Glob::new(pattern) else {
        return (0, 0);
    };
    let glob = glob.compile_matcher();
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| e.path().strip_prefix(root).is_ok_and(|p| glob.is_match(p)))
        .fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map_or(0, |m| m.len()))
        })
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
